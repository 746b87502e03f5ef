//! Webhooks out: every incident/tier status change, pushed as a signed JSON
//! POST to the upstream command system and to grid workers' endpoints.
//!
//! # Layout
//!
//! - `crate::config::webhooks`: the `[webhooks]` section, validated once.
//! - [`follow`]: the consumer of the live feed.
//! - [`sign`]: `X-Lastmile-Signature` (HMAC-SHA256 of the body) and its check.
//! - [`delivery`]: one task per endpoint: bounded queue, one POST in flight,
//!   retries with full-jitter backoff, the HTTP transport.
//! - [`tls`]: https:// (rustls) trusting the endpoint's `ca_path`.
//! - [`dead_letter`]: failed deliveries, in memory and in a JSON Lines file;
//!   replayed by an operator.
//!
//! The endpoints follow the live feed like any other consumer ([`follow`]):
//! [`Webhooks::offer`] never waits and never does I/O. A full queue
//! dead-letters the delivery (`queue_full`) instead of waiting. A slow or dead endpoint holds up only
//! its own queue.
//!
//! Delivery is at least once while the server runs (a timeout after the
//! receiver acted is retried under the same `X-Lastmile-Delivery` id), and
//! best effort across a crash: queues live in memory. A graceful shutdown
//! flushes each queue for `shutdown_flush_ms`, then dead-letters the rest
//! (reason `shutdown`) into the file, from which they can be replayed. The
//! file is written by the supervisor task while it runs: dead letters made
//! after `shutdown` (late offers, a replay) stay in memory.

pub mod dead_letter;
pub mod delivery;
pub mod follow;
pub mod sign;
pub mod tls;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lastmile_core::sim::SplitMix64;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::webhooks as config;
pub use crate::config::webhooks::{EndpointConfig, WebhookConfigError, WebhooksConfig};
pub use dead_letter::{DeadLetter, DeadLetterFileError, DeadLetterReason, read_dead_letter_file};
pub use delivery::{HyperTransport, PostFuture, PostResult, Transport};
pub use follow::Follower;

use crate::clock::Clock;
use delivery::{Counters, Delivery, EndpointSettings, Worker};

/// Why the webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Config(#[from] WebhookConfigError),
    #[error("webhooks.dead_letter_path: {0}")]
    DeadLetterFile(#[from] DeadLetterFileError),
}

/// What [`Webhooks::start_with`] takes besides the config: the injectable
/// parts. [`WebhookOptions::new`] gives the production ones.
pub struct WebhookOptions {
    /// The dead-letter file (see [`WebhooksConfig::dead_letter_file`]); none =
    /// dead letters kept in memory only.
    pub dead_letter_path: Option<PathBuf>,
    /// Cancelled = shut down (bounded flush), as [`Webhooks::shutdown`].
    pub shutdown: CancellationToken,
    /// How POSTs are sent; none = hyper (one shared client for http://
    /// endpoints, one per https:// endpoint with its `ca_path`).
    pub transport: Option<Arc<dyn Transport>>,
    /// Reads `secret_env` variables.
    pub env: config::BoxedEnvReader,
    /// Seed of the backoff jitter (endpoint i draws from `seed + i`).
    pub jitter_seed: u64,
    pub clock: Clock,
}

impl WebhookOptions {
    /// hyper, the process environment, a seed from the clock.
    pub fn new(dead_letter_path: Option<PathBuf>, shutdown: CancellationToken) -> Self {
        let clock = Clock::start();
        WebhookOptions {
            dead_letter_path,
            shutdown,
            transport: None,
            env: Box::new(config::process_env),
            jitter_seed: clock.now().unix_ms as u64,
            clock,
        }
    }
}

/// One endpoint as `offer` sees it.
struct Endpoint {
    config: EndpointConfig,
    name: Arc<str>,
    queue: mpsc::Sender<Delivery>,
    counters: Arc<Counters>,
}

