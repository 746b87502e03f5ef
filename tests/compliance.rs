//! The 13510 compliance report end to end: a scripted set of incidents with
//! known outcomes, against a real server on a journal, read over HTTP in
//! every format, offline with `lastmile compliance --data-dir`, and again
//! after a SIGKILL and restart.

use lastmile_proto::v1::unit_terminal_client::UnitTerminalClient;
use lastmile_suite::http::get;
use lastmile_suite::v1 as pb;
use lastmile_suite::{ServedBinary, accept, temp_dir};
use serde_json::Value;
use tonic::transport::Channel;

type Dispatch = lastmile_proto::v1::dispatch_client::DispatchClient<Channel>;

const AT: pb::LatLng = pb::LatLng { lat: 28.58, lng: 121.37 };
const NEAR: pb::LatLng = pb::LatLng { lat: 28.5803, lng: 121.37 }; // ~33 m
const FAR: pb::LatLng = pb::LatLng { lat: 28.607, lng: 121.37 }; // ~3 km

/// A minor flood: the default plan asks one unit of each tier.
fn flood(external_id: &str) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        external_id: external_id.into(),
        location: Some(AT),
        kind: pb::IncidentKind::Flood as i32,
        severity: 1,
        ..Default::default()
    }
}

fn status(unit_id: &str, incident_id: &str, status: pb::UnitStatus, at: pb::LatLng) -> pb::ReportStatusRequest {
    pb::ReportStatusRequest {
        unit_id: unit_id.into(),
        status: status as i32,
        incident_id: incident_id.into(),
        position: Some(at),
        measured_at: None,
    }
}

fn unit_of(incident: &pb::Incident, tier: pb::Tier) -> String {
    let t = incident.tiers.iter().find(|t| t.tier() == tier).expect("the tier");
    t.assignments.first().unwrap_or_else(|| panic!("{tier:?} paged nobody: {t:?}")).unit_id.clone()
}

/// A: the brigade arrives (verified), the town team declines. B: the
/// brigade reports ON_SCENE 3 km away (unverified). C: the village team
/// arrives (verified). Each closed; D left open (not in the report).
async fn script(client: &mut Dispatch, terminal: &mut UnitTerminalClient<Channel>) {
    let mut c = client.clone();
    let mut new = async move |id: &str| c.report_incident(flood(id)).await.unwrap().into_inner().incident.unwrap();
    let close = |id: &str| pb::CloseIncidentRequest { id: id.into(), reason: "scripted".into() };

    let a = new("cmp-a").await;
    let (brigade, town) = (unit_of(&a, pb::Tier::Tier10Min), unit_of(&a, pb::Tier::Tier5Min));
    terminal.acknowledge(accept(&brigade, &a.id)).await.unwrap();
    terminal.report_status(status(&brigade, &a.id, pb::UnitStatus::OnScene, NEAR)).await.unwrap();
    let decline = pb::AcknowledgeRequest { accept: false, reason: "pump broken".into(), ..accept(&town, &a.id) };
    terminal.acknowledge(decline).await.unwrap();
    client.close_incident(close(&a.id)).await.unwrap();
    // Released from the scene, the crew goes back into service.
    terminal.report_status(status(&brigade, "", pb::UnitStatus::Available, NEAR)).await.unwrap();

    let b = new("cmp-b").await;
    assert_eq!(unit_of(&b, pb::Tier::Tier10Min), brigade, "the same brigade, free again");
    terminal.acknowledge(accept(&brigade, &b.id)).await.unwrap();
    terminal.report_status(status(&brigade, &b.id, pb::UnitStatus::OnScene, FAR)).await.unwrap();
    client.close_incident(close(&b.id)).await.unwrap();
    terminal.report_status(status(&brigade, "", pb::UnitStatus::Available, FAR)).await.unwrap();

    let c3 = new("cmp-c").await;
    let village = unit_of(&c3, pb::Tier::Tier3Min);
    terminal.acknowledge(accept(&village, &c3.id)).await.unwrap();
    terminal.report_status(status(&village, &c3.id, pb::UnitStatus::OnScene, NEAR)).await.unwrap();
    client.close_incident(close(&c3.id)).await.unwrap();

    new("cmp-d-open").await;
}

/// Yesterday to the day after tomorrow, district time: today's incidents.
fn period() -> (String, String) {
    let today = jiff::Timestamp::now().in_tz("Asia/Shanghai").unwrap().date();
    let day = |n: i64| today.checked_add(jiff::Span::new().days(n)).unwrap().to_string();
    (day(-1), day(2))
}

fn row(report: &Value, tier: u64) -> &Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["tier"] == tier).unwrap_or_else(|| panic!("tier {tier}"))
}

