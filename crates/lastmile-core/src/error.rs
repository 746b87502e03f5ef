//! Domain errors. Each variant maps to exactly one gRPC code in the server's
//! error table. Expected outcomes (a tier nobody can reach in time) are data in
//! the incident, never errors.

use crate::unit::TransitionError;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DispatchError {
    /// A request field is unusable; `field` is its path in the request.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("incident {0:?} not found")]
    IncidentNotFound(String),
    #[error("unit {0:?} not found")]
    UnitNotFound(String),
    /// The unit state machine refused the change (carries the current state).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The request conflicts with the current state in another way.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A named bound was hit.
    #[error("{what} is full ({limit_name} = {limit})")]
    CapacityExhausted { what: &'static str, limit_name: &'static str, limit: usize },
    /// Lost a race with a concurrent change too many times; safe to retry.
    #[error("{0}; retry")]
    Contended(String),
}

impl DispatchError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        DispatchError::InvalidArgument { field: field.into(), reason: reason.to_string() }
    }
}
