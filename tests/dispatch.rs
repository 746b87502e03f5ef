//! End-to-end over gRPC: report -> per-tier reservations, idempotency, close,
//! preview, units, health and reflection.

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, report};

fn tier_state(t: &pb::TierResponse) -> pb::TierState {
    t.state()
}

#[tokio::test]
async fn a_report_reserves_units_for_every_tier_within_target() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.report_incident(report("grid-0001")).await.unwrap().into_inner();
    assert!(!response.duplicate);
    let incident = response.incident.unwrap();
    assert_eq!(incident.id, "inc-000001");
    assert_eq!(incident.external_id, "grid-0001");
    assert_eq!(incident.status(), pb::IncidentStatus::Open);
    assert!(!incident.town.is_empty() && !incident.village.is_empty(), "located in a town and village");
    let tiers: Vec<i32> = incident.tiers.iter().map(|t| t.tier).collect();
    assert_eq!(tiers, vec![1, 3, 5, 10]);
    let reported_at = incident.reported_at.unwrap();
    for tier in &incident.tiers {
        assert_eq!(tier.required, 1);
        assert_eq!(tier.deadline.unwrap().seconds, reported_at.seconds + tier.target_s as i64);
        // Central Luqiao is well covered: every tier is met within target.
        assert_eq!(tier_state(tier), pb::TierState::Paging, "{tier:?}");
        let a = &tier.assignments[0];
        assert!(a.within_target && a.eta_s <= tier.target_s, "{a:?}");
        assert_eq!(a.state(), pb::AssignmentState::Paged);
        assert_eq!(a.attempt, 1);
        let unit = client.get_unit(pb::GetUnitRequest { id: a.unit_id.clone() }).await.unwrap().into_inner();
        assert_eq!(unit.status(), pb::UnitStatus::Paged);
        assert_eq!(unit.incident_id, incident.id);
        assert_eq!(unit.tier, tier.tier);
    }
    // The same incident is there to read back.
    let got = client.get_incident(pb::GetIncidentRequest { id: incident.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, incident);
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn a_repeated_external_id_dispatches_nothing_twice() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = client.report_incident(report("grid-0042")).await.unwrap().into_inner();
    let paged_before = count_units(&mut client, pb::UnitStatus::Paged).await;
    // The upstream system retries (e.g. after a timeout): same id, maybe a re-geocoded location.
    let mut retry = report("grid-0042");
    retry.location = Some(pb::LatLng { lat: 28.581, lng: 121.371 });
    let second = client.report_incident(retry).await.unwrap().into_inner();
    assert!(second.duplicate);
    assert_eq!(second.incident, first.incident);
    assert_eq!(count_units(&mut client, pb::UnitStatus::Paged).await, paged_before);
    let all = client.list_incidents(pb::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.incidents.len(), 1);
}

