//! Tier selection for one incident (all four tiers), R-tree against a linear
//! scan, at 10k, 100k and 1M units; and the four tiers selected sequentially
//! against one scoped thread per tier.
//!
//! Units are drawn uniformly in the Luqiao bounding box by a seeded SplitMix64,
//! split across tiers in the demo dataset's proportions, ~20% of them busy.
//! Every iteration selects all four tiers (`required` from the default plan)
//! for the next of 1000 pre-drawn incident locations, so the figures are an
//! average over the district rather than one lucky point. Building the fleet
//! and its indexes happens before the timed loop.
//!
//! Run: `cargo bench --bench selection` (results in BENCHMARKS.md).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main, measurement::WallTime};
use lastmile_core::config::DispatchConfig;
use lastmile_core::index::TierIndex;
use lastmile_core::select::{Pick, select_brute_force, select_tier};
use lastmile_core::sim::SplitMix64;
use lastmile_core::{LatLng, Tier};

/// Fixed seed: every run benchmarks the same fleet and the same incidents.
const SEED: u64 = 0x00C0_FFEE_1351_0000;
/// Luqiao district bounding box, degrees.
const LAT: (f64, f64) = (28.456, 28.644);
const LNG: (f64, f64) = (121.288, 121.658);
/// Units per tier in the demo dataset (T1, T3, T5, T10), 844 in all.
const DEMO_MIX: [usize; 4] = [600, 228, 12, 4];
const MIN_PER_TIER: usize = 4;
const BUSY_FRACTION: f64 = 0.2;
const INCIDENTS: usize = 1000;
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const PARALLEL_SIZE: usize = 100_000;

/// A point uniformly inside the benchmark's box.
fn point_in_box(rng: &mut SplitMix64) -> LatLng {
    LatLng::new(rng.range(LAT.0, LAT.1), rng.range(LNG.0, LNG.1)).expect("the box is valid WGS-84")
}

struct BenchUnit {
    id: Arc<str>,
    position: LatLng,
    /// Status as a unit table would hold it; the scan reads it directly, so the
    /// scan pays no set look-up (the comparison favours the scan, if anything).
    available: bool,
}

/// N units split across the tiers, one index per tier, the busy set, and the
/// incident locations.
struct Fleet {
    config: DispatchConfig,
    units: [Vec<BenchUnit>; 4],
    indexes: [TierIndex; 4],
    busy: HashSet<Arc<str>>,
    incidents: Vec<LatLng>,
}

