//! Where the core's effects go: the live feed, the terminals' page queues and
//! the timer wheel. [`Bus`] implements `lastmile_core::effects::Effects`; the
//! core calls it while holding an incident's lock, so nothing here blocks or
//! waits: the feed is a ring buffer plus a broadcast channel, a page is a
//! `try_send`, a timer is a channel send to the one timer task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use lastmile_core::Dispatcher;
use lastmile_core::effects::{Effects, Event, EventKind, PageOrder, Timer, TimerKey};
use lastmile_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tonic::Status;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::config::LastmileConfig;
use crate::convert;

/// A shared, sequenced feed event.
pub type FeedEvent = Arc<pb::DispatchEvent>;
/// What a terminal's page stream carries.
pub type PageItem = Result<pb::Page, Status>;
/// A watcher's start: the history to replay and the live receiver.
pub type FeedSubscription = (Vec<FeedEvent>, broadcast::Receiver<FeedEvent>);

/// The dispatchers' live feed: sequence numbers, a bounded history for
/// resuming, and a broadcast channel whose bounded per-receiver buffer lets a
/// slow watcher fall behind (and be told so) without slowing anyone else.
pub struct Feed {
    inner: Mutex<FeedInner>,
    tx: broadcast::Sender<Arc<pb::DispatchEvent>>,
    history_events: usize,
    pub(crate) watchers: AtomicUsize,
    /// The webhook endpoints, once started ([`Feed::set_webhooks`]).
    webhooks: std::sync::OnceLock<Arc<crate::webhook::Webhooks>>,
}

struct FeedInner {
    next_seq: u64,
    history: VecDeque<Arc<pb::DispatchEvent>>,
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
            watchers: AtomicUsize::new(0),
            webhooks: std::sync::OnceLock::new(),
        }
    }

    fn publish(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = Arc::new(event_to_pb(&event, seq));
        if inner.history.len() == self.history_events {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        // Offered under the lock too, so each webhook endpoint's queue is in
        // sequence order. Never waits (a full queue dead-letters); serialized
        // only when some endpoint wants this type.
        if let Some(webhooks) = self.webhooks.get() {
            let event_type = crate::http::json::event_type_name(&event);
            if webhooks.wants(event_type) {
                webhooks.offer(event_type, crate::http::json::event_text(&event).into());
            }
        }
        // Sent under the lock, so receivers see sequence order. No receiver: fine.
        let _ = self.tx.send(event);
    }

    /// Forwards every event from now on to `webhooks` (set once, at start).
    pub fn set_webhooks(&self, webhooks: Arc<crate::webhook::Webhooks>) {
        let _ = self.webhooks.set(webhooks);
    }

    /// The last sequence number issued (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next_seq - 1
    }

    /// Subscribes, returning the history after `after_seq` (none if 0) and the
    /// live receiver; taken together under the lock, so nothing is missed.
    pub fn subscribe(&self, after_seq: u64) -> Result<FeedSubscription, Status> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let last = inner.next_seq - 1;
        if after_seq == 0 || after_seq == last {
            return Ok((Vec::new(), rx));
        }
        if after_seq > last {
            return Err(Status::out_of_range(format!(
                "after_seq: {after_seq} is ahead of the feed (last: {last}); the server restarted: resync"
            )));
        }
        let oldest = inner.history.front().map(|e| e.seq).unwrap_or(inner.next_seq);
        if after_seq + 1 < oldest {
            return Err(Status::out_of_range(format!(
                "after_seq: event {} is no longer in the history (oldest kept: {oldest}, feed.history_events = {})",
                after_seq + 1,
                self.history_events
            )));
        }
        Ok((inner.history.iter().filter(|e| e.seq > after_seq).cloned().collect(), rx))
    }
}

