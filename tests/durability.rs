//! Durability: every change answered OK is in the journal, and a restart on
//! the same data directory brings back incidents, reservations, the
//! idempotency index and the timers.

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, accept, config_on_disk, paging_units, report, temp_dir, with_journal};

#[tokio::test]
async fn a_restart_recovers_incidents_units_idempotency_and_timers() {
    let dir = temp_dir("restart");
    // Tier 3 pages time out after 1 s, so a timer is due across the restart.
    let edit = |text: String| with_journal(&dir)(text).replace("ack_timeout_s = 30", "ack_timeout_s = 1");
    let server = TestServer::start_with(config_on_disk(&paging_units(), edit)).await;
    let mut client = server.client().await;
    let first = client.report_incident(report("grid-d1")).await.unwrap().into_inner().incident.unwrap();
    let mut terminal = server.terminal().await;
    terminal.acknowledge(accept("T5-a", &first.id)).await.unwrap();
    let second = client.report_incident(report("grid-d2")).await.unwrap().into_inner().incident.unwrap();
    client.close_incident(pb::CloseIncidentRequest { id: second.id.clone(), reason: "test".into() }).await.unwrap();
    let before_first = client.get_incident(pb::GetIncidentRequest { id: first.id.clone() }).await.unwrap().into_inner();
    let before_units = client.list_units(pb::ListUnitsRequest::default()).await.unwrap().into_inner().units;
    server.shutdown().await;

    // Same data directory: everything is back, exactly.
    let server = TestServer::start_with(config_on_disk(&paging_units(), edit)).await;
    let mut client = server.client().await;
    let after_second =
        client.get_incident(pb::GetIncidentRequest { id: second.id.clone() }).await.unwrap().into_inner();
    assert_eq!(after_second.status(), pb::IncidentStatus::Closed);
    let retry = client.report_incident(report("grid-d1")).await.unwrap().into_inner();
    assert!(retry.duplicate, "the idempotency index survived");
    assert_eq!(retry.incident.unwrap().id, first.id);
    let third = client.report_incident(report("grid-d3")).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(third.id, "inc-000003", "the incident sequence survived");
    // The T3-a page of the first incident came due across the restart (1 s):
    // its re-armed timer times it out and the slot is re-paged.
    let after_first = lastmile_suite::eventually(|| {
        let mut client = client.clone();
        let id = first.id.clone();
        async move {
            let incident = client.get_incident(pb::GetIncidentRequest { id }).await.unwrap().into_inner();
            (incident.tiers[1].assignments[0].state() == pb::AssignmentState::TimedOut).then_some(incident)
        }
    })
    .await;
    assert_eq!(after_first.tiers[1].assignments[1].attempt, 2, "re-paged after the restart");
    assert_eq!(after_first.tiers[2], before_first.tiers[2], "tier 5 (acknowledged) is unchanged");
    assert_eq!(after_first.tiers[1].assignments[0].state(), pb::AssignmentState::TimedOut);
    let t5 = client.get_unit(pb::GetUnitRequest { id: "T5-a".into() }).await.unwrap().into_inner();
    assert_eq!(t5, before_units.iter().find(|u| u.id == "T5-a").unwrap().clone());
    assert_eq!(t5.status(), pb::UnitStatus::EnRoute);
    server.dispatcher.check_invariants().unwrap();
}

/// The real binary, killed with SIGKILL at random moments of a surge, then
/// restarted on the same data directory, several rounds. Seeded: the seed is
/// printed and `LASTMILE_SEED` replays a run.
mod kill_9 {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use lastmile_suite::surge::{surge_client, verify};
    use lastmile_suite::v1 as pb;
    use lastmile_suite::v1::dispatch_client::DispatchClient;
    use lastmile_suite::{ServedBinary, SplitMix64, eventually, report, temp_dir, test_seed};
    use tonic::transport::Channel;

    async fn channel(endpoint: &str) -> Channel {
        Channel::from_shared(endpoint.to_string()).unwrap().connect().await.expect("connect")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill_9_at_random_moments_loses_nothing_acknowledged() {
        kill_9_rounds("kill_9", &[]).await;
    }

    /// The same on the PostgreSQL journal (a real server: `.ci/postgres.sh`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_kill_9_at_random_moments_loses_nothing_acknowledged() {
        let Some(journal) = lastmile_suite::postgres_journal("kill9") else { return };
        kill_9_rounds("kill_9_postgres", &journal).await;
    }

