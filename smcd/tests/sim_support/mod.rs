//! Shared helpers for the two-peer socket simulations (sim, socket_*, fallback_*).
#![allow(dead_code)]

use core::time::Duration;

use smcd::ism::{Dmb, DmbToken, Gid, IsmDevice, IsmError, IsmEvent};
use smcd::loopback::{LoopbackConfig, LoopbackFabric, LoopbackIsm};
use smcd::negotiate::LocalConfig;
use smcd::socket::{SocketError, SocketHandle, SocketState, Stack, StackOptions, Transport};
use smcd::stream::MemPipe;
use smcd::wire::clc::Eid;

/// The stack type of most simulations.
pub type Sim<D = LoopbackIsm> = Stack<D, MemPipe>;

/// A UEID both peers share unless a test says otherwise.
pub const UEID: &str = "SMCD-SIM-UEID";

/// A CLC configuration with the given UEIDs (SMC-Dv2 over emulated devices needs one).
pub fn config(ueids: &[&str]) -> LocalConfig {
    LocalConfig {
        ueids: ueids
            .iter()
            .map(|u| Eid::ueid(u).expect("valid UEID"))
            .collect(),
        ..LocalConfig::default()
    }
}

/// Stack options with a DMB of `dmb_len` bytes.
pub fn options(dmb_len: usize) -> StackOptions {
    StackOptions {
        dmb_len,
        ..StackOptions::default()
    }
}

/// Two stacks (client, server) on one loopback fabric, each with its own device.
pub fn two_peers(seed: u64, dmb_len: usize) -> (Sim, Sim, LoopbackFabric) {
    two_peers_with(
        seed,
        dmb_len,
        LoopbackConfig::default(),
        LoopbackConfig::default(),
    )
}

/// As [`two_peers`] with explicit device limits.
pub fn two_peers_with(
    seed: u64,
    dmb_len: usize,
    client_dev: LoopbackConfig,
    server_dev: LoopbackConfig,
) -> (Sim, Sim, LoopbackFabric) {
    let fabric = LoopbackFabric::new(seed);
    let c = fabric.device_with(seed + 1, client_dev);
    let s = fabric.device_with(seed + 2, server_dev);
    let client = Stack::new(vec![c], config(&[UEID]), options(dmb_len));
    let server = Stack::new(vec![s], config(&[UEID]), options(dmb_len));
    (client, server, fabric)
}

/// Polls both stacks once; true if either made progress.
pub fn pump<D: IsmDevice, E: IsmDevice>(
    a: &mut Stack<D, MemPipe>,
    b: &mut Stack<E, MemPipe>,
    now: Duration,
) -> bool {
    let x = a.poll(now);
    let y = b.poll(now);
    x | y
}

/// Polls both stacks until neither makes progress (bounded).
pub fn settle<D: IsmDevice, E: IsmDevice>(
    a: &mut Stack<D, MemPipe>,
    b: &mut Stack<E, MemPipe>,
    now: Duration,
) {
    for _ in 0..10_000 {
        if !pump(a, b, now) {
            return;
        }
    }
    panic!("stacks did not settle within 10000 polls");
}

/// Connects `client` to `server` over a fresh pipe and runs the handshake to its end.
pub fn connect<D: IsmDevice, E: IsmDevice>(
    client: &mut Stack<D, MemPipe>,
    server: &mut Stack<E, MemPipe>,
    smc_capable: bool,
    now: Duration,
) -> (SocketHandle, SocketHandle) {
    let (a, b) = MemPipe::pair(64 * 1024, smc_capable);
    let c = client.connect(a, now);
    let s = server.accept(b, now);
    settle(client, server, now);
    assert_ne!(
        client.state(c),
        SocketState::Handshaking,
        "client still handshaking"
    );
    assert_ne!(
        server.state(s),
        SocketState::Handshaking,
        "server still handshaking"
    );
    (c, s)
}

