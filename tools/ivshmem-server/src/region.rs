//! The shared region on the server side: creation, formatting and directory updates.
//!
//! The region is created and formatted (header + directory, `ivshmem-region`) before the
//! socket exists. Afterwards the server changes only directory entries and the header's
//! `server_epoch`, through 64-bit atomics on a `MAP_SHARED` mapping, following the
//! seqlock rules documented in `ivshmem_region`. The server never reads shared memory
//! back: guests may scribble anywhere, so epochs and GIDs live in private memory and are
//! only *written* to the region.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use ivshmem_region::{format_metadata, Gid, Layout, PeerState};
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::stat::Mode;

/// Where the region's memory comes from.
#[derive(Debug, Clone)]
pub enum Backing<'a> {
    /// An anonymous `memfd` (default).
    Memfd,
    /// A POSIX shared-memory object (`-M NAME`): an old object of that name is unlinked
    /// and a fresh one created; it is kept after exit.
    PosixShm(&'a str),
    /// A file created in a directory and unlinked at once (`-m DIR`).
    Directory(&'a Path),
}

/// A created, formatted and mapped region.
pub struct Region {
    file: File,
    map: NonNull<u8>,
    layout: Layout,
    /// Private copies of what the server last wrote (never read back from shared memory).
    epochs: Vec<u64>,
    server_epoch: u64,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("layout", &self.layout)
            .field("server_epoch", &self.server_epoch)
            .finish()
    }
}

fn io_err(context: String, err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{context}: {err}"))
}