/// The running webhooks: one delivery task per endpoint and the dead-letter
/// writer, all owned by one supervisor task that is aborted when this is
/// dropped (use [`Webhooks::shutdown`] for the bounded flush).
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    dead_letters: Arc<dead_letter::DeadLetterLog>,
    /// Delivery ids: `<start time, hex ms>-<sequence>`, unique across restarts.
    id_prefix: String,
    next_id: AtomicU64,
    /// Feed events the consumer fell too far behind to offer ([`follow`]).
    pub(crate) feed_missed: AtomicU64,
    clock: Clock,
    stop: CancellationToken,
    /// Cancelled by the supervisor when everything is stopped and written.
    stopped: CancellationToken,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop.cancel();
        // Aborting the supervisor drops its JoinSet, which aborts the workers.
        self.supervisor.abort();
    }
}

// Shared by every request handler (behind an `Arc`).
const _: () = {
    const fn shared_across_tasks<T: Send + Sync>() {}
    shared_across_tasks::<Webhooks>();
};

/// Per endpoint, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    pub name: String,
    /// Deliveries waiting (not counting the one in flight).
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Answered 2xx.
    pub delivered: u64,
    /// Attempts after the first (each retry counts once).
    pub retried: u64,
    /// Dead-lettered after being taken from the queue: retries exhausted,
    /// rejected, or cut off by shutdown.
    pub failed: u64,
    /// Dead-lettered by `offer` because the queue was full (reason
    /// `queue_full`). Dead letters of this endpoint = failed + this.
    pub dropped_queue_full: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookStats {
    pub endpoints: Vec<EndpointStats>,
    /// Dead letters held now (at most `max_dead_letters_kept`).
    pub dead_letters_kept: usize,
    /// Dead letters dropped, oldest first, because the bound was reached.
    pub dead_letters_dropped: u64,
    /// Failed writes of the dead-letter file.
    pub dead_letter_write_errors: u64,
}

/// What [`Webhooks::replay_dead_letters`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Put back in their endpoint's queue (and removed from the log).
    pub requeued: usize,
    /// Left in the log: the endpoint's queue was full.
    pub left_queue_full: usize,
    /// Left in the log: no endpoint of that name is configured (any more).
    pub left_unknown_endpoint: usize,
}

