//! Who may do what, over real gRPC: every RPC of both services called with
//! every role's token, with no token, with an unknown token, and by a
//! terminal for another unit; health stays open; the per-token rate limit
//! answers RESOURCE_EXHAUSTED; a server with auth off refuses a non-loopback
//! address.

use lastmile_server::auth::{Operation, token_sha256_hex};
use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, config_on_disk, paging_units};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const DESK: &str = "desk-secret";
const UPSTREAM: &str = "upstream-secret";
const TERMINAL: &str = "t3a-secret";
const ADMIN: &str = "admin-secret";
/// The unit the terminal token speaks for (in `paging_units()`).
const OWN_UNIT: &str = "T3-a";
const OTHER_UNIT: &str = "T3-b";

fn auth_section(extra: &str) -> String {
    let token = |name: &str, role: &str, secret: &str, more: &str| {
        format!(
            "\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n{more}",
            token_sha256_hex(secret)
        )
    };
    format!(
        "\n[auth]\nenabled = true\ndefault_rate_per_s = 10000.0\ndefault_burst = 10000\n{}{}{}{}{extra}",
        token("desk", "dispatcher", DESK, ""),
        token("upstream", "integration", UPSTREAM, ""),
        token("t3a", "terminal", TERMINAL, &format!("unit_id = \"{OWN_UNIT}\"\n")),
        token("admin", "admin", ADMIN, ""),
    )
}

