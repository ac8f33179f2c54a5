//! In-QEMU test: the heap under churn (many sizes and alignments, contents verified, memory
//! returned after free) and DMA frame allocation.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;

use kernel::memory::{self, heap_stats};

kernel::test_main!(
    heap_covers_ram,
    box_and_vec_work,
    churn_many_sizes_keeps_contents,
    freed_memory_is_returned,
    large_allocation_succeeds,
    dma_frames_are_aligned_zeroed_and_contiguous
);

fn heap_covers_ram() {
    let stats = heap_stats();
    let ram = kernel::boot_info().total_ram();
    // Everything but low memory and the kernel image is heap (-m 128M in the runner).
    assert!(
        stats.claimed_bytes as u64 > ram / 2,
        "heap {} of RAM {}",
        stats.claimed_bytes,
        ram
    );
    assert!(stats.available_bytes > 32 << 20);
}

fn box_and_vec_work() {
    let b = Box::new(0x5a5a_u64);
    assert_eq!(*b, 0x5a5a);
    let v: Vec<u32> = (0..10_000).collect();
    assert_eq!(v.iter().map(|&x| u64::from(x)).sum::<u64>(), 49_995_000);
}

/// Tiny deterministic generator (xorshift64) for sizes and fill bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn churn_many_sizes_keeps_contents() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<(Vec<u8>, u8)> = Vec::new();
    for round in 0..4000u32 {
        let r = rng.next();
        if live.len() > 200 || (r.is_multiple_of(3) && !live.is_empty()) {
            let idx = (r as usize / 3) % live.len();
            let (buf, fill) = live.swap_remove(idx);
            assert!(
                buf.iter().all(|&b| b == fill),
                "contents changed (round {round})"
            );
        } else {
            // Sizes from 1 byte to 64 KiB, skewed small.
            let size = match r % 4 {
                0 => 1 + (r >> 8) as usize % 16,
                1 => 1 + (r >> 8) as usize % 512,
                2 => 1 + (r >> 8) as usize % 8192,
                _ => 1 + (r >> 8) as usize % 65536,
            };
            let fill = (r >> 40) as u8;
            live.push((alloc::vec![fill; size], fill));
        }
    }
    for (buf, fill) in live.drain(..) {
        assert!(buf.iter().all(|&b| b == fill));
    }
    // Aligned allocations.
    for shift in 3..=16u32 {
        let align = 1usize << shift;
        let layout = core::alloc::Layout::from_size_align(align + 3, align).unwrap();
        // SAFETY: non-zero size layout; freed right below with the same layout.
        let p = unsafe { alloc::alloc::alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "alignment {align} not honoured");
        // SAFETY: allocated above with this layout.
        unsafe { alloc::alloc::dealloc(p, layout) };
    }
}

fn freed_memory_is_returned() {
    let before = heap_stats();
    {
        let mut bufs = Vec::new();
        for i in 0..256usize {
            bufs.push(alloc::vec![i as u8; 1000 + i * 37]);
        }
        let during = heap_stats();
        assert!(during.allocated_bytes >= before.allocated_bytes + 256 * 1000);
        assert!(during.available_bytes < before.available_bytes);
    }
    let after = heap_stats();
    assert_eq!(
        after.allocation_count, before.allocation_count,
        "allocations leaked"
    );
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "bytes leaked"
    );
    assert_eq!(
        after.available_bytes, before.available_bytes,
        "free memory not returned"
    );
}

fn large_allocation_succeeds() {
    // 32 MiB in one piece, touched at both ends.
    let mut big = alloc::vec![0u8; 32 << 20];
    big[0] = 1;
    let last = big.len() - 1;
    big[last] = 2;
    assert_eq!(big[0] + big[last], 3);
    drop(big);
    // Exhaustion is reported as a failed allocation, not a crash.
    let huge = core::alloc::Layout::from_size_align(1 << 40, 4096).unwrap();
    // black_box: otherwise the compiler may elide an allocation only compared with null.
    // SAFETY: non-zero size layout.
    let p = core::hint::black_box(unsafe { alloc::alloc::alloc(huge) });
    let failed = p.is_null();
    if !failed {
        // SAFETY: allocated above with this layout.
        unsafe { alloc::alloc::dealloc(p, huge) };
    }
    assert!(failed, "1 TiB allocation on a 128 MiB guest succeeded");
}

fn dma_frames_are_aligned_zeroed_and_contiguous() {
    let before = heap_stats();
    let a = memory::alloc_frames(4).expect("4 frames");
    let b = memory::alloc_frames(1).expect("1 frame");
    assert_eq!(a % 4096, 0);
    assert_eq!(b % 4096, 0);
    assert!(b >= a + 4 * 4096 || b + 4096 <= a, "frames overlap");
    let mut buf = [0xffu8; 4 * 4096];
    // SAFETY: `a` is 4 mapped frames owned by this test.
    unsafe { kernel::mmio::copy_from(&mut buf, a) };
    assert!(buf.iter().all(|&x| x == 0), "frames not zeroed");
    // Identity-mapped, write-back RAM: physical == virtual across all four frames.
    for i in 0..4 {
        let m = memory::translate(a + i * 4096).expect("frame mapped");
        assert_eq!(m.phys, a + i * 4096);
        assert_eq!(m.caching, memory::Caching::WriteBack);
    }
    assert_eq!(memory::alloc_frames(0), None);
    // SAFETY: both came from alloc_frames with these counts and are no longer used.
    unsafe {
        memory::free_frames(a, 4);
        memory::free_frames(b, 1);
    }
    assert_eq!(heap_stats().allocated_bytes, before.allocated_bytes);
}
