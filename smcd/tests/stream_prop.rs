//! Property tests: two SMC-D endpoints over the loopback device deliver every byte in
//! order, in both directions at once, in copy and no-copy mode, for arbitrary (not only
//! power-of-two, down to 1-byte) rings, chunkings, wrap-arounds and signal timings; the
//! window never lets a writer overrun its reader; and the stream always drains.

mod conn_support;

use conn_support::Pair;
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smcd::conn::{DataMode, SmcdConn, State};
use smcd::cursor::Cursor;
use smcd::loopback::LoopbackIsm;

#[derive(Clone, Copy, Debug)]
enum Side {
    A,
    B,
}

#[derive(Clone, Debug)]
enum Op {
    /// Copy-write `len` bytes (as many as the window takes).
    Write(Side, usize),
    /// Zero-copy: reserve `len`, commit `commit_per_mille` of the window (no-copy mode;
    /// a plain write in copy mode).
    ReserveCommit(Side, usize, u16),
    /// Copy-read up to `len` bytes.
    Read(Side, usize),
    /// Zero-copy: peek and consume up to `len` bytes.
    PeekConsume(Side, usize),
    /// Deliver all pending signals of both devices.
    Pump,
    /// Poll one side without a signal (spurious wake-up / polling loop).
    Poll(Side),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::A), Just(Side::B)];
    let len = prop_oneof![1usize..8, 1usize..300, 1usize..5000];
    prop_oneof![
        3 => (side.clone(), len.clone()).prop_map(|(s, l)| Op::Write(s, l)),
        2 => (side.clone(), len.clone(), 0u16..=1000)
            .prop_map(|(s, l, c)| Op::ReserveCommit(s, l, c)),
        3 => (side.clone(), len.clone()).prop_map(|(s, l)| Op::Read(s, l)),
        2 => (side.clone(), len).prop_map(|(s, l)| Op::PeekConsume(s, l)),
        3 => Just(Op::Pump),
        1 => side.prop_map(Op::Poll),
    ]
}

fn ring_size() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..40, 33usize..300, 300usize..4097, Just(16384 - 32)]
}

/// One direction of the stream: the bytes offered and what arrived.
struct Flow {
    data: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
}

impl Flow {
    fn new(seed: u64, len: usize) -> Flow {
        let mut data = vec![0u8; len];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
        Flow {
            data,
            sent: 0,
            received: Vec::new(),
        }
    }

    fn next(&self, len: usize) -> &[u8] {
        let end = (self.sent + len).min(self.data.len());
        &self.data[self.sent..end]
    }
}

struct Sim {
    p: Pair,
    /// a → b and b → a.
    ab: Flow,
    ba: Flow,
}

impl Sim {
    fn parts(
        &mut self,
        side: Side,
    ) -> (
        &mut SmcdConn<LoopbackIsm>,
        &LoopbackIsm,
        &mut Flow,
        &mut Flow,
    ) {
        match side {
            Side::A => (&mut self.p.a, &self.p.a_dev, &mut self.ab, &mut self.ba),
            Side::B => (&mut self.p.b, &self.p.b_dev, &mut self.ba, &mut self.ab),
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write(side, len) => {
                let (conn, dev, out, _) = self.parts(side);
                let chunk = out.next(len).to_vec();
                if let Ok(n) = conn.write(dev, &chunk) {
                    assert!(n <= chunk.len());
                    out.sent += n;
                }
            }
            Op::ReserveCommit(side, len, per_mille) => {
                let (conn, dev, out, _) = self.parts(side);
                let chunk = out.next(len).to_vec();
                if chunk.is_empty() {
                    return;
                }
                if conn.mode() == DataMode::Copy {
                    if let Ok(n) = conn.write(dev, &chunk) {
                        out.sent += n;
                    }
                    return;
                }
                let filled = match conn.reserve(dev, chunk.len()) {
                    Ok(window) => {
                        assert!(window.len() <= chunk.len());
                        let n = window.len() * per_mille as usize / 1000;
                        window.write_at(0, &chunk[..n]).unwrap();
                        n
                    }
                    Err(_) => return,
                };
                conn.commit(dev, filled).unwrap();
                out.sent += filled;
            }
            Op::Read(side, len) => {
                let (conn, dev, _, inc) = self.parts(side);
                let mut buf = vec![0u8; len.min(conn.readable_bytes() as usize + 1)];
                if let Ok(n) = conn.read(dev, &mut buf) {
                    inc.received.extend_from_slice(&buf[..n]);
                }
            }
            Op::PeekConsume(side, len) => {
                let (conn, dev, _, inc) = self.parts(side);
                let got = {
                    let view = conn.peek().unwrap();
                    let n = view.len().min(len);
                    let mut buf = vec![0u8; n];
                    view.read_at(0, &mut buf).unwrap();
                    buf
                };
                conn.consume(dev, got.len()).unwrap();
                inc.received.extend_from_slice(&got);
            }
            Op::Pump => {
                self.p.pump();
            }
            Op::Poll(side) => {
                let (conn, dev, _, _) = self.parts(side);
                conn.poll(dev);
            }
        }
    }

