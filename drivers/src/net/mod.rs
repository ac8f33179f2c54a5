//! Networking: the SMC TCP-option middleware (a `smoltcp::phy::Device` wrapper), the
//! smoltcp-independent NIC trait, and the virtio-net driver.

pub mod nic;
pub mod smc_option;
pub mod virtio;
pub mod virtio_transport;

#[cfg(test)]
mod virtio_fake;

pub use nic::{Nic, NicError};
