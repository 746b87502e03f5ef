//! The application layer: every operation lastmile offers, in domain types,
//! for any transport.
//!
//! Each operation takes the [`Caller`] (who the adapter authenticated) and a
//! request in the application's own types, checks who may call it
//! ([`crate::auth`]), validates every field against the configured limits
//! ([`validate`]), runs the core inside one unit of work ([`work`]: effects
//! to the sinks, records to the journal, answered once durable), and answers
//! the core's values or one [`AppError`]. The gRPC adapter
//! ([`crate::grpc`]) and the HTTP adapter ([`crate::http`]) are siblings
//! over it: neither calls the other, and nothing here knows tonic, axum,
//! protobuf or JSON.
//!
//! # Layout
//!
//! - [`incidents`]: report, get, list, close, preview, assign, the
//!   timeline, confirming an arrival.
//! - [`units`]: list, get, upsert, set status, release; ping.
//! - [`terminal`]: what responders' terminals do: subscribe to pages,
//!   acknowledge, report status and positions.
//! - [`feed`]: watching the live feed, with its policy (how many watchers,
//!   how far behind, how long stalled).
//! - [`validate`]: the request limits, once.
//! - [`work`]: the unit of work.
//! - [`timers`]: the one timer task.
//! - [`retention`]: the history retention task.
//! - [`positions`]: position fixes, journaled coalesced.

pub mod admission;
pub mod eta;
pub mod feed;
pub mod incidents;
pub mod positions;
pub mod reports;
pub mod retention;
pub mod terminal;
pub mod timers;
pub mod units;
pub mod validate;
pub mod work;

use std::sync::Arc;

use lastmile_core::{Dispatcher, Timestamp};
use tokio_util::sync::CancellationToken;

pub use crate::auth::{Caller, Operation};
use crate::clock::Clock;
use crate::config::LastmileConfig;
pub use crate::error::{AppError, ErrorCode};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::sinks::Sinks;

/// The application: the dispatcher and everything an operation needs.
pub struct App {
    pub dispatcher: Arc<Dispatcher>,
    /// Feed, terminal page queues, timer channel.
    pub sinks: Arc<Sinks>,
    pub clock: Clock,
    pub config: Arc<LastmileConfig>,
    /// Cancelled at shutdown: ends live streams (feed watchers, terminals) so
    /// the drain is not held open by them.
    pub stop: CancellationToken,
    /// None when the journal backend is memory.
    pub journal: Option<Arc<Journal>>,
    /// Closed incidents and their timelines.
    pub history: Arc<crate::history::History>,
    /// Units whose last position fix is applied but not yet journaled
    /// (see [`positions`]).
    pub unjournaled_positions: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Who may call what.
    pub auth: crate::auth::Auth,
    /// Latencies and refusals.
    pub metrics: Arc<Metrics>,
    /// The self-calibrating ETA: learns from every close.
    pub eta: eta::Eta,
    /// Work in flight, by class.
    pub admission: admission::Admission,
}

impl App {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The caller of an operation, by its `authorization` value: what every
    /// adapter does first.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AppError> {
        self.auth.authenticate(authorization)
    }

    /// May `caller` call `op`, and is there room for it now? The place is
    /// held until the returned guard drops (when the operation answers).
    pub(crate) fn authorize(&self, caller: &Caller, op: Operation) -> Result<admission::Admitted, AppError> {
        self.auth.authorize(caller, op)?;
        self.admission.admit(admission::Class::of(op))
    }

    /// Whether the server can take changes: not shutting down, journal not
    /// failed (what `/healthz` and gRPC health report).
    pub fn serving(&self) -> bool {
        !self.stop.is_cancelled() && self.journal.as_ref().is_none_or(|j| j.failure().is_none())
    }

    /// Waits until every change sent to the journal so far is durable (at
    /// once with the memory backend).
    pub async fn settle(&self) {
        if let Some(journal) = &self.journal {
            let _ = crate::journal::JournalOp::internal(journal).durable().await;
        }
    }

    /// `Ping`: answers as soon as the caller may call it.
    pub fn ping(&self, caller: &Caller) -> Result<(), AppError> {
        self.authorize(caller, Operation::Ping).map(drop)
    }
}
