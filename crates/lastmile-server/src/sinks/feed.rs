//! The dispatchers' live feed: sequence numbers, a bounded history for
//! resuming, and a broadcast channel whose bounded per-receiver buffer lets a
//! slow consumer fall behind (and be told so) without slowing anyone else.
//!
//! Consumers own their receivers ([`Feed::subscribe`]): gRPC and SSE
//! watchers (through [`crate::app::App::watch`]), and webhooks. The feed
//! knows none of them and no wire format: it carries the core's events.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use lastmile_core::effects::Event;
use tokio::sync::broadcast;

use crate::error::{AppError, ErrorCode};

/// One event of the feed, numbered.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    pub seq: u64,
    pub event: Event,
}

/// A shared, sequenced feed event.
pub type SharedEvent = std::sync::Arc<FeedEvent>;

/// A consumer's start: the history to replay and the live receiver.
pub struct Subscription {
    pub backlog: Vec<SharedEvent>,
    pub live: broadcast::Receiver<SharedEvent>,
}

pub struct Feed {
    /// Held to number, keep and send one event (a few hundred nanoseconds,
    /// no I/O, no allocation beyond the event's `Arc`). Taken while the core
    /// holds an incident's lock: lock order is incident -> feed, and nothing
    /// is locked while this is held.
    inner: Mutex<FeedInner>,
    tx: broadcast::Sender<SharedEvent>,
    history_events: usize,
    subscriber_buffer_events: usize,
    /// Watchers counted against `feed.max_watchers` (see `app::feed`).
    pub(crate) watchers: AtomicUsize,
}

struct FeedInner {
    next_seq: u64,
    history: VecDeque<SharedEvent>,
}

impl Feed {
    pub fn new(history_events: usize, subscriber_buffer_events: usize, first_seq: u64) -> Self {
        let (tx, _) = broadcast::channel(subscriber_buffer_events);
        Feed {
            inner: Mutex::new(FeedInner {
                next_seq: first_seq.max(1),
                history: VecDeque::with_capacity(history_events),
            }),
            tx,
            history_events,
            subscriber_buffer_events,
            watchers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn publish(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = std::sync::Arc::new(FeedEvent { seq, event });
        if inner.history.len() == self.history_events {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        // Sent under the lock, so receivers see sequence order. No receiver: fine.
        let _ = self.tx.send(event);
    }

    /// The last sequence number issued (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next_seq - 1
    }

    /// The events a receiver can fall behind before it is told it lagged
    /// (`feed.subscriber_buffer_events`).
    pub fn subscriber_buffer_events(&self) -> usize {
        self.subscriber_buffer_events
    }

    /// Subscribes from now on: the last sequence number issued and the live
    /// receiver, taken together (the receiver gets every event after it).
    pub fn subscribe_now(&self) -> (u64, broadcast::Receiver<SharedEvent>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.next_seq - 1, self.tx.subscribe())
    }

    /// Subscribes, returning the history after `after_seq` (none if 0) and the
    /// live receiver; taken together under the lock, so nothing is missed.
    /// OUT_OF_RANGE when `after_seq` is ahead of the feed (a restart) or no
    /// longer in the history.
    pub fn subscribe(&self, after_seq: u64) -> Result<Subscription, AppError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = self.tx.subscribe();
        let last = inner.next_seq - 1;
        if after_seq == 0 || after_seq == last {
            return Ok(Subscription { backlog: Vec::new(), live });
        }
        if after_seq > last {
            return Err(AppError::new(
                ErrorCode::OutOfRange,
                format!("after_seq: {after_seq} is ahead of the feed (last: {last}); the server restarted: resync"),
            ));
        }
        let oldest = inner.history.front().map(|e| e.seq).unwrap_or(inner.next_seq);
        if after_seq + 1 < oldest {
            return Err(AppError::new(
                ErrorCode::OutOfRange,
                format!(
                    "after_seq: event {} is no longer in the history (oldest kept: {oldest}, feed.history_events = {})",
                    after_seq + 1,
                    self.history_events
                ),
            ));
        }
        let backlog = inner.history.iter().filter(|e| e.seq > after_seq).cloned().collect();
        Ok(Subscription { backlog, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_core::Timestamp;
    use lastmile_core::effects::EventKind;

    fn event() -> Event {
        Event::new(EventKind::UnitPosition, Timestamp::from_unix_ms(0))
    }

    #[test]
    fn resuming_replays_what_was_missed_and_refuses_what_is_gone() {
        let feed = Feed::new(3, 8, 1);
        for _ in 0..5 {
            feed.publish(event());
        }
        assert_eq!(feed.last_seq(), 5);
        let seqs = |s: Subscription| s.backlog.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(feed.subscribe(3).unwrap()), vec![4, 5]);
        assert_eq!(seqs(feed.subscribe(2).unwrap()), vec![3, 4, 5]);
        assert_eq!(feed.subscribe(1).err().unwrap().code, ErrorCode::OutOfRange);
        assert_eq!(feed.subscribe(6).err().unwrap().code, ErrorCode::OutOfRange);
        assert!(seqs(feed.subscribe(0).unwrap()).is_empty());
    }
}
