//! Retry, backoff, ordering, bounds and shutdown on a paused clock, with a
//! scripted transport (no sockets: real sockets and paused time mix badly).
//! The real HTTP path is tested in `tests/webhooks.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use lastmile_core::sim::SplitMix64;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetterLog, DeadLetterReason, read_dead_letter_file};
use super::delivery::{self, HEADER_ATTEMPT, HEADER_DELIVERY, HEADER_EVENT, HEADER_SIGNATURE, backoff_ms};
use super::*;
use crate::clock::Clock;
use crate::config::webhooks::{EndpointConfig, WebhooksConfig};
use crate::config::{ConfigSource, LastmileConfig};

const SEED: u64 = 13510;

/// What one scripted attempt does.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Never answers (the attempt times out).
    Hang,
    ConnectionRefused,
}

/// A request as the transport saw it, and when (paused clock).
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    event: String,
    delivery: String,
    attempt: u32,
    signature: String,
    body: Bytes,
}

/// Answers from a script, then `then` forever.
struct Scripted {
    script: Mutex<VecDeque<Answer>>,
    then: Mutex<Answer>,
    seen: Mutex<Vec<Seen>>,
}

impl Scripted {
    fn new(script: &[Answer], then: Answer) -> Arc<Self> {
        Arc::new(Scripted {
            script: Mutex::new(script.iter().copied().collect()),
            then: Mutex::new(then),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn set_then(&self, answer: Answer) {
        *self.then.lock().unwrap() = answer;
    }
}

impl Transport for Scripted {
    fn post(&self, request: Request<Bytes>) -> PostFuture {
        let header = |name: &str| request.headers().get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(request.headers()[http::header::CONTENT_TYPE], "application/json");
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            event: header(HEADER_EVENT),
            delivery: header(HEADER_DELIVERY),
            attempt: header(HEADER_ATTEMPT).parse().unwrap(),
            signature: header(HEADER_SIGNATURE),
            body: request.body().clone(),
        });
        let answer = self.script.lock().unwrap().pop_front().unwrap_or(*self.then.lock().unwrap());
        Box::pin(async move {
            match answer {
                Answer::Status(code) => Ok(StatusCode::from_u16(code).unwrap()),
                Answer::Hang => std::future::pending().await,
                Answer::ConnectionRefused => Err("connect: connection refused".into()),
            }
        })
    }
}

fn endpoint(name: &str) -> EndpointConfig {
    let mut e = EndpointConfig::new(name, &format!("http://127.0.0.1:9/{name}"), &format!("secret-{name}"));
    e.max_attempts = 4;
    e.backoff_initial_ms = 100;
    e.backoff_max_ms = 1000;
    e.timeout_ms = 2000;
    e.queue_capacity = 16;
    e
}

fn config(endpoints: Vec<EndpointConfig>) -> WebhooksConfig {
    WebhooksConfig { endpoints, ..WebhooksConfig::default() }
}

fn start(config: &WebhooksConfig, transport: Arc<Scripted>, dead_letter_path: Option<PathBuf>) -> Webhooks {
    Webhooks::start_with(
        config,
        WebhookOptions {
            dead_letter_path,
            shutdown: CancellationToken::new(),
            transport: Some(transport),
            env: Box::new(|name| (name == "HOOK_SECRET").then(|| "from-env".to_string())),
            jitter_seed: SEED,
            clock: Clock::start(),
        },
    )
    .unwrap()
}

fn body(n: u32) -> Bytes {
    Bytes::from(format!(r#"{{"seq":{n},"type":"TIER_BREACHED"}}"#))
}

/// Lets the paused clock run (auto-advance) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lastmile-webhook-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("dead-letters.jsonl")
}

#[tokio::test(start_paused = true)]
async fn webhook_retries_with_full_jitter_backoff_then_delivers_in_order() {
    let transport =
        Scripted::new(&[Answer::Status(500), Answer::Status(503), Answer::ConnectionRefused], Answer::Status(200));
    let webhooks = start(&config(vec![endpoint("siping")]), transport.clone(), None);
    assert_eq!(webhooks.offer("TIER_BREACHED", body(1)), 1);
    assert_eq!(webhooks.offer("INCIDENT_CLOSED", body(2)), 1);
    until(|| webhooks.stats().endpoints[0].delivered == 2).await;

    let seen = transport.seen();
    let order: Vec<(u32, u32)> = seen.iter().map(|s| (s.body[7] as u32 - b'0' as u32, s.attempt)).collect();
    assert_eq!(order, [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)], "in order, one in flight");
    assert!(seen[..4].iter().all(|s| s.delivery == seen[0].delivery && s.event == "TIER_BREACHED"));
    assert_ne!(seen[4].delivery, seen[0].delivery);
    assert_eq!(seen[4].event, "INCIDENT_CLOSED");
    assert!(sign::verify(b"secret-siping", &seen[0].body, &seen[0].signature));
    // The waits are the seeded full-jitter draws, exactly (paused clock).
    let mut rng = SplitMix64(SEED);
    for retry in 1..=3 {
        let expected = backoff_ms(&mut rng, retry, 100, 1000);
        let waited = seen[retry as usize].at - seen[retry as usize - 1].at;
        assert_eq!(waited, Duration::from_millis(expected), "retry {retry}");
    }
    let stats = &webhooks.stats().endpoints[0];
    assert_eq!((stats.delivered, stats.retried, stats.failed, stats.queue_depth), (2, 3, 0, 0));
    assert!(webhooks.dead_letters().is_empty());
}

#[test]
fn webhook_backoff_is_full_jitter_under_a_doubling_ceiling() {
    let mut rng = SplitMix64(SEED);
    for retry in 1..=70 {
        let ceiling = (100u64 << (retry - 1).min(20)).min(60_000);
        let draws: Vec<u64> = (0..200).map(|_| backoff_ms(&mut rng, retry, 100, 60_000)).collect();
        assert!(draws.iter().all(|&d| d <= ceiling), "retry {retry}");
        // Full jitter: draws spread over [0, ceiling], not bunched at the top.
        assert!(draws.iter().any(|&d| d < ceiling / 2), "retry {retry}");
    }
}

#[tokio::test(start_paused = true)]
async fn webhook_exhausted_retries_dead_letter_with_the_last_error() {
    let transport = Scripted::new(&[Answer::ConnectionRefused, Answer::Status(429)], Answer::Status(503));
    let webhooks = start(&config(vec![endpoint("siping")]), transport.clone(), None);
    webhooks.offer("TIER_BREACHED", body(1));
    until(|| webhooks.dead_letters().len() == 1).await;
    let letter = &webhooks.dead_letters()[0];
    assert_eq!(letter.reason, DeadLetterReason::Exhausted);
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.last_error, "http 503");
    assert_eq!(letter.body, std::str::from_utf8(&body(1)).unwrap());
    assert_eq!((letter.endpoint.as_str(), letter.event_type.as_str()), ("siping", "TIER_BREACHED"));
    assert_eq!(transport.seen().len(), 4);
    let stats = &webhooks.stats().endpoints[0];
    assert_eq!((stats.delivered, stats.retried, stats.failed), (0, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn webhook_4xx_is_not_retried_but_408_and_429_are() {
    let transport =
        Scripted::new(&[Answer::Status(408), Answer::Status(429), Answer::Status(404)], Answer::Status(200));
    let webhooks = start(&config(vec![endpoint("siping")]), transport.clone(), None);
    webhooks.offer("TIER_BREACHED", body(1));
    webhooks.offer("TIER_BREACHED", body(2));
    until(|| webhooks.stats().endpoints[0].delivered == 1).await;
    let letters = webhooks.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].reason, letters[0].attempts), (DeadLetterReason::Rejected, 3));
    assert_eq!(letters[0].last_error, "http 404");
    assert_eq!(transport.seen().len(), 4, "404 ends the first delivery; the second goes at once");
}

