//! In-QEMU test: SMC-D inside one VM over the loopback ISM. Two virtio-net NICs on one
//! QEMU hub (profile in kernel/tests/profiles-smc.sh) give two addresses; client sockets
//! leave from the second, the listener is on the first, and one smcd stack serves both
//! ends, so the CLC handshake picks the loopback device (its GID only reaches itself).
//! Checks byte-exact transfers, that data went through DMBs (CDCs, and no TCP payload
//! after the handshake), close/EOF semantics, concurrent connections, and the fallback
//! of a client without the SMC option (reason 0x03010000).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::net::Ipv4Addr;
use core::time::Duration;

use embedded_io_async::Read;
use kernel::apps::{self, fill_pattern, pattern, write_all, AppConfig, Fnv1a};
use kernel::cmdline::{self, App, Ipv4Cidr, Verify};
use kernel::net;
use kernel::smc::{self, Smc, SmcConfig, SmcListener, SmcStream};
use kernel::{clock, executor, platform};
use smcd::socket::Transport;
use smcd::wire::clc::DeclineCode;

kernel::test_main!(
    stream_is_byte_exact_through_dmbs,
    close_and_eof_semantics,
    concurrent_connections_stay_separate,
    client_without_smc_falls_back_to_tcp,
    adaptive_polling_spins_only_when_asked,
    builtin_apps_run_in_one_image,
    app_command_line_keys,
);

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 7, 1);
/// Bytes of the big transfer (several DMB rings of 64 KiB).
const BIG: usize = 6 << 20;
/// Bound for every test's async part (TCG on a loaded host).
const LIMIT: Duration = Duration::from_secs(120);

fn smc() -> &'static Smc {
    if let Some(smc) = smc::get() {
        return smc;
    }
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let mut devices = net::virtio_net_devices();
    let first = devices.next().expect("first virtio-net (profiles-smc.sh)");
    let second = devices.next().expect("second virtio-net (profiles-smc.sh)");
    let cidr = Ipv4Cidr {
        address: SERVER_IP,
        prefix_len: 24,
    };
    let a = net::bring_up(first, cidr).unwrap_or_else(|e| panic!("{e}"));
    let b = net::bring_up(second, apps::second_address(cidr)).unwrap_or_else(|e| panic!("{e}"));
    let config = SmcConfig {
        // The test image may run next to an ivshmem device in other profiles: loopback only.
        ivshmem: false,
        ..SmcConfig::default()
    };
    let smc = smc::init(&[a, b], config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(smc.device_kinds(), ["loopback"]);
    smc
}

/// Runs `f` to completion within [`LIMIT`].
fn run<T>(f: impl Future<Output = T>) -> T {
    executor::block_on(executor::with_deadline(
        clock::now().saturating_add(LIMIT),
        f,
    ))
    .unwrap_or_else(|_| panic!("did not finish within {LIMIT:?}"))
}

fn assert_loopback_smcd(s: &SmcStream, smc: &Smc) {
    match s.transport() {
        Some(Transport::Smcd {
            device, version, ..
        }) => {
            assert_eq!(smc.device_kinds()[device], "loopback");
            assert_eq!(version, 2, "SMC-Dv2 over the loopback ISM");
        }
        other => panic!("expected SMC-D over loopback, got {other:?}"),
    }
}

/// Data went through the DMBs: CDCs both ways, and the TCP connection carried exactly
/// the CLC handshake, no payload byte.
fn assert_no_tcp_payload(s: &SmcStream) {
    let stats = s.counters();
    let (tcp_tx, tcp_rx) = s.tcp_bytes();
    assert!(
        stats.clc_bytes_tx > 0 && stats.clc_bytes_rx > 0,
        "{stats:?}"
    );
    assert_eq!(
        (tcp_tx, tcp_rx),
        (stats.clc_bytes_tx, stats.clc_bytes_rx),
        "TCP carried more than the CLC handshake: {stats:?}"
    );
    assert!(stats.cdcs_tx > 0 && stats.cdcs_rx > 0, "no CDCs: {stats:?}");
}

