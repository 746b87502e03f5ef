use super::*;
use crate::area::Place;
use geo::{LineString, MultiPolygon, Polygon};
use std::sync::Barrier;

use crate::effects::NoEffects;

/// The effect-free forms of the operations, for tests about state only.
trait NoFx {
    fn report_nofx(&self, new: NewIncident, now: Timestamp) -> Result<Reported, DispatchError>;
    fn close_nofx(&self, id: &str, now: Timestamp) -> Result<Incident, DispatchError>;
    fn status_nofx(&self, id: &str, to: UnitStatus, now: Timestamp) -> Result<Unit, DispatchError>;
}

impl NoFx for Dispatcher {
    fn report_nofx(&self, new: NewIncident, now: Timestamp) -> Result<Reported, DispatchError> {
        self.report(new, now, &NoEffects)
    }
    fn close_nofx(&self, id: &str, now: Timestamp) -> Result<Incident, DispatchError> {
        self.close_incident(id, "", now, &NoEffects)
    }
    fn status_nofx(&self, id: &str, to: UnitStatus, now: Timestamp) -> Result<Unit, DispatchError> {
        self.set_unit_status(id, to, now, &NoEffects)
    }
}

pub(super) const T0: Timestamp = Timestamp { unix_ms: 1_780_000_000_000 };

pub(super) fn ll(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).unwrap()
}

pub(super) fn unit(id: &str, tier: Tier, at: LatLng) -> Unit {
    Unit {
        id: Arc::from(id),
        name: format!("{id} station"),
        tier,
        home: at,
        position: at,
        status: UnitStatus::Available,
        town: "路桥街道".into(),
        village: String::new(),
        crew: 5,
        capabilities: vec!["fire".into()],
        incident_id: None,
        position_at: None,
        position_event_at: None,
        returning_since: None,
    }
}

pub(super) fn area() -> ServiceArea {
    let ring = LineString::from(vec![(121.2, 28.4), (121.7, 28.4), (121.7, 28.7), (121.2, 28.7), (121.2, 28.4)]);
    ServiceArea::new(
        MultiPolygon(vec![Polygon::new(ring, vec![])]),
        vec![Place { town: "路桥街道".into(), village: "中心村".into(), center: ll(28.58, 121.37) }],
    )
}

/// One unit of each tier close to (28.58, 121.37), plus a second tier-3 unit further out.
pub(super) fn dispatcher() -> Dispatcher {
    let units = vec![
        unit("T1-a", Tier::T1, ll(28.5801, 121.37)),
        unit("T3-a", Tier::T3, ll(28.581, 121.37)),
        unit("T3-b", Tier::T3, ll(28.583, 121.37)),
        unit("T5-a", Tier::T5, ll(28.59, 121.37)),
        unit("T10-a", Tier::T10, ll(28.60, 121.37)),
    ];
    Dispatcher::new(DispatchConfig::defaults(), area(), units, DispatcherLimits::default()).unwrap()
}

pub(super) fn fire(external_id: &str, at: LatLng) -> NewIncident {
    NewIncident {
        external_id: external_id.into(),
        location: at,
        kind: IncidentKind::Fire,
        severity: 2,
        address: String::new(),
        description: String::new(),
        grid_id: String::new(),
    }
}

#[test]
fn report_reserves_one_unit_per_tier() {
    let d = dispatcher();
    let r = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap();
    assert!(!r.duplicate);
    let inc = r.incident;
    assert_eq!(inc.id, "inc-000001");
    assert_eq!(inc.town, "路桥街道");
    assert_eq!(inc.tiers.len(), 4);
    let picked: Vec<&str> = inc.tiers.iter().map(|t| t.assignments[0].unit_id.as_str()).collect();
    assert_eq!(picked, ["T1-a", "T3-a", "T5-a", "T10-a"]);
    for t in &inc.tiers {
        assert_eq!(t.state, TierState::Paging, "{:?}", t);
        assert_eq!(t.deadline, T0.plus_s(t.target_s));
        assert!(t.assignments[0].within_target);
    }
    for id in picked {
        let u = d.get_unit(id).unwrap();
        assert_eq!((u.status, u.incident_id.as_deref()), (UnitStatus::Paged, Some("inc-000001")));
    }
    d.check_invariants().unwrap();
}

