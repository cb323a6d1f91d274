//! `/v1/webhooks/{id}/deliveries`: a webhook's delivery log (every attempt of every event
//! sent to it) and redelivery of a failed delivery (JWT with `app` scope only).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::Path;
use crate::openapi::{AuthErrors, ConflictErrors, PathErrors};
use crate::AppState;

const WHAT: &str = "the webhook deliveries API";

/// Largest `limit` a page may ask for (the webhooks service's own cap).
const MAX_LIMIT: u32 = 100;

/// One attempt to deliver an event to a webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptJson {
    /// 1-based attempt number.
    attempt: u32,
    /// ISO 8601 time of the attempt.
    attempted_at: String,
    /// `succeeded`, `retrying` or `failed`.
    outcome: String,
    /// The target's HTTP status, when it answered.
    status_code: Option<u32>,
    /// How long the attempt took.
    latency_ms: u32,
    /// Why it failed, when it did.
    error: Option<String>,
}

impl From<pb::DeliveryAttempt> for AttemptJson {
    fn from(a: pb::DeliveryAttempt) -> Self {
        AttemptJson {
            attempt: a.attempt,
            attempted_at: domain::time::iso(a.attempted_at_ms),
            outcome: a.outcome,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
        }
    }
}

/// The delivery of one event to one webhook, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryJson {
    /// The delivery id (the `webhook-id` header of its attempts).
    #[serde(rename = "_id")]
    id: String,
    /// The webhook.
    webhook_id: String,
    /// The event delivered.
    event_id: String,
    /// The event's trigger.
    trigger: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    /// ISO 8601 time of the first attempt's scheduling.
    created_at: String,
    /// ISO 8601 time of the last change.
    updated_at: String,
    /// Attempts, oldest first.
    attempts: Vec<AttemptJson>,
}

impl From<pb::Delivery> for DeliveryJson {
    fn from(d: pb::Delivery) -> Self {
        DeliveryJson {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            trigger: d.trigger,
            status: d.status,
            created_at: domain::time::iso(d.created_at_ms),
            updated_at: domain::time::iso(d.updated_at_ms),
            attempts: d.attempts.into_iter().map(AttemptJson::from).collect(),
        }
    }
}

/// A page of a webhook's deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveriesAnswer {
    deliveries: Vec<DeliveryJson>,
    /// Present when older deliveries remain: the `cursor` of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// `{"delivery": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryAnswer {
    delivery: DeliveryJson,
}

/// `limit` from the query: 1 to [`MAX_LIMIT`]; absent means the service's default (25).
fn limit_param(query: &HashMap<String, String>) -> ApiResult<u32> {
    let Some(raw) = query.get("limit") else {
        return Ok(0);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::bad_request(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}; got {raw:?}"
        ))
        .into()),
    }
}

/// `GET /v1/webhooks/{id}/deliveries?limit=&cursor=`: the webhook's deliveries, newest
/// first, each with its attempts (oldest first). `nextCursor` is present when older
/// deliveries remain; pass it as `cursor` for the next page.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "listDeliveries",
    params(
        ("id" = String, Path, description = "The webhook id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page"),
    ),
    security(("jwt" = [])),
    responses((status = 200, description = "A page of deliveries, newest first", body = DeliveriesAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<DeliveriesAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let Query(query) =
        query.map_err(|e| Error::bad_request(format!("malformed query string: {e}")))?;
    let limit = limit_param(&query)?;
    let page = state
        .clients
        .webhooks
        .clone()
        .list_deliveries(pb::ListDeliveriesRequest {
            app_id: app_id.to_string(),
            webhook_id: id,
            limit,
            cursor: query.get("cursor").cloned().unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(DeliveriesAnswer {
        deliveries: page
            .deliveries
            .into_iter()
            .map(DeliveryJson::from)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/webhooks/{id}/deliveries/{deliveryId}/retry`: sends a failed delivery again
/// (a fresh round of attempts, same `webhook-id`); 409 unless it is `failed`.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks", operation_id = "retryDelivery",
    params(
        ("id" = String, Path, description = "The webhook id"),
        ("delivery_id" = String, Path, description = "The delivery id"),
    ),
    security(("jwt" = [])),
    responses((status = 200, description = "The delivery, pending again", body = DeliveryAnswer), PathErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let delivery = state
        .clients
        .webhooks
        .clone()
        .retry_delivery(pb::RetryDeliveryRequest {
            app_id: app_id.to_string(),
            webhook_id: id,
            delivery_id,
        })
        .await?
        .into_inner();
    Ok(Json(DeliveryAnswer {
        delivery: delivery.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        let q = |v: &str| HashMap::from([("limit".to_owned(), v.to_owned())]);
        assert_eq!(limit_param(&HashMap::new()).ok(), Some(0));
        assert_eq!(limit_param(&q("10")).ok(), Some(10));
        for bad in ["0", "101", "-1", "ten"] {
            assert!(limit_param(&q(bad)).is_err(), "{bad}");
        }
    }
}
