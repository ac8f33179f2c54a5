//! The smcd kernel image: boots through PVH, initialises the base and reports readiness.
#![no_std]
#![no_main]

use kernel::boot::BootInfo;

kernel::boot::entry_point!(main);

fn main(info: &'static BootInfo) -> ! {
    kernel::init(info);
    log::info!(
        "smcd: base initialised: {} MiB RAM, rsdp {:?}",
        info.total_ram() >> 20,
        info.rsdp
    );
    kernel::serial_println!("smcd: idle");
    loop {
        kernel::interrupts::enable_and_hlt();
    }
}
