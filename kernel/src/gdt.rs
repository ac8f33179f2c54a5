//! GDT with a 64-bit code and data segment and a TSS whose IST entries give double faults,
//! NMIs and machine checks their own known-good stacks (Intel SDM Vol. 3A §7.7, §6.14.5).

use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based, as written into IDT gates) for the double fault handler.
pub const DOUBLE_FAULT_IST: u8 = 1;
/// IST slot for NMI.
pub const NMI_IST: u8 = 2;
/// IST slot for machine checks.
pub const MACHINE_CHECK_IST: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static TSS_LOADED: AtomicBool = AtomicBool::new(false);
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Kernel code segment selector (for IDT gates).
pub fn code_selector() -> SegmentSelector {
    GDT.get().map(|g| g.1.code).unwrap_or(SegmentSelector(0x08))
}

/// Loads the GDT and TSS and reloads the segment registers. Idempotent.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // Only the address is taken (no reference is created); the CPU is the only writer
        // of these stacks.
        let stacks = (&raw mut IST_STACKS) as u64;
        // The TSS is packed: update a copy of the table.
        let mut ist = tss.interrupt_stack_table;
        for (i, slot) in ist.iter_mut().take(3).enumerate() {
            *slot = VirtAddr::new(stacks + ((i + 1) * IST_STACK_SIZE) as u64);
        }
        tss.interrupt_stack_table = ist;
        tss
    });
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives forever;
    // code is a 64-bit ring-0 segment, data a writable data segment. The TSS descriptor is
    // loaded once (a second `ltr` of a busy TSS faults, so skip it if already loaded).
    unsafe {
        CS::set_reg(sel.code);
        SS::set_reg(sel.data);
        DS::set_reg(sel.data);
        ES::set_reg(sel.data);
        if !TSS_LOADED.swap(true, Ordering::SeqCst) {
            load_tss(sel.tss);
        }
    }
}
