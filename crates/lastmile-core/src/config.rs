//! The dispatch configuration: per-tier travel parameters and the response
//! plan. One typed source, unknown keys rejected, validated once at start.

use serde::{Deserialize, Serialize};

use crate::incident::IncidentKind;
use crate::tier::{Tier, TierParams};

/// Most units one tier of one incident may ask for; bounds the work one report
/// can do.
pub const MAX_UNITS_PER_TIER: u32 = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    pub tiers: TierTable,
    pub response_plan: ResponsePlan,
    pub escalation: EscalationConfig,
    /// An ON_SCENE report counts as an arrival (toward the tier's MET) only
    /// when the unit's last position fix is within this many metres of the
    /// incident (haversine): a terminal can press ON_SCENE anywhere, and a
    /// target met on paper is not one met on the ground.
    #[serde(default = "default_on_scene_radius_m")]
    pub on_scene_radius_m: f64,
    /// ... and that fix is at most this many seconds old when the report
    /// comes: a position from before the unit set out proves nothing.
    #[serde(default = "default_on_scene_fix_max_age_s")]
    pub on_scene_fix_max_age_s: u32,
    /// How open slots are filled when units are scarce (the waiting queue,
    /// deferred fallback, pre-emption): see [`PolicyConfig`].
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Capabilities a unit must list to fill a tier's slot for a kind of
    /// incident; the first rule matching the kind and tier decides.
    #[serde(default)]
    pub capabilities: Vec<CapabilityRule>,
}

/// How dispatch shares scarce units between incidents (the README's
/// "Selection rule" states it exactly).
///
/// - Every slot a tier could not fill waits in a queue; a unit that becomes
///   dispatchable (released, returned, recovered, back in service, added,
///   moved) fills the first waiting slot it can, highest severity first, then
///   oldest report.
/// - A unit beyond a slot's target is paged for it only once
///   `fallback_delay_s` have passed since the report: units that later
///   reports could reach within target are not spent on a late arrival first.
/// - With `preempt_unacknowledged`, a report may take a unit whose page for
///   another incident is not yet acknowledged, when the unit is within target
///   for the report and the other incident has lower severity, or the same
///   severity and the unit is beyond target there. The other incident's slot
///   waits again. A page a crew has acknowledged is never taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Seconds after a report before its short tiers page units beyond
    /// target; 0 pages them at once (and then nothing later can reach a
    /// within-target unit they took, except by pre-emption).
    #[serde(default = "default_fallback_delay_s")]
    pub fallback_delay_s: u32,
    /// Fallback comes in rounds: a slot's fallback is due at the first
    /// multiple of this many seconds (of the clock) at or after its delay,
    /// and each round matches every due slot of a tier to the free units
    /// together (most slots filled, then higher severity, then least ETA),
    /// rather than one report after another. 1 = a round per second.
    #[serde(default = "default_fallback_round_s")]
    pub fallback_round_s: u32,
    #[serde(default = "default_true")]
    pub preempt_unacknowledged: bool,
}

fn default_fallback_delay_s() -> u32 {
    DEFAULT_FALLBACK_DELAY_S
}

fn default_fallback_round_s() -> u32 {
    DEFAULT_FALLBACK_ROUND_S
}

/// The default of `dispatch.policy.fallback_round_s`.
pub const DEFAULT_FALLBACK_ROUND_S: u32 = 10;

fn default_true() -> bool {
    true
}

/// The default of `dispatch.policy.fallback_delay_s` (see BENCHMARKS.md,
/// "Dispatch under surge", for how it was chosen).
pub const DEFAULT_FALLBACK_DELAY_S: u32 = 20;

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            fallback_delay_s: DEFAULT_FALLBACK_DELAY_S,
            fallback_round_s: DEFAULT_FALLBACK_ROUND_S,
            preempt_unacknowledged: true,
        }
    }
}

/// Capabilities required of a tier's units for some kinds of incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRule {
    /// Kinds the rule applies to; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<IncidentKind>,
    /// Tiers (by minutes: 1, 3, 5, 10) the rule applies to; empty = every tier.
    #[serde(default)]
    pub tiers: Vec<u32>,
    /// Every one of these must be among the unit's capabilities.
    pub require: Vec<String>,
}

