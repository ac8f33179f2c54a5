//! Device drivers (placeholder until the device work lands).
#![no_std]
