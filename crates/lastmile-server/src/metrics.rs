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

    /// Counts a gRPC call answered with `code` (not OK).
    pub fn grpc_error(&self, method: &'static str, code: tonic::Code) {
        *self.grpc_errors.lock().unwrap_or_else(|p| p.into_inner()).entry((method, code as i32)).or_default() += 1;
    }

    /// Counts an HTTP gateway answer.
    pub fn http_response(&self, status: u16) {
        *self.http_responses.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
    }

    pub fn limit_hits(&self) -> BTreeMap<&'static str, u64> {
        self.limit_hits.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

/// The whole `/metrics` page for a running server, at most once per
/// [`MIN_SCRAPE_INTERVAL`].
pub fn render(shared: &crate::Shared) -> String {
    let mut last = shared.metrics.last_page.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, page)) = last.as_ref()
        && at.elapsed() < MIN_SCRAPE_INTERVAL
    {
        return page.clone();
    }
    let page = render_now(shared);
    *last = Some((std::time::Instant::now(), page.clone()));
    page
}

fn render_now(shared: &crate::Shared) -> String {
    let m = &shared.metrics;
    let mut out = Exposition::default();
    out.histogram(
        "lastmile_dispatch_seconds",
        "ReportIncident from receipt to answer (selection, reservation, durable commit).",
        &m.dispatch_seconds,
    );
    out.histogram(
        "lastmile_page_ack_seconds",
        "From a page's sending to the unit's answer (accept or decline).",
        &m.page_ack_seconds,
    );
    if shared.journal.is_some() {
        out.histogram(
            "lastmile_journal_commit_seconds",
            "One group commit (write and fsync).",
            &m.journal_commit_seconds,
        );
    }

    let census = shared.dispatcher.census();
    out.family(
        "lastmile_incidents",
        "gauge",
        "Incidents held, by state.",
        [
            (vec![("state", "open")], census.incidents_open as f64),
            (vec![("state", "closed")], census.incidents_closed as f64),
        ],
    );
    let tiers: Vec<(String, &str, &str, u64)> = census
        .tiers
        .iter()
        .map(|((tier, town, outcome), n)| (tier.minutes().to_string(), town.as_str(), outcome.name(), *n))
        .collect();
    out.family(
        "lastmile_tiers",
        "gauge",
        "Tiers of the incidents held, by tier, town and outcome (within_target, short, met, breached, escalated, cancelled).",
        tiers.iter().map(|(tier, town, outcome, n)| {
            (vec![("tier", tier.as_str()), ("town", *town), ("outcome", *outcome)], *n as f64)
        }),
    );
    let units: Vec<(String, &str, u64)> =
        census.units.iter().map(|((tier, status), n)| (tier.minutes().to_string(), status.name(), *n)).collect();
    out.family(
        "lastmile_units",
        "gauge",
        "Units by tier and status.",
        units.iter().map(|(tier, status, n)| (vec![("tier", tier.as_str()), ("status", *status)], *n as f64)),
    );

    let feed = &shared.bus.feed;
    out.single(
        "lastmile_feed_watchers",
        "gauge",
        "Live-feed watchers connected (gRPC WatchEvents and HTTP SSE).",
        feed.watchers.load(Ordering::Relaxed) as f64,
    );
    out.single("lastmile_feed_last_seq", "counter", "Last live-feed sequence number issued.", feed.last_seq() as f64);

    let hits = m.limit_hits();
    out.family(
        "lastmile_limit_hits_total",
        "counter",
        "Requests or streams refused or ended by a bound, by the bound's config key.",
        hits.iter().map(|(limit, n)| (vec![("limit", *limit)], *n as f64)),
    );
    let errors: Vec<(&str, String, u64)> = m
        .grpc_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((method, code), n)| (*method, format!("{:?}", tonic::Code::from_i32(*code)), *n))
        .collect();
    out.family(
        "lastmile_grpc_errors_total",
        "counter",
        "gRPC calls answered with an error, by method and code.",
        errors.iter().map(|(method, code, n)| (vec![("method", *method), ("code", code.as_str())], *n as f64)),
    );
    let http: Vec<(String, u64)> = m
        .http_responses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(status, n)| (status.to_string(), *n))
        .collect();
    out.family(
        "lastmile_http_responses_total",
        "counter",
        "JSON/HTTP gateway answers by status (4xx: refusals, e.g. 400 validation, 413 body size, 429 rate).",
        http.iter().map(|(status, n)| (vec![("status", status.as_str())], *n as f64)),
    );
    let auth = &shared.auth.counters;
    out.family(
        "lastmile_auth_refusals_total",
        "counter",
        "Calls refused by auth, by reason.",
        [
            (vec![("reason", "unauthenticated")], auth.unauthenticated.load(Ordering::Relaxed) as f64),
            (vec![("reason", "permission_denied")], auth.permission_denied.load(Ordering::Relaxed) as f64),
            (vec![("reason", "rate_limited")], auth.rate_limited.load(Ordering::Relaxed) as f64),
        ],
    );
    let webhooks = shared.webhooks.stats();
    let per_endpoint = |f: &dyn Fn(&crate::webhook::EndpointStats) -> f64| {
        webhooks.endpoints.iter().map(|e| (vec![("endpoint", e.name.as_str())], f(e))).collect::<Vec<_>>()
    };
    out.family(
        "lastmile_webhook_queue_depth",
        "gauge",
        "Deliveries waiting in the endpoint's queue.",
        per_endpoint(&|e| e.queue_depth as f64),
    );
    out.family(
        "lastmile_webhook_delivered_total",
        "counter",
        "Deliveries answered 2xx.",
        per_endpoint(&|e| e.delivered as f64),
    );
    out.family(
        "lastmile_webhook_retries_total",
        "counter",
        "Attempts after the first.",
        per_endpoint(&|e| e.retried as f64),
    );
    out.family(
        "lastmile_webhook_failures_total",
        "counter",
        "Deliveries dead-lettered: retries exhausted, rejected, or cut off by shutdown.",
        per_endpoint(&|e| e.failed as f64),
    );
    out.family(
        "lastmile_webhook_dropped_queue_full_total",
        "counter",
        "Deliveries dead-lettered because the endpoint's queue was full.",
        per_endpoint(&|e| e.dropped_queue_full as f64),
    );
    out.single(
        "lastmile_webhook_dead_letters",
        "gauge",
        "Dead letters held (read and replay them under /v1/admin/webhooks/dead-letters).",
        webhooks.dead_letters_kept as f64,
    );
    out.single(
        "lastmile_webhook_dead_letters_dropped_total",
        "counter",
        "Dead letters dropped, oldest first, at webhooks.max_dead_letters_kept.",
        webhooks.dead_letters_dropped as f64,
    );
    if let Some(journal) = &shared.journal {
        out.single(
            "lastmile_journal_failed",
            "gauge",
            "1 once a journal write has failed (every change is refused from then on).",
            if journal.failure().is_some() { 1.0 } else { 0.0 },
        );
    }
    out.finish()
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
