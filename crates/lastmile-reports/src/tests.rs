//! The reports over a scripted month whose every figure is worked out by
//! hand below, and the period cuts across week, month and zone boundaries.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use lastmile_core::Tier;
use lastmile_core::incident::{AssignmentState, IncidentKind};
use lastmile_core::outcome::{AssignmentOutcome, Outcome, TierOutcome};
use serde_json::{Value, json};

use crate::*;

const LUQIAO: &str = "路桥街道";
const HENGJIE: &str = "横街镇";
/// A town name that must be escaped in HTML and quoted in CSV.
const HOSTILE: &str = "峰江<街道>&\"',";

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
}

/// A tier that required `required` slots and met `slots_met` (breached
/// when short of them).
fn tier(tier: Tier, required: u32, slots_met: u32, first_s: Option<f64>) -> TierOutcome {
    TierOutcome {
        tier,
        target_s: tier.minutes() * 60,
        required,
        short_at_report: false,
        breached: slots_met < required,
        escalated: false,
        slots_met,
        first_verified_arrival_s: first_s,
    }
}

/// A page at the report (times in seconds after it; shifted by `outcome`):
/// acknowledged after `ack_s`, on scene (verified) after `on_scene_s`.
fn page(unit: &str, tier: Tier, eta_s: u32, ack_s: Option<i64>, on_scene_s: Option<i64>) -> AssignmentOutcome {
    AssignmentOutcome {
        unit_id: unit.to_string(),
        tier,
        unit_tier: tier,
        escalated_from: None,
        attempt: 1,
        distance_m: 500.0,
        eta_s,
        within_target: true,
        paged_at_ms: 0,
        acknowledged_at_ms: ack_s.map(|s| s * 1000),
        on_scene_at_ms: on_scene_s.map(|s| s * 1000),
        verified: on_scene_s.is_some(),
        state: if on_scene_s.is_some() { AssignmentState::Released } else { AssignmentState::Acknowledged },
    }
}

fn outcome(id: &str, reported: &str, town: &str, tiers: Vec<TierOutcome>, pages: Vec<AssignmentOutcome>) -> Outcome {
    let at = ms(reported);
    let assignments = pages
        .into_iter()
        .map(|mut a| {
            a.paged_at_ms += at;
            a.acknowledged_at_ms = a.acknowledged_at_ms.map(|t| t + at);
            a.on_scene_at_ms = a.on_scene_at_ms.map(|t| t + at);
            a
        })
        .collect();
    Outcome {
        seq: 0,
        id: id.to_string(),
        reported_at_ms: at,
        closed_at_ms: at + 3_600_000,
        town: town.to_string(),
        grid_id: format!("LQ-{id}"),
        kind: IncidentKind::Fire,
        severity: 3,
        tiers,
        assignments,
    }
}

