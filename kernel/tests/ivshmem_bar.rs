//! In-QEMU test: ivshmem-plain BAR2 (4 MiB) is the host file profiles.sh prepared: the
//! guest sees the host's pattern 1 in every word and writes pattern 2 everywhere, which the
//! host checks after QEMU exits (`post_ivshmem_bar`). Patterns: tests/host/ivshmem_pattern.py.
#![no_std]
#![no_main]

use kernel::pci::{self, BarInfo, BarWidth};
use kernel::{memory, mmio, platform};

kernel::test_main!(bar2_holds_host_pattern_and_takes_guest_pattern);

/// Region size given to QEMU in profiles.sh.
const SIZE: u64 = 4 << 20;

fn pattern1(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_0001_5EED_0001
}

fn pattern2(k: u64) -> u64 {
    k.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xC0FF_EE00_C0FF_EE00
}

fn bar2_holds_host_pattern_and_takes_guest_pattern() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let dev = pci::find(0x1af4, 0x1110)
        .next()
        .expect("no ivshmem-plain device");
    let (phys, size) = match dev.bars[2] {
        Some(BarInfo::Memory {
            address,
            size,
            width: BarWidth::Bits64,
            ..
        }) => (address, size),
        other => panic!("ivshmem BAR2: {other:?}"),
    };
    assert_eq!(size, SIZE);
    dev.enable_memory_and_bus_master().unwrap();
    let base = memory::map_mmio_cached(phys, size).unwrap();
    for k in 0..size / 8 {
        // SAFETY: `base..base + size` is the mapped BAR2 (shared memory, no read side
        // effects); `8k` is aligned and below `size`.
        let v = unsafe { mmio::read64(base + 8 * k) };
        assert_eq!(v, pattern1(k), "word at offset {:#x}", 8 * k);
    }
    for k in 0..size / 8 {
        // SAFETY: as above; the region is shared memory that Rust does not own.
        unsafe { mmio::write64(base + 8 * k, pattern2(k)) };
    }
    kernel::serial_println!(
        "ivshmem: BAR2 at {phys:#x}: verified {size} bytes of pattern 1, wrote pattern 2"
    );
}
