//! The lastmile server: one application layer and the adapters over it.
//!
//! # Layout
//!
//! - [`app`]: every operation, in domain types, for any transport: a
//!   [`Caller`](app::Caller) in, the core's values or one
//!   [`AppError`](error::AppError) out. Validation, limits, the feed's
//!   policy and the unit of work live there, once.
//! - [`error`]: the one error and the one table giving each code its gRPC
//!   code and its HTTP status.
//! - [`auth`]: tokens, roles (the table of who may call what), rates.
//! - [`sinks`]: where the core's effects go: the live feed, terminals' page
//!   queues, the timer channel. No transport.
//! - [`journal`]: group commit of every change before it is answered; fail
//!   closed. [`store`] opens the configured backend.
//! - Adapters, siblings over [`app`] (neither calls the other):
//!   - [`grpc`]: `lastmile.v1.Dispatch` and `lastmile.v1.UnitTerminal`;
//!   - [`http`]: the same operations as JSON over HTTP/1.1, the feed as SSE,
//!     `/metrics`, `/healthz`, `/openapi.json`;
//!   - [`webhook`]: status changes pushed to HTTP endpoints, a consumer of
//!     the feed like any watcher.
//! - [`wire`]: the proto messages to and from the application's types (the
//!   JSON of [`json`] mirrors them), shared by the adapters.
//! - [`config`], [`clock`], [`metrics`]: the typed configuration, the one
//!   clock, the counters.
//! - [`run`]: serves all of it until a shutdown future resolves.
//!
//! Dependencies between these modules point one way (checked by
//! `tests/layering.rs`): adapters -> app -> sinks, journal, auth -> error.
//! No dispatch logic lives here: that is `lastmile-core`'s.
//!
//! # Tasks, channels and locks
//!
//! ```text
//!  gRPC conns (tonic)   HTTP conns (hyper, <= http.max_connections)
//!        \                    /
//!         `-- request tasks --'            every operation: app::App
//!                 |
//!                 |  core, under one incident's or unit's DashMap shard lock
//!                 v
//!        +--------+-----------+-----------+-----------+------------------+
//!        |        |           |           |           |                  |
//!   feed mutex  page queue  timer      timeline    history mutex   journal sender mutex
//!   (ring +     per unit    channel    shard lock  (recently       (ticket + std mpsc push)
//!   broadcast)  mpsc,       (unbounded, (DashMap)  closed map)            |
//!        |      try_send    bounded by                                    v
//!        |        |           |           journal writer THREAD
//!        |        v           v           (batch, one txn + fsync,
//!        |   terminal     timer task        watch<ticket> to waiters)
//!        |   streams      (DelayQueue) --> core (as above)
//!        v
//!   broadcast receivers, one per consumer:
//!   gRPC/SSE watcher tasks (<= feed.max_watchers; mpsc(64) to the stream)
//!   webhook follower task --> per-endpoint mpsc(queue_capacity) --> worker
//!                             task (one POST in flight) --> dead-letter log
//!                             (mutex) <- supervisor task
//! ```
//!
//! Lock order: an incident's or unit's shard lock, then one of the feed
//! mutex, a timeline shard lock, the history mutex or the journal sender
//! mutex (one at a time, never the other way). Each is held for well under a
//! microsecond: numbering an event and pushing it on the ring and the
//! broadcast; pushing one timeline entry; inserting one closed incident (and
//! dropping the oldest); one counter increment and one channel push. No I/O,
//! no await and no other lock inside any of them. History reads from disk
//! run on the blocking pool on their own SQLite connections, holding none of
//! these. Everything else the core calls while it holds a lock
//! (`try_send` of a page, a send on the unbounded timer channel) takes no
//! lock of ours. The journal writer thread holds nothing while it commits;
//! waiters wait on a `watch`, not a lock. Webhooks are fed by their own
//! task, never on the dispatch path.
//!
//! Added with the reports and the ETA: selection reads each tier's travel
//! model and unit offsets under the dispatcher's `travel` / `unit_offsets`
//! RwLocks (a copy or an `Arc` clone, then released; taken after an
//! incident's shard lock, never the other way); the ETA calibration's mutex
//! (`app::eta`) is taken when an operation ends (`Work::end`, no other lock
//! held) and then takes the `travel` / `unit_offsets` write locks and the
//! journal sender mutex, each for one assignment or push. Admission
//! (`app::admission`) is semaphores' `try_acquire` (no waiting, no lock);
//! the per-client connection counts (`conn_limit`) are one mutex held for a
//! map update at accept and at close.
//!
//! Tasks live as long as their owner: the timer task and the gateway are
//! aborted when [`run`] returns ([`AbortOnDrop`]); watcher tasks end when
//! their client leaves or at `App::stop`; the webhook follower and the
//! endpoint workers end at [`webhook::Webhooks::shutdown`], after requests
//! have drained; the journal writer ends when the journal is closed, last.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn_limit;
pub mod error;
pub mod grpc;
pub mod history;
pub mod http;
pub mod journal;
pub mod json;
pub mod metrics;
pub mod sinks;
pub mod store;
pub mod webhook;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lastmile_core::Dispatcher;
use lastmile_proto::v1::dispatch_server::DispatchServer;
use lastmile_proto::v1::unit_terminal_server::UnitTerminalServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use app::App;
pub use config::LastmileConfig;
use grpc::{DispatchService, TerminalService};

