//! Against a real PostgreSQL server ([`crate::test_postgres_url`]: without
//! one the tests say so and pass, unless CI requires it). Each test has
//! a schema of its own, dropped first, so they run in parallel.

use super::*;

fn options(url: &str, schema: &str) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        schema: schema.to_string(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
        apply: ApplyPolicy::default(),
        fence: Fence::Lock,
        log_retention: Duration::ZERO,
    }
}

/// A store on a schema of its own, emptied first.
fn fresh(name: &str) -> Option<(String, PgOptions)> {
    let url = crate::test_postgres_url()?;
    let schema = format!("lastmile_test_{name}_{}", std::process::id());
    let rt = PgRuntime::new().unwrap();
    let (u, s) = (url.clone(), schema.clone());
    rt.run(async move {
        let client = connect(u.parse().unwrap(), "test".into()).await.unwrap();
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE")).await.unwrap();
    });
    Some((url.clone(), options(&url, &schema)))
}

fn sql(url: &str, statement: String) {
    let rt = PgRuntime::new().unwrap();
    let url = url.to_string();
    rt.run(async move {
        let client = connect(url.parse().unwrap(), "test".into()).await.unwrap();
        client.batch_execute(&statement).await.unwrap();
    });
}

use crate::test_records::*;

#[test]
fn commits_survive_reopening_and_keep_the_latest_state() {
    let Some((_, opts)) = fresh("roundtrip") else { return };
    let mut store = PostgresStore::open(opts.clone()).unwrap();
    store.commit(vec![incident(1, "a"), unit("T1", "u1")], 5).unwrap();
    store.commit(vec![incident(1, "b"), incident(2, "c")], 9).unwrap();
    drop(store); // not applied: the next open applies the log
    let got = PostgresStore::open(opts).unwrap().recover(10).unwrap();
    assert_eq!(got.incidents, bytes(&["b", "c"]));
    assert_eq!(got.units, bytes(&["u1"]));
    assert_eq!((got.feed_seq, got.commits, got.records), (9, 2, 4));
}

#[test]
fn a_key_written_twice_in_one_batch_keeps_its_last_body_and_a_close_archives() {
    let Some((_, opts)) = fresh("twice") else { return };
    let mut store = PostgresStore::open(opts.clone()).unwrap();
    let batch = [incident(1, "reported"), unit("T1", "paged"), incident(2, "other"), unit("T1", "available")];
    store.commit(batch.to_vec(), 3).unwrap();
    store
        .commit(vec![incident(1, "closing"), archive(1, 10, 20, "closed"), entry(1, 0, "r"), entry(1, 0, "r2")], 4)
        .unwrap();
    store.settle().unwrap();
    drop(store);
    let got = PostgresStore::open(opts).unwrap().recover(10).unwrap();
    assert_eq!(got.incidents, bytes(&["other"]), "the closed incident left the live rows");
    assert_eq!(got.units, bytes(&["available"]));
    assert_eq!(got.recent_closed, bytes(&["closed"]));
    assert_eq!(got.history_len, 1);
    assert!(got.timelines.is_empty(), "a closed incident's timeline is not read at start");
}

