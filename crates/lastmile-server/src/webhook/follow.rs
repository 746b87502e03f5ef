//! The webhooks' consumer of the live feed: a subscriber like any watcher,
//! with its own task, that offers every event (in sequence order) to the
//! endpoints that want its type, serialised only then.
//!
//! It falls behind only if it cannot keep up with the whole feed for
//! `feed.subscriber_buffer_events` events; it then resumes from the feed's
//! history (`feed.history_events`), so nothing is skipped unless the
//! history has moved past it too. Events lost that way are counted
//! (`lastmile_webhook_feed_missed_total`) and logged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use lastmile_proto::v1 as pb;
use tokio::sync::{broadcast, watch};
use tracing::{error, warn};

use super::Webhooks;
use crate::json;
use crate::sinks::{Feed, SharedEvent, Sinks};

/// The running consumer; [`Follower::finish`] ends it once everything
/// published so far has been offered.
pub struct Follower {
    /// Some(seq): stop once the event `seq` has been offered.
    stop_at: watch::Sender<Option<u64>>,
    /// Aborted if the follower is dropped without [`Follower::finish`].
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Follower {
    /// Subscribes now: every event published from here on is offered.
    pub fn start(webhooks: Arc<Webhooks>, sinks: Arc<Sinks>) -> Follower {
        let (last, live) = sinks.feed.subscribe_now();
        let (stop_at, stop_rx) = watch::channel(None);
        let task = tokio::spawn(follow(webhooks, sinks, last, live, stop_rx));
        Follower { stop_at, task: Some(task) }
    }

    /// Offers what was published up to `last_seq`, then ends (shutdown:
    /// called once requests and timers have stopped).
    pub async fn finish(mut self, last_seq: u64) {
        let _ = self.stop_at.send(Some(last_seq));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn follow(
    webhooks: Arc<Webhooks>,
    sinks: Arc<Sinks>,
    mut last: u64,
    mut live: broadcast::Receiver<SharedEvent>,
    mut stop_at: watch::Receiver<Option<u64>>,
) {
    loop {
        if stop_at.borrow().is_some_and(|target| last >= target) {
            return;
        }
        let received = tokio::select! {
            received = live.recv() => received,
            changed = stop_at.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match received {
            Ok(event) if event.seq <= last => {}
            Ok(event) => {
                last = event.seq;
                offer(&webhooks, &event);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                (last, live) = catch_up(&webhooks, &sinks.feed, last);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// After a lag: offers what the history still has after `last`, and
/// resubscribes. Returns the new position and receiver.
fn catch_up(webhooks: &Webhooks, feed: &Feed, last: u64) -> (u64, broadcast::Receiver<SharedEvent>) {
    match feed.subscribe(last) {
        Ok(subscription) => {
            warn!(
                after_seq = last,
                backlog = subscription.backlog.len(),
                "webhooks fell behind the feed: resumed from its history"
            );
            let mut last = last;
            for event in &subscription.backlog {
                last = event.seq;
                offer(webhooks, event);
            }
            (last, subscription.live)
        }
        Err(refusal) => {
            let (now, live) = feed.subscribe_now();
            let lost = now.saturating_sub(last);
            webhooks.feed_missed.fetch_add(lost, Ordering::Relaxed);
            error!(lost, after_seq = last, error = %refusal.message, "webhooks fell behind the feed's history: events not offered");
            (now, live)
        }
    }
}

fn offer(webhooks: &Webhooks, event: &SharedEvent) {
    let event_type = json::enum_name::<pb::EventType>(crate::wire::event_type(event.event.kind) as i32).unwrap_or("");
    if webhooks.wants(event_type) {
        let text = json::event_text(&crate::wire::event_to_pb(event));
        webhooks.offer(event_type, text.into());
    }
}
