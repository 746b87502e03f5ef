//! `lastmile eta fit | score | generate | status`: the self-calibrating ETA
//! from a terminal (see docs/eta.md).
//!
//! - `fit` learns each tier's travel model from an agency's past responses
//!   (a CSV) and writes the calibration file the server loads
//!   (`eta.calibration_file`).
//! - `score` scores a model (the configured one, or a calibration file) on
//!   responses it was not fitted on.
//! - `generate` writes synthetic responses with a known truth, and
//!   malformed rows of every kind, to try `fit` and `score`.
//! - `status` asks a running server (`GET /v1/eta`) for its models.
//!
//! Rows that cannot be used are counted by reason and reported, never
//! silently dropped. The math is `lastmile_core::eta`'s; this module only
//! reads, writes and prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use lastmile_core::eta::{CalibratedTier, Calibration, ErrorStats, FitSettings, Sample, TravelModel, fit};
use lastmile_core::geodesy::{haversine_m, offset_m};
use lastmile_core::sim::SplitMix64;
use lastmile_core::tier::TierParams;
use lastmile_core::{LatLng, Tier};
use lastmile_server::LastmileConfig;

/// Largest responses file read, bytes: the whole file is held in memory.
pub const MAX_RESPONSES_BYTES: u64 = 512 * 1024 * 1024;
/// Most rows `generate` writes.
pub const MAX_GENERATED_ROWS: usize = 10_000_000;
/// A row implying a faster great-circle speed (page to on scene) is refused,
/// metres per second.
pub const MAX_PLAUSIBLE_SPEED_M_PER_S: f64 = 60.0;
/// A row with a longer page-to-on-scene time is refused, seconds.
pub const MAX_PLAUSIBLE_TRAVEL_S: f64 = 2.0 * 3600.0;

#[derive(Subcommand)]
pub enum EtaCommand {
    /// Fit each tier's travel model to past responses (RESPONSES.csv) and
    /// write a calibration file for `eta.calibration_file`.
    Fit(FitArgs),
    /// Score a model on responses it was not fitted on: per tier, error of
    /// the point estimate and the share on scene by the promised ETA.
    Score(ScoreArgs),
    /// Write synthetic responses over the Luqiao area with a known crew
    /// model (and, with --bad-rows, malformed rows of every kind), to try
    /// `eta fit` and `eta score`.
    Generate(GenerateArgs),
    /// A running server's ETA models and recent error (GET /v1/eta).
    Status(StatusArgs),
}

#[derive(Args)]
pub struct FitArgs {
    /// Past responses, CSV with a header row (see docs/eta.md).
    responses: PathBuf,
    /// Server configuration whose `dispatch.tiers` are the prior and whose
    /// `[eta]` gives the fit settings (default: the embedded one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Share of arrivals that must be on scene by the promised ETA
    /// (default: the config's `eta.promise_quantile`).
    #[arg(long)]
    promise_quantile: Option<f64>,
    /// Where to write the calibration file.
    #[arg(long, default_value = "calibration.json")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Responses to score on (not the ones the model was fitted on).
    responses: PathBuf,
    /// `config` (the configured `dispatch.tiers`, no margin) or a
    /// calibration file written by `eta fit` (tiers without a model there
    /// are scored on the configured parameters).
    #[arg(long, default_value = "config")]
    model: String,
    /// Server configuration (default: the embedded one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Well-formed responses to write.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// The same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// True median turnout (page to moving), seconds, every tier.
    #[arg(long, default_value_t = 150.0)]
    turnout_s: f64,
    /// True travel speed along the road, metres per second, every tier
    /// (road distance = great-circle distance x the config's circuity).
    #[arg(long, default_value_t = 7.0)]
    speed: f64,
    /// Log-normal spread (sigma) of turnout and of travel time.
    #[arg(long, default_value_t = 0.25)]
    spread: f64,
    /// Malformed rows added, cycling through every kind of reject.
    #[arg(long, default_value_t = 0)]
    bad_rows: usize,
    /// Server configuration whose circuity per tier is the truth's
    /// (default: the embedded one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The CSV to write.
    out: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The server's JSON/HTTP gateway (https:// for one with TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// Bearer token, for a server with [auth] on.
    #[arg(long, env = "LASTMILE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA that signed the server's certificate (https://).
    #[arg(long, env = "LASTMILE_CA")]
    ca: Option<PathBuf>,
    /// Print the server's JSON as it is.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: EtaCommand) -> anyhow::Result<()> {
    match command {
        EtaCommand::Fit(args) => run_fit(args),
        EtaCommand::Score(args) => run_score(args),
        EtaCommand::Generate(args) => run_generate(args),
        EtaCommand::Status(args) => run_status(args).await,
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<LastmileConfig> {
    Ok(match path {
        Some(path) => LastmileConfig::load(path)?,
        None => LastmileConfig::embedded()?,
    })
}

// ---------------------------------------------------------------------------
// Reading responses.

/// Why a row cannot be used. Ordered as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reject {
    /// Fewer fields than the header has columns.
    MissingColumn,
    /// More fields than the header has columns.
    ExtraField,
    /// A quote that does not close, or text after a closing quote.
    BadQuoting,
    /// A required field (all but `acknowledged_at`) is empty.
    EmptyField,
    /// `tier` is not 1, 3, 5 or 10.
    BadTier,
    /// A coordinate that is not a number within ±90 / ±180.
    BadCoordinate,
    /// A time that is not RFC 3339 with an offset.
    UnparsableTime,
    OnSceneBeforePaged,
    /// `acknowledged_at` before `paged_at` or after `on_scene_at`.
    AcknowledgedOutOfOrder,
    /// Great-circle distance / (on scene - paged) above 60 m/s.
    ImplausibleSpeed,
    /// On scene more than 2 h after paged.
    ImplausibleTravel,
}

impl Reject {
    pub const ALL: [Reject; 11] = [
        Reject::MissingColumn,
        Reject::ExtraField,
        Reject::BadQuoting,
        Reject::EmptyField,
        Reject::BadTier,
        Reject::BadCoordinate,
        Reject::UnparsableTime,
        Reject::OnSceneBeforePaged,
        Reject::AcknowledgedOutOfOrder,
        Reject::ImplausibleSpeed,
        Reject::ImplausibleTravel,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::MissingColumn => "missing column",
            Reject::ExtraField => "extra field",
            Reject::BadQuoting => "bad quoting",
            Reject::EmptyField => "empty field",
            Reject::BadTier => "bad tier",
            Reject::BadCoordinate => "bad coordinate",
            Reject::UnparsableTime => "unparsable time",
            Reject::OnSceneBeforePaged => "on_scene before paged",
            Reject::AcknowledgedOutOfOrder => "acknowledged out of order",
            Reject::ImplausibleSpeed => "implausible speed (> 60 m/s)",
            Reject::ImplausibleTravel => "implausible travel (> 2 h)",
        }
    }
}

