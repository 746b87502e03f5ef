//! The shared end-to-end harness: starts a real lastmile server (the same
//! `lastmile_server::run` the binary runs) on 127.0.0.1:0, and hands out gRPC
//! clients. Every test starts its own server; dropping it shuts the server down.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lastmile_core::Dispatcher;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_client::DispatchClient;
use lastmile_server::LastmileConfig;
use lastmile_server::config::{ConfigSource, embedded_config_text, embedded_dataset_file};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use lastmile_proto::v1;

pub mod http;
pub mod surge;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The JSON/HTTP gateway (always on, on its own port 0).
    pub http_addr: SocketAddr,
    /// The server's state, for invariant checks after a run.
    pub dispatcher: Arc<Dispatcher>,
    pub config: Arc<LastmileConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server on the embedded default (the Luqiao demo dataset).
    pub async fn start() -> TestServer {
        TestServer::start_edited(|_| {}).await
    }

    /// [`TestServer::start`] with `edit` applied to the configuration.
    pub async fn start_edited(edit: impl FnOnce(&mut LastmileConfig)) -> TestServer {
        let mut config = LastmileConfig::embedded().expect("embedded config");
        config.journal.backend = lastmile_server::config::JournalBackend::Memory; // each test starts clean
        edit(&mut config);
        TestServer::start_with(config).await
    }

    pub async fn start_with(config: LastmileConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let http_addr = http_listener.local_addr().expect("local addr");
        let listeners = lastmile_server::Listeners { grpc: Arc::new(listener), http: Some(Arc::new(http_listener)) };
        // The way the binary does it: recover from the journal if there is one.
        let opened = lastmile_server::open(&config).expect("open");
        let dispatcher = opened.dispatcher.clone();
        let config = Arc::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let config = config.clone();
            async move {
                let stopped = async {
                    let _ = stopped.await;
                };
                let on_ready = move || {
                    let _ = ready.send(());
                };
                lastmile_server::run_opened_then(listeners, config, opened, stopped, on_ready)
                    .await
                    .expect("server run");
            }
        });
        // As a client of the binary waits for its ready line.
        tokio::time::timeout(PATIENCE, is_ready).await.expect("ready within PATIENCE").expect("the server is ready");
        TestServer { addr, http_addr, dispatcher, config, stop: Some(stop), task: Some(task) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        // The listener is bound before `start` returns, so the first connect succeeds.
        Channel::from_shared(self.endpoint()).expect("endpoint").connect().await.expect("connect")
    }

    pub async fn client(&self) -> DispatchClient<Channel> {
        DispatchClient::new(self.channel().await)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A configuration on disk, as an operator would write it: the embedded
/// config file with `edit` applied to its text, the embedded places,
/// outline and grid, and `units_json` as the unit list, in a fresh temporary folder.
pub fn config_on_disk(units_json: &str, edit: impl FnOnce(String) -> String) -> LastmileConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "lastmile-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("luqiao")).expect("temp dir");
    for name in ["luqiao/places.json", "luqiao/district.geojson", "luqiao/grid.geojson"] {
        std::fs::write(dir.join(name), embedded_dataset_file(name).expect("embedded file")).expect("write");
    }
    std::fs::write(dir.join("luqiao/units.json"), units_json).expect("write units");
    let path = dir.join("lastmile.toml");
    // In memory unless `edit` says otherwise.
    let text = embedded_config_text().replace("\nbackend = \"sqlite\"\ndata_dir = \"data\"\n", IN_MEMORY);
    std::fs::write(&path, edit(text)).expect("write config");
    let config = LastmileConfig::load(&path).expect("config on disk");
    assert_eq!(config.source, ConfigSource::File(path));
    config
}

