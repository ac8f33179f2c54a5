//! Layout of the smcd ivshmem region: header, peer directory, per-peer DMB areas.
//!
//! The ivshmem server (`tools/ivshmem-server`) creates the shared memory, formats it with
//! this crate before any client connects, and keeps the peer directory up to date; the
//! guest driver (`drivers`) validates the header with this crate and then reaches the
//! region only through volatile copies and 64-bit atomics at the offsets computed here.
//! Nothing here touches memory: every type is a typed view over a byte slice (the
//! smoltcp `wire` style) or a plain value, so the crate is `no_std`, allocation-free and
//! free of `unsafe`.
//!
//! Terms: a *peer* is one ivshmem client (a QEMU process; its ivshmem peer ID, see
//! protocol reference §7.2, is its index in the directory); a *DMB* (direct memory
//! buffer, SMC-D) is a receive buffer that a peer registers inside its own area; a *GID*
//! is the 128-bit identity the server gives a peer when it joins.
//!
//! # Region layout (all offsets from the start of the region = BAR2 offset 0)
//!
//! ```text
//! 0                 header page (HEADER_SIZE = 4096 bytes, see `header`)
//! directory_offset  peer directory: max_peers entries of peer_entry_size bytes
//!                   (page-rounded), see `peer_entry`
//! data_offset       area 0 | area 1 | ... | area max_peers-1, each area_size bytes
//!                   area i = [data_offset + i*area_size, data_offset + (i+1)*area_size)
//!                   each area starts with a descriptor table (slots_per_peer
//!                   descriptors of DESCRIPTOR_SIZE bytes, page-rounded), then the
//!                   payload where peer i places its DMBs
//! ```
//!
//! All multi-byte fields are little-endian. Every offset that the layout produces is a
//! multiple of 8 relative to the region start, and every area and table starts on a
//! 4096-byte boundary.
//!
//! # Who writes what (liveness rules)
//!
//! | Field | Writer | Access |
//! |---|---|---|
//! | header (all fields but `server_epoch`) | server, once, before any client connects | plain bytes; read-only afterwards |
//! | header `server_epoch` | server, +1 after each join and each leave | aligned 64-bit atomic |
//! | directory entry `state`, `epoch`, `gid` | server only | aligned 64-bit atomics (seqlock on `epoch`) |
//! | directory entry signal bitmap of peer *p* | any sender sets bits (`fetch_or`); peer *p* clears (`swap(0)`); server zeroes it when *p*'s ID is (re)assigned | aligned 64-bit atomics |
//! | descriptor table of area *p* | peer *p* only (seqlock on `sequence`); server zeroes it when *p*'s ID is (re)assigned | aligned 64-bit atomics |
//! | payload of area *p* (DMBs) | peers holding a valid token for the DMB (the owner reads) | volatile copies |
//!
//! Every word in the directory and in the descriptor tables is only ever accessed as
//! one aligned 64-bit atomic (relaxed inside a seqlock bracket, with the orderings
//! stated below), never with plain or byte-wise accesses, so concurrent access from
//! several VMs and the server is race-free.
//!
//! **Directory entry seqlock.** `epoch` is a sequence counter. To change an entry the
//! server stores `epoch + 1` (odd: "being rewritten"), then writes `gid`, the bitmap (on
//! join) and `state`, then stores `epoch + 2` (even) with release ordering. So each join
//! and each leave adds 2 to `epoch`, and an even epoch names one incarnation of the ID. A
//! reader loads `epoch` (acquire); if odd it retries later; it reads `state` and `gid`,
//! issues an acquire fence and loads `epoch` again: equal values mean a consistent
//! snapshot ([`PeerEntryRepr`]). After changing entries the server adds 1 to the header's
//! `server_epoch` and rings every surviving peer on [`VECTOR_CONTROL`]; guests compare
//! `server_epoch` with the value they last saw and rescan the directory.
//!
//! Because every ID starts Free at epoch 0 and alternates join (Active) and leave (Dead),
//! a consistent entry satisfies: Free ⟺ epoch 0; Active ⟺ epoch ≡ 2 (mod 4);
//! Dead ⟺ epoch ≡ 0 (mod 4) and epoch > 0. [`PeerEntryRepr::is_consistent`] checks it;
//! an entry that breaks it was scribbled on by a peer and must not be trusted.
//!
//! **Descriptor seqlock.** Peer *p* registers a DMB in slot *s* of its own descriptor table
//! the same way: `sequence + 1` (odd), write `token`, `dmb_offset`, `dmb_len`, `owner_gid`,
//! `remote_gid`, then `sequence + 2` (release). Unregistering writes `token = 0` inside the
//! same odd/even bracket. A peer that wants to attach (write into) that DMB reads the
//! descriptor under the seqlock and checks it with [`Layout::validate_attach`].
//!
//! **Signalling.** To tell peer *p* that DMB slot *s* has news, a sender sets bit `s % 64`
//! of bitmap word `s / 64` in *p*'s directory entry (`fetch_or`, release), then rings *p*'s
//! doorbell on [`VECTOR_DMB`]. *p*'s interrupt handler swaps each bitmap word with 0
//! (acquire) and handles the slots whose bits were set. A sender whose `fetch_or` finds
//! the bit already set may skip the doorbell: whoever set it rings after setting it, and
//! the receiver sees the bit at its next swap, which happens after that ring at the latest.
//!
//! **Trust.** Every peer can write the whole region (ivshmem cannot isolate), so a guest
//! trusts the header only after [`Layout::from_header`] has recomputed the whole layout
//! from three parameters and found every stored field equal, and it checks every
//! descriptor with [`Layout::validate_attach`] before touching a DMB.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

