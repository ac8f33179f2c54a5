//! Host fakes for the ivshmem ISM: a server that formats a [`FakeRegion`] and edits its
//! directory exactly as `ivshmem-region` prescribes, and a doorbell that records rings.
//!
//! With these, several [`super::IvshmemIsm`] "guests" run over one region in one process
//! (style practice 8: the fakes live in the tree). They follow the same seqlock rules
//! as the real server, so the device code under test cannot tell the difference.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use ivshmem_region::{format_metadata, Gid, Layout, LayoutError, LayoutParams, PeerState, VECTORS};
use smcd::shm::SharedMemory;

use super::ism::Doorbell;
use super::memory::FakeRegion;
use super::regs::{doorbell_value, DoorbellError};

/// A stand-in for `tools/ivshmem-server`'s region bookkeeping.
pub struct FakeServer {
    region: FakeRegion,
    layout: Layout,
}

impl FakeServer {
    /// Creates and formats a region for `params` with identity `region_id`.
    pub fn new(params: LayoutParams, region_id: [u8; 16]) -> Result<Self, LayoutError> {
        let layout = Layout::compute(params)?;
        let region = FakeRegion::new(layout.region_size());
        let mut meta = vec![0u8; layout.data_offset()];
        format_metadata(&mut meta, &layout, region_id, VECTORS);
        region
            .write(0, &meta)
            .expect("fake region holds its own metadata");
        Ok(FakeServer { region, layout })
    }

    /// A handle to the shared region (clones share the bytes).
    pub fn region(&self) -> FakeRegion {
        self.region.clone()
    }

    /// The layout the region was formatted with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn load(&self, off: usize) -> u64 {
        u64::from_le(
            self.region
                .load_u64(off, Ordering::Acquire)
                .expect("layout offset"),
        )
    }

    fn store(&self, off: usize, value: u64, order: Ordering) {
        self.region
            .store_u64(off, value.to_le(), order)
            .expect("layout offset");
    }

    /// Rewrites `peer`'s entry under its seqlock, then bumps the server epoch.
    fn rewrite(&self, peer: u32, state: PeerState, gid: Option<Gid>) {
        let epoch_off = self.layout.peer_epoch_offset(peer).expect("peer in layout");
        let epoch = self.load(epoch_off);
        self.store(epoch_off, epoch + 1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        if let Some(gid) = gid {
            let (g, gx) = self.layout.peer_gid_offsets(peer).expect("peer in layout");
            self.store(g, gid.gid, Ordering::Relaxed);
            self.store(gx, gid.gid_ext, Ordering::Relaxed);
            for off in self
                .layout
                .bitmap_range(peer)
                .expect("peer in layout")
                .step_by(8)
            {
                self.store(off, 0, Ordering::Relaxed);
            }
            let table = self.layout.descriptor_table(peer).expect("peer in layout");
            self.region
                .fill(table.start, table.len(), 0)
                .expect("layout range");
        }
        self.store(
            self.layout.peer_state_offset(peer).expect("peer in layout"),
            state as u64,
            Ordering::Relaxed,
        );
        self.store(epoch_off, epoch + 2, Ordering::Release);
        let se = ivshmem_region::header::SERVER_EPOCH.start;
        let server_epoch = self.load(se);
        self.store(se, server_epoch + 1, Ordering::Release);
    }

    /// A client got peer ID `peer`: zero its bitmap and descriptor table, publish `gid`
    /// and mark it active.
    pub fn join(&self, peer: u32, gid: Gid) {
        self.rewrite(peer, PeerState::Active, Some(gid));
    }

    /// The client with peer ID `peer` disconnected: mark the entry dead.
    pub fn leave(&self, peer: u32) {
        self.rewrite(peer, PeerState::Dead, None);
    }
}

/// One recorded doorbell write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Peer ID of the ringing device.
    pub from: u16,
    /// Destination peer ID.
    pub to: u16,
    /// Vector.
    pub vector: u16,
}

/// Shared log of every ring of a set of [`FakeDoorbell`]s.
#[derive(Clone, Default)]
pub struct RingLog {
    rings: Arc<spin::Mutex<Vec<Ring>>>,
}

impl RingLog {
    /// An empty log.
    pub fn new() -> Self {
        RingLog::default()
    }

    /// A doorbell for the device with peer ID `from`, recording into this log.
    pub fn doorbell(&self, from: u16) -> FakeDoorbell {
        FakeDoorbell {
            from,
            log: self.clone(),
        }
    }

    /// Every ring so far, in order.
    pub fn rings(&self) -> Vec<Ring> {
        self.rings.lock().clone()
    }

    /// Number of rings of `vector` addressed to `to`.
    pub fn count_to(&self, to: u16, vector: u16) -> usize {
        self.rings
            .lock()
            .iter()
            .filter(|r| r.to == to && r.vector == vector)
            .count()
    }
}

/// A doorbell that records rings instead of interrupting; as strict as the register
/// (vectors >= 256 are refused exactly like [`super::regs::Bar0::ring`]).
#[derive(Clone)]
pub struct FakeDoorbell {
    from: u16,
    log: RingLog,
}

impl Doorbell for FakeDoorbell {
    fn ring(&self, peer: u16, vector: u16) -> Result<(), DoorbellError> {
        doorbell_value(peer, vector)?;
        self.log.rings.lock().push(Ring {
            from: self.from,
            to: peer,
            vector,
        });
        Ok(())
    }
}
