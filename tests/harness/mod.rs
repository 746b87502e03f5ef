//! The shared end-to-end harness: starts a real lastmile server (the same
//! `lastmile_server::run` the binary runs) on 127.0.0.1:0, and hands out gRPC
//! clients. Every test starts its own server; dropping it shuts the server down.

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

pub struct TestServer {
    pub addr: SocketAddr,
    /// The server's state, for invariant checks after a run.
    pub dispatcher: Arc<Dispatcher>,
    pub config: Arc<LastmileConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server on the embedded default (the Luqiao demo dataset).
    pub async fn start() -> TestServer {
        TestServer::start_with(LastmileConfig::embedded().expect("embedded config")).await
    }

    pub async fn start_with(config: LastmileConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let dispatcher = Arc::new(lastmile_server::build_dispatcher(&config).expect("dispatcher"));
        let config = Arc::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let (config, dispatcher) = (config.clone(), dispatcher.clone());
            async move {
                lastmile_server::run(listener, config, dispatcher, async {
                    let _ = stopped.await;
                })
                .await
                .expect("server run");
            }
        });
        TestServer { addr, dispatcher, config, stop: Some(stop), task: Some(task) }
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
/// config file with `edit` applied to its text, the embedded places and
/// outline, and `units_json` as the unit list, in a fresh temporary folder.
pub fn config_on_disk(units_json: &str, edit: impl FnOnce(String) -> String) -> LastmileConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "lastmile-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("luqiao")).expect("temp dir");
    for name in ["luqiao/places.json", "luqiao/district.geojson"] {
        std::fs::write(dir.join(name), embedded_dataset_file(name).expect("embedded file")).expect("write");
    }
    std::fs::write(dir.join("luqiao/units.json"), units_json).expect("write units");
    let path = dir.join("lastmile.toml");
    std::fs::write(&path, edit(embedded_config_text().to_string())).expect("write config");
    let config = LastmileConfig::load(&path).expect("config on disk");
    assert_eq!(config.source, ConfigSource::File(path));
    config
}

/// A units.json with the given `(id, tier, lat, lng)` units.
pub fn units_json(units: &[(&str, u32, f64, f64)]) -> String {
    let records: Vec<String> = units
        .iter()
        .map(|(id, tier, lat, lng)| {
            format!(
                r#"{{"id":"{id}","name":"{id}","tier":{tier},"home":{{"lat":{lat},"lng":{lng}}},"town":"路桥街道","village":"","crew":5,"capabilities":["fire"]}}"#
            )
        })
        .collect();
    format!(r#"{{"about":"test units","seed":0,"units":[{}]}}"#, records.join(","))
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
