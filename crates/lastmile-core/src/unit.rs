//! Response units and the one state machine their status follows.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::geodesy::LatLng;
use crate::tier::Tier;

/// Longest unit id accepted, bytes.
pub const MAX_UNIT_ID_BYTES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// Free to be dispatched.
    Available,
    /// Reserved for exactly one incident; page not yet acknowledged.
    Paged,
    EnRoute,
    OnScene,
    /// Released from an incident, not yet back in service.
    Returning,
    OutOfService,
    /// Missed an acknowledgement; not selected until it reports available.
    Unresponsive,
}

impl UnitStatus {
    pub fn name(self) -> &'static str {
        match self {
            UnitStatus::Available => "AVAILABLE",
            UnitStatus::Paged => "PAGED",
            UnitStatus::EnRoute => "EN_ROUTE",
            UnitStatus::OnScene => "ON_SCENE",
            UnitStatus::Returning => "RETURNING",
            UnitStatus::OutOfService => "OUT_OF_SERVICE",
            UnitStatus::Unresponsive => "UNRESPONSIVE",
        }
    }

    /// Statuses in which the unit belongs to an incident.
    pub fn is_assigned(self) -> bool {
        matches!(self, UnitStatus::Paged | UnitStatus::EnRoute | UnitStatus::OnScene)
    }
}

impl std::fmt::Display for UnitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A response unit. `id` is shared with the spatial index (`Arc<str>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub id: Arc<str>,
    pub name: String,
    pub tier: Tier,
    /// The station.
    pub home: LatLng,
    /// Last known position: selection measures from here.
    pub position: LatLng,
    pub status: UnitStatus,
    pub town: String,
    pub village: String,
    pub crew: u32,
    pub capabilities: Vec<String>,
    /// The incident the unit is assigned to while `status.is_assigned()`.
    pub incident_id: Option<String>,
    /// When `position` was measured (AVL timestamp); older reports are ignored.
    pub position_at: Option<crate::incident::Timestamp>,
    /// When the last position event went to the live feed (rate limit).
    pub position_event_at: Option<crate::incident::Timestamp>,
    /// When the unit last became RETURNING (matches its return timer).
    pub returning_since: Option<crate::incident::Timestamp>,
}

/// Why a unit id is unusable.
pub fn check_unit_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_UNIT_ID_BYTES {
        return Err(format!("must be at most {MAX_UNIT_ID_BYTES} bytes, got {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(format!("may hold only A-Z a-z 0-9 - _ . (found {c:?})"));
    }
    Ok(())
}

/// A refused status change; the message carries the current state.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("unit {unit_id} is {from}{assigned}: cannot become {to}: {why}", assigned = incident_id.as_ref().map(|i| format!(" for incident {i}")).unwrap_or_default())]
pub struct TransitionError {
    pub unit_id: String,
    pub from: UnitStatus,
    pub to: UnitStatus,
    pub incident_id: Option<String>,
    pub why: &'static str,
}

/// The unit state machine for status reports and dispatcher overrides.
///
/// Reservation (AVAILABLE -> PAGED), acknowledgement, timeouts and release by a
/// dispatcher or by closing the incident are done by dispatch itself, not
/// through here. While a unit belongs to an incident it only moves forward
/// (PAGED -> EN_ROUTE -> ON_SCENE), and leaves it from ON_SCENE (RETURNING or
/// AVAILABLE: its work there is done). Setting the current status again is a
/// no-op, so a retried request is harmless.
pub fn check_transition(unit: &Unit, to: UnitStatus) -> Result<(), TransitionError> {
    use UnitStatus::*;
    let refuse = |why| TransitionError {
        unit_id: unit.id.to_string(),
        from: unit.status,
        to,
        incident_id: unit.incident_id.clone(),
        why,
    };
    if unit.status == to {
        return Ok(());
    }
    match (unit.status, to) {
        (_, Paged) => Err(refuse("units are paged by dispatch only")),
        (Paged, EnRoute) | (Paged, OnScene) | (EnRoute, OnScene) => Ok(()),
        (OnScene, Returning | Available) => Ok(()),
        (Paged | EnRoute | OnScene, _) => Err(refuse("the unit is assigned; close the incident to release it")),
        (_, EnRoute | OnScene) => Err(refuse("the unit has no incident")),
        (Available, OutOfService) => Ok(()),
        (Available, Returning | Unresponsive) => Err(refuse("not a move an available unit makes")),
        (Returning | OutOfService | Unresponsive, Available | OutOfService) => Ok(()),
        (Returning | OutOfService | Unresponsive, Returning | Unresponsive) => Err(refuse("set by dispatch only")),
        (_, _) => Err(refuse("no such transition")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UnitStatus::*;

    fn unit(status: UnitStatus) -> Unit {
        let here = LatLng::new(28.5, 121.4).unwrap();
        Unit {
            id: "T3-1".into(),
            name: "t".into(),
            tier: Tier::T3,
            home: here,
            position: here,
            status,
            town: String::new(),
            village: String::new(),
            crew: 5,
            capabilities: vec![],
            incident_id: status.is_assigned().then(|| "inc-000001".to_string()),
            position_at: None,
            position_event_at: None,
            returning_since: None,
        }
    }

    #[test]
    fn legal_moves() {
        for (from, to) in [
            (Available, OutOfService),
            (Paged, EnRoute),
            (Paged, OnScene),
            (EnRoute, OnScene),
            (Returning, Available),
            (OutOfService, Available),
            (Unresponsive, Available),
            (Unresponsive, OutOfService),
            (OnScene, OnScene),
            (OnScene, Returning),
            (OnScene, Available),
        ] {
            assert!(check_transition(&unit(from), to).is_ok(), "{from} -> {to}");
        }
    }

    #[test]
    fn illegal_moves_name_the_current_state() {
        for (from, to) in [
            (Available, Paged),
            (Available, EnRoute),
            (Paged, Available),
            (EnRoute, OutOfService),
            (EnRoute, Returning),
            (OnScene, OutOfService),
            (OutOfService, Unresponsive),
        ] {
            let e = check_transition(&unit(from), to).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(from.name()) && msg.contains(to.name()), "{msg}");
        }
        let msg = check_transition(&unit(EnRoute), Available).unwrap_err().to_string();
        assert!(msg.contains("inc-000001"), "{msg}");
    }

    #[test]
    fn unit_ids_are_checked() {
        assert!(check_unit_id("T3-331004001202").is_ok());
        assert!(check_unit_id("").is_err());
        assert!(check_unit_id("a b").is_err());
        assert!(check_unit_id(&"x".repeat(65)).is_err());
    }
}
