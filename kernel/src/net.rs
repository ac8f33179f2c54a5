//! The network interface: smoltcp over virtio-net, behind the SMC TCP-option middleware.
//!
//! This is the single smoltcp adapter (house style practice 8): [`NicDevice`] implements
//! `smoltcp::phy::Device` over any `drivers::net::Nic`, wrapped in
//! `drivers::net::smc_option::SmcOptionDevice` so SYN/SYN-ACKs carry the SMC capability
//! option for SMC-enabled sockets (protocol reference §1).
//!
//! Execution model (architecture guide "Execution model"): each interface has one poll
//! task. It polls smoltcp, then sleeps until the receive MSI-X interrupt fires, a socket
//! operation kicks it, or smoltcp's next deadline passes. Socket operations are async:
//! they register smoltcp's socket wakers and kick the poll task when they queued data.
//!
//! API for the socket layer:
//! - [`bring_up`] (one PCI function, one address) / [`init_from_cmdline`] (first virtio-net,
//!   `ip=` from the command line) return a `&'static` [`NetInterface`];
//! - [`NetInterface::listen`] / [`NetInterface::connect`] take `smc: bool`: `true` marks
//!   the local port SMC-enabled in the middleware (client: option in the SYN; server:
//!   option echoed in the SYN-ACK when the client offered it);
//! - [`TcpStream::peer_smc_capable`] (or [`NetInterface::peer_smc_capable`]) tells, once
//!   connected, whether the option went both ways;
//! - [`TcpStream`] is used either async (`read`, `write_all`, `flush`, `close`, or the
//!   `poll_*` forms) or through `smcd::stream::ByteStream` (non-blocking, `WouldBlock`;
//!   wait with [`TcpStream::register_waker`]).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::{poll_fn, Future};
use core::net::Ipv4Addr;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use drivers::net::smc_option::SmcOptionDevice;
use drivers::net::virtio::{DmaPlatform, VirtioNet, VirtioNetError};
use drivers::net::{Nic, NicError};
use smcd::stream::{ByteStream, StreamError};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use spin::{Mutex, Once};

use crate::clock::{self, Instant};
use crate::cmdline::{self, Ipv4Cidr};
use crate::executor::{self, InterruptEvent};
use crate::msix::{MsixError, MsixTable};
use crate::pci::{self, PciDevice, PciError};

/// virtio vendor ID and the network device IDs (transitional 0x1000, modern 0x1041).
const VIRTIO_VENDOR_ID: u16 = 0x1af4;
const VIRTIO_NET_DEVICE_IDS: [u16; 2] = [0x1000, 0x1041];
/// Socket buffer size per direction (window scaling lets the peer use all of it).
pub const SOCKET_BUFFER_LEN: usize = 128 * 1024;
/// Ephemeral port range for active opens (IANA dynamic ports).
const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;
/// Sockets listening per [`TcpListener`] (connections that can complete before
/// `accept`).
pub const LISTEN_BACKLOG: usize = 4;
/// After our FIN, a connection with no progress for this long is aborted by smoltcp.
const CLOSE_TIMEOUT_SECS: u64 = 10;
/// How long [`TcpStream::close`] waits for the NIC to send the final segments.
const TRANSMIT_DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// The MSI-X table entry used for the receive queue.
const RECEIVE_MSIX_ENTRY: u16 = 0;

/// DMA memory for virtio: the kernel's zeroed, identity-mapped frames.
pub struct KernelDma;

// SAFETY: `memory::alloc_frames` returns zeroed, page-aligned, exclusively owned frames;
// all RAM (frames and heap) and every `map_mmio` range is identity-mapped (kernel
// contract), which is what `DmaPlatform` requires.
unsafe impl DmaPlatform for KernelDma {
    fn alloc_zeroed_pages(pages: usize) -> Option<u64> {
        crate::memory::alloc_frames(pages)
    }

    unsafe fn free_pages(phys: u64, pages: usize) {
        // SAFETY: forwarded; the caller passes one earlier allocation no longer in use.
        unsafe { crate::memory::free_frames(phys, pages) }
    }

    fn map_mmio(phys: u64, len: u64) -> Option<u64> {
        crate::memory::map_mmio(phys, len).ok()
    }
}

