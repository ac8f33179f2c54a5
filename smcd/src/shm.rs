//! Copy-in/copy-out access to memory that another party may write at any time.
//!
//! A DMB lives in memory that a peer (another VM, or another connection in this image)
//! writes concurrently. Forming `&[u8]`/`&mut [u8]` over such memory is a data race in
//! Rust's model, so smcd never does: it reaches shared memory only through the
//! [`SharedMemory`] trait, which copies bytes in and out (the bare-metal implementations
//! use volatile copies) and loads/stores 64-bit words atomically with a stated ordering.
//!
//! Every access is bounds-checked against [`SharedMemory::len`]; an out-of-range access
//! is an error, never a panic and never a touch outside the region.

use core::sync::atomic::Ordering;

/// An access fell outside the shared region, or a 64-bit access was misaligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmError {
    /// `offset + len` exceeds the region length.
    OutOfBounds {
        /// Start of the rejected access.
        offset: usize,
        /// Length of the rejected access.
        len: usize,
        /// Length of the region.
        region_len: usize,
    },
    /// A 64-bit atomic access at an offset that is not a multiple of 8.
    Misaligned {
        /// Offset of the rejected access.
        offset: usize,
    },
}

impl core::fmt::Display for ShmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShmError::OutOfBounds {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "shared-memory access {offset}+{len} outside region of {region_len} bytes"
            ),
            ShmError::Misaligned { offset } => {
                write!(
                    f,
                    "64-bit shared-memory access at misaligned offset {offset}"
                )
            }
        }
    }
}

/// Checks that `offset..offset + len` lies inside a region of `region_len` bytes.
pub fn check_range(offset: usize, len: usize, region_len: usize) -> Result<(), ShmError> {
    match offset.checked_add(len) {
        Some(end) if end <= region_len => Ok(()),
        _ => Err(ShmError::OutOfBounds {
            offset,
            len,
            region_len,
        }),
    }
}

/// Checks a 64-bit atomic access: in range and 8-byte aligned (relative to the region
/// start; implementations guarantee the region start itself is 8-byte aligned).
pub fn check_u64(offset: usize, region_len: usize) -> Result<(), ShmError> {
    if !offset.is_multiple_of(8) {
        return Err(ShmError::Misaligned { offset });
    }
    check_range(offset, 8, region_len)
}

/// A region of memory shared with a peer, reached only by copies and atomic words.
///
/// Implementations: a heap buffer (loopback ISM, host tests), an ivshmem BAR2 window and
/// a virtio-ism region (in `drivers`, with volatile copies).
///
/// Contract for implementers: the region start is 8-byte aligned; `read`/`write` copy
/// exactly the requested bytes or fail without touching anything; the 64-bit operations
/// are single-copy atomic and honour `order`.
pub trait SharedMemory {
    /// Length of the region in bytes.
    fn len(&self) -> usize;

    /// True when the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the region into `buf`.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError>;

    /// Copies `data` into the region starting at `offset`.
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError>;

    /// Sets `len` bytes starting at `offset` to `value`.
    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError>;

    /// Loads the 8-byte-aligned 64-bit word at `offset` atomically (native byte order).
    fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError>;

    /// Stores the 8-byte-aligned 64-bit word at `offset` atomically (native byte order).
    fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError>;
}

macro_rules! forward_shared_memory {
    ($($ty:ty),*) => {$(
        impl<M: SharedMemory + ?Sized> SharedMemory for $ty {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
                (**self).read(offset, buf)
            }
            fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
                (**self).write(offset, data)
            }
            fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
                (**self).fill(offset, len, value)
            }
            fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
                (**self).load_u64(offset, order)
            }
            fn store_u64(
                &self,
                offset: usize,
                value: u64,
                order: Ordering,
            ) -> Result<(), ShmError> {
                (**self).store_u64(offset, value, order)
            }
        }
    )*};
}

// Shared handles to a region are regions too (the loopback device hands out
// `Arc<HeapMemory>`; tests pass `&HeapMemory`).
forward_shared_memory!(&M, alloc::sync::Arc<M>);

/// A bounds-checked window `[offset, offset + len)` into a [`SharedMemory`] region.
///
/// This is the "volatile-slice" type of the zero-copy API: it hands out access to bytes
/// in a DMB without ever forming a Rust reference to them. Offsets passed to its methods
/// are relative to the window start and checked against the window length.
#[derive(Clone, Copy)]
pub struct ShmSlice<'a, M: SharedMemory + ?Sized> {
    memory: &'a M,
    offset: usize,
    len: usize,
}

