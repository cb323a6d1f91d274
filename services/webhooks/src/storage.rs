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
    sqlx::query(
        "INSERT INTO webhooks (app_id, id, target, events, secret, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.app_id)
    .bind(&row.id)
    .bind(&row.target)
    .bind(&row.events)
    .bind(&row.secret)
    .bind(row.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn list(pool: &PgPool, app_id: &str) -> sqlx::Result<Vec<WebhookRow>> {
    sqlx::query_as(
        "SELECT app_id, id, target, events, secret, created_at FROM webhooks
         WHERE app_id = $1 ORDER BY created_at, id",
    )
    .bind(app_id)
    .fetch_all(pool)
    .await
}

pub(crate) async fn get(pool: &PgPool, app_id: &str, id: &str) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as(
        "SELECT app_id, id, target, events, secret, created_at FROM webhooks
         WHERE app_id = $1 AND id = $2",
    )
    .bind(app_id)
    .bind(id)
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
    sqlx::query_as(
        "UPDATE webhooks SET target = COALESCE($3, target), events = COALESCE($4, events)
         WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, target, events, secret, created_at",
    )
    .bind(app_id)
    .bind(id)
    .bind(target)
    .bind(events)
    .fetch_optional(pool)
    .await
}

/// Deletes a webhook; false when it did not exist in this app.
pub(crate) async fn delete(pool: &PgPool, app_id: &str, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM webhooks WHERE app_id = $1 AND id = $2")
        .bind(app_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