fn event_type(kind: EventKind) -> pb::EventType {
    match kind {
        EventKind::IncidentReported => pb::EventType::IncidentReported,
        EventKind::IncidentClosed => pb::EventType::IncidentClosed,
        EventKind::UnitPaged => pb::EventType::UnitPaged,
        EventKind::UnitRepaged => pb::EventType::UnitRepaged,
        EventKind::UnitAcknowledged => pb::EventType::UnitAcknowledged,
        EventKind::UnitDeclined => pb::EventType::UnitDeclined,
        EventKind::UnitTimedOut => pb::EventType::UnitTimedOut,
        EventKind::UnitEnRoute => pb::EventType::UnitEnRoute,
        EventKind::UnitOnScene => pb::EventType::UnitOnScene,
        EventKind::UnitReleased => pb::EventType::UnitReleased,
        EventKind::TierShort => pb::EventType::TierShort,
        EventKind::TierMet => pb::EventType::TierMet,
        EventKind::TierBreached => pb::EventType::TierBreached,
        EventKind::TierEscalated => pb::EventType::TierEscalated,
        EventKind::UnitStatusChanged => pb::EventType::UnitStatusChanged,
        EventKind::UnitPosition => pb::EventType::UnitPosition,
        EventKind::GridWorkerNotified => pb::EventType::GridWorkerNotified,
    }
}

fn event_to_pb(e: &Event, seq: u64) -> pb::DispatchEvent {
    pb::DispatchEvent {
        seq,
        at: Some(convert::timestamp(e.at)),
        r#type: event_type(e.kind) as i32,
        incident_id: e.incident_id.clone().unwrap_or_default(),
        unit_id: e.unit_id.clone().unwrap_or_default(),
        tier: e.tier.map(|t| convert::tier_to_pb(t) as i32).unwrap_or(0),
        attempt: e.attempt,
        unit_status: e.unit_status.map(|s| convert::unit_status_to_pb(s) as i32).unwrap_or(0),
        position: e.position.map(convert::lat_lng_to_pb),
        detail: e.detail.clone(),
        grid_id: e.grid_id.clone(),
        grid_worker: e.grid_worker.as_ref().map(|w| pb::GridWorker {
            grid_id: e.grid_id.clone(),
            name: w.name.clone(),
            contact: w.contact.clone(),
        }),
    }
}

/// The connected terminals, one page queue per unit.
pub struct Terminals {
    slots: DashMap<String, (u64, mpsc::Sender<PageItem>)>,
    next_generation: AtomicU64,
    page_buffer: usize,
    /// Pages that found the terminal's queue full (they stay pending).
    pub(crate) pages_dropped_full: AtomicU64,
}

impl Terminals {
    fn new(page_buffer: usize) -> Self {
        Terminals {
            slots: DashMap::new(),
            next_generation: AtomicU64::new(1),
            page_buffer,
            pages_dropped_full: AtomicU64::new(0),
        }
    }

    /// A new page queue for `unit_id`; replaces (and so ends) the old one.
    pub fn subscribe(&self, unit_id: &str) -> (u64, mpsc::Sender<PageItem>, mpsc::Receiver<PageItem>) {
        let (tx, rx) = mpsc::channel(self.page_buffer);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Some((_, (_, old))) = self.slots.remove(unit_id) {
            let _ = old.try_send(Err(Status::aborted("replaced by a newer subscription for this unit")));
        }
        self.slots.insert(unit_id.to_string(), (generation, tx.clone()));
        (generation, tx, rx)
    }

    fn deliver(&self, page: pb::Page) {
        let Some(slot) = self.slots.get(&page.unit_id) else {
            debug!(unit_id = %page.unit_id, incident_id = %page.incident_id, "terminal not connected: page waits for it");
            return;
        };
        let (generation, tx) = (slot.0, slot.1.clone());
        drop(slot);
        let unit_id = page.unit_id.clone();
        match tx.try_send(Ok(page)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(page)) => {
                self.pages_dropped_full.fetch_add(1, Ordering::Relaxed);
                let page = page.unwrap_or_default();
                warn!(unit_id = %page.unit_id, incident_id = %page.incident_id, "terminal page queue full (terminals.page_buffer): page stays pending");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The terminal went away: forget its queue (unless it has reconnected since).
                self.slots.remove_if(&unit_id, |_, (g, _)| *g == generation);
            }
        }
    }

    /// Ends every terminal stream (shutdown).
    pub fn close_all(&self) {
        for slot in self.slots.iter() {
            let _ = slot.1.try_send(Err(Status::unavailable("server shutting down: reconnect")));
        }
        self.slots.clear();
    }
}

