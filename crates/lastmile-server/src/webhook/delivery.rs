//! One endpoint's delivery task: takes deliveries from its bounded queue in
//! order, one in flight at a time, POSTs each (retrying with backoff) until it
//! is delivered or dead-lettered, then the next. So deliveries to one
//! endpoint arrive in the order they were offered, and a slow endpoint holds
//! up only its own queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lastmile_core::sim::SplitMix64;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::dead_letter::{DeadLetter, DeadLetterLog, DeadLetterReason};
use super::sign::Signer;
use super::tls::Connector;
use crate::clock::Clock;

pub const HEADER_SIGNATURE: &str = "x-lastmile-signature";
pub const HEADER_EVENT: &str = "x-lastmile-event";
pub const HEADER_DELIVERY: &str = "x-lastmile-delivery";
/// 1 for the first attempt of a delivery, 2 for its first retry, ...
/// (not signed; informational).
pub const HEADER_ATTEMPT: &str = "x-lastmile-attempt";

/// Bytes of a response body read (and thrown away) so the connection can be
/// reused; a longer body is cut and the connection dropped.
const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024;

/// One POST's result: the status, or why there is none.
pub type PostResult = Result<StatusCode, String>;
pub type PostFuture = Pin<Box<dyn Future<Output = PostResult> + Send>>;

/// How requests go out: HTTP/1.1 with hyper in production; tests inject
/// scripted answers to run the retry logic on a paused clock.
pub trait Transport: Send + Sync + 'static {
    fn post(&self, request: Request<Bytes>) -> PostFuture;
}

/// hyper-util's pooled HTTP/1.1 client (keep-alive per endpoint), with
/// rustls for https:// when built [`HyperTransport::with_tls`].
pub struct HyperTransport {
    client: Client<Connector, Full<Bytes>>,
}

impl HyperTransport {
    /// http:// only.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// http:// and https:// (trusting what `tls` trusts).
    pub fn with_tls(tls: tokio_rustls::TlsConnector) -> Self {
        Self::build(Some(tls))
    }

    fn build(tls: Option<tokio_rustls::TlsConnector>) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(Connector::new(tls));
        HyperTransport { client }
    }
}

impl Default for HyperTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for HyperTransport {
    fn post(&self, request: Request<Bytes>) -> PostFuture {
        let request = request.map(Full::new);
        let response = self.client.request(request);
        Box::pin(async move {
            let response = response.await.map_err(|e| describe_client_error(&e))?;
            let status = response.status();
            // Read what little the receiver says so the connection is reused.
            let _ = Limited::new(response.into_body(), MAX_RESPONSE_BODY_BYTES).collect().await;
            Ok(status)
        })
    }
}

/// "connect: connection refused" rather than hyper's outermost message only.
fn describe_client_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A delivery waiting in an endpoint's queue.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub id: Arc<str>,
    pub event_type: Arc<str>,
    pub body: Bytes,
}

/// Counters of one endpoint (see `EndpointStats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub dropped_queue_full: AtomicU64,
}

/// What one endpoint's task needs; its settings are already validated.
pub(crate) struct EndpointSettings {
    pub name: Arc<str>,
    pub uri: Uri,
    pub signer: Signer,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

/// How one attempt ended.
#[derive(Debug, PartialEq)]
pub(crate) enum AttemptOutcome {
    Delivered,
    /// 5xx, 408, 429, timeout, connection error.
    Retryable(String),
    /// Any other status: retrying would get the same answer.
    Rejected(String),
}

pub(crate) fn classify(result: Result<PostResult, tokio::time::error::Elapsed>, timeout: Duration) -> AttemptOutcome {
    match result {
        Err(_) => AttemptOutcome::Retryable(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(error)) => AttemptOutcome::Retryable(error),
        Ok(Ok(status)) if status.is_success() => AttemptOutcome::Delivered,
        Ok(Ok(status))
            if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS =>
        {
            AttemptOutcome::Retryable(format!("http {}", status.as_u16()))
        }
        Ok(Ok(status)) => AttemptOutcome::Rejected(format!("http {}", status.as_u16())),
    }
}

/// Full jitter: the wait before retry `retry` (1 = the first retry) is
/// uniform in [0, min(max, initial * 2^(retry-1))] ms.
pub(crate) fn backoff_ms(rng: &mut SplitMix64, retry: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let ceiling = initial_ms.saturating_mul(1u64 << (retry - 1).min(62)).min(max_ms);
    rng.next_u64() % (ceiling + 1)
}

/// One endpoint's task.
pub(crate) struct Worker {
    pub settings: EndpointSettings,
    pub queue: mpsc::Receiver<Delivery>,
    pub counters: Arc<Counters>,
    pub transport: Arc<dyn Transport>,
    pub dead_letters: Arc<DeadLetterLog>,
    pub rng: SplitMix64,
    pub clock: Clock,
    /// Stop taking new work from the queue once it is empty (shutdown began).
    pub stop: CancellationToken,
    /// The shutdown flush is over: dead-letter what is left and return.
    pub cutoff: CancellationToken,
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut draining = false;
        loop {
            let delivery = if draining {
                match self.queue.try_recv() {
                    Ok(delivery) => delivery,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => {
                        draining = true;
                        continue;
                    }
                    delivery = self.queue.recv() => match delivery {
                        Some(delivery) => delivery,
                        None => break,
                    },
                }
            };
            if !self.deliver(delivery).await {
                break;
            }
        }
        // Nothing more is accepted; what is still queued was not sent.
        self.queue.close();
        while let Ok(delivery) = self.queue.try_recv() {
            self.dead_letter(&delivery, 0, DeadLetterReason::Shutdown, "not sent before shutdown".into());
        }
    }

