//! SMC-D sockets in the kernel: the smcd [`Stack`] wired to smoltcp TCP, the ivshmem and
//! loopback ISM devices, interrupts and the executor.
//!
//! Wiring (architecture guide "Execution model", protocol-reference §1, §6):
//!
//! - [`SmcTcp`] is the [`ByteStream`] the CLC handshake and the TCP fallback run over: a
//!   `net::TcpStream` driven through its `poll_read`/`poll_write`, with the *driver
//!   task's* waker registered in smoltcp, so a CLC byte or fallback data arriving wakes
//!   the task that drives the stack. `peer_smc_capable` comes from NET's TCP-option
//!   middleware.
//! - [`KernelIsm`] puts the ivshmem ISM (between VMs, when an ivshmem-doorbell is
//!   present) and the loopback ISM (inside this image, like Linux's smc-lo: its
//!   `query_remote_gid` only matches itself, so only a connection between two sockets
//!   of this image picks it) behind one `IsmDevice` type for the stack.
//! - Interrupts: the ivshmem MSI-X vectors (entry 0 control, entry 1 DMB signal) are
//!   executor interrupt events: the handler only counts and wakes. The driver task then
//!   calls [`Stack::poll`], which drains the device events (the signal bitmap names the
//!   DMBs; each DMB's connection wakes its readers/writers; a departed peer terminates its
//!   link groups). A loopback `move_data` with a signal kicks the same task.
//! - Adaptive polling: a reader or writer that would block first spins for up to
//!   `spin` (command line `spin=<µs>`, default 0 = interrupts only), polling the
//!   devices itself, before it sleeps on the wake-up.
//!
//! The async API ([`Smc::bind`] → [`SmcListener::accept`], [`Smc::connect`],
//! [`SmcStream`] with `embedded_io_async::{Read, Write}`) is what apps use
//! (`kernel::apps`).

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::poll_fn;
use core::future::Future;
use core::net::Ipv4Addr;
use core::pin::pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Poll, Waker};
use core::time::Duration;

use drivers::ivshmem::device::{IvshmemDevice, DEVICE_ID, MSIX_ENTRIES, VENDOR_ID};
use drivers::ivshmem::{Bar0, Bar2Memory, IvshmemIsm, RdRandRng, Window};
use smcd::conn::State as ConnState;
use smcd::counters::{ConnStats, GlobalCounters, JsonObject};
use smcd::ism::{Dmb, DmbToken, Gid, IsmDevice, IsmError, IsmEvent};
use smcd::loopback::LoopbackIsm;
use smcd::negotiate::{Ipv4Cidr as ClcIpv4Cidr, LocalConfig};
use smcd::shm::{HeapMemory, SharedMemory, ShmError, ShmSlice};
use smcd::socket::{SocketError, SocketHandle, Stack, StackOptions, Transport};
use smcd::stream::{ByteStream, StreamError};
use smcd::wire::clc::Eid;

use crate::clock;
use crate::executor::{self, InterruptEvent};
use crate::msix::MsixTable;
use crate::net::{NetError, NetInterface, TcpListener, TcpStream};
use crate::pci;

/// The UEID every smcd image offers for SMC-Dv2 (both peers must share one, §2.2).
pub const UEID: &str = "SMCD-UNIKERNEL";

/// How often the driver task polls without any wake-up (CLC timeouts, idle link groups).
/// Listener backlog of [`Smc::bind`].
pub const DEFAULT_BACKLOG: usize = 16;

const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(100);

/// A spinning waiter polls the whole stack every this many iterations and only its own
/// connection's CDC in between (the full poll walks every socket, the TCP streams and
/// the devices).
pub const FULL_POLL_EVERY: u32 = 64;

/// The ivshmem ISM on real hardware.
pub type HwIsm = IvshmemIsm<Bar2Memory, Bar0, RdRandRng>;

/// The kernel's monotonic clock as the `now` smcd expects.
pub fn now() -> Duration {
    Duration::from_nanos(clock::now().as_nanos())
}

// ------------------------------------------------------------------ devices

/// Memory of a DMB on either device.
#[derive(Clone)]
pub enum KernelMemory {
    /// A loopback DMB (heap).
    Heap(Arc<HeapMemory>),
    /// A window of the ivshmem region (BAR2).
    Region(Window<Bar2Memory>),
}

impl SharedMemory for KernelMemory {
    fn len(&self) -> usize {
        match self {
            KernelMemory::Heap(m) => m.len(),
            KernelMemory::Region(m) => m.len(),
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        let t0 = clock::rdtsc();
        let r = match self {
            KernelMemory::Heap(m) => m.read(offset, buf),
            KernelMemory::Region(m) => m.read(offset, buf),
        };
        SHM_COPIES.count(
            &SHM_COPIES.read_bytes,
            &SHM_COPIES.read_cycles,
            buf.len(),
            t0,
        );
        r
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        let t0 = clock::rdtsc();
        let r = match self {
            KernelMemory::Heap(m) => m.write(offset, data),
            KernelMemory::Region(m) => m.write(offset, data),
        };
        SHM_COPIES.count(
            &SHM_COPIES.write_bytes,
            &SHM_COPIES.write_cycles,
            data.len(),
            t0,
        );
        r
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
        match self {
            KernelMemory::Heap(m) => m.fill(offset, len, value),
            KernelMemory::Region(m) => m.fill(offset, len, value),
        }
    }

    fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
        match self {
            KernelMemory::Heap(m) => m.load_u64(offset, order),
            KernelMemory::Region(m) => m.load_u64(offset, order),
        }
    }

    fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
        match self {
            KernelMemory::Heap(m) => m.store_u64(offset, value, order),
            KernelMemory::Region(m) => m.store_u64(offset, value, order),
        }
    }
}

/// Bytes and TSC cycles of the data copies into and out of DMBs (every
/// [`KernelMemory`] `read`/`write`: the stack's data path; CDCs go through `move_data`
/// and atomics, not counted here), for the apps' `profile` objects.
struct ShmCopies {
    read_bytes: AtomicU64,
    read_cycles: AtomicU64,
    write_bytes: AtomicU64,
    write_cycles: AtomicU64,
}

