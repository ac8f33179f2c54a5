//! End-to-end harness: boots smcd VM pairs through `qemu-run.sh pair` and waits on their
//! JSON result lines.
//!
//! One source of truth for how a pair is built (server, QEMU arguments, link, region):
//! `scripts/pair.sh`, reached through `qemu-run.sh pair`. The harness spawns it in its own
//! process group, reads its stdout (`vmN| <serial line>`, `pair| <control line>`) and stderr
//! in two threads, and offers bounded waits on specific lines. Dropping a [`Pair`] tears the
//! whole process group down. Pairs run one at a time in a test binary (a global lock): the
//! machine has two cores, and two concurrent pairs would distort every timing.
//!
//! Timeouts can be stretched on a slow host with `E2E_TIME_SCALE` (a float, default 1).

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
pub use serde_json::Value;

/// Serial lines that mean a guest failed, whatever a test waits for.
const FATAL_MARKERS: [&str; 2] = ["panicked at", "CPU exception"];

/// An error of the harness or a failed expectation, with the context needed to debug it
/// (the last lines of each VM and of the launcher).
pub struct E2eError(String);

impl fmt::Display for E2eError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E2eError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for E2eError {}

impl E2eError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        E2eError(msg.into())
    }
}

/// Result type of the harness.
pub type Result<T> = std::result::Result<T, E2eError>;

/// Fails with `msg` unless `cond` holds (for checks inside tests that return [`Result`]).
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(E2eError(msg()))
    }
}

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The serial console of VM 0 or 1.
    Vm(usize),
    /// A control line of the launcher (`pair| ...`).
    Pair,
    /// The launcher's stderr (diagnostics).
    Diag,
}

/// One line of output, with the time the harness read it.
#[derive(Clone, Debug)]
pub struct Line {
    /// Its origin.
    pub source: Source,
    /// The text without prefix or line end.
    pub text: String,
    /// When the harness received it.
    pub at: Instant,
}

impl Line {
    /// The line as a JSON object, if it is one.
    pub fn json(&self) -> Option<Value> {
        let t = self.text.trim();
        if !t.starts_with('{') {
            return None;
        }
        serde_json::from_str::<Value>(t)
            .ok()
            .filter(Value::is_object)
    }
}

/// What one pair run looks like; see `qemu-run.sh pair --help`.
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// vm0's command line (the launcher prepends `ip=` and `peer=`).
    pub vm0: String,
    /// vm1's command line.
    pub vm1: String,
    /// Boot vm0 alone.
    pub only_vm0: bool,
    /// vm1 without an ivshmem device.
    pub no_ivshmem_vm1: bool,
    /// Record vm0's link traffic to `<out>/link.pcap`.
    pub pcap: bool,
    /// An error line or a VM ending early does not stop the launcher (peer-death tests).
    pub allow_errors: bool,
    /// Overall limit of the launcher.
    pub timeout: Duration,
    /// Command line of a replacement client VM, booted once when the client VM ends
    /// before its done line (`--rejoin`; its lines come from the same `Source::Vm`).
    pub rejoin: Option<String>,
}

impl PairConfig {
    /// A pair with these command lines, 120 s overall limit.
    pub fn new(vm0: impl Into<String>, vm1: impl Into<String>) -> Self {
        PairConfig {
            vm0: vm0.into(),
            vm1: vm1.into(),
            only_vm0: false,
            no_ivshmem_vm1: false,
            pcap: false,
            allow_errors: false,
            timeout: Duration::from_secs(120),
            rejoin: None,
        }
    }

    /// A single VM (vm0) with this command line.
    pub fn single(vm0: impl Into<String>) -> Self {
        let mut c = PairConfig::new(vm0, "");
        c.only_vm0 = true;
        c
    }
}

