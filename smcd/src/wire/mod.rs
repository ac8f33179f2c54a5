//! Wire formats: CLC handshake messages and the SMC-D CDC header.
pub mod cdc;
pub mod clc;
