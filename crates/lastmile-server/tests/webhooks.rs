//! Webhooks over real sockets: a local HTTP receiver (axum on 127.0.0.1:0)
//! that checks signatures and answers from a script. Real time, so backoffs
//! are a few milliseconds; waits poll a condition (bounded only to turn a hang
//! into a failure), nothing asserts how long anything took.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use lastmile_server::webhook::sign;
use lastmile_server::webhook::{
    DeadLetterReason, EndpointConfig, ReplayReport, Webhooks, WebhooksConfig, read_dead_letter_file,
};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "luqiao-13510";

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    event: String,
    delivery: String,
    attempt: u32,
    body: Bytes,
    /// The signature checked with the receiver's secret.
    signature_ok: bool,
}

struct Receiver {
    /// The secret the receiver verifies with (a wrong one must fail).
    secret: String,
    script: Mutex<VecDeque<Reply>>,
    then: Mutex<Reply>,
    received: Mutex<Vec<Received>>,
}

/// A running receiver; stops when dropped.
struct Running {
    url: String,
    receiver: Arc<Receiver>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Running {
    fn received(&self) -> Vec<Received> {
        self.receiver.received.lock().unwrap().clone()
    }
    fn set_then(&self, reply: Reply) {
        *self.receiver.then.lock().unwrap() = reply;
    }
}

async fn hook(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(header("content-type"), "application/json");
    let signature_ok = sign::verify(receiver.secret.as_bytes(), &body, &header("x-lastmile-signature"));
    receiver.received.lock().unwrap().push(Received {
        event: header("x-lastmile-event"),
        delivery: header("x-lastmile-delivery"),
        attempt: header("x-lastmile-attempt").parse().unwrap_or(0),
        body,
        signature_ok,
    });
    let reply = receiver.script.lock().unwrap().pop_front().unwrap_or(*receiver.then.lock().unwrap());
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hang => std::future::pending().await,
    }
}

