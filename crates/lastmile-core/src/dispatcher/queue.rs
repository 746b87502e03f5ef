//! The waiting queue, deferred fallback and pre-emption: how scarce units
//! are shared between incidents (`dispatch.policy`, see [`PolicyConfig`]).
//!
//! - A tier slot that has no active unit of its own (its required units
//!   minus the active pages, acknowledgements and arrivals of the tier's own
//!   slots) **waits**: its incident is in the tier's queue, keyed by
//!   (severity, highest first; report sequence, oldest first).
//! - A unit that becomes dispatchable (released, declined, returned,
//!   recovered, back in service, added, moved) is **offered** to the queue
//!   of its tier: the first waiting slot it can fill takes it. It can fill a
//!   slot when it has the capabilities the incident's kind requires, has no
//!   earlier assignment in the incident, and its ETA is within the tier's
//!   target, or within the fallback reach once the slot's fallback is due.
//! - A slot's **fallback is due** `fallback_delay_s` after the report: only
//!   then are units beyond target paged for it (its fallback timer fills what
//!   it can then, by the rule). Until then, within-target units are kept for
//!   the reports that can use them.
//! - **Pre-emption** (with `preempt_unacknowledged`): a report short of
//!   within-target units may take a unit within its target whose page for
//!   another incident is not yet acknowledged, if that incident's severity is
//!   lower, or equal and the unit is beyond target there. The other slot
//!   waits again (and is refilled at once if anyone can). An acknowledged
//!   page is never taken.
//!
//! Freed units are offered once the operation that freed them has let go of
//! every lock ([`Dispatcher::offer_freed`] at the end of each public
//! operation): filling a slot takes that incident's lock, and two incidents'
//! locks are never held at once (except by pre-emption, which holds the new
//! incident before it is inserted, so nobody else can hold it).
//!
//! [`PolicyConfig`]: crate::config::PolicyConfig

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Dispatcher, Reach, read};
use crate::effects::{Effects, Event, EventKind, Timer, TimerKey};
use crate::geodesy::{LatLng, haversine_m};
use crate::incident::{
    Assignment, AssignmentState, Incident, IncidentKind, IncidentStatus, TierResponse, TierState, Timestamp,
};
use crate::select::Pick;
use crate::tier::Tier;
use crate::unit::UnitStatus;

/// The queue's order: higher severity first, then the older report.
pub(super) type WaitKey = (Reverse<u8>, u64);

/// What the queue keeps of a waiting incident, to judge a unit without
/// taking the incident's lock.
#[derive(Debug, PartialEq)]
pub(super) struct Waiting {
    location: LatLng,
    kind: IncidentKind,
    /// When units beyond target may be paged for its slots.
    fallback_at: Timestamp,
}

/// One queue per tier (indexed by `Tier::index()`), behind its own mutex: a
/// leaf lock, held for no more than an insert, a removal or a copy.
#[derive(Default)]
pub(super) struct Queues {
    tiers: [Mutex<BTreeMap<WaitKey, Waiting>>; 4],
    /// Units freed by the operation in progress (or a concurrent one), to
    /// be offered when it lets go of its locks.
    freed: Mutex<Vec<Arc<str>>>,
    /// Per tier, when its last fallback round ran: the round's timers that
    /// come due after it find their slots matched (or unmatchable) already.
    rounds: [Mutex<Option<Timestamp>>; 4],
    /// What the policy did, by [`Decision`], since start.
    decisions: [AtomicU64; 4],
}

/// A decision of the surge policy, counted (`lastmile_dispatch_decisions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A waiting slot paged a unit that came free.
    QueueFill,
    /// A report took an unacknowledged page from another incident.
    Preemption,
    /// A fallback round paged a unit beyond target (or one that was free).
    FallbackRound,
    /// An UNRESPONSIVE unit's terminal answered: AVAILABLE again.
    Recovery,
}

impl Decision {
    pub const ALL: [Decision; 4] =
        [Decision::QueueFill, Decision::Preemption, Decision::FallbackRound, Decision::Recovery];

