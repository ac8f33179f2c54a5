//! The CLC exchange on the wire, read like a protocol trace (protocol-reference §1,
//! §2.3, §2.5): a tap between the two stacks records every message in each direction.

mod sim_support;

use core::time::Duration;

use sim_support::*;
use smcd::ism::IsmDevice;
use smcd::socket::SocketState;
use smcd::stream::{ByteStream, MemPipe};
use smcd::wire::clc::{AcceptConfirmKind, ClcMessage};

const T0: Duration = Duration::from_secs(1);

/// Splits a recorded byte stream into CLC messages (the length is at bytes 5..7).
fn messages(mut bytes: &[u8]) -> Vec<ClcMessage> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([bytes[5], bytes[6]]));
        out.push(ClcMessage::parse(&bytes[..len]).expect("valid CLC on the wire"));
        bytes = &bytes[len..];
    }
    assert!(bytes.is_empty(), "trailing partial message");
    out
}

/// Connects through a tap; returns (client→server bytes, server→client bytes).
fn tapped_connect(client: &mut Sim, server: &mut Sim) -> (Vec<u8>, Vec<u8>) {
    let (a, mut tap_c) = MemPipe::pair(4096, true);
    let (mut tap_s, b) = MemPipe::pair(4096, true);
    let c = client.connect(a, T0);
    let s = server.accept(b, T0);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        pump(client, server, T0);
        while let Ok(n @ 1..) = tap_c.read(&mut buf) {
            up.extend_from_slice(&buf[..n]);
            tap_s.write(&buf[..n]).unwrap();
        }
        while let Ok(n @ 1..) = tap_s.read(&mut buf) {
            down.extend_from_slice(&buf[..n]);
            tap_c.write(&buf[..n]).unwrap();
        }
    }
    assert_eq!(client.state(c), SocketState::Smcd);
    assert_eq!(server.state(s), SocketState::Smcd);
    client.close(c, T0).unwrap();
    server.close(s, T0).unwrap();
    settle(client, server, T0);
    (up, down)
}

#[test]
fn first_contact_then_reuse_on_the_wire() {
    let (mut client, mut server, _fabric) = two_peers(60, 32 * 1024);
    let client_gid = client.devices()[0].local_gid();
    let server_gid = server.devices()[0].local_gid();

    // First connection: Proposal → Accept(first contact, FCE) → Confirm(first contact).
    let (up, down) = tapped_connect(&mut client, &mut server);
    let (up, down) = (messages(&up), messages(&down));
    assert_eq!(up.len(), 2, "client sends Proposal and Confirm only");
    assert_eq!(down.len(), 1, "server sends Accept only");
    let ClcMessage::Proposal(p) = &up[0] else {
        panic!("expected Proposal, got {:?}", up[0])
    };
    assert_eq!(p.version, 2);
    let listed: Vec<_> =
        p.v2.as_ref()
            .unwrap()
            .smcd
            .as_ref()
            .unwrap()
            .devices()
            .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].gid, listed[0].chid), (client_gid, 0xFFFF));
    let ClcMessage::AcceptConfirm(accept) = &down[0] else {
        panic!("expected Accept")
    };
    assert_eq!(accept.kind, AcceptConfirmKind::Accept);
    assert!(accept.first_contact);
    assert_eq!(accept.gid, server_gid.gid);
    assert_eq!(accept.v2.unwrap().gid_ext, server_gid.gid_ext);
    assert_eq!(accept.dmbe_size, 1, "32 KiB DMB = compressed size 1 (§4.1)");
    assert_eq!(accept.v2.unwrap().first_contact_ext.unwrap().release, 1);
    let ClcMessage::AcceptConfirm(confirm) = &up[1] else {
        panic!("expected Confirm")
    };
    assert_eq!(confirm.kind, AcceptConfirmKind::Confirm);
    assert!(confirm.first_contact);
    assert_eq!(confirm.gid, client_gid.gid);
    assert_ne!(confirm.token, accept.token);

    // Second connection reuses both groups: no first contact, no FCE, same tokens
    // (the pooled DMBs).
    let (up2, down2) = tapped_connect(&mut client, &mut server);
    let (up2, down2) = (messages(&up2), messages(&down2));
    let ClcMessage::AcceptConfirm(accept2) = &down2[0] else {
        panic!("expected Accept")
    };
    let ClcMessage::AcceptConfirm(confirm2) = &up2[1] else {
        panic!("expected Confirm")
    };
    assert!(!accept2.first_contact && !confirm2.first_contact);
    assert!(accept2.v2.unwrap().first_contact_ext.is_none());
    assert!(confirm2.v2.unwrap().first_contact_ext.is_none());
    assert_eq!(accept2.token, accept.token);
    assert_eq!(confirm2.token, confirm.token);
}
