//! An app's configuration beyond keys: settings, the persistent menu and integrations,
//! their SQL and their handlers. The rules live in `domain::app_config`; secrets are
//! sealed here ([`crate::sealing`]) before they are stored, and read by no query that
//! answers the API.

use chrono::{DateTime, Utc};
use domain::app_config;
use proto::v1 as pb;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

use crate::sealing::SecretsKey;
use crate::storage::{self, AppRow};
use crate::Result;

/// A stored integration, without its secrets.
#[derive(Debug, Clone)]
struct IntegrationRow {
    app_id: String,
    id: String,
    /// The `type` column.
    kind: String,
    config: Value,
    created_at: DateTime<Utc>,
}

fn integration_to_pb(row: IntegrationRow) -> pb::Integration {
    pb::Integration {
        id: row.id,
        app_id: row.app_id,
        r#type: row.kind,
        config_json: row.config.to_string(),
        created_at_ms: row.created_at.timestamp_millis(),
    }
}

fn app_not_found(id: &str) -> domain::Error {
    domain::Error::not_found(format!("app {id} not found"))
}

fn integration_not_found(id: &str) -> domain::Error {
    domain::Error::not_found(format!("integration {id} not found"))
}

/// Parses JSON the gateway forwarded; text that is not JSON is the caller's error.
fn parse(field: &str, json: &str) -> Result<Value, domain::Error> {
    serde_json::from_str(json)
        .map_err(|e| domain::Error::bad_request(format!("{field} is not valid JSON: {e}")))
}

