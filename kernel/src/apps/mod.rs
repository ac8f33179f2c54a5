//! Apps: what the kernel runs over SMC sockets, chosen by `app=` on the command line.
//!
//! # Writing your own app
//!
//! An app is an `async fn` taking the SMC system (the socket API, [`crate::smc`]) and its
//! configuration ([`AppConfig`]), registered by name in [`APPS`]:
//!
//! ```ignore
//! use embedded_io_async::{Read, Write};
//! use kernel::apps::{AppConfig, AppError, AppFuture, Report};
//! use kernel::smc::Smc;
//!
//! async fn hello(smc: &'static Smc, config: AppConfig) -> Result<(), AppError> {
//!     let peer = config.peer.ok_or(AppError::Config("hello needs peer="))?;
//!     let mut conn = smc.connect(peer, config.port).await?;
//!     conn.write_all(b"hello").await?;
//!     let mut reply = [0u8; 5];
//!     conn.read_exact(&mut reply).await.map_err(|_| AppError::Eof)?;
//!     Report::new("result", "hello").transport(&conn, smc).emit();
//!     conn.close()?;
//!     Ok(())
//! }
//!
//! fn hello_entry(smc: &'static Smc, config: AppConfig) -> AppFuture {
//!     Box::pin(hello(smc, config))
//! }
//! // + an `App` variant and its name in `kernel/src/cmdline.rs`, and
//! // `AppEntry { name: "hello", run: AppRun::Smc(hello_entry), .. }` in `APPS`.
//! ```
//!
//! Apps registered with [`AppRun::Standalone`] (`floor`, `floor-server`) get only the
//! platform: they take the ivshmem device themselves, and no `counters` line is printed.
//!
//! [`run`] (called by `main` when `app=` is given) brings up the platform, the network
//! (`ip=`, first virtio-net; `app=loopback` also the second one), the SMC system (`smc=`,
//! `spin=`), runs the app, prints the final `done` line and ends the VM (exit code
//! success when the app succeeded).
//!
//! # Command line (keys the apps read)
//!
//! | key | meaning | used by |
//! |-----|---------|---------|
//! | `app=` | `echo` `pingpong` `stream` `sink` `loopback` `loopback-pingpong` `floor` `floor-server` | all |
//! | `ip=`, `peer=` | own address/prefix, server address | all; clients need `peer=` |
//! | `port=` | TCP port (default 5000) | all |
//! | `smc=on\|off` | offer SMC (TCP option); off = plain TCP | all |
//! | `conns=N` | connections at once (server: how many it serves, then done) | all |
//! | `count=N` | measured round trips (default 1000) | pingpong, floor |
//! | `warmup=N` | unmeasured round trips before them (default `min(count/100, 1000)`) | pingpong, floor |
//! | `verify=full\|sample` | `full` (default): every received byte against the pattern, FNV-1a `hash`; `sample`: the sender sends one buffer (filled once with the pattern) with the 8-byte little-endian stream offset stamped at every 4 KiB-aligned stream offset, the sink checks only those stamp bytes (`mismatches`), `"hash":"0000000000000000"` on both ends | stream, sink, loopback |
//! | `dmb=` | own DMB length, a power of two 16K..=1M (`SmcConfig::dmb_len`; default the stack's) | all SMC apps |
//! | `size=` | pingpong: message bytes (default 64); stream/sink/loopback: bytes per connection (default 16M) | |
//! | `chunk=` | bytes per write (default 64K) | stream, loopback |
//! | `cycles=N` | each of the `conns` slots connects, transfers `size` bytes and closes N times in sequence (default 1); the sink serves `conns` × N connections. Back-pressure: the next cycle waits (at most 30 s) for 4 MiB of free heap — the client before connecting, the sink before its close (closed TCP sockets keep their buffers through TIME-WAIT) | stream, sink |
//! | `abort=` | bytes: the stream client writes that many bytes (at most `size`) on each connection, then aborts it and prints `{"event":"aborted","app":"stream","conn":0,"bytes":..}` instead of a result line (the sink reads `ConnectionReset`) | stream |
//! | `spin=µs` | adaptive polling budget before sleeping (default 0) | all |
//!
//! # Serial output: one JSON object per line
//!
//! Lines starting with `{` are JSON events; everything else is the human-readable log.
//! Every line has `"event"` and `"app"`:
//!
//! - `{"event":"ready","app":"sink","port":5000,"devices":["ivshmem","loopback"]}` —
//!   a server is listening (host scripts start the client after it).
//! - `{"event":"conn","app":..,"conn":0,"role":"client"|"server",<transport>}` — one
//!   connection's handshake is over. `<transport>` is either
//!   `"transport":"smcd","smc_version":2,"device":"ivshmem"|"loopback","first_contact":true,"peer_gid":"<32 hex>"`
//!   or `"transport":"tcp","reason":"0x03010000","by_peer":false` (the decline reason).
//! - `{"event":"result","app":"pingpong","conn":0,<transport>,"round_trips":1000,"size":64,"warmup":10,<latency>,"irq_signal":..,"irq_control":..,"spin_hits":..,"sleeps":..,"stats":{<conn counters>},"tcp_bytes_tx":..,"tcp_bytes_rx":..}`
//!   — `<latency>` = `"min_ns":..,"p50_ns":..,"p90_ns":..,"p99_ns":..,"p999_ns":..,"max_ns":..,"mean_ns":..,"cdf_ns":[101 numbers]`
//!   over the measured round trips (nearest-rank percentiles; `cdf_ns` holds the 0th,
//!   1st, ..., 100th); `irq_*` (ivshmem MSI-X interrupts), `spin_hits` and `sleeps`
//!   (adaptive polling) are this VM's deltas over the measured round trips (VM-wide: with
//!   `conns` above 1 they include the other connections).
//! - `{"event":"result","app":"stream"|"sink","conn":0,"role":"stream"|"sink","stream":0,<transport>,"bytes":..,"chunk":..,"elapsed_ns":..,"bytes_per_sec":..,"verify":"full"|"sample","hash":"<16 hex>","mismatches":0,"irq_signal":..,"irq_control":..,"stats":{..},"tcp_bytes_tx":..,"tcp_bytes_rx":..}`
//!   — `irq_*`: this VM's MSI-X interrupt deltas from the connection's first to its last
//!   byte (VM-wide, as above). With `verify=sample` the sink recognises `stream` from the
//!   pattern bytes 8..16 (needs `chunk` >= 16, else `stream` is the local `conn`).
//!   Otherwise:
//!   `hash` is FNV-1a 64 over the connection's bytes (the same on both sides when
//!   byte-exact); `stream` is the client's connection number, whose byte pattern the
//!   client sends and the sink recognises from the first 8 bytes (so results pair up by
//!   `stream`, whatever the accept order; `conn` is the local index). The sink counts
//!   bytes differing from that pattern (`mismatches`; `"chunk":0` on the sink).
//!   With `cycles=` above 1 the per-connection `conn` and `result` lines are left out;
//!   each slot prints one summary instead:
//!   `{"event":"cycles","app":"stream"|"sink","conn":0,"role":..,"cycles":1000,"smcd":1000,"bytes":..,"hash":"<16 hex>","mismatches":0}`
//!   — `smcd` counts the cycles that ran over SMC-D, `hash` is the wrapping sum of the
//!   cycles' FNV-1a hashes (the same on both sides when every cycle was byte-exact; the
//!   sink sums per sender stream, so its line `conn` is the sender's stream number).
//! - `{"event":"result","app":"echo","conn":0,<transport>,"bytes":..,"stats":{..},..}`
//! - `{"event":"result","app":"loopback","conn":0,"bytes":..,"elapsed_ns":..,"bytes_per_sec":..,"hash":..,"sink_hash":..,"loopback_smcd":true,"match":true}`
//!   — the sender's bytes and time (first byte to the sink's close), both ends' hashes.
//! - `{"event":"counters","app":..,"stack":{<smcd_counters>},"tcp_bytes_tx":..,"tcp_bytes_rx":..,"spin_us":0,"spin_polls":..,"spin_hits":..,"sleeps":..,"irq_control":..,"irq_signal":..}`
//!   — the stack-wide counters (handshakes, `fallbacks` by reason like
//!   `"fallbacks":{"0x03010000":1}`, CDCs, DMBs...; smcd `GlobalCounters::write_json`),
//!   the TCP bytes of all connections (CLC + fallback payload), adaptive polling, and
//!   the DMB pools at the end: `"link_groups":..,"dmbs_in_use":..,"dmbs_pooled":..`
//!   (every registered DMB is freed or pooled: `dmbs_registered` = `dmbs_freed` +
//!   `dmbs_pooled` when none is in use).
//! - `{"event":"ready","app":"floor-server","peer_id":0,"region_bytes":67108864}` — the
//!   floor server formatted its scratch page (see the `floor` module) and waits for
//!   `app=floor`, which prints (measurements in the module docs):
//!   `{"event":"result","app":"floor","kind":"shm_pingpong"|"doorbell","round_trips":N,"warmup":W,<latency>}`
//!   and three `{"event":"result","app":"floor","kind":"memcpy","src":"heap"|"shm","dst":"heap"|"shm","block":1048576,"bytes":..,"elapsed_ns":..,"bytes_per_sec":..}`
//!   (heap->heap, heap->shm, shm->heap).
//! - `{"event":"error","app":..,"conn":0,"error":"<text>"}`
//! - `{"event":"done","app":..,"ok":true,"errors":0}` — always the last line of an app.
//!
//! `<conn counters>` = `bytes_tx`, `bytes_rx`, `cdcs_tx`, `cdcs_rx`, `signals_tx`,
//! `signals_rx`, `clc_bytes_tx`, `clc_bytes_rx`.

