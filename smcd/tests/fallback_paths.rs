//! Every decline path ends in a working TCP-fallback stream with the right reason
//! (protocol-reference §1, §2.5, §3): both peers agree on the code, the same stream
//! carries the application's bytes both ways, and close gives end of stream.

mod sim_support;

use core::time::Duration;

use sim_support::*;
use smcd::ism::IsmDevice;
use smcd::loopback::{LoopbackConfig, LoopbackFabric, LoopbackIsm};
use smcd::socket::{SocketHandle, SocketState, Stack, Transport};
use smcd::stream::{ByteStream, MemPipe, StreamError};

const T0: Duration = Duration::from_secs(3);

/// Both sides fell back with `code`; `declined_by_server` says who sent the Decline.
fn assert_fallback<D: IsmDevice, E: IsmDevice>(
    client: &Stack<D, MemPipe>,
    c: SocketHandle,
    server: &Stack<E, MemPipe>,
    s: SocketHandle,
    code: u32,
    declined_by_server: bool,
) {
    assert_eq!(client.state(c), SocketState::Fallback);
    assert_eq!(server.state(s), SocketState::Fallback);
    assert_eq!(fallback_reason(client, c), (code, declined_by_server));
    assert_eq!(fallback_reason(server, s), (code, !declined_by_server));
    assert_eq!(client.counters().fallbacks_with(code), 1);
    assert_eq!(server.counters().fallbacks_with(code), 1);
}

/// App data both ways over the fallback stream, then shutdown → EOF, then close.
fn exchange_and_close<D: IsmDevice, E: IsmDevice>(
    client: &mut Stack<D, MemPipe>,
    c: SocketHandle,
    server: &mut Stack<E, MemPipe>,
    s: SocketHandle,
) {
    let up: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    write_all(client, c, server, &up, T0);
    client.shutdown(c).unwrap();
    write_all(server, s, client, b"reply over plain TCP", T0);
    assert_eq!(read_to_eof(server, s, client, T0), up);
    server.close(s, T0).unwrap();
    assert_eq!(read_to_eof(client, c, server, T0), b"reply over plain TCP");
    client.close(c, T0).unwrap();
    settle(client, server, T0);
    assert_eq!(client.socket_count(), 0);
    assert_eq!(server.socket_count(), 0);
    let stats = client.counters().data;
    assert_eq!(stats.bytes_tx, up.len() as u64);
    assert_eq!(stats.bytes_rx, 20);
}

#[test]
fn no_ism_device_on_the_server() {
    let (mut client, _, _fabric) = two_peers(1, 64 * 1024);
    let mut server: Stack<LoopbackIsm, MemPipe> =
        Stack::new(Vec::new(), config(&[UEID]), options(64 * 1024));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    // Proposal offers SMC-Dv2 only (loopback is v2-only); a server without any
    // ISMv2 device declines NOISM2SUPP.
    assert_fallback(&client, c, &server, s, 0x0303_0003, true);
    assert_eq!(server.counters().declines_sent, 1);
    assert_eq!(client.counters().declines_received, 1);
    exchange_and_close(&mut client, c, &mut server, s);
    assert_eq!(client.devices()[0].registered_dmbs(), 0);
}

#[test]
fn eid_mismatch() {
    let fabric = LoopbackFabric::new(2);
    let mut client: Sim = Stack::new(vec![fabric.device(3)], config(&[UEID]), options(65536));
    let mut server: Sim = Stack::new(
        vec![fabric.device(4)],
        config(&["OTHER-EID"]),
        options(65536),
    );
    let (c, s) = connect(&mut client, &mut server, true, T0);
    // A device matches but no EID does: Linux drops v2 silently and, with nothing else
    // offered, declines "no SMC-D device" (negotiate::server_select step 4).
    assert_fallback(&client, c, &server, s, 0x0303_0001, true);
    exchange_and_close(&mut client, c, &mut server, s);
    assert_eq!(fabric.registered_dmbs(), 0);
}

