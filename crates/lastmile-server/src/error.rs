//! The one error of the application layer, and the one table that gives each
//! of its codes both its gRPC code and its HTTP status.
//!
//! Every operation of [`crate::app`] answers `Result<_, AppError>`. The gRPC
//! adapter turns an [`AppError`] into a `tonic::Status` with
//! [`ErrorCode::grpc_code`], the HTTP adapter into a status line with
//! [`ErrorCode::http_status`]; neither maps from the other. The message is
//! the same text on both (lowercase, naming the request field or the bound).
//!
//! This module knows no transport: a gRPC code is its number from the gRPC
//! specification (`google.rpc.Code`), which the adapter hands to tonic.

use lastmile_core::DispatchError;

/// What kind of refusal it is: the meaning shared by every transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRow {
    /// The canonical name (`INVALID_ARGUMENT`), in HTTP error bodies too.
    pub name: &'static str,
    /// The gRPC status code number.
    pub grpc: i32,
    /// The HTTP status.
    pub http: u16,
}

impl ErrorCode {
    /// Every code, in gRPC number order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::Cancelled,
        ErrorCode::Unknown,
        ErrorCode::InvalidArgument,
        ErrorCode::DeadlineExceeded,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::PermissionDenied,
        ErrorCode::ResourceExhausted,
        ErrorCode::FailedPrecondition,
        ErrorCode::Aborted,
        ErrorCode::OutOfRange,
        ErrorCode::Unimplemented,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::DataLoss,
        ErrorCode::Unauthenticated,
    ];

    /// The table: name, gRPC code, HTTP status.
    pub const fn row(self) -> CodeRow {
        let (name, grpc, http) = match self {
            // 499 "client closed request" (nginx): what gRPC's CANCELLED means.
            ErrorCode::Cancelled => ("CANCELLED", 1, 499),
            ErrorCode::Unknown => ("UNKNOWN", 2, 500),
            ErrorCode::InvalidArgument => ("INVALID_ARGUMENT", 3, 400),
            ErrorCode::DeadlineExceeded => ("DEADLINE_EXCEEDED", 4, 504),
            ErrorCode::NotFound => ("NOT_FOUND", 5, 404),
            ErrorCode::AlreadyExists => ("ALREADY_EXISTS", 6, 409),
            ErrorCode::PermissionDenied => ("PERMISSION_DENIED", 7, 403),
            ErrorCode::ResourceExhausted => ("RESOURCE_EXHAUSTED", 8, 429),
            ErrorCode::FailedPrecondition => ("FAILED_PRECONDITION", 9, 409),
            ErrorCode::Aborted => ("ABORTED", 10, 409),
            ErrorCode::OutOfRange => ("OUT_OF_RANGE", 11, 400),
            ErrorCode::Unimplemented => ("UNIMPLEMENTED", 12, 501),
            ErrorCode::Internal => ("INTERNAL", 13, 500),
            ErrorCode::Unavailable => ("UNAVAILABLE", 14, 503),
            ErrorCode::DataLoss => ("DATA_LOSS", 15, 500),
            ErrorCode::Unauthenticated => ("UNAUTHENTICATED", 16, 401),
        };
        CodeRow { name, grpc, http }
    }

    pub const fn name(self) -> &'static str {
        self.row().name
    }

    pub const fn grpc_code(self) -> i32 {
        self.row().grpc
    }

    pub const fn http_status(self) -> u16 {
        self.row().http
    }

    /// The code with this gRPC number (`None` for 0, OK, and unknown numbers).
    pub fn from_grpc_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.grpc_code() == code)
    }
}

/// A refusal: its code, a message naming what was wrong, and (for a bound
/// that clears by itself) how long to wait before retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds after which a retry may succeed; the HTTP adapter sends it
    /// as `Retry-After`.
    pub retry_after_s: Option<u32>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError { code, message: message.into(), retry_after_s: None }
    }

    /// INVALID_ARGUMENT naming the request field (`field: reason`).
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        DispatchError::invalid(field, reason).into()
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Unavailable, message)
    }

    pub fn exhausted(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::ResourceExhausted, message)
    }

    pub fn with_retry_after_s(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

/// How long a caller refused for a full table (`limits.max_incidents`,
/// `max_units`) is told to wait: places free up as incidents close, not at
/// once.
pub const CAPACITY_RETRY_AFTER_S: u32 = 5;

/// Every domain error maps to exactly one code; the message is the error's
/// own. A full table carries a retry hint.
impl From<DispatchError> for AppError {
    fn from(error: DispatchError) -> Self {
        if matches!(error, DispatchError::CapacityExhausted { .. }) {
            return AppError::new(ErrorCode::ResourceExhausted, error.to_string())
                .with_retry_after_s(CAPACITY_RETRY_AFTER_S);
        }
        let code = match &error {
            DispatchError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            DispatchError::IncidentNotFound(_) | DispatchError::UnitNotFound(_) => ErrorCode::NotFound,
            DispatchError::Transition(_) | DispatchError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            DispatchError::CapacityExhausted { .. } => ErrorCode::ResourceExhausted,
            DispatchError::Contended(_) => ErrorCode::Aborted,
        };
        AppError::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_says_when_to_retry() {
        let full = DispatchError::CapacityExhausted { what: "incident table", limit_name: "max_incidents", limit: 2 };
        let e = AppError::from(full);
        assert_eq!((e.code, e.retry_after_s), (ErrorCode::ResourceExhausted, Some(CAPACITY_RETRY_AFTER_S)));
        assert_eq!(AppError::from(DispatchError::IncidentNotFound("x".into())).retry_after_s, None);
    }

    #[test]
    fn every_code_has_one_row_and_grpc_numbers_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_grpc_code(code.grpc_code()), Some(code));
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
        assert_eq!(ErrorCode::from_grpc_code(0), None);
        let numbers: std::collections::HashSet<_> = ErrorCode::ALL.iter().map(|c| c.grpc_code()).collect();
        assert_eq!(numbers.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn domain_errors_keep_their_message() {
        let e = AppError::from(DispatchError::invalid("severity", "must be 1 (minor) to 4 (major), got 9"));
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, "severity: must be 1 (minor) to 4 (major), got 9");
        assert_eq!(AppError::from(DispatchError::UnitNotFound("X".into())).code.http_status(), 404);
    }
}