    /// Four servers in turn on one journal (the config's data directory, or
    /// the one `journal`'s flags name), each SIGKILLed in a surge.
    async fn kill_9_rounds(seed_name: &str, journal: &[String]) {
        let mut rng = SplitMix64(test_seed(seed_name));
        let dir = temp_dir("kill9");
        let config_path = lastmile_suite::config_with_tier1_timing_out(&dir);
        let answered: Arc<Mutex<BTreeMap<String, pb::Incident>>> = Arc::default();
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut args = vec!["--config".to_string(), config_path.display().to_string()];
        args.extend_from_slice(journal);
        for round in 0..4u64 {
            let server = ServedBinary::start(&args);
            let mut client = DispatchClient::new(channel(&server.endpoint()).await);
            verify_after_restart(&mut client, &answered, &acked, round).await;
            if round == 3 {
                // Timers fire after the restart: every tier-1 page left waiting
                // before the kill is past its 1 s timeout, so none stays PAGED.
                let first_tier1 = answered.lock().unwrap().values().next().cloned();
                if let Some(incident) = first_tier1 {
                    no_first_tier1_page_waits(&client, &incident.id).await;
                }
                break;
            }
            // A surge: 8 clients reporting, accepting some tier-3 pages, closing some incidents.
            let mut tasks = Vec::new();
            for c in 0..8u64 {
                let (answered, acked) = (answered.clone(), acked.clone());
                let ch = channel(&server.endpoint()).await;
                let local = SplitMix64(rng.next_u64());
                tasks.push(tokio::spawn(surge_client(ch, format!("r{round}-c{c}"), local, answered, acked)));
            }
            let kill_after_ms = 100 + rng.next_u64() % 700;
            tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
            drop(server); // SIGKILL, then reap
            for t in tasks {
                let _ = t.await;
            }
            println!(
                "round {round}: killed after {kill_after_ms} ms; {} incidents answered OK so far",
                answered.lock().unwrap().len()
            );
        }
        assert!(!answered.lock().unwrap().is_empty(), "the surge reported something");
    }

    /// After a restart: everything answered OK before is there ([`verify`]),
    /// and repeated external ids are still recognised.
    async fn verify_after_restart(
        client: &mut DispatchClient<Channel>,
        answered: &Mutex<BTreeMap<String, pb::Incident>>,
        acked: &Mutex<Vec<(String, String)>>,
        round: u64,
    ) {
        let answered = answered.lock().unwrap().clone();
        let acked = acked.lock().unwrap().clone();
        verify(client, &answered, &acked).await;
        for external_id in answered.keys().take(5) {
            let r = client.report_incident(report(external_id)).await.unwrap().into_inner();
            assert!(r.duplicate, "{external_id} not recognised after restart {round}");
        }
    }

    /// Waits until incident `id` has no first tier-1 page still PAGED (or is closed).
    async fn no_first_tier1_page_waits(client: &DispatchClient<Channel>, id: &str) {
        eventually(|| {
            let mut client = client.clone();
            let id = id.to_string();
            async move {
                let i = client.get_incident(pb::GetIncidentRequest { id }).await.unwrap().into_inner();
                let waiting_old = i
                    .tiers
                    .iter()
                    .flat_map(|t| &t.assignments)
                    .any(|a| a.state() == pb::AssignmentState::Paged && a.tier == 1 && a.attempt == 1);
                (!waiting_old || i.status() == pb::IncidentStatus::Closed).then_some(())
            }
        })
        .await;
    }
}

/// Fail closed: a journal the server cannot trust or cannot write is refused
/// with a message naming the file, and nothing is answered OK that was not
/// stored. The disk-full and read-only cases mount a small tmpfs, which needs
/// root (CI runs as root); without it they say so and skip.
mod fail_closed {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use lastmile_suite::v1 as pb;
    use lastmile_suite::{
        ServedBinary, TestServer, config_on_disk, lastmile_bin, paging_units, report, temp_dir, with_journal,
    };

    struct Mount(PathBuf);

