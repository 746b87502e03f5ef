//! `lastmile serve` as a node of a cluster (`[cluster]`, the PostgreSQL
//! journal), and `lastmile cluster status`.
//!
//! A node's life: it binds its ports and stands by (answering as a standby,
//! [`lastmile_server::serve_standby`]) while it follows the journal
//! ([`Follower`]) and watches the lease. When the lease lapses (the leader
//! died, or stopped and released it) it tries to take it; the node that
//! gets it stops standing by, opens the journal fenced by its new epoch
//! over what it followed, re-arms the timers and serves. It renews the
//! lease every `cluster.renew_ms`; if it finds the lease taken by another
//! node, or cannot renew it for `cluster.lease_ms`, it exits (status 3): it
//! can commit nothing any more, and its supervisor restarts it as a standby.
//! A graceful stop (SIGTERM) releases the lease, so a standby takes over at
//! once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lastmile_server::LastmileConfig;
use lastmile_server::config::{ClusterConfig, JournalBackend};
use lastmile_store::cluster::{Acquire, Cluster, Follower, NodeInfo};
use tracing::{error, info, warn};

/// The exit status of a node that lost the lease.
pub const DEPOSED_EXIT: i32 = 3;

fn pg_options(config: &LastmileConfig, cluster: &ClusterConfig) -> anyhow::Result<lastmile_store::PgOptions> {
    let JournalBackend::Postgres(pg) = &config.journal.backend else {
        anyhow::bail!("[cluster] needs journal.backend = \"postgres\"");
    };
    Ok(lastmile_server::store::pg_options(
        pg,
        &config.journal,
        lastmile_store::Fence::Lock,
        Duration::from_millis(cluster.log_retention_ms),
    ))
}

/// Serves as a node: stands by until it leads, then leads. It prints the
/// ready lines one node prints (scripts read the ports from them) once its
/// ports answer, as a standby.
pub async fn serve(config: LastmileConfig, cluster: ClusterConfig) -> anyhow::Result<()> {
    let grpc = crate::bind_grpc(&config).await?;
    let http = crate::bind_http(&config).await?;
    let ready = crate::ready_lines(&grpc, http.as_ref())?;
    let http = http.map(Arc::new);
    let me = NodeInfo {
        node_id: cluster.node_id.clone(),
        grpc_addr: match &cluster.advertise_grpc {
            Some(a) => a.clone(),
            None => grpc.local_addr()?.to_string(),
        },
        http_addr: match (&cluster.advertise_http, &http) {
            (Some(a), _) => a.clone(),
            (None, Some(h)) => h.local_addr()?.to_string(),
            (None, None) => String::new(),
        },
    };
    let listeners = lastmile_server::Listeners { grpc: Arc::new(grpc), http };
    let options = pg_options(&config, &cluster)?;
    let recent_closed = config.limits.recent_closed_incidents;
    let (lease, follower) = {
        let (options, me) = (options.clone(), me.clone());
        tokio::task::spawn_blocking(move || {
            let lease = Cluster::connect(&options, me.clone(), cluster.lease_ms)?;
            let follower = Follower::start(&options, &me.node_id, recent_closed)?;
            Ok::<_, lastmile_store::StoreError>((lease, follower))
        })
        .await??
    };
    info!(node = %me.node_id, journal = %lease.location(), followed_lsn = follower.last_lsn(), "standing by: following the journal");
    ready();

    // Stand by until this node takes the lease.
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(None);
    let (won_tx, won_rx) = tokio::sync::oneshot::channel::<()>();
    let follow_every = Duration::from_millis(cluster.follow_ms);
    let lease_for = Duration::from_millis(cluster.lease_ms);
    let standing = tokio::task::spawn_blocking(move || {
        let _won = won_tx; // dropped on return, whatever the outcome: the standby server stops
        let mut follower = follower;
        // Since when the schema's writer lock has kept this node from the
        // lapsed lease (another node taking it this instant, or a server
        // without [cluster] if it lasts).
        let mut locked_since: Option<Instant> = None;
        loop {
            follower.poll()?;
            let leader = lease.leader()?;
            let lapsed = leader.as_ref().is_none_or(|l| l.expires_in_ms <= 0);
            leader_tx.send_replace(leader);
            if lapsed {
                match lease.try_acquire()? {
                    Acquire::Won(epoch) => {
                        follower.poll()?; // what the last leader committed before the lease changed hands
                        lease.heartbeat("leader", follower.last_lsn())?;
                        return Ok::<_, lastmile_store::StoreError>((lease, follower, epoch));
                    }
                    Acquire::Locked => {
                        let since = *locked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= lease_for {
                            warn!(
                                "the lease is free but the schema's writer lock is held: is a lastmile server without [cluster] writing this schema?"
                            );
                            locked_since = Some(Instant::now());
                        }
                    }
                    Acquire::Held => locked_since = None,
                }
            }
            lease.heartbeat("standby", follower.last_lsn())?;
            std::thread::sleep(follow_every);
        }
    });
    let until = async {
        let _ = won_rx.await;
    };
    lastmile_server::serve_standby(&listeners, &config, me.clone(), leader_rx, until).await?;
    let (lease, follower, epoch) = standing.await?.context("standing by")?;
    let took_over = Instant::now();
    info!(node = %me.node_id, epoch, followed_lsn = follower.last_lsn(), "took the lease: leading");
    let recovered = follower.recovered();
    drop(follower);
    let config = Arc::new(config);
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || lastmile_server::cluster::open_as_leader(&config, epoch, recovered))
            .await??
    };
    info!(epoch, elapsed_ms = took_over.elapsed().as_millis() as u64, "journal opened as leader");
    let lease = Arc::new(lease);
    let keeper = keep_lease(lease.clone(), epoch, &cluster, opened.journal_failure.clone());
    let result = crate::run_until_signal(config, listeners, opened, || {}).await;
    keeper.stop();
    // A graceful stop hands the lease on at once.
    let released = tokio::task::spawn_blocking(move || lease.release(epoch)).await;
    if let Ok(Err(e)) = released {
        warn!(error = %e, "could not release the lease; a standby takes it when it lapses");
    }
    result
}

