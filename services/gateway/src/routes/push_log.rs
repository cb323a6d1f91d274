//! `/v1/push/deliveries`: the app's push delivery log, every attempt to send a push
//! notification to one of its users' devices, newest first (JWT with `app` scope, or
//! `account` scope under `/v1/apps/{appId}`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use proto::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::openapi::{AuthErrors, BodyErrors};
use crate::routes::paging::{limit_offset, PageQuery};
use crate::AppState;

const WHAT: &str = "the push delivery log";

/// One attempt to send a push notification to one device.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushDeliveryJson {
    /// The attempt's id.
    #[serde(rename = "_id")]
    id: String,
    /// The app user notified.
    app_user_id: String,
    /// The device (its `id` in init).
    device_id: String,
    /// The device's platform: `ios` or `android`.
    platform: String,
    /// `apns` or `fcm`.
    provider: String,
    /// `delivered`, `unregistered` (the token was refused and cleared), `retrying` (another
    /// attempt follows), `dead` (retries exhausted) or `failed` (refused for good).
    status: String,
    /// Why it was not delivered, when it was not (the provider's reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The message notified of.
    message_id: String,
    /// 1-based attempt number of this notification.
    attempt: u32,
    /// ISO 8601 time of the attempt.
    attempted_at: String,
}

impl From<pb::PushAttempt> for PushDeliveryJson {
    fn from(a: pb::PushAttempt) -> Self {
        PushDeliveryJson {
            id: a.id,
            app_user_id: a.app_user_id,
            device_id: a.device_id,
            platform: a.platform,
            provider: a.provider,
            status: a.status,
            error: a.error,
            message_id: a.message_id,
            attempt: a.attempt,
            attempted_at: domain::time::iso(a.attempted_at_ms),
        }
    }
}

/// `{"deliveries": [...], "hasMore", "offset"}`: a page of attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushDeliveriesAnswer {
    deliveries: Vec<PushDeliveryJson>,
    /// Whether older attempts follow this page.
    has_more: bool,
    /// The offset of this page.
    offset: u32,
}

/// The app's push delivery log: every attempt to send a notification to a device, newest
/// first, with its outcome.
#[utoipa::path(
    get, path = "/v1/push/deliveries", tag = "push", operation_id = "listPushDeliveries",
    params(PageQuery),
    security(("jwt" = [])),
    responses((status = 200, description = "A page of push attempts, newest first", body = PushDeliveriesAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<PushDeliveriesAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let (limit, offset) = limit_offset(query)?;
    let page = state
        .clients
        .users
        .clone()
        .list_push_attempts(pb::ListPushAttemptsRequest {
            app_id: app_id.to_string(),
            limit,
            offset,
        })
        .await?
        .into_inner();
    Ok(Json(PushDeliveriesAnswer {
        deliveries: page
            .attempts
            .into_iter()
            .map(PushDeliveryJson::from)
            .collect(),
        has_more: page.has_more,
        offset,
    }))
}
