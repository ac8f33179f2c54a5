//! Close and abort: one test per row of the Linux state table (protocol-reference §5).
//!
//! `a` is the connection under test; `b` plays the peer with its real operations, so
//! every flag `a` receives is one a correct peer sends.

mod conn_support;

use conn_support::*;
use smcd::conn::{AbortReason, ConnError, State};
use smcd::wire::cdc::ConnStateFlags;

fn active() -> Pair {
    Pair::established(64)
}

/// a did shutdown(WR) only.
fn peer_close_wait1() -> Pair {
    let mut p = active();
    p.a.shutdown_write(&p.a_dev).unwrap();
    assert_eq!(p.a.state(), State::PeerCloseWait1);
    p
}

/// a closed (final close sent, application released).
fn peer_close_wait1_closed() -> Pair {
    let mut p = active();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.a.state(), State::PeerCloseWait1);
    p
}

fn peer_close_wait2() -> Pair {
    let mut p = peer_close_wait1();
    p.b.shutdown_write(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::PeerCloseWait2);
    p
}

/// The peer did shutdown(WR).
fn app_close_wait1() -> Pair {
    let mut p = active();
    p.b.shutdown_write(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppCloseWait1);
    p
}

fn app_close_wait2() -> Pair {
    let mut p = app_close_wait1();
    p.a.shutdown_write(&p.a_dev).unwrap();
    assert_eq!(p.a.state(), State::AppCloseWait2);
    p
}

fn app_fin_close_wait() -> Pair {
    let mut p = peer_close_wait1();
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppFinCloseWait);
    p
}

fn peer_fin_close_wait() -> Pair {
    let mut p = app_close_wait1();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.a.state(), State::PeerFinCloseWait);
    p
}

fn process_abort() -> Pair {
    let mut p = active();
    p.b.abort(&p.b_dev);
    p.pump();
    assert_eq!(p.a.state(), State::ProcessAbort);
    p
}

fn flags_to_b(p: &Pair) -> u8 {
    p.cdc_to_b().conn_flags.bits()
}

fn reset(reason: AbortReason) -> Result<usize, ConnError> {
    Err(ConnError::ConnectionReset(reason))
}

#[test]
fn state_names_are_linux_names() {
    let names = [
        (State::Active, "ACTIVE"),
        (State::PeerCloseWait1, "PEERCLOSEWAIT1"),
        (State::PeerCloseWait2, "PEERCLOSEWAIT2"),
        (State::AppCloseWait1, "APPCLOSEWAIT1"),
        (State::AppCloseWait2, "APPCLOSEWAIT2"),
        (State::AppFinCloseWait, "APPFINCLOSEWAIT"),
        (State::PeerFinCloseWait, "PEERFINCLOSEWAIT"),
        (State::PeerAbortWait, "PEERABORTWAIT"),
        (State::ProcessAbort, "PROCESSABORT"),
        (State::Closed, "CLOSED"),
    ];
    for (state, name) in names {
        assert_eq!(state.to_string(), name);
    }
}

#[test]
fn active_app_close_sends_closed() {
    let mut p = active();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.cdc_to_b(), cdc((0, 0), (0, 0), 0, CLOSED));
    assert_eq!(p.a.state(), State::PeerCloseWait1);
    assert_eq!(p.a.write(&p.a_dev, b"x"), Err(ConnError::Closed));
    let mut buf = [0u8; 1];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Err(ConnError::Closed));
    // Idempotent: no second CDC.
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.a.counters().cdc_tx, 1);
}

