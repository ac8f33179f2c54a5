//! Hostile peers: impossible CDCs abort the connection with a precise reason, and the
//! connection never touches memory outside the DMBs.
//!
//! `b_dev` plays a peer that scribbles arbitrary CDCs into `a`'s DMB. The loopback
//! device and `HeapMemory` bounds-check every access, so an out-of-bounds access by `a`
//! would surface as `AbortReason::ShmAccess` / `MoveData(OutOfBounds)`; no test here may
//! end with either.

mod conn_support;

use conn_support::*;
use proptest::prelude::*;
use smcd::conn::{AbortReason, ConnError, DataMode, State};
use smcd::cursor::{Cursor, CursorError, RingSize};
use smcd::ism::IsmDevice;
use smcd::wire::cdc::CdcRepr;

fn ring(n: u32) -> RingSize {
    RingSize::new(n).unwrap()
}

/// Injects `repr` into a's DMB, polls a, and returns a's abort reason.
fn inject(p: &mut Pair, repr: CdcRepr) -> Option<AbortReason> {
    p.inject_to_a(&repr.to_bytes());
    p.a.poll(&p.a_dev);
    p.a.abort_reason()
}

fn assert_aborted_cleanly(p: &Pair, reason: AbortReason) {
    assert_eq!(p.a.abort_reason(), Some(reason));
    assert_eq!(p.a.state(), State::Closed);
    // a told the peer with an abort CDC.
    assert_eq!(p.cdc_to_b().conn_flags.bits(), ABORT);
}

#[test]
fn unknown_type_byte_aborts() {
    let mut p = Pair::established(64);
    let mut bytes = cdc((0, 3), (0, 0), 0, 0).to_bytes();
    bytes[0] = 0xFF;
    p.inject_to_a(&bytes);
    p.a.poll(&p.a_dev);
    assert_aborted_cleanly(&p, AbortReason::UnknownCdcType(0xFF));
    let mut buf = [0u8; 4];
    assert_eq!(
        p.a.read(&p.a_dev, &mut buf),
        Err(ConnError::ConnectionReset(AbortReason::UnknownCdcType(
            0xFF
        )))
    );
}

#[test]
fn zero_type_is_nothing_before_the_first_cdc_and_an_error_after() {
    let mut p = Pair::established(64);
    p.inject_to_a(&[0; 32]);
    p.a.poll(&p.a_dev);
    assert_eq!(p.a.abort_reason(), None);
    assert_eq!(inject(&mut p, cdc((0, 1), (0, 0), 0, 0)), None);
    p.inject_to_a(&[0; 32]);
    p.a.poll(&p.a_dev);
    assert_aborted_cleanly(&p, AbortReason::UnknownCdcType(0));
}

#[test]
fn reserved_bytes_are_ignored() {
    let mut p = Pair::established(64);
    let mut bytes = cdc((0, 3), (0, 0), 0x07, 0x1F).to_bytes();
    bytes[1] = 0x11;
    bytes[14] = 0x22;
    bytes[30] = 0x33;
    p.inject_to_a(&bytes);
    p.a.poll(&p.a_dev);
    assert_eq!(p.a.abort_reason(), None);
    assert_eq!(p.a.readable_bytes(), 3);
}

#[test]
fn producer_count_outside_the_ring_aborts() {
    let mut p = Pair::established(64);
    let r = inject(&mut p, cdc((0, 64), (0, 0), 0, 0));
    assert_eq!(
        r,
        Some(AbortReason::BadProducerCursor(
            CursorError::CountOutOfRange {
                cursor: Cursor::new(0, 64),
                ring: ring(64)
            }
        ))
    );
    assert_aborted_cleanly(&p, r.unwrap());
}

