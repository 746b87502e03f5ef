//! What a report covers: a period `[from, to)` cut in the district's time
//! zone (an ISO week, a month or a free range), and the keys its rows are
//! grouped by.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, ISOWeekDate, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Serialize;

/// The longest period [`Period::range`] accepts: a leap year and a day, so
/// a yearly report fits whatever its DST shifts. (The trend enumerates the
/// period's weeks; the bound keeps that, and the page, small.)
pub const MAX_RANGE_DAYS: i64 = 367;

const DAY_MS: i64 = 86_400_000;

/// Why a period or a grouping was refused. Messages are lowercase and name
/// the input, so the HTTP adapter and the CLI can show them as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("bad ISO week {input:?}: expected YYYY-Www, e.g. 2026-W48")]
    BadWeekSyntax { input: String },
    #[error("bad ISO week {input:?}: {year} has {weeks_in_year} ISO weeks, so week {week} does not exist")]
    NoSuchWeek { input: String, year: i16, week: i8, weeks_in_year: i8 },
    #[error("bad month {input:?}: expected YYYY-MM, e.g. 2026-11")]
    BadMonth { input: String },
    #[error("bad {which} {input:?}: expected an RFC 3339 instant (2026-11-01T00:00:00+08:00) or a date (2026-11-01)")]
    BadInstant { which: &'static str, input: String },
    #[error("empty range: from {from} is not before to {to}")]
    EmptyRange { from: String, to: String },
    #[error("range from {from} to {to} is longer than {max_days} days")]
    RangeTooLong { from: String, to: String, max_days: i64 },
    #[error("unknown group_by key {name:?}: accepted keys are {accepted}")]
    UnknownGroupKey { name: String, accepted: &'static str },
    #[error("group_by key {name:?} is given twice")]
    DuplicateGroupKey { name: String },
}

/// A dimension the rows are split by. Rows are always split by tier too
/// (13510 is a per-tier rule); naming `tier` only chooses where the tier
/// sorts among the keys (last when not named).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKey {
    Tier,
    Town,
    Grid,
    /// The local date of the report, "2026-11-23".
    Day,
    /// The ISO week of the report's local date, "2026-W48".
    Week,
    /// The local month of the report, "2026-11".
    Month,
}

impl GroupKey {
    pub const ALL: [GroupKey; 6] =
        [GroupKey::Tier, GroupKey::Town, GroupKey::Grid, GroupKey::Day, GroupKey::Week, GroupKey::Month];
    const ACCEPTED: &'static str = "tier, town, grid, day, week, month";

