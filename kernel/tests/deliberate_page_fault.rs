//! Deliberately failing in-QEMU test (feature `deliberate-failure`): an unexpected page fault
//! must fail the run with a report naming the vector, error code, RIP and faulting address.
#![no_std]
#![no_main]

kernel::test_main!(write_to_unmapped_address);

fn write_to_unmapped_address() {
    // SAFETY: deliberately faulting write to an unmapped, canonical address.
    unsafe { kernel::mmio::write32(0x5000_0000_0abc, 1) };
    panic!("write to an unmapped address did not fault");
}
