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

use drivers::ivshmem::device::{IvshmemDevice, DEVICE_ID, MSIX_ENTRIES, VECTOR_DMB, VENDOR_ID};
use drivers::ivshmem::{Bar0, Bar2Memory, IvshmemIsm, RdRandRng};
use kernel::executor::{self, InterruptEvent};
use kernel::msix::MsixTable;
use kernel::pci;
use kernel::{clock, memory, platform};
use smcd::ism::{DmbToken, IsmDevice, IsmError, IsmEvent};
use smcd::shm::SharedMemory;

kernel::test_main!(
    region_is_validated_and_directory_gives_our_gid,
    own_doorbell_delivers_every_ring,
    move_data_into_own_dmb_signals_and_reads_back,
);

/// Rings of the doorbell test (each awaited before the next).
const RINGS: u64 = 1000;

type Ism = IvshmemIsm<Bar2Memory, Bar0, RdRandRng>;

struct Setup {
    device: IvshmemDevice,
    ism: Ism,
    /// MSI-X table kept alive (and programmed) for the whole run.
    _table: MsixTable,
    /// Interrupt events of MSI-X entries 0 (control) and 1 (DMB signal).
    events: [&'static InterruptEvent; 2],
    bar2_size: u64,
}

static SETUP: spin::Mutex<Option<Setup>> = spin::Mutex::new(None);

fn with_setup<R>(f: impl FnOnce(&mut Setup) -> R) -> R {
    let mut guard = SETUP.lock();
    if guard.is_none() {
        *guard = Some(setup());
    }
    f(guard.as_mut().expect("set up above"))
}

fn setup() -> Setup {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let dev = pci::find(VENDOR_ID, DEVICE_ID).next().expect(
        "no ivshmem-doorbell device: qemu-run.sh must source kernel/tests/profiles-ivshmem.sh",
    );
    let (bar0, bar0_size) = dev.memory_bar(0).expect("ivshmem BAR0");
    let (bar2, bar2_size) = dev.memory_bar(2).expect("ivshmem BAR2");
    dev.enable_memory_and_bus_master().unwrap();
    let mut table = MsixTable::new(dev).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table.len(),
        MSIX_ENTRIES,
        "the profile gives the device 2 vectors"
    );
    let mut events = Vec::new();
    for entry in 0..MSIX_ENTRIES {
        let (vector, event) = executor::allocate_interrupt().expect("free vector");
        table.set_vector(entry, vector).unwrap();
        table.unmask(entry).unwrap();
        events.push(event);
    }
    table.enable().unwrap();
    let regs = memory::map_mmio(bar0, bar0_size).unwrap();
    // BAR2 is host RAM shared with the server: write-back, like any RAM.
    let region = memory::map_mmio_cached(bar2, bar2_size).unwrap();
    // SAFETY: `regs` maps this device's BAR0 uncached and `region` its whole BAR2, both
    // for the rest of the run; nothing else in this test touches either range.
    let device = unsafe { IvshmemDevice::new(regs as usize, region as usize, bar2_size as usize) }
        .expect("mapped BARs are aligned");
    let rng = RdRandRng::new().expect("RDRAND (QEMU -cpu max provides it)");
    let ism = device.into_ism(rng).unwrap_or_else(|e| panic!("{e}"));
    kernel::serial_println!(
        "ivshmem: peer {} gid {:016x}:{:016x} chid {:#06x}, region {} bytes at {bar2:#x}",
        ism.peer_id(),
        ism.local_gid().gid,
        ism.local_gid().gid_ext,
        ism.chid(),
        bar2_size
    );
    Setup {
        device,
        ism,
        _table: table,
        events: [events[0], events[1]],
        bar2_size,
    }
}

/// Waits (bounded) until `event` has counted past `seen`.
fn wait_past(event: &'static InterruptEvent, seen: u64, timeout: Duration) -> bool {
    executor::run_until(executor::with_deadline(
        clock::now() + timeout,
        event.wait(seen),
    ))
    .is_ok()
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
