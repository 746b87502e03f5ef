//! A cluster of lastmile nodes on one PostgreSQL schema: one leader at a
//! time, by a lease in the database, and standbys that follow the journal.
//!
//! **The lease** is one row (`lease`): the leader's node id, its addresses,
//! an epoch and an expiry. Time is the database's (`now()`), so the nodes'
//! clocks do not matter. A node takes the lease only once it has expired,
//! and taking it raises the epoch; the leader renews it well before it
//! lapses. **Fencing**: the leader's store ([`crate::Fence::Epoch`]) locks
//! the lease row (shared) in every commit and apply and writes only while
//! the row still has its epoch. Taking the lease updates that row, so it
//! waits for a commit in flight; and a commit after it sees the new epoch
//! and inserts nothing. A deposed leader that wakes up (a long GC pause, a
//! SIGSTOP, a partition) therefore cannot commit anything.
//!
//! **Following**: a standby reads the live state once, like a recovery,
//! then the log's new rows every `cluster.follow_ms`, into a [`Follower`]
//! mirror. At takeover it catches up the last rows and starts from the
//! mirror instead of reading everything again. The leader keeps applied log
//! rows for `cluster.log_retention_ms`; a standby that falls further behind
//! (its last row was deleted) reads the live state afresh.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::postgres::{PgRuntime, Schema, log_row, open_session, pg_err};
use crate::{PgOptions, Record, Recovered, StoreError};

/// A node as it tells the others where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    /// Where clients reach its gRPC and its HTTP gateway.
    pub grpc_addr: String,
    pub http_addr: String,
}

/// Who holds the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub node: NodeInfo,
    pub epoch: u64,
    /// Milliseconds until the lease lapses (negative: lapsed).
    pub expires_in_ms: i64,
}

/// One node's last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: NodeInfo,
    /// `leader` or `standby`.
    pub role: String,
    /// Milliseconds since its last heartbeat.
    pub seen_ms_ago: i64,
    /// The last log row it had read (a standby) or written (the leader).
    pub followed_lsn: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub leader: Option<LeaderInfo>,
    pub nodes: Vec<NodeStatus>,
    /// The last log row written.
    pub log_head: i64,
}

/// What an attempt to take the lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// Taken, with this epoch.
    Won(u64),
    /// Another node's lease runs.
    Held,
    /// The schema's writer lock is held: by another node taking the lease
    /// this instant, or by a lastmile server without `[cluster]` (if it
    /// lasts).
    Locked,
}

/// A node's session for the lease and the heartbeats.
pub struct Cluster {
    rt: Arc<PgRuntime>,
    client: Arc<Client>,
    location: String,
    node: NodeInfo,
    lease_ms: i64,
    /// The key of the one-server writer lock ([`crate::Fence::Lock`]).
    lock_key: String,
}

fn leader_of(row: &tokio_postgres::Row) -> LeaderInfo {
    LeaderInfo {
        node: NodeInfo { node_id: row.get(0), grpc_addr: row.get(2), http_addr: row.get(3) },
        epoch: row.get::<_, i64>(1) as u64,
        expires_in_ms: row.get::<_, f64>(4) as i64,
    }
}

