//! Closing incidents, and where a closed incident goes: out of the live state.
//!
//! The live map (`Dispatcher::incidents`) holds open incidents only, so
//! `limits.max_incidents` bounds the incidents being worked on, not every one
//! ever reported. When an incident closes, its final state goes to the
//! store's history ([`Effects::archive_incident`]) and to a bounded cache of
//! the most recently closed ones ([`RecentClosed`], `limits.
//! recent_closed_incidents`), which answers `GetIncident`, listings and, above
//! all, retried reports: a repeated `external_id` of a cached closed incident
//! is answered with it (`duplicate`), as before. When one drops out of the
//! cache its idempotency entry goes with it; a report with its `external_id`
//! after that is a new incident. Older closed incidents are the server's
//! history store's business.
//!
//! The cache sits behind one `Mutex`, the last lock of the lock order: it is
//! taken after an incident's entry where both are held, and no other lock is
//! taken while it is held. A closing incident enters the cache before it
//! leaves the live map, so a reader that looks live first, then cached,
//! always finds it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::MutexGuard;

use dashmap::mapref::entry::Entry;

use super::{Dispatcher, Page};
use crate::effects::{Effects, Event, EventKind};
use crate::error::DispatchError;
use crate::incident::{Incident, IncidentStatus, TierState, Timestamp, incident_id_for, parse_incident_id};

/// The most recently closed incidents, at most `capacity`; the oldest
/// closed drops out when one more is added.
#[derive(Debug, Default)]
pub(super) struct RecentClosed {
    capacity: usize,
    by_seq: BTreeMap<u64, Incident>,
    /// Sequence numbers in the order they were added (closed), oldest first.
    order: VecDeque<u64>,
}

impl RecentClosed {
    pub(super) fn new(capacity: usize) -> Self {
        RecentClosed { capacity, by_seq: BTreeMap::new(), order: VecDeque::new() }
    }

    /// Adds (or replaces) a closed incident; returns the (seq, external_id)
    /// of those that dropped out, oldest first.
    pub(super) fn push(&mut self, incident: Incident) -> Vec<(u64, String)> {
        debug_assert_eq!(incident.status, IncidentStatus::Closed, "{} is not closed", incident.id);
        let seq = incident.seq;
        if self.by_seq.insert(seq, incident).is_none() {
            self.order.push_back(seq);
        }
        let mut dropped = Vec::new();
        while self.order.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.by_seq.remove(&oldest) {
                dropped.push((oldest, gone.external_id));
            }
        }
        debug_assert_eq!(self.order.len(), self.by_seq.len());
        dropped
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Incident> {
        self.by_seq.get(&seq)
    }

    pub(super) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequence numbers above `after`, ascending.
    pub(super) fn seqs_after(&self, after: u64) -> impl Iterator<Item = u64> + '_ {
        self.by_seq.range(after.saturating_add(1)..).map(|(seq, _)| *seq)
    }

    /// The cached incidents in the order they closed, oldest first.
    pub(super) fn oldest_first(&self) -> impl Iterator<Item = &Incident> + '_ {
        self.order.iter().filter_map(|seq| self.by_seq.get(seq))
    }
}

impl Dispatcher {
    pub(super) fn recent(&self) -> MutexGuard<'_, RecentClosed> {
        // A poisoned lock means a panic elsewhere; every change to the cache
        // is a whole insert or removal, so what it holds is still whole.
        self.closed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `f` of incident `seq`, open or recently closed; `f` back if neither.
    /// Looks live first: a closing incident is cached before it leaves the
    /// live map.
    pub(super) fn with_incident<T, F: FnOnce(&Incident) -> T>(&self, seq: u64, f: F) -> Result<T, F> {
        if let Some(incident) = self.incidents.get(&seq) {
            return Ok(f(&incident));
        }
        match self.recent().get(seq) {
            Some(incident) => Ok(f(incident)),
            None => Err(f),
        }
    }

    /// The refusal of an operation that needs `id` open: FAILED_PRECONDITION
    /// if it is a recently closed incident (`then` says what that means for
    /// the caller), NOT_FOUND otherwise.
    pub(crate) fn not_open(&self, id: &str, then: &str) -> DispatchError {
        let closed = parse_incident_id(id).is_some_and(|seq| self.recent().get(seq).is_some());
        if closed {
            DispatchError::FailedPrecondition(format!("incident {id} is CLOSED{then}"))
        } else {
            DispatchError::IncidentNotFound(id.to_string())
        }
    }

    /// An open incident, or one of the recently closed; any other id is
    /// `IncidentNotFound` (the server looks in its history then).
    pub fn get_incident(&self, id: &str) -> Result<Incident, DispatchError> {
        parse_incident_id(id)
            .and_then(|seq| self.with_incident(seq, Incident::clone).ok())
            .ok_or_else(|| DispatchError::IncidentNotFound(id.to_string()))
    }