mod echo;
mod floor;
pub mod json;
mod loopback;
mod pingpong;
mod profile;
mod stream;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::future::{poll_fn, Future};
use core::net::Ipv4Addr;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;

pub use json::Report;

use crate::cmdline::{self, App, Ipv4Cidr, Verify};
use crate::net::{self, NetError, NetInterface};
use crate::smc::{self, Smc, SmcConfig, SmcError, SmcListener, SmcStream};
use crate::{executor, platform, qemu};

/// Default TCP port of the apps.
pub const DEFAULT_PORT: u16 = 5000;
/// Default pingpong message size.
pub const DEFAULT_PING_SIZE: u64 = 64;
/// Default pingpong round trips.
pub const DEFAULT_COUNT: u64 = 1000;
/// Default bytes per stream connection.
pub const DEFAULT_STREAM_SIZE: u64 = 16 << 20;
/// Default bytes per stream write.
pub const DEFAULT_CHUNK: u64 = 64 << 10;

/// What an app gets from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppConfig {
    /// The app's registry name.
    pub name: &'static str,
    /// The server's address (clients).
    pub peer: Option<Ipv4Addr>,
    /// TCP port.
    pub port: u16,
    /// Connections at once.
    pub conns: u32,
    /// Round trips (pingpong).
    pub count: u64,
    /// Message size (pingpong) or bytes per connection (stream, sink, loopback); `None`
    /// = the app's default.
    pub size: Option<u64>,
    /// Bytes per write (stream, loopback).
    pub chunk: u64,
    /// Unmeasured round trips before the measured `count` (pingpong, floor); `None` =
    /// [`default_warmup`].
    pub warmup: Option<u64>,
    /// How the stream apps check the bytes (`verify=`).
    pub verify: Verify,
    /// Sequential connect/transfer/close cycles per connection slot of the stream apps
    /// (`cycles=`; at least 1).
    pub cycles: u32,
    /// Bytes after which the stream client aborts each connection (`abort=`).
    pub abort_after: Option<u64>,
}