/// The virtio-net NIC as the kernel uses it.
pub type VirtioNic = VirtioNet<KernelDma>;

/// `smoltcp::phy::Device` over a [`Nic`]: the one place smoltcp meets a driver.
pub struct NicDevice<N: Nic> {
    nic: RefCell<N>,
}

impl<N: Nic> NicDevice<N> {
    /// Adapt `nic`.
    pub fn new(nic: N) -> Self {
        NicDevice {
            nic: RefCell::new(nic),
        }
    }

    /// The NIC, mutably.
    pub fn nic_mut(&mut self) -> &mut N {
        self.nic.get_mut()
    }
}

/// Receive token: lends one received frame, then returns its buffer to the NIC.
pub struct NicRxToken<'a, N: Nic> {
    frame: N::RxFrame,
    nic: &'a RefCell<N>,
}

/// Transmit token: builds a frame straight in the NIC's transmit buffer.
pub struct NicTxToken<'a, N: Nic> {
    nic: &'a RefCell<N>,
}

impl<N: Nic> RxToken for NicRxToken<'_, N> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.frame.as_ref());
        if let Err(e) = self.nic.borrow_mut().recycle(self.frame) {
            log::warn!("net: receive buffer lost: {e}");
        }
        result
    }
}

impl<N: Nic> TxToken for NicTxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let mut result = None;
        let sent = self.nic.borrow_mut().transmit(len, |buffer| {
            result = f.take().map(|f| f(buffer));
        });
        match sent {
            Ok(()) => {}
            // smoltcp retransmits; a full ring is expected under load.
            Err(NicError::TransmitQueueFull) => {
                log::debug!("net: transmit ring full, frame dropped")
            }
            Err(e) => log::warn!("net: frame of {len} bytes dropped: {e}"),
        }
        match (result, f) {
            (Some(result), _) => result,
            // The NIC refused before building the frame: build it into scratch and drop
            // it (smoltcp's TCP retransmits; other frames are best effort).
            (None, Some(f)) => f(&mut vec![0u8; len]),
            (None, None) => unreachable!("transmit closure ran without a result"),
        }
    }
}

impl<N: Nic> Device for NicDevice<N> {
    type RxToken<'a>
        = NicRxToken<'a, N>
    where
        Self: 'a;
    type TxToken<'a>
        = NicTxToken<'a, N>
    where
        Self: 'a;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = match self.nic.get_mut().receive() {
            Ok(frame) => frame?,
            Err(e) => {
                log::warn!("net: receive: {e}");
                return None;
            }
        };
        Some((
            NicRxToken {
                frame,
                nic: &self.nic,
            },
            NicTxToken { nic: &self.nic },
        ))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.nic
            .get_mut()
            .can_transmit()
            .then_some(NicTxToken { nic: &self.nic })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.nic.borrow().max_frame_len();
        caps
    }
}

/// Why the network could not be brought up or a socket operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// No virtio-net PCI function (or not the one asked for).
    NoDevice,
    /// The command line has no `ip=`.
    NoAddress,
    /// PCI config access failed.
    Pci(PciError),
    /// The virtio-net driver failed.
    Virtio(VirtioNetError),
    /// MSI-X setup failed.
    Msix(MsixError),
    /// No free interrupt vector.
    NoVector,
    /// The SMC port policy is full.
    SmcPolicyFull,
    /// Every ephemeral port is in use.
    NoFreePort,
    /// smoltcp refused to connect (bad endpoint, or the socket is busy).
    Connect,
    /// smoltcp refused to listen (port 0 or in use).
    Listen,
    /// The connection was reset or closed by the peer before the operation completed.
    ConnectionReset,
    /// The peer has closed its sending side (for writes: we closed ours).
    Closed,
    /// The NIC failed.
    Nic(NicError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NoDevice => write!(f, "no virtio-net device"),
            NetError::NoAddress => write!(f, "no ip= on the command line"),
            NetError::Pci(e) => write!(f, "PCI: {e}"),
            NetError::Virtio(e) => write!(f, "virtio-net: {e:?}"),
            NetError::Msix(e) => write!(f, "MSI-X: {e}"),
            NetError::NoVector => write!(f, "no free interrupt vector"),
            NetError::SmcPolicyFull => write!(f, "too many SMC-enabled ports"),
            NetError::NoFreePort => write!(f, "no free ephemeral port"),
            NetError::Connect => write!(f, "cannot connect"),
            NetError::Listen => write!(f, "cannot listen"),
            NetError::ConnectionReset => write!(f, "connection reset"),
            NetError::Closed => write!(f, "connection closed"),
            NetError::Nic(e) => write!(f, "NIC: {e}"),
        }
    }
}

