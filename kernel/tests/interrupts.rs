//! In-QEMU test: device vectors dispatch to registered handlers followed by the EOI hook;
//! registration and vector allocation reject bad requests.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use kernel::interrupts::{self, InterruptError};

kernel::test_main!(
    software_interrupt_reaches_handler_then_eoi,
    registration_errors,
    allocate_vector_hands_out_distinct_free_vectors
);

static HITS: AtomicU32 = AtomicU32::new(0);
static LAST_VECTOR: AtomicU8 = AtomicU8::new(0);
static EOIS: AtomicU32 = AtomicU32::new(0);

fn handler(vector: u8) {
    HITS.fetch_add(1, Ordering::SeqCst);
    LAST_VECTOR.store(vector, Ordering::SeqCst);
}

/// Handler hits seen by the latest EOI: shows the handler ran before the EOI hook.
static HITS_AT_EOI: AtomicU32 = AtomicU32::new(0);

fn eoi() {
    HITS_AT_EOI.store(HITS.load(Ordering::SeqCst), Ordering::SeqCst);
    EOIS.fetch_add(1, Ordering::SeqCst);
}

fn software_interrupt_reaches_handler_then_eoi() {
    interrupts::set_eoi_hook(eoi);
    interrupts::register_handler(0x42, handler).unwrap();
    // SAFETY: vector 0x42 has the handler registered above, which only updates atomics.
    unsafe { core::arch::asm!("int 0x42") };
    assert_eq!(HITS.load(Ordering::SeqCst), 1);
    assert_eq!(LAST_VECTOR.load(Ordering::SeqCst), 0x42);
    assert_eq!(EOIS.load(Ordering::SeqCst), 1);
    assert_eq!(
        HITS_AT_EOI.load(Ordering::SeqCst),
        1,
        "EOI hook ran before the handler"
    );
    // A vector without a handler is counted, not fatal, and still acknowledged.
    let before = interrupts::unhandled_count();
    // SAFETY: vector 0x43 has no handler; the dispatcher counts it and returns.
    unsafe { core::arch::asm!("int 0x43") };
    assert_eq!(interrupts::unhandled_count(), before + 1);
    assert_eq!(HITS.load(Ordering::SeqCst), 1);
    assert_eq!(EOIS.load(Ordering::SeqCst), 2);
    assert!(interrupts::unregister_handler(0x42));
}

fn registration_errors() {
    assert_eq!(
        interrupts::register_handler(14, handler),
        Err(InterruptError::ExceptionVector(14))
    );
    interrupts::register_handler(0x50, handler).unwrap();
    assert_eq!(
        interrupts::register_handler(0x50, handler),
        Err(InterruptError::AlreadyRegistered(0x50))
    );
    assert!(interrupts::unregister_handler(0x50));
    assert!(!interrupts::unregister_handler(0x50));
}

fn allocate_vector_hands_out_distinct_free_vectors() {
    interrupts::register_handler(0x30, handler).unwrap();
    let a = interrupts::allocate_vector().unwrap();
    let b = interrupts::allocate_vector().unwrap();
    assert_ne!(a, b);
    assert_ne!(a, 0x30, "allocated a vector that has a handler");
    for v in [a, b] {
        assert!(interrupts::ALLOCATABLE_VECTORS.contains(&v));
    }
    interrupts::register_handler(a, handler).unwrap();
    // Exhaust the range: it ends with None, not a panic or a duplicate.
    let mut n = 0;
    while interrupts::allocate_vector().is_some() {
        n += 1;
        assert!(n <= 0xEF - 0x30 + 1);
    }
    assert_eq!(interrupts::allocate_vector(), None);
}
