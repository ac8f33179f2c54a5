//! QEMU ivshmem server protocol messages: one LE `i64`, optionally with one fd.
//!
//! Protocol reference §7.2: every message is a signed 64-bit little-endian integer with
//! at most one file descriptor attached as SCM_RIGHTS; the client never sends anything.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Protocol version sent as the first message (QEMU ≥ 2.5).
pub const PROTOCOL_VERSION: i64 = 0;
/// Value sent with the shared-memory fd.
pub const SHM_MESSAGE: i64 = -1;
/// Size of one message on the wire.
pub const MESSAGE_LEN: usize = 8;

/// Sends the bytes `bytes` (a suffix of one encoded message) without blocking and without
/// SIGPIPE, attaching `fd` if given. Returns the number of bytes the kernel took.
pub fn send_part(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> nix::Result<usize> {
    let raw: [RawFd; 1] = [fd.map_or(-1, |fd| fd.as_raw_fd())];
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &rights } else { &[] };
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            flags,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Encodes a message value.
pub fn encode(value: i64) -> [u8; MESSAGE_LEN] {
    value.to_le_bytes()
}

/// A received message.
#[derive(Debug)]
pub struct Message {
    /// The value.
    pub value: i64,
    /// The attached file descriptor, if any.
    pub fd: Option<OwnedFd>,
}

/// Why receiving a message failed.
#[derive(Debug)]
pub enum RecvError {
    /// The peer closed the connection (at a message boundary).
    Eof,
    /// The connection closed or failed inside a message.
    Truncated,
    /// No (complete) message within the timeout.
    Timeout,
    /// More than one fd arrived with one message.
    TooManyFds,
    /// A system call failed.
    Sys(Errno),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Eof => f.write_str("connection closed"),
            RecvError::Truncated => f.write_str("connection closed inside a message"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::TooManyFds => f.write_str("more than one fd attached to a message"),
            RecvError::Sys(errno) => write!(f, "receive failed: {errno}"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Waits up to `timeout` for `fd` to become readable; true if it did.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> nix::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Receives one message from `socket` (blocking up to `timeout` in total).
pub fn recv_message(socket: BorrowedFd<'_>, timeout: Duration) -> Result<Message, RecvError> {
    let deadline = Instant::now() + timeout;
    let mut bytes = [0u8; MESSAGE_LEN];
    let mut filled = 0;
    let mut fd: Option<OwnedFd> = None;
    while filled < MESSAGE_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait_readable(socket, left).map_err(RecvError::Sys)? {
            return Err(RecvError::Timeout);
        }
        let mut cmsg_buffer = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut bytes[filled..])];
        let msg = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buffer),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(err) => return Err(RecvError::Sys(err)),
        };
        let received = msg.bytes;
        let mut extra = false;
        for cmsg in msg.cmsgs().map_err(RecvError::Sys)? {
            if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
                for raw in raw_fds {
                    // SAFETY: the kernel just installed `raw` in our fd table for this
                    // message (SCM_RIGHTS); nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if fd.is_none() {
                        fd = Some(owned);
                    } else {
                        extra = true; // `owned` dropped: closed
                    }
                }
            }
        }
        if extra {
            return Err(RecvError::TooManyFds);
        }
        if received == 0 {
            return Err(if filled == 0 {
                RecvError::Eof
            } else {
                RecvError::Truncated
            });
        }
        filled += received;
    }
    Ok(Message {
        value: i64::from_le_bytes(bytes),
        fd,
    })
}

/// Writes the 8-byte value 1 to an eventfd (rings it). Errors other than "counter full"
/// are returned.
pub fn ring(eventfd: impl AsFd) -> nix::Result<()> {
    match nix::unistd::write(eventfd, &1u64.to_ne_bytes()) {
        Ok(_) | Err(Errno::EAGAIN) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Reads and discards the counter of a non-blocking eventfd; returns its value (0 if none).
pub fn drain(eventfd: impl AsFd) -> nix::Result<u64> {
    let mut buf = [0u8; 8];
    match nix::unistd::read(eventfd, &mut buf) {
        Ok(8) => Ok(u64::from_ne_bytes(buf)),
        Ok(_) => Err(Errno::EIO),
        Err(Errno::EAGAIN) => Ok(0),
        Err(err) => Err(err),
    }
}
