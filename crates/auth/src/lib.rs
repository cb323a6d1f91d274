//! Credential verification for the gateway: reading the `app-token` header or a bearer
//! JWT, checking the JWT against the key named by its `kid`, and deciding the caller's
//! scope; the credential cache in front of the users service ([`cache`]), the revocations
//! that keep it correct across replicas ([`revocation`]), the Redis-kept rate limits
//! ([`ratelimit`]), and the Redis-kept real-time records: who watches a conversation
//! ([`presence`]) and which apps have real-time clients ([`audience`]).

pub mod audience;
pub mod cache;
pub mod error;
pub mod presence;
pub mod ratelimit;
pub mod redis_client;
pub mod revocation;

pub use audience::Audience;
pub use cache::{CacheConfig, CredentialCache, CredentialSource, Follower};
pub use error::{Error as RedisError, Result as RedisResult};
pub use presence::Presence;
pub use ratelimit::{Bucket, Decision, Limit, RateLimiter};
pub use redis_client::{RedisClient, RedisConfig};
pub use revocation::{AppUserChange, Revocation, Revoker};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use domain::{AppId, Error, UserId};

/// Credentials presented by a request, before verification. Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The `app-token` header.
    AppToken(String),
    /// A bearer JWT with the key id from its header.
    Jwt {
        /// The whole token.
        token: String,
        /// The `kid` of its header.
        kid: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::AppToken(_) => f.write_str("AppToken(<redacted>)"),
            Credential::Jwt { kid, .. } => f
                .debug_struct("Jwt")
                .field("kid", kid)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A key as stored: what a JWT's `kid` resolves to. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id (`kid`).
    pub id: String,
    /// The app the key belongs to; `None` for the operator's account keys.
    pub app_id: Option<String>,
    /// The shared secret JWTs are signed with.
    pub secret: String,
}

impl std::fmt::Debug for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInfo")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Who is calling, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An app token: acts for the app's users, not as the app maker.
    AppToken {
        /// The app.
        app_id: AppId,
    },
    /// A JWT with `app` scope: everything within the app.
    App {
        /// The app.
        app_id: AppId,
        /// The key that signed the token.
        key_id: String,
    },
    /// A JWT with `appUser` scope: one user's own resources.
    AppUser {
        /// The app.
        app_id: AppId,
        /// The key that signed the token.
        key_id: String,
        /// The user the token is for: the API consumer's `userId`, not an app user `_id`.
        user_id: UserId,
    },
    /// A JWT with `account` scope: the operator's `/v1/apps` API.
    Account {
        /// The key that signed the token.
        key_id: String,
    },
}

impl Principal {
    /// The app the principal acts in; `None` for account scope.
    pub fn app_id(&self) -> Option<&AppId> {
        match self {
            Principal::AppToken { app_id }
            | Principal::App { app_id, .. }
            | Principal::AppUser { app_id, .. } => Some(app_id),
            Principal::Account { .. } => None,
        }
    }
}

/// The longest app token looked up. Ours are far shorter; a longer one cannot exist, so it
/// is refused before it reaches the cache or the users service.
pub const MAX_APP_TOKEN_LEN: usize = 256;
/// The longest JWT read (8 KiB, a common header line limit).
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// The longest `kid` looked up. Key ids are 24 hex characters (or an operator's account key
/// id); anything much longer names no key.
pub const MAX_KID_LEN: usize = 128;

/// Whether `s` could be a credential or key id we issue: not empty, not too long, printable
/// ASCII only (no control characters, NULs or spaces that a storage lookup could choke on).
fn plausible(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads the credentials of a request from its `app-token` and `authorization` headers.
/// `Ok(None)` when there are none; a malformed header is a 401 saying what is wrong.
/// Values no credential of ours can have (too long, control characters) are 401s here,
/// so they never reach a lookup.
pub fn read_credential(
    app_token: Option<&[u8]>,
    authorization: Option<&[u8]>,
) -> Result<Option<Credential>, Error> {
    if let Some(raw) = authorization {
        let value = std::str::from_utf8(raw)
            .map_err(|_| Error::unauthorized("authorization header is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::unauthorized("authorization header must be `Bearer <jwt>`"))?;
        if !plausible(token, MAX_JWT_LEN) {
            return Err(Error::unauthorized(format!(
                "invalid JWT: a token is at most {MAX_JWT_LEN} characters of base64url and dots"
            )));
        }
        let kid = jwt_kid(token)?;
        return Ok(Some(Credential::Jwt {
            token: token.to_owned(),
            kid,
        }));
    }
    if let Some(raw) = app_token {
        let token = std::str::from_utf8(raw)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::unauthorized("app-token header is empty or not valid text"))?;
        if !plausible(token, MAX_APP_TOKEN_LEN) {
            return Err(Error::unauthorized("invalid app token"));
        }
        return Ok(Some(Credential::AppToken(token.to_owned())));
    }
    Ok(None)
}

/// The `kid` of a JWT's header. Unsigned tokens (`alg: none`), unknown algorithms and
/// tokens without a `kid` are refused.
pub fn jwt_kid(token: &str) -> Result<String, Error> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        Error::unauthorized(
            "invalid JWT: the header must be base64url JSON with an HS256, HS384 or HS512 `alg`",
        )
    })?;
    hmac_algorithm(header.alg)?;
    match header.kid {
        Some(kid) if plausible(&kid, MAX_KID_LEN) => Ok(kid),
        Some(kid) if !kid.is_empty() => Err(Error::unauthorized(format!(
            "invalid JWT: `kid` must be a key id (at most {MAX_KID_LEN} printable characters)"
        ))),
        _ => Err(Error::unauthorized(
            "invalid JWT: the header must carry the key id (`kid`) of the secret that signed it",
        )),
    }
}

