//! SMC-D link groups: (device, peer GID) pairs, their DMB pools and their lifetime.
//!
//! An SMC-D link group is one local ISM device plus one peer GID (128 bits for virtual
//! devices); for SMC-Dv1 the VLAN must match too (protocol-reference §2.5, "First
//! contact and link groups"). Like Linux, groups are also separated by role: a group
//! this side created as client never serves connections it accepts as server. There
//! is no connection limit per group.
//!
//! The registry here holds no connections, only counts: the socket layer asks it for a
//! matching group (the first-contact decision), joins a connection to a group, takes
//! a DMB from the group's pool (a DMB freed by an earlier connection is reused after
//! being zeroed, otherwise one is registered with the device, §2.5) and gives it back
//! on close. DMBs are unregistered only when their group is freed:
//! - a group terminated by peer loss (`IsmEvent::PeerGone`, §5/§6.3) or by an
//!   out-of-sync Decline is freed as soon as its last connection is gone, and is never
//!   matched again;
//! - an unused group is freed after an idle time chosen by the caller (Linux: 600 s
//!   server, 610 s client; [`IDLE_FREE_SERVER`], [`IDLE_FREE_CLIENT`]); time is a
//!   parameter (a monotonic [`Duration`] since any origin), there is no clock.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use crate::ism::{Dmb, Gid, IsmDevice, IsmError};
use crate::shm::SharedMemory;

/// Linux frees an unused server link group after 600 s (`SMC_LGR_FREE_DELAY_SERV`).
pub const IDLE_FREE_SERVER: Duration = Duration::from_secs(600);
/// Linux frees an unused client link group after 610 s (`SMC_LGR_FREE_DELAY_CLNT`).
pub const IDLE_FREE_CLIENT: Duration = Duration::from_secs(610);

/// Which side of the handshake created a link group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// This side connected (sent the Proposal).
    Client,
    /// This side accepted (sent the Accept).
    Server,
}

/// What identifies a link group (§2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkGroupKey {
    /// Index of the local ISM device in the stack's device list.
    pub device: usize,
    /// The peer's GID (with `gid_ext` for virtual devices).
    pub peer: Gid,
    /// VLAN for SMC-Dv1; `None` for SMC-Dv2 (VLAN-agnostic).
    pub vlan: Option<u16>,
    /// Which role this side had when the group was created.
    pub role: Role,
}

/// Handle of a link group in a [`LinkGroups`] registry (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkGroupId(pub u32);

/// Why a link group was terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateReason {
    /// The device reported the peer GID gone (`IsmEvent::PeerGone`): no more CDCs may be
    /// written to it.
    PeerGone,
    /// The peer declined with the out-of-sync flag: it does not know this group.
    OutOfSync,
    /// The first connection of a new group failed its handshake.
    FirstContactFailed,
}

/// Lifecycle of a link group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// Usable for new connections.
    Active,
    /// Never matched again; freed once its last connection is gone.
    Terminated(TerminateReason),
}

/// One link group: its key, state, connection count and DMB pool.
pub struct LinkGroup<M> {
    key: LinkGroupKey,
    state: GroupState,
    conns: usize,
    idle_since: Option<Duration>,
    /// DMBs no connection uses, ready for reuse (registered for `key.peer`).
    pool: Vec<Dmb<M>>,
    /// DMBs currently handed out to connections.
    in_use: usize,
}

impl<M> core::fmt::Debug for LinkGroup<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkGroup")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("conns", &self.conns)
            .field("pooled_dmbs", &self.pool.len())
            .field("dmbs_in_use", &self.in_use)
            .finish()
    }
}

impl<M> LinkGroup<M> {
    /// The group's key.
    pub fn key(&self) -> LinkGroupKey {
        self.key
    }

    /// The group's state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Number of connections using the group.
    pub fn conns(&self) -> usize {
        self.conns
    }

    /// Free DMBs kept for reuse.
    pub fn pooled_dmbs(&self) -> usize {
        self.pool.len()
    }

    /// DMBs handed out to connections.
    pub fn dmbs_in_use(&self) -> usize {
        self.in_use
    }
}

/// Event counts of a registry (cumulative; the leak checks compare them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkGroupCounts {
    /// Groups created.
    pub created: u64,
    /// Connections that joined an existing group.
    pub reused: u64,
    /// Groups freed.
    pub freed: u64,
    /// Groups terminated.
    pub terminated: u64,
    /// DMBs registered with a device.
    pub dmbs_registered: u64,
    /// DMBs taken from a pool (zeroed) instead of registered.
    pub dmbs_reused: u64,
    /// DMBs unregistered.
    pub dmbs_freed: u64,
    /// Registrations the device refused with `NoSpace`.
    pub dmb_exhaustions: u64,
}

