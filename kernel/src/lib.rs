//! The smcd kernel: platform bring-up, interrupts, memory, executor, and the in-QEMU
//! test framework.
#![no_std]

extern crate alloc;

// Platform devices and services (owned by the platform-devices work).
pub mod acpi;
pub mod apic;
pub mod clock;
pub mod cmdline;
pub mod executor;
pub mod msix;
pub mod pci;