#[derive(Default)]
struct Shared {
    lines: Vec<Line>,
    stdout_closed: bool,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

/// Bound for building the kernel image and the ivshmem server before a pair starts.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// Pairs run one at a time per test binary.
static SERIAL: Mutex<()> = Mutex::new(());
static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Multiplies a timeout by `E2E_TIME_SCALE` (default 1).
pub fn scaled(d: Duration) -> Duration {
    let scale = std::env::var("E2E_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    d.mul_f64(scale)
}

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory this test binary lives in (`<target>/debug/deps/e2e-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Whether QEMU is installed (the only reason a test may skip).
pub fn qemu_available() -> bool {
    let bin = std::env::var("QEMU_BIN").unwrap_or_else(|_| "qemu-system-x86_64".into());
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running pair (`qemu-run.sh pair`), torn down on drop.
pub struct Pair {
    child: Child,
    pgid: Pid,
    shared: SharedState,
    readers: Vec<JoinHandle<()>>,
    out_dir: PathBuf,
    started: Instant,
    keep_logs: bool,
    _turn: MutexGuard<'static, ()>,
}

fn reader<R: Read + Send + 'static>(
    pipe: R,
    shared: SharedState,
    is_stdout: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = BufReader::new(pipe);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match buf.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\n', '\r']);
            let (source, body) = if !is_stdout {
                (Source::Diag, text)
            } else if let Some(rest) = text.strip_prefix("vm0| ") {
                (Source::Vm(0), rest)
            } else if let Some(rest) = text.strip_prefix("vm1| ") {
                (Source::Vm(1), rest)
            } else if let Some(rest) = text.strip_prefix("pair| ") {
                (Source::Pair, rest)
            } else {
                (Source::Diag, text)
            };
            let line = Line {
                source,
                text: body.to_string(),
                at: Instant::now(),
            };
            let (lock, cv) = &*shared;
            lock.lock()
                .unwrap_or_else(|e| e.into_inner())
                .lines
                .push(line);
            cv.notify_all();
        }
        if is_stdout {
            let (lock, cv) = &*shared;
            lock.lock().unwrap_or_else(|e| e.into_inner()).stdout_closed = true;
            cv.notify_all();
        }
    })
}

impl Pair {
    /// Starts a pair. `Ok(None)` (with a printed notice) only when QEMU is not installed.
    pub fn start(name: &str, config: &PairConfig) -> Result<Option<Pair>> {
        if !qemu_available() {
            println!("SKIP {name}: qemu-system-x86_64 is not installed");
            return Ok(None);
        }
        let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let target = target_dir();
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let out_dir = target
            .join("e2e-runs")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| E2eError(format!("cannot create {}: {e}", out_dir.display())))?;

        let mut cmd = Command::new(repo_root().join("qemu-run.sh"));
        cmd.arg("pair")
            .arg("--timeout")
            .arg(scaled(config.timeout).as_secs().max(1).to_string())
            .arg("--out")
            .arg(&out_dir);
        if config.only_vm0 {
            cmd.arg("--only-vm0");
        } else {
            cmd.arg("--vm1").arg(&config.vm1);
        }
        cmd.arg("--vm0").arg(&config.vm0);
        if config.no_ivshmem_vm1 {
            cmd.arg("--no-ivshmem-vm1");
        }
        if config.allow_errors {
            cmd.arg("--allow-errors");
        }
        if let Some(line) = &config.rejoin {
            cmd.arg("--rejoin").arg(line);
        }
        if config.pcap {
            cmd.arg("--pcap").arg(out_dir.join("link.pcap"));
        }
        // A target directory of its own: the cargo running this test may hold the lock of
        // the main one while tests run.
        cmd.env("PAIR_TARGET_DIR", target.join("e2e-build"))
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| E2eError(format!("cannot run qemu-run.sh pair: {e}")))?;
        let pgid = Pid::from_raw(child.id() as i32);
        let shared: SharedState = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            reader(stdout, shared.clone(), true),
            reader(stderr, shared.clone(), false),
        ];
        let mut pair = Pair {
            child,
            pgid,
            shared,
            readers,
            out_dir,
            started: Instant::now(),
            keep_logs: true,
            _turn: turn,
        };
        // The launcher builds the image and the server first (minutes in a fresh target
        // directory on a loaded machine); the tests' own bounds start after that.
        pair.wait_line(
            "the launcher's build (line `pair: logs in`)",
            0,
            BUILD_TIMEOUT,
            |l| (l.source == Source::Diag && l.text.contains("pair: logs in")).then_some(()),
        )?;
        pair.started = Instant::now();
        Ok(Some(pair))
    }

    /// The directory with the logs of this run (`vm0.log`, `vm1.log`, server logs, pcap).
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Time since the launcher started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.state().lines.clone()
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last lines of each source, for error messages.
    pub fn context(&self) -> String {
        let st = self.state();
        let mut out = String::new();
        for (label, src) in [
            ("vm0", Source::Vm(0)),
            ("vm1", Source::Vm(1)),
            ("pair", Source::Pair),
            ("qemu-run", Source::Diag),
        ] {
            let mut tail: VecDeque<&Line> = VecDeque::new();
            for l in st.lines.iter().filter(|l| l.source == src) {
                if tail.len() == 25 {
                    tail.pop_front();
                }
                tail.push_back(l);
            }
            if tail.is_empty() {
                continue;
            }
            out.push_str(&format!("--- last lines of {label}:\n"));
            for l in tail {
                out.push_str(&format!("  {label}| {}\n", l.text));
            }
        }
        out.push_str(&format!("--- logs in {}\n", self.out_dir.display()));
        out
    }

    fn fail(&self, msg: String) -> E2eError {
        E2eError(format!("{msg}\n{}", self.context()))
    }

    /// Waits (at most `timeout`, scaled) for the first line from `source` for which `pred`
    /// returns `Some`, scanning from line index `from` on. Fails early when a VM prints a
    /// fatal line (panic, CPU exception) or the launcher's stdout ends.
    fn wait_line<T>(
        &self,
        what: &str,
        from: usize,
        timeout: Duration,
        mut pred: impl FnMut(&Line) -> Option<T>,
    ) -> Result<(usize, T)> {
        let deadline = Instant::now() + scaled(timeout);
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = from;
        loop {
            while next < st.lines.len() {
                let line = &st.lines[next];
                if let Some(v) = pred(line) {
                    return Ok((next, v));
                }
                if matches!(line.source, Source::Vm(_))
                    && FATAL_MARKERS.iter().any(|m| line.text.contains(m))
                {
                    let text = format!("{:?}: {}", line.source, line.text);
                    drop(st);
                    return Err(self.fail(format!("waiting for {what}: a guest failed: {text}")));
                }
                next += 1;
            }
            if st.stdout_closed {
                drop(st);
                return Err(self.fail(format!("waiting for {what}: the pair ended first")));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                return Err(self.fail(format!(
                    "timeout ({:?}) waiting for {what}",
                    scaled(timeout)
                )));
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the first JSON line of `vm` satisfying `pred`; returns it.
    pub fn wait_for(
        &self,
        vm: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        self.wait_for_from(vm, 0, what, timeout, pred)
            .map(|(_, v)| v)
    }

    /// Like [`Pair::wait_for`], from line index `from` on; returns the line index too (pass
    /// `index + 1` to wait for the next such line).
    pub fn wait_for_from(
        &self,
        vm: usize,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(usize, Value)> {
        let what = format!("vm{vm}: {what}");
        self.wait_line(&what, from, timeout, |l| {
            if l.source != Source::Vm(vm) {
                return None;
            }
            l.json().filter(|v| pred(v))
        })
    }

    /// Waits for `count` JSON lines of `vm` satisfying `pred` (all of them, in order).
    pub fn wait_count(
        &self,
        vm: usize,
        count: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + scaled(timeout);
        let mut out = Vec::with_capacity(count);
        let mut from = 0;
        while out.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let (i, v) = self.wait_for_from(
                vm,
                from,
                &format!("{what} ({} of {count})", out.len() + 1),
                left,
                &pred,
            )?;
            out.push(v);
            from = i + 1;
        }
        Ok(out)
    }

    /// Waits for `{"event":"<event>",...}` from `vm`.
    pub fn wait_event(&self, vm: usize, event: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(vm, &format!("event {event:?}"), timeout, |v| {
            v["event"] == event
        })
    }

    /// Waits for a launcher control line (`pair| <text>`) satisfying `pred`.
    pub fn wait_control(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.wait_line(what, 0, timeout, |l| {
            (l.source == Source::Pair && pred(&l.text)).then(|| l.text.clone())
        })
        .map(|(_, t)| t)
    }

    /// The QEMU pid of `vm` (the last `pair| vmN pid P` line).
    pub fn vm_pid(&self, vm: usize) -> Option<i32> {
        let prefix = format!("vm{vm} pid ");
        self.state()
            .lines
            .iter()
            .rev()
            .filter(|l| l.source == Source::Pair)
            .find_map(|l| {
                l.text
                    .strip_prefix(&prefix)
                    .and_then(|p| p.trim().parse().ok())
            })
    }

    /// Kills `vm`'s QEMU with SIGKILL (a VM dying); returns when the signal was sent.
    pub fn kill_vm(&self, vm: usize) -> Result<Instant> {
        let pid = self
            .vm_pid(vm)
            .ok_or_else(|| self.fail(format!("no pid line for vm{vm}")))?;
        signal::kill(Pid::from_raw(pid), Signal::SIGKILL)
            .map_err(|e| self.fail(format!("kill vm{vm} ({pid}): {e}")))?;
        Ok(Instant::now())
    }

    /// Waits for the launcher to end by itself (bounded); returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        // The launcher ends when its stdout closes (it holds it until the end).
        self.wait_line(
            "the launcher to finish",
            usize::MAX,
            timeout,
            |_| None::<()>,
        )
        .map(|_| ())
        .or_else(|e| {
            if self.state().stdout_closed {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| E2eError(format!("wait: {e}")))?
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.fail("launcher closed its stdout but did not exit".into()));
            }
            // Bounded poll for the exit of a process whose output already ended.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends a run whose checks passed without waiting for the launcher (e.g. after a
    /// deliberate VM kill): tears it down and removes its logs.
    pub fn close(mut self) {
        self.keep_logs = false;
    }

    /// Waits until the launcher reports that every VM printed its done line and exited 0.
    pub fn finish(self, timeout: Duration) -> Result<()> {
        self.finish_with(timeout, |_| Ok(()))
    }

    /// Like [`Pair::finish`], then runs host-side checks on the run's files (pcap, logs)
    /// before they are removed.
    pub fn finish_with(
        mut self,
        timeout: Duration,
        post: impl FnOnce(&Pair) -> Result<()>,
    ) -> Result<()> {
        let status = self.wait_exit(timeout)?;
        if !status.success() {
            return Err(self.fail(format!("qemu-run.sh pair exited with {status}")));
        }
        post(&self).map_err(|e| self.fail(e.to_string()))?;
        self.keep_logs = false;
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // The launcher's traps stop the server and the QEMUs on SIGTERM.
            let _ = signal::killpg(self.pgid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left in the group (nothing, normally).
        let _ = signal::killpg(self.pgid, Signal::SIGKILL);
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if self.keep_logs {
            eprintln!("e2e: logs of this run kept in {}", self.out_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.out_dir);
        }
    }
}

/// A JSON field as `u64` (or an error naming it).
pub fn field_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| {
        E2eError(format!(
            "field {key:?} missing or not an unsigned integer in {v}"
        ))
    })
}

/// A JSON field as a string (or an error naming it).
pub fn field_str<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| E2eError(format!("field {key:?} missing or not a string in {v}")))
}

// ------------------------------------------------------------------ result lines
//
// The apps' JSON lines, as documented in `kernel/src/apps/mod.rs` ("Serial output"):
// `ready` (a server listens), `conn` (a handshake is over: `transport` "smcd"/"tcp",
// `device`, `reason`, `by_peer`), `result` (per connection: `bytes`, `hash`, `mismatches`,
// `stats` {`bytes_tx`, `cdcs_tx`, `clc_bytes_tx`, ...}, `tcp_bytes_tx`/`_rx`; pingpong:
// `p50_ns`...), `cycles` (`cycles=` summary per slot: `cycles`, `smcd`, `bytes`, `hash`,
// `mismatches`), `aborted` (`abort=`: `bytes` written before the abort), `counters`
// (`stack` = the smcd global counters; `link_groups`, `dmbs_in_use`, `dmbs_pooled`),
// `error`, and `done` (`ok`, `errors`) as the last line of an app.

/// Whether `v` is a line of this event.
pub fn is_event(v: &Value, event: &str) -> bool {
    v.get("event").and_then(Value::as_str) == Some(event)
}

/// A field of the `stats` object of a result line.
pub fn stat(v: &Value, key: &str) -> Result<u64> {
    v.get("stats")
        .and_then(|s| s.get(key))
        .and_then(Value::as_u64)
        .ok_or_else(|| E2eError(format!("stats.{key} missing in {v}")))
}

/// A field of the `stack` object of a counters line.
pub fn stack_counter(v: &Value, key: &str) -> Result<u64> {
    v.get("stack")
        .and_then(|s| s.get(key))
        .and_then(Value::as_u64)
        .ok_or_else(|| E2eError(format!("stack.{key} missing in {v}")))
}

/// The TCP payload a connection carried beyond its CLC handshake (tx, rx), from a result
/// line: all TCP bytes minus the CLC bytes.
pub fn tcp_payload(v: &Value) -> Result<(u64, u64)> {
    let tx = field_u64(v, "tcp_bytes_tx")?.checked_sub(stat(v, "clc_bytes_tx")?);
    let rx = field_u64(v, "tcp_bytes_rx")?.checked_sub(stat(v, "clc_bytes_rx")?);
    match (tx, rx) {
        (Some(tx), Some(rx)) => Ok((tx, rx)),
        _ => Err(E2eError(format!("CLC bytes exceed TCP bytes in {v}"))),
    }
}

/// The lines of one stream run: sender (`app=stream`) and receiver (`app=sink`).
#[derive(Debug)]
pub struct StreamRun {
    /// The sender's `result` lines (one per connection).
    pub sender: Vec<Value>,
    /// The receiver's `result` lines.
    pub receiver: Vec<Value>,
    /// The sender's `counters` line.
    pub sender_counters: Value,
    /// The receiver's `counters` line.
    pub receiver_counters: Value,
    /// The sender's done line.
    pub sender_done: Value,
    /// The receiver's done line.
    pub receiver_done: Value,
    /// Wall time of the whole run (boot included).
    pub wall: Duration,
}

/// Which VM sends in a stream run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// vm0 runs `app=stream`, vm1 `app=sink`.
    Vm0ToVm1,
    /// vm1 runs `app=stream`, vm0 `app=sink`.
    Vm1ToVm0,
}

/// One stream run: who sends, the extra command-line words per role, how many `conn`
/// lines each side must print, and the bound for each wait.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    /// Which VM sends.
    pub dir: Direction,
    /// Words after `app=stream` (port, size, conns, smc...).
    pub sender_args: String,
    /// Words after `app=sink`.
    pub receiver_args: String,
    /// Connections (conn lines per side).
    pub conns: usize,
    /// Bound of each wait.
    pub timeout: Duration,
}

/// Runs a [`StreamSpec`] on a pair (`adjust` may change the pair's configuration) and
/// collects every `conn` and `done` line; `post` checks the run's files before they are
/// removed. Both VMs must finish without an error line.
pub fn stream_run(
    name: &str,
    spec: &StreamSpec,
    adjust: impl FnOnce(&mut PairConfig),
    post: impl FnOnce(&Pair) -> Result<()>,
) -> Result<Option<StreamRun>> {
    let StreamSpec {
        dir,
        sender_args,
        receiver_args,
        conns,
        timeout,
    } = spec.clone();
    let sender_line = format!("app=stream {sender_args}");
    let receiver_line = format!("app=sink {receiver_args}");
    let (s, r, mut cfg) = match dir {
        Direction::Vm0ToVm1 => (0, 1, PairConfig::new(sender_line, receiver_line)),
        Direction::Vm1ToVm0 => (1, 0, PairConfig::new(receiver_line, sender_line)),
    };
    cfg.timeout = timeout + Duration::from_secs(30);
    adjust(&mut cfg);
    let Some(pair) = Pair::start(name, &cfg)? else {
        return Ok(None);
    };
    let result = |v: &Value| is_event(v, "result");
    let sender = pair.wait_count(s, conns, "sender result line", timeout, result)?;
    let receiver = pair.wait_count(r, conns, "receiver result line", timeout, result)?;
    let sender_counters = pair.wait_event(s, "counters", timeout)?;
    let receiver_counters = pair.wait_event(r, "counters", timeout)?;
    let sender_done = pair.wait_event(s, "done", timeout)?;
    let receiver_done = pair.wait_event(r, "done", timeout)?;
    let wall = pair.elapsed();
    pair.finish_with(Duration::from_secs(30), post)?;
    Ok(Some(StreamRun {
        sender,
        receiver,
        sender_counters,
        receiver_counters,
        sender_done,
        receiver_done,
        wall,
    }))
}

impl StreamRun {
    /// Checks that every connection carried exactly `size` bytes with equal hashes on both
    /// sides (the sink also compared each byte with the pattern: `mismatches` 0), and
    /// that both apps ended with `ok`. Connections are matched by the hash multiset: the
    /// pattern differs per connection.
    pub fn check_byte_exact(&self, size: u64) -> Result<()> {
        let mut sent = Vec::new();
        for v in &self.sender {
            ensure(field_u64(v, "bytes")? == size, || {
                format!("sender: expected {size} bytes in {v}")
            })?;
            ensure(stat(v, "bytes_tx")? == size, || {
                format!("sender: stats.bytes_tx != {size} in {v}")
            })?;
            sent.push(field_str(v, "hash")?.to_string());
        }
        let mut got = Vec::new();
        for v in &self.receiver {
            ensure(field_u64(v, "bytes")? == size, || {
                format!("receiver: expected {size} bytes in {v}")
            })?;
            ensure(stat(v, "bytes_rx")? == size, || {
                format!("receiver: stats.bytes_rx != {size} in {v}")
            })?;
            ensure(field_u64(v, "mismatches")? == 0, || {
                format!("receiver: bytes differ from the pattern: {v}")
            })?;
            got.push(field_str(v, "hash")?.to_string());
        }
        // Pair by the sender's stream number where the sink reports it (it recognises
        // the pattern); the multiset comparison below covers every connection anyway.
        if self.receiver.iter().all(|v| v.get("stream").is_some()) {
            for r in &self.receiver {
                let id = field_u64(r, "stream")?;
                let s = self
                    .sender
                    .iter()
                    .find(|v| v.get("stream").and_then(Value::as_u64) == Some(id))
                    .ok_or_else(|| {
                        E2eError(format!("no sender line for stream {id} (sink: {r})"))
                    })?;
                ensure(field_str(s, "hash")? == field_str(r, "hash")?, || {
                    format!("stream {id}: {s} vs {r}")
                })?;
            }
        }
        sent.sort();
        got.sort();
        ensure(sent == got, || {
            format!("hashes differ: sent {sent:?}, received {got:?}")
        })?;
        let distinct: std::collections::BTreeSet<_> = sent.iter().collect();
        ensure(distinct.len() == sent.len(), || {
            format!("connections carried identical data: {sent:?}")
        })?;
        for done in [&self.sender_done, &self.receiver_done] {
            ensure(
                done["ok"] == true && field_u64(done, "errors")? == 0,
                || format!("app failed: {done}"),
            )?;
        }
        Ok(())
    }

    /// Throughput of the receiver's first connection in MiB/s (as the sink measured it).
    pub fn mib_per_sec(&self) -> f64 {
        self.receiver
            .first()
            .and_then(|v| v.get("bytes_per_sec"))
            .and_then(Value::as_u64)
            .map_or(0.0, |b| b as f64 / (1u64 << 20) as f64)
    }

    /// Every connection on both sides.
    pub fn all_conns(&self) -> impl Iterator<Item = &Value> {
        self.sender.iter().chain(self.receiver.iter())
    }
}

/// Checks the SMC TCP option in the SYN/SYN-ACK of `port` in the pcap of a run with
/// `kernel/tests/host/net_syn_options.py` (shared with the kernel's network tests).
pub fn check_syn_options(pcap: &Path, port: u16, syn: bool, synack: bool) -> Result<()> {
    let spec = format!("{port}:{}:{}", u8::from(syn), u8::from(synack));
    let out = Command::new("python3")
        .arg(repo_root().join("kernel/tests/host/net_syn_options.py"))
        .arg(pcap)
        .arg(&spec)
        .output()
        .map_err(|e| E2eError(format!("python3: {e}")))?;
    ensure(out.status.success(), || {
        format!(
            "SYN option check {spec} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The TCP segment payloads of a pcap (hex decoded), through tshark.
pub fn tcp_payloads(pcap: &Path) -> Result<Vec<Vec<u8>>> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args(["-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.payload"])
        .output()
        .map_err(|e| E2eError(format!("tshark: {e}")))?;
    ensure(out.status.success(), || {
        format!("tshark failed: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let mut segments = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let hex: String = line.chars().filter(char::is_ascii_hexdigit).collect();
        let bytes = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|e| E2eError(format!("tshark payload {line:?}: {e}")))?;
        segments.push(bytes);
    }
    Ok(segments)
}

/// CLC eyecatchers (EBCDIC "SMCR" and "SMCD", protocol reference §2) at the start of a
/// segment: a CLC message.
pub fn starts_with_clc(segment: &[u8]) -> bool {
    segment.starts_with(&[0xE2, 0xD4, 0xC3, 0xD9]) || segment.starts_with(&[0xE2, 0xD4, 0xC3, 0xC4])
}

#[cfg(test)]
mod tests {
    //! The checks themselves must be able to fail: known-bad lines are rejected.
    use super::*;
    use serde_json::json;

    fn result(role: &str, stream: u64, bytes: u64, hash: &str) -> Value {
        json!({"event":"result","app":role,"conn":stream,"stream":stream,"bytes":bytes,"hash":hash,
               "mismatches":0,"stats":{"bytes_tx":if role == "stream" {bytes} else {0},
               "bytes_rx":if role == "sink" {bytes} else {0},"clc_bytes_tx":374,"clc_bytes_rx":130},
               "tcp_bytes_tx":374,"tcp_bytes_rx":130})
    }

    fn run(sender: Vec<Value>, receiver: Vec<Value>) -> StreamRun {
        let done = json!({"event":"done","ok":true,"errors":0});
        StreamRun {
            sender,
            receiver,
            sender_counters: json!({}),
            receiver_counters: json!({}),
            sender_done: done.clone(),
            receiver_done: done,
            wall: Duration::ZERO,
        }
    }

    #[test]
    fn byte_exact_accepts_matching_runs_in_any_order() {
        let r = run(
            vec![result("stream", 0, 10, "aa"), result("stream", 1, 10, "bb")],
            vec![result("sink", 1, 10, "bb"), result("sink", 0, 10, "aa")],
        );
        r.check_byte_exact(10).unwrap();
    }

    #[test]
    fn byte_exact_rejects_bad_runs() {
        // Hash differs.
        let r = run(
            vec![result("stream", 0, 10, "aa")],
            vec![result("sink", 0, 10, "ab")],
        );
        assert!(r.check_byte_exact(10).is_err());
        // Short transfer.
        let r = run(
            vec![result("stream", 0, 10, "aa")],
            vec![result("sink", 0, 9, "aa")],
        );
        assert!(r.check_byte_exact(10).is_err());
        // Hashes swapped between streams (multiset equal, pairing by stream is not).
        let r = run(
            vec![result("stream", 0, 10, "aa"), result("stream", 1, 10, "bb")],
            vec![result("sink", 0, 10, "bb"), result("sink", 1, 10, "aa")],
        );
        assert!(r.check_byte_exact(10).is_err());
        // Sink saw pattern mismatches.
        let mut bad = result("sink", 0, 10, "aa");
        bad["mismatches"] = json!(3);
        assert!(run(vec![result("stream", 0, 10, "aa")], vec![bad])
            .check_byte_exact(10)
            .is_err());
        // An app that failed.
        let mut r = run(
            vec![result("stream", 0, 10, "aa")],
            vec![result("sink", 0, 10, "aa")],
        );
        r.receiver_done = json!({"event":"done","ok":false,"errors":1});
        assert!(r.check_byte_exact(10).is_err());
        // Missing line on one side.
        assert!(run(vec![result("stream", 0, 10, "aa")], vec![])
            .check_byte_exact(10)
            .is_err());
    }

    #[test]
    fn tcp_payload_subtracts_the_handshake() {
        let v = result("stream", 0, 10, "aa");
        assert_eq!(tcp_payload(&v).unwrap(), (0, 0));
        let mut w = v.clone();
        w["tcp_bytes_tx"] = json!(374 + 4096);
        assert_eq!(tcp_payload(&w).unwrap(), (4096, 0));
        w["tcp_bytes_rx"] = json!(10); // fewer TCP bytes than CLC bytes: inconsistent
        assert!(tcp_payload(&w).is_err());
    }

    #[test]
    fn lines_parse_only_json_objects() {
        let line = |t: &str| Line {
            source: Source::Vm(0),
            text: t.into(),
            at: Instant::now(),
        };
        assert!(line(r#"{"event":"done","ok":true}"#).json().is_some());
        assert!(line("[INFO  kernel] {not json}").json().is_none());
        assert!(line("{broken").json().is_none());
        assert!(line("[1,2]").json().is_none());
    }

    #[test]
    fn clc_eyecatchers() {
        assert!(starts_with_clc(&[0xE2, 0xD4, 0xC3, 0xD9, 1]));
        assert!(starts_with_clc(&[0xE2, 0xD4, 0xC3, 0xC4]));
        assert!(!starts_with_clc(&[0xE2, 0xD4, 0xC3]));
        assert!(!starts_with_clc(b"GET /"));
    }
}
