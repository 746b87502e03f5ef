//! Every timer path of the escalation state machine, on a simulated clock:
//! timers are collected from the effects and fired in due order by `advance`,
//! so a test covers minutes of dispatch in microseconds, with no sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::tests::{T0, area, fire, ll, unit};
use super::*;
use crate::effects::{EventKind, NoEffects, Recorder};

pub(super) struct Sim {
    pub(super) d: Dispatcher,
    pub(super) fx: Recorder,
    timers: BinaryHeap<Reverse<(Timestamp, u64, TimerKeyOrd)>>,
    armed: u64,
    pub(super) now: Timestamp,
}

/// TimerKey with an order (by insertion) for the heap.
#[derive(PartialEq, Eq)]
struct TimerKeyOrd(TimerKey);
impl PartialOrd for TimerKeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerKeyOrd {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Sim {
    /// Four tier-3 units in a row north of the incident point, one of each other tier.
    pub(super) fn new() -> Sim {
        let units = vec![
            unit("T1-a", Tier::T1, ll(28.5801, 121.37)),
            unit("T3-a", Tier::T3, ll(28.581, 121.37)),
            unit("T3-b", Tier::T3, ll(28.582, 121.37)),
            unit("T3-c", Tier::T3, ll(28.583, 121.37)),
            unit("T3-d", Tier::T3, ll(28.584, 121.37)),
            unit("T5-a", Tier::T5, ll(28.59, 121.37)),
            unit("T10-a", Tier::T10, ll(28.60, 121.37)),
            unit("T10-far", Tier::T10, ll(28.90, 121.37)),
        ];
        Sim::with(DispatchConfig::defaults(), units)
    }

    /// A simulation of `units` under `config`, at T0.
    pub(super) fn with(config: DispatchConfig, units: Vec<Unit>) -> Sim {
        let d = Dispatcher::new(config, area(), units, DispatcherLimits::default()).unwrap();
        Sim { d, fx: Recorder::default(), timers: BinaryHeap::new(), armed: 0, now: T0 }
    }

    pub(super) fn collect_timers(&mut self) {
        for t in self.fx.take_timers() {
            self.armed += 1;
            self.timers.push(Reverse((t.at, self.armed, TimerKeyOrd(t.key))));
        }
    }

    /// Moves the clock to `t`, firing every timer due by then in order.
    pub(super) fn advance_to(&mut self, t: Timestamp) {
        self.collect_timers();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > t {
                break;
            }
            let Reverse((at, _, key)) = self.timers.pop().unwrap();
            self.now = at;
            self.d.fire(&key.0, at, &self.fx);
            self.collect_timers();
        }
        self.now = t;
    }

    pub(super) fn after_s(&mut self, seconds: u32) {
        self.advance_to(self.now.plus_s(seconds));
    }

    pub(super) fn report(&mut self) -> Incident {
        let inc = self.d.report(fire("ext-1", ll(28.58, 121.37)), self.now, &self.fx).unwrap().incident;
        self.collect_timers();
        inc
    }

    pub(super) fn ack(&mut self, unit_id: &str, incident_id: &str, accept: bool) -> Result<Unit, DispatchError> {
        let ack = Acknowledgement {
            unit_id: unit_id.into(),
            incident_id: incident_id.into(),
            accept,
            reason: if accept { String::new() } else { "crew busy".into() },
        };
        let r = self.d.acknowledge(&ack, self.now, &self.fx);
        self.collect_timers();
        r
    }

    pub(super) fn status(&mut self, unit_id: &str, to: UnitStatus) {
        self.d.set_unit_status(unit_id, to, self.now, &self.fx).unwrap();
        self.collect_timers();
    }

    /// A position fix of `unit_id` at `at`, measured now.
    pub(super) fn fix_at(&mut self, unit_id: &str, at: LatLng) {
        assert!(self.d.report_position(unit_id, at, self.now, self.now, &self.fx).unwrap());
        self.collect_timers();
    }

    /// A fresh fix at the incident point, then ON_SCENE: a verified arrival.
    pub(super) fn arrive(&mut self, unit_id: &str) {
        self.fix_at(unit_id, ll(28.58, 121.37));
        self.status(unit_id, UnitStatus::OnScene);
    }

    pub(super) fn tier(&self, id: &str, tier: Tier) -> TierResponse {
        self.d.get_incident(id).unwrap().tiers.into_iter().find(|t| t.tier == tier).unwrap()
    }

    pub(super) fn kinds(&self) -> Vec<(EventKind, Option<String>)> {
        self.fx.take_events().into_iter().map(|e| (e.kind, e.unit_id)).collect()
    }
}

fn ev(kind: EventKind, unit: &str) -> (EventKind, Option<String>) {
    (kind, Some(unit.to_string()))
}

