//! Kernel command line → typed [`Config`] (`key=value` pairs separated by spaces).
//!
//! Pure parsing: no globals, no allocation, only `core` and `log::LevelFilter`, so the parser
//! can be exercised anywhere. Unknown keys, tokens without `=`, duplicates and malformed
//! values are errors that name the key and the offending text.
//!
//! | key     | value                                   | default |
//! |---------|-----------------------------------------|---------|
//! | `ip`    | IPv4 address with prefix, `10.0.0.1/24` | none    |
//! | `peer`  | IPv4 address                            | none    |
//! | `app`   | `echo` `pingpong` `stream` `sink` `loopback` `loopback-pingpong` `floor` `floor-server` `selftest` | none |
//! | `size`  | bytes, optional `K`/`M`/`G` suffix (×1024ⁿ) | none |
//! | `count` | unsigned integer                        | none    |
//! | `smc`   | `on` / `off`                            | `on`    |
//! | `conns` | integer ≥ 1                             | `1`     |
//! | `log`   | `off` `error` `warn` `info` `debug` `trace` | `info` |
//! | `port`  | 1..=65535                               | none    |
//! | `spin`  | µs a blocked SMC reader/writer polls before sleeping | `0` |
//! | `chunk` | bytes per write of the stream apps, `K`/`M` suffix | none |
//! | `cycles` | integer ≥ 1: sequential connections per `conns` slot (stream, sink) | `1` |
//! | `abort` | bytes (`K`/`M` suffix): the stream client aborts each connection after them | none |
//! | `warmup` | round trips before the measured ones (pingpong, floor) | none (app default) |
//! | `verify` | `full` (every byte) / `sample` (the offset words at 4 KiB steps) | `full` |
//! | `dmb`   | own DMB length in bytes, a power of two 16K..=1M (`K`/`M` suffix) | none (stack default) |
//! | `test`  | test image name (set by `qemu-run.sh runner`; checked, ignored) | none |

use core::fmt;
use core::net::Ipv4Addr;

use log::LevelFilter;

/// An IPv4 address with its prefix length (`10.0.0.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Which application the kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Echo server.
    Echo,
    /// Ping-pong latency client.
    Pingpong,
    /// Streaming sender.
    Stream,
    /// Streaming receiver.
    Sink,
    /// Stream client and sink server in one image over SMC-D loopback.
    Loopback,
    /// Echo server and pingpong client in one image over SMC-D loopback.
    LoopbackPingpong,
    /// Floor measurements, initiator (raw ivshmem, no network).
    Floor,
    /// Floor measurements, responder.
    FloorServer,
    /// Built-in self test.
    Selftest,
}

/// How the stream apps check the received bytes (`verify=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Every byte against the pattern, plus an FNV-1a hash of the stream.
    #[default]
    Full,
    /// Only the 8-byte stream-offset stamps at every 4 KiB-aligned stream offset.
    Sample,
}

/// Smallest `dmb=`.
pub const MIN_DMB_LEN: usize = 16 << 10;
/// Largest `dmb=`.
pub const MAX_DMB_LEN: usize = 1 << 20;

/// The parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our address and prefix (`ip=`).
    pub ip: Option<Ipv4Cidr>,
    /// The peer's address (`peer=`).
    pub peer: Option<Ipv4Addr>,
    /// Application (`app=`).
    pub app: Option<App>,
    /// Transfer size in bytes (`size=`).
    pub size: Option<u64>,
    /// Iteration / message count (`count=`).
    pub count: Option<u64>,
    /// Whether to offer SMC-D (`smc=`).
    pub smc: bool,
    /// Number of parallel connections (`conns=`).
    pub conns: u32,
    /// Log level (`log=`).
    pub log: LevelFilter,
    /// TCP port (`port=`).
    pub port: Option<u16>,
    /// Adaptive-polling budget of SMC sockets in µs (`spin=`).
    pub spin_us: u64,
    /// Write size of the stream apps (`chunk=`).
    pub chunk: Option<u64>,
    /// Sequential connect/transfer/close cycles of the stream apps (`cycles=`).
    pub cycles: u32,
    /// The stream client aborts each connection after this many bytes (`abort=`).
    pub abort_after: Option<u64>,
    /// User-defined EID offered for SMC-Dv2 instead of the built-in one (`ueid=`); peers
    /// with no common EID decline and fall back to TCP (protocol-reference §2.5).
    pub ueid: Option<smcd::wire::clc::Eid>,
    /// Unmeasured round trips before the measured ones (`warmup=`).
    pub warmup: Option<u64>,
    /// How the stream apps check received bytes (`verify=`).
    pub verify: Verify,
    /// Own DMB length (`dmb=`), a power of two in [`MIN_DMB_LEN`]..=[`MAX_DMB_LEN`].
    pub dmb_len: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ip: None,
            peer: None,
            app: None,
            size: None,
            count: None,
            smc: true,
            conns: 1,
            log: LevelFilter::Info,
            port: None,
            spin_us: 0,
            chunk: None,
            cycles: 1,
            abort_after: None,
            ueid: None,
            warmup: None,
            verify: Verify::Full,
            dmb_len: None,
        }
    }
}

