//! The application API: SMC-D sockets over any byte stream, with TCP fallback.
//!
//! A [`Stack`] owns the ISM devices, the local CLC configuration, the link groups and
//! every connection. The application hands it a connected TCP stream
//! ([`ByteStream`]) with [`Stack::connect`] (client) or [`Stack::accept`] (server side
//! of a stream its TCP stack accepted) and gets a [`SocketHandle`]. From then on the
//! core is non-blocking and poll-driven (protocol-reference §1):
//!
//! - [`Stack::poll`] drives the CLC handshakes over the streams (Proposal → Accept →
//!   Confirm, a Decline accepted in place of any of them, 6 s per wait on the caller's
//!   clock), takes the devices' events (a signalled DMB wakes the connection owning it;
//!   a departed peer terminates its link groups and aborts their connections, §5/§6.3),
//!   releases closed connections and frees idle link groups.
//! - [`Stack::read`] / [`Stack::write`] / [`Stack::shutdown`] / [`Stack::close`] work
//!   the same on SMC-D and on fallback: after a Decline (or when the peer never showed
//!   the SMC TCP option) the same stream carries the application's bytes.
//!   [`Stack::transport`] tells which one it is.
//! - Readiness ([`Stack::readable`], [`Stack::writable`], [`Stack::state`]) and waker
//!   registration ([`Stack::register_read_waker`], [`Stack::register_write_waker`])
//!   let an executor sleep until a signal or stream event; [`AsyncSocket`] wraps a
//!   handle as `embedded_io_async::{Read, Write}`.
//! - The zero-copy calls ([`Stack::reserve`], [`Stack::commit`], [`Stack::peek`],
//!   [`Stack::consume`]) pass through to the SMC-D data path.
//!
//! Several devices of one type `D` are supported; devices are addressed by their index.
//! Two device kinds (a kernel with ivshmem and loopback) combine with [`EitherDevice`],
//! without trait objects.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::task::Waker;
use core::time::Duration;

use crate::conn::{ConnCounters, ConnError, DataMode, PollOutcome, SmcdConn};
use crate::counters::{ConnStats, GlobalCounters};
use crate::ism::{Dmb, DmbToken, Gid, IsmDevice, IsmEvent};
use crate::linkgroup::{
    LinkGroupError, LinkGroupId, LinkGroupKey, LinkGroups, Role, TerminateReason, IDLE_FREE_CLIENT,
    IDLE_FREE_SERVER,
};
use crate::negotiate::{self, ClientError, DeviceDesc, LocalConfig, OwnDmb};
use crate::shm::{SharedMemory, ShmError, ShmSlice};
use crate::stream::{ByteStream, StreamError};
use crate::wire::clc::{
    self, AcceptConfirmKind, AcceptConfirmRepr, ClcError, ClcMessage, DeclineCode, DeclineRepr,
    ProposalRepr, HEADER_LEN, MAX_MESSAGE_LEN,
};

/// Linux waits 6 s for each CLC message (`CLC_WAIT_TIME`, §1).
pub const CLC_WAIT_TIME: Duration = Duration::from_secs(6);

/// Default size of the DMBs this stack registers: 64 KiB (compressed size 2, §4.1).
pub const DEFAULT_DMB_LEN: usize = 64 * 1024;

/// Default for [`StackOptions::close_timeout`]: 30 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunables of a [`Stack`] besides the CLC configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackOptions {
    /// Length of each own DMB: a power of two from 16 KiB to 1 MiB (§4.1).
    pub dmb_len: usize,
    /// How long each CLC wait may take (§1: 6 s).
    pub clc_timeout: Duration,
    /// Idle time after which an unused server link group is freed (Linux 600 s).
    pub idle_free_server: Duration,
    /// Idle time after which an unused client link group is freed (Linux 610 s).
    pub idle_free_client: Duration,
    /// Use no-copy (attach the peer's DMB) when the device supports it (§4.6).
    pub nocopy: bool,
    /// How long a closed SMC-D socket waits for the peer's close before it is aborted
    /// and its DMB given back (our choice; Linux relies on the TCP connection's fate).
    pub close_timeout: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            dmb_len: DEFAULT_DMB_LEN,
            clc_timeout: CLC_WAIT_TIME,
            idle_free_server: IDLE_FREE_SERVER,
            idle_free_client: IDLE_FREE_CLIENT,
            nocopy: true,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// Handle of a socket in its [`Stack`]. Handles are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketHandle(u32);

impl SocketHandle {
    /// The raw handle number (for diagnostics).
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// What carries a socket's data once the handshake is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// SMC-D: data through the ISM device.
    Smcd {
        /// Negotiated SMC version (1 or 2).
        version: u8,
        /// This connection created its link group.
        first_contact: bool,
        /// Index of the ISM device in the stack.
        device: usize,
        /// The peer's GID.
        peer_gid: Gid,
    },
    /// TCP fallback: the stream itself carries the data.
    Tcp {
        /// The decline reason (sent or received); `0x03010000` when the peer did not
        /// show the SMC TCP option and no CLC was exchanged.
        reason: DeclineCode,
        /// The peer sent the Decline (else this side declined or saw no option).
        by_peer: bool,
    },
}

/// Coarse life-cycle of a socket, for readiness and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// The CLC handshake is running.
    Handshaking,
    /// SMC-D connection; the data path's own state is in [`Stack::conn_state`].
    Smcd,
    /// TCP fallback.
    Fallback,
    /// The handshake or the connection failed; reads and writes return the error.
    Failed,
    /// The application closed the socket.
    Closed,
}

impl core::fmt::Display for SocketState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SocketState::Handshaking => "handshaking",
            SocketState::Smcd => "smcd",
            SocketState::Fallback => "fallback",
            SocketState::Failed => "failed",
            SocketState::Closed => "closed",
        })
    }
}

/// Why a socket operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketError {
    /// Not possible right now (handshake running, no data, no room); retry after
    /// [`Stack::poll`] or a wake-up.
    WouldBlock,
    /// No socket with this handle (closed or never existed).
    InvalidHandle,
    /// A CLC wait exceeded its time (§1: Accept/Confirm timeouts fail the connection).
    TimedOut,
    /// The peer sent CLC bytes that do not parse; the connection failed (Linux: -EPROTO).
    Protocol(ClcError),
    /// The peer sent a CLC message of the wrong type at this point.
    UnexpectedMessage,
    /// The stream ended in the middle of the handshake.
    HandshakeEof,
    /// The byte stream failed.
    Stream(StreamError),
    /// The SMC-D data path failed or the peer aborted.
    Conn(ConnError),
    /// The connection was aborted locally: its link group was terminated (peer gone).
    Aborted,
    /// The ISM device refused an operation outside a handshake.
    Device,
    /// The operation needs SMC-D (zero-copy) but the socket is not on SMC-D.
    NotSmcd,
}

impl core::fmt::Display for SocketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SocketError::WouldBlock => f.write_str("operation would block"),
            SocketError::InvalidHandle => f.write_str("invalid socket handle"),
            SocketError::TimedOut => f.write_str("CLC handshake timed out"),
            SocketError::Protocol(e) => write!(f, "CLC protocol error: {e}"),
            SocketError::UnexpectedMessage => f.write_str("unexpected CLC message"),
            SocketError::HandshakeEof => f.write_str("stream ended during the CLC handshake"),
            SocketError::Stream(e) => write!(f, "stream: {e}"),
            SocketError::Conn(e) => write!(f, "SMC-D connection: {e:?}"),
            SocketError::Aborted => f.write_str("connection aborted (link group terminated)"),
            SocketError::Device => f.write_str("ISM device error"),
            SocketError::NotSmcd => f.write_str("socket is not an SMC-D connection"),
        }
    }
}

impl core::error::Error for SocketError {}

