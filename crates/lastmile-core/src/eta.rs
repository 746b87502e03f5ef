//! How wrong the ETA is: error figures of predictions against real
//! arrivals. (The calibration that learns the travel model lives here too.)

use serde::{Deserialize, Serialize};

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
}
