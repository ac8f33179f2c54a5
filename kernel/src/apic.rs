//! Local APIC and I/O APIC bring-up (through the `x2apic` crate); masks the legacy 8259 PICs.
//!
//! The local APIC runs in x2APIC mode when the CPU offers it, else in xAPIC (MMIO) mode.
//! Fixed vectors: [`TIMER_VECTOR`], [`ERROR_VECTOR`], [`SPURIOUS_VECTOR`] (all above the
//! `interrupts::allocate_vector` range 0x30..=0xEF). Every I/O APIC input starts masked;
//! [`route_gsi`] unmasks one. EOI is lock-free (one register write) and is installed as the
//! interrupt dispatcher's EOI hook.
//!
//! References: Intel SDM Vol. 3A §11.4 (local APIC), §11.5.1 (LVT), §11.5.4 (APIC timer),
//! §11.8.5 (EOI), §11.9 (spurious interrupt: no EOI), §11.12 (x2APIC MSRs);
//! 82093AA I/O APIC datasheet §3.2.4 (redirection table); 8259A datasheet (OCW1 mask).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use alloc::vec::Vec;
use spin::Mutex;
use x2apic::ioapic::{IoApic, IrqFlags, IrqMode, RedirectionTableEntry};
use x2apic::lapic::{LocalApic, LocalApicBuilder, TimerDivide, TimerMode};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::acpi::{AcpiInfo, IoApicInfo};
use crate::interrupts;

/// Vector of the local APIC timer (used by `clock` for deadlines).
pub const TIMER_VECTOR: u8 = 0xF0;
/// Vector of the local APIC error interrupt.
pub const ERROR_VECTOR: u8 = 0xF1;
/// Spurious-interrupt vector (low nibble all ones, as older APICs require; SDM §11.9).
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Vector base the legacy PICs are remapped to before being masked, so a stray PIC
/// interrupt can never look like a CPU exception (vectors 0..32).
const PIC_VECTOR_BASE: u8 = 0x20;

/// The divider programmed into the timer's divide configuration register.
pub const TIMER_DIVIDE: u32 = 16;

/// x2APIC EOI MSR (SDM Vol. 3A table 11-6).
const X2APIC_EOI_MSR: u32 = 0x80B;
/// xAPIC EOI register offset (SDM Vol. 3A table 11-1).
const XAPIC_EOI_OFFSET: u64 = 0xB0;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static LOCAL_ID: AtomicU32 = AtomicU32::new(0);
static SKIP_NEXT_EOI: AtomicBool = AtomicBool::new(false);
static SPURIOUS_COUNT: AtomicU64 = AtomicU64::new(0);
static ERROR_COUNT: AtomicU64 = AtomicU64::new(0);
/// Whether the timer LVT is programmed one-shot and unmasked (then arming only writes the
/// initial count). Only changed under the `LAPIC` lock.
static TIMER_LVT_ONESHOT: AtomicBool = AtomicBool::new(false);

/// The local APIC of the (single) CPU we run on.
struct LapicCell(LocalApic);

// SAFETY: `LocalApic` is `!Send` because its registers belong to one CPU. The kernel runs on
// exactly one CPU (the BSP) and never starts another, so all accesses reach the same APIC.
unsafe impl Send for LapicCell {}

static LAPIC: Mutex<Option<LapicCell>> = Mutex::new(None);
/// One I/O APIC: its MADT description, its input count, and its registers.
struct IoApicSlot {
    desc: IoApicInfo,
    inputs: u32,
    regs: IoApic,
}

impl IoApicSlot {
    fn serves(&self, gsi: u32) -> bool {
        gsi >= self.desc.gsi_base && gsi - self.desc.gsi_base < self.inputs
    }
}

static IOAPICS: Mutex<Vec<IoApicSlot>> = Mutex::new(Vec::new());

/// How the local APIC is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// Memory-mapped registers at the given physical (== virtual) address.
    XApic(u64),
    /// MSR-based x2APIC mode.
    X2Apic,
}

/// What [`init`] found.
#[derive(Clone, Copy, Debug)]
pub struct ApicInfo {
    /// Local APIC access mode.
    pub mode: ApicMode,
    /// Local APIC ID of this CPU (the MSI destination).
    pub local_apic_id: u32,
    /// Local APIC version register value (bits 0..8).
    pub version: u8,
    /// Number of I/O APIC inputs across all I/O APICs.
    pub ioapic_inputs: u32,
}

