//! PCI Express enumeration over ECAM (`pci_types` config access), BAR decoding, capabilities.
//!
//! The ECAM windows come from the ACPI MCFG. Every bus of every window is scanned (function
//! 0 of each device, functions 1..8 when the header says multi-function); the result is a
//! kernel-owned list of [`PciDevice`] with decoded BARs.
//!
//! References: PCI Express Base 6.0 §7.2.2 (ECAM address layout: bus << 20 | device << 15 |
//! function << 12 | offset), PCI Local Bus 3.0 §6.2.5.1 (BAR layout and sizing: write all
//! ones, read back, the lowest writable bit is the size), §6.7 (capability list).

use alloc::vec::Vec;
use core::fmt;

use pci_types::capability::{MsixCapability, PciCapability};
use pci_types::{
    Bar, CommandRegister, ConfigRegionAccess, EndpointHeader, HeaderType, PciAddress, PciHeader,
};
use spin::Once;

use crate::acpi::{AcpiInfo, EcamRegion};

/// Vendor ID read from an empty slot.
const NO_DEVICE: u16 = 0xFFFF;

/// One ECAM window, mapped (uncached) into our address space.
#[derive(Debug)]
pub struct Ecam {
    region: EcamRegion,
    /// Virtual (== physical) address of bus `region.bus_start`.
    base: u64,
}

impl Ecam {
    /// Maps the window described by an MCFG entry.
    pub fn map(region: EcamRegion) -> Result<Ecam, PciError> {
        let base = crate::memory::map_mmio(region.first_bus_address(), region.len())
            .map_err(PciError::Map)?;
        Ok(Ecam { region, base })
    }

    /// The MCFG description of this window.
    pub fn region(&self) -> EcamRegion {
        self.region
    }

    /// Address of the config register, or `None` if outside this window.
    fn register(&self, address: PciAddress, offset: u16) -> Option<u64> {
        let r = &self.region;
        if address.segment() != r.segment
            || address.bus() < r.bus_start
            || address.bus() > r.bus_end
            || address.device() >= 32
            || address.function() >= 8
            || offset >= 4096
            || !offset.is_multiple_of(4)
        {
            return None;
        }
        Some(
            self.base
                + (u64::from(address.bus() - r.bus_start) << 20)
                + (u64::from(address.device()) << 15)
                + (u64::from(address.function()) << 12)
                + u64::from(offset),
        )
    }
}

impl ConfigRegionAccess for Ecam {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        match self.register(address, offset) {
            // SAFETY: `register` checked that the address lies inside this mapped ECAM window
            // and is 4-byte aligned; config reads have no side effects on the devices QEMU
            // models (and the caller vouches for `offset`, per the trait contract).
            Some(addr) => unsafe { crate::mmio::read32(addr) },
            // Outside the window behaves like an empty slot (all ones).
            None => u32::MAX,
        }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        if let Some(addr) = self.register(address, offset) {
            // SAFETY: inside the mapped, aligned ECAM window; the caller vouches that writing
            // `value` to this register is valid (trait contract).
            unsafe { crate::mmio::write32(addr, value) }
        }
    }
}

/// Width of a memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarWidth {
    /// 32-bit BAR (one slot).
    Bits32,
    /// 64-bit BAR (two slots; the next slot is its upper half).
    Bits64,
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarInfo {
    /// Memory space.
    Memory {
        /// Physical address assigned by firmware.
        address: u64,
        /// Size in bytes (a power of two).
        size: u64,
        /// Prefetchable (no read side effects).
        prefetchable: bool,
        /// 32- or 64-bit.
        width: BarWidth,
    },
    /// I/O space.
    Io {
        /// First port.
        port: u32,
        /// Size in ports.
        size: u32,
    },
}

impl BarInfo {
    /// `(address, size)` if this is a memory BAR.
    pub fn memory(&self) -> Option<(u64, u64)> {
        match *self {
            BarInfo::Memory { address, size, .. } => Some((address, size)),
            BarInfo::Io { .. } => None,
        }
    }
}

