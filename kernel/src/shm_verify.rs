//! `verify=sample` checks on a window of shared memory: the zero-copy sink reads only
//! the stamps (8 bytes per 4 KiB of stream) out of its DMB, never the whole data; and
//! the sender's fast stamping of aligned chunks.
//!
//! Stamp format and counting: `apps` ("verify=sample", [`SAMPLE_STEP`], [`STAMP_LEN`],
//! [`count_sample_mismatches`]); this walks the same stamps over a [`ShmSlice`].

use smcd::shm::{SharedMemory, ShmSlice};

use crate::apps::{count_sample_mismatches, stamp_sample, SAMPLE_STEP, STAMP_LEN};

/// `verify=sample`: the sink recognises the stream from bytes 8..16 of the stream (bytes
/// 0..8 are the stamp of offset 0; the sender's buffer holds its pattern elsewhere, so
/// this works when `chunk` is at least 16 bytes, else the stream number is the local one).
pub const SAMPLE_HEAD_LEN: usize = 16;

/// Checks a window of received bytes in place: reads only the stamp bytes of `w` (which
/// holds the stream bytes from stream offset `offset`) and, while `head_len` is below
/// [`SAMPLE_HEAD_LEN`], the next bytes of the stream head into `head` (the window must
/// then start at stream offset `head_len`). Returns the stamp bytes that differ, as
/// [`count_sample_mismatches`] counts them on a copy; an unreadable stamp counts whole.
pub fn check_window<M: SharedMemory + ?Sized>(
    offset: u64,
    w: &ShmSlice<'_, M>,
    head: &mut [u8; SAMPLE_HEAD_LEN],
    head_len: &mut usize,
) -> u64 {
    let len = w.len();
    if *head_len < SAMPLE_HEAD_LEN {
        let take = (SAMPLE_HEAD_LEN - *head_len).min(len);
        if w.read_at(0, &mut head[*head_len..*head_len + take]).is_ok() {
            *head_len += take;
        }
    }
    let end = offset.saturating_add(len as u64);
    let mut mismatches = 0;
    // Every stamp [s, s + 8) overlapping the window, the one reaching in from before it
    // included (as `count_sample_mismatches` walks a buffer).
    let mut s = offset - offset % SAMPLE_STEP;
    while s < end {
        let lo = s.max(offset);
        let hi = (s + STAMP_LEN).min(end);
        if lo < hi {
            let mut piece = [0u8; STAMP_LEN as usize];
            let piece = &mut piece[..(hi - lo) as usize];
            mismatches += match w.read_at((lo - offset) as usize, piece) {
                Ok(()) => count_sample_mismatches(lo, piece),
                Err(_) => hi - lo,
            };
        }
        s += SAMPLE_STEP;
    }
    mismatches
}

/// [`stamp_sample`] with a fast path for the stream sender: when `offset` is a multiple
/// of [`SAMPLE_STEP`] (1 MiB chunks always are), every whole stamp is one 8-byte store;
/// a stamp cut by the buffer end, and any other `offset`, go through [`stamp_sample`].
/// Same bytes as [`stamp_sample`] in every case.
pub fn stamp_chunk(offset: u64, buf: &mut [u8]) {
    if !offset.is_multiple_of(SAMPLE_STEP) {
        stamp_sample(offset, buf);
        return;
    }
    let step = SAMPLE_STEP as usize;
    let mut i = 0;
    while i < buf.len() {
        let stamp = (offset + i as u64).to_le_bytes();
        match buf.get_mut(i..i + STAMP_LEN as usize) {
            Some(word) => word.copy_from_slice(&stamp),
            None => stamp_sample(offset + i as u64, &mut buf[i..]),
        }
        i += step;
    }
}
