//! The PostgreSQL store: the same contract as SQLite, on a database server
//! that several lastmile nodes can reach.
//!
//! The layout and the commit are SQLite's: a group commit is one row
//! appended to `log` in a transaction of its own (PostgreSQL's
//! `synchronous_commit = on`, its default, makes the server flush its
//! write-ahead log before the commit returns), and the tables are written
//! from the log later ([`ApplyPolicy`], [`crate::log::Pending`]), many
//! commits at once, each apply one transaction that also deletes the log
//! rows it applied. A crash between the two loses nothing: the next open
//! applies what the log holds.
//!
//! Everything lives in one PostgreSQL schema (`journal.schema`, default
//! `lastmile`), created by the store with its tables; its version is in
//! `schema_version` and a newer one is refused. One writer per schema:
//! the writer's session holds an advisory lock for as long as the store is
//! open (the lock file's part with SQLite), so a second server on the same
//! schema fails at start, and the lock goes with the session if the server
//! dies. A lost connection fails the journal closed, as an I/O error does
//! with SQLite: the session and its lock may be gone, and writing on from a
//! new session could race a server that took over.
//!
//! The client is tokio-postgres. It runs on a small runtime of its own
//! (one thread, `lastmile-pg`), so the store's synchronous methods work from
//! any thread: the journal's writer thread, a blocking task, or a test.
//! History readers share a deadpool pool of `journal.pool_size`
//! connections.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, NoTls, Statement};

use crate::log;
use crate::{ApplyPolicy, ClosedQuery, HistoryReader, JournalStore, Record, Recovered, StoreError};

/// The schema this build writes (1: the tables of SQLite's schema 4).
const SCHEMA_VERSION: i32 = 1;

/// How to reach the database and the bounds of the connections.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database` or a key=value string.
    pub url: String,
    /// The PostgreSQL schema of lastmile's tables (an identifier: lower-case
    /// letters, digits and `_`).
    pub schema: String,
    /// Connections for history reads, at most (the writer has its own).
    pub pool_size: usize,
    /// Connecting, and waiting for a pooled connection, at most this long.
    pub connect_timeout: Duration,
    /// Any one statement at most this long; then it fails (a commit then
    /// fails the journal closed rather than hang every request).
    pub statement_timeout: Duration,
    pub apply: ApplyPolicy,
    /// What keeps a second writer out.
    pub fence: Fence,
    /// Applied log rows are kept this long, for standbys following the
    /// log (`cluster.log_retention_ms`); zero deletes them at the apply.
    pub log_retention: Duration,
}

/// How a store makes sure it is the only writer of its schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// One server on the schema: its writer session holds an advisory lock.
    Lock,
    /// A cluster's leader, elected with this epoch ([`crate::cluster`]):
    /// every commit and apply checks, in the same statement or transaction,
    /// that the lease still has it, so a deposed leader commits nothing.
    Epoch(u64),
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// Whether `name` can be a schema name here: what the store quotes into
/// its SQL, so only this simple shape is accepted.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The runtime the client runs on. Shut down in the background when the
/// last user lets go (a runtime dropped inside another one's task panics).
pub(crate) struct PgRuntime(Option<tokio::runtime::Runtime>);

impl PgRuntime {
    pub(crate) fn new() -> std::io::Result<Arc<PgRuntime>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lastmile-pg")
            .enable_all()
            .build()?;
        Ok(Arc::new(PgRuntime(Some(rt))))
    }

    /// Runs `fut` on the runtime and waits for it on this thread (a plain
    /// channel, so this may be called from within another runtime too).
    pub(crate) fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.0.as_ref().expect("runtime present until dropped").spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("the PostgreSQL client's runtime stopped")
    }
}

impl Drop for PgRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Drops `schema` and everything in it (a benchmark's or a test's fresh
/// start; never called by the server).
pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    if !valid_schema_name(schema) {
        return Err(StoreError::Postgres {
            at: "schema".into(),
            what: "not a usable schema name",
            detail: schema.into(),
        });
    }
    let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| StoreError::Postgres {
        at: "url".into(),
        what: "not a PostgreSQL URL",
        detail: e.to_string(),
    })?;
    let location = location_of(&config, schema);
    let rt = PgRuntime::new().map_err(|e| StoreError::Io { path: location.clone(), what: e.to_string() })?;
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    rt.run(async move {
        let client = connect(config, location.clone()).await?;
        client.batch_execute(&sql).await.map_err(pg_err(&location, "cannot drop the schema"))
    })
}

