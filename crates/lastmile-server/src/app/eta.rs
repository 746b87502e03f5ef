//! The self-calibrating ETA: each tier's travel model learnt from verified
//! arrivals, and how wrong it is.
//!
//! Every closed incident's verified arrivals (page -> on scene, with the
//! unit's distance when paged) join a bounded window per tier (the unit's
//! own tier: its model predicted the ETA). Every `eta.refit_every` new
//! arrivals, once a tier has `eta.min_arrivals`, the tier is refitted
//! robustly (`lastmile_core::eta::fit`) and moved towards the fit by at
//! most `eta.max_step` (one bad batch cannot swing the promises); the
//! margin is the `eta.promise_quantile` quantile of the error, so "within
//! target" means at least that share of such units arrived in time. The
//! dispatcher's selection uses the result at once, and the learnt state is
//! journaled in the commit of the close that changed it (so a restart
//! keeps it); the windows are refilled from history just after start, off
//! the start-up path ([`Eta::warm`]).
//!
//! Until a tier has learnt, its prior holds: the calibration file's model
//! (`eta.calibration_file`), else `dispatch.tiers`. A pinned tier
//! (`[[eta.pin]]`) never learns; `eta.frozen` stops all learning. Arrivals
//! are scored in every case.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use lastmile_core::eta::{
    CalibratedTier, Calibration, ErrorStats, FitSettings, Sample, TravelModel, fit, step_towards,
};
use lastmile_core::outcome::Outcome;
use lastmile_core::{Dispatcher, Tier};
use serde::Serialize;

use crate::config::eta::EtaConfig;
use crate::journal::JournalOp;

/// Where a tier's current model comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `dispatch.tiers` (the configured parameters).
    Prior,
    /// `eta.calibration_file`.
    CalibrationFile,
    /// Learnt from this server's arrivals.
    Learnt,
    /// `[[eta.pin]]`.
    Pinned,
}

/// One verified arrival, with what was promised when the unit was paged.
#[derive(Clone, Debug)]
struct Arrival {
    sample: Sample,
    promised_s: f64,
}

struct TierState {
    source: Source,
    model: TravelModel,
    unit_offsets: BTreeMap<String, f64>,
    /// Arrivals behind the current learnt model.
    learnt_from: usize,
    window: VecDeque<Arrival>,
    since_refit: usize,
    refits: u64,
}

pub struct Eta {
    config: EtaConfig,
    settings: FitSettings,
    tiers: Mutex<[TierState; 4]>,
}

/// What `GET /v1/eta` answers.
#[derive(Clone, Debug, Serialize)]
pub struct EtaStatus {
    pub promise_quantile: f64,
    pub learn: bool,
    pub frozen: bool,
    pub min_arrivals: usize,
    pub window_arrivals: usize,
    pub tiers: Vec<TierStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierStatus {
    /// `TIER_1` ... `TIER_10`.
    pub tier: String,
    pub source: Source,
    pub turnout_s: f64,
    pub speed_m_per_s: f64,
    pub circuity: f64,
    pub margin_s: f64,
    /// The promise is the estimate times 1 + this (see `TravelModel`).
    pub margin_ratio: f64,
    /// Arrivals behind the current model (0 for a prior or a pin).
    pub arrivals: usize,
    /// Verified arrivals in the window now.
    pub window: usize,
    pub refits: u64,
    /// Units with an offset of their own.
    pub units_with_offset: usize,
    /// The window's arrivals: errors against the current model's point
    /// estimate; `share_by_promise` against what each was promised when paged.
    pub recent: ErrorStats,
    /// The share of the window's arrivals on scene by the promise the
    /// current model would make (the promise quantile, in-sample).
    pub share_by_current_promise: Option<f64>,
}

fn tier_name(tier: Tier) -> String {
    format!("TIER_{}", tier.minutes())
}

impl Eta {
    /// Each tier's model at start: a pin, else the journal's learnt state,
    /// else the calibration file's, else the configured parameters. Hands
    /// the models to the dispatcher. The windows start empty: [`Eta::warm`]
    /// refills them from history, off the start-up path.
    pub fn start(
        config: &EtaConfig,
        file: Option<&Calibration>,
        stored: Option<&Calibration>,
        dispatcher: &Dispatcher,
    ) -> Eta {
        let tiers = Tier::ALL.map(|tier| {
            let configured = TravelModel::prior(&dispatcher.travel(tier));
            fn from(c: Option<&Calibration>, tier: Tier) -> Option<(TravelModel, &CalibratedTier)> {
                c.and_then(|c| c.tiers.get(tier).model.map(|m| (m, c.tiers.get(tier))))
            }
            let (source, model, unit_offsets, learnt_from) = if let Some(pin) = config.pinned(tier) {
                (Source::Pinned, pin, BTreeMap::new(), 0)
            } else if let Some((m, t)) = from(stored, tier) {
                (Source::Learnt, m, t.unit_offsets_s.clone(), t.arrivals)
            } else if let Some((m, t)) = from(file, tier) {
                (Source::CalibrationFile, m, t.unit_offsets_s.clone(), 0)
            } else {
                (Source::Prior, configured, BTreeMap::new(), 0)
            };
            TierState { source, model, unit_offsets, learnt_from, window: VecDeque::new(), since_refit: 0, refits: 0 }
        });
        let eta = Eta { config: config.clone(), settings: config.fit_settings(), tiers: Mutex::new(tiers) };
        {
            let tiers = eta.lock();
            for tier in Tier::ALL {
                apply(dispatcher, tier, &tiers[tier.index()]);
            }
        }
        eta
    }