#[test]
fn history_and_timelines_are_read_while_the_writer_writes_and_prune_bounds_them() {
    let Some((_, opts)) = fresh("history") else { return };
    let mut store = PostgresStore::open(opts.clone()).unwrap();
    let reader = store.reader().unwrap();
    store.commit(vec![incident(1, "open-1"), entry(1, 0, "reported"), entry(1, 1, "paged")], 1).unwrap();
    store.commit(vec![incident(2, "open-2"), entry(2, 0, "reported")], 2).unwrap();
    store.settle().unwrap();
    assert_eq!(reader.timeline(1).unwrap(), bytes(&["reported", "paged"]));
    let live = store.recover(0).unwrap();
    assert_eq!(live.timelines.len(), 3, "open incidents' timelines are read at start");
    store.commit(vec![entry(1, 2, "closed"), archive(1, 1_000, 5_000, "closed-1")], 3).unwrap();
    store.settle().unwrap();
    assert_eq!(reader.incident(1).unwrap(), Some(b"closed-1".to_vec()));
    assert_eq!(reader.incident(2).unwrap(), None, "open incidents are not history");
    assert_eq!(reader.timeline(1).unwrap(), bytes(&["reported", "paged", "closed"]));
    for (seq, reported) in [(3, 2_000), (4, 3_000), (5, 4_000)] {
        let body = format!("closed-{seq}");
        store.commit(vec![incident(seq, "x"), archive(seq, reported, 6_000 + reported, &body)], 4).unwrap();
    }
    store.settle().unwrap();
    let seqs = |q: ClosedQuery| reader.closed(&q).unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(seqs(ClosedQuery { limit: 10, ..Default::default() }), [1, 3, 4, 5]);
    assert_eq!(seqs(ClosedQuery { limit: 2, after_seq: 1, ..Default::default() }), [3, 4]);
    assert_eq!(seqs(ClosedQuery { from_ms: Some(2_000), to_ms: Some(4_000), limit: 10, ..Default::default() }), [3, 4]);
    assert_eq!(reader.outcomes(0, 10_000).unwrap(), bytes(&["o1", "o3", "o4", "o5"]));
    assert_eq!(reader.recent_outcomes(2).unwrap(), bytes(&["o5", "o4"]));
    // Closed before 9 000 ms: 1 (5 000) and 3 (8 000); at most 1 at a time.
    assert_eq!(store.prune(9_000, 1).unwrap(), 1);
    assert_eq!(store.prune(9_000, 10).unwrap(), 1);
    assert_eq!(store.prune(9_000, 10).unwrap(), 0);
    assert_eq!(reader.incident(1).unwrap(), None);
    assert!(reader.timeline(1).unwrap().is_empty(), "a pruned incident's timeline goes with it");
    assert_eq!(seqs(ClosedQuery { limit: 10, ..Default::default() }), [4, 5]);
    assert_eq!(store.recover(0).unwrap().history_len, 2);
}

#[test]
fn a_second_writer_on_the_same_schema_is_refused_and_the_lock_goes_with_the_first() {
    let Some((_, opts)) = fresh("lock") else { return };
    let first = PostgresStore::open(opts.clone()).unwrap();
    let err = PostgresStore::open(opts.clone()).err().expect("a second writer is refused").to_string();
    assert!(err.contains("another lastmile server is writing this schema"), "{err}");
    drop(first);
    // The session ends with the store (its lock with it); PostgreSQL may
    // take a moment to notice the closed connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match PostgresStore::open(opts.clone()) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("another lastmile server"), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the lock outlived its store: {e}"),
        }
    }
}

