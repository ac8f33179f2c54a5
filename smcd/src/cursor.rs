//! CDC cursor newtypes: wrap-aware ring arithmetic, ring sizes and DMB size codes.
//!
//! A CDC cursor (protocol-reference §4.4) is a position in a data ring written as
//! `(wrap, count)` with `0 ≤ count < ring size`; advancing past the end of the ring
//! increments `wrap` (mod 2^16). The writer never gets more than one ring ahead of the
//! reader, so the distance between two cursors of one ring is always representable with
//! at most one wrap of difference.
//!
//! Connection code never does raw `u32` arithmetic on cursors: it uses
//! [`Cursor::advance`], [`Cursor::diff`] and the validating [`Cursor::checked`] /
//! [`Cursor::checked_distance`]. Methods panic only on impossible *internal* misuse
//! (advancing an own cursor by more than a ring); anything that comes from a peer goes
//! through the checked variants, which return a [`CursorError`].

use core::fmt;

/// Bytes in front of the data ring inside a DMB: the CDC header (protocol-reference §4.2).
pub const DMB_HEADER_LEN: usize = 32;

/// Largest compressed DMB size code Linux uses for SMC-D: `2^(6+14)` = 1 MiB (§4.1).
pub const DMB_SIZE_CODE_MAX: u8 = 6;

/// Size of the data ring of one DMB (`DMB size − 32`), at least 1 byte.
///
/// Real DMBs use the compressed sizes of [`DmbSizeCode`]; tests build rings of any size
/// (e.g. 33 bytes) to exercise wrap-around, so any non-zero `u32` is accepted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingSize(u32);

impl RingSize {
    /// A ring of `len` bytes; `None` for 0.
    pub const fn new(len: u32) -> Option<RingSize> {
        if len == 0 {
            None
        } else {
            Some(RingSize(len))
        }
    }

    /// The ring inside a DMB of `dmb_len` bytes (`dmb_len − 32`); `None` when the DMB
    /// has no room for even one data byte or the ring does not fit a `u32`.
    pub fn from_dmb_len(dmb_len: usize) -> Option<RingSize> {
        let ring = dmb_len.checked_sub(DMB_HEADER_LEN)?;
        RingSize::new(u32::try_from(ring).ok()?)
    }

    /// The ring size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The ring size as a `usize` (for offsets into the DMB).
    pub const fn len(self) -> usize {
        self.0 as usize
    }

    /// Always false: a ring has at least one byte (present for API symmetry).
    pub const fn is_empty(self) -> bool {
        false
    }

