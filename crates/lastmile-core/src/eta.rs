//! How wrong the ETA is, and how it learns from verified arrivals.
//!
//! - [`quantile`], [`ErrorStats`]: error figures of predictions against
//!   real arrivals.
//! - [`TravelModel`], [`fit`], [`step_towards`]: a tier's travel model
//!   learnt robustly (Theil–Sen) from [`Sample`]s, with a margin that makes
//!   the promise hold for `promise_quantile` of arrivals, per-unit offsets
//!   shrunk towards the tier, and a bound on how fast it may change.
//! - [`Calibration`]: the file `lastmile eta fit` writes and the server loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sim::SplitMix64;
use crate::tier::{Tier, TierParams};

/// The `q` quantile (0..=1) of `values` by linear interpolation between
/// closest ranks; `None` when empty. Sorts `values`.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (rank - lo as f64))
}

/// Error of predictions against arrivals. An error is `actual - predicted`
/// seconds: positive means the unit came later than predicted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// Arrivals scored.
    pub arrivals: usize,
    pub median_error_s: Option<f64>,
    /// Mean error.
    pub bias_s: Option<f64>,
    pub median_abs_error_s: Option<f64>,
    pub p90_abs_error_s: Option<f64>,
    /// Share of arrivals on scene by the *promised* ETA (0..=1).
    pub share_by_promise: Option<f64>,
}

impl ErrorStats {
    /// From `(predicted_s, promised_s, actual_s)` triples: `predicted` is the
    /// model's point estimate, `promised` what was promised (the estimate at
    /// the promise quantile; the same as `predicted` for a model without one).
    pub fn of(scored: impl IntoIterator<Item = (f64, f64, f64)>) -> ErrorStats {
        let mut errors = Vec::new();
        let mut kept = 0usize;
        for (predicted, promised, actual) in scored {
            errors.push(actual - predicted);
            kept += usize::from(actual <= promised);
        }
        let n = errors.len();
        if n == 0 {
            return ErrorStats::default();
        }
        let bias = errors.iter().sum::<f64>() / n as f64;
        let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
        ErrorStats {
            arrivals: n,
            median_error_s: quantile(&mut errors, 0.5),
            bias_s: Some(bias),
            median_abs_error_s: quantile(&mut abs, 0.5),
            p90_abs_error_s: quantile(&mut abs, 0.9),
            share_by_promise: Some(kept as f64 / n as f64),
        }
    }
}

// ---------------------------------------------------------------------------
// The learnt travel model.

/// A tier's learnt travel model. promised ETA =
/// (turnout + distance*circuity/speed) * (1 + margin_ratio) + margin_s.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TravelModel {
    /// Page to moving, seconds: the intercept of the fit.
    pub turnout_s: f64,
    /// Average travel speed along the road, metres per second.
    pub speed_m_per_s: f64,
    /// Road distance over great-circle distance; kept from the prior (only
    /// `circuity / speed` is identifiable from great-circle distances).
    pub circuity: f64,
    /// Added to the promise, seconds (an operator's pin; a fit leaves it 0).
    pub margin_s: f64,
    /// The promise is the point estimate times `1 + margin_ratio`: the fit
    /// sets it to the `promise_quantile` quantile of actual / estimate, less
    /// one. Relative, because the error grows with the distance: a flat
    /// margin over-promises far away and under-promises near by, exactly
    /// where "within target" is decided. (Default 0: older files.)
    #[serde(default)]
    pub margin_ratio: f64,
}

impl TravelModel {
    /// The configured (textbook) model of a tier, with no margin.
    pub fn prior(p: &TierParams) -> Self {
        TravelModel {
            turnout_s: p.turnout_s,
            speed_m_per_s: p.speed_m_per_s,
            circuity: p.circuity,
            margin_s: 0.0,
            margin_ratio: 0.0,
        }
    }

    /// Seconds of travel per great-circle metre.
    pub fn pace_s_per_m(&self) -> f64 {
        self.circuity / self.speed_m_per_s
    }

    /// The point estimate: turnout + distance*circuity/speed, seconds.
    pub fn point_s(&self, distance_m: f64) -> f64 {
        self.turnout_s + distance_m * self.pace_s_per_m()
    }

    /// The promise: the point estimate scaled by the margin ratio, plus
    /// the margin, seconds.
    pub fn promised_s(&self, distance_m: f64) -> f64 {
        self.point_s(distance_m) * self.scale() + self.margin_s
    }

    /// `1 + margin_ratio`.
    pub fn scale(&self) -> f64 {
        1.0 + self.margin_ratio
    }

