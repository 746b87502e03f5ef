//! `--optimality`: lastmile's assignments against the hindsight optimum.
//!
//! Once the whole surge is reported and the policy has settled (see
//! [`settle_wait`]), the run's incidents are read back. Per tier, the slots
//! are the tier's `required` of every incident (0 for a tier that does not
//! apply: NOT_APPLICABLE), and the units are those of the tier that were
//! AVAILABLE when the run started. The optimum is a min-cost bipartite
//! matching of slots to units ([`super::matching::optimum`], Kuhn–Munkres)
//! maximising slots filled within target, then slots filled at all, then
//! minimising total ETA. A unit can fill a slot when it has the capabilities
//! the incident's kind requires of the tier (`dispatch.capabilities`) and its
//! ETA from its position at the start, by the tier's configured travel
//! model, is within the rule's reach (`fallback_factor * target_s`); within
//! target when it is at most `target_s`. lastmile's figures count each
//! incident's active pages of the tier's own slots (escalation pages, which
//! help a breached lower tier, are not slots), at most `required`.
//!
//! What makes the comparison fair: crews accept (or stay silent), never
//! decline, and do not drive, so no unit is freed and used twice within the
//! measure; the in-process server's acknowledgement timeouts are raised so no
//! silent page times out before the read; nothing is closed
//! (`--open-incidents 0` is the workload). The ETA model is the
//! configured one: nothing closes, so nothing is learnt during the run.

use lastmile_core::config::DispatchConfig;
use lastmile_core::geodesy::haversine_m;
use lastmile_core::{IncidentKind, LatLng, Tier};
use lastmile_proto::v1 as pb;
use serde_json::json;

use lastmile_core::matching::{self, Edge};

/// One tier's comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct TierMeasure {
    pub tier: Tier,
    pub slots: usize,
    pub units: usize,
    pub lastmile_within: usize,
    pub lastmile_filled: usize,
    pub optimum_within: usize,
    pub optimum_filled: usize,
    pub optimum_total_eta_s: u64,
}

impl TierMeasure {
    /// lastmile's within-target slots over the optimum's (1 when the optimum has none).
    pub fn within_ratio(&self) -> f64 {
        ratio(self.lastmile_within, self.optimum_within)
    }

    pub fn filled_ratio(&self) -> f64 {
        ratio(self.lastmile_filled, self.optimum_filled)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "tier": self.tier.minutes(),
            "slots": self.slots,
            "units": self.units,
            "lastmile_within_target": self.lastmile_within,
            "optimum_within_target": self.optimum_within,
            "within_target_ratio": self.within_ratio(),
            "lastmile_filled": self.lastmile_filled,
            "optimum_filled": self.optimum_filled,
            "filled_ratio": self.filled_ratio(),
            "optimum_total_eta_s": self.optimum_total_eta_s,
        })
    }
}

fn ratio(ours: usize, best: usize) -> f64 {
    if best == 0 { 1.0 } else { ours as f64 / best as f64 }
}

/// How long after the last report answered the policy may still page: a
/// slot's fallback round comes at most `fallback_delay_s + fallback_round_s`
/// after its report; a margin covers the timer wheel and the round itself.
/// The read is then repeated until two reads a second apart agree (see
/// `mod.rs`, `settled_read`).
pub fn settle_wait(config: &DispatchConfig) -> std::time::Duration {
    let policy = &config.policy;
    std::time::Duration::from_secs(u64::from(policy.fallback_delay_s) + u64::from(policy.fallback_round_s) + 2)
}

/// The incident's kind as the server reads it (an unknown or unspecified
/// one as OTHER: the read-back has only kinds the server accepted).
fn kind_of(kind: i32) -> IncidentKind {
    lastmile_server::wire::kind("kind", kind).ok().flatten().unwrap_or(IncidentKind::Other)
}

fn point(p: Option<&pb::LatLng>) -> Option<LatLng> {
    p.and_then(|p| LatLng::new(p.lat, p.lng).ok())
}

/// A page that holds its unit and fills one of the tier's own slots.
fn fills_slot(a: &pb::Assignment) -> bool {
    super::holds_unit(a.state()) && a.escalated_from == 0
}

/// Every tier's comparison for `incidents` (the run's, read back once
/// settled) and `units` (as listed before the run).
pub fn measure(config: &DispatchConfig, units: &[pb::Unit], incidents: &[pb::Incident]) -> Vec<TierMeasure> {
    Tier::ALL.into_iter().map(|tier| measure_tier(config, tier, units, incidents)).collect()
}

