//! Every kind of bad input gets INVALID_ARGUMENT (or NOT_FOUND for unknown
//! ids) naming what was wrong, nothing is stored, and the server keeps serving.

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, report};
use tonic::Code;

fn with_location(lat: f64, lng: f64) -> pb::ReportIncidentRequest {
    let mut r = report("bad-location");
    r.location = Some(pb::LatLng { lat, lng });
    r
}

#[tokio::test]
async fn bad_reports_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, pb::ReportIncidentRequest, &str)> = vec![
        ("NaN lat", with_location(f64::NAN, 121.37), "location.lat"),
        ("infinite lng", with_location(28.58, f64::INFINITY), "location.lng"),
        ("-inf lat", with_location(f64::NEG_INFINITY, 121.37), "location.lat"),
        ("lat > 90", with_location(90.5, 121.37), "location.lat"),
        ("lng < -180", with_location(28.58, -180.5), "location.lng"),
        ("missing location", pb::ReportIncidentRequest { location: None, ..report("x") }, "location"),
        ("severity 0", pb::ReportIncidentRequest { severity: 0, ..report("x") }, "severity"),
        ("severity 5", pb::ReportIncidentRequest { severity: 5, ..report("x") }, "severity"),
        ("unspecified kind", pb::ReportIncidentRequest { kind: 0, ..report("x") }, "kind"),
        ("unknown kind", pb::ReportIncidentRequest { kind: 42, ..report("x") }, "kind"),
        ("empty external_id", report(""), "external_id"),
        ("over-long external_id", report(&long(129)), "external_id"),
        ("over-long address", pb::ReportIncidentRequest { address: long(513), ..report("x") }, "address"),
        ("over-long description", pb::ReportIncidentRequest { description: long(4097), ..report("x") }, "description"),
        ("over-long grid_id", pb::ReportIncidentRequest { grid_id: long(129), ..report("x") }, "grid_id"),
        ("another cell's grid_id", pb::ReportIncidentRequest { grid_id: "LQ-G0001".into(), ..report("x") }, "grid_id"),
    ];
    for (what, request, field) in cases {
        let err = client.report_incident(request).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{what}: message {:?} should name {field}",
            err.message()
        );
    }
    // Nothing was stored or reserved, and the server is still serving.
    assert!(
        client.list_incidents(pb::ListIncidentsRequest::default()).await.unwrap().into_inner().incidents.is_empty()
    );
    client.report_incident(report("good")).await.unwrap();
    server.dispatcher.check_invariants().unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_decoding() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // 100 KiB: over server.max_decoding_message_bytes (64 KiB): RESOURCE_EXHAUSTED, gRPC's code for a size limit.
    let huge = pb::ReportIncidentRequest { description: "x".repeat(100 * 1024), ..report("huge") };
    let err = client.report_incident(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("too large"), "{}", err.message());
    client.ping(pb::PingRequest {}).await.unwrap();
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_bad_lookups_are_named() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for id in ["inc-999999", "garbage", "inc-12"] {
        let err = client.get_incident(pb::GetIncidentRequest { id: id.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{id}");
        assert!(err.message().contains(id));
        let err =
            client.close_incident(pb::CloseIncidentRequest { id: id.into(), reason: String::new() }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{id}");
    }
    let err = client.get_incident(pb::GetIncidentRequest { id: String::new() }).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "id: required"));
    let err = client.get_unit(pb::GetUnitRequest { id: "T99-nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .set_unit_status(pb::SetUnitStatusRequest {
            id: "T99-nope".into(),
            status: pb::UnitStatus::Available as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .set_unit_status(pb::SetUnitStatusRequest { id: "T10-01".into(), status: 0, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "status: required"));
    let err = client
        .set_unit_status(pb::SetUnitStatusRequest {
            id: "T10-01".into(),
            status: pb::UnitStatus::Paged as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("AVAILABLE"), "{}", err.message());
}

#[tokio::test]
async fn list_and_preview_inputs_are_checked() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let err = client.list_units(pb::ListUnitsRequest { page_size: 5000, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_size:"), "{}", err.message());
    let err = client.list_units(pb::ListUnitsRequest { tier: 2, ..Default::default() }).await.unwrap_err();
    assert!(err.message().starts_with("tier:"), "{}", err.message());
    let err = client.list_units(pb::ListUnitsRequest { status: 77, ..Default::default() }).await.unwrap_err();
    assert!(err.message().starts_with("status:"), "{}", err.message());
    let err = client
        .list_incidents(pb::ListIncidentsRequest { page_token: "not-a-token".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_token:"), "{}", err.message());
    let err = client
        .preview_dispatch(pb::PreviewDispatchRequest {
            location: Some(pb::LatLng { lat: f64::NAN, lng: 0.0 }),
            kind: 1,
            severity: 1,
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("location.lat:"), "{}", err.message());
}

#[tokio::test]
async fn bad_units_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let good = pb::Unit {
        id: "T3-NEW".into(),
        name: "新突击队".into(),
        tier: 3,
        home: Some(pb::LatLng { lat: 28.5, lng: 121.4 }),
        ..Default::default()
    };
    let cases: Vec<(&str, pb::Unit, &str)> = vec![
        ("empty id", pb::Unit { id: String::new(), ..good.clone() }, "unit.id"),
        ("bad id chars", pb::Unit { id: "T3 NEW/1".into(), ..good.clone() }, "unit.id"),
        ("no tier", pb::Unit { tier: 0, ..good.clone() }, "unit.tier"),
        ("tier 2", pb::Unit { tier: 2, ..good.clone() }, "unit.tier"),
        ("no home", pb::Unit { home: None, ..good.clone() }, "unit.home"),
        (
            "NaN position",
            pb::Unit { position: Some(pb::LatLng { lat: 28.5, lng: f64::NAN }), ..good.clone() },
            "unit.position.lng",
        ),
        ("status PAGED", pb::Unit { status: pb::UnitStatus::Paged as i32, ..good.clone() }, "unit.status"),
        ("too many capabilities", pb::Unit { capabilities: vec!["x".into(); 33], ..good.clone() }, "unit.capabilities"),
    ];
    for (what, unit, field) in cases {
        let err = client.upsert_unit(pb::UpsertUnitRequest { unit: Some(unit) }).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "{what}: {:?}", err.message());
    }
    let err = client.upsert_unit(pb::UpsertUnitRequest { unit: None }).await.unwrap_err();
    assert_eq!(err.message(), "unit: required");
    assert!(client.upsert_unit(pb::UpsertUnitRequest { unit: Some(good) }).await.unwrap().into_inner().created);
}

/// A full page of long incidents would exceed the encoding limit: it is cut
/// short with a next-page token (the same over HTTP), and paging on returns
/// every incident once.
#[tokio::test]
async fn a_maximal_page_of_long_incidents_comes_in_pages_under_the_message_limit() {
    let server = TestServer::start_edited(|c| c.server.max_encoding_message_bytes = 65_536).await;
    let mut client = server.client().await;
    let mut reported = Vec::new();
    for i in 0..60 {
        let mut request = report(&format!("long-{i}"));
        request.address = "地".repeat(170); // 510 bytes
        request.description = "x".repeat(4000);
        reported.push(client.report_incident(request).await.unwrap().into_inner().incident.unwrap().id);
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let request = pb::ListIncidentsRequest { page_size: 1000, page_token: token.clone(), ..Default::default() };
        let page = client.list_incidents(request).await.unwrap().into_inner();
        assert!(!page.incidents.is_empty());
        let path = format!("/v1/incidents?page_size=1000&page_token={token}");
        let over_http = lastmile_suite::http::get(server.http_addr, &path).await.json();
        let http_ids: Vec<&str> =
            over_http["incidents"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(http_ids, page.incidents.iter().map(|i| i.id.as_str()).collect::<Vec<_>>());
        assert_eq!(over_http["next_page_token"], page.next_page_token.as_str());
        pages += 1;
        listed.extend(page.incidents.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, reported);
    assert!(pages > 1, "60 incidents of ~5 KB do not fit in 64 KiB");
}
