//! A deliberately failing in-QEMU test (built only with `--features deliberate-failure`):
//! shows that a failing in-guest assertion fails the run with its message.
#![no_std]
#![no_main]

kernel::test_main!(passes_first, fails_on_purpose);

fn passes_first() {
    let sum = core::hint::black_box(2) + 2;
    assert_eq!(sum, 4);
}

fn fails_on_purpose() {
    let answer = core::hint::black_box(41);
    assert_eq!(
        answer, 42,
        "deliberate in-guest failure: answer was {answer}"
    );
}
