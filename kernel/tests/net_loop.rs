//! In-QEMU test: two virtio-net NICs on one QEMU hub, one smoltcp interface each; TCP
//! between them through the SMC option middleware, byte-exact, with the option negotiated
//! only when both ends enable SMC (post_net_loop checks the SYN/SYN-ACK options in the
//! pcap QEMU's filter-dump wrote).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec;
use core::cell::Cell;
use core::net::Ipv4Addr;
use core::time::Duration;

use kernel::clock;
use kernel::cmdline::Ipv4Cidr;
use kernel::executor;
use kernel::net::{self, NetError, NetInterface, TcpStream};
use kernel::platform;
use smcd::stream::{ByteStream, StreamError};
use spin::Once;

kernel::test_main!(
    two_nics_come_up,
    smc_on_both_sides_negotiates_and_streams_byte_exact,
    listener_without_smc_gives_plain_tcp,
    client_without_smc_gives_plain_tcp,
    backlog_takes_concurrent_connections,
    byte_stream_contract,
);

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Ports must match post_net_loop in kernel/tests/profiles-net.sh.
const PORT_SMC: u16 = 5000;
const PORT_PLAIN_LISTENER: u16 = 5001;
const PORT_PLAIN_CLIENT: u16 = 5002;
const PORT_BACKLOG: u16 = 5003;
const PORT_BYTE_STREAM: u16 = 5004;
/// Bytes streamed in the SMC-negotiated connection.
const STREAM_LEN: usize = 16 << 20;

static NICS: Once<(&'static NetInterface, &'static NetInterface)> = Once::new();

fn nics() -> (&'static NetInterface, &'static NetInterface) {
    *NICS.call_once(|| {
        platform::init().unwrap_or_else(|e| panic!("{e}"));
        let mut devices = net::virtio_net_devices();
        let first = devices.next().expect("first virtio-net");
        let second = devices.next().expect("second virtio-net");
        let cidr = |address| Ipv4Cidr {
            address,
            prefix_len: 24,
        };
        let client = net::bring_up(first, cidr(CLIENT_IP)).unwrap_or_else(|e| panic!("{e}"));
        let server = net::bring_up(second, cidr(SERVER_IP)).unwrap_or_else(|e| panic!("{e}"));
        (client, server)
    })
}

