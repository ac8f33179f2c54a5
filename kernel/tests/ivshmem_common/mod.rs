//! Shared bring-up of the ivshmem ISM for the in-QEMU tests `ivshmem_*.rs` (not a test itself).
//!
//! Finds the ivshmem-doorbell function, programs its two MSI-X entries (0 control,
//! 1 DMB signal) to executor interrupt events, maps BAR0 uncached and BAR2 write-back,
//! and brings up `drivers::ivshmem::IvshmemIsm` with RDRAND tokens.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use alloc::vec::Vec;
use core::time::Duration;

use drivers::ivshmem::device::{IvshmemDevice, DEVICE_ID, MSIX_ENTRIES, VENDOR_ID};
use drivers::ivshmem::{Bar0, Bar2Memory, IvshmemIsm, RdRandRng};
use kernel::executor::{self, InterruptEvent};
use kernel::msix::MsixTable;
use kernel::pci;
use kernel::{clock, memory, platform};
use smcd::ism::{IsmDevice, IsmEvent};

/// The ISM type on real hardware.
pub type Ism = IvshmemIsm<Bar2Memory, Bar0, RdRandRng>;

/// Everything a test needs after bring-up.
pub struct Setup {
    /// The mapped PCI function.
    pub device: IvshmemDevice,
    /// The ISM device on it.
    pub ism: Ism,
    /// MSI-X table kept alive (and programmed) for the whole run.
    _table: MsixTable,
    /// Interrupt events of MSI-X entries 0 (control) and 1 (DMB signal).
    pub events: [&'static InterruptEvent; 2],
    /// Size of BAR2.
    pub bar2_size: u64,
}

/// Brings the device up (see the module docs); panics with a clear message on failure.
pub fn setup() -> Setup {
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
    // BAR2 is host RAM shared with the server and the other VMs: write-back, like RAM.
    let region = memory::map_mmio_cached(bar2, bar2_size).unwrap();
    // SAFETY: `regs` maps this device's BAR0 uncached and `region` its whole BAR2, both
    // for the rest of the run; nothing else in the test touches either range.
    let device = unsafe { IvshmemDevice::new(regs as usize, region as usize, bar2_size as usize) }
        .expect("mapped BARs are aligned");
    let rng = RdRandRng::new().expect("RDRAND (QEMU -cpu max provides it)");
    let ism = device
        .into_ism(rng, table.len())
        .unwrap_or_else(|e| panic!("{e}"));
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
pub fn wait_past(event: &'static InterruptEvent, seen: u64, timeout: Duration) -> bool {
    executor::run_until(executor::with_deadline(
        clock::now() + timeout,
        event.wait(seen),
    ))
    .is_ok()
}

/// Polls the device and, while `want` has not matched an event, sleeps on either MSI-X
/// entry until `deadline`. The interrupt counts are taken before each poll, so an
/// interrupt between the poll and the wait is not lost. Returns whether `want` matched
/// before the deadline; a match found only by a poll after the deadline does not count
/// (so a broken interrupt path fails instead of passing slowly).
pub fn wait_for_event(
    s: &Setup,
    deadline: clock::Instant,
    mut want: impl FnMut(IsmEvent) -> bool,
) -> bool {
    loop {
        let seen = [s.events[0].count(), s.events[1].count()];
        let mut hit = false;
        s.ism.poll_events(&mut |e| hit |= want(e));
        if hit {
            return true;
        }
        if clock::now() >= deadline {
            return false;
        }
        let [e0, e1] = s.events;
        let either = async move {
            let (a, b) = (
                core::pin::pin!(e0.wait(seen[0])),
                core::pin::pin!(e1.wait(seen[1])),
            );
            futures_util::future::select(a, b).await;
        };
        if executor::run_until(executor::with_deadline(deadline, either)).is_err() {
            return false;
        }
    }
}
