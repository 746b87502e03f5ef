//! Prometheus metrics, in the text exposition format (version 0.0.4), served
//! on the HTTP gateway's `/metrics`.
//!
//! Latencies are histograms fed where they happen (lock-free atomics: a
//! dispatch never waits for a scrape). Counts of what the dispatcher holds
//! (incidents, tiers by outcome, units by status) are not kept twice: a
//! scrape takes a [`lastmile_core::dispatcher::Census`] of the live state.
//! Written by hand rather than with a client library: the format is a few
//! lines of text, and the values that live elsewhere (auth refusals, feed
//! watchers, webhook queues) are read at scrape time without registering
//! callbacks.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds for request and commit latencies, seconds.
pub const LATENCY_BOUNDS_S: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bucket bounds for page acknowledgement (a person answering), seconds.
pub const ACK_BOUNDS_S: &[f64] = &[1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0];

/// A cumulative histogram with fixed bounds.
pub struct Histogram {
    bounds_s: &'static [f64],
    /// One per bound, plus +Inf.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_s: &'static [f64]) -> Self {
        Histogram {
            bounds_s,
            buckets: (0..=bounds_s.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let i = self.bounds_s.iter().position(|b| s <= *b).unwrap_or(self.bounds_s.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// What the server measures as it goes.
pub struct Metrics {
    /// ReportIncident, from receipt to answer (selection, reservation, and
    /// the durable commit when there is a journal).
    pub dispatch_seconds: Histogram,
    /// From a page's sending to the unit's answer (accept or decline).
    pub page_ack_seconds: Histogram,
    /// One group commit of the journal (write + fsync).
    pub journal_commit_seconds: Histogram,
    /// One apply of the journal's log to its tables (`journal.apply_*`).
    pub journal_apply_seconds: Histogram,
    /// Requests refused by a bound, by the bound's name.
    limit_hits: Mutex<BTreeMap<&'static str, u64>>,
    /// gRPC calls answered with an error, by (method, code). The method is
    /// one of the known RPC names or `unknown` (`grpc_outcome`), so the
    /// series are bounded by construction.
    grpc_errors: Mutex<BTreeMap<(&'static str, i32), u64>>,
    /// HTTP gateway answers, by status code (at most the 500 codes HTTP has).
    http_responses: Mutex<BTreeMap<u16, u64>>,
    /// The last page rendered and when (see [`MIN_SCRAPE_INTERVAL`]).
    last_page: Mutex<Option<(std::time::Instant, String)>>,
}

/// A scrape within this long of the previous one gets the previous page:
/// `/metrics` is open and walks every incident held, so how often it does is
/// bounded (Prometheus scrapes every 15 s or so).
pub const MIN_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            dispatch_seconds: Histogram::new(LATENCY_BOUNDS_S),
            page_ack_seconds: Histogram::new(ACK_BOUNDS_S),
            journal_commit_seconds: Histogram::new(LATENCY_BOUNDS_S),
            journal_apply_seconds: Histogram::new(LATENCY_BOUNDS_S),
            limit_hits: Mutex::new(BTreeMap::new()),
            grpc_errors: Mutex::new(BTreeMap::new()),
            http_responses: Mutex::new(BTreeMap::new()),
            last_page: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Counts a request refused by the bound named `limit` (its config key).
    pub fn limit_hit(&self, limit: &'static str) {
        *self.limit_hits.lock().unwrap_or_else(|p| p.into_inner()).entry(limit).or_default() += 1;
    }

    /// A gRPC call answered with an error: its method and gRPC code number.
    pub fn grpc_error(&self, method: &'static str, code: i32) {
        *self.grpc_errors.lock().unwrap_or_else(|p| p.into_inner()).entry((method, code)).or_default() += 1;
    }

    /// Counts an HTTP gateway answer.
    pub fn http_response(&self, status: u16) {
        *self.http_responses.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
    }

    pub fn limit_hits(&self) -> BTreeMap<&'static str, u64> {
        self.limit_hits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn grpc_errors(&self) -> BTreeMap<(&'static str, i32), u64> {
        self.grpc_errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn http_responses(&self) -> BTreeMap<u16, u64> {
        self.http_responses.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The page rendered less than [`MIN_SCRAPE_INTERVAL`] ago, or a new
    /// one from `render` (kept for the next scrapes).
    pub fn page(&self, render: impl FnOnce() -> String) -> String {
        let mut last = self.last_page.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, page)) = last.as_ref()
            && at.elapsed() < MIN_SCRAPE_INTERVAL
        {
            return page.clone();
        }
        let page = render();
        *last = Some((std::time::Instant::now(), page.clone()));
        page
    }
}

/// Writes the exposition format: one `# HELP`/`# TYPE` per family.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of samples of one kind ("counter" or "gauge").
    pub fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.header(name, kind, help);
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, [(Vec::new(), value)]);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        let mut cumulative = 0u64;
        let bucket_name = format!("{name}_bucket");
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = h.bounds_s.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            self.sample(&bucket_name, &[("le", &le)], cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        // The count is the +Inf bucket's (read once, so the two agree).
        self.sample(&format!("{name}_count"), &[], cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = Exposition::default();
        out.histogram("x_seconds", "test", &h);
        out.family("y", "gauge", "test", [(vec![("town", "金清\"镇")], 2.0)]);
        let text = out.finish();
        assert!(text.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.01\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum 1.0055\n"), "{text}");
        assert!(text.contains("y{town=\"金清\\\"镇\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
    }
}