/// November 2026 in Luqiao (local times in brackets), plus one incident
/// each side of the month that November must not count.
///
/// | id | local reported | town | tier: required/met, first arrival |
/// | A | Mon 11-02 10:00 W45 | 路桥 | T1 1/1 50 s; T10 1/1 400 s |
/// | B | Tue 11-03 11:00 W45 | 路桥 | T1 2/1 55 s short, breached, escalated; T3 1/1 150 s |
/// | C | Tue 11-10 09:00 W46 | 横街 | T1 1/0 90 s (late); T5 1/1 200 s |
/// | G | Thu 11-12 09:00 W46 | 横街 | T1 1/1 30 s (+ an unverified arrival) |
/// | I | Mon 11-16 09:00 W47 | 横街 | T3 1/1 120 s |
/// | J | Tue 11-24 09:00 W48 | 路桥 | T3 1/1 170 s |
/// | F | Mon 11-30 00:30 W49 | hostile | T1 1/1 40 s (2026-11-29T16:30Z: still November) |
/// | D | Tue 12-01 00:30 | 路桥 | T1 1/1 (2026-11-30T16:30Z: December) |
/// | E | Sat 10-31 23:30 | 路桥 | T1 1/1 (2026-10-31T15:30Z: October) |
/// | E2 | Fri 10-30 10:00 | 横街 | T1 1/0 (October) |
fn month() -> Vec<Outcome> {
    use Tier::*;
    let mut b_t1 = tier(T1, 2, 1, Some(55.0));
    (b_t1.short_at_report, b_t1.escalated) = (true, true);
    let declined = AssignmentOutcome { state: AssignmentState::Declined, ..page("T1-0002", T1, 70, None, None) };
    let lent = AssignmentOutcome {
        escalated_from: Some(T1),
        paged_at_ms: 60_000,
        state: AssignmentState::TimedOut,
        ..page("T3-002", T3, 150, None, None)
    };
    let unverified = AssignmentOutcome { verified: false, ..page("T1-0009", T1, 25, Some(3), Some(20)) };
    vec![
        outcome(
            "A",
            "2026-11-02T02:00:00Z",
            LUQIAO,
            vec![tier(T1, 1, 1, Some(50.0)), tier(T10, 1, 1, Some(400.0))],
            vec![page("T1-0001", T1, 45, Some(10), Some(50)), page("T10-01", T10, 420, Some(20), Some(400))],
        ),
        outcome(
            "B",
            "2026-11-03T03:00:00Z",
            LUQIAO,
            vec![b_t1, tier(T3, 1, 1, Some(150.0))],
            vec![
                page("T1-0001", T1, 50, Some(5), Some(55)),
                declined,
                page("T3-001", T3, 140, Some(30), Some(150)),
                lent,
            ],
        ),
        outcome(
            "C",
            "2026-11-10T01:00:00Z",
            HENGJIE,
            vec![tier(T1, 1, 0, Some(90.0)), tier(T5, 1, 1, Some(200.0))],
            vec![page("T1-0007", T1, 60, Some(12), Some(90)), page("T5-01", T5, 180, Some(8), Some(200))],
        ),
        outcome(
            "G",
            "2026-11-12T01:00:00Z",
            HENGJIE,
            vec![tier(T1, 1, 1, Some(30.0))],
            vec![page("T1-0007", T1, 35, Some(6), Some(30)), unverified],
        ),
        outcome(
            "I",
            "2026-11-16T01:00:00Z",
            HENGJIE,
            vec![tier(T3, 1, 1, Some(120.0))],
            vec![page("T3-001", T3, 130, Some(15), Some(120))],
        ),
        outcome(
            "J",
            "2026-11-24T01:00:00Z",
            LUQIAO,
            vec![tier(T3, 1, 1, Some(170.0))],
            vec![page("T3-003", T3, 160, Some(25), Some(170))],
        ),
        outcome(
            "F",
            "2026-11-29T16:30:00Z",
            HOSTILE,
            vec![tier(T1, 1, 1, Some(40.0))],
            vec![page("T1-0008", T1, 40, Some(4), Some(40))],
        ),
        outcome(
            "D",
            "2026-11-30T16:30:00Z",
            LUQIAO,
            vec![tier(T1, 1, 1, Some(20.0))],
            vec![page("T1-0001", T1, 30, Some(2), Some(20))],
        ),
        outcome(
            "E",
            "2026-10-31T15:30:00Z",
            LUQIAO,
            vec![tier(T1, 1, 1, Some(20.0))],
            vec![page("T1-0001", T1, 30, Some(2), Some(20))],
        ),
        outcome(
            "E2",
            "2026-10-30T02:00:00Z",
            HENGJIE,
            vec![tier(T1, 1, 0, None)],
            vec![page("T1-0007", T1, 30, None, None)],
        ),
    ]
}

fn november(group_by: &str) -> Report {
    let period = Period::month("2026-11", &shanghai()).unwrap();
    compliance(&month(), &ReportRequest::new(period, GroupKey::parse_list(group_by).unwrap()))
}

