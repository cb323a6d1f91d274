//! `/v1/webhooks/{id}/deliveries`: a webhook's delivery log (every attempt of every event
//! sent to it) and redelivery of a failed delivery (JWT with `app` scope only).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde_json::{json, Map, Value};

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::AppState;

const WHAT: &str = "the webhook deliveries API";

/// Largest `limit` a page may ask for (the webhooks service's own cap).
const MAX_LIMIT: u32 = 100;

fn attempt_json(a: pb::DeliveryAttempt) -> Value {
    json!({
        "attempt": a.attempt,
        "attemptedAt": domain::time::iso(a.attempted_at_ms),
        "outcome": a.outcome,
        "statusCode": a.status_code,
        "latencyMs": a.latency_ms,
        "error": a.error,
    })
}

fn delivery_json(d: pb::Delivery) -> Value {
    json!({
        "_id": d.id,
        "webhookId": d.webhook_id,
        "eventId": d.event_id,
        "trigger": d.trigger,
        "status": d.status,
        "createdAt": domain::time::iso(d.created_at_ms),
        "updatedAt": domain::time::iso(d.updated_at_ms),
        "attempts": d.attempts.into_iter().map(attempt_json).collect::<Vec<_>>(),
    })
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
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let Query(query) =
        query.map_err(|e| Error::bad_request(format!("malformed query string: {e}")))?;
    let limit = limit_param(&query)?;
    let page = state
        .clients
        .webhooks
        .clone()
        .list_deliveries(pb::ListDeliveriesRequest {
            app_id: app_id.to_owned(),
            webhook_id: id,
            limit,
            cursor: query.get("cursor").cloned().unwrap_or_default(),
        })
        .await?
        .into_inner();
    let mut body = Map::new();
    body.insert(
        "deliveries".into(),
        Value::Array(page.deliveries.into_iter().map(delivery_json).collect()),
    );
    if let Some(cursor) = page.next_cursor {
        body.insert("nextCursor".into(), Value::String(cursor));
    }
    Ok(Json(Value::Object(body)))
}

/// `POST /v1/webhooks/{id}/deliveries/{deliveryId}/retry`: sends a failed delivery again
/// (a fresh round of attempts, same `webhook-id`); 409 unless it is `failed`.
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let delivery = state
        .clients
        .webhooks
        .clone()
        .retry_delivery(pb::RetryDeliveryRequest {
            app_id: app_id.to_owned(),
            webhook_id: id,
            delivery_id,
        })
        .await?
        .into_inner();
    Ok(Json(json!({"delivery": delivery_json(delivery)})))
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
