//! `/v1/init` and `/v1/appusers/{appUserId|userId}`: app users, their profile and events.

use auth::Principal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::{validate, Error};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wire::model::AppUser;

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, ConflictErrors, PathErrors};
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
            app_id: app_id.into(),
            id_or_user_id,
        })
        .await?
        .into_inner();
    caller.check_user_access(&user)?;
    Ok(user)
}

/// [`load_user`] through the gateway's cache of app users, for the paths that resolve one
/// on every request (posting a message, reading the conversation). The other paths, and
/// every change, read the users service itself.
pub(crate) async fn load_cached_user(
    state: &AppState,
    caller: &Caller,
    id_or_user_id: String,
) -> ApiResult<pb::AppUser> {
    let cache = &state.app_users;
    // Only while changes are heard of: otherwise a copy could outlive its change.
    if !cache.enabled() || !state.credentials.is_listening() {
        return load_user(state, caller, id_or_user_id).await;
    }
    let app_id = caller.app_id()?;
    if let Some(user) = cache.get(app_id.as_str(), &id_or_user_id) {
        caller.check_user_access(&user)?;
        return Ok(user);
    }
    let generation = cache.generation();
    let user = load_user(state, caller, id_or_user_id.clone()).await?;
    cache.remember(&id_or_user_id, &user, generation);
    Ok(user)
}

/// Drops `user` from this gateway's cache after a change this gateway made, so its caller
/// reads what it wrote (other replicas hear of it from the users service).
pub(crate) fn forget(state: &AppState, user: &pb::AppUser) {
    state.app_users.forget(&user.app_id, &user.id);
}

/// `{"appUser": ...}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppUserAnswer {
    app_user: AppUser,
}

/// The `{"appUser": ...}` answer, with devices for app-scope callers only.
pub(crate) fn user_json(caller: &Caller, user: pb::AppUser) -> ApiResult<AppUserAnswer> {
    Ok(AppUserAnswer {
        app_user: AppUser::from_pb(user, caller.is_app_scope())?,
    })
}

/// The device an SDK inits from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    /// The SDK's device id.
    #[schema(required = true, min_length = 1)]
    id: Option<String>,
    /// `ios`, `android`, `web` or `other`.
    #[schema(required = true, example = "ios")]
    platform: Option<String>,
    /// The app's version on the device.
    app_version: Option<String>,
    /// The device's push token.
    push_notification_token: Option<String>,
    /// Flat device properties (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    info: Option<Value>,
}

/// The body of `POST /v1/init`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitBody {
    /// The device.
    #[schema(required = true)]
    device: Option<DeviceBody>,
    /// The API consumer's id of a known user; an anonymous user when left out. With an
    /// appUser-scope token it must be the token's own `userId`.
    user_id: Option<String>,
}

/// The app, as init shows it to SDKs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitApp {
    /// The app id.
    #[serde(rename = "_id")]
    id: String,
    /// The app's name.
    name: String,
    /// Whether the app has an icon (never, here).
    has_icon: bool,
    /// Whether APNs is set up (an `apn` integration).
    apn_enabled: bool,
    /// Whether FCM/GCM is set up (an `fcm` integration).
    gcm_enabled: bool,
    /// The GCM/FCM sender id devices register with; `null` while the app has no `fcm`
    /// integration with a `senderId`.
    #[schema(example = "731399543244")]
    gcm_project: Option<String>,
    /// The app's settings; the Web Messenger reads `web` on start.
    #[schema(value_type = Object)]
    settings: Value,
    /// The app's integrations as `{_id, type, status, ...}`, without secrets.
    integrations: Vec<super::integrations::IntegrationJson>,
}

/// The answer of init: the app user and the app.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitAnswer {
    app_user: AppUser,
    app: InitApp,
}

/// Inits an app user from a device: what the SDKs do on start. Finds or creates the user
/// (by `userId`, else by device), and merges an anonymous user into a known one.
#[utoipa::path(
    post, path = "/v1/init", tag = "appusers", operation_id = "init",
    request_body = InitBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The app user and the app", body = InitAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn init(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<InitBody>,
) -> ApiResult<Json<InitAnswer>> {
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
        ) if asked != token_user.as_str() => {
            return Err(
                Error::forbidden("userId must match the userId of the appUser-scope token").into(),
            )
        }
        (Principal::AppUser { user_id, .. }, _) => Some(user_id.to_string()),
        (_, asked) => asked.filter(|u| !u.is_empty()),
    };
    if let Some(user_id) = &user_id {
        validate::short_field("userId", user_id)?;
    }
    let request = pb::InitRequest {
        app_id: app_id.to_string(),
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
    let mut users3 = state.clients.users.clone();
    let (user, app, integrations) = tokio::try_join!(
        users.init(request),
        users2.get_app(pb::GetAppRequest {
            app_id: app_id.to_string()
        }),
        users3.list_integrations(pb::ListIntegrationsRequest {
            app_id: app_id.into(),
            types: Vec::new(),
        })
    )?;
    let app = app.into_inner();
    let integrations = integrations.into_inner().integrations;
    let apn_enabled = integrations.iter().any(|i| i.r#type == "apn");
    let fcm = integrations.iter().find(|i| i.r#type == "fcm");
    let gcm_project = match fcm {
        Some(i) => match super::service_json("integration", &i.config_json)? {
            Value::Object(mut config) => match config.remove("senderId") {
                Some(Value::String(sender)) => Some(sender),
                _ => None,
            },
            _ => None,
        },
        None => None,
    };
    let gcm_enabled = fcm.is_some();
    // The users service merged (and moved the history of) any user this init joined.
    let user = user.into_inner();
    forget(&state, &user);
    Ok(Json(InitAnswer {
        app_user: user_json(&caller, user)?.app_user,
        app: InitApp {
            id: app.id,
            name: app.name,
            has_icon: false,
            apn_enabled,
            gcm_enabled,
            gcm_project,
            settings: super::service_json("settings", &app.settings_json)?,
            integrations: integrations
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
        },
    }))
}

/// The body of pre-creating an app user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateBody {
    /// The API consumer's id for the user.
    #[schema(required = true, min_length = 1)]
    user_id: Option<String>,
    #[serde(flatten)]
    profile: UpdateBody,
}

/// `POST /v1/appusers`: pre-creates a user with a userId (app scope only).
#[utoipa::path(
    post, path = "/", tag = "appusers", operation_id = "createAppUser",
    request_body = CreateBody,
    security(("jwt" = [])),
    responses((status = 201, description = "The new app user", body = AppUserAnswer), BodyErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<AppUserAnswer>)> {
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
            app_id: app_id.to_string(),
            user_id,
            given_name: profile.given_name,
            surname: profile.surname,
            email: profile.email,
            signed_up_at_ms: profile.signed_up_at_ms,
            properties_json: profile.properties_json,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(user_json(&caller, user)?)))
}

