//! Word-wise `memcpy`, `memmove` and `memset` for the image, replacing compiler_builtins'.
//!
//! Why: on `x86_64-unknown-none` the mem functions come from compiler_builtins, whose
//! x86_64 versions use `rep movsq`/`rep stosq`. Under QEMU TCG (how the images run) a
//! `rep` string instruction runs one element per translated-block pass, so a 1 MiB
//! `copy_from_slice` ran at ~177 MB/s, ten times slower than a plain 8-byte load/store
//! loop (the ivshmem BAR2 copies, ~1.9 GB/s). Every `Vec` clone, slice copy and struct
//! move above the inlining threshold goes through these symbols.
//!
//! How: compiler_builtins defines its mem functions with weak linkage; the strong
//! `#[no_mangle]` definitions below (built only for the bare-metal target) take their
//! place in every image that links this crate. The loops are inline assembly, so LLVM
//! cannot recognise them as a copy idiom and turn them back into a `memcpy` call
//! (which would recurse), and unaligned 8-byte accesses are plain x86 `mov`s, outside
//! Rust's alignment rules. Shape: the destination is first aligned to 8 bytes (large
//! copies), then 32-byte blocks (four loads, then four stores), 8-byte words, and a
//! byte tail.
//!
//! Overlap ([`copy_backward`], `memmove`): a block loads all its source words before it
//! stores any, so copying low-to-high is correct when `dst <= src` and high-to-low when
//! `dst > src` (each store only reaches source bytes that were already loaded).
//!
//! Tested in QEMU by `kernel/tests/mem_copy.rs` (every length 0..=300 at every
//! alignment pair mod 8 against a byte-loop reference, overlaps both ways, large copies).

use core::arch::asm;

/// Copies below this length skip the destination alignment step.
const ALIGN_FROM: usize = 64;

/// Copies `n` bytes from `src` to `dst`, lowest address first: the drivers' block loop
/// (the same one the shared-memory views use).
///
/// # Safety
///
/// `src..src+n` must be readable and `dst..dst+n` writable; they may overlap only with
/// `dst <= src`.
#[inline(always)]
unsafe fn forward_raw(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's guarantees are `forward_blocks`'s contract.
    unsafe { drivers::copy::forward_blocks(dst, src, n) }
}

/// Copies `n` bytes from `src` to `dst`, highest address first.
///
/// # Safety
///
/// `src..src+n` must be readable and `dst..dst+n` writable; they may overlap only with
/// `dst >= src`.
#[inline(always)]
unsafe fn backward_raw(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: as `forward_raw`, mirrored: the pointers start one past the end, each
    // block loads `[s-32, s)` before storing `[d-32, d)`, which with dst >= src only
    // overwrites source bytes already loaded.
    unsafe {
        asm!(
            "add {s}, {n}",
            "add {d}, {n}",
            "cmp {n}, 32",
            "jb 3f",
            "2:",
            "sub {s}, 32",
            "sub {d}, 32",
            "mov {a}, qword ptr [{s} + 24]",
            "mov {b}, qword ptr [{s} + 16]",
            "mov {c}, qword ptr [{s} + 8]",
            "mov {e}, qword ptr [{s}]",
            "mov qword ptr [{d} + 24], {a}",
            "mov qword ptr [{d} + 16], {b}",
            "mov qword ptr [{d} + 8], {c}",
            "mov qword ptr [{d}], {e}",
            "sub {n}, 32",
            "cmp {n}, 32",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "sub {s}, 8",
            "sub {d}, 8",
            "mov {a}, qword ptr [{s}]",
            "mov qword ptr [{d}], {a}",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "dec {s}",
            "dec {d}",
            "mov {a:l}, byte ptr [{s}]",
            "mov byte ptr [{d}], {a:l}",
            "dec {n}",
            "jnz 6b",
            "7:",
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            n = inout(reg) n => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            e = out(reg) _,
            options(nostack),
        );
    }
}