    /// Refills the windows with the verified arrivals of `recent` (the most
    /// recently closed incidents, most recent first), before whatever
    /// arrived since start; due no refit of its own.
    pub fn warm(&self, recent: &[Outcome]) {
        let mut earlier: [VecDeque<Arrival>; 4] = Default::default();
        for (tier, arrival) in recent.iter().rev().flat_map(arrivals) {
            earlier[tier.index()].push_back(arrival);
        }
        let mut tiers = self.lock();
        for (t, mut window) in tiers.iter_mut().zip(earlier) {
            window.append(&mut t.window);
            while window.len() > self.config.window_arrivals {
                window.pop_front();
            }
            t.window = window;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [TierState; 4]> {
        self.tiers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `outcome`'s verified arrivals to their tiers' windows; the
    /// tiers that got one.
    fn push_arrivals(&self, tiers: &mut [TierState; 4], outcome: &Outcome) -> [bool; 4] {
        let mut touched = [false; 4];
        for (tier, arrival) in arrivals(outcome) {
            let t = &mut tiers[tier.index()];
            t.window.push_back(arrival);
            while t.window.len() > self.config.window_arrivals {
                t.window.pop_front();
            }
            t.since_refit += 1;
            touched[tier.index()] = true;
        }
        touched
    }

    /// Learns from a closed incident's outcome: its verified arrivals join
    /// the windows, and a tier due for a refit is refitted, handed to the
    /// dispatcher and (with a journal) stored in `op`'s commit.
    pub fn observe(&self, outcome: &Outcome, op: Option<&JournalOp>, dispatcher: &Dispatcher) {
        let mut tiers = self.lock();
        let touched = self.push_arrivals(&mut tiers, outcome);
        let mut changed = false;
        for tier in Tier::ALL {
            if touched[tier.index()] && self.refit(&mut tiers[tier.index()]) {
                apply(dispatcher, tier, &tiers[tier.index()]);
                changed = true;
            }
        }
        if changed && let Some(op) = op {
            op.store_calibration(learnt(&tiers, self.config.promise_quantile).to_json().into_bytes());
        }
    }

    /// Refits `t` if it is due; whether its model changed.
    fn refit(&self, t: &mut TierState) -> bool {
        let due = t.since_refit >= self.config.refit_every && t.window.len() >= self.config.min_arrivals;
        if !self.config.learn || self.config.frozen || t.source == Source::Pinned || !due {
            return false;
        }
        t.since_refit = 0;
        let samples: Vec<Sample> = t.window.iter().map(|a| a.sample.clone()).collect();
        let Some(fitted) = fit(&samples, &t.model, &self.settings) else { return false };
        let next = step_towards(&t.model, &fitted.model, self.config.max_step);
        t.refits += 1;
        t.learnt_from = fitted.arrivals;
        t.unit_offsets = fitted.unit_offsets;
        t.source = Source::Learnt;
        let changed = next != t.model || !t.unit_offsets.is_empty();
        t.model = next;
        changed
    }

    /// Each tier's model, where it comes from and how wrong it is.
    pub fn status(&self) -> EtaStatus {
        let tiers = self.lock();
        EtaStatus {
            promise_quantile: self.config.promise_quantile,
            learn: self.config.learn,
            frozen: self.config.frozen,
            min_arrivals: self.config.min_arrivals,
            window_arrivals: self.config.window_arrivals,
            tiers: Tier::ALL
                .into_iter()
                .map(|tier| {
                    let t = &tiers[tier.index()];
                    let m = &t.model;
                    let offset = |a: &Arrival| t.unit_offsets.get(&a.sample.unit_id).copied().unwrap_or(0.0);
                    let recent = ErrorStats::of(
                        t.window
                            .iter()
                            .map(|a| (m.point_s(a.sample.distance_m) + offset(a), a.promised_s, a.sample.travel_s)),
                    );
                    let current = ErrorStats::of(t.window.iter().map(|a| {
                        let promised = (m.point_s(a.sample.distance_m) + offset(a)) * m.scale() + m.margin_s;
                        (promised, promised, a.sample.travel_s)
                    }));
                    TierStatus {
                        tier: tier_name(tier),
                        source: t.source,
                        turnout_s: m.turnout_s,
                        speed_m_per_s: m.speed_m_per_s,
                        circuity: m.circuity,
                        margin_s: m.margin_s,
                        margin_ratio: m.margin_ratio,
                        arrivals: t.learnt_from,
                        window: t.window.len(),
                        refits: t.refits,
                        units_with_offset: t.unit_offsets.len(),
                        recent,
                        share_by_current_promise: current.share_by_promise,
                    }
                })
                .collect(),
        }
    }
}

/// The verified arrivals of a closed incident, each under its unit's own
/// tier (whose model predicted its ETA).
fn arrivals(outcome: &Outcome) -> impl Iterator<Item = (Tier, Arrival)> + '_ {
    outcome.assignments.iter().filter_map(|a| {
        let travel_s = a.travel_s().filter(|s| s.is_finite() && *s >= 0.0 && a.distance_m.is_finite())?;
        let sample = Sample { unit_id: a.unit_id.clone(), distance_m: a.distance_m, travel_s };
        Some((a.unit_tier, Arrival { sample, promised_s: a.eta_s as f64 }))
    })
}

/// Hands a tier's model and its units' offsets to the dispatcher's
/// selection (a model that is not one is logged and left out: the previous
/// one stays).
fn apply(dispatcher: &Dispatcher, tier: Tier, t: &TierState) {
    let model = &t.model;
    // The promise folded into the travel parameters (`TravelModel::apply`).
    let (turnout, speed) = (model.turnout_s * model.scale() + model.margin_s, model.speed_m_per_s / model.scale());
    if let Err(e) = dispatcher.set_travel(tier, turnout, speed, model.circuity) {
        tracing::error!(%tier, error = %e, "ETA calibration: model refused; the previous one stays");
        return;
    }
    let scale = model.scale();
    let offsets =
        t.unit_offsets.iter().map(|(unit, offset)| (std::sync::Arc::<str>::from(unit.as_str()), offset * scale));
    dispatcher.set_unit_offsets(tier, lastmile_core::select::UnitOffsets::new(offsets));
}

/// The learnt tiers as a calibration (what the journal keeps).
fn learnt(tiers: &[TierState; 4], promise_quantile: f64) -> Calibration {
    let mut c = Calibration::new(promise_quantile, "learnt by lastmile from verified arrivals");
    for tier in Tier::ALL {
        let t = &tiers[tier.index()];
        if t.source == Source::Learnt {
            let slot = c.tiers.get_mut(tier);
            slot.model = Some(t.model);
            slot.arrivals = t.learnt_from;
            slot.unit_offsets_s = t.unit_offsets.clone();
        }
    }
    c
}

#[cfg(test)]
#[path = "eta_tests.rs"]
mod tests;