fn stream_is_byte_exact_through_dmbs() {
    let smc = smc();
    let mut listener = SmcListener::bind(6000).unwrap();
    let before = smc.counters();
    let (sent_hash, got) = run(async {
        let server = async {
            let mut s = listener.accept().await.unwrap();
            assert_loopback_smcd(&s, smc);
            let mut buf = vec![0u8; 100_000];
            let mut got = 0usize;
            let mut hash = Fnv1a::default();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, pattern(7, (got + i) as u64), "byte {}", got + i);
                }
                hash.update(&buf[..n]);
                got += n;
            }
            let stats = s.counters();
            assert_eq!(stats.bytes_rx, BIG as u64);
            assert_no_tcp_payload(&s);
            s.close().unwrap();
            (got, hash.0)
        };
        let client = async {
            let mut s = SmcStream::connect(SERVER_IP, 6000).await.unwrap();
            assert_loopback_smcd(&s, smc);
            let mut hash = Fnv1a::default();
            // Odd chunk size: writes straddle the ring end.
            let mut chunk = vec![0u8; 40_000];
            let mut sent = 0usize;
            while sent < BIG {
                let n = (BIG - sent).min(chunk.len());
                fill_pattern(7, sent as u64, &mut chunk[..n]);
                hash.update(&chunk[..n]);
                write_all(&mut s, &chunk[..n]).await.unwrap();
                sent += n;
            }
            s.shutdown().await.unwrap();
            let mut b = [0u8; 8];
            assert_eq!(s.read(&mut b).await.unwrap(), 0, "server sends nothing");
            assert_eq!(s.counters().bytes_tx, BIG as u64);
            assert_no_tcp_payload(&s);
            s.close().unwrap();
            hash.0
        };
        let (server, client) = futures_util::future::join(server, client).await;
        (client, server)
    });
    assert_eq!(got, (BIG, sent_hash));
    let after = smc.counters();
    assert_eq!(after.handshakes_smcd - before.handshakes_smcd, 2);
    assert_eq!(after.fallbacks_total(), before.fallbacks_total());
    assert!(after.data.cdcs_rx - before.data.cdcs_rx >= (BIG / (64 << 10)) as u64);
}

fn close_and_eof_semantics() {
    let smc = smc();
    let mut listener = SmcListener::bind(6001).unwrap();
    run(async {
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            // The request, then end of stream (the client shut down its write side).
            assert_eq!(s.read_full(&mut buf[..5]).await.unwrap(), 5);
            assert_eq!(&buf[..5], b"hello");
            assert_eq!(s.read(&mut buf).await.unwrap(), 0, "EOF after shutdown");
            assert_eq!(s.read(&mut buf).await.unwrap(), 0, "EOF stays EOF");
            // Half-close: we can still answer.
            write_all(&mut s, b"world!").await.unwrap();
            s.close().unwrap();
        };
        let client = async {
            let mut s = smc.connect(SERVER_IP, 6001).await.unwrap();
            assert_loopback_smcd(&s, smc);
            write_all(&mut s, b"hello").await.unwrap();
            s.shutdown().await.unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(s.read_full(&mut buf).await.unwrap(), 6, "answer, then EOF");
            assert_eq!(&buf[..6], b"world!");
            assert_eq!(
                s.read(&mut buf).await.unwrap(),
                0,
                "EOF after the peer's close"
            );
            // Writing after our shutdown is refused (no byte reaches the peer).
            assert!(embedded_io_async::Write::write(&mut s, b"late")
                .await
                .is_err());
            s.close().unwrap();
        };
        futures_util::future::join(server, client).await;
    });
    // Both closed sockets are gone from the stack once the close handshake is over.
    run(async {
        loop {
            if smc.with_stack(|s| s.socket_count()) == 0 {
                break;
            }
            executor::sleep(Duration::from_millis(10)).await;
        }
    });
}