fn json_of<T: serde::Serialize>(v: &T) -> Value {
    serde_json::from_str(&to_json(v)).unwrap()
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

#[test]
fn totals_per_tier_are_exact() {
    let r = json_of(&november("tier"));
    assert_eq!(r["incidents"], 7, "D (December) and E, E2 (October) are not counted");
    assert_eq!(
        r["period"],
        json!({"label": "2026-11", "from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00",
               "time_zone": "Asia/Shanghai"})
    );
    assert_eq!(r["group_by"], json!(["tier"]));
    let t1 = &r["totals"][0];
    let keys: Vec<&str> = t1.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected_keys = [
        "tier",
        "incidents",
        "slots_required",
        "slots_met",
        "incidents_met",
        "share_met",
        "short_at_report",
        "breached",
        "escalated",
        "arrivals",
        "arrival_median_s",
        "arrival_p90_s",
        "ack_median_s",
        "pages",
        "pages_declined",
        "pages_timed_out",
    ];
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys, "a totals row has no group fields");
    // T1: A, B, C, G, F. Slots 1+2+1+1+1, met 1+1+0+1+1; met A, G, F.
    let expect = json!({"tier": 1, "incidents": 5, "slots_required": 6, "slots_met": 4, "incidents_met": 3,
        "share_met": 0.6, "short_at_report": 1, "breached": 2, "escalated": 1, "arrivals": 5,
        "arrival_median_s": 50.0, "ack_median_s": 5.5, "pages": 7, "pages_declined": 1, "pages_timed_out": 0});
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&t1[k], v, "tier-1 {k}");
    }
    // Arrivals 30, 40, 50, 55, 90: p90 at rank 3.6 = 55 + 0.6 * 35.
    assert!(close(&t1["arrival_p90_s"], 76.0), "{}", t1["arrival_p90_s"]);
    // T3: B, I, J all met; the lent tier-3 unit (escalation of B's tier 1) is a tier-3 page that timed out.
    let t3 = &r["totals"][1];
    assert_eq!(
        (&t3["tier"], &t3["incidents"], &t3["incidents_met"], &t3["share_met"]),
        (&json!(3), &json!(3), &json!(3), &json!(1.0))
    );
    assert_eq!((&t3["pages"], &t3["pages_timed_out"], &t3["ack_median_s"]), (&json!(4), &json!(1), &json!(25.0)));
    assert_eq!(t3["arrival_median_s"], 150.0);
    assert_eq!((&r["totals"][2]["tier"], &r["totals"][2]["incidents"]), (&json!(5), &json!(1)));
    assert_eq!((&r["totals"][3]["tier"], &r["totals"][3]["arrival_median_s"]), (&json!(10), &json!(400.0)));
    // group_by=tier alone: the rows are the totals.
    assert_eq!(r["rows"], r["totals"]);
}

