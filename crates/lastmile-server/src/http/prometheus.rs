//! `GET /metrics`: the Prometheus text page of a running server, open like
//! health. Counts of what the dispatcher holds come from a census of the
//! live state at scrape time; latencies and refusals from
//! [`crate::metrics::Metrics`]; webhook queues from the webhooks.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Gateway;
use crate::app::App;
use crate::error::ErrorCode;
use crate::metrics::Exposition;
use crate::webhook::Webhooks;

pub async fn metrics(State(g): State<Gateway>) -> Response {
    let text = render(&g.app, &g.webhooks);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}

/// The whole page, at most once per `metrics::MIN_SCRAPE_INTERVAL`.
pub fn render(app: &App, webhooks: &Webhooks) -> String {
    app.metrics.page(|| {
        let mut out = Exposition::default();
        latencies(&mut out, app);
        census(&mut out, app);
        refusals(&mut out, app);
        webhook_queues(&mut out, webhooks);
        eta(&mut out, app);
        admission(&mut out, app);
        if let Some(journal) = &app.journal {
            out.single(
                "lastmile_journal_failed",
                "gauge",
                "1 once a journal write has failed (every change is refused from then on).",
                if journal.failure().is_some() { 1.0 } else { 0.0 },
            );
        }
        out.finish()
    })
}

/// Admission control (`[admission]`): refusals per class, work in flight.
fn admission(out: &mut Exposition, app: &App) {
    let refused: Vec<(&str, u64)> = app.admission.refused().map(|(c, n)| (c.name(), n)).collect();
    out.family(
        "lastmile_admission_refused_total",
        "counter",
        "Operations refused at once because their class (or all work) was at its [admission] bound, by class.",
        refused.iter().map(|(class, n)| (vec![("class", *class)], *n as f64)),
    );
    let (all, reports, reads) = app.admission.in_flight();
    out.family(
        "lastmile_admission_in_flight",
        "gauge",
        "Operations in flight: all (admission.max_in_flight), report, read.",
        [("all", all), ("report", reports), ("read", reads)].map(|(k, n)| (vec![("class", k)], n as f64)),
    );
}

/// The ETA's model and its error on the recent arrivals, per tier (as
/// `GET /v1/eta`); an absent figure (no arrivals yet) is left out.
fn eta(out: &mut Exposition, app: &App) {
    let status = app.eta.status();
    let tiers: Vec<(String, &crate::app::eta::TierStatus)> =
        status.tiers.iter().map(|t| (t.tier.trim_start_matches("TIER_").to_string(), t)).collect();
    type Figure = fn(&crate::app::eta::TierStatus) -> Option<f64>;
    let figures: [(&str, &str, Figure); 10] = [
        ("lastmile_eta_turnout_seconds", "The ETA model's turnout (page to moving), by tier.", |t| Some(t.turnout_s)),
        ("lastmile_eta_speed_metres_per_second", "The ETA model's travel speed, by tier.", |t| Some(t.speed_m_per_s)),
        (
            "lastmile_eta_margin_seconds",
            "Added to the estimate to make the promise (eta.promise_quantile), by tier.",
            |t| Some(t.margin_s),
        ),
        (
            "lastmile_eta_margin_ratio",
            "The promise is the estimate times 1 + this (eta.promise_quantile), by tier.",
            |t| Some(t.margin_ratio),
        ),
        ("lastmile_eta_arrivals", "Verified arrivals behind the learnt model (0: prior or pinned), by tier.", |t| {
            Some(t.arrivals as f64)
        }),
        ("lastmile_eta_window_arrivals", "Verified arrivals in the calibration window, by tier.", |t| {
            Some(t.window as f64)
        }),
        ("lastmile_eta_bias_seconds", "Mean error (late positive) of the model on the window, by tier.", |t| {
            t.recent.bias_s
        }),
        ("lastmile_eta_median_abs_error_seconds", "Median absolute error on the window, by tier.", |t| {
            t.recent.median_abs_error_s
        }),
        ("lastmile_eta_p90_abs_error_seconds", "p90 absolute error on the window, by tier.", |t| {
            t.recent.p90_abs_error_s
        }),
        (
            "lastmile_eta_share_by_promise",
            "Share of the window's arrivals on scene by the ETA promised when paged.",
            |t| t.recent.share_by_promise,
        ),
    ];
    for (name, help, figure) in figures {
        out.family(
            name,
            "gauge",
            help,
            tiers.iter().filter_map(|(tier, t)| figure(t).map(|v| (vec![("tier", tier.as_str())], v))),
        );
    }
}

fn latencies(out: &mut Exposition, app: &App) {
    let m = &app.metrics;
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
    if app.journal.is_some() {
        out.histogram(
            "lastmile_journal_commit_seconds",
            "One group commit (write and fsync; with the SQLite store, one row of its log).",
            &m.journal_commit_seconds,
        );
        out.histogram(
            "lastmile_journal_apply_seconds",
            "One apply of the SQLite store's log to its tables (journal.apply_interval_ms, journal.apply_max_records).",
            &m.journal_apply_seconds,
        );
    }
}

