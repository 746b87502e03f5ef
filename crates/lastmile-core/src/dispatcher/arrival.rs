//! Arrivals: whether an ON_SCENE report is backed by the unit's position,
//! and the tier's MET that only verified arrivals make.
//!
//! A terminal can press ON_SCENE anywhere. The report always moves the unit
//! and its assignment ON_SCENE (the crew says it is there, and dispatch does
//! not argue with a crew), but it counts toward the tier's MET only when it is
//! **verified**: the unit's last position fix is within
//! `dispatch.on_scene_radius_m` of the incident and at most
//! `dispatch.on_scene_fix_max_age_s` old. An unverified arrival becomes
//! verified by a later fix within the radius, or by a dispatcher's
//! confirmation ([`Dispatcher::confirm_arrival`]). The tier's deadline is
//! measured against the time of the ON_SCENE report (`on_scene_at`), not of
//! the verification, for as long as the tier is still open.

use super::Dispatcher;
use crate::config::DispatchConfig;
use crate::effects::{Effects, Event, EventKind};
use crate::error::DispatchError;
use crate::geodesy::{LatLng, haversine_m};
use crate::incident::{Assignment, AssignmentState, Incident, TierResponse, TierState, Timestamp, parse_incident_id};
use crate::unit::{Unit, UnitStatus};

/// A fix that backs an arrival.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Fix {
    pub distance_m: f64,
    /// How old the fix was when the arrival was checked (0 for a fix stamped
    /// after `now`: a terminal clock slightly ahead is not a reason to doubt it).
    pub age_ms: i64,
}

/// Whether `unit`'s last fix backs an arrival at `at` by `now`; the refusal
/// says why not, naming the key that decided.
pub(super) fn check_arrival(config: &DispatchConfig, unit: &Unit, at: LatLng, now: Timestamp) -> Result<Fix, String> {
    let Some(measured_at) = unit.position_at else { return Err("no position fix".to_string()) };
    let age_ms = (now.unix_ms - measured_at.unix_ms).max(0);
    if age_ms > config.on_scene_fix_max_age_s as i64 * 1000 {
        return Err(format!(
            "last fix {} s old (dispatch.on_scene_fix_max_age_s = {})",
            ceil_s(age_ms),
            config.on_scene_fix_max_age_s
        ));
    }
    let distance_m = haversine_m(unit.position, at);
    if distance_m > config.on_scene_radius_m {
        return Err(format!(
            "{distance_m:.0} m from the incident (dispatch.on_scene_radius_m = {})",
            config.on_scene_radius_m
        ));
    }
    Ok(Fix { distance_m, age_ms })
}

/// Whole seconds, rounded up: "120 s old" is never shown for a fix refused as
/// older than 120 s.
fn ceil_s(ms: i64) -> i64 {
    (ms + 999) / 1000
}

/// The required arrivals of `tier` that count: verified, reported ON_SCENE by
/// the tier's deadline, and not units paged to help another (breached) tier.
pub(super) fn arrived_in_time(tier: &TierResponse) -> u32 {
    tier.assignments
        .iter()
        .filter(|a| {
            a.state == AssignmentState::OnScene
                && a.arrival_verified
                && a.escalated_from.is_none()
                && a.on_scene_at.is_some_and(|at| at <= tier.deadline)
        })
        .count() as u32
}

/// For a breach: the arrivals that did not count for want of verification
/// (", 1 more on scene, unverified"), so the dispatcher knows to confirm or
/// look; empty when there are none.
pub(super) fn unverified_note(tier: &TierResponse) -> String {
    let unverified = tier
        .assignments
        .iter()
        .filter(|a| a.state == AssignmentState::OnScene && !a.arrival_verified && a.escalated_from.is_none())
        .count();
    if unverified == 0 { String::new() } else { format!(", {unverified} more on scene, unverified") }
}

/// The tier MET once its required units have arrived in time (see
/// [`arrived_in_time`]), while it is still open.
pub(super) fn meet_if_arrived(
    tier: &mut TierResponse,
    incident_id: &str,
    grid_id: &str,
    now: Timestamp,
    fx: &dyn Effects,
) {
    let arrived = arrived_in_time(tier);
    if tier.required > 0
        && arrived >= tier.required
        && matches!(tier.state, TierState::Paging | TierState::Short | TierState::Escalated)
    {
        tier.state = TierState::Met;
        fx.emit(
            Event::new(EventKind::TierMet, now)
                .incident(incident_id, grid_id)
                .tier(tier.tier)
                .detail(format!("{arrived} of {} on scene by the deadline", tier.required)),
        );
    }
}

/// Where (tier, assignment) the active assignment of `unit_id` in `incident` is.
fn active_assignment(incident: &Incident, unit_id: &str) -> Option<(usize, usize)> {
    incident.tiers.iter().enumerate().find_map(|(ti, t)| {
        t.assignments.iter().rposition(|a| a.unit_id == unit_id && a.is_active()).map(|ai| (ti, ai))
    })
}

