//! Loopback ISM device: DMB registry, move_data checks, signals, no-copy, fabric, peer loss.

use std::collections::BTreeSet;

use smcd::ism::{DmbToken, Gid, IsmDevice, IsmError, IsmEvent};
use smcd::loopback::{LoopbackConfig, LoopbackFabric, LoopbackIsm};
use smcd::shm::SharedMemory;

fn events(dev: &LoopbackIsm) -> Vec<IsmEvent> {
    let mut v = Vec::new();
    dev.poll_events(&mut |e| v.push(e));
    v
}

fn small(max_dmbs: u32) -> LoopbackConfig {
    LoopbackConfig {
        max_dmbs,
        ..LoopbackConfig::default()
    }
}

#[test]
fn registers_zeroed_dmbs_until_no_space_and_reuses_indices() {
    let dev = LoopbackIsm::with_config(11, small(3));
    let me = dev.local_gid();
    let dmbs: Vec<_> = (0..3).map(|_| dev.register_dmb(256, me).unwrap()).collect();
    assert_eq!(dev.register_dmb(256, me).unwrap_err(), IsmError::NoSpace);
    assert_eq!(dev.registered_dmbs(), 3);
    let indices: BTreeSet<u32> = dmbs.iter().map(|d| d.index).collect();
    assert_eq!(indices, BTreeSet::from([0, 1, 2]));
    let tokens: BTreeSet<u64> = dmbs.iter().map(|d| d.token.0).collect();
    assert_eq!(tokens.len(), 3);
    let mut buf = [0xAAu8; 256];
    dmbs[1].memory.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "DMB must start zeroed");

    dev.unregister_dmb(dmbs[1].token).unwrap();
    assert_eq!(dev.registered_dmbs(), 2);
    let again = dev.register_dmb(128, me).unwrap();
    assert_eq!(again.index, dmbs[1].index, "freed index is reused");
    assert_ne!(again.token, dmbs[1].token);
    assert_eq!(dev.register_dmb(64, me).unwrap_err(), IsmError::NoSpace);
}

#[test]
fn rejects_bad_lengths() {
    let dev = LoopbackIsm::new(12);
    let me = dev.local_gid();
    assert_eq!(
        dev.register_dmb(0, me).unwrap_err(),
        IsmError::InvalidArgument
    );
    assert_eq!(
        dev.register_dmb((1 << 20) + 1, me).unwrap_err(),
        IsmError::InvalidArgument
    );
    assert!(dev.register_dmb(1 << 20, me).is_ok());
}

#[test]
fn tokens_are_unique_over_many_registrations() {
    let dev = LoopbackIsm::new(13);
    let me = dev.local_gid();
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let d = dev.register_dmb(64, me).unwrap();
        assert!(seen.insert(d.token.0), "duplicate token");
        assert_ne!(d.token.0, 0);
    }
}

#[test]
fn move_data_is_bounds_and_token_checked() {
    let dev = LoopbackIsm::new(14);
    let me = dev.local_gid();
    let d = dev.register_dmb(64, me).unwrap();
    assert_eq!(dev.move_data(d.token, 60, &[1; 4], false), Ok(()));
    assert_eq!(
        dev.move_data(d.token, 61, &[1; 4], false),
        Err(IsmError::OutOfBounds)
    );
    assert_eq!(
        dev.move_data(d.token, usize::MAX, &[1], true),
        Err(IsmError::OutOfBounds)
    );
    assert_eq!(
        dev.move_data(DmbToken(d.token.0 ^ 1), 0, &[1], false),
        Err(IsmError::InvalidToken)
    );
    // A rejected write touched nothing and raised no signal.
    let mut tail = [0u8; 4];
    d.memory.read(60, &mut tail).unwrap();
    assert_eq!(tail, [1; 4]);
    assert_eq!(events(&dev), vec![]);

    dev.unregister_dmb(d.token).unwrap();
    assert_eq!(
        dev.move_data(d.token, 0, &[1], true),
        Err(IsmError::InvalidToken),
        "stale token"
    );
    assert_eq!(dev.unregister_dmb(d.token), Err(IsmError::InvalidToken));
}