fn with<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Calls `op` once as `token` (for a terminal operation, on behalf of
/// `unit`) and returns the answer's status (OK when it succeeded).
async fn call(channel: &Channel, op: Operation, token: Option<&str>, unit: &str) -> Status {
    use pb::dispatch_client::DispatchClient;
    use pb::unit_terminal_client::UnitTerminalClient;
    let mut d = DispatchClient::new(channel.clone());
    let mut t = UnitTerminalClient::new(channel.clone());
    let unit = unit.to_string();
    fn status<T>(r: Result<T, Status>) -> Status {
        r.err().unwrap_or_else(|| Status::ok(""))
    }
    match op {
        Operation::ReportIncident => status(d.report_incident(with(pb::ReportIncidentRequest::default(), token)).await),
        Operation::GetIncident => status(d.get_incident(with(pb::GetIncidentRequest::default(), token)).await),
        Operation::ListIncidents => status(d.list_incidents(with(pb::ListIncidentsRequest::default(), token)).await),
        Operation::CloseIncident => status(d.close_incident(with(pb::CloseIncidentRequest::default(), token)).await),
        Operation::PreviewDispatch => {
            status(d.preview_dispatch(with(pb::PreviewDispatchRequest::default(), token)).await)
        }
        Operation::ListUnits => status(d.list_units(with(pb::ListUnitsRequest::default(), token)).await),
        Operation::GetUnit => status(d.get_unit(with(pb::GetUnitRequest::default(), token)).await),
        Operation::UpsertUnit => status(d.upsert_unit(with(pb::UpsertUnitRequest::default(), token)).await),
        Operation::SetUnitStatus => status(d.set_unit_status(with(pb::SetUnitStatusRequest::default(), token)).await),
        Operation::Ping => status(d.ping(with(pb::PingRequest {}, token)).await),
        Operation::WatchEvents => status(d.watch_events(with(pb::WatchEventsRequest::default(), token)).await),
        Operation::AssignUnit => status(d.assign_unit(with(pb::AssignUnitRequest::default(), token)).await),
        Operation::ReleaseUnit => status(d.release_unit(with(pb::ReleaseUnitRequest::default(), token)).await),
        Operation::GetIncidentTimeline => {
            status(d.get_incident_timeline(with(pb::GetIncidentTimelineRequest::default(), token)).await)
        }
        Operation::ConfirmArrival => status(d.confirm_arrival(with(pb::ConfirmArrivalRequest::default(), token)).await),
        Operation::Subscribe => status(t.subscribe(with(pb::SubscribeRequest { unit_id: unit }, token)).await),
        Operation::Acknowledge => status(
            t.acknowledge(with(
                pb::AcknowledgeRequest {
                    unit_id: unit,
                    incident_id: "inc-none".into(),
                    accept: true,
                    reason: "".into(),
                },
                token,
            ))
            .await,
        ),
        Operation::ReportStatus => status(
            t.report_status(with(
                pb::ReportStatusRequest {
                    unit_id: unit,
                    status: pb::UnitStatus::Available as i32,
                    ..Default::default()
                },
                token,
            ))
            .await,
        ),
        Operation::ReportPosition => {
            let report = pb::PositionReport {
                unit_id: unit,
                position: Some(pb::LatLng { lat: 28.58, lng: 121.37 }),
                ..Default::default()
            };
            status(t.report_position(with(tokio_stream::iter(vec![report]), token)).await)
        }
        // HTTP-only operations (webhook dead letters, reports) have no gRPC call.
        Operation::ReadDeadLetters
        | Operation::ReplayDeadLetters
        | Operation::ReadComplianceReport
        | Operation::GetEtaStatus => Status::ok("not a gRPC operation"),
    }
}

fn is_grpc(op: Operation) -> bool {
    !matches!(
        op,
        Operation::ReadDeadLetters
            | Operation::ReplayDeadLetters
            | Operation::ReadComplianceReport
            | Operation::GetEtaStatus
    )
}

#[tokio::test]
async fn every_rpc_with_every_role_no_token_and_a_wrong_unit() {
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(""))).await;
    let channel = server.channel().await;
    let roles: [(&str, &str, &[Operation]); 4] = [
        (
            "dispatcher",
            DESK,
            &[
                Operation::ReportIncident,
                Operation::GetIncident,
                Operation::ListIncidents,
                Operation::CloseIncident,
                Operation::PreviewDispatch,
                Operation::ListUnits,
                Operation::GetUnit,
                Operation::SetUnitStatus,
                Operation::Ping,
                Operation::WatchEvents,
                Operation::AssignUnit,
                Operation::ReleaseUnit,
                Operation::GetIncidentTimeline,
                Operation::ConfirmArrival,
            ],
        ),
        (
            "integration",
            UPSTREAM,
            &[
                Operation::ReportIncident,
                Operation::GetIncident,
                Operation::ListIncidents,
                Operation::WatchEvents,
                Operation::Ping,
                Operation::GetIncidentTimeline,
            ],
        ),
        (
            "terminal",
            TERMINAL,
            &[
                Operation::Subscribe,
                Operation::Acknowledge,
                Operation::ReportStatus,
                Operation::ReportPosition,
                Operation::Ping,
            ],
        ),
        ("admin", ADMIN, &[Operation::UpsertUnit, Operation::GetUnit, Operation::ListUnits, Operation::Ping]),
    ];
    let mut checked = 0;
    for op in Operation::ALL.into_iter().filter(|op| is_grpc(*op)) {
        for (role, token, allowed) in &roles {
            let answer = call(&channel, op, Some(token), OWN_UNIT).await;
            if allowed.contains(&op) {
                assert!(
                    !matches!(answer.code(), Code::Unauthenticated | Code::PermissionDenied),
                    "{role} must be allowed {op:?}: {answer:?}"
                );
            } else {
                assert_eq!(answer.code(), Code::PermissionDenied, "{role} must be refused {op:?}: {answer:?}");
                assert!(answer.message().contains(role), "the refusal names the role: {answer:?}");
            }
            checked += 1;
        }
        let answer = call(&channel, op, None, OWN_UNIT).await;
        assert_eq!(answer.code(), Code::Unauthenticated, "no token, {op:?}: {answer:?}");
        let answer = call(&channel, op, Some("not-a-configured-token"), OWN_UNIT).await;
        assert_eq!(answer.code(), Code::Unauthenticated, "unknown token, {op:?}: {answer:?}");
        checked += 2;
    }
    // A terminal acting for another unit.
    for op in [Operation::Subscribe, Operation::Acknowledge, Operation::ReportStatus, Operation::ReportPosition] {
        let answer = call(&channel, op, Some(TERMINAL), OTHER_UNIT).await;
        assert_eq!(answer.code(), Code::PermissionDenied, "{op:?} for {OTHER_UNIT}: {answer:?}");
        assert!(answer.message().contains(OTHER_UNIT), "{answer:?}");
        checked += 1;
    }
    assert_eq!(checked, 19 * 6 + 4);

    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn a_token_over_its_rate_gets_resource_exhausted() {
    let limited = format!(
        "\n[[auth.tokens]]\nname = \"chatty\"\nrole = \"integration\"\ntoken_sha256 = \"{}\"\nrate_per_s = 0.001\nburst = 3\n",
        token_sha256_hex("chatty-secret")
    );
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(&limited))).await;
    let channel = server.channel().await;
    for i in 0..3 {
        let answer = call(&channel, Operation::Ping, Some("chatty-secret"), "").await;
        assert_eq!(answer.code(), Code::Ok, "call {i} within the burst: {answer:?}");
    }
    let answer = call(&channel, Operation::Ping, Some("chatty-secret"), "").await;
    assert_eq!(answer.code(), Code::ResourceExhausted, "{answer:?}");
    assert!(answer.message().contains("chatty"), "{answer:?}");
    // Other tokens have their own bucket.
    assert_eq!(call(&channel, Operation::Ping, Some(DESK), "").await.code(), Code::Ok);
}

