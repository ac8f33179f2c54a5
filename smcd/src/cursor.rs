//! (cursor: not written yet)