#[test]
fn units_and_eta_are_exact() {
    let r = json_of(&november(""));
    let ids: Vec<&str> = r["units"].as_array().unwrap().iter().map(|u| u["unit_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["T1-0001", "T1-0002", "T1-0007", "T1-0008", "T1-0009", "T3-001", "T3-002", "T3-003", "T5-01", "T10-01"],
        "by tier (1, 3, 5, 10) then id"
    );
    assert_eq!(
        r["units"][0],
        json!({"unit_id": "T1-0001", "tier": 1, "pages": 2, "acknowledged": 2, "ack_rate": 1.0, "ack_median_s": 7.5,
               "declined": 0, "timed_out": 0, "verified_arrivals": 2, "arrivals_within_target": 2})
    );
    assert_eq!(
        (&r["units"][1]["declined"], &r["units"][1]["ack_rate"], &r["units"][1]["ack_median_s"]),
        (&json!(1), &json!(0.0), &Value::Null)
    );
    // T1-0007: C on scene at 90 s (beyond 60), G at 30 s.
    assert_eq!((&r["units"][2]["verified_arrivals"], &r["units"][2]["arrivals_within_target"]), (&json!(2), &json!(1)));
    // T1-0009 pressed ON_SCENE without verification: no arrival.
    assert_eq!(r["units"][4]["verified_arrivals"], 0);
    assert_eq!(r["units"][6]["timed_out"], 1);
    // ETA, tier 1: travel - promised = 5, 5, 30, 0, -5 (the unverified one not scored).
    let e1 = &r["eta"][0];
    assert_eq!(
        (
            &e1["tier"],
            &e1["arrivals"],
            &e1["median_error_s"],
            &e1["bias_s"],
            &e1["median_abs_error_s"],
            &e1["share_by_promise"]
        ),
        (&json!(1), &json!(5), &json!(5.0), &json!(7.0), &json!(5.0), &json!(0.4))
    );
    // Tier 3: +10, -10, +10.
    assert!(close(&r["eta"][1]["bias_s"], 10.0 / 3.0));
    assert!(close(&r["eta"][1]["share_by_promise"], 1.0 / 3.0));
    assert_eq!((&r["eta"][3]["tier"], &r["eta"][3]["median_error_s"]), (&json!(10), &json!(-20.0)));
}

#[test]
fn rows_split_by_town_and_week_then_tier() {
    let r = november("town,week");
    let groups: Vec<(&str, &str, u32)> =
        r.rows.iter().map(|r| (r.town.as_deref().unwrap(), r.week.as_deref().unwrap(), r.tier)).collect();
    let mut expected = Vec::new();
    for (town, week) in [
        (HOSTILE, "2026-W49"),
        (HENGJIE, "2026-W46"),
        (HENGJIE, "2026-W47"),
        (LUQIAO, "2026-W45"),
        (LUQIAO, "2026-W48"),
    ] {
        expected.extend([1, 3, 5, 10].map(|t| (town, week, t)));
    }
    assert_eq!(groups, expected, "towns by name, weeks in order, tiers 1, 3, 5, 10 within");
    let hengjie_w46_t1 = &r.rows[4];
    assert_eq!((hengjie_w46_t1.incidents, hengjie_w46_t1.incidents_met, hengjie_w46_t1.share_met), (2, 1, Some(0.5)));
    let luqiao_w48_t1 = &r.rows[16];
    assert_eq!((luqiao_w48_t1.incidents, luqiao_w48_t1.share_met), (0, None), "no tier-1 incident: share null");
    // The tier named first sorts first.
    let r = november("tier,town");
    let order: Vec<(u32, &str)> = r.rows.iter().take(4).map(|r| (r.tier, r.town.as_deref().unwrap())).collect();
    assert_eq!(order, [(1, HOSTILE), (1, HENGJIE), (1, LUQIAO), (3, HOSTILE)]);
    // The towns table is there whatever the grouping.
    assert_eq!(r.towns, november("week").towns);
    assert_eq!(r.towns[4].town.as_deref(), Some(HENGJIE));
}

#[test]
fn weeks_months_and_days_are_cut_in_the_district_zone() {
    let tz = shanghai();
    // F, 2026-11-29T16:30Z, is Monday 2026-11-30 00:30 local: week 49, November.
    let r = november("day,week,month");
    let f = r.rows.iter().find(|r| r.day.as_deref() == Some("2026-11-30")).unwrap();
    assert_eq!((f.week.as_deref(), f.month.as_deref(), f.tier), (Some("2026-W49"), Some("2026-11"), 1));
    // Across the year's end of October to December: D in December, E and E2 in October.
    let period = Period::range("2026-10-01", "2027-01-01", &tz).unwrap();
    let r = compliance(&month(), &ReportRequest::new(period, vec![GroupKey::Month]));
    let months: Vec<(&str, u64)> =
        r.rows.iter().filter(|r| r.tier == 1).map(|r| (r.month.as_deref().unwrap(), r.incidents)).collect();
    assert_eq!(months, [("2026-10", 2), ("2026-11", 5), ("2026-12", 1)]);
    // The same instants in UTC fall the other way.
    let utc = ReportRequest {
        tz: TimeZone::UTC,
        ..ReportRequest::new(Period::month("2026-11", &tz).unwrap(), vec![GroupKey::Day])
    };
    let r = compliance(&month(), &utc);
    assert!(r.rows.iter().any(|r| r.day.as_deref() == Some("2026-11-29")), "F is Sunday in UTC");
    // Week 49 (Mon 11-30 .. Sun 12-06 local) holds F and D; its trend is per day.
    let w49 = compliance(&month(), &ReportRequest::new(Period::iso_week("2026-W49", &tz).unwrap(), vec![]));
    assert_eq!((w49.incidents, w49.trend.step), (2, TrendStep::Day));
    let days: Vec<&str> = w49.trend.rows.iter().step_by(4).map(|r| r.day.as_deref().unwrap()).collect();
    assert_eq!(
        days,
        ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05", "2026-12-06"]
    );
    assert_eq!((w49.trend.rows[0].incidents, w49.trend.rows[4].incidents, w49.trend.rows[8].incidents), (1, 1, 0));
}

#[test]
fn the_trend_lists_every_week_of_the_period() {
    let r = november("");
    assert_eq!(r.trend.step, TrendStep::Week);
    let weeks: Vec<&str> = r.trend.rows.iter().step_by(4).map(|r| r.week.as_deref().unwrap()).collect();
    // 2026-11-01 is the Sunday of week 44.
    assert_eq!(weeks, ["2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"]);
    let t1: Vec<Option<f64>> = r.trend.rows.iter().filter(|r| r.tier == 1).map(|r| r.share_met).collect();
    assert_eq!(t1, [None, Some(0.5), Some(0.5), None, None, Some(1.0)]);
}

#[test]
fn the_bulletin_ranks_towns_and_shows_the_change() {
    let tz = shanghai();
    let nov = Period::month("2026-11", &tz).unwrap();
    let oct = nov.previous().unwrap();
    let current = compliance(&month(), &ReportRequest::new(nov, vec![GroupKey::Town]));
    let previous = compliance(&month(), &ReportRequest::new(oct, vec![GroupKey::Town]));
    let b = bulletin(&current, Some(&previous));
    assert_eq!((b.period.as_str(), b.previous_period.as_deref()), ("2026-11", Some("2026-10")));
    type Ranked<'a> = (u32, &'a str, f64, Option<f64>, Option<f64>);
    let t1: Vec<Ranked> = b.tiers[0]
        .towns
        .iter()
        .map(|t| (t.rank, t.town.as_str(), t.share_met, t.previous_share_met, t.change_points))
        .collect();
    // Tie at 50%, same incidents: by name. October: 路桥 1/1 (E), 横街 0/1 (E2).
    assert_eq!(
        t1,
        [
            (1, HOSTILE, 1.0, None, None),
            (2, HENGJIE, 0.5, Some(0.0), Some(50.0)),
            (3, LUQIAO, 0.5, Some(1.0), Some(-50.0))
        ]
    );
    // Tier 3, both at 100%: 路桥 (2 incidents) before 横街 (1), name order notwithstanding.
    let t3: Vec<(&str, u64)> = b.tiers[1].towns.iter().map(|t| (t.town.as_str(), t.incidents)).collect();
    assert_eq!(t3, [(LUQIAO, 2), (HENGJIE, 1)]);
    assert_eq!(b.tiers.iter().map(|t| t.tier).collect::<Vec<_>>(), [1, 3, 5, 10]);
    let alone = bulletin(&current, None);
    assert!(alone.tiers[0].towns.iter().all(|t| t.change_points.is_none() && t.previous_share_met.is_none()));
    assert_eq!(json_of(&alone)["previous_period"], Value::Null);
}