/// A dispatcher ready to serve, with its journal store when durable.
pub struct Opened {
    pub dispatcher: Arc<Dispatcher>,
    pub store: Option<Box<dyn lastmile_store::JournalStore>>,
    /// The live feed's sequence number at the last commit before the restart.
    pub recovered_feed_seq: u64,
    /// The open incidents' timelines, by incident sequence number.
    pub timelines: Vec<(u64, Vec<sinks::TimelineEntry>)>,
    /// Closed incidents a journal written before history kept among the
    /// live ones: moved to history once the journal runs.
    pub to_archive: Vec<lastmile_core::Incident>,
    /// The ETA calibration's learnt state, as the journal kept it.
    pub calibration: Option<lastmile_core::eta::Calibration>,
    /// Set (with the error) once the journal has failed closed: a cluster's
    /// leader watches it and gives up leading.
    pub journal_failure: Arc<std::sync::OnceLock<String>>,
}

impl Opened {
    pub fn in_memory(dispatcher: Arc<Dispatcher>) -> Self {
        Opened {
            dispatcher,
            store: None,
            recovered_feed_seq: 0,
            timelines: Vec::new(),
            to_archive: Vec::new(),
            calibration: None,
            journal_failure: Arc::default(),
        }
    }
}

/// Builds the dispatcher the configuration asks for: from the dataset (memory
/// backend), or recovered from the journal store (created if new).
pub fn open(config: &LastmileConfig) -> Result<Opened, ServerError> {
    match store::open(&config.journal)? {
        None => Ok(Opened::in_memory(Arc::new(build_dispatcher(config)?))),
        Some(store) => recover(config, store),
    }
}

/// The dispatcher a store's live records describe, over the configured
/// dataset. History is not read (but for the most recently closed, kept for
/// idempotency).
fn recover(config: &LastmileConfig, mut store: Box<dyn lastmile_store::JournalStore>) -> Result<Opened, ServerError> {
    let recovered = store.recover(config.limits.recent_closed_incidents)?;
    recover_from(config, store, recovered)
}

