//! The incident timeline, arrivals verified by position, and history apart
//! from the live state, end to end against real servers.

use lastmile_proto::v1::unit_terminal_client::UnitTerminalClient;
use lastmile_suite::http::{get, http};
use lastmile_suite::v1 as pb;
use lastmile_suite::{ServedBinary, TestServer, accept, temp_dir};
use serde_json::{Value, json};
use tonic::transport::Channel;

type Dispatch = lastmile_proto::v1::dispatch_client::DispatchClient<Channel>;

/// Where the scripted incidents happen (central Luqiao).
const AT: pb::LatLng = pb::LatLng { lat: 28.58, lng: 121.37 };

/// A minor flood: the default plan asks one unit of each tier.
fn flood(external_id: &str, at: pb::LatLng) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        external_id: external_id.into(),
        location: Some(at),
        kind: pb::IncidentKind::Flood as i32,
        severity: 1,
        ..Default::default()
    }
}

async fn clients(endpoint: String) -> (Dispatch, UnitTerminalClient<Channel>) {
    let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
    (Dispatch::new(channel.clone()), UnitTerminalClient::new(channel))
}

/// The unit paged for tier 10 (the professional brigade) of `incident`.
fn tier10_unit(incident: &pb::Incident) -> String {
    let tier = incident.tiers.iter().find(|t| t.tier() == pb::Tier::Tier10Min).expect("a tier-10 slot");
    tier.assignments[0].unit_id.clone()
}

fn tier10(incident: &pb::Incident) -> &pb::TierResponse {
    incident.tiers.iter().find(|t| t.tier() == pb::Tier::Tier10Min).unwrap()
}

/// ON_SCENE carrying the fix `at`.
fn on_scene(unit_id: &str, incident_id: &str, at: pb::LatLng) -> pb::ReportStatusRequest {
    pb::ReportStatusRequest {
        unit_id: unit_id.into(),
        status: pb::UnitStatus::OnScene as i32,
        incident_id: incident_id.into(),
        position: Some(at),
        measured_at: None,
    }
}

async fn timeline(client: &mut Dispatch, incident_id: &str) -> pb::IncidentTimeline {
    let request = pb::GetIncidentTimelineRequest { incident_id: incident_id.into() };
    client.get_incident_timeline(request).await.unwrap().into_inner()
}