#[test]
fn a_repeated_external_id_returns_the_stored_incident_and_reserves_nothing() {
    let d = dispatcher();
    let first = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap();
    let again = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0.plus_s(5)).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.incident, first.incident);
    assert_eq!(d.incident_count(), 1);
    // The second tier-3 unit is still free.
    assert_eq!(d.get_unit("T3-b").unwrap().status, UnitStatus::Available);
}

#[test]
fn the_next_incident_takes_the_next_candidate_or_goes_short() {
    let d = dispatcher();
    d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap();
    let second = d.report_nofx(fire("ext-2", ll(28.58, 121.37)), T0).unwrap().incident;
    let t3 = &second.tiers[1];
    assert_eq!(t3.assignments[0].unit_id, "T3-b");
    let t1 = &second.tiers[0];
    assert_eq!(t1.state, TierState::Short);
    assert!(t1.assignments.is_empty());
    assert!(t1.note.contains("1 slot(s) waiting for a unit"), "{}", t1.note);
    d.check_invariants().unwrap();
}

#[test]
fn far_outside_the_area_is_accepted_with_every_tier_short() {
    let d = dispatcher();
    let inc = d.report_nofx(fire("far", ll(39.9, 116.4)), T0).unwrap().incident;
    assert!(inc.outside_service_area);
    assert!(inc.town.is_empty());
    assert!(inc.tiers.iter().all(|t| t.state == TierState::Short && t.assignments.is_empty() && !t.note.is_empty()));
}

#[test]
fn bad_severity_and_empty_external_id_name_the_field() {
    let d = dispatcher();
    let mut bad = fire("x", ll(28.58, 121.37));
    bad.severity = 5;
    assert!(matches!(d.report_nofx(bad, T0), Err(DispatchError::InvalidArgument { field, .. }) if field == "severity"));
    assert!(
        matches!(d.report_nofx(fire("", ll(28.58, 121.37)), T0), Err(DispatchError::InvalidArgument { field, .. }) if field == "external_id")
    );
    assert_eq!(d.incident_count(), 0);
}

#[test]
fn preview_reserves_nothing() {
    let d = dispatcher();
    let p = d.preview(ll(28.58, 121.37), IncidentKind::Fire, 2, T0).unwrap();
    assert_eq!(p.tiers.len(), 4);
    assert_eq!(p.tiers[0].assignments[0].unit_id, "T1-a");
    assert!(d.list_units(&UnitFilter::default(), 100, None).items.iter().all(|u| u.status == UnitStatus::Available));
}

#[test]
fn close_releases_units_and_cancels_open_tiers() {
    let d = dispatcher();
    let inc = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap().incident;
    d.status_nofx("T5-a", UnitStatus::EnRoute, T0.plus_s(10)).unwrap();
    let closed = d.close_nofx(&inc.id, T0.plus_s(20)).unwrap();
    assert_eq!(closed.status, IncidentStatus::Closed);
    assert!(closed.tiers.iter().all(|t| t.state == TierState::Cancelled));
    assert!(closed.tiers.iter().flat_map(|t| &t.assignments).all(|a| a.state == AssignmentState::Released));
    assert_eq!(d.get_unit("T1-a").unwrap().status, UnitStatus::Available);
    assert_eq!(d.get_unit("T5-a").unwrap().status, UnitStatus::Returning);
    assert_eq!(d.close_nofx(&inc.id, T0.plus_s(30)).unwrap(), closed, "closing twice changes nothing");
    d.check_invariants().unwrap();
    // RETURNING is not dispatchable until it reports AVAILABLE.
    let next = d.report_nofx(fire("ext-2", ll(28.58, 121.37)), T0.plus_s(40)).unwrap().incident;
    assert!(next.tiers[2].assignments.is_empty());
    d.status_nofx("T5-a", UnitStatus::Available, T0.plus_s(50)).unwrap();
}