#[test]
fn a_report_pages_every_assignment_and_arms_its_timers() {
    let mut sim = Sim::new();
    let inc = sim.report();
    let pages = sim.fx.take_pages();
    assert_eq!(pages.len(), 4);
    assert_eq!(pages[1].unit_id, "T3-a");
    assert_eq!(pages[1].deadline, T0.plus_s(180));
    assert_eq!(pages[1].attempt, 1);
    // One acknowledgement timer per page and one deadline per tier.
    assert_eq!(sim.timers.len(), 8);
    let kinds = sim.kinds();
    assert_eq!(kinds[0].0, EventKind::IncidentReported);
    assert!(kinds.contains(&ev(EventKind::UnitPaged, "T3-a")));
    assert_eq!(sim.d.pending_page("T3-a").unwrap().incident_id, inc.id);
}

#[test]
fn an_unacknowledged_page_times_out_and_the_next_unit_is_paged() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.fx.take_pages();
    sim.kinds();
    // Tier 3's ack timeout is 30 s: at 29 s its page is still waiting (tier 1's,
    // 15 s, has timed out and found nobody else).
    sim.after_s(29);
    let kinds = sim.kinds();
    assert!(kinds.contains(&ev(EventKind::UnitTimedOut, "T1-a")), "{kinds:?}");
    assert!(!kinds.iter().any(|(_, u)| u.as_deref() == Some("T3-a")), "{kinds:?}");
    sim.after_s(1);
    let kinds = sim.kinds();
    assert!(kinds.contains(&ev(EventKind::UnitTimedOut, "T3-a")), "{kinds:?}");
    assert!(kinds.contains(&ev(EventKind::UnitRepaged, "T3-b")), "{kinds:?}");
    let t3 = sim.tier(&inc.id, Tier::T3);
    assert_eq!(t3.assignments[0].state, AssignmentState::TimedOut);
    assert_eq!((t3.assignments[1].unit_id.as_str(), t3.assignments[1].attempt), ("T3-b", 2));
    assert_eq!(t3.assignments[1].paged_at, T0.plus_s(30));
    assert_eq!(sim.d.get_unit("T3-a").unwrap().status, UnitStatus::Unresponsive);
    let pages = sim.fx.take_pages();
    assert!(pages.iter().any(|p| p.unit_id == "T3-b" && p.attempt == 2));
    // UNRESPONSIVE units are not selected until they report AVAILABLE.
    let preview = sim.d.preview(ll(28.58, 121.37), IncidentKind::Fire, 1, sim.now).unwrap();
    assert_eq!(preview.tiers[1].assignments[0].unit_id, "T3-c");
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_decline_re_pages_at_once_and_frees_the_unit() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(5);
    sim.kinds();
    let unit = sim.ack("T3-a", &inc.id, false).unwrap();
    assert_eq!((unit.status, unit.incident_id), (UnitStatus::Available, None));
    let kinds = sim.kinds();
    assert_eq!(kinds, vec![ev(EventKind::UnitDeclined, "T3-a"), ev(EventKind::UnitRepaged, "T3-b")]);
    let t3 = sim.tier(&inc.id, Tier::T3);
    assert_eq!(t3.assignments[0].state, AssignmentState::Declined);
    assert_eq!(t3.assignments[1].paged_at, T0.plus_s(5));
    // The decliner is never paged again for this incident, even when it is the nearest.
    sim.ack("T3-b", &inc.id, false).unwrap();
    let t3 = sim.tier(&inc.id, Tier::T3);
    assert_eq!(t3.assignments[2].unit_id, "T3-c");
    sim.d.check_invariants().unwrap();
}

#[test]
fn after_max_attempts_the_tier_is_escalated() {
    let mut sim = Sim::new();
    let inc = sim.report();
    // Every other tier answers and arrives, so only tier 3 escalates.
    for unit in ["T1-a", "T5-a", "T10-a"] {
        sim.ack(unit, &inc.id, true).unwrap();
        sim.arrive(unit);
    }
    // Three pages of 30 s each go unanswered (max_attempts = 3).
    sim.after_s(90);
    let t3 = sim.tier(&inc.id, Tier::T3);
    assert_eq!(t3.assignments.len(), 3);
    assert!(t3.assignments.iter().all(|a| a.state == AssignmentState::TimedOut));
    assert_eq!(t3.state, TierState::Escalated);
    assert!(t3.note.contains("max_attempts"), "{}", t3.note);
    let kinds = sim.kinds();
    assert!(kinds.iter().any(|(k, _)| *k == EventKind::TierEscalated));
    // T3-d was never paged.
    assert_eq!(sim.d.get_unit("T3-d").unwrap().status, UnitStatus::Available);
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_tier_with_nobody_left_to_re_page_is_escalated() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(15); // tier 1's only unit times out
    let t1 = sim.tier(&inc.id, Tier::T1);
    assert_eq!(t1.state, TierState::Escalated);
    assert!(t1.note.contains("nobody left"), "{}", t1.note);
}

