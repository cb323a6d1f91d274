//! SQL of the users schema. Every statement is scoped by app id, except the credential
//! lookups (by app token, by key id) that find the app in the first place and the
//! account-scope keys, which belong to no app.

use chrono::{DateTime, Utc};
use domain::{AppId, AppUserId};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

/// A stored app.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AppRow {
    #[sqlx(try_from = "String")]
    pub(crate) id: AppId,
    pub(crate) name: String,
    pub(crate) app_token: String,
    pub(crate) created_at: DateTime<Utc>,
    /// What was set, a JSON object (defaults are merged in when answering).
    pub(crate) settings: Value,
}

/// A stored secret key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    /// `None` for account-scope keys.
    pub(crate) app_id: Option<String>,
    pub(crate) name: String,
    pub(crate) secret: String,
    pub(crate) scope: String,
    pub(crate) created_at: DateTime<Utc>,
}

/// A stored app user, without devices.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AppUserRow {
    #[sqlx(try_from = "String")]
    pub(crate) app_id: AppId,
    #[sqlx(try_from = "String")]
    pub(crate) id: AppUserId,
    pub(crate) user_id: Option<String>,
    pub(crate) given_name: Option<String>,
    pub(crate) surname: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) signed_up_at: DateTime<Utc>,
    /// Always a JSON object.
    pub(crate) properties: Value,
    pub(crate) conversation_started: bool,
}

/// One app user's view of a device.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub(crate) device_id: String,
    pub(crate) platform: String,
    pub(crate) app_version: Option<String>,
    pub(crate) push_token: Option<String>,
    /// Always a JSON object.
    pub(crate) info: Value,
    pub(crate) active: bool,
    pub(crate) last_seen: DateTime<Utc>,
}

/// The profile fields an update sets; `None` keeps the stored value.
#[derive(Debug, Default)]
pub(crate) struct ProfilePatch {
    pub(crate) given_name: Option<String>,
    pub(crate) surname: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) signed_up_at: Option<DateTime<Utc>>,
    /// A JSON object whose keys replace the stored ones; `{}` changes nothing.
    pub(crate) properties: Value,
}

/// An [`AppRow`] as the `query_as!` macros read it (ids as text).
#[derive(Debug)]
struct AppRecord {
    id: String,
    name: String,
    app_token: String,
    created_at: DateTime<Utc>,
    settings: Value,
}

impl From<AppRecord> for AppRow {
    fn from(r: AppRecord) -> Self {
        AppRow {
            id: r.id.into(),
            name: r.name,
            app_token: r.app_token,
            created_at: r.created_at,
            settings: r.settings,
        }
    }
}

/// An [`AppUserRow`] as the `query_as!` macros read it (ids as text).
#[derive(Debug)]
struct AppUserRecord {
    app_id: String,
    id: String,
    user_id: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    email: Option<String>,
    signed_up_at: DateTime<Utc>,
    properties: Value,
    conversation_started: bool,
}

impl From<AppUserRecord> for AppUserRow {
    fn from(r: AppUserRecord) -> Self {
        AppUserRow {
            app_id: r.app_id.into(),
            id: r.id.into(),
            user_id: r.user_id,
            given_name: r.given_name,
            surname: r.surname,
            email: r.email,
            signed_up_at: r.signed_up_at,
            properties: r.properties,
            conversation_started: r.conversation_started,
        }
    }
}

// ---- apps ----

pub(crate) async fn insert_app(db: impl PgExecutor<'_>, row: &AppRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users.apps (id, name, app_token, created_at) VALUES ($1, $2, $3, $4)",
        row.id.as_str(),
        &row.name,
        &row.app_token,
        row.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Apps newest first: `limit` of them (every one when `None`) after skipping `offset`.
pub(crate) async fn list_apps(
    db: impl PgExecutor<'_>,
    limit: Option<i64>,
    offset: i64,
) -> sqlx::Result<Vec<AppRow>> {
    sqlx::query_as!(
        AppRecord,
        "SELECT id, name, app_token, created_at, settings FROM users.apps
         ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
        limit,
        offset,
    )
    .fetch_all(db)
    .await
    .map(|rows| rows.into_iter().map(AppRow::from).collect())
}

pub(crate) async fn get_app(db: impl PgExecutor<'_>, id: &AppId) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as!(
        AppRecord,
        "SELECT id, name, app_token, created_at, settings FROM users.apps WHERE id = $1",
        id.as_str(),
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppRow::from))
}

