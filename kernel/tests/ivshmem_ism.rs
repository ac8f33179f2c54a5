//! In-QEMU test: the ivshmem ISM on a real ivshmem-doorbell device and our ivshmem-server.
//!
//! One VM (profile in `kernel/tests/profiles-ivshmem.sh`): QEMU's ivshmem-doorbell with
//! 2 MSI-X vectors, connected to `tools/ivshmem-server`, which formats the region and
//! registers our peer ID in its directory. The guest
//! - brings up `drivers::ivshmem::IvshmemIsm` on the mapped BARs (header validated, GID
//!   taken from the directory entry of IVPosition);
//! - rings its own doorbell on the DMB vector many times through the typed BAR0 and
//!   counts one MSI-X delivery per ring;
//! - registers a DMB, `move_data`s into it through the shared region with a signal, gets
//!   the MSI-X interrupt, sees `DmbSignalled` for the DMB's index and reads the bytes back.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

mod ivshmem_common;

use drivers::ivshmem::device::VECTOR_DMB;
use ivshmem_common::{setup, wait_past, Setup};
use kernel::clock;
use smcd::ism::{DmbToken, IsmDevice, IsmError, IsmEvent};
use smcd::shm::SharedMemory;

kernel::test_main!(
    region_is_validated_and_directory_gives_our_gid,
    own_doorbell_delivers_every_ring,
    move_data_into_own_dmb_signals_and_reads_back,
    move_data_throughput_and_call_cost,
);

/// Rings of the doorbell test (each awaited before the next).
const RINGS: u64 = 1000;

static SETUP: spin::Mutex<Option<Setup>> = spin::Mutex::new(None);

fn with_setup<R>(f: impl FnOnce(&mut Setup) -> R) -> R {
    let mut guard = SETUP.lock();
    if guard.is_none() {
        *guard = Some(setup());
    }
    f(guard.as_mut().expect("set up above"))
}

fn region_is_validated_and_directory_gives_our_gid() {
    with_setup(|s| {
        let layout = s.ism.layout();
        assert_eq!(layout.region_size() as u64, s.bar2_size);
        assert!(u32::from(s.ism.peer_id()) < layout.max_peers());
        assert_eq!(s.ism.peer_id(), s.device.peer_id());
        assert_ne!(s.ism.local_gid(), smcd::ism::Gid::default());
        assert!(
            s.ism.query_remote_gid(s.ism.local_gid(), None),
            "own GID is active"
        );
        assert!(!s.ism.query_remote_gid(smcd::ism::Gid::virtual_(1, 2), None));
        assert!((0xFF00..0xFFFF).contains(&s.ism.chid()));
        assert!(s.ism.supports_v2() && s.ism.supports_nocopy());
    });
}

fn own_doorbell_delivers_every_ring() {
    with_setup(|s| {
        let bar0 = s.device.registers();
        let peer = s.device.peer_id();
        let dmb_event = s.events[1];
        // The server may still be handing our eventfds to QEMU when the guest starts:
        // ring until the first interrupt arrives (bounded: 5 × 1 s).
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries <= 5, "no MSI-X interrupt after 5 doorbells");
            let seen = dmb_event.count();
            bar0.ring(peer, VECTOR_DMB).unwrap();
            if wait_past(dmb_event, seen, Duration::from_secs(1)) {
                break;
            }
        }
        let control_before = s.events[0].count();
        let start = clock::now();
        for ring in 0..RINGS {
            let seen = dmb_event.count();
            bar0.ring(peer, VECTOR_DMB).unwrap();
            assert!(
                wait_past(dmb_event, seen, Duration::from_secs(2)),
                "ring {ring}: no MSI-X delivery"
            );
            assert_eq!(
                dmb_event.count(),
                seen + 1,
                "ring {ring}: one delivery per ring"
            );
        }
        let elapsed = clock::now().saturating_duration_since(start);
        // Single VM (the profile): the server rings the control vector only on joins and
        // leaves of other peers, so DMB rings must not have raised it.
        assert_eq!(
            s.events[0].count(),
            control_before,
            "DMB rings raised the control vector"
        );
        kernel::serial_println!(
            "ivshmem: {RINGS} own doorbells on vector {VECTOR_DMB}, {RINGS} MSI-X deliveries, {} us per ring (TCG)",
            elapsed.as_micros() / u128::from(RINGS)
        );
    });
}