/// Size of a page: areas, the directory and descriptor tables are aligned to it.
pub const PAGE_SIZE: usize = 4096;
/// Size of the header page at region offset 0.
pub const HEADER_SIZE: usize = PAGE_SIZE;
/// Magic bytes at region offset 0.
pub const MAGIC: [u8; 8] = *b"SMCDIVSH";
/// Layout version written by the server and required by [`Header::new_checked`].
pub const LAYOUT_VERSION: u32 = 1;

/// MSI-X vector (and ivshmem doorbell vector) 0: control. The server rings it on every
/// surviving peer after a join or a leave (see the crate docs).
pub const VECTOR_CONTROL: u16 = 0;
/// MSI-X vector (and ivshmem doorbell vector) 1: DMB signals (see the signal bitmap).
pub const VECTOR_DMB: u16 = 1;
/// Number of vectors the layout uses; the server's `--vectors` default.
pub const VECTORS: u32 = 2;

/// Smallest allowed number of peers.
pub const MIN_PEERS: u32 = 1;
/// Largest allowed number of peers (ivshmem peer IDs are 16-bit; this bounds the directory).
pub const MAX_PEERS: u32 = 1024;
/// Smallest number of DMB slots per peer (one 64-bit bitmap word).
pub const MIN_SLOTS: u32 = 64;
/// Largest number of DMB slots per peer.
pub const MAX_SLOTS: u32 = 4096;
/// Default number of DMB slots per peer.
pub const DEFAULT_SLOTS: u32 = 256;
/// Smallest payload an area must offer: the smallest SMC-D DMB (16 KiB, reference §4.1).
pub const MIN_AREA_PAYLOAD: usize = 16 * 1024;
/// Largest region size accepted (1 TiB), so that every offset fits comfortably.
pub const MAX_REGION_SIZE: usize = 1 << 40;
/// Size of one DMB descriptor.
pub const DESCRIPTOR_SIZE: usize = 64;

/// Byte offsets of the header fields (region offset 0).
pub mod header {
    use core::ops::Range;
    /// `[u8; 8]` [`MAGIC`](crate::MAGIC).
    pub const MAGIC: Range<usize> = 0..8;
    /// `u32` layout version ([`LAYOUT_VERSION`](crate::LAYOUT_VERSION)).
    pub const VERSION: Range<usize> = 8..12;
    /// `u32` size of the header page ([`HEADER_SIZE`](crate::HEADER_SIZE)).
    pub const HEADER_SIZE: Range<usize> = 12..16;
    /// `u64` size of the whole region in bytes (a power of two).
    pub const REGION_SIZE: Range<usize> = 16..24;
    /// `[u8; 16]` random region identity, written by the server.
    pub const REGION_ID: Range<usize> = 24..40;
    /// `u32` number of directory entries (peer IDs `0..max_peers`).
    pub const MAX_PEERS: Range<usize> = 40..44;
    /// `u32` DMB slots per peer (bits in each signal bitmap, descriptors per area).
    pub const SLOTS_PER_PEER: Range<usize> = 44..48;
    /// `u32` size of one directory entry.
    pub const PEER_ENTRY_SIZE: Range<usize> = 48..52;
    /// `u32` size of one descriptor ([`DESCRIPTOR_SIZE`](crate::DESCRIPTOR_SIZE)).
    pub const DESCRIPTOR_SIZE: Range<usize> = 52..56;
    /// `u64` region offset of the peer directory.
    pub const DIRECTORY_OFFSET: Range<usize> = 56..64;
    /// `u64` region offset of area 0.
    pub const DATA_OFFSET: Range<usize> = 64..72;
    /// `u64` size of one per-peer area.
    pub const AREA_SIZE: Range<usize> = 72..80;
    /// `u64` size of the descriptor table at the start of each area.
    pub const DESCRIPTOR_TABLE_SIZE: Range<usize> = 80..88;
    /// `u32` number of interrupt vectors the server hands out per peer (informational).
    pub const VECTORS: Range<usize> = 88..92;
    /// `u32` flags, 0 (reserved).
    pub const FLAGS: Range<usize> = 92..96;
    /// `u64` server epoch: +1 after every join and leave. Aligned 64-bit atomic.
    pub const SERVER_EPOCH: Range<usize> = 96..104;
    /// Bytes covered by the fields above; the rest of the page is zero (reserved).
    pub const FIELDS_END: usize = 104;
}

/// Byte offsets inside one directory entry (relative to [`Layout::peer_entry_offset`]).
pub mod peer_entry {
    use core::ops::Range;
    /// `u64` [`PeerState`](crate::PeerState). Aligned 64-bit atomic; server writes.
    pub const STATE: Range<usize> = 0..8;
    /// `u64` epoch / seqlock counter (see crate docs). Aligned 64-bit atomic; server writes.
    pub const EPOCH: Range<usize> = 8..16;
    /// `u64` GID, first half ([`Gid::gid`](crate::Gid::gid)). Server writes.
    pub const GID: Range<usize> = 16..24;
    /// `u64` GID, second half ([`Gid::gid_ext`](crate::Gid::gid_ext)). Server writes.
    pub const GID_EXT: Range<usize> = 24..32;
    /// Start of the signal bitmap: `slots_per_peer / 64` aligned 64-bit atomic words.
    pub const BITMAP: usize = 32;
}

