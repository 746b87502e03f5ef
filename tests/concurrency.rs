//! Many concurrent reports against few units: no unit is ever assigned to two
//! open incidents, every report is answered, and every reservation is
//! recorded on both the unit and the incident.

use std::collections::HashMap;

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, config_on_disk, report, units_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reports_against_few_units_never_double_assign() {
    // Two units of each tier around central Luqiao, 8 in all.
    let units = units_json(&[
        ("T1-a", 1, 28.5801, 121.37),
        ("T1-b", 1, 28.5799, 121.3701),
        ("T3-a", 3, 28.581, 121.37),
        ("T3-b", 3, 28.579, 121.371),
        ("T5-a", 5, 28.585, 121.37),
        ("T5-b", 5, 28.575, 121.372),
        ("T10-a", 10, 28.59, 121.37),
        ("T10-b", 10, 28.57, 121.38),
    ]);
    let server = TestServer::start_with(config_on_disk(&units, |c| c)).await;
    let clients = 32;
    let reports_per_client = 10;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..reports_per_client {
                let r = client.report_incident(report(&format!("c{c}-r{i}"))).await.expect("report answered");
                let incident = r.into_inner().incident.expect("incident");
                // Every third incident is closed again, so units cycle between incidents.
                if i % 3 == 2 {
                    client
                        .close_incident(pb::CloseIncidentRequest { id: incident.id.clone(), reason: String::new() })
                        .await
                        .expect("close");
                }
                ids.push(incident.id);
            }
            ids
        }));
    }
    let mut reported = Vec::new();
    for t in tasks {
        reported.extend(t.await.unwrap());
    }
    assert_eq!(reported.len(), clients * reports_per_client);

    // Read everything back over gRPC: each unit held by at most one open incident.
    let mut client = server.client().await;
    let mut holders: HashMap<String, String> = HashMap::new();
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let page = client
            .list_incidents(pb::ListIncidentsRequest { page_size: 100, page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        for incident in &page.incidents {
            seen += 1;
            if incident.status() != pb::IncidentStatus::Open {
                continue;
            }
            for a in incident.tiers.iter().flat_map(|t| &t.assignments) {
                if let Some(other) = holders.insert(a.unit_id.clone(), incident.id.clone()) {
                    panic!("unit {} assigned to both {other} and {}", a.unit_id, incident.id);
                }
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, reported.len(), "every acknowledged report is stored");
    assert!(holders.len() <= 8);
    for (unit_id, incident_id) in &holders {
        let unit = client.get_unit(pb::GetUnitRequest { id: unit_id.clone() }).await.unwrap().into_inner();
        assert_eq!(&unit.incident_id, incident_id);
        assert_eq!(unit.status(), pb::UnitStatus::Paged);
    }
    server.dispatcher.check_invariants().unwrap();
}
