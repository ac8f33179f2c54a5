//! COM1 serial console (16550 UART at port 0x3F8) and the `log` facade on top of it.
//!
//! Every line is written with the port lock held and interrupts disabled, so an interrupt
//! handler that prints cannot deadlock against the code it interrupted (blog_os `serial.rs`).

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

/// I/O port base of COM1.
pub const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);

/// Initialises COM1 (115200 8N1). Safe to call more than once.
pub fn init() {
    crate::interrupts::without_interrupts(|| {
        let mut port = PORT.lock();
        if port.is_none() {
            // SAFETY: 0x3F8..0x3FF is the COM1 UART on every PC-compatible machine QEMU
            // emulates, and this module is its only user (all access goes through PORT).
            *port = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.ok();
        }
    });
}

/// Writes formatted text to COM1 (used by [`serial_print!`] / [`serial_println!`]).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    crate::interrupts::without_interrupts(|| {
        if let Some(port) = PORT.lock().as_mut() {
            // The TTY writer never returns an error for port I/O.
            let _ = port.write_fmt(args);
        }
    });
}

/// Writes to COM1 even if the lock is held: for panic and exception reports, where the
/// holder was interrupted on this (the only) CPU and will never release it.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::disable();
    if PORT.is_locked() {
        // SAFETY: single CPU, interrupts off: the holder is the code this panic or exception
        // interrupted, which does not run again before the report is written.
        unsafe { PORT.force_unlock() };
    }
    if let Some(port) = PORT.lock().as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// Prints to the serial console.
#[macro_export]
macro_rules! serial_print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! serial_println {
    () => { $crate::serial_print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            _print(format_args!(
                "[{:<5} {}] {}\n",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Installs the serial logger as the `log` backend at level `Info`.
pub fn init_logger() {
    // Fails only if a logger is already set, which then keeps working.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Changes the log level (e.g. from a `log=` command line option).
pub fn set_log_level(level: log::LevelFilter) {
    log::set_max_level(level);
}
