//! The incidents of a run, drawn from a seed before the run starts: the same
//! seed, scenario and count give the same incidents (only the external ids'
//! run tag differs, so a rerun against the same server is not a duplicate).

use lastmile_core::LatLng;
use lastmile_core::area::ServiceArea;
use lastmile_proto::v1 as pb;

use lastmile_core::sim::{GOLDEN_GAMMA, SplitMix64};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Uniform over the district outline; everyday kinds and severities.
    Uniform,
    /// A typhoon night: 80% of incidents in low-lying 金清镇 and 蓬街镇, the rest
    /// anywhere; mostly floods and rescues, more of them major.
    Typhoon,
}

/// The towns a typhoon floods first (low-lying, by the sea).
pub const TYPHOON_TOWNS: [&str; 2] = ["金清镇", "蓬街镇"];

/// Rejection sampling gives up after this many draws for one point (the
/// area has no such town, or the bounding box misses the outline).
const MAX_DRAWS_PER_POINT: usize = 10_000;

/// The bounding box points are drawn from (lat, lng), min and max.
#[derive(Clone, Copy, Debug)]
pub struct BoundingBox {
    pub min: (f64, f64),
    pub max: (f64, f64),
}

impl BoundingBox {
    /// The box around `points`, widened by `pad_deg` on each side.
    pub fn around(points: impl IntoIterator<Item = (f64, f64)>, pad_deg: f64) -> Option<Self> {
        let mut b: Option<BoundingBox> = None;
        for (lat, lng) in points {
            let bb = b.get_or_insert(BoundingBox { min: (lat, lng), max: (lat, lng) });
            bb.min = (bb.min.0.min(lat), bb.min.1.min(lng));
            bb.max = (bb.max.0.max(lat), bb.max.1.max(lng));
        }
        b.map(|bb| BoundingBox {
            min: (bb.min.0 - pad_deg, bb.min.1 - pad_deg),
            max: (bb.max.0 + pad_deg, bb.max.1 + pad_deg),
        })
    }
}

/// Draws `count` incidents. `tag` makes the external ids unique to the run.
/// Fails only when no point inside the outline can be found.
pub fn incidents(
    scenario: Scenario,
    count: usize,
    seed: u64,
    tag: &str,
    area: &ServiceArea,
    bbox: BoundingBox,
) -> anyhow::Result<(Vec<pb::ReportIncidentRequest>, usize)> {
    // Started one step on, so each seed draws the incidents it always has.
    let mut rng = SplitMix64(seed.wrapping_add(GOLDEN_GAMMA));
    let mut out = Vec::with_capacity(count);
    // Typhoon points that had to fall back to anywhere in the district.
    let mut fell_back = 0;
    for i in 0..count {
        let (at, kind, severity) = match scenario {
            Scenario::Uniform => {
                let at = point(&mut rng, area, bbox, |_| true)?;
                let kind = rng.weighted(&[
                    (pb::IncidentKind::Fire, 30.0),
                    (pb::IncidentKind::Traffic, 20.0),
                    (pb::IncidentKind::Medical, 20.0),
                    (pb::IncidentKind::Rescue, 10.0),
                    (pb::IncidentKind::Flood, 10.0),
                    (pb::IncidentKind::Hazmat, 5.0),
                    (pb::IncidentKind::Other, 5.0),
                ]);
                (at, kind, rng.weighted(&[(1, 30.0), (2, 40.0), (3, 20.0), (4, 10.0)]))
            }
            Scenario::Typhoon => {
                let in_low_towns = rng.unit() < 0.8;
                let at = if in_low_towns {
                    match point(&mut rng, area, bbox, |town| TYPHOON_TOWNS.contains(&town)) {
                        Ok(at) => at,
                        Err(_) => {
                            fell_back += 1;
                            point(&mut rng, area, bbox, |_| true)?
                        }
                    }
                } else {
                    point(&mut rng, area, bbox, |_| true)?
                };
                let kind = rng.weighted(&[
                    (pb::IncidentKind::Flood, 45.0),
                    (pb::IncidentKind::Rescue, 25.0),
                    (pb::IncidentKind::Traffic, 10.0),
                    (pb::IncidentKind::Fire, 10.0),
                    (pb::IncidentKind::Medical, 5.0),
                    (pb::IncidentKind::Hazmat, 5.0),
                ]);
                (at, kind, rng.weighted(&[(1, 15.0), (2, 35.0), (3, 35.0), (4, 15.0)]))
            }
        };
        out.push(pb::ReportIncidentRequest {
            external_id: format!("bench-{tag}-{i:06}"),
            location: Some(pb::LatLng { lat: at.lat, lng: at.lng }),
            kind: kind as i32,
            severity,
            address: format!("lastmile bench {scenario:?} #{i}"),
            description: String::new(),
            grid_id: String::new(),
        });
    }
    Ok((out, fell_back))
}

/// A point inside the outline whose town passes `town_ok`.
fn point(
    rng: &mut SplitMix64,
    area: &ServiceArea,
    bbox: BoundingBox,
    town_ok: impl Fn(&str) -> bool,
) -> anyhow::Result<LatLng> {
    for _ in 0..MAX_DRAWS_PER_POINT {
        let lat = rng.range(bbox.min.0, bbox.max.0);
        let lng = rng.range(bbox.min.1, bbox.max.1);
        let Ok(at) = LatLng::new(lat, lng) else { continue };
        let located = area.locate(at);
        if !located.outside_service_area && town_ok(&located.town) {
            return Ok(at);
        }
    }
    anyhow::bail!("no point inside the district outline (and the scenario's towns) after {MAX_DRAWS_PER_POINT} draws")
}