#[test]
fn fabric_devices_reach_each_other_and_only_the_registered_writer_may_write() {
    let fabric = LoopbackFabric::new(1);
    let a = fabric.device(100);
    let b = fabric.device(200);
    let c = fabric.device(300);
    assert_ne!(a.local_gid(), b.local_gid());
    assert!(a.query_remote_gid(b.local_gid(), None));
    assert!(b.query_remote_gid(a.local_gid(), Some(0x1FFF)));
    assert!(!a.query_remote_gid(Gid::virtual_(1, 2), None));
    let lone = LoopbackIsm::new(100);
    assert!(!lone.query_remote_gid(b.local_gid(), None), "other fabric");

    // b's DMB, writable by a only.
    let dmb = b.register_dmb(64, a.local_gid()).unwrap();
    a.move_data(dmb.token, 32, b"from a", false).unwrap();
    a.move_data(dmb.token, 0, &[0xFE; 32], true).unwrap();
    assert_eq!(
        c.move_data(dmb.token, 32, b"evil", true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(
        b.move_data(dmb.token, 32, b"self", true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(c.attach_dmb(dmb.token).unwrap_err(), IsmError::InvalidToken);
    // Only the owner may unregister.
    assert_eq!(a.unregister_dmb(dmb.token), Err(IsmError::InvalidToken));
    let mut got = [0u8; 6];
    dmb.memory.read(32, &mut got).unwrap();
    assert_eq!(&got, b"from a");
    assert_eq!(
        events(&b),
        vec![IsmEvent::DmbSignalled { index: dmb.index }]
    );
    assert_eq!(events(&a), vec![]);
    assert_eq!(fabric.registered_dmbs(), 1);
}

#[test]
fn attach_returns_the_same_memory_with_a_refcount() {
    let fabric = LoopbackFabric::new(2);
    let a = fabric.device(1);
    let b = fabric.device(2);
    let dmb = b.register_dmb(128, a.local_gid()).unwrap();
    let m1 = a.attach_dmb(dmb.token).unwrap();
    let m2 = a.attach_dmb(dmb.token).unwrap();
    assert_eq!(fabric.attached_refs(), 2);
    m1.write(40, b"zero-copy").unwrap();
    let mut got = [0u8; 9];
    dmb.memory.read(40, &mut got).unwrap();
    assert_eq!(&got, b"zero-copy");
    m2.read(40, &mut got).unwrap();
    assert_eq!(&got, b"zero-copy");
    a.detach_dmb(dmb.token).unwrap();
    a.detach_dmb(dmb.token).unwrap();
    assert_eq!(
        a.detach_dmb(dmb.token),
        Err(IsmError::InvalidToken),
        "no reference left"
    );
    assert_eq!(fabric.attached_refs(), 0);
}

#[test]
fn unregister_while_attached_invalidates_token_but_keeps_memory_until_detach() {
    let fabric = LoopbackFabric::new(3);
    let a = fabric.device(1);
    let b = fabric.device(2);
    let dmb = b.register_dmb(128, a.local_gid()).unwrap();
    let attached = a.attach_dmb(dmb.token).unwrap();
    b.unregister_dmb(dmb.token).unwrap();
    assert_eq!(fabric.registered_dmbs(), 0);
    assert_eq!(fabric.orphaned_dmbs(), 1);
    assert_eq!(
        a.move_data(dmb.token, 0, &[0; 32], true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(a.attach_dmb(dmb.token).unwrap_err(), IsmError::InvalidToken);
    // The attached handle still refers to valid (now private) memory.
    attached.write(32, b"late").unwrap();
    a.detach_dmb(dmb.token).unwrap();
    assert_eq!(fabric.orphaned_dmbs(), 0);
    assert_eq!(fabric.attached_refs(), 0);
    assert_eq!(a.detach_dmb(dmb.token), Err(IsmError::InvalidToken));
}

#[test]
fn removing_a_device_reports_peer_gone_and_frees_its_dmbs() {
    let fabric = LoopbackFabric::new(4);
    let a = fabric.device(1);
    let b = fabric.device(2);
    let c = fabric.device(3);
    let b_gid = b.local_gid();
    let in_b = b.register_dmb(64, a.local_gid()).unwrap();
    let in_a = a.register_dmb(64, b_gid).unwrap();
    a.move_data(in_b.token, 0, &[0xFE; 8], true).unwrap();
    assert!(fabric.remove(b_gid));
    assert!(!fabric.remove(b_gid));
    assert!(!b.is_present());
    assert_eq!(events(&a), vec![IsmEvent::PeerGone { gid: b_gid }]);
    assert_eq!(events(&c), vec![IsmEvent::PeerGone { gid: b_gid }]);
    assert_eq!(events(&b), vec![], "a removed device reports nothing");
    assert!(!a.query_remote_gid(b_gid, None));
    assert_eq!(
        a.move_data(in_b.token, 0, &[0; 8], true),
        Err(IsmError::InvalidToken)
    );
    assert_eq!(
        b.move_data(in_a.token, 0, &[0; 8], true),
        Err(IsmError::DeviceError)
    );
    assert_eq!(
        b.register_dmb(64, b_gid).unwrap_err(),
        IsmError::DeviceError
    );
    assert_eq!(fabric.registered_dmbs(), 1, "only a's DMB is left");

    // Dropping a device is the same as removing it.
    let c_gid = c.local_gid();
    drop(c);
    assert_eq!(events(&a), vec![IsmEvent::PeerGone { gid: c_gid }]);
    assert_eq!(
        fabric.device_count(),
        1,
        "b is removed, c dropped: only a remains"
    );
    a.unregister_dmb(in_a.token).unwrap();
    assert_eq!(fabric.registered_dmbs(), 0);
}

#[test]
fn cdc_writes_land_exactly() {
    // A CDC-sized write at offset 0 lands byte for byte and is read back by the
    // atomic-load CDC reader (here: type byte 0 is rejected as unknown).
    let dev = LoopbackIsm::new(15);
    let me = dev.local_gid();
    let d = dev.register_dmb(64, me).unwrap();
    let bytes: Vec<u8> = (0u8..32).collect();
    dev.move_data(d.token, 0, &bytes, true).unwrap();
    let mut got = [0u8; 32];
    d.memory.read(0, &mut got).unwrap();
    assert_eq!(&got[..], &bytes[..]);
    let cdc = smcd::wire::cdc::CdcRepr::load(&*d.memory, 0);
    assert_eq!(cdc, Err(smcd::wire::cdc::CdcError::UnknownType(0)));
}
