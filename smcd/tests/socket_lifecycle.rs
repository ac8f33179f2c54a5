//! Socket life cycle: CLC timeouts and protocol errors (§1), close and abort in each
//! direction (§5), end of stream after the remaining data, peer loss (§6.3),
//! zero-copy passthrough and counters.

mod sim_support;

use core::time::Duration;

use sim_support::*;
use smcd::conn::{AbortReason, ConnError, State};
use smcd::ism::IsmDevice;
use smcd::socket::{SocketError, SocketState, Transport};
use smcd::stream::{ByteStream, MemPipe, StreamError};
use smcd::wire::clc::{ClcMessage, MessageType};

const T0: Duration = Duration::from_secs(10);
const JUST_BEFORE_6S: Duration = Duration::from_millis(16_000 - 1);
const AT_6S: Duration = Duration::from_secs(16);

/// Reads one whole CLC message from a raw pipe end (bounded).
fn read_clc(raw: &mut MemPipe) -> ClcMessage {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match raw.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!(
                "CLC message incomplete after {} bytes: {other:?}",
                buf.len()
            ),
        }
        if buf.len() >= 8 {
            let len = usize::from(u16::from_be_bytes([buf[5], buf[6]]));
            if buf.len() == len {
                return ClcMessage::parse(&buf).expect("valid CLC message");
            }
        }
    }
}

#[test]
fn server_fails_when_no_proposal_arrives_within_6_s() {
    let (_, mut server, _fabric) = two_peers(1, 65536);
    let (_raw, b) = MemPipe::pair(4096, true);
    let s = server.accept(b, T0);
    server.poll(JUST_BEFORE_6S);
    assert_eq!(server.state(s), SocketState::Handshaking);
    server.poll(AT_6S);
    assert_eq!(server.state(s), SocketState::Failed);
    assert_eq!(server.error(s), Some(SocketError::TimedOut));
    assert_eq!(server.read(s, &mut [0u8; 4]), Err(SocketError::TimedOut));
    assert_eq!(server.counters().handshakes_failed, 1);
    server.close(s, AT_6S).unwrap();
    server.poll(AT_6S);
    assert_eq!(server.socket_count(), 0);
}

#[test]
fn client_fails_when_no_accept_arrives_within_6_s() {
    let (mut client, _, _fabric) = two_peers(2, 65536);
    let (a, mut raw) = MemPipe::pair(4096, true);
    let c = client.connect(a, T0);
    client.poll(T0);
    // The peer sees a complete Proposal, and nothing else.
    assert_eq!(read_clc(&mut raw).message_type(), MessageType::Proposal);
    assert_eq!(raw.read(&mut [0u8; 1]), Err(StreamError::WouldBlock));
    client.poll(JUST_BEFORE_6S);
    assert_eq!(client.state(c), SocketState::Handshaking);
    assert_eq!(client.write(c, b"x"), Err(SocketError::WouldBlock));
    client.poll(AT_6S);
    // §1: an Accept timeout fails the connection (no fallback).
    assert_eq!(client.error(c), Some(SocketError::TimedOut));
    assert_eq!(client.transport(c), None);
}

#[test]
fn server_times_out_waiting_for_confirm_and_frees_its_dmb() {
    // Capture a real Proposal from a client stack, replay it from a raw end.
    let (mut client, mut server, fabric) = two_peers(3, 65536);
    let (a, mut capture) = MemPipe::pair(4096, true);
    let _c = client.connect(a, T0);
    client.poll(T0);
    let mut proposal = vec![0u8; 4096];
    let n = capture.read(&mut proposal).unwrap();
    let (mut raw, b) = MemPipe::pair(4096, true);
    let s = server.accept(b, T0);
    raw.write(&proposal[..n]).unwrap();
    server.poll(T0);
    assert_eq!(read_clc(&mut raw).message_type(), MessageType::Accept);
    assert_eq!(server.devices()[0].registered_dmbs(), 1);
    server.poll(JUST_BEFORE_6S);
    assert_eq!(server.state(s), SocketState::Handshaking);
    server.poll(AT_6S);
    assert_eq!(server.error(s), Some(SocketError::TimedOut));
    // The failed first contact takes its link group and DMB with it.
    assert_eq!(server.link_groups().len(), 0);
    assert_eq!(server.devices()[0].registered_dmbs(), 0);
    drop(client);
    assert_eq!(fabric.registered_dmbs(), 0);
}

