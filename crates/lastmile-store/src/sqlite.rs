//! The embedded store: one SQLite file in WAL mode.
//!
//! `synchronous = FULL`: every commit fsyncs the write-ahead log before it
//! returns, so a commit that returned survives a process crash *and* a power
//! loss or kernel panic (NORMAL would survive only the process crash). Group
//! commit makes that one fsync per batch of requests, not per request. A
//! transaction torn by a crash fails the WAL checksum and is ignored on the
//! next open, as SQLite guarantees.
//!
//! One writer (the journal's thread owns the [`SqliteStore`]); readers of
//! history open their own read-only connections, which WAL lets read the
//! last committed state while the writer writes. One process per journal:
//! an exclusive lock on `lastmile.lock` beside the database, held while the
//! store is open, makes a second server on the same directory fail at start.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{ClosedQuery, HistoryReader, JournalStore, Record, Recovered, StoreError};

use crate::log;

pub const DB_FILE: &str = "lastmile.db";
pub const LOCK_FILE: &str = "lastmile.lock";

/// The schema this build writes. 1: live incidents (open and closed) and
/// units. 2: closed incidents in `history`, the `timeline` table. 3: the
/// `outcomes` and `calibration` tables (a schema-2 journal opens as is: its closed incidents
/// have no outcome row, and readers work theirs out from `history`). 4: the
/// commit `log` (a build before it would not apply its rows, so it must not
/// open such a journal).
const SCHEMA_VERSION: i64 = 4;

/// When the commits in the log are written into the tables
/// (`journal.apply_max_records`, `journal.apply_interval_ms`): once this
/// many records are held (when the writer is next idle, or before the next
/// commit's row), or this long after the oldest, whichever comes first; and
/// before every history read ([`JournalStore::settle`]), prune
/// and graceful close. A crash in between loses nothing: the next open
/// applies the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyPolicy {
    pub max_records: usize,
    pub interval: Duration,
}

impl Default for ApplyPolicy {
    fn default() -> Self {
        ApplyPolicy { max_records: 4096, interval: Duration::from_millis(250) }
    }
}

/// Read connections kept open between history reads.
const IDLE_READERS: usize = 4;

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    policy: ApplyPolicy,
    /// Committed to the log, not yet in the tables.
    pending: log::Pending,
    /// When the oldest of `pending` was committed.
    pending_since: Option<Instant>,
    /// The log row being written (kept between commits).
    row: Vec<u8>,
    /// Held (locked) while the store is open.
    _lock: File,
}

fn sql_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite { path: path.display().to_string(), what, source }
}

fn io_err(path: &Path, what: impl Into<String>) -> StoreError {
    StoreError::Io { path: path.display().to_string(), what: what.into() }
}