#[test]
fn a_missed_deadline_breaches_and_pages_the_next_tier_up() {
    let mut sim = Sim::new();
    let inc = sim.report();
    // Everybody acknowledges; tier 1 never arrives.
    sim.after_s(5);
    for unit in ["T1-a", "T3-a", "T5-a", "T10-a"] {
        sim.ack(unit, &inc.id, true).unwrap();
    }
    sim.kinds();
    sim.fx.take_events();
    sim.advance_to(T0.plus_s(60));
    let t1 = sim.tier(&inc.id, Tier::T1);
    assert_eq!(t1.state, TierState::Breached);
    let events = sim.fx.take_events();
    let kinds: Vec<(EventKind, Option<Tier>)> = events.iter().map(|e| (e.kind, e.tier)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::TierBreached, Some(Tier::T1)),
            (EventKind::UnitPaged, Some(Tier::T3)),
            (EventKind::TierEscalated, Some(Tier::T1)),
        ]
    );
    // The extra tier-3 unit is one not already on the incident (T3-a is).
    let t3 = sim.tier(&inc.id, Tier::T3);
    let extra = t3.assignments.last().unwrap();
    assert_eq!((extra.unit_id.as_str(), extra.paged_at), ("T3-b", T0.plus_s(60)));
    assert_eq!(extra.escalated_from, Some(Tier::T1));
    // Unanswered, the escalation page times out without re-paging tier 3 or
    // escalating it: tier 3's own slot (T3-a, acknowledged) is fine.
    sim.advance_to(T0.plus_s(95));
    let t3 = sim.tier(&inc.id, Tier::T3);
    assert_eq!(t3.assignments.last().unwrap().state, AssignmentState::TimedOut);
    assert_eq!(t3.assignments.len(), 2);
    assert_eq!(t3.state, TierState::Paging);
    assert!(sim.fx.take_pages().iter().any(|p| p.unit_id == "T3-b"));
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_tier_10_breach_reaches_beyond_the_fallback_radius() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(1);
    sim.ack("T10-a", &inc.id, true).unwrap();
    sim.ack("T5-a", &inc.id, true).unwrap();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.ack("T1-a", &inc.id, true).unwrap();
    sim.advance_to(T0.plus_s(600));
    let t10 = sim.tier(&inc.id, Tier::T10);
    assert_eq!(t10.state, TierState::Breached);
    // T10-far is ~35 km away: beyond 2 x 600 s, paged all the same, by tier 10's own breach.
    let extra = t10.assignments.last().unwrap();
    assert_eq!((extra.unit_id.as_str(), extra.paged_at), ("T10-far", T0.plus_s(600)));
    assert_eq!(extra.escalated_from, Some(Tier::T10));
    assert!(!extra.within_target);
    // Tier 5's breach at 300 s found no tier-10 unit within tier 10's reach
    // (T10-a is on the incident): it did not reach out to T10-far.
    assert!(t10.assignments.iter().all(|a| a.paged_at != T0.plus_s(300)));
}

#[test]
fn units_on_scene_in_time_meet_the_tier_and_its_timers_stop() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(10);
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.after_s(100);
    sim.arrive("T3-a");
    assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Met);
    sim.kinds();
    sim.advance_to(T0.plus_s(1000));
    assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Met, "the deadline does not undo MET");
    assert!(!sim.fx.take_events().iter().any(|e| e.kind == EventKind::TierBreached && e.tier == Some(Tier::T3)));
}

#[test]
fn a_unit_re_assigned_to_another_tier_can_accept_its_new_page() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, false).unwrap();
    sim.d.assign_unit(&inc.id, "T3-a", Tier::T5, sim.now, &sim.fx).unwrap();
    let unit = sim.ack("T3-a", &inc.id, true).unwrap();
    assert_eq!(unit.status, UnitStatus::EnRoute);
    let t5 = sim.tier(&inc.id, Tier::T5);
    assert!(t5.assignments.iter().any(|a| a.unit_id == "T3-a" && a.state == AssignmentState::Acknowledged));
}

#[test]
fn a_met_tier_withdraws_its_other_pages_instead_of_timing_them_out() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.d.assign_unit(&inc.id, "T3-d", Tier::T3, sim.now, &sim.fx).unwrap();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.after_s(5);
    sim.arrive("T3-a");
    assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Met);
    sim.after_s(30);
    let unit = sim.d.get_unit("T3-d").unwrap();
    assert_eq!(unit.status, UnitStatus::Available, "withdrawn, not UNRESPONSIVE");
    sim.d.check_invariants().unwrap();
}