fn concurrent_connections_stay_separate() {
    const CONNS: u32 = 4;
    const LEN: usize = 1 << 20;
    let smc = smc();
    let mut listener = SmcListener::bind(6002).unwrap();
    let before = smc.counters();
    run(async {
        let server = async {
            let mut streams = Vec::new();
            for _ in 0..CONNS {
                streams.push(listener.accept().await.unwrap());
            }
            // The client sends its connection number first; then LEN bytes of its pattern.
            let tasks: Vec<apps::AppFuture> = streams
                .into_iter()
                .map(|mut s| {
                    Box::pin(async move {
                        assert_loopback_smcd(&s, smc);
                        let mut id = [0u8; 1];
                        assert_eq!(s.read_full(&mut id).await.unwrap(), 1);
                        let conn = u32::from(id[0]);
                        let mut buf = vec![0u8; 30_000];
                        let mut got = 0usize;
                        loop {
                            let n = s.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            for (i, b) in buf[..n].iter().enumerate() {
                                assert_eq!(*b, pattern(conn, (got + i) as u64));
                            }
                            got += n;
                        }
                        assert_eq!(got, LEN, "connection {conn}");
                        assert_no_tcp_payload(&s);
                        s.close().unwrap();
                        Ok(())
                    }) as apps::AppFuture
                })
                .collect();
            for r in apps::join_all(tasks).await {
                r.unwrap();
            }
        };
        let clients = async {
            let tasks: Vec<apps::AppFuture> = (0..CONNS)
                .map(|conn| {
                    Box::pin(async move {
                        let mut s = smc.connect(SERVER_IP, 6002).await.unwrap();
                        write_all(&mut s, &[conn as u8]).await.unwrap();
                        // Small, uneven writes so the connections interleave.
                        let mut chunk = vec![0u8; 7_000 + conn as usize * 1_000];
                        let mut sent = 0usize;
                        while sent < LEN {
                            let n = (LEN - sent).min(chunk.len());
                            fill_pattern(conn, sent as u64, &mut chunk[..n]);
                            write_all(&mut s, &chunk[..n]).await.unwrap();
                            sent += n;
                        }
                        s.shutdown().await.unwrap();
                        let mut b = [0u8; 1];
                        assert_eq!(s.read(&mut b).await.unwrap(), 0);
                        s.close().unwrap();
                        Ok(())
                    }) as apps::AppFuture
                })
                .collect();
            for r in apps::join_all(tasks).await {
                r.unwrap();
            }
        };
        futures_util::future::join(server, clients).await;
    });
    let after = smc.counters();
    assert_eq!(
        after.handshakes_smcd - before.handshakes_smcd,
        2 * u64::from(CONNS)
    );
    // One link group per role, reused by the later connections.
    assert!(after.link_groups_reused > before.link_groups_reused);
}

fn client_without_smc_falls_back_to_tcp() {
    const LEN: usize = 256 << 10;
    let smc = smc();
    let mut listener = SmcListener::bind(6003).unwrap();
    let before = smc.counters();
    run(async {
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let Some(Transport::Tcp { reason, by_peer }) = s.transport() else {
                panic!("server: expected TCP fallback, got {:?}", s.transport());
            };
            assert_eq!(reason, DeclineCode(0x0301_0000));
            assert!(!by_peer);
            let mut buf = vec![0u8; LEN + 1];
            assert_eq!(s.read_full(&mut buf).await.unwrap(), LEN);
            for (i, b) in buf[..LEN].iter().enumerate() {
                assert_eq!(*b, pattern(3, i as u64));
            }
            let stats = s.counters();
            assert_eq!((stats.clc_bytes_tx, stats.clc_bytes_rx), (0, 0));
            assert_eq!((stats.cdcs_tx, stats.cdcs_rx), (0, 0));
            // The payload went over TCP.
            assert_eq!(s.tcp_bytes().1, LEN as u64);
            s.close().unwrap();
        };
        let client = async {
            let mut s = smc.connect_with(SERVER_IP, 6003, false).await.unwrap();
            let Some(Transport::Tcp { reason, .. }) = s.transport() else {
                panic!("client: expected TCP fallback, got {:?}", s.transport());
            };
            assert_eq!(reason, DeclineCode(0x0301_0000));
            let mut data = vec![0u8; LEN];
            fill_pattern(3, 0, &mut data);
            write_all(&mut s, &data).await.unwrap();
            s.shutdown().await.unwrap();
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.unwrap(), 0);
            assert_eq!(s.tcp_bytes().0, LEN as u64);
            s.close().unwrap();
        };
        futures_util::future::join(server, client).await;
    });
    let after = smc.counters();
    assert_eq!(
        after.fallbacks_with(0x0301_0000) - before.fallbacks_with(0x0301_0000),
        2
    );
    assert_eq!(after.handshakes_smcd, before.handshakes_smcd);
    assert_eq!(after.declines_sent, before.declines_sent, "no CLC at all");
}

