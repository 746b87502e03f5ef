use std::path::PathBuf;

use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lastmile-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

use crate::test_records::*;

#[test]
fn commits_survive_reopening_and_keep_the_latest_state() {
    let d = dir("roundtrip");
    let mut store = SqliteStore::open(&d).unwrap();
    store.commit(vec![incident(1, "a"), unit("T1", "u1")], 5).unwrap();
    store.commit(vec![incident(1, "b"), incident(2, "c")], 9).unwrap();
    drop(store);
    let got = SqliteStore::open(&d).unwrap().recover(10).unwrap();
    assert_eq!(got.incidents, bytes(&["b", "c"]));
    assert_eq!(got.units, bytes(&["u1"]));
    assert_eq!((got.feed_seq, got.commits, got.records), (9, 2, 4));
}

#[test]
fn a_key_written_twice_in_one_batch_keeps_its_last_body() {
    let d = dir("twice-in-a-batch");
    let mut store = SqliteStore::open(&d).unwrap();
    let batch = [incident(1, "reported"), unit("T1", "paged"), incident(2, "other"), unit("T1", "available")];
    store.commit(batch.to_vec(), 3).unwrap();
    store.commit(vec![incident(1, "closing"), archive(1, 10, 20, "closed")], 4).unwrap();
    drop(store);
    let got = SqliteStore::open(&d).unwrap().recover(10).unwrap();
    assert_eq!(got.incidents, bytes(&["other"]), "the closed incident left the live rows");
    assert_eq!(got.units, bytes(&["available"]));
    assert_eq!(got.recent_closed, bytes(&["closed"]));
    assert_eq!(got.history_len, 1);
}

#[test]
fn history_and_timelines_are_read_while_the_writer_writes() {
    let d = dir("history");
    let mut store = SqliteStore::open(&d).unwrap();
    let reader = store.reader().unwrap();
    store.commit(vec![incident(1, "open-1"), entry(1, 0, "reported"), entry(1, 1, "paged")], 1).unwrap();
    store.commit(vec![incident(2, "open-2"), entry(2, 0, "reported")], 2).unwrap();
    store.settle().unwrap();
    assert_eq!(reader.timeline(1).unwrap(), bytes(&["reported", "paged"]));
    store.commit(vec![entry(1, 2, "closed"), archive(1, 1_000, 5_000, "closed-1")], 3).unwrap();
    store.settle().unwrap();
    assert_eq!(reader.incident(1).unwrap(), Some(b"closed-1".to_vec()));
    assert_eq!(reader.incident(2).unwrap(), None, "open incidents are not history");
    assert_eq!(reader.timeline(1).unwrap(), bytes(&["reported", "paged", "closed"]));
    for (seq, reported) in [(3, 2_000), (4, 3_000), (5, 4_000)] {
        let body = format!("closed-{seq}");
        store.commit(vec![incident(seq, "x"), archive(seq, reported, 6_000, &body)], 4).unwrap();
    }
    store.settle().unwrap();
    let seqs = |q: ClosedQuery| reader.closed(&q).unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(seqs(ClosedQuery { limit: 10, ..Default::default() }), [1, 3, 4, 5]);
    assert_eq!(seqs(ClosedQuery { from_ms: Some(2_000), to_ms: Some(4_000), limit: 10, after_seq: 0 }), [3, 4]);
    assert_eq!(seqs(ClosedQuery { after_seq: 3, limit: 1, ..Default::default() }), [4]);
    drop(store);
    // Start-up reads the live state only: the open incident and its timeline.
    let got = SqliteStore::open(&d).unwrap().recover(2).unwrap();
    assert_eq!(got.incidents, bytes(&["open-2"]));
    assert_eq!(got.timelines, vec![(2, b"reported".to_vec())]);
    assert_eq!(got.recent_closed, bytes(&["closed-4", "closed-5"]));
    assert_eq!(got.history_len, 4);
}

