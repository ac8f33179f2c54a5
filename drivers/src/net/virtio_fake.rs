//! Host tests of the virtio-net NIC against a fake device that plays the split
//! virtqueues (virtio 1.x §2.7) over real host memory, including hostile completions.
//!
//! The fake offers `VIRTIO_NET_F_MAC` and `VIRTIO_F_VERSION_1` (no indirect
//! descriptors), so every request is one descriptor and the rings are read exactly as
//! the spec lays them out. It may also offer the event index, which the driver must
//! refuse (see `virtio_transport`).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::PhysAddr;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::nic::{Nic, NicError};
use super::virtio::{DmaPlatform, VirtioNet, QUEUE_SIZE, RECEIVE_BUFFER_LEN};

/// virtio-net header length with `VIRTIO_F_VERSION_1` (`struct virtio_net_hdr`, §5.1.6).
const NET_HEADER_LEN: usize = 12;
const RECEIVE_QUEUE: usize = 0;
const TRANSMIT_QUEUE: usize = 1;
const FEATURE_MAC: u64 = 1 << 5;
const FEATURE_VERSION_1: u64 = 1 << 32;
const FEATURE_RING_EVENT_IDX: u64 = 1 << 29;
/// `VRING_USED_F_NO_NOTIFY` (virtio 1.x §2.7.10).
const USED_F_NO_NOTIFY: u16 = 1;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

/// DMA from the host heap: page-aligned zeroed allocations, addresses used as-is.
struct HostDma;

// SAFETY: allocations are zeroed, page-aligned and owned until `free_pages`; on the host
// "physical" addresses are the heap addresses, which is what the fake device uses.
unsafe impl DmaPlatform for HostDma {
    fn alloc_zeroed_pages(pages: usize) -> Option<u64> {
        let layout = Layout::from_size_align(pages * 4096, 4096).ok()?;
        // SAFETY: the layout has a non-zero size (virtio never asks for 0 pages).
        let pointer = unsafe { alloc_zeroed(layout) };
        (!pointer.is_null()).then_some(pointer as u64)
    }

    unsafe fn free_pages(phys: u64, pages: usize) {
        let layout = Layout::from_size_align(pages * 4096, 4096).expect("layout");
        // SAFETY: the caller passes one allocation made above with the same size.
        unsafe { dealloc(phys as *mut u8, layout) }
    }

    fn map_mmio(_phys: u64, _len: u64) -> Option<u64> {
        None
    }
}

#[derive(Clone, Copy, Debug)]
struct Queue {
    size: u16,
    descriptors: u64,
    available: u64,
    used: u64,
    /// Next available-ring entry the device will take.
    next_available: u16,
}

#[derive(Debug, Default)]
struct DeviceState {
    status: u32,
    driver_features: u64,
    queues: [Option<Queue>; 2],
    notifications: [u32; 2],
}

/// One descriptor as the device reads it.
#[derive(Clone, Copy, Debug)]
struct Descriptor {
    head: u16,
    address: u64,
    len: u32,
    device_writable: bool,
}

impl DeviceState {
    fn queue(&self, index: usize) -> Queue {
        self.queues[index].expect("queue set up")
    }

    /// How many buffers the driver has made available on `index` so far.
    fn available_index(&self, index: usize) -> u16 {
        let queue = self.queue(index);
        // SAFETY: `available` is the driver's available ring (flags, idx, ...), allocated
        // by the driver and alive while the NIC is; u16 reads are aligned.
        unsafe { ((queue.available + 2) as *const u16).read_volatile() }
    }

