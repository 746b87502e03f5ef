//! The dispatchers' console: its static files (embedded at build time from
//! `src/console/`, listed in `src/console/FILES`), its map data, and browser
//! sessions.
//!
//! **Nothing leaves the listener**: every file the page needs is served
//! here, and each answer carries a Content-Security-Policy that lets the
//! page load only from its own origin.
//!
//! **Sessions.** With `[auth]` on, a dispatcher signs in once with a token
//! (`POST /console/session`); the browser then holds an HttpOnly,
//! SameSite=Strict cookie (Secure under TLS) for `console.session_ttl_s`,
//! which authenticates its API calls and its live feed (a browser's
//! EventSource cannot send an `Authorization` header). Writes authenticated
//! by the cookie must also carry `X-Lastmile-Console: 1`, a header no other
//! site can make a browser send; and any write whose `Origin` is not this
//! listener's is refused, cookie or not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::error::{self, ApiError};
use super::{Gateway, JsonBody, ok};
use crate::app::{Caller, Operation};
use crate::config::LastmileConfig;
use crate::error::ErrorCode;
use crate::{json, wire};

include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

/// The session cookie's name.
pub const COOKIE: &str = "lastmile_session";
/// The header a console write carries (its CSRF guard).
pub const CONSOLE_HEADER: &str = "x-lastmile-console";

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// An embedded file by its path (`app.js`, `vendor/leaflet/leaflet.js`).
pub fn file(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(name, _)| *name == path).map(|(_, bytes)| *bytes)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// An embedded file as an answer (no-cache: a new binary serves new files).
fn serve_file(path: &str) -> Option<Response> {
    let bytes = file(path)?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(response)
}

/// `GET /`: the console's page (404 with `console.enabled = false`).
pub async fn index(State(g): State<Gateway>) -> Result<Response, ApiError> {
    if !g.app.config.console.enabled {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "the console is off (console.enabled)"));
    }
    serve_file("index.html").ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "this build has no console (src/console is empty)")
    })
}

/// One of the console's files, for a path no route took (`/app.js`,
/// `/console/app.js`, `/vendor/leaflet/leaflet.css`); `None` if it is none.
pub fn asset(g: &Gateway, path: &str) -> Option<Response> {
    if !g.app.config.console.enabled {
        return None;
    }
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("console/").unwrap_or(path);
    if path.contains("..") {
        return None;
    }
    serve_file(path)
}

/// `GET /console/map`: the district's own base layers (no tile server).
pub async fn map(State(g): State<Gateway>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    // Read like the units (a grid worker's contact is not for strangers).
    g.app
        .auth
        .authorize(&caller, Operation::ListUnits)
        .or_else(|_| g.app.auth.authorize(&caller, Operation::ListIncidents))?;
    let mut response = (StatusCode::OK, g.console.map.clone()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The map data, built once at start from the configured dataset.
pub fn map_json(config: &LastmileConfig) -> Result<axum::body::Bytes, String> {
    let read = |name: &str| -> Result<serde_json::Value, String> {
        let text = config.dataset_file_text(name).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
    };
    let places = read(&config.dataset.places)?;
    let towns: Vec<serde_json::Value> = places["towns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| serde_json::json!({"name": t["name"], "lat": t["center"]["lat"], "lng": t["center"]["lng"]}))
        .collect();
    let map = serde_json::json!({
        "district": read(&config.dataset.outline)?,
        "grid": read(&config.dataset.grid)?,
        "towns": towns,
    });
    Ok(serde_json::to_vec(&map).map_err(|e| e.to_string())?.into())
}

/// What the console knows at start: base layers and its sessions.
pub struct Console {
    map: axum::body::Bytes,
    sessions: Sessions,
}

impl Console {
    pub fn new(config: &LastmileConfig) -> Result<Self, String> {
        let ttl = Duration::from_secs(config.console.session_ttl_s);
        Ok(Console { map: map_json(config)?, sessions: Sessions::new(ttl, config.console.max_sessions) })
    }

    /// The caller a session cookie in `headers` stands for.
    pub fn session_caller(&self, headers: &HeaderMap) -> Option<Caller> {
        self.sessions.get(&session_id(headers)?)
    }
}

/// Signed-in browsers: a random id (the cookie) -> who and until when.
struct Sessions {
    /// Held for one map operation; never across an await.
    map: Mutex<HashMap<String, (Caller, Instant)>>,
    ttl: Duration,
    max: usize,
}

impl Sessions {
    fn new(ttl: Duration, max: usize) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), ttl, max }
    }

    fn get(&self, id: &str) -> Option<Caller> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some((caller, expires)) if *expires > Instant::now() => Some(caller.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn create(&self, caller: Caller) -> Result<String, ApiError> {
        let id = random_id().map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, format!("session id: {e}"))
        })?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, expires)| *expires > now);
        if map.len() >= self.max {
            return Err(ApiError::from(
                crate::error::AppError::exhausted(format!(
                    "{} console sessions already (console.max_sessions): sign out elsewhere, or wait",
                    self.max
                ))
                .with_retry_after_s(60),
            ));
        }
        map.insert(id.clone(), (caller, now + self.ttl));
        Ok(id)
    }

    fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// 32 random bytes, hex.
fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session id of the request's cookie, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

/// Refuses a write from another origin (a page of another site making the
/// browser post here): its `Origin` header names a host that is not the
/// request's `Host`. Clients that are not browsers send no `Origin`.
pub fn same_origin(request: &Request) -> Result<(), ApiError> {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let Some(origin) = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    if origin_host != host {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            format!("cross-origin request refused: Origin {origin} is not this server"),
        ));
    }
    Ok(())
}

/// A write authenticated by the session cookie needs the console's header.
pub fn console_write(request: &Request) -> Result<(), ApiError> {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if request.headers().get(CONSOLE_HEADER).is_some_and(|v| v.as_bytes() == b"1") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::PermissionDenied,
        "a write with the console's session needs the header X-Lastmile-Console: 1",
    ))
}

/// `GET /console/session`: whether auth is on, who is signed in, and the
/// district's time zone.
pub async fn get_session(State(g): State<Gateway>, headers: HeaderMap) -> Response {
    let caller = match g.console.session_caller(&headers) {
        Some(caller) => Some(caller),
        None if !g.app.auth.enabled() => Some(Caller::anyone()),
        None => None,
    };
    ok(serde_json::json!({
        "auth": g.app.auth.enabled(),
        "signed_in": caller.is_some(),
        "name": caller.as_ref().map(Caller::name).unwrap_or(""),
        "role": caller.as_ref().map(Caller::role_name).unwrap_or(""),
        "time_zone": g.app.config.console.time_zone,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    #[serde(default)]
    pub token: String,
}

/// `POST /console/session` `{"token"}`: signs in; the answer sets the
/// session cookie.
pub async fn post_session(
    State(g): State<Gateway>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let bearer = format!("Bearer {}", body.token);
    let caller = g.app.authenticate(Some(bearer.as_bytes()))?;
    let name = caller.name().to_string();
    let role = caller.role_name();
    let id = g.console.sessions.create(caller)?;
    if let Some(old) = session_id(&headers) {
        g.console.sessions.remove(&old);
    }
    let secure = if g.app.config.tls.is_some() { "; Secure" } else { "" };
    let ttl = g.app.config.console.session_ttl_s;
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={ttl}{secure}");
    let mut response = ok(serde_json::json!({"signed_in": true, "name": name, "role": role}));
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::invalid(format!("cookie: {e}")))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `DELETE /console/session`: signs out.
pub async fn delete_session(State(g): State<Gateway>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        g.console.sessions.remove(&id);
    }
    let mut response = ok(serde_json::json!({"signed_in": false}));
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatesQuery {
    pub tier: Option<json::Named<lastmile_proto::v1::Tier>>,
    pub limit: Option<u32>,
}

/// `GET /v1/incidents/{id}/candidates?tier=TIER_3&limit=10`: the units a
/// dispatcher could assign, nearest (so fastest, so within target) first.
pub async fn candidates(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<CandidatesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(error::from_path_rejection)?;
    let Query(query) = query.map_err(error::from_query_rejection)?;
    let tier = wire::tier("tier", query.tier.map(json::Named::number).unwrap_or(0))?;
    let found = super::timed(&g, g.app.candidates(&caller, &id, tier, query.limit.unwrap_or(10))).await?;
    let candidates: Vec<serde_json::Value> = found
        .iter()
        .map(|c| {
            serde_json::json!({
                "unit": json::Unit::from(wire::unit_to_pb(&c.unit)),
                "distance_m": c.distance_m,
                "eta_s": c.eta_s,
                "within_target": c.within_target,
            })
        })
        .collect();
    Ok(ok(serde_json::json!({ "candidates": candidates })))
}
