//! (negotiate: not written yet)
