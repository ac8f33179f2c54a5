//! In-QEMU test: the image's `memcpy`/`memmove`/`memset` (kernel::mem) against byte-loop
//! references: every length 0..=300 at every source/destination alignment mod 8,
//! overlapping moves both ways, large copies, and that the image links ours.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

kernel::test_main!(
    image_links_kernel_mem_functions,
    memcpy_all_lengths_and_alignments,
    memmove_overlapping_forward_and_backward,
    memset_all_lengths_and_alignments,
    large_copies_and_fills,
    slice_copies_use_them_correctly
);

unsafe extern "C" {
    fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
}

/// Guard bytes around every destination: a copy must not touch them.
const GUARD: usize = 16;
const GUARD_BYTE: u8 = 0xa5;
const MAX_LEN: usize = 300;

/// Distinct, position-dependent source bytes (never the guard byte pattern alone).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn image_links_kernel_mem_functions() {
    // The symbols the compiler calls are the kernel's, not compiler_builtins' `rep movs`.
    let addr = |f: *const ()| f as usize;
    assert_eq!(
        addr(memcpy as *const ()),
        addr(kernel::mem::memcpy as *const ())
    );
    assert_eq!(
        addr(memmove as *const ()),
        addr(kernel::mem::memmove as *const ())
    );
    assert_eq!(
        addr(memset as *const ()),
        addr(kernel::mem::memset as *const ())
    );
}

