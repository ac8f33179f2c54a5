//! `app=stream` (client: sends `size` bytes in `chunk` writes) and `app=sink` (server:
//! receives, checks the pattern): throughput, and a running FNV-1a hash both print.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use embedded_io_async::Read;

use super::profile::Profiler;
use super::{
    count_mismatches, count_sample_mismatches, fill_pattern, join_all, write_all, AppConfig,
    AppError, AppFuture, Fnv1a, Report, CYCLE_HEAP_RESERVE,
};
use crate::clock;
use crate::cmdline::Verify;
use crate::shm_verify::{check_window, stamp_chunk, SAMPLE_HEAD_LEN};
use crate::smc::{Smc, SmcStream};
use smcd::socket::Transport;

/// What one end of a stream connection saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOutcome {
    /// The sender's stream number (its pattern; the sink recognises it).
    pub stream: u32,
    /// Bytes sent (stream) or received (sink).
    pub bytes: u64,
    /// FNV-1a of those bytes.
    pub hash: u64,
    /// Received bytes that differ from the pattern (sink; 0 for the sender).
    pub mismatches: u64,
    /// First byte to end (sender: until the sink closed).
    pub elapsed_ns: u64,
}

/// Bytes the sink looks at to recognise the sender's stream number.
const HEAD_LEN: usize = 8;
/// Stream numbers the sink tries.
const MAX_STREAMS: u32 = 4096;

/// The stream number whose pattern starts with `head`, if any.
fn identify(head: &[u8]) -> Option<u32> {
    if head.is_empty() {
        return None;
    }
    (0..MAX_STREAMS).find(|&id| count_mismatches(id, 0, head) == 0)
}

/// `verify=sample`: the stream number whose pattern bytes 8..16 are `head[8..16]`.
fn identify_sample(head: &[u8]) -> Option<u32> {
    let word = head.get(HEAD_LEN..SAMPLE_HEAD_LEN)?;
    (0..MAX_STREAMS).find(|&id| count_mismatches(id, HEAD_LEN as u64, word) == 0)
}

fn verify_name(v: Verify) -> &'static str {
    match v {
        Verify::Full => "full",
        Verify::Sample => "sample",
    }
}

/// Bytes per second of `bytes` moved in `ns` nanoseconds.
pub fn bytes_per_sec(bytes: u64, ns: u64) -> u64 {
    (u128::from(bytes) * 1_000_000_000 / u128::from(ns.max(1))) as u64
}

fn stream_size(c: &AppConfig) -> u64 {
    c.size.unwrap_or(super::DEFAULT_STREAM_SIZE)
}

/// Sends `size` bytes of the pattern of `conn` in `chunk` writes, shuts down, and waits
/// for the sink's close; prints the result line.
pub async fn send(
    smc: &'static Smc,
    c: &AppConfig,
    conn: u32,
    s: &mut SmcStream,
) -> Result<StreamOutcome, AppError> {
    send_conn(smc, c, conn, s, true).await
}

/// [`send`], printing the result line only when `report` is true.
async fn send_conn(
    smc: &'static Smc,
    c: &AppConfig,
    conn: u32,
    s: &mut SmcStream,
    report: bool,
) -> Result<StreamOutcome, AppError> {
    let size = stream_size(c);
    let chunk = usize::try_from(c.chunk)
        .ok()
        .filter(|n| (1..=(16 << 20)).contains(n))
        .ok_or(AppError::Config("chunk must be 1..=16M"))?;
    let mut buf = vec![0u8; chunk];
    let mut hash = Fnv1a::default();
    let sample = c.verify == Verify::Sample;
    if sample {
        // Filled once; each write only stamps the offset words (no hash: "0" on both ends).
        fill_pattern(conn, 0, &mut buf);
        hash = Fnv1a(0);
    }
    let irq_before = smc.interrupts();
    let mut prof = Profiler::start(s);
    let t0 = clock::now();
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(chunk as u64) as usize;
        prof.app(|| {
            if sample {
                stamp_chunk(sent, &mut buf[..n]);
            } else {
                fill_pattern(conn, sent, &mut buf[..n]);
                hash.update(&buf[..n]);
            }
        });
        write_all(s, &buf[..n]).await?;
        sent += n as u64;
    }
    s.shutdown().await?;
    // The sink closes after the last byte: its end of stream ends the measurement.
    let mut scratch = [0u8; 64];
    while s.read(&mut scratch).await? != 0 {}
    let elapsed_ns = t0.elapsed().as_nanos() as u64;
    let outcome = StreamOutcome {
        stream: conn,
        bytes: sent,
        hash: hash.0,
        mismatches: 0,
        elapsed_ns,
    };
    if !report {
        return Ok(outcome);
    }
    Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .str("role", "stream")
        .u64("stream", u64::from(conn))
        .transport(s, smc)
        .u64("bytes", sent)
        .u64("chunk", chunk as u64)
        .u64("elapsed_ns", elapsed_ns)
        .u64("bytes_per_sec", bytes_per_sec(sent, elapsed_ns))
        .str("verify", verify_name(c.verify))
        .hex("hash", hash.0)
        .u64("mismatches", 0)
        .irq_deltas(smc, irq_before)
        .raw("profile", &prof.json(s, elapsed_ns, "prep_ns"))
        .conn_stats(s)
        .emit();
    Ok(outcome)
}