/// Byte offsets inside one DMB descriptor (relative to [`Layout::descriptor_offset`]).
pub mod descriptor {
    use core::ops::Range;
    /// `u64` seqlock counter; odd while the owner rewrites the descriptor. Atomic.
    pub const SEQUENCE: Range<usize> = 0..8;
    /// `u64` DMB token; 0 = slot unused. Atomic.
    pub const TOKEN: Range<usize> = 8..16;
    /// `u64` region offset of the DMB (inside the owner's area payload).
    pub const DMB_OFFSET: Range<usize> = 16..24;
    /// `u64` DMB length in bytes.
    pub const DMB_LEN: Range<usize> = 24..32;
    /// `u64` owner GID, first half (the owner's directory GID when it registered).
    pub const OWNER_GID: Range<usize> = 32..40;
    /// `u64` owner GID, second half.
    pub const OWNER_GID_EXT: Range<usize> = 40..48;
    /// `u64` GID allowed to attach, first half (0 and 0: any active peer).
    pub const REMOTE_GID: Range<usize> = 48..56;
    /// `u64` GID allowed to attach, second half.
    pub const REMOTE_GID_EXT: Range<usize> = 56..64;
}

fn get_u32(buf: &[u8], field: Range<usize>) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[field]);
    u32::from_le_bytes(bytes)
}

fn get_u64(buf: &[u8], field: Range<usize>) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[field]);
    u64::from_le_bytes(bytes)
}

fn put_u32(buf: &mut [u8], field: Range<usize>, value: u32) {
    buf[field].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], field: Range<usize>, value: u64) {
    buf[field].copy_from_slice(&value.to_le_bytes());
}

const fn round_up(value: usize, align: usize) -> usize {
    // Only called with power-of-two `align` and values far below usize::MAX (bounded by
    // MAX_REGION_SIZE / MAX_PEERS / MAX_SLOTS checks before use).
    (value + align - 1) & !(align - 1)
}

/// A 128-bit GID as the server assigns it (two little-endian `u64`, same split as the
/// Linux `smcd_gid { gid, gid_ext }`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gid {
    /// First 64 bits.
    pub gid: u64,
    /// Second 64 bits.
    pub gid_ext: u64,
}

impl Gid {
    /// The all-zero GID: "no peer" in the directory, "any peer" as a descriptor's remote GID.
    pub const ZERO: Gid = Gid { gid: 0, gid_ext: 0 };

    /// True for the all-zero GID.
    pub const fn is_zero(&self) -> bool {
        self.gid == 0 && self.gid_ext == 0
    }

    /// Builds a GID from 16 bytes (first 8 bytes little-endian `gid`, then `gid_ext`).
    pub fn from_bytes(bytes: [u8; 16]) -> Gid {
        Gid {
            gid: get_u64(&bytes, 0..8),
            gid_ext: get_u64(&bytes, 8..16),
        }
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{:016x}", self.gid, self.gid_ext)
    }
}

/// State of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum PeerState {
    /// The ID has never been assigned.
    Free = 0,
    /// A client holds the ID; its GID is valid.
    Active = 1,
    /// The client that held the ID disconnected; the ID may be reassigned.
    Dead = 2,
}

impl PeerState {
    /// Decodes a stored state word; `None` for values the layout does not define.
    pub const fn from_u64(value: u64) -> Option<PeerState> {
        match value {
            0 => Some(PeerState::Free),
            1 => Some(PeerState::Active),
            2 => Some(PeerState::Dead),
            _ => None,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Free => "free",
            PeerState::Active => "active",
            PeerState::Dead => "dead",
        })
    }
}

/// Why a set of layout parameters cannot describe a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The region size is not a power of two (PCI BARs are power-of-two sized).
    NotPowerOfTwo {
        /// The rejected size.
        region_size: usize,
    },
    /// The region size exceeds [`MAX_REGION_SIZE`].
    TooLarge {
        /// The rejected size.
        region_size: usize,
    },
    /// `max_peers` outside [`MIN_PEERS`]..=[`MAX_PEERS`].
    BadPeerCount {
        /// The rejected count.
        max_peers: u32,
    },
    /// `slots_per_peer` not a multiple of 64 inside [`MIN_SLOTS`]..=[`MAX_SLOTS`].
    BadSlotCount {
        /// The rejected count.
        slots_per_peer: u32,
    },
    /// The region is too small to give every peer a descriptor table and
    /// [`MIN_AREA_PAYLOAD`] bytes of payload.
    TooSmall {
        /// The rejected size.
        region_size: usize,
        /// The smallest power-of-two size that works with these parameters.
        minimum: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::NotPowerOfTwo { region_size } => write!(
                f,
                "region size {region_size} is not a power of two (the PCI BAR is power-of-two sized)"
            ),
            LayoutError::TooLarge { region_size } => write!(
                f,
                "region size {region_size} exceeds the maximum of {MAX_REGION_SIZE} bytes"
            ),
            LayoutError::BadPeerCount { max_peers } => write!(
                f,
                "max peers {max_peers} outside {MIN_PEERS}..={MAX_PEERS}"
            ),
            LayoutError::BadSlotCount { slots_per_peer } => write!(
                f,
                "slots per peer {slots_per_peer} is not a multiple of 64 in {MIN_SLOTS}..={MAX_SLOTS}"
            ),
            LayoutError::TooSmall {
                region_size,
                minimum,
            } => write!(
                f,
                "region size {region_size} is too small for these peers and slots: need at least {minimum} bytes"
            ),
        }
    }
}