/// The writer's prepared statements.
struct Prepared {
    insert_log: Statement,
}

pub struct PostgresStore {
    rt: Arc<PgRuntime>,
    client: Arc<Client>,
    prepared: Prepared,
    /// The readers' sessions' settings.
    readers: tokio_postgres::Config,
    options: PgOptions,
    location: String,
    pending: log::Pending,
    pending_since: Option<Instant>,
    /// The log row being written (kept between commits).
    row: Vec<u8>,
}

/// Where a database is, for messages: host, port, database and schema,
/// never the password.
pub(crate) fn location_of(config: &tokio_postgres::Config, schema: &str) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db} (schema {schema})")
}

pub(crate) fn pg_err<'a>(
    location: &'a str,
    what: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError + 'a {
    move |e| {
        // The server's own message (with its SQLSTATE) says most.
        let detail = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        StoreError::Postgres { at: location.to_string(), what, detail }
    }
}

/// The tables, in `schema` (the SQLite schema's, in PostgreSQL's types).
fn schema_sql(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
        SET search_path = \"{schema}\";
        CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);
        CREATE TABLE IF NOT EXISTS incidents (seq bigint PRIMARY KEY, body bytea NOT NULL);
        CREATE TABLE IF NOT EXISTS units (id text PRIMARY KEY, body bytea NOT NULL);
        CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL);
        CREATE TABLE IF NOT EXISTS history (
            seq bigint PRIMARY KEY,
            reported_at_ms bigint NOT NULL,
            closed_at_ms bigint NOT NULL,
            body bytea NOT NULL);
        CREATE INDEX IF NOT EXISTS history_by_reported ON history (reported_at_ms);
        CREATE INDEX IF NOT EXISTS history_by_closed ON history (closed_at_ms);
        CREATE TABLE IF NOT EXISTS timeline (
            incident_seq bigint NOT NULL,
            n bigint NOT NULL,
            at_ms bigint NOT NULL,
            body bytea NOT NULL,
            PRIMARY KEY (incident_seq, n));
        CREATE TABLE IF NOT EXISTS outcomes (
            seq bigint PRIMARY KEY,
            reported_at_ms bigint NOT NULL,
            closed_at_ms bigint NOT NULL,
            body bytea NOT NULL);
        CREATE INDEX IF NOT EXISTS outcomes_by_reported ON outcomes (reported_at_ms);
        CREATE INDEX IF NOT EXISTS outcomes_by_closed ON outcomes (closed_at_ms);
        CREATE TABLE IF NOT EXISTS calibration (id integer PRIMARY KEY CHECK (id = 1), body bytea NOT NULL);
        CREATE TABLE IF NOT EXISTS log (
            lsn bigserial PRIMARY KEY,
            epoch bigint NOT NULL,
            committed_at timestamptz NOT NULL DEFAULT now(),
            feed_seq bigint NOT NULL,
            body bytea NOT NULL);
        CREATE TABLE IF NOT EXISTS lease (
            id integer PRIMARY KEY CHECK (id = 1),
            node_id text NOT NULL,
            epoch bigint NOT NULL,
            expires_at timestamptz NOT NULL,
            grpc_addr text NOT NULL,
            http_addr text NOT NULL);
        CREATE TABLE IF NOT EXISTS nodes (
            node_id text PRIMARY KEY,
            role text NOT NULL,
            grpc_addr text NOT NULL,
            http_addr text NOT NULL,
            seen_at timestamptz NOT NULL,
            followed_lsn bigint NOT NULL);"
    )
}

/// Connects one session with the schema on its search path and the
/// statement timeout set, its connection driven on `rt`.
pub(crate) async fn connect(config: tokio_postgres::Config, location: String) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_err(&location, "cannot connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(journal = %location, error = %e, "PostgreSQL connection lost");
        }
    });
    Ok(client)
}

