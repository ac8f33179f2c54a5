//! Property tests of the CDC cursor arithmetic (protocol-reference §4.4).

use proptest::prelude::*;
use smcd::cursor::{Cursor, CursorError, DmbSizeCode, RingSize};

fn ring_and_cursor() -> impl Strategy<Value = (RingSize, Cursor)> {
    prop_oneof![1u32..100, 1u32..70_000, Just(u32::MAX), 1u32..=u32::MAX].prop_flat_map(|r| {
        (Just(RingSize::new(r).unwrap()), any::<u16>(), 0..r)
            .prop_map(|(ring, wrap, count)| (ring, Cursor::new(wrap, count)))
    })
}

proptest! {
    /// Advancing by n (≤ ring) and measuring the distance gives n back, by the Linux
    /// formula and by the checked one; the result is a valid cursor.
    #[test]
    fn advance_then_diff_round_trips((ring, c) in ring_and_cursor(), frac in 0.0f64..=1.0) {
        let n = (f64::from(ring.get()) * frac) as u32;
        let d = c.advance(n, ring);
        prop_assert!(d.is_valid_for(ring));
        prop_assert_eq!(Cursor::diff(c, d, ring), n);
        prop_assert_eq!(Cursor::checked_distance(c, d, ring, ring.get()), Ok(n));
        // The absolute position moved by exactly n.
        let pos = |x: Cursor| u64::from(x.wrap) * u64::from(ring.get()) + u64::from(x.count);
        let span = u64::from(ring.get()) << 16;
        prop_assert_eq!((pos(c) + u64::from(n)) % span, pos(d) % span);
    }

    /// Two advances compose like one.
    #[test]
    fn advances_compose((ring, c) in ring_and_cursor(), f1 in 0.0f64..=0.5, f2 in 0.0f64..=0.5) {
        let n1 = (f64::from(ring.get()) * f1) as u32;
        let n2 = (f64::from(ring.get()) * f2) as u32;
        prop_assert_eq!(c.advance(n1, ring).advance(n2, ring), c.advance(n1 + n2, ring));
    }

    /// checked_distance never accepts a move beyond its limit, nor a cursor outside the
    /// ring, and never panics on arbitrary peer values.
    #[test]
    fn checked_distance_is_total_and_bounded(
        (ring, old) in ring_and_cursor(),
        wrap in any::<u16>(),
        count in any::<u32>(),
        limit_frac in 0.0f64..=1.0,
    ) {
        let limit = (f64::from(ring.get()) * limit_frac) as u32;
        let new = Cursor::new(wrap, count);
        match Cursor::checked_distance(old, new, ring, limit) {
            Ok(d) => {
                prop_assert!(d <= limit);
                prop_assert!(new.is_valid_for(ring));
                prop_assert_eq!(old.advance(d, ring), new);
            }
            Err(CursorError::CountOutOfRange { cursor, .. }) => {
                prop_assert_eq!(cursor, new);
                prop_assert!(count >= ring.get());
            }
            Err(CursorError::Backwards { .. }) | Err(CursorError::TooFar { .. }) => {}
        }
        // The lenient Linux formula never panics either.
        let _ = Cursor::diff(old, new, ring);
    }

    /// DMB size compression: the chosen size covers the wanted size (up to the cap) and is
    /// the smallest that does.
    #[test]
    fn dmb_size_compression_rounds_up(wanted in 0usize..4 << 20) {
        let code = DmbSizeCode::compress(wanted);
        prop_assert!(code.code() <= 6);
        if wanted <= 1 << 20 {
            prop_assert!(code.dmb_len() >= wanted);
        } else {
            prop_assert_eq!(code, DmbSizeCode::MAX);
        }
        if code.code() > 0 {
            prop_assert!(DmbSizeCode::new(code.code() - 1).unwrap().dmb_len() < wanted);
        }
        prop_assert_eq!(code.ring().dmb_len(), code.dmb_len());
    }
}