    /// `p` with this model's travel, the promise folded in: `turnout_s` =
    /// turnout * (1 + ratio) + margin, speed / (1 + ratio), circuity; target,
    /// fallback and ack timeout are kept. So `TierParams::eta_s` gives
    /// `ceil(promised_s)`.
    pub fn apply(&self, p: &TierParams) -> TierParams {
        TierParams {
            turnout_s: self.turnout_s * self.scale() + self.margin_s,
            speed_m_per_s: self.speed_m_per_s / self.scale(),
            circuity: self.circuity,
            ..*p
        }
    }
}

/// One verified arrival: how far the unit was when paged, and how long it
/// took from the page to being verified on scene.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub unit_id: String,
    /// Great-circle distance from where the unit was when paged, metres.
    pub distance_m: f64,
    /// Page to verified on scene, seconds.
    pub travel_s: f64,
}

/// How the fit learns and how fast what it learns may change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSettings {
    /// The share of arrivals that must be on scene by the promised ETA
    /// (0..1): the margin is this quantile of the residuals.
    pub promise_quantile: f64,
    /// A tier with fewer arrivals keeps its prior (`fit` returns `None`).
    pub min_arrivals: usize,
    /// Largest relative change of turnout and speed per step
    /// ([`step_towards`]): one bad batch cannot swing the promises.
    pub max_step: f64,
    /// A unit with fewer arrivals gets no offset of its own.
    pub unit_min_arrivals: usize,
    /// `k` of the shrinkage `n / (n + k)`: a unit's offset counts fully only
    /// once it has many more than `k` arrivals.
    pub unit_shrinkage: f64,
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings {
            promise_quantile: 0.8,
            min_arrivals: 30,
            max_step: 0.25,
            unit_min_arrivals: 5,
            unit_shrinkage: 10.0,
        }
    }
}

/// What [`fit`] learnt for one tier.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub model: TravelModel,
    /// Seconds added to a unit's estimates (and promises): its shrunk median
    /// residual. Units without enough arrivals are absent (offset 0).
    pub unit_offsets: BTreeMap<String, f64>,
    /// Samples behind the fit.
    pub arrivals: usize,
}

impl Fit {
    /// The offset of `unit_id`, 0 for a unit without one.
    pub fn unit_offset_s(&self, unit_id: &str) -> f64 {
        self.unit_offsets.get(unit_id).copied().unwrap_or(0.0)
    }
}

/// Above this many pairs, Theil–Sen uses this many pairs drawn with a fixed
/// seed (deterministic) instead of all n(n-1)/2: bounds time and memory
/// (1 000 samples have ~500 000 pairs).
pub const MAX_PAIRS: usize = 200_000;
/// Pairs whose distances differ by less than this say nothing about the
/// pace (their slope is mostly noise), metres.
pub const MIN_PAIR_SPREAD_M: f64 = 10.0;
/// Learnt speeds are clamped to this range, metres per second.
pub const SPEED_RANGE_M_PER_S: (f64, f64) = (0.5, 60.0);
/// Learnt margin ratios are clamped to this range.
pub const MARGIN_RATIO_RANGE: (f64, f64) = (-0.5, 3.0);
/// An estimate below this does not make a ratio (a unit at the door).
const MIN_ESTIMATE_S: f64 = 10.0;
/// The seed of the pair subsampling.
const PAIR_SEED: u64 = 0x6c61_7374_6d69_6c65;