#[tokio::test]
async fn auth_off_is_refused_on_a_non_loopback_address() {
    let config = lastmile_server::LastmileConfig::embedded().unwrap();
    let err = config.check_exposure(&[("server.listen", "0.0.0.0:50051".parse().unwrap())]).unwrap_err();
    assert!(err.to_string().contains("auth.enabled"), "{err}");
    assert!(config.check_exposure(&[("server.listen", "127.0.0.1:50051".parse().unwrap())]).is_ok());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let dispatcher = std::sync::Arc::new(lastmile_server::build_dispatcher(&config).unwrap());
    let err = lastmile_server::run(listener, std::sync::Arc::new(config), dispatcher, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[tokio::test]
async fn the_http_gateway_holds_callers_to_the_same_table() {
    use lastmile_suite::http::http;
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(""))).await;
    let addr = server.http_addr;
    let bearer = |token: &str| format!("Bearer {token}");
    let json = [("content-type", "application/json")];
    let body = br#"{"external_id":"http-auth-1","location":{"lat":28.58,"lng":121.37},"kind":"FIRE","severity":2}"#;

    // No token: 401 with the scheme to use.
    let answer = http(addr, "POST", "/v1/incidents", &json, Some(body)).await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert_eq!(answer.json()["error"]["code"], "UNAUTHENTICATED");
    // A stranger's body is not even read: 401, not 400 for the malformed JSON.
    let answer = http(addr, "POST", "/v1/incidents", &json, Some(b"{not json")).await;
    assert_eq!(answer.status, 401, "{}", answer.text());

    // The upstream system reports...
    let auth = bearer(UPSTREAM);
    let answer = http(addr, "POST", "/v1/incidents", &[json[0], ("authorization", auth.as_str())], Some(body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    let id = answer.json()["incident"]["id"].as_str().unwrap().to_string();
    // ...but may not close.
    let close = format!("/v1/incidents/{id}/close");
    let answer = http(addr, "POST", &close, &[("authorization", auth.as_str())], None).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "PERMISSION_DENIED");
    // A terminal token may not read incidents.
    let terminal = bearer(TERMINAL);
    let answer = http(addr, "GET", &format!("/v1/incidents/{id}"), &[("authorization", terminal.as_str())], None).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    // The dispatcher may close.
    let desk = bearer(DESK);
    let answer = http(addr, "POST", &close, &[("authorization", desk.as_str())], None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The live feed needs a token too.
    let answer = http(addr, "GET", "/v1/events?after_seq=1", &[], None).await;
    assert_eq!(answer.status, 401, "{}", answer.text());

    // Health, metrics and the document stay open.
    for open in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(http(addr, "GET", open, &[], None).await.status, 200, "{open}");
    }
}

#[tokio::test]
async fn an_http_caller_over_its_rate_gets_429_with_retry_after() {
    use lastmile_suite::http::http;
    let limited = format!(
        "\n[[auth.tokens]]\nname = \"chatty\"\nrole = \"integration\"\ntoken_sha256 = \"{}\"\nrate_per_s = 0.001\nburst = 2\n",
        token_sha256_hex("chatty-secret")
    );
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(&limited))).await;
    let auth = [("authorization", "Bearer chatty-secret")];
    for _ in 0..2 {
        assert_eq!(http(server.http_addr, "GET", "/v1/incidents", &auth, None).await.status, 200);
    }
    let answer = http(server.http_addr, "GET", "/v1/incidents", &auth, None).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.json()["error"]["code"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn a_position_stream_is_held_to_its_tokens_rate_message_by_message() {
    let limited = format!(
        "\n[[auth.tokens]]\nname = \"t3b\"\nrole = \"terminal\"\nunit_id = \"T3-b\"\ntoken_sha256 = \"{}\"\nrate_per_s = 0.001\nburst = 3\n",
        token_sha256_hex("t3b-secret")
    );
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(&limited))).await;
    let report = |i: u32| pb::PositionReport {
        unit_id: "T3-b".into(),
        position: Some(pb::LatLng { lat: 28.58 + f64::from(i) * 1e-4, lng: 121.37 }),
        ..Default::default()
    };
    let mut terminal = pb::unit_terminal_client::UnitTerminalClient::new(server.channel().await);
    // Burst 3: the stream's opening takes one, two reports fit, the third is over.
    let answer = terminal.report_position(with(tokio_stream::iter((0..5).map(report)), Some("t3b-secret"))).await;
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("t3b"), "{status:?}");
}

