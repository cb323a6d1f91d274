//! Who is calling: the `Caller` extractor verifies the request's credentials through the
//! credential cache (in front of the users service), and the `require_*` checks say which
//! scopes each API accepts.

use auth::Principal;
use axum::extract::FromRequestParts;
use domain::{AppId, Error};
use http::request::Parts;
use proto::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The verified principal of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Principal);

/// Verifies the credentials in `headers`: 401 when they are missing or invalid.
pub(crate) async fn authenticate(headers: &http::HeaderMap, state: &AppState) -> ApiResult<Caller> {
    let credential = auth::read_credential(
        headers.get("app-token").map(|v| v.as_bytes()),
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )?
    .ok_or_else(|| {
        Error::unauthorized(
            "credentials required: send an `app-token` header or `Authorization: Bearer <jwt>`",
        )
    })?;
    Ok(Caller(state.credentials.authenticate(&credential).await?))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        // The rate-limit middleware has verified the credentials already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        authenticate(&parts.headers, state).await
    }
}

impl Caller {
    /// The app of an app-token, app or appUser caller; account scope is refused.
    pub(crate) fn app_id(&self) -> ApiResult<&AppId> {
        self.0.app_id().ok_or_else(|| {
            Error::forbidden("account-scope credentials cannot call app APIs; use an app key")
                .into()
        })
    }

    /// The app and key of an `app`-scope JWT; anything else is refused.
    pub(crate) fn require_app_scope(&self, what: &str) -> ApiResult<(&AppId, &str)> {
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
            Principal::AppUser { user_id, .. }
                if user.user_id.as_deref() != Some(user_id.as_str()) =>
            {
                Err(Error::forbidden(
                    "this appUser-scope token belongs to another user; it grants access only to its own userId",
                )
                .into())
            }
            _ => Ok(()),
        }
    }
}