/// The stack state, behind the interface's lock (task context only).
struct Stack {
    iface: Interface,
    device: SmcOptionDevice<NicDevice<VirtioNic>>,
    sockets: SocketSet<'static>,
    next_port: u16,
    /// Sockets whose owner went away: removed once closed.
    graveyard: Vec<SocketHandle>,
}

/// TSC cycles spent in smoltcp polls (all interfaces) and their number: the `net_ns`
/// and `net_polls` of the apps' `profile` objects.
static POLL_CYCLES: AtomicU64 = AtomicU64::new(0);
static POLLS: AtomicU64 = AtomicU64::new(0);

/// Cycles spent in smoltcp polls so far and how many polls ran (issue 6 profiling).
pub fn poll_totals() -> (u64, u64) {
    (
        POLL_CYCLES.load(Ordering::Relaxed),
        POLLS.load(Ordering::Relaxed),
    )
}

fn smoltcp_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock::now().as_micros() as i64)
}

impl Stack {
    /// One smoltcp poll; returns when smoltcp wants to be polled again.
    fn poll(&mut self) -> Option<Instant> {
        let t0 = clock::rdtsc();
        let now = smoltcp_now();
        // One doorbell per queue for all the frames this poll sends and buffers it returns.
        self.device.inner_mut().nic_mut().hold_notifications(true);
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.device.inner_mut().nic_mut().hold_notifications(false);
        POLL_CYCLES.fetch_add(clock::rdtsc().saturating_sub(t0), Ordering::Relaxed);
        POLLS.fetch_add(1, Ordering::Relaxed);
        let sockets = &mut self.sockets;
        self.graveyard.retain(|&handle| {
            let closed = sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed;
            if closed {
                sockets.remove(handle);
            }
            !closed
        });
        self.iface
            .poll_at(now, &self.sockets)
            .map(|at| Instant::from_nanos(at.total_micros().max(0) as u64 * 1000))
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.sockets.iter().any(|(_, socket)| match socket {
            smoltcp::socket::Socket::Tcp(s) => {
                s.local_endpoint().is_some_and(|e| e.port == port)
                    || (s.state() == tcp::State::Listen && s.listen_endpoint().port == port)
            }
            #[allow(unreachable_patterns)]
            _ => false,
        })
    }

    fn ephemeral_port(&mut self) -> Option<u16> {
        let span = u32::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            if !self.port_in_use(port) {
                return Some(port);
            }
        }
        None
    }
}

/// One network interface: a virtio-net NIC, its smoltcp interface and sockets.
pub struct NetInterface {
    stack: Mutex<Stack>,
    receive_event: &'static InterruptEvent,
    kick: InterruptEvent,
    address: Ipv4Cidr,
    peer: Option<Ipv4Addr>,
    mac: [u8; 6],
    /// Kept for the interface's lifetime (the receive vector's table entry).
    _msix: MsixTable,
}

static DEFAULT: Once<&'static NetInterface> = Once::new();

/// virtio-net PCI functions, in scan order.
pub fn virtio_net_devices() -> impl Iterator<Item = &'static PciDevice> {
    pci::devices()
        .iter()
        .filter(|d| d.vendor_id == VIRTIO_VENDOR_ID && VIRTIO_NET_DEVICE_IDS.contains(&d.device_id))
}

/// Brings up the first virtio-net device with the command line's `ip=` and makes it the
/// default interface ([`default`]). Needs `platform::init`.
///
/// # Errors
/// [`NetError::NoAddress`] without `ip=`, or any bring-up error.
pub fn init_from_cmdline(config: &cmdline::Config) -> Result<&'static NetInterface, NetError> {
    if let Some(iface) = default() {
        return Ok(iface);
    }
    let address = config.ip.ok_or(NetError::NoAddress)?;
    let device = virtio_net_devices().next().ok_or(NetError::NoDevice)?;
    let iface = bring_up_with_peer(device, address, config.peer)?;
    Ok(*DEFAULT.call_once(|| iface))
}

