//! `lastmile bench --offered-rate R` (or `--capacity-probe-s S`): overload.
//!
//! Reports are offered in an **open loop** at a fixed rate, whatever the
//! answers (a report is sent on schedule whether or not the earlier ones
//! were answered; its latency runs from its scheduled time), over
//! `--overload-connections` connections so that one HTTP/2 connection's
//! stream limit is not what limits the load. The run, on one clock:
//!
//! 1. (optional) a **capacity probe**: a closed loop at `--concurrency` for
//!    `--capacity-probe-s`; without `--offered-rate`, R = `--overload-factor`
//!    × the reports/s it answered;
//! 2. a **baseline** at the low rate (`--cooldown-fraction` × R) for
//!    `--baseline-s`: the normal latency, measured in the same run;
//! 3. the **overload**: R reports/s for `--duration-s`;
//! 4. the **cooldown**: the low rate again for `--cooldown-s`: how fast the
//!    server is back to the baseline's latency.
//!
//! Every report's outcome is counted in the second it was scheduled in:
//! answered OK (and, a few seconds later, whether every unit it paged got its
//! page), refused RESOURCE_EXHAUSTED with or without a retry hint
//! (`retry-after` / `grpc-retry-pushback-ms`), other errors, or **dropped by
//! the client** because `--max-outstanding` reports were already waiting
//! (the bench's own bound: counted, never waited for). Beside the load: a
//! terminal probe (an `Acknowledge` of an unknown incident on a terminal
//! connection, `--terminal-probe-rate` a second: the path every
//! acknowledgement takes through transport, admission and the journal,
//! without the dispatcher's work), the crews' counters, the server's
//! `/metrics` (admission refusals by class) and the memory, every second
//! ([`super::sampler`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_client::DispatchClient;
use lastmile_proto::v1::unit_terminal_client::UnitTerminalClient;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::report::{latency_json, pct};
use super::sampler::{self, Reading};
use super::svg::fmt_us;
use crate::sim_terminal::PageLog;

/// After a report is answered, how long its pages have to reach the
/// terminals before it counts as not fully paged.
const PAGE_WAIT: Duration = Duration::from_secs(3);
/// Answered reports waiting for their page check at most (beyond: unchecked).
const PAGE_CHECKS_QUEUED: usize = 1 << 17;
/// Reports handed to the closer at most while it is behind (beyond: left open).
const CLOSER_QUEUE: usize = 1 << 16;
/// Terminal probes outstanding at most (beyond: counted as not sent).
const PROBES_OUTSTANDING: usize = 256;
/// After the cooldown, outstanding reports get this long to be answered.
const DRAIN: Duration = Duration::from_secs(30);
/// "Refused quickly": the p99 of refusals must be under this.
const QUICK_REFUSAL: Duration = Duration::from_millis(100);
/// "Back to normal": a second's answered p99 at most this multiple of the
/// baseline's (or the baseline + [`RECOVERED_SLACK`], if more).
const RECOVERED_FACTOR: f64 = 2.0;
const RECOVERED_SLACK: Duration = Duration::from_millis(20);

#[derive(clap::Args, Debug, Clone)]
pub struct OverloadArgs {
    /// Overload mode: reports per second offered in an open loop for
    /// --duration-s, between a baseline and a cooldown at the low rate.
    #[arg(long, conflicts_with_all = ["rate", "burst"])]
    pub offered_rate: Option<f64>,
    /// Overload mode: first a closed loop at --concurrency for this long; its
    /// answered reports/s is the capacity, and without --offered-rate the
    /// offered rate is --overload-factor times it. 0: no probe.
    #[arg(long, default_value_t = 0.0)]
    pub capacity_probe_s: f64,
    /// Offered rate = this x the probed capacity (without --offered-rate).
    #[arg(long, default_value_t = 2.0)]
    pub overload_factor: f64,
    /// Seconds of overload.
    #[arg(long, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Seconds at the low rate before the overload (the normal latency).
    #[arg(long, default_value_t = 5.0)]
    pub baseline_s: f64,
    /// Seconds at the low rate after the overload (the recovery).
    #[arg(long, default_value_t = 10.0)]
    pub cooldown_s: f64,
    /// The low rate of the baseline and the cooldown, as a share of the offered rate.
    #[arg(long, default_value_t = 0.05)]
    pub cooldown_fraction: f64,
    /// Reports the client keeps outstanding at most; a report due while this
    /// many wait is dropped by the client (counted), not queued.
    #[arg(long, default_value_t = 20_000)]
    pub max_outstanding: usize,
    /// gRPC connections the offered load is spread over (each carries at most
    /// server.max_concurrent_streams at once).
    #[arg(long, default_value_t = 16)]
    pub overload_connections: usize,
    /// Seconds per row of the table.
    #[arg(long, default_value_t = 5)]
    pub window_s: u64,
    /// Terminal probes (Acknowledge of an unknown incident) per second.
    #[arg(long, default_value_t = 20.0)]
    pub terminal_probe_rate: f64,
    /// With --addr: the server's HTTP gateway (host:port, loopback), whose
    /// /metrics is read every second. In process the bench gives its server one.
    #[arg(long, requires = "addr")]
    pub metrics_addr: Option<String>,
}

