//! `lastmile bench`: a load benchmark of simultaneous incidents, measured
//! against the gRPC floor (`Ping`) in the same run.
//!
//! # Layout
//!
//! - [`scenario`]: the incidents of a run, drawn from a seed (uniform, typhoon).
//! - [`load`]: closed-loop, open-loop (coordinated-omission-correct) and burst drivers.
//! - [`feed`]: replay of the live feed, the double-assignment check.
//! - [`cpu`]: CPU time per phase and per operation (`/proc`).
//! - [`fsync`]: the data folder's fdatasync latency, probed before the timed
//!   phases of a durable run (the floor a durable request cannot beat).
//! - [`fleet`]: `--fleet-scale`, the dataset's units replicated for the
//!   in-process server.
//! - [`optimality`]: `--optimality`, lastmile's assignments against the
//!   hindsight optimum (Kuhn–Munkres, `lastmile_core::matching`).
//! - [`report`] and [`svg`]: the table, the JSON and the latency chart.
//!
//! A run: start (or reach, with `--addr`) a server; subscribe to the live
//! feed; connect a simulated terminal for every unit (seeded crews:
//! `sim_terminal::run_crew`); warm up; time `Ping`; time `ReportIncident` in
//! the same mode; wait for the pages; stop the terminals; read every incident
//! back; stop the server and check the invariants. Every phase is bounded by
//! `--timeout-s`; the bench only ever talks to loopback addresses.

mod cpu;
mod feed;
mod fleet;
mod fsync;
mod load;
mod optimality;
mod overload;
mod report;
mod sampler;
mod scenario;
mod svg;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lastmile_core::Dispatcher;
use lastmile_core::area::ServiceArea;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_client::DispatchClient;
use lastmile_server::LastmileConfig;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::sim_terminal::{Behaviour, CrewModel, PageLog};
use load::{Mode, PhaseRun};
use report::{PhaseSummary, latency_json, latency_row, new_histogram, pct, record};
pub use scenario::Scenario;
use svg::fmt_us;

/// Terminal subscriptions per gRPC connection: well under the server's
/// `server.max_concurrent_streams` (256), leaving room for their answers.
const TERMINALS_PER_CHANNEL: usize = 100;
/// The in-process server's `feed.subscriber_buffer_events` is raised to at
/// least this, so the bench's own watcher is not cut off during a burst
/// (~10 events per incident at once). About 10 MB of ring.
const BENCH_FEED_BUFFER_EVENTS: usize = 262_144;
/// Pings before anything is timed, per connection (connections, JIT-free
/// but caches and HTTP/2 windows warm).
const WARMUP_PINGS_PER_CONNECTION: usize = 50;
/// CloseIncident calls the closer task has in flight at most.
const CLOSES_IN_FLIGHT: usize = 64;
/// --optimality's acknowledgement timeout (unless --ack-timeout-s): no
/// silent page times out, and re-pages, before the measure is read.
const OPTIMALITY_ACK_TIMEOUT_S: u32 = 3600;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Target a running server (loopback only) instead of starting one in process.
    #[arg(long)]
    pub addr: Option<String>,
    /// Configuration for the in-process server (and the district incidents are
    /// drawn in); default: the embedded Luqiao default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Incidents to report.
    #[arg(long, default_value_t = 2000)]
    pub incidents: usize,
    /// Closed loop: requests in flight at once (each worker sends its next
    /// request when the previous one is answered). In burst mode: connections.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// gRPC connections the load is spread over (default: one per 16 workers, at most 16).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Open loop: requests per second, whatever the answers; latency is
    /// measured from each request's intended send time.
    #[arg(long, conflicts_with = "burst")]
    pub rate: Option<f64>,
    /// Open loop: requests outstanding at most (beyond it the sender waits, and
    /// the wait counts as latency).
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Fire all --incidents reports at once over --concurrency connections and
    /// time the burst from the first send to the last page delivered.
    #[arg(long)]
    pub burst: bool,
    #[arg(long, value_enum, default_value = "uniform")]
    pub scenario: Scenario,
    /// Seed of the incidents and of the crews' answers (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Incidents kept open at once: when a report is answered and more than
    /// this many of the run's incidents are open, the oldest is closed (by a
    /// closer task on its own connection, timed apart), so units are released
    /// and the district does not simply run out of units. 0: never close.
    /// (Default 20: the demo district has 4 professional and 12 town units,
    /// so more open incidents leave most reports with nobody free to page.)
    #[arg(long, default_value_t = 20)]
    pub open_incidents: usize,
    /// Pings timed (default: as many as incidents).
    #[arg(long)]
    pub pings: Option<usize>,
    /// No simulated terminals: pages wait on the server, nothing is acknowledged.
    #[arg(long)]
    pub no_terminals: bool,
    /// Share of pages the crews leave unanswered (they time out on the server).
    #[arg(long, default_value_t = 0.1)]
    pub silent: f64,
    /// Share of pages the crews decline (re-paged at once).
    #[arg(long, default_value_t = 0.1)]
    pub decline: f64,
    /// Simulated seconds before a crew answers a page.
    #[arg(long, default_value_t = 5.0)]
    pub ack_delay_s: f64,
    /// Accepting crews do not drive (no positions, ON_SCENE or AVAILABLE).
    #[arg(long)]
    pub no_drive: bool,
    /// Simulated seconds on scene before a crew reports AVAILABLE.
    #[arg(long, default_value_t = 60.0)]
    pub on_scene_s: f64,
    /// Simulated seconds after a crew misses a page before its terminal
    /// reports a position (the crew is back by it): its UNRESPONSIVE unit
    /// recovers. 0: silent crews never come back.
    #[arg(long, default_value_t = 60.0)]
    pub recover_after_s: f64,
    /// Compare lastmile's assignments, once the surge is reported and the
    /// policy settled, with the hindsight optimum per tier (see
    /// `bench/optimality.rs`). In-process only; crews accept or stay silent
    /// (no declines), do not drive, and acknowledgement timeouts are raised
    /// to an hour unless --ack-timeout-s says otherwise.
    #[arg(long, conflicts_with_all = ["addr", "burst", "rate"])]
    pub optimality: bool,
    /// How the simulated crews really travel (not the dispatcher's ETA).
    #[command(flatten)]
    pub crew: crate::sim_terminal::CrewArgs,
    /// The crews' clock runs this many times faster than life. The server's
    /// timers (acknowledgement timeouts, tier deadlines) run in real time.
    #[arg(long, default_value_t = 20.0)]
    pub time_scale: f64,
    /// In-process server only: journal every change in this folder (durable,
    /// as `lastmile serve --data-dir`). Default: in memory, whatever the config says.
    #[arg(long, conflicts_with = "addr")]
    pub data_dir: Option<PathBuf>,
    /// In-process server only: journal every change in this PostgreSQL
    /// database (durable, as `lastmile serve --postgres`), in the schema
    /// --postgres-schema names, which the bench drops and creates afresh.
    #[arg(long, value_name = "URL", conflicts_with_all = ["addr", "data_dir"])]
    pub postgres: Option<String>,
    /// With --postgres: the bench's own schema (emptied at the start of each run).
    #[arg(long, value_name = "NAME", default_value = "lastmile_bench", requires = "postgres")]
    pub postgres_schema: String,
    /// In-process server only: every unit of the dataset N times (copies
    /// `ID-x2` .. `ID-xN`, each within ~100 m of the original, seeded), so
    /// that at high concurrency most reports find every unit they need.
    #[arg(long, default_value_t = 1)]
    pub fleet_scale: usize,
    /// With --data-dir: rounds of the fsync probe (4 KiB written and
    /// fdatasync'ed in the data folder) timed before the load; 0: no probe.
    #[arg(long, default_value_t = fsync::PROBE_ROUNDS)]
    pub fsync_rounds: usize,
    /// In-process server only: every tier's `ack_timeout_s` (so silent crews
    /// are timed out, re-paged and escalated within a short run).
    #[arg(long)]
    pub ack_timeout_s: Option<u32>,
    /// After the load: wait at most this long for the reports' pages to reach
    /// the terminals (and the crews to act).
    #[arg(long, default_value_t = 3.0)]
    pub settle_s: f64,
    /// The whole timed part (ping, dispatch, settle) stops after this many
    /// seconds and reports what it has.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_s: f64,
    /// Measure the CPU time of this process (a `lastmile serve` that --addr
    /// points at) instead of the bench's own, per Ping and per report (Linux).
    #[arg(long, requires = "addr")]
    pub server_pid: Option<u32>,
    /// JSON on stdout instead of the table (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Where to write the latency chart (SVG).
    #[arg(long, default_value = "lastmile-bench.svg")]
    pub chart: PathBuf,
    /// Overload mode (`--offered-rate` or `--capacity-probe-s`): see `overload`.
    #[command(flatten)]
    pub overload: overload::OverloadArgs,
}

