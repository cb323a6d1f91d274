//! Idempotency keys of message posts: the stored response replayed for a repeated key.

use domain::id::{AppId, AppUserId};
use sqlx::{PgConnection, PgPool};

use super::lock;

/// An `Idempotency-Key` of a message post, with the fingerprint of its request.
#[derive(Debug)]
pub(crate) struct IdempotencyKey<'a> {
    pub(crate) app_id: &'a AppId,
    pub(crate) app_user_id: &'a AppUserId,
    pub(crate) key: &'a str,
    pub(crate) request_hash: &'a str,
}

/// The response stored under an idempotency key.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredResponse {
    pub(crate) request_hash: String,
    /// The `PostMessageResponse` as protobuf bytes.
    pub(crate) response: Vec<u8>,
}

/// How long a stored response is replayed.
const IDEMPOTENCY_KEY_HOURS: i32 = 24;

/// Locks `key` for the rest of the transaction (so concurrent requests with the same key
/// wait for the first one's outcome) and returns its stored response, if one younger than
/// 24 h exists.
pub(crate) async fn lock_idempotency_key(
    conn: &mut PgConnection,
    key: &IdempotencyKey<'_>,
) -> sqlx::Result<Option<StoredResponse>> {
    let lock_key = format!("idempotency:{}:{}:{}", key.app_id, key.app_user_id, key.key);
    lock(&mut *conn, &lock_key).await?;
    sqlx::query_as!(
        StoredResponse,
        "SELECT request_hash, response FROM conversations.idempotency_keys
          WHERE app_id = $1 AND app_user_id = $2 AND key = $3
            AND created_at > now() - make_interval(hours => $4)",
        key.app_id.as_str(),
        key.app_user_id.as_str(),
        key.key,
        IDEMPOTENCY_KEY_HOURS,
    )
    .fetch_optional(conn)
    .await
}

/// Stores the response of a keyed post (replacing an expired one under the same key).
pub(crate) async fn store_idempotent_response(
    conn: &mut PgConnection,
    key: &IdempotencyKey<'_>,
    message_id: &str,
    response: &[u8],
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO conversations.idempotency_keys
                (app_id, app_user_id, key, request_hash, message_id, response)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (app_id, app_user_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id,
                response = EXCLUDED.response, created_at = now()",
        key.app_id.as_str(),
        key.app_user_id.as_str(),
        key.key,
        key.request_hash,
        message_id,
        response,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes idempotency keys past their 24 h, a bounded batch at a time; returns how many.
pub(crate) async fn delete_expired_idempotency_keys(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM conversations.idempotency_keys WHERE ctid IN (
             SELECT ctid FROM conversations.idempotency_keys
              WHERE created_at < now() - make_interval(hours => $1)
              LIMIT 10000)",
        IDEMPOTENCY_KEY_HOURS,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
