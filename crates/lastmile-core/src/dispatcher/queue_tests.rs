//! The waiting queue, deferred fallback, pre-emption, capabilities, where a
//! tier applies, and recovery of silent units, on the simulated clock of
//! `escalation_tests`.

use super::escalation_tests::Sim;
use super::tests::{T0, fire, ll, unit};
use super::*;
use crate::config::{CapabilityRule, PolicyConfig};
use crate::effects::{EventKind, NoEffects};
use crate::select::select_brute_force;
use crate::sim::SplitMix64;

/// Where most incidents of these tests are.
fn p() -> LatLng {
    ll(28.58, 121.37)
}

fn report_at(sim: &mut Sim, external_id: &str, at: LatLng, severity: u8) -> Incident {
    let new = NewIncident { severity, ..fire(external_id, at) };
    let inc = sim.d.report(new, sim.now, &sim.fx).unwrap().incident;
    sim.collect_timers();
    inc
}

fn close(sim: &mut Sim, id: &str) {
    sim.d.close_incident(id, "done", sim.now, &sim.fx).unwrap();
    sim.collect_timers();
}

fn policy(fallback_delay_s: u32, preempt_unacknowledged: bool) -> DispatchConfig {
    DispatchConfig {
        policy: PolicyConfig { fallback_delay_s, fallback_round_s: 1, preempt_unacknowledged },
        ..DispatchConfig::defaults()
    }
}

/// The active units of `tier` in incident `id`.
fn holders(sim: &Sim, id: &str, tier: Tier) -> Vec<String> {
    sim.tier(id, tier).assignments.iter().filter(|a| a.is_active()).map(|a| a.unit_id.clone()).collect()
}

fn details(sim: &Sim, kind: EventKind) -> Vec<(Option<String>, Option<String>, String)> {
    sim.fx.take_events().into_iter().filter(|e| e.kind == kind).map(|e| (e.incident_id, e.unit_id, e.detail)).collect()
}

#[test]
fn the_queue_fills_a_starved_incident_when_a_unit_is_released() {
    let mut sim = Sim::with(DispatchConfig::defaults(), vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))]);
    let a = report_at(&mut sim, "a", p(), 2);
    let b = report_at(&mut sim, "b", p(), 2);
    assert_eq!(holders(&sim, &a.id, Tier::T10), ["T10-a"]);
    assert!(holders(&sim, &b.id, Tier::T10).is_empty());
    assert_eq!(sim.tier(&b.id, Tier::T10).state, TierState::Short);
    assert_eq!(sim.d.waiting_incidents(Tier::T10), 1);
    sim.fx.take_events();
    // Released from A before it answered: AVAILABLE at once, and the
    // waiting slot of B takes it (A's reopened slot never re-pages it).
    sim.d.release_unit("T10-a", "sent elsewhere", sim.now, &sim.fx).unwrap();
    assert_eq!(holders(&sim, &b.id, Tier::T10), ["T10-a"]);
    assert_eq!(sim.tier(&b.id, Tier::T10).state, TierState::Paging);
    let paged = details(&sim, EventKind::UnitPaged);
    assert_eq!(paged.len(), 1, "{paged:?}");
    assert_eq!(paged[0].0.as_deref(), Some(b.id.as_str()));
    assert!(paged[0].2.contains("from the waiting queue"), "{}", paged[0].2);
    sim.d.check_invariants().unwrap();
}

#[test]
fn closing_an_incident_refills_every_starved_one_it_can() {
    // The burst: many reports at one spot, one unit; closing the
    // first refills the next, and so on.
    let mut sim = Sim::with(DispatchConfig::defaults(), vec![unit("T5-a", Tier::T5, ll(28.59, 121.37))]);
    let ids: Vec<String> = (0..5).map(|i| report_at(&mut sim, &format!("burst-{i}"), p(), 2).id).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(holders(&sim, id, Tier::T5), ["T5-a"], "incident {i}");
        sim.ack("T5-a", id, true).unwrap();
        close(&mut sim, id);
        sim.status("T5-a", UnitStatus::Available); // back from the scene
    }
    assert_eq!(sim.d.waiting_incidents(Tier::T5), 0);
    sim.d.check_invariants().unwrap();
}

