//! ivshmem server for smcd: QEMU's ivshmem-doorbell socket protocol plus our region layout.
//!
//! The binary `ivshmem-server` is a drop-in for QEMU's `contrib/ivshmem-server` (same
//! flags, same messages, protocol reference §7.2) that additionally formats the region
//! with the `ivshmem-region` layout before any client connects, reuses the lowest free
//! peer ID (so IDs stay below `--max-peers`), and keeps the peer directory's liveness
//! state: a departed peer is marked dead and the survivors are rung on vector 0.
//!
//! The library part exists so the tests and the `ivshmem-probe` tool share the protocol
//! code: [`proto`] (messages), [`client`] (QEMU's side of the protocol), [`region`]
//! (the server's mapping) and [`server`] (the poll loop).

pub mod args;
pub mod client;
pub mod proto;
pub mod region;
pub mod server;
