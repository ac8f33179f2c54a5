//! The sans-IO data path of one established SMC-D connection: window, CDC, close/abort.
//!
//! An [`SmcdConn`] owns one receive DMB (registered by the caller, written by the peer)
//! and knows the token and size of the peer's DMB. It never blocks, never reads a clock
//! and holds no device: every operation that touches the ISM device takes it as `dev`.
//!
//! **Sending** (protocol-reference §4.4, §4.5): [`SmcdConn::write`] copies at most
//! [`SmcdConn::write_space`] bytes (peer ring size minus the bytes written but not yet
//! acknowledged by the peer's consumer cursor) into the peer's ring at `32 + prod.count`,
//! wrapping at the ring end (one or two `move_data` calls with signal off), then writes
//! the 32-byte CDC at offset 0 (signalled when the peer may be asleep: "Signal
//! suppression" below). `write_blocked` goes into that CDC when
//! the caller wanted to write at least as much as the space. There is no send buffer
//! inside the connection: in both modes the window is the peer's free ring space, and
//! space is freed only when the peer's consumer cursor advances. In **no-copy** mode
//! (§4.6) the peer DMB is attached and data is copied straight into it (no `move_data`
//! for data); [`SmcdConn::reserve`]/[`SmcdConn::commit`] hand out the ring window itself.
//!
//! **Receiving:** the owner calls [`SmcdConn::poll`] when the device reports
//! `DmbSignalled` for [`SmcdConn::own_index`] (or whenever it likes). `poll` loads the
//! CDC from the own DMB with atomic 64-bit loads, **validates** it (type byte; producer
//! cursor inside the ring, not moving backwards, not claiming more bytes than the free
//! space we advertised; consumer cursor inside the peer ring, not moving backwards, not
//! acknowledging more than we sent; no data after the peer's end of stream) and aborts
//! the connection with a precise [`AbortReason`] on any violation. Reads copy out of
//! `32 + cons.count` and wrap at `32 + ring`; nothing is ever accessed outside the DMB.
//!
//! **Consumer-cursor updates** follow Linux (§4.5): after the application consumed data,
//! a CDC is sent when the peer asked for one (`cons_curs_upd_req`), or when more than
//! `min(ring / 10, SOCK_MIN_SNDBUF / 2)` bytes are unconfirmed and either the peer set
//! `write_blocked` or the peer's view of our free space is at most half the ring. We use
//! the **exact** free space the peer sees (`ring − (last producer − last sent consumer)`)
//! where Linux uses a cursor difference that only fires after the producer wrapped; this
//! changes timing only, never the format.
//!
//! **Signal suppression** (a deviation in *when* we signal, not in the format; no new
//! flag). A side sleeps only after an operation reported `WouldBlock`, and then wakes
//! only on a signal. Every CDC that may end such a sleep is therefore written in
//! `send_cdc_lazy`: stored without a signal, a `SeqCst` fence, a load of the peer's
//! CDC from our own DMB, and the signal (the same CDC written again, counted once)
//! only if the peer may be asleep waiting for it:
//!
//! - *Reader asleep* (the CDC publishes new data): the peer's consumer cursor equals
//!   our producer cursor before this data (it had consumed everything we had sent).
//! - *Writer asleep* (the CDC advances our consumer cursor, freeing peer space): the
//!   peer's last CDC carries `write_blocked` (seen before the store or by the load).
//!
//! The sleeper's duty, before it reports `WouldBlock`: a reader
//! ([`SmcdConn::prepare_wait_read`], run by [`SmcdConn::read`] and by the socket
//! layer's `peek` on an empty window) publishes its consumer cursor (`send_cdc_lazy`,
//! only if the peer does not have it yet), fences, and re-reads its own CDC; a writer
//! ([`SmcdConn::prepare_wait_write`], run by [`SmcdConn::write`] and
//! [`SmcdConn::reserve`] on a full window) makes sure its last CDC carries
//! `write_blocked` (publishing one if not), fences, and re-reads its own CDC for a
//! newer consumer cursor. Consumer-cursor updates of the §4.5 rule, close and abort
//! CDCs always signal.
//!
//! Race argument (store-buffering/Dekker: each side stores, fences with `SeqCst`,
//! then loads the other's location; at least one of the two loads sees the other's
//! store). Reads: let the reader's last publication before it sleeps be `c` and its
//! re-read find producer cursor `c` (empty ring). Take our first CDC whose data goes
//! beyond `c`: its producer store is not seen by that re-read, so our load after it
//! sees the reader's `c` (it publishes nothing newer while asleep). `prod_before <= c`
//! (this is our first CDC beyond `c`) and `c <= prod_before` (the reader cannot have
//! consumed what this CDC publishes), so `c == prod_before` and we signal.
//! Writes: let the writer's re-read before it sleeps find consumer cursor `c` (no
//! space). The reader's first CDC with a consumer cursor beyond `c` is not seen by
//! that re-read, so the reader's load after it sees the writer's `write_blocked` (the
//! writer stored it before its fence) and signals. All of the reader's CDCs that
//! advance its consumer cursor either always signal or go through `send_cdc_lazy`,
//! so there is no third path. Both loads may succeed: one spurious signal, harmless.
//! A side that never reaches `WouldBlock` never sleeps and needs no signal.
//!
//! The d148cc9 version had only the read half: a writer computed "no space" from a
//! stale consumer cursor and slept without re-reading its CDC, while the reader's
//! signal-less publication in `prepare_wait_read` had already freed the window, so
//! both slept (the 1 KiB stream stall of `bench --quick`; `tests/signal_model.rs`
//! reproduces it: both asleep after exactly one 64 KiB window). The writer's re-read
//! is what fixes it. The `write_blocked` signal on the reader's side is, for the
//! current §4.5 rule, a second line: its `peer_view_free <= ring / 2` clause already
//! signals the update that frees a full window (the model finds no lost wake-up with
//! that signal removed); it keeps the argument above independent of the update rule.
//!
//! First CDC and reused DMBs: the own DMB is zeroed before a connection uses it (new
//! registration, or the pool zeroes it, §2.5), so before the peer's first CDC the load
//! finds type byte 0 and the peer's consumer cursor is zero, not blocked; an
//! unreadable CDC counts as "may be asleep" (signal). A Linux peer signals every CDC
//! anyway, and our signal-less CDCs are plain CDCs it processes on its next poll.
//!
//! **Close and abort** follow the Linux state table (§5); every transition goes through
//! one `set_state` that traces `old=>new`. Urgent data (MSG_OOB) is not implemented: the
//! urgent flags are never sent and are ignored on receive.