/// The interface set up by [`init_from_cmdline`].
pub fn default() -> Option<&'static NetInterface> {
    DEFAULT.get().copied()
}

/// Brings up the virtio-net PCI function `device` with `address`: driver, MSI-X receive
/// interrupt, smoltcp interface, and the poll task (spawned on the executor). Needs
/// `platform::init`.
///
/// # Errors
/// [`NetError`] naming the step that failed.
pub fn bring_up(device: &PciDevice, address: Ipv4Cidr) -> Result<&'static NetInterface, NetError> {
    bring_up_with_peer(device, address, None)
}

fn bring_up_with_peer(
    device: &PciDevice,
    address: Ipv4Cidr,
    peer: Option<Ipv4Addr>,
) -> Result<&'static NetInterface, NetError> {
    let access = pci::config_space().map_err(NetError::Pci)?;
    let mut nic = VirtioNic::probe_pci(access, device.address).map_err(NetError::Virtio)?;

    // Receive interrupts: MSI-X entry 0 -> a fresh vector -> an executor event.
    let mut msix = MsixTable::new(device).map_err(NetError::Msix)?;
    let (vector, receive_event) = executor::allocate_interrupt().ok_or(NetError::NoVector)?;
    msix.set_vector(RECEIVE_MSIX_ENTRY, vector)
        .map_err(NetError::Msix)?;
    nic.set_receive_msix_entry(RECEIVE_MSIX_ENTRY)
        .map_err(NetError::Virtio)?;
    msix.unmask(RECEIVE_MSIX_ENTRY).map_err(NetError::Msix)?;
    msix.enable().map_err(NetError::Msix)?;
    nic.set_receive_interrupts(true);

    let mac = nic.mac_address();
    let mut device = SmcOptionDevice::new(NicDevice::new(nic));
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed =
        clock::rdtsc() ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
    let mut iface = Interface::new(config, &mut device, smoltcp_now());
    iface.update_ip_addrs(|addresses| {
        // Fresh interface: room for one address.
        let _ = addresses.push(IpCidr::new(
            IpAddress::Ipv4(address.address),
            address.prefix_len,
        ));
    });
    let start_port = EPHEMERAL_PORTS.start() + (clock::rdtsc() % 8192) as u16;
    let interface: &'static NetInterface = Box::leak(Box::new(NetInterface {
        stack: Mutex::new(Stack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            next_port: start_port,
            graveyard: Vec::new(),
        }),
        receive_event,
        kick: InterruptEvent::new(),
        address,
        peer,
        mac,
        _msix: msix,
    }));
    log::info!(
        "net: virtio-net up, mac {:02x?}, address {}, receive vector {:#x}",
        mac,
        address,
        vector
    );
    executor::spawn(interface.run());
    Ok(interface)
}

impl NetInterface {
    /// Our address and prefix.
    pub fn address(&self) -> Ipv4Cidr {
        self.address
    }

    /// The peer named on the command line (`peer=`), if any.
    pub fn peer(&self) -> Option<Ipv4Addr> {
        self.peer
    }

    /// Our MAC address.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Receive interrupts taken so far.
    pub fn receive_interrupts(&self) -> u64 {
        self.receive_event.count()
    }

    /// Did the SMC option go both ways on `local` ↔ `remote`?
    pub fn peer_smc_capable(&self, local: IpEndpoint, remote: IpEndpoint) -> bool {
        self.stack.lock().device.peer_smc_capable(local, remote)
    }

    /// Offer (or stop offering) SMC on connections with local port `port`.
    ///
    /// # Errors
    /// [`NetError::SmcPolicyFull`] when too many ports are enabled.
    pub fn set_port_smc(&self, port: u16, enabled: bool) -> Result<(), NetError> {
        let mut stack = self.stack.lock();
        if enabled {
            stack
                .device
                .enable_port(port)
                .map_err(|_| NetError::SmcPolicyFull)
        } else {
            stack.device.disable_port(port);
            Ok(())
        }
    }