    pub fn name(self) -> &'static str {
        match self {
            Decision::QueueFill => "queue_fill",
            Decision::Preemption => "preemption",
            Decision::FallbackRound => "fallback_round",
            Decision::Recovery => "recovery",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Slots one fallback round matches at most, in the queue's order (higher
/// severity, then older); the rest wait for a unit to come free or for the
/// next round (a later report's timer).
pub const MAX_ROUND_SLOTS: usize = 2048;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Slots of `tier` that have no active unit of their own.
pub(crate) fn open_slots(tier: &TierResponse) -> u32 {
    if !matches!(tier.state, TierState::Paging | TierState::Short | TierState::Escalated | TierState::Breached) {
        return 0;
    }
    let active = tier.assignments.iter().filter(|a| a.escalated_from.is_none() && a.is_active()).count() as u32;
    tier.required.saturating_sub(active)
}

/// Does `unit_caps` list every one of `required`?
pub(crate) fn capable(unit_caps: &[String], required: &[String]) -> bool {
    required.iter().all(|r| unit_caps.iter().any(|c| c == r))
}

impl Queues {
    pub(super) fn waiting(&self, tier: Tier) -> usize {
        lock(&self.tiers[tier.index()]).len()
    }

    pub(super) fn count(&self, decision: Decision) {
        self.decisions[decision.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn counted(&self, decision: Decision) -> u64 {
        self.decisions[decision.index()].load(Ordering::Relaxed)
    }
}

impl Dispatcher {
    /// When `incident`'s slots may be filled beyond target: the first
    /// fallback round (a multiple of `fallback_round_s` of the clock) at or
    /// after `fallback_delay_s` from the report.
    pub(super) fn fallback_at(&self, incident: &Incident) -> Timestamp {
        let policy = &self.config.policy;
        let due = incident.reported_at.plus_s(policy.fallback_delay_s);
        if policy.fallback_delay_s == 0 {
            return due;
        }
        let round_ms = i64::from(policy.fallback_round_s) * 1000;
        let into = due.unix_ms.rem_euclid(round_ms);
        Timestamp { unix_ms: if into == 0 { due.unix_ms } else { due.unix_ms + (round_ms - into) } }
    }

    /// Puts `incident`'s tiers in, or takes them out of, the queues, as
    /// their open slots say (the caller holds the incident's lock).
    ///
    /// Only its own tiers: a tier it has not is never in a queue (tiers are
    /// added, never removed), so a store takes one lock per tier it has.
    pub(super) fn sync_waiting(&self, incident: &Incident) {
        for t in &incident.tiers {
            let open = incident.status == IncidentStatus::Open && open_slots(t) > 0;
            let key = (Reverse(incident.severity), incident.seq);
            let mut queue = lock(&self.queues.tiers[t.tier.index()]);
            if open {
                queue.entry(key).or_insert_with(|| Waiting {
                    location: incident.location,
                    kind: incident.kind,
                    fallback_at: self.fallback_at(incident),
                });
            } else {
                queue.remove(&key);
            }
        }
    }

    /// The incident changed: its queue entries follow, and it goes to the
    /// store (the caller holds its lock).
    pub(super) fn stored(&self, incident: &Incident, fx: &dyn Effects) {
        self.sync_waiting(incident);
        fx.store_incident(incident);
    }

    /// Slots waiting in `tier`'s queue (incidents, not slots), for metrics and tests.
    pub fn waiting_incidents(&self, tier: Tier) -> usize {
        self.queues.waiting(tier)
    }

    /// How often the policy made `decision` since start.
    pub fn decisions(&self, decision: Decision) -> u64 {
        self.queues.counted(decision)
    }

    /// Notes that `unit_id` became dispatchable, to be offered to the queue
    /// when the operation lets go of its locks.
    pub(super) fn freed(&self, unit_id: &Arc<str>) {
        lock(&self.queues.freed).push(unit_id.clone());
    }

    /// Offers every unit freed so far to its tier's queue. Called at the end
    /// of each public operation, holding no lock.
    pub(super) fn offer_freed(&self, now: Timestamp, fx: &dyn Effects) {
        loop {
            let freed = std::mem::take(&mut *lock(&self.queues.freed));
            if freed.is_empty() {
                return;
            }
            for unit_id in freed {
                self.offer(&unit_id, now, fx);
            }
        }
    }

    /// Offers one dispatchable unit to its tier's queue: the first waiting
    /// slot it can fill (see the module) pages it. Returns whether one did.
    pub(super) fn offer(&self, unit_id: &Arc<str>, now: Timestamp, fx: &dyn Effects) -> bool {
        let Some((tier, position, caps)) = self
            .units
            .get(unit_id)
            .filter(|u| self.dispatchable(u.status))
            .map(|u| (u.tier, u.position, u.capabilities.clone()))
        else {
            return false;
        };
        let (params, offsets, rule) = (self.travel(tier), self.unit_offsets(tier), *self.config.tiers.get(tier));
        let fallback_limit_s = rule.fallback_limit_s().max(rule.target_s);
        // The slots this unit could fill, in the queue's order, judged under
        // the queue's lock from what it keeps (no incident lock is taken
        // under it: incidents take it under theirs).
        let candidates: Vec<(u64, f64, u32, bool)> = lock(&self.queues.tiers[tier.index()])
            .iter()
            .filter_map(|((_, seq), w)| {
                let distance_m = haversine_m(position, w.location);
                let eta_s = offsets.eta_s(&params, unit_id, distance_m);
                let within_target = eta_s <= rule.target_s;
                let reachable = within_target || (now >= w.fallback_at && eta_s <= fallback_limit_s);
                (reachable && capable(&caps, self.config.required_capabilities(w.kind, tier))).then_some((
                    *seq,
                    distance_m,
                    eta_s,
                    within_target,
                ))
            })
            .collect();
        for (seq, distance_m, eta_s, within_target) in candidates {
            let why = || {
                let due = if within_target { "" } else { "; fallback due" };
                format!("from the waiting queue: {unit_id} became available{due}")
            };
            let pick = || Pick { unit_id: unit_id.clone(), distance_m, eta_s, within_target };
            match self.fill_slot(seq, tier, unit_id, pick, why, now, fx) {
                Fill::Paged => {
                    self.queues.count(Decision::QueueFill);
                    return true;
                }
                Fill::Taken => return false, // nothing left to offer
                Fill::NoSlot => {}
            }
        }
        false
    }

    /// Pages `unit_id` for an open slot of `tier` in incident `seq`, under
    /// the incident's lock, if the slot is still open, the incident never had
    /// the unit, and the unit can still be reserved. `pick` and `why` are
    /// made only then.
    // Eight arguments: where, who, and the page's parts, made lazily.
    #[allow(clippy::too_many_arguments)]
    fn fill_slot(
        &self,
        seq: u64,
        tier: Tier,
        unit_id: &Arc<str>,
        pick: impl FnOnce() -> Pick,
        why: impl FnOnce() -> String,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Fill {
        let Some(mut incident) = self.incidents.get_mut(&seq) else { return Fill::NoSlot };
        let incident = &mut *incident;
        let Some(ti) = incident.tiers.iter().position(|t| t.tier == tier) else { return Fill::NoSlot };
        if incident.status != IncidentStatus::Open || open_slots(&incident.tiers[ti]) == 0 {
            return Fill::NoSlot;
        }
        if incident.tiers.iter().flat_map(|t| &t.assignments).any(|a| a.unit_id == **unit_id) {
            return Fill::NoSlot; // never paged twice for one incident
        }
        if !self.try_reserve(unit_id, &incident.id, now, fx) {
            return Fill::Taken;
        }
        self.page_slot(incident, ti, &pick(), 1, &why(), now, fx);
        self.stored(incident, fx);
        Fill::Paged
    }

    /// Pages `pick` for an open slot of tier `ti` (the unit is reserved for
    /// the incident already) and updates the tier's state and note.
    // Eight arguments: the incident under its lock and the page's parts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn page_slot(
        &self,
        incident: &mut Incident,
        ti: usize,
        pick: &Pick,
        attempt: u32,
        why: &str,
        now: Timestamp,
        fx: &dyn Effects,
    ) {
        let a = self.assignment(pick, incident.tiers[ti].tier, now, attempt);
        self.page_out_as(incident, &a, now, why, fx);
        self.add_to_slot(incident, ti, a, now, Some(fx));
    }

    /// Adds `a` to tier `ti` and updates the tier's state and note; a tier
    /// that becomes SHORT says so on `fx` (none: the incident is not yet
    /// announced, and its report will say it).
    fn add_to_slot(&self, incident: &mut Incident, ti: usize, a: Assignment, now: Timestamp, fx: Option<&dyn Effects>) {
        let t = &mut incident.tiers[ti];
        t.assignments.push(a);
        let own = t.assignments.iter().filter(|a| a.escalated_from.is_none() && a.is_active());
        let (mut active, mut within) = (0, 0);
        for a in own {
            active += 1;
            within += u32::from(a.within_target);
        }
        if !matches!(t.state, TierState::Paging | TierState::Short) {
            return;
        }
        let was = t.state;
        t.state = if within >= t.required { TierState::Paging } else { TierState::Short };
        t.note = match t.state {
            TierState::Paging => String::new(),
            _ if active >= t.required => {
                format!("{within} of {} within {} s; the rest beyond target", t.required, t.target_s)
            }
            _ => format!("{within} of {} within {} s; {} slot(s) waiting", t.required, t.target_s, t.required - active),
        };
        if let Some(fx) = fx
            && was == TierState::Paging
            && t.state == TierState::Short
        {
            fx.emit(
                Event::new(EventKind::TierShort, now)
                    .incident(&incident.id, &incident.grid_id)
                    .tier(t.tier)
                    .detail(t.note.clone()),
            );
        }
    }

    /// The fallback timer of `tier` of incident `seq` came due: unless a
    /// round of the tier ran since that slot became due, a fallback round
    /// matches every due slot of the tier to the free units.
    pub(super) fn fallback_due(&self, seq: u64, tier: Tier, now: Timestamp, fx: &dyn Effects) {
        let Some(due) = self.incidents.get(&seq).map(|i| self.fallback_at(&i)) else { return };
        {
            let mut last = lock(&self.queues.rounds[tier.index()]);
            if last.is_some_and(|ran| ran >= due) {
                return; // this slot was in that round
            }
            *last = Some(now);
        }
        self.fallback_round(tier, now, fx);
    }

    /// One fallback round of `tier`: every open slot whose fallback is due,
    /// against every free unit of the tier within the fallback reach, matched
    /// together (Kuhn–Munkres, `crate::matching`): most slots within target,
    /// then most slots filled, then higher severity, then least total ETA.
    /// A report-by-report fallback spends, for the first report, the unit
    /// that was the only one in reach of the next; the round does not.
    fn fallback_round(&self, tier: Tier, now: Timestamp, fx: &dyn Effects) {
        let slots = self.due_slots(tier, now);
        if slots.is_empty() {
            return;
        }
        let (units, edges) = self.round_edges(tier, &slots);
        let matched = crate::matching::sparse_min_cost(units.len(), &edges);
        let waiting = slots.len();
        for (slot, unit) in slots.iter().zip(matched) {
            let Some(u) = unit else { continue };
            let unit_id = &units[u];
            let Some(position) = self.units.get(unit_id).map(|u| u.position) else { continue };
            let pick = || self.pick_at(unit_id, position, tier, tier, slot.location);
            let why = || format!("fallback round: matched with {waiting} waiting {tier} slot(s)");
            // A unit taken meanwhile leaves its slot to the queue.
            if self.fill_slot(slot.seq, tier, unit_id, pick, why, now, fx) == Fill::Paged {
                self.queues.count(Decision::FallbackRound);
            }
        }
    }

    /// The open slots of `tier` whose fallback is due, in the queue's order
    /// (at most [`MAX_ROUND_SLOTS`]).
    fn due_slots(&self, tier: Tier, now: Timestamp) -> Vec<RoundSlot> {
        let due: Vec<u64> = lock(&self.queues.tiers[tier.index()])
            .iter()
            .filter(|(_, w)| w.fallback_at <= now)
            .map(|((_, seq), _)| *seq)
            .collect();
        let mut slots = Vec::new();
        for seq in due {
            let Some(incident) = self.incidents.get(&seq) else { continue };
            let Some(t) = incident.tiers.iter().find(|t| t.tier == tier) else { continue };
            let had: Arc<HashSet<String>> =
                Arc::new(incident.tiers.iter().flat_map(|t| &t.assignments).map(|a| a.unit_id.clone()).collect());
            for _ in 0..open_slots(t) {
                if slots.len() == MAX_ROUND_SLOTS {
                    return slots;
                }
                slots.push(RoundSlot {
                    seq,
                    location: incident.location,
                    kind: incident.kind,
                    severity: incident.severity,
                    had: had.clone(),
                });
            }
        }
        slots
    }

    /// The free units a round may use, and each slot's edges to them with
    /// the round's cost (see [`round_costs`]).
    fn round_edges(&self, tier: Tier, slots: &[RoundSlot]) -> (Vec<Arc<str>>, Vec<SlotEdges>) {
        let (params, offsets, rule) = (self.travel(tier), self.unit_offsets(tier), *self.config.tiers.get(tier));
        let reach_s = rule.fallback_limit_s().max(rule.target_s);
        let mut units: Vec<Arc<str>> = Vec::new();
        let mut index_of: HashMap<Arc<str>, usize> = HashMap::new();
        let mut edges: Vec<Vec<(usize, u32, bool)>> = Vec::with_capacity(slots.len());
        let index = read(&self.index[tier.index()]);
        for slot in slots {
            let required = self.config.required_capabilities(slot.kind, tier);
            let mut found = Vec::new();
            for n in index.nearest(slot.location, params.reach_m(reach_s) + 1.0) {
                let eta_s = offsets.eta_s(&params, &n.unit_id, n.distance_m);
                if eta_s > reach_s || slot.had.contains(&*n.unit_id) {
                    continue;
                }
                let Some(unit) = self.units.get(&n.unit_id) else { continue };
                if !self.dispatchable(unit.status) || !capable(&unit.capabilities, required) {
                    continue;
                }
                let u = *index_of.entry(n.unit_id.clone()).or_insert_with(|| {
                    units.push(n.unit_id.clone());
                    units.len() - 1
                });
                found.push((u, eta_s, eta_s <= rule.target_s));
            }
            edges.push(found);
        }
        drop(index);
        let costs = round_costs(slots, &edges);
        (units, costs)
    }

    /// The fallback timer a freshly reported incident needs, if any.
    pub(super) fn fallback_timer(&self, incident: &Incident, tier: &TierResponse) -> Option<Timer> {
        (self.config.policy.fallback_delay_s > 0 && open_slots(tier) > 0).then(|| Timer {
            at: self.fallback_at(incident),
            key: TimerKey::Fallback { incident_seq: incident.seq, tier: tier.tier },
        })
    }

    /// Pre-emption for a report being dispatched (`incident`, not yet in
    /// the live map): for each tier short of within-target units, takes
    /// within-target units whose pages for other incidents may be taken
    /// (see the module).
    /// Returns why each unit it took was paged, for the report's pages.
    pub(super) fn preempt_for(
        &self,
        incident: &mut Incident,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Vec<(String, String)> {
        let mut taken = Vec::new();
        if !self.config.policy.preempt_unacknowledged {
            return taken;
        }
        for ti in 0..incident.tiers.len() {
            let t = &incident.tiers[ti];
            let within = t.assignments.iter().filter(|a| a.is_active() && a.within_target).count() as u32;
            if t.state != TierState::Short || within >= t.required {
                continue;
            }
            let tier = t.tier;
            let mut wanted = t.required - within;
            for (unit_id, distance_m, eta_s) in self.paged_within_target(incident, tier) {
                if wanted == 0 {
                    break;
                }
                if let Some(why) = self.take_page(incident, ti, &unit_id, distance_m, eta_s, now, fx) {
                    taken.push((unit_id.to_string(), why));
                    wanted -= 1;
                }
            }
        }
        taken
    }

    /// PAGED units of `tier` within its target of `incident`, nearest first,
    /// with the capabilities it needs and no assignment in it yet.
    fn paged_within_target(&self, incident: &Incident, tier: Tier) -> Vec<(Arc<str>, f64, u32)> {
        let (params, offsets) = (self.travel(tier), self.unit_offsets(tier));
        let target_s = self.config.tiers.get(tier).target_s;
        let required = self.config.required_capabilities(incident.kind, tier);
        let tried: HashSet<&str> =
            incident.tiers.iter().flat_map(|t| &t.assignments).map(|a| a.unit_id.as_str()).collect();
        let index = read(&self.index[tier.index()]);
        let mut found = Vec::new();
        // Offsets can make a farther unit faster: walk the reach of the
        // smallest possible ETA (no offset below zero is assumed here; a
        // negative one only widens what we miss, never what we take).
        for nearby in index.nearest(incident.location, params.reach_m(target_s) + 1.0) {
            let eta_s = offsets.eta_s(&params, &nearby.unit_id, nearby.distance_m);
            if eta_s > target_s || tried.contains(&*nearby.unit_id) {
                continue;
            }
            let Some(unit) = self.units.get(&nearby.unit_id) else { continue };
            if unit.status == UnitStatus::Paged && capable(&unit.capabilities, required) {
                found.push((nearby.unit_id.clone(), nearby.distance_m, eta_s));
            }
        }
        found
    }

    /// Takes `unit_id`'s unacknowledged page from the incident holding it,
    /// if the policy allows, and adds it to `incident`'s tier `ti` (paged
    /// when the report is announced); returns why.
    // Eight arguments: the new incident, where the unit goes, and the pick.
    #[allow(clippy::too_many_arguments)]
    fn take_page(
        &self,
        incident: &mut Incident,
        ti: usize,
        unit_id: &Arc<str>,
        distance_m: f64,
        eta_s: u32,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Option<String> {
        let holder = self.units.get(unit_id).and_then(|u| u.incident_id.clone())?;
        let seq = crate::incident::parse_incident_id(&holder)?;
        let mut other = self.incidents.get_mut(&seq)?;
        let other = &mut *other;
        let Some((oti, oai)) = other.tiers.iter().enumerate().find_map(|(oti, t)| {
            t.assignments
                .iter()
                .position(|a| a.unit_id == **unit_id && a.state == AssignmentState::Paged && a.escalated_from.is_none())
                .map(|oai| (oti, oai))
        }) else {
            return None; // acknowledged (or gone) meanwhile: never taken
        };
        let there = &other.tiers[oti].assignments[oai];
        let takes = other.severity < incident.severity || (other.severity == incident.severity && !there.within_target);
        if !takes {
            return None;
        }
        let why = format!(
            "page withdrawn: {unit_id} is within target (eta {eta_s} s) of {} (severity {}), {} here (severity {})",
            incident.id,
            incident.severity,
            if there.within_target { "within target" } else { "beyond target" },
            other.severity
        );
        let (other_id, other_grid) = (other.id.clone(), other.grid_id.clone());
        self.release_assignment(&other_id, &other_grid, &mut other.tiers[oti].assignments[oai], now, &why, None, fx);
        let reserved = self.try_reserve(unit_id, &incident.id, now, fx);
        // The slot it left waits, and takes at once whoever can fill it now.
        self.refill(other, oti, now, fx);
        self.stored(other, fx);
        if !reserved {
            return None; // someone else took it meanwhile (it was offered as freed)
        }
        let pick = Pick { unit_id: unit_id.clone(), distance_m, eta_s, within_target: true };
        let a = self.assignment(&pick, incident.tiers[ti].tier, now, 1);
        self.add_to_slot(incident, ti, a, now, None);
        self.queues.count(Decision::Preemption);
        Some(format!("taken from {other_id} (severity {}): its page was not yet acknowledged", other.severity))
    }

    /// Fills tier `ti`'s open slots of `incident` (under its lock) from the
    /// free units by the rule: within target, or beyond once its fallback is
    /// due. What nobody can fill waits.
    pub(super) fn refill(&self, incident: &mut Incident, ti: usize, now: Timestamp, fx: &dyn Effects) {
        let tier = incident.tiers[ti].tier;
        let fallback = now >= self.fallback_at(incident);
        while open_slots(&incident.tiers[ti]) > 0 {
            let Some(pick) = self.pick_slot(incident, tier, fallback, now, fx) else { break };
            self.page_slot(incident, ti, &pick, 1, "refilled after its page was taken", now, fx);
        }
        self.mark_waiting(incident, ti, now, fx);
    }

    /// A PAGING tier that has open slots again (a page taken or released)
    /// is SHORT, and says its slots wait.
    pub(super) fn mark_waiting(&self, incident: &mut Incident, ti: usize, now: Timestamp, fx: &dyn Effects) {
        let t = &mut incident.tiers[ti];
        let open = open_slots(t);
        if open == 0 || t.state != TierState::Paging {
            return;
        }
        t.state = TierState::Short;
        t.note = format!("{open} of {} {} slot(s) waiting for a unit", t.required, t.tier);
        fx.emit(
            Event::new(EventKind::TierShort, now)
                .incident(&incident.id, &incident.grid_id)
                .tier(t.tier)
                .detail(t.note.clone()),
        );
    }

    /// [`Dispatcher::pick_for`] of a tier's own slot: beyond target only
    /// when `fallback`.
    pub(super) fn pick_slot(
        &self,
        incident: &Incident,
        tier: Tier,
        fallback: bool,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Option<Pick> {
        let reach = if fallback { Reach::Fallback } else { Reach::Target };
        self.pick_for(incident, tier, tier, reach, now, fx)
    }
}

/// What [`Dispatcher::fill_slot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    Paged,
    /// The unit was reserved by someone else meanwhile.
    Taken,
    /// The slot is gone (filled, closed) or the incident had the unit before.
    NoSlot,
}

/// One slot's edges of a matching: (unit, cost).
type SlotEdges = Vec<(usize, i64)>;

/// One open slot of a fallback round.
struct RoundSlot {
    seq: u64,
    location: LatLng,
    kind: IncidentKind,
    severity: u8,
    /// Every unit the incident had: none of them is paged for it again.
    had: Arc<HashSet<String>>,
}

/// The round's costs, lexicographic in one number: a within-target edge
/// first, then any edge (a slot filled), then the slot's severity, then
/// less ETA. With k = min(slots, units) matched at most and E the largest
/// ETA: one severity step (C = k·E + 1) outweighs every ETA, one more slot
/// filled (B = 4·C·(k + 1) + 1) every severity and ETA, one more within
/// target (A = (B + 4·C)·(k + 1) + 1) all of them. With at most
/// [`MAX_ROUND_SLOTS`] slots and E at most 10 × 86 400 s (the largest
/// fallback reach the configuration allows), A stays below 4e16, inside
/// `matching::MAX_COST`.
fn round_costs(slots: &[RoundSlot], edges: &[Vec<(usize, u32, bool)>]) -> Vec<SlotEdges> {
    let units = edges.iter().flatten().map(|(u, _, _)| *u).max().map_or(0, |m| m + 1);
    let k = i64::try_from(slots.len().min(units)).unwrap_or(i64::MAX / 4) + 1;
    let max_eta = edges.iter().flatten().map(|(_, e, _)| i64::from(*e)).max().unwrap_or(0);
    let c = k * max_eta + 1;
    let b = 4 * c * k + 1;
    let a = (b + 4 * c) * k + 1;
    slots
        .iter()
        .zip(edges)
        .map(|(slot, e)| {
            let severity = i64::from(slot.severity.min(4));
            e.iter()
                .map(|&(u, eta, within)| (u, i64::from(eta) - b - severity * c - if within { a } else { 0 }))
                .collect()
        })
        .collect()
}
