//! Operators' routes (role admin): the webhook deliveries that failed, and
//! replaying them. Not a `Dispatch` operation: webhooks are an adapter of
//! their own, so these go to it directly, behind the same role table.

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{Gateway, JsonBody, ok};
use crate::app::{Caller, Operation};

/// `GET /v1/admin/webhooks/dead-letters`.
#[derive(Debug, Serialize)]
pub struct DeadLetters {
    pub dead_letters: Vec<crate::webhook::DeadLetter>,
}

/// `POST /v1/admin/webhooks/dead-letters/replay`: one endpoint's, or all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// The webhook deliveries that failed, oldest first.
pub async fn read_dead_letters(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::response::Response, ApiError> {
    g.app.auth.authorize(&caller, Operation::ReadDeadLetters)?;
    Ok(ok(DeadLetters { dead_letters: g.webhooks.dead_letters() }))
}

/// Puts them (of one `endpoint`, or all) back in their endpoints' queues.
pub async fn replay_dead_letters(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<axum::response::Response, ApiError> {
    g.app.auth.authorize(&caller, Operation::ReplayDeadLetters)?;
    Ok(ok(g.webhooks.replay_dead_letters(body.endpoint.as_deref())))
}
