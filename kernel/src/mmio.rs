//! The one module with raw volatile memory access: device registers and shared memory that
//! is not covered by a typed register block (house style, "unsafe hygiene").
//!
//! Every function takes an identity-mapped physical address; callers map it first with
//! [`crate::memory::map_mmio`] / [`crate::memory::map_mmio_cached`].

macro_rules! rw {
    ($read:ident, $write:ident, $t:ty) => {
        /// Volatile read of one naturally aligned value.
        ///
        /// # Safety
        /// `addr` must be mapped, aligned for the type, and reading it must have no effect
        /// the caller has not accounted for (device register side effects).
        #[inline]
        pub unsafe fn $read(addr: u64) -> $t {
            // SAFETY: guaranteed by the caller (see `# Safety`).
            unsafe { (addr as *const $t).read_volatile() }
        }

        /// Volatile write of one naturally aligned value.
        ///
        /// # Safety
        /// `addr` must be mapped, aligned for the type, and not alias memory Rust owns.
        #[inline]
        pub unsafe fn $write(addr: u64, value: $t) {
            // SAFETY: guaranteed by the caller (see `# Safety`).
            unsafe { (addr as *mut $t).write_volatile(value) }
        }
    };
}

rw!(read8, write8, u8);
rw!(read16, write16, u16);
rw!(read32, write32, u32);
rw!(read64, write64, u64);

/// Copies `dst.len()` bytes from device/shared memory at `src` with volatile accesses
/// (aligned 8-byte words where possible), so the compiler neither elides nor tears them
/// into reads of memory outside the range.
///
/// # Safety
/// `[src, src + dst.len())` must be mapped and readable without side effects.
pub unsafe fn copy_from(dst: &mut [u8], src: u64) {
    let mut i = 0;
    while i < dst.len() {
        let a = src + i as u64;
        if a.is_multiple_of(8) && dst.len() - i >= 8 {
            // SAFETY: in range and aligned (checked above), caller guarantees mapping.
            let w = unsafe { read64(a) };
            dst[i..i + 8].copy_from_slice(&w.to_le_bytes());
            i += 8;
        } else {
            // SAFETY: in range, caller guarantees mapping.
            dst[i] = unsafe { read8(a) };
            i += 1;
        }
    }
}

/// Copies `src` into device/shared memory at `dst` with volatile accesses.
///
/// # Safety
/// `[dst, dst + src.len())` must be mapped, writable and not alias memory Rust owns.
pub unsafe fn copy_to(dst: u64, src: &[u8]) {
    let mut i = 0;
    while i < src.len() {
        let a = dst + i as u64;
        if a.is_multiple_of(8) && src.len() - i >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&src[i..i + 8]);
            // SAFETY: in range and aligned (checked above), caller guarantees mapping.
            unsafe { write64(a, u64::from_le_bytes(w)) };
            i += 8;
        } else {
            // SAFETY: in range, caller guarantees mapping.
            unsafe { write8(a, src[i]) };
            i += 1;
        }
    }
}

/// Fills `[dst, dst + len)` with `value` using volatile writes.
///
/// # Safety
/// As for [`copy_to`].
pub unsafe fn fill(dst: u64, value: u8, len: usize) {
    for i in 0..len as u64 {
        // SAFETY: caller guarantees the range is mapped and writable.
        unsafe { write8(dst + i, value) };
    }
}