#[test]
fn on_scene_by_the_deadline_meets_the_tier() {
    let d = dispatcher();
    let inc = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap().incident;
    d.status_nofx("T3-a", UnitStatus::EnRoute, T0.plus_s(20)).unwrap();
    // Each arrival is backed by a fresh fix at the incident (see arrival.rs).
    let fix = |unit: &str, s: u32| d.report_position(unit, inc.location, T0.plus_s(s), T0.plus_s(s), &NoEffects);
    fix("T3-a", 100).unwrap();
    d.status_nofx("T3-a", UnitStatus::OnScene, T0.plus_s(100)).unwrap();
    // Tier 1 arrives late: on scene, but not MET.
    fix("T1-a", 61).unwrap();
    d.status_nofx("T1-a", UnitStatus::OnScene, T0.plus_s(61)).unwrap();
    let inc = d.get_incident(&inc.id).unwrap();
    assert_eq!(inc.tiers[1].state, TierState::Met);
    assert_eq!(inc.tiers[1].assignments[0].state, AssignmentState::OnScene);
    assert_eq!(inc.tiers[0].state, TierState::Paging);
}

#[test]
fn illegal_status_changes_are_refused_with_the_current_state() {
    let d = dispatcher();
    d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap();
    let err = d.status_nofx("T1-a", UnitStatus::OutOfService, T0).unwrap_err();
    assert!(err.to_string().contains("PAGED"), "{err}");
    assert!(matches!(d.status_nofx("nope", UnitStatus::Available, T0), Err(DispatchError::UnitNotFound(_))));
    // An out-of-service unit is never selected.
    d.status_nofx("T3-b", UnitStatus::OutOfService, T0).unwrap();
    let inc = d.report_nofx(fire("ext-2", ll(28.58, 121.37)), T0).unwrap().incident;
    assert!(inc.tiers[1].assignments.is_empty());
}

#[test]
fn upsert_moves_a_unit_in_the_index() {
    let d = dispatcher();
    // Move T10-a far away: the incident no longer reaches it.
    let mut moved = d.get_unit("T10-a").unwrap();
    moved.position = ll(28.45, 121.65);
    let (_, created) = d.upsert_unit(moved, T0, &NoEffects).unwrap();
    assert!(!created);
    let p = d.preview(ll(28.58, 121.37), IncidentKind::Fire, 1, T0).unwrap();
    assert!(p.tiers[3].assignments.is_empty());
    // A new unit is selectable at once; a tier change re-indexes.
    let (u, created) = d.upsert_unit(unit("T10-new", Tier::T10, ll(28.585, 121.37)), T0, &NoEffects).unwrap();
    assert!(created && u.status == UnitStatus::Available);
    let mut retiered = d.get_unit("T3-b").unwrap();
    retiered.tier = Tier::T5;
    d.upsert_unit(retiered, T0, &NoEffects).unwrap();
    d.check_invariants().unwrap();
    let p = d.preview(ll(28.58, 121.37), IncidentKind::Fire, 1, T0).unwrap();
    assert_eq!(p.tiers[3].assignments[0].unit_id, "T10-new");
    assert_eq!(p.tiers[2].assignments[0].unit_id, "T3-b");
}