/// Why a region header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer (or region) is shorter than the header page.
    Truncated,
    /// The magic bytes are wrong: not a region formatted by our server.
    BadMagic,
    /// A layout version this code does not know.
    BadVersion {
        /// The stored version.
        version: u32,
    },
    /// The stored region size differs from the size of the memory actually mapped.
    SizeMismatch {
        /// Size stored in the header.
        stored: u64,
        /// Size of the mapped region.
        actual: usize,
    },
    /// The stored parameters do not form a valid layout.
    Layout(LayoutError),
    /// A derived field (offsets, sizes) differs from the value recomputed from the
    /// parameters: the header is corrupt or written by incompatible code.
    Inconsistent {
        /// Which field (a name from the [`header`] module).
        field: &'static str,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::Truncated => {
                write!(f, "region shorter than the {HEADER_SIZE}-byte header")
            }
            HeaderError::BadMagic => write!(
                f,
                "bad magic: region not formatted by the smcd ivshmem server"
            ),
            HeaderError::BadVersion { version } => write!(
                f,
                "unsupported layout version {version} (expected {LAYOUT_VERSION})"
            ),
            HeaderError::SizeMismatch { stored, actual } => write!(
                f,
                "header says region is {stored} bytes but {actual} bytes are mapped"
            ),
            HeaderError::Layout(err) => write!(f, "invalid layout parameters: {err}"),
            HeaderError::Inconsistent { field } => {
                write!(f, "header field {field} does not match the computed layout")
            }
        }
    }
}

/// Why a DMB descriptor does not allow an attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The owner peer ID or the slot index is outside the layout.
    NoSuchSlot,
    /// The slot holds no DMB (token 0) or a different token.
    TokenMismatch,
    /// The descriptor names an owner GID other than the directory's current GID for
    /// that peer (a stale descriptor of an earlier incarnation, or a forgery).
    OwnerMismatch,
    /// The DMB is restricted to another remote GID.
    NotAllowed,
    /// The DMB does not lie inside the owner's area payload, or has length 0.
    OutOfArea,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachError::NoSuchSlot => "no such peer or DMB slot",
            AttachError::TokenMismatch => "DMB token does not match the descriptor",
            AttachError::OwnerMismatch => "descriptor owner is not the peer's current GID",
            AttachError::NotAllowed => "DMB is not shared with this GID",
            AttachError::OutOfArea => "DMB lies outside its owner's area",
        })
    }
}

/// The three parameters that determine a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutParams {
    /// Size of the whole region (BAR2); a power of two.
    pub region_size: usize,
    /// Number of directory entries; peer IDs run `0..max_peers`.
    pub max_peers: u32,
    /// DMB slots per peer; a multiple of 64.
    pub slots_per_peer: u32,
}

/// A validated region layout: every offset and size, derived from [`LayoutParams`].
///
/// Built by [`Layout::compute`] (server) or [`Layout::from_header`] (guest); both
/// guarantee that every range the methods return lies inside `0..region_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    region_size: usize,
    max_peers: u32,
    slots_per_peer: u32,
    peer_entry_size: usize,
    directory_offset: usize,
    data_offset: usize,
    area_size: usize,
    descriptor_table_size: usize,
}

