//! `[eta]`: the self-calibrating ETA (see `app::eta` and docs/eta.md).

use std::path::PathBuf;

use lastmile_core::Tier;
use lastmile_core::eta::{Calibration, FitSettings, TravelModel};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtaConfig {
    /// Learn each tier's travel model from verified arrivals (false: the
    /// configured parameters, or the calibration file's, are used as they
    /// are; arrivals are still scored).
    pub learn: bool,
    /// Keep the current (possibly learnt) model: nothing new is learnt
    /// until this is turned off again; arrivals are still scored.
    pub frozen: bool,
    /// "Within target" means at least this share of such units arrived in
    /// time: selection uses the ETA at this quantile of the learnt error.
    pub promise_quantile: f64,
    /// A tier keeps its prior until it has this many verified arrivals.
    pub min_arrivals: usize,
    /// Most recent verified arrivals per tier the fit reads.
    pub window_arrivals: usize,
    /// Refit a tier after this many new arrivals.
    pub refit_every: usize,
    /// Largest relative change of turnout and speed per refit.
    pub max_step: f64,
    /// A unit needs this many arrivals for an offset of its own ...
    pub unit_min_arrivals: usize,
    /// ... shrunk towards its tier by n / (n + unit_shrinkage).
    pub unit_shrinkage: f64,
    /// A file written by `lastmile eta fit`: its models are the prior
    /// (instead of `dispatch.tiers`) until enough arrivals are learnt.
    pub calibration_file: Option<PathBuf>,
    /// Tiers whose travel model an operator fixed: never learnt.
    pub pin: Vec<PinnedTier>,
    /// Just after start (in the background), the most recently closed
    /// incidents read back from history to refill the arrival windows.
    pub warm_start_incidents: usize,
}

impl Default for EtaConfig {
    fn default() -> Self {
        let fit = FitSettings::default();
        EtaConfig {
            learn: true,
            frozen: false,
            promise_quantile: fit.promise_quantile,
            min_arrivals: fit.min_arrivals,
            window_arrivals: 500,
            refit_every: 10,
            max_step: fit.max_step,
            unit_min_arrivals: fit.unit_min_arrivals,
            unit_shrinkage: fit.unit_shrinkage,
            calibration_file: None,
            pin: Vec::new(),
            warm_start_incidents: 20_000,
        }
    }
}

/// `[[eta.pin]]`: one tier's travel model, fixed by an operator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedTier {
    /// 1, 3, 5 or 10.
    pub tier: u32,
    pub turnout_s: f64,
    pub speed_m_per_s: f64,
    pub circuity: f64,
    #[serde(default)]
    pub margin_s: f64,
    /// The promise is the estimate times 1 + this, plus `margin_s`.
    #[serde(default)]
    pub margin_ratio: f64,
}

impl EtaConfig {
    pub fn fit_settings(&self) -> FitSettings {
        FitSettings {
            promise_quantile: self.promise_quantile,
            min_arrivals: self.min_arrivals,
            max_step: self.max_step,
            unit_min_arrivals: self.unit_min_arrivals,
            unit_shrinkage: self.unit_shrinkage,
        }
    }

    /// The pinned model of `tier`, if an operator pinned it.
    pub fn pinned(&self, tier: Tier) -> Option<TravelModel> {
        self.pin.iter().find(|p| p.tier == tier.minutes()).map(|p| TravelModel {
            turnout_s: p.turnout_s,
            speed_m_per_s: p.speed_m_per_s,
            circuity: p.circuity,
            margin_s: p.margin_s,
            margin_ratio: p.margin_ratio,
        })
    }

    /// The calibration file's content (read and checked at start).
    pub fn load_calibration(&self) -> Result<Option<Calibration>, (String, String)> {
        let Some(path) = &self.calibration_file else { return Ok(None) };
        let key = "eta.calibration_file".to_string();
        let text = std::fs::read_to_string(path).map_err(|e| (key.clone(), format!("{}: {e}", path.display())))?;
        Calibration::parse(&text).map(Some).map_err(|e| (key, format!("{}: {e}", path.display())))
    }

