//! End-to-end tests of the `ivshmem-server` binary with fake QEMU clients (and real QEMU).
//!
//! The server runs as a child process; clients speak QEMU's side of protocol reference
//! §7.2 (`ivshmem_server::client`). Every wait is bounded and waits for a specific
//! condition (a message, a readable eventfd, a directory state, a process exit).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivshmem_region::{PeerState, VECTOR_CONTROL, VECTOR_DMB};
use ivshmem_server::client::{Client, Directory, Handshake};
use ivshmem_server::proto::{drain, ring, wait_readable, RecvError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SERVER: &str = env!("CARGO_BIN_EXE_ivshmem-server");
const PROBE: &str = env!("CARGO_BIN_EXE_ivshmem-probe");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A server child process with its socket in a private temporary directory.
struct ServerProc {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_lines: Receiver<String>,
}

/// A spawned server: the child, its stdout lines, its stderr lines, and all stderr so far.
type Spawned = (
    Child,
    Receiver<String>,
    Receiver<String>,
    Arc<Mutex<Vec<String>>>,
);

fn spawn_server(dir: &Path, socket: &Path, extra: &[&str]) -> Spawned {
    let mut child = Command::new(SERVER)
        .arg("-S")
        .arg(socket)
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ivshmem-server");
    let (out_tx, out_rx) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let (err_tx, err_rx) = channel();
    let all = Arc::new(Mutex::new(Vec::new()));
    let all2 = all.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all2.lock().unwrap().push(line.clone());
            let _ = err_tx.send(line);
        }
    });
    (child, out_rx, err_rx, all)
}

impl ServerProc {
    fn start(extra: &[&str]) -> ServerProc {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ivshmem.sock");
        let (mut child, stdout, stderr_lines, stderr) = spawn_server(dir.path(), &socket, extra);
        match stdout.recv_timeout(TIMEOUT) {
            Ok(line) => assert!(
                line.contains("listening on"),
                "unexpected first line {line:?}"
            ),
            Err(_) => {
                let _ = child.kill();
                panic!("server not ready: {:?}", stderr.lock().unwrap());
            }
        }
        assert!(socket.exists(), "socket exists once ready");
        ServerProc {
            child,
            socket,
            dir,
            stderr,
            stderr_lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn connect(&self) -> Client {
        Client::connect(&self.socket).expect("connect")
    }

    fn join(&self, vectors: usize) -> (Client, Handshake) {
        let client = self.connect();
        let handshake = client.handshake(vectors, TIMEOUT).expect("handshake");
        (client, handshake)
    }

    fn child_alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}/fd", self.pid())).is_ok()
            && std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                .is_ok_and(|stat| !stat.contains(") Z "))
    }

    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line {needle:?}; got {:?}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls the directory until `cond` holds (bounded).
fn wait_directory(shm: BorrowedFd<'_>, what: &str, cond: impl Fn(&Directory) -> bool) -> Directory {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let directory = Directory::read(shm).expect("directory");
        if cond(&directory) {
            return directory;
        }
        assert!(
            Instant::now() < deadline,
            "directory never reached: {what}: {directory:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn state(directory: &Directory, id: u16) -> Option<PeerState> {
    directory.entries[usize::from(id)].map(|e| e.state)
}

fn expect_msg(client: &Client, value: i64, with_fd: bool) -> Option<OwnedFd> {
    let msg = client.recv(TIMEOUT).expect("message");
    assert_eq!(
        (msg.value, msg.fd.is_some()),
        (value, with_fd),
        "unexpected message"
    );
    msg.fd
}

fn expect_rung(fd: &OwnedFd) {
    assert!(
        wait_readable(fd.as_fd(), TIMEOUT).unwrap(),
        "eventfd not rung"
    );
    assert!(drain(fd.as_fd()).unwrap() >= 1);
}

#[test]
fn connect_sequence_fds_and_leave_notices() {
    let server = ServerProc::start(&["-n", "2", "--max-peers", "4", "-l", "1M"]);
    let (a, ha) = server.join(2);
    assert_eq!(ha.id, 0);
    assert_eq!(
        ha.sequence,
        vec![(0, false), (0, false), (-1, true), (0, true), (0, true)],
        "first client: version, id, shm, own fds"
    );
    assert!(ha.peers.is_empty());
    // The shm fd is the formatted region of the requested size.
    let shm_file = std::fs::File::from(ha.shm.try_clone().unwrap());
    assert_eq!(shm_file.metadata().unwrap().len(), 1 << 20);
    let d = Directory::read(ha.shm.as_fd()).unwrap();
    assert_eq!(d.layout.max_peers(), 4);
    assert_eq!(d.vectors, 2);
    assert_eq!(d.server_epoch, 1);
    let entry_a = d.entries[0].unwrap();
    assert_eq!((entry_a.state, entry_a.epoch), (PeerState::Active, 2));
    assert!(!entry_a.gid.is_zero());
    assert_eq!(state(&d, 1), Some(PeerState::Free));

    let (b, hb) = server.join(2);
    assert_eq!(hb.id, 1);
    assert_eq!(
        hb.sequence,
        vec![
            (0, false),
            (1, false),
            (-1, true),
            (0, true),
            (0, true),
            (1, true),
            (1, true)
        ],
        "second client: version, id, shm, peer 0's fds, own fds"
    );
    // A is told about B: one message per vector, each with an fd.
    let b_vec0_for_a = expect_msg(&a, 1, true).unwrap();
    let b_vec1_for_a = expect_msg(&a, 1, true).unwrap();
    // ... and rung on the control vector.
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);
    let d = Directory::read(hb.shm.as_fd()).unwrap();
    assert_eq!(d.server_epoch, 2);
    assert_eq!(
        d.region_id,
        Directory::read(ha.shm.as_fd()).unwrap().region_id
    );
    let entry_b = d.entries[1].unwrap();
    assert_eq!((entry_b.state, entry_b.epoch), (PeerState::Active, 2));
    assert_ne!(entry_b.gid, entry_a.gid);

    // The eventfds are real and shared: B rings A's DMB vector, A sees it; A rings B's.
    ring(&hb.peers[&0][usize::from(VECTOR_DMB)]).unwrap();
    expect_rung(&ha.own[usize::from(VECTOR_DMB)]);
    assert_eq!(
        drain(&ha.own[usize::from(VECTOR_CONTROL)]).unwrap(),
        0,
        "only the DMB vector rang"
    );
    ring(&b_vec1_for_a).unwrap();
    expect_rung(&hb.own[usize::from(VECTOR_DMB)]);
    ring(&b_vec0_for_a).unwrap();
    expect_rung(&hb.own[usize::from(VECTOR_CONTROL)]);
    // Both shm fds are the same memory.
    let payload = d.layout.area_payload(0).unwrap().start as u64;
    shm_file.write_all_at(b"hello from A", payload).unwrap();
    let mut buf = [0u8; 12];
    std::fs::File::from(hb.shm.try_clone().unwrap())
        .read_exact_at(&mut buf, payload)
        .unwrap();
    assert_eq!(&buf, b"hello from A");

    // B leaves: A gets "1" without fd and a control ring; entry 1 is dead, epochs bumped.
    drop((b, hb));
    expect_msg(&a, 1, false);
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);
    let d = wait_directory(ha.shm.as_fd(), "peer 1 dead", |d| {
        state(d, 1) == Some(PeerState::Dead)
    });
    assert_eq!(d.entries[1].unwrap().epoch, 4);
    assert_eq!(d.server_epoch, 3);
    assert_eq!(
        d.entries[1].unwrap().gid,
        entry_b.gid,
        "GID kept for diagnosis until reuse"
    );

