//! The JSON/HTTP gateway: the `lastmile.v1.Dispatch` operations for systems
//! that cannot speak gRPC (the upstream grid-governance command system), and
//! the live feed as Server-Sent Events.
//!
//! Same behaviour as gRPC by construction: every handler maps its JSON to
//! the prost request, calls the [`DispatchService`] the gRPC server runs
//! (built from the same [`Shared`]), and maps the answer back; a
//! `tonic::Status` becomes an HTTP status by one table ([`error`]). So
//! validation, error messages, idempotency by `external_id` and the feed's
//! limits (`feed.max_watchers`, `feed.subscriber_buffer_events`,
//! `feed.watcher_stall_timeout_ms`) are the gRPC ones. Nothing of dispatch is
//! decided here.
//!
//! # Layout
//!
//! - [`json`]: the DTOs (and [`json::event`], the one JSON form of a feed event).
//! - [`error`]: gRPC code -> HTTP status, and every refusal's JSON body.
//! - [`sse`]: `GET /v1/events`.
//! - `openapi.json`: the document served at `GET /openapi.json`; the e2e
//!   test (`tests/gateway.rs`) checks real responses against it.
//!
//! [`router`] builds the routes; [`serve`] runs them on a listener. They are
//! separate so that middleware (authentication, metrics) can wrap the router
//! before it is served.

pub mod error;
pub mod json;
pub mod sse;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_server::Dispatch;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tonic::Code;

use crate::Shared;
use crate::config::HttpConfig;
use crate::service::DispatchService;
use error::ApiError;

/// The OpenAPI 3.1 document of this gateway.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub struct Gateway {
    /// The gRPC service itself: handlers call its methods.
    dispatch: Arc<DispatchService>,
    /// For `server.request_timeout_ms` and the feed's shutdown.
    shared: Arc<Shared>,
    max_body_bytes: usize,
    sse_keepalive: Duration,
}

/// The gateway's routes, as a router with its state applied, so callers can
/// add layers (authentication) and routes (metrics) before serving it.
pub fn router(shared: Arc<Shared>, config: &HttpConfig) -> Router {
    let gateway = Gateway {
        dispatch: Arc::new(DispatchService::new(shared.clone())),
        shared,
        max_body_bytes: config.max_body_bytes,
        sse_keepalive: Duration::from_secs(config.sse_keepalive_s),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/incidents", post(report_incident).get(list_incidents))
        .route("/v1/incidents/{id}", get(get_incident))
        .route("/v1/incidents/{id}/close", post(close_incident))
        .route("/v1/dispatch/preview", post(preview_dispatch))
        .route("/v1/units", get(list_units))
        .route("/v1/units/{id}", get(get_unit))
        .route("/v1/events", get(sse::watch_events))
        .route("/v1/admin/webhooks/dead-letters", get(read_dead_letters))
        .route("/v1/admin/webhooks/dead-letters/replay", post(replay_dead_letters))
        // Strangers are refused before their bodies are read.
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), authenticate))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Every answer counted by status (refusals included).
        .layer(axum::middleware::map_response_with_state(gateway.clone(), count_response))
        // Bodies are read whole (JsonBody) under this limit; beyond it 413.
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(gateway)
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for the connections to finish their requests. Event
/// streams end on their own at shutdown (`Shared::stop`), so they do not hold
/// the drain open; bounding the drain is the caller's
/// (`server.shutdown_grace_ms` in the binary).
///
/// HTTP/1.1, TCP_NODELAY on every connection (as the gRPC side), at most
/// `http.max_connections` at once (the next waits in the listen backlog),
/// and `http.header_read_timeout_ms` for a request head. (axum::serve
/// bounds neither.) Every connection task lives in this future: dropping it
/// ends them all.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let places = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let header_read_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off rather
                // than spin (what axum::serve does too).
                tracing::warn!(%error, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "http: cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        // The TLS handshake runs in the connection's task (a slow client must
        // not hold up accepting), bounded by the header read timeout.
        connections.spawn(async move {
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
                b
            };
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(tls) => match tokio::time::timeout(header_read_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "http: TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!("http: TLS handshake timed out");
                        Ok(())
                    }
                },
            };
            if let Err(error) = result {
                tracing::debug!(%error, "http connection ended");
            }
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}