    /// Take the next available buffer of queue `index`.
    fn take_available(&mut self, index: usize) -> Option<Descriptor> {
        let queue = self.queue(index);
        if self.available_index(index) == queue.next_available {
            return None;
        }
        let slot = u64::from(queue.next_available % queue.size);
        // SAFETY: ring entries follow flags and idx; the slot is below the queue size.
        let head = unsafe { ((queue.available + 4 + 2 * slot) as *const u16).read_volatile() };
        assert!(
            head < queue.size,
            "driver put descriptor {head} in the ring"
        );
        let descriptor = queue.descriptors + 16 * u64::from(head);
        // SAFETY: descriptor `head` lies inside the driver's descriptor table.
        let (address, len, flags) = unsafe {
            (
                (descriptor as *const u64).read_volatile(),
                ((descriptor + 8) as *const u32).read_volatile(),
                ((descriptor + 12) as *const u16).read_volatile(),
            )
        };
        assert_eq!(
            flags & 1,
            0,
            "one descriptor per request expected (no NEXT)"
        );
        self.queues[index].as_mut().expect("queue").next_available += 1;
        Some(Descriptor {
            head,
            address,
            len,
            device_writable: flags & 2 != 0,
        })
    }

    /// Set the used ring's flags of queue `index` (the device's notification hint).
    fn set_used_flags(&mut self, index: usize, flags: u16) {
        let queue = self.queue(index);
        // SAFETY: `used` is the driver's used ring; its flags are the first u16.
        unsafe { (queue.used as *mut u16).write_volatile(flags) };
    }

    /// Complete a request: used-ring entry `{id, len}`, then bump the used index.
    fn complete(&mut self, index: usize, id: u32, len: u32) {
        let queue = self.queue(index);
        // SAFETY: `used` is the driver's used ring (flags, idx, ring of {id, len}).
        unsafe {
            let used_index = ((queue.used + 2) as *const u16).read_volatile();
            let slot = u64::from(used_index % queue.size);
            let element = queue.used + 4 + 8 * slot;
            (element as *mut u32).write_volatile(id);
            ((element + 4) as *mut u32).write_volatile(len);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            ((queue.used + 2) as *mut u16).write_volatile(used_index.wrapping_add(1));
        }
    }

    /// Deliver `frame` into the next receive buffer the way QEMU does (header + frame).
    fn deliver(&mut self, frame: &[u8]) {
        let buffer = self
            .take_available(RECEIVE_QUEUE)
            .expect("a posted receive buffer");
        assert!(buffer.device_writable);
        assert!(buffer.len as usize >= NET_HEADER_LEN + frame.len());
        // SAFETY: the driver gave us `len` writable bytes at `address`.
        unsafe {
            std::ptr::write_bytes(buffer.address as *mut u8, 0, NET_HEADER_LEN);
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                (buffer.address as *mut u8).add(NET_HEADER_LEN),
                frame.len(),
            );
        }
        self.complete(
            RECEIVE_QUEUE,
            u32::from(buffer.head),
            (NET_HEADER_LEN + frame.len()) as u32,
        );
    }

    /// Send the next transmit request "on the wire": returns the frame without header.
    fn transmit_one(&mut self) -> Option<Vec<u8>> {
        let request = self.take_available(TRANSMIT_QUEUE)?;
        assert!(!request.device_writable);
        // SAFETY: the driver gave us `len` readable bytes at `address`.
        let bytes = unsafe {
            std::slice::from_raw_parts(request.address as *const u8, request.len as usize)
        }
        .to_vec();
        self.complete(TRANSMIT_QUEUE, u32::from(request.head), 0);
        assert_eq!(bytes[..NET_HEADER_LEN], [0; NET_HEADER_LEN], "plain header");
        Some(bytes[NET_HEADER_LEN..].to_vec())
    }
}

/// The transport half of the fake; the test keeps the other `Arc` to play the device.
struct FakeTransport {
    state: Arc<Mutex<DeviceState>>,
    device_features: u64,
    config: [u8; 10],
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }

    fn read_device_features(&mut self) -> u64 {
        self.device_features
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.state.lock().unwrap().driver_features = driver_features;
    }

    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        QUEUE_SIZE as u32
    }

    fn notify(&mut self, queue: u16) {
        self.state.lock().unwrap().notifications[usize::from(queue)] += 1;
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.state.lock().unwrap().status)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.state.lock().unwrap().status = status.bits();
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.state.lock().unwrap().queues[usize::from(queue)] = Some(Queue {
            size: size as u16,
            descriptors,
            available: driver_area,
            used: device_area,
            next_available: 0,
        });
    }

    fn queue_unset(&mut self, queue: u16) {
        self.state.lock().unwrap().queues[usize::from(queue)] = None;
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.state.lock().unwrap().queues[usize::from(queue)].is_some()
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let bytes = self
            .config
            .get(offset..offset + core::mem::size_of::<T>())
            .ok_or(virtio_drivers::Error::ConfigSpaceTooSmall)?;
        T::read_from_bytes(bytes).map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Err(virtio_drivers::Error::Unsupported)
    }
}

