//! In-QEMU test: page faults are reported with the faulting address. Each test declares the
//! fault it expects (`expect_page_fault`); the handler prints `page fault at 0x…` and the run
//! continues with the next test. The last test checks the passes were really counted.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::memory;
use kernel::testing::expect_page_fault;

kernel::test_main!(
    unmapped_high_address_faults,
    null_page_is_unmapped,
    stack_guard_page_is_unmapped,
    write_to_unmapped_page_faults,
    runner_continued_after_each_fault
);

/// Reaches the next line of a test only if the expected fault did not happen.
static REACHED_AFTER_FAULT: AtomicU32 = AtomicU32::new(0);

/// 64 TiB: canonical, far above RAM and every PCI window, never mapped.
const UNMAPPED: u64 = 0x4000_0000_0000;

fn unmapped_high_address_faults() {
    assert_eq!(memory::translate(UNMAPPED), None);
    expect_page_fault(UNMAPPED);
    // SAFETY: deliberately faulting read; the page fault handler ends this test.
    let _ = unsafe { kernel::mmio::read32(UNMAPPED) };
    REACHED_AFTER_FAULT.fetch_add(1, Ordering::SeqCst);
}

fn null_page_is_unmapped() {
    assert_eq!(memory::translate(0x10), None);
    expect_page_fault(0x10);
    // SAFETY: deliberately faulting read of the unmapped null page.
    let _ = unsafe { kernel::mmio::read64(0x10) };
    REACHED_AFTER_FAULT.fetch_add(1, Ordering::SeqCst);
}

fn stack_guard_page_is_unmapped() {
    let guard = kernel::boot_info().stack_guard_page;
    assert_ne!(guard, 0);
    assert_eq!(
        memory::translate(guard),
        None,
        "guard page below the boot stack is mapped"
    );
    let probe = guard + 0x100;
    expect_page_fault(probe);
    // SAFETY: deliberately faulting read of the unmapped guard page.
    let _ = unsafe { kernel::mmio::read8(probe) };
    REACHED_AFTER_FAULT.fetch_add(1, Ordering::SeqCst);
}

fn write_to_unmapped_page_faults() {
    let addr = UNMAPPED + 0x1008;
    expect_page_fault(addr);
    // SAFETY: deliberately faulting write to an unmapped page.
    unsafe { kernel::mmio::write64(addr, 0xdead_beef) };
    REACHED_AFTER_FAULT.fetch_add(1, Ordering::SeqCst);
}

fn runner_continued_after_each_fault() {
    assert_eq!(
        REACHED_AFTER_FAULT.load(Ordering::SeqCst),
        0,
        "code after a fault ran"
    );
    // The stack is usable again after the resumes: a deep-ish call chain works.
    fn depth(n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            n + depth(n - 1)
        }
    }
    assert_eq!(depth(1000), 500_500);
}