#[test]
fn csv_has_a_header_and_quoted_rows() {
    let csv = to_csv(&november("town"));
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "town,tier,incidents,slots_required,slots_met,incidents_met,share_met,short_at_report,breached,escalated,\
         arrivals,arrival_median_s,arrival_p90_s,ack_median_s,pages,pages_declined,pages_timed_out"
    );
    assert_eq!(lines[1], "\"峰江<街道>&\"\"',\",1,1,1,1,1,1,0,0,0,1,40,40,4,1,0,0");
    assert_eq!(lines[2], "\"峰江<街道>&\"\"',\",3,0,0,0,0,,0,0,0,0,,,,0,0,0", "null is an empty field");
    // 路桥 tier 1: A met, B not (2 slots, 1 met, short, breached, escalated); acks 10, 5 (T1-0002 declined).
    assert_eq!(lines[9], "路桥街道,1,2,3,2,1,0.5,1,1,1,2,52.5,54.5,7.5,3,1,0");
    assert_eq!(lines.len(), 1 + 12 + 1, "header, 3 towns x 4 tiers, and the final line break");
    assert_eq!(lines[13], "");
    let units = to_units_csv(&november(""));
    let lines: Vec<&str> = units.lines().collect();
    assert_eq!(
        lines[0],
        "unit_id,tier,pages,acknowledged,ack_rate,ack_median_s,declined,timed_out,verified_arrivals,arrivals_within_target"
    );
    assert_eq!(lines[1], "T1-0001,1,2,2,1,7.5,0,0,2,2");
    assert_eq!(lines.len(), 11);
}