/// Robust fit of one tier's travel model.
///
/// Theil–Sen: the pace is the median of the pairwise slopes (pairs
/// subsampled deterministically above [`MAX_PAIRS`]), the turnout the median
/// residual; then refined by weighted least absolute deviations (see
/// `weighted_least_absolute` for why); so a few wild arrivals (a unit that forgot to report, a GPS
/// jump) barely move it. Circuity is kept from `prior`: only circuity/speed
/// is identifiable. A slope <= 0 or no usable pair (all distances alike)
/// keeps the prior's pace and fits the turnout only. Turnout is clamped
/// at least 0 and speed to [`SPEED_RANGE_M_PER_S`]. Units with at least
/// `unit_min_arrivals` get the offset `n/(n+k) * median residual`. The
/// margin is the `promise_quantile` quantile of the residuals after the unit
/// offsets. `None` when there are fewer than `min_arrivals` samples.
pub fn fit(samples: &[Sample], prior: &TravelModel, s: &FitSettings) -> Option<Fit> {
    let usable: Vec<&Sample> = samples.iter().filter(|x| x.distance_m.is_finite() && x.travel_s.is_finite()).collect();
    if usable.len() < s.min_arrivals.max(1) {
        return None;
    }
    let (lo, hi) = SPEED_RANGE_M_PER_S;
    let (fastest, slowest) = (prior.circuity / hi, prior.circuity / lo);
    let median_residual = |pace: f64| {
        let mut r: Vec<f64> = usable.iter().map(|x| x.travel_s - pace * x.distance_m).collect();
        quantile(&mut r, 0.5).unwrap_or(prior.turnout_s)
    };
    let (turnout, pace) = match median_pairwise_slope(&usable) {
        Some(slope) if slope > 0.0 => {
            let slope = slope.clamp(fastest, slowest);
            let guess = (median_residual(slope).max(0.0), slope);
            weighted_least_absolute(&usable, guess, (slope / 2.0).max(fastest), (slope * 2.0).min(slowest))
        }
        _ => (median_residual(prior.pace_s_per_m()), prior.pace_s_per_m()),
    };
    let turnout = turnout.max(0.0);
    let speed = prior.circuity / pace;
    let mut residuals: Vec<f64> = usable.iter().map(|x| x.travel_s - pace * x.distance_m).collect();
    for r in &mut residuals {
        *r -= turnout;
    }
    let unit_offsets = unit_offsets(&usable, &residuals, s);
    // The margin: the promise quantile of actual / estimate (with the
    // unit's offset), so the promise holds as often near as far.
    let mut ratios: Vec<f64> = usable
        .iter()
        .map(|x| {
            let estimate = turnout + pace * x.distance_m + unit_offsets.get(&x.unit_id).copied().unwrap_or(0.0);
            x.travel_s / estimate.max(MIN_ESTIMATE_S)
        })
        .collect();
    let (lo_ratio, hi_ratio) = MARGIN_RATIO_RANGE;
    let margin_ratio = (quantile(&mut ratios, s.promise_quantile).unwrap_or(1.0) - 1.0).clamp(lo_ratio, hi_ratio);
    let model =
        TravelModel { turnout_s: turnout, speed_m_per_s: speed, circuity: prior.circuity, margin_s: 0.0, margin_ratio };
    debug_assert!(model.turnout_s >= 0.0 && model.speed_m_per_s >= lo && model.speed_m_per_s <= hi);
    Some(Fit { model, unit_offsets, arrivals: usable.len() })
}

/// The median of the slopes `dy/dx` over pairs whose distances differ by at
/// least [`MIN_PAIR_SPREAD_M`]; `None` when no pair does.
fn median_pairwise_slope(samples: &[&Sample]) -> Option<f64> {
    let n = samples.len();
    let slope = |i: usize, j: usize| {
        let (a, b) = (samples[i], samples[j]);
        let dx = b.distance_m - a.distance_m;
        (dx.abs() >= MIN_PAIR_SPREAD_M).then(|| (b.travel_s - a.travel_s) / dx)
    };
    let (min, max) = samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x.distance_m), hi.max(x.distance_m)));
    if max - min < MIN_PAIR_SPREAD_M || (max - min).is_nan() {
        return None;
    }
    let all_pairs = n * (n - 1) / 2;
    let mut slopes = Vec::with_capacity(all_pairs.min(MAX_PAIRS));
    if all_pairs <= MAX_PAIRS {
        for i in 0..n {
            slopes.extend((i + 1..n).filter_map(|j| slope(i, j)));
        }
    } else {
        // At most 4 draws per wanted pair: with distances nearly all alike,
        // few pairs qualify, and the median of those found is still robust.
        let mut rng = SplitMix64(PAIR_SEED ^ n as u64);
        for _ in 0..4 * MAX_PAIRS {
            if slopes.len() == MAX_PAIRS {
                break;
            }
            let i = (rng.next_u64() % n as u64) as usize;
            let j = (rng.next_u64() % n as u64) as usize;
            if i != j {
                slopes.extend(slope(i, j));
            }
        }
    }
    quantile(&mut slopes, 0.5)
}