impl<'a, M: SharedMemory + ?Sized> ShmSlice<'a, M> {
    /// Creates the window `[offset, offset + len)` of `memory`, checking it fits.
    pub fn new(memory: &'a M, offset: usize, len: usize) -> Result<Self, ShmError> {
        check_range(offset, len, memory.len())?;
        Ok(ShmSlice {
            memory,
            offset,
            len,
        })
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the window has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the window inside the underlying region.
    pub fn region_offset(&self) -> usize {
        self.offset
    }

    /// A sub-window `[start, start + len)` of this window.
    pub fn subslice(&self, start: usize, len: usize) -> Result<Self, ShmError> {
        check_range(start, len, self.len)?;
        Ok(ShmSlice {
            memory: self.memory,
            offset: self.offset + start,
            len,
        })
    }

    /// Copies bytes out of the window, starting `at` bytes into it.
    pub fn read_at(&self, at: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        check_range(at, buf.len(), self.len)?;
        self.memory.read(self.offset + at, buf)
    }

    /// Copies bytes into the window, starting `at` bytes into it.
    pub fn write_at(&self, at: usize, data: &[u8]) -> Result<(), ShmError> {
        check_range(at, data.len(), self.len)?;
        self.memory.write(self.offset + at, data)
    }
}

/// A plain heap buffer implementing [`SharedMemory`]; the host fake and the backing
/// store of the loopback ISM device. A spin lock gives interior mutability, so it is
/// usable through `&self` on one core and in multi-threaded host tests alike; the lock
/// also makes the 64-bit word operations atomic with respect to every other access.
pub struct HeapMemory {
    len: usize,
    bytes: spin::Mutex<alloc::boxed::Box<[u8]>>,
}

impl HeapMemory {
    /// A zeroed region of `len` bytes.
    pub fn new(len: usize) -> Self {
        HeapMemory {
            len,
            bytes: spin::Mutex::new(alloc::vec![0u8; len].into_boxed_slice()),
        }
    }
}

impl core::fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapMemory")
            .field("len", &self.len())
            .finish()
    }
}

impl HeapMemory {
    /// Atomically replaces the 8-byte-aligned word at `offset` with `f(old)` and returns
    /// `old` (native byte order). The lock makes the read-modify-write indivisible with
    /// respect to every other access; fakes build `fetch_or`/`swap` on it.
    pub fn update_u64(&self, offset: usize, f: impl FnOnce(u64) -> u64) -> Result<u64, ShmError> {
        let mut bytes = self.bytes.lock();
        check_u64(offset, bytes.len())?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[offset..offset + 8]);
        let old = u64::from_ne_bytes(word);
        bytes[offset..offset + 8].copy_from_slice(&f(old).to_ne_bytes());
        Ok(old)
    }
}

impl SharedMemory for HeapMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        let bytes = self.bytes.lock();
        check_range(offset, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[offset..offset + buf.len()]);
        Ok(())
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        let mut bytes = self.bytes.lock();
        check_range(offset, data.len(), bytes.len())?;
        bytes[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        let mut bytes = self.bytes.lock();
        check_range(offset, len, bytes.len())?;
        bytes[offset..offset + len].fill(value);
        Ok(())
    }

    fn load_u64(&self, offset: usize, _order: Ordering) -> Result<u64, ShmError> {
        let bytes = self.bytes.lock();
        check_u64(offset, bytes.len())?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[offset..offset + 8]);
        Ok(u64::from_ne_bytes(word))
    }

    fn store_u64(&self, offset: usize, value: u64, _order: Ordering) -> Result<(), ShmError> {
        let mut bytes = self.bytes.lock();
        check_u64(offset, bytes.len())?;
        bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_memory_bounds_are_checked() {
        let m = HeapMemory::new(64);
        assert_eq!(m.write(60, &[1, 2, 3, 4]), Ok(()));
        assert_eq!(
            m.write(61, &[1, 2, 3, 4]),
            Err(ShmError::OutOfBounds {
                offset: 61,
                len: 4,
                region_len: 64
            })
        );
        assert_eq!(
            m.read(usize::MAX, &mut [0u8; 2]),
            Err(ShmError::OutOfBounds {
                offset: usize::MAX,
                len: 2,
                region_len: 64
            })
        );
        assert_eq!(
            m.load_u64(4, Ordering::Acquire),
            Err(ShmError::Misaligned { offset: 4 })
        );
        assert_eq!(m.store_u64(56, 0xdead_beef, Ordering::Release), Ok(()));
        assert_eq!(m.load_u64(56, Ordering::Acquire), Ok(0xdead_beef));
        assert_eq!(m.update_u64(56, |w| w | 0x1_0000_0000), Ok(0xdead_beef));
        assert_eq!(m.load_u64(56, Ordering::Acquire), Ok(0x1_dead_beef));
        assert_eq!(
            m.update_u64(60, |w| w),
            Err(ShmError::Misaligned { offset: 60 })
        );
        assert!(m.update_u64(64, |w| w).is_err(), "word past the end");
    }

    #[test]
    fn slice_window_is_relative_and_checked() {
        let m = HeapMemory::new(100);
        let w = ShmSlice::new(&m, 32, 68).unwrap();
        w.write_at(0, b"abc").unwrap();
        let mut out = [0u8; 3];
        m.read(32, &mut out).unwrap();
        assert_eq!(&out, b"abc");
        assert!(w.write_at(66, b"abc").is_err());
        assert!(w.subslice(60, 9).is_err());
        assert!(ShmSlice::new(&m, 90, 11).is_err());
    }
}