/// [`recover`] from live records already read (a standby's, at takeover).
pub(crate) fn recover_from(
    config: &LastmileConfig,
    store: Box<dyn lastmile_store::JournalStore>,
    recovered: lastmile_store::Recovered,
) -> Result<Opened, ServerError> {
    let started = std::time::Instant::now();
    let (units, area) = config.load_dataset()?;
    let location = store.location();
    let parsed = Parsed::of(&recovered, &location)?;
    let (n_units, n_incidents) = (parsed.units.len(), parsed.incidents.len());
    let (dispatcher, restored) = Dispatcher::restore(
        config.dispatch.clone(),
        area,
        units,
        parsed.units,
        parsed.incidents,
        parsed.recent_closed,
        config.dispatcher_limits(),
        clock::Clock::start().now(),
    )?;
    if restored.repaired > 0 {
        tracing::warn!(journal = %location, repaired = restored.repaired, "recovery reconciled unit/incident references left by a crash between operations");
    }
    dispatcher
        .check_invariants()
        .map_err(|e| ServerError::Recovery(format!("{location}: inconsistent journal: {e}")))?;
    info!(
        journal = %location,
        open_incidents = n_incidents,
        stored_units = n_units,
        history = recovered.history_len,
        commits = recovered.commits,
        records = recovered.records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(Opened {
        dispatcher: Arc::new(dispatcher),
        store: Some(store),
        recovered_feed_seq: recovered.feed_seq,
        timelines: parsed.timelines,
        to_archive: restored.closed_found_live,
        calibration: parsed.calibration,
        journal_failure: Arc::default(),
    })
}

/// The recovered records, parsed.
struct Parsed {
    units: Vec<lastmile_core::Unit>,
    incidents: Vec<lastmile_core::Incident>,
    recent_closed: Vec<lastmile_core::Incident>,
    timelines: Vec<(u64, Vec<sinks::TimelineEntry>)>,
    calibration: Option<lastmile_core::eta::Calibration>,
}

impl Parsed {
    fn of(recovered: &lastmile_store::Recovered, location: &str) -> Result<Parsed, ServerError> {
        fn all<T: serde::de::DeserializeOwned>(
            bodies: &[Vec<u8>],
            what: &str,
            location: &str,
        ) -> Result<Vec<T>, ServerError> {
            bodies
                .iter()
                .map(|b| {
                    serde_json::from_slice(b)
                        .map_err(|e| ServerError::Recovery(format!("{location}: a stored {what} cannot be read: {e}")))
                })
                .collect()
        }
        let mut timelines: Vec<(u64, Vec<sinks::TimelineEntry>)> = Vec::new();
        for (seq, body) in &recovered.timelines {
            // One row per operation and incident: a JSON array of entries.
            let rows: Vec<sinks::TimelineEntry> = serde_json::from_slice(body)
                .map_err(|e| ServerError::Recovery(format!("{location}: a stored timeline row cannot be read: {e}")))?;
            match timelines.last_mut() {
                Some((last, entries)) if last == seq => entries.extend(rows),
                _ => timelines.push((*seq, rows)),
            }
        }
        Ok(Parsed {
            units: all(&recovered.units, "unit", location)?,
            incidents: all(&recovered.incidents, "incident", location)?,
            recent_closed: all(&recovered.recent_closed, "closed incident", location)?,
            timelines,
            calibration: match &recovered.calibration {
                None => None,
                Some(body) => Some(
                    lastmile_core::eta::Calibration::parse(&String::from_utf8_lossy(body))
                        .map_err(|e| ServerError::Recovery(format!("{location}: the stored ETA calibration: {e}")))?,
                ),
            },
        })
    }
}

/// Accepted connections with Nagle's algorithm off: a small response must not
/// wait for the peer's delayed ACK (~40 ms per request otherwise). The
/// builder's own `tcp_nodelay` applies only to listeners tonic binds itself.
/// The listener is shared, so one port can serve the recovery phase (health
/// only) and then the full service.
///
/// Fair connection limits: a connection from a client (source address)
/// already holding `server.max_connections_per_client`, or beyond
/// `server.max_connections` in all, is closed as soon as it is accepted,
/// before TLS or HTTP/2 reads a byte (counted in `metrics` under the bound's
/// key, when given). Each served connection holds its place inside the
/// stream ([`conn_limit::Counted`]) until tonic drops it.
fn incoming_nodelay(
    listener: Arc<TcpListener>,
    config: &config::ServerConfig,
    metrics: Option<Arc<metrics::Metrics>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<conn_limit::Counted<tokio::net::TcpStream>>> {
    let limit = conn_limit::ConnLimit::new(config.max_connections_per_client, Some(config.max_connections));
    futures_lite_stream(move |cx| {
        loop {
            let (stream, peer) = match std::task::ready!(listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(error) => return std::task::Poll::Ready(Some(Err(error))),
            };
            let place = match limit.try_acquire(peer.ip()) {
                Ok(place) => place,
                Err(refused) => {
                    let bound = match refused {
                        conn_limit::Refused::PerClient => "server.max_connections_per_client",
                        conn_limit::Refused::Total => "server.max_connections",
                    };
                    tracing::debug!(client = %peer.ip(), bound, "grpc: connection refused at accept");
                    if let Some(metrics) = &metrics {
                        metrics.limit_hit(bound);
                    }
                    // Dropped unread: closed at once. (The next accept is
                    // tried at once too; tokio's cooperative budget makes
                    // poll_accept yield under a flood.)
                    continue;
                }
            };
            return std::task::Poll::Ready(Some(
                stream.set_nodelay(true).map(|()| conn_limit::Counted::new(stream, place)),
            ));
        }
    })
}

/// A stream from a poll function (what `futures::stream::poll_fn` does,
/// without the dependency).
fn futures_lite_stream<T>(
    poll: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>> + Unpin,
) -> impl tokio_stream::Stream<Item = T> {
    struct PollFn<F>(F);
    impl<T, F> tokio_stream::Stream for PollFn<F>
    where
        F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>> + Unpin,
    {
        type Item = T;
        fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
            (self.get_mut().0)(cx)
        }
    }
    PollFn(poll)
}

/// While the journal is being recovered (and then while overdue timers fire):
/// serves `grpc.health.v1`, answering NOT_SERVING for the lastmile
/// services, and answers every lastmile call UNAVAILABLE with a retry hint,
/// until `recovered` resolves. Then stops (connections opened meanwhile are
/// closed; clients reconnect to the full service on the same port).
pub async fn serve_health_while_recovering(
    listener: Arc<TcpListener>,
    config: &LastmileConfig,
    recovered: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    serve_refusing(listener, config, grpc::starting(), recovered).await
}

/// Serves `grpc.health.v1` (NOT_SERVING) and answers every lastmile call
/// with `refusal` until `until` resolves; then stops accepting, and gives
/// the connections in flight a second to finish (a Health/Watch stream
/// never does) before dropping them.
async fn serve_refusing(
    listener: Arc<TcpListener>,
    config: &LastmileConfig,
    refusal: grpc::Refusal,
    until: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, tonic_health::ServingStatus::NotServing).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = grpc_builder(config)?
        .add_service(health)
        .add_service(grpc::NotReady::<DispatchServer<DispatchService>>::with(refusal.clone()))
        .add_service(grpc::NotReady::<UnitTerminalServer<TerminalService>>::with(refusal))
        .serve_with_incoming_shutdown(incoming_nodelay(listener, &config.server, None), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => return served.map_err(ServerError::from),
        () = until => {}
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
}

/// The gateway's TLS acceptor when `[tls]` is configured.
fn http_tls(config: &LastmileConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, ServerError> {
    match &config.tls {
        Some(tls) => {
            let (cert, key) = tls.read_pem()?;
            Ok(Some(http::tls_acceptor(&cert, &key).map_err(ServerError::Tls)?))
        }
        None => Ok(None),
    }
}

/// While this node stands by (`[cluster]`): health NOT_SERVING, every
/// lastmile call refused UNAVAILABLE naming the leader
/// ([`cluster::grpc_refusal`]), and the gateway answering 503 likewise,
/// until `until` resolves (this node has taken the lease). The listeners
/// then serve the full service.
pub async fn serve_standby(
    listeners: &Listeners,
    config: &LastmileConfig,
    me: lastmile_store::cluster::NodeInfo,
    leader: cluster::LeaderWatch,
    until: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let refusal = cluster::grpc_refusal(me.clone(), leader.clone());
    let stop = CancellationToken::new();
    let gateway = match &listeners.http {
        Some(http) => {
            let tls = http_tls(config)?;
            let (http, router, http_config) = (http.clone(), cluster::http_router(me, leader), config.http.clone());
            let stopped = stop.clone().cancelled_owned();
            let metrics = Arc::new(metrics::Metrics::default());
            Some(AbortOnDrop(tokio::spawn(async move {
                http::serve(http, router, &http_config, tls, metrics, stopped).await
            })))
        }
        None => None,
    };
    let served = serve_refusing(listeners.grpc.clone(), config, refusal, until).await;
    stop.cancel();
    if let Some(mut gateway) = gateway {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut gateway.0).await;
    }
    served
}

/// Every service's health, and the server's (`""`).
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: tonic_health::ServingStatus) {
    reporter.set_service_status("lastmile.v1.Dispatch", status).await;
    reporter.set_service_status("lastmile.v1.UnitTerminal", status).await;
    reporter.set_service_status("", status).await;
}

