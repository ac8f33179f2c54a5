//! SMC-D data path traces: which bytes and which CDC each operation writes (§4.4, §4.5).

mod conn_support;

use conn_support::*;
use smcd::conn::{ConnError, DataMode, PollOutcome, SmcdConn};
use smcd::ism::IsmDevice;
use smcd::loopback::LoopbackIsm;

#[test]
fn write_puts_data_at_32_plus_prod_then_the_cdc() {
    let mut p = Pair::established(64);
    assert_eq!(p.a.write(&p.a_dev, b"hello"), Ok(5));
    assert_eq!(p.b_ring(0, 5), b"hello");
    assert_eq!(p.cdc_to_b(), cdc((0, 5), (0, 0), 0, 0));
    let c = *p.a.counters();
    assert_eq!(
        (c.bytes_tx, c.cdc_tx, c.signals_tx, c.data_moves),
        (5, 1, 1, 1)
    );
    assert_eq!(p.a.write_space(), 59);

    // b is told by exactly one signal.
    let out = p.b.poll(&p.b_dev);
    assert_eq!(
        out,
        PollOutcome {
            new_cdc: true,
            new_bytes: 5,
            ..PollOutcome::default()
        }
    );
    assert_eq!(p.b.readable_bytes(), 5);
    // Polling again finds nothing new.
    assert_eq!(p.b.poll(&p.b_dev), PollOutcome::default());
    let mut buf = [0u8; 16];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Err(ConnError::WouldBlock));
    assert_eq!(p.b.counters().bytes_rx, 5);
}

#[test]
fn nothing_to_read_before_the_first_cdc() {
    let mut p = Pair::established(64);
    assert_eq!(p.b.poll(&p.b_dev), PollOutcome::default());
    let mut buf = [0u8; 4];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Err(ConnError::WouldBlock));
    assert_eq!(p.b.read(&p.b_dev, &mut []), Ok(0));
    assert_eq!(p.a.write(&p.a_dev, b""), Ok(0));
    assert_eq!(p.a.counters().cdc_tx, 0, "an empty write sends no CDC");
}

#[test]
fn write_wraps_with_two_data_moves() {
    let mut p = Pair::established(16);
    assert_eq!(p.a.write(&p.a_dev, &[1; 10]), Ok(10));
    p.pump();
    let mut buf = [0u8; 10];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Ok(10));
    // ring 16: limit = 1; 10 unconfirmed and the peer's view of free space is 6 ≤ 8.
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (0, 10), 0, 0));
    assert_eq!(p.b.counters().cons_updates_tx, 1);
    p.pump();
    assert_eq!(p.a.write_space(), 16);

    let data: Vec<u8> = (100..112).collect();
    assert_eq!(p.a.write(&p.a_dev, &data), Ok(12));
    assert_eq!(
        p.a.counters().data_moves,
        3,
        "one move before, two for the wrap"
    );
    assert_eq!(p.b_ring(10, 6), &data[..6]);
    assert_eq!(p.b_ring(0, 6), &data[6..]);
    assert_eq!(p.cdc_to_b(), cdc((1, 6), (0, 0), 0, 0));
    p.pump();
    let mut out = [0u8; 12];
    assert_eq!(p.b.read(&p.b_dev, &mut out), Ok(12));
    assert_eq!(&out[..], &data[..]);
}

#[test]
fn write_blocked_when_wanting_at_least_the_space() {
    let mut p = Pair::established(16);
    // Wanting exactly the space sets write_blocked (≥).
    assert_eq!(p.a.write(&p.a_dev, &[7; 16]), Ok(16));
    assert_eq!(p.cdc_to_b(), cdc((1, 0), (0, 0), WB, 0));
    assert_eq!(p.a.write(&p.a_dev, b"x"), Err(ConnError::WouldBlock));
    assert_eq!(p.a.counters().would_block, 1);
    assert_eq!(p.a.counters().write_blocked, 2);
    assert_eq!(p.a.counters().cdc_tx, 1, "a refused write sends nothing");

    p.pump();
    let mut buf = [0u8; 4];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Ok(4));
    // 4 > limit (1) and the peer is write_blocked: consumer update.
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (0, 4), 0, 0));
    let out = p.a.poll(&p.a_dev);
    assert!(out.writable_again);
    assert_eq!(out.space_freed, 4);
    assert_eq!(p.a.write_space(), 4);
    // A write that fits clears write_blocked.
    assert_eq!(p.a.write(&p.a_dev, b"ab"), Ok(2));
    assert_eq!(p.cdc_to_b(), cdc((1, 2), (0, 0), 0, 0));
}

