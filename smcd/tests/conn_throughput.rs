//! Rough single-thread throughput of the connection data path over the loopback device.
//! Not a benchmark suite (that is `smcd/benches`); run with
//! `cargo test --release -p smcd --test conn_throughput -- --ignored --nocapture`.

mod conn_support;

use std::time::Instant;

use conn_support::Pair;
use smcd::conn::DataMode;
use smcd::cursor::DmbSizeCode;

const TOTAL: usize = 256 << 20;

fn run(mode: DataMode, chunk: usize, zero_copy: bool) -> f64 {
    let ring = DmbSizeCode::MAX.ring().len();
    let mut p = Pair::new(ring, ring, mode);
    // Stream byte k is k % 251; the sender slices this buffer at `sent % 251`.
    let data: Vec<u8> = (0..chunk + 251).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; chunk];
    let (mut sent, mut received) = (0usize, 0usize);
    let start = Instant::now();
    while received < TOTAL {
        if sent < TOTAL {
            let want = chunk.min(TOTAL - sent);
            let n = if zero_copy {
                match p.a.reserve(&p.a_dev, want) {
                    Ok(w) => {
                        let n = w.len();
                        w.write_at(0, &data[sent % 251..sent % 251 + n]).unwrap();
                        n
                    }
                    Err(_) => 0,
                }
            } else {
                p.a.write(&p.a_dev, &data[sent % 251..sent % 251 + want])
                    .unwrap_or(0)
            };
            if zero_copy && n > 0 {
                p.a.commit(&p.a_dev, n).unwrap();
            }
            sent += n;
        }
        p.pump();
        if let Ok(n) = p.b.read(&p.b_dev, &mut buf) {
            // Cheap integrity probe: the byte at each read's end matches the pattern.
            if n > 0 {
                assert_eq!(buf[0], (received % 251) as u8);
                assert_eq!(buf[n - 1], ((received + n - 1) % 251) as u8);
            }
            received += n;
        }
        p.pump();
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(p.a.abort_reason().is_none() && p.b.abort_reason().is_none());
    TOTAL as f64 / secs / f64::from(1 << 20)
}

#[test]
#[ignore = "measurement; run explicitly in release mode"]
fn loopback_throughput() {
    for chunk in [4096, 65536] {
        let copy = run(DataMode::Copy, chunk, false);
        let nocopy = run(DataMode::NoCopy, chunk, false);
        let zc = run(DataMode::NoCopy, chunk, true);
        println!(
            "chunk {chunk:>6} B: copy {copy:8.0} MiB/s, no-copy {nocopy:8.0} MiB/s, \
             zero-copy reserve/commit {zc:8.0} MiB/s"
        );
    }
}
