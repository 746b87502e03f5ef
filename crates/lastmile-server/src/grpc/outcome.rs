//! A tower layer around every gRPC service: bounds each call by
//! `server.request_timeout_ms` (CANCELLED when over, as tonic's own timeout
//! answers) except a terminal's position stream, which lives as long as the
//! terminal reports; counts refused calls by method and code
//! (`lastmile_grpc_errors_total`); and answers an oversized request message
//! with RESOURCE_EXHAUSTED (gRPC's code for a size limit; tonic's own answer
//! is OUT_OF_RANGE), counted as a hit of `server.max_decoding_message_bytes`.
//!
//! It sees error answers only: tonic puts an error's `grpc-status` in the
//! response headers ("trailers-only"), a success's in the trailers, which
//! this layer does not wait for (it would have to wrap every body).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Code;

use crate::metrics::Metrics;

/// tonic's message for a request message over `max_decoding_message_size`.
const DECODE_TOO_LARGE: &str = "Error, decoded message length too large";

#[derive(Clone)]
pub struct OutcomeLayer {
    metrics: Arc<Metrics>,
    request_timeout: Duration,
}

impl OutcomeLayer {
    pub fn new(metrics: Arc<Metrics>, request_timeout: Duration) -> Self {
        OutcomeLayer { metrics, request_timeout }
    }
}

impl<S> tower::Layer<S> for OutcomeLayer {
    type Service = Outcome<S>;
    fn layer(&self, inner: S) -> Outcome<S> {
        Outcome { inner, metrics: self.metrics.clone(), request_timeout: self.request_timeout }
    }
}

#[derive(Clone)]
pub struct Outcome<S> {
    inner: S,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
}

/// Client-streaming calls whose handler runs as long as the caller sends:
/// not bounded by `server.request_timeout_ms` (their own bounds are
/// `terminals.max_positions_per_stream`, the token's rate and shutdown).
const LONG_LIVED: &[&str] = &["ReportPosition"];

impl<S, B> tower::Service<http::Request<B>> for Outcome<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Once per call, and no copy of the path: a known RPC's name or `unknown`.
        let method = method_label(request.uri().path());
        let answer = self.inner.call(request);
        let metrics = self.metrics.clone();
        let limit = (!LONG_LIVED.contains(&method)).then_some(self.request_timeout);
        Box::pin(async move {
            let answered = match limit {
                Some(limit) => match tokio::time::timeout(limit, answer).await {
                    Ok(answered) => answered,
                    Err(_) => {
                        metrics.limit_hit("server.request_timeout_ms");
                        metrics.grpc_error(method, Code::Cancelled as i32);
                        let status = tonic::Status::cancelled(format!(
                            "not answered within {} ms (server.request_timeout_ms)",
                            limit.as_millis()
                        ));
                        return Ok(status.into_http());
                    }
                },
                None => answer.await,
            };
            let mut response = answered?;
            let Some(code) = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            else {
                return Ok(response);
            };
            let mut code = Code::from_i32(code);
            if code == Code::OutOfRange
                && response
                    .headers()
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| percent_decoded_starts_with(m, DECODE_TOO_LARGE))
            {
                code = Code::ResourceExhausted;
                response.headers_mut().insert("grpc-status", http::HeaderValue::from(code as i32));
                metrics.limit_hit("server.max_decoding_message_bytes");
            }
            if code != Code::Ok {
                metrics.grpc_error(method, code as i32);
            }
            Ok(response)
        })
    }
}

/// The method name of a known RPC; anything else (a caller's made-up path)
/// is `unknown`, so callers cannot grow the label set.
fn method_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ReportIncident",
        "GetIncident",
        "ListIncidents",
        "CloseIncident",
        "PreviewDispatch",
        "ListUnits",
        "GetUnit",
        "UpsertUnit",
        "SetUnitStatus",
        "Ping",
        "WatchEvents",
        "AssignUnit",
        "ReleaseUnit",
        "Subscribe",
        "Acknowledge",
        "ReportStatus",
        "ReportPosition",
        "Check",
        "Watch",
        "ServerReflectionInfo",
    ];
    let method = path.rsplit('/').next().unwrap_or_default();
    KNOWN.iter().find(|known| **known == method).copied().unwrap_or("unknown")
}

/// grpc-message is percent-encoded; the prefix we look for has only spaces
/// and commas to decode.
fn percent_decoded_starts_with(message: &str, prefix: &str) -> bool {
    message.replace("%20", " ").replace("%2C", ",").starts_with(prefix)
}
