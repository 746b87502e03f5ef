//! Once a second during an overload run (`--offered-rate`): the memory of
//! the process that holds the server, the crews' counters, and the server's
//! admission and terminal-error counters from its `/metrics` page.
//!
//! In process the server, the load generator and the 844 crews share one
//! process, so its VmRSS is theirs together; with `--addr --server-pid` it
//! is the server's own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sim_terminal::PageLog;

/// One second's reading. Counters are running totals (deltas are taken when
/// windows are printed); `None` where the source could not be read.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// Seconds since the overload run's clock started.
    pub at_s: f64,
    pub rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
    /// CPU time of the measured process so far (every thread's schedstat).
    pub cpu_s: Option<f64>,
    /// The crews' `PageLog`: pages received, answers accepted / declined,
    /// calls the server refused (any code: a closed incident as much as a
    /// busy server).
    pub pages: u64,
    pub accepted: u64,
    pub declined: u64,
    pub crew_refused: u64,
    /// The server's `/metrics`: the series the run reports (admission by
    /// class, terminal calls' errors by code), by their full name with labels.
    pub metrics: Option<BTreeMap<String, f64>>,
}

impl Reading {
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics.as_ref().map(|m| m.get(series).copied().unwrap_or(0.0))
    }

    pub fn json(&self) -> Value {
        json!({
            "at_s": self.at_s,
            "vm_rss_kib": self.rss_kib,
            "vm_hwm_kib": self.hwm_kib,
            "cpu_s": self.cpu_s,
            "crews": { "pages": self.pages, "accepted": self.accepted, "declined": self.declined, "refused": self.crew_refused },
            "metrics": self.metrics,
        })
    }
}

/// Where the readings come from.
pub struct Sources {
    /// `/proc/<pid>/status` or `/proc/self/status`.
    pub status_path: String,
    pub log: Arc<PageLog>,
    /// `http://host:port/metrics` of the server's gateway, if it has one.
    pub metrics_url: Option<String>,
    pub cpu: super::cpu::CpuMeter,
}

/// VmRSS and VmHWM (KiB) from a `/proc/.../status` text.
fn vm(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// The series of a Prometheus text page that the overload run reports.
fn kept_series(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with("lastmile_admission_")
                || (l.starts_with("lastmile_grpc_errors_total")
                    && (l.contains("method=\"Acknowledge\"") || l.contains("method=\"ReportStatus\"")))
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

impl Sources {
    async fn read(&self, at_s: f64) -> Reading {
        let status = std::fs::read_to_string(&self.status_path).unwrap_or_default();
        let metrics = match &self.metrics_url {
            // A scrape that fails under load is a gap, not an error of the run.
            Some(url) => {
                match tokio::time::timeout(Duration::from_millis(900), crate::http_get::get(url, None, None)).await {
                    Ok(Ok((200, _, body))) => Some(kept_series(&String::from_utf8_lossy(&body))),
                    _ => None,
                }
            }
            None => None,
        };
        Reading {
            at_s,
            rss_kib: vm(&status, "VmRSS:"),
            hwm_kib: vm(&status, "VmHWM:"),
            cpu_s: self.cpu.now().map(|d| d.as_secs_f64()),
            pages: self.log.pages.load(Ordering::Relaxed),
            accepted: self.log.accepted.load(Ordering::Relaxed),
            declined: self.log.declined.load(Ordering::Relaxed),
            crew_refused: self.log.refused.load(Ordering::Relaxed),
            metrics,
        }
    }
}

/// Reads every second from `clock` until `stop` says so; returns the
/// readings (one per second of the run: bounded by its length).
pub async fn sample_every_second(
    sources: Sources,
    clock: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Reading> {
    let mut readings = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => readings.push(sources.read(clock.elapsed().as_secs_f64()).await),
            _ = stop.changed() => break,
        }
    }
    readings.push(sources.read(clock.elapsed().as_secs_f64()).await);
    readings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status_and_the_metrics_it_reports() {
        let status = "Name:\tlastmile\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\n";
        assert_eq!(vm(status, "VmRSS:"), Some(98765));
        assert_eq!(vm(status, "VmHWM:"), Some(123456));
        let page = "# HELP x\nlastmile_admission_refused_total{class=\"report\"} 17\n\
                    lastmile_grpc_errors_total{method=\"Acknowledge\",code=\"NotFound\"} 3\n\
                    lastmile_grpc_errors_total{method=\"ReportIncident\",code=\"ResourceExhausted\"} 9\n";
        let kept = kept_series(page);
        assert_eq!(kept.get("lastmile_admission_refused_total{class=\"report\"}"), Some(&17.0));
        assert_eq!(kept.len(), 2, "{kept:?}");
    }
}
