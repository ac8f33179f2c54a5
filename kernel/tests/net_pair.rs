//! In-QEMU test across two VMs: TCP through smoltcp/virtio-net between two guests joined
//! by a QEMU socket netdev. The role comes from the command line (kernel/tests/
//! profiles-net.sh starts the `app=sink` VM in pre_net_pair; the runner's VM is
//! `app=stream`). Three connections, port P = `port=`:
//!
//! | port | sink (server) SMC | stream (client) SMC | bytes  | expected option   |
//! |------|-------------------|---------------------|--------|-------------------|
//! | P    | `smc=`            | `smc=`              | `size=`| SYN + SYN-ACK     |
//! | P+1  | off               | on                  | 64 KiB | SYN only          |
//! | P+2  | on                | off                 | 64 KiB | none              |
//!
//! Each side checks its own view (byte-exact stream, `peer_smc_capable`); post_net_pair
//! checks the other VM's verdict and the options in the pcap of the link.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use kernel::cmdline::{self, App, Config};
use kernel::net::{self, NetError, NetInterface, TcpStream};
use kernel::{clock, executor, platform, serial_println};

kernel::test_main!(pair_connections);

/// The whole exchange must finish within this (inside the runner's default 60 s timeout).
const DEADLINE: Duration = Duration::from_secs(50);
/// Size of the two extra (fallback) connections.
const SMALL_LEN: u64 = 64 * 1024;
/// How long the client retries a refused connect (the server VM may still be booting).
const CONNECT_RETRY: Duration = Duration::from_secs(30);

/// A byte sequence without short periods (so a dropped or repeated segment shows).
fn pattern(index: u64) -> u8 {
    (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn config() -> Config {
    let line = kernel::boot_info().cmdline.as_str();
    cmdline::parse(line).unwrap_or_else(|e| panic!("command line: {e}"))
}

/// The three connections of the table in the module doc: (port offset, sink SMC,
/// stream SMC, bytes, expected negotiation).
fn plan(config: &Config) -> [(u16, bool, bool, u64, bool); 3] {
    let size = config.size.expect("size=");
    [
        (0, config.smc, config.smc, size, config.smc),
        (1, false, true, SMALL_LEN, false),
        (2, true, false, SMALL_LEN, false),
    ]
}

fn pair_connections() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let config = config();
    let iface = net::init_from_cmdline(&config).unwrap_or_else(|e| panic!("{e}"));
    let base_port = config.port.expect("port=");
    let peer = config.peer.expect("peer=");
    let started = clock::now();
    let result = executor::run_until(executor::with_deadline(started + DEADLINE, async {
        match config.app {
            Some(App::Sink) => sink(iface, base_port, &config).await,
            Some(App::Stream) => stream(iface, peer, base_port, &config).await,
            other => panic!("app={other:?}: net_pair needs app=sink or app=stream"),
        }
    }))
    .unwrap_or_else(|_| panic!("pair exchange did not finish within {DEADLINE:?}"));
    result.unwrap_or_else(|e| panic!("{e}"));
    assert!(iface.receive_interrupts() > 0, "no receive interrupt taken");
}

async fn sink(
    iface: &'static NetInterface,
    base_port: u16,
    config: &Config,
) -> Result<(), NetError> {
    let plan = plan(config);
    let mut listeners = vec![];
    for &(offset, sink_smc, ..) in &plan {
        listeners.push(iface.listen(base_port + offset, sink_smc)?);
    }
    // pre_net_pair starts the client VM after this line.
    serial_println!("net_pair: listening on {base_port}..{}", base_port + 2);
    for (listener, &(offset, _, _, len, expect_smc)) in listeners.iter_mut().zip(&plan) {
        let stream = listener.accept().await?;
        let capable = stream.peer_smc_capable();
        let started = clock::now();
        let received = receive_pattern(&stream).await?;
        let elapsed = clock::now() - started;
        stream.close().await;
        serial_println!(
            "net_pair: sink port {}: {received} bytes in {} ms, smc {capable}",
            base_port + offset,
            elapsed.as_millis()
        );
        assert_eq!(received, len, "port {}: byte count", base_port + offset);
        assert_eq!(
            capable,
            expect_smc,
            "port {}: SMC negotiation",
            base_port + offset
        );
    }
    Ok(())
}

/// Read to end of stream, checking every byte against the pattern; returns the count.
async fn receive_pattern(stream: &TcpStream) -> Result<u64, NetError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received: u64 = 0;
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(received);
        }
        for (i, &byte) in buffer[..n].iter().enumerate() {
            let at = received + i as u64;
            assert_eq!(byte, pattern(at), "stream corrupted at byte {at}");
        }
        received += n as u64;
    }
}

async fn stream(
    iface: &'static NetInterface,
    peer: Ipv4Addr,
    base_port: u16,
    config: &Config,
) -> Result<(), NetError> {
    for (offset, _, stream_smc, len, expect_smc) in plan(config) {
        let port = base_port + offset;
        let give_up = clock::now() + CONNECT_RETRY;
        let stream = loop {
            match iface.connect((peer, port), stream_smc).await {
                Ok(stream) => break stream,
                Err(NetError::ConnectionReset) if clock::now() < give_up => {
                    executor::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let capable = stream.peer_smc_capable();
        let started = clock::now();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut sent: u64 = 0;
        while sent < len {
            let n = (chunk.len() as u64).min(len - sent) as usize;
            for (i, byte) in chunk[..n].iter_mut().enumerate() {
                *byte = pattern(sent + i as u64);
            }
            stream.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        stream.flush().await?;
        let elapsed = clock::now() - started;
        stream.close().await;
        let mbit = (len * 8) as f64 / (elapsed.as_micros().max(1) as f64);
        serial_println!(
            "net_pair: stream port {port}: {len} bytes in {} ms ({mbit:.1} Mbit/s), smc {capable}",
            elapsed.as_millis()
        );
        assert_eq!(capable, expect_smc, "port {port}: SMC negotiation");
    }
    Ok(())
}
