//! The timelines of the open incidents: every state change of each, in
//! order, with who caused it. Appended by the unit of work as the core emits
//! its events (under the incident's lock, so in the order of the changes),
//! journaled in the same commit, and handed to history with the incident
//! when it closes.

use dashmap::DashMap;
use lastmile_core::effects::{Event, EventKind};
use lastmile_core::{LatLng, Tier, Timestamp, UnitStatus};
use serde::{Deserialize, Serialize};

/// Who caused a change the server made itself (a timer).
pub const SERVER_ACTOR: &str = "lastmile";

/// One state change of an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// 0, 1, 2, ... within the incident.
    pub n: u32,
    pub at: Timestamp,
    #[serde(with = "kind_name")]
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_status: Option<UnitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<LatLng>,
    #[serde(default)]
    pub detail: String,
    /// The caller's token name (`anyone` with auth off), or [`SERVER_ACTOR`].
    pub actor: String,
}

impl TimelineEntry {
    fn of(n: u32, event: &Event, actor: &str) -> Self {
        TimelineEntry {
            n,
            at: event.at,
            kind: event.kind,
            unit_id: event.unit_id.clone(),
            tier: event.tier,
            attempt: event.attempt,
            unit_status: event.unit_status,
            position: event.position,
            detail: event.detail.clone(),
            actor: actor.to_string(),
        }
    }
}

/// The open incidents' timelines, by incident sequence number.
pub struct Timelines {
    /// A shard lock is held to push one entry (the core holds the
    /// incident's lock meanwhile: lock order incident -> timeline shard).
    open: DashMap<u64, Vec<TimelineEntry>>,
    /// `limits.max_timeline_entries`: entries kept per incident; beyond it
    /// changes still reach the feed but not the timeline (counted).
    max_entries: usize,
    pub(crate) dropped: std::sync::atomic::AtomicU64,
}

impl Timelines {
    pub fn new(max_entries: usize) -> Self {
        Timelines { open: DashMap::new(), max_entries, dropped: Default::default() }
    }

    /// Appends `event` to its incident's timeline; the entry, or `None` when
    /// the timeline is full.
    pub(crate) fn append(&self, incident_seq: u64, event: &Event, actor: &str) -> Option<TimelineEntry> {
        let mut entries = self.open.entry(incident_seq).or_default();
        if entries.len() >= self.max_entries {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        let entry = TimelineEntry::of(entries.len() as u32, event, actor);
        entries.push(entry.clone());
        Some(entry)
    }

    /// An open incident's timeline so far.
    pub fn get(&self, incident_seq: u64) -> Option<Vec<TimelineEntry>> {
        self.open.get(&incident_seq).map(|e| e.clone())
    }

    /// The timeline of an incident that closed (it goes to history).
    pub(crate) fn take(&self, incident_seq: u64) -> Vec<TimelineEntry> {
        self.open.remove(&incident_seq).map(|(_, e)| e).unwrap_or_default()
    }

    /// At start: the recovered timelines of the open incidents.
    pub(crate) fn restore(&self, incident_seq: u64, entries: Vec<TimelineEntry>) {
        self.open.insert(incident_seq, entries);
    }
}

/// Event kinds by their stored names (the feed's type names): the journal's
/// timeline rows stay readable whatever the enum's order.
mod kind_name {
    use lastmile_core::effects::EventKind;
    use serde::{Deserialize, Deserializer, Serializer};

    const NAMES: [(EventKind, &str); 19] = [
        (EventKind::IncidentReported, "INCIDENT_REPORTED"),
        (EventKind::IncidentClosed, "INCIDENT_CLOSED"),
        (EventKind::UnitPaged, "UNIT_PAGED"),
        (EventKind::UnitRepaged, "UNIT_REPAGED"),
        (EventKind::UnitAcknowledged, "UNIT_ACKNOWLEDGED"),
        (EventKind::UnitDeclined, "UNIT_DECLINED"),
        (EventKind::UnitTimedOut, "UNIT_TIMED_OUT"),
        (EventKind::UnitEnRoute, "UNIT_EN_ROUTE"),
        (EventKind::UnitOnScene, "UNIT_ON_SCENE"),
        (EventKind::UnitReleased, "UNIT_RELEASED"),
        (EventKind::TierShort, "TIER_SHORT"),
        (EventKind::TierMet, "TIER_MET"),
        (EventKind::TierBreached, "TIER_BREACHED"),
        (EventKind::TierEscalated, "TIER_ESCALATED"),
        (EventKind::UnitStatusChanged, "UNIT_STATUS_CHANGED"),
        (EventKind::UnitPosition, "UNIT_POSITION"),
        (EventKind::GridWorkerNotified, "GRID_WORKER_NOTIFIED"),
        (EventKind::UnitArrivalUnverified, "UNIT_ARRIVAL_UNVERIFIED"),
        (EventKind::ArrivalConfirmed, "ARRIVAL_CONFIRMED"),
    ];

    pub fn serialize<S: Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
        let name = NAMES.iter().find(|(k, _)| k == kind).map(|(_, n)| *n).unwrap_or("UNKNOWN");
        s.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EventKind, D::Error> {
        let name = String::deserialize(d)?;
        NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event kind {name:?}")))
    }

    #[test]
    fn every_kind_has_one_name() {
        let names: std::collections::HashSet<_> = NAMES.iter().map(|(_, n)| *n).collect();
        assert_eq!(names.len(), NAMES.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_numbered_bounded_and_round_trip() {
        let timelines = Timelines::new(2);
        let event = Event::new(EventKind::UnitOnScene, Timestamp::from_unix_ms(5)).unit("T1").tier(Tier::T3);
        let first = timelines.append(7, &event, "desk").unwrap();
        assert_eq!((first.n, first.actor.as_str()), (0, "desk"));
        assert_eq!(timelines.append(7, &event, SERVER_ACTOR).unwrap().n, 1);
        assert!(timelines.append(7, &event, "desk").is_none(), "full");
        let json = serde_json::to_string(&first).unwrap();
        assert!(json.contains("\"UNIT_ON_SCENE\""), "{json}");
        assert_eq!(serde_json::from_str::<TimelineEntry>(&json).unwrap(), first);
        assert_eq!(timelines.take(7).len(), 2);
        assert!(timelines.get(7).is_none());
    }
}