#[test]
fn consumer_update_follows_the_linux_rule() {
    // ring 1000: limit = min(100, 2304) = 100.
    let mut p = Pair::established(1000);
    let mut sink = vec![0u8; 1000];
    p.a.write(&p.a_dev, &[1; 50]).unwrap();
    p.pump();
    p.b.read(&p.b_dev, &mut sink).unwrap();
    assert_eq!(p.b.counters().cons_updates_tx, 0, "50 ≤ limit: no update");

    p.a.write(&p.a_dev, &[1; 100]).unwrap();
    p.pump();
    p.b.read(&p.b_dev, &mut sink).unwrap();
    assert_eq!(
        p.b.counters().cons_updates_tx,
        0,
        "150 > limit but the peer sees 850 free"
    );
    // The data CDC of the 100 bytes came without a signal (b had not drained the
    // first 50 as far as a knew); b's read found it through the re-read before
    // WouldBlock, which published b's consumer cursor without a signal first.
    assert_eq!(p.a.counters().signals_suppressed, 1);
    assert_eq!(p.b.counters().wait_publishes, 1);
    assert_eq!(p.b.counters().signals_tx, 0);

    // b's wait publish (cons 50; b then read the other 100) carried no signal: a has
    // not processed it and still sees 850 free.
    p.pump();
    assert_eq!(p.a.write_space(), 850);
    // b had not drained everything a knows of (cons 50 < prod 150): no signal.
    p.a.write(&p.a_dev, &[1; 400]).unwrap();
    assert_eq!(p.a.counters().signals_suppressed, 2);
    p.pump();
    // The read finds the unsignalled CDC by its re-read (publishing cons 150 first);
    // 400 > limit but the peer sees 600 free: no consumer update.
    assert_eq!(p.b.read(&p.b_dev, &mut sink), Ok(400));
    assert_eq!(p.b.counters().wait_publishes, 2);
    assert_eq!(p.b.counters().cons_updates_tx, 0, "peer sees 600 free");
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (0, 150), 0, 0));
    // Empty ring: the read publishes cons 550 and reports WouldBlock; a's next data
    // CDC is then signalled (b may sleep).
    assert_eq!(p.b.read(&p.b_dev, &mut sink), Err(ConnError::WouldBlock));
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (0, 550), 0, 0));
    p.a.poll(&p.a_dev);
    assert_eq!(p.a.write_space(), 1000);
    p.a.write(&p.a_dev, &[1; 10]).unwrap();
    assert_eq!(
        p.a.counters().signals_suppressed,
        2,
        "drained peer: signalled"
    );
    p.pump();
    assert_eq!(p.b.readable_bytes(), 10, "the signal delivered it");
}

#[test]
fn peer_request_for_a_consumer_update_is_answered() {
    let mut p = Pair::established(1000);
    p.a.write(&p.a_dev, &[1; 10]).unwrap();
    p.pump();
    let mut sink = [0u8; 10];
    p.b.read(&p.b_dev, &mut sink).unwrap();
    assert_eq!(p.b.counters().cdc_tx, 0);
    // a (hand-built) asks b for its consumer cursor.
    p.a_dev
        .move_data(
            p.b.own_token(),
            0,
            &cdc((0, 10), (0, 0), UPD_REQ, 0).to_bytes(),
            true,
        )
        .unwrap();
    let out = p.b.poll(&p.b_dev);
    assert!(out.cdc_sent);
    assert_eq!(p.b.counters().cons_upd_req_rx, 1);
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (0, 10), 0, 0));
}

#[test]
fn both_directions_carry_both_cursors() {
    let mut p = Pair::new(100, 40, DataMode::Copy);
    p.a.write(&p.a_dev, &[0xA; 30]).unwrap();
    p.b.write(&p.b_dev, &[0xB; 70]).unwrap();
    p.pump();
    let mut buf = [0u8; 100];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Ok(30));
    // b's update carries its producer cursor over a's ring (100) and cons over its own (40).
    assert_eq!(p.cdc_to_a(), cdc((0, 70), (0, 30), 0, 0));
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(70));
    assert!(buf[..70].iter().all(|b| *b == 0xB));
    assert_eq!(p.cdc_to_b(), cdc((0, 30), (0, 70), 0, 0));
    p.pump();
    assert_eq!((p.a.write_space(), p.b.write_space()), (40, 100));
}

#[test]
fn nocopy_writes_go_straight_into_the_attached_dmb() {
    let mut p = Pair::new(64, 64, DataMode::NoCopy);
    assert_eq!(p.fabric.attached_refs(), 2);
    assert_eq!(p.a.write(&p.a_dev, b"direct"), Ok(6));
    assert_eq!(p.a.counters().data_moves, 0, "no move_data for data");
    assert_eq!(p.a.counters().cdc_tx, 1);
    assert_eq!(p.b_ring(0, 6), b"direct");
    assert_eq!(p.cdc_to_b(), cdc((0, 6), (0, 0), 0, 0));
    p.pump();
    let mut buf = [0u8; 6];
    assert_eq!(p.b.read(&p.b_dev, &mut buf), Ok(6));
    assert_eq!(&buf, b"direct");
    assert_eq!(p.finish(), (0, 0), "DMBs unregistered, attachments dropped");
}