/// Most capability rules, and capabilities one rule may require.
pub const MAX_CAPABILITY_RULES: usize = 64;
pub const MAX_REQUIRED_CAPABILITIES: usize = 8;

fn default_on_scene_radius_m() -> f64 {
    150.0
}

fn default_on_scene_fix_max_age_s() -> u32 {
    120
}

/// Paging, acknowledgement and escalation policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Pages one slot of a tier may take (first page + re-pages) before the
    /// tier is ESCALATED to the dispatchers.
    pub max_attempts: u32,
    /// A RETURNING unit that has not reported AVAILABLE becomes AVAILABLE after
    /// this many seconds.
    pub return_to_available_s: u32,
    /// Whether a RETURNING unit may be dispatched from where it is.
    pub dispatch_returning_units: bool,
    /// At most one position event per unit per this many seconds on the live
    /// feed (the position itself is always applied).
    pub position_event_interval_s: u32,
}

/// Parameters of each tier, keyed `t1`, `t3`, `t5`, `t10` in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    pub t1: TierParams,
    pub t3: TierParams,
    pub t5: TierParams,
    pub t10: TierParams,
}

impl TierTable {
    pub fn get(&self, tier: Tier) -> &TierParams {
        match tier {
            Tier::T1 => &self.t1,
            Tier::T3 => &self.t3,
            Tier::T5 => &self.t5,
            Tier::T10 => &self.t10,
        }
    }
}

/// How many units of each tier an incident gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCounts {
    #[serde(default)]
    pub t1: u32,
    #[serde(default)]
    pub t3: u32,
    #[serde(default)]
    pub t5: u32,
    #[serde(default)]
    pub t10: u32,
}

impl TierCounts {
    pub fn get(&self, tier: Tier) -> u32 {
        match tier {
            Tier::T1 => self.t1,
            Tier::T3 => self.t3,
            Tier::T5 => self.t5,
            Tier::T10 => self.t10,
        }
    }
}

/// The response plan: the first rule matching an incident's kind and severity
/// decides; `default` covers the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsePlan {
    pub default: TierCounts,
    #[serde(default)]
    pub rules: Vec<PlanRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRule {
    /// Kinds the rule applies to; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<IncidentKind>,
    /// Severities (1..=4) the rule applies to; empty = every severity.
    #[serde(default)]
    pub severities: Vec<u8>,
    pub units: TierCounts,
}

/// A rule's list matches `value`: empty = every value.
fn matches_any<T: PartialEq>(list: &[T], value: &T) -> bool {
    list.is_empty() || list.contains(value)
}

impl DispatchConfig {
    /// What a unit of `tier` must be able to do for an incident of `kind`
    /// (empty: anything goes).
    pub fn required_capabilities(&self, kind: IncidentKind, tier: Tier) -> &[String] {
        self.capabilities
            .iter()
            .find(|r| matches_any(&r.kinds, &kind) && matches_any(&r.tiers, &tier.minutes()))
            .map_or(&[], |r| r.require.as_slice())
    }
}

impl ResponsePlan {
    pub fn counts_for(&self, kind: IncidentKind, severity: u8) -> TierCounts {
        self.rules
            .iter()
            .find(|r| matches_any(&r.kinds, &kind) && matches_any(&r.severities, &severity))
            .map(|r| r.units)
            .unwrap_or(self.default)
    }
}

/// A configuration value that cannot be used; names the key.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