/// Every `<` opens a tag (text is escaped), and tags nest and close.
fn assert_well_formed(html: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("an unclosed tag") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name = tag.trim_start_matches('/').split([' ', '\n']).next().unwrap();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag <{tag}>");
        if tag.starts_with('/') {
            assert_eq!(open.pop(), Some(name), "</{name}> closes something else");
        } else {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn html_is_one_escaped_page_with_its_charts() {
    let current = november("town");
    let previous =
        compliance(&month(), &ReportRequest::new(Period::month("2026-10", &shanghai()).unwrap(), vec![GroupKey::Town]));
    let html = to_html(&current, Some(&bulletin(&current, Some(&previous))));
    assert_well_formed(&html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("13510 响应达标情况 / compliance"));
    assert!(html.contains("@media print"));
    assert!(html.contains("Asia/Shanghai") && html.contains("2026-11-01T00:00:00+08:00"));
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("峰江&lt;街道&gt;&amp;&quot;&#39;,"), "the town name is escaped");
    assert!(!html.contains(HOSTILE));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "nothing is fetched");
    // Figures: tier-1 total 60%, the bulletin's +50 points, the trend per week.
    assert!(html.contains("<td>60.0%</td>"));
    assert!(html.contains("<td>+50.0</td>") && html.contains("<td>-50.0</td>"));
    assert!(html.contains("2026-W44") && html.contains("per ISO week"));
    // Hengjie's tier-1 bar: 50% of the 200 px plot, from y = 136 to the axis at 236.
    assert!(html.contains("y=\"136.0\" width=\"14\" height=\"100.0\""), "a 50% bar");
    let week = compliance(&month(), &ReportRequest::new(Period::iso_week("2026-W49", &shanghai()).unwrap(), vec![]));
    let html = to_html(&week, None);
    assert_well_formed(&html);
    assert!(html.contains("one point per day") && !html.contains("通报 / bulletin"));
}

#[test]
fn the_order_of_the_outcomes_does_not_matter() {
    let period = Period::month("2026-11", &shanghai()).unwrap();
    let req = ReportRequest::new(period, GroupKey::parse_list("town,grid,day").unwrap());
    let mut reversed = month();
    reversed.reverse();
    assert_eq!(compliance(&month(), &req), compliance(&reversed, &req));
}

