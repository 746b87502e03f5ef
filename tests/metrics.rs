//! `/metrics` after real traffic: the dispatch, acknowledgement and journal
//! histograms count what happened, the census shows the incident, its tiers
//! and the units' statuses, refusals are counted by the bound they hit, and
//! the page is well-formed Prometheus text.

use lastmile_suite::http::get;
use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, accept, config_on_disk, next, paging_units, report, temp_dir, with_journal};

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every sample belongs to a family declared with `# TYPE`, and parses.
fn assert_well_formed(page: &str) {
    let mut declared = std::collections::HashSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(declared.insert(name.to_string()), "declared twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("value of {line:?}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| declared.contains(*f)))
            .unwrap_or(name);
        assert!(declared.contains(family), "sample of an undeclared family: {line}");
    }
}

#[tokio::test]
async fn metrics_count_dispatch_acknowledgement_census_and_refusals() {
    let dir = temp_dir("metrics");
    let server = TestServer::start_with(config_on_disk(&paging_units(), with_journal(&dir))).await;
    let mut pages = server.pages("T3-a").await;
    let mut client = server.client().await;
    let incident = client.report_incident(report("metrics-1")).await.unwrap().into_inner().incident.unwrap();
    let page = next(&mut pages).await.unwrap().expect("a page");
    server.terminal().await.acknowledge(accept("T3-a", &incident.id)).await.unwrap();
    assert_eq!(page.incident_id, incident.id);
    // An oversized message: refused by server.max_decoding_message_bytes.
    let huge = pb::ReportIncidentRequest { description: "x".repeat(100 * 1024), ..report("huge") };
    assert_eq!(client.report_incident(huge).await.unwrap_err().code(), tonic::Code::ResourceExhausted);

    assert_eq!(get(server.http_addr, "/v1/incidents/inc-999999").await.status, 404);
    let response = get(server.http_addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let page = response.text();
    assert_well_formed(&page);
    assert_eq!(sample(&page, "lastmile_dispatch_seconds_count"), Some(1.0), "{page}");
    assert_eq!(sample(&page, "lastmile_dispatch_seconds_bucket{le=\"+Inf\"}"), Some(1.0));
    assert_eq!(sample(&page, "lastmile_page_ack_seconds_count"), Some(1.0), "{page}");
    assert!(sample(&page, "lastmile_journal_commit_seconds_count").unwrap() >= 1.0, "{page}");
    assert_eq!(sample(&page, "lastmile_journal_failed"), Some(0.0));
    assert_eq!(sample(&page, "lastmile_incidents{state=\"open\"}"), Some(1.0));
    assert_eq!(sample(&page, "lastmile_incidents{state=\"closed\"}"), Some(0.0));
    let town = &incident.town;
    let tier3 = incident.tiers.iter().find(|t| t.tier == pb::Tier::Tier3Min as i32).unwrap();
    assert_eq!(tier3.state, pb::TierState::Paging as i32, "tier 3 had its unit within target");
    assert_eq!(
        sample(&page, &format!("lastmile_tiers{{tier=\"3\",town=\"{town}\",outcome=\"within_target\"}}")),
        Some(1.0),
        "{page}"
    );
    assert_eq!(sample(&page, "lastmile_units{tier=\"3\",status=\"EN_ROUTE\"}"), Some(1.0), "{page}");
    assert_eq!(sample(&page, "lastmile_units{tier=\"3\",status=\"AVAILABLE\"}"), Some(2.0), "{page}");
    assert_eq!(
        sample(&page, "lastmile_limit_hits_total{limit=\"server.max_decoding_message_bytes\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "lastmile_grpc_errors_total{method=\"ReportIncident\",code=\"ResourceExhausted\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(sample(&page, "lastmile_feed_watchers"), Some(0.0));
    assert_eq!(sample(&page, "lastmile_http_responses_total{status=\"404\"}"), Some(1.0), "{page}");
    server.shutdown().await;
}