/// Renames an app and/or replaces its stored settings (a JSON object).
pub(crate) async fn update_app(
    db: impl PgExecutor<'_>,
    id: &AppId,
    name: Option<&str>,
    settings: Option<&Value>,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as!(
        AppRecord,
        "UPDATE users.apps SET name = COALESCE($2, name), settings = COALESCE($3, settings)
         WHERE id = $1
         RETURNING id, name, app_token, created_at, settings",
        id.as_str(),
        name,
        settings,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppRow::from))
}

/// The app an app token belongs to (unique index on `app_token`).
pub(crate) async fn app_by_token(
    db: impl PgExecutor<'_>,
    app_token: &str,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as!(
        AppRecord,
        "SELECT id, name, app_token, created_at, settings FROM users.apps WHERE app_token = $1",
        app_token,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppRow::from))
}

// ---- keys ----

pub(crate) async fn insert_key(db: impl PgExecutor<'_>, row: &KeyRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users.keys (id, app_id, name, secret, scope, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &row.id,
        row.app_id.as_deref(),
        &row.name,
        &row.secret,
        &row.scope,
        row.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn list_keys(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as!(
        KeyRow,
        "SELECT id, app_id, name, secret, scope, created_at FROM users.keys
         WHERE app_id = $1 ORDER BY created_at, id",
        app_id.as_str(),
    )
    .fetch_all(db)
    .await
}

/// Deletes an app's key; false when the app has no key of that id.
pub(crate) async fn delete_key(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    key_id: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM users.keys WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        key_id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Any key by id (the JWT `kid`): primary-key lookup.
pub(crate) async fn key_by_id(
    db: impl PgExecutor<'_>,
    key_id: &str,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as!(
        KeyRow,
        "SELECT id, app_id, name, secret, scope, created_at FROM users.keys WHERE id = $1",
        key_id,
    )
    .fetch_optional(db)
    .await
}

/// Creates or updates the account-scope key `id` with `secret` and `name`. `None` when
/// `id` is taken by an app-scope key, which is left alone.
pub(crate) async fn upsert_account_key(
    db: impl PgExecutor<'_>,
    id: &str,
    name: &str,
    secret: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "INSERT INTO users.keys (id, app_id, name, secret, scope) VALUES ($1, NULL, $2, $3, 'account')
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, secret = EXCLUDED.secret
             WHERE keys.scope = 'account'
         RETURNING id",
        id,
        name,
        secret,
    )
    .fetch_optional(db)
    .await
}

/// The oldest account-scope key's id, if any.
pub(crate) async fn first_account_key(db: impl PgExecutor<'_>) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT id FROM users.keys WHERE scope = 'account' ORDER BY created_at, id LIMIT 1",
    )
    .fetch_optional(db)
    .await
}

// ---- locks ----

/// Takes a transaction-scoped advisory lock on `key`, waiting for whoever holds it. The
/// first half of the two-int lock key namespaces our locks apart from other services'
/// in the same database; hash collisions only serialize more than needed.
pub(crate) async fn lock(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('smooch.users'), hashtext($1))",
        key,
    )
    .execute(conn)
    .await?;
    Ok(())
}

// ---- app users ----

