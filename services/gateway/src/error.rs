//! The one place where errors become HTTP responses: `{"error": {"code", "description"}}`
//! with the status the code stands for.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use wire::FromStatus;

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
        // Calls cut off in transport become UNAVAILABLE there too (wire::FromStatus).
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

impl From<wire::model::BadJson> for ApiError {
    /// JSON a service answered that does not parse is a bug or a corrupt stored value:
    /// logged with its field, answered as the opaque 500.
    fn from(err: wire::model::BadJson) -> Self {
        tracing::error!(error = %err, "a service answered JSON that does not parse");
        ApiError(domain::Error::internal())
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// The machine code and the human description of an error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Machine code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `request_timeout`, `payload_too_large`,
    /// `unsupported_media_type`, `too_many_requests`, `internal_error` or
    /// `service_unavailable`.
    #[schema(example = "bad_request")]
    pub(crate) code: String,
    /// What a person should fix.
    #[schema(example = "text is required")]
    pub(crate) description: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = http::StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code.as_str().to_owned(),
                description: self.0.description,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// Result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::ApiError;
    use domain::ErrorCode;
    use wire::ToStatus;

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

    #[test]
    fn json_a_service_answered_that_does_not_parse_is_the_opaque_500() {
        let bad = wire::model::object_from_json("app_user.properties_json", "{oops").unwrap_err();
        let err = ApiError::from(bad).0;
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(!err.description.contains("oops"));
    }
}