/// Receives until end of stream, checking every byte against the pattern of `conn`;
/// prints the result line. `Mismatch` if a byte differs or the length is not `size=`
/// (when given).
pub async fn receive(
    smc: &'static Smc,
    c: &AppConfig,
    conn: u32,
    s: &mut SmcStream,
) -> Result<StreamOutcome, AppError> {
    receive_conn(smc, c, conn, s, true).await
}

/// [`receive`], printing the result line only when `report` is true.
async fn receive_conn(
    smc: &'static Smc,
    c: &AppConfig,
    conn: u32,
    s: &mut SmcStream,
    report: bool,
) -> Result<StreamOutcome, AppError> {
    // 256 KiB for one connection, less when many share the heap (at least 32 KiB).
    let buf_len = ((4usize << 20) / c.conns.max(1) as usize).clamp(32 << 10, 256 << 10);
    // verify=sample over SMC-D: zero-copy receive (the stamps are read in place from the
    // own DMB, nothing else is copied out); `buf_len` then bounds each window.
    let in_place =
        c.verify == Verify::Sample && matches!(s.transport(), Some(Transport::Smcd { .. }));
    let mut buf = if in_place {
        Vec::new()
    } else {
        vec![0u8; buf_len]
    };
    let mut hash = Fnv1a::default();
    let mut got = 0u64;
    let mut mismatches = 0u64;
    let mut t0 = None;
    // The sender's stream number, recognised from the first bytes (accept order need
    // not match the clients' numbering when they connect at once).
    let mut head = [0u8; HEAD_LEN];
    let mut head_len = 0usize;
    let mut stream_id: Option<u32> = None;
    let sample = c.verify == Verify::Sample;
    let mut sample_head = [0u8; SAMPLE_HEAD_LEN];
    if sample {
        hash = Fnv1a(0);
    }
    let irq_before = smc.interrupts();
    let mut prof = Profiler::start(s);
    loop {
        if in_place {
            let mut window_mismatches = 0;
            let mut check_cycles = 0;
            let n = s
                .read_in_place(buf_len, |w| {
                    let t = clock::rdtsc();
                    window_mismatches = check_window(got, w, &mut sample_head, &mut head_len);
                    check_cycles = clock::rdtsc().saturating_sub(t);
                })
                .await?;
            if n == 0 {
                break;
            }
            if t0.is_none() {
                t0 = Some(clock::now());
                prof = Profiler::start(s);
            } else {
                prof.app_cycles += check_cycles;
                prof.app_in_op_cycles += check_cycles;
            }
            mismatches += window_mismatches;
            got += n as u64;
            continue;
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if t0.is_none() {
            t0 = Some(clock::now());
            prof = Profiler::start(s);
        }
        let t_verify = clock::rdtsc();
        if sample {
            // Only the stamps are checked (works for reads straddling a stamp).
            mismatches += count_sample_mismatches(got, &buf[..n]);
            let take = (SAMPLE_HEAD_LEN - head_len).min(n);
            sample_head[head_len..head_len + take].copy_from_slice(&buf[..take]);
            head_len += take;
            got += n as u64;
            prof.app_cycles += clock::rdtsc().saturating_sub(t_verify);
            continue;
        }
        hash.update(&buf[..n]);
        let mut data = &buf[..n];
        let mut offset = got;
        if stream_id.is_none() {
            let take = (HEAD_LEN - head_len).min(n);
            head[head_len..head_len + take].copy_from_slice(&data[..take]);
            head_len += take;
            data = &data[take..];
            offset += take as u64;
            if head_len == HEAD_LEN {
                let id = identify(&head).unwrap_or(conn);
                mismatches += count_mismatches(id, 0, &head);
                stream_id = Some(id);
            }
        }
        if let Some(id) = stream_id {
            mismatches += count_mismatches(id, offset, data);
        }
        got += n as u64;
        prof.app_cycles += clock::rdtsc().saturating_sub(t_verify);
    }
    let stream_id = match stream_id {
        Some(id) => id,
        None if sample => identify_sample(&sample_head[..head_len]).unwrap_or(conn),
        // Shorter than the head: identify by what there is.
        None => {
            let id = identify(&head[..head_len]).unwrap_or(conn);
            mismatches += count_mismatches(id, 0, &head[..head_len]);
            id
        }
    };
    let elapsed_ns = t0.map_or(0, |t| t.elapsed().as_nanos() as u64);
    if !report {
        if mismatches > 0 || c.size.is_some_and(|size| size != got) {
            Report::new("error", c.name)
                .u64("conn", u64::from(conn))
                .u64("stream", u64::from(stream_id))
                .u64("bytes", got)
                .u64("mismatches", mismatches)
                .str("error", "received bytes differ from the sent ones")
                .emit();
            return Err(AppError::Mismatch);
        }
        return Ok(StreamOutcome {
            stream: stream_id,
            bytes: got,
            hash: hash.0,
            mismatches,
            elapsed_ns,
        });
    }
    // The sender's measurement ends when it reads our end of stream: send it before the
    // result line (serial output is slow under TCG). Its error, if any, comes after the
    // line.
    let shut = s.shutdown().await;
    Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .str("role", "sink")
        .u64("stream", u64::from(stream_id))
        .transport(s, smc)
        .u64("bytes", got)
        .u64("chunk", 0)
        .u64("elapsed_ns", elapsed_ns)
        .u64("bytes_per_sec", bytes_per_sec(got, elapsed_ns))
        .str("verify", verify_name(c.verify))
        .bool("in_place", in_place)
        .hex("hash", hash.0)
        .u64("mismatches", mismatches)
        .irq_deltas(smc, irq_before)
        .raw("profile", &prof.json(s, elapsed_ns, "verify_ns"))
        .conn_stats(s)
        .emit();
    if mismatches > 0 || c.size.is_some_and(|size| size != got) {
        return Err(AppError::Mismatch);
    }
    shut?;
    Ok(StreamOutcome {
        stream: stream_id,
        bytes: got,
        hash: hash.0,
        mismatches,
        elapsed_ns,
    })
}

/// Writes the first `limit` bytes (at most `size`) of the pattern of `conn` (`abort=`);
/// returns how many.
async fn abort_midway(
    c: &AppConfig,
    conn: u32,
    s: &mut SmcStream,
    limit: u64,
) -> Result<u64, AppError> {
    let total = limit.min(stream_size(c));
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        fill_pattern(conn, sent, &mut buf[..n]);
        write_all(s, &buf[..n]).await?;
        sent += n as u64;
    }
    Ok(sent)
}

