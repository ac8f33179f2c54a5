//! MSI-X: find the capability, map the vector table, program and unmask entries.
//!
//! Usage by a driver: `let mut t = MsixTable::new(dev)?; let (v, ev) =
//! executor::allocate_interrupt()?; t.set_vector(0, v)?; t.unmask(0)?; t.enable()?;` then a
//! task awaits `ev.wait(seen)`.
//!
//! References: PCI Local Bus 3.0 §6.8.2 (MSI-X capability and table: 16-byte entries of
//! Message Address, Message Upper Address, Message Data, Vector Control with bit 0 = Mask;
//! the Pending Bit Array; Function Mask and MSI-X Enable in Message Control bits 14/15),
//! Intel SDM Vol. 3A §11.11 (message address 0xFEEx_xxxx with the destination APIC ID in
//! bits 12..20; message data = vector, fixed delivery, edge trigger).

use core::fmt;

use pci_types::capability::MsixCapability;
use pci_types::{CommandRegister, PciAddress};

use crate::pci::{PciDevice, PciError};

/// Size of one MSI-X table entry.
const ENTRY_SIZE: u64 = 16;
const MESSAGE_ADDRESS: u64 = 0;
const MESSAGE_UPPER_ADDRESS: u64 = 4;
const MESSAGE_DATA: u64 = 8;
const VECTOR_CONTROL: u64 = 12;
/// Vector Control bit 0: the entry is masked.
const VECTOR_CONTROL_MASK: u32 = 1;

/// Base of the x86 MSI address window (SDM §11.11.1).
pub const MSI_ADDRESS_BASE: u32 = 0xFEE0_0000;

/// Why MSI-X setup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixError {
    /// Config-space access failed.
    Pci(PciError),
    /// The device has no MSI-X capability.
    NoCapability,
    /// The table or PBA names a BAR that is absent or not a memory BAR.
    BadBar(u8),
    /// The table or PBA does not fit inside its BAR.
    OutsideBar {
        /// The BAR index.
        bar: u8,
        /// Offset of the structure in the BAR.
        offset: u64,
        /// Length of the structure.
        len: u64,
        /// Size of the BAR.
        bar_size: u64,
    },
    /// The entry index is beyond the table.
    NoSuchEntry {
        /// Requested entry.
        entry: u16,
        /// Table size.
        len: u16,
    },
    /// The destination APIC ID does not fit the 8-bit MSI destination field.
    DestinationTooLarge(u32),
    /// The table or PBA could not be mapped.
    Map(crate::memory::MapError),
    /// Not a device vector: 0..32 are CPU exceptions (a message there would be taken as a
    /// fault) and 0xFF is the APIC spurious vector (SDM §11.11.2 allows 0x10..=0xFE).
    InvalidVector(u8),
}

impl fmt::Display for MsixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsixError::Pci(e) => write!(f, "PCI: {e}"),
            MsixError::NoCapability => write!(f, "device has no MSI-X capability"),
            MsixError::BadBar(b) => write!(f, "MSI-X structure in BAR{b}, which is not a memory BAR"),
            MsixError::OutsideBar { bar, offset, len, bar_size } => write!(
                f,
                "MSI-X structure at BAR{bar}+{offset:#x} ({len} bytes) exceeds the BAR ({bar_size:#x} bytes)"
            ),
            MsixError::NoSuchEntry { entry, len } => {
                write!(f, "MSI-X entry {entry} out of range (table has {len})")
            }
            MsixError::DestinationTooLarge(id) => {
                write!(f, "APIC ID {id} does not fit an MSI destination")
            }
            MsixError::Map(e) => write!(f, "cannot map the MSI-X table: {e}"),
            MsixError::InvalidVector(v) => {
                write!(f, "vector {v:#x} is a CPU exception vector, not an interrupt vector")
            }
        }
    }
}

impl From<PciError> for MsixError {
    fn from(e: PciError) -> Self {
        MsixError::Pci(e)
    }
}

