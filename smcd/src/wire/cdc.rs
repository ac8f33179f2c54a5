//! (cdc: not written yet)