struct Keeper(Arc<std::sync::atomic::AtomicBool>);

impl Keeper {
    fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Renews the lease every `renew_ms` on a thread of its own (a busy
/// runtime must not delay it); exits the process once it is lost, or once
/// the journal has failed closed.
fn keep_lease(
    lease: Arc<Cluster>,
    epoch: u64,
    cluster: &ClusterConfig,
    journal_failure: Arc<std::sync::OnceLock<String>>,
) -> Keeper {
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (every, lease_for) = (Duration::from_millis(cluster.renew_ms), Duration::from_millis(cluster.lease_ms));
    let flag = stopped.clone();
    std::thread::Builder::new()
        .name("lastmile-lease".into())
        .spawn(move || {
            let mut renewed = Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(every);
                // A leader whose journal failed closed refuses every change:
                // it hands the lease on at once (a node that can write
                // takes over) and exits.
                if let Some(failure) = journal_failure.get() {
                    error!(epoch, %failure, "the journal failed: giving up the lease and exiting");
                    let _ = lease.release(epoch);
                    std::process::exit(DEPOSED_EXIT);
                }
                match lease.renew(epoch) {
                    Ok(true) => {
                        renewed = Instant::now();
                        let _ = lease.heartbeat("leader", 0);
                    }
                    Ok(false) => {
                        let now = lease.leader().ok().flatten();
                        error!(epoch, leader = ?now.map(|l| (l.node.node_id, l.epoch)), "deposed: another node holds the lease; exiting");
                        std::process::exit(DEPOSED_EXIT);
                    }
                    Err(e) if renewed.elapsed() >= lease_for => {
                        error!(epoch, error = %e, "the lease could not be renewed within cluster.lease_ms; exiting");
                        std::process::exit(DEPOSED_EXIT);
                    }
                    Err(e) => warn!(epoch, error = %e, "lease renewal failed; retrying"),
                }
            }
        })
        .expect("spawn the lease thread");
    Keeper(stopped)
}

/// `lastmile cluster status`: the lease and every node's last heartbeat.
pub fn status(config: &LastmileConfig, json: bool) -> anyhow::Result<()> {
    let cluster = config.cluster.clone().unwrap_or_else(|| ClusterConfig::node("status".into()));
    let status = lastmile_store::cluster::status(&pg_options(config, &cluster)?)?;
    if json {
        let leader = status.leader.as_ref().map(|l| {
            serde_json::json!({"node_id": l.node.node_id, "epoch": l.epoch, "grpc": l.node.grpc_addr,
                "http": l.node.http_addr, "lease_expires_in_ms": l.expires_in_ms})
        });
        let nodes: Vec<_> = status
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({"node_id": n.node.node_id, "role": n.role, "grpc": n.node.grpc_addr,
                    "http": n.node.http_addr, "seen_ms_ago": n.seen_ms_ago, "followed_lsn": n.followed_lsn,
                    "lag_rows": if n.role == "standby" { Some(status.log_head - n.followed_lsn) } else { None }})
            })
            .collect();
        println!("{}", serde_json::json!({"leader": leader, "log_head": status.log_head, "nodes": nodes}));
        return Ok(());
    }
    match &status.leader {
        Some(l) if l.expires_in_ms > 0 => println!(
            "leader  {}  epoch {}  grpc {}  http {}  lease expires in {} ms",
            l.node.node_id, l.epoch, l.node.grpc_addr, l.node.http_addr, l.expires_in_ms
        ),
        Some(l) => println!(
            "leader  none: the lease of {} (epoch {}) lapsed {} ms ago",
            l.node.node_id, l.epoch, -l.expires_in_ms
        ),
        None => println!("leader  none: no node has led yet"),
    }
    println!("log head  {}", status.log_head);
    for n in &status.nodes {
        let lag = if n.role == "standby" {
            format!("  lag {} rows", status.log_head - n.followed_lsn)
        } else {
            String::new()
        };
        println!(
            "node  {:<12} {:<8} grpc {:<21} http {:<21} seen {} ms ago{lag}",
            n.node.node_id, n.role, n.node.grpc_addr, n.node.http_addr, n.seen_ms_ago
        );
    }
    Ok(())
}
