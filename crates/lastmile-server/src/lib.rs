//! The lastmile gRPC server: tonic services over the dispatch core.
//!
//! # Layout
//!
//! - [`config`]: the configuration file (embedded default or `--config`),
//!   validated once, and the dataset it names.
//! - [`convert`]: proto <-> core; every request field is checked here.
//! - [`error`]: the one domain-error -> gRPC-code table.
//! - [`service`]: the `lastmile.v1.Dispatch` service.
//! - [`run`]: serves Dispatch, `grpc.health.v1` and server reflection on a
//!   listener until a shutdown future resolves.
//!
//! No dispatch logic lives here: that is `lastmile-core`'s.

pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lastmile_core::Dispatcher;
use lastmile_proto::v1::dispatch_server::DispatchServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

pub use config::LastmileConfig;
use service::DispatchService;

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

/// Serves on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish. (Bounding that drain is the caller's: see
/// `server.shutdown_grace_ms` and the binary.)
pub async fn run(
    listener: TcpListener,
    config: Arc<LastmileConfig>,
    dispatcher: Arc<Dispatcher>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let server = &config.server;
    let dispatch = DispatchServer::new(DispatchService::new(dispatcher.clone(), config.clone()))
        .max_decoding_message_size(server.max_decoding_message_bytes)
        .max_encoding_message_size(server.max_encoding_message_bytes);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<DispatchServer<DispatchService>>().await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lastmile_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let local = listener.local_addr().ok();
    info!(
        addr = ?local,
        units = dispatcher.unit_count(),
        config = %config.source,
        "lastmile serving lastmile.v1.Dispatch, grpc.health.v1, reflection"
    );
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(server.max_concurrent_streams))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection)
        .timeout(Duration::from_millis(server.request_timeout_ms))
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        .add_service(dispatch)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    info!("lastmile stopped");
    Ok(())
}