/// A device's MSI-X table, mapped and under our control.
#[derive(Debug)]
pub struct MsixTable {
    device: PciAddress,
    capability: MsixCapability,
    /// Virtual (== physical) address of entry 0.
    table: u64,
    /// Virtual (== physical) address of the Pending Bit Array.
    pba: u64,
    len: u16,
}

/// Physical address of a structure at `offset` (length `len`) inside memory BAR `bar`.
fn locate(device: &PciDevice, bar: u8, offset: u64, len: u64) -> Result<u64, MsixError> {
    let (address, bar_size) = device
        .memory_bar(usize::from(bar))
        .ok_or(MsixError::BadBar(bar))?;
    if offset.checked_add(len).is_none_or(|end| end > bar_size) {
        return Err(MsixError::OutsideBar {
            bar,
            offset,
            len,
            bar_size,
        });
    }
    Ok(address + offset)
}

impl MsixTable {
    /// Finds the MSI-X capability of `device`, maps its table and PBA, enables memory
    /// decoding and bus mastering (MSI-X messages are memory writes by the device), disables
    /// legacy INTx, and turns MSI-X on with the function masked and every entry masked.
    /// Program entries with [`set_vector`](Self::set_vector) / [`unmask`](Self::unmask), then
    /// call [`enable`](Self::enable).
    pub fn new(device: &PciDevice) -> Result<MsixTable, MsixError> {
        let mut capability = device.msix_capability()?.ok_or(MsixError::NoCapability)?;
        let len = capability.table_size();
        let table_len = u64::from(len) * ENTRY_SIZE;
        let pba_len = u64::from(len).div_ceil(64) * 8;
        let table_phys = locate(
            device,
            capability.table_bar(),
            u64::from(capability.table_offset()),
            table_len,
        )?;
        let pba_phys = locate(
            device,
            capability.pba_bar(),
            u64::from(capability.pba_offset()),
            pba_len,
        )?;
        let table = crate::memory::map_mmio(table_phys, table_len).map_err(MsixError::Map)?;
        let pba = crate::memory::map_mmio(pba_phys, pba_len).map_err(MsixError::Map)?;

        device.update_command(
            CommandRegister::MEMORY_ENABLE
                | CommandRegister::BUS_MASTER_ENABLE
                | CommandRegister::INTERRUPT_DISABLE,
            CommandRegister::empty(),
        )?;
        let cs = crate::pci::config_space()?;
        // PCI 3.0 §6.8.2.3: with Function Mask set no entry can send while we program them.
        capability.set_function_mask(true, cs);
        capability.set_enabled(true, cs);
        let mut t = MsixTable {
            device: device.address,
            capability,
            table,
            pba,
            len,
        };
        for entry in 0..len {
            t.write(entry, VECTOR_CONTROL, VECTOR_CONTROL_MASK);
        }
        log::debug!(
            "msix: {} table {:#x} ({} entries), pba {:#x}",
            device.address,
            table_phys,
            len,
            pba_phys
        );
        Ok(t)
    }

    /// The function this table belongs to.
    pub fn device(&self) -> PciAddress {
        self.device
    }