/// An app user, by `_id` or `userId` (devices for app-scope callers only).
#[utoipa::path(
    get, path = "/{id}", tag = "appusers", operation_id = "getAppUser",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The app user", body = AppUserAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AppUserAnswer>> {
    let user = load_user(&state, &caller, id).await?;
    Ok(Json(user_json(&caller, user)?))
}

/// Profile fields of an update (`PUT /v1/appusers/{id}`, pre-create, event attributes).
/// Updates are additive: fields left out keep their values; `properties` merge.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateBody {
    /// First name.
    given_name: Option<String>,
    /// Last name.
    surname: Option<String>,
    /// Email address.
    email: Option<String>,
    /// ISO 8601, as in `2015-10-08T23:52:11.677Z`.
    #[schema(example = "2015-10-08T23:52:11.677Z")]
    signed_up_at: Option<String>,
    /// Flat custom properties (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
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

/// Updates an app user's profile, additively.
#[utoipa::path(
    put, path = "/{id}", tag = "appusers", operation_id = "updateAppUser",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    request_body = UpdateBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The updated app user", body = AppUserAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<AppUserAnswer>> {
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
    forget(&state, &updated);
    announce_change(&state, &updated).await;
    Ok(Json(user_json(&caller, updated)?))
}

/// An app user event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventBody {
    /// The event name (whispers listen for it).
    #[schema(required = true, min_length = 1)]
    name: Option<String>,
    /// Attributes to apply to the app user before the event fires.
    app_user: Option<UpdateBody>,
}

/// `{"conversationUpdated": ...}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventAnswer {
    /// Whether a whisper was posted to the conversation.
    conversation_updated: bool,
}

/// Tracks an app user event, which may post whispers.
#[utoipa::path(
    post, path = "/{id}/events", tag = "appusers", operation_id = "trackEvent",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    request_body = EventBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 201, description = "The event was tracked; whether the conversation changed", body = EventAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn track_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EventBody>,
) -> ApiResult<(StatusCode, Json<EventAnswer>)> {
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
        forget(&state, &user);
    }
    // The conversations service fires the event's whispers and marks a conversation they
    // start.
    let answer = state
        .clients
        .conversations
        .clone()
        .track_event(pb::TrackEventRequest {
            app_id: user.app_id.clone(),
            app_user_id: user.id.clone(),
            name,
            app_user: Some(user),
        })
        .await?
        .into_inner();
    // 201, as the hosted API answered from 2016 (python-smooch accepts only 200/201).
    Ok((
        StatusCode::CREATED,
        Json(EventAnswer {
            conversation_updated: answer.conversation_updated,
        }),
    ))
}

/// Clears the app user's profile (`givenName`, `surname`, `email`, `properties`), keeping the
/// user, its ids, devices and conversation. JWT only (app scope, or the user's own appUser
/// scope), as smooch-core 3.x calls it.
#[utoipa::path(
    delete, path = "/{id}/profile", tag = "appusers", operation_id = "deleteProfile",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    security(("jwt" = [])),
    responses((status = 200, description = "The user with an empty profile", body = AppUserAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn delete_profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AppUserAnswer>> {
    if matches!(caller.0, Principal::AppToken { .. }) {
        return Err(
            Error::forbidden("clearing a profile needs a JWT (app or appUser scope)").into(),
        );
    }
    let user = load_user(&state, &caller, id).await?;
    let cleared = state
        .clients
        .users
        .clone()
        .clear_profile(pb::AppUserRef {
            app_id: user.app_id,
            app_user_id: user.id,
        })
        .await?
        .into_inner();
    forget(&state, &cleared);
    announce_change(&state, &cleared).await;
    Ok(Json(user_json(&caller, cleared)?))
}

/// Tells the user's real-time subscribers (`/v1/users/{appUserId}`) that the profile
/// changed, as an appUser-scope caller sees it (no devices). Best effort: the change has
/// committed, and a subscriber refetches on reconnect.
async fn announce_change(state: &AppState, user: &pb::AppUser) {
    let rendered = match AppUser::from_pb(user.clone(), false) {
        Ok(user) => serde_json::to_value(user),
        Err(e) => {
            tracing::error!(error = %e, "a stored app user does not parse");
            return;
        }
    };
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(e) => {
            tracing::error!(error = %e, "an app user does not serialize");
            return;
        }
    };
    if let Err(e) = state
        .activity
        .user_changed(&user.app_id, rendered, "update")
        .await
    {
        tracing::warn!(error = %e, app_id = %user.app_id, "profile change not published to real-time subscribers");
    }
}