/// One PCI function found by the scan.
#[derive(Clone, Debug)]
pub struct PciDevice {
    /// Segment/bus/device/function.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Base class code.
    pub class: u8,
    /// Sub-class code.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Header type (endpoint, bridge, ...).
    pub header_type: HeaderType,
    /// Decoded BARs (endpoints only; a 64-bit BAR occupies its slot, the next slot is `None`).
    pub bars: [Option<BarInfo>; 6],
    /// IDs of the capabilities in the capability list, in list order.
    pub capability_ids: Vec<u8>,
}

impl fmt::Display for PciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}.{:02x}",
            self.address.segment(),
            self.address.bus(),
            self.address.device(),
            self.address.function(),
            self.vendor_id,
            self.device_id,
            self.class,
            self.subclass,
            self.prog_if
        )
    }
}

/// Why PCI enumeration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// The MCFG lists no ECAM window.
    NoEcam,
    /// The device is on a segment we have no window for.
    NoWindow,
    /// The device is not an endpoint (type 0 header).
    NotAnEndpoint,
    /// An ECAM window or a BAR could not be mapped.
    Map(crate::memory::MapError),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoEcam => write!(f, "no PCIe ECAM window (MCFG) to enumerate"),
            PciError::NoWindow => write!(f, "no ECAM window covers the device"),
            PciError::NotAnEndpoint => write!(f, "not an endpoint (type 0) function"),
            PciError::Map(e) => write!(f, "cannot map an ECAM window or BAR: {e}"),
        }
    }
}

struct Bus {
    windows: Vec<Ecam>,
    devices: Vec<PciDevice>,
}

static BUS: Once<Bus> = Once::new();

/// Config-space access for any segment we know, routing to the right ECAM window.
#[derive(Clone, Copy, Debug)]
pub struct ConfigSpace {
    windows: &'static [Ecam],
}

impl ConfigSpace {
    fn window(&self, address: PciAddress) -> Option<&'static Ecam> {
        self.windows.iter().find(|w| {
            let r = w.region();
            r.segment == address.segment() && (r.bus_start..=r.bus_end).contains(&address.bus())
        })
    }
}

impl ConfigRegionAccess for ConfigSpace {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        match self.window(address) {
            // SAFETY: forwarded; the window bounds-checks the access.
            Some(w) => unsafe { w.read(address, offset) },
            None => u32::MAX,
        }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        if let Some(w) = self.window(address) {
            // SAFETY: forwarded; the window bounds-checks the access.
            unsafe { w.write(address, offset, value) }
        }
    }
}

/// Maps every ECAM window, scans all buses and decodes BARs (once; later calls return the
/// first result).
pub fn init(acpi: &AcpiInfo) -> Result<&'static [PciDevice], PciError> {
    let bus = BUS.try_call_once(|| {
        if acpi.ecam_regions.is_empty() {
            return Err(PciError::NoEcam);
        }
        let windows = acpi
            .ecam_regions
            .iter()
            .map(|r| Ecam::map(*r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut devices = Vec::new();
        let start = crate::clock::now();
        for w in &windows {
            scan_window(w, &mut devices);
        }
        log::info!(
            "pci: scanned {} ECAM window(s) in {} us",
            windows.len(),
            start.elapsed().as_micros()
        );
        // Every memory window the firmware assigned is mapped now, uncached (registers may
        // have read side effects); a driver that knows a BAR is RAM-like (ivshmem BAR2)
        // remaps it write-back with `memory::map_mmio_cached`.
        for d in &devices {
            for (address, size) in d.bars.iter().flatten().filter_map(BarInfo::memory) {
                crate::memory::map_mmio(address, size).map_err(PciError::Map)?;
            }
        }
        Ok(Bus { windows, devices })
    })?;
    for d in &bus.devices {
        log::info!(
            "pci: {d} bars {:x?} caps {:02x?}",
            Bars(&d.bars),
            d.capability_ids
        );
    }
    Ok(&bus.devices)
}

/// Formats only the present BARs.
struct Bars<'a>(&'a [Option<BarInfo>; 6]);

impl fmt::Debug for Bars<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_map();
        for (i, b) in self.0.iter().enumerate() {
            if let Some(b) = b {
                l.entry(&i, b);
            }
        }
        l.finish()
    }
}

/// All functions found by [`init`] (empty before it).
pub fn devices() -> &'static [PciDevice] {
    BUS.get().map_or(&[], |b| &b.devices)
}