/// A week of 20 000 outcomes: one pass, and every grouping sums to the
/// totals (the figures that add up do).
#[test]
fn many_outcomes_add_up_in_every_grouping() {
    let tz = shanghai();
    let period = Period::iso_week("2026-W48", &tz).unwrap();
    let towns = [
        "路桥街道",
        "路南街道",
        "路北街道",
        "螺洋街道",
        "桐屿街道",
        "峰江街道",
        "新桥镇",
        "横街镇",
        "金清镇",
        "蓬街镇",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let outcomes: Vec<Outcome> = (0..20_000)
        .map(|i| {
            let at = period.from_ms + (next(7 * 86_400) * 1000) as i64;
            let t = Tier::ALL[next(4) as usize];
            let arrival = 10 + next(700) as i64;
            let met = u32::from(arrival <= i64::from(t.minutes()) * 60);
            let mut o = outcome(
                "X",
                "2026-11-23T00:00:00Z",
                towns[next(10) as usize],
                vec![tier(t, 1, met, Some(arrival as f64))],
                vec![page(&format!("U{}", next(300)), t, 100, Some(next(40) as i64), Some(arrival))],
            );
            let shift = at - o.reported_at_ms;
            o.reported_at_ms = at;
            o.id = format!("inc-{i}");
            for a in &mut o.assignments {
                a.paged_at_ms += shift;
                a.acknowledged_at_ms = a.acknowledged_at_ms.map(|t| t + shift);
                a.on_scene_at_ms = a.on_scene_at_ms.map(|t| t + shift);
            }
            o
        })
        .collect();
    let r = compliance(&outcomes, &ReportRequest::new(period, GroupKey::parse_list("town,day").unwrap()));
    assert_eq!(r.incidents, 20_000);
    assert_eq!(r.rows.len(), 10 * 7 * 4);
    for tier in [1, 3, 5, 10] {
        let total = r.totals.iter().find(|t| t.tier == tier).unwrap();
        for table in [&r.rows, &r.towns, &r.trend.rows] {
            let of_tier = || table.iter().filter(|x| x.tier == tier);
            assert_eq!(of_tier().map(|x| x.incidents).sum::<u64>(), total.incidents);
            assert_eq!(of_tier().map(|x| x.incidents_met).sum::<u64>(), total.incidents_met);
            assert_eq!(of_tier().map(|x| x.pages).sum::<u64>(), total.pages);
        }
    }
    assert_eq!(r.units.iter().map(|u| u.pages).sum::<u64>(), 20_000);
    assert_eq!(r.eta.iter().map(|e| e.stats.arrivals).sum::<usize>(), 20_000);
}

#[test]
fn a_period_without_incidents_still_has_its_shape() {
    // Week 40 (28 September to 4 October): none of the scripted incidents.
    let period = Period::iso_week("2026-W40", &shanghai()).unwrap();
    let r = compliance(&month(), &ReportRequest::new(period, vec![GroupKey::Town]));
    assert_eq!((r.incidents, r.rows.len(), r.towns.len(), r.units.len()), (0, 0, 0, 0));
    assert_eq!(
        r.totals.iter().map(|t| (t.tier, t.incidents, t.share_met)).collect::<Vec<_>>(),
        [(1, 0, None), (3, 0, None), (5, 0, None), (10, 0, None)]
    );
    assert_eq!((r.trend.step, r.trend.rows.len()), (TrendStep::Day, 28));
    assert!(r.eta.iter().all(|e| e.stats == Default::default()));
    assert_eq!(to_csv(&r).lines().count(), 1, "the header alone");
    let html = to_html(&r, Some(&bulletin(&r, None)));
    assert_well_formed(&html);
    assert_eq!(html.matches("<svg").count(), 2);
}
