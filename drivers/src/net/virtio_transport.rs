//! The transport under the virtio-net driver: `virtio-drivers`' transport with two fixes
//! for the per-frame cost of trapped register accesses (each one is a VM exit on KVM and
//! a trip through QEMU's I/O path under TCG).
//!
//! - **No `VIRTIO_F_RING_EVENT_IDX`.** `virtio-drivers` 0.13 decides whether to notify
//!   with `avail_idx >= avail_event + 1`, not the spec's wrapping `vring_need_event`
//!   (virtio 1.x §2.7.10). QEMU's virtio-net never moves `avail_event` of the receive
//!   queue while it has buffers, so every reposted receive buffer rang the device: three
//!   trapped accesses per received frame (~27 µs of the 14 B TCP round trip's ~290 µs
//!   per side under TCG). Without the event index the driver honours the used ring's
//!   `VRING_USED_F_NO_NOTIFY`, which QEMU sets while the queue has buffers.
//! - **One access per notification, one notification per batch.** `PciTransport::notify`
//!   writes `queue_select`, reads `queue_notify_off`, then writes the doorbell.
//!   [`NotifyRegion`] reads each queue's notify offset once (virtio 1.x §4.1.4.4:
//!   `cap.offset + queue_notify_off * notify_off_multiplier`, bounds-checked against the
//!   capability's length) and then writes the doorbell alone. While the NIC holds
//!   notifications ([`Notifier::hold`], around one stack poll), they are only noted and
//!   [`Notifier::release`] rings each noted queue once: a 16 KiB TCP send is 12 frames,
//!   and under TCG each doorbell write waits for QEMU's global lock, which the I/O thread
//!   holds while it sends the previous frame.

use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use spin::Mutex;
use volatile::VolatilePtr;

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::virtio::{CommonConfigHead, CommonConfigHeadVolatileFieldAccess};

/// `VIRTIO_F_RING_EVENT_IDX` (virtio 1.x §6).
pub const FEATURE_RING_EVENT_IDX: u64 = 1 << 29;

/// Queues whose doorbell address is cached (virtio-net: receive 0, transmit 1).
const CACHED_QUEUES: usize = 2;

/// The mapped notification structure and what locating a queue's doorbell needs.
#[derive(Debug)]
pub struct NotifyRegion {
    /// Mapped common configuration structure.
    common: NonNull<CommonConfigHead>,
    /// Mapped notification structure, `len` bytes.
    base: NonNull<u8>,
    len: usize,
    multiplier: u32,
    /// Each queue's doorbell, once known.
    doorbells: [Option<NonNull<u16>>; CACHED_QUEUES],
}

impl NotifyRegion {
    /// A notification structure of `len` bytes mapped at `base`, with `multiplier` from
    /// its capability, and the device's common configuration mapped at `common`.
    ///
    /// # Safety
    /// `common` must map the device's common configuration structure (aligned, at least
    /// its 32-byte head) and `base` its notification structure (`len` bytes), uncached, for as long as the
    /// value lives; nothing else may use `queue_select` concurrently.
    pub(super) unsafe fn new(
        common: NonNull<CommonConfigHead>,
        base: NonNull<u8>,
        len: usize,
        multiplier: u32,
    ) -> Self {
        NotifyRegion {
            common,
            base,
            len,
            multiplier,
            doorbells: [None; CACHED_QUEUES],
        }
    }

    /// Queue `queue`'s doorbell: computed on first use, `None` if it would lie outside
    /// the structure (the caller then falls back to the generic path).
    fn doorbell(&mut self, queue: u16) -> Option<NonNull<u16>> {
        let slot = self.doorbells.get_mut(usize::from(queue))?;
        if let Some(doorbell) = *slot {
            return Some(doorbell);
        }
        // SAFETY: `common` maps the common configuration structure (`new`'s contract),
        // and nothing else uses `queue_select` meanwhile.
        let registers = unsafe { VolatilePtr::new(self.common) };
        registers.queue_select().write(queue);
        let offset = registers.queue_notify_off().read();
        let byte = usize::from(offset).checked_mul(self.multiplier as usize)?;
        if byte.checked_add(2)? > self.len || byte % 2 != 0 {
            return None;
        }
        // SAFETY: `byte + 2 <= len`, so the u16 lies inside the mapped structure.
        let doorbell = unsafe { self.base.add(byte) }.cast::<u16>();
        *slot = Some(doorbell);
        Some(doorbell)
    }
}

// SAFETY: the pointers are device registers owned by this value; it is used under the
// `Notifier`'s mutex only (like `PciTransport`, which is Send).
unsafe impl Send for NotifyRegion {}

/// Single-write notifications that a batch can hold back; shared by the transport (which
/// virtio-drivers calls) and the NIC (which opens and closes batches).
#[derive(Debug)]
pub struct Notifier {
    region: Mutex<NotifyRegion>,
    holding: AtomicBool,
    /// Bit `q`: queue `q` was notified while held.
    pending: AtomicU8,
}

impl Notifier {
    /// Notifications through `region`.
    pub fn new(region: NotifyRegion) -> Arc<Self> {
        Arc::new(Notifier {
            region: Mutex::new(region),
            holding: AtomicBool::new(false),
            pending: AtomicU8::new(0),
        })
    }