impl AppConfig {
    /// The app settings of a parsed command line.
    pub fn from_cmdline(name: &'static str, c: &cmdline::Config) -> Self {
        AppConfig {
            name,
            peer: c.peer,
            port: c.port.unwrap_or(DEFAULT_PORT),
            conns: c.conns,
            count: c.count.unwrap_or(DEFAULT_COUNT),
            size: c.size,
            chunk: c.chunk.unwrap_or(DEFAULT_CHUNK),
            warmup: c.warmup,
            verify: c.verify,
            cycles: c.cycles.max(1),
            abort_after: c.abort_after,
        }
    }

    /// Round trips before the measured ones: `warmup=`, else [`default_warmup`].
    pub fn warmup(&self) -> u64 {
        self.warmup.unwrap_or_else(|| default_warmup(self.count))
    }
}

/// Warm-up round trips when `warmup=` is not given: `count / 100`, at most 1000.
pub fn default_warmup(count: u64) -> u64 {
    (count / 100).min(1000)
}

/// Why an app failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppError {
    /// Bad or missing configuration.
    Config(&'static str),
    /// A socket or network error.
    Smc(SmcError),
    /// The peer ended the stream too early.
    Eof,
    /// Received bytes differ from what was sent.
    Mismatch,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Config(e) => write!(f, "config: {e}"),
            AppError::Smc(e) => write!(f, "{e}"),
            AppError::Eof => f.write_str("unexpected end of stream"),
            AppError::Mismatch => f.write_str("received bytes differ from the sent ones"),
        }
    }
}

