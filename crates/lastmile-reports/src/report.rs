//! The compliance report: outcomes of the period folded into per-tier
//! figures, once per outcome (no work grows faster than the outcomes and
//! the groups they fall in, sorted once at the end).

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use lastmile_core::Tier;
use lastmile_core::eta::{ErrorStats, quantile};
use lastmile_core::incident::AssignmentState;
use lastmile_core::outcome::{AssignmentOutcome, Outcome, TierOutcome};
use serde::Serialize;

use crate::period::{self, GroupKey, Period};

/// The trend lists at most this many points (a period made by
/// [`Period`]'s constructors has at most 53 weeks; a hand-built one may be
/// longer, and its trend then stops here).
pub const MAX_TREND_POINTS: usize = 1000;

/// What to report on.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    pub period: Period,
    /// The keys rows are split by, in this order (tiers are always split).
    pub group_by: Vec<GroupKey>,
    /// The zone days, weeks and months are cut in, and times are shown in.
    pub tz: TimeZone,
}

impl ReportRequest {
    /// A request cut in the period's own zone.
    pub fn new(period: Period, group_by: Vec<GroupKey>) -> ReportRequest {
        let tz = period.tz.clone();
        ReportRequest { period, group_by, tz }
    }
}

/// The 13510 compliance of the incidents reported in a period.
/// Field names are stable (the JSON of `GET /v1/reports/compliance`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub period: PeriodInfo,
    /// The keys the `rows` are split by, as requested.
    pub group_by: Vec<GroupKey>,
    /// One sentence on what was counted, for the page and the CSV's reader.
    pub note: String,
    /// Incidents counted: outcomes reported within the period.
    pub incidents: u64,
    /// One row per group and tier, sorted by the keys in `group_by` order
    /// (tier last unless named; towns and grids by name, days, weeks and
    /// months in time order, tiers 1, 3, 5, 10).
    pub rows: Vec<Row>,
    /// One row per tier over the whole period (all groups).
    pub totals: Vec<Row>,
    /// One row per town and tier (whatever `group_by` says): what the
    /// bulletin ranks and the page's first chart draws.
    pub towns: Vec<Row>,
    /// Per ISO week and tier (per day when the period is at most 7 days),
    /// every week (day) of the period, with or without incidents.
    pub trend: Trend,
    /// One row per unit paged in the period's incidents, by tier then id.
    pub units: Vec<UnitRow>,
    /// Per tier (the unit's own), how wrong the promised ETA was.
    pub eta: Vec<EtaRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeriodInfo {
    pub label: String,
    /// RFC 3339 in the report's zone.
    pub from: String,
    /// Exclusive.
    pub to: String,
    pub time_zone: String,
}

/// The figures of one tier over one group's incidents. The group fields
/// are present only for the keys the row is split by.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub town: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub week: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The tier, as its target in minutes: 1, 3, 5 or 10.
    pub tier: u32,
    /// Incidents whose response plan required the tier (at least 1 slot).
    pub incidents: u64,
    pub slots_required: u64,
    /// Slots filled by a verified arrival of the tier's own units on scene
    /// within the tier's target of the report (at most the required).
    pub slots_met: u64,
    /// Incidents where the tier met every required slot.
    pub incidents_met: u64,
    /// `incidents_met / incidents`; null when there were no incidents.
    pub share_met: Option<f64>,
    /// Incidents where, at report, fewer of the tier's units than required
    /// could arrive within target.
    pub short_at_report: u64,
    /// Incidents where the tier's deadline passed before every slot was met.
    pub breached: u64,
    /// Incidents where the breach paged the next tier up.
    pub escalated: u64,
    /// Incidents with a verified arrival of the tier's own units (the count
    /// behind the two arrival figures).
    pub arrivals: u64,
    /// Seconds from report to the tier's first verified arrival: median.
    pub arrival_median_s: Option<f64>,
    /// ... and 90th percentile.
    pub arrival_p90_s: Option<f64>,
    /// Seconds from page to acknowledgement, median over acknowledged pages.
    pub ack_median_s: Option<f64>,
    /// Pages sent for the tier's slots (re-pages and units lent by
    /// escalation from the tier below included).
    pub pages: u64,
    pub pages_declined: u64,
    pub pages_timed_out: u64,
}

/// What the trend steps by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrendStep {
    Week,
    Day,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trend {
    pub step: TrendStep,
    /// Rows with `week` (or `day`) set, by time then tier.
    pub rows: Vec<Row>,
}

