//! The delivery log's rules: turning reported attempts into delivery statuses, paging,
//! and which deliveries may be retried. SQL lives in `delivery_log`.

use std::collections::HashMap;

use proto::v1 as pb;
use sqlx::PgPool;

use crate::delivery_log::{self, AttemptRow, DeliveryRow, StoredAttempt};
use crate::Result;

/// Default and largest page of deliveries.
const DEFAULT_PAGE: u32 = 25;
const MAX_PAGE: u32 = 100;

/// Attempt outcomes the worker reports.
const OUTCOMES: [&str; 3] = ["succeeded", "retrying", "failed"];

/// The delivery status an attempt's outcome leaves behind.
fn status_of(outcome: &str) -> &'static str {
    match outcome {
        "succeeded" => "succeeded",
        "failed" => "failed",
        _ => "pending",
    }
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn to_row(a: pb::DeliveryAttempt) -> Result<AttemptRow> {
    if !OUTCOMES.contains(&a.outcome.as_str()) {
        return Err(domain::Error::bad_request(format!(
            "outcome must be one of {}; got {:?}",
            OUTCOMES.join(", "),
            a.outcome
        ))
        .into());
    }
    if a.delivery_id.is_empty() || a.app_id.is_empty() || a.webhook_id.is_empty() {
        return Err(
            domain::Error::bad_request("delivery_id, app_id and webhook_id are required").into(),
        );
    }
    Ok(AttemptRow {
        delivery_id: a.delivery_id,
        app_id: a.app_id,
        webhook_id: a.webhook_id,
        event_id: a.event_id,
        trigger: a.trigger,
        attempt: clamp_i32(a.attempt),
        attempted_at: domain::time::to_datetime(a.attempted_at_ms),
        outcome: a.outcome,
        status_code: a.status_code.map(clamp_i32),
        latency_ms: clamp_i32(a.latency_ms),
        error: a.error,
        job_json: (!a.job_json.is_empty()).then_some(a.job_json),
    })
}

/// Records a batch of attempts.
pub(crate) async fn record(pool: &PgPool, attempts: Vec<pb::DeliveryAttempt>) -> Result<()> {
    let rows = attempts
        .into_iter()
        .map(to_row)
        .collect::<Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    // One upsert row per delivery (Postgres cannot update a row twice in one statement):
    // its newest attempt, in the order the deliveries first appear in the batch, so that
    // new deliveries get their place in the log (`seq`) in the order they were attempted.
    let mut newest: HashMap<&str, (usize, &AttemptRow)> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let entry = newest.entry(row.delivery_id.as_str()).or_insert((i, row));
        if (row.attempted_at, row.attempt) >= (entry.1.attempted_at, entry.1.attempt) {
            entry.1 = row;
        }
    }
    let mut latest: Vec<(usize, &AttemptRow)> = newest.into_values().collect();
    latest.sort_by_key(|(first_seen, _)| *first_seen);
    let latest: Vec<&AttemptRow> = latest.into_iter().map(|(_, row)| row).collect();
    delivery_log::record(pool, &latest, &rows, status_of).await?;
    Ok(())
}

fn attempt_to_pb(d: &DeliveryRow, a: StoredAttempt) -> pb::DeliveryAttempt {
    pb::DeliveryAttempt {
        delivery_id: a.delivery_id,
        app_id: d.app_id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        trigger: d.trigger.clone(),
        attempt: u32::try_from(a.attempt).unwrap_or(0),
        attempted_at_ms: a.attempted_at.timestamp_millis(),
        outcome: a.outcome,
        status_code: a.status_code.and_then(|c| u32::try_from(c).ok()),
        latency_ms: u32::try_from(a.latency_ms).unwrap_or(0),
        error: a.error,
        job_json: String::new(),
    }
}

fn to_pb(d: DeliveryRow, attempts: Vec<StoredAttempt>) -> pb::Delivery {
    let attempts = attempts.into_iter().map(|a| attempt_to_pb(&d, a)).collect();
    pb::Delivery {
        id: d.id,
        app_id: d.app_id,
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        trigger: d.trigger,
        status: d.status,
        created_at_ms: d.created_at.timestamp_millis(),
        updated_at_ms: d.updated_at.timestamp_millis(),
        attempts,
    }
}

/// Attaches their attempts to `rows`.
async fn with_attempts(pool: &PgPool, rows: Vec<DeliveryRow>) -> Result<Vec<pb::Delivery>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut by_delivery: HashMap<String, Vec<StoredAttempt>> = HashMap::new();
    for a in delivery_log::attempts(pool, &ids).await? {
        by_delivery
            .entry(a.delivery_id.clone())
            .or_default()
            .push(a);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let attempts = by_delivery.remove(&r.id).unwrap_or_default();
            to_pb(r, attempts)
        })
        .collect())
}

/// A page of a webhook's deliveries (the caller checked the webhook exists).
pub(crate) async fn list(
    pool: &PgPool,
    req: &pb::ListDeliveriesRequest,
) -> Result<pb::ListDeliveriesResponse> {
    let limit = match req.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let before = if req.cursor.is_empty() {
        None
    } else {
        Some(req.cursor.parse::<i64>().map_err(|_| {
            domain::Error::bad_request("cursor is malformed; pass a previous page's cursor")
        })?)
    };
    let mut rows = delivery_log::list(
        pool,
        &req.app_id,
        &req.webhook_id,
        before,
        i64::from(limit) + 1,
    )
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(pb::ListDeliveriesResponse {
        deliveries: with_attempts(pool, rows).await?,
        next_cursor,
    })
}

/// Requests a retry of a failed delivery; a worker re-queues it within about a second.
pub(crate) async fn retry(pool: &PgPool, req: &pb::RetryDeliveryRequest) -> Result<pb::Delivery> {
    let row =
        match delivery_log::request_retry(pool, &req.app_id, &req.webhook_id, &req.delivery_id)
            .await?
        {
            Some(row) => row,
            None => {
                return Err(match delivery_log::get(
                    pool,
                    &req.app_id,
                    &req.webhook_id,
                    &req.delivery_id,
                )
                .await?
                {
                    None => {
                        domain::Error::not_found(format!("delivery {} not found", req.delivery_id))
                    }
                    Some(d) => domain::Error::conflict(format!(
                        "delivery {} is {}; only failed deliveries can be retried",
                        d.id, d.status
                    )),
                }
                .into())
            }
        };
    let mut out = with_attempts(pool, vec![row]).await?;
    out.pop().ok_or_else(|| domain::Error::internal().into())
}

/// Claims requested retries for a worker to re-queue.
pub(crate) async fn claim(pool: &PgPool, limit: u32) -> Result<pb::ClaimRetriesResponse> {
    let limit = i64::from(limit.clamp(1, MAX_PAGE));
    let retries = delivery_log::claim_retries(pool, limit)
        .await?
        .into_iter()
        .map(|(delivery_id, job_json)| pb::ClaimedRetry {
            delivery_id,
            job_json,
        })
        .collect();
    Ok(pb::ClaimRetriesResponse { retries })
}

/// Completes claimed retries.
pub(crate) async fn complete(pool: &PgPool, ids: &[String]) -> Result<()> {
    delivery_log::complete_retries(pool, ids).await?;
    Ok(())
}
