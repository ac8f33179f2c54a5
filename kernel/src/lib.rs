//! The smcd kernel (placeholder until the platform work lands).
#![no_std]
