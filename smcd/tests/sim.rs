//! Two-peer SMC-D simulation in one process: client and server stacks over a MemPipe
//! and one loopback fabric (protocol-reference §1): handshake, bulk data both ways,
//! close, link-group reuse and DMB leak checks, and a seeded random-chunking run.

mod sim_support;

use core::time::Duration;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_support::*;
use smcd::conn::State;
use smcd::ism::IsmDevice;
use smcd::loopback::LoopbackIsm;
use smcd::socket::{SocketState, Stack, Transport};

const T0: Duration = Duration::from_secs(1);

/// 256 MiB each way, byte-exact, over 1 MiB DMBs; then an orderly close from the
/// client side. Run in release for speed (`cargo test --release -p smcd --test sim`);
/// the size can be lowered with `SMCD_SIM_MIB` for quick debug runs.
#[test]
fn bulk_256_mib_each_way_byte_exact_then_orderly_close() {
    let mib: u64 = std::env::var("SMCD_SIM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let total = mib << 20;
    let (mut client, mut server, _fabric) = two_peers(7, 1 << 20);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    let ct = client.transport(c).expect("client transport");
    let st = server.transport(s).expect("server transport");
    assert!(
        matches!(
            ct,
            Transport::Smcd {
                version: 2,
                first_contact: true,
                ..
            }
        ),
        "{ct:?}"
    );
    assert!(
        matches!(
            st,
            Transport::Smcd {
                version: 2,
                first_contact: true,
                ..
            }
        ),
        "{st:?}"
    );

    let mut up = Flow::new(total, 0x1111);
    let mut down = Flow::new(total, 0x2222);
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut idle = 0;
    while !(up.done() && down.done()) {
        let mut progress = up.send(&mut client, c, 256 * 1024);
        progress |= down.send(&mut server, s, 256 * 1024);
        progress |= up.receive(&mut server, s, &mut buf);
        progress |= down.receive(&mut client, c, &mut buf);
        progress |= pump(&mut client, &mut server, T0);
        idle = if progress { 0 } else { idle + 1 };
        assert!(
            idle < 100,
            "transfer stalled at up={} down={}",
            up.received,
            down.received
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(up.tx_hash.0, up.rx_hash.0);
    assert_eq!(down.tx_hash.0, down.rx_hash.0);
    eprintln!(
        "sim: {mib} MiB each way in {:.2?} ({:.0} MiB/s per direction), hashes {:#018x} {:#018x}",
        elapsed,
        mib as f64 / elapsed.as_secs_f64(),
        up.rx_hash.0,
        down.rx_hash.0
    );
    let cs = client.socket_stats(c).unwrap();
    assert_eq!(cs.bytes_tx, total);
    assert_eq!(cs.bytes_rx, total);
    assert!(cs.cdcs_tx > 0 && cs.signals_rx > 0);

    // Orderly close: client first, then the server reads EOF and closes.
    client.close(c, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(server.conn_state(s), Some(State::AppCloseWait1));
    let rest = read_to_eof(&mut server, s, &mut client, T0);
    assert!(rest.is_empty());
    server.close(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count(), 0);
    assert_eq!(server.socket_count(), 0);
    // DMBs are back in their groups' pools: one per side, still registered.
    assert_eq!(client.devices()[0].registered_dmbs(), 1);
    assert_eq!(server.devices()[0].registered_dmbs(), 1);
    let counters = client.counters();
    assert_eq!(counters.aborts, 0);
    assert_eq!(counters.handshakes_smcd, 1);
    assert_eq!(counters.fallbacks_total(), 0);
}

/// 1000 connect/close cycles: the first creates the link groups (first contact), the
/// rest reuse them and their DMB; no DMB leaks on either device.
#[test]
fn thousand_cycles_reuse_link_group_without_leaking_dmbs() {
    let (mut client, mut server, fabric) = two_peers(11, 64 * 1024);
    for cycle in 0..1000u32 {
        let (c, s) = connect(&mut client, &mut server, true, T0);
        match client.transport(c) {
            Some(Transport::Smcd { first_contact, .. }) => {
                assert_eq!(first_contact, cycle == 0, "cycle {cycle}")
            }
            other => panic!("cycle {cycle}: {other:?}"),
        }
        let msg = cycle.to_be_bytes();
        write_all(&mut client, c, &mut server, &msg, T0);
        let mut got = [0u8; 4];
        let mut have = 0;
        for _ in 0..100 {
            match server.read(s, &mut got[have..]) {
                Ok(n) => have += n,
                Err(_) => {
                    pump(&mut client, &mut server, T0);
                }
            }
            if have == 4 {
                break;
            }
        }
        assert_eq!(got, msg);
        // Alternate who closes first.
        if cycle % 2 == 0 {
            client.close(c, T0).unwrap();
            settle(&mut client, &mut server, T0);
            server.close(s, T0).unwrap();
        } else {
            server.close(s, T0).unwrap();
            settle(&mut client, &mut server, T0);
            client.close(c, T0).unwrap();
        }
        settle(&mut client, &mut server, T0);
        assert_eq!(client.socket_count(), 0, "cycle {cycle}");
        assert_eq!(server.socket_count(), 0, "cycle {cycle}");
        // The pool holds exactly one DMB per side between connections.
        assert_eq!(client.devices()[0].registered_dmbs(), 1, "cycle {cycle}");
        assert_eq!(server.devices()[0].registered_dmbs(), 1, "cycle {cycle}");
    }
    for stack in [&client, &server] {
        let c = stack.counters();
        assert_eq!(c.link_groups_created, 1);
        assert_eq!(c.link_groups_reused, 999);
        assert_eq!(c.dmbs_registered, 1);
        assert_eq!(c.dmbs_reused, 999);
        assert_eq!(c.handshakes_smcd, 1000);
        assert_eq!(c.aborts, 0);
        assert_eq!(stack.link_groups().len(), 1);
    }
    assert_eq!(fabric.attached_refs(), 0, "no-copy attachments leaked");
    // Idle groups are freed after 600 s (server) / 610 s (client) of the caller's clock.
    let later = T0 + Duration::from_secs(605);
    assert!(server.poll(later) | client.poll(later));
    assert_eq!(server.link_groups().len(), 0);
    assert_eq!(client.link_groups().len(), 1);
    client.poll(T0 + Duration::from_secs(611));
    assert_eq!(client.link_groups().len(), 0);
    assert_eq!(fabric.registered_dmbs(), 0);
    assert_eq!(client.counters().dmbs_freed, 1);
    assert_eq!(server.counters().dmbs_freed, 1);
}

/// Linux-like loopback: one stack with one loopback device that can only reach
/// itself; the connection's two ends use separate link groups (client and server role).
#[test]
fn single_loopback_device_connects_to_itself() {
    let dev = LoopbackIsm::new(99);
    let mut stack: Stack<LoopbackIsm, smcd::stream::MemPipe> =
        Stack::new(vec![dev], config(&[UEID]), options(32 * 1024));
    let (a, b) = smcd::stream::MemPipe::pair(4096, true);
    let c = stack.connect(a, T0);
    let s = stack.accept(b, T0);
    for _ in 0..100 {
        if !stack.poll(T0) {
            break;
        }
    }
    let gid = stack.devices()[0].local_gid();
    for h in [c, s] {
        assert_eq!(stack.state(h), SocketState::Smcd);
        match stack.transport(h) {
            Some(Transport::Smcd { peer_gid, .. }) => assert_eq!(peer_gid, gid),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stack.link_groups().len(), 2);
    assert_eq!(stack.write(c, b"to myself"), Ok(9));
    stack.poll(T0);
    let mut buf = [0u8; 16];
    assert_eq!(stack.read(s, &mut buf), Ok(9));
    assert_eq!(&buf[..9], b"to myself");
    stack.close(c, T0).unwrap();
    stack.poll(T0);
    assert_eq!(stack.read(s, &mut buf), Ok(0));
    stack.close(s, T0).unwrap();
    for _ in 0..100 {
        if !stack.poll(T0) {
            break;
        }
    }
    assert_eq!(stack.socket_count(), 0);
    assert_eq!(stack.devices()[0].registered_dmbs(), 2);
    assert_eq!(stack.free_unused_link_groups(), 2);
    assert_eq!(stack.devices()[0].registered_dmbs(), 0);
}

/// Seeded deterministic runs with random write/read sizes, random TCP segmentation
/// of the handshake and random polling order, over small (16 KiB) DMBs so the rings
/// wrap constantly; both directions byte-exact, then a shutdown/close exchange.
#[test]
fn seeded_random_chunking_is_byte_exact() {
    for seed in 0..8u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut client, mut server, fabric) = two_peers(100 + seed, 16 * 1024);
        let (mut a, mut b) = smcd::stream::MemPipe::pair(rng.random_range(16..4096), true);
        a.set_max_io(rng.random_range(1..64));
        b.set_max_io(rng.random_range(1..64));
        let c = client.connect(a, T0);
        let s = server.accept(b, T0);
        settle(&mut client, &mut server, T0);
        assert_eq!(client.state(c), SocketState::Smcd, "seed {seed}");
        assert_eq!(server.state(s), SocketState::Smcd, "seed {seed}");

        let total = rng.random_range(1u64 << 20..4 << 20);
        let mut up = Flow::new(total, seed);
        let mut down = Flow::new(total / 3, !seed);
        let mut idle = 0;
        while !(up.done() && down.done()) {
            let mut progress = false;
            let mut rbuf = vec![0u8; rng.random_range(1..40_000)];
            match rng.random_range(0..5) {
                0 => progress |= up.send(&mut client, c, rng.random_range(1..50_000)),
                1 => progress |= down.send(&mut server, s, rng.random_range(1..50_000)),
                2 => progress |= up.receive(&mut server, s, &mut rbuf),
                3 => progress |= down.receive(&mut client, c, &mut rbuf),
                _ => {
                    progress |= if rng.random_bool(0.5) {
                        client.poll(T0)
                    } else {
                        server.poll(T0)
                    }
                }
            }
            idle = if progress { 0 } else { idle + 1 };
            assert!(idle < 1000, "seed {seed}: stalled");
        }
        assert_eq!(up.tx_hash.0, up.rx_hash.0);
        assert_eq!(down.tx_hash.0, down.rx_hash.0);
        // Server shuts down writing; client sees EOF; then both close.
        server.shutdown(s).unwrap();
        settle(&mut client, &mut server, T0);
        assert!(read_to_eof(&mut client, c, &mut server, T0).is_empty());
        client.close(c, T0).unwrap();
        server.close(s, T0).unwrap();
        settle(&mut client, &mut server, T0);
        assert_eq!(
            client.socket_count() + server.socket_count(),
            0,
            "seed {seed}"
        );
        assert_eq!(fabric.registered_dmbs(), 2, "seed {seed}: pooled DMBs only");
        assert_eq!(fabric.attached_refs(), 0, "seed {seed}");
    }
}

/// Sixteen connections at once on one link group, seeded random traffic on all of
/// them: every signal reaches the connection owning its DMB, nothing mixes up.
#[test]
fn concurrent_connections_share_one_link_group() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (mut client, mut server, fabric) = two_peers(300, 16 * 1024);
    let conns: Vec<_> = (0..16)
        .map(|_| connect(&mut client, &mut server, true, T0))
        .collect();
    let mut flows: Vec<(Flow, Flow)> = (0..16u64)
        .map(|i| {
            (
                Flow::new(rng.random_range(50_000..300_000), i),
                Flow::new(rng.random_range(50_000..300_000), 100 + i),
            )
        })
        .collect();
    let mut buf = vec![0u8; 20_000];
    let mut idle = 0;
    while flows.iter().any(|(u, d)| !(u.done() && d.done())) {
        let i = rng.random_range(0..16);
        let (c, s) = conns[i];
        let (up, down) = &mut flows[i];
        let chunk = rng.random_range(1..30_000);
        let progress = match rng.random_range(0..5) {
            0 => up.send(&mut client, c, chunk),
            1 => down.send(&mut server, s, chunk),
            2 => up.receive(&mut server, s, &mut buf),
            3 => down.receive(&mut client, c, &mut buf),
            _ => pump(&mut client, &mut server, T0),
        };
        idle = if progress { 0 } else { idle + 1 };
        assert!(idle < 2000, "stalled");
    }
    for (up, down) in &flows {
        assert_eq!(up.tx_hash.0, up.rx_hash.0);
        assert_eq!(down.tx_hash.0, down.rx_hash.0);
    }
    for stack in [&client, &server] {
        let c = stack.counters();
        assert_eq!((c.link_groups_created, c.link_groups_reused), (1, 15));
        assert_eq!(c.dmbs_registered, 16);
    }
    for (c, s) in conns {
        client.close(c, T0).unwrap();
        server.close(s, T0).unwrap();
    }
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count() + server.socket_count(), 0);
    let group = client.link_groups().iter().next().unwrap().1;
    assert_eq!(
        (group.pooled_dmbs(), group.dmbs_in_use(), group.conns()),
        (16, 0, 0)
    );
    assert_eq!(fabric.registered_dmbs(), 32);
    assert_eq!(fabric.attached_refs(), 0);
}
