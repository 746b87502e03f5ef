//! How long dispatch stops when the leader dies: three `lastmile serve`
//! nodes on one PostgreSQL journal, with the shipped `[cluster]` timing
//! (lease 3 000 ms, renewed every 1 000 ms, standbys looking every 200 ms);
//! a client reports (and closes) an incident every 20 ms to whichever node
//! leads; the leader is SIGKILLed; the figure is the time from the kill to
//! the first report answered OK by the next leader. Then the dead node is
//! started again (a standby) and the next round begins.
//!
//! ```sh
//! eval "$(bash .ci/postgres.sh)"                 # a PostgreSQL server, LASTMILE_TEST_PG_URL
//! cargo build --release -p lastmile && cargo bench --bench failover
//! ```
//!
//! `LASTMILE_FAILOVER_ROUNDS` (default 20) and `LASTMILE_SEED` (the kill
//! moments) are read from the environment. Release binary only: it is
//! started from `target/release/lastmile`.

use std::time::{Duration, Instant};

use lastmile_suite::v1 as pb;
use lastmile_suite::v1::dispatch_client::DispatchClient;
use lastmile_suite::{ServedBinary, SplitMix64, report, test_seed};
use tonic::transport::Channel;

const NODES: [&str; 3] = ["a", "b", "c"];

async fn client(endpoint: &str) -> Option<DispatchClient<Channel>> {
    let endpoint = Channel::from_shared(endpoint.to_string()).ok()?;
    let channel = tokio::time::timeout(Duration::from_millis(500), endpoint.connect()).await.ok()?.ok()?;
    Some(DispatchClient::new(channel))
}

/// One report (and its close) on the node at `endpoint`: `true` if both
/// were answered OK.
async fn report_once(client: &mut DispatchClient<Channel>, external_id: &str) -> bool {
    let Ok(answer) = client.report_incident(report(external_id)).await else { return false };
    let id = answer.into_inner().incident.map(|i| i.id).unwrap_or_default();
    client.close_incident(pb::CloseIncidentRequest { id, reason: "bench".into() }).await.is_ok()
}

fn main() {
    let Some(url) = lastmile_store::test_postgres_url() else { return };
    // `cargo bench` passes `--bench`; nothing else is read from the arguments.
    let rounds: usize = std::env::var("LASTMILE_FAILOVER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let schema = "bench_failover".to_string();
    lastmile_store::drop_schema(&url, &schema).expect("empty the bench's schema");
    let args = |id: &str| {
        vec!["--postgres", &url, "--postgres-schema", &schema, "--node-id", id]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mut nodes: Vec<(&str, ServedBinary)> = NODES.iter().map(|id| (*id, ServedBinary::start(args(id)))).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rng = SplitMix64(test_seed("failover"));
    let mut gaps = Vec::new();
    let mut n = 0u64;
    for round in 0..rounds {
        let endpoints: Vec<(String, String)> = nodes.iter().map(|(id, s)| (id.to_string(), s.endpoint())).collect();
        let (leader, took) = runtime.block_on(async {
            // Report until the run is steady on the leader, for 0.5-1.5 s.
            let steady_for = Duration::from_millis(500 + rng.next_u64() % 1000);
            let mut leader = None;
            let mut steady_since = None;
            loop {
                for (id, endpoint) in &endpoints {
                    if leader.as_ref().is_some_and(|l: &String| l != id) {
                        continue;
                    }
                    let Some(mut c) = client(endpoint).await else { continue };
                    n += 1;
                    if report_once(&mut c, &format!("fo-{n}")).await {
                        leader = Some(id.clone());
                        steady_since.get_or_insert_with(Instant::now);
                    }
                }
                if steady_since.is_some_and(|s| s.elapsed() >= steady_for) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let leader = leader.unwrap();
            // SIGKILL the leader; then report every 20 ms to the others until one answers OK.
            let at = nodes.iter().position(|(id, _)| *id == leader).unwrap();
            let killed = Instant::now();
            drop(nodes.remove(at).1);
            let others: Vec<&(String, String)> = endpoints.iter().filter(|(id, _)| *id != leader).collect();
            let mut clients: Vec<Option<DispatchClient<Channel>>> = vec![None; others.len()];
            loop {
                for (i, (_, endpoint)) in others.iter().enumerate() {
                    if clients[i].is_none() {
                        clients[i] = client(endpoint).await;
                    }
                    if let Some(c) = clients[i].as_mut() {
                        n += 1;
                        if report_once(c, &format!("fo-{n}")).await {
                            return (leader, killed.elapsed());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        println!(
            "round {round:>2}: killed {leader}; first report answered OK by the next leader after {:>5} ms",
            took.as_millis()
        );
        gaps.push(took);
        let id = NODES.iter().find(|id| **id == leader).unwrap();
        nodes.push((id, ServedBinary::start(args(id))));
    }
    gaps.sort();
    let at = |q: f64| gaps[((gaps.len() as f64 * q).ceil() as usize).clamp(1, gaps.len()) - 1].as_millis();
    println!(
        "failover over {} rounds: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (target: p99 < 5000 ms)",
        gaps.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        gaps.last().unwrap().as_millis()
    );
}