fn move_data_into_own_dmb_signals_and_reads_back() {
    with_setup(|s| {
        let ism = &s.ism;
        let dmb = ism.register_dmb(65536, ism.local_gid()).unwrap();
        let data: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(131) >> 3) as u8)
            .collect();
        let event = s.events[1];
        let seen = event.count();
        let rung_before = ism.stats().doorbells_rung;
        ism.move_data(dmb.token, 32, &data, true).unwrap();
        assert!(
            wait_past(event, seen, Duration::from_secs(2)),
            "no MSI-X for the DMB signal"
        );
        assert_eq!(ism.stats().doorbells_rung, rung_before + 1);
        let mut got = Vec::new();
        ism.poll_events(&mut |e| got.push(e));
        assert_eq!(got, [IsmEvent::DmbSignalled { index: dmb.index }]);
        let mut back = alloc::vec![0u8; data.len()];
        dmb.memory.read(32, &mut back).unwrap();
        assert_eq!(back, data, "bytes read back differ");
        let mut head = [0xFFu8; 32];
        dmb.memory.read(0, &mut head).unwrap();
        assert_eq!(head, [0u8; 32], "registered DMB is zeroed around the write");

        // Bounds and tokens are enforced on the real region too.
        assert_eq!(
            ism.move_data(dmb.token, 65536 - 8, &[0; 9], false),
            Err(IsmError::OutOfBounds)
        );
        assert_eq!(
            ism.move_data(DmbToken(dmb.token.0 ^ (1 << 40)), 0, b"x", false),
            Err(IsmError::InvalidToken)
        );
        let window = ism.attach_dmb(dmb.token).unwrap();
        window.write(0, b"no-copy").unwrap();
        let mut nc = [0u8; 7];
        dmb.memory.read(0, &mut nc).unwrap();
        assert_eq!(&nc, b"no-copy");
        ism.detach_dmb(dmb.token).unwrap();
        ism.unregister_dmb(dmb.token).unwrap();
        assert_eq!(
            ism.move_data(dmb.token, 0, b"stale", true),
            Err(IsmError::InvalidToken)
        );
        kernel::serial_println!(
            "ivshmem: DMB {} ({} bytes) written through BAR2, signalled, read back",
            dmb.index,
            data.len()
        );
    });
}

/// Figures (TCG, so only indicative): bulk `move_data` throughput into a 256 KiB DMB in
/// 64 KiB writes, and the cost of a small `move_data` (token check against the private
/// table, one 8-byte copy). Checks the last bulk write landed.
fn move_data_throughput_and_call_cost() {
    with_setup(|s| {
        let ism = &s.ism;
        const DMB: usize = 256 * 1024;
        const CHUNK: usize = 64 * 1024;
        const TOTAL: usize = 64 << 20;
        let dmb = ism.register_dmb(DMB, ism.local_gid()).unwrap();
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 253) as u8).collect();
        let start = clock::now();
        for n in 0..TOTAL / CHUNK {
            ism.move_data(dmb.token, (n * CHUNK) % DMB, &chunk, false)
                .unwrap();
        }
        let bulk = clock::now().saturating_duration_since(start);
        let mut back = alloc::vec![0u8; CHUNK];
        dmb.memory.read(DMB - CHUNK, &mut back).unwrap();
        assert_eq!(back, chunk);
        const SMALL: u32 = 20_000;
        let start = clock::now();
        for i in 0..SMALL {
            ism.move_data(dmb.token, 8, &u64::from(i).to_le_bytes(), false)
                .unwrap();
        }
        let small = clock::now().saturating_duration_since(start);
        let mut last = [0u8; 8];
        dmb.memory.read(8, &mut last).unwrap();
        assert_eq!(u64::from_le_bytes(last), u64::from(SMALL - 1));
        ism.unregister_dmb(dmb.token).unwrap();
        kernel::serial_println!(
            "ivshmem: move_data {} MiB in {} KiB writes: {} MiB/s; 8-byte move_data: {} ns per call (TCG)",
            TOTAL >> 20,
            CHUNK >> 10,
            (TOTAL as u128 >> 20) * 1_000_000 / bulk.as_micros().max(1),
            small.as_nanos() / u128::from(SMALL)
        );
    });
}
