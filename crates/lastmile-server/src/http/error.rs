//! The gateway's one error table: a gRPC code -> an HTTP status, and every
//! refusal (the service's `Status`, a malformed body or query, an unknown
//! route) -> the same JSON body `{"error": {"code", "message"}}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;

use super::json::{ErrorBody, ErrorDetail};

/// A refusal, as the gateway answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The gRPC code's name: the meaning, shared with gRPC callers.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        ApiError { status, code: code_name(code), message: message.into() }
    }

    /// A malformed request (body, query, header): 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }
}

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // 499 "client closed request" (nginx): what gRPC's CANCELLED means.
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Every code name, for `openapi.json`'s enum (checked by the e2e test).
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        ApiError::new(http_status(status.code()), status.code(), status.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        match self.status {
            // RFC 6750: tell the client which scheme to use.
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // A token over its rate: the bucket refills within a second or so.
            StatusCode::TOO_MANY_REQUESTS => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code, message: self.message.clone() } }
    }
}

/// The body was larger than `http.max_body_bytes`: 413, with the meaning
/// gRPC gives a message over `server.max_decoding_message_bytes`
/// (RESOURCE_EXHAUSTED).
pub fn body_too_large(max_body_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::ResourceExhausted,
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