/// The rustls acceptor for `[tls]` (HTTP/1.1 by ALPN).
pub fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.cert_path: {e}"))?;
    if certs.is_empty() {
        return Err("tls.cert_path: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("tls.key_path: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.key_path: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A JSON request body: read whole (bounded by `http.max_body_bytes`), an
/// empty body meaning `{}`, otherwise a JSON object with
/// `Content-Type: application/json`.
/// Every failure is an [`ApiError`] (axum's own rejections are plain text).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Gateway> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, gateway: &Gateway) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        // A body trickling in must not hold a connection place for ever.
        let limit_ms = gateway.shared.config.server.request_timeout_ms;
        let read = tokio::time::timeout(Duration::from_millis(limit_ms), Bytes::from_request(request, gateway));
        let read = read.await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                Code::DeadlineExceeded,
                format!("request body: not received within {limit_ms} ms (server.request_timeout_ms)"),
            )
        })?;
        let bytes = read.map_err(|r| {
            let refusal = error::from_bytes_rejection(r, gateway.max_body_bytes);
            if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
                gateway.shared.metrics.limit_hit("http.max_body_bytes");
            }
            refusal
        })?;
        if bytes.is_empty() {
            return axum::Json::<T>::from_bytes(b"{}").map(|j| JsonBody(j.0)).map_err(error::from_json_rejection);
        }
        // serde would read a struct from an array too; the API takes objects.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') && is_json == Some(true) {
            return Err(ApiError::invalid("request body: must be a JSON object"));
        }
        if is_json != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                "request body: Content-Type must be application/json",
            ));
        }
        axum::Json::<T>::from_bytes(&bytes).map(|j| JsonBody(j.0)).map_err(error::from_json_rejection)
    }
}

/// Runs one call of the gRPC service under `server.request_timeout_ms`, as
/// the gRPC server does (there the answer is CANCELLED; here 504
/// DEADLINE_EXCEEDED, which is what it means to an HTTP client).
async fn call<T>(
    gateway: &Gateway,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ApiError> {
    let limit_ms = gateway.shared.config.server.request_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(limit_ms), call).await {
        Ok(answer) => Ok(answer?.into_inner()),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            format!("not answered within {limit_ms} ms (server.request_timeout_ms)"),
        )),
    }
}

/// The gRPC request the gateway hands to the service, with the caller's
/// `authorization` header: the service's own check ([`crate::auth`]) decides,
/// so HTTP and gRPC callers are held to the same table and rate.
pub(super) fn grpc_request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes())
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn ok<T: serde::Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// 503 NOT_SERVING once shutting down or after a journal write failed
/// (every change is refused then): what a load balancer should act on.
async fn healthz(State(gateway): State<Gateway>) -> Response {
    let shared = &gateway.shared;
    let failed = shared.journal.as_ref().is_some_and(|j| j.failure().is_some());
    if failed || shared.stop.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "NOT_SERVING" })))
            .into_response();
    }
    ok(serde_json::json!({ "status": "SERVING" }))
}

/// Prometheus text format; open like health (see [`crate::metrics`]).
async fn metrics(State(gateway): State<Gateway>) -> Response {
    let text = crate::metrics::render(&gateway.shared);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI_JSON).into_response()
}