/// One tier of a reply at report time.
struct TierAtReport {
    tier: i32,
    state: pb::TierState,
    /// Units the plan asks of the tier.
    required: u32,
    /// The units paged, with whether each is within target.
    assigned: Vec<(String, bool)>,
}

/// What one reply said, kept small.
struct Reported {
    incident_id: String,
    external_id: String,
    duplicate: bool,
    tiers: Vec<TierAtReport>,
}

fn reported(r: pb::ReportIncidentResponse) -> Reported {
    let incident = r.incident.unwrap_or_default();
    Reported {
        tiers: incident
            .tiers
            .iter()
            .map(|t| TierAtReport {
                tier: t.tier,
                state: t.state(),
                required: t.required,
                assigned: t.assignments.iter().map(|a| (a.unit_id.clone(), a.within_target)).collect(),
            })
            .collect(),
        incident_id: incident.id,
        external_id: incident.external_id,
        duplicate: r.duplicate,
    }
}

/// The server the bench started, stopped when dropped.
struct InProcess {
    addr: std::net::SocketAddr,
    /// The gateway (for `/metrics`), in overload runs only.
    http_addr: Option<std::net::SocketAddr>,
    dispatcher: Arc<Dispatcher>,
    grace: Duration,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), lastmile_server::ServerError>>>,
}

impl InProcess {
    async fn start(config: LastmileConfig, with_gateway: bool) -> anyhow::Result<InProcess> {
        // In memory unless the config (or --data-dir) names a journal folder.
        let opened = lastmile_server::open(&config)?;
        let dispatcher = opened.dispatcher.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let http = match with_gateway {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind 127.0.0.1:0 (gateway)")?),
            false => None,
        };
        let http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;
        let listeners = lastmile_server::Listeners { grpc: Arc::new(listener), http: http.map(Arc::new) };
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let on_ready = move || {
            let _ = ready.send(());
        };
        let task =
            tokio::spawn(lastmile_server::run_opened_then(listeners, Arc::new(config), opened, stopped, on_ready));
        // As a client of the binary waits for its ready line: until then every
        // call is UNAVAILABLE (recovery, overdue timers).
        if is_ready.await.is_err() {
            let failed = task.await.context("in-process server")?;
            failed?;
            bail!("the in-process server stopped before it was ready");
        }
        Ok(InProcess { addr, http_addr, dispatcher, grace, stop: Some(stop), task: Some(task) })
    }

    /// Stops the server (timers and live streams end, in-flight requests drain).
    async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(self.grace, task).await {
                Ok(joined) => joined??,
                Err(_) => bail!("in-process server did not stop within server.shutdown_grace_ms"),
            }
        }
        Ok(())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Only loopback targets: a benchmark must never load someone else's server.
fn check_loopback(addr: &str) -> anyhow::Result<String> {
    let uri: tonic::codegen::http::Uri = addr.parse().with_context(|| format!("--addr {addr}: not a URI"))?;
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--addr {addr}: the bench only targets loopback addresses (127.0.0.0/8, ::1, localhost)");
    }
    Ok(if uri.scheme().is_none() { format!("http://{addr}") } else { addr.to_string() })
}

async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

async fn list_units(client: &mut DispatchClient<Channel>) -> anyhow::Result<Vec<pb::Unit>> {
    let mut units = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_units(pb::ListUnitsRequest { page_size: 1000, page_token, ..Default::default() })
            .await
            .context("ListUnits")?
            .into_inner();
        units.extend(page.units);
        if page.next_page_token.is_empty() {
            return Ok(units);
        }
        page_token = page.next_page_token;
    }
}

/// Incidents reported at or after `from` (every status).
async fn list_incidents(
    client: &mut DispatchClient<Channel>,
    from: std::time::SystemTime,
) -> anyhow::Result<Vec<pb::Incident>> {
    let mut incidents = Vec::new();
    let mut page_token = String::new();
    let reported_from = Some(prost_types::Timestamp::from(from));
    loop {
        let page = client
            .list_incidents(pb::ListIncidentsRequest {
                page_size: 1000,
                page_token,
                reported_from,
                ..Default::default()
            })
            .await
            .context("ListIncidents")?
            .into_inner();
        incidents.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return Ok(incidents);
        }
        page_token = page.next_page_token;
    }
}

fn summarize<T>(name: &'static str, run: &PhaseRun<T>) -> PhaseSummary {
    let mut micros = new_histogram();
    let mut errors = BTreeMap::new();
    let mut ok = 0;
    for s in &run.samples {
        match &s.result {
            Ok(_) => {
                ok += 1;
                record(&mut micros, s.latency());
            }
            Err(code) => *errors.entry(code.clone()).or_default() += 1,
        }
    }
    let first = run.samples.iter().map(|s| s.intended).min().unwrap_or(run.started);
    PhaseSummary {
        name,
        ok,
        errors,
        not_sent: run.not_sent,
        micros,
        elapsed: run.finished.saturating_duration_since(first),
    }
}

fn tier_name(state: pb::TierState) -> &'static str {
    state.as_str_name().trim_start_matches("TIER_STATE_")
}

/// A page that holds its unit (a unit may hold one incident at a time).
fn holds_unit(state: pb::AssignmentState) -> bool {
    matches!(state, pb::AssignmentState::Paged | pb::AssignmentState::Acknowledged | pb::AssignmentState::OnScene)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    validate(&args)?;
    if args.overload.enabled() {
        return run_overload(args).await;
    }
    let mut setup = Setup::start(&args).await?;
    let feed = Feed::follow(&mut setup.control).await?;
    let mut fleet = Fleet::start(&args, &setup).await?;
    let timed = Timed::run(&args, &setup).await?;
    let expected = expected_pages(&timed.report_run);
    let optimality = match args.optimality {
        false => {
            fleet.settle_and_stop(&args, &expected, timed.deadline).await;
            None
        }
        true => {
            let settle = optimality::settle_wait(&setup.dispatch).max(Duration::from_secs_f64(args.settle_s.max(0.0)));
            fleet.settle_and_stop_within(&args, &expected, settle, timed.deadline).await;
            let ours: HashSet<&str> = expected.iter().map(|(_, r)| r.incident_id.as_str()).collect();
            let (incidents, reads) = settled_read(&mut setup.control, setup.started_at, &ours).await?;
            Some((optimality::measure(&setup.dispatch, &setup.units, &incidents), reads))
        }
    };
    let read_back = read_back(&mut setup.control, setup.started_at, &timed.report_run, &expected).await?;
    let checks = finish_checks(setup.server.as_mut(), feed, read_back).await?;

    let mut findings = Findings::new(&args, &setup, &timed, &fleet.log, &expected, &checks);
    findings.optimality = optimality;
    findings.write_chart()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings.json())?);
    } else {
        findings.print_table();
    }
    if !checks.failures.is_empty() {
        bail!("{} invariant(s) failed", checks.failures.len());
    }
    Ok(())
}

