//! `IvshmemIsm`: an SMC-D ISM device (protocol-reference §6.1) over an ivshmem region (§7).
//!
//! The region is formatted and kept up to date by our server (`tools/ivshmem-server`)
//! with the layout of the `ivshmem-region` crate: a header page, a peer directory (state,
//! epoch, GID and signal bitmap per peer ID) and one area per peer holding that peer's
//! DMB descriptors and DMBs. This device:
//!
//! - validates the header once ([`Layout::from_header`]) and keeps the layout, its own
//!   peer ID, GID and epoch in private memory;
//! - places its DMBs only in its own area, with a private allocator ([`AreaAllocator`]),
//!   and publishes a descriptor per DMB (token, offset, length, owner GID, allowed
//!   remote GID) under the descriptor seqlock;
//! - resolves a peer's token by reading that peer's descriptor and directory entry under
//!   their seqlocks and checking them with [`Layout::validate_attach`], every time;
//! - signals by OR-ing the DMB's bit into the owner's bitmap and ringing the owner's
//!   doorbell on [`VECTOR_DMB`] only when that bitmap word was empty (otherwise a ring
//!   for the word is already on its way: the receiver has not swapped it yet);
//! - reports peer loss from directory epochs, rescanning when the header's
//!   `server_epoch` moves (the server rings [`ivshmem_region::VECTOR_CONTROL`] then).
//!
//! Trust: every peer can write the whole region. Nothing read from it is used without a
//! bounds check; the worst a hostile peer can do is refuse service or corrupt the DMBs
//! it could write anyway — never make this device panic or touch memory outside the
//! region (see the scribbling proptest in `tests.rs`).

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{fence, Ordering};

use ivshmem_region::{
    descriptor, AttachError, Descriptor, DescriptorRepr, Header, HeaderError, Layout,
    PeerEntryRepr, PeerState, DESCRIPTOR_SIZE, HEADER_SIZE, VECTORS, VECTOR_DMB,
};
use rand_core::TryRngCore;
use smcd::ism::{Dmb, DmbToken, Gid, IsmDevice, IsmError, IsmEvent, CHID_VIRTUAL_FIRST};
use smcd::shm::{SharedMemory, ShmError};

use super::area::AreaAllocator;
use super::memory::{AtomicMemory, Window};
use super::regs::{Bar0, DoorbellError};

/// How a device reaches the doorbells of its peers (its own included).
///
/// The real implementation is [`Bar0`]; host tests use a recording fake. Control
/// (doorbells) and data path (the region) are separate traits (style practice 8).
pub trait Doorbell {
    /// Rings `vector` of peer `peer`; the device ignores rings to absent peers.
    fn ring(&self, peer: u16, vector: u16) -> Result<(), DoorbellError>;
}

impl Doorbell for Bar0 {
    fn ring(&self, peer: u16, vector: u16) -> Result<(), DoorbellError> {
        Bar0::ring(self, peer, vector)
    }
}

/// Bits of a token that carry the owner's DMB slot.
pub const TOKEN_SLOT_BITS: u32 = 12;
/// Bits of a token that carry the owner's peer ID (above the slot bits).
pub const TOKEN_PEER_BITS: u32 = 10;
/// The random part of a token starts at this bit (42 random bits, never all zero).
pub const TOKEN_RANDOM_SHIFT: u32 = TOKEN_SLOT_BITS + TOKEN_PEER_BITS;
const _: () = assert!(ivshmem_region::MAX_SLOTS <= 1 << TOKEN_SLOT_BITS);
const _: () = assert!(ivshmem_region::MAX_PEERS <= 1 << TOKEN_PEER_BITS);

/// Builds a token: random high bits (never all zero), then the owner's peer ID and slot,
/// so a sender finds the descriptor to check without searching. The locator is not a
/// secret (every peer can read the region); the random part makes stale and forged
/// tokens fail the descriptor comparison.
pub fn encode_token(peer: u32, slot: u32, random: u64) -> u64 {
    let mut high = random >> TOKEN_RANDOM_SHIFT << TOKEN_RANDOM_SHIFT;
    if high == 0 {
        high = 1 << 63;
    }
    high | (u64::from(peer) << TOKEN_SLOT_BITS) | u64::from(slot)
}

