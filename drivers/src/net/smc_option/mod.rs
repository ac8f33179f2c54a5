//! SMC TCP-option middleware: a `smoltcp::phy::Device` wrapper that adds and reads the
//! SMC capability option in TCP handshakes.
//!
//! smoltcp has no socket-level way to put an experimental option into a SYN or to read
//! one from a received SYN (protocol reference §9 item 8), so — in the style of smoltcp's
//! own `phy` middleware (`Tracer`, `PcapWriter`) — the device layer does it:
//!
//! - **Transmit.** A TCP SYN (client) or SYN-ACK (server) is rewritten with the 8-byte
//!   Linux block `01 01 FE 06 E2 D4 C3 D9` when the policy allows it and 8 bytes of option
//!   space remain (see [`table`] for the rules). smoltcp only ever builds SYNs without
//!   payload, so frames longer than [`wire::MAX_SYN_FRAME_LEN`] go straight into the
//!   inner device's buffer; shorter ones are built in a stack buffer first and copied.
//! - **Receive.** Every received SYN/SYN-ACK is parsed per Linux rules and the result is
//!   recorded per connection (4-tuple); the frame itself is passed on unchanged.
//!
//! With no port enabled, every frame passes through byte-for-byte: a non-SMC peer sees
//! an ordinary TCP connection.
//!
//! The kernel marks sockets SMC-enabled by local port ([`SmcOptionDevice::enable_port`])
//! and asks [`SmcOptionDevice::peer_smc_capable`] once the socket is established.

pub mod table;
pub mod wire;

#[cfg(test)]
mod tests;

use core::cell::RefCell;

use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

pub use table::{OptionExchange, PolicyFull, Role, SmcOptionTable};
pub use wire::{InsertError, SMC_OPTION_BLOCK, SMC_OPTION_KIND, SMC_OPTION_MAGIC};

use wire::{MAX_REWRITTEN_FRAME_LEN, MAX_SYN_FRAME_LEN};

/// The middleware: wraps any Ethernet `Device` and keeps the SMC option table.
#[derive(Debug)]
pub struct SmcOptionDevice<D> {
    inner: D,
    table: RefCell<SmcOptionTable>,
}

impl<D: Device> SmcOptionDevice<D> {
    /// Wrap `inner` (which must be an Ethernet-medium device); no port is SMC-enabled.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            table: RefCell::new(SmcOptionTable::new()),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably (e.g. to ack its interrupt).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Offer SMC on connections with local port `port`: a listener's port (server side
    /// echo rule) or the local port an active open uses (client SYN).
    ///
    /// # Errors
    /// [`PolicyFull`] when [`table::MAX_SMC_PORTS`] ports are already enabled.
    pub fn enable_port(&mut self, port: u16) -> Result<(), PolicyFull> {
        self.table.get_mut().enable_port(port)
    }

    /// Stop offering SMC on `port` (connections already negotiated keep their record).
    pub fn disable_port(&mut self, port: u16) {
        self.table.get_mut().disable_port(port)
    }

    /// Did the option go both ways on this connection (our SYN/SYN-ACK carried it and so
    /// did the peer's)? `local`/`remote` as seen by the local socket.
    pub fn peer_smc_capable(&self, local: IpEndpoint, remote: IpEndpoint) -> bool {
        self.table.borrow().peer_smc_capable(local, remote)
    }

    /// The full record of the option exchange, if the handshake went through an
    /// SMC-enabled port.
    pub fn exchange(&self, local: IpEndpoint, remote: IpEndpoint) -> Option<OptionExchange> {
        self.table.borrow().exchange(local, remote)
    }

    /// Drop the record of a closed connection.
    pub fn forget(&mut self, local: IpEndpoint, remote: IpEndpoint) {
        self.table.get_mut().forget(local, remote)
    }
}

impl<D: Device> Device for SmcOptionDevice<D> {
    type RxToken<'a>
        = SmcRxToken<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = SmcTxToken<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let checksum = self.inner.capabilities().checksum;
        let table = &self.table;
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            SmcRxToken {
                inner: rx,
                table,
                checksum: checksum.clone(),
            },
            SmcTxToken {
                inner: tx,
                table,
                checksum,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let checksum = self.inner.capabilities().checksum;
        let table = &self.table;
        let tx = self.inner.transmit(timestamp)?;
        Some(SmcTxToken {
            inner: tx,
            table,
            checksum,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// Receive token: records the SMC option of received SYN/SYN-ACKs, passes bytes through.
pub struct SmcRxToken<'a, R> {
    inner: R,
    table: &'a RefCell<SmcOptionTable>,
    checksum: ChecksumCapabilities,
}

impl<R: RxToken> RxToken for SmcRxToken<'_, R> {
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&[u8]) -> T,
    {
        let Self {
            inner,
            table,
            checksum,
        } = self;
        inner.consume(|frame| {
            if let Some(segment) = wire::classify_received(frame, &checksum) {
                table.borrow_mut().on_received_syn(&segment);
            }
            f(frame)
        })
    }

    fn meta(&self) -> smoltcp::phy::PacketMeta {
        self.inner.meta()
    }
}

/// Transmit token: adds the SMC option to outgoing SYN/SYN-ACKs when the policy says so.
pub struct SmcTxToken<'a, T> {
    inner: T,
    table: &'a RefCell<SmcOptionTable>,
    checksum: ChecksumCapabilities,
}

impl<T: TxToken> TxToken for SmcTxToken<'_, T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Self {
            inner,
            table,
            checksum,
        } = self;
        if len > MAX_SYN_FRAME_LEN {
            // Too long for a payload-less SYN: nothing to rewrite, no copy.
            return inner.consume(len, f);
        }
        let mut built = [0u8; MAX_SYN_FRAME_LEN];
        let result = f(&mut built[..len]);
        let mut rewritten = [0u8; MAX_REWRITTEN_FRAME_LEN];
        let mut out: &[u8] = &built[..len];
        if let Some(segment) = wire::classify_outgoing(out) {
            let fits = segment.tcp_header_len + SMC_OPTION_BLOCK.len() <= wire::TCP_MAX_HEADER_LEN;
            if table.borrow_mut().on_outgoing_syn(&segment, fits) {
                match wire::insert_smc_option(out, &mut rewritten, &checksum) {
                    Ok(new_len) => out = &rewritten[..new_len],
                    Err(error) => {
                        // Not expected after classification; send the segment unchanged
                        // and record that the option did not go out.
                        log::warn!("smc option: not inserted: {error:?}");
                        table.borrow_mut().on_outgoing_syn(&segment, false);
                    }
                }
            }
        }
        inner.consume(out.len(), |buffer| buffer.copy_from_slice(out));
        result
    }

    fn set_meta(&mut self, meta: smoltcp::phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}
