//! `/v1/appusers/{id}/pushToken` and `/v1/appusers/{id}/devices/{deviceId}`: the devices
//! of an app user, updated additively.

use axum::extract::{Path, State};
use axum::Json;
use domain::model::Device;
use domain::{validate, Error};
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use super::appusers::load_user;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushTokenBody {
    device_id: Option<String>,
    token: Option<String>,
}

/// `POST .../pushToken {deviceId, token}`: sets the push token of one of the user's
/// devices (404 when the user has no such device).
pub(crate) async fn push_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PushTokenBody>,
) -> ApiResult<Json<Value>> {
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    platform: Option<String>,
    app_version: Option<String>,
    push_notification_token: Option<String>,
    info: Option<Value>,
}

/// `PUT .../devices/{deviceId}`: adds the device or updates it additively (`info` keys
/// merge into the stored ones; fields left out keep their values).
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, device_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<DeviceBody>,
) -> ApiResult<Json<Value>> {
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
) -> ApiResult<Json<Value>> {
    let user = load_user(state, caller, id).await?;
    let device = state
        .clients
        .users
        .clone()
        .update_device(pb::UpdateDeviceRequest {
            app_id: user.app_id,
            app_user_id: user.id,
            device: Some(device),
            must_exist,
        })
        .await?
        .into_inner();
    Ok(Json(json!({"device": Device::from(device)})))
}
