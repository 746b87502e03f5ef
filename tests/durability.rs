//! Durability: every change answered OK is in the journal, and a restart on
//! the same data directory brings back incidents, reservations, the
//! idempotency index and the timers.

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, config_on_disk, paging_units, report, temp_dir, with_journal};

#[tokio::test]
async fn a_restart_recovers_incidents_units_idempotency_and_timers() {
    let dir = temp_dir("restart");
    // Tier 3 pages time out after 1 s, so a timer is due across the restart.
    let edit = |text: String| with_journal(&dir)(text).replace("ack_timeout_s = 30", "ack_timeout_s = 1");
    let server = TestServer::start_with(config_on_disk(&paging_units(), edit)).await;
    let mut client = server.client().await;
    let first = client.report_incident(report("grid-d1")).await.unwrap().into_inner().incident.unwrap();
    let mut terminal = server.terminal().await;
    terminal
        .acknowledge(pb::AcknowledgeRequest {
            unit_id: "T5-a".into(),
            incident_id: first.id.clone(),
            accept: true,
            reason: String::new(),
        })
        .await
        .unwrap();
    let second = client.report_incident(report("grid-d2")).await.unwrap().into_inner().incident.unwrap();
    client.close_incident(pb::CloseIncidentRequest { id: second.id.clone(), reason: "test".into() }).await.unwrap();
    let before_first = client.get_incident(pb::GetIncidentRequest { id: first.id.clone() }).await.unwrap().into_inner();
    let before_units = client.list_units(pb::ListUnitsRequest::default()).await.unwrap().into_inner().units;
    server.shutdown().await;

    // Same data directory: everything is back, exactly.
    let server = TestServer::start_with(config_on_disk(&paging_units(), edit)).await;
    let mut client = server.client().await;
    let after_second =
        client.get_incident(pb::GetIncidentRequest { id: second.id.clone() }).await.unwrap().into_inner();
    assert_eq!(after_second.status(), pb::IncidentStatus::Closed);
    let retry = client.report_incident(report("grid-d1")).await.unwrap().into_inner();
    assert!(retry.duplicate, "the idempotency index survived");
    assert_eq!(retry.incident.unwrap().id, first.id);
    let third = client.report_incident(report("grid-d3")).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(third.id, "inc-000003", "the incident sequence survived");
    // The T3-a page of the first incident came due across the restart (1 s):
    // its re-armed timer times it out and the slot is re-paged.
    let after_first = lastmile_suite::eventually(|| {
        let mut client = client.clone();
        let id = first.id.clone();
        async move {
            let incident = client.get_incident(pb::GetIncidentRequest { id }).await.unwrap().into_inner();
            (incident.tiers[1].assignments[0].state() == pb::AssignmentState::TimedOut).then_some(incident)
        }
    })
    .await;
    assert_eq!(after_first.tiers[1].assignments[1].attempt, 2, "re-paged after the restart");
    assert_eq!(after_first.tiers[2], before_first.tiers[2], "tier 5 (acknowledged) is unchanged");
    assert_eq!(after_first.tiers[1].assignments[0].state(), pb::AssignmentState::TimedOut);
    let t5 = client.get_unit(pb::GetUnitRequest { id: "T5-a".into() }).await.unwrap().into_inner();
    assert_eq!(t5, before_units.iter().find(|u| u.id == "T5-a").unwrap().clone());
    assert_eq!(t5.status(), pb::UnitStatus::EnRoute);
    server.dispatcher.check_invariants().unwrap();
}
