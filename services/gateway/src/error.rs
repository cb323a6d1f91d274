//! The one place where errors become HTTP responses: `{"error": {"code", "description"}}`
//! with the status the code stands for.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
        let err = domain::Error::from_status(&status);
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
