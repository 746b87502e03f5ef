//! A node of a cluster (`[cluster]`, on the PostgreSQL journal): what a
//! standby answers, and how a node that has taken the lease opens the
//! journal. The election itself ([`lastmile_store::cluster`]) and the
//! node's life (stand by, take over, lead until deposed) are the binary's
//! (`lastmile serve`).
//!
//! **A standby** serves `grpc.health.v1` as NOT_SERVING and refuses every
//! other call UNAVAILABLE, naming the leader: in the message, and as
//! `lastmile-leader` (its gRPC address) and `lastmile-leader-http`
//! metadata; its gateway answers every path (`/healthz` included) 503 with
//! the same, in the body's `leader` and in `Lastmile-Leader` headers. It
//! serves no reads: its state is the journal's, up to `cluster.follow_ms`
//! old, and a dispatcher must not act on a stale board.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lastmile_store::cluster::{LeaderInfo, NodeInfo};
use tokio::sync::watch;

use crate::config::{JournalBackend, LastmileConfig};
use crate::error::AppError;
use crate::{Opened, ServerError, grpc};

/// The lease as the standby last read it.
pub type LeaderWatch = watch::Receiver<Option<LeaderInfo>>;

/// The leader if its lease runs.
fn live(leader: &Option<LeaderInfo>) -> Option<&LeaderInfo> {
    leader.as_ref().filter(|l| l.expires_in_ms > 0)
}

/// What a standby answers, naming the leader.
pub fn refusal_text(me: &NodeInfo, leader: &Option<LeaderInfo>) -> String {
    match live(leader) {
        Some(l) => format!(
            "standby: node {} does not lead; the leader is node {} at {} (HTTP {}), epoch {}: send requests there",
            me.node_id, l.node.node_id, l.node.grpc_addr, l.node.http_addr, l.epoch
        ),
        None => format!(
            "standby: node {} does not lead, and no node does yet (a takeover is under way); retry shortly",
            me.node_id
        ),
    }
}

/// A standby's gRPC refusal (UNAVAILABLE, retry in 1 s, the leader's
/// addresses in the metadata).
pub fn grpc_refusal(me: NodeInfo, leader: LeaderWatch) -> grpc::Refusal {
    Arc::new(move || {
        let now = leader.borrow().clone();
        let mut status = grpc::status(AppError::unavailable(refusal_text(&me, &now)).with_retry_after_s(1));
        if let Some(l) = live(&now) {
            let metadata = status.metadata_mut();
            for (key, value) in [("lastmile-leader", &l.node.grpc_addr), ("lastmile-leader-http", &l.node.http_addr)] {
                if let Ok(value) = value.parse() {
                    metadata.insert(key, value);
                }
            }
        }
        status
    })
}

/// A standby's gateway: 503 for every path.
pub fn http_router(me: NodeInfo, leader: LeaderWatch) -> axum::Router {
    axum::Router::new().fallback(move || {
        let now = leader.borrow().clone();
        let me = me.clone();
        async move { standby_response(&me, &now) }
    })
}

fn standby_response(me: &NodeInfo, leader: &Option<LeaderInfo>) -> Response {
    let leader_json = live(leader).map(|l| {
        serde_json::json!({ "node_id": l.node.node_id, "grpc": l.node.grpc_addr, "http": l.node.http_addr, "epoch": l.epoch })
    });
    let body = serde_json::json!({
        "status": "NOT_SERVING",
        "role": "standby",
        "node_id": me.node_id,
        "error": { "code": "UNAVAILABLE", "message": refusal_text(me, leader) },
        "leader": leader_json,
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    if let Some(l) = live(leader) {
        for (name, value) in [("lastmile-leader", &l.node.http_addr), ("lastmile-leader-grpc", &l.node.grpc_addr)] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }
    response
}

/// The PostgreSQL store of a node that leads with `epoch`, over the live
/// state its follower already holds (`recovered`): the log's last rows are
/// applied, and nothing else is read again.
pub fn open_as_leader(
    config: &LastmileConfig,
    epoch: u64,
    recovered: lastmile_store::Recovered,
) -> Result<Opened, ServerError> {
    let JournalBackend::Postgres(pg) = &config.journal.backend else {
        return Err(ServerError::Recovery("[cluster] needs journal.backend = \"postgres\"".into()));
    };
    let retention = config.cluster.as_ref().map_or(0, |c| c.log_retention_ms);
    let options = crate::store::pg_options(
        pg,
        &config.journal,
        lastmile_store::Fence::Epoch(epoch),
        std::time::Duration::from_millis(retention),
    );
    let store = lastmile_store::PostgresStore::open(options)?;
    crate::recover_from(config, Box::new(store), recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo { node_id: id.into(), grpc_addr: format!("{id}.lan:50051"), http_addr: format!("{id}.lan:8080") }
    }

    #[tokio::test]
    async fn a_standby_names_the_leader_over_grpc_and_http_and_says_when_none_leads() {
        let (tx, rx) = watch::channel(None);
        let refusal = grpc_refusal(node("b"), rx.clone());
        let none = refusal();
        assert_eq!(none.code(), tonic::Code::Unavailable);
        assert!(none.message().contains("no node does yet"), "{}", none.message());
        assert!(none.metadata().get("lastmile-leader").is_none());
        tx.send_replace(Some(LeaderInfo { node: node("a"), epoch: 4, expires_in_ms: 2500 }));
        let named = refusal();
        assert!(named.message().contains("the leader is node a at a.lan:50051 (HTTP a.lan:8080), epoch 4"));
        assert_eq!(named.metadata().get("lastmile-leader").unwrap(), "a.lan:50051");
        assert_eq!(named.metadata().get("retry-after").unwrap(), "1");

        let response = standby_response(&node("b"), &rx.borrow());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("lastmile-leader").unwrap(), "a.lan:8080");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["leader"]["grpc"], "a.lan:50051");
        assert_eq!(body["error"]["code"], "UNAVAILABLE");
        // A lapsed lease names nobody.
        let lapsed = Some(LeaderInfo { node: node("a"), epoch: 4, expires_in_ms: -10 });
        assert!(refusal_text(&node("b"), &lapsed).contains("no node does yet"));
    }
}
