//! QEMU's side of the ivshmem protocol (a fake client) and a region directory reader.
//!
//! Used by the tests and by `ivshmem-probe`. The handshake follows protocol reference
//! §7.2 strictly: version 0, own ID, `-1` with the shared-memory fd, then peer fds, then
//! exactly `vectors` messages carrying the own ID with an fd.

use std::collections::BTreeMap;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ivshmem_region::{Gid, Header, Layout, PeerEntry, PeerEntryRepr, PeerState, HEADER_SIZE};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::proto::{recv_message, Message, RecvError, PROTOCOL_VERSION, SHM_MESSAGE};

/// One message as seen on the wire: value and whether an fd was attached.
pub type WireMessage = (i64, bool);

/// What a client learned from the connect sequence.
#[derive(Debug)]
pub struct Handshake {
    /// Own peer ID.
    pub id: u16,
    /// The shared-memory fd.
    pub shm: OwnedFd,
    /// Eventfds to interrupt each existing peer, per vector.
    pub peers: BTreeMap<u16, Vec<OwnedFd>>,
    /// Own eventfds (this client is interrupted through them), per vector.
    pub own: Vec<OwnedFd>,
    /// Every message of the sequence in order.
    pub sequence: Vec<WireMessage>,
}

/// A protocol violation or I/O failure during the handshake.
#[derive(Debug)]
pub enum HandshakeError {
    /// Receiving failed (EOF, timeout, ...).
    Recv(RecvError),
    /// The server sent something QEMU would reject.
    Protocol(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Recv(e) => write!(f, "{e}"),
            HandshakeError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<RecvError> for HandshakeError {
    fn from(e: RecvError) -> Self {
        HandshakeError::Recv(e)
    }
}

/// A connected client.
#[derive(Debug)]
pub struct Client {
    socket: UnixStream,
}

impl Client {
    /// Connects to the server socket.
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        Ok(Client {
            socket: UnixStream::connect(path)?,
        })
    }

    /// The socket.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The underlying stream (e.g. to misbehave in tests: QEMU never writes).
    pub fn stream(&self) -> &UnixStream {
        &self.socket
    }

    /// Receives one message within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Message, RecvError> {
        recv_message(self.socket.as_fd(), timeout)
    }

    /// Runs the connect sequence for a client with `vectors` vectors, within `timeout`.
    pub fn handshake(
        &self,
        vectors: usize,
        timeout: Duration,
    ) -> Result<Handshake, HandshakeError> {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut sequence = Vec::new();
        let version = self.recv(left())?;
        sequence.push((version.value, version.fd.is_some()));
        if version.value != PROTOCOL_VERSION || version.fd.is_some() {
            return Err(HandshakeError::Protocol(format!(
                "bad version message {:?}",
                sequence[0]
            )));
        }
        let own = self.recv(left())?;
        sequence.push((own.value, own.fd.is_some()));
        let id = u16::try_from(own.value)
            .ok()
            .filter(|_| own.fd.is_none())
            .ok_or_else(|| {
                HandshakeError::Protocol(format!("bad own-ID message {:?}", sequence[1]))
            })?;
        let shm = self.recv(left())?;
        sequence.push((shm.value, shm.fd.is_some()));
        let shm = match (shm.value, shm.fd) {
            (SHM_MESSAGE, Some(fd)) => fd,
            _ => {
                return Err(HandshakeError::Protocol(format!(
                    "bad shm message {:?}",
                    sequence[2]
                )))
            }
        };
        let mut peers: BTreeMap<u16, Vec<OwnedFd>> = BTreeMap::new();
        let mut own_fds = Vec::new();
        while own_fds.len() < vectors {
            let msg = self.recv(left())?;
            sequence.push((msg.value, msg.fd.is_some()));
            let peer = u16::try_from(msg.value)
                .map_err(|_| HandshakeError::Protocol(format!("bad peer ID {}", msg.value)))?;
            let fd = msg.fd.ok_or_else(|| {
                HandshakeError::Protocol(format!("peer {peer} left during handshake"))
            })?;
            if peer == id {
                own_fds.push(fd);
            } else if !own_fds.is_empty() {
                return Err(HandshakeError::Protocol(format!(
                    "peer {peer} fd among own fds"
                )));
            } else {
                peers.entry(peer).or_default().push(fd);
            }
        }
        Ok(Handshake {
            id,
            shm,
            peers,
            own: own_fds,
            sequence,
        })
    }
}

/// A snapshot of the region's header and directory, read with `pread` from the shm fd.
#[derive(Debug, Clone)]
pub struct Directory {
    /// The validated layout.
    pub layout: Layout,
    /// The header's server epoch.
    pub server_epoch: u64,
    /// Vectors recorded in the header.
    pub vectors: u32,
    /// The region id.
    pub region_id: [u8; 16],
    /// Each entry (`None` if the entry was being rewritten or is malformed).
    pub entries: Vec<Option<PeerEntryRepr>>,
    /// Raw bitmap word 0 of each entry.
    pub bitmap0: Vec<u64>,
}

