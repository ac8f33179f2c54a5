//! The loopback ISM device: DMBs on the heap, reachable within one image.
//!
//! Modelled on Linux loopback-ism (`net/smc/smc_loopback.c`, protocol-reference §6.2):
//! CHID `0xFFFF`, a random 128-bit GID (a UUID v4), zeroed DMBs, 64-bit random tokens
//! re-drawn until unique, a configurable maximum number of DMBs, `move_data` that copies
//! into the DMB found by token, signals queued for the owner, and no-copy
//! `attach_dmb`/`detach_dmb` that hand out the very same memory with a reference count.
//!
//! Two modes:
//!
//! - **Linux-like:** [`LoopbackIsm::new`] creates a device alone on its own fabric; it can
//!   only reach itself (`query_remote_gid` is true for its own GID only), so both ends of
//!   a connection use the same GID, as with Linux loopback-ism.
//! - **Fabric:** [`LoopbackFabric::device`] creates several devices with distinct GIDs
//!   that reach each other (e.g. two simulated hosts in one test process). Removing a
//!   device ([`LoopbackFabric::remove`] or dropping it) unregisters its DMBs and queues
//!   [`IsmEvent::PeerGone`] on every other device.
//!
//! Randomness comes from ChaCha20 generators seeded by the caller (no globals, no OS
//! RNG): the kernel seeds from a hardware source; tests pass fixed seeds.
//!
//! Stricter than hardware, to catch protocol bugs: only the remote GID a DMB was
//! registered for may write into it or attach it; every access is bounds-checked; a
//! token of an unregistered DMB is rejected at once.
//!
//! Unregistering a DMB that a peer still has attached: the token becomes invalid at
//! once (`move_data` and `attach_dmb` fail with [`IsmError::InvalidToken`], the index
//! may be reused), while the memory stays alive for the attached handles until their
//! last `detach_dmb` (which still succeeds). Such DMBs are counted by
//! [`LoopbackFabric::orphaned_dmbs`] until then.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::ism::{Dmb, DmbToken, Gid, IsmDevice, IsmError, IsmEvent, CHID_LOOPBACK};
use crate::shm::{check_range, HeapMemory, SharedMemory};

/// Linux loopback-ism's DMB limit (an index bitmap of 5000 entries).
pub const DEFAULT_MAX_DMBS: u32 = 5000;

/// Largest DMB the loopback device registers: 1 MiB, the SMC-D maximum (§4.1).
pub const MAX_DMB_LEN: usize = 1 << 20;

/// Per-device limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopbackConfig {
    /// How many DMBs may be registered at once; one more is [`IsmError::NoSpace`].
    pub max_dmbs: u32,
    /// Largest DMB length accepted by `register_dmb`.
    pub max_dmb_len: usize,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        LoopbackConfig {
            max_dmbs: DEFAULT_MAX_DMBS,
            max_dmb_len: MAX_DMB_LEN,
        }
    }
}

struct DmbEntry {
    owner: Gid,
    remote: Gid,
    index: u32,
    memory: Arc<HeapMemory>,
    attached: u32,
}

struct DeviceState {
    config: LoopbackConfig,
    used_indices: BTreeSet<u32>,
    registered: usize,
    pending_signals: VecDeque<u32>,
    pending_set: BTreeSet<u32>,
    events: VecDeque<IsmEvent>,
}

struct Fabric {
    token_rng: ChaCha20Rng,
    devices: BTreeMap<Gid, DeviceState>,
    /// Registered DMBs by token.
    dmbs: BTreeMap<u64, DmbEntry>,
    /// Unregistered DMBs still attached by a peer, by token.
    orphans: BTreeMap<u64, DmbEntry>,
}

impl Fabric {
    fn draw_token(&mut self) -> u64 {
        loop {
            let t = self.token_rng.next_u64();
            if t != 0 && !self.dmbs.contains_key(&t) && !self.orphans.contains_key(&t) {
                return t;
            }
        }
    }

    fn drop_dmb(&mut self, token: u64, entry: DmbEntry) {
        if let Some(dev) = self.devices.get_mut(&entry.owner) {
            dev.used_indices.remove(&entry.index);
            dev.registered -= 1;
            if dev.pending_set.remove(&entry.index) {
                dev.pending_signals.retain(|i| *i != entry.index);
            }
        }
        if entry.attached > 0 {
            self.orphans.insert(token, entry);
        }
    }

