//! `/v1/whispers`: messages an app maker sets up to be posted to an app user when they
//! trigger an event (beyond the reference; app scope).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::model::array_from_json;
use domain::Error;
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

const WHAT: &str = "/v1/whispers";

/// The wire form of a whisper.
fn whisper_json(w: pb::Whisper) -> Value {
    let mut out = Map::new();
    out.insert("_id".to_owned(), json!(w.id));
    out.insert("event".to_owned(), json!(w.event));
    out.insert("text".to_owned(), json!(w.text));
    out.insert(
        "actions".to_owned(),
        json!(array_from_json(&w.actions_json)),
    );
    for (key, value) in [
        ("name", w.name),
        ("avatarUrl", w.avatar_url),
        ("platform", w.platform),
        ("appVersion", w.app_version),
    ] {
        if let Some(value) = value {
            out.insert(key.to_owned(), json!(value));
        }
    }
    out.insert(
        "createdAt".to_owned(),
        json!(domain::time::iso(w.created_at_ms)),
    );
    Value::Object(out)
}

/// A whisper body. Every field is a JSON value here so that PUT can tell "left out"
/// (keep) from `null` (clear) and name a field of the wrong type.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WhisperBody {
    #[serde(default, deserialize_with = "present")]
    event: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    text: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    actions: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    avatar_url: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    platform: Option<Value>,
    #[serde(default, deserialize_with = "present")]
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

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<WhisperBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let event = string("event", body.event)?
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| {
            Error::bad_request("event is required: the app user event name that fires the whisper")
        })?;
    let text = string("text", body.text)?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::bad_request("text is required"))?;
    let whisper = state
        .clients
        .conversations
        .clone()
        .create_whisper(pb::Whisper {
            id: String::new(),
            app_id: app_id.to_owned(),
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
        Json(json!({"whisper": whisper_json(whisper)})),
    ))
}

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let list = state
        .clients
        .conversations
        .clone()
        .list_whispers(pb::ListWhispersRequest {
            app_id: app_id.to_owned(),
        })
        .await?
        .into_inner();
    let whispers: Vec<Value> = list.whispers.into_iter().map(whisper_json).collect();
    Ok(Json(json!({"whispers": whispers})))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let whisper = state
        .clients
        .conversations
        .clone()
        .get_whisper(pb::WhisperRef {
            app_id: app_id.to_owned(),
            whisper_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(json!({"whisper": whisper_json(whisper)})))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WhisperBody>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let whisper = state
        .clients
        .conversations
        .clone()
        .update_whisper(pb::UpdateWhisperRequest {
            app_id: app_id.to_owned(),
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
    Ok(Json(json!({"whisper": whisper_json(whisper)})))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    state
        .clients
        .conversations
        .clone()
        .delete_whisper(pb::WhisperRef {
            app_id: app_id.to_owned(),
            whisper_id: id,
        })
        .await?;
    Ok(Json(json!({})))
}