/// A byte sequence without short periods (so a dropped or repeated segment shows).
fn pattern(index: usize) -> u8 {
    ((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn two_nics_come_up() {
    let (client, server) = nics();
    assert_ne!(client.mac_address(), server.mac_address());
    assert_eq!(client.address().address, CLIENT_IP);
    assert_eq!(server.address().address, SERVER_IP);
}

/// What the server side saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServerReport {
    received: usize,
    first_mismatch: Option<usize>,
    peer_smc_capable: bool,
}

/// Run one connection: server on `port` (SMC per `server_smc`), client (per
/// `client_smc`) sends `len` pattern bytes and closes. Returns (client capable, server
/// report).
fn run_connection(
    port: u16,
    client_smc: bool,
    server_smc: bool,
    len: usize,
) -> (bool, ServerReport) {
    let (client, server) = nics();
    let report: Rc<Cell<Option<Result<ServerReport, NetError>>>> = Rc::new(Cell::new(None));
    let mut listener = server
        .listen(port, server_smc)
        .unwrap_or_else(|e| panic!("{e}"));
    let server_report = report.clone();
    executor::spawn(async move {
        let result = async {
            let stream = listener.accept().await?;
            let peer_smc_capable = stream.peer_smc_capable();
            let mut buffer = vec![0u8; 64 * 1024];
            let mut received = 0;
            let mut first_mismatch = None;
            loop {
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                if first_mismatch.is_none() {
                    first_mismatch = buffer[..n]
                        .iter()
                        .enumerate()
                        .find(|&(i, &b)| b != pattern(received + i))
                        .map(|(i, _)| received + i);
                }
                received += n;
            }
            stream.close().await;
            Ok(ServerReport {
                received,
                first_mismatch,
                peer_smc_capable,
            })
        }
        .await;
        server_report.set(Some(result));
    });

    let started = clock::now();
    let deadline = started + Duration::from_secs(40);
    let client_capable = executor::run_until(executor::with_deadline(deadline, async {
        let stream = client
            .connect((SERVER_IP, port), client_smc)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let capable = stream.peer_smc_capable();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            for (i, byte) in chunk[..n].iter_mut().enumerate() {
                *byte = pattern(sent + i);
            }
            stream
                .write_all(&chunk[..n])
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
            sent += n;
        }
        stream.close().await;
        // The server task finishes once it has read end of stream and closed.
        loop {
            if let Some(result) = report.take() {
                report.set(Some(result));
                break;
            }
            executor::sleep(Duration::from_millis(1)).await;
        }
        capable
    }))
    .unwrap_or_else(|_| panic!("connection on port {port} did not finish within 40 s"));
    let elapsed = clock::now() - started;
    let server_report = report
        .take()
        .expect("server finished")
        .unwrap_or_else(|e| panic!("server: {e}"));
    kernel::serial_println!(
        "net_loop: port {port}: {len} bytes in {} ms, client smc {client_capable}, server smc {}",
        elapsed.as_millis(),
        server_report.peer_smc_capable
    );
    (client_capable, server_report)
}

fn smc_on_both_sides_negotiates_and_streams_byte_exact() {
    let (client, server) = nics();
    let (client_capable, report) = run_connection(PORT_SMC, true, true, STREAM_LEN);
    assert_eq!(report.received, STREAM_LEN);
    assert_eq!(report.first_mismatch, None, "stream corrupted");
    assert!(client_capable, "client did not see the option echoed");
    assert!(report.peer_smc_capable, "server did not see the option");
    // Receive was interrupt-driven on both NICs.
    assert!(client.receive_interrupts() > 0);
    assert!(server.receive_interrupts() > 0);
}

fn listener_without_smc_gives_plain_tcp() {
    let (client_capable, report) = run_connection(PORT_PLAIN_LISTENER, true, false, 64 * 1024);
    assert_eq!(report.received, 64 * 1024);
    assert_eq!(report.first_mismatch, None);
    assert!(!client_capable);
    assert!(!report.peer_smc_capable);
}

fn client_without_smc_gives_plain_tcp() {
    let (client_capable, report) = run_connection(PORT_PLAIN_CLIENT, false, true, 64 * 1024);
    assert_eq!(report.received, 64 * 1024);
    assert_eq!(report.first_mismatch, None);
    assert!(!client_capable);
    assert!(!report.peer_smc_capable);
}

/// Three clients connect at once, before the server accepts: all three handshakes
/// complete in the listener's backlog, each stream arrives intact and SMC-negotiated.
fn backlog_takes_concurrent_connections() {
    const CLIENTS: usize = 3;
    const LEN: usize = 16 * 1024;
    let (client, server) = nics();
    let mut listener = server
        .listen(PORT_BACKLOG, true)
        .unwrap_or_else(|e| panic!("{e}"));
    const { assert!(CLIENTS <= net::LISTEN_BACKLOG) };
    let connected = Rc::new(Cell::new(0usize));
    let done = Rc::new(Cell::new(0usize));
    for id in 0..CLIENTS {
        let (connected, done) = (connected.clone(), done.clone());
        executor::spawn(async move {
            let stream = client
                .connect((SERVER_IP, PORT_BACKLOG), true)
                .await
                .unwrap_or_else(|e| panic!("client {id}: connect: {e}"));
            connected.set(connected.get() + 1);
            assert!(stream.peer_smc_capable(), "client {id}: no SMC");
            // Each client's stream starts at a different pattern offset.
            let data: alloc::vec::Vec<u8> = (0..LEN).map(|i| pattern(id * LEN + i)).collect();
            stream
                .write_all(&data)
                .await
                .unwrap_or_else(|e| panic!("client {id}: {e}"));
            stream.close().await;
            done.set(done.get() + 1);
        });
    }
    let deadline = clock::now() + Duration::from_secs(30);
    let seen = executor::run_until(executor::with_deadline(deadline, async {
        // All three handshakes complete before the first accept (a connect refused for
        // lack of a listening socket would panic its client task).
        while connected.get() < CLIENTS {
            executor::sleep(Duration::from_millis(1)).await;
        }
        let mut seen = [false; CLIENTS];
        for _ in 0..CLIENTS {
            let stream = listener
                .accept()
                .await
                .unwrap_or_else(|e| panic!("accept: {e}"));
            assert!(stream.peer_smc_capable());
            let mut data = vec![0u8; LEN];
            stream
                .read_exact(&mut data)
                .await
                .unwrap_or_else(|e| panic!("read: {e}"));
            let id = (0..CLIENTS)
                .find(|&id| data[0] == pattern(id * LEN) && data[1] == pattern(id * LEN + 1))
                .expect("stream matches no client");
            assert!(!seen[id], "client {id} accepted twice");
            assert!(
                data.iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(id * LEN + i)),
                "client {id}: stream corrupted"
            );
            seen[id] = true;
            stream.close().await;
        }
        while done.get() < CLIENTS {
            executor::sleep(Duration::from_millis(1)).await;
        }
        seen
    }))
    .unwrap_or_else(|_| panic!("backlog connections did not finish within 30 s"));
    assert_eq!(seen, [true; CLIENTS]);
}