/// A responses file, read: the usable arrivals per tier and the rest counted.
#[derive(Debug, Default)]
pub struct Responses {
    /// Data rows (blank lines aside).
    pub rows: usize,
    /// Per tier (`Tier::index`).
    pub samples: [Vec<Sample>; 4],
    /// Per reason: rows, and the (1-based) line of the first.
    pub rejected: BTreeMap<Reject, (usize, usize)>,
}

impl Responses {
    pub fn used(&self) -> usize {
        self.samples.iter().map(Vec::len).sum()
    }

    pub fn rejected_rows(&self) -> usize {
        self.rejected.values().map(|(n, _)| n).sum()
    }

    fn reject(&mut self, reason: Reject, line: usize) {
        let entry = self.rejected.entry(reason).or_insert((0, line));
        entry.0 += 1;
    }
}

const REQUIRED_COLUMNS: [&str; 8] =
    ["tier", "unit_id", "from_lat", "from_lng", "to_lat", "to_lng", "paged_at", "on_scene_at"];
const ACKNOWLEDGED_AT: &str = "acknowledged_at";

/// Where each column we read is in a row.
struct Columns {
    required: [usize; 8],
    acknowledged_at: Option<usize>,
    count: usize,
}

impl Columns {
    fn from_header(line: &str) -> anyhow::Result<Columns> {
        let names = split_csv_line(line.trim_start_matches('\u{feff}'))
            .map_err(|_| anyhow::anyhow!("the header row has a quote that does not close"))?;
        let names: Vec<String> = names.iter().map(|n| n.trim().to_ascii_lowercase()).collect();
        let find = |wanted: &str| -> anyhow::Result<Option<usize>> {
            let mut at = names.iter().enumerate().filter(|(_, n)| *n == wanted).map(|(i, _)| i);
            let first = at.next();
            anyhow::ensure!(at.next().is_none(), "the header names column {wanted:?} twice");
            Ok(first)
        };
        let mut required = [0; 8];
        for (slot, name) in required.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = find(name)?.with_context(|| {
                format!("the header has no column {name:?} (needs {}; found {names:?})", REQUIRED_COLUMNS.join(", "))
            })?;
        }
        Ok(Columns { required, acknowledged_at: find(ACKNOWLEDGED_AT)?, count: names.len() })
    }
}

/// Reads a responses file (bounded by [`MAX_RESPONSES_BYTES`]).
pub fn read_responses(path: &Path) -> anyhow::Result<Responses> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    anyhow::ensure!(
        size <= MAX_RESPONSES_BYTES,
        "{}: {size} bytes, more than the {MAX_RESPONSES_BYTES} this command reads; split it",
        path.display()
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_responses(&text).with_context(|| path.display().to_string())
}

/// Parses a responses CSV: a header row naming the columns (any order,
/// extra columns ignored), then one response a line. Fields may be quoted
/// (`"..."`, `""` for a quote); a field cannot span lines.
pub fn parse_responses(text: &str) -> anyhow::Result<Responses> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().context("empty file: no header row")?;
    let columns = Columns::from_header(header)?;
    let mut responses = Responses::default();
    for (index, line) in lines {
        responses.rows += 1;
        match parse_row(line, &columns) {
            Ok((tier, sample)) => responses.samples[tier.index()].push(sample),
            Err(reason) => responses.reject(reason, index + 1),
        }
    }
    Ok(responses)
}

