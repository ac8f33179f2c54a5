//! Deliberately failing in-QEMU test (feature `deliberate-failure`): a boot stack overflow
//! runs into the unmapped guard page; the page fault cannot be delivered on that stack, so
//! the CPU raises a double fault, whose handler runs on its own IST stack and reports it.
//! Without the IST stack this would be a triple fault (QEMU reset, no report).
#![no_std]
#![no_main]

kernel::test_main!(overflow_the_boot_stack);

#[allow(
    unconditional_recursion,
    reason = "the overflow is the point of the test"
)]
fn recurse(depth: u64) -> u64 {
    // A 1 KiB frame that the optimiser cannot remove.
    let frame = core::hint::black_box([depth as u8; 1024]);
    let below = recurse(core::hint::black_box(depth + 1));
    below + u64::from(frame[depth as usize % 1024])
}

fn overflow_the_boot_stack() {
    let n = recurse(0);
    panic!("recursion returned {n}: the stack guard page did not stop it");
}