impl Webhooks {
    /// Starts with hyper, the process environment and the dead-letter file at
    /// `dead_letter_path`. Needs a tokio runtime.
    pub fn start(
        config: &WebhooksConfig,
        dead_letter_path: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> Result<Webhooks, WebhookError> {
        Self::start_with(config, WebhookOptions::new(dead_letter_path, shutdown))
    }

    /// Validates `config`, loads the dead-letter file and spawns one task per
    /// endpoint.
    pub fn start_with(config: &WebhooksConfig, options: WebhookOptions) -> Result<Webhooks, WebhookError> {
        config.validate(&*options.env)?;
        let dead_letters =
            Arc::new(dead_letter::DeadLetterLog::open(options.dead_letter_path.clone(), config.max_dead_letters_kept)?);
        let stop = options.shutdown.child_token();
        let cutoff = CancellationToken::new();
        let mut workers = JoinSet::new();
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        let plain: Arc<dyn Transport> = match &options.transport {
            Some(transport) => transport.clone(),
            None => Arc::new(HyperTransport::new()),
        };
        for (i, endpoint) in config.endpoints.iter().enumerate() {
            let transport = match (&options.transport, &endpoint.ca_path) {
                (None, Some(ca_path)) => https_transport(i, ca_path)?,
                _ => plain.clone(),
            };
            let secret = match (&endpoint.secret, &endpoint.secret_env) {
                (Some(secret), _) => secret.clone(),
                (None, Some(var)) => (options.env)(var).unwrap_or_default(),
                (None, None) => unreachable!("validated: one of secret and secret_env"),
            };
            let name: Arc<str> = endpoint.name.as_str().into();
            let settings = EndpointSettings {
                name: name.clone(),
                uri: config::parse_http_url(&endpoint.url).expect("validated url"),
                signer: sign::Signer::new(secret.as_bytes()),
                timeout: Duration::from_millis(endpoint.timeout_ms),
                max_attempts: endpoint.max_attempts,
                backoff_initial_ms: endpoint.backoff_initial_ms,
                backoff_max_ms: endpoint.backoff_max_ms,
            };
            let (tx, rx) = mpsc::channel(endpoint.queue_capacity);
            let counters = Arc::new(Counters::default());
            workers.spawn(
                Worker {
                    settings,
                    queue: rx,
                    counters: counters.clone(),
                    transport,
                    dead_letters: dead_letters.clone(),
                    rng: SplitMix64(options.jitter_seed.wrapping_add(i as u64)),
                    clock: options.clock,
                    stop: stop.clone(),
                    cutoff: cutoff.clone(),
                }
                .run(),
            );
            info!(endpoint = %name, url = %config::redacted_url(&endpoint.url), "webhook endpoint started");
            endpoints.push(Endpoint { config: endpoint.clone(), name, queue: tx, counters });
        }
        let stopped = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            workers,
            dead_letters.clone(),
            stop.clone(),
            cutoff,
            Duration::from_millis(config.shutdown_flush_ms),
            stopped.clone().drop_guard(),
        ));
        Ok(Webhooks {
            endpoints,
            dead_letters,
            id_prefix: format!("{:x}", options.clock.now().unix_ms),
            next_id: AtomicU64::new(1),
            feed_missed: AtomicU64::new(0),
            clock: options.clock,
            stop,
            stopped,
            supervisor,
        })
    }

    /// Whether any endpoint is configured (none: nothing follows the feed).
    pub fn has_endpoints(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Feed events not offered because the consumer fell behind the feed's
    /// history (see [`follow`]).
    pub fn feed_missed(&self) -> u64 {
        self.feed_missed.load(Ordering::Relaxed)
    }

    /// Whether any endpoint wants `event_type` (so the caller can skip
    /// serializing what nobody will be sent).
    pub fn wants(&self, event_type: &str) -> bool {
        self.endpoints.iter().any(|e| e.config.wants(event_type))
    }

    /// Queues `body` (the event's JSON, sent as is) for every endpoint that
    /// wants `event_type` (`INCIDENT_REPORTED`, ...). Never waits: a full
    /// queue dead-letters that endpoint's delivery (`queue_full`). Returns how
    /// many endpoints it was queued for.
    pub fn offer(&self, event_type: &str, body: Bytes) -> usize {
        let mut queued = 0;
        let mut event: Option<Arc<str>> = None;
        for endpoint in self.endpoints.iter().filter(|e| e.config.wants(event_type)) {
            let delivery = Delivery {
                id: self.new_delivery_id(),
                event_type: event.get_or_insert_with(|| event_type.into()).clone(),
                body: body.clone(),
            };
            match endpoint.queue.try_send(delivery) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(delivery)) => {
                    let dropped = endpoint.counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed) + 1;
                    let error = format!("queue full ({} waiting)", endpoint.config.queue_capacity);
                    // A dead endpoint fills its queue at the event rate: log
                    // the 1st, 2nd, 4th, 8th, ... drop, not each.
                    let log = dropped.is_power_of_two();
                    self.dead_letter(endpoint, &delivery, DeadLetterReason::QueueFull, error, log);
                }
                Err(TrySendError::Closed(delivery)) => {
                    let failed = endpoint.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    let error = "offered after shutdown".to_string();
                    self.dead_letter(endpoint, &delivery, DeadLetterReason::Shutdown, error, failed.is_power_of_two());
                }
            }
        }
        queued
    }

    fn new_delivery_id(&self) -> Arc<str> {
        format!("{}-{}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed)).into()
    }

    fn dead_letter(
        &self,
        endpoint: &Endpoint,
        delivery: &Delivery,
        reason: DeadLetterReason,
        error: String,
        log: bool,
    ) {
        self.dead_letters.push(delivery::dead_letter(&endpoint.name, delivery, 0, reason, error, &self.clock), log);
    }

    /// Counters and gauges, per endpoint and of the dead-letter log.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| EndpointStats {
                    name: e.name.to_string(),
                    queue_depth: e.queue.max_capacity() - e.queue.capacity(),
                    queue_capacity: e.queue.max_capacity(),
                    delivered: e.counters.delivered.load(Ordering::Relaxed),
                    retried: e.counters.retried.load(Ordering::Relaxed),
                    failed: e.counters.failed.load(Ordering::Relaxed),
                    dropped_queue_full: e.counters.dropped_queue_full.load(Ordering::Relaxed),
                })
                .collect(),
            dead_letters_kept: self.dead_letters.len(),
            dead_letters_dropped: self.dead_letters.dropped.load(Ordering::Relaxed),
            dead_letter_write_errors: self.dead_letters.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The dead letters held, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.snapshot()
    }

    /// Puts dead letters (of `endpoint`, or all) back into their endpoint's
    /// queue, oldest first, under their original delivery id and with a fresh
    /// `max_attempts`; those queued leave the log (if they fail again they
    /// come back by the normal path). Those whose queue is full or whose
    /// endpoint is no longer configured stay. Never waits.
    pub fn replay_dead_letters(&self, endpoint: Option<&str>) -> ReplayReport {
        let taken = self.dead_letters.take_where(|l| endpoint.is_none_or(|name| l.endpoint == name));
        let mut report = ReplayReport::default();
        let mut left = Vec::new();
        for letter in taken {
            let Some(target) = self.endpoints.iter().find(|e| *e.name == *letter.endpoint) else {
                report.left_unknown_endpoint += 1;
                left.push(letter);
                continue;
            };
            let delivery = Delivery {
                id: letter.id.as_str().into(),
                event_type: letter.event_type.as_str().into(),
                body: Bytes::from(letter.body.clone()),
            };
            match target.queue.try_send(delivery) {
                Ok(()) => report.requeued += 1,
                Err(_) => {
                    report.left_queue_full += 1;
                    left.push(letter);
                }
            }
        }
        self.dead_letters.put_back(left);
        info!(
            endpoint = endpoint.unwrap_or("*"),
            requeued = report.requeued,
            left_queue_full = report.left_queue_full,
            left_unknown_endpoint = report.left_unknown_endpoint,
            "webhook dead letters replayed"
        );
        report
    }

    /// Stops: each endpoint delivers what it has queued for at most
    /// `shutdown_flush_ms`, the rest is dead-lettered (`shutdown`), and the
    /// dead-letter file is brought up to date. Later offers are dead-lettered
    /// in memory only.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.stopped.cancelled().await;
    }
}

