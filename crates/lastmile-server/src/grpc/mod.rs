//! The gRPC adapter: `lastmile.v1.Dispatch` and `lastmile.v1.UnitTerminal`
//! over the application layer.
//!
//! Each handler authenticates the caller from its `authorization` metadata,
//! decodes the request ([`crate::wire`]), calls the one application
//! operation, and encodes the answer; an [`AppError`] becomes a
//! `tonic::Status` by its code's gRPC number (the table is
//! [`crate::error::ErrorCode::row`]). Nothing of dispatch is decided here.
//!
//! - [`dispatch`]: the `Dispatch` service.
//! - [`terminal`]: the `UnitTerminal` service.
//! - [`outcome`]: the tower layer around both (request timeout, error
//!   counts, oversized messages).

pub mod dispatch;
pub mod outcome;
pub mod terminal;

use tonic::{Code, Status};

use crate::app::{App, AppError, Caller};

pub use dispatch::DispatchService;
pub use terminal::TerminalService;

/// The status for an application error: same code, same message; a retry
/// hint as `retry-after` (seconds, like HTTP's header) and
/// `grpc-retry-pushback-ms` (what gRPC retry policies read).
pub fn status(error: AppError) -> Status {
    let mut status = Status::new(Code::from_i32(error.code.grpc_code()), error.message);
    if let Some(seconds) = error.retry_after_s {
        let metadata = status.metadata_mut();
        metadata.insert("retry-after", seconds.into());
        metadata.insert("grpc-retry-pushback-ms", (u64::from(seconds) * 1000).into());
    }
    status
}

/// Who sent `request`.
fn caller<T>(app: &App, request: &tonic::Request<T>) -> Result<Caller, Status> {
    app.authenticate(request.metadata().get("authorization").map(|v| v.as_bytes())).map_err(status)
}

/// Stands in for service `S` while the server is not ready (recovering, or
/// catching up on overdue timers): every call is answered UNAVAILABLE with
/// a retry hint, not UNIMPLEMENTED, so a client retries instead of giving up.
pub struct NotReady<S> {
    refusal: Refusal,
    _service: std::marker::PhantomData<fn() -> S>,
}

/// What a service that is not ready answers (made at each call, so it can
/// name a leader that changes).
pub type Refusal = std::sync::Arc<dyn Fn() -> Status + Send + Sync>;

/// The refusal while starting: recovering the journal, firing overdue timers.
pub fn starting() -> Refusal {
    std::sync::Arc::new(|| {
        status(
            AppError::unavailable("starting: recovering the journal and firing overdue timers; retry shortly")
                .with_retry_after_s(1),
        )
    })
}

impl<S> NotReady<S> {
    /// Starting ([`starting`]).
    pub fn new() -> Self {
        NotReady::with(starting())
    }

    /// Answering every call with what `refusal` makes.
    pub fn with(refusal: Refusal) -> Self {
        NotReady { refusal, _service: std::marker::PhantomData }
    }
}

impl<S> Default for NotReady<S> {
    fn default() -> Self {
        NotReady::new()
    }
}

impl<S> Clone for NotReady<S> {
    fn clone(&self) -> Self {
        NotReady::with(self.refusal.clone())
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for NotReady<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for NotReady<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok((self.refusal)().into_http()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service;

    #[tokio::test]
    async fn a_call_before_ready_is_unavailable_with_a_retry_hint() {
        use lastmile_proto::v1::dispatch_server::DispatchServer;
        assert_eq!(
            <NotReady<DispatchServer<DispatchService>> as tonic::server::NamedService>::NAME,
            "lastmile.v1.Dispatch"
        );
        let mut svc = NotReady::<DispatchServer<DispatchService>>::new();
        let request = http::Request::post("/lastmile.v1.Dispatch/ReportIncident").body(()).unwrap();
        let response = svc.call(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(headers.get("grpc-status").unwrap(), "14", "UNAVAILABLE");
        assert_eq!(headers.get("retry-after").unwrap(), "1");
        assert!(headers.get("grpc-message").unwrap().to_str().unwrap().contains("retry"));
    }
}