/// A session's settings from `options`: the URL parsed, the connect
/// timeout, the schema on the search path, the statement timeout, and
/// `application_name` (which session is which in pg_stat_activity) unless
/// the URL names one (then `true`).
pub(crate) fn session_config(
    options: &PgOptions,
    application: &str,
) -> Result<(tokio_postgres::Config, bool), StoreError> {
    if !valid_schema_name(&options.schema) {
        return Err(StoreError::Postgres {
            at: "journal.schema".into(),
            what: "not a usable schema name",
            detail: format!("{:?}: lower-case letters, digits and _ only, at most 63", options.schema),
        });
    }
    let mut config: tokio_postgres::Config = options.url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Postgres { at: "journal.url".into(), what: "not a PostgreSQL URL", detail: e.to_string() }
    })?;
    config.connect_timeout(options.connect_timeout);
    config.options(format!(
        "-c search_path={} -c statement_timeout={}",
        options.schema,
        options.statement_timeout.as_millis()
    ));
    let named = config.get_application_name().is_some();
    if !named {
        config.application_name(application);
    }
    Ok((config, named))
}

/// Whether [`open_session`] creates the schema if it is not there, or
/// refuses a schema without lastmile's tables.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    Create,
    Existing,
}

/// A session of its own (named `application` in pg_stat_activity) on a
/// runtime of its own: what the lease, a follower and `cluster status`
/// each open.
pub(crate) fn open_session(
    options: &PgOptions,
    application: &str,
    schema: Schema,
) -> Result<(Arc<PgRuntime>, Arc<Client>, String), StoreError> {
    let (config, _) = session_config(options, application)?;
    let location = location_of(&config, &options.schema);
    let rt = PgRuntime::new().map_err(|e| StoreError::Io { path: location.clone(), what: e.to_string() })?;
    let (loc, name) = (location.clone(), options.schema.clone());
    let client = rt.run(async move {
        let client = connect(config, loc.clone()).await?;
        match schema {
            Schema::Create => create_schema(&client, &name, &loc).await?,
            Schema::Existing => {
                let there: bool = client
                    .query_one("SELECT to_regclass('lease') IS NOT NULL", &[])
                    .await
                    .map_err(pg_err(&loc, "cannot read the schema"))?
                    .get(0);
                if !there {
                    return Err(StoreError::Postgres {
                        at: loc,
                        what: "no lastmile journal here",
                        detail: "no lastmile tables in this schema (a node creates them when it first starts)".into(),
                    });
                }
            }
        }
        Ok::<_, StoreError>(Arc::new(client))
    })?;
    Ok((rt, client, location))
}

/// A `log` row read back (`lsn, feed_seq, body`): its number, feed
/// position and records.
pub(crate) fn log_row(row: &tokio_postgres::Row, location: &str) -> Result<(i64, u64, Vec<Record>), StoreError> {
    let (lsn, feed_seq, body): (i64, i64, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
    let batch = log::decode(&body).map_err(|e| StoreError::Postgres {
        at: location.to_string(),
        what: "malformed log row",
        detail: format!("row {lsn}: {e}"),
    })?;
    Ok((lsn, feed_seq.max(0) as u64, batch))
}

/// `body` in a transaction on `client`: committed if it succeeds, rolled
/// back if not.
async fn in_transaction<T>(
    client: &Client,
    location: &str,
    what: &'static str,
    body: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    client.batch_execute("BEGIN").await.map_err(pg_err(location, what))?;
    match body.await {
        Ok(value) => client.batch_execute("COMMIT").await.map(|()| value).map_err(pg_err(location, what)),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Creates the schema and its tables if they are not there (one
/// transaction, so two nodes starting at once do not race), and refuses
/// one written by a newer lastmile.
pub(crate) async fn create_schema(client: &Client, schema: &str, loc: &str) -> Result<(), StoreError> {
    // Serialised by a transaction-scoped advisory lock: CREATE ... IF NOT
    // EXISTS is not safe against a concurrent twin.
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('lastmile-schema:{schema}')); {} COMMIT;",
            schema_sql(schema)
        ))
        .await
        .map_err(pg_err(loc, "cannot create the schema"))?;
    let loc = loc.to_string();
    let version: Option<i32> = client
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(pg_err(&loc, "cannot read the schema version"))?
        .and_then(|r| r.get(0));
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Postgres {
                at: loc,
                what: "schema too new",
                detail: format!("schema version {v} is newer than this lastmile's ({SCHEMA_VERSION})"),
            });
        }
        Some(_) => {}
        None => {
            client
                .execute("INSERT INTO schema_version (version) VALUES ($1)", &[&SCHEMA_VERSION])
                .await
                .map_err(pg_err(&loc, "cannot write the schema version"))?;
        }
    }
    Ok(())
}

