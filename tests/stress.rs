//! Concurrency stress (not timed): thousands of concurrent incidents against a
//! few hundred units whose terminals accept, decline or stay silent at random,
//! while incidents are closed at random and units come back on their own.
//! Afterwards: the live feed never shows a unit held by two incidents, the
//! core's invariants hold, and every incident reported OK is on the server,
//! every tier in a defined state. Seeded: the seed is printed and
//! `LASTMILE_SEED=<seed>` replays the same incidents and answers (the
//! interleaving is the scheduler's).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lastmile_core::dispatcher::Decision;
use lastmile_suite::v1 as pb;
use lastmile_suite::{FeedReplay, SplitMix64, TestServer, all_incidents, config_on_disk, test_seed, units_json};
use tokio::task::JoinSet;
use tonic::transport::Channel;

const UNITS_T1: usize = 150;
const UNITS_T3: usize = 100;
const UNITS_T5: usize = 30;
const UNITS_T10: usize = 20;
const INCIDENTS: usize = 3000;
const REPORTERS: usize = 64;
const LOAD_CONNECTIONS: usize = 4;
/// Terminal subscriptions per connection, under server.max_concurrent_streams (256).
const TERMINALS_PER_CONNECTION: usize = 100;
/// Central Luqiao, about 6 km x 6 km.
const BOX_LAT: (f64, f64) = (28.55, 28.61);
const BOX_LNG: (f64, f64) = (121.34, 121.40);