/// One row: its tier and arrival, or why it cannot be used.
fn parse_row(line: &str, columns: &Columns) -> Result<(Tier, Sample), Reject> {
    let fields = split_csv_line(line).map_err(|()| Reject::BadQuoting)?;
    if fields.len() < columns.count {
        return Err(Reject::MissingColumn);
    }
    if fields.len() > columns.count {
        return Err(Reject::ExtraField);
    }
    let [tier, unit_id, from_lat, from_lng, to_lat, to_lng, paged_at, on_scene_at] =
        columns.required.map(|i| fields[i].trim());
    if [tier, unit_id, from_lat, from_lng, to_lat, to_lng, paged_at, on_scene_at].iter().any(|f| f.is_empty()) {
        return Err(Reject::EmptyField);
    }
    let tier = parse_tier(tier).ok_or(Reject::BadTier)?;
    let from = parse_lat_lng(from_lat, from_lng).ok_or(Reject::BadCoordinate)?;
    let to = parse_lat_lng(to_lat, to_lng).ok_or(Reject::BadCoordinate)?;
    let time = |s: &str| s.parse::<jiff::Timestamp>().map_err(|_| Reject::UnparsableTime);
    let paged_at = time(paged_at)?;
    let on_scene_at = time(on_scene_at)?;
    let acknowledged_at = match columns.acknowledged_at.map(|i| fields[i].trim()) {
        Some(s) if !s.is_empty() => Some(time(s)?),
        _ => None,
    };
    if on_scene_at < paged_at {
        return Err(Reject::OnSceneBeforePaged);
    }
    if acknowledged_at.is_some_and(|a| a < paged_at || a > on_scene_at) {
        return Err(Reject::AcknowledgedOutOfOrder);
    }
    let travel_s = (on_scene_at.as_millisecond() - paged_at.as_millisecond()) as f64 / 1000.0;
    let distance_m = haversine_m(from, to);
    if travel_s > MAX_PLAUSIBLE_TRAVEL_S {
        return Err(Reject::ImplausibleTravel);
    }
    // Page to on scene includes the turnout, so this underestimates the
    // real speed: a row above it is certainly wrong.
    if distance_m > MAX_PLAUSIBLE_SPEED_M_PER_S * travel_s {
        return Err(Reject::ImplausibleSpeed);
    }
    Ok((tier, Sample { unit_id: unit_id.to_string(), distance_m, travel_s }))
}

/// `1`, `3`, `5`, `10`, also written `tier-10`, `T10` or `TIER_10`.
fn parse_tier(s: &str) -> Option<Tier> {
    let lower = s.to_ascii_lowercase();
    let digits = ["tier_", "tier-", "t"].iter().find_map(|p| lower.strip_prefix(p)).unwrap_or(&lower);
    Tier::from_minutes(digits.parse().ok()?)
}

fn parse_lat_lng(lat: &str, lng: &str) -> Option<LatLng> {
    let (lat, lng): (f64, f64) = (lat.parse().ok()?, lng.parse().ok()?);
    LatLng::new(lat, lng).ok()
}

/// Splits one CSV line into fields. A field that starts with `"` runs to
/// the closing quote (`""` inside is a quote) and must end there; `Err`
/// for a quote that does not close or text after one.
fn split_csv_line(line: &str) -> Result<Vec<String>, ()> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err(()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

fn rejected_table(responses: &Responses) -> String {
    let mut out = String::new();
    if responses.rejected.is_empty() {
        return out;
    }
    let _ = writeln!(out, "rejected rows, by reason:");
    let _ = writeln!(out, "  {:<30} {:>8}  first at line", "reason", "rows");
    for (reason, (rows, line)) in &responses.rejected {
        let _ = writeln!(out, "  {:<30} {rows:>8}  {line}", reason.label());
    }
    out
}

fn rows_line(path: &Path, responses: &Responses) -> String {
    format!(
        "{}: {} rows, {} used, {} rejected",
        path.display(),
        responses.rows,
        responses.used(),
        responses.rejected_rows()
    )
}

// ---------------------------------------------------------------------------
// fit

fn run_fit(args: FitArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let mut settings = config.eta.fit_settings();
    if let Some(q) = args.promise_quantile {
        anyhow::ensure!(q > 0.0 && q < 1.0, "--promise-quantile: {q} is not in (0, 1) (e.g. 0.8)");
        settings.promise_quantile = q;
    }
    let responses = read_responses(&args.responses)?;
    let source = args.responses.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let calibration = fit_all(&responses, &config, &settings, source);
    calibration.validate().context("the fitted calibration does not validate")?;
    println!("{}", rows_line(&args.responses, &responses));
    print!("{}", fit_table(&calibration, &config, &settings));
    print!("{}", rejected_table(&responses));
    std::fs::write(&args.out, calibration.to_json()).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} (promise_quantile {})", args.out.display(), settings.promise_quantile);
    Ok(())
}

