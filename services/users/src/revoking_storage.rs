//! SQL of the changes that revoke credentials: deleting an app (reporting its token and
//! key ids, for the gateways' caches) and rotating an app token (reporting the old one).

use sqlx::PgPool;

use crate::storage::AppRow;

/// What deleting an app revoked.
#[derive(Debug, Clone)]
pub(crate) struct DeletedApp {
    pub(crate) app_token: String,
    pub(crate) key_ids: Vec<String>,
}

/// Deletes an app with its keys, app users and devices (by cascade) and reports its
/// credentials; `None` when it did not exist.
pub(crate) async fn delete_app(db: &PgPool, id: &str) -> sqlx::Result<Option<DeletedApp>> {
    let mut tx = db.begin().await?;
    // FOR UPDATE blocks key inserts (their foreign key check locks the app row), so the key
    // list below is complete when the app goes.
    let token = sqlx::query_scalar!(
        "SELECT app_token FROM users.apps WHERE id = $1 FOR UPDATE",
        id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(app_token) = token else {
        return Ok(None);
    };
    let key_ids = sqlx::query_scalar!("SELECT id FROM users.keys WHERE app_id = $1", id)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM users.apps WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(DeletedApp { app_token, key_ids }))
}

/// Gives an app `new_token`; returns the app and its previous token, `None` when the app
/// does not exist.
pub(crate) async fn rotate_app_token(
    db: &PgPool,
    id: &str,
    new_token: &str,
) -> sqlx::Result<Option<(AppRow, String)>> {
    // The sub-select locks the row and reads the token being replaced.
    let row = sqlx::query!(
        "UPDATE users.apps SET app_token = $2
             FROM (SELECT id, app_token FROM users.apps WHERE id = $1 FOR UPDATE) AS old
             WHERE apps.id = old.id
             RETURNING apps.id, apps.name, apps.app_token, apps.created_at, apps.settings,
                       old.app_token AS \"old_token!\"",
        id,
        new_token,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        (
            AppRow {
                id: r.id.into(),
                name: r.name,
                app_token: r.app_token,
                created_at: r.created_at,
                settings: r.settings,
            },
            r.old_token,
        )
    }))
}