    /// Length of the DMB that holds this ring (`ring + 32`).
    pub const fn dmb_len(self) -> usize {
        self.0 as usize + DMB_HEADER_LEN
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// The 4-bit compressed DMB size of the CLC Accept/Confirm: `size = 2^(n+14)`
/// (protocol-reference §4.1). SMC-D uses `n ≤ 6` (16 KiB .. 1 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DmbSizeCode(u8);

impl DmbSizeCode {
    /// The smallest DMB, 16 KiB.
    pub const MIN: DmbSizeCode = DmbSizeCode(0);
    /// The largest SMC-D DMB, 1 MiB.
    pub const MAX: DmbSizeCode = DmbSizeCode(DMB_SIZE_CODE_MAX);

    /// A size code received from a peer; `None` above [`DMB_SIZE_CODE_MAX`].
    pub const fn new(code: u8) -> Option<DmbSizeCode> {
        if code <= DMB_SIZE_CODE_MAX {
            Some(DmbSizeCode(code))
        } else {
            None
        }
    }

    /// Linux `smc_compress_bufsize` for SMC-D: the smallest code whose size is at least
    /// `wanted` (rounding up to a power of two), capped at [`DmbSizeCode::MAX`];
    /// `wanted ≤ 16384` gives 0.
    pub fn compress(wanted: usize) -> DmbSizeCode {
        if wanted <= 16384 {
            return DmbSizeCode(0);
        }
        // ilog2((s − 1) >> 14) + 1; (s − 1) >> 14 ≥ 1 here.
        let code = ((wanted - 1) >> 14).ilog2() + 1;
        DmbSizeCode(code.min(u32::from(DMB_SIZE_CODE_MAX)) as u8)
    }

    /// The 4-bit value as sent on the wire.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The full DMB size in bytes, `2^(n+14)`.
    pub const fn dmb_len(self) -> usize {
        1usize << (self.0 as u32 + 14)
    }

    /// The data ring of a DMB of this size (`2^(n+14) − 32`).
    pub const fn ring(self) -> RingSize {
        RingSize((self.dmb_len() - DMB_HEADER_LEN) as u32)
    }
}

/// A cursor value that is impossible for the ring it claims to describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorError {
    /// `count` is not below the ring size.
    CountOutOfRange {
        /// The offending cursor.
        cursor: Cursor,
        /// The ring it was checked against.
        ring: RingSize,
    },
    /// The new cursor lies before the old one (same wrap, smaller count, or a wrap
    /// that is neither the old one nor the next).
    Backwards {
        /// Previously seen cursor.
        old: Cursor,
        /// The new cursor.
        new: Cursor,
    },
    /// The new cursor is more than `limit` bytes ahead of the old one.
    TooFar {
        /// Previously seen cursor.
        old: Cursor,
        /// The new cursor.
        new: Cursor,
        /// Distance from `old` to `new` (saturated at `u32::MAX`).
        distance: u32,
        /// The largest distance that was possible.
        limit: u32,
    },
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorError::CountOutOfRange { cursor, ring } => {
                write!(f, "cursor {cursor} outside a ring of {ring}")
            }
            CursorError::Backwards { old, new } => {
                write!(f, "cursor moved backwards from {old} to {new}")
            }
            CursorError::TooFar {
                old,
                new,
                distance,
                limit,
            } => write!(
                f,
                "cursor moved {distance} bytes from {old} to {new}, at most {limit} possible"
            ),
        }
    }
}

/// A CDC cursor `(wrap, count)` (protocol-reference §4.3/§4.4).
///
/// The fields are public because a cursor read from shared memory can hold any value;
/// only [`Cursor::checked`] vouches that one is valid for a ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// Number of times the writer wrapped around the ring (mod 2^16).
    pub wrap: u16,
    /// Offset inside the ring, `0 ≤ count < ring size` when valid.
    pub count: u32,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.wrap, self.count)
    }
}

impl Cursor {
    /// The initial cursor (wrap 0, count 0): DMBs start zeroed, no initial CDC is sent.
    pub const ZERO: Cursor = Cursor { wrap: 0, count: 0 };

    /// A cursor without validation (e.g. straight off the wire).
    pub const fn new(wrap: u16, count: u32) -> Cursor {
        Cursor { wrap, count }
    }

    /// A cursor validated against `ring`: `count < ring`.
    pub fn checked(wrap: u16, count: u32, ring: RingSize) -> Result<Cursor, CursorError> {
        let cursor = Cursor { wrap, count };
        if count < ring.get() {
            Ok(cursor)
        } else {
            Err(CursorError::CountOutOfRange { cursor, ring })
        }
    }

    /// Whether this cursor is valid for `ring`.
    pub fn is_valid_for(self, ring: RingSize) -> bool {
        self.count < ring.get()
    }

    /// The cursor `n` bytes further on: `count += n`, wrapping into `wrap + 1` at the
    /// ring end (§4.4).
    ///
    /// # Panics
    ///
    /// On internal misuse only: when `self` is not valid for `ring` or `n > ring`
    /// (no writer or reader ever moves by more than a ring at once).
    pub fn advance(self, n: u32, ring: RingSize) -> Cursor {
        assert!(
            self.count < ring.get() && n <= ring.get(),
            "cursor {self} advanced by {n} over a ring of {ring}"
        );
        // Cannot overflow: both operands are below 2^32.
        let sum = u64::from(self.count) + u64::from(n);
        if sum >= u64::from(ring.get()) {
            Cursor {
                wrap: self.wrap.wrapping_add(1),
                count: (sum - u64::from(ring.get())) as u32,
            }
        } else {
            Cursor {
                wrap: self.wrap,
                count: sum as u32,
            }
        }
    }

