//! The one place where errors become HTTP responses: `{"error": {"code", "description"}}`
//! with the status the code stands for.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::error::Error as _;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError(pub domain::Error);

impl From<domain::Error> for ApiError {
    fn from(err: domain::Error) -> Self {
        ApiError(err)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        // A call cut off in transport (the service died mid-call) carries no code of the
        // service's: the service may be back in a moment, so it is UNAVAILABLE, not INTERNAL.
        let err = if status.code() == tonic::Code::Unknown && status.source().is_some() {
            domain::Error::unavailable("A backing service is unavailable; retry later.")
        } else {
            domain::Error::from_status(&status)
        };
        if matches!(
            err.code,
            domain::ErrorCode::Internal | domain::ErrorCode::Unavailable
        ) {
            tracing::error!(code = ?status.code(), message = %status.message(), "backing service call failed");
        }
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.code.http_status();
        let body = json!({
            "error": {"code": self.0.code.as_str(), "description": self.0.description}
        });
        (status, Json(body)).into_response()
    }
}

/// Result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::ApiError;
    use domain::ErrorCode;

    #[test]
    fn a_call_cut_off_in_transport_is_unavailable() {
        let cut = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let status = tonic::Status::from_error(Box::new(cut));
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(ApiError::from(status).0.code, ErrorCode::Unavailable);
    }

    #[test]
    fn a_service_answer_keeps_its_code() {
        let status = tonic::Status::unknown("the service said so");
        assert_eq!(ApiError::from(status).0.code, ErrorCode::Internal);
        let status = domain::Error::not_found("no such user").to_status();
        assert_eq!(ApiError::from(status).0.code, ErrorCode::NotFound);
    }
}
