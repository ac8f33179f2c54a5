//! (linkgroup: not written yet)
