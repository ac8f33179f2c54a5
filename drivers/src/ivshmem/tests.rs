//! Host tests of the ivshmem ISM: several guests over one fake region in one process.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use ivshmem_region::{format_metadata, HeaderError, LayoutParams};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smcd::ism::{DmbToken, Gid, IsmDevice, IsmError, IsmEvent};
use smcd::shm::SharedMemory;

use super::fake::{FakeDoorbell, FakeServer, RingLog};
use super::ism::{decode_token, encode_token, IvshmemError, IvshmemIsm};
use super::memory::{AtomicMemory, FakeRegion};
use ivshmem_region::VECTOR_DMB;

type Dev = IvshmemIsm<FakeRegion, FakeDoorbell, ChaCha8Rng>;

const REGION_ID: [u8; 16] = *b"smcd-test-region";

fn params(peers: u32) -> LayoutParams {
    LayoutParams {
        region_size: 1 << 20,
        max_peers: peers,
        slots_per_peer: 64,
    }
}

fn gid(n: u64) -> Gid {
    Gid::virtual_(0x1111_0000_0000_0000 | n, 0x2222_0000_0000_0000 | n)
}

fn rgid(g: Gid) -> ivshmem_region::Gid {
    ivshmem_region::Gid {
        gid: g.gid,
        gid_ext: g.gid_ext,
    }
}

fn device(server: &FakeServer, log: &RingLog, id: u16) -> Dev {
    IvshmemIsm::new(
        server.region(),
        log.doorbell(id),
        ChaCha8Rng::seed_from_u64(0x5eed + u64::from(id)),
        id,
    )
    .expect("device comes up on a formatted region")
}

/// A server with `n` joined peers (IDs 0..n, GIDs gid(0..n)) and a device for each.
fn setup(peers: u32, n: u16) -> (FakeServer, RingLog, Vec<Dev>) {
    let server = FakeServer::new(params(peers), REGION_ID).unwrap();
    for id in 0..n {
        server.join(u32::from(id), rgid(gid(u64::from(id))));
    }
    let log = RingLog::new();
    let devs = (0..n).map(|id| device(&server, &log, id)).collect();
    (server, log, devs)
}

fn events(dev: &Dev) -> Vec<IsmEvent> {
    let mut out = Vec::new();
    dev.poll_events(&mut |e| out.push(e));
    out
}

fn read_dmb<M: SharedMemory>(m: &M, offset: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    m.read(offset, &mut buf).unwrap();
    buf
}

#[test]
fn token_encoding_roundtrips_and_is_never_zero() {
    let t = encode_token(1023, 4095, 0);
    assert_ne!(t >> 22, 0);
    assert_eq!(decode_token(t), (1023, 4095));
    let t = encode_token(3, 17, 0xdead_beef_0000_0000);
    assert_eq!(decode_token(t), (3, 17));
    assert_eq!(t >> 22, 0xdead_beef_0000_0000 >> 22);
}

#[test]
fn bring_up_refuses_bad_regions_clearly() {
    let log = RingLog::new();
    let rng = || ChaCha8Rng::seed_from_u64(1);
    // Unformatted region: bad magic.
    let blank = FakeRegion::new(1 << 20);
    assert_eq!(
        IvshmemIsm::new(blank, log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::Header(HeaderError::BadMagic))
    );
    // Region shorter than a header page.
    let tiny = FakeRegion::new(64);
    assert!(matches!(
        IvshmemIsm::new(tiny, log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::Region(_))
    ));
    // Header says 1 MiB, but 2 MiB are mapped.
    let server = FakeServer::new(params(4), REGION_ID).unwrap();
    let big = FakeRegion::new(2 << 20);
    let mut meta = vec![0u8; server.layout().data_offset()];
    server.region().read(0, &mut meta).unwrap();
    big.write(0, &meta).unwrap();
    assert!(matches!(
        IvshmemIsm::new(big, log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::Header(HeaderError::SizeMismatch { .. }))
    ));
    // Version 2.
    let region = server.region();
    region.write(8, &2u32.to_le_bytes()).unwrap();
    assert_eq!(
        IvshmemIsm::new(region.clone(), log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::Header(HeaderError::BadVersion { version: 2 }))
    );
    region.write(8, &1u32.to_le_bytes()).unwrap();
    // Tampered derived field.
    let mut area = [0u8; 8];
    region.read(72, &mut area).unwrap();
    region
        .write(72, &(u64::from_le_bytes(area) + 4096).to_le_bytes())
        .unwrap();
    assert!(matches!(
        IvshmemIsm::new(region.clone(), log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::Header(HeaderError::Inconsistent { .. }))
    ));
    region.write(72, &area).unwrap();
    // Not joined yet; then an ID beyond the directory.
    assert_eq!(
        IvshmemIsm::new(region.clone(), log.doorbell(2), rng(), 2).err(),
        Some(IvshmemError::NotActive { id: 2 })
    );
    assert_eq!(
        IvshmemIsm::new(region.clone(), log.doorbell(9), rng(), 9).err(),
        Some(IvshmemError::PeerIdOutOfRange {
            id: 9,
            max_peers: 4
        })
    );
    // A server that hands out a single vector cannot deliver DMB signals.
    let layout = *server.layout();
    let mut meta = vec![0u8; layout.data_offset()];
    format_metadata(&mut meta, &layout, REGION_ID, 1);
    let one_vector = FakeRegion::new(1 << 20);
    one_vector.write(0, &meta).unwrap();
    assert_eq!(
        IvshmemIsm::new(one_vector, log.doorbell(0), rng(), 0).err(),
        Some(IvshmemError::TooFewVectors { advertised: 1 })
    );
    // And with everything right, it comes up with the directory's GID.
    server.join(2, rgid(gid(2)));
    let dev = IvshmemIsm::new(region, log.doorbell(2), rng(), 2).unwrap();
    assert_eq!(dev.local_gid(), gid(2));
    assert_eq!(dev.peer_id(), 2);
    assert_eq!(dev.region_id(), REGION_ID);
}