#[test]
fn waiting_slots_are_served_highest_severity_first_then_oldest() {
    let mut sim = Sim::with(DispatchConfig::defaults(), vec![unit("T5-a", Tier::T5, ll(28.59, 121.37))]);
    let first = report_at(&mut sim, "first", p(), 2);
    sim.ack("T5-a", &first.id, true).unwrap(); // acknowledged: never taken
    let low = report_at(&mut sim, "low", p(), 1);
    let high_old = report_at(&mut sim, "high-old", p(), 3);
    let high_new = report_at(&mut sim, "high-new", p(), 3);
    assert_eq!(holders(&sim, &first.id, Tier::T5), ["T5-a"], "an acknowledged page stays");
    let mut served = Vec::new();
    let mut current = first.id.clone();
    for _ in 0..3 {
        close(&mut sim, &current);
        sim.status("T5-a", UnitStatus::Available);
        let next = [&low, &high_old, &high_new]
            .into_iter()
            .find(|i| holders(&sim, &i.id, Tier::T5) == ["T5-a"])
            .expect("someone got the unit");
        served.push(next.external_id.clone());
        sim.ack("T5-a", &next.id, true).unwrap();
        current = next.id.clone();
    }
    assert_eq!(served, ["high-old", "high-new", "low"]);
}

#[test]
fn fallback_beyond_target_waits_for_its_delay_and_does_not_starve_a_later_report() {
    let units = || vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))];
    // X is 6.7 km from the only brigade: beyond its 600 s target, within the
    // fallback reach. Y, reported 5 s later, has it within target.
    let x_at = ll(28.66, 121.37);

    // The old rule (fallback at once, no pre-emption): X spends the brigade late.
    let mut sim = Sim::with(policy(0, false), units());
    let x = report_at(&mut sim, "x", x_at, 2);
    sim.after_s(5);
    let y = report_at(&mut sim, "y", p(), 2);
    assert_eq!(holders(&sim, &x.id, Tier::T10), ["T10-a"]);
    assert!(!sim.tier(&x.id, Tier::T10).assignments[0].within_target);
    assert!(holders(&sim, &y.id, Tier::T10).is_empty());

    // Deferred: Y gets it within target; X's fallback at +20 s finds nobody
    // and waits; closing Y hands it to X (beyond target, its fallback due).
    let mut sim = Sim::with(policy(20, false), units());
    let x = report_at(&mut sim, "x", x_at, 2);
    assert!(holders(&sim, &x.id, Tier::T10).is_empty());
    assert!(sim.tier(&x.id, Tier::T10).note.contains("waiting"), "{}", sim.tier(&x.id, Tier::T10).note);
    sim.after_s(5);
    let y = report_at(&mut sim, "y", p(), 2);
    assert_eq!(holders(&sim, &y.id, Tier::T10), ["T10-a"]);
    assert!(sim.tier(&y.id, Tier::T10).assignments[0].within_target);
    sim.after_s(20);
    assert!(holders(&sim, &x.id, Tier::T10).is_empty());
    sim.fx.take_events();
    close(&mut sim, &y.id);
    assert_eq!(holders(&sim, &x.id, Tier::T10), ["T10-a"]);
    let paged = details(&sim, EventKind::UnitPaged);
    assert!(paged.iter().any(|(i, _, d)| i.as_deref() == Some(&x.id) && d.contains("fallback due")), "{paged:?}");
    sim.d.check_invariants().unwrap();
}

#[test]
fn the_fallback_timer_pages_beyond_target_when_nobody_nearer_comes() {
    let mut sim = Sim::with(policy(20, true), vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))]);
    let x = report_at(&mut sim, "x", ll(28.66, 121.37), 2);
    sim.after_s(19);
    assert!(holders(&sim, &x.id, Tier::T10).is_empty());
    sim.fx.take_events();
    sim.after_s(1);
    assert_eq!(holders(&sim, &x.id, Tier::T10), ["T10-a"]);
    let paged = details(&sim, EventKind::UnitPaged);
    assert!(paged[0].2.contains("beyond target") && paged[0].2.contains("fallback round"), "{paged:?}");
}

