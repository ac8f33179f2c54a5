//! The 32-byte SMC-D CDC header: typed view, `CdcRepr`, and atomic load from a DMB.
//!
//! Layout (protocol-reference §4.3), all multi-byte fields in **host** order, which is
//! little-endian on x86_64 (Linux copies the cursors without conversion; two x86 guests
//! therefore speak LE, and so does this module on every target):
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 1 | type = `0xFE` |
//! | 1 | 7 | reserved |
//! | 8 | 2 | producer cursor wrap |
//! | 10 | 4 | producer cursor count |
//! | 14 | 2 | unused (sent 0, ignored) |
//! | 16 | 2 | consumer cursor wrap |
//! | 18 | 4 | consumer cursor count |
//! | 22 | 1 | producer flags |
//! | 23 | 1 | connection-state flags |
//! | 24 | 8 | reserved |
//!
//! Linux reads each 8-byte cursor block (8–15 and 16–23) with one 64-bit atomic load,
//! so [`CdcRepr::load`] does the same, and a writer should store each block with one
//! aligned 64-bit store: [`CdcRepr::to_bytes`] produces the 32 bytes for
//! `IsmDevice::move_data` at DMB offset 0, and `move_data` implementations must copy
//! 8-byte-aligned 8-byte blocks of it with single 64-bit stores (the loopback device
//! copies under the region's lock, which is stronger).

use core::fmt;
use core::sync::atomic::Ordering;

use crate::cursor::Cursor;
use crate::shm::{SharedMemory, ShmError};

/// Length of the SMC-D CDC header.
pub const HEADER_LEN: usize = 32;

/// The type byte of an SMC-D CDC message.
pub const CDC_TYPE_SMCD: u8 = 0xFE;

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const PROD_WRAP: Range<usize> = 8..10;
    pub const PROD_COUNT: Range<usize> = 10..14;
    pub const PROD_BLOCK: usize = 8;
    pub const CONS_WRAP: Range<usize> = 16..18;
    pub const CONS_COUNT: Range<usize> = 18..22;
    pub const CONS_BLOCK: usize = 16;
    pub const PROD_FLAGS: usize = 22;
    pub const CONN_FLAGS: usize = 23;
}

bitflags::bitflags! {
    /// Producer flags, CDC byte 22 (protocol-reference §4.3).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ProducerFlags: u8 {
        /// The sender wanted to write at least as much as the space it had.
        const WRITE_BLOCKED = 0x80;
        /// An urgent byte is waiting to be sent.
        const URG_DATA_PENDING = 0x40;
        /// The byte before the producer cursor is urgent.
        const URG_DATA_PRESENT = 0x20;
        /// The sender asks for a consumer-cursor update.
        const CONS_CURS_UPD_REQ = 0x10;
        /// SMC-R failover validation (unused by SMC-D).
        const FAILOVER_VALIDATION = 0x08;
        // Bits 0x07 are reserved; `from_bits_retain` keeps them so nothing is lost.
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// Connection-state flags, CDC byte 23 (protocol-reference §4.3, §5).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ConnStateFlags: u8 {
        /// The sender shut down its writing side (`shutdown(SHUT_WR)`).
        const PEER_DONE_WRITING = 0x80;
        /// The sender closed the connection (orderly).
        const PEER_CONN_CLOSED = 0x40;
        /// The sender aborted the connection.
        const PEER_CONN_ABORT = 0x20;
        // Bits 0x1F are reserved.
        const _ = !0;
    }
}

/// Why a CDC header could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The type byte is not [`CDC_TYPE_SMCD`].
    UnknownType(u8),
    /// Reading the header out of shared memory failed.
    Shm(ShmError),
}

impl fmt::Display for CdcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdcError::Truncated { len } => {
                write!(f, "CDC header truncated: {len} of {HEADER_LEN} bytes")
            }
            CdcError::UnknownType(t) => write!(f, "unknown CDC type byte {t:#04x}"),
            CdcError::Shm(e) => write!(f, "reading the CDC header: {e}"),
        }
    }
}

impl From<ShmError> for CdcError {
    fn from(e: ShmError) -> Self {
        CdcError::Shm(e)
    }
}

