//! CPU time spent per phase, from `/proc` (Linux): what a Ping and a report
//! cost in CPU, which unlike latency and throughput does not depend on how
//! the 2 cores were shared at that moment.
//!
//! The whole bench process is measured by default (in process: server,
//! load, terminals, feed reader); `--server-pid` measures a separate server
//! process instead (`lastmile serve` + `lastmile bench --addr`).

use std::path::PathBuf;
use std::time::Duration;

/// Whose CPU time is read.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    task_dir: PathBuf,
    pub whose: String,
}

impl CpuMeter {
    /// `None`: this process.
    pub fn new(pid: Option<u32>) -> Self {
        match pid {
            Some(pid) => CpuMeter { task_dir: format!("/proc/{pid}/task").into(), whose: format!("server pid {pid}") },
            None => CpuMeter { task_dir: "/proc/self/task".into(), whose: "whole bench process".into() },
        }
    }

    /// CPU time of every thread of the process so far, from each thread's
    /// `schedstat` (nanoseconds on CPU); `None` where `/proc` cannot be read
    /// (not Linux, or the pid is gone). Threads that ended in between are
    /// missed: tokio's workers live as long as the process.
    pub fn now(&self) -> Option<Duration> {
        let mut total: Option<u64> = None;
        for entry in std::fs::read_dir(&self.task_dir).ok()? {
            let Ok(entry) = entry else { continue };
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
            if let Some(ns) = text.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()) {
                total = Some(total.unwrap_or(0) + ns);
            }
        }
        // No thread's schedstat readable (a kernel without schedstats): unknown, not zero.
        total.map(Duration::from_nanos)
    }
}

/// CPU time over a phase, per operation of that phase.
#[derive(Clone, Copy, Debug)]
pub struct PhaseCpu {
    pub cpu: Duration,
    pub ops: u64,
}

impl PhaseCpu {
    pub fn between(start: Option<Duration>, end: Option<Duration>, ops: u64) -> Option<PhaseCpu> {
        Some(PhaseCpu { cpu: end?.checked_sub(start?)?, ops })
    }

    pub fn micros_per_op(&self) -> f64 {
        if self.ops == 0 { 0.0 } else { self.cpu.as_secs_f64() * 1e6 / self.ops as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let meter = CpuMeter::new(None);
        let Some(before) = meter.now() else { return }; // not Linux: nothing to measure
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = meter.now().expect("readable a moment ago");
        assert!(after > before, "{after:?} after busy work, {before:?} before");
    }

    #[test]
    fn a_missing_process_reads_as_none() {
        assert_eq!(CpuMeter::new(Some(u32::MAX)).now(), None);
        assert!(PhaseCpu::between(None, Some(Duration::from_secs(1)), 1).is_none());
        let p = PhaseCpu::between(Some(Duration::from_millis(10)), Some(Duration::from_millis(30)), 4).unwrap();
        assert_eq!(p.micros_per_op(), 5000.0);
    }
}
