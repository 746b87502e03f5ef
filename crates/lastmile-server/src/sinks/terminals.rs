//! The connected terminals: one bounded page queue per unit.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use lastmile_core::effects::PageOrder;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::{AppError, ErrorCode};

/// A page as a terminal receives it: the core's order and how long the crew
/// has to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub order: PageOrder,
    pub ack_timeout_s: u32,
}

/// What a terminal's page stream carries: pages, then (maybe) why it ended.
pub type PageItem = Result<Page, AppError>;

pub struct Terminals {
    /// Per unit: the subscription's generation and its queue's sender.
    /// A shard lock is held only to clone or replace a sender; never while
    /// sending (`try_send` runs after the guard is dropped).
    slots: DashMap<String, (u64, mpsc::Sender<PageItem>)>,
    next_generation: AtomicU64,
    /// `terminals.page_buffer`: pages queued for one connected terminal.
    page_buffer: usize,
    /// Pages that found the terminal's queue full (they stay pending).
    pub(crate) pages_dropped_full: AtomicU64,
}

impl Terminals {
    pub fn new(page_buffer: usize) -> Self {
        Terminals {
            slots: DashMap::new(),
            next_generation: AtomicU64::new(1),
            page_buffer,
            pages_dropped_full: AtomicU64::new(0),
        }
    }

    /// A new page queue for `unit_id`; replaces (and so ends) the old one.
    pub fn subscribe(&self, unit_id: &str) -> (mpsc::Sender<PageItem>, mpsc::Receiver<PageItem>) {
        let (tx, rx) = mpsc::channel(self.page_buffer);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Some((_, (_, old))) = self.slots.remove(unit_id) {
            let _ =
                old.try_send(Err(AppError::new(ErrorCode::Aborted, "replaced by a newer subscription for this unit")));
        }
        self.slots.insert(unit_id.to_string(), (generation, tx.clone()));
        (tx, rx)
    }

    /// Hands a page to its unit's queue, never waiting: a terminal that is
    /// not connected, or whose queue is full, gets it when it subscribes
    /// again (the page stays pending in the core; its timer runs on).
    pub(crate) fn deliver(&self, page: Page) {
        let unit_id = page.order.unit_id.clone();
        let Some(slot) = self.slots.get(&unit_id) else {
            debug!(unit_id = %unit_id, incident_id = %page.order.incident_id, "terminal not connected: page waits for it");
            return;
        };
        let (generation, tx) = (slot.0, slot.1.clone());
        drop(slot);
        match tx.try_send(Ok(page)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.pages_dropped_full.fetch_add(1, Ordering::Relaxed);
                warn!(unit_id = %unit_id, "terminal page queue full (terminals.page_buffer): page stays pending");
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
            let _ = slot.1.try_send(Err(AppError::unavailable("server shutting down: reconnect")));
        }
        self.slots.clear();
    }
}