/// Why APIC bring-up failed.
#[derive(Debug)]
pub enum ApicError {
    /// `x2apic::LocalApicBuilder::build` refused.
    LocalApic(&'static str),
    /// A fixed vector could not be claimed in the interrupt dispatcher.
    Vector(u8, interrupts::InterruptError),
    /// The GSI is not served by any I/O APIC.
    NoSuchGsi(u32),
    /// [`init`] has not run.
    NotInitialized,
    /// A register window could not be mapped.
    Map(crate::memory::MapError),
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApicError::LocalApic(e) => write!(f, "local APIC: {e}"),
            ApicError::Vector(v, e) => write!(f, "cannot register vector {v:#x}: {e:?}"),
            ApicError::NoSuchGsi(g) => write!(f, "no I/O APIC serves GSI {g}"),
            ApicError::NotInitialized => write!(f, "APIC not initialised"),
            ApicError::Map(e) => write!(f, "cannot map APIC registers: {e}"),
        }
    }
}

/// Brings up the local APIC and all I/O APICs described by `acpi` (with every input masked),
/// masks the 8259 PICs, and installs the EOI hook. Idempotent: a second call only reports.
pub fn init(acpi: &AcpiInfo) -> Result<ApicInfo, ApicError> {
    if MODE.load(Ordering::Acquire) != MODE_NONE {
        return info().ok_or(ApicError::NotInitialized);
    }
    interrupts::without_interrupts(|| {
        if acpi.has_legacy_pics {
            mask_legacy_pics();
        }

        let base = acpi.local_apic_address;
        crate::memory::map_mmio(base, 4096).map_err(ApicError::Map)?;
        let mut lapic = LocalApicBuilder::new()
            .timer_vector(usize::from(TIMER_VECTOR))
            .error_vector(usize::from(ERROR_VECTOR))
            .spurious_vector(usize::from(SPURIOUS_VECTOR))
            .timer_mode(TimerMode::OneShot)
            .timer_divide(TimerDivide::Div16)
            // Initial count 0 keeps the timer stopped (SDM §11.5.4) until `clock` arms it.
            .timer_initial(0)
            .set_xapic_base(base)
            .build()
            .map_err(ApicError::LocalApic)?;
        // SAFETY: the register window is mapped above (xAPIC) or MSR-based (x2APIC); we run on
        // the BSP with interrupts off, and nothing else programs the local APIC.
        unsafe {
            lapic.enable();
            // Keep the timer masked until the first deadline is armed.
            lapic.disable_timer();
        }
        // SAFETY: as above; reading the ID register has no side effects.
        let id = unsafe { lapic.id() };
        let mode = lapic_mode();
        if let ApicMode::XApic(b) = mode {
            XAPIC_BASE.store(b, Ordering::Relaxed);
        }
        LOCAL_ID.store(id, Ordering::Relaxed);
        MODE.store(
            if mode == ApicMode::X2Apic {
                MODE_X2APIC
            } else {
                MODE_XAPIC
            },
            Ordering::Release,
        );
        *LAPIC.lock() = Some(LapicCell(lapic));

        let mut ioapics = IOAPICS.lock();
        for desc in &acpi.io_apics {
            crate::memory::map_mmio(desc.address, 4096).map_err(ApicError::Map)?;
            // SAFETY: the MADT names this as an I/O APIC register window; it is mapped above.
            let mut ioapic = unsafe { IoApic::new(desc.address) };
            // SAFETY: reading the version register has no side effects.
            let inputs = u32::from(unsafe { ioapic.max_table_entry() }) + 1;
            for input in 0..inputs {
                let mut entry = RedirectionTableEntry::default();
                entry.set_mode(IrqMode::Fixed);
                entry.set_flags(IrqFlags::MASKED);
                entry.set_vector(PIC_VECTOR_BASE);
                // SAFETY: `input` is below the table size the I/O APIC reported.
                unsafe { ioapic.set_table_entry(input as u8, entry) };
            }
            log::debug!(
                "apic: ioapic {} at {:#x}: {} inputs masked",
                desc.id,
                desc.address,
                inputs
            );
            ioapics.push(IoApicSlot {
                desc: *desc,
                inputs,
                regs: ioapic,
            });
        }
        drop(ioapics);

        interrupts::register_handler(SPURIOUS_VECTOR, spurious_handler)
            .map_err(|e| ApicError::Vector(SPURIOUS_VECTOR, e))?;
        interrupts::register_handler(ERROR_VECTOR, error_handler)
            .map_err(|e| ApicError::Vector(ERROR_VECTOR, e))?;
        interrupts::set_eoi_hook(eoi_hook);
        Ok(())
    })?;
    let info = info().ok_or(ApicError::NotInitialized)?;
    log::info!(
        "apic: {:?}, id {}, version {:#x}, {} ioapic inputs (all masked), pics masked",
        info.mode,
        info.local_apic_id,
        info.version,
        info.ioapic_inputs
    );
    Ok(info)
}

