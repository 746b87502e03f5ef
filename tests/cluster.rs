//! High availability on PostgreSQL, with real processes: three `lastmile
//! serve` nodes on one journal (a real server: `.ci/postgres.sh`), the
//! leader SIGKILLed in a surge round after round, and a leader stopped
//! past its lease that must not commit once resumed. Seeded: the seed is
//! printed and `LASTMILE_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lastmile_suite::surge::{surge_client, verify};
use lastmile_suite::v1 as pb;
use lastmile_suite::v1::dispatch_client::DispatchClient;
use lastmile_suite::v1::unit_terminal_client::UnitTerminalClient;
use lastmile_suite::{ServedBinary, SplitMix64, eventually, lastmile_bin, report, temp_dir, test_seed};
use serde_json::Value;
use tonic::transport::Channel;

const NODES: [&str; 3] = ["a", "b", "c"];

/// A short lease, so rounds are quick: a dead leader holds up the
/// takeover at most 1.5 s.
const CLUSTER: &str = "\n[cluster]\nnode_id = \"set-by-flag\"\nlease_ms = 1500\nrenew_ms = 400\nfollow_ms = 100\n";

struct Cluster {
    /// The config file every node runs (tier-1 pages time out in 1 s, so
    /// timers fire across the failovers).
    args: Vec<String>,
    journal: Vec<String>,
    nodes: BTreeMap<&'static str, ServedBinary>,
}

impl Cluster {
    fn start(name: &str) -> Option<Cluster> {
        let journal = lastmile_suite::postgres_journal(name)?;
        let dir = temp_dir(name);
        let config = lastmile_suite::config_with_tier1_timing_out(&dir);
        let text = std::fs::read_to_string(&config).unwrap();
        // The file names the shared database itself ([cluster] needs it).
        let data_dir = text.lines().find(|l| l.starts_with("data_dir = ")).unwrap().to_string();
        let pg = format!("url = {:?}\nschema = {:?}", journal[1], journal[3]);
        let mut text = text.replace("backend = \"sqlite\"", "backend = \"postgres\"").replace(&data_dir, &pg);
        text.push_str(CLUSTER);
        std::fs::write(&config, text).unwrap();
        let mut args = vec!["--config".to_string(), config.display().to_string()];
        args.extend(journal.iter().cloned());
        let mut cluster = Cluster { args, journal, nodes: BTreeMap::new() };
        for id in NODES {
            cluster.restart(id);
        }
        Some(cluster)
    }

    /// Starts node `id` (again), as a standby until it takes the lease.
    fn restart(&mut self, id: &'static str) {
        let mut args = self.args.clone();
        args.extend(["--node-id".to_string(), id.to_string()]);
        self.nodes.insert(id, ServedBinary::start(&args));
    }

