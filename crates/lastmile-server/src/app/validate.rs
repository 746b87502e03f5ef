//! Request checks, once for every transport: required fields, the string
//! and list bounds of `[limits]`, page sizes of `[server]`, coordinates and
//! timestamps. A refusal is INVALID_ARGUMENT naming the request field.

use lastmile_core::{LatLng, Timestamp};

use crate::config::{RequestLimits, ServerConfig};
use crate::error::AppError;

/// Longest incident or unit id a request may name, bytes (server ids are
/// far shorter; unit ids are at most `lastmile_core::unit::MAX_UNIT_ID_BYTES`).
pub const MAX_ID_BYTES: usize = 128;

/// A coordinate pair as a request carries it, before it is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

/// A timestamp as a request carries it (seconds and nanoseconds since the
/// Unix epoch), before it is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawTime {
    pub seconds: i64,
    pub nanos: i32,
}

pub fn lat_lng(field: &str, value: Option<Point>) -> Result<LatLng, AppError> {
    let value = value.ok_or_else(|| AppError::invalid(field, "required"))?;
    LatLng::new(value.lat, value.lng).map_err(|e| AppError::invalid(format!("{field}.{}", e.component()), e))
}

pub fn bounded_str(field: &str, value: &str, max_bytes: usize) -> Result<(), AppError> {
    if value.len() > max_bytes {
        return Err(AppError::invalid(field, format!("must be at most {max_bytes} bytes, got {}", value.len())));
    }
    Ok(())
}

/// A free-text reason (close, release, decline): `limits.max_description_bytes`.
pub fn reason(field: &str, value: &str, limits: &RequestLimits) -> Result<(), AppError> {
    bounded_str(field, value, limits.max_description_bytes)
}

pub fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str, AppError> {
    if value.is_empty() {
        return Err(AppError::invalid(field, "required"));
    }
    optional_id(field, value)?;
    Ok(value)
}

/// An optional id (a filter, a guard): empty is fine, otherwise bounded.
pub fn optional_id(field: &str, value: &str) -> Result<(), AppError> {
    if value.len() > MAX_ID_BYTES {
        return Err(AppError::invalid(field, format!("must be at most {MAX_ID_BYTES} bytes")));
    }
    Ok(())
}

/// The page size to use: 0 means the server default; above the maximum is refused.
pub fn page_size(value: u32, server: &ServerConfig) -> Result<usize, AppError> {
    match value {
        0 => Ok(server.default_page_size as usize),
        n if n > server.max_page_size => Err(AppError::invalid(
            "page_size",
            format!("must be at most {} (0 = default {})", server.max_page_size, server.default_page_size),
        )),
        n => Ok(n as usize),
    }
}

pub fn page_token(value: &str) -> Result<Option<&str>, AppError> {
    optional_id("page_token", value)?;
    Ok((!value.is_empty()).then_some(value))
}

/// A timestamp from a request: whole, in range, and not further in the
/// future than `max_skew_s` (a terminal with a clock far ahead would
/// otherwise freeze its unit: every later report would look stale).
pub fn request_time(field: &str, value: RawTime, now: Timestamp, max_skew_s: u32) -> Result<Timestamp, AppError> {
    let at = filter_time(field, value)?;
    let ms = at.unix_ms;
    if at > now.plus_s(max_skew_s) {
        return Err(AppError::invalid(
            field,
            format!("{ms} ms is more than {max_skew_s} s ahead of the server's clock (terminals.max_clock_skew_s)"),
        ));
    }
    Ok(at)
}

/// A time that bounds a query (a list's `reported_from` / `reported_to`):
/// well formed and in range, at any distance from now (a bound in the
/// future is a query for nothing yet, not an error).
pub fn filter_time(field: &str, value: RawTime) -> Result<Timestamp, AppError> {
    if !(0..1_000_000_000).contains(&value.nanos) {
        return Err(AppError::invalid(field, format!("nanos must be in 0..1e9, got {}", value.nanos)));
    }
    let ms = value
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(value.nanos) / 1_000_000))
        .ok_or_else(|| AppError::invalid(field, format!("{} s is out of range", value.seconds)))?;
    Ok(Timestamp::from_unix_ms(ms))
}

/// Severity 1 (minor) to 4 (major): the core's rule, for raw input.
pub fn severity(value: u32) -> Result<u8, AppError> {
    Ok(lastmile_core::check_severity(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(lat_lng("location", None).unwrap_err().message, "location: required");
        let far = lat_lng("location", Some(Point { lat: 91.0, lng: 0.0 })).unwrap_err();
        assert!(far.message.starts_with("location.lat"), "{}", far.message);
        assert_eq!(required_id("unit_id", "").unwrap_err().message, "unit_id: required");
        assert_eq!(optional_id("incident_id", &"x".repeat(129)).unwrap_err().code, ErrorCode::InvalidArgument);
        assert!(severity(5).unwrap_err().message.starts_with("severity: must be 1 (minor) to 4 (major)"));
        assert_eq!(severity(4).unwrap(), 4);
    }

    #[test]
    fn timestamps_are_whole_and_not_ahead() {
        let now = Timestamp::from_unix_ms(1_000_000);
        let at = request_time("measured_at", RawTime { seconds: 999, nanos: 500_000_000 }, now, 30).unwrap();
        assert_eq!(at, Timestamp::from_unix_ms(999_500));
        assert!(request_time("measured_at", RawTime { seconds: 0, nanos: -1 }, now, 30).is_err());
        assert!(request_time("measured_at", RawTime { seconds: 1031, nanos: 0 }, now, 30).is_err());
        assert!(request_time("measured_at", RawTime { seconds: i64::MAX, nanos: 0 }, now, 30).is_err());
    }
}