impl From<SmcError> for AppError {
    fn from(e: SmcError) -> Self {
        AppError::Smc(e)
    }
}

impl From<NetError> for AppError {
    fn from(e: NetError) -> Self {
        AppError::Smc(SmcError::Net(e))
    }
}

/// A running app.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<(), AppError>>>>;
/// An app's entry point.
pub type AppFn = fn(&'static Smc, AppConfig) -> AppFuture;
/// The entry point of an app that takes its devices itself (no network, no SMC).
pub type StandaloneFn = fn(AppConfig) -> AppFuture;

/// How [`run`] starts an app.
#[derive(Clone, Copy)]
pub enum AppRun {
    /// Over the SMC system [`run`] brings up (network, SMC) first.
    Smc(AppFn),
    /// With only the platform up: the app finds its devices itself (the floor apps).
    Standalone(StandaloneFn),
}

/// One registered app.
pub struct AppEntry {
    /// Name as given with `app=`.
    pub name: &'static str,
    /// One-line description.
    pub help: &'static str,
    /// Entry point.
    pub run: AppRun,
    /// Needs a second virtio-net NIC (client and server in one image).
    pub two_nics: bool,
}

/// The registry of apps, keyed by their `app=` name.
pub static APPS: &[AppEntry] = &[
    AppEntry {
        name: "echo",
        help: "server: echoes every byte on `conns` connections",
        run: AppRun::Smc(|smc, c| Box::pin(echo::echo(smc, c))),
        two_nics: false,
    },
    AppEntry {
        name: "pingpong",
        help: "client: `count` round trips of `size` bytes per connection, latency percentiles",
        run: AppRun::Smc(|smc, c| Box::pin(pingpong::pingpong(smc, c))),
        two_nics: false,
    },
    AppEntry {
        name: "stream",
        help: "client: sends `size` bytes in `chunk` writes per connection, throughput + hash",
        run: AppRun::Smc(|smc, c| Box::pin(stream::stream(smc, c))),
        two_nics: false,
    },
    AppEntry {
        name: "sink",
        help: "server: receives on `conns` connections, checks the pattern, throughput + hash",
        run: AppRun::Smc(|smc, c| Box::pin(stream::sink(smc, c))),
        two_nics: false,
    },
    AppEntry {
        name: "loopback",
        help: "stream client + sink server in this image over SMC-D loopback, byte-exact",
        run: AppRun::Smc(|smc, c| Box::pin(loopback::loopback(smc, c))),
        two_nics: true,
    },
    AppEntry {
        name: "loopback-pingpong",
        help: "echo server + pingpong client in this image over SMC-D loopback",
        run: AppRun::Smc(|smc, c| Box::pin(loopback::loopback_pingpong(smc, c))),
        two_nics: true,
    },
    AppEntry {
        name: "floor",
        help: "floors over raw ivshmem (no network): shm ping-pong, doorbell round trip, memcpy",
        run: AppRun::Standalone(|c| Box::pin(floor::floor(c))),
        two_nics: false,
    },
    AppEntry {
        name: "floor-server",
        help: "responder of app=floor on the other VM",
        run: AppRun::Standalone(|c| Box::pin(floor::floor_server(c))),
        two_nics: false,
    },
];

/// The registered app named `name`.
pub fn find(name: &str) -> Option<&'static AppEntry> {
    APPS.iter().find(|a| a.name == name)
}