    /// Delivers one (with retries). False if the shutdown cut it off.
    async fn deliver(&mut self, delivery: Delivery) -> bool {
        let mut last_error = String::new();
        for attempt in 1..=self.settings.max_attempts {
            if attempt > 1 {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                let wait_ms = backoff_ms(
                    &mut self.rng,
                    attempt - 1,
                    self.settings.backoff_initial_ms,
                    self.settings.backoff_max_ms,
                );
                debug!(endpoint = %self.settings.name, delivery = %delivery.id, attempt, wait_ms, last_error = %last_error, "webhook retry");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                    _ = self.cutoff.cancelled() => {
                        self.dead_letter(&delivery, attempt - 1, DeadLetterReason::Shutdown, last_error);
                        return false;
                    }
                }
            }
            let request = self.request(&delivery, attempt);
            let post = tokio::time::timeout(self.settings.timeout, self.transport.post(request));
            let result = tokio::select! {
                result = post => result,
                _ = self.cutoff.cancelled() => {
                    let error = format!("attempt {attempt} cut off by shutdown");
                    self.dead_letter(&delivery, attempt, DeadLetterReason::Shutdown, error);
                    return false;
                }
            };
            match classify(result, self.settings.timeout) {
                AttemptOutcome::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(endpoint = %self.settings.name, delivery = %delivery.id, attempt, "webhook delivered");
                    return true;
                }
                AttemptOutcome::Retryable(error) => last_error = error,
                AttemptOutcome::Rejected(error) => {
                    self.dead_letter(&delivery, attempt, DeadLetterReason::Rejected, error);
                    return true;
                }
            }
        }
        self.dead_letter(&delivery, self.settings.max_attempts, DeadLetterReason::Exhausted, last_error);
        true
    }

    fn request(&self, delivery: &Delivery, attempt: u32) -> Request<Bytes> {
        let value = |text: &str| HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Request::builder()
            .method(Method::POST)
            .uri(self.settings.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("lastmile/", env!("CARGO_PKG_VERSION")))
            .header(HEADER_SIGNATURE, value(&self.settings.signer.sign(&delivery.body)))
            .header(HEADER_EVENT, value(&delivery.event_type))
            .header(HEADER_DELIVERY, value(&delivery.id))
            .header(HEADER_ATTEMPT, attempt)
            .body(delivery.body.clone())
            .expect("a validated URI and valid header values make a request")
    }

    fn dead_letter(&self, delivery: &Delivery, attempts: u32, reason: DeadLetterReason, last_error: String) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.dead_letters
            .push(dead_letter(&self.settings.name, delivery, attempts, reason, last_error, &self.clock), true);
    }
}

pub(crate) fn dead_letter(
    endpoint: &str,
    delivery: &Delivery,
    attempts: u32,
    reason: DeadLetterReason,
    last_error: String,
    clock: &Clock,
) -> DeadLetter {
    DeadLetter {
        id: delivery.id.to_string(),
        endpoint: endpoint.to_string(),
        event_type: delivery.event_type.to_string(),
        body: String::from_utf8_lossy(&delivery.body).into_owned(),
        attempts,
        reason,
        last_error,
        failed_at_unix_ms: clock.now().unix_ms,
    }
}