#[test]
fn pruning_deletes_the_oldest_closed_with_their_timelines() {
    let d = dir("prune");
    let mut store = SqliteStore::open(&d).unwrap();
    let reader = store.reader().unwrap();
    for seq in 1..=5u64 {
        let closed_at = seq as i64 * 100;
        store.commit(vec![entry(seq, 0, "e"), archive(seq, 0, closed_at, "c")], seq).unwrap();
    }
    assert_eq!(store.prune(350, 2).unwrap(), 2, "bounded per call");
    assert_eq!(store.prune(350, 2).unwrap(), 1);
    assert_eq!(store.prune(350, 2).unwrap(), 0);
    assert_eq!(reader.incident(3).unwrap(), None);
    assert!(reader.timeline(3).unwrap().is_empty());
    assert_eq!(reader.incident(4).unwrap(), Some(b"c".to_vec()));
    assert_eq!(store.recover(0).unwrap().history_len, 2);
    assert_eq!(reader.outcomes(i64::MIN, i64::MAX).unwrap(), bytes(&["o4", "o5"]), "outcomes pruned with them");
}

#[test]
fn outcomes_are_read_by_report_time_and_the_recent_ones_by_close_time() {
    let d = dir("outcomes");
    let mut store = SqliteStore::open(&d).unwrap();
    let reader = store.reader().unwrap();
    // Reported at 50, 10, 30, 20; closed in seq order.
    for (seq, reported) in [(1u64, 50i64), (2, 10), (3, 30), (4, 20)] {
        store.commit(vec![archive(seq, reported, 100 + seq as i64, "c")], seq).unwrap();
    }
    store.settle().unwrap();
    assert_eq!(reader.outcomes(10, 50).unwrap(), bytes(&["o2", "o4", "o3"]), "[from, to), by report time");
    assert_eq!(reader.outcomes(51, 99).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(reader.recent_outcomes(2).unwrap(), bytes(&["o4", "o3"]), "most recently closed first");
    assert!(reader.without_outcome(0, 100).unwrap().is_empty());
    // A history row archived without an outcome (a schema-2 journal, upgraded
    // with three closed incidents).
    store.conn.execute("DELETE FROM outcomes WHERE seq = 3", []).unwrap();
    assert!(reader.without_outcome(0, 100).unwrap().is_empty(), "a journal created with outcomes has none missing");
    store.conn.execute("INSERT INTO meta (key, value) VALUES ('legacy_history_max_seq', 3)", []).unwrap();
    assert_eq!(reader.without_outcome(0, 100).unwrap(), vec![(3, b"c".to_vec())]);
    assert_eq!(reader.without_outcome(0, 30).unwrap(), vec![], "[from, to)");
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
fn a_journal_from_a_newer_lastmile_is_refused() {
    let d = dir("newer");
    drop(SqliteStore::open(&d).unwrap());
    let conn = Connection::open(d.join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let err = SqliteStore::open(&d).err().expect("refused").to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn a_data_directory_that_cannot_be_created_is_refused() {
    let d = dir("notadir");
    std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    std::fs::write(&d, b"a file, not a directory").unwrap();
    let err = SqliteStore::open(&d.join("sub")).err().expect("refused").to_string();
    assert!(err.contains("cannot create data directory"), "{err}");
}

#[test]
fn the_eta_calibration_is_one_row_replaced_and_recovered() {
    let d = dir("calibration");
    let mut store = SqliteStore::open(&d).unwrap();
    assert_eq!(store.recover(0).unwrap().calibration, None);
    let c = |b: &str| Record::Calibration { body: b.as_bytes().to_vec() };
    store.commit(vec![c("first"), c("second")], 1).unwrap();
    store.commit(vec![c("third")], 2).unwrap();
    drop(store);
    assert_eq!(SqliteStore::open(&d).unwrap().recover(0).unwrap().calibration, Some(b"third".to_vec()));
}

#[test]
fn a_schema_2_journal_is_upgraded_remembering_which_closed_incidents_have_no_outcome() {
    let d = dir("upgrade-2");
    let mut store = SqliteStore::open(&d).unwrap();
    store.commit(vec![archive(1, 10, 20, "one"), archive(2, 11, 21, "two")], 1).unwrap();
    store.settle().unwrap();
    // As a schema-2 journal was: no outcomes, version 2.
    store.conn.execute_batch("DROP TABLE outcomes; PRAGMA user_version = 2;").unwrap();
    drop(store);
    let mut store = SqliteStore::open(&d).unwrap();
    let reader = store.reader().unwrap();
    let missing: Vec<u64> = reader.without_outcome(0, 100).unwrap().into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(missing, [1, 2]);
    store.commit(vec![archive(3, 12, 22, "three")], 2).unwrap();
    store.settle().unwrap();
    assert_eq!(reader.outcomes(0, 100).unwrap(), bytes(&["o3"]), "closed after the upgrade: with its outcome");
    assert_eq!(reader.without_outcome(0, 100).unwrap().len(), 2);
}

fn log_rows(store: &SqliteStore) -> i64 {
    store.conn.query_row("SELECT count(*) FROM log", [], |r| r.get(0)).unwrap()
}

fn table_rows(store: &SqliteStore, table: &str) -> i64 {
    store.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn a_commit_is_a_log_row_until_applied_and_a_crash_before_the_apply_loses_nothing() {
    let d = dir("log-crash");
    let policy = ApplyPolicy { max_records: 1000, interval: std::time::Duration::from_secs(3600) };
    let mut store = SqliteStore::open_with(&d, policy).unwrap();
    assert_eq!(store.settle_due(), None, "nothing pending");
    store.commit(vec![incident(1, "reported"), unit("T1", "paged"), entry(1, 0, "r")], 7).unwrap();
    store.commit(vec![unit("T1", "available"), entry(1, 1, "c"), archive(1, 10, 20, "closed")], 8).unwrap();
    store.commit(vec![incident(2, "open"), entry(2, 0, "r")], 9).unwrap();
    assert!(store.settle_due().is_some_and(|d| d > std::time::Duration::from_secs(3000)));
    assert_eq!(log_rows(&store), 3, "one row per commit");
    assert_eq!(
        (table_rows(&store, "incidents"), table_rows(&store, "history"), table_rows(&store, "units")),
        (0, 0, 0)
    );
    drop(store); // a crash: never applied
    let mut store = SqliteStore::open_with(&d, policy).unwrap();
    assert_eq!(log_rows(&store), 0, "the open applied the log");
    let got = store.recover(10).unwrap();
    assert_eq!(got.incidents, bytes(&["open"]));
    assert_eq!(got.units, bytes(&["available"]));
    assert_eq!(got.recent_closed, bytes(&["closed"]));
    assert_eq!(got.timelines, vec![(2, b"r".to_vec())]);
    assert_eq!((got.feed_seq, got.commits, got.records, got.history_len), (9, 3, 8, 1));
    let reader = store.reader().unwrap();
    assert_eq!(reader.timeline(1).unwrap(), bytes(&["r", "c"]));
    assert_eq!(reader.outcomes(0, 100).unwrap(), bytes(&["o1"]));
}

#[test]
fn the_log_is_applied_once_it_holds_max_records() {
    let d = dir("log-bound");
    let policy = ApplyPolicy { max_records: 4, interval: std::time::Duration::from_secs(3600) };
    let mut store = SqliteStore::open_with(&d, policy).unwrap();
    store.commit(vec![incident(1, "a"), unit("T1", "u")], 1).unwrap();
    store.commit(vec![incident(1, "b"), unit("T1", "v")], 2).unwrap();
    assert_eq!(log_rows(&store), 2, "coalesced: two records held");
    store.commit(vec![incident(2, "c"), unit("T2", "w")], 3).unwrap();
    assert_eq!(log_rows(&store), 3, "four held: due now");
    assert_eq!(store.settle_due(), Some(std::time::Duration::ZERO));
    store.commit(vec![unit("T3", "x")], 4).unwrap();
    assert_eq!(log_rows(&store), 1, "applied before the next commit's row");
    assert_eq!(table_rows(&store, "incidents"), 2);
    store.settle().unwrap();
    assert_eq!(store.settle_due(), None);
    assert_eq!(store.recover(0).unwrap().records, 7);
}
