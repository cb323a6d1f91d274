//! The `Idempotency-Key` header of message posts: reading and checking the key, and the
//! fingerprint of a request that the conversations service stores with it, so a retry with
//! the same key and the same request gets the first response back, and the same key with
//! another request is refused.

use axum::http::HeaderMap;
use domain::Error;
use sha2::{Digest as _, Sha256};

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";

/// The longest key accepted.
const MAX_LEN: usize = 255;

/// The `Idempotency-Key` of a request, if it sent one: 1 to 255 visible ASCII characters.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        Error::bad_request(format!(
            "Idempotency-Key must be one header of 1 to {MAX_LEN} visible ASCII characters, \
             such as a UUID"
        ))
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty() || key.len() > MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

/// The hex SHA-256 fingerprint of a request made of `parts` (each length-prefixed, so
/// moving bytes from one part to the next changes it).
pub(crate) fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HEADER, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert_eq!(key(&headers(&[])).unwrap(), None);
        assert_eq!(
            key(&headers(&["3f1c-a9"])).unwrap().as_deref(),
            Some("3f1c-a9")
        );
        assert!(key(&headers(&["a b"])).is_err());
        assert!(key(&headers(&[&"k".repeat(256)])).is_err());
        assert!(key(&headers(&["a", "b"])).is_err());
    }

    #[test]
    fn fingerprints_separate_parts() {
        let ab: [&[u8]; 2] = [b"ab", b"c"];
        let a_bc: [&[u8]; 2] = [b"a", b"bc"];
        assert_ne!(fingerprint(ab), fingerprint(a_bc));
        assert_eq!(fingerprint(ab), fingerprint(ab));
    }
}
