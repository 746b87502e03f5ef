//! The one place the server reads the clock; the core is handed the time.
//!
//! Wall-clock time is taken once at start, then advanced by tokio's monotonic
//! clock: timestamps never go backwards (an NTP step cannot reorder events or
//! fire timers early), and under `tokio::time::pause()` the whole server runs on
//! the paused clock.

use std::time::Duration;

use lastmile_core::Timestamp;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_at_start_ms: i64,
    instant_at_start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Clock { wall_at_start_ms: since_epoch.as_millis() as i64, instant_at_start: Instant::now() }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.wall_at_start_ms + self.instant_at_start.elapsed().as_millis() as i64)
    }

    /// The monotonic instant at which wall time `at` comes (now, if passed).
    pub fn instant_for(&self, at: Timestamp) -> Instant {
        let offset_ms = (at.unix_ms - self.wall_at_start_ms).max(0) as u64;
        self.instant_at_start + Duration::from_millis(offset_ms)
    }
}