fn census(out: &mut Exposition, app: &App) {
    let census = app.dispatcher.census();
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
        "Tiers of the incidents held, by tier, town and outcome (within_target, short, met, breached, escalated, cancelled, not_applicable).",
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
    let waiting: Vec<(String, u64)> = census.waiting.iter().map(|(tier, n)| (tier.minutes().to_string(), *n)).collect();
    out.family(
        "lastmile_waiting_incidents",
        "gauge",
        "Open incidents with a slot of the tier waiting for a unit (the waiting queue), by tier.",
        waiting.iter().map(|(tier, n)| (vec![("tier", tier.as_str())], *n as f64)),
    );
    out.family(
        "lastmile_dispatch_decisions_total",
        "counter",
        "Decisions of the surge policy since start: queue_fill (a waiting slot took a unit that came free), preemption (a report took an unacknowledged page), fallback_round (a round paged a unit for a due slot), recovery (an UNRESPONSIVE unit's terminal answered).",
        census.decisions.iter().map(|(d, n)| (vec![("decision", d.name())], *n as f64)),
    );
    out.single(
        "lastmile_history_in_memory",
        "gauge",
        "Closed incidents held in memory (history.memory_incidents); with SQLite, older ones are in the journal.",
        app.history.in_memory() as f64,
    );
    out.single(
        "lastmile_timeline_entries_dropped_total",
        "counter",
        "State changes not added to a full timeline (limits.max_timeline_entries); the feed still had them.",
        app.sinks.timelines.dropped.load(Ordering::Relaxed) as f64,
    );
    let feed = &app.sinks.feed;
    out.single(
        "lastmile_feed_watchers",
        "gauge",
        "Live-feed watchers connected (gRPC WatchEvents and HTTP SSE).",
        feed.watchers.load(Ordering::Relaxed) as f64,
    );
    out.single("lastmile_feed_last_seq", "counter", "Last live-feed sequence number issued.", feed.last_seq() as f64);
}

fn refusals(out: &mut Exposition, app: &App) {
    let m = &app.metrics;
    out.family(
        "lastmile_limit_hits_total",
        "counter",
        "Requests or streams refused or ended by a bound, by the bound's config key.",
        m.limit_hits().iter().map(|(limit, n)| (vec![("limit", *limit)], *n as f64)),
    );
    // The code's name as gRPC libraries spell it (`ResourceExhausted`).
    let errors: Vec<(&str, String, u64)> = m
        .grpc_errors()
        .iter()
        .map(|((method, code), n)| {
            let name = ErrorCode::from_grpc_code(*code).map(|c| format!("{c:?}")).unwrap_or_else(|| code.to_string());
            (*method, name, *n)
        })
        .collect();
    out.family(
        "lastmile_grpc_errors_total",
        "counter",
        "gRPC calls answered with an error, by method and code.",
        errors.iter().map(|(method, code, n)| (vec![("method", *method), ("code", code.as_str())], *n as f64)),
    );
    let http: Vec<(String, u64)> = m.http_responses().iter().map(|(status, n)| (status.to_string(), *n)).collect();
    out.family(
        "lastmile_http_responses_total",
        "counter",
        "JSON/HTTP gateway answers by status (4xx: refusals, e.g. 400 validation, 413 body size, 429 rate).",
        http.iter().map(|(status, n)| (vec![("status", status.as_str())], *n as f64)),
    );
    let auth = &app.auth.counters;
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
}

fn webhook_queues(out: &mut Exposition, webhooks: &Webhooks) {
    let stats = webhooks.stats();
    let per_endpoint = |f: &dyn Fn(&crate::webhook::EndpointStats) -> f64| {
        stats.endpoints.iter().map(|e| (vec![("endpoint", e.name.as_str())], f(e))).collect::<Vec<_>>()
    };
    /// One per-endpoint family: name, type, help, the value.
    type Family<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&crate::webhook::EndpointStats) -> f64);
    let families: [Family; 5] = [
        ("lastmile_webhook_queue_depth", "gauge", "Deliveries waiting in the endpoint's queue.", &|e| {
            e.queue_depth as f64
        }),
        ("lastmile_webhook_delivered_total", "counter", "Deliveries answered 2xx.", &|e| e.delivered as f64),
        ("lastmile_webhook_retries_total", "counter", "Attempts after the first.", &|e| e.retried as f64),
        (
            "lastmile_webhook_failures_total",
            "counter",
            "Deliveries dead-lettered: retries exhausted, rejected, or cut off by shutdown.",
            &|e| e.failed as f64,
        ),
        (
            "lastmile_webhook_dropped_queue_full_total",
            "counter",
            "Deliveries dead-lettered because the endpoint's queue was full.",
            &|e| e.dropped_queue_full as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help, per_endpoint(value));
    }
    out.single(
        "lastmile_webhook_dead_letters",
        "gauge",
        "Dead letters held (read and replay them under /v1/admin/webhooks/dead-letters).",
        stats.dead_letters_kept as f64,
    );
    out.single(
        "lastmile_webhook_dead_letters_dropped_total",
        "counter",
        "Dead letters dropped, oldest first, at webhooks.max_dead_letters_kept.",
        stats.dead_letters_dropped as f64,
    );
    out.single(
        "lastmile_webhook_feed_missed_total",
        "counter",
        "Feed events the webhooks fell too far behind to offer (beyond feed.history_events).",
        webhooks.feed_missed() as f64,
    );
}