    /// Linux `smc_curs_diff(size, old, new)`: the number of bytes from `old` to `new`.
    /// Same wrap: `max(0, new.count − old.count)`; different wrap:
    /// `(ring − old.count) + new.count`. Only one wrap of distance is representable.
    ///
    /// This is the lenient Linux formula (it never fails); use
    /// [`Cursor::checked_distance`] for values from a peer.
    pub fn diff(old: Cursor, new: Cursor, ring: RingSize) -> u32 {
        if old.wrap == new.wrap {
            new.count.saturating_sub(old.count)
        } else {
            ring.get()
                .saturating_sub(old.count)
                .saturating_add(new.count)
        }
    }

    /// The distance from `old` to `new` when `new` may lie at most `limit` bytes ahead
    /// of `old` in `ring` (`limit ≤ ring`). Both cursors must be valid for `ring`.
    ///
    /// Rejects a cursor that moved backwards (same wrap and smaller count, or a wrap
    /// other than `old.wrap` / `old.wrap + 1`) and one that moved more than `limit`.
    pub fn checked_distance(
        old: Cursor,
        new: Cursor,
        ring: RingSize,
        limit: u32,
    ) -> Result<u32, CursorError> {
        for cursor in [old, new] {
            if !cursor.is_valid_for(ring) {
                return Err(CursorError::CountOutOfRange { cursor, ring });
            }
        }
        let distance = if new.wrap == old.wrap {
            if new.count < old.count {
                return Err(CursorError::Backwards { old, new });
            }
            new.count - old.count
        } else if new.wrap == old.wrap.wrapping_add(1) {
            // (ring − old.count) + new.count, computed without overflow.
            let d = u64::from(ring.get() - old.count) + u64::from(new.count);
            u32::try_from(d).unwrap_or(u32::MAX)
        } else {
            return Err(CursorError::Backwards { old, new });
        };
        if distance > limit {
            return Err(CursorError::TooFar {
                old,
                new,
                distance,
                limit,
            });
        }
        Ok(distance)
    }

    /// Bytes from `self.count` to the end of `ring` (how much can be accessed
    /// contiguously before wrapping).
    ///
    /// # Panics
    ///
    /// When `self` is not valid for `ring` (internal misuse).
    pub fn until_wrap(self, ring: RingSize) -> u32 {
        assert!(
            self.count < ring.get(),
            "cursor {self} outside ring of {ring}"
        );
        ring.get() - self.count
    }

    /// Offset of this cursor's byte inside the DMB (`32 + count`).
    pub fn dmb_offset(self) -> usize {
        DMB_HEADER_LEN + self.count as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32) -> RingSize {
        RingSize::new(n).unwrap()
    }

    #[test]
    fn advance_wraps_at_ring_end() {
        let r = ring(100);
        assert_eq!(Cursor::new(0, 10).advance(20, r), Cursor::new(0, 30));
        assert_eq!(Cursor::new(0, 90).advance(10, r), Cursor::new(1, 0));
        assert_eq!(Cursor::new(3, 99).advance(100, r), Cursor::new(4, 99));
        assert_eq!(Cursor::new(u16::MAX, 50).advance(60, r), Cursor::new(0, 10));
        let big = ring(u32::MAX);
        assert_eq!(
            Cursor::new(0, u32::MAX - 1).advance(u32::MAX, big),
            Cursor::new(1, u32::MAX - 1)
        );
    }

    #[test]
    #[should_panic(expected = "advanced by 101")]
    fn advance_by_more_than_a_ring_is_misuse() {
        let _ = Cursor::ZERO.advance(101, ring(100));
    }

