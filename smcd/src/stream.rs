//! (stream: not written yet)