/// A read/write view of a CDC header in a byte buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds at least [`HEADER_LEN`] bytes, which makes
    /// every accessor panic-free.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, CdcError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(CdcError::Truncated { len })
        } else {
            Ok(Packet { buffer })
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The type byte (offset 0).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The producer cursor (offsets 8–13), unvalidated.
    pub fn prod(&self) -> Cursor {
        let b = self.buffer.as_ref();
        Cursor::new(
            u16::from_le_bytes([b[field::PROD_WRAP][0], b[field::PROD_WRAP][1]]),
            le_u32(&b[field::PROD_COUNT]),
        )
    }

    /// The consumer cursor (offsets 16–21), unvalidated.
    pub fn cons(&self) -> Cursor {
        let b = self.buffer.as_ref();
        Cursor::new(
            u16::from_le_bytes([b[field::CONS_WRAP][0], b[field::CONS_WRAP][1]]),
            le_u32(&b[field::CONS_COUNT]),
        )
    }

    /// The producer flags (offset 22), reserved bits kept.
    pub fn prod_flags(&self) -> ProducerFlags {
        ProducerFlags::from_bits_retain(self.buffer.as_ref()[field::PROD_FLAGS])
    }

    /// The connection-state flags (offset 23), reserved bits kept.
    pub fn conn_flags(&self) -> ConnStateFlags {
        ConnStateFlags::from_bits_retain(self.buffer.as_ref()[field::CONN_FLAGS])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type byte.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the producer cursor.
    pub fn set_prod(&mut self, cursor: Cursor) {
        let b = self.buffer.as_mut();
        b[field::PROD_WRAP].copy_from_slice(&cursor.wrap.to_le_bytes());
        b[field::PROD_COUNT].copy_from_slice(&cursor.count.to_le_bytes());
    }

    /// Sets the consumer cursor.
    pub fn set_cons(&mut self, cursor: Cursor) {
        let b = self.buffer.as_mut();
        b[field::CONS_WRAP].copy_from_slice(&cursor.wrap.to_le_bytes());
        b[field::CONS_COUNT].copy_from_slice(&cursor.count.to_le_bytes());
    }

    /// Sets the producer flags.
    pub fn set_prod_flags(&mut self, flags: ProducerFlags) {
        self.buffer.as_mut()[field::PROD_FLAGS] = flags.bits();
    }

    /// Sets the connection-state flags.
    pub fn set_conn_flags(&mut self, flags: ConnStateFlags) {
        self.buffer.as_mut()[field::CONN_FLAGS] = flags.bits();
    }

    /// Zeroes every reserved/unused byte (1–7, 14–15, 24–31).
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[1..8].fill(0);
        b[14..16].fill(0);
        b[24..32].fill(0);
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A parsed SMC-D CDC header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CdcRepr {
    /// How far the sender has written into the receiver's ring (over the receiver's
    /// ring size). Unvalidated: check with `Cursor::checked` before use.
    pub prod: Cursor,
    /// How far the sender has read from its own ring (the acknowledgement of the
    /// receiver's data, over the sender's ring size). Unvalidated.
    pub cons: Cursor,
    /// Producer flags (byte 22).
    pub prod_flags: ProducerFlags,
    /// Connection-state flags (byte 23).
    pub conn_flags: ConnStateFlags,
}

impl CdcRepr {
    /// Parses a header; only the type byte is checked (reserved bytes are ignored, as
    /// Linux does). Cursors are returned as found.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<CdcRepr, CdcError> {
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(CdcError::Truncated { len });
        }
        let t = packet.msg_type();
        if t != CDC_TYPE_SMCD {
            return Err(CdcError::UnknownType(t));
        }
        Ok(CdcRepr {
            prod: packet.prod(),
            cons: packet.cons(),
            prod_flags: packet.prod_flags(),
            conn_flags: packet.conn_flags(),
        })
    }

    /// Bytes needed to emit this header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes all 32 bytes (type, cursors, flags, zeroed reserved bytes) into `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_msg_type(CDC_TYPE_SMCD);
        packet.clear_reserved();
        packet.set_prod(self.prod);
        packet.set_cons(self.cons);
        packet.set_prod_flags(self.prod_flags);
        packet.set_conn_flags(self.conn_flags);
    }

    /// The 32 bytes to hand to `move_data` at DMB offset 0.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        bytes
    }

    /// Reads the header at `base` (8-byte aligned) of shared memory the way Linux does:
    /// one atomic 64-bit load (Acquire) of each cursor block, plus one of the word
    /// holding the type byte at `base`.
    ///
    /// The consumer block (`base + 16`, which carries the flags) is loaded **before**
    /// the producer block (`base + 8`). A writer stores the header in ascending order, so
    /// whoever sees a CDC's flags (say `done_writing`) also sees that CDC's producer
    /// cursor or a newer one; the other order could pair new flags with an old producer
    /// cursor and make the peer's last data look like data after end of stream.
    ///
    /// Never reads outside `memory`; an out-of-range `base` is [`CdcError::Shm`].
    pub fn load<M: SharedMemory + ?Sized>(memory: &M, base: usize) -> Result<CdcRepr, CdcError> {
        // The whole header must lie inside the region (this also rules out overflow).
        crate::shm::check_range(base, HEADER_LEN, memory.len())?;
        let cons = memory.load_u64(base + field::CONS_BLOCK, Ordering::Acquire)?;
        let prod = memory.load_u64(base + field::PROD_BLOCK, Ordering::Acquire)?;
        let head = memory.load_u64(base, Ordering::Acquire)?;
        let mut bytes = [0u8; HEADER_LEN];
        // The loaded words are in native order; their memory image is the wire bytes.
        bytes[0..8].copy_from_slice(&head.to_ne_bytes());
        bytes[8..16].copy_from_slice(&prod.to_ne_bytes());
        bytes[16..24].copy_from_slice(&cons.to_ne_bytes());
        CdcRepr::parse(&Packet::new_unchecked(&bytes[..]))
    }
}

