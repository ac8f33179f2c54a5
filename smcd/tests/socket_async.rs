//! The async wrappers: `embedded_io_async::{Read, Write}` over socket handles, driven
//! by a tiny single-threaded executor that sleeps (returns to its loop) until a waker
//! fires and polls the stacks in between, as the kernel's executor will.

mod sim_support;

use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use embedded_io_async::{Read, Write};
use sim_support::*;
use smcd::socket::{AsyncSocket, SocketError, Transport};
use smcd::stream::MemPipe;

const T0: Duration = Duration::from_secs(1);

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs two futures to completion. A future is polled again only after its own waker
/// fired, so a lost wake-up shows up as a deadlock. When neither is woken the stacks
/// are polled (the "interrupt"). Fails if nothing can make progress.
fn run_both<A: Future, B: Future>(
    a: A,
    b: B,
    mut drive: impl FnMut() -> bool,
) -> (A::Output, B::Output, usize) {
    let wa = Arc::new(CountingWaker(AtomicUsize::new(1)));
    let wb = Arc::new(CountingWaker(AtomicUsize::new(1)));
    let (waker_a, waker_b) = (Waker::from(wa.clone()), Waker::from(wb.clone()));
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    let (mut seen_a, mut seen_b) = (0, 0);
    let mut stuck = 0;
    loop {
        let now_a = wa.0.load(Ordering::SeqCst);
        if ra.is_none() && now_a != seen_a {
            seen_a = now_a;
            if let Poll::Ready(v) = a.as_mut().poll(&mut Context::from_waker(&waker_a)) {
                ra = Some(v);
            }
        }
        let now_b = wb.0.load(Ordering::SeqCst);
        if rb.is_none() && now_b != seen_b {
            seen_b = now_b;
            if let Poll::Ready(v) = b.as_mut().poll(&mut Context::from_waker(&waker_b)) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            break;
        }
        let progress = drive();
        // Wake-ups from the futures themselves or from the stacks' poll.
        let woken = wa.0.load(Ordering::SeqCst) != seen_a || wb.0.load(Ordering::SeqCst) != seen_b;
        stuck = if progress || woken { 0 } else { stuck + 1 };
        assert!(stuck < 10, "deadlock: no progress and no wake-up");
    }
    let wakes = wa.0.load(Ordering::SeqCst) + wb.0.load(Ordering::SeqCst) - 2;
    (ra.unwrap(), rb.unwrap(), wakes)
}

async fn echo_client<C: smcd::socket::StackCell>(
    mut sock: AsyncSocket<'_, C>,
    payload: &[u8],
) -> Result<Vec<u8>, SocketError> {
    let transport = sock.established().await?;
    assert!(matches!(
        transport,
        Transport::Smcd { .. } | Transport::Tcp { .. }
    ));
    sock.write_all(payload).await?;
    sock.flush().await?;
    sock.shutdown().await?;
    let mut back = Vec::new();
    let mut buf = [0u8; 3000];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(back);
        }
        back.extend_from_slice(&buf[..n]);
    }
}

/// Reads until the client's end of stream, then sends everything back (echoing while
/// reading could deadlock two peers that both write before reading).
async fn echo_server<C: smcd::socket::StackCell>(
    mut sock: AsyncSocket<'_, C>,
) -> Result<usize, SocketError> {
    sock.established().await?;
    let mut buf = [0u8; 5000];
    let mut all = Vec::new();
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    sock.write_all(&all).await?;
    sock.shutdown().await?;
    Ok(all.len())
}

fn echo_over(smc_capable: bool) -> (Transport, usize) {
    let (client, server, _fabric) = two_peers(21, 16 * 1024);
    let (client, server) = (RefCell::new(client), RefCell::new(server));
    let (a, b) = MemPipe::pair(8192, smc_capable);
    let c = client.borrow_mut().connect(a, T0);
    let s = server.borrow_mut().accept(b, T0);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (echoed, served, wakes) = run_both(
        echo_client(AsyncSocket::new(&client, c), &payload),
        echo_server(AsyncSocket::new(&server, s)),
        || {
            let x = client.borrow_mut().poll(T0);
            let y = server.borrow_mut().poll(T0);
            x | y
        },
    );
    assert_eq!(echoed.unwrap(), payload);
    assert_eq!(served.unwrap(), payload.len());
    let transport = client.borrow().transport(c).unwrap();
    AsyncSocket::new(&client, c).close(T0).unwrap();
    AsyncSocket::new(&server, s).close(T0).unwrap();
    settle(&mut client.borrow_mut(), &mut server.borrow_mut(), T0);
    assert_eq!(
        client.borrow().socket_count() + server.borrow().socket_count(),
        0
    );
    (transport, wakes)
}

#[test]
fn async_echo_over_smcd_wakes_on_signals() {
    let (transport, wakes) = echo_over(true);
    assert!(matches!(transport, Transport::Smcd { .. }), "{transport:?}");
    // 300 KB through 16 KiB rings cannot complete without the wakers firing.
    assert!(wakes > 10, "only {wakes} wake-ups");
}

#[test]
fn async_echo_over_fallback_is_the_same_api() {
    let (transport, wakes) = echo_over(false);
    assert!(matches!(transport, Transport::Tcp { .. }), "{transport:?}");
    assert!(wakes > 10, "only {wakes} wake-ups");
}

#[test]
fn async_wrapper_works_with_a_spin_mutex() {
    let (client, server, _fabric) = two_peers(22, 16 * 1024);
    let (client, server) = (spin::Mutex::new(client), spin::Mutex::new(server));
    let (a, b) = MemPipe::pair(8192, true);
    let c = client.lock().connect(a, T0);
    let s = server.lock().accept(b, T0);
    let (echoed, served, _) = run_both(
        echo_client(AsyncSocket::new(&client, c), b"mutex"),
        echo_server(AsyncSocket::new(&server, s)),
        || {
            let x = client.lock().poll(T0);
            let y = server.lock().poll(T0);
            x | y
        },
    );
    assert_eq!(echoed.unwrap(), b"mutex");
    assert_eq!(served.unwrap(), 5);
}
