//! In-QEMU test (runs with `-m 6G`, see base-profiles.sh): RAM above 4 GiB, which the boot
//! stub's early map does not cover, is identity-mapped by the final page tables and used by
//! the heap and the DMA frame allocator.
#![no_std]
#![no_main]

extern crate alloc;

use kernel::memory::{self, Caching};

kernel::test_main!(
    memory_map_has_ram_above_4gib,
    heap_claims_ram_above_4gib,
    large_block_comes_from_high_ram
);

const FOUR_GIB: u64 = 4 << 30;

fn memory_map_has_ram_above_4gib() {
    let info = kernel::boot_info();
    assert!(
        info.total_ram() > 5 << 30,
        "started with -m 6G? RAM {:#x}",
        info.total_ram()
    );
    let high = info
        .ram_regions()
        .find(|r| r.start >= FOUR_GIB)
        .expect("no RAM above 4 GiB");
    for addr in [high.start, high.start + high.len / 2, high.end() - 8] {
        let m = memory::translate(addr).expect("high RAM not mapped");
        assert_eq!((m.phys, m.caching), (addr, Caching::WriteBack));
    }
}

fn heap_claims_ram_above_4gib() {
    let stats = memory::heap_stats();
    assert!(
        stats.claimed_bytes as u64 > FOUR_GIB,
        "heap {:#x}",
        stats.claimed_bytes
    );
}

fn large_block_comes_from_high_ram() {
    // Below 4 GiB q35 has at most 2 GiB of RAM: a 3 GiB block can only come from above.
    // Plain `alloc` (not `alloc_frames`, which zeroes): touching 3 GiB under TCG is slow.
    let layout = core::alloc::Layout::from_size_align(3 << 30, 4096).unwrap();
    // SAFETY: non-zero size; freed below with the same layout.
    let block = unsafe { alloc::alloc::alloc(layout) } as u64;
    assert_ne!(block, 0, "3 GiB allocation failed");
    assert!(block >= FOUR_GIB, "3 GiB block at {block:#x}");
    let end = block + (3 << 30) - 8;
    for addr in [block, block + (1 << 30) + 8, end] {
        // SAFETY: inside the block just allocated and owned by this test.
        unsafe {
            kernel::mmio::write64(addr, addr ^ 0x5a5a);
            assert_eq!(kernel::mmio::read64(addr), addr ^ 0x5a5a);
        }
    }
    // SAFETY: allocated above with this layout; nothing uses it any more.
    unsafe { alloc::alloc::dealloc(block as *mut u8, layout) };
    // DMA frames work on a machine with high RAM too (wherever the heap places them).
    let frames = memory::alloc_frames(16).expect("16 frames");
    assert_eq!(memory::translate(frames).map(|m| m.phys), Some(frames));
    // SAFETY: allocated above with the same count.
    unsafe { memory::free_frames(frames, 16) };
}
