//! The client-facing error: a machine code that knows its HTTP status, and a description
//! that tells a person what to fix.
//!
//! Services turn an [`Error`] into a `tonic::Status` with `wire::status`; the gateway turns
//! a `Status` back with `wire::status::FromStatus`, so both hops keep the exact code.

use serde::Serialize;

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

    /// The HTTP status of this code, as a number (the gateway makes it an
    /// `http::StatusCode`; the gRPC code is chosen at the service edge, in `wire::status`).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_from_its_machine_code() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn http_statuses_are_client_or_server_errors() {
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
        assert_eq!(ErrorCode::Internal.http_status(), 500);
    }
}
