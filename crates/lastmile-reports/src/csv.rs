//! CSV (RFC 4180): one header line of the JSON field names, then one line
//! per row; an absent figure (JSON null) is an empty field.

use std::fmt::Write as _;

use crate::period::GroupKey;
use crate::report::{Report, Row, UnitRow};

const ROW_FIGURES: [&str; 15] = [
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

/// The report's `rows`: a column per `group_by` key (in its order, `tier`
/// where it is named, else after them), then the figures. Totals, towns,
/// trend and units are not in it (rows of different levels in one table
/// invite double counting): see [`to_units_csv`].
pub fn to_csv(report: &Report) -> String {
    let mut columns: Vec<GroupKey> = report.group_by.clone();
    if !columns.contains(&GroupKey::Tier) {
        columns.push(GroupKey::Tier);
    }
    let mut out = String::new();
    let header = columns.iter().map(|k| k.name()).chain(ROW_FIGURES);
    line(&mut out, header.map(str::to_string));
    for r in &report.rows {
        let groups = columns.iter().map(|k| match k {
            GroupKey::Tier => r.tier.to_string(),
            GroupKey::Town => r.town.clone().unwrap_or_default(),
            GroupKey::Grid => r.grid.clone().unwrap_or_default(),
            GroupKey::Day => r.day.clone().unwrap_or_default(),
            GroupKey::Week => r.week.clone().unwrap_or_default(),
            GroupKey::Month => r.month.clone().unwrap_or_default(),
        });
        line(&mut out, groups.chain(row_figures(r)));
    }
    out
}

fn row_figures(r: &Row) -> impl Iterator<Item = String> {
    [
        r.incidents.to_string(),
        r.slots_required.to_string(),
        r.slots_met.to_string(),
        r.incidents_met.to_string(),
        opt(r.share_met),
        r.short_at_report.to_string(),
        r.breached.to_string(),
        r.escalated.to_string(),
        r.arrivals.to_string(),
        opt(r.arrival_median_s),
        opt(r.arrival_p90_s),
        opt(r.ack_median_s),
        r.pages.to_string(),
        r.pages_declined.to_string(),
        r.pages_timed_out.to_string(),
    ]
    .into_iter()
}

/// The report's `units`, one line per unit, columns named as in the JSON.
pub fn to_units_csv(report: &Report) -> String {
    let mut out = String::new();
    let header = [
        "unit_id",
        "tier",
        "pages",
        "acknowledged",
        "ack_rate",
        "ack_median_s",
        "declined",
        "timed_out",
        "verified_arrivals",
        "arrivals_within_target",
    ];
    line(&mut out, header.map(str::to_string));
    for u in &report.units {
        line(&mut out, unit_fields(u));
    }
    out
}

fn unit_fields(u: &UnitRow) -> [String; 10] {
    [
        u.unit_id.clone(),
        u.tier.to_string(),
        u.pages.to_string(),
        u.acknowledged.to_string(),
        opt(u.ack_rate),
        opt(u.ack_median_s),
        u.declined.to_string(),
        u.timed_out.to_string(),
        u.verified_arrivals.to_string(),
        u.arrivals_within_target.to_string(),
    ]
}

/// Shortest exact decimal of the figure (what JSON shows), empty for null.
fn opt(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn line(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, &f);
    }
    out.push_str("\r\n");
}

/// Quoted when it holds a comma, a quote or a line break; quotes doubled.
fn field(out: &mut String, f: &str) {
    if f.contains([',', '"', '\r', '\n']) {
        let _ = write!(out, "\"{}\"", f.replace('"', "\"\""));
    } else {
        out.push_str(f);
    }
}