fn nic() -> (VirtioNet<HostDma, FakeTransport>, Arc<Mutex<DeviceState>>) {
    nic_offering(FEATURE_MAC | FEATURE_VERSION_1)
}

fn nic_offering(
    device_features: u64,
) -> (VirtioNet<HostDma, FakeTransport>, Arc<Mutex<DeviceState>>) {
    let state = Arc::new(Mutex::new(DeviceState::default()));
    let mut config = [0u8; 10];
    config[..6].copy_from_slice(&MAC);
    let transport = FakeTransport {
        state: state.clone(),
        device_features,
        config,
    };
    let nic = VirtioNet::new(transport).expect("driver init");
    (nic, state)
}

fn frame(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i * 7) as u8)).collect()
}

#[test]
fn init_posts_every_receive_buffer() {
    let (nic, state) = nic();
    let state = state.lock().unwrap();
    assert_eq!(nic.mac_address(), MAC);
    assert_eq!(state.driver_features, FEATURE_MAC | FEATURE_VERSION_1);
    assert_eq!(
        usize::from(state.available_index(RECEIVE_QUEUE)),
        QUEUE_SIZE
    );
    assert_eq!(state.available_index(TRANSMIT_QUEUE), 0);
    // DRIVER_OK (bit 2) set at the end of initialisation.
    assert_ne!(state.status & 4, 0);
}

#[test]
fn received_frames_arrive_intact_and_buffers_return() {
    let (mut nic, state) = nic();
    assert!(nic.receive().unwrap().is_none());
    // Several times the queue size: every buffer must come back to the device.
    for round in 0..(3 * QUEUE_SIZE) {
        let sent = frame(round as u8, 60 + round % 1400);
        state.lock().unwrap().deliver(&sent);
        let received = nic.receive().unwrap().expect("a frame");
        assert_eq!(received.as_ref(), &sent[..], "round {round}");
        nic.recycle(received).unwrap();
        assert!(nic.receive().unwrap().is_none());
    }
    let state = state.lock().unwrap();
    assert_eq!(
        usize::from(state.available_index(RECEIVE_QUEUE)),
        4 * QUEUE_SIZE,
        "every buffer was reposted"
    );
}

#[test]
fn reposted_receive_buffers_ring_only_when_the_device_asks() {
    // QEMU offers the event index; virtio-drivers' test of it notified on every repost.
    let (mut nic, state) = nic_offering(FEATURE_MAC | FEATURE_VERSION_1 | FEATURE_RING_EVENT_IDX);
    assert_eq!(
        state.lock().unwrap().driver_features,
        FEATURE_MAC | FEATURE_VERSION_1,
        "event index refused"
    );
    // While the device has buffers it sets NO_NOTIFY (as QEMU's virtio-net does).
    state
        .lock()
        .unwrap()
        .set_used_flags(RECEIVE_QUEUE, USED_F_NO_NOTIFY);
    let before = state.lock().unwrap().notifications[RECEIVE_QUEUE];
    for round in 0..(2 * QUEUE_SIZE) {
        state.lock().unwrap().deliver(&frame(round as u8, 64));
        let received = nic.receive().unwrap().expect("a frame");
        nic.recycle(received).unwrap();
    }
    assert_eq!(state.lock().unwrap().notifications[RECEIVE_QUEUE], before);
    // A device that ran dry clears the flag: the next repost rings.
    state.lock().unwrap().set_used_flags(RECEIVE_QUEUE, 0);
    state.lock().unwrap().deliver(&frame(7, 64));
    let received = nic.receive().unwrap().expect("a frame");
    nic.recycle(received).unwrap();
    assert_eq!(
        state.lock().unwrap().notifications[RECEIVE_QUEUE],
        before + 1
    );
}