#[tokio::test(start_paused = true)]
async fn webhook_timeout_is_retried() {
    let transport = Scripted::new(&[Answer::Hang], Answer::Status(204));
    let webhooks = start(&config(vec![endpoint("siping")]), transport.clone(), None);
    webhooks.offer("INCIDENT_REPORTED", body(1));
    until(|| webhooks.stats().endpoints[0].delivered == 1).await;
    let seen = transport.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(2000), "the first attempt ran to its timeout");

    // Always hanging: the last error names the timeout.
    transport.set_then(Answer::Hang);
    webhooks.offer("INCIDENT_REPORTED", body(2));
    until(|| webhooks.dead_letters().len() == 1).await;
    assert_eq!(webhooks.dead_letters()[0].last_error, "timeout after 2000 ms");
}

#[tokio::test(start_paused = true)]
async fn webhook_queue_full_dead_letters_without_blocking_offer() {
    let transport = Scripted::new(&[], Answer::Hang);
    let mut slow = endpoint("slow");
    slow.queue_capacity = 2;
    let webhooks = start(&config(vec![slow, endpoint("fast")]), transport.clone(), None);
    // No await between the offers: the delivery tasks have not run, nothing
    // left the queues; `offer` returns at once however full they are.
    let queued: Vec<usize> = (1..=5).map(|n| webhooks.offer("TIER_MET", body(n))).collect();
    assert_eq!(queued, [2, 2, 1, 1, 1]);
    let stats = webhooks.stats();
    assert_eq!((stats.endpoints[0].queue_depth, stats.endpoints[0].dropped_queue_full), (2, 3));
    assert_eq!((stats.endpoints[1].queue_depth, stats.endpoints[1].dropped_queue_full), (5, 0));
    let letters = webhooks.dead_letters();
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().all(|l| l.reason == DeadLetterReason::QueueFull && l.endpoint == "slow" && l.attempts == 0));
    assert_eq!(letters[0].body, std::str::from_utf8(&body(3)).unwrap());
}