impl Layout {
    /// Computes the layout for `params`.
    ///
    /// The directory follows the header page; entry size is `32 + slots/8` rounded up to
    /// 64 bytes; the data part starts at the next page; the remaining space is divided
    /// equally among `max_peers` areas, each rounded down to whole pages. Each area must
    /// hold its descriptor table (page-rounded) plus at least [`MIN_AREA_PAYLOAD`].
    pub fn compute(params: LayoutParams) -> Result<Layout, LayoutError> {
        let LayoutParams {
            region_size,
            max_peers,
            slots_per_peer,
        } = params;
        if !(MIN_PEERS..=MAX_PEERS).contains(&max_peers) {
            return Err(LayoutError::BadPeerCount { max_peers });
        }
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&slots_per_peer) || !slots_per_peer.is_multiple_of(64)
        {
            return Err(LayoutError::BadSlotCount { slots_per_peer });
        }
        if region_size > MAX_REGION_SIZE {
            return Err(LayoutError::TooLarge { region_size });
        }
        if !region_size.is_power_of_two() {
            return Err(LayoutError::NotPowerOfTwo { region_size });
        }
        let peers = max_peers as usize;
        let slots = slots_per_peer as usize;
        let peer_entry_size = round_up(peer_entry::BITMAP + slots / 8, 64);
        let directory_offset = HEADER_SIZE;
        let data_offset = directory_offset + round_up(peers * peer_entry_size, PAGE_SIZE);
        let descriptor_table_size = round_up(slots * DESCRIPTOR_SIZE, PAGE_SIZE);
        let min_area = descriptor_table_size + MIN_AREA_PAYLOAD;
        let needed = data_offset + peers * min_area;
        if region_size < needed {
            return Err(LayoutError::TooSmall {
                region_size,
                minimum: needed.next_power_of_two(),
            });
        }
        let area_size = ((region_size - data_offset) / peers) & !(PAGE_SIZE - 1);
        // `area_size >= min_area` follows from `region_size >= needed` because `min_area`
        // is a page multiple; keep the check so a future change cannot break it silently.
        if area_size < min_area {
            return Err(LayoutError::TooSmall {
                region_size,
                minimum: needed.next_power_of_two(),
            });
        }
        Ok(Layout {
            region_size,
            max_peers,
            slots_per_peer,
            peer_entry_size,
            directory_offset,
            data_offset,
            area_size,
            descriptor_table_size,
        })
    }

    /// Smallest power-of-two region size that fits `max_peers` peers with
    /// `slots_per_peer` slots each.
    pub fn minimum_region_size(max_peers: u32, slots_per_peer: u32) -> Result<usize, LayoutError> {
        match Layout::compute(LayoutParams {
            region_size: MAX_REGION_SIZE,
            max_peers,
            slots_per_peer,
        }) {
            Ok(layout) => {
                let needed = layout.data_offset
                    + layout.max_peers as usize * (layout.descriptor_table_size + MIN_AREA_PAYLOAD);
                Ok(needed.next_power_of_two())
            }
            Err(err) => Err(err),
        }
    }

    /// Validates a header read from a mapped region of `region_len` bytes and returns
    /// the layout it describes. Every derived field must equal the recomputed value.
    pub fn from_header<T: AsRef<[u8]>>(
        header: &Header<T>,
        region_len: usize,
    ) -> Result<Layout, HeaderError> {
        let stored = header.region_size();
        if usize::try_from(stored).ok() != Some(region_len) {
            return Err(HeaderError::SizeMismatch {
                stored,
                actual: region_len,
            });
        }
        let layout = Layout::compute(LayoutParams {
            region_size: region_len,
            max_peers: header.max_peers(),
            slots_per_peer: header.slots_per_peer(),
        })
        .map_err(HeaderError::Layout)?;
        let checks: [(&'static str, u64, u64); 7] = [
            (
                "HEADER_SIZE",
                u64::from(header.header_size()),
                HEADER_SIZE as u64,
            ),
            (
                "PEER_ENTRY_SIZE",
                u64::from(header.peer_entry_size()),
                layout.peer_entry_size as u64,
            ),
            (
                "DESCRIPTOR_SIZE",
                u64::from(header.descriptor_size()),
                DESCRIPTOR_SIZE as u64,
            ),
            (
                "DIRECTORY_OFFSET",
                header.directory_offset(),
                layout.directory_offset as u64,
            ),
            (
                "DATA_OFFSET",
                header.data_offset(),
                layout.data_offset as u64,
            ),
            ("AREA_SIZE", header.area_size(), layout.area_size as u64),
            (
                "DESCRIPTOR_TABLE_SIZE",
                header.descriptor_table_size(),
                layout.descriptor_table_size as u64,
            ),
        ];
        for (field, stored, computed) in checks {
            if stored != computed {
                return Err(HeaderError::Inconsistent { field });
            }
        }
        if header.flags() != 0 {
            return Err(HeaderError::Inconsistent { field: "FLAGS" });
        }
        Ok(layout)
    }

    /// The parameters this layout was computed from.
    pub const fn params(&self) -> LayoutParams {
        LayoutParams {
            region_size: self.region_size,
            max_peers: self.max_peers,
            slots_per_peer: self.slots_per_peer,
        }
    }

    /// Size of the whole region.
    pub const fn region_size(&self) -> usize {
        self.region_size
    }

    /// Number of directory entries (peer IDs `0..max_peers`).
    pub const fn max_peers(&self) -> u32 {
        self.max_peers
    }

    /// DMB slots per peer.
    pub const fn slots_per_peer(&self) -> u32 {
        self.slots_per_peer
    }

    /// Number of 64-bit words in each signal bitmap.
    pub const fn bitmap_words(&self) -> usize {
        self.slots_per_peer as usize / 64
    }

    /// Size of one directory entry.
    pub const fn peer_entry_size(&self) -> usize {
        self.peer_entry_size
    }

    /// Region offset of the directory.
    pub const fn directory_offset(&self) -> usize {
        self.directory_offset
    }

    /// Region offset of area 0; everything before it is header and directory
    /// ("metadata", formatted by [`format_metadata`]).
    pub const fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Size of one per-peer area.
    pub const fn area_size(&self) -> usize {
        self.area_size
    }

    /// Size of the descriptor table at the start of each area.
    pub const fn descriptor_table_size(&self) -> usize {
        self.descriptor_table_size
    }

    fn check_peer(&self, peer: u32) -> Option<usize> {
        if peer < self.max_peers {
            Some(peer as usize)
        } else {
            None
        }
    }

    /// Region offset of peer `peer`'s directory entry.
    pub fn peer_entry_offset(&self, peer: u32) -> Option<usize> {
        let peer = self.check_peer(peer)?;
        Some(self.directory_offset + peer * self.peer_entry_size)
    }

    /// Region range of peer `peer`'s directory entry.
    pub fn peer_entry_range(&self, peer: u32) -> Option<Range<usize>> {
        let start = self.peer_entry_offset(peer)?;
        Some(start..start + self.peer_entry_size)
    }

    /// Region offset of the `state` word of `peer`'s entry (aligned 64-bit atomic).
    pub fn peer_state_offset(&self, peer: u32) -> Option<usize> {
        Some(self.peer_entry_offset(peer)? + peer_entry::STATE.start)
    }

    /// Region offset of the `epoch` word of `peer`'s entry (aligned 64-bit atomic).
    pub fn peer_epoch_offset(&self, peer: u32) -> Option<usize> {
        Some(self.peer_entry_offset(peer)? + peer_entry::EPOCH.start)
    }

    /// Region offsets of the two GID words of `peer`'s entry (`gid`, `gid_ext`).
    pub fn peer_gid_offsets(&self, peer: u32) -> Option<(usize, usize)> {
        let entry = self.peer_entry_offset(peer)?;
        Some((
            entry + peer_entry::GID.start,
            entry + peer_entry::GID_EXT.start,
        ))
    }

    /// Region range of `peer`'s signal bitmap (`bitmap_words()` aligned 64-bit words).
    pub fn bitmap_range(&self, peer: u32) -> Option<Range<usize>> {
        let start = self.peer_entry_offset(peer)? + peer_entry::BITMAP;
        Some(start..start + self.bitmap_words() * 8)
    }

    /// The bitmap word (region offset) and bit mask that signal DMB `slot` of `peer`.
    pub fn signal_bit(&self, peer: u32, slot: u32) -> Option<(usize, u64)> {
        if slot >= self.slots_per_peer {
            return None;
        }
        let start = self.bitmap_range(peer)?.start;
        Some((start + (slot as usize / 64) * 8, 1u64 << (slot % 64)))
    }

    /// Region range of area `peer` (descriptor table and payload).
    pub fn area(&self, peer: u32) -> Option<Range<usize>> {
        let peer = self.check_peer(peer)?;
        let start = self.data_offset + peer * self.area_size;
        Some(start..start + self.area_size)
    }

    /// Region range of `peer`'s descriptor table (start of its area).
    pub fn descriptor_table(&self, peer: u32) -> Option<Range<usize>> {
        let start = self.area(peer)?.start;
        Some(start..start + self.descriptor_table_size)
    }

    /// Region range where `peer` may place its DMBs (its area after the table).
    pub fn area_payload(&self, peer: u32) -> Option<Range<usize>> {
        let area = self.area(peer)?;
        Some(area.start + self.descriptor_table_size..area.end)
    }

    /// Region offset of the descriptor of DMB `slot` in `peer`'s area.
    pub fn descriptor_offset(&self, peer: u32, slot: u32) -> Option<usize> {
        if slot >= self.slots_per_peer {
            return None;
        }
        Some(self.descriptor_table(peer)?.start + slot as usize * DESCRIPTOR_SIZE)
    }

    /// Decides whether a peer with GID `requester` may attach DMB `slot` of `owner`
    /// presenting `token`, given a consistent snapshot of the slot's descriptor and the
    /// owner's current directory GID. Returns the region range of the DMB.
    pub fn validate_attach(
        &self,
        owner: u32,
        slot: u32,
        descriptor: &DescriptorRepr,
        token: u64,
        requester: Gid,
        owner_directory_gid: Gid,
    ) -> Result<Range<usize>, AttachError> {
        let payload = self
            .area_payload(owner)
            .filter(|_| slot < self.slots_per_peer)
            .ok_or(AttachError::NoSuchSlot)?;
        if token == 0 || descriptor.token != token {
            return Err(AttachError::TokenMismatch);
        }
        if owner_directory_gid.is_zero() || descriptor.owner_gid != owner_directory_gid {
            return Err(AttachError::OwnerMismatch);
        }
        if !descriptor.remote_gid.is_zero() && descriptor.remote_gid != requester {
            return Err(AttachError::NotAllowed);
        }
        let start = usize::try_from(descriptor.dmb_offset).map_err(|_| AttachError::OutOfArea)?;
        let len = usize::try_from(descriptor.dmb_len).map_err(|_| AttachError::OutOfArea)?;
        let end = start.checked_add(len).ok_or(AttachError::OutOfArea)?;
        if len == 0 || start < payload.start || end > payload.end {
            return Err(AttachError::OutOfArea);
        }
        Ok(start..end)
    }
}