#[test]
fn late_and_repeated_acknowledgements_are_refused_with_the_state() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(30); // T3-a timed out
    let err = sim.ack("T3-a", &inc.id, true).unwrap_err();
    assert!(matches!(err, DispatchError::FailedPrecondition(_)));
    assert!(err.to_string().contains("TIMED_OUT"), "{err}");
    sim.ack("T3-b", &inc.id, true).unwrap();
    let err = sim.ack("T3-b", &inc.id, true).unwrap_err();
    assert!(err.to_string().contains("ACKNOWLEDGED"), "{err}");
    let err = sim.ack("T3-d", &inc.id, true).unwrap_err();
    assert!(err.to_string().contains("was not paged"), "{err}");
    assert!(matches!(sim.ack("nope", &inc.id, true), Err(DispatchError::UnitNotFound(_))));
    assert!(matches!(sim.ack("T3-b", "inc-000099", true), Err(DispatchError::IncidentNotFound(_))));
}

#[test]
fn closing_cancels_every_timer_and_returning_units_come_back() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(5);
    sim.ack("T5-a", &inc.id, true).unwrap();
    sim.d.close_incident(&inc.id, "", sim.now, &sim.fx).unwrap();
    sim.collect_timers();
    sim.kinds();
    sim.fx.take_pages();
    // Every ack timer and deadline comes due: none does anything.
    sim.advance_to(T0.plus_s(1000));
    assert!(sim.kinds().is_empty());
    assert!(sim.fx.take_pages().is_empty());
    assert_eq!(sim.d.get_unit("T3-a").unwrap().status, UnitStatus::Available);
    assert_eq!(sim.d.get_unit("T5-a").unwrap().status, UnitStatus::Returning);
    // After return_to_available_s (1800 s) the returning unit is available again.
    sim.advance_to(T0.plus_s(5 + 1800));
    assert_eq!(sim.d.get_unit("T5-a").unwrap().status, UnitStatus::Available);
    assert_eq!(sim.kinds(), vec![(EventKind::UnitStatusChanged, Some("T5-a".into()))]);
    sim.d.check_invariants().unwrap();
}

#[test]
fn dispatcher_overrides_go_through_the_same_machine() {
    let mut sim = Sim::new();
    let inc = sim.report();
    // Assign T3-d by hand to tier 3: paged, with its own ack timer.
    let updated = sim.d.assign_unit(&inc.id, "T3-d", Tier::T3, sim.now, &sim.fx).unwrap();
    sim.collect_timers();
    assert!(updated.tiers[1].assignments.iter().any(|a| a.unit_id == "T3-d" && a.state == AssignmentState::Paged));
    assert!(sim.d.assign_unit(&inc.id, "T3-d", Tier::T3, sim.now, &sim.fx).is_err(), "not twice");
    let err = sim.d.assign_unit(&inc.id, "T1-a", Tier::T3, sim.now, &sim.fx).unwrap_err().to_string();
    assert!(err.contains("already on incident"), "{err}");
    sim.d.set_unit_status("T3-d", UnitStatus::EnRoute, sim.now, &sim.fx).unwrap();
    let other = sim.d.report(fire("ext-2", ll(28.58, 121.37)), sim.now, &sim.fx).unwrap().incident;
    let err = sim.d.assign_unit(&other.id, "T3-d", Tier::T3, sim.now, &sim.fx).unwrap_err().to_string();
    assert!(err.contains("EN_ROUTE") && err.contains(&inc.id), "{err}");
    // Release T3-a: available again, and the tier is not re-paged by itself.
    let released = sim.d.release_unit("T3-a", "sent elsewhere", sim.now, &sim.fx).unwrap();
    assert_eq!(released.status, UnitStatus::Available);
    assert!(sim.d.release_unit("T3-a", "", sim.now, &sim.fx).is_err());
    sim.d.check_invariants().unwrap();
}

#[test]
fn positions_move_units_and_stale_reports_are_ignored() {
    let sim = Sim::new();
    let t = |s: u32| T0.plus_s(s);
    assert!(sim.d.report_position("T3-d", ll(28.5802, 121.37), t(10), t(10), &sim.fx).unwrap());
    // An older report arriving late changes nothing.
    assert!(!sim.d.report_position("T3-d", ll(28.70, 121.37), t(5), t(11), &sim.fx).unwrap());
    assert_eq!(sim.d.get_unit("T3-d").unwrap().position, ll(28.5802, 121.37));
    // The index follows: T3-d is now the nearest tier-3 unit.
    let preview = sim.d.preview(ll(28.58, 121.37), IncidentKind::Fire, 1, t(12)).unwrap();
    assert_eq!(preview.tiers[1].assignments[0].unit_id, "T3-d");
    // Feed events are rate-limited per unit (5 s), positions are not.
    assert!(sim.d.report_position("T3-d", ll(28.5803, 121.37), t(12), t(12), &sim.fx).unwrap());
    let events = sim.fx.take_events();
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::UnitPosition).count(), 1);
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_terminal_that_reconnects_finds_its_page_waiting() {
    let mut sim = Sim::new();
    let inc = sim.report();
    let page = sim.d.pending_page("T3-a").unwrap();
    assert_eq!((page.incident_id.as_str(), page.attempt, page.tier), (inc.id.as_str(), 1, Tier::T3));
    sim.ack("T3-a", &inc.id, true).unwrap();
    assert!(sim.d.pending_page("T3-a").is_none(), "acknowledged: nothing waits");
    assert!(sim.d.pending_page("T3-d").is_none());
}

