//! SMC option policy (which local ports offer SMC) and per-connection option outcome.
//!
//! Decision rules follow Linux (protocol reference §1): a client puts the option in its
//! SYN when its socket is SMC-enabled; a server echoes it in the SYN-ACK only if the SYN
//! carried it and the listener is SMC-enabled; the client treats a SYN-ACK without it as
//! plain TCP. A connection is SMC-capable when the option went both ways.
//!
//! Fixed capacity, no heap: the table lives inside the network device.

use smoltcp::wire::IpEndpoint;

use super::wire::SynSegment;

/// How many local ports can be SMC-enabled at once.
pub const MAX_SMC_PORTS: usize = 64;
/// How many connections' option outcomes are remembered; the oldest record is evicted
/// when a new handshake needs a slot.
pub const MAX_CONNECTIONS: usize = 128;

/// The port policy is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyFull;

/// Which side of the handshake this host played for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the SYN (active open).
    Client,
    /// We answered a SYN with a SYN-ACK (passive open).
    Server,
}

/// What the option exchange of one connection looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionExchange {
    /// Our side of the handshake.
    pub role: Role,
    /// Our SYN (client) or SYN-ACK (server) carried the option.
    pub sent: bool,
    /// The peer's SYN (server) or SYN-ACK (client) carried the option.
    pub received: bool,
}

impl OptionExchange {
    /// Both sides offered SMC: the socket layer may start the CLC handshake.
    pub fn smc_capable(&self) -> bool {
        self.sent && self.received
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    local: IpEndpoint,
    remote: IpEndpoint,
    exchange: OptionExchange,
    /// Insertion order, for evicting the oldest record.
    stamp: u64,
}

/// Port policy plus per-connection option outcomes.
#[derive(Debug)]
pub struct SmcOptionTable {
    ports: [u16; MAX_SMC_PORTS],
    port_count: usize,
    records: [Option<Record>; MAX_CONNECTIONS],
    next_stamp: u64,
}

impl Default for SmcOptionTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SmcOptionTable {
    /// Empty table: no port offers SMC, so every connection is ordinary TCP.
    pub const fn new() -> Self {
        Self {
            ports: [0; MAX_SMC_PORTS],
            port_count: 0,
            records: [None; MAX_CONNECTIONS],
            next_stamp: 0,
        }
    }

    /// Offer SMC on connections whose local port is `port` (a listener's port, or the
    /// local port a client connects from).
    ///
    /// # Errors
    /// [`PolicyFull`] when [`MAX_SMC_PORTS`] ports are already enabled.
    pub fn enable_port(&mut self, port: u16) -> Result<(), PolicyFull> {
        if self.port_enabled(port) {
            return Ok(());
        }
        let slot = self.ports.get_mut(self.port_count).ok_or(PolicyFull)?;
        *slot = port;
        self.port_count += 1;
        Ok(())
    }

    /// Stop offering SMC on `port`. Records of finished handshakes stay queryable.
    pub fn disable_port(&mut self, port: u16) {
        if let Some(index) = self.ports[..self.port_count]
            .iter()
            .position(|&p| p == port)
        {
            self.ports.swap(index, self.port_count - 1);
            self.port_count -= 1;
        }
    }

    /// Is SMC offered on `port`?
    pub fn port_enabled(&self, port: u16) -> bool {
        self.ports[..self.port_count].contains(&port)
    }

    /// The option outcome recorded for the connection `local` ↔ `remote`.
    pub fn exchange(&self, local: IpEndpoint, remote: IpEndpoint) -> Option<OptionExchange> {
        self.find(local, remote)
            .and_then(|index| self.records[index])
            .map(|record| record.exchange)
    }

    /// Did the option go both ways on `local` ↔ `remote`?
    pub fn peer_smc_capable(&self, local: IpEndpoint, remote: IpEndpoint) -> bool {
        self.exchange(local, remote)
            .is_some_and(|exchange| exchange.smc_capable())
    }

    /// Drop the record of a closed connection.
    pub fn forget(&mut self, local: IpEndpoint, remote: IpEndpoint) {
        if let Some(index) = self.find(local, remote) {
            self.records[index] = None;
        }
    }

    /// Number of connection records held.
    pub fn record_count(&self) -> usize {
        self.records.iter().flatten().count()
    }

    /// An outgoing SYN or SYN-ACK: returns whether to add the option. `fits` tells whether
    /// the segment has room; `sent` is recorded only when the option really goes out.
    pub fn on_outgoing_syn(&mut self, segment: &SynSegment, fits: bool) -> bool {
        let (local, remote) = (segment.source, segment.destination);
        if !segment.ack {
            // Client SYN (a retransmission starts the exchange afresh, like Linux).
            if !self.port_enabled(local.port) {
                self.forget(local, remote);
                return false;
            }
            self.upsert(
                local,
                remote,
                OptionExchange {
                    role: Role::Client,
                    sent: fits,
                    received: false,
                },
            );
            return fits;
        }
        // Server SYN-ACK: echo only if the SYN carried the option and the listener is
        // still SMC-enabled.
        let enabled = self.port_enabled(local.port);
        let Some(index) = self.find(local, remote) else {
            return false;
        };
        let Some(record) = self.records[index].as_mut() else {
            return false;
        };
        if record.exchange.role != Role::Server {
            return false;
        }
        let echo = enabled && record.exchange.received && fits;
        record.exchange.sent = echo;
        echo
    }

    /// A received SYN or SYN-ACK (checksums verified).
    pub fn on_received_syn(&mut self, segment: &SynSegment) {
        let (local, remote) = (segment.destination, segment.source);
        if !segment.ack {
            // Passive open: remember whether the client offered SMC, if we might echo.
            if self.port_enabled(local.port) {
                self.upsert(
                    local,
                    remote,
                    OptionExchange {
                        role: Role::Server,
                        sent: false,
                        received: segment.carries_smc,
                    },
                );
            } else {
                self.forget(local, remote);
            }
            return;
        }
        // SYN-ACK for our active open: without the option the connection is plain TCP.
        if let Some(index) = self.find(local, remote) {
            if let Some(record) = self.records[index].as_mut() {
                if record.exchange.role == Role::Client {
                    record.exchange.received = segment.carries_smc;
                }
            }
        }
    }

    fn find(&self, local: IpEndpoint, remote: IpEndpoint) -> Option<usize> {
        self.records.iter().position(|record| {
            record.is_some_and(|record| record.local == local && record.remote == remote)
        })
    }

    fn upsert(&mut self, local: IpEndpoint, remote: IpEndpoint, exchange: OptionExchange) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let index = self
            .find(local, remote)
            .or_else(|| self.records.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                // Full: evict the oldest record.
                let mut oldest = 0;
                for (index, record) in self.records.iter().enumerate() {
                    if let (Some(record), Some(best)) = (record, &self.records[oldest]) {
                        if record.stamp < best.stamp {
                            oldest = index;
                        }
                    }
                }
                oldest
            });
        self.records[index] = Some(Record {
            local,
            remote,
            exchange,
            stamp,
        });
    }
}
