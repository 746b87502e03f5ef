//! The compliance reports over a large durable history (issue 14): a weekly
//! report over a history of 1,000,000 closed incidents, read the way the
//! server reads it.
//!
//! # What it does
//!
//! 1. **Fixture.** If `--dir` holds no journal, it writes one with
//!    [`SqliteStore`]: `--incidents` synthetic closed incidents (seeded
//!    SplitMix64) reported uniformly over the `--weeks` weeks that end on
//!    2026-12-01 00:00 Asia/Shanghai, each one `Record::Archive` with a
//!    realistic [`Outcome`] (a town and grid cell of the Luqiao dataset, the
//!    response plan's four tiers, re-pages, escalations, real unit ids) and a
//!    ~1.5 KB final-state body (valid JSON with a filler field: nothing on
//!    the report path reads it), committed 5,000 records per commit. The
//!    journal is written straight into the store, not through the server:
//!    1M incidents through the server take minutes and all land on one day.
//! 2. **Reports.** Through `compliance_from` on `History::new(1, reader)`
//!    opened with `open_history_reader`: exactly what `lastmile compliance
//!    --data-dir` and `GET /v1/reports/compliance` run. Each case is run
//!    cold (page cache dropped before the run, a fresh reader) and warm.
//! 3. **Split.** The same read in its steps: the rows from SQLite, the
//!    query for incidents without an outcome, JSON parsing, aggregation,
//!    rendering.
//! 4. **Floor.** The `sqlite3` shell's own time for the period's rows
//!    (`count(*)`, `sum(length(body))`, and a variant that reads every byte).
//!
//! Run: `cargo bench --bench compliance -- [--dir DIR] [--incidents N]
//! [--weeks W]` (results in BENCHMARKS.md). Dropping the page cache needs
//! root; without it the "cold" runs are labelled WARM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use lastmile_core::Tier;
use lastmile_core::incident::{AssignmentState, IncidentKind};
use lastmile_core::outcome::{AssignmentOutcome, Outcome, TierOutcome};
use lastmile_core::sim::{SplitMix64, standard_normal};
use lastmile_reports::{GroupKey, Period, ReportRequest};
use lastmile_server::app::reports::{ComplianceQuery, ReportFormat, compliance_from};
use lastmile_server::history::History;
use lastmile_store::{HistoryReader, JournalStore, Record, SqliteStore};

/// Fixed seed: every fixture of the same size is the same history.
const SEED: u64 = 0x1351_0014_C0FF_EE00;
/// Records per commit (one transaction and one fsync each).
const BATCH: usize = 5_000;
/// Size of each incident's final-state body.
const BODY_BYTES: usize = 1_500;
const TIME_ZONE: &str = "Asia/Shanghai";
/// The history ends here (exclusive), local time.
const END_DATE: (i16, i8, i8) = (2026, 12, 1);
const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 6;
const MARKER: &str = "fixture.txt";

const PLACES_JSON: &str = include_str!("../config/luqiao/places.json");
const GRID_JSON: &str = include_str!("../config/luqiao/grid.geojson");
const UNITS_JSON: &str = include_str!("../config/luqiao/units.json");

struct Args {
    dir: PathBuf,
    incidents: u64,
    weeks: u32,
}

fn parse_args() -> Args {
    let mut args = Args { dir: PathBuf::from("target/compliance-fixture-1m"), incidents: 1_000_000, weeks: 52 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value()),
            "--incidents" => args.incidents = value().parse().unwrap_or_else(|e| fail(&format!("--incidents: {e}"))),
            "--weeks" => args.weeks = value().parse().unwrap_or_else(|e| fail(&format!("--weeks: {e}"))),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => fail(&format!("unknown argument {other:?} (--dir DIR, --incidents N, --weeks W)")),
        }
    }
    if args.incidents == 0 || args.weeks == 0 {
        fail("--incidents and --weeks must be above 0");
    }
    args
}

fn fail(message: &str) -> ! {
    eprintln!("compliance bench: {message}");
    std::process::exit(2)
}

// ---------------------------------------------------------------------------
// The district: towns, grid cells and units of the embedded Luqiao dataset.

/// One town with its grid cells and its units per tier.
struct Town {
    name: String,
    grids: Vec<String>,
    units: [Vec<String>; 4],
}

struct District {
    towns: Vec<Town>,
    /// Every unit per tier: where a town has none of a tier (10-minute
    /// stations serve several towns).
    units: [Vec<String>; 4],
}