/// `rounds` ping-pongs of 100 bytes over loopback SMC-D; checks every echo.
fn ping_pong(smc: &'static Smc, port: u16, rounds: u32) {
    let mut listener = SmcListener::bind(port).unwrap();
    run(async {
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let mut buf = [0u8; 100];
            for _ in 0..rounds {
                assert_eq!(s.read_full(&mut buf).await.unwrap(), 100);
                write_all(&mut s, &buf).await.unwrap();
            }
            s.close().unwrap();
        };
        let client = async {
            let mut s = smc.connect(SERVER_IP, port).await.unwrap();
            assert_loopback_smcd(&s, smc);
            let (mut out, mut back) = ([0u8; 100], [0u8; 100]);
            for k in 0..rounds {
                fill_pattern(k, 0, &mut out);
                write_all(&mut s, &out).await.unwrap();
                assert_eq!(s.read_full(&mut back).await.unwrap(), 100);
                assert_eq!(back, out);
            }
            s.close().unwrap();
        };
        futures_util::future::join(server, client).await;
    });
}

fn adaptive_polling_spins_only_when_asked() {
    let smc = smc();
    // spin=0 (the default): every blocked operation sleeps, nobody polls the devices.
    assert_eq!(smc.spin(), Duration::ZERO);
    let before = smc.polling_stats();
    ping_pong(smc, 6004, 50);
    let after = smc.polling_stats();
    assert_eq!(after.spin_polls, before.spin_polls, "spun with spin=0");
    assert_eq!(after.spin_hits, before.spin_hits);
    assert!(
        after.sleeps > before.sleeps,
        "nobody ever waited: {after:?}"
    );
    // A budget: blocked operations poll the devices themselves first, bounded (the
    // peer in this image cannot progress while we spin, so each wait ends in a sleep
    // after the budget or in a hit on a signal the driver had not handled yet).
    smc.set_spin(Duration::from_micros(200));
    let before = smc.polling_stats();
    ping_pong(smc, 6005, 50);
    let after = smc.polling_stats();
    smc.set_spin(Duration::ZERO);
    assert!(
        after.spin_polls > before.spin_polls,
        "no spinning: {after:?}"
    );
    assert!(
        (after.spin_hits - before.spin_hits) + (after.sleeps - before.sleeps) > 0,
        "{after:?}"
    );
    kernel::serial_println!("adaptive polling: {before:?} -> {after:?}");
}