/// Refuses unless the lease holds `epoch` now.
async fn check_epoch(client: &Client, epoch: u64, loc: &str) -> Result<(), StoreError> {
    let now: Option<i64> = client
        .query_opt("SELECT epoch FROM lease WHERE id = 1", &[])
        .await
        .map_err(pg_err(loc, "cannot read the lease"))?
        .map(|r| r.get(0));
    if now != Some(epoch as i64) {
        return Err(fenced(loc, epoch, now));
    }
    Ok(())
}

/// Inside a transaction: with an epoch fence, locks the lease row (shared,
/// until the transaction ends) and refuses unless it still has the epoch.
async fn fenced_here(client: &Client, fence: Fence, loc: &str) -> Result<(), StoreError> {
    let Fence::Epoch(epoch) = fence else { return Ok(()) };
    let now: Option<i64> = client
        .query_opt("SELECT epoch FROM lease WHERE id = 1 FOR SHARE", &[])
        .await
        .map_err(pg_err(loc, "cannot read the lease"))?
        .map(|r| r.get(0));
    if now != Some(epoch as i64) {
        return Err(fenced(loc, epoch, now));
    }
    Ok(())
}

fn fenced(loc: &str, epoch: u64, now: Option<i64>) -> StoreError {
    StoreError::Postgres {
        at: loc.to_string(),
        what: "fenced",
        detail: format!(
            "this node led with epoch {epoch}, and the lease now has {}: another node leads",
            now.map_or("none".to_string(), |e| e.to_string())
        ),
    }
}

