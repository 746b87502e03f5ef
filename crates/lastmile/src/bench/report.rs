//! What a run measured, as a table for people and JSON for machines.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::svg::fmt_us;

/// A histogram of microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// One phase's latencies and throughput.
pub struct PhaseSummary {
    pub name: &'static str,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub not_sent: usize,
    pub micros: Histogram<u64>,
    pub elapsed: Duration,
}

impl PhaseSummary {
    pub fn throughput_per_s(&self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.ok as f64 / self.elapsed.as_secs_f64() }
    }

    pub fn p(&self, q: f64) -> u64 {
        self.micros.value_at_quantile(q)
    }

    pub fn json(&self) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "not_sent": self.not_sent,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_per_s": self.throughput_per_s(),
            "latency_us": latency_json(&self.micros),
        })
    }

    pub fn row(&self) -> String {
        format!(
            "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11.0}/s{}",
            self.name,
            self.ok,
            fmt_us(self.p(0.5)),
            fmt_us(self.p(0.9)),
            fmt_us(self.p(0.99)),
            fmt_us(self.p(0.999)),
            fmt_us(self.micros.max()),
            self.throughput_per_s(),
            errors_suffix(&self.errors, self.not_sent),
        )
    }
}

pub fn errors_suffix(errors: &BTreeMap<String, u64>, not_sent: usize) -> String {
    let mut parts: Vec<String> = errors.iter().map(|(code, n)| format!("{code} {n}")).collect();
    if not_sent > 0 {
        parts.push(format!("not sent (deadline) {not_sent}"));
    }
    if parts.is_empty() { String::new() } else { format!("  errors: {}", parts.join(", ")) }
}

pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean(),
    })
}

pub fn latency_row(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("  {name:<22} {:>8}", 0);
    }
    format!(
        "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        name,
        h.len(),
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.9)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.value_at_quantile(0.999)),
        fmt_us(h.max()),
    )
}

pub const HEADER: &str =
    "  phase                        ok       p50       p90       p99     p99.9       max   throughput";

/// `part / whole` as a percentage, 0 when there is no whole.
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}