/// The (peer ID, slot) a token names.
pub fn decode_token(token: u64) -> (u32, u32) {
    let slot = (token & ((1 << TOKEN_SLOT_BITS) - 1)) as u32;
    let peer = ((token >> TOKEN_SLOT_BITS) & ((1 << TOKEN_PEER_BITS) - 1)) as u32;
    (peer, slot)
}

/// Seqlock read attempts before an entry or descriptor counts as unreadable (a hostile
/// peer can keep a sequence odd forever; we must not hang).
const SEQLOCK_RETRIES: usize = 16;

/// Why the device could not be brought up on a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvshmemError {
    /// The header is missing, of another version, or inconsistent.
    Header(HeaderError),
    /// The region could not be read (shorter than the header page).
    Region(ShmError),
    /// The server hands out fewer interrupt vectors than the layout needs.
    TooFewVectors {
        /// Vectors advertised in the header.
        advertised: u32,
    },
    /// Our ivshmem peer ID has no directory entry.
    PeerIdOutOfRange {
        /// IVPosition.
        id: u16,
        /// Directory entries in the region.
        max_peers: u32,
    },
    /// Our directory entry is not active (server has not registered us, or the entry
    /// is being rewritten or corrupt).
    NotActive {
        /// IVPosition.
        id: u16,
    },
    /// The PCI function cannot ring doorbells or take interrupts (ivshmem-plain, or fewer
    /// MSI-X entries than the layout's vectors). Its IVPosition reads 0 like peer 0's,
    /// so using it would impersonate peer 0 (protocol-reference §7.1).
    NoDoorbell {
        /// MSI-X table entries of the function.
        msix_entries: u16,
    },
}

impl core::fmt::Display for IvshmemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IvshmemError::Header(e) => write!(f, "ivshmem region header refused: {e}"),
            IvshmemError::Region(e) => write!(f, "ivshmem region unreadable: {e}"),
            IvshmemError::TooFewVectors { advertised } => write!(
                f,
                "ivshmem server advertises {advertised} vectors, the layout needs {VECTORS}"
            ),
            IvshmemError::PeerIdOutOfRange { id, max_peers } => write!(
                f,
                "ivshmem peer id {id} outside the region's directory of {max_peers} entries"
            ),
            IvshmemError::NotActive { id } => {
                write!(
                    f,
                    "ivshmem directory entry of our peer id {id} is not active"
                )
            }
            IvshmemError::NoDoorbell { msix_entries } => write!(
                f,
                "ivshmem function has {msix_entries} MSI-X entries, the ISM needs {VECTORS} \
                 (ivshmem-plain cannot be an ISM: its IVPosition 0 would impersonate peer 0)"
            ),
        }
    }
}

/// Counters of one device (for diagnostics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IvshmemStats {
    /// Doorbells rung for DMB signals.
    pub doorbells_rung: u64,
    /// Signals whose doorbell was skipped because the bitmap word was already non-empty.
    pub doorbells_coalesced: u64,
    /// Bitmap bits found set for slots we have no DMB in (ignored).
    pub spurious_signals: u64,
    /// Directory rescans after a `server_epoch` change.
    pub directory_rescans: u64,
    /// Tokens refused by `move_data`/`attach_dmb`.
    pub tokens_refused: u64,
}

#[derive(Clone, Debug)]
struct OwnDmb {
    token: u64,
    /// Allocated block (region offsets, DMB_ALIGN-rounded).
    block: Range<usize>,
    /// Registered length.
    len: usize,
    remote: Gid,
}

#[derive(Clone, Debug)]
enum Slot {
    Free { last_token: u64 },
    Used(OwnDmb),
}