impl PostgresStore {
    /// Connects, takes the schema's writer lock, creates or checks the
    /// schema, and applies what a crash left in the log. Refuses a URL it
    /// cannot parse, a server it cannot reach within the timeout, a schema
    /// another server writes, and one written by a newer lastmile.
    pub fn open(options: PgOptions) -> Result<Self, StoreError> {
        let (config, named) = session_config(&options, &format!("lastmile writer {}", options.schema))?;
        let mut readers = config.clone();
        if !named {
            readers.application_name(format!("lastmile reader {}", options.schema));
        }
        let location = location_of(&config, &options.schema);
        let rt = PgRuntime::new().map_err(|e| StoreError::Io { path: location.clone(), what: e.to_string() })?;
        let (cfg, loc, schema, fence) = (config.clone(), location.clone(), options.schema.clone(), options.fence);
        let (client, prepared) = rt.run(async move {
            let client = connect(cfg, loc.clone()).await?;
            create_schema(&client, &schema, &loc).await?;
            match fence {
                Fence::Lock => {
                    let locked: bool = client
                        .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&format!("lastmile:{schema}")])
                        .await
                        .map_err(pg_err(&loc, "cannot take the writer lock"))?
                        .get(0);
                    if !locked {
                        return Err(StoreError::Postgres {
                            at: loc,
                            what: "cannot lock the journal",
                            detail: "another lastmile server is writing this schema".into(),
                        });
                    }
                    // A cluster's leader holds no such lock but the lease.
                    let leading = client
                        .query_opt("SELECT node_id, epoch FROM lease WHERE id = 1 AND expires_at > now()", &[])
                        .await
                        .map_err(pg_err(&loc, "cannot read the lease"))?;
                    if let Some(row) = leading {
                        let (node, epoch): (String, i64) = (row.get(0), row.get(1));
                        return Err(StoreError::Postgres {
                            at: loc,
                            what: "cannot lock the journal",
                            detail: format!(
                                "a cluster writes this schema (node {node} leads, epoch {epoch}): run this server with [cluster]"
                            ),
                        });
                    }
                }
                Fence::Epoch(epoch) => check_epoch(&client, epoch, &loc).await?,
            }
            let insert_log = client
                .prepare(match fence {
                    Fence::Lock => "INSERT INTO log (epoch, feed_seq, body) VALUES ($1, $2, $3) RETURNING lsn",
                    // The lease row is locked (shared) until the commit: a
                    // takeover's update of it waits for this commit, and a
                    // commit after a takeover sees the new epoch and
                    // inserts nothing.
                    Fence::Epoch(_) => {
                        "WITH l AS (SELECT epoch FROM lease WHERE id = 1 FOR SHARE) \
                         INSERT INTO log (epoch, feed_seq, body) SELECT $1, $2, $3 FROM l WHERE l.epoch = $1 \
                         RETURNING lsn"
                    }
                })
                .await
                .map_err(pg_err(&loc, "cannot prepare"))?;
            Ok::<_, StoreError>((Arc::new(client), Prepared { insert_log }))
        })?;
        let mut store = PostgresStore {
            rt,
            client,
            prepared,
            readers,
            options,
            location,
            pending: log::Pending::default(),
            pending_since: None,
            row: Vec::new(),
        };
        store.replay_log()?;
        Ok(store)
    }

    fn err(&self, what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
        pg_err(&self.location, what)
    }

    /// The log rows a crash left unapplied, applied.
    fn replay_log(&mut self) -> Result<(), StoreError> {
        let client = self.client.clone();
        let rows = self
            .rt
            .run(async move {
                client
                    .query(
                        "SELECT lsn, feed_seq, body FROM log \
                         WHERE lsn > coalesce((SELECT value FROM meta WHERE key = 'applied_lsn'), 0) ORDER BY lsn",
                        &[],
                    )
                    .await
            })
            .map_err(self.err("cannot read the log"))?;
        for row in &rows {
            let (lsn, feed_seq, batch) = log_row(row, &self.location)?;
            self.pending.add(batch, feed_seq, lsn);
        }
        self.apply()
    }

    /// Writes what the log holds and the tables do not yet, in one
    /// transaction that deletes those log rows: after a crash either the
    /// tables have it or the log still does. One statement per table, its
    /// rows passed as arrays.
    fn apply(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_since = None;
        let rows = TableRows::of(pending);
        let client = self.client.clone();
        let location = self.location.clone();
        let (fence, retention_ms) = (self.options.fence, self.options.log_retention.as_millis() as i64);
        self.rt.run(async move {
            let write = async {
                fenced_here(&client, fence, &location).await?;
                rows.write(&client, &location, retention_ms).await
            };
            in_transaction(&client, &location, "cannot apply the log (database down or full?)", write).await
        })
    }

    fn query<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<i64>,
        what: &'static str,
        row: fn(&tokio_postgres::Row) -> T,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client.clone();
        let rows = self
            .rt
            .run(async move {
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.query(sql, &params).await
            })
            .map_err(self.err(what))?;
        Ok(rows.iter().map(row).collect())
    }

    fn meta(&self, key: &'static str) -> Result<u64, StoreError> {
        let client = self.client.clone();
        let v: Option<i64> = self
            .rt
            .run(async move { client.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]).await })
            .map_err(self.err("cannot read meta"))?
            .map(|r| r.get(0));
        Ok(v.unwrap_or(0).max(0) as u64)
    }
}

/// A pending apply as one array per column.
#[derive(Default)]
struct TableRows {
    open_seq: Vec<i64>,
    open_body: Vec<Vec<u8>>,
    archived_seq: Vec<i64>,
    archived_reported: Vec<i64>,
    archived_closed: Vec<i64>,
    archived_body: Vec<Vec<u8>>,
    archived_outcome: Vec<Vec<u8>>,
    unit_id: Vec<String>,
    unit_body: Vec<Vec<u8>>,
    tl_seq: Vec<i64>,
    tl_n: Vec<i64>,
    tl_at: Vec<i64>,
    tl_body: Vec<Vec<u8>>,
    calibration: Option<Vec<u8>>,
    last_lsn: i64,
    commits: i64,
    records: i64,
    feed_seq: i64,
}

