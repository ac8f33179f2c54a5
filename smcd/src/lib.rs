//! smcd: the SMC-D protocol core, pure and host-testable.
//!
//! SMC-D (Shared Memory Communications over DMA/ISM) accelerates a TCP connection by
//! moving its data through shared memory after a normal TCP handshake has negotiated it.
//! Acronyms used throughout this crate:
//!
//! - **CLC** (Connection Layer Control): the handshake messages (Proposal, Accept,
//!   Confirm, Decline) carried in the TCP byte stream; see [`wire::clc`].
//! - **ISM** (Internal Shared Memory): the device that owns and moves shared memory;
//!   see [`ism`].
//! - **GID** / **CHID**: an ISM device's global id and channel id.
//! - **DMB** (Direct Memory Buffer): a receive buffer registered with the ISM device; the
//!   peer writes data and a 32-byte CDC header into it.
//! - **CDC** (Connection Data Control): the 32-byte header at DMB offset 0 carrying the
//!   producer/consumer cursors and flags; see [`wire::cdc`].
//!
//! Layers (each depends only on those above it):
//!
//! | module | owns |
//! |---|---|
//! | [`shm`] | copy-in/copy-out access to memory a peer may write concurrently |
//! | [`ism`] | the ISM device trait (modelled on Linux `smcd_ops`) |
//! | [`wire`] | CLC and CDC wire formats: typed views + `Repr`s |
//! | [`cursor`] | CDC cursor newtypes with wrap-aware arithmetic |
//! | [`loopback`] | the loopback ISM device (DMBs on the heap, no-copy capable) |
//! | [`conn`] | the sans-IO SMC-D data path of one connection: window, CDC, close/abort |
//! | [`negotiate`] | CLC negotiation: version/type/device/EID/release selection |
//! | [`linkgroup`] | link groups (device + peer GID) and their DMBs |
//! | [`stream`] | the byte-stream trait the handshake and fallback run over |
//! | [`socket`] | the application API: connect/accept/read/write/close, fallback |
//! | [`counters`] | per-connection and global counters |
//!
//! The crate has no clock, no globals, no TCP stack and no `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod conn;
pub mod counters;
pub mod cursor;
pub mod ism;
pub mod linkgroup;
pub mod loopback;
pub mod negotiate;
pub mod shm;
pub mod socket;
pub mod stream;
pub mod wire;
