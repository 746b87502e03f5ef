//! A count of everything the dispatcher holds, by the labels operators
//! watch (what `/metrics` exports). Read shard by shard (a shard's read lock
//! is held while that shard is counted, so a write to it waits that long),
//! so it is a near-instant picture, not one atomic snapshot. Its cost grows
//! with the incidents held: the server bounds how often it runs
//! (`metrics::MIN_SCRAPE_INTERVAL`).

use std::collections::BTreeMap;

use super::Dispatcher;
use crate::incident::{IncidentStatus, TierState};
use crate::tier::Tier;
use crate::unit::UnitStatus;

/// How a tier ended up (or stands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TierOutcome {
    /// Every required unit reserved within target; pages out.
    WithinTarget,
    Short,
    Met,
    Breached,
    Escalated,
    /// Closed before it had an outcome.
    Cancelled,
    /// The tier is not for the incident (see `tier::Applies`).
    NotApplicable,
}

impl TierOutcome {
    pub fn name(self) -> &'static str {
        match self {
            TierOutcome::WithinTarget => "within_target",
            TierOutcome::Short => "short",
            TierOutcome::Met => "met",
            TierOutcome::Breached => "breached",
            TierOutcome::Escalated => "escalated",
            TierOutcome::Cancelled => "cancelled",
            TierOutcome::NotApplicable => "not_applicable",
        }
    }

    fn of(state: TierState) -> Self {
        match state {
            TierState::Paging => TierOutcome::WithinTarget,
            TierState::Short => TierOutcome::Short,
            TierState::Met => TierOutcome::Met,
            TierState::Breached => TierOutcome::Breached,
            TierState::Escalated => TierOutcome::Escalated,
            TierState::Cancelled => TierOutcome::Cancelled,
            TierState::NotApplicable => TierOutcome::NotApplicable,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    pub incidents_open: u64,
    /// Closed incidents in the recent-closed cache (at most
    /// `limits.recent_closed_incidents`), not every incident ever closed:
    /// those are in the store's history.
    pub incidents_closed: u64,
    /// Tiers of the open incidents, by (tier, town, outcome); town is empty
    /// outside the served area. Closed incidents leave the live state, and
    /// their tiers leave this count with them.
    pub tiers: BTreeMap<(Tier, String, TierOutcome), u64>,
    /// Units by (tier, status).
    pub units: BTreeMap<(Tier, UnitStatus), u64>,
    /// Open incidents waiting in each tier's queue (with a slot no unit fills).
    pub waiting: BTreeMap<Tier, u64>,
    /// What the surge policy did since start, by decision.
    pub decisions: Vec<(super::queue::Decision, u64)>,
}

impl Dispatcher {
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for incident in self.incidents.iter().filter(|i| i.status == IncidentStatus::Open) {
            census.incidents_open += 1;
            for tier in &incident.tiers {
                *census.tiers.entry((tier.tier, incident.town.clone(), TierOutcome::of(tier.state))).or_default() += 1;
            }
        }
        census.incidents_closed = self.recent_closed_count() as u64;
        for unit in self.units.iter() {
            *census.units.entry((unit.tier, unit.status)).or_default() += 1;
        }
        census.waiting = Tier::ALL.into_iter().map(|t| (t, self.waiting_incidents(t) as u64)).collect();
        census.decisions = super::queue::Decision::ALL.into_iter().map(|d| (d, self.decisions(d))).collect();
        census
    }
}