    fn remove_device(&mut self, gid: Gid) -> bool {
        if self.devices.remove(&gid).is_none() {
            return false;
        }
        let owned: Vec<u64> = self
            .dmbs
            .iter()
            .filter(|(_, e)| e.owner == gid)
            .map(|(t, _)| *t)
            .collect();
        for token in owned {
            if let Some(entry) = self.dmbs.remove(&token) {
                self.drop_dmb(token, entry);
            }
        }
        for dev in self.devices.values_mut() {
            dev.events.push_back(IsmEvent::PeerGone { gid });
        }
        log::debug!("loopback: device {gid:x?} removed");
        true
    }
}

/// A set of loopback devices that can reach each other. Cloning shares the fabric.
#[derive(Clone)]
pub struct LoopbackFabric {
    inner: Arc<spin::Mutex<Fabric>>,
}

impl LoopbackFabric {
    /// An empty fabric whose DMB tokens come from a ChaCha20 generator seeded with
    /// `seed` (expanded from 64 bits).
    pub fn new(seed: u64) -> LoopbackFabric {
        LoopbackFabric::from_rng(ChaCha20Rng::seed_from_u64(seed))
    }

    /// An empty fabric with a full 256-bit token-generator seed.
    pub fn from_seed(seed: [u8; 32]) -> LoopbackFabric {
        LoopbackFabric::from_rng(ChaCha20Rng::from_seed(seed))
    }

    fn from_rng(token_rng: ChaCha20Rng) -> LoopbackFabric {
        LoopbackFabric {
            inner: Arc::new(spin::Mutex::new(Fabric {
                token_rng,
                devices: BTreeMap::new(),
                dmbs: BTreeMap::new(),
                orphans: BTreeMap::new(),
            })),
        }
    }

    /// A new device on this fabric with default limits and a GID derived from `seed`.
    pub fn device(&self, seed: u64) -> LoopbackIsm {
        self.device_with(seed, LoopbackConfig::default())
    }

    /// A new device with explicit limits. Its GID is a UUID v4 drawn from a ChaCha20
    /// generator seeded with `seed`, re-drawn while it collides with a device already
    /// on the fabric.
    pub fn device_with(&self, seed: u64, config: LoopbackConfig) -> LoopbackIsm {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut fabric = self.inner.lock();
        let gid = loop {
            let gid = uuid_v4_gid(&mut rng);
            if !fabric.devices.contains_key(&gid) {
                break gid;
            }
        };
        fabric.devices.insert(
            gid,
            DeviceState {
                config,
                used_indices: BTreeSet::new(),
                registered: 0,
                pending_signals: VecDeque::new(),
                pending_set: BTreeSet::new(),
                events: VecDeque::new(),
            },
        );
        drop(fabric);
        LoopbackIsm {
            fabric: self.clone(),
            gid,
        }
    }

    /// Removes the device `gid` (as if its VM died): its DMBs are unregistered and every
    /// other device gets [`IsmEvent::PeerGone`]. False if no such device.
    pub fn remove(&self, gid: Gid) -> bool {
        self.inner.lock().remove_device(gid)
    }

    /// Number of devices on the fabric.
    pub fn device_count(&self) -> usize {
        self.inner.lock().devices.len()
    }

    /// DMBs registered on all devices of the fabric (for leak checks).
    pub fn registered_dmbs(&self) -> usize {
        self.inner.lock().dmbs.len()
    }

    /// Unregistered DMBs that a peer still has attached (for leak checks).
    pub fn orphaned_dmbs(&self) -> usize {
        self.inner.lock().orphans.len()
    }

    /// Outstanding no-copy attachments over all DMBs (for leak checks).
    pub fn attached_refs(&self) -> u64 {
        let fabric = self.inner.lock();
        fabric
            .dmbs
            .values()
            .chain(fabric.orphans.values())
            .map(|e| u64::from(e.attached))
            .sum()
    }
}

fn uuid_v4_gid(rng: &mut ChaCha20Rng) -> Gid {
    let mut uuid = [0u8; 16];
    rng.fill_bytes(&mut uuid);
    uuid[6] = (uuid[6] & 0x0F) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3F) | 0x80; // RFC 4122 variant
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&uuid[..8]);
    lo.copy_from_slice(&uuid[8..]);
    // §6.1: UUID bytes 0–7 read as BE = gid, bytes 8–15 as BE = gid_ext.
    Gid::virtual_(u64::from_be_bytes(hi), u64::from_be_bytes(lo))
}