fn hmac_algorithm(alg: Algorithm) -> Result<Algorithm, Error> {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Ok(alg),
        other => Err(Error::unauthorized(format!(
            "invalid JWT: algorithm {other:?} is not accepted; sign with HS256, HS384 or HS512"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    scope: Option<String>,
    user_id: Option<String>,
}

/// Mints a JWT as the era's clients do: HS256, the key's id as `kid`, `{"scope": scope}`
/// and `iat`, no `exp` (what `GET /v1/apps/{appId}/keys/{keyId}/jwt` answers, and what the
/// admin client signs with the account key).
pub fn sign_jwt(key_id: &str, secret: &str, scope: &str) -> Result<String, Error> {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(key_id.to_owned());
    let claims = serde_json::json!({"scope": scope, "iat": domain::time::now_ms() / 1000});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| {
        tracing::error!(error = %e, "signing a JWT failed");
        Error::internal()
    })
}

/// Clock skew allowed on a JWT's `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_JWT_LEEWAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Verifies `token` against `key` with [`DEFAULT_JWT_LEEWAY`]; see [`verify_jwt_with`].
pub fn verify_jwt(token: &str, key: &KeyInfo) -> Result<Principal, Error> {
    verify_jwt_with(token, key, DEFAULT_JWT_LEEWAY)
}

/// Verifies `token` against `key` and returns who it stands for. Bad signatures, an `exp`
/// more than `leeway` in the past, an `nbf` more than `leeway` in the future and unknown
/// scopes are 401; tokens without `exp` are valid (the era's clients set none).
pub fn verify_jwt_with(
    token: &str,
    key: &KeyInfo,
    leeway: std::time::Duration,
) -> Result<Principal, Error> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Error::unauthorized("invalid JWT header"))?;
    let alg = hmac_algorithm(header.alg)?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway.as_secs();
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            Error::unauthorized("JWT has expired (`exp` is in the past)")
        }
        jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
            Error::unauthorized("JWT is not valid yet (`nbf` is in the future)")
        }
        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
            Error::unauthorized("invalid JWT signature")
        }
        _ => Error::unauthorized("invalid JWT: it could not be verified"),
    })?;
    let claims = data.claims;
    match (claims.scope.as_deref(), &key.app_id) {
        (Some("app"), Some(app_id)) => Ok(Principal::App {
            app_id: AppId::from(app_id.as_str()),
            key_id: key.id.clone(),
        }),
        (Some("appUser"), Some(app_id)) => {
            let user_id = claims.user_id.filter(|u| !u.is_empty()).ok_or_else(|| {
                Error::unauthorized("a JWT with scope `appUser` must carry a `userId`")
            })?;
            Ok(Principal::AppUser {
                app_id: AppId::from(app_id.as_str()),
                key_id: key.id.clone(),
                user_id: UserId::from(user_id),
            })
        }
        (Some("account"), None) => Ok(Principal::Account {
            key_id: key.id.clone(),
        }),
        (Some("account"), Some(_)) => Err(Error::unauthorized(
            "scope `account` needs a token signed by an account key, not an app key",
        )),
        (Some("app" | "appUser"), None) => Err(Error::unauthorized(
            "an account key signs only `account` scope tokens",
        )),
        (Some(other), _) => Err(Error::unauthorized(format!(
            "unknown JWT scope {other:?}; use `app`, `appUser` or `account`"
        ))),
        (None, _) => Err(Error::unauthorized(
            "the JWT body must carry a `scope`: `app`, `appUser` or `account`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn key(app: Option<&str>) -> KeyInfo {
        KeyInfo {
            id: "kid1".into(),
            app_id: app.map(str::to_owned),
            secret: "s3cret".into(),
        }
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: serde_json::Value, secret: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn app_scope_token_without_exp_is_valid() {
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "app", "iat": 1}),
            "s3cret",
        );
        assert_eq!(jwt_kid(&t).unwrap(), "kid1");
        assert_eq!(
            verify_jwt(&t, &key(Some("a1"))).unwrap(),
            Principal::App {
                app_id: "a1".into(),
                key_id: "kid1".into()
            }
        );
    }

    #[test]
    fn every_hmac_algorithm_is_accepted() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = sign(
                alg,
                Some("kid1"),
                json!({"scope": "appUser", "userId": "bob"}),
                "s3cret",
            );
            assert!(
                matches!(verify_jwt(&t, &key(Some("a1"))).unwrap(), Principal::AppUser { user_id, .. } if user_id == "bob")
            );
        }
    }

    #[test]
    fn bad_signature_expired_and_missing_kid_are_refused() {
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "app"}),
            "other",
        );
        assert!(verify_jwt(&t, &key(Some("a1")))
            .unwrap_err()
            .description
            .contains("signature"));
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "app", "exp": 1000}),
            "s3cret",
        );
        assert!(verify_jwt(&t, &key(Some("a1")))
            .unwrap_err()
            .description
            .contains("expired"));
        let t = sign(Algorithm::HS256, None, json!({"scope": "app"}), "s3cret");
        assert!(jwt_kid(&t).is_err());
    }

    #[test]
    fn minted_tokens_verify_with_their_key() {
        let t = sign_jwt("kid1", "s3cret", "app").unwrap();
        assert_eq!(jwt_kid(&t).unwrap(), "kid1");
        assert_eq!(
            verify_jwt(&t, &key(Some("a1"))).unwrap(),
            Principal::App {
                app_id: "a1".into(),
                key_id: "kid1".into()
            }
        );
        assert!(verify_jwt(&sign_jwt("kid1", "other", "app").unwrap(), &key(Some("a1"))).is_err());
    }

    #[test]
    fn exp_and_nbf_allow_only_the_configured_skew() {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let token =
            |claims: serde_json::Value| sign(Algorithm::HS256, Some("kid1"), claims, "s3cret");
        let leeway = std::time::Duration::from_secs(5);
        let expired_a_minute_ago = token(json!({"scope": "app", "exp": now - 60}));
        assert!(
            verify_jwt_with(&expired_a_minute_ago, &key(Some("a1")), leeway)
                .unwrap_err()
                .description
                .contains("expired")
        );
        let expired_just_now = token(json!({"scope": "app", "exp": now - 2}));
        assert!(verify_jwt_with(&expired_just_now, &key(Some("a1")), leeway).is_ok());
        let valid_in_a_minute = token(json!({"scope": "app", "nbf": now + 60}));
        assert!(
            verify_jwt_with(&valid_in_a_minute, &key(Some("a1")), leeway)
                .unwrap_err()
                .description
                .contains("nbf")
        );
        let valid_now = token(json!({"scope": "app", "nbf": now - 1, "exp": now + 60}));
        assert!(verify_jwt_with(&valid_now, &key(Some("a1")), leeway).is_ok());
        let generous = std::time::Duration::from_secs(120);
        assert!(verify_jwt_with(&expired_a_minute_ago, &key(Some("a1")), generous).is_ok());
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        // {"alg":"none","kid":"kid1"} . {"scope":"app"} . (no signature)
        let t = "eyJhbGciOiJub25lIiwia2lkIjoia2lkMSJ9.eyJzY29wZSI6ImFwcCJ9.";
        assert_eq!(
            jwt_kid(t).unwrap_err().code,
            domain::ErrorCode::Unauthorized
        );
    }

    #[test]
    fn scopes_must_match_the_key() {
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "account"}),
            "s3cret",
        );
        assert!(verify_jwt(&t, &key(Some("a1"))).is_err());
        assert_eq!(
            verify_jwt(&t, &key(None)).unwrap(),
            Principal::Account {
                key_id: "kid1".into()
            }
        );
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "app"}),
            "s3cret",
        );
        assert!(verify_jwt(&t, &key(None)).is_err());
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "appUser"}),
            "s3cret",
        );
        assert!(verify_jwt(&t, &key(Some("a1"))).is_err());
        let t = sign(
            Algorithm::HS256,
            Some("kid1"),
            json!({"scope": "root"}),
            "s3cret",
        );
        assert!(verify_jwt(&t, &key(Some("a1"))).is_err());
    }

    #[test]
    fn credentials_are_read_from_headers() {
        assert_eq!(read_credential(None, None).unwrap(), None);
        assert_eq!(
            read_credential(Some(b"tok"), None).unwrap(),
            Some(Credential::AppToken("tok".into()))
        );
        assert!(read_credential(None, Some(b"Basic abc")).is_err());
        assert!(read_credential(Some(b""), None).is_err());
    }
}
