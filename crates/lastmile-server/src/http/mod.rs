//! The JSON/HTTP adapter: every `lastmile.v1.Dispatch` operation as JSON
//! over HTTP/1.1, the live feed as Server-Sent Events, `/metrics`,
//! `/healthz`, the OpenAPI document and the webhook admin routes.
//!
//! A sibling of the gRPC adapter over the same application layer
//! ([`crate::app`]): each handler authenticates the caller (once, before
//! its body is read: [`authenticate`]), parses its path, query and JSON
//! body ([`crate::json`], the proto's mirror), calls the one application
//! operation and writes its answer as JSON; an application error becomes a
//! status by the one table ([`crate::error`]). So validation, error
//! messages, idempotency by `external_id` and the feed's limits are the
//! gRPC ones by construction, and nothing of dispatch is decided here.
//!
//! # Layout
//!
//! - [`handlers`]: the Dispatch operations.
//! - [`sse`]: `GET /v1/events`.
//! - [`admin`]: webhook dead letters (role admin).
//! - [`console`]: the dispatchers' console: its embedded files, map data and
//!   browser sessions.
//! - [`prometheus`]: the `/metrics` page.
//! - [`error`]: refusals and their JSON body.
//! - `openapi.json`: the document served at `GET /openapi.json`; the e2e
//!   tests check real responses against it.
//!
//! [`router`] builds the routes; [`serve`] runs them on a listener.

pub mod admin;
pub mod console;
pub mod error;
pub mod handlers;
pub mod prometheus;
pub mod reports;
pub mod sse;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::HttpConfig;
use crate::error::ErrorCode;
use crate::webhook::Webhooks;
use error::ApiError;

/// The OpenAPI 3.1 document of this gateway.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) app: Arc<App>,
    /// For the admin routes and `/metrics`.
    pub(crate) webhooks: Arc<Webhooks>,
    /// The console's map data and sessions.
    pub(crate) console: Arc<console::Console>,
    /// The OpenAPI document with this server's configured bounds.
    openapi: axum::body::Bytes,
    max_body_bytes: usize,
    sse_keepalive: Duration,
}

/// The gateway's routes, as a router with its state applied, so callers can
/// add layers and routes before serving it.
pub fn router(app: Arc<App>, webhooks: Arc<Webhooks>, config: &HttpConfig) -> Result<Router, String> {
    let console = Arc::new(console::Console::new(&app.config)?);
    let document = served_openapi(&app.config)?;
    let gateway = Gateway {
        app,
        webhooks,
        console,
        openapi: document,
        max_body_bytes: config.max_body_bytes,
        sse_keepalive: Duration::from_secs(config.sse_keepalive_s),
    };
    use handlers::*;
    let router = Router::new()
        .route("/", get(console::index))
        .route(
            "/console/session",
            get(console::get_session).post(console::post_session).delete(console::delete_session),
        )
        .route("/console/map", get(console::map))
        .route("/v1/incidents/{id}/candidates", get(console::candidates))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus::metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/ping", get(ping))
        .route("/v1/incidents", post(report_incident).get(list_incidents))
        .route("/v1/incidents/{id}", get(get_incident))
        .route("/v1/incidents/{id}/close", post(close_incident))
        .route("/v1/incidents/{id}/assign", post(assign_unit))
        .route("/v1/incidents/{id}/timeline", get(incident_timeline))
        .route("/v1/incidents/{id}/confirm-arrival", post(confirm_arrival))
        .route("/v1/dispatch/preview", post(preview_dispatch))
        .route("/v1/units", get(list_units))
        .route("/v1/units/{id}", get(get_unit).put(upsert_unit))
        .route("/v1/units/{id}/status", post(set_unit_status))
        .route("/v1/units/{id}/release", post(release_unit))
        .route("/v1/events", get(sse::watch_events))
        .route("/v1/eta", get(reports::eta_status))
        .route("/v1/reports/compliance", get(reports::compliance))
        .route("/v1/admin/webhooks/dead-letters", get(admin::read_dead_letters))
        .route("/v1/admin/webhooks/dead-letters/replay", post(admin::replay_dead_letters))
        // Strangers are refused before their bodies are read.
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), authenticate))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Every answer counted by status (refusals included).
        .layer(axum::middleware::map_response_with_state(gateway.clone(), count_response))
        // Bodies are read whole (JsonBody) under this limit; beyond it 413.
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(gateway);
    Ok(router)
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for the connections to finish their requests. Event
/// streams end on their own at shutdown (`App::stop`), so they do not hold
/// the drain open; bounding the drain is the caller's
/// (`server.shutdown_grace_ms` in the binary).
///
/// HTTP/1.1, TCP_NODELAY on every connection (as the gRPC side), at most
/// `http.max_connections` at once (the next waits in the listen backlog),
/// and `http.header_read_timeout_ms` for a request head. (axum::serve
/// bounds neither.) Every connection task lives in this future: dropping it
/// ends them all.
///
/// Fair to every client: a connection from a client (source address) that
/// already holds `http.max_connections_per_client` is closed as soon as it
/// is accepted, before TLS or any byte of a request is read, and counted in
/// `metrics` under that key. Only a connection within its client's bound
/// then takes (or waits for) one of the `max_connections` places, so one
/// client can hold at most its own share of them.
pub async fn serve(
    listener: Arc<TcpListener>,
    router: Router,
    config: &HttpConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let places = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    // No total here: the semaphore bounds the sum (waiting, not refusing),
    // and so the number of clients counted (at most max_connections + 1).
    let clients = crate::conn_limit::ConnLimit::new(config.max_connections_per_client, None);
    let header_read_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off rather
                // than spin (what axum::serve does too).
                tracing::warn!(%error, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(client_place) = clients.try_acquire(peer.ip()) else {
            tracing::debug!(client = %peer.ip(), "http: connection refused at accept: http.max_connections_per_client");
            metrics.limit_hit("http.max_connections_per_client");
            drop(stream);
            continue;
        };
        // Within its client's bound: now it may wait for a place (while it
        // waits, further clients wait in the listen backlog, as before).
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
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
            drop(client_place);
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
        let limit_ms = gateway.app.config.server.request_timeout_ms;
        let read = tokio::time::timeout(Duration::from_millis(limit_ms), Bytes::from_request(request, gateway));
        let read = read.await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::DeadlineExceeded,
                format!("request body: not received within {limit_ms} ms (server.request_timeout_ms)"),
            )
        })?;
        let bytes = read.map_err(|r| {
            let refusal = error::from_bytes_rejection(r, gateway.max_body_bytes);
            if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
                gateway.app.metrics.limit_hit("http.max_body_bytes");
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
                ErrorCode::InvalidArgument,
                "request body: Content-Type must be application/json",
            ));
        }
        axum::Json::<T>::from_bytes(&bytes).map(|j| JsonBody(j.0)).map_err(error::from_json_rejection)
    }
}

