//! gRPC and HTTP are two adapters over one application layer: the same
//! operation gives the same result and the same error through both.
//!
//! One table of cases, every `Dispatch` operation with its successes and
//! refusals, is played twice from a fresh server: once entirely over gRPC,
//! once entirely over the JSON gateway. Each step's answer is compared: the
//! same JSON (the gRPC answer rendered by the gateway's own JSON types,
//! timestamps masked since the two runs happen at different times), or the
//! same error code and the same message word for word, at the HTTP status
//! the error table gives that code.

use lastmile_proto::v1::dispatch_client::DispatchClient;
use lastmile_server::error::ErrorCode;
use lastmile_server::json;
use lastmile_suite::TestServer;
use lastmile_suite::http::http;
use lastmile_suite::v1 as pb;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// What one step asks for; requests are written once, as the gateway's JSON.
#[derive(Clone, Debug)]
enum Op {
    Ping,
    Report(Value),
    Get(&'static str),
    List(Value),
    Close(&'static str, Value),
    Assign(&'static str, Value),
    Preview(Value),
    ListUnits(Value),
    GetUnit(&'static str),
    Upsert(&'static str, Value),
    SetStatus(&'static str, Value),
    Release(&'static str, Value),
    Timeline(&'static str),
    Confirm(&'static str, Value),
}

/// An answer: the JSON body, or the error's code name and message.
type Outcome = Result<Value, (String, String)>;

fn fire(external_id: &str) -> Value {
    json!({"external_id": external_id, "location": {"lat": 28.58, "lng": 121.37}, "kind": "FIRE", "severity": 3})
}

fn unit(tier: &str) -> Value {
    json!({"name": "对比测试消防站", "tier": tier, "home": {"lat": 28.581, "lng": 121.371}, "town": "路桥街道", "crew": 4})
}

/// One case: what, the operation, the code expected (None = success).
type Case = (&'static str, Op, Option<ErrorCode>);

/// The table, in the order the steps run.
fn cases() -> Vec<Case> {
    [incident_cases(), unit_cases(), closing_cases()].concat()
}

/// Reports, reads and previews.
fn incident_cases() -> Vec<Case> {
    use ErrorCode::*;
    vec![
        ("ping", Op::Ping, None),
        ("report", Op::Report(fire("parity-1")), None),
        ("report again: the stored incident", Op::Report(fire("parity-1")), None),
        (
            "report off the globe",
            Op::Report(
                json!({"external_id": "p-2", "location": {"lat": 91, "lng": 121.37}, "kind": "FIRE", "severity": 1}),
            ),
            Some(InvalidArgument),
        ),
        (
            "report of severity 9",
            Op::Report(
                json!({"external_id": "p-3", "location": {"lat": 28.5, "lng": 121.4}, "kind": "FLOOD", "severity": 9}),
            ),
            Some(InvalidArgument),
        ),
        (
            "report without a kind",
            Op::Report(json!({"external_id": "p-4", "location": {"lat": 28.5, "lng": 121.4}, "severity": 1})),
            Some(InvalidArgument),
        ),
        ("report without an external id", Op::Report(json!({"kind": "FIRE", "severity": 1})), Some(InvalidArgument)),
        (
            "report claiming the wrong grid cell",
            Op::Report(
                json!({"external_id": "p-5", "location": {"lat": 28.58, "lng": 121.37}, "kind": "FIRE", "severity": 1, "grid_id": "LQ-G0001"}),
            ),
            Some(InvalidArgument),
        ),
        ("get", Op::Get("inc-000001"), None),
        ("get unknown", Op::Get("inc-999999"), Some(NotFound)),
        ("list open", Op::List(json!({"status": "OPEN", "page_size": 1})), None),
        ("list too large a page", Op::List(json!({"page_size": 5000})), Some(InvalidArgument)),
        ("list with a foreign token", Op::List(json!({"page_token": "abc"})), Some(InvalidArgument)),
        (
            "preview",
            Op::Preview(json!({"location": {"lat": 28.53, "lng": 121.5}, "kind": "FLOOD", "severity": 2})),
            None,
        ),
        ("preview without a location", Op::Preview(json!({"kind": "FLOOD", "severity": 2})), Some(InvalidArgument)),
    ]
}

/// The fleet and the dispatcher's overrides.
fn unit_cases() -> Vec<Case> {
    use ErrorCode::*;
    vec![
        ("list units of tier 10", Op::ListUnits(json!({"tier": "TIER_10", "page_size": 2})), None),
        ("list units by the tier's minutes", Op::ListUnits(json!({"tier": "5", "page_size": 1})), None),
        ("get unit", Op::GetUnit("T10-01"), None),
        ("get unknown unit", Op::GetUnit("T10-NOPE"), Some(NotFound)),
        ("upsert a new unit", Op::Upsert("T10-PARITY", unit("TIER_10")), None),
        ("upsert it again: replaced", Op::Upsert("T10-PARITY", unit("TIER_10_MIN")), None),
        (
            "upsert without a tier",
            Op::Upsert("T10-NOTIER", json!({"home": {"lat": 28.5, "lng": 121.4}})),
            Some(InvalidArgument),
        ),
        ("upsert a bad id", Op::Upsert("bad id!", unit("TIER_10")), Some(InvalidArgument)),
        ("status out of service", Op::SetStatus("T10-PARITY", json!({"status": "OUT_OF_SERVICE"})), None),
        ("status without a status", Op::SetStatus("T10-PARITY", json!({})), Some(InvalidArgument)),
        (
            "status guarded by another incident",
            Op::SetStatus("T10-PARITY", json!({"status": "AVAILABLE", "incident_id": "inc-000001"})),
            Some(FailedPrecondition),
        ),
        ("status of an unknown unit", Op::SetStatus("T10-NOPE", json!({"status": "AVAILABLE"})), Some(NotFound)),
        (
            "assign an out-of-service unit",
            Op::Assign("inc-000001", json!({"unit_id": "T10-PARITY", "tier": "TIER_10"})),
            Some(FailedPrecondition),
        ),
        ("status available", Op::SetStatus("T10-PARITY", json!({"status": "AVAILABLE"})), None),
        ("assign without a tier", Op::Assign("inc-000001", json!({"unit_id": "T10-PARITY"})), Some(InvalidArgument)),
        ("assign", Op::Assign("inc-000001", json!({"unit_id": "T10-PARITY", "tier": 10})), None),
        (
            "assign to an unknown incident",
            Op::Assign("inc-999999", json!({"unit_id": "T10-02", "tier": "TIER_10"})),
            Some(NotFound),
        ),
        ("release", Op::Release("T10-PARITY", json!({"reason": "not needed"})), None),
        ("release a free unit", Op::Release("T10-PARITY", json!({})), Some(FailedPrecondition)),
    ]
}

/// The timeline, arrivals and closing.
fn closing_cases() -> Vec<Case> {
    use ErrorCode::*;
    vec![
        ("timeline", Op::Timeline("inc-000001"), None),
        ("timeline of an unknown incident", Op::Timeline("inc-999999"), Some(NotFound)),
        (
            "confirm an arrival nobody reported",
            Op::Confirm("inc-000001", json!({"unit_id": "T10-01"})),
            Some(FailedPrecondition),
        ),
        ("confirm without a unit", Op::Confirm("inc-000001", json!({})), Some(InvalidArgument)),
        (
            "close with too long a reason",
            Op::Close("inc-000001", json!({"reason": "x".repeat(5000)})),
            Some(InvalidArgument),
        ),
        ("close", Op::Close("inc-000001", json!({"reason": "fire out"})), None),
        ("close again: unchanged", Op::Close("inc-000001", json!({})), None),
        ("close unknown", Op::Close("inc-999999", json!({})), Some(NotFound)),
        ("get a closed incident", Op::Get("inc-000001"), None),
        ("timeline of a closed incident", Op::Timeline("inc-000001"), None),
        ("list closed", Op::List(json!({"status": "CLOSED"})), None),
        ("list by a report time", Op::List(json!({"reported_from": "2020-01-01T00:00:00Z"})), None),
        ("list from far ahead: nothing yet", Op::List(json!({"reported_from": "2786-01-01T00:00:00Z"})), None),
    ]
}

fn body<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).expect("a case's body is the gateway's JSON")
}

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap()
}

/// One step over gRPC, its answer rendered as the gateway renders it.
async fn over_grpc(client: &mut DispatchClient<Channel>, op: &Op) -> Outcome {
    let answer = match op {
        Op::Ping => client.ping(pb::PingRequest {}).await.map(|_| json!({})),
        Op::Report(b) => {
            let request = pb::ReportIncidentRequest::from(body::<json::ReportIncidentBody>(b));
            client.report_incident(request).await.map(|r| to_json(json::ReportIncidentResponse::from(r.into_inner())))
        }
        Op::Get(id) => client
            .get_incident(pb::GetIncidentRequest { id: id.to_string() })
            .await
            .map(|r| to_json(json::Incident::from(r.into_inner()))),
        Op::List(q) => {
            let request = pb::ListIncidentsRequest::from(body::<json::ListIncidentsQuery>(q));
            client.list_incidents(request).await.map(|r| to_json(json::ListIncidentsResponse::from(r.into_inner())))
        }
        Op::Close(id, b) => {
            let request =
                pb::CloseIncidentRequest { id: id.to_string(), reason: body::<json::CloseIncidentBody>(b).reason };
            client.close_incident(request).await.map(|r| to_json(json::CloseIncidentResponse::from(r.into_inner())))
        }
        Op::Assign(id, b) => {
            let b: json::AssignUnitBody = body(b);
            let request = pb::AssignUnitRequest {
                incident_id: id.to_string(),
                unit_id: b.unit_id,
                tier: b.tier.map(json::Named::number).unwrap_or(0),
            };
            client.assign_unit(request).await.map(|r| to_json(json::Incident::from(r.into_inner())))
        }
        Op::Preview(b) => {
            let request = pb::PreviewDispatchRequest::from(body::<json::PreviewDispatchBody>(b));
            client.preview_dispatch(request).await.map(|r| to_json(json::PreviewDispatchResponse::from(r.into_inner())))
        }
        Op::ListUnits(q) => {
            let request = pb::ListUnitsRequest::from(body::<json::ListUnitsQuery>(q));
            client.list_units(request).await.map(|r| to_json(json::ListUnitsResponse::from(r.into_inner())))
        }
        Op::GetUnit(id) => client
            .get_unit(pb::GetUnitRequest { id: id.to_string() })
            .await
            .map(|r| to_json(json::Unit::from(r.into_inner()))),
        Op::Upsert(id, b) => {
            let request = pb::UpsertUnitRequest { unit: Some(body::<json::UnitBody>(b).into_pb(id.to_string())) };
            client.upsert_unit(request).await.map(|r| {
                let r = r.into_inner();
                to_json(json::UpsertUnitResponse { unit: json::Unit::from(r.unit.unwrap()), created: r.created })
            })
        }
        Op::SetStatus(id, b) => {
            let b: json::SetUnitStatusBody = body(b);
            let request = pb::SetUnitStatusRequest {
                id: id.to_string(),
                status: b.status.map(json::Named::number).unwrap_or(0),
                incident_id: b.incident_id,
            };
            client
                .set_unit_status(request)
                .await
                .map(|r| to_json(json::UnitResponse { unit: json::Unit::from(r.into_inner().unit.unwrap()) }))
        }
        Op::Release(id, b) => {
            let request =
                pb::ReleaseUnitRequest { unit_id: id.to_string(), reason: body::<json::ReleaseUnitBody>(b).reason };
            client
                .release_unit(request)
                .await
                .map(|r| to_json(json::UnitResponse { unit: json::Unit::from(r.into_inner().unit.unwrap()) }))
        }
        Op::Timeline(id) => client
            .get_incident_timeline(pb::GetIncidentTimelineRequest { incident_id: id.to_string() })
            .await
            .map(|r| to_json(json::IncidentTimeline::from(r.into_inner()))),
        Op::Confirm(id, b) => {
            let b: json::ConfirmArrivalBody = body(b);
            let request = pb::ConfirmArrivalRequest { incident_id: id.to_string(), unit_id: b.unit_id };
            client.confirm_arrival(request).await.map(|r| to_json(json::Incident::from(r.into_inner())))
        }
    };
    answer.map_err(|status| {
        let code = ErrorCode::from_grpc_code(status.code() as i32).expect("an error code");
        (code.name().to_string(), status.message().to_string())
    })
}

fn query_string(q: &Value) -> String {
    let text = |v: &Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    let pairs: Vec<String> = q.as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
    if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) }
}

/// One step over the JSON gateway; an error's HTTP status must be its
/// code's row in the table.
async fn over_http(server: &TestServer, op: &Op) -> Outcome {
    let (method, path, sent) = match op {
        Op::Ping => ("GET", "/v1/ping".to_string(), None),
        Op::Report(b) => ("POST", "/v1/incidents".to_string(), Some(b)),
        Op::Get(id) => ("GET", format!("/v1/incidents/{id}"), None),
        Op::List(q) => ("GET", format!("/v1/incidents{}", query_string(q)), None),
        Op::Close(id, b) => ("POST", format!("/v1/incidents/{id}/close"), Some(b)),
        Op::Assign(id, b) => ("POST", format!("/v1/incidents/{id}/assign"), Some(b)),
        Op::Preview(b) => ("POST", "/v1/dispatch/preview".to_string(), Some(b)),
        Op::ListUnits(q) => ("GET", format!("/v1/units{}", query_string(q)), None),
        Op::GetUnit(id) => ("GET", format!("/v1/units/{id}"), None),
        Op::Upsert(id, b) => ("PUT", format!("/v1/units/{}", id.replace(' ', "%20")), Some(b)),
        Op::SetStatus(id, b) => ("POST", format!("/v1/units/{id}/status"), Some(b)),
        Op::Release(id, b) => ("POST", format!("/v1/units/{id}/release"), Some(b)),
        Op::Timeline(id) => ("GET", format!("/v1/incidents/{id}/timeline"), None),
        Op::Confirm(id, b) => ("POST", format!("/v1/incidents/{id}/confirm-arrival"), Some(b)),
    };
    let bytes = sent.map(|b| serde_json::to_vec(b).unwrap());
    let headers: &[(&str, &str)] = if bytes.is_some() { &[("content-type", "application/json")] } else { &[] };
    let response = http(server.http_addr, method, &path, headers, bytes.as_deref()).await;
    let answer = response.json();
    if (200..300).contains(&response.status) {
        return Ok(answer);
    }
    let code = answer["error"]["code"].as_str().unwrap_or_else(|| panic!("{path}: {answer}")).to_string();
    let row = ErrorCode::ALL.into_iter().find(|c| c.name() == code).expect("a known code");
    assert_eq!(response.status, row.http_status(), "{method} {path}: {code} at the wrong status");
    Err((code, answer["error"]["message"].as_str().unwrap().to_string()))
}

/// Timestamps differ between the two runs: masked.
fn masked(value: Value) -> Value {
    match value {
        Value::String(s) if s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' => {
            Value::String("<time>".into())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(masked).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, masked(v))).collect()),
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_the_same_over_grpc_and_http() {
    let grpc_server = TestServer::start().await;
    let http_server = TestServer::start().await;
    let mut client = grpc_server.client().await;
    for (what, op, expected) in cases() {
        let over_grpc = over_grpc(&mut client, &op).await.map(masked);
        let over_http = over_http(&http_server, &op).await.map(masked);
        assert_eq!(over_grpc, over_http, "{what}: {op:?}");
        match (expected, &over_grpc) {
            (None, Ok(_)) => {}
            (Some(code), Err((name, message))) => {
                assert_eq!(name, code.name(), "{what}: {message}");
                assert!(!message.is_empty(), "{what}");
            }
            (expected, answer) => panic!("{what}: expected {expected:?}, got {answer:?}"),
        }
    }
    // Both servers went through the same changes.
    assert_eq!(grpc_server.dispatcher.incident_count(), http_server.dispatcher.incident_count());
    grpc_server.dispatcher.check_invariants().unwrap();
    http_server.dispatcher.check_invariants().unwrap();
}

/// Some answers worth reading on their own, beyond "both the same".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_compared_are_the_real_ones() {
    let server = TestServer::start().await;
    let duplicate = over_http(&server, &Op::Report(fire("parity-x"))).await.unwrap();
    assert_eq!(duplicate["duplicate"], false);
    let again = over_http(&server, &Op::Report(fire("parity-x"))).await.unwrap();
    assert_eq!(again["duplicate"], true);
    let (code, message) = over_http(&server, &Op::Get("inc-999999")).await.unwrap_err();
    assert_eq!((code.as_str(), message.as_str()), ("NOT_FOUND", "incident \"inc-999999\" not found"));
    let created = over_http(&server, &Op::Upsert("T10-PARITY", unit("3"))).await.unwrap();
    assert_eq!((created["created"].clone(), created["unit"]["tier"].clone()), (json!(true), json!("TIER_3")));
    let (code, message) = over_http(&server, &Op::SetStatus("T10-PARITY", json!({}))).await.unwrap_err();
    assert_eq!((code.as_str(), message.as_str()), ("INVALID_ARGUMENT", "status: required"));
}

/// The feed is one watcher policy under both: the same events after the
/// same changes, and the same refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_is_the_same_over_grpc_and_sse() {
    use lastmile_suite::http::Sse;
    use tokio_stream::StreamExt;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    over_grpc(&mut client, &Op::Report(fire("feed-1"))).await.unwrap();
    let watch = |after_seq: u64, incident_id: &str| pb::WatchEventsRequest {
        after_seq,
        incident_id: incident_id.to_string(),
        unit_id: String::new(),
    };
    let mut grpc_feed = client.watch_events(watch(1, "")).await.unwrap().into_inner();
    let mut sse = Sse::open(server.http_addr, "/v1/events?after_seq=1", &[]).await;
    for _ in 0..5 {
        let from_grpc = json::event(&grpc_feed.next().await.unwrap().unwrap());
        let from_sse = sse.next().await.unwrap().data;
        assert_eq!(from_grpc, from_sse);
    }
    let refusals = [(watch(1 << 40, ""), "/v1/events?after_seq=1099511627776"), (watch(0, &"x".repeat(200)), "")];
    for (request, path) in refusals {
        let status = client.watch_events(request.clone()).await.map(|_| ()).unwrap_err();
        let path =
            if path.is_empty() { format!("/v1/events?incident_id={}", request.incident_id) } else { path.into() };
        let refused = Sse::try_open(server.http_addr, &path, &[]).await.map(|_| ()).unwrap_err().json();
        let code = ErrorCode::from_grpc_code(status.code() as i32).unwrap();
        assert_eq!(refused["error"]["code"], code.name());
        assert_eq!(refused["error"]["message"], status.message());
    }
}