/// Refines Theil–Sen's line: the line `(turnout, pace)`, pace in
/// `[lo, hi]`, with the least sum of absolute residuals weighted by
/// `1 / (the first guess of the travel time)`, i.e. of relative residuals.
/// Why: travel times spread in proportion to distance, and then Theil–Sen's
/// slope is biased and the far arrivals' noise swamps the turnout (on a
/// 600–10 000 m brigade with 25 % spread: turnout +4 s biased, 7.5 s rms
/// from 5 000 arrivals; refined: -1 s, 3 s rms). Still a median, so as
/// robust to wild arrivals, and consistent for the median travel time at
/// every distance. For a pace, the best turnout is the weighted median
/// residual; the cost minimised over the turnout is convex in the pace, so a
/// golden-section search finds it (50 rounds: 4e-11 of the bracket).
fn weighted_least_absolute(samples: &[&Sample], guess: (f64, f64), lo: f64, hi: f64) -> (f64, f64) {
    // Floor of a first-guess travel time: a unit at the door does not weigh infinitely.
    const MIN_GUESS_S: f64 = 30.0;
    let weights: Vec<f64> = samples.iter().map(|x| 1.0 / (guess.0 + guess.1 * x.distance_m).max(MIN_GUESS_S)).collect();
    let half = weights.iter().sum::<f64>() / 2.0;
    let mut residuals: Vec<(f64, f64)> = vec![(0.0, 0.0); samples.len()];
    let mut line = |pace: f64| {
        for ((r, x), w) in residuals.iter_mut().zip(samples).zip(&weights) {
            *r = (x.travel_s - pace * x.distance_m, *w);
        }
        residuals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut seen = 0.0;
        let turnout = residuals.iter().find(|(_, w)| {
            seen += w;
            seen >= half
        });
        let turnout = turnout.map_or(0.0, |(r, _)| *r);
        let cost: f64 = residuals.iter().map(|(r, w)| w * (r - turnout).abs()).sum();
        (cost, turnout)
    };
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (lo, hi);
    let (mut a, mut b) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut cost_a, mut cost_b) = (line(a).0, line(b).0);
    for _ in 0..50 {
        if cost_a <= cost_b {
            (hi, b, cost_b) = (b, a, cost_a);
            a = hi - ratio * (hi - lo);
            cost_a = line(a).0;
        } else {
            (lo, a, cost_a) = (a, b, cost_b);
            b = lo + ratio * (hi - lo);
            cost_b = line(b).0;
        }
    }
    let pace = (lo + hi) / 2.0;
    (line(pace).1, pace)
}

/// Per unit with enough arrivals: `n/(n+k)` times its median residual.
fn unit_offsets(samples: &[&Sample], residuals: &[f64], s: &FitSettings) -> BTreeMap<String, f64> {
    let mut by_unit: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (x, r) in samples.iter().zip(residuals) {
        by_unit.entry(x.unit_id.as_str()).or_default().push(*r);
    }
    by_unit
        .into_iter()
        .filter(|(_, rs)| rs.len() >= s.unit_min_arrivals.max(1))
        .map(|(unit, mut rs)| {
            let n = rs.len() as f64;
            let median = quantile(&mut rs, 0.5).unwrap_or(0.0);
            (unit.to_string(), n / (n + s.unit_shrinkage.max(0.0)) * median)
        })
        .collect()
}

/// The next model on the way from `current` to `target`: turnout, speed and
/// circuity change by at most `max_step` relative to `current` (turnout
/// relative to at least 30 s, so a zero turnout can still move), the margin
/// by at most `max_step * max(current turnout + margin, 30 s)` absolute.
pub fn step_towards(current: &TravelModel, target: &TravelModel, max_step: f64) -> TravelModel {
    const FLOOR_S: f64 = 30.0;
    let m = max_step.max(0.0);
    let bounded = |from: f64, to: f64, room: f64| to.clamp(from - room, from + room);
    let turnout = bounded(current.turnout_s, target.turnout_s, m * current.turnout_s.max(FLOOR_S)).max(0.0);
    let speed = bounded(current.speed_m_per_s, target.speed_m_per_s, m * current.speed_m_per_s);
    let circuity = bounded(current.circuity, target.circuity, m * current.circuity);
    let margin_room = m * (current.turnout_s + current.margin_s).max(FLOOR_S);
    let margin = bounded(current.margin_s, target.margin_s, margin_room);
    // The ratio: by at most max_step of itself, or of 0.2 while it is small.
    let ratio_room = m * current.margin_ratio.abs().max(0.2);
    let margin_ratio = bounded(current.margin_ratio, target.margin_ratio, ratio_room);
    TravelModel { turnout_s: turnout, speed_m_per_s: speed, circuity, margin_s: margin, margin_ratio }
}

// ---------------------------------------------------------------------------
// The calibration file.

/// The `format` of a calibration file this build reads and writes.
pub const CALIBRATION_FORMAT: &str = "lastmile-eta-calibration/1";

/// The calibration file `lastmile eta fit` writes and the server loads
/// (JSON). Reading a file is the caller's business (this crate does no
/// I/O): `Calibration::parse(&std::fs::read_to_string(path)?)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always [`CALIBRATION_FORMAT`]: a future format is refused, not misread.
    pub format: String,
    /// The promise quantile the margins were fitted for.
    pub promise_quantile: f64,
    /// Where the arrivals came from (the responses file's name).
    pub source: String,
    pub tiers: CalibratedTiers,
}

/// Per tier, keyed `t1`, `t3`, `t5`, `t10` like `dispatch.tiers`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedTiers {
    pub t1: CalibratedTier,
    pub t3: CalibratedTier,
    pub t5: CalibratedTier,
    pub t10: CalibratedTier,
}