/// Runs an operation that changes state under `server.request_timeout_ms`,
/// as the gRPC adapter does (there the answer is CANCELLED; here 504
/// DEADLINE_EXCEEDED, which is what it means to an HTTP client).
pub(crate) async fn timed<T>(
    gateway: &Gateway,
    operation: impl Future<Output = Result<T, crate::error::AppError>>,
) -> Result<T, ApiError> {
    let limit_ms = gateway.app.config.server.request_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(limit_ms), operation).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::DeadlineExceeded,
            format!("not answered within {limit_ms} ms (server.request_timeout_ms)"),
        )),
    }
}

pub(crate) fn ok<T: serde::Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// 503 NOT_SERVING once shutting down or after a journal write failed
/// (every change is refused then): what a load balancer should act on.
async fn healthz(State(gateway): State<Gateway>) -> Response {
    if !gateway.app.serving() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "NOT_SERVING" })))
            .into_response();
    }
    ok(serde_json::json!({ "status": "SERVING" }))
}

async fn openapi(State(gateway): State<Gateway>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], gateway.openapi.clone()).into_response()
}

/// The document as this server answers: the bounds that are configuration
/// (`server.max_page_size`) filled in, so a tester generating requests from
/// it meets the server's real limits.
fn served_openapi(config: &crate::config::LastmileConfig) -> Result<axum::body::Bytes, String> {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).map_err(|e| format!("openapi.json: {e}"))?;
    for path in ["/v1/incidents", "/v1/units"] {
        let Some(parameters) = doc["paths"][path]["get"]["parameters"].as_array_mut() else { continue };
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "page_size") {
            parameter["schema"]["maximum"] = config.server.max_page_size.into();
        }
    }
    serde_json::to_vec_pretty(&doc).map(Into::into).map_err(|e| e.to_string())
}

async fn count_response(State(gateway): State<Gateway>, response: Response) -> Response {
    gateway.app.metrics.http_response(response.status().as_u16());
    response
}

/// Every `/v1/` route (and the console's map) needs a caller: a bearer
/// token, or a console session cookie (whose writes must carry the
/// console's header); what the caller may do is the operation's check. The
/// caller goes to the handler as a request extension; health, metrics, the
/// document and the console's files stay open. A write from another
/// origin is refused whatever it carries.
async fn authenticate(
    State(gateway): State<Gateway>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    console::same_origin(&request)?;
    let path = request.uri().path();
    if path.starts_with("/v1/") || path == "/console/map" {
        let caller = match request.headers().get(header::AUTHORIZATION) {
            Some(authorization) => gateway.app.authenticate(Some(authorization.as_bytes()))?,
            None => match gateway.console.session_caller(request.headers()) {
                Some(caller) => {
                    console::console_write(&request)?;
                    caller
                }
                None => gateway.app.authenticate(None)?,
            },
        };
        request.extensions_mut().insert(caller);
    }
    Ok(next.run(request).await)
}

/// A console file, or 404.
async fn unknown_route(State(gateway): State<Gateway>, uri: axum::http::Uri) -> Response {
    if let Some(file) = console::asset(&gateway, uri.path()) {
        return file;
    }
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no route {}", uri.path())).into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unimplemented,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