#[test]
fn gid_chid_and_reachability_follow_the_directory() {
    let (server, _log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    assert_eq!(a.local_gid(), gid(0));
    assert_eq!(b.local_gid(), gid(1));
    assert_eq!(a.chid(), b.chid());
    assert!((0xFF00..0xFFFF).contains(&a.chid()));
    assert!(a.supports_v2() && a.supports_nocopy());
    assert!(a.query_remote_gid(gid(1), None));
    assert!(a.query_remote_gid(gid(0), Some(0x1FFF)));
    assert!(!a.query_remote_gid(gid(7), None));
    assert!(!a.query_remote_gid(Gid::default(), None));
    server.leave(1);
    assert!(!a.query_remote_gid(gid(1), None));
}

#[test]
fn move_data_with_signal_is_delivered_byte_exact() {
    let (_server, log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    let dmb = b.register_dmb(16384, gid(0)).unwrap();
    assert_eq!(dmb.memory.len(), 16384);
    let payload = b.layout().area_payload(1).unwrap();
    let base = dmb.memory.base();
    assert!(base >= payload.start && base + 16384 <= payload.end);
    // Zeroed on registration even if the area held garbage before.
    assert!(read_dmb(&dmb.memory, 0, 16384).iter().all(|&x| x == 0));

    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    a.move_data(dmb.token, 101, &data, true).unwrap();
    assert_eq!(events(b), vec![IsmEvent::DmbSignalled { index: dmb.index }]);
    assert_eq!(events(b), vec![], "signal consumed once");
    assert_eq!(events(a), vec![], "sender sees nothing");
    assert_eq!(read_dmb(&dmb.memory, 101, 3000), data);
    assert!(read_dmb(&dmb.memory, 0, 101).iter().all(|&x| x == 0));
    assert!(read_dmb(&dmb.memory, 3101, 16384 - 3101)
        .iter()
        .all(|&x| x == 0));
    assert_eq!(log.count_to(1, VECTOR_DMB), 1);
    assert_eq!(log.rings()[0].from, 0);

    // Without signal: data lands, no event, no ring.
    a.move_data(dmb.token, 0, b"quiet", false).unwrap();
    assert_eq!(events(b), vec![]);
    assert_eq!(read_dmb(&dmb.memory, 0, 5), b"quiet");
    assert_eq!(log.rings().len(), 1);
    // The last byte is writable, one past it is not.
    a.move_data(dmb.token, 16383, &[9], false).unwrap();
    assert_eq!(
        a.move_data(dmb.token, 16383, &[9, 9], false),
        Err(IsmError::OutOfBounds)
    );
    assert_eq!(
        a.move_data(dmb.token, usize::MAX, &[9], false),
        Err(IsmError::OutOfBounds)
    );
}

#[test]
fn doorbell_rings_only_when_the_bitmap_word_was_empty() {
    let (_server, log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    let d1 = b.register_dmb(16384, gid(0)).unwrap();
    let d2 = b.register_dmb(16384, gid(0)).unwrap();
    a.move_data(d1.token, 0, b"x", true).unwrap();
    a.move_data(d2.token, 0, b"y", true).unwrap();
    a.move_data(d1.token, 1, b"z", true).unwrap();
    assert_eq!(
        log.count_to(1, VECTOR_DMB),
        1,
        "receiver not yet drained: one ring"
    );
    assert_eq!(a.stats().doorbells_rung, 1);
    assert_eq!(a.stats().doorbells_coalesced, 2);
    let mut got = events(b);
    got.sort_by_key(|e| match e {
        IsmEvent::DmbSignalled { index } => *index,
        IsmEvent::PeerGone { .. } => u32::MAX,
    });
    assert_eq!(
        got,
        vec![
            IsmEvent::DmbSignalled { index: d1.index },
            IsmEvent::DmbSignalled { index: d2.index }
        ]
    );
    a.move_data(d2.token, 0, b"w", true).unwrap();
    assert_eq!(
        log.count_to(1, VECTOR_DMB),
        2,
        "drained receiver is rung again"
    );
    assert_eq!(events(b), vec![IsmEvent::DmbSignalled { index: d2.index }]);
}

#[test]
fn forged_and_foreign_tokens_are_refused_without_writing() {
    let (server, log, devs) = setup(4, 3);
    let (a, b) = (&devs[0], &devs[1]);
    let dmb = b.register_dmb(16384, gid(0)).unwrap();
    let before = read_dmb(&server.region(), 0, 1 << 20);
    let (peer, slot) = decode_token(dmb.token.0);
    let forged = [
        DmbToken(0),
        DmbToken(dmb.token.0 ^ (1 << 40)), // right slot, wrong random bits
        DmbToken(encode_token(peer, slot + 1, 0x77 << 30)), // unused slot
        DmbToken(encode_token(3, slot, dmb.token.0)), // peer 3 never joined
        DmbToken(encode_token(900, 5, 1 << 50)), // peer outside the directory
        DmbToken(encode_token(peer, 4000, 1 << 50)), // slot outside the table
    ];
    for t in forged {
        let r = a.move_data(t, 0, b"evil", true);
        assert!(
            r == Err(IsmError::InvalidToken) || r == Err(IsmError::PeerUnreachable),
            "{t:x?}: {r:?}"
        );
        assert!(a.attach_dmb(t).is_err());
    }
    assert_eq!(
        read_dmb(&server.region(), 0, 1 << 20),
        before,
        "nothing written"
    );
    assert!(log.rings().is_empty());
    assert!(a.stats().tokens_refused >= forged.len() as u64);
    // A DMB registered for another GID refuses us.
    let for_c = b.register_dmb(16384, gid(2)).unwrap();
    assert_eq!(
        a.move_data(for_c.token, 0, b"no", false),
        Err(IsmError::InvalidToken)
    );
    devs[2].move_data(for_c.token, 0, b"ok", false).unwrap();
    assert_eq!(read_dmb(&for_c.memory, 0, 2), b"ok");
    // Someone else's token cannot be unregistered by us.
    assert_eq!(a.unregister_dmb(dmb.token), Err(IsmError::InvalidToken));
}

#[test]
fn stale_token_after_unregister_is_refused() {
    let (_server, _log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    let dmb = b.register_dmb(16384, gid(0)).unwrap();
    a.move_data(dmb.token, 0, b"fresh", false).unwrap();
    let attached = a.attach_dmb(dmb.token).unwrap();
    a.detach_dmb(dmb.token).unwrap();
    drop(attached);
    b.unregister_dmb(dmb.token).unwrap();
    assert_eq!(b.unregister_dmb(dmb.token), Err(IsmError::InvalidToken));
    assert_eq!(
        a.move_data(dmb.token, 0, b"stale", true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(a.attach_dmb(dmb.token).err(), Some(IsmError::InvalidToken));
    // The slot comes back with a different token; the old one stays dead.
    let mut again = Vec::new();
    for _ in 0..64 {
        again.push(b.register_dmb(1024, gid(0)).unwrap());
    }
    assert!(again.iter().all(|d| d.token != dmb.token));
    assert_eq!(
        a.move_data(dmb.token, 0, b"stale", true),
        Err(IsmError::InvalidToken)
    );
}

#[test]
fn full_area_or_table_gives_no_space_and_frees_recover() {
    let (_server, _log, devs) = setup(4, 1);
    let a = &devs[0];
    let payload = a.layout().area_payload(0).unwrap().len();
    assert_eq!(
        a.register_dmb(0, gid(0)).err(),
        Some(IsmError::InvalidArgument)
    );
    assert_eq!(
        a.register_dmb(payload + 1, gid(0)).err(),
        Some(IsmError::InvalidArgument)
    );
    // Bytes run out: 64 KiB DMBs until the area is full.
    let mut big = Vec::new();
    loop {
        match a.register_dmb(65536, gid(0)) {
            Ok(d) => big.push(d),
            Err(e) => {
                assert_eq!(e, IsmError::NoSpace);
                break;
            }
        }
    }
    assert_eq!(big.len(), payload / 65536);
    let freed = big.pop().unwrap();
    a.unregister_dmb(freed.token).unwrap();
    let d = a.register_dmb(65536, gid(0)).unwrap();
    for d in big.drain(..).chain([d]) {
        a.unregister_dmb(d.token).unwrap();
    }
    // Slots run out: 64 small DMBs fill the 64-slot table.
    let small: Vec<_> = (0..64)
        .map(|_| a.register_dmb(64, gid(0)).unwrap())
        .collect();
    let mut indices: Vec<u32> = small.iter().map(|d| d.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..64).collect::<Vec<u32>>());
    assert_eq!(a.register_dmb(64, gid(0)).err(), Some(IsmError::NoSpace));
    a.unregister_dmb(small[10].token).unwrap();
    assert_eq!(a.register_dmb(64, gid(0)).unwrap().index, small[10].index);
}

#[test]
fn dead_peer_is_reported_once_and_becomes_unreachable() {
    let (server, _log, devs) = setup(4, 3);
    let (a, b) = (&devs[0], &devs[1]);
    let dmb = b.register_dmb(16384, gid(0)).unwrap();
    assert_eq!(events(a), vec![]);
    server.leave(1);
    assert_eq!(events(a), vec![IsmEvent::PeerGone { gid: gid(1) }]);
    assert_eq!(events(a), vec![], "reported once");
    assert_eq!(events(&devs[2]), vec![IsmEvent::PeerGone { gid: gid(1) }]);
    assert_eq!(
        a.move_data(dmb.token, 0, b"gone", true),
        Err(IsmError::PeerUnreachable)
    );
    // ID 1 is reassigned to a new guest: its old DMBs stay dead, and a leave + join
    // between two polls is still reported as the old GID going away.
    server.join(1, rgid(gid(11)));
    assert_eq!(events(a), vec![]);
    assert_eq!(
        a.move_data(dmb.token, 0, b"gone", true),
        Err(IsmError::InvalidToken)
    );
    server.leave(1);
    server.join(1, rgid(gid(12)));
    assert_eq!(events(a), vec![IsmEvent::PeerGone { gid: gid(11) }]);
    assert!(a.query_remote_gid(gid(12), None));
}

#[test]
fn own_entry_rewritten_fails_the_device() {
    let (server, _log, devs) = setup(4, 2);
    let a = &devs[0];
    let own = a.register_dmb(16384, gid(0)).unwrap();
    server.leave(0);
    server.join(0, rgid(gid(50)));
    assert_eq!(events(a), vec![]);
    assert!(a.has_failed());
    assert_eq!(
        a.register_dmb(64, gid(1)).err(),
        Some(IsmError::DeviceError)
    );
    assert_eq!(
        a.move_data(own.token, 0, b"x", false),
        Err(IsmError::DeviceError)
    );
    assert!(!a.query_remote_gid(gid(1), None));
}

#[test]
fn attach_detach_is_refcounted_and_writes_through() {
    let (_server, log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    let dmb = b.register_dmb(32768, gid(0)).unwrap();
    let w1 = a.attach_dmb(dmb.token).unwrap();
    let w2 = a.attach_dmb(dmb.token).unwrap();
    assert_eq!(w1.len(), 32768);
    assert_eq!(w1.base(), dmb.memory.base());
    w1.write(32, b"no-copy path").unwrap();
    w1.store_u64(8, 0xfeed, Ordering::Release).unwrap();
    assert!(w1.write(32760, &[0u8; 9]).is_err());
    assert_eq!(read_dmb(&dmb.memory, 32, 12), b"no-copy path");
    assert_eq!(dmb.memory.load_u64(8, Ordering::Acquire), Ok(0xfeed));
    drop((w1, w2));
    a.move_data(dmb.token, 0, &[], true).unwrap();
    assert_eq!(events(b), vec![IsmEvent::DmbSignalled { index: dmb.index }]);
    assert_eq!(log.count_to(1, VECTOR_DMB), 1);
    a.detach_dmb(dmb.token).unwrap();
    a.detach_dmb(dmb.token).unwrap();
    assert_eq!(a.detach_dmb(dmb.token), Err(IsmError::InvalidToken));
    assert_eq!(a.detach_dmb(DmbToken(12345)), Err(IsmError::InvalidToken));
}

#[test]
fn own_dmb_through_the_region_signals_ourselves() {
    let (_server, log, devs) = setup(4, 1);
    let a = &devs[0];
    let dmb = a.register_dmb(16384, gid(0)).unwrap();
    a.move_data(dmb.token, 7, b"self", true).unwrap();
    assert_eq!(read_dmb(&dmb.memory, 7, 4), b"self");
    assert_eq!(events(a), vec![IsmEvent::DmbSignalled { index: dmb.index }]);
    assert_eq!(log.count_to(0, VECTOR_DMB), 1);
    let other = a.register_dmb(16384, gid(3)).unwrap();
    assert_eq!(
        a.move_data(other.token, 0, b"x", false),
        Err(IsmError::InvalidToken)
    );
}

#[test]
fn many_peers_many_dmbs_signals_land_on_the_right_index() {
    let (_server, log, devs) = setup(8, 5);
    // Every peer registers 4 DMBs for each peer (itself included): 20 per area.
    let mut dmbs = Vec::new();
    for (owner, dev) in devs.iter().enumerate() {
        for writer in 0..devs.len() {
            for _ in 0..4 {
                let d = dev.register_dmb(4096, gid(writer as u64)).unwrap();
                dmbs.push((owner, writer, d));
            }
        }
    }
    for (owner, writer, d) in &dmbs {
        let msg = [*owner as u8, *writer as u8, d.index as u8];
        devs[*writer].move_data(d.token, 64, &msg, true).unwrap();
    }
    for (owner, dev) in devs.iter().enumerate() {
        let mut got: Vec<u32> = events(dev)
            .into_iter()
            .map(|e| match e {
                IsmEvent::DmbSignalled { index } => index,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        got.sort_unstable();
        let mut want: Vec<u32> = dmbs
            .iter()
            .filter(|(o, _, _)| *o == owner)
            .map(|(_, _, d)| d.index)
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(log.count_to(owner as u16, VECTOR_DMB) >= 1);
    }
    for (owner, writer, d) in &dmbs {
        assert_eq!(
            read_dmb(&d.memory, 64, 3),
            [*owner as u8, *writer as u8, d.index as u8]
        );
    }
}

/// One operation of the scribbling proptest.
#[derive(Clone, Debug)]
enum Op {
    Scribble {
        at: usize,
        bytes: Vec<u8>,
    },
    ScribbleWord {
        word: usize,
        value: u64,
    },
    Register {
        dev: usize,
        len: usize,
        remote: usize,
    },
    Unregister {
        dev: usize,
        pick: usize,
        random: Option<u64>,
    },
    Move {
        dev: usize,
        pick: usize,
        random: Option<u64>,
        offset: usize,
        len: usize,
        signal: bool,
    },
    Attach {
        dev: usize,
        pick: usize,
        random: Option<u64>,
    },
    Detach {
        dev: usize,
        pick: usize,
    },
    Poll {
        dev: usize,
    },
    Query {
        dev: usize,
        remote: u64,
    },
    Discover {
        dev: usize,
        peer: u16,
    },
}

const SMALL: usize = 1 << 17;

fn op() -> impl Strategy<Value = Op> {
    let dev = 0usize..2;
    prop_oneof![
        (0..SMALL, proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Op::Scribble { at, bytes }),
        // Words aimed at the metadata, descriptor tables and bitmaps (the first pages).
        (0usize..(5 * 4096 / 8), any::<u64>())
            .prop_map(|(word, value)| Op::ScribbleWord { word, value }),
        (dev.clone(), 1usize..40000, 0usize..3).prop_map(|(dev, len, remote)| Op::Register {
            dev,
            len,
            remote
        }),
        (
            dev.clone(),
            any::<usize>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(dev, pick, random)| Op::Unregister { dev, pick, random }),
        (
            dev.clone(),
            any::<usize>(),
            proptest::option::of(any::<u64>()),
            0usize..70000,
            0usize..3000,
            any::<bool>()
        )
            .prop_map(|(dev, pick, random, offset, len, signal)| Op::Move {
                dev,
                pick,
                random,
                offset,
                len,
                signal
            }),
        (
            dev.clone(),
            any::<usize>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(dev, pick, random)| Op::Attach { dev, pick, random }),
        (dev.clone(), any::<usize>()).prop_map(|(dev, pick)| Op::Detach { dev, pick }),
        dev.clone().prop_map(|dev| Op::Poll { dev }),
        (dev.clone(), 0u64..4).prop_map(|(dev, remote)| Op::Query { dev, remote }),
        (dev, 0u16..3).prop_map(|(dev, peer)| Op::Discover { dev, peer }),
    ]
}

/// Indices of bytes that differ between two snapshots.
fn changed(before: &[u8], after: &[u8]) -> Vec<usize> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A hostile peer scribbles anywhere in the region between operations. Nothing
    /// panics; a successful move_data only changes bytes of the target owner's area
    /// payload and signal bitmap; signals name only registered slots; a fresh device
    /// on the scribbled region comes up or refuses cleanly.
    #[test]
    fn hostile_scribbles_cannot_break_the_device(ops in proptest::collection::vec(op(), 1..60)) {
        let server = FakeServer::new(
            LayoutParams { region_size: SMALL, max_peers: 2, slots_per_peer: 64 },
            REGION_ID,
        ).unwrap();
        server.join(0, rgid(gid(0)));
        server.join(1, rgid(gid(1)));
        let log = RingLog::new();
        let devs = [device(&server, &log, 0), device(&server, &log, 1)];
        let layout = *devs[0].layout();
        let region = server.region();
        // Model: tokens registered per device (device -> (token, index)).
        let mut own: [Vec<(DmbToken, u32)>; 2] = [Vec::new(), Vec::new()];
        let mut attached: [Vec<DmbToken>; 2] = [Vec::new(), Vec::new()];
        let all = |own: &[Vec<(DmbToken, u32)>; 2]| -> Vec<DmbToken> {
            own.iter().flatten().map(|(t, _)| *t).collect()
        };
        let pick_token = |own: &[Vec<(DmbToken, u32)>; 2], pick: usize, random: Option<u64>| {
            let tokens = all(own);
            match random {
                Some(r) => DmbToken(r),
                None if tokens.is_empty() => DmbToken(pick as u64),
                None => tokens[pick % tokens.len()],
            }
        };
        for op in ops {
            match op {
                Op::Scribble { at, bytes } => {
                    let n = bytes.len().min(SMALL - at);
                    region.write(at, &bytes[..n]).unwrap();
                }
                Op::ScribbleWord { word, value } => {
                    region.store_u64(word * 8, value, Ordering::Relaxed).unwrap();
                }
                Op::Register { dev, len, remote } => {
                    if let Ok(d) = devs[dev].register_dmb(len, gid(remote as u64)) {
                        let payload = layout.area_payload(dev as u32).unwrap();
                        prop_assert!(d.memory.base() >= payload.start);
                        prop_assert!(d.memory.base() + d.memory.len() <= payload.end);
                        prop_assert_eq!(d.memory.len(), len);
                        own[dev].push((d.token, d.index));
                    }
                }
                Op::Unregister { dev, pick, random } => {
                    let t = pick_token(&own, pick, random);
                    let r = devs[dev].unregister_dmb(t);
                    let mine = own[dev].iter().position(|(x, _)| *x == t);
                    prop_assert_eq!(r.is_ok(), mine.is_some());
                    if let (Ok(()), Some(i)) = (r, mine) {
                        own[dev].swap_remove(i);
                    }
                }
                Op::Move { dev, pick, random, offset, len, signal } => {
                    let t = pick_token(&own, pick, random);
                    let data = vec![0xA5u8; len];
                    let before = read_dmb(&region, 0, SMALL);
                    let r = devs[dev].move_data(t, offset, &data, signal);
                    let after = read_dmb(&region, 0, SMALL);
                    let diff = changed(&before, &after);
                    if r.is_ok() {
                        let (owner, _) = decode_token(t.0);
                        let payload = layout.area_payload(owner).unwrap();
                        let bitmap = layout.bitmap_range(owner).unwrap();
                        for i in diff {
                            prop_assert!(payload.contains(&i) || bitmap.contains(&i), "byte {} changed", i);
                        }
                    } else {
                        prop_assert!(diff.is_empty(), "refused move_data wrote {:?}", r);
                    }
                }
                Op::Attach { dev, pick, random } => {
                    let t = pick_token(&own, pick, random);
                    if let Ok(w) = devs[dev].attach_dmb(t) {
                        let (owner, _) = decode_token(t.0);
                        let payload = layout.area_payload(owner).unwrap();
                        prop_assert!(w.base() >= payload.start && w.base() + w.len() <= payload.end);
                        // Writing the whole window stays inside the owner's payload.
                        w.fill(0, w.len(), 0x5A).unwrap();
                        prop_assert!(w.fill(0, w.len() + 1, 0).is_err());
                        attached[dev].push(t);
                    }
                }
                Op::Detach { dev, pick } => {
                    if attached[dev].is_empty() {
                        prop_assert!(devs[dev].detach_dmb(DmbToken(pick as u64)).is_err());
                    } else {
                        let t = attached[dev].swap_remove(pick % attached[dev].len());
                        prop_assert_eq!(devs[dev].detach_dmb(t), Ok(()));
                    }
                }
                Op::Poll { dev } => {
                    let mut evs = Vec::new();
                    devs[dev].poll_events(&mut |e| evs.push(e));
                    for e in evs {
                        if let IsmEvent::DmbSignalled { index } = e {
                            prop_assert!(own[dev].iter().any(|(_, i)| *i == index));
                        }
                    }
                }
                Op::Query { dev, remote } => {
                    let _ = devs[dev].query_remote_gid(gid(remote), None);
                }
                Op::Discover { dev, peer } => {
                    prop_assert!(devs[dev].active_peers().len() <= 2);
                    for (token, len) in devs[dev].dmbs_offered_by(peer) {
                        // Every offer is a writable target inside the owner's payload.
                        let payload = layout.area_payload(u32::from(peer)).unwrap();
                        prop_assert_eq!(decode_token(token.0).0, u32::from(peer));
                        prop_assert!(len <= payload.len());
                        let before = read_dmb(&region, 0, SMALL);
                        if devs[dev].move_data(token, 0, &[1], false).is_ok() {
                            for i in changed(&before, &read_dmb(&region, 0, SMALL)) {
                                prop_assert!(payload.contains(&i));
                            }
                        }
                    }
                }
            }
        }
        // A newcomer on the scribbled region: up or a clean refusal.
        let _ = IvshmemIsm::new(region.clone(), log.doorbell(1), ChaCha8Rng::seed_from_u64(9), 1);
        for v in 0..2u16 {
            let _ = IvshmemIsm::new(region.clone(), log.doorbell(v), ChaCha8Rng::seed_from_u64(9), v);
        }
        // Rings only go to existing peers on the DMB vector.
        for r in log.rings() {
            prop_assert!(r.to < 2 && r.vector == VECTOR_DMB);
        }
    }
}

#[test]
fn fetch_or_and_swap_compose_on_the_fake() {
    let r = FakeRegion::new(64);
    assert_eq!(r.fetch_or_u64(8, 1, Ordering::AcqRel), Ok(0));
    assert_eq!(r.fetch_or_u64(8, 4, Ordering::AcqRel), Ok(1));
    assert_eq!(r.swap_u64(8, 0, Ordering::AcqRel), Ok(5));
    assert!(r.swap_u64(12, 0, Ordering::AcqRel).is_err());
}

/// An RNG that fails while `failing` is set (like RDRAND with an exhausted source).
struct FlakyRng {
    failing: alloc::sync::Arc<core::sync::atomic::AtomicBool>,
    inner: ChaCha8Rng,
}

impl rand_chacha::rand_core::TryRngCore for FlakyRng {
    type Error = super::rng::RdRandError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.try_next_u64().map(|v| v as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        if self.failing.load(Ordering::Relaxed) {
            Err(super::rng::RdRandError)
        } else {
            Ok(rand_chacha::rand_core::RngCore::next_u64(&mut self.inner))
        }
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.try_next_u32()? as u8;
        }
        Ok(())
    }
}

#[test]
fn rng_failure_refuses_registration_without_leaking() {
    let server = FakeServer::new(params(4), REGION_ID).unwrap();
    server.join(0, rgid(gid(0)));
    let failing = alloc::sync::Arc::new(core::sync::atomic::AtomicBool::new(true));
    let rng = FlakyRng {
        failing: failing.clone(),
        inner: ChaCha8Rng::seed_from_u64(3),
    };
    let dev = IvshmemIsm::new(server.region(), RingLog::new().doorbell(0), rng, 0).unwrap();
    assert_eq!(
        dev.register_dmb(65536, gid(0)).err(),
        Some(IsmError::DeviceError)
    );
    failing.store(false, Ordering::Relaxed);
    let payload = dev.layout().area_payload(0).unwrap().len();
    let mut n = 0;
    while dev.register_dmb(65536, gid(0)).is_ok() {
        n += 1;
    }
    assert_eq!(
        n,
        payload / 65536,
        "the refused registration leaked no space"
    );
}

#[test]
fn discovery_lists_active_peers_and_offers_for_us_only() {
    let (server, _log, devs) = setup(4, 3);
    let (a, b) = (&devs[0], &devs[1]);
    assert_eq!(
        a.active_peers(),
        vec![(0, gid(0)), (1, gid(1)), (2, gid(2))]
    );
    let for_a = b.register_dmb(16384, gid(0)).unwrap();
    let _for_c = b.register_dmb(16384, gid(2)).unwrap();
    let for_a2 = b.register_dmb(4096, gid(0)).unwrap();
    assert_eq!(
        a.dmbs_offered_by(1),
        vec![(for_a.token, 16384), (for_a2.token, 4096)]
    );
    assert_eq!(a.dmbs_offered_by(0), vec![], "own ID is not a remote");
    assert_eq!(a.dmbs_offered_by(900), vec![]);
    b.unregister_dmb(for_a.token).unwrap();
    assert_eq!(a.dmbs_offered_by(1), vec![(for_a2.token, 4096)]);
    server.leave(1);
    assert_eq!(a.dmbs_offered_by(1), vec![]);
    assert_eq!(a.active_peers(), vec![(0, gid(0)), (2, gid(2))]);
}

/// The real register and region types over heap stand-ins: the whole driver stack
/// (Bar0 doorbell, Bar2Memory volatile copies and atomics, IvshmemIsm) on the host.
#[test]
fn device_over_heap_bars_runs_the_real_memory_path() {
    use super::device::IvshmemDevice;
    let server = FakeServer::new(params(4), REGION_ID).unwrap();
    server.join(1, rgid(gid(1)));
    let size = server.layout().region_size();
    let bar2: &'static mut [u64] = alloc::boxed::Box::leak(vec![0u64; size / 8].into_boxed_slice());
    let mut image = vec![0u8; size];
    server.region().read(0, &mut image).unwrap();
    for (w, chunk) in bar2.iter_mut().zip(image.chunks(8)) {
        *w = u64::from_ne_bytes(chunk.try_into().unwrap());
    }
    let bar0: &'static mut [u32; 64] = alloc::boxed::Box::leak(alloc::boxed::Box::new([0u32; 64]));
    bar0[2] = 1; // IVPosition: peer 1
    let bar0_addr = bar0.as_mut_ptr() as usize;
    // SAFETY: both buffers are leaked (live for the process), aligned, and from here on
    // reached only through the device handles (the test reads BAR0 back volatilely).
    let device =
        unsafe { IvshmemDevice::new(bar0_addr, bar2.as_mut_ptr() as usize, size) }.unwrap();
    assert_eq!(device.peer_id(), 1);
    let rng = || ChaCha8Rng::seed_from_u64(77);
    assert_eq!(
        device.into_ism(rng(), 0).err(),
        Some(IvshmemError::NoDoorbell { msix_entries: 0 })
    );
    let ism = device.into_ism(rng(), 2).unwrap();
    assert_eq!(ism.local_gid(), gid(1));
    let dmb = ism.register_dmb(20000, gid(1)).unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    ism.move_data(dmb.token, 3, &data, true).unwrap();
    // SAFETY: word 3 of the leaked BAR0 stand-in (the Doorbell register), read volatilely.
    let doorbell = unsafe { (bar0_addr as *const u32).add(3).read_volatile() };
    assert_eq!(doorbell, (1 << 16) | u32::from(VECTOR_DMB));
    assert_eq!(
        events_of(&ism),
        vec![IsmEvent::DmbSignalled { index: dmb.index }]
    );
    assert_eq!(read_dmb(&dmb.memory, 3, 5000), data);
    assert_eq!(
        ism.move_data(dmb.token, 19999, &[1, 2], false),
        Err(IsmError::OutOfBounds)
    );
}

fn events_of<M, D, R>(dev: &IvshmemIsm<M, D, R>) -> Vec<IsmEvent>
where
    M: AtomicMemory + Clone,
    D: super::ism::Doorbell,
    R: rand_chacha::rand_core::TryRngCore,
{
    let mut out = Vec::new();
    dev.poll_events(&mut |e| out.push(e));
    out
}

/// Seqlocks under real concurrency (a smoke test; the odd-sequence rules are checked
/// deterministically in `odd_sequences_are_never_trusted`): one thread churns a
/// directory entry (leave/join with alternating GIDs), another keeps re-registering DMBs
/// with alternating remote GIDs, while this thread reads the directory and the
/// descriptors. Every GID seen must be one that was written, and no DMB meant for
/// another GID may be offered to us. The reader runs until it has made `PASSES` passes
/// and the DMB writer has seen `OFFERS` offers checked; the writers run until the reader
/// is done (also when it panics), so the test cannot hang on a fast or failing reader.
#[test]
fn seqlocked_reads_are_never_torn_under_concurrent_writers() {
    extern crate std;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    const PASSES: usize = 300;
    const OFFERS: usize = 300;
    let (server, _log, devs) = setup(4, 3);
    let [a, b, _c] = &devs[..] else {
        unreachable!()
    };
    let passes = AtomicUsize::new(0);
    let seen = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let reader_done = AtomicBool::new(false);
    let gids_of_2 = [gid(2), gid(22)];
    let for_gid7 = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let offered = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Until the reader is done: it leaves only after PASSES passes, so every pass
            // races this churn. (Waiting for PASSES here instead hung when the reader had
            // its offers, and stopped, in fewer passes.)
            let mut round = 0;
            while !reader_done.load(Ordering::SeqCst) || round < 1000 {
                server.leave(2);
                server.join(2, rgid(gids_of_2[round % 2]));
                round += 1;
            }
        });
        scope.spawn(|| {
            // Four DMBs live at any time, two for us (gid 0) and two for gid 7; runs until
            // the reader has checked enough offers.
            let mut live = VecDeque::new();
            let mut round = 0;
            while !reader_done.load(Ordering::SeqCst)
                && (seen.load(Ordering::SeqCst) < OFFERS || round < 1000)
            {
                let remote = if round % 2 == 0 { gid(0) } else { gid(7) };
                let d = b.register_dmb(4096, remote).unwrap();
                if remote == gid(7) {
                    for_gid7.lock().unwrap().insert(d.token);
                }
                live.push_back(d);
                if live.len() > 4 {
                    b.unregister_dmb(live.pop_front().unwrap().token).unwrap();
                }
                round += 1;
            }
            stop.store(true, Ordering::SeqCst);
        });
        // Set when the reader ends, also by a failed assertion (the scope joins the
        // writers before it re-raises the panic).
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _done = Done(&reader_done);
        let mut offered = Vec::new();
        while !(stop.load(Ordering::SeqCst) && passes.load(Ordering::SeqCst) >= PASSES) {
            for (id, g) in a.active_peers() {
                match id {
                    0 => assert_eq!(g, gid(0)),
                    1 => assert_eq!(g, gid(1)),
                    2 => assert!(gids_of_2.contains(&g), "torn GID {g:x?}"),
                    other => panic!("peer {other} never joined"),
                }
            }
            // Only DMBs restricted to us (gid 0) may be offered, never those for gid 7.
            for (token, len) in a.dmbs_offered_by(1) {
                assert_eq!(len, 4096);
                assert_eq!(decode_token(token.0).0, 1);
                offered.push(token);
                seen.fetch_add(1, Ordering::SeqCst);
            }
            passes.fetch_add(1, Ordering::SeqCst);
        }
        offered
    });
    // Every offer was a DMB registered for us, never one of gid 7's (a torn descriptor
    // read could pair one registration's token with another's remote GID).
    let for_gid7 = for_gid7.into_inner().unwrap();
    assert!(!offered.is_empty(), "the descriptor path was exercised");
    assert!(
        offered.iter().all(|t| !for_gid7.contains(t)),
        "offered a DMB meant for gid 7"
    );
    std::println!(
        "{PASSES}+ reader passes, {} offers checked while churning",
        offered.len()
    );
    assert!(gids_of_2.iter().any(|&g| a.query_remote_gid(g, None)));
}

/// A directory entry or descriptor whose sequence is odd (being rewritten, or held odd by
/// a hostile peer) is never used, and the device does not hang on it.
#[test]
fn odd_sequences_are_never_trusted() {
    let (server, _log, devs) = setup(4, 2);
    let (a, b) = (&devs[0], &devs[1]);
    let region = server.region();
    let layout = *server.layout();
    let dmb = b.register_dmb(4096, gid(0)).unwrap();
    let (_, slot) = decode_token(dmb.token.0);
    let seq_off = layout.descriptor_offset(1, slot).unwrap();
    let seq = region.load_u64(seq_off, Ordering::Acquire).unwrap();
    region
        .store_u64(seq_off, seq + 1, Ordering::Release)
        .unwrap();
    assert_eq!(
        a.move_data(dmb.token, 0, b"x", true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(a.attach_dmb(dmb.token).err(), Some(IsmError::InvalidToken));
    assert_eq!(a.dmbs_offered_by(1), vec![]);
    region.store_u64(seq_off, seq, Ordering::Release).unwrap();
    assert_eq!(a.dmbs_offered_by(1), vec![(dmb.token, 4096)]);
    a.move_data(dmb.token, 0, b"x", false).unwrap();

    let epoch_off = layout.peer_epoch_offset(1).unwrap();
    let epoch = region.load_u64(epoch_off, Ordering::Acquire).unwrap();
    region
        .store_u64(epoch_off, epoch + 1, Ordering::Release)
        .unwrap();
    assert!(!a.query_remote_gid(gid(1), None));
    assert_eq!(a.active_peers(), vec![(0, gid(0))]);
    assert_eq!(
        a.move_data(dmb.token, 0, b"x", false),
        Err(IsmError::PeerUnreachable)
    );
    // A server-epoch change while the entry is odd: nothing is concluded yet...
    let se = ivshmem_region::header::SERVER_EPOCH.start;
    let server_epoch = region.load_u64(se, Ordering::Acquire).unwrap();
    region
        .store_u64(se, server_epoch + 1, Ordering::Release)
        .unwrap();
    assert_eq!(events(a), vec![]);
    // ...and once the entry is consistent again (same incarnation), nothing is reported.
    region
        .store_u64(epoch_off, epoch, Ordering::Release)
        .unwrap();
    assert_eq!(events(a), vec![]);
    assert!(a.query_remote_gid(gid(1), None));
    // An even epoch that does not fit the state (Active needs epoch = 2 mod 4) is a
    // scribble, not a new incarnation: not reachable, and nothing concluded from it.
    region
        .store_u64(epoch_off, epoch + 2, Ordering::Release)
        .unwrap();
    assert!(!a.query_remote_gid(gid(1), None));
    region
        .store_u64(se, server_epoch + 2, Ordering::Release)
        .unwrap();
    assert_eq!(events(a), vec![]);
    region
        .store_u64(epoch_off, epoch, Ordering::Release)
        .unwrap();
    assert!(a.query_remote_gid(gid(1), None));
    // While a later real departure is.
    server.leave(1);
    assert_eq!(events(a), vec![IsmEvent::PeerGone { gid: gid(1) }]);
}

/// The event sink may call back into the device (the SMC layer answers a signal with a
/// consumer-cursor update through `move_data`): no self-deadlock on the state lock.
#[test]
fn event_sink_may_reenter_the_device() {
    let (server, _log, devs) = setup(4, 3);
    let (a, b) = (&devs[0], &devs[1]);
    let to_a = a.register_dmb(4096, gid(1)).unwrap();
    let to_b = b.register_dmb(4096, gid(0)).unwrap();
    b.move_data(to_a.token, 0, b"ping", true).unwrap();
    server.leave(2);
    let mut seen = Vec::new();
    a.poll_events(&mut |e| {
        seen.push(e);
        a.move_data(to_b.token, 0, b"pong", true).unwrap();
        assert!(a.query_remote_gid(gid(1), None));
    });
    assert_eq!(
        seen,
        vec![
            IsmEvent::DmbSignalled { index: to_a.index },
            IsmEvent::PeerGone { gid: gid(2) }
        ]
    );
    assert_eq!(read_dmb(&to_b.memory, 0, 4), b"pong");
    assert_eq!(
        events(b),
        vec![
            IsmEvent::DmbSignalled { index: to_b.index },
            IsmEvent::PeerGone { gid: gid(2) }
        ]
    );
}