fn memcpy_all_lengths_and_alignments() {
    let src_buf = pattern(MAX_LEN + 8, 7);
    let mut dst_buf = vec![0u8; MAX_LEN + 8 + 2 * GUARD];
    let mut checked = 0u32;
    for src_align in 0..8 {
        for dst_align in 0..8 {
            for len in 0..=MAX_LEN {
                byte_fill(&mut dst_buf, GUARD_BYTE);
                let src = &src_buf[src_align..src_align + len];
                let d = GUARD + dst_align;
                // SAFETY: `src` has `len` bytes; the destination range is inside
                // `dst_buf` (GUARD + 7 + 300 + GUARD <= its length); distinct buffers.
                let ret = unsafe { memcpy(dst_buf.as_mut_ptr().add(d), src.as_ptr(), len) };
                assert_eq!(ret as usize, dst_buf.as_ptr() as usize + d);
                for (i, b) in dst_buf.iter().enumerate() {
                    let want = if (d..d + len).contains(&i) {
                        src[i - d]
                    } else {
                        GUARD_BYTE
                    };
                    assert_eq!(
                        *b, want,
                        "memcpy len {len} src+{src_align} dst+{dst_align}: byte {i}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 64 * 301);
}

/// Byte-by-byte copy that cannot become a call to the functions under test (volatile
/// stores are never merged into a `memcpy`).
fn byte_copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        // SAFETY: `d` is a valid, exclusive byte of `dst`.
        unsafe { core::ptr::write_volatile(d, *s) };
    }
}

/// Byte-by-byte fill, independent of `memset` (volatile stores).
fn byte_fill(dst: &mut [u8], value: u8) {
    for d in dst.iter_mut() {
        // SAFETY: `d` is a valid, exclusive byte of `dst`.
        unsafe { core::ptr::write_volatile(d, value) };
    }
}

/// Reference memmove: through a temporary copy, byte by byte.
fn reference_move(buf: &mut [u8], dst: usize, src: usize, len: usize) {
    let mut tmp = vec![0u8; len];
    byte_copy(&mut tmp, &buf[src..src + len]);
    byte_copy(&mut buf[dst..dst + len], &tmp);
}

fn memmove_overlapping_forward_and_backward() {
    const AREA: usize = 2 * MAX_LEN + 64;
    let base = pattern(AREA, 3);
    let mut buf = vec![0u8; AREA];
    let mut want = vec![0u8; AREA];
    let mut checked = 0u32;
    // Distances around the block (32) and word (8) sizes, both signs; every length
    // up to MAX_LEN; source offset varied mod 8.
    let distances: [isize; 16] = [
        -65, -40, -33, -32, -31, -9, -8, -1, 1, 7, 8, 9, 31, 32, 33, 64,
    ];
    for &dist in &distances {
        for src_align in 0..8 {
            for len in (0..=MAX_LEN).step_by(3).chain([31, 32, 33, 64, 65, 255]) {
                let src: usize = 80 + src_align;
                let dst = src.checked_add_signed(dist).expect("in range");
                byte_copy(&mut buf, &base);
                byte_copy(&mut want, &base);
                reference_move(&mut want, dst, src, len);
                // SAFETY: both ranges lie inside `buf` (80+7+65+300 < AREA, dst >= 15).
                let ret = unsafe { memmove(buf.as_mut_ptr().add(dst), buf.as_ptr().add(src), len) };
                assert_eq!(ret as usize, buf.as_ptr() as usize + dst);
                assert!(
                    buf == want,
                    "memmove len {len} src {src} dst {dst}: first wrong byte {:?}",
                    buf.iter().zip(&want).position(|(a, b)| a != b)
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 16 * 8 * 100);
}

fn memset_all_lengths_and_alignments() {
    let mut buf = vec![0u8; MAX_LEN + 8 + 2 * GUARD];
    for align in 0..8 {
        for len in 0..=MAX_LEN {
            byte_fill(&mut buf, GUARD_BYTE);
            let d = GUARD + align;
            let value = (len as u8) ^ 0x3c;
            // A value with high bits set: only the low byte counts (C semantics).
            let c = 0x7700 | i32::from(value);
            // SAFETY: the range is inside `buf` (GUARD + 7 + 300 + GUARD <= its length).
            let ret = unsafe { memset(buf.as_mut_ptr().add(d), c, len) };
            assert_eq!(ret as usize, buf.as_ptr() as usize + d);
            for (i, b) in buf.iter().enumerate() {
                let want = if (d..d + len).contains(&i) {
                    value
                } else {
                    GUARD_BYTE
                };
                assert_eq!(*b, want, "memset len {len} dst+{align}: byte {i}");
            }
        }
    }
}

fn large_copies_and_fills() {
    for (len, src_off, dst_off) in [
        (1 << 20, 0, 0),
        ((1 << 20) + 13, 3, 5),
        (65_536 + 7, 1, 0),
        (4097, 0, 7),
    ] {
        let src = pattern(len + 8, 11);
        let mut dst = vec![GUARD_BYTE; len + 16];
        // SAFETY: `src` holds `src_off + len` bytes, `dst` holds `dst_off + len + 8`.
        unsafe {
            memcpy(
                dst.as_mut_ptr().add(dst_off),
                src.as_ptr().add(src_off),
                len,
            )
        };
        assert!(dst[..dst_off].iter().all(|&b| b == GUARD_BYTE));
        assert!(dst[dst_off..dst_off + len] == src[src_off..src_off + len]);
        assert!(dst[dst_off + len..].iter().all(|&b| b == GUARD_BYTE));
        // Large overlapping moves: 1 KiB + 3 apart, both ways.
        let mut want = vec![0u8; dst.len()];
        byte_copy(&mut want, &dst);
        let n = len - 1027;
        reference_move(&mut want, 1027, 0, n);
        // SAFETY: both ranges inside `dst` (1027 + n = len <= its length).
        unsafe { memmove(dst.as_mut_ptr().add(1027), dst.as_ptr(), n) };
        assert!(dst == want, "large backward memmove of {n}");
        reference_move(&mut want, 0, 1027, n);
        // SAFETY: as above.
        unsafe { memmove(dst.as_mut_ptr(), dst.as_ptr().add(1027), n) };
        assert!(dst == want, "large forward memmove of {n}");
        // SAFETY: the range is inside `dst`.
        unsafe { memset(dst.as_mut_ptr().add(dst_off), 0x5a, len) };
        assert!(dst[dst_off..dst_off + len].iter().all(|&b| b == 0x5a));
        assert!(dst[dst_off + len..].iter().all(|&b| b == GUARD_BYTE));
    }
}

fn slice_copies_use_them_correctly() {
    // What Rust code does: copy_from_slice, copy_within, Vec clone, vec![x; n].
    let src = pattern(100_003, 5);
    let mut dst = vec![0u8; 100_003];
    dst.copy_from_slice(core::hint::black_box(&src));
    assert!(dst == src);
    dst.copy_within(10..90_000, 17);
    assert!(dst[17..90_007] == src[10..90_000]);
    assert!(dst[..17] == src[..17]);
    let clone = core::hint::black_box(&src).clone();
    assert!(clone == src);
    let filled = vec![0x42u8; core::hint::black_box(70_001)];
    assert!(filled.iter().all(|&b| b == 0x42));
}