impl OverloadArgs {
    pub fn enabled(&self) -> bool {
        self.offered_rate.is_some() || self.capacity_probe_s > 0.0
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if let Some(r) = self.offered_rate
            && !positive(r)
        {
            anyhow::bail!("--offered-rate must be positive");
        }
        for (name, v) in [("--duration-s", self.duration_s), ("--overload-factor", self.overload_factor)] {
            if !positive(v) {
                anyhow::bail!("{name} must be positive");
            }
        }
        if !(self.cooldown_fraction > 0.0 && self.cooldown_fraction <= 1.0) {
            anyhow::bail!("--cooldown-fraction must be in (0, 1]");
        }
        if self.baseline_s < 1.0 || self.cooldown_s < 1.0 {
            anyhow::bail!("--baseline-s and --cooldown-s must be at least 1");
        }
        if self.max_outstanding == 0 || self.overload_connections == 0 || self.window_s == 0 {
            anyhow::bail!("--max-outstanding, --overload-connections and --window-s must be at least 1");
        }
        Ok(())
    }
}

/// A histogram of microseconds, 1 µs .. 10 min, 2 significant digits (1%):
/// one per second of the run and kind, so kept small (~25 KB).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// What happened to the reports scheduled in one second (and the probes).
#[derive(Clone)]
struct Second {
    offered: u64,
    dropped: u64,
    ok: u64,
    duplicate: u64,
    refused_hint: u64,
    refused_no_hint: u64,
    other: BTreeMap<String, u64>,
    ok_micros: Histogram<u64>,
    refused_micros: Histogram<u64>,
    fully_paged: u64,
    no_units: u64,
    not_fully_paged: u64,
    unchecked: u64,
    /// Report (its scheduled time) to the last of its pages delivered.
    page_micros: Histogram<u64>,
    probe_answered: u64,
    probe_refused: u64,
    probe_not_sent: u64,
    probe_micros: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Second {
            offered: 0,
            dropped: 0,
            ok: 0,
            duplicate: 0,
            refused_hint: 0,
            refused_no_hint: 0,
            other: BTreeMap::new(),
            ok_micros: histogram(),
            refused_micros: histogram(),
            fully_paged: 0,
            no_units: 0,
            not_fully_paged: 0,
            unchecked: 0,
            page_micros: histogram(),
            probe_answered: 0,
            probe_refused: 0,
            probe_not_sent: 0,
            probe_micros: histogram(),
        }
    }

    fn add(&mut self, o: &Second) {
        self.offered += o.offered;
        self.dropped += o.dropped;
        self.ok += o.ok;
        self.duplicate += o.duplicate;
        self.refused_hint += o.refused_hint;
        self.refused_no_hint += o.refused_no_hint;
        for (k, v) in &o.other {
            *self.other.entry(k.clone()).or_default() += v;
        }
        let _ = self.ok_micros.add(&o.ok_micros);
        let _ = self.refused_micros.add(&o.refused_micros);
        self.fully_paged += o.fully_paged;
        self.no_units += o.no_units;
        self.not_fully_paged += o.not_fully_paged;
        self.unchecked += o.unchecked;
        let _ = self.page_micros.add(&o.page_micros);
        self.probe_answered += o.probe_answered;
        self.probe_refused += o.probe_refused;
        self.probe_not_sent += o.probe_not_sent;
        let _ = self.probe_micros.add(&o.probe_micros);
    }

    fn refused(&self) -> u64 {
        self.refused_hint + self.refused_no_hint
    }

    fn sent(&self) -> u64 {
        self.offered - self.dropped
    }

    fn json(&self) -> Value {
        json!({
            "offered": self.offered,
            "sent": self.sent(),
            "dropped_by_client": self.dropped,
            "answered_ok": self.ok,
            "duplicates": self.duplicate,
            "fully_paged": self.fully_paged,
            "no_unit_free": self.no_units,
            "not_fully_paged": self.not_fully_paged,
            "page_check_skipped": self.unchecked,
            "refused_resource_exhausted": { "with_retry_hint": self.refused_hint, "without_retry_hint": self.refused_no_hint },
            "other_errors": self.other,
            "answered_latency_us": latency_json(&self.ok_micros),
            "refused_latency_us": latency_json(&self.refused_micros),
            "report_to_all_pages_delivered_us": latency_json(&self.page_micros),
            "terminal_probe": {
                "answered": self.probe_answered,
                "refused_resource_exhausted": self.probe_refused,
                "not_sent": self.probe_not_sent,
                "latency_us": latency_json(&self.probe_micros),
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PhaseName {
    Baseline,
    Overload,
    Cooldown,
}

impl PhaseName {
    fn as_str(self) -> &'static str {
        match self {
            PhaseName::Baseline => "baseline",
            PhaseName::Overload => "overload",
            PhaseName::Cooldown => "cooldown",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    name: PhaseName,
    rate: f64,
    /// Seconds on the run's clock.
    from_s: f64,
    to_s: f64,
}

/// What the offered load shares between its tasks.
struct Ctx {
    clock: Instant,
    /// Where every request stops, answered or not.
    hard_deadline: Instant,
    seconds: Mutex<Vec<Second>>,
    pool: Arc<Vec<pb::ReportIncidentRequest>>,
    next_index: AtomicU64,
    outstanding: Arc<Semaphore>,
    to_close: tokio::sync::mpsc::Sender<String>,
    to_check: tokio::sync::mpsc::Sender<Check>,
    /// The first refusal's message and hint, to show what a client is told.
    example_refusal: Mutex<Option<String>>,
}

impl Ctx {
    /// The second of the run's clock that `at` falls in (clamped to the table).
    fn second_of(&self, at: Instant) -> usize {
        let n = self.seconds.lock().unwrap_or_else(|p| p.into_inner()).len();
        (at.saturating_duration_since(self.clock).as_secs() as usize).min(n.saturating_sub(1))
    }

    fn with_second(&self, at: Instant, f: impl FnOnce(&mut Second)) {
        let i = self.second_of(at);
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut seconds[i]);
    }

    /// The next report of the run: the pool's, with an external id made
    /// unique past the pool's end (so no report is taken for a duplicate).
    fn next_request(&self) -> pb::ReportIncidentRequest {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) as usize;
        let base = &self.pool[index % self.pool.len()];
        let mut request = base.clone();
        if index >= self.pool.len() {
            request.external_id = format!("{}-r{}", base.external_id, index / self.pool.len());
        }
        request
    }
}

/// An answered report whose pages are checked after [`PAGE_WAIT`].
struct Check {
    incident_id: String,
    units: Vec<String>,
    intended: Instant,
    answered: Instant,
}

/// The closed-loop capacity probe's result.
pub struct Capacity {
    pub seconds: f64,
    pub concurrency: usize,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub per_s: f64,
    micros: Histogram<u64>,
    /// Requests the probe drew from the pool (the offered load's come after).
    indexes_used: u64,
}

/// Everything the overload run measured.
pub struct OverloadRun {
    pub offered_rate: f64,
    capacity: Option<Capacity>,
    phases: Vec<Phase>,
    seconds: Vec<Second>,
    readings: Vec<Reading>,
    example_refusal: Option<String>,
    close_micros: Histogram<u64>,
    close_errors: BTreeMap<String, u64>,
    connections: usize,
    memory_whose: String,
}

/// What the run needs from the bench's setup.
pub struct Target<'a> {
    pub endpoint: &'a str,
    pub pool: Arc<Vec<pb::ReportIncidentRequest>>,
    pub units: &'a [pb::Unit],
    pub log: Arc<PageLog>,
    pub metrics_url: Option<String>,
    pub server_pid: Option<u32>,
    pub concurrency: usize,
    pub open_incidents: usize,
}

pub async fn run(args: &OverloadArgs, target: Target<'_>) -> anyhow::Result<OverloadRun> {
    let mut clients = Vec::with_capacity(args.overload_connections);
    for _ in 0..args.overload_connections {
        clients.push(DispatchClient::new(super::connect(target.endpoint).await?));
    }
    // Warm every connection (HTTP/2 windows, the server's caches).
    for c in &clients {
        for _ in 0..super::WARMUP_PINGS_PER_CONNECTION {
            c.clone().ping(pb::PingRequest {}).await?;
        }
    }
    // The closer runs from the probe on, so the probe's incidents do not
    // hold the district's units through the overload.
    let (to_close, closing) = tokio::sync::mpsc::channel::<String>(CLOSER_QUEUE);
    let close_client = DispatchClient::new(super::connect(target.endpoint).await?);
    let closer = tokio::spawn(super::close_oldest(
        close_client,
        closing,
        target.open_incidents,
        Instant::now()
            + Duration::from_secs_f64(args.capacity_probe_s + args.baseline_s + args.duration_s + args.cooldown_s)
            + DRAIN * 2,
    ));
    let capacity = match args.capacity_probe_s {
        s if s > 0.0 => Some(capacity_probe(&clients, &target, s, &to_close).await),
        _ => None,
    };
    let offered_rate = match (args.offered_rate, &capacity) {
        (Some(r), _) => r,
        (None, Some(c)) => (c.per_s * args.overload_factor).max(1.0),
        (None, None) => unreachable!("overload mode needs --offered-rate or --capacity-probe-s"),
    };
    let low = offered_rate * args.cooldown_fraction;
    let b_end = args.baseline_s;
    let o_end = b_end + args.duration_s;
    let c_end = o_end + args.cooldown_s;
    let phases = vec![
        Phase { name: PhaseName::Baseline, rate: low, from_s: 0.0, to_s: b_end },
        Phase { name: PhaseName::Overload, rate: offered_rate, from_s: b_end, to_s: o_end },
        Phase { name: PhaseName::Cooldown, rate: low, from_s: o_end, to_s: c_end },
    ];
    eprintln!(
        "lastmile bench: overload: {offered_rate:.0} reports/s for {} s (baseline and cooldown at {low:.0}/s){}",
        args.duration_s,
        capacity.as_ref().map(|c| format!("; probed capacity {:.0}/s", c.per_s)).unwrap_or_default()
    );

    let clock = Instant::now() + Duration::from_millis(200);
    let total_s = c_end.ceil() as usize + DRAIN.as_secs() as usize + 1;
    let (to_check, checking) = tokio::sync::mpsc::channel::<Check>(PAGE_CHECKS_QUEUED);
    let ctx = Arc::new(Ctx {
        clock,
        hard_deadline: clock + Duration::from_secs_f64(c_end) + DRAIN,
        seconds: Mutex::new(vec![Second::new(); total_s]),
        pool: target.pool.clone(),
        next_index: AtomicU64::new(capacity.as_ref().map_or(0, |c| c.indexes_used)),
        outstanding: Arc::new(Semaphore::new(args.max_outstanding)),
        to_close,
        to_check,
        example_refusal: Mutex::new(None),
    });

    let checker = tokio::spawn(check_pages(clock, total_s, ctx.hard_deadline, checking, target.log.clone()));
    let (stop_sampling, sampling_stopped) = tokio::sync::watch::channel(false);
    let sources = sampler::Sources {
        status_path: match target.server_pid {
            Some(pid) => format!("/proc/{pid}/status"),
            None => "/proc/self/status".into(),
        },
        log: target.log.clone(),
        metrics_url: target.metrics_url.clone(),
        cpu: super::cpu::CpuMeter::new(target.server_pid),
    };
    let sampler = tokio::spawn(sampler::sample_every_second(sources, clock, sampling_stopped));
    let probe_channel = super::connect(target.endpoint).await?;
    let probe_units: Vec<String> = target.units.iter().map(|u| u.id.clone()).collect();
    let prober = tokio::spawn(terminal_probe(ctx.clone(), probe_channel, probe_units, args.terminal_probe_rate, c_end));

    offer(&ctx, &clients, &phases).await;
    let _ = prober.await;
    // Every task that held the context has ended: dropping it drops the
    // closer's and the checker's senders, so they finish what they hold.
    let Ok(ctx) = Arc::try_unwrap(ctx) else { anyhow::bail!("a report task outlived the overload run") };
    let Ctx { seconds, example_refusal, to_close, to_check, .. } = ctx;
    drop((to_close, to_check));
    let example_refusal = example_refusal.into_inner().unwrap_or_else(|p| p.into_inner());
    let (close_micros, close_errors) = closer.await?;
    let checked = checker.await?;
    let mut seconds = seconds.into_inner().unwrap_or_else(|p| p.into_inner());
    for (i, s) in checked.into_iter().enumerate() {
        if let Some(slot) = seconds.get_mut(i) {
            slot.add(&s);
        }
    }
    let _ = stop_sampling.send(true);
    let readings = sampler.await?;
    let used = seconds.iter().rposition(|s| s.offered > 0 || s.probe_answered > 0).map_or(0, |i| i + 1);
    seconds.truncate(used);
    Ok(OverloadRun {
        offered_rate,
        capacity,
        phases,
        seconds,
        readings,
        example_refusal,
        close_micros,
        close_errors,
        connections: args.overload_connections,
        memory_whose: match target.server_pid {
            Some(pid) => format!("server pid {pid}"),
            None => "the whole bench process (in-process server + load + crews + feed reader)".into(),
        },
    })
}

/// A closed loop at `concurrency` for `seconds`: the reports/s answered,
/// counted after its first second (connections and caches warm).
async fn capacity_probe(
    clients: &[DispatchClient<Channel>],
    target: &Target<'_>,
    seconds: f64,
    to_close: &tokio::sync::mpsc::Sender<String>,
) -> Capacity {
    let pool = target.pool.clone();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let count_from = started + Duration::from_secs(1);
    let stop = started + Duration::from_secs_f64(seconds.max(2.0));
    let mut workers = JoinSet::new();
    for w in 0..target.concurrency.max(1) {
        let (mut client, pool, next, to_close) =
            (clients[w % clients.len()].clone(), pool.clone(), next.clone(), to_close.clone());
        workers.spawn(async move {
            let (mut ok, mut errors, mut micros) = (0u64, BTreeMap::<String, u64>::new(), histogram());
            while Instant::now() < stop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let mut request = pool[index % pool.len()].clone();
                if index >= pool.len() {
                    request.external_id = format!("{}-r{}", request.external_id, index / pool.len());
                }
                let sent = Instant::now();
                let result = client.report_incident(request).await;
                if let Ok(answer) = &result
                    && !answer.get_ref().duplicate
                    && let Some(incident) = &answer.get_ref().incident
                {
                    let _ = to_close.try_send(incident.id.clone());
                }
                if sent < count_from {
                    continue;
                }
                match result {
                    Ok(_) => {
                        ok += 1;
                        record(&mut micros, sent.elapsed());
                    }
                    Err(status) => *errors.entry(format!("{:?}", status.code())).or_default() += 1,
                }
            }
            (ok, errors, micros)
        });
    }
    let mut capacity = Capacity {
        seconds: seconds.max(2.0),
        concurrency: target.concurrency.max(1),
        ok: 0,
        errors: BTreeMap::new(),
        per_s: 0.0,
        micros: histogram(),
        indexes_used: 0,
    };
    while let Some(Ok((ok, errors, micros))) = workers.join_next().await {
        capacity.ok += ok;
        for (k, v) in errors {
            *capacity.errors.entry(k).or_default() += v;
        }
        let _ = capacity.micros.add(&micros);
    }
    let counted_s = Instant::now().saturating_duration_since(count_from).as_secs_f64().max(0.001);
    capacity.per_s = capacity.ok as f64 / counted_s;
    // The probe's reports took these indexes; the offered load goes on after them.
    capacity.indexes_used = next.load(Ordering::Relaxed);
    capacity
}

/// The open loop: every phase's reports on their schedule; a report due
/// while `--max-outstanding` are outstanding is dropped (counted).
async fn offer(ctx: &Arc<Ctx>, clients: &[DispatchClient<Channel>], phases: &[Phase]) {
    let mut tasks = JoinSet::new();
    let mut sent = 0usize;
    for phase in phases {
        let from = ctx.clock + Duration::from_secs_f64(phase.from_s);
        let to = ctx.clock + Duration::from_secs_f64(phase.to_s);
        for k in 0u64.. {
            let intended = from + Duration::from_secs_f64(k as f64 / phase.rate);
            if intended >= to {
                break;
            }
            if intended > Instant::now() {
                tokio::time::sleep_until(intended).await;
            }
            ctx.with_second(intended, |s| s.offered += 1);
            let Ok(permit) = ctx.outstanding.clone().try_acquire_owned() else {
                ctx.with_second(intended, |s| s.dropped += 1);
                continue;
            };
            let (client, ctx) = (clients[sent % clients.len()].clone(), ctx.clone());
            sent += 1;
            tasks.spawn(async move {
                one_report(&ctx, client, intended).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One report: sent, timed from its schedule, classified.
async fn one_report(ctx: &Ctx, mut client: DispatchClient<Channel>, intended: Instant) {
    let request = ctx.next_request();
    let result = tokio::time::timeout_at(ctx.hard_deadline, client.report_incident(request)).await;
    let done = Instant::now();
    let latency = done.saturating_duration_since(intended);
    match result {
        Ok(Ok(answer)) => {
            let answer = answer.into_inner();
            let duplicate = answer.duplicate;
            let incident = answer.incident.unwrap_or_default();
            ctx.with_second(intended, |s| {
                s.ok += 1;
                s.duplicate += duplicate as u64;
                record(&mut s.ok_micros, latency);
            });
            if !duplicate {
                let units =
                    incident.tiers.iter().flat_map(|t| &t.assignments).map(|a| a.unit_id.clone()).collect::<Vec<_>>();
                let _ = ctx.to_close.try_send(incident.id.clone());
                let check = Check { incident_id: incident.id, units, intended, answered: done };
                if ctx.to_check.try_send(check).is_err() {
                    ctx.with_second(intended, |s| s.unchecked += 1);
                }
            }
        }
        Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
            let m = status.metadata();
            let hint = m.get("retry-after").or_else(|| m.get("grpc-retry-pushback-ms")).is_some();
            ctx.with_second(intended, |s| {
                if hint {
                    s.refused_hint += 1
                } else {
                    s.refused_no_hint += 1
                }
                record(&mut s.refused_micros, latency);
            });
            let mut example = ctx.example_refusal.lock().unwrap_or_else(|p| p.into_inner());
            if example.is_none() {
                let header = |k: &str| m.get(k).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
                *example = Some(format!(
                    "{:?} \"{}\" (retry-after: {}, grpc-retry-pushback-ms: {})",
                    status.code(),
                    status.message(),
                    header("retry-after"),
                    header("grpc-retry-pushback-ms")
                ));
            }
        }
        Ok(Err(status)) => {
            ctx.with_second(intended, |s| *s.other.entry(format!("{:?}", status.code())).or_default() += 1)
        }
        Err(_) => ctx.with_second(intended, |s| *s.other.entry(super::load::BENCH_TIMEOUT.into()).or_default() += 1),
    }
}

/// Whether each answered report's pages reached the terminals within
/// [`PAGE_WAIT`] of its answer. Returns what it counted, per second.
async fn check_pages(
    clock: Instant,
    n: usize,
    hard_deadline: Instant,
    mut checking: tokio::sync::mpsc::Receiver<Check>,
    log: Arc<PageLog>,
) -> Vec<Second> {
    let mut out = vec![Second::new(); n];
    while let Some(check) = checking.recv().await {
        tokio::time::sleep_until((check.answered + PAGE_WAIT).min(hard_deadline + PAGE_WAIT)).await;
        let i = (check.intended.saturating_duration_since(clock).as_secs() as usize).min(n - 1);
        let s = &mut out[i];
        let deliveries: Vec<Option<Instant>> =
            check.units.iter().map(|u| log.first_delivery(&check.incident_id, u)).collect();
        match deliveries.iter().copied().collect::<Option<Vec<Instant>>>() {
            Some(all) if all.is_empty() => s.no_units += 1,
            Some(all) => {
                s.fully_paged += 1;
                let last = all.into_iter().max().unwrap_or(check.intended);
                record(&mut s.page_micros, last.saturating_duration_since(check.intended));
            }
            None => s.not_fully_paged += 1,
        }
    }
    out
}

/// `rate` acknowledgements a second of an incident that does not exist, by
/// the run's units in turn, on a terminal connection of its own, from the
/// baseline to the end of the cooldown. Answered (NOT_FOUND or any code but
/// RESOURCE_EXHAUSTED) or refused, timed from its schedule.
async fn terminal_probe(ctx: Arc<Ctx>, channel: Channel, units: Vec<String>, rate: f64, until_s: f64) {
    if rate <= 0.0 || units.is_empty() {
        return;
    }
    let client = UnitTerminalClient::new(channel);
    let outstanding = Arc::new(Semaphore::new(PROBES_OUTSTANDING));
    let mut tasks = JoinSet::new();
    let until = ctx.clock + Duration::from_secs_f64(until_s);
    for k in 0u64.. {
        let intended = ctx.clock + Duration::from_secs_f64(k as f64 / rate);
        if intended >= until {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            ctx.with_second(intended, |s| s.probe_not_sent += 1);
            continue;
        };
        let (mut client, ctx) = (client.clone(), ctx.clone());
        let unit_id = units[k as usize % units.len()].clone();
        tasks.spawn(async move {
            let request = pb::AcknowledgeRequest {
                unit_id,
                incident_id: "inc-bench-probe-none".into(),
                accept: false,
                reason: String::new(),
            };
            let result = tokio::time::timeout_at(ctx.hard_deadline, client.acknowledge(request)).await;
            let latency = Instant::now().saturating_duration_since(intended);
            ctx.with_second(intended, |s| match result {
                Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => s.probe_refused += 1,
                Err(_) => s.probe_not_sent += 1,
                Ok(_) => {
                    s.probe_answered += 1;
                    record(&mut s.probe_micros, latency);
                }
            });
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// The verdicts this run speaks to: (target, met, detail).
type Verdict = (String, Option<bool>, String);

impl OverloadRun {
    fn phase_of_second(&self, i: usize) -> PhaseName {
        let t = i as f64;
        self.phases.iter().rev().find(|p| t >= p.from_s).map(|p| p.name).unwrap_or(PhaseName::Baseline)
    }

    fn total(&self, name: PhaseName) -> Second {
        let mut t = Second::new();
        for (i, s) in self.seconds.iter().enumerate() {
            if self.phase_of_second(i) == name {
                t.add(s);
            }
        }
        t
    }

    /// Rows of `window_s` seconds, each within one phase.
    fn windows(&self, window_s: u64) -> Vec<(usize, usize, PhaseName, Second)> {
        let mut rows = Vec::new();
        let mut i = 0;
        while i < self.seconds.len() {
            let phase = self.phase_of_second(i);
            let mut j = i;
            let mut w = Second::new();
            while j < self.seconds.len() && j < i + window_s as usize && self.phase_of_second(j) == phase {
                w.add(&self.seconds[j]);
                j += 1;
            }
            rows.push((i, j, phase, w));
            i = j;
        }
        rows
    }

    fn phase_bounds(&self, name: PhaseName) -> (f64, f64) {
        self.phases.iter().find(|p| p.name == name).map(|p| (p.from_s, p.to_s)).unwrap_or((0.0, 0.0))
    }

    /// The readings from `from_s` to `to_s` on the run's clock.
    fn readings_in(&self, from_s: f64, to_s: f64) -> impl Iterator<Item = &Reading> {
        self.readings.iter().filter(move |r| r.at_s >= from_s && r.at_s < to_s)
    }

    /// A metric's growth between the readings around `from_s` and `to_s`.
    fn metric_delta(&self, series: &str, from_s: f64, to_s: f64) -> Option<f64> {
        let at = |t: f64| {
            self.readings
                .iter()
                .filter(|r| r.metrics.is_some())
                .min_by(|a, b| (a.at_s - t).abs().partial_cmp(&(b.at_s - t).abs()).unwrap_or(std::cmp::Ordering::Equal))
        };
        Some(at(to_s)?.metric(series)? - at(from_s)?.metric(series)?)
    }

    /// Cores used by the measured process between `from_s` and `to_s`.
    fn cores(&self, from_s: f64, to_s: f64) -> Option<f64> {
        let first = self.readings.iter().find(|r| r.at_s >= from_s && r.cpu_s.is_some())?;
        let last = self.readings.iter().rev().find(|r| r.at_s <= to_s && r.cpu_s.is_some())?;
        let dt = last.at_s - first.at_s;
        let used = last.cpu_s? - first.cpu_s?;
        (dt > 0.0).then_some(used / dt)
    }

    fn crews_delta(&self, from_s: f64, to_s: f64) -> Option<(u64, u64)> {
        let first = self.readings.iter().find(|r| r.at_s >= from_s)?;
        let last = self.readings.iter().rev().find(|r| r.at_s <= to_s)?;
        Some((
            (last.accepted + last.declined).saturating_sub(first.accepted + first.declined),
            last.crew_refused.saturating_sub(first.crew_refused),
        ))
    }

    /// The first second of the cooldown from which every second's answered
    /// p99 is back within the baseline's (see [`RECOVERED_FACTOR`]).
    fn recovery(&self) -> (Option<f64>, u64) {
        let base = self.total(PhaseName::Baseline).ok_micros.value_at_quantile(0.99);
        let bound = ((base as f64 * RECOVERED_FACTOR) as u64).max(base + RECOVERED_SLACK.as_micros() as u64);
        let (from, to) = self.phase_bounds(PhaseName::Cooldown);
        let cooldown: Vec<(usize, &Second)> = self
            .seconds
            .iter()
            .enumerate()
            .filter(|(i, s)| (*i as f64) >= from && (*i as f64) < to && s.ok > 0)
            .collect();
        let mut recovered_at = None;
        for (i, s) in cooldown.iter().rev() {
            if s.ok_micros.value_at_quantile(0.99) > bound {
                break;
            }
            recovered_at = Some(*i as f64 - from);
        }
        (recovered_at, bound)
    }

    fn verdicts(&self) -> Vec<Verdict> {
        let o = self.total(PhaseName::Overload);
        let (o_from, o_to) = self.phase_bounds(PhaseName::Overload);
        let mut out: Vec<Verdict> = Vec::new();
        let p99 = o.ok_micros.value_at_quantile(0.99);
        let worst = self
            .windows(5)
            .iter()
            .filter(|w| w.2 == PhaseName::Overload && w.3.ok > 0)
            .map(|w| w.3.ok_micros.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        out.push((
            "answered reports' p99 < 1 s during the overload".into(),
            Some(o.ok > 0 && p99 < 1_000_000),
            format!("p99 {} over the phase, worst 5-s window {}; {} answered", fmt_us(p99), fmt_us(worst), o.ok),
        ));
        let rp99 = o.refused_micros.value_at_quantile(0.99);
        out.push((
            format!(
                "the excess refused quickly (p99 < {} ms) with a retry hint, none dropped by the client",
                QUICK_REFUSAL.as_millis()
            ),
            Some(
                o.refused() > 0 && o.refused_no_hint == 0 && rp99 < QUICK_REFUSAL.as_micros() as u64 && o.dropped == 0,
            ),
            format!(
                "{} refused ({} without a hint), p99 {}; {} dropped by the client; {} other errors",
                o.refused(),
                o.refused_no_hint,
                fmt_us(rp99),
                o.dropped,
                o.other.values().sum::<u64>()
            ),
        ));
        let terminal_refused = self.metric_delta("lastmile_admission_refused_total{class=\"terminal\"}", o_from, o_to);
        let crews = self.crews_delta(o_from, o_to);
        let probe_p99 = o.probe_micros.value_at_quantile(0.99);
        out.push((
            "acknowledgements and status reports keep being served".into(),
            Some(
                o.probe_refused == 0
                    && o.probe_answered > 0
                    && probe_p99 < 1_000_000
                    && terminal_refused.is_none_or(|n| n == 0.0)
                    && crews.is_some_and(|(answered, _)| answered > 0),
            ),
            format!(
                "terminal class refused by admission: {}; probe {} answered, {} refused, p99 {}; crews' answers accepted+declined {}, refused (any code) {}",
                terminal_refused.map(|n| format!("{n:.0}")).unwrap_or_else(|| "unknown (no /metrics)".into()),
                o.probe_answered,
                o.probe_refused,
                fmt_us(probe_p99),
                crews.map(|c| c.0.to_string()).unwrap_or("-".into()),
                crews.map(|c| c.1.to_string()).unwrap_or("-".into()),
            ),
        ));
        let half = (o_from + o_to) / 2.0;
        let peak = |a: f64, b: f64| self.readings_in(a, b).filter_map(|r| r.rss_kib).max();
        let (first, second) = (peak(o_from, half), peak(half, o_to));
        out.push((
            "memory bounded (peak RSS of the overload's 2nd half <= 1.1x its 1st half's)".into(),
            first.zip(second).map(|(a, b)| (b as f64) <= a as f64 * 1.1),
            format!(
                "VmRSS peak 1st half {} MiB, 2nd half {} MiB; {}",
                first.map(|k| (k / 1024).to_string()).unwrap_or("-".into()),
                second.map(|k| (k / 1024).to_string()).unwrap_or("-".into()),
                self.memory_whose
            ),
        ));
        let (recovered, bound) = self.recovery();
        out.push((
            "back to normal latency within 5 s of the load stopping".into(),
            Some(recovered.is_some_and(|s| s <= 5.0)),
            format!(
                "every cooldown second's answered p99 <= {} (2x the baseline's p99, or +20 ms) from {} s after the overload",
                fmt_us(bound),
                recovered.map(|s| format!("{s:.0}")).unwrap_or_else(|| "never".into())
            ),
        ));
        out
    }

    pub fn json(&self, window_s: u64) -> Value {
        let totals: Vec<Value> = [PhaseName::Baseline, PhaseName::Overload, PhaseName::Cooldown]
            .iter()
            .map(|n| {
                let mut t = self.total(*n).json();
                t["phase"] = json!(n.as_str());
                t
            })
            .collect();
        json!({
            "offered_rate_per_s": self.offered_rate,
            "connections": self.connections,
            "capacity_probe": self.capacity.as_ref().map(|c| json!({
                "seconds": c.seconds, "concurrency": c.concurrency, "answered_ok": c.ok,
                "answered_per_s": c.per_s, "errors": c.errors, "latency_us": latency_json(&c.micros),
            })),
            "phases": self.phases.iter().map(|p| json!({"phase": p.name.as_str(), "rate_per_s": p.rate, "from_s": p.from_s, "to_s": p.to_s})).collect::<Vec<_>>(),
            "totals": totals,
            "windows": self.windows(window_s).iter().map(|(a, b, phase, w)| {
                let mut j = w.json();
                j["from_s"] = json!(a);
                j["to_s"] = json!(b);
                j["phase"] = json!(phase.as_str());
                j
            }).collect::<Vec<_>>(),
            "example_refusal": self.example_refusal,
            "close_incident": { "latency_us": latency_json(&self.close_micros), "errors": self.close_errors },
            "memory_whose": self.memory_whose,
            "readings_every_second": self.readings.iter().map(Reading::json).collect::<Vec<_>>(),
            "targets": self.verdicts().iter().map(|(t, met, d)| json!({"target": t, "met": met, "detail": d})).collect::<Vec<_>>(),
        })
    }

    pub fn print(&self, window_s: u64) {
        if let Some(c) = &self.capacity {
            println!(
                "  capacity probe (closed loop, concurrency {}, {:.0} s): {:.0} answered/s, p50 {}, p99 {}{}",
                c.concurrency,
                c.seconds,
                c.per_s,
                fmt_us(c.micros.value_at_quantile(0.5)),
                fmt_us(c.micros.value_at_quantile(0.99)),
                if c.errors.is_empty() { String::new() } else { format!(", errors {:?}", c.errors) }
            );
        }
        for p in &self.phases {
            println!(
                "  {:<8} {:>6.0} reports/s offered, {:>5.0} s .. {:>5.0} s",
                p.name.as_str(),
                p.rate,
                p.from_s,
                p.to_s
            );
        }
        println!("  {} load connection(s); memory of {}", self.connections, self.memory_whose);
        if let Some(e) = &self.example_refusal {
            println!("  a refusal: {e}");
        }
        println!();
        println!(
            "  {:>9} {:<8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} | {:>7} {:>8} {:>8} | {:>5} | {:>8} {:>5} | {:>6} {:>6} | {:>6} | {:>5} {:>5}",
            "t (s)",
            "phase",
            "offered",
            "dropped",
            "ok",
            "paged",
            "ok p50",
            "ok p99",
            "ok max",
            "refused",
            "ref p50",
            "ref p99",
            "other",
            "ack p99",
            "ref",
            "crew a",
            "crew r",
            "term r",
            "RSS",
            "cores"
        );
        for (a, b, phase, w) in self.windows(window_s) {
            let crews = self.crews_delta(a as f64, b as f64);
            let term = self.metric_delta("lastmile_admission_refused_total{class=\"terminal\"}", a as f64, b as f64);
            let rss = self.readings_in(a as f64, b as f64).filter_map(|r| r.rss_kib).max();
            let q = |h: &Histogram<u64>, q: f64| {
                if h.is_empty() { "-".to_string() } else { fmt_us(h.value_at_quantile(q)) }
            };
            println!(
                "  {:>4}-{:<4} {:<8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} | {:>7} {:>8} {:>8} | {:>5} | {:>8} {:>5} | {:>6} {:>6} | {:>6} | {:>5} {:>5}",
                a,
                b,
                phase.as_str(),
                w.offered,
                w.dropped,
                w.ok,
                w.fully_paged,
                q(&w.ok_micros, 0.5),
                q(&w.ok_micros, 0.99),
                if w.ok_micros.is_empty() { "-".into() } else { fmt_us(w.ok_micros.max()) },
                w.refused(),
                q(&w.refused_micros, 0.5),
                q(&w.refused_micros, 0.99),
                w.other.values().sum::<u64>(),
                q(&w.probe_micros, 0.99),
                w.probe_refused,
                crews.map(|c| c.0.to_string()).unwrap_or("-".into()),
                crews.map(|c| c.1.to_string()).unwrap_or("-".into()),
                term.map(|n| format!("{n:.0}")).unwrap_or("-".into()),
                rss.map(|k| format!("{}M", k / 1024)).unwrap_or("-".into()),
                self.cores(a as f64, b as f64).map(|c| format!("{c:.2}")).unwrap_or("-".into()),
            );
        }
        println!(
            "  (ok/refused latency from each report's scheduled time; paged: answered reports whose every paged unit got its page \
             within {} s; ack: the terminal probe; crew a/r: the crews' answers accepted+declined / refused (any code); \
             term r: the server's terminal-class admission refusals; RSS: peak VmRSS in the window; cores: CPU time / wall time \
             of the measured process, of 2 on this machine)",
            PAGE_WAIT.as_secs()
        );
        println!();
        for name in [PhaseName::Baseline, PhaseName::Overload, PhaseName::Cooldown] {
            let t = self.total(name);
            let (from, to) = self.phase_bounds(name);
            println!(
                "  {:<8} offered {}, sent {}, dropped by the client {}; answered OK {} ({:.1}%, {:.0}/s; {} fully paged, {} no unit free, {} not fully paged), \
                 p50 {} p90 {} p99 {} max {}; refused {} ({:.1}%; {} with a retry hint), p50 {} p99 {} max {}; other {:?}",
                name.as_str(),
                t.offered,
                t.sent(),
                t.dropped,
                t.ok,
                pct(t.ok, t.offered),
                t.ok as f64 / (to - from).max(1e-9),
                t.fully_paged,
                t.no_units,
                t.not_fully_paged,
                fmt_us(t.ok_micros.value_at_quantile(0.5)),
                fmt_us(t.ok_micros.value_at_quantile(0.9)),
                fmt_us(t.ok_micros.value_at_quantile(0.99)),
                fmt_us(t.ok_micros.max()),
                t.refused(),
                pct(t.refused(), t.offered),
                t.refused_hint,
                fmt_us(t.refused_micros.value_at_quantile(0.5)),
                fmt_us(t.refused_micros.value_at_quantile(0.99)),
                fmt_us(t.refused_micros.max()),
                t.other,
            );
        }
        let rss: Vec<u64> = self.readings.iter().filter_map(|r| r.rss_kib).collect();
        if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
            println!(
                "  memory ({}): VmRSS {} MiB at the start, peak {} MiB, {} MiB at the end; VmHWM {} MiB",
                self.memory_whose,
                first / 1024,
                rss.iter().max().copied().unwrap_or(0) / 1024,
                last / 1024,
                self.readings.iter().filter_map(|r| r.hwm_kib).max().unwrap_or(0) / 1024
            );
        }
        println!(
            "  CloseIncident (closer): {} closed, p50 {}, p99 {}; errors {:?}",
            self.close_micros.len(),
            fmt_us(self.close_micros.value_at_quantile(0.5)),
            fmt_us(self.close_micros.value_at_quantile(0.99)),
            self.close_errors
        );
        for (name, met, detail) in self.verdicts() {
            let met = match met {
                Some(true) => "MET",
                Some(false) => "NOT MET",
                None => "UNKNOWN",
            };
            println!("  target {name}: {met} ({detail})");
        }
    }
}