/// A hyper client for an https:// endpoint, trusting its `ca_path`.
fn https_transport(index: usize, ca_path: &str) -> Result<Arc<dyn Transport>, WebhookConfigError> {
    let invalid = |problem: String| WebhookConfigError { key: format!("webhooks.endpoints[{index}].ca_path"), problem };
    let pem = std::fs::read(ca_path).map_err(|e| invalid(format!("{ca_path}: {e}")))?;
    let tls = tls::tls_connector(&pem).map_err(|e| invalid(format!("{ca_path}: {e}")))?;
    Ok(Arc::new(HyperTransport::with_tls(tls)))
}

/// Owns the endpoint tasks and writes dead letters until shutdown; then
/// bounds the flush and writes the last dead letters.
async fn supervise(
    mut workers: JoinSet<()>,
    dead_letters: Arc<dead_letter::DeadLetterLog>,
    stop: CancellationToken,
    cutoff: CancellationToken,
    flush: Duration,
    // Cancels `Webhooks::stopped` when this ends, also by a panic or an abort
    // (even before the first poll: an argument, not a local).
    _stopped: tokio_util::sync::DropGuard,
) {
    let write = || {
        let log = dead_letters.clone();
        async move {
            // Blocking file I/O off the runtime's threads. A panic there is a bug: surface it.
            if let Err(e) = tokio::task::spawn_blocking(move || log.write_pending()).await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    };
    loop {
        tokio::select! {
            _ = dead_letters.wake.notified() => write().await,
            _ = stop.cancelled() => break,
        }
    }
    let deadline = tokio::time::Instant::now() + flush;
    loop {
        tokio::select! {
            _ = dead_letters.wake.notified() => write().await,
            _ = tokio::time::sleep_until(deadline), if !cutoff.is_cancelled() => cutoff.cancel(),
            done = workers.join_next() => match done {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
        }
    }
    write().await;
    info!("webhooks stopped");
}