fn json(text: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| fail(&format!("dataset entry without {key:?}: {v}")))
}

impl District {
    fn luqiao() -> District {
        let places = json(PLACES_JSON, "places.json");
        let mut towns: Vec<Town> = places["towns"]
            .as_array()
            .unwrap_or_else(|| fail("places.json: no towns"))
            .iter()
            .map(|t| Town { name: str_field(t, "name").to_string(), grids: Vec::new(), units: Default::default() })
            .collect();
        let town_of = |towns: &mut Vec<Town>, name: &str| towns.iter().position(|t| t.name == name);
        for cell in json(GRID_JSON, "grid.geojson")["features"].as_array().into_iter().flatten() {
            let p = &cell["properties"];
            if let Some(i) = town_of(&mut towns, str_field(p, "town")) {
                towns[i].grids.push(str_field(p, "grid_id").to_string());
            }
        }
        let mut units: [Vec<String>; 4] = Default::default();
        for u in json(UNITS_JSON, "units.json")["units"].as_array().into_iter().flatten() {
            let tier = u["tier"].as_u64().and_then(|m| Tier::from_minutes(m as u32));
            let tier = tier.unwrap_or_else(|| fail(&format!("units.json: bad tier in {u}")));
            let id = str_field(u, "id").to_string();
            if let Some(i) = town_of(&mut towns, str_field(u, "town")) {
                towns[i].units[tier.index()].push(id.clone());
            }
            units[tier.index()].push(id);
        }
        assert!(towns.iter().all(|t| !t.grids.is_empty()), "every town has grid cells");
        assert!(units.iter().all(|u| !u.is_empty()), "every tier has units");
        District { towns, units }
    }
}

// ---------------------------------------------------------------------------
// One synthetic closed incident.

/// Per tier (1, 3, 5, 10 minutes): the share short at report, the distance
/// of the paged unit (m), its speed (m/s) and turnout (s).
const SHORT_SHARE: [f64; 4] = [0.25, 0.10, 0.05, 0.03];
const DISTANCE_M: [(f64, f64); 4] = [(30.0, 250.0), (300.0, 3_000.0), (1_000.0, 6_000.0), (2_000.0, 12_000.0)];
const SPEED_M_PER_S: [f64; 4] = [2.5, 8.0, 10.0, 12.0];
const TURNOUT_S: [f64; 4] = [20.0, 60.0, 60.0, 60.0];
/// Of pages: declined, timed out (the rest accepted); a slot is re-paged at
/// most this many times.
const DECLINE_SHARE: f64 = 0.08;
const TIMEOUT_SHARE: f64 = 0.07;
const MAX_ATTEMPTS: u32 = 3;
const ACK_TIMEOUT_MS: i64 = 60_000;
const VERIFIED_SHARE: f64 = 0.95;
/// A breached tier (below 10 minutes) pages the next tier up this often.
const ESCALATE_SHARE: f64 = 0.85;

const KINDS: [(IncidentKind, f64); 7] = [
    (IncidentKind::Fire, 0.30),
    (IncidentKind::Traffic, 0.20),
    (IncidentKind::Medical, 0.18),
    (IncidentKind::Rescue, 0.12),
    (IncidentKind::Flood, 0.08),
    (IncidentKind::Hazmat, 0.02),
    (IncidentKind::Other, 0.10),
];
const SEVERITIES: [(u8, f64); 4] = [(1, 0.40), (2, 0.35), (3, 0.20), (4, 0.05)];

/// The default config's response plan (`config/lastmile.toml`): units
/// required per tier (1, 3, 5, 10).
fn response_plan(kind: IncidentKind, severity: u8) -> [u32; 4] {
    match (kind, severity >= 3) {
        (IncidentKind::Fire | IncidentKind::Hazmat, true) => [2, 2, 1, 2],
        (IncidentKind::Flood, true) => [1, 2, 2, 1],
        (_, true) => [1, 2, 1, 1],
        (_, false) => [1, 1, 1, 1],
    }
}

fn pick<'a>(rng: &mut SplitMix64, from: &'a [String]) -> &'a str {
    &from[(rng.next_u64() % from.len() as u64) as usize]
}