/// An overload run: the same server, feed and crews as a run, then the
/// open-loop overload ([`overload`]) instead of the Ping and report phases.
/// No per-incident read-back (a minute at 2x capacity reports hundreds of
/// thousands): the feed replay and, in process, `Dispatcher::check_invariants`
/// are the checks.
async fn run_overload(args: BenchArgs) -> anyhow::Result<()> {
    let mut setup = Setup::start(&args).await?;
    let feed = Feed::follow(&mut setup.control).await?;
    let mut fleet = Fleet::start(&args, &setup).await?;
    let metrics_url = match (&args.overload.metrics_addr, &setup.server) {
        (Some(addr), _) => {
            check_loopback(addr)?;
            Some(format!("http://{}/metrics", addr.trim_start_matches("http://")))
        }
        (None, Some(s)) => s.http_addr.map(|a| format!("http://{a}/metrics")),
        (None, None) => None,
    };
    let target = overload::Target {
        endpoint: &setup.endpoint,
        pool: setup.incidents.clone(),
        units: &setup.units,
        log: fleet.log.clone(),
        metrics_url,
        server_pid: args.server_pid,
        concurrency: args.concurrency,
        open_incidents: args.open_incidents,
    };
    let run = overload::run(&args.overload, target).await?;
    fleet.settle_and_stop(&args, &[], Instant::now() + Duration::from_secs_f64(args.settle_s.max(0.0))).await;
    let none = ReadBack { failures: Vec::new(), end_states: BTreeMap::new(), confirmed_conflicts: 0 };
    let checks = finish_checks(setup.server.as_mut(), feed, none).await?;
    let invariants = json!({
        "ok": checks.failures.is_empty(),
        "failures": checks.failures,
        "feed_events": checks.replay.events,
        "feed_cut_off": checks.replay.cut_off,
        "double_assignments": checks.replay.violations,
        "publication_order_inversions": checks.replay.inversions,
        "core_check": checks.core_check.as_ref().map(|r| r.clone().err().unwrap_or_else(|| "ok".into())),
    });
    let fleet_log = &fleet.log;
    let crews = json!({
        "subscribed": fleet_log.subscribed.load(Ordering::Relaxed),
        "pages_received": fleet_log.pages.load(Ordering::Relaxed),
        "accepted": fleet_log.accepted.load(Ordering::Relaxed),
        "declined": fleet_log.declined.load(Ordering::Relaxed),
        "silent": fleet_log.silent.load(Ordering::Relaxed),
        "refused": fleet_log.refused.load(Ordering::Relaxed),
        "completed_drives": fleet_log.completed.load(Ordering::Relaxed),
    });
    if args.json {
        let mut out = run.json(args.overload.window_s);
        out["seed"] = json!(setup.seed);
        out["scenario"] = json!(format!("{:?}", args.scenario).to_lowercase());
        out["target"] = json!(target_text(&args, setup.server.as_ref()));
        out["storage"] = json!(storage_text(&args));
        out["units"] = json!(setup.units.len());
        out["fsync"] = json!(setup.fsync.as_ref().map(fsync::FsyncProbe::json));
        out["terminals"] = crews;
        out["invariants"] = invariants;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("lastmile bench — {:?}, overload: open loop at {:.0} reports/s", args.scenario, run.offered_rate);
        println!(
            "  target: {}; {}\n  {} units, a pool of {} incidents (external ids made unique past it), seed {}",
            target_text(&args, setup.server.as_ref()),
            storage_text(&args),
            setup.units.len(),
            setup.incidents.len(),
            setup.seed
        );
        if let Some(f) = &setup.fsync {
            println!("  fsync probe (data folder): p50 {}, p90 {}", fmt_us(f.p(0.5)), fmt_us(f.p(0.9)));
        }
        run.print(args.overload.window_s);
        println!("  terminals: {crews}");
        println!("  invariants: {invariants}");
    }
    if !checks.failures.is_empty() {
        bail!("{} invariant(s) failed", checks.failures.len());
    }
    Ok(())
}

/// The flags whose ranges clap does not check.
fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    args.crew.travel()?;
    if args.overload.enabled() {
        args.overload.validate()?;
    }
    if args.incidents == 0 {
        bail!("--incidents must be at least 1");
    }
    for (name, v) in [("--silent", args.silent), ("--decline", args.decline)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be between 0 and 1");
        }
    }
    if args.silent + args.decline > 1.0 {
        bail!("--silent + --decline must be at most 1");
    }
    if !(args.recover_after_s >= 0.0 && args.recover_after_s.is_finite()) {
        bail!("--recover-after-s must be 0 or more seconds");
    }
    if args.optimality && args.overload.enabled() {
        bail!("--optimality measures a surge of reports, not an overload run");
    }
    if !(args.time_scale > 0.0 && args.time_scale.is_finite()) {
        bail!("--time-scale must be positive");
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("--rate must be positive");
    }
    Ok(())
}

/// The run's seed (from the clock unless --seed), printed so the run can be replayed.
fn seed(args: &BenchArgs) -> u64 {
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        lastmile_core::sim::SplitMix64(now.as_nanos() as u64).next_u64()
    });
    eprintln!("lastmile bench: seed {seed} (pass --seed {seed} to draw the same incidents and answers)");
    seed
}

/// Makes the run's external ids its own, so a rerun against the same server
/// is not taken for duplicates.
fn run_tag() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis())
}

fn mode(args: &BenchArgs) -> Mode {
    match (args.rate, args.burst) {
        (Some(rate), _) => Mode::Open { rate, max_in_flight: args.max_in_flight },
        (None, true) => Mode::Burst,
        (None, false) => Mode::Closed { concurrency: args.concurrency.max(1) },
    }
}

/// The load's connections: in burst mode --concurrency of them, otherwise one
/// per 16 workers, at most 16 (unless --connections says).
fn load_connections(args: &BenchArgs, mode: Mode) -> usize {
    match mode {
        Mode::Burst => args.connections.unwrap_or(args.concurrency).max(1),
        _ => args.connections.unwrap_or(args.concurrency.div_ceil(16).clamp(1, 16)).max(1),
    }
}

/// What a run is against, set up before anything is timed.
struct Setup {
    seed: u64,
    mode: Mode,
    /// gRPC connections the timed load is spread over.
    connections: usize,
    /// The server the bench started; `None` with --addr.
    server: Option<InProcess>,
    endpoint: String,
    /// The bench's own connection: the units, the feed, the read-back.
    control: DispatchClient<Channel>,
    units: Vec<pb::Unit>,
    /// The run's reports, drawn before the load starts.
    incidents: Arc<Vec<pb::ReportIncidentRequest>>,
    /// Wall-clock time the run started: the read-back lists incidents
    /// reported from then on only (not a journal's earlier history).
    started_at: std::time::SystemTime,
    /// The data folder's fdatasync latency (durable in-process runs).
    fsync: Option<fsync::FsyncProbe>,
    /// The dispatch configuration the in-process server runs (or, with
    /// --addr, the one --config names: what the bench assumes).
    dispatch: lastmile_core::DispatchConfig,
    /// The run's reports previewed on the idle district before the load.
    idle: FindShare,
}

/// Of the tiers that apply, how many find every required unit within target.
#[derive(Clone, Copy, Debug, Default)]
struct FindShare {
    tiers: u64,
    found: u64,
}

impl FindShare {
    fn add(&mut self, state: pb::TierState) {
        if state != pb::TierState::NotApplicable {
            self.tiers += 1;
            self.found += u64::from(state == pb::TierState::Paging);
        }
    }

    fn share(self) -> f64 {
        if self.tiers == 0 { 0.0 } else { self.found as f64 / self.tiers as f64 }
    }
}

/// A run's reports should find their units at least this share as often
/// as on the idle district for its figures to time real work (issue 17);
/// below it the table says so.
const REAL_WORK_SHARE: f64 = 0.9;

/// Previews taken of the run's incidents on the idle district, at most.
const IDLE_PREVIEWS: usize = 1000;

/// The run's first [`IDLE_PREVIEWS`] reports, previewed before the load:
/// how often a report finds its units when nothing else is going on.
async fn idle_find_share(
    control: &mut DispatchClient<Channel>,
    incidents: &[pb::ReportIncidentRequest],
) -> anyhow::Result<FindShare> {
    let mut share = FindShare::default();
    for r in incidents.iter().take(IDLE_PREVIEWS) {
        let preview = control
            .preview_dispatch(pb::PreviewDispatchRequest { location: r.location, kind: r.kind, severity: r.severity })
            .await
            .context("PreviewDispatch (idle district)")?
            .into_inner();
        for t in &preview.tiers {
            share.add(t.state());
        }
    }
    Ok(share)
}

impl Setup {
    async fn start(args: &BenchArgs) -> anyhow::Result<Setup> {
        let started_at = std::time::SystemTime::now();
        let seed = seed(args);
        let run_tag = run_tag();
        let (server, area, dispatch) = start_server(args, seed).await?;
        let fsync = match (&server, &args.data_dir) {
            (Some(_), Some(dir)) if args.fsync_rounds > 0 => {
                let (dir, rounds) = (dir.clone(), args.fsync_rounds);
                Some(tokio::task::spawn_blocking(move || fsync::probe(&dir, rounds)).await.context("fsync probe")??)
            }
            _ => None,
        };
        let endpoint = match (&args.addr, &server) {
            (Some(addr), _) if addr.contains(',') => {
                // The nodes of a cluster: the leader, found once at the start.
                let addrs = crate::connect::addresses(addr);
                for a in &addrs {
                    check_loopback(a)?;
                }
                let endpoint = |a: &str| Endpoint::from_shared(a.to_string()).map_err(anyhow::Error::from);
                crate::connect::find_leader(&addrs, endpoint, crate::connect::Bearer::none()).await?
            }
            (Some(addr), _) => check_loopback(addr)?,
            (None, Some(s)) => format!("http://{}", s.addr),
            (None, None) => unreachable!("no address and no server"),
        };
        let mode = mode(args);
        let connections = load_connections(args, mode);
        let mut control = DispatchClient::new(connect(&endpoint).await?);
        let units = list_units(&mut control).await?;
        let incidents = Arc::new(draw_incidents(args, seed, &run_tag, &area, &units)?);
        let idle = idle_find_share(&mut control, &incidents).await?;
        Ok(Setup {
            seed,
            mode,
            connections,
            server,
            endpoint,
            control,
            units,
            incidents,
            started_at,
            fsync,
            dispatch,
            idle,
        })
    }
}

