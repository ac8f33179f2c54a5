//! (loopback: not written yet)