/// A view of the header page (the first [`HEADER_SIZE`] bytes of the region).
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checks; accessors panic if it is shorter than
    /// [`header::FIELDS_END`]. Use [`Header::new_checked`] for anything read from memory.
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps a buffer after checking its length, magic and version, so that no
    /// accessor can panic. Derived fields are checked by [`Layout::from_header`].
    pub fn new_checked(buffer: T) -> Result<Header<T>, HeaderError> {
        let header = Header::new_unchecked(buffer);
        let bytes = header.buffer.as_ref();
        if bytes.len() < HEADER_SIZE {
            return Err(HeaderError::Truncated);
        }
        if bytes[header::MAGIC] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = header.version();
        if version != LAYOUT_VERSION {
            return Err(HeaderError::BadVersion { version });
        }
        Ok(header)
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Magic bytes.
    pub fn magic(&self) -> [u8; 8] {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&self.buffer.as_ref()[header::MAGIC]);
        magic
    }

    /// Layout version.
    pub fn version(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::VERSION)
    }

    /// Stored header page size.
    pub fn header_size(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::HEADER_SIZE)
    }

    /// Stored region size.
    pub fn region_size(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::REGION_SIZE)
    }

    /// Random region identity.
    pub fn region_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.buffer.as_ref()[header::REGION_ID]);
        id
    }

    /// Number of directory entries.
    pub fn max_peers(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::MAX_PEERS)
    }

    /// DMB slots per peer.
    pub fn slots_per_peer(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::SLOTS_PER_PEER)
    }

    /// Stored directory entry size.
    pub fn peer_entry_size(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::PEER_ENTRY_SIZE)
    }

    /// Stored descriptor size.
    pub fn descriptor_size(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::DESCRIPTOR_SIZE)
    }

    /// Stored directory offset.
    pub fn directory_offset(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::DIRECTORY_OFFSET)
    }

    /// Stored data offset.
    pub fn data_offset(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::DATA_OFFSET)
    }

    /// Stored area size.
    pub fn area_size(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::AREA_SIZE)
    }

    /// Stored descriptor table size.
    pub fn descriptor_table_size(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::DESCRIPTOR_TABLE_SIZE)
    }

    /// Vectors per peer the server hands out.
    pub fn vectors(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::VECTORS)
    }

    /// Flags (0).
    pub fn flags(&self) -> u32 {
        get_u32(self.buffer.as_ref(), header::FLAGS)
    }

    /// Server epoch (a snapshot; the live value is an atomic in shared memory).
    pub fn server_epoch(&self) -> u64 {
        get_u64(self.buffer.as_ref(), header::SERVER_EPOCH)
    }
}

