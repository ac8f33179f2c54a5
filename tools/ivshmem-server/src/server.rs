//! The server: socket setup, the single-threaded poll loop, joins and leaves.
//!
//! Protocol reference §7.2. Per new client with ID `k` and `N` vectors the server
//! 1. creates `N` eventfds and marks directory entry `k` active with a fresh GID;
//! 2. sends `k` the version `0`, its ID `k`, and `-1` with the region fd;
//! 3. sends every existing peer `P` the message `k` + fd, once per vector (join notice);
//! 4. sends `k` the eventfds of every existing peer (`P` + fd, N times, ascending `P`);
//! 5. sends `k` its own eventfds (`k` + fd, N times);
//! 6. rings every existing peer on vector 0 (control).
//!
//! Any readable event on a client socket (data, EOF, error) is a disconnect, as in the
//! contrib server: the server closes the socket and the peer's eventfds, marks entry `k`
//! dead (bumping its epoch and the server epoch), sends `k` without fd to every
//! remaining peer, and rings each on vector 0.
//!
//! Sends never block and never raise SIGPIPE (`MSG_DONTWAIT | MSG_NOSIGNAL`): messages
//! wait in a per-client queue until the socket is writable; a client whose queue grows
//! past [`MAX_QUEUED`] or whose socket fails is disconnected.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ivshmem_region::{Gid, Layout, LayoutParams, VECTOR_CONTROL};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::args::Args;
use crate::proto::{self, encode, MESSAGE_LEN, PROTOCOL_VERSION, SHM_MESSAGE};
use crate::region::{Backing, Region};

/// Most messages queued for one client before it is considered stuck and dropped.
pub const MAX_QUEUED: usize = 1 << 16;

/// Prefix of every log line.
const NAME: &str = "ivshmem-server";

fn log(line: std::fmt::Arguments<'_>) {
    // Never panic on a closed stderr (unlike eprintln!).
    let _ = writeln!(io::stderr(), "{NAME}: {line}");
}

/// A setup failure, reported as one clear line and a non-zero exit.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

fn setup_err(message: String) -> SetupError {
    SetupError(message)
}

struct Outgoing {
    bytes: [u8; MESSAGE_LEN],
    sent: usize,
    fd: Option<Rc<OwnedFd>>,
}

struct Peer {
    id: u16,
    socket: UnixStream,
    vectors: Vec<Rc<OwnedFd>>,
    queue: VecDeque<Outgoing>,
    gid: Gid,
    /// True while the socket is full and messages wait for POLLOUT (logged once).
    blocked: bool,
}

impl Peer {
    fn push(&mut self, value: i64, fd: Option<&Rc<OwnedFd>>) {
        self.queue.push_back(Outgoing {
            bytes: encode(value),
            sent: 0,
            fd: fd.cloned(),
        });
    }

    /// Sends queued messages until the queue is empty or the socket is full.
    fn flush(&mut self, verbose: bool) -> Result<(), String> {
        if self.queue.len() > MAX_QUEUED {
            return Err(format!(
                "more than {MAX_QUEUED} messages queued (client not reading)"
            ));
        }
        while let Some(front) = self.queue.front_mut() {
            // The fd travels with the first byte of the message only.
            let fd = if front.sent == 0 {
                front.fd.as_deref().map(|fd| fd.as_fd())
            } else {
                None
            };
            match proto::send_part(self.socket.as_fd(), &front.bytes[front.sent..], fd) {
                Ok(n) => {
                    front.sent += n;
                    if front.sent == MESSAGE_LEN {
                        if verbose {
                            log(format_args!(
                                "-> peer {}: {}{}",
                                self.id,
                                i64::from_le_bytes(front.bytes),
                                if front.fd.is_some() { " + fd" } else { "" }
                            ));
                        }
                        self.queue.pop_front();
                    }
                }
                Err(Errno::EAGAIN) => {
                    if !self.blocked && verbose {
                        log(format_args!(
                            "peer {}: socket full, {} message(s) queued",
                            self.id,
                            self.queue.len()
                        ));
                    }
                    self.blocked = true;
                    return Ok(());
                }
                Err(err) => return Err(format!("send failed: {err}")),
            }
        }
        if self.blocked && verbose {
            log(format_args!("peer {}: queue drained", self.id));
        }
        self.blocked = false;
        Ok(())
    }
}