/// What the store is handed is, entity by entity, exactly the state in memory:
/// a journal that applies the last record of each entity restores the
/// dispatcher as it was, and re-arms the same timers.
#[test]
fn stored_state_equals_memory_and_restores_it() {
    let mut sim = Sim::new();
    let first = sim.report();
    sim.after_s(5);
    sim.ack("T5-a", &first.id, true).unwrap();
    sim.ack("T3-a", &first.id, false).unwrap();
    sim.after_s(30); // timeouts and re-pages
    let second = sim.d.report(fire("ext-2", ll(28.58, 121.37)), sim.now, &sim.fx).unwrap().incident;
    sim.collect_timers();
    sim.d.close_incident(&second.id, "", sim.now, &sim.fx).unwrap();
    sim.d.report_position("T3-d", ll(28.5805, 121.37), sim.now, sim.now, &sim.fx).unwrap();
    sim.advance_to(T0.plus_s(70)); // a deadline passes: breach and escalation

    let stored_incidents = sim.fx.stored_incidents.lock().unwrap().clone();
    let stored_units = sim.fx.stored_units.lock().unwrap().clone();
    let archived = sim.fx.archived_incidents.lock().unwrap().clone();
    // The closed one left the store's live table for history.
    assert_eq!((stored_incidents.len(), archived.len()), (1, 1));
    for (id, incident) in stored_incidents.iter().chain(archived.iter().map(|i| (&i.id, i))) {
        assert_eq!(&sim.d.get_incident(id).unwrap(), incident, "incident {id}");
    }
    let untouched = Sim::new();
    for unit in sim.d.list_units(&UnitFilter::default(), 100, None).items {
        match stored_units.get(&*unit.id) {
            Some(stored) => assert_eq!(stored, &unit, "unit {}", unit.id),
            None => {
                assert_eq!(untouched.d.get_unit(&unit.id).unwrap(), unit, "unit {} changed but not stored", unit.id)
            }
        }
    }

    let restored = Dispatcher::restore(
        DispatchConfig::defaults(),
        area(),
        untouched.d.list_units(&UnitFilter::default(), 100, None).items,
        stored_units.into_values().collect(),
        stored_incidents.into_values().collect(),
        archived,
        DispatcherLimits::default(),
        sim.now,
    )
    .unwrap()
    .0;
    restored.check_invariants().unwrap();
    assert_eq!(restored.list_incidents(None, 10, None).unwrap(), sim.d.list_incidents(None, 10, None).unwrap());
    assert_eq!(
        restored.list_units(&UnitFilter::default(), 100, None),
        sim.d.list_units(&UnitFilter::default(), 100, None)
    );
    assert_eq!(restored.timers_to_rearm(), sim.d.timers_to_rearm());
    // The idempotency index and the incident sequence came back too.
    assert!(restored.report(fire("ext-1", ll(28.58, 121.37)), sim.now, &NoEffects).unwrap().duplicate);
    let third = restored.report(fire("ext-3", ll(28.58, 121.37)), sim.now, &NoEffects).unwrap().incident;
    assert_eq!(third.id, "inc-000003");
}

/// A unit stored by a later operation (here: pointing at an incident whose
/// report never reached the journal) is freed on restore; an incident holding a
/// unit whose stored state moved on releases it.
#[test]
fn restore_reconciles_references_left_by_a_crash_between_operations() {
    let base = Sim::new();
    let mut ghost_holder = base.d.get_unit("T3-a").unwrap();
    ghost_holder.status = UnitStatus::Paged;
    ghost_holder.incident_id = Some("inc-000007".into()); // never stored
    let live = Sim::new();
    let inc = live.d.report(fire("ext-1", ll(28.58, 121.37)), T0, &NoEffects).unwrap().incident;
    let mut moved_on = live.d.get_unit("T5-a").unwrap();
    moved_on.status = UnitStatus::Available;
    moved_on.incident_id = None; // stored by a later operation; the incident's release was not
    let mut stored_units = vec![ghost_holder, moved_on];
    for id in ["T1-a", "T10-a"] {
        stored_units.push(live.d.get_unit(id).unwrap());
    }
    let restored = Dispatcher::restore(
        DispatchConfig::defaults(),
        area(),
        base.d.list_units(&UnitFilter::default(), 100, None).items,
        stored_units,
        vec![inc.clone()],
        vec![],
        DispatcherLimits::default(),
        T0,
    )
    .unwrap()
    .0;
    restored.check_invariants().unwrap();
    assert_eq!(restored.get_unit("T3-a").unwrap().status, UnitStatus::Available);
    let t5 = restored.get_incident(&inc.id).unwrap().tiers[2].clone();
    assert_eq!(t5.assignments[0].state, AssignmentState::Released);
    // T3-a's own assignment in inc-000001 (reserved by the stored report) was
    // overwritten by the ghost state: it is released too, consistently.
    let t3 = restored.get_incident(&inc.id).unwrap().tiers[1].clone();
    assert_eq!(t3.assignments[0].state, AssignmentState::Released);
}

