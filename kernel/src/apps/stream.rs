//! `app=stream` (client: sends `size` bytes in `chunk` writes) and `app=sink` (server:
//! receives, checks the pattern): throughput, and a running FNV-1a hash both print.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use embedded_io_async::Read;

use super::{
    count_mismatches, fill_pattern, join_all, write_all, AppConfig, AppError, AppFuture, Fnv1a,
    Report,
};
use crate::clock;
use crate::smc::{Smc, SmcStream};

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

fn bytes_per_sec(bytes: u64, ns: u64) -> u64 {
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
    let size = stream_size(c);
    let chunk = usize::try_from(c.chunk)
        .ok()
        .filter(|n| (1..=(16 << 20)).contains(n))
        .ok_or(AppError::Config("chunk must be 1..=16M"))?;
    let mut buf = vec![0u8; chunk];
    let mut hash = Fnv1a::default();
    let t0 = clock::now();
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(chunk as u64) as usize;
        fill_pattern(conn, sent, &mut buf[..n]);
        hash.update(&buf[..n]);
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
    Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .str("role", "stream")
        .u64("stream", u64::from(conn))
        .transport(s, smc)
        .u64("bytes", sent)
        .u64("chunk", chunk as u64)
        .u64("elapsed_ns", elapsed_ns)
        .u64("bytes_per_sec", bytes_per_sec(sent, elapsed_ns))
        .hex("hash", hash.0)
        .u64("mismatches", 0)
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
    // 256 KiB for one connection, less when many share the heap (at least 32 KiB).
    let buf_len = ((4usize << 20) / c.conns.max(1) as usize).clamp(32 << 10, 256 << 10);
    let mut buf = vec![0u8; buf_len];
    let mut hash = Fnv1a::default();
    let mut got = 0u64;
    let mut mismatches = 0u64;
    let mut t0 = None;
    // The sender's stream number, recognised from the first bytes (accept order need
    // not match the clients' numbering when they connect at once).
    let mut head = [0u8; HEAD_LEN];
    let mut head_len = 0usize;
    let mut stream_id: Option<u32> = None;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        t0.get_or_insert_with(clock::now);
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
    }
    let stream_id = match stream_id {
        Some(id) => id,
        // Shorter than the head: identify by what there is.
        None => {
            let id = identify(&head[..head_len]).unwrap_or(conn);
            mismatches += count_mismatches(id, 0, &head[..head_len]);
            id
        }
    };
    let elapsed_ns = t0.map_or(0, |t| t.elapsed().as_nanos() as u64);
    Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .str("role", "sink")
        .u64("stream", u64::from(stream_id))
        .transport(s, smc)
        .u64("bytes", got)
        .u64("chunk", 0)
        .u64("elapsed_ns", elapsed_ns)
        .u64("bytes_per_sec", bytes_per_sec(got, elapsed_ns))
        .hex("hash", hash.0)
        .u64("mismatches", mismatches)
        .conn_stats(s)
        .emit();
    if mismatches > 0 || c.size.is_some_and(|size| size != got) {
        return Err(AppError::Mismatch);
    }
    Ok(StreamOutcome {
        stream: stream_id,
        bytes: got,
        hash: hash.0,
        mismatches,
        elapsed_ns,
    })
}

/// The stream client on `conns` connections at once.
pub async fn stream(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let peer = c.peer.ok_or(AppError::Config("stream needs peer="))?;
    let tasks: Vec<AppFuture> = (0..c.conns)
        .map(|i| {
            Box::pin(async move {
                let mut s = super::connect_reported(smc, &c, peer, i).await?;
                send(smc, &c, i, &mut s).await?;
                s.close()?;
                Ok(())
            }) as AppFuture
        })
        .collect();
    join_all(tasks).await.into_iter().collect()
}

/// The sink server: accepts `conns` connections and receives on all at once.
pub async fn sink(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
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