/// The CSV's rows as header -> value maps.
fn csv_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_week_gives_exact_figures_in_every_format_and_after_a_sigkill() {
    let dir = temp_dir("compliance");
    let config = lastmile_suite::config_on_disk(&lastmile_suite::paging_units(), lastmile_suite::with_journal(&dir));
    let lastmile_server::config::ConfigSource::File(config_path) = &config.source else { unreachable!() };
    let args = [std::ffi::OsStr::new("--config"), config_path.as_os_str()];
    let server = ServedBinary::start(args);
    let channel = Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
    let (mut client, mut terminal) = (Dispatch::new(channel.clone()), UnitTerminalClient::new(channel));
    script(&mut client, &mut terminal).await;

    let (from, to) = period();
    let path = |format: &str| format!("/v1/reports/compliance?from={from}&to={to}&format={format}");
    let http_addr = server.http_addr.parse().unwrap();
    let answer = get(http_addr, &path("json")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let report = answer.json();
    assert_eq!(report["incidents"], 3, "closed incidents only: {report}");
    assert_eq!(report["period"]["time_zone"], "Asia/Shanghai");

    let brigade = row(&report, 10);
    assert_eq!(
        (&brigade["incidents"], &brigade["slots_required"], &brigade["slots_met"], &brigade["incidents_met"]),
        (&Value::from(3), &Value::from(3), &Value::from(1), &Value::from(1)),
        "only A's arrival was verified: {brigade}"
    );
    assert!((brigade["share_met"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(brigade["arrivals"], 1, "B's arrival 3 km away does not count");
    assert_eq!(brigade["pages"], 3);
    let village = row(&report, 3);
    assert_eq!((&village["incidents_met"], &village["slots_met"]), (&Value::from(1), &Value::from(1)));
    assert_eq!(row(&report, 5)["pages_declined"], 1);
    assert_eq!(row(&report, 1)["incidents_met"], 0);
    let units = report["units"].as_array().unwrap();
    let t10 = units.iter().find(|u| u["unit_id"] == "T10-a").expect("T10-a in the unit table");
    assert_eq!((&t10["pages"], &t10["acknowledged"]), (&Value::from(3), &Value::from(2)), "{t10}");
    assert_eq!((&t10["verified_arrivals"], &t10["arrivals_within_target"]), (&Value::from(1), &Value::from(1)));
    let eta10 = report["eta"].as_array().unwrap().iter().find(|e| e["tier"] == 10).unwrap();
    assert_eq!(eta10["arrivals"], 1, "{eta10}");

    // The same figures as CSV, and a printable page.
    let csv = get(http_addr, &path("csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let rows = csv_rows(&csv.text());
    let t10_row = rows.iter().find(|r| r["tier"] == "10").expect("a tier-10 line");
    assert_eq!((t10_row["incidents"].as_str(), t10_row["incidents_met"].as_str()), ("3", "1"));
    let units_csv = get(http_addr, &path("units.csv")).await.text();
    assert!(units_csv.lines().any(|l| l.starts_with("T10-a,")), "{units_csv}");
    let html = get(http_addr, &path("html")).await;
    assert!(html.header("content-type").unwrap().starts_with("text/html"));
    let page = html.text();
    assert!(page.contains("13510") && page.contains("<svg"), "a page with its charts");
    assert!(!page.contains("<script"), "no script needed");

    // Offline, from the data directory, while the server runs: the same.
    let offline = std::process::Command::new(lastmile_suite::lastmile_bin())
        .args(["compliance", "--config"])
        .arg(config_path)
        .arg("--data-dir")
        .arg(&dir)
        .args(["--from", &from, "--to", &to])
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(offline, report, "offline and online agree");

    // SIGKILL and restart: the same report.
    drop(server);
    let server = ServedBinary::start(args);
    let again = get(server.http_addr.parse().unwrap(), &path("json")).await;
    assert_eq!(again.json(), report, "the same numbers after a restart");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_requests_are_refused_naming_what_is_wrong() {
    let server = lastmile_suite::TestServer::start().await;
    let addr = server.http_addr;
    for (query, says) in [
        ("", "give exactly one of week"),
        ("week=2026-W48&month=2026-11", "give exactly one of week"),
        ("week=2025-W53", "2025 has 52 ISO weeks"),
        ("week=48", "expected YYYY-Www"),
        ("month=2026-13", "bad month"),
        ("from=2026-11-02&to=2026-11-01", "empty range"),
        ("month=2026-11&group_by=town,county", "unknown group_by key"),
        ("month=2026-11&format=pdf", "json, csv, units.csv, html"),
        ("month=2026-11&colour=red", "colour"),
    ] {
        let answer = get(addr, &format!("/v1/reports/compliance?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        assert!(answer.text().contains(says), "{query}: {} does not say {says:?}", answer.text());
    }
    // An empty month is a report of nothing, not an error.
    let empty = get(addr, "/v1/reports/compliance?month=2026-02&group_by=town,tier").await;
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json()["incidents"], 0);
    assert!(empty.json()["bulletin"].is_object(), "a month carries its bulletin");

    let eta = get(addr, "/v1/eta").await;
    assert_eq!(eta.status, 200, "{}", eta.text());
    let eta = eta.json();
    let tiers: Vec<&str> = eta["tiers"].as_array().unwrap().iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["TIER_1", "TIER_3", "TIER_5", "TIER_10"]);
    let t10 = &eta["tiers"][3];
    assert_eq!((t10["source"].as_str(), t10["turnout_s"].as_f64()), (Some("prior"), Some(60.0)), "{t10}");
    assert_eq!(eta["promise_quantile"], 0.8);
    server.shutdown().await;
}