/// Bound of one wait for heap between cycles (TIME-WAIT is 10 s).
const CYCLE_HEAP_WAIT: Duration = Duration::from_secs(30);

/// What the cycles of one connection slot added up to (`cycles=` above 1).
#[derive(Clone, Copy, Default)]
struct CycleSum {
    cycles: u64,
    smcd: u64,
    bytes: u64,
    hash: u64,
    mismatches: u64,
}

impl CycleSum {
    fn add(&mut self, o: &StreamOutcome, s: &SmcStream) {
        self.cycles += 1;
        self.smcd += u64::from(matches!(s.transport(), Some(Transport::Smcd { .. })));
        self.bytes += o.bytes;
        self.hash = self.hash.wrapping_add(o.hash);
        self.mismatches += o.mismatches;
    }

    fn emit(&self, c: &AppConfig, conn: u32, role: &str) {
        Report::new("cycles", c.name)
            .u64("conn", u64::from(conn))
            .str("role", role)
            .u64("cycles", self.cycles)
            .u64("smcd", self.smcd)
            .u64("bytes", self.bytes)
            .hex("hash", self.hash)
            .u64("mismatches", self.mismatches)
            .emit();
    }
}

/// The stream client on `conns` connections at once; each connection slot runs
/// `cycles` connect/send/close cycles in sequence.
pub async fn stream(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let peer = c.peer.ok_or(AppError::Config("stream needs peer="))?;
    let tasks: Vec<AppFuture> = (0..c.conns)
        .map(|i| {
            Box::pin(async move {
                if let Some(limit) = c.abort_after {
                    let mut s = super::connect_reported(smc, &c, peer, i).await?;
                    let n = abort_midway(&c, i, &mut s, limit).await?;
                    s.abort()?;
                    Report::new("aborted", c.name)
                        .u64("conn", u64::from(i))
                        .u64("bytes", n)
                        .emit();
                    return Ok(());
                }
                if c.cycles <= 1 {
                    let mut s = super::connect_reported(smc, &c, peer, i).await?;
                    send(smc, &c, i, &mut s).await?;
                    s.close()?;
                    return Ok(());
                }
                let mut sum = CycleSum::default();
                for _ in 0..c.cycles {
                    super::wait_for_heap(CYCLE_HEAP_RESERVE, CYCLE_HEAP_WAIT).await?;
                    let mut s = smc.connect(peer, c.port).await?;
                    let o = send_conn(smc, &c, i, &mut s, false).await?;
                    sum.add(&o, &s);
                    s.close()?;
                }
                sum.emit(&c, i, "stream");
                Ok(())
            }) as AppFuture
        })
        .collect();
    join_all(tasks).await.into_iter().collect()
}

