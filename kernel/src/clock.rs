//! (clock: not written yet)