/// `POST /v1/incidents`: 201 and `Location` for a new incident, 200 with
/// `duplicate: true` for a repeated `external_id`.
async fn report_incident(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<json::ReportIncidentBody>,
) -> Result<Response, ApiError> {
    let request = pb::ReportIncidentRequest::from(body);
    let answer = call(&gateway, gateway.dispatch.report_incident(grpc_request(&headers, request))).await?;
    let answer = json::ReportIncidentResponse::from(answer);
    if answer.duplicate {
        return Ok(ok(answer));
    }
    let location = HeaderValue::try_from(format!("/v1/incidents/{}", answer.incident.id)).ok();
    let mut response = (StatusCode::CREATED, axum::Json(answer)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn get_incident(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(error::from_path_rejection)?;
    let answer =
        call(&gateway, gateway.dispatch.get_incident(grpc_request(&headers, pb::GetIncidentRequest { id }))).await?;
    Ok(ok(json::Incident::from(answer)))
}

async fn list_incidents(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<json::ListIncidentsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(error::from_query_rejection)?;
    let request = pb::ListIncidentsRequest::from(query);
    let answer = call(&gateway, gateway.dispatch.list_incidents(grpc_request(&headers, request))).await?;
    Ok(ok(json::ListIncidentsResponse::from(answer)))
}

async fn close_incident(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::CloseIncidentBody>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(error::from_path_rejection)?;
    let request = pb::CloseIncidentRequest { id, reason: body.reason };
    let answer = call(&gateway, gateway.dispatch.close_incident(grpc_request(&headers, request))).await?;
    Ok(ok(json::CloseIncidentResponse::from(answer)))
}

async fn preview_dispatch(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<json::PreviewDispatchBody>,
) -> Result<Response, ApiError> {
    let request = pb::PreviewDispatchRequest::from(body);
    let answer = call(&gateway, gateway.dispatch.preview_dispatch(grpc_request(&headers, request))).await?;
    Ok(ok(json::PreviewDispatchResponse::from(answer)))
}

async fn list_units(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<json::ListUnitsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(error::from_query_rejection)?;
    let request = pb::ListUnitsRequest::from(query);
    let answer = call(&gateway, gateway.dispatch.list_units(grpc_request(&headers, request))).await?;
    Ok(ok(json::ListUnitsResponse::from(answer)))
}

async fn get_unit(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(error::from_path_rejection)?;
    let answer = call(&gateway, gateway.dispatch.get_unit(grpc_request(&headers, pb::GetUnitRequest { id }))).await?;
    Ok(ok(json::Unit::from(answer)))
}

async fn count_response(State(gateway): State<Gateway>, response: Response) -> Response {
    gateway.shared.metrics.http_response(response.status().as_u16());
    response
}

/// Every route but health, metrics and the document needs a configured
/// token (the operation's role and rate are checked by the handler).
async fn authenticate(
    State(gateway): State<Gateway>,
    request: Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    if request.uri().path().starts_with("/v1/") {
        let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        gateway.shared.auth.authenticate_header(authorization).map_err(ApiError::from)?;
    }
    Ok(next.run(request).await)
}

/// The operator's own check for routes that are not gRPC calls.
fn authorize(gateway: &Gateway, headers: &HeaderMap, op: crate::auth::Operation) -> Result<(), ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    gateway.shared.auth.check_header(authorization, op).map(|_| ()).map_err(ApiError::from)
}

/// `GET /v1/admin/webhooks/dead-letters`: the webhook deliveries that
/// failed, oldest first (role admin).
async fn read_dead_letters(State(gateway): State<Gateway>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&gateway, &headers, crate::auth::Operation::ReadDeadLetters)?;
    Ok(ok(json::DeadLetters { dead_letters: gateway.shared.webhooks.dead_letters() }))
}

/// `POST /v1/admin/webhooks/dead-letters/replay`: puts them (of one
/// `endpoint`, or all) back in their endpoints' queues (role admin).
async fn replay_dead_letters(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<json::ReplayBody>,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers, crate::auth::Operation::ReplayDeadLetters)?;
    Ok(ok(gateway.shared.webhooks.replay_dead_letters(body.endpoint.as_deref())))
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