/// A unit of `tier` for an incident in `town` (the town's own if it has one).
fn unit_for<'a>(rng: &mut SplitMix64, district: &'a District, town: &'a Town, tier: Tier) -> &'a str {
    let own = &town.units[tier.index()];
    pick(rng, if own.is_empty() { &district.units[tier.index()] } else { own })
}

/// One page: the unit's answer, and when it acknowledged and arrived.
fn page(
    rng: &mut SplitMix64,
    unit_id: &str,
    tier: Tier,
    paged_at_ms: i64,
    attempt: u32,
    short: bool,
) -> AssignmentOutcome {
    let t = tier.index();
    let (lo, hi) = DISTANCE_M[t];
    // A tier short at report paged a unit that could not make the target.
    let distance_m = if short { rng.range(hi, 2.0 * hi) } else { rng.range(lo, hi) };
    let eta_s = (TURNOUT_S[t] + distance_m * 1.2 / SPEED_M_PER_S[t]).round() as u32;
    let mut a = AssignmentOutcome {
        unit_id: unit_id.to_string(),
        tier,
        unit_tier: tier,
        escalated_from: None,
        attempt,
        distance_m: distance_m.round(),
        eta_s,
        within_target: eta_s <= tier.minutes() * 60,
        paged_at_ms,
        acknowledged_at_ms: None,
        on_scene_at_ms: None,
        verified: false,
        state: AssignmentState::Released,
    };
    let answer = rng.unit();
    if answer < DECLINE_SHARE {
        a.state = AssignmentState::Declined;
    } else if answer < DECLINE_SHARE + TIMEOUT_SHARE {
        a.state = AssignmentState::TimedOut;
    } else {
        let ack_ms = (12_000.0 * (0.5 * standard_normal(rng)).exp()) as i64;
        let travel_ms = (eta_s as f64 * 1000.0 * (0.25 * standard_normal(rng)).exp()) as i64;
        a.acknowledged_at_ms = Some(paged_at_ms + ack_ms.min(ACK_TIMEOUT_MS - 1));
        a.on_scene_at_ms = Some(paged_at_ms + travel_ms.max(ack_ms));
        a.verified = rng.unit() < VERIFIED_SHARE;
    }
    a
}

/// A tier's pages (re-paged on a decline or timeout) and what came of them.
fn tier_outcome(
    rng: &mut SplitMix64,
    district: &District,
    town: &Town,
    tier: Tier,
    required: u32,
    reported_at_ms: i64,
    assignments: &mut Vec<AssignmentOutcome>,
) -> TierOutcome {
    let target_s = tier.minutes() * 60;
    let short = rng.unit() < SHORT_SHARE[tier.index()];
    let first = assignments.len();
    for _slot in 0..required {
        let mut paged_at_ms = reported_at_ms + (rng.unit() * 2_000.0) as i64;
        for attempt in 1..=MAX_ATTEMPTS {
            let unit_id = unit_for(rng, district, town, tier);
            let a = page(rng, unit_id, tier, paged_at_ms, attempt, short);
            let answered = a.acknowledged_at_ms.is_some();
            paged_at_ms += if a.state == AssignmentState::Declined { 15_000 } else { ACK_TIMEOUT_MS };
            assignments.push(a);
            if answered {
                break;
            }
        }
    }
    let since_report_s =
        |a: &AssignmentOutcome| a.on_scene_at_ms.filter(|_| a.verified).map(|at| (at - reported_at_ms) as f64 / 1000.0);
    let arrivals: Vec<f64> = assignments[first..].iter().filter_map(since_report_s).collect();
    let within = arrivals.iter().filter(|s| **s <= target_s as f64).count() as u32;
    let slots_met = within.min(required);
    let breached = slots_met < required;
    let escalated = breached && tier.next_up().is_some() && rng.unit() < ESCALATE_SHARE;
    TierOutcome {
        tier,
        target_s,
        required,
        short_at_report: short,
        breached,
        escalated,
        slots_met,
        first_verified_arrival_s: arrivals.into_iter().min_by(f64::total_cmp),
    }
}

