//! The smcd kernel image: boots through PVH, brings up the base and the platform, then idles.
#![no_std]
#![no_main]

use kernel::boot::BootInfo;

kernel::boot::entry_point!(main);

fn main(info: &'static BootInfo) -> ! {
    kernel::init(info);
    let platform = kernel::platform::init().unwrap_or_else(|e| panic!("{e}"));
    log::info!(
        "smcd: up: {} MiB RAM, {} PCI function(s), tsc {} Hz",
        info.total_ram() >> 20,
        platform.pci.len(),
        platform.clock.tsc_hz
    );
    kernel::serial_println!("smcd: idle");
    loop {
        kernel::interrupts::enable_and_hlt();
    }
}