/// A units.json with the given `(id, tier, lat, lng)` units, each able to
/// do everything (`fire`, `flood`, `rescue`, `hazmat`): the shipped
/// `[[dispatch.capabilities]]` rules then never pass one over.
pub fn units_json(units: &[(&str, u32, f64, f64)]) -> String {
    let records: Vec<String> = units
        .iter()
        .map(|(id, tier, lat, lng)| {
            format!(
                r#"{{"id":"{id}","name":"{id}","tier":{tier},"home":{{"lat":{lat},"lng":{lng}}},"town":"路桥街道","village":"","crew":5,"capabilities":["fire","flood","rescue","hazmat"]}}"#
            )
        })
        .collect();
    format!(r#"{{"about":"test units","seed":0,"units":[{}]}}"#, records.join(","))
}

/// Polls `check` every 20 ms until it yields a value; fails after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within PATIENCE");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// target/<profile>/lastmile, built by `cargo test --workspace` alongside the tests.
pub fn lastmile_bin() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test exe");
    dir.pop(); // deps/
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("lastmile{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not built: run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// `lastmile serve --listen 127.0.0.1:0 ARGS` as a child process, as a user
/// runs it, started once its ready line ("lastmile listening on ADDR") is out.
/// SIGKILLed and reaped when dropped.
pub struct ServedBinary {
    pub child: std::process::Child,
    pub addr: String,
    /// The JSON/HTTP gateway's address (the second ready line).
    pub http_addr: String,
}

impl ServedBinary {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> ServedBinary {
        use std::io::BufRead;
        let mut child = std::process::Command::new(lastmile_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn lastmile serve");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the ready line");
        let addr = line.trim().strip_prefix("lastmile listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the http ready line");
        let http_addr =
            line.trim().strip_prefix("lastmile http listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
        ServedBinary { child, addr, http_addr }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lastmile serve` flags for a PostgreSQL journal in a schema of its own,
/// `name` and this process's id, emptied first.
pub fn postgres_journal(name: &str) -> Option<Vec<String>> {
    let url = lastmile_store::test_postgres_url()?;
    let schema = format!("e2e_{name}_{}", std::process::id());
    lastmile_store::drop_schema(&url, &schema).expect("empty the test's schema");
    Some(vec!["--postgres".into(), url, "--postgres-schema".into(), schema])
}

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lastmile-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The `[journal]` backend line of a test config in memory.
const IN_MEMORY: &str = "\nbackend = \"memory\"\n";

/// Config text edit: journal in `dir`.
pub fn with_journal(dir: &std::path::Path) -> impl FnOnce(String) -> String + '_ {
    move |text| {
        text.replace(IN_MEMORY, &format!("\nbackend = \"sqlite\"\ndata_dir = {:?}\n", dir.display().to_string()))
    }
}

/// The embedded units, journalled in `dir`, tier-1 pages timing out after
/// 1 s (so their timers come due across a restart; the other tiers' 30 s
/// and more do not fire during a test). Returns the config file's path.
pub fn config_with_tier1_timing_out(dir: &std::path::Path) -> PathBuf {
    let units = embedded_dataset_file("luqiao/units.json").expect("embedded units");
    let config =
        config_on_disk(units, |text| with_journal(dir)(text).replace("ack_timeout_s = 15", "ack_timeout_s = 1"));
    match &config.source {
        ConfigSource::File(p) => p.clone(),
        other => panic!("{other:?}"),
    }
}

/// A terminal's acceptance of `unit_id`'s page for `incident_id`.
pub fn accept(unit_id: &str, incident_id: &str) -> pb::AcknowledgeRequest {
    pb::AcknowledgeRequest {
        unit_id: unit_id.to_string(),
        incident_id: incident_id.to_string(),
        accept: true,
        reason: String::new(),
    }
}

/// A valid report at central Luqiao (路桥街道).
pub fn report(external_id: &str) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        external_id: external_id.to_string(),
        location: Some(pb::LatLng { lat: 28.58, lng: 121.37 }),
        kind: pb::IncidentKind::Fire as i32,
        severity: 2,
        address: "路桥街道 test".to_string(),
        description: "e2e test".to_string(),
        grid_id: String::new(),
    }
}

/// Liveness bound for waiting on something asynchronous (a page, an event).
/// Not a performance assertion: only there so a broken build fails instead of
/// hanging.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A small district for paging tests, around (28.58, 121.37): one unit of
/// tiers 1, 5 and 10, and three of tier 3 in a row going north.
pub fn paging_units() -> String {
    units_json(&[
        ("T1-a", 1, 28.5801, 121.37),
        ("T3-a", 3, 28.581, 121.37),
        ("T3-b", 3, 28.582, 121.37),
        ("T3-c", 3, 28.583, 121.37),
        ("T5-a", 5, 28.59, 121.37),
        ("T10-a", 10, 28.60, 121.37),
    ])
}

impl TestServer {
    pub async fn terminal(&self) -> v1::unit_terminal_client::UnitTerminalClient<Channel> {
        v1::unit_terminal_client::UnitTerminalClient::new(self.channel().await)
    }

    /// Subscribes `unit_id`'s terminal and returns its page stream.
    pub async fn pages(&self, unit_id: &str) -> tonic::Streaming<v1::Page> {
        self.terminal()
            .await
            .subscribe(v1::SubscribeRequest { unit_id: unit_id.to_string() })
            .await
            .expect("subscribe")
            .into_inner()
    }

    /// A live-feed watcher of one incident (empty: all), from `after_seq`.
    pub async fn watch(&self, after_seq: u64, incident_id: &str) -> tonic::Streaming<v1::DispatchEvent> {
        self.client()
            .await
            .watch_events(v1::WatchEventsRequest {
                after_seq,
                incident_id: incident_id.to_string(),
                unit_id: String::new(),
            })
            .await
            .expect("watch")
            .into_inner()
    }
}

/// The next message of a stream, failing the test after [`PATIENCE`].
pub async fn next<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(PATIENCE, stream.message()).await.expect("stream stalled beyond PATIENCE")
}

/// Reads events until one of type `wanted` for `unit_id` (any unit if empty) arrives.
pub async fn until_event(
    stream: &mut tonic::Streaming<v1::DispatchEvent>,
    wanted: v1::EventType,
    unit_id: &str,
) -> v1::DispatchEvent {
    loop {
        let event = next(stream).await.expect("feed error").expect("feed ended");
        if event.r#type() == wanted && (unit_id.is_empty() || event.unit_id == unit_id) {
            return event;
        }
    }
}

/// Replays the live feed to check that no unit is ever held by two incidents:
/// a page (UNIT_PAGED / UNIT_REPAGED) makes the incident the unit's holder; a
/// release (UNIT_RELEASED, UNIT_DECLINED, UNIT_TIMED_OUT) ends it. A page of a
/// unit another incident holds is a double assignment unless the older
/// holder's release follows within [`FeedReplay::INVERSION_WINDOW`] events
/// (two incidents' locks, one feed: the release was applied first but
/// published second); those are counted in `inversions`. The same rules as
/// `lastmile bench`'s replay (crates/lastmile/src/bench/feed.rs).
#[derive(Default)]
pub struct FeedReplay {
    holder: std::collections::HashMap<String, String>,
    closed: std::collections::HashSet<String>,
    pending: Vec<(String, String, String, u64)>,
    pub events: u64,
    pub last_seq: u64,
    /// Sequence numbers never seen.
    pub gaps: u64,
    pub violations: Vec<String>,
    pub inversions: u64,
    pub pages: u64,
}

impl FeedReplay {
    pub const INVERSION_WINDOW: u64 = 64;

    pub fn apply(&mut self, e: &v1::DispatchEvent) {
        if self.events > 0 && e.seq > self.last_seq + 1 {
            self.gaps += e.seq - self.last_seq - 1;
        }
        self.events += 1;
        self.last_seq = e.seq;
        let seq = e.seq;
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(_, _, _, at)| seq > at + Self::INVERSION_WINDOW);
        self.pending = kept;
        for (unit, older, newer, at) in expired {
            self.violations.push(format!("unit {unit} paged for {newer} (seq {at}) while held by {older}"));
        }
        let (unit, incident) = (&e.unit_id, &e.incident_id);
        match e.r#type() {
            v1::EventType::UnitPaged | v1::EventType::UnitRepaged => {
                self.pages += 1;
                if self.closed.contains(incident) {
                    self.violations.push(format!("unit {unit} paged for closed incident {incident} (seq {seq})"));
                }
                if let Some(older) = self.holder.insert(unit.clone(), incident.clone()) {
                    if &older == incident {
                        self.violations.push(format!("unit {unit} paged twice for {incident} (seq {seq})"));
                    } else {
                        self.pending.push((unit.clone(), older, incident.clone(), seq));
                    }
                }
            }
            v1::EventType::UnitReleased | v1::EventType::UnitDeclined | v1::EventType::UnitTimedOut => {
                if self.holder.get(unit) == Some(incident) {
                    self.holder.remove(unit);
                } else if let Some(i) = self.pending.iter().position(|(u, older, _, _)| u == unit && older == incident)
                {
                    self.pending.swap_remove(i);
                    self.inversions += 1;
                }
            }
            v1::EventType::IncidentClosed => {
                self.closed.insert(incident.clone());
                let still: Vec<String> =
                    self.holder.iter().filter(|(_, i)| *i == incident).map(|(u, _)| u.clone()).collect();
                for u in still {
                    self.holder.remove(&u);
                    self.violations.push(format!("closed incident {incident} still holds unit {u} (seq {seq})"));
                }
            }
            _ => {}
        }
    }

    /// End of the feed: conflicts still waiting for a release are real.
    pub fn finish(&mut self) {
        for (unit, older, newer, at) in std::mem::take(&mut self.pending) {
            self.violations.push(format!("unit {unit} paged for {newer} (seq {at}) while held by {older}"));
        }
    }
}

/// Every incident on the server, oldest first (all pages of ListIncidents).
pub async fn all_incidents(client: &mut DispatchClient<Channel>) -> Vec<v1::Incident> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_incidents(v1::ListIncidentsRequest { page_size: 1000, page_token, ..Default::default() })
            .await
            .expect("list incidents")
            .into_inner();
        out.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// The seed of a randomised test: `LASTMILE_SEED` if set, else from the clock.
/// Printed, so a failure can be replayed.
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    println!("{test}: seed {seed} (replay with LASTMILE_SEED={seed})");
    seed
}

/// The seeded generator of randomised tests.
pub use lastmile_core::sim::SplitMix64;
