//! `/v1/whispers`: messages an app maker sets up to be posted to an app user when they
//! trigger an event (beyond the reference; app scope).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wire::model::array_from_json;

use super::apps::Empty;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::AppState;

const WHAT: &str = "/v1/whispers";

/// The wire form of a whisper.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WhisperJson {
    /// The whisper id.
    #[serde(rename = "_id")]
    id: String,
    /// The app user event that posts it.
    event: String,
    /// The message text.
    text: String,
    /// Action buttons of the message.
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Value>,
    /// Author name of the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Author avatar of the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    /// Only for app users on this platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    /// Only for app users on this app version.
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<String>,
    /// ISO 8601 creation time.
    created_at: String,
}

impl TryFrom<pb::Whisper> for WhisperJson {
    type Error = ApiError;

    fn try_from(w: pb::Whisper) -> Result<Self, ApiError> {
        Ok(WhisperJson {
            actions: array_from_json("whisper.actions_json", &w.actions_json)?,
            id: w.id,
            event: w.event,
            text: w.text,
            name: w.name,
            avatar_url: w.avatar_url,
            platform: w.platform,
            app_version: w.app_version,
            created_at: domain::time::iso(w.created_at_ms),
        })
    }
}

/// `{"whisper": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhisperAnswer {
    whisper: WhisperJson,
}

/// `{"whispers": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhispersAnswer {
    whispers: Vec<WhisperJson>,
}

/// A whisper body. Every field is a JSON value here so that PUT can tell "left out"
/// (keep) from `null` (clear) and name a field of the wrong type.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WhisperBody {
    /// The app user event that posts it (required on create).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    event: Option<Value>,
    /// The message text (required on create).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    text: Option<Value>,
    /// Action buttons; `null` clears them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<Object>>)]
    actions: Option<Value>,
    /// Author name; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Value>,
    /// Author avatar; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Value>,
    /// Platform filter; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    platform: Option<Value>,
    /// App version filter; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    app_version: Option<Value>,
}

/// A field that is present, `null` included (`Some(Value::Null)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A string field: `None` when left out, `Some("")` when `null` (clear), else its text.
fn string(field: &str, value: Option<Value>) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(String::new())),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::bad_request(format!("{field} must be a string")).into()),
    }
}

/// Actions: `None` when left out, else the JSON array's text (`null` means none).
fn actions(value: Option<Value>) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some("[]".to_owned())),
        Some(a @ Value::Array(_)) => Ok(Some(a.to_string())),
        Some(_) => Err(Error::bad_request("actions must be a JSON array").into()),
    }
}

/// Creates a whisper.
#[utoipa::path(
    post, path = "/v1/whispers", tag = "whispers", operation_id = "createWhisper",
    request_body = WhisperBody,
    security(("jwt" = [])),
    responses((status = 201, description = "The new whisper", body = WhisperAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<WhisperBody>,
) -> ApiResult<(StatusCode, Json<WhisperAnswer>)> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    // The conversations service checks the whisper (event and text required, sizes, actions).
    let event = string("event", body.event)?.unwrap_or_default();
    let text = string("text", body.text)?.unwrap_or_default();
    let whisper = state
        .clients
        .conversations
        .clone()
        .create_whisper(pb::Whisper {
            id: String::new(),
            app_id: app_id.to_string(),
            event,
            text,
            actions_json: actions(body.actions)?.unwrap_or_default(),
            name: string("name", body.name)?,
            avatar_url: string("avatarUrl", body.avatar_url)?,
            platform: string("platform", body.platform)?,
            app_version: string("appVersion", body.app_version)?,
            created_at_ms: 0,
        })
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(WhisperAnswer {
            whisper: whisper.try_into()?,
        }),
    ))
}

/// Lists the app's whispers.
#[utoipa::path(
    get, path = "/v1/whispers", tag = "whispers", operation_id = "listWhispers",
    security(("jwt" = [])),
    responses((status = 200, description = "The app's whispers", body = WhispersAnswer), AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WhispersAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let list = state
        .clients
        .conversations
        .clone()
        .list_whispers(pb::ListWhispersRequest {
            app_id: app_id.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(WhispersAnswer {
        whispers: list
            .whispers
            .into_iter()
            .map(WhisperJson::try_from)
            .collect::<Result<_, _>>()?,
    }))
}

/// One whisper of the app.
#[utoipa::path(
    get, path = "/v1/whispers/{id}", tag = "whispers", operation_id = "getWhisper",
    params(("id" = String, Path, description = "The whisper id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The whisper", body = WhisperAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WhisperAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let whisper = state
        .clients
        .conversations
        .clone()
        .get_whisper(pb::WhisperRef {
            app_id: app_id.to_string(),
            whisper_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(WhisperAnswer {
        whisper: whisper.try_into()?,
    }))
}

/// Changes a whisper: fields left out keep their values, `null` clears them.
#[utoipa::path(
    put, path = "/v1/whispers/{id}", tag = "whispers", operation_id = "updateWhisper",
    params(("id" = String, Path, description = "The whisper id")),
    request_body = WhisperBody,
    security(("jwt" = [])),
    responses((status = 200, description = "The updated whisper", body = WhisperAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WhisperBody>,
) -> ApiResult<Json<WhisperAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let whisper = state
        .clients
        .conversations
        .clone()
        .update_whisper(pb::UpdateWhisperRequest {
            app_id: app_id.to_string(),
            whisper_id: id,
            event: string("event", body.event)?,
            text: string("text", body.text)?,
            actions_json: actions(body.actions)?,
            name: string("name", body.name)?,
            avatar_url: string("avatarUrl", body.avatar_url)?,
            platform: string("platform", body.platform)?,
            app_version: string("appVersion", body.app_version)?,
        })
        .await?
        .into_inner();
    Ok(Json(WhisperAnswer {
        whisper: whisper.try_into()?,
    }))
}

/// Deletes a whisper.
#[utoipa::path(
    delete, path = "/v1/whispers/{id}", tag = "whispers", operation_id = "deleteWhisper",
    params(("id" = String, Path, description = "The whisper id")),
    security(("jwt" = [])),
    responses((status = 200, description = "Deleted", body = Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Empty>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    state
        .clients
        .conversations
        .clone()
        .delete_whisper(pb::WhisperRef {
            app_id: app_id.to_string(),
            whisper_id: id,
        })
        .await?;
    Ok(Json(Empty {}))
}