/// Every tier fitted on its own arrivals, against the configured prior.
fn fit_all(responses: &Responses, config: &LastmileConfig, settings: &FitSettings, source: String) -> Calibration {
    let mut calibration = Calibration::new(settings.promise_quantile, source);
    for tier in Tier::ALL {
        let samples = &responses.samples[tier.index()];
        let prior = TravelModel::prior(config.dispatch.tiers.get(tier));
        *calibration.tiers.get_mut(tier) = match fit(samples, &prior, settings) {
            Some(f) => CalibratedTier { model: Some(f.model), arrivals: f.arrivals, unit_offsets_s: f.unit_offsets },
            None => CalibratedTier { model: None, arrivals: samples.len(), unit_offsets_s: BTreeMap::new() },
        };
    }
    calibration
}

/// The promise's margin as printed: "x1.18" (the estimate times 1.18),
/// "+40s" (seconds added), or both.
fn margin_text(ratio: f64, seconds: f64) -> String {
    match (ratio != 0.0, seconds != 0.0) {
        (_, false) => format!("x{:.3}", 1.0 + ratio),
        (false, true) => format!("+{seconds:.0}s"),
        (true, true) => format!("x{:.3}+{seconds:.0}s", 1.0 + ratio),
    }
}

fn fit_table(calibration: &Calibration, config: &LastmileConfig, settings: &FitSettings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>10} {:>14} {:>9} {:>11} {:>6}   prior: {:>9} {:>14}",
        "tier", "arrivals", "turnout_s", "speed_m_per_s", "circuity", "promise", "units", "turnout_s", "speed_m_per_s"
    );
    for tier in Tier::ALL {
        let t = calibration.tiers.get(tier);
        let p = config.dispatch.tiers.get(tier);
        let fitted = match &t.model {
            Some(m) => format!(
                "{:>10.1} {:>14.2} {:>9.2} {:>11} {:>6}",
                m.turnout_s,
                m.speed_m_per_s,
                m.circuity,
                margin_text(m.margin_ratio, m.margin_s),
                t.unit_offsets_s.len()
            ),
            None => format!("{:<51}", format!("  too few arrivals (< {}): prior stays", settings.min_arrivals)),
        };
        let _ = writeln!(
            out,
            "{:<8} {:>8} {fitted}          {:>9.1} {:>14.2}",
            tier.to_string(),
            t.arrivals,
            p.turnout_s,
            p.speed_m_per_s
        );
    }
    out
}

// ---------------------------------------------------------------------------
// score

/// The model a tier is scored on.
struct Scored {
    source: &'static str,
    model: TravelModel,
    unit_offsets: BTreeMap<String, f64>,
    /// Arrivals the model was fitted on (None: the configured model).
    fitted_on: Option<usize>,
}

fn run_score(args: ScoreArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let calibration = match args.model.as_str() {
        "config" => None,
        file => {
            let text = std::fs::read_to_string(file).with_context(|| format!("--model: cannot read {file}"))?;
            Some(Calibration::parse(&text).with_context(|| format!("--model {file}"))?)
        }
    };
    let responses = read_responses(&args.responses)?;
    let mut rows = Vec::new();
    for tier in Tier::ALL {
        let scored = scored_model(tier, config.dispatch.tiers.get(tier), calibration.as_ref());
        let stats = score_tier(&scored, &responses.samples[tier.index()]);
        rows.push((tier, scored, stats));
    }
    let all = ErrorStats::of(Tier::ALL.into_iter().flat_map(|tier| {
        let scored = &rows[tier.index()].1;
        responses.samples[tier.index()].iter().map(move |x| triple(scored, x))
    }));
    if args.json {
        println!("{}", score_json(&args, calibration.as_ref(), &responses, &rows, &all));
        return Ok(());
    }
    match &calibration {
        None => println!("model: config (dispatch.tiers, no margin)"),
        Some(c) => println!("model: {} (fitted on {}, promise_quantile {})", args.model, c.source, c.promise_quantile),
    }
    println!("{}", rows_line(&args.responses, &responses));
    print!("{}", score_table(&rows, &all));
    print!("{}", rejected_table(&responses));
    Ok(())
}

fn scored_model(tier: Tier, params: &TierParams, calibration: Option<&Calibration>) -> Scored {
    match calibration.map(|c| c.tiers.get(tier)) {
        Some(CalibratedTier { model: Some(model), arrivals, unit_offsets_s }) => Scored {
            source: "calibration",
            model: *model,
            unit_offsets: unit_offsets_s.clone(),
            fitted_on: Some(*arrivals),
        },
        _ => Scored {
            source: "config",
            model: TravelModel::prior(params),
            unit_offsets: BTreeMap::new(),
            fitted_on: None,
        },
    }
}

/// (point, promised, actual) of one arrival under `scored`.
fn triple(scored: &Scored, x: &Sample) -> (f64, f64, f64) {
    let offset = scored.unit_offsets.get(&x.unit_id).copied().unwrap_or(0.0);
    (scored.model.point_s(x.distance_m) + offset, scored.model.promised_s(x.distance_m) + offset, x.travel_s)
}

fn score_tier(scored: &Scored, samples: &[Sample]) -> ErrorStats {
    ErrorStats::of(samples.iter().map(|x| triple(scored, x)))
}