/// Units per tier for `n` units in all: the demo proportions, at least
/// `MIN_PER_TIER` each, tier 1 taking the rounding remainder.
fn tier_sizes(n: usize) -> [usize; 4] {
    let total: usize = DEMO_MIX.iter().sum();
    let mut sizes = DEMO_MIX.map(|share| (n * share / total).max(MIN_PER_TIER));
    sizes[0] = n - sizes[1..].iter().sum::<usize>();
    sizes
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        let mut rng = SplitMix64(SEED ^ n as u64);
        let mut busy = HashSet::new();
        let mut serial = 0usize;
        let units = tier_sizes(n).map(|count| {
            (0..count)
                .map(|_| {
                    serial += 1;
                    let id: Arc<str> = Arc::from(format!("u{serial:07}"));
                    let available = rng.unit() >= BUSY_FRACTION;
                    if !available {
                        busy.insert(id.clone());
                    }
                    BenchUnit { id, position: point_in_box(&mut rng), available }
                })
                .collect::<Vec<_>>()
        });
        let indexes =
            std::array::from_fn(|t| TierIndex::bulk_load(units[t].iter().map(|u| (u.id.clone(), u.position))));
        let incidents = (0..INCIDENTS).map(|_| point_in_box(&mut rng)).collect();
        Fleet { config: DispatchConfig::defaults(), units, indexes, busy, incidents }
    }

    fn required(&self, tier: Tier) -> u32 {
        self.config.response_plan.default.get(tier)
    }

    fn select_indexed(&self, tier: Tier, at: LatLng) -> Vec<Pick> {
        let params = self.config.tiers.get(tier);
        select_tier(&self.indexes[tier.index()], params, at, self.required(tier), |id| !self.busy.contains(id))
    }

    fn select_scan(&self, tier: Tier, at: LatLng) -> Vec<Pick> {
        let units = self.units[tier.index()].iter().map(|u| (&u.id, u.position, u.available));
        select_brute_force(units, self.config.tiers.get(tier), at, self.required(tier))
    }

    /// The four tiers one after another on this thread (the service's design).
    fn four_tiers_indexed(&self, at: LatLng) -> [Vec<Pick>; 4] {
        Tier::ALL.map(|tier| self.select_indexed(tier, at))
    }

    fn four_tiers_scan(&self, at: LatLng) -> [Vec<Pick>; 4] {
        Tier::ALL.map(|tier| self.select_scan(tier, at))
    }

    /// The four tiers at once, one scoped thread per tier.
    fn four_tiers_threaded(&self, at: LatLng) -> [Vec<Pick>; 4] {
        std::thread::scope(|s| {
            Tier::ALL
                .map(|tier| s.spawn(move || self.select_indexed(tier, at)))
                .map(|handle| handle.join().expect("selection thread panicked"))
        })
    }

    /// Before timing anything: the index and the scan agree on the first
    /// `check` incidents, and a line on how often each tier finds a unit.
    fn check_and_describe(&self, check: usize) {
        for &at in &self.incidents[..check] {
            assert_eq!(self.four_tiers_indexed(at), self.four_tiers_scan(at), "index and scan disagree at {at:?}");
        }
        let mut within = [0usize; 4];
        let mut fallback = [0usize; 4];
        for &at in &self.incidents {
            for (t, picks) in self.four_tiers_indexed(at).iter().enumerate() {
                within[t] += picks.iter().filter(|p| p.within_target).count();
                fallback[t] += picks.iter().filter(|p| !p.within_target).count();
            }
        }
        let sizes = self.units.each_ref().map(Vec::len);
        let summary: Vec<String> = Tier::ALL
            .iter()
            .map(|t| {
                let i = t.index();
                format!("{t}: {} units, {} within target, {} fallback", sizes[i], within[i], fallback[i])
            })
            .collect();
        eprintln!(
            "fleet of {} units ({} busy), over {INCIDENTS} incidents: {}",
            sizes.iter().sum::<usize>(),
            self.busy.len(),
            summary.join("; ")
        );
    }
}

/// Times `select` over the incident list, one incident per iteration, cycling.
fn bench_cycling(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    fleet: &Fleet,
    select: impl Fn(&Fleet, LatLng) -> [Vec<Pick>; 4],
) {
    group.bench_function(id, |b| {
        let mut next = 0;
        b.iter(|| {
            let at = fleet.incidents[next];
            next = (next + 1) % fleet.incidents.len();
            black_box(select(black_box(fleet), black_box(at)))
        })
    });
}

fn select_4_tiers(c: &mut Criterion) {
    let mut group = c.benchmark_group("select_4_tiers");
    for n in SIZES {
        let fleet = Fleet::new(n);
        fleet.check_and_describe(if n >= 1_000_000 { 10 } else { 100 });

        group.sample_size(100).measurement_time(Duration::from_secs(5));
        bench_cycling(&mut group, BenchmarkId::new("index", n), &fleet, Fleet::four_tiers_indexed);

        // The scan costs n haversines per incident: fewer samples as n grows,
        // so the whole run stays within a few minutes.
        let (samples, seconds) = match n {
            ..=10_000 => (50, 5),
            10_001..=100_000 => (20, 8),
            _ => (10, 20),
        };
        group.sample_size(samples).measurement_time(Duration::from_secs(seconds));
        bench_cycling(&mut group, BenchmarkId::new("scan", n), &fleet, Fleet::four_tiers_scan);
    }
    group.finish();
}

fn tiers_parallel(c: &mut Criterion) {
    let fleet = Fleet::new(PARALLEL_SIZE);
    let mut group = c.benchmark_group("tiers_parallel");
    group.sample_size(100).measurement_time(Duration::from_secs(5));
    bench_cycling(&mut group, BenchmarkId::new("sequential", PARALLEL_SIZE), &fleet, Fleet::four_tiers_indexed);
    bench_cycling(&mut group, BenchmarkId::new("scoped_threads", PARALLEL_SIZE), &fleet, Fleet::four_tiers_threaded);
    group.finish();
}

criterion_group!(benches, select_4_tiers, tiers_parallel);
criterion_main!(benches);