    // A new client reuses ID 1 with a new GID; A hears of it.
    let (_c, hc) = server.join(2);
    assert_eq!(hc.id, 1);
    assert_eq!(
        hc.sequence,
        vec![
            (0, false),
            (1, false),
            (-1, true),
            (0, true),
            (0, true),
            (1, true),
            (1, true)
        ]
    );
    expect_msg(&a, 1, true);
    expect_msg(&a, 1, true);
    let d = Directory::read(hc.shm.as_fd()).unwrap();
    let entry_c = d.entries[1].unwrap();
    assert_eq!((entry_c.state, entry_c.epoch), (PeerState::Active, 6));
    assert_ne!(entry_c.gid, entry_b.gid);
    assert_eq!(d.server_epoch, 4);
}

#[test]
fn sigkilled_client_is_marked_dead_and_survivors_rung() {
    let server = ServerProc::start(&["--max-peers", "4", "-l", "1M"]);
    let (a, ha) = server.join(2);
    let mut probe = Command::new(PROBE)
        .args(["--hold", "-S"])
        .arg(&server.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = probe.stdout.take().unwrap();
    let (line_tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let first = lines.recv_timeout(TIMEOUT).unwrap();
    assert!(first.starts_with("joined id=1 peers=[0]"), "{first}");
    expect_msg(&a, 1, true);
    expect_msg(&a, 1, true);
    expect_rung(&ha.own[0]);
    wait_directory(ha.shm.as_fd(), "probe active", |d| {
        state(d, 1) == Some(PeerState::Active)
    });
    // The probe reports a later join (once, not per vector) and its control ring.
    let (c, _hc) = server.join(2);
    let mut want = BTreeSet::from(["peer 2 joined".to_string(), "control rung".to_string()]);
    while !want.is_empty() {
        let line = lines.recv_timeout(TIMEOUT).expect("probe output");
        assert!(
            want.remove(&line),
            "unexpected probe line {line:?}; still want {want:?}"
        );
    }
    drop(c);
    let mut want = BTreeSet::from(["peer 2 left".to_string(), "control rung".to_string()]);
    while !want.is_empty() {
        let line = lines.recv_timeout(TIMEOUT).expect("probe output");
        assert!(
            want.remove(&line),
            "unexpected probe line {line:?}; still want {want:?}"
        );
    }
    expect_msg(&a, 2, true);
    expect_msg(&a, 2, true);
    expect_msg(&a, 2, false);
    // Two rings (join and leave of peer 2) may have merged in the eventfd counter.
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);

    probe.kill().unwrap(); // SIGKILL
    probe.wait().unwrap();
    expect_msg(&a, 1, false);
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);
    let d = wait_directory(ha.shm.as_fd(), "probe dead", |d| {
        state(d, 1) == Some(PeerState::Dead)
    });
    assert_eq!(d.entries[1].unwrap().epoch, 4);
    assert_eq!(state(&d, 0), Some(PeerState::Active));
}