/// The district the incidents are drawn in, the in-process server (none
/// with --addr) and its dispatch configuration.
async fn start_server(
    args: &BenchArgs,
    seed: u64,
) -> anyhow::Result<(Option<InProcess>, ServiceArea, lastmile_core::DispatchConfig)> {
    let mut config = match &args.config {
        Some(path) => LastmileConfig::load(path)?,
        None => LastmileConfig::embedded()?,
    };
    let (_, area) = config.load_dataset()?;
    if args.addr.is_some() {
        if args.fleet_scale != 1 {
            bail!("--fleet-scale is for the in-process server (not with --addr)");
        }
        return Ok((None, area, config.dispatch));
    }
    // Read once by the server's start-up below, deleted when this drops.
    let _scaled = match args.fleet_scale {
        1 => None,
        n => Some(fleet::apply(&mut config, n, seed)?),
    };
    let ack_timeout_s = args.ack_timeout_s.or(args.optimality.then_some(OPTIMALITY_ACK_TIMEOUT_S));
    if let Some(s) = ack_timeout_s {
        for tier in [
            &mut config.dispatch.tiers.t1,
            &mut config.dispatch.tiers.t3,
            &mut config.dispatch.tiers.t5,
            &mut config.dispatch.tiers.t10,
        ] {
            tier.ack_timeout_s = s;
        }
    }
    config.journal.backend = match (&args.data_dir, &args.postgres) {
        (Some(dir), _) => lastmile_server::config::JournalBackend::Sqlite { data_dir: dir.clone() },
        (None, Some(url)) => {
            let schema = args.postgres_schema.clone();
            lastmile_store::drop_schema(url, &schema).context("--postgres: emptying the bench's schema")?;
            let pg = lastmile_server::config::PostgresJournal::new(url.clone(), Some(schema))
                .map_err(|e| anyhow::anyhow!("--postgres: {e}"))?;
            lastmile_server::config::JournalBackend::Postgres(pg)
        }
        (None, None) => lastmile_server::config::JournalBackend::Memory,
    };
    config.feed.subscriber_buffer_events = config.feed.subscriber_buffer_events.max(BENCH_FEED_BUFFER_EVENTS);
    config.validate()?;
    let dispatch = config.dispatch.clone();
    Ok((Some(InProcess::start(config, args.overload.enabled()).await?), area, dispatch))
}

/// The run's incidents, drawn in the district around the server's units.
fn draw_incidents(
    args: &BenchArgs,
    seed: u64,
    run_tag: &str,
    area: &ServiceArea,
    units: &[pb::Unit],
) -> anyhow::Result<Vec<pb::ReportIncidentRequest>> {
    let bbox =
        scenario::BoundingBox::around(units.iter().filter_map(|u| u.home.or(u.position)).map(|p| (p.lat, p.lng)), 0.01)
            .context("the server has no units")?;
    let (incidents, fell_back) = scenario::incidents(args.scenario, args.incidents, seed, run_tag, area, bbox)?;
    if fell_back > 0 {
        eprintln!(
            "lastmile bench: {fell_back} typhoon incident(s) drawn anywhere: the dataset has no {:?}",
            scenario::TYPHOON_TOWNS
        );
    }
    Ok(incidents)
}

/// The live feed, read in its own task from before the load starts.
struct Feed {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<feed::Replay>,
}

impl Feed {
    async fn follow(control: &mut DispatchClient<Channel>) -> anyhow::Result<Feed> {
        let stream = control
            .watch_events(pb::WatchEventsRequest::default())
            .await
            .context("WatchEvents (the bench needs a feed slot: feed.max_watchers)")?
            .into_inner();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(feed::follow(stream, stopped, Duration::from_millis(300), Duration::from_secs(5)));
        Ok(Feed { stop, task })
    }
}

/// A simulated crew for every unit (none with --no-terminals).
struct Fleet {
    /// What the terminals received and how the crews answered.
    log: Arc<PageLog>,
    crews: JoinSet<Result<(), tonic::Status>>,
}

