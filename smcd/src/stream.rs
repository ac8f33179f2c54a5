//! The byte-stream trait the CLC handshake and the TCP fallback run over.
//!
//! SMC-D rides on an ordinary TCP connection (protocol-reference §1): the CLC messages
//! travel in its byte stream, and after a Decline the very same stream carries the
//! application's bytes. smcd has no TCP stack of its own, so it reaches that connection
//! only through [`ByteStream`]: non-blocking reads and writes that say
//! [`StreamError::WouldBlock`] instead of waiting, a half-close, a close, and one bit
//! of TCP-level knowledge, [`ByteStream::peer_smc_capable`] (the SMC experimental TCP
//! option, kind 254 with ExID `0xE2D4C3D9`, was seen in the SYN / SYN-ACK).
//!
//! Implementations: [`MemPipe`] (an in-memory pair for tests and simulations), the
//! `std::net::TcpStream` wrapper [`StdTcpStream`] behind feature `std`, and in the
//! kernel a smoltcp socket.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

/// Why a stream operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Nothing can be done right now (no data to read, no room to write); retry after
    /// the stream reports progress. Not an error of the connection.
    WouldBlock,
    /// The peer reset (aborted) the connection.
    Reset,
    /// Writing after this side shut down its write direction or closed the stream, or
    /// after the peer closed the connection (EPIPE).
    BrokenPipe,
    /// The stream was closed locally; no operation is possible any more.
    Closed,
    /// The transport timed out.
    TimedOut,
    /// Any other transport failure.
    Other,
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StreamError::WouldBlock => "operation would block",
            StreamError::Reset => "connection reset by peer",
            StreamError::BrokenPipe => "write direction is shut down",
            StreamError::Closed => "stream is closed",
            StreamError::TimedOut => "transport timed out",
            StreamError::Other => "transport error",
        })
    }
}

impl core::error::Error for StreamError {}

impl embedded_io::Error for StreamError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            // `WouldBlock` never leaves the async wrappers; map it to something neutral.
            StreamError::WouldBlock => ErrorKind::Interrupted,
            StreamError::Reset => ErrorKind::ConnectionReset,
            StreamError::BrokenPipe => ErrorKind::BrokenPipe,
            StreamError::Closed => ErrorKind::NotConnected,
            StreamError::TimedOut => ErrorKind::TimedOut,
            StreamError::Other => ErrorKind::Other,
        }
    }
}

/// A connected, non-blocking, reliable byte stream (a TCP connection).
///
/// Contract for implementers:
/// - `read` returns `Ok(n > 0)` with bytes in order, `Ok(0)` only at end of stream
///   (the peer shut down its write direction and every byte was read), and
///   `Err(WouldBlock)` when no byte is available yet. An empty `buf` returns `Ok(0)`.
/// - `write` accepts `Ok(1..=data.len())` bytes or `Err(WouldBlock)` when there is no
///   room; accepted bytes are delivered in order. An empty `data` returns `Ok(0)`.
/// - `shutdown_write` sends end-of-stream after the bytes already accepted (TCP FIN);
///   reads keep working. `close` ends both directions and releases the stream; it is
///   idempotent.
/// - `peer_smc_capable` tells whether the SMC TCP option was exchanged (client: seen in
///   the SYN-ACK; server: seen in the SYN and echoed). It does not change over the
///   life of the stream.
/// - `read_ready` is true when `read` would not return `WouldBlock` (data, end of
///   stream, or an error is pending); `write_ready` likewise for `write`. They are
///   hints for readiness and wake-ups: a `true` may be followed by `WouldBlock` only if
///   something else consumed the readiness in between.
pub trait ByteStream {
    /// Reads up to `buf.len()` bytes; `Ok(0)` = end of stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError>;

    /// Writes a prefix of `data`, returning how many bytes were accepted.
    fn write(&mut self, data: &[u8]) -> Result<usize, StreamError>;

    /// Half-closes: no more writes; the peer reads end of stream after the last byte.
    fn shutdown_write(&mut self) -> Result<(), StreamError>;

    /// Closes both directions and releases the connection.
    fn close(&mut self) -> Result<(), StreamError>;