/// A unit's answer to one page: a function of the seed and the page alone.
fn answer(seed: u64, unit_id: &str, incident_id: &str, attempt: u32) -> f64 {
    let mut h = seed;
    for b in unit_id.bytes().chain([0xff]).chain(incident_id.bytes()).chain(attempt.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix64(h).unit()
}

/// One terminal: 50% of pages accepted (half of those then on scene and
/// available again at once), 30% declined, 20% left to time out.
async fn terminal(channel: Channel, unit_id: String, seed: u64) {
    let mut client = pb::unit_terminal_client::UnitTerminalClient::new(channel);
    let Ok(pages) = client.subscribe(pb::SubscribeRequest { unit_id: unit_id.clone() }).await else { return };
    let mut pages = pages.into_inner();
    let mut answers = JoinSet::new();
    while let Ok(Some(page)) = pages.message().await {
        while answers.try_join_next().is_some() {}
        let u = answer(seed, &unit_id, &page.incident_id, page.attempt);
        if u >= 0.8 {
            continue; // silent: the 1 s acknowledgement timer re-pages
        }
        let (mut client, unit_id) = (client.clone(), unit_id.clone());
        answers.spawn(async move {
            let accept = u < 0.5;
            let ack = pb::AcknowledgeRequest {
                unit_id: unit_id.clone(),
                incident_id: page.incident_id.clone(),
                accept,
                reason: String::new(),
            };
            // Refusals (closed meanwhile, timed out first) are expected answers.
            if client.acknowledge(ack).await.is_err() || !accept || u >= 0.25 {
                return;
            }
            for status in [pb::UnitStatus::OnScene, pb::UnitStatus::Available] {
                let report = pb::ReportStatusRequest {
                    unit_id: unit_id.clone(),
                    status: status as i32,
                    incident_id: if status == pb::UnitStatus::OnScene {
                        page.incident_id.clone()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                };
                if client.report_status(report).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_incidents_against_a_few_hundred_units_never_double_assign() {
    let seed = test_seed("stress");
    let units = units_in_the_box(seed);
    let server = start_server(&units).await;
    let dispatcher = server.dispatcher.clone();

    // The feed, read in its own task from before the first report.
    let replay = tokio::spawn(replay_feed(server.watch(0, "").await));

    // A terminal for every unit; wait until all are subscribed.
    let mut terminals = JoinSet::new();
    for chunk in units.chunks(TERMINALS_PER_CONNECTION) {
        let channel = server.channel().await;
        for (id, ..) in chunk {
            terminals.spawn(terminal(channel.clone(), id.clone(), seed));
        }
    }
    let mut client = server.client().await;
    // Not a correctness wait: a page sent before its terminal subscribes waits
    // on the server and is delivered on subscribe. It only lets most terminals
    // be up when the load starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let reported = report_all(&server, &units, seed).await;
    assert_eq!(reported.len(), INCIDENTS);
    // Let re-pages, timeouts and escalations run for a while with the terminals answering.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    terminals.abort_all();
    while terminals.join_next().await.is_some() {}

    assert_all_stored(&all_incidents(&mut client).await, &reported);

    // Stop the server (and its timers), then the exact checks.
    server.shutdown().await;
    dispatcher.check_invariants().expect("core invariants");
    let (replay, cut) = replay.await.expect("feed task");
    assert!(cut.is_none(), "the feed watcher was cut off: {cut:?}");
    assert_eq!(replay.gaps, 0, "feed events missed");
    assert!(replay.violations.is_empty(), "double assignment on the feed: {:?}", &replay.violations[..]);
    assert!(replay.pages > INCIDENTS as u64 / 10, "the run paged hardly anyone: {} pages", replay.pages);
    // The waiting queue and pre-emption ran under the same interleavings.
    let [queue_fills, pre_emptions] = [Decision::QueueFill, Decision::Preemption].map(|d| dispatcher.decisions(d));
    assert!(
        queue_fills > 0 && pre_emptions > 0,
        "the surge policy never acted: {queue_fills} queue fills, {pre_emptions} pre-emptions"
    );
    let policy = format!("{queue_fills} queue fills, {pre_emptions} pre-emptions");
    println!(
        "stress: {} incidents, {} feed events, {} pages, {} publication-order inversions, {policy}",
        INCIDENTS, replay.events, replay.pages, replay.inversions
    );
}

/// The run's units, (id, tier, lat, lng), placed at random in the box.
fn units_in_the_box(seed: u64) -> Vec<(String, u32, f64, f64)> {
    let mut rng = SplitMix64(seed);
    let mut units = Vec::new();
    for (tier, count) in [(1u32, UNITS_T1), (3, UNITS_T3), (5, UNITS_T5), (10, UNITS_T10)] {
        for i in 0..count {
            let lat = BOX_LAT.0 + (BOX_LAT.1 - BOX_LAT.0) * rng.unit();
            let lng = BOX_LNG.0 + (BOX_LNG.1 - BOX_LNG.0) * rng.unit();
            units.push((format!("S{tier}-{i:03}"), tier, lat, lng));
        }
    }
    units
}

/// A server with these units. Short acknowledgement timeouts so silent
/// terminals are re-paged and tiers escalated within the run; RETURNING units
/// come back after 1 s; a feed buffer the test's watcher cannot overrun.
async fn start_server(units: &[(String, u32, f64, f64)]) -> TestServer {
    let unit_refs: Vec<(&str, u32, f64, f64)> = units.iter().map(|(id, t, a, b)| (id.as_str(), *t, *a, *b)).collect();
    let config = config_on_disk(&units_json(&unit_refs), |c| {
        c.replace("ack_timeout_s = 15", "ack_timeout_s = 1")
            .replace("ack_timeout_s = 30", "ack_timeout_s = 1")
            .replace("ack_timeout_s = 45", "ack_timeout_s = 1")
            .replace("ack_timeout_s = 60", "ack_timeout_s = 1")
            .replace("return_to_available_s = 1800", "return_to_available_s = 1")
            .replace("subscriber_buffer_events = 1024", "subscriber_buffer_events = 262144")
    });
    TestServer::start_with(config).await
}

/// Replays the feed until it ends; the status it was cut off with, if any.
async fn replay_feed(mut feed: tonic::Streaming<pb::DispatchEvent>) -> (FeedReplay, Option<tonic::Status>) {
    let mut replay = FeedReplay::default();
    let cut = loop {
        match feed.message().await {
            Ok(Some(event)) => replay.apply(&event),
            Ok(None) => break None,
            // The server's shutdown ends the feed with UNAVAILABLE.
            Err(status) if status.code() == tonic::Code::Unavailable => break None,
            Err(status) => break Some(status),
        }
    };
    replay.finish();
    (replay, cut)
}

/// Reports from REPORTERS concurrent workers; each incident closed at random.
/// Every incident reported, (id, external id).
async fn report_all(server: &TestServer, units: &[(String, u32, f64, f64)], seed: u64) -> Vec<(String, String)> {
    let unit_positions: Arc<Vec<(f64, f64)>> = Arc::new(units.iter().map(|(_, _, a, b)| (*a, *b)).collect());
    let mut load_channels = Vec::new();
    for _ in 0..LOAD_CONNECTIONS {
        load_channels.push(server.channel().await);
    }
    let mut reporters = JoinSet::new();
    for w in 0..REPORTERS {
        // Workers share LOAD_CONNECTIONS HTTP/2 connections (a cloned channel is the same connection).
        let client = pb::dispatch_client::DispatchClient::new(load_channels[w % LOAD_CONNECTIONS].clone());
        let rng = SplitMix64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        reporters.spawn(reporter(client, unit_positions.clone(), w, rng));
    }
    let mut reported = Vec::new();
    while let Some(done) = reporters.join_next().await {
        reported.extend(done.expect("reporter"));
    }
    reported
}

/// Worker `w`: reports incidents w, w + REPORTERS, ...; closes some at once.
async fn reporter(
    mut client: pb::dispatch_client::DispatchClient<Channel>,
    positions: Arc<Vec<(f64, f64)>>,
    w: usize,
    mut rng: SplitMix64,
) -> Vec<(String, String)> {
    let mut ok = Vec::new();
    for i in (w..INCIDENTS).step_by(REPORTERS) {
        let request = stress_report(&mut rng, &positions, i);
        let incident = client.report_incident(request).await.expect("report answered").into_inner();
        let incident = incident.incident.expect("incident");
        if rng.unit() < 0.4 {
            tokio::task::yield_now().await;
            client
                .close_incident(pb::CloseIncidentRequest { id: incident.id.clone(), reason: String::new() })
                .await
                .expect("close");
        }
        ok.push((incident.id, incident.external_id));
    }
    ok
}

/// Incident `i`: half at a unit's doorstep (tier 1 contention), half anywhere in the box.
fn stress_report(rng: &mut SplitMix64, positions: &[(f64, f64)], i: usize) -> pb::ReportIncidentRequest {
    let (lat, lng) = if rng.unit() < 0.5 {
        let (lat, lng) = positions[(rng.next_u64() % positions.len() as u64) as usize];
        (lat + (rng.unit() - 0.5) * 0.0005, lng + (rng.unit() - 0.5) * 0.0005)
    } else {
        (BOX_LAT.0 + (BOX_LAT.1 - BOX_LAT.0) * rng.unit(), BOX_LNG.0 + (BOX_LNG.1 - BOX_LNG.0) * rng.unit())
    };
    let kinds = [pb::IncidentKind::Fire, pb::IncidentKind::Flood, pb::IncidentKind::Rescue];
    pb::ReportIncidentRequest {
        external_id: format!("stress-{i}"),
        location: Some(pb::LatLng { lat, lng }),
        kind: kinds[(rng.next_u64() % 3) as usize] as i32,
        severity: 1 + (rng.next_u64() % 4) as u32,
        address: String::new(),
        description: String::new(),
        grid_id: String::new(),
    }
}

/// Every incident reported OK is on the server, once, with every tier in a defined state.
fn assert_all_stored(listed: &[pb::Incident], reported: &[(String, String)]) {
    let by_id: HashMap<&str, &pb::Incident> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut ids = HashSet::new();
    for (id, external_id) in reported {
        assert!(ids.insert(id.clone()), "incident id {id} handed out twice");
        let incident = by_id.get(id.as_str()).unwrap_or_else(|| panic!("incident {id} reported OK is missing"));
        assert_eq!(&incident.external_id, external_id);
        for t in &incident.tiers {
            assert_ne!(t.state(), pb::TierState::Unspecified, "{id} tier {} has no state", t.tier);
        }
    }
    assert_eq!(listed.len(), INCIDENTS);
}
