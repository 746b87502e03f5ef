//! `GET /v1/events`: the live feed as Server-Sent Events.
//!
//! The same watcher as gRPC `WatchEvents` ([`crate::app::App::watch`]: the
//! same subscription, history + live broadcast, the same watcher limit,
//! per-watcher buffer and stall timeout), framed for SSE: each event is
//!
//! ```text
//! id: <seq>
//! event: <TYPE>            (INCIDENT_REPORTED, UNIT_PAGED, ...)
//! data: <json::event>
//! ```
//!
//! Resume with `Last-Event-ID: <seq>` (what `EventSource` sends on
//! reconnect; it wins over `?after_seq=`). When the feed ends the stream
//! for a reason (the watcher fell too far behind, the server is shutting
//! down), the last event is `event: feed_error` (not `error`, which a
//! browser's `EventSource` keeps for its own connection errors) with the
//! error body as `data` and no `id`, so a reconnect resumes after the last
//! real event; then the
//! response ends. A refusal before the stream starts (too many watchers,
//! `after_seq` no longer in the history) is an ordinary JSON error response.
//! Idle streams carry a keep-alive comment every `http.sse_keepalive_s`.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::Gateway;
use super::error::{self, ApiError};
use crate::app::Caller;
use crate::app::feed::WatchFilter;
use crate::{json, wire};

/// The header an SSE client sends to resume.
pub const LAST_EVENT_ID: &str = "last-event-id";

pub(super) async fn watch_events(
    State(gateway): State<Gateway>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Result<Query<json::WatchEventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(error::from_query_rejection)?;
    let after_seq = match headers.get(LAST_EVENT_ID) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid(format!("Last-Event-ID: {value:?} is not a feed sequence number")))?,
        None => query.after_seq.unwrap_or(0),
    };
    let filter = WatchFilter {
        after_seq,
        incident_id: query.incident_id.unwrap_or_default(),
        unit_id: query.unit_id.unwrap_or_default(),
    };
    // No request timeout here: the stream lives until the client leaves, the
    // feed ends it, or the server shuts down (the watcher's forwarding task
    // watches `App::stop` and ends with UNAVAILABLE).
    let feed = gateway.app.watch(&caller, filter)?;
    let events = ReceiverStream::new(feed).map(|item| -> Result<Event, Infallible> {
        Ok(match item {
            Ok(event) => {
                let event = wire::event_to_pb(&event);
                Event::default()
                    .id(event.seq.to_string())
                    .event(json::event_type_name(&event))
                    .data(json::event_text(&event))
            }
            // The forwarding task sends at most one error and then ends, so
            // this is the stream's last event.
            Err(refusal) => {
                let body = ApiError::from(refusal).body();
                Event::default().event("feed_error").data(serde_json::to_string(&body).unwrap_or_default())
            }
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(gateway.sse_keepalive)).into_response())
}
