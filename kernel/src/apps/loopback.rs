//! `app=loopback`: stream client and sink server in this image, over two NICs of one
//! QEMU hub, so the handshake picks the loopback ISM (SMC-D inside one VM, like Linux's
//! smc-lo); byte-exact by comparing both ends' hashes.
//!
//! `app=loopback-pingpong`: the echo server and the pingpong client in this image the same
//! way; their lines are those of `app=echo` and `app=pingpong` (`"app":"echo"`,
//! `"app":"pingpong"`), so a loopback ping-pong reads like one between two VMs.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

use smcd::socket::Transport;

use super::stream::{receive, send, StreamOutcome};
use super::{join_all, AppConfig, AppError, Report};
use crate::smc::Smc;

type Task<'a> =
    Pin<Box<dyn Future<Output = Result<(StreamOutcome, Option<Transport>), AppError>> + 'a>>;

/// The first interface's address: where the in-image server listens.
fn server_address(smc: &Smc) -> Result<core::net::Ipv4Addr, AppError> {
    Ok(smc
        .interfaces()
        .first()
        .ok_or(AppError::Config("no interface"))?
        .address()
        .address)
}

/// Runs `conns` stream connections from the second interface to the first.
pub async fn loopback(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let server_addr = server_address(smc)?;
    let mut listener = smc.bind(c.port)?;
    Report::new("ready", c.name)
        .u64("port", u64::from(c.port))
        .strs("devices", &smc.device_kinds())
        .emit();
    let server = async {
        let mut streams = Vec::new();
        for i in 0..c.conns {
            let s = listener.accept().await?;
            super::report_conn(smc, &c, i, "server", &s);
            streams.push(s);
        }
        let tasks: Vec<Task<'_>> = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                Box::pin(async move {
                    let o = receive(smc, &c, i as u32, &mut s).await?;
                    let t = s.transport();
                    s.close()?;
                    Ok((o, t))
                }) as Task<'_>
            })
            .collect();
        join_all(tasks)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, AppError>>()
    };
    let clients = async {
        let tasks: Vec<Task<'_>> = (0..c.conns)
            .map(|i| {
                Box::pin(async move {
                    let mut s = super::connect_reported(smc, &c, server_addr, i).await?;
                    let o = send(smc, &c, i, &mut s).await?;
                    let t = s.transport();
                    s.close()?;
                    Ok((o, t))
                }) as Task<'_>
            })
            .collect();
        join_all(tasks)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, AppError>>()
    };
    let (sinks, senders) = futures_util::future::join(server, clients).await;
    let (sinks, senders) = (sinks?, senders?);
    let kinds = smc.device_kinds();
    let mut all_ok = sinks.len() == senders.len();
    for (i, (sent, transport)) in senders.iter().enumerate() {
        // Pair by stream number: accept order need not follow the clients' numbering.
        let Some((got, _)) = sinks.iter().find(|(o, _)| o.stream == sent.stream) else {
            all_ok = false;
            Report::new("error", c.name)
                .u64("conn", i as u64)
                .str("error", "no sink saw this stream")
                .emit();
            continue;
        };
        let same = sent.hash == got.hash && sent.bytes == got.bytes && got.mismatches == 0;
        let loopback_smcd = matches!(transport, Some(Transport::Smcd { device, .. })
            if kinds.get(*device) == Some(&"loopback"));
        // With smc=on the connection must have used loopback SMC-D.
        let transport_ok = loopback_smcd || !smc.config().smc;
        all_ok &= same && transport_ok;
        Report::new("result", c.name)
            .u64("conn", i as u64)
            .u64("bytes", sent.bytes)
            .u64("elapsed_ns", sent.elapsed_ns)
            .u64(
                "bytes_per_sec",
                super::stream::bytes_per_sec(sent.bytes, sent.elapsed_ns),
            )
            .hex("hash", sent.hash)
            .hex("sink_hash", got.hash)
            .bool("loopback_smcd", loopback_smcd)
            .bool("match", same)
            .emit();
    }
    if all_ok {
        Ok(())
    } else {
        Err(AppError::Mismatch)
    }
}

/// Runs the echo server on the first interface and the pingpong client from the second
/// one, concurrently; fails if either fails or (with `smc=on`) the client's connections
/// did not all use SMC-D.
pub async fn loopback_pingpong(smc: &'static Smc, c: AppConfig) -> Result<(), AppError> {
    let server_addr = server_address(smc)?;
    let server = super::echo::echo(smc, AppConfig { name: "echo", ..c });
    let client = super::pingpong::pingpong(
        smc,
        AppConfig {
            name: "pingpong",
            peer: Some(server_addr),
            ..c
        },
    );
    let (served, measured) = futures_util::future::join(server, client).await;
    served?;
    measured?;
    // Both ends of every connection are in this image: 2 × conns SMC-D handshakes (the
    // result lines name the device, `"device":"loopback"`).
    let smcd = smc.counters().handshakes_smcd >= 2 * u64::from(c.conns);
    if smc.config().smc && !smcd {
        Report::new("error", c.name)
            .str("error", "the ping-pong did not run over SMC-D loopback")
            .emit();
        return Err(AppError::Mismatch);
    }
    Ok(())
}