/// Deterministic xorshift64 for the churn test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Member {
    client: Client,
    id: u16,
    /// Notices this client must still receive, in order: (peer, with fd).
    expected: Vec<(i64, bool)>,
}

fn check_notices(member: &mut Member) {
    for (value, with_fd) in member.expected.drain(..) {
        let msg = member.client.recv(TIMEOUT).expect("notice");
        assert_eq!(
            (msg.value, msg.fd.is_some()),
            (value, with_fd),
            "peer {} notices",
            member.id
        );
    }
}

#[test]
fn churn_32_peers_random_order_no_fd_leak() {
    let server = ServerProc::start(&["-n", "1", "--max-peers", "32", "-l", "4M"]);
    let baseline = server.fd_count();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut members: Vec<Member> = Vec::new();
    // A region fd kept by the test (from the first handshake) to watch the directory.
    let mut watch: Option<OwnedFd> = None;
    let mut refusals = 0;
    let mut joins = 0;
    let mut peak_fds = 0;
    for _ in 0..400 {
        let active: BTreeSet<u16> = members.iter().map(|m| m.id).collect();
        let join = members.is_empty()
            || (members.len() < 32 && !rng.next().is_multiple_of(3))
            || (members.len() == 32 && rng.next().is_multiple_of(4));
        if members.len() == 32 {
            // Each peer holds a socket and one eventfd in the server.
            peak_fds = peak_fds.max(server.fd_count());
        }
        if join && members.len() == 32 {
            // Full: the server must refuse (close) the 33rd client.
            let client = server.connect();
            assert!(
                matches!(client.recv(TIMEOUT), Err(RecvError::Eof)),
                "33rd client not refused"
            );
            refusals += 1;
            continue;
        }
        if join {
            let (client, handshake) = server.join(1);
            joins += 1;
            let lowest_free = (0..32u16).find(|id| !active.contains(id)).unwrap();
            assert_eq!(handshake.id, lowest_free, "lowest free ID reused");
            assert_eq!(
                handshake.peers.keys().copied().collect::<BTreeSet<_>>(),
                active
            );
            for member in &mut members {
                member.expected.push((i64::from(handshake.id), true));
            }
            if watch.is_none() {
                watch = Some(handshake.shm);
            }
            members.push(Member {
                client,
                id: handshake.id,
                expected: Vec::new(),
            });
        } else {
            let index = (rng.next() % members.len() as u64) as usize;
            let mut member = members.swap_remove(index);
            check_notices(&mut member);
            let id = member.id;
            drop(member);
            for other in &mut members {
                other.expected.push((i64::from(id), false));
            }
            // Wait until the server has processed the leave before the next step.
            wait_directory(watch.as_ref().unwrap().as_fd(), "leave processed", |d| {
                state(d, id) == Some(PeerState::Dead)
            });
        }
    }
    assert!(
        joins > 100 && refusals > 0,
        "joins {joins}, refusals {refusals}"
    );
    assert!(
        peak_fds >= baseline + 64,
        "fd count sees peers: {baseline} -> {peak_fds}"
    );
    println!("churn: {joins} joins, {refusals} refusals, server fds {baseline} -> peak {peak_fds}");
    for member in &mut members {
        check_notices(member);
    }
    members.clear();
    let watch = watch.unwrap();
    wait_directory(watch.as_fd(), "all left", |d| {
        d.entries
            .iter()
            .all(|e| e.is_some_and(|e| e.state != PeerState::Active))
    });
    // The last leave is processed before the directory says so; fds close right after.
    let deadline = Instant::now() + TIMEOUT;
    while server.fd_count() != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.fd_count(), baseline, "server leaked fds");
}