#[test]
fn paging_lists_every_item_once() {
    let d = dispatcher();
    for i in 0..7 {
        d.report_nofx(fire(&format!("e{i}"), ll(28.58, 121.37)), T0).unwrap();
    }
    let mut token = None;
    let mut seen = Vec::new();
    loop {
        let page = d.list_incidents(None, 3, token.as_deref()).unwrap();
        seen.extend(page.items.iter().map(|i| i.seq));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert!(d.list_incidents(None, 3, Some("garbage")).is_err());
    let units = d.list_units(&UnitFilter { tier: Some(Tier::T3), ..Default::default() }, 1, None);
    assert_eq!(units.items[0].id.as_ref(), "T3-a");
    assert_eq!(units.next_page_token.as_deref(), Some("T3-a"));
}

/// Many threads report at once against a handful of units: every unit ends up
/// with at most one incident, and every reservation is recorded on both sides.
#[test]
fn concurrent_reports_never_double_assign() {
    let d = Arc::new(dispatcher());
    let threads = 8;
    let per_thread: usize = 50;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (d, barrier) = (d.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let r = d.report_nofx(fire(&format!("t{t}-{i}"), ll(28.58, 121.37)), T0).unwrap();
                    // Release some so units cycle between incidents.
                    if i % 3 == 0 {
                        d.close_nofx(&r.incident.id, T0).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    d.check_invariants().unwrap();
    // Closed ones left the live state for the recent-closed cache.
    let closed = threads * per_thread.div_ceil(3);
    assert_eq!((d.incident_count(), d.recent_closed_count()), (threads * per_thread - closed, closed));
}

#[test]
fn the_incident_table_is_bounded() {
    let limits = DispatcherLimits { max_incidents: 2, max_units: 10, recent_closed_incidents: 10 };
    let d = Dispatcher::new(DispatchConfig::defaults(), area(), vec![], limits).unwrap();
    d.report_nofx(fire("a", ll(28.58, 121.37)), T0).unwrap();
    d.report_nofx(fire("b", ll(28.58, 121.37)), T0).unwrap();
    assert!(matches!(d.report_nofx(fire("c", ll(28.58, 121.37)), T0), Err(DispatchError::CapacityExhausted { .. })));
    // A retry of a stored one is still answered.
    assert!(d.report_nofx(fire("a", ll(28.58, 121.37)), T0).unwrap().duplicate);
}

/// The test dispatcher with two grid cells side by side:
/// G-A (121.30..121.37) and G-B (121.37..121.44), both 28.55..28.62.
fn gridded_dispatcher() -> Dispatcher {
    use crate::grid::{GridCell, GridIndex, GridWorker};
    // Neighbours share their edge exactly (the same literal longitude).
    let cell = |id: &str, lng0: f64, lng1: f64, village: &str, worker: &str| {
        let ring = LineString::from(vec![(lng0, 28.55), (lng1, 28.55), (lng1, 28.62), (lng0, 28.62), (lng0, 28.55)]);
        GridCell {
            grid_id: id.into(),
            town: "路北街道".into(),
            village: village.into(),
            worker: GridWorker { name: worker.into(), contact: format!("0576-0000{}", &id[2..]) },
            polygon: MultiPolygon(vec![Polygon::new(ring, vec![])]),
        }
    };
    let grid = GridIndex::new(vec![
        cell("G-A", 121.30, 121.37, "西村", "甲（虚构）"),
        cell("G-B", 121.37, 121.44, "东村", "乙（虚构）"),
    ])
    .unwrap();
    let d = dispatcher();
    Dispatcher::new(
        DispatchConfig::defaults(),
        area().with_grid(grid),
        d.units.iter().map(|u| u.clone()).collect(),
        DispatcherLimits::default(),
    )
    .unwrap()
}

#[test]
fn a_report_in_a_grid_cell_takes_the_cell_and_notifies_its_worker_on_every_event() {
    let d = gridded_dispatcher();
    let fx = crate::effects::Recorder::default();
    let inc = d.report(fire("ext-g", ll(28.58, 121.38)), T0, &fx).unwrap().incident;
    assert_eq!(inc.grid_id, "G-B");
    assert_eq!(inc.grid_worker.as_ref().map(|w| w.name.as_str()), Some("乙（虚构）"));
    // The cell's town and village, not the nearest village centre's (中心村).
    assert_eq!((inc.town.as_str(), inc.village.as_str()), ("路北街道", "东村"));
    let events = fx.take_events();
    assert_eq!(events[0].kind, EventKind::IncidentReported);
    assert_eq!(events[1].kind, EventKind::GridWorkerNotified);
    assert_eq!(events[1].grid_id, "G-B");
    assert!(events[1].detail.contains("乙（虚构）") && events[1].detail.contains("0576-0000B"), "{}", events[1].detail);
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::GridWorkerNotified).count(), 1);
    // Later events of the incident (a timeout and its re-page, the close and
    // its releases) carry the cell too.
    let ack = fx.take_timers().into_iter().find(|t| matches!(t.key, TimerKey::Ack { .. })).unwrap();
    d.fire(&ack.key, ack.at, &fx);
    d.close_incident(&inc.id, "false alarm", ack.at, &fx).unwrap();
    let later = fx.take_events();
    assert!(later.iter().any(|e| e.kind == EventKind::UnitTimedOut));
    assert!(later.iter().any(|e| e.kind == EventKind::IncidentClosed));
    for e in events.iter().chain(&later).filter(|e| e.incident_id.is_some()) {
        assert_eq!(e.grid_id, "G-B", "{e:?}");
    }
    // Outside every cell: no cell, no worker, no notification.
    let outside = d.report(fire("ext-h", ll(28.45, 121.5)), T0, &fx).unwrap().incident;
    assert_eq!((outside.grid_id.as_str(), outside.grid_worker.as_ref()), ("", None));
    assert!(fx.take_events().iter().all(|e| e.kind != EventKind::GridWorkerNotified && e.grid_id.is_empty()));
}

#[test]
fn a_claimed_grid_id_is_checked_against_the_location() {
    let d = gridded_dispatcher();
    let claim = |ext: &str, at: LatLng, grid_id: &str| NewIncident { grid_id: grid_id.into(), ..fire(ext, at) };
    let refused = |new: NewIncident| match d.report_nofx(new, T0) {
        Err(DispatchError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "grid_id");
            reason
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    };
    let in_b = ll(28.58, 121.38);
    assert_eq!(refused(claim("x1", in_b, "G-A")), "the location is in grid cell G-B, not G-A");
    assert_eq!(refused(claim("x2", in_b, "G-Z")), "unknown grid cell \"G-Z\"; the location is in grid cell G-B");
    assert_eq!(refused(claim("x3", ll(28.45, 121.5), "G-A")), "the location is in no grid cell, not G-A");
    assert_eq!(d.incident_count(), 0, "a refused report dispatches nothing");
    assert_eq!(d.report_nofx(claim("x4", in_b, "G-B"), T0).unwrap().incident.grid_id, "G-B");
    // A retry that contradicts the location is refused, not answered from the stored incident.
    assert_eq!(refused(claim("x4", in_b, "G-A")), "the location is in grid cell G-B, not G-A");
    // On the edge G-A and G-B share, both hold the point: located, it is in
    // G-A (the smaller id); claimed by G-B's worker, it stays in G-B.
    let on_edge = ll(28.58, 121.37);
    assert_eq!(d.report_nofx(fire("x5", on_edge), T0).unwrap().incident.grid_id, "G-A");
    let claimed = d.report_nofx(claim("x6", on_edge, "G-B"), T0).unwrap().incident;
    assert_eq!((claimed.grid_id.as_str(), claimed.village.as_str()), ("G-B", "东村"));
    assert_eq!(claimed.grid_worker.unwrap().name, "乙（虚构）");
}

#[test]
fn incidents_stored_before_grid_cells_load_in_none() {
    let d = dispatcher();
    let inc = d.report_nofx(fire("ext-1", ll(28.58, 121.37)), T0).unwrap().incident;
    let mut json = serde_json::to_value(&inc).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert!(fields.remove("grid_id").is_some() && fields.remove("grid_worker").is_some());
    let old: Incident = serde_json::from_value(json).unwrap();
    assert_eq!((old.grid_id.as_str(), old.grid_worker), ("", None));
}

fn limited(max_incidents: usize, recent_closed_incidents: usize) -> Dispatcher {
    let limits = DispatcherLimits { max_incidents, max_units: 10, recent_closed_incidents };
    Dispatcher::new(DispatchConfig::defaults(), area(), vec![], limits).unwrap()
}

/// `max_incidents` bounds the open incidents only: report, close, report,
/// close, ... goes on for ever.
#[test]
fn max_incidents_bounds_open_incidents_only() {
    let d = limited(2, 5);
    let at = ll(28.58, 121.37);
    for round in 0..1000 {
        let a = d.report_nofx(fire(&format!("a{round}"), at), T0).unwrap().incident;
        let b = d.report_nofx(fire(&format!("b{round}"), at), T0).unwrap().incident;
        let full = d.report_nofx(fire(&format!("c{round}"), at), T0);
        assert!(matches!(full, Err(DispatchError::CapacityExhausted { limit_name: "max_incidents", limit: 2, .. })));
        d.close_nofx(&a.id, T0).unwrap();
        d.close_nofx(&b.id, T0).unwrap();
        assert_eq!((d.incident_count(), d.recent_closed_count()), (0, (2 * (round + 1)).min(5)));
    }
    assert_eq!(d.report_nofx(fire("last", at), T0).unwrap().incident.seq, 2001);
    d.check_invariants().unwrap();
}

#[test]
fn the_recent_closed_cache_is_bounded_and_answers_retried_reports() {
    let d = limited(100, 2);
    let at = ll(28.58, 121.37);
    let [a, b, c] = ["a", "b", "c"].map(|ext| d.report_nofx(fire(ext, at), T0).unwrap().incident);
    for inc in [&a, &b, &c] {
        d.close_nofx(&inc.id, T0.plus_s(10)).unwrap();
    }
    // b and c are cached; a dropped out (the oldest closed).
    assert_eq!((d.incident_count(), d.recent_closed_count()), (0, 2));
    assert!(matches!(d.get_incident(&a.id), Err(DispatchError::IncidentNotFound(_))));
    assert!(matches!(d.close_nofx(&a.id, T0), Err(DispatchError::IncidentNotFound(_))));
    let cached_b = d.get_incident(&b.id).unwrap();
    assert_eq!((cached_b.status, cached_b.closed_at), (IncidentStatus::Closed, Some(T0.plus_s(10))));
    assert_eq!(d.close_nofx(&b.id, T0.plus_s(20)).unwrap(), cached_b, "closing again changes nothing");
    // A retry of b is answered with the closed incident; one of a is new.
    let again = d.report_nofx(fire("b", at), T0.plus_s(30)).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.incident, cached_b);
    let new_a = d.report_nofx(fire("a", at), T0.plus_s(30)).unwrap();
    assert!(!new_a.duplicate);
    assert_eq!((new_a.incident.id.as_str(), new_a.incident.status), ("inc-000004", IncidentStatus::Open));
    // Listings: open, cached closed, both by sequence.
    let seqs = |status| d.list_incidents(status, 10, None).unwrap().items.iter().map(|i| i.seq).collect::<Vec<_>>();
    assert_eq!(seqs(Some(IncidentStatus::Open)), [4]);
    assert_eq!(seqs(Some(IncidentStatus::Closed)), [2, 3]);
    assert_eq!(seqs(None), [2, 3, 4]);
    let first = d.list_incidents(None, 2, None).unwrap();
    assert_eq!(first.next_page_token.as_deref(), Some("3"));
    let rest = d.list_incidents(None, 2, first.next_page_token.as_deref()).unwrap();
    assert_eq!((rest.items.len(), rest.items[0].seq, rest.next_page_token), (1, 4, None));
    let census = d.census();
    assert_eq!((census.incidents_open, census.incidents_closed), (1, 2));
    d.check_invariants().unwrap();
    // One more close pushes b out: its external id is free again.
    d.close_nofx(&new_a.incident.id, T0.plus_s(40)).unwrap();
    assert!(!d.report_nofx(fire("b", at), T0.plus_s(50)).unwrap().duplicate);
    assert!(d.report_nofx(fire("c", at), T0.plus_s(50)).unwrap().duplicate);
    d.check_invariants().unwrap();
}

