//! `/v1/init` and `/v1/appusers/{appUserId|userId}`: app users, their profile and events.

use auth::Principal;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::model::AppUser;
use domain::{validate, Error};
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

/// Finds the app user a path names (by `_id` or `userId`) in the caller's app, and checks
/// that the caller may act for it.
pub(crate) async fn load_user(
    state: &AppState,
    caller: &Caller,
    id_or_user_id: String,
) -> ApiResult<pb::AppUser> {
    let app_id = caller.app_id()?.to_owned();
    let user = state
        .clients
        .users
        .clone()
        .get_app_user(pb::GetAppUserRequest {
            app_id,
            id_or_user_id,
        })
        .await?
        .into_inner();
    caller.check_user_access(&user)?;
    Ok(user)
}

/// The `{"appUser": ...}` answer, with devices for app-scope callers only.
pub(crate) fn user_json(caller: &Caller, user: pb::AppUser) -> Value {
    json!({"appUser": AppUser::from_pb(user, caller.is_app_scope())})
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    id: Option<String>,
    platform: Option<String>,
    app_version: Option<String>,
    push_notification_token: Option<String>,
    info: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitBody {
    device: Option<DeviceBody>,
    user_id: Option<String>,
}

pub(crate) async fn init(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<InitBody>,
) -> ApiResult<Json<Value>> {
    let app_id = caller.app_id()?.to_owned();
    let device = body
        .device
        .ok_or_else(|| Error::bad_request("device is required"))?;
    let device_id = device
        .id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| Error::bad_request("device.id is required"))?;
    let platform = device
        .platform
        .ok_or_else(|| Error::bad_request("device.platform is required"))?;
    validate::platform(&platform)?;
    let info_json = match &device.info {
        Some(info) => Value::Object(validate::flat_object("device.info", info)?).to_string(),
        None => String::new(),
    };
    let user_id = match (&caller.0, body.user_id) {
        (
            Principal::AppUser {
                user_id: token_user,
                ..
            },
            Some(asked),
        ) if &asked != token_user => {
            return Err(
                Error::forbidden("userId must match the userId of the appUser-scope token").into(),
            )
        }
        (Principal::AppUser { user_id, .. }, _) => Some(user_id.clone()),
        (_, asked) => asked.filter(|u| !u.is_empty()),
    };
    if let Some(user_id) = &user_id {
        validate::short_field("userId", user_id)?;
    }
    let request = pb::InitRequest {
        app_id: app_id.clone(),
        user_id,
        device: Some(pb::Device {
            id: device_id,
            platform,
            app_version: device.app_version,
            push_notification_token: device.push_notification_token,
            info_json,
            active: true,
            last_seen_ms: 0,
        }),
    };
    let mut users = state.clients.users.clone();
    let mut users2 = state.clients.users.clone();
    let (user, app) = tokio::try_join!(
        users.init(request),
        users2.get_app(pb::GetAppRequest { app_id })
    )?;
    let app = app.into_inner();
    let user = finish_merges(&state, user.into_inner()).await?;
    let mut body = user_json(&caller, user);
    body["app"] = json!({
        "_id": app.id,
        "name": app.name,
        "hasIcon": false,
        "apnEnabled": false,
        "gcmEnabled": false,
    });
    Ok(Json(body))
}