/// Byte `i` of the test stream: position-dependent, so a lost, duplicated or
/// misplaced byte shows up.
pub fn pattern(i: u64, salt: u64) -> u8 {
    ((i ^ (i >> 13) ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// FNV-1a, the running hash of a transfer.
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One direction of a bulk transfer: the sender's and receiver's positions.
pub struct Flow {
    pub total: u64,
    pub salt: u64,
    pub sent: u64,
    pub received: u64,
    pub tx_hash: Fnv,
    pub rx_hash: Fnv,
    pending: Vec<u8>,
    pending_at: usize,
}

impl Flow {
    pub fn new(total: u64, salt: u64) -> Self {
        Flow {
            total,
            salt,
            sent: 0,
            received: 0,
            tx_hash: Fnv::new(),
            rx_hash: Fnv::new(),
            pending: Vec::new(),
            pending_at: 0,
        }
    }

    /// Writes as much as the socket takes, in chunks of at most `chunk`.
    pub fn send<D: IsmDevice>(
        &mut self,
        stack: &mut Stack<D, MemPipe>,
        h: SocketHandle,
        chunk: usize,
    ) -> bool {
        let mut progress = false;
        loop {
            if self.pending_at == self.pending.len() {
                let left = self.total - self.sent - (self.pending.len() - self.pending_at) as u64;
                if left == 0 {
                    return progress;
                }
                let n = (chunk as u64).min(left) as usize;
                let base = self.sent;
                self.pending.clear();
                self.pending
                    .extend((0..n as u64).map(|k| pattern(base + k, self.salt)));
                self.tx_hash.update(&self.pending);
                self.pending_at = 0;
            }
            match stack.write(h, &self.pending[self.pending_at..]) {
                Ok(n) => {
                    assert!(n > 0, "write returned 0 for a non-empty buffer");
                    self.pending_at += n;
                    self.sent += n as u64;
                    progress = true;
                }
                Err(SocketError::WouldBlock) => return progress,
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    /// Reads everything available into `buf`-sized pieces and checks it byte by byte.
    pub fn receive<D: IsmDevice>(
        &mut self,
        stack: &mut Stack<D, MemPipe>,
        h: SocketHandle,
        buf: &mut [u8],
    ) -> bool {
        let mut progress = false;
        loop {
            match stack.read(h, buf) {
                Ok(0) => {
                    assert_eq!(self.received, self.total, "EOF before all data");
                    return progress;
                }
                Ok(n) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        let at = self.received + k as u64;
                        if *b != pattern(at, self.salt) {
                            panic!("byte {at} corrupted: {b:#04x}");
                        }
                    }
                    self.rx_hash.update(&buf[..n]);
                    self.received += n as u64;
                    assert!(self.received <= self.total, "more bytes than sent");
                    progress = true;
                }
                Err(SocketError::WouldBlock) => return progress,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    pub fn done(&self) -> bool {
        self.received == self.total
    }
}

/// Reads until end of stream (bounded), returning everything read.
pub fn read_to_eof<D: IsmDevice, E: IsmDevice>(
    reader: &mut Stack<D, MemPipe>,
    h: SocketHandle,
    other: &mut Stack<E, MemPipe>,
    now: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100_000 {
        match reader.read(h, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(SocketError::WouldBlock) => {
                pump(reader, other, now);
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    panic!("no EOF within the poll budget");
}

/// Writes all of `data` (bounded), polling both stacks while it would block.
pub fn write_all<D: IsmDevice, E: IsmDevice>(
    writer: &mut Stack<D, MemPipe>,
    h: SocketHandle,
    other: &mut Stack<E, MemPipe>,
    data: &[u8],
    now: Duration,
) {
    let mut at = 0;
    for _ in 0..100_000 {
        if at == data.len() {
            return;
        }
        match writer.write(h, &data[at..]) {
            Ok(n) => at += n,
            Err(SocketError::WouldBlock) => {
                pump(writer, other, now);
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    panic!("could not write within the poll budget");
}

/// The fallback reason of a socket (panics if it is on SMC-D or failed).
pub fn fallback_reason<D: IsmDevice>(stack: &Stack<D, MemPipe>, h: SocketHandle) -> (u32, bool) {
    match stack.transport(h) {
        Some(Transport::Tcp { reason, by_peer }) => (reason.0, by_peer),
        other => panic!(
            "expected TCP fallback, got {other:?} (state {})",
            stack.state(h)
        ),
    }
}

/// An ISM device that reports another CHID than the device it wraps (CHID mismatch).
pub struct ChidOverride<D> {
    pub inner: D,
    pub chid: u16,
}

impl<D: IsmDevice> IsmDevice for ChidOverride<D> {
    type Memory = D::Memory;
    fn local_gid(&self) -> Gid {
        self.inner.local_gid()
    }
    fn chid(&self) -> u16 {
        self.chid
    }
    fn supports_v2(&self) -> bool {
        self.inner.supports_v2()
    }
    fn query_remote_gid(&self, remote: Gid, vlan: Option<u16>) -> bool {
        self.inner.query_remote_gid(remote, vlan)
    }
    fn register_dmb(&self, len: usize, remote: Gid) -> Result<Dmb<Self::Memory>, IsmError> {
        self.inner.register_dmb(len, remote)
    }
    fn unregister_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        self.inner.unregister_dmb(token)
    }
    fn move_data(
        &self,
        token: DmbToken,
        offset: usize,
        data: &[u8],
        signal: bool,
    ) -> Result<(), IsmError> {
        self.inner.move_data(token, offset, data, signal)
    }
    fn supports_nocopy(&self) -> bool {
        self.inner.supports_nocopy()
    }
    fn attach_dmb(&self, token: DmbToken) -> Result<Self::Memory, IsmError> {
        self.inner.attach_dmb(token)
    }
    fn detach_dmb(&self, token: DmbToken) -> Result<(), IsmError> {
        self.inner.detach_dmb(token)
    }
    fn poll_events(&self, sink: &mut dyn FnMut(IsmEvent)) {
        self.inner.poll_events(sink)
    }
}
