//! The server's configuration file: one typed source, unknown keys refused,
//! every value checked once at start. The embedded default (`config/` in the
//! repository) is compiled in, so `lastmile serve` needs no files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lastmile_core::DispatchConfig;
use lastmile_core::area::ServiceArea;
use lastmile_core::dataset;
use lastmile_core::dispatcher::DispatcherLimits;
use lastmile_core::unit::Unit;
use serde::Deserialize;

pub mod eta;
pub mod webhooks;

use webhooks::WebhooksConfig;

const EMBEDDED_CONFIG: &str = include_str!("../../../../config/lastmile.toml");
/// The dataset files the embedded config names, by their path in it.
const EMBEDDED_FILES: &[(&str, &str)] = &[
    ("luqiao/units.json", include_str!("../../../../config/luqiao/units.json")),
    ("luqiao/places.json", include_str!("../../../../config/luqiao/places.json")),
    ("luqiao/district.geojson", include_str!("../../../../config/luqiao/district.geojson")),
    ("luqiao/grid.geojson", include_str!("../../../../config/luqiao/grid.geojson")),
];

/// A dataset file of the embedded default, by its path in `config/`
/// (e.g. `luqiao/places.json`).
pub fn embedded_dataset_file(name: &str) -> Option<&'static str> {
    EMBEDDED_FILES.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// The embedded default configuration file's text.
pub fn embedded_config_text() -> &'static str {
    EMBEDDED_CONFIG
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastmileConfig {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub feed: FeedConfig,
    pub terminals: TerminalsConfig,
    pub journal: JournalConfig,
    /// Closed incidents: retention and what memory holds.
    pub history: HistoryConfig,
    pub limits: RequestLimits,
    pub dataset: DatasetPaths,
    pub dispatch: DispatchConfig,
    /// Webhooks out (optional section; no endpoints by default).
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Bearer tokens and roles; absent = auth off (loopback only).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// TLS for every listener; absent = plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The dispatcher console in the browser (served by the HTTP listener).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The self-calibrating ETA (optional section; learning on by default).
    #[serde(default)]
    pub eta: eta::EtaConfig,
    /// Work in flight, by class (optional section).
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Several nodes on one PostgreSQL journal, one leading (optional
    /// section; absent = one node).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Where the file came from; dataset paths are relative to its folder.
    #[serde(skip)]
    pub source: ConfigSource,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ConfigSource {
    #[default]
    Embedded,
    File(PathBuf),
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Embedded => f.write_str("<embedded config/lastmile.toml>"),
            ConfigSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_decoding_message_bytes: usize,
    pub max_encoding_message_bytes: usize,
    pub max_concurrent_streams: u32,
    pub concurrency_limit_per_connection: usize,
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// gRPC connections open at once from all clients; one more is closed
    /// as soon as it is accepted (`crate::conn_limit`).
    #[serde(default = "default_grpc_max_connections")]
    pub max_connections: usize,
    /// gRPC connections one client (source address) may hold open at once;
    /// one more is closed as soon as it is accepted, so a single client
    /// cannot take every place. (Streams per connection:
    /// `max_concurrent_streams`.)
    #[serde(default = "default_grpc_max_connections_per_client")]
    pub max_connections_per_client: usize,
}

fn default_grpc_max_connections() -> usize {
    4096
}

fn default_grpc_max_connections_per_client() -> usize {
    256
}

/// The JSON/HTTP gateway (`crate::http`): the Dispatch operations and the
/// live feed (Server-Sent Events) for systems that cannot speak gRPC.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` of the gateway; absent = no gateway.
    #[serde(default)]
    pub listen: Option<String>,
    /// Largest request body accepted, bytes; larger is 413.
    pub max_body_bytes: usize,
    /// Seconds between keep-alive comments on an idle event stream (so
    /// proxies and clients can tell a quiet feed from a dead connection).
    pub sse_keepalive_s: u64,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this long
    /// is closed (slow or stuck clients must not hold a connection place).
    pub header_read_timeout_ms: u64,
    /// Connections one client (source address) may hold open at once; one
    /// more is closed as soon as it is accepted, before it can wait for one
    /// of the `max_connections` places (`crate::conn_limit`).
    #[serde(default = "default_http_max_connections_per_client")]
    pub max_connections_per_client: usize,
}

fn default_http_max_connections_per_client() -> usize {
    64
}

impl HttpConfig {
    /// The address to listen on; `None` when the gateway is off. (Checked
    /// by [`LastmileConfig::validate`], so a validated config never fails here.)
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.as_deref().and_then(|l| l.parse().ok())
    }
}

