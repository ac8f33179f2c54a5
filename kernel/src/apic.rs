//! (apic: not written yet)
