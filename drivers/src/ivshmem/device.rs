//! The ivshmem-doorbell PCI function once the platform has mapped its BARs (protocol-reference §7.1).
//!
//! `drivers` never depends on `kernel` (style practice 1): the kernel finds the PCI
//! function (vendor [`VENDOR_ID`], device [`DEVICE_ID`]), maps BAR0 uncached and BAR2
//! write-back (it is host RAM), programs MSI-X entries [`VECTOR_CONTROL`] and
//! [`VECTOR_DMB`] to its interrupt vectors, and hands the mapped addresses to
//! [`IvshmemDevice::new`]. Both interrupts mean "call `poll_events`": the DMB vector
//! for signals, the control vector after the server changed the directory. The
//! handlers themselves only wake the task that polls (style practice 14).

use rand_core::TryRngCore;

pub use ivshmem_region::{VECTOR_CONTROL, VECTOR_DMB};

use super::ism::{IvshmemError, IvshmemIsm};
use super::memory::Bar2Memory;
use super::regs::{Bar0, BAR0_SIZE};

/// PCI vendor ID of ivshmem (Red Hat / virtio range).
pub const VENDOR_ID: u16 = 0x1AF4;
/// PCI device ID of ivshmem (plain and doorbell variants alike).
pub const DEVICE_ID: u16 = 0x1110;
/// MSI-X table entries the ISM uses (control and DMB signal).
pub const MSIX_ENTRIES: u16 = ivshmem_region::VECTORS as u16;

/// A mapped ivshmem-doorbell function: its registers and its shared region.
#[derive(Clone, Copy, Debug)]
pub struct IvshmemDevice {
    registers: Bar0,
    region: Bar2Memory,
}

impl IvshmemDevice {
    /// Wraps the device whose BAR0 is mapped at `bar0` and BAR2 (`bar2_len` bytes) at
    /// `bar2`. `None` if an address is null or misaligned (BAR0 4-byte, BAR2 8-byte).
    ///
    /// # Safety
    ///
    /// `bar0` must map the device's BAR0 ([`BAR0_SIZE`] bytes) uncached and `bar2` its
    /// whole BAR2, both for the rest of the program, and neither range may be accessed
    /// other than through the returned handles (see [`Bar0::new`], [`Bar2Memory::new`]).
    pub unsafe fn new(bar0: usize, bar2: usize, bar2_len: usize) -> Option<Self> {
        const _: () = assert!(BAR0_SIZE == 256);
        // SAFETY: forwarded from this function's contract.
        let registers = unsafe { Bar0::new(bar0) }?;
        // SAFETY: forwarded from this function's contract.
        let region = unsafe { Bar2Memory::new(bar2, bar2_len) }?;
        Some(IvshmemDevice { registers, region })
    }

    /// The register block.
    pub fn registers(&self) -> Bar0 {
        self.registers
    }

    /// The shared region.
    pub fn region(&self) -> Bar2Memory {
        self.region
    }

    /// Our peer ID (IVPosition).
    pub fn peer_id(&self) -> u16 {
        self.registers.iv_position()
    }

    /// Brings up the ISM device on this function (see [`IvshmemIsm::new`]).
    /// `msix_entries` is the size of the function's MSI-X table (0 without the
    /// capability): fewer than [`MSIX_ENTRIES`] is refused with
    /// [`IvshmemError::NoDoorbell`], because a function without doorbells reads
    /// IVPosition 0 and would pose as peer 0.
    pub fn into_ism<R: TryRngCore>(
        self,
        rng: R,
        msix_entries: u16,
    ) -> Result<IvshmemIsm<Bar2Memory, Bar0, R>, IvshmemError> {
        if msix_entries < MSIX_ENTRIES {
            return Err(IvshmemError::NoDoorbell { msix_entries });
        }
        let id = self.peer_id();
        IvshmemIsm::new(self.region, self.registers, rng, id)
    }
}

// The kernel keeps the device in a global and polls it from tasks: it must be shareable.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<IvshmemIsm<Bar2Memory, Bar0, super::rng::RdRandRng>>();
    send_sync::<IvshmemDevice>();
};
