//! ivshmem BAR0: the 256-byte register block as a typed volatile struct (protocol-reference §7.1).
//!
//! QEMU implements only 4-byte accesses to these registers; every field is a `u32` and
//! is reached through the `volatile` crate's per-field accessors, with the access rights
//! the device documents (IVPosition read-only, Doorbell write-only). Raw volatile pointer
//! reads of device registers appear nowhere else in the ivshmem driver.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use volatile::access::{NoAccess, ReadOnly, WriteOnly};
use volatile::{VolatileFieldAccess, VolatilePtr};

/// Size of the BAR0 register block in bytes (protocol-reference §7.1).
pub const BAR0_SIZE: usize = 256;

/// Doorbell vectors must stay below this: QEMU uses only bits 7–0 of the vector field
/// (`val & 0xff`, protocol-reference §7.1), so a larger vector would silently alias.
pub const MAX_VECTORS: u16 = 256;

/// The ivshmem BAR0 register layout (protocol-reference §7.1, QEMU `docs/specs/ivshmem-spec.rst`).
#[repr(C)]
#[derive(VolatileFieldAccess)]
pub struct IvshmemRegisters {
    /// Offset 0: interrupt mask; used by revision 0 (INTx) only, reserved in revision 1.
    intr_mask: u32,
    /// Offset 4: interrupt status; revision 0 only (set on a peer interrupt, cleared by read).
    intr_status: u32,
    /// Offset 8: own peer id (0–65535); 0 when the device is not configured for interrupts.
    #[access(ReadOnly)]
    iv_position: u32,
    /// Offset 12: bits 31–16 destination peer id, bits 15–0 vector (QEMU: bits 7–0).
    #[access(WriteOnly)]
    doorbell: u32,
    /// Offsets 16–255: reserved.
    #[access(NoAccess)]
    reserved: [u32; 60],
}

const _: () = assert!(core::mem::offset_of!(IvshmemRegisters, intr_mask) == 0);
const _: () = assert!(core::mem::offset_of!(IvshmemRegisters, intr_status) == 4);
const _: () = assert!(core::mem::offset_of!(IvshmemRegisters, iv_position) == 8);
const _: () = assert!(core::mem::offset_of!(IvshmemRegisters, doorbell) == 12);
const _: () = assert!(core::mem::size_of::<IvshmemRegisters>() == BAR0_SIZE);

/// A doorbell value refused before it reaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorbellError {
    /// The vector does not fit the 8 bits QEMU honours.
    VectorTooLarge(u16),
}

impl core::fmt::Display for DoorbellError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DoorbellError::VectorTooLarge(v) => {
                write!(
                    f,
                    "ivshmem doorbell vector {v} >= {MAX_VECTORS} (QEMU uses bits 7-0)"
                )
            }
        }
    }
}

/// Encodes a Doorbell register value: destination peer in bits 31–16, vector in 15–0.
pub fn doorbell_value(peer: u16, vector: u16) -> Result<u32, DoorbellError> {
    if vector >= MAX_VECTORS {
        return Err(DoorbellError::VectorTooLarge(vector));
    }
    Ok((u32::from(peer) << 16) | u32::from(vector))
}

/// Handle to a mapped ivshmem BAR0.
///
/// The handle is a plain pointer to device registers: copying it is fine, and it may be
/// used from interrupt context (each access is one 4-byte volatile load or store).
#[derive(Clone, Copy, Debug)]
pub struct Bar0 {
    regs: NonNull<IvshmemRegisters>,
}

// SAFETY: `Bar0` only performs single 32-bit volatile MMIO accesses to device registers,
// which the device serialises itself; no Rust memory is shared through it.
unsafe impl Send for Bar0 {}
// SAFETY: as above; `&Bar0` permits nothing beyond those independent register accesses.
unsafe impl Sync for Bar0 {}

impl Bar0 {
    /// Wraps the BAR0 register block mapped at virtual address `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be the virtual address of an ivshmem BAR0 (at least [`BAR0_SIZE`]
    /// bytes), mapped uncached, 4-byte aligned, and stay mapped for the rest of the
    /// program; nothing else may treat that range as ordinary memory.
    pub unsafe fn new(addr: usize) -> Option<Self> {
        if !addr.is_multiple_of(4) {
            return None;
        }
        NonNull::new(addr as *mut IvshmemRegisters).map(|regs| Bar0 { regs })
    }

    fn ptr(&self) -> VolatilePtr<'_, IvshmemRegisters> {
        // SAFETY: `new`'s contract: `regs` points at a live, mapped register block for
        // the program's lifetime and is only accessed volatilely.
        unsafe { VolatilePtr::new(self.regs) }
    }

    /// Own peer id (the IVPosition register). 0 both for peer 0 and for "not configured
    /// for interrupts" — the device cannot tell them apart (protocol-reference §7.1).
    pub fn iv_position(&self) -> u16 {
        // The register holds 0–65535; the upper half is always zero on QEMU.
        (self.ptr().iv_position().read() & 0xFFFF) as u16
    }

    /// Rings `vector` (< 256) of peer `peer`. The device ignores it if the peer or the
    /// vector is not connected. Counted in [`doorbell_totals`].
    pub fn ring(&self, peer: u16, vector: u16) -> Result<(), DoorbellError> {
        let value = doorbell_value(peer, vector)?;
        let start = rdtsc();
        self.ptr().doorbell().write(value);
        RING_CYCLES.fetch_add(rdtsc().wrapping_sub(start), Ordering::Relaxed);
        RINGS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// TSC cycles spent writing doorbells (all devices) and how many were written, for the
/// apps' `profile` objects. Under QEMU the write is a trapped MMIO access during which
/// QEMU writes the peer's eventfd, waking the peer's QEMU: under TCG on our 2-core host
/// that write takes ~22 µs, the largest single cost of a message in interrupt mode.
pub fn doorbell_totals() -> (u64, u64) {
    (
        RING_CYCLES.load(Ordering::Relaxed),
        RINGS.load(Ordering::Relaxed),
    )
}

static RING_CYCLES: AtomicU64 = AtomicU64::new(0);
static RINGS: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter (no memory access, no side
    // effects); the kernel runs in ring 0, so CR4.TSD cannot fault it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_value_layout() {
        assert_eq!(doorbell_value(0, 0), Ok(0));
        assert_eq!(doorbell_value(3, 1), Ok(0x0003_0001));
        assert_eq!(doorbell_value(0xFFFF, 255), Ok(0xFFFF_00FF));
        assert_eq!(
            doorbell_value(1, 256),
            Err(DoorbellError::VectorTooLarge(256))
        );
    }

    #[test]
    fn bar0_accesses_the_right_offsets() {
        // A heap stand-in for the register block: 64 words, checked after each access.
        let mut words = [0u32; 64];
        words[2] = 0x0000_0007; // IVPosition
        let bar = unsafe_bar(&mut words);
        assert_eq!(bar.iv_position(), 7);
        bar.ring(0x0102, 1).unwrap();
        assert_eq!(bar.ring(1, 300), Err(DoorbellError::VectorTooLarge(300)));
        assert_eq!(words[3], 0x0102_0001);
        assert_eq!(words[0], 0);
        assert_eq!(words[1], 0);
        assert!(words[4..].iter().all(|&w| w == 0));
    }

    fn unsafe_bar(words: &mut [u32; 64]) -> Bar0 {
        // SAFETY: `words` is a 256-byte, 4-aligned buffer that outlives every use of the
        // returned handle in the calling test (the test reads it only after the accesses).
        unsafe { Bar0::new(words.as_mut_ptr() as usize) }.unwrap()
    }
}
