//! Request body extraction with the API's own errors: JSON bodies need
//! `content-type: application/json`, malformed JSON and wrong field types are 400s that name
//! the field, and bodies over the limit are 413s.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use domain::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// A JSON body. An empty body reads as `{}`, so a field-by-field error says what is missing.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        let limit = state.config.max_json_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the request body is larger than {limit} bytes"),
                )
            })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else if is_json {
            bytes
        } else {
            return Err(Error::bad_request(
                "request bodies must be JSON sent with `content-type: application/json`",
            )
            .into());
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() || path == "." {
                Error::bad_request(format!("malformed JSON body: {inner}"))
            } else {
                Error::bad_request(format!("invalid field `{path}`: {inner}"))
            }
        })?;
        de.end()
            .map_err(|e| Error::bad_request(format!("malformed JSON body: {e}")))?;
        Ok(JsonBody(value))
    }
}
