//! The monthly bulletin (一月一通报): per tier, the towns ranked by the
//! share of their incidents that met the tier, with the change against the
//! previous period.

use std::collections::HashMap;

use serde::Serialize;

use crate::report::{Report, Row};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bulletin {
    /// The current report's period label ("2026-11").
    pub period: String,
    /// The previous report's period label; null without one.
    pub previous_period: Option<String>,
    /// Tiers 1, 3, 5, 10, each with its ranking.
    pub tiers: Vec<BulletinTier>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BulletinTier {
    pub tier: u32,
    /// Towns with at least one incident requiring the tier, best first:
    /// by share met (higher first), then incidents (more first), then name.
    pub towns: Vec<BulletinTown>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BulletinTown {
    /// 1 for the first; every town has its own rank (the order breaks ties).
    pub rank: u32,
    pub town: String,
    pub incidents: u64,
    pub incidents_met: u64,
    pub share_met: f64,
    /// The town's share in the previous period; null when there is no
    /// previous report or the town had no incident requiring the tier then.
    pub previous_share_met: Option<f64>,
    /// `(share_met - previous_share_met) * 100`: percentage points.
    pub change_points: Option<f64>,
}

/// The ranking of `current`'s towns, compared with `previous` (normally the
/// report of [`crate::Period::previous`]).
pub fn bulletin(current: &Report, previous: Option<&Report>) -> Bulletin {
    let before: HashMap<(&str, u32), f64> = previous
        .map(|p| p.towns.iter().filter_map(|r| Some(((town(r), r.tier), r.share_met?))).collect())
        .unwrap_or_default();
    let tiers = lastmile_core::Tier::ALL
        .into_iter()
        .map(|tier| {
            let tier = tier.minutes();
            let mut rows: Vec<(&Row, f64)> =
                current.towns.iter().filter(|r| r.tier == tier).filter_map(|r| Some((r, r.share_met?))).collect();
            rows.sort_by(|(a, sa), (b, sb)| {
                sb.total_cmp(sa).then(b.incidents.cmp(&a.incidents)).then(town(a).cmp(town(b)))
            });
            let towns = rows
                .into_iter()
                .zip(1..)
                .map(|((r, share), rank)| {
                    let previous_share_met = before.get(&(town(r), tier)).copied();
                    BulletinTown {
                        rank,
                        town: town(r).to_string(),
                        incidents: r.incidents,
                        incidents_met: r.incidents_met,
                        share_met: share,
                        previous_share_met,
                        change_points: previous_share_met.map(|p| (share - p) * 100.0),
                    }
                })
                .collect();
            BulletinTier { tier, towns }
        })
        .collect();
    Bulletin { period: current.period.label.clone(), previous_period: previous.map(|p| p.period.label.clone()), tiers }
}

fn town(row: &Row) -> &str {
    row.town.as_deref().unwrap_or_default()
}
