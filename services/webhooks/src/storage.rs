//! SQL of the webhooks schema. Every statement is scoped by app id.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A stored webhook.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub(crate) app_id: String,
    pub(crate) id: String,
    pub(crate) target: String,
    pub(crate) events: Vec<String>,
    pub(crate) secret: String,
    pub(crate) created_at: DateTime<Utc>,
}

pub(crate) async fn insert(pool: &PgPool, row: &WebhookRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO webhooks.webhooks (app_id, id, target, events, secret, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &row.app_id,
        &row.id,
        &row.target,
        &row.events,
        &row.secret,
        row.created_at,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn list(pool: &PgPool, app_id: &str) -> sqlx::Result<Vec<WebhookRow>> {
    sqlx::query_as!(
        WebhookRow,
        "SELECT app_id, id, target, events, secret, created_at FROM webhooks.webhooks
         WHERE app_id = $1 ORDER BY created_at, id",
        app_id,
    )
    .fetch_all(pool)
    .await
}

pub(crate) async fn get(pool: &PgPool, app_id: &str, id: &str) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as!(
        WebhookRow,
        "SELECT app_id, id, target, events, secret, created_at FROM webhooks.webhooks
         WHERE app_id = $1 AND id = $2",
        app_id,
        id,
    )
    .fetch_optional(pool)
    .await
}

/// Sets the target and/or events; `None` keeps the stored value.
pub(crate) async fn update(
    pool: &PgPool,
    app_id: &str,
    id: &str,
    target: Option<&str>,
    events: Option<&[String]>,
) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as!(
        WebhookRow,
        "UPDATE webhooks.webhooks SET target = COALESCE($3, target), events = COALESCE($4, events)
         WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, target, events, secret, created_at",
        app_id,
        id,
        target,
        events,
    )
    .fetch_optional(pool)
    .await
}

/// Deletes a webhook; false when it did not exist in this app.
pub(crate) async fn delete(pool: &PgPool, app_id: &str, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM webhooks.webhooks WHERE app_id = $1 AND id = $2",
        app_id,
        id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