fn score_table(rows: &[(Tier, Scored, ErrorStats)], all: &ErrorStats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:>9} {:>6} {:>5} {:>8} {:>9} {:>7} {:>10} {:>7} {:>11} {:>10} {:>10}",
        "tier",
        "model",
        "turnout_s",
        "speed",
        "circ",
        "promise",
        "fitted_on",
        "scored",
        "median_err",
        "bias",
        "median_abs",
        "p90_abs",
        "by_promise"
    );
    let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let share = |s: &ErrorStats| s.share_by_promise.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    let figures = |s: &ErrorStats| {
        format!(
            "{:>7} {:>10} {:>7} {:>11} {:>10} {:>10}",
            s.arrivals,
            f(s.median_error_s),
            f(s.bias_s),
            f(s.median_abs_error_s),
            f(s.p90_abs_error_s),
            share(s)
        )
    };
    for (tier, scored, stats) in rows {
        let m = &scored.model;
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:>9.1} {:>6.2} {:>5.2} {:>11} {:>9} {}",
            tier.to_string(),
            scored.source,
            m.turnout_s,
            m.speed_m_per_s,
            m.circuity,
            margin_text(m.margin_ratio, m.margin_s),
            scored.fitted_on.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            figures(stats)
        );
    }
    let _ =
        writeln!(out, "{:<8} {:<12} {:>9} {:>6} {:>5} {:>11} {:>9} {}", "all", "", "", "", "", "", "", figures(all));
    out
}

fn score_json(
    args: &ScoreArgs,
    calibration: Option<&Calibration>,
    responses: &Responses,
    rows: &[(Tier, Scored, ErrorStats)],
    all: &ErrorStats,
) -> serde_json::Value {
    use serde_json::json;
    let tiers: Vec<_> = rows
        .iter()
        .map(|(tier, scored, stats)| {
            json!({
                "tier": format!("TIER_{}", tier.minutes()),
                "source": scored.source,
                "turnout_s": scored.model.turnout_s,
                "speed_m_per_s": scored.model.speed_m_per_s,
                "circuity": scored.model.circuity,
                "margin_s": scored.model.margin_s,
                "margin_ratio": scored.model.margin_ratio,
                "fitted_on": scored.fitted_on,
                "scored": stats,
            })
        })
        .collect();
    let rejected: Vec<_> = responses
        .rejected
        .iter()
        .map(|(reason, (rows, line))| json!({"reason": reason.label(), "rows": rows, "first_line": line}))
        .collect();
    json!({
        "model": args.model,
        "promise_quantile": calibration.map(|c| c.promise_quantile),
        "responses": args.responses.display().to_string(),
        "rows": responses.rows,
        "used": responses.used(),
        "tiers": tiers,
        "all": all,
        "rejected": rejected,
    })
}

// ---------------------------------------------------------------------------
// generate

/// The Luqiao area the synthetic responses are in: (south, north), (west, east).
const AREA: ((f64, f64), (f64, f64)) = ((28.50, 28.65), (121.28, 121.45));
/// Units per tier in a synthetic file.
const UNITS_PER_TIER: usize = 12;
/// The unit pool (homes, crews' own pace) is the same whatever `--seed`: a
/// second file is the same agency's other responses.
const POOL_SEED: u64 = 0x13510;
/// Spread (sigma) of a unit's own turnout factor around the tier's.
const UNIT_SPREAD: f64 = 0.1;
/// Malformed row kinds `--bad-rows` cycles through (each one reason).
const BAD_KINDS: [Reject; 11] = Reject::ALL;
const GENERATED_HEADER: &str =
    "incident_id,paged_at,tier,unit_id,from_lat,from_lng,to_lat,to_lng,acknowledged_at,on_scene_at,note";

/// Great-circle distance range of a tier's units from the incident, metres.
fn distance_range_m(tier: Tier) -> (f64, f64) {
    match tier {
        Tier::T1 => (30.0, 800.0),
        Tier::T3 => (150.0, 3000.0),
        Tier::T5 => (400.0, 6000.0),
        Tier::T10 => (600.0, 10000.0),
    }
}

/// Standard normal (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.unit().max(1e-12);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * rng.unit()).cos()
}

/// A synthetic unit: where it waits, and its crew's turnout factor.
struct SimUnit {
    id: String,
    home: LatLng,
    turnout_factor: f64,
}

/// The synthetic units; each tier's turnout factors have a geometric mean
/// of exactly 1, so the tier's truth is the flags' whatever the draw.
fn unit_pool() -> [Vec<SimUnit>; 4] {
    let mut rng = SplitMix64(POOL_SEED);
    let ((south, north), (west, east)) = AREA;
    Tier::ALL.map(|tier| {
        let mut units: Vec<SimUnit> = (1..=UNITS_PER_TIER)
            .map(|n| SimUnit {
                id: format!("T{}-SIM-{n:02}", tier.minutes()),
                home: LatLng { lat: rng.range(south, north), lng: rng.range(west, east) },
                turnout_factor: UNIT_SPREAD * normal(&mut rng),
            })
            .collect();
        let mean_log = units.iter().map(|u| u.turnout_factor).sum::<f64>() / UNITS_PER_TIER as f64;
        for u in &mut units {
            u.turnout_factor = (u.turnout_factor - mean_log).exp();
        }
        units
    })
}

/// One well-formed response: the CSV fields in [`GENERATED_HEADER`] order.
struct Row {
    fields: Vec<String>,
}

fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rows <= MAX_GENERATED_ROWS, "--rows: at most {MAX_GENERATED_ROWS}");
    anyhow::ensure!(args.turnout_s.is_finite() && args.turnout_s >= 0.0, "--turnout-s: a number >= 0");
    anyhow::ensure!(args.speed > 0.5 && args.speed <= 60.0, "--speed: in (0.5, 60] m/s");
    anyhow::ensure!(args.spread.is_finite() && (0.0..=1.0).contains(&args.spread), "--spread: in [0, 1]");
    let config = load_config(args.config.as_deref())?;
    let text = generate_csv(&args, &config);
    std::fs::write(&args.out, text).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {}: {} responses and {} malformed rows (seed {}, truth turnout {} s, speed {} m/s, spread {})",
        args.out.display(),
        args.rows,
        args.bad_rows,
        args.seed,
        args.turnout_s,
        args.speed,
        args.spread
    );
    Ok(())
}

fn generate_csv(args: &GenerateArgs, config: &LastmileConfig) -> String {
    let pool = unit_pool();
    let mut rng = SplitMix64(args.seed);
    let start = jiff::Timestamp::from_second(1_767_225_600).expect("2026-01-01"); // 2026-01-01T00:00:00Z
    let total = args.rows + args.bad_rows;
    // Bad rows spread evenly through the file.
    let bad_at = |i: usize| args.bad_rows > 0 && (i + 1) * args.bad_rows / total != i * args.bad_rows / total;
    let mut out = String::with_capacity(total * 160);
    out.push_str(GENERATED_HEADER);
    out.push('\n');
    let mut bad = 0;
    let mut paged_s = 0i64;
    for i in 0..total {
        paged_s += 60 + (rng.unit() * 1200.0) as i64;
        let row = generate_row(args, config, &pool, &mut rng, start, paged_s, i);
        let fields = if bad_at(i) {
            bad += 1;
            corrupt(row, BAD_KINDS[(bad - 1) % BAD_KINDS.len()])
        } else {
            row.fields
        };
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    debug_assert_eq!(bad, args.bad_rows);
    out
}

fn generate_row(
    args: &GenerateArgs,
    config: &LastmileConfig,
    pool: &[Vec<SimUnit>; 4],
    rng: &mut SplitMix64,
    start: jiff::Timestamp,
    paged_s: i64,
    i: usize,
) -> Row {
    let tier = Tier::ALL[(rng.next_u64() % 4) as usize];
    let unit = &pool[tier.index()][(rng.next_u64() % UNITS_PER_TIER as u64) as usize];
    let from = offset_m(unit.home, rng.range(0.0, 150.0), rng.range(0.0, std::f64::consts::TAU));
    let (lo, hi) = distance_range_m(tier);
    let to = offset_m(from, rng.range(lo, hi), rng.range(0.0, std::f64::consts::TAU));
    let distance_m = haversine_m(from, to);
    let circuity = config.dispatch.tiers.get(tier).circuity;
    let turnout_s = args.turnout_s * unit.turnout_factor * (args.spread * normal(rng)).exp();
    let drive_s = distance_m * circuity / args.speed * (args.spread * normal(rng)).exp();
    let travel_s = (turnout_s + drive_s).round() as i64;
    let ack_s = ((turnout_s * rng.range(0.1, 0.5)).round() as i64).min(travel_s);
    let at = |s: i64| {
        let t = start.checked_add(jiff::SignedDuration::from_secs(s)).expect("within jiff's range");
        t.display_with_offset(jiff::tz::Offset::constant(8)).to_string()
    };
    let fields = vec![
        format!("INC-{:06}", i + 1),
        at(paged_s),
        tier.minutes().to_string(),
        unit.id.clone(),
        format!("{:.6}", from.lat),
        format!("{:.6}", from.lng),
        format!("{:.6}", to.lat),
        format!("{:.6}", to.lng),
        at(paged_s + ack_s),
        at(paged_s + travel_s),
        "\"synthetic, lastmile eta generate\"".to_string(),
    ];
    Row { fields }
}

/// `row` made unusable for exactly `reason` (columns of [`GENERATED_HEADER`]).
fn corrupt(row: Row, reason: Reject) -> Vec<String> {
    const PAGED: usize = 1;
    const TIER: usize = 2;
    const UNIT: usize = 3;
    const FROM_LAT: usize = 4;
    const TO_LAT: usize = 6;
    const ACK: usize = 8;
    const ON_SCENE: usize = 9;
    let mut f = row.fields;
    match reason {
        Reject::MissingColumn => f.truncate(f.len() - 3),
        Reject::ExtraField => f.push("surplus".into()),
        Reject::BadQuoting => f[UNIT] = format!("\"{}", f[UNIT]),
        Reject::EmptyField => f[UNIT] = String::new(),
        Reject::BadTier => f[TIER] = "2".into(),
        Reject::BadCoordinate => f[FROM_LAT] = "128.6".into(),
        Reject::UnparsableTime => f[PAGED] = "yesterday at noon".into(),
        Reject::OnSceneBeforePaged => f.swap(PAGED, ON_SCENE),
        Reject::AcknowledgedOutOfOrder => f[ACK] = f[ON_SCENE].replace("+08:00", "+07:00"),
        Reject::ImplausibleSpeed => {
            // 40 km away, yet on scene when it was paged: no acknowledgement
            // in between either.
            let lat: f64 = f[TO_LAT].parse().expect("generated");
            f[TO_LAT] = format!("{:.6}", lat + 0.36);
            f[ACK] = String::new();
            f[ON_SCENE] = f[PAGED].clone();
        }
        Reject::ImplausibleTravel => f[ON_SCENE] = f[ON_SCENE].replace("+08:00", "+05:00"),
    }
    f
}

// ---------------------------------------------------------------------------
// status

async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let url = format!("{}/v1/eta", args.http.trim_end_matches('/'));
    let (status, _content_type, body) = crate::http_get::get(&url, args.token.as_deref(), args.ca.as_deref()).await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(status == 200, "GET {url}: http {status}: {}", text.chars().take(500).collect::<String>());
    if args.json {
        println!("{text}");
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("GET {url}: the answer is not JSON"))?;
    print!("{}", status_table(&value));
    Ok(())
}