impl Directory {
    /// Reads and validates header and directory from a region fd.
    pub fn read(shm: BorrowedFd<'_>) -> Result<Directory, String> {
        let file = File::from(shm.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?);
        let size = file.metadata().map_err(|e| format!("fstat: {e}"))?.len();
        let size = usize::try_from(size).map_err(|_| "region too large".to_string())?;
        let mut page = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut page, 0)
            .map_err(|e| format!("read header: {e}"))?;
        let header = Header::new_checked(&page[..]).map_err(|e| e.to_string())?;
        let layout = Layout::from_header(&header, size).map_err(|e| e.to_string())?;
        let mut metadata = vec![0u8; layout.data_offset()];
        file.read_exact_at(&mut metadata, 0)
            .map_err(|e| format!("read directory: {e}"))?;
        let mut entries = Vec::new();
        let mut bitmap0 = Vec::new();
        for peer in 0..layout.max_peers() {
            let range = layout.peer_entry_range(peer).ok_or("entry out of range")?;
            let entry = PeerEntry::new_checked(&metadata[range], &layout).ok_or("short entry")?;
            entries.push(entry.parse());
            bitmap0.push(entry.bitmap_word(0, &layout).unwrap_or(0));
        }
        Ok(Directory {
            layout,
            server_epoch: header.server_epoch(),
            vectors: header.vectors(),
            region_id: header.region_id(),
            entries,
            bitmap0,
        })
    }
}

/// Why a directory entry could not be read from a [`MappedRegion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// No such peer ID in the layout.
    NoSuchPeer,
    /// The epoch stayed odd or kept moving for every retry (the server is busy).
    Busy,
    /// A stable snapshot that breaks the write rules (unknown state, or state and epoch
    /// disagree): someone other than the server wrote the entry.
    Corrupt,
}

/// A shared mapping of the region read the way a guest does: 64-bit atomic loads and
/// the directory seqlock (see the `ivshmem_region` crate docs).
pub struct MappedRegion {
    map: NonNull<u8>,
    layout: Layout,
}

impl std::fmt::Debug for MappedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedRegion")
            .field("layout", &self.layout)
            .finish()
    }
}

/// Retries of one seqlock read before giving up with [`EntryError::Busy`].
pub const SEQLOCK_RETRIES: usize = 10_000;

impl MappedRegion {
    /// Maps the region behind `shm` and validates its header.
    pub fn map(shm: BorrowedFd<'_>) -> Result<MappedRegion, String> {
        let layout = Directory::read(shm)?.layout;
        let len = NonZeroUsize::new(layout.region_size()).ok_or("empty region")?;
        // SAFETY: a new shared mapping of the region file at a kernel-chosen address; it
        // aliases no Rust object and lives until `Drop` unmaps it.
        let map = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                shm,
                0,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(MappedRegion {
            map: map.cast(),
            layout,
        })
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Loads the aligned 64-bit word at `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is misaligned or the word is outside the region.
    pub fn load(&self, offset: usize, order: Ordering) -> u64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.layout.region_size(),
            "region word offset {offset} misaligned or out of range"
        );
        // SAFETY: the mapping covers `region_size` bytes and outlives `&self`; the word
        // is 8-aligned and inside it (asserted). Every process touches these words only
        // with atomic or volatile 8-byte accesses.
        let word = unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(offset).cast::<u64>()) };
        u64::from_le(word.load(order))
    }

    /// The header's server epoch.
    pub fn server_epoch(&self) -> u64 {
        self.load(
            ivshmem_region::header::SERVER_EPOCH.start,
            Ordering::Acquire,
        )
    }

    /// Reads `peer`'s entry under the seqlock.
    pub fn read_entry(&self, peer: u32) -> Result<PeerEntryRepr, EntryError> {
        let layout = &self.layout;
        let epoch_offset = layout
            .peer_epoch_offset(peer)
            .ok_or(EntryError::NoSuchPeer)?;
        let state_offset = layout
            .peer_state_offset(peer)
            .ok_or(EntryError::NoSuchPeer)?;
        let (gid_offset, gid_ext_offset) = layout
            .peer_gid_offsets(peer)
            .ok_or(EntryError::NoSuchPeer)?;
        for _ in 0..SEQLOCK_RETRIES {
            let before = self.load(epoch_offset, Ordering::Acquire);
            if !before.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let state = self.load(state_offset, Ordering::Relaxed);
            let gid = Gid {
                gid: self.load(gid_offset, Ordering::Relaxed),
                gid_ext: self.load(gid_ext_offset, Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.load(epoch_offset, Ordering::Relaxed) != before {
                std::hint::spin_loop();
                continue;
            }
            let state = PeerState::from_u64(state).ok_or(EntryError::Corrupt)?;
            let repr = PeerEntryRepr {
                state,
                epoch: before,
                gid,
            };
            return if repr.is_consistent() {
                Ok(repr)
            } else {
                Err(EntryError::Corrupt)
            };
        }
        Err(EntryError::Busy)
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: `map` is the live mapping of `region_size` bytes made in `map`; no
        // reference into it outlives `self`.
        let _ = unsafe { munmap(self.map.cast(), self.layout.region_size()) };
    }
}
