//! The lastmile gRPC server: tonic services over the dispatch core.
//!
//! # Layout
//!
//! - [`config`]: the configuration file (embedded default or `--config`),
//!   validated once, and the dataset it names.
//! - [`convert`]: proto <-> core; every request field is checked here.
//! - [`error`]: the one domain-error -> gRPC-code table.
//! - [`service`]: the `lastmile.v1.Dispatch` service (dispatchers, the
//!   upstream command system, the live feed).
//! - [`terminal`]: the `lastmile.v1.UnitTerminal` service (responders).
//! - [`bus`]: where the core's effects go: live feed, page queues, the one
//!   timer wheel.
//! - [`clock`]: the server's only clock.
//! - [`journal`]: group commit of every change before it is answered; fail
//!   closed.
//! - [`webhook`]: status changes pushed to HTTP endpoints (signed POSTs,
//!   bounded queues, retries, dead letters).
//! - [`http`]: the JSON/HTTP gateway (the Dispatch operations, the live feed
//!   as Server-Sent Events) over the same `Dispatch` service.
//! - [`run`]: serves all of it, `grpc.health.v1` and server reflection on a
//!   listener (and the gateway on a second one) until a shutdown future
//!   resolves.
//!
//! No dispatch logic lives here: that is `lastmile-core`'s.

pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod grpc_outcome;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod service;
pub mod terminal;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lastmile_core::Dispatcher;
use lastmile_proto::v1::dispatch_server::DispatchServer;
use lastmile_proto::v1::unit_terminal_server::UnitTerminalServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::LastmileConfig;
use service::DispatchService;
use terminal::TerminalService;

/// What every service shares.
pub struct Shared {
    pub dispatcher: Arc<Dispatcher>,
    pub bus: Arc<bus::Bus>,
    pub clock: clock::Clock,
    pub config: Arc<LastmileConfig>,
    /// Cancelled at shutdown: ends live streams (feed watchers, terminals) so
    /// the drain is not held open by them.
    pub stop: CancellationToken,
    /// None when running in memory only.
    pub journal: Option<Arc<journal::Journal>>,
    /// Who may call what (see [`auth`]).
    pub auth: auth::Auth,
    /// Latencies and refusals (see [`metrics`]).
    pub metrics: Arc<metrics::Metrics>,
    /// Webhook endpoints fed by the live feed (none configured: does nothing).
    pub webhooks: Arc<webhook::Webhooks>,
}

impl Shared {
    /// Runs a state change: waits (bounded) for a place in the journal's
    /// queue, applies `change` with the operation's effects, and hands back its
    /// result once everything it changed is durable (see [`journal::Op`]).
    pub async fn change<T>(&self, change: impl FnOnce(&journal::Op) -> T) -> Result<T, tonic::Status> {
        let op = journal::Op::begin(&self.bus, &self.journal).await?;
        let result = change(&op);
        op.durable().await?;
        Ok(result)
    }
}

/// A dispatcher ready to serve, with its journal store when durable.
pub struct Opened {
    pub dispatcher: Arc<Dispatcher>,
    pub store: Option<Box<dyn lastmile_store::JournalStore>>,
    /// The live feed's sequence number at the last commit before the restart.
    pub recovered_feed_seq: u64,
}

impl Opened {
    pub fn in_memory(dispatcher: Arc<Dispatcher>) -> Self {
        Opened { dispatcher, store: None, recovered_feed_seq: 0 }
    }
}

