//! Response units and the one state machine their status follows.
//!
//! [`Unit::transition`] is the only code that changes a unit's status; it
//! looks every move up in [`transition_reason`] (the table of allowed moves
//! and why each exists) and keeps `incident_id` and `returning_since` in step
//! with the status. [`check_transition`] is the gate that requests from
//! outside (status reports, overrides) pass first.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::geodesy::LatLng;
use crate::incident::Timestamp;
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

/// What a status report or a dispatcher override may ask of the unit state
/// machine: the gate in front of [`Unit::transition`] for requests, with
/// refusals that say what the unit is now.
///
/// Reservation (AVAILABLE -> PAGED), acknowledgement, timeouts and release by a
/// dispatcher or by closing the incident are done by dispatch itself, not
/// through here (see [`transition_reason`] for the whole table). While a unit belongs to an incident it only moves forward
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

/// Who or what moves a unit: the key of the transition table besides the
/// two statuses. Each cause stands for one path of the dispatcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause<'a> {
    /// Dispatch reserved the unit for `incident_id` (selection at report,
    /// re-page, escalation, a dispatcher's AssignUnit).
    Reserved { incident_id: &'a str },
    /// The terminal accepted its page (Acknowledge).
    Accepted,
    /// The terminal declined its page (Acknowledge).
    Declined,
    /// The acknowledgement timer of its page came due unanswered.
    AckTimedOut,
    /// A terminal's status report or a dispatcher's override
    /// (`SetUnitStatus`), already passed through [`check_transition`].
    Reported,
    /// Its assignment was released: the incident closed, a dispatcher
    /// released it, its page was withdrawn, or it left the scene.
    Released,
    /// Its return timer came due (`return_to_available_s`).
    ReturnElapsed,
    /// A restore found its incident does not hold it (see `Dispatcher::reconcile`).
    Repaired,
    /// An UNRESPONSIVE unit's terminal answered (a position fix).
    Recovered,
}

impl Cause<'_> {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Reserved { .. } => "reservation",
            Cause::Accepted => "accepted page",
            Cause::Declined => "declined page",
            Cause::AckTimedOut => "acknowledgement timeout",
            Cause::Reported => "status report",
            Cause::Released => "release",
            Cause::ReturnElapsed => "return timer",
            Cause::Repaired => "restore repair",
            Cause::Recovered => "terminal answered",
        }
    }

    /// Why a move is not in the table for this cause, for the refusal.
    fn refusal(self) -> &'static str {
        match self {
            Cause::Reserved { .. } => "only an AVAILABLE (or RETURNING) unit can be reserved",
            Cause::Accepted | Cause::Declined | Cause::AckTimedOut => "only a PAGED unit answers a page",
            Cause::Reported => "not a move a status report makes",
            Cause::Released => "only an assigned unit is released",
            Cause::ReturnElapsed => "only a RETURNING unit comes back by its return timer",
            Cause::Repaired => "not a repair a restore makes",
            Cause::Recovered => "only an UNRESPONSIVE unit recovers",
        }
    }
}