/// The effects sink the server hands the core.
pub struct Bus {
    pub feed: Feed,
    pub terminals: Terminals,
    timers: mpsc::UnboundedSender<Timer>,
    config: Arc<LastmileConfig>,
}

impl Bus {
    /// The bus and the receiving end of its timer channel (for [`run_timers`]).
    ///
    /// The timer channel is unbounded by type but bounded by the state: at most
    /// one deadline per tier and one acknowledgement timer per page of open
    /// incidents (`limits.max_incidents` x tiers x pages), and it is drained
    /// continuously into the timer wheel.
    pub fn new(config: Arc<LastmileConfig>, first_seq: u64) -> (Arc<Bus>, mpsc::UnboundedReceiver<Timer>) {
        let (timers, rx) = mpsc::unbounded_channel();
        let bus = Bus {
            feed: Feed::new(config.feed.history_events, config.feed.subscriber_buffer_events, first_seq),
            terminals: Terminals::new(config.terminals.page_buffer),
            timers,
            config,
        };
        (Arc::new(bus), rx)
    }

    pub fn page_to_pb(&self, p: &PageOrder) -> pb::Page {
        pb::Page {
            unit_id: p.unit_id.clone(),
            incident_id: p.incident_id.clone(),
            kind: convert::kind_to_pb(p.kind) as i32,
            severity: p.severity as u32,
            location: Some(convert::lat_lng_to_pb(p.location)),
            address: p.address.clone(),
            description: p.description.clone(),
            tier: convert::tier_to_pb(p.tier) as i32,
            eta_s: p.eta_s,
            distance_m: p.distance_m,
            deadline: Some(convert::timestamp(p.deadline)),
            paged_at: Some(convert::timestamp(p.paged_at)),
            attempt: p.attempt,
            ack_timeout_s: self.config.dispatch.tiers.get(p.tier).ack_timeout_s,
        }
    }
}

impl Effects for Bus {
    fn emit(&self, event: Event) {
        self.feed.publish(event);
    }

    fn page(&self, page: PageOrder) {
        self.terminals.deliver(self.page_to_pb(&page));
    }

    fn arm(&self, timer: Timer) {
        // Fails only when the timer task has stopped, i.e. during shutdown.
        let _ = self.timers.send(timer);
    }
}

/// The one timer task: a `DelayQueue` holding every acknowledgement timer,
/// deadline and return timer of the server, firing each into the core.
pub async fn run_timers(
    dispatcher: Arc<Dispatcher>,
    bus: Arc<Bus>,
    journal: Option<Arc<crate::journal::Journal>>,
    clock: Clock,
    mut armed: mpsc::UnboundedReceiver<Timer>,
    stop: CancellationToken,
) {
    let mut wheel: DelayQueue<TimerKey> = DelayQueue::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            Some(timer) = armed.recv() => {
                wheel.insert_at(timer.key, clock.instant_for(timer.at));
            }
            Some(expired) = std::future::poll_fn(|cx| wheel.poll_expired(cx)) => {
                // Fail closed: with a failed journal, timers change nothing
                // either (their changes could not be stored).
                if journal.as_ref().is_some_and(|j| j.failure().is_some()) {
                    continue;
                }
                let key = expired.get_ref();
                let span = match key {
                    TimerKey::Ack { incident_seq, tier, unit_id, attempt } => tracing::info_span!(
                        "timer", kind = "ack", incident_id = %lastmile_core::incident::incident_id_for(*incident_seq), tier = %tier, unit_id = %unit_id, attempt
                    ),
                    TimerKey::Deadline { incident_seq, tier } => tracing::info_span!(
                        "timer", kind = "deadline", incident_id = %lastmile_core::incident::incident_id_for(*incident_seq), tier = %tier
                    ),
                    TimerKey::Return { unit_id, .. } => tracing::info_span!("timer", kind = "return", unit_id = %unit_id),
                };
                let _in_span = span.enter();
                let op = crate::journal::Op::internal(&bus, &journal);
                dispatcher.fire(key, clock.now(), &op);
                op.finish();
            }
        }
    }
}