    /// Whether the peer indicated SMC capability with the TCP option (§1).
    fn peer_smc_capable(&self) -> bool;

    /// Whether `read` would make progress (bytes, end of stream or an error).
    fn read_ready(&self) -> bool;

    /// Whether `write` would make progress (room, or an error).
    fn write_ready(&self) -> bool;
}

/// One direction of a [`MemPipe`].
#[derive(Debug, Default)]
struct Direction {
    buf: VecDeque<u8>,
    /// The writer shut down (FIN after the buffered bytes).
    fin: bool,
    /// The writer aborted: the reader sees `Reset`.
    reset: bool,
    /// The reader closed: further writes fail with `BrokenPipe`.
    reader_closed: bool,
    /// Total bytes ever accepted into this direction.
    total: u64,
}

#[derive(Debug)]
struct PipeShared {
    dirs: [Direction; 2],
    capacity: usize,
}

/// One end of an in-memory, bidirectional byte pipe with bounded buffers.
///
/// Created in pairs by [`MemPipe::pair`]; end `0` writes into direction 0 and reads
/// direction 1, end `1` the reverse. Writes accept at most the free room of the
/// direction (`capacity` bytes each way), optionally capped further by
/// [`MemPipe::set_max_io`] to model arbitrary TCP segmentation. Everything is
/// deterministic: there is no thread and no clock.
#[derive(Debug)]
pub struct MemPipe {
    shared: Arc<spin::Mutex<PipeShared>>,
    side: usize,
    smc_capable: bool,
    max_io: usize,
    write_shut: bool,
    closed: bool,
}

impl MemPipe {
    /// A connected pair with `capacity` bytes of buffer in each direction. Both ends
    /// report `peer_smc_capable() == smc_capable` (the option is negotiated for the
    /// connection as a whole).
    pub fn pair(capacity: usize, smc_capable: bool) -> (MemPipe, MemPipe) {
        let shared = Arc::new(spin::Mutex::new(PipeShared {
            dirs: [Direction::default(), Direction::default()],
            capacity: capacity.max(1),
        }));
        let end = |side| MemPipe {
            shared: shared.clone(),
            side,
            smc_capable,
            max_io: usize::MAX,
            write_shut: false,
            closed: false,
        };
        (end(0), end(1))
    }

    /// Caps every single `read`/`write` call of this end at `max` bytes (at least 1).
    pub fn set_max_io(&mut self, max: usize) {
        self.max_io = max.max(1);
    }

    /// Total bytes this end has ever written into the pipe (CLC and application bytes).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.lock().dirs[self.side].total
    }

    /// Total bytes the other end has ever written into the pipe.
    pub fn bytes_received_total(&self) -> u64 {
        self.shared.lock().dirs[1 - self.side].total
    }

    /// Bytes written by the other end that this end has not read yet.
    pub fn pending_in(&self) -> usize {
        self.shared.lock().dirs[1 - self.side].buf.len()
    }

    /// Aborts the connection: the peer's next read fails with [`StreamError::Reset`]
    /// (like a TCP RST) and this end is closed.
    pub fn reset(&mut self) {
        let mut shared = self.shared.lock();
        shared.dirs[self.side].reset = true;
        shared.dirs[1 - self.side].reader_closed = true;
        self.closed = true;
    }
}