fn measure_tier(config: &DispatchConfig, tier: Tier, units: &[pb::Unit], incidents: &[pb::Incident]) -> TierMeasure {
    let minutes = tier.minutes() as i32;
    let params = *config.tiers.get(tier);
    let reach_s = params.fallback_limit_s().max(params.target_s);
    let fleet: Vec<(LatLng, &[String])> = units
        .iter()
        .filter(|u| u.tier == minutes && u.status() == pb::UnitStatus::Available)
        .filter_map(|u| Some((point(u.position.as_ref().or(u.home.as_ref()))?, u.capabilities.as_slice())))
        .collect();
    // One entry per slot: where, and what the kind requires.
    let mut slots: Vec<(LatLng, &[String])> = Vec::new();
    let (mut lastmile_within, mut lastmile_filled) = (0, 0);
    for incident in incidents {
        let Some(at) = point(incident.location.as_ref()) else { continue };
        let Some(t) = incident.tiers.iter().find(|t| t.tier == minutes) else { continue };
        let required = t.required as usize;
        let required_caps = config.required_capabilities(kind_of(incident.kind), tier);
        slots.extend(std::iter::repeat_n((at, required_caps), required));
        let own: Vec<&pb::Assignment> = t.assignments.iter().filter(|a| fills_slot(a)).collect();
        lastmile_filled += own.len().min(required);
        lastmile_within += own.iter().filter(|a| a.within_target).count().min(required);
    }
    let edge = |s: usize, u: usize| {
        let (at, required) = slots[s];
        let (position, caps) = fleet[u];
        if !required.iter().all(|r| caps.contains(r)) {
            return None;
        }
        let eta_s = params.eta_s(haversine_m(position, at));
        (eta_s <= reach_s).then_some(Edge { eta_s, within_target: eta_s <= params.target_s })
    };
    let best = matching::optimum(slots.len(), fleet.len(), edge);
    TierMeasure {
        tier,
        slots: slots.len(),
        units: fleet.len(),
        lastmile_within,
        lastmile_filled,
        optimum_within: best.within_target,
        optimum_filled: best.filled,
        optimum_total_eta_s: best.total_eta_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(id: &str, tier: i32, lat: f64, lng: f64, caps: &[&str]) -> pb::Unit {
        pb::Unit {
            id: id.into(),
            tier,
            position: Some(pb::LatLng { lat, lng }),
            status: pb::UnitStatus::Available as i32,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    fn incident(
        lat: f64,
        lng: f64,
        kind: pb::IncidentKind,
        tier: i32,
        required: u32,
        paged: &[(&str, bool)],
    ) -> pb::Incident {
        pb::Incident {
            location: Some(pb::LatLng { lat, lng }),
            kind: kind as i32,
            tiers: vec![pb::TierResponse {
                tier,
                required,
                assignments: paged
                    .iter()
                    .map(|(u, within)| pb::Assignment {
                        unit_id: u.to_string(),
                        within_target: *within,
                        state: pb::AssignmentState::Acknowledged as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn greedy_first_come_is_measured_against_the_matching_that_serves_both() {
        // A at the station's door could use either brigade within target;
        // B, 4 km north, only the northern one. lastmile gave A the northern
        // one: the optimum serves both within target.
        let units = [unit("S", 10, 28.58, 121.37, &[]), unit("N", 10, 28.62, 121.37, &[])];
        let incidents = [
            incident(28.60, 121.37, pb::IncidentKind::Fire, 10, 1, &[("N", true)]),
            incident(28.645, 121.37, pb::IncidentKind::Fire, 10, 1, &[]),
        ];
        let m = &measure(&DispatchConfig::defaults(), &units, &incidents)[3];
        assert_eq!((m.slots, m.units), (2, 2));
        assert_eq!((m.lastmile_within, m.lastmile_filled), (1, 1));
        assert_eq!((m.optimum_within, m.optimum_filled), (2, 2));
        assert!((m.within_ratio() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_unit_lacking_the_capability_is_no_edge_and_a_not_applicable_tier_no_slot() {
        let mut config = DispatchConfig::defaults();
        config.capabilities.push(lastmile_core::config::CapabilityRule {
            kinds: vec![IncidentKind::Flood],
            tiers: vec![10],
            require: vec!["flood".into()],
        });
        let units = [unit("dry", 10, 28.58, 121.37, &["fire"])];
        let incidents = [
            incident(28.58, 121.37, pb::IncidentKind::Flood, 10, 1, &[]),
            incident(28.58, 121.37, pb::IncidentKind::Fire, 10, 0, &[]),
        ];
        let m = &measure(&config, &units, &incidents)[3];
        assert_eq!(m.slots, 1);
        assert_eq!((m.optimum_within, m.optimum_filled), (0, 0));
        assert_eq!(m.within_ratio(), 1.0);
    }
}