impl ShmCopies {
    fn count(&self, bytes: &AtomicU64, cycles: &AtomicU64, len: usize, t0: u64) {
        let dt = clock::rdtsc().saturating_sub(t0);
        bytes.fetch_add(len as u64, Ordering::Relaxed);
        cycles.fetch_add(dt, Ordering::Relaxed);
    }
}

static SHM_COPIES: ShmCopies = ShmCopies {
    read_bytes: AtomicU64::new(0),
    read_cycles: AtomicU64::new(0),
    write_bytes: AtomicU64::new(0),
    write_cycles: AtomicU64::new(0),
};

/// Totals of the DMB data copies so far (see [`shm_copies`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmCopyTotals {
    /// Bytes copied out of DMBs (reads).
    pub read_bytes: u64,
    /// TSC cycles spent in those reads.
    pub read_cycles: u64,
    /// Bytes copied into DMBs (writes).
    pub write_bytes: u64,
    /// TSC cycles spent in those writes.
    pub write_cycles: u64,
}

/// Bytes and TSC cycles of every DMB data copy (own and attached DMBs, both devices)
/// since boot; apps take deltas.
pub fn shm_copies() -> ShmCopyTotals {
    ShmCopyTotals {
        read_bytes: SHM_COPIES.read_bytes.load(Ordering::Relaxed),
        read_cycles: SHM_COPIES.read_cycles.load(Ordering::Relaxed),
        write_bytes: SHM_COPIES.write_bytes.load(Ordering::Relaxed),
        write_cycles: SHM_COPIES.write_cycles.load(Ordering::Relaxed),
    }
}

/// The device behind a [`KernelIsm`].
pub enum IsmKind {
    /// Loopback inside this image; `kick` wakes the driver task on a signal (the
    /// loopback "interrupt").
    Loopback {
        /// The device.
        device: LoopbackIsm,
        /// Signalled when a `move_data` asks for a signal.
        kick: &'static InterruptEvent,
    },
    /// ivshmem-doorbell between VMs.
    Ivshmem(Box<HwIsm>),
}

/// One ISM device of the kernel's stack, with a signal replay.
///
/// Replay: a CDC can arrive before its connection exists in the stack (the client
/// writes as soon as it sent the Confirm; the server establishes when it has read it),
/// and the stack drops a signal for a DMB it does not know yet. After every
/// establishment [`KernelIsm::replay_signals`] re-delivers a signal for every DMB index
/// seen signalled, once: a spurious signal is harmless (the connection re-reads its CDC
/// and finds nothing new), a lost one would stall the connection.
pub struct KernelIsm {
    /// The device.
    pub inner: IsmKind,
    signalled: spin::Mutex<BTreeSet<u32>>,
    replay: AtomicBool,
}

impl KernelIsm {
    /// Wraps `inner`.
    pub fn new(inner: IsmKind) -> Self {
        KernelIsm {
            inner,
            signalled: spin::Mutex::new(BTreeSet::new()),
            replay: AtomicBool::new(false),
        }
    }

    /// `"loopback"` or `"ivshmem"`.
    pub fn kind(&self) -> &'static str {
        match self.inner {
            IsmKind::Loopback { .. } => "loopback",
            IsmKind::Ivshmem(_) => "ivshmem",
        }
    }

    /// Makes the next `poll_events` re-deliver every DMB index seen signalled.
    pub fn replay_signals(&self) {
        self.replay.store(true, Ordering::Release);
    }
}

fn dmb_into(dmb: Dmb<impl Into<KernelMemory>>) -> Dmb<KernelMemory> {
    Dmb {
        token: dmb.token,
        index: dmb.index,
        memory: dmb.memory.into(),
    }
}

impl From<Arc<HeapMemory>> for KernelMemory {
    fn from(m: Arc<HeapMemory>) -> Self {
        KernelMemory::Heap(m)
    }
}

impl From<Window<Bar2Memory>> for KernelMemory {
    fn from(m: Window<Bar2Memory>) -> Self {
        KernelMemory::Region(m)
    }
}

impl IsmDevice for KernelIsm {
    type Memory = KernelMemory;

    fn local_gid(&self) -> Gid {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.local_gid(),
            IsmKind::Ivshmem(d) => d.local_gid(),
        }
    }

    fn chid(&self) -> u16 {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.chid(),
            IsmKind::Ivshmem(d) => d.chid(),
        }
    }

    fn supports_v2(&self) -> bool {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.supports_v2(),
            IsmKind::Ivshmem(d) => d.supports_v2(),
        }
    }

    fn query_remote_gid(&self, remote: Gid, vlan: Option<u16>) -> bool {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.query_remote_gid(remote, vlan),
            IsmKind::Ivshmem(d) => d.query_remote_gid(remote, vlan),
        }
    }

    fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<KernelMemory>, IsmError> {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.register_dmb(len, remote).map(dmb_into),
            IsmKind::Ivshmem(d) => d.register_dmb(len, remote).map(dmb_into),
        }
    }

    fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.unregister_dmb(token),
            IsmKind::Ivshmem(d) => d.unregister_dmb(token),
        }
    }

    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), IsmError> {
        match &self.inner {
            IsmKind::Loopback { device, kick } => {
                device.move_data(token, offset, data, signal)?;
                if signal {
                    kick.signal();
                }
                Ok(())
            }
            IsmKind::Ivshmem(d) => d.move_data(token, offset, data, signal),
        }
    }

    fn supports_nocopy(&self) -> bool {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.supports_nocopy(),
            IsmKind::Ivshmem(d) => d.supports_nocopy(),
        }
    }

    fn attach_dmb(&self, token: DmbToken) -> Result<KernelMemory, IsmError> {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.attach_dmb(token).map(Into::into),
            IsmKind::Ivshmem(d) => d.attach_dmb(token).map(Into::into),
        }
    }

    fn detach_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.detach_dmb(token),
            IsmKind::Ivshmem(d) => d.detach_dmb(token),
        }
    }

    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent)) {
        let mut record = |e: IsmEvent| {
            if let IsmEvent::DmbSignalled { index } = e {
                self.signalled.lock().insert(index);
            }
            sink(e);
        };
        match &self.inner {
            IsmKind::Loopback { device, .. } => device.poll_events(&mut record),
            IsmKind::Ivshmem(d) => d.poll_events(&mut record),
        }
        if self.replay.swap(false, Ordering::AcqRel) {
            let indices: Vec<u32> = self.signalled.lock().iter().copied().collect();
            for index in indices {
                sink(IsmEvent::DmbSignalled { index });
            }
        }
    }
}

