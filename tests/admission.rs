//! Admission control end to end: a burst of reports beyond
//! `admission.max_reports_in_flight` is answered at once, each report either
//! dispatched or refused RESOURCE_EXHAUSTED with a retry hint, while a
//! terminal's acknowledgement is served; and the refusals are counted.

use lastmile_suite::http::get;
use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, accept, config_on_disk, paging_units, temp_dir, with_journal};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_report_bound_is_refused_at_once_with_a_retry_hint_and_acks_go_on() {
    let dir = temp_dir("admission");
    // A journal, so a report holds its place across its commit.
    let mut config = config_on_disk(&paging_units(), with_journal(&dir));
    config.admission.max_reports_in_flight = 2;
    config.admission.max_in_flight = 64;
    let server = TestServer::start_with(config).await;

    // One incident whose tier-10 page the terminal will acknowledge mid-burst.
    let mut client = server.client().await;
    let first = client.report_incident(lastmile_suite::report("adm-first")).await.unwrap().into_inner();
    let incident = first.incident.unwrap();
    let tier10 = incident.tiers.iter().find(|t| t.tier() == pb::Tier::Tier10Min).unwrap();
    let brigade = tier10.assignments[0].unit_id.clone();

    let mut burst = tokio::task::JoinSet::new();
    for c in 0..4 {
        let channel = server.channel().await;
        for i in 0..75 {
            let mut client = pb::dispatch_client::DispatchClient::new(channel.clone());
            burst.spawn(async move { client.report_incident(lastmile_suite::report(&format!("adm-{c}-{i}"))).await });
        }
    }
    let mut terminal = server.terminal().await;
    let ack = terminal.acknowledge(accept(&brigade, &incident.id)).await;
    assert!(ack.is_ok(), "an acknowledgement during the burst is served: {ack:?}");

    let (mut dispatched, mut refused) = (0, 0);
    while let Some(answer) = burst.join_next().await {
        match answer.unwrap() {
            Ok(_) => dispatched += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("admission.max_reports_in_flight"), "{}", status.message());
                let hint = status.metadata().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                assert_eq!(hint.as_deref(), Some("1"), "a refusal says when to retry");
                let pushback = status.metadata().get("grpc-retry-pushback-ms").map(|v| v.to_str().unwrap().to_string());
                assert_eq!(pushback.as_deref(), Some("1000"));
                refused += 1;
            }
        }
    }
    assert_eq!(dispatched + refused, 300);
    assert!(dispatched > 0, "some reports of the burst were dispatched");
    assert!(refused > 0, "300 reports at once against a bound of 2: some are refused");

    let metrics = get(server.http_addr, "/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("lastmile_admission_refused_total{class=\"report\"}"))
        .unwrap_or_else(|| panic!("no report refusal counter in:\n{metrics}"));
    assert_eq!(line.rsplit(' ').next().unwrap().parse::<f64>().unwrap(), refused as f64, "{line}");
    assert!(
        metrics.contains("lastmile_admission_refused_total{class=\"terminal\"} 0"),
        "acknowledgements were not refused"
    );

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