fn lapic_mode() -> ApicMode {
    // IA32_APIC_BASE bit 10 = x2APIC enable (SDM §11.12.1).
    // SAFETY: IA32_APIC_BASE (0x1B) exists on every CPU with a local APIC.
    let base = unsafe { Msr::new(0x1B).read() };
    if base & (1 << 10) != 0 {
        ApicMode::X2Apic
    } else {
        ApicMode::XApic(base & 0x000F_FFFF_FFFF_F000)
    }
}

/// Current APIC state, if [`init`] ran.
pub fn info() -> Option<ApicInfo> {
    let mode = match MODE.load(Ordering::Acquire) {
        MODE_XAPIC => ApicMode::XApic(XAPIC_BASE.load(Ordering::Relaxed)),
        MODE_X2APIC => ApicMode::X2Apic,
        _ => return None,
    };
    let version = with_lapic(|l| {
        // SAFETY: reading the version register has no side effects.
        unsafe { l.version() }
    })?;
    let ioapic_inputs =
        interrupts::without_interrupts(|| IOAPICS.lock().iter().map(|s| s.inputs).sum());
    Some(ApicInfo {
        mode,
        local_apic_id: local_apic_id(),
        version,
        ioapic_inputs,
    })
}

/// Runs `f` on the local APIC with interrupts disabled (the EOI hook never takes this lock,
/// but the timer code does, so holders must not be interrupted).
fn with_lapic<R>(f: impl FnOnce(&mut LocalApic) -> R) -> Option<R> {
    interrupts::without_interrupts(|| LAPIC.lock().as_mut().map(|c| f(&mut c.0)))
}

/// Local APIC ID of this CPU: the destination for MSI/MSI-X messages.
pub fn local_apic_id() -> u32 {
    LOCAL_ID.load(Ordering::Relaxed)
}

/// Signals end-of-interrupt to the local APIC (SDM §11.8.5). Lock-free; safe in an ISR.
pub fn eoi() {
    match MODE.load(Ordering::Acquire) {
        MODE_X2APIC => {
            // SAFETY: x2APIC mode is enabled, so the EOI MSR exists; writing 0 is the
            // architectural EOI and has no other effect.
            unsafe { Msr::new(X2APIC_EOI_MSR).write(0) }
        }
        MODE_XAPIC => {
            let base = XAPIC_BASE.load(Ordering::Relaxed);
            // SAFETY: `base` is the mapped xAPIC window; offset 0xB0 is the write-only EOI
            // register, and writing 0 to it is the architectural EOI.
            unsafe { crate::mmio::write32(base + XAPIC_EOI_OFFSET, 0) }
        }
        _ => {}
    }
}

/// The dispatcher's EOI hook: EOI for every vector except the spurious one, which must
/// not be acknowledged (SDM §11.9).
fn eoi_hook() {
    if !SKIP_NEXT_EOI.swap(false, Ordering::AcqRel) {
        eoi();
    }
}

fn spurious_handler(_vector: u8) {
    SPURIOUS_COUNT.fetch_add(1, Ordering::Relaxed);
    SKIP_NEXT_EOI.store(true, Ordering::Release);
}

fn error_handler(_vector: u8) {
    ERROR_COUNT.fetch_add(1, Ordering::Relaxed);
}

/// Number of spurious interrupts seen.
pub fn spurious_count() -> u64 {
    SPURIOUS_COUNT.load(Ordering::Relaxed)
}

/// Number of local APIC error interrupts seen.
pub fn error_count() -> u64 {
    ERROR_COUNT.load(Ordering::Relaxed)
}

/// Sends a fixed interrupt on `vector` to this CPU (through the ICR, which works in both
/// xAPIC and x2APIC mode). Delivered once interrupts are enabled.
pub fn send_self_ipi(vector: u8) -> Result<(), ApicError> {
    let id = local_apic_id();
    with_lapic(|l| {
        // SAFETY: a fixed IPI to our own APIC ID only raises `vector` here.
        unsafe { l.send_ipi(vector, id) }
    })
    .ok_or(ApicError::NotInitialized)
}

/// Arms the local APIC timer in one-shot mode: it fires [`TIMER_VECTOR`] once after
/// `initial_count` ticks of the (divided) APIC timer clock. A count of 0 stops it.
/// After the first call only the initial-count register is written (one MMIO write).
pub fn timer_oneshot(initial_count: u32) -> Result<(), ApicError> {
    with_lapic(|l| {
        // SAFETY: reprogramming the timer of our own APIC; mode/divide were set by `init`.
        unsafe {
            if !TIMER_LVT_ONESHOT.load(Ordering::Relaxed) {
                l.set_timer_mode(TimerMode::OneShot);
                l.enable_timer();
                TIMER_LVT_ONESHOT.store(true, Ordering::Relaxed);
            }
            l.set_timer_initial(initial_count);
        }
    })
    .ok_or(ApicError::NotInitialized)
}

