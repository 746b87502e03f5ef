//! The selection rule, exactly as the dispatch specification states it.
//!
//! For a unit `u` of tier `t` and an incident at `p`,
//! `eta_s(u) = ceil(turnout_s[t] + haversine_m(u.position, p) * circuity[t] / speed_m_per_s[t])`.
//! Candidates are the tier's AVAILABLE units with `eta_s <= target_s`, ordered by
//! `eta_s`, then `distance_m`, then id; the first `required` are taken. If fewer
//! meet the target the tier is SHORT and the rest is filled with the fastest
//! units whose `eta_s <= fallback_factor * target_s`, marked not within target.
//!
//! Because `eta_s` never decreases with distance, (eta, distance, id) order is
//! (distance, id) order: one nearest-first walk of the tier's R-tree, bounded by
//! the fallback reach, visits candidates in exactly the rule's order.
//! [`select_brute_force`] is the rule written as a scan, for tests and benches.
//!
//! With per-unit offsets (learnt by the ETA calibration: a crew that is
//! always two minutes slower than its tier gets +120 s), a unit's ETA is
//! `ceil(turnout_s[t] + offset(u) + distance * circuity / speed)` and the
//! order by ETA is no longer the order by distance:
//! [`select_tier_with_offsets`] walks every candidate within the reach of
//! the smallest offset, orders them by the rule, then offers them in that
//! order. Without offsets it is [`select_tier`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::geodesy::{LatLng, haversine_m};
use crate::index::TierIndex;
use crate::tier::TierParams;

/// One unit chosen for a tier.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub unit_id: Arc<str>,
    pub distance_m: f64,
    pub eta_s: u32,
    pub within_target: bool,
}

/// Walks the tier's candidates in rule order and offers each one to `take`
/// (which reserves it, or only checks it is available) until `required` are
/// taken or no candidate is left within the fallback reach.
pub fn select_tier(
    index: &TierIndex,
    params: &TierParams,
    at: LatLng,
    required: u32,
    mut take: impl FnMut(&Arc<str>) -> bool,
) -> Vec<Pick> {
    let mut picks = Vec::with_capacity(required as usize);
    if required == 0 {
        return picks;
    }
    let eta_limit_s = params.fallback_limit_s().max(params.target_s);
    for nearby in index.nearest(at, params.reach_m(eta_limit_s) + 1.0) {
        let eta_s = params.eta_s(nearby.distance_m);
        if eta_s > eta_limit_s {
            // Sorted by distance, so every later candidate is slower still.
            break;
        }
        if take(&nearby.unit_id) {
            picks.push(Pick {
                unit_id: nearby.unit_id,
                distance_m: nearby.distance_m,
                eta_s,
                within_target: eta_s <= params.target_s,
            });
            if picks.len() == required as usize {
                break;
            }
        }
    }
    picks
}

/// Seconds added to some units' ETAs (learnt per unit); the others get 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitOffsets {
    by_unit: HashMap<Arc<str>, f64>,
    /// The smallest offset, at most 0: what bounds the walk.
    min_s: f64,
}

impl UnitOffsets {
    /// Non-finite offsets are left out.
    pub fn new(offsets: impl IntoIterator<Item = (Arc<str>, f64)>) -> Self {
        let by_unit: HashMap<Arc<str>, f64> = offsets.into_iter().filter(|(_, o)| o.is_finite()).collect();
        let min_s = by_unit.values().copied().fold(0.0, f64::min);
        UnitOffsets { by_unit, min_s }
    }

    pub fn get(&self, unit_id: &str) -> f64 {
        self.by_unit.get(unit_id).copied().unwrap_or(0.0)
    }

    pub fn is_empty(&self) -> bool {
        self.by_unit.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_unit.len()
    }

    /// `params`' ETA for a unit `distance_m` away with this unit's offset.
    pub fn eta_s(&self, params: &TierParams, unit_id: &str, distance_m: f64) -> u32 {
        match self.by_unit.get(unit_id) {
            None => params.eta_s(distance_m),
            Some(offset) => with_turnout(params, params.turnout_s + offset).eta_s(distance_m),
        }
    }
}

fn with_turnout(params: &TierParams, turnout_s: f64) -> TierParams {
    TierParams { turnout_s: turnout_s.max(0.0), ..*params }
}

