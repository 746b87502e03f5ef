//! The one place the server reads the wall clock; the core is handed the time.

use lastmile_core::Timestamp;

pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_unix_ms(since_epoch.as_millis() as i64)
}