impl embedded_io::Error for SocketError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            SocketError::WouldBlock => ErrorKind::Interrupted,
            SocketError::InvalidHandle => ErrorKind::NotConnected,
            SocketError::TimedOut => ErrorKind::TimedOut,
            SocketError::Protocol(_) | SocketError::UnexpectedMessage => ErrorKind::InvalidData,
            SocketError::HandshakeEof => ErrorKind::ConnectionAborted,
            SocketError::Stream(e) => embedded_io::Error::kind(e),
            SocketError::Conn(_) => ErrorKind::ConnectionReset,
            SocketError::Aborted => ErrorKind::ConnectionAborted,
            SocketError::Device => ErrorKind::Other,
            SocketError::NotSmcd => ErrorKind::Unsupported,
        }
    }
}

impl From<StreamError> for SocketError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::WouldBlock => SocketError::WouldBlock,
            e => SocketError::Stream(e),
        }
    }
}

/// Reassembles one CLC message from a stream without reading past its end (the bytes
/// after it belong to the next message or, after a Decline, to the application).
struct ClcReader {
    buf: [u8; MAX_MESSAGE_LEN],
    have: usize,
    need: usize,
}

impl ClcReader {
    fn new() -> Self {
        ClcReader {
            buf: [0; MAX_MESSAGE_LEN],
            have: 0,
            need: HEADER_LEN,
        }
    }

    /// Reads towards a complete message: `Ok(Some(len))` when `buf[..len]` holds one.
    fn fill<S: ByteStream>(
        &mut self,
        stream: &mut S,
        stats: &mut ConnStats,
    ) -> Result<Option<usize>, SocketError> {
        loop {
            if self.have == self.need {
                if self.need == HEADER_LEN {
                    let mut header = [0u8; HEADER_LEN];
                    header.copy_from_slice(&self.buf[..HEADER_LEN]);
                    // §2.1: eyecatcher, type, version and length bounds (≤ 652).
                    self.need = clc::frame_len(&header).map_err(SocketError::Protocol)?;
                    if self.need > HEADER_LEN {
                        continue;
                    }
                }
                let len = self.need;
                self.have = 0;
                self.need = HEADER_LEN;
                return Ok(Some(len));
            }
            match stream.read(&mut self.buf[self.have..self.need]) {
                Ok(0) => return Err(SocketError::HandshakeEof),
                Ok(n) => {
                    self.have += n;
                    stats.clc_bytes_rx += n as u64;
                }
                Err(StreamError::WouldBlock) => return Ok(None),
                Err(e) => return Err(SocketError::Stream(e)),
            }
        }
    }
}

/// Where a socket is in its life.
enum Phase<D: IsmDevice> {
    /// Client: Proposal sent (or queued), waiting for Accept or Decline.
    ClientAwaitAccept { proposal: ProposalRepr },
    /// Server: waiting for a Proposal (or a Decline in its place).
    ServerAwaitProposal,
    /// Server: Accept sent, waiting for Confirm or Decline.
    ServerAwaitConfirm {
        proposal: ProposalRepr,
        accept: AcceptConfirmRepr,
        choice: negotiate::ServerChoice,
    },
    /// Established SMC-D connection.
    Smcd(SmcdConn<D>),
    /// TCP fallback.
    Fallback,
    /// Failed; every operation returns the error.
    Failed(SocketError),
}

impl<D: IsmDevice> Phase<D> {
    fn name(&self) -> &'static str {
        match self {
            Phase::ClientAwaitAccept { .. } => "client-await-accept",
            Phase::ServerAwaitProposal => "server-await-proposal",
            Phase::ServerAwaitConfirm { .. } => "server-await-confirm",
            Phase::Smcd(_) => "smcd",
            Phase::Fallback => "fallback",
            Phase::Failed(_) => "failed",
        }
    }
}

/// The link-group membership and DMB of a socket.
struct Attachment<M> {
    group: LinkGroupId,
    device: usize,
    dmb: Dmb<M>,
    first_contact: bool,
}

struct Socket<D: IsmDevice, S: ByteStream> {
    stream: S,
    role: Role,
    phase: Phase<D>,
    reader: ClcReader,
    /// CLC bytes queued for the stream (written before any application byte).
    out: Vec<u8>,
    out_pos: usize,
    deadline: Duration,
    transport: Option<Transport>,
    attachment: Option<Attachment<D::Memory>>,
    stats: ConnStats,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// The application called `close`; the socket lingers until the SMC-D close
    /// handshake is over.
    released: bool,
    /// When a released SMC-D socket gives up waiting for the peer's close.
    close_deadline: Duration,
}

impl<D: IsmDevice, S: ByteStream> Socket<D, S> {
    fn set_phase(&mut self, handle: SocketHandle, phase: Phase<D>) {
        log::debug!(
            "socket {}: {}=>{}",
            handle.0,
            self.phase.name(),
            phase.name()
        );
        self.phase = phase;
        self.wake();
    }