/// The registry name of a command-line app (`None` for `selftest`, which is no app).
pub fn app_name(app: App) -> Option<&'static str> {
    Some(match app {
        App::Echo => "echo",
        App::Pingpong => "pingpong",
        App::Stream => "stream",
        App::Sink => "sink",
        App::Loopback => "loopback",
        App::LoopbackPingpong => "loopback-pingpong",
        App::Floor => "floor",
        App::FloorServer => "floor-server",
        App::Selftest => return None,
    })
}

/// The second interface of a two-NIC image: the next address after `ip=`.
pub fn second_address(first: Ipv4Cidr) -> Ipv4Cidr {
    let next = u32::from(first.address).wrapping_add(1);
    Ipv4Cidr {
        address: Ipv4Addr::from(next),
        prefix_len: first.prefix_len,
    }
}

/// Brings up what `entry` needs (network, SMC) from the command line.
///
/// # Errors
/// Any bring-up failure.
pub fn bring_up(entry: &AppEntry, c: &cmdline::Config) -> Result<&'static Smc, AppError> {
    let first = net::init_from_cmdline(c)?;
    let mut interfaces: Vec<&'static NetInterface> = alloc::vec![first];
    if entry.two_nics {
        let dev = net::virtio_net_devices()
            .nth(1)
            .ok_or(AppError::Config("this app needs a second virtio-net NIC"))?;
        interfaces.push(net::bring_up(dev, second_address(first.address()))?);
    }
    let config = SmcConfig {
        smc: c.smc,
        spin: Duration::from_micros(c.spin_us),
        ueid: c.ueid,
        dmb_len: c.dmb_len.unwrap_or(SmcConfig::default().dmb_len),
        ..SmcConfig::default()
    };
    Ok(smc::init(&interfaces, config)?)
}

/// Runs the app named on the command line and ends the VM: prints the final `done` line,
/// then exits QEMU with success when the app succeeded.
pub fn run(c: &cmdline::Config) -> ! {
    log::set_max_level(c.log);
    let name = c.app.and_then(app_name).unwrap_or("none");
    let ok = match find(name) {
        None => {
            Report::new("error", name)
                .str("error", "no such app")
                .emit();
            false
        }
        Some(AppEntry {
            run: AppRun::Standalone(start),
            ..
        }) => {
            platform::init().unwrap_or_else(|e| panic!("{e}"));
            let config = AppConfig::from_cmdline(name, c);
            match executor::block_on(start(config)) {
                Ok(()) => true,
                Err(e) => {
                    Report::new("error", name).display("error", &e).emit();
                    false
                }
            }
        }
        Some(
            entry @ AppEntry {
                run: AppRun::Smc(start),
                ..
            },
        ) => {
            platform::init().unwrap_or_else(|e| panic!("{e}"));
            match bring_up(entry, c) {
                Err(e) => {
                    Report::new("error", name).display("error", &e).emit();
                    false
                }
                Ok(smc) => {
                    let config = AppConfig::from_cmdline(entry.name, c);
                    log::info!("app {}: {}", entry.name, entry.help);
                    let result = executor::block_on(start(smc, config));
                    let result = match result {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            Report::new("error", name).display("error", &e).emit();
                            Err(e)
                        }
                    };
                    executor::block_on(quiesce(smc));
                    Report::counters(name, smc).emit();
                    result.is_ok()
                }
            }
        }
    };
    Report::new("done", name)
        .bool("ok", ok)
        .u64("errors", u64::from(!ok))
        .emit();
    qemu::exit(if ok {
        qemu::QemuExitCode::Success
    } else {
        qemu::QemuExitCode::Failed
    })
}

