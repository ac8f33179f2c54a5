//! `app=echo`: a server that sends back every byte it receives, on `conns` connections.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use embedded_io_async::Read;

use super::profile::Profiler;
use super::{join_all, write_all, AppConfig, AppError, AppFuture, Report};
use crate::clock;
use crate::smc::{Smc, SmcStream};

/// Accepts `conns` connections and echoes on each until the client closes.
pub async fn echo(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let streams = super::accept_all(smc, &c).await?;
    let tasks: Vec<AppFuture> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| Box::pin(serve(smc, c, i as u32, s)) as AppFuture)
        .collect();
    join_all(tasks).await.into_iter().collect()
}

async fn serve(
    smc: &'static Smc,
    c: AppConfig,
    conn: u32,
    mut s: SmcStream,
) -> Result<(), AppError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    // Profiled from the first received bytes (the wait for the client's first message
    // is not the echo's time).
    let mut prof: Option<(Profiler, clock::Instant)> = None;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if prof.is_none() {
            prof = Some((Profiler::start(&s), clock::now()));
        }
        write_all(&mut s, &buf[..n]).await?;
        bytes += n as u64;
    }
    let mut report = Report::new("result", c.name)
        .u64("conn", u64::from(conn))
        .transport(&s, smc)
        .u64("bytes", bytes);
    if let Some((prof, from)) = prof {
        report = report.raw(
            "profile",
            &prof.json(&s, from.elapsed().as_nanos() as u64, "app_ns"),
        );
    }
    report.conn_stats(&s).emit();
    s.close()?;
    Ok(())
}