// ------------------------------------------------------------------ TCP byte stream

/// TCP bytes carried by one [`SmcTcp`] (CLC plus fallback payload).
#[derive(Debug, Default)]
pub struct TcpBytes {
    /// Bytes accepted for sending.
    pub tx: Cell<u64>,
    /// Bytes read.
    pub rx: Cell<u64>,
}

/// Wakes the driver task (smoltcp calls it from task context; interrupt-safe anyway).
struct KickWaker(&'static InterruptEvent);

impl Wake for KickWaker {
    fn wake(self: Arc<Self>) {
        self.0.signal();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.signal();
    }
}

/// A smoltcp TCP connection as the stack's [`ByteStream`]: NET's non-blocking
/// `ByteStream for TcpStream`, plus wake-ups and byte counts.
///
/// Whenever an operation would block (or a readiness probe says not ready), the
/// *driver task's* waker is registered with smoltcp (never the application's): the
/// stack is driven by that task, which then wakes the application through the socket's
/// own wakers. Dropping the stream half-closes it first, so the TCP connection ends
/// with a FIN after the queued data, never a reset.
pub struct SmcTcp {
    tcp: TcpStream,
    waker: Waker,
    bytes: Rc<TcpBytes>,
}

impl SmcTcp {
    /// Wraps `tcp`; `kick` is the driver task's event.
    pub fn new(tcp: TcpStream, kick: &'static InterruptEvent, bytes: Rc<TcpBytes>) -> Self {
        SmcTcp {
            tcp,
            waker: Waker::from(Arc::new(KickWaker(kick))),
            bytes,
        }
    }

    fn would_block<T>(&self, r: Result<T, StreamError>) -> Result<T, StreamError> {
        if matches!(r, Err(StreamError::WouldBlock)) {
            self.tcp.register_waker(&self.waker);
        }
        r
    }
}

impl ByteStream for SmcTcp {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        let r = ByteStream::read(&mut self.tcp, buf);
        if let Ok(n) = r {
            self.bytes.rx.set(self.bytes.rx.get() + n as u64);
        }
        self.would_block(r)
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        let r = ByteStream::write(&mut self.tcp, data);
        if let Ok(n) = r {
            self.bytes.tx.set(self.bytes.tx.get() + n as u64);
        }
        self.would_block(r)
    }

    fn shutdown_write(&mut self) -> Result<(), StreamError> {
        ByteStream::shutdown_write(&mut self.tcp)
    }

    fn close(&mut self) -> Result<(), StreamError> {
        ByteStream::close(&mut self.tcp)
    }

    fn peer_smc_capable(&self) -> bool {
        ByteStream::peer_smc_capable(&self.tcp)
    }

    fn read_ready(&self) -> bool {
        let ready = ByteStream::read_ready(&self.tcp);
        if !ready {
            self.tcp.register_waker(&self.waker);
        }
        ready
    }

    fn write_ready(&self) -> bool {
        let ready = ByteStream::write_ready(&self.tcp);
        if !ready {
            self.tcp.register_waker(&self.waker);
        }
        ready
    }
}

impl Drop for SmcTcp {
    fn drop(&mut self) {
        // FIN after the queued data (idempotent after `close`); the socket then finishes
        // on its own instead of being reset by the drop.
        let _ = ByteStream::close(&mut self.tcp);
    }
}

// ------------------------------------------------------------------ the SMC system

/// Settings of the SMC system (from the command line: `smc=`, `spin=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmcConfig {
    /// Offer SMC (the TCP option) on connects and listens. Off: plain TCP everywhere
    /// (the peer sees no option: fallback reason `0x03010000`).
    pub smc: bool,
    /// How long a would-block reader/writer spins polling the devices before sleeping
    /// (0 = pure interrupts).
    pub spin: Duration,
    /// Own DMB length (power of two, 16 KiB..=1 MiB).
    pub dmb_len: usize,
    /// Use the ivshmem-doorbell device when one is present.
    pub ivshmem: bool,
    /// Add the loopback device.
    pub loopback: bool,
    /// The UEID to offer instead of [`UEID`] (`ueid=` on the command line).
    pub ueid: Option<Eid>,
}

impl Default for SmcConfig {
    fn default() -> Self {
        SmcConfig {
            smc: true,
            spin: Duration::ZERO,
            dmb_len: smcd::socket::DEFAULT_DMB_LEN,
            ivshmem: true,
            loopback: true,
            ueid: None,
        }
    }
}

/// Why the SMC system could not start or a socket operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmcError {
    /// No network interface was given.
    NoInterface,
    /// The TCP layer failed.
    Net(NetError),
    /// The SMC socket failed (handshake or data path).
    Socket(SocketError),
    /// The ivshmem device is present but could not be brought up.
    Ivshmem(&'static str),
    /// The configuration is unusable.
    Config(&'static str),
}

impl fmt::Display for SmcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmcError::NoInterface => f.write_str("no network interface"),
            SmcError::Net(e) => write!(f, "tcp: {e}"),
            SmcError::Socket(e) => write!(f, "smc: {e}"),
            SmcError::Ivshmem(e) => write!(f, "ivshmem: {e}"),
            SmcError::Config(e) => write!(f, "config: {e}"),
        }
    }
}

impl core::error::Error for SmcError {}