/// Before the VM ends: let the SMC close handshakes finish (bounded), give the network
/// poll tasks a moment to emit the final FIN/ACK segments of the closed TCP connections
/// (a peer would otherwise wait for its close timeout), and wait until the NICs sent them.
async fn quiesce(smc: &'static Smc) {
    let limit = crate::clock::now().saturating_add(Duration::from_secs(2));
    while smc.with_stack(|s| s.socket_count()) > 0 && crate::clock::now() < limit {
        executor::sleep(Duration::from_millis(5)).await;
    }
    executor::sleep(Duration::from_millis(100)).await;
    for iface in smc.interfaces() {
        iface.wait_transmitted(Duration::from_secs(1)).await;
    }
}

/// Runs every future to completion, concurrently in the calling task; the outputs in
/// order.
pub async fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut futures: Vec<Option<Pin<Box<dyn Future<Output = T> + '_>>>> =
        futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// SplitMix64's output function: a bijection on `u64` with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 8 pattern bytes of stream `conn` at offsets `8 * word ..`.
fn pattern_word(conn: u32, word: u64) -> [u8; 8] {
    mix((u64::from(conn) << 48) ^ word).to_le_bytes()
}

/// The byte at `index` of stream `conn`: SplitMix64 of (stream, index / 8), so the
/// pattern has no short period (a lost, repeated or reordered block shows) and the
/// first 8 bytes differ for every stream number (the sink recognises the stream).
pub fn pattern(conn: u32, index: u64) -> u8 {
    pattern_word(conn, index / 8)[(index % 8) as usize]
}

/// Calls `f(i, expected)` for each byte `i` of a window of `len` bytes at stream offset
/// `offset` (one mix per 8 bytes).
fn for_each_expected(conn: u32, offset: u64, len: usize, mut f: impl FnMut(usize, u8)) {
    let mut cached: Option<(u64, [u8; 8])> = None;
    for i in 0..len {
        let at = offset + i as u64;
        let word = at / 8;
        let bytes = match cached {
            Some((w, bytes)) if w == word => bytes,
            _ => {
                let bytes = pattern_word(conn, word);
                cached = Some((word, bytes));
                bytes
            }
        };
        f(i, bytes[(at % 8) as usize]);
    }
}

/// Fills `buf` with the pattern of `conn` starting at stream offset `offset`: whole
/// pattern words at once between byte-wise head and tail (a 16 KiB ping-pong message
/// took ~150 µs byte by byte under TCG, as long as the round trip it prepares).
pub fn fill_pattern(conn: u32, offset: u64, buf: &mut [u8]) {
    let head = usize::try_from((8 - offset % 8) % 8)
        .unwrap_or(0)
        .min(buf.len());
    let (head_bytes, rest) = buf.split_at_mut(head);
    for_each_expected(conn, offset, head, |i, b| head_bytes[i] = b);
    let mut word = (offset + head as u64) / 8;
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&pattern_word(conn, word));
        word += 1;
    }
    let tail = words.into_remainder();
    let tail_len = tail.len();
    for_each_expected(conn, word * 8, tail_len, |i, b| tail[i] = b);
}

