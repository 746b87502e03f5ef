//! The concurrent dispatch state: units, their spatial index, incidents and
//! reservations.
//!
//! # Concurrency
//!
//! There is no global lock. Many incidents are dispatched at once, each on the
//! caller's thread:
//!
//! - each tier's R-tree sits behind its own `RwLock`; selections share it for
//!   reading, only adding or moving a unit writes;
//! - each unit's record sits in a `DashMap` shard; reserving a unit is a
//!   compare-and-set AVAILABLE -> PAGED under that shard's lock, so when two
//!   incidents race for a unit exactly one gets it and the other walks on to its
//!   next candidate;
//! - the idempotency index (`external_id` -> incident) holds the entry for an
//!   `external_id` while that incident is dispatched, so a retried report can
//!   never dispatch twice;
//! - the incident map holds open incidents only; a closed incident moves to
//!   a bounded cache of the recently closed behind one `Mutex` (see
//!   `closed`), and its idempotency entry lives as long as it is cached.
//!
//! The four tiers of one incident are selected one after the other on the
//! caller's thread: each takes a few microseconds, less than handing work to
//! another thread costs (see `benches/selection.rs`, `tiers_parallel`), while
//! different incidents proceed in parallel on every core.
//!
//! Lock order (never taken in reverse, so no deadlock): external-id entry ->
//! incident entry -> tier index -> unit entry -> recent-closed cache. No unit
//! entry is held while another lock is acquired, except the cache's, and
//! nothing is acquired while the cache's is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::area::{Located, ServiceArea};
use crate::config::DispatchConfig;
use crate::effects::{Effects, Event, EventKind, PageOrder, Timer, TimerKey};
use crate::error::DispatchError;
use crate::geodesy::LatLng;
use crate::incident::{
    Assignment, AssignmentState, Incident, IncidentKind, IncidentStatus, TierResponse, TierState, Timestamp,
    check_severity, incident_id_for, parse_incident_id,
};
use crate::index::TierIndex;
use crate::select::{Pick, UnitOffsets, select_tier_with_offsets};
use crate::tier::{Applies, Tier, TierParams};
use crate::unit::{Cause, Unit, UnitStatus, check_transition, check_unit_id};

/// Bounds of the in-memory state.
///
/// Closed incidents leave the live state: only open ones count toward
/// `max_incidents`, so a dispatcher that closes what it reports never runs
/// out. The `recent_closed_incidents` most recently closed stay in memory, to
/// answer reads and, above all, retried reports: a report repeating the
/// `external_id` of one of them is answered with it (`duplicate: true`, as for
/// an open one); once it has dropped out of the cache (that many closes
/// later), the same `external_id` reports a new incident. Older closed
/// incidents are the store's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatcherLimits {
    /// Most OPEN incidents at once. A report beyond it is refused with
    /// `CapacityExhausted` rather than growing without bound.
    pub max_incidents: usize,
    /// Most units held; `UpsertUnit` beyond it is refused.
    pub max_units: usize,
    /// Closed incidents kept in memory (the idempotency window of closed
    /// incidents); the oldest closed drops out when one more closes.
    pub recent_closed_incidents: usize,
}

impl Default for DispatcherLimits {
    fn default() -> Self {
        DispatcherLimits { max_incidents: 1_000_000, max_units: 1_000_000, recent_closed_incidents: 10_000 }
    }
}

/// What a restore found besides the state itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restored {
    /// References between units and incidents repaired (see
    /// [`Dispatcher::reconcile`]).
    pub repaired: usize,
    /// CLOSED incidents found among the open ones: a journal written before
    /// closed incidents left the live state. They are in the recent-closed
    /// cache (as far as it holds them); the server archives them.
    pub closed_found_live: Vec<Incident>,
}

/// A report, validated by the caller's boundary (strings bounded, location
/// parsed); the dispatcher checks what it owns (severity, external id).
#[derive(Clone, Debug, PartialEq)]
pub struct NewIncident {
    pub external_id: String,
    pub location: LatLng,
    pub kind: IncidentKind,
    pub severity: u8,
    pub address: String,
    pub description: String,
    /// The grid cell the caller says the location is in; empty = not said.
    /// Checked, not trusted: it must be the cell the location is in.
    pub grid_id: String,
}

/// The answer to a report: the incident, or the caller's view of it (see
/// [`Dispatcher::report_with`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Reported<T = Incident> {
    pub incident: T,
    /// The `external_id` was seen before: this is the stored incident, and
    /// nothing was dispatched.
    pub duplicate: bool,
}

/// A unit a dispatcher could assign, with its ETA to the incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub unit: Unit,
    pub distance_m: f64,
    pub eta_s: u32,
    pub within_target: bool,
}

/// How far [`Dispatcher::candidates`] looks: farther than any district.
const CANDIDATE_REACH_M: f64 = 200_000.0;

/// What a report would select now.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub tiers: Vec<TierResponse>,
    pub located: crate::area::Located,
    /// Units the rule walked past before its picks (nearest first, at most
    /// [`MAX_PASSED_OVER`] per tier), with why: busy, out of service, or
    /// lacking a capability the incident's kind requires.
    pub passed_over: Vec<PassedOver>,
}

/// A unit selection passed over (see [`Preview::passed_over`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PassedOver {
    pub tier: Tier,
    pub unit_id: String,
    pub unit_name: String,
    pub distance_m: f64,
    pub reason: String,
}

/// Passed-over units a preview lists per tier, at most.
pub const MAX_PASSED_OVER: usize = 8;

/// How far a pick for one slot may look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Within the tier's target only.
    Target,
    /// Within the fallback reach (`fallback_factor * target_s`).
    Fallback,
    /// Anywhere (tier 10's escalation).
    Unbounded,
}

/// One page of a listing, with the token for the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitFilter {
    pub tier: Option<Tier>,
    pub status: Option<UnitStatus>,
    pub town: Option<String>,
}

