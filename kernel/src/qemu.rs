//! Ending a QEMU run with a status through the `isa-debug-exit` device (iobase 0xf4).
//!
//! QEMU exits with status `(value << 1) | 1` (`hw/misc/debugexit.c`): `Success` → 33,
//! `Failed` → 35. Any other status (0 from a guest shutdown, 124 from a timeout, 1 from a
//! QEMU error) is neither, so a runner can tell all three apart.

use x86_64::instructions::port::Port;

/// I/O port of `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Status written to `isa-debug-exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum QemuExitCode {
    /// All tests passed: QEMU exits with 33.
    Success = 0x10,
    /// A test failed: QEMU exits with 35.
    Failed = 0x11,
}

impl QemuExitCode {
    /// The exit status QEMU's process reports for this code.
    pub const fn process_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// Ends the QEMU run with `code`. Without the device (a production run) it halts forever.
pub fn exit(code: QemuExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to port 0xf4 only reaches isa-debug-exit (or nothing, if the device is
    // absent); it touches no memory.
    unsafe { port.write(code as u32) };
    crate::halt_loop()
}
