//! The smcd kernel: platform bring-up, interrupts, memory, executor, and the in-QEMU
//! test framework.
//!
//! Base services (this file's [`init`]): serial console and `log`, GDT/TSS with IST stacks,
//! IDT with exception reports, heap and final page tables. Platform devices (ACPI, APIC,
//! clock, PCI, MSI-X, executor) are initialised by their own modules.
#![no_std]

extern crate alloc;

pub use boot;

// Platform devices and services (owned by the platform-devices work).
pub mod acpi;
pub mod apic;
pub mod clock;
pub mod cmdline;
pub mod executor;
pub mod msix;
pub mod net;
pub mod pci;
pub mod platform;

// Base: boot hand-over, CPU tables, memory, console, tests.
pub mod gdt;
pub mod interrupts;
pub mod mem;
pub mod memory;
pub mod mmio;
pub mod qemu;
pub mod serial;
pub mod testing;

// SMC-D sockets over the network and ISM devices, and the apps using them.
pub mod apps;
pub mod shm_verify;
pub mod smc;

use boot::BootInfo;
use spin::Once;

static BOOT_INFO: Once<&'static BootInfo> = Once::new();

/// Base initialisation: serial console and logger, GDT/TSS, IDT, heap and page tables.
/// Call once, first thing in `main` (tests: done by [`test_main!`]).
pub fn init(info: &'static BootInfo) {
    serial::init();
    serial_println!(
        "smcd: booting (PVH v{}, {} memory regions, cmdline \"{}\")",
        info.pvh_version,
        info.memory_map.len(),
        info.cmdline
    );
    serial::init_logger();
    if let Some(e) = info.error {
        panic!("unusable PVH boot information: {e}");
    }
    for w in boot::pvh::describe_warnings(&info.warnings) {
        log::warn!("boot: {w}");
    }
    BOOT_INFO.call_once(|| info);
    gdt::init();
    interrupts::init();
    memory::init(info);
}

/// The boot information passed to [`init`].
///
/// # Panics
/// If called before [`init`].
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO.get().expect("kernel::init has not run")
}

/// Halts the CPU forever (interrupts stay as they are; a `hlt` with IF=0 stops for good).
pub fn halt_loop() -> ! {
    loop {
        x86_64::instructions::hlt();
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(loc) => testing::fail(format_args!("panicked at {loc}:\n{}", info.message())),
        None => testing::fail(format_args!("panicked: {}", info.message())),
    }
}