/// The dispatchers' live feed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub history_events: usize,
    pub subscriber_buffer_events: usize,
    pub max_watchers: usize,
    pub watcher_stall_timeout_ms: u64,
}

/// The durable journal: which store, and the bounds of its queue.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawJournalConfig")]
pub struct JournalConfig {
    pub backend: JournalBackend,
    pub max_pending_ops: usize,
    pub max_batch_records: usize,
    pub enqueue_timeout_ms: u64,
    /// Position fixes are journaled together this often (ms), not one
    /// commit each; a crash loses at most this much of a unit's track.
    pub position_flush_ms: u64,
    /// The SQLite store commits to its log and writes its tables from it
    /// this often (ms), or once `apply_max_records` records are held,
    /// and before every history read (lastmile_store::ApplyPolicy).
    pub apply_interval_ms: u64,
    pub apply_max_records: usize,
}

/// Where the journal lives; the server opens it through one resolver
/// (`crate::store::open`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalBackend {
    /// Nothing is stored: a restart starts from the dataset.
    Memory,
    /// SQLite (WAL, synchronous = FULL) in `data_dir/lastmile.db`, relative
    /// to the working directory.
    Sqlite { data_dir: PathBuf },
    /// A PostgreSQL server (lastmile_store::PostgresStore).
    Postgres(PostgresJournal),
}

/// `backend = "postgres"`: where the database is and the bounds of the
/// connections. The URL may hold a password, so it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresJournal {
    /// `journal.url`, or the value of the variable `journal.url_env` names.
    pub url: String,
    pub schema: String,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    pub statement_timeout_ms: u64,
}

impl std::fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresJournal")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

impl JournalBackend {
    /// The folder of the journal's files, if it has any.
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            JournalBackend::Memory | JournalBackend::Postgres(_) => None,
            JournalBackend::Sqlite { data_dir } => Some(data_dir),
        }
    }

    pub fn is_durable(&self) -> bool {
        !matches!(self, JournalBackend::Memory)
    }
}

/// `[journal]` as written: `backend` names the variant, whose own keys
/// (today `data_dir`, for sqlite) sit beside the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournalConfig {
    backend: BackendName,
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    pool_size: Option<usize>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    statement_timeout_ms: Option<u64>,
    max_pending_ops: usize,
    max_batch_records: usize,
    enqueue_timeout_ms: u64,
    #[serde(default = "default_position_flush_ms")]
    position_flush_ms: u64,
    #[serde(default = "default_apply_interval_ms")]
    apply_interval_ms: u64,
    #[serde(default = "default_apply_max_records")]
    apply_max_records: usize,
}

fn default_apply_interval_ms() -> u64 {
    lastmile_store::ApplyPolicy::default().interval.as_millis() as u64
}

fn default_apply_max_records() -> usize {
    lastmile_store::ApplyPolicy::default().max_records
}