/// Functions with the given vendor and device ID.
pub fn find(vendor_id: u16, device_id: u16) -> impl Iterator<Item = &'static PciDevice> {
    devices()
        .iter()
        .filter(move |d| d.vendor_id == vendor_id && d.device_id == device_id)
}

/// Config-space access (after [`init`]).
pub fn config_space() -> Result<ConfigSpace, PciError> {
    BUS.get()
        .map(|b| ConfigSpace {
            windows: &b.windows,
        })
        .ok_or(PciError::NoEcam)
}

fn scan_window(ecam: &Ecam, out: &mut Vec<PciDevice>) {
    let r = ecam.region();
    for bus in r.bus_start..=r.bus_end {
        for device in 0..32u8 {
            let f0 = PciHeader::new(PciAddress::new(r.segment, bus, device, 0));
            if f0.id(ecam).0 == NO_DEVICE {
                continue;
            }
            let functions = if f0.has_multiple_functions(ecam) {
                8
            } else {
                1
            };
            for function in 0..functions {
                let header = PciHeader::new(PciAddress::new(r.segment, bus, device, function));
                let (vendor_id, device_id) = header.id(ecam);
                if vendor_id == NO_DEVICE {
                    continue;
                }
                out.push(probe(ecam, header, vendor_id, device_id));
            }
        }
    }
}

fn probe(ecam: &Ecam, header: PciHeader, vendor_id: u16, device_id: u16) -> PciDevice {
    let (revision, class, subclass, prog_if) = header.revision_and_class(ecam);
    let header_type = header.header_type(ecam);
    let mut dev = PciDevice {
        address: header.address(),
        vendor_id,
        device_id,
        revision,
        class,
        subclass,
        prog_if,
        header_type,
        bars: [None; 6],
        capability_ids: Vec::new(),
    };
    if let Some(endpoint) = EndpointHeader::from_header(header, ecam) {
        dev.bars = decode_bars(ecam, &endpoint);
        dev.capability_ids = capabilities(ecam, &endpoint).map(capability_id).collect();
    }
    dev
}

/// Decodes the six BARs of an endpoint with memory and I/O decoding disabled while sizing
/// (PCI 3.0 §6.2.5.1 recommends this, so the all-ones probe never decodes as an address).
fn decode_bars(ecam: &Ecam, endpoint: &EndpointHeader) -> [Option<BarInfo>; 6] {
    let mut bars = [None; 6];
    let address = endpoint.header().address();
    let mut header = endpoint.header();
    let saved = header.command(ecam);
    header.update_command(ecam, |c| {
        c.difference(CommandRegister::MEMORY_ENABLE | CommandRegister::IO_ENABLE)
    });
    let mut slot = 0u8;
    while slot < 6 {
        let offset = 0x10 + u16::from(slot) * 4;
        // SAFETY: offsets 0x10..0x28 are the BAR registers of a type 0 header.
        let raw = unsafe { ecam.read(address, offset) };
        // Memory BAR type bits 1..3: 00 = 32-bit, 10 = 64-bit, 01/11 reserved. Check
        // before asking `pci_types`, which panics on a reserved type.
        if raw & 1 == 0 && (raw >> 1) & 0b11 != 0b00 && (raw >> 1) & 0b11 != 0b10 {
            log::warn!("pci: {address} BAR{slot} has a reserved memory type ({raw:#x}); ignored");
            slot += 1;
            continue;
        }
        let decoded = match endpoint.bar(slot, ecam) {
            Some(Bar::Memory32 {
                address,
                size,
                prefetchable,
            }) => Some(BarInfo::Memory {
                address: u64::from(address),
                size: u64::from(size),
                prefetchable,
                width: BarWidth::Bits32,
            }),
            Some(Bar::Memory64 {
                address,
                size,
                prefetchable,
            }) => Some(BarInfo::Memory {
                address,
                size,
                prefetchable,
                width: BarWidth::Bits64,
            }),
            Some(Bar::Io { port }) => Some(BarInfo::Io {
                port,
                size: io_bar_size(ecam, address, offset),
            }),
            None => None,
        };
        bars[usize::from(slot)] = decoded;
        slot += match decoded {
            Some(BarInfo::Memory {
                width: BarWidth::Bits64,
                ..
            }) => 2,
            _ => 1,
        };
    }
    header.update_command(ecam, |_| saved);
    bars
}