impl embedded_io::Error for SmcError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            SmcError::Socket(e) => embedded_io::Error::kind(e),
            SmcError::Net(NetError::ConnectionReset) => embedded_io::ErrorKind::ConnectionReset,
            _ => embedded_io::ErrorKind::Other,
        }
    }
}

impl From<NetError> for SmcError {
    fn from(e: NetError) -> Self {
        SmcError::Net(e)
    }
}

impl From<SocketError> for SmcError {
    fn from(e: SocketError) -> Self {
        SmcError::Socket(e)
    }
}

/// The kernel's stack type.
pub type KernelStack = Stack<KernelIsm, SmcTcp>;

/// The ivshmem device's interrupt plumbing, kept for the run.
struct IvshmemIrq {
    _table: MsixTable,
    control: &'static InterruptEvent,
    signal: &'static InterruptEvent,
}

/// The SMC system: the stack, its devices, the interfaces and the driver task.
pub struct Smc {
    stack: RefCell<KernelStack>,
    interfaces: Vec<&'static NetInterface>,
    kick: &'static InterruptEvent,
    irq: Option<IvshmemIrq>,
    config: SmcConfig,
    /// TCP bytes of every stream ever handed to the stack.
    tcp_tx: Cell<u64>,
    tcp_rx: Cell<u64>,
    streams: RefCell<Vec<Rc<TcpBytes>>>,
    spin: Cell<Duration>,
    polling: Cell<PollingStats>,
}

/// How blocked socket operations were resolved (adaptive polling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollingStats {
    /// Device polls done by spinning waiters.
    pub spin_polls: u64,
    /// Operations that completed while spinning (no sleep).
    pub spin_hits: u64,
    /// Times a waiter went to sleep on its waker.
    pub sleeps: u64,
}

/// Brings up the SMC system over `interfaces` (the first is where [`Smc::bind`]
/// listens): the loopback device, the ivshmem device when present (and asked for), and
/// the driver task. Needs `platform::init` and the interfaces up.
///
/// # Errors
/// [`SmcError::NoInterface`], or [`SmcError::Ivshmem`] when an ivshmem-doorbell is
/// present but unusable.
pub fn init(
    interfaces: &[&'static NetInterface],
    config: SmcConfig,
) -> Result<&'static Smc, SmcError> {
    let first = *interfaces.first().ok_or(SmcError::NoInterface)?;
    let kick: &'static InterruptEvent = Box::leak(Box::new(InterruptEvent::new()));
    // Loopback first: the client lists its devices in this order in the Proposal and
    // the server takes the first one that reaches the peer (§2.2), so a connection
    // inside this image picks loopback even if the ivshmem device reaches itself.
    let mut devices = Vec::new();
    let mut irq = None;
    if config.loopback {
        let seed = clock::rdtsc()
            ^ first
                .mac_address()
                .iter()
                .fold(0u64, |a, b| a << 8 | u64::from(*b));
        devices.push(KernelIsm::new(IsmKind::Loopback {
            device: LoopbackIsm::new(seed),
            kick,
        }));
    }
    if config.ivshmem {
        if let Some((ism, plumbing)) = ivshmem_bring_up()? {
            devices.push(KernelIsm::new(IsmKind::Ivshmem(Box::new(ism))));
            irq = Some(plumbing);
        }
    }
    for (i, d) in devices.iter().enumerate() {
        let gid = d.local_gid();
        log::info!(
            "smc: device {i}: {} gid {:016x}:{:016x} chid {:#06x}",
            d.kind(),
            gid.gid,
            gid.gid_ext,
            d.chid()
        );
    }
    let address = first.address();
    let mut local = LocalConfig {
        ueids: alloc::vec![match config.ueid {
            Some(eid) => eid,
            None => Eid::ueid(UEID).map_err(|_| SmcError::Config("invalid UEID"))?,
        }],
        ..LocalConfig::default()
    };
    local.ip.ipv4 = Some(ClcIpv4Cidr {
        addr: address.address.octets(),
        prefix_len: address.prefix_len,
    });
    let options = StackOptions {
        dmb_len: config.dmb_len,
        ..StackOptions::default()
    };
    let smc: &'static Smc = Box::leak(Box::new(Smc {
        stack: RefCell::new(Stack::new(devices, local, options)),
        interfaces: interfaces.to_vec(),
        kick,
        irq,
        config,
        tcp_tx: Cell::new(0),
        tcp_rx: Cell::new(0),
        streams: RefCell::new(Vec::new()),
        spin: Cell::new(config.spin),
        polling: Cell::new(PollingStats::default()),
    }));
    executor::spawn(smc.driver());
    GLOBAL.call_once(|| GlobalSmc(smc));
    log::info!(
        "smc: up: smc={} spin={}us dmb={} devices={}",
        if config.smc { "on" } else { "off" },
        config.spin.as_micros(),
        options.dmb_len,
        smc.stack.borrow().devices().len()
    );
    Ok(smc)
}

/// An ivshmem-doorbell function made usable: BAR0 mapped uncached, BAR2 write-back,
/// memory decoding and bus mastering on, MSI-X entries routed to executor events.
pub struct MappedIvshmem {
    /// The device over the two mappings.
    pub device: IvshmemDevice,
    /// The MSI-X table, enabled; keep it for the run (entries stay programmed).
    pub table: MsixTable,
    /// The interrupt event of MSI-X entry `i`, for `i` below the `entries` asked for.
    pub events: Vec<&'static InterruptEvent>,
    /// Physical address of BAR2.
    pub bar2: u64,
}