async fn count_units(
    client: &mut pb::dispatch_client::DispatchClient<tonic::transport::Channel>,
    status: pb::UnitStatus,
) -> usize {
    let mut token = String::new();
    let mut n = 0;
    loop {
        let page = client
            .list_units(pb::ListUnitsRequest {
                status: status as i32,
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.units.iter().all(|u| u.status() == status));
        n += page.units.len();
        if page.next_page_token.is_empty() {
            return n;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn far_outside_the_district_every_tier_is_short_with_nobody_in_reach() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut far = report("grid-far");
    far.location = Some(pb::LatLng { lat: 39.9042, lng: 116.4074 }); // Beijing
    let incident = client.report_incident(far).await.unwrap().into_inner().incident.unwrap();
    assert!(incident.outside_service_area);
    assert_eq!(incident.tiers.len(), 4);
    for tier in &incident.tiers {
        assert!(tier.assignments.is_empty());
        if tier.tier() == pb::Tier::Tier1Min {
            // No micro fire station of its own there: tier 1 does not apply.
            assert_eq!((tier.state(), tier.required), (pb::TierState::NotApplicable, 0));
            assert!(tier.note.contains("not applicable"), "{}", tier.note);
        } else {
            assert_eq!(tier.state(), pb::TierState::Short);
            assert!(tier.note.contains("waiting for a unit"), "{}", tier.note);
        }
    }
}

#[tokio::test]
async fn closing_releases_units_and_preview_reserves_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let preview = client
        .preview_dispatch(pb::PreviewDispatchRequest {
            location: Some(pb::LatLng { lat: 28.58, lng: 121.37 }),
            kind: pb::IncidentKind::Fire as i32,
            severity: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count_units(&mut client, pb::UnitStatus::Paged).await, 0, "preview reserved nothing");
    let incident = client.report_incident(report("grid-7")).await.unwrap().into_inner().incident.unwrap();
    // The preview predicted exactly what the report then took.
    let predicted: Vec<&str> = preview.tiers.iter().map(|t| t.assignments[0].unit_id.as_str()).collect();
    let taken: Vec<&str> = incident.tiers.iter().map(|t| t.assignments[0].unit_id.as_str()).collect();
    assert_eq!(predicted, taken);

    let tier10_unit = incident.tiers[3].assignments[0].unit_id.clone();
    client
        .set_unit_status(pb::SetUnitStatusRequest {
            id: tier10_unit.clone(),
            status: pb::UnitStatus::EnRoute as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let closed = client
        .close_incident(pb::CloseIncidentRequest { id: incident.id.clone(), reason: "false alarm".into() })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(closed.status(), pb::IncidentStatus::Closed);
    assert!(closed.closed_at.is_some());
    assert!(closed.tiers.iter().all(|t| t.state() == pb::TierState::Cancelled));
    assert_eq!(count_units(&mut client, pb::UnitStatus::Paged).await, 0);
    let en_route = client.get_unit(pb::GetUnitRequest { id: tier10_unit }).await.unwrap().into_inner();
    assert_eq!(en_route.status(), pb::UnitStatus::Returning, "a unit that left its station returns");
    assert!(en_route.incident_id.is_empty());
    let open = client
        .list_incidents(pb::ListIncidentsRequest { status: pb::IncidentStatus::Open as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(open.incidents.is_empty());
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn units_can_be_added_moved_and_taken_out_of_service() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // A new professional unit parked right at the incident is the one selected.
    let new_unit = pb::Unit {
        id: "T10-TEST".into(),
        name: "临时前置消防站".into(),
        tier: pb::Tier::Tier10Min as i32,
        home: Some(pb::LatLng { lat: 28.5801, lng: 121.3701 }),
        ..Default::default()
    };
    let upserted = client.upsert_unit(pb::UpsertUnitRequest { unit: Some(new_unit) }).await.unwrap().into_inner();
    assert!(upserted.created);
    assert_eq!(upserted.unit.unwrap().status(), pb::UnitStatus::Available);
    let preview = client
        .preview_dispatch(pb::PreviewDispatchRequest {
            location: Some(pb::LatLng { lat: 28.58, lng: 121.37 }),
            kind: pb::IncidentKind::Fire as i32,
            severity: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.tiers[3].assignments[0].unit_id, "T10-TEST");
    // Out of service: no longer selected.
    client
        .set_unit_status(pb::SetUnitStatusRequest {
            id: "T10-TEST".into(),
            status: pb::UnitStatus::OutOfService as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let incident = client.report_incident(report("grid-9")).await.unwrap().into_inner().incident.unwrap();
    assert_ne!(incident.tiers[3].assignments[0].unit_id, "T10-TEST");
    // Illegal transition: a PAGED unit cannot be set OUT_OF_SERVICE; the answer names the state.
    let paged = incident.tiers[0].assignments[0].unit_id.clone();
    let err = client
        .set_unit_status(pb::SetUnitStatusRequest {
            id: paged,
            status: pb::UnitStatus::OutOfService as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("PAGED") && err.message().contains(&incident.id), "{}", err.message());
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn lists_page_through_everything_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut token = String::new();
    let mut ids = Vec::new();
    loop {
        let page = client
            .list_units(pb::ListUnitsRequest { tier: 3, page_size: 50, page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.units.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids.len(), 228, "one tier-3 team per village/community");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ordered by id, no repeats");
    let by_town = client
        .list_units(pb::ListUnitsRequest { town: "金清镇".into(), tier: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_town.units.len(), 1);
}

#[tokio::test]
async fn health_and_reflection_serve_generic_tools() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest { service: "lastmile.v1.Dispatch".into() })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"lastmile.v1.Dispatch".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    // The older protocol too (grpcurl before 1.8 and GUI clients speak only v1alpha).
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("lastmile.v1.Dispatch".into())),
        };
        let mut responses =
            reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected v1alpha reflection answer {response:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    let mut client = server.client().await;
    client.ping(pb::PingRequest {}).await.unwrap();
}