/// Bytes of `data` (at stream offset `offset`) that differ from the pattern of `conn`.
pub fn count_mismatches(conn: u32, offset: u64, data: &[u8]) -> u64 {
    let mut n = 0;
    for_each_expected(conn, offset, data.len(), |i, b| {
        n += u64::from(data[i] != b)
    });
    n
}

/// FNV-1a 64, fed incrementally: the running hash both stream ends print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a(pub u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of sorted `values`.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    permille(sorted, p.saturating_mul(10))
}

/// The `pm`-th per-mille quantile (0..=1000, nearest rank) of sorted `values`; 0 when
/// empty.
pub fn permille(sorted: &[u64], pm: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (u64::from(pm.min(1000)) * sorted.len() as u64)
        .div_ceil(1000)
        .max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The 101 percentiles 0, 1, ..., 100 of sorted `values` (`cdf_ns`).
pub fn cdf(sorted: &[u64]) -> [u64; 101] {
    let mut out = [0u64; 101];
    for (p, slot) in (0u32..).zip(out.iter_mut()) {
        *slot = percentile(sorted, p);
    }
    out
}

/// An empty vector with room for `count` round-trip times, reserved up front so that
/// measuring does not allocate.
///
/// # Errors
/// [`AppError::Config`] when the heap cannot hold them (`count=` too large).
pub fn samples(count: u64) -> Result<Vec<u64>, AppError> {
    let mut v = Vec::new();
    usize::try_from(count)
        .ok()
        .and_then(|n| v.try_reserve_exact(n).ok())
        .ok_or(AppError::Config(
            "count= too large: the round-trip times do not fit the heap",
        ))?;
    Ok(v)
}

/// Mean of `values` (0 when empty), rounded down.
pub fn mean(values: &[u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
    (sum / values.len() as u128) as u64
}

/// Distance between `verify=sample` stamps in the stream.
pub const SAMPLE_STEP: u64 = 4096;
/// Bytes of one stamp: the little-endian stream offset.
pub const STAMP_LEN: u64 = 8;

/// Calls `f(stamp_offset, window_range)` for every stamp `[s, s + 8)` (at each
/// [`SAMPLE_STEP`]-aligned stream offset `s`) that overlaps the window of `len` bytes at
/// stream offset `offset`; `window_range` is the overlap as indices into the window and
/// `stamp_offset + (index - ..)` positions the bytes (see [`stamp_sample`]).
fn for_each_stamp(offset: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let end = offset.saturating_add(len as u64);
    // The stamp that may reach into the window from before it, then every later one.
    let mut s = offset - offset % SAMPLE_STEP;
    while s < end {
        let lo = s.max(offset);
        let hi = (s + STAMP_LEN).min(end);
        if lo < hi {
            f(s, (lo - offset) as usize, (hi - offset) as usize);
        }
        s += SAMPLE_STEP;
    }
}

/// `verify=sample`, sender: writes the stamp bytes (the 8-byte little-endian stream
/// offset at every 4 KiB-aligned stream offset) that fall into `buf`, which goes out at
/// stream offset `offset`; the other bytes are left as they are (cost: one store per
/// 4 KiB).
pub fn stamp_sample(offset: u64, buf: &mut [u8]) {
    for_each_stamp(offset, buf.len(), |s, lo, hi| {
        let stamp = s.to_le_bytes();
        let from = (offset + lo as u64 - s) as usize;
        buf[lo..hi].copy_from_slice(&stamp[from..from + (hi - lo)]);
    });
}

/// `verify=sample`, receiver: bytes of the stamps in `data` (received at stream offset
/// `offset`) that differ from the expected offset words. A stamp split across two reads
/// is checked piecewise, each part in its own call.
pub fn count_sample_mismatches(offset: u64, data: &[u8]) -> u64 {
    let mut n = 0;
    for_each_stamp(offset, data.len(), |s, lo, hi| {
        let stamp = s.to_le_bytes();
        let from = (offset + lo as u64 - s) as usize;
        n += data[lo..hi]
            .iter()
            .zip(&stamp[from..from + (hi - lo)])
            .filter(|(a, b)| a != b)
            .count() as u64;
    });
    n
}

/// Writes all of `data` (an embedded-io `write_all` with our error type).
///
/// # Errors
/// The socket's error.
pub async fn write_all(s: &mut SmcStream, mut data: &[u8]) -> Result<(), AppError> {
    while !data.is_empty() {
        let n = embedded_io_async::Write::write(s, data).await?;
        if n == 0 {
            return Err(AppError::Eof);
        }
        data = &data[n..];
    }
    Ok(())
}

/// Prints the `conn` line of a connection whose handshake is over.
pub fn report_conn(smc: &Smc, c: &AppConfig, conn: u32, role: &str, s: &SmcStream) {
    Report::new("conn", c.name)
        .u64("conn", u64::from(conn))
        .str("role", role)
        .transport(s, smc)
        .emit();
}

/// Connects to `peer` and prints the `conn` line.
///
/// # Errors
/// The connect or handshake error.
pub async fn connect_reported(
    smc: &'static Smc,
    c: &AppConfig,
    peer: Ipv4Addr,
    conn: u32,
) -> Result<SmcStream, AppError> {
    let s = smc.connect(peer, c.port).await?;
    report_conn(smc, c, conn, "client", &s);
    Ok(s)
}

/// Free heap a cycle of `cycles=` waits for before it connects or accepts.
pub const CYCLE_HEAP_RESERVE: usize = 4 << 20;

/// Waits until the heap has `reserve` bytes available, at most `limit`.
///
/// Back-pressure for sequential connections: a closed TCP connection keeps its socket
/// (and its buffers, `net::SOCKET_BUFFER_LEN` per direction) through TIME-WAIT (smoltcp:
/// 10 s), so connections opened faster than that would run the heap dry.
///
/// # Errors
/// [`AppError::Config`] when the memory did not come back within `limit`.
pub async fn wait_for_heap(reserve: usize, limit: Duration) -> Result<(), AppError> {
    let deadline = crate::clock::now().saturating_add(limit);
    while crate::memory::heap_stats().available_bytes < reserve {
        if crate::clock::now() >= deadline {
            return Err(AppError::Config(
                "heap did not free up for the next connection",
            ));
        }
        executor::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Largest listener backlog the servers ask for (each pending socket holds its TCP
/// buffers; 64 of them fit the guests' 64 MiB next to 64 accepted connections).
pub const MAX_BACKLOG: u32 = 64;

/// Listens on `c.port` with a backlog of `c.conns` (at most [`MAX_BACKLOG`]), so that
/// many clients connecting at once all complete their handshake.
///
/// # Errors
/// The listen error.
pub fn listen(smc: &'static Smc, c: &AppConfig) -> Result<SmcListener, AppError> {
    let backlog = c.conns.clamp(1, MAX_BACKLOG) as usize;
    Ok(smc.bind_with_backlog(c.port, backlog)?)
}

/// Listens on `c.port` ([`listen`]), prints `ready`, and accepts `c.conns` connections.
///
/// # Errors
/// The listen, accept or handshake error.
pub async fn accept_all(smc: &'static Smc, c: &AppConfig) -> Result<Vec<SmcStream>, AppError> {
    let mut listener = listen(smc, c)?;
    Report::new("ready", c.name)
        .u64("port", u64::from(c.port))
        .strs("devices", &smc.device_kinds())
        .emit();
    let mut streams = Vec::new();
    for i in 0..c.conns {
        let s = listener.accept().await?;
        report_conn(smc, c, i, "server", &s);
        streams.push(s);
    }
    Ok(streams)
}