#[tokio::test(start_paused = true)]
async fn webhook_event_filter_and_unit_position_excluded_by_default() {
    let transport = Scripted::new(&[], Answer::Status(200));
    let mut breaches = endpoint("breaches");
    breaches.events = vec!["TIER_BREACHED".into(), "GRID_WORKER_NOTIFIED".into()];
    let webhooks = start(&config(vec![breaches, endpoint("all")]), transport.clone(), None);
    assert_eq!(webhooks.offer("TIER_BREACHED", body(1)), 2);
    assert_eq!(webhooks.offer("UNIT_POSITION", body(2)), 0);
    assert_eq!(webhooks.offer("INCIDENT_REPORTED", body(3)), 1);
    assert_eq!(webhooks.offer("GRID_WORKER_NOTIFIED", body(4)), 2);
    until(|| webhooks.stats().endpoints.iter().map(|e| e.delivered).sum::<u64>() == 5).await;
}

#[tokio::test(start_paused = true)]
async fn webhook_replay_requeues_dead_letters_and_empties_the_log() {
    let path = temp_file("replay");
    let transport = Scripted::new(&[], Answer::Status(500));
    let webhooks = start(&config(vec![endpoint("siping"), endpoint("grid")]), transport.clone(), Some(path.clone()));
    webhooks.offer("TIER_BREACHED", body(1));
    webhooks.offer("TIER_SHORT", body(2));
    until(|| webhooks.dead_letters().len() == 4).await;
    until(|| read_dead_letter_file(&path, 100).unwrap().0.len() == 4).await;
    let first_ids: Vec<String> = webhooks.dead_letters().iter().map(|l| l.id.clone()).collect();

    transport.set_then(Answer::Status(200));
    let report = webhooks.replay_dead_letters(Some("grid"));
    assert_eq!(report, ReplayReport { requeued: 2, left_queue_full: 0, left_unknown_endpoint: 0 });
    until(|| webhooks.stats().endpoints[1].delivered == 2).await;
    assert!(webhooks.dead_letters().iter().all(|l| l.endpoint == "siping"));
    let report = webhooks.replay_dead_letters(None);
    assert_eq!(report.requeued, 2);
    until(|| webhooks.stats().endpoints[0].delivered == 2).await;
    assert!(webhooks.dead_letters().is_empty());
    until(|| read_dead_letter_file(&path, 100).unwrap().0.is_empty()).await;
    // Replayed under their first ids (receivers drop duplicates by id).
    let replayed: Vec<String> = transport.seen().iter().rev().take(4).map(|s| s.delivery.clone()).collect();
    assert!(replayed.iter().all(|id| first_ids.contains(id)));

    webhooks.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(start_paused = true)]