/// The directory's lock file, locked; refused while another store holds it.
fn lock(dir: &Path, db: &Path) -> Result<File, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| io_err(db, format!("cannot open {LOCK_FILE}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(io_err(db, "cannot lock the journal: is another lastmile server using this directory?"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(db, format!("cannot lock the journal: {e}"))),
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS incidents (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS units (id TEXT PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS history (
        seq INTEGER PRIMARY KEY,
        reported_at_ms INTEGER NOT NULL,
        closed_at_ms INTEGER NOT NULL,
        body BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS history_by_reported ON history (reported_at_ms);
    CREATE INDEX IF NOT EXISTS history_by_closed ON history (closed_at_ms);
    CREATE TABLE IF NOT EXISTS timeline (
        incident_seq INTEGER NOT NULL,
        n INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (incident_seq, n)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS outcomes (
        seq INTEGER PRIMARY KEY,
        reported_at_ms INTEGER NOT NULL,
        closed_at_ms INTEGER NOT NULL,
        body BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS outcomes_by_reported ON outcomes (reported_at_ms);
    CREATE INDEX IF NOT EXISTS outcomes_by_closed ON outcomes (closed_at_ms);
    CREATE TABLE IF NOT EXISTS calibration (id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS log (lsn INTEGER PRIMARY KEY, feed_seq INTEGER NOT NULL, body BLOB NOT NULL);";

impl SqliteStore {
    /// Opens (creating if needed) `dir/lastmile.db`. Refuses a directory it
    /// cannot create or write, a file that is not a lastmile journal, one
    /// written by a newer lastmile, and a directory another store holds.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        SqliteStore::open_with(dir, ApplyPolicy::default())
    }

    /// [`SqliteStore::open`] with its log applied to the tables by `policy`.
    /// Whatever the log holds from before (a crash) is applied here.
    pub fn open_with(dir: &Path, policy: ApplyPolicy) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, format!("cannot create data directory: {e}")))?;
        let lock = lock(dir, &path)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(&path, "cannot open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(sql_err(&path, "cannot set busy timeout"))?;
        // Fails on a file that is not a database ("file is not a database").
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_err(&path, "not a usable database"))?;
        if mode != "wal" {
            return Err(io_err(&path, format!("cannot use WAL mode (got {mode}): is the directory writable?")));
        }
        let version: i64 =
            conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err(&path, "cannot read"))?;
        if version > SCHEMA_VERSION {
            return Err(io_err(
                &path,
                format!("schema version {version} is newer than this lastmile's ({SCHEMA_VERSION})"),
            ));
        }
        // Upgrading a schema-2 journal: its closed incidents so far have no
        // outcome; the highest of them is remembered, so readers look for
        // those only below it (a journal created with outcomes has none).
        let legacy = if version == 2 {
            "INSERT OR REPLACE INTO meta (key, value) SELECT 'legacy_history_max_seq', coalesce(max(seq), 0) FROM history;"
        } else {
            ""
        };
        // Checkpoints are run after each apply, not inside a commit that
        // a request waits for.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 0; BEGIN IMMEDIATE; {SCHEMA} {legacy} \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(sql_err(&path, "cannot create the schema (read-only or full disk?)"))?;
        // A quick structural check of the units table (small). The open
        // incidents are read whole by recovery right after, whose reads
        // report a corrupt page (and whose JSON a corrupt body), so checking
        // them first would only read them twice; history is read on demand.
        let check: String = conn
            .query_row("PRAGMA quick_check(units)", [], |r| r.get(0))
            .map_err(sql_err(&path, "integrity check failed"))?;
        if check != "ok" {
            return Err(io_err(&path, format!("integrity check of units failed: {check}")));
        }
        let mut store = SqliteStore {
            conn,
            path,
            policy,
            pending: log::Pending::default(),
            pending_since: None,
            row: Vec::new(),
            _lock: lock,
        };
        store.replay_log()?;
        Ok(store)
    }

    /// The log rows a crash left unapplied, applied.
    fn replay_log(&mut self) -> Result<(), StoreError> {
        let rows: Vec<(i64, i64, Vec<u8>)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT lsn, feed_seq, body FROM log ORDER BY lsn")
                .map_err(self.err("cannot read the log"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(self.err("cannot read the log"))?;
            rows.collect::<Result<_, _>>().map_err(self.err("cannot read a log row"))?
        };
        for (lsn, feed_seq, body) in rows {
            let batch =
                log::decode(&body).map_err(|e| io_err(&self.path, format!("log row {lsn} is malformed: {e}")))?;
            self.pending.add(batch, feed_seq.max(0) as u64, lsn);
        }
        self.apply()
    }

    /// Writes what the log holds and the tables do not yet, in one
    /// transaction that deletes those log rows: after a crash either the
    /// tables have it or the log still does. `synchronous = NORMAL` for it:
    /// its pages reach the disk with the next commit's fsync of the
    /// write-ahead log (or the checkpoint's), and until then the log rows
    /// are what is durable. Then a passive checkpoint (it never waits for
    /// readers) copies the write-ahead log into the database file and
    /// fsyncs both; once it has copied all of it, the next commit starts the
    /// log file over, so the file stays small and its fsyncs overwrite
    /// blocks it already has. (SQLite's automatic checkpoint is off, so
    /// none runs inside a commit a request waits for. Checkpointing at most
    /// once a second instead made each one big enough to stall commits
    /// ~200 ms at concurrency 64; on a thread of its own, its fsyncs of the
    /// database file delayed the commits' fsyncs at concurrency 1.)
    fn apply(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_since = None;
        self.conn.execute_batch("PRAGMA synchronous = NORMAL").map_err(self.err("cannot apply the log"))?;
        let written = self.write_tables(&pending);
        let restored = self.conn.execute_batch("PRAGMA synchronous = FULL").map_err(self.err("cannot apply the log"));
        written.and(restored)?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(self.err("cannot checkpoint (disk full or read-only?)"))
    }

    fn write_tables(&mut self, pending: &log::Pending) -> Result<(), StoreError> {
        let path = &self.path;
        let err = |what| sql_err(path, what);
        let tx = self.conn.transaction().map_err(err("cannot begin"))?;
        let mut archived = 0i64;
        {
            let mut incident = tx
                .prepare_cached("INSERT INTO incidents (seq, body) VALUES (?1, ?2) ON CONFLICT(seq) DO UPDATE SET body = excluded.body")
                .map_err(err("cannot prepare"))?;
            let mut unlive =
                tx.prepare_cached("DELETE FROM incidents WHERE seq = ?1").map_err(err("cannot prepare"))?;
            let mut archive = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO history (seq, reported_at_ms, closed_at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err("cannot prepare"))?;
            let mut outcome = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO outcomes (seq, reported_at_ms, closed_at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err("cannot prepare"))?;
            for (seq, latest) in &pending.incidents {
                match latest {
                    log::Latest::Open(body) => {
                        incident.execute(params![*seq as i64, body]).map_err(err("cannot write an incident"))?;
                    }
                    log::Latest::Archived { reported_at_ms, closed_at_ms, body, outcome: summary } => {
                        unlive.execute([*seq as i64]).map_err(err("cannot archive an incident"))?;
                        archive
                            .execute(params![*seq as i64, reported_at_ms, closed_at_ms, body])
                            .map_err(err("cannot archive an incident"))?;
                        outcome
                            .execute(params![*seq as i64, reported_at_ms, closed_at_ms, summary])
                            .map_err(err("cannot archive an incident's outcome"))?;
                        archived += 1;
                    }
                }
            }
            let mut unit = tx
                .prepare_cached(
                    "INSERT INTO units (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                )
                .map_err(err("cannot prepare"))?;
            for (id, body) in &pending.units {
                unit.execute(params![id, body]).map_err(err("cannot write a unit"))?;
            }
            let mut timeline = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO timeline (incident_seq, n, at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err("cannot prepare"))?;
            for (incident_seq, n, at_ms, body) in &pending.timeline {
                timeline
                    .execute(params![*incident_seq as i64, n, at_ms, body])
                    .map_err(err("cannot write a timeline entry"))?;
            }
            if let Some(body) = &pending.calibration {
                tx.prepare_cached("INSERT OR REPLACE INTO calibration (id, body) VALUES (1, ?1)")
                    .and_then(|mut s| s.execute([body]))
                    .map_err(err("cannot write the ETA calibration"))?;
            }
            tx.prepare_cached("DELETE FROM log WHERE lsn <= ?1")
                .and_then(|mut s| s.execute([pending.last_lsn]))
                .map_err(err("cannot apply the log"))?;
            let mut meta = tx
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                )
                .map_err(err("cannot prepare"))?;
            meta.execute(params!["commits", pending.commits as i64]).map_err(err("cannot write meta"))?;
            meta.execute(params!["records", pending.records as i64]).map_err(err("cannot write meta"))?;
            if archived > 0 {
                meta.execute(params!["history_len", archived]).map_err(err("cannot write meta"))?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('feed_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                [pending.feed_seq as i64],
            )
            .map_err(err("cannot write meta"))?;
        }
        tx.commit().map_err(err("cannot apply the log (disk full or read-only?)"))
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql_err(&self.path, what)
    }

    fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("cannot read meta"))?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    fn bodies(&self, sql: &str, limit: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err("cannot read"))?;
        let read = |r: &rusqlite::Row| r.get::<_, Vec<u8>>(0);
        let rows = match limit {
            Some(n) => stmt.query_map([n as i64], read),
            None => stmt.query_map([], read),
        }
        .map_err(self.err("cannot read"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("cannot read a row"))
    }
}

impl JournalStore for SqliteStore {
    fn recover(&mut self, recent_closed: usize) -> Result<Recovered, StoreError> {
        let timelines = {
            let mut stmt = self
                .conn
                .prepare(
                    // Driven from the live incidents (CROSS JOIN fixes the
                    // order): a range of the timeline's primary key per open
                    // incident, never a scan of every closed incident's rows.
                    "SELECT t.incident_seq, t.body FROM incidents i CROSS JOIN timeline t ON t.incident_seq = i.seq \
                     ORDER BY t.incident_seq, t.n",
                )
                .map_err(self.err("cannot read"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)))
                .map_err(self.err("cannot read"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.err("cannot read a row"))?
        };
        Ok(Recovered {
            incidents: self.bodies("SELECT body FROM incidents ORDER BY seq", None)?,
            units: self.bodies("SELECT body FROM units ORDER BY id", None)?,
            recent_closed: self.bodies(
                "SELECT body FROM (SELECT seq, body FROM history ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
                Some(recent_closed),
            )?,
            timelines,
            feed_seq: self.meta("feed_seq")?,
            commits: self.meta("commits")?,
            records: self.meta("records")?,
            history_len: self.meta("history_len")?,
            calibration: self
                .conn
                .query_row("SELECT body FROM calibration WHERE id = 1", [], |r| r.get(0))
                .optional()
                .map_err(self.err("cannot read the ETA calibration"))?,
        })
    }

    /// One row appended to the log, in a transaction of its own
    /// (`synchronous = FULL`: fsynced before it returns). The tables get it
    /// at the next apply.
    fn commit(&mut self, batch: Vec<Record>, feed_seq: u64) -> Result<(), StoreError> {
        // Applied before this batch's row, not after it: a failed apply then
        // refuses a batch that was not stored, never one that was.
        if self.pending.held() >= self.policy.max_records {
            self.apply()?;
        }
        log::encode(&batch, &mut self.row);
        self.conn
            .prepare_cached("INSERT INTO log (feed_seq, body) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(params![feed_seq as i64, self.row]))
            .map_err(self.err("cannot commit (disk full or read-only?)"))?;
        let lsn = self.conn.last_insert_rowid();
        self.pending.add(batch, feed_seq, lsn);
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn settle(&mut self) -> Result<(), StoreError> {
        self.apply()
    }

    fn settle_due(&self) -> Option<Duration> {
        if self.pending.held() >= self.policy.max_records {
            return Some(Duration::ZERO); // when the writer is next idle, or at the next commit
        }
        self.pending_since.map(|since| self.policy.interval.saturating_sub(since.elapsed()))
    }

    fn prune(&mut self, closed_before_ms: i64, max_incidents: usize) -> Result<usize, StoreError> {
        self.apply()?; // what closed since the last apply is history too
        let path = &self.path;
        let err = |what| sql_err(path, what);
        let tx = self.conn.transaction().map_err(err("cannot begin"))?;
        let oldest = "SELECT seq FROM history WHERE closed_at_ms < ?1 ORDER BY closed_at_ms LIMIT ?2";
        let limit = max_incidents as i64;
        tx.execute(&format!("DELETE FROM timeline WHERE incident_seq IN ({oldest})"), params![closed_before_ms, limit])
            .map_err(err("cannot prune the timeline"))?;
        tx.execute(&format!("DELETE FROM outcomes WHERE seq IN ({oldest})"), params![closed_before_ms, limit])
            .map_err(err("cannot prune outcomes"))?;
        let deleted = tx
            .execute(&format!("DELETE FROM history WHERE seq IN ({oldest})"), params![closed_before_ms, limit])
            .map_err(err("cannot prune history"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('history_len', 0) ON CONFLICT(key) DO UPDATE SET value = max(0, value - ?1)",
            [deleted as i64],
        )
        .map_err(err("cannot write meta"))?;
        tx.commit().map_err(err("cannot commit (disk full or read-only?)"))?;
        Ok(deleted)
    }

    fn reader(&self) -> Result<Box<dyn HistoryReader>, StoreError> {
        Ok(Box::new(SqliteReader { path: self.path.clone(), idle: Mutex::new(Vec::new()) }))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// A reader of the history in `dir` without opening the store for writing
/// (no lock: a running server may be writing it; WAL lets both be). For
/// offline reports: beside a running server it reads what the server has
/// applied from its log (at most `journal.apply_interval_ms` behind).
/// Refuses a directory without a journal.
pub fn open_history_reader(dir: &Path) -> Result<Box<dyn HistoryReader>, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(io_err(&path, "no journal here (is this a lastmile data directory?)"));
    }
    // No server on it: what a crash left in the log is applied first (a
    // running server applies its own within journal.apply_interval_ms). A
    // directory this process cannot write, or a store it cannot lock, is
    // read as it is.
    if let Ok(store) = SqliteStore::open(dir) {
        drop(store);
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err(&path, "cannot open for reading"))?;
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err(&path, "not a journal"))?;
    if !(2..=SCHEMA_VERSION).contains(&version) {
        return Err(io_err(&path, format!("schema version {version}: this lastmile reads 2 to {SCHEMA_VERSION}")));
    }
    if version < SCHEMA_VERSION {
        // A schema-2 journal has no outcomes table until a server of this
        // version opens it; its reports are read from `history` instead.
        return Err(io_err(
            &path,
            format!("schema version {version}: start this lastmile's server on it once to upgrade"),
        ));
    }
    Ok(Box::new(SqliteReader { path, idle: Mutex::new(vec![conn]) }))
}

/// History reads on their own read-only connections (WAL: they see the
/// last committed state and never block the writer).
struct SqliteReader {
    path: PathBuf,
    /// At most [`IDLE_READERS`] kept between reads; a read takes one or
    /// opens one, so reads at once are not serialised.
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    fn with<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match taken {
            Some(conn) => conn,
            None => Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sql_err(&self.path, "cannot open for reading"))?,
        };
        let answer = read(&conn).map_err(sql_err(&self.path, "cannot read history"));
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        answer
    }
}

impl HistoryReader for SqliteReader {
    fn incident(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT body FROM history WHERE seq = ?1")?
                .query_row([seq as i64], |r| r.get(0))
                .optional()
        })
    }

    fn timeline(&self, seq: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT body FROM timeline WHERE incident_seq = ?1 ORDER BY n")?;
            let rows = stmt.query_map([seq as i64], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn closed(&self, q: &ClosedQuery) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, body FROM history WHERE seq > ?1 AND reported_at_ms >= ?2 AND reported_at_ms < ?3 \
                 ORDER BY seq LIMIT ?4",
            )?;
            let from = q.from_ms.unwrap_or(i64::MIN);
            let to = q.to_ms.unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![q.after_seq as i64, from, to, q.limit as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.collect()
        })
    }

    fn outcomes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM outcomes WHERE reported_at_ms >= ?1 AND reported_at_ms < ?2 ORDER BY reported_at_ms, seq",
            )?;
            let rows = stmt.query_map(params![from_ms, to_ms], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn without_outcome(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT h.seq, h.body FROM history h \
                 WHERE h.seq <= (SELECT coalesce(max(value), 0) FROM meta WHERE key = 'legacy_history_max_seq') \
                 AND h.reported_at_ms >= ?1 AND h.reported_at_ms < ?2 \
                 AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.seq = h.seq) ORDER BY h.seq",
            )?;
            let rows =
                stmt.query_map(params![from_ms, to_ms], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)))?;
            rows.collect()
        })
    }

    fn recent_outcomes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT body FROM outcomes ORDER BY closed_at_ms DESC LIMIT ?1")?;
            let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests;
