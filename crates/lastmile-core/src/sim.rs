//! Seeded randomness for simulations, randomised tests and benchmarks: the
//! same seed gives the same stream on every platform, so a failing run
//! replays from its printed seed. (SplitMix64: tiny, no dependency.)

/// SplitMix64's increment.
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A SplitMix64 generator; the field is its state (the seed to start).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// One of `weights`' values, drawn in proportion to its weight.
    pub fn weighted<T: Copy>(&mut self, weights: &[(T, f64)]) -> T {
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut x = self.unit() * total;
        for (value, w) in weights {
            if x < *w {
                return *value;
            }
            x -= w;
        }
        weights[weights.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_stream() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference).
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
