//! ACPI static tables: RSDP → XSDT → MADT (APICs), MCFG (PCIe ECAM), FADT (PM timer).
//!
//! Parsing is done by the rust-osdev `acpi` crate (5.x, without its `alloc` feature, which needs a
//! nightly compiler); this module supplies the [`AcpiHandler`] over our identity-mapped memory and
//! distils the tables into one kernel-owned [`AcpiInfo`] so nothing later touches firmware memory.
//!
//! References: ACPI 6.5 §5.2.5 (RSDP), §5.2.8 (XSDT), §5.2.9 (FADT, `X_PM_TMR_BLK`),
//! §5.2.12 (MADT and its Processor Local APIC / I/O APIC / Interrupt Source Override entries),
//! PCI Firmware Specification 3.2 §4.1.2 (MCFG).

use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use spin::Once;

/// An [`AcpiHandler`] for our address space, where all RAM and firmware tables are
/// identity-mapped (virtual == physical), so "mapping" a region only computes a pointer.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityMappedHandler;

impl AcpiHandler for IdentityMappedHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virtual_start =
            NonNull::new(physical_address as *mut T).expect("ACPI asked to map physical address 0");
        // SAFETY: the kernel identity-maps all RAM, including the firmware's ACPI table area
        // (kernel contract, "Memory"), so `physical_address` is also a valid virtual address
        // for `size` bytes; the caller (the `acpi` crate) guarantees a valid `T` lives there.
        unsafe { PhysicalMapping::new(physical_address, virtual_start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // Identity mappings are permanent: nothing to undo.
    }
}

/// One I/O APIC described by the MADT (ACPI 6.5 §5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicInfo {
    /// The I/O APIC's ID.
    pub id: u8,
    /// Physical base address of its register window.
    pub address: u64,
    /// First global system interrupt (GSI) it serves.
    pub gsi_base: u32,
}

/// An ISA IRQ that is not identity-mapped to a GSI (ACPI 6.5 §5.2.12.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptOverride {
    /// The ISA IRQ number (bus 0).
    pub isa_irq: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// MPS INTI flags (polarity bits 0..2, trigger mode bits 2..4).
    pub flags: u16,
}

/// One PCIe enhanced configuration (ECAM) window from the MCFG
/// (PCI Firmware Specification 3.2 §4.1.2, table 4-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical base address of the window (bus 0 of this segment, even if `bus_start > 0`).
    pub base: u64,
    /// PCI segment group number.
    pub segment: u16,
    /// First decoded bus number.
    pub bus_start: u8,
    /// Last decoded bus number.
    pub bus_end: u8,
}

impl EcamRegion {
    /// Physical address of the first byte of `bus_start`'s configuration space.
    pub fn first_bus_address(&self) -> u64 {
        self.base + (u64::from(self.bus_start) << 20)
    }

    /// Length in bytes of the part of the window that covers `bus_start..=bus_end`
    /// (1 MiB per bus: 32 devices × 8 functions × 4 KiB).
    pub fn len(&self) -> u64 {
        (u64::from(self.bus_end) - u64::from(self.bus_start) + 1) << 20
    }

    /// Whether the window decodes no bus (never true for a well-formed MCFG entry).
    pub fn is_empty(&self) -> bool {
        self.bus_end < self.bus_start
    }
}

/// The ACPI power-management timer: a 3.579545 MHz free-running counter in I/O space
/// (ACPI 6.5 §4.8.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// I/O port of the `PM_TMR` register.
    pub port: u16,
    /// True if the counter is 32 bits wide, false if 24 bits (FADT flag `TMR_VAL_EXT`).
    pub is_32bit: bool,
}

impl PmTimer {
    /// Counter frequency in Hz (ACPI 6.5 §4.8.3.3: "3.579545 MHz").
    pub const FREQUENCY_HZ: u64 = 3_579_545;

    /// Mask of the valid counter bits.
    pub fn mask(&self) -> u32 {
        if self.is_32bit {
            u32::MAX
        } else {
            0x00FF_FFFF
        }
    }
}