/// Why a registry operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkGroupError {
    /// No group with that id (already freed).
    UnknownGroup,
    /// The group is terminated and takes no new connections or DMBs.
    Terminated,
    /// The device index in the key has no device.
    NoDevice,
    /// The device refused (e.g. `NoSpace` → Decline `0x030d0000`).
    Device(IsmError),
}

impl core::fmt::Display for LinkGroupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkGroupError::UnknownGroup => f.write_str("unknown link group"),
            LinkGroupError::Terminated => f.write_str("link group is terminated"),
            LinkGroupError::NoDevice => f.write_str("no such ISM device"),
            LinkGroupError::Device(e) => write!(f, "ISM device: {e}"),
        }
    }
}

/// The registry of link groups of one stack, generic over its device type.
///
/// Operations that may unregister DMBs take the stack's device list; a group's DMBs
/// belong to `devices[key.device]`.
pub struct LinkGroups<D: IsmDevice> {
    groups: BTreeMap<LinkGroupId, LinkGroup<D::Memory>>,
    next_id: u32,
    counts: LinkGroupCounts,
}

impl<D: IsmDevice> Default for LinkGroups<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: IsmDevice> LinkGroups<D> {
    /// An empty registry.
    pub fn new() -> Self {
        LinkGroups {
            groups: BTreeMap::new(),
            next_id: 1,
            counts: LinkGroupCounts::default(),
        }
    }

    /// The active group matching `key`, newest first (Linux adds new groups at the
    /// head of its list). Terminated groups never match. This is the "do I have a
    /// group?" input of the first-contact decision (§2.5).
    pub fn find(&self, key: &LinkGroupKey) -> Option<LinkGroupId> {
        self.groups
            .iter()
            .rev()
            .find(|(_, g)| g.key == *key && g.state == GroupState::Active)
            .map(|(id, _)| *id)
    }

    /// Creates a new, empty, active group (first contact).
    pub fn create(&mut self, key: LinkGroupKey, now: Duration) -> LinkGroupId {
        let id = LinkGroupId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.groups.insert(
            id,
            LinkGroup {
                key,
                state: GroupState::Active,
                conns: 0,
                idle_since: Some(now),
                pool: Vec::new(),
                in_use: 0,
            },
        );
        self.counts.created += 1;
        log::debug!("link group {} created for {:?}", id.0, key);
        id
    }

    /// Adds one connection to an active group. `reused` says whether the connection
    /// found the group already there (counted as a reuse) or created it.
    pub fn join(&mut self, id: LinkGroupId, reused: bool) -> Result<(), LinkGroupError> {
        let group = self
            .groups
            .get_mut(&id)
            .ok_or(LinkGroupError::UnknownGroup)?;
        if group.state != GroupState::Active {
            return Err(LinkGroupError::Terminated);
        }
        group.conns += 1;
        group.idle_since = None;
        if reused {
            self.counts.reused += 1;
        }
        Ok(())
    }

    /// Takes a DMB of `len` bytes for a connection of group `id`: a pooled one of the
    /// same length (zeroed first, §2.5) or a new registration for the group's peer.
    pub fn alloc_dmb(
        &mut self,
        id: LinkGroupId,
        devices: &[D],
        len: usize,
    ) -> Result<Dmb<D::Memory>, LinkGroupError> {
        let group = self
            .groups
            .get_mut(&id)
            .ok_or(LinkGroupError::UnknownGroup)?;
        if group.state != GroupState::Active {
            return Err(LinkGroupError::Terminated);
        }
        if let Some(pos) = group.pool.iter().position(|d| d.memory.len() == len) {
            let dmb = group.pool.swap_remove(pos);
            if let Err(e) = dmb.memory.fill(0, len, 0) {
                // Cannot happen for a DMB of this length; never hand out dirty memory.
                log::error!("zeroing pooled DMB failed: {e}");
                group.pool.push(dmb);
                return Err(LinkGroupError::Device(IsmError::DeviceError));
            }
            group.in_use += 1;
            self.counts.dmbs_reused += 1;
            return Ok(dmb);
        }
        let device = devices
            .get(group.key.device)
            .ok_or(LinkGroupError::NoDevice)?;
        match device.register_dmb(len, group.key.peer) {
            Ok(dmb) => {
                group.in_use += 1;
                self.counts.dmbs_registered += 1;
                Ok(dmb)
            }
            Err(e) => {
                if e == IsmError::NoSpace {
                    self.counts.dmb_exhaustions += 1;
                }
                Err(LinkGroupError::Device(e))
            }
        }
    }