/// The sink server: accepts `conns` connections and receives on all at once; with
/// `cycles` above 1 it does that `cycles` times on one listener, then prints one
/// summary per sender stream. A failed connection (an `error` line with its `conn`)
/// does not end the cycles; the app fails at the end with the first error.
pub async fn sink(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    if c.cycles <= 1 {
        return sink_once(smc, c).await;
    }
    let mut listener = super::listen(smc, &c)?;
    Report::new("ready", c.name)
        .u64("port", u64::from(c.port))
        .strs("devices", &smc.device_kinds())
        .emit();
    let mut sums: BTreeMap<u32, CycleSum> = BTreeMap::new();
    let mut first_error = None;
    for _ in 0..c.cycles {
        let mut streams = Vec::new();
        for _ in 0..c.conns {
            streams.push(listener.accept().await?);
        }
        let tasks: Vec<Pin<Box<dyn Future<Output = _>>>> = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                Box::pin(async move {
                    let o = receive_conn(smc, &c, i as u32, &mut s, false).await;
                    let o = o.map(|o| {
                        let mut one = CycleSum::default();
                        one.add(&o, &s);
                        (o.stream, one)
                    });
                    // The sender waits for this close before its next cycle: hold it
                    // back until this side's heap has room for that connection (the
                    // server's TCP sockets linger in TIME-WAIT).
                    super::wait_for_heap(CYCLE_HEAP_RESERVE, CYCLE_HEAP_WAIT).await?;
                    s.close()?;
                    o
                })
                    as Pin<Box<dyn Future<Output = Result<(u32, CycleSum), AppError>>>>
            })
            .collect();
        for (conn, result) in join_all(tasks).await.into_iter().enumerate() {
            // One failed connection (a peer that died) does not stop the server: it is
            // reported, the next cycle is served, and the app fails at the end.
            let (stream, one) = match result {
                Ok(r) => r,
                Err(e) => {
                    Report::new("error", c.name)
                        .u64("conn", conn as u64)
                        .display("error", &e)
                        .emit();
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let sum = sums.entry(stream).or_default();
            sum.cycles += one.cycles;
            sum.smcd += one.smcd;
            sum.bytes += one.bytes;
            sum.hash = sum.hash.wrapping_add(one.hash);
            sum.mismatches += one.mismatches;
        }
    }
    for (stream, sum) in &sums {
        sum.emit(&c, *stream, "sink");
    }
    first_error.map_or(Ok(()), Err)
}

/// The sink server for one round: accepts `conns` connections and receives on all at
/// once.
async fn sink_once(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let streams = super::accept_all(smc, &c).await?;
    let tasks: Vec<AppFuture> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            Box::pin(async move {
                receive(smc, &c, i as u32, &mut s).await?;
                s.close()?;
                Ok(())
            }) as AppFuture
        })
        .collect();
    join_all(tasks).await.into_iter().collect()
}
