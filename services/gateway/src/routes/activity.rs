//! `POST .../conversation/activity`: typing indicators. Not stored; published to the
//! conversation's real-time activity channel (`/v1/conversations/{id}/activity` on `/faye`).

use axum::extract::State;
use axum::Json;
use domain::{validate, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::appusers::load_cached_user;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::AppState;

/// The body of an activity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActivityBody {
    /// Who is typing: `appUser` or `appMaker` (app-scope JWT only).
    role: Option<String>,
    /// `typing:start` or `typing:stop`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Shown with the indicator (an app maker's `name` and `avatarUrl`, say).
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// The answer: an empty object, as the hosted API answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActivityAnswer {}

/// `POST .../conversation/activity`: the app user or an app maker started or stopped
/// typing.
#[utoipa::path(
    post, path = "/{id}/conversation/activity", tag = "conversation", operation_id = "conversationActivity",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    request_body = ActivityBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "Published to the real-time subscribers", body = ActivityAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn activity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActivityBody>,
) -> ApiResult<Json<ActivityAnswer>> {
    let role = body
        .role
        .ok_or_else(|| Error::bad_request("role is required: appUser or appMaker"))?;
    validate::role(&role)?;
    let kind = body
        .kind
        .ok_or_else(|| Error::bad_request("type is required: typing:start or typing:stop"))?;
    if kind != "typing:start" && kind != "typing:stop" {
        return Err(Error::bad_request("type must be typing:start or typing:stop").into());
    }
    let data = match body.data {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) if Value::Object(map.clone()).to_string().len() <= 4096 => {
            Value::Object(map)
        }
        Some(Value::Object(_)) => {
            return Err(Error::bad_request("data must be at most 4 KiB of JSON").into())
        }
        Some(_) => return Err(Error::bad_request("data must be a JSON object").into()),
    };
    if role == "appMaker" {
        caller.require_app_scope("sending activity with role appMaker")?;
    }
    let user = load_cached_user(&state, &caller, id).await?;
    state
        .activity
        .typing(
            &user.app_id,
            &user.id,
            json!({"activity": kind, "role": role, "data": data}),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "publishing typing activity failed");
            Error::unavailable("the real-time bus is unavailable; try again")
        })?;
    Ok(Json(ActivityAnswer {}))
}
