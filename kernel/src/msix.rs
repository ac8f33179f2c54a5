//! (msix: not written yet)
