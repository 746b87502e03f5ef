//! The 13510 compliance reports (一周一上报, 一月一通报): from the outcomes
//! of closed incidents ([`lastmile_core::outcome::Outcome`]), per tier,
//! how many incidents each tier met (every required slot filled by a
//! verified arrival within the tier's target of the report), grouped by
//! town, grid, day, week or month of the district's time zone; the monthly
//! bulletin that ranks the towns; and the report as JSON, CSV and one
//! printable HTML page with its charts.
//!
//! # Layout
//!
//! - [`period`]: [`Period`] (an ISO week, a month, a range, cut in a time
//!   zone), [`GroupKey`], and [`ReportError`] (why an input was refused).
//! - [`report`]: [`compliance`] and the [`Report`] it returns.
//! - [`mod@bulletin`]: [`bulletin()`], the towns ranked per tier.
//! - [`csv`], [`html`]: the renderings; [`to_json`] is here.
//!
//! The figures are defined in `docs/compliance.md`.
//!
//! # What this crate must not do
//!
//! No I/O and no clock: the caller reads outcomes from history and passes
//! them in, and serves or writes what comes back. The work is one pass over
//! the outcomes plus sorts of the groups and of their arrival times (nothing
//! quadratic): a week's report may run on a request's task; a year's (up to
//! [`MAX_RANGE_DAYS`]) is better given to a blocking thread.

#![forbid(unsafe_code)]

pub mod bulletin;
pub mod csv;
pub mod html;
pub mod period;
pub mod report;

#[cfg(test)]
mod tests;

pub use bulletin::{Bulletin, BulletinTier, BulletinTown, bulletin};
pub use csv::{to_csv, to_units_csv};
pub use html::to_html;
pub use period::{GroupKey, MAX_RANGE_DAYS, Period, PeriodKind, ReportError};
pub use report::{EtaRow, PeriodInfo, Report, ReportRequest, Row, Trend, TrendStep, UnitRow, compliance};

/// A [`Report`] or a [`Bulletin`] as compact JSON (field names as in the
/// types' docs; absent figures are `null`).
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Only strings, numbers, options and sequences: serializing cannot fail
    // (a non-finite float becomes null).
    serde_json::to_string(value).expect("a report serializes")
}