struct Attachment<M> {
    window: Window<M>,
    refs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KnownPeer {
    epoch: u64,
    gid: Gid,
}

struct State<M, R> {
    rng: R,
    area: AreaAllocator,
    slots: Vec<Slot>,
    /// Private copy of each own descriptor's sequence counter (never read back).
    sequences: Vec<u64>,
    next_slot: usize,
    attached: BTreeMap<u64, Attachment<M>>,
    peers: BTreeMap<u32, KnownPeer>,
    server_epoch_seen: Option<u64>,
    failed: bool,
    stats: IvshmemStats,
}

/// A consistent snapshot of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    state: PeerState,
    epoch: u64,
    gid: ivshmem_region::Gid,
}

/// The ISM device over one ivshmem region. See the module docs.
pub struct IvshmemIsm<M, D, R> {
    region: M,
    doorbell: D,
    layout: Layout,
    own_id: u32,
    own_gid: Gid,
    own_epoch: u64,
    chid: u16,
    region_id: [u8; 16],
    state: spin::Mutex<State<M, R>>,
}

fn to_region_gid(gid: Gid) -> ivshmem_region::Gid {
    ivshmem_region::Gid {
        gid: gid.gid,
        gid_ext: gid.gid_ext,
    }
}

fn from_region_gid(gid: ivshmem_region::Gid) -> Gid {
    Gid::virtual_(gid.gid, gid.gid_ext)
}

/// CHID of a region: in the virtual range `0xFF00..=0xFFFE` (never the loopback
/// `0xFFFF`), derived from the region id so every peer of one region agrees (SMC-Dv2
/// requires equal CHIDs, protocol-reference §6.1).
pub fn chid_for_region(region_id: &[u8; 16]) -> u16 {
    let fold = region_id.iter().fold(0u16, |acc, &b| {
        acc.wrapping_mul(31).wrapping_add(u16::from(b))
    });
    CHID_VIRTUAL_FIRST + fold % 0xFF
}

fn shm_err(_: ShmError) -> IsmError {
    // Only reachable if a layout-derived offset fell outside the region, which
    // `Layout::from_header` rules out: report a device failure rather than panic.
    IsmError::DeviceError
}