/// Finds the ivshmem-doorbell function and maps it (protocol-reference §7): MSI-X
/// entries `0..entries` each to a fresh executor interrupt event (unmasked, table
/// enabled), BAR0 uncached, BAR2 write-back (host RAM shared with the other VMs).
/// `Ok(None)` without such a function, or for one without `entries` MSI-X entries
/// (ivshmem-plain; logged). Used by the SMC system and by the floor apps (which run
/// without it).
///
/// # Errors
/// What failed, when the function is there but cannot be brought up.
pub fn ivshmem_map(entries: u16) -> Result<Option<MappedIvshmem>, &'static str> {
    let Some(dev) = pci::find(VENDOR_ID, DEVICE_ID).next() else {
        return Ok(None);
    };
    let Ok(mut table) = MsixTable::new(dev) else {
        log::info!("ivshmem without MSI-X (ivshmem-plain) ignored");
        return Ok(None);
    };
    if table.len() < entries {
        log::info!("ivshmem with {} MSI-X entries ignored", table.len());
        return Ok(None);
    }
    let (bar0, bar0_size) = dev.memory_bar(0).ok_or("no BAR0")?;
    let (bar2, bar2_size) = dev.memory_bar(2).ok_or("no BAR2")?;
    dev.enable_memory_and_bus_master()
        .map_err(|_| "PCI command")?;
    let mut events = Vec::with_capacity(usize::from(entries));
    for entry in 0..entries {
        let (vector, event) = executor::allocate_interrupt().ok_or("no free vector")?;
        table
            .set_vector(entry, vector)
            .and_then(|()| table.unmask(entry))
            .map_err(|_| "MSI-X entry")?;
        events.push(event);
    }
    table.enable().map_err(|_| "MSI-X enable")?;
    let regs = crate::memory::map_mmio(bar0, bar0_size).map_err(|_| "map BAR0")?;
    // BAR2 is host RAM shared with the other VMs: write-back like RAM.
    let region = crate::memory::map_mmio_cached(bar2, bar2_size).map_err(|_| "map BAR2")?;
    // SAFETY: `regs` maps this device's BAR0 uncached and `region` its whole BAR2, both
    // for the rest of the run (mappings are never removed); only the device handle made
    // here accesses them (one caller per boot: the SMC system or a floor app).
    let device = unsafe { IvshmemDevice::new(regs as usize, region as usize, bar2_size as usize) }
        .ok_or("misaligned BARs")?;
    Ok(Some(MappedIvshmem {
        device,
        table,
        events,
        bar2,
    }))
}

/// Brings up the ivshmem ISM over [`ivshmem_map`]: MSI-X entry 0 (control) and 1 (DMB
/// signal). `Ok(None)` without a usable ivshmem-doorbell.
fn ivshmem_bring_up() -> Result<Option<(HwIsm, IvshmemIrq)>, SmcError> {
    let Some(mapped) = ivshmem_map(MSIX_ENTRIES).map_err(SmcError::Ivshmem)? else {
        return Ok(None);
    };
    let (Some(&control), Some(&signal)) = (mapped.events.first(), mapped.events.get(1)) else {
        return Err(SmcError::Ivshmem("no vectors"));
    };
    let size = mapped.device.region().len();
    let rng = RdRandRng::new().ok_or(SmcError::Ivshmem("no RDRAND"))?;
    let ism = mapped
        .device
        .into_ism(rng, mapped.table.len())
        .map_err(|e| {
            log::error!("smc: ivshmem: {e}");
            SmcError::Ivshmem("ISM bring-up failed")
        })?;
    log::info!(
        "smc: ivshmem peer {} region {size} bytes at {:#x}",
        ism.peer_id(),
        mapped.bar2
    );
    Ok(Some((
        ism,
        IvshmemIrq {
            _table: mapped.table,
            control,
            signal,
        },
    )))
}

/// The system [`init`] brought up first, for the free-standing calls
/// ([`SmcListener::bind`], [`SmcStream::connect`]).
struct GlobalSmc(&'static Smc);

// SAFETY: the kernel runs on one CPU and `Smc` is only touched from task context (its
// interrupt paths are `InterruptEvent`s, which are Sync themselves); no two threads can
// ever access it, which is what Send/Sync would protect against.
unsafe impl Sync for GlobalSmc {}
// SAFETY: as above.
unsafe impl Send for GlobalSmc {}

static GLOBAL: spin::Once<GlobalSmc> = spin::Once::new();

/// The SMC system [`init`] brought up (the first one).
pub fn get() -> Option<&'static Smc> {
    GLOBAL.get().map(|g| g.0)
}

impl Smc {
    /// The configuration.
    pub fn config(&self) -> &SmcConfig {
        &self.config
    }

    /// The adaptive-polling budget now in force.
    pub fn spin(&self) -> Duration {
        self.spin.get()
    }

    /// Changes the adaptive-polling budget (0 = sleep at once).
    pub fn set_spin(&self, spin: Duration) {
        self.spin.set(spin);
    }

    /// MSI-X interrupts of the ivshmem device so far: (control, DMB signal); zeros
    /// without the device.
    pub fn interrupts(&self) -> (u64, u64) {
        self.irq
            .as_ref()
            .map_or((0, 0), |i| (i.control.count(), i.signal.count()))
    }

    /// Counts of spinning and sleeping waiters so far.
    pub fn polling_stats(&self) -> PollingStats {
        self.polling.get()
    }

    fn count_polling(&self, f: impl FnOnce(&mut PollingStats)) {
        let mut p = self.polling.get();
        f(&mut p);
        self.polling.set(p);
    }

    /// The interfaces, the listening one first.
    pub fn interfaces(&self) -> &[&'static NetInterface] {
        &self.interfaces
    }

    /// Runs `f` on the stack (task context only; never from an interrupt handler).
    pub fn with_stack<R>(&self, f: impl FnOnce(&mut KernelStack) -> R) -> R {
        f(&mut self.stack.borrow_mut())
    }