/// [`select_tier`] with per-unit ETA offsets (see the module's docs).
pub fn select_tier_with_offsets(
    index: &TierIndex,
    params: &TierParams,
    offsets: &UnitOffsets,
    at: LatLng,
    required: u32,
    mut take: impl FnMut(&Arc<str>) -> bool,
) -> Vec<Pick> {
    if offsets.is_empty() {
        return select_tier(index, params, at, required, take);
    }
    let mut picks = Vec::with_capacity(required as usize);
    if required == 0 {
        return picks;
    }
    let eta_limit_s = params.fallback_limit_s().max(params.target_s);
    let reach_m = with_turnout(params, params.turnout_s + offsets.min_s).reach_m(eta_limit_s) + 1.0;
    let mut candidates: Vec<Pick> = index
        .nearest(at, reach_m)
        .filter_map(|nearby| {
            let eta_s = offsets.eta_s(params, &nearby.unit_id, nearby.distance_m);
            (eta_s <= eta_limit_s).then_some(Pick {
                unit_id: nearby.unit_id,
                distance_m: nearby.distance_m,
                eta_s,
                within_target: eta_s <= params.target_s,
            })
        })
        .collect();
    candidates.sort_by(by_rule);
    for pick in candidates {
        if take(&pick.unit_id) {
            picks.push(pick);
            if picks.len() == required as usize {
                break;
            }
        }
    }
    picks
}

/// The rule's order: ETA, then distance, then id.
fn by_rule(a: &Pick, b: &Pick) -> std::cmp::Ordering {
    a.eta_s.cmp(&b.eta_s).then(a.distance_m.total_cmp(&b.distance_m)).then_with(|| a.unit_id.cmp(&b.unit_id))
}

/// The rule as a linear scan over `(id, position, available)`: the reference
/// the index-backed selection is tested and benchmarked against.
pub fn select_brute_force<'a>(
    units: impl IntoIterator<Item = (&'a Arc<str>, LatLng, bool)>,
    params: &TierParams,
    at: LatLng,
    required: u32,
) -> Vec<Pick> {
    select_brute_force_with_offsets(units, params, &UnitOffsets::default(), at, required)
}