    /// Gives a connection's DMB back: into the pool of an active group, or
    /// unregistered at once when the group is terminated or gone.
    pub fn release_dmb(&mut self, id: LinkGroupId, devices: &[D], dmb: Dmb<D::Memory>) {
        match self.groups.get_mut(&id) {
            Some(group) => {
                group.in_use = group.in_use.saturating_sub(1);
                if group.state == GroupState::Active {
                    group.pool.push(dmb);
                } else {
                    let device = devices.get(group.key.device);
                    Self::unregister(device, dmb, &mut self.counts);
                }
            }
            None => log::error!(
                "DMB {:?} released to unknown link group {}",
                dmb.token,
                id.0
            ),
        }
    }

    /// Removes one connection from group `id`. The group becomes idle when it was the
    /// last one, or is freed when it is terminated.
    pub fn leave(&mut self, id: LinkGroupId, devices: &[D], now: Duration) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        group.conns = group.conns.saturating_sub(1);
        if group.conns == 0 {
            if group.state == GroupState::Active {
                group.idle_since = Some(now);
            } else {
                self.free(id, devices);
            }
        }
    }

    /// Terminates group `id`: it is never matched again and is freed (its DMBs
    /// unregistered) once it has no connections — at once if it has none now. The
    /// caller aborts the group's connections (after a peer loss without writing any
    /// CDC to the peer).
    pub fn terminate(&mut self, id: LinkGroupId, reason: TerminateReason, devices: &[D]) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        if group.state == GroupState::Active {
            group.state = GroupState::Terminated(reason);
            self.counts.terminated += 1;
            log::info!("link group {} terminated: {:?}", id.0, reason);
        }
        if group.conns == 0 {
            self.free(id, devices);
        }
    }

    /// Terminates every group on `device` whose peer is `peer` (the device reported
    /// `IsmEvent::PeerGone`, §6.3) and returns their ids, so the caller can abort their
    /// connections.
    pub fn terminate_peer(&mut self, device: usize, peer: Gid, devices: &[D]) -> Vec<LinkGroupId> {
        let ids: Vec<LinkGroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.key.device == device && g.key.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.terminate(*id, TerminateReason::PeerGone, devices);
        }
        ids
    }

    /// Frees every active group that has had no connection for at least
    /// `idle_after(role)` at time `now` (Linux: [`IDLE_FREE_SERVER`] /
    /// [`IDLE_FREE_CLIENT`]); returns how many were freed.
    pub fn free_idle(
        &mut self,
        now: Duration,
        idle_after: impl Fn(Role) -> Duration,
        devices: &[D],
    ) -> usize {
        let idle: Vec<LinkGroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.conns == 0
                    && g.idle_since
                        .is_some_and(|since| now.saturating_sub(since) >= idle_after(g.key.role))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.free(*id, devices);
        }
        idle.len()
    }

    /// Frees every group without connections at once (shutdown of the stack).
    pub fn free_unused(&mut self, devices: &[D]) -> usize {
        let unused: Vec<LinkGroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.conns == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in &unused {
            self.free(*id, devices);
        }
        unused.len()
    }

    fn free(&mut self, id: LinkGroupId, devices: &[D]) {
        if let Some(group) = self.groups.remove(&id) {
            let device = devices.get(group.key.device);
            for dmb in group.pool {
                Self::unregister(device, dmb, &mut self.counts);
            }
            if group.in_use != 0 {
                log::error!(
                    "link group {} freed with {} DMBs in use",
                    id.0,
                    group.in_use
                );
            }
            self.counts.freed += 1;
            log::debug!("link group {} freed", id.0);
        }
    }

    fn unregister(device: Option<&D>, dmb: Dmb<D::Memory>, counts: &mut LinkGroupCounts) {
        match device.map(|d| d.unregister_dmb(dmb.token)) {
            Some(Ok(())) => counts.dmbs_freed += 1,
            Some(Err(e)) => log::error!("unregistering DMB {:?} failed: {e}", dmb.token),
            None => log::error!("DMB {:?} of a missing device", dmb.token),
        }
    }

    /// The group `id`, if it still exists.
    pub fn get(&self, id: LinkGroupId) -> Option<&LinkGroup<D::Memory>> {
        self.groups.get(&id)
    }

    /// Iterates over all groups.
    pub fn iter(&self) -> impl Iterator<Item = (LinkGroupId, &LinkGroup<D::Memory>)> {
        self.groups.iter().map(|(id, g)| (*id, g))
    }

    /// Number of groups (active or terminated, not yet freed).
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// DMBs registered and not yet unregistered (pooled + in use), over all groups.
    pub fn dmbs_held(&self) -> usize {
        self.groups.values().map(|g| g.pool.len() + g.in_use).sum()
    }

    /// Cumulative event counts.
    pub fn counts(&self) -> LinkGroupCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ism::{DmbToken, IsmEvent};
    use crate::shm::{HeapMemory, ShmError};
    use alloc::sync::Arc;
    use core::cell::RefCell;
    use core::sync::atomic::Ordering;

    #[derive(Clone)]
    struct Mem(Arc<HeapMemory>);

    impl core::fmt::Debug for Mem {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "Mem({} bytes)", self.0.len())
        }
    }

    impl SharedMemory for Mem {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
            self.0.read(offset, buf)
        }
        fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
            self.0.write(offset, data)
        }
        fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
            self.0.fill(offset, len, value)
        }
        fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
            self.0.load_u64(offset, order)
        }
        fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
            self.0.store_u64(offset, value, order)
        }
    }

    /// A strict fake device: counts live DMBs, refuses beyond `max`, rejects unknown
    /// tokens.
    struct FakeDev {
        max: usize,
        live: RefCell<BTreeMap<u64, Gid>>,
        next: RefCell<u64>,
    }

    impl FakeDev {
        fn new(max: usize) -> Self {
            FakeDev {
                max,
                live: RefCell::new(BTreeMap::new()),
                next: RefCell::new(100),
            }
        }
        fn live(&self) -> usize {
            self.live.borrow().len()
        }
    }

    impl IsmDevice for FakeDev {
        type Memory = Mem;
        fn local_gid(&self) -> Gid {
            Gid::virtual_(1, 1)
        }
        fn chid(&self) -> u16 {
            0xFFFF
        }
        fn supports_v2(&self) -> bool {
            true
        }
        fn query_remote_gid(&self, _remote: Gid, _vlan: Option<u16>) -> bool {
            true
        }
        fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<Mem>, IsmError> {
            if self.live() >= self.max {
                return Err(IsmError::NoSpace);
            }
            let mut next = self.next.borrow_mut();
            *next += 1;
            self.live.borrow_mut().insert(*next, remote);
            Ok(Dmb {
                token: DmbToken(*next),
                index: *next as u32,
                memory: Mem(Arc::new(HeapMemory::new(len))),
            })
        }
        fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
            self.live
                .borrow_mut()
                .remove(&token.0)
                .map(|_| ())
                .ok_or(IsmError::InvalidToken)
        }
        fn move_data(&self, _: DmbToken, _: usize, _: &[u8], _: bool) -> Result<(), IsmError> {
            Err(IsmError::Unsupported)
        }
        fn poll_events(&self, _sink: &mut dyn FnMut(IsmEvent)) {}
    }

    fn key(peer: u64, role: Role) -> LinkGroupKey {
        LinkGroupKey {
            device: 0,
            peer: Gid::virtual_(peer, 7),
            vlan: None,
            role,
        }
    }

    const T0: Duration = Duration::from_secs(0);

    #[test]
    fn groups_match_by_device_peer_vlan_and_role() {
        let mut lg = LinkGroups::<FakeDev>::new();
        assert_eq!(lg.find(&key(5, Role::Server)), None);
        let id = lg.create(key(5, Role::Server), T0);
        assert_eq!(lg.find(&key(5, Role::Server)), Some(id));
        assert_eq!(lg.find(&key(5, Role::Client)), None);
        assert_eq!(lg.find(&key(6, Role::Server)), None);
        let mut other_ext = key(5, Role::Server);
        other_ext.peer.gid_ext = 8;
        assert_eq!(lg.find(&other_ext), None);
        let mut v1 = key(5, Role::Server);
        v1.vlan = Some(3);
        assert_eq!(lg.find(&v1), None);
        // A newer group with the same key is preferred.
        let newer = lg.create(key(5, Role::Server), T0);
        assert_eq!(lg.find(&key(5, Role::Server)), Some(newer));
    }

    #[test]
    fn dmbs_are_reused_zeroed_and_freed_with_the_group() {
        let dev = [FakeDev::new(8)];
        let mut lg = LinkGroups::<FakeDev>::new();
        let id = lg.create(key(5, Role::Client), T0);
        lg.join(id, false).unwrap();
        let a = lg.alloc_dmb(id, &dev, 4096).unwrap();
        a.memory.write(100, b"secret").unwrap();
        let token = a.token;
        lg.release_dmb(id, &dev, a);
        lg.leave(id, &dev, Duration::from_secs(1));
        assert_eq!(dev[0].live(), 1);
        assert_eq!(lg.get(id).unwrap().pooled_dmbs(), 1);

        lg.join(id, true).unwrap();
        let b = lg.alloc_dmb(id, &dev, 4096).unwrap();
        assert_eq!(b.token, token, "same DMB reused");
        let mut buf = [0xffu8; 6];
        b.memory.read(100, &mut buf).unwrap();
        assert_eq!(buf, [0; 6], "reused DMB is zeroed");
        // A different size is registered anew.
        let c = lg.alloc_dmb(id, &dev, 8192).unwrap();
        assert_ne!(c.token, token);
        assert_eq!(dev[0].live(), 2);
        lg.release_dmb(id, &dev, b);
        lg.release_dmb(id, &dev, c);
        lg.leave(id, &dev, Duration::from_secs(2));

        let linux = |role| match role {
            Role::Server => IDLE_FREE_SERVER,
            Role::Client => IDLE_FREE_CLIENT,
        };
        // A client group, idle since t = 2 s: freed after 610 s, not before.
        assert_eq!(lg.free_idle(Duration::from_secs(611), linux, &dev), 0);
        assert_eq!(lg.free_idle(Duration::from_secs(612), linux, &dev), 1);
        assert_eq!(dev[0].live(), 0);
        assert!(lg.is_empty());
        let counts = lg.counts();
        assert_eq!(counts.created, 1);
        assert_eq!(counts.reused, 1);
        assert_eq!(counts.freed, 1);
        assert_eq!(counts.dmbs_registered, 2);
        assert_eq!(counts.dmbs_reused, 1);
        assert_eq!(counts.dmbs_freed, 2);
    }

    #[test]
    fn exhaustion_is_reported_and_counted() {
        let dev = [FakeDev::new(1)];
        let mut lg = LinkGroups::<FakeDev>::new();
        let id = lg.create(key(5, Role::Server), T0);
        lg.join(id, false).unwrap();
        let a = lg.alloc_dmb(id, &dev, 1024).unwrap();
        assert_eq!(
            lg.alloc_dmb(id, &dev, 1024).unwrap_err(),
            LinkGroupError::Device(IsmError::NoSpace)
        );
        assert_eq!(lg.counts().dmb_exhaustions, 1);
        lg.release_dmb(id, &dev, a);
        lg.leave(id, &dev, T0);
    }

    #[test]
    fn peer_gone_terminates_and_frees_after_last_connection() {
        let dev = [FakeDev::new(8)];
        let mut lg = LinkGroups::<FakeDev>::new();
        let busy = lg.create(key(5, Role::Server), T0);
        let idle = lg.create(key(5, Role::Client), T0);
        let other = lg.create(key(6, Role::Server), T0);
        lg.join(busy, false).unwrap();
        let d = lg.alloc_dmb(busy, &dev, 1024).unwrap();
        lg.join(idle, false).unwrap();
        let e = lg.alloc_dmb(idle, &dev, 1024).unwrap();
        lg.release_dmb(idle, &dev, e);
        lg.leave(idle, &dev, T0);
        assert_eq!(dev[0].live(), 2);

        let gone = lg.terminate_peer(0, Gid::virtual_(5, 7), &dev);
        assert_eq!(gone, [busy, idle]);
        // The idle group is freed at once, its pooled DMB unregistered.
        assert!(lg.get(idle).is_none());
        assert_eq!(dev[0].live(), 1);
        // The busy one is terminated: never matched, no new connections or DMBs.
        assert_eq!(
            lg.get(busy).unwrap().state(),
            GroupState::Terminated(TerminateReason::PeerGone)
        );
        assert_eq!(lg.find(&key(5, Role::Server)), None);
        assert_eq!(lg.join(busy, true), Err(LinkGroupError::Terminated));
        assert!(lg.alloc_dmb(busy, &dev, 1024).is_err());
        // Releasing the connection's DMB unregisters it; leaving frees the group.
        lg.release_dmb(busy, &dev, d);
        assert_eq!(dev[0].live(), 0);
        lg.leave(busy, &dev, T0);
        assert!(lg.get(busy).is_none());
        assert_eq!(lg.find(&key(6, Role::Server)), Some(other));
        assert_eq!(lg.counts().terminated, 2);
        assert_eq!(lg.dmbs_held(), 0);
    }
}
