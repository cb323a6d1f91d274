//! Request extraction with the API's own errors: JSON bodies need
//! `content-type: application/json`, malformed JSON and wrong field types are 400s that name
//! the field, bodies over the limit are 413s, and path parameters that are not UTF-8 are 400s
//! in the error shape (axum's own rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use domain::{Error, ErrorCode};
use http::request::Parts;
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
        if has_nul(&bytes)? {
            return Err(
                Error::bad_request("strings must not contain NUL (\\u0000) characters").into(),
            );
        }
        Ok(JsonBody(value))
    }
}

/// Whether a (valid) JSON document holds a NUL character in any string, keys included.
/// Nothing downstream stores one (Postgres text cannot), so it is refused at the door.
fn has_nul(bytes: &[u8]) -> Result<bool, ApiError> {
    // A NUL can only be written as an escape; most bodies have no `\u0000` text at all.
    let maybe = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].eq_ignore_ascii_case(b"0000"));
    if !maybe {
        return Ok(false);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_request(format!("malformed JSON body: {e}")))?;
    Ok(value_has_nul(&value))
}

fn value_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(value_has_nul),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains('\0') || value_has_nul(v)),
        _ => false,
    }
}

/// Path parameters. Parameters that are not UTF-8 once percent-decoded are 400s; a
/// parameter with a NUL character names nothing that can exist, so it is a 404.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::bad_request(format!("malformed path: {}", e.body_text())))?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(Error::not_found(format!("no resource has that {name}")).into());
        }
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::bad_request(format!("malformed path: {}", e.body_text())))?;
        Ok(Path(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_in_strings_and_keys_only() {
        assert!(!has_nul(br#"{"text": "hi"}"#).unwrap());
        assert!(has_nul(br#"{"text": "a\u0000b"}"#).unwrap());
        assert!(has_nul(br#"{"m": {"k\u0000": 1}}"#).unwrap());
        // An escaped backslash followed by `u0000` is text, not a NUL.
        assert!(!has_nul(br#"{"text": "\\u0000"}"#).unwrap());
    }
}
