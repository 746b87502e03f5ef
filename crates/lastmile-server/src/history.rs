//! Closed incidents and their timelines, apart from the live state.
//!
//! An incident that closes leaves the dispatcher's live state (the core
//! keeps only the most recent few, for idempotency) and the journal moves it
//! to its history table in the commit that closes it. Here it is read back
//! on demand: from a bounded in-memory map of the most recently closed
//! (`[history] memory_incidents`: with the memory backend that map is the
//! whole history; with SQLite it covers the moment between a close and its
//! commit), then from the store's own read connections.
//!
//! Reads from the store are blocking (disk): [`crate::app`] runs them with
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lastmile_core::outcome::{Outcome, TimelineFact};
use lastmile_core::{Incident, Tier, Timestamp};
use lastmile_store::{ClosedQuery, HistoryReader};

use crate::error::AppError;
use crate::sinks::TimelineEntry;

/// A closed incident with its timeline and outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    pub incident: Incident,
    pub timeline: Vec<TimelineEntry>,
    pub outcome: Outcome,
}

impl Closed {
    /// `unit_tier`: a unit's own tier, where known (see [`Outcome::of`]).
    pub fn new(incident: Incident, timeline: Vec<TimelineEntry>, unit_tier: impl Fn(&str) -> Option<Tier>) -> Closed {
        let outcome = outcome_of(&incident, &timeline, unit_tier);
        Closed { incident, timeline, outcome }
    }
}

/// The outcome of a closed incident from its final state and timeline.
pub fn outcome_of(
    incident: &Incident,
    timeline: &[TimelineEntry],
    unit_tier: impl Fn(&str) -> Option<Tier>,
) -> Outcome {
    let facts: Vec<TimelineFact> =
        timeline.iter().map(|e| TimelineFact { kind: e.kind, tier: e.tier, at: e.at }).collect();
    Outcome::of(incident, &facts, unit_tier)
}

pub struct History {
    /// The most recently closed, by sequence number; the lowest goes when
    /// one more than `memory_incidents` is added. Held for a map insert or
    /// lookup (called under an incident's lock: lock order incident ->
    /// history, nothing inside).
    recent: Mutex<BTreeMap<u64, Arc<Closed>>>,
    memory_incidents: usize,
    /// None with the memory backend.
    reader: Option<Arc<dyn HistoryReader>>,
    /// Called before each read of the store: makes every commit answered
    /// so far readable (the journal's [`crate::journal::Journal::settle`];
    /// none offline, where nothing is being written).
    settle: Option<Settle>,
}

/// See [`History::new`].
pub type Settle = Box<dyn Fn() -> Result<(), AppError> + Send + Sync>;

impl History {
    /// `settle` runs before each read of `reader`.
    pub fn new(memory_incidents: usize, reader: Option<Arc<dyn HistoryReader>>, settle: Option<Settle>) -> Self {
        History { recent: Mutex::new(BTreeMap::new()), memory_incidents: memory_incidents.max(1), reader, settle }
    }

