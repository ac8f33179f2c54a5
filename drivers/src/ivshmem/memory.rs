//! Shared-region access for ivshmem BAR2: volatile copies, 64-bit atomics, windows, host fake.
//!
//! BAR2 is memory every VM on the region may write at any time (protocol-reference §7.3),
//! so it is reached only by copies and atomic words (style practice 10): no `&[u8]` is
//! ever formed over it. [`Bar2Memory`] is the real window (a raw mapped range),
//! [`FakeRegion`] the host fake shared by several simulated guests in one process, and
//! [`Window`] a bounds-checked sub-range of either, which is what a DMB handle is.

use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use smcd::shm::{check_range, check_u64, HeapMemory, SharedMemory, ShmError};

/// Atomic read-modify-write on 64-bit words of a shared region, which the signal
/// bitmaps need on top of [`SharedMemory`]'s loads and stores (architecture.md
/// "Signalling": the sender ORs a bit in, the receiver swaps the word to zero).
///
/// Contract for implementers: same bounds and alignment rules as
/// [`SharedMemory::load_u64`]; the operation is a single atomic RMW honouring `order`.
pub trait AtomicMemory: SharedMemory {
    /// Atomically ORs `bits` into the word at `offset`; returns the previous value.
    fn fetch_or_u64(&self, offset: usize, bits: u64, order: Ordering) -> Result<u64, ShmError>;

    /// Atomically replaces the word at `offset` with `value`; returns the previous value.
    fn swap_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<u64, ShmError>;
}

/// The mapped BAR2 of an ivshmem device: `len` bytes at a fixed virtual address.
///
/// Copies are volatile (8-byte words where the region side is aligned, bytes at the
/// edges); 64-bit word operations use [`AtomicU64`] on the aligned address.
#[derive(Clone, Copy, Debug)]
pub struct Bar2Memory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the handle is a pointer to device memory shared with other VMs; every access
// is a volatile copy or an atomic word operation, which are safe to issue from any core.
unsafe impl Send for Bar2Memory {}
// SAFETY: as above: `&Bar2Memory` only allows those volatile/atomic accesses.
unsafe impl Sync for Bar2Memory {}

impl Bar2Memory {
    /// Wraps the mapped BAR2 range `[addr, addr + len)`. Returns `None` when `addr` is
    /// null or not 8-byte aligned, or when the range would wrap the address space.
    ///
    /// # Safety
    ///
    /// The range must be mapped (write-back: it is RAM on the host) for the rest of the
    /// program, must not overlap memory Rust code accesses in any other way, and is
    /// only ever reached through this type's volatile and atomic accesses.
    pub unsafe fn new(addr: usize, len: usize) -> Option<Self> {
        if !addr.is_multiple_of(8) || addr.checked_add(len).is_none() {
            return None;
        }
        NonNull::new(addr as *mut u8).map(|base| Bar2Memory { base, len })
    }

    /// Pointer to byte `offset`; callers have bounds-checked `offset..offset+n`.
    fn at(&self, offset: usize) -> *mut u8 {
        // `wrapping_add` keeps this safe to compute; callers only dereference in range.
        self.base.as_ptr().wrapping_add(offset)
    }

    /// The atomic word at an offset already checked by [`check_u64`].
    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is in range and 8-aligned relative to an 8-aligned base
        // (`new`), the memory is mapped for the program's lifetime, and all concurrent
        // accesses to it from this image are atomic or volatile (constructor contract).
        unsafe { AtomicU64::from_ptr(self.at(offset).cast::<u64>()) }
    }
}