/// One tier of a calibration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedTier {
    /// `None`: too few arrivals; the configured parameters stay.
    pub model: Option<TravelModel>,
    /// Arrivals behind the model (or the too few that there were).
    pub arrivals: usize,
    /// Per-unit offsets, seconds (see [`Fit::unit_offsets`]).
    #[serde(default)]
    pub unit_offsets_s: BTreeMap<String, f64>,
}

/// A calibration file that cannot be used; names the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("eta calibration: {field}: {problem}")]
pub struct CalibrationError {
    /// e.g. `tiers.t10.model.speed_m_per_s`, or `json` for a syntax error.
    pub field: String,
    pub problem: String,
}

impl CalibratedTiers {
    pub fn get(&self, tier: Tier) -> &CalibratedTier {
        match tier {
            Tier::T1 => &self.t1,
            Tier::T3 => &self.t3,
            Tier::T5 => &self.t5,
            Tier::T10 => &self.t10,
        }
    }

    pub fn get_mut(&mut self, tier: Tier) -> &mut CalibratedTier {
        match tier {
            Tier::T1 => &mut self.t1,
            Tier::T3 => &mut self.t3,
            Tier::T5 => &mut self.t5,
            Tier::T10 => &mut self.t10,
        }
    }
}

impl Calibration {
    /// An empty calibration (every tier on its prior).
    pub fn new(promise_quantile: f64, source: impl Into<String>) -> Self {
        Calibration {
            format: CALIBRATION_FORMAT.to_string(),
            promise_quantile,
            source: source.into(),
            tiers: CalibratedTiers::default(),
        }
    }

    /// Parses and validates a calibration file's text.
    pub fn parse(text: &str) -> Result<Calibration, CalibrationError> {
        let calibration: Calibration = serde_json::from_str(text)
            .map_err(|e| CalibrationError { field: "json".to_string(), problem: e.to_string() })?;
        calibration.validate()?;
        Ok(calibration)
    }

