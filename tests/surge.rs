//! Dispatch under surge, end to end against a real server: a higher-severity
//! report takes an unacknowledged page, a waiting incident is filled from
//! the queue when a unit comes free, a silent crew's unit recovers when its
//! terminal reports a position, and each decision's reason is in the
//! incident's timeline over gRPC and HTTP.

use lastmile_suite::http::get;
use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, config_on_disk, paging_units};

/// Central Luqiao, about 2.2 km from the only brigade of `paging_units`.
const AT: pb::LatLng = pb::LatLng { lat: 28.58, lng: 121.37 };

fn fire(external_id: &str, severity: u32) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        external_id: external_id.into(),
        location: Some(AT),
        kind: pb::IncidentKind::Fire as i32,
        severity,
        ..Default::default()
    }
}

fn tier10(incident: &pb::Incident) -> Vec<String> {
    let t = incident.tiers.iter().find(|t| t.tier() == pb::Tier::Tier10Min).expect("a tier-10 slot");
    let active = [pb::AssignmentState::Paged, pb::AssignmentState::Acknowledged, pb::AssignmentState::OnScene];
    t.assignments.iter().filter(|a| active.contains(&a.state())).map(|a| a.unit_id.clone()).collect()
}

async fn timeline(
    client: &mut pb::dispatch_client::DispatchClient<tonic::transport::Channel>,
    id: &str,
) -> Vec<pb::TimelineEntry> {
    let request = pb::GetIncidentTimelineRequest { incident_id: id.into() };
    client.get_incident_timeline(request).await.unwrap().into_inner().entries
}

fn said(entries: &[pb::TimelineEntry], kind: pb::EventType, words: &str) -> bool {
    entries.iter().any(|e| e.r#type() == kind && e.detail.contains(words))
}

#[tokio::test]
async fn pre_emption_and_the_queue_say_why_in_the_timeline_over_grpc_and_http() {
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c)).await;
    let mut client = server.client().await;
    let reader = client.clone();
    let get_incident = |id: String| {
        let mut c = reader.clone();
        async move { c.get_incident(pb::GetIncidentRequest { id }).await.unwrap().into_inner() }
    };

    let bin = client.report_incident(fire("bin-fire", 1)).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(tier10(&bin), ["T10-a"]);
    // A major fire a moment later: the brigade's page to the bin fire is not
    // yet acknowledged, so it is taken.
    let major = client.report_incident(fire("major", 4)).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(tier10(&major), ["T10-a"]);
    assert!(tier10(&get_incident(bin.id.clone()).await).is_empty());

    let bin_timeline = timeline(&mut client, &bin.id).await;
    assert!(
        said(&bin_timeline, pb::EventType::UnitReleased, "page withdrawn: T10-a is within target"),
        "{bin_timeline:#?}"
    );
    let major_timeline = timeline(&mut client, &major.id).await;
    assert!(said(&major_timeline, pb::EventType::UnitPaged, &format!("taken from {}", bin.id)), "{major_timeline:#?}");

    // A third report waits for a brigade; closing the major fire frees it,
    // and the queue pages it for the one that never had it.
    let mid = client.report_incident(fire("mid", 2)).await.unwrap().into_inner().incident.unwrap();
    assert!(tier10(&mid).is_empty());
    let close = pb::CloseIncidentRequest { id: major.id.clone(), reason: "out".into() };
    client.close_incident(close).await.unwrap();
    assert_eq!(tier10(&get_incident(mid.id.clone()).await), ["T10-a"]);
    assert!(said(&timeline(&mut client, &mid.id).await, pb::EventType::UnitPaged, "from the waiting queue"));

    // The same reasons over HTTP.
    let http = server.http_addr;
    let answer = get(http, &format!("/v1/incidents/{}/timeline", bin.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("page withdrawn: T10-a is within target"), "{}", answer.text());
    let answer = get(http, &format!("/v1/incidents/{}/timeline", mid.id)).await;
    assert!(answer.text().contains("from the waiting queue"), "{}", answer.text());
    // And counted: the major fire took the bin fire's page in each of the
    // four tiers, and closing it filled the four waiting slots of `mid`.
    let metrics = get(http, "/metrics").await.text();
    for line in [
        r#"lastmile_dispatch_decisions_total{decision="preemption"} 4"#,
        r#"lastmile_dispatch_decisions_total{decision="queue_fill"} 4"#,
    ] {
        assert!(metrics.contains(line), "{line} not in /metrics: {metrics}");
    }
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn a_silent_crew_recovers_when_its_terminal_reports_a_position() {
    // Tier 1 times out after 1 s.
    let config = config_on_disk(&paging_units(), |c| c.replace("ack_timeout_s = 15", "ack_timeout_s = 1"));
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let first = client.report_incident(fire("first", 2)).await.unwrap().into_inner().incident.unwrap();
    let unit = |c: &mut pb::dispatch_client::DispatchClient<_>| {
        let mut c = c.clone();
        async move { c.get_unit(pb::GetUnitRequest { id: "T1-a".into() }).await.unwrap().into_inner() }
    };
    lastmile_suite::eventually(|| {
        let u = unit(&mut client);
        async move { (u.await.status() == pb::UnitStatus::Unresponsive).then_some(()) }
    })
    .await;
    // The crew is back: its terminal sends a fix, and the unit is AVAILABLE
    // again, then paged for the next incident that needs it.
    let mut terminal = server.terminal().await;
    let fix = pb::PositionReport {
        unit_id: "T1-a".into(),
        position: Some(pb::LatLng { lat: 28.5801, lng: 121.37 }),
        measured_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    terminal.report_position(tokio_stream::iter([fix])).await.unwrap();
    assert_eq!(unit(&mut client).await.status(), pb::UnitStatus::Available);
    let metrics = get(server.http_addr, "/metrics").await.text();
    assert!(metrics.contains(r#"lastmile_dispatch_decisions_total{decision="recovery"} 1"#), "{metrics}");
    let second = client.report_incident(fire("second", 2)).await.unwrap().into_inner().incident.unwrap();
    let t1 = second.tiers.iter().find(|t| t.tier() == pb::Tier::Tier1Min).unwrap();
    assert_eq!(t1.assignments.first().map(|a| a.unit_id.as_str()), Some("T1-a"));
    // Never paged again for the incident it ignored.
    let first = client.get_incident(pb::GetIncidentRequest { id: first.id }).await.unwrap().into_inner();
    let t1 = first.tiers.iter().find(|t| t.tier() == pb::Tier::Tier1Min).unwrap();
    assert!(t1.assignments.iter().all(|a| a.state() != pb::AssignmentState::Paged));
}
