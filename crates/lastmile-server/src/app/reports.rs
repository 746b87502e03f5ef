//! What the district's management reads: the 13510 compliance reports
//! (from the durable history's outcomes: the same numbers after a restart)
//! and the ETA's status.

use std::sync::Arc;

use lastmile_reports::{Bulletin, GroupKey, Period, Report, ReportRequest};
use serde::Serialize;

use super::{App, Caller};
use crate::app::eta::EtaStatus;
use crate::auth::Operation;
use crate::error::AppError;
use crate::history::History;

/// The period and grouping a report is asked for, as the caller gave them:
/// exactly one of `week` ("2026-W48"), `month` ("2026-11") or `from` and
/// `to` (RFC 3339 instants or dates, in the district's time zone).
#[derive(Clone, Debug, Default)]
pub struct ComplianceQuery {
    pub week: Option<String>,
    pub month: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Comma-separated keys (`tier`, `town`, `grid`, `day`, `week`, `month`);
    /// none: per tier over the period.
    pub group_by: Option<String>,
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    #[default]
    Json,
    /// The rows table.
    Csv,
    /// The per-unit table.
    UnitsCsv,
    /// One printable page with its charts.
    Html,
}

impl ReportFormat {
    pub const NAMES: &'static str = "json, csv, units.csv, html";

    pub fn parse(s: &str) -> Result<ReportFormat, AppError> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            "units.csv" | "units-csv" | "units_csv" => Ok(ReportFormat::UnitsCsv),
            "html" => Ok(ReportFormat::Html),
            other => Err(AppError::invalid("format", format!("{other:?} is not one of {}", Self::NAMES))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Json => "application/json",
            ReportFormat::Csv | ReportFormat::UnitsCsv => "text/csv; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// A rendered report.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub format: ReportFormat,
    /// e.g. `compliance-2026-W48`: a file name without its extension.
    pub name: String,
    pub body: String,
}

/// The JSON answer: the report, and for a month the bulletin.
#[derive(Serialize)]
struct WithBulletin<'a> {
    #[serde(flatten)]
    report: &'a Report,
    bulletin: Option<&'a Bulletin>,
}

impl ComplianceQuery {
    /// The period, cut in `tz`.
    pub fn period(&self, tz: &jiff::tz::TimeZone) -> Result<Period, AppError> {
        let bad = |e: lastmile_reports::ReportError| AppError::invalid("period", e);
        match (&self.week, &self.month, &self.from, &self.to) {
            (Some(w), None, None, None) => Period::iso_week(w, tz).map_err(bad),
            (None, Some(m), None, None) => Period::month(m, tz).map_err(bad),
            (None, None, Some(f), Some(t)) => Period::range(f, t, tz).map_err(bad),
            _ => Err(AppError::invalid(
                "period",
                "give exactly one of week (2026-W48), month (2026-11), or from and to (2026-11-01, 2026-11-15)",
            )),
        }
    }

    pub fn group_by(&self) -> Result<Vec<GroupKey>, AppError> {
        match self.group_by.as_deref().map(str::trim) {
            None | Some("") => Ok(vec![GroupKey::Tier]),
            Some(list) => GroupKey::parse_list(list).map_err(|e| AppError::invalid("group_by", e)),
        }
    }
}

/// Reads the outcomes of the period (and for a month, of the month before,
/// for the bulletin's change) from `history` and renders the report.
/// Blocking: reads the store.
pub fn compliance_from(
    history: &History,
    query: &ComplianceQuery,
    tz: &jiff::tz::TimeZone,
) -> Result<Rendered, AppError> {
    let period = query.period(tz)?;
    let request = ReportRequest::new(period.clone(), query.group_by()?);
    let outcomes = history.outcomes(period.from_ms, period.to_ms)?;
    let report = lastmile_reports::compliance(&outcomes, &request);
    let bulletin = match (period.kind, period.previous()) {
        // The bulletin ranks the report's `towns` table, which every report
        // has whatever its grouping: this report's, and the month before's.
        (lastmile_reports::PeriodKind::Month { .. }, Some(previous)) => {
            let before = history.outcomes(previous.from_ms, previous.to_ms)?;
            let before = lastmile_reports::compliance(&before, &ReportRequest::new(previous, vec![GroupKey::Tier]));
            Some(lastmile_reports::bulletin(&report, Some(&before)))
        }
        _ => None,
    };
    let body = match query.format {
        ReportFormat::Json => lastmile_reports::to_json(&WithBulletin { report: &report, bulletin: bulletin.as_ref() }),
        ReportFormat::Csv => lastmile_reports::to_csv(&report),
        ReportFormat::UnitsCsv => lastmile_reports::to_units_csv(&report),
        ReportFormat::Html => lastmile_reports::to_html(&report, bulletin.as_ref()),
    };
    Ok(Rendered { format: query.format, name: format!("compliance-{}", period.label.replace('/', "_")), body })
}

impl App {
    /// Each tier's ETA model, where it comes from and how wrong it is.
    pub fn eta_status(&self, caller: &Caller) -> Result<EtaStatus, AppError> {
        let _admitted = self.authorize(caller, Operation::GetEtaStatus)?;
        Ok(self.eta.status())
    }

    /// The 13510 compliance report `query` asks for.
    pub async fn compliance(&self, caller: &Caller, query: ComplianceQuery) -> Result<Rendered, AppError> {
        let _admitted = self.authorize(caller, Operation::ReadComplianceReport)?;
        let tz =
            self.config.time_zone().map_err(|e| AppError::new(crate::error::ErrorCode::Internal, e.to_string()))?;
        let history: Arc<History> = self.history.clone();
        super::incidents::blocking(move || compliance_from(&history, &query, &tz)).await
    }
}