#[test]
fn frames_held_by_the_stack_are_not_reposted_early() {
    let (mut nic, state) = nic();
    let first = frame(1, 100);
    let second = frame(2, 200);
    state.lock().unwrap().deliver(&first);
    state.lock().unwrap().deliver(&second);
    let a = nic.receive().unwrap().unwrap();
    let b = nic.receive().unwrap().unwrap();
    assert_eq!(
        usize::from(state.lock().unwrap().available_index(RECEIVE_QUEUE)),
        QUEUE_SIZE,
        "lent buffers stay with the stack"
    );
    assert_eq!((a.as_ref(), b.as_ref()), (&first[..], &second[..]));
    nic.recycle(b).unwrap();
    nic.recycle(a).unwrap();
    assert_eq!(
        usize::from(state.lock().unwrap().available_index(RECEIVE_QUEUE)),
        QUEUE_SIZE + 2
    );
}

#[test]
fn hostile_completion_lengths_are_refused_and_buffers_kept() {
    let (mut nic, state) = nic();
    for bogus_len in [
        (RECEIVE_BUFFER_LEN + 1) as u32, // past the buffer
        u32::MAX,
        (NET_HEADER_LEN - 1) as u32, // shorter than the header
    ] {
        {
            let mut state = state.lock().unwrap();
            let buffer = state.take_available(RECEIVE_QUEUE).unwrap();
            state.complete(RECEIVE_QUEUE, u32::from(buffer.head), bogus_len);
        }
        assert_eq!(nic.receive().err(), Some(NicError::DeviceMisbehaved));
    }
    // The three buffers were reposted; the NIC keeps working.
    assert_eq!(
        usize::from(state.lock().unwrap().available_index(RECEIVE_QUEUE)),
        QUEUE_SIZE + 3
    );
    let good = frame(9, 64);
    state.lock().unwrap().deliver(&good);
    let received = nic.receive().unwrap().unwrap();
    assert_eq!(received.as_ref(), &good[..]);
    nic.recycle(received).unwrap();
}

#[test]
fn completion_naming_no_posted_buffer_is_refused() {
    let (mut nic, state) = nic();
    // The device names descriptor 200 of a 64-entry queue.
    state.lock().unwrap().complete(RECEIVE_QUEUE, 200, 100);
    assert_eq!(nic.receive().err(), Some(NicError::DeviceMisbehaved));
}

#[test]
fn transmit_never_waits_and_reclaims_completed_buffers() {
    let (mut nic, state) = nic();
    let mut queued = Vec::new();
    // No device progress: the ring fills, then transmit refuses without blocking.
    while nic.can_transmit() {
        let bytes = frame(queued.len() as u8, 60 + queued.len());
        let bytes_for_fill = bytes.clone();
        nic.transmit(bytes.len(), |buffer| {
            buffer.copy_from_slice(&bytes_for_fill)
        })
        .unwrap();
        queued.push(bytes);
    }
    assert!(
        queued.len() >= QUEUE_SIZE - 1,
        "only {} queued",
        queued.len()
    );
    assert_eq!(nic.transmit_in_flight(), queued.len());
    assert_eq!(
        nic.transmit(60, |_| ()).err(),
        Some(NicError::TransmitQueueFull)
    );
    assert!(state.lock().unwrap().notifications[TRANSMIT_QUEUE] > 0);

    // The device sends them, in order and unchanged; the NIC gets every buffer back.
    for expected in &queued {
        let sent = state.lock().unwrap().transmit_one().expect("a request");
        assert_eq!(&sent, expected);
    }
    assert_eq!(nic.transmit_in_flight(), 0);
    assert!(nic.can_transmit());
    assert_eq!(
        nic.transmit(super::nic::MAX_ETHERNET_FRAME_LEN + 1, |_| ())
            .err(),
        Some(NicError::FrameTooLong(
            super::nic::MAX_ETHERNET_FRAME_LEN + 1
        ))
    );
}