    /// Open incidents at once: what `limits.max_incidents` bounds.
    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }

    /// Closed incidents held in the recent-closed cache.
    pub fn recent_closed_count(&self) -> usize {
        self.recent().len()
    }

    /// Incidents by sequence, oldest first: `Some(Open)` the open ones,
    /// `Some(Closed)` the recently closed ones (the cache; older history is
    /// the server's), `None` both. `page_token` is the previous page's
    /// `next_page_token`.
    ///
    /// Closed incidents leave the live map, so open sequence numbers are not
    /// dense: the open ones above the token are collected (a key each; their
    /// number is bounded by `max_incidents`) and ordered, and only the page's
    /// incidents are cloned.
    pub fn list_incidents(
        &self,
        status: Option<IncidentStatus>,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Incident>, DispatchError> {
        let after = match page_token {
            None => 0,
            Some(t) => {
                t.parse::<u64>().map_err(|_| DispatchError::invalid("page_token", "not a token this server issued"))?
            }
        };
        let mut seqs: Vec<u64> = Vec::new();
        if status != Some(IncidentStatus::Closed) {
            seqs.extend(self.incidents.iter().map(|entry| *entry.key()).filter(|seq| *seq > after));
        }
        if status != Some(IncidentStatus::Open) {
            seqs.extend(self.recent().seqs_after(after).take(page_size.saturating_add(1)));
        }
        seqs.sort_unstable();
        seqs.dedup(); // one closing right now is in both
        let more = seqs.len() > page_size;
        seqs.truncate(page_size);
        let items: Vec<Incident> = seqs
            .iter()
            .filter_map(|seq| self.with_incident(*seq, Incident::clone).ok())
            .filter(|incident| status.is_none_or(|s| incident.status == s))
            .collect();
        let next_page_token = if more { seqs.last().map(|seq| seq.to_string()) } else { None };
        Ok(Page { items, next_page_token })
    }

    /// Closes an incident and releases its units: a unit still PAGED goes back
    /// to AVAILABLE at once; one EN_ROUTE or ON_SCENE becomes RETURNING until it
    /// reports AVAILABLE (or `return_to_available_s` passes). Tiers neither met
    /// nor breached are CANCELLED, and every timer of the incident becomes a
    /// no-op. The `IncidentClosed` event says `reason` ("closed" if empty).
    ///
    /// The closed incident then leaves the live state: it goes to the
    /// recent-closed cache and to the store's history through
    /// [`Effects::archive_incident`] (instead of `store_incident`, for this
    /// final state). Closing a recently closed incident returns it unchanged;
    /// any other id is `IncidentNotFound`.
    pub fn close_incident(
        &self,
        id: &str,
        reason: &str,
        now: Timestamp,
        fx: &dyn Effects,
    ) -> Result<Incident, DispatchError> {
        let not_found = || DispatchError::IncidentNotFound(id.to_string());
        let seq = parse_incident_id(id).ok_or_else(not_found)?;
        let mut entry = match self.incidents.entry(seq) {
            Entry::Occupied(entry) => entry,
            Entry::Vacant(slot) => {
                drop(slot);
                return self.recent().get(seq).cloned().ok_or_else(not_found);
            }
        };
        let incident = entry.get_mut();
        debug_assert_eq!(incident.status, IncidentStatus::Open, "closed incident {id} in the live state");
        self.close_in_place(incident, reason, now, fx);
        self.sync_waiting(incident);
        // Cached, then archived, then out of the live map, all under the
        // incident's lock: nobody sees it closed in the live map, or nowhere.
        let dropped = self.recent().push(incident.clone());
        fx.archive_incident(incident);
        let closed = entry.remove();
        self.forget_external_ids(dropped);
        // Its units are free: the waiting slots of other incidents take them.
        self.offer_freed(now, fx);
        Ok(closed)
    }

    /// Releases every unit of `incident`, cancels its open tiers, and marks it
    /// CLOSED at `now`, with its event (the caller holds its lock).
    fn close_in_place(&self, incident: &mut Incident, reason: &str, now: Timestamp, fx: &dyn Effects) {
        let id = incident.id.clone();
        for tier in &mut incident.tiers {
            for a in &mut tier.assignments {
                if a.is_active() {
                    self.release_assignment(&id, &incident.grid_id, a, now, "incident closed", None, fx);
                }
            }
            if matches!(tier.state, TierState::Paging | TierState::Short | TierState::Escalated) {
                tier.state = TierState::Cancelled;
            }
        }
        incident.status = IncidentStatus::Closed;
        incident.closed_at = Some(now);
        let detail = if reason.is_empty() { "closed" } else { reason };
        fx.emit(Event::new(EventKind::IncidentClosed, now).incident(&id, &incident.grid_id).detail(detail));
    }

    /// Drops the idempotency entries of incidents that left the recent-closed
    /// cache. Called with no lock held (the external-id entries come first in
    /// the lock order); an entry that names a newer incident meanwhile (a
    /// report of the same `external_id` after it dropped out) is kept.
    pub(super) fn forget_external_ids(&self, dropped: Vec<(u64, String)>) {
        for (seq, external_id) in dropped {
            self.external_ids.remove_if(&external_id, |_, named| *named == seq);
        }
    }

    /// Loads a journal's incidents into a new dispatcher: `open` go live,
    /// except those CLOSED (a journal written before closed incidents left the
    /// live state), which join `recent_closed` (oldest first) in the cache,
    /// before them, by sequence; those are returned, for the server to
    /// archive. Rebuilds the idempotency index and the incident sequence.
    pub(super) fn load_incidents(
        &self,
        open: Vec<Incident>,
        recent_closed: Vec<Incident>,
    ) -> Result<Vec<Incident>, DispatchError> {
        let check = |incident: &Incident| {
            if incident.id != incident_id_for(incident.seq) {
                return Err(DispatchError::invalid(
                    "journal",
                    format!("incident {} has sequence {}", incident.id, incident.seq),
                ));
            }
            Ok(incident.seq)
        };
        let mut last_seq = 0;
        let mut closed_found_live = Vec::new();
        for incident in open {
            last_seq = last_seq.max(check(&incident)?);
            match incident.status {
                IncidentStatus::Open => drop(self.incidents.insert(incident.seq, incident)),
                IncidentStatus::Closed => closed_found_live.push(incident),
            }
        }
        closed_found_live.sort_by_key(|i| i.seq);
        let mut cache = RecentClosed::new(self.limits.recent_closed_incidents);
        for incident in closed_found_live.iter().cloned().chain(recent_closed) {
            last_seq = last_seq.max(check(&incident)?);
            if incident.status != IncidentStatus::Closed {
                return Err(DispatchError::invalid(
                    "journal",
                    format!("recently closed incident {} is open", incident.id),
                ));
            }
            // Closed is final: a stale open copy does not come back to life.
            self.incidents.remove(&incident.seq);
            cache.push(incident);
        }
        // Oldest first, the open last: an external id used again after its
        // incident closed names the newest.
        for incident in cache.oldest_first() {
            self.external_ids.insert(incident.external_id.clone(), incident.seq);
        }
        for incident in self.incidents.iter() {
            self.external_ids.insert(incident.external_id.clone(), incident.seq);
        }
        *self.recent() = cache;
        self.last_seq.store(last_seq, std::sync::atomic::Ordering::Relaxed);
        Ok(closed_found_live)
    }

    /// The recent-closed cache's part of [`Dispatcher::check_invariants`]:
    /// within its bound, every cached incident closed and holding no unit,
    /// and the idempotency index naming only held incidents.
    pub(super) fn check_closed_invariants(&self) -> Result<(), String> {
        // A copy, so no other lock is taken while the cache's is held.
        let (cached, capacity): (Vec<Incident>, usize) = {
            let recent = self.recent();
            (recent.oldest_first().cloned().collect(), recent.capacity())
        };
        if cached.len() > capacity {
            return Err(format!("{} closed incidents cached, bound {capacity}", cached.len()));
        }
        let mut cached_ids = std::collections::HashMap::new();
        for incident in &cached {
            if incident.status != IncidentStatus::Closed || self.incidents.contains_key(&incident.seq) {
                return Err(format!("cached incident {} is {:?} or still live", incident.id, incident.status));
            }
            if let Some(a) = incident.tiers.iter().flat_map(|t| &t.assignments).find(|a| a.is_active()) {
                return Err(format!("closed incident {} still holds unit {}", incident.id, a.unit_id));
            }
            if self.external_ids.get(&incident.external_id).is_none_or(|named| *named < incident.seq) {
                return Err(format!("closed incident {} lost its external id", incident.id));
            }
            cached_ids.insert(incident.seq, incident.external_id.as_str());
        }
        for entry in self.external_ids.iter() {
            let seq = *entry.value();
            let live = self.incidents.get(&seq).map(|i| i.external_id == *entry.key());
            let cached = cached_ids.get(&seq).map(|external_id| external_id == entry.key());
            if live.or(cached) != Some(true) {
                return Err(format!("external id {} names {}, which is not held", entry.key(), incident_id_for(seq)));
            }
        }
        Ok(())
    }
}
