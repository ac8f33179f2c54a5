//! The NIC contract: a small Ethernet frame trait the kernel adapts to smoltcp.
//!
//! It does not depend on smoltcp (house style practice 8; the shape follows
//! `embassy-net-driver`): the kernel's single adapter file implements
//! `smoltcp::phy::Device` on top of it, so drivers stay independent of the TCP stack.

use core::fmt;

/// Longest Ethernet frame without FCS that the stack may send: a 9000-byte ("jumbo") MTU
/// plus the 14-byte header. The link is host-internal (two QEMUs), so nothing on it
/// limits frames to 1500; a 16 KiB TCP message is 2 frames instead of 12, and each frame
/// costs a trapped doorbell and an interrupt in the guest.
pub const MAX_ETHERNET_FRAME_LEN: usize = 9014;

/// What a NIC operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicError {
    /// No transmit descriptor is free; retry after the device completes a frame.
    TransmitQueueFull,
    /// A frame longer than [`Nic::max_frame_len`] was offered for transmission.
    FrameTooLong(usize),
    /// The device reported a completion that does not match a posted buffer, or a
    /// length that does not fit the buffer; the frame was dropped and its buffer reposted.
    DeviceMisbehaved,
    /// The device or its transport refused the request.
    Device,
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicError::TransmitQueueFull => write!(f, "transmit queue full"),
            NicError::FrameTooLong(len) => write!(f, "frame of {len} bytes is too long"),
            NicError::DeviceMisbehaved => {
                write!(f, "device returned an unexpected buffer or length")
            }
            NicError::Device => write!(f, "device error"),
        }
    }
}

/// An Ethernet NIC, polled by the network stack.
///
/// Received frames are lent out as owned [`Nic::RxFrame`] values and must be handed back
/// with [`Nic::recycle`] so the buffer returns to the device.
pub trait Nic {
    /// A received frame; `as_ref()` gives the Ethernet frame bytes (no FCS).
    type RxFrame: AsRef<[u8]>;

    /// The station MAC address.
    fn mac_address(&self) -> [u8; 6];

    /// Longest frame [`Nic::transmit`] accepts, in bytes (Ethernet header included).
    fn max_frame_len(&self) -> usize {
        MAX_ETHERNET_FRAME_LEN
    }

    /// Take the next received frame, if any. Never blocks.
    ///
    /// # Errors
    /// [`NicError::DeviceMisbehaved`] when the device completed a buffer badly (that
    /// frame is dropped, the buffer is reposted; the next call may return a frame).
    fn receive(&mut self) -> Result<Option<Self::RxFrame>, NicError>;

    /// Give a received frame's buffer back to the device.
    ///
    /// # Errors
    /// [`NicError::Device`] if the device refused the buffer.
    fn recycle(&mut self, frame: Self::RxFrame) -> Result<(), NicError>;

    /// Is there room to transmit a frame now? (Reclaims completed transmissions.)
    fn can_transmit(&mut self) -> bool;

    /// Build a frame of `len` bytes with `fill` and hand it to the device. Does not wait
    /// for the device to finish sending it.
    ///
    /// # Errors
    /// [`NicError::FrameTooLong`], [`NicError::TransmitQueueFull`] or [`NicError::Device`]:
    /// the frame was not sent (`fill` may or may not have run).
    fn transmit<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R)
        -> Result<R, NicError>;

    /// How many handed-over frames the device has not finished sending (reclaims the
    /// completed ones first). Zero means every frame given to [`Nic::transmit`] so far
    /// has left the guest.
    fn transmit_in_flight(&mut self) -> usize;

    /// Acknowledge the device's interrupt (call from the interrupt path or before
    /// polling); returns whether the device signalled anything.
    fn ack_interrupt(&mut self) -> bool;

    /// Ask the device to interrupt (or not) when frames arrive.
    fn set_receive_interrupts(&mut self, enabled: bool);

    /// Hold device notifications (`true`) until released (`false`), which then rings
    /// once per queue that has new buffers: one doorbell for all frames of a stack poll.
    /// Frames handed over while held are not sent before the release.
    fn hold_notifications(&mut self, _hold: bool) {}
}