/// One unit over the period: how it answered its pages and arrived.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitRow {
    pub unit_id: String,
    /// The unit's own tier (a unit lent by escalation serves another).
    pub tier: u32,
    pub pages: u64,
    pub acknowledged: u64,
    /// `acknowledged / pages`.
    pub ack_rate: Option<f64>,
    pub ack_median_s: Option<f64>,
    pub declined: u64,
    pub timed_out: u64,
    /// Arrivals verified by position or by a dispatcher.
    pub verified_arrivals: u64,
    /// Verified arrivals on scene within the target of the tier the unit
    /// was paged for, counted from the report.
    pub arrivals_within_target: u64,
}

/// The ETA's error for one tier: verified arrivals' travel (page to on
/// scene) against the ETA promised at the page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EtaRow {
    pub tier: u32,
    #[serde(flatten)]
    pub stats: ErrorStats,
}

/// The report over the outcomes reported within `req.period`; the others
/// are ignored. Deterministic: the same outcomes in any order give the
/// same report.
pub fn compliance(outcomes: &[Outcome], req: &ReportRequest) -> Report {
    let step = if period_days(&req.period, &req.tz) <= 7 { TrendStep::Day } else { TrendStep::Week };
    let group_keys: Vec<GroupKey> = req.group_by.iter().copied().filter(|k| *k != GroupKey::Tier).collect();
    let mut groups: BTreeMap<Vec<String>, [Acc; 4]> = BTreeMap::new();
    let mut towns: BTreeMap<String, [Acc; 4]> = BTreeMap::new();
    let mut trend: BTreeMap<String, [Acc; 4]> = BTreeMap::new();
    let mut totals: [Acc; 4] = Default::default();
    let mut units: HashMap<&str, UnitAcc> = HashMap::new();
    let mut eta: [Vec<(f64, f64, f64)>; 4] = Default::default();
    let mut counted = 0u64;
    for o in outcomes.iter().filter(|o| req.period.contains(o.reported_at_ms)) {
        counted += 1;
        let local = period::local_date(o.reported_at_ms, &req.tz);
        let key = group_keys.iter().map(|k| group_value(*k, o, local)).collect();
        add_outcome(groups.entry(key).or_default(), o);
        add_outcome(towns.entry(o.town.clone()).or_default(), o);
        let point = match step {
            TrendStep::Week => period::week_label(local),
            TrendStep::Day => period::day_label(local),
        };
        add_outcome(trend.entry(point).or_default(), o);
        add_outcome(&mut totals, o);
        for a in &o.assignments {
            units.entry(&a.unit_id).or_insert_with(|| UnitAcc::new(a.unit_tier)).add(a, o);
            if let Some(travel_s) = a.travel_s() {
                eta[a.unit_tier.index()].push((a.eta_s as f64, a.eta_s as f64, travel_s));
            }
        }
    }
    let mut rows = Vec::with_capacity(groups.len() * 4);
    for (values, accs) in groups {
        let mut group = Row::default();
        for (k, v) in group_keys.iter().zip(values) {
            set_group(&mut group, *k, v);
        }
        rows.extend(tier_rows(group, accs));
    }
    sort_rows(&mut rows, &req.group_by);
    let towns = towns.into_iter().flat_map(|(town, accs)| tier_rows(Row { town: Some(town), ..Row::default() }, accs));
    Report {
        period: PeriodInfo {
            label: req.period.label.clone(),
            from: period::rfc3339(req.period.from_ms, &req.tz),
            to: period::rfc3339(req.period.to_ms, &req.tz),
            time_zone: period::zone_name(&req.tz),
        },
        group_by: req.group_by.clone(),
        note: note(counted, req),
        incidents: counted,
        rows,
        totals: tier_rows(Row::default(), totals).collect(),
        towns: towns.collect(),
        trend: Trend { step, rows: trend_rows(trend, step, req) },
        units: unit_rows(units),
        eta: Tier::ALL.into_iter().zip(eta).map(|(tier, scored)| eta_row(tier, scored)).collect(),
    }
}

/// Sorted first, so the mean (a float sum) does not depend on the order
/// the outcomes came in.
fn eta_row(tier: Tier, mut scored: Vec<(f64, f64, f64)>) -> EtaRow {
    scored.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.1.total_cmp(&b.1)));
    EtaRow { tier: tier.minutes(), stats: ErrorStats::of(scored) }
}

