//! Private allocator for DMBs inside this guest's own area of the region.
//!
//! Architecture guide "The ivshmem region": peer *i* places its DMBs only inside area
//! *i*, and the allocator state lives in guest-private memory, never in the shared
//! region, so nothing a peer writes there can confuse it. First fit over a free list
//! kept sorted by offset; neighbours are merged on free.

use alloc::collections::BTreeMap;
use core::ops::Range;

/// Alignment of every DMB start (and granule of every DMB length): a cache line, which
/// also keeps 64-bit words of a DMB aligned (the CDC header is read as atomics).
pub const DMB_ALIGN: usize = 64;

/// First-fit allocator over one contiguous range of region offsets.
#[derive(Debug, Clone)]
pub struct AreaAllocator {
    span: Range<usize>,
    /// Free blocks: start -> length, disjoint and never adjacent (merged on free).
    free: BTreeMap<usize, usize>,
}

impl AreaAllocator {
    /// An allocator owning `span` (region offsets). The start is rounded up and the end
    /// down to [`DMB_ALIGN`].
    pub fn new(span: Range<usize>) -> Self {
        let start = span.start.div_ceil(DMB_ALIGN) * DMB_ALIGN;
        let end = span.end / DMB_ALIGN * DMB_ALIGN;
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        AreaAllocator {
            span: start..end.max(start),
            free,
        }
    }

    /// Allocates `len` bytes (rounded up to [`DMB_ALIGN`]); `None` when no free block
    /// is large enough or `len` is 0.
    pub fn allocate(&mut self, len: usize) -> Option<Range<usize>> {
        if len == 0 {
            return None;
        }
        let size = len.checked_next_multiple_of(DMB_ALIGN)?;
        let (&start, &block) = self.free.iter().find(|(_, &block)| block >= size)?;
        self.free.remove(&start);
        if block > size {
            self.free.insert(start + size, block - size);
        }
        Some(start..start + size)
    }

    /// Returns a block obtained from [`AreaAllocator::allocate`]. Returns false (and
    /// changes nothing) for an empty range, one outside the span, or one overlapping a
    /// free block (e.g. a double free). The caller keeps the exact allocated ranges.
    pub fn free(&mut self, block: Range<usize>) -> bool {
        if block.start >= block.end || block.start < self.span.start || block.end > self.span.end {
            return false;
        }
        // The nearest free blocks on either side must not overlap the returned block.
        let before = self
            .free
            .range(..block.end)
            .next_back()
            .map(|(&s, &l)| (s, l));
        if let Some((s, l)) = before {
            if s + l > block.start {
                return false;
            }
        }
        let mut start = block.start;
        let mut len = block.end - block.start;
        if let Some((s, l)) = before {
            if s + l == block.start {
                self.free.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(l) = self.free.remove(&block.end) {
            len += l;
        }
        self.free.insert(start, len);
        true
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> usize {
        self.free.values().sum()
    }

    /// Size of the largest free block.
    pub fn largest_free(&self) -> usize {
        self.free.values().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn allocate_free_merge() {
        let mut a = AreaAllocator::new(4096..4096 + 1024);
        let x = a.allocate(100).unwrap();
        assert_eq!(x, 4096..4096 + 128);
        let y = a.allocate(64).unwrap();
        assert_eq!(y, 4224..4288);
        assert_eq!(a.allocate(2000), None);
        assert_eq!(a.allocate(0), None);
        assert!(a.free(x.clone()));
        assert!(!a.free(x.clone()), "double free refused");
        assert!(!a.free(4000..4100), "outside span refused");
        assert!(a.free(y));
        assert_eq!(a.free_bytes(), 1024);
        assert_eq!(a.largest_free(), 1024);
    }

    proptest! {
        /// Allocated blocks never overlap, stay inside the span, and freeing everything
        /// restores one block of the whole span.
        #[test]
        fn blocks_disjoint_and_restored(ops in proptest::collection::vec((any::<bool>(), 1usize..3000, any::<usize>()), 1..200)) {
            let span = 8192..8192 + 16384;
            let mut a = AreaAllocator::new(span.clone());
            let mut live: Vec<Range<usize>> = Vec::new();
            for (alloc, len, pick) in ops {
                if alloc || live.is_empty() {
                    if let Some(r) = a.allocate(len) {
                        prop_assert!(r.start >= span.start && r.end <= span.end);
                        prop_assert!(r.len() >= len && r.start % DMB_ALIGN == 0);
                        for other in &live {
                            prop_assert!(r.end <= other.start || other.end <= r.start);
                        }
                        live.push(r);
                    } else {
                        prop_assert!(a.largest_free() < len.next_multiple_of(DMB_ALIGN));
                    }
                } else {
                    let r = live.swap_remove(pick % live.len());
                    prop_assert!(a.free(r));
                }
            }
            for r in live.drain(..) {
                prop_assert!(a.free(r));
            }
            prop_assert_eq!(a.largest_free(), span.len());
        }
    }
}
