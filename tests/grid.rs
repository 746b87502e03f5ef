//! End-to-end over gRPC: grid cells (网格). A report lands on the cell its
//! location is in (the embedded demo grid), its grid worker is notified on
//! the live feed, every event of the incident carries the cell, and a
//! caller's `grid_id` is checked against the location.

use lastmile_core::LatLng;
use lastmile_core::grid::GridCell;
use lastmile_server::config::LastmileConfig;
use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, next, report};
use tonic::Code;

/// The cell of the embedded grid that `report()`'s location is in, read
/// from the dataset itself rather than from the server under test.
fn expected_cell() -> GridCell {
    let (_, area) = LastmileConfig::embedded().unwrap().load_dataset().unwrap();
    let at = report("x").location.unwrap();
    area.grid().locate(LatLng::new(at.lat, at.lng).unwrap()).expect("report() is inside the demo grid").clone()
}

#[tokio::test]
async fn a_report_lands_on_its_grid_cell_and_notifies_the_grid_worker() {
    let cell = expected_cell();
    let server = TestServer::start().await;
    let mut feed = server.watch(0, "").await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("grid-cell-1")).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(incident.grid_id, cell.grid_id);
    assert!(incident.grid_id.starts_with("LQ-G"), "{}", incident.grid_id);
    let worker = incident.grid_worker.clone().expect("the cell's grid worker");
    assert_eq!(
        (worker.grid_id.as_str(), worker.name.as_str(), worker.contact.as_str()),
        (cell.grid_id.as_str(), cell.worker.name.as_str(), cell.worker.contact.as_str())
    );
    // Town and village are the cell's.
    assert_eq!((incident.town.as_str(), incident.village.as_str()), (cell.town.as_str(), cell.village.as_str()));
    let got = client.get_incident(pb::GetIncidentRequest { id: incident.id.clone() }).await.unwrap().into_inner();
    assert_eq!((got.grid_id, got.grid_worker), (incident.grid_id.clone(), Some(worker.clone())));

    // The feed: INCIDENT_REPORTED, then at once GRID_WORKER_NOTIFIED naming
    // the worker, then the pages; every one with the cell.
    let pages: usize = incident.tiers.iter().map(|t| t.assignments.len()).sum();
    let mut events = Vec::new();
    while events.iter().filter(|e: &&pb::DispatchEvent| e.r#type() == pb::EventType::UnitPaged).count() < pages {
        events.push(next(&mut feed).await.unwrap().expect("feed open"));
    }
    assert_eq!(events[0].r#type(), pb::EventType::IncidentReported);
    assert_eq!(events[1].r#type(), pb::EventType::GridWorkerNotified);
    assert_eq!(events[1].incident_id, incident.id);
    assert!(
        events[1].detail.contains(&worker.name) && events[1].detail.contains(&worker.contact),
        "{}",
        events[1].detail
    );
    assert_eq!(events.iter().filter(|e| e.r#type() == pb::EventType::GridWorkerNotified).count(), 1);

    // Closing: the releases and the close carry the cell too.
    client.close_incident(pb::CloseIncidentRequest { id: incident.id.clone(), reason: "test".into() }).await.unwrap();
    loop {
        let event = next(&mut feed).await.unwrap().expect("feed open");
        let closed = event.r#type() == pb::EventType::IncidentClosed;
        events.push(event);
        if closed {
            break;
        }
    }
    assert!(events.iter().any(|e| e.r#type() == pb::EventType::UnitReleased));
    for e in &events {
        assert_eq!(
            (e.incident_id.as_str(), e.grid_id.as_str()),
            (incident.id.as_str(), incident.grid_id.as_str()),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn a_claimed_grid_id_is_checked_against_the_location() {
    let cell = expected_cell();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let other = if cell.grid_id == "LQ-G0001" { "LQ-G0002" } else { "LQ-G0001" };
    for (claim, says) in [
        (other.to_string(), format!("grid_id: the location is in grid cell {}, not {other}", cell.grid_id)),
        (
            "LQ-G9999".to_string(),
            format!("grid_id: unknown grid cell \"LQ-G9999\"; the location is in grid cell {}", cell.grid_id),
        ),
    ] {
        let mut request = report("grid-claim-wrong");
        request.grid_id = claim;
        let status = client.report_incident(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), says);
    }
    let all = client.list_incidents(pb::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert!(all.incidents.is_empty(), "a refused report dispatches nothing");

    let mut request = report("grid-claim-right");
    request.grid_id = cell.grid_id.clone();
    let incident = client.report_incident(request).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(incident.grid_id, cell.grid_id);

    // Far outside the district: in no cell, so any claim is refused, and no claim passes.
    let mut far = report("grid-claim-far");
    far.location = Some(pb::LatLng { lat: 39.9, lng: 116.4 });
    far.grid_id = cell.grid_id.clone();
    let status = client.report_incident(far.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), format!("grid_id: the location is in no grid cell, not {}", cell.grid_id));
    far.grid_id.clear();
    let incident = client.report_incident(far).await.unwrap().into_inner().incident.unwrap();
    assert_eq!((incident.grid_id.as_str(), incident.grid_worker), ("", None));
}