impl Dispatcher {
    /// An ON_SCENE report of the unit of `a` (the caller holds the incident's
    /// lock and the unit's, and has moved the unit): the assignment is
    /// ON_SCENE from `now`, verified or not by the unit's last fix, and the
    /// event says which. The caller then checks the tier's MET.
    pub(super) fn arrive(
        &self,
        a: &mut Assignment,
        unit: &Unit,
        location: LatLng,
        event: Event,
        now: Timestamp,
        fx: &dyn Effects,
    ) {
        if a.state == AssignmentState::Paged {
            a.acknowledge(now); // arriving answers the page too
        }
        a.state = AssignmentState::OnScene;
        a.on_scene_at = Some(now);
        let arrival = check_arrival(&self.config, unit, location, now);
        a.arrival_verified = arrival.is_ok();
        let (kind, detail) = match arrival {
            Ok(fix) => (
                EventKind::UnitOnScene,
                format!(
                    "arrival verified: {:.0} m from the incident, fix {} s old",
                    fix.distance_m,
                    ceil_s(fix.age_ms)
                ),
            ),
            Err(why) => (EventKind::UnitArrivalUnverified, why),
        };
        fx.emit(Event { kind, ..event.detail(detail) });
    }

    /// After a position report of `unit_id`, ON_SCENE on `incident_id`: a fix
    /// that backs its unverified arrival verifies it. Takes the incident's
    /// lock, then reads the unit (the lock order); the caller holds neither.
    pub(super) fn verify_by_fix(&self, unit_id: &str, incident_id: &str, now: Timestamp, fx: &dyn Effects) {
        let Some(seq) = parse_incident_id(incident_id) else { return };
        let Some(mut incident) = self.incidents.get_mut(&seq) else { return };
        let incident = &mut *incident;
        let fix = {
            let Some(unit) = self.units.get(unit_id) else { return };
            if unit.status != UnitStatus::OnScene || unit.incident_id.as_deref() != Some(incident_id) {
                return; // it left the scene meanwhile
            }
            check_arrival(&self.config, &unit, incident.location, now)
        };
        let Ok(fix) = fix else { return };
        let Some((ti, ai)) = active_assignment(incident, unit_id) else { return };
        let tier = &mut incident.tiers[ti];
        let a = &mut tier.assignments[ai];
        if a.state != AssignmentState::OnScene || a.arrival_verified {
            return;
        }
        a.arrival_verified = true;
        fx.emit(
            Event::new(EventKind::UnitOnScene, now)
                .incident(incident_id, &incident.grid_id)
                .unit(unit_id)
                .tier(a.tier)
                .attempt(a.attempt)
                .status(UnitStatus::OnScene)
                .detail(format!("arrival verified by a later fix: {:.0} m from the incident", fix.distance_m)),
        );
        meet_if_arrived(tier, incident_id, &incident.grid_id, now, fx);
        self.stored(incident, fx);
    }

    /// A dispatcher (`by`) confirms the unverified arrival of `unit_id` on
    /// `incident_id`: it then counts toward the tier's MET as if a fix had
    /// verified it (by the time of the ON_SCENE report). The unit's active
    /// assignment must be ON_SCENE; an arrival already verified is answered
    /// unchanged, so a retried confirmation is harmless. An empty `by` is
    /// recorded as "dispatcher", so `arrival_confirmed_by` is set exactly
    /// when a dispatcher confirmed.
    pub fn confirm_arrival(
        &self,
        incident_id: &str,
        unit_id: &str,
        by: &str,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Incident, DispatchError> {
        let seq = parse_incident_id(incident_id).ok_or_else(|| DispatchError::IncidentNotFound(incident_id.into()))?;
        let Some(mut incident) = self.incidents.get_mut(&seq) else {
            return Err(self.not_open(incident_id, ""));
        };
        let incident = &mut *incident;
        let Some((ti, ai)) = active_assignment(incident, unit_id) else {
            if !self.units.contains_key(unit_id) {
                return Err(DispatchError::UnitNotFound(unit_id.to_string()));
            }
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} is not assigned to incident {incident_id}"
            )));
        };
        let tier = &mut incident.tiers[ti];
        let a = &mut tier.assignments[ai];
        if a.state != AssignmentState::OnScene {
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} is {} on incident {incident_id}: only an ON_SCENE arrival can be confirmed",
                a.state.name()
            )));
        }
        if a.arrival_verified {
            return Ok(incident.clone());
        }
        let by = if by.is_empty() { "dispatcher" } else { by };
        a.arrival_verified = true;
        a.arrival_confirmed_by = by.to_string();
        fx.emit(
            Event::new(EventKind::ArrivalConfirmed, now)
                .incident(incident_id, &incident.grid_id)
                .unit(unit_id)
                .tier(a.tier)
                .attempt(a.attempt)
                .status(UnitStatus::OnScene)
                .detail(format!("arrival confirmed by {by}")),
        );
        meet_if_arrived(tier, incident_id, &incident.grid_id, now, fx);
        self.stored(incident, fx);
        Ok(incident.clone())
    }
}