impl fmt::Display for CdcRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CDC prod={} cons={} prod_flags={:#04x} conn_flags={:#04x}",
            self.prod,
            self.cons,
            self.prod_flags.bits(),
            self.conn_flags.bits()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::HeapMemory;

    /// prod = (wrap 0x0102, count 0x0A0B0C0D), cons = (0x0304, 0x11223344),
    /// write_blocked | cons_curs_upd_req, peer_done_writing.
    static BYTES: [u8; 32] = [
        0xFE, 0, 0, 0, 0, 0, 0, 0, // type, reserved
        0x02, 0x01, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, // prod wrap, prod count, unused
        0x04, 0x03, 0x44, 0x33, 0x22, 0x11, 0x90, 0x80, // cons wrap, count, flags
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    fn repr() -> CdcRepr {
        CdcRepr {
            prod: Cursor::new(0x0102, 0x0A0B_0C0D),
            cons: Cursor::new(0x0304, 0x1122_3344),
            prod_flags: ProducerFlags::WRITE_BLOCKED | ProducerFlags::CONS_CURS_UPD_REQ,
            conn_flags: ConnStateFlags::PEER_DONE_WRITING,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), 0xFE);
        assert_eq!(p.prod(), Cursor::new(0x0102, 0x0A0B_0C0D));
        assert_eq!(p.cons(), Cursor::new(0x0304, 0x1122_3344));
        assert_eq!(p.prod_flags().bits(), 0x90);
        assert!(p.conn_flags().contains(ConnStateFlags::PEER_DONE_WRITING));
    }

    #[test]
    fn construct_over_poison() {
        let mut buf = [0xA5u8; 32];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(0xFE);
        p.clear_reserved();
        p.set_prod(Cursor::new(0x0102, 0x0A0B_0C0D));
        p.set_cons(Cursor::new(0x0304, 0x1122_3344));
        p.set_prod_flags(ProducerFlags::from_bits_retain(0x90));
        p.set_conn_flags(ConnStateFlags::from_bits_retain(0x80));
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn parse_and_emit() {
        assert_eq!(
            CdcRepr::parse(&Packet::new_unchecked(&BYTES[..])),
            Ok(repr())
        );
        let mut buf = [0xA5u8; 32];
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BYTES);
        assert_eq!(repr().to_bytes(), BYTES);
        assert_eq!(repr().buffer_len(), 32);
    }

