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
//! - [`run`]: serves all of it, `grpc.health.v1` and server reflection on a
//!   listener until a shutdown future resolves.
//!
//! No dispatch logic lives here: that is `lastmile-core`'s.

pub mod bus;
pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod service;
pub mod terminal;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lastmile_core::Dispatcher;
use lastmile_proto::v1::dispatch_server::DispatchServer;
use lastmile_proto::v1::unit_terminal_server::UnitTerminalServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
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
}

/// Accepted connections with Nagle's algorithm off: a small response must not
/// wait for the peer's delayed ACK (~40 ms per request otherwise). The
/// builder's own `tcp_nodelay` applies only to listeners tonic binds itself.
fn incoming_nodelay(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
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
    let (bus, armed) = bus::Bus::new(config.clone());
    let shared = Arc::new(Shared {
        dispatcher: dispatcher.clone(),
        bus: bus.clone(),
        clock: clock::Clock::start(),
        config: config.clone(),
        stop: CancellationToken::new(),
    });
    let _timers = AbortOnDrop(tokio::spawn(bus::run_timers(
        dispatcher.clone(),
        bus.clone(),
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
    let stop = shared.stop.clone();
    let signal = async {
        shutdown.await;
        info!("shutdown: ending live streams, draining requests");
        stop.cancel();
        shared.bus.terminals.close_all();
    };
    // Long-lived streams must not keep a connection's HTTP/2 stream limit busy
    // forever: keepalive finds dead peers.
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(server.max_concurrent_streams))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection)
        .timeout(Duration::from_millis(server.request_timeout_ms))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection)
        .add_service(dispatch)
        .add_service(terminal)
        .serve_with_incoming_shutdown(incoming_nodelay(listener), signal)
        .await?;
    info!("lastmile stopped");
    Ok(())
}