    /// Wait (up to `limit`) until every frame handed to the NIC so far has left the
    /// guest; `false` if some were still pending at the limit. Used before a VM ends
    /// right after a connection closed (its last ACK must not die with it).
    pub async fn wait_transmitted(&self, limit: Duration) -> bool {
        let give_up = clock::now() + limit;
        loop {
            let pending = self
                .stack
                .lock()
                .device
                .inner_mut()
                .nic_mut()
                .transmit_in_flight();
            if pending == 0 {
                return true;
            }
            if clock::now() >= give_up {
                log::warn!("net: {pending} frame(s) still in the transmit ring after {limit:?}");
                return false;
            }
            executor::yield_now().await;
        }
    }

    /// Wake the poll task (after queuing data or freeing receive space).
    fn kick(&self) {
        self.kick.signal();
    }

    /// The poll task: poll, then sleep until a receive interrupt, a kick or a deadline.
    async fn run(&'static self) {
        let mut timer: Option<(Instant, Pin<Box<executor::Sleep>>)> = None;
        loop {
            let receive_seen = self.receive_event.count();
            let kick_seen = self.kick.count();
            let next = self.stack.lock().poll();
            let now = clock::now();
            if next.is_some_and(|at| at <= now) {
                // More to do right away; let other tasks run first.
                executor::yield_now().await;
                continue;
            }
            // Keep one timer per distinct deadline (a new `Sleep` registers a timer entry).
            match (next, &timer) {
                (Some(at), Some((current, _))) if *current == at => {}
                (Some(at), _) => timer = Some((at, Box::pin(executor::sleep_until(at)))),
                (None, _) => timer = None,
            }
            let mut receive = pin!(self.receive_event.wait(receive_seen));
            let mut kick = pin!(self.kick.wait(kick_seen));
            poll_fn(|cx| {
                let timer_due = timer
                    .as_mut()
                    .is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready());
                if receive.as_mut().poll(cx).is_ready()
                    || kick.as_mut().poll(cx).is_ready()
                    || timer_due
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }

    fn new_socket() -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER_LEN]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER_LEN]),
        );
        socket.set_nagle_enabled(false);
        socket
    }

    /// Listen on `port` with a backlog of [`LISTEN_BACKLOG`]; `smc` offers SMC on it
    /// (the SYN-ACK echoes the option to clients that offered it).
    ///
    /// # Errors
    /// [`NetError::Listen`] or [`NetError::SmcPolicyFull`].
    pub fn listen(&'static self, port: u16, smc: bool) -> Result<TcpListener, NetError> {
        self.listen_with_backlog(port, smc, LISTEN_BACKLOG)
    }

    /// [`NetInterface::listen`] with `backlog` (at least 1) sockets listening at once, so
    /// that many handshakes can complete before [`TcpListener::accept`] runs.
    ///
    /// # Errors
    /// [`NetError::Listen`] or [`NetError::SmcPolicyFull`].
    pub fn listen_with_backlog(
        &'static self,
        port: u16,
        smc: bool,
        backlog: usize,
    ) -> Result<TcpListener, NetError> {
        if smc {
            self.set_port_smc(port, true)?;
        }
        let mut listener = TcpListener {
            iface: self,
            port,
            smc,
            pending: Vec::new(),
        };
        // On error, dropping the listener closes what was opened and the SMC port.
        for _ in 0..backlog.max(1) {
            listener.pending.push(self.listening_socket(port)?);
        }
        Ok(listener)
    }

    fn listening_socket(&self, port: u16) -> Result<SocketHandle, NetError> {
        let mut socket = Self::new_socket();
        socket.listen(port).map_err(|_| NetError::Listen)?;
        let handle = self.stack.lock().sockets.add(socket);
        self.kick();
        Ok(handle)
    }

    /// Connect to `remote`; `smc` offers SMC in the SYN. Completes once established.
    ///
    /// # Errors
    /// [`NetError::ConnectionReset`] if refused or timed out, or a setup error.
    pub async fn connect(
        &'static self,
        remote: (Ipv4Addr, u16),
        smc: bool,
    ) -> Result<TcpStream, NetError> {
        let remote = IpEndpoint::new(IpAddress::Ipv4(remote.0), remote.1);
        let (handle, local) = {
            let mut guard = self.stack.lock();
            let stack = &mut *guard;
            let port = stack.ephemeral_port().ok_or(NetError::NoFreePort)?;
            if smc {
                stack
                    .device
                    .enable_port(port)
                    .map_err(|_| NetError::SmcPolicyFull)?;
            }
            let mut socket = Self::new_socket();
            if let Err(e) = socket.connect(stack.iface.context(), remote, port) {
                log::warn!("net: connect to {remote}: {e}");
                stack.device.disable_port(port);
                return Err(NetError::Connect);
            }
            let handle = stack.sockets.add(socket);
            let local = IpEndpoint::new(IpAddress::Ipv4(self.address.address), port);
            (handle, local)
        };
        self.kick();
        let stream = TcpStream {
            iface: self,
            handle,
            local,
            remote,
            smc_port: smc.then_some(local.port),
            shut_down: Cell::new(false),
            closed: Cell::new(false),
        };
        stream.established().await?;
        Ok(stream)
    }
}