pub struct Dispatcher {
    config: DispatchConfig,
    area: ServiceArea,
    limits: DispatcherLimits,
    units: DashMap<Arc<str>, Unit>,
    /// One R-tree per tier, indexed by `Tier::index()`.
    index: [RwLock<TierIndex>; 4],
    /// Each tier's travel model as selection uses it: the configured
    /// parameters until the ETA calibration replaces their travel part
    /// (turnout, speed, circuity; target, fallback and ack timeout stay).
    travel: RwLock<[TierParams; 4]>,
    /// Per tier, the units' own ETA offsets (learnt; empty until then).
    unit_offsets: RwLock<[Arc<UnitOffsets>; 4]>,
    /// Open incidents (and, for the instant of its close, a closing one).
    incidents: DashMap<u64, Incident>,
    /// The recently closed incidents, bounded (see `closed`).
    closed: Mutex<closed::RecentClosed>,
    /// `external_id` -> seq of an open or cached closed incident.
    external_ids: DashMap<String, u64>,
    last_seq: AtomicU64,
    /// The waiting queue of open slots, per tier (see `queue`).
    queues: queue::Queues,
}

fn read(lock: &RwLock<TierIndex>) -> RwLockReadGuard<'_, TierIndex> {
    // A poisoned lock means a panic elsewhere; the tree itself is still whole
    // (rstar does not leave it half-updated on a panic in our code).
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(lock: &RwLock<TierIndex>) -> RwLockWriteGuard<'_, TierIndex> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const SHARDS: usize = 64;

impl Dispatcher {
    pub fn new(
        config: DispatchConfig,
        area: ServiceArea,
        units: Vec<Unit>,
        limits: DispatcherLimits,
    ) -> Result<Self, DispatchError> {
        config.validate().map_err(|e| DispatchError::invalid(e.key, e.problem))?;
        if units.len() > limits.max_units {
            return Err(DispatchError::CapacityExhausted {
                what: "unit table",
                limit_name: "max_units",
                limit: limits.max_units,
            });
        }
        let map = DashMap::with_capacity_and_shard_amount(units.len(), SHARDS);
        let mut per_tier: [Vec<(Arc<str>, LatLng)>; 4] = Default::default();
        for unit in units {
            check_unit_id(&unit.id).map_err(|e| DispatchError::invalid(format!("unit {}", unit.id), e))?;
            per_tier[unit.tier.index()].push((unit.id.clone(), unit.position));
            if map.insert(unit.id.clone(), unit).is_some() {
                return Err(DispatchError::invalid("units", "duplicate unit id"));
            }
        }
        let index = per_tier.map(|units| RwLock::new(TierIndex::bulk_load(units)));
        let travel = RwLock::new(Tier::ALL.map(|t| *config.tiers.get(t)));
        Ok(Dispatcher {
            travel,
            unit_offsets: RwLock::new(Default::default()),
            config,
            area,
            limits,
            units: map,
            index,
            incidents: DashMap::with_shard_amount(SHARDS),
            closed: Mutex::new(closed::RecentClosed::new(limits.recent_closed_incidents)),
            external_ids: DashMap::with_shard_amount(SHARDS),
            last_seq: AtomicU64::new(0),
            queues: queue::Queues::default(),
        })
    }