/// The management's role reads the reports and the ETA status, and nothing
/// else; the upstream system may read neither.
#[tokio::test]
async fn the_report_role_reads_reports_and_the_eta_only() {
    use lastmile_suite::http::http;
    const MANAGEMENT: &str = "management-secret";
    let report_token = format!(
        "\n[[auth.tokens]]\nname = \"bureau\"\nrole = \"report\"\ntoken_sha256 = \"{}\"\n",
        token_sha256_hex(MANAGEMENT)
    );
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &auth_section(&report_token))).await;
    let addr = server.http_addr;
    let bearer = |secret: &str| format!("Bearer {secret}");
    let (management, upstream, desk) = (bearer(MANAGEMENT), bearer(UPSTREAM), bearer(DESK));
    let report = "/v1/reports/compliance?month=2026-11&format=csv";
    for (who, token, path, status) in [
        ("report", management.as_str(), report, 200),
        ("report", management.as_str(), "/v1/eta", 200),
        ("report", management.as_str(), "/v1/incidents", 403),
        ("report", management.as_str(), "/v1/units", 403),
        ("integration", upstream.as_str(), report, 403),
        ("integration", upstream.as_str(), "/v1/eta", 403),
        ("dispatcher", desk.as_str(), report, 200),
        ("dispatcher", desk.as_str(), "/v1/eta", 200),
    ] {
        let answer = http(addr, "GET", path, &[("authorization", token)], None).await;
        assert_eq!(answer.status, status, "{who} GET {path}: {}", answer.text());
    }
    let anonymous = http(addr, "GET", report, &[], None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    server.shutdown().await;
}