/// Stops a background task when its owner (the running server) goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("dispatcher: {0}")]
    Dispatcher(#[from] lastmile_core::DispatchError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Store(#[from] lastmile_store::StoreError),
    #[error("recovery: {0}")]
    Recovery(String),
    #[error(transparent)]
    Webhooks(#[from] webhook::WebhookError),
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error("{0}")]
    Tls(String),
    #[error("console: {0}")]
    Console(String),
}

/// Where the server listens: gRPC, and optionally the JSON/HTTP gateway.
/// A bare gRPC listener converts into one (no gateway), so
/// `run_opened(Arc::new(listener), ...)` keeps working.
pub struct Listeners {
    /// Shared, so one port can serve the recovery phase (health only) and
    /// then the full service.
    pub grpc: Arc<TcpListener>,
    /// The gateway's listener (`http.listen`); `None` = no gateway.
    pub http: Option<Arc<TcpListener>>,
}

impl From<Arc<TcpListener>> for Listeners {
    fn from(grpc: Arc<TcpListener>) -> Self {
        Listeners { grpc, http: None }
    }
}

/// A gRPC server builder, with TLS when `[tls]` is configured.
fn grpc_builder(config: &LastmileConfig) -> Result<tonic::transport::Server, ServerError> {
    let builder = tonic::transport::Server::builder();
    let Some(tls) = &config.tls else {
        return Ok(builder);
    };
    let (cert, key) = tls.read_pem()?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .timeout(Duration::from_secs(10));
    Ok(builder.tls_config(tls)?)
}

