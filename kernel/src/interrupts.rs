//! IDT with assembly entry stubs for all 256 vectors, one Rust dispatcher, exception
//! reports, and registration of device interrupt handlers.
//!
//! Intel SDM Vol. 3A §6.14: in 64-bit mode the CPU aligns RSP to 16 bytes and pushes
//! SS, RSP, RFLAGS, CS, RIP and, for vectors 8, 10–14, 17, 21, 29 and 30, an error code.
//! Each stub pushes a zero error code where the CPU does not, then its vector number, and
//! jumps to `isr_common`, which saves the general-purpose registers and calls
//! [`interrupt_dispatch`] with a pointer to the resulting [`InterruptFrame`]. The target has
//! no SSE/x87 code (soft-float), so no FPU state needs saving.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};
use x86_64::instructions::port::Port;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

pub use x86_64::instructions::interrupts::{
    are_enabled, disable, enable, enable_and_hlt, without_interrupts,
};

use crate::gdt;

/// Handler for a device interrupt vector; runs with interrupts disabled and must not block
/// or allocate.
pub type IrqHandler = fn(vector: u8);

/// First vector available to devices (0–31 are CPU exceptions).
pub const FIRST_DEVICE_VECTOR: u8 = 32;
/// Range [`allocate_vector`] hands out.
pub const ALLOCATABLE_VECTORS: core::ops::RangeInclusive<u8> = 0x30..=0xEF;

/// Why registering a handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptError {
    /// Vectors 0–31 are CPU exceptions, handled by this module.
    ExceptionVector(u8),
    /// A handler is already registered for the vector.
    AlreadyRegistered(u8),
}

impl fmt::Display for InterruptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExceptionVector(v) => write!(f, "vector {v} is a CPU exception vector"),
            Self::AlreadyRegistered(v) => write!(f, "vector {v:#x} already has a handler"),
        }
    }
}

/// Saved state on interrupt entry, lowest address first (layout built by `isr_common`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU for some exceptions, else 0 from the stub.
    pub error_code: u64,
    // Hardware frame (SDM Vol. 3A Figure 6-9).
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<InterruptFrame>() == 22 * 8);

global_asm!(
    r#"
    .section .text.isr, "ax"
    .code64
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr
    .balign 16
    /* Every stub must fit its 16-byte slot: the IDT addresses them as isr_stubs + 16 * n.
       boot/linker.ld asserts isr_stubs_end - isr_stubs == 4096. */
    .global isr_stubs_end
isr_stubs_end:

isr_common:
    cld
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    /* 22 quadwords from a 16-byte aligned base: RSP is 16-byte aligned for the call. */
    movq %rsp, %rdi
    call interrupt_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp      /* vector and error code */
    iretq
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static isr_stubs: u8;
}

/// One 64-bit IDT gate descriptor (SDM Vol. 3A Figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    /// Present, DPL 0, 64-bit interrupt gate (clears IF on entry).
    fn interrupt(handler: u64, selector: u16, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist,
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

struct Table {
    handlers: [Option<IrqHandler>; 256],
    allocated: [bool; 256],
    eoi: Option<fn()>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    handlers: [None; 256],
    allocated: [false; 256],
    eoi: None,
});

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// Builds and loads the IDT and masks the legacy 8259 PICs. Idempotent.
pub fn init() {
    let idt = IDT.call_once(|| {
        let base = (&raw const isr_stubs) as u64;
        let sel = gdt::code_selector().0;
        let mut gates = [Gate::interrupt(0, 0, 0); 256];
        for (v, gate) in gates.iter_mut().enumerate() {
            let ist = match v {
                2 => gdt::NMI_IST,
                8 => gdt::DOUBLE_FAULT_IST,
                18 => gdt::MACHINE_CHECK_IST,
                _ => 0,
            };
            *gate = Gate::interrupt(base + 16 * v as u64, sel, ist);
        }
        Idt(gates)
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is a 'static, fully initialised table whose gates point at the stubs
    // above with the kernel code selector loaded by `gdt::init`.
    unsafe { lidt(&ptr) };
    mask_legacy_pic();
}

/// Masks every line of both 8259 PICs. SeaBIOS leaves them programmed with vectors 0x08 and
/// 0x70, which overlap CPU exceptions; device interrupts go through the I/O APIC and MSI-X.
fn mask_legacy_pic() {
    // SAFETY: ports 0x21 and 0xA1 are the PIC interrupt mask registers (OCW1); writing 0xFF
    // masks all lines and has no other effect.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Registers `handler` for a device vector (32–255).
pub fn register_handler(vector: u8, handler: IrqHandler) -> Result<(), InterruptError> {
    if vector < FIRST_DEVICE_VECTOR {
        return Err(InterruptError::ExceptionVector(vector));
    }
    without_interrupts(|| {
        let mut t = TABLE.lock();
        let slot = &mut t.handlers[usize::from(vector)];
        if slot.is_some() {
            return Err(InterruptError::AlreadyRegistered(vector));
        }
        *slot = Some(handler);
        t.allocated[usize::from(vector)] = true;
        Ok(())
    })
}

/// Removes the handler of `vector` and frees the vector. Returns whether one was registered.
pub fn unregister_handler(vector: u8) -> bool {
    without_interrupts(|| {
        let mut t = TABLE.lock();
        let had = t.handlers[usize::from(vector)].take().is_some();
        t.allocated[usize::from(vector)] = false;
        had
    })
}

/// Reserves a free vector in 0x30..=0xEF (for MSI-X / I/O APIC routing); register its
/// handler with [`register_handler`].
pub fn allocate_vector() -> Option<u8> {
    without_interrupts(|| {
        let mut t = TABLE.lock();
        let v = ALLOCATABLE_VECTORS
            .clone()
            .find(|&v| !t.allocated[usize::from(v)] && t.handlers[usize::from(v)].is_none())?;
        t.allocated[usize::from(v)] = true;
        Some(v)
    })
}

/// Sets the function the dispatcher calls after each device interrupt handler
/// (the local APIC end-of-interrupt write).
pub fn set_eoi_hook(f: fn()) {
    without_interrupts(|| TABLE.lock().eoi = Some(f));
}

/// Number of breakpoint (`int3`) exceptions handled so far.
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::SeqCst)
}

/// Number of device vectors that fired without a registered handler.
pub fn unhandled_count() -> u64 {
    UNHANDLED.load(Ordering::SeqCst)
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved (15)",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved (31)",
];

/// Name of CPU exception `vector` (SDM Vol. 3A Table 6-1).
pub fn exception_name(vector: u8) -> &'static str {
    EXCEPTION_NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("device interrupt")
}

