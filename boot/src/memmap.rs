//! Free RAM from the memory map: the ranges the kernel may hand to its allocator.
//!
//! Firmware maps are not trusted to be sorted or disjoint (ACPI 6.5 §15 only asks for
//! non-overlapping entries; a buggy or hostile loader may break that): RAM is aligned inward
//! to pages, sorted, merged, clipped, and the exclusions (kernel image, …) are cut out, so the
//! result can be claimed range by range without ever claiming a byte twice.

use crate::{MemoryKind, MemoryRegion, PhysRange};

/// Page size the ranges are aligned to.
pub const PAGE: u64 = 4096;
/// Capacity of [`free_ram`]'s result.
pub const MAX_FREE_RANGES: usize = 128;

/// Sorted, disjoint, page-aligned free RAM ranges.
pub type FreeRam = heapless::Vec<PhysRange, MAX_FREE_RANGES>;

/// RAM of `map` inside `[min_addr, limit)`, minus every range in `exclude`, as sorted,
/// disjoint, page-aligned, non-empty ranges. Ranges beyond the capacity are dropped (memory
/// lost, never double-counted); the second value tells whether that happened.
pub fn free_ram(
    map: &[MemoryRegion],
    min_addr: u64,
    limit: u64,
    exclude: &[PhysRange],
) -> (FreeRam, bool) {
    let mut out = FreeRam::new();
    let mut dropped = false;
    // Page-aligned RAM pieces inside the window.
    let mut ram: heapless::Vec<PhysRange, { crate::MAX_MEMORY_REGIONS }> = map
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .map(|r| PhysRange {
            start: align_up(r.start.max(min_addr)),
            end: align_down(r.end().min(limit)),
        })
        .filter(|r| r.start < r.end)
        .collect();
    ram.sort_unstable_by_key(|r| r.start);
    for r in &ram {
        // Merge with the previous range if they overlap or touch.
        if let Some(last) = out.last_mut() {
            if r.start <= last.end {
                last.end = last.end.max(r.end);
                continue;
            }
        }
        if out.push(*r).is_err() {
            dropped = true;
        }
    }
    for ex in exclude {
        let (ex_start, ex_end) = (align_down(ex.start), align_up(ex.end));
        if ex.end <= ex.start {
            continue; // empty (or inverted) exclusion
        }
        let mut i = 0;
        while i < out.len() {
            let r = out[i];
            if ex_end <= r.start || r.end <= ex_start {
                i += 1;
                continue;
            }
            let left = PhysRange {
                start: r.start,
                end: ex_start.max(r.start),
            };
            let right = PhysRange {
                start: ex_end.min(r.end),
                end: r.end,
            };
            match (left.start < left.end, right.start < right.end) {
                (true, true) => {
                    out[i] = left;
                    if out.insert(i + 1, right).is_err() {
                        dropped = true;
                    }
                    i += 2;
                }
                (true, false) => {
                    out[i] = left;
                    i += 1;
                }
                (false, true) => {
                    out[i] = right;
                    i += 1;
                }
                (false, false) => {
                    out.remove(i);
                }
            }
        }
    }
    (out, dropped)
}

const fn align_up(x: u64) -> u64 {
    match x.checked_next_multiple_of(PAGE) {
        Some(v) => v,
        None => u64::MAX - (PAGE - 1),
    }
}

const fn align_down(x: u64) -> u64 {
    x - x % PAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            len,
            kind: MemoryKind::Ram,
        }
    }

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn qemu_map_minus_low_memory_and_kernel() {
        let map = [
            ram(0, 0x9fc00),
            MemoryRegion {
                start: 0x9fc00,
                len: 0x400,
                kind: MemoryKind::Reserved,
            },
            ram(MIB, 0x7ee0000),
        ];
        let (free, dropped) = free_ram(&map, MIB, 1 << 47, &[r(MIB, MIB + 0x57123)]);
        assert!(!dropped);
        assert_eq!(free.as_slice(), &[r(MIB + 0x58000, MIB + 0x7ee0000)]);
    }

    #[test]
    fn unsorted_and_overlapping_ram_is_merged() {
        let map = [
            ram(8 * MIB, 4 * MIB),
            ram(2 * MIB, 4 * MIB),
            ram(5 * MIB, 4 * MIB),
        ];
        let (free, _) = free_ram(&map, 0, u64::MAX, &[]);
        assert_eq!(free.as_slice(), &[r(2 * MIB, 12 * MIB)]);
    }

    #[test]
    fn exclusion_in_the_middle_splits_a_range() {
        let (free, _) = free_ram(&[ram(0, 16 * MIB)], 0, u64::MAX, &[r(4 * MIB + 1, 5 * MIB)]);
        assert_eq!(free.as_slice(), &[r(0, 4 * MIB), r(5 * MIB, 16 * MIB)]);
    }

    #[test]
    fn exclusion_covering_ranges_removes_them() {
        let map = [ram(MIB, MIB), ram(3 * MIB, MIB), ram(5 * MIB, MIB)];
        let (free, _) = free_ram(&map, 0, u64::MAX, &[r(0, 4 * MIB + 10)]);
        assert_eq!(free.as_slice(), &[r(5 * MIB, 6 * MIB)]);
    }

    #[test]
    fn unaligned_edges_shrink_inward_and_tiny_pieces_vanish() {
        let map = [ram(0x1001, 0x3000), ram(0x10_0000, 0xfff)];
        let (free, _) = free_ram(&map, 0, u64::MAX, &[]);
        assert_eq!(free.as_slice(), &[r(0x2000, 0x4000)]);
    }

    #[test]
    fn window_clips_and_non_ram_is_ignored() {
        let map = [
            ram(0, 8 * MIB),
            MemoryRegion {
                start: 8 * MIB,
                len: MIB,
                kind: MemoryKind::Acpi,
            },
            ram(u64::MAX - MIB, MIB),
        ];
        let (free, _) = free_ram(&map, MIB, 1 << 47, &[]);
        assert_eq!(free.as_slice(), &[r(MIB, 8 * MIB)]);
    }

    #[test]
    fn results_never_overlap_for_many_random_maps() {
        // Deterministic xorshift; every result must be sorted, disjoint, aligned, and RAM.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..2000 {
            let mut map = heapless::Vec::<MemoryRegion, 16>::new();
            for _ in 0..(next() % 16) {
                let start = next() % (64 * MIB);
                let len = next() % (16 * MIB);
                let kind = if next() % 4 == 0 {
                    MemoryKind::Reserved
                } else {
                    MemoryKind::Ram
                };
                let _ = map.push(MemoryRegion { start, len, kind });
            }
            let ex = [r(next() % (64 * MIB), next() % (80 * MIB))];
            let (free, _) = free_ram(&map, MIB, 72 * MIB, &ex);
            for w in free.windows(2) {
                assert!(w[0].end < w[1].start, "{free:?}");
            }
            for f in &free {
                assert!(f.start < f.end && f.start % PAGE == 0 && f.end % PAGE == 0);
                assert!(f.start >= MIB && f.end <= 72 * MIB);
                assert!(f.end <= ex[0].start || f.start >= ex[0].end || ex[0].start >= ex[0].end);
                // Every page lies in some RAM region.
                assert!(map
                    .iter()
                    .any(|m| m.kind == MemoryKind::Ram && m.start <= f.start && f.start < m.end()));
            }
        }
    }
}
