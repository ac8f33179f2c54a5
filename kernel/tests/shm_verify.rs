//! In-QEMU test: the zero-copy sink's `verify=sample` check over DMB windows
//! (`kernel::shm_verify::check_window`) agrees with `count_sample_mismatches` on a copy:
//! stamps split across windows, corrupted stamp bytes counted, other bytes ignored, the
//! stream head collected.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use kernel::apps::{count_sample_mismatches, stamp_sample, SAMPLE_STEP};
use kernel::shm_verify::{check_window, stamp_chunk, SAMPLE_HEAD_LEN};
use kernel::smc::KernelMemory;
use smcd::shm::{HeapMemory, SharedMemory, ShmSlice};

kernel::test_main!(
    clean_stream_has_no_mismatches_at_any_split,
    corrupted_stamp_bytes_are_counted_and_others_ignored,
    head_is_collected_across_windows,
    stamp_chunk_writes_the_same_bytes_as_stamp_sample
);

/// Stream bytes `[0, len)` with the stamps (filler elsewhere), in a DMB-like memory at
/// byte `base` (like a ring after its header).
fn stream_in_memory(len: usize, base: usize) -> (KernelMemory, Vec<u8>) {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
    stamp_sample(0, &mut bytes);
    let mem = KernelMemory::Heap(Arc::new(HeapMemory::new(base + len)));
    mem.write(base, &bytes).expect("in range");
    (mem, bytes)
}

/// Checks `[0, len)` in windows ending at `cuts`; returns (mismatches, head, head_len).
fn check_in_windows(
    mem: &KernelMemory,
    base: usize,
    len: usize,
    cuts: &[usize],
) -> (u64, [u8; SAMPLE_HEAD_LEN], usize) {
    let mut head = [0u8; SAMPLE_HEAD_LEN];
    let mut head_len = 0;
    let mut mismatches = 0;
    let mut at = 0;
    for &end in cuts.iter().chain([len].iter()) {
        let end = end.min(len);
        if end <= at {
            continue;
        }
        let w = ShmSlice::new(mem, base + at, end - at).expect("window in range");
        mismatches += check_window(at as u64, &w, &mut head, &mut head_len);
        at = end;
    }
    assert_eq!(at, len);
    (mismatches, head, head_len)
}

const LEN: usize = 5 * SAMPLE_STEP as usize + 100;
const BASE: usize = 8;

/// Splits: whole, inside stamps (4096+3, 8192+7), right after one, tiny windows.
fn splits() -> Vec<Vec<usize>> {
    vec![
        vec![],
        vec![4099, 8199],
        vec![1, 2, 3, 4, 5, 6, 7, 8, 4096, 4104],
        vec![4095, 4097, 12_290, 16_384],
        (1..LEN).step_by(1000).collect(),
    ]
}

fn clean_stream_has_no_mismatches_at_any_split() {
    let (mem, bytes) = stream_in_memory(LEN, BASE);
    assert_eq!(count_sample_mismatches(0, &bytes), 0);
    for cuts in splits() {
        let (m, _, _) = check_in_windows(&mem, BASE, LEN, &cuts);
        assert_eq!(m, 0, "split {cuts:?}");
    }
}

fn corrupted_stamp_bytes_are_counted_and_others_ignored() {
    let (mem, mut bytes) = stream_in_memory(LEN, BASE);
    // Two stamp bytes (stamp of 4096, byte 2; stamp of 16384, byte 7) and three bytes
    // outside stamps.
    for i in [4096 + 2, 16_384 + 7, 100, 4096 + 8, LEN - 1] {
        bytes[i] ^= 0xff;
        mem.write(BASE + i, &bytes[i..=i]).expect("in range");
    }
    let want = count_sample_mismatches(0, &bytes);
    assert_eq!(want, 2);
    for cuts in splits() {
        let (m, _, _) = check_in_windows(&mem, BASE, LEN, &cuts);
        assert_eq!(m, want, "split {cuts:?}");
    }
    // A window that starts inside a corrupted stamp still sees its tail byte.
    let w = ShmSlice::new(&mem, BASE + 16_384 + 5, 10).expect("in range");
    let (mut head, mut head_len) = ([0u8; SAMPLE_HEAD_LEN], SAMPLE_HEAD_LEN);
    assert_eq!(check_window(16_384 + 5, &w, &mut head, &mut head_len), 1);
}

fn head_is_collected_across_windows() {
    let (mem, bytes) = stream_in_memory(LEN, BASE);
    for cuts in splits() {
        let (_, head, head_len) = check_in_windows(&mem, BASE, LEN, &cuts);
        assert_eq!(head_len, SAMPLE_HEAD_LEN, "split {cuts:?}");
        assert_eq!(head[..], bytes[..SAMPLE_HEAD_LEN], "split {cuts:?}");
    }
    // A stream shorter than the head.
    let (short, sbytes) = stream_in_memory(5, BASE);
    let (m, head, head_len) = check_in_windows(&short, BASE, 5, &[2]);
    assert_eq!((m, head_len), (0, 5));
    assert_eq!(head[..5], sbytes[..]);
}

fn stamp_chunk_writes_the_same_bytes_as_stamp_sample() {
    // Aligned offsets (the fast path; buffer ends inside a stamp, on a stamp, after
    // one) and unaligned ones (the fallback).
    for offset in [0u64, 4096, 1 << 20, 4096 * 7, 5, 4093, 4100, (1 << 20) + 3] {
        for len in [0usize, 3, 8, 9, 4096, 4100, 4096 + 8, 3 * 4096 + 5, 1 << 16] {
            let filler = |i: usize| (i * 7 + 1) as u8;
            let mut want: Vec<u8> = (0..len).map(filler).collect();
            let mut got = want.clone();
            stamp_sample(offset, &mut want);
            stamp_chunk(offset, &mut got);
            assert!(got == want, "offset {offset} len {len}");
            assert_eq!(count_sample_mismatches(offset, &got), 0);
        }
    }
}