/// [`select_brute_force`] with per-unit ETA offsets.
pub fn select_brute_force_with_offsets<'a>(
    units: impl IntoIterator<Item = (&'a Arc<str>, LatLng, bool)>,
    params: &TierParams,
    offsets: &UnitOffsets,
    at: LatLng,
    required: u32,
) -> Vec<Pick> {
    let eta_limit_s = params.fallback_limit_s().max(params.target_s);
    let mut all: Vec<Pick> = units
        .into_iter()
        .filter(|(_, _, available)| *available)
        .map(|(id, position, _)| {
            let distance_m = haversine_m(position, at);
            let eta_s = offsets.eta_s(params, id, distance_m);
            Pick { unit_id: id.clone(), distance_m, eta_s, within_target: eta_s <= params.target_s }
        })
        .filter(|p| p.eta_s <= eta_limit_s)
        .collect();
    all.sort_by(by_rule);
    all.truncate(required as usize);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DispatchConfig;
    use crate::sim::SplitMix64;
    use crate::tier::Tier;
    use std::collections::HashSet;

    fn seed() -> u64 {
        std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        })
    }

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    /// Property: for random units (some unavailable, some stacked on the same
    /// spot to force ties) and random incidents, the index-backed selection
    /// equals the brute-force scan, for every tier and several `required`.
    #[test]
    fn selection_equals_brute_force_scan() {
        let seed = seed();
        println!("selection_equals_brute_force_scan seed={seed} (rerun with LASTMILE_SEED={seed})");
        let mut rng = SplitMix64(seed);
        let config = DispatchConfig::defaults();
        let mut cases = 0;
        for round in 0..40 {
            // Half the rounds in a district-sized box, half in a small one (dense, many ties).
            let span = if round % 2 == 0 { 0.2 } else { 0.01 };
            let n = 1 + (rng.next_u64() % 400) as usize;
            let mut units: Vec<(Arc<str>, LatLng, bool)> = Vec::with_capacity(n);
            for i in 0..n {
                let position = if i > 0 && rng.unit() < 0.1 {
                    units[(rng.next_u64() % i as u64) as usize].1 // stacked: exact tie
                } else {
                    ll(28.55 + rng.range(-span, span), 121.45 + rng.range(-span, span))
                };
                units.push((Arc::<str>::from(format!("u{:04}", rng.next_u64() % 100_000)), position, rng.unit() < 0.8));
            }
            // Ids must be unique.
            let mut seen = HashSet::new();
            units.retain(|u| seen.insert(u.0.clone()));
            let index = TierIndex::bulk_load(units.iter().map(|u| (u.0.clone(), u.1)));
            let available: HashSet<Arc<str>> = units.iter().filter(|u| u.2).map(|u| u.0.clone()).collect();
            for _ in 0..100 {
                let at = ll(28.55 + rng.range(-span * 1.5, span * 1.5), 121.45 + rng.range(-span * 1.5, span * 1.5));
                for tier in Tier::ALL {
                    let params = config.tiers.get(tier);
                    let required = 1 + (rng.next_u64() % 4) as u32;
                    let fast = select_tier(&index, params, at, required, |id| available.contains(id));
                    let slow = select_brute_force(units.iter().map(|u| (&u.0, u.1, u.2)), params, at, required);
                    assert_eq!(fast, slow, "seed={seed} round={round} tier={tier} at={at:?} required={required}");
                    // Some units learnt slower or faster than their tier.
                    let mut learnt = Vec::new();
                    for u in &units {
                        if rng.unit() < 0.3 {
                            learnt.push((u.0.clone(), rng.range(-90.0, 240.0)));
                        }
                    }
                    let offsets = UnitOffsets::new(learnt);
                    let fast =
                        select_tier_with_offsets(&index, params, &offsets, at, required, |id| available.contains(id));
                    let slow = select_brute_force_with_offsets(
                        units.iter().map(|u| (&u.0, u.1, u.2)),
                        params,
                        &offsets,
                        at,
                        required,
                    );
                    assert_eq!(fast, slow, "with offsets: seed={seed} round={round} tier={tier} at={at:?}");
                    cases += 1;
                }
            }
        }
        assert!(cases >= 10_000);
    }

    #[test]
    fn short_tier_is_filled_from_the_fallback_ring_only() {
        let config = DispatchConfig::defaults();
        let t3 = config.tiers.get(Tier::T3);
        let at = ll(28.58, 121.37);
        // Reach within target: (180 - 60) * 5.5 / 1.3 = 507.7 m; fallback (360 s): 1269 m.
        let near: Arc<str> = Arc::from("near");
        let mid: Arc<str> = Arc::from("mid");
        let far: Arc<str> = Arc::from("far");
        let units = [
            (near.clone(), ll(28.582, 121.37)), // ~222 m
            (mid.clone(), ll(28.588, 121.37)),  // ~890 m: fallback
            (far.clone(), ll(28.60, 121.37)),   // ~2.2 km: beyond fallback
        ];
        let index = TierIndex::bulk_load(units.iter().cloned());
        let picks = select_tier(&index, t3, at, 3, |_| true);
        assert_eq!(picks.len(), 2);
        assert_eq!((picks[0].unit_id.clone(), picks[0].within_target), (near, true));
        assert_eq!((picks[1].unit_id.clone(), picks[1].within_target), (mid, false));
        assert!(picks[1].eta_s > 180 && picks[1].eta_s <= 360);

        // Tier 1 has no fallback: a micro station 300 m away cannot make 60 s.
        let t1 = config.tiers.get(Tier::T1);
        let index = TierIndex::bulk_load([(far.clone(), ll(28.5827, 121.37))]);
        assert!(select_tier(&index, t1, at, 1, |_| true).is_empty());
    }

    #[test]
    fn ties_break_by_eta_then_distance_then_id() {
        let config = DispatchConfig::defaults();
        let t5 = config.tiers.get(Tier::T5);
        let at = ll(28.58, 121.37);
        let ids: Vec<Arc<str>> = ["z", "y", "x"].into_iter().map(Arc::from).collect();
        // Two units at the same spot, one a metre further: same eta_s for all three.
        let units = [
            (ids[0].clone(), ll(28.581, 121.37)),
            (ids[1].clone(), ll(28.581, 121.37)),
            (ids[2].clone(), ll(28.58101, 121.37)),
        ];
        let index = TierIndex::bulk_load(units.iter().cloned());
        let picks = select_tier(&index, t5, at, 3, |_| true);
        let order: Vec<&str> = picks.iter().map(|p| &*p.unit_id).collect();
        assert_eq!(order, ["y", "z", "x"]);
        assert!(picks.iter().all(|p| p.eta_s == picks[0].eta_s));
    }

    #[test]
    fn a_unit_learnt_slow_gives_way_to_a_farther_one_learnt_on_time() {
        let config = DispatchConfig::defaults();
        let t10 = config.tiers.get(Tier::T10);
        let at = ll(28.58, 121.37);
        let (slow, punctual): (Arc<str>, Arc<str>) = (Arc::from("slow"), Arc::from("punctual"));
        let index = TierIndex::bulk_load([(slow.clone(), ll(28.59, 121.37)), (punctual.clone(), ll(28.60, 121.37))]);
        assert_eq!(select_tier(&index, t10, at, 1, |_| true)[0].unit_id, slow, "nearest first without offsets");
        let offsets = UnitOffsets::new([(slow.clone(), 300.0)]);
        let picks = select_tier_with_offsets(&index, t10, &offsets, at, 2, |_| true);
        assert_eq!(picks[0].unit_id, punctual, "{picks:?}");
        assert_eq!(picks[1].eta_s, offsets.eta_s(t10, "slow", picks[1].distance_m));
        assert!(picks[1].eta_s >= 300 + t10.eta_s(picks[1].distance_m) - 1);
    }

    #[test]
    fn a_taken_candidate_passes_to_the_next() {
        let config = DispatchConfig::defaults();
        let t10 = config.tiers.get(Tier::T10);
        let at = ll(28.58, 121.37);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let index = TierIndex::bulk_load([(a.clone(), ll(28.581, 121.37)), (b.clone(), ll(28.59, 121.37))]);
        let picks = select_tier(&index, t10, at, 1, |id| **id != *a);
        assert_eq!(picks[0].unit_id, b);
    }
}