/// Moves the conversation history of the app users init merged into `user` (pending
/// merges, this init's and any an earlier, interrupted init left), then settles each merge.
/// Both steps are idempotent, so a retry after a failure here finishes the job.
async fn finish_merges(state: &AppState, mut user: pb::AppUser) -> ApiResult<pb::AppUser> {
    let pending = std::mem::take(&mut user.pending_merges);
    for from in pending {
        let merged = state
            .clients
            .conversations
            .clone()
            .merge_conversations(pb::MergeConversationsRequest {
                app_id: user.app_id.clone(),
                from_app_user_id: from.clone(),
                into: Some(user.clone()),
            })
            .await?
            .into_inner();
        if merged.has_conversation && !user.conversation_started {
            state
                .clients
                .users
                .clone()
                .mark_conversation_started(pb::AppUserRef {
                    app_id: user.app_id.clone(),
                    app_user_id: user.id.clone(),
                })
                .await?;
            user.conversation_started = true;
        }
        state
            .clients
            .users
            .clone()
            .settle_merge(pb::SettleMergeRequest {
                app_id: user.app_id.clone(),
                from_app_user_id: from,
            })
            .await?;
    }
    Ok(user)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateBody {
    user_id: Option<String>,
    #[serde(flatten)]
    profile: UpdateBody,
}

/// `POST /v1/appusers`: pre-creates a user with a userId (app scope only).
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (app_id, _) = caller.require_app_scope("creating an app user")?;
    let user_id = body
        .user_id
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| Error::bad_request("userId is required"))?;
    validate::short_field("userId", &user_id)?;
    let profile = profile_patch(body.profile)?;
    let user = state
        .clients
        .users
        .clone()
        .create_app_user(pb::CreateAppUserRequest {
            app_id: app_id.to_owned(),
            user_id,
            given_name: profile.given_name,
            surname: profile.surname,
            email: profile.email,
            signed_up_at_ms: profile.signed_up_at_ms,
            properties_json: profile.properties_json,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(user_json(&caller, user))))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load_user(&state, &caller, id).await?;
    Ok(Json(user_json(&caller, user)))
}

/// Profile fields of an update (`PUT /v1/appusers/{id}`, pre-create, event attributes).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateBody {
    given_name: Option<String>,
    surname: Option<String>,
    email: Option<String>,
    signed_up_at: Option<String>,
    properties: Option<Value>,
}

/// A checked profile update: the request of `UpdateAppUser` without its ids.
fn profile_patch(body: UpdateBody) -> ApiResult<pb::UpdateAppUserRequest> {
    for (field, value) in [
        ("givenName", &body.given_name),
        ("surname", &body.surname),
        ("email", &body.email),
    ] {
        if let Some(value) = value {
            validate::short_field(field, value)?;
        }
    }
    let signed_up_at_ms = body
        .signed_up_at
        .as_deref()
        .map(|s| {
            domain::time::parse_iso(s).ok_or_else(|| {
                Error::bad_request(format!(
                    "signedUpAt must be ISO 8601, as in 2015-10-08T23:52:11.677Z; got {s:?}"
                ))
            })
        })
        .transpose()?;
    let properties_json = match &body.properties {
        Some(p) => Value::Object(validate::flat_object("properties", p)?).to_string(),
        None => String::new(),
    };
    Ok(pb::UpdateAppUserRequest {
        app_id: String::new(),
        app_user_id: String::new(),
        given_name: body.given_name,
        surname: body.surname,
        email: body.email,
        signed_up_at_ms,
        properties_json,
    })
}

pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    let patch = profile_patch(body)?;
    let user = load_user(&state, &caller, id).await?;
    let updated = state
        .clients
        .users
        .clone()
        .update_app_user(pb::UpdateAppUserRequest {
            app_id: user.app_id,
            app_user_id: user.id,
            ..patch
        })
        .await?
        .into_inner();
    Ok(Json(user_json(&caller, updated)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventBody {
    name: Option<String>,
    /// Attributes to apply to the app user before the event fires.
    app_user: Option<UpdateBody>,
}

pub(crate) async fn track_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EventBody>,
) -> ApiResult<Json<Value>> {
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| Error::bad_request("name is required"))?;
    validate::short_field("name", &name)?;
    let patch = body.app_user.map(profile_patch).transpose()?;
    let mut user = load_user(&state, &caller, id).await?;
    if let Some(patch) = patch {
        user = state
            .clients
            .users
            .clone()
            .update_app_user(pb::UpdateAppUserRequest {
                app_id: user.app_id.clone(),
                app_user_id: user.id.clone(),
                ..patch
            })
            .await?
            .into_inner();
    }
    let (app_id, app_user_id) = (user.app_id.clone(), user.id.clone());
    let answer = state
        .clients
        .conversations
        .clone()
        .track_event(pb::TrackEventRequest {
            app_id: app_id.clone(),
            app_user_id: app_user_id.clone(),
            name,
            app_user: Some(user),
        })
        .await?
        .into_inner();
    if answer.conversation_created {
        state
            .clients
            .users
            .clone()
            .mark_conversation_started(pb::AppUserRef {
                app_id,
                app_user_id,
            })
            .await?;
    }
    Ok(Json(
        json!({"conversationUpdated": answer.conversation_updated}),
    ))
}