pub(crate) async fn user_by_id(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &AppUserId,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "SELECT app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                conversation_started
         FROM users.app_users WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        id.as_str(),
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

pub(crate) async fn user_by_user_id(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    user_id: &str,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "SELECT app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                conversation_started
         FROM users.app_users WHERE app_id = $1 AND user_id = $2",
        app_id.as_str(),
        user_id,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

/// The device's active user (the most recent to init on it), if any.
pub(crate) async fn active_user_of_device(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    device_id: &str,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "SELECT u.app_id, u.id, u.user_id, u.given_name, u.surname, u.email, u.signed_up_at,
                u.properties, u.conversation_started
         FROM users.devices d JOIN users.app_users u ON u.app_id = d.app_id AND u.id = d.app_user_id
         WHERE d.app_id = $1 AND d.device_id = $2 AND d.active
         ORDER BY d.last_seen DESC LIMIT 1",
        app_id.as_str(),
        device_id,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

/// The anonymous (no userId) user most recently seen on the device, if any.
pub(crate) async fn anonymous_user_of_device(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    device_id: &str,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "SELECT u.app_id, u.id, u.user_id, u.given_name, u.surname, u.email, u.signed_up_at,
                u.properties, u.conversation_started
         FROM users.devices d JOIN users.app_users u ON u.app_id = d.app_id AND u.id = d.app_user_id
         WHERE d.app_id = $1 AND d.device_id = $2 AND u.user_id IS NULL
         ORDER BY d.last_seen DESC LIMIT 1",
        app_id.as_str(),
        device_id,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

pub(crate) async fn insert_user(db: impl PgExecutor<'_>, row: &AppUserRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users.app_users (app_id, id, user_id, given_name, surname, email, signed_up_at,
                                properties, conversation_started)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        row.app_id.as_str(),
        row.id.as_str(),
        row.user_id.as_deref(),
        row.given_name.as_deref(),
        row.surname.as_deref(),
        row.email.as_deref(),
        row.signed_up_at,
        &row.properties,
        row.conversation_started,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Gives an app user a userId and returns the user.
pub(crate) async fn set_user_id(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &AppUserId,
    user_id: &str,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "UPDATE users.app_users SET user_id = $3 WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                   conversation_started",
        app_id.as_str(),
        id.as_str(),
        user_id,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

/// Applies `patch` to an app user: only the given fields change, and properties merge
/// key by key (`jsonb ||`).
pub(crate) async fn update_user(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &AppUserId,
    patch: &ProfilePatch,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "UPDATE users.app_users SET
             given_name = COALESCE($3, given_name),
             surname = COALESCE($4, surname),
             email = COALESCE($5, email),
             signed_up_at = COALESCE($6, signed_up_at),
             properties = properties || $7
         WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                   conversation_started",
        app_id.as_str(),
        id.as_str(),
        patch.given_name.as_deref(),
        patch.surname.as_deref(),
        patch.email.as_deref(),
        patch.signed_up_at,
        &patch.properties,
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

/// Records that the app user's conversation exists; false when there is no such user.
pub(crate) async fn mark_conversation_started(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &AppUserId,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users.app_users SET conversation_started = true WHERE app_id = $1 AND id = $2",
        app_id.as_str(),
        id.as_str(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Clears the profile of an app user (names, email, properties); `None` when there is no
/// such user in the app.
pub(crate) async fn clear_profile(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    id: &AppUserId,
) -> sqlx::Result<Option<AppUserRow>> {
    sqlx::query_as!(
        AppUserRecord,
        "UPDATE users.app_users SET given_name = NULL, surname = NULL, email = NULL,
                              properties = '{}'::jsonb
         WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                   conversation_started",
        app_id.as_str(),
        id.as_str(),
    )
    .fetch_optional(db)
    .await
    .map(|r| r.map(AppUserRow::from))
}

// ---- devices ----

/// Creates or refreshes the app user's row for a device and makes it active. Optional
/// fields left out keep their stored value; `info` merges into the stored info.
pub(crate) async fn upsert_device(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    app_user_id: &AppUserId,
    device: &DeviceRow,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users.devices (app_id, app_user_id, device_id, platform, app_version, push_token,
                              info, active, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8)
         ON CONFLICT (app_id, app_user_id, device_id) DO UPDATE SET
             platform = EXCLUDED.platform,
             app_version = COALESCE(EXCLUDED.app_version, devices.app_version),
             push_token = COALESCE(EXCLUDED.push_token, devices.push_token),
             info = devices.info || EXCLUDED.info,
             active = true,
             last_seen = EXCLUDED.last_seen",
        app_id.as_str(),
        app_user_id.as_str(),
        &device.device_id,
        &device.platform,
        device.app_version.as_deref(),
        device.push_token.as_deref(),
        &device.info,
        device.last_seen,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks the device inactive for every user of the app but `app_user_id`.
pub(crate) async fn deactivate_device_for_others(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    device_id: &str,
    app_user_id: &AppUserId,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users.devices SET active = false
         WHERE app_id = $1 AND device_id = $2 AND app_user_id <> $3 AND active",
        app_id.as_str(),
        device_id,
        app_user_id.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An app user's devices, most recently seen first.
pub(crate) async fn devices_of(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    app_user_id: &AppUserId,
) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as!(
        DeviceRow,
        "SELECT device_id, platform, app_version, push_token, info, active, last_seen
         FROM users.devices WHERE app_id = $1 AND app_user_id = $2
         ORDER BY last_seen DESC, device_id",
        app_id.as_str(),
        app_user_id.as_str(),
    )
    .fetch_all(db)
    .await
}

/// Which column a user lookup matches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserKey<'a> {
    /// The `_id`.
    Id(&'a str),
    /// The API consumer's `userId`.
    UserId(&'a str),
}

/// A user and its devices (most recently seen first) in one round trip: what every
/// request naming a user reads.
pub(crate) async fn user_with_devices(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    key: UserKey<'_>,
) -> sqlx::Result<Option<(AppUserRow, Vec<DeviceRow>)>> {
    let (by_id, value) = match key {
        UserKey::Id(id) => (true, id),
        UserKey::UserId(user_id) => (false, user_id),
    };
    // The arrays hold one element per device; `Vec<Option<_>>` where a device may lack
    // the field.
    let row = sqlx::query!(
        "SELECT u.app_id, u.id, u.user_id, u.given_name, u.surname, u.email, u.signed_up_at,
                u.properties, u.conversation_started,
                COALESCE(d.device_ids, '{}') AS \"device_ids!\",
                COALESCE(d.platforms, '{}') AS \"platforms!\",
                COALESCE(d.app_versions, '{}') AS \"app_versions!: Vec<Option<String>>\",
                COALESCE(d.push_tokens, '{}') AS \"push_tokens!: Vec<Option<String>>\",
                COALESCE(d.infos, '{}') AS \"infos!\",
                COALESCE(d.actives, '{}') AS \"actives!\",
                COALESCE(d.last_seens, '{}') AS \"last_seens!\"
           FROM users.app_users u
           CROSS JOIN LATERAL (
               SELECT array_agg(device_id ORDER BY last_seen DESC, device_id) AS device_ids,
                      array_agg(platform ORDER BY last_seen DESC, device_id) AS platforms,
                      array_agg(app_version ORDER BY last_seen DESC, device_id) AS app_versions,
                      array_agg(push_token ORDER BY last_seen DESC, device_id) AS push_tokens,
                      array_agg(info ORDER BY last_seen DESC, device_id) AS infos,
                      array_agg(active ORDER BY last_seen DESC, device_id) AS actives,
                      array_agg(last_seen ORDER BY last_seen DESC, device_id) AS last_seens
                 FROM users.devices WHERE app_id = u.app_id AND app_user_id = u.id
           ) AS d
          WHERE u.app_id = $1 AND CASE WHEN $3 THEN u.id = $2 ELSE u.user_id = $2 END",
        app_id.as_str(),
        value,
        by_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let devices = r
            .device_ids
            .into_iter()
            .zip(r.platforms)
            .zip(r.app_versions)
            .zip(r.push_tokens)
            .zip(r.infos)
            .zip(r.actives)
            .zip(r.last_seens)
            .map(
                |(
                    (((((device_id, platform), app_version), push_token), info), active),
                    last_seen,
                )| {
                    DeviceRow {
                        device_id,
                        platform,
                        app_version,
                        push_token,
                        info,
                        active,
                        last_seen,
                    }
                },
            )
            .collect();
        let user = AppUserRow {
            app_id: r.app_id.into(),
            id: r.id.into(),
            user_id: r.user_id,
            given_name: r.given_name,
            surname: r.surname,
            email: r.email,
            signed_up_at: r.signed_up_at,
            properties: r.properties,
            conversation_started: r.conversation_started,
        };
        (user, devices)
    }))
}

/// Adds to or updates one of an app user's devices. A new device is `other` unless a
/// platform is given, and becomes the device's active user; an existing one keeps its
/// active flag. Optional fields left out keep their stored value; `info` merges in.
/// `None` when `must_exist` and the app user has no such device.
pub(crate) async fn update_device(
    conn: &mut PgConnection,
    app_id: &AppId,
    app_user_id: &AppUserId,
    device: &DeviceRow,
    must_exist: bool,
) -> sqlx::Result<Option<DeviceRow>> {
    let existing: Option<bool> = sqlx::query_scalar!(
        "SELECT true AS \"exists!\" FROM users.devices WHERE app_id = $1 AND app_user_id = $2 AND device_id = $3",
        app_id.as_str(),
        app_user_id.as_str(),
        &device.device_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if existing.is_none() && must_exist {
        return Ok(None);
    }
    let row: DeviceRow = sqlx::query_as!(
        DeviceRow,
        "INSERT INTO users.devices (app_id, app_user_id, device_id, platform, app_version, push_token,
                              info, active, last_seen)
         VALUES ($1, $2, $3, COALESCE(NULLIF($4, ''), 'other'), $5, $6, $7, true, $8)
         ON CONFLICT (app_id, app_user_id, device_id) DO UPDATE SET
             platform = COALESCE(NULLIF($4, ''), devices.platform),
             app_version = COALESCE(EXCLUDED.app_version, devices.app_version),
             push_token = COALESCE(EXCLUDED.push_token, devices.push_token),
             info = devices.info || EXCLUDED.info,
             last_seen = EXCLUDED.last_seen
         RETURNING device_id, platform, app_version, push_token, info, active, last_seen",
        app_id.as_str(),
        app_user_id.as_str(),
        &device.device_id,
        &device.platform,
        device.app_version.as_deref(),
        device.push_token.as_deref(),
        &device.info,
        device.last_seen,
    )
    .fetch_one(&mut *conn)
    .await?;
    if existing.is_none() {
        deactivate_device_for_others(&mut *conn, app_id, &device.device_id, app_user_id).await?;
    }
    Ok(Some(row))
}

// ---- merges ----

/// The app user `from_id` was merged into, if it was.
pub(crate) async fn merged_into(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    from_id: &AppUserId,
) -> sqlx::Result<Option<AppUserId>> {
    let into: Option<String> = sqlx::query_scalar!(
        "SELECT into_app_user_id FROM users.user_merges
         WHERE app_id = $1 AND from_app_user_id = $2",
        app_id.as_str(),
        from_id.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(into.map(AppUserId::from))
}

/// Folds app user `from` into `into`, in the caller's transaction: `from`'s devices move
/// to `into` (where both have a device, `into`'s values win and info merges), profile
/// fields and properties `into` lacks are taken from `from`, `from` is deleted and the
/// merge is recorded as pending. Returns the updated `into`.
pub(crate) async fn merge_users(
    conn: &mut PgConnection,
    from: &AppUserRow,
    into: &AppUserRow,
) -> sqlx::Result<AppUserRow> {
    let app_id = into.app_id.as_str();
    sqlx::query!(
        "INSERT INTO users.devices (app_id, app_user_id, device_id, platform, app_version, push_token,
                              info, active, last_seen)
         SELECT app_id, $3, device_id, platform, app_version, push_token, info, active, last_seen
           FROM users.devices WHERE app_id = $1 AND app_user_id = $2
         ON CONFLICT (app_id, app_user_id, device_id) DO UPDATE SET
             app_version = COALESCE(devices.app_version, EXCLUDED.app_version),
             push_token = COALESCE(devices.push_token, EXCLUDED.push_token),
             info = EXCLUDED.info || devices.info,
             active = devices.active OR EXCLUDED.active,
             last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen)",
        app_id,
        from.id.as_str(),
        into.id.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    // Deleting the user cascades to its (now copied) device rows.
    sqlx::query!(
        "DELETE FROM users.app_users WHERE app_id = $1 AND id = $2",
        app_id,
        from.id.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO users.user_merges (app_id, from_app_user_id, into_app_user_id)
         VALUES ($1, $2, $3) ON CONFLICT (app_id, from_app_user_id) DO NOTHING",
        app_id,
        from.id.as_str(),
        into.id.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as!(
        AppUserRecord,
        "UPDATE users.app_users SET
             given_name = COALESCE(given_name, $3),
             surname = COALESCE(surname, $4),
             email = COALESCE(email, $5),
             properties = $6 || properties,
             conversation_started = conversation_started OR $7
         WHERE app_id = $1 AND id = $2
         RETURNING app_id, id, user_id, given_name, surname, email, signed_up_at, properties,
                   conversation_started",
        app_id,
        into.id.as_str(),
        from.given_name.as_deref(),
        from.surname.as_deref(),
        from.email.as_deref(),
        &from.properties,
        from.conversation_started,
    )
    .fetch_one(&mut *conn)
    .await
    .map(AppUserRow::from)
}

/// The app users merged into `into_id` whose history has not moved yet, oldest first.
pub(crate) async fn pending_merges(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    into_id: &AppUserId,
) -> sqlx::Result<Vec<AppUserId>> {
    let pending: Vec<String> = sqlx::query_scalar!(
        "SELECT from_app_user_id FROM users.user_merges
         WHERE app_id = $1 AND into_app_user_id = $2 AND settled_at IS NULL
         ORDER BY merged_at, from_app_user_id",
        app_id.as_str(),
        into_id.as_str(),
    )
    .fetch_all(db)
    .await?;
    Ok(pending.into_iter().map(AppUserId::from).collect())
}

/// Marks a merge settled (its history moved); false when there is no such merge.
pub(crate) async fn settle_merge(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    from_id: &AppUserId,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users.user_merges SET settled_at = COALESCE(settled_at, now())
         WHERE app_id = $1 AND from_app_user_id = $2",
        app_id.as_str(),
        from_id.as_str(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}
