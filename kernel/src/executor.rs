//! (executor: not written yet)
