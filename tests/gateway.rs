//! The JSON/HTTP gateway end to end, over real TCP with a minimal HTTP/1.1
//! client (no client library): every route round-trips, refusals carry the
//! JSON error body with the gRPC meaning (and the gRPC message, word for
//! word), the live feed streams as Server-Sent Events and resumes with
//! `Last-Event-ID`, and every response and error body is checked against
//! the served OpenAPI document's schemas by a small JSON-schema checker.

use std::net::SocketAddr;

use lastmile_server::http::error::code_names;
use lastmile_server::json::{JsonEnum, enum_names};
use lastmile_suite::http::{HttpResponse, Sse, SseEvent, get, http, post, post_raw};
use lastmile_suite::v1 as pb;
use lastmile_suite::{PATIENCE, ServedBinary, TestServer, eventually, report};
use serde_json::{Value, json};

// ------------------------------------------------------------ JSON schema

/// Checks `value` against `schema`, resolving `$ref`s in `doc`. The subset
/// `openapi.json` uses; any other keyword is an error, so the checker never
/// silently ignores part of the document.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    const KNOWN: [&str; 13] = [
        "$ref",
        "oneOf",
        "type",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "description",
        "format",
        "minimum",
        "maximum",
        "minLength",
    ];
    let schema = schema.as_object().ok_or_else(|| format!("{at}: schema is not an object"))?;
    if let Some(unknown) = schema.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("{at}: the checker does not know the keyword {unknown:?}"));
    }
    if let Some(reference) = schema.get("$ref") {
        let target = resolve(doc, reference.as_str().unwrap());
        return check(doc, target, value, at);
    }
    if let Some(options) = schema.get("oneOf") {
        let matching = options.as_array().unwrap().iter().filter(|s| check(doc, s, value, at).is_ok()).count();
        if matching != 1 {
            return Err(format!("{at}: {value} matches {matching} of oneOf {options}"));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            other => return Err(format!("{at}: bad type {other}")),
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(values) = schema.get("enum")
        && !values.as_array().unwrap().contains(value)
    {
        return Err(format!("{at}: {value} is not one of {values}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum"), value.as_f64())
        && n < min.as_f64().unwrap()
    {
        return Err(format!("{at}: {n} < minimum {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum"), value.as_f64())
        && n > max.as_f64().unwrap()
    {
        return Err(format!("{at}: {n} > maximum {max}"));
    }
    if let (Some(min), Some(s)) = (schema.get("minLength"), value.as_str())
        && (s.chars().count() as u64) < min.as_u64().unwrap()
    {
        return Err(format!("{at}: {value} is shorter than minLength {min}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: required field {name:?} missing"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check(doc, field_schema, field, &format!("{at}.{name}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: field {name:?} is not in the document"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {reference}"));
    doc.pointer(pointer).unwrap_or_else(|| panic!("$ref {reference} resolves to nothing"))
}

/// The document's schema for the JSON answer of `method` on the path
/// template `route` with `status` (else its `default`).
fn response_schema<'a>(doc: &'a Value, route: &str, method: &str, status: u16) -> &'a Value {
    let operation = &doc["paths"][route][method];
    assert!(operation.is_object(), "{method} {route} is not in the document");
    let responses = &operation["responses"];
    let mut response = responses.get(status.to_string()).or_else(|| responses.get("default")).unwrap_or_else(|| {
        panic!("{method} {route}: status {status} is not in the document");
    });
    if let Some(reference) = response.get("$ref") {
        response = resolve(doc, reference.as_str().unwrap());
    }
    &response["content"]["application/json"]["schema"]
}

/// The served document (what clients see), fetched once per server.
async fn openapi(addr: SocketAddr) -> Value {
    let response = get(addr, "/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

/// Asserts `response` has `status` and a body that matches the document.
fn conforms(doc: &Value, route: &str, method: &str, response: &HttpResponse, status: u16) -> Value {
    assert_eq!(response.status, status, "{method} {route}: {}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"), "{method} {route}");
    let body = response.json();
    if let Err(problem) = check(doc, response_schema(doc, route, method, status), &body, "$") {
        panic!("{method} {route} {status}: body does not match the document: {problem}\n{body:#}");
    }
    body
}

/// Asserts an error response: status, code, the document's Error schema,
/// and a message containing `names`. Returns the message.
fn refused(
    doc: &Value,
    route: &str,
    method: &str,
    response: &HttpResponse,
    status: u16,
    code: &str,
    names: &str,
) -> String {
    let body = conforms(doc, route, method, response, status);
    assert_eq!(body["error"]["code"], code, "{method} {route}: {body}");
    let message = body["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(names), "{method} {route}: {message:?} should name {names:?}");
    message
}

fn report_json(external_id: &str) -> Value {
    json!({
        "external_id": external_id,
        "location": {"lat": 28.58, "lng": 121.37},
        "kind": "FIRE",
        "severity": 2,
        "address": "路桥街道 test",
        "description": "e2e test"
    })
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn report_get_list_close_round_trip_and_match_grpc() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;

    let health = get(addr, "/healthz").await;
    assert_eq!(conforms(&doc, "/healthz", "get", &health, 200), json!({"status": "SERVING"}));

    let reported = post(addr, "/v1/incidents", &report_json("http-0001")).await;
    let body = conforms(&doc, "/v1/incidents", "post", &reported, 201);
    assert_eq!(body["duplicate"], false);
    let incident = &body["incident"];
    let id = incident["id"].as_str().unwrap().to_string();
    assert_eq!(reported.header("location"), Some(format!("/v1/incidents/{id}").as_str()));
    assert_eq!(incident["external_id"], "http-0001");
    assert_eq!(incident["kind"], "FIRE");
    assert_eq!(incident["status"], "OPEN");
    assert_eq!(incident["closed_at"], Value::Null);
    assert!(incident["reported_at"].as_str().unwrap().ends_with('Z'));
    assert!(!incident["tiers"].as_array().unwrap().is_empty());

    // The same incident as gRPC tells it.
    let grpc =
        server.client().await.get_incident(pb::GetIncidentRequest { id: id.clone() }).await.unwrap().into_inner();
    let fetched = conforms(&doc, "/v1/incidents/{id}", "get", &get(addr, &format!("/v1/incidents/{id}")).await, 200);
    assert_eq!(&fetched, incident);
    assert_eq!(fetched["tiers"].as_array().unwrap().len(), grpc.tiers.len());
    for (json_tier, grpc_tier) in fetched["tiers"].as_array().unwrap().iter().zip(&grpc.tiers) {
        let json_units: Vec<&str> =
            json_tier["assignments"].as_array().unwrap().iter().map(|a| a["unit_id"].as_str().unwrap()).collect();
        let grpc_units: Vec<&str> = grpc_tier.assignments.iter().map(|a| a.unit_id.as_str()).collect();
        assert_eq!(json_units, grpc_units);
        assert_eq!(json_tier["target_s"], grpc_tier.target_s);
    }
    assert_eq!(
        fetched["reported_at"].as_str().unwrap().parse::<prost_types::Timestamp>().unwrap(),
        grpc.reported_at.unwrap()
    );

    let open = conforms(&doc, "/v1/incidents", "get", &get(addr, "/v1/incidents?status=OPEN&page_size=10").await, 200);
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(open["incidents"][0]["id"], id.as_str());
    assert_eq!(open["next_page_token"], "");

    let closed = http(
        addr,
        "POST",
        &format!("/v1/incidents/{id}/close"),
        &[("content-type", "application/json")],
        Some(br#"{"reason":"handled"}"#),
    )
    .await;
    let closed = conforms(&doc, "/v1/incidents/{id}/close", "post", &closed, 200);
    assert_eq!(closed["incident"]["status"], "CLOSED");
    assert!(closed["incident"]["closed_at"].is_string());
    // An empty body is `{}`: closing again returns the closed incident unchanged.
    let again = http(addr, "POST", &format!("/v1/incidents/{id}/close"), &[], None).await;
    assert_eq!(conforms(&doc, "/v1/incidents/{id}/close", "post", &again, 200), closed);

    let open = conforms(&doc, "/v1/incidents", "get", &get(addr, "/v1/incidents?status=OPEN").await, 200);
    assert!(open["incidents"].as_array().unwrap().is_empty());
    let all = conforms(&doc, "/v1/incidents", "get", &get(addr, "/v1/incidents").await, 200);
    assert_eq!(all["incidents"][0]["status"], "CLOSED");
    server.shutdown().await;
}

#[tokio::test]
async fn a_repeated_external_id_returns_the_same_incident() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let first = conforms(&doc, "/v1/incidents", "post", &post(addr, "/v1/incidents", &report_json("dup-1")).await, 201);
    // A retry with another location is still the first report (as over gRPC).
    let mut retry = report_json("dup-1");
    retry["location"] = json!({"lat": 28.53, "lng": 121.5});
    let second = post(addr, "/v1/incidents", &retry).await;
    let second = conforms(&doc, "/v1/incidents", "post", &second, 200);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["incident"], first["incident"]);
    // And gRPC sees the same idempotency index.
    let grpc = server.client().await.report_incident(report("dup-1")).await.unwrap().into_inner();
    assert!(grpc.duplicate);
    assert_eq!(grpc.incident.unwrap().id, first["incident"]["id"].as_str().unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn preview_and_units() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;

    let preview = post(
        addr,
        "/v1/dispatch/preview",
        &json!({"location": {"lat": 28.58, "lng": 121.37}, "kind": "FLOOD", "severity": 3}),
    )
    .await;
    let preview = conforms(&doc, "/v1/dispatch/preview", "post", &preview, 200);
    assert_eq!(preview["outside_service_area"], false);
    let assignments: Vec<&Value> =
        preview["tiers"].as_array().unwrap().iter().flat_map(|t| t["assignments"].as_array().unwrap()).collect();
    assert!(!assignments.is_empty());
    for a in &assignments {
        assert_eq!(a["state"], Value::Null, "nothing is paged by a preview");
        assert_eq!(a["paged_at"], Value::Null);
    }
    // Nothing was reserved.
    let paged = conforms(&doc, "/v1/units", "get", &get(addr, "/v1/units?status=PAGED").await, 200);
    assert!(paged["units"].as_array().unwrap().is_empty());

    let page = conforms(&doc, "/v1/units", "get", &get(addr, "/v1/units?tier=TIER_3&page_size=5").await, 200);
    let units = page["units"].as_array().unwrap();
    assert_eq!(units.len(), 5);
    assert!(units.iter().all(|u| u["tier"] == "TIER_3" && u["status"] == "AVAILABLE"));
    let token = page["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let next = conforms(
        &doc,
        "/v1/units",
        "get",
        &get(addr, &format!("/v1/units?tier=TIER_3&page_size=5&page_token={token}")).await,
        200,
    );
    assert!(next["units"][0]["id"].as_str().unwrap() > units[4]["id"].as_str().unwrap());

    let id = units[0]["id"].as_str().unwrap();
    let unit = conforms(&doc, "/v1/units/{id}", "get", &get(addr, &format!("/v1/units/{id}")).await, 200);
    assert_eq!(&unit, &units[0]);
    let grpc = server.client().await.get_unit(pb::GetUnitRequest { id: id.to_string() }).await.unwrap().into_inner();
    assert_eq!(unit["name"], grpc.name.as_str());
    assert_eq!(unit["home"]["lat"], grpc.home.unwrap().lat);
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_the_json_error_body_and_the_grpc_meaning() {
    let server = TestServer::start_edited(|config| {
        config.http.max_body_bytes = 1024;
    })
    .await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let mut grpc = server.client().await;

    // Validation is the gRPC service's: the same message, word for word.
    let cases: Vec<(Value, &str)> = vec![
        (json!({"lat": 90.5, "lng": 121.37}), "location.lat"),
        (json!({"lat": 28.58, "lng": -180.5}), "location.lng"),
    ];
    for (location, field) in cases {
        let mut body = report_json("bad");
        body["location"] = location.clone();
        let message = refused(
            &doc,
            "/v1/incidents",
            "post",
            &post(addr, "/v1/incidents", &body).await,
            400,
            "INVALID_ARGUMENT",
            field,
        );
        let mut request = report("bad");
        request.location =
            Some(pb::LatLng { lat: location["lat"].as_f64().unwrap(), lng: location["lng"].as_f64().unwrap() });
        let status = grpc.report_incident(request).await.unwrap_err();
        assert_eq!(status.message(), message);
    }
    for (edit, field) in [
        (json!({"external_id": ""}), "external_id"),
        (json!({"severity": 0}), "severity"),
        (json!({"severity": 5}), "severity"),
        (json!({"location": null}), "location"),
        (json!({"kind": null}), "kind"),
        (json!({"external_id": "x".repeat(129)}), "external_id"),
    ] {
        let mut body = report_json("bad");
        for (k, v) in edit.as_object().unwrap() {
            body[k] = v.clone();
        }
        let message = refused(
            &doc,
            "/v1/incidents",
            "post",
            &post(addr, "/v1/incidents", &body).await,
            400,
            "INVALID_ARGUMENT",
            field,
        );
        assert!(message.starts_with(&format!("{field}:")), "{message}");
    }
    // What JSON cannot say, or says wrongly: 400 naming what was wrong.
    let malformed = [
        (r#"{"external_id": "x", "location": {"lat": NaN, "lng": 121.37}}"#, "malformed JSON"),
        (r#"{"external_id": "x", "location": {"lat": 1e999, "lng": 121.37}}"#, "location.lat"),
        (r#"{"external_id": "x", "location": {"lat": "28.5", "lng": 121.37}}"#, "location.lat"),
        (r#"{"external_id": "x", "location": {"lat": 28.5}}"#, "lng"),
        (r#"{"external_id": "x", "kind": "fire"}"#, "kind"),
        (r#"{"external_id": "x", "severity": -1}"#, "severity"),
        (r#"{"external_id": "x", "colour": "red"}"#, "colour"),
        (r#"{"external_id": "x", "location": {"lat": 1, "lng": 2, "alt": 3}}"#, "alt"),
        (r#"{"external_id": "x""#, "malformed JSON"),
        (r#"{"external_id": "x"} trailing"#, "malformed JSON"),
        (r#"[]"#, "JSON object"),
        ("  \"text\"", "JSON object"),
    ];
    for (body, names) in malformed {
        refused(
            &doc,
            "/v1/incidents",
            "post",
            &post_raw(addr, "/v1/incidents", body).await,
            400,
            "INVALID_ARGUMENT",
            names,
        );
    }
    let plain = http(addr, "POST", "/v1/incidents", &[("content-type", "text/plain")], Some(b"{}")).await;
    refused(&doc, "/v1/incidents", "post", &plain, 415, "INVALID_ARGUMENT", "Content-Type");
    let big = serde_json::to_string(&json!({"external_id": "big", "description": "x".repeat(2000)})).unwrap();
    let too_large = post_raw(addr, "/v1/incidents", &big).await;
    refused(&doc, "/v1/incidents", "post", &too_large, 413, "RESOURCE_EXHAUSTED", "http.max_body_bytes");

    // Nothing of it was stored.
    let all = conforms(&doc, "/v1/incidents", "get", &get(addr, "/v1/incidents").await, 200);
    assert!(all["incidents"].as_array().unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_bad_queries_and_routes_are_refused_in_json() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let mut grpc = server.client().await;
    // Unknown ids: NOT_FOUND, as over gRPC.
    let missing = get(addr, "/v1/incidents/inc-999999").await;
    let message = refused(&doc, "/v1/incidents/{id}", "get", &missing, 404, "NOT_FOUND", "inc-999999");
    let status = grpc.get_incident(pb::GetIncidentRequest { id: "inc-999999".into() }).await.unwrap_err();
    assert_eq!(status.message(), message);
    refused(&doc, "/v1/units/{id}", "get", &get(addr, "/v1/units/NOPE").await, 404, "NOT_FOUND", "NOPE");
    let close_missing = http(addr, "POST", "/v1/incidents/inc-999999/close", &[], None).await;
    refused(&doc, "/v1/incidents/{id}/close", "post", &close_missing, 404, "NOT_FOUND", "inc-999999");
    let close_unknown_field = post(addr, "/v1/incidents/inc-000001/close", &json!({"why": "x"})).await;
    refused(&doc, "/v1/incidents/{id}/close", "post", &close_unknown_field, 400, "INVALID_ARGUMENT", "why");

    // Query strings.
    for (path, names) in [
        ("/v1/incidents?page_size=abc", "page_size"),
        ("/v1/incidents?page_size=1001", "page_size"),
        ("/v1/incidents?status=BOGUS", "OPEN, CLOSED"),
        ("/v1/incidents?colour=red", "colour"),
        ("/v1/incidents?page_token=zzz", "page_token"),
    ] {
        refused(&doc, "/v1/incidents", "get", &get(addr, path).await, 400, "INVALID_ARGUMENT", names);
    }
    for (path, names) in
        [("/v1/units?tier=TIER_2", "TIER_1, TIER_3, TIER_5, TIER_10"), ("/v1/units?status=BUSY", "AVAILABLE")]
    {
        refused(&doc, "/v1/units", "get", &get(addr, path).await, 400, "INVALID_ARGUMENT", names);
    }
    let preview = post(
        addr,
        "/v1/dispatch/preview",
        &json!({"location": {"lat": 28.58, "lng": 200.0}, "kind": "FIRE", "severity": 1}),
    )
    .await;
    refused(&doc, "/v1/dispatch/preview", "post", &preview, 400, "INVALID_ARGUMENT", "location.lng");

    // Routes and methods: JSON too.
    let nowhere = get(addr, "/v2/nowhere").await;
    assert_eq!(nowhere.status, 404);
    check(&doc, &json!({"$ref": "#/components/schemas/Error"}), &nowhere.json(), "$").unwrap();
    assert_eq!(nowhere.json()["error"]["code"], "NOT_FOUND");
    let wrong_method = http(addr, "DELETE", "/v1/incidents", &[], None).await;
    assert_eq!(wrong_method.status, 405);
    check(&doc, &json!({"$ref": "#/components/schemas/Error"}), &wrong_method.json(), "$").unwrap();
    assert!(wrong_method.json()["error"]["message"].as_str().unwrap().contains("DELETE"));
    let allow = wrong_method.header("allow").unwrap_or_default().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "allow: {allow:?}");

    server.shutdown().await;
}

fn doc_enum<'a>(doc: &'a Value, name: &str) -> Vec<&'a str> {
    doc["components"]["schemas"][name]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no enum"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn assert_enum<E: JsonEnum>(doc: &Value, name: &str) {
    assert_eq!(doc_enum(doc, name), enum_names::<E>(), "{name}: the document and the proto disagree");
}

#[tokio::test]
async fn the_document_lists_every_enum_value_and_route() {
    let server = TestServer::start().await;
    let doc = openapi(server.http_addr).await;
    assert_enum::<pb::Tier>(&doc, "Tier");
    assert_enum::<pb::UnitStatus>(&doc, "UnitStatus");
    assert_enum::<pb::IncidentKind>(&doc, "IncidentKind");
    assert_enum::<pb::IncidentStatus>(&doc, "IncidentStatus");
    assert_enum::<pb::TierState>(&doc, "TierState");
    assert_enum::<pb::AssignmentState>(&doc, "AssignmentState");
    assert_enum::<pb::EventType>(&doc, "EventType");
    assert_eq!(doc_enum(&doc, "ErrorCode"), code_names());
    let mut routes: Vec<String> = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    assert_eq!(
        routes,
        [
            "GET /healthz",
            "GET /metrics",
            "GET /openapi.json",
            "GET /v1/admin/webhooks/dead-letters",
            "GET /v1/eta",
            "GET /v1/events",
            "GET /v1/incidents",
            "GET /v1/incidents/{id}",
            "GET /v1/incidents/{id}/candidates",
            "GET /v1/incidents/{id}/timeline",
            "GET /v1/ping",
            "GET /v1/reports/compliance",
            "GET /v1/units",
            "GET /v1/units/{id}",
            "POST /v1/admin/webhooks/dead-letters/replay",
            "POST /v1/dispatch/preview",
            "POST /v1/incidents",
            "POST /v1/incidents/{id}/assign",
            "POST /v1/incidents/{id}/close",
            "POST /v1/incidents/{id}/confirm-arrival",
            "POST /v1/units/{id}/release",
            "POST /v1/units/{id}/status",
            "PUT /v1/units/{id}",
        ]
    );
    // And the server has each of them (not the 404 / 405 of a missing route).
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "x");
        let response = if path == "/v1/events" {
            match Sse::try_open(server.http_addr, "/v1/events?after_seq=999999", &[]).await {
                Ok(_) => panic!("a resume from ahead of the feed is refused"),
                Err(response) => response,
            }
        } else {
            http(server.http_addr, method, &path, &[], None).await
        };
        if path == "/metrics" {
            assert_eq!(response.status, 200, "{route}");
            continue;
        }
        let code = response.json().get("error").map(|e| e["code"].clone());
        assert!(
            response.status != 405
                && !(response.status == 404
                    && code == Some(json!("NOT_FOUND"))
                    && response.text().contains("no route")),
            "{route}: {} {}",
            response.status,
            response.text()
        );
    }
    // Every schema is an object schema the checker understands, closed to
    // unknown fields.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if schema["type"] == "object" {
            assert_eq!(schema["additionalProperties"], false, "{name}");
            for required in schema["required"].as_array().unwrap() {
                assert!(schema["properties"].get(required.as_str().unwrap()).is_some(), "{name}.{required}");
            }
        }
    }
    server.shutdown().await;
}

/// Checks one SSE event against the document and its own framing.
fn feed_event(doc: &Value, event: &SseEvent) -> u64 {
    let schema = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["x-sse-events"]["data"];
    if let Err(problem) = check(doc, schema, &event.data, "$") {
        panic!("event does not match the document: {problem}\n{:#}", event.data);
    }
    let seq = event.data["seq"].as_u64().unwrap();
    assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
    assert_eq!(event.event, event.data["type"].as_str().unwrap());
    seq
}

#[tokio::test]
async fn the_live_feed_streams_as_sse_and_resumes_with_last_event_id() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    // Subscribed once the response head is here (the service subscribes
    // before answering), so nothing reported after it is missed.
    let mut all = Sse::open(addr, "/v1/events", &[]).await;
    let mut grpc = server.watch(0, "").await;

    let first = post(addr, "/v1/incidents", &report_json("sse-1")).await.json();
    let first_id = first["incident"]["id"].as_str().unwrap().to_string();
    let second = post(addr, "/v1/incidents", &report_json("sse-2")).await.json();
    let second_id = second["incident"]["id"].as_str().unwrap().to_string();

    let seen = all.until(|e| e.event == "INCIDENT_REPORTED" && e.data["incident_id"] == second_id.as_str()).await;
    let seqs: Vec<u64> = seen.iter().map(|e| feed_event(&doc, e)).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, none missed: {seqs:?}");
    assert_eq!(seen[0].event, "INCIDENT_REPORTED");
    assert_eq!(seen[0].data["incident_id"], first_id.as_str());
    let paged: Vec<&SseEvent> = seen.iter().filter(|e| e.event == "UNIT_PAGED").collect();
    assert!(!paged.is_empty());
    assert!(paged.iter().all(|e| e.data["tier"].is_string() && e.data["unit_id"] != ""));

    // The same events as the gRPC feed, in the one JSON form.
    for event in &seen {
        let grpc_event = lastmile_suite::next(&mut grpc).await.unwrap().unwrap();
        assert_eq!(lastmile_server::json::event(&grpc_event), event.data);
    }

    // Resume after the first incident's report: exactly the later events.
    let resume_after = seqs[0];
    let header = resume_after.to_string();
    let mut resumed = Sse::open(addr, "/v1/events?after_seq=1", &[("last-event-id", &header)]).await;
    let again = resumed.until(|e| e.event == "INCIDENT_REPORTED" && e.data["incident_id"] == second_id.as_str()).await;
    let again_seqs: Vec<u64> = again.iter().map(|e| feed_event(&doc, e)).collect();
    assert_eq!(again_seqs, seqs[1..]);
    assert_eq!(
        again.iter().map(|e| &e.data).collect::<Vec<_>>(),
        seen[1..].iter().map(|e| &e.data).collect::<Vec<_>>()
    );

    // ?after_seq= and ?incident_id= as in WatchEventsRequest.
    let mut filtered = Sse::open(addr, &format!("/v1/events?after_seq={}&incident_id={second_id}", seqs[0]), &[]).await;
    let only_second = filtered.next().await.unwrap();
    assert_eq!(only_second.event, "INCIDENT_REPORTED");
    assert_eq!(only_second.data["incident_id"], second_id.as_str());

    // Refusals before the stream starts are ordinary JSON errors.
    let bad = Sse::try_open(addr, "/v1/events", &[("last-event-id", "seven")]).await.err().expect("refused");
    refused(&doc, "/v1/events", "get", &bad, 400, "INVALID_ARGUMENT", "Last-Event-ID");
    let ahead = Sse::try_open(addr, "/v1/events?after_seq=999999", &[]).await.err().expect("refused");
    refused(&doc, "/v1/events", "get", &ahead, 400, "OUT_OF_RANGE", "after_seq");
    server.shutdown().await;
}

#[tokio::test]
async fn watchers_share_the_feed_limit_and_streams_end_at_shutdown() {
    let server = TestServer::start_edited(|config| {
        config.feed.max_watchers = 1;
    })
    .await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let mut watcher = Sse::open(addr, "/v1/events", &[]).await;
    // One watcher is the limit, over HTTP and gRPC alike.
    let second = Sse::try_open(addr, "/v1/events", &[]).await.err().expect("refused");
    refused(&doc, "/v1/events", "get", &second, 429, "RESOURCE_EXHAUSTED", "feed.max_watchers");
    let status = server.client().await.watch_events(pb::WatchEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);

    // Shutdown ends the stream with a last error event (no id: a resume
    // starts after the last real event), then the response ends, and the
    // server's drain completes.
    let stopped = tokio::spawn(server.shutdown());
    let last = watcher.next().await.expect("a last event");
    assert_eq!(last.event, "feed_error");
    assert_eq!(last.id, None);
    check(&doc, &json!({"$ref": "#/components/schemas/Error"}), &last.data, "$").unwrap();
    assert_eq!(last.data["error"]["code"], "UNAVAILABLE");
    assert!(watcher.next().await.is_none());
    tokio::time::timeout(PATIENCE, stopped).await.expect("drained").unwrap();
}

#[test]
fn the_binary_serves_the_gateway_and_prints_its_address_second() {
    let server = ServedBinary::start(["--in-memory"]);
    let addr: SocketAddr = server.http_addr.parse().unwrap();
    assert_ne!(server.addr, server.http_addr);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let health = get(addr, "/healthz").await;
        assert_eq!(health.status, 200, "{}", health.text());
        let reported = post(addr, "/v1/incidents", &report_json("bin-1")).await;
        assert_eq!(reported.status, 201, "{}", reported.text());
    });
}

#[test]
fn the_schema_checker_refuses_extra_missing_and_mistyped_fields() {
    let doc = json!({"components": {"schemas": {
        "P": {"type": "object", "additionalProperties": false, "required": ["a", "b"],
              "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"oneOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}]}}},
        "E": {"type": "string", "enum": ["X", "Y"]}
    }}});
    let p = json!({"$ref": "#/components/schemas/P"});
    assert!(check(&doc, &p, &json!({"a": 1, "b": "X"}), "$").is_ok());
    assert!(check(&doc, &p, &json!({"a": 1, "b": null}), "$").is_ok());
    assert!(check(&doc, &p, &json!({"a": 1, "b": "X", "c": 2}), "$").unwrap_err().contains("\"c\""));
    assert!(check(&doc, &p, &json!({"a": 1}), "$").unwrap_err().contains("\"b\""));
    assert!(check(&doc, &p, &json!({"a": 1, "b": "Z"}), "$").is_err());
    assert!(check(&doc, &p, &json!({"a": -1, "b": "X"}), "$").is_err());
    assert!(check(&doc, &p, &json!({"a": 1.5, "b": "X"}), "$").is_err());
    assert!(check(&doc, &json!({"pattern": "x"}), &json!("x"), "$").unwrap_err().contains("pattern"));
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_watcher_place_on_a_quiet_feed() {
    let server = TestServer::start_edited(|config| {
        config.feed.max_watchers = 1;
    })
    .await;
    let addr = server.http_addr;
    let first = Sse::open(addr, "/v1/events", &[]).await;
    drop(first); // closes the connection; no event is ever published
    let mut second = eventually(|| async { Sse::try_open(addr, "/v1/events", &[]).await.ok() }).await;
    // And the new watcher is live.
    post(addr, "/v1/incidents", &report_json("quiet-1")).await;
    assert_eq!(second.next().await.unwrap().event, "INCIDENT_REPORTED");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_with_every_documented_field_are_accepted() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let properties = |name: &str| -> Vec<String> {
        let mut keys: Vec<String> =
            doc["components"]["schemas"][name]["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let keys = |body: &Value| -> Vec<String> {
        let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let mut report = report_json("every-field");
    report["grid_id"] = json!("");
    assert_eq!(keys(&report), properties("ReportIncidentRequest"));
    conforms(&doc, "/v1/incidents", "post", &post(addr, "/v1/incidents", &report).await, 201);
    let preview = json!({"location": {"lat": 28.58, "lng": 121.37}, "kind": "RESCUE", "severity": 4});
    assert_eq!(keys(&preview), properties("PreviewDispatchRequest"));
    conforms(&doc, "/v1/dispatch/preview", "post", &post(addr, "/v1/dispatch/preview", &preview).await, 200);
    let close = json!({"reason": "done"});
    assert_eq!(keys(&close), properties("CloseIncidentRequest"));
    let closed = post(addr, "/v1/incidents/inc-000001/close", &close).await;
    conforms(&doc, "/v1/incidents/{id}/close", "post", &closed, 200);

    let parameters = |route: &str| -> Vec<String> {
        let mut names: Vec<String> = doc["paths"][route]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let query_names = |query: &str| -> Vec<String> {
        let mut names: Vec<String> = query.split('&').map(|kv| kv.split('=').next().unwrap().to_string()).collect();
        names.sort();
        names
    };
    let incidents =
        "status=CLOSED&page_size=10&page_token=&reported_from=2020-01-01T00:00:00Z&reported_to=2100-01-01T00:00:00Z";
    assert_eq!(query_names(incidents), parameters("/v1/incidents"));
    let listed = conforms(&doc, "/v1/incidents", "get", &get(addr, &format!("/v1/incidents?{incidents}")).await, 200);
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 1);
    let units = "tier=TIER_5&status=AVAILABLE&town=%E8%B7%AF%E6%A1%A5%E8%A1%97%E9%81%93&page_size=10&page_token=";
    assert_eq!(query_names(units), parameters("/v1/units"));
    let listed = conforms(&doc, "/v1/units", "get", &get(addr, &format!("/v1/units?{units}")).await, 200);
    assert!(listed["units"].as_array().unwrap().iter().all(|u| u["town"] == "路桥街道"));
    let events = "after_seq=1&incident_id=inc-000001&unit_id=";
    assert_eq!(query_names(events), parameters("/v1/events"));
    let mut stream = Sse::open(addr, &format!("/v1/events?{events}"), &[]).await;
    assert_eq!(stream.next().await.unwrap().data["incident_id"], "inc-000001");
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_and_frees_its_place() {
    let server = TestServer::start_edited(|config| {
        config.http.max_connections = 1;
        config.http.header_read_timeout_ms = 200;
    })
    .await;
    let addr = server.http_addr;
    // Holds the only place, saying nothing: closed after the head timeout.
    use tokio::io::AsyncReadExt;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut rest)).await.expect("the server closes it");
    // The place is free again.
    assert_eq!(get(addr, "/healthz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_dead_letter_routes_match_the_document() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let list = get(addr, "/v1/admin/webhooks/dead-letters").await;
    let list = conforms(&doc, "/v1/admin/webhooks/dead-letters", "get", &list, 200);
    assert_eq!(list["dead_letters"], json!([]));
    let replay = post(addr, "/v1/admin/webhooks/dead-letters/replay", &json!({"endpoint": null})).await;
    let report = conforms(&doc, "/v1/admin/webhooks/dead-letters/replay", "post", &replay, 200);
    assert_eq!(report["requeued"], 0);
    let bad = post(addr, "/v1/admin/webhooks/dead-letters/replay", &json!({"endpoints": "x"})).await;
    refused(&doc, "/v1/admin/webhooks/dead-letters/replay", "post", &bad, 400, "INVALID_ARGUMENT", "endpoints");
    server.shutdown().await;
}

/// The dispatcher's overrides, the administrator's upsert and Ping over
/// HTTP, each answer checked against the document, every request body
/// field the document lists sent once.
#[tokio::test]
async fn overrides_upsert_and_ping_match_the_document() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let send = |method: &'static str, path: String, body: Value| async move {
        let bytes = serde_json::to_vec(&body).unwrap();
        http(addr, method, &path, &[("content-type", "application/json")], Some(&bytes)).await
    };
    let properties = |name: &str| -> Vec<String> {
        let mut keys: Vec<String> =
            doc["components"]["schemas"][name]["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let keys = |body: &Value| -> Vec<String> {
        let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    conforms(&doc, "/v1/ping", "get", &get(addr, "/v1/ping").await, 200);
    let unit = json!({"id": "T10-DOC", "name": "文档测试站", "tier": "TIER_10_MIN", "home": {"lat": 28.6, "lng": 121.4},
        "position": {"lat": 28.6, "lng": 121.4}, "status": "AVAILABLE", "town": "路桥街道", "village": "", "crew": 5,
        "capabilities": ["fire"], "incident_id": ""});
    assert_eq!(keys(&unit), properties("UnitInput"));
    let created =
        conforms(&doc, "/v1/units/{id}", "put", &send("PUT", "/v1/units/T10-DOC".into(), unit.clone()).await, 201);
    assert_eq!((created["created"].clone(), created["unit"]["tier"].clone()), (json!(true), json!("TIER_10")));
    let replaced = conforms(&doc, "/v1/units/{id}", "put", &send("PUT", "/v1/units/T10-DOC".into(), unit).await, 200);
    assert_eq!(replaced["created"], false);
    let wrong_id = send(
        "PUT",
        "/v1/units/T10-OTHER".into(),
        json!({"id": "T10-DOC", "tier": 10, "home": {"lat": 28.6, "lng": 121.4}}),
    );
    refused(&doc, "/v1/units/{id}", "put", &wrong_id.await, 400, "INVALID_ARGUMENT", "id");

    conforms(&doc, "/v1/incidents", "post", &post(addr, "/v1/incidents", &report_json("doc-1")).await, 201);
    let assign = json!({"unit_id": "T10-DOC", "tier": "10"});
    assert_eq!(keys(&assign), properties("AssignUnitRequest"));
    let assigned = send("POST", "/v1/incidents/inc-000001/assign".into(), assign).await;
    let incident = conforms(&doc, "/v1/incidents/{id}/assign", "post", &assigned, 200);
    let tier10 = incident["tiers"].as_array().unwrap().iter().find(|t| t["tier"] == "TIER_10").unwrap();
    assert!(tier10["assignments"].as_array().unwrap().iter().any(|a| a["unit_id"] == "T10-DOC"));
    let status = json!({"status": "EN_ROUTE", "incident_id": "inc-000001"});
    assert_eq!(keys(&status), properties("SetUnitStatusRequest"));
    let en_route = send("POST", "/v1/units/T10-DOC/status".into(), status).await;
    let unit = conforms(&doc, "/v1/units/{id}/status", "post", &en_route, 200);
    assert_eq!(unit["unit"]["status"], "EN_ROUTE");
    let elsewhere =
        send("POST", "/v1/units/T10-DOC/status".into(), json!({"status": "ON_SCENE", "incident_id": "inc-000002"}));
    refused(&doc, "/v1/units/{id}/status", "post", &elsewhere.await, 409, "FAILED_PRECONDITION", "inc-000002");
    let release = json!({"reason": "stood down"});
    assert_eq!(keys(&release), properties("ReleaseUnitRequest"));
    let released = send("POST", "/v1/units/T10-DOC/release".into(), release).await;
    let unit = conforms(&doc, "/v1/units/{id}/release", "post", &released, 200);
    assert_eq!((unit["unit"]["status"].clone(), unit["unit"]["incident_id"].clone()), (json!("RETURNING"), json!("")));
    let empty = http(addr, "POST", "/v1/units/T10-DOC/release", &[], None).await;
    refused(&doc, "/v1/units/{id}/release", "post", &empty, 409, "FAILED_PRECONDITION", "T10-DOC");
    server.shutdown().await;
}

/// What the document says is what the server does: a JSON Schema integer
/// may be written 3.0, and the served page-size maximum is this server's.
#[tokio::test]
async fn the_document_and_the_server_agree_on_numbers() {
    let server = TestServer::start_edited(|c| c.server.max_page_size = 250).await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let page_size = doc["paths"]["/v1/incidents"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "page_size")
        .unwrap();
    assert_eq!(page_size["schema"]["maximum"], 250);
    assert_eq!(get(addr, "/v1/incidents?page_size=250").await.status, 200);
    assert_eq!(get(addr, "/v1/incidents?page_size=251").await.status, 400);
    let mut body = report_json("whole-number");
    body["severity"] = json!(3.0);
    conforms(&doc, "/v1/incidents", "post", &post(addr, "/v1/incidents", &body).await, 201);
    body["external_id"] = json!("fraction");
    body["severity"] = json!(2.5);
    refused(
        &doc,
        "/v1/incidents",
        "post",
        &post(addr, "/v1/incidents", &body).await,
        400,
        "INVALID_ARGUMENT",
        "severity",
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_compliance_report_and_the_eta_status_match_the_document() {
    let server = TestServer::start().await;
    let addr = server.http_addr;
    let doc = openapi(addr).await;
    let reported = post(addr, "/v1/incidents", &report_json("http-report-1")).await;
    let id = conforms(&doc, "/v1/incidents", "post", &reported, 201)["incident"]["id"].as_str().unwrap().to_string();
    let closed = post(addr, &format!("/v1/incidents/{id}/close"), &json!({"reason": "report test"})).await;
    assert_eq!(closed.status, 200, "{}", closed.text());
    // Today's month in the district's zone: the month of a UTC instant eight hours on.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 8 * 3600;
    let (from, to) = (now / 86_400 - 1, now / 86_400 + 2);
    let day = |d: i64| {
        // Days since the epoch as YYYY-MM-DD (civil-from-days).
        let z = d + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let (dd, mm) = (doy - (153 * mp + 2) / 5 + 1, if mp < 10 { mp + 3 } else { mp - 9 });
        format!("{:04}-{mm:02}-{dd:02}", yoe + era * 400 + i64::from(mm <= 2))
    };
    let path = format!("/v1/reports/compliance?from={}&to={}&group_by=town,tier", day(from), day(to));
    let report = conforms(&doc, "/v1/reports/compliance", "get", &get(addr, &path).await, 200);
    assert_eq!(report["incidents"], 1, "{report}");
    let month = format!("/v1/reports/compliance?month={}&group_by=town,tier", &day(now / 86_400)[..7]);
    let bulletin = conforms(&doc, "/v1/reports/compliance", "get", &get(addr, &month).await, 200)["bulletin"].clone();
    assert_eq!(bulletin["tiers"].as_array().unwrap().len(), 4, "{bulletin}");
    let eta = conforms(&doc, "/v1/eta", "get", &get(addr, "/v1/eta").await, 200);
    assert_eq!(eta["tiers"].as_array().unwrap().len(), 4);
    server.shutdown().await;
}