/// The transition table: why `cause` may move a unit `from` -> `to`, or
/// `None` when it never does. Every change of [`Unit::status`] goes through
/// [`Unit::transition`], which looks the move up here.
///
/// [`check_transition`] is the narrower gate for requests (status reports and
/// overrides); the moves it allows are the `Reported` rows, plus
/// ON_SCENE -> RETURNING/AVAILABLE, which the dispatcher carries out as a
/// release of the assignment (`Released`).
pub fn transition_reason(from: UnitStatus, to: UnitStatus, cause: Cause<'_>) -> Option<&'static str> {
    use Cause::*;
    use UnitStatus::*;
    Some(match (cause, from, to) {
        (Reserved { .. }, Available, Paged) => "dispatch reserves a free unit for exactly one incident",
        (Reserved { .. }, Returning, Paged) => {
            "a unit on its way back is dispatchable too when escalation.dispatch_returning_units is on (checked by dispatch)"
        }
        (Accepted, Paged, EnRoute) => "the terminal accepted its page",
        (Declined, Paged, Available) => "the terminal declined: free for other incidents, never re-paged for this one",
        (AckTimedOut, Paged, Unresponsive) => "no acknowledgement in time: not selected until it reports available",
        (Reported, from, to) if from == to => "a retried report or override: no change",
        (Reported, Paged, EnRoute) => "a status report of EN_ROUTE acknowledges the page",
        (Reported, Paged | EnRoute, OnScene) => "arrived at the incident",
        (Reported, Available, OutOfService) => "taken out of service while free",
        (Reported, Returning | OutOfService | Unresponsive, Available) => "back in service",
        (Reported, Returning | Unresponsive, OutOfService) => "taken out of service instead of coming back",
        (Released, Paged, Available) => "released before it set out: free at once",
        (Released, EnRoute | OnScene, Returning) => "released after it set out: on its way back to the station",
        (Released, OnScene, Available) => "reported AVAILABLE as it leaves the scene: its work there is done",
        (ReturnElapsed, Returning, Available) => "return_to_available_s passed without a report",
        (Recovered, Unresponsive, Available) => {
            "its terminal answered (a position fix): the crew is reachable again, and dispatchable"
        }
        (Repaired, Paged, Available) => "restore: its incident does not hold it, and it never set out",
        (Repaired, EnRoute | OnScene, Returning) => "restore: its incident does not hold it, and it had set out",
        (Repaired, from, to) if from == to && !from.is_assigned() => {
            "restore: an unassigned unit drops a stale incident reference"
        }
        _ => return None,
    })
}

impl Unit {
    /// Moves the unit to `to` for `cause`: the one place its status changes.
    /// Returns the status it had.
    ///
    /// Keeps the fields that depend on the status consistent with it:
    /// `incident_id` is `Some` exactly while the unit is assigned (set by a
    /// reservation, kept to EN_ROUTE and ON_SCENE, cleared otherwise), and
    /// `returning_since` is `now` when the unit becomes RETURNING and `None`
    /// after any other move (a move to the same status leaves it as it is).
    ///
    /// A move that is not in [`transition_reason`]'s table, or to EN_ROUTE or
    /// ON_SCENE without an incident, is refused and changes nothing. Callers
    /// check what they are asked first ([`check_transition`], dispatchability),
    /// so a refusal here is a bug: it trips a `debug_assert!`.
    pub fn transition(
        &mut self,
        to: UnitStatus,
        cause: Cause<'_>,
        now: Timestamp,
    ) -> Result<UnitStatus, TransitionError> {
        let from = self.status;
        let refusal = if transition_reason(from, to, cause).is_none() {
            Some(cause.refusal())
        } else if to.is_assigned() && !matches!(cause, Cause::Reserved { .. }) && self.incident_id.is_none() {
            Some("the unit has no incident")
        } else {
            None
        };
        if let Some(why) = refusal {
            debug_assert!(false, "unit {}: {from} -> {to} refused for {}: {why}", self.id, cause.name());
            return Err(TransitionError {
                unit_id: self.id.to_string(),
                from,
                to,
                incident_id: self.incident_id.clone(),
                why,
            });
        }
        self.status = to;
        match cause {
            Cause::Reserved { incident_id } => self.incident_id = Some(incident_id.to_string()),
            _ if to.is_assigned() => {} // EN_ROUTE or ON_SCENE of the incident it has
            _ => self.incident_id = None,
        }
        if from != to {
            self.returning_since = (to == UnitStatus::Returning).then_some(now);
        }
        debug_assert_eq!(self.incident_id.is_some(), self.status.is_assigned(), "unit {}", self.id);
        Ok(from)
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

    const ALL: [UnitStatus; 7] = [Available, Paged, EnRoute, OnScene, Returning, OutOfService, Unresponsive];
    const CAUSES: [Cause<'static>; 9] = [
        Cause::Reserved { incident_id: "inc-000002" },
        Cause::Accepted,
        Cause::Declined,
        Cause::AckTimedOut,
        Cause::Reported,
        Cause::Released,
        Cause::ReturnElapsed,
        Cause::Repaired,
        Cause::Recovered,
    ];
    const T1: Timestamp = Timestamp { unix_ms: 1_780_000_000_000 };

    /// A unit in `status` whose fields agree with it (RETURNING since the epoch).
    fn consistent(status: UnitStatus) -> Unit {
        Unit { returning_since: (status == Returning).then_some(Timestamp::default()), ..unit(status) }
    }

    #[test]
    fn the_table_holds_exactly_these_moves() {
        use Cause::*;
        let reserved = CAUSES[0];
        let mut allowed = vec![
            (reserved, Available, Paged),
            (reserved, Returning, Paged),
            (Accepted, Paged, EnRoute),
            (Declined, Paged, Available),
            (AckTimedOut, Paged, Unresponsive),
            (Reported, Paged, EnRoute),
            (Reported, Paged, OnScene),
            (Reported, EnRoute, OnScene),
            (Reported, Available, OutOfService),
            (Reported, Returning, Available),
            (Reported, OutOfService, Available),
            (Reported, Unresponsive, Available),
            (Reported, Returning, OutOfService),
            (Reported, Unresponsive, OutOfService),
            (Released, Paged, Available),
            (Released, EnRoute, Returning),
            (Released, OnScene, Returning),
            (Released, OnScene, Available),
            (ReturnElapsed, Returning, Available),
            (Recovered, Unresponsive, Available),
            (Repaired, Paged, Available),
            (Repaired, EnRoute, Returning),
            (Repaired, OnScene, Returning),
        ];
        allowed.extend(ALL.map(|s| (Reported, s, s)));
        allowed.extend([Available, Returning, OutOfService, Unresponsive].map(|s| (Repaired, s, s)));
        for cause in CAUSES {
            for from in ALL {
                for to in ALL {
                    let expected = allowed.contains(&(cause, from, to));
                    let reason = transition_reason(from, to, cause);
                    assert_eq!(reason.is_some(), expected, "{} {from} -> {to}: {reason:?}", cause.name());
                }
            }
        }
    }

    #[test]
    fn every_move_a_request_may_ask_for_is_in_the_table() {
        for from in ALL {
            for to in ALL {
                if check_transition(&unit(from), to).is_err() {
                    continue;
                }
                // ON_SCENE -> RETURNING/AVAILABLE is carried out as a release.
                let cause = if from == OnScene && matches!(to, Returning | Available) {
                    Cause::Released
                } else {
                    Cause::Reported
                };
                assert!(transition_reason(from, to, cause).is_some(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn allowed_moves_keep_the_incident_and_the_return_time_in_step() {
        for cause in CAUSES {
            for from in ALL {
                for to in ALL.into_iter().filter(|to| transition_reason(from, *to, cause).is_some()) {
                    let mut u = consistent(from);
                    let before = u.clone();
                    assert_eq!(u.transition(to, cause, T1), Ok(from));
                    let what = format!("{} {from} -> {to}", cause.name());
                    assert_eq!(u.status, to, "{what}");
                    let incident = match cause {
                        Cause::Reserved { incident_id } => Some(incident_id.to_string()),
                        _ if to.is_assigned() => before.incident_id.clone(),
                        _ => None,
                    };
                    assert_eq!(u.incident_id, incident, "{what}");
                    let since = if from == to { before.returning_since } else { (to == Returning).then_some(T1) };
                    assert_eq!(u.returning_since, since, "{what}");
                    // And nothing else of the unit changes.
                    assert_eq!(
                        Unit { status: from, incident_id: None, returning_since: None, ..u },
                        Unit { incident_id: None, returning_since: None, ..before }
                    );
                }
            }
        }
    }

    #[test]
    fn a_restore_repair_drops_a_stale_reference_and_keeps_the_return_time() {
        let mut u = Unit { incident_id: Some("inc-000009".into()), ..consistent(Returning) };
        assert_eq!(u.transition(Returning, Cause::Repaired, T1), Ok(Returning));
        assert_eq!((u.incident_id, u.returning_since), (None, Some(Timestamp::default())));
    }

    /// A refused move is a bug in the caller: it trips a `debug_assert!`; a
    /// release build refuses it and leaves the unit as it was.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "AVAILABLE -> ON_SCENE refused for status report"))]
    fn a_move_not_in_the_table_is_refused() {
        let mut u = consistent(Available);
        let e = u.transition(OnScene, Cause::Reported, T1).unwrap_err();
        assert_eq!((e.from, e.to, e.why), (Available, OnScene, "not a move a status report makes"));
        assert_eq!(u, consistent(Available));
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "the unit has no incident"))]
    fn an_assigned_status_without_an_incident_is_refused() {
        let mut u = Unit { incident_id: None, ..consistent(Paged) };
        let e = u.transition(EnRoute, Cause::Accepted, T1).unwrap_err();
        assert_eq!(e.why, "the unit has no incident");
        assert_eq!(u.status, Paged);
    }

    #[test]
    fn unit_ids_are_checked() {
        assert!(check_unit_id("T3-331004001202").is_ok());
        assert!(check_unit_id("").is_err());
        assert!(check_unit_id("a b").is_err());
        assert!(check_unit_id(&"x".repeat(65)).is_err());
    }
}
