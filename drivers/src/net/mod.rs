//! Networking: the SMC TCP-option middleware (a `smoltcp::phy::Device` wrapper) and the
//! virtio-net driver.

pub mod smc_option;