impl<M, D, R> IvshmemIsm<M, D, R>
where
    M: AtomicMemory + Clone,
    D: Doorbell,
    R: TryRngCore,
{
    /// Brings the device up on `region` as peer `own_id` (IVPosition): validates the
    /// header, checks that our directory entry is active and takes our GID from it.
    /// `rng` draws DMB tokens (RDRAND on hardware, see [`super::rng::RdRandRng`]; a
    /// seeded PRNG in tests — any `RngCore` is an infallible `TryRngCore`).
    pub fn new(region: M, doorbell: D, rng: R, own_id: u16) -> Result<Self, IvshmemError> {
        let mut page = vec![0u8; HEADER_SIZE];
        region.read(0, &mut page).map_err(IvshmemError::Region)?;
        let header = Header::new_checked(&page[..]).map_err(IvshmemError::Header)?;
        let layout = Layout::from_header(&header, region.len()).map_err(IvshmemError::Header)?;
        if header.vectors() < VECTORS {
            return Err(IvshmemError::TooFewVectors {
                advertised: header.vectors(),
            });
        }
        let region_id = header.region_id();
        let peer = u32::from(own_id);
        if peer >= layout.max_peers() {
            return Err(IvshmemError::PeerIdOutOfRange {
                id: own_id,
                max_peers: layout.max_peers(),
            });
        }
        let entry = read_entry(&region, &layout, peer)
            .filter(|e| e.state == PeerState::Active && !e.gid.is_zero())
            .ok_or(IvshmemError::NotActive { id: own_id })?;
        let payload = layout
            .area_payload(peer)
            .ok_or(IvshmemError::PeerIdOutOfRange {
                id: own_id,
                max_peers: layout.max_peers(),
            })?;
        let slots = layout.slots_per_peer() as usize;
        let state = State {
            rng,
            area: AreaAllocator::new(payload),
            slots: vec![Slot::Free { last_token: 0 }; slots],
            sequences: vec![0; slots],
            next_slot: 0,
            attached: BTreeMap::new(),
            peers: BTreeMap::new(),
            server_epoch_seen: None,
            failed: false,
            stats: IvshmemStats::default(),
        };
        let dev = IvshmemIsm {
            region,
            doorbell,
            layout,
            own_id: peer,
            own_gid: from_region_gid(entry.gid),
            own_epoch: entry.epoch,
            chid: chid_for_region(&region_id),
            region_id,
            state: spin::Mutex::new(state),
        };
        // Learn the current peers so that only later departures are reported.
        dev.rescan_directory(&mut dev.state.lock(), &mut |_| {});
        Ok(dev)
    }

    /// The validated region layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Our ivshmem peer ID.
    pub fn peer_id(&self) -> u16 {
        // `own_id < max_peers <= MAX_PEERS` (1024), checked in `new`.
        self.own_id as u16
    }

    /// The region's random identity (from the header).
    pub fn region_id(&self) -> [u8; 16] {
        self.region_id
    }

    /// Peers active in the directory right now (our own entry included), as consistent
    /// seqlock snapshots: (peer ID, GID). For diagnostics and test bootstrapping; the
    /// SMC layer learns peer GIDs from the CLC handshake instead.
    pub fn active_peers(&self) -> Vec<(u16, Gid)> {
        (0..self.layout.max_peers())
            .filter_map(|peer| {
                let e = read_entry(&self.region, &self.layout, peer)?;
                // `peer < max_peers <= 1024`, fits u16.
                (e.state == PeerState::Active && !e.gid.is_zero())
                    .then(|| (peer as u16, from_region_gid(e.gid)))
            })
            .collect()
    }

    /// Tokens of `peer`'s DMBs that we may write (descriptor restricted to our GID or
    /// open to any), each checked like a `move_data` target. The SMC handshake carries
    /// tokens in CLC messages; this discovery is for tests and tools that have no TCP
    /// connection to run one over.
    pub fn dmbs_offered_by(&self, peer: u16) -> Vec<(DmbToken, usize)> {
        let peer = u32::from(peer);
        if peer == self.own_id || peer >= self.layout.max_peers() {
            return Vec::new();
        }
        (0..self.layout.slots_per_peer())
            .filter_map(|slot| {
                let d = read_descriptor(&self.region, &self.layout, peer, slot)?;
                if d.token == 0 || decode_token(d.token) != (peer, slot) {
                    return None;
                }
                let (_, _, range) = self.resolve_remote(peer, slot, d.token).ok()?;
                Some((DmbToken(d.token), range.len()))
            })
            .collect()
    }

    /// A snapshot of the device counters.
    pub fn stats(&self) -> IvshmemStats {
        self.state.lock().stats
    }

    /// True once our own directory entry changed under us (the server dropped or
    /// reassigned our ID): every operation then fails with [`IsmError::DeviceError`].
    pub fn has_failed(&self) -> bool {
        self.state.lock().failed
    }

    /// Writes own descriptor `slot` under the descriptor seqlock (ivshmem-region docs).
    fn publish_descriptor(
        &self,
        st: &mut State<M, R>,
        slot: u32,
        repr: &DescriptorRepr,
    ) -> Result<(), IsmError> {
        let base = self
            .layout
            .descriptor_offset(self.own_id, slot)
            .ok_or(IsmError::DeviceError)?;
        let seq = &mut st.sequences[slot as usize];
        let odd = seq.wrapping_add(1) | 1;
        let even = odd.wrapping_add(1);
        let mut bytes = [0u8; DESCRIPTOR_SIZE];
        let mut view = Descriptor::new_checked(&mut bytes[..]).ok_or(IsmError::DeviceError)?;
        view.emit(&DescriptorRepr {
            sequence: even,
            ..*repr
        });
        let seq_off = base + descriptor::SEQUENCE.start;
        self.region
            .store_u64(seq_off, odd.to_le(), Ordering::Relaxed)
            .map_err(shm_err)?;
        fence(Ordering::Release);
        for word in 1..DESCRIPTOR_SIZE / 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[word * 8..word * 8 + 8]);
            self.region
                .store_u64(base + word * 8, u64::from_ne_bytes(w), Ordering::Relaxed)
                .map_err(shm_err)?;
        }
        self.region
            .store_u64(seq_off, even.to_le(), Ordering::Release)
            .map_err(shm_err)?;
        *seq = even;
        Ok(())
    }

    /// Finds the region range of the DMB `token` names, checking it as a writer with
    /// our GID. Own DMBs are checked against private state; a peer's DMB against its
    /// descriptor and directory entry, read from the region every time.
    fn resolve(
        &self,
        st: &mut State<M, R>,
        token: DmbToken,
    ) -> Result<(u32, u32, Range<usize>), IsmError> {
        if st.failed {
            return Err(IsmError::DeviceError);
        }
        let (peer, slot) = decode_token(token.0);
        let result = if peer == self.own_id {
            match st.slots.get(slot as usize) {
                Some(Slot::Used(d))
                    if d.token == token.0
                        && (d.remote == Gid::default() || d.remote == self.own_gid) =>
                {
                    Ok((peer, slot, d.block.start..d.block.start + d.len))
                }
                _ => Err(IsmError::InvalidToken),
            }
        } else {
            self.resolve_remote(peer, slot, token.0)
        };
        if result.is_err() {
            st.stats.tokens_refused += 1;
        }
        result
    }

    fn resolve_remote(
        &self,
        peer: u32,
        slot: u32,
        token: u64,
    ) -> Result<(u32, u32, Range<usize>), IsmError> {
        if peer >= self.layout.max_peers() || slot >= self.layout.slots_per_peer() {
            return Err(IsmError::InvalidToken);
        }
        let owner = read_entry(&self.region, &self.layout, peer)
            .filter(|e| e.state == PeerState::Active)
            .ok_or(IsmError::PeerUnreachable)?;
        let desc = read_descriptor(&self.region, &self.layout, peer, slot)
            .ok_or(IsmError::InvalidToken)?;
        let range = self
            .layout
            .validate_attach(
                peer,
                slot,
                &desc,
                token,
                to_region_gid(self.own_gid),
                owner.gid,
            )
            .map_err(|e| match e {
                AttachError::NoSuchSlot
                | AttachError::TokenMismatch
                | AttachError::OwnerMismatch
                | AttachError::NotAllowed
                | AttachError::OutOfArea => IsmError::InvalidToken,
            })?;
        Ok((peer, slot, range))
    }

    /// Sets `slot`'s bit in `peer`'s bitmap and rings `peer` if the word was empty.
    fn signal(&self, st: &mut State<M, R>, peer: u32, slot: u32) -> Result<(), IsmError> {
        let (word, mask) = self
            .layout
            .signal_bit(peer, slot)
            .ok_or(IsmError::DeviceError)?;
        let old = self
            .region
            .fetch_or_u64(word, mask, Ordering::AcqRel)
            .map_err(shm_err)?;
        if old == 0 {
            // `peer < max_peers <= 1024` (validated by the layout), so it fits u16.
            self.doorbell
                .ring(peer as u16, VECTOR_DMB)
                .map_err(|_| IsmError::DeviceError)?;
            st.stats.doorbells_rung += 1;
        } else {
            st.stats.doorbells_coalesced += 1;
        }
        Ok(())
    }

    /// Re-reads the directory and reports departed peers; records the server epoch only
    /// when every entry could be read consistently (otherwise retries next poll).
    fn rescan_directory(&self, st: &mut State<M, R>, sink: &mut dyn FnMut(IsmEvent)) {
        let Some(epoch_off) = server_epoch_offset() else {
            return;
        };
        let Ok(server_epoch) = self.region.load_u64(epoch_off, Ordering::Acquire) else {
            return;
        };
        st.stats.directory_rescans += 1;
        let mut complete = true;
        for peer in 0..self.layout.max_peers() {
            let entry = read_entry(&self.region, &self.layout, peer);
            if peer == self.own_id {
                match entry {
                    Some(e) if e.state == PeerState::Active && e.epoch == self.own_epoch => {}
                    None => complete = false,
                    Some(_) => {
                        if !st.failed {
                            log::error!(
                                "ivshmem: our directory entry {peer} changed; device failed"
                            );
                        }
                        st.failed = true;
                    }
                }
                continue;
            }
            match entry {
                None => complete = false,
                Some(e) if e.state == PeerState::Active && !e.gid.is_zero() => {
                    let now = KnownPeer {
                        epoch: e.epoch,
                        gid: from_region_gid(e.gid),
                    };
                    if let Some(old) = st.peers.insert(peer, now) {
                        if old != now {
                            sink(IsmEvent::PeerGone { gid: old.gid });
                        }
                    }
                }
                Some(_) => {
                    if let Some(old) = st.peers.remove(&peer) {
                        sink(IsmEvent::PeerGone { gid: old.gid });
                    }
                }
            }
        }
        if complete {
            st.server_epoch_seen = Some(u64::from_le(server_epoch));
        }
    }
}