/// Copies `n` bytes from `src` to `dst` low to high, aligning `dst` to 8 bytes first
/// when the copy is long.
///
/// # Safety
///
/// `src..src+n` must be valid for reads and `dst..dst+n` for writes; if the ranges
/// overlap, `dst` must not be above `src`.
#[inline]
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    let mut head = 0;
    if n >= ALIGN_FROM {
        head = (dst as usize).wrapping_neg() & 7;
        // SAFETY: `head < 8 <= n`: a prefix of the caller's ranges, same direction.
        unsafe { forward_raw(dst, src, head) };
    }
    // SAFETY: the rest of the caller's ranges, after the prefix copied above.
    unsafe { forward_raw(dst.wrapping_add(head), src.wrapping_add(head), n - head) };
}

/// Copies `n` bytes from `src` to `dst` high to low, aligning the end of `dst` to 8
/// bytes first when the copy is long.
///
/// # Safety
///
/// `src..src+n` must be valid for reads and `dst..dst+n` for writes; if the ranges
/// overlap, `dst` must not be below `src`.
#[inline]
pub unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
    let mut tail = 0;
    if n >= ALIGN_FROM {
        tail = (dst as usize).wrapping_add(n) & 7;
        let at = n - tail;
        // SAFETY: `tail < 8 <= n`: the last `tail` bytes of the caller's ranges, copied
        // first as the high-to-low order requires.
        unsafe { backward_raw(dst.wrapping_add(at), src.wrapping_add(at), tail) };
    }
    // SAFETY: the rest of the caller's ranges, below the suffix copied above.
    unsafe { backward_raw(dst, src, n - tail) };
}

/// Sets `n` bytes at `dst` to `value`.
///
/// # Safety
///
/// `dst..dst+n` must be valid for writes.
#[inline]
pub unsafe fn fill(dst: *mut u8, value: u8, n: usize) {
    let word = u64::from(value) * 0x0101_0101_0101_0101;
    // SAFETY: the loop writes exactly `dst..dst+n` (the caller's range) and nothing
    // else; no stack use.
    unsafe {
        asm!(
            "cmp {n}, 32",
            "jb 3f",
            "2:",
            "mov qword ptr [{d}], {w}",
            "mov qword ptr [{d} + 8], {w}",
            "mov qword ptr [{d} + 16], {w}",
            "mov qword ptr [{d} + 24], {w}",
            "add {d}, 32",
            "sub {n}, 32",
            "cmp {n}, 32",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "mov qword ptr [{d}], {w}",
            "add {d}, 8",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "mov byte ptr [{d}], {w:l}",
            "inc {d}",
            "dec {n}",
            "jnz 6b",
            "7:",
            d = inout(reg) dst => _,
            n = inout(reg) n => _,
            w = in(reg) word,
            options(nostack),
        );
    }
}

/// `memcpy` (C semantics: the ranges do not overlap); returns `dst`.
///
/// # Safety
///
/// `src..src+n` valid for reads, `dst..dst+n` valid for writes, not overlapping.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the C contract above; non-overlapping ranges are fine in either order.
    unsafe { copy_forward(dst, src, n) };
    dst
}

/// `memmove` (C semantics: the ranges may overlap); returns `dst`.
///
/// # Safety
///
/// `src..src+n` valid for reads, `dst..dst+n` valid for writes.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        // SAFETY: the caller's ranges; dst <= src is the forward copy's overlap case.
        unsafe { copy_forward(dst, src, n) };
    } else {
        // SAFETY: the caller's ranges; dst > src is the backward copy's overlap case.
        unsafe { copy_backward(dst, src, n) };
    }
    dst
}

/// `memset` (C semantics: the low byte of `c` fills `n` bytes); returns `dst`.
///
/// # Safety
///
/// `dst..dst+n` valid for writes.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's range.
    unsafe { fill(dst, c as u8, n) };
    dst
}