#[test]
fn garbage_instead_of_a_proposal_fails_the_connection() {
    let (_, mut server, _fabric) = two_peers(4, 65536);
    let (mut raw, b) = MemPipe::pair(4096, true);
    let s = server.accept(b, T0);
    raw.write(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    server.poll(T0);
    assert!(
        matches!(server.error(s), Some(SocketError::Protocol(_))),
        "{:?}",
        server.error(s)
    );
    // The stream was closed: the peer sees end of stream.
    assert_eq!(raw.read(&mut [0u8; 8]), Ok(0));
}

#[test]
fn unexpected_message_type_fails_the_connection() {
    // A client that receives a Proposal where an Accept belongs.
    let (mut client, _, _fabric) = two_peers(5, 65536);
    let (a, mut raw) = MemPipe::pair(4096, true);
    let c = client.connect(a, T0);
    client.poll(T0);
    let proposal = read_clc(&mut raw);
    let mut bytes = vec![0u8; proposal.buffer_len()];
    proposal.emit(&mut bytes).unwrap();
    raw.write(&bytes).unwrap();
    client.poll(T0);
    assert_eq!(client.error(c), Some(SocketError::UnexpectedMessage));
}

#[test]
fn stream_eof_during_handshake_fails() {
    let (_, mut server, _fabric) = two_peers(6, 65536);
    let (mut raw, b) = MemPipe::pair(4096, true);
    let s = server.accept(b, T0);
    raw.write(&[0xE2, 0xD4, 0xC3, 0xD9]).unwrap();
    raw.close().unwrap();
    server.poll(T0);
    assert_eq!(server.error(s), Some(SocketError::HandshakeEof));
}

#[test]
fn eof_after_the_remaining_data_then_close_from_the_server() {
    let (mut client, mut server, _fabric) = two_peers(7, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    write_all(&mut server, s, &mut client, b"last words", T0);
    server.close(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    // The client still reads what was sent before the close, then EOF.
    assert_eq!(client.conn_state(c), Some(State::AppCloseWait1));
    assert_eq!(read_to_eof(&mut client, c, &mut server, T0), b"last words");
    assert_eq!(client.read(c, &mut [0u8; 4]), Ok(0));
    // Writing after the peer closed is refused.
    assert_eq!(
        client.write(c, b"late"),
        Err(SocketError::Conn(ConnError::PeerClosed))
    );
    client.close(c, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count() + server.socket_count(), 0);
    assert_eq!(client.counters().aborts + server.counters().aborts, 0);
}

#[test]
fn shutdown_in_both_directions_then_close() {
    let (mut client, mut server, _fabric) = two_peers(8, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    client.shutdown(c).unwrap();
    assert_eq!(
        client.write(c, b"no"),
        Err(SocketError::Conn(ConnError::WriteShutdown))
    );
    settle(&mut client, &mut server, T0);
    assert_eq!(server.read(s, &mut [0u8; 4]), Ok(0));
    // The other direction still works.
    write_all(&mut server, s, &mut client, b"still open", T0);
    server.shutdown(s).unwrap();
    assert_eq!(read_to_eof(&mut client, c, &mut server, T0), b"still open");
    server.close(s, T0).unwrap();
    client.close(c, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count() + server.socket_count(), 0);
}

#[test]
fn abort_from_the_client_resets_the_server() {
    let (mut client, mut server, fabric) = two_peers(9, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    write_all(&mut client, c, &mut server, b"unread", T0);
    client.abort(c, T0).unwrap();
    assert_eq!(client.state(c), SocketState::Closed);
    settle(&mut client, &mut server, T0);
    assert_eq!(server.conn_state(s), Some(State::ProcessAbort));
    assert_eq!(
        server.read(s, &mut [0u8; 16]),
        Err(SocketError::Conn(ConnError::ConnectionReset(
            AbortReason::PeerAbort
        )))
    );
    assert!(server.readable(s));
    server.close(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count() + server.socket_count(), 0);
    assert_eq!(client.counters().aborts, 1);
    assert_eq!(server.counters().aborts, 1);
    // Both DMBs went back to their (still active) groups.
    assert_eq!(fabric.registered_dmbs(), 2);
}

#[test]
fn abort_from_the_server_resets_the_client() {
    let (mut client, mut server, _fabric) = two_peers(10, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    server.abort(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(
        client.write(c, b"x"),
        Err(SocketError::Conn(ConnError::ConnectionReset(
            AbortReason::PeerAbort
        )))
    );
    client.close(c, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count() + server.socket_count(), 0);
}

#[test]
fn close_with_unread_data_sends_abort() {
    // §5: a final close with unread data in the own ring is an abort.
    let (mut client, mut server, _fabric) = two_peers(11, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    write_all(&mut client, c, &mut server, b"never read", T0);
    settle(&mut client, &mut server, T0);
    server.close(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    assert!(matches!(
        client.read(c, &mut [0u8; 4]),
        Err(SocketError::Conn(ConnError::ConnectionReset(
            AbortReason::PeerAbort
        )))
    ));
}

#[test]
fn peer_gone_mid_stream_aborts_and_frees_dmbs() {
    let (mut client, mut server, fabric) = two_peers(12, 65536);
    let (c1, _s1) = connect(&mut client, &mut server, true, T0);
    let (c2, _s2) = connect(&mut client, &mut server, true, T0);
    write_all(&mut client, c1, &mut server, &[7u8; 30_000], T0);
    assert_eq!(client.devices()[0].registered_dmbs(), 2);
    // The server's VM dies: its device leaves the fabric.
    let server_gid = server.devices()[0].local_gid();
    assert!(fabric.remove(server_gid));
    client.poll(T0);
    for c in [c1, c2] {
        assert_eq!(client.state(c), SocketState::Failed);
        assert_eq!(
            client.read(c, &mut [0u8; 8]),
            Err(SocketError::Conn(ConnError::ConnectionReset(
                AbortReason::PeerGone
            )))
        );
        assert!(client.write(c, b"x").is_err());
    }
    // Connections aborted locally, their DMBs unregistered, the group gone.
    assert_eq!(client.devices()[0].registered_dmbs(), 0);
    assert_eq!(client.link_groups().len(), 0);
    let counters = client.counters();
    assert_eq!(counters.aborts, 2);
    assert_eq!(counters.link_groups_terminated, 1);
    client.close(c1, T0).unwrap();
    client.close(c2, T0).unwrap();
    client.poll(T0);
    assert_eq!(client.socket_count(), 0);
}

#[test]
fn zero_copy_reserve_commit_peek_consume() {
    let (mut client, mut server, _fabric) = two_peers(13, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    {
        let window = client.reserve(c, 5).unwrap();
        assert_eq!(window.len(), 5);
        window.write_at(0, b"zcopy").unwrap();
    }
    client.commit(c, 5).unwrap();
    settle(&mut client, &mut server, T0);
    let mut got = [0u8; 5];
    {
        let window = server.peek(s).unwrap();
        assert_eq!(window.len(), 5);
        window.read_at(0, &mut got).unwrap();
    }
    assert_eq!(&got, b"zcopy");
    server.consume(s, 5).unwrap();
    assert_eq!(server.read(s, &mut got), Err(SocketError::WouldBlock));
    // Zero-copy is an SMC-D feature: a fallback socket says so.
    let (fc, _fs) = connect(&mut client, &mut server, false, T0);
    assert!(matches!(client.reserve(fc, 5), Err(SocketError::NotSmcd)));
    assert!(matches!(client.peek(fc), Err(SocketError::NotSmcd)));
}

#[test]
fn readiness_and_counters_json() {
    let (mut client, mut server, _fabric) = two_peers(14, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert!(matches!(client.transport(c), Some(Transport::Smcd { .. })));
    assert!(client.writable(c));
    assert!(!server.readable(s));
    client.write(c, b"ping").unwrap();
    server.poll(T0);
    assert!(server.readable(s));
    let mut json = String::new();
    client.counters().write_json(&mut json).unwrap();
    assert!(
        json.starts_with(r#"{"type":"smcd_counters","handshakes_client":1,"#),
        "{json}"
    );
    assert!(json.contains(r#""handshakes_smcd":1,"#), "{json}");
    assert!(json.contains(r#""link_groups_created":1,"#), "{json}");
    assert!(json.contains(r#""bytes_tx":4,"#), "{json}");
    let stats = client.socket_stats(c).unwrap();
    assert_eq!(stats.bytes_tx, 4);
    assert_eq!(stats.cdcs_tx, 1);
    assert!(stats.clc_bytes_tx > 0 && stats.clc_bytes_rx > 0);
    assert!(client.devices()[0].local_gid() != server.devices()[0].local_gid());
}

#[test]
fn closed_socket_whose_peer_never_closes_is_aborted_after_the_close_timeout() {
    let (mut client, mut server, fabric) = two_peers(15, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    client.close(c, T0).unwrap();
    // The server application never closes; the client lingers in the close handshake.
    settle(&mut client, &mut server, T0);
    assert_eq!(client.socket_count(), 1);
    let timeout = client.options().close_timeout;
    client.poll(T0 + timeout - Duration::from_millis(1));
    assert_eq!(client.socket_count(), 1);
    client.poll(T0 + timeout);
    assert_eq!(client.socket_count(), 0);
    assert_eq!(client.counters().aborts, 1);
    // The DMB is back in the client's pool (registered, not in use).
    let group = client.link_groups().iter().next().unwrap().1;
    assert_eq!((group.pooled_dmbs(), group.dmbs_in_use()), (1, 0));
    // The server learns of the abort.
    server.poll(T0 + timeout);
    assert!(matches!(
        server.read(s, &mut [0u8; 4]),
        Err(SocketError::Conn(ConnError::ConnectionReset(
            AbortReason::PeerAbort
        )))
    ));
    assert_eq!(fabric.registered_dmbs(), 2);
}

/// §1: the client is ACTIVE once its Confirm is sent and may write (and signal) before
/// the server has read the Confirm. That early signal lands while the server is still
/// handshaking; the server must still see the data once it is established.
#[test]
fn data_signalled_before_the_server_read_the_confirm_is_not_lost() {
    let (mut client, mut server, _fabric) = two_peers(16, 65536);
    let (a, b) = MemPipe::pair(4096, true);
    let c = client.connect(a, T0);
    let s = server.accept(b, T0);
    client.poll(T0); // Proposal out
    server.poll(T0); // Accept out
    client.poll(T0); // Confirm out: client ACTIVE
    assert_eq!(client.state(c), SocketState::Smcd);
    assert_eq!(server.state(s), SocketState::Handshaking);
    assert_eq!(client.write(c, b"early"), Ok(5));
    // One server poll: the signal event comes before the Confirm is read.
    server.poll(T0);
    assert_eq!(server.state(s), SocketState::Smcd);
    assert!(server.readable(s));
    let mut buf = [0u8; 8];
    assert_eq!(server.read(s, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"early");
}
