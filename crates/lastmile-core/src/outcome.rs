//! What became of a closed incident, in the few figures the 13510
//! compliance reports and the ETA calibration read: per tier, whether it
//! was short at report, breached, escalated, how many of its slots a
//! verified arrival met within target and when the first one came; per
//! assignment, who was paged, how far away, what was predicted, and when
//! they acknowledged and arrived.
//!
//! Computed once, when the incident closes, from its final state and its
//! timeline (the timeline alone knows "short at report", "breached" and
//! "escalated": a tier's state moves on), and stored beside it in history,
//! so a report over a month reads these small records, not every incident's
//! whole state and timeline.

use serde::{Deserialize, Serialize};

use crate::effects::EventKind;
use crate::incident::{AssignmentState, Incident, IncidentKind, Timestamp};
use crate::tier::Tier;

/// One timeline entry as the outcome needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimelineFact {
    pub kind: EventKind,
    pub tier: Option<Tier>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub seq: u64,
    pub id: String,
    pub reported_at_ms: i64,
    pub closed_at_ms: i64,
    pub town: String,
    #[serde(default)]
    pub grid_id: String,
    pub kind: IncidentKind,
    pub severity: u8,
    pub tiers: Vec<TierOutcome>,
    pub assignments: Vec<AssignmentOutcome>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierOutcome {
    pub tier: Tier,
    pub target_s: u32,
    /// Slots the response plan required (0: the tier was not asked for).
    pub required: u32,
    /// At report, fewer units than required could meet the target.
    pub short_at_report: bool,
    /// The deadline passed before every slot had a verified arrival.
    pub breached: bool,
    /// The breach paged the next tier up.
    pub escalated: bool,
    /// Slots met: verified arrivals of this tier's own units (not units
    /// lent by escalation) on scene within `target_s` of the report, at
    /// most `required`.
    pub slots_met: u32,
    /// Seconds from the report to the first verified arrival of the tier's
    /// own units (within target or not); `None` when none came.
    pub first_verified_arrival_s: Option<f64>,
}

impl TierOutcome {
    /// Every required slot was met within target by a verified arrival.
    pub fn met(&self) -> bool {
        self.required > 0 && self.slots_met >= self.required
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentOutcome {
    pub unit_id: String,
    /// The tier whose slot the unit was paged for.
    pub tier: Tier,
    /// The unit's own tier (whose travel model predicted `eta_s`).
    pub unit_tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_from: Option<Tier>,
    pub attempt: u32,
    /// Great-circle distance from the unit to the incident when paged.
    pub distance_m: f64,
    /// The ETA promised when paged, seconds from the page.
    pub eta_s: u32,
    pub within_target: bool,
    pub paged_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_scene_at_ms: Option<i64>,
    /// The arrival was verified by position or confirmed by a dispatcher.
    pub verified: bool,
    /// The assignment's last state (DECLINED, TIMED_OUT, RELEASED, ...).
    pub state: AssignmentState,
}

impl AssignmentOutcome {
    /// Seconds from page to acknowledgement.
    pub fn ack_s(&self) -> Option<f64> {
        self.acknowledged_at_ms.map(|a| (a - self.paged_at_ms) as f64 / 1000.0)
    }

    /// Seconds from page to a *verified* arrival: what the ETA predicts.
    pub fn travel_s(&self) -> Option<f64> {
        self.on_scene_at_ms.filter(|_| self.verified).map(|a| (a - self.paged_at_ms) as f64 / 1000.0)
    }
}

impl Outcome {
    /// The outcome of a closed incident, from its final state and its
    /// timeline; `unit_tier` names a unit's own tier (the slot's tier when
    /// it returns `None`, e.g. a unit since removed).
    pub fn of(incident: &Incident, timeline: &[TimelineFact], unit_tier: impl Fn(&str) -> Option<Tier>) -> Outcome {
        let reported = incident.reported_at.unix_ms;
        let has = |kind: EventKind, tier: Tier, at_report: bool| {
            timeline.iter().any(|f| f.kind == kind && f.tier == Some(tier) && (!at_report || f.at.unix_ms == reported))
        };
        let mut assignments = Vec::new();
        let mut tiers = Vec::new();
        for t in &incident.tiers {
            let own = || t.assignments.iter().filter(|a| a.escalated_from.is_none() && a.arrival_verified);
            let since_report =
                |a: &crate::incident::Assignment| a.on_scene_at.map(|at| (at.unix_ms - reported) as f64 / 1000.0);
            let within = own().filter_map(since_report).filter(|s| *s <= t.target_s as f64).count() as u32;
            tiers.push(TierOutcome {
                tier: t.tier,
                target_s: t.target_s,
                required: t.required,
                short_at_report: has(EventKind::TierShort, t.tier, true),
                breached: has(EventKind::TierBreached, t.tier, false),
                escalated: has(EventKind::TierEscalated, t.tier, false),
                slots_met: within.min(t.required),
                first_verified_arrival_s: own().filter_map(since_report).min_by(f64::total_cmp),
            });
            for a in &t.assignments {
                assignments.push(AssignmentOutcome {
                    unit_id: a.unit_id.clone(),
                    tier: a.tier,
                    unit_tier: unit_tier(&a.unit_id).unwrap_or(a.tier),
                    escalated_from: a.escalated_from,
                    attempt: a.attempt,
                    distance_m: a.distance_m,
                    eta_s: a.eta_s,
                    within_target: a.within_target,
                    paged_at_ms: a.paged_at.unix_ms,
                    acknowledged_at_ms: a.acknowledged_at.map(|t| t.unix_ms),
                    on_scene_at_ms: a.on_scene_at.map(|t| t.unix_ms),
                    verified: a.arrival_verified,
                    state: a.state,
                });
            }
        }
        Outcome {
            seq: incident.seq,
            id: incident.id.clone(),
            reported_at_ms: reported,
            closed_at_ms: incident.closed_at.unwrap_or(incident.reported_at).unix_ms,
            town: incident.town.clone(),
            grid_id: incident.grid_id.clone(),
            kind: incident.kind,
            severity: incident.severity,
            tiers,
            assignments,
        }
    }
}