#[test]
fn producer_moving_backwards_aborts() {
    let mut p = Pair::established(64);
    assert_eq!(inject(&mut p, cdc((0, 10), (0, 0), 0, 0)), None);
    assert_eq!(
        inject(&mut p, cdc((0, 5), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(CursorError::Backwards {
            old: Cursor::new(0, 10),
            new: Cursor::new(0, 5)
        }))
    );
    let mut p = Pair::established(64);
    assert_eq!(
        inject(&mut p, cdc((2, 5), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(CursorError::Backwards {
            old: Cursor::new(0, 0),
            new: Cursor::new(2, 5)
        })),
        "two wraps ahead is not representable"
    );
    let mut p = Pair::established(64);
    assert!(matches!(
        inject(&mut p, cdc((u16::MAX, 5), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(
            CursorError::Backwards { .. }
        ))
    ));
}

#[test]
fn producer_claiming_more_than_a_ring_aborts() {
    let mut p = Pair::established(64);
    assert_eq!(
        inject(&mut p, cdc((1, 1), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(CursorError::TooFar {
            old: Cursor::new(0, 0),
            new: Cursor::new(1, 1),
            distance: 65,
            limit: 64
        }))
    );
}

#[test]
fn producer_overrunning_the_advertised_space_aborts() {
    let mut p = Pair::established(64);
    assert_eq!(inject(&mut p, cdc((0, 60), (0, 0), 0, 0)), None);
    // Exactly full is fine.
    assert_eq!(inject(&mut p, cdc((1, 0), (0, 0), 0, 0)), None);
    assert_eq!(p.a.readable_bytes(), 64);
    assert_eq!(
        inject(&mut p, cdc((1, 1), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(CursorError::TooFar {
            old: Cursor::new(1, 0),
            new: Cursor::new(1, 1),
            distance: 1,
            limit: 0
        }))
    );
}

#[test]
fn consumed_but_unconfirmed_space_is_not_free_for_the_peer() {
    // ring 1000: limit 100; 50 bytes consumed stay unconfirmed, so the peer, which
    // has not been told, may not reuse them: only 10 bytes are free in its view.
    let mut p = Pair::established(1000);
    assert_eq!(inject(&mut p, cdc((0, 990), (0, 0), 0, 0)), None);
    let mut buf = [0u8; 50];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(50));
    assert_eq!(p.a.counters().cdc_tx, 0, "no consumer update yet");
    assert_eq!(
        inject(&mut p, cdc((1, 1), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(CursorError::TooFar {
            old: Cursor::new(0, 990),
            new: Cursor::new(1, 1),
            distance: 11,
            limit: 10
        }))
    );
}

#[test]
fn consumer_cursor_outside_the_peer_ring_aborts() {
    let mut p = Pair::new(64, 40, DataMode::Copy);
    assert_eq!(
        inject(&mut p, cdc((0, 0), (0, 40), 0, 0)),
        Some(AbortReason::BadConsumerCursor(
            CursorError::CountOutOfRange {
                cursor: Cursor::new(0, 40),
                ring: ring(40)
            }
        ))
    );
}

#[test]
fn consumer_acknowledging_more_than_was_sent_aborts() {
    let mut p = Pair::established(64);
    p.a.write(&p.a_dev, b"12345").unwrap();
    assert_eq!(
        inject(&mut p, cdc((0, 0), (0, 6), 0, 0)),
        Some(AbortReason::BadConsumerCursor(CursorError::TooFar {
            old: Cursor::new(0, 0),
            new: Cursor::new(0, 6),
            distance: 6,
            limit: 5
        }))
    );
}

#[test]
fn consumer_moving_backwards_aborts() {
    let mut p = Pair::established(64);
    p.a.write(&p.a_dev, b"12345").unwrap();
    assert_eq!(inject(&mut p, cdc((0, 0), (0, 5), 0, 0)), None);
    assert_eq!(p.a.write_space(), 64);
    assert_eq!(
        inject(&mut p, cdc((0, 0), (0, 4), 0, 0)),
        Some(AbortReason::BadConsumerCursor(CursorError::Backwards {
            old: Cursor::new(0, 5),
            new: Cursor::new(0, 4)
        }))
    );
}

#[test]
fn data_after_end_of_stream_aborts() {
    let mut p = Pair::established(64);
    assert_eq!(inject(&mut p, cdc((0, 3), (0, 0), 0, DONE)), None);
    assert_eq!(p.a.state(), State::AppCloseWait1);
    assert_eq!(
        inject(&mut p, cdc((0, 4), (0, 0), 0, DONE)),
        Some(AbortReason::DataAfterEndOfStream)
    );
    // A peer that "un-closes" is ignored: flags only accumulate.
    let mut p = Pair::established(64);
    assert_eq!(inject(&mut p, cdc((0, 0), (0, 0), 0, CLOSED)), None);
    assert_eq!(inject(&mut p, cdc((0, 0), (0, 0), 0, 0)), None);
    assert_eq!(p.a.write(&p.a_dev, b"x"), Err(ConnError::PeerClosed));
}

#[test]
fn our_abort_cdc_goes_nowhere_when_the_peer_dmb_vanished() {
    let mut p = Pair::established(64);
    p.b_dev.unregister_dmb(p.b.own_token()).unwrap();
    assert_eq!(
        inject(&mut p, cdc((0, 64), (0, 0), 0, 0)),
        Some(AbortReason::BadProducerCursor(
            CursorError::CountOutOfRange {
                cursor: Cursor::new(0, 64),
                ring: ring(64)
            }
        ))
    );
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(
        p.a.counters().cdc_tx,
        0,
        "the best-effort abort CDC failed quietly"
    );
}

fn arbitrary_cdc() -> impl Strategy<Value = [u8; 32]> {
    (any::<[u8; 32]>(), any::<bool>()).prop_map(|(mut b, typed)| {
        if typed {
            b[0] = 0xFE;
        }
        b
    })
}

/// Small cursor values near the ring sizes, to hit the interesting boundaries often.
fn near_cursor(ring: u32) -> impl Strategy<Value = (u16, u32)> {
    (
        prop_oneof![Just(0u16), Just(1u16), Just(2u16), any::<u16>()],
        prop_oneof![0..ring + 2, Just(ring - 1), Just(ring), any::<u32>()],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary CDC bytes after some real traffic: the connection either stays
    /// consistent or aborts with a cursor/type/flag reason; never an out-of-bounds access,
    /// never a panic, and every byte it reports readable can be read.
    #[test]
    fn arbitrary_cdc_bytes_never_break_the_connection(
        rings in (33usize..300, 33usize..300),
        sent in 0usize..200,
        received in 0usize..200,
        cdcs in prop::collection::vec(arbitrary_cdc(), 1..6),
        nocopy in any::<bool>(),
    ) {
        let mode = if nocopy { DataMode::NoCopy } else { DataMode::Copy };
        let mut p = Pair::new(rings.0, rings.1, mode);
        let _ = p.a.write(&p.a_dev, &vec![1u8; sent]);
        let _ = p.b.write(&p.b_dev, &vec![2u8; received]);
        p.pump();
        for bytes in cdcs {
            p.inject_to_a(&bytes);
            p.a.poll(&p.a_dev);
            check_consistent(&mut p)?;
        }
    }

    /// Typed CDCs with cursors near the ring boundaries.
    #[test]
    fn boundary_cursors_never_break_the_connection(
        ring_a in 33u32..200,
        ring_b in 33u32..200,
        sent in 0usize..200,
        cursors in prop::collection::vec(
            (near_cursor(200), near_cursor(200), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let mut p = Pair::new(ring_a as usize, ring_b as usize, DataMode::Copy);
        let _ = p.a.write(&p.a_dev, &vec![1u8; sent]);
        for (prod, cons, pf, cf) in cursors {
            let repr = cdc(prod, cons, pf, cf);
            p.inject_to_a(&repr.to_bytes());
            p.a.poll(&p.a_dev);
            check_consistent(&mut p)?;
        }
    }
}

fn check_consistent(p: &mut Pair) -> Result<(), TestCaseError> {
    match p.a.abort_reason() {
        Some(AbortReason::ShmAccess(e)) => {
            return Err(TestCaseError::fail(format!("out-of-bounds access: {e}")))
        }
        Some(AbortReason::MoveData(e)) => {
            return Err(TestCaseError::fail(format!("move_data failed: {e}")))
        }
        Some(_) => {
            prop_assert!(matches!(p.a.state(), State::Closed | State::ProcessAbort));
            return Ok(());
        }
        None => {}
    }
    prop_assert!(p.a.readable_bytes() <= p.a.own_ring().get());
    prop_assert!(p.a.write_space() <= p.a.peer_ring().get());
    let readable = p.a.readable_bytes() as usize;
    let mut buf = vec![0u8; readable + 1];
    if readable > 0 {
        let n = p.a.read(&p.a_dev, &mut buf);
        prop_assert_eq!(n, Ok(readable));
    }
    Ok(())
}