/// One loopback ISM device. Dropping it removes it from its fabric.
pub struct LoopbackIsm {
    fabric: LoopbackFabric,
    gid: Gid,
}

impl LoopbackIsm {
    /// A Linux-like loopback device alone on its own fabric (reaches only itself),
    /// default limits, GID and tokens derived from `seed`.
    pub fn new(seed: u64) -> LoopbackIsm {
        LoopbackIsm::with_config(seed, LoopbackConfig::default())
    }

    /// A device alone on its own fabric, with explicit limits.
    pub fn with_config(seed: u64, config: LoopbackConfig) -> LoopbackIsm {
        // Distinct streams for tokens and the GID, both from the caller's seed.
        LoopbackFabric::new(seed ^ 0x736d_6364_746f_6b6e).device_with(seed, config)
    }

    /// The fabric this device sits on.
    pub fn fabric(&self) -> &LoopbackFabric {
        &self.fabric
    }

    /// DMBs currently registered on this device (for leak checks).
    pub fn registered_dmbs(&self) -> usize {
        self.fabric
            .inner
            .lock()
            .devices
            .get(&self.gid)
            .map_or(0, |d| d.registered)
    }

    /// Whether this device is still on its fabric.
    pub fn is_present(&self) -> bool {
        self.fabric.inner.lock().devices.contains_key(&self.gid)
    }
}

impl Drop for LoopbackIsm {
    fn drop(&mut self) {
        self.fabric.inner.lock().remove_device(self.gid);
    }
}

impl IsmDevice for LoopbackIsm {
    type Memory = Arc<HeapMemory>;

    fn local_gid(&self) -> Gid {
        self.gid
    }

    fn chid(&self) -> u16 {
        CHID_LOOPBACK
    }

    fn supports_v2(&self) -> bool {
        true
    }

    fn query_remote_gid(&self, remote: Gid, _vlan: Option<u16>) -> bool {
        let fabric = self.fabric.inner.lock();
        fabric.devices.contains_key(&self.gid) && fabric.devices.contains_key(&remote)
    }

    fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<Self::Memory>, IsmError> {
        let mut fabric = self.fabric.inner.lock();
        let dev = fabric.devices.get(&self.gid).ok_or(IsmError::DeviceError)?;
        if len == 0 || len > dev.config.max_dmb_len {
            return Err(IsmError::InvalidArgument);
        }
        if dev.registered >= dev.config.max_dmbs as usize {
            return Err(IsmError::NoSpace);
        }
        let index = (0..dev.config.max_dmbs)
            .find(|i| !dev.used_indices.contains(i))
            .ok_or(IsmError::NoSpace)?;
        let token = fabric.draw_token();
        let memory = Arc::new(HeapMemory::new(len));
        let dev = fabric
            .devices
            .get_mut(&self.gid)
            .ok_or(IsmError::DeviceError)?;
        dev.used_indices.insert(index);
        dev.registered += 1;
        fabric.dmbs.insert(
            token,
            DmbEntry {
                owner: self.gid,
                remote,
                index,
                memory: memory.clone(),
                attached: 0,
            },
        );
        Ok(Dmb {
            token: DmbToken(token),
            index,
            memory,
        })
    }

    fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        let mut fabric = self.fabric.inner.lock();
        match fabric.dmbs.get(&token.0) {
            Some(e) if e.owner == self.gid => {}
            _ => return Err(IsmError::InvalidToken),
        }
        let entry = fabric.dmbs.remove(&token.0).ok_or(IsmError::InvalidToken)?;
        fabric.drop_dmb(token.0, entry);
        Ok(())
    }

    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), IsmError> {
        let mut fabric = self.fabric.inner.lock();
        if !fabric.devices.contains_key(&self.gid) {
            return Err(IsmError::DeviceError);
        }
        let entry = match fabric.dmbs.get(&token.0) {
            Some(e) if e.remote == self.gid => e,
            _ => return Err(IsmError::InvalidToken),
        };
        let memory = &entry.memory;
        check_range(offset, data.len(), memory.len()).map_err(|_| IsmError::OutOfBounds)?;
        // `HeapMemory::write` copies under the region's lock, so a reader's 64-bit load
        // never sees half of a cursor block: stronger than the aligned 64-bit stores
        // the CDC reader relies on (§4.3).
        memory
            .write(offset, data)
            .map_err(|_| IsmError::OutOfBounds)?;
        if signal {
            let (owner, index) = (entry.owner, entry.index);
            if let Some(dev) = fabric.devices.get_mut(&owner) {
                // Signals for one DMB coalesce until the owner polls, like interrupts.
                if dev.pending_set.insert(index) {
                    dev.pending_signals.push_back(index);
                }
            }
        }
        Ok(())
    }

    fn supports_nocopy(&self) -> bool {
        true
    }

    fn attach_dmb(&self, token: DmbToken) -> Result<Self::Memory, IsmError> {
        let mut fabric = self.fabric.inner.lock();
        if !fabric.devices.contains_key(&self.gid) {
            return Err(IsmError::DeviceError);
        }
        match fabric.dmbs.get_mut(&token.0) {
            Some(e) if e.remote == self.gid => {
                e.attached += 1;
                Ok(e.memory.clone())
            }
            _ => Err(IsmError::InvalidToken),
        }
    }

    fn detach_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        let mut fabric = self.fabric.inner.lock();
        if let Some(e) = fabric.dmbs.get_mut(&token.0) {
            if e.remote == self.gid && e.attached > 0 {
                e.attached -= 1;
                return Ok(());
            }
            return Err(IsmError::InvalidToken);
        }
        match fabric.orphans.get_mut(&token.0) {
            Some(e) if e.remote == self.gid && e.attached > 0 => {
                e.attached -= 1;
                if e.attached == 0 {
                    fabric.orphans.remove(&token.0);
                }
                Ok(())
            }
            _ => Err(IsmError::InvalidToken),
        }
    }

    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent)) {
        // Collect under the lock, deliver after releasing it: the sink may call back
        // into the device.
        let events: Vec<IsmEvent> = {
            let mut fabric = self.fabric.inner.lock();
            let Some(dev) = fabric.devices.get_mut(&self.gid) else {
                return;
            };
            dev.pending_set.clear();
            dev.pending_signals
                .drain(..)
                .map(|index| IsmEvent::DmbSignalled { index })
                .chain(dev.events.drain(..))
                .collect()
        };
        for event in events {
            sink(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(dev: &LoopbackIsm) -> Vec<IsmEvent> {
        let mut v = Vec::new();
        dev.poll_events(&mut |e| v.push(e));
        v
    }

    #[test]
    fn gid_is_uuid_v4_and_linux_mode_reaches_only_itself() {
        let a = LoopbackIsm::new(1);
        let b = LoopbackIsm::new(2);
        let gid = a.local_gid();
        assert_eq!((gid.gid >> 12) & 0xF, 4, "UUID version nibble");
        assert_eq!(gid.gid_ext >> 62, 0b10, "UUID variant");
        assert_ne!(gid, b.local_gid());
        assert_eq!(
            LoopbackIsm::new(1).local_gid(),
            gid,
            "seeded, deterministic"
        );
        assert!(a.query_remote_gid(gid, None));
        assert!(!a.query_remote_gid(b.local_gid(), None));
        assert_eq!(a.chid(), 0xFFFF);
        assert!(a.supports_v2() && a.supports_nocopy());
    }

    #[test]
    fn signal_reaches_owner_and_coalesces() {
        let dev = LoopbackIsm::new(7);
        let me = dev.local_gid();
        let d0 = dev.register_dmb(64, me).unwrap();
        let d1 = dev.register_dmb(64, me).unwrap();
        assert_ne!(d0.index, d1.index);
        dev.move_data(d1.token, 32, b"hi", false).unwrap();
        assert_eq!(events(&dev), vec![]);
        dev.move_data(d1.token, 0, &[0xFE; 32], true).unwrap();
        dev.move_data(d0.token, 0, &[0xFE; 8], true).unwrap();
        dev.move_data(d1.token, 0, &[0xFE; 8], true).unwrap();
        assert_eq!(
            events(&dev),
            vec![
                IsmEvent::DmbSignalled { index: d1.index },
                IsmEvent::DmbSignalled { index: d0.index }
            ]
        );
        let mut b = [0u8; 2];
        d1.memory.read(32, &mut b).unwrap();
        assert_eq!(&b, b"hi");
    }
}