#[test]
fn with_no_cache_a_closed_incident_leaves_memory_at_once() {
    let d = limited(10, 0);
    let inc = d.report_nofx(fire("a", ll(28.58, 121.37)), T0).unwrap().incident;
    let closed = d.close_nofx(&inc.id, T0).unwrap();
    assert_eq!(closed.status, IncidentStatus::Closed);
    assert!(matches!(d.get_incident(&inc.id), Err(DispatchError::IncidentNotFound(_))));
    assert!(!d.report_nofx(fire("a", ll(28.58, 121.37)), T0).unwrap().duplicate);
    d.check_invariants().unwrap();
}

/// An idempotency entry naming an incident that just dropped out of the cache
/// (its entry not yet forgotten) reports a new incident, and takes the entry.
#[test]
fn a_report_racing_the_cache_eviction_is_a_new_incident() {
    let d = limited(10, 10);
    d.external_ids.insert("gone".into(), 7);
    let r = d.report_nofx(fire("gone", ll(28.58, 121.37)), T0).unwrap();
    assert!(!r.duplicate);
    assert_eq!(*d.external_ids.get("gone").unwrap(), r.incident.seq);
    d.forget_external_ids(vec![(7, "gone".into())]);
    assert!(d.report_nofx(fire("gone", ll(28.58, 121.37)), T0).unwrap().duplicate, "the newer entry is kept");
    d.check_invariants().unwrap();
}