#[test]
fn a_higher_severity_report_takes_an_unacknowledged_page_with_its_reason() {
    let units = || vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))];
    let mut sim = Sim::with(DispatchConfig::defaults(), units());
    let bin_fire = report_at(&mut sim, "bin-fire", p(), 1);
    assert_eq!(holders(&sim, &bin_fire.id, Tier::T10), ["T10-a"]);
    sim.fx.take_events();
    let hazmat = report_at(&mut sim, "hazmat", ll(28.5805, 121.37), 4);
    assert_eq!(holders(&sim, &hazmat.id, Tier::T10), ["T10-a"]);
    assert!(holders(&sim, &bin_fire.id, Tier::T10).is_empty());
    let events = sim.fx.take_events();
    let withdrawn = events.iter().find(|e| e.kind == EventKind::UnitReleased).expect("a release");
    assert_eq!(withdrawn.incident_id.as_deref(), Some(bin_fire.id.as_str()));
    assert!(
        withdrawn.detail.contains("page withdrawn") && withdrawn.detail.contains("severity 4"),
        "{}",
        withdrawn.detail
    );
    let paged = events.iter().find(|e| e.kind == EventKind::UnitPaged && e.incident_id.as_deref() == Some(&hazmat.id));
    assert!(paged.is_some_and(|e| e.detail.contains("taken from")), "{events:?}");
    // The bin fire's slot waits again.
    assert_eq!(sim.tier(&bin_fire.id, Tier::T10).state, TierState::Short);
    sim.d.check_invariants().unwrap();

    // Acknowledged first: never taken.
    let mut sim = Sim::with(DispatchConfig::defaults(), units());
    let bin_fire = report_at(&mut sim, "bin-fire", p(), 1);
    sim.ack("T10-a", &bin_fire.id, true).unwrap();
    let hazmat = report_at(&mut sim, "hazmat", ll(28.5805, 121.37), 4);
    assert_eq!(holders(&sim, &bin_fire.id, Tier::T10), ["T10-a"]);
    assert!(holders(&sim, &hazmat.id, Tier::T10).is_empty());

    // Same severity and within target at the first: not taken either.
    let mut sim = Sim::with(DispatchConfig::defaults(), units());
    let first = report_at(&mut sim, "first", p(), 3);
    let second = report_at(&mut sim, "second", ll(28.5805, 121.37), 3);
    assert_eq!(holders(&sim, &first.id, Tier::T10), ["T10-a"]);
    assert!(holders(&sim, &second.id, Tier::T10).is_empty());
}

#[test]
fn a_beyond_target_page_goes_to_a_report_that_has_the_unit_within_target() {
    let mut sim = Sim::with(policy(0, true), vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))]);
    let far = report_at(&mut sim, "far", ll(28.66, 121.37), 2);
    assert_eq!(holders(&sim, &far.id, Tier::T10), ["T10-a"]);
    let near = report_at(&mut sim, "near", p(), 2);
    assert_eq!(holders(&sim, &near.id, Tier::T10), ["T10-a"]);
    assert!(holders(&sim, &far.id, Tier::T10).is_empty());
    sim.d.check_invariants().unwrap();
}

#[test]
fn capabilities_pass_over_a_nearer_unit_and_preview_says_why() {
    let config = DispatchConfig {
        capabilities: vec![CapabilityRule {
            kinds: vec![IncidentKind::Flood],
            tiers: vec![3],
            require: vec!["flood".into()],
        }],
        ..DispatchConfig::defaults()
    };
    let mut boat = unit("T3-boat", Tier::T3, ll(28.583, 121.37));
    boat.capabilities.push("flood".into());
    let units = vec![unit("T3-near", Tier::T3, ll(28.581, 121.37)), boat];
    let d = Dispatcher::new(config, super::tests::area(), units, DispatcherLimits::default()).unwrap();
    let flood = d.preview(p(), IncidentKind::Flood, 2, T0).unwrap();
    let t3 = flood.tiers.iter().find(|t| t.tier == Tier::T3).unwrap();
    assert_eq!(t3.assignments[0].unit_id, "T3-boat");
    let passed = flood.passed_over.iter().find(|p| p.tier == Tier::T3).expect("passed over");
    assert_eq!(passed.unit_id, "T3-near");
    assert!(passed.reason.contains("lacks flood"), "{}", passed.reason);
    // A fire asks for no capability: the nearer one.
    let fire_preview = d.preview(p(), IncidentKind::Fire, 2, T0).unwrap();
    assert_eq!(fire_preview.tiers.iter().find(|t| t.tier == Tier::T3).unwrap().assignments[0].unit_id, "T3-near");
    // A report honours it too.
    let r = d.report(NewIncident { kind: IncidentKind::Flood, ..fire("f", p()) }, T0, &NoEffects).unwrap();
    assert_eq!(r.incident.tiers.iter().find(|t| t.tier == Tier::T3).unwrap().assignments[0].unit_id, "T3-boat");
}

