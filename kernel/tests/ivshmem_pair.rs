//! In-QEMU test, two VMs on one region: ISM ping-pong through each other's DMBs.
//!
//! The runner boots this image as VM A; `pre_ivshmem_pair` (kernel/tests/profiles-ivshmem.sh)
//! starts our ivshmem-server and the same image as VM B, and `post_ivshmem_pair` requires
//! VM B to pass too. Both run the same code; the lower peer ID pings:
//! 1. wait until both peers are active in the server's directory;
//! 2. each registers a DMB that only the other may write, and finds the other's DMB
//!    (descriptor discovery stands in for the CLC handshake that would carry the token);
//! 3. [`ROUNDS`] rounds: the pinger `move_data`s sequence number i (with signal) into the
//!    ponger's DMB, the ponger answers i into the pinger's DMB; every message is one
//!    doorbell ring and one MSI-X delivery on the receiver;
//! 4. the pinger exits; the ponger must then see `PeerGone` for the pinger's GID (the
//!    server marks it dead and rings the control vector).
#![no_std]
#![no_main]

extern crate alloc;

mod ivshmem_common;

use core::time::Duration;

use ivshmem_common::{setup, wait_for_event};
use kernel::clock;
use smcd::ism::{DmbToken, Gid, IsmDevice, IsmEvent};
use smcd::shm::SharedMemory;

kernel::test_main!(two_vms_ping_pong_through_dmbs);

/// Ping-pong rounds (each one message each way).
const ROUNDS: u64 = 10_000;
/// DMB size of each side.
const DMB_LEN: usize = 65536;

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = clock::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            clock::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        kernel::executor::run_until(kernel::executor::sleep(Duration::from_millis(5)));
    }
}

fn read_seq(memory: &impl SharedMemory) -> u64 {
    let mut b = [0u8; 8];
    memory.read(0, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn two_vms_ping_pong_through_dmbs() {
    let s = setup();
    let ism = &s.ism;
    let me = ism.peer_id();
    let (other, other_gid): (u16, Gid) = wait_until(
        "the other VM in the directory",
        Duration::from_secs(60),
        || ism.active_peers().into_iter().find(|&(id, _)| id != me),
    );
    let pinger = me < other;
    kernel::serial_println!(
        "pair: peer {me} ({}) with peer {other}",
        if pinger { "pinger" } else { "ponger" }
    );

    let own = ism.register_dmb(DMB_LEN, other_gid).unwrap();
    let (theirs, len): (DmbToken, usize) =
        wait_until("the other VM's DMB", Duration::from_secs(60), || {
            ism.dmbs_offered_by(other).into_iter().next()
        });
    assert_eq!(len, DMB_LEN);

    let rung_before = ism.stats().doorbells_rung;
    let irq_before = s.events[1].count();
    let start = clock::now();
    let mut signals = 0u64;
    for i in 1..=ROUNDS {
        if pinger {
            ism.move_data(theirs, 0, &i.to_le_bytes(), true).unwrap();
        }
        let deadline = clock::now() + Duration::from_secs(5);
        let got = wait_for_event(&s, deadline, |e| match e {
            IsmEvent::DmbSignalled { index } if index == own.index => {
                signals += 1;
                true
            }
            _ => false,
        });
        assert!(got, "round {i}: no signal from peer {other}");
        assert_eq!(
            read_seq(&own.memory),
            i,
            "round {i}: wrong sequence in our DMB"
        );
        if !pinger {
            ism.move_data(theirs, 0, &i.to_le_bytes(), true).unwrap();
        }
    }
    let elapsed = clock::now().saturating_duration_since(start);
    let rung = ism.stats().doorbells_rung - rung_before;
    let irqs = s.events[1].count() - irq_before;
    kernel::serial_println!(
        "pair: {ROUNDS} round trips in {} ms ({} us per round trip, TCG), {rung} doorbells rung, {irqs} DMB interrupts ({} coalesced), {signals} signals",
        elapsed.as_millis(),
        elapsed.as_micros() / u128::from(ROUNDS),
        rung.saturating_sub(irqs)
    );
    assert_eq!(signals, ROUNDS);
    assert_eq!(
        rung, ROUNDS,
        "one doorbell per message (the receiver drained its bitmap)"
    );
    // Every round was woken by an interrupt before its deadline (`wait_for_event`), but
    // QEMU coalesces doorbells that reach a peer's eventfd before it was read, and a
    // signal already visible at the poll before the wait needs no interrupt: so at most
    // one delivery per ring, never more.
    assert!(
        irqs > 0 && irqs <= ROUNDS,
        "{irqs} MSI-X deliveries for {ROUNDS} rings"
    );

    if !pinger {
        // The pinger exits after its last answer: its QEMU disconnects, the server marks it
        // dead and rings our control vector.
        let gone = wait_for_event(&s, clock::now() + Duration::from_secs(60), |e| {
            e == IsmEvent::PeerGone { gid: other_gid }
        });
        assert!(gone, "no PeerGone for peer {other} after it exited");
        assert!(!ism.query_remote_gid(other_gid, None));
        assert_eq!(
            ism.move_data(theirs, 0, b"late", true).err(),
            Some(smcd::ism::IsmError::PeerUnreachable)
        );
        kernel::serial_println!("pair: peer {other} gone, reported and unreachable");
    }
}