    impl Mount {
        fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            }
            ok.then(|| Mount(dir.to_path_buf()))
        }

        fn remount(&self, options: &str) {
            let status =
                Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.0).status().unwrap();
            assert!(status.success(), "remount {options}");
        }
    }

    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    #[test]
    fn a_corrupt_journal_stops_the_server_naming_the_file() {
        let dir = temp_dir("corrupt");
        std::fs::write(dir.join("lastmile.db"), vec![0x42u8; 64 * 1024]).unwrap();
        let output = Command::new(lastmile_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&dir.join("lastmile.db").display().to_string()), "{stderr}");
    }

    #[test]
    fn a_read_only_data_directory_stops_the_server_naming_it() {
        let dir = temp_dir("readonly");
        let Some(_mount) = Mount::tmpfs(&dir, "ro,size=1m") else { return };
        let output = Command::new(lastmile_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    }

    #[tokio::test]
    async fn a_full_disk_is_refused_and_nothing_unstored_is_answered_ok() {
        let dir = temp_dir("full");
        let Some(mount) = Mount::tmpfs(&dir, "size=256k") else { return };
        let server = TestServer::start_with(config_on_disk(&paging_units(), with_journal(&dir))).await;
        let mut client = server.client().await;
        let mut stored = Vec::new();
        let failure = loop {
            let mut r = report(&format!("fill-{}", stored.len()));
            r.description = "x".repeat(4000); // fill faster
            match client.report_incident(r).await {
                Ok(answer) => {
                    stored.push(answer.into_inner().incident.unwrap().id);
                    assert!(stored.len() < 10_000, "256 KiB never filled up");
                }
                Err(status) => break status,
            }
        };
        assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
        assert!(failure.message().contains("lastmile.db"), "names the file: {}", failure.message());
        // From now on every change is refused, even a retry of a stored report; reads still work.
        let again = client.report_incident(report("fill-0")).await.unwrap_err();
        assert_eq!(again.code(), tonic::Code::Unavailable);
        let status = client
            .set_unit_status(pb::SetUnitStatusRequest {
                id: "T10-a".into(),
                status: pb::UnitStatus::OutOfService as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        client.get_incident(pb::GetIncidentRequest { id: stored[0].clone() }).await.unwrap();
        server.shutdown().await;

        // With room again, a restart has every incident that was answered OK.
        mount.remount("size=16m");
        let server = TestServer::start_with(config_on_disk(&paging_units(), with_journal(&dir))).await;
        let mut client = server.client().await;
        for id in &stored {
            client
                .get_incident(pb::GetIncidentRequest { id: id.clone() })
                .await
                .unwrap_or_else(|e| panic!("{id} lost: {e:?}"));
        }
        server.dispatcher.check_invariants().unwrap();
    }

    /// The database ends the writer's session (what a database restart or
    /// failover does): the server fails closed, naming the database, and a
    /// restart on the same schema has every incident answered OK.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_a_lost_session_is_refused_and_nothing_unstored_is_answered_ok() {
        let Some(journal) = lastmile_suite::postgres_journal("lost") else { return };
        let (url, schema) = (&journal[1], &journal[3]);
        let server = ServedBinary::start(&journal);
        let channel = tonic::transport::Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
        let mut client = lastmile_suite::v1::dispatch_client::DispatchClient::new(channel);
        let stored = client.report_incident(report("pg-kept")).await.unwrap().into_inner().incident.unwrap().id;
        let terminate = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'lastmile writer {schema}'"
        );
        let out =
            Command::new("psql").args([url.as_str(), "-Atc", &terminate]).output().expect("psql (postgresql-client)");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "one writer session");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let failure = lastmile_suite::eventually(|| {
            let mut client = client.clone();
            async move {
                let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                client.report_incident(report(&format!("pg-after-{n}"))).await.err()
            }
        })
        .await;
        assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
        assert!(failure.message().contains(&format!("schema {schema}")), "names the database: {}", failure.message());
        let again = client.report_incident(report("pg-kept")).await.unwrap_err();
        assert_eq!(again.code(), tonic::Code::Unavailable, "every change is refused from then on");
        client.get_incident(pb::GetIncidentRequest { id: stored.clone() }).await.unwrap();
        drop(server);
        let server = ServedBinary::start(&journal);
        let channel = tonic::transport::Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
        let mut client = lastmile_suite::v1::dispatch_client::DispatchClient::new(channel);
        client.get_incident(pb::GetIncidentRequest { id: stored }).await.expect("answered OK, so stored");
    }

    #[test]
    fn a_torn_tail_of_the_write_ahead_log_is_ignored() {
        let dir = temp_dir("torn");
        let data_dir = [std::ffi::OsStr::new("--data-dir"), dir.as_os_str()];
        let server = ServedBinary::start(data_dir);
        for i in 0..5 {
            let out = Command::new(lastmile_bin())
                .args(["report", "--addr", &server.endpoint(), "--lat", "28.58", "--lng", "121.37", "--external-id"])
                .arg(format!("torn-{i}"))
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        drop(server); // SIGKILL: the WAL is not checkpointed
        let wal = dir.join("lastmile.db-wal");
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "a WAL with the last transactions ({len} bytes)");
        // Tear the last transaction: cut its final 500 bytes.
        std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(len - 500).unwrap();
        let server = ServedBinary::start(data_dir); // panics if the restart fails
        // The first incidents (committed long before the torn one) are there.
        let out =
            Command::new(lastmile_bin()).args(["get", "--addr", &server.endpoint(), "inc-000001"]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("external_id=torn-0"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn feed_numbers_start_at_1_on_a_new_journal_and_jump_past_the_old_ones_after_a_restart() {
    use lastmile_suite::next;
    let dir = temp_dir("feed-seq");
    let server = TestServer::start_with(config_on_disk(&paging_units(), with_journal(&dir))).await;
    let mut feed = server.watch(0, "").await;
    server.client().await.report_incident(report("seq-1")).await.unwrap();
    let first = next(&mut feed).await.unwrap().expect("an event");
    assert_eq!(first.seq, 1, "a new journal has no numbers to protect");
    drop(feed);
    server.shutdown().await;

    let server = TestServer::start_with(config_on_disk(&paging_units(), with_journal(&dir))).await;
    let mut feed = server.watch(0, "").await;
    server.client().await.report_incident(report("seq-2")).await.unwrap();
    let after = next(&mut feed).await.unwrap().expect("an event");
    assert!(
        after.seq > lastmile_server::FEED_SEQ_GAP_AFTER_RESTART,
        "a watcher's old number is never reused: {}",
        after.seq
    );
    server.shutdown().await;
}