#[test]
fn client_without_ueid() {
    let fabric = LoopbackFabric::new(5);
    let mut client: Sim = Stack::new(vec![fabric.device(6)], config(&[]), options(65536));
    let mut server: Sim = Stack::new(vec![fabric.device(7)], config(&[UEID]), options(65536));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_fallback(&client, c, &server, s, 0x0303_0008, true);
    exchange_and_close(&mut client, c, &mut server, s);
}

#[test]
fn chid_mismatch() {
    let fabric = LoopbackFabric::new(8);
    let odd = ChidOverride {
        inner: fabric.device(9),
        chid: 0xFF01,
    };
    let mut client: Stack<ChidOverride<LoopbackIsm>, MemPipe> =
        Stack::new(vec![odd], config(&[UEID]), options(65536));
    let mut server: Sim = Stack::new(vec![fabric.device(10)], config(&[UEID]), options(65536));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_fallback(&client, c, &server, s, 0x0303_0007, true);
    exchange_and_close(&mut client, c, &mut server, s);
}

#[test]
fn dmb_exhaustion_on_the_server() {
    let full = LoopbackConfig {
        max_dmbs: 0,
        ..LoopbackConfig::default()
    };
    let (mut client, mut server, fabric) =
        two_peers_with(12, 65536, LoopbackConfig::default(), full);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_fallback(&client, c, &server, s, 0x030d_0000, true);
    assert_eq!(server.counters().dmb_exhaustions, 1);
    // The group created for the failed first contact is gone again.
    assert_eq!(server.link_groups().len(), 0);
    exchange_and_close(&mut client, c, &mut server, s);
    assert_eq!(fabric.registered_dmbs(), 0);
}

#[test]
fn dmb_exhaustion_on_the_client_declines_the_accept() {
    let full = LoopbackConfig {
        max_dmbs: 0,
        ..LoopbackConfig::default()
    };
    let (mut client, mut server, fabric) =
        two_peers_with(13, 65536, full, LoopbackConfig::default());
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_fallback(&client, c, &server, s, 0x030d_0000, false);
    // The server had registered its DMB for the Accept: freed with its failed group.
    assert_eq!(server.link_groups().len(), 0);
    assert_eq!(client.link_groups().len(), 0);
    assert_eq!(fabric.registered_dmbs(), 0);
    exchange_and_close(&mut client, c, &mut server, s);
}

#[test]
fn client_declines_in_place_of_the_proposal() {
    let fabric = LoopbackFabric::new(14);
    let mut client: Sim = Stack::new(Vec::new(), config(&[UEID]), options(65536));
    let mut server: Sim = Stack::new(vec![fabric.device(15)], config(&[UEID]), options(65536));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    // §1: no usable device → Decline 0x03030000 instead of a Proposal.
    assert_fallback(&client, c, &server, s, 0x0303_0000, false);
    let stats = client.socket_stats(c).unwrap();
    assert_eq!(stats.clc_bytes_tx, 44, "one v2 Decline, nothing else");
    assert_eq!(stats.clc_bytes_rx, 0);
    exchange_and_close(&mut client, c, &mut server, s);
}

#[test]
fn peer_not_smc_capable_sends_no_clc_bytes() {
    let (mut client, mut server, _fabric) = two_peers(16, 65536);
    let (c, s) = connect(&mut client, &mut server, false, T0);
    // Nobody declined: both sides know from the TCP handshake.
    assert_eq!(fallback_reason(&client, c), (0x0301_0000, false));
    assert_eq!(fallback_reason(&server, s), (0x0301_0000, false));
    assert_eq!(
        client.counters().declines_sent + server.counters().declines_sent,
        0
    );
    for (stack, h) in [(&client, c), (&server, s)] {
        let stats = stack.socket_stats(h).unwrap();
        assert_eq!((stats.clc_bytes_tx, stats.clc_bytes_rx), (0, 0));
        assert!(matches!(
            stack.transport(h),
            Some(Transport::Tcp { reason, by_peer: false }) if reason.0 == 0x0301_0000
        ));
    }
    exchange_and_close(&mut client, c, &mut server, s);
}

