//! (socket: not written yet)
