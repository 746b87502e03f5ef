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

/// How simulated crews really travel: their own truth, not the
/// dispatcher's ETA model (else every "met" would be self-fulfilling, and
/// the ETA calibration would have nothing to learn). Per tier, a turnout
/// (page to moving, acknowledgement included) and a speed along roads of
/// `circuity` times the straight line; each page draws its own factors
/// around them (log-normal, `spread` the sigma), from the page's identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrewTravel {
    /// By `Tier::index()`, seconds.
    pub turnout_s: [f64; 4],
    /// By `Tier::index()`, metres per second.
    pub speed_m_per_s: [f64; 4],
    pub circuity: f64,
    pub spread: f64,
    /// Mixed into every draw: runs with other seeds draw other times for
    /// the same pages.
    pub seed: u64,
}

impl Default for CrewTravel {
    /// Slower than the textbook model (60 s turnout): real fire-engine
    /// turnout is nearer 160-190 s (issue 14's measurement of public
    /// dispatch records); village and town teams muster on foot or by car.
    fn default() -> Self {
        CrewTravel {
            turnout_s: [45.0, 120.0, 150.0, 170.0],
            speed_m_per_s: [2.5, 6.0, 7.0, 9.0],
            circuity: 1.3,
            spread: 0.25,
            seed: 0,
        }
    }
}

/// One page's draw: (turnout, drive) seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrewDraw {
    pub turnout_s: f64,
    pub drive_s: f64,
}

impl CrewTravel {
    /// Every tier with the same turnout and speed.
    pub fn uniform(turnout_s: f64, speed_m_per_s: f64) -> Self {
        CrewTravel { turnout_s: [turnout_s; 4], speed_m_per_s: [speed_m_per_s; 4], ..CrewTravel::default() }
    }

    /// What one crew (of tier index `tier`) takes for one page, `distance_m`
    /// away; `key` identifies the page (the same page draws the same).
    pub fn draw(&self, tier: usize, distance_m: f64, key: u64) -> CrewDraw {
        let mut rng = SplitMix64(key ^ 0x5eed_c4e7_0000_0001 ^ self.seed.wrapping_mul(GOLDEN_GAMMA));
        let mut lognormal = || (self.spread * standard_normal(&mut rng)).exp();
        let turnout_s = self.turnout_s[tier] * lognormal();
        let speed = self.speed_m_per_s[tier] / lognormal();
        CrewDraw { turnout_s, drive_s: distance_m * self.circuity / speed }
    }
}

/// A standard normal draw (Box-Muller).
pub fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// FNV-1a of some byte strings: a page's identity as a [`CrewTravel::draw`] key.
pub fn key_of(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain([&0xfe]) {
            h = (h ^ *byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crews_draw_around_their_own_truth_not_the_model() {
        let crew = CrewTravel::uniform(150.0, 7.0);
        let draws: Vec<CrewDraw> =
            (0..4000u32).map(|i| crew.draw(3, 2000.0, key_of(&[b"u", &i.to_le_bytes()]))).collect();
        let mut turnouts: Vec<f64> = draws.iter().map(|d| d.turnout_s).collect();
        turnouts.sort_by(f64::total_cmp);
        let median = turnouts[turnouts.len() / 2];
        assert!((145.0..155.0).contains(&median), "median turnout {median}");
        let mut drives: Vec<f64> = draws.iter().map(|d| d.drive_s).collect();
        drives.sort_by(f64::total_cmp);
        // 2000 m x 1.3 / 7 m/s = 371 s at the median.
        assert!((360.0..383.0).contains(&drives[drives.len() / 2]), "median drive {}", drives[drives.len() / 2]);
        assert!(turnouts[turnouts.len() / 10] < 0.8 * median, "spread");
        assert_eq!(crew.draw(3, 10.0, 42), crew.draw(3, 10.0, 42), "same page, same draw");
        let reseeded = CrewTravel { seed: 7, ..crew };
        assert_ne!(crew.draw(3, 10.0, 42), reseeded.draw(3, 10.0, 42), "another seed, another draw");
    }

    #[test]
    fn matches_the_reference_stream() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference).
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
