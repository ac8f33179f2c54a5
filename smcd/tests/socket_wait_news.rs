//! The socket layer acts on what a writer's re-read before `WouldBlock` found
//! (`SmcdConn::prepare_wait_write`, conn.rs "Signal suppression"): `Stack::write` and
//! `Stack::reserve` on a full window wake the waiters that news concerns, as a
//! signal's poll would, without any device event being processed.

mod sim_support;

use core::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use sim_support::*;
use smcd::socket::{SocketError, SocketHandle};

const T0: Duration = Duration::from_secs(1);

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    (count, waker)
}

/// Writes from `h` until the window is full (no device events processed).
fn fill_window(stack: &mut Sim, h: SocketHandle) -> usize {
    let chunk = vec![0xa5u8; 4096];
    let mut total = 0;
    loop {
        match stack.write(h, &chunk) {
            Ok(n) => total += n,
            Err(SocketError::WouldBlock) => return total,
            Err(e) => panic!("write: {e:?}"),
        }
    }
}

/// A write refused for lack of space re-reads the own CDC first; the reply the peer
/// wrote meanwhile (its signal not yet handled) wakes the socket's reader at once.
#[test]
fn write_on_a_full_window_wakes_the_reader_with_what_its_re_read_found() {
    let (mut client, mut server, _fabric) = two_peers(21, 16 * 1024);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    let filled = fill_window(&mut client, c);
    assert_eq!(filled, 16 * 1024 - 32, "the server's whole ring");
    let (reads, waker) = counting_waker();
    client.register_read_waker(c, &waker);
    assert_eq!(server.write(s, b"pong").expect("server write"), 4);
    assert!(!client.readable(c), "the client has not looked yet");
    assert_eq!(client.write(c, b"x"), Err(SocketError::WouldBlock));
    assert_eq!(
        reads.0.load(Ordering::SeqCst),
        1,
        "reader woken by the re-read"
    );
    assert!(client.readable(c));
    let mut buf = [0u8; 8];
    assert_eq!(client.read(c, &mut buf).expect("read"), 4);
    assert_eq!(&buf[..4], b"pong");
}

/// `Stack::reserve` on a full window: the re-read finds the space the peer freed
/// (its consumer update still queued as a device event) and hands out a window; the
/// data found alongside wakes the reader.
#[test]
fn reserve_on_a_full_window_finds_freed_space_and_wakes_the_reader() {
    let (mut client, mut server, _fabric) = two_peers(22, 16 * 1024);
    let (c, s) = connect(&mut client, &mut server, true, T0);
    let filled = fill_window(&mut client, c);
    // The server takes the data's signal and reads everything (consumer update).
    server.poll(T0);
    let mut sink = vec![0u8; 32 * 1024];
    assert_eq!(server.read(s, &mut sink).expect("server read"), filled);
    assert_eq!(server.write(s, b"pong").expect("server write"), 4);
    let (reads, waker) = counting_waker();
    client.register_read_waker(c, &waker);
    assert!(!client.writable(c), "the client still sees a full window");
    let window = client.reserve(c, 100).expect("space found by the re-read");
    assert_eq!(window.len(), 100);
    window.write_at(0, &[7u8; 100]).expect("fill");
    client.commit(c, 100).expect("commit");
    assert_eq!(
        reads.0.load(Ordering::SeqCst),
        1,
        "reader woken by the re-read"
    );
    assert!(client.readable(c));
}
