//! `/v1/apps`: the operator's tenancy API (account scope): apps and their secret keys.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use domain::{AppId, Error};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::routes::paging::{limit_offset, PageQuery};
use crate::AppState;

/// The body of creating an app or a key.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NameBody {
    /// A name for people; required, not blank.
    #[schema(required = true, min_length = 1)]
    name: Option<String>,
}

/// An app (tenant).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppJson {
    /// The app id.
    #[serde(rename = "_id")]
    id: String,
    /// Its name.
    name: String,
    /// Its app token (the `app-token` header of its SDK calls).
    app_token: String,
    /// ISO 8601 creation time.
    created_at: String,
    /// Its settings: `web` holds the Web Messenger's look (`accentColor`, `linkColor`,
    /// `isAccentColorDark`, `displayStyle`, `channels`, texts).
    #[schema(value_type = Object)]
    settings: Value,
}

impl TryFrom<pb::App> for AppJson {
    type Error = ApiError;

    fn try_from(app: pb::App) -> Result<Self, ApiError> {
        Ok(AppJson {
            settings: super::service_json("settings", &app.settings_json)?,
            id: app.id,
            name: app.name,
            app_token: app.app_token,
            created_at: domain::time::iso(app.created_at_ms),
        })
    }
}

/// `{"app": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppAnswer {
    app: AppJson,
}

/// `{"apps": [...], "hasMore", "offset"}`: a page of apps, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppsAnswer {
    apps: Vec<AppJson>,
    /// Whether more apps follow this page.
    has_more: bool,
    /// The offset of this page.
    offset: u32,
}

/// The body of updating an app: the fields sent change, the others keep their values.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UpdateAppBody {
    /// A new name; not blank.
    name: Option<String>,
    /// Settings to merge into the app's (`{"web": {"accentColor": "ff0000"}}`); unknown
    /// settings are refused.
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
}

/// A secret key of an app: JWTs carry its `_id` as `kid` and are signed with its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyJson {
    /// The key id (`kid`).
    #[serde(rename = "_id")]
    id: String,
    /// Its name.
    name: String,
    /// The shared secret.
    secret: String,
    /// ISO 8601 creation time.
    created_at: String,
}

impl From<pb::Key> for KeyJson {
    fn from(key: pb::Key) -> Self {
        KeyJson {
            id: key.id,
            name: key.name,
            secret: key.secret,
            created_at: domain::time::iso(key.created_at_ms),
        }
    }
}

/// `{"key": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyAnswer {
    key: KeyJson,
}

/// `{"keys": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeysAnswer {
    keys: Vec<KeyJson>,
}

/// `{}`: the answer of a delete.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Empty {}

fn required_name(body: NameBody) -> ApiResult<String> {
    match body.name {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(Error::bad_request("name is required").into()),
    }
}

/// Creates an app with a fresh app token.
#[utoipa::path(
    post, path = "/v1/apps", tag = "apps", operation_id = "createApp",
    request_body = NameBody,
    security(("jwt" = [])),
    responses((status = 201, description = "The new app", body = AppAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NameBody>,
) -> ApiResult<(StatusCode, Json<AppAnswer>)> {
    caller.require_account_scope()?;
    let name = required_name(body)?;
    let app = state
        .clients
        .users
        .clone()
        .create_app(pb::CreateAppRequest { name })
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(AppAnswer {
            app: app.try_into()?,
        }),
    ))
}