impl Cluster {
    /// Connects (creating the schema if it is not there) as `node`, whose
    /// leases last `lease_ms`.
    pub fn connect(options: &PgOptions, node: NodeInfo, lease_ms: u64) -> Result<Cluster, StoreError> {
        let (rt, client, location) =
            open_session(options, &format!("lastmile lease {}", node.node_id), Schema::Create)?;
        let lock_key = format!("lastmile:{}", options.schema);
        Ok(Cluster { rt, client, location, node, lease_ms: lease_ms as i64, lock_key })
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Takes the lease if nobody holds it or it has lapsed. Not while a
    /// server without `[cluster]` writes the schema: it holds the
    /// one-server lock, which this takes for its transaction, so neither
    /// can start while the other runs.
    pub fn try_acquire(&self) -> Result<Acquire, StoreError> {
        let c = self.client.clone();
        let (node, lease_ms, key) = (self.node.clone(), self.lease_ms, self.lock_key.clone());
        let row = self
            .rt
            .run(async move {
                c.batch_execute("BEGIN").await?;
                let locked: bool = c.query_one("SELECT pg_try_advisory_xact_lock(hashtext($1))", &[&key]).await?.get(0);
                if !locked {
                    c.batch_execute("ROLLBACK").await?;
                    return Ok(Err(()));
                }
                let row = c
                    .query_opt(
                        "INSERT INTO lease (id, node_id, epoch, expires_at, grpc_addr, http_addr) \
                     VALUES (1, $1, 1, now() + $2::bigint * interval '1 millisecond', $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET node_id = excluded.node_id, epoch = lease.epoch + 1, \
                     expires_at = excluded.expires_at, grpc_addr = excluded.grpc_addr, http_addr = excluded.http_addr \
                     WHERE lease.expires_at < now() \
                     RETURNING epoch",
                        &[&node.node_id, &lease_ms, &node.grpc_addr, &node.http_addr],
                    )
                    .await?;
                c.batch_execute("COMMIT").await?;
                Ok::<_, tokio_postgres::Error>(Ok(row))
            })
            .map_err(pg_err(&self.location, "cannot take the lease"))?;
        Ok(match row {
            Ok(Some(row)) => Acquire::Won(row.get::<_, i64>(0) as u64),
            Ok(None) => Acquire::Held,
            Err(()) => Acquire::Locked,
        })
    }

    /// Renews the lease this node holds with `epoch`; `false` once another
    /// node has taken it (this one is deposed).
    pub fn renew(&self, epoch: u64) -> Result<bool, StoreError> {
        let c = self.client.clone();
        let (node_id, lease_ms) = (self.node.node_id.clone(), self.lease_ms);
        let n = self
            .rt
            .run(async move {
                c.execute(
                    "UPDATE lease SET expires_at = now() + $2::bigint * interval '1 millisecond' \
                     WHERE id = 1 AND node_id = $1 AND epoch = $3",
                    &[&node_id, &lease_ms, &(epoch as i64)],
                )
                .await
            })
            .map_err(pg_err(&self.location, "cannot renew the lease"))?;
        Ok(n == 1)
    }

    /// Gives the lease up at once (a graceful stop), so a standby need not
    /// wait for it to lapse.
    pub fn release(&self, epoch: u64) -> Result<(), StoreError> {
        let c = self.client.clone();
        let node_id = self.node.node_id.clone();
        self.rt
            .run(async move {
                c.execute(
                    "UPDATE lease SET expires_at = now() - interval '1 millisecond' \
                     WHERE id = 1 AND node_id = $1 AND epoch = $2",
                    &[&node_id, &(epoch as i64)],
                )
                .await
            })
            .map_err(pg_err(&self.location, "cannot release the lease"))?;
        Ok(())
    }

    pub fn leader(&self) -> Result<Option<LeaderInfo>, StoreError> {
        let c = self.client.clone();
        self.rt.run(async move { read_leader(&c).await }).map_err(pg_err(&self.location, "cannot read the lease"))
    }

    /// Records that this node is alive, in `role`, at log row `lsn`.
    pub fn heartbeat(&self, role: &str, lsn: i64) -> Result<(), StoreError> {
        let c = self.client.clone();
        let (node, role) = (self.node.clone(), role.to_string());
        self.rt
            .run(async move {
                c.execute(
                    "INSERT INTO nodes (node_id, role, grpc_addr, http_addr, seen_at, followed_lsn) \
                     VALUES ($1, $2, $3, $4, now(), $5) ON CONFLICT (node_id) DO UPDATE SET role = excluded.role, \
                     grpc_addr = excluded.grpc_addr, http_addr = excluded.http_addr, seen_at = now(), \
                     followed_lsn = excluded.followed_lsn",
                    &[&node.node_id, &role, &node.grpc_addr, &node.http_addr, &lsn],
                )
                .await
            })
            .map_err(pg_err(&self.location, "cannot record the heartbeat"))?;
        Ok(())
    }
}

/// Who holds the lease (and when it lapses), on `c`.
async fn read_leader(c: &Client) -> Result<Option<LeaderInfo>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT node_id, epoch, grpc_addr, http_addr, \
             (extract(epoch FROM expires_at - now()) * 1000)::float8 FROM lease WHERE id = 1",
            &[],
        )
        .await?;
    Ok(row.as_ref().map(leader_of))
}