/// Renames the app and/or merges a settings patch into its settings, under a row lock so
/// concurrent updates of different settings both land.
pub(crate) async fn update_app(pool: &PgPool, req: pb::UpdateAppRequest) -> Result<AppRow> {
    if let Some(name) = &req.name {
        if name.trim().is_empty() {
            return Err(domain::Error::bad_request("name must not be blank").into());
        }
        domain::validate::short_field("name", name)?;
    }
    let patch = if req.settings_json.is_empty() {
        None
    } else {
        Some(app_config::settings_patch(&parse(
            "settings",
            &req.settings_json,
        )?)?)
    };
    let mut tx = pool.begin().await?;
    let stored = sqlx::query_scalar!(
        "SELECT settings FROM users.apps WHERE id = $1 FOR UPDATE",
        &req.app_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let mut settings = stored.ok_or_else(|| app_not_found(&req.app_id))?;
    if let Some(patch) = &patch {
        app_config::merge(&mut settings, patch);
    }
    let row = storage::update_app(
        &mut *tx,
        &req.app_id.as_str().into(),
        req.name.as_deref(),
        patch.as_ref().map(|_| &settings),
    )
    .await?
    .ok_or_else(|| app_not_found(&req.app_id))?;
    tx.commit().await?;
    tracing::info!(app_id = %req.app_id, "app updated");
    Ok(row)
}

/// The app's menu items (a JSON array).
pub(crate) async fn get_menu(db: impl PgExecutor<'_>, app_id: &str) -> Result<pb::Menu> {
    let menu = sqlx::query_scalar!("SELECT menu FROM users.apps WHERE id = $1", app_id)
        .fetch_optional(db)
        .await?;
    let items = menu.ok_or_else(|| app_not_found(app_id))?;
    Ok(pb::Menu {
        items_json: items.to_string(),
    })
}

/// Replaces the app's menu with checked items.
pub(crate) async fn set_menu(db: impl PgExecutor<'_>, req: pb::SetMenuRequest) -> Result<pb::Menu> {
    let items = Value::Array(app_config::menu_items(&parse("items", &req.items_json)?)?);
    let updated = sqlx::query_scalar!(
        "UPDATE users.apps SET menu = $2 WHERE id = $1 RETURNING menu",
        &req.app_id,
        &items,
    )
    .fetch_optional(db)
    .await?;
    let items = updated.ok_or_else(|| app_not_found(&req.app_id))?;
    tracing::info!(app_id = %req.app_id, "menu set");
    Ok(pb::Menu {
        items_json: items.to_string(),
    })
}

/// What an integration's sealed secrets are bound to: its app and id.
fn sealing_context(app_id: &str, integration_id: &str) -> String {
    format!("integration/{app_id}/{integration_id}")
}

/// The integration's secrets sealed for its row; `None` when it has none.
fn seal_secrets(
    key: &SecretsKey,
    app_id: &str,
    integration_id: &str,
    secrets: &Value,
) -> Result<Option<String>> {
    if secrets.as_object().is_some_and(|fields| fields.is_empty()) {
        return Ok(None);
    }
    let plaintext = serde_json::to_vec(secrets)
        .map_err(|e| crate::Error::Sealing(anyhow::Error::new(e).context("encoding secrets")))?;
    key.seal(&plaintext, &sealing_context(app_id, integration_id))
        .map(Some)
        .map_err(crate::Error::Sealing)
}

/// Stores a checked integration, its secrets sealed; an app has at most one of each type.
pub(crate) async fn create_integration(
    db: impl PgExecutor<'_>,
    key: &SecretsKey,
    req: pb::CreateIntegrationRequest,
) -> Result<pb::Integration> {
    let checked = app_config::integration(&parse("the body", &req.body_json)?)?;
    let id = domain::id::new_id();
    let sealed = seal_secrets(key, &req.app_id, &id, &Value::Object(checked.secrets))?;
    // `secrets` (plaintext) stays empty: only rows from before sealing use it.
    let row: IntegrationRow = sqlx::query_as!(
        IntegrationRow,
        "INSERT INTO users.integrations (app_id, id, type, config, sealed_secrets, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING app_id, id, type AS kind, config, created_at",
        &req.app_id,
        &id,
        &checked.kind,
        Value::Object(checked.config),
        sealed,
        domain::time::to_datetime(domain::time::now_ms()),
    )
    .fetch_one(db)
    .await
    .map_err(|e| match db::constraint(&e) {
        Some("integrations_app_id_type_key") => domain::Error::conflict(format!(
            "the app already has a {} integration; delete it before adding another",
            checked.kind
        ))
        .into(),
        Some("integrations_app_id_fkey") => app_not_found(&req.app_id).into(),
        _ => crate::Error::from(e),
    })?;
    tracing::info!(app_id = %row.app_id, integration_id = %row.id, kind = %row.kind, "integration created");
    Ok(integration_to_pb(row))
}

/// The app's integrations, oldest first, of the given types (every type when empty).
pub(crate) async fn list_integrations(
    db: impl PgExecutor<'_>,
    req: pb::ListIntegrationsRequest,
) -> Result<pb::ListIntegrationsResponse> {
    let rows: Vec<IntegrationRow> = sqlx::query_as!(
        IntegrationRow,
        "SELECT app_id, id, type AS kind, config, created_at FROM users.integrations
         WHERE app_id = $1 AND (cardinality($2::text[]) = 0 OR type = ANY($2))
         ORDER BY created_at, id",
        &req.app_id,
        &req.types,
    )
    .fetch_all(db)
    .await?;
    Ok(pb::ListIntegrationsResponse {
        integrations: rows.into_iter().map(integration_to_pb).collect(),
    })
}

/// One of the app's integrations.
pub(crate) async fn get_integration(
    db: impl PgExecutor<'_>,
    req: &pb::IntegrationRef,
) -> Result<pb::Integration> {
    let row: Option<IntegrationRow> = sqlx::query_as!(
        IntegrationRow,
        "SELECT app_id, id, type AS kind, config, created_at FROM users.integrations
         WHERE app_id = $1 AND id = $2",
        &req.app_id,
        &req.integration_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(integration_to_pb(row.ok_or_else(|| {
        integration_not_found(&req.integration_id)
    })?))
}

/// Deletes one of the app's integrations, secrets included.
pub(crate) async fn delete_integration(
    db: impl PgExecutor<'_>,
    req: &pb::IntegrationRef,
) -> Result<pb::Empty> {
    let deleted = sqlx::query!(
        "DELETE FROM users.integrations WHERE app_id = $1 AND id = $2",
        &req.app_id,
        &req.integration_id,
    )
    .execute(db)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(integration_not_found(&req.integration_id).into());
    }
    tracing::info!(app_id = %req.app_id, integration_id = %req.integration_id, "integration deleted");
    Ok(pb::Empty {})
}

/// The settings an app answers: what was stored over the defaults.
pub(crate) fn effective_settings_json(stored: &Value) -> String {
    app_config::effective_settings(stored).to_string()
}

/// A push integration's stored fields, secrets included: read only for the push worker.
#[derive(Debug, Clone)]
struct PushRow {
    id: String,
    /// The `type` column.
    kind: String,
    config: Value,
    /// Plaintext secrets of a row stored before sealing (until it is sealed).
    secrets: Value,
    sealed_secrets: Option<String>,
}

/// The secrets of an integration row: opened when sealed, as stored otherwise (a row
/// from before sealing that the start-up pass has not sealed yet).
fn open_secrets(
    key: &SecretsKey,
    app_id: &str,
    integration_id: &str,
    sealed: Option<&str>,
    plaintext: Value,
) -> Result<Value> {
    let Some(sealed) = sealed else {
        return Ok(plaintext);
    };
    let opened = key
        .open(sealed, &sealing_context(app_id, integration_id))
        .map_err(|e| {
            crate::Error::Sealing(
                e.context(format!("integration {integration_id} of app {app_id}")),
            )
        })?;
    serde_json::from_slice(&opened).map_err(|e| {
        crate::Error::Sealing(anyhow::Error::new(e).context(format!(
            "integration {integration_id} of app {app_id}: opened secrets are not JSON"
        )))
    })
}

/// The app's push credentials (`apn`, `fcm`), secrets opened, and its name. Internal:
/// only the push worker calls this; no gateway route reaches it.
pub(crate) async fn push_credentials(
    pool: &PgPool,
    key: &SecretsKey,
    app_id: &str,
) -> Result<pb::PushCredentials> {
    let app = storage::get_app(pool, &app_id.into())
        .await?
        .ok_or_else(|| app_not_found(app_id))?;
    let rows: Vec<PushRow> = sqlx::query_as!(
        PushRow,
        "SELECT id, type AS kind, config, secrets, sealed_secrets FROM users.integrations
         WHERE app_id = $1 AND type IN ('apn', 'fcm')",
        app_id,
    )
    .fetch_all(pool)
    .await?;
    let mut answer = pb::PushCredentials {
        app_name: app.name,
        apn: None,
        fcm: None,
    };
    for row in rows {
        let secrets = open_secrets(
            key,
            app_id,
            &row.id,
            row.sealed_secrets.as_deref(),
            row.secrets,
        )?;
        let credential = pb::PushCredential {
            integration_id: row.id,
            config_json: row.config.to_string(),
            secrets_json: secrets.to_string(),
        };
        match row.kind.as_str() {
            "apn" => answer.apn = Some(credential),
            _ => answer.fcm = Some(credential),
        }
    }
    Ok(answer)
}

/// Seals the plaintext secrets of integrations stored before sealing existed, a batch
/// per transaction (rows another replica is sealing are skipped); returns how many.
pub(crate) async fn seal_stored_secrets(pool: &PgPool, key: &SecretsKey) -> Result<u64> {
    let mut sealed = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query!(
            "SELECT app_id, id, secrets FROM users.integrations
             WHERE sealed_secrets IS NULL AND secrets <> '{}'
             LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(sealed);
        }
        for row in rows {
            let (app_id, id, secrets) = (row.app_id, row.id, row.secrets);
            let value = seal_secrets(key, &app_id, &id, &secrets)?;
            sqlx::query!(
                "UPDATE users.integrations SET sealed_secrets = $3, secrets = '{}'
                 WHERE app_id = $1 AND id = $2",
                &app_id,
                &id,
                value,
            )
            .execute(&mut *tx)
            .await?;
            sealed += 1;
        }
        tx.commit().await?;
    }
}

/// Forgets a device's push token if it is still `token` (the provider refused it); a
/// token refreshed meanwhile is kept.
pub(crate) async fn clear_push_token(
    db: impl PgExecutor<'_>,
    req: &pb::ClearPushTokenRequest,
) -> Result<pb::Empty> {
    let cleared = sqlx::query!(
        "UPDATE users.devices SET push_token = NULL
         WHERE app_id = $1 AND app_user_id = $2 AND device_id = $3 AND push_token = $4",
        &req.app_id,
        &req.app_user_id,
        &req.device_id,
        &req.token,
    )
    .execute(db)
    .await?
    .rows_affected();
    tracing::info!(app_id = %req.app_id, app_user_id = %req.app_user_id, device_id = %req.device_id, cleared, "push token refused by its provider");
    Ok(pb::Empty {})
}
