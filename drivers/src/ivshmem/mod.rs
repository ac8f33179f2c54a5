//! ivshmem-doorbell device (BAR0 registers, BAR2 shared region) and the ISM device over it.
//!
//! Layering (style practice 8): [`regs`] is the typed BAR0 register block, [`memory`] the
//! copy-only access to the shared region (real BAR2 and a host fake), [`area`] the
//! private DMB allocator, [`ism`] the SMC-D ISM device over the region layout of the
//! `ivshmem-region` crate, [`fake`] the host fakes (server bookkeeping, doorbells), [`rng`] RDRAND
//! for tokens and [`device`] the entry point for the platform's PCI glue.
//! Nothing here depends on `kernel`: the platform passes in mapped addresses and wires
//! interrupts itself (protocol-reference §7, architecture guide "The ivshmem region").

pub mod area;
pub mod device;
pub mod fake;
pub mod ism;
pub mod memory;
pub mod regs;
pub mod rng;

#[cfg(test)]
mod tests;

pub use device::IvshmemDevice;
pub use ism::{Doorbell, IvshmemError, IvshmemIsm, IvshmemStats};
pub use memory::{AtomicMemory, Bar2Memory, FakeRegion, Window};
pub use regs::{Bar0, DoorbellError};
pub use rng::RdRandRng;
