//! Whispers: messages shown to an app user on an event, each at most once per user.

use domain::id::{AppId, AppUserId};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

/// A stored whisper. `actions` is always a JSON array.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct WhisperRow {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) text: String,
    pub(crate) actions: Value,
    pub(crate) name: Option<String>,
    pub(crate) avatar_url: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) app_version: Option<String>,
    pub(crate) created_at_ms: i64,
}

pub(crate) async fn insert_whisper(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    w: &WhisperRow,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO conversations.whispers (app_id, id, event, text, actions, name, avatar_url, platform,
                               app_version, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::bigint::double precision / 1000))",
        app_id.as_str(),
        &w.id,
        &w.event,
        &w.text,
        &w.actions,
        w.name.as_deref(),
        w.avatar_url.as_deref(),
        w.platform.as_deref(),
        w.app_version.as_deref(),
        w.created_at_ms,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn list_whispers(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
) -> sqlx::Result<Vec<WhisperRow>> {
    sqlx::query_as!(
        WhisperRow,
        "SELECT id, event, text, actions, name, avatar_url, platform, app_version,
                (extract(epoch FROM created_at) * 1000)::bigint AS \"created_at_ms!\"
           FROM conversations.whispers WHERE app_id = $1 ORDER BY created_at, id",
        app_id.as_str(),
    )
    .fetch_all(db)
    .await
}

/// The whispers of `event`, oldest first.
pub(crate) async fn whispers_of_event(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    event: &str,
) -> sqlx::Result<Vec<WhisperRow>> {
    sqlx::query_as!(
        WhisperRow,
        "SELECT id, event, text, actions, name, avatar_url, platform, app_version,
                (extract(epoch FROM created_at) * 1000)::bigint AS \"created_at_ms!\"
           FROM conversations.whispers WHERE app_id = $1 AND event = $2 ORDER BY created_at, id",
        app_id.as_str(),
        event,
    )
    .fetch_all(db)
    .await
}

pub(crate) async fn get_whisper(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &str,
) -> sqlx::Result<Option<WhisperRow>> {
    sqlx::query_as!(
        WhisperRow,
        "SELECT id, event, text, actions, name, avatar_url, platform, app_version,
                (extract(epoch FROM created_at) * 1000)::bigint AS \"created_at_ms!\"
           FROM conversations.whispers WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        id,
    )
    .fetch_optional(db)
    .await
}

/// Replaces a whisper's fields (the caller merged the update in); false when missing.
pub(crate) async fn update_whisper(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    w: &WhisperRow,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE conversations.whispers SET event = $3, text = $4, actions = $5, name = $6, avatar_url = $7,
                             platform = $8, app_version = $9
          WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        &w.id,
        &w.event,
        &w.text,
        &w.actions,
        w.name.as_deref(),
        w.avatar_url.as_deref(),
        w.platform.as_deref(),
        w.app_version.as_deref(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a whisper (and its delivery records); false when missing.
pub(crate) async fn delete_whisper(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM conversations.whispers WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Claims a whisper's one delivery to an app user; false when it already reached them.
pub(crate) async fn claim_whisper(
    conn: &mut PgConnection,
    app_id: &AppId,
    whisper_id: &str,
    app_user_id: &AppUserId,
) -> sqlx::Result<bool> {
    let claimed: Option<bool> = sqlx::query_scalar!(
        "INSERT INTO conversations.whisper_deliveries (app_id, whisper_id, app_user_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING true AS \"claimed!\"",
        app_id.as_str(),
        whisper_id,
        app_user_id.as_str(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}
