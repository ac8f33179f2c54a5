//! (cmdline: not written yet)
