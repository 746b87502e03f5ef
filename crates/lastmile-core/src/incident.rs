//! Incidents, their per-tier responses and assignments.

use serde::{Deserialize, Serialize};

use crate::error::DispatchError;
use crate::geodesy::LatLng;
use crate::grid::GridWorker;
use crate::tier::Tier;

/// Wall-clock time as milliseconds since the Unix epoch. The core never reads
/// a clock: every operation that needs the time takes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub unix_ms: i64,
}

impl Timestamp {
    pub fn from_unix_ms(unix_ms: i64) -> Self {
        Timestamp { unix_ms }
    }

    pub fn plus_s(self, seconds: u32) -> Self {
        Timestamp { unix_ms: self.unix_ms.saturating_add(seconds as i64 * 1000) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    Fire,
    Flood,
    Rescue,
    Hazmat,
    Traffic,
    Medical,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentStatus {
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TierState {
    /// Every required unit reserved within target; pages out.
    Paging,
    /// Fewer units than required can meet the target.
    Short,
    Met,
    Breached,
    Escalated,
    Cancelled,
    /// The tier is not for this incident (`applies = "where_stationed"` and
    /// none of its units is stationed within its target): required 0, no
    /// pages, not counted in the compliance reports.
    NotApplicable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentState {
    Paged,
    Acknowledged,
    Declined,
    TimedOut,
    OnScene,
    Released,
}

impl AssignmentState {
    pub fn name(self) -> &'static str {
        match self {
            AssignmentState::Paged => "PAGED",
            AssignmentState::Acknowledged => "ACKNOWLEDGED",
            AssignmentState::Declined => "DECLINED",
            AssignmentState::TimedOut => "TIMED_OUT",
            AssignmentState::OnScene => "ON_SCENE",
            AssignmentState::Released => "RELEASED",
        }
    }
}

/// Lowest and highest severity (1 minor ... 4 major).
pub const SEVERITY_RANGE: std::ops::RangeInclusive<u8> = 1..=4;

/// The one severity rule: `value` (raw, as it came off the wire) as a
/// severity, or why not. The dispatcher checks every report and preview with
/// it; the server checks requests with it, so both refuse the same way.
pub fn check_severity(value: u32) -> Result<u8, DispatchError> {
    u8::try_from(value).ok().filter(|s| SEVERITY_RANGE.contains(s)).ok_or_else(|| {
        DispatchError::invalid(
            "severity",
            format!("must be {} (minor) to {} (major), got {value}", SEVERITY_RANGE.start(), SEVERITY_RANGE.end()),
        )
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub unit_id: String,
    pub unit_name: String,
    pub tier: Tier,
    pub distance_m: f64,
    /// Predicted at paging time.
    pub eta_s: u32,
    pub within_target: bool,
    pub state: AssignmentState,
    pub paged_at: Timestamp,
    pub attempt: u32,
    /// Set on a unit paged because this (lower) tier breached its deadline: it
    /// helps that tier, does not count toward this tier's MET, and is not
    /// re-paged within this tier when it does not answer.
    #[serde(default)]
    pub escalated_from: Option<Tier>,
    /// When the unit accepted its page (or reported EN_ROUTE, or ON_SCENE,
    /// while still PAGED): where the acknowledgement latency ends. `None`
    /// while the page waits, and for a page that was never answered.
    /// (Default: journals written before it load as "unknown".)
    #[serde(default)]
    pub acknowledged_at: Option<Timestamp>,
    /// When the unit reported ON_SCENE: what the tier's deadline is measured
    /// against, even when the arrival is verified later.
    #[serde(default)]
    pub on_scene_at: Option<Timestamp>,
    /// When the assignment stopped being active (RELEASED, DECLINED or
    /// TIMED_OUT): the end of the unit's commitment to the incident.
    #[serde(default)]
    pub released_at: Option<Timestamp>,
    /// The ON_SCENE report is backed by the unit's own position (a fresh fix
    /// within `dispatch.on_scene_radius_m` of the incident) or confirmed by a
    /// dispatcher. Only a verified arrival counts toward the tier's MET: a
    /// terminal pressing ON_SCENE from the station does not meet a target.
    #[serde(default)]
    pub arrival_verified: bool,
    /// Who confirmed the arrival by hand; empty unless a dispatcher did.
    #[serde(default)]
    pub arrival_confirmed_by: String,
}

impl Assignment {
    /// The unit is still committed to the incident through this assignment.
    pub fn is_active(&self) -> bool {
        matches!(self.state, AssignmentState::Paged | AssignmentState::Acknowledged | AssignmentState::OnScene)
    }

    /// Ends the assignment (RELEASED, DECLINED or TIMED_OUT) at `now`: the one
    /// place an assignment stops being active, so `released_at` is always set
    /// with it.
    pub fn end(&mut self, to: AssignmentState, now: Timestamp) {
        debug_assert!(
            matches!(to, AssignmentState::Released | AssignmentState::Declined | AssignmentState::TimedOut),
            "{} does not end an assignment",
            to.name()
        );
        debug_assert!(self.is_active(), "assignment of {} already ended as {}", self.unit_id, self.state.name());
        self.state = to;
        self.released_at = Some(now);
    }

    /// The unit accepted its page (or behaved as if: EN_ROUTE or ON_SCENE
    /// while PAGED); keeps the first answer's time.
    pub fn acknowledge(&mut self, now: Timestamp) {
        self.acknowledged_at.get_or_insert(now);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierResponse {
    pub tier: Tier,
    pub target_s: u32,
    pub required: u32,
    pub state: TierState,
    pub deadline: Timestamp,
    pub assignments: Vec<Assignment>,
    /// Why the tier is SHORT, for the dispatcher; empty otherwise.
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Dense sequence number; `id` is derived from it.
    pub seq: u64,
    pub id: String,
    pub external_id: String,
    pub location: LatLng,
    pub kind: IncidentKind,
    pub severity: u8,
    pub reported_at: Timestamp,
    pub status: IncidentStatus,
    pub tiers: Vec<TierResponse>,
    pub town: String,
    pub village: String,
    pub address: String,
    pub description: String,
    pub outside_service_area: bool,
    pub closed_at: Option<Timestamp>,
    /// The grid cell (网格) the location is in; empty when in none. (Default:
    /// journals written before grid cells load as "in none".)
    #[serde(default)]
    pub grid_id: String,
    /// That cell's grid worker, notified when the incident was reported.
    #[serde(default)]
    pub grid_worker: Option<GridWorker>,
}

/// `inc-000042` for sequence 42.
pub fn incident_id_for(seq: u64) -> String {
    format!("inc-{seq:06}")
}

/// The sequence number of a well-formed incident id.
pub fn parse_incident_id(id: &str) -> Option<u64> {
    let digits = id.strip_prefix("inc-")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_round_trip() {
        assert_eq!(incident_id_for(42), "inc-000042");
        assert_eq!(parse_incident_id("inc-000042"), Some(42));
        assert_eq!(parse_incident_id(&incident_id_for(12_345_678)), Some(12_345_678));
        assert_eq!(parse_incident_id("inc-42"), None);
        assert_eq!(parse_incident_id("inc-00004x"), None);
        assert_eq!(parse_incident_id("42"), None);
    }

    #[test]
    fn severity_is_1_to_4_and_the_refusal_says_what_came() {
        for s in 1..=4 {
            assert_eq!(check_severity(s), Ok(s as u8));
        }
        for s in [0, 5, 255, 256, 260, u32::MAX] {
            let e = check_severity(s).unwrap_err();
            assert_eq!(e, DispatchError::invalid("severity", format!("must be 1 (minor) to 4 (major), got {s}")));
        }
        assert_eq!(check_severity(0).unwrap_err().to_string(), "severity: must be 1 (minor) to 4 (major), got 0");
    }

    #[test]
    fn timestamps_add_seconds() {
        assert_eq!(Timestamp::from_unix_ms(1_000).plus_s(60).unix_ms, 61_000);
    }
}
