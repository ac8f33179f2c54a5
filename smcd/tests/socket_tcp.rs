//! Transport independence: the same stacks over real `std::net::TcpStream`s (feature
//! `std`): CLC handshake over loopback TCP, data through the loopback ISM fabric; and
//! a plain-TCP fallback over the same kind of stream.
//!
//! Run with `cargo test -p smcd --features std --test socket_tcp`.
#![cfg(feature = "std")]

use core::time::Duration;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use smcd::loopback::LoopbackFabric;
use smcd::negotiate::LocalConfig;
use smcd::socket::{SocketError, SocketHandle, SocketState, Stack, StackOptions, Transport};
use smcd::stream::StdTcpStream;
use smcd::wire::clc::Eid;

type TcpSim = Stack<smcd::loopback::LoopbackIsm, StdTcpStream>;

fn config() -> LocalConfig {
    LocalConfig {
        ueids: vec![Eid::ueid("SMCD-TCP-TEST").unwrap()],
        ..LocalConfig::default()
    }
}

fn tcp_pair(smc_capable: bool) -> (StdTcpStream, StdTcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (
        StdTcpStream::new(client, smc_capable).unwrap(),
        StdTcpStream::new(server, smc_capable).unwrap(),
    )
}

/// Polls both stacks until `done` holds, for at most 10 s of wall time (real TCP).
fn poll_until(
    client: &mut TcpSim,
    server: &mut TcpSim,
    mut done: impl FnMut(&mut TcpSim, &mut TcpSim) -> bool,
) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let now = Duration::from_secs(1);
    while !done(client, server) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        client.poll(now);
        server.poll(now);
        std::thread::yield_now();
    }
}

fn exchange(client: &mut TcpSim, c: SocketHandle, server: &mut TcpSim, s: SocketHandle) {
    let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    poll_until(client, server, |client, server| {
        if sent < msg.len() {
            match client.write(c, &msg[sent..]) {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        match server.read(s, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(SocketError::WouldBlock) => {}
            Err(e) => panic!("read: {e}"),
        }
        got.len() == msg.len()
    });
    assert_eq!(got, msg);
    client.close(c, Duration::from_secs(1)).unwrap();
    poll_until(client, server, |_, server| {
        matches!(server.read(s, &mut [0u8; 16]), Ok(0))
    });
    server.close(s, Duration::from_secs(1)).unwrap();
    poll_until(client, server, |client, server| {
        client.socket_count() == 0 && server.socket_count() == 0
    });
}

#[test]
fn smcd_handshake_over_std_tcp() {
    let fabric = LoopbackFabric::new(77);
    let mut client: TcpSim = Stack::new(vec![fabric.device(1)], config(), StackOptions::default());
    let mut server: TcpSim = Stack::new(vec![fabric.device(2)], config(), StackOptions::default());
    let (a, b) = tcp_pair(true);
    let c = client.connect(a, Duration::from_secs(1));
    let s = server.accept(b, Duration::from_secs(1));
    poll_until(&mut client, &mut server, |client, server| {
        client.state(c) != SocketState::Handshaking && server.state(s) != SocketState::Handshaking
    });
    assert!(matches!(
        client.transport(c),
        Some(Transport::Smcd { version: 2, .. })
    ));
    assert!(matches!(
        server.transport(s),
        Some(Transport::Smcd { version: 2, .. })
    ));
    exchange(&mut client, c, &mut server, s);
    assert_eq!(fabric.registered_dmbs(), 2, "pooled DMBs only");
}

#[test]
fn fallback_over_std_tcp() {
    let fabric = LoopbackFabric::new(78);
    let mut client: TcpSim = Stack::new(vec![fabric.device(1)], config(), StackOptions::default());
    let mut server: TcpSim = Stack::new(vec![fabric.device(2)], config(), StackOptions::default());
    let (a, b) = tcp_pair(false);
    let c = client.connect(a, Duration::from_secs(1));
    let s = server.accept(b, Duration::from_secs(1));
    assert!(
        matches!(client.transport(c), Some(Transport::Tcp { reason, .. }) if reason.0 == 0x0301_0000)
    );
    exchange(&mut client, c, &mut server, s);
    assert_eq!(fabric.registered_dmbs(), 0);
}