/// The rule with capabilities, against a brute-force scan: for random
/// fleets (random capabilities, some units busy) and random incidents of
/// every kind, the preview's picks per tier are exactly the scan's over the
/// dispatchable units that have what the kind requires. Seeded
/// (`LASTMILE_SEED`), printed.
#[test]
fn capability_filtering_matches_a_brute_force_of_the_rule() {
    let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(17);
    println!("capability_filtering_matches_a_brute_force_of_the_rule: LASTMILE_SEED={seed}");
    let mut rng = SplitMix64(seed);
    let caps = ["fire", "flood", "rescue", "hazmat"];
    let kinds = [IncidentKind::Fire, IncidentKind::Flood, IncidentKind::Rescue, IncidentKind::Hazmat];
    for round in 0..40 {
        let fallback_delay_s = if round % 2 == 0 { 0 } else { 20 };
        let config = DispatchConfig {
            capabilities: vec![
                CapabilityRule { kinds: vec![IncidentKind::Hazmat], tiers: vec![10], require: vec!["hazmat".into()] },
                CapabilityRule {
                    kinds: vec![IncidentKind::Flood],
                    tiers: vec![3, 5, 10],
                    require: vec!["flood".into()],
                },
                CapabilityRule {
                    kinds: vec![IncidentKind::Rescue],
                    tiers: vec![],
                    require: vec!["rescue".into(), "fire".into()],
                },
            ],
            policy: PolicyConfig { fallback_delay_s, fallback_round_s: 1, preempt_unacknowledged: true },
            ..DispatchConfig::defaults()
        };
        let mut units = Vec::new();
        for (tier, n) in [(Tier::T1, 30), (Tier::T3, 30), (Tier::T5, 10), (Tier::T10, 6)] {
            for i in 0..n {
                let at = ll(28.55 + 0.06 * rng.unit(), 121.34 + 0.06 * rng.unit());
                let mut u = unit(&format!("{tier}-{i}"), tier, at);
                u.capabilities = caps.iter().filter(|_| rng.unit() < 0.5).map(|c| c.to_string()).collect();
                if rng.unit() < 0.2 {
                    u.status = UnitStatus::OutOfService;
                }
                units.push(u);
            }
        }
        let d =
            Dispatcher::new(config.clone(), super::tests::area(), units.clone(), DispatcherLimits::default()).unwrap();
        for _ in 0..25 {
            let at = ll(28.55 + 0.06 * rng.unit(), 121.34 + 0.06 * rng.unit());
            let kind = kinds[(rng.next_u64() % 4) as usize];
            let severity = 1 + (rng.next_u64() % 4) as u8;
            let preview = d.preview(at, kind, severity, T0).unwrap();
            for t in &preview.tiers {
                let required = config.required_capabilities(kind, t.tier);
                let mut params = *config.tiers.get(t.tier);
                if fallback_delay_s > 0 {
                    params.fallback_factor = 1.0;
                }
                let eligible = units.iter().filter(|u| u.tier == t.tier).map(|u| {
                    let ok = u.status == UnitStatus::Available && queue::capable(&u.capabilities, required);
                    (&u.id, u.position, ok)
                });
                let expected: Vec<String> = select_brute_force(eligible, &params, at, t.required)
                    .into_iter()
                    .map(|p| p.unit_id.to_string())
                    .collect();
                let got: Vec<String> = t.assignments.iter().map(|a| a.unit_id.clone()).collect();
                assert_eq!(got, expected, "seed {seed} round {round}: {kind:?} at {at:?}, {}", t.tier);
            }
        }
    }
}

#[test]
fn tier_1_does_not_apply_where_no_station_is_within_its_target() {
    let mut config = DispatchConfig::defaults();
    config.tiers.t1.applies = crate::tier::Applies::WhereStationed;
    let units = vec![unit("T1-a", Tier::T1, ll(28.5801, 121.37)), unit("T10-a", Tier::T10, ll(28.60, 121.37))];
    let mut sim = Sim::with(config, units);
    // 1.1 km from the only micro station: tier 1 is not this place's.
    let away = report_at(&mut sim, "away", ll(28.59, 121.37), 2);
    let t1 = sim.tier(&away.id, Tier::T1);
    assert_eq!((t1.state, t1.required), (TierState::NotApplicable, 0));
    assert!(t1.note.contains("not applicable"), "{}", t1.note);
    let shorts = details(&sim, EventKind::TierShort);
    assert!(shorts.iter().all(|(i, _, d)| i.as_deref() != Some(&away.id) || !d.contains("tier-1")), "{shorts:?}");
    // At the station's door it applies; busy, it is SHORT as ever.
    let door = report_at(&mut sim, "door", p(), 2);
    assert_eq!(holders(&sim, &door.id, Tier::T1), ["T1-a"]);
    let door2 = report_at(&mut sim, "door2", p(), 2);
    assert_eq!(sim.tier(&door2.id, Tier::T1).state, TierState::Short);
    // Not applicable never breaches nor waits.
    sim.after_s(61);
    assert_eq!(sim.tier(&away.id, Tier::T1).state, TierState::NotApplicable);
    assert_eq!(
        sim.d.census().tiers.keys().filter(|(t, _, o)| *t == Tier::T1 && *o == TierOutcome::NotApplicable).count(),
        1
    );
}