async fn webhook_replay_leaves_letters_of_unknown_endpoints_and_full_queues() {
    let path = temp_file("replay-left");
    let transport = Scripted::new(&[], Answer::Hang);
    let mut gone = endpoint("gone");
    gone.queue_capacity = 1;
    let mut full = endpoint("full");
    full.queue_capacity = 1;
    let webhooks = start(&config(vec![gone, full.clone()]), transport.clone(), Some(path.clone()));
    for n in 1..=3 {
        webhooks.offer("TIER_MET", body(n));
    }
    // Per endpoint: one queued, two dead-lettered queue_full.
    assert_eq!(webhooks.dead_letters().len(), 4);
    webhooks.shutdown().await;
    drop(webhooks);
    // The queued ones were dead-lettered at shutdown too.
    assert_eq!(read_dead_letter_file(&path, 100).unwrap().0.len(), 6);

    // Restart without "gone"; "full" hangs on its first delivery.
    let webhooks = start(&config(vec![full]), transport.clone(), Some(path.clone()));
    assert_eq!(webhooks.dead_letters().len(), 6, "dead letters survive a restart");
    let report = webhooks.replay_dead_letters(None);
    assert_eq!(report, ReplayReport { requeued: 1, left_queue_full: 2, left_unknown_endpoint: 3 });
    let left = webhooks.dead_letters();
    assert_eq!(left.len(), 5);
    assert!(left.windows(2).all(|w| w[0].failed_at_unix_ms <= w[1].failed_at_unix_ms), "order kept");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(start_paused = true)]
async fn webhook_shutdown_flushes_for_a_bounded_time_then_dead_letters_the_rest() {
    let path = temp_file("shutdown");
    // First delivery: 500 then 200 (delivered during the flush); then hang.
    let transport = Scripted::new(&[Answer::Status(500), Answer::Status(200)], Answer::Hang);
    let mut e = endpoint("siping");
    e.timeout_ms = 60_000;
    let mut config = config(vec![e]);
    config.shutdown_flush_ms = 5_000;
    let webhooks = start(&config, transport.clone(), Some(path.clone()));
    for n in 1..=3 {
        webhooks.offer("TIER_BREACHED", body(n));
    }
    let started = Instant::now();
    webhooks.shutdown().await;
    // Bounded by the flush (5 s), not by the 60 s attempt timeout.
    assert!(Instant::now() - started < Duration::from_secs(60));
    let stats = &webhooks.stats().endpoints[0];
    assert_eq!((stats.delivered, stats.failed), (1, 2));
    let (letters, _) = read_dead_letter_file(&path, 100).unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.reason == DeadLetterReason::Shutdown));
    assert_eq!((letters[0].attempts, letters[1].attempts), (1, 0));
    assert_eq!(letters[0].last_error, "attempt 1 cut off by shutdown");
    // Offers after shutdown are dead-lettered (in memory).
    assert_eq!(webhooks.offer("TIER_BREACHED", body(4)), 0);
    assert_eq!(webhooks.dead_letters().len(), 3);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(start_paused = true)]