#[test]
fn active_app_close_with_unread_data_sends_abort() {
    let mut p = active();
    p.b.write(&p.b_dev, b"unread").unwrap();
    p.pump();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), ABORT);
    assert_eq!(p.a.state(), State::PeerCloseWait1);
    p.pump();
    assert_eq!(p.b.state(), State::ProcessAbort);
    assert_eq!(p.b.write(&p.b_dev, b"x"), reset(AbortReason::PeerAbort));
    // The peer's application closes: abort CDC back; a had closed: CLOSED.
    p.b.close(&p.b_dev).unwrap();
    assert_eq!(p.b.state(), State::Closed);
    assert_eq!(p.cdc_to_a().conn_flags.bits(), ABORT);
    p.pump();
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn active_shutdown_sends_done_writing() {
    let mut p = active();
    p.a.write(&p.a_dev, b"last").unwrap();
    p.a.shutdown_write(&p.a_dev).unwrap();
    assert_eq!(p.cdc_to_b(), cdc((0, 4), (0, 0), 0, DONE));
    assert_eq!(p.a.state(), State::PeerCloseWait1);
    assert_eq!(p.a.write(&p.a_dev, b"more"), Err(ConnError::WriteShutdown));
    // Idempotent.
    p.a.shutdown_write(&p.a_dev).unwrap();
    assert_eq!(p.a.counters().cdc_tx, 2);
    // Reading still works after our shutdown.
    p.b.write(&p.b_dev, b"reply").unwrap();
    p.pump();
    let mut buf = [0u8; 8];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(5));
}

#[test]
fn active_rx_done_writing_goes_to_appclosewait1_and_reads_hit_eof_after_data() {
    let mut p = active();
    p.b.write(&p.b_dev, b"tail").unwrap();
    p.b.shutdown_write(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppCloseWait1);
    assert!(!p.a.is_eof(), "data before the shutdown is still unread");
    let mut buf = [0u8; 8];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"tail");
    assert!(p.a.is_eof());
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(0));
    // Half-close: a may still write.
    assert_eq!(p.a.write(&p.a_dev, b"ok"), Ok(2));
}

#[test]
fn active_rx_closed_goes_to_appclosewait1_and_forbids_writing() {
    let mut p = active();
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppCloseWait1);
    assert_eq!(p.a.write(&p.a_dev, b"x"), Err(ConnError::PeerClosed));
    let mut buf = [0u8; 1];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), Ok(0));
}

#[test]
fn peerclosewait1_rx_done_writing_goes_to_peerclosewait2() {
    let _ = peer_close_wait2();
}

#[test]
fn peerclosewait1_rx_closed_after_shutdown_only_goes_to_appfinclosewait() {
    let _ = app_fin_close_wait();
}

#[test]
fn peerclosewait2_rx_closed_after_shutdown_only_goes_to_appfinclosewait() {
    let mut p = peer_close_wait2();
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppFinCloseWait);
}

#[test]
fn peerclosewait1_rx_closed_after_app_close_goes_to_closed() {
    let mut p = peer_close_wait1_closed();
    p.pump();
    assert_eq!(p.b.state(), State::AppCloseWait1);
    p.b.close(&p.b_dev).unwrap();
    assert_eq!(p.b.state(), State::Closed, "b saw a's close before its own");
    p.pump();
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(p.finish(), (0, 0));
}

#[test]
fn peerclosewait_app_close_after_shutdown_sends_final_close_and_keeps_state() {
    let mut p = peer_close_wait1();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), DONE | CLOSED);
    assert_eq!(p.a.state(), State::PeerCloseWait1);

    let mut p = peer_close_wait2();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), DONE | CLOSED);
    assert_eq!(p.a.state(), State::PeerCloseWait2);
    // The peer closes too: CLOSED.
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn appclosewait1_shutdown_sends_done_writing() {
    let p = app_close_wait2();
    assert_eq!(flags_to_b(&p), DONE);
}

#[test]
fn appclosewait_app_close_waits_for_the_peers_close() {
    let mut p = app_close_wait1();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), CLOSED);
    assert_eq!(p.a.state(), State::PeerFinCloseWait);

    let mut p = app_close_wait2();
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), DONE | CLOSED);
    assert_eq!(p.a.state(), State::PeerFinCloseWait);
}

#[test]
fn appclosewait_app_close_after_peer_closed_goes_to_closed() {
    let mut p = active();
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    assert_eq!(p.a.state(), State::AppCloseWait1);
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), CLOSED);
    assert_eq!(p.a.state(), State::Closed);
    p.pump();
    assert_eq!(p.b.state(), State::Closed);
    assert_eq!(p.finish(), (0, 0));
}

