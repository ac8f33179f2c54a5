//! Device drivers for the smcd unikernel: virtio-net (through `virtio-drivers`), the
//! ivshmem-doorbell device and the ISM device built on it.
//!
//! Drivers never depend on `kernel`: the platform reaches them through small traits
//! (DMA/MMIO hal, interrupt wiring), so pure parts build and test on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod copy;
pub mod ivshmem;
pub mod net;
