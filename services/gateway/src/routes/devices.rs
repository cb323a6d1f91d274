//! `/v1/appusers/{id}/pushToken` and `/v1/appusers/{id}/devices/{deviceId}`: the devices
//! of an app user, updated additively.

use axum::extract::State;
use axum::Json;
use domain::{validate, Error};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wire::model::Device;

use super::appusers::load_user;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::AppState;

/// `{"device": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceAnswer {
    device: Device,
}

/// The body of `POST .../pushToken`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushTokenBody {
    /// One of the user's device ids.
    #[schema(required = true, min_length = 1)]
    device_id: Option<String>,
    /// The push token.
    #[schema(required = true, min_length = 1)]
    token: Option<String>,
}

/// `POST .../pushToken {deviceId, token}`: sets the push token of one of the user's
/// devices (404 when the user has no such device).
#[utoipa::path(
    post, path = "/{id}/pushToken", tag = "appusers", operation_id = "setPushToken",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    request_body = PushTokenBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The device", body = DeviceAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn push_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PushTokenBody>,
) -> ApiResult<Json<DeviceAnswer>> {
    let device_id = body
        .device_id
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| Error::bad_request("deviceId is required"))?;
    let token = body
        .token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::bad_request("token is required"))?;
    validate::short_field("token", &token)?;
    let device = pb::Device {
        id: device_id,
        push_notification_token: Some(token),
        ..Default::default()
    };
    update_device(&state, &caller, id, device, true).await
}

/// A device's fields; those left out keep their values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    /// `ios`, `android`, `web` or `other`.
    platform: Option<String>,
    /// The app's version on the device.
    app_version: Option<String>,
    /// The device's push token.
    push_notification_token: Option<String>,
    /// Flat device properties, merged into the stored ones (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    info: Option<Value>,
}

/// `PUT .../devices/{deviceId}`: adds the device or updates it additively (`info` keys
/// merge into the stored ones; fields left out keep their values).
#[utoipa::path(
    put, path = "/{id}/devices/{device_id}", tag = "appusers", operation_id = "updateDevice",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("device_id" = String, Path, description = "The device id"),
    ),
    request_body = DeviceBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The device", body = DeviceAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, device_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<DeviceBody>,
) -> ApiResult<Json<DeviceAnswer>> {
    if let Some(platform) = &body.platform {
        validate::platform(platform).map_err(|_| {
            Error::bad_request(format!(
                "platform must be one of {}; got {platform:?}",
                validate::PLATFORMS.join(", ")
            ))
        })?;
    }
    let info_json = match &body.info {
        Some(Value::Null) | None => String::new(),
        Some(info) => Value::Object(validate::flat_object("info", info)?).to_string(),
    };
    let device = pb::Device {
        id: device_id,
        platform: body.platform.unwrap_or_default(),
        app_version: body.app_version,
        push_notification_token: body.push_notification_token,
        info_json,
        ..Default::default()
    };
    update_device(&state, &caller, id, device, false).await
}

async fn update_device(
    state: &AppState,
    caller: &Caller,
    id: String,
    device: pb::Device,
    must_exist: bool,
) -> ApiResult<Json<DeviceAnswer>> {
    let user = load_user(state, caller, id).await?;
    let device = state
        .clients
        .users
        .clone()
        .update_device(pb::UpdateDeviceRequest {
            app_id: user.app_id.clone(),
            app_user_id: user.id.clone(),
            device: Some(device),
            must_exist,
        })
        .await?
        .into_inner();
    super::appusers::forget(state, &user);
    Ok(Json(DeviceAnswer {
        device: Device::try_from(device)?,
    }))
}
