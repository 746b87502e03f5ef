//! Paging, acknowledgement and the per-tier escalation state machine.
//!
//! Every tier of an open incident runs two kinds of timer, armed through
//! [`Effects::arm`] and fed back through [`Dispatcher::fire`]:
//!
//! - an **acknowledgement timer** per page (`ack_timeout_s` of the tier): an
//!   unacknowledged page becomes TIMED_OUT, its unit UNRESPONSIVE, and the slot
//!   is re-paged to the next candidate by the same selection rule at the
//!   current time (attempt + 1). A decline re-pages at once. After
//!   `max_attempts` pages of one slot, or when nobody is left in reach, the
//!   tier is ESCALATED to the dispatchers.
//! - an **arrival deadline** (`reported_at + target_s`): if the tier's required
//!   units are not on scene by then it is BREACHED, and one more unit is paged
//!   from the next tier up (1 -> 3 -> 5 -> 10; tier 10 takes the nearest
//!   professional unit at any distance), never one already on the incident.
//!
//! All of it is a function of `now` and the event: no clock, no tasks. A timer
//! whose purpose is gone when it comes due (acknowledged, closed, met) does
//! nothing.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Dispatcher, Reach, read};
use crate::effects::{Effects, Event, EventKind, TimerKey};
use crate::error::DispatchError;
use crate::geodesy::{LatLng, haversine_m};
use crate::incident::{
    Assignment, AssignmentState, Incident, IncidentStatus, TierResponse, TierState, Timestamp, parse_incident_id,
};
use crate::select::{Pick, select_tier_with_offsets};
use crate::tier::Tier;
use crate::unit::{Cause, Unit, UnitStatus};

/// A terminal's answer to a page.
#[derive(Clone, Debug, PartialEq)]
pub struct Acknowledgement {
    pub unit_id: String,
    pub incident_id: String,
    pub accept: bool,
    pub reason: String,
}

impl Dispatcher {
    /// Accept: assignment ACKNOWLEDGED, unit EN_ROUTE. Decline: assignment
    /// DECLINED, unit AVAILABLE again (for other incidents, never re-paged for
    /// this one) and the slot re-paged at once. Anything but a waiting page is
    /// refused with the assignment's current state: never applied twice.
    pub fn acknowledge(&self, ack: &Acknowledgement, now: Timestamp, fx: &dyn Effects) -> Result<Unit, DispatchError> {
        let seq = parse_incident_id(&ack.incident_id)
            .ok_or_else(|| DispatchError::IncidentNotFound(ack.incident_id.clone()))?;
        let mut guard = self
            .incidents
            .get_mut(&seq)
            .ok_or_else(|| self.not_open(&ack.incident_id, &format!("; unit {} is released", ack.unit_id)))?;
        let incident = &mut *guard;
        let (ti, ai) = self.waiting_page(incident, &ack.unit_id)?;
        let a = &incident.tiers[ti].assignments[ai];
        let event = Event::new(EventKind::UnitAcknowledged, now)
            .incident(&incident.id, &incident.grid_id)
            .unit(&ack.unit_id)
            .tier(a.tier)
            .attempt(a.attempt);
        if ack.accept {
            self.accept_page(incident, (ti, ai), ack, event, now, fx)
        } else {
            let answer = self.decline_page(incident, (ti, ai), ack, event, now, fx);
            drop(guard);
            self.offer_freed(now, fx);
            answer
        }
    }

