//! The strongest double-assignment check: replay the live feed. Every page
//! (UNIT_PAGED / UNIT_REPAGED) makes the incident the unit's holder; a
//! release (UNIT_RELEASED, UNIT_DECLINED, UNIT_TIMED_OUT) ends it. A page of a
//! unit another incident still holds is a double assignment, unless the older
//! holder's release follows within [`INVERSION_WINDOW_EVENTS`] events: then
//! the unit was released first and the two events were published in the
//! other order (two incidents' locks, one feed), which is counted apart.

use std::collections::{BTreeMap, HashMap, HashSet};

use lastmile_proto::v1 as pb;
use tokio::time::{Duration, Instant};

/// How far (in sequence numbers) a release may trail the conflicting page and
/// still count as a publication-order inversion rather than a double assignment.
pub const INVERSION_WINDOW_EVENTS: u64 = 64;
/// Violations kept verbatim for the report (all are counted).
const KEPT: usize = 20;

#[derive(Default)]
pub struct Replay {
    holder: HashMap<String, String>,
    closed: HashSet<String>,
    /// (unit, older holder, newer incident, seq of the newer page).
    pending: Vec<(String, String, String, u64)>,
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Sequence numbers skipped (events the watcher never saw).
    pub gaps: u64,
    pub by_type: BTreeMap<String, u64>,
    pub violations: u64,
    pub violation_examples: Vec<String>,
    pub inversions: u64,
    /// A release or status event for a unit the replay did not see paged to
    /// that incident (only expected for state older than the subscription).
    pub unmatched: u64,
    /// Why the feed ended early, if it did (e.g. RESOURCE_EXHAUSTED).
    pub cut_off: Option<String>,
}

impl Replay {
    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.violation_examples.len() < KEPT {
            self.violation_examples.push(what);
        }
    }

    pub fn apply(&mut self, e: &pb::DispatchEvent) {
        if self.events == 0 {
            self.first_seq = e.seq;
        } else if e.seq > self.last_seq + 1 {
            self.gaps += e.seq - self.last_seq - 1;
        }
        self.events += 1;
        self.last_seq = e.seq;
        let kind = e.r#type();
        *self.by_type.entry(kind.as_str_name().trim_start_matches("EVENT_TYPE_").to_string()).or_default() += 1;
        // Pending conflicts whose window passed without the release: real.
        let seq = e.seq;
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(_, _, _, at)| seq > at + INVERSION_WINDOW_EVENTS);
        self.pending = kept;
        for (unit, older, newer, at) in expired {
            self.violation(format!("unit {unit} paged for {newer} (seq {at}) while held by {older}"));
        }
        let (unit, incident) = (&e.unit_id, &e.incident_id);
        match kind {
            pb::EventType::UnitPaged | pb::EventType::UnitRepaged => {
                if self.closed.contains(incident) {
                    self.violation(format!("unit {unit} paged for closed incident {incident} (seq {seq})"));
                }
                if let Some(older) = self.holder.insert(unit.clone(), incident.clone()) {
                    if &older == incident {
                        self.violation(format!("unit {unit} paged twice for {incident} (seq {seq})"));
                    } else {
                        self.pending.push((unit.clone(), older, incident.clone(), seq));
                    }
                }
            }
            pb::EventType::UnitReleased | pb::EventType::UnitDeclined | pb::EventType::UnitTimedOut => {
                if self.holder.get(unit) == Some(incident) {
                    self.holder.remove(unit);
                } else if let Some(i) = self.pending.iter().position(|(u, older, _, _)| u == unit && older == incident)
                {
                    self.pending.swap_remove(i);
                    self.inversions += 1;
                } else {
                    self.unmatched += 1;
                }
            }
            pb::EventType::UnitAcknowledged | pb::EventType::UnitEnRoute | pb::EventType::UnitOnScene
                if self.holder.get(unit) != Some(incident) =>
            {
                self.unmatched += 1;
            }
            pb::EventType::IncidentClosed => {
                self.closed.insert(incident.clone());
                let still: Vec<String> =
                    self.holder.iter().filter(|(_, i)| *i == incident).map(|(u, _)| u.clone()).collect();
                for u in still {
                    self.holder.remove(&u);
                    self.violation(format!("closed incident {incident} still holds unit {u} (seq {seq})"));
                }
            }
            _ => {}
        }
    }

    /// End of the feed: conflicts still waiting for a release are real.
    pub fn finish(&mut self) {
        for (unit, older, newer, at) in std::mem::take(&mut self.pending) {
            self.violation(format!("unit {unit} paged for {newer} (seq {at}) while held by {older}"));
        }
    }
}

/// Reads the feed into a [`Replay`] until the stream ends, fails, or `stop`
/// is set and the feed has been quiet for `quiet` (so the tail is read).
pub async fn follow(
    mut stream: tonic::Streaming<pb::DispatchEvent>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    quiet: Duration,
    max_tail: Duration,
) -> Replay {
    let mut replay = Replay::default();
    let mut stop_at: Option<Instant> = None;
    loop {
        let next = match stop_at {
            None => tokio::select! {
                next = stream.message() => next,
                _ = stop.changed() => {
                    stop_at = Some(Instant::now() + max_tail);
                    continue;
                }
            },
            Some(tail_end) => {
                let until = (Instant::now() + quiet).min(tail_end);
                match tokio::time::timeout_at(until, stream.message()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        match next {
            Ok(Some(event)) => replay.apply(&event),
            Ok(None) => break,
            Err(status) if status.code() == tonic::Code::Unavailable && stop_at.is_some() => break, // shutdown
            Err(status) => {
                replay.cut_off = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        }
    }
    replay.finish();
    replay
}