#[test]
fn closing_says_why_and_archives_the_final_state_once() {
    let d = dispatcher();
    let fx = crate::effects::Recorder::default();
    let inc = d.report(fire("ext-1", ll(28.58, 121.37)), T0, &fx).unwrap().incident;
    let other = d.report(fire("ext-2", ll(28.58, 121.37)), T0, &fx).unwrap().incident;
    fx.take_events();
    let closed = d.close_incident(&inc.id, "false alarm", T0.plus_s(9), &fx).unwrap();
    d.close_incident(&inc.id, "again", T0.plus_s(10), &fx).unwrap();
    d.close_incident(&other.id, "", T0.plus_s(11), &fx).unwrap();
    let closings: Vec<(String, String)> = fx
        .take_events()
        .into_iter()
        .filter(|e| e.kind == EventKind::IncidentClosed)
        .map(|e| (e.incident_id.unwrap(), e.detail))
        .collect();
    assert_eq!(closings, [(inc.id.clone(), "false alarm".into()), (other.id.clone(), "closed".into())]);
    let archived = fx.archived_incidents.lock().unwrap().clone();
    assert_eq!(archived.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [inc.id.as_str(), other.id.as_str()]);
    assert_eq!(archived[0], closed);
    assert!(archived[0].tiers.iter().flat_map(|t| &t.assignments).all(|a| a.released_at == Some(T0.plus_s(9))));
    // Not stored again after it was archived (archiving takes it out of the
    // recorder's live table, a later store_incident would put it back).
    assert!(fx.stored_incidents.lock().unwrap().is_empty());
    // What needs an open incident says it is closed.
    let ack =
        Acknowledgement { unit_id: "T1-a".into(), incident_id: inc.id.clone(), accept: true, reason: String::new() };
    let err = d.acknowledge(&ack, T0.plus_s(12), &fx).unwrap_err();
    assert!(matches!(&err, DispatchError::FailedPrecondition(m) if m.contains("CLOSED")), "{err:?}");
    let err = d.assign_unit(&inc.id, "T3-b", Tier::T3, T0.plus_s(12), &fx).unwrap_err();
    assert!(matches!(&err, DispatchError::FailedPrecondition(m) if m.contains("CLOSED")), "{err:?}");
    d.check_invariants().unwrap();
}

