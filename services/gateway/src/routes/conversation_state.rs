//! `POST .../conversation/read` and `POST .../conversation/postback`: what an app user does
//! to a conversation besides writing in it.

use axum::extract::{Path, State};
use axum::Json;
use domain::model::{Conversation, Message};
use domain::{validate, Error};
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use super::appusers::load_user;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

/// `POST .../conversation/read`: the app user has read the conversation; resets its unread
/// count and emits `conversation:read`.
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load_user(&state, &caller, id).await?;
    let conversation = state
        .clients
        .conversations
        .clone()
        .mark_read(pb::MarkReadRequest {
            app_id: user.app_id.clone(),
            app_user_id: user.id.clone(),
            app_user: Some(user),
        })
        .await?
        .into_inner();
    Ok(Json(
        json!({"conversation": Conversation::from(conversation)}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PostbackBody {
    action_id: Option<String>,
}

/// `POST .../conversation/postback {actionId}`: the app user tapped a postback action of a
/// message in their conversation; emits a `postback` event.
pub(crate) async fn postback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PostbackBody>,
) -> ApiResult<Json<Value>> {
    let action_id = body
        .action_id
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| Error::bad_request("actionId is required"))?;
    validate::short_field("actionId", &action_id)?;
    let user = load_user(&state, &caller, id).await?;
    let answer = state
        .clients
        .conversations
        .clone()
        .postback(pb::PostbackRequest {
            app_id: user.app_id.clone(),
            app_user_id: user.id.clone(),
            action_id,
            app_user: Some(user),
        })
        .await?
        .into_inner();
    let action: Value = serde_json::from_str(&answer.action_json).unwrap_or(Value::Null);
    Ok(Json(json!({
        "postbacks": [{"message": answer.message.map(Message::from), "action": action}]
    })))
}