/// Everything the kernel needs from ACPI, copied out of firmware memory.
#[derive(Clone, Debug)]
pub struct AcpiInfo {
    /// Physical address of the local APIC register window (MADT, possibly overridden by a
    /// Local APIC Address Override entry).
    pub local_apic_address: u64,
    /// APIC IDs of the enabled processors (MADT Processor Local APIC / x2APIC entries).
    pub processor_apic_ids: Vec<u32>,
    /// The I/O APICs.
    pub io_apics: Vec<IoApicInfo>,
    /// ISA IRQ → GSI overrides.
    pub interrupt_overrides: Vec<InterruptOverride>,
    /// True if the system also has dual 8259 PICs (MADT flag `PCAT_COMPAT`) that must be masked.
    pub has_legacy_pics: bool,
    /// PCIe ECAM windows (empty if there is no MCFG).
    pub ecam_regions: Vec<EcamRegion>,
    /// The PM timer, if the FADT describes one in I/O space.
    pub pm_timer: Option<PmTimer>,
}

/// How an ISA IRQ reaches the I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    /// Global system interrupt.
    pub gsi: u32,
    /// Level- (true) or edge-triggered (false).
    pub level_triggered: bool,
    /// Active low (true) or high (false).
    pub active_low: bool,
}

impl AcpiInfo {
    /// The GSI an ISA IRQ is wired to, honouring the MADT's interrupt source overrides
    /// (ACPI 6.5 §5.2.12.5: without an override ISA IRQ n is GSI n).
    pub fn isa_irq_to_gsi(&self, isa_irq: u8) -> u32 {
        self.isa_route(isa_irq).gsi
    }

    /// GSI, trigger mode and polarity of an ISA IRQ. ISA defaults are edge-triggered and
    /// active high; an override's MPS INTI flags (ACPI 6.5 table 5.26: bits 0..2 polarity,
    /// 2..4 trigger mode, `00` = bus default, `01` = high/edge, `11` = low/level) win.
    pub fn isa_route(&self, isa_irq: u8) -> IsaRoute {
        let mut route = IsaRoute {
            gsi: u32::from(isa_irq),
            level_triggered: false,
            active_low: false,
        };
        if let Some(o) = self
            .interrupt_overrides
            .iter()
            .find(|o| o.isa_irq == isa_irq)
        {
            route.gsi = o.gsi;
            route.active_low = o.flags & 0b11 == 0b11;
            route.level_triggered = (o.flags >> 2) & 0b11 == 0b11;
        }
        route
    }
}

/// Why ACPI discovery failed.
#[derive(Debug)]
pub enum AcpiError {
    /// The boot loader handed over no RSDP address.
    NoRsdp,
    /// The `acpi` crate rejected a table (bad signature, checksum, ...).
    Table(acpi::AcpiError),
    /// There is no MADT, so interrupt controllers cannot be found.
    NoMadt(acpi::AcpiError),
    /// The MADT lists no I/O APIC.
    NoIoApic,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(f, "no RSDP address in the boot information"),
            AcpiError::Table(e) => write!(f, "ACPI tables unusable: {e:?}"),
            AcpiError::NoMadt(e) => write!(f, "no usable MADT: {e:?}"),
            AcpiError::NoIoApic => write!(f, "the MADT lists no I/O APIC"),
        }
    }
}

static INFO: Once<AcpiInfo> = Once::new();

/// Parses the ACPI tables reachable from the RSDP at physical address `rsdp` (once; later
/// calls return the first result).
///
/// The MCFG and the FADT's PM timer are optional; a missing MADT or I/O APIC is an error.
pub fn init(rsdp: Option<u64>) -> Result<&'static AcpiInfo, AcpiError> {
    INFO.try_call_once(|| parse(rsdp.ok_or(AcpiError::NoRsdp)?))
}

/// The parsed tables, if [`init`] succeeded.
pub fn info() -> Option<&'static AcpiInfo> {
    INFO.get()
}