#[test]
fn too_many_peers_refused_then_id_reused() {
    let server = ServerProc::start(&["--max-peers", "2", "-l", "1M"]);
    let (a, ha) = server.join(2);
    let (_b, hb) = server.join(2);
    assert_eq!((ha.id, hb.id), (0, 1));
    let c = server.connect();
    assert!(matches!(c.recv(TIMEOUT), Err(RecvError::Eof)));
    server.wait_log("refusing client: all 2 peer IDs are in use");
    drop((a, ha));
    wait_directory(hb.shm.as_fd(), "peer 0 dead", |d| {
        state(d, 0) == Some(PeerState::Dead)
    });
    let (_d, hd) = server.join(2);
    assert_eq!(hd.id, 0);
}

#[test]
fn sigterm_sigint_sighup_exit_cleanly_and_remove_socket() {
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("server.pid");
        let mut server = ServerProc::start(&[
            "-p",
            pid_file.to_str().unwrap(),
            "-l",
            "1M",
            "--max-peers",
            "2",
        ]);
        let pid_text = std::fs::read_to_string(&pid_file).unwrap();
        assert_eq!(pid_text.trim(), server.pid().to_string());
        let (a, _ha) = server.join(2);
        kill(Pid::from_raw(server.pid() as i32), signal).unwrap();
        let status = wait_exit(&mut server.child, TIMEOUT).expect("server did not exit");
        assert_eq!(status.code(), Some(0), "{signal}");
        assert!(!server.socket.exists(), "socket removed after {signal}");
        assert!(!pid_file.exists(), "pid file removed after {signal}");
        let lock = server.socket.with_extension("sock.lock");
        assert!(
            !lock.exists(),
            "lock file {} removed after {signal}",
            lock.display()
        );
        assert!(
            matches!(a.recv(TIMEOUT), Err(RecvError::Eof)),
            "client sees the close"
        );
    }
}

#[test]
fn slow_reader_gets_every_message_in_order() {
    // Let the test process hold the many fds of 64-vector handshakes.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let server = ServerProc::start(&["-v", "-n", "64", "--max-peers", "20", "-l", "4M"]);
    let slow = server.connect();
    let hs = slow.handshake(64, TIMEOUT).unwrap();
    assert_eq!(hs.id, 0);
    drop(hs);
    // 16 peers join while peer 0 reads nothing: 1024 join notices with fds pile up
    // and overflow its socket buffer, so the server must queue and wait for POLLOUT.
    let mut others = Vec::new();
    for expected_id in 1..=16u16 {
        let (client, handshake) = server.join(64);
        assert_eq!(handshake.id, expected_id);
        others.push(client);
    }
    server.wait_log("peer 0: socket full");
    for id in 1..=16i64 {
        for _ in 0..64 {
            expect_msg(&slow, id, true);
        }
    }
    server.wait_log("peer 0: queue drained");
}

#[test]
fn posix_shm_backing_works() {
    let name = format!("smcd-ivshmem-test-{}", std::process::id());
    // A leftover object of the same name (wrong size, old bytes) is replaced.
    std::fs::write(Path::new("/dev/shm").join(&name), b"old bytes").unwrap();
    let server = ServerProc::start(&["-M", &name, "-l", "1M"]);
    let (_a, ha) = server.join(2);
    let d = Directory::read(ha.shm.as_fd()).unwrap();
    assert_eq!(d.layout.region_size(), 1 << 20);
    let object = Path::new("/dev/shm").join(&name);
    let on_disk = std::fs::metadata(&object).map(|m| m.len());
    nix::sys::mman::shm_unlink(name.as_str()).unwrap();
    assert_eq!(on_disk.unwrap(), 1 << 20, "shm object /dev/shm/{name}");
}

fn run_failing(socket: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _out, err_lines, stderr) = spawn_server(dir.path(), socket, extra);
    let status = wait_exit(&mut child, TIMEOUT).expect("server should exit");
    assert!(!status.success(), "server should fail");
    // The stderr reader thread ends (dropping its sender) at EOF: then every line is in.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match err_lines.recv_timeout(left) {
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("stderr never closed"),
        }
    }
    let text = stderr.lock().unwrap().join("\n");
    text
}

