//! In-QEMU test: a 1 GiB ivshmem-plain region does not fit the 32-bit PCI window, so the
//! firmware must place the 64-bit BAR2 above 4 GiB; the guest reaches it there. The host
//! file is sparse with pattern 1 pages at a few offsets (including the last page); the guest
//! checks them and a hole, and writes pattern 2 pages that `post_ivshmem_bar_high` checks.
#![no_std]
#![no_main]

use kernel::pci::{self, BarInfo, BarWidth};
use kernel::{memory, mmio, platform};

kernel::test_main!(bar2_above_4gib_holds_host_pattern_and_takes_guest_pattern);

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// Region size given to QEMU in profiles.sh.
const SIZE: u64 = GIB;
/// Pages the host filled with pattern 1 (same list in profiles.sh).
const HOST_PAGES: [u64; 4] = [0, PAGE, 512 * MIB, SIZE - PAGE];
/// A page nobody writes: a hole of the sparse file, reads as zero.
const HOLE_PAGE: u64 = 256 * MIB;
/// Pages the guest fills with pattern 2 (same list in profiles.sh); includes the last page.
const GUEST_PAGES: [u64; 3] = [2 * PAGE, 768 * MIB, SIZE - PAGE];

fn pattern1(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_0001_5EED_0001
}

fn pattern2(k: u64) -> u64 {
    k.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xC0FF_EE00_C0FF_EE00
}

fn check_page(base: u64, offset: u64, pattern: fn(u64) -> u64) {
    for k in offset / 8..(offset + PAGE) / 8 {
        // SAFETY: `offset + PAGE <= SIZE`, so the word lies in the mapped BAR2 (shared
        // memory without read side effects); it is 8-byte aligned.
        let v = unsafe { mmio::read64(base + 8 * k) };
        assert_eq!(v, pattern(k), "word at region offset {:#x}", 8 * k);
    }
}

fn bar2_above_4gib_holds_host_pattern_and_takes_guest_pattern() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let dev = pci::find(0x1af4, 0x1110)
        .next()
        .expect("no ivshmem-plain device");
    let (phys, size) = match dev.bars[2] {
        Some(BarInfo::Memory {
            address,
            size,
            width: BarWidth::Bits64,
            prefetchable: true,
        }) => (address, size),
        other => panic!("ivshmem BAR2: {other:?}"),
    };
    kernel::serial_println!("ivshmem: 1 GiB BAR2 at {phys:#x}");
    assert_eq!(size, SIZE);
    assert!(phys >= 4 * GIB, "BAR2 at {phys:#x} is below 4 GiB");
    assert_eq!(phys % size, 0, "BAR2 not naturally aligned");
    dev.enable_memory_and_bus_master().unwrap();
    let base = memory::map_mmio_cached(phys, size).unwrap();
    for page in HOST_PAGES {
        check_page(base, page, pattern1);
    }
    check_page(base, HOLE_PAGE, |_| 0);
    for page in GUEST_PAGES {
        for k in page / 8..(page + PAGE) / 8 {
            // SAFETY: inside the mapped BAR2 (shared memory Rust does not own), aligned.
            unsafe { mmio::write64(base + 8 * k, pattern2(k)) };
        }
    }
    kernel::serial_println!(
        "ivshmem: verified pattern 1 at {HOST_PAGES:x?}, wrote pattern 2 at {GUEST_PAGES:x?}"
    );
}
