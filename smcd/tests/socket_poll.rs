//! `Stack::poll_socket`, the cheap per-connection check of adaptive polling: a new CDC
//! is found without the device's events, and the queued signal stays harmless.

mod sim_support;

use core::time::Duration;

use sim_support::*;

const T0: Duration = Duration::from_secs(1);

/// Adaptive polling's cheap check: `Stack::poll_socket` finds a new CDC in the own DMB
/// without taking the device's events (no `Stack::poll`), makes the bytes readable and
/// frees the writer's space; a second call finds nothing new; the still-queued signal
/// is harmless afterwards.
#[test]
fn poll_socket_sees_data_and_consumer_updates_without_device_events() {
    let (mut client, mut server, _fabric) = two_peers(11, 64 * 1024);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    assert_eq!(client.write(c, b"ping").expect("write"), 4);
    let mut buf = [0u8; 16];
    assert!(
        !server.readable(s),
        "nothing readable before the CDC is read"
    );
    assert!(server.poll_socket(s, T0), "new CDC found");
    assert!(!server.poll_socket(s, T0), "the same CDC again is not news");
    assert_eq!(server.read(s, &mut buf).expect("read"), 4);
    assert_eq!(&buf[..4], b"ping");
    // Fill the server's ring from the client until no space is left; the server reads
    // everything, which sends a consumer update; the client sees the space again
    // through poll_socket alone.
    let chunk = vec![0x5a_u8; 8 * 1024];
    let mut sent = 0usize;
    while let Ok(n) = client.write(c, &chunk) {
        sent += n;
    }
    assert!(client.write(c, &chunk).is_err(), "window full");
    assert!(server.poll_socket(s, T0));
    let mut sink = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < sent {
        got += server.read(s, &mut sink).expect("read back");
    }
    assert_eq!(got, sent);
    assert!(client.poll_socket(c, T0), "consumer update found");
    assert!(client.write(c, &chunk).expect("space again") > 0);
    // The server's cheap check takes the last CDC; the signals still queued in the
    // devices then find nothing new and the data stays readable exactly once.
    assert!(server.poll_socket(s, T0));
    settle(&mut client, &mut server, T0);
    assert!(!server.poll_socket(s, T0));
    let last = server.read(s, &mut sink).expect("last chunk");
    assert!(last > 0 && last <= chunk.len());
    assert!(!server.readable(s), "nothing twice");
}