/// Common Rust entry for all vectors, called by `isr_common` with interrupts disabled.
#[unsafe(no_mangle)]
extern "sysv64" fn interrupt_dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    if vector < FIRST_DEVICE_VECTOR {
        exception(vector, frame);
        return;
    }
    let (handler, eoi) = {
        let t = TABLE.lock();
        (t.handlers[usize::from(vector)], t.eoi)
    };
    match handler {
        Some(h) => h(vector),
        None => {
            UNHANDLED.fetch_add(1, Ordering::SeqCst);
            log::warn!("interrupt vector {vector:#x} has no handler");
        }
    }
    if let Some(eoi) = eoi {
        eoi();
    }
}

fn exception(vector: u8, frame: &mut InterruptFrame) {
    match vector {
        3 => {
            BREAKPOINTS.fetch_add(1, Ordering::SeqCst);
            // RIP already points after the one-byte int3: returning resumes execution.
            log::info!("breakpoint at rip={:#x}", frame.rip.wrapping_sub(1));
        }
        14 => {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            if crate::testing::take_expected_page_fault(cr2) {
                crate::serial_println!(
                    "page fault at {cr2:#x} (expected by the test): error code {:#x}, rip {:#x}",
                    frame.error_code,
                    frame.rip
                );
                crate::testing::resume_after_expected_fault(frame);
            } else {
                report_and_fail(vector, frame, Some(cr2));
            }
        }
        // A double fault from a failed exception delivery (e.g. a stack overflow into the
        // guard page) leaves the address that could not be written in CR2.
        8 => report_and_fail(
            vector,
            frame,
            Some(x86_64::registers::control::Cr2::read_raw()),
        ),
        _ => report_and_fail(vector, frame, None),
    }
}

fn report_and_fail(vector: u8, frame: &InterruptFrame, cr2: Option<u64>) -> ! {
    struct Report<'a>(u8, &'a InterruptFrame, Option<u64>);
    impl fmt::Display for Report<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let Report(vector, fr, cr2) = *self;
            write!(
                f,
                "CPU exception: {} (vector {vector}), error code {:#x}, rip {:#x}, rsp {:#x}",
                exception_name(vector),
                fr.error_code,
                fr.rip,
                fr.rsp
            )?;
            match cr2 {
                Some(cr2) if vector == 14 => write!(
                    f,
                    "\n  page fault at {cr2:#x} (cr2), {}",
                    PageFaultCode(fr.error_code)
                )?,
                Some(cr2) => write!(f, "\n  cr2 {cr2:#x} (last page fault address)")?,
                None => {}
            }
            write!(
                f,
                "\n  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
                fr.rax, fr.rbx, fr.rcx, fr.rdx, fr.rsi, fr.rdi, fr.rbp
            )
        }
    }
    crate::testing::fail(format_args!("{}", Report(vector, frame, cr2)))
}

/// Decoded page fault error code (SDM Vol. 3A §4.7).
struct PageFaultCode(u64);

impl fmt::Display for PageFaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "{} on {} page{}",
            if c & 2 != 0 {
                "write"
            } else if c & 16 != 0 {
                "instruction fetch"
            } else {
                "read"
            },
            if c & 1 != 0 {
                "a present (protection violation)"
            } else {
                "a not-present"
            },
            if c & 8 != 0 { ", reserved bit set" } else { "" }
        )
    }
}