    pub fn name(self) -> &'static str {
        match self {
            GroupKey::Tier => "tier",
            GroupKey::Town => "town",
            GroupKey::Grid => "grid",
            GroupKey::Day => "day",
            GroupKey::Week => "week",
            GroupKey::Month => "month",
        }
    }

    /// A comma-separated list ("town,week"); blanks around names are
    /// ignored, an empty list means no keys (one row per tier). Unknown and
    /// repeated keys are refused.
    pub fn parse_list(list: &str) -> Result<Vec<GroupKey>, ReportError> {
        let mut keys = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let key: GroupKey = name.parse()?;
            if keys.contains(&key) {
                return Err(ReportError::DuplicateGroupKey { name: name.to_string() });
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

impl FromStr for GroupKey {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupKey::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ReportError::UnknownGroupKey { name: s.to_string(), accepted: GroupKey::ACCEPTED })
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a period was given: what [`Period::previous`] steps back by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodKind {
    Week { year: i16, week: i8 },
    Month { year: i16, month: i8 },
    Range,
}

/// The instants `[from_ms, to_ms)` a report counts incidents *reported* in,
/// with the label it is shown under and the zone it was cut in.
#[derive(Clone, Debug, PartialEq)]
pub struct Period {
    pub from_ms: i64,
    /// Exclusive.
    pub to_ms: i64,
    /// "2026-W48", "2026-11", or "2026-11-01/2026-11-15" for a range.
    pub label: String,
    pub kind: PeriodKind,
    /// The zone the bounds were cut in (needed to step back a month).
    pub tz: TimeZone,
}

impl Period {
    /// `"2026-W48"`: Monday 00:00 to the next Monday 00:00 in `tz`.
    pub fn iso_week(s: &str, tz: &TimeZone) -> Result<Period, ReportError> {
        let bad = || ReportError::BadWeekSyntax { input: s.to_string() };
        let (year, week) = s.split_once(['W', 'w']).ok_or_else(bad)?;
        let year = year.strip_suffix('-').ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 || !(year.bytes().chain(week.bytes()).all(|b| b.is_ascii_digit())) {
            return Err(bad());
        }
        let (year, week): (i16, i8) = (year.parse().map_err(|_| bad())?, week.parse().map_err(|_| bad())?);
        let weeks_in_year = ISOWeekDate::new(year, 1, Weekday::Monday).map_err(|_| bad())?.weeks_in_year();
        if !(1..=weeks_in_year).contains(&week) {
            return Err(ReportError::NoSuchWeek { input: s.to_string(), year, week, weeks_in_year });
        }
        Ok(Period::week_of(year, week, tz))
    }

    /// `"2026-11"`: the 1st 00:00 to the next month's 1st 00:00 in `tz`.
    pub fn month(s: &str, tz: &TimeZone) -> Result<Period, ReportError> {
        let bad = || ReportError::BadMonth { input: s.to_string() };
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit())) {
            return Err(bad());
        }
        let (year, month): (i16, i8) = (year.parse().map_err(|_| bad())?, month.parse().map_err(|_| bad())?);
        Date::new(year, month, 1).map_err(|_| bad())?;
        Ok(Period::month_of(year, month, tz))
    }

    /// From `from` to `to` (exclusive), each an RFC 3339 instant
    /// ("2026-11-01T00:00:00+08:00", "2026-10-31T16:00:00Z") or a plain
    /// date ("2026-11-01": local midnight in `tz`). At most
    /// [`MAX_RANGE_DAYS`] long.
    pub fn range(from: &str, to: &str, tz: &TimeZone) -> Result<Period, ReportError> {
        let (from_ms, from_label) = instant(from, "from", tz)?;
        let (to_ms, to_label) = instant(to, "to", tz)?;
        if from_ms >= to_ms {
            return Err(ReportError::EmptyRange { from: from_label, to: to_label });
        }
        if to_ms - from_ms > MAX_RANGE_DAYS * DAY_MS {
            return Err(ReportError::RangeTooLong { from: from_label, to: to_label, max_days: MAX_RANGE_DAYS });
        }
        let label = format!("{from_label}/{to_label}");
        Ok(Period { from_ms, to_ms, label, kind: PeriodKind::Range, tz: tz.clone() })
    }

    /// The week before a week, the month before a month; `None` for a range
    /// (a bulletin compares calendar periods only).
    pub fn previous(&self) -> Option<Period> {
        match self.kind {
            PeriodKind::Week { year, week } => {
                let monday = ISOWeekDate::new(year, week, Weekday::Monday).ok()?.date();
                let before = monday.yesterday().ok()?.iso_week_date();
                Some(Period::week_of(before.year(), before.week(), &self.tz))
            }
            PeriodKind::Month { year, month } => {
                let before = Date::new(year, month, 1).ok()?.yesterday().ok()?;
                Some(Period::month_of(before.year(), before.month(), &self.tz))
            }
            PeriodKind::Range => None,
        }
    }

    /// Whether an incident reported at `at_ms` counts.
    pub fn contains(&self, at_ms: i64) -> bool {
        self.from_ms <= at_ms && at_ms < self.to_ms
    }

    fn week_of(year: i16, week: i8, tz: &TimeZone) -> Period {
        let monday = ISOWeekDate::new(year, week, Weekday::Monday).expect("checked week").date();
        let next = monday.checked_add(jiff::Span::new().days(7)).expect("a week within jiff's range");
        Period {
            from_ms: local_midnight_ms(monday, tz),
            to_ms: local_midnight_ms(next, tz),
            label: week_label(monday),
            kind: PeriodKind::Week { year, week },
            tz: tz.clone(),
        }
    }

    fn month_of(year: i16, month: i8, tz: &TimeZone) -> Period {
        let first = Date::new(year, month, 1).expect("checked month");
        let next = first.last_of_month().tomorrow().expect("a month within jiff's range");
        Period {
            from_ms: local_midnight_ms(first, tz),
            to_ms: local_midnight_ms(next, tz),
            label: month_label(first),
            kind: PeriodKind::Month { year, month },
            tz: tz.clone(),
        }
    }
}

