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
