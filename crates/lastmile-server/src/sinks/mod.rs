//! Where the core's effects go, except storage: the live feed, the
//! terminals' page queues, the open incidents' timelines and the timer
//! channel. [`Sinks`] is handed to the
//! core (through [`crate::app::work::Work`], which adds the journal) while it
//! holds an incident's lock, so nothing here blocks or waits: the feed is a
//! ring buffer plus a broadcast channel, a page is a `try_send`, a timer is a
//! channel send to the one timer task ([`crate::app::timers`]).
//!
//! No transport lives here: events, pages and errors are the application's
//! types; adapters turn them into protobuf, JSON or SSE.

pub mod feed;
pub mod terminals;
pub mod timeline;

use lastmile_core::effects::{Event, PageOrder, Timer};
use tokio::sync::mpsc;

use crate::config::LastmileConfig;
pub use feed::{Feed, FeedEvent, SharedEvent, Subscription};
pub use terminals::{Page, PageItem, Terminals};
pub use timeline::{SERVER_ACTOR, TimelineEntry, Timelines};

pub struct Sinks {
    pub feed: Feed,
    pub terminals: Terminals,
    /// The open incidents' timelines.
    pub timelines: Timelines,
    /// To the timer task. Unbounded by type but bounded by the state: at
    /// most one deadline per tier, one acknowledgement timer per page and one
    /// return timer per unit (`limits.max_incidents` x tiers x pages +
    /// units), drained continuously into the timer wheel. A bounded channel
    /// would make the core wait, under an incident's lock, for the timer
    /// task.
    timers: mpsc::UnboundedSender<Timer>,
    /// `dispatch.tiers`, for each page's `ack_timeout_s`.
    tiers: lastmile_core::config::TierTable,
}

impl Sinks {
    /// The sinks and the receiving end of their timer channel.
    pub fn new(config: &LastmileConfig, first_seq: u64) -> (Sinks, mpsc::UnboundedReceiver<Timer>) {
        let (timers, rx) = mpsc::unbounded_channel();
        let sinks = Sinks {
            feed: Feed::new(config.feed.history_events, config.feed.subscriber_buffer_events, first_seq),
            terminals: Terminals::new(config.terminals.page_buffer),
            timelines: Timelines::new(config.limits.max_timeline_entries),
            timers,
            tiers: config.dispatch.tiers.clone(),
        };
        (sinks, rx)
    }

    /// The page a terminal receives for `order`.
    pub fn page(&self, order: PageOrder) -> Page {
        Page { ack_timeout_s: self.tiers.get(order.tier).ack_timeout_s, order }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.feed.publish(event);
    }

    pub(crate) fn deliver(&self, order: PageOrder) {
        self.terminals.deliver(self.page(order));
    }

    pub(crate) fn arm(&self, timer: Timer) {
        // Fails only when the timer task has stopped, i.e. during shutdown.
        let _ = self.timers.send(timer);
    }
}
