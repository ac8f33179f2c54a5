//! Two endpoints on two threads (real concurrency over the loopback device): every byte
//! arrives in order in both directions, with tiny and large rings, while the peer keeps
//! rewriting the CDC under the reader. The only wait is for a specific condition, with a
//! hard deadline.

use std::thread;
use std::time::{Duration, Instant};

use smcd::conn::{DataMode, SmcdConn, State};
use smcd::ism::{IsmDevice, IsmEvent};
use smcd::loopback::{LoopbackFabric, LoopbackIsm};

const DEADLINE: Duration = Duration::from_secs(60);

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs one endpoint to completion: sends `out`, then shuts down writing; reads until
/// end of stream; closes. Returns what it received.
fn endpoint(conn: &mut SmcdConn<LoopbackIsm>, dev: &LoopbackIsm, out: &[u8], seed: u64) -> Vec<u8> {
    let start = Instant::now();
    let mut rng = seed | 1;
    let mut next = |max: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        1 + (rng as usize) % max
    };
    let (mut sent, mut received, mut eof) = (0usize, Vec::new(), false);
    let mut buf = vec![0u8; 8192];
    while !(eof && sent == out.len()) {
        assert!(
            start.elapsed() < DEADLINE,
            "stalled: sent {sent}/{}, received {}",
            out.len(),
            received.len()
        );
        dev.poll_events(&mut |e| match e {
            IsmEvent::DmbSignalled { index } if index == conn.own_index() => {}
            other => panic!("unexpected event {other:?}"),
        });
        conn.poll(dev);
        assert_eq!(conn.abort_reason(), None, "{conn:?}");
        let mut progress = false;
        if sent < out.len() {
            let want = next(3000).min(out.len() - sent);
            if let Ok(n) = conn.write(dev, &out[sent..sent + want]) {
                sent += n;
                progress = true;
            }
            if sent == out.len() {
                conn.shutdown_write(dev).unwrap();
            }
        }
        if !eof {
            let want = next(buf.len());
            match conn.read(dev, &mut buf[..want]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(smcd::conn::ConnError::WouldBlock) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        if !progress {
            thread::yield_now();
        }
    }
    conn.close(dev).unwrap();
    received
}

fn run(ring_a: usize, ring_b: usize, mode: DataMode, len: usize) {
    let fabric = LoopbackFabric::new(77);
    let a_dev = fabric.device(1);
    let b_dev = fabric.device(2);
    let a_own = a_dev.register_dmb(ring_a + 32, b_dev.local_gid()).unwrap();
    let b_own = b_dev.register_dmb(ring_b + 32, a_dev.local_gid()).unwrap();
    let (a_tok, b_tok) = (a_own.token, b_own.token);
    let mut a = SmcdConn::new(&a_dev, a_own, b_tok, ring_b + 32, mode).unwrap();
    let mut b = SmcdConn::new(&b_dev, b_own, a_tok, ring_a + 32, mode).unwrap();
    let a_out = pattern(1, len);
    let b_out = pattern(2, len + 13);

    let (a_in, b_in, a, b, a_dev, b_dev) = thread::scope(|s| {
        let ta = s.spawn(|| {
            let got = endpoint(&mut a, &a_dev, &a_out, 11);
            (got, a, a_dev)
        });
        let tb = s.spawn(|| {
            let got = endpoint(&mut b, &b_dev, &b_out, 22);
            (got, b, b_dev)
        });
        let (a_in, a, a_dev) = ta.join().unwrap();
        let (b_in, b, b_dev) = tb.join().unwrap();
        (a_in, b_in, a, b, a_dev, b_dev)
    });
    assert!(a_in == b_out, "b→a stream differs");
    assert!(b_in == a_out, "a→b stream differs");

    // The last close CDC may have crossed the other side's exit: one poll each settles it.
    let (mut a, mut b) = (a, b);
    a.poll(&a_dev);
    b.poll(&b_dev);
    assert_eq!((a.state(), b.state()), (State::Closed, State::Closed));
    let a_own = a.finish(&a_dev);
    let b_own = b.finish(&b_dev);
    a_dev.unregister_dmb(a_own.token).unwrap();
    b_dev.unregister_dmb(b_own.token).unwrap();
    assert_eq!((fabric.registered_dmbs(), fabric.attached_refs()), (0, 0));
}

#[test]
fn threads_copy_mode_tiny_rings() {
    run(61, 37, DataMode::Copy, 300_000);
}

#[test]
fn threads_copy_mode_real_dmb_sizes() {
    run(16384 - 32, 65536 - 32, DataMode::Copy, 4 << 20);
}

#[test]
fn threads_nocopy_mode_mixed_rings() {
    run(1000, 16384 - 32, DataMode::NoCopy, 2 << 20);
}
