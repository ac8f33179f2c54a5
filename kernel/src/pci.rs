//! (pci: not written yet)