fn default_position_flush_ms() -> u64 {
    1000
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendName {
    Memory,
    Sqlite,
    Postgres,
}

impl TryFrom<RawJournalConfig> for JournalConfig {
    type Error = String;

    fn try_from(raw: RawJournalConfig) -> Result<Self, String> {
        let postgres_keys = [
            ("url", raw.url.is_some()),
            ("url_env", raw.url_env.is_some()),
            ("schema", raw.schema.is_some()),
            ("pool_size", raw.pool_size.is_some()),
            ("connect_timeout_ms", raw.connect_timeout_ms.is_some()),
            ("statement_timeout_ms", raw.statement_timeout_ms.is_some()),
        ];
        if !matches!(raw.backend, BackendName::Postgres)
            && let Some((key, _)) = postgres_keys.iter().find(|(_, set)| *set)
        {
            return Err(format!("journal.{key}: only for backend = \"postgres\""));
        }
        let backend = match (raw.backend, raw.data_dir) {
            (BackendName::Memory, None) => JournalBackend::Memory,
            (BackendName::Memory, Some(_)) => {
                return Err("journal.data_dir: only for backend = \"sqlite\" (memory stores nothing)".into());
            }
            (BackendName::Sqlite, Some(dir)) if !dir.as_os_str().is_empty() => JournalBackend::Sqlite { data_dir: dir },
            (BackendName::Sqlite, _) => {
                return Err("journal.data_dir: required with backend = \"sqlite\" (e.g. \"data\")".into());
            }
            (BackendName::Postgres, Some(_)) => {
                return Err(
                    "journal.data_dir: only for backend = \"sqlite\" (postgres keeps its data in the database)".into(),
                );
            }
            (BackendName::Postgres, None) => JournalBackend::Postgres(PostgresJournal::of(
                raw.url,
                raw.url_env,
                raw.schema,
                raw.pool_size,
                raw.connect_timeout_ms,
                raw.statement_timeout_ms,
            )?),
        };
        Ok(JournalConfig {
            backend,
            max_pending_ops: raw.max_pending_ops,
            max_batch_records: raw.max_batch_records,
            enqueue_timeout_ms: raw.enqueue_timeout_ms,
            position_flush_ms: raw.position_flush_ms,
            apply_interval_ms: raw.apply_interval_ms,
            apply_max_records: raw.apply_max_records,
        })
    }
}

impl PostgresJournal {
    /// `url` with every other key at its default, `schema` if given.
    pub fn new(url: String, schema: Option<String>) -> Result<PostgresJournal, String> {
        PostgresJournal::of(Some(url), None, schema, None, None, None)
    }

    /// The keys of `backend = "postgres"`, checked: exactly one of `url`
    /// and `url_env` (whose variable must be set and not empty), a schema
    /// name lastmile accepts, bounds above zero.
    fn of(
        url: Option<String>,
        url_env: Option<String>,
        schema: Option<String>,
        pool_size: Option<usize>,
        connect_timeout_ms: Option<u64>,
        statement_timeout_ms: Option<u64>,
    ) -> Result<PostgresJournal, String> {
        let url = match (url, url_env) {
            (Some(_), Some(_)) => return Err("journal.url and journal.url_env: give one, not both".into()),
            (None, None) => {
                return Err("journal.url: required with backend = \"postgres\" (or journal.url_env, the name of an environment variable holding it)".into());
            }
            (Some(url), None) if url.trim().is_empty() => return Err("journal.url: empty".into()),
            (Some(url), None) => url,
            (None, Some(var)) => match std::env::var(&var) {
                Ok(url) if !url.trim().is_empty() => url,
                _ => return Err(format!("journal.url_env: the environment variable {var} is not set (or empty)")),
            },
        };
        let schema = schema.unwrap_or_else(|| "lastmile".into());
        if !lastmile_store::valid_schema_name(&schema) {
            return Err(format!(
                "journal.schema: {schema:?} is not a schema name lastmile uses (lower-case letters, digits and _, at most 63)"
            ));
        }
        let positive =
            |key: &str, v: u64| if v == 0 { Err(format!("journal.{key}: must be at least 1")) } else { Ok(v) };
        Ok(PostgresJournal {
            url,
            schema,
            pool_size: positive("pool_size", pool_size.unwrap_or(4) as u64)? as usize,
            connect_timeout_ms: positive("connect_timeout_ms", connect_timeout_ms.unwrap_or(5_000))?,
            statement_timeout_ms: positive("statement_timeout_ms", statement_timeout_ms.unwrap_or(10_000))?,
        })
    }
}

/// `[cluster]`: this node's name and addresses, and the lease's timing.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique among the nodes of one journal.
    pub node_id: String,
    /// Where clients reach this node's gRPC and HTTP (what a standby tells
    /// them of the leader). Default: the addresses it listens on.
    #[serde(default)]
    pub advertise_grpc: Option<String>,
    #[serde(default)]
    pub advertise_http: Option<String>,
    /// How long a lease lasts without renewal: the longest a dead leader
    /// holds up a takeover.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How often the leader renews it (well under `lease_ms`).
    #[serde(default = "default_renew_ms")]
    pub renew_ms: u64,
    /// How often a standby reads the journal's new log rows and looks at
    /// the lease.
    #[serde(default = "default_follow_ms")]
    pub follow_ms: u64,
    /// Applied log rows are kept this long for standbys; one further
    /// behind reads the live state afresh.
    #[serde(default = "default_log_retention_ms")]
    pub log_retention_ms: u64,
}

fn default_lease_ms() -> u64 {
    3000
}
fn default_renew_ms() -> u64 {
    1000
}
fn default_follow_ms() -> u64 {
    200
}
fn default_log_retention_ms() -> u64 {
    30_000
}

