//! Criterion benchmarks of smcd's hot host paths: CLC parse/emit, a full SMC-D
//! handshake + close cycle on a reused link group, and data through the loopback
//! ISM device (socket write → signal → poll → read).
//!
//! Run: `cargo bench -p smcd --bench host_paths`.

use core::time::Duration;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smcd::ism::IsmDevice;
use smcd::loopback::{LoopbackFabric, LoopbackIsm};
use smcd::negotiate::{self, DeviceDesc, LocalConfig};
use smcd::socket::{SocketError, SocketHandle, Stack, StackOptions};
use smcd::stream::MemPipe;
use smcd::wire::clc::{ClcMessage, DeclineCode, DeclineRepr, Eid};

const T0: Duration = Duration::from_secs(1);

type Sim = Stack<LoopbackIsm, MemPipe>;

fn config() -> LocalConfig {
    LocalConfig {
        ueids: vec![Eid::ueid("SMCD-BENCH").unwrap()],
        ..LocalConfig::default()
    }
}

fn peers(dmb_len: usize) -> (Sim, Sim, LoopbackFabric) {
    let fabric = LoopbackFabric::new(1);
    let options = StackOptions {
        dmb_len,
        ..StackOptions::default()
    };
    let client = Stack::new(vec![fabric.device(2)], config(), options);
    let server = Stack::new(vec![fabric.device(3)], config(), options);
    (client, server, fabric)
}

fn settle(a: &mut Sim, b: &mut Sim) {
    for _ in 0..1000 {
        let x = a.poll(T0);
        let y = b.poll(T0);
        if !(x | y) {
            return;
        }
    }
    panic!("no quiescence");
}

fn connect(a: &mut Sim, b: &mut Sim) -> (SocketHandle, SocketHandle) {
    let (p, q) = MemPipe::pair(4096, true);
    let c = a.connect(p, T0);
    let s = b.accept(q, T0);
    settle(a, b);
    (c, s)
}

fn clc(c: &mut Criterion) {
    let dev = LoopbackIsm::new(4);
    let descs = [DeviceDesc {
        gid: dev.local_gid(),
        chid: dev.chid(),
        v2: true,
    }];
    let proposal = negotiate::build_proposal(&config(), &descs).unwrap();
    let messages = [
        ("proposal", ClcMessage::Proposal(proposal)),
        (
            "decline",
            ClcMessage::Decline(DeclineRepr::linux(2, DeclineCode::NOSMCDEV)),
        ),
    ];
    let mut group = c.benchmark_group("clc");
    for (name, message) in &messages {
        let mut bytes = vec![0u8; message.buffer_len()];
        message.emit(&mut bytes).unwrap();
        group.bench_with_input(BenchmarkId::new("parse", name), &bytes, |b, bytes| {
            b.iter(|| ClcMessage::parse(black_box(bytes)).unwrap())
        });
        let mut out = vec![0u8; message.buffer_len()];
        group.bench_with_input(BenchmarkId::new("emit", name), message, |b, m| {
            b.iter(|| black_box(m).emit(&mut out).unwrap())
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let (mut client, mut server, _fabric) = peers(64 * 1024);
    c.bench_function("handshake+close (link group reused)", |b| {
        b.iter(|| {
            let (ch, sh) = connect(&mut client, &mut server);
            client.close(ch, T0).unwrap();
            server.close(sh, T0).unwrap();
            settle(&mut client, &mut server);
        })
    });
}

fn data(c: &mut Criterion) {
    let mut group = c.benchmark_group("smcd data");
    for size in [64usize, 4096, 65536] {
        let (mut client, mut server, _fabric) = peers(1 << 20);
        let (ch, sh) = connect(&mut client, &mut server);
        let payload = vec![0x5au8; size];
        let mut buf = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("write+signal+read", size), |b| {
            b.iter(|| {
                let mut sent = 0;
                while sent < size {
                    sent += client.write(ch, &payload[sent..]).unwrap();
                }
                server.poll(T0);
                let mut got = 0;
                while got < size {
                    match server.read(sh, &mut buf[got..]) {
                        Ok(n) => got += n,
                        Err(SocketError::WouldBlock) => {
                            server.poll(T0);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                client.poll(T0);
                black_box(&buf);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, clc, handshake, data);
criterion_main!(benches);