impl Fleet {
    /// Connects every crew's terminal and waits until all are subscribed.
    async fn start(args: &BenchArgs, setup: &Setup) -> anyhow::Result<Fleet> {
        let log = Arc::new(PageLog::default());
        let mut crews = JoinSet::new();
        if args.no_terminals {
            return Ok(Fleet { log, crews });
        }
        let model = Arc::new(crew_model(args, setup.seed));
        for chunk in setup.units.chunks(TERMINALS_PER_CHANNEL) {
            let channel = connect(&setup.endpoint).await?;
            for unit in chunk {
                crews.spawn(crate::sim_terminal::run_crew(
                    crate::connect::Bearer::wrap_plain(channel.clone()),
                    unit.id.clone(),
                    unit.position.or(unit.home),
                    model.clone(),
                    log.clone(),
                ));
            }
        }
        let ready_by = Instant::now() + Duration::from_secs(30);
        while log.subscribed.load(Ordering::Relaxed) < setup.units.len() as u64 {
            if Instant::now() > ready_by {
                bail!(
                    "only {} of {} terminals subscribed within 30 s",
                    log.subscribed.load(Ordering::Relaxed),
                    setup.units.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Fleet { log, crews })
    }

    /// Waits (within --settle-s and the deadline) for the reports' pages to
    /// reach the terminals, lets the crews act on them, then stops the crews.
    async fn settle_and_stop(&mut self, args: &BenchArgs, expected: &[(usize, &Reported)], deadline: Instant) {
        self.settle_and_stop_within(args, expected, Duration::from_secs_f64(args.settle_s.max(0.0)), deadline).await
    }

    /// [`Fleet::settle_and_stop`], waiting `settle` at most.
    async fn settle_and_stop_within(
        &mut self,
        args: &BenchArgs,
        expected: &[(usize, &Reported)],
        settle: Duration,
        deadline: Instant,
    ) {
        let settle_by = (Instant::now() + settle).min(deadline);
        if !args.no_terminals {
            while Instant::now() < settle_by && !all_paged(&self.log, expected) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the crews act on what they got, within the settle time.
            tokio::time::sleep_until(settle_by).await;
        }
        self.crews.abort_all();
        while self.crews.join_next().await.is_some() {}
    }
}

/// How the crews answer, from the flags (checked before the run starts).
fn crew_model(args: &BenchArgs, seed: u64) -> CrewModel {
    let crew = lastmile_core::sim::CrewTravel { seed, ..args.crew.travel().unwrap_or_default() };
    CrewModel {
        seed,
        silent_fraction: args.silent,
        // --optimality: crews accept or stay silent, and do not drive.
        decline_fraction: if args.optimality { 0.0 } else { args.decline },
        recover_after: (args.recover_after_s > 0.0 && !args.optimality)
            .then(|| Duration::from_secs_f64(args.recover_after_s / args.time_scale)),
        behaviour: Behaviour {
            auto_ack: true,
            decline: false,
            ack_delay: Duration::from_secs_f64(args.ack_delay_s.max(0.0)),
            drive: !args.no_drive && !args.optimality,
            time_scale: args.time_scale,
            on_scene_s: args.on_scene_s,
            verbose: false,
            crew,
        },
    }
}

/// Whether every unit that the reports paged has received its page.
fn all_paged(log: &PageLog, expected: &[(usize, &Reported)]) -> bool {
    expected.iter().all(|(_, r)| {
        r.tiers.iter().flat_map(|t| &t.assigned).all(|(unit, _)| log.first_delivery(&r.incident_id, unit).is_some())
    })
}

/// The reports answered OK that are not duplicates (their pages are
/// expected), with their index in the run.
fn expected_pages(report_run: &PhaseRun<Reported>) -> Vec<(usize, &Reported)> {
    report_run
        .samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.result.as_ref().ok().filter(|r| !r.duplicate).map(|r| (i, r)))
        .collect()
}

/// The timed part of the run: a warm-up, `Ping`, then `ReportIncident` (with
/// the closer), all in the run's mode and bounded by --timeout-s.
struct Timed {
    /// Where every phase stops, whatever it has.
    deadline: Instant,
    ping_run: PhaseRun<()>,
    report_run: PhaseRun<Reported>,
    close_micros: Histogram<u64>,
    close_errors: BTreeMap<String, u64>,
    meter: cpu::CpuMeter,
    cpu_before_ping: Option<Duration>,
    cpu_after_ping: Option<Duration>,
    cpu_after_reports: Option<Duration>,
    /// With --data-dir (and --fsync-rounds > 0): the fsync probe while the
    /// reports ran.
    fsync_during: Option<fsync::FsyncProbe>,
}

impl Timed {
    async fn run(args: &BenchArgs, setup: &Setup) -> anyhow::Result<Timed> {
        let mut clients = Vec::with_capacity(setup.connections);
        for _ in 0..setup.connections {
            clients.push(DispatchClient::new(connect(&setup.endpoint).await?));
        }
        let pings = args.pings.unwrap_or(args.incidents);
        let deadline = Instant::now() + Duration::from_secs_f64(args.timeout_s.max(0.0));
        let bar = progress_bar(args, pings + args.incidents);
        let warmup = WARMUP_PINGS_PER_CONNECTION * setup.connections;
        let warmup_mode = Mode::Closed { concurrency: setup.connections };
        load::drive(warmup_mode, warmup, &clients, ping, deadline, &ProgressBar::hidden()).await;
        bar.set_message("Ping");
        let meter = cpu::CpuMeter::new(args.server_pid);
        let cpu_before_ping = meter.now();
        let ping_run = load::drive(setup.mode, pings, &clients, ping, deadline, &bar).await;
        let cpu_after_ping = meter.now();
        bar.set_message("Report");
        // The closer: one message per report at most, so a channel of that
        // capacity never blocks a reporter.
        let (to_close, closing) = tokio::sync::mpsc::channel::<String>(args.incidents.max(1));
        let close_client = DispatchClient::new(connect(&setup.endpoint).await?);
        let closer = tokio::spawn(close_oldest(close_client, closing, args.open_incidents, deadline));
        let probe = match (&setup.fsync, &args.data_dir) {
            (Some(_), Some(dir)) => Some(fsync::during_load(dir)?),
            _ => None,
        };
        let report_run = report_phase(args, setup, &clients, to_close, deadline, &bar).await;
        let fsync_during = probe.map(fsync::DuringLoad::finish).transpose()?.flatten();
        bar.finish_and_clear();
        let (close_micros, close_errors) = closer.await.context("closer task")?;
        let cpu_after_reports = meter.now();
        Ok(Timed {
            deadline,
            ping_run,
            report_run,
            close_micros,
            close_errors,
            meter,
            cpu_before_ping,
            cpu_after_ping,
            cpu_after_reports,
            fsync_during,
        })
    }
}

/// A progress bar on stderr, hidden for --json or when stderr is not a terminal.
fn progress_bar(args: &BenchArgs, total: usize) -> ProgressBar {
    if args.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The gRPC floor the reports are measured against.
async fn ping(mut client: DispatchClient<Channel>, _index: usize) -> Result<(), tonic::Status> {
    client.ping(pb::PingRequest {}).await.map(|_| ())
}

/// Reports every incident of the run; each new incident goes to the closer.
async fn report_phase(
    args: &BenchArgs,
    setup: &Setup,
    clients: &[DispatchClient<Channel>],
    to_close: tokio::sync::mpsc::Sender<String>,
    deadline: Instant,
    bar: &ProgressBar,
) -> PhaseRun<Reported> {
    let incidents = setup.incidents.clone();
    let report = move |mut client: DispatchClient<Channel>, index: usize| {
        let request = incidents[index].clone();
        let to_close = to_close.clone();
        async move {
            let r = reported(client.report_incident(request).await?.into_inner());
            if !r.duplicate {
                let _ = to_close.try_send(r.incident_id.clone());
            }
            Ok(r)
        }
    };
    load::drive(setup.mode, args.incidents, clients, report, deadline, bar).await
}

/// The closer task: when more than `keep_open` of the run's incidents are
/// open (0: no limit), closes the oldest, at most CLOSES_IN_FLIGHT at once so
/// closing keeps up with the reports. Ends when every sender is gone; returns
/// the closes' latencies and errors.
async fn close_oldest(
    client: DispatchClient<Channel>,
    mut closing: tokio::sync::mpsc::Receiver<String>,
    keep_open: usize,
    deadline: Instant,
) -> (Histogram<u64>, BTreeMap<String, u64>) {
    let mut open = std::collections::VecDeque::new();
    let mut micros = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    // Closes in flight at once, so closing keeps up with the reports.
    let mut in_flight = JoinSet::new();
    let mut tally = |done: Result<Result<Duration, String>, tokio::task::JoinError>| match done {
        Ok(Ok(latency)) => record(&mut micros, latency),
        Ok(Err(code)) => *errors.entry(code).or_default() += 1,
        Err(_) => {}
    };
    while let Some(id) = closing.recv().await {
        open.push_back(id);
        while keep_open > 0 && open.len() > keep_open {
            let Some(oldest) = open.pop_front() else { break };
            while in_flight.len() >= CLOSES_IN_FLIGHT {
                if let Some(done) = in_flight.join_next().await {
                    tally(done);
                }
            }
            in_flight.spawn(close_one(client.clone(), oldest, deadline));
        }
    }
    while let Some(done) = in_flight.join_next().await {
        tally(done);
    }
    (micros, errors)
}

/// One timed CloseIncident; the error is the gRPC code's name.
async fn close_one(mut client: DispatchClient<Channel>, id: String, deadline: Instant) -> Result<Duration, String> {
    let sent = Instant::now();
    let request = pb::CloseIncidentRequest { id, reason: "lastmile bench".into() };
    match tokio::time::timeout_at(deadline, client.close_incident(request)).await {
        Ok(Ok(_)) => Ok(sent.elapsed()),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Err(_) => Err(load::BENCH_TIMEOUT.to_string()),
    }
}

/// Reads of the settled state --optimality makes at most.
const SETTLED_READS: usize = 30;

/// The run's incidents once their assignments stand still: read until two
/// reads a second apart show the same pages (their units, states and
/// within-target flags). Returns them and how many reads it took.
async fn settled_read(
    control: &mut DispatchClient<Channel>,
    started_at: std::time::SystemTime,
    ours: &HashSet<&str>,
) -> anyhow::Result<(Vec<pb::Incident>, usize)> {
    let from = started_at.checked_sub(Duration::from_secs(1)).unwrap_or(started_at);
    let pages = |incidents: &[pb::Incident]| -> Vec<(String, String, i32, bool)> {
        let mut pages: Vec<_> = incidents
            .iter()
            .flat_map(|i| {
                i.tiers
                    .iter()
                    .flat_map(|t| &t.assignments)
                    .map(|a| (i.id.clone(), a.unit_id.clone(), a.state, a.within_target))
            })
            .collect();
        pages.sort();
        pages
    };
    let read = |incidents: Vec<pb::Incident>| -> Vec<pb::Incident> {
        incidents.into_iter().filter(|i| ours.contains(i.id.as_str())).collect()
    };
    let mut last = read(list_incidents(control, from).await?);
    for reads in 2..=SETTLED_READS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read(list_incidents(control, from).await?);
        if pages(&now) == pages(&last) {
            return Ok((now, reads));
        }
        last = now;
    }
    bail!("--optimality: the assignments still changed after {SETTLED_READS} reads a second apart")
}

/// What reading every incident back found.
struct ReadBack {
    failures: Vec<String>,
    /// Tiers of the run's incidents by their state at the end.
    end_states: BTreeMap<&'static str, u64>,
    /// Units held by two open incidents, read back twice.
    confirmed_conflicts: u64,
}

/// Reads every incident back: each reported OK is there, every tier of the
/// run's incidents in a defined state, and no unit held by two open incidents.
async fn read_back(
    control: &mut DispatchClient<Channel>,
    started_at: std::time::SystemTime,
    report_run: &PhaseRun<Reported>,
    expected: &[(usize, &Reported)],
) -> anyhow::Result<ReadBack> {
    // A second of slack for a server whose clock reads a little behind ours.
    let from = started_at.checked_sub(Duration::from_secs(1)).unwrap_or(started_at);
    let listed = list_incidents(control, from).await?;
    let ours: HashSet<&str> = expected.iter().map(|(_, r)| r.incident_id.as_str()).collect();
    let by_id: HashMap<&str, &pb::Incident> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut failures: Vec<String> = Vec::new();
    let mut missing = 0;
    for s in &report_run.samples {
        if let Ok(r) = &s.result {
            match by_id.get(r.incident_id.as_str()) {
                Some(i) if i.external_id == r.external_id => {}
                _ => missing += 1,
            }
        }
    }
    if missing > 0 {
        failures.push(format!("{missing} incident(s) reported OK are missing from ListIncidents"));
    }
    let mut end_states: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut undefined = 0;
    for incident in listed.iter().filter(|i| ours.contains(i.id.as_str())) {
        for t in &incident.tiers {
            if t.state() == pb::TierState::Unspecified {
                undefined += 1;
            }
            *end_states.entry(tier_name(t.state())).or_default() += 1;
        }
    }
    if undefined > 0 {
        failures.push(format!("{undefined} tier(s) ended in TIER_STATE_UNSPECIFIED"));
    }
    let confirmed_conflicts = confirm_conflicts(control, &conflicts(&listed), &mut failures).await?;
    Ok(ReadBack { failures, end_states, confirmed_conflicts })
}

/// Double assignment in the read-back, (unit, one incident, the other) (for
/// --addr; in process, the core check is exact).
fn conflicts(listed: &[pb::Incident]) -> Vec<(String, String, String)> {
    let mut holder: HashMap<&str, &str> = HashMap::new();
    let mut conflicts = Vec::new();
    for incident in listed.iter().filter(|i| i.status() == pb::IncidentStatus::Open) {
        for a in incident.tiers.iter().flat_map(|t| &t.assignments) {
            if holds_unit(a.state())
                && let Some(other) = holder.insert(&a.unit_id, &incident.id)
            {
                conflicts.push((a.unit_id.clone(), other.to_string(), incident.id.clone()));
            }
        }
    }
    conflicts
}

/// The server runs on while the pages are read: re-reads both incidents of
/// each conflict to rule out a move in between. A conflict read back twice is
/// a failure; returns how many were.
async fn confirm_conflicts(
    control: &mut DispatchClient<Channel>,
    conflicts: &[(String, String, String)],
    failures: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let mut confirmed = 0;
    for (unit, a, b) in conflicts {
        let mut still = 0;
        for id in [a, b] {
            let incident = control.get_incident(pb::GetIncidentRequest { id: id.clone() }).await?.into_inner();
            let holds = incident.status() == pb::IncidentStatus::Open
                && incident
                    .tiers
                    .iter()
                    .flat_map(|t| &t.assignments)
                    .any(|x| &x.unit_id == unit && holds_unit(x.state()));
            still += holds as u32;
        }
        if still == 2 {
            confirmed += 1;
            failures.push(format!("unit {unit} held by both {a} and {b} (read back twice)"));
        }
    }
    Ok(confirmed)
}

/// Every check of the run, once the server has stopped.
struct Checks {
    /// In the order found: read-back, core, feed.
    failures: Vec<String>,
    end_states: BTreeMap<&'static str, u64>,
    confirmed_conflicts: u64,
    /// `Dispatcher::check_invariants`; `None` against --addr.
    core_check: Option<Result<(), String>>,
    replay: feed::Replay,
}

/// Stops the feed (and the in-process server), then the exact end-state
/// check and the feed replay's.
async fn finish_checks(server: Option<&mut InProcess>, feed: Feed, read_back: ReadBack) -> anyhow::Result<Checks> {
    let ReadBack { mut failures, end_states, confirmed_conflicts } = read_back;
    let _ = feed.stop.send(true);
    let mut core_check = None;
    if let Some(server) = server {
        server.shutdown().await?;
        let result = server.dispatcher.check_invariants();
        if let Err(e) = &result {
            failures.push(format!("Dispatcher::check_invariants: {e}"));
        }
        core_check = Some(result);
    }
    let replay = feed.task.await.context("feed task")?;
    if replay.violations > 0 {
        failures.push(format!(
            "live feed replay: {} double assignment(s), e.g. {}",
            replay.violations,
            replay.violation_examples.first().cloned().unwrap_or_default()
        ));
    }
    Ok(Checks { failures, end_states, confirmed_conflicts, core_check, replay })
}

/// What the reports said against what the terminals received.
struct PageTally {
    /// Report (its intended send) to the last of its pages delivered, per fully paged incident.
    page_micros: Histogram<u64>,
    incidents_paged: u64,
    incidents_without_units: u64,
    not_fully_paged: u64,
    /// When the last page of a fully paged incident was delivered.
    last_page: Option<Instant>,
    tiers_total: u64,
    tiers_paging: u64,
    tiers_short: u64,
    units_paged: u64,
    units_within: u64,
    /// Tiers that got fewer units than their plan asked (nobody free or in
    /// reach), by tier.
    tiers_unfilled: BTreeMap<i32, u64>,
    /// Incidents whose every tier got all the units it asked for (within
    /// target or by fallback).
    incidents_every_tier_filled: u64,
    /// Tiers that did not apply (NOT_APPLICABLE), left out of the rest.
    tiers_not_applicable: u64,
}

impl PageTally {
    /// Of the applicable tiers at report, those PAGING (every unit within target).
    fn found(&self) -> FindShare {
        FindShare { tiers: self.tiers_total, found: self.tiers_paging }
    }