impl SharedMemory for Bar2Memory {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        check_range(offset, buf.len(), self.len)?;
        let src = self.at(offset);
        let n = buf.len();
        let mut i = 0;
        while i < n && (src as usize).wrapping_add(i) % 8 != 0 {
            // SAFETY: `offset + i < offset + n <= len`: inside the mapped range.
            buf[i] = unsafe { src.add(i).read_volatile() };
            i += 1;
        }
        let rest = &mut buf[i..];
        // SAFETY: `src + i .. src + n` is inside the mapped range (checked above) and
        // 8-aligned at its start; `rest` is exactly the remaining `n - i` bytes of `buf`.
        unsafe { crate::copy::forward_blocks(rest.as_mut_ptr(), src.add(i), rest.len()) };
        Ok(())
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        check_range(offset, data.len(), self.len)?;
        let dst = self.at(offset);
        let n = data.len();
        let mut i = 0;
        while i < n && (dst as usize).wrapping_add(i) % 8 != 0 {
            // SAFETY: `offset + i < offset + n <= len`: inside the mapped range.
            unsafe { dst.add(i).write_volatile(data[i]) };
            i += 1;
        }
        let rest = &data[i..];
        // SAFETY: `dst + i .. dst + n` is inside the mapped range (checked above) and
        // 8-aligned at its start; `rest` is exactly the remaining `n - i` bytes of `data`.
        unsafe { crate::copy::forward_blocks(dst.add(i), rest.as_ptr(), rest.len()) };
        Ok(())
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        check_range(offset, len, self.len)?;
        let dst = self.at(offset);
        let word = u64::from_ne_bytes([value; 8]);
        let mut i = 0;
        while i < len && (dst as usize).wrapping_add(i) % 8 != 0 {
            // SAFETY: `offset + i < offset + len <= self.len`: inside the mapped range.
            unsafe { dst.add(i).write_volatile(value) };
            i += 1;
        }
        while i + 8 <= len {
            // SAFETY: in range as above, and `dst + i` is 8-aligned after the head loop.
            unsafe { dst.add(i).cast::<u64>().write_volatile(word) };
            i += 8;
        }
        while i < len {
            // SAFETY: in range as above.
            unsafe { dst.add(i).write_volatile(value) };
            i += 1;
        }
        Ok(())
    }

    fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        Ok(self.word(offset).load(order))
    }

    fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
        check_u64(offset, self.len)?;
        self.word(offset).store(value, order);
        Ok(())
    }
}

impl AtomicMemory for Bar2Memory {
    fn fetch_or_u64(&self, offset: usize, bits: u64, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        Ok(self.word(offset).fetch_or(bits, order))
    }

    fn swap_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        Ok(self.word(offset).swap(value, order))
    }
}

/// Host fake of a whole ivshmem region, shared (by cloning) between several simulated
/// guests in one process: a handle to one [`HeapMemory`]. Stricter than the hardware in one
/// way: every access, byte or word, takes that buffer's one lock, so the tests see a
/// sequentially consistent region.
#[derive(Clone)]
pub struct FakeRegion {
    memory: Arc<HeapMemory>,
}

impl FakeRegion {
    /// A zeroed region of `len` bytes.
    pub fn new(len: usize) -> Self {
        FakeRegion {
            memory: Arc::new(HeapMemory::new(len)),
        }
    }
}

impl SharedMemory for FakeRegion {
    fn len(&self) -> usize {
        self.memory.len()
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.memory.read(offset, buf)
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        self.memory.write(offset, data)
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        self.memory.fill(offset, len, value)
    }

    fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
        self.memory.load_u64(offset, order)
    }

    fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
        self.memory.store_u64(offset, value, order)
    }
}

impl AtomicMemory for FakeRegion {
    fn fetch_or_u64(&self, offset: usize, bits: u64, _order: Ordering) -> Result<u64, ShmError> {
        self.memory.update_u64(offset, |w| w | bits)
    }

    fn swap_u64(&self, offset: usize, value: u64, _order: Ordering) -> Result<u64, ShmError> {
        self.memory.update_u64(offset, |_| value)
    }
}

/// A bounds-checked window `[base, base + len)` of a region: the memory handle of a DMB
/// (own or attached). Offsets are relative to the window; every access is checked
/// against the window length before it is forwarded to the region, which checks again.
#[derive(Clone, Debug)]
pub struct Window<M> {
    region: M,
    base: usize,
    len: usize,
}

impl<M: SharedMemory> Window<M> {
    /// The window `[base, base + len)` of `region`; fails if it does not fit or if
    /// `base` is not 8-byte aligned (word operations must stay aligned).
    pub fn new(region: M, base: usize, len: usize) -> Result<Self, ShmError> {
        check_range(base, len, region.len())?;
        if !base.is_multiple_of(8) {
            return Err(ShmError::Misaligned { offset: base });
        }
        Ok(Window { region, base, len })
    }

    /// Offset of the window inside the region.
    pub fn base(&self) -> usize {
        self.base
    }
}

impl<M: SharedMemory> SharedMemory for Window<M> {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        check_range(offset, buf.len(), self.len)?;
        self.region.read(self.base + offset, buf)
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        check_range(offset, data.len(), self.len)?;
        self.region.write(self.base + offset, data)
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        check_range(offset, len, self.len)?;
        self.region.fill(self.base + offset, len, value)
    }

    fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        self.region.load_u64(self.base + offset, order)
    }

    fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
        check_u64(offset, self.len)?;
        self.region.store_u64(self.base + offset, value, order)
    }
}

impl<M: AtomicMemory> AtomicMemory for Window<M> {
    fn fetch_or_u64(&self, offset: usize, bits: u64, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        self.region.fetch_or_u64(self.base + offset, bits, order)
    }