impl DispatchConfig {
    /// Checks every value once, at start; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for tier in Tier::ALL {
            let p = self.tiers.get(tier);
            let key = |field: &str| format!("dispatch.tiers.t{}.{field}", tier.minutes());
            if p.target_s == 0 || p.target_s > 24 * 3600 {
                return Err(bad(key("target_s"), "must be in 1..=86400 seconds"));
            }
            if !p.turnout_s.is_finite() || p.turnout_s < 0.0 || p.turnout_s >= p.target_s as f64 {
                return Err(bad(key("turnout_s"), "must be >= 0 and below target_s"));
            }
            if !p.speed_m_per_s.is_finite() || p.speed_m_per_s <= 0.0 || p.speed_m_per_s > 100.0 {
                return Err(bad(key("speed_m_per_s"), "must be in (0, 100] metres per second"));
            }
            if !p.circuity.is_finite() || !(1.0..=5.0).contains(&p.circuity) {
                return Err(bad(key("circuity"), "must be in [1, 5]"));
            }
            if !p.fallback_factor.is_finite() || !(1.0..=10.0).contains(&p.fallback_factor) {
                return Err(bad(key("fallback_factor"), "must be in [1, 10]"));
            }
            if p.ack_timeout_s == 0 || p.ack_timeout_s > 3600 {
                return Err(bad(key("ack_timeout_s"), "must be in 1..=3600 seconds"));
            }
        }
        let check_counts = |key: &str, c: &TierCounts| -> Result<(), ConfigError> {
            for tier in Tier::ALL {
                if c.get(tier) > MAX_UNITS_PER_TIER {
                    return Err(bad(
                        format!("{key}.t{}", tier.minutes()),
                        format!("at most {MAX_UNITS_PER_TIER} units per tier"),
                    ));
                }
            }
            if Tier::ALL.iter().all(|t| c.get(*t) == 0) {
                return Err(bad(key, "asks for no unit at all"));
            }
            Ok(())
        };
        let e = &self.escalation;
        if e.max_attempts == 0 || e.max_attempts > 100 {
            return Err(bad("dispatch.escalation.max_attempts", "must be in 1..=100"));
        }
        if e.return_to_available_s == 0 {
            return Err(bad("dispatch.escalation.return_to_available_s", "must be greater than 0"));
        }
        if !self.on_scene_radius_m.is_finite() || self.on_scene_radius_m <= 0.0 {
            return Err(bad("dispatch.on_scene_radius_m", "must be a finite number of metres greater than 0"));
        }
        if self.on_scene_fix_max_age_s == 0 {
            return Err(bad("dispatch.on_scene_fix_max_age_s", "must be greater than 0"));
        }
        if self.policy.fallback_delay_s > 3600 {
            return Err(bad("dispatch.policy.fallback_delay_s", "must be in 0..=3600 seconds"));
        }
        if !(1..=600).contains(&self.policy.fallback_round_s) {
            return Err(bad("dispatch.policy.fallback_round_s", "must be in 1..=600 seconds"));
        }
        if self.capabilities.len() > MAX_CAPABILITY_RULES {
            return Err(bad("dispatch.capabilities", format!("at most {MAX_CAPABILITY_RULES} rules")));
        }
        for (i, rule) in self.capabilities.iter().enumerate() {
            let key = format!("dispatch.capabilities[{i}]");
            if let Some(t) = rule.tiers.iter().find(|t| Tier::from_minutes(**t).is_none()) {
                return Err(bad(format!("{key}.tiers"), format!("{t} is not a tier (1, 3, 5 or 10)")));
            }
            if rule.require.is_empty() || rule.require.len() > MAX_REQUIRED_CAPABILITIES {
                return Err(bad(
                    format!("{key}.require"),
                    format!("must name 1..={MAX_REQUIRED_CAPABILITIES} capabilities"),
                ));
            }
            if let Some(c) = rule.require.iter().find(|c| c.is_empty() || c.len() > 64) {
                return Err(bad(format!("{key}.require"), format!("{c:?} is not a capability name (1..=64 bytes)")));
            }
        }
        check_counts("dispatch.response_plan.default", &self.response_plan.default)?;
        for (i, rule) in self.response_plan.rules.iter().enumerate() {
            let key = format!("dispatch.response_plan.rules[{i}]");
            if let Some(s) = rule.severities.iter().find(|s| !(1..=4).contains(*s)) {
                return Err(bad(format!("{key}.severities"), format!("severity {s} is not in 1..=4")));
            }
            check_counts(&format!("{key}.units"), &rule.units)?;
        }
        Ok(())
    }

    /// The defaults of the "13510" plan as shipped in `config/lastmile.toml`:
    /// its tiers, escalation and policy. The file's response plan, capability
    /// rules and tier 1's `applies = "where_stationed"` are left out: here
    /// one unit of every tier, any capability, every tier everywhere.
    pub fn defaults() -> Self {
        let p = |target_s, turnout_s, speed_m_per_s, circuity, fallback_factor, ack_timeout_s| TierParams {
            applies: crate::tier::Applies::Always,
            target_s,
            turnout_s,
            speed_m_per_s,
            circuity,
            fallback_factor,
            ack_timeout_s,
        };
        let one_each = TierCounts { t1: 1, t3: 1, t5: 1, t10: 1 };
        DispatchConfig {
            tiers: TierTable {
                t1: p(60, 20.0, 2.5, 1.2, 1.0, 15),
                t3: p(180, 60.0, 5.5, 1.3, 2.0, 30),
                t5: p(300, 60.0, 8.3, 1.3, 2.0, 45),
                t10: p(600, 60.0, 11.1, 1.3, 2.0, 60),
            },
            response_plan: ResponsePlan { default: one_each, rules: Vec::new() },
            escalation: EscalationConfig {
                max_attempts: 3,
                return_to_available_s: 1800,
                dispatch_returning_units: false,
                position_event_interval_s: 5,
            },
            on_scene_radius_m: default_on_scene_radius_m(),
            on_scene_fix_max_age_s: default_on_scene_fix_max_age_s(),
            policy: PolicyConfig::default(),
            capabilities: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_table() {
        let c = DispatchConfig::defaults();
        c.validate().unwrap();
        assert_eq!(c.tiers.get(Tier::T10).target_s, 600);
        assert_eq!(c.tiers.get(Tier::T1).fallback_limit_s(), 60);
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = DispatchConfig::defaults();
        c.tiers.t5.speed_m_per_s = 0.0;
        assert_eq!(c.validate().unwrap_err().key, "dispatch.tiers.t5.speed_m_per_s");
        let mut c = DispatchConfig::defaults();
        c.response_plan.rules.push(PlanRule {
            kinds: vec![],
            severities: vec![5],
            units: TierCounts { t1: 1, ..Default::default() },
        });
        assert_eq!(c.validate().unwrap_err().key, "dispatch.response_plan.rules[0].severities");
        for radius_m in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let c = DispatchConfig { on_scene_radius_m: radius_m, ..DispatchConfig::defaults() };
            assert_eq!(c.validate().unwrap_err().key, "dispatch.on_scene_radius_m", "{radius_m}");
        }
        let c = DispatchConfig { on_scene_fix_max_age_s: 0, ..DispatchConfig::defaults() };
        assert_eq!(c.validate().unwrap_err().key, "dispatch.on_scene_fix_max_age_s");
    }

    #[test]
    fn arrival_keys_default_when_absent() {
        let mut json = serde_json::to_value(DispatchConfig::defaults()).unwrap();
        let fields = json.as_object_mut().unwrap();
        assert!(fields.remove("on_scene_radius_m").is_some() && fields.remove("on_scene_fix_max_age_s").is_some());
        let c: DispatchConfig = serde_json::from_value(json).unwrap();
        assert_eq!((c.on_scene_radius_m, c.on_scene_fix_max_age_s), (150.0, 120));
    }

    #[test]
    fn first_matching_rule_wins() {
        let mut c = DispatchConfig::defaults();
        let big = TierCounts { t1: 2, t3: 2, t5: 1, t10: 2 };
        c.response_plan.rules.push(PlanRule { kinds: vec![IncidentKind::Fire], severities: vec![3, 4], units: big });
        assert_eq!(c.response_plan.counts_for(IncidentKind::Fire, 4), big);
        assert_eq!(c.response_plan.counts_for(IncidentKind::Fire, 2), c.response_plan.default);
        assert_eq!(c.response_plan.counts_for(IncidentKind::Flood, 4), c.response_plan.default);
    }
}