fn server_epoch_offset() -> Option<usize> {
    Some(ivshmem_region::header::SERVER_EPOCH.start)
}

/// Reads `peer`'s directory entry under its seqlock; `None` if it stayed inconsistent
/// (odd or moving epoch) for [`SEQLOCK_RETRIES`] attempts, has an unknown state, or
/// breaks the state/epoch/GID rules ([`PeerEntryRepr::is_consistent`]).
fn read_entry<M: SharedMemory>(region: &M, layout: &Layout, peer: u32) -> Option<Entry> {
    let epoch_off = layout.peer_epoch_offset(peer)?;
    let state_off = layout.peer_state_offset(peer)?;
    let (gid_off, gid_ext_off) = layout.peer_gid_offsets(peer)?;
    for _ in 0..SEQLOCK_RETRIES {
        let e1 = u64::from_le(region.load_u64(epoch_off, Ordering::Acquire).ok()?);
        if e1 % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let state = u64::from_le(region.load_u64(state_off, Ordering::Relaxed).ok()?);
        let gid = u64::from_le(region.load_u64(gid_off, Ordering::Relaxed).ok()?);
        let gid_ext = u64::from_le(region.load_u64(gid_ext_off, Ordering::Relaxed).ok()?);
        fence(Ordering::Acquire);
        let e2 = u64::from_le(region.load_u64(epoch_off, Ordering::Relaxed).ok()?);
        if e1 != e2 {
            core::hint::spin_loop();
            continue;
        }
        let repr = PeerEntryRepr {
            state: PeerState::from_u64(state)?,
            epoch: e1,
            gid: ivshmem_region::Gid { gid, gid_ext },
        };
        // The server's write rules tie state, epoch and GID together; an entry that
        // breaks them was scribbled on by a peer and is not used.
        return repr.is_consistent().then_some(Entry {
            state: repr.state,
            epoch: repr.epoch,
            gid: repr.gid,
        });
    }
    None
}