impl ByteStream for MemPipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let mut shared = self.shared.lock();
        let dir = &mut shared.dirs[1 - self.side];
        if dir.reset {
            return Err(StreamError::Reset);
        }
        if dir.buf.is_empty() {
            return if dir.fin {
                Ok(0)
            } else {
                Err(StreamError::WouldBlock)
            };
        }
        let n = buf.len().min(dir.buf.len()).min(self.max_io);
        for (slot, byte) in buf[..n].iter_mut().zip(dir.buf.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if self.write_shut {
            return Err(StreamError::BrokenPipe);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let mut shared = self.shared.lock();
        let capacity = shared.capacity;
        let dir = &mut shared.dirs[self.side];
        if dir.reader_closed {
            return Err(StreamError::BrokenPipe);
        }
        let room = capacity - dir.buf.len();
        if room == 0 {
            return Err(StreamError::WouldBlock);
        }
        let n = data.len().min(room).min(self.max_io);
        dir.buf.extend(&data[..n]);
        dir.total += n as u64;
        Ok(n)
    }

    fn shutdown_write(&mut self) -> Result<(), StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        self.write_shut = true;
        self.shared.lock().dirs[self.side].fin = true;
        Ok(())
    }

    fn close(&mut self) -> Result<(), StreamError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.write_shut = true;
        let mut shared = self.shared.lock();
        shared.dirs[self.side].fin = true;
        shared.dirs[1 - self.side].reader_closed = true;
        Ok(())
    }

    fn peer_smc_capable(&self) -> bool {
        self.smc_capable
    }

    fn read_ready(&self) -> bool {
        if self.closed {
            return true;
        }
        let shared = self.shared.lock();
        let dir = &shared.dirs[1 - self.side];
        dir.reset || dir.fin || !dir.buf.is_empty()
    }

    fn write_ready(&self) -> bool {
        if self.closed || self.write_shut {
            return true;
        }
        let shared = self.shared.lock();
        let dir = &shared.dirs[self.side];
        dir.reader_closed || dir.buf.len() < shared.capacity
    }
}

impl Drop for MemPipe {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(feature = "std")]
mod std_tcp {
    extern crate std;

    use super::{ByteStream, StreamError};
    use std::io::{self, Read, Write};
    use std::net::{Shutdown, TcpStream};

    /// A `std::net::TcpStream` as a [`ByteStream`] (feature `std`, host only).
    ///
    /// The socket is switched to non-blocking mode. std cannot see TCP options, so the
    /// caller states whether the peer is to be treated as SMC-capable (e.g. both ends
    /// are smcd test peers).
    #[derive(Debug)]
    pub struct StdTcpStream {
        stream: TcpStream,
        smc_capable: bool,
        closed: bool,
    }

    impl StdTcpStream {
        /// Wraps `stream`, setting it non-blocking and disabling Nagle (CLC messages
        /// are small and latency-bound).
        pub fn new(stream: TcpStream, peer_smc_capable: bool) -> io::Result<Self> {
            stream.set_nonblocking(true)?;
            stream.set_nodelay(true)?;
            Ok(StdTcpStream {
                stream,
                smc_capable: peer_smc_capable,
                closed: false,
            })
        }

        /// The wrapped socket.
        pub fn get_ref(&self) -> &TcpStream {
            &self.stream
        }
    }

    fn map(err: io::Error) -> StreamError {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => StreamError::WouldBlock,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => StreamError::Reset,
            io::ErrorKind::BrokenPipe => StreamError::BrokenPipe,
            io::ErrorKind::NotConnected => StreamError::Closed,
            io::ErrorKind::TimedOut => StreamError::TimedOut,
            _ => StreamError::Other,
        }
    }

    impl ByteStream for StdTcpStream {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
            if self.closed {
                return Err(StreamError::Closed);
            }
            self.stream.read(buf).map_err(map)
        }

        fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
            if self.closed {
                return Err(StreamError::Closed);
            }
            if data.is_empty() {
                return Ok(0);
            }
            match self.stream.write(data) {
                Ok(0) => Err(StreamError::WouldBlock),
                Ok(n) => Ok(n),
                Err(e) => Err(map(e)),
            }
        }

        fn shutdown_write(&mut self) -> Result<(), StreamError> {
            if self.closed {
                return Err(StreamError::Closed);
            }
            self.stream.shutdown(Shutdown::Write).map_err(map)
        }

        fn close(&mut self) -> Result<(), StreamError> {
            if self.closed {
                return Ok(());
            }
            self.closed = true;
            match self.stream.shutdown(Shutdown::Both) {
                Ok(()) => Ok(()),
                // Already torn down by the peer: closing is still complete.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                Err(e) => Err(map(e)),
            }
        }

        fn peer_smc_capable(&self) -> bool {
            self.smc_capable
        }

        fn read_ready(&self) -> bool {
            if self.closed {
                return true;
            }
            // A non-blocking peek says whether a read would block.
            let mut byte = [0u8; 1];
            !matches!(self.stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }

        fn write_ready(&self) -> bool {
            // std offers no portable "send buffer has room" query; a write attempt
            // answers it (WouldBlock is cheap).
            true
        }
    }
}

