//! History retention: every `history.prune_interval_s`, closed incidents
//! (with their timelines) closed more than `history.retention_days` ago are
//! deleted, oldest first, `history.prune_batch` per transaction, until none
//! is left or the interval comes round again. `retention_days = 0` keeps
//! everything (then the disk bounds history: a full disk fails the journal
//! closed, like any other write).

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::App;

/// Runs until `app.stop`; does nothing with `retention_days = 0`.
pub async fn run(app: Arc<App>) {
    let history = &app.config.history;
    if history.retention_days == 0 {
        return;
    }
    let interval = Duration::from_secs(history.prune_interval_s);
    loop {
        tokio::select! {
            () = app.stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        prune(&app).await;
    }
}

/// One round: batches until a batch comes back short.
pub async fn prune(app: &App) -> usize {
    let history = &app.config.history;
    let cutoff = app.now().unix_ms - i64::from(history.retention_days) * 86_400_000;
    let mut deleted = app.history.forget_before(lastmile_core::Timestamp::from_unix_ms(cutoff));
    if let Some(journal) = &app.journal {
        loop {
            match journal.prune(cutoff, history.prune_batch).await {
                Ok(n) => {
                    deleted += n;
                    if n < history.prune_batch || app.stop.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    warn!(%error, "history retention: prune failed; retried next interval");
                    break;
                }
            }
        }
    }
    if deleted > 0 {
        info!(deleted, retention_days = history.retention_days, "history retention: closed incidents deleted");
    }
    deleted
}