fn note(counted: u64, req: &ReportRequest) -> String {
    format!(
        "13510 compliance of the {counted} closed incident(s) reported from {} to {} (exclusive), \
         days, weeks and months cut in {}",
        period::rfc3339(req.period.from_ms, &req.tz),
        period::rfc3339(req.period.to_ms, &req.tz),
        period::zone_name(&req.tz)
    )
}

fn group_value(key: GroupKey, o: &Outcome, local: Date) -> String {
    match key {
        GroupKey::Town => o.town.clone(),
        GroupKey::Grid => o.grid_id.clone(),
        GroupKey::Day => period::day_label(local),
        GroupKey::Week => period::week_label(local),
        GroupKey::Month => period::month_label(local),
        GroupKey::Tier => unreachable!("tier is not a group value"),
    }
}

fn set_group(row: &mut Row, key: GroupKey, value: String) {
    let slot = match key {
        GroupKey::Town => &mut row.town,
        GroupKey::Grid => &mut row.grid,
        GroupKey::Day => &mut row.day,
        GroupKey::Week => &mut row.week,
        GroupKey::Month => &mut row.month,
        GroupKey::Tier => unreachable!("tier is not a group value"),
    };
    *slot = Some(value);
}

fn group_of(row: &Row, key: GroupKey) -> Option<&str> {
    match key {
        GroupKey::Town => row.town.as_deref(),
        GroupKey::Grid => row.grid.as_deref(),
        GroupKey::Day => row.day.as_deref(),
        GroupKey::Week => row.week.as_deref(),
        GroupKey::Month => row.month.as_deref(),
        GroupKey::Tier => None,
    }
}