impl TableRows {
    fn of(pending: log::Pending) -> TableRows {
        let mut rows = TableRows {
            calibration: pending.calibration,
            last_lsn: pending.last_lsn,
            commits: pending.commits as i64,
            records: pending.records as i64,
            feed_seq: pending.feed_seq as i64,
            ..TableRows::default()
        };
        for (seq, latest) in pending.incidents {
            match latest {
                log::Latest::Open(body) => {
                    rows.open_seq.push(seq as i64);
                    rows.open_body.push(body);
                }
                log::Latest::Archived { reported_at_ms, closed_at_ms, body, outcome } => {
                    rows.archived_seq.push(seq as i64);
                    rows.archived_reported.push(reported_at_ms);
                    rows.archived_closed.push(closed_at_ms);
                    rows.archived_body.push(body);
                    rows.archived_outcome.push(outcome);
                }
            }
        }
        for (id, body) in pending.units {
            rows.unit_id.push(id);
            rows.unit_body.push(body);
        }
        // One statement may not upsert a key twice: the last entry rows
        // under one key win, as SQLite's INSERT OR REPLACE in order does.
        let mut timeline = std::collections::BTreeMap::new();
        for (seq, n, at, body) in pending.timeline {
            timeline.insert((seq as i64, i64::from(n)), (at, body));
        }
        for ((seq, n), (at, body)) in timeline {
            rows.tl_seq.push(seq);
            rows.tl_n.push(n);
            rows.tl_at.push(at);
            rows.tl_body.push(body);
        }
        rows
    }

    async fn write(&self, c: &Client, location: &str, retention_ms: i64) -> Result<(), StoreError> {
        let err = |what| pg_err(location, what);
        if !self.open_seq.is_empty() {
            c.execute(
                "INSERT INTO incidents (seq, body) SELECT * FROM unnest($1::bigint[], $2::bytea[]) \
                 ON CONFLICT (seq) DO UPDATE SET body = excluded.body",
                &[&self.open_seq, &self.open_body],
            )
            .await
            .map_err(err("cannot write incidents"))?;
        }
        if !self.archived_seq.is_empty() {
            c.execute("DELETE FROM incidents WHERE seq = ANY($1)", &[&self.archived_seq])
                .await
                .map_err(err("cannot archive incidents"))?;
            for (table, bodies) in [("history", &self.archived_body), ("outcomes", &self.archived_outcome)] {
                let sql = format!(
                    "INSERT INTO {table} (seq, reported_at_ms, closed_at_ms, body) \
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) \
                     ON CONFLICT (seq) DO UPDATE SET reported_at_ms = excluded.reported_at_ms, \
                     closed_at_ms = excluded.closed_at_ms, body = excluded.body"
                );
                c.execute(&sql, &[&self.archived_seq, &self.archived_reported, &self.archived_closed, bodies])
                    .await
                    .map_err(err("cannot archive incidents"))?;
            }
        }
        if !self.unit_id.is_empty() {
            c.execute(
                "INSERT INTO units (id, body) SELECT * FROM unnest($1::text[], $2::bytea[]) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&self.unit_id, &self.unit_body],
            )
            .await
            .map_err(err("cannot write units"))?;
        }
        if !self.tl_seq.is_empty() {
            c.execute(
                "INSERT INTO timeline (incident_seq, n, at_ms, body) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) \
                 ON CONFLICT (incident_seq, n) DO UPDATE SET at_ms = excluded.at_ms, body = excluded.body",
                &[&self.tl_seq, &self.tl_n, &self.tl_at, &self.tl_body],
            )
            .await
            .map_err(err("cannot write the timeline"))?;
        }
        if let Some(body) = &self.calibration {
            c.execute(
                "INSERT INTO calibration (id, body) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[body],
            )
            .await
            .map_err(err("cannot write the ETA calibration"))?;
        }
        // Applied rows older than the retention go; the highest gone is
        // remembered, so a standby that fell behind knows to read afresh.
        c.execute(
            "WITH gone AS (DELETE FROM log WHERE lsn <= $1 AND committed_at < now() - $2::bigint * interval '1 millisecond' \
             RETURNING lsn) \
             INSERT INTO meta (key, value) SELECT 'log_pruned_upto', coalesce(max(lsn), 0) FROM gone \
             ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
            &[&self.last_lsn, &retention_ms],
        )
        .await
        .map_err(err("cannot apply the log"))?;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('applied_lsn', $1) \
             ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
            &[&self.last_lsn],
        )
        .await
        .map_err(err("cannot apply the log"))?;
        let archived = self.archived_seq.len() as i64;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('commits', $1), ('records', $2), ('history_len', $3), ('feed_seq', $4) \
             ON CONFLICT (key) DO UPDATE SET value = CASE WHEN meta.key = 'feed_seq' \
             THEN greatest(meta.value, excluded.value) ELSE meta.value + excluded.value END",
            &[&self.commits, &self.records, &archived, &self.feed_seq],
        )
        .await
        .map_err(err("cannot write meta"))?;
        Ok(())
    }
}

