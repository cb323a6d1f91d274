//! The push delivery log: the push worker's attempts, recorded in batches and listed per
//! app, newest first.

use chrono::{DateTime, Utc};
use proto::v1 as pb;
use sqlx::{PgExecutor, PgPool};

use crate::Result;

/// Page size when the request names none, and the largest one.
const DEFAULT_LIMIT: u32 = 25;
const MAX_LIMIT: u32 = 100;

/// A stored attempt.
#[derive(Debug, Clone)]
struct AttemptRow {
    id: String,
    app_id: String,
    app_user_id: String,
    device_id: String,
    platform: String,
    provider: String,
    status: String,
    error: Option<String>,
    message_id: String,
    attempt: i32,
    attempted_at: DateTime<Utc>,
}

impl From<AttemptRow> for pb::PushAttempt {
    fn from(row: AttemptRow) -> Self {
        pb::PushAttempt {
            id: row.id,
            app_id: row.app_id,
            app_user_id: row.app_user_id,
            device_id: row.device_id,
            platform: row.platform,
            provider: row.provider,
            status: row.status,
            error: row.error,
            message_id: row.message_id,
            attempt: u32::try_from(row.attempt).unwrap_or_default(),
            attempted_at_ms: row.attempted_at.timestamp_millis(),
        }
    }
}

/// Appends a batch of attempts in one statement, in the order given; attempts of apps
/// deleted meanwhile are dropped.
pub(crate) async fn record(pool: &PgPool, attempts: &[pb::PushAttempt]) -> Result<u64> {
    if attempts.is_empty() {
        return Ok(0);
    }
    let n = attempts.len();
    let col = |f: fn(&pb::PushAttempt) -> String| attempts.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<String> = attempts.iter().map(|_| domain::id::new_id()).collect();
    let errors: Vec<Option<String>> = attempts.iter().map(|a| a.error.clone()).collect();
    let numbers: Vec<i32> = attempts
        .iter()
        .map(|a| i32::try_from(a.attempt).unwrap_or(i32::MAX))
        .collect();
    let times: Vec<DateTime<Utc>> = attempts
        .iter()
        .map(|a| domain::time::to_datetime(a.attempted_at_ms))
        .collect();
    let recorded = sqlx::query!(
        "INSERT INTO users.push_attempts (id, app_id, app_user_id, device_id, platform, provider,
                                    status, error, message_id, attempt, attempted_at)
         SELECT t.id, t.app_id, t.app_user_id, t.device_id, t.platform, t.provider,
                t.status, t.error, t.message_id, t.attempt, t.attempted_at
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::int[], $11::timestamptz[])
              WITH ORDINALITY AS t(id, app_id, app_user_id, device_id, platform, provider,
                                   status, error, message_id, attempt, attempted_at, ord)
         -- Attempts of an app deleted since are dropped rather than failing the batch.
         WHERE EXISTS (SELECT 1 FROM users.apps WHERE apps.id = t.app_id)
         ORDER BY t.ord",
        &ids,
        &col(|a| a.app_id.clone()),
        &col(|a| a.app_user_id.clone()),
        &col(|a| a.device_id.clone()),
        &col(|a| a.platform.clone()),
        &col(|a| a.provider.clone()),
        &col(|a| a.status.clone()),
        // Null elements (no error) are fine in a text[]; the macro only knows `&[String]`.
        &errors as _,
        &col(|a| a.message_id.clone()),
        &numbers,
        &times,
    )
    .execute(pool)
    .await?
    .rows_affected();
    tracing::debug!(attempts = n, recorded, "push attempts recorded");
    Ok(recorded)
}

/// A page of the app's attempts, newest first.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    req: &pb::ListPushAttemptsRequest,
) -> Result<pb::ListPushAttemptsResponse> {
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if n <= MAX_LIMIT => n,
        n => {
            return Err(domain::Error::bad_request(format!(
                "limit must be 1 to {MAX_LIMIT}; got {n}"
            ))
            .into())
        }
    };
    // One more than the page tells whether older attempts remain.
    let mut rows: Vec<AttemptRow> = sqlx::query_as!(
        AttemptRow,
        "SELECT id, app_id, app_user_id, device_id, platform, provider, status, error,
                message_id, attempt, attempted_at
         FROM users.push_attempts WHERE app_id = $1
         ORDER BY seq DESC LIMIT $2 OFFSET $3",
        &req.app_id,
        i64::from(limit) + 1,
        i64::from(req.offset),
    )
    .fetch_all(db)
    .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(pb::ListPushAttemptsResponse {
        attempts: rows.into_iter().map(pb::PushAttempt::from).collect(),
        has_more,
    })
}

/// How long push attempts stay in the log: a week.
pub const RETENTION_HOURS: i32 = 7 * 24;

/// Rows deleted per statement, so one purge never holds long locks or a long transaction.
const PURGE_BATCH: i64 = 10_000;

/// Deletes the attempts recorded more than `retention_hours` ago; returns how many. The
/// oldest rows have the lowest `seq`, so each batch is a short walk of the primary key.
pub(crate) async fn purge(pool: &PgPool, retention_hours: i32) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let done = sqlx::query!(
            "DELETE FROM users.push_attempts WHERE seq IN (
                 SELECT seq FROM users.push_attempts
                  WHERE attempted_at < now() - make_interval(hours => $1)
                  ORDER BY seq LIMIT $2)",
            retention_hours,
            PURGE_BATCH,
        )
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}