#[test]
fn not_smc_capable_stream_carries_exactly_the_application_bytes() {
    // The far end is a raw pipe: whatever arrives there is on the wire.
    let (mut client, _, _fabric) = two_peers(17, 65536);
    let (a, mut raw) = MemPipe::pair(4096, false);
    let c = client.connect(a, T0);
    client.poll(T0);
    assert_eq!(client.write(c, b"plain"), Ok(5));
    client.poll(T0);
    let mut buf = [0u8; 64];
    assert_eq!(raw.read(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"plain");
    assert_eq!(raw.read(&mut buf), Err(StreamError::WouldBlock));
    assert_eq!(raw.bytes_received_total(), 5);
}

#[test]
fn out_of_sync_link_group_is_declined_and_terminated() {
    let (mut client, mut server, fabric) = two_peers(18, 65536);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_eq!(client.state(c), SocketState::Smcd);
    client.close(c, T0).unwrap();
    server.close(s, T0).unwrap();
    settle(&mut client, &mut server, T0);
    // The client forgets its group; the server still has its own.
    assert_eq!(client.free_unused_link_groups(), 1);
    assert_eq!(server.link_groups().len(), 1);

    let (c, s) = connect(&mut client, &mut server, true, T0);
    // Server reused its group (no first contact); the client has none → SYNCERR with
    // the out-of-sync bit (§2.5); the server terminates that group.
    assert_fallback(&client, c, &server, s, 0x0400_0000, false);
    assert_eq!(server.link_groups().len(), 0);
    assert_eq!(server.counters().link_groups_terminated, 1);
    assert_eq!(fabric.registered_dmbs(), 0);
    exchange_and_close(&mut client, c, &mut server, s);

    // The next connection starts over with first contact and works.
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert!(matches!(
        client.transport(c),
        Some(Transport::Smcd {
            first_contact: true,
            ..
        })
    ));
    assert_eq!(server.state(s), SocketState::Smcd);
}

/// Moves every byte available from `from` to `to`, letting `edit` change each chunk.
fn forward(from: &mut MemPipe, to: &mut MemPipe, edit: &mut dyn FnMut(&mut Vec<u8>)) -> usize {
    let mut buf = vec![0u8; 4096];
    match from.read(&mut buf) {
        Ok(n) if n > 0 => {
            buf.truncate(n);
            edit(&mut buf);
            assert_eq!(to.write(&buf), Ok(buf.len()));
            n
        }
        _ => 0,
    }
}

/// A forged Accept (a DMB token or size the client cannot attach) is declined with
/// MEM `0x01010000` (§4.6), and the server, which sees the Decline in place of the
/// Confirm, falls back and frees the DMB it registered.
#[test]
fn forged_accept_is_declined_and_the_server_frees_its_dmb() {
    for forge in ["token", "size"] {
        let (mut client, mut server, fabric) = two_peers(19, 65536);
        let (a, mut mid_c) = MemPipe::pair(4096, true);
        let (mut mid_s, b) = MemPipe::pair(4096, true);
        let c = client.connect(a, T0);
        let s = server.accept(b, T0);
        for _ in 0..20 {
            pump(&mut client, &mut server, T0);
            forward(&mut mid_c, &mut mid_s, &mut |_| {});
            forward(&mut mid_s, &mut mid_c, &mut |bytes| {
                // The Accept is the only message the server sends before the Decline.
                if bytes.len() >= 26 && bytes[4] == 2 {
                    match forge {
                        "token" => bytes[16..24].copy_from_slice(&[0xAB; 8]),
                        _ => bytes[25] = (bytes[25] & 0x0F) | 0x60, // claim 1 MiB
                    }
                }
            });
        }
        assert_eq!(fallback_reason(&client, c), (0x0101_0000, false), "{forge}");
        assert_eq!(fallback_reason(&server, s), (0x0101_0000, true), "{forge}");
        assert_eq!(fabric.registered_dmbs(), 0, "{forge}");
        assert_eq!(fabric.attached_refs(), 0, "{forge}");
    }
}