/// Builds the dispatcher from a configuration and the dataset it names.
pub fn build_dispatcher(config: &LastmileConfig) -> Result<Dispatcher, ServerError> {
    let (units, area) = config.load_dataset()?;
    Ok(Dispatcher::new(config.dispatch.clone(), area, units, config.dispatcher_limits())?)
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting, ends
/// the live streams and lets in-flight requests finish. (Bounding that drain
/// is the caller's: see `server.shutdown_grace_ms` and the binary.)
pub async fn run(
    listener: TcpListener,
    config: Arc<LastmileConfig>,
    dispatcher: Arc<Dispatcher>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_opened(Arc::new(listener), config, Opened::in_memory(dispatcher), shutdown).await
}

/// How far live-feed sequence numbers jump at a durable restart: more than
/// any number of events published after the last commit, so a number a
/// watcher saw before the crash is never reused.
pub const FEED_SEQ_GAP_AFTER_RESTART: u64 = 1 << 32;

/// The first feed sequence number. After a durable restart it jumps past
/// anything the old process can have published, so a watcher resuming from
/// a number it saw before the crash is told to resync (OUT_OF_RANGE) instead
/// of getting other events under old numbers. A journal that never recorded
/// an event (a new one) has no numbers to protect: start at 1.
fn first_feed_seq(opened: &Opened) -> u64 {
    if opened.store.is_some() && opened.recovered_feed_seq > 0 {
        opened.recovered_feed_seq + FEED_SEQ_GAP_AFTER_RESTART
    } else {
        1
    }
}

/// The running application and what serving it started.
struct Started {
    app: Arc<App>,
    webhooks: Arc<webhook::Webhooks>,
    follower: Option<webhook::Follower>,
    journal: Option<Arc<journal::Journal>>,
    _timers: AbortOnDrop,
    /// History retention (`[history]`).
    _pruner: AbortOnDrop,
    /// Coalesced position fixes to the journal.
    _positions: AbortOnDrop,
}

/// Starts the journal, the application, its timer task and the webhooks,
/// and re-arms every timer of the recovered state.
fn start(config: &Arc<LastmileConfig>, opened: Opened, auth: auth::Auth) -> Result<Started, ServerError> {
    let first_seq = first_feed_seq(&opened);
    let (sinks, armed) = sinks::Sinks::new(config, first_seq);
    for (seq, entries) in opened.timelines {
        sinks.timelines.restore(seq, entries);
    }
    let sinks = Arc::new(sinks);
    let metrics = Arc::new(metrics::Metrics::default());
    let reader = match &opened.store {
        Some(store) => Some(Arc::<dyn lastmile_store::HistoryReader>::from(store.reader()?)),
        None => None,
    };
    // With the memory backend the map is all of history; with SQLite it only
    // has to cover closes whose commit is pending (and quick reads of the
    // latest), so it holds no more than the dispatcher's own recent-closed
    // cache, not history.memory_incidents copies of incidents and timelines.
    let held = match &reader {
        None => config.history.memory_incidents,
        Some(_) => config.history.memory_incidents.min(config.limits.recent_closed_incidents),
    };
    let eta = start_eta(config, &opened.dispatcher, opened.calibration.as_ref())?;
    let journal = opened.store.map(|store| {
        let feed = sinks.clone();
        journal::Journal::start(
            store,
            opened.journal_failure.clone(),
            config.journal.max_pending_ops,
            config.journal.max_batch_records,
            Duration::from_millis(config.journal.enqueue_timeout_ms),
            Arc::new(move || feed.feed.last_seq()),
            metrics.clone(),
        )
    });
    let settle = journal.clone().map(|journal| Box::new(move || journal.settle()) as history::Settle);
    let history = Arc::new(history::History::new(held, reader, settle));
    let app = Arc::new(App {
        dispatcher: opened.dispatcher,
        sinks: sinks.clone(),
        clock: clock::Clock::start(),
        config: config.clone(),
        stop: CancellationToken::new(),
        journal: journal.clone(),
        history,
        unjournaled_positions: Default::default(),
        auth,
        metrics,
        eta,
        admission: app::admission::Admission::new(&config.admission),
    });
    warm_eta(&app);
    // A journal from before history kept closed incidents live: move them.
    for incident in &opened.to_archive {
        app.internal_change(|work| lastmile_core::effects::Effects::archive_incident(work, incident));
    }
    // Webhooks get every event from the first one on (the follower
    // subscribes before any timer fires); their own token: they are flushed
    // after requests have drained, before the journal closes.
    let webhooks = Arc::new(webhook::Webhooks::start(
        &config.webhooks,
        config.webhooks.dead_letter_file(config.journal.backend.data_dir()),
        CancellationToken::new(),
    )?);
    let follower = webhooks.has_endpoints().then(|| webhook::Follower::start(webhooks.clone(), sinks));
    let timers = AbortOnDrop(tokio::spawn(app::timers::run(app.clone(), armed)));
    let pruner = AbortOnDrop(tokio::spawn(app::retention::run(app.clone())));
    let positions = AbortOnDrop(tokio::spawn(app::positions::run(app.clone())));
    Ok(Started { app, webhooks, follower, journal, _timers: timers, _pruner: pruner, _positions: positions })
}

/// The ETA calibration at start: its file and the journal's learnt state.
/// (The windows are refilled by [`warm_eta`], after start.)
fn start_eta(
    config: &LastmileConfig,
    dispatcher: &Dispatcher,
    stored: Option<&lastmile_core::eta::Calibration>,
) -> Result<app::eta::Eta, ServerError> {
    let file = config.eta.load_calibration().map_err(|(key, problem)| {
        ServerError::Config(config::ConfigError::Invalid { source_name: config.source.to_string(), key, problem })
    })?;
    let eta = app::eta::Eta::start(&config.eta, file.as_ref(), stored, dispatcher);
    for t in eta.status().tiers {
        info!(tier = %t.tier, source = ?t.source, turnout_s = t.turnout_s, speed_m_per_s = t.speed_m_per_s, margin_s = t.margin_s, margin_ratio = t.margin_ratio, "ETA model");
    }
    Ok(eta)
}

/// Refills the ETA calibration's windows with the arrivals of the
/// `eta.warm_start_incidents` most recently closed incidents, on the
/// blocking pool: a read and parse of thousands of outcomes that the ready
/// line need not wait for (the models themselves came from the journal).
fn warm_eta(app: &Arc<App>) {
    let app = app.clone();
    tokio::task::spawn_blocking(move || match app.history.recent_outcomes(app.config.eta.warm_start_incidents) {
        Ok(recent) => app.eta.warm(&recent),
        Err(e) => tracing::warn!(error = %e.message, "ETA calibration: history not read; the windows start empty"),
    });
}

/// Fires the recovered state's timers that are due (the rest go to the
/// timer task) off the async workers, then waits until their changes are
/// durable.
async fn catch_up(app: &Arc<App>) {
    let started = std::time::Instant::now();
    let firing = app.clone();
    let fired = tokio::task::spawn_blocking(move || app::timers::rearm(&firing)).await.unwrap_or_default();
    app.settle().await;
    if fired > 0 {
        info!(fired, elapsed_ms = started.elapsed().as_millis() as u64, "overdue timers fired before serving");
    }
}

/// Logs whether auth is on; with it off, loudly.
fn log_auth(auth: &auth::Auth, config: &LastmileConfig, grpc_addr: std::net::SocketAddr) {
    if auth.enabled() {
        info!(tokens = config.auth.tokens.len(), "auth on: every call needs a bearer token");
    } else {
        tracing::warn!(
            addr = %grpc_addr,
            "AUTH IS OFF: every caller may do everything. Allowed on loopback only; configure [auth] before exposing lastmile"
        );
    }
}

/// [`run`] for a dispatcher from [`open`]: starts its journal, re-arms every
/// timer of the recovered state (those already due fire at once, in order),
/// then serves gRPC, and the JSON/HTTP gateway if `listeners` has its
/// listener. At shutdown both stop accepting and drain; then the webhooks
/// are flushed and the journal closed.
pub async fn run_opened(
    listeners: impl Into<Listeners>,
    config: Arc<LastmileConfig>,
    opened: Opened,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_opened_then(listeners, config, opened, shutdown, || {}).await
}

/// [`run_opened`], calling `on_ready` once the server is ready: the
/// recovered state's overdue timers have fired and their changes are
/// durable (until then the gRPC port answers health NOT_SERVING and the
/// gateway is not listening), just before it serves. The binary prints its
/// "listening on" lines there.
pub async fn run_opened_then(
    listeners: impl Into<Listeners>,
    config: Arc<LastmileConfig>,
    opened: Opened,
    shutdown: impl Future<Output = ()> + Send,
    on_ready: impl FnOnce(),
) -> Result<(), ServerError> {
    let Listeners { grpc: listener, http: http_listener } = listeners.into();
    let auth = config.build_auth()?;
    let grpc_addr = listener.local_addr().map_err(ServerError::Listener)?;
    let mut listening = vec![("server.listen", grpc_addr)];
    if let Some(http) = &http_listener {
        listening.push(("http.listen", http.local_addr().map_err(ServerError::Listener)?));
    }
    config.check_exposure(&listening)?;
    let http_tls = match &http_listener {
        Some(_) => http_tls(&config)?,
        None => None,
    };
    log_auth(&auth, &config, grpc_addr);
    let started = start(&config, opened, auth)?;
    let app = started.app.clone();
    // Readiness after recovery: the timers that came due while the server
    // was down fire now, before anything is served, and their changes are
    // committed, so the first request does not queue behind them.
    serve_health_while_recovering(listener.clone(), &config, catch_up(&app)).await?;
    on_ready();
    // The gateway: its own task, stopped with the rest (`App::stop`), and
    // aborted if gRPC serving fails (the guard drops).
    let router = match &http_listener {
        Some(_) => {
            Some(http::router(app.clone(), started.webhooks.clone(), &config.http).map_err(ServerError::Console)?)
        }
        None => None,
    };
    let mut gateway = http_listener.zip(router).map(|(http_listener, router)| {
        info!(addr = ?http_listener.local_addr().ok(), "lastmile serving the JSON/HTTP gateway");
        let stopped = app.stop.clone().cancelled_owned();
        let http_config = config.http.clone();
        let metrics = app.metrics.clone();
        AbortOnDrop(tokio::spawn(async move {
            http::serve(http_listener, router, &http_config, http_tls, metrics, stopped).await
        }))
    });
    let served = serve_grpc(listener, &app, shutdown).await;
    // Whatever ended serving (a signal, or an error), what was accepted is
    // delivered and stored before returning. The gateway drains too (its
    // event streams ended with `stop`).
    if let Some(gateway) = gateway.as_mut() {
        let _ = (&mut gateway.0).await;
    }
    drain(started).await;
    served?;
    info!("lastmile stopped");
    Ok(())
}

/// Serves gRPC (with health and reflection) until `shutdown`, then ends
/// the live streams and lets in-flight requests finish.
async fn serve_grpc(
    listener: Arc<TcpListener>,
    app: &Arc<App>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let server = &app.config.server;
    let dispatch = DispatchServer::new(DispatchService::new(app.clone()))
        .max_decoding_message_size(server.max_decoding_message_bytes)
        .max_encoding_message_size(server.max_encoding_message_bytes);
    let terminal = UnitTerminalServer::new(TerminalService::new(app.clone()))
        .max_decoding_message_size(server.max_decoding_message_bytes)
        .max_encoding_message_size(server.max_encoding_message_bytes);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    set_health(&health_reporter, tonic_health::ServingStatus::Serving).await;
    // Both reflection versions: older grpcurl and GUI clients speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(lastmile_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    info!(
        addr = ?listener.local_addr().ok(),
        units = app.dispatcher.unit_count(),
        config = %app.config.source,
        "lastmile serving lastmile.v1.Dispatch, lastmile.v1.UnitTerminal, grpc.health.v1, reflection (v1, v1alpha)"
    );
    let signal = async {
        shutdown.await;
        info!("shutdown: ending live streams, draining requests");
        // Load balancers and probes see the server going before it is gone.
        set_health(&health_reporter, tonic_health::ServingStatus::NotServing).await;
        app.stop.cancel();
        app.sinks.terminals.close_all();
    };
    // Long-lived streams must not keep a connection's HTTP/2 stream limit busy
    // forever: keepalive finds dead peers.
    grpc_builder(&app.config)?
        .max_concurrent_streams(Some(server.max_concurrent_streams))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(grpc::outcome::OutcomeLayer::new(app.metrics.clone(), Duration::from_millis(server.request_timeout_ms)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(dispatch)
        .add_service(terminal)
        .serve_with_incoming_shutdown(incoming_nodelay(listener, server, Some(app.metrics.clone())), signal)
        .await?;
    Ok(())
}

/// After requests have drained: stops the timers, offers the webhooks what
/// the feed published and flushes them (bounded by
/// `webhooks.shutdown_flush_ms`; the rest is dead-lettered to the file),
/// then closes the journal.
async fn drain(started: Started) {
    let Started { app, webhooks, follower, journal, _timers, _pruner, _positions } = started;
    drop(_timers);
    drop(_pruner);
    drop(_positions);
    // The fixes applied since the last flush, into the journal's last commit.
    app.flush_positions();
    if let Some(follower) = follower {
        follower.finish(app.sinks.feed.last_seq()).await;
    }
    webhooks.shutdown().await;
    if let Some(journal) = journal {
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
    }
}