/// The incident point of `Sim::report`, and one `north_m` metres north of it.
fn north_of_incident(north_m: f64) -> LatLng {
    ll(28.58 + north_m / 111_195.0, 121.37)
}

/// The events of `kind` since the last take, as (unit, detail).
fn details(events: &[crate::effects::Event], kind: EventKind) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.unit_id.clone().unwrap_or_default(), e.detail.clone()))
        .collect()
}

fn t3_assignment(sim: &Sim, id: &str, unit_id: &str) -> Assignment {
    sim.tier(id, Tier::T3).assignments.into_iter().rev().find(|a| a.unit_id == unit_id).unwrap()
}

#[test]
fn an_arrival_with_a_fresh_fix_nearby_is_verified_and_meets_the_tier() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(10);
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.after_s(87);
    sim.fix_at("T3-a", north_of_incident(40.0));
    sim.after_s(3);
    sim.fx.take_events();
    sim.status("T3-a", UnitStatus::OnScene);
    let events = sim.fx.take_events();
    assert_eq!(
        details(&events, EventKind::UnitOnScene),
        [("T3-a".to_string(), "arrival verified: 40 m from the incident, fix 3 s old".to_string())]
    );
    assert!(details(&events, EventKind::UnitArrivalUnverified).is_empty());
    assert!(events.iter().any(|e| e.kind == EventKind::TierMet && e.tier == Some(Tier::T3)));
    let a = t3_assignment(&sim, &inc.id, "T3-a");
    assert_eq!(a.state, AssignmentState::OnScene);
    assert_eq!((a.acknowledged_at, a.on_scene_at), (Some(T0.plus_s(10)), Some(T0.plus_s(100))));
    assert!(a.arrival_verified && a.arrival_confirmed_by.is_empty());
    assert_eq!(a.released_at, None);
    assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Met);
    sim.d.check_invariants().unwrap();
}

/// Too far, too old, no fix: on scene all the same, unverified, and the tier
/// is not met by it (it breaches at its deadline).
#[test]
fn an_arrival_too_far_too_old_or_without_a_fix_is_unverified_and_meets_nothing() {
    /// When (s after the report) and where the unit's last fix was, if any.
    type Fix = Option<(u32, LatLng)>;
    let cases: [(&str, Fix, &str); 3] = [
        (
            "too far",
            Some((95, north_of_incident(2964.0))),
            "2964 m from the incident (dispatch.on_scene_radius_m = 150)",
        ),
        ("too old", Some((0, north_of_incident(10.0))), "last fix 100 s old (dispatch.on_scene_fix_max_age_s = 99)"),
        ("no fix", None, "no position fix"),
    ];
    for (case, fix, why) in cases {
        let mut sim = Sim::new();
        // A 100 s old fix is stale with a max age of 99 s.
        sim.d.config.on_scene_fix_max_age_s = if case == "too old" { 99 } else { 120 };
        let inc = sim.report();
        sim.ack("T3-a", &inc.id, true).unwrap();
        if let Some((at_s, position)) = fix {
            sim.after_s(at_s);
            sim.fix_at("T3-a", position);
        }
        sim.advance_to(T0.plus_s(100));
        sim.fx.take_events();
        sim.status("T3-a", UnitStatus::OnScene);
        let events = sim.fx.take_events();
        assert_eq!(
            details(&events, EventKind::UnitArrivalUnverified),
            [("T3-a".to_string(), why.to_string())],
            "{case}"
        );
        let unverified = events.iter().find(|e| e.kind == EventKind::UnitArrivalUnverified).unwrap();
        assert_eq!((unverified.tier, unverified.attempt), (Some(Tier::T3), 1), "{case}");
        assert!(!events.iter().any(|e| matches!(e.kind, EventKind::UnitOnScene | EventKind::TierMet)), "{case}");
        assert_eq!(sim.d.get_unit("T3-a").unwrap().status, UnitStatus::OnScene, "{case}");
        let a = t3_assignment(&sim, &inc.id, "T3-a");
        assert_eq!((a.state, a.on_scene_at, a.arrival_verified), (AssignmentState::OnScene, Some(sim.now), false));
        assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Paging, "{case}");
        sim.advance_to(T0.plus_s(180));
        assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Breached, "{case}");
        let breach = sim
            .fx
            .take_events()
            .into_iter()
            .find(|e| e.kind == EventKind::TierBreached && e.tier == Some(Tier::T3))
            .unwrap();
        assert_eq!(breach.detail, "0 of 1 on scene at the 180 s deadline, 1 more on scene, unverified", "{case}");
        sim.d.check_invariants().unwrap();
    }
}

