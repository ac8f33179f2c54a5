//! In-QEMU test: the final page tables identity-map RAM write-back and the low PCI hole
//! uncached, and `map_mmio` maps ranges on demand, above 4 GiB too, splitting large pages.
#![no_std]
#![no_main]

use kernel::memory::{self, Caching, MapError, HUGE_PAGE_SIZE, PAGE_SIZE};

kernel::test_main!(
    ram_is_identity_mapped_write_back,
    low_mmio_hole_is_uncached,
    map_mmio_above_4gib,
    cached_map_splits_a_large_page,
    bad_requests_are_errors
);

fn ram_is_identity_mapped_write_back() {
    for r in kernel::boot_info().ram_regions() {
        for addr in [r.start.max(PAGE_SIZE), r.start + r.len / 2, r.end() - 1] {
            let m = memory::translate(addr).expect("RAM unmapped");
            assert_eq!(m.phys, addr);
            assert_eq!(m.caching, Caching::WriteBack, "RAM at {addr:#x}");
            assert!(m.writable);
        }
    }
    // The heap is RAM too.
    let v = alloc::vec![7u8; 3 << 20];
    let m = memory::translate(v.as_ptr() as u64).unwrap();
    assert_eq!(m.caching, Caching::WriteBack);
}

extern crate alloc;

fn low_mmio_hole_is_uncached() {
    // Local APIC and I/O APIC default addresses, q35 ECAM base.
    for addr in [0xfee0_0000u64, 0xfec0_0000, 0xb000_0000] {
        let m = memory::translate(addr).expect("low MMIO unmapped");
        assert_eq!(m.phys, addr);
        assert_eq!(m.caching, Caching::Uncached, "{addr:#x}");
    }
}

fn map_mmio_above_4gib() {
    // Where 64-bit BARs land (e.g. ivshmem's 1 GiB BAR2): 2 MiB pages inside, 4 KiB at the
    // unaligned edges.
    let base = 0x80_0000_0000u64 + 0x3000;
    let len = 2 * HUGE_PAGE_SIZE + 0x2000;
    assert_eq!(memory::translate(base), None);
    assert_eq!(memory::map_mmio(base, len), Ok(base));
    let first = memory::translate(base).unwrap();
    assert_eq!(
        (first.phys, first.page_size, first.caching),
        (base, PAGE_SIZE, Caching::Uncached)
    );
    let mid = 0x80_0000_0000u64 + HUGE_PAGE_SIZE;
    let m = memory::translate(mid + 0x1234).unwrap();
    assert_eq!((m.phys, m.page_size), (mid + 0x1234, HUGE_PAGE_SIZE));
    let last = memory::translate(base + len - 1).unwrap();
    assert_eq!(last.phys, base + len - 1);
    assert_eq!(
        memory::translate(base + len + PAGE_SIZE),
        None,
        "mapped past the end"
    );
    // A cached (shared-RAM BAR) mapping elsewhere above 4 GiB.
    let shm = 0x100_0000_0000u64;
    assert_eq!(memory::map_mmio_cached(shm, 1 << 30), Ok(shm));
    assert_eq!(
        memory::translate(shm + (1 << 30) - 1).unwrap().caching,
        Caching::WriteBack
    );
}

fn cached_map_splits_a_large_page() {
    // 0xc0000000.. is in the uncached PCI hole, mapped with 2 MiB pages.
    let big = 0xc020_0000u64;
    assert_eq!(memory::translate(big).unwrap().page_size, HUGE_PAGE_SIZE);
    let page = big + 5 * PAGE_SIZE;
    memory::map_mmio_cached(page, PAGE_SIZE).unwrap();
    let m = memory::translate(page).unwrap();
    assert_eq!((m.page_size, m.caching), (PAGE_SIZE, Caching::WriteBack));
    // Neighbours keep their attributes after the split.
    for n in [
        big,
        page - PAGE_SIZE,
        page + PAGE_SIZE,
        big + HUGE_PAGE_SIZE - 1,
    ] {
        let m = memory::translate(n).unwrap();
        assert_eq!((m.phys, m.caching), (n, Caching::Uncached), "{n:#x}");
    }
}

fn bad_requests_are_errors() {
    assert_eq!(memory::map_mmio(0x1000, 0), Err(MapError::Empty));
    assert!(matches!(
        memory::map_mmio(u64::MAX - 10, 100),
        Err(MapError::OutOfRange { .. })
    ));
    assert!(matches!(
        memory::map_mmio(1 << 47, 4096),
        Err(MapError::OutOfRange { .. })
    ));
}