fn instant(s: &str, which: &'static str, tz: &TimeZone) -> Result<(i64, String), ReportError> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok((ts.as_millisecond(), rfc3339(ts.as_millisecond(), tz)));
    }
    match s.parse::<Date>() {
        Ok(date) => Ok((local_midnight_ms(date, tz), date.to_string())),
        Err(_) => Err(ReportError::BadInstant { which, input: s.to_string() }),
    }
}

/// The instant a local day starts (the first instant of the day where a
/// DST gap swallows midnight).
pub(crate) fn local_midnight_ms(date: Date, tz: &TimeZone) -> i64 {
    let ts = tz.to_timestamp(date.to_datetime(Time::midnight())).expect("a date within jiff's range");
    ts.as_millisecond()
}

/// The local date of an instant (instants beyond jiff's range clamp to it).
pub(crate) fn local_date(at_ms: i64, tz: &TimeZone) -> Date {
    let ts = Timestamp::from_millisecond(at_ms).unwrap_or(if at_ms < 0 { Timestamp::MIN } else { Timestamp::MAX });
    tz.to_datetime(ts).date()
}

/// An instant as RFC 3339 with the zone's offset at that instant.
pub(crate) fn rfc3339(at_ms: i64, tz: &TimeZone) -> String {
    let ts = Timestamp::from_millisecond(at_ms).unwrap_or(if at_ms < 0 { Timestamp::MIN } else { Timestamp::MAX });
    ts.display_with_offset(tz.to_offset(ts)).to_string()
}

/// The zone's IANA name, or its fixed offset ("+08:00") when it has none.
pub(crate) fn zone_name(tz: &TimeZone) -> String {
    match (tz.iana_name(), tz.to_fixed_offset()) {
        (Some(name), _) => name.to_string(),
        (None, Ok(offset)) => offset.to_string(),
        (None, Err(_)) => "unnamed time zone".to_string(),
    }
}

pub(crate) fn day_label(date: Date) -> String {
    date.to_string()
}

pub(crate) fn week_label(date: Date) -> String {
    let w = date.iso_week_date();
    format!("{:04}-W{:02}", w.year(), w.week())
}