    /// Wakes the waiters a data-path poll outcome concerns.
    fn wake_on(&mut self, outcome: &PollOutcome) {
        if outcome.new_bytes > 0 || outcome.state_changed {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
        if outcome.space_freed > 0 || outcome.state_changed {
            if let Some(w) = self.write_waker.take() {
                w.wake();
            }
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    fn queue_clc(&mut self, message: &ClcMessage) {
        let start = self.out.len();
        let len = message.buffer_len();
        self.out.resize(start + len, 0);
        match message.emit(&mut self.out[start..]) {
            Ok(n) => {
                self.out.truncate(start + n);
                self.stats.clc_bytes_tx += n as u64;
            }
            Err(e) => {
                // Our own Reprs always encode; never send half a message.
                log::error!("cannot emit own CLC message: {e}");
                self.out.truncate(start);
            }
        }
    }

    /// Writes queued CLC bytes; `Ok(true)` when all are out.
    fn flush(&mut self) -> Result<bool, StreamError> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(StreamError::WouldBlock) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }
}

/// Key for the DMB → socket map: (device index, DMB index on that device).
type DmbKey = (usize, u32);

/// The SMC-D stack: devices, configuration, link groups and sockets.
pub struct Stack<D: IsmDevice, S: ByteStream> {
    devices: Vec<D>,
    local: LocalConfig,
    options: StackOptions,
    groups: LinkGroups<D>,
    sockets: BTreeMap<SocketHandle, Socket<D, S>>,
    dmb_owner: BTreeMap<DmbKey, SocketHandle>,
    next_handle: u32,
    /// Compressed size of `options.dmb_len` (§4.1).
    dmbe_size: u8,
    counters: GlobalCounters,
    /// Data-path totals of sockets already freed.
    retired: ConnStats,
}

/// Linux's compression of a wanted DMB size (§4.1): `s ≤ 16384` → 0, else
/// `min(ilog2((s − 1) >> 14) + 1, 6)` (rounds up to the next power of two, max 1 MiB).
pub fn compress_dmb_len(len: usize) -> u8 {
    if len <= 16384 {
        0
    } else {
        (((len - 1) >> 14).ilog2() + 1).min(6) as u8
    }
}

impl<D: IsmDevice, S: ByteStream> Stack<D, S> {
    /// A stack over `devices` (possibly none: every handshake then declines or falls
    /// back), with the CLC configuration `local`.
    ///
    /// `options.dmb_len` is rounded up to a valid SMC-D DMB size (16 KiB..=1 MiB, a
    /// power of two, §4.1).
    pub fn new(devices: Vec<D>, local: LocalConfig, mut options: StackOptions) -> Self {
        let dmbe_size = compress_dmb_len(options.dmb_len);
        options.dmb_len = negotiate::dmbe_len(dmbe_size);
        Stack {
            dmbe_size,
            devices,
            local,
            options,
            groups: LinkGroups::new(),
            sockets: BTreeMap::new(),
            dmb_owner: BTreeMap::new(),
            next_handle: 1,
            counters: GlobalCounters::default(),
            retired: ConnStats::default(),
        }
    }

    /// The devices, by index.
    pub fn devices(&self) -> &[D] {
        &self.devices
    }

    /// The link-group registry (read-only, for diagnostics and leak checks).
    pub fn link_groups(&self) -> &LinkGroups<D> {
        &self.groups
    }

    /// The tunables.
    pub fn options(&self) -> &StackOptions {
        &self.options
    }

    /// Number of sockets the stack still holds (including closed ones lingering in the
    /// SMC-D close handshake).
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    fn device_descs(&self) -> Vec<DeviceDesc> {
        self.devices
            .iter()
            .map(|d| DeviceDesc {
                gid: d.local_gid(),
                chid: d.chid(),
                v2: d.supports_v2(),
            })
            .collect()
    }

    fn insert(&mut self, stream: S, role: Role, phase: Phase<D>, now: Duration) -> SocketHandle {
        let handle = SocketHandle(self.next_handle);
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        let socket = Socket {
            stream,
            role,
            phase,
            reader: ClcReader::new(),
            out: Vec::new(),
            out_pos: 0,
            deadline: now + self.options.clc_timeout,
            transport: None,
            attachment: None,
            stats: ConnStats::default(),
            read_waker: None,
            write_waker: None,
            released: false,
            close_deadline: Duration::MAX,
        };
        self.sockets.insert(handle, socket);
        handle
    }

    /// Starts the client side over the connected `stream` (protocol-reference §1).
    ///
    /// Without the SMC TCP option the socket is plain TCP at once (reason
    /// `0x03010000`, no CLC byte is sent). Otherwise a Proposal is queued — or, when
    /// nothing can be offered, a Decline in its place and the socket falls back.
    /// Call [`Stack::poll`] to make progress.
    pub fn connect(&mut self, stream: S, now: Duration) -> SocketHandle {
        self.counters.handshakes_client += 1;
        if !stream.peer_smc_capable() {
            let handle = self.insert(stream, Role::Client, Phase::Fallback, now);
            self.fall_back(handle, DeclineCode::PEERNOSMC, false);
            return handle;
        }
        let descs = self.device_descs();
        match negotiate::build_proposal(&self.local, &descs) {
            Ok(proposal) => {
                let message = ClcMessage::Proposal(proposal.clone());
                let handle = self.insert(
                    stream,
                    Role::Client,
                    Phase::ClientAwaitAccept { proposal },
                    now,
                );
                if let Some(socket) = self.sockets.get_mut(&handle) {
                    socket.queue_clc(&message);
                }
                handle
            }
            Err(code) => {
                // §1: a client with nothing to offer still sends a Decline in place of
                // the Proposal, then uses the stream as plain TCP.
                let handle = self.insert(stream, Role::Client, Phase::Fallback, now);
                self.decline(handle, 2, code);
                handle
            }
        }
    }

    /// Starts the server side over a stream the TCP stack accepted (§1).
    ///
    /// Without the SMC TCP option the socket is plain TCP at once (`0x03010000`, no
    /// CLC). Otherwise it waits for the client's Proposal (or a Decline in its place).
    pub fn accept(&mut self, stream: S, now: Duration) -> SocketHandle {
        self.counters.handshakes_server += 1;
        if !stream.peer_smc_capable() {
            let handle = self.insert(stream, Role::Server, Phase::Fallback, now);
            self.fall_back(handle, DeclineCode::PEERNOSMC, false);
            return handle;
        }
        self.insert(stream, Role::Server, Phase::ServerAwaitProposal, now)
    }

    /// Queues a Decline with `code` and falls back to TCP (this side declined).
    fn decline(&mut self, handle: SocketHandle, version: u8, code: DeclineCode) {
        if let Some(socket) = self.sockets.get_mut(&handle) {
            socket.queue_clc(&ClcMessage::Decline(DeclineRepr::linux(
                version.clamp(1, 2),
                code,
            )));
            self.counters.declines_sent += 1;
        }
        self.fall_back(handle, code, false);
    }

    /// Switches `handle` to TCP fallback with `reason`.
    fn fall_back(&mut self, handle: SocketHandle, reason: DeclineCode, by_peer: bool) {
        if let Some(socket) = self.sockets.get_mut(&handle) {
            log::info!(
                "socket {}: TCP fallback, reason {:#010x}{}",
                handle.0,
                reason.0,
                if by_peer { " (peer declined)" } else { "" }
            );
            socket.transport = Some(Transport::Tcp { reason, by_peer });
            socket.set_phase(handle, Phase::Fallback);
            self.counters.count_fallback(reason.0);
        }
    }

    /// Fails the handshake of `handle` with `error` and gives back what it held.
    fn fail(&mut self, handle: SocketHandle, error: SocketError, now: Duration) {
        log::warn!("socket {}: handshake failed: {error}", handle.0);
        self.counters.handshakes_failed += 1;
        self.detach(handle, now, true);
        if let Some(socket) = self.sockets.get_mut(&handle) {
            let _ = socket.stream.close();
            socket.set_phase(handle, Phase::Failed(error));
        }
    }

    /// Gives back the DMB and link-group membership of `handle` (a handshake that did
    /// not complete). A group this socket created is terminated with it
    /// (Linux `smc_conn_abort` with first contact).
    fn detach(&mut self, handle: SocketHandle, now: Duration, handshake_failed: bool) {
        let Some(socket) = self.sockets.get_mut(&handle) else {
            return;
        };
        let Some(att) = socket.attachment.take() else {
            return;
        };
        self.dmb_owner.remove(&(att.device, att.dmb.index));
        self.groups.release_dmb(att.group, &self.devices, att.dmb);
        if handshake_failed && att.first_contact {
            self.groups.terminate(
                att.group,
                TerminateReason::FirstContactFailed,
                &self.devices,
            );
        }
        self.groups.leave(att.group, &self.devices, now);
    }

    /// Joins (or, with `create`, creates) the link group for `key` and takes a DMB for
    /// `handle`. On failure nothing is held and the Decline code is returned.
    fn attach(
        &mut self,
        handle: SocketHandle,
        key: LinkGroupKey,
        create: bool,
        now: Duration,
    ) -> Result<Dmb<D::Memory>, DeclineCode> {
        let group = if create {
            self.groups.create(key, now)
        } else {
            // §2.5: the client must find the group the server reused, else out of sync.
            self.groups.find(&key).ok_or(DeclineCode::SYNCERR)?
        };
        self.groups
            .join(group, !create)
            .map_err(|_| DeclineCode::SYNCERR)?;
        let dmb = match self
            .groups
            .alloc_dmb(group, &self.devices, self.options.dmb_len)
        {
            Ok(dmb) => dmb,
            Err(e) => {
                if create {
                    self.groups.terminate(
                        group,
                        TerminateReason::FirstContactFailed,
                        &self.devices,
                    );
                }
                self.groups.leave(group, &self.devices, now);
                // Linux: "no space" → 0x030d0000 (MAX_DMB), any other failure → MEM.
                return Err(match e {
                    LinkGroupError::Device(crate::ism::IsmError::NoSpace) => DeclineCode::MAX_DMB,
                    _ => DeclineCode::MEM,
                });
            }
        };
        self.dmb_owner.insert((key.device, dmb.index), handle);
        if let Some(socket) = self.sockets.get_mut(&handle) {
            socket.attachment = Some(Attachment {
                group,
                device: key.device,
                dmb: dmb.clone(),
                first_contact: create,
            });
        }
        Ok(dmb)
    }

    /// Makes `handle` an established SMC-D socket over `conn`.
    ///
    /// The peer may already have written into our DMB: a client is ACTIVE once its
    /// Confirm is sent (§1) and its first CDC and signal can arrive before the server
    /// has read the Confirm, when the signal finds no connection yet. The new
    /// connection therefore reads its DMB's CDC once right away.
    fn establish(&mut self, handle: SocketHandle, mut conn: SmcdConn<D>, transport: Transport) {
        self.counters.handshakes_smcd += 1;
        let device = self.device_of(handle);
        if let Some(dev) = self.devices.get(device) {
            let outcome = conn.poll(dev);
            if outcome.new_cdc {
                log::debug!("socket {}: CDC arrived before establishment", handle.0);
            }
        }
        if let Some(socket) = self.sockets.get_mut(&handle) {
            log::info!("socket {}: SMC-D established: {:?}", handle.0, transport);
            socket.transport = Some(transport);
            socket.set_phase(handle, Phase::Smcd(conn));
        }
    }

    /// Drives everything: device events, handshakes, close handshakes, idle link
    /// groups. `now` is a monotonic time since any origin. Returns whether anything
    /// happened (a simulation runs until a poll of every peer returns false).
    pub fn poll(&mut self, now: Duration) -> bool {
        let mut progress = false;
        for device in 0..self.devices.len() {
            let mut events = Vec::new();
            self.devices[device].poll_events(&mut |e| events.push(e));
            for event in events {
                progress = true;
                match event {
                    IsmEvent::DmbSignalled { index } => self.on_signal(device, index, now),
                    IsmEvent::PeerGone { gid } => self.on_peer_gone(device, gid, now),
                }
            }
        }
        let handles: Vec<SocketHandle> = self.sockets.keys().copied().collect();
        for handle in handles {
            progress |= self.drive(handle, now);
        }
        let (server, client) = (self.options.idle_free_server, self.options.idle_free_client);
        let freed = self.groups.free_idle(
            now,
            |role| match role {
                Role::Server => server,
                Role::Client => client,
            },
            &self.devices,
        );
        progress | (freed > 0)
    }

    fn on_signal(&mut self, device: usize, index: u32, now: Duration) {
        let Some(&handle) = self.dmb_owner.get(&(device, index)) else {
            log::debug!("signal for unowned DMB index {index} on device {device}");
            return;
        };
        let Some(socket) = self.sockets.get_mut(&handle) else {
            return;
        };
        if !matches!(socket.phase, Phase::Smcd(_)) {
            return;
        }
        socket.stats.signals_rx += 1;
        self.poll_conn(handle, device, now);
    }

    /// Re-reads one connection's CDC (what a signal for its DMB does) without taking
    /// device events or driving anything else: the cheap check of a waiter that polls
    /// instead of sleeping (adaptive polling). Returns whether a new CDC was found. A
    /// signal for the same CDC that is still queued in the device later finds nothing
    /// new (harmless); non-SMC-D sockets return false.
    pub fn poll_socket(&mut self, handle: SocketHandle, now: Duration) -> bool {
        let device = self.device_of(handle);
        self.poll_conn(handle, device, now)
    }

    /// `SmcdConn::poll` for `handle`, waking its waiters on news, reaping it when closed.
    fn poll_conn(&mut self, handle: SocketHandle, device: usize, now: Duration) -> bool {
        let Some(socket) = self.sockets.get_mut(&handle) else {
            return false;
        };
        let Phase::Smcd(conn) = &mut socket.phase else {
            return false;
        };
        let Some(dev) = self.devices.get(device) else {
            return false;
        };
        let outcome = conn.poll(dev);
        socket.wake_on(&outcome);
        self.reap(handle, now);
        outcome.new_cdc
    }

    /// §5/§6.3: the peer GID is gone: terminate its link groups, abort their
    /// connections locally (no CDC is written to the peer) and free their DMBs.
    fn on_peer_gone(&mut self, device: usize, gid: Gid, now: Duration) {
        let ids = self.groups.terminate_peer(device, gid, &self.devices);
        if ids.is_empty() {
            return;
        }
        let victims: Vec<SocketHandle> = self
            .sockets
            .iter()
            .filter(|(_, s)| {
                s.attachment
                    .as_ref()
                    .is_some_and(|a| ids.contains(&a.group))
            })
            .map(|(h, _)| *h)
            .collect();
        for handle in victims {
            let Some(socket) = self.sockets.get_mut(&handle) else {
                continue;
            };
            match &mut socket.phase {
                Phase::Smcd(conn) => {
                    conn.peer_gone();
                    self.reap(handle, now);
                }
                _ => self.fail(handle, SocketError::Aborted, now),
            }
        }
    }

    /// Frees the SMC-D resources of `handle` once its connection is `CLOSED`: the peer
    /// DMB is detached, the own DMB goes back to its link group, the TCP stream is
    /// closed. A socket the application released is removed; otherwise it stays in
    /// `Failed` with the abort reason.
    fn reap(&mut self, handle: SocketHandle, now: Duration) {
        let Some(socket) = self.sockets.get_mut(&handle) else {
            return;
        };
        let closed =
            matches!(&socket.phase, Phase::Smcd(c) if c.state() == crate::conn::State::Closed);
        if !closed {
            return;
        }
        let Phase::Smcd(conn) = core::mem::replace(&mut socket.phase, Phase::Fallback) else {
            return;
        };
        let reason = conn.abort_reason();
        if reason.is_some() {
            self.counters.aborts += 1;
        }
        add_conn_counters(&mut socket.stats, conn.counters());
        let device = socket.attachment.as_ref().map_or(0, |a| a.device);
        if let Some(dev) = self.devices.get(device) {
            // The attachment keeps its own handle of the DMB; this one is dropped.
            let _ = conn.finish(dev);
        }
        let _ = socket.stream.close();
        let error = match reason {
            Some(r) => SocketError::Conn(ConnError::ConnectionReset(r)),
            None => SocketError::Conn(ConnError::Closed),
        };
        socket.set_phase(handle, Phase::Failed(error));
        let released = socket.released;
        self.detach(handle, now, false);
        if released {
            self.remove(handle);
        }
    }

    fn remove(&mut self, handle: SocketHandle) {
        if let Some(socket) = self.sockets.remove(&handle) {
            self.retired.accumulate(&socket.stats);
        }
    }

    /// One step of one socket; returns whether anything happened.
    fn drive(&mut self, handle: SocketHandle, now: Duration) -> bool {
        let mut progress = false;
        loop {
            let Some(socket) = self.sockets.get_mut(&handle) else {
                return progress;
            };
            let had_out = !socket.out.is_empty();
            let flushed = socket.flush();
            progress |= had_out && socket.out.is_empty();
            let handshaking = matches!(
                socket.phase,
                Phase::ClientAwaitAccept { .. }
                    | Phase::ServerAwaitProposal
                    | Phase::ServerAwaitConfirm { .. }
            );
            if let Err(e) = flushed {
                if handshaking {
                    self.fail(handle, SocketError::Stream(e), now);
                    return true;
                }
            }
            match &socket.phase {
                Phase::Fallback => {
                    if socket.released {
                        if socket.out.is_empty() || flushed.is_err() {
                            let _ = socket.stream.close();
                            self.remove(handle);
                            return true;
                        }
                    } else {
                        if socket.read_waker.is_some() && socket.stream.read_ready() {
                            if let Some(w) = socket.read_waker.take() {
                                w.wake();
                            }
                        }
                        if socket.write_waker.is_some()
                            && socket.out.is_empty()
                            && socket.stream.write_ready()
                        {
                            if let Some(w) = socket.write_waker.take() {
                                w.wake();
                            }
                        }
                    }
                    return progress;
                }
                Phase::Smcd(_) => {
                    if socket.released && now >= socket.close_deadline {
                        // The peer never completed the close: abort (best-effort abort
                        // CDC) so the DMB returns to its group instead of leaking.
                        log::warn!("socket {}: peer did not close in time; aborting", handle.0);
                        let device = socket.attachment.as_ref().map_or(0, |a| a.device);
                        if let (Phase::Smcd(conn), Some(dev)) =
                            (&mut socket.phase, self.devices.get(device))
                        {
                            conn.abort(dev);
                        }
                        self.reap(handle, now);
                        return true;
                    }
                    return progress;
                }
                Phase::Failed(_) => {
                    if socket.released {
                        self.remove(handle);
                        return true;
                    }
                    return progress;
                }
                _ => {}
            }
            // Handshaking: read towards the next CLC message.
            let mut stats = socket.stats;
            let filled = socket.reader.fill(&mut socket.stream, &mut stats);
            socket.stats = stats;
            let message = match filled {
                Ok(Some(len)) => ClcMessage::parse(&socket.reader.buf[..len]),
                Ok(None) => {
                    if now >= socket.deadline {
                        self.fail(handle, SocketError::TimedOut, now);
                        return true;
                    }
                    return progress;
                }
                Err(e) => {
                    self.fail(handle, e, now);
                    return true;
                }
            };
            progress = true;
            match message {
                Ok(message) => self.on_clc(handle, message, now),
                Err(e) => match e.decline_code() {
                    Some(code) => {
                        let version = self.decline_version(handle);
                        self.detach(handle, now, true);
                        self.decline(handle, version, code);
                    }
                    None => self.fail(handle, SocketError::Protocol(e), now),
                },
            }
        }
    }

    /// The version of a Decline sent now: 2 when a v2 exchange is under way.
    fn decline_version(&self, handle: SocketHandle) -> u8 {
        match self.sockets.get(&handle).map(|s| &s.phase) {
            Some(Phase::ClientAwaitAccept { proposal }) => proposal.version.min(2),
            Some(Phase::ServerAwaitConfirm { accept, .. }) => accept.version.min(2),
            _ => 2,
        }
    }

    /// A complete CLC message arrived on a handshaking socket.
    fn on_clc(&mut self, handle: SocketHandle, message: ClcMessage, now: Duration) {
        let Some(socket) = self.sockets.get_mut(&handle) else {
            return;
        };
        if let ClcMessage::Decline(decline) = &message {
            // §1: a Decline may replace any expected message; both sides fall back.
            self.counters.declines_received += 1;
            if decline.out_of_sync {
                // §2.5: the peer does not know the link group we used.
                if let Some(att) = &socket.attachment {
                    self.groups
                        .terminate(att.group, TerminateReason::OutOfSync, &self.devices);
                }
            }
            self.detach(handle, now, true);
            self.fall_back(handle, decline.code, true);
            return;
        }
        let phase = core::mem::replace(&mut socket.phase, Phase::Fallback);
        match (phase, message) {
            (Phase::ClientAwaitAccept { proposal }, ClcMessage::AcceptConfirm(accept))
                if accept.kind == AcceptConfirmKind::Accept =>
            {
                self.client_on_accept(handle, proposal, accept, now)
            }
            (Phase::ServerAwaitProposal, ClcMessage::Proposal(proposal)) => {
                self.server_on_proposal(handle, proposal, now)
            }
            (
                Phase::ServerAwaitConfirm {
                    proposal,
                    accept,
                    choice,
                },
                ClcMessage::AcceptConfirm(confirm),
            ) if confirm.kind == AcceptConfirmKind::Confirm => {
                self.server_on_confirm(handle, proposal, accept, choice, confirm, now)
            }
            (phase, message) => {
                log::warn!(
                    "socket {}: unexpected {} in {}",
                    handle.0,
                    message.message_type(),
                    phase.name()
                );
                if let Some(socket) = self.sockets.get_mut(&handle) {
                    socket.phase = phase;
                }
                self.fail(handle, SocketError::UnexpectedMessage, now);
            }
        }
    }

    fn own_dmb_desc(&self, dmb: &Dmb<D::Memory>, group: Option<LinkGroupId>) -> OwnDmb {
        OwnDmb {
            token: dmb.token.0,
            dmbe_size: self.dmbe_size,
            link_id: group.map_or(0, |g| g.0).to_be_bytes(),
        }
    }

    fn data_mode(&self, device: usize) -> DataMode {
        let nocopy = self
            .devices
            .get(device)
            .is_some_and(|d| d.supports_nocopy());
        if self.options.nocopy && nocopy {
            DataMode::NoCopy
        } else {
            DataMode::Copy
        }
    }

    /// Client, §1 step 3: the Accept arrived.
    fn client_on_accept(
        &mut self,
        handle: SocketHandle,
        proposal: ProposalRepr,
        accept: AcceptConfirmRepr,
        now: Duration,
    ) {
        let descs = self.device_descs();
        let version = negotiate::client_decline_version(&self.local, &descs, Some(&accept));
        let groups = &self.groups;
        let checked =
            negotiate::client_check_accept(&self.local, &descs, &proposal, &accept, |d, peer| {
                groups
                    .find(&LinkGroupKey {
                        device: d,
                        peer,
                        vlan: None,
                        role: Role::Client,
                    })
                    .is_some()
            });
        let choice = match checked {
            Ok(choice) => choice,
            Err(ClientError::Decline(code)) => return self.decline(handle, version, code),
            Err(ClientError::Protocol(e)) => {
                log::warn!("socket {}: bad Accept: {e:?}", handle.0);
                return self.fail(handle, SocketError::UnexpectedMessage, now);
            }
        };
        let key = LinkGroupKey {
            device: choice.device,
            peer: choice.peer_gid,
            vlan: None,
            role: Role::Client,
        };
        let dmb = match self.attach(handle, key, choice.create_group, now) {
            Ok(dmb) => dmb,
            Err(code) => return self.decline(handle, version, code),
        };
        let mode = self.data_mode(choice.device);
        let conn = SmcdConn::new(
            &self.devices[choice.device],
            dmb.clone(),
            DmbToken(choice.peer_token),
            choice.peer_dmb_len,
            mode,
        );
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                // §4.6: a client that cannot attach the peer DMB declines with MEM.
                log::warn!("socket {}: cannot set up the connection: {e}", handle.0);
                self.detach(handle, now, true);
                return self.decline(handle, version, DeclineCode::MEM);
            }
        };
        let group = self
            .sockets
            .get(&handle)
            .and_then(|s| s.attachment.as_ref())
            .map(|a| a.group);
        let own = self.own_dmb_desc(&dmb, group);
        let Some(confirm) = negotiate::build_confirm(&self.local, &descs, &choice, &own) else {
            self.detach(handle, now, true);
            return self.fail(handle, SocketError::Device, now);
        };
        if let Some(socket) = self.sockets.get_mut(&handle) {
            socket.queue_clc(&ClcMessage::AcceptConfirm(confirm));
        }
        // §1: the client is ACTIVE once the Confirm is sent.
        self.establish(
            handle,
            conn,
            Transport::Smcd {
                version: choice.version,
                first_contact: choice.create_group,
                device: choice.device,
                peer_gid: choice.peer_gid,
            },
        );
    }

