//! The one table from domain errors to gRPC status codes.

use lastmile_core::DispatchError;
use tonic::{Code, Status};

/// Every domain error maps to exactly one code; the message is the error's own
/// (lowercase, naming the field or the current state).
pub fn to_status(error: DispatchError) -> Status {
    let code = match &error {
        DispatchError::InvalidArgument { .. } => Code::InvalidArgument,
        DispatchError::IncidentNotFound(_) | DispatchError::UnitNotFound(_) => Code::NotFound,
        DispatchError::Transition(_) | DispatchError::FailedPrecondition(_) => Code::FailedPrecondition,
        DispatchError::CapacityExhausted { .. } => Code::ResourceExhausted,
        DispatchError::Contended(_) => Code::Aborted,
    };
    Status::new(code, error.to_string())
}

/// INVALID_ARGUMENT naming the request field.
pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Status {
    to_status(DispatchError::invalid(field, reason))
}