    /// Which devices the stack has (`"ivshmem"`, `"loopback"`), by index.
    pub fn device_kinds(&self) -> Vec<&'static str> {
        self.stack
            .borrow()
            .devices()
            .iter()
            .map(|d| d.kind())
            .collect()
    }

    /// Stack-wide counters.
    pub fn counters(&self) -> GlobalCounters {
        self.stack.borrow().counters()
    }

    /// TCP bytes (sent, received) of every connection handed to the stack: CLC
    /// handshakes plus fallback payload.
    pub fn tcp_bytes(&self) -> (u64, u64) {
        let streams = self.streams.borrow();
        let live = streams
            .iter()
            .fold((0, 0), |(t, r), b| (t + b.tx.get(), r + b.rx.get()));
        (self.tcp_tx.get() + live.0, self.tcp_rx.get() + live.1)
    }

    /// Drops byte counters of streams that are gone (folding them into the totals).
    fn retire_streams(&self) {
        let mut streams = self.streams.borrow_mut();
        streams.retain(|b| {
            if Rc::strong_count(b) == 1 {
                self.tcp_tx.set(self.tcp_tx.get() + b.tx.get());
                self.tcp_rx.set(self.tcp_rx.get() + b.rx.get());
                false
            } else {
                true
            }
        });
    }

    /// Wakes the driver task.
    pub fn kick(&self) {
        self.kick.signal();
    }

    /// One drive of the stack until it reports no progress (bounded).
    pub fn poll_now(&self) {
        let mut stack = self.stack.borrow_mut();
        for _ in 0..64 {
            if !stack.poll(now()) {
                break;
            }
        }
    }

    /// The driver task: poll the stack, then sleep until a device interrupt, a kick
    /// (loopback signal, smoltcp stream event, socket call) or the housekeeping period.
    async fn driver(&'static self) {
        let (control, signal) = match &self.irq {
            Some(irq) => (Some(irq.control), Some(irq.signal)),
            None => (None, None),
        };
        loop {
            let seen_kick = self.kick.count();
            let seen_control = control.map_or(0, |e| e.count());
            let seen_signal = signal.map_or(0, |e| e.count());
            self.poll_now();
            self.retire_streams();
            let deadline = clock::now().saturating_add(HOUSEKEEPING_PERIOD);
            let mut sleep = pin!(executor::sleep_until(deadline));
            let mut kick = pin!(self.kick.wait(seen_kick));
            let mut control = control.map(|e| Box::pin(e.wait(seen_control)));
            let mut signal = signal.map(|e| Box::pin(e.wait(seen_signal)));
            poll_fn(|cx| {
                let mut ready = kick.as_mut().poll(cx).is_ready();
                if let Some(c) = &mut control {
                    ready |= c.as_mut().poll(cx).is_ready();
                }
                if let Some(s) = &mut signal {
                    ready |= s.as_mut().poll(cx).is_ready();
                }
                ready |= sleep.as_mut().poll(cx).is_ready();
                if ready {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }

    fn adopt(&'static self, tcp: TcpStream, client: bool) -> SmcStream {
        let bytes = Rc::new(TcpBytes::default());
        self.streams.borrow_mut().push(bytes.clone());
        let stream = SmcTcp::new(tcp, self.kick, bytes.clone());
        let handle = {
            let mut stack = self.stack.borrow_mut();
            if client {
                stack.connect(stream, now())
            } else {
                stack.accept(stream, now())
            }
        };
        self.kick();
        SmcStream {
            smc: self,
            handle,
            tcp: bytes,
            closed: false,
            profile: IoProfile::default(),
        }
    }

    /// Opens a TCP connection to `addr:port` (with the SMC option when SMC is on), then
    /// runs the CLC handshake; returns once the connection is on SMC-D or fell back to
    /// TCP ([`SmcStream::transport`]).
    ///
    /// The connection leaves from the first interface whose address is not `addr`
    /// (a connection between two interfaces of this image then uses loopback SMC-D).
    ///
    /// # Errors
    /// The TCP connect's error, or a failed handshake.
    pub async fn connect(&'static self, addr: Ipv4Addr, port: u16) -> Result<SmcStream, SmcError> {
        self.connect_with(addr, port, self.config.smc).await
    }

    /// [`Smc::connect`], offering SMC (the TCP option) only when `smc` is true,
    /// whatever the system's setting: `false` gives a plain TCP client (the server
    /// then falls back with reason `0x03010000`).
    ///
    /// # Errors
    /// As [`Smc::connect`].
    pub async fn connect_with(
        &'static self,
        addr: Ipv4Addr,
        port: u16,
        smc: bool,
    ) -> Result<SmcStream, SmcError> {
        let iface = self
            .interfaces
            .iter()
            .find(|i| i.address().address != addr)
            .or(self.interfaces.first())
            .ok_or(SmcError::NoInterface)?;
        let tcp = iface.connect((addr, port), smc).await?;
        let mut stream = self.adopt(tcp, true);
        stream.established().await?;
        Ok(stream)
    }

    /// Listens on `port` of the first interface (SMC offered when SMC is on).
    ///
    /// # Errors
    /// The TCP layer's error.
    pub fn bind(&'static self, port: u16) -> Result<SmcListener, SmcError> {
        self.bind_with_backlog(port, DEFAULT_BACKLOG)
    }

    /// [`Smc::bind`] with `backlog` (at least 1) connections able to complete their TCP
    /// handshake before [`SmcListener::accept`] takes them: a server expecting N
    /// connections at once passes N. Each pending socket holds its TCP buffers
    /// (`kernel::net::SOCKET_BUFFER_LEN` per direction), so the backlog costs memory.
    ///
    /// # Errors
    /// The TCP layer's error.
    pub fn bind_with_backlog(
        &'static self,
        port: u16,
        backlog: usize,
    ) -> Result<SmcListener, SmcError> {
        let first = self.interfaces.first().ok_or(SmcError::NoInterface)?;
        let tcp = first.listen_with_backlog(port, self.config.smc, backlog.max(1))?;
        Ok(SmcListener { smc: self, tcp })
    }
}

/// A listening SMC socket.
pub struct SmcListener {
    smc: &'static Smc,
    tcp: TcpListener,
}

impl SmcListener {
    /// Listens on `port` with the system [`init`] brought up ([`Smc::bind`]).
    ///
    /// # Errors
    /// [`SmcError::NoInterface`] before [`init`], or the TCP layer's error.
    pub fn bind(port: u16) -> Result<SmcListener, SmcError> {
        get().ok_or(SmcError::NoInterface)?.bind(port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.tcp.port()
    }

    /// Waits for the next connection and its CLC handshake (server side).
    ///
    /// # Errors
    /// The TCP accept's error, or a failed handshake.
    pub async fn accept(&mut self) -> Result<SmcStream, SmcError> {
        let tcp = self.tcp.accept().await?;
        let mut stream = self.smc.adopt(tcp, false);
        stream.established().await?;
        Ok(stream)
    }
}

/// An SMC socket (SMC-D or TCP fallback) as `embedded_io_async::{Read, Write}`.
///
/// Dropping it without [`SmcStream::close`] closes it too.
pub struct SmcStream {
    smc: &'static Smc,
    handle: SocketHandle,
    tcp: Rc<TcpBytes>,
    closed: bool,
    profile: IoProfile,
}

/// Where a connection's blocking socket calls (read, write, shutdown) spent their time,
/// in TSC cycles ([`SmcStream::io_profile`]; the apps' `profile` objects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoProfile {
    /// Stack operations run, would-block attempts included.
    pub ops: u64,
    /// Cycles inside them: DMB copies, CDCs, the polls of spinning waiters.
    pub op_cycles: u64,
    /// Times a call went to sleep on its waker.
    pub sleeps: u64,
    /// Cycles from going to sleep until the executor polled the call again.
    pub sleep_cycles: u64,
}

/// Which direction a blocked operation waits for.
#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

impl SmcStream {
    /// Connects with the system [`init`] brought up ([`Smc::connect`]).
    ///
    /// # Errors
    /// [`SmcError::NoInterface`] before [`init`], or as [`Smc::connect`].
    pub async fn connect(addr: Ipv4Addr, port: u16) -> Result<SmcStream, SmcError> {
        get()
            .ok_or(SmcError::NoInterface)?
            .connect(addr, port)
            .await
    }

    /// The stack's handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// SMC-D (with version, device, peer GID) or TCP with the decline reason; `None`
    /// only while the handshake runs (never after [`Smc::connect`]/accept returned).
    pub fn transport(&self) -> Option<Transport> {
        self.smc.stack.borrow().transport(self.handle)
    }

    /// This connection's counters (application bytes, CDCs, signals, CLC bytes).
    pub fn counters(&self) -> ConnStats {
        self.smc
            .stack
            .borrow()
            .socket_stats(self.handle)
            .unwrap_or_default()
    }

    /// TCP bytes this connection moved (sent, received): the CLC handshake plus, on
    /// fallback, the payload. On SMC-D it equals the CLC bytes: no payload over TCP.
    pub fn tcp_bytes(&self) -> (u64, u64) {
        (self.tcp.tx.get(), self.tcp.rx.get())
    }

    /// Time spent in this connection's blocking calls so far.
    pub fn io_profile(&self) -> IoProfile {
        self.profile
    }

    /// Waits for the end of the handshake.
    async fn established(&mut self) -> Result<Transport, SmcError> {
        let smc = self.smc;
        let handle = self.handle;
        poll_fn(|cx| {
            let mut stack = smc.stack.borrow_mut();
            if let Some(t) = stack.transport(handle) {
                if matches!(t, Transport::Smcd { .. }) {
                    // CDCs that raced ahead of the establishment (see KernelIsm).
                    stack.devices().iter().for_each(KernelIsm::replay_signals);
                    smc.kick();
                }
                return Poll::Ready(Ok(t));
            }
            if let Some(e) = stack.error(handle) {
                return Poll::Ready(Err(SmcError::Socket(e)));
            }
            stack.register_read_waker(handle, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Runs `op` until it does not block: spins up to the configured budget, then sleeps
    /// on the socket's waker. A spin iteration re-reads only this connection's CDC
    /// ([`Stack::poll_socket`]); every [`FULL_POLL_EVERY`]th one polls the whole stack.
    async fn blocking<R>(
        &mut self,
        dir: Dir,
        mut op: impl FnMut(&mut KernelStack, SocketHandle) -> Result<R, SocketError>,
    ) -> Result<R, SmcError> {
        let smc = self.smc;
        let handle = self.handle;
        let spin = smc.spin.get();
        let mut spin_until: Option<clock::Instant> = None;
        let mut spins: u32 = 0;
        let mut profile = self.profile;
        let mut asleep_since: Option<u64> = None;
        let result = poll_fn(|cx| loop {
            let mut stack = smc.stack.borrow_mut();
            let t0 = clock::rdtsc();
            if let Some(t) = asleep_since.take() {
                profile.sleep_cycles += t0.saturating_sub(t);
            }
            let r = op(&mut stack, handle);
            profile.ops += 1;
            profile.op_cycles += clock::rdtsc().saturating_sub(t0);
            match r {
                Err(SocketError::WouldBlock) => {
                    if !spin.is_zero() {
                        let until =
                            *spin_until.get_or_insert_with(|| clock::now().saturating_add(spin));
                        if clock::now() < until {
                            smc.count_polling(|p| p.spin_polls += 1);
                            spins = spins.wrapping_add(1);
                            if spins.is_multiple_of(FULL_POLL_EVERY) {
                                // Now and then the whole stack (device events, other
                                // sockets, close handshakes, the TCP side).
                                drop(stack);
                                smc.poll_now();
                            } else {
                                // The cheap check: this connection's CDC only (a few
                                // loads from the own DMB), no device or TCP work.
                                stack.poll_socket(handle, now());
                                drop(stack);
                            }
                            core::hint::spin_loop();
                            continue;
                        }
                    }
                    smc.count_polling(|p| p.sleeps += 1);
                    match dir {
                        Dir::Read => stack.register_read_waker(handle, cx.waker()),
                        Dir::Write => stack.register_write_waker(handle, cx.waker()),
                    }
                    spin_until = None;
                    profile.sleeps += 1;
                    asleep_since = Some(clock::rdtsc());
                    return Poll::Pending;
                }
                r => {
                    if spin_until.is_some() {
                        smc.count_polling(|p| p.spin_hits += 1);
                    }
                    return Poll::Ready(r);
                }
            }
        })
        .await;
        self.profile = profile;
        // The driver only has work left after a call on a TCP socket (fallback data to
        // flush), a failed call, or a connection that is closing. An SMC-D read or write
        // on an active connection wrote its CDC and rang the peer inside the call (a
        // loopback signal kicks the driver itself): kicking anyway cost a full stack poll
        // per call, ~14 µs under TCG, two per interrupt-mode round trip and side.
        let active = smc.stack.borrow().conn_state(handle) == Some(ConnState::Active);
        if result.is_err() || !active {
            smc.kick();
        }
        result.map_err(SmcError::Socket)
    }

    /// Shuts down the write direction (SMC-D: `done_writing` CDC; fallback: FIN).
    ///
    /// # Errors
    /// The socket's error.
    pub async fn shutdown(&mut self) -> Result<(), SmcError> {
        self.blocking(Dir::Write, |s, h| s.shutdown(h)).await
    }

    /// Closes the socket (SMC-D: close CDC and TCP close; fallback: FIN after the
    /// queued data). The peer reads end of stream.
    ///
    /// # Errors
    /// The socket's error (the socket is released anyway).
    pub fn close(mut self) -> Result<(), SmcError> {
        self.closed = true;
        let r = self.smc.stack.borrow_mut().close(self.handle, now());
        self.smc.kick();
        r.map_err(SmcError::Socket)
    }

    /// Aborts the connection at once (SMC-D: the abort CDC, our DMB given back; the peer
    /// reads `ConnectionReset` and counts an abort). Unread and unsent data are dropped.
    /// A TCP-fallback socket is closed as by [`SmcStream::close`].
    ///
    /// # Errors
    /// The socket's error (the socket is released anyway).
    pub fn abort(mut self) -> Result<(), SmcError> {
        self.closed = true;
        let r = self.smc.stack.borrow_mut().abort(self.handle, now());
        self.smc.kick();
        r.map_err(SmcError::Socket)
    }

    /// Zero-copy receive (SMC-D, no-copy mode, §4.6): waits until received bytes (or the
    /// end of stream) are there, calls `f` with up to `max` of them as a window into the
    /// own DMB (never past the ring end), then consumes the whole window (the consumer
    /// cursor moves, as after a `read` of that many bytes). Returns the window length;
    /// `Ok(0)` at end of stream (or with `max` 0).
    ///
    /// # Errors
    /// The socket's error; `SocketError::NotSmcd` on a TCP-fallback connection (use
    /// `read` there).
    pub async fn read_in_place(
        &mut self,
        max: usize,
        mut f: impl FnMut(&ShmSlice<'_, KernelMemory>),
    ) -> Result<usize, SmcError> {
        if max == 0 {
            return Ok(0);
        }
        self.blocking(Dir::Read, |s, h| {
            let n = {
                let window = s.peek(h)?;
                let n = window.len().min(max);
                if n > 0 {
                    f(&window.subslice(0, n).map_err(|e| {
                        SocketError::Conn(smcd::conn::ConnError::ConnectionReset(
                            smcd::conn::AbortReason::ShmAccess(e),
                        ))
                    })?);
                }
                n
            };
            if n > 0 {
                s.consume(h, n)?;
                Ok(n)
            } else if s.readable(h) {
                // Nothing to peek but readable: the end of the stream (an error would
                // have come from `peek`).
                Ok(0)
            } else {
                Err(SocketError::WouldBlock)
            }
        })
        .await
    }

    /// Reads until `buf` is full or end of stream; returns the bytes read.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, SmcError> {
        let mut done = 0;
        while done < buf.len() {
            match embedded_io_async::Read::read(self, &mut buf[done..]).await? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }
}

impl Drop for SmcStream {
    fn drop(&mut self) {
        if !self.closed {
            if let Ok(mut stack) = self.smc.stack.try_borrow_mut() {
                let _ = stack.close(self.handle, now());
            }
            self.smc.kick();
        }
    }
}

impl embedded_io::ErrorType for SmcStream {
    type Error = SmcError;
}

impl embedded_io_async::Read for SmcStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SmcError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.blocking(Dir::Read, |s, h| s.read(h, buf)).await
    }
}

impl embedded_io_async::Write for SmcStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, SmcError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.blocking(Dir::Write, |s, h| s.write(h, buf)).await
    }

    async fn flush(&mut self) -> Result<(), SmcError> {
        Ok(())
    }
}

// ------------------------------------------------------------------ JSON helpers

/// Writes a [`Transport`] as JSON fields: `"transport":"smcd","smc_version":2,
/// "device":"loopback",...` or `"transport":"tcp","reason":"0x03010000","by_peer":false`.
pub fn write_transport<W: fmt::Write>(
    obj: &mut JsonObject<'_, W>,
    transport: Option<Transport>,
    kinds: &[&'static str],
) -> fmt::Result {
    match transport {
        Some(Transport::Smcd {
            version,
            first_contact,
            device,
            peer_gid,
        }) => {
            obj.str("transport", "smcd")?;
            obj.u64("smc_version", u64::from(version))?;
            obj.str("device", kinds.get(device).copied().unwrap_or("?"))?;
            obj.bool("first_contact", first_contact)?;
            let mut gid = heapless::String::<33>::new();
            fmt::Write::write_fmt(
                &mut gid,
                format_args!("{:016x}{:016x}", peer_gid.gid, peer_gid.gid_ext),
            )?;
            obj.str("peer_gid", &gid)
        }
        Some(Transport::Tcp { reason, by_peer }) => {
            obj.str("transport", "tcp")?;
            let mut r = heapless::String::<10>::new();
            fmt::Write::write_fmt(&mut r, format_args!("{:#010x}", reason.0))?;
            obj.str("reason", &r)?;
            obj.bool("by_peer", by_peer)
        }
        None => obj.str("transport", "none"),
    }
}