/// The `seq`th closed incident, reported at `reported_at_ms`.
fn outcome(rng: &mut SplitMix64, district: &District, seq: u64, reported_at_ms: i64) -> Outcome {
    let town = &district.towns[(rng.next_u64() % district.towns.len() as u64) as usize];
    let kind = rng.weighted(&KINDS);
    let severity = rng.weighted(&SEVERITIES);
    let plan = response_plan(kind, severity);
    let mut assignments = Vec::with_capacity(8);
    let mut tiers = Vec::with_capacity(4);
    for tier in Tier::ALL {
        let t = tier_outcome(rng, district, town, tier, plan[tier.index()], reported_at_ms, &mut assignments);
        // The breach pages one unit of the next tier up, to help this one.
        if let (true, Some(up)) = (t.escalated, tier.next_up()) {
            let at_ms = reported_at_ms + t.target_s as i64 * 1000;
            let unit_id = unit_for(rng, district, town, up);
            let mut helper = page(rng, unit_id, up, at_ms, 1, false);
            helper.escalated_from = Some(tier);
            assignments.push(helper);
        }
        tiers.push(t);
    }
    let last_ms = assignments.iter().map(|a| a.on_scene_at_ms.unwrap_or(a.paged_at_ms)).max();
    let closed_at_ms = last_ms.unwrap_or(reported_at_ms) + (rng.range(20.0, 60.0) * 60_000.0) as i64;
    Outcome {
        seq,
        id: format!("inc-{seq:06}"),
        reported_at_ms,
        closed_at_ms,
        town: town.name.clone(),
        grid_id: pick(rng, &town.grids).to_string(),
        kind,
        severity,
        tiers,
        assignments,
    }
}