    fn swap_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<u64, ShmError> {
        check_u64(offset, self.len)?;
        self.region.swap_u64(self.base + offset, value, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// A Bar2Memory over a leaked heap buffer of u64 words (8-aligned), for host tests.
    fn bar2_over_heap(words: usize) -> Bar2Memory {
        let buf: &'static mut [u64] = Box::leak(vec![0u64; words].into_boxed_slice());
        // SAFETY: the leaked buffer lives for the rest of the test process, is 8-aligned,
        // and is only reached through the returned handle.
        unsafe { Bar2Memory::new(buf.as_mut_ptr() as usize, words * 8) }.unwrap()
    }

    #[test]
    fn bar2_constructor_refuses_bad_addresses() {
        // SAFETY: `new` refuses these before any access could happen.
        assert!(unsafe { Bar2Memory::new(0, 64) }.is_none());
        // SAFETY: as above (misaligned).
        assert!(unsafe { Bar2Memory::new(0x1004, 64) }.is_none());
        // SAFETY: as above (wraps).
        assert!(unsafe { Bar2Memory::new(usize::MAX - 7, 64) }.is_none());
    }

    #[test]
    fn bar2_bounds_and_atomics() {
        let m = bar2_over_heap(8);
        assert_eq!(m.len(), 64);
        assert_eq!(
            m.write(60, &[1, 2, 3, 4, 5]),
            Err(ShmError::OutOfBounds {
                offset: 60,
                len: 5,
                region_len: 64
            })
        );
        assert!(m.read(usize::MAX, &mut [0u8; 1]).is_err());
        assert!(m.fill(1, 64, 0).is_err());
        assert_eq!(
            m.load_u64(3, Ordering::Acquire),
            Err(ShmError::Misaligned { offset: 3 })
        );
        assert!(m.load_u64(64, Ordering::Acquire).is_err());
        m.store_u64(8, 0x10, Ordering::Release).unwrap();
        assert_eq!(m.fetch_or_u64(8, 0x3, Ordering::AcqRel), Ok(0x10));
        assert_eq!(m.swap_u64(8, 0, Ordering::AcqRel), Ok(0x13));
        assert_eq!(m.load_u64(8, Ordering::Acquire), Ok(0));
        assert!(m.fetch_or_u64(60, 1, Ordering::AcqRel).is_err());
    }

    #[test]
    fn window_is_relative_and_checked() {
        let region = FakeRegion::new(256);
        let w = Window::new(region.clone(), 64, 64).unwrap();
        w.write(0, b"hello").unwrap();
        let mut out = [0u8; 5];
        region.read(64, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert!(w.write(60, b"hello").is_err());
        assert!(w.load_u64(64, Ordering::Acquire).is_err());
        assert_eq!(w.fetch_or_u64(8, 1, Ordering::AcqRel), Ok(0));
        assert_eq!(region.load_u64(72, Ordering::Acquire), Ok(1));
        assert!(Window::new(region.clone(), 200, 64).is_err());
        assert!(Window::new(region, 4, 8).is_err());
    }

    proptest! {
        /// Region copies at every alignment and length (32-byte blocks, words, bytes;
        /// misaligned heap buffers too) agree with a plain model.
        #[test]
        fn bar2_copies_match_model(
            writes in proptest::collection::vec((0usize..512, 0usize..8, proptest::collection::vec(any::<u8>(), 0..200)), 1..20),
            fills in proptest::collection::vec((0usize..512, 0usize..40, any::<u8>()), 0..5),
        ) {
            let m = bar2_over_heap(64);
            let mut model = vec![0u8; 512];
            for (off, skew, data) in &writes {
                // The heap side at every alignment: write from `data[skew..]`.
                let data = &data[(*skew).min(data.len())..];
                let r = m.write(*off, data);
                if off + data.len() <= 512 {
                    prop_assert!(r.is_ok());
                    model[*off..off + data.len()].copy_from_slice(data);
                } else {
                    prop_assert!(r.is_err());
                }
            }
            for (off, len, v) in &fills {
                if off + len <= 512 {
                    m.fill(*off, *len, *v).unwrap();
                    model[*off..off + len].fill(*v);
                } else {
                    prop_assert!(m.fill(*off, *len, *v).is_err());
                }
            }
            for start in 0..16usize {
                for skew in 0..8usize {
                    let mut out: Vec<u8> = vec![0; 512 - start + skew];
                    m.read(start, &mut out[skew..]).unwrap();
                    prop_assert_eq!(&out[skew..], &model[start..]);
                }
            }
        }
    }
}