async fn webhook_tasks_end_when_the_owner_drops_or_the_token_is_cancelled() {
    let transport = Scripted::new(&[], Answer::Hang);
    let token = CancellationToken::new();
    let mut options = WebhookOptions::new(None, token.clone());
    options.transport = Some(transport.clone());
    let webhooks = Webhooks::start_with(&config(vec![endpoint("siping")]), options).unwrap();
    webhooks.offer("TIER_BREACHED", body(1));
    until(|| transport.seen().len() == 1).await;
    token.cancel();
    webhooks.stopped.cancelled().await;
    assert_eq!(webhooks.dead_letters()[0].reason, DeadLetterReason::Shutdown);

    let webhooks = start(&config(vec![endpoint("siping")]), transport.clone(), None);
    let stopped = webhooks.stopped.clone();
    drop(webhooks);
    stopped.cancelled().await; // the supervisor (and with it every worker) was aborted
}

#[test]
fn webhook_dead_letter_log_is_bounded_and_its_file_reloads() {
    let path = temp_file("bound");
    let log = DeadLetterLog::open(Some(path.clone()), 3).unwrap();
    let clock = Clock::start();
    let letter = |n: u32| {
        let d = delivery::Delivery { id: format!("d-{n}").into(), event_type: "TIER_MET".into(), body: body(n) };
        delivery::dead_letter("siping", &d, 2, DeadLetterReason::Exhausted, "http 500".into(), &clock)
    };
    for n in 1..=8 {
        log.push(letter(n), false);
        log.write_pending();
    }
    let ids = |letters: Vec<DeadLetter>| letters.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(log.snapshot()), ["d-6", "d-7", "d-8"]);
    assert_eq!(log.dropped.load(Ordering::Relaxed), 5);
    let (on_file, beyond) = read_dead_letter_file(&path, 3).unwrap();
    assert_eq!(ids(on_file), ["d-6", "d-7", "d-8"]);
    assert!(beyond <= 3, "the file is compacted past twice the bound");

    // A torn last line (crash mid-write) is skipped; other bad lines are errors.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"id":"d-9","endp"#);
    std::fs::write(&path, &text).unwrap();
    let reopened = DeadLetterLog::open(Some(path.clone()), 3).unwrap();
    assert_eq!(ids(reopened.snapshot()), ["d-6", "d-7", "d-8"]);
    std::fs::write(&path, format!("not json\n{text}\n")).unwrap();
    let err = DeadLetterLog::open(Some(path.clone()), 3).err().unwrap().to_string();
    assert!(err.contains("line 1"), "{err}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn webhook_config_errors_name_the_key() {
    let env = |name: &str| (name == "HOOK_SECRET").then(|| "from-env".to_string());
    let check = |edit: &dyn Fn(&mut EndpointConfig), key: &str, problem: &str| {
        let mut e = endpoint("siping");
        edit(&mut e);
        let err = config(vec![endpoint("grid"), e]).validate(&env).unwrap_err();
        assert_eq!(err.key, format!("webhooks.endpoints[1].{key}"), "{err}");
        assert!(err.problem.contains(problem), "{err}");
    };
    check(&|e| e.url = "https://example.org/hook".into(), "ca_path", "required for an https:// url");
    check(&|e| e.ca_path = Some("ca.pem".into()), "ca_path", "only for https://");
    check(&|e| e.url = "ftp://example.org/hook".into(), "url", "http://");
    check(&|e| e.url = "not a url".into(), "url", "not a URL");
    check(&|e| e.name = "grid".into(), "name", "another endpoint");
    check(&|e| e.name = "si ping".into(), "name", "letters");
    check(&|e| e.secret_env = Some("HOOK_SECRET".into()), "secret", "exactly one");
    check(&|e| e.secret = None, "secret", "exactly one");
    check(&|e| e.secret = Some(String::new()), "secret", "empty");
    check(
        &|e| {
            e.secret = None;
            e.secret_env = Some("NO_SUCH_VAR".into());
        },
        "secret_env",
        "NO_SUCH_VAR",
    );
    check(&|e| e.events = vec!["TIER_BREACHED".into(), "TIER_BROKEN".into()], "events", "TIER_BROKEN");
    check(&|e| e.events = vec!["UNSPECIFIED".into()], "events", "UNSPECIFIED");
    check(&|e| e.queue_capacity = 0, "queue_capacity", "1 to");
    check(&|e| e.timeout_ms = 0, "timeout_ms", "greater than 0");
    check(&|e| e.max_attempts = 0, "max_attempts", "1 to 100");
    check(&|e| e.backoff_initial_ms = 0, "backoff_initial_ms", "greater than 0");
    check(&|e| e.backoff_max_ms = 10, "backoff_max_ms", "backoff_initial_ms");
    let mut ok = endpoint("siping");
    ok.secret = None;
    ok.secret_env = Some("HOOK_SECRET".into());
    ok.events = vec!["GRID_WORKER_NOTIFIED".into(), "UNIT_POSITION".into()];
    config(vec![ok]).validate(&env).unwrap();
    let err = WebhooksConfig { max_dead_letters_kept: 0, ..WebhooksConfig::default() }.validate(&env).unwrap_err();
    assert_eq!(err.key, "webhooks.max_dead_letters_kept");
}