impl Region {
    /// Creates the backing memory of `layout.region_size()` bytes, formats header and
    /// directory with `region_id`, and maps it shared.
    pub fn create(
        backing: Backing<'_>,
        layout: Layout,
        region_id: [u8; 16],
        vectors: u32,
    ) -> std::io::Result<Region> {
        let fd: OwnedFd = match backing {
            Backing::Memfd => {
                nix::sys::memfd::memfd_create(c"ivshmem", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                    .map_err(|e| io_err("memfd_create".into(), e))?
            }
            Backing::PosixShm(name) => {
                // Always a fresh object: unlinking an old one of the same name never
                // disturbs a process still mapping it (truncating it would).
                match shm_unlink(name) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::ENOENT) => {}
                    Err(e) => return Err(io_err(format!("shm_unlink({name})"), e)),
                }
                shm_open(
                    name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(|e| io_err(format!("shm_open({name})"), e))?
            }
            Backing::Directory(dir) => {
                let template = dir.join("ivshmem.XXXXXX");
                let (fd, path) = nix::unistd::mkstemp(&template)
                    .map_err(|e| io_err(format!("cannot create a file in {}", dir.display()), e))?;
                nix::unistd::unlink(&path)
                    .map_err(|e| io_err(format!("unlink {}", path.display()), e))?;
                fd
            }
        };
        let file = File::from(fd);
        let size = layout.region_size();
        file.set_len(size as u64)
            .map_err(|e| io_err(format!("cannot size the region to {size} bytes"), e))?;
        let mut metadata = vec![0u8; layout.data_offset()];
        format_metadata(&mut metadata, &layout, region_id, vectors);
        file.write_all_at(&metadata, 0)
            .map_err(|e| io_err("cannot write the region header".into(), e))?;
        let length = NonZeroUsize::new(size).ok_or_else(|| io_err("region".into(), "size 0"))?;
        // SAFETY: a fresh shared mapping of our own file at a kernel-chosen address; it
        // aliases no Rust object. It stays valid until `Drop` unmaps it.
        let map = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file,
                0,
            )
        }
        .map_err(|e| io_err("mmap of the region".into(), e))?;
        Ok(Region {
            file,
            map: map.cast(),
            layout,
            epochs: vec![0; layout.max_peers() as usize],
            server_epoch: 0,
        })
    }

    /// The region's file descriptor (sent to clients).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The layout the region was formatted with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The server epoch last written.
    pub fn server_epoch(&self) -> u64 {
        self.server_epoch
    }

    /// The directory epoch last written for `peer`.
    pub fn peer_epoch(&self, peer: u32) -> u64 {
        self.epochs.get(peer as usize).copied().unwrap_or(0)
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.layout.region_size(),
            "region word offset {offset} misaligned or out of range"
        );
        // SAFETY: the mapping is `region_size` bytes long, page-aligned, and alive while
        // `self` is; `offset` is 8-aligned and the word lies inside it (asserted above).
        // Other processes access these words only with atomic (or volatile) 8-byte
        // operations, which is what `AtomicU64` requires of concurrent accessors.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(offset).cast::<u64>()) }
    }

    fn store(&self, offset: usize, value: u64, order: Ordering) {
        self.word(offset).store(value, order);
    }

    fn zero_words(&self, range: std::ops::Range<usize>) {
        for offset in range.step_by(8) {
            self.store(offset, 0, Ordering::Relaxed);
        }
    }

    /// Marks `peer` active with `gid`: clears its signal bitmap and the descriptor
    /// table of its area (left over from an earlier holder of the ID), then bumps its
    /// epoch and the server epoch (seqlock order from `ivshmem_region`).
    ///
    /// # Panics
    ///
    /// If `peer` is not below `max_peers` (the server only assigns IDs below it).
    pub fn mark_joined(&mut self, peer: u32, gid: Gid) {
        let layout = self.layout;
        let epoch_offset = layout
            .peer_epoch_offset(peer)
            .expect("peer ID below max_peers");
        let epoch = self.epochs[peer as usize];
        self.store(epoch_offset, epoch + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let (gid_offset, gid_ext_offset) = layout.peer_gid_offsets(peer).expect("peer ID");
        self.store(gid_offset, gid.gid, Ordering::Relaxed);
        self.store(gid_ext_offset, gid.gid_ext, Ordering::Relaxed);
        self.zero_words(layout.bitmap_range(peer).expect("peer ID"));
        self.zero_words(layout.descriptor_table(peer).expect("peer ID"));
        let state_offset = layout.peer_state_offset(peer).expect("peer ID");
        self.store(state_offset, PeerState::Active as u64, Ordering::Relaxed);
        self.store(epoch_offset, epoch + 2, Ordering::Release);
        self.epochs[peer as usize] = epoch + 2;
        self.bump_server_epoch();
    }

    /// Marks `peer` dead and bumps its epoch and the server epoch.
    ///
    /// # Panics
    ///
    /// If `peer` is not below `max_peers`.
    pub fn mark_dead(&mut self, peer: u32) {
        let layout = self.layout;
        let epoch_offset = layout
            .peer_epoch_offset(peer)
            .expect("peer ID below max_peers");
        let epoch = self.epochs[peer as usize];
        self.store(epoch_offset, epoch + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let state_offset = layout.peer_state_offset(peer).expect("peer ID");
        self.store(state_offset, PeerState::Dead as u64, Ordering::Relaxed);
        self.store(epoch_offset, epoch + 2, Ordering::Release);
        self.epochs[peer as usize] = epoch + 2;
        self.bump_server_epoch();
    }

    fn bump_server_epoch(&mut self) {
        self.server_epoch += 1;
        self.store(
            ivshmem_region::header::SERVER_EPOCH.start,
            self.server_epoch,
            Ordering::Release,
        );
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `map` is the live mapping of `region_size` bytes created in `create`;
        // no reference into it outlives `self` (`word` borrows `self`).
        let _ = unsafe { munmap(self.map.cast(), self.layout.region_size()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivshmem_region::{LayoutParams, PeerEntry};

    fn read(region: &Region, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut buf = vec![0u8; range.len()];
        region
            .file
            .read_exact_at(&mut buf, range.start as u64)
            .unwrap();
        buf
    }

    #[test]
    fn join_clears_stale_state_and_follows_seqlock_epochs() {
        let layout = Layout::compute(LayoutParams {
            region_size: 1 << 20,
            max_peers: 4,
            slots_per_peer: 128,
        })
        .unwrap();
        let mut region = Region::create(Backing::Memfd, layout, [7; 16], 2).unwrap();
        assert_eq!(region.file.metadata().unwrap().len(), 1 << 20);
        let header = read(&region, 0..ivshmem_region::HEADER_SIZE);
        let parsed = ivshmem_region::Header::new_checked(&header[..]).unwrap();
        assert_eq!(Layout::from_header(&parsed, 1 << 20), Ok(layout));
        assert_eq!(parsed.region_id(), [7; 16]);

        // Junk left by an earlier holder of ID 2 (or a hostile peer).
        let bitmap = layout.bitmap_range(2).unwrap();
        let table = layout.descriptor_table(2).unwrap();
        region
            .file
            .write_all_at(&vec![0xff; bitmap.len()], bitmap.start as u64)
            .unwrap();
        region
            .file
            .write_all_at(&vec![0xee; table.len()], table.start as u64)
            .unwrap();
        let payload = layout.area_payload(2).unwrap();
        region
            .file
            .write_all_at(b"payload", payload.start as u64)
            .unwrap();

        let gid = Gid {
            gid: 0x1111,
            gid_ext: 0x2222,
        };
        region.mark_joined(2, gid);
        assert!(read(&region, bitmap.clone()).iter().all(|&b| b == 0));
        assert!(read(&region, table.clone()).iter().all(|&b| b == 0));
        assert_eq!(
            read(&region, payload.start..payload.start + 7),
            b"payload",
            "DMB bytes untouched"
        );
        let entry_bytes = read(&region, layout.peer_entry_range(2).unwrap());
        let entry = PeerEntry::new_checked(&entry_bytes[..], &layout)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            (entry.state, entry.epoch, entry.gid),
            (PeerState::Active, 2, gid)
        );
        assert_eq!(region.server_epoch(), 1);

        region.mark_dead(2);
        let entry_bytes = read(&region, layout.peer_entry_range(2).unwrap());
        let entry = PeerEntry::new_checked(&entry_bytes[..], &layout)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            (entry.state, entry.epoch, entry.gid),
            (PeerState::Dead, 4, gid)
        );
        let header = read(&region, 0..ivshmem_region::HEADER_SIZE);
        assert_eq!(
            ivshmem_region::Header::new_checked(&header[..])
                .unwrap()
                .server_epoch(),
            2
        );

        // A guest scribbling over the epoch does not derail the server's counter.
        let epoch_offset = layout.peer_epoch_offset(2).unwrap();
        region
            .file
            .write_all_at(&999u64.to_le_bytes(), epoch_offset as u64)
            .unwrap();
        region.mark_joined(2, Gid { gid: 3, gid_ext: 4 });
        let entry_bytes = read(&region, layout.peer_entry_range(2).unwrap());
        let entry = PeerEntry::new_checked(&entry_bytes[..], &layout)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((entry.state, entry.epoch), (PeerState::Active, 6));
        // Other entries stay free.
        for peer in [0, 1, 3] {
            let bytes = read(&region, layout.peer_entry_range(peer).unwrap());
            let other = PeerEntry::new_checked(&bytes[..], &layout)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!((other.state, other.epoch), (PeerState::Free, 0));
        }
    }
}