#[test]
fn peerfinclosewait_rx_closed_goes_to_closed() {
    let mut p = peer_fin_close_wait();
    p.pump();
    // b did shutdown and now sees a's close: APPFINCLOSEWAIT; its close finishes both.
    assert_eq!(p.b.state(), State::AppFinCloseWait);
    p.b.close(&p.b_dev).unwrap();
    assert_eq!(p.b.state(), State::Closed);
    assert_eq!(p.cdc_to_a().conn_flags.bits(), DONE | CLOSED);
    p.pump();
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn appfinclosewait_app_close_sends_final_close_once() {
    let mut p = app_fin_close_wait();
    assert_eq!(flags_to_b(&p), DONE);
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(flags_to_b(&p), DONE | CLOSED);
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn rx_abort_in_active_appclosewait1_appfinclosewait_goes_to_processabort() {
    for mut p in [active(), app_close_wait1(), app_fin_close_wait()] {
        p.b.abort(&p.b_dev);
        p.pump();
        assert_eq!(p.a.state(), State::ProcessAbort);
        assert_eq!(p.a.abort_reason(), Some(AbortReason::PeerAbort));
        let mut buf = [0u8; 4];
        assert_eq!(p.a.read(&p.a_dev, &mut buf), reset(AbortReason::PeerAbort));
        assert_eq!(p.a.write(&p.a_dev, b"x"), reset(AbortReason::PeerAbort));
    }
}

#[test]
fn rx_abort_in_peerclosewait_depends_on_app_close() {
    for mut p in [peer_close_wait1(), peer_close_wait2()] {
        p.b.abort(&p.b_dev);
        p.pump();
        assert_eq!(
            p.a.state(),
            State::ProcessAbort,
            "only shutdown(WR) was done"
        );
    }
    let mut p = peer_close_wait1_closed();
    p.b.abort(&p.b_dev);
    p.pump();
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn rx_abort_in_appclosewait2_and_peerfinclosewait_goes_to_closed() {
    for mut p in [app_close_wait2(), peer_fin_close_wait()] {
        p.b.abort(&p.b_dev);
        p.pump();
        assert_eq!(p.a.state(), State::Closed);
    }
}

#[test]
fn processabort_app_close_sends_abort() {
    let mut p = process_abort();
    let sent = p.a.counters().cdc_tx;
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(p.a.counters().cdc_tx, sent + 1);
    assert!(p
        .cdc_to_b()
        .conn_flags
        .contains(ConnStateFlags::PEER_CONN_ABORT));
}

#[test]
fn local_abort_tells_the_peer_and_closes() {
    let mut p = active();
    p.b.write(&p.b_dev, b"pending").unwrap();
    p.pump();
    p.a.abort(&p.a_dev);
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(p.a.abort_reason(), Some(AbortReason::Local));
    assert_eq!(flags_to_b(&p), ABORT);
    let mut buf = [0u8; 8];
    assert_eq!(p.a.read(&p.a_dev, &mut buf), reset(AbortReason::Local));
    p.pump();
    assert_eq!(p.b.state(), State::ProcessAbort);
    // Abort is final: a second abort or a close writes nothing.
    let sent = p.a.counters().cdc_tx;
    p.a.abort(&p.a_dev);
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(p.a.counters().cdc_tx, sent);
}

#[test]
fn peer_gone_aborts_without_writing() {
    let mut p = active();
    p.a.write(&p.a_dev, b"before").unwrap();
    let sent = p.a.counters().cdc_tx;
    p.a.peer_gone();
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(p.a.write(&p.a_dev, b"x"), reset(AbortReason::PeerGone));
    p.a.abort(&p.a_dev);
    p.a.close(&p.a_dev).unwrap();
    assert_eq!(
        p.a.counters().cdc_tx,
        sent,
        "never writes to a departed peer"
    );
    assert_eq!(flags_to_b(&p), 0);
}

#[test]
fn peer_gone_event_from_the_fabric() {
    let mut p = active();
    let b_gid = smcd::ism::IsmDevice::local_gid(&p.b_dev);
    assert!(p.fabric.remove(b_gid));
    let mut events = Vec::new();
    smcd::ism::IsmDevice::poll_events(&p.a_dev, &mut |e| events.push(e));
    assert_eq!(events, vec![smcd::ism::IsmEvent::PeerGone { gid: b_gid }]);
    p.a.peer_gone();
    assert_eq!(p.a.abort_reason(), Some(AbortReason::PeerGone));
}