/// Size of an I/O BAR: write all ones, read back, restore (PCI 3.0 §6.2.5.1).
fn io_bar_size(ecam: &Ecam, address: PciAddress, offset: u16) -> u32 {
    // SAFETY: `offset` is an I/O BAR of an endpoint whose decoding is disabled; the original
    // value is restored.
    unsafe {
        let original = ecam.read(address, offset);
        ecam.write(address, offset, u32::MAX);
        let probe = ecam.read(address, offset);
        ecam.write(address, offset, original);
        // Bits 0..2 are flags; devices may hardwire the upper 16 bits to zero.
        let mut mask = probe & !0b11;
        if mask & 0xFFFF_0000 == 0 {
            mask |= 0xFFFF_0000;
        }
        (!mask).wrapping_add(1)
    }
}

fn capabilities<'a>(
    ecam: &'a Ecam,
    endpoint: &EndpointHeader,
) -> impl Iterator<Item = PciCapability> + 'a {
    // `pci_types` starts from the capabilities pointer only if status bit 4 says the list
    // exists (PCI 3.0 §6.2.3). Bounded so a looping list cannot hang the scan (48 four-byte
    // slots fit in 0x40..0x100).
    endpoint.capabilities(ecam).take(48)
}

fn capability_id(cap: PciCapability) -> u8 {
    match cap {
        PciCapability::PowerManagement(_) => 0x01,
        PciCapability::AcceleratedGraphicsPort(_) => 0x02,
        PciCapability::VitalProductData(_) => 0x03,
        PciCapability::SlotIdentification(_) => 0x04,
        PciCapability::Msi(_) => 0x05,
        PciCapability::CompactPCIHotswap(_) => 0x06,
        PciCapability::PciX(_) => 0x07,
        PciCapability::HyperTransport(_) => 0x08,
        PciCapability::Vendor(_) => 0x09,
        PciCapability::DebugPort(_) => 0x0A,
        PciCapability::CompactPCICentralResourceControl(_) => 0x0B,
        PciCapability::PciHotPlugControl(_) => 0x0C,
        PciCapability::BridgeSubsystemVendorId(_) => 0x0D,
        PciCapability::AGP3(_) => 0x0E,
        PciCapability::PciExpress(_) => 0x10,
        PciCapability::MsiX(_) => 0x11,
        PciCapability::Unknown { id, .. } => id,
    }
}

impl PciDevice {
    fn endpoint(&self) -> Result<(ConfigSpace, EndpointHeader), PciError> {
        let cs = config_space()?;
        let ep = EndpointHeader::from_header(PciHeader::new(self.address), cs)
            .ok_or(PciError::NotAnEndpoint)?;
        Ok((cs, ep))
    }

    /// The device's capabilities (walks the live list).
    pub fn capabilities(&self) -> Result<Vec<PciCapability>, PciError> {
        let (cs, ep) = self.endpoint()?;
        let window = cs.window(self.address).ok_or(PciError::NoWindow)?;
        Ok(capabilities(window, &ep).collect())
    }

    /// The MSI-X capability, if the device has one.
    pub fn msix_capability(&self) -> Result<Option<MsixCapability>, PciError> {
        Ok(self.capabilities()?.into_iter().find_map(|c| match c {
            PciCapability::MsiX(m) => Some(m),
            _ => None,
        }))
    }

    /// Sets the command register bits `set` and clears `clear`.
    pub fn update_command(
        &self,
        set: CommandRegister,
        clear: CommandRegister,
    ) -> Result<(), PciError> {
        let (cs, mut ep) = self.endpoint()?;
        ep.update_command(cs, |c| (c | set).difference(clear));
        Ok(())
    }

    /// Enables memory decoding and bus mastering (needed for DMA and for MSI/MSI-X writes).
    pub fn enable_memory_and_bus_master(&self) -> Result<(), PciError> {
        self.update_command(
            CommandRegister::MEMORY_ENABLE | CommandRegister::BUS_MASTER_ENABLE,
            CommandRegister::empty(),
        )
    }

    /// Memory BAR `index` as `(physical address, size)`.
    pub fn memory_bar(&self, index: usize) -> Option<(u64, u64)> {
        self.bars
            .get(index)
            .copied()
            .flatten()
            .and_then(|b| b.memory())
    }
}
