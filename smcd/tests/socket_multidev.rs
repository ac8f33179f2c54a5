//! A stack with several ISM devices: the Proposal lists them all (§2.2) and the
//! connection runs on the one the server matched by CHID (§2.5).

mod sim_support;

use core::time::Duration;

use sim_support::*;
use smcd::ism::IsmDevice;
use smcd::loopback::{LoopbackFabric, LoopbackIsm};
use smcd::socket::{SocketState, Stack, Transport};
use smcd::stream::MemPipe;

const T0: Duration = Duration::from_secs(1);

type Dev = ChidOverride<LoopbackIsm>;

#[test]
fn connection_uses_the_device_the_server_matched() {
    let fabric = LoopbackFabric::new(40);
    // Client: device 0 on CHID 0xFF01 (the server has none there), device 1 on 0xFFFF.
    let client_devs = vec![
        ChidOverride {
            inner: fabric.device(41),
            chid: 0xFF01,
        },
        ChidOverride {
            inner: fabric.device(42),
            chid: 0xFFFF,
        },
    ];
    let server_devs = vec![ChidOverride {
        inner: fabric.device(43),
        chid: 0xFFFF,
    }];
    let mut client: Stack<Dev, MemPipe> =
        Stack::new(client_devs, config(&[UEID]), options(32 * 1024));
    let mut server: Stack<Dev, MemPipe> =
        Stack::new(server_devs, config(&[UEID]), options(32 * 1024));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_eq!(client.state(c), SocketState::Smcd);
    let server_gid = server.devices()[0].local_gid();
    match client.transport(c) {
        Some(Transport::Smcd {
            device, peer_gid, ..
        }) => {
            assert_eq!(device, 1);
            assert_eq!(peer_gid, server_gid);
        }
        other => panic!("{other:?}"),
    }
    match server.transport(s) {
        Some(Transport::Smcd { peer_gid, .. }) => {
            assert_eq!(peer_gid, client.devices()[1].local_gid())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.devices()[0].inner.registered_dmbs(), 0);
    assert_eq!(client.devices()[1].inner.registered_dmbs(), 1);
    write_all(&mut client, c, &mut server, b"via device 1", T0);
    client.shutdown(c).unwrap();
    assert_eq!(
        read_to_eof(&mut server, s, &mut client, T0),
        b"via device 1"
    );
    // The reply signals the client's DMB on device 1: the event is mapped by
    // (device, DMB index) to the right connection.
    write_all(&mut server, s, &mut client, b"reply", T0);
    server.shutdown(s).unwrap();
    assert_eq!(read_to_eof(&mut client, c, &mut server, T0), b"reply");
    // The reads may find the CDC by their re-read before WouldBlock; deliver the
    // queued signal events too.
    settle(&mut client, &mut server, T0);
    assert!(client.socket_stats(c).unwrap().signals_rx > 0);
    assert!(server.socket_stats(s).unwrap().signals_rx > 0);
}

/// Two device *types* in one stack through `EitherDevice`: the connection runs on the
/// second kind, the first (unmatched CHID) stays unused.
#[test]
fn either_device_combines_two_device_types() {
    use smcd::socket::EitherDevice;
    type Mixed = EitherDevice<Dev, LoopbackIsm>;
    let fabric = LoopbackFabric::new(50);
    let odd = || ChidOverride {
        inner: fabric.device(51),
        chid: 0xFF01,
    };
    let client_devs: Vec<Mixed> = vec![EitherDevice::A(odd()), EitherDevice::B(fabric.device(52))];
    let server_devs: Vec<Mixed> = vec![EitherDevice::B(fabric.device(53))];
    let mut client: Stack<Mixed, MemPipe> =
        Stack::new(client_devs, config(&[UEID]), options(16 * 1024));
    let mut server: Stack<Mixed, MemPipe> =
        Stack::new(server_devs, config(&[UEID]), options(16 * 1024));
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert!(matches!(
        client.transport(c),
        Some(Transport::Smcd { device: 1, .. })
    ));
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut at = 0;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..10_000 {
        if at < data.len() {
            if let Ok(n) = client.write(c, &data[at..]) {
                at += n;
            }
        }
        if let Ok(n) = server.read(s, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        pump(&mut client, &mut server, T0);
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got, data);
    assert_eq!(fabric.registered_dmbs(), 2);
}
