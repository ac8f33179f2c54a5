//! PVH entry and boot hand-over (placeholder until the boot work lands).
#![no_std]