/// The running server.
pub struct Server {
    args: Args,
    region: Region,
    shm_fd: Rc<OwnedFd>,
    listener: UnixListener,
    socket_path: PathBuf,
    socket_identity: (u64, u64),
    signals: SignalFd,
    peers: BTreeMap<u16, Peer>,
    /// A spare fd (on /dev/null), released to accept-and-close a client when the fd
    /// table is full, so a pending connection cannot make the poll loop spin.
    reserve: Option<fs::File>,
    /// Held until the server is dropped (after the socket file is removed).
    _path_lock: PathLock,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SetupError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| setup_err(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// Checks that the socket's directory exists.
fn check_socket_dir(path: &Path) -> Result<(), SetupError> {
    if path.as_os_str().len() >= 108 {
        return Err(setup_err(format!(
            "socket path {} is too long (UNIX sockets allow 107 bytes)",
            path.display()
        )));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(setup_err(format!(
            "socket directory {} is not a directory",
            parent.display()
        ))),
        Err(e) => Err(setup_err(format!(
            "socket directory {} does not exist or is unreachable: {e}",
            parent.display()
        ))),
    }
}

/// An exclusive `flock` on `SOCKET.lock`, held for the server's lifetime: a second
/// server on the same path fails at once, without connecting to the live one (which
/// would show its peers a phantom join and leave). The file is removed on drop.
struct PathLock {
    _lock: Flock<fs::File>,
    path: PathBuf,
}

impl PathLock {
    fn acquire(socket: &Path) -> Result<PathLock, SetupError> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| setup_err(format!("cannot open lock file {}: {e}", path.display())))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let _ = lock.set_len(0);
                let _ = lock.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0);
                Ok(PathLock { _lock: lock, path })
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = (&file).read_to_string(&mut pid);
                Err(setup_err(format!(
                    "socket {} is in use by a running server (pid {}, lock {})",
                    socket.display(),
                    pid.trim(),
                    path.display()
                )))
            }
            Err((_, e)) => Err(setup_err(format!("cannot lock {}: {e}", path.display()))),
        }
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Checks an existing file at the socket path (we hold the path lock): a stale socket is
/// removed; a socket with a live listener (not one of ours) or a non-socket is an error.
fn check_existing_socket(path: &Path) -> Result<(), SetupError> {
    let display = path.display();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(setup_err(format!(
            "cannot inspect socket path {display}: {e}"
        ))),
        Ok(meta) if !meta.file_type().is_socket() => Err(setup_err(format!(
            "{display} exists and is not a socket; refusing to replace it"
        ))),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(setup_err(format!(
                "socket {display} is in use by a running server"
            ))),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log(format_args!("removing stale socket {display}"));
                fs::remove_file(path)
                    .map_err(|e| setup_err(format!("cannot remove stale socket {display}: {e}")))
            }
            Err(e) => Err(setup_err(format!(
                "socket {display} exists and cannot be probed: {e}"
            ))),
        },
    }
}

/// Binds a listening socket at a temporary name and renames it into place, so the
/// socket file appears only once it accepts connections.
fn bind_socket(path: &Path) -> Result<(UnixListener, (u64, u64)), SetupError> {
    let display = path.display();
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    let (listener, bound_at) = if temp.as_os_str().len() < 108 {
        let _ = fs::remove_file(&temp);
        (UnixListener::bind(&temp), temp.clone())
    } else {
        (UnixListener::bind(path), path.to_path_buf())
    };
    let listener = listener.map_err(|e| setup_err(format!("cannot listen on {display}: {e}")))?;
    if bound_at != path {
        fs::rename(&bound_at, path).map_err(|e| {
            let _ = fs::remove_file(&bound_at);
            setup_err(format!("cannot move socket into place at {display}: {e}"))
        })?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| setup_err(format!("socket {display}: {e}")))?;
    let meta =
        fs::symlink_metadata(path).map_err(|e| setup_err(format!("socket {display}: {e}")))?;
    Ok((listener, (meta.dev(), meta.ino())))
}

