//! Platform bring-up after the base init: ACPI → APIC → clock → executor → PCI, in order.
//!
//! [`init`] is idempotent (the first result is kept), so every test and the main kernel can
//! call it; it needs `kernel::init` (serial, IDT, memory, heap) to have run.

use core::fmt;

use spin::Once;

use crate::acpi::{self, AcpiInfo};
use crate::apic::{self, ApicInfo};
use crate::clock::{self, Calibration};
use crate::pci::{self, PciDevice};
use crate::{executor, interrupts};

/// What the platform bring-up found.
#[derive(Debug)]
pub struct Platform {
    /// Parsed ACPI tables.
    pub acpi: &'static AcpiInfo,
    /// Local APIC state.
    pub apic: ApicInfo,
    /// Clock calibration.
    pub clock: Calibration,
    /// All PCI functions.
    pub pci: &'static [PciDevice],
}

/// Which step failed.
#[derive(Debug)]
pub enum PlatformError {
    /// ACPI discovery.
    Acpi(acpi::AcpiError),
    /// APIC bring-up.
    Apic(apic::ApicError),
    /// Clock calibration.
    Clock(clock::ClockError),
    /// PCI enumeration.
    Pci(pci::PciError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Acpi(e) => write!(f, "platform: ACPI: {e}"),
            PlatformError::Apic(e) => write!(f, "platform: APIC: {e}"),
            PlatformError::Clock(e) => write!(f, "platform: clock: {e}"),
            PlatformError::Pci(e) => write!(f, "platform: PCI: {e}"),
        }
    }
}

static PLATFORM: Once<Platform> = Once::new();

/// Brings up ACPI, the APICs, the clock and deadline timer, the executor, and PCI; enables
/// interrupts. Returns the first successful result on later calls.
pub fn init() -> Result<&'static Platform, PlatformError> {
    PLATFORM.try_call_once(init_once)
}

/// The platform, if [`init`] succeeded.
pub fn get() -> Option<&'static Platform> {
    PLATFORM.get()
}

fn init_once() -> Result<Platform, PlatformError> {
    let rsdp = crate::boot_info().rsdp;
    let acpi = acpi::init(rsdp).map_err(PlatformError::Acpi)?;
    let apic = apic::init(acpi).map_err(PlatformError::Apic)?;
    let clock = clock::init(acpi).map_err(PlatformError::Clock)?;
    executor::init();
    interrupts::enable();
    let pci = pci::init(acpi).map_err(PlatformError::Pci)?;
    log::info!(
        "platform: up: {} cpu(s), tsc {} Hz, {} PCI function(s)",
        acpi.processor_apic_ids.len(),
        clock.tsc_hz,
        pci.len()
    );
    Ok(Platform {
        acpi,
        apic,
        clock,
        pci,
    })
}
