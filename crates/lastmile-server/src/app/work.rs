//! The unit of work: one operation's effects delivered to the sinks (feed,
//! pages, timers, the incident's timeline, history) and its records sent to
//! the journal, answered only once they are durable.
//!
//! The core calls [`Work`] (as its `Effects`) while holding an incident's or
//! unit's lock, so every method here returns at once: the sinks never wait,
//! and the journal only queues the record for its writer thread.

use lastmile_core::effects::{Effects, Event, PageOrder, Timer};
use lastmile_core::incident::parse_incident_id;
use lastmile_core::{Incident, Unit};

use super::App;
use crate::error::AppError;
use crate::history::{Closed, History};
use crate::journal::JournalOp;
use crate::sinks::{SERVER_ACTOR, Sinks, TimelineEntry};

/// What the core is handed for one operation.
pub struct Work<'a> {
    app: &'a App,
    sinks: &'a Sinks,
    history: &'a History,
    /// Who asked for the change: in every timeline entry it makes.
    actor: &'a str,
    /// None when the journal backend is memory (nothing is serialised then).
    journal: Option<JournalOp>,
    /// The operation's timeline entries, journaled together when it ends:
    /// one row per incident per operation, not one per entry. (Numbered as
    /// they happen, under the incident's lock, so an operation that ends
    /// later with lower numbers still lands in order.)
    entries: std::sync::Mutex<Vec<(u64, TimelineEntry)>>,
    /// Incidents the operation closed, with their timelines: their outcome
    /// is worked out when it ends (it reads units, which the core may hold
    /// locked while it archives).
    archived: std::sync::Mutex<Vec<(Incident, Vec<TimelineEntry>)>>,
}

impl<'a> Work<'a> {
    fn new(app: &'a App, actor: &'a str, journal: Option<JournalOp>) -> Self {
        Work {
            app,
            sinks: &app.sinks,
            history: &app.history,
            actor,
            journal,
            entries: Default::default(),
            archived: Default::default(),
        }
    }

    /// Sends the buffered timeline entries (one record per incident) and
    /// moves the incidents it closed to history with their outcomes (which
    /// the ETA calibration learns from), then hands back the journal
    /// operation to end.
    fn end(self) -> Option<JournalOp> {
        let archived = self.archived.into_inner().unwrap_or_else(|p| p.into_inner());
        for (incident, timeline) in archived {
            let dispatcher = &self.app.dispatcher;
            let closed = Closed::new(incident, timeline, |id| dispatcher.unit_tier(id));
            if let Some(op) = &self.journal {
                op.store_archive(&closed.incident, &closed.outcome);
            }
            self.app.eta.observe(&closed.outcome, self.journal.as_ref(), dispatcher);
            self.history.remember(closed);
        }
        let op = self.journal?;
        let mut entries = self.entries.into_inner().unwrap_or_else(|p| p.into_inner());
        entries.sort_by_key(|(seq, e)| (*seq, e.n));
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            let entries: Vec<&TimelineEntry> = group.iter().map(|(_, e)| e).collect();
            op.store_timeline(group[0].0, &entries);
        }
        Some(op)
    }
}

impl App {
    /// Runs a state change: waits (bounded) for a place in the journal's
    /// queue, applies `change` with the operation's effects, and hands back
    /// its result once everything it changed is durable.
    /// `actor` (the caller's name) is recorded in every timeline entry.
    pub(crate) async fn change<T>(&self, actor: &str, change: impl FnOnce(&Work) -> T) -> Result<T, AppError> {
        let journal = match &self.journal {
            Some(journal) => Some(JournalOp::begin(journal).await?),
            None => None,
        };
        let work = Work::new(self, actor, journal);
        let result = change(&work);
        if let Some(op) = work.end() {
            op.durable().await?;
        }
        Ok(result)
    }

    /// A change applied in memory and not journaled by itself (a position
    /// fix: see `positions`); its feed events go out as usual.
    pub(crate) fn apply_unjournaled<T>(&self, actor: &str, change: impl FnOnce(&Work) -> T) -> T {
        let work = Work::new(self, actor, None);
        let result = change(&work);
        work.end();
        result
    }

    /// A change the server makes itself (a timer firing): never refused,
    /// never waits for durability (nobody is waiting for an answer).
    pub(crate) fn internal_change(&self, change: impl FnOnce(&Work)) {
        let journal = self.journal.as_ref().map(JournalOp::internal);
        let work = Work::new(self, SERVER_ACTOR, journal);
        change(&work);
        if let Some(op) = work.end() {
            op.finish();
        }
    }
}

impl Effects for Work<'_> {
    /// To the feed, and (an incident's event) to its timeline, journaled
    /// in this operation's commit.
    fn emit(&self, event: Event) {
        if let Some(seq) = event.incident_id.as_deref().and_then(parse_incident_id)
            && let Some(entry) = self.sinks.timelines.append(seq, &event, self.actor)
            && self.journal.is_some()
        {
            self.entries.lock().unwrap_or_else(|p| p.into_inner()).push((seq, entry));
        }
        self.sinks.emit(event);
    }
    /// A closed incident leaves the live state: its final state and
    /// timeline go to history (and the journal moves it there).
    fn archive_incident(&self, incident: &Incident) {
        let timeline = self.sinks.timelines.take(incident.seq);
        self.archived.lock().unwrap_or_else(|p| p.into_inner()).push((incident.clone(), timeline));
    }
    fn page(&self, page: PageOrder) {
        self.sinks.deliver(page);
    }
    fn arm(&self, timer: Timer) {
        self.sinks.arm(timer);
    }
    fn store_incident(&self, incident: &Incident) {
        if let Some(op) = &self.journal {
            op.store_incident(incident);
        }
    }
    fn store_unit(&self, unit: &Unit) {
        if let Some(op) = &self.journal {
            op.store_unit(unit);
        }
    }
}