/// Retry a non-blocking stream operation until it stops saying `WouldBlock`, sleeping on
/// the stream's wakers in between (bounded by the caller's deadline).
async fn retry<T>(
    stream: &mut TcpStream,
    mut op: impl FnMut(&mut TcpStream) -> Result<T, StreamError>,
) -> Result<T, StreamError> {
    loop {
        match op(stream) {
            Err(StreamError::WouldBlock) => {
                core::future::poll_fn(|cx| {
                    stream.register_waker(cx.waker());
                    if stream.read_ready() || stream.write_ready() {
                        core::task::Poll::Ready(())
                    } else {
                        core::task::Poll::Pending
                    }
                })
                .await;
                executor::yield_now().await;
            }
            other => return other,
        }
    }
}

/// The smcd `ByteStream` contract over the smoltcp socket: WouldBlock before data,
/// in-order bytes, end of stream after the peer's shutdown, BrokenPipe after our own,
/// Reset when the peer aborts, Closed after close, and the SMC bit.
fn byte_stream_contract() {
    let (client, server) = nics();
    let mut listener = server
        .listen(PORT_BYTE_STREAM, true)
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = clock::now() + Duration::from_secs(20);
    executor::run_until(executor::with_deadline(deadline, async {
        let mut a = client
            .connect((SERVER_IP, PORT_BYTE_STREAM), true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut b = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(ByteStream::peer_smc_capable(&a) && ByteStream::peer_smc_capable(&b));

        let mut buf = [0u8; 16];
        assert_eq!(
            ByteStream::read(&mut b, &mut buf),
            Err(StreamError::WouldBlock)
        );
        assert!(!b.read_ready());
        assert!(a.write_ready());
        assert_eq!(ByteStream::write(&mut a, b""), Ok(0));
        assert_eq!(ByteStream::write(&mut a, b"hello"), Ok(5));
        let n = retry(&mut b, |s| ByteStream::read(s, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"hello");

        // Our shutdown: writes fail, the peer reads end of stream, we still read.
        ByteStream::shutdown_write(&mut a).unwrap();
        assert_eq!(
            ByteStream::write(&mut a, b"x"),
            Err(StreamError::BrokenPipe)
        );
        assert_eq!(
            retry(&mut b, |s| ByteStream::read(s, &mut buf)).await,
            Ok(0)
        );
        assert_eq!(ByteStream::write(&mut b, b"back"), Ok(4));
        let n = retry(&mut a, |s| ByteStream::read(s, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"back");

        // Close: every later operation says Closed.
        ByteStream::close(&mut b).unwrap();
        assert_eq!(ByteStream::read(&mut b, &mut buf), Err(StreamError::Closed));
        assert_eq!(ByteStream::write(&mut b, b"x"), Err(StreamError::Closed));
        assert_eq!(
            retry(&mut a, |s| ByteStream::read(s, &mut buf)).await,
            Ok(0)
        );
        drop(a);
        drop(b);

        // A peer that drops its stream without closing resets the connection.
        let mut c = client
            .connect((SERVER_IP, PORT_BYTE_STREAM), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let d = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!ByteStream::peer_smc_capable(&c));
        drop(d);
        assert_eq!(
            retry(&mut c, |s| ByteStream::read(s, &mut buf)).await,
            Err(StreamError::Reset)
        );
    }))
    .unwrap_or_else(|_| panic!("byte stream contract did not finish within 20 s"));
}