async fn receiver(secret: &str, script: &[Reply], then: Reply) -> Running {
    let receiver = Arc::new(Receiver {
        secret: secret.to_string(),
        script: Mutex::new(script.iter().copied().collect()),
        then: Mutex::new(then),
        received: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().route("/hook", post(hook)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Running { url, receiver, server }
}

/// The test CA and the certificate it signed for `localhost` (the
/// repository's `tests/fixtures/tls`).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tls").join(name)
}

/// The same receiver behind TLS (rustls, the server's own acceptor), at
/// `https://localhost:PORT/hook`.
async fn tls_receiver(secret: &str, then: Reply) -> Running {
    let cert = std::fs::read_to_string(fixture("server.pem")).unwrap();
    let key = std::fs::read_to_string(fixture("server.key")).unwrap();
    let acceptor = lastmile_server::http::tls_acceptor(&cert, &key).unwrap();
    let receiver = Arc::new(Receiver {
        secret: secret.to_string(),
        script: Mutex::new(VecDeque::new()),
        then: Mutex::new(then),
        received: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().route("/hook", post(hook)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/hook", listener.local_addr().unwrap().port());
    let server = tokio::spawn(async move {
        // Connection tasks end with this one.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            connections.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Running { url, receiver, server }
}

fn endpoint(name: &str, url: &str) -> EndpointConfig {
    let mut e = EndpointConfig::new(name, url, SECRET);
    e.max_attempts = 3;
    e.backoff_initial_ms = 5;
    e.backoff_max_ms = 20;
    e.timeout_ms = 2_000;
    e
}

fn start(endpoints: Vec<EndpointConfig>, dead_letters: Option<PathBuf>) -> Webhooks {
    let config = WebhooksConfig { endpoints, ..WebhooksConfig::default() };
    Webhooks::start(&config, dead_letters, CancellationToken::new()).unwrap()
}

fn body(n: u32) -> Bytes {
    Bytes::from(format!(r#"{{"seq":{n},"type":"TIER_BREACHED","incident_id":"inc-{n:06}"}}"#))
}

/// Polls until `done`; bounded only so that a bug fails instead of hanging.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached: {what}");
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lastmile-webhooks-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("dead-letters.jsonl")
}

#[tokio::test]
async fn webhook_e2e_signature_verifies_and_a_wrong_secret_fails() {
    let good = receiver(SECRET, &[], Reply::Status(200)).await;
    let wrong = receiver("not-the-secret", &[], Reply::Status(200)).await;
    let webhooks = start(vec![endpoint("good", &good.url), endpoint("wrong", &wrong.url)], None);
    assert_eq!(webhooks.offer("INCIDENT_REPORTED", body(1)), 2);
    until("both delivered", || webhooks.stats().endpoints.iter().all(|e| e.delivered == 1)).await;
    let (good, wrong) = (&good.received()[0], &wrong.received()[0]);
    assert!(good.signature_ok, "the receiver with the endpoint's secret verifies the signature");
    assert!(!wrong.signature_ok, "a receiver with another secret must reject it");
    assert_eq!(good.body, body(1), "the body is sent byte for byte");
    assert_eq!((good.event.as_str(), good.attempt), ("INCIDENT_REPORTED", 1));
    assert_ne!(good.delivery, wrong.delivery, "one delivery id per endpoint delivery");
    webhooks.shutdown().await;
}

#[tokio::test]
async fn webhook_e2e_500_twice_then_200_is_delivered_on_attempt_3_in_order() {
    let rx = receiver(SECRET, &[Reply::Status(500), Reply::Status(500)], Reply::Status(200)).await;
    let webhooks = start(vec![endpoint("siping", &rx.url)], None);
    for n in 1..=3 {
        webhooks.offer("TIER_BREACHED", body(n));
    }
    until("three delivered", || webhooks.stats().endpoints[0].delivered == 3).await;
    let got = rx.received();
    let seen: Vec<(Bytes, u32)> = got.iter().map(|r| (r.body.clone(), r.attempt)).collect();
    assert_eq!(seen, [(body(1), 1), (body(1), 2), (body(1), 3), (body(2), 1), (body(3), 1)]);
    assert!(got[..3].iter().all(|r| r.delivery == got[0].delivery), "retries keep the delivery id");
    assert!(got.iter().all(|r| r.signature_ok));
    let stats = &webhooks.stats().endpoints[0];
    assert_eq!((stats.retried, stats.failed), (2, 0));
    assert!(webhooks.dead_letters().is_empty());
    webhooks.shutdown().await;
}

#[tokio::test]
async fn webhook_e2e_always_500_dead_letters_then_replay_to_a_healthy_receiver_empties_the_log() {
    let path = temp_file("replay");
    let rx = receiver(SECRET, &[], Reply::Status(500)).await;
    let webhooks = start(vec![endpoint("siping", &rx.url)], Some(path.clone()));
    webhooks.offer("TIER_BREACHED", body(1));
    until("dead-lettered", || webhooks.dead_letters().len() == 1).await;
    let letter = webhooks.dead_letters().remove(0);
    assert_eq!((letter.reason, letter.attempts), (DeadLetterReason::Exhausted, 3));
    assert_eq!(letter.last_error, "http 500");
    assert_eq!(letter.body.as_bytes(), &body(1)[..]);
    until("on file", || read_dead_letter_file(&path, 100).unwrap().0 == [letter.clone()]).await;

    rx.set_then(Reply::Status(200));
    assert_eq!(webhooks.replay_dead_letters(None), ReplayReport { requeued: 1, ..ReplayReport::default() });
    until("delivered", || webhooks.stats().endpoints[0].delivered == 1).await;
    let last = rx.received().pop().unwrap();
    assert_eq!((last.delivery.as_str(), last.attempt, last.body.clone()), (letter.id.as_str(), 1, body(1)));
    assert!(last.signature_ok);
    assert!(webhooks.dead_letters().is_empty());
    webhooks.shutdown().await;
    assert!(read_dead_letter_file(&path, 100).unwrap().0.is_empty(), "the file is emptied too");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn webhook_e2e_400_dead_letters_at_once() {
    let rx = receiver(SECRET, &[Reply::Status(400)], Reply::Status(200)).await;
    let webhooks = start(vec![endpoint("siping", &rx.url)], None);
    webhooks.offer("TIER_BREACHED", body(1));
    webhooks.offer("TIER_BREACHED", body(2));
    until("second delivered", || webhooks.stats().endpoints[0].delivered == 1).await;
    let letters = webhooks.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].reason, letters[0].attempts), (DeadLetterReason::Rejected, 1));
    assert_eq!(letters[0].last_error, "http 400");
    assert_eq!(rx.received().len(), 2, "not retried");
    webhooks.shutdown().await;
}

#[tokio::test]
async fn webhook_e2e_a_receiver_that_never_answers_times_out_then_is_retried() {
    let rx = receiver(SECRET, &[Reply::Hang], Reply::Status(200)).await;
    let mut e = endpoint("siping", &rx.url);
    e.timeout_ms = 200;
    let webhooks = start(vec![e], None);
    webhooks.offer("TIER_BREACHED", body(1));
    until("delivered", || webhooks.stats().endpoints[0].delivered == 1).await;
    let attempts: Vec<u32> = rx.received().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(webhooks.stats().endpoints[0].retried, 1);

    rx.set_then(Reply::Hang);
    webhooks.offer("TIER_BREACHED", body(2));
    until("dead-lettered", || webhooks.dead_letters().len() == 1).await;
    assert_eq!(webhooks.dead_letters()[0].last_error, "timeout after 200 ms");
    webhooks.shutdown().await;
}

#[tokio::test]
async fn webhook_e2e_connection_refused_is_retried_then_dead_lettered() {
    // A port that was free a moment ago: nobody listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let webhooks = start(vec![endpoint("gone", &format!("http://127.0.0.1:{port}/hook"))], None);
    webhooks.offer("TIER_BREACHED", body(1));
    until("dead-lettered", || webhooks.dead_letters().len() == 1).await;
    let letter = &webhooks.dead_letters()[0];
    assert_eq!((letter.reason, letter.attempts), (DeadLetterReason::Exhausted, 3));
    assert!(letter.last_error.contains("refused") || letter.last_error.contains("connect"), "{}", letter.last_error);
    webhooks.shutdown().await;
}

#[tokio::test]
async fn webhook_e2e_queue_full_dead_letters_without_blocking_and_spares_other_endpoints() {
    let stuck = receiver(SECRET, &[], Reply::Hang).await;
    let healthy = receiver(SECRET, &[], Reply::Status(200)).await;
    let mut slow = endpoint("stuck", &stuck.url);
    slow.queue_capacity = 4;
    slow.timeout_ms = 60_000;
    let webhooks = start(vec![slow, endpoint("healthy", &healthy.url)], None);
    webhooks.offer("TIER_BREACHED", body(0));
    until("first one in flight", || stuck.received().len() == 1).await;
    // The stuck endpoint holds one in flight and 4 queued; the rest of these
    // offers return at once, dead-lettered for it, and still reach the other.
    let queued: Vec<usize> = (1..=10).map(|n| webhooks.offer("TIER_BREACHED", body(n))).collect();
    assert_eq!(queued, [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
    let stats = webhooks.stats();
    assert_eq!((stats.endpoints[0].queue_depth, stats.endpoints[0].dropped_queue_full), (4, 6));
    let letters = webhooks.dead_letters();
    assert_eq!(letters.len(), 6);
    assert!(letters.iter().all(|l| l.reason == DeadLetterReason::QueueFull && l.endpoint == "stuck"));
    until("the healthy endpoint got all 11", || webhooks.stats().endpoints[1].delivered == 11).await;
    let order: Vec<Bytes> = healthy.received().into_iter().map(|r| r.body).collect();
    assert_eq!(order, (0..=10).map(body).collect::<Vec<_>>());
    drop(webhooks); // aborts the stuck delivery
}

#[tokio::test]
async fn webhook_e2e_https_trusting_the_endpoint_ca() {
    let rx = tls_receiver(SECRET, Reply::Status(200)).await;
    let mut e = endpoint("siping", &rx.url);
    e.ca_path = Some(fixture("ca.pem").display().to_string());
    let webhooks = start(vec![e], None);
    webhooks.offer("TIER_BREACHED", body(1));
    webhooks.offer("TIER_MET", body(2));
    until("delivered over TLS", || webhooks.stats().endpoints[0].delivered == 2).await;
    let got = rx.received();
    assert!(got.iter().all(|r| r.signature_ok));
    assert_eq!(got.iter().map(|r| r.body.clone()).collect::<Vec<_>>(), [body(1), body(2)]);
    webhooks.shutdown().await;

    // A CA file that is not one is refused at start, naming the key.
    let mut e = endpoint("siping", &rx.url);
    e.ca_path = Some(fixture("README.md").display().to_string());
    let config = WebhooksConfig { endpoints: vec![e], ..WebhooksConfig::default() };
    let err = Webhooks::start(&config, None, CancellationToken::new()).err().unwrap().to_string();
    assert!(err.contains("webhooks.endpoints[0].ca_path"), "{err}");
}