fn types(timeline: &pb::IncidentTimeline) -> Vec<pb::EventType> {
    timeline.entries.iter().map(|e| e.r#type()).collect()
}

/// Report, page, acknowledge, arrive (fix carried with the status),
/// verified, tier met, close with a reason; and a second incident left open.
async fn script(client: &mut Dispatch, terminal: &mut UnitTerminalClient<Channel>) -> (String, String) {
    let incident = client.report_incident(flood("tl-closed", AT)).await.unwrap().into_inner().incident.unwrap();
    let unit = tier10_unit(&incident);
    terminal.acknowledge(accept(&unit, &incident.id)).await.unwrap();
    let near = pb::LatLng { lat: AT.lat + 0.0003, lng: AT.lng }; // ~33 m away
    terminal.report_status(on_scene(&unit, &incident.id, near)).await.unwrap();
    let met = client.get_incident(pb::GetIncidentRequest { id: incident.id.clone() }).await.unwrap().into_inner();
    assert_eq!(tier10(&met).state(), pb::TierState::Met, "a verified arrival meets the tier");
    let close = pb::CloseIncidentRequest { id: incident.id.clone(), reason: "water pumped out".into() };
    client.close_incident(close).await.unwrap();
    let open = client.report_incident(flood("tl-open", AT)).await.unwrap().into_inner().incident.unwrap();
    (incident.id, open.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_incident_has_one_timeline_over_grpc_and_http_and_after_a_sigkill() {
    let dir = temp_dir("timeline");
    let data_dir = vec!["--data-dir".to_string(), dir.display().to_string()];
    scripted_timeline_survives_a_sigkill(&data_dir).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on the PostgreSQL journal (a real server: `.ci/postgres.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_scripted_incident_has_one_timeline_over_grpc_and_http_and_after_a_sigkill() {
    let Some(journal) = lastmile_suite::postgres_journal("timeline") else { return };
    scripted_timeline_survives_a_sigkill(&journal).await;
}

/// A scripted incident's timeline over gRPC and HTTP, then the server
/// SIGKILLed and restarted on the journal `journal` (serve's flags) names.
async fn scripted_timeline_survives_a_sigkill(journal: &[String]) {
    let server = ServedBinary::start(journal);
    let (mut client, mut terminal) = clients(server.endpoint()).await;
    let (closed_id, open_id) = script(&mut client, &mut terminal).await;

    let closed = timeline(&mut client, &closed_id).await;
    let kinds = types(&closed);
    use pb::EventType::*;
    for wanted in [IncidentReported, UnitPaged, UnitAcknowledged, UnitOnScene, TierMet, IncidentClosed] {
        assert!(kinds.contains(&wanted), "{wanted:?} missing from {kinds:?}");
    }
    assert_eq!(kinds.first(), Some(&IncidentReported));
    assert_eq!(kinds.last(), Some(&IncidentClosed));
    assert!(closed.entries.iter().enumerate().all(|(i, e)| e.n == i as u32), "numbered in order");
    let arrival = closed.entries.iter().find(|e| e.r#type() == UnitOnScene).unwrap();
    assert!(arrival.detail.contains("arrival verified"), "{}", arrival.detail);
    assert_eq!(arrival.actor, "anyone", "auth is off: the caller is anyone");
    assert_eq!(closed.entries.last().unwrap().detail, "water pumped out");
    let breaches = closed.entries.iter().filter(|e| e.r#type() == TierBreached).count();
    assert_eq!(breaches, 0);

    // The same over HTTP, field for field.
    let over_http = get(server.http_addr.parse().unwrap(), &format!("/v1/incidents/{closed_id}/timeline")).await;
    assert_eq!(over_http.status, 200, "{}", over_http.text());
    let from_grpc = serde_json::to_value(lastmile_server::json::IncidentTimeline::from(closed.clone())).unwrap();
    assert_eq!(over_http.json(), from_grpc);

    // The assignment carries its times.
    let get = |id: &str| pb::GetIncidentRequest { id: id.into() };
    let final_state = client.get_incident(get(&closed_id)).await.unwrap().into_inner();
    let a = &tier10(&final_state).assignments[0];
    assert!(a.acknowledged_at.is_some() && a.on_scene_at.is_some() && a.released_at.is_some(), "{a:?}");
    assert!(a.arrival_verified && a.arrival_confirmed_by.is_empty());
    let open = timeline(&mut client, &open_id).await;
    assert!(types(&open).contains(&UnitPaged));

    // SIGKILL, restart on the same journal: nothing answered is lost.
    drop(server);
    let server = ServedBinary::start(journal);
    let (mut client, _) = clients(server.endpoint()).await;
    assert_eq!(timeline(&mut client, &closed_id).await, closed, "the closed incident's timeline, from history");
    // The open incident's timers may have fired since (a slow machine): what
    // was read before is all there, first.
    let recovered = timeline(&mut client, &open_id).await;
    assert!(recovered.entries.starts_with(&open.entries), "the open incident's timeline, recovered: {recovered:?}");
    assert_eq!(client.get_incident(get(&closed_id)).await.unwrap().into_inner(), final_state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrival_3_km_away_is_unverified_until_a_dispatcher_confirms_it() {
    let server = TestServer::start().await;
    let (mut client, mut terminal) = clients(server.endpoint()).await;
    let incident = client.report_incident(flood("far-1", AT)).await.unwrap().into_inner().incident.unwrap();
    let unit = tier10_unit(&incident);
    terminal.acknowledge(accept(&unit, &incident.id)).await.unwrap();
    let far = pb::LatLng { lat: AT.lat + 0.027, lng: AT.lng }; // ~3 km north
    terminal.report_status(on_scene(&unit, &incident.id, far)).await.unwrap();
    let get = pb::GetIncidentRequest { id: incident.id.clone() };
    let now = client.get_incident(get.clone()).await.unwrap().into_inner();
    assert_ne!(tier10(&now).state(), pb::TierState::Met, "an unverified arrival does not meet the tier");
    let a = &tier10(&now).assignments[0];
    assert_eq!((a.state(), a.arrival_verified), (pb::AssignmentState::OnScene, false));
    let entries = timeline(&mut client, &incident.id).await;
    let unverified = entries.entries.iter().find(|e| e.r#type() == pb::EventType::UnitArrivalUnverified).unwrap();
    assert!(unverified.detail.contains("m from the incident"), "{}", unverified.detail);

    // A dispatcher confirms it over HTTP: the tier is met, and the timeline says who.
    let body = serde_json::to_vec(&json!({"unit_id": unit})).unwrap();
    let path = format!("/v1/incidents/{}/confirm-arrival", incident.id);
    let confirmed = http(server.http_addr, "POST", &path, &[("content-type", "application/json")], Some(&body)).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    let answer: Value = confirmed.json();
    let tier = answer["tiers"].as_array().unwrap().iter().find(|t| t["tier"] == "TIER_10").unwrap();
    assert_eq!(tier["state"], "MET", "{tier}");
    assert_eq!(tier["assignments"][0]["arrival_confirmed_by"], "anyone");
    let entries = timeline(&mut client, &incident.id).await;
    let confirmation = entries.entries.iter().find(|e| e.r#type() == pb::EventType::ArrivalConfirmed).unwrap();
    assert_eq!(confirmation.actor, "anyone");
    assert!(types(&entries).contains(&pb::EventType::TierMet));
    // Confirming twice changes nothing.
    let again = pb::ConfirmArrivalRequest { incident_id: incident.id.clone(), unit_id: unit.clone() };
    client.confirm_arrival(again).await.unwrap();
    assert_eq!(timeline(&mut client, &incident.id).await, entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_closes_go_on_far_past_max_incidents_and_history_lists_them() {
    let dir = temp_dir("history");
    let config = lastmile_suite::config_on_disk(&lastmile_suite::paging_units(), |text| {
        lastmile_suite::with_journal(&dir)(text.replace("max_incidents = 1000000", "max_incidents = 3"))
    });
    let server = TestServer::start_with(config.clone()).await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for round in 0..60 {
        let reported = client.report_incident(flood(&format!("round-{round}"), AT)).await;
        let incident = reported.unwrap_or_else(|e| panic!("round {round}: {e}")).into_inner().incident.unwrap();
        let close = pb::CloseIncidentRequest { id: incident.id.clone(), reason: format!("round {round}") };
        client.close_incident(close).await.unwrap();
        ids.push(incident.id);
    }
    // Four open at once are one too many.
    for i in 0..3 {
        client.report_incident(flood(&format!("open-{i}"), AT)).await.unwrap();
    }
    let refused = client.report_incident(flood("open-3", AT)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    server.shutdown().await;

    // After a restart, history lists every closed one, a page at a time.
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListIncidentsRequest {
            status: pb::IncidentStatus::Closed as i32,
            page_size: 25,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = client.list_incidents(request).await.unwrap().into_inner();
        listed.extend(page.incidents.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, ids);
    // A time range before every report lists nothing; the open ones list apart.
    let before = prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 };
    let request = pb::ListIncidentsRequest {
        reported_to: Some(before),
        status: pb::IncidentStatus::Closed as i32,
        ..Default::default()
    };
    assert!(client.list_incidents(request).await.unwrap().into_inner().incidents.is_empty());
    let request = pb::ListIncidentsRequest { status: pb::IncidentStatus::Open as i32, ..Default::default() };
    assert_eq!(client.list_incidents(request).await.unwrap().into_inner().incidents.len(), 3);
    let first = client.get_incident(pb::GetIncidentRequest { id: ids[0].clone() }).await.unwrap().into_inner();
    assert_eq!(first.status(), pb::IncidentStatus::Closed);
    let listed_http =
        get(server.http_addr, "/v1/incidents?status=CLOSED&page_size=2&reported_from=2020-01-01T00:00:00Z").await;
    let body: Value = listed_http.json();
    assert_eq!(body["incidents"].as_array().unwrap().len(), 2, "{body}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fixes are journaled together, not one commit each; but a position stream
/// is answered only once its last fix is durable: a SIGKILL right after the
/// answer loses nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_position_stream_survives_a_sigkill() {
    let dir = temp_dir("positions");
    let data_dir = [std::ffi::OsStr::new("--data-dir"), dir.as_os_str()];
    let server = ServedBinary::start(data_dir);
    let (_, mut terminal) = clients(server.endpoint()).await;
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let fixes: Vec<pb::PositionReport> = (1..=20)
        .map(|i| pb::PositionReport {
            unit_id: "T10-01".into(),
            position: Some(pb::LatLng { lat: 28.55 + 0.001 * f64::from(i), lng: 121.40 }),
            measured_at: Some(prost_types::Timestamp { seconds: now_s - 20 + i64::from(i), nanos: 0 }),
        })
        .collect();
    let last = fixes.last().unwrap().position;
    let answer = terminal.report_position(tokio_stream::iter(fixes)).await.unwrap().into_inner();
    assert_eq!(answer.applied, 20, "{answer:?}");
    drop(server); // SIGKILL
    let server = ServedBinary::start(data_dir);
    let (mut client, _) = clients(server.endpoint()).await;
    let unit = client.get_unit(pb::GetUnitRequest { id: "T10-01".into() }).await.unwrap().into_inner();
    assert_eq!(unit.position, last);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the SQLite store a commit goes to its log and reaches the tables
/// later (`journal.apply_interval_ms`, here an hour, so never on its own in
/// this test). A read of history must still see every close answered
/// before it: the read settles the journal first. The memory cache of
/// recent closes is 1 here, so the reads go to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_see_every_close_answered_before_them() {
    let dir = temp_dir("settle");
    let config = lastmile_suite::config_on_disk(&lastmile_suite::paging_units(), |text| {
        lastmile_suite::with_journal(&dir)(text)
            .replace("apply_interval_ms = 250", "apply_interval_ms = 3600000")
            .replace("recent_closed_incidents = 10000", "recent_closed_incidents = 1")
            .replace("memory_incidents = 100000", "memory_incidents = 1")
    });
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for round in 0..5 {
        let reported = client.report_incident(flood(&format!("settle-{round}"), AT)).await.unwrap();
        let id = reported.into_inner().incident.unwrap().id;
        let close = pb::CloseIncidentRequest { id: id.clone(), reason: format!("settled {round}") };
        client.close_incident(close).await.unwrap();
        ids.push(id);
    }
    let request = pb::ListIncidentsRequest { status: pb::IncidentStatus::Closed as i32, ..Default::default() };
    let listed: Vec<String> =
        client.list_incidents(request).await.unwrap().into_inner().incidents.into_iter().map(|i| i.id).collect();
    assert_eq!(listed, ids, "every close answered is listed");
    let first = client.get_incident(pb::GetIncidentRequest { id: ids[0].clone() }).await.unwrap().into_inner();
    assert_eq!(first.status(), pb::IncidentStatus::Closed);
    let entries = timeline(&mut client, &ids[0]).await;
    assert_eq!(types(&entries).last(), Some(&pb::EventType::IncidentClosed), "{entries:?}");
    let today = jiff::Timestamp::now().in_tz("Asia/Shanghai").unwrap().date();
    let day = |n: i64| today.checked_add(jiff::Span::new().days(n)).unwrap();
    let report = get(server.http_addr, &format!("/v1/reports/compliance?from={}&to={}", day(-1), day(2))).await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["incidents"], 5, "the report has every closed incident");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