#[test]
fn bad_socket_paths_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("s.sock");
    let err = run_failing(&missing, &["-l", "1M"]);
    assert!(err.contains("does not exist"), "{err}");

    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = run_failing(&file, &["-l", "1M"]);
    assert!(err.contains("is not a socket"), "{err}");
    assert!(file.exists(), "a non-socket is never removed");

    let live = ServerProc::start(&["-l", "1M"]);
    let err = run_failing(&live.socket, &["-l", "1M"]);
    assert!(err.contains("in use by a running server"), "{err}");
    assert!(live.socket.exists(), "the live server's socket stays");
    let (_c, h) = live.join(2);
    assert_eq!(h.id, 0, "live server still serves");
    let d = Directory::read(h.shm.as_fd()).unwrap();
    assert_eq!(
        d.server_epoch, 1,
        "the second server caused no phantom join/leave"
    );

    // A stale socket (no listener behind it) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stale.sock.lock"), b"12345\n").unwrap(); // unlocked leftover
    let (mut child, out, _err, _all) = spawn_server(dir2.path(), &stale, &["-l", "1M"]);
    assert!(out.recv_timeout(TIMEOUT).unwrap().contains("listening on"));
    let client = Client::connect(&stale).unwrap();
    assert_eq!(client.handshake(2, TIMEOUT).unwrap().id, 0);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_sizes_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let err = run_failing(&socket, &["-l", "3M"]);
    assert!(err.contains("not a power of two"), "{err}");
    let err = run_failing(&socket, &["-l", "64K", "--max-peers", "16"]);
    assert!(
        err.contains("too small") && err.contains("need at least 1048576"),
        "{err}"
    );
    let err = run_failing(&socket, &["-l", "lots"]);
    assert!(err.contains("invalid size"), "{err}");
    let err = run_failing(&socket, &["--slots", "100"]);
    assert!(err.contains("slots per peer 100"), "{err}");
    let err = run_failing(&socket, &["--max-peers", "0"]);
    assert!(err.contains("max peers 0"), "{err}");
    assert!(!socket.exists(), "no socket left behind by a failed start");
}

#[test]
fn help_lists_every_option() {
    let out = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--socket",
        "--size",
        "--vectors",
        "--foreground",
        "--shm",
        "--shm-dir",
        "--pid-file",
        "--max-peers",
        "--slots",
        "--verbose",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
}

#[test]
fn shm_dir_backing_works() {
    let shm_dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["-m", shm_dir.path().to_str().unwrap(), "-l", "1M"]);
    let (_a, ha) = server.join(2);
    let d = Directory::read(ha.shm.as_fd()).unwrap();
    assert_eq!(d.layout.region_size(), 1 << 20);
    assert_eq!(
        std::fs::read_dir(shm_dir.path()).unwrap().count(),
        0,
        "file unlinked at once"
    );
}

/// Minimal QMP client: connect (bounded retries while QEMU starts), negotiate, run one command.
fn qmp_command(path: &Path, command: &str) -> String {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(Instant::now() < deadline, "QMP socket never accepted: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let greeting = lines.next().unwrap().unwrap();
    assert!(greeting.contains("QMP"), "{greeting}");
    writeln!(writer, r#"{{"execute":"qmp_capabilities"}}"#).unwrap();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line.contains("\"return\"") {
            break;
        }
    }
    writeln!(writer, r#"{{"execute":"{command}"}}"#).unwrap();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line.contains("\"return\"") {
            return line;
        }
    }
}

