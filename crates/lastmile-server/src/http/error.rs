//! The gateway's refusals: an application error at the status its code's
//! row gives ([`crate::error::ErrorCode::row`]: the one table), and the
//! gateway's own (a malformed body or query, an unknown route) with the
//! code that says what they mean; every one with the same JSON body
//! `{"error": {"code", "message"}}`.
//!
//! A few statuses are the gateway's own, not the table's, because HTTP has
//! a more precise word for them: 413 for a body over `http.max_body_bytes`
//! (RESOURCE_EXHAUSTED), 415 for a body that is not JSON
//! (INVALID_ARGUMENT), 408 for a body not received in time
//! (DEADLINE_EXCEEDED), 405 for a wrong method (UNIMPLEMENTED).

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, ErrorCode};
use crate::json::{ErrorBody, ErrorDetail};

/// A refusal, as the gateway answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The meaning, shared with gRPC callers.
    pub code: ErrorCode,
    pub message: String,
    /// `Retry-After`, seconds (every 429 carries one: 1 unless the error says).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_s: None }
    }

    /// A malformed request (body, query, header): 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }
}

/// Every code name, for `openapi.json`'s enum (checked by the e2e test):
/// `OK` and the table's, in gRPC number order.
pub fn code_names() -> Vec<&'static str> {
    std::iter::once("OK").chain(ErrorCode::ALL.iter().map(|c| c.name())).collect()
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code: error.code, message: error.message, retry_after_s: error.retry_after_s }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        match self.status {
            // RFC 6750: tell the client which scheme to use.
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // A bound that clears by itself (a token's rate refills within a
            // second or so).
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                let seconds = match (self.status, self.retry_after_s) {
                    (_, Some(s)) => Some(s),
                    (StatusCode::TOO_MANY_REQUESTS, None) => Some(1),
                    _ => None,
                };
                if let Some(seconds) = seconds {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.name(), message: self.message.clone() } }
    }
}

/// The body was larger than `http.max_body_bytes`: 413, with the meaning
/// gRPC gives a message over `server.max_decoding_message_bytes`
/// (RESOURCE_EXHAUSTED).
pub fn body_too_large(max_body_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ResourceExhausted,
        format!("request body: larger than {max_body_bytes} bytes (http.max_body_bytes)"),
    )
}

/// A body that could not be read (too large, or the connection failed).
pub fn from_bytes_rejection(rejection: BytesRejection, max_body_bytes: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large(max_body_bytes)
    } else {
        ApiError::invalid(format!("request body: {}", rejection.body_text()))
    }
}

/// Malformed JSON or JSON of the wrong shape: 400, naming where (serde's
/// path, e.g. `location.lat: invalid type: string "x", expected f64`).
pub fn from_json_rejection(rejection: JsonRejection) -> ApiError {
    // The inner error's text is "path: problem at line L column C"; axum's
    // own text only prefixes it with a generic sentence.
    let detail =
        std::error::Error::source(&rejection).map(ToString::to_string).unwrap_or_else(|| rejection.body_text());
    match rejection {
        JsonRejection::JsonSyntaxError(_) => ApiError::invalid(format!("malformed JSON: {detail}")),
        _ => ApiError::invalid(detail),
    }
}

pub fn from_query_rejection(rejection: QueryRejection) -> ApiError {
    let detail =
        std::error::Error::source(&rejection).map(ToString::to_string).unwrap_or_else(|| rejection.body_text());
    ApiError::invalid(format!("query string: {detail}"))
}

pub fn from_path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::invalid(format!("path: {}", rejection.body_text()))
}