/// The `/v1/eta` answer as a table (absent figures as `-`).
fn status_table(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "promise_quantile {}  frozen {}",
        v["promise_quantile"].as_f64().map(|q| q.to_string()).unwrap_or_else(|| "-".into()),
        v["frozen"].as_bool().map(|b| b.to_string()).unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        out,
        "{:<8} {:<17} {:>9} {:>6} {:>5} {:>11} {:>8}   recent: {:>7} {:>10} {:>7} {:>10} {:>10}",
        "tier",
        "source",
        "turnout_s",
        "speed",
        "circ",
        "promise",
        "arrivals",
        "scored",
        "median_err",
        "bias",
        "median_abs",
        "by_promise"
    );
    let num = |x: &serde_json::Value, digits: usize| {
        x.as_f64().map(|f| format!("{f:.digits$}")).unwrap_or_else(|| "-".into())
    };
    for t in v["tiers"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let tier = t["tier"].as_str().and_then(parse_tier).map(|t| t.to_string());
        let r = &t["recent"];
        let share = r["share_by_promise"].as_f64().map(|s| format!("{:.1}%", 100.0 * s)).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<8} {:<17} {:>9} {:>6} {:>5} {:>11} {:>8}           {:>7} {:>10} {:>7} {:>10} {:>10}",
            tier.unwrap_or_else(|| t["tier"].to_string()),
            t["source"].as_str().unwrap_or("-"),
            num(&t["turnout_s"], 1),
            num(&t["speed_m_per_s"], 2),
            num(&t["circuity"], 2),
            margin_text(t["margin_ratio"].as_f64().unwrap_or(0.0), t["margin_s"].as_f64().unwrap_or(0.0)),
            num(&t["arrivals"], 0),
            num(&r["arrivals"], 0),
            num(&r["median_error_s"], 1),
            num(&r["bias_s"], 1),
            num(&r["median_abs_error_s"], 1),
            share
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "tier,unit_id,from_lat,from_lng,to_lat,to_lng,paged_at,on_scene_at,acknowledged_at";

    fn parse(rows: &[&str]) -> Responses {
        parse_responses(&format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap()
    }

    fn only_reason(row: &str) -> Option<Reject> {
        let r = parse(&[row]);
        assert_eq!(r.rows, 1);
        assert!(r.rejected.len() <= 1);
        r.rejected.keys().next().copied()
    }

    const GOOD: &str = "10,T10-01,28.58,121.37,28.59,121.37,2026-01-01T08:00:00+08:00,2026-01-01T08:05:00+08:00,2026-01-01T08:00:20+08:00";

    #[test]
    fn csv_fields_split_with_quotes() {
        assert_eq!(split_csv_line("a,b,,c\r"), Ok(vec!["a".into(), "b".into(), "".into(), "c".into()]));
        assert_eq!(split_csv_line(r#""a,b","say ""hi""",c"#), Ok(vec!["a,b".into(), r#"say "hi""#.into(), "c".into()]));
        assert_eq!(split_csv_line(r#"a,"""#), Ok(vec!["a".into(), "".into()]));
        assert_eq!(split_csv_line(r#""a,b"#), Err(()));
        assert_eq!(split_csv_line(r#""a"b,c"#), Err(()));
        assert_eq!(split_csv_line(r#"a"b,c"#), Err(()));
        assert_eq!(split_csv_line(""), Ok(vec!["".into()]));
    }

    #[test]
    fn a_good_row_gives_an_arrival() {
        let r = parse(&[GOOD]);
        assert_eq!((r.rows, r.used(), r.rejected_rows()), (1, 1, 0));
        let s = &r.samples[Tier::T10.index()][0];
        assert_eq!(s.unit_id, "T10-01");
        assert_eq!(s.travel_s, 300.0);
        // 0.01 degree of latitude.
        assert!((s.distance_m - 1112.0).abs() < 2.0, "{}", s.distance_m);
    }

    #[test]
    fn columns_in_any_order_and_extra_ones_are_read() {
        let text = "note,on_scene_at,paged_at,to_lng,to_lat,from_lng,from_lat,unit_id,TIER\n\
                    \"x, y\",2026-01-01T00:02:00Z,2026-01-01T00:00:00Z,121.37,28.58,121.37,28.58,T1-9,tier-1\n";
        let r = parse_responses(text).unwrap();
        assert_eq!(r.used(), 1, "{:?}", r.rejected);
        assert_eq!(r.samples[Tier::T1.index()][0].travel_s, 120.0);
    }

    #[test]
    fn a_header_without_a_required_column_is_an_error() {
        let e = parse_responses("tier,unit_id,from_lat,from_lng,to_lat,to_lng,paged_at\n").unwrap_err();
        assert!(e.to_string().contains("on_scene_at"), "{e}");
        let e = parse_responses(&format!("{HEADER},tier\n")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(parse_responses("").is_err());
    }

    #[test]
    fn every_bad_row_is_counted_with_its_reason() {
        let cases = [
            ("10,T10-01,28.58,121.37,28.59,121.37,2026-01-01T08:00:00+08:00", Reject::MissingColumn),
            (&*format!("{GOOD},x"), Reject::ExtraField),
            (&*GOOD.replace(",T10-01,", ",\"T10-01,"), Reject::BadQuoting),
            (&*GOOD.replace(",T10-01,", ",,"), Reject::EmptyField),
            (&*GOOD.replacen("10,", "2,", 1), Reject::BadTier),
            (&*GOOD.replacen("28.58", "95", 1), Reject::BadCoordinate),
            (&*GOOD.replacen("121.37", "abc", 1), Reject::BadCoordinate),
            (&*GOOD.replacen("28.58", "NaN", 1), Reject::BadCoordinate),
            (&*GOOD.replacen("2026-01-01T08:00:00+08:00", "2026-01-01 8am", 1), Reject::UnparsableTime),
            (&*GOOD.replacen("+08:00", "", 1), Reject::UnparsableTime),
            (&*GOOD.replace("T08:05:00", "T07:59:00"), Reject::OnSceneBeforePaged),
            (&*GOOD.replace("T08:00:20", "T08:06:00"), Reject::AcknowledgedOutOfOrder),
            (&*GOOD.replace("T08:05:00", "T08:00:10").replace("T08:00:20", "T08:00:05"), Reject::ImplausibleSpeed),
            (&*GOOD.replace("T08:05:00", "T10:05:00"), Reject::ImplausibleTravel),
        ];
        for (row, reason) in cases {
            assert_eq!(only_reason(row), Some(reason), "{row}");
        }
        assert_eq!(only_reason(GOOD), None);
        // No acknowledgement is fine; counts and first lines are kept.
        let no_ack = GOOD.rsplit_once(',').unwrap().0.to_string() + ",";
        let bad_tier = GOOD.replacen("10,", "4,", 1);
        let r = parse(&[&no_ack, &bad_tier, GOOD, "", &bad_tier]);
        assert_eq!((r.rows, r.used()), (4, 2));
        assert_eq!(r.rejected.get(&Reject::BadTier), Some(&(2, 3)));
    }

    #[test]
    fn tiers_are_read_in_every_spelling() {
        for (s, t) in [("1", Tier::T1), ("tier-3", Tier::T3), ("T5", Tier::T5), ("TIER_10", Tier::T10)] {
            assert_eq!(parse_tier(s), Some(t));
        }
        for s in ["2", "", "tier", "T", "-1", "10.0"] {
            assert_eq!(parse_tier(s), None, "{s}");
        }
    }

    #[test]
    fn generated_bad_rows_are_one_of_each_kind() {
        let config = LastmileConfig::embedded().unwrap();
        let args = GenerateArgs {
            rows: 200,
            seed: 7,
            turnout_s: 150.0,
            speed: 7.0,
            spread: 0.25,
            bad_rows: 2 * BAD_KINDS.len(),
            config: None,
            out: PathBuf::new(),
        };
        let text = generate_csv(&args, &config);
        let r = parse_responses(&text).unwrap();
        assert_eq!((r.rows, r.used()), (200 + 2 * BAD_KINDS.len(), 200), "{:?}", r.rejected);
        for reason in BAD_KINDS {
            assert_eq!(r.rejected.get(&reason).map(|(n, _)| *n), Some(2), "{reason:?}");
        }
        // The same seed writes the same file.
        assert_eq!(generate_csv(&args, &config), text);
    }

    #[test]
    fn the_status_table_reads_the_servers_answer() {
        let answer = serde_json::json!({"promise_quantile":0.8,"frozen":false,"tiers":[{"tier":"TIER_10",
            "source":"learnt","turnout_s":151.25,"speed_m_per_s":7.04,"circuity":1.3,"margin_s":0.0,"margin_ratio":0.2,"arrivals":420,
            "recent":{"arrivals":40,"median_error_s":3.5,"bias_s":4.0,"median_abs_error_s":30.0,
            "p90_abs_error_s":80.0,"share_by_promise":0.825}}]});
        let table = status_table(&answer);
        let row = table.lines().find(|l| l.starts_with("tier-10")).unwrap();
        for cell in ["learnt", "151.2", "7.04", "x1.200", "420", "40", "30.0", "82.5%"] {
            assert!(row.contains(cell), "{cell} missing from {row}");
        }
    }
}
