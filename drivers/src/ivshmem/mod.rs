//! ivshmem-doorbell device (BAR0 registers, BAR2 shared region) and the ISM device over it.
//!
//! Layering (style practice 8): [`regs`] is the typed BAR0 register block, [`memory`] the
//! copy-only access to the shared region (real BAR2 and a host fake), [`area`] the
//! private DMB allocator, [`ism`] the SMC-D ISM device over the region layout of the
//! `ivshmem-region` crate, and [`fake`] the host fakes (server bookkeeping, doorbells).
//! Nothing here depends on `kernel`: the platform passes in mapped addresses and wires
//! interrupts itself (protocol-reference §7, architecture guide "The ivshmem region").

pub mod area;
pub mod fake;
pub mod ism;
pub mod memory;
pub mod regs;

#[cfg(test)]
mod tests;

pub use ism::{Doorbell, IvshmemError, IvshmemIsm, IvshmemStats};
pub use memory::{AtomicMemory, Bar2Memory, FakeRegion, Window};
pub use regs::{Bar0, DoorbellError};
