//! `app=pingpong`: `count` round trips of `size` bytes on each of `conns` connections;
//! latency percentiles from the kernel clock, after `warmup` unmeasured round trips.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::profile::Profiler;
use super::{fill_pattern, join_all, write_all, AppConfig, AppError, AppFuture, Report};
use crate::clock;
use crate::smc::Smc;

/// Runs the client on every connection at once.
pub async fn pingpong(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let tasks: Vec<AppFuture> = (0..c.conns)
        .map(|i| Box::pin(one(smc, c, i)) as AppFuture)
        .collect();
    join_all(tasks).await.into_iter().collect()
}

async fn one(smc: &'static Smc, c: AppConfig, conn: u32) -> Result<(), AppError> {
    let peer = c.peer.ok_or(AppError::Config("pingpong needs peer="))?;
    let size = c.size.unwrap_or(super::DEFAULT_PING_SIZE);
    let size = usize::try_from(size)
        .ok()
        .filter(|s| (1..=(16 << 20)).contains(s))
        .ok_or(AppError::Config("pingpong size must be 1..=16M"))?;
    let mut s = super::connect_reported(smc, &c, peer, conn).await?;
    let mut out = vec![0u8; size];
    let mut back = vec![0u8; size];
    let warmup = c.warmup();
    let mut rtts = super::samples(c.count)?;
    // Deltas of the VM-wide interrupt and polling counters over the measured round trips.
    let mut irq_before = smc.interrupts();
    let mut poll_before = smc.polling_stats();
    let mut prof = Profiler::start(&s);
    let mut measured_from = clock::now();
    for k in 0..warmup.saturating_add(c.count) {
        if k == warmup {
            irq_before = smc.interrupts();
            poll_before = smc.polling_stats();
            prof = Profiler::start(&s);
            measured_from = clock::now();
        }
        prof.app(|| fill_pattern(conn, k * size as u64, &mut out));
        let t0 = clock::now();
        write_all(&mut s, &out).await?;
        if s.read_full(&mut back).await? != size {
            return Err(AppError::Eof);
        }
        if k >= warmup {
            rtts.push(t0.elapsed().as_nanos() as u64);
        }
        if !prof.app(|| back == out) {
            return Err(AppError::Mismatch);
        }
    }
    let measured_ns = measured_from.elapsed().as_nanos() as u64;
    let poll = smc.polling_stats();
    rtts.sort_unstable();
    Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .transport(&s, smc)
        .u64("round_trips", c.count)
        .u64("size", size as u64)
        .u64("warmup", warmup)
        .latency(&rtts)
        .irq_deltas(smc, irq_before)
        .u64(
            "spin_hits",
            poll.spin_hits.saturating_sub(poll_before.spin_hits),
        )
        .u64("sleeps", poll.sleeps.saturating_sub(poll_before.sleeps))
        .raw("profile", &prof.json(&s, measured_ns, "check_ns"))
        .conn_stats(&s)
        .emit();
    s.close()?;
    Ok(())
}
