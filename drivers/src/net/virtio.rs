//! virtio-net over PCI through the `virtio-drivers` crate, as a [`Nic`].
//!
//! - DMA memory comes from the platform through [`DmaPlatform`] (the kernel implements it;
//!   all memory is identity-mapped, so sharing a buffer with the device is free).
//! - PCI config space comes through `pci_types::ConfigRegionAccess` (the kernel's ECAM).
//! - The device is driven with `VirtIONetRaw`: receive buffers are heap boxes posted to
//!   the receive queue and lent to the stack as [`RxFrame`]s; transmit builds each frame
//!   in one of [`QUEUE_SIZE`] pooled buffers and never waits for the device (completed
//!   buffers are reclaimed on the next transmit). Waiting would deadlock when the device
//!   cannot complete a transmission before this same guest drains some receive queue
//!   (QEMU holds a frame whose receiver has no free buffer).
//! - Receive interrupts use MSI-X: [`VirtioNet::set_receive_msix_entry`] points the
//!   receive queue at an MSI-X table entry the kernel programs (virtio 1.x §4.1.4.3
//!   `queue_msix_vector`; `virtio-drivers` leaves every queue at `NO_VECTOR`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ptr::NonNull;

use pci_types::{ConfigRegionAccess, PciAddress};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::{BarInfo, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use volatile::access::{NoAccess, ReadOnly};
use volatile::{VolatileFieldAccess, VolatilePtr};

use super::nic::{Nic, NicError, MAX_ETHERNET_FRAME_LEN};
use super::virtio_transport::{Notifier, NotifyRegion, TunedTransport};

/// Descriptors per virtqueue (one receive buffer per descriptor).
pub const QUEUE_SIZE: usize = 64;
/// Receive buffer length: virtio-net header (12 bytes) + a full Ethernet frame, rounded.
pub const RECEIVE_BUFFER_LEN: usize = 9216;
/// Transmit buffer length: virtio-net header + a full Ethernet frame.
const TRANSMIT_BUFFER_LEN: usize = 12 + MAX_ETHERNET_FRAME_LEN;
/// The virtio "no MSI-X vector" value (virtio 1.x §4.1.4.3).
pub const NO_VECTOR: u16 = 0xFFFF;
/// Index of the first receive queue (virtio 1.x §5.1.2).
const RECEIVE_QUEUE: u16 = 0;
/// Index of the first transmit queue.
const TRANSMIT_QUEUE: u16 = 1;

/// What the platform provides for DMA: physically contiguous, zeroed pages and MMIO
/// mappings, with virtual address == physical address.
///
/// Associated functions (no `self`) because `virtio_drivers::Hal` is used statically.
///
/// # Safety
/// Implementations promise: [`DmaPlatform::alloc_zeroed_pages`] returns page-aligned,
/// zeroed, exclusively owned memory that stays valid until freed; every address handed
/// out (and every heap address the driver shares with the device) is identity-mapped, so
/// the device may use it as a physical address; [`DmaPlatform::map_mmio`] maps the range
/// uncached and returns its (identity) virtual address.
pub unsafe trait DmaPlatform {
    /// Allocate `pages` contiguous zeroed 4 KiB pages; returns the physical address.
    fn alloc_zeroed_pages(pages: usize) -> Option<u64>;

    /// Free pages from [`DmaPlatform::alloc_zeroed_pages`].
    ///
    /// # Safety
    /// `phys`/`pages` must be exactly one earlier allocation, no longer in use.
    unsafe fn free_pages(phys: u64, pages: usize);

    /// Map `[phys, phys + len)` as device memory; returns the virtual address.
    fn map_mmio(phys: u64, len: u64) -> Option<u64>;
}

/// `virtio_drivers::Hal` over a [`DmaPlatform`].
pub struct VirtioHal<P>(PhantomData<P>);

// SAFETY: the pointers returned come from `P`, whose contract (identity-mapped, zeroed,
// page-aligned, exclusively owned DMA pages; valid MMIO mappings) is what `Hal` requires.
unsafe impl<P: DmaPlatform> Hal for VirtioHal<P> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let phys = P::alloc_zeroed_pages(pages).expect("virtio: out of DMA memory");
        let virt = NonNull::new(phys as *mut u8).expect("virtio: DMA page at address 0");
        debug_assert_eq!(phys as usize % PAGE_SIZE, 0);
        (phys, virt)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: forwarded; the caller passes one earlier `dma_alloc` allocation.
        unsafe { P::free_pages(paddr, pages) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let virt = P::map_mmio(paddr, size as u64).expect("virtio: cannot map BAR");
        NonNull::new(virt as *mut u8).expect("virtio: BAR mapped at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Identity mapping: the buffer's address is its physical address.
        buffer.as_ptr().cast::<u8>() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// `virtio_drivers`' config-space access over a `pci_types` access on one segment.
#[derive(Clone)]
pub struct PciConfigAccess<C> {
    access: C,
    segment: u16,
}

impl<C: ConfigRegionAccess + Clone> PciConfigAccess<C> {
    fn address(&self, function: DeviceFunction) -> PciAddress {
        PciAddress::new(
            self.segment,
            function.bus,
            function.device,
            function.function,
        )
    }
}

impl<C: ConfigRegionAccess + Clone> ConfigurationAccess for PciConfigAccess<C> {
    fn read_word(&self, function: DeviceFunction, register_offset: u8) -> u32 {
        // SAFETY: a dword-aligned offset inside the 256-byte header of a scanned function.
        unsafe {
            self.access
                .read(self.address(function), u16::from(register_offset & !3))
        }
    }

    fn write_word(&mut self, function: DeviceFunction, register_offset: u8, data: u32) {
        // SAFETY: as above; virtio-drivers writes only BAR/command registers.
        unsafe {
            self.access.write(
                self.address(function),
                u16::from(register_offset & !3),
                data,
            )
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}

/// The head of the virtio PCI common configuration structure (virtio 1.x §4.1.4.3),
/// up to `queue_notify_off`; this driver writes only the MSI-X vector fields and
/// `queue_select`, and reads `queue_notify_off` (the doorbells of `virtio_transport`).
#[repr(C)]
#[derive(VolatileFieldAccess)]
pub(super) struct CommonConfigHead {
    #[access(NoAccess)]
    device_feature_select: u32,
    #[access(NoAccess)]
    device_feature: u32,
    #[access(NoAccess)]
    driver_feature_select: u32,
    #[access(NoAccess)]
    driver_feature: u32,
    /// Offset 16: MSI-X entry for configuration changes.
    config_msix_vector: u16,
    /// Offset 18: number of virtqueues.
    #[access(ReadOnly)]
    num_queues: u16,
    #[access(NoAccess)]
    device_status: u8,
    #[access(NoAccess)]
    config_generation: u8,
    /// Offset 22: which queue the `queue_*` fields address.
    queue_select: u16,
    #[access(NoAccess)]
    queue_size: u16,
    /// Offset 26: MSI-X entry for the selected queue.
    queue_msix_vector: u16,
    #[access(NoAccess)]
    queue_enable: u16,
    /// Offset 30: where the selected queue's doorbell lies in the notification structure
    /// (in units of `notify_off_multiplier`).
    #[access(ReadOnly)]
    queue_notify_off: u16,
}

const _: () = assert!(core::mem::offset_of!(CommonConfigHead, config_msix_vector) == 16);
const _: () = assert!(core::mem::offset_of!(CommonConfigHead, queue_select) == 22);
const _: () = assert!(core::mem::offset_of!(CommonConfigHead, queue_msix_vector) == 26);
const _: () = assert!(core::mem::offset_of!(CommonConfigHead, queue_notify_off) == 30);
const _: () = assert!(core::mem::size_of::<CommonConfigHead>() == 32);

/// PCI capability ID of vendor-specific capabilities (virtio structures).
const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// `cfg_type` of the common configuration structure (virtio 1.x §4.1.4).
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification structure (virtio 1.x §4.1.4.4).
const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;

/// Where a virtio structure lives: BAR index, offset and length inside the BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioStructure {
    /// BAR index (0–5).
    pub bar: u8,
    /// Offset inside the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

/// Walk a function's capability list (read through `read_dword`, dword-aligned offsets)
/// for the virtio common configuration capability (virtio 1.x §4.1.4). Bounded: a
/// looping or out-of-range list ends the walk.
pub fn find_common_config(read_dword: impl Fn(u8) -> u32) -> Option<VirtioStructure> {
    find_virtio_capability(&read_dword, VIRTIO_PCI_CAP_COMMON_CFG, 16).map(|(_, s)| s)
}

/// The notification structure (virtio 1.x §4.1.4.4) and its `notify_off_multiplier`,
/// found like [`find_common_config`].
pub fn find_notify_config(read_dword: impl Fn(u8) -> u32) -> Option<(VirtioStructure, u32)> {
    let (pointer, structure) = find_virtio_capability(&read_dword, VIRTIO_PCI_CAP_NOTIFY_CFG, 20)?;
    // The multiplier follows the 16-byte generic part (`struct virtio_pci_notify_cap`).
    Some((structure, read_dword(pointer + 16)))
}

/// The first vendor capability with `cfg_type` (`cap_len` bytes, which must fit in the
/// 256-byte config space): its config-space offset and structure.
fn find_virtio_capability(
    read_dword: &impl Fn(u8) -> u32,
    cfg_type: u8,
    cap_len: u16,
) -> Option<(u8, VirtioStructure)> {
    const STATUS_CAPABILITIES_LIST: u32 = 1 << 20;
    if read_dword(0x04) & STATUS_CAPABILITIES_LIST == 0 {
        return None;
    }
    let mut pointer = (read_dword(0x34) & 0xFC) as u8;
    // At most 48 capabilities fit in the 192 bytes after the header.
    for _ in 0..48 {
        if pointer < 0x40 {
            return None;
        }
        let head = read_dword(pointer);
        let id = head as u8;
        let next = (head >> 8) as u8 & 0xFC;
        if id == PCI_CAP_ID_VENDOR
            && (head >> 24) as u8 == cfg_type
            && u16::from(pointer) + cap_len <= 0x100
        {
            let bar = read_dword(pointer + 4) as u8;
            let offset = read_dword(pointer + 8);
            let length = read_dword(pointer + 12);
            if bar > 5 {
                return None;
            }
            let structure = VirtioStructure {
                bar,
                offset,
                length,
            };
            return Some((pointer, structure));
        }
        pointer = next;
    }
    None
}

/// Map `len` bytes of `structure` (checked to lie inside its memory BAR, which must
/// hold at least `len` of the structure's bytes); `None` if it does not.
fn map_structure<P: DmaPlatform, C: ConfigurationAccess>(
    root: &mut PciRoot<C>,
    function: DeviceFunction,
    structure: VirtioStructure,
    len: u64,
) -> Option<NonNull<u8>> {
    let Ok(Some(BarInfo::Memory { address, size, .. })) = root.bar_info(function, structure.bar)
    else {
        return None;
    };
    let end = u64::from(structure.offset).checked_add(len)?;
    if u64::from(structure.length) < len || end > size || address == 0 {
        return None;
    }
    let phys = address + u64::from(structure.offset);
    NonNull::new(P::map_mmio(
        phys,
        u64::from(structure.length).min(size - u64::from(structure.offset)),
    )? as *mut u8)
}

/// Why the virtio-net device could not be brought up or configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioNetError {
    /// The PCI function is not a virtio network device, or its capabilities are unusable.
    NotVirtioNet,
    /// The virtio transport or device initialisation failed.
    Init(virtio_drivers::Error),
    /// The common configuration structure is missing or not mappable.
    NoCommonConfig,
    /// The device did not accept the MSI-X entry (read back `NO_VECTOR`).
    MsixRejected,
}

/// A received frame lent to the stack; return it with [`Nic::recycle`].
pub struct RxFrame {
    buffer: Box<[u8]>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for RxFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[self.start..self.start + self.len]
    }
}

/// The virtio-net NIC.
pub struct VirtioNet<P: DmaPlatform, T: Transport = PciTransport> {
    device: VirtIONetRaw<VirtioHal<P>, TunedTransport<T>, QUEUE_SIZE>,
    /// Buffers posted to the receive queue, by descriptor token.
    posted: Vec<Option<Box<[u8]>>>,
    /// Idle transmit buffers.
    transmit_free: Vec<Box<[u8]>>,
    /// Transmit buffers the device owns, by descriptor token, with the length sent.
    transmit_in_flight: Vec<Option<(Box<[u8]>, usize)>>,
    common_config: Option<NonNull<CommonConfigHead>>,
    /// Shared with the transport: batched single-write notifications (PCI only).
    notifier: Option<Arc<Notifier>>,
}

// SAFETY: the only non-Send part is the pointer to the device's common configuration
// registers, which this value owns exclusively (like `PciTransport`, which is Send).
unsafe impl<P: DmaPlatform, T: Transport + Send> Send for VirtioNet<P, T> {}

impl<P: DmaPlatform> VirtioNet<P, PciTransport> {
    /// Bring up the virtio-net PCI function at `address` (BARs already assigned by
    /// firmware): enable memory decoding and bus mastering, negotiate features, set up
    /// both queues and post every receive buffer.
    ///
    /// # Errors
    /// [`VirtioNetError`] if the function is not a usable virtio-net device.
    pub fn probe_pci<C: ConfigRegionAccess + Clone>(
        access: C,
        address: PciAddress,
    ) -> Result<Self, VirtioNetError> {
        let config = PciConfigAccess {
            access,
            segment: address.segment(),
        };
        let function = DeviceFunction {
            bus: address.bus(),
            device: address.device(),
            function: address.function(),
        };
        // Memory space + bus master (PCI command register bits 1 and 2).
        let command = config.read_word(function, 0x04);
        let mut writer = config.clone();
        writer.write_word(function, 0x04, (command & 0xFFFF) | 0b110);

        let mut root = PciRoot::new(config.clone());
        let transport = PciTransport::new::<VirtioHal<P>, _>(&mut root, function)
            .map_err(|_| VirtioNetError::NotVirtioNet)?;
        let read_dword = |offset| config.read_word(function, offset);
        let common = find_common_config(read_dword).ok_or(VirtioNetError::NoCommonConfig)?;
        let head_len = core::mem::size_of::<CommonConfigHead>() as u64;
        let common_config = map_structure::<P, _>(&mut root, function, common, head_len)
            .ok_or(VirtioNetError::NoCommonConfig)?;
        // Single-write notifications when the notification structure maps; else
        // virtio-drivers' own (three accesses each).
        let notify = find_notify_config(read_dword).and_then(|(structure, multiplier)| {
            let base = map_structure::<P, _>(&mut root, function, structure, 2)?;
            // SAFETY: both structures were just mapped inside the function's BARs, stay
            // mapped (never unmapped), and `queue_select` is used by this driver alone
            // after initialisation (`set_receive_msix_entry` runs before traffic).
            Some(Notifier::new(unsafe {
                NotifyRegion::new(
                    common_config.cast(),
                    base,
                    structure.length as usize,
                    multiplier,
                )
            }))
        });
        let transport = TunedTransport::new(transport, notify.clone());
        let mut net = Self::with_transport(transport)?;
        net.common_config = Some(common_config.cast());
        net.notifier = notify;
        Ok(net)
    }

    /// Route receive-queue interrupts to MSI-X table entry `entry` (or none with
    /// [`NO_VECTOR`]); the transmit queue and configuration changes stay silent.
    /// The kernel programs and unmasks that MSI-X entry and enables MSI-X.
    ///
    /// # Errors
    /// [`VirtioNetError::MsixRejected`] if the device reads back `NO_VECTOR` for a real
    /// entry (virtio 1.x §4.1.5.1.2: out of vectors).
    pub fn set_receive_msix_entry(&mut self, entry: u16) -> Result<(), VirtioNetError> {
        let head = self.common_config.ok_or(VirtioNetError::NoCommonConfig)?;
        // SAFETY: `head` points at the device's mapped common configuration structure
        // (checked to lie inside its BAR in `probe_pci`); virtio-drivers touches
        // `queue_select` only during initialisation, which is over.
        let registers = unsafe { VolatilePtr::new(head) };
        registers.config_msix_vector().write(NO_VECTOR);
        registers.queue_select().write(TRANSMIT_QUEUE);
        registers.queue_msix_vector().write(NO_VECTOR);
        registers.queue_select().write(RECEIVE_QUEUE);
        registers.queue_msix_vector().write(entry);
        if entry != NO_VECTOR && registers.queue_msix_vector().read() != entry {
            return Err(VirtioNetError::MsixRejected);
        }
        Ok(())
    }
}

impl<P: DmaPlatform, T: Transport> VirtioNet<P, T> {
    /// Initialise the device over any transport and post all receive buffers
    /// (notifications through `transport`'s own path).
    ///
    /// # Errors
    /// [`VirtioNetError::Init`] when the transport or a queue cannot be set up.
    pub fn new(transport: T) -> Result<Self, VirtioNetError> {
        Self::with_transport(TunedTransport::new(transport, None))
    }

    fn with_transport(transport: TunedTransport<T>) -> Result<Self, VirtioNetError> {
        let mut device = VirtIONetRaw::new(transport).map_err(VirtioNetError::Init)?;
        let mut posted: Vec<Option<Box<[u8]>>> = (0..QUEUE_SIZE).map(|_| None).collect();
        for _ in 0..QUEUE_SIZE {
            let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN].into_boxed_slice();
            // SAFETY: the box is stored in `posted` and not touched until the device
            // returns it through `receive`; moving the box does not move its heap data.
            let token =
                unsafe { device.receive_begin(&mut buffer) }.map_err(VirtioNetError::Init)?;
            let slot = posted
                .get_mut(usize::from(token))
                .ok_or(VirtioNetError::Init(virtio_drivers::Error::WrongToken))?;
            *slot = Some(buffer);
        }
        Ok(Self {
            device,
            posted,
            transmit_free: (0..QUEUE_SIZE)
                .map(|_| vec![0u8; TRANSMIT_BUFFER_LEN].into_boxed_slice())
                .collect(),
            transmit_in_flight: (0..QUEUE_SIZE).map(|_| None).collect(),
            common_config: None,
            notifier: None,
        })
    }

    /// Take back the buffers of transmissions the device has completed.
    fn reclaim_transmitted(&mut self) -> Result<(), NicError> {
        while let Some(token) = self.device.poll_transmit() {
            let (buffer, len) = self
                .transmit_in_flight
                .get_mut(usize::from(token))
                .and_then(Option::take)
                .ok_or(NicError::DeviceMisbehaved)?;
            // SAFETY: `buffer[..len]` is exactly what `transmit_begin` got for `token`.
            let done = unsafe { self.device.transmit_complete(token, &buffer[..len]) };
            self.transmit_free.push(buffer);
            done.map_err(|_| NicError::DeviceMisbehaved)?;
        }
        Ok(())
    }

    fn post(&mut self, mut buffer: Box<[u8]>) -> Result<(), NicError> {
        // SAFETY: as in `new`: the box is owned by `posted` until the device returns it.
        let token =
            unsafe { self.device.receive_begin(&mut buffer) }.map_err(|_| NicError::Device)?;
        match self.posted.get_mut(usize::from(token)) {
            Some(slot @ None) => {
                *slot = Some(buffer);
                Ok(())
            }
            // The queue handed out a token we already hold: the buffer would be lost.
            _ => Err(NicError::DeviceMisbehaved),
        }
    }
}

impl<P: DmaPlatform, T: Transport> Nic for VirtioNet<P, T> {
    type RxFrame = RxFrame;

    fn mac_address(&self) -> [u8; 6] {
        self.device.mac_address()
    }

    fn receive(&mut self) -> Result<Option<RxFrame>, NicError> {
        let Some(token) = self.device.poll_receive() else {
            return Ok(None);
        };
        let mut buffer = self
            .posted
            .get_mut(usize::from(token))
            .and_then(Option::take)
            .ok_or(NicError::DeviceMisbehaved)?;
        // SAFETY: `buffer` is the box posted under `token`.
        let completed = unsafe { self.device.receive_complete(token, &mut buffer) };
        match completed {
            Ok((start, len))
                if start
                    .checked_add(len)
                    .is_some_and(|end| end <= buffer.len()) =>
            {
                Ok(Some(RxFrame { buffer, start, len }))
            }
            _ => {
                self.post(buffer)?;
                Err(NicError::DeviceMisbehaved)
            }
        }
    }

    fn recycle(&mut self, frame: RxFrame) -> Result<(), NicError> {
        self.post(frame.buffer)
    }

    fn can_transmit(&mut self) -> bool {
        if let Err(e) = self.reclaim_transmitted() {
            log::warn!("virtio-net: transmit completion: {e}");
        }
        !self.transmit_free.is_empty() && self.device.can_send()
    }

    fn transmit<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, NicError> {
        if len > self.max_frame_len() {
            return Err(NicError::FrameTooLong(len));
        }
        self.reclaim_transmitted()?;
        if !self.device.can_send() {
            return Err(NicError::TransmitQueueFull);
        }
        let mut buffer = self
            .transmit_free
            .pop()
            .ok_or(NicError::TransmitQueueFull)?;
        let header_len = match self.device.fill_buffer_header(&mut buffer) {
            Ok(header_len) => header_len,
            Err(_) => {
                self.transmit_free.push(buffer);
                return Err(NicError::Device);
            }
        };
        let total = header_len + len;
        let result = fill(&mut buffer[header_len..total]);
        // SAFETY: the buffer is parked in `transmit_in_flight` (or back in the free list
        // on error) and not touched until the device completes the request.
        match unsafe { self.device.transmit_begin(&buffer[..total]) } {
            Ok(token) => match self.transmit_in_flight.get_mut(usize::from(token)) {
                Some(slot @ None) => {
                    *slot = Some((buffer, total));
                    Ok(result)
                }
                // A token we already hold: keep the buffer alive (leaked into the
                // free list would alias the device's use); report the device.
                _ => {
                    core::mem::forget(buffer);
                    Err(NicError::DeviceMisbehaved)
                }
            },
            Err(_) => {
                self.transmit_free.push(buffer);
                Err(NicError::TransmitQueueFull)
            }
        }
    }

    fn transmit_in_flight(&mut self) -> usize {
        if let Err(e) = self.reclaim_transmitted() {
            log::warn!("virtio-net: transmit completion: {e}");
        }
        self.transmit_in_flight.iter().flatten().count()
    }

    fn ack_interrupt(&mut self) -> bool {
        !self.device.ack_interrupt().is_empty()
    }

    fn set_receive_interrupts(&mut self, enabled: bool) {
        if enabled {
            self.device.enable_interrupts();
        } else {
            self.device.disable_interrupts();
        }
    }

    fn hold_notifications(&mut self, hold: bool) {
        match (&self.notifier, hold) {
            (Some(notifier), true) => notifier.hold(),
            (Some(notifier), false) => notifier.release(),
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config space with a capability list: MSI-X at 0x40, virtio notify at 0x50,
    /// virtio common config at 0x70 (BAR 4, offset 0, length 0x38).
    fn config_space() -> [u32; 64] {
        let mut space = [0u32; 64];
        space[1] = 1 << 20; // offset 0x04, status: capabilities list
        space[0x34 / 4] = 0x40;
        space[0x40 / 4] = 0x0011 | (0x50 << 8); // MSI-X, next 0x50
        space[0x50 / 4] = 0x09 | (0x70 << 8) | (0x14 << 16) | (2 << 24); // notify cfg
        space[0x70 / 4] = 0x09 | (0x10 << 16) | (1 << 24); // common cfg, last
        space[0x74 / 4] = 4;
        space[0x78 / 4] = 0;
        space[0x7C / 4] = 0x38;
        space
    }

    #[test]
    fn finds_common_config() {
        let space = config_space();
        let found = find_common_config(|offset| space[usize::from(offset) / 4]);
        assert_eq!(
            found,
            Some(VirtioStructure {
                bar: 4,
                offset: 0,
                length: 0x38
            })
        );
    }

    #[test]
    fn capability_walk_is_bounded() {
        // No capability list at all.
        let mut space = config_space();
        space[1] = 0;
        assert_eq!(find_common_config(|o| space[usize::from(o) / 4]), None);
        // A loop (0x40 -> 0x40) without the common config ends.
        let mut space = config_space();
        space[0x40 / 4] = 0x0011 | (0x40 << 8);
        assert_eq!(find_common_config(|o| space[usize::from(o) / 4]), None);
        // A pointer into the header ends the walk.
        let mut space = config_space();
        space[0x34 / 4] = 0x10;
        assert_eq!(find_common_config(|o| space[usize::from(o) / 4]), None);
        // A BAR index above 5 is refused.
        let mut space = config_space();
        space[0x74 / 4] = 9;
        assert_eq!(find_common_config(|o| space[usize::from(o) / 4]), None);
    }
}