fn builtin_apps_run_in_one_image() {
    let smc = smc();
    let base = AppConfig {
        name: "",
        peer: Some(SERVER_IP),
        port: 6006,
        conns: 2,
        count: 20,
        size: Some(300),
        chunk: 10_000,
        warmup: None,
        verify: Verify::Full,
        cycles: 1,
        abort_after: None,
    };
    let app = |name: &str| apps::find(name).unwrap_or_else(|| panic!("app {name} registered"));
    let start = |name: &str| match app(name).run {
        apps::AppRun::Smc(f) => f,
        apps::AppRun::Standalone(_) => panic!("app {name} runs over SMC"),
    };
    let run_pair = |server: &str, client: &str, port: u16, size: u64, verify: Verify| {
        let s = AppConfig {
            name: app(server).name,
            port,
            size: Some(size),
            verify,
            ..base
        };
        let c = AppConfig {
            name: app(client).name,
            ..s
        };
        let (rs, rc) = run(futures_util::future::join(
            start(server)(smc, s),
            start(client)(smc, c),
        ));
        rs.unwrap_or_else(|e| panic!("{server}: {e}"));
        rc.unwrap_or_else(|e| panic!("{client}: {e}"));
    };
    let before = smc.counters();
    run_pair("echo", "pingpong", 6006, 300, Verify::Full);
    run_pair("sink", "stream", 6007, 200_000, Verify::Full);
    // verify=sample: the sink checks the 4 KiB stamps (and fails on a mismatch or a
    // wrong length); 10 000-byte writes split stamps across writes and reads.
    run_pair("sink", "stream", 6008, 200_000, Verify::Sample);
    // loopback-pingpong: echo server and pingpong client in one app (2 connections from
    // the second interface to the first).
    let lpp = AppConfig {
        name: "loopback-pingpong",
        peer: None,
        port: 6009,
        ..base
    };
    run(start("loopback-pingpong")(smc, lpp)).unwrap_or_else(|e| panic!("loopback-pingpong: {e}"));
    let after = smc.counters();
    // 2 connections per run, both ends in this stack, all on SMC-D.
    assert_eq!(after.handshakes_smcd - before.handshakes_smcd, 16);
    assert_eq!(after.fallbacks_total(), before.fallbacks_total());
    assert!(apps::find("no-such-app").is_none());
}

fn app_command_line_keys() {
    let line = "ip=10.0.5.1/24 peer=10.0.5.2 app=loopback smc=off conns=3 spin=250 chunk=8K size=2M port=7000";
    let c = cmdline::parse(line).unwrap();
    assert_eq!(c.app, Some(App::Loopback));
    assert_eq!((c.spin_us, c.chunk), (250, Some(8192)));
    let name = apps::app_name(App::Loopback).unwrap();
    assert!(apps::find(name).unwrap().two_nics);
    let a = AppConfig::from_cmdline(name, &c);
    assert_eq!(
        a,
        AppConfig {
            name: "loopback",
            peer: Some(Ipv4Addr::new(10, 0, 5, 2)),
            port: 7000,
            conns: 3,
            count: apps::DEFAULT_COUNT,
            size: Some(2 << 20),
            chunk: 8192,
            warmup: None,
            verify: Verify::Full,
            cycles: 1,
            abort_after: None,
        }
    );
    // The stream client's cycles and abort point travel in the config.
    let line = "app=stream peer=10.0.5.2 cycles=5 abort=64K";
    let s = AppConfig::from_cmdline("stream", &cmdline::parse(line).unwrap());
    assert_eq!((s.cycles, s.abort_after), (5, Some(64 * 1024)));
    // Defaults, and the keys' errors.
    let d = AppConfig::from_cmdline("echo", &cmdline::parse("app=echo").unwrap());
    assert_eq!(
        (d.port, d.conns, d.chunk),
        (apps::DEFAULT_PORT, 1, apps::DEFAULT_CHUNK)
    );
    assert!(cmdline::parse("chunk=0").is_err());
    assert!(cmdline::parse("spin=fast").is_err());
    assert_eq!(apps::app_name(App::Selftest), None);
    for app in apps::APPS {
        assert!(apps::find(app.name).is_some());
    }
    // Every stream number starts with its own 8 bytes (the sink tells them apart).
    let mut heads: Vec<[u8; 8]> = (0..256)
        .map(|id| {
            let mut h = [0u8; 8];
            fill_pattern(id, 0, &mut h);
            h
        })
        .collect();
    heads.sort_unstable();
    heads.dedup();
    assert_eq!(heads.len(), 256);
}