/// A command-line error, borrowing the offending text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// A key we do not know.
    UnknownKey(&'a str),
    /// A token that is not `key=value`.
    NotKeyValue(&'a str),
    /// A key given twice.
    Duplicate(&'static str),
    /// A value that does not parse.
    Malformed {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: &'a str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::UnknownKey(k) => write!(f, "unknown key '{k}'"),
            CmdlineError::NotKeyValue(t) => write!(f, "expected key=value, got '{t}'"),
            CmdlineError::Duplicate(k) => write!(f, "duplicate key '{k}'"),
            CmdlineError::Malformed { key, value, reason } => {
                write!(f, "malformed value for '{key}': '{value}': {reason}")
            }
        }
    }
}

/// Keys, in the order of the `seen` bit set used to reject duplicates.
const KEYS: [&str; 18] = [
    "ip", "peer", "app", "size", "count", "smc", "conns", "log", "port", "test", "spin", "chunk",
    "cycles", "abort", "ueid", "warmup", "verify", "dmb",
];

/// Parses a whole command line. Empty input gives [`Config::default`].
pub fn parse(line: &str) -> Result<Config, CmdlineError<'_>> {
    let mut config = Config::default();
    let mut seen: u32 = 0;
    for token in line.split_ascii_whitespace() {
        let (key, value) = token
            .split_once('=')
            .ok_or(CmdlineError::NotKeyValue(token))?;
        let index = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or(CmdlineError::UnknownKey(key))?;
        let key: &'static str = KEYS[index];
        if seen & (1 << index) != 0 {
            return Err(CmdlineError::Duplicate(key));
        }
        seen |= 1 << index;
        let bad = |reason| CmdlineError::Malformed { key, value, reason };
        match key {
            "ip" => config.ip = Some(parse_cidr(value).map_err(bad)?),
            "peer" => config.peer = Some(parse_ipv4(value).map_err(bad)?),
            "app" => config.app = Some(parse_app(value).map_err(bad)?),
            "size" => config.size = Some(parse_size(value).map_err(bad)?),
            "count" => config.count = Some(parse_u64(value).map_err(bad)?),
            "smc" => config.smc = parse_on_off(value).map_err(bad)?,
            "conns" => {
                let n = parse_u64(value).map_err(bad)?;
                config.conns = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(bad("must be between 1 and 4294967295"))?;
            }
            "log" => config.log = parse_level(value).map_err(bad)?,
            "port" => {
                let n = parse_u64(value).map_err(bad)?;
                config.port = Some(
                    u16::try_from(n)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or(bad("must be between 1 and 65535"))?,
                );
            }
            // Set by `qemu-run.sh runner` on in-QEMU test images; validated, not stored.
            "test" => check_test_name(value).map_err(bad)?,
            "spin" => config.spin_us = parse_u64(value).map_err(bad)?,
            "chunk" => {
                let n = parse_size(value).map_err(bad)?;
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                config.chunk = Some(n);
            }
            "cycles" => {
                let n = parse_u64(value).map_err(bad)?;
                config.cycles = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(bad("must be between 1 and 4294967295"))?;
            }
            "abort" => config.abort_after = Some(parse_size(value).map_err(bad)?),
            "ueid" => {
                // UEID rules of Linux `smc_clc_ueid_valid` (protocol-reference §2.5).
                config.ueid = Some(smcd::wire::clc::Eid::ueid(value).map_err(|_| {
                    bad("not a valid UEID (1-32 of A-Z 0-9 . -, first a letter or digit)")
                })?)
            }
            "warmup" => config.warmup = Some(parse_u64(value).map_err(bad)?),
            "verify" => {
                config.verify = match value {
                    "full" => Verify::Full,
                    "sample" => Verify::Sample,
                    _ => return Err(bad("expected full or sample")),
                }
            }
            "dmb" => {
                let n = parse_size(value).map_err(bad)?;
                config.dmb_len = Some(
                    usize::try_from(n)
                        .ok()
                        .filter(|n| n.is_power_of_two() && (MIN_DMB_LEN..=MAX_DMB_LEN).contains(n))
                        .ok_or(bad("must be a power of two from 16K to 1M"))?,
                );
            }
            _ => unreachable!("every entry of KEYS is handled"),
        }
    }
    Ok(config)
}

fn check_test_name(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(())
        .ok_or("expected a test name (letters, digits, '_', '-')")
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, &'static str> {
    s.parse()
        .map_err(|_| "expected a dotted-quad IPv4 address like 10.0.0.2")
}

fn parse_cidr(s: &str) -> Result<Ipv4Cidr, &'static str> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or("expected address/prefix like 10.0.0.1/24")?;
    let address = parse_ipv4(addr)?;
    let prefix_len = prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 32 && prefix.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("prefix length must be 0..=32")?;
    Ok(Ipv4Cidr {
        address,
        prefix_len,
    })
}

fn parse_app(s: &str) -> Result<App, &'static str> {
    Ok(match s {
        "echo" => App::Echo,
        "pingpong" => App::Pingpong,
        "stream" => App::Stream,
        "sink" => App::Sink,
        "loopback" => App::Loopback,
        "loopback-pingpong" => App::LoopbackPingpong,
        "floor" => App::Floor,
        "floor-server" => App::FloorServer,
        "selftest" => App::Selftest,
        _ => {
            return Err(
                "expected echo, pingpong, stream, sink, loopback, loopback-pingpong, floor, floor-server or selftest",
            )
        }
    })
}

fn parse_u64(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a decimal number");
    }
    s.parse().map_err(|_| "number too large")
}

fn parse_size(s: &str) -> Result<u64, &'static str> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = parse_u64(digits).map_err(|e| {
        if e == "expected a decimal number" {
            "expected a byte count like 4096, 64K, 16M or 1G"
        } else {
            e
        }
    })?;
    n.checked_mul(1u64 << shift).ok_or("size too large")
}

fn parse_on_off(s: &str) -> Result<bool, &'static str> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off"),
    }
}

fn parse_level(s: &str) -> Result<LevelFilter, &'static str> {
    Ok(match s {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return Err("expected off, error, warn, info, debug or trace"),
    })
}
