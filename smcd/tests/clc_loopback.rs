//! The CLC handshake driving real devices: negotiation over two loopback ISM devices on
//! one fabric (128-bit GIDs, CHID 0xFFFF, `query_remote_gid` as reachability), every
//! message through the wire format, then the negotiated GIDs/tokens/DMB sizes open an
//! `SmcdConn` on each side and bytes flow both ways.

use smcd::conn::{DataMode, SmcdConn};
use smcd::ism::{is_virtual_chid, IsmDevice};
use smcd::loopback::{LoopbackFabric, LoopbackIsm};
use smcd::negotiate::{
    build_accept, build_confirm, build_proposal, client_check_accept, dmbe_len,
    server_check_confirm, server_select, ClientError, DeviceDesc, LocalConfig, OwnDmb,
};
use smcd::wire::clc::{ClcMessage, DeclineCode, Eid};

fn desc(dev: &LoopbackIsm) -> DeviceDesc {
    DeviceDesc {
        gid: dev.local_gid(),
        chid: dev.chid(),
        v2: dev.supports_v2(),
    }
}

fn wire(msg: ClcMessage) -> ClcMessage {
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf).unwrap();
    let header: [u8; 8] = buf[..8].try_into().unwrap();
    assert_eq!(smcd::wire::clc::frame_len(&header), Ok(buf.len()));
    ClcMessage::parse(&buf).unwrap()
}

fn config() -> LocalConfig {
    LocalConfig {
        ueids: vec![Eid::ueid("SMCD-LOOPBACK").unwrap()],
        ..LocalConfig::default()
    }
}

#[test]
fn negotiated_values_open_working_connections() {
    let fabric = LoopbackFabric::new(42);
    let client_dev = fabric.device(1);
    let server_dev = fabric.device(2);
    assert!(is_virtual_chid(client_dev.chid()));
    let (ccfg, scfg) = (config(), config());
    let cdevs = [desc(&client_dev)];
    let sdevs = [desc(&server_dev)];

    // Client → Proposal.
    let ClcMessage::Proposal(proposal) =
        wire(ClcMessage::Proposal(build_proposal(&ccfg, &cdevs).unwrap()))
    else {
        panic!("expected a Proposal")
    };
    // Server: select with the device's own query_remote_gid, register its DMB for the
    // client GID it learned, send Accept.
    let choice = server_select(&scfg, &sdevs, &proposal, |i, gid| {
        assert_eq!(i, 0);
        server_dev.query_remote_gid(gid, None)
    })
    .unwrap();
    let candidate = choice.first();
    assert_eq!(
        candidate.peer_gid,
        client_dev.local_gid(),
        "128-bit GID rebuilt from two entries"
    );
    let server_code = 0u8; // 16 KiB
    let server_dmb = server_dev
        .register_dmb(dmbe_len(server_code), candidate.peer_gid)
        .unwrap();
    let own = OwnDmb {
        token: server_dmb.token.0,
        dmbe_size: server_code,
        link_id: [0, 0, 0, 1],
    };
    let ClcMessage::AcceptConfirm(accept) = wire(ClcMessage::AcceptConfirm(
        build_accept(&scfg, &sdevs, &choice, candidate, &own, true).unwrap(),
    )) else {
        panic!("expected an Accept")
    };

    // Client: check the Accept, register its DMB for the server GID, send Confirm.
    let c = client_check_accept(&ccfg, &cdevs, &proposal, &accept, |_, _| false).unwrap();
    assert_eq!(c.peer_gid, server_dev.local_gid());
    assert!(client_dev.query_remote_gid(c.peer_gid, None));
    let client_code = 1u8; // 32 KiB
    let client_dmb = client_dev
        .register_dmb(dmbe_len(client_code), c.peer_gid)
        .unwrap();
    let own = OwnDmb {
        token: client_dmb.token.0,
        dmbe_size: client_code,
        link_id: [0, 0, 0, 2],
    };
    let ClcMessage::AcceptConfirm(confirm) = wire(ClcMessage::AcceptConfirm(
        build_confirm(&ccfg, &cdevs, &c, &own).unwrap(),
    )) else {
        panic!("expected a Confirm")
    };
    let info = server_check_confirm(&choice, &confirm).unwrap();

    // Data path with the negotiated values.
    let mut client = SmcdConn::new(
        &client_dev,
        client_dmb,
        smcd::ism::DmbToken(c.peer_token),
        c.peer_dmb_len,
        DataMode::Copy,
    )
    .unwrap();
    let mut server = SmcdConn::new(
        &server_dev,
        server_dmb,
        smcd::ism::DmbToken(info.peer_token),
        info.peer_dmb_len,
        DataMode::Copy,
    )
    .unwrap();
    assert_eq!(client.write(&client_dev, b"hello over SMC-D").unwrap(), 16);
    server.poll(&server_dev);
    let mut buf = [0u8; 64];
    let n = server.read(&server_dev, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello over SMC-D");
    assert_eq!(server.write(&server_dev, b"reply").unwrap(), 5);
    client.poll(&client_dev);
    let n = client.read(&client_dev, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
}

#[test]
fn peer_on_another_fabric_is_unreachable() {
    let client_dev = LoopbackFabric::new(1).device(1);
    let server_dev = LoopbackFabric::new(2).device(2);
    let proposal = build_proposal(&config(), &[desc(&client_dev)]).unwrap();
    let result = server_select(&config(), &[desc(&server_dev)], &proposal, |_, gid| {
        server_dev.query_remote_gid(gid, None)
    });
    assert_eq!(result, Err(DeclineCode::NOSMCD2DEV));
}

#[test]
fn reused_group_unknown_to_client_is_out_of_sync() {
    let fabric = LoopbackFabric::new(3);
    let (client_dev, server_dev) = (fabric.device(1), fabric.device(2));
    let cdevs = [desc(&client_dev)];
    let sdevs = [desc(&server_dev)];
    let proposal = build_proposal(&config(), &cdevs).unwrap();
    let choice = server_select(&config(), &sdevs, &proposal, |_, g| {
        server_dev.query_remote_gid(g, None)
    })
    .unwrap();
    // The server believes it shares a link group with this client already.
    let own = OwnDmb {
        token: 9,
        dmbe_size: 0,
        link_id: [0; 4],
    };
    let accept = build_accept(&config(), &sdevs, &choice, choice.first(), &own, false).unwrap();
    assert_eq!(
        client_check_accept(&config(), &cdevs, &proposal, &accept, |_, _| false),
        Err(ClientError::Decline(DeclineCode::SYNCERR))
    );
}