/// Writes the header page for `layout` into `buf[..HEADER_SIZE]` (the whole page: the
/// reserved bytes become zero; `server_epoch` starts at 0).
///
/// # Panics
///
/// If `buf` is shorter than [`HEADER_SIZE`].
pub fn format_header(buf: &mut [u8], layout: &Layout, region_id: [u8; 16], vectors: u32) {
    let page = &mut buf[..HEADER_SIZE];
    page.fill(0);
    page[header::MAGIC].copy_from_slice(&MAGIC);
    put_u32(page, header::VERSION, LAYOUT_VERSION);
    put_u32(page, header::HEADER_SIZE, HEADER_SIZE as u32);
    put_u64(page, header::REGION_SIZE, layout.region_size as u64);
    page[header::REGION_ID].copy_from_slice(&region_id);
    put_u32(page, header::MAX_PEERS, layout.max_peers);
    put_u32(page, header::SLOTS_PER_PEER, layout.slots_per_peer);
    put_u32(page, header::PEER_ENTRY_SIZE, layout.peer_entry_size as u32);
    put_u32(page, header::DESCRIPTOR_SIZE, DESCRIPTOR_SIZE as u32);
    put_u64(
        page,
        header::DIRECTORY_OFFSET,
        layout.directory_offset as u64,
    );
    put_u64(page, header::DATA_OFFSET, layout.data_offset as u64);
    put_u64(page, header::AREA_SIZE, layout.area_size as u64);
    put_u64(
        page,
        header::DESCRIPTOR_TABLE_SIZE,
        layout.descriptor_table_size as u64,
    );
    put_u32(page, header::VECTORS, vectors);
    put_u32(page, header::FLAGS, 0);
    put_u64(page, header::SERVER_EPOCH, 0);
}

/// Formats the metadata part of a region, `buf[..layout.data_offset()]`: the header
/// page and a directory whose entries are all [`PeerState::Free`] with epoch 0, zero GID
/// and an empty bitmap.
///
/// # Panics
///
/// If `buf` is shorter than `layout.data_offset()`.
pub fn format_metadata(buf: &mut [u8], layout: &Layout, region_id: [u8; 16], vectors: u32) {
    let metadata = &mut buf[..layout.data_offset];
    metadata.fill(0);
    format_header(metadata, layout, region_id, vectors);
    // Free = 0, epoch 0, GID 0, bitmap 0: the zero fill above is the formatted directory.
    debug_assert_eq!(PeerState::Free as u64, 0);
}

/// A consistent snapshot of one directory entry (without its bitmap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerEntryRepr {
    /// Entry state.
    pub state: PeerState,
    /// Epoch (even when consistent; see the crate docs).
    pub epoch: u64,
    /// GID assigned at the last join (zero if never active).
    pub gid: Gid,
}

impl PeerEntryRepr {
    /// True if state, epoch and GID fit the server's write rules (crate docs): even
    /// epoch; Free ⟺ epoch 0 with zero GID; Active ⟺ epoch ≡ 2 (mod 4) with a non-zero
    /// GID; Dead ⟺ epoch ≡ 0 (mod 4), epoch > 0.
    pub fn is_consistent(&self) -> bool {
        match self.state {
            PeerState::Free => self.epoch == 0 && self.gid.is_zero(),
            PeerState::Active => self.epoch % 4 == 2 && !self.gid.is_zero(),
            PeerState::Dead => self.epoch.is_multiple_of(4) && self.epoch > 0,
        }
    }
}

