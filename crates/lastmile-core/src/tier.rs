//! The four tiers of "13510" and the travel model that predicts arrival.

use serde::{Deserialize, Serialize};

/// A response tier; the number is its arrival target in minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// Enterprise micro fire station (社会单位微型消防站).
    T1,
    /// Village emergency shock team / community micro fire station.
    T3,
    /// Town/street comprehensive rescue team.
    T5,
    /// Professional fire brigade.
    T10,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::T1, Tier::T3, Tier::T5, Tier::T10];

    pub fn minutes(self) -> u32 {
        match self {
            Tier::T1 => 1,
            Tier::T3 => 3,
            Tier::T5 => 5,
            Tier::T10 => 10,
        }
    }

    pub fn from_minutes(minutes: u32) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.minutes() == minutes)
    }

    /// Dense index 0..4, for per-tier arrays.
    pub fn index(self) -> usize {
        match self {
            Tier::T1 => 0,
            Tier::T3 => 1,
            Tier::T5 => 2,
            Tier::T10 => 3,
        }
    }

    /// The tier a breach escalates to.
    pub fn next_up(self) -> Option<Tier> {
        match self {
            Tier::T1 => Some(Tier::T3),
            Tier::T3 => Some(Tier::T5),
            Tier::T5 => Some(Tier::T10),
            Tier::T10 => None,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tier-{}", self.minutes())
    }
}

/// How a tier's units travel, and what it must achieve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierParams {
    /// Which incidents the tier is for (see [`Applies`]).
    #[serde(default)]
    pub applies: Applies,
    /// Arrival target from the report, seconds (60 / 180 / 300 / 600).
    pub target_s: u32,
    /// Time from page to moving, seconds.
    pub turnout_s: f64,
    /// Average travel speed, metres per second.
    pub speed_m_per_s: f64,
    /// Road distance over great-circle distance (>= 1).
    pub circuity: f64,
    /// A SHORT tier is filled with units whose ETA is within
    /// `fallback_factor * target_s` (1 = no fallback).
    pub fallback_factor: f64,
    /// A page not acknowledged within this many seconds times out and the
    /// slot is re-paged.
    pub ack_timeout_s: u32,
}

/// Which incidents a tier is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    /// Every incident whose plan asks for the tier.
    #[default]
    Always,
    /// Only where a unit of the tier is stationed within its target: tier 1
    /// is the enterprise's *own* micro fire station (社会单位自建的微型消防站),
    /// and a place with no such station within a minute has no tier 1 to
    /// miss. Such an incident's tier is NOT_APPLICABLE (required 0), not
    /// SHORT: it pages nobody, is not counted in the compliance reports, and
    /// the board shows it as "n/a". A station that is there but busy, out of
    /// service or lacking a capability leaves the tier SHORT as usual.
    WhereStationed,
}

impl TierParams {
    /// Predicted arrival, seconds:
    /// `ceil(turnout_s + distance_m * circuity / speed_m_per_s)`, saturating.
    pub fn eta_s(&self, distance_m: f64) -> u32 {
        let raw = (self.turnout_s + distance_m * self.circuity / self.speed_m_per_s).ceil();
        if raw >= u32::MAX as f64 { u32::MAX } else { raw.max(0.0) as u32 }
    }

    /// The largest ETA a fallback unit may have, seconds.
    pub fn fallback_limit_s(&self) -> u32 {
        (self.fallback_factor * self.target_s as f64).floor() as u32
    }

    /// The largest distance whose ETA is at most `eta_limit_s` (before float
    /// rounding: callers add a margin and check `eta_s` exactly).
    pub fn reach_m(&self, eta_limit_s: u32) -> f64 {
        ((eta_limit_s as f64 - self.turnout_s) * self.speed_m_per_s / self.circuity).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t3() -> TierParams {
        TierParams {
            applies: Applies::Always,
            target_s: 180,
            turnout_s: 60.0,
            speed_m_per_s: 5.5,
            circuity: 1.3,
            fallback_factor: 2.0,
            ack_timeout_s: 30,
        }
    }

    #[test]
    fn eta_is_the_ceiling_of_the_formula() {
        let p = t3();
        assert_eq!(p.eta_s(0.0), 60);
        // 60 + 1000 * 1.3 / 5.5 = 296.36... -> 297
        assert_eq!(p.eta_s(1000.0), 297);
        // A whole number of seconds stays there: 60 + 550 * 1.3 / 5.5 = 190.
        assert_eq!(p.eta_s(550.0), 190);
        assert_eq!(p.eta_s(f64::MAX), u32::MAX);
    }

    #[test]
    fn reach_bounds_the_eta_limit() {
        let p = t3();
        let reach = p.reach_m(180);
        assert_eq!(p.eta_s(reach * 0.999_999), 180);
        assert!(p.eta_s(reach * 1.001) > 180);
        assert_eq!(p.fallback_limit_s(), 360);
    }

    #[test]
    fn tiers_round_trip_minutes_and_escalate_upwards() {
        for t in Tier::ALL {
            assert_eq!(Tier::from_minutes(t.minutes()), Some(t));
        }
        assert_eq!(Tier::from_minutes(2), None);
        assert_eq!(Tier::T1.next_up(), Some(Tier::T3));
        assert_eq!(Tier::T10.next_up(), None);
    }
}