pub(crate) fn month_label(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn an_iso_week_runs_monday_to_monday_in_the_zone() {
        let p = Period::iso_week("2026-W48", &shanghai()).unwrap();
        assert_eq!(p.label, "2026-W48");
        // Monday 2026-11-23 00:00 +08:00 is 2026-11-22T16:00Z.
        assert_eq!(p.from_ms, ms("2026-11-22T16:00:00Z"));
        assert_eq!(p.to_ms, ms("2026-11-29T16:00:00Z"));
        assert!(!p.contains(ms("2026-11-22T15:59:59.999Z")));
        assert!(p.contains(ms("2026-11-22T16:00:00Z")));
        assert!(!p.contains(ms("2026-11-29T16:30:00Z")), "Monday 00:30 local is the next week");
        assert_eq!(p.previous().unwrap().label, "2026-W47");
        // Across a year: 2026 has 53 weeks, and W01 of 2027 steps back to it.
        let w53 = Period::iso_week("2026-W53", &shanghai()).unwrap();
        assert_eq!(w53.from_ms, ms("2026-12-27T16:00:00Z"));
        assert_eq!(Period::iso_week("2027-W01", &shanghai()).unwrap().previous().unwrap(), w53);
    }

    #[test]
    fn a_week_that_does_not_exist_is_refused_with_why() {
        let err = Period::iso_week("2027-W53", &shanghai()).unwrap_err();
        assert_eq!(err.to_string(), "bad ISO week \"2027-W53\": 2027 has 52 ISO weeks, so week 53 does not exist");
        let err = Period::iso_week("2026-W00", &shanghai()).unwrap_err();
        assert!(matches!(err, ReportError::NoSuchWeek { week: 0, .. }), "{err}");
        for bad in ["2026W48", "2026-48", "26-W48", "2026-W4", "2026-W4x", ""] {
            let err = Period::iso_week(bad, &shanghai()).unwrap_err();
            assert!(matches!(err, ReportError::BadWeekSyntax { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("expected YYYY-Www"), "{err}");
        }
    }

    #[test]
    fn a_month_is_cut_at_local_midnight() {
        let p = Period::month("2026-12", &shanghai()).unwrap();
        assert_eq!(p.from_ms, ms("2026-11-30T16:00:00Z"));
        assert_eq!(p.to_ms, ms("2026-12-31T16:00:00Z"));
        let prev = p.previous().unwrap();
        assert_eq!((prev.label.as_str(), prev.to_ms), ("2026-11", p.from_ms));
        assert_eq!(Period::month("2026-01", &shanghai()).unwrap().previous().unwrap().label, "2025-12");
        for bad in ["2026-13", "2026-00", "2026-1", "2026/11", "november"] {
            assert!(matches!(Period::month(bad, &shanghai()), Err(ReportError::BadMonth { .. })), "{bad}");
        }
    }

    #[test]
    fn a_range_takes_instants_or_local_dates() {
        let tz = shanghai();
        let p = Period::range("2026-11-01", "2026-11-15", &tz).unwrap();
        assert_eq!((p.from_ms, p.to_ms), (ms("2026-10-31T16:00:00Z"), ms("2026-11-14T16:00:00Z")));
        assert_eq!(p.label, "2026-11-01/2026-11-15");
        assert_eq!(p.previous(), None);
        let p = Period::range("2026-11-01T08:00:00Z", "2026-11-02T00:00:00+08:00", &tz).unwrap();
        assert_eq!(p.label, "2026-11-01T16:00:00+08:00/2026-11-02T00:00:00+08:00");
        assert!(matches!(Period::range("2026-11-02", "2026-11-01", &tz), Err(ReportError::EmptyRange { .. })));
        assert!(matches!(Period::range("2026-01-01", "2028-01-01", &tz), Err(ReportError::RangeTooLong { .. })));
        let err = Period::range("yesterday", "2026-11-01", &tz).unwrap_err();
        assert!(err.to_string().starts_with("bad from \"yesterday\": expected an RFC 3339 instant"), "{err}");
    }

    #[test]
    fn group_keys_parse_and_refuse_by_name() {
        assert_eq!(GroupKey::parse_list("town, week").unwrap(), [GroupKey::Town, GroupKey::Week]);
        assert_eq!(GroupKey::parse_list("").unwrap(), []);
        let err = GroupKey::parse_list("town,village").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown group_by key \"village\": accepted keys are tier, town, grid, day, week, month"
        );
        assert!(matches!(GroupKey::parse_list("town,town"), Err(ReportError::DuplicateGroupKey { .. })));
        assert!("Month".parse::<GroupKey>().unwrap_err().to_string().contains("accepted"), "names are lowercase");
    }
}