fn is_out_of_fds(err: &io::Error) -> bool {
    let code = err.raw_os_error();
    code == Some(Errno::EMFILE as i32) || code == Some(Errno::ENFILE as i32)
}

/// Raises the soft fd limit to the hard limit: each peer costs `vectors + 1` fds here,
/// and fds in flight over the sockets count against it too (Linux `unix_inflight`).
fn raise_fd_limit(args: &Args) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(soft, _)| soft);
    let per_peer = u64::from(args.vectors) + 1;
    let needed = u64::from(args.max_peers) * per_peer * 2 + 32;
    if needed > limit {
        log(format_args!(
            "warning: fd limit {limit} may be too low for {} peers with {} vectors (about {needed} needed)",
            args.max_peers, args.vectors
        ));
    }
}

impl Server {
    /// Validates arguments, creates and formats the region, and starts listening.
    /// On return the socket file exists and accepts clients.
    pub fn setup(args: Args) -> Result<Server, SetupError> {
        let layout = Layout::compute(LayoutParams {
            region_size: args.size,
            max_peers: args.max_peers,
            slots_per_peer: args.slots,
        })
        .map_err(|e| setup_err(format!("bad size or peer settings: {e}")))?;
        if args.vectors < ivshmem_region::VECTORS {
            log(format_args!(
                "warning: {} vector(s): smcd needs {} (0 control, 1 DMB signals)",
                args.vectors,
                ivshmem_region::VECTORS
            ));
        }
        raise_fd_limit(&args);
        check_socket_dir(&args.socket)?;
        let path_lock = PathLock::acquire(&args.socket)?;
        check_existing_socket(&args.socket)?;

        // Signals: SIGINT/SIGTERM/SIGHUP arrive through a signalfd in the poll loop.
        // SIGPIPE is ignored (sends also use MSG_NOSIGNAL).
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGHUP);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| setup_err(format!("cannot block signals: {e}")))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| setup_err(format!("signalfd: {e}")))?;
        // SAFETY: installing SIG_IGN runs no handler code; no other thread changes dispositions.
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
            .map_err(|e| setup_err(format!("cannot ignore SIGPIPE: {e}")))?;

        let backing = match (&args.shm_name, &args.shm_dir) {
            (Some(name), _) => Backing::PosixShm(name),
            (None, Some(dir)) => Backing::Directory(dir),
            (None, None) => Backing::Memfd,
        };
        let region_id: [u8; 16] = random_bytes()?;
        let region = Region::create(backing, layout, region_id, args.vectors)
            .map_err(|e| setup_err(format!("cannot create the shared memory: {e}")))?;
        let shm_fd = Rc::new(
            region
                .fd()
                .try_clone_to_owned()
                .map_err(|e| setup_err(format!("dup of region fd: {e}")))?,
        );

        let (listener, socket_identity) = bind_socket(&args.socket)?;
        let server = Server {
            socket_path: args.socket.clone(),
            args,
            region,
            shm_fd,
            listener,
            socket_identity,
            signals,
            peers: BTreeMap::new(),
            reserve: fs::File::open("/dev/null").ok(),
            _path_lock: path_lock,
        };
        if let Some(pid_file) = &server.args.pid_file {
            if let Err(e) = fs::write(pid_file, format!("{}\n", std::process::id())) {
                server.remove_socket();
                return Err(setup_err(format!(
                    "cannot write pid file {}: {e}",
                    pid_file.display()
                )));
            }
        }
        let region_id_hex: String = region_id.iter().map(|b| format!("{b:02x}")).collect();
        let layout = server.region.layout();
        let ready = format!(
            "{NAME}: listening on {} (size {}, vectors {}, max peers {}, slots {}, area {} bytes, region id {})",
            server.socket_path.display(),
            layout.region_size(),
            server.args.vectors,
            layout.max_peers(),
            layout.slots_per_peer(),
            layout.area_size(),
            region_id_hex,
        );
        let mut stdout = io::stdout();
        let _ = writeln!(stdout, "{ready}");
        let _ = stdout.flush();
        Ok(server)
    }

    /// Runs the poll loop until SIGINT/SIGTERM/SIGHUP, then shuts down cleanly.
    pub fn run(mut self) -> io::Result<()> {
        loop {
            let ids: Vec<u16> = self.peers.keys().copied().collect();
            let (signal_ready, listener_ready, events) = {
                let mut fds = Vec::with_capacity(2 + ids.len());
                fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                for id in &ids {
                    let peer = &self.peers[id];
                    let mut flags = PollFlags::POLLIN;
                    if !peer.queue.is_empty() {
                        flags |= PollFlags::POLLOUT;
                    }
                    fds.push(PollFd::new(peer.socket.as_fd(), flags));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::other(format!("poll: {e}"))),
                }
                let revents = |fd: &PollFd<'_>| fd.revents().unwrap_or(PollFlags::empty());
                let events: Vec<PollFlags> = fds[2..].iter().map(revents).collect();
                (
                    !revents(&fds[0]).is_empty(),
                    !revents(&fds[1]).is_empty(),
                    events,
                )
            };
            if signal_ready {
                if let Ok(Some(info)) = self.signals.read_signal() {
                    log(format_args!(
                        "signal {} received, shutting down",
                        info.ssi_signo
                    ));
                    self.shutdown();
                    return Ok(());
                }
            }
            let mut gone = Vec::new();
            for (id, revents) in ids.iter().zip(events) {
                let hangup = PollFlags::POLLIN
                    | PollFlags::POLLHUP
                    | PollFlags::POLLERR
                    | PollFlags::POLLNVAL;
                if revents.intersects(hangup) {
                    gone.push((*id, "socket readable or closed".to_string()));
                } else if revents.contains(PollFlags::POLLOUT) {
                    let verbose = self.args.verbose;
                    if let Some(peer) = self.peers.get_mut(id) {
                        if let Err(reason) = peer.flush(verbose) {
                            gone.push((*id, reason));
                        }
                    }
                }
            }
            self.disconnect_all(gone);
            if listener_ready {
                self.accept_clients();
            }
        }
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((socket, _)) => self.add_client(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_fds(&e) => {
                    // Out of fds: free the spare, accept and close the client so the
                    // listener stops being readable, then take the spare back.
                    log(format_args!(
                        "refusing client: out of file descriptors ({e})"
                    ));
                    self.reserve = None;
                    drop(self.listener.accept());
                    self.reserve = fs::File::open("/dev/null").ok();
                    return;
                }
                Err(e) => {
                    log(format_args!("accept failed: {e}"));
                    return;
                }
            }
        }
    }

    fn lowest_free_id(&self) -> Option<u16> {
        (0..self.region.layout().max_peers())
            .map(|id| id as u16)
            .find(|id| !self.peers.contains_key(id))
    }

    fn fresh_gid(&self) -> io::Result<Gid> {
        loop {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
            let gid = Gid::from_bytes(bytes);
            if !gid.is_zero() && self.peers.values().all(|p| p.gid != gid) {
                return Ok(gid);
            }
        }
    }

    /// Disconnects every peer whose socket already reports EOF/error/data, without
    /// waiting (zero-timeout poll). Used before refusing a client for lack of IDs: a
    /// peer that closed just before the new client connected is not counted.
    fn reap_disconnected(&mut self) {
        let ids: Vec<u16> = self.peers.keys().copied().collect();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = ids
                .iter()
                .map(|id| PollFd::new(self.peers[id].socket.as_fd(), PollFlags::POLLIN))
                .collect();
            if poll(&mut fds, PollTimeout::ZERO).is_err() {
                return;
            }
            fds.iter()
                .map(|fd| !fd.revents().unwrap_or(PollFlags::empty()).is_empty())
                .collect()
        };
        let gone = ids
            .into_iter()
            .zip(ready)
            .filter(|(_, ready)| *ready)
            .map(|(id, _)| (id, "socket readable or closed".to_string()))
            .collect();
        self.disconnect_all(gone);
    }

    fn add_client(&mut self, socket: UnixStream) {
        if self.lowest_free_id().is_none() {
            self.reap_disconnected();
        }
        let Some(id) = self.lowest_free_id() else {
            log(format_args!(
                "refusing client: all {} peer IDs are in use",
                self.region.layout().max_peers()
            ));
            return; // dropping `socket` closes it
        };
        if let Err(e) = socket.set_nonblocking(true) {
            log(format_args!("refusing client: {e}"));
            return;
        }
        let mut vectors = Vec::with_capacity(self.args.vectors as usize);
        for _ in 0..self.args.vectors {
            match EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
                Ok(fd) => vectors.push(Rc::new(OwnedFd::from(fd))),
                Err(e) => {
                    log(format_args!("refusing client: eventfd: {e}"));
                    return;
                }
            }
        }
        let gid = match self.fresh_gid() {
            Ok(gid) => gid,
            Err(e) => {
                log(format_args!("refusing client: {e}"));
                return;
            }
        };
        self.region.mark_joined(u32::from(id), gid);
        log(format_args!(
            "peer {id} joined (gid {gid}, epoch {}, fd {})",
            self.region.peer_epoch(u32::from(id)),
            socket.as_raw_fd()
        ));
        let mut peer = Peer {
            id,
            socket,
            vectors,
            queue: VecDeque::new(),
            gid,
            blocked: false,
        };
        peer.push(PROTOCOL_VERSION, None);
        peer.push(i64::from(id), None);
        peer.push(SHM_MESSAGE, Some(&self.shm_fd));
        for other in self.peers.values_mut() {
            for fd in &peer.vectors {
                other.push(i64::from(id), Some(fd));
            }
        }
        for other in self.peers.values() {
            for fd in &other.vectors {
                peer.push(i64::from(other.id), Some(fd));
            }
        }
        let own: Vec<Rc<OwnedFd>> = peer.vectors.clone();
        for fd in &own {
            peer.push(i64::from(id), Some(fd));
        }
        self.peers.insert(id, peer);
        self.ring_control(Some(id));
        let ids: Vec<u16> = self.peers.keys().copied().collect();
        self.flush_peers(&ids);
    }

    /// Rings vector 0 (control) of every peer except `except`.
    fn ring_control(&self, except: Option<u16>) {
        for peer in self.peers.values() {
            if Some(peer.id) == except {
                continue;
            }
            if let Some(fd) = peer.vectors.get(usize::from(VECTOR_CONTROL)) {
                if let Err(e) = proto::ring(fd.as_fd()) {
                    log(format_args!("cannot ring peer {}: {e}", peer.id));
                }
            }
        }
    }

    fn flush_peers(&mut self, ids: &[u16]) {
        let verbose = self.args.verbose;
        let mut gone = Vec::new();
        for id in ids {
            if let Some(peer) = self.peers.get_mut(id) {
                if let Err(reason) = peer.flush(verbose) {
                    gone.push((*id, reason));
                }
            }
        }
        self.disconnect_all(gone);
    }

    /// Disconnects peers; a failure while notifying survivors queues further disconnects.
    fn disconnect_all(&mut self, mut gone: Vec<(u16, String)>) {
        while let Some((id, reason)) = gone.pop() {
            let Some(peer) = self.peers.remove(&id) else {
                continue;
            };
            drop(peer); // closes the socket and (once no queue holds them) the eventfds
            self.region.mark_dead(u32::from(id));
            log(format_args!(
                "peer {id} left ({reason}); epoch {}, server epoch {}",
                self.region.peer_epoch(u32::from(id)),
                self.region.server_epoch()
            ));
            for other in self.peers.values_mut() {
                other.push(i64::from(id), None);
            }
            self.ring_control(None);
            let verbose = self.args.verbose;
            for other in self.peers.values_mut() {
                if let Err(reason) = other.flush(verbose) {
                    if !gone.iter().any(|(g, _)| *g == other.id) {
                        gone.push((other.id, reason));
                    }
                }
            }
        }
    }

    fn remove_socket(&self) {
        // Remove the socket only if it is still the one we created.
        if let Ok(meta) = fs::symlink_metadata(&self.socket_path) {
            if (meta.dev(), meta.ino()) == self.socket_identity {
                let _ = fs::remove_file(&self.socket_path);
            }
        }
    }

    fn shutdown(&mut self) {
        self.remove_socket();
        if let Some(pid_file) = &self.args.pid_file {
            let _ = fs::remove_file(pid_file);
        }
        let count = self.peers.len();
        self.peers.clear();
        log(format_args!("closed {count} client(s); bye"));
    }
}