use core::cmp::min;
use core::fmt;
use core::sync::atomic::{fence, Ordering};

use crate::cursor::{Cursor, CursorError, RingSize, DMB_HEADER_LEN};
use crate::ism::{Dmb, DmbToken, IsmDevice, IsmError};
use crate::shm::{SharedMemory, ShmError, ShmSlice};
use crate::wire::cdc::{CdcError, CdcRepr, ConnStateFlags, ProducerFlags};

/// Half of Linux's `SOCK_MIN_SNDBUF` (`2 * (2048 + sizeof(struct sk_buff))`, ≈ 4.6 KiB
/// on x86_64 builds): the upper bound of the consumer-update threshold (§4.5).
pub const SOCK_MIN_SNDBUF_HALF: u32 = 2304;

/// Connection states, with Linux's names (`enum smc_state`, protocol-reference §5).
/// `INIT` and `LISTEN` belong to the socket layer; a connection starts `ACTIVE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Established; both directions open.
    Active,
    /// We sent `done_writing` or a final close; waiting for the peer.
    PeerCloseWait1,
    /// We shut down writing and the peer did too; waiting for its close.
    PeerCloseWait2,
    /// The peer shut down writing or closed; the application has not closed yet.
    AppCloseWait1,
    /// As `AppCloseWait1`, and we shut down writing too.
    AppCloseWait2,
    /// The peer closed after our shutdown; waiting for the application's close.
    AppFinCloseWait,
    /// We closed after the peer's shutdown; waiting for the peer's close.
    PeerFinCloseWait,
    /// Aborted locally; transient on the way to `Closed`.
    PeerAbortWait,
    /// The peer aborted; waiting for the application's close.
    ProcessAbort,
    /// Finished; the connection may be freed.
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Active => "ACTIVE",
            State::PeerCloseWait1 => "PEERCLOSEWAIT1",
            State::PeerCloseWait2 => "PEERCLOSEWAIT2",
            State::AppCloseWait1 => "APPCLOSEWAIT1",
            State::AppCloseWait2 => "APPCLOSEWAIT2",
            State::AppFinCloseWait => "APPFINCLOSEWAIT",
            State::PeerFinCloseWait => "PEERFINCLOSEWAIT",
            State::PeerAbortWait => "PEERABORTWAIT",
            State::ProcessAbort => "PROCESSABORT",
            State::Closed => "CLOSED",
        })
    }
}

/// How data reaches the peer's DMB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// Every byte goes through `move_data`.
    Copy,
    /// The peer DMB is attached (`attach_dmb`) and written directly (§4.6).
    NoCopy,
}

/// Why a connection was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// The application called [`SmcdConn::abort`].
    Local,
    /// The peer sent `peer_conn_abort`.
    PeerAbort,
    /// The peer device is gone (ISM GID event, peer shutdown, link group terminated).
    PeerGone,
    /// `move_data` towards the peer failed.
    MoveData(IsmError),
    /// Reading our own DMB failed (it is smaller than the connection believes).
    ShmAccess(ShmError),
    /// The CDC type byte in our DMB is not `0xFE`.
    UnknownCdcType(u8),
    /// The peer's producer cursor is impossible: outside our ring, moved backwards,
    /// or claims more bytes than the free space we advertised.
    BadProducerCursor(CursorError),
    /// The peer's consumer cursor is impossible: outside its ring, moved backwards, or
    /// acknowledges more than we sent.
    BadConsumerCursor(CursorError),
    /// The peer advanced its producer cursor after it had signalled end of stream.
    DataAfterEndOfStream,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::Local => f.write_str("aborted by the application"),
            AbortReason::PeerAbort => f.write_str("aborted by the peer"),
            AbortReason::PeerGone => f.write_str("peer device gone"),
            AbortReason::MoveData(e) => write!(f, "move_data to the peer failed: {e}"),
            AbortReason::ShmAccess(e) => write!(f, "own DMB access failed: {e}"),
            AbortReason::UnknownCdcType(t) => write!(f, "unknown CDC type byte {t:#04x}"),
            AbortReason::BadProducerCursor(e) => write!(f, "bad producer cursor: {e}"),
            AbortReason::BadConsumerCursor(e) => write!(f, "bad consumer cursor: {e}"),
            AbortReason::DataAfterEndOfStream => {
                f.write_str("peer sent data after its end of stream")
            }
        }
    }
}

/// Why a connection operation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// Nothing to read yet / no space to write yet; retry after the next signal.
    WouldBlock,
    /// Writing after our own `shutdown_write` or `close`.
    WriteShutdown,
    /// Writing after the peer closed the connection (Linux: ECONNRESET).
    PeerClosed,
    /// The connection was aborted (Linux: ECONNRESET), with the reason.
    ConnectionReset(AbortReason),
    /// The application already closed the connection.
    Closed,
    /// Zero-copy send needs no-copy mode.
    NoCopyUnavailable,
    /// Bad argument (commit/consume more than available, DMB too small, ...).
    InvalidArgument,
    /// A device operation failed while setting up the connection.
    Device(IsmError),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::WouldBlock => f.write_str("operation would block"),
            ConnError::WriteShutdown => f.write_str("writing side is shut down"),
            ConnError::PeerClosed => f.write_str("peer closed the connection"),
            ConnError::ConnectionReset(r) => write!(f, "connection reset: {r}"),
            ConnError::Closed => f.write_str("connection closed by the application"),
            ConnError::NoCopyUnavailable => f.write_str("zero-copy send needs no-copy mode"),
            ConnError::InvalidArgument => f.write_str("invalid argument"),
            ConnError::Device(e) => write!(f, "device error: {e}"),
        }
    }
}