    /// `lastmile cluster status --json` on the same database.
    fn status(&self) -> Value {
        let out = std::process::Command::new(lastmile_bin())
            .args(["cluster", "status", "--json"])
            .args(&self.journal)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The node answering as leader (a standby refuses Ping), and its epoch.
    async fn leader(&self) -> (&'static str, u64) {
        let id = eventually(|| async {
            for (id, node) in &self.nodes {
                let Ok(channel) = Channel::from_shared(node.endpoint()).unwrap().connect().await else { continue };
                if DispatchClient::new(channel).ping(pb::PingRequest::default()).await.is_ok() {
                    return Some(*id);
                }
            }
            None
        })
        .await;
        let status = self.status();
        assert_eq!(status["leader"]["node_id"], id, "the node answering leads by the lease: {status}");
        (id, status["leader"]["epoch"].as_u64().unwrap())
    }

    async fn client(&self, id: &str) -> DispatchClient<Channel> {
        DispatchClient::new(channel(&self.nodes[id].endpoint()).await)
    }
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string()).unwrap().connect().await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_refuses_naming_the_leader_and_status_shows_every_node() {
    let Some(cluster) = Cluster::start("standby") else { return };
    let (leader, epoch) = cluster.leader().await;
    assert!(epoch >= 1);
    let standby = NODES.iter().find(|id| **id != leader).unwrap();
    let refused = cluster.client(standby).await.report_incident(report("to-a-standby")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    let leader_addr = &cluster.nodes[leader].addr;
    assert_eq!(refused.metadata().get("lastmile-leader").unwrap().to_str().unwrap(), leader_addr);
    assert!(
        refused.message().contains(&format!("the leader is node {leader} at {leader_addr}")),
        "{}",
        refused.message()
    );
    let http = lastmile_suite::http::get(cluster.nodes[standby].http_addr.parse().unwrap(), "/healthz").await;
    assert_eq!(http.status, 503);
    assert_eq!(http.header("lastmile-leader"), Some(cluster.nodes[leader].http_addr.as_str()));
    assert_eq!(http.json()["leader"]["node_id"], leader);
    // Nothing was stored by the refusal.
    let mut client = cluster.client(leader).await;
    let got = client.list_incidents(pb::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert!(got.incidents.iter().all(|i| i.external_id != "to-a-standby"));
    // The bundled client, given every node (standbys first), finds the leader.
    let mut addrs: Vec<String> =
        NODES.iter().filter(|id| **id != leader).map(|id| cluster.nodes[id].addr.clone()).collect();
    addrs.push(cluster.nodes[leader].addr.clone());
    let out = std::process::Command::new(lastmile_bin())
        .args(["report", "--addr", &addrs.join(","), "--lat", "28.58", "--lng", "121.37", "--external-id", "via-cli"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("external_id=via-cli"));
    let status = cluster.status();
    let roles: BTreeMap<String, String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap().to_string(), n["role"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(roles.len(), 3, "{status}");
    assert_eq!(roles.values().filter(|r| *r == "leader").count(), 1, "{status}");
}

/// Twelve rounds: a surge of reports, acknowledgements and closes on the
/// leader, the leader SIGKILLed at a random moment of it, a standby takes
/// over; then everything answered OK is there, acknowledged pages stay
/// acknowledged, no unit is held by two incidents, the epoch rose, and a
/// page left waiting reaches its terminal from the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_sigkilled_in_a_surge_round_after_round_loses_nothing_answered() {
    let Some(mut cluster) = Cluster::start("failover") else { return };
    let mut rng = SplitMix64(test_seed("cluster_failover"));
    let answered: Arc<Mutex<BTreeMap<String, pb::Incident>>> = Arc::default();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (mut leader, mut epoch) = cluster.leader().await;
    // A tier-10 page nobody answers (its timeout is 60 s): it must still
    // be waiting for its terminal after the first failover.
    let mut client = cluster.client(leader).await;
    let waiting = client.report_incident(report("waiting-page")).await.unwrap().into_inner().incident.unwrap();
    let waiting_unit = waiting.tiers.iter().find(|t| t.tier == 10).unwrap().assignments[0].unit_id.clone();
    answered.lock().unwrap().insert("waiting-page".into(), waiting.clone());
    for round in 0..12u64 {
        let endpoint = cluster.nodes[leader].endpoint();
        let mut tasks = Vec::new();
        for c in 0..6u64 {
            let (answered, acked) = (answered.clone(), acked.clone());
            let ch = channel(&endpoint).await;
            let local = SplitMix64(rng.next_u64());
            tasks.push(tokio::spawn(surge_client(ch, format!("r{round}-c{c}"), local, answered, acked)));
        }
        let kill_after_ms = 100 + rng.next_u64() % 600;
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        cluster.nodes.remove(leader); // SIGKILL, then reap
        for t in tasks {
            let _ = t.await;
        }
        let dead = leader;
        (leader, epoch) = {
            let (next, next_epoch) = cluster.leader().await;
            assert_ne!(next, dead, "round {round}: a killed node does not lead");
            assert!(next_epoch > epoch, "round {round}: epoch {next_epoch} after {epoch}");
            (next, next_epoch)
        };
        cluster.restart(dead); // back, as a standby
        let mut client = cluster.client(leader).await;
        let snapshot = answered.lock().unwrap().clone();
        let acks = acked.lock().unwrap().clone();
        verify(&mut client, &snapshot, &acks).await;
        // Reports sent again are recognised as repeats by the new leader,
        // the latest ones (still open) and the oldest (closed or open).
        for external_id in snapshot.keys().rev().take(3).chain(snapshot.keys().take(2)) {
            let again = client.report_incident(report(external_id)).await.unwrap().into_inner();
            assert!(again.duplicate, "round {round}: {external_id} not recognised by the new leader");
            assert_eq!(again.incident.unwrap().id, snapshot[external_id].id);
        }
        if round == 0 {
            // The page left waiting reaches its terminal from the new leader
            // (well within its 60 s timeout).
            let mut terminal = UnitTerminalClient::new(channel(&cluster.nodes[leader].endpoint()).await);
            let request = pb::SubscribeRequest { unit_id: waiting_unit.clone() };
            let mut pages = terminal.subscribe(request).await.unwrap().into_inner();
            let first = tokio::time::timeout(Duration::from_secs(10), pages.message()).await.unwrap().unwrap().unwrap();
            assert_eq!(
                (first.incident_id.as_str(), first.unit_id.as_str()),
                (waiting.id.as_str(), waiting_unit.as_str())
            );
        }
        println!(
            "round {round}: {dead} killed after {kill_after_ms} ms; {leader} leads with epoch {epoch}; {} incidents answered OK so far",
            snapshot.len()
        );
    }
    assert!(answered.lock().unwrap().len() > 50, "the surges reported something");

    // Timers fired once: no page timed out twice, no slot paged twice.
    let mut client = cluster.client(leader).await;
    let incidents: Vec<String> = answered.lock().unwrap().values().map(|i| i.id.clone()).collect();
    for id in incidents {
        let timeline = client
            .get_incident_timeline(pb::GetIncidentTimelineRequest { incident_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let mut seen = BTreeSet::new();
        for e in &timeline.entries {
            let once = matches!(
                e.r#type(),
                pb::EventType::UnitTimedOut | pb::EventType::UnitPaged | pb::EventType::UnitRepaged
            );
            if once {
                assert!(
                    seen.insert((e.r#type() as i32, e.unit_id.clone(), e.tier, e.attempt)),
                    "{id}: {:?} of {} (tier {}, attempt {}) twice: {timeline:?}",
                    e.r#type(),
                    e.unit_id,
                    e.tier,
                    e.attempt
                );
            }
        }
    }
}

/// A leader stopped (SIGSTOP) for longer than its lease: a standby takes
/// over, and the old leader, resumed (SIGCONT), answers nothing OK that
/// changes state, and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_resumed_after_its_lease_lapsed_cannot_commit() {
    let Some(mut cluster) = Cluster::start("fencing") else { return };
    let (old, epoch) = cluster.leader().await;
    let mut old_client = cluster.client(old).await;
    old_client.report_incident(report("before-the-stop")).await.unwrap();
    let pid = cluster.nodes[old].child.id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    signal("-STOP");
    // Everyone but the stopped node, for the new leader.
    let stopped = cluster.nodes.remove(old).unwrap();
    let (new, new_epoch) = cluster.leader().await;
    assert!(new_epoch > epoch);
    signal("-CONT");
    // The old leader's first commit after resuming is fenced: whatever it
    // answers, it is not OK, and the report is not stored.
    let answer = old_client.report_incident(report("after-the-lease")).await;
    assert!(answer.is_err(), "a deposed leader answered a change OK: {answer:?}");
    let mut client = cluster.client(new).await;
    let listed = client.list_incidents(pb::ListIncidentsRequest::default()).await.unwrap().into_inner();
    let ids: Vec<&str> = listed.incidents.iter().map(|i| i.external_id.as_str()).collect();
    assert!(ids.contains(&"before-the-stop") && !ids.contains(&"after-the-lease"), "{ids:?}");
    // And it exits (status 3) once it sees the lease gone.
    let mut stopped = stopped;
    let status = eventually(|| {
        let exited = stopped.child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(3), "deposed exit status");
}

/// `lastmile terminal --addr a,b,c`, subscribed on the leader, follows a
/// failover: after the leader's SIGKILL it resubscribes on the next leader
/// and accepts the page that leader sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_terminal_follows_the_leader_through_a_failover() {
    let Some(mut cluster) = Cluster::start("terminal") else { return };
    let (leader, _) = cluster.leader().await;
    let request = report("for-the-terminal");
    let preview = cluster
        .client(leader)
        .await
        .preview_dispatch(pb::PreviewDispatchRequest {
            location: request.location,
            kind: request.kind,
            severity: request.severity,
        })
        .await
        .unwrap()
        .into_inner();
    let unit = preview.tiers.iter().find(|t| t.tier == 10).unwrap().assignments[0].unit_id.clone();
    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let mut terminal = std::process::Command::new(lastmile_bin())
        .args(["terminal", "--addr", &addrs.join(","), "--unit", &unit, "--auto-ack", "--ack-delay-s", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribed
    cluster.nodes.remove(leader); // SIGKILL
    let (next, _) = cluster.leader().await;
    let incident = cluster.client(next).await.report_incident(request).await.unwrap().into_inner().incident.unwrap();
    let paged = incident.tiers.iter().find(|t| t.tier == 10).unwrap().assignments[0].unit_id.clone();
    assert_eq!(paged, unit, "the unit the preview chose is paged");
    let client = cluster.client(next).await;
    eventually(|| {
        let (mut client, id, unit) = (client.clone(), incident.id.clone(), unit.clone());
        async move {
            let now = client.get_incident(pb::GetIncidentRequest { id }).await.unwrap().into_inner();
            let a = now.tiers.iter().flat_map(|t| &t.assignments).find(|a| a.unit_id == unit).unwrap();
            (a.state() == pb::AssignmentState::Acknowledged).then_some(())
        }
    })
    .await;
    let _ = terminal.kill();
    let _ = terminal.wait();
}

/// Health/Watch streams open on the standbys (what a load balancer keeps)
/// do not hold up a takeover: the standby that takes the lease stops
/// standing by within a second whatever its connections do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_on_the_standbys_do_not_hold_up_the_takeover() {
    use tonic_health::pb::health_client::HealthClient;
    let Some(mut cluster) = Cluster::start("watched") else { return };
    let (leader, _) = cluster.leader().await;
    let mut watches = Vec::new();
    for (id, node) in &cluster.nodes {
        if *id != leader {
            let mut health = HealthClient::new(channel(&node.endpoint()).await);
            let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
            let mut stream = health.watch(request).await.unwrap().into_inner();
            let first = stream.message().await.unwrap().unwrap();
            assert_eq!(first.status(), tonic_health::pb::health_check_response::ServingStatus::NotServing);
            watches.push(stream);
        }
    }
    cluster.nodes.remove(leader); // SIGKILL
    let (next, _) = cluster.leader().await;
    assert_ne!(next, leader);
    drop(watches);
}
