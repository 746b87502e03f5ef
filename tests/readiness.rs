//! Readiness after a crash: the timers that came due while the server was
//! down fire, and their changes are committed, before it says it is ready
//! (the ready line, health SERVING); then a report is served within a short
//! deadline.

use std::time::Duration;

use lastmile_suite::v1 as pb;
use lastmile_suite::{ServedBinary, temp_dir};
use tonic::transport::Channel;

type Dispatch = lastmile_proto::v1::dispatch_client::DispatchClient<Channel>;

/// Where the demo's enterprise micro stations are: a report there pages one.
fn micro_stations(n: usize) -> Vec<pb::LatLng> {
    let units: serde_json::Value =
        serde_json::from_str(lastmile_server::config::embedded_dataset_file("luqiao/units.json").unwrap()).unwrap();
    units["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["tier"] == 1)
        .take(n)
        .map(|u| pb::LatLng { lat: u["home"]["lat"].as_f64().unwrap(), lng: u["home"]["lng"].as_f64().unwrap() })
        .collect()
}

fn first_tier1_page_waits(incident: &pb::Incident) -> bool {
    incident
        .tiers
        .iter()
        .flat_map(|t| &t.assignments)
        .any(|a| a.state() == pb::AssignmentState::Paged && a.tier == 1 && a.attempt == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_with_overdue_timers_it_is_ready_only_once_they_fired() {
    let dir = temp_dir("readiness");
    let config_path = lastmile_suite::config_with_tier1_timing_out(&dir);
    let args = [std::ffi::OsStr::new("--config"), config_path.as_os_str()];
    let server = ServedBinary::start(args);
    let channel = Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
    let mut client = Dispatch::new(channel);
    let mut ids = Vec::new();
    for (i, at) in micro_stations(150).into_iter().enumerate() {
        let request = pb::ReportIncidentRequest {
            external_id: format!("ready-{i}"),
            location: Some(at),
            kind: pb::IncidentKind::Fire as i32,
            severity: 2,
            ..Default::default()
        };
        let incident = client.report_incident(request).await.unwrap().into_inner().incident.unwrap();
        if first_tier1_page_waits(&incident) {
            ids.push(incident.id);
        }
    }
    assert!(ids.len() >= 100, "most reports paged a micro station: {}", ids.len());
    drop(server); // SIGKILL while the tier-1 pages wait
    tokio::time::sleep(Duration::from_millis(1500)).await; // every one of them is now overdue

    let server = ServedBinary::start(args); // returns at the ready line
    let channel = Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = tonic_health::pb::HealthCheckRequest { service: "lastmile.v1.Dispatch".into() };
    let status = health.check(check).await.unwrap().into_inner().status();
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving);
    let mut client = Dispatch::new(channel);
    for id in &ids {
        let incident = client.get_incident(pb::GetIncidentRequest { id: id.clone() }).await.unwrap().into_inner();
        assert!(
            !first_tier1_page_waits(&incident),
            "{id}: its overdue acknowledgement timer had not fired when the server said it was ready"
        );
    }
    // And the first report after the restart is served within a short deadline.
    let mut request = tonic::Request::new(pb::ReportIncidentRequest {
        external_id: "ready-after".into(),
        location: Some(pb::LatLng { lat: 28.58, lng: 121.37 }),
        kind: pb::IncidentKind::Fire as i32,
        severity: 2,
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(3));
    client.report_incident(request).await.expect("a report within 3 s of ready");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
