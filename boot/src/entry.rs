//! The PVH ELF note, the 32-bit entry stub that enters long mode, and `boot_rust_start`.
//!
//! Xen `include/public/elfnote.h`: `XEN_ELFNOTE_PHYS32_ENTRY` (18) holds the physical
//! address of a 32-bit entry point. Xen `docs/misc/pvh.pandoc` gives the machine state at
//! entry: protected mode, paging off, flat 4 GiB CS/DS/ES/SS, interrupts off,
//! `%ebx` = physical address of `hvm_start_info`, no stack.

use core::arch::global_asm;

use crate::pvh::{self, PhysMemory, PvhError};
use crate::{BootInfo, PhysRange};

/// The stub identity-maps physical memory below this address with 2 MiB pages.
const EARLY_MAP_END: u64 = 4 << 30;

global_asm!(
    r#"
    /* ELFNOTE(Xen, XEN_ELFNOTE_PHYS32_ENTRY, .quad pvh_start32).
       QEMU reads an 8-byte desc for 64-bit ELF files and aligns name/desc by the
       PT_NOTE p_align, which the linker script keeps at 4. */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz */
    .long 18                /* type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32

    /* Early page tables: PML4 -> one PDPT -> four PDs of 2 MiB pages = 0..4 GiB. */
    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pds:   .skip 4 * 4096

    /* Temporary GDT for the switch to 64-bit code; the kernel loads its own. */
    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0                     /* null */
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, present, DPL0, L=1 */
    .quad 0x00cf92000000ffff    /* 0x10: data, present, writable, 4 GiB */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .text.boot32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    /* %ebx = hvm_start_info; kept in %ebx (rep stos and the loops below leave it alone). */

    /* Zero .bss: the boot stack, these page tables and Rust statics live there. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $__boot_stack_top, %esp

    /* PML4[0] -> PDPT (present | writable). */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4

    /* PDPT[0..4] -> the four PDs. */
    mov $boot_pds, %eax
    or $0x3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b

    /* 2048 PD entries: 2 MiB pages (present | writable | PS), addresses 0..4 GiB. */
    mov $0x83, %eax
    mov $boot_pds, %edi
    mov $2048, %ecx
2:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b

    /* CR4.PAE (bit 5): 4-level paging needs PAE. */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4

    mov $boot_pml4, %eax
    mov %eax, %cr3

    /* EFER (MSR 0xC0000080).LME (bit 8): long mode enable. */
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr

    /* CR0.PG (bit 31) | CR0.PE (bit 0) | CR0.WP (bit 16): activates long mode. */
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs

    mov $__boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %ebx, %edi          /* first argument: hvm_start_info (zero-extended) */
    call boot_rust_start
3:  hlt
    jmp 3b
    "#,
    options(att_syntax)
);

/// Reads physical memory through the stub's identity map of the first 4 GiB.
struct EarlyIdentityMap;

impl PhysMemory for EarlyIdentityMap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PvhError> {
        let len = buf.len() as u64;
        let err = PvhError::Unreadable { addr, len };
        let end = addr.checked_add(len).ok_or(err)?;
        if addr == 0 || end > EARLY_MAP_END {
            return Err(err);
        }
        // SAFETY: `[addr, end)` is non-null and below 4 GiB, which `pvh_start32` mapped
        // (identity, present, writable). The loader placed `hvm_start_info` and what it
        // points to in RAM there; nothing else runs, so the bytes do not change under us.
        // Only bytes are copied, so alignment does not matter.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
}

unsafe extern "Rust" {
    /// Defined by [`crate::entry_point!`] in the image crate.
    fn __smcd_boot_main(info: &'static BootInfo) -> !;
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// First Rust code: long mode, identity map of 0..4 GiB, on the boot stack, interrupts off.
#[unsafe(no_mangle)]
extern "sysv64" fn boot_rust_start(start_info: u32) -> ! {
    let info = BOOT_INFO.call_once(|| {
        let mut info = match pvh::boot_info_from_start_info(&EarlyIdentityMap, start_info.into()) {
            Ok(info) => info,
            Err(e) => BootInfo {
                error: Some(e),
                ..BootInfo::empty()
            },
        };
        let addr = |sym: *const u8| sym as u64;
        // Only the addresses of the linker symbols are taken, never their contents.
        info.kernel_image = PhysRange {
            start: addr(&raw const __kernel_start),
            end: addr(&raw const __kernel_end),
        };
        info.boot_stack = PhysRange {
            start: addr(&raw const __boot_stack_bottom),
            end: addr(&raw const __boot_stack_top),
        };
        info.stack_guard_page = addr(&raw const __boot_stack_guard);
        info
    });
    // SAFETY: `__smcd_boot_main` is defined by `entry_point!` in the image crate with
    // exactly this signature; it is called once.
    unsafe { __smcd_boot_main(info) }
}