    /// Notify `queue` now, or note it while held; `false` if this queue has no usable
    /// doorbell here (the caller then notifies the generic way, at once).
    fn notify(&self, queue: u16) -> bool {
        let Some(doorbell) = self.region.lock().doorbell(queue) else {
            return false;
        };
        if self.holding.load(Ordering::Relaxed) {
            // `doorbell` succeeded, so `queue` < CACHED_QUEUES and the bit exists.
            self.pending.fetch_or(1 << queue, Ordering::Relaxed);
        } else {
            ring(doorbell, queue);
        }
        true
    }

    /// Hold notifications until [`Notifier::release`].
    pub fn hold(&self) {
        self.holding.store(true, Ordering::Relaxed);
    }

    /// Stop holding; ring each queue notified meanwhile, once. The device sees every
    /// buffer added before the ring ([`ring`] fences before the doorbell write).
    pub fn release(&self) {
        self.holding.store(false, Ordering::Relaxed);
        let pending = self.pending.swap(0, Ordering::Relaxed);
        for queue in 0..CACHED_QUEUES as u16 {
            if pending & (1 << queue) != 0 {
                if let Some(doorbell) = self.region.lock().doorbell(queue) {
                    ring(doorbell, queue);
                }
            }
        }
    }
}

/// Write `queue`'s index to its doorbell (virtio 1.x §4.1.5.2).
fn ring(doorbell: NonNull<u16>, queue: u16) {
    // The ring updates before the doorbell (virtio 1.x §2.7.13.3: idx, then notify).
    core::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: `NotifyRegion::doorbell` only returns addresses inside the mapped
    // notification structure; writing the queue index there is the notification.
    unsafe { doorbell.write_volatile(queue) }
}

/// `T` with the event index masked out of the device's features and, given a
/// [`Notifier`], single-write (and batchable) notifications.
#[derive(Debug)]
pub struct TunedTransport<T> {
    inner: T,
    notifier: Option<Arc<Notifier>>,
}

impl<T: Transport> TunedTransport<T> {
    /// Wrap `inner`; notifications use `notifier` when given, else `inner`'s.
    pub fn new(inner: T, notifier: Option<Arc<Notifier>>) -> Self {
        TunedTransport { inner, notifier }
    }
}

impl<T: Transport> Transport for TunedTransport<T> {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features() & !FEATURE_RING_EVENT_IDX
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        if !self.notifier.as_ref().is_some_and(|n| n.notify(queue)) {
            self.inner.notify(queue);
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status);
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size);
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<()> {
        self.inner.write_config_space(offset, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// u16 indexes of `queue_select` (offset 22) and `queue_notify_off` (offset 30) in
    /// the common configuration (virtio 1.x §4.1.4.3).
    const QUEUE_SELECT: usize = 22 / 2;
    const QUEUE_NOTIFY_OFF: usize = 30 / 2;

    /// Fake registers: a 32-byte common configuration (aligned like the real structure)
    /// and a notification structure of `N` bytes.
    #[repr(C, align(4))]
    struct Registers<const N: usize> {
        common: [u16; 16],
        notify: [u16; N],
    }

    fn region<const N: usize>(regs: &mut Registers<N>, multiplier: u32) -> NotifyRegion {
        let common = NonNull::from(&mut regs.common).cast::<CommonConfigHead>();
        let base = NonNull::from(&mut regs.notify).cast::<u8>();
        // SAFETY: both point into `regs`, which outlives the region in each test.
        unsafe { NotifyRegion::new(common, base, 2 * N, multiplier) }
    }

    #[test]
    fn doorbells_follow_notify_offsets_and_stay_in_bounds() {
        let mut regs = Registers::<8> {
            common: [0; 16],
            notify: [0; 8],
        };
        // queue_notify_off reads as 3 (the register file is fake: no per-queue answer).
        regs.common[QUEUE_NOTIFY_OFF] = 3;
        let mut notify = region(&mut regs, 4);
        let doorbell = notify.doorbell(1).expect("offset 12 fits in 16 bytes");
        assert_eq!(
            doorbell.as_ptr() as usize - notify.base.as_ptr() as usize,
            12
        );
        assert_eq!(regs.common[QUEUE_SELECT], 1, "queue selected");
        // A multiplier that puts the doorbell past the structure is refused.
        let mut notify = region(&mut regs, 6);
        assert_eq!(notify.doorbell(0), None, "offset 18 of 16 bytes");
        // Queues beyond the cache use the generic path.
        assert_eq!(region(&mut regs, 0).doorbell(2), None);
        // An overflowing product is refused, not wrapped.
        regs.common[QUEUE_NOTIFY_OFF] = u16::MAX;
        assert_eq!(region(&mut regs, u32::MAX).doorbell(0), None);
    }

    #[test]
    fn a_cached_doorbell_is_not_looked_up_again() {
        let mut regs = Registers::<4> {
            common: [0; 16],
            notify: [0; 4],
        };
        regs.common[QUEUE_NOTIFY_OFF] = 1;
        let mut notify = region(&mut regs, 2);
        let first = notify.doorbell(0);
        // The device now answers differently; the cached address stands.
        // SAFETY: `common` points into `regs`, alive; aligned u16 write.
        unsafe {
            notify
                .common
                .cast::<u16>()
                .add(QUEUE_NOTIFY_OFF)
                .write_volatile(0)
        };
        assert_eq!(notify.doorbell(0), first);
        assert!(first.is_some());
    }
}