/// Lists every app.
#[utoipa::path(
    get, path = "/v1/apps", tag = "apps", operation_id = "listApps",
    params(PageQuery),
    security(("jwt" = [])),
    responses((status = 200, description = "A page of apps, newest first", body = AppsAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<AppsAnswer>> {
    caller.require_account_scope()?;
    let (limit, offset) = limit_offset(query)?;
    let page = state
        .clients
        .users
        .clone()
        .list_apps(pb::ListAppsRequest {
            limit: Some(limit),
            offset,
        })
        .await?
        .into_inner();
    Ok(Json(AppsAnswer {
        apps: page
            .apps
            .into_iter()
            .map(AppJson::try_from)
            .collect::<Result<_, _>>()?,
        has_more: page.has_more,
        offset,
    }))
}

/// Renames an app or changes its settings.
#[utoipa::path(
    put, path = "/v1/apps/{app_id}", tag = "apps", operation_id = "updateApp",
    params(("app_id" = String, Path, description = "The app id")),
    request_body = UpdateAppBody,
    security(("jwt" = [])),
    responses((status = 200, description = "The app", body = AppAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
    JsonBody(body): JsonBody<UpdateAppBody>,
) -> ApiResult<Json<AppAnswer>> {
    caller.require_account_scope()?;
    let settings_json = match body.settings {
        None => String::new(),
        Some(settings) => settings.to_string(),
    };
    let app = state
        .clients
        .users
        .clone()
        .update_app(pb::UpdateAppRequest {
            app_id: app_id.into(),
            name: body.name,
            settings_json,
        })
        .await?
        .into_inner();
    Ok(Json(AppAnswer {
        app: app.try_into()?,
    }))
}

/// One app.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}", tag = "apps", operation_id = "getApp",
    params(("app_id" = String, Path, description = "The app id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The app", body = AppAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
) -> ApiResult<Json<AppAnswer>> {
    caller.require_account_scope()?;
    let app = state
        .clients
        .users
        .clone()
        .get_app(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?
        .into_inner();
    Ok(Json(AppAnswer {
        app: app.try_into()?,
    }))
}

/// Deletes an app with everything in it; its credentials stop working at once.
#[utoipa::path(
    delete, path = "/v1/apps/{app_id}", tag = "apps", operation_id = "deleteApp",
    params(("app_id" = String, Path, description = "The app id")),
    security(("jwt" = [])),
    responses((status = 200, description = "Deleted", body = Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
) -> ApiResult<Json<Empty>> {
    caller.require_account_scope()?;
    state
        .clients
        .users
        .clone()
        .delete_app(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?;
    Ok(Json(Empty {}))
}

/// `POST /v1/apps/{app_id}/token/rotate`: a new app token; the old one stops working on
/// every gateway within a second.
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/token/rotate", tag = "apps", operation_id = "rotateAppToken",
    params(("app_id" = String, Path, description = "The app id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The app with its new token", body = AppAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
) -> ApiResult<Json<AppAnswer>> {
    caller.require_account_scope()?;
    let app = state
        .clients
        .users
        .clone()
        .rotate_app_token(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?
        .into_inner();
    Ok(Json(AppAnswer {
        app: app.try_into()?,
    }))
}

/// Creates a secret key of an app.
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/keys", tag = "apps", operation_id = "createKey",
    params(("app_id" = String, Path, description = "The app id")),
    request_body = NameBody,
    security(("jwt" = [])),
    responses((status = 201, description = "The new key, with its secret", body = KeyAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
    JsonBody(body): JsonBody<NameBody>,
) -> ApiResult<(StatusCode, Json<KeyAnswer>)> {
    caller.require_account_scope()?;
    let name = required_name(body)?;
    let key = state
        .clients
        .users
        .clone()
        .create_key(pb::CreateKeyRequest {
            app_id: app_id.into(),
            name,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(KeyAnswer { key: key.into() })))
}

/// Lists an app's secret keys.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/keys", tag = "apps", operation_id = "listKeys",
    params(("app_id" = String, Path, description = "The app id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The app's keys", body = KeysAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<AppId>,
) -> ApiResult<Json<KeysAnswer>> {
    caller.require_account_scope()?;
    let keys = state
        .clients
        .users
        .clone()
        .list_keys(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?
        .into_inner()
        .keys;
    Ok(Json(KeysAnswer {
        keys: keys.into_iter().map(KeyJson::from).collect(),
    }))
}

/// One secret key of an app.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/keys/{key_id}", tag = "apps", operation_id = "getKey",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("key_id" = String, Path, description = "The key id"),
    ),
    security(("jwt" = [])),
    responses((status = 200, description = "The key", body = KeyAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app_id, key_id)): Path<(AppId, String)>,
) -> ApiResult<Json<KeyAnswer>> {
    caller.require_account_scope()?;
    let keys = state
        .clients
        .users
        .clone()
        .list_keys(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?
        .into_inner()
        .keys;
    let key = keys
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| Error::not_found(format!("key {key_id} not found in this app")))?;
    Ok(Json(KeyAnswer { key: key.into() }))
}

/// `{"jwt": ...}`: an app-scope JWT signed with the key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JwtAnswer {
    /// HS256, the key's id as `kid`, `{"scope": "app"}`, no `exp`.
    jwt: String,
}

/// An app-scope JWT signed with one of the app's keys (smooch-core 3.x `getJwt`).
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/keys/{key_id}/jwt", tag = "apps", operation_id = "getKeyJwt",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("key_id" = String, Path, description = "The key id"),
    ),
    security(("jwt" = [])),
    responses((status = 200, description = "An app-scope JWT", body = JwtAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get_key_jwt(
    state: State<AppState>,
    caller: Caller,
    path: Path<(AppId, String)>,
) -> ApiResult<Json<JwtAnswer>> {
    let Json(KeyAnswer { key }) = get_key(state, caller, path).await?;
    let jwt = auth::sign_jwt(&key.id, &key.secret, "app")?;
    Ok(Json(JwtAnswer { jwt }))
}

/// Deletes a secret key; tokens it signed stop working at once.
#[utoipa::path(
    delete, path = "/v1/apps/{app_id}/keys/{key_id}", tag = "apps", operation_id = "deleteKey",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("key_id" = String, Path, description = "The key id"),
    ),
    security(("jwt" = [])),
    responses((status = 200, description = "Deleted", body = Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app_id, key_id)): Path<(AppId, String)>,
) -> ApiResult<Json<Empty>> {
    caller.require_account_scope()?;
    state
        .clients
        .users
        .clone()
        .delete_key(pb::DeleteKeyRequest {
            app_id: app_id.into(),
            key_id,
        })
        .await?;
    Ok(Json(Empty {}))
}