    /// Invariants after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        for (name, conn) in [("a", &self.p.a), ("b", &self.p.b)] {
            prop_assert_eq!(conn.abort_reason(), None, "{} aborted", name);
            prop_assert_eq!(
                conn.write_space() + conn.unacknowledged_bytes(),
                conn.peer_ring().get()
            );
            prop_assert!(conn.readable_bytes() <= conn.own_ring().get());
        }
        for (writer, reader) in [(&self.p.a, &self.p.b), (&self.p.b, &self.p.a)] {
            // The writer never gets more than one ring ahead of what the reader consumed.
            let ring = reader.own_ring();
            let ahead = Cursor::checked_distance(
                reader.consumer_cursor(),
                writer.producer_cursor(),
                ring,
                ring.get(),
            );
            prop_assert!(ahead.is_ok(), "writer overran reader: {:?}", ahead);
        }
        for flow in [&self.ab, &self.ba] {
            prop_assert!(flow.received.len() <= flow.sent);
            prop_assert!(
                flow.received[..] == flow.data[..flow.received.len()],
                "bytes out of order or corrupted"
            );
        }
        Ok(())
    }

    /// Keeps writing the rest and reading everything until both flows are complete;
    /// fails if the window ever stops moving (a consumer-update deadlock).
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let total = self.ab.data.len() + self.ba.data.len();
        let ring_min = self.p.a.own_ring().get().min(self.p.b.own_ring().get()) as usize;
        // Each round moves at least one byte per unfinished flow once rings turn over.
        let max_rounds = 8 + 4 * total / ring_min.max(1) + total;
        for _ in 0..max_rounds {
            if self.ab.received.len() == self.ab.data.len()
                && self.ba.received.len() == self.ba.data.len()
            {
                return Ok(());
            }
            for side in [Side::A, Side::B] {
                self.apply(&Op::Write(side, usize::MAX / 2));
                self.apply(&Op::Pump);
                self.apply(&Op::Read(side, 1 << 20));
                self.apply(&Op::Pump);
                self.check()?;
            }
        }
        Err(TestCaseError::fail(format!(
            "stream stalled: a→b {}/{} b→a {}/{}",
            self.ab.received.len(),
            self.ab.data.len(),
            self.ba.received.len(),
            self.ba.data.len()
        )))
    }

    /// Orderly close of both sides; both reach CLOSED and nothing leaks.
    fn close(mut self) -> Result<(), TestCaseError> {
        self.p.a.shutdown_write(&self.p.a_dev).unwrap();
        self.p.b.shutdown_write(&self.p.b_dev).unwrap();
        self.p.pump();
        let mut buf = [0u8; 8];
        prop_assert_eq!(self.p.a.read(&self.p.a_dev, &mut buf), Ok(0));
        prop_assert_eq!(self.p.b.read(&self.p.b_dev, &mut buf), Ok(0));
        self.p.a.close(&self.p.a_dev).unwrap();
        self.p.pump();
        self.p.b.close(&self.p.b_dev).unwrap();
        self.p.pump();
        prop_assert_eq!(self.p.a.state(), State::Closed);
        prop_assert_eq!(self.p.b.state(), State::Closed);
        prop_assert_eq!(self.p.finish(), (0, 0));
        Ok(())
    }
}

fn run(
    ring_a: usize,
    ring_b: usize,
    mode: DataMode,
    seed: u64,
    lens: (usize, usize),
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut sim = Sim {
        p: Pair::new(ring_a, ring_b, mode),
        ab: Flow::new(seed, lens.0),
        ba: Flow::new(seed ^ 0xFFFF, lens.1),
    };
    for op in ops {
        sim.apply(op);
        sim.check()?;
    }
    sim.drain()?;
    sim.close()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn copy_mode_stream_delivers_in_order(
        ring_a in ring_size(),
        ring_b in ring_size(),
        seed in any::<u64>(),
        lens in (0usize..8_000, 0usize..8_000),
        ops in prop::collection::vec(op(), 0..120),
    ) {
        run(ring_a, ring_b, DataMode::Copy, seed, lens, &ops)?;
    }

    #[test]
    fn nocopy_mode_stream_delivers_in_order(
        ring_a in ring_size(),
        ring_b in ring_size(),
        seed in any::<u64>(),
        lens in (0usize..8_000, 0usize..8_000),
        ops in prop::collection::vec(op(), 0..120),
    ) {
        run(ring_a, ring_b, DataMode::NoCopy, seed, lens, &ops)?;
    }
}

/// A fixed long run with rings of every size from 1 to 70 bytes, one direction only:
/// many wrap-arounds per ring, fully deterministic.
#[test]
fn every_small_ring_size_wraps_correctly() {
    for ring in 1..=70usize {
        let ops: Vec<Op> = (0..200)
            .flat_map(|i| {
                [
                    Op::Write(Side::A, 1 + (i * 7) % 23),
                    Op::Pump,
                    Op::Read(Side::B, 1 + (i * 5) % 19),
                    Op::Pump,
                ]
            })
            .collect();
        run(ring, 64, DataMode::Copy, ring as u64, (3000, 0), &ops).unwrap();
    }
}