#[test]
fn real_qemu_joins_and_is_marked_dead_when_killed() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        println!("SKIPPED: {qemu} not found");
        return;
    }
    let server = ServerProc::start(&["-n", "2", "--max-peers", "4", "-l", "4M"]);
    let (a, ha) = server.join(2);
    let chardev = format!("socket,path={},id=ivs", server.socket.display());
    let qmp = server.dir.path().join("qmp.sock");
    let qmp_arg = format!("unix:{},server=on,wait=off", qmp.display());
    let mut qemu_child = Command::new(qemu)
        .args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-display",
            "none",
            "-S",
            "-nodefaults",
        ])
        .args([
            "-monitor", "none", "-serial", "none", "-m", "64M", "-qmp", &qmp_arg,
        ])
        .args([
            "-chardev",
            &chardev,
            "-device",
            "ivshmem-doorbell,chardev=ivs,vectors=2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // QEMU joins as peer 1: A receives its two eventfds.
    let joined = a.recv(Duration::from_secs(60));
    if !matches!(&joined, Ok(m) if m.value == 1 && m.fd.is_some()) {
        let _ = qemu_child.kill();
        let out = qemu_child.wait_with_output().unwrap();
        panic!(
            "QEMU did not join: {joined:?}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _qemu_vec1 = expect_msg(&a, 1, true);
    wait_directory(ha.shm.as_fd(), "qemu active", |d| {
        state(d, 1) == Some(PeerState::Active)
    });
    // QEMU accepted the sequence: the ivshmem device (1af4:1110) is realized with our
    // 4 MiB region as BAR2 (ivshmem realize fails, and QEMU exits, on a protocol error).
    let pci = qmp_command(&qmp, "query-pci");
    assert!(
        pci.contains("\"vendor\": 6900") && pci.contains("\"device\": 4368"),
        "{pci}"
    );
    assert!(
        pci.contains("\"size\": 4194304"),
        "BAR2 is the region: {pci}"
    );
    assert!(
        qemu_child.try_wait().unwrap().is_none(),
        "QEMU still running"
    );
    qemu_child.kill().unwrap();
    qemu_child.wait().unwrap();
    expect_msg(&a, 1, false);
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);
    wait_directory(ha.shm.as_fd(), "qemu dead", |d| {
        state(d, 1) == Some(PeerState::Dead)
    });
}

#[test]
fn directory_snapshots_stay_consistent_under_churn() {
    use ivshmem_server::client::{EntryError, MappedRegion};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let server = ServerProc::start(&["-n", "1", "--max-peers", "8", "-l", "1M"]);
    let (_a, ha) = server.join(1);
    let shm = ha.shm.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The server epoch after which the reader has completed a full scan.
    let scanned = Arc::new(AtomicU64::new(0));
    let (stop_reader, scanned_reader) = (stop.clone(), scanned.clone());
    // A guest-like reader: seqlock reads of every entry, continuously, while the server
    // rewrites entries. Any torn or out-of-order snapshot fails `read_entry` (Corrupt)
    // or the monotonicity checks.
    let reader = std::thread::spawn(move || {
        let region = MappedRegion::map(shm.as_fd()).unwrap();
        let (mut snapshots, mut busy) = (0u64, 0u64);
        let mut seen = BTreeSet::new();
        let mut last_server_epoch = 0;
        let mut last_epoch = [0u64; 8];
        while !stop_reader.load(Ordering::Relaxed) {
            let server_epoch = region.server_epoch();
            assert!(server_epoch >= last_server_epoch, "server epoch went back");
            last_server_epoch = server_epoch;
            for peer in 0..8u32 {
                match region.read_entry(peer) {
                    Ok(entry) => {
                        snapshots += 1;
                        let last = &mut last_epoch[peer as usize];
                        assert!(entry.epoch >= *last, "peer {peer} epoch went back");
                        *last = entry.epoch;
                        seen.insert((peer, entry.state.to_string()));
                    }
                    Err(EntryError::Busy) => busy += 1,
                    Err(err) => panic!("peer {peer}: {err:?}"),
                }
            }
            scanned_reader.store(server_epoch, Ordering::Release);
        }
        (snapshots, busy, seen)
    });
    // Lockstep: after each join or leave, wait until the reader has scanned the
    // directory at (or after) the new server epoch, so it observes every state.
    let mut expected_epoch = 1; // A's join
    let wait_scanned = |epoch: u64| {
        let deadline = Instant::now() + TIMEOUT;
        while scanned.load(Ordering::Acquire) < epoch {
            assert!(
                Instant::now() < deadline,
                "reader never scanned epoch {epoch}"
            );
            std::thread::yield_now();
        }
    };
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut members: Vec<Client> = Vec::new();
    for _ in 0..300 {
        if members.len() < 7 && (members.is_empty() || !rng.next().is_multiple_of(3)) {
            members.push(server.join(1).0);
        } else {
            let index = (rng.next() % members.len() as u64) as usize;
            drop(members.swap_remove(index));
        }
        expected_epoch += 1;
        wait_scanned(expected_epoch);
    }
    expected_epoch += members.len() as u64;
    drop(members);
    wait_scanned(expected_epoch);
    stop.store(true, Ordering::Relaxed);
    let (snapshots, busy, seen) = reader.join().unwrap();
    println!(
        "reader: {snapshots} consistent snapshots, {busy} busy, server epoch {expected_epoch}"
    );
    assert_eq!(
        Directory::read(ha.shm.as_fd()).unwrap().server_epoch,
        expected_epoch,
        "one server epoch per join and leave"
    );
    for peer in 1..8u32 {
        for state in ["active", "dead"] {
            assert!(
                seen.contains(&(peer, state.to_string())),
                "peer {peer} never seen {state}"
            );
        }
    }
    assert!(seen.contains(&(0, "active".to_string())));
}

/// QEMU's qtest protocol (QEMU connects to our listener): one command per line,
/// answered by a line starting with `OK` (plus a value for reads).
struct Qtest {
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Qtest {
    fn cmd(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.writer, "{command}").unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "qtest closed"
            );
            let line = line.trim().to_string();
            if line.starts_with("OK") {
                return line;
            }
            assert!(
                !line.starts_with("FAIL") && !line.starts_with("ERR"),
                "{command}: {line}"
            );
        }
    }

    fn read(&mut self, command: &str) -> u64 {
        let line = self.cmd(command);
        let value = line.trim_start_matches("OK ").trim_start_matches("0x");
        u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("{command}: {line}"))
    }

    /// 32-bit PCI config access to device 00:04.0 through the CF8/CFC ports.
    fn config_read(&mut self, register: u32) -> u32 {
        self.cmd(&format!("outl 0xcf8 {:#x}", 0x8000_2000u32 | register));
        self.read("inl 0xcfc") as u32
    }

    fn config_write(&mut self, register: u32, value: u32) {
        self.cmd(&format!("outl 0xcf8 {:#x}", 0x8000_2000u32 | register));
        self.cmd(&format!("outl 0xcfc {value:#x}"));
    }
}