#[test]
fn webhook_config_section_in_the_server_file() {
    let embedded = LastmileConfig::embedded().unwrap();
    assert_eq!(embedded.webhooks, WebhooksConfig::default(), "no endpoints by default");
    assert_eq!(
        embedded.webhooks.dead_letter_file(Some(std::path::Path::new("data"))),
        Some(PathBuf::from("data/webhook-dead-letters.jsonl"))
    );
    assert_eq!(embedded.webhooks.dead_letter_file(None), None);

    // The commented-out example, uncommented, is valid; so is a file without the section.
    let text = crate::config::embedded_config_text();
    let (start, end) = (text.find("[webhooks]").unwrap(), text.find("[dataset]").unwrap());
    let example_at = start + text[start..].find("# [[webhooks.endpoints]]").unwrap();
    let section: String = text[example_at..end]
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if !rest.starts_with("# ") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("secret_env = \"LASTMILE_SIPING_SECRET\"", "secret = \"s3cret\"");
    let example = format!("{}{section}\n{}", &text[..example_at], &text[end..]);
    let parsed = LastmileConfig::parse(&example, ConfigSource::Embedded).unwrap();
    let e = &parsed.webhooks.endpoints[0];
    assert_eq!((e.name.as_str(), e.queue_capacity, e.max_attempts), ("siping", 1024, 5));
    assert!(e.events.contains(&"TIER_BREACHED".to_string()));
    let without: String = text.replace("[webhooks]", "[webhooks_gone]");
    assert!(LastmileConfig::parse(&without, ConfigSource::Embedded).is_err(), "unknown section refused");
    let without = format!("{}{}", &text[..start], &text[end..]);
    assert_eq!(LastmileConfig::parse(&without, ConfigSource::Embedded).unwrap().webhooks, WebhooksConfig::default());

    let bad = example.replace("timeout_ms = 5000", "timeout_ms = 5000\ntimeout_s = 5");
    let err = LastmileConfig::parse(&bad, ConfigSource::Embedded).unwrap_err().to_string();
    assert!(err.contains("timeout_s"), "{err}");
    let bad = example.replace("http://10.0.0.5:8080/lastmile", "https://10.0.0.5/lastmile");
    let err = LastmileConfig::parse(&bad, ConfigSource::Embedded).unwrap_err().to_string();
    assert!(err.contains("webhooks.endpoints[0].ca_path") && err.contains("https"), "{err}");
}
