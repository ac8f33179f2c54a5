//! Command line of the server: a drop-in for QEMU's `contrib/ivshmem-server` flags.
//!
//! QEMU's contrib server takes `-S socket`, `-l size`, `-n vectors`, `-M shm-name`,
//! `-m dir`, `-p pidfile`, `-F` and `-v` (protocol reference §7.2, "Reference server
//! behaviour"); we accept all of them and add `--max-peers` and `--slots`.

use std::path::PathBuf;

use clap::Parser;

/// Default socket path (the contrib server's default).
pub const DEFAULT_SOCKET: &str = "/tmp/ivshmem_socket";
/// Default region size. The contrib server uses 4M; our per-peer DMB areas want more,
/// and a memfd only costs the pages that are touched.
pub const DEFAULT_SIZE: &str = "64M";
/// Default number of peers (directory entries).
pub const DEFAULT_MAX_PEERS: u32 = 16;
/// Largest vector count (contrib server limit; QEMU uses `val & 0xff` for the vector).
pub const MAX_VECTORS: u32 = 64;

/// ivshmem server for smcd: hands out a formatted shared region and per-peer eventfds
/// over QEMU's ivshmem-doorbell socket protocol.
#[derive(Debug, Parser)]
#[command(name = "ivshmem-server", version)]
pub struct Args {
    /// UNIX socket path QEMU connects to (`-chardev socket,path=PATH`).
    #[arg(short = 'S', long = "socket", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Region size, a power of two, with optional K/M/G/T suffix (binary units).
    #[arg(short = 'l', long = "size", default_value = DEFAULT_SIZE, value_parser = parse_size)]
    pub size: usize,

    /// Interrupt vectors per peer (vector 0 = control, 1 = DMB signals; at least 2 for smcd).
    #[arg(short = 'n', long = "vectors", default_value_t = ivshmem_region::VECTORS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_VECTORS as i64))]
    pub vectors: u32,

    /// Accepted for compatibility and ignored: the server always runs in the foreground.
    #[arg(short = 'F', long = "foreground")]
    pub foreground: bool,

    /// Back the region with the POSIX shared-memory object NAME (/dev/shm/NAME) instead
    /// of an anonymous memfd. The object is kept on exit (like the contrib server).
    #[arg(
        short = 'M',
        long = "shm",
        value_name = "NAME",
        conflicts_with = "shm_dir"
    )]
    pub shm_name: Option<String>,

    /// Back the region with a file created (and unlinked at once) in DIR, e.g. a hugetlbfs mount.
    #[arg(short = 'm', long = "shm-dir", value_name = "DIR")]
    pub shm_dir: Option<PathBuf>,

    /// Write the server's process ID to this file once listening (removed on exit).
    #[arg(short = 'p', long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    /// Number of peer IDs (directory entries); IDs are reused and stay below this.
    #[arg(long = "max-peers", default_value_t = DEFAULT_MAX_PEERS)]
    pub max_peers: u32,

    /// DMB slots per peer (bits in its signal bitmap); a multiple of 64.
    #[arg(long = "slots", default_value_t = ivshmem_region::DEFAULT_SLOTS)]
    pub slots: u32,

    /// Log every protocol message and directory change.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// Parses a size such as `4096`, `64K`, `64M`, `1G` (binary units; `k`/`KiB`/`KB` accepted).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected a number with optional K/M/G/T suffix"
        ));
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown suffix {suffix:?} (use K, M, G or T)"
            ))
        }
    };
    let value: usize = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    value
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("-4M").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
        assert!(parse_size("999999999999999999T").is_err());
    }

    #[test]
    fn contrib_flags_parse() {
        let args = Args::try_parse_from([
            "ivshmem-server",
            "-F",
            "-v",
            "-S",
            "/tmp/s",
            "-l",
            "1M",
            "-n",
            "2",
            "-M",
            "name",
            "-p",
            "/tmp/pid",
            "--max-peers",
            "4",
            "--slots",
            "128",
        ])
        .unwrap();
        assert_eq!(args.socket, PathBuf::from("/tmp/s"));
        assert_eq!(args.size, 1 << 20);
        assert_eq!(args.vectors, 2);
        assert!(args.foreground && args.verbose);
        assert_eq!(args.shm_name.as_deref(), Some("name"));
        assert_eq!(args.max_peers, 4);
        assert_eq!(args.slots, 128);
        assert!(Args::try_parse_from(["ivshmem-server", "-n", "0"]).is_err());
        assert!(Args::try_parse_from(["ivshmem-server", "-n", "65"]).is_err());
        assert!(Args::try_parse_from(["ivshmem-server", "-M", "a", "-m", "/tmp"]).is_err());
        let defaults = Args::try_parse_from(["ivshmem-server"]).unwrap();
        assert_eq!(defaults.vectors, 2);
        assert_eq!(defaults.size, 64 << 20);
        assert_eq!(defaults.socket, PathBuf::from(DEFAULT_SOCKET));
    }
}