    /// Every value in range; the error is (key, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, p: String| Err((format!("eta.{k}"), p));
        if !(self.promise_quantile > 0.0 && self.promise_quantile < 1.0) {
            return bad("promise_quantile", format!("{} is not in (0, 1) (e.g. 0.8)", self.promise_quantile));
        }
        if self.min_arrivals < 5 {
            return bad("min_arrivals", "must be at least 5".into());
        }
        if self.window_arrivals < self.min_arrivals || self.window_arrivals > 100_000 {
            return bad("window_arrivals", "must be at least min_arrivals and at most 100000".into());
        }
        if self.refit_every == 0 {
            return bad("refit_every", "must be at least 1".into());
        }
        if !(self.max_step > 0.0 && self.max_step <= 1.0) {
            return bad("max_step", format!("{} is not in (0, 1]", self.max_step));
        }
        if !(self.unit_shrinkage.is_finite() && self.unit_shrinkage >= 0.0) {
            return bad("unit_shrinkage", "must be a number >= 0".into());
        }
        if self.warm_start_incidents > 1_000_000 {
            return bad("warm_start_incidents", "must be at most 1000000".into());
        }
        for (i, p) in self.pin.iter().enumerate() {
            let key = |f: &str| format!("pin[{i}].{f}");
            if Tier::from_minutes(p.tier).is_none() {
                return bad(&key("tier"), format!("{} is not a tier (1, 3, 5 or 10)", p.tier));
            }
            if self.pin[..i].iter().any(|q| q.tier == p.tier) {
                return bad(&key("tier"), format!("tier {} is pinned twice", p.tier));
            }
            if !(p.turnout_s.is_finite() && p.turnout_s >= 0.0) {
                return bad(&key("turnout_s"), "must be a number >= 0".into());
            }
            if !(p.speed_m_per_s > 0.5 && p.speed_m_per_s <= 60.0) {
                return bad(&key("speed_m_per_s"), "must be in (0.5, 60]".into());
            }
            if !(p.circuity.is_finite() && (1.0..=5.0).contains(&p.circuity)) {
                return bad(&key("circuity"), "must be in [1, 5]".into());
            }
            if !(p.margin_s.is_finite() && p.margin_s >= 0.0) {
                return bad(&key("margin_s"), "must be a number >= 0".into());
            }
            if !(p.margin_ratio.is_finite() && (0.0..=3.0).contains(&p.margin_ratio)) {
                return bad(&key("margin_ratio"), "must be in [0, 3]".into());
            }
        }
        self.load_calibration().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConfigSource, LastmileConfig, embedded_config_text};

    /// The embedded file with `lines` at the end of its `[eta]` section
    /// (where a `[[eta.pin]]` table may go).
    fn with_eta(lines: &str) -> Result<LastmileConfig, ConfigError> {
        let text = embedded_config_text().replace("\n[webhooks]\n", &format!("\n{lines}\n\n[webhooks]\n"));
        LastmileConfig::parse(&text, ConfigSource::Embedded)
    }

    fn refusal(lines: &str) -> String {
        match with_eta(lines) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{lines:?} was accepted"),
        }
    }

    #[test]
    fn the_embedded_default_learns_with_a_promise_at_0_8() {
        let c = LastmileConfig::embedded().unwrap().eta;
        assert!(c.learn && !c.frozen && c.pin.is_empty() && c.calibration_file.is_none());
        assert_eq!((c.promise_quantile, c.min_arrivals, c.refit_every), (0.8, 30, 10));
    }

    #[test]
    fn bad_eta_settings_are_refused_naming_the_key() {
        let text = embedded_config_text().replace("promise_quantile = 0.8", "promise_quantile = 1.5");
        let e = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(e.contains("eta.promise_quantile") && e.contains("1.5"), "{e}");
        let e = refusal("[[eta.pin]]\ntier = 4\nturnout_s = 100\nspeed_m_per_s = 8\ncircuity = 1.3");
        assert!(e.contains("eta.pin[0].tier") && e.contains("1, 3, 5 or 10"), "{e}");
        let text = embedded_config_text().replace("[eta]\n", "[eta]\ncalibration_file = \"/nonexistent/eta.json\"\n");
        let e = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(e.contains("eta.calibration_file") && e.contains("/nonexistent/eta.json"), "{e}");
    }

    #[test]
    fn a_pin_is_read() {
        let c = with_eta("[[eta.pin]]\ntier = 10\nturnout_s = 170\nspeed_m_per_s = 9\ncircuity = 1.3\nmargin_s = 60")
            .unwrap()
            .eta;
        let pin = c.pinned(lastmile_core::Tier::T10).unwrap();
        assert_eq!((pin.turnout_s, pin.speed_m_per_s, pin.margin_s), (170.0, 9.0, 60.0));
        assert!(c.pinned(lastmile_core::Tier::T5).is_none());
    }
}