    /// Number of entries.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Whether the table has no entries (never true for a valid capability).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, entry: u16) -> Result<(), MsixError> {
        if entry < self.len {
            Ok(())
        } else {
            Err(MsixError::NoSuchEntry {
                entry,
                len: self.len,
            })
        }
    }

    fn write(&mut self, entry: u16, field: u64, value: u32) {
        debug_assert!(entry < self.len);
        // SAFETY: `entry < len`, so the register lies inside the table that `new` checked to
        // be inside the BAR and mapped; the table is device memory that accepts dword writes.
        unsafe { crate::mmio::write32(self.table + u64::from(entry) * ENTRY_SIZE + field, value) }
    }

    fn read(&self, entry: u16, field: u64) -> u32 {
        debug_assert!(entry < self.len);
        // SAFETY: as in `write`; reads of the table have no side effects.
        unsafe { crate::mmio::read32(self.table + u64::from(entry) * ENTRY_SIZE + field) }
    }

    /// Points `entry` at `vector` on this CPU (fixed delivery, edge, physical destination =
    /// our local APIC ID). The entry's mask bit is left as it is.
    pub fn set_vector(&mut self, entry: u16, vector: u8) -> Result<(), MsixError> {
        self.check(entry)?;
        if vector < crate::interrupts::FIRST_DEVICE_VECTOR || vector == 0xFF {
            return Err(MsixError::InvalidVector(vector));
        }
        let dest = crate::apic::local_apic_id();
        let dest8 = u8::try_from(dest).map_err(|_| MsixError::DestinationTooLarge(dest))?;
        // SDM §11.11.1: bits 12..20 destination ID, bit 3 RH = 0, bit 2 DM = 0 (physical).
        let address = MSI_ADDRESS_BASE | (u32::from(dest8) << 12);
        // SDM §11.11.2: bits 0..8 vector, delivery mode 000 (fixed), bit 15 = 0 (edge).
        let data = u32::from(vector);
        let was_masked = self.is_masked(entry)?;
        // Mask while the address/data pair is inconsistent.
        self.write(entry, VECTOR_CONTROL, VECTOR_CONTROL_MASK);
        self.write(entry, MESSAGE_ADDRESS, address);
        self.write(entry, MESSAGE_UPPER_ADDRESS, 0);
        self.write(entry, MESSAGE_DATA, data);
        if !was_masked {
            self.write(entry, VECTOR_CONTROL, 0);
        }
        Ok(())
    }

    /// The `(message address, message data)` programmed into `entry`.
    pub fn message(&self, entry: u16) -> Result<(u64, u32), MsixError> {
        self.check(entry)?;
        let lo = u64::from(self.read(entry, MESSAGE_ADDRESS));
        let hi = u64::from(self.read(entry, MESSAGE_UPPER_ADDRESS));
        Ok((hi << 32 | lo, self.read(entry, MESSAGE_DATA)))
    }

    /// Unmasks `entry` (it can fire once the function is enabled).
    pub fn unmask(&mut self, entry: u16) -> Result<(), MsixError> {
        self.check(entry)?;
        self.write(entry, VECTOR_CONTROL, 0);
        Ok(())
    }

    /// Masks `entry` (the device latches its pending bit instead of sending).
    pub fn mask(&mut self, entry: u16) -> Result<(), MsixError> {
        self.check(entry)?;
        self.write(entry, VECTOR_CONTROL, VECTOR_CONTROL_MASK);
        Ok(())
    }

    /// Whether `entry` is masked.
    pub fn is_masked(&self, entry: u16) -> Result<bool, MsixError> {
        self.check(entry)?;
        Ok(self.read(entry, VECTOR_CONTROL) & VECTOR_CONTROL_MASK != 0)
    }

    /// Whether `entry`'s pending bit is set in the PBA.
    pub fn is_pending(&self, entry: u16) -> Result<bool, MsixError> {
        self.check(entry)?;
        let qword = u64::from(entry / 64) * 8;
        let bit = entry % 64;
        let (off, bit) = if bit >= 32 {
            (qword + 4, bit - 32)
        } else {
            (qword, bit)
        };
        // SAFETY: the PBA (len.div_ceil(64) qwords) was bounds-checked against its BAR and
        // mapped by `new`; `off` lies inside it because `entry < len`.
        let word = unsafe { crate::mmio::read32(self.pba + off) };
        Ok(word & (1 << bit) != 0)
    }

    /// Clears the Function Mask: unmasked entries may now send.
    pub fn enable(&mut self) -> Result<(), MsixError> {
        let cs = crate::pci::config_space()?;
        self.capability.set_enabled(true, cs);
        self.capability.set_function_mask(false, cs);
        Ok(())
    }

    /// Turns MSI-X off for the function.
    pub fn disable(&mut self) -> Result<(), MsixError> {
        let cs = crate::pci::config_space()?;
        self.capability.set_function_mask(true, cs);
        self.capability.set_enabled(false, cs);
        Ok(())
    }

    /// Whether MSI-X is enabled and the function is not masked.
    pub fn is_enabled(&self) -> Result<bool, MsixError> {
        let cs = crate::pci::config_space()?;
        Ok(self.capability.enabled(cs) && !self.capability.function_mask(cs))
    }
}