/// A journal from before closed incidents left the live state holds CLOSED
/// ones among the open: they go to the cache (and are reported, to archive);
/// the recently closed fill it too, oldest first, within its bound.
#[test]
fn restore_puts_closed_incidents_in_the_cache() {
    let d = dispatcher();
    let fx = crate::effects::Recorder::default();
    let at = ll(28.58, 121.37);
    let incidents: Vec<Incident> =
        (1..=5).map(|i| d.report(fire(&format!("e{i}"), at), T0, &fx).unwrap().incident).collect();
    for inc in &incidents[..4] {
        d.close_incident(&inc.id, "", T0.plus_s(1), &fx).unwrap();
    }
    let closed = fx.archived_incidents.lock().unwrap().clone();
    // An old journal: e1 and e3 closed in the live table; e2 and e4 in history.
    let open = vec![incidents[4].clone(), closed[2].clone(), closed[0].clone()];
    let recent = vec![closed[1].clone(), closed[3].clone()];
    let units = d.list_units(&UnitFilter::default(), 100, None).items;
    let restore = |recent_closed_incidents| {
        let limits = DispatcherLimits { recent_closed_incidents, ..DispatcherLimits::default() };
        Dispatcher::restore(
            DispatchConfig::defaults(),
            area(),
            units.clone(),
            vec![],
            open.clone(),
            recent.clone(),
            limits,
            T0,
        )
        .unwrap()
    };
    let (r, restored) = restore(10);
    r.check_invariants().unwrap();
    let ids = |v: &[Incident]| v.iter().map(|i| i.seq).collect::<Vec<_>>();
    assert_eq!(ids(&restored.closed_found_live), [1, 3]);
    assert_eq!((r.incident_count(), r.recent_closed_count()), (1, 4));
    assert_eq!(ids(&r.list_incidents(Some(IncidentStatus::Closed), 10, None).unwrap().items), [1, 2, 3, 4]);
    assert!(r.report(fire("e1", at), T0, &NoEffects).unwrap().duplicate);
    assert!(r.report(fire("e5", at), T0, &NoEffects).unwrap().duplicate);
    // Bound 2: the closed found live go in first (by sequence), then the
    // recently closed, so e1 and e3 drop out.
    let (r, restored) = restore(2);
    r.check_invariants().unwrap();
    assert_eq!(ids(&restored.closed_found_live), [1, 3], "all of them, to archive");
    assert_eq!(ids(&r.list_incidents(Some(IncidentStatus::Closed), 10, None).unwrap().items), [2, 4]);
    assert!(matches!(r.get_incident("inc-000001"), Err(DispatchError::IncidentNotFound(_))));
    assert!(!r.report(fire("e1", at), T0, &NoEffects).unwrap().duplicate);
    // The sequence goes on after the highest of both lists (e1 again took inc-000006).
    assert_eq!(r.report(fire("e6", at), T0, &NoEffects).unwrap().incident.id, "inc-000007");
}