impl ClusterConfig {
    /// A node with every timing at its default.
    pub fn node(node_id: String) -> ClusterConfig {
        ClusterConfig {
            node_id,
            advertise_grpc: None,
            advertise_http: None,
            lease_ms: default_lease_ms(),
            renew_ms: default_renew_ms(),
            follow_ms: default_follow_ms(),
            log_retention_ms: default_log_retention_ms(),
        }
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let id = &self.node_id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(("cluster.node_id", format!("{id:?}: 1 to 64 of letters, digits, - _ .")));
        }
        if !(100..=600_000).contains(&self.lease_ms) {
            return Err(("cluster.lease_ms", "must be 100 to 600000".into()));
        }
        if self.renew_ms == 0 || self.renew_ms * 2 > self.lease_ms {
            return Err(("cluster.renew_ms", format!("must be 1 to half of cluster.lease_ms ({})", self.lease_ms)));
        }
        if self.follow_ms == 0 || self.follow_ms > self.lease_ms {
            return Err(("cluster.follow_ms", format!("must be 1 to cluster.lease_ms ({})", self.lease_ms)));
        }
        for (key, addr) in
            [("cluster.advertise_grpc", &self.advertise_grpc), ("cluster.advertise_http", &self.advertise_http)]
        {
            if let Some(addr) = addr
                && (addr.is_empty() || !addr.contains(':'))
            {
                return Err((key, format!("{addr:?} is not host:port")));
            }
        }
        Ok(())
    }
}

/// Responders' terminals.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalsConfig {
    pub page_buffer: usize,
    pub max_positions_per_stream: u64,
    pub max_clock_skew_s: u32,
}

/// Bounds on what one request may carry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    pub max_external_id_bytes: usize,
    pub max_address_bytes: usize,
    pub max_description_bytes: usize,
    pub max_name_bytes: usize,
    pub max_capabilities: usize,
    /// Open incidents at once (closed ones go to history).
    pub max_incidents: usize,
    pub max_units: usize,
    /// Closed incidents the dispatcher keeps in memory: a repeated
    /// `external_id` of one of them answers it (`duplicate`); of one closed
    /// longer ago, it is a new incident.
    pub recent_closed_incidents: usize,
    /// Timeline entries kept per incident; beyond it changes still reach
    /// the feed, not the timeline (counted).
    pub max_timeline_entries: usize,
}

/// `[console]`: the dispatchers' console, served at `/` by the HTTP
/// listener (so only with the gateway on).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// The district's time zone (IANA name): the console shows times in it,
    /// and the compliance reports cut days, weeks and months in it.
    pub time_zone: String,
    /// A signed-in browser's session lasts this long (then sign in again).
    pub session_ttl_s: u64,
    /// Sessions at once; one more sign-in is refused (RESOURCE_EXHAUSTED)
    /// until one expires or signs out.
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { enabled: true, time_zone: "Asia/Shanghai".into(), session_ttl_s: 43_200, max_sessions: 1_000 }
    }
}

/// `[admission]`: operations in flight at once (see `app::admission`); one
/// more is refused at once with RESOURCE_EXHAUSTED / 429 and a retry hint.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// All operations but streams (acknowledgements, status reports and
    /// dispatchers' overrides are bounded by this only).
    pub max_in_flight: usize,
    /// ReportIncident.
    pub max_reports_in_flight: usize,
    /// Reads: gets, lists, previews, timelines, reports, pings.
    pub max_reads_in_flight: usize,
    /// The retry hint of a refusal, seconds (`Retry-After`; gRPC metadata
    /// `retry-after` and `grpc-retry-pushback-ms`).
    pub retry_after_s: u32,
}

impl AdmissionConfig {
    /// Every bound in range; the error is (key, problem).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_in_flight == 0 || self.max_in_flight > 1_000_000 {
            return Err(("admission.max_in_flight", "must be 1 to 1000000".into()));
        }
        for (key, value) in [
            ("admission.max_reports_in_flight", self.max_reports_in_flight),
            ("admission.max_reads_in_flight", self.max_reads_in_flight),
        ] {
            if value == 0 || value > self.max_in_flight {
                return Err((key, format!("must be 1 to admission.max_in_flight ({})", self.max_in_flight)));
            }
        }
        if !(1..=3600).contains(&self.retry_after_s) {
            return Err(("admission.retry_after_s", "must be 1 to 3600".into()));
        }
        Ok(())
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig { max_in_flight: 1024, max_reports_in_flight: 256, max_reads_in_flight: 256, retry_after_s: 1 }
    }
}

/// `[history]`: closed incidents and their timelines, apart from the live
/// state.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Closed incidents (and their timelines) older than this are deleted,
    /// oldest first; 0 keeps them for ever (bounded by the disk: a full disk
    /// fails the journal closed).
    pub retention_days: u32,
    /// How often the retention is applied.
    pub prune_interval_s: u64,
    /// Closed incidents deleted per prune transaction (a commit waits for
    /// at most one).
    pub prune_batch: usize,
    /// Closed incidents held in memory, most recent first: with the memory
    /// backend, all the history there is; with SQLite, a cache in front of
    /// the history table, of at most `limits.recent_closed_incidents`.
    pub memory_incidents: usize,
}

