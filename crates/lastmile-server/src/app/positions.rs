//! Position fixes are applied at once and journaled coalesced.
//!
//! A terminal streams a fix every few seconds; journaling each in its own
//! commit would make every report wait behind position commits for nothing
//! (a unit's track is superseded by its next fix). So a fix changes the
//! dispatcher's state at once (selection and the feed see it), and the
//! units whose position changed are written to the journal together every
//! `journal.position_flush_ms`, each with its state at that moment, under
//! its lock. A crash loses at most that much of a unit's track. A position
//! stream is answered only once its units' last fixes are durable, and the
//! pending ones are flushed at shutdown before the journal closes.

use std::sync::Arc;
use std::time::Duration;

use super::{App, AppError, Caller};

impl App {
    /// Marks a unit's position as applied but not journaled.
    pub(super) fn position_pending(&self, unit_id: &str) {
        let mut pending = self.unjournaled_positions.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.contains(unit_id) {
            pending.insert(unit_id.to_string());
        }
    }

    fn take_pending(&self) -> Vec<String> {
        let mut pending = self.unjournaled_positions.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().collect()
    }

    /// Journals the pending positions now (an internal change; does not wait).
    pub fn flush_positions(&self) {
        let units = self.take_pending();
        if units.is_empty() {
            return;
        }
        self.internal_change(|work| {
            for id in &units {
                let _ = self.dispatcher.store_unit_state(id, work);
            }
        });
    }

    /// Makes `units`' current state durable (the end of a position stream).
    pub(super) async fn positions_durable(&self, caller: &Caller, units: &[String]) -> Result<(), AppError> {
        if self.journal.is_none() || units.is_empty() {
            return Ok(());
        }
        self.change(caller.name(), |work| {
            for id in units {
                let _ = self.dispatcher.store_unit_state(id, work);
            }
        })
        .await
    }
}

/// Flushes every `journal.position_flush_ms` until `app.stop`.
pub async fn run(app: Arc<App>) {
    if app.journal.is_none() {
        return;
    }
    let interval = Duration::from_millis(app.config.journal.position_flush_ms);
    loop {
        tokio::select! {
            () = app.stop.cancelled() => return,
            () = tokio::time::sleep(interval) => app.flush_positions(),
        }
    }
}
