//! Watching the live feed, with its policy, once for every transport (gRPC
//! `WatchEvents`, SSE `GET /v1/events`):
//!
//! - at most `feed.max_watchers` at once (one more: RESOURCE_EXHAUSTED);
//! - resuming after `after_seq` from the history (`feed.history_events`;
//!   older or ahead of the feed: OUT_OF_RANGE);
//! - a watcher more than `feed.subscriber_buffer_events` behind is ended
//!   with RESOURCE_EXHAUSTED saying where to resume; one that has not taken
//!   an event for `feed.watcher_stall_timeout_ms` is ended; at shutdown each
//!   is ended with UNAVAILABLE saying where to resume.
//!
//! Dispatch never waits for a watcher: each has its own forwarding task
//! reading its own broadcast receiver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::validate;
use super::{App, AppError, Caller, Operation};
use crate::metrics::Metrics;
use crate::sinks::SharedEvent;

/// What a watcher receives: events, then (maybe) why it ended.
pub type WatchItem = Result<SharedEvent, AppError>;

/// Events queued between a watcher's forwarding task and its transport;
/// the real bound on lag is `feed.subscriber_buffer_events`.
const WATCH_STREAM_BUFFER: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Resume after this sequence number; 0 = from now.
    pub after_seq: u64,
    /// Empty: every incident.
    pub incident_id: String,
    /// Empty: every unit.
    pub unit_id: String,
}

impl WatchFilter {
    fn wants(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        (self.incident_id.is_empty() || e.incident_id.as_deref() == Some(self.incident_id.as_str()))
            && (self.unit_id.is_empty() || e.unit_id.as_deref() == Some(self.unit_id.as_str()))
    }
}

/// Frees a watcher's place when its forwarding task ends, however it ends.
struct WatcherSlot(Arc<App>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.sinks.feed.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    /// Starts a watcher: the history after `filter.after_seq`, then every
    /// new event, of the filter's incident and unit.
    pub fn watch(
        self: &Arc<Self>,
        caller: &Caller,
        filter: WatchFilter,
    ) -> Result<mpsc::Receiver<WatchItem>, AppError> {
        let _admitted = self.authorize(caller, Operation::WatchEvents)?;
        validate::optional_id("incident_id", &filter.incident_id)?;
        validate::optional_id("unit_id", &filter.unit_id)?;
        let feed = &self.sinks.feed;
        let max = self.config.feed.max_watchers;
        if feed.watchers.fetch_add(1, Ordering::Relaxed) >= max {
            feed.watchers.fetch_sub(1, Ordering::Relaxed);
            self.metrics.limit_hit("feed.max_watchers");
            return Err(
                AppError::exhausted(format!("{max} watchers already (feed.max_watchers)")).with_retry_after_s(5)
            );
        }
        let slot = WatcherSlot(self.clone());
        let subscription = feed.subscribe(filter.after_seq)?;
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        let watcher = Watcher {
            tx,
            filter,
            stall: Duration::from_millis(self.config.feed.watcher_stall_timeout_ms),
            buffer: self.config.feed.subscriber_buffer_events,
            metrics: self.metrics.clone(),
        };
        let stop = self.stop.clone();
        // Lives exactly as long as the watcher: ends when the client goes
        // away, falls too far behind, or the server shuts down.
        tokio::spawn(async move {
            let _slot = slot;
            watcher.forward(subscription.backlog, subscription.live, stop).await;
        });
        Ok(rx)
    }
}

/// One watcher's forwarding task.
struct Watcher {
    tx: mpsc::Sender<WatchItem>,
    filter: WatchFilter,
    stall: Duration,
    buffer: usize,
    metrics: Arc<Metrics>,
}

impl Watcher {
    async fn forward(
        self,
        backlog: Vec<SharedEvent>,
        mut live: broadcast::Receiver<SharedEvent>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut last_sent = self.filter.after_seq;
        for event in backlog {
            last_sent = event.seq;
            if self.filter.wants(&event) && !self.send(Ok(event)).await {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => {
                    let _ = self.tx.try_send(Err(AppError::unavailable(format!(
                        "server shutting down; resume with after_seq = {last_sent}"
                    ))));
                    return;
                }
                // The watcher left (an SSE client closing its connection does
                // this at once): free its place now, not at the next event,
                // which on a quiet feed may be hours away.
                () = self.tx.closed() => return,
                received = live.recv() => received,
            };
            match received {
                Ok(event) if event.seq <= last_sent => {} // already sent from the history
                Ok(event) => {
                    last_sent = event.seq;
                    if self.filter.wants(&event) && !self.send(Ok(event)).await {
                        warn!(
                            last_sent,
                            "live feed watcher gone or not reading (feed.watcher_stall_timeout_ms): ended"
                        );
                        self.metrics.limit_hit("feed.watcher_stall_timeout_ms");
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "live feed watcher too slow: ended");
                    self.metrics.limit_hit("feed.subscriber_buffer_events");
                    let refusal = AppError::exhausted(format!(
                        "watcher fell more than {} events behind (feed.subscriber_buffer_events) and missed {missed}; resume with after_seq = {last_sent}",
                        self.buffer
                    ));
                    let _ = self.send(Err(refusal)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// False when the watcher is gone or has not taken an event for `stall`.
    async fn send(&self, item: WatchItem) -> bool {
        matches!(tokio::time::timeout(self.stall, self.tx.send(item)).await, Ok(Ok(())))
    }
}