#[cfg(feature = "std")]
pub use std_tcp::StdTcpStream;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_moves_bytes_in_order_both_ways() {
        let (mut a, mut b) = MemPipe::pair(8, true);
        assert!(a.peer_smc_capable() && b.peer_smc_capable());
        assert!(!b.read_ready() && a.write_ready());
        assert_eq!(a.write(b"hello world"), Ok(8));
        assert!(b.read_ready() && !a.write_ready());
        assert_eq!(a.write(b"x"), Err(StreamError::WouldBlock));
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf), Ok(8));
        assert!(!b.read_ready() && a.write_ready());
        assert_eq!(&buf[..8], b"hello wo");
        assert_eq!(b.read(&mut buf), Err(StreamError::WouldBlock));
        assert_eq!(b.write(b"back"), Ok(4));
        assert_eq!(a.read(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"back");
        assert_eq!(a.bytes_sent(), 8);
        assert_eq!(b.bytes_received_total(), 8);
    }

    #[test]
    fn max_io_caps_each_call() {
        let (mut a, mut b) = MemPipe::pair(64, false);
        a.set_max_io(3);
        assert_eq!(a.write(b"abcdefg"), Ok(3));
        b.set_max_io(2);
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"ab");
        assert!(!b.peer_smc_capable());
    }

    #[test]
    fn shutdown_gives_eof_after_data_and_blocks_writes() {
        let (mut a, mut b) = MemPipe::pair(64, true);
        a.write(b"tail").unwrap();
        a.shutdown_write().unwrap();
        assert_eq!(a.write(b"more"), Err(StreamError::BrokenPipe));
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf), Ok(4));
        assert!(b.read_ready(), "end of stream is readable");
        assert_eq!(b.read(&mut buf), Ok(0));
        // The other direction still works after a half-close.
        b.write(b"ok").unwrap();
        assert_eq!(a.read(&mut buf), Ok(2));
    }

    #[test]
    fn close_and_reset_are_seen_by_the_peer() {
        let (mut a, mut b) = MemPipe::pair(64, true);
        b.close().unwrap();
        assert_eq!(b.close(), Ok(()));
        assert_eq!(a.write(b"x"), Err(StreamError::BrokenPipe));
        assert_eq!(a.read(&mut [0u8; 4]), Ok(0));
        assert_eq!(b.read(&mut [0u8; 4]), Err(StreamError::Closed));

        let (mut c, mut d) = MemPipe::pair(64, true);
        d.write(b"lost").unwrap();
        d.reset();
        assert_eq!(c.read(&mut [0u8; 4]), Err(StreamError::Reset));
        assert_eq!(c.write(b"x"), Err(StreamError::BrokenPipe));
    }

    #[cfg(feature = "std")]
    #[test]
    fn std_tcp_stream_is_nonblocking_and_half_closes() {
        extern crate std;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut c = StdTcpStream::new(client, true).unwrap();
        let mut s = StdTcpStream::new(server, false).unwrap();
        assert!(c.peer_smc_capable() && !s.peer_smc_capable());
        let mut buf = [0u8; 16];
        // Nothing sent yet: a non-blocking read says so instead of waiting.
        assert_eq!(s.read(&mut buf), Err(StreamError::WouldBlock));
        assert!(!s.read_ready());
        assert_eq!(c.write(b"ping"), Ok(4));
        c.shutdown_write().unwrap();
        let mut got = alloc::vec::Vec::new();
        // Bounded wait for the bytes and the FIN (loopback TCP delivers promptly).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(StreamError::WouldBlock) => {
                    assert!(std::time::Instant::now() < deadline, "no FIN within 5 s");
                    std::thread::yield_now();
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(got, b"ping");
        assert_eq!(c.write(b"x"), Err(StreamError::BrokenPipe));
        s.close().unwrap();
        assert_eq!(s.read(&mut buf), Err(StreamError::Closed));
    }

    #[test]
    fn dropping_an_end_closes_it() {
        let (mut a, b) = MemPipe::pair(64, true);
        drop(b);
        assert_eq!(a.read(&mut [0u8; 4]), Ok(0));
        assert_eq!(a.write(b"x"), Err(StreamError::BrokenPipe));
    }
}