/// Builds the dispatcher the configuration asks for: in memory, or recovered
/// from the journal in `journal.data_dir` (created if new).
pub fn open(config: &LastmileConfig) -> Result<Opened, ServerError> {
    if config.journal.data_dir.is_empty() {
        return Ok(Opened::in_memory(Arc::new(build_dispatcher(config)?)));
    }
    let started = std::time::Instant::now();
    let (units, area) = config.load_dataset()?;
    let mut store = lastmile_store::SqliteStore::open(std::path::Path::new(&config.journal.data_dir))?;
    let recovered = lastmile_store::JournalStore::recover(&mut store)?;
    let location = lastmile_store::JournalStore::location(&store);
    let corrupt = |what: &str, e: serde_json::Error| {
        ServerError::Recovery(format!("{location}: a stored {what} cannot be read: {e}"))
    };
    let stored_units = recovered
        .units
        .iter()
        .map(|b| serde_json::from_slice(b).map_err(|e| corrupt("unit", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let incidents = recovered
        .incidents
        .iter()
        .map(|b| serde_json::from_slice(b).map_err(|e| corrupt("incident", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let (n_units, n_incidents) = (stored_units.len(), incidents.len());
    let (dispatcher, repaired) = Dispatcher::restore(
        config.dispatch.clone(),
        area,
        units,
        stored_units,
        incidents,
        config.dispatcher_limits(),
        clock::Clock::start().now(),
    )?;
    if repaired > 0 {
        tracing::warn!(journal = %location, repaired, "recovery reconciled unit/incident references left by a crash between operations");
    }
    dispatcher
        .check_invariants()
        .map_err(|e| ServerError::Recovery(format!("{location}: inconsistent journal: {e}")))?;
    info!(
        journal = %location,
        incidents = n_incidents,
        stored_units = n_units,
        commits = recovered.commits,
        records = recovered.records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(Opened {
        dispatcher: Arc::new(dispatcher),
        store: Some(Box::new(store)),
        recovered_feed_seq: recovered.feed_seq,
    })
}

/// Accepted connections with Nagle's algorithm off: a small response must not
/// wait for the peer's delayed ACK (~40 ms per request otherwise). The
/// builder's own `tcp_nodelay` applies only to listeners tonic binds itself.
/// The listener is shared, so one port can serve the recovery phase (health
/// only) and then the full service.
fn incoming_nodelay(
    listener: Arc<TcpListener>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_lite_stream(move |cx| {
        listener.poll_accept(cx).map(|accepted| {
            Some(accepted.and_then(|(stream, _)| {
                stream.set_nodelay(true)?;
                Ok(stream)
            }))
        })
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

/// While the journal is being recovered: serves `grpc.health.v1` only,
/// answering NOT_SERVING for the lastmile services, until `recovered`
/// resolves. Then stops (connections opened meanwhile are closed; clients
/// reconnect to the full service on the same port).
pub async fn serve_health_while_recovering(
    listener: Arc<TcpListener>,
    config: &LastmileConfig,
    recovered: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_not_serving::<DispatchServer<DispatchService>>().await;
    reporter.set_not_serving::<UnitTerminalServer<TerminalService>>().await;
    reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let server =
        grpc_builder(config)?.add_service(health).serve_with_incoming_shutdown(incoming_nodelay(listener), recovered);
    // A Health/Watch stream would hold the drain open: give it a second.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
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
}

/// A gRPC server builder, with TLS when `[tls]` is configured.
fn grpc_builder(config: &LastmileConfig) -> Result<tonic::transport::Server, ServerError> {
    let builder = tonic::transport::Server::builder();
    if !config.tls.enabled() {
        return Ok(builder);
    }
    let (cert, key) = config.tls.read_pem()?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .timeout(Duration::from_secs(10));
    Ok(builder.tls_config(tls)?)
}

/// Where the server listens: gRPC, and optionally the JSON/HTTP gateway.
/// A bare gRPC listener converts into one (no gateway), so
/// `run_opened(Arc::new(listener), ...)` keeps working.
pub struct Listeners {
    /// Shared, so one port can serve the recovery phase (health only) and
    /// then the full service.
    pub grpc: Arc<TcpListener>,
    /// The gateway's listener (`http.listen`); `None` = no gateway.
    pub http: Option<TcpListener>,
}

impl From<Arc<TcpListener>> for Listeners {
    fn from(grpc: Arc<TcpListener>) -> Self {
        Listeners { grpc, http: None }
    }
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

/// [`run`] for a dispatcher from [`open`]: starts its journal, re-arms every
/// timer of the recovered state (those already due fire at once, in order),
/// then serves gRPC, and the JSON/HTTP gateway if `listeners` has its
/// listener. At shutdown both stop accepting and drain.
pub async fn run_opened(
    listeners: impl Into<Listeners>,
    config: Arc<LastmileConfig>,
    opened: Opened,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let Listeners { grpc: listener, http: http_listener } = listeners.into();
    let auth = config.build_auth()?;
    let grpc_addr = listener.local_addr().map_err(ServerError::Listener)?;
    let mut listening = vec![("server.listen", grpc_addr)];
    if let Some(http) = &http_listener {
        listening.push(("http.listen", http.local_addr().map_err(ServerError::Listener)?));
    }
    config.check_exposure(&listening)?;
    let http_tls = match (&http_listener, config.tls.enabled()) {
        (Some(_), true) => {
            let (cert, key) = config.tls.read_pem()?;
            Some(http::tls_acceptor(&cert, &key).map_err(ServerError::Tls)?)
        }
        _ => None,
    };
    if auth.enabled() {
        info!(tokens = config.auth.tokens.len(), "auth on: every call needs a bearer token");
    } else {
        tracing::warn!(
            addr = %grpc_addr,
            "AUTH IS OFF: every caller may do everything. Allowed on loopback only; configure [auth] before exposing lastmile"
        );
    }
    let dispatcher = opened.dispatcher.clone();
    // Sequence numbers after a restart jump past anything the old process can
    // have published, so a watcher resuming from a number it saw before the
    // crash is told to resync (OUT_OF_RANGE) instead of getting other events
    // under old numbers.
    // The gap is far larger than anything published between two commits.
    // A journal that never recorded an event (a new one) has no numbers to
    // protect: start at 1.
    let first_seq = if opened.store.is_some() && opened.recovered_feed_seq > 0 {
        opened.recovered_feed_seq + FEED_SEQ_GAP_AFTER_RESTART
    } else {
        1
    };
    let (bus, armed) = bus::Bus::new(config.clone(), first_seq);
    let metrics = Arc::new(metrics::Metrics::default());
    // Webhooks get every event from the first one on; their own token: they
    // are flushed after requests have drained, before the journal closes.
    let webhooks = Arc::new(webhook::Webhooks::start(
        &config.webhooks,
        config.webhooks.dead_letter_file(&config.journal.data_dir),
        CancellationToken::new(),
    )?);
    bus.feed.set_webhooks(webhooks.clone());
    let journal = opened.store.map(|store| {
        let feed_bus = bus.clone();
        journal::Journal::start(
            store,
            config.journal.max_pending_ops,
            config.journal.max_batch_records,
            Duration::from_millis(config.journal.enqueue_timeout_ms),
            Arc::new(move || feed_bus.feed.last_seq()),
            metrics.clone(),
        )
    });
    let shared = Arc::new(Shared {
        dispatcher: dispatcher.clone(),
        bus: bus.clone(),
        clock: clock::Clock::start(),
        config: config.clone(),
        stop: CancellationToken::new(),
        journal: journal.clone(),
        auth,
        metrics,
        webhooks: webhooks.clone(),
    });
    // Re-arm: due ones now, in order; the rest on the wheel.
    let now = shared.clock.now();
    for timer in dispatcher.timers_to_rearm() {
        if timer.at <= now {
            let op = journal::Op::internal(&bus, &journal);
            dispatcher.fire(&timer.key, now, &op);
            op.finish();
        } else {
            lastmile_core::effects::Effects::arm(&*bus, timer);
        }
    }
    let _timers = AbortOnDrop(tokio::spawn(bus::run_timers(
        dispatcher.clone(),
        bus.clone(),
        journal.clone(),
        shared.clock,
        armed,
        shared.stop.clone(),
    )));

    let server = &config.server;
    let dispatch = DispatchServer::new(DispatchService::new(shared.clone()))
        .max_decoding_message_size(server.max_decoding_message_bytes)
        .max_encoding_message_size(server.max_encoding_message_bytes);
    let terminal = UnitTerminalServer::new(TerminalService::new(shared.clone()))
        .max_decoding_message_size(server.max_decoding_message_bytes)
        .max_encoding_message_size(server.max_encoding_message_bytes);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<DispatchServer<DispatchService>>().await;
    health_reporter.set_serving::<UnitTerminalServer<TerminalService>>().await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lastmile_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let local = listener.local_addr().ok();
    info!(
        addr = ?local,
        units = dispatcher.unit_count(),
        config = %config.source,
        "lastmile serving lastmile.v1.Dispatch, lastmile.v1.UnitTerminal, grpc.health.v1, reflection"
    );
    // The gateway: its own task, stopped with the rest (`shared.stop`), and
    // aborted if gRPC serving fails (the guard drops).
    let mut gateway = http_listener.map(|http_listener| {
        let router = http::router(shared.clone(), &config.http);
        info!(addr = ?http_listener.local_addr().ok(), "lastmile serving the JSON/HTTP gateway");
        let stopped = shared.stop.clone().cancelled_owned();
        let http_config = config.http.clone();
        AbortOnDrop(tokio::spawn(
            async move { http::serve(http_listener, router, &http_config, http_tls, stopped).await },
        ))
    });
    let stop = shared.stop.clone();
    let signal = async {
        shutdown.await;
        info!("shutdown: ending live streams, draining requests");
        // Load balancers and probes see the server going before it is gone.
        health_reporter.set_not_serving::<DispatchServer<DispatchService>>().await;
        health_reporter.set_not_serving::<UnitTerminalServer<TerminalService>>().await;
        health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        stop.cancel();
        shared.bus.terminals.close_all();
    };
    // Long-lived streams must not keep a connection's HTTP/2 stream limit busy
    // forever: keepalive finds dead peers.
    let served = grpc_builder(&config)?
        .max_concurrent_streams(Some(server.max_concurrent_streams))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(grpc_outcome::OutcomeLayer::new(
            shared.metrics.clone(),
            Duration::from_millis(server.request_timeout_ms),
        ))
        .add_service(health)
        .add_service(reflection)
        .add_service(dispatch)
        .add_service(terminal)
        .serve_with_incoming_shutdown(incoming_nodelay(listener), signal)
        .await;
    // Whatever ended serving (a signal, or an error), what was accepted is
    // delivered and stored before returning.
    // The gateway drains too (its event streams ended with `stop`).
    if let Some(gateway) = gateway.as_mut() {
        let _ = (&mut gateway.0).await;
    }
    // Requests are drained; stop the timers, then flush and close the journal.
    drop(_timers);
    // Deliver what is queued (bounded by webhooks.shutdown_flush_ms); the rest
    // is dead-lettered to the file, for replay after the restart.
    webhooks.shutdown().await;
    if let Some(journal) = journal {
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
    }
    served?;
    info!("lastmile stopped");
    Ok(())
}