#[test]
fn the_too_old_message_has_the_configured_default() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.fix_at("T3-a", north_of_incident(10.0));
    sim.advance_to(T0.plus_s(600));
    sim.fx.take_events();
    // The tier breached long ago; the arrival is still recorded, unverified.
    sim.status("T3-a", UnitStatus::OnScene);
    let events = sim.fx.take_events();
    assert_eq!(
        details(&events, EventKind::UnitArrivalUnverified),
        [("T3-a".to_string(), "last fix 600 s old (dispatch.on_scene_fix_max_age_s = 120)".to_string())]
    );
    let a = t3_assignment(&sim, &inc.id, "T3-a");
    assert_eq!((a.acknowledged_at, a.on_scene_at), (Some(T0), Some(T0.plus_s(600))));
}

#[test]
fn a_later_fix_within_the_radius_verifies_the_arrival() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.after_s(100);
    sim.fix_at("T3-a", north_of_incident(400.0));
    sim.status("T3-a", UnitStatus::OnScene);
    assert!(!t3_assignment(&sim, &inc.id, "T3-a").arrival_verified);
    sim.fx.take_events();
    // Still too far: nothing.
    sim.after_s(5);
    sim.fix_at("T3-a", north_of_incident(200.0));
    assert!(details(&sim.fx.take_events(), EventKind::UnitOnScene).is_empty());
    // Within the radius (and after the deadline was reported against: 100 s).
    sim.after_s(5);
    sim.fix_at("T3-a", north_of_incident(60.0));
    let events = sim.fx.take_events();
    assert_eq!(
        details(&events, EventKind::UnitOnScene),
        [("T3-a".to_string(), "arrival verified by a later fix: 60 m from the incident".to_string())]
    );
    let met = events.iter().position(|e| e.kind == EventKind::TierMet).expect("tier 3 met");
    assert!(met > events.iter().position(|e| e.kind == EventKind::UnitOnScene).unwrap());
    let a = t3_assignment(&sim, &inc.id, "T3-a");
    assert!(a.arrival_verified && a.arrival_confirmed_by.is_empty());
    assert_eq!(a.on_scene_at, Some(T0.plus_s(100)), "the arrival's time is the report's");
    assert_eq!(sim.tier(&inc.id, Tier::T3).state, TierState::Met);
    // What the store holds is the verified state.
    assert_eq!(sim.fx.stored_incidents.lock().unwrap()[&inc.id], sim.d.get_incident(&inc.id).unwrap());
    // Once verified, another fix says nothing more; neither does a fix of a
    // unit not on scene.
    sim.after_s(5);
    sim.fix_at("T3-a", north_of_incident(10.0));
    sim.fix_at("T5-a", north_of_incident(10.0));
    assert!(details(&sim.fx.take_events(), EventKind::UnitOnScene).is_empty());
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_dispatcher_confirms_an_unverified_arrival_once() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.ack("T5-a", &inc.id, true).unwrap();
    sim.after_s(100);
    sim.status("T3-a", UnitStatus::OnScene); // no fix
    sim.after_s(10);
    sim.fx.take_events();
    let confirmed = sim.d.confirm_arrival(&inc.id, "T3-a", "zhang.wei", sim.now, &sim.fx).unwrap();
    let events = sim.fx.take_events();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::ArrivalConfirmed, EventKind::TierMet]);
    let e = &events[0];
    assert_eq!(e.detail, "arrival confirmed by zhang.wei");
    assert_eq!(
        (e.incident_id.as_deref(), e.unit_id.as_deref(), e.tier, e.attempt),
        (Some(inc.id.as_str()), Some("T3-a"), Some(Tier::T3), 1)
    );
    let a = confirmed.tiers[1].assignments[0].clone();
    assert!(a.arrival_verified);
    assert_eq!(a.arrival_confirmed_by, "zhang.wei");
    assert_eq!(confirmed.tiers[1].state, TierState::Met);
    assert_eq!(confirmed, sim.d.get_incident(&inc.id).unwrap());
    assert_eq!(sim.fx.stored_incidents.lock().unwrap()[&inc.id], confirmed);
    // Again: unchanged, no event.
    let again = sim.d.confirm_arrival(&inc.id, "T3-a", "li.na", sim.now, &sim.fx).unwrap();
    assert_eq!(again, confirmed);
    assert!(sim.fx.take_events().is_empty());
    // A verified arrival needs no confirmation: unchanged too.
    sim.arrive("T5-a");
    sim.fx.take_events();
    let t5 = sim.d.confirm_arrival(&inc.id, "T5-a", "li.na", sim.now, &sim.fx).unwrap();
    assert!(t5.tiers[2].assignments[0].arrival_confirmed_by.is_empty());
    assert!(sim.fx.take_events().is_empty());
    sim.d.check_invariants().unwrap();
}

