//! The durable journal of lastmile.
//!
//! The journal is kept compacted: every change writes the *latest state* of
//! each incident and unit it touched (one row per entity, upserted), in the
//! same transaction as every other change of its group commit. So the store is
//! at once the log and the snapshot: recovery reads one row per entity, and
//! start-up time and disk use grow with the number of incidents and units, not
//! with the number of events.
//!
//! [`JournalStore`] is the seam: the embedded default is [`SqliteStore`]; a
//! PostgreSQL store for multi-node deployments implements the same trait. This
//! crate knows nothing of the dispatch domain: rows are opaque bytes with a
//! key; the server serialises.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// What a row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Incident,
    Unit,
}

/// The latest state of one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub table: Table,
    /// Incident sequence number or unit id, as text.
    pub key: String,
    pub body: Vec<u8>,
}

/// Everything the store holds, for recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub incidents: Vec<Vec<u8>>,
    pub units: Vec<Vec<u8>>,
    /// The live feed's last sequence number at the last commit.
    pub feed_seq: u64,
    /// Group commits written over the store's life.
    pub commits: u64,
    /// State changes (records) written over the store's life: the number of
    /// journal events the current rows summarise.
    pub records: u64,
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
}

/// A durable store of the latest state of incidents and units.
pub trait JournalStore: Send {
    /// Reads everything back (at start).
    fn recover(&mut self) -> Result<Recovered, StoreError>;
    /// Writes a batch atomically and durably (one transaction, one fsync):
    /// either all of it is there after a crash, or none of it.
    fn commit(&mut self, batch: &[Record], feed_seq: u64) -> Result<(), StoreError>;
    /// Where the data lives, for log lines and errors.
    fn location(&self) -> String;
}

/// The embedded default: one SQLite file in WAL mode.
///
/// `synchronous = FULL`: every commit fsyncs the write-ahead log before it
/// returns, so a commit that returned survives a process crash *and* a power
/// loss or kernel panic (NORMAL would survive only the process crash: the last
/// commits could be lost on power loss). Group commit makes that one fsync per
/// batch of requests, not per request. A transaction torn by a crash fails the
/// WAL checksum and is ignored on the next open, as SQLite guarantees.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

pub const DB_FILE: &str = "lastmile.db";

