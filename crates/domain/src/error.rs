//! The client-facing error: a machine code that knows its HTTP status and gRPC code,
//! and a description that tells a person what to fix.
//!
//! Services turn an [`Error`] into a `tonic::Status` with [`Error::to_status`]; the gateway
//! turns a `Status` back with [`Error::from_status`], so both hops keep the exact code.

use http::StatusCode;
use serde::Serialize;

/// Metadata key that carries the machine code across gRPC.
pub const CODE_METADATA_KEY: &str = "smooch-error-code";

/// Result with the domain [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kinds of failure a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed header or body, or a value that breaks a rule.
    BadRequest,
    /// Credentials missing or invalid.
    Unauthorized,
    /// Valid credentials without access to the resource.
    Forbidden,
    /// The resource does not exist (in this app).
    NotFound,
    /// The HTTP method is not supported on this path.
    MethodNotAllowed,
    /// The resource already exists.
    Conflict,
    /// The client did not send its request (body) within the gateway's deadline.
    RequestTimeout,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The body's content type is not one the endpoint accepts.
    UnsupportedMediaType,
    /// The caller sent too many requests.
    TooManyRequests,
    /// Something broke on our side; the cause is logged, never shown.
    Internal,
    /// A dependency is down; retrying later may succeed.
    Unavailable,
}

impl ErrorCode {
    /// Every code, for round-trip checks.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyRequests,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The machine code in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal_error",
            ErrorCode::Unavailable => "service_unavailable",
        }
    }

    /// Parses a machine code.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status of this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC code of this code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::MethodNotAllowed => tonic::Code::InvalidArgument,
            ErrorCode::Unauthorized => tonic::Code::Unauthenticated,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
            ErrorCode::PayloadTooLarge => tonic::Code::OutOfRange,
            ErrorCode::TooManyRequests => tonic::Code::ResourceExhausted,
            ErrorCode::Internal => tonic::Code::Internal,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
        }
    }

    /// The code for a gRPC status that carries no machine code of ours (a transport failure,
    /// say).
    pub fn from_grpc_code(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => ErrorCode::BadRequest,
            tonic::Code::Unauthenticated => ErrorCode::Unauthorized,
            tonic::Code::PermissionDenied => ErrorCode::Forbidden,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::AlreadyExists => ErrorCode::Conflict,
            tonic::Code::OutOfRange => ErrorCode::PayloadTooLarge,
            tonic::Code::ResourceExhausted => ErrorCode::TooManyRequests,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        }
    }
}

/// A client-facing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {description}")]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What a person should fix.
    pub description: String,
}

impl Error {
    /// An error of `code` with `description`.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Error {
            code,
            description: description.into(),
        }
    }

    /// 400 with `description`.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadRequest, description)
    }

    /// 401 with `description`.
    pub fn unauthorized(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unauthorized, description)
    }

    /// 403 with `description`.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::Forbidden, description)
    }

    /// 404 with `description`.
    pub fn not_found(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::NotFound, description)
    }

    /// 409 with `description`.
    pub fn conflict(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::Conflict, description)
    }

    /// The opaque 500: the cause is logged where it happened, never shown.
    pub fn internal() -> Self {
        Error::new(
            ErrorCode::Internal,
            "An unexpected error occurred; it has been logged.",
        )
    }

    /// 503 with `description`.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unavailable, description)
    }

    /// The gRPC status carrying this error, code included.
    pub fn to_status(&self) -> tonic::Status {
        let mut status = tonic::Status::new(self.code.grpc_code(), self.description.clone());
        status.metadata_mut().insert(
            CODE_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(self.code.as_str()),
        );
        status
    }

    /// The error a gRPC status stands for. Statuses without our machine code (transport
    /// failures, a peer that is down) keep their description only when it is safe to show.
    pub fn from_status(status: &tonic::Status) -> Self {
        let ours = status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::parse);
        let unavailable = || Error::unavailable("A backing service is unavailable; retry later.");
        match ours {
            Some(code) => Error::new(code, status.message()),
            // A status with an underlying error and none of our codes was made by the transport,
            // not by a service: the call was cut off (the service died or is shutting down and
            // reset the stream). Whatever its code (Unknown, Internal for an h2 reset, ...),
            // the service may answer a retry in a moment.
            None if std::error::Error::source(status).is_some() => unavailable(),
            None => match ErrorCode::from_grpc_code(status.code()) {
                ErrorCode::Unavailable => unavailable(),
                _ => Error::internal(),
            },
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        err.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_a_grpc_round_trip() {
        for code in ErrorCode::ALL {
            let err = Error::new(code, "why");
            let back = Error::from_status(&err.to_status());
            assert_eq!(back, err);
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn calls_cut_off_in_transport_are_unavailable_whatever_their_code() {
        for code in [tonic::Code::Internal, tonic::Code::Unknown] {
            let mut status = tonic::Status::new(code, "h2 protocol error: http2 error");
            status.set_source(std::sync::Arc::new(std::io::Error::other("stream reset")));
            assert_eq!(Error::from_status(&status).code, ErrorCode::Unavailable);
        }
    }

    #[test]
    fn foreign_statuses_do_not_leak_their_message() {
        let back = Error::from_status(&tonic::Status::internal("db password is hunter2"));
        assert_eq!(back.code, ErrorCode::Internal);
        assert!(!back.description.contains("hunter2"));
        let down = Error::from_status(&tonic::Status::unavailable("tcp connect error"));
        assert_eq!(down.code, ErrorCode::Unavailable);
    }
}
