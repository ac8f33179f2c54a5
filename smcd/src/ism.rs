//! The ISM (Internal Shared Memory) device trait, modelled on Linux `struct smcd_ops`
//! (`include/net/smc.h`, loopback-ism era; see protocol-reference §6.1).
//!
//! An ISM device owns DMBs (Direct Memory Buffers): memory this side registers so that
//! exactly one remote GID may write into it. The protocol layer never touches the
//! hardware: it registers its receive DMBs here, writes into the peer's DMB with
//! [`IsmDevice::move_data`] (or, in no-copy mode, through memory obtained with
//! [`IsmDevice::attach_dmb`]), and learns about signals and peer loss from
//! [`IsmDevice::poll_events`].
//!
//! Implementations: [`crate::loopback`] (one image, DMBs on the heap), and in `drivers`
//! the ivshmem device (between VMs) and virtio-ism.

use crate::shm::SharedMemory;

/// A device's global id. Native ISM devices use 64 bits (`gid_ext == 0`); virtual
/// (emulated) devices, whose CHID lies in `0xFF00..=0xFFFF`, use 128 bits and send
/// them as two GID/CHID list entries in a Proposal (protocol-reference §2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gid {
    /// First (or only) 64 bits.
    pub gid: u64,
    /// Second 64 bits, only for virtual CHIDs; 0 otherwise.
    pub gid_ext: u64,
}

impl Gid {
    /// A 64-bit GID of a native device.
    pub const fn native(gid: u64) -> Self {
        Gid { gid, gid_ext: 0 }
    }

    /// A 128-bit GID of a virtual device.
    pub const fn virtual_(gid: u64, gid_ext: u64) -> Self {
        Gid { gid, gid_ext }
    }
}

/// First CHID of the range reserved for emulated ("virtual") ISM devices.
pub const CHID_VIRTUAL_FIRST: u16 = 0xFF00;
/// CHID of Linux's loopback-ism device (and of ours).
pub const CHID_LOOPBACK: u16 = 0xFFFF;

/// True when `chid` names an emulated ISM device with a 128-bit GID.
pub const fn is_virtual_chid(chid: u16) -> bool {
    chid >= CHID_VIRTUAL_FIRST
}

/// An opaque 64-bit DMB token, handed to the peer in the CLC Accept/Confirm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DmbToken(pub u64);

/// Why a device operation failed. Every variant is a clean refusal: nothing was
/// written and no memory outside the device was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsmError {
    /// The DMB area is full (Linux maps this to Decline `0x030d0000`, MAX_DMB).
    NoSpace,
    /// Unknown, stale or forged token.
    InvalidToken,
    /// `offset + len` exceeds the target DMB.
    OutOfBounds,
    /// The remote GID is not reachable (or no longer reachable) on this device.
    PeerUnreachable,
    /// The operation is optional and this device does not provide it.
    Unsupported,
    /// Invalid argument (e.g. a DMB length the device cannot provide).
    InvalidArgument,
    /// The device failed or was removed.
    DeviceError,
}

impl core::fmt::Display for IsmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            IsmError::NoSpace => "no space for another DMB",
            IsmError::InvalidToken => "unknown or stale DMB token",
            IsmError::OutOfBounds => "access outside the DMB",
            IsmError::PeerUnreachable => "remote GID not reachable on this device",
            IsmError::Unsupported => "operation not supported by this device",
            IsmError::InvalidArgument => "invalid argument",
            IsmError::DeviceError => "device error",
        };
        f.write_str(s)
    }
}

/// A DMB registered on this device: our receive buffer.
#[derive(Clone)]
pub struct Dmb<M> {
    /// Token the peer uses to address this DMB.
    pub token: DmbToken,
    /// Index of this DMB on the device (Linux `sba_idx`): signals name DMBs by it.
    pub index: u32,
    /// The DMB memory (length = the registered length).
    pub memory: M,
}

// Manual impl: a DMB prints as its token, index and length whatever the memory type.
impl<M: SharedMemory> core::fmt::Debug for Dmb<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dmb")
            .field("token", &self.token)
            .field("index", &self.index)
            .field("len", &self.memory.len())
            .finish()
    }
}

/// Something the device reports to the protocol layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsmEvent {
    /// A peer wrote into our DMB with `index` and asked for a signal.
    DmbSignalled {
        /// Device index of the signalled DMB ([`Dmb::index`]).
        index: u32,
    },
    /// A peer device is gone (VM died, device removed, or it shut down): every link
    /// group with that GID must be terminated and no further CDC written to it.
    PeerGone {
        /// GID of the departed peer.
        gid: Gid,
    },
}

/// An ISM device as the protocol layer sees it.
///
/// Methods take `&self`: a device is shared by every connection on it, and
/// implementations keep their state behind interior mutability. None of them blocks.
pub trait IsmDevice {
    /// Handle to a DMB's memory (own DMBs and attached peer DMBs alike).
    type Memory: SharedMemory + Clone;

    /// Own GID.
    fn local_gid(&self) -> Gid;

    /// Own 16-bit channel id; equal CHIDs are required for SMC-Dv2 device matching.
    fn chid(&self) -> u16;

    /// Whether the device may be used for SMC-Dv2.
    fn supports_v2(&self) -> bool;

    /// Whether `remote` is reachable through this device (Linux `query_remote_gid`;
    /// `vlan` is `None` for "any", as SMC-Dv2 asks).
    fn query_remote_gid(&self, remote: Gid, vlan: Option<u16>) -> bool;

    /// Registers a zeroed DMB of `len` bytes that only `remote` may write.
    /// [`IsmError::NoSpace`] when the device has no room left.
    fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<Self::Memory>, IsmError>;

    /// Unregisters an own DMB; its token becomes invalid and its memory is released.
    fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError>;

    /// Writes `data` at `offset` of the remote DMB `token`, synchronously (`data` may be
    /// reused on return). With `signal`, marks that DMB in its owner's signal set and
    /// interrupts the owner (interrupts may be coalesced).
    ///
    /// Ordering contract the data path relies on (protocol-reference §4.3, §4.5):
    /// the bytes of one call become visible to the owner no earlier than those of every
    /// earlier call (data written before a CDC is published by it: a release), and
    /// within one call 8-byte-aligned 8-byte blocks are stored as single 64-bit stores
    /// in ascending address order (see `wire::cdc::CdcRepr::load`).
    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), IsmError>;

    /// Whether [`IsmDevice::attach_dmb`]/[`IsmDevice::detach_dmb`] are provided.
    fn supports_nocopy(&self) -> bool {
        false
    }

    /// No-copy mode: maps the remote DMB `token` so the sender can write straight into
    /// it. Reference-counted; pair every successful call with a `detach_dmb`.
    fn attach_dmb(&self, token: DmbToken) -> Result<Self::Memory, IsmError> {
        let _ = token;
        Err(IsmError::Unsupported)
    }

    /// Drops one reference taken by [`IsmDevice::attach_dmb`].
    fn detach_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        let _ = token;
        Err(IsmError::Unsupported)
    }

    /// Hands every pending event to `sink` and clears them. Called by the protocol
    /// layer after an interrupt (or when polling); never blocks.
    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent));
}