/// Reads descriptor `slot` of `peer` under its seqlock (bounded like [`read_entry`]).
fn read_descriptor<M: SharedMemory>(
    region: &M,
    layout: &Layout,
    peer: u32,
    slot: u32,
) -> Option<DescriptorRepr> {
    let base = layout.descriptor_offset(peer, slot)?;
    let mut bytes = [0u8; DESCRIPTOR_SIZE];
    for _ in 0..SEQLOCK_RETRIES {
        let s1 = region.load_u64(base, Ordering::Acquire).ok()?;
        if u64::from_le(s1) % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        bytes[..8].copy_from_slice(&s1.to_ne_bytes());
        for word in 1..DESCRIPTOR_SIZE / 8 {
            let w = region.load_u64(base + word * 8, Ordering::Relaxed).ok()?;
            bytes[word * 8..word * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        fence(Ordering::Acquire);
        let s2 = region.load_u64(base, Ordering::Relaxed).ok()?;
        if s1 != s2 {
            core::hint::spin_loop();
            continue;
        }
        return Descriptor::new_checked(&bytes[..])?.parse();
    }
    None
}

impl<M, D, R> IsmDevice for IvshmemIsm<M, D, R>
where
    M: AtomicMemory + Clone,
    D: Doorbell,
    R: TryRngCore,
{
    type Memory = Window<M>;

    fn local_gid(&self) -> Gid {
        self.own_gid
    }

    fn chid(&self) -> u16 {
        self.chid
    }

    fn supports_v2(&self) -> bool {
        true
    }

    /// True only for a GID that is active in this region's directory right now (our own
    /// included). There are no VLANs on ivshmem, so `vlan` does not narrow the answer.
    fn query_remote_gid(&self, remote: Gid, _vlan: Option<u16>) -> bool {
        if remote == Gid::default() || self.state.lock().failed {
            return false;
        }
        let wanted = to_region_gid(remote);
        (0..self.layout.max_peers()).any(|peer| {
            read_entry(&self.region, &self.layout, peer)
                .is_some_and(|e| e.state == PeerState::Active && e.gid == wanted)
        })
    }

    fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<Self::Memory>, IsmError> {
        let mut st = self.state.lock();
        if st.failed {
            return Err(IsmError::DeviceError);
        }
        let payload = self
            .layout
            .area_payload(self.own_id)
            .ok_or(IsmError::DeviceError)?;
        if len == 0 || len > payload.len() {
            return Err(IsmError::InvalidArgument);
        }
        let slots = st.slots.len();
        let slot = (0..slots)
            .map(|i| (st.next_slot + i) % slots)
            .find(|&i| matches!(st.slots[i], Slot::Free { .. }))
            .ok_or(IsmError::NoSpace)?;
        let block = st.area.allocate(len).ok_or(IsmError::NoSpace)?;
        let Slot::Free { last_token } = st.slots[slot] else {
            return Err(IsmError::DeviceError);
        };
        // `slot < slots_per_peer <= MAX_SLOTS`, so it fits u32.
        let slot32 = slot as u32;
        let mut token = last_token;
        while token == last_token {
            let Ok(random) = st.rng.try_next_u64() else {
                st.area.free(block);
                log::error!("ivshmem: token RNG failed; DMB not registered");
                return Err(IsmError::DeviceError);
            };
            token = encode_token(self.own_id, slot32, random);
        }
        let memory = Window::new(self.region.clone(), block.start, len).map_err(shm_err);
        let published = memory.and_then(|memory| {
            self.region
                .fill(block.start, block.len(), 0)
                .map_err(shm_err)?;
            let repr = DescriptorRepr {
                sequence: 0,
                token,
                dmb_offset: block.start as u64,
                dmb_len: len as u64,
                owner_gid: to_region_gid(self.own_gid),
                remote_gid: to_region_gid(remote),
            };
            self.publish_descriptor(&mut st, slot32, &repr)?;
            Ok(memory)
        });
        let memory = match published {
            Ok(m) => m,
            Err(e) => {
                st.area.free(block);
                return Err(e);
            }
        };
        st.slots[slot] = Slot::Used(OwnDmb {
            token,
            block,
            len,
            remote,
        });
        st.next_slot = (slot + 1) % slots;
        Ok(Dmb {
            token: DmbToken(token),
            index: slot32,
            memory,
        })
    }

    fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        let mut st = self.state.lock();
        let (peer, slot) = decode_token(token.0);
        if peer != self.own_id {
            return Err(IsmError::InvalidToken);
        }
        let block = match st.slots.get(slot as usize) {
            Some(Slot::Used(d)) if d.token == token.0 => d.block.clone(),
            _ => return Err(IsmError::InvalidToken),
        };
        // Withdraw the descriptor first so no peer can resolve the token any more.
        if !st.failed {
            self.publish_descriptor(&mut st, slot, &DescriptorRepr::default())?;
        }
        st.slots[slot as usize] = Slot::Free {
            last_token: token.0,
        };
        st.area.free(block);
        Ok(())
    }

    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), IsmError> {
        let mut st = self.state.lock();
        let (peer, slot, range) = self.resolve(&mut st, token)?;
        match offset.checked_add(data.len()) {
            Some(end) if end <= range.len() => {}
            _ => return Err(IsmError::OutOfBounds),
        }
        self.region
            .write(range.start + offset, data)
            .map_err(shm_err)?;
        if signal {
            self.signal(&mut st, peer, slot)?;
        }
        Ok(())
    }

    fn supports_nocopy(&self) -> bool {
        true
    }

    fn attach_dmb(&self, token: DmbToken) -> Result<Self::Memory, IsmError> {
        let mut st = self.state.lock();
        let (_, _, range) = self.resolve(&mut st, token)?;
        let window = Window::new(self.region.clone(), range.start, range.len())
            .map_err(|_| IsmError::InvalidToken)?;
        let entry = st.attached.entry(token.0).or_insert(Attachment {
            window: window.clone(),
            refs: 0,
        });
        // A re-registered DMB with the same token cannot exist (tokens differ per
        // registration), but keep the freshest window in case the range changed.
        entry.window = window.clone();
        entry.refs = entry.refs.saturating_add(1);
        Ok(window)
    }

    fn detach_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        let mut st = self.state.lock();
        let Some(a) = st.attached.get_mut(&token.0) else {
            return Err(IsmError::InvalidToken);
        };
        a.refs -= 1;
        if a.refs == 0 {
            st.attached.remove(&token.0);
        }
        Ok(())
    }

    /// Swaps our bitmap words to zero and reports a [`IsmEvent::DmbSignalled`] for each
    /// set bit of a slot holding one of our DMBs (other bits are counted as spurious),
    /// then reports [`IsmEvent::PeerGone`] for peers whose directory entry changed since
    /// the last scan (only rescanned when the server epoch moved).
    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent)) {
        // Collected under the state lock, delivered after it is released: the sink may
        // call back into this device (e.g. `move_data` for a consumer-cursor update).
        let mut events = Vec::new();
        {
            let mut st = self.state.lock();
            if st.failed {
                return;
            }
            if let Some(bitmap) = self.layout.bitmap_range(self.own_id) {
                for (w, off) in bitmap.step_by(8).enumerate() {
                    // A cheap load first: most words are empty, and a swap is a locked RMW.
                    match self.region.load_u64(off, Ordering::Relaxed) {
                        Ok(0) | Err(_) => continue,
                        Ok(_) => {}
                    }
                    let Ok(mut bits) = self.region.swap_u64(off, 0, Ordering::AcqRel) else {
                        continue;
                    };
                    while bits != 0 {
                        let bit = bits.trailing_zeros();
                        bits &= bits - 1;
                        let slot = w * 64 + bit as usize;
                        if matches!(st.slots.get(slot), Some(Slot::Used(_))) {
                            // `slot < slots_per_peer`, fits u32.
                            events.push(IsmEvent::DmbSignalled { index: slot as u32 });
                        } else {
                            st.stats.spurious_signals += 1;
                        }
                    }
                }
            }
            let current = server_epoch_offset()
                .and_then(|off| self.region.load_u64(off, Ordering::Acquire).ok())
                .map(u64::from_le);
            if current != st.server_epoch_seen {
                self.rescan_directory(&mut st, &mut |e| events.push(e));
            }
        }
        for event in events {
            sink(event);
        }
    }
}