    /// Server, §1 step 2: the Proposal arrived.
    fn server_on_proposal(&mut self, handle: SocketHandle, proposal: ProposalRepr, now: Duration) {
        let descs = self.device_descs();
        let devices = &self.devices;
        let selected = negotiate::server_select(&self.local, &descs, &proposal, |d, peer| {
            devices
                .get(d)
                .is_some_and(|dev| dev.query_remote_gid(peer, None))
        });
        let choice = match selected {
            Ok(choice) => choice,
            Err(code) => {
                let version = negotiate::server_decline_version(&proposal);
                return self.decline(handle, version, code);
            }
        };
        // Linux tries the candidates in order until a DMB can be registered.
        let mut last_code = DeclineCode::MEM;
        for candidate in choice.candidates.iter().copied() {
            let key = LinkGroupKey {
                device: candidate.device,
                peer: candidate.peer_gid,
                vlan: None,
                role: Role::Server,
            };
            // §2.5: reuse a matching group, else create one (first contact).
            let first_contact = self.groups.find(&key).is_none();
            let dmb = match self.attach(handle, key, first_contact, now) {
                Ok(dmb) => dmb,
                Err(code) => {
                    last_code = code;
                    continue;
                }
            };
            let group = self
                .sockets
                .get(&handle)
                .and_then(|s| s.attachment.as_ref())
                .map(|a| a.group);
            let own = self.own_dmb_desc(&dmb, group);
            let Some(accept) = negotiate::build_accept(
                &self.local,
                &descs,
                &choice,
                candidate,
                &own,
                first_contact,
            ) else {
                self.detach(handle, now, true);
                continue;
            };
            if let Some(socket) = self.sockets.get_mut(&handle) {
                socket.queue_clc(&ClcMessage::AcceptConfirm(accept));
                socket.deadline = now + self.options.clc_timeout;
                socket.set_phase(
                    handle,
                    Phase::ServerAwaitConfirm {
                        proposal,
                        accept,
                        choice,
                    },
                );
            }
            return;
        }
        self.decline(handle, choice.decline_version, last_code);
    }