    /// Pretty JSON, the file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a calibration serialises") + "\n"
    }

    /// Every field in range; the error names the first that is not.
    pub fn validate(&self) -> Result<(), CalibrationError> {
        let bad = |field: String, problem: String| Err(CalibrationError { field, problem });
        if self.format != CALIBRATION_FORMAT {
            return bad("format".into(), format!("{:?}, expected {CALIBRATION_FORMAT:?}", self.format));
        }
        if !(self.promise_quantile > 0.0 && self.promise_quantile < 1.0) {
            return bad("promise_quantile".into(), format!("{} is not in (0, 1)", self.promise_quantile));
        }
        for tier in Tier::ALL {
            let key = |f: &str| format!("tiers.t{}.{f}", tier.minutes());
            let t = self.tiers.get(tier);
            if let Some(m) = &t.model {
                let (lo, hi) = SPEED_RANGE_M_PER_S;
                if !(m.turnout_s.is_finite() && m.turnout_s >= 0.0) {
                    return bad(key("model.turnout_s"), format!("{} is not a finite number >= 0", m.turnout_s));
                }
                if !(m.speed_m_per_s >= lo && m.speed_m_per_s <= hi) {
                    return bad(key("model.speed_m_per_s"), format!("{} is not in [{lo}, {hi}]", m.speed_m_per_s));
                }
                if !(m.circuity.is_finite() && m.circuity >= 1.0) {
                    return bad(key("model.circuity"), format!("{} is not a finite number >= 1", m.circuity));
                }
                let (lo_ratio, hi_ratio) = MARGIN_RATIO_RANGE;
                if !(m.margin_ratio >= lo_ratio && m.margin_ratio <= hi_ratio) {
                    return bad(
                        key("model.margin_ratio"),
                        format!("{} is not in [{lo_ratio}, {hi_ratio}]", m.margin_ratio),
                    );
                }
                if !(m.margin_s.is_finite() && m.turnout_s + m.margin_s >= 0.0) {
                    return bad(
                        key("model.margin_s"),
                        format!("{} is not finite, or turnout + margin < 0", m.margin_s),
                    );
                }
            }
            if let Some((unit, offset)) = t.unit_offsets_s.iter().find(|(_, o)| !o.is_finite()) {
                return bad(key(&format!("unit_offsets_s.{unit}")), format!("{offset} is not finite"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&mut [1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile(&mut [0.0, 10.0], 0.9), Some(9.0));
    }

    #[test]
    fn error_stats_say_late_is_positive() {
        // Predicted 100 s each; arrivals at 90, 110, 130, 150; promised 120.
        let s = ErrorStats::of([90.0, 110.0, 130.0, 150.0].map(|a| (100.0, 120.0, a)));
        assert_eq!(s.arrivals, 4);
        assert_eq!(s.median_error_s, Some(20.0));
        assert_eq!(s.bias_s, Some(20.0));
        assert_eq!(s.median_abs_error_s, Some(20.0));
        assert_eq!(s.share_by_promise, Some(0.5));
        assert_eq!(ErrorStats::of([]), ErrorStats::default());
    }

    // ---- the travel model and its fit ----

    /// The truth of the synthetic tests: 150 s turnout, 7 m/s, circuity 1.3.
    const TRUTH: TravelModel =
        TravelModel { turnout_s: 150.0, speed_m_per_s: 7.0, circuity: 1.3, margin_s: 0.0, margin_ratio: 0.0 };
    /// The textbook prior the fits start from.
    const PRIOR: TravelModel =
        TravelModel { turnout_s: 60.0, speed_m_per_s: 11.1, circuity: 1.3, margin_s: 0.0, margin_ratio: 0.0 };

    /// Standard normal (Box–Muller).
    fn normal(rng: &mut SplitMix64) -> f64 {
        let u1 = rng.unit().max(1e-12);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * rng.unit()).cos()
    }

    /// `n` arrivals of `units` units from `truth`, with log-normal spread 0.2
    /// on turnout and on travel, 200..8000 m away.
    fn synthetic(seed: u64, n: usize, units: usize, truth: &TravelModel) -> Vec<Sample> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|i| {
                let distance_m = rng.range(200.0, 8000.0);
                let turnout = truth.turnout_s * (0.2 * normal(&mut rng)).exp();
                let travel = distance_m * truth.pace_s_per_m() * (0.2 * normal(&mut rng)).exp();
                Sample { unit_id: format!("u{}", i % units), distance_m, travel_s: turnout + travel }
            })
            .collect()
    }

    fn seed() -> u64 {
        let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_e7a1);
        eprintln!("seed {seed} (LASTMILE_SEED={seed} replays)");
        seed
    }

    fn within(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= relative * expected.abs()
    }

    #[test]
    fn the_model_predicts_promises_and_applies_to_tier_params() {
        let m = TravelModel { margin_s: 20.5, ..TRUTH };
        // 150 + 700 * 1.3 / 7 = 280.
        assert!((m.point_s(700.0) - 280.0).abs() < 1e-9);
        assert!((m.promised_s(700.0) - 300.5).abs() < 1e-9);
        let p = TierParams {
            applies: crate::tier::Applies::Always,
            target_s: 600,
            turnout_s: 60.0,
            speed_m_per_s: 11.1,
            circuity: 1.3,
            fallback_factor: 2.0,
            ack_timeout_s: 60,
        };
        assert_eq!(TravelModel::prior(&p), PRIOR);
        let applied = m.apply(&p);
        assert_eq!((applied.target_s, applied.fallback_factor, applied.ack_timeout_s), (600, 2.0, 60));
        assert_eq!(applied.eta_s(700.0), 301);
    }

    #[test]
    fn the_fit_recovers_known_parameters() {
        let samples = synthetic(seed(), 3000, 40, &TRUTH);
        let fit = fit(&samples, &PRIOR, &FitSettings::default()).unwrap();
        assert_eq!(fit.arrivals, 3000);
        assert!(within(fit.model.turnout_s, 150.0, 0.10), "{:?}", fit.model);
        assert!(within(fit.model.speed_m_per_s, 7.0, 0.05), "{:?}", fit.model);
        assert_eq!(fit.model.circuity, 1.3);
        assert!(fit.model.margin_ratio > 0.0 && fit.model.margin_s == 0.0, "{:?}", fit.model);
    }

    #[test]
    fn the_fit_needs_min_arrivals() {
        let samples = synthetic(1, 29, 3, &TRUTH);
        assert_eq!(fit(&samples, &PRIOR, &FitSettings::default()), None);
        assert!(fit(&samples[..], &PRIOR, &FitSettings { min_arrivals: 29, ..FitSettings::default() }).is_some());
    }

    #[test]
    fn wild_outliers_barely_move_the_fit() {
        let seed = seed();
        let clean = fit(&synthetic(seed, 1000, 20, &TRUTH), &PRIOR, &FitSettings::default()).unwrap().model;
        let mut samples = synthetic(seed, 1000, 20, &TRUTH);
        let mut rng = SplitMix64(seed ^ 1);
        // Every tenth arrival wild: reported an hour late, or at once.
        for sample in samples.iter_mut().step_by(10) {
            sample.travel_s = if rng.unit() < 0.5 { 3600.0 + rng.range(0.0, 3600.0) } else { rng.range(0.0, 5.0) };
        }
        let dirty = fit(&samples, &PRIOR, &FitSettings::default()).unwrap().model;
        assert!(within(dirty.turnout_s, clean.turnout_s, 0.10), "{clean:?} vs {dirty:?}");
        assert!(within(dirty.speed_m_per_s, clean.speed_m_per_s, 0.10), "{clean:?} vs {dirty:?}");
        // Least squares would not survive it: the mean residual moves by minutes.
        assert!(within(dirty.turnout_s, 150.0, 0.15) && within(dirty.speed_m_per_s, 7.0, 0.15), "{dirty:?}");
    }

    #[test]
    fn degenerate_distances_keep_the_prior_pace() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample { unit_id: "u".into(), distance_m: 1000.0, travel_s: 300.0 + (i % 5) as f64 })
            .collect();
        let m = fit(&samples, &PRIOR, &FitSettings::default()).unwrap().model;
        assert_eq!(m.speed_m_per_s, PRIOR.speed_m_per_s);
        // 302 (median) - 1000 * 1.3 / 11.1.
        assert!((m.turnout_s - (302.0 - 1000.0 * PRIOR.pace_s_per_m())).abs() < 1e-9, "{m:?}");
        // Slower with distance is never learnt as faster: a falling slope keeps the pace.
        let falling: Vec<Sample> = (0..50)
            .map(|i| Sample { unit_id: "u".into(), distance_m: 100.0 * i as f64, travel_s: 900.0 - i as f64 })
            .collect();
        let m = fit(&falling, &PRIOR, &FitSettings::default()).unwrap().model;
        assert_eq!(m.speed_m_per_s, PRIOR.speed_m_per_s);
        // Travel faster than the clamp allows: speed is clamped, turnout >= 0.
        let fast: Vec<Sample> = (0..50)
            .map(|i| Sample { unit_id: "u".into(), distance_m: 1000.0 * i as f64, travel_s: i as f64 })
            .collect();
        let m = fit(&fast, &PRIOR, &FitSettings::default()).unwrap().model;
        assert!((m.speed_m_per_s - SPEED_RANGE_M_PER_S.1).abs() < 1e-6, "{m:?}");
        assert!(m.speed_m_per_s <= SPEED_RANGE_M_PER_S.1);
        assert!(m.turnout_s >= 0.0);
    }

    #[test]
    fn many_samples_are_subsampled_deterministically() {
        let samples = synthetic(seed(), 3000, 30, &TRUTH);
        let a = fit(&samples, &PRIOR, &FitSettings::default()).unwrap();
        let b = fit(&samples, &PRIOR, &FitSettings::default()).unwrap();
        assert_eq!(a, b);
        assert!(within(a.model.speed_m_per_s, 7.0, 0.05), "{:?}", a.model);
    }

    #[test]
    fn the_promise_covers_its_quantile_of_fresh_arrivals() {
        let seed = seed();
        for q in [0.5, 0.8, 0.9] {
            let settings = FitSettings { promise_quantile: q, ..FitSettings::default() };
            let fit = fit(&synthetic(seed, 2000, 40, &TRUTH), &PRIOR, &settings).unwrap();
            let fresh = synthetic(seed.wrapping_add(1), 4000, 40, &TRUTH);
            let stats = ErrorStats::of(fresh.iter().map(|x| {
                let offset = fit.unit_offset_s(&x.unit_id);
                (fit.model.point_s(x.distance_m) + offset, fit.model.promised_s(x.distance_m) + offset, x.travel_s)
            }));
            let share = stats.share_by_promise.unwrap();
            assert!((share - q).abs() < 0.04, "q {q}: share {share}");
        }
    }

    #[test]
    fn the_promise_holds_as_often_near_as_far() {
        let seed = seed();
        let fit = fit(&synthetic(seed, 3000, 40, &TRUTH), &PRIOR, &FitSettings::default()).unwrap();
        let fresh = synthetic(seed.wrapping_add(7), 6000, 40, &TRUTH);
        let share = |band: &dyn Fn(f64) -> bool| {
            let (mut n, mut kept) = (0usize, 0usize);
            for x in fresh.iter().filter(|x| band(x.distance_m)) {
                n += 1;
                let promised = fit.model.promised_s(x.distance_m) + fit.unit_offset_s(&x.unit_id);
                kept += usize::from(x.travel_s <= promised);
            }
            kept as f64 / n as f64
        };
        // Synthetic distances are 200 m to 8 km.
        let (near, far) = (share(&|d| d < 2000.0), share(&|d| d > 6000.0));
        assert!((near - 0.8).abs() < 0.06 && (far - 0.8).abs() < 0.06, "near {near:.3}, far {far:.3}");
    }

    #[test]
    fn unit_offsets_are_shrunk_towards_the_tier() {
        let mut samples = synthetic(seed(), 600, 12, &TRUTH);
        let late = |n: usize, unit: &'static str| {
            (0..n).map(move |i| Sample { unit_id: unit.into(), distance_m: 1000.0 + 10.0 * i as f64, travel_s: 0.0 })
        };
        samples.extend(late(2, "few").chain(late(6, "some")).chain(late(50, "many")));
        // Each of them 120 s later than the truth.
        for x in samples.iter_mut().filter(|x| !x.unit_id.starts_with('u')) {
            x.travel_s = TRUTH.point_s(x.distance_m) + 120.0;
        }
        let fit = fit(&samples, &PRIOR, &FitSettings::default()).unwrap();
        assert_eq!(fit.unit_offsets.get("few"), None, "2 arrivals: no offset of its own");
        let some = fit.unit_offset_s("some");
        let many = fit.unit_offset_s("many");
        // Its own lateness: its median residual under the fitted tier model.
        let own = |unit: &str| {
            let mut r: Vec<f64> = samples
                .iter()
                .filter(|x| x.unit_id == unit)
                .map(|x| x.travel_s - fit.model.point_s(x.distance_m))
                .collect();
            quantile(&mut r, 0.5).unwrap()
        };
        assert!(own("many") > 60.0, "{}", own("many"));
        // n/(n+10): 6/16 and 50/60 of its own lateness.
        assert!((some - 6.0 / 16.0 * own("some")).abs() < 1e-9, "some {some} own {}", own("some"));
        assert!((many - 50.0 / 60.0 * own("many")).abs() < 1e-9, "many {many} own {}", own("many"));
    }

    #[test]
    fn a_step_is_bounded() {
        let mut rng = SplitMix64(seed());
        for _ in 0..1000 {
            let mut model = || TravelModel {
                turnout_s: rng.range(0.0, 400.0),
                speed_m_per_s: rng.range(0.5, 30.0),
                circuity: rng.range(1.0, 2.0),
                margin_s: rng.range(-20.0, 200.0),
                margin_ratio: rng.range(-0.3, 1.5),
            };
            let (current, target) = (model(), model());
            let next = step_towards(&current, &target, 0.25);
            assert!((next.turnout_s - current.turnout_s).abs() <= 0.25 * current.turnout_s.max(30.0) + 1e-9);
            assert!((next.speed_m_per_s / current.speed_m_per_s - 1.0).abs() <= 0.25 + 1e-9);
            let margin_room = 0.25 * (current.turnout_s + current.margin_s).max(30.0);
            assert!((next.margin_s - current.margin_s).abs() <= margin_room + 1e-9);
            let ratio_room = 0.25 * current.margin_ratio.abs().max(0.2);
            assert!((next.margin_ratio - current.margin_ratio).abs() <= ratio_room + 1e-9);
            // Each parameter moves towards the target, never past it.
            for (c, n, t) in [
                (current.turnout_s, next.turnout_s, target.turnout_s),
                (current.speed_m_per_s, next.speed_m_per_s, target.speed_m_per_s),
                (current.margin_s, next.margin_s, target.margin_s),
                (current.margin_ratio, next.margin_ratio, target.margin_ratio),
            ] {
                assert!((n - c) * (t - c) >= 0.0 && (n - c).abs() <= (t - c).abs() + 1e-9);
            }
        }
        // Small changes are taken whole; repeated steps arrive.
        let mut m = PRIOR;
        for _ in 0..20 {
            m = step_towards(&m, &TravelModel { margin_s: 40.0, ..TRUTH }, 0.25);
        }
        assert_eq!(m, TravelModel { margin_s: 40.0, ..TRUTH });
    }

    #[test]
    fn a_calibration_round_trips_and_names_a_bad_field() {
        let mut c = Calibration::new(0.8, "responses.csv");
        c.tiers.t10 = CalibratedTier {
            model: Some(TravelModel { margin_s: 40.0, ..TRUTH }),
            arrivals: 500,
            unit_offsets_s: [("T10-01".to_string(), 12.5)].into(),
        };
        c.tiers.t1.arrivals = 3;
        assert_eq!(Calibration::parse(&c.to_json()), Ok(c.clone()));
        let broken = c.to_json().replace("\"speed_m_per_s\": 7.0", "\"speed_m_per_s\": 0.0");
        assert_eq!(Calibration::parse(&broken).unwrap_err().field, "tiers.t10.model.speed_m_per_s");
        let future = c.to_json().replace(CALIBRATION_FORMAT, "lastmile-eta-calibration/2");
        assert_eq!(Calibration::parse(&future).unwrap_err().field, "format");
        let unknown = c.to_json().replacen("\"arrivals\"", "\"arrivalz\"", 1);
        let e = Calibration::parse(&unknown).unwrap_err();
        assert_eq!(e.field, "json");
        assert!(e.problem.contains("arrivalz"), "{e}");
        let q = c.to_json().replace("\"promise_quantile\": 0.8", "\"promise_quantile\": 1.0");
        assert_eq!(Calibration::parse(&q).unwrap_err().field, "promise_quantile");
    }
}