#[test]
fn restore_counts_closed_sequences_and_frees_units_of_closed_incidents() {
    let d = dispatcher();
    let fx = crate::effects::Recorder::default();
    let at = ll(28.58, 121.37);
    for i in 1..=4 {
        let inc = d.report(fire(&format!("e{i}"), at), T0, &fx).unwrap().incident;
        d.close_incident(&inc.id, "", T0.plus_s(1), &fx).unwrap();
    }
    let closed = fx.archived_incidents.lock().unwrap().clone();
    let units = d.list_units(&UnitFilter::default(), 100, None).items;
    // The highest sequence may be a closed one.
    let (r, _) = Dispatcher::restore(
        DispatchConfig::defaults(),
        area(),
        units.clone(),
        vec![],
        vec![],
        vec![closed[3].clone()],
        DispatcherLimits::default(),
        T0,
    )
    .unwrap();
    assert_eq!(r.report(fire("new", at), T0, &NoEffects).unwrap().incident.id, "inc-000005");
    // A unit still pointing at a closed incident is freed.
    let mut stale = r.get_unit("T1-a").unwrap();
    stale.status = UnitStatus::EnRoute;
    stale.incident_id = Some(closed[3].id.clone());
    let (r, restored) = Dispatcher::restore(
        DispatchConfig::defaults(),
        area(),
        units,
        vec![stale],
        vec![],
        vec![closed[3].clone()],
        DispatcherLimits::default(),
        T0,
    )
    .unwrap();
    assert_eq!((restored.repaired, r.get_unit("T1-a").unwrap().status), (1, UnitStatus::Returning));
    r.check_invariants().unwrap();
}

#[test]
fn candidates_are_the_nearest_dispatchable_units_of_the_tier() {
    let d = dispatcher();
    let at = ll(28.58, 121.37);
    let found = d.candidates(at, Tier::T3, 10);
    let ids: Vec<&str> = found.iter().map(|c| &*c.unit.id).collect();
    assert_eq!(ids, ["T3-a", "T3-b"]);
    assert!(found[0].distance_m < found[1].distance_m && found[0].eta_s <= found[1].eta_s);
    assert!(found[0].within_target);
    assert_eq!(d.candidates(at, Tier::T3, 1).len(), 1);
    // A unit paged elsewhere is no candidate.
    let fx = crate::effects::Recorder::default();
    d.report(fire("c-1", at), Timestamp::from_unix_ms(0), &fx).unwrap();
    let ids: Vec<String> = d.candidates(at, Tier::T3, 10).iter().map(|c| c.unit.id.to_string()).collect();
    assert_eq!(ids, ["T3-b"]);
}