#[test]
fn zero_copy_reserve_commit_and_peek_consume() {
    let mut p = Pair::new(16, 16, DataMode::NoCopy);
    {
        let w = p.a.reserve(&p.a_dev, 10).unwrap();
        assert_eq!(w.len(), 10);
        assert_eq!(w.region_offset(), 32);
        w.write_at(0, b"0123456789").unwrap();
    }
    assert_eq!(p.a.commit(&p.a_dev, 11), Err(ConnError::InvalidArgument));
    p.a.commit(&p.a_dev, 8).unwrap();
    assert_eq!(p.cdc_to_b(), cdc((0, 8), (0, 0), 0, 0));
    assert_eq!(
        p.a.commit(&p.a_dev, 1),
        Err(ConnError::InvalidArgument),
        "reservation used"
    );
    // The window stops at the ring end: 8 left before the wrap, space 8.
    {
        let w = p.a.reserve(&p.a_dev, 100).unwrap();
        assert_eq!(w.len(), 8);
        w.write_at(0, b"ABCDEFGH").unwrap();
    }
    p.a.commit(&p.a_dev, 8).unwrap();
    assert_eq!(p.cdc_to_b(), cdc((1, 0), (0, 0), WB, 0));
    assert_eq!(p.a.reserve(&p.a_dev, 1).err(), Some(ConnError::WouldBlock));

    p.pump();
    let view = p.b.peek().unwrap();
    assert_eq!(view.len(), 16);
    let mut got = [0u8; 16];
    view.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"01234567ABCDEFGH");
    assert_eq!(p.b.consume(&p.b_dev, 17), Err(ConnError::InvalidArgument));
    p.b.consume(&p.b_dev, 16).unwrap();
    assert_eq!(p.cdc_to_a(), cdc((0, 0), (1, 0), 0, 0));
    assert_eq!(p.b.peek().unwrap().len(), 0);
    p.pump();
    assert_eq!(p.a.write_space(), 16);
}

#[test]
fn reserve_needs_nocopy() {
    let mut p = Pair::established(64);
    assert_eq!(
        p.a.reserve(&p.a_dev, 4).err(),
        Some(ConnError::NoCopyUnavailable)
    );
    assert_eq!(p.a.commit(&p.a_dev, 0), Err(ConnError::InvalidArgument));
}

#[test]
fn linux_mode_single_device_talks_to_itself() {
    let dev = LoopbackIsm::new(99);
    let me = dev.local_gid();
    let a_own = dev.register_dmb(96, me).unwrap();
    let b_own = dev.register_dmb(64, me).unwrap();
    let (a_tok, b_tok) = (a_own.token, b_own.token);
    let mut a = SmcdConn::new(&dev, a_own, b_tok, 64, DataMode::Copy).unwrap();
    let mut b = SmcdConn::new(&dev, b_own, a_tok, 96, DataMode::NoCopy).unwrap();
    a.write(&dev, b"ping").unwrap();
    b.write(&dev, b"pong!").unwrap();
    let mut events = Vec::new();
    dev.poll_events(&mut |e| events.push(e));
    assert_eq!(events.len(), 2);
    a.poll(&dev);
    b.poll(&dev);
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&dev, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(a.read(&dev, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"pong!");
}

#[test]
fn construction_rejects_tiny_dmbs_and_bad_tokens() {
    let p = Pair::established(64);
    let own = p.a_dev.register_dmb(32, p.b_dev.local_gid()).unwrap();
    assert_eq!(
        SmcdConn::new(&p.a_dev, own, p.b.own_token(), 64, DataMode::Copy).err(),
        Some(ConnError::InvalidArgument)
    );
    let own = p.a_dev.register_dmb(64, p.b_dev.local_gid()).unwrap();
    assert_eq!(
        SmcdConn::new(&p.a_dev, own.clone(), p.b.own_token(), 32, DataMode::Copy).err(),
        Some(ConnError::InvalidArgument)
    );
    assert_eq!(
        SmcdConn::new(&p.a_dev, own.clone(), bogus_token(), 64, DataMode::NoCopy).err(),
        Some(ConnError::Device(smcd::ism::IsmError::InvalidToken))
    );
    // Declared peer DMB larger than the attached memory: refused, attachment dropped.
    assert_eq!(
        SmcdConn::new(&p.a_dev, own, p.b.own_token(), 4096, DataMode::NoCopy).err(),
        Some(ConnError::InvalidArgument)
    );
    assert_eq!(p.fabric.attached_refs(), 0);
}

#[test]
fn failed_move_data_aborts_locally() {
    let mut p = Pair::established(64);
    // b's DMB disappears under a (b unregisters it): the next write fails.
    let b_token = p.b.own_token();
    p.b_dev.unregister_dmb(b_token).unwrap();
    let err = p.a.write(&p.a_dev, b"lost").unwrap_err();
    assert_eq!(
        err,
        ConnError::ConnectionReset(smcd::conn::AbortReason::MoveData(
            smcd::ism::IsmError::InvalidToken
        ))
    );
    assert_eq!(p.a.state(), smcd::conn::State::Closed);
    assert_eq!(p.a.write(&p.a_dev, b"x"), Err(err));
}
