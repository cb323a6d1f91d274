//! Who is calling: the `Caller` extractor verifies the request's credentials against the
//! users service, and the `require_*` checks say which scopes each API accepts.

use auth::{Credential, KeyInfo, Principal};
use axum::extract::FromRequestParts;
use domain::{Error, ErrorCode};
use http::request::Parts;
use proto::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The verified principal of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let credential = auth::read_credential(
            parts.headers.get("app-token").map(|v| v.as_bytes()),
            parts
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )?
        .ok_or_else(|| {
            Error::unauthorized(
                "credentials required: send an `app-token` header or `Authorization: Bearer <jwt>`",
            )
        })?;
        let mut users = state.clients.users.clone();
        let principal = match credential {
            Credential::AppToken(app_token) => {
                let app = users
                    .resolve_app_token(pb::ResolveAppTokenRequest { app_token })
                    .await
                    .map_err(|s| unauthorized_if_missing(s, "invalid app token"))?
                    .into_inner();
                Principal::AppToken { app_id: app.id }
            }
            Credential::Jwt { token, kid } => {
                let key = users
                    .resolve_key(pb::ResolveKeyRequest { key_id: kid })
                    .await
                    .map_err(|s| {
                        unauthorized_if_missing(s, "invalid JWT: its `kid` names no known key")
                    })?
                    .into_inner();
                let key = KeyInfo {
                    id: key.id,
                    app_id: (!key.app_id.is_empty()).then_some(key.app_id),
                    secret: key.secret,
                };
                auth::verify_jwt(&token, &key)?
            }
        };
        Ok(Caller(principal))
    }
}

/// A lookup that found nothing means the credential is invalid: 401, not 404.
fn unauthorized_if_missing(status: tonic::Status, description: &str) -> ApiError {
    let err = ApiError::from(status);
    if err.0.code == ErrorCode::NotFound {
        ApiError(Error::unauthorized(description))
    } else {
        err
    }
}

impl Caller {
    /// The app of an app-token, app or appUser caller; account scope is refused.
    pub(crate) fn app_id(&self) -> ApiResult<&str> {
        self.0.app_id().ok_or_else(|| {
            Error::forbidden("account-scope credentials cannot call app APIs; use an app key")
                .into()
        })
    }

    /// The app and key of an `app`-scope JWT; anything else is refused.
    pub(crate) fn require_app_scope(&self, what: &str) -> ApiResult<(&str, &str)> {
        match &self.0 {
            Principal::App { app_id, key_id } => Ok((app_id, key_id)),
            _ => Err(Error::forbidden(format!("{what} requires a JWT with `app` scope")).into()),
        }
    }

    /// Only account-scope JWTs may manage apps.
    pub(crate) fn require_account_scope(&self) -> ApiResult<()> {
        match &self.0 {
            Principal::Account { .. } => Ok(()),
            _ => Err(Error::forbidden("/v1/apps requires a JWT with `account` scope").into()),
        }
    }

    /// Whether app-maker-only details (devices) may be shown.
    pub(crate) fn is_app_scope(&self) -> bool {
        matches!(self.0, Principal::App { .. })
    }

    /// Refuses an appUser-scope caller access to another user's resources.
    pub(crate) fn check_user_access(&self, user: &pb::AppUser) -> ApiResult<()> {
        match &self.0 {
            Principal::AppUser { user_id, .. } if user.user_id.as_deref() != Some(user_id) => {
                Err(Error::forbidden(
                    "this appUser-scope token belongs to another user; it grants access only to its own userId",
                )
                .into())
            }
            _ => Ok(()),
        }
    }
}
