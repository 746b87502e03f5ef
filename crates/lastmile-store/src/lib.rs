//! The durable journal of lastmile.
//!
//! What it keeps, in one SQLite file:
//!
//! - **live state**, compacted: the latest state of each *open* incident and
//!   of each unit (one row per entity, upserted). Recovery reads these rows,
//!   so start-up time grows with what is live, not with history.
//! - **history**: a closed incident leaves the live rows for the history
//!   table in the commit that closes it (its final state, with its report
//!   and close times for range queries). Read on demand ([`HistoryReader`]),
//!   never at start (but for the most recent few, for idempotency), and
//!   pruned past a retention age ([`JournalStore::prune`]).
//! - **outcomes**: what became of each closed incident (per tier and
//!   assignment), written with its archive, keyed by report time: what the
//!   compliance reports and the ETA calibration read.
//! - **the timeline**: every state change of every incident, appended in the
//!   same commit as the change, numbered per incident (one row per
//!   operation and incident, keyed by its first entry's number).
//!
//! Every commit is one transaction and one fsync: a batch is there after a
//! crash entirely or not at all. With SQLite the commit is one row of a
//! log, and the rows above are written from it a moment later
//! ([`ApplyPolicy`]); [`JournalStore::settle`] makes them current before a
//! read of history.
//!
//! [`JournalStore`] is the seam, with two durable implementations:
//! [`SqliteStore`] (the embedded default) and [`PostgresStore`] (a database
//! server, same layout and contract); the server opens one through one
//! resolver. This crate knows nothing of the dispatch domain: bodies
//! are opaque bytes; the server serialises.

#![forbid(unsafe_code)]

pub mod cluster;
mod log;
mod postgres;
mod sqlite;
#[cfg(test)]
mod test_records;

pub use postgres::{Fence, PgOptions, PostgresStore, drop_schema, valid_schema_name};
pub use sqlite::{ApplyPolicy, DB_FILE, LOCK_FILE, SqliteStore, open_history_reader};

/// The PostgreSQL server the tests may use: `LASTMILE_TEST_PG_URL` (CI
/// starts one with `.ci/postgres.sh`). `None`, with a note, when it is not
/// set; a panic instead when `LASTMILE_REQUIRE_PG` is set (CI sets it), so
/// a CI run never passes by skipping them. For tests and benchmarks only.
pub fn test_postgres_url() -> Option<String> {
    match std::env::var("LASTMILE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("LASTMILE_REQUIRE_PG").is_none(),
                "LASTMILE_REQUIRE_PG is set but LASTMILE_TEST_PG_URL is not (eval \"$(bash .ci/postgres.sh)\")"
            );
            eprintln!("skipped: LASTMILE_TEST_PG_URL is not set (eval \"$(bash .ci/postgres.sh)\")");
            None
        }
    }
}

/// One change to store. Incidents are keyed by their sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The latest state of an open incident.
    Incident { seq: u64, body: Vec<u8> },
    /// The latest state of a unit.
    Unit { id: String, body: Vec<u8> },
    /// An incident closed: its final state leaves the live rows for history,
    /// with its outcome (what the reports read: small, by report time).
    Archive { seq: u64, reported_at_ms: i64, closed_at_ms: i64, body: Vec<u8>, outcome: Vec<u8> },
    /// Entries of an incident's timeline from number `n` on (one
    /// operation's; the server decides the body's shape).
    Timeline { incident_seq: u64, n: u32, at_ms: i64, body: Vec<u8> },
    /// The ETA calibration's learnt state (one, replaced each time).
    Calibration { body: Vec<u8> },
}

/// What the store holds of the live state, for recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Open incidents, by sequence number.
    pub incidents: Vec<Vec<u8>>,
    pub units: Vec<Vec<u8>>,
    /// The most recently closed incidents (as many as asked), oldest first.
    pub recent_closed: Vec<Vec<u8>>,
    /// The timelines of the open incidents: (incident seq, entry), in order.
    pub timelines: Vec<(u64, Vec<u8>)>,
    /// The live feed's last sequence number at the last commit.
    pub feed_seq: u64,
    /// Group commits written over the store's life.
    pub commits: u64,
    /// State changes (records) written over the store's life.
    pub records: u64,
    /// Closed incidents in history (all of them, not read).
    pub history_len: u64,
    /// The ETA calibration's last learnt state, if any was stored.
    pub calibration: Option<Vec<u8>>,
}

/// Which closed incidents to list: reported in `[from_ms, to_ms)`, with a
/// sequence number above `after_seq`, at most `limit`, by sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after_seq: u64,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal {path}: {what}: {source}")]
    Sqlite {
        path: String,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: {what}")]
    Io { path: String, what: String },
    #[error("journal {at}: {what}: {detail}")]
    Postgres { at: String, what: &'static str, detail: String },
}

/// A durable store of the live state, the history and the timeline.
pub trait JournalStore: Send {
    /// Reads the live state back (at start), with the `recent_closed` most
    /// recently closed incidents.
    fn recover(&mut self, recent_closed: usize) -> Result<Recovered, StoreError>;
    /// Writes a batch atomically and durably (one transaction, one fsync):
    /// either all of it is there after a crash, or none of it.
    fn commit(&mut self, batch: Vec<Record>, feed_seq: u64) -> Result<(), StoreError>;
    /// Makes every commit so far visible to [`HistoryReader`]s (a store
    /// that writes its tables after the commit's fsync, as SQLite's log
    /// does, writes them now).
    fn settle(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// How long until [`JournalStore::settle`] is due by the store's own
    /// policy (`None`: nothing waits to be settled).
    fn settle_due(&self) -> Option<std::time::Duration> {
        None
    }
    /// Deletes at most `max_incidents` closed incidents (and their
    /// timelines) closed before `closed_before_ms`; how many it deleted.
    fn prune(&mut self, closed_before_ms: i64, max_incidents: usize) -> Result<usize, StoreError>;
    /// Reads history while the store writes (its own connections).
    fn reader(&self) -> Result<Box<dyn HistoryReader>, StoreError>;
    /// Where the data lives, for log lines and errors.
    fn location(&self) -> String;
}

/// Reads of what has been committed: history and timelines. Blocking (disk
/// reads): call it from a blocking context.
pub trait HistoryReader: Send + Sync {
    /// A closed incident's final state.
    fn incident(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// An incident's timeline entries, in order (open or closed).
    fn timeline(&self, seq: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Closed incidents matching `query`: (seq, final state).
    fn closed(&self, query: &ClosedQuery) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The outcomes of the incidents reported in `[from_ms, to_ms)`, by
    /// report time.
    fn outcomes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Closed incidents reported in `[from_ms, to_ms)` that have no outcome
    /// (archived by a journal of schema 2): (seq, final state), for the
    /// server to work their outcome out.
    fn without_outcome(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The outcomes of the `limit` most recently closed incidents, most
    /// recent first (the ETA calibration's memory at start).
    fn recent_outcomes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
}
