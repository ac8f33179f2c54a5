//! `ivshmem-probe`: a fake QEMU client for scripts and tests.
//!
//! Connects to an ivshmem server, runs the connect sequence (protocol reference §7.2)
//! and prints one line per event on stdout:
//! `joined id=K peers=[..] region_size=S` after the handshake, the directory with
//! `--dump`, then (with `--hold`) `peer P joined` / `peer P left` / `control rung` until
//! the server closes the connection or the probe is killed.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ivshmem_region::VECTOR_CONTROL;
use ivshmem_server::client::{Client, Directory};
use ivshmem_server::proto::{self, RecvError};

/// Fake ivshmem client: handshake, print what arrives.
#[derive(Debug, Parser)]
#[command(name = "ivshmem-probe", version)]
struct Args {
    /// Server socket.
    #[arg(short = 'S', long = "socket")]
    socket: PathBuf,
    /// Vectors this client expects per peer.
    #[arg(short = 'n', long = "vectors", default_value_t = ivshmem_region::VECTORS)]
    vectors: u32,
    /// Print the region header and directory after the handshake.
    #[arg(long)]
    dump: bool,
    /// Stay connected and print join/leave notices and control-vector rings.
    #[arg(long)]
    hold: bool,
    /// Seconds to wait for the handshake.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args = Args::parse();
    let client = match Client::connect(&args.socket) {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "ivshmem-probe: cannot connect to {}: {e}",
                args.socket.display()
            );
            return ExitCode::from(1);
        }
    };
    let handshake = match client.handshake(args.vectors as usize, Duration::from_secs(args.timeout))
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ivshmem-probe: handshake failed: {e}");
            return ExitCode::from(1);
        }
    };
    let peers: Vec<u16> = handshake.peers.keys().copied().collect();
    let directory = Directory::read(handshake.shm.as_fd());
    let size = directory.as_ref().map_or(0, |d| d.layout.region_size());
    say(format_args!(
        "joined id={} peers={peers:?} region_size={size}",
        handshake.id
    ));
    if args.dump {
        match &directory {
            Ok(d) => {
                say(format_args!(
                    "server_epoch={} max_peers={} slots={} area_size={} vectors={}",
                    d.server_epoch,
                    d.layout.max_peers(),
                    d.layout.slots_per_peer(),
                    d.layout.area_size(),
                    d.vectors
                ));
                for (id, entry) in d.entries.iter().enumerate() {
                    if let Some(e) = entry {
                        say(format_args!(
                            "peer {id}: {} epoch={} gid={}",
                            e.state, e.epoch, e.gid
                        ));
                    }
                }
            }
            Err(e) => say(format_args!("directory unreadable: {e}")),
        }
    }
    if !args.hold {
        return ExitCode::SUCCESS;
    }
    let control = handshake.own.get(usize::from(VECTOR_CONTROL));
    let mut known: std::collections::BTreeSet<i64> = peers.iter().map(|&p| i64::from(p)).collect();
    loop {
        if let Some(fd) = control {
            if proto::drain(fd.as_fd()).unwrap_or(0) > 0 {
                say(format_args!("control rung"));
            }
        }
        match client.recv(Duration::from_millis(200)) {
            Ok(msg) if msg.fd.is_some() => {
                // One message per vector: report the join once.
                if known.insert(msg.value) {
                    say(format_args!("peer {} joined", msg.value));
                }
            }
            Ok(msg) => {
                known.remove(&msg.value);
                say(format_args!("peer {} left", msg.value));
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Eof) => {
                say(format_args!("server closed the connection"));
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ivshmem-probe: {e}");
                return ExitCode::from(1);
            }
        }
    }
}