/// A view of one directory entry (`layout.peer_entry_size()` bytes).
#[derive(Debug, Clone)]
pub struct PeerEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PeerEntry<T> {
    /// Wraps a buffer without checks; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> PeerEntry<T> {
        PeerEntry { buffer }
    }

    /// Wraps a buffer after checking that it holds a whole entry for `layout`.
    pub fn new_checked(buffer: T, layout: &Layout) -> Option<PeerEntry<T>> {
        if buffer.as_ref().len() < layout.peer_entry_size {
            return None;
        }
        Some(PeerEntry { buffer })
    }

    /// Raw state word.
    pub fn state_raw(&self) -> u64 {
        get_u64(self.buffer.as_ref(), peer_entry::STATE)
    }

    /// Epoch word.
    pub fn epoch(&self) -> u64 {
        get_u64(self.buffer.as_ref(), peer_entry::EPOCH)
    }

    /// GID.
    pub fn gid(&self) -> Gid {
        Gid {
            gid: get_u64(self.buffer.as_ref(), peer_entry::GID),
            gid_ext: get_u64(self.buffer.as_ref(), peer_entry::GID_EXT),
        }
    }

    /// Bitmap word `index`, or `None` past the layout's bitmap.
    pub fn bitmap_word(&self, index: usize, layout: &Layout) -> Option<u64> {
        if index >= layout.bitmap_words() {
            return None;
        }
        let start = peer_entry::BITMAP + index * 8;
        Some(get_u64(self.buffer.as_ref(), start..start + 8))
    }

    /// Decodes a snapshot; `None` for an unknown state word, an odd (in-update) epoch,
    /// or a state/epoch pair that breaks [`PeerEntryRepr::is_consistent`].
    pub fn parse(&self) -> Option<PeerEntryRepr> {
        let repr = PeerEntryRepr {
            state: PeerState::from_u64(self.state_raw())?,
            epoch: self.epoch(),
            gid: self.gid(),
        };
        if repr.is_consistent() {
            Some(repr)
        } else {
            None
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PeerEntry<T> {
    /// Writes state, epoch and GID (not the bitmap).
    pub fn emit(&mut self, repr: &PeerEntryRepr) {
        let buf = self.buffer.as_mut();
        put_u64(buf, peer_entry::STATE, repr.state as u64);
        put_u64(buf, peer_entry::EPOCH, repr.epoch);
        put_u64(buf, peer_entry::GID, repr.gid.gid);
        put_u64(buf, peer_entry::GID_EXT, repr.gid.gid_ext);
    }
}

/// A decoded DMB descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DescriptorRepr {
    /// Seqlock counter (even when consistent).
    pub sequence: u64,
    /// DMB token; 0 = unused slot.
    pub token: u64,
    /// Region offset of the DMB.
    pub dmb_offset: u64,
    /// DMB length.
    pub dmb_len: u64,
    /// Owner's GID at registration.
    pub owner_gid: Gid,
    /// GID allowed to attach ([`Gid::ZERO`]: any).
    pub remote_gid: Gid,
}

/// A view of one DMB descriptor ([`DESCRIPTOR_SIZE`] bytes).
#[derive(Debug, Clone)]
pub struct Descriptor<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Descriptor<T> {
    /// Wraps a buffer after checking its length.
    pub fn new_checked(buffer: T) -> Option<Descriptor<T>> {
        if buffer.as_ref().len() < DESCRIPTOR_SIZE {
            return None;
        }
        Some(Descriptor { buffer })
    }

    /// Decodes the descriptor (all fields; the caller checks it with
    /// [`Layout::validate_attach`]). `None` while the sequence is odd.
    pub fn parse(&self) -> Option<DescriptorRepr> {
        let buf = self.buffer.as_ref();
        let sequence = get_u64(buf, descriptor::SEQUENCE);
        if !sequence.is_multiple_of(2) {
            return None;
        }
        Some(DescriptorRepr {
            sequence,
            token: get_u64(buf, descriptor::TOKEN),
            dmb_offset: get_u64(buf, descriptor::DMB_OFFSET),
            dmb_len: get_u64(buf, descriptor::DMB_LEN),
            owner_gid: Gid {
                gid: get_u64(buf, descriptor::OWNER_GID),
                gid_ext: get_u64(buf, descriptor::OWNER_GID_EXT),
            },
            remote_gid: Gid {
                gid: get_u64(buf, descriptor::REMOTE_GID),
                gid_ext: get_u64(buf, descriptor::REMOTE_GID_EXT),
            },
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Descriptor<T> {
    /// Writes every field of `repr`.
    pub fn emit(&mut self, repr: &DescriptorRepr) {
        let buf = self.buffer.as_mut();
        put_u64(buf, descriptor::SEQUENCE, repr.sequence);
        put_u64(buf, descriptor::TOKEN, repr.token);
        put_u64(buf, descriptor::DMB_OFFSET, repr.dmb_offset);
        put_u64(buf, descriptor::DMB_LEN, repr.dmb_len);
        put_u64(buf, descriptor::OWNER_GID, repr.owner_gid.gid);
        put_u64(buf, descriptor::OWNER_GID_EXT, repr.owner_gid.gid_ext);
        put_u64(buf, descriptor::REMOTE_GID, repr.remote_gid.gid);
        put_u64(buf, descriptor::REMOTE_GID_EXT, repr.remote_gid.gid_ext);
    }
}

#[cfg(test)]
mod tests;