#[test]
fn confirming_refuses_what_is_not_an_arrival() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, true).unwrap();
    let confirm = |unit: &str, incident: &str| sim.d.confirm_arrival(incident, unit, "zhang.wei", sim.now, &NoEffects);
    let err = confirm("T3-a", &inc.id).unwrap_err();
    assert!(matches!(err, DispatchError::FailedPrecondition(_)), "{err:?}");
    assert!(err.to_string().contains("T3-a") && err.to_string().contains("ACKNOWLEDGED"), "{err}");
    let err = confirm("T3-d", &inc.id).unwrap_err();
    assert!(matches!(err, DispatchError::FailedPrecondition(_)) && err.to_string().contains("T3-d"), "{err}");
    assert!(matches!(confirm("nope", &inc.id), Err(DispatchError::UnitNotFound(_))));
    assert!(matches!(confirm("T3-a", "inc-000099"), Err(DispatchError::IncidentNotFound(_))));
    assert!(matches!(confirm("T3-a", "garbage"), Err(DispatchError::IncidentNotFound(_))));
}

/// The deadline is measured against the ON_SCENE report: reported in time and
/// verified after the deadline (but before its timer fired) meets the tier;
/// once the deadline has breached the tier, a verification changes nothing.
#[test]
fn the_deadline_is_measured_against_the_arrival_report() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.ack("T3-a", &inc.id, true).unwrap();
    sim.ack("T5-a", &inc.id, true).unwrap();
    sim.after_s(170);
    sim.status("T3-a", UnitStatus::OnScene); // unverified, 10 s before tier 3's deadline
    sim.status("T5-a", UnitStatus::OnScene); // unverified, in time for tier 5's (300 s)
    let late = T0.plus_s(185); // tier 3's deadline timer (180 s) has not fired yet
    let confirmed = sim.d.confirm_arrival(&inc.id, "T3-a", "zhang.wei", late, &sim.fx).unwrap();
    assert_eq!(confirmed.tiers[1].state, TierState::Met);
    // Tier 5: its deadline fires first, then the confirmation comes.
    sim.advance_to(T0.plus_s(300));
    assert_eq!(sim.tier(&inc.id, Tier::T5).state, TierState::Breached);
    let after = sim.d.confirm_arrival(&inc.id, "T5-a", "zhang.wei", sim.now, &sim.fx).unwrap();
    assert_eq!(after.tiers[2].state, TierState::Breached);
    assert!(after.tiers[2].assignments[0].arrival_verified);
    // And a verified arrival reported after the deadline never meets it.
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(10);
    sim.ack("T1-a", &inc.id, true).unwrap();
    sim.now = T0.plus_s(61); // tier 1's deadline (60 s) has not fired yet
    sim.fix_at("T1-a", north_of_incident(5.0));
    sim.fx.take_events();
    sim.d.set_unit_status("T1-a", UnitStatus::OnScene, sim.now, &sim.fx).unwrap();
    assert!(details(&sim.fx.take_events(), EventKind::UnitOnScene).len() == 1);
    assert_eq!(sim.tier(&inc.id, Tier::T1).state, TierState::Paging, "verified, but 1 s late");
}

#[test]
fn assignments_record_when_they_were_answered_and_ended() {
    let mut sim = Sim::new();
    let inc = sim.report();
    sim.after_s(5);
    sim.ack("T3-a", &inc.id, false).unwrap(); // declined at 5 s; T3-b re-paged
    sim.ack("T5-a", &inc.id, true).unwrap();
    sim.after_s(5);
    sim.status("T10-a", UnitStatus::EnRoute); // EN_ROUTE while PAGED acknowledges
    sim.arrive("T3-b"); // so does ON_SCENE while PAGED
    sim.advance_to(T0.plus_s(15)); // tier 1's page times out
    let incident = sim.d.get_incident(&inc.id).unwrap();
    let a = |tier: usize, i: usize| incident.tiers[tier].assignments[i].clone();
    assert_eq!(
        (a(0, 0).state, a(0, 0).released_at, a(0, 0).acknowledged_at),
        (AssignmentState::TimedOut, Some(T0.plus_s(15)), None)
    );
    assert_eq!((a(1, 0).state, a(1, 0).released_at), (AssignmentState::Declined, Some(T0.plus_s(5))));
    assert_eq!((a(1, 1).acknowledged_at, a(1, 1).on_scene_at), (Some(T0.plus_s(10)), Some(T0.plus_s(10))));
    assert_eq!((a(2, 0).acknowledged_at, a(2, 0).released_at), (Some(T0.plus_s(5)), None));
    assert_eq!(a(3, 0).acknowledged_at, Some(T0.plus_s(10)));
    // Released by a dispatcher: ended then.
    sim.d.release_unit("T5-a", "", T0.plus_s(20), &sim.fx).unwrap();
    assert_eq!(sim.tier(&inc.id, Tier::T5).assignments[0].released_at, Some(T0.plus_s(20)));
}