    /// Rebuilds a dispatcher from what a journal held: the dataset's units,
    /// each replaced by its stored state where there is one, the open
    /// incidents (live) and the recently closed ones (oldest first, the
    /// cache), with their idempotency keys and the incident sequence. A
    /// CLOSED incident among `open_incidents` (a journal written before
    /// closed incidents left the live state) is cached instead and reported
    /// in [`Restored::closed_found_live`].
    // Eight arguments: the parts of a journal and what to load them into.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        config: DispatchConfig,
        area: ServiceArea,
        dataset_units: Vec<Unit>,
        stored_units: Vec<Unit>,
        open_incidents: Vec<Incident>,
        recent_closed: Vec<Incident>,
        limits: DispatcherLimits,
        now: Timestamp,
    ) -> Result<(Self, Restored), DispatchError> {
        let mut units: std::collections::BTreeMap<Arc<str>, Unit> =
            dataset_units.into_iter().map(|u| (u.id.clone(), u)).collect();
        for unit in stored_units {
            units.insert(unit.id.clone(), unit);
        }
        let dispatcher = Dispatcher::new(config, area, units.into_values().collect(), limits)?;
        let closed_found_live = dispatcher.load_incidents(open_incidents, recent_closed)?;
        let repaired = dispatcher.reconcile(now);
        // The waiting queue is not journaled: it is what the open incidents'
        // slots say, rebuilt here (their fallback timers are re-armed by
        // `timers_to_rearm`).
        for incident in dispatcher.incidents.iter() {
            dispatcher.sync_waiting(&incident);
        }
        Ok((dispatcher, Restored { repaired, closed_found_live }))
    }

    /// Makes units and incidents agree after a restore; returns how many
    /// references were repaired.
    ///
    /// Each operation is stored all-or-nothing, but a later operation may have
    /// copied a unit whose change by an earlier operation was not yet durable
    /// (say a position report on a unit just reserved by a report), and commit
    /// first. After a crash in between, the journal holds a unit pointing at
    /// an incident that was never stored, or an incident holding a unit whose
    /// stored state has moved on. Neither change was ever answered OK, so the
    /// repair sides with what was: a unit whose incident does not hold it is
    /// freed (AVAILABLE, or RETURNING if it had left), and an assignment whose
    /// unit is no longer its own is RELEASED. Only open incidents hold units:
    /// a unit pointing at a closed one (cached or not) is freed too.
    pub fn reconcile(&self, now: Timestamp) -> usize {
        let mut repaired = 0;
        for mut unit in self.units.iter_mut() {
            let Some(incident_id) = unit.incident_id.clone() else { continue };
            let held = parse_incident_id(&incident_id).and_then(|seq| self.incidents.get(&seq)).is_some_and(|i| {
                i.status == IncidentStatus::Open
                    && i.tiers.iter().flat_map(|t| &t.assignments).any(|a| a.unit_id == *unit.id && a.is_active())
            });
            if !held || !unit.status.is_assigned() {
                let to = match unit.status {
                    // RETURNING since now, so its return timer is re-armed.
                    UnitStatus::EnRoute | UnitStatus::OnScene => UnitStatus::Returning,
                    UnitStatus::Paged => UnitStatus::Available,
                    other => other, // keeps its status, drops the reference
                };
                if unit.transition(to, Cause::Repaired, now).is_ok() {
                    repaired += 1;
                }
            }
        }
        for mut incident in self.incidents.iter_mut() {
            let id = incident.id.clone();
            for a in incident.tiers.iter_mut().flat_map(|t| t.assignments.iter_mut()) {
                if a.is_active()
                    && self.units.get(a.unit_id.as_str()).is_none_or(|u| u.incident_id.as_deref() != Some(id.as_str()))
                {
                    a.end(AssignmentState::Released, now);
                    repaired += 1;
                }
            }
        }
        repaired
    }

    /// Every timer the current state needs, earliest first: the deadline of
    /// each open tier, the acknowledgement timer of each waiting page, the
    /// return timer of each RETURNING unit. For re-arming after a restart.
    pub fn timers_to_rearm(&self) -> Vec<Timer> {
        let mut timers = Vec::new();
        for incident in self.incidents.iter().filter(|i| i.status == IncidentStatus::Open) {
            for tier in &incident.tiers {
                if matches!(tier.state, TierState::Paging | TierState::Short | TierState::Escalated) {
                    timers.push(Timer {
                        at: tier.deadline,
                        key: TimerKey::Deadline { incident_seq: incident.seq, tier: tier.tier },
                    });
                }
                timers.extend(self.fallback_timer(&incident, tier));
                for a in tier.assignments.iter().filter(|a| a.state == AssignmentState::Paged) {
                    timers.push(Timer {
                        at: a.paged_at.plus_s(self.config.tiers.get(a.tier).ack_timeout_s),
                        key: TimerKey::Ack {
                            incident_seq: incident.seq,
                            tier: a.tier,
                            unit_id: Arc::from(a.unit_id.as_str()),
                            attempt: a.attempt,
                        },
                    });
                }
            }
        }
        for unit in self.units.iter() {
            if let (UnitStatus::Returning, Some(since)) = (unit.status, unit.returning_since) {
                timers.push(Timer {
                    at: since.plus_s(self.config.escalation.return_to_available_s),
                    key: TimerKey::Return { unit_id: unit.id.clone(), since },
                });
            }
        }
        timers.sort_by_key(|t| t.at);
        timers
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    /// Reports an incident: selects and reserves, for every tier of the response
    /// plan, the units that can meet the tier's target, and notifies the grid
    /// worker of the cell it is in. Idempotent by `external_id`. A `grid_id`
    /// the caller gives must be the cell the location is in (checked before
    /// the idempotency look-up, like every other field: a retry that
    /// contradicts itself is refused, not answered from the stored incident).
    pub fn report(&self, new: NewIncident, now: Timestamp, fx: &dyn Effects) -> Result<Reported, DispatchError> {
        self.report_with(new, now, fx, Incident::clone)
    }

    /// [`Dispatcher::report`], answering with `view` of the stored incident,
    /// taken under its lock: a caller that converts the incident (the gRPC
    /// answer) does it straight from the stored one, without a whole copy
    /// in between (the copy showed in the profile of the report path).
    pub fn report_with<T>(
        &self,
        new: NewIncident,
        now: Timestamp,
        fx: &dyn Effects,
        view: impl FnOnce(&Incident) -> T,
    ) -> Result<Reported<T>, DispatchError> {
        if new.external_id.is_empty() {
            return Err(DispatchError::invalid("external_id", "must not be empty"));
        }
        check_severity(new.severity.into())?;
        let located = self.check_grid_claim(&new.grid_id, new.location)?;
        let answer = self.report_keyed(new, located, now, fx, view);
        // Pre-emption may have freed a unit it could not re-reserve.
        self.offer_freed(now, fx);
        answer
    }

    /// [`Dispatcher::report_with`] under the external id's entry.
    fn report_keyed<T>(
        &self,
        new: NewIncident,
        located: Located,
        now: Timestamp,
        fx: &dyn Effects,
        view: impl FnOnce(&Incident) -> T,
    ) -> Result<Reported<T>, DispatchError> {
        match self.external_ids.entry(new.external_id.clone()) {
            Entry::Occupied(mut seen) => match self.with_incident(*seen.get(), view) {
                Ok(incident) => Ok(Reported { incident, duplicate: true }),
                // It names a closed incident that has just dropped out of the
                // recent-closed cache (the entry is about to be forgotten): a
                // report of it now is a new incident, as it will be then.
                Err(view) => {
                    let (seq, incident) = self.dispatch_report(new, located, now, fx, view)?;
                    seen.insert(seq);
                    Ok(Reported { incident, duplicate: false })
                }
            },
            Entry::Vacant(slot) => {
                let (seq, incident) = self.dispatch_report(new, located, now, fx, view)?;
                slot.insert(seq);
                Ok(Reported { incident, duplicate: false })
            }
        }
    }

    /// Dispatches a new incident (the caller holds its external id's entry,
    /// and records the sequence there): refused when `max_incidents` are open.
    fn dispatch_report<T>(
        &self,
        new: NewIncident,
        located: Located,
        now: Timestamp,
        fx: &dyn Effects,
        view: impl FnOnce(&Incident) -> T,
    ) -> Result<(u64, T), DispatchError> {
        if self.incidents.len() >= self.limits.max_incidents {
            return Err(DispatchError::CapacityExhausted {
                what: "open incident table",
                limit_name: "max_incidents",
                limit: self.limits.max_incidents,
            });
        }
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (incident, taken) = self.dispatch_new(seq, new, located, now, fx);
        // Inserted, then announced under the incident's lock: nothing
        // (a timer, an acknowledgement) can act on it before its report
        // event is out.
        let entry = self.incidents.entry(seq).insert(incident);
        self.announce_new(&entry, &taken, now, fx);
        self.stored(&entry, fx);
        Ok((seq, view(&entry)))
    }

    /// A caller's `grid_id` against the cell the location is in: empty is
    /// fine; anything else must be that cell.
    /// Where the report falls: its grid cell by point in polygon, or the
    /// caller's `claimed` cell when that one holds the point too (on a shared
    /// edge). A claim of a cell that does not hold the point is refused.
    fn check_grid_claim(&self, claimed: &str, at: LatLng) -> Result<Located, DispatchError> {
        let located = self.area.locate(at);
        if claimed.is_empty() || claimed == located.grid_id {
            return Ok(located);
        }
        if let Some(in_claimed) = self.area.locate_in_claimed(at, claimed) {
            return Ok(in_claimed);
        }
        let actual = if located.grid_id.is_empty() {
            "the location is in no grid cell".to_string()
        } else {
            format!("the location is in grid cell {}", located.grid_id)
        };
        Err(DispatchError::invalid(
            "grid_id",
            if self.area.grid().get(claimed).is_some() {
                format!("{actual}, not {claimed}")
            } else {
                format!("unknown grid cell {claimed:?}; {actual}")
            },
        ))
    }

    /// The new incident, and why each unit pre-emption took was paged.
    fn dispatch_new(
        &self,
        seq: u64,
        new: NewIncident,
        located: Located,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> (Incident, Vec<(String, String)>) {
        let id = incident_id_for(seq);
        let tiers = self.respond(new.location, new.kind, new.severity, now, |unit_id, required| {
            self.try_reserve_capable(unit_id, &id, required, now, fx)
        });
        let mut incident = Incident {
            seq,
            id,
            external_id: new.external_id,
            location: new.location,
            kind: new.kind,
            severity: new.severity,
            reported_at: now,
            status: IncidentStatus::Open,
            tiers,
            town: located.town,
            village: located.village,
            address: new.address,
            description: new.description,
            outside_service_area: located.outside_service_area,
            closed_at: None,
            grid_id: located.grid_id,
            grid_worker: located.grid_worker,
        };
        let taken = self.preempt_for(&mut incident, now, fx);
        (incident, taken)
    }

    /// Selects every tier of the plan for `kind`/`severity` at `at`, offering
    /// each candidate to `take` with the capabilities the tier's units need
    /// for `kind`. With a fallback delay, only units within target are
    /// offered (the rest wait: see `queue`); a tier that applies only where
    /// its units are stationed, and has none within its target, is
    /// NOT_APPLICABLE.
    fn respond(
        &self,
        at: LatLng,
        kind: IncidentKind,
        severity: u8,
        now: Timestamp,
        mut take: impl FnMut(&Arc<str>, &[String]) -> bool,
    ) -> Vec<TierResponse> {
        let counts = self.config.response_plan.counts_for(kind, severity);
        let deferred = self.config.policy.fallback_delay_s > 0;
        Tier::ALL
            .into_iter()
            .filter(|tier| counts.get(*tier) > 0)
            .map(|tier| {
                let (mut params, offsets) = (self.travel(tier), self.unit_offsets(tier));
                let required = counts.get(tier);
                let index = read(&self.index[tier.index()]);
                if params.applies == Applies::WhereStationed && !stationed_within_target(&index, &params, &offsets, at)
                {
                    return self.not_applicable(tier, required, now);
                }
                if deferred {
                    params.fallback_factor = 1.0;
                }
                let capabilities = self.config.required_capabilities(kind, tier);
                let picks =
                    select_tier_with_offsets(&index, &params, &offsets, at, required, |id| take(id, capabilities));
                self.tier_response(tier, required, picks, deferred, now)
            })
            .collect()
    }

    /// A tier that does not apply to the incident (see [`Applies`]).
    fn not_applicable(&self, tier: Tier, asked: u32, now: Timestamp) -> TierResponse {
        let params = self.config.tiers.get(tier);
        TierResponse {
            tier,
            target_s: params.target_s,
            required: 0,
            state: TierState::NotApplicable,
            deadline: now.plus_s(params.target_s),
            assignments: Vec::new(),
            note: format!(
                "not applicable: no {tier} unit is stationed within {} s of the location (the plan asked for {asked})",
                params.target_s
            ),
        }
    }

    /// Events, pages and timers of a freshly dispatched incident.
    /// `taken`: why each unit pre-emption took is paged.
    fn announce_new(&self, incident: &Incident, taken: &[(String, String)], now: Timestamp, fx: &dyn Effects) {
        fx.emit(
            Event::new(EventKind::IncidentReported, now)
                .incident(&incident.id, &incident.grid_id)
                .position(incident.location)
                .detail(format!(
                    "{:?} severity {} {} {}",
                    incident.kind, incident.severity, incident.town, incident.village
                )),
        );
        if let Some(worker) = &incident.grid_worker {
            fx.emit(Event {
                grid_worker: Some(worker.clone()),
                ..Event::new(EventKind::GridWorkerNotified, now)
                    .incident(&incident.id, &incident.grid_id)
                    .position(incident.location)
                    .detail(format!(
                        "grid worker {} ({}) of grid cell {}",
                        worker.name, worker.contact, incident.grid_id
                    ))
            });
        }
        for tier in &incident.tiers {
            if tier.state == TierState::NotApplicable {
                continue;
            }
            for a in &tier.assignments {
                let why = taken.iter().find(|(u, _)| *u == a.unit_id).map_or("", |(_, why)| why.as_str());
                self.page_out_as(incident, a, now, why, fx);
            }
            if let Some(timer) = self.fallback_timer(incident, tier) {
                fx.arm(timer);
            }
            if tier.state == TierState::Short {
                fx.emit(
                    Event::new(EventKind::TierShort, now)
                        .incident(&incident.id, &incident.grid_id)
                        .tier(tier.tier)
                        .detail(tier.note.clone()),
                );
            }
            fx.arm(Timer {
                at: tier.deadline,
                key: TimerKey::Deadline { incident_seq: incident.seq, tier: tier.tier },
            });
        }
    }

    /// Sends a page for `a` and arms its acknowledgement timer, saying why
    /// in the event (empty: selection at report).
    pub(crate) fn page_out_as(&self, incident: &Incident, a: &Assignment, now: Timestamp, why: &str, fx: &dyn Effects) {
        let deadline =
            incident.tiers.iter().find(|t| t.tier == a.tier).map(|t| t.deadline).unwrap_or(incident.reported_at);
        fx.page(self.page_order(incident, a, deadline));
        let kind = if a.attempt > 1 { EventKind::UnitRepaged } else { EventKind::UnitPaged };
        fx.emit(
            Event::new(kind, now)
                .incident(&incident.id, &incident.grid_id)
                .unit(&a.unit_id)
                .tier(a.tier)
                .attempt(a.attempt)
                .status(UnitStatus::Paged)
                .detail(format!(
                    "eta {} s, {:.0} m{}{}{why}",
                    a.eta_s,
                    a.distance_m,
                    if a.within_target { "" } else { ", beyond target" },
                    if why.is_empty() { "" } else { "; " },
                )),
        );
        let ack_timeout_s = self.config.tiers.get(a.tier).ack_timeout_s;
        fx.arm(Timer {
            at: a.paged_at.plus_s(ack_timeout_s),
            key: TimerKey::Ack {
                incident_seq: incident.seq,
                tier: a.tier,
                unit_id: Arc::from(a.unit_id.as_str()),
                attempt: a.attempt,
            },
        });
    }

    fn page_order(&self, incident: &Incident, a: &Assignment, deadline: Timestamp) -> PageOrder {
        PageOrder {
            unit_id: a.unit_id.clone(),
            incident_id: incident.id.clone(),
            kind: incident.kind,
            severity: incident.severity,
            location: incident.location,
            address: incident.address.clone(),
            description: incident.description.clone(),
            tier: a.tier,
            eta_s: a.eta_s,
            distance_m: a.distance_m,
            deadline,
            paged_at: a.paged_at,
            attempt: a.attempt,
        }
    }

    /// The page still waiting for a unit (PAGED, not yet acknowledged), for a
    /// terminal that (re)connects.
    pub fn pending_page(&self, unit_id: &str) -> Option<PageOrder> {
        self.with_pending(unit_id, |incident, tier, a| self.page_order(incident, a, tier.deadline))
    }

    /// When the page `unit_id` is waiting to answer for `incident_id` was
    /// sent (where its acknowledgement latency starts); `None` if it has none.
    pub fn pending_page_sent_at(&self, unit_id: &str, incident_id: &str) -> Option<Timestamp> {
        self.with_pending(unit_id, |incident, _, a| (incident.id == incident_id).then_some(a.paged_at)).flatten()
    }

    /// `f` of the incident, tier and assignment of the page `unit_id` is
    /// waiting to answer, read under the incident's lock.
    fn with_pending<T>(&self, unit_id: &str, f: impl FnOnce(&Incident, &TierResponse, &Assignment) -> T) -> Option<T> {
        let incident_id = self.units.get(unit_id).filter(|u| u.status == UnitStatus::Paged)?.incident_id.clone()?;
        let incident = self.incidents.get(&parse_incident_id(&incident_id)?)?;
        let tier = incident
            .tiers
            .iter()
            .find(|t| t.assignments.iter().any(|a| a.unit_id == unit_id && a.state == AssignmentState::Paged))?;
        let a = tier.assignments.iter().rev().find(|a| a.unit_id == unit_id && a.state == AssignmentState::Paged)?;
        Some(f(&incident, tier, a))
    }

    fn tier_response(
        &self,
        tier: Tier,
        required: u32,
        picks: Vec<Pick>,
        deferred: bool,
        now: Timestamp,
    ) -> TierResponse {
        let params = self.config.tiers.get(tier);
        let within = picks.iter().filter(|p| p.within_target).count() as u32;
        let fallback = picks.len() as u32 - within;
        let (state, note) = if within >= required {
            (TierState::Paging, String::new())
        } else if deferred {
            let fallback_note = if params.fallback_limit_s() > params.target_s {
                format!(
                    "; units beyond target (eta <= {} s) may fill them in the fallback round {} s or more after the report",
                    params.fallback_limit_s(),
                    self.config.policy.fallback_delay_s
                )
            } else {
                String::new()
            };
            (
                TierState::Short,
                format!(
                    "{within} of {required} {tier} unit(s) can arrive within {} s; {} slot(s) waiting for a unit{fallback_note}",
                    params.target_s,
                    required - within
                ),
            )
        } else if picks.is_empty() {
            (
                TierState::Short,
                format!(
                    "no available {tier} unit within reach (eta <= {} s); dispatchers must assign one",
                    params.fallback_limit_s().max(params.target_s)
                ),
            )
        } else {
            (
                TierState::Short,
                format!(
                    "{within} of {required} {tier} unit(s) can arrive within {} s; {fallback} fallback unit(s) paged beyond target{}",
                    params.target_s,
                    if within + fallback < required { "; still short" } else { "" }
                ),
            )
        };
        let assignments = picks.iter().map(|p| self.assignment(p, tier, now, 1)).collect();
        TierResponse {
            tier,
            target_s: params.target_s,
            required,
            state,
            deadline: now.plus_s(params.target_s),
            assignments,
            note,
        }
    }

    /// AVAILABLE -> PAGED for `incident_id`, atomically; false if the unit is
    /// not available (taken by another incident, out of service, ...).
    /// The reservation is handed to the store under the unit's lock, like
    /// every change: the reserving operation is then open in the journal
    /// before anyone can copy the reservation (say, a position report on the
    /// unit), so both commit together.
    pub(crate) fn try_reserve(&self, unit_id: &Arc<str>, incident_id: &str, now: Timestamp, fx: &dyn Effects) -> bool {
        self.try_reserve_capable(unit_id, incident_id, &[], now, fx)
    }

    /// [`Dispatcher::try_reserve`] of a unit that has every one of `required`
    /// capabilities (false if it lacks one).
    pub(crate) fn try_reserve_capable(
        &self,
        unit_id: &Arc<str>,
        incident_id: &str,
        required: &[String],
        now: Timestamp,
        fx: &dyn Effects,
    ) -> bool {
        match self.units.get_mut(unit_id) {
            Some(mut unit) if self.dispatchable(unit.status) && queue::capable(&unit.capabilities, required) => {
                let reserved = unit.transition(UnitStatus::Paged, Cause::Reserved { incident_id }, now).is_ok();
                if reserved {
                    fx.store_unit(&unit);
                }
                reserved
            }
            _ => false,
        }
    }

    fn dispatchable(&self, status: UnitStatus) -> bool {
        status == UnitStatus::Available
            || (status == UnitStatus::Returning && self.config.escalation.dispatch_returning_units)
    }

    /// The `limit` nearest units of `tier` a dispatcher could assign to an
    /// incident at `at` now (dispatchable, at any distance), nearest first:
    /// which is also fastest first, and so within-target first.
    pub fn candidates(&self, at: LatLng, tier: Tier, limit: usize) -> Vec<Candidate> {
        let (params, offsets) = (self.travel(tier), self.unit_offsets(tier));
        let index = read(&self.index[tier.index()]);
        let mut found = Vec::with_capacity(limit.min(64));
        for nearby in index.nearest(at, CANDIDATE_REACH_M) {
            if found.len() == limit {
                break;
            }
            let Some(unit) = self.units.get(&nearby.unit_id) else { continue };
            if !self.dispatchable(unit.status) {
                continue;
            }
            let eta_s = offsets.eta_s(&params, &nearby.unit_id, nearby.distance_m);
            found.push(Candidate {
                unit: unit.clone(),
                distance_m: nearby.distance_m,
                eta_s,
                within_target: eta_s <= params.target_s,
            });
        }
        found
    }

    /// What a report at `at` would select now; reserves nothing.
    pub fn preview(
        &self,
        at: LatLng,
        kind: IncidentKind,
        severity: u8,
        now: Timestamp,
    ) -> Result<Preview, DispatchError> {
        check_severity(severity.into())?;
        let mut passed_over: Vec<PassedOver> = Vec::new();
        let tiers = self.respond(at, kind, severity, now, |unit_id, required| {
            let Some(u) = self.units.get(unit_id) else { return false };
            let reason = if !self.dispatchable(u.status) {
                match &u.incident_id {
                    Some(i) => format!("{} for {i}", u.status),
                    None => u.status.to_string(),
                }
            } else if !queue::capable(&u.capabilities, required) {
                let missing: Vec<&str> =
                    required.iter().filter(|r| !u.capabilities.contains(r)).map(String::as_str).collect();
                format!("lacks {} (the incident's kind requires it)", missing.join(", "))
            } else {
                return true;
            };
            if passed_over.iter().filter(|p| p.tier == u.tier).count() < MAX_PASSED_OVER {
                passed_over.push(PassedOver {
                    tier: u.tier,
                    unit_id: u.id.to_string(),
                    unit_name: u.name.clone(),
                    distance_m: crate::geodesy::haversine_m(u.position, at),
                    reason,
                });
            }
            false
        });
        Ok(Preview { tiers, located: self.area.locate(at), passed_over })
    }

    /// Releases the unit of an active assignment (the caller holds the
    /// incident's lock): PAGED -> AVAILABLE, EN_ROUTE/ON_SCENE -> RETURNING.
    // Eight arguments: the caller holds the incident's lock and lends its id and
    // grid cell apart from the assignment it borrows mutably.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn release_assignment(
        &self,
        incident_id: &str,
        grid_id: &str,
        a: &mut Assignment,
        now: Timestamp,
        why: &str,
        leave_as: Option<UnitStatus>,
        fx: &dyn Effects,
    ) {
        a.end(AssignmentState::Released, now);
        let Some(mut unit) = self.units.get_mut(a.unit_id.as_str()) else { return };
        if unit.incident_id.as_deref() != Some(incident_id) {
            return;
        }
        let to = leave_as.unwrap_or(match unit.status {
            UnitStatus::Paged => UnitStatus::Available,
            _ => UnitStatus::Returning,
        });
        if unit.transition(to, Cause::Released, now).is_err() {
            return; // a bug, asserted in debug builds: the unit is left as it was
        }
        if unit.status == UnitStatus::Returning {
            fx.arm(Timer {
                at: now.plus_s(self.config.escalation.return_to_available_s),
                key: TimerKey::Return { unit_id: unit.id.clone(), since: now },
            });
        }
        if self.dispatchable(unit.status) {
            self.freed(&unit.id);
        }
        fx.store_unit(&unit);
        fx.emit(
            Event::new(EventKind::UnitReleased, now)
                .incident(incident_id, grid_id)
                .unit(&a.unit_id)
                .tier(a.tier)
                .attempt(a.attempt)
                .status(unit.status)
                .detail(why),
        );
    }

    /// `tier`'s parameters as selection uses them now (see `travel`).
    pub fn travel(&self, tier: Tier) -> TierParams {
        self.travel.read().unwrap_or_else(|p| p.into_inner())[tier.index()]
    }

    /// Replaces the travel part of `tier`'s model (turnout, speed,
    /// circuity) with `model`'s; the tier's target, fallback and ack
    /// timeout stay as configured. Refused when a value is not a finite
    /// travel model (speed > 0, circuity >= 1, turnout >= 0).
    pub fn set_travel(
        &self,
        tier: Tier,
        turnout_s: f64,
        speed_m_per_s: f64,
        circuity: f64,
    ) -> Result<(), DispatchError> {
        let ok = turnout_s.is_finite()
            && turnout_s >= 0.0
            && speed_m_per_s.is_finite()
            && speed_m_per_s > 0.0
            && circuity.is_finite()
            && circuity >= 1.0;
        if !ok {
            return Err(DispatchError::invalid(
                format!("{tier} travel"),
                format!("turnout {turnout_s} s, speed {speed_m_per_s} m/s, circuity {circuity} is not a travel model"),
            ));
        }
        let mut travel = self.travel.write().unwrap_or_else(|p| p.into_inner());
        let p = &mut travel[tier.index()];
        (p.turnout_s, p.speed_m_per_s, p.circuity) = (turnout_s, speed_m_per_s, circuity);
        Ok(())
    }

    /// The learnt per-unit ETA offsets of `tier`'s units.
    pub fn unit_offsets(&self, tier: Tier) -> Arc<UnitOffsets> {
        self.unit_offsets.read().unwrap_or_else(|p| p.into_inner())[tier.index()].clone()
    }

    /// Replaces `tier`'s per-unit ETA offsets (seconds added to a unit's ETA).
    pub fn set_unit_offsets(&self, tier: Tier, offsets: UnitOffsets) {
        self.unit_offsets.write().unwrap_or_else(|p| p.into_inner())[tier.index()] = Arc::new(offsets);
    }

    /// A unit's own tier (its entry read and released at once).
    pub fn unit_tier(&self, id: &str) -> Option<Tier> {
        self.units.get(id).map(|u| u.tier)
    }

    pub fn get_unit(&self, id: &str) -> Result<Unit, DispatchError> {
        self.units.get(id).map(|u| u.clone()).ok_or_else(|| DispatchError::UnitNotFound(id.to_string()))
    }

    /// Hands a unit's current state to `fx.store_unit`, under the unit's
    /// lock (so no change made meanwhile can be stored before it and then
    /// overwritten by this older copy). For changes applied without being
    /// stored at once (coalesced position fixes).
    pub fn store_unit_state(&self, id: &str, fx: &dyn Effects) -> Result<(), DispatchError> {
        let unit = self.units.get(id).ok_or_else(|| DispatchError::UnitNotFound(id.to_string()))?;
        fx.store_unit(&unit);
        Ok(())
    }

    /// Units ordered by id. `page_token` is the last id of the previous page.
    pub fn list_units(&self, filter: &UnitFilter, page_size: usize, page_token: Option<&str>) -> Page<Unit> {
        // Only ids are collected and ordered (a pointer copy each); only the
        // page's units are cloned.
        let mut ids: Vec<Arc<str>> = self
            .units
            .iter()
            .filter(|u| {
                page_token.is_none_or(|after| &*u.id > after)
                    && filter.tier.is_none_or(|t| u.tier == t)
                    && filter.status.is_none_or(|s| u.status == s)
                    && filter.town.as_ref().is_none_or(|town| &u.town == town)
            })
            .map(|u| u.id.clone())
            .collect();
        let more = ids.len() > page_size;
        if more {
            ids.select_nth_unstable(page_size);
            ids.truncate(page_size);
        }
        ids.sort_unstable();
        let items: Vec<Unit> = ids.iter().filter_map(|id| self.units.get(id).map(|u| u.clone())).collect();
        let next_page_token = if more { ids.last().map(|id| id.to_string()) } else { None };
        Page { items, next_page_token }
    }

    /// Creates a unit (AVAILABLE, or OUT_OF_SERVICE if asked) or updates an
    /// existing one's descriptive fields, home, position and tier. Status and
    /// assignment of an existing unit change only through dispatch and
    /// [`Dispatcher::set_unit_status`]; a unit may not change tier while it is
    /// assigned. Returns the unit and whether it was created.
    /// A unit added or moved while free is offered to the waiting queue.
    pub fn upsert_unit(&self, unit: Unit, now: Timestamp, fx: &dyn Effects) -> Result<(Unit, bool), DispatchError> {
        let id = unit.id.clone();
        let answer = self.upsert_unit_locked(unit, fx)?;
        if self.units.get(&id).is_some_and(|u| self.dispatchable(u.status)) {
            self.freed(&id);
        }
        self.offer_freed(now, fx);
        Ok(answer)
    }

    fn upsert_unit_locked(&self, unit: Unit, fx: &dyn Effects) -> Result<(Unit, bool), DispatchError> {
        check_unit_id(&unit.id).map_err(|e| DispatchError::invalid("unit.id", e))?;
        unit.home.validate().map_err(|e| DispatchError::invalid(format!("unit.home.{}", e.component()), e))?;
        unit.position.validate().map_err(|e| DispatchError::invalid(format!("unit.position.{}", e.component()), e))?;
        if !matches!(unit.status, UnitStatus::Available | UnitStatus::OutOfService) {
            return Err(DispatchError::invalid("unit.status", "a new unit starts AVAILABLE or OUT_OF_SERVICE"));
        }
        // The tier the unit is indexed under now, read without holding its entry.
        let current_tier = self.unit_tier(&unit.id);
        // Write-lock the affected trees in tier order (the lock order), then the entry.
        let mut tiers: Vec<Tier> = current_tier.into_iter().chain([unit.tier]).collect();
        tiers.sort();
        tiers.dedup();
        let mut guards: Vec<(Tier, RwLockWriteGuard<'_, TierIndex>)> =
            tiers.iter().map(|t| (*t, write(&self.index[t.index()]))).collect();
        // Counted before taking the entry: `len()` read-locks every shard,
        // including the one the entry write-locks.
        let at_capacity = self.units.len() >= self.limits.max_units;
        match self.units.entry(unit.id.clone()) {
            Entry::Occupied(mut existing) => {
                let old = existing.get_mut();
                if tree_mut(&mut guards, old.tier).is_none() {
                    // The unit changed tier between our read and the lock: retryable.
                    return Err(DispatchError::Contended(format!("unit {} changed concurrently", unit.id)));
                }
                if old.tier != unit.tier && old.status.is_assigned() {
                    return Err(DispatchError::FailedPrecondition(format!(
                        "unit {} is {} for incident {}: cannot change tier while assigned",
                        unit.id,
                        old.status,
                        old.incident_id.as_deref().unwrap_or("?")
                    )));
                }
                if old.tier != unit.tier || old.position != unit.position {
                    let removed = tree_mut(&mut guards, old.tier).is_some_and(|t| t.remove(&old.id, old.position));
                    debug_assert!(removed, "unit {} missing from its index", old.id);
                    if let Some(t) = tree_mut(&mut guards, unit.tier) {
                        t.insert(old.id.clone(), unit.position);
                    }
                }
                old.name = unit.name;
                old.tier = unit.tier;
                old.home = unit.home;
                old.position = unit.position;
                old.town = unit.town;
                old.village = unit.village;
                old.crew = unit.crew;
                old.capabilities = unit.capabilities;
                fx.store_unit(old);
                Ok((old.clone(), false))
            }
            Entry::Vacant(slot) => {
                if at_capacity {
                    return Err(DispatchError::CapacityExhausted {
                        what: "unit table",
                        limit_name: "max_units",
                        limit: self.limits.max_units,
                    });
                }
                let unit = Unit { incident_id: None, ..unit };
                if let Some(t) = tree_mut(&mut guards, unit.tier) {
                    t.insert(unit.id.clone(), unit.position);
                }
                fx.store_unit(&unit);
                slot.insert(unit.clone());
                Ok((unit, true))
            }
        }
    }

    /// A status change through the unit state machine (dispatcher override or
    /// a terminal's status report). EN_ROUTE acknowledges a page; ON_SCENE marks
    /// the assignment on scene, verified or not by the unit's last fix (see
    /// `arrival`), and the tier MET when its required units have arrived,
    /// verified, by the deadline; RETURNING or AVAILABLE from ON_SCENE releases the
    /// unit from its incident.
    pub fn set_unit_status(
        &self,
        id: &str,
        to: UnitStatus,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Unit, DispatchError> {
        // Lock order is incident before unit, so find the unit's incident first,
        // then take both and check nothing moved in between.
        for _ in 0..8 {
            let incident_id = {
                let unit = self.units.get(id).ok_or_else(|| DispatchError::UnitNotFound(id.to_string()))?;
                check_transition(&unit, to)?;
                if unit.status == to {
                    return Ok(unit.clone());
                }
                unit.incident_id.clone()
            };
            let done = match incident_id {
                None => self.set_free_unit_status(id, to, now, fx)?,
                Some(incident_id) => self.set_assigned_unit_status(id, &incident_id, to, now, fx)?,
            };
            if let Some(unit) = done {
                self.offer_freed(now, fx);
                return Ok(self.get_unit(id).unwrap_or(unit));
            }
        }
        Err(DispatchError::Contended(format!("unit {id} kept changing while its status was set")))
    }

    /// [`Dispatcher::set_unit_status`] of a unit that has no incident.
    /// `Ok(None)`: it was reserved meanwhile; start again under the right locks.
    fn set_free_unit_status(
        &self,
        id: &str,
        to: UnitStatus,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Option<Unit>, DispatchError> {
        let mut unit = self.units.get_mut(id).ok_or_else(|| DispatchError::UnitNotFound(id.to_string()))?;
        if unit.incident_id.is_some() {
            return Ok(None);
        }
        check_transition(&unit, to)?;
        let from = unit.transition(to, Cause::Reported, now)?;
        if self.dispatchable(unit.status) {
            self.freed(&unit.id);
        }
        fx.store_unit(&unit);
        fx.emit(Event::new(EventKind::UnitStatusChanged, now).unit(id).status(to).detail(format!("{from} -> {to}")));
        Ok(Some(unit.clone()))
    }

    /// [`Dispatcher::set_unit_status`] of a unit of `incident_id`, under the
    /// incident's lock and then the unit's. `Ok(None)`: the incident is not
    /// yet inserted by its report, or the unit left it meanwhile; start again.
    fn set_assigned_unit_status(
        &self,
        id: &str,
        incident_id: &str,
        to: UnitStatus,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Option<Unit>, DispatchError> {
        let seq = parse_incident_id(incident_id).expect("units hold well-formed incident ids");
        let Some(mut incident) = self.incidents.get_mut(&seq) else { return Ok(None) };
        let incident = &mut *incident;
        let mut unit = self.units.get_mut(id).ok_or_else(|| DispatchError::UnitNotFound(id.to_string()))?;
        if unit.incident_id.as_deref() != Some(incident_id) {
            return Ok(None);
        }
        check_transition(&unit, to)?;
        let Some(tier) =
            incident.tiers.iter_mut().find(|t| t.assignments.iter().any(|a| a.unit_id == id && a.is_active()))
        else {
            debug_assert!(false, "assigned unit {id} has no active assignment in {incident_id}");
            return Err(DispatchError::FailedPrecondition(format!("unit {id} has no active assignment")));
        };
        let a = tier.assignments.iter_mut().rev().find(|a| a.unit_id == id && a.is_active()).expect("found above");
        let event = Event::new(EventKind::UnitStatusChanged, now)
            .incident(incident_id, &incident.grid_id)
            .unit(id)
            .tier(a.tier)
            .attempt(a.attempt)
            .status(to);
        match to {
            UnitStatus::EnRoute => {
                unit.transition(to, Cause::Reported, now)?;
                let kind = if a.state == AssignmentState::Paged {
                    EventKind::UnitAcknowledged
                } else {
                    EventKind::UnitEnRoute
                };
                a.state = AssignmentState::Acknowledged;
                a.acknowledge(now);
                fx.emit(Event { kind, ..event });
            }
            UnitStatus::OnScene => {
                unit.transition(to, Cause::Reported, now)?;
                self.arrive(a, &unit, incident.location, event, now, fx);
                arrival::meet_if_arrived(tier, incident_id, &incident.grid_id, now, fx);
            }
            UnitStatus::Returning | UnitStatus::Available => {
                drop(unit); // release_assignment takes the unit's entry itself
                self.release_assignment(incident_id, &incident.grid_id, a, now, "left the scene", Some(to), fx);
                self.stored(incident, fx);
                return self.get_unit(id).map(Some);
            }
            other => {
                // check_transition lets an assigned unit only move as above.
                debug_assert!(false, "assigned unit moved to {other}");
                return Err(DispatchError::FailedPrecondition(format!(
                    "unit {id} cannot become {other} while assigned"
                )));
            }
        }
        fx.store_unit(&unit);
        self.stored(incident, fx);
        Ok(Some(unit.clone()))
    }

    /// Checks the dispatch invariants over the whole state; for tests, the load
    /// benchmark and debugging. Call it when no request is in flight.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.incidents.len() > self.limits.max_incidents {
            return Err(format!("{} open incidents, bound {}", self.incidents.len(), self.limits.max_incidents));
        }
        self.check_closed_invariants()?;
        let mut holder: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for incident in self.incidents.iter() {
            if incident.status != IncidentStatus::Open {
                return Err(format!("closed incident {} is in the live state", incident.id));
            }
            for a in incident.tiers.iter().flat_map(|t| &t.assignments) {
                let active = matches!(
                    a.state,
                    AssignmentState::Paged | AssignmentState::Acknowledged | AssignmentState::OnScene
                );
                if !active {
                    continue;
                }

                if let Some(other) = holder.insert(a.unit_id.clone(), incident.id.clone()) {
                    return Err(format!("unit {} assigned to both {other} and {}", a.unit_id, incident.id));
                }
            }
        }
        for unit in self.units.iter() {
            match (&unit.incident_id, unit.status.is_assigned()) {
                (Some(i), true) if holder.get(&*unit.id) == Some(i) => {}
                (None, false) if !holder.contains_key(&*unit.id) => {}
                _ => {
                    return Err(format!(
                        "unit {} is {} with incident {:?}, but incidents say {:?}",
                        unit.id,
                        unit.status,
                        unit.incident_id,
                        holder.get(&*unit.id)
                    ));
                }
            }
        }
        for tier in Tier::ALL {
            let indexed = read(&self.index[tier.index()]).len();
            let held = self.units.iter().filter(|u| u.tier == tier).count();
            if indexed != held {
                return Err(format!("{tier}: {indexed} units indexed, {held} held"));
            }
        }
        Ok(())
    }
}

/// Is a unit of the tier (in any status) stationed within its target of `at`?
fn stationed_within_target(index: &TierIndex, params: &TierParams, offsets: &UnitOffsets, at: LatLng) -> bool {
    let reach_m = params.reach_m(params.target_s) + 1.0;
    index.nearest(at, reach_m).any(|n| offsets.eta_s(params, &n.unit_id, n.distance_m) <= params.target_s)
}

fn tree_mut<'a>(guards: &'a mut [(Tier, RwLockWriteGuard<'_, TierIndex>)], tier: Tier) -> Option<&'a mut TierIndex> {
    guards.iter_mut().find(|(t, _)| *t == tier).map(|(_, g)| &mut **g)
}

#[cfg(test)]
mod tests;

mod arrival;
mod census;
mod closed;
mod escalation;
mod queue;
pub use census::{Census, TierOutcome};
pub use escalation::Acknowledgement;
pub use queue::{Decision, MAX_ROUND_SLOTS};

#[cfg(test)]
mod escalation_tests;
#[cfg(test)]
mod queue_tests;