/// Per-connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Payload bytes written into the peer's ring.
    pub bytes_tx: u64,
    /// Payload bytes consumed by the application.
    pub bytes_rx: u64,
    /// CDCs written to the peer.
    pub cdc_tx: u64,
    /// New CDCs found in the own DMB by `poll`.
    pub cdc_rx: u64,
    /// Signals raised towards the peer.
    pub signals_tx: u64,
    /// `move_data` calls for payload (copy mode).
    pub data_moves: u64,
    /// CDCs sent only to update the consumer cursor.
    pub cons_updates_tx: u64,
    /// Writes that wanted at least the available space (`write_blocked` set).
    pub write_blocked: u64,
    /// Writes refused with `WouldBlock` (no space at all).
    pub would_block: u64,
    /// Consumer-update requests from the peer that were answered.
    pub cons_upd_req_rx: u64,
    /// Data CDCs written without a signal (the peer was still reading).
    pub signals_suppressed: u64,
    /// CDCs published before reporting `WouldBlock` (a reader's consumer cursor, a
    /// writer's `write_blocked`).
    pub wait_publishes: u64,
}

/// What a [`SmcdConn::poll`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// A new CDC was found and processed.
    pub new_cdc: bool,
    /// Bytes that became readable.
    pub new_bytes: u32,
    /// Peer-ring space freed by the peer's consumer cursor.
    pub space_freed: u32,
    /// Space was freed while a write was waiting for it (`write_blocked` was set):
    /// the writer should be woken.
    pub writable_again: bool,
    /// The state changed (close flags received, or the connection aborted).
    pub state_changed: bool,
    /// A CDC was sent in response (consumer-cursor update).
    pub cdc_sent: bool,
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    len: u32,
    wanted_at_least_space: bool,
}

/// One SMC-D connection's data path. See the module documentation.
pub struct SmcdConn<D: IsmDevice> {
    own: Dmb<D::Memory>,
    own_ring: RingSize,
    peer_token: DmbToken,
    peer_ring: RingSize,
    /// The attached peer DMB in no-copy mode.
    peer_memory: Option<D::Memory>,

    /// How far we wrote into the peer's ring.
    prod: Cursor,
    /// The peer's last consumer cursor: how much of our data it acknowledged.
    peer_cons: Cursor,
    /// Producer flags of our next CDC (`write_blocked`).
    tx_prod_flags: ProducerFlags,
    /// Connection-state flags we have sent (sticky, as Linux keeps them).
    tx_conn_flags: ConnStateFlags,

    /// The peer's last producer cursor over our ring.
    rx_prod: Cursor,
    /// How far the application consumed our ring.
    cons: Cursor,
    /// The consumer cursor in the last CDC we sent.
    cons_sent: Cursor,
    /// Producer flags of the last CDC received.
    rx_prod_flags: ProducerFlags,
    /// Connection-state flags the peer has sent so far (accumulated).
    rx_conn_flags: ConnStateFlags,
    /// The last CDC processed (to tell new CDCs from the one already seen).
    last_rx: Option<CdcRepr>,

    reservation: Option<Reservation>,
    /// Accumulated outcome of the re-reads done before reporting `WouldBlock`.
    wait_news: PollOutcome,
    state: State,
    app_closed: bool,
    final_close_sent: bool,
    peer_unreachable: bool,
    abort_reason: Option<AbortReason>,
    counters: ConnCounters,
}

impl<D: IsmDevice> fmt::Debug for SmcdConn<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmcdConn")
            .field("own_token", &self.own.token)
            .field("peer_token", &self.peer_token)
            .field("state", &self.state)
            .field("prod", &self.prod)
            .field("peer_cons", &self.peer_cons)
            .field("rx_prod", &self.rx_prod)
            .field("cons", &self.cons)
            .finish()
    }
}

impl<D: IsmDevice> SmcdConn<D> {
    /// An established connection over the own DMB `own` (registered for the peer, still
    /// zeroed) and the peer's DMB `peer_token` of `peer_dmb_len` bytes (from the CLC
    /// Accept/Confirm). Any DMB length above 32 works, which lets tests use tiny rings.
    /// In [`DataMode::NoCopy`] the peer DMB is attached here; [`SmcdConn::finish`]
    /// detaches it.
    pub fn new(
        dev: &D,
        own: Dmb<D::Memory>,
        peer_token: DmbToken,
        peer_dmb_len: usize,
        mode: DataMode,
    ) -> Result<Self, ConnError> {
        let own_ring =
            RingSize::from_dmb_len(own.memory.len()).ok_or(ConnError::InvalidArgument)?;
        let peer_ring = RingSize::from_dmb_len(peer_dmb_len).ok_or(ConnError::InvalidArgument)?;
        let peer_memory = match mode {
            DataMode::Copy => None,
            DataMode::NoCopy => {
                if !dev.supports_nocopy() {
                    return Err(ConnError::NoCopyUnavailable);
                }
                let memory = dev.attach_dmb(peer_token).map_err(ConnError::Device)?;
                if memory.len() < peer_dmb_len {
                    // Best effort: the reference must not leak; the error is reported.
                    let _ = dev.detach_dmb(peer_token);
                    return Err(ConnError::InvalidArgument);
                }
                Some(memory)
            }
        };
        Ok(SmcdConn {
            own,
            own_ring,
            peer_token,
            peer_ring,
            peer_memory,
            prod: Cursor::ZERO,
            peer_cons: Cursor::ZERO,
            tx_prod_flags: ProducerFlags::empty(),
            tx_conn_flags: ConnStateFlags::empty(),
            rx_prod: Cursor::ZERO,
            cons: Cursor::ZERO,
            cons_sent: Cursor::ZERO,
            rx_prod_flags: ProducerFlags::empty(),
            rx_conn_flags: ConnStateFlags::empty(),
            last_rx: None,
            reservation: None,
            wait_news: PollOutcome::default(),
            state: State::Active,
            app_closed: false,
            final_close_sent: false,
            peer_unreachable: false,
            abort_reason: None,
            counters: ConnCounters::default(),
        })
    }

    /// Ends the connection's use of the device: detaches the peer DMB (no-copy mode) and
    /// hands back the own DMB for the caller to unregister or pool.
    pub fn finish(self, dev: &D) -> Dmb<D::Memory> {
        if self.peer_memory.is_some() {
            if let Err(e) = dev.detach_dmb(self.peer_token) {
                log::debug!("smcd conn: detach of {:?} failed: {e}", self.peer_token);
            }
        }
        self.own
    }