    #[test]
    fn diff_follows_linux() {
        let r = ring(100);
        assert_eq!(Cursor::diff(Cursor::new(0, 10), Cursor::new(0, 30), r), 20);
        // Same wrap, backwards: Linux clamps to 0.
        assert_eq!(Cursor::diff(Cursor::new(0, 30), Cursor::new(0, 10), r), 0);
        assert_eq!(Cursor::diff(Cursor::new(0, 90), Cursor::new(1, 5), r), 15);
        // A full ring: wrap differs, same count.
        assert_eq!(Cursor::diff(Cursor::new(7, 40), Cursor::new(8, 40), r), 100);
        assert_eq!(
            Cursor::diff(Cursor::new(u16::MAX, 99), Cursor::new(0, 0), r),
            1
        );
    }

    #[test]
    fn checked_distance_rejects_impossible_moves() {
        let r = ring(100);
        assert_eq!(
            Cursor::checked_distance(Cursor::new(0, 90), Cursor::new(1, 5), r, 100),
            Ok(15)
        );
        assert_eq!(
            Cursor::checked_distance(Cursor::new(0, 30), Cursor::new(0, 10), r, 100),
            Err(CursorError::Backwards {
                old: Cursor::new(0, 30),
                new: Cursor::new(0, 10)
            })
        );
        // Two wraps ahead (or any other wrap) is not representable.
        assert!(matches!(
            Cursor::checked_distance(Cursor::new(0, 30), Cursor::new(2, 10), r, 100),
            Err(CursorError::Backwards { .. })
        ));
        assert_eq!(
            Cursor::checked_distance(Cursor::new(0, 30), Cursor::new(1, 40), r, 100),
            Err(CursorError::TooFar {
                old: Cursor::new(0, 30),
                new: Cursor::new(1, 40),
                distance: 110,
                limit: 100
            })
        );
        assert!(matches!(
            Cursor::checked_distance(Cursor::new(0, 30), Cursor::new(0, 100), r, 100),
            Err(CursorError::CountOutOfRange { .. })
        ));
        assert_eq!(
            Cursor::checked_distance(Cursor::new(0, 30), Cursor::new(0, 35), r, 4),
            Err(CursorError::TooFar {
                old: Cursor::new(0, 30),
                new: Cursor::new(0, 35),
                distance: 5,
                limit: 4
            })
        );
    }

    #[test]
    fn checked_rejects_count_at_ring_size() {
        assert_eq!(Cursor::checked(1, 99, ring(100)), Ok(Cursor::new(1, 99)));
        assert_eq!(
            Cursor::checked(1, 100, ring(100)),
            Err(CursorError::CountOutOfRange {
                cursor: Cursor::new(1, 100),
                ring: ring(100)
            })
        );
    }

    #[test]
    fn dmb_size_codes_follow_linux() {
        assert_eq!(DmbSizeCode::compress(0), DmbSizeCode::MIN);
        assert_eq!(DmbSizeCode::compress(16384).code(), 0);
        assert_eq!(DmbSizeCode::compress(16385).code(), 1);
        assert_eq!(DmbSizeCode::compress(32768).code(), 1);
        assert_eq!(DmbSizeCode::compress(32769).code(), 2);
        assert_eq!(DmbSizeCode::compress(1 << 20).code(), 6);
        assert_eq!(DmbSizeCode::compress(usize::MAX), DmbSizeCode::MAX);
        assert_eq!(DmbSizeCode::new(6).unwrap().dmb_len(), 1 << 20);
        assert_eq!(DmbSizeCode::new(0).unwrap().ring().get(), 16384 - 32);
        assert_eq!(DmbSizeCode::new(7), None);
        assert_eq!(RingSize::from_dmb_len(32), None);
        assert_eq!(RingSize::from_dmb_len(33), RingSize::new(1));
        assert_eq!(ring(33).dmb_len(), 65);
    }
}