const BAR0: u64 = 0xfe00_0000;
const BAR1: u64 = 0xfe00_1000;

fn qemu_available() -> bool {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("SKIPPED: qemu-system-x86_64 not found");
    }
    found
}

/// Starts QEMU (paused: no guest code runs; qtest drives the device) with an ivshmem-doorbell at 00:04.0
/// connected to `server`, and returns it with its qtest connection.
fn start_qtest_qemu(server: &ServerProc, name: &str) -> (Child, Qtest) {
    let qtest_path = server.dir.path().join(format!("{name}.qtest"));
    let qtest_listener = UnixListener::bind(&qtest_path).unwrap();
    let chardev = format!("socket,path={},id=ivs", server.socket.display());
    let mut child = Command::new("qemu-system-x86_64")
        // -S: no guest code runs (this QEMU has no qtest accelerator, so without it
        // SeaBIOS would run under TCG and race our CF8/CFC accesses and BAR setup).
        .args(["-machine", "q35", "-accel", "tcg", "-S", "-display", "none"])
        .args(["-nodefaults", "-m", "64M"])
        .arg("-qtest")
        .arg(format!("unix:{}", qtest_path.display()))
        .args(["-chardev", &chardev])
        .args([
            "-device",
            "ivshmem-doorbell,chardev=ivs,vectors=2,addr=04.0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    qtest_listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match qtest_listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(child.try_wait().unwrap().is_none(), "QEMU exited early");
                assert!(Instant::now() < deadline, "QEMU never connected to qtest");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("qtest accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let qtest = Qtest {
        reader: BufReader::new(stream.try_clone().unwrap()),
        writer: stream,
    };
    (child, qtest)
}

impl Qtest {
    /// Maps BAR0/BAR1, enables memory decoding and MSI-X (vectors stay masked, so a
    /// ring of this QEMU's eventfd shows up as a PBA bit). Returns the PBA address.
    fn setup_ivshmem(&mut self) -> u64 {
        assert_eq!(
            self.config_read(0),
            0x1110_1af4,
            "ivshmem 1af4:1110 at 00:04.0"
        );
        self.config_write(0x10, BAR0 as u32);
        self.config_write(0x14, BAR1 as u32);
        self.config_write(0x04, 0x2); // memory space enable
        let mut capability = self.config_read(0x34) & 0xfc;
        let mut msix = None;
        while capability != 0 {
            let header = self.config_read(capability);
            if header & 0xff == 0x11 {
                msix = Some(capability);
                break;
            }
            capability = (header >> 8) & 0xfc;
        }
        let msix = msix.expect("MSI-X capability");
        let header = self.config_read(msix);
        self.config_write(msix, header | (1 << 31)); // Message Control bit 15: enable
        let pba = self.config_read(msix + 8);
        assert_eq!(pba & 0x7, 1, "PBA in BAR1");
        BAR1 + u64::from(pba & !0x7)
    }

    fn pending(&mut self, pba: u64) -> u64 {
        self.read(&format!("readl {pba:#x}"))
    }

    fn wait_pending(&mut self, pba: u64, bit: u32, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.pending(pba) & (1 << bit) == 0 {
            assert!(
                Instant::now() < deadline,
                "{what}: vector {bit} never pending"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn doorbell(&mut self, peer: u16, vector: u16) {
        self.cmd(&format!(
            "writel {:#x} {:#x}",
            BAR0 + 12,
            (u32::from(peer) << 16) | u32::from(vector)
        ));
    }
}

#[test]
fn real_qemu_doorbells_reach_peers_both_ways() {
    if !qemu_available() {
        return;
    }
    let server = ServerProc::start(&["-n", "2", "--max-peers", "4", "-l", "4M"]);
    let (a, ha) = server.join(2);
    let (mut qemu_child, mut qt) = start_qtest_qemu(&server, "q1");

    // QEMU joined as peer 1; A holds QEMU's eventfds from the join notice.
    let qemu_vec0 = expect_msg(&a, 1, true).unwrap();
    let qemu_vec1 = expect_msg(&a, 1, true).unwrap();
    let pba = qt.setup_ivshmem();
    // IVPosition (BAR0 + 8) is the ID our server gave QEMU.
    assert_eq!(qt.read(&format!("readl {:#x}", BAR0 + 8)), 1);

    // Guest -> peer: a doorbell write (peer 0, vector 1) rings A's own vector-1 eventfd.
    qt.doorbell(0, VECTOR_DMB);
    expect_rung(&ha.own[usize::from(VECTOR_DMB)]);
    qt.doorbell(0, VECTOR_CONTROL);
    expect_rung(&ha.own[usize::from(VECTOR_CONTROL)]);

    // Peer -> guest: a ring of QEMU's eventfd becomes a pending MSI-X vector.
    assert_eq!(qt.pending(pba), 0);
    ring(&qemu_vec1).unwrap();
    qt.wait_pending(pba, 1, "ring from A");
    assert_eq!(qt.pending(pba) & 1, 0, "only vector 1");
    ring(&qemu_vec0).unwrap();
    qt.wait_pending(pba, 0, "ring from A");

    qemu_child.kill().unwrap();
    qemu_child.wait().unwrap();
    expect_msg(&a, 1, false);
    wait_directory(ha.shm.as_fd(), "qemu dead", |d| {
        state(d, 1) == Some(PeerState::Dead)
    });
}

#[test]
fn two_real_qemus_signal_each_other_and_survivor_is_rung() {
    if !qemu_available() {
        return;
    }
    let server = ServerProc::start(&["-n", "2", "--max-peers", "4", "-l", "4M"]);
    // A fake client only to watch the directory and the notices.
    let (watch, hw) = server.join(2);
    let (mut q1, mut qt1) = start_qtest_qemu(&server, "q1");
    expect_msg(&watch, 1, true);
    expect_msg(&watch, 1, true);
    let (mut q2, mut qt2) = start_qtest_qemu(&server, "q2");
    expect_msg(&watch, 2, true);
    expect_msg(&watch, 2, true);
    let pba1 = qt1.setup_ivshmem();
    let pba2 = qt2.setup_ivshmem();
    assert_eq!(qt1.read(&format!("readl {:#x}", BAR0 + 8)), 1);
    assert_eq!(qt2.read(&format!("readl {:#x}", BAR0 + 8)), 2);

    // VM 1 rings VM 2's DMB vector through the eventfds our server forwarded. QEMU 1
    // handles the join notice for peer 2 asynchronously; until then the doorbell is
    // ignored, so repeat it (idempotent) until VM 2 shows the vector pending.
    let deadline = Instant::now() + TIMEOUT;
    while qt2.pending(pba2) & 0b10 == 0 {
        assert!(Instant::now() < deadline, "VM 2 never saw VM 1's doorbell");
        qt1.doorbell(2, VECTOR_DMB);
        std::thread::sleep(Duration::from_millis(2));
    }
    qt2.doorbell(1, VECTOR_DMB);
    qt1.wait_pending(pba1, 1, "VM 2 -> VM 1");

    // VM 2 dies: the directory says so and the survivor is rung on the control vector.
    assert_eq!(
        qt1.pending(pba1) & 1,
        0,
        "control vector idle before the death"
    );
    q2.kill().unwrap();
    q2.wait().unwrap();
    expect_msg(&watch, 2, false);
    wait_directory(hw.shm.as_fd(), "VM 2 dead", |d| {
        state(d, 2) == Some(PeerState::Dead) && state(d, 1) == Some(PeerState::Active)
    });
    qt1.wait_pending(pba1, 0, "control ring after VM 2 died");
    assert!(
        q1.try_wait().unwrap().is_none(),
        "VM 1 survives its peer's death"
    );
    q1.kill().unwrap();
    q1.wait().unwrap();
}

#[test]
fn abrupt_and_misbehaving_clients_do_not_hurt_the_server() {
    let server = ServerProc::start(&["-n", "2", "--max-peers", "4", "-l", "1M"]);
    let (a, ha) = server.join(2);
    let baseline = server.fd_count();
    // Clients that vanish before, during and right after the handshake: the server's
    // sends hit EPIPE/ECONNRESET (no SIGPIPE: it must survive).
    for round in 0..60 {
        let client = server.connect();
        match round % 3 {
            0 => {}
            1 => {
                let _ = client.recv(TIMEOUT); // only the version message
            }
            _ => {
                let _ = client.handshake(2, TIMEOUT);
            }
        }
        drop(client);
    }
    // A client that writes to the server (QEMU never does): disconnected like EOF.
    let (talker, ht) = server.join(2);
    std::io::Write::write_all(&mut talker.stream(), b"hello").unwrap();
    let left = ht.id;
    // A stays connected through all of it and sees matching join/leave notices;
    // drain them until the talker's leave arrives.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "talker's leave never announced");
        let msg = a.recv(TIMEOUT).expect("server alive and notifying");
        if msg.value == i64::from(left) && msg.fd.is_none() {
            break;
        }
    }
    drop(talker);
    wait_directory(ha.shm.as_fd(), "only A active", |d| {
        d.entries[1..]
            .iter()
            .all(|e| e.is_some_and(|e| e.state != PeerState::Active))
    });
    let deadline = Instant::now() + TIMEOUT;
    while server.fd_count() != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        server.fd_count(),
        baseline,
        "no fd leaked by abrupt clients"
    );
    let (_b, hb) = server.join(2);
    assert_eq!(hb.id, 1, "server still assigns the lowest free ID");
    assert!(server.child_alive());
}