#[test]
fn a_silent_unit_recovers_when_its_terminal_reports_a_position() {
    let mut sim = Sim::new();
    let a = sim.report();
    sim.after_s(15); // T1-a misses its page
    assert_eq!(sim.d.get_unit("T1-a").unwrap().status, UnitStatus::Unresponsive);
    let b = report_at(&mut sim, "b", p(), 2);
    assert!(holders(&sim, &b.id, Tier::T1).is_empty(), "an unresponsive unit is not paged");
    sim.fx.take_events();
    sim.fix_at("T1-a", ll(28.5801, 121.37));
    assert_eq!(sim.d.get_unit("T1-a").unwrap().status, UnitStatus::Paged, "recovered, then paged for b");
    let changed = details(&sim, EventKind::UnitStatusChanged);
    assert!(changed.iter().any(|(_, u, d)| u.as_deref() == Some("T1-a") && d.contains("recovered")), "{changed:?}");
    // Never re-paged for the incident it ignored: b has it.
    assert_eq!(holders(&sim, &b.id, Tier::T1), ["T1-a"]);
    assert!(holders(&sim, &a.id, Tier::T1).is_empty());
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_unit_moved_into_reach_fills_a_waiting_slot() {
    let mut sim = Sim::with(DispatchConfig::defaults(), vec![unit("T5-a", Tier::T5, ll(28.70, 121.37))]);
    let x = report_at(&mut sim, "x", p(), 2);
    assert!(holders(&sim, &x.id, Tier::T5).is_empty());
    sim.fix_at("T5-a", ll(28.59, 121.37)); // driving by, 1.1 km away
    assert_eq!(holders(&sim, &x.id, Tier::T5), ["T5-a"]);
    assert!(sim.tier(&x.id, Tier::T5).assignments[0].within_target);
}

/// Random interleavings of reports, acknowledgements, releases, closes,
/// returns, fixes and timers on a small fleet, with the queue, deferred
/// fallback and pre-emption all on: after every step, no unit is on two
/// incidents and units and incidents agree. Seeded, printed.
#[test]
fn no_unit_is_ever_on_two_incidents_under_random_interleavings() {
    let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(4242);
    println!("no_unit_is_ever_on_two_incidents_under_random_interleavings: LASTMILE_SEED={seed}");
    let mut rng = SplitMix64(seed);
    let mut units = Vec::new();
    for (tier, n) in [(Tier::T1, 6), (Tier::T3, 5), (Tier::T5, 3), (Tier::T10, 2)] {
        for i in 0..n {
            units.push(unit(&format!("{tier}-{i}"), tier, ll(28.57 + 0.02 * rng.unit(), 121.36 + 0.02 * rng.unit())));
        }
    }
    let ids: Vec<String> = units.iter().map(|u| u.id.to_string()).collect();
    let mut sim = Sim::with(policy(10, true), units);
    let mut open: Vec<String> = Vec::new();
    let mut fills = 0;
    for step in 0..3000 {
        let unit_id = ids[(rng.next_u64() % ids.len() as u64) as usize].clone();
        match rng.next_u64() % 8 {
            0 | 1 => {
                let at = ll(28.57 + 0.02 * rng.unit(), 121.36 + 0.02 * rng.unit());
                open.push(report_at(&mut sim, &format!("r{step}"), at, 1 + (rng.next_u64() % 4) as u8).id);
            }
            2 => {
                if let Some(inc) = sim.d.get_unit(&unit_id).unwrap().incident_id {
                    let _ = sim.ack(&unit_id, &inc, rng.unit() < 0.7);
                }
            }
            3 if !open.is_empty() => {
                let id = open.swap_remove((rng.next_u64() % open.len() as u64) as usize);
                close(&mut sim, &id);
            }
            4 => {
                let _ = sim.d.release_unit(&unit_id, "", sim.now, &sim.fx);
            }
            5 => {
                let _ = sim.d.set_unit_status(&unit_id, UnitStatus::Available, sim.now, &sim.fx);
                let _ = sim.d.set_unit_status(&unit_id, UnitStatus::OnScene, sim.now, &sim.fx);
            }
            6 => {
                let at = ll(28.57 + 0.02 * rng.unit(), 121.36 + 0.02 * rng.unit());
                let _ = sim.d.report_position(&unit_id, at, sim.now, sim.now, &sim.fx);
            }
            _ => sim.after_s(1 + (rng.next_u64() % 20) as u32),
        }
        sim.collect_timers();
        fills += sim
            .fx
            .take_events()
            .iter()
            .filter(|e| e.kind == EventKind::UnitPaged && e.detail.contains("waiting queue"))
            .count();
        if let Err(e) = sim.d.check_invariants() {
            panic!("seed {seed} step {step}: {e}");
        }
    }
    assert!(fills > 20, "seed {seed}: the queue filled only {fills} slots: the test did not exercise it");
}

#[test]
fn a_fallback_round_matches_the_due_slots_together() {
    // Two town teams, both beyond target of W (2.2 and 2.8 km); X, 4.5 km
    // north of W, has only the northern one in its fallback reach. Report by
    // report, W would take the nearer (northern) one and X none.
    let units = vec![unit("T5-north", Tier::T5, ll(28.60, 121.37)), unit("T5-south", Tier::T5, ll(28.555, 121.37))];
    let mut config = policy(20, true);
    config.policy.fallback_round_s = 10;
    let mut sim = Sim::with(config, units);
    let w = report_at(&mut sim, "w", p(), 2);
    let x = report_at(&mut sim, "x", ll(28.625, 121.37), 2);
    sim.after_s(30);
    assert_eq!(holders(&sim, &w.id, Tier::T5), ["T5-south"]);
    assert_eq!(holders(&sim, &x.id, Tier::T5), ["T5-north"]);
    let paged = details(&sim, EventKind::UnitPaged);
    assert!(
        paged.iter().filter(|(_, _, d)| d.contains("fallback round: matched with 2 waiting")).count() == 2,
        "{paged:?}"
    );
    sim.d.check_invariants().unwrap();
}

#[test]
fn a_fallback_round_serves_the_higher_severity_when_it_cannot_serve_both() {
    let units = vec![unit("T5-north", Tier::T5, ll(28.60, 121.37))];
    let mut sim = Sim::with(policy(20, false), units);
    let minor = report_at(&mut sim, "minor", p(), 1);
    let major = report_at(&mut sim, "major", ll(28.5805, 121.37), 3);
    sim.after_s(21);
    assert!(holders(&sim, &minor.id, Tier::T5).is_empty());
    assert_eq!(holders(&sim, &major.id, Tier::T5), ["T5-north"]);
}

#[test]
fn a_restore_rebuilds_the_waiting_queue_from_the_open_slots() {
    let units = vec![unit("T10-a", Tier::T10, ll(28.60, 121.37))];
    let mut sim = Sim::with(DispatchConfig::defaults(), units.clone());
    let a = report_at(&mut sim, "a", p(), 2);
    let b = report_at(&mut sim, "b", p(), 2);
    assert_eq!(sim.d.waiting_incidents(Tier::T10), 1);
    let stored_units = vec![sim.d.get_unit("T10-a").unwrap()];
    let open = vec![sim.d.get_incident(&a.id).unwrap(), sim.d.get_incident(&b.id).unwrap()];
    let (d, _) = Dispatcher::restore(
        DispatchConfig::defaults(),
        super::tests::area(),
        units,
        stored_units,
        open,
        Vec::new(),
        DispatcherLimits::default(),
        sim.now,
    )
    .unwrap();
    // Every open slot waits again, short tiers of tiers 1, 3, 5 included.
    assert_eq!(d.waiting_incidents(Tier::T10), 1);
    d.close_incident(&a.id, "done", sim.now, &NoEffects).unwrap();
    let t10 = d.get_incident(&b.id).unwrap().tiers.into_iter().find(|t| t.tier == Tier::T10).unwrap();
    assert_eq!(
        t10.assignments.iter().filter(|a| a.is_active()).map(|a| a.unit_id.as_str()).collect::<Vec<_>>(),
        ["T10-a"]
    );
}