/// Stops the local APIC timer (initial count 0, SDM §11.5.4); an interrupt already
/// pending is still delivered.
pub fn timer_stop() -> Result<(), ApicError> {
    with_lapic(|l| {
        // SAFETY: zeroing the initial count of our own APIC timer only stops it.
        unsafe { l.set_timer_initial(0) }
    })
    .ok_or(ApicError::NotInitialized)
}

/// Starts the timer counting down from `u32::MAX` with its interrupt masked (for
/// calibration: read it back with [`timer_current_count`]).
pub fn timer_start_free_running() -> Result<(), ApicError> {
    with_lapic(|l| {
        // SAFETY: masked timer: counting produces no interrupt.
        unsafe {
            TIMER_LVT_ONESHOT.store(false, Ordering::Relaxed);
            l.disable_timer();
            l.set_timer_mode(TimerMode::OneShot);
            l.set_timer_initial(u32::MAX);
        }
    })
    .ok_or(ApicError::NotInitialized)
}

/// The timer's current count register.
pub fn timer_current_count() -> Result<u32, ApicError> {
    with_lapic(|l| {
        // SAFETY: reading the current-count register has no side effects.
        unsafe { l.timer_current() }
    })
    .ok_or(ApicError::NotInitialized)
}

/// Routes global system interrupt `gsi` to `vector` on this CPU (fixed delivery, physical
/// destination) and unmasks it.
pub fn route_gsi(
    gsi: u32,
    vector: u8,
    level_triggered: bool,
    active_low: bool,
) -> Result<(), ApicError> {
    let dest = local_apic_id();
    interrupts::without_interrupts(|| {
        let mut ioapics = IOAPICS.lock();
        let slot = ioapics
            .iter_mut()
            .find(|s| s.serves(gsi))
            .ok_or(ApicError::NoSuchGsi(gsi))?;
        let input = (gsi - slot.desc.gsi_base) as u8;
        let mut entry = RedirectionTableEntry::default();
        entry.set_mode(IrqMode::Fixed);
        let mut flags = IrqFlags::empty();
        if level_triggered {
            flags |= IrqFlags::LEVEL_TRIGGERED;
        }
        if active_low {
            flags |= IrqFlags::LOW_ACTIVE;
        }
        entry.set_flags(flags);
        entry.set_vector(vector);
        entry.set_dest(dest as u8);
        // SAFETY: `input` is inside this I/O APIC's table (checked above).
        unsafe { slot.regs.set_table_entry(input, entry) };
        Ok(())
    })
}

/// Masks global system interrupt `gsi`.
pub fn mask_gsi(gsi: u32) -> Result<(), ApicError> {
    interrupts::without_interrupts(|| {
        let mut ioapics = IOAPICS.lock();
        let slot = ioapics
            .iter_mut()
            .find(|s| s.serves(gsi))
            .ok_or(ApicError::NoSuchGsi(gsi))?;
        // SAFETY: the input is inside this I/O APIC's table (checked above).
        unsafe { slot.regs.disable_irq((gsi - slot.desc.gsi_base) as u8) };
        Ok(())
    })
}

/// Remaps both 8259 PICs to vectors 0x20..0x30 and masks every line (8259A datasheet:
/// ICW1..ICW4 initialisation, then OCW1 = 0xFF). Their output never reaches the CPU anyway
/// (the local APIC's LINT0 is masked by `LocalApic::enable`); the remap guarantees that even
/// a stray one could not alias an exception vector.
fn mask_legacy_pics() {
    let mut master_cmd: Port<u8> = Port::new(0x20);
    let mut master_data: Port<u8> = Port::new(0x21);
    let mut slave_cmd: Port<u8> = Port::new(0xA0);
    let mut slave_data: Port<u8> = Port::new(0xA1);
    // SAFETY: these are the fixed 8259 ports of the PC platform (present because the MADT
    // has PCAT_COMPAT); the sequence below is the standard initialisation, run once with
    // interrupts disabled.
    unsafe {
        master_cmd.write(0x11); // ICW1: edge, cascade, ICW4 needed
        slave_cmd.write(0x11);
        master_data.write(PIC_VECTOR_BASE); // ICW2: vector base
        slave_data.write(PIC_VECTOR_BASE + 8);
        master_data.write(0x04); // ICW3: slave on IR2
        slave_data.write(0x02); // ICW3: cascade identity
        master_data.write(0x01); // ICW4: 8086 mode
        slave_data.write(0x01);
        master_data.write(0xFF); // OCW1: mask all
        slave_data.write(0xFF);
    }
}
