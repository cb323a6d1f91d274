//! `POST .../conversation/read` and `POST .../conversation/postback`: what an app user does
//! to a conversation besides writing in it.

use axum::extract::State;
use axum::Json;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wire::model::{Conversation, Message};

use super::appusers::load_user;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::AppState;

/// `{"conversation": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConversationAnswer {
    conversation: Conversation,
}

/// One tapped postback action and its message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostbackJson {
    message: Option<Message>,
    /// The action as stored (`_id`, `type`, `text`, `payload`, ...).
    #[schema(value_type = Object)]
    action: Value,
}

/// `{"postbacks": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostbackAnswer {
    postbacks: Vec<PostbackJson>,
}

/// `POST .../conversation/read`: the app user has read the conversation; resets its unread
/// count and emits `conversation:read`.
#[utoipa::path(
    post, path = "/{id}/conversation/read", tag = "conversation", operation_id = "markRead",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The conversation, read", body = ConversationAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConversationAnswer>> {
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
    Ok(Json(ConversationAnswer {
        conversation: Conversation::try_from(conversation)?,
    }))
}

/// The body of a postback.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PostbackBody {
    /// The `_id` of the tapped action.
    #[schema(required = true, min_length = 1)]
    action_id: Option<String>,
}

/// `POST .../conversation/postback {actionId}`: the app user tapped a postback action of a
/// message in their conversation; emits a `postback` event.
#[utoipa::path(
    post, path = "/{id}/conversation/postback", tag = "conversation", operation_id = "postback",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    request_body = PostbackBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The tapped action and its message", body = PostbackAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn postback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PostbackBody>,
) -> ApiResult<Json<PostbackAnswer>> {
    // The conversations service checks the action id and finds its action.
    let action_id = body.action_id.unwrap_or_default();
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
    let action = super::service_json("postback.action_json", &answer.action_json)?;
    Ok(Json(PostbackAnswer {
        postbacks: vec![PostbackJson {
            message: answer.message.map(Message::try_from).transpose()?,
            action,
        }],
    }))
}