fn sql_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite { path: path.display().to_string(), what, source }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/lastmile.db`. Refuses a directory it
    /// cannot create or write, and a file that is not a lastmile journal.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.display().to_string(),
            what: format!("cannot create data directory: {e}"),
        })?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(&path, "cannot open"))?;
        // One process per journal: the exclusive lock, taken below and held
        // until the connection closes, makes a second server on the same
        // directory fail at start instead of overwriting the first's incidents.
        conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(sql_err(&path, "cannot set busy timeout"))?;
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;").map_err(sql_err(&path, "cannot set locking mode"))?;
        // Fails on a file that is not a database ("file is not a database").
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_err(&path, "not a usable database"))?;
        if mode != "wal" {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                what: format!("cannot use WAL mode (got {mode}): is the directory writable?"),
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = OFF;
             CREATE TABLE IF NOT EXISTS incidents (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS units (id TEXT PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(sql_err(&path, "cannot create the schema (read-only or full disk?)"))?;
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(sql_err(&path, "cannot lock the journal: is another lastmile server using this directory?"))?;
        let show = path.display().to_string();
        // A quick structural check: a corrupt file is refused at start, not half-read.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|source| StoreError::Sqlite { path: show.clone(), what: "integrity check failed", source })?;
        if check != "ok" {
            return Err(StoreError::Io { path: show, what: format!("integrity check failed: {check}") });
        }
        Ok(SqliteStore { conn, path })
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql_err(&self.path, what)
    }
}

impl JournalStore for SqliteStore {
    fn recover(&mut self) -> Result<Recovered, StoreError> {
        let read_all = |sql: &str| -> Result<Vec<Vec<u8>>, StoreError> {
            let mut stmt = self.conn.prepare(sql).map_err(self.err("cannot read"))?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(self.err("cannot read"))?;
            rows.collect::<Result<_, _>>().map_err(self.err("cannot read a row"))
        };
        let incidents = read_all("SELECT body FROM incidents ORDER BY seq")?;
        let units = read_all("SELECT body FROM units ORDER BY id")?;
        let meta = |key: &str| -> Result<u64, StoreError> {
            let v: Option<i64> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(self.err("cannot read meta"))?;
            Ok(v.unwrap_or(0) as u64)
        };
        Ok(Recovered {
            incidents,
            units,
            feed_seq: meta("feed_seq")?,
            commits: meta("commits")?,
            records: meta("records")?,
        })
    }

    fn commit(&mut self, batch: &[Record], feed_seq: u64) -> Result<(), StoreError> {
        let path = &self.path;
        let err = |what| sql_err(path, what);
        let tx = self.conn.transaction().map_err(err("cannot begin"))?;
        {
            let mut incident = tx
                .prepare_cached("INSERT INTO incidents (seq, body) VALUES (?1, ?2) ON CONFLICT(seq) DO UPDATE SET body = excluded.body")
                .map_err(err("cannot prepare"))?;
            let mut unit = tx
                .prepare_cached(
                    "INSERT INTO units (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                )
                .map_err(err("cannot prepare"))?;
            // A key written twice in one batch (a report and its close in the
            // same group commit) is written once, with its last body: rows
            // are upserts, so the result is the same and SQLite does less.
            let mut seen = std::collections::HashSet::with_capacity(batch.len());
            let latest: Vec<&Record> = batch.iter().rev().filter(|r| seen.insert((r.table, r.key.as_str()))).collect();
            for r in latest {
                match r.table {
                    Table::Incident => {
                        let seq: i64 = r.key.parse().map_err(|_| StoreError::Io {
                            path: path.display().to_string(),
                            what: format!("incident key {:?} is not a sequence number", r.key),
                        })?;
                        incident.execute(params![seq, r.body]).map_err(err("cannot write an incident"))?;
                    }
                    Table::Unit => {
                        unit.execute(params![r.key, r.body]).map_err(err("cannot write a unit"))?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('feed_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                [feed_seq as i64],
            )
            .map_err(err("cannot write meta"))?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('commits', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
                [],
            )
            .map_err(err("cannot write meta"))?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('records', ?1) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                [batch.len() as i64],
            )
            .map_err(err("cannot write meta"))?;
        }
        tx.commit().map_err(err("cannot commit (disk full or read-only?)"))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lastmile-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn rec(table: Table, key: &str, body: &str) -> Record {
        Record { table, key: key.into(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn commits_survive_reopening_and_keep_the_latest_state() {
        let d = dir("roundtrip");
        let mut store = SqliteStore::open(&d).unwrap();
        store.commit(&[rec(Table::Incident, "1", "a"), rec(Table::Unit, "T1", "u1")], 5).unwrap();
        store.commit(&[rec(Table::Incident, "1", "b"), rec(Table::Incident, "2", "c")], 9).unwrap();
        drop(store);
        let got = SqliteStore::open(&d).unwrap().recover().unwrap();
        assert_eq!(got.incidents, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(got.units, vec![b"u1".to_vec()]);
        assert_eq!((got.feed_seq, got.commits), (9, 2));
    }

    #[test]
    fn a_key_written_twice_in_one_batch_keeps_its_last_body() {
        let d = dir("twice-in-a-batch");
        let mut store = SqliteStore::open(&d).unwrap();
        store
            .commit(
                &[
                    rec(Table::Incident, "1", "reported"),
                    rec(Table::Unit, "T1", "paged"),
                    rec(Table::Incident, "2", "other"),
                    rec(Table::Unit, "T1", "available"),
                    rec(Table::Incident, "1", "closed"),
                ],
                3,
            )
            .unwrap();
        drop(store);
        let got = SqliteStore::open(&d).unwrap().recover().unwrap();
        assert_eq!(got.incidents, vec![b"closed".to_vec(), b"other".to_vec()]);
        assert_eq!(got.units, vec![b"available".to_vec()]);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let d = dir("twice");
        let _first = SqliteStore::open(&d).unwrap();
        let err = SqliteStore::open(&d).err().expect("refused while the first is open").to_string();
        assert!(err.contains(DB_FILE) && err.contains("lock"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_naming_it() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let err = SqliteStore::open(&d).err().expect("refused").to_string();
        assert!(err.contains(DB_FILE), "{err}");
    }

    #[test]
    fn a_data_directory_that_cannot_be_created_is_refused() {
        let d = dir("notadir");
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::write(&d, b"a file, not a directory").unwrap();
        let err = SqliteStore::open(&d.join("sub")).err().expect("refused").to_string();
        assert!(err.contains("cannot create data directory"), "{err}");
    }
}
