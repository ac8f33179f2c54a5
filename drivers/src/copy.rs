//! The block copy loop shared by the shared-memory views and the kernel's `memcpy`.
//!
//! One inline-assembly loop, so the accesses are exactly these: never merged, elided or
//! turned back into a `memcpy` call (the kernel's `memcpy` is built on it).

/// Copies `n` bytes from `src` to `dst` in ascending order: 32-byte blocks (four 8-byte
/// loads, then the four stores), 8-byte words, then single bytes. Inline assembly, so
/// the accesses are exactly these (like volatile ones: never merged, elided or turned
/// into a `memcpy` call) and unaligned on the non-region side is plain x86. Under QEMU
/// TCG it moves about twice the bytes per translated instruction of a word loop.
///
/// # Safety
///
/// `src..src+n` readable, `dst..dst+n` writable; they may overlap only with
/// `dst <= src` (each block's loads come before its stores). For shared memory
/// ([`crate::ivshmem::Bar2Memory`]) the region side must be 8-aligned at the start, so
/// its 8-byte accesses stay aligned (single-copy atomic).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn forward_blocks(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; the loop reads `src..src+n` and writes
    // `dst..dst+n` exactly, loads of a block come before its stores (overlap with
    // dst <= src), and it touches no stack and no other memory.
    unsafe {
        core::arch::asm!(
            "cmp {n}, 32",
            "jb 3f",
            "2:",
            "mov {a}, qword ptr [{s}]",
            "mov {b}, qword ptr [{s} + 8]",
            "mov {c}, qword ptr [{s} + 16]",
            "mov {e}, qword ptr [{s} + 24]",
            "mov qword ptr [{d}], {a}",
            "mov qword ptr [{d} + 8], {b}",
            "mov qword ptr [{d} + 16], {c}",
            "mov qword ptr [{d} + 24], {e}",
            "add {s}, 32",
            "add {d}, 32",
            "sub {n}, 32",
            "cmp {n}, 32",
            "jae 2b",
            "3:",
            "cmp {n}, 8",
            "jb 5f",
            "4:",
            "mov {a}, qword ptr [{s}]",
            "mov qword ptr [{d}], {a}",
            "add {s}, 8",
            "add {d}, 8",
            "sub {n}, 8",
            "cmp {n}, 8",
            "jae 4b",
            "5:",
            "test {n}, {n}",
            "jz 7f",
            "6:",
            "mov {a:l}, byte ptr [{s}]",
            "mov byte ptr [{d}], {a:l}",
            "inc {s}",
            "inc {d}",
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