/// The final state's stand-in: valid JSON of the real body's size, with
/// the outcome's identity and a filler field (the report never reads it).
fn body(o: &Outcome) -> Vec<u8> {
    let head = format!(
        r#"{{"seq":{},"id":"{}","status":"Closed","town":"{}","grid_id":"{}","kind":{},"severity":{},"reported_at_ms":{},"closed_at_ms":{},"filler":""#,
        o.seq,
        o.id,
        o.town,
        o.grid_id,
        serde_json::to_string(&o.kind).expect("a kind serializes"),
        o.severity,
        o.reported_at_ms,
        o.closed_at_ms
    );
    let mut body = head.into_bytes();
    body.resize(BODY_BYTES.max(body.len() + 2) - 2, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

// ---------------------------------------------------------------------------
// The fixture.

fn end_ms(tz: &TimeZone) -> i64 {
    let (y, m, d) = END_DATE;
    let midnight = jiff::civil::date(y, m, d).to_datetime(jiff::civil::Time::midnight());
    tz.to_timestamp(midnight).unwrap_or_else(|e| fail(&format!("end date: {e}"))).as_millisecond()
}

fn marker(args: &Args) -> String {
    format!(
        "lastmile compliance fixture: incidents={} weeks={} seed={SEED:#x} end={:04}-{:02}-{:02} {TIME_ZONE} body_bytes={BODY_BYTES}\n",
        args.incidents, args.weeks, END_DATE.0, END_DATE.1, END_DATE.2
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files.filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

/// Writes the fixture unless `args.dir` already holds this one.
fn ensure_fixture(args: &Args, tz: &TimeZone) {
    let db = args.dir.join(lastmile_store::DB_FILE);
    let want = marker(args);
    if db.is_file() {
        match std::fs::read_to_string(args.dir.join(MARKER)) {
            Ok(found) if found == want => {
                println!("fixture: reusing {} ({:.2} GB on disk)", args.dir.display(), gb(dir_bytes(&args.dir)));
                return;
            }
            Ok(found) => fail(&format!("{} holds another fixture ({}); remove it", args.dir.display(), found.trim())),
            Err(_) => fail(&format!("{} has a journal but no {MARKER} (interrupted?); remove it", args.dir.display())),
        }
    }
    write_fixture(args, tz);
    std::fs::write(args.dir.join(MARKER), want).unwrap_or_else(|e| fail(&format!("cannot write {MARKER}: {e}")));
}

fn write_fixture(args: &Args, tz: &TimeZone) {
    let district = District::luqiao();
    let end = end_ms(tz);
    let span_ms = args.weeks as i64 * 7 * 86_400_000;
    let start = end - span_ms;
    let step = span_ms as f64 / args.incidents as f64;
    let mut store = SqliteStore::open(&args.dir).unwrap_or_else(|e| fail(&e.to_string()));
    let mut rng = SplitMix64(SEED);
    let began = Instant::now();
    let (mut batch, mut outcome_bytes, mut assignments) = (Vec::with_capacity(BATCH), 0u64, 0u64);
    println!("fixture: writing {} incidents over {} weeks into {}", args.incidents, args.weeks, args.dir.display());
    for i in 0..args.incidents {
        // Uniform and in report order (seq grows with the report time).
        let reported_at_ms = start + ((i as f64 + rng.unit()) * step) as i64;
        let o = outcome(&mut rng, &district, i + 1, reported_at_ms);
        let summary = serde_json::to_vec(&o).expect("an outcome serializes");
        (outcome_bytes, assignments) = (outcome_bytes + summary.len() as u64, assignments + o.assignments.len() as u64);
        let (seq, closed_at_ms, body) = (o.seq, o.closed_at_ms, body(&o));
        batch.push(Record::Archive { seq, reported_at_ms, closed_at_ms, body, outcome: summary });
        if batch.len() == BATCH || i + 1 == args.incidents {
            store.commit(std::mem::take(&mut batch), i + 1).unwrap_or_else(|e| fail(&e.to_string()));
            batch.clear();
            if (i + 1) % 100_000 == 0 {
                println!("fixture:   {} written, {:.0} s", i + 1, began.elapsed().as_secs_f64());
            }
        }
    }
    store.settle().unwrap_or_else(|e| fail(&e.to_string()));
    drop(store); // the last connection's close checkpoints the WAL into the file
    let n = args.incidents as f64;
    println!(
        "fixture: {} incidents in {:.1} s ({:.0}/s), {:.2} GB on disk; outcome JSON {:.0} B and {:.1} assignments \
         per incident on average, body {BODY_BYTES} B",
        args.incidents,
        began.elapsed().as_secs_f64(),
        n / began.elapsed().as_secs_f64(),
        gb(dir_bytes(&args.dir)),
        outcome_bytes as f64 / n,
        assignments as f64 / n
    );
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

// ---------------------------------------------------------------------------
// Measuring.

/// Drops the page cache (root only); whether it did.
fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn open_history(dir: &Path) -> History {
    let reader = lastmile_store::open_history_reader(dir).unwrap_or_else(|e| fail(&e.to_string()));
    History::new(1, Some(Arc::from(reader)), None)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn list(runs: &[Duration]) -> String {
    runs.iter().map(|d| format!("{:.1}", ms(*d))).collect::<Vec<_>>().join(", ")
}

struct Case {
    name: &'static str,
    query: ComplianceQuery,
}

fn query(
    week: Option<&str>,
    month: Option<&str>,
    range: Option<(&str, &str)>,
    format: ReportFormat,
) -> ComplianceQuery {
    ComplianceQuery {
        week: week.map(str::to_string),
        month: month.map(str::to_string),
        from: range.map(|r| r.0.to_string()),
        to: range.map(|r| r.1.to_string()),
        group_by: Some("town,tier".to_string()),
        format,
    }
}

/// Cold runs (each on a dropped cache and a fresh reader), then warm runs
/// on one reader (as the server keeps it); every answer must be the same.
fn measure(dir: &Path, case: &Case, tz: &TimeZone, cold: bool) {
    let run = |history: &History| {
        let began = Instant::now();
        let rendered = compliance_from(history, &case.query, tz).unwrap_or_else(|e| fail(&e.message));
        (began.elapsed(), rendered.body)
    };
    let mut bodies = Vec::new();
    let mut cold_runs = Vec::new();
    for _ in 0..if cold { COLD_RUNS } else { 0 } {
        drop_caches();
        let (took, body) = run(&open_history(dir));
        cold_runs.push(took);
        bodies.push(body);
    }
    let history = open_history(dir);
    let _ = run(&history); // brings the pages in when there was no cold run
    let mut warm_runs = Vec::new();
    for _ in 0..WARM_RUNS {
        let (took, body) = run(&history);
        warm_runs.push(took);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{}: the same history gave different reports", case.name);
    // Counted apart (an HTML answer has no `incidents` field to read).
    let period = case.query.period(tz).unwrap_or_else(|e| fail(&e.message));
    let incidents = history.outcomes(period.from_ms, period.to_ms).unwrap_or_else(|e| fail(&e.message)).len();
    if let Some(in_answer) = incidents_of(&bodies[0]) {
        assert_eq!(in_answer, incidents as u64, "{}: the answer counts every outcome of the period", case.name);
    }
    let label = if cold { "cold" } else { "WARM (page cache not dropped)" };
    println!("\n{} — {incidents} incidents, answer {} KB", case.name, bodies[0].len() / 1000);
    if !cold_runs.is_empty() {
        println!("  {label}: {} ms; median {:.1} ms", list(&cold_runs), ms(median(&cold_runs)));
    }
    println!("  warm: {} ms; median {:.1} ms", list(&warm_runs), ms(median(&warm_runs)));
    let per_1k = |runs: &[Duration]| ms(median(runs)) / (incidents.max(1) as f64 / 1000.0);
    let cold_per_1k = if cold_runs.is_empty() { String::new() } else { format!("cold {:.2}, ", per_1k(&cold_runs)) };
    println!("  per 1k incidents counted: {cold_per_1k}warm {:.2} ms", per_1k(&warm_runs));
    println!("  identical answer over {} runs and {} reader opens", bodies.len(), cold_runs.len() + 1);
}

/// The `incidents` figure of a JSON answer.
fn incidents_of(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["incidents"].as_u64())
}

/// The steps of one report's read, timed apart.
#[derive(Clone, Copy, Default)]
struct Steps {
    read: Duration,
    without_outcome: Duration,
    parse: Duration,
    aggregate: Duration,
    render: Duration,
    rows: usize,
    bytes: usize,
}

/// What `History::outcomes` and `compliance_from` do for one period, step
/// by step (the in-memory part of `History::outcomes` is empty here).
fn steps(reader: &dyn HistoryReader, period: &Period, group_by: &[GroupKey], html: bool) -> Steps {
    let t = Instant::now();
    let rows = reader.outcomes(period.from_ms, period.to_ms).unwrap_or_else(|e| fail(&e.to_string()));
    let read = t.elapsed();
    let t = Instant::now();
    let missing = reader.without_outcome(period.from_ms, period.to_ms).unwrap_or_else(|e| fail(&e.to_string()));
    assert!(missing.is_empty(), "every fixture incident has an outcome");
    let without_outcome = t.elapsed();
    let t = Instant::now();
    let mut outcomes: Vec<Outcome> =
        rows.iter().map(|b| serde_json::from_slice(b).unwrap_or_else(|e| fail(&format!("outcome: {e}")))).collect();
    outcomes.sort_by_key(|o| (o.reported_at_ms, o.seq));
    let parse = t.elapsed();
    let t = Instant::now();
    let report = lastmile_reports::compliance(&outcomes, &ReportRequest::new(period.clone(), group_by.to_vec()));
    let aggregate = t.elapsed();
    let t = Instant::now();
    let page = if html { lastmile_reports::to_html(&report, None) } else { lastmile_reports::to_json(&report) };
    let render = t.elapsed();
    assert_eq!(report.incidents as usize, rows.len());
    std::hint::black_box(page);
    let bytes = rows.iter().map(Vec::len).sum();
    Steps { read, without_outcome, parse, aggregate, render, rows: rows.len(), bytes }
}

fn median_steps(runs: &[Steps]) -> Steps {
    let m = |f: fn(&Steps) -> Duration| median(&runs.iter().map(f).collect::<Vec<_>>());
    Steps {
        read: m(|s| s.read),
        without_outcome: m(|s| s.without_outcome),
        parse: m(|s| s.parse),
        aggregate: m(|s| s.aggregate),
        render: m(|s| s.render),
        ..runs[0]
    }
}

fn print_steps(label: &str, s: &Steps) {
    let total = s.read + s.without_outcome + s.parse + s.aggregate + s.render;
    println!(
        "  {label}: read rows {:.1} | without_outcome {:.1} | parse {:.1} | aggregate {:.1} | render {:.1} | sum {:.1} ms",
        ms(s.read),
        ms(s.without_outcome),
        ms(s.parse),
        ms(s.aggregate),
        ms(s.render),
        ms(total)
    );
}

fn measure_steps(dir: &Path, name: &str, period: &Period, html: bool, cold: bool) {
    let group_by = [GroupKey::Town, GroupKey::Tier];
    let open = || lastmile_store::open_history_reader(dir).unwrap_or_else(|e| fail(&e.to_string()));
    let cold_run = cold.then(|| {
        drop_caches();
        steps(open().as_ref(), period, &group_by, html)
    });
    let reader = open();
    let _ = steps(reader.as_ref(), period, &group_by, html);
    let warm: Vec<Steps> = (0..WARM_RUNS).map(|_| steps(reader.as_ref(), period, &group_by, html)).collect();
    let m = median_steps(&warm);
    println!(
        "\nsplit: {name} — {} outcome rows, {:.1} MB of outcome JSON ({:.0} B per row)",
        m.rows,
        m.bytes as f64 / 1e6,
        m.bytes as f64 / m.rows.max(1) as f64
    );
    if let Some(c) = cold_run {
        print_steps("cold", &c);
    }
    for (i, s) in warm.iter().enumerate() {
        print_steps(&format!("warm {}", i + 1), s);
    }
    print_steps("warm median", &m);
}

/// The `sqlite3` shell's own time ("Run Time: real") for `sql`; `None`
/// without the shell.
fn sqlite_time(db: &Path, sql: &str) -> Option<(Duration, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(format!(".timer on\n{sql};\n").as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answer = text.lines().next().unwrap_or("").to_string();
    let real = text.split("Run Time: real ").nth(1)?.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((Duration::from_secs_f64(real), answer))
}

fn floor(dir: &Path, name: &str, period: &Period, cold: bool) {
    let db = dir.join(lastmile_store::DB_FILE);
    let range = format!("WHERE reported_at_ms >= {} AND reported_at_ms < {}", period.from_ms, period.to_ms);
    let queries = [
        ("count(*), sum(length(body))", format!("SELECT count(*), sum(length(body)) FROM outcomes {range}")),
        (
            "count(*), sum(length(CAST(body AS TEXT))) (reads every byte)",
            format!("SELECT count(*), sum(length(CAST(body AS TEXT))) FROM outcomes {range}"),
        ),
    ];
    println!("\nfloor: {name}, sqlite3 shell ({})", sqlite_version());
    for (label, sql) in &queries {
        let cold_run = if cold {
            drop_caches();
            sqlite_time(&db, sql)
        } else {
            None
        };
        let warm: Vec<(Duration, String)> = (0..WARM_RUNS).filter_map(|_| sqlite_time(&db, sql)).collect();
        let Some((_, answer)) = warm.first() else {
            println!("  no sqlite3 shell: floor skipped");
            return;
        };
        let warm_runs: Vec<Duration> = warm.iter().map(|w| w.0).collect();
        let cold_text = cold_run.map(|c| format!("cold {:.1} ms, ", ms(c.0))).unwrap_or_default();
        println!(
            "  {label} = {answer}: {cold_text}warm {} ms; median {:.1} ms",
            list(&warm_runs),
            ms(median(&warm_runs))
        );
    }
}

fn sqlite_version() -> String {
    let out = std::process::Command::new("sqlite3").arg("--version").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "not found".to_string())
}

fn main() {
    let args = parse_args();
    let tz = TimeZone::get(TIME_ZONE).unwrap_or_else(|e| fail(&format!("{TIME_ZONE}: {e}")));
    ensure_fixture(&args, &tz);
    let cold = drop_caches();
    println!(
        "page cache: {}",
        if cold { "dropped before each cold run" } else { "cannot be dropped (not root?): every run is WARM" }
    );
    let worst = ("2026-10-26", "2026-11-30");
    let cases = [
        Case { name: "week 2026-W48, town,tier, json", query: query(Some("2026-W48"), None, None, ReportFormat::Json) },
        Case { name: "week 2026-W48, town,tier, html", query: query(Some("2026-W48"), None, None, ReportFormat::Html) },
        Case {
            name: "month 2026-11 with its bulletin (reads November and October), town,tier, json",
            query: query(None, Some("2026-11"), None, ReportFormat::Json),
        },
        Case {
            name: "WORST CASE: 5 weeks 2026-10-26..2026-11-30 as one range, town,tier, json",
            query: query(None, None, Some(worst), ReportFormat::Json),
        },
    ];
    for case in &cases {
        measure(&args.dir, case, &tz, cold);
    }
    let week = Period::iso_week("2026-W48", &tz).unwrap_or_else(|e| fail(&e.to_string()));
    let five_weeks = Period::range(worst.0, worst.1, &tz).unwrap_or_else(|e| fail(&e.to_string()));
    measure_steps(&args.dir, "week 2026-W48, json", &week, false, cold);
    measure_steps(&args.dir, "week 2026-W48, html", &week, true, cold);
    measure_steps(&args.dir, "WORST CASE 5 weeks, json", &five_weeks, false, cold);
    floor(&args.dir, "week 2026-W48", &week, cold);
    floor(&args.dir, "WORST CASE 5 weeks", &five_weeks, cold);
}
