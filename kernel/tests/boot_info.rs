//! In-QEMU test: the BootInfo built from PVH start_info is sane, and the command line given
//! with `-append` (the runner passes `test=<name>`) arrives intact.
#![no_std]
#![no_main]

use kernel::boot::MemoryKind;

kernel::test_main!(
    memory_map_has_ram,
    kernel_image_lies_in_ram,
    cmdline_from_append_is_seen,
    rsdp_points_at_rsdp_signature,
    no_boot_warnings,
    log_lines_reach_serial
);

fn memory_map_has_ram() {
    let info = kernel::boot_info();
    assert!(!info.memory_map.is_empty(), "empty memory map");
    assert!(info.pvh_version >= 1);
    let ram = info.total_ram();
    // The runner starts QEMU with -m 128M: 120..128 MiB of it is reported as RAM.
    assert!((120 << 20..=128 << 20).contains(&ram), "RAM {ram:#x}");
    // Entries are ascending and do not overlap.
    for w in info.memory_map.windows(2) {
        assert!(w[0].end() <= w[1].start, "overlap: {:?} {:?}", w[0], w[1]);
    }
}

fn kernel_image_lies_in_ram() {
    let info = kernel::boot_info();
    let k = info.kernel_image;
    assert_eq!(k.start, 0x10_0000, "kernel not at 1 MiB");
    assert!(k.end > k.start);
    assert!(
        info.memory_map
            .iter()
            .any(|r| r.kind == MemoryKind::Ram && r.start <= k.start && k.end <= r.end()),
        "kernel image {k:?} not inside one RAM region"
    );
    assert!(k.start <= info.boot_stack.start && info.boot_stack.end <= k.end);
    assert_eq!(info.stack_guard_page + 4096, info.boot_stack.start);
    // We are running on the boot stack.
    let local = 0u8;
    let sp = &local as *const u8 as u64;
    assert!(info.boot_stack.start < sp && sp < info.boot_stack.end);
}

fn cmdline_from_append_is_seen() {
    let cmdline = kernel::boot_info().cmdline.as_str();
    assert!(
        cmdline.split_whitespace().any(|w| w == "test=boot_info"),
        "cmdline {cmdline:?} lacks test=boot_info"
    );
}

fn rsdp_points_at_rsdp_signature() {
    let rsdp = kernel::boot_info().rsdp.expect("pvh.bin supplies the RSDP");
    let mut sig = [0u8; 8];
    // SAFETY: the RSDP is in the BIOS area below 1 MiB, identity-mapped.
    unsafe { kernel::mmio::copy_from(&mut sig, rsdp) };
    assert_eq!(&sig, b"RSD PTR ");
}

fn no_boot_warnings() {
    assert_eq!(
        kernel::boot_info().warnings,
        kernel::boot::BootWarnings::default()
    );
    assert_eq!(kernel::boot_info().error, None);
}

/// The host side (`post_boot_info` in base-profiles.sh) checks that these lines reached the
/// serial console through the `log` facade, and that the debug line was filtered out.
fn log_lines_reach_serial() {
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    log::info!("log check: info line 7f3a");
    log::warn!("log check: warn line 7f3b");
    log::debug!("log check: debug line 7f3c (must be filtered)");
}