/// The lease, every node's last heartbeat, and the log's head, read on a
/// session of its own. Refuses a schema no node has started on (it does
/// not create one).
pub fn status(options: &PgOptions) -> Result<ClusterStatus, StoreError> {
    let (rt, c, location) = open_session(options, "lastmile cluster status", Schema::Existing)?;
    let (leader, rows, head) = rt
        .run(async move {
            let leader = read_leader(&c).await?;
            let rows = c
                .query(
                    "SELECT node_id, role, grpc_addr, http_addr, \
                     (extract(epoch FROM now() - seen_at) * 1000)::float8, followed_lsn FROM nodes ORDER BY node_id",
                    &[],
                )
                .await?;
            let head: i64 = c.query_one("SELECT coalesce(max(lsn), 0) FROM log", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>((leader, rows, head))
        })
        .map_err(pg_err(&location, "cannot read the cluster's status"))?;
    let nodes = rows
        .iter()
        .map(|r| NodeStatus {
            node: NodeInfo { node_id: r.get(0), grpc_addr: r.get(2), http_addr: r.get(3) },
            role: r.get(1),
            seen_ms_ago: r.get::<_, f64>(4) as i64,
            followed_lsn: r.get(5),
        })
        .collect();
    Ok(ClusterStatus { leader, nodes, log_head: head })
}

/// The live state a standby keeps, built from the journal and its log.
#[derive(Default)]
struct Mirror {
    incidents: BTreeMap<u64, Vec<u8>>,
    units: BTreeMap<String, Vec<u8>>,
    /// Open incidents' timelines, by incident and entry number.
    timelines: BTreeMap<u64, BTreeMap<u32, Vec<u8>>>,
    /// The most recently closed (highest sequence numbers), at most `cap`.
    recent_closed: BTreeMap<u64, Vec<u8>>,
    cap: usize,
    calibration: Option<Vec<u8>>,
    feed_seq: u64,
    commits: u64,
    records: u64,
    history_len: u64,
}

impl Mirror {
    fn add(&mut self, batch: Vec<Record>, feed_seq: u64) {
        let mut archived = Vec::new();
        for record in batch {
            self.records += 1;
            match record {
                Record::Incident { seq, body } => {
                    self.incidents.insert(seq, body);
                }
                Record::Archive { seq, body, .. } => {
                    self.incidents.remove(&seq);
                    self.recent_closed.insert(seq, body);
                    while self.recent_closed.len() > self.cap {
                        self.recent_closed.pop_first();
                    }
                    self.history_len += 1;
                    archived.push(seq);
                }
                Record::Unit { id, body } => {
                    self.units.insert(id, body);
                }
                Record::Timeline { incident_seq, n, body, .. } => {
                    self.timelines.entry(incident_seq).or_default().insert(n, body);
                }
                Record::Calibration { body } => self.calibration = Some(body),
            }
        }
        // Entries of an operation that closed the incident go with it.
        for seq in archived {
            self.timelines.remove(&seq);
        }
        self.commits += 1;
        self.feed_seq = self.feed_seq.max(feed_seq);
    }
}

/// A standby's copy of the live state, kept current from the log.
pub struct Follower {
    rt: Arc<PgRuntime>,
    client: Arc<Client>,
    location: String,
    mirror: Mirror,
    last_lsn: i64,
    /// Full reads of the live state so far (1 at start; more when it fell
    /// behind the log's retention).
    pub full_reads: u64,
}

/// Rows read from the log per poll, at most (the rest at the next).
const FOLLOW_BATCH_ROWS: i64 = 2000;

impl Follower {
    /// Connects and reads the live state (as a recovery does, keeping the
    /// `recent_closed` most recently closed).
    pub fn start(options: &PgOptions, node_id: &str, recent_closed: usize) -> Result<Follower, StoreError> {
        let (rt, client, location) = open_session(options, &format!("lastmile follower {node_id}"), Schema::Existing)?;
        let mut follower = Follower {
            rt,
            client,
            location,
            mirror: Mirror { cap: recent_closed, ..Mirror::default() },
            last_lsn: 0,
            full_reads: 0,
        };
        follower.read_all()?;
        Ok(follower)
    }

    /// The last log row taken in.
    pub fn last_lsn(&self) -> i64 {
        self.last_lsn
    }

    /// The live state, the tables' and then the log's not yet applied, in
    /// one snapshot.
    fn read_all(&mut self) -> Result<(), StoreError> {
        let c = self.client.clone();
        let cap = self.mirror.cap as i64;
        let rows = self
            .rt
            .run(async move {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
                let read = async {
                    let meta: BTreeMap<String, i64> = c
                        .query("SELECT key, value FROM meta", &[])
                        .await?
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    let incidents = c.query("SELECT seq, body FROM incidents", &[]).await?;
                    let units = c.query("SELECT id, body FROM units", &[]).await?;
                    let timelines = c
                        .query(
                            "SELECT t.incident_seq, t.n, t.body FROM incidents i JOIN timeline t ON t.incident_seq = i.seq",
                            &[],
                        )
                        .await?;
                    let closed = c.query("SELECT seq, body FROM history ORDER BY seq DESC LIMIT $1", &[&cap]).await?;
                    let calibration = c.query_opt("SELECT body FROM calibration WHERE id = 1", &[]).await?;
                    let applied = meta.get("applied_lsn").copied().unwrap_or(0);
                    let log = c
                        .query("SELECT lsn, feed_seq, body FROM log WHERE lsn > $1 ORDER BY lsn", &[&applied])
                        .await?;
                    Ok::<_, tokio_postgres::Error>((meta, incidents, units, timelines, closed, calibration, log))
                }
                .await;
                let _ = c.batch_execute("COMMIT").await;
                read
            })
            .map_err(pg_err(&self.location, "cannot read the live state"))?;
        let (meta, incidents, units, timelines, closed, calibration, log_rows) = rows;
        let counter = |key: &str| meta.get(key).copied().unwrap_or(0).max(0) as u64;
        let mut mirror = Mirror {
            cap: self.mirror.cap,
            calibration: calibration.map(|r| r.get(0)),
            feed_seq: counter("feed_seq"),
            commits: counter("commits"),
            records: counter("records"),
            history_len: counter("history_len"),
            ..Mirror::default()
        };
        for r in &incidents {
            mirror.incidents.insert(r.get::<_, i64>(0) as u64, r.get(1));
        }
        for r in &units {
            mirror.units.insert(r.get(0), r.get(1));
        }
        for r in &timelines {
            let (seq, n) = (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u32);
            mirror.timelines.entry(seq).or_default().insert(n, r.get(2));
        }
        for r in &closed {
            mirror.recent_closed.insert(r.get::<_, i64>(0) as u64, r.get(1));
        }
        self.mirror = mirror;
        self.last_lsn = meta.get("applied_lsn").copied().unwrap_or(0);
        self.take_in(&log_rows)?;
        self.full_reads += 1;
        Ok(())
    }

    fn take_in(&mut self, rows: &[tokio_postgres::Row]) -> Result<(), StoreError> {
        for row in rows {
            let (lsn, feed_seq, batch) = log_row(row, &self.location)?;
            self.mirror.add(batch, feed_seq);
            self.last_lsn = lsn;
        }
        Ok(())
    }

    /// Takes in the log rows written since the last poll (reading the live
    /// state afresh if the rows it needs were deleted): how many.
    pub fn poll(&mut self) -> Result<usize, StoreError> {
        let mut taken = 0;
        loop {
            let c = self.client.clone();
            let last = self.last_lsn;
            let (pruned, rows) = self
                .rt
                .run(async move {
                    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
                    let read = async {
                        let pruned: i64 = c
                            .query_one(
                                "SELECT coalesce((SELECT value FROM meta WHERE key = 'log_pruned_upto'), 0)",
                                &[],
                            )
                            .await?
                            .get(0);
                        let rows = c
                            .query(
                                "SELECT lsn, feed_seq, body FROM log WHERE lsn > $1 ORDER BY lsn LIMIT $2",
                                &[&last, &FOLLOW_BATCH_ROWS],
                            )
                            .await?;
                        Ok::<_, tokio_postgres::Error>((pruned, rows))
                    }
                    .await;
                    let _ = c.batch_execute("COMMIT").await;
                    read
                })
                .map_err(pg_err(&self.location, "cannot follow the log"))?;
            if pruned > last {
                self.read_all()?;
                return Ok(taken + 1);
            }
            taken += rows.len();
            self.take_in(&rows)?;
            if (rows.len() as i64) < FOLLOW_BATCH_ROWS {
                return Ok(taken);
            }
        }
    }

    /// The live state as a recovery would read it.
    pub fn recovered(&self) -> Recovered {
        let m = &self.mirror;
        Recovered {
            incidents: m.incidents.values().cloned().collect(),
            units: m.units.values().cloned().collect(),
            recent_closed: m.recent_closed.values().cloned().collect(),
            timelines: m
                .timelines
                .iter()
                .filter(|(seq, _)| m.incidents.contains_key(seq))
                .flat_map(|(seq, entries)| entries.values().map(move |body| (*seq, body.clone())))
                .collect(),
            feed_seq: m.feed_seq,
            commits: m.commits,
            records: m.records,
            history_len: m.history_len,
            calibration: m.calibration.clone(),
        }
    }
}