    fn count(expected: &[(usize, &Reported)], report_run: &PhaseRun<Reported>, log: &PageLog) -> PageTally {
        let mut tally = PageTally {
            page_micros: new_histogram(),
            incidents_paged: 0,
            incidents_without_units: 0,
            not_fully_paged: 0,
            last_page: None,
            tiers_total: 0,
            tiers_paging: 0,
            tiers_short: 0,
            units_paged: 0,
            units_within: 0,
            tiers_unfilled: BTreeMap::new(),
            incidents_every_tier_filled: 0,
            tiers_not_applicable: 0,
        };
        for (i, r) in expected {
            tally.add(r, report_run.samples[*i].intended, log);
        }
        tally
    }

    /// One report, `intended` its send time.
    fn add(&mut self, r: &Reported, intended: Instant, log: &PageLog) {
        let mut latest = None;
        let mut complete = true;
        let mut filled = true;
        for TierAtReport { tier, state, required, assigned } in &r.tiers {
            if *state == pb::TierState::NotApplicable {
                self.tiers_not_applicable += 1;
                continue;
            }
            self.tiers_total += 1;
            if assigned.len() < *required as usize {
                filled = false;
                *self.tiers_unfilled.entry(*tier).or_default() += 1;
            }
            match state {
                pb::TierState::Paging => self.tiers_paging += 1,
                pb::TierState::Short => self.tiers_short += 1,
                _ => {}
            }
            for (unit, within) in assigned {
                self.units_paged += 1;
                self.units_within += *within as u64;
                match log.first_delivery(&r.incident_id, unit) {
                    Some(at) => latest = latest.max(Some(at)),
                    None => complete = false,
                }
            }
        }
        self.incidents_every_tier_filled += filled as u64;
        match latest {
            None if complete => self.incidents_without_units += 1,
            Some(at) if complete => {
                self.incidents_paged += 1;
                record(&mut self.page_micros, at.saturating_duration_since(intended));
                self.last_page = self.last_page.max(Some(at));
            }
            _ => self.not_fully_paged += 1,
        }
    }
}

/// Everything the run reports, figured once for the table, the JSON and the chart.
struct Findings<'a> {
    args: &'a BenchArgs,
    setup: &'a Setup,
    timed: &'a Timed,
    checks: &'a Checks,
    log: &'a PageLog,
    ping: PhaseSummary,
    report: PhaseSummary,
    pages: PageTally,
    duplicates: usize,
    burst_last_response: Option<Duration>,
    burst_fully_paged: Option<Duration>,
    ping_cpu: Option<cpu::PhaseCpu>,
    report_cpu: Option<cpu::PhaseCpu>,
    cpu_ratio: Option<f64>,
    p50_ratio: f64,
    throughput_ratio: f64,
    mode_text: String,
    target_text: String,
    storage: String,
    targets: Vec<(String, bool, String)>,
    /// --optimality: per tier, and the reads it took to see the state settled.
    optimality: Option<(Vec<optimality::TierMeasure>, usize)>,
}

impl<'a> Findings<'a> {
    fn new(
        args: &'a BenchArgs,
        setup: &'a Setup,
        timed: &'a Timed,
        log: &'a PageLog,
        expected: &[(usize, &Reported)],
        checks: &'a Checks,
    ) -> Findings<'a> {
        let ping = summarize("Ping", &timed.ping_run);
        let report = summarize("ReportIncident", &timed.report_run);
        let pages = PageTally::count(expected, &timed.report_run, log);
        let report_run = &timed.report_run;
        let duplicates = report_run.samples.iter().filter(|s| s.result.as_ref().is_ok_and(|r| r.duplicate)).count();
        let first_send = report_run.samples.iter().map(|s| s.sent).min();
        let burst_last_response = first_send.map(|f| report_run.finished.saturating_duration_since(f));
        let burst_fully_paged = match (first_send, pages.last_page) {
            (Some(f), Some(l)) if pages.not_fully_paged == 0 => Some(l.saturating_duration_since(f)),
            _ => None,
        };
        let ping_cpu = cpu::PhaseCpu::between(timed.cpu_before_ping, timed.cpu_after_ping, ping.ok);
        let report_cpu = cpu::PhaseCpu::between(timed.cpu_after_ping, timed.cpu_after_reports, report.ok);
        let cpu_ratio = match (ping_cpu, report_cpu) {
            (Some(p), Some(r)) if p.micros_per_op() > 0.0 => Some(r.micros_per_op() / p.micros_per_op()),
            _ => None,
        };
        let p50_ratio = report.p(0.5) as f64 / ping.p(0.5).max(1) as f64;
        let throughput_ratio = report.throughput_per_s() / ping.throughput_per_s().max(f64::MIN_POSITIVE);
        let targets = evaluate_targets(setup.mode, args, p50_ratio, throughput_ratio, burst_fully_paged);
        Findings {
            mode_text: mode_text(setup.mode, args),
            target_text: target_text(args, setup.server.as_ref()),
            storage: storage_text(args),
            args,
            setup,
            timed,
            checks,
            log,
            ping,
            report,
            pages,
            duplicates,
            burst_last_response,
            burst_fully_paged,
            ping_cpu,
            report_cpu,
            cpu_ratio,
            p50_ratio,
            throughput_ratio,
            targets,
            optimality: None,
        }
    }
}