    #[test]
    fn flag_bits_match_linux() {
        assert_eq!(ProducerFlags::WRITE_BLOCKED.bits(), 0x80);
        assert_eq!(ProducerFlags::URG_DATA_PENDING.bits(), 0x40);
        assert_eq!(ProducerFlags::URG_DATA_PRESENT.bits(), 0x20);
        assert_eq!(ProducerFlags::CONS_CURS_UPD_REQ.bits(), 0x10);
        assert_eq!(ConnStateFlags::PEER_DONE_WRITING.bits(), 0x80);
        assert_eq!(ConnStateFlags::PEER_CONN_CLOSED.bits(), 0x40);
        assert_eq!(ConnStateFlags::PEER_CONN_ABORT.bits(), 0x20);
    }

    #[test]
    fn rejects_short_and_foreign() {
        assert_eq!(
            Packet::new_checked(&BYTES[..31]).unwrap_err(),
            CdcError::Truncated { len: 31 }
        );
        let mut other = BYTES;
        other[0] = 0xFF;
        assert_eq!(
            CdcRepr::parse(&Packet::new_unchecked(&other[..])),
            Err(CdcError::UnknownType(0xFF))
        );
        // Reserved bytes and the unused producer-block bytes are ignored.
        let mut noisy = BYTES;
        noisy[3] = 0x77;
        noisy[14] = 0x55;
        noisy[31] = 0x01;
        assert_eq!(
            CdcRepr::parse(&Packet::new_unchecked(&noisy[..])),
            Ok(repr())
        );
        // Reserved flag bits survive parse -> emit.
        let mut reserved = BYTES;
        reserved[22] = 0x07;
        reserved[23] = 0x1F;
        let r = CdcRepr::parse(&Packet::new_unchecked(&reserved[..])).unwrap();
        assert_eq!(r.to_bytes()[22..24], [0x07, 0x1F]);
    }

    /// Memory where a writer stores a whole new CDC right after the reader's first load.
    struct Tearing {
        inner: HeapMemory,
        next: core::cell::Cell<Option<[u8; 32]>>,
    }

    impl SharedMemory for Tearing {
        fn len(&self) -> usize {
            self.inner.len()
        }
        fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
            self.inner.read(offset, buf)
        }
        fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
            self.inner.write(offset, data)
        }
        fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), ShmError> {
            self.inner.fill(offset, len, value)
        }
        fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, ShmError> {
            let value = self.inner.load_u64(offset, order);
            if let Some(bytes) = self.next.take() {
                self.inner.write(0, &bytes)?;
            }
            value
        }
        fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), ShmError> {
            self.inner.store_u64(offset, value, order)
        }
    }

    #[test]
    fn load_never_pairs_new_flags_with_an_old_producer_cursor() {
        let old = CdcRepr {
            prod: Cursor::new(0, 3),
            ..CdcRepr::default()
        };
        let new = CdcRepr {
            prod: Cursor::new(0, 5),
            conn_flags: ConnStateFlags::PEER_DONE_WRITING,
            ..CdcRepr::default()
        };
        let m = Tearing {
            inner: HeapMemory::new(32),
            next: core::cell::Cell::new(Some(new.to_bytes())),
        };
        m.inner.write(0, &old.to_bytes()).unwrap();
        let seen = CdcRepr::load(&m, 0).unwrap();
        // Consumer block (flags) first: the old flags with the new producer cursor.
        assert_eq!(seen.conn_flags, ConnStateFlags::empty());
        assert_eq!(seen.prod, Cursor::new(0, 5));
        assert_eq!(CdcRepr::load(&m, 0), Ok(new));
    }

    #[test]
    fn load_from_shared_memory() {
        let m = HeapMemory::new(64);
        m.write(0, &BYTES).unwrap();
        assert_eq!(CdcRepr::load(&m, 0), Ok(repr()));
        m.write(32, &BYTES).unwrap();
        assert_eq!(CdcRepr::load(&m, 32), Ok(repr()));
        assert!(matches!(CdcRepr::load(&m, 40), Err(CdcError::Shm(_))));
        assert!(matches!(CdcRepr::load(&m, 4), Err(CdcError::Shm(_))));
        assert!(matches!(
            CdcRepr::load(&m, usize::MAX - 3),
            Err(CdcError::Shm(_))
        ));
        let empty = HeapMemory::new(64);
        assert_eq!(CdcRepr::load(&empty, 0), Err(CdcError::UnknownType(0)));
    }
}