    /// Server, §1 step 4: the Confirm arrived.
    fn server_on_confirm(
        &mut self,
        handle: SocketHandle,
        proposal: ProposalRepr,
        accept: AcceptConfirmRepr,
        choice: negotiate::ServerChoice,
        confirm: AcceptConfirmRepr,
        now: Duration,
    ) {
        let _ = proposal;
        let info = match negotiate::server_check_confirm(&choice, &confirm) {
            Ok(info) => info,
            Err(code) => {
                self.detach(handle, now, true);
                return self.decline(handle, choice.decline_version, code);
            }
        };
        let Some((device, dmb, peer_gid)) = self.sockets.get(&handle).and_then(|s| {
            let att = s.attachment.as_ref()?;
            let key = self.groups.get(att.group)?.key();
            Some((att.device, att.dmb.clone(), key.peer))
        }) else {
            return self.fail(handle, SocketError::Aborted, now);
        };
        let mode = self.data_mode(device);
        match SmcdConn::new(
            &self.devices[device],
            dmb,
            DmbToken(info.peer_token),
            info.peer_dmb_len,
            mode,
        ) {
            Ok(conn) => self.establish(
                handle,
                conn,
                Transport::Smcd {
                    version: choice.version,
                    first_contact: accept.first_contact,
                    device,
                    peer_gid,
                },
            ),
            // §4.6: a server that cannot attach fails the connection.
            Err(e) => self.fail(handle, SocketError::Conn(e), now),
        }
    }