/// A listening port; each [`TcpListener::accept`] hands out one connection.
pub struct TcpListener {
    iface: &'static NetInterface,
    port: u16,
    smc: bool,
    /// Listening (or handshaking, or established but not yet accepted) sockets.
    pending: Vec<SocketHandle>,
}

impl TcpListener {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Wait for the next connection; a fresh socket replaces the accepted one, so the
    /// backlog stays full.
    ///
    /// # Errors
    /// [`NetError::ConnectionReset`] if the connection went away before `accept`.
    pub async fn accept(&mut self) -> Result<TcpStream, NetError> {
        let iface = self.iface;
        let pending = &self.pending;
        let index = poll_fn(|cx| {
            let mut stack = iface.stack.lock();
            for (index, &handle) in pending.iter().enumerate() {
                let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => {
                        socket.register_recv_waker(cx.waker());
                    }
                    _ => return Poll::Ready(index),
                }
            }
            Poll::Pending
        })
        .await;
        let handle = self.pending.swap_remove(index);
        let replacement = iface.listening_socket(self.port);
        let endpoints = {
            let stack = iface.stack.lock();
            let socket = stack.sockets.get::<tcp::Socket>(handle);
            socket.local_endpoint().zip(socket.remote_endpoint())
        };
        let Some((local, remote)) = endpoints else {
            iface.stack.lock().graveyard.push(handle);
            self.pending.extend(replacement.as_ref().ok().copied());
            return Err(replacement.err().unwrap_or(NetError::ConnectionReset));
        };
        let stream = TcpStream {
            iface,
            handle,
            local,
            remote,
            smc_port: None,
            shut_down: Cell::new(false),
            closed: Cell::new(false),
        };
        match replacement {
            Ok(replacement) => self.pending.push(replacement),
            // Keep the connection; the backlog is one socket shorter.
            Err(e) => log::warn!(
                "net: port {}: no replacement listening socket: {e}",
                self.port
            ),
        }
        Ok(stream)
    }

    /// Whether SMC is offered on this port.
    pub fn smc(&self) -> bool {
        self.smc
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut stack = self.iface.stack.lock();
        for &handle in &self.pending {
            stack.sockets.get_mut::<tcp::Socket>(handle).abort();
            stack.graveyard.push(handle);
        }
        if self.smc {
            stack.device.disable_port(self.port);
        }
    }
}

/// An established TCP connection.
pub struct TcpStream {
    iface: &'static NetInterface,
    handle: SocketHandle,
    local: IpEndpoint,
    remote: IpEndpoint,
    /// Client port we enabled for SMC (disabled again when the stream goes away).
    smc_port: Option<u16>,
    /// We shut down our write direction or closed: a CLOSED socket then means a
    /// finished connection, otherwise a reset.
    shut_down: Cell<bool>,
    /// [`ByteStream::close`] was called: every further operation fails with `Closed`.
    closed: Cell<bool>,
}

impl TcpStream {
    /// Our address and port.
    pub fn local_endpoint(&self) -> IpEndpoint {
        self.local
    }

    /// The peer's address and port.
    pub fn remote_endpoint(&self) -> IpEndpoint {
        self.remote
    }