    /// The store's reader, with everything answered so far readable in it.
    fn store(&self) -> Result<Option<&Arc<dyn HistoryReader>>, AppError> {
        let Some(reader) = &self.reader else { return Ok(None) };
        if let Some(settle) = &self.settle {
            settle()?;
        }
        Ok(Some(reader))
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Closed>>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a closed incident (the journal stores it on its own).
    pub(crate) fn remember(&self, closed: Closed) {
        let mut recent = self.recent();
        recent.insert(closed.incident.seq, Arc::new(closed));
        while recent.len() > self.memory_incidents {
            recent.pop_first();
        }
    }

    /// How many closed incidents are held in memory.
    pub fn in_memory(&self) -> usize {
        self.recent().len()
    }

    /// Whether there is more history than memory holds.
    pub fn is_durable(&self) -> bool {
        self.reader.is_some()
    }

    /// A closed incident (blocking: may read the store).
    pub fn incident(&self, seq: u64) -> Result<Option<Incident>, AppError> {
        if let Some(closed) = self.recent().get(&seq) {
            return Ok(Some(closed.incident.clone()));
        }
        let Some(reader) = self.store()? else { return Ok(None) };
        reader.incident(seq).map_err(store_error)?.map(|body| parse(&body, "incident")).transpose()
    }

    /// A closed incident's timeline (blocking); `None` if it is not in
    /// history. (A closed incident whose timeline is empty has `Some([])`.)
    pub fn timeline(&self, seq: u64) -> Result<Option<Vec<TimelineEntry>>, AppError> {
        if let Some(closed) = self.recent().get(&seq) {
            return Ok(Some(closed.timeline.clone()));
        }
        let Some(reader) = self.store()? else { return Ok(None) };
        // Each row holds one operation's entries (a JSON array).
        let rows = reader.timeline(seq).map_err(store_error)?;
        // No row: in history with an empty timeline (migrated), or not there.
        if rows.is_empty() && reader.incident(seq).map_err(store_error)?.is_none() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for body in &rows {
            entries.extend(parse::<Vec<TimelineEntry>>(body, "timeline row")?);
        }
        Ok(Some(entries))
    }

    /// Closed incidents reported in `[from, to)` with a sequence number
    /// above `after_seq`, by sequence number, at most `limit` (blocking).
    pub fn closed(
        &self,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Incident>, AppError> {
        let within = |i: &Incident| from.is_none_or(|f| i.reported_at >= f) && to.is_none_or(|t| i.reported_at < t);
        let Some(reader) = self.store()? else {
            let recent = self.recent();
            let found = recent.range(after_seq.saturating_add(1)..).map(|(_, c)| &c.incident).filter(|i| within(i));
            return Ok(found.take(limit).cloned().collect());
        };
        let query = ClosedQuery { from_ms: from.map(|t| t.unix_ms), to_ms: to.map(|t| t.unix_ms), after_seq, limit };
        let rows = reader.closed(&query).map_err(store_error)?;
        rows.iter().map(|(_, body)| parse(body, "incident")).collect()
    }

    /// The outcomes of the closed incidents reported in `[from_ms, to_ms)`,
    /// by report time (blocking). Closed incidents archived by a journal
    /// that kept no outcomes have theirs worked out from their final state
    /// and timeline (their units' own tiers taken as their slots' tiers).
    pub fn outcomes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Outcome>, AppError> {
        let in_memory: Vec<Outcome> = {
            let recent = self.recent();
            let within = |o: &&Outcome| o.reported_at_ms >= from_ms && o.reported_at_ms < to_ms;
            recent.values().map(|c| &c.outcome).filter(within).cloned().collect()
        };
        let Some(reader) = self.store()? else {
            let mut all = in_memory;
            all.sort_by_key(|o| (o.reported_at_ms, o.seq));
            return Ok(all);
        };
        let mut all = Vec::new();
        for body in reader.outcomes(from_ms, to_ms).map_err(store_error)? {
            all.push(parse::<Outcome>(&body, "outcome")?);
        }
        for (seq, body) in reader.without_outcome(from_ms, to_ms).map_err(store_error)? {
            let incident: Incident = parse(&body, "incident")?;
            let timeline = self.timeline(seq)?.unwrap_or_default();
            all.push(outcome_of(&incident, &timeline, |_| None));
        }
        // Closed a moment ago: maybe not committed yet.
        let stored: std::collections::HashSet<u64> = all.iter().map(|o| o.seq).collect();
        all.extend(in_memory.into_iter().filter(|o| !stored.contains(&o.seq)));
        all.sort_by_key(|o| (o.reported_at_ms, o.seq));
        Ok(all)
    }

    /// The outcomes of the `limit` most recently closed incidents, most
    /// recent first (blocking).
    pub fn recent_outcomes(&self, limit: usize) -> Result<Vec<Outcome>, AppError> {
        let Some(reader) = self.store()? else {
            let mut all: Vec<Outcome> = self.recent().values().map(|c| c.outcome.clone()).collect();
            all.sort_by_key(|o| std::cmp::Reverse((o.closed_at_ms, o.seq)));
            all.truncate(limit);
            return Ok(all);
        };
        reader.recent_outcomes(limit).map_err(store_error)?.iter().map(|b| parse(b, "outcome")).collect()
    }

    /// Drops the closed incidents held in memory that closed before
    /// `closed_before` (the memory backend's retention); how many.
    pub(crate) fn forget_before(&self, closed_before: Timestamp) -> usize {
        let mut recent = self.recent();
        let before = recent.len();
        recent.retain(|_, c| c.incident.closed_at.is_none_or(|at| at >= closed_before));
        before - recent.len()
    }
}

fn store_error(e: lastmile_store::StoreError) -> AppError {
    AppError::unavailable(format!("history: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| {
        AppError::new(crate::error::ErrorCode::DataLoss, format!("history: a stored {what} cannot be read: {e}"))
    })
}
