//! RDRAND as the token RNG of the ivshmem ISM (architecture guide: "Tokens are unguessable (RDRAND)").
//!
//! Wraps the `x86_64` crate's [`RdRand`] in rand_core's fallible [`TryRngCore`], so a
//! CPU that keeps failing RDRAND makes `register_dmb` refuse cleanly instead of handing
//! out predictable tokens.

use core::fmt;

use rand_core::TryRngCore;
use x86_64::instructions::random::RdRand;

/// Attempts per value before giving up (Intel's DRNG guide suggests 10 retries).
const RETRIES: usize = 10;

/// RDRAND kept failing (the entropy source is exhausted or broken).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RdRandError;

impl fmt::Display for RdRandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RDRAND failed {RETRIES} times in a row")
    }
}

/// The CPU's RDRAND instruction as a fallible RNG.
#[derive(Clone, Copy, Debug)]
pub struct RdRandRng {
    rdrand: RdRand,
}

impl RdRandRng {
    /// `None` when the CPU does not implement RDRAND (CPUID.01H:ECX.RDRAND).
    pub fn new() -> Option<Self> {
        RdRand::new().map(|rdrand| RdRandRng { rdrand })
    }
}

impl TryRngCore for RdRandRng {
    type Error = RdRandError;

    fn try_next_u32(&mut self) -> Result<u32, RdRandError> {
        (0..RETRIES)
            .find_map(|_| self.rdrand.get_u32())
            .ok_or(RdRandError)
    }

    fn try_next_u64(&mut self) -> Result<u64, RdRandError> {
        (0..RETRIES)
            .find_map(|_| self.rdrand.get_u64())
            .ok_or(RdRandError)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RdRandError> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_ne_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdrand_matches_cpuid_and_varies() {
        let rng = RdRandRng::new();
        assert_eq!(rng.is_some(), std::is_x86_feature_detected!("rdrand"));
        if let Some(mut rng) = rng {
            let draws: std::vec::Vec<u64> = (0..4).map(|_| rng.try_next_u64().unwrap()).collect();
            assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:x?}");
            let mut buf = [0u8; 13];
            rng.try_fill_bytes(&mut buf).unwrap();
            assert!(buf.iter().any(|&b| b != 0));
        }
    }
}