    /// Did both SYN and SYN-ACK of this connection carry the SMC option?
    pub fn peer_smc_capable(&self) -> bool {
        self.iface.peer_smc_capable(self.local, self.remote)
    }

    async fn established(&self) -> Result<(), NetError> {
        poll_fn(|cx| {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed | tcp::State::TimeWait => {
                    Poll::Ready(Err(NetError::ConnectionReset))
                }
                _ => Poll::Ready(Ok(())),
            }
        })
        .await
    }

    /// Read at least one byte into `buffer`; `Ok(0)` at end of stream.
    ///
    /// # Errors
    /// [`NetError::ConnectionReset`] if the connection was reset.
    pub async fn read(&self, buffer: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| self.poll_read(cx, buffer)).await
    }

    /// Poll form of [`TcpStream::read`] (for adapters implementing their own stream
    /// traits): `Ready(Ok(0))` at end of stream, `Ready(Err(ConnectionReset))` when the
    /// connection went CLOSED without our FIN, `Pending` with `cx`'s waker registered
    /// otherwise.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<Result<usize, NetError>> {
        let read = {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            if socket.can_recv() {
                socket
                    .recv_slice(buffer)
                    .map_err(|_| NetError::ConnectionReset)
            } else if !socket.may_recv() {
                // The peer sent FIN: end of stream; CLOSED without our FIN: reset.
                let state = socket.state();
                drop(stack);
                return Poll::Ready(
                    self.end_of_stream(state)
                        .map_err(|_| NetError::ConnectionReset),
                );
            } else {
                socket.register_recv_waker(cx.waker());
                return Poll::Pending;
            }
        };
        if read.as_ref().is_ok_and(|&n| n > 0) {
            // Receive space grew: let the poll task advertise the window.
            self.iface.kick();
        }
        Poll::Ready(read)
    }

    /// Fill `buffer` completely.
    ///
    /// # Errors
    /// [`NetError::Closed`] if the stream ends first, or a read error.
    pub async fn read_exact(&self, buffer: &mut [u8]) -> Result<(), NetError> {
        let mut done = 0;
        while done < buffer.len() {
            match self.read(&mut buffer[done..]).await? {
                0 => return Err(NetError::Closed),
                n => done += n,
            }
        }
        Ok(())
    }

    /// Queue at least one byte of `data`; returns how many were queued.
    ///
    /// # Errors
    /// [`NetError::Closed`] if our side is closed or the connection reset.
    pub async fn write(&self, data: &[u8]) -> Result<usize, NetError> {
        poll_fn(|cx| self.poll_write(cx, data)).await
    }

    /// Poll form of [`TcpStream::write`]: `Pending` (waker registered) while the send
    /// buffer is full.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize, NetError>> {
        let written = {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            if !socket.may_send() {
                return Poll::Ready(Err(NetError::Closed));
            }
            if !socket.can_send() {
                socket.register_send_waker(cx.waker());
                return Poll::Pending;
            }
            socket.send_slice(data).map_err(|_| NetError::Closed)
        };
        self.iface.kick();
        Poll::Ready(written)
    }

    /// Queue all of `data`.
    ///
    /// # Errors
    /// As [`TcpStream::write`].
    pub async fn write_all(&self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Wait until everything written so far has been acknowledged by the peer.
    ///
    /// # Errors
    /// [`NetError::ConnectionReset`] if the connection went away first.
    pub async fn flush(&self) -> Result<(), NetError> {
        poll_fn(|cx| {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            if socket.send_queue() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !socket.is_open() {
                return Poll::Ready(Err(NetError::ConnectionReset));
            }
            socket.register_send_waker(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Send FIN after the queued data (the peer then reads end of stream); reading stays
    /// possible until the peer closes too.
    pub fn shutdown_write(&self) {
        self.shut_down.set(true);
        {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            // From now on acknowledge at once: the ACK of the peer's FIN then leaves in
            // the same poll that moves us to TIME-WAIT, so `close` can wait for it.
            socket.set_ack_delay(None);
            // A peer that stops answering cannot keep the socket forever.
            socket.set_timeout(Some(smoltcp::time::Duration::from_secs(CLOSE_TIMEOUT_SECS)));
            socket.close();
        }
        self.iface.kick();
    }

    /// Close gracefully: FIN after the queued data, then wait (bounded by TCP's own
    /// timers) until the peer has closed too and our last segment (the ACK of the peer's
    /// FIN) has left the NIC.
    pub async fn close(self) {
        self.shutdown_write();
        poll_fn(|cx| {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            match socket.state() {
                tcp::State::Closed | tcp::State::TimeWait => Poll::Ready(()),
                _ => {
                    socket.register_recv_waker(cx.waker());
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await;
        self.iface.wait_transmitted(TRANSMIT_DRAIN_LIMIT).await;
    }
}

impl TcpStream {
    /// Wake `waker` when the stream may have become readable or writable (for callers of
    /// the non-blocking [`ByteStream`] methods; one waker per direction, the last wins).
    pub fn register_waker(&self, waker: &Waker) {
        let mut stack = self.iface.stack.lock();
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        socket.register_recv_waker(waker);
        socket.register_send_waker(waker);
    }

    /// End of stream, or a reset: a socket that went CLOSED without our FIN was reset
    /// (or timed out).
    fn end_of_stream(&self, state: tcp::State) -> Result<usize, StreamError> {
        if state == tcp::State::Closed && !self.shut_down.get() {
            Err(StreamError::Reset)
        } else {
            Ok(0)
        }
    }
}

/// The smcd byte-stream contract (`smcd::stream`) over the smoltcp socket: the CLC
/// handshake and the TCP fallback run over this.
impl ByteStream for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        if self.closed.get() {
            return Err(StreamError::Closed);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let read = {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            if socket.can_recv() {
                socket.recv_slice(buf).map_err(|_| StreamError::Reset)?
            } else if !socket.may_recv() {
                let state = socket.state();
                drop(stack);
                return self.end_of_stream(state);
            } else {
                return Err(StreamError::WouldBlock);
            }
        };
        if read > 0 {
            self.iface.kick();
        }
        Ok(read)
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        if self.closed.get() {
            return Err(StreamError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let written = {
            let mut stack = self.iface.stack.lock();
            let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
            if !socket.may_send() {
                let reset = socket.state() == tcp::State::Closed && !self.shut_down.get();
                return Err(if reset {
                    StreamError::Reset
                } else {
                    StreamError::BrokenPipe
                });
            }
            if !socket.can_send() {
                return Err(StreamError::WouldBlock);
            }
            socket
                .send_slice(data)
                .map_err(|_| StreamError::BrokenPipe)?
        };
        self.iface.kick();
        Ok(written)
    }

    fn shutdown_write(&mut self) -> Result<(), StreamError> {
        if self.closed.get() {
            return Err(StreamError::Closed);
        }
        TcpStream::shutdown_write(self);
        Ok(())
    }

    fn close(&mut self) -> Result<(), StreamError> {
        if !self.closed.replace(true) {
            // FIN after the queued data; the socket finishes the close on its own and is
            // released when this value is dropped (it stays until CLOSED or TIME-WAIT).
            TcpStream::shutdown_write(self);
        }
        Ok(())
    }

    fn peer_smc_capable(&self) -> bool {
        TcpStream::peer_smc_capable(self)
    }

    fn read_ready(&self) -> bool {
        if self.closed.get() {
            return true;
        }
        let mut stack = self.iface.stack.lock();
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        socket.can_recv() || !socket.may_recv()
    }

    fn write_ready(&self) -> bool {
        if self.closed.get() {
            return true;
        }
        let mut stack = self.iface.stack.lock();
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        socket.can_send() || !socket.may_send()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut stack = self.iface.stack.lock();
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        // After our FIN (`shutdown_write`, `close`) the socket finishes on its own, bounded
        // by its timeout; a stream dropped while still open is reset (unsent data is
        // discarded: `close().await` first for a graceful end).
        if !self.shut_down.get() && socket.state() != tcp::State::Closed {
            socket.abort();
        }
        stack.graveyard.push(self.handle);
        if let Some(port) = self.smc_port {
            stack.device.disable_port(port);
        }
        stack.device.forget(self.local, self.remote);
        drop(stack);
        self.iface.kick();
    }
}