    // ----- readiness and introspection -----

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why the connection was aborted, if it was.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        self.abort_reason
    }

    /// Counters.
    pub fn counters(&self) -> &ConnCounters {
        &self.counters
    }

    /// Data mode.
    pub fn mode(&self) -> DataMode {
        if self.peer_memory.is_some() {
            DataMode::NoCopy
        } else {
            DataMode::Copy
        }
    }

    /// Device index of the own DMB: `DmbSignalled { index }` events with it are ours.
    pub fn own_index(&self) -> u32 {
        self.own.index
    }

    /// Token of the own DMB (sent to the peer in the CLC).
    pub fn own_token(&self) -> DmbToken {
        self.own.token
    }

    /// Token of the peer's DMB.
    pub fn peer_token(&self) -> DmbToken {
        self.peer_token
    }

    /// Size of the own data ring.
    pub fn own_ring(&self) -> RingSize {
        self.own_ring
    }

    /// Size of the peer's data ring.
    pub fn peer_ring(&self) -> RingSize {
        self.peer_ring
    }

    /// How far we wrote into the peer's ring.
    pub fn producer_cursor(&self) -> Cursor {
        self.prod
    }

    /// How far the application consumed the own ring.
    pub fn consumer_cursor(&self) -> Cursor {
        self.cons
    }

    /// Bytes waiting in the own ring.
    pub fn readable_bytes(&self) -> u32 {
        Cursor::diff(self.cons, self.rx_prod, self.own_ring)
    }

    /// Bytes written into the peer's ring that it has not acknowledged yet.
    pub fn unacknowledged_bytes(&self) -> u32 {
        Cursor::diff(self.peer_cons, self.prod, self.peer_ring)
    }

    /// Bytes that may be written now: peer ring size minus unacknowledged bytes.
    pub fn write_space(&self) -> u32 {
        self.peer_ring.get() - self.unacknowledged_bytes()
    }

    /// End of stream: the peer finished writing (done/closed/abort) and every byte it
    /// wrote before has been consumed.
    pub fn is_eof(&self) -> bool {
        self.peer_finished_writing() && self.readable_bytes() == 0
    }

    /// Whether a `write` may currently succeed (state-wise; space is separate).
    pub fn may_write(&self) -> bool {
        self.check_writable().is_ok()
    }

    fn peer_finished_writing(&self) -> bool {
        self.rx_conn_flags.intersects(
            ConnStateFlags::PEER_DONE_WRITING
                | ConnStateFlags::PEER_CONN_CLOSED
                | ConnStateFlags::PEER_CONN_ABORT,
        )
    }

    fn set_state(&mut self, new: State) {
        if self.state != new {
            log::trace!(
                "smcd conn {:#x}: state {}=>{}",
                self.own.token.0,
                self.state,
                new
            );
            self.state = new;
        }
    }

    // ----- sending -----

    fn check_writable(&self) -> Result<(), ConnError> {
        if let Some(reason) = self.abort_reason {
            return Err(ConnError::ConnectionReset(reason));
        }
        if self.app_closed {
            return Err(ConnError::Closed);
        }
        if self.tx_conn_flags.intersects(
            ConnStateFlags::PEER_DONE_WRITING
                | ConnStateFlags::PEER_CONN_CLOSED
                | ConnStateFlags::PEER_CONN_ABORT,
        ) {
            return Err(ConnError::WriteShutdown);
        }
        if self
            .rx_conn_flags
            .contains(ConnStateFlags::PEER_CONN_CLOSED)
        {
            return Err(ConnError::PeerClosed);
        }
        Ok(())
    }

    /// Writes up to [`SmcdConn::write_space`] bytes of `buf` into the peer's ring and
    /// sends a CDC; returns how many bytes were taken. `WouldBlock` when no space at all.
    pub fn write(&mut self, dev: &D, buf: &[u8]) -> Result<usize, ConnError> {
        self.check_writable()?;
        self.reservation = None;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut space = self.write_space();
        if space == 0 {
            // May precede a sleep: publish write_blocked and re-read first.
            self.prepare_wait_write(dev);
            self.check_writable()?;
            space = self.write_space();
        }
        let wanted_at_least_space = buf.len() >= space as usize;
        if wanted_at_least_space {
            self.counters.write_blocked += 1;
        }
        if space == 0 {
            self.counters.would_block += 1;
            return Err(ConnError::WouldBlock);
        }
        let n = min(buf.len(), space as usize) as u32;
        self.put_data(dev, &buf[..n as usize])?;
        let prod_before = self.prod;
        self.prod = self.prod.advance(n, self.peer_ring);
        self.counters.bytes_tx += u64::from(n);
        self.tx_prod_flags
            .set(ProducerFlags::WRITE_BLOCKED, wanted_at_least_space);
        self.send_cdc_lazy(dev, prod_before).map(|_| ())?;
        Ok(n as usize)
    }

    /// Copies `data` (at most the write space) into the peer's ring at the producer
    /// cursor, wrapping at the ring end. Data moves never signal (§4.5).
    fn put_data(&mut self, dev: &D, data: &[u8]) -> Result<(), ConnError> {
        let first = min(data.len(), self.prod.until_wrap(self.peer_ring) as usize);
        let chunks = [
            (self.prod.dmb_offset(), &data[..first]),
            (DMB_HEADER_LEN, &data[first..]),
        ];
        for (offset, chunk) in chunks {
            if chunk.is_empty() {
                continue;
            }
            let result = match &self.peer_memory {
                Some(memory) => memory
                    .write(offset, chunk)
                    .map_err(|_| IsmError::OutOfBounds),
                None => {
                    self.counters.data_moves += 1;
                    dev.move_data(self.peer_token, offset, chunk, false)
                }
            };
            if let Err(e) = result {
                return Err(self.fail(dev, AbortReason::MoveData(e), false));
            }
        }
        Ok(())
    }

    /// Writes our CDC (current cursors and flags) to the peer's DMB offset 0 with a
    /// signal. On failure the connection is aborted locally (§4.5).
    fn send_cdc(&mut self, dev: &D) -> Result<(), ConnError> {
        self.write_cdc(dev, true)
    }

    /// Writes our CDC without a signal, then decides whether the peer may be asleep
    /// waiting for what this CDC gives it, and if so writes it again with the signal
    /// (one CDC, counted once). `prod_before` is our producer cursor before the data
    /// this CDC publishes (`self.prod` when it publishes none). The peer may be asleep
    /// (a) in a read, when it had consumed everything we had sent before this data
    /// (its consumer cursor in our DMB equals `prod_before`), or (b) in a write, when
    /// this CDC advances our consumer cursor and the peer's last CDC carries
    /// `write_blocked`. See "Signal suppression" in the module documentation for why
    /// no wake-up is lost. Returns whether the signal was raised.
    fn send_cdc_lazy(&mut self, dev: &D, prod_before: Cursor) -> Result<bool, ConnError> {
        let new_data = self.prod != prod_before;
        let frees_space = self.cons != self.cons_sent;
        if frees_space && self.rx_prod_flags.contains(ProducerFlags::WRITE_BLOCKED) {
            // The peer is known to wait for space: signal at once.
            self.write_cdc(dev, true)?;
            return Ok(true);
        }
        self.write_cdc(dev, false)?;
        // Our CDC store above, then this load of the peer's CDC (Dekker pairing with
        // the peer's `prepare_wait_read`/`prepare_wait_write`: its store, a fence, then
        // its load of our CDC).
        fence(Ordering::SeqCst);
        let (peer_cons, peer_blocked) = match CdcRepr::load(&self.own.memory, 0) {
            Ok(repr) => (
                Some(repr.cons),
                repr.prod_flags.contains(ProducerFlags::WRITE_BLOCKED),
            ),
            // Before the peer's first CDC (the DMB is zeroed, also when reused from
            // the pool, §2.5) its consumer cursor is zero and it is not blocked.
            Err(CdcError::UnknownType(0)) if self.last_rx.is_none() => (Some(Cursor::ZERO), false),
            // Unreadable: signal (the poll after it reports the problem).
            Err(_) => (None, true),
        };
        let peer_drained = peer_cons.is_none_or(|c| c == prod_before);
        let wake = (new_data && peer_drained) || (frees_space && peer_blocked);
        if wake {
            self.write_cdc(dev, true)?;
            // One CDC, now with its signal: count it once.
            self.counters.cdc_tx -= 1;
        } else {
            self.counters.signals_suppressed += 1;
        }
        Ok(wake)
    }

    /// Writes the CDC, with or without a signal.
    fn write_cdc(&mut self, dev: &D, signal: bool) -> Result<(), ConnError> {
        if self.peer_unreachable {
            let reason = self.abort_reason.unwrap_or(AbortReason::PeerGone);
            return Err(ConnError::ConnectionReset(reason));
        }
        let repr = CdcRepr {
            prod: self.prod,
            cons: self.cons,
            prod_flags: self.tx_prod_flags,
            conn_flags: self.tx_conn_flags,
        };
        match dev.move_data(self.peer_token, 0, &repr.to_bytes(), signal) {
            Ok(()) => {
                self.counters.cdc_tx += 1;
                if signal {
                    self.counters.signals_tx += 1;
                }
                self.cons_sent = self.cons;
                Ok(())
            }
            Err(e) => Err(self.fail(dev, AbortReason::MoveData(e), false)),
        }
    }

    /// Zero-copy send (no-copy mode): a window of up to `want` bytes of the peer's ring at
    /// the producer cursor, limited by the write space and the ring end. Fill it, drop
    /// it, then [`SmcdConn::commit`] what was filled.
    pub fn reserve(&mut self, dev: &D, want: usize) -> Result<ShmSlice<'_, D::Memory>, ConnError> {
        self.check_writable()?;
        if self.peer_memory.is_none() {
            return Err(ConnError::NoCopyUnavailable);
        }
        self.reservation = None;
        let mut space = self.write_space();
        if space == 0 {
            // May precede a sleep: publish write_blocked and re-read first.
            self.prepare_wait_write(dev);
            self.check_writable()?;
            space = self.write_space();
        }
        let wanted_at_least_space = want >= space as usize;
        if space == 0 {
            self.counters.write_blocked += 1;
            self.counters.would_block += 1;
            return Err(ConnError::WouldBlock);
        }
        let len = min(
            min(want, space as usize) as u32,
            self.prod.until_wrap(self.peer_ring),
        );
        self.reservation = Some(Reservation {
            len,
            wanted_at_least_space,
        });
        let offset = self.prod.dmb_offset();
        match &self.peer_memory {
            Some(memory) => ShmSlice::new(memory, offset, len as usize)
                .map_err(|e| ConnError::ConnectionReset(AbortReason::ShmAccess(e))),
            None => Err(ConnError::NoCopyUnavailable),
        }
    }

    /// Publishes `n` bytes of the last [`SmcdConn::reserve`] window: advances the
    /// producer cursor and sends the CDC. `n` larger than the window is
    /// `InvalidArgument` (the reservation stays).
    pub fn commit(&mut self, dev: &D, n: usize) -> Result<(), ConnError> {
        self.check_writable()?;
        let reservation = self.reservation.ok_or(ConnError::InvalidArgument)?;
        if n > reservation.len as usize {
            return Err(ConnError::InvalidArgument);
        }
        self.reservation = None;
        if n == 0 {
            return Ok(());
        }
        if reservation.wanted_at_least_space {
            self.counters.write_blocked += 1;
        }
        let prod_before = self.prod;
        self.prod = self.prod.advance(n as u32, self.peer_ring);
        self.counters.bytes_tx += n as u64;
        self.tx_prod_flags.set(
            ProducerFlags::WRITE_BLOCKED,
            reservation.wanted_at_least_space,
        );
        self.send_cdc_lazy(dev, prod_before).map(|_| ())
    }

    // ----- receiving -----

    /// Copies up to `buf.len()` received bytes out of the own ring. `Ok(0)` only at end of
    /// stream (the peer finished writing and everything before was consumed);
    /// `WouldBlock` when no data is there yet; `ConnectionReset` after an abort.
    pub fn read(&mut self, dev: &D, buf: &mut [u8]) -> Result<usize, ConnError> {
        self.check_readable()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut available = self.readable_bytes();
        if available == 0 && !self.peer_finished_writing() {
            self.prepare_wait_read(dev);
            self.check_readable()?;
            available = self.readable_bytes();
        }
        if available == 0 {
            return if self.peer_finished_writing() {
                Ok(0)
            } else {
                Err(ConnError::WouldBlock)
            };
        }
        let n = min(buf.len(), available as usize);
        let first = min(n, self.cons.until_wrap(self.own_ring) as usize);
        let (head, tail) = buf[..n].split_at_mut(first);
        let mut result = self.own.memory.read(self.cons.dmb_offset(), head);
        if result.is_ok() && !tail.is_empty() {
            result = self.own.memory.read(DMB_HEADER_LEN, tail);
        }
        if let Err(e) = result {
            return Err(self.fail(dev, AbortReason::ShmAccess(e), true));
        }
        self.advance_consumer(dev, n as u32)?;
        Ok(n)
    }

    /// Zero-copy receive: the received bytes at the consumer cursor, up to the ring end
    /// (call again after [`SmcdConn::consume`] for the part after the wrap). Empty when
    /// nothing is readable.
    pub fn peek(&self) -> Result<ShmSlice<'_, D::Memory>, ConnError> {
        self.check_readable()?;
        let len = min(self.readable_bytes(), self.cons.until_wrap(self.own_ring));
        ShmSlice::new(&self.own.memory, self.cons.dmb_offset(), len as usize)
            .map_err(|e| ConnError::ConnectionReset(AbortReason::ShmAccess(e)))
    }

    /// Marks `n` received bytes as consumed (after [`SmcdConn::peek`]); may send a
    /// consumer-cursor update.
    pub fn consume(&mut self, dev: &D, n: usize) -> Result<(), ConnError> {
        self.check_readable()?;
        if n > self.readable_bytes() as usize {
            return Err(ConnError::InvalidArgument);
        }
        if n == 0 {
            return Ok(());
        }
        self.advance_consumer(dev, n as u32)
    }

    /// Before a reader sleeps on an empty ring: publishes our consumer cursor (unless
    /// the peer already has it; signalled only if the peer is blocked on space), then
    /// re-reads our CDC. After this found nothing, the peer's next data CDC is
    /// signalled (see "Signal suppression" in the module documentation). Returns what
    /// the re-read found (also kept for [`SmcdConn::take_wait_news`]).
    pub fn prepare_wait_read(&mut self, dev: &D) -> PollOutcome {
        let publish = self.cons_sent != self.cons && self.may_send_updates();
        // Our consumer-cursor store, then the load of the peer's producer cursor.
        self.publish_then_reread(dev, publish)
    }

    /// Before a writer sleeps on a full window: makes sure our last CDC carries
    /// `write_blocked` (publishes one without signal if not), then re-reads our CDC
    /// for a newer consumer cursor. After this found no space, the peer's next CDC
    /// that frees space is signalled (see "Signal suppression" in the module
    /// documentation). [`SmcdConn::write`] and [`SmcdConn::reserve`] run it before
    /// they report `WouldBlock`. Returns what the re-read found (also kept for
    /// [`SmcdConn::take_wait_news`]).
    pub fn prepare_wait_write(&mut self, dev: &D) -> PollOutcome {
        if self.check_writable().is_err() {
            return PollOutcome::default();
        }
        let publish = !self.tx_prod_flags.contains(ProducerFlags::WRITE_BLOCKED);
        self.tx_prod_flags.insert(ProducerFlags::WRITE_BLOCKED);
        // Our write_blocked store (this CDC or the last one), then the load of the
        // peer's consumer cursor.
        self.publish_then_reread(dev, publish)
    }

    /// The half both sleep rules share: when `publish`, our CDC without a signal
    /// (counted in `wait_publishes`; a failure reports a state change), then a SeqCst
    /// fence, then the re-read of our own CDC ([`SmcdConn::poll`]); the outcome is
    /// kept for [`SmcdConn::take_wait_news`].
    fn publish_then_reread(&mut self, dev: &D, publish: bool) -> PollOutcome {
        if publish {
            if self.send_cdc_lazy(dev, self.prod).is_err() {
                return self.note_wait_news(PollOutcome {
                    state_changed: true,
                    ..PollOutcome::default()
                });
            }
            self.counters.wait_publishes += 1;
        }
        fence(Ordering::SeqCst);
        let outcome = self.poll(dev);
        self.note_wait_news(outcome)
    }

    /// Accumulates a re-read's outcome for [`SmcdConn::take_wait_news`].
    fn note_wait_news(&mut self, outcome: PollOutcome) -> PollOutcome {
        let w = &mut self.wait_news;
        w.new_cdc |= outcome.new_cdc;
        w.new_bytes = w.new_bytes.saturating_add(outcome.new_bytes);
        w.space_freed = w.space_freed.saturating_add(outcome.space_freed);
        w.writable_again |= outcome.writable_again;
        w.state_changed |= outcome.state_changed;
        w.cdc_sent |= outcome.cdc_sent;
        outcome
    }

    /// What the re-reads of [`SmcdConn::prepare_wait_read`] (also run inside
    /// [`SmcdConn::read`]) and [`SmcdConn::prepare_wait_write`] (inside
    /// [`SmcdConn::write`] and [`SmcdConn::reserve`]) found since the last call: the owner wakes other waiters
    /// on it (e.g. a writer whose space was freed), as it does after a signal.
    pub fn take_wait_news(&mut self) -> PollOutcome {
        core::mem::take(&mut self.wait_news)
    }

    fn check_readable(&self) -> Result<(), ConnError> {
        if let Some(reason) = self.abort_reason {
            return Err(ConnError::ConnectionReset(reason));
        }
        if self.app_closed {
            return Err(ConnError::Closed);
        }
        Ok(())
    }

    fn advance_consumer(&mut self, dev: &D, n: u32) -> Result<(), ConnError> {
        self.cons = self.cons.advance(n, self.own_ring);
        self.counters.bytes_rx += u64::from(n);
        if self.consumer_update_due() {
            self.send_consumer_update(dev)?;
        }
        Ok(())
    }

    /// Whether we may still send CDCs that carry no close flag.
    fn may_send_updates(&self) -> bool {
        self.abort_reason.is_none()
            && !self.peer_unreachable
            && !self.final_close_sent
            && !self.peer_finished_writing()
    }

    /// The consumer-cursor update rule of §4.5 (exact free space; see module doc).
    fn consumer_update_due(&self) -> bool {
        if !self.may_send_updates() {
            return false;
        }
        let ring = self.own_ring.get();
        let to_confirm = Cursor::diff(self.cons_sent, self.cons, self.own_ring);
        let limit = min(ring / 10, SOCK_MIN_SNDBUF_HALF);
        let peer_view_free = ring - Cursor::diff(self.cons_sent, self.rx_prod, self.own_ring);
        to_confirm > limit
            && (self.rx_prod_flags.contains(ProducerFlags::WRITE_BLOCKED)
                || peer_view_free <= ring / 2)
    }

    fn send_consumer_update(&mut self, dev: &D) -> Result<(), ConnError> {
        self.send_cdc(dev)?;
        self.counters.cons_updates_tx += 1;
        Ok(())
    }

    /// Same as [`SmcdConn::poll`]; call on `DmbSignalled { index: own_index() }`.
    pub fn on_signal(&mut self, dev: &D) -> PollOutcome {
        self.poll(dev)
    }

    /// Reads and validates the CDC in the own DMB and acts on it: new readable bytes,
    /// freed peer space, close flags, and a consumer-cursor update when due. Any
    /// impossible value aborts the connection (see [`SmcdConn::abort_reason`]).
    pub fn poll(&mut self, dev: &D) -> PollOutcome {
        let mut outcome = PollOutcome::default();
        if self.abort_reason.is_some() || self.state == State::Closed {
            return outcome;
        }
        let repr = match CdcRepr::load(&self.own.memory, 0) {
            Ok(repr) => repr,
            // The DMB starts zeroed and no initial CDC is sent (§4.2): type 0 before the
            // first CDC means "nothing yet".
            Err(CdcError::UnknownType(0)) if self.last_rx.is_none() => return outcome,
            Err(CdcError::UnknownType(t)) => {
                return self.fail_outcome(dev, AbortReason::UnknownCdcType(t), outcome)
            }
            Err(CdcError::Shm(e)) => {
                return self.fail_outcome(dev, AbortReason::ShmAccess(e), outcome)
            }
            Err(CdcError::Truncated { .. }) => {
                let e = ShmError::OutOfBounds {
                    offset: 0,
                    len: DMB_HEADER_LEN,
                    region_len: self.own.memory.len(),
                };
                return self.fail_outcome(dev, AbortReason::ShmAccess(e), outcome);
            }
        };
        if self.last_rx == Some(repr) {
            return outcome;
        }
        outcome.new_cdc = true;
        self.counters.cdc_rx += 1;

        // Producer cursor: the peer's writes into our ring. It may not exceed the free
        // space we advertised with our last consumer cursor.
        let unconfirmed = Cursor::diff(self.cons_sent, self.rx_prod, self.own_ring);
        let new_bytes = match Cursor::checked(repr.prod.wrap, repr.prod.count, self.own_ring)
            .and_then(|p| {
                Cursor::checked_distance(
                    self.rx_prod,
                    p,
                    self.own_ring,
                    self.own_ring.get() - unconfirmed,
                )
            }) {
            Ok(n) => n,
            Err(e) => return self.fail_outcome(dev, AbortReason::BadProducerCursor(e), outcome),
        };
        if new_bytes > 0 && self.peer_finished_writing() {
            return self.fail_outcome(dev, AbortReason::DataAfterEndOfStream, outcome);
        }
        // Consumer cursor: the peer's acknowledgement of our data, at most what we sent.
        let unacknowledged = self.unacknowledged_bytes();
        let freed =
            match Cursor::checked(repr.cons.wrap, repr.cons.count, self.peer_ring).and_then(|c| {
                Cursor::checked_distance(self.peer_cons, c, self.peer_ring, unacknowledged)
            }) {
                Ok(n) => n,
                Err(e) => {
                    return self.fail_outcome(dev, AbortReason::BadConsumerCursor(e), outcome)
                }
            };

        self.last_rx = Some(repr);
        self.rx_prod = repr.prod;
        self.peer_cons = repr.cons;
        self.rx_prod_flags = repr.prod_flags;
        outcome.new_bytes = new_bytes;
        outcome.space_freed = freed;
        outcome.writable_again =
            freed > 0 && self.tx_prod_flags.contains(ProducerFlags::WRITE_BLOCKED);

        let before = self.state;
        self.on_peer_flags(repr.conn_flags);
        outcome.state_changed = self.state != before;

        if self.may_send_updates() {
            let requested = repr.prod_flags.contains(ProducerFlags::CONS_CURS_UPD_REQ);
            if requested {
                self.counters.cons_upd_req_rx += 1;
            }
            // The rule is evaluated after each consumption; here only when the peer
            // is blocked, in case we consumed before its write_blocked arrived.
            let blocked = repr.prod_flags.contains(ProducerFlags::WRITE_BLOCKED);
            if requested || (blocked && self.consumer_update_due()) {
                outcome.cdc_sent = self.send_consumer_update(dev).is_ok();
                if !outcome.cdc_sent {
                    outcome.state_changed = true;
                }
            }
        }
        outcome
    }

    /// Applies newly received close flags (§5 table, "rx" rows).
    fn on_peer_flags(&mut self, flags: ConnStateFlags) {
        let known = ConnStateFlags::PEER_DONE_WRITING
            | ConnStateFlags::PEER_CONN_CLOSED
            | ConnStateFlags::PEER_CONN_ABORT;
        let new = (flags & known).difference(self.rx_conn_flags);
        if new.is_empty() {
            return;
        }
        self.rx_conn_flags |= new;
        if new.contains(ConnStateFlags::PEER_CONN_ABORT) {
            self.abort_reason.get_or_insert(AbortReason::PeerAbort);
            let next = match self.state {
                State::Active | State::AppCloseWait1 | State::AppFinCloseWait => {
                    State::ProcessAbort
                }
                State::PeerCloseWait1 | State::PeerCloseWait2 => {
                    if self.app_closed {
                        State::Closed
                    } else {
                        State::ProcessAbort
                    }
                }
                State::AppCloseWait2 | State::PeerFinCloseWait => State::Closed,
                other => other,
            };
            self.set_state(next);
        } else if new.contains(ConnStateFlags::PEER_CONN_CLOSED) {
            let next = match self.state {
                State::Active => State::AppCloseWait1,
                State::PeerCloseWait1 | State::PeerCloseWait2 => {
                    if self.app_closed && self.final_close_sent {
                        State::Closed
                    } else {
                        State::AppFinCloseWait
                    }
                }
                State::PeerFinCloseWait => State::Closed,
                other => other,
            };
            self.set_state(next);
        } else if new.contains(ConnStateFlags::PEER_DONE_WRITING) {
            let next = match self.state {
                State::Active => State::AppCloseWait1,
                State::PeerCloseWait1 => State::PeerCloseWait2,
                other => other,
            };
            self.set_state(next);
        }
    }

    // ----- close and abort -----

    /// `shutdown(SHUT_WR)`: sends `done_writing` (§5). Idempotent.
    pub fn shutdown_write(&mut self, dev: &D) -> Result<(), ConnError> {
        if let Some(reason) = self.abort_reason {
            return Err(ConnError::ConnectionReset(reason));
        }
        if self.app_closed {
            return Err(ConnError::Closed);
        }
        let next = match self.state {
            State::Active => State::PeerCloseWait1,
            State::AppCloseWait1 => State::AppCloseWait2,
            _ => return Ok(()),
        };
        self.reservation = None;
        self.tx_conn_flags |= ConnStateFlags::PEER_DONE_WRITING;
        self.tx_prod_flags.remove(ProducerFlags::WRITE_BLOCKED);
        self.send_cdc(dev)?;
        self.set_state(next);
        Ok(())
    }

    /// The final close CDC: `conn_closed` when the own ring is empty, `conn_abort` when
    /// unread data is still in it (Linux `smc_close_final`).
    fn send_final_close(&mut self, dev: &D) -> Result<(), ConnError> {
        let flag = if self.readable_bytes() > 0 {
            ConnStateFlags::PEER_CONN_ABORT
        } else {
            ConnStateFlags::PEER_CONN_CLOSED
        };
        self.tx_conn_flags |= flag;
        self.tx_prod_flags.remove(ProducerFlags::WRITE_BLOCKED);
        self.final_close_sent = true;
        self.send_cdc(dev)
    }

    /// The application closes the connection (§5 table, "app close" rows). Idempotent.
    /// Errors only report a failed close CDC; the state still advances.
    pub fn close(&mut self, dev: &D) -> Result<(), ConnError> {
        if self.app_closed {
            return Ok(());
        }
        self.app_closed = true;
        self.reservation = None;
        let mut result = Ok(());
        match self.state {
            State::Active => {
                result = self.send_final_close(dev);
                self.set_state_unless_failed(State::PeerCloseWait1);
            }
            State::PeerCloseWait1 | State::PeerCloseWait2 => {
                if !self.final_close_sent {
                    result = self.send_final_close(dev);
                }
            }
            State::AppCloseWait1 | State::AppCloseWait2 => {
                result = self.send_final_close(dev);
                let peer_gone_too = self
                    .rx_conn_flags
                    .intersects(ConnStateFlags::PEER_CONN_CLOSED | ConnStateFlags::PEER_CONN_ABORT);
                self.set_state_unless_failed(if peer_gone_too {
                    State::Closed
                } else {
                    State::PeerFinCloseWait
                });
            }
            State::AppFinCloseWait => {
                if !self.final_close_sent {
                    result = self.send_final_close(dev);
                }
                self.set_state(State::Closed);
            }
            State::ProcessAbort => {
                if !self.peer_unreachable
                    && !self.tx_conn_flags.contains(ConnStateFlags::PEER_CONN_ABORT)
                {
                    self.tx_conn_flags |= ConnStateFlags::PEER_CONN_ABORT;
                    self.final_close_sent = true;
                    result = self.send_cdc(dev);
                }
                self.set_state(State::Closed);
            }
            State::PeerFinCloseWait => {}
            State::PeerAbortWait => self.set_state(State::Closed),
            State::Closed => {}
        }
        result
    }

    fn set_state_unless_failed(&mut self, next: State) {
        // A failed CDC already moved the connection through the abort path.
        if self.state != State::Closed {
            self.set_state(next);
        }
    }

    /// Aborts the connection from the application: sends an abort CDC (best effort)
    /// and moves through `PEERABORTWAIT` to `CLOSED`.
    pub fn abort(&mut self, dev: &D) {
        if self.state == State::Closed {
            return;
        }
        self.fail(dev, AbortReason::Local, true);
    }

    /// The peer device is gone (ISM `PeerGone`, peer shutdown, link group terminated):
    /// aborts locally and never writes to the peer again (§5 "peer/device loss").
    pub fn peer_gone(&mut self) {
        self.peer_unreachable = true;
        if self.state == State::Closed {
            return;
        }
        self.abort_reason.get_or_insert(AbortReason::PeerGone);
        self.reservation = None;
        self.set_state(State::PeerAbortWait);
        self.set_state(State::Closed);
    }

    /// Local abort with `reason`: optionally tells the peer with an abort CDC, then
    /// `PEERABORTWAIT => CLOSED`. Returns the error to report.
    fn fail(&mut self, dev: &D, reason: AbortReason, notify_peer: bool) -> ConnError {
        let reason = *self.abort_reason.get_or_insert(reason);
        log::debug!("smcd conn {:#x}: abort: {reason}", self.own.token.0);
        self.reservation = None;
        if notify_peer
            && !self.peer_unreachable
            && !self.tx_conn_flags.contains(ConnStateFlags::PEER_CONN_ABORT)
        {
            self.tx_conn_flags |= ConnStateFlags::PEER_CONN_ABORT;
            self.tx_prod_flags.remove(ProducerFlags::WRITE_BLOCKED);
            let repr = CdcRepr {
                prod: self.prod,
                cons: self.cons,
                prod_flags: self.tx_prod_flags,
                conn_flags: self.tx_conn_flags,
            };
            if dev
                .move_data(self.peer_token, 0, &repr.to_bytes(), true)
                .is_ok()
            {
                self.counters.cdc_tx += 1;
                self.counters.signals_tx += 1;
            }
        }
        if !notify_peer {
            // move_data failed: do not try the peer again.
            self.peer_unreachable = true;
        }
        if self.state != State::Closed {
            self.set_state(State::PeerAbortWait);
            self.set_state(State::Closed);
        }
        ConnError::ConnectionReset(reason)
    }

    fn fail_outcome(
        &mut self,
        dev: &D,
        reason: AbortReason,
        mut outcome: PollOutcome,
    ) -> PollOutcome {
        self.fail(dev, reason, true);
        outcome.state_changed = true;
        outcome
    }
}