    fn socket(&self, handle: SocketHandle) -> Result<&Socket<D, S>, SocketError> {
        match self.sockets.get(&handle) {
            Some(s) if !s.released => Ok(s),
            _ => Err(SocketError::InvalidHandle),
        }
    }

    fn device_of(&self, handle: SocketHandle) -> usize {
        self.sockets
            .get(&handle)
            .and_then(|s| s.attachment.as_ref())
            .map_or(0, |a| a.device)
    }

    /// Reads received bytes: `Ok(0)` only at end of stream (after every byte the peer
    /// sent before closing), `WouldBlock` when nothing is there yet or the handshake is
    /// still running.
    pub fn read(&mut self, handle: SocketHandle, buf: &mut [u8]) -> Result<usize, SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        match &mut socket.phase {
            Phase::Smcd(conn) => {
                let dev = &self.devices[device];
                let result = conn.read(dev, buf);
                let news = conn.take_wait_news();
                socket.wake_on(&news);
                match result {
                    Ok(n) => Ok(n),
                    Err(ConnError::WouldBlock) => Err(SocketError::WouldBlock),
                    Err(e) => Err(SocketError::Conn(e)),
                }
            }
            Phase::Fallback => match socket.stream.read(buf) {
                Ok(n) => {
                    socket.stats.bytes_rx += n as u64;
                    Ok(n)
                }
                Err(e) => Err(e.into()),
            },
            Phase::Failed(e) => Err(*e),
            _ => Err(SocketError::WouldBlock),
        }
    }

    /// Writes a prefix of `data`; `WouldBlock` when there is no room (or the handshake
    /// is still running). On fallback, queued CLC bytes (a Decline) go out first.
    pub fn write(&mut self, handle: SocketHandle, data: &[u8]) -> Result<usize, SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        match &mut socket.phase {
            Phase::Smcd(conn) => {
                let result = conn.write(&self.devices[device], data);
                // The re-read before WouldBlock may have found news for any waiter.
                let news = conn.take_wait_news();
                socket.wake_on(&news);
                match result {
                    Ok(n) => Ok(n),
                    Err(ConnError::WouldBlock) => Err(SocketError::WouldBlock),
                    Err(e) => Err(SocketError::Conn(e)),
                }
            }
            Phase::Fallback => {
                if !socket.flush()? {
                    return Err(SocketError::WouldBlock);
                }
                let n = socket.stream.write(data)?;
                socket.stats.bytes_tx += n as u64;
                Ok(n)
            }
            Phase::Failed(e) => Err(*e),
            _ => Err(SocketError::WouldBlock),
        }
    }

    /// Shuts down the write direction (SMC-D: CDC `done_writing`; fallback: TCP FIN).
    /// Reads keep working.
    pub fn shutdown(&mut self, handle: SocketHandle) -> Result<(), SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        match &mut socket.phase {
            Phase::Smcd(conn) => conn
                .shutdown_write(&self.devices[device])
                .map_err(SocketError::Conn),
            Phase::Fallback => {
                if !socket.flush()? {
                    return Err(SocketError::WouldBlock);
                }
                Ok(socket.stream.shutdown_write()?)
            }
            Phase::Failed(e) => Err(*e),
            _ => Err(SocketError::WouldBlock),
        }
    }

    /// Closes the socket; the handle becomes invalid at once. SMC-D: the final close
    /// CDC goes out (§5) and the TCP stream is closed; the DMB returns to its link
    /// group when the peer's close arrives ([`Stack::poll`]). A handshake in progress
    /// is abandoned.
    pub fn close(&mut self, handle: SocketHandle, now: Duration) -> Result<(), SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        socket.released = true;
        socket.close_deadline = now.saturating_add(self.options.close_timeout);
        self.counters.closes += 1;
        match &mut socket.phase {
            Phase::Smcd(conn) => {
                if let Err(e) = conn.close(&self.devices[device]) {
                    log::debug!("socket {}: close CDC failed: {e}", handle.0);
                }
                // Linux shuts the TCP connection down during the active close (§1, §5).
                let _ = socket.stream.close();
                self.reap(handle, now);
            }
            Phase::Fallback => {
                // A queued Decline still goes out before the stream closes (poll).
                let _ = socket.flush();
                if socket.out.is_empty() {
                    let _ = socket.stream.close();
                    self.remove(handle);
                }
            }
            Phase::Failed(_) => self.remove(handle),
            _ => {
                self.detach(handle, now, true);
                if let Some(socket) = self.sockets.get_mut(&handle) {
                    let _ = socket.stream.close();
                }
                self.remove(handle);
            }
        }
        Ok(())
    }

    /// Aborts the socket: SMC-D sends an abort CDC (§5); the TCP stream is closed. The
    /// handle becomes invalid.
    pub fn abort(&mut self, handle: SocketHandle, now: Duration) -> Result<(), SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        if let Phase::Smcd(conn) = &mut socket.phase {
            conn.abort(&self.devices[device]);
            socket.released = true;
            let _ = socket.stream.close();
            self.reap(handle, now);
            return Ok(());
        }
        self.close(handle, now)
    }

    /// Whether a `read` would not return `WouldBlock` (data, end of stream or error).
    pub fn readable(&self, handle: SocketHandle) -> bool {
        let Ok(socket) = self.socket(handle) else {
            return true;
        };
        match &socket.phase {
            Phase::Smcd(conn) => {
                conn.readable_bytes() > 0 || conn.is_eof() || conn.abort_reason().is_some()
            }
            Phase::Fallback => socket.stream.read_ready(),
            Phase::Failed(_) => true,
            _ => false,
        }
    }

    /// Whether a `write` would not return `WouldBlock` (room, or an error to report).
    pub fn writable(&self, handle: SocketHandle) -> bool {
        let Ok(socket) = self.socket(handle) else {
            return true;
        };
        match &socket.phase {
            Phase::Smcd(conn) => !conn.may_write() || conn.write_space() > 0,
            Phase::Fallback => socket.out.is_empty() && socket.stream.write_ready(),
            Phase::Failed(_) => true,
            _ => false,
        }
    }

    /// The socket's coarse state; `Closed` for a handle the application closed.
    pub fn state(&self, handle: SocketHandle) -> SocketState {
        match self.socket(handle) {
            Err(_) => SocketState::Closed,
            Ok(socket) => match &socket.phase {
                Phase::Smcd(_) => SocketState::Smcd,
                Phase::Fallback => SocketState::Fallback,
                Phase::Failed(_) => SocketState::Failed,
                _ => SocketState::Handshaking,
            },
        }
    }

    /// Whether this side connected (client) or accepted (server).
    pub fn role(&self, handle: SocketHandle) -> Option<Role> {
        Some(self.socket(handle).ok()?.role)
    }

    /// The error a failed socket reports, if it failed.
    pub fn error(&self, handle: SocketHandle) -> Option<SocketError> {
        match &self.socket(handle).ok()?.phase {
            Phase::Failed(e) => Some(*e),
            _ => None,
        }
    }

    /// SMC-D or TCP (with the reason); `None` while the handshake runs or after a
    /// failed handshake.
    pub fn transport(&self, handle: SocketHandle) -> Option<Transport> {
        self.socket(handle).ok()?.transport
    }

    /// The SMC-D data path's close state (§5), for an established SMC-D socket.
    pub fn conn_state(&self, handle: SocketHandle) -> Option<crate::conn::State> {
        match &self.socket(handle).ok()?.phase {
            Phase::Smcd(conn) => Some(conn.state()),
            _ => None,
        }
    }

    /// The socket's counters (handshake bytes, data, CDCs, signals).
    pub fn socket_stats(&self, handle: SocketHandle) -> Option<ConnStats> {
        let socket = self.socket(handle).ok()?;
        let mut stats = socket.stats;
        if let Phase::Smcd(conn) = &socket.phase {
            add_conn_counters(&mut stats, conn.counters());
        }
        Some(stats)
    }

    /// A snapshot of the global counters, with the link-group counts and the data
    /// totals of every socket (freed and live).
    pub fn counters(&self) -> GlobalCounters {
        let mut c = self.counters.clone();
        let lg = self.groups.counts();
        c.link_groups_created = lg.created;
        c.link_groups_reused = lg.reused;
        c.link_groups_freed = lg.freed;
        c.link_groups_terminated = lg.terminated;
        c.dmbs_registered = lg.dmbs_registered;
        c.dmbs_reused = lg.dmbs_reused;
        c.dmbs_freed = lg.dmbs_freed;
        c.dmb_exhaustions = lg.dmb_exhaustions;
        let mut data = self.retired;
        for socket in self.sockets.values() {
            let mut stats = socket.stats;
            if let Phase::Smcd(conn) = &socket.phase {
                add_conn_counters(&mut stats, conn.counters());
            }
            data.accumulate(&stats);
        }
        c.data = data;
        c
    }

    /// Wakes `waker` when the socket may have become readable (data, end of stream,
    /// handshake over, error). One waker per direction; a new one replaces the old.
    pub fn register_read_waker(&mut self, handle: SocketHandle, waker: &Waker) {
        if let Some(socket) = self.sockets.get_mut(&handle) {
            match &mut socket.read_waker {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
    }

    /// Wakes `waker` when the socket may have become writable.
    pub fn register_write_waker(&mut self, handle: SocketHandle, waker: &Waker) {
        if let Some(socket) = self.sockets.get_mut(&handle) {
            match &mut socket.write_waker {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
    }

    /// Frees every link group without connections now (e.g. at shutdown); returns how
    /// many were freed.
    pub fn free_unused_link_groups(&mut self) -> usize {
        self.groups.free_unused(&self.devices)
    }

    fn conn_mut(&mut self, handle: SocketHandle) -> Result<(&D, &mut SmcdConn<D>), SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        match &mut socket.ok_or(SocketError::InvalidHandle)?.phase {
            Phase::Smcd(conn) => Ok((&self.devices[device], conn)),
            Phase::Failed(e) => Err(*e),
            Phase::Fallback => Err(SocketError::NotSmcd),
            _ => Err(SocketError::WouldBlock),
        }
    }

    /// Zero-copy send (SMC-D): a window of up to `want` bytes straight in the peer's
    /// DMB ring (no-copy mode, §4.6). Fill it, then [`Stack::commit`] what was filled.
    pub fn reserve(
        &mut self,
        handle: SocketHandle,
        want: usize,
    ) -> Result<ShmSlice<'_, D::Memory>, SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        let conn = match &mut socket.phase {
            Phase::Smcd(conn) => conn,
            Phase::Failed(e) => return Err(*e),
            Phase::Fallback => return Err(SocketError::NotSmcd),
            _ => return Err(SocketError::WouldBlock),
        };
        let dev = &self.devices[device];
        // A full window makes the reservation re-read the CDC before it reports
        // WouldBlock; wake whoever that re-read concerns before handing out the window.
        let first = conn.reserve(dev, want).map(|_| ());
        let news = conn.take_wait_news();
        socket.wake_on(&news);
        first.map_err(map_conn)?;
        let Phase::Smcd(conn) = &mut socket.phase else {
            return Err(SocketError::WouldBlock);
        };
        // Space was found: this second call re-reads nothing and counts nothing new.
        conn.reserve(dev, want).map_err(map_conn)
    }

    /// Publishes `n` bytes of the last [`Stack::reserve`] window (sends the CDC).
    pub fn commit(&mut self, handle: SocketHandle, n: usize) -> Result<(), SocketError> {
        let (dev, conn) = self.conn_mut(handle)?;
        conn.commit(dev, n).map_err(map_conn)
    }

    /// Zero-copy receive (SMC-D): the received bytes at the read position, up to the
    /// ring end, as a window into the own DMB. Then [`Stack::consume`].
    pub fn peek(&mut self, handle: SocketHandle) -> Result<ShmSlice<'_, D::Memory>, SocketError> {
        let device = self.device_of(handle);
        let socket = self.sockets.get_mut(&handle).filter(|s| !s.released);
        let socket = socket.ok_or(SocketError::InvalidHandle)?;
        let conn = match &mut socket.phase {
            Phase::Smcd(conn) => conn,
            Phase::Failed(e) => return Err(*e),
            Phase::Fallback => return Err(SocketError::NotSmcd),
            _ => return Err(SocketError::WouldBlock),
        };
        if conn.readable_bytes() == 0 && !conn.is_eof() {
            // An empty window may precede a sleep: publish and re-read first.
            conn.prepare_wait_read(&self.devices[device]);
            let news = conn.take_wait_news();
            socket.wake_on(&news);
        }
        let Phase::Smcd(conn) = &socket.phase else {
            return Err(SocketError::WouldBlock);
        };
        conn.peek().map_err(map_conn)
    }

    /// Marks `n` bytes seen with [`Stack::peek`] as consumed.
    pub fn consume(&mut self, handle: SocketHandle, n: usize) -> Result<(), SocketError> {
        let (dev, conn) = self.conn_mut(handle)?;
        conn.consume(dev, n).map_err(map_conn)
    }
}

