//! (counters: not written yet)