    /// Where (tier, assignment) in `incident` the page waiting for `unit_id`
    /// is. Refused with what became of its latest page when none is waiting.
    fn waiting_page(&self, incident: &Incident, unit_id: &str) -> Result<(usize, usize), DispatchError> {
        // The page waiting for this unit, wherever it is; else its latest
        // assignment, to say what became of it.
        let positions = || {
            incident.tiers.iter().enumerate().flat_map(|(ti, t)| {
                t.assignments.iter().enumerate().filter(|(_, a)| a.unit_id == unit_id).map(move |(ai, a)| (ti, ai, a))
            })
        };
        let found = positions()
            .find(|(_, _, a)| a.state == AssignmentState::Paged)
            .or_else(|| positions().max_by_key(|(_, _, a)| a.paged_at));
        let Some((ti, ai, a)) = found else {
            if !self.units.contains_key(unit_id) {
                return Err(DispatchError::UnitNotFound(unit_id.to_string()));
            }
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} was not paged for incident {}",
                incident.id
            )));
        };
        if a.state != AssignmentState::Paged {
            return Err(DispatchError::FailedPrecondition(format!(
                "the page of unit {unit_id} for incident {} is already {} (attempt {})",
                incident.id,
                a.state.name(),
                a.attempt
            )));
        }
        Ok((ti, ai))
    }

    /// Accept of the waiting page at `(ti, ai)`: assignment ACKNOWLEDGED, unit EN_ROUTE.
    fn accept_page(
        &self,
        incident: &mut Incident,
        (ti, ai): (usize, usize),
        ack: &Acknowledgement,
        event: Event,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Unit, DispatchError> {
        let mut unit =
            self.units.get_mut(ack.unit_id.as_str()).ok_or_else(|| DispatchError::UnitNotFound(ack.unit_id.clone()))?;
        debug_assert_eq!(unit.incident_id.as_deref(), Some(incident.id.as_str()));
        unit.transition(UnitStatus::EnRoute, Cause::Accepted, now)?;
        let a = &mut incident.tiers[ti].assignments[ai];
        a.state = AssignmentState::Acknowledged;
        a.acknowledge(now);
        fx.emit(event.status(UnitStatus::EnRoute));
        fx.store_unit(&unit);
        self.stored(incident, fx);
        Ok(unit.clone())
    }

    /// Decline of the waiting page at `(ti, ai)`: assignment DECLINED, unit
    /// AVAILABLE, and the slot re-paged at once.
    fn decline_page(
        &self,
        incident: &mut Incident,
        (ti, ai): (usize, usize),
        ack: &Acknowledgement,
        event: Event,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Unit, DispatchError> {
        {
            let mut unit = self
                .units
                .get_mut(ack.unit_id.as_str())
                .ok_or_else(|| DispatchError::UnitNotFound(ack.unit_id.clone()))?;
            if unit.incident_id.as_deref() == Some(incident.id.as_str()) {
                unit.transition(UnitStatus::Available, Cause::Declined, now)?;
                self.freed(&unit.id);
            }
            fx.store_unit(&unit);
        }
        // Under the incident's lock since it was found: set after the unit,
        // so a refused move (a bug) leaves both as they were.
        let a = &mut incident.tiers[ti].assignments[ai];
        a.end(AssignmentState::Declined, now);
        let (attempt, helps_another_tier) = (a.attempt, a.escalated_from.is_some());
        fx.emit(Event {
            kind: EventKind::UnitDeclined,
            ..event.status(UnitStatus::Available).detail(ack.reason.clone())
        });
        // An escalation page is a one-off help for a breached tier, not a slot.
        if !helps_another_tier {
            self.advance_slot(incident, ti, attempt, now, fx);
        }
        self.stored(incident, fx);
        self.get_unit(&ack.unit_id)
    }

    /// A timer came due.
    pub fn fire(&self, key: &TimerKey, now: Timestamp, fx: &dyn Effects) {
        self.fire_locked(key, now, fx);
        self.offer_freed(now, fx);
    }

    fn fire_locked(&self, key: &TimerKey, now: Timestamp, fx: &dyn Effects) {
        match key {
            TimerKey::Fallback { incident_seq, tier } => self.fallback_due(*incident_seq, *tier, now, fx),
            TimerKey::Ack { incident_seq, tier, unit_id, attempt } => {
                self.ack_timed_out(*incident_seq, *tier, unit_id, *attempt, now, fx)
            }
            TimerKey::Deadline { incident_seq, tier } => self.deadline_passed(*incident_seq, *tier, now, fx),
            TimerKey::Return { unit_id, since } => {
                let Some(mut unit) = self.units.get_mut(unit_id) else { return };
                if unit.status == UnitStatus::Returning
                    && unit.returning_since == Some(*since)
                    && unit.transition(UnitStatus::Available, Cause::ReturnElapsed, now).is_ok()
                {
                    self.freed(&unit.id);
                    fx.store_unit(&unit);
                    fx.emit(
                        Event::new(EventKind::UnitStatusChanged, now)
                            .unit(unit_id)
                            .status(UnitStatus::Available)
                            .detail("RETURNING -> AVAILABLE (return time elapsed)"),
                    );
                }
            }
        }
    }

    fn ack_timed_out(&self, seq: u64, tier: Tier, unit_id: &str, attempt: u32, now: Timestamp, fx: &dyn Effects) {
        let Some(mut incident) = self.incidents.get_mut(&seq) else { return };
        let incident = &mut *incident;
        if incident.status != IncidentStatus::Open {
            return;
        }
        let Some(ti) = incident.tiers.iter().position(|t| t.tier == tier) else { return };
        let Some(ai) = incident.tiers[ti]
            .assignments
            .iter()
            .position(|a| a.unit_id == unit_id && a.attempt == attempt && a.state == AssignmentState::Paged)
        else {
            return; // acknowledged, declined or released in time
        };
        // The tier was met meanwhile: its timers have stopped; withdraw the page.
        if matches!(incident.tiers[ti].state, TierState::Met | TierState::Cancelled) {
            let (id, grid_id) = (incident.id.clone(), incident.grid_id.clone());
            self.release_assignment(
                &id,
                &grid_id,
                &mut incident.tiers[ti].assignments[ai],
                now,
                "page withdrawn: tier met",
                None,
                fx,
            );
            self.stored(incident, fx);
            return;
        }
        incident.tiers[ti].assignments[ai].end(AssignmentState::TimedOut, now);
        if let Some(mut unit) = self.units.get_mut(unit_id)
            && unit.incident_id.as_deref() == Some(incident.id.as_str())
            && unit.transition(UnitStatus::Unresponsive, Cause::AckTimedOut, now).is_ok()
        {
            fx.store_unit(&unit);
        }
        fx.emit(
            Event::new(EventKind::UnitTimedOut, now)
                .incident(&incident.id, &incident.grid_id)
                .unit(unit_id)
                .tier(tier)
                .attempt(attempt)
                .status(UnitStatus::Unresponsive)
                .detail(format!("no acknowledgement within {} s", self.config.tiers.get(tier).ack_timeout_s)),
        );
        if incident.tiers[ti].assignments[ai].escalated_from.is_none() {
            self.advance_slot(incident, ti, attempt, now, fx);
        }
        self.stored(incident, fx);
    }

    /// After a timeout or decline of `attempt` in tier `ti`: re-page the next
    /// candidate, or escalate to the dispatchers.
    fn advance_slot(&self, incident: &mut Incident, ti: usize, attempt: u32, now: Timestamp, fx: &dyn Effects) {
        let tier = incident.tiers[ti].tier;
        if matches!(incident.tiers[ti].state, TierState::Met | TierState::Cancelled) {
            return;
        }
        let max_attempts = self.config.escalation.max_attempts;
        if attempt >= max_attempts {
            self.escalate_tier(
                incident,
                ti,
                format!("no acknowledgement after {attempt} page(s) (max_attempts)"),
                now,
                fx,
            );
            return;
        }
        // Beyond target allowed once due, or when the tier has no fallback
        // reach anyway (then nobody within target is final).
        let rule = self.config.tiers.get(tier);
        let fallback = now >= self.fallback_at(incident) || rule.fallback_limit_s() <= rule.target_s;
        match self.pick_slot(incident, tier, fallback, now, fx) {
            Some(pick) => self.page_slot(incident, ti, &pick, attempt + 1, "", now, fx),
            None if !fallback => {
                // Nobody within target now; the slot waits for one (or for
                // its fallback, when beyond-target units may be paged).
                let t = &mut incident.tiers[ti];
                t.note = format!(
                    "no {tier} unit within {} s to re-page: waiting (fallback beyond target from {} s after the report)",
                    t.target_s, self.config.policy.fallback_delay_s
                );
                if t.state == TierState::Paging {
                    t.state = TierState::Short;
                    fx.emit(
                        Event::new(EventKind::TierShort, now)
                            .incident(&incident.id, &incident.grid_id)
                            .tier(tier)
                            .detail(t.note.clone()),
                    );
                }
            }
            None => self.escalate_tier(
                incident,
                ti,
                format!("nobody left in reach to re-page {tier}: waiting for a unit to come free"),
                now,
                fx,
            ),
        }
    }

    fn escalate_tier(&self, incident: &mut Incident, ti: usize, why: String, now: Timestamp, fx: &dyn Effects) {
        let t = &mut incident.tiers[ti];
        if matches!(t.state, TierState::Paging | TierState::Short) {
            t.state = TierState::Escalated;
        }
        t.note = why.clone();
        fx.emit(
            Event::new(EventKind::TierEscalated, now)
                .incident(&incident.id, &incident.grid_id)
                .tier(t.tier)
                .detail(why),
        );
    }

    fn deadline_passed(&self, seq: u64, tier: Tier, now: Timestamp, fx: &dyn Effects) {
        let Some(mut incident) = self.incidents.get_mut(&seq) else { return };
        let incident = &mut *incident;
        if incident.status != IncidentStatus::Open {
            return;
        }
        let Some(ti) = incident.tiers.iter().position(|t| t.tier == tier) else { return };
        let t = &mut incident.tiers[ti];
        let on_scene = super::arrival::arrived_in_time(t);
        if !matches!(t.state, TierState::Paging | TierState::Short | TierState::Escalated) || on_scene >= t.required {
            return;
        }
        t.state = TierState::Breached;
        let required = t.required;
        fx.emit(Event::new(EventKind::TierBreached, now).incident(&incident.id, &incident.grid_id).tier(tier).detail(
            format!(
                "{on_scene} of {required} on scene at the {} s deadline{}",
                t.target_s,
                super::arrival::unverified_note(t)
            ),
        ));
        // One more unit from the next tier up; tier 10 looks beyond its fallback radius.
        let (up, unbounded) = match tier.next_up() {
            Some(up) => (up, false),
            None => (Tier::T10, true),
        };
        let reach = if unbounded { Reach::Unbounded } else { Reach::Fallback };
        let pick = self.pick_for(incident, up, up, reach, now, fx);
        let detail = match pick {
            Some(mut pick) => {
                // Paged at the lower tier's deadline: "within target" is the
                // upper tier's target counted from the report, not from now.
                let elapsed_s = ((now.unix_ms - incident.reported_at.unix_ms).max(0) / 1000) as u32;
                pick.within_target = elapsed_s.saturating_add(pick.eta_s) <= self.config.tiers.get(up).target_s;
                let ui = self.tier_slot(incident, up, now);
                let attempt = 1;
                let a = Assignment { escalated_from: Some(tier), ..self.assignment(&pick, up, now, attempt) };
                self.page_out_as(incident, &a, now, &format!("escalation: {tier} breached"), fx);
                let detail = format!("breach of {tier}: paged {} of {up} (eta {} s)", a.unit_id, a.eta_s);
                incident.tiers[ui].assignments.push(a);
                detail
            }
            None if unbounded => format!("breach of {tier}: no available {up} unit anywhere; dispatchers must act"),
            None => format!("breach of {tier}: no available {up} unit within its reach; dispatchers must act"),
        };
        fx.emit(
            Event::new(EventKind::TierEscalated, now)
                .incident(&incident.id, &incident.grid_id)
                .tier(tier)
                .detail(detail),
        );
        self.stored(incident, fx);
    }

    /// The index of `tier` in the incident's tiers, added (required 0) if the
    /// response plan did not ask for it.
    fn tier_slot(&self, incident: &mut Incident, tier: Tier, now: Timestamp) -> usize {
        if let Some(i) = incident.tiers.iter().position(|t| t.tier == tier) {
            return i;
        }
        let params = self.config.tiers.get(tier);
        incident.tiers.push(TierResponse {
            tier,
            target_s: params.target_s,
            required: 0,
            state: TierState::Paging,
            deadline: incident.reported_at.plus_s(params.target_s),
            assignments: Vec::new(),
            note: format!("added at {} ms by escalation or dispatcher", now.unix_ms),
        });
        incident.tiers.sort_by_key(|t| t.tier);
        incident.tiers.iter().position(|t| t.tier == tier).expect("just added")
    }

    /// Selects and reserves one unit of `unit_tier` for the incident, by the
    /// rule of `rule_tier` as far as `reach` goes, with the capabilities the
    /// incident's kind asks of `unit_tier`, skipping every unit that already
    /// has an assignment in the incident.
    pub(super) fn pick_for(
        &self,
        incident: &Incident,
        rule_tier: Tier,
        unit_tier: Tier,
        reach: Reach,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Option<Pick> {
        let tried: HashSet<&str> =
            incident.tiers.iter().flat_map(|t| &t.assignments).map(|a| a.unit_id.as_str()).collect();
        let required = self.config.required_capabilities(incident.kind, unit_tier);
        let mut take =
            |id: &Arc<str>| !tried.contains(&**id) && self.try_reserve_capable(id, &incident.id, required, now, fx);
        let index = read(&self.index[unit_tier.index()]);
        let (mut params, offsets) = (self.travel(rule_tier), self.unit_offsets(unit_tier));
        match reach {
            Reach::Target => params.fallback_factor = 1.0,
            Reach::Fallback => {}
            Reach::Unbounded => {
                return index.nearest(incident.location, f64::INFINITY).find(|n| take(&n.unit_id)).map(|n| {
                    let eta_s = offsets.eta_s(&params, &n.unit_id, n.distance_m);
                    Pick {
                        unit_id: n.unit_id,
                        distance_m: n.distance_m,
                        eta_s,
                        within_target: eta_s <= params.target_s,
                    }
                });
            }
        }
        select_tier_with_offsets(&index, &params, &offsets, incident.location, 1, &mut take).pop()
    }

    /// A new page of `pick` for `tier` at `now`: PAGED, nothing answered yet.
    pub(super) fn assignment(&self, pick: &Pick, tier: Tier, now: Timestamp, attempt: u32) -> Assignment {
        Assignment {
            unit_id: pick.unit_id.to_string(),
            unit_name: self.units.get(&pick.unit_id).map(|u| u.name.clone()).unwrap_or_default(),
            tier,
            distance_m: pick.distance_m,
            eta_s: pick.eta_s,
            within_target: pick.within_target,
            state: AssignmentState::Paged,
            paged_at: now,
            attempt,
            escalated_from: None,
            acknowledged_at: None,
            on_scene_at: None,
            released_at: None,
            arrival_verified: false,
            arrival_confirmed_by: String::new(),
        }
    }

    /// Dispatcher override: page a chosen unit for a chosen tier of an open
    /// incident (added to the incident if its plan had no such tier). The unit
    /// must be dispatchable and not already on the incident.
    pub fn assign_unit(
        &self,
        incident_id: &str,
        unit_id: &str,
        tier: Tier,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Incident, DispatchError> {
        let seq = parse_incident_id(incident_id).ok_or_else(|| DispatchError::IncidentNotFound(incident_id.into()))?;
        let mut incident = self.incidents.get_mut(&seq).ok_or_else(|| self.not_open(incident_id, ""))?;
        let incident = &mut *incident;
        let unit = self.get_unit(unit_id)?;
        if incident.tiers.iter().flat_map(|t| &t.assignments).any(|a| a.unit_id == unit_id && a.is_active()) {
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} is already on incident {incident_id}"
            )));
        }
        let unit_key: Arc<str> = unit.id.clone();
        if !self.try_reserve(&unit_key, &incident.id, now, fx) {
            let now_unit = self.get_unit(unit_id)?;
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} is {}{}: only an available unit can be assigned",
                now_unit.status,
                now_unit.incident_id.map(|i| format!(" for incident {i}")).unwrap_or_default()
            )));
        }
        let position = self.get_unit(unit_id).map(|u| u.position).unwrap_or(unit.position);
        let pick = self.pick_at(&unit_key, position, unit.tier, tier, incident.location);
        let ti = self.tier_slot(incident, tier, now);
        // A dispatcher's assignment opens a new slot: its first attempt.
        let a = self.assignment(&pick, tier, now, 1);
        self.page_out_as(incident, &a, now, "assigned by dispatcher", fx);
        incident.tiers[ti].assignments.push(a);
        self.stored(incident, fx);
        Ok(incident.clone())
    }

    pub(super) fn pick_at(
        &self,
        unit_id: &Arc<str>,
        position: LatLng,
        unit_tier: Tier,
        slot_tier: Tier,
        at: LatLng,
    ) -> Pick {
        let distance_m = haversine_m(position, at);
        let eta_s = self.unit_offsets(unit_tier).eta_s(&self.travel(unit_tier), unit_id, distance_m);
        Pick {
            unit_id: unit_id.clone(),
            distance_m,
            eta_s,
            within_target: eta_s <= self.config.tiers.get(slot_tier).target_s,
        }
    }

    /// Dispatcher override: release a unit from its incident (PAGED ->
    /// AVAILABLE, EN_ROUTE/ON_SCENE -> RETURNING). Its slot is not re-paged
    /// at once: it waits in the queue (SHORT), and the next unit that comes
    /// free and can fill it does (or a dispatcher's AssignUnit).
    pub fn release_unit(
        &self,
        unit_id: &str,
        reason: &str,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Unit, DispatchError> {
        let unit = self.get_unit(unit_id)?;
        let Some(incident_id) = unit.incident_id.clone() else {
            return Err(DispatchError::FailedPrecondition(format!(
                "unit {unit_id} is {} with no incident",
                unit.status
            )));
        };
        let seq = parse_incident_id(&incident_id).expect("units hold well-formed incident ids");
        let mut guard = self.incidents.get_mut(&seq).ok_or_else(|| {
            DispatchError::Contended(format!("unit {unit_id}'s incident {incident_id} is still being dispatched"))
        })?;
        let incident = &mut *guard;
        let Some((ti, ai)) = incident.tiers.iter().enumerate().find_map(|(ti, t)| {
            t.assignments.iter().rposition(|a| a.unit_id == unit_id && a.is_active()).map(|ai| (ti, ai))
        }) else {
            return Err(DispatchError::Contended(format!("unit {unit_id} changed while being released")));
        };
        let why = if reason.is_empty() {
            "released by dispatcher".to_string()
        } else {
            format!("released by dispatcher: {reason}")
        };
        let grid_id = incident.grid_id.clone();
        self.release_assignment(&incident_id, &grid_id, &mut incident.tiers[ti].assignments[ai], now, &why, None, fx);
        // Its slot waits in the queue like any other short slot.
        self.mark_waiting(incident, ti, now, fx);
        self.stored(incident, fx);
        drop(guard);
        self.offer_freed(now, fx);
        self.get_unit(unit_id)
    }

    /// An AVL position report measured at `measured_at`. Older than the last
    /// applied one: ignored (returns false). The unit moves in its tier's index
    /// (a short write lock). Feed events are rate-limited per unit. A fix of a
    /// unit ON_SCENE with an unverified arrival may verify it (see `arrival`).
    pub fn report_position(
        &self,
        unit_id: &str,
        position: LatLng,
        measured_at: Timestamp,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<bool, DispatchError> {
        let tier = self.unit_tier(unit_id).ok_or_else(|| DispatchError::UnitNotFound(unit_id.into()))?;
        let mut index = super::write(&self.index[tier.index()]);
        let mut unit = self.units.get_mut(unit_id).ok_or_else(|| DispatchError::UnitNotFound(unit_id.into()))?;
        if unit.tier != tier {
            return Err(DispatchError::Contended(format!("unit {unit_id} changed tier during a position report")));
        }
        if unit.position_at.is_some_and(|last| measured_at <= last) {
            return Ok(false);
        }
        if unit.position != position {
            let removed = index.remove(&unit.id, unit.position);
            debug_assert!(removed, "unit {unit_id} missing from its index");
            index.insert(unit.id.clone(), position);
            unit.position = position;
        }
        drop(index);
        unit.position_at = Some(measured_at);
        if unit.status == UnitStatus::Unresponsive
            && unit.transition(UnitStatus::Available, Cause::Recovered, now).is_ok()
        {
            self.queues.count(super::queue::Decision::Recovery);
            fx.emit(
                Event::new(EventKind::UnitStatusChanged, now)
                    .unit(unit_id)
                    .status(UnitStatus::Available)
                    .detail("UNRESPONSIVE -> AVAILABLE (recovered: its terminal reported a position)"),
            );
        }
        // A free unit that moved may now reach a waiting slot.
        if self.dispatchable(unit.status) && self.queues.waiting(tier) > 0 {
            self.freed(&unit.id);
        }
        fx.store_unit(&unit);
        let interval_ms = self.config.escalation.position_event_interval_s as i64 * 1000;
        if unit.position_event_at.is_none_or(|last| now.unix_ms - last.unix_ms >= interval_ms) {
            unit.position_event_at = Some(now);
            fx.emit(Event::new(EventKind::UnitPosition, now).unit(unit_id).status(unit.status).position(position));
        }
        let on_scene_of = unit.incident_id.clone().filter(|_| unit.status == UnitStatus::OnScene);
        drop(unit);
        // The fix may verify the unit's arrival: under the incident's lock,
        // taken now that the unit's is released (incident before unit).
        if let Some(incident_id) = on_scene_of {
            self.verify_by_fix(unit_id, &incident_id, now, fx);
        }
        self.offer_freed(now, fx);
        Ok(true)
    }
}