fn parse(rsdp: u64) -> Result<AcpiInfo, AcpiError> {
    // SAFETY: `rsdp` comes from the PVH start info (`rsdp_paddr`), which the hypervisor
    // fills with the physical address of a valid RSDP; memory is identity-mapped.
    let tables = unsafe { AcpiTables::from_rsdp(IdentityMappedHandler, rsdp as usize) }
        .map_err(AcpiError::Table)?;

    let madt_mapping = tables.find_table::<Madt>().map_err(AcpiError::NoMadt)?;
    let madt = madt_mapping.get();
    let mut info = AcpiInfo {
        local_apic_address: u64::from(madt.local_apic_address),
        processor_apic_ids: Vec::new(),
        io_apics: Vec::new(),
        interrupt_overrides: Vec::new(),
        // ACPI 6.5 table 5.20: MADT flags bit 0 = PCAT_COMPAT.
        has_legacy_pics: madt.flags & 1 != 0,
        ecam_regions: Vec::new(),
        pm_timer: None,
    };
    for entry in madt.entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                // Flags bit 0 = Enabled, bit 1 = Online Capable (ACPI 6.5 table 5.23).
                let flags = e.flags;
                if flags & 1 != 0 {
                    info.processor_apic_ids.push(u32::from(e.apic_id));
                }
            }
            MadtEntry::LocalX2Apic(e) => {
                let flags = e.flags;
                if flags & 1 != 0 {
                    info.processor_apic_ids.push(e.x2apic_id);
                }
            }
            MadtEntry::IoApic(e) => info.io_apics.push(IoApicInfo {
                id: e.io_apic_id,
                address: u64::from(e.io_apic_address),
                gsi_base: e.global_system_interrupt_base,
            }),
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => {
                info.interrupt_overrides.push(InterruptOverride {
                    isa_irq: e.irq,
                    gsi: e.global_system_interrupt,
                    flags: e.flags,
                })
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                info.local_apic_address = e.local_apic_address;
            }
            _ => {}
        }
    }
    if info.io_apics.is_empty() {
        return Err(AcpiError::NoIoApic);
    }

    match tables.find_table::<Mcfg>() {
        Ok(mcfg) => {
            for e in mcfg.entries() {
                let region = EcamRegion {
                    base: e.base_address,
                    segment: e.pci_segment_group,
                    bus_start: e.bus_number_start,
                    bus_end: e.bus_number_end,
                };
                if region.is_empty() {
                    log::warn!("acpi: ignoring MCFG entry with an empty bus range: {region:?}");
                } else {
                    info.ecam_regions.push(region);
                }
            }
        }
        Err(e) => log::warn!("acpi: no MCFG ({e:?}): PCIe ECAM unavailable"),
    }

    match tables.find_table::<Fadt>() {
        Ok(fadt) => match fadt.pm_timer_block() {
            Ok(Some(block)) if block.address_space == AddressSpace::SystemIo => {
                match u16::try_from(block.address) {
                    Ok(port) => {
                        info.pm_timer = Some(PmTimer {
                            port,
                            is_32bit: { fadt.flags }.pm_timer_is_32_bit(),
                        })
                    }
                    Err(_) => log::warn!("acpi: PM timer port {:#x} out of range", block.address),
                }
            }
            Ok(Some(block)) => log::warn!(
                "acpi: PM timer in unsupported address space {:?}",
                block.address_space
            ),
            Ok(None) => log::warn!("acpi: FADT describes no PM timer"),
            Err(e) => log::warn!("acpi: bad PM timer block: {e:?}"),
        },
        Err(e) => log::warn!("acpi: no FADT ({e:?})"),
    }

    log::info!(
        "acpi: lapic {:#x}, cpus {:?}, ioapics {:?}, {} overrides, pics {}, ecam {:?}, pm timer {:?}",
        info.local_apic_address,
        info.processor_apic_ids,
        info.io_apics,
        info.interrupt_overrides.len(),
        info.has_legacy_pics,
        info.ecam_regions,
        info.pm_timer
    );
    Ok(info)
}