impl JournalStore for PostgresStore {
    fn recover(&mut self, recent_closed: usize) -> Result<Recovered, StoreError> {
        let pair = |r: &tokio_postgres::Row| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1));
        let body = |r: &tokio_postgres::Row| r.get::<_, Vec<u8>>(0);
        let client = self.client.clone();
        let calibration: Option<Vec<u8>> = self
            .rt
            .run(async move { client.query_opt("SELECT body FROM calibration WHERE id = 1", &[]).await })
            .map_err(self.err("cannot read the ETA calibration"))?
            .map(|r| r.get(0));
        Ok(Recovered {
            timelines: self.query(
                "SELECT t.incident_seq, t.body FROM incidents i JOIN timeline t ON t.incident_seq = i.seq \
                 ORDER BY t.incident_seq, t.n",
                vec![],
                "cannot read the timelines",
                pair,
            )?,
            incidents: self.query("SELECT body FROM incidents ORDER BY seq", vec![], "cannot read", body)?,
            units: self.query("SELECT body FROM units ORDER BY id", vec![], "cannot read", body)?,
            recent_closed: self.query(
                "SELECT body FROM (SELECT seq, body FROM history ORDER BY seq DESC LIMIT $1) h ORDER BY seq",
                vec![recent_closed as i64],
                "cannot read",
                body,
            )?,
            feed_seq: self.meta("feed_seq")?,
            commits: self.meta("commits")?,
            records: self.meta("records")?,
            history_len: self.meta("history_len")?,
            calibration,
        })
    }

    /// One row appended to the log, committed (and flushed by the server)
    /// before it returns. The tables get it at the next apply.
    fn commit(&mut self, batch: Vec<Record>, feed_seq: u64) -> Result<(), StoreError> {
        if self.pending.held() >= self.options.apply.max_records {
            self.apply()?;
        }
        log::encode(&batch, &mut self.row);
        let body = std::mem::take(&mut self.row);
        let client = self.client.clone();
        let insert = self.prepared.insert_log.clone();
        let epoch = match self.options.fence {
            Fence::Lock => 0i64,
            Fence::Epoch(e) => e as i64,
        };
        let (lsn, body) = self.rt.run(async move {
            let lsn = client
                .query_opt(&insert, &[&epoch, &(feed_seq as i64), &body])
                .await
                .map(|r| r.map(|r| r.get::<_, i64>(0)));
            (lsn, body)
        });
        self.row = body;
        let lsn = lsn.map_err(self.err("cannot commit (database down, full or read-only?)"))?;
        let Some(lsn) = lsn else {
            // Only the fenced insert inserts nothing.
            return Err(fenced(&self.location, epoch as u64, None));
        };
        self.pending.add(batch, feed_seq, lsn);
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn settle(&mut self) -> Result<(), StoreError> {
        self.apply()
    }

    fn settle_due(&self) -> Option<Duration> {
        if self.pending.held() >= self.options.apply.max_records {
            return Some(Duration::ZERO);
        }
        self.pending_since.map(|since| self.options.apply.interval.saturating_sub(since.elapsed()))
    }

    fn prune(&mut self, closed_before_ms: i64, max_incidents: usize) -> Result<usize, StoreError> {
        self.apply()?;
        let client = self.client.clone();
        let location = self.location.clone();
        let fence = self.options.fence;
        self.rt.run(async move {
            let err = |what| pg_err(&location, what);
            let oldest = "SELECT seq FROM history WHERE closed_at_ms < $1 ORDER BY closed_at_ms LIMIT $2";
            let limit = max_incidents as i64;
            let prune = async {
                fenced_here(&client, fence, &location).await?;
                for table in ["timeline", "outcomes"] {
                    let key = if table == "timeline" { "incident_seq" } else { "seq" };
                    client
                        .execute(
                            &format!("DELETE FROM {table} WHERE {key} IN ({oldest})"),
                            &[&closed_before_ms, &limit],
                        )
                        .await
                        .map_err(err("cannot prune"))?;
                }
                let deleted = client
                    .execute(&format!("DELETE FROM history WHERE seq IN ({oldest})"), &[&closed_before_ms, &limit])
                    .await
                    .map_err(err("cannot prune history"))?;
                client
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('history_len', 0) \
                         ON CONFLICT (key) DO UPDATE SET value = greatest(0, meta.value - $1)",
                        &[&(deleted as i64)],
                    )
                    .await
                    .map_err(err("cannot write meta"))?;
                Ok::<_, StoreError>(deleted as usize)
            };
            in_transaction(&client, &location, "cannot prune", prune).await
        })
    }

    fn reader(&self) -> Result<Box<dyn HistoryReader>, StoreError> {
        let manager = Manager::from_config(
            self.readers.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(self.options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(self.options.connect_timeout))
            .create_timeout(Some(self.options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Postgres {
                at: self.location.clone(),
                what: "cannot make the reader pool",
                detail: e.to_string(),
            })?;
        Ok(Box::new(PgReader { rt: self.rt.clone(), pool, location: self.location.clone() }))
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

/// History reads on pooled connections (PostgreSQL's MVCC: they see the
/// last committed state and never block the writer).
struct PgReader {
    rt: Arc<PgRuntime>,
    pool: Pool,
    location: String,
}

impl PgReader {
    fn rows<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<i64>,
        row: fn(&tokio_postgres::Row) -> T,
    ) -> Result<Vec<T>, StoreError> {
        let pool = self.pool.clone();
        let location = self.location.clone();
        self.rt.run(async move {
            let client = pool.get().await.map_err(|e| StoreError::Postgres {
                at: location.clone(),
                what: "no connection for a history read",
                detail: e.to_string(),
            })?;
            let stmt = client.prepare_cached(sql).await.map_err(pg_err(&location, "cannot read history"))?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let rows = client.query(&stmt, &params).await.map_err(pg_err(&location, "cannot read history"))?;
            Ok(rows.iter().map(row).collect())
        })
    }
}

fn body(r: &tokio_postgres::Row) -> Vec<u8> {
    r.get(0)
}

fn seq_body(r: &tokio_postgres::Row) -> (u64, Vec<u8>) {
    (r.get::<_, i64>(0) as u64, r.get(1))
}

impl HistoryReader for PgReader {
    fn incident(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.rows("SELECT body FROM history WHERE seq = $1", vec![seq as i64], body)?.pop())
    }

    fn timeline(&self, seq: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows("SELECT body FROM timeline WHERE incident_seq = $1 ORDER BY n", vec![seq as i64], body)
    }

    fn closed(&self, q: &ClosedQuery) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let params =
            vec![q.after_seq as i64, q.from_ms.unwrap_or(i64::MIN), q.to_ms.unwrap_or(i64::MAX), q.limit as i64];
        self.rows(
            "SELECT seq, body FROM history WHERE seq > $1 AND reported_at_ms >= $2 AND reported_at_ms < $3 \
             ORDER BY seq LIMIT $4",
            params,
            seq_body,
        )
    }

    fn outcomes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows(
            "SELECT body FROM outcomes WHERE reported_at_ms >= $1 AND reported_at_ms < $2 ORDER BY reported_at_ms, seq",
            vec![from_ms, to_ms],
            body,
        )
    }

    /// None: this store was created with outcomes (SQLite's journals of
    /// schema 2 are the only ones with closed incidents that have none).
    fn without_outcome(&self, _from_ms: i64, _to_ms: i64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }

    fn recent_outcomes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows("SELECT body FROM outcomes ORDER BY closed_at_ms DESC LIMIT $1", vec![limit as i64], body)
    }
}

#[cfg(test)]
mod tests;
