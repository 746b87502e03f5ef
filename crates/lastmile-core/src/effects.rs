//! What dispatch decisions cause outside the core: feed events, pages to
//! terminals, and timers to arm.
//!
//! The core's operations take `now` and an [`Effects`] sink, change state, and
//! hand their actions to the sink *while still holding the incident's lock*, so
//! the order of events the sink sees is the order of state changes. The core
//! performs no I/O itself: the server's sink stamps sequence numbers, delivers
//! pages and runs the timer wheel; tests use [`Recorder`].

use std::sync::{Arc, Mutex};

use crate::geodesy::LatLng;
use crate::incident::{Incident, IncidentKind, Timestamp};
use crate::tier::Tier;
use crate::unit::{Unit, UnitStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    IncidentReported,
    IncidentClosed,
    /// First page of a slot (also dispatcher assignments and escalation pages).
    UnitPaged,
    /// A later attempt for a slot, after a timeout or decline.
    UnitRepaged,
    UnitAcknowledged,
    UnitDeclined,
    UnitTimedOut,
    UnitEnRoute,
    /// A verified arrival: the unit reported ON_SCENE with a fresh position
    /// fix near the incident, or a later fix (or a dispatcher) verified it.
    UnitOnScene,
    /// The unit reported ON_SCENE, but its last fix is too far from the
    /// incident, too old, or missing: it is on scene, and does not count
    /// toward the tier's MET until a fix or a dispatcher verifies it.
    UnitArrivalUnverified,
    /// A dispatcher confirmed an unverified arrival by hand.
    ArrivalConfirmed,
    UnitReleased,
    TierShort,
    TierMet,
    TierBreached,
    TierEscalated,
    UnitStatusChanged,
    UnitPosition,
    /// The grid worker of the incident's cell was told (right after the report).
    GridWorkerNotified,
}

/// One state change, for the dispatchers' live feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub at: Timestamp,
    pub incident_id: Option<String>,
    /// The incident's grid cell, on every event of an incident that has one;
    /// empty otherwise.
    pub grid_id: String,
    pub unit_id: Option<String>,
    pub tier: Option<Tier>,
    pub attempt: u32,
    pub unit_status: Option<UnitStatus>,
    pub position: Option<LatLng>,
    /// Human-readable detail (reason, escalation target, ...).
    pub detail: String,
    /// On `GridWorkerNotified`: the worker notified.
    pub grid_worker: Option<crate::grid::GridWorker>,
}

impl Event {
    pub fn new(kind: EventKind, at: Timestamp) -> Self {
        Event {
            kind,
            at,
            incident_id: None,
            grid_id: String::new(),
            unit_id: None,
            tier: None,
            attempt: 0,
            unit_status: None,
            position: None,
            detail: String::new(),
            grid_worker: None,
        }
    }
    /// The event is about this incident, in this grid cell (empty if none):
    /// both are asked for together so no incident event goes out without its
    /// cell.
    pub fn incident(mut self, id: &str, grid_id: &str) -> Self {
        self.incident_id = Some(id.to_string());
        self.grid_id = grid_id.to_string();
        self
    }
    pub fn unit(mut self, id: &str) -> Self {
        self.unit_id = Some(id.to_string());
        self
    }
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
    pub fn status(mut self, status: UnitStatus) -> Self {
        self.unit_status = Some(status);
        self
    }
    pub fn position(mut self, position: LatLng) -> Self {
        self.position = Some(position);
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A page to deliver to one unit's terminal.
#[derive(Clone, Debug, PartialEq)]
pub struct PageOrder {
    pub unit_id: String,
    pub incident_id: String,
    pub kind: IncidentKind,
    pub severity: u8,
    pub location: LatLng,
    pub address: String,
    pub description: String,
    pub tier: Tier,
    pub eta_s: u32,
    pub distance_m: f64,
    pub deadline: Timestamp,
    pub paged_at: Timestamp,
    pub attempt: u32,
}

/// What a timer is for. A timer that comes due after its purpose is gone (the
/// unit acknowledged, the incident closed) is a no-op: cancelling is
/// invalidation, checked when it fires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimerKey {
    /// No acknowledgement of this page by then -> TIMED_OUT, re-page.
    Ack { incident_seq: u64, tier: Tier, unit_id: Arc<str>, attempt: u32 },
    /// The tier's arrival deadline -> MET already, or BREACHED and escalated.
    Deadline { incident_seq: u64, tier: Tier },
    /// A RETURNING unit that has not reported becomes AVAILABLE.
    Return { unit_id: Arc<str>, since: Timestamp },
    /// `dispatch.policy.fallback_delay_s` after the report: the tier's open
    /// slots may now be filled beyond target.
    Fallback { incident_seq: u64, tier: Tier },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timer {
    pub at: Timestamp,
    pub key: TimerKey,
}

/// Where the core's actions go.
pub trait Effects: Sync {
    fn emit(&self, event: Event);
    fn page(&self, page: PageOrder);
    fn arm(&self, timer: Timer);
    /// The state of an incident after a change, to make durable. Called while
    /// the incident's lock is held, after every change: per incident, the last
    /// call carries the latest state, until it closes: its final state goes
    /// to [`Effects::archive_incident`] instead.
    fn store_incident(&self, _incident: &Incident) {}
    /// The final state of an incident that closed and left the live state,
    /// to move to history. Called once per close, instead of
    /// `store_incident` for that state, while the incident's lock is held.
    fn archive_incident(&self, _incident: &Incident) {}
    /// The state of a unit after a change (same promise, per unit).
    fn store_unit(&self, _unit: &Unit) {}
}

/// Discards everything (previews, bulk loads).
pub struct NoEffects;

impl Effects for NoEffects {
    fn emit(&self, _: Event) {}
    fn page(&self, _: PageOrder) {}
    fn arm(&self, _: Timer) {}
}

/// Keeps everything, in order; for tests and simulations.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
    pub pages: Mutex<Vec<PageOrder>>,
    pub timers: Mutex<Vec<Timer>>,
    /// The last stored state of each incident and unit, by id.
    pub stored_incidents: Mutex<std::collections::HashMap<String, Incident>>,
    pub stored_units: Mutex<std::collections::HashMap<String, Unit>>,
    /// Every archived incident, in order; an archived incident leaves
    /// `stored_incidents`, as it leaves the store's live table.
    pub archived_incidents: Mutex<Vec<Incident>>,
}

impl Recorder {
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn take_pages(&self) -> Vec<PageOrder> {
        std::mem::take(&mut *self.pages.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn take_timers(&self) -> Vec<Timer> {
        std::mem::take(&mut *self.timers.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Effects for Recorder {
    fn emit(&self, event: Event) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
    fn page(&self, page: PageOrder) {
        self.pages.lock().unwrap_or_else(|p| p.into_inner()).push(page);
    }
    fn arm(&self, timer: Timer) {
        self.timers.lock().unwrap_or_else(|p| p.into_inner()).push(timer);
    }
    fn store_incident(&self, incident: &Incident) {
        self.stored_incidents.lock().unwrap_or_else(|p| p.into_inner()).insert(incident.id.clone(), incident.clone());
    }
    fn store_unit(&self, unit: &Unit) {
        self.stored_units.lock().unwrap_or_else(|p| p.into_inner()).insert(unit.id.to_string(), unit.clone());
    }
    fn archive_incident(&self, incident: &Incident) {
        self.stored_incidents.lock().unwrap_or_else(|p| p.into_inner()).remove(&incident.id);
        self.archived_incidents.lock().unwrap_or_else(|p| p.into_inner()).push(incident.clone());
    }
}