fn map_conn(e: ConnError) -> SocketError {
    match e {
        ConnError::WouldBlock => SocketError::WouldBlock,
        e => SocketError::Conn(e),
    }
}

/// Adds a data path's counters into a socket's statistics.
fn add_conn_counters(stats: &mut ConnStats, c: &ConnCounters) {
    stats.accumulate(&ConnStats {
        bytes_tx: c.bytes_tx,
        bytes_rx: c.bytes_rx,
        cdcs_tx: c.cdc_tx,
        cdcs_rx: c.cdc_rx,
        signals_tx: c.signals_tx,
        ..ConnStats::default()
    });
}

/// Shared access to a [`Stack`] for the async wrappers: implemented for
/// `core::cell::RefCell<Stack>` (single-threaded executors, tests) and
/// `spin::Mutex<Stack>` (the kernel; take care to not hold it in an interrupt handler).
pub trait StackCell {
    /// The device type.
    type Device: IsmDevice;
    /// The stream type.
    type Stream: ByteStream;
    /// Runs `f` with exclusive access to the stack.
    fn with<R>(&self, f: impl FnOnce(&mut Stack<Self::Device, Self::Stream>) -> R) -> R;
}

impl<D: IsmDevice, S: ByteStream> StackCell for core::cell::RefCell<Stack<D, S>> {
    type Device = D;
    type Stream = S;
    fn with<R>(&self, f: impl FnOnce(&mut Stack<D, S>) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

impl<D: IsmDevice, S: ByteStream> StackCell for spin::Mutex<Stack<D, S>> {
    type Device = D;
    type Stream = S;
    fn with<R>(&self, f: impl FnOnce(&mut Stack<D, S>) -> R) -> R {
        f(&mut self.lock())
    }
}

/// A socket handle as `embedded_io_async::{Read, Write}`.
///
/// The futures never drive the stack themselves: they try the operation and, on
/// `WouldBlock`, register the task's waker with the socket and return `Pending`.
/// Whoever owns the stack calls [`Stack::poll`] on device interrupts and stream events;
/// that wakes the task.
pub struct AsyncSocket<'a, C: StackCell> {
    cell: &'a C,
    handle: SocketHandle,
}

impl<'a, C: StackCell> AsyncSocket<'a, C> {
    /// Wraps `handle` of the stack in `cell`.
    pub fn new(cell: &'a C, handle: SocketHandle) -> Self {
        AsyncSocket { cell, handle }
    }

