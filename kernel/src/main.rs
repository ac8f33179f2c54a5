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
    // `app=...` runs an app (kernel::apps) and ends the VM; without it the kernel idles.
    match kernel::cmdline::parse(info.cmdline.as_str()) {
        Ok(config) if config.app.and_then(kernel::apps::app_name).is_some() => {
            kernel::apps::run(&config)
        }
        Ok(_) => {}
        Err(e) => log::error!("cmdline: {e}"),
    }
    kernel::serial_println!("smcd: idle");
    loop {
        kernel::interrupts::enable_and_hlt();
    }
}