fn mode_text(mode: Mode, args: &BenchArgs) -> String {
    match mode {
        Mode::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
        Mode::Open { rate, max_in_flight } => format!("open loop, {rate} req/s, at most {max_in_flight} in flight"),
        Mode::Burst => format!("burst of {}", args.incidents),
    }
}

fn target_text(args: &BenchArgs, server: Option<&InProcess>) -> String {
    match &args.addr {
        Some(a) => a.clone(),
        None => format!(
            "in-process server on {} ({})",
            server.map(|s| s.addr.to_string()).unwrap_or_default(),
            args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into())
        ),
    }
}

fn storage_text(args: &BenchArgs) -> String {
    match (&args.addr, &args.data_dir, &args.postgres) {
        (Some(_), _, _) => "storage: whatever the target server runs with".to_string(),
        (None, Some(dir), _) => format!("durable: journal in {}", dir.display()),
        (None, None, Some(_)) => format!("durable: PostgreSQL journal, schema {}", args.postgres_schema),
        (None, None, None) => "in memory (no journal)".to_string(),
    }
}

impl Findings<'_> {
    /// The latency chart, written to --chart.
    fn write_chart(&self) -> anyhow::Result<()> {
        let args = self.args;
        let chart = svg::percentile_chart(
            &format!("lastmile bench: {:?}, {}", args.scenario, self.mode_text),
            &format!(
                "{} incidents, {} units, {} connection(s), seed {}; p50 ratio {:.2}x, throughput ratio {:.0}%",
                args.incidents,
                self.setup.units.len(),
                self.setup.connections,
                self.setup.seed,
                self.p50_ratio,
                self.throughput_ratio * 100.0
            ),
            &[
                svg::Series { name: "Ping".into(), micros: &self.ping.micros },
                svg::Series { name: "ReportIncident".into(), micros: &self.report.micros },
                svg::Series { name: "report → all pages delivered".into(), micros: &self.pages.page_micros },
            ],
        );
        std::fs::write(&args.chart, chart).with_context(|| format!("cannot write {}", args.chart.display()))
    }

    /// What the terminals counted.
    fn log_counts(&self) -> serde_json::Value {
        let log = self.log;
        json!({
            "subscribed": log.subscribed.load(Ordering::Relaxed),
            "pages_received": log.pages.load(Ordering::Relaxed),
            "repeated": log.repeated.load(Ordering::Relaxed),
            "accepted": log.accepted.load(Ordering::Relaxed),
            "declined": log.declined.load(Ordering::Relaxed),
            "silent": log.silent.load(Ordering::Relaxed),
            "refused": log.refused.load(Ordering::Relaxed),
            "completed_drives": log.completed.load(Ordering::Relaxed),
            "recovered": log.recovered.load(Ordering::Relaxed),
        })
    }

    /// The run as JSON (--json).
    fn json(&self) -> serde_json::Value {
        let (args, timed, checks) = (self.args, self.timed, self.checks);
        json!({
            "seed": self.setup.seed,
            "scenario": format!("{:?}", args.scenario).to_lowercase(),
            "mode": self.mode_text,
            "target": self.target_text,
            "storage": self.storage,
            "incidents": args.incidents,
            "units": self.setup.units.len(),
            "fleet_scale": args.fleet_scale,
            "open_incidents_kept": args.open_incidents,
            "terminals_on": !args.no_terminals,
            "connections": self.setup.connections,
            "fsync": self.setup.fsync.as_ref().map(fsync::FsyncProbe::json),
            "fsync_during_load": timed.fsync_during.as_ref().map(fsync::FsyncProbe::json),
            "ping": self.ping.json(),
            "report_incident": self.report.json(),
            "report_to_all_pages_delivered_us": latency_json(&self.pages.page_micros),
            "close_incident": { "latency_us": latency_json(&timed.close_micros), "errors": timed.close_errors, "keep_open": args.open_incidents },
            "ratios": { "p50_report_over_ping": self.p50_ratio, "throughput_report_over_ping": self.throughput_ratio, "cpu_per_report_over_cpu_per_ping": self.cpu_ratio },
            "cpu": {
                "whose": timed.meter.whose,
                "ping_us_per_op": self.ping_cpu.map(|c| c.micros_per_op()),
                "report_us_per_op": self.report_cpu.map(|c| c.micros_per_op()),
                "report_phase_includes": "ReportIncident, the closer's CloseIncident, the terminals' and the feed reader's work during the report phase",
            },
            "burst": {
                "first_send_to_last_response_s": self.burst_last_response.map(|d| d.as_secs_f64()),
                "first_send_to_last_page_delivered_s": self.burst_fully_paged.map(|d| d.as_secs_f64()),
            },
            "dispatch": self.dispatch_json(),
            "find_share": self.find_share_json(),
            "optimality": self.optimality.as_ref().map(|(tiers, reads)| json!({
                "settled_after_reads": reads,
                "tiers": tiers.iter().map(optimality::TierMeasure::json).collect::<Vec<_>>(),
                "targets_met": optimality_met(tiers),
            })),
            "terminals": self.log_counts(),
            "feed": {
                "events": checks.replay.events,
                "by_type": checks.replay.by_type,
                "gaps": checks.replay.gaps,
                "cut_off": checks.replay.cut_off,
                "double_assignments": checks.replay.violations,
                "publication_order_inversions": checks.replay.inversions,
                "unmatched": checks.replay.unmatched,
            },
            "invariants": {
                "ok": checks.failures.is_empty(),
                "failures": checks.failures,
                "readback_conflicts_confirmed": checks.confirmed_conflicts,
                "core_check": checks.core_check.as_ref().map(|r| r.clone().err().unwrap_or_else(|| "ok".into())),
            },
            "targets": self.targets.iter().map(|(name, met, detail)| json!({"target": name, "met": met, "detail": detail})).collect::<Vec<_>>(),
            "chart": args.chart.display().to_string(),
        })
    }

    /// How often reports found every unit within target, idle and under load.
    fn find_share_json(&self) -> serde_json::Value {
        let (idle, load) = (self.setup.idle, self.pages.found());
        json!({
            "idle_previews": { "tiers": idle.tiers, "found": idle.found, "share": idle.share() },
            "under_load": { "tiers": load.tiers, "found": load.found, "share": load.share() },
            "load_over_idle": load.share() / idle.share().max(f64::MIN_POSITIVE),
            "real_work": load.share() >= REAL_WORK_SHARE * idle.share(),
        })
    }

    fn dispatch_json(&self) -> serde_json::Value {
        let pages = &self.pages;
        json!({
            "duplicates": self.duplicates,
            "incidents_fully_paged": pages.incidents_paged,
            "incidents_without_units": pages.incidents_without_units,
            "incidents_not_fully_paged": pages.not_fully_paged,
            "incidents_every_tier_filled": pages.incidents_every_tier_filled,
            "tiers_unfilled_at_report_by_tier": pages.tiers_unfilled.iter().map(|(t, n)| (t.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "tiers": pages.tiers_total,
            "tiers_not_applicable": pages.tiers_not_applicable,
            "tiers_paging_within_target_at_report": pages.tiers_paging,
            "tiers_short_at_report": pages.tiers_short,
            "units_paged": pages.units_paged,
            "units_within_target": pages.units_within,
            "tier_states_at_end": self.checks.end_states,
        })
    }

    /// The run as a table for people.
    fn print_table(&self) {
        self.print_latencies();
        println!();
        self.print_dispatch();
        self.print_optimality();
        self.print_invariants();
    }

    /// The find shares and, with --optimality, the comparison per tier.
    fn print_optimality(&self) {
        let (idle, load) = (self.setup.idle, self.pages.found());
        println!(
            "  reports that found every unit within target (applicable tiers): idle district {:.1}% ({} of {} previewed), under this load {:.1}% ({} of {}): {:.2} of idle",
            idle.share() * 100.0,
            idle.found,
            idle.tiers,
            load.share() * 100.0,
            load.found,
            load.tiers,
            load.share() / idle.share().max(f64::MIN_POSITIVE)
        );
        if load.share() < REAL_WORK_SHARE * idle.share() {
            println!(
                "  NOTE: under {:.0}% of the idle share: many of this run's reports found nobody free (cheap answers); for figures of real work, a bigger fleet (--fleet-scale) or fewer incidents kept open (--open-incidents), see BENCHMARKS.md",
                REAL_WORK_SHARE * 100.0
            );
        }
        let Some((tiers, reads)) = &self.optimality else { return };
        println!(
            "  optimality (state read settled after {reads} reads a second apart; slots = required of applicable tiers):"
        );
        println!(
            "    tier   slots  units   within target: lastmile / optimum = ratio     filled: lastmile / optimum = ratio"
        );
        for m in tiers {
            println!(
                "    {:>4}  {:>6} {:>6}   {:>13} / {:<7} = {:.3}     {:>14} / {:<7} = {:.3}",
                m.tier.to_string(),
                m.slots,
                m.units,
                m.lastmile_within,
                m.optimum_within,
                m.within_ratio(),
                m.lastmile_filled,
                m.optimum_filled,
                m.filled_ratio()
            );
        }
        println!(
            "  target within target >= 0.9 of the optimum in every tier, filled >= 0.95: {}",
            if optimality_met(tiers) { "MET" } else { "NOT MET" }
        );
    }

    /// The header, the phases' latencies, the ratios and the burst.
    fn print_latencies(&self) {
        let (args, timed) = (self.args, self.timed);
        println!("lastmile bench — {:?}, {}", args.scenario, self.mode_text);
        println!(
            "  target: {}; {}\n  {} incidents, {} units, {} load connection(s), seed {}",
            self.target_text,
            self.storage,
            args.incidents,
            self.setup.units.len(),
            self.setup.connections,
            self.setup.seed
        );
        if let Some(f) = &self.setup.fsync {
            println!(
                "  fsync probe (data folder, before the load): {} rounds of {} B + fdatasync: p50 {}, p90 {}, max {}",
                f.rounds,
                fsync::PROBE_WRITE_BYTES,
                fmt_us(f.p(0.5)),
                fmt_us(f.p(0.9)),
                fmt_us(f.micros.max())
            );
        }
        if let Some(f) = &timed.fsync_during {
            println!(
                "  fsync probe (data folder, during the reports): {} rounds, one every {} ms: p50 {}, p90 {}, max {}",
                f.rounds,
                fsync::DURING_LOAD_INTERVAL.as_millis(),
                fmt_us(f.p(0.5)),
                fmt_us(f.p(0.9)),
                fmt_us(f.micros.max())
            );
        }
        println!();
        println!("{}", report::HEADER);
        println!("{}", self.ping.row());
        println!("{}", self.report.row());
        println!("{}", latency_row("report → all paged", &self.pages.page_micros));
        println!(
            "{}{}",
            latency_row("CloseIncident (closer)", &timed.close_micros),
            report::errors_suffix(&timed.close_errors, 0)
        );
        println!();
        println!(
            "  ratios (same run): ReportIncident p50 / Ping p50 = {:.2}x; ReportIncident throughput / Ping throughput = {:.0}%",
            self.p50_ratio,
            self.throughput_ratio * 100.0
        );
        if let (Some(p), Some(r), Some(ratio)) = (self.ping_cpu, self.report_cpu, self.cpu_ratio) {
            println!(
                "  CPU ({}): {:.1} µs per Ping, {:.1} µs per report (with everything the report phase set off: closes, terminals, feed) = {ratio:.2}x",
                timed.meter.whose,
                p.micros_per_op(),
                r.micros_per_op()
            );
        }
        if matches!(self.setup.mode, Mode::Burst) {
            println!(
                "  burst: first send -> last response {}; -> last page delivered {}",
                self.burst_last_response.map(|d| fmt_us(d.as_micros() as u64)).unwrap_or("-".into()),
                self.burst_fully_paged.map(|d| fmt_us(d.as_micros() as u64)).unwrap_or_else(|| format!(
                    "not all delivered ({} incident(s) short of pages)",
                    self.pages.not_fully_paged
                )),
            );
        }
    }

    /// What was dispatched and paged, the tiers, the terminals and the feed.
    fn print_dispatch(&self) {
        let (pages, checks) = (&self.pages, self.checks);
        println!(
            "  dispatch: {} reported ({} duplicate), {} fully paged, {} with no unit free, {} not fully paged by the end",
            self.report.ok,
            self.duplicates,
            pages.incidents_paged,
            pages.incidents_without_units,
            pages.not_fully_paged
        );
        let unfilled: Vec<String> = pages.tiers_unfilled.iter().map(|(t, n)| format!("tier {t}: {n}")).collect();
        println!(
            "  every tier given all its units (in target or by fallback): {} incidents; tiers short of units: {}",
            pages.incidents_every_tier_filled,
            if unfilled.is_empty() { "none".to_string() } else { unfilled.join(", ") }
        );
        println!(
            "  tiers at report: {} applicable ({} not applicable); all required units within target (PAGING) {:.1}%, SHORT {:.1}%; units paged {}, within target {:.1}%",
            pages.tiers_total,
            pages.tiers_not_applicable,
            pct(pages.tiers_paging, pages.tiers_total),
            pct(pages.tiers_short, pages.tiers_total),
            pages.units_paged,
            pct(pages.units_within, pages.units_paged)
        );
        let total_end: u64 = checks.end_states.values().sum();
        let end_line: Vec<String> =
            checks.end_states.iter().map(|(k, v)| format!("{k} {v} ({:.1}%)", pct(*v, total_end))).collect();
        println!("  tiers at the end: {}", end_line.join(", "));
        println!("  terminals: {}", self.log_counts());
        println!(
            "  live feed: {} events{}, {} publication-order inversion(s), {} unmatched",
            checks.replay.events,
            checks
                .replay
                .cut_off
                .as_ref()
                .map(|c| format!(" (CUT OFF: {c}; end-state checks only)"))
                .unwrap_or_default(),
            checks.replay.inversions,
            checks.replay.unmatched
        );
    }

    /// The invariants, the targets and where the chart is.
    fn print_invariants(&self) {
        let checks = self.checks;
        println!(
            "  invariants: {}{}",
            if checks.failures.is_empty() { "all hold" } else { "FAILED" },
            match &checks.core_check {
                Some(Ok(())) => " (feed replay, read-back, Dispatcher::check_invariants)",
                Some(Err(_)) => "",
                None => " (feed replay, read-back; no core check against --addr)",
            }
        );
        for f in &checks.failures {
            println!("    - {f}");
        }
        for (name, met, detail) in &self.targets {
            println!("  target {name}: {} ({detail})", if *met { "MET" } else { "NOT MET" });
        }
        println!("  chart: {}", self.args.chart.display());
    }
}

/// The surge issue's target: within-target slots at least 0.9 of the
/// optimum's in every tier, slots filled at least 0.95.
fn optimality_met(tiers: &[optimality::TierMeasure]) -> bool {
    tiers.iter().all(|m| m.within_ratio() >= 0.9 && m.filled_ratio() >= 0.95)
}

/// The targets that this run's mode speaks to.
fn evaluate_targets(
    mode: Mode,
    args: &BenchArgs,
    p50_ratio: f64,
    throughput_ratio: f64,
    burst_fully_paged: Option<Duration>,
) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    match mode {
        Mode::Closed { concurrency: 1 } => out.push((
            "ReportIncident p50 <= 1.5x Ping p50 at concurrency 1".to_string(),
            p50_ratio <= 1.5,
            format!("{p50_ratio:.2}x"),
        )),
        Mode::Closed { concurrency } if concurrency >= 64 => out.push((
            format!("dispatch throughput >= 50% of Ping at concurrency {concurrency}"),
            throughput_ratio >= 0.5,
            format!("{:.0}%", throughput_ratio * 100.0),
        )),
        Mode::Burst if args.incidents >= 10_000 => out.push((
            format!("burst of {} fully paged < 2 s", args.incidents),
            burst_fully_paged.is_some_and(|d| d < Duration::from_secs(2)),
            burst_fully_paged
                .map(|d| format!("{:.3} s", d.as_secs_f64()))
                .unwrap_or_else(|| "not all pages delivered".into()),
        )),
        _ => {}
    }
    out
}