#[test]
fn a_newer_schema_a_bad_schema_name_and_a_bad_url_are_refused_with_what_is_wrong() {
    let Some((url, opts)) = fresh("newer") else { return };
    drop(PostgresStore::open(opts.clone()).unwrap());
    sql(&url, format!("UPDATE \"{}\".schema_version SET version = 99", opts.schema));
    let err = PostgresStore::open(opts.clone()).err().unwrap().to_string();
    assert!(err.contains("schema version 99 is newer than this lastmile's (1)"), "{err}");

    let bad = PgOptions { schema: "Robert'); DROP".into(), ..opts.clone() };
    let err = PostgresStore::open(bad).err().unwrap().to_string();
    assert!(err.contains("journal.schema") && err.contains("lower-case letters"), "{err}");

    let bad = PgOptions { url: "postgres://[::1".into(), ..opts.clone() };
    let err = PostgresStore::open(bad).err().unwrap().to_string();
    assert!(err.contains("journal.url: not a PostgreSQL URL"), "{err}");

    let nobody = PgOptions {
        url: "postgres://postgres@127.0.0.1:1/postgres".into(),
        connect_timeout: Duration::from_secs(2),
        ..opts
    };
    let err = PostgresStore::open(nobody).err().unwrap().to_string();
    assert!(err.contains("cannot connect") && err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn a_commit_after_the_server_ends_the_session_fails_and_is_not_kept() {
    let Some((url, opts)) = fresh("gone") else { return };
    let mut store = PostgresStore::open(opts.clone()).unwrap();
    store.commit(vec![incident(1, "kept")], 1).unwrap();
    // What a database restart or failover does to the writer's session.
    sql(
        &url,
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lastmile writer {}'",
            opts.schema
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match store.commit(vec![incident(2, "lost")], 2) {
            Err(e) => break e.to_string(),
            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(()) => panic!("commits went on after the session was ended"),
        }
    };
    assert!(err.contains("cannot commit"), "{err}");
    drop(store);
    let got = PostgresStore::open(opts).unwrap().recover(0).unwrap();
    assert!(got.incidents.contains(&b"kept".to_vec()), "what was committed before is there");
}

mod cluster {
    use super::*;
    use crate::cluster::{Acquire, Cluster, Follower, NodeInfo};

    fn node(id: &str) -> NodeInfo {
        NodeInfo { node_id: id.into(), grpc_addr: format!("{id}:50051"), http_addr: format!("{id}:8080") }
    }

    fn leader_store(opts: &PgOptions, epoch: u64) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(PgOptions { fence: Fence::Epoch(epoch), ..opts.clone() })
    }

    #[test]
    fn one_leader_at_a_time_and_a_lapsed_lease_goes_to_another_with_a_higher_epoch() {
        let Some((_, opts)) = fresh("lease") else { return };
        let a = Cluster::connect(&opts, node("a"), 400).unwrap();
        let b = Cluster::connect(&opts, node("b"), 400).unwrap();
        assert_eq!(a.try_acquire().unwrap(), Acquire::Won(1));
        assert_eq!(b.try_acquire().unwrap(), Acquire::Held, "a's lease runs");
        assert!(a.renew(1).unwrap());
        let leader = b.leader().unwrap().unwrap();
        assert_eq!((&leader.node, leader.epoch), (&node("a"), 1));
        assert!(leader.expires_in_ms > 0 && leader.expires_in_ms <= 400, "{leader:?}");
        // a stops renewing: once its lease lapses, b takes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let epoch = loop {
            if let Acquire::Won(e) = b.try_acquire().unwrap() {
                break e;
            }
            assert!(Instant::now() < deadline, "the lease never lapsed");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(epoch, 2);
        assert!(!a.renew(1).unwrap(), "a is deposed");
        b.release(2).unwrap();
        assert_eq!(a.try_acquire().unwrap(), Acquire::Won(3), "a released lease is taken at once");
    }

    #[test]
    fn nodes_racing_for_a_free_lease_never_fail_and_exactly_one_wins() {
        let Some((_, opts)) = fresh("race") else { return };
        let nodes: Vec<Arc<Cluster>> =
            ["a", "b", "c"].iter().map(|id| Arc::new(Cluster::connect(&opts, node(id), 60_000).unwrap())).collect();
        for round in 0..20 {
            let barrier = Arc::new(std::sync::Barrier::new(nodes.len()));
            let tries: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let (n, barrier) = (n.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        n.try_acquire()
                    })
                })
                .collect();
            let got: Vec<Acquire> = tries.into_iter().map(|t| t.join().unwrap().expect("never an error")).collect();
            let won: Vec<u64> =
                got.iter().filter_map(|a| if let Acquire::Won(e) = a { Some(*e) } else { None }).collect();
            assert_eq!(won.len(), 1, "round {round}: {got:?}");
            let winner = got.iter().position(|a| matches!(a, Acquire::Won(_))).unwrap();
            nodes[winner].release(won[0]).unwrap();
        }
    }

    #[test]
    fn status_reads_a_schema_a_node_created_and_creates_none() {
        let Some((url, opts)) = fresh("status") else { return };
        let err = crate::cluster::status(&opts).expect_err("no node has started here").to_string();
        assert!(err.contains("no lastmile tables in this schema"), "{err}");
        let rt = PgRuntime::new().unwrap();
        let schema = opts.schema.clone();
        let created: bool = rt.run(async move {
            let client = connect(url.parse().unwrap(), "test".into()).await.unwrap();
            let row = client.query_one("SELECT count(*) > 0 FROM pg_namespace WHERE nspname = $1", &[&schema]).await;
            row.unwrap().get(0)
        });
        assert!(!created, "status created the schema");
        let a = Cluster::connect(&opts, node("a"), 60_000).unwrap();
        assert_eq!(a.try_acquire().unwrap(), Acquire::Won(1));
        a.heartbeat("leader", 0).unwrap();
        let status = crate::cluster::status(&opts).unwrap();
        assert_eq!(status.leader.map(|l| (l.node.node_id, l.epoch)), Some(("a".to_string(), 1)));
        assert_eq!(status.nodes.len(), 1);
    }

    #[test]
    fn a_deposed_leader_commits_nothing_and_the_new_one_follows_on() {
        let Some((_, opts)) = fresh("fence") else { return };
        let a = Cluster::connect(&opts, node("a"), 200).unwrap();
        let b = Cluster::connect(&opts, node("b"), 200).unwrap();
        assert_eq!(a.try_acquire().unwrap(), Acquire::Won(1));
        let mut old = leader_store(&opts, 1).unwrap();
        old.commit(vec![incident(1, "by-a")], 1).unwrap();
        let err = leader_store(&opts, 7).err().unwrap().to_string();
        assert!(err.contains("fenced") && err.contains("epoch 7"), "a store opens only with the lease's epoch: {err}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.try_acquire().unwrap() != Acquire::Won(2) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        // a wakes up and writes on: refused, and not stored.
        let err = old.commit(vec![incident(2, "by-a-after")], 2).expect_err("fenced").to_string();
        assert!(err.contains("fenced"), "{err}");
        let err = old.settle().expect_err("its apply is fenced too").to_string();
        assert!(err.contains("fenced"), "{err}");
        let mut new = leader_store(&opts, 2).unwrap();
        new.commit(vec![incident(3, "by-b")], 3).unwrap();
        new.settle().unwrap();
        let got = new.recover(0).unwrap();
        assert_eq!(got.incidents, bytes(&["by-a", "by-b"]), "a's commit before the takeover is kept, by b's apply");
    }

    #[test]
    fn a_follower_mirrors_the_live_state_and_reads_afresh_when_it_fell_behind_the_retention() {
        let Some((_, opts)) = fresh("follow") else { return };
        let a = Cluster::connect(&opts, node("a"), 60_000).unwrap();
        assert_eq!(a.try_acquire().unwrap(), Acquire::Won(1));
        let keep = PgOptions { log_retention: Duration::from_secs(3600), ..opts.clone() };
        let mut store = leader_store(&keep, 1).unwrap();
        store.commit(vec![incident(1, "r1"), unit("U", "paged"), entry(1, 0, "reported")], 1).unwrap();
        store.commit(vec![incident(2, "r2"), entry(2, 0, "reported")], 2).unwrap();
        store.settle().unwrap();
        let mut follower = Follower::start(&opts, "b", 10).unwrap();
        store.commit(vec![entry(1, 1, "closed"), archive(1, 5, 9, "c1"), unit("U", "free")], 3).unwrap();
        store.commit(vec![incident(2, "r2-acked"), entry(2, 1, "acked")], 4).unwrap();
        assert_eq!(follower.poll().unwrap(), 2);
        assert_eq!(follower.full_reads, 1);
        store.settle().unwrap();
        assert_eq!(follower.recovered(), store.recover(10).unwrap(), "the mirror is what a recovery reads");
        // Rows deleted past a follower's position: it reads afresh.
        let mut quick = leader_store(&opts, 1);
        drop(store);
        let quick = quick.as_mut().unwrap(); // log_retention 0: applied rows go at once
        quick.commit(vec![incident(4, "r4")], 5).unwrap();
        quick.commit(vec![incident(5, "r5")], 6).unwrap();
        quick.settle().unwrap();
        follower.poll().unwrap();
        assert_eq!(follower.full_reads, 2);
        assert_eq!(follower.recovered(), quick.recover(10).unwrap());
    }
}

#[test]
fn a_single_server_and_a_cluster_never_write_one_schema_at_once() {
    use crate::cluster::{Acquire, Cluster, NodeInfo};
    let Some((_, opts)) = fresh("mixed") else { return };
    let node = NodeInfo { node_id: "a".into(), grpc_addr: "a:1".into(), http_addr: "a:2".into() };
    let single = PostgresStore::open(opts.clone()).unwrap();
    let cluster = Cluster::connect(&opts, node, 60_000).unwrap();
    assert_eq!(cluster.try_acquire().unwrap(), Acquire::Locked, "the single server holds the schema");
    drop(single);
    let deadline = Instant::now() + Duration::from_secs(10);
    let epoch = loop {
        match cluster.try_acquire() {
            Ok(Acquire::Won(epoch)) => break epoch,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("{other:?}"),
        }
    };
    let err = PostgresStore::open(opts).err().expect("a cluster leads").to_string();
    assert!(err.contains(&format!("node a leads, epoch {epoch}")), "{err}");
}
