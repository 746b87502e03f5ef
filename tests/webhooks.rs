//! Webhooks from a running server to a real HTTP receiver: every incident
//! event of a report arrives signed (the grid worker's notification among
//! them, with its grid cell); an endpoint that keeps failing fills the
//! dead-letter log, which an admin reads and replays over the gateway once
//! the endpoint is back; `/metrics` counts the deliveries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use lastmile_server::auth::token_sha256_hex;
use lastmile_server::webhook::sign;
use lastmile_suite::http::http;
use lastmile_suite::{TestServer, config_on_disk, eventually, paging_units, report};
use serde_json::Value;

const SECRET: &str = "shared-secret-with-the-receiver";
const ADMIN: &str = "admin-secret";
const DESK: &str = "desk-secret";

#[derive(Clone, Debug)]
struct Received {
    event: String,
    delivery: String,
    signature_ok: bool,
    body: Value,
}

/// A receiver on 127.0.0.1:0 answering `status` and recording what it got.
struct Receiver {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let (status, got) = (status.clone(), got.clone());
                move |headers: HeaderMap, body: Bytes| async move {
                    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let answer = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                    if answer.is_success() {
                        got.lock().unwrap().push(Received {
                            event: header("x-lastmile-event"),
                            delivery: header("x-lastmile-delivery"),
                            signature_ok: sign::verify(SECRET.as_bytes(), &body, &header("x-lastmile-signature")),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        });
                    }
                    answer
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, status, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn endpoint(name: &str, receiver: &Receiver, more: &str) -> String {
    format!(
        "\n[[webhooks.endpoints]]\nname = \"{name}\"\nurl = \"http://{}/hook\"\nsecret = \"{SECRET}\"\nevents = []\nqueue_capacity = 64\ntimeout_ms = 2000\nmax_attempts = 2\nbackoff_initial_ms = 10\nbackoff_max_ms = 20\n{more}",
        receiver.addr
    )
}

fn auth() -> String {
    format!(
        "\n[auth]\nenabled = true\ndefault_rate_per_s = 1000.0\ndefault_burst = 1000\n\n[[auth.tokens]]\nname = \"admin\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\n[[auth.tokens]]\nname = \"desk\"\nrole = \"dispatcher\"\ntoken_sha256 = \"{}\"\n",
        token_sha256_hex(ADMIN),
        token_sha256_hex(DESK)
    )
}

#[tokio::test]
async fn a_report_reaches_the_receiver_signed_and_failed_deliveries_are_replayed() {
    let upstream = Receiver::start(200).await;
    let broken = Receiver::start(500).await;
    let config = config_on_disk(&paging_units(), |c| {
        c + &endpoint("sipingtai", &upstream, "") + &endpoint("broken", &broken, "") + &auth()
    });
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(report("webhook-1"));
    request.metadata_mut().insert("authorization", format!("Bearer {DESK}").parse().unwrap());
    let incident = client.report_incident(request).await.unwrap().into_inner().incident.unwrap();
    assert!(!incident.grid_id.is_empty(), "the test location is in a grid cell");

    // The upstream gets the report and the grid worker's notification, signed.
    let got = eventually(|| {
        let got = upstream.got();
        async move { got.iter().any(|r| r.event == "GRID_WORKER_NOTIFIED").then_some(got) }
    })
    .await;
    assert!(got.iter().all(|r| r.signature_ok), "every delivery verifies: {got:?}");
    assert_eq!(got[0].event, "INCIDENT_REPORTED", "in feed order");
    let notified = got.iter().find(|r| r.event == "GRID_WORKER_NOTIFIED").unwrap();
    assert_eq!(notified.body["incident_id"], incident.id.as_str());
    assert_eq!(notified.body["grid_id"], incident.grid_id.as_str());
    let worker = incident.grid_worker.as_ref().expect("the incident's grid worker");
    assert_eq!(notified.body["grid_worker"]["name"], worker.name.as_str(), "structured, not only in detail");
    assert_eq!(notified.body["grid_worker"]["contact"], worker.contact.as_str());
    assert!(got.iter().any(|r| r.event == "UNIT_PAGED"));
    let seqs: Vec<u64> = got.iter().map(|r| r.body["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in sequence order: {seqs:?}");

    // The broken endpoint's deliveries end up as dead letters, for admins only.
    let wanted = got.len();
    let admin = format!("Bearer {ADMIN}");
    let letters = eventually(|| {
        let admin = admin.clone();
        async move {
            let answer =
                http(server.http_addr, "GET", "/v1/admin/webhooks/dead-letters", &[("authorization", &admin)], None)
                    .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            let letters = answer.json()["dead_letters"].as_array().unwrap().clone();
            (letters.len() >= wanted).then_some(letters)
        }
    })
    .await;
    assert!(letters.iter().all(|l| l["endpoint"] == "broken" && l["reason"] == "exhausted" && l["attempts"] == 2));
    assert!(letters[0]["last_error"].as_str().unwrap().contains("500"), "{:?}", letters[0]);
    let desk = format!("Bearer {DESK}");
    let refused =
        http(server.http_addr, "GET", "/v1/admin/webhooks/dead-letters", &[("authorization", &desk)], None).await;
    assert_eq!(refused.status, 403, "a dispatcher may not read dead letters");

    // The endpoint is back: replay, and the same deliveries arrive under their ids.
    broken.status.store(200, Ordering::SeqCst);
    let body = br#"{"endpoint":"broken"}"#;
    let headers = [("authorization", admin.as_str()), ("content-type", "application/json")];
    let answer = http(server.http_addr, "POST", "/v1/admin/webhooks/dead-letters/replay", &headers, Some(body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["requeued"].as_u64(), Some(letters.len() as u64));
    let replayed = eventually(|| {
        let got = broken.got();
        let n = letters.len();
        async move { (got.len() >= n).then_some(got) }
    })
    .await;
    let ids: Vec<&str> = letters.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert!(replayed.iter().all(|r| r.signature_ok && ids.contains(&r.delivery.as_str())), "{replayed:?}");
    let answer =
        http(server.http_addr, "GET", "/v1/admin/webhooks/dead-letters", &[("authorization", &admin)], None).await;
    assert_eq!(answer.json()["dead_letters"].as_array().unwrap().len(), 0, "the log is empty after the replay");

    let metrics = http(server.http_addr, "GET", "/metrics", &[], None).await.text();
    let delivered = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lastmile_webhook_delivered_total{endpoint=\"sipingtai\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("delivered counter");
    assert!(delivered >= wanted as f64, "{metrics}");
    assert!(metrics.contains("lastmile_webhook_failures_total{endpoint=\"broken\"}"), "{metrics}");
}
