//! `/v1/apps`: the operator's tenancy API (account scope): apps and their secret keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct NameBody {
    name: Option<String>,
}

fn app_json(app: pb::App) -> Value {
    json!({
        "_id": app.id,
        "name": app.name,
        "appToken": app.app_token,
        "createdAt": domain::time::iso(app.created_at_ms),
    })
}

fn key_json(key: pb::Key) -> Value {
    json!({
        "_id": key.id,
        "name": key.name,
        "secret": key.secret,
        "createdAt": domain::time::iso(key.created_at_ms),
    })
}

fn required_name(body: NameBody) -> ApiResult<String> {
    match body.name {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(Error::bad_request("name is required").into()),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NameBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_account_scope()?;
    let name = required_name(body)?;
    let app = state
        .clients
        .users
        .clone()
        .create_app(pb::CreateAppRequest { name })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(json!({"app": app_json(app)}))))
}

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    let apps = state
        .clients
        .users
        .clone()
        .list_apps(pb::ListAppsRequest {})
        .await?
        .into_inner()
        .apps;
    Ok(Json(
        json!({"apps": apps.into_iter().map(app_json).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    let app = state
        .clients
        .users
        .clone()
        .get_app(pb::GetAppRequest { app_id })
        .await?
        .into_inner();
    Ok(Json(json!({"app": app_json(app)})))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    state
        .clients
        .users
        .clone()
        .delete_app(pb::GetAppRequest { app_id })
        .await?;
    Ok(Json(json!({})))
}

/// `POST /v1/apps/{appId}/token/rotate`: a new app token; the old one stops working on
/// every gateway within a second.
pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    let app = state
        .clients
        .users
        .clone()
        .rotate_app_token(pb::GetAppRequest { app_id })
        .await?
        .into_inner();
    Ok(Json(json!({"app": app_json(app)})))
}

pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
    JsonBody(body): JsonBody<NameBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_account_scope()?;
    let name = required_name(body)?;
    let key = state
        .clients
        .users
        .clone()
        .create_key(pb::CreateKeyRequest { app_id, name })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(json!({"key": key_json(key)}))))
}

pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    let keys = state
        .clients
        .users
        .clone()
        .list_keys(pb::GetAppRequest { app_id })
        .await?
        .into_inner()
        .keys;
    Ok(Json(
        json!({"keys": keys.into_iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    let keys = state
        .clients
        .users
        .clone()
        .list_keys(pb::GetAppRequest { app_id })
        .await?
        .into_inner()
        .keys;
    let key = keys
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| Error::not_found(format!("key {key_id} not found in this app")))?;
    Ok(Json(json!({"key": key_json(key)})))
}

pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_account_scope()?;
    state
        .clients
        .users
        .clone()
        .delete_key(pb::DeleteKeyRequest { app_id, key_id })
        .await?;
    Ok(Json(json!({})))
}
