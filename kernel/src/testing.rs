//! In-QEMU test framework: each `kernel/tests/<name>.rs` is its own kernel image that calls
//! [`test_main!`](crate::test_main); results go to the serial console and the run ends
//! through `isa-debug-exit` (`qemu-run.sh runner` checks both).
//!
//! Output protocol (read by `qemu-run.sh`):
//! - `running N tests`, then per test `running <name>` and `test <name> ... ok`;
//! - on failure `test <name> ... FAILED`, the panic message with its location (or the CPU
//!   exception report), `kernel tests: P passed, 1 failed`, exit code `Failed`;
//! - after the last test exactly `kernel tests: N passed, 0 failed`, exit code `Success`.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Once;

use crate::interrupts::InterruptFrame;
use crate::qemu::{self, QemuExitCode};
use crate::serial::emergency_print;

/// One test: a name and a function that panics on failure.
#[derive(Clone, Copy)]
pub struct Test {
    /// Printed in the result lines.
    pub name: &'static str,
    /// The test body.
    pub func: fn(),
}

static TESTS: Once<&'static [Test]> = Once::new();
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
static PF_EXPECTED: AtomicBool = AtomicBool::new(false);
static PF_ADDR: AtomicU64 = AtomicU64::new(0);
static FAILING: AtomicBool = AtomicBool::new(false);

/// Boots a test image: `kernel::test_main!(test_a, test_b)` defines the entry point, runs
/// [`crate::init`], then each test in order.
#[macro_export]
macro_rules! test_main {
    ($($test:path),+ $(,)?) => {
        $crate::boot::entry_point!(__kernel_test_entry);

        fn __kernel_test_entry(info: &'static $crate::boot::BootInfo) -> ! {
            static TESTS: &[$crate::testing::Test] = &[
                $($crate::testing::Test { name: stringify!($test), func: $test }),+
            ];
            $crate::init(info);
            $crate::testing::run(TESTS)
        }
    };
}

/// Runs `tests` and ends the QEMU run with the result. Called by [`test_main!`](crate::test_main).
pub fn run(tests: &'static [Test]) -> ! {
    TESTS.call_once(|| tests);
    RUNNING.store(true, Ordering::SeqCst);
    crate::serial_println!("running {} tests", tests.len());
    run_from(0)
}

fn run_from(first: usize) -> ! {
    let tests = TESTS.get().copied().unwrap_or(&[]);
    for (i, test) in tests.iter().enumerate().skip(first) {
        CURRENT.store(i, Ordering::SeqCst);
        crate::serial_println!("running {}", test.name);
        (test.func)();
        if PF_EXPECTED.swap(false, Ordering::SeqCst) {
            fail(format_args!(
                "expected page fault at {:#x} did not happen",
                PF_ADDR.load(Ordering::SeqCst)
            ));
        }
        pass_current();
    }
    crate::serial_println!(
        "kernel tests: {} passed, 0 failed",
        PASSED.load(Ordering::SeqCst)
    );
    qemu::exit(QemuExitCode::Success)
}

fn pass_current() {
    let tests = TESTS.get().copied().unwrap_or(&[]);
    if let Some(t) = tests.get(CURRENT.load(Ordering::SeqCst)) {
        crate::serial_println!("test {} ... ok", t.name);
    }
    PASSED.fetch_add(1, Ordering::SeqCst);
}

/// Name of the running test, if a test image is running one.
pub fn current_test() -> Option<&'static str> {
    if !RUNNING.load(Ordering::SeqCst) {
        return None;
    }
    TESTS
        .get()?
        .get(CURRENT.load(Ordering::SeqCst))
        .map(|t| t.name)
}

/// Declares that the current test will end by a page fault at exactly `addr`.
///
/// The page fault handler then prints `page fault at 0x…`, counts the test as passed and
/// continues with the next test; code after the faulting access does not run. A test that
/// returns without that fault fails.
pub fn expect_page_fault(addr: u64) {
    PF_ADDR.store(addr, Ordering::SeqCst);
    PF_EXPECTED.store(true, Ordering::SeqCst);
}

/// Called by the page fault handler: whether this fault at `cr2` was declared expected
/// (consumes the declaration).
pub(crate) fn take_expected_page_fault(cr2: u64) -> bool {
    RUNNING.load(Ordering::SeqCst)
        && PF_ADDR.load(Ordering::SeqCst) == cr2
        && PF_EXPECTED.swap(false, Ordering::SeqCst)
}

/// Rewrites the interrupt frame so that `iretq` continues with the test after the current
/// one, on a fresh boot stack; the faulting test's frames are abandoned.
pub(crate) fn resume_after_expected_fault(frame: &mut InterruptFrame) {
    pass_current();
    let top = crate::boot_info().boot_stack.end;
    // As after a `call`: RSP ≡ 8 (mod 16) at function entry; the return slot is never used.
    frame.rsp = top - 8;
    frame.rip = resume_tests as *const () as u64;
}

extern "sysv64" fn resume_tests() -> ! {
    run_from(CURRENT.load(Ordering::SeqCst) + 1)
}

/// Reports a failure of the running test (or of the kernel, outside tests) and ends the
/// QEMU run with the failure code. Used by the panic handler and CPU exception reports.
pub fn fail(message: fmt::Arguments<'_>) -> ! {
    // A panic or fault while reporting must not recurse: end the run at once.
    if FAILING.swap(true, Ordering::SeqCst) {
        emergency_print(format_args!("nested failure while reporting: {message}\n"));
        qemu::exit(QemuExitCode::Failed)
    }
    match current_test() {
        Some(name) => {
            emergency_print(format_args!("test {name} ... FAILED\n{message}\n"));
            emergency_print(format_args!(
                "kernel tests: {} passed, 1 failed\n",
                PASSED.load(Ordering::SeqCst)
            ));
        }
        None => emergency_print(format_args!("kernel failure: {message}\n")),
    }
    qemu::exit(QemuExitCode::Failed)
}
