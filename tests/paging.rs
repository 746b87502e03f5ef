//! End-to-end paging over gRPC with real terminal streams and the live feed:
//! page, acknowledge, on scene (MET); a silent terminal's page re-paged to the
//! next unit; a reconnecting terminal finds its page; a slow feed watcher does
//! not stall dispatch; the feed tells the whole story in order.

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, accept, config_on_disk, next, paging_units, report, until_event};
use tonic::Code;

async fn paging_server(edit: impl FnOnce(String) -> String) -> TestServer {
    TestServer::start_with(config_on_disk(&paging_units(), edit)).await
}

#[tokio::test]
async fn page_acknowledge_on_scene_meets_the_tier_and_the_feed_tells_it_in_order() {
    let server = paging_server(|c| c).await;
    let mut feed = server.watch(0, "").await;
    let mut pages = server.pages("T3-a").await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("grid-100")).await.unwrap().into_inner().incident.unwrap();

    // The page reaches the terminal.
    let page = next(&mut pages).await.unwrap().expect("a page");
    assert_eq!((page.incident_id.as_str(), page.unit_id.as_str(), page.attempt), (incident.id.as_str(), "T3-a", 1));
    assert_eq!(page.tier, 3);
    assert_eq!(page.ack_timeout_s, 30);
    assert_eq!(page.deadline, incident.tiers[1].deadline);
    assert_eq!(page.address, "路桥街道 test");

    let mut terminal = server.terminal().await;
    let ack = accept("T3-a", &incident.id);
    let unit = terminal.acknowledge(ack.clone()).await.unwrap().into_inner().unit.unwrap();
    assert_eq!(unit.status(), pb::UnitStatus::EnRoute);
    // Repeated: refused, naming the state; applied once.
    let err = terminal.acknowledge(ack).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("ACKNOWLEDGED"), "{}", err.message());

    terminal
        .report_status(pb::ReportStatusRequest {
            unit_id: "T3-a".into(),
            status: pb::UnitStatus::OnScene as i32,
            incident_id: incident.id.clone(),
            // The fix that verifies the arrival (dispatch.on_scene_radius_m).
            position: incident.location,
            ..Default::default()
        })
        .await
        .unwrap();
    let got = client.get_incident(pb::GetIncidentRequest { id: incident.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.tiers[1].state(), pb::TierState::Met);
    assert_eq!(got.tiers[1].assignments[0].state(), pb::AssignmentState::OnScene);

    // The feed, in order, with increasing sequence numbers.
    let mut story = Vec::new();
    let mut last_seq = 0;
    while story.last() != Some(&(pb::EventType::TierMet, String::new())) {
        let event = next(&mut feed).await.unwrap().unwrap();
        assert!(event.seq > last_seq, "sequence increases");
        last_seq = event.seq;
        if event.incident_id == incident.id {
            story.push((event.r#type(), event.unit_id.clone()));
        }
    }
    let t = |kind, unit: &str| (kind, unit.to_string());
    assert_eq!(
        story,
        vec![
            t(pb::EventType::IncidentReported, ""),
            // report() is inside the demo grid: its worker is told at once.
            t(pb::EventType::GridWorkerNotified, ""),
            t(pb::EventType::UnitPaged, "T1-a"),
            t(pb::EventType::UnitPaged, "T3-a"),
            t(pb::EventType::UnitPaged, "T5-a"),
            t(pb::EventType::UnitPaged, "T10-a"),
            t(pb::EventType::UnitAcknowledged, "T3-a"),
            t(pb::EventType::UnitOnScene, "T3-a"),
            t(pb::EventType::TierMet, ""),
        ]
    );
}

#[tokio::test]
async fn a_silent_terminal_is_timed_out_and_the_next_unit_paged() {
    // Tier 3 acknowledgement timeout: 1 s instead of 30.
    let server = paging_server(|c| c.replace("ack_timeout_s = 30", "ack_timeout_s = 1")).await;
    let mut silent = server.pages("T3-a").await;
    let mut next_unit = server.pages("T3-b").await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("grid-200")).await.unwrap().into_inner().incident.unwrap();
    let mut feed = server.watch(0, &incident.id).await;
    let first = next(&mut silent).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);

    // T3-a says nothing: after its timeout the page goes to T3-b, attempt 2.
    let repage = next(&mut next_unit).await.unwrap().expect("re-page");
    assert_eq!((repage.incident_id.as_str(), repage.attempt), (incident.id.as_str(), 2));
    let timed_out = until_event(&mut feed, pb::EventType::UnitTimedOut, "T3-a").await;
    assert_eq!(timed_out.unit_status(), pb::UnitStatus::Unresponsive);
    until_event(&mut feed, pb::EventType::UnitRepaged, "T3-b").await;

    let unit = client.get_unit(pb::GetUnitRequest { id: "T3-a".into() }).await.unwrap().into_inner();
    assert_eq!(unit.status(), pb::UnitStatus::Unresponsive);
    // A late acknowledgement is answered clearly and changes nothing.
    let err = server.terminal().await.acknowledge(accept("T3-a", &incident.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("TIMED_OUT"), "{}", err.message());
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn a_decline_re_pages_at_once() {
    let server = paging_server(|c| c).await;
    let mut next_unit = server.pages("T3-b").await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("grid-250")).await.unwrap().into_inner().incident.unwrap();
    let unit = server
        .terminal()
        .await
        .acknowledge(pb::AcknowledgeRequest {
            unit_id: "T3-a".into(),
            incident_id: incident.id.clone(),
            accept: false,
            reason: "crew at another call".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(unit.status(), pb::UnitStatus::Available);
    let page = next(&mut next_unit).await.unwrap().unwrap();
    assert_eq!((page.incident_id, page.attempt), (incident.id, 2));
}

#[tokio::test]
async fn a_terminal_that_reconnects_receives_the_waiting_page_first() {
    let server = paging_server(|c| c).await;
    let mut client = server.client().await;
    // Paged while no terminal is connected.
    let incident = client.report_incident(report("grid-300")).await.unwrap().into_inner().incident.unwrap();
    let mut pages = server.pages("T5-a").await;
    let page = next(&mut pages).await.unwrap().expect("waiting page");
    assert_eq!((page.incident_id.as_str(), page.unit_id.as_str()), (incident.id.as_str(), "T5-a"));
    // The connection drops and comes back: the page is still waiting.
    drop(pages);
    let mut pages = server.pages("T5-a").await;
    assert_eq!(next(&mut pages).await.unwrap().unwrap().incident_id, incident.id);
    // A second subscription for the same unit replaces the first.
    let mut newer = server.pages("T5-a").await;
    assert_eq!(next(&mut newer).await.unwrap().unwrap().incident_id, incident.id);
    let old_end = next(&mut pages).await;
    assert!(matches!(old_end, Err(ref s) if s.code() == Code::Aborted), "{old_end:?}");
    // Unknown units cannot subscribe.
    let err = server.terminal().await.subscribe(pb::SubscribeRequest { unit_id: "T3-zzz".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_slow_feed_watcher_is_cut_off_without_stalling_dispatch() {
    let server = paging_server(|c| c.replace("subscriber_buffer_events = 1024", "subscriber_buffer_events = 16")).await;
    // Subscribed, then never read while the surge runs. A small HTTP/2 window
    // (64 KiB, the protocol's default) so the transport does not absorb the
    // backlog on the watcher's behalf.
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = pb::dispatch_client::DispatchClient::new(channel)
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut client = server.client().await;
    for i in 0..600 {
        let r = client
            .report_incident(report(&format!("surge-{i}")))
            .await
            .expect("dispatch is not held up by the watcher");
        if i % 2 == 0 {
            client
                .close_incident(pb::CloseIncidentRequest {
                    id: r.into_inner().incident.unwrap().id,
                    reason: String::new(),
                })
                .await
                .unwrap();
        }
    }
    // The watcher now reads: what it gets ends in RESOURCE_EXHAUSTED naming where to resume.
    let status = loop {
        match next(&mut slow).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("feed ended without telling the watcher it fell behind"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let resume_from: u64 =
        status.message().rsplit("after_seq = ").next().unwrap().trim().parse().expect("resume point");
    // Resuming from there works (the history still has it).
    let mut resumed = server.watch(resume_from, "").await;
    let event = next(&mut resumed).await.unwrap().unwrap();
    assert_eq!(event.seq, resume_from + 1);
}

#[tokio::test]
async fn resume_points_outside_the_history_are_refused() {
    let server = paging_server(|c| c.replace("history_events = 10000", "history_events = 10")).await;
    let mut client = server.client().await;
    for i in 0..10 {
        client.report_incident(report(&format!("h-{i}"))).await.unwrap();
    }
    // Ten reports are at least fifty events: a resume point beyond the 10
    // kept is refused, and so is one ahead of the feed.
    for after_seq in [1, u64::MAX / 2] {
        let err = server
            .client()
            .await
            .watch_events(pb::WatchEventsRequest { after_seq, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
        assert!(err.message().starts_with("after_seq:"), "{}", err.message());
    }
}

#[tokio::test]
async fn positions_move_units_and_overrides_show_in_the_feed() {
    let server = paging_server(|c| c).await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("grid-400")).await.unwrap().into_inner().incident.unwrap();
    let mut feed = server.watch(0, "").await;

    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let now = prost_types::Timestamp { seconds: wall, nanos: 0 };
    let older = prost_types::Timestamp { seconds: wall - 1000, nanos: 0 };
    let future = prost_types::Timestamp { seconds: wall + 3600, nanos: 0 };
    let reports = vec![
        pb::PositionReport {
            unit_id: "T3-c".into(),
            position: Some(pb::LatLng { lat: 28.5805, lng: 121.37 }),
            measured_at: Some(now),
        },
        pb::PositionReport {
            unit_id: "T3-c".into(),
            position: Some(pb::LatLng { lat: 29.0, lng: 121.37 }),
            measured_at: Some(older),
        },
        pb::PositionReport {
            unit_id: "T3-c".into(),
            position: Some(pb::LatLng { lat: f64::NAN, lng: 121.37 }),
            measured_at: Some(now),
        },
        pb::PositionReport {
            unit_id: "nope".into(),
            position: Some(pb::LatLng { lat: 28.5, lng: 121.37 }),
            measured_at: Some(now),
        },
        // An hour ahead of the server: refused, or it would freeze the unit.
        pb::PositionReport {
            unit_id: "T3-c".into(),
            position: Some(pb::LatLng { lat: 28.7, lng: 121.37 }),
            measured_at: Some(future),
        },
    ];
    let answer = server.terminal().await.report_position(tokio_stream::iter(reports)).await.unwrap().into_inner();
    assert_eq!((answer.applied, answer.ignored_stale, answer.rejected), (1, 1, 3));
    assert!(answer.first_error.starts_with("position.lat:"), "{}", answer.first_error);
    let unit = client.get_unit(pb::GetUnitRequest { id: "T3-c".into() }).await.unwrap().into_inner();
    assert_eq!(unit.position.unwrap().lat, 28.5805);
    until_event(&mut feed, pb::EventType::UnitPosition, "T3-c").await;

    // The moved unit is now the nearest free tier-3 unit: a dispatcher assigns it.
    let updated = client
        .assign_unit(pb::AssignUnitRequest { incident_id: incident.id.clone(), unit_id: "T3-c".into(), tier: 3 })
        .await
        .unwrap()
        .into_inner();
    assert!(
        updated.tiers[1].assignments.iter().any(|a| a.unit_id == "T3-c" && a.state() == pb::AssignmentState::Paged)
    );
    let paged = until_event(&mut feed, pb::EventType::UnitPaged, "T3-c").await;
    assert!(paged.detail.contains("dispatcher"), "{}", paged.detail);
    let released = client
        .release_unit(pb::ReleaseUnitRequest { unit_id: "T3-a".into(), reason: "needed elsewhere".into() })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(released.status(), pb::UnitStatus::Available);
    let event = until_event(&mut feed, pb::EventType::UnitReleased, "T3-a").await;
    assert!(event.detail.contains("needed elsewhere"), "{}", event.detail);
    let err = client
        .release_unit(pb::ReleaseUnitRequest { unit_id: "T3-a".into(), reason: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn a_position_stream_outlives_the_request_timeout() {
    // Unary calls are bounded by server.request_timeout_ms; a terminal's
    // position stream is not (it lives as long as the terminal reports).
    let server = paging_server(|c| c.replace("request_timeout_ms = 10000", "request_timeout_ms = 200")).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let report = |lat: f64| pb::PositionReport {
        unit_id: "T3-a".into(),
        position: Some(pb::LatLng { lat, lng: 121.37 }),
        ..Default::default()
    };
    tx.send(report(28.5811)).await.unwrap();
    let mut terminal = server.terminal().await;
    let call =
        tokio::spawn(async move { terminal.report_position(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    // Longer than the request timeout between two reports (a wait, not a
    // measured duration: nothing here asserts how long anything took).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    tx.send(report(28.5812)).await.unwrap();
    drop(tx);
    let answer = call.await.unwrap().expect("the stream was not cut off").into_inner();
    assert_eq!(answer.applied, 2, "{answer:?}");
}
