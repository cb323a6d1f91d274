//! SQL of the delivery log: deliveries, their attempts, and requested retries.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One attempt as the worker reported it.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRow {
    pub(crate) delivery_id: String,
    pub(crate) app_id: String,
    pub(crate) webhook_id: String,
    pub(crate) event_id: String,
    pub(crate) trigger: String,
    pub(crate) attempt: i32,
    pub(crate) attempted_at: DateTime<Utc>,
    pub(crate) outcome: String,
    pub(crate) status_code: Option<i32>,
    pub(crate) latency_ms: i32,
    pub(crate) error: Option<String>,
    /// The job, on `failed` attempts only.
    pub(crate) job_json: Option<String>,
}

/// A stored delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) app_id: String,
    pub(crate) webhook_id: String,
    pub(crate) event_id: String,
    pub(crate) trigger: String,
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// A stored attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StoredAttempt {
    pub(crate) delivery_id: String,
    pub(crate) attempt: i32,
    pub(crate) attempted_at: DateTime<Utc>,
    pub(crate) outcome: String,
    pub(crate) status_code: Option<i32>,
    pub(crate) latency_ms: i32,
    pub(crate) error: Option<String>,
}

/// Upserts the deliveries (`latest`: one attempt per delivery, its newest) and appends
/// every attempt, in one transaction.
pub(crate) async fn record(
    pool: &PgPool,
    latest: &[&AttemptRow],
    attempts: &[AttemptRow],
    status_of: impl Fn(&str) -> &'static str,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let col = |f: fn(&AttemptRow) -> String| latest.iter().map(|a| f(a)).collect::<Vec<_>>();
    // The status follows the newest attempt: batches from several workers may arrive out
    // of order, so an older attempt never overwrites a newer one's status. New rows take
    // their `seq` (the log's order) in the order of `latest`.
    sqlx::query!(
        "INSERT INTO webhooks.deliveries (id, app_id, webhook_id, event_id, trigger, status, job,
                                 created_at, updated_at)
         SELECT id, app_id, webhook_id, event_id, trigger, status, job::jsonb, at, at
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[]) WITH ORDINALITY
              AS t(id, app_id, webhook_id, event_id, trigger, status, job, at, ord)
         ORDER BY ord
         ON CONFLICT (id) DO UPDATE SET
             status = EXCLUDED.status,
             job = COALESCE(EXCLUDED.job, deliveries.job),
             updated_at = EXCLUDED.updated_at
         WHERE deliveries.updated_at <= EXCLUDED.updated_at",
        &col(|a| a.delivery_id.clone()),
        &col(|a| a.app_id.clone()),
        &col(|a| a.webhook_id.clone()),
        &col(|a| a.event_id.clone()),
        &col(|a| a.trigger.clone()),
        &latest
            .iter()
            .map(|a| status_of(&a.outcome).to_owned())
            .collect::<Vec<_>>(),
        // Null elements (no job) are fine in a text[]; the macro only knows `&[String]`.
        &latest
            .iter()
            .map(|a| a.job_json.clone())
            .collect::<Vec<_>>() as _,
        &latest.iter().map(|a| a.attempted_at).collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, attempted_at, outcome,
                                        status_code, latency_ms, error)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::timestamptz[], $4::text[],
                              $5::int[], $6::int[], $7::text[])",
        &attempts
            .iter()
            .map(|a| a.delivery_id.clone())
            .collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>(),
        &attempts
            .iter()
            .map(|a| a.outcome.clone())
            .collect::<Vec<_>>(),
        // Null elements are fine in these arrays; the macro only knows `&[i32]`/`&[String]`.
        &attempts.iter().map(|a| a.status_code).collect::<Vec<_>>() as _,
        &attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.error.clone()).collect::<Vec<_>>() as _,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A page of a webhook's deliveries, newest first, older than `before` (a `seq`).
pub(crate) async fn list(
    pool: &PgPool,
    app_id: &str,
    webhook_id: &str,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as!(
        DeliveryRow,
        "SELECT seq, id, app_id, webhook_id, event_id, trigger, status, created_at, updated_at
         FROM webhooks.deliveries
         WHERE app_id = $1 AND webhook_id = $2 AND ($3::bigint IS NULL OR seq < $3)
         ORDER BY seq DESC LIMIT $4",
        app_id,
        webhook_id,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The attempts of `delivery_ids`, oldest first.
pub(crate) async fn attempts(
    pool: &PgPool,
    delivery_ids: &[String],
) -> sqlx::Result<Vec<StoredAttempt>> {
    sqlx::query_as!(
        StoredAttempt,
        "SELECT delivery_id, attempt, attempted_at, outcome, status_code, latency_ms, error
         FROM webhooks.delivery_attempts WHERE delivery_id = ANY($1) ORDER BY seq",
        delivery_ids,
    )
    .fetch_all(pool)
    .await
}

/// One delivery of a webhook.
pub(crate) async fn get(
    pool: &PgPool,
    app_id: &str,
    webhook_id: &str,
    id: &str,
) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_as!(
        DeliveryRow,
        "SELECT seq, id, app_id, webhook_id, event_id, trigger, status, created_at, updated_at
         FROM webhooks.deliveries WHERE app_id = $1 AND webhook_id = $2 AND id = $3",
        app_id,
        webhook_id,
        id,
    )
    .fetch_optional(pool)
    .await
}

/// Requests a retry of a failed delivery whose job is kept; `None` when it is not one.
pub(crate) async fn request_retry(
    pool: &PgPool,
    app_id: &str,
    webhook_id: &str,
    id: &str,
) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_as!(
        DeliveryRow,
        "UPDATE webhooks.deliveries
         SET status = 'pending', retry_requested_at = now(), retry_claimed_at = NULL,
             updated_at = now()
         WHERE app_id = $1 AND webhook_id = $2 AND id = $3
           AND status = 'failed' AND job IS NOT NULL
         RETURNING seq, id, app_id, webhook_id, event_id, trigger, status, created_at, updated_at",
        app_id,
        webhook_id,
        id,
    )
    .fetch_optional(pool)
    .await
}

/// Claims up to `limit` requested retries nobody holds (claims lapse after 30 s, so a
/// worker that died holding one does not lose it). Returns (delivery id, job JSON).
pub(crate) async fn claim_retries(
    pool: &PgPool,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    let rows = sqlx::query!(
        "UPDATE webhooks.deliveries SET retry_claimed_at = now()
         WHERE id IN (
             SELECT id FROM webhooks.deliveries
             WHERE retry_requested_at IS NOT NULL
               AND (retry_claimed_at IS NULL OR retry_claimed_at < now() - interval '30 seconds')
             ORDER BY retry_requested_at LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING id, job::text AS \"job!\"",
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.job)).collect())
}

/// Clears the retry requests of `ids`: their jobs are back on the broker.
pub(crate) async fn complete_retries(pool: &PgPool, ids: &[String]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE webhooks.deliveries SET retry_requested_at = NULL, retry_claimed_at = NULL
         WHERE id = ANY($1)",
        ids,
    )
    .execute(pool)
    .await?;
    Ok(())
}