    /// The wrapped handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// Waits until the handshake is over and returns the transport, or the error of a
    /// failed handshake.
    pub async fn established(&mut self) -> Result<Transport, SocketError> {
        let handle = self.handle;
        core::future::poll_fn(|cx| {
            self.cell.with(|stack| {
                if let Some(t) = stack.transport(handle) {
                    return core::task::Poll::Ready(Ok(t));
                }
                if let Some(e) = stack.error(handle) {
                    return core::task::Poll::Ready(Err(e));
                }
                if stack.state(handle) == SocketState::Closed {
                    return core::task::Poll::Ready(Err(SocketError::InvalidHandle));
                }
                stack.register_read_waker(handle, cx.waker());
                core::task::Poll::Pending
            })
        })
        .await
    }

    /// Shuts down the write direction, waiting while it would block.
    pub async fn shutdown(&mut self) -> Result<(), SocketError> {
        let handle = self.handle;
        core::future::poll_fn(|cx| {
            self.cell.with(|stack| match stack.shutdown(handle) {
                Err(SocketError::WouldBlock) => {
                    stack.register_write_waker(handle, cx.waker());
                    core::task::Poll::Pending
                }
                r => core::task::Poll::Ready(r),
            })
        })
        .await
    }

    /// Closes the socket (see [`Stack::close`]); `now` is the caller's clock.
    pub fn close(self, now: Duration) -> Result<(), SocketError> {
        self.cell.with(|stack| stack.close(self.handle, now))
    }
}

impl<C: StackCell> embedded_io::ErrorType for AsyncSocket<'_, C> {
    type Error = SocketError;
}

impl<C: StackCell> embedded_io_async::Read for AsyncSocket<'_, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SocketError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        core::future::poll_fn(|cx| {
            self.cell.with(|stack| match stack.read(handle, buf) {
                Err(SocketError::WouldBlock) => {
                    stack.register_read_waker(handle, cx.waker());
                    core::task::Poll::Pending
                }
                r => core::task::Poll::Ready(r),
            })
        })
        .await
    }
}

impl<C: StackCell> embedded_io_async::Write for AsyncSocket<'_, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, SocketError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        core::future::poll_fn(|cx| {
            self.cell.with(|stack| match stack.write(handle, buf) {
                Err(SocketError::WouldBlock) => {
                    stack.register_write_waker(handle, cx.waker());
                    core::task::Poll::Pending
                }
                r => core::task::Poll::Ready(r),
            })
        })
        .await
    }

    /// SMC-D writes land in the peer's DMB synchronously and fallback writes are in the
    /// TCP stack's hands: nothing is buffered here beyond a queued CLC Decline, which
    /// the stack flushes before any application byte.
    async fn flush(&mut self) -> Result<(), SocketError> {
        Ok(())
    }
}

/// One of two ISM device types, so a stack can own e.g. an ivshmem device and a
/// loopback device (`Stack<EitherDevice<Ivshmem, LoopbackIsm>, _>`) without trait
/// objects. Every operation is forwarded to the wrapped device.
pub enum EitherDevice<A, B> {
    /// A device of the first type.
    A(A),
    /// A device of the second type.
    B(B),
}

/// The DMB memory of an [`EitherDevice`]: the memory type of whichever device owns it.
#[derive(Clone, Debug)]
pub enum EitherMemory<MA, MB> {
    /// Memory of an `EitherDevice::A` device.
    A(MA),
    /// Memory of an `EitherDevice::B` device.
    B(MB),
}

impl<MA: SharedMemory, MB: SharedMemory> SharedMemory for EitherMemory<MA, MB> {
    fn len(&self) -> usize {
        match self {
            EitherMemory::A(m) => m.len(),
            EitherMemory::B(m) => m.len(),
        }
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        match self {
            EitherMemory::A(m) => m.read(offset, buf),
            EitherMemory::B(m) => m.read(offset, buf),
        }
    }
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        match self {
            EitherMemory::A(m) => m.write(offset, data),
            EitherMemory::B(m) => m.write(offset, data),
        }
    }
    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        match self {
            EitherMemory::A(m) => m.fill(offset, len, value),
            EitherMemory::B(m) => m.fill(offset, len, value),
        }
    }
    fn load_u64(
        &self,
        offset: usize,
        order: core::sync::atomic::Ordering,
    ) -> Result<u64, ShmError> {
        match self {
            EitherMemory::A(m) => m.load_u64(offset, order),
            EitherMemory::B(m) => m.load_u64(offset, order),
        }
    }
    fn store_u64(
        &self,
        offset: usize,
        value: u64,
        order: core::sync::atomic::Ordering,
    ) -> Result<(), ShmError> {
        match self {
            EitherMemory::A(m) => m.store_u64(offset, value, order),
            EitherMemory::B(m) => m.store_u64(offset, value, order),
        }
    }
}

fn map_dmb<M, N>(dmb: Dmb<M>, f: impl FnOnce(M) -> N) -> Dmb<N> {
    Dmb {
        token: dmb.token,
        index: dmb.index,
        memory: f(dmb.memory),
    }
}

impl<A: IsmDevice, B: IsmDevice> IsmDevice for EitherDevice<A, B> {
    type Memory = EitherMemory<A::Memory, B::Memory>;

    fn local_gid(&self) -> Gid {
        match self {
            EitherDevice::A(d) => d.local_gid(),
            EitherDevice::B(d) => d.local_gid(),
        }
    }
    fn chid(&self) -> u16 {
        match self {
            EitherDevice::A(d) => d.chid(),
            EitherDevice::B(d) => d.chid(),
        }
    }
    fn supports_v2(&self) -> bool {
        match self {
            EitherDevice::A(d) => d.supports_v2(),
            EitherDevice::B(d) => d.supports_v2(),
        }
    }
    fn query_remote_gid(&self, remote: Gid, vlan: Option<u16>) -> bool {
        match self {
            EitherDevice::A(d) => d.query_remote_gid(remote, vlan),
            EitherDevice::B(d) => d.query_remote_gid(remote, vlan),
        }
    }
    fn register_dmb(
        &self,
        len: usize,
        remote: Gid,
    ) -> Result<Dmb<Self::Memory>, crate::ism::IsmError> {
        match self {
            EitherDevice::A(d) => d
                .register_dmb(len, remote)
                .map(|m| map_dmb(m, EitherMemory::A)),
            EitherDevice::B(d) => d
                .register_dmb(len, remote)
                .map(|m| map_dmb(m, EitherMemory::B)),
        }
    }
    fn unregister_dmb(&self, token: DmbToken) -> Result<(), crate::ism::IsmError> {
        match self {
            EitherDevice::A(d) => d.unregister_dmb(token),
            EitherDevice::B(d) => d.unregister_dmb(token),
        }
    }
    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), crate::ism::IsmError> {
        match self {
            EitherDevice::A(d) => d.move_data(token, offset, data, signal),
            EitherDevice::B(d) => d.move_data(token, offset, data, signal),
        }
    }
    fn supports_nocopy(&self) -> bool {
        match self {
            EitherDevice::A(d) => d.supports_nocopy(),
            EitherDevice::B(d) => d.supports_nocopy(),
        }
    }
    fn attach_dmb(&self, token: DmbToken) -> Result<Self::Memory, crate::ism::IsmError> {
        match self {
            EitherDevice::A(d) => d.attach_dmb(token).map(EitherMemory::A),
            EitherDevice::B(d) => d.attach_dmb(token).map(EitherMemory::B),
        }
    }
    fn detach_dmb(&self, token: DmbToken) -> Result<(), crate::ism::IsmError> {
        match self {
            EitherDevice::A(d) => d.detach_dmb(token),
            EitherDevice::B(d) => d.detach_dmb(token),
        }
    }
    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent)) {
        match self {
            EitherDevice::A(d) => d.poll_events(sink),
            EitherDevice::B(d) => d.poll_events(sink),
        }
    }
}