/// By the keys in `group_by` order, the tier where it is named (last when
/// not). Labels compare as strings: days, weeks and months are zero-padded,
/// so string order is time order.
fn sort_rows(rows: &mut [Row], group_by: &[GroupKey]) {
    let mut order = group_by.to_vec();
    if !order.contains(&GroupKey::Tier) {
        order.push(GroupKey::Tier);
    }
    rows.sort_by(|a, b| {
        order
            .iter()
            .map(|k| match k {
                GroupKey::Tier => a.tier.cmp(&b.tier),
                _ => group_of(a, *k).cmp(&group_of(b, *k)),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

fn trend_rows(mut points: BTreeMap<String, [Acc; 4]>, step: TrendStep, req: &ReportRequest) -> Vec<Row> {
    let first = period::local_date(req.period.from_ms, &req.tz);
    let last = period::local_date(req.period.to_ms.saturating_sub(1), &req.tz);
    let mut rows = Vec::new();
    let mut day = match step {
        TrendStep::Day => first,
        TrendStep::Week => first.iso_week_date().first_of_week().map(|w| w.date()).unwrap_or(first),
    };
    let stride = jiff::Span::new().days(if step == TrendStep::Day { 1 } else { 7 });
    for _ in 0..MAX_TREND_POINTS {
        if day > last {
            break;
        }
        let (label, mut row) = match step {
            TrendStep::Day => (period::day_label(day), Row::default()),
            TrendStep::Week => (period::week_label(day), Row::default()),
        };
        let accs = points.remove(&label).unwrap_or_default();
        match step {
            TrendStep::Day => row.day = Some(label),
            TrendStep::Week => row.week = Some(label),
        }
        rows.extend(tier_rows(row, accs));
        match day.checked_add(stride) {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    debug_assert!(
        points.is_empty() || rows.len() == MAX_TREND_POINTS * 4,
        "outcomes outside the enumerated trend: {:?}",
        points.keys()
    );
    rows
}

/// Local days the period touches (capped at 8: only "at most 7" matters).
fn period_days(p: &Period, tz: &TimeZone) -> usize {
    let first = period::local_date(p.from_ms, tz);
    let last = period::local_date(p.to_ms.saturating_sub(1), tz);
    let mut day = first;
    for n in 1..=8 {
        if day >= last {
            return n;
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => return n,
        }
    }
    8
}

/// One tier's running figures over a set of incidents.
#[derive(Debug, Default)]
struct Acc {
    incidents: u64,
    slots_required: u64,
    slots_met: u64,
    incidents_met: u64,
    short_at_report: u64,
    breached: u64,
    escalated: u64,
    arrivals_s: Vec<f64>,
    acks_s: Vec<f64>,
    pages: u64,
    declined: u64,
    timed_out: u64,
}

fn add_outcome(accs: &mut [Acc; 4], o: &Outcome) {
    for t in o.tiers.iter().filter(|t| t.required > 0) {
        accs[t.tier.index()].add_tier(t);
    }
    for a in &o.assignments {
        accs[a.tier.index()].add_page(a);
    }
}

impl Acc {
    fn add_tier(&mut self, t: &TierOutcome) {
        self.incidents += 1;
        self.slots_required += u64::from(t.required);
        self.slots_met += u64::from(t.slots_met.min(t.required));
        self.incidents_met += u64::from(t.met());
        self.short_at_report += u64::from(t.short_at_report);
        self.breached += u64::from(t.breached);
        self.escalated += u64::from(t.escalated);
        self.arrivals_s.extend(t.first_verified_arrival_s);
    }

    fn add_page(&mut self, a: &AssignmentOutcome) {
        self.pages += 1;
        self.declined += u64::from(a.state == AssignmentState::Declined);
        self.timed_out += u64::from(a.state == AssignmentState::TimedOut);
        self.acks_s.extend(a.ack_s());
    }

    fn finish(mut self, group: &Row, tier: Tier) -> Row {
        debug_assert!(self.incidents_met <= self.incidents && self.slots_met <= self.slots_required);
        Row {
            tier: tier.minutes(),
            incidents: self.incidents,
            slots_required: self.slots_required,
            slots_met: self.slots_met,
            incidents_met: self.incidents_met,
            share_met: ratio(self.incidents_met, self.incidents),
            short_at_report: self.short_at_report,
            breached: self.breached,
            escalated: self.escalated,
            arrivals: self.arrivals_s.len() as u64,
            arrival_median_s: quantile(&mut self.arrivals_s, 0.5),
            arrival_p90_s: quantile(&mut self.arrivals_s, 0.9),
            ack_median_s: quantile(&mut self.acks_s, 0.5),
            pages: self.pages,
            pages_declined: self.declined,
            pages_timed_out: self.timed_out,
            ..group.clone()
        }
    }
}

fn tier_rows(group: Row, accs: [Acc; 4]) -> impl Iterator<Item = Row> {
    Tier::ALL.into_iter().zip(accs).map(move |(tier, acc)| acc.finish(&group, tier))
}

pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[derive(Debug)]
struct UnitAcc {
    /// The unit's own tier as of its latest page.
    tier: Tier,
    last_paged_ms: i64,
    pages: u64,
    acks_s: Vec<f64>,
    declined: u64,
    timed_out: u64,
    verified: u64,
    within_target: u64,
}

impl UnitAcc {
    fn new(tier: Tier) -> UnitAcc {
        UnitAcc {
            tier,
            last_paged_ms: i64::MIN,
            pages: 0,
            acks_s: Vec::new(),
            declined: 0,
            timed_out: 0,
            verified: 0,
            within_target: 0,
        }
    }

    fn add(&mut self, a: &AssignmentOutcome, o: &Outcome) {
        self.pages += 1;
        if (a.paged_at_ms, a.unit_tier) > (self.last_paged_ms, self.tier) {
            (self.tier, self.last_paged_ms) = (a.unit_tier, a.paged_at_ms);
        }
        self.acks_s.extend(a.ack_s());
        self.declined += u64::from(a.state == AssignmentState::Declined);
        self.timed_out += u64::from(a.state == AssignmentState::TimedOut);
        let Some(on_scene_ms) = a.on_scene_at_ms.filter(|_| a.verified) else { return };
        self.verified += 1;
        // The slot's tier target, as the incident had it (the nominal one if
        // the slot's tier is missing from the outcome).
        let target_s = o.tiers.iter().find(|t| t.tier == a.tier).map_or(a.tier.minutes() * 60, |t| t.target_s);
        self.within_target += u64::from(on_scene_ms - o.reported_at_ms <= i64::from(target_s) * 1000);
    }
}

fn unit_rows(units: HashMap<&str, UnitAcc>) -> Vec<UnitRow> {
    let mut rows: Vec<UnitRow> = units
        .into_iter()
        .map(|(id, mut u)| UnitRow {
            unit_id: id.to_string(),
            tier: u.tier.minutes(),
            pages: u.pages,
            acknowledged: u.acks_s.len() as u64,
            ack_rate: ratio(u.acks_s.len() as u64, u.pages),
            ack_median_s: quantile(&mut u.acks_s, 0.5),
            declined: u.declined,
            timed_out: u.timed_out,
            verified_arrivals: u.verified,
            arrivals_within_target: u.within_target,
        })
        .collect();
    rows.sort_by(|a, b| (a.tier, &a.unit_id).cmp(&(b.tier, &b.unit_id)));
    rows
}