/// `[tls]`: TLS (rustls) for the gRPC and HTTP listeners; the section
/// present = TLS on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, relative to the working directory.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl TlsConfig {
    /// The certificate chain and key as PEM text.
    pub fn read_pem(&self) -> Result<(String, String), ConfigError> {
        let read = |key: &str, path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|error| ConfigError::Read { source_name: format!("{key} {}", path.display()), error })
        };
        Ok((read("tls.cert_path", &self.cert_path)?, read("tls.key_path", &self.key_path)?))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPaths {
    pub units: String,
    pub places: String,
    pub outline: String,
    /// Grid cells (网格) with their grid workers, GeoJSON.
    pub grid: String,
}

/// A configuration that cannot be used: names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: cannot read: {error}")]
    Read { source_name: String, error: std::io::Error },
    #[error("{source_name}: {error}")]
    Parse { source_name: String, error: toml::de::Error },
    #[error("{source_name}: {key}: {problem}")]
    Invalid { source_name: String, key: String, problem: String },
    #[error("{source_name}: dataset file {file}: {problem}")]
    Dataset { source_name: String, file: String, problem: String },
}

impl LastmileConfig {
    /// The embedded default.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_CONFIG, ConfigSource::Embedded)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { source_name: path.display().to_string(), error })?;
        Self::parse(&text, ConfigSource::File(path.to_path_buf()))
    }

    pub fn parse(text: &str, source: ConfigSource) -> Result<Self, ConfigError> {
        let source_name = source.to_string();
        let mut config: LastmileConfig =
            toml::from_str(text).map_err(|error| ConfigError::Parse { source_name: source_name.clone(), error })?;
        config.source = source;
        config.validate()?;
        Ok(config)
    }

    /// The district's time zone (`console.time_zone`): the console shows
    /// times in it and the compliance reports cut days, weeks and months in it.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, ConfigError> {
        let tz = &self.console.time_zone;
        jiff::tz::TimeZone::get(tz).map_err(|_| {
            self.invalid("console.time_zone", format!("{tz:?} is not an IANA time zone name (e.g. \"Asia/Shanghai\")"))
        })
    }

    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { source_name: self.source.to_string(), key: key.to_string(), problem: problem.into() }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let positive = [
            ("server.max_decoding_message_bytes", s.max_decoding_message_bytes as u64),
            ("server.max_encoding_message_bytes", s.max_encoding_message_bytes as u64),
            ("server.max_concurrent_streams", s.max_concurrent_streams as u64),
            ("server.concurrency_limit_per_connection", s.concurrency_limit_per_connection as u64),
            ("server.request_timeout_ms", s.request_timeout_ms),
            ("server.default_page_size", s.default_page_size as u64),
            ("server.max_page_size", s.max_page_size as u64),
            ("limits.max_external_id_bytes", self.limits.max_external_id_bytes as u64),
            ("limits.max_name_bytes", self.limits.max_name_bytes as u64),
            ("limits.max_incidents", self.limits.max_incidents as u64),
            ("limits.max_units", self.limits.max_units as u64),
            ("limits.max_timeline_entries", self.limits.max_timeline_entries as u64),
            ("history.prune_interval_s", self.history.prune_interval_s),
            ("history.prune_batch", self.history.prune_batch as u64),
            ("history.memory_incidents", self.history.memory_incidents as u64),
            ("console.session_ttl_s", self.console.session_ttl_s),
            ("console.max_sessions", self.console.max_sessions as u64),
            ("feed.history_events", self.feed.history_events as u64),
            ("feed.subscriber_buffer_events", self.feed.subscriber_buffer_events as u64),
            ("feed.max_watchers", self.feed.max_watchers as u64),
            ("feed.watcher_stall_timeout_ms", self.feed.watcher_stall_timeout_ms),
            ("terminals.page_buffer", self.terminals.page_buffer as u64),
            ("terminals.max_positions_per_stream", self.terminals.max_positions_per_stream),
            ("journal.max_pending_ops", self.journal.max_pending_ops as u64),
            ("journal.max_batch_records", self.journal.max_batch_records as u64),
            ("journal.enqueue_timeout_ms", self.journal.enqueue_timeout_ms),
            ("journal.position_flush_ms", self.journal.position_flush_ms),
            ("journal.apply_max_records", self.journal.apply_max_records as u64),
            ("http.sse_keepalive_s", self.http.sse_keepalive_s),
            ("http.max_connections", self.http.max_connections as u64),
            ("http.header_read_timeout_ms", self.http.header_read_timeout_ms),
            ("server.max_connections", s.max_connections as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(self.invalid(key, "must be greater than 0"));
        }
        if s.default_page_size > s.max_page_size {
            return Err(self.invalid("server.default_page_size", "must not exceed server.max_page_size"));
        }
        if let Some(cluster) = &self.cluster {
            if !matches!(self.journal.backend, JournalBackend::Postgres(_)) {
                return Err(
                    self.invalid("cluster", "needs journal.backend = \"postgres\" (the nodes share its database)")
                );
            }
            cluster.validate().map_err(|(key, problem)| self.invalid(key, problem))?;
        }
        for (key, per_client, total, total_key) in [
            (
                "server.max_connections_per_client",
                s.max_connections_per_client,
                s.max_connections,
                "server.max_connections",
            ),
            (
                "http.max_connections_per_client",
                self.http.max_connections_per_client,
                self.http.max_connections,
                "http.max_connections",
            ),
        ] {
            if per_client == 0 || per_client > total {
                return Err(self.invalid(key, format!("must be 1 to {total_key} ({total})")));
            }
        }
        if s.max_decoding_message_bytes < 1024 {
            return Err(self.invalid("server.max_decoding_message_bytes", "must be at least 1024"));
        }
        let h = &self.http;
        if let Some(listen) = &h.listen {
            let Ok(addr) = listen.parse::<SocketAddr>() else {
                return Err(self.invalid(
                    "http.listen",
                    format!("{listen:?} is not host:port (e.g. \"127.0.0.1:8080\"; leave it out for no gateway)"),
                ));
            };
            if addr == s.listen && addr.port() != 0 {
                return Err(self.invalid("http.listen", "must differ from server.listen"));
            }
        }
        if h.max_body_bytes < 1024 {
            return Err(self.invalid("http.max_body_bytes", "must be at least 1024"));
        }
        self.time_zone()?;
        self.admission.validate().map_err(|(key, problem)| self.invalid(key, problem))?;
        self.eta.validate().map_err(|(key, problem)| self.invalid(&key, problem))?;
        self.dispatch.validate().map_err(|e| self.invalid(&e.key, e.problem))?;
        self.webhooks.validate(&webhooks::process_env).map_err(|e| self.invalid(&e.key, e.problem))?;
        self.build_auth()?;
        Ok(())
    }

    /// The token table (`token_env` variables read from the environment).
    pub fn build_auth(&self) -> Result<crate::auth::Auth, ConfigError> {
        crate::auth::Auth::from_config(&self.auth, |var| std::env::var(var).ok())
            .map_err(|e| self.invalid(&e.key, e.problem))
    }

    /// Refuses to serve without auth on an address other machines can reach.
    pub fn check_exposure(&self, listening: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
        if self.auth.enabled {
            return Ok(());
        }
        match listening.iter().find(|(_, addr)| !addr.ip().is_loopback()) {
            Some((key, addr)) => Err(self.invalid(
                "auth.enabled",
                format!("{key} is {addr}, not a loopback address: configure [auth] tokens and set enabled = true"),
            )),
            None => Ok(()),
        }
    }

    fn read_dataset_file(&self, relative: &str) -> Result<String, ConfigError> {
        let dataset_error = |problem: String| ConfigError::Dataset {
            source_name: self.source.to_string(),
            file: relative.to_string(),
            problem,
        };
        match &self.source {
            ConfigSource::Embedded => EMBEDDED_FILES
                .iter()
                .find(|(name, _)| *name == relative)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| dataset_error("not one of the embedded files".into())),
            ConfigSource::File(path) => {
                let full = path.parent().unwrap_or(Path::new(".")).join(relative);
                std::fs::read_to_string(&full).map_err(|e| dataset_error(format!("{}: {e}", full.display())))
            }
        }
    }

    /// The text of a dataset file the config names (embedded or on disk).
    pub fn dataset_file_text(&self, relative: &str) -> Result<String, ConfigError> {
        self.read_dataset_file(relative)
    }

    /// Reads and validates the dataset the config names.
    pub fn load_dataset(&self) -> Result<(Vec<Unit>, ServiceArea), ConfigError> {
        let err = |file: &str, problem: String| ConfigError::Dataset {
            source_name: self.source.to_string(),
            file: file.to_string(),
            problem,
        };
        let units = dataset::parse_units(&self.read_dataset_file(&self.dataset.units)?)
            .map_err(|e| err(&self.dataset.units, e.to_string()))?;
        let places = dataset::parse_places(&self.read_dataset_file(&self.dataset.places)?)
            .map_err(|e| err(&self.dataset.places, e.to_string()))?;
        let outline = dataset::parse_outline(&self.read_dataset_file(&self.dataset.outline)?)
            .map_err(|e| err(&self.dataset.outline, e.to_string()))?;
        let grid = dataset::parse_grid(&self.read_dataset_file(&self.dataset.grid)?)
            .map_err(|e| err(&self.dataset.grid, e.to_string()))?;
        Ok((units, ServiceArea::new(outline, places).with_grid(grid)))
    }

    pub fn dispatcher_limits(&self) -> DispatcherLimits {
        DispatcherLimits {
            max_incidents: self.limits.max_incidents,
            max_units: self.limits.max_units,
            recent_closed_incidents: self.limits.recent_closed_incidents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_bounds_are_checked_naming_the_key() {
        let text = embedded_config_text().replace("max_reports_in_flight = 256", "max_reports_in_flight = 2000");
        let e = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(e.contains("admission.max_reports_in_flight") && e.contains("(1024)"), "{e}");
        let text = embedded_config_text().replace("retry_after_s = 1\n", "retry_after_s = 0\n");
        let e = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(e.contains("admission.retry_after_s"), "{e}");
    }

    #[test]
    fn the_embedded_default_loads_with_its_dataset() {
        let config = LastmileConfig::embedded().unwrap();
        let (units, area) = config.load_dataset().unwrap();
        assert_eq!(units.len(), 4 + 12 + 228 + 600);
        assert_eq!(area.grid().len(), 636);
        assert_eq!(config.dispatch, {
            let mut d = DispatchConfig::defaults();
            d.response_plan = config.dispatch.response_plan.clone();
            d.capabilities = config.dispatch.capabilities.clone();
            d.tiers.t1.applies = lastmile_core::tier::Applies::WhereStationed;
            d
        });
    }

    /// The embedded grid tiles the outline: the cells' areas add up to the
    /// outline's, and random points inside the outline (away from its edge,
    /// where cell coordinates are rounded) are in exactly one cell, points
    /// outside in none.
    #[test]
    fn the_embedded_grid_tiles_the_outline() {
        use geo::{Area, BoundingRect, Contains, Distance, Euclidean, Intersects, Point};
        let (_, area) = LastmileConfig::embedded().unwrap().load_dataset().unwrap();
        let outline = dataset::parse_outline(embedded_dataset_file("luqiao/district.geojson").unwrap()).unwrap();
        let cells = area.grid().cells();
        assert_eq!(cells.len(), 636);
        let cells_area: f64 = cells.iter().map(|c| c.polygon.unsigned_area()).sum();
        let outline_area = outline.unsigned_area();
        assert!((cells_area - outline_area).abs() < 1e-6 * outline_area, "{cells_area} vs {outline_area}");
        let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(636);
        println!("the_embedded_grid_tiles_the_outline: LASTMILE_SEED={seed}");
        let mut rng = lastmile_core::sim::SplitMix64(seed);
        let bbox = outline.bounding_rect().unwrap();
        let (mut inside, mut checked) = (0, 0);
        while checked < 3000 {
            let p = Point::new(rng.range(bbox.min().x, bbox.max().x), rng.range(bbox.min().y, bbox.max().y));
            if outline.0.iter().any(|poly| Euclidean.distance(&p, poly.exterior()) < 1e-5) {
                continue;
            }
            checked += 1;
            let in_outline = outline.contains(&p);
            inside += usize::from(in_outline);
            let containing = cells.iter().filter(|c| c.polygon.intersects(&p)).count();
            assert_eq!(containing, usize::from(in_outline), "{p:?} (LASTMILE_SEED={seed})");
        }
        assert!(inside > 500, "{inside} of {checked} points inside");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let text = EMBEDDED_CONFIG.replace("max_page_size = 1000", "max_page_size = 1000\nmax_pages = 3");
        let err = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("max_pages"), "{err}");
        let text = EMBEDDED_CONFIG.replace("speed_m_per_s = 8.3", "speed_m_per_s = -1");
        let err = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("dispatch.tiers.t5.speed_m_per_s"), "{err}");
        let text = EMBEDDED_CONFIG.replace("default_page_size = 100", "default_page_size = 0");
        let err = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("server.default_page_size"), "{err}");
        let text = EMBEDDED_CONFIG.replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"");
        let err = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
        let text = EMBEDDED_CONFIG.replace("max_body_bytes = 65536", "max_body_bytes = 10");
        let err = LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("http.max_body_bytes"), "{err}");
        let text = EMBEDDED_CONFIG.replace("listen = \"127.0.0.1:8080\"", "");
        assert_eq!(LastmileConfig::parse(&text, ConfigSource::Embedded).unwrap().http.listen_addr(), None);
    }

    #[test]
    fn the_journal_backend_is_a_typed_choice() {
        let config = LastmileConfig::embedded().unwrap();
        assert_eq!(config.journal.backend, JournalBackend::Sqlite { data_dir: "data".into() });
        let memory = EMBEDDED_CONFIG.replace("backend = \"sqlite\"\ndata_dir = \"data\"", "backend = \"memory\"");
        assert_eq!(
            LastmileConfig::parse(&memory, ConfigSource::Embedded).unwrap().journal.backend,
            JournalBackend::Memory
        );
        let no_dir = EMBEDDED_CONFIG.replace("data_dir = \"data\"", "");
        let err = LastmileConfig::parse(&no_dir, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("journal.data_dir: required"), "{err}");
        let both = EMBEDDED_CONFIG.replace("backend = \"sqlite\"", "backend = \"memory\"");
        let err = LastmileConfig::parse(&both, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("journal.data_dir: only for backend"), "{err}");
        let pg_with_dir = EMBEDDED_CONFIG.replace("backend = \"sqlite\"", "backend = \"postgres\"");
        let err = LastmileConfig::parse(&pg_with_dir, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("journal.data_dir: only for backend = \"sqlite\""), "{err}");
        let unknown = EMBEDDED_CONFIG.replace("backend = \"sqlite\"", "backend = \"mysql\"");
        let err = LastmileConfig::parse(&unknown, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("mysql"), "{err}");
        let half_tls = format!("{EMBEDDED_CONFIG}\n[tls]\ncert_path = \"a.pem\"\n");
        let err = LastmileConfig::parse(&half_tls, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("key_path"), "{err}");
    }

    #[test]
    fn the_postgres_backend_takes_a_url_or_the_variable_holding_it() {
        let pg = |keys: &str| {
            EMBEDDED_CONFIG
                .replace("backend = \"sqlite\"\ndata_dir = \"data\"", &format!("backend = \"postgres\"\n{keys}"))
        };
        let parsed = |keys: &str| LastmileConfig::parse(&pg(keys), ConfigSource::Embedded).map(|c| c.journal.backend);
        let Ok(JournalBackend::Postgres(got)) = parsed("url = \"postgres://u:secret@db:5432/d\"") else { panic!() };
        assert_eq!((got.schema.as_str(), got.pool_size, got.connect_timeout_ms), ("lastmile", 4, 5_000));
        assert!(!format!("{got:?}").contains("secret"), "the password is never printed");
        // A variable every test run has (the URL is only parsed when the store opens).
        let path = std::env::var("PATH").unwrap();
        let Ok(JournalBackend::Postgres(got)) = parsed("url_env = \"PATH\"\nschema = \"dispatch_2\"\npool_size = 9")
        else {
            panic!()
        };
        assert_eq!((got.url.as_str(), got.schema.as_str(), got.pool_size), (path.as_str(), "dispatch_2", 9));
        for (keys, says) in [
            ("", "journal.url: required with backend = \"postgres\""),
            ("url = \"a\"\nurl_env = \"B\"", "give one, not both"),
            ("url_env = \"LASTMILE_TEST_NO_SUCH_VAR\"", "LASTMILE_TEST_NO_SUCH_VAR is not set"),
            ("url = \"postgres://db/x\"\nschema = \"Bad-Name\"", "journal.schema: \"Bad-Name\""),
            ("url = \"postgres://db/x\"\npool_size = 0", "journal.pool_size: must be at least 1"),
        ] {
            let err = parsed(keys).unwrap_err().to_string();
            assert!(err.contains(says), "{keys:?}: {err}");
        }
        let sqlite_with_url = EMBEDDED_CONFIG.replace("data_dir = \"data\"", "data_dir = \"data\"\nurl = \"x\"");
        let err = LastmileConfig::parse(&sqlite_with_url, ConfigSource::Embedded).unwrap_err().to_string();
        assert!(err.contains("journal.url: only for backend = \"postgres\""), "{err}");
    }
}
