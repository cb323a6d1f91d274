//! The init rules: which app user a device (and optional userId) belongs to, and the
//! device bookkeeping that goes with it, all in one transaction.
//!
//! Concurrency: each init takes a transaction-scoped advisory lock on its (app, device)
//! and, with a userId, then on its (app, userId). Two inits of the same new device, or
//! of the same new userId from different devices, therefore run one after the other and
//! the second finds what the first created. Locks are always taken device first, so
//! they cannot deadlock; should a unique violation or deadlock slip through anyway (a
//! writer that does not lock), the whole transaction is retried.
//!
//! Merging: when a device's active user is anonymous and it inits with a userId that
//! already belongs to another app user, the anonymous user is merged into that user in
//! the same transaction (devices, missing profile fields, properties; the anonymous `_id`
//! then resolves to the survivor). The merge is recorded as pending; the caller moves the
//! conversation history (an idempotent call on the conversations service) and settles
//! it. Init answers every pending merge of its user, so an interrupted merge is finished
//! by the next init. Running the same init again finds the survivor active on the device
//! and merges nothing: merges are idempotent.

use chrono::{DateTime, Utc};
use domain::{AppId, AppUserId};
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool};

use crate::storage::{self, AppUserRow, DeviceRow};
use crate::Result;

/// How many times an init is retried after a conflict with a concurrent writer.
const MAX_RETRIES: u32 = 3;

/// SQLSTATE of `deadlock_detected`.
const DEADLOCK_DETECTED: &str = "40P01";
/// SQLSTATE of `serialization_failure`.
const SERIALIZATION_FAILURE: &str = "40001";

/// A validated init request.
#[derive(Debug, Clone)]
pub(crate) struct InitInput {
    pub(crate) app_id: AppId,
    pub(crate) user_id: Option<String>,
    pub(crate) device: DeviceInput,
}

/// The device part of an init.
#[derive(Debug, Clone)]
pub(crate) struct DeviceInput {
    pub(crate) id: String,
    pub(crate) platform: String,
    pub(crate) app_version: Option<String>,
    pub(crate) push_token: Option<String>,
    pub(crate) info: Map<String, Value>,
}

/// The app user an init settled on, with that user's devices.
#[derive(Debug)]
pub(crate) struct Initialized {
    pub(crate) user: AppUserRow,
    pub(crate) devices: Vec<DeviceRow>,
    /// App users merged into `user` whose conversation history has not moved yet.
    pub(crate) pending_merges: Vec<AppUserId>,
}

/// How the app user was chosen (for logs).
#[derive(Debug, Clone, Copy)]
enum Choice {
    /// An existing user: by userId, or the device's anonymous user.
    Existing,
    /// The device's anonymous user, given the userId it logged in with.
    LoggedIn,
    /// A new user.
    Created,
    /// The user owning the userId, with the device's anonymous user merged into it.
    Merged,
}

/// Finds or creates the app user for a device (and userId), records the device for it
/// and makes that user the device's only active one.
pub(crate) async fn init(pool: &PgPool, input: &InitInput) -> Result<Initialized> {
    let mut attempt = 0;
    loop {
        match init_once(pool, input).await {
            Err(e) if attempt < MAX_RETRIES && is_transient(&e) => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, app_id = %input.app_id, "init conflicted with a concurrent writer; retrying");
            }
            other => return other.map_err(crate::Error::from),
        }
    }
}

/// Whether a failed init may succeed when run again.
fn is_transient(err: &sqlx::Error) -> bool {
    db::is_sqlstate(err, DEADLOCK_DETECTED)
        || db::is_sqlstate(err, SERIALIZATION_FAILURE)
        || (db::is_sqlstate(err, db::UNIQUE_VIOLATION)
            && matches!(
                db::constraint(err),
                Some("app_users_app_id_user_id_key" | "devices_pkey")
            ))
}

async fn init_once(pool: &PgPool, input: &InitInput) -> sqlx::Result<Initialized> {
    let app_id = &input.app_id;
    let mut tx = pool.begin().await?;
    // App ids are hex, so "<app>:device:<id>" and "<app>:user:<id>" cannot collide.
    storage::lock(&mut tx, &format!("{app_id}:device:{}", input.device.id)).await?;
    if let Some(user_id) = &input.user_id {
        storage::lock(&mut tx, &format!("{app_id}:user:{user_id}")).await?;
    }
    let now = now();
    let (user, choice) = choose_user(&mut tx, input, now).await?;
    let device = DeviceRow {
        device_id: input.device.id.clone(),
        platform: input.device.platform.clone(),
        app_version: input.device.app_version.clone(),
        push_token: input.device.push_token.clone(),
        info: Value::Object(input.device.info.clone()),
        active: true,
        last_seen: now,
    };
    storage::upsert_device(&mut *tx, app_id, &user.id, &device).await?;
    storage::deactivate_device_for_others(&mut *tx, app_id, &device.device_id, &user.id).await?;
    let devices = storage::devices_of(&mut *tx, app_id, &user.id).await?;
    let pending_merges = storage::pending_merges(&mut *tx, app_id, &user.id).await?;
    tx.commit().await?;
    tracing::debug!(app_id = %app_id, app_user_id = %user.id, choice = ?choice, "app user initialized");
    Ok(Initialized {
        user,
        devices,
        pending_merges,
    })
}

/// Applies the "users on multiple devices" rules. Runs under the init locks.
async fn choose_user(
    conn: &mut PgConnection,
    input: &InitInput,
    now: DateTime<Utc>,
) -> sqlx::Result<(AppUserRow, Choice)> {
    let app_id = &input.app_id;
    let device_id = input.device.id.as_str();
    let Some(user_id) = input.user_id.as_deref() else {
        // No userId: the device's most recently seen anonymous user, else a new one.
        if let Some(user) = storage::anonymous_user_of_device(&mut *conn, app_id, device_id).await?
        {
            return Ok((user, Choice::Existing));
        }
        return Ok((create_user(conn, app_id, None, now).await?, Choice::Created));
    };

    if let Some(user) = storage::user_by_user_id(&mut *conn, app_id, user_id).await? {
        // The device's anonymous active user logs in as a known userId: fold it in.
        if let Some(active) = storage::active_user_of_device(&mut *conn, app_id, device_id).await? {
            if active.user_id.is_none() && active.id != user.id {
                let merged = storage::merge_users(&mut *conn, &active, &user).await?;
                tracing::info!(
                    app_id = %app_id,
                    from = %active.id,
                    into = %merged.id,
                    "anonymous app user merged into the owner of its userId"
                );
                return Ok((merged, Choice::Merged));
            }
        }
        return Ok((user, Choice::Existing));
    }
    // A login on a device whose active user is anonymous: that user becomes `user_id`.
    if let Some(active) = storage::active_user_of_device(&mut *conn, app_id, device_id).await? {
        if active.user_id.is_none() {
            if let Some(user) =
                storage::set_user_id(&mut *conn, app_id, &active.id, user_id).await?
            {
                return Ok((user, Choice::LoggedIn));
            }
        }
    }
    let user = create_user(conn, app_id, Some(user_id.to_owned()), now).await?;
    Ok((user, Choice::Created))
}

async fn create_user(
    conn: &mut PgConnection,
    app_id: &AppId,
    user_id: Option<String>,
    now: DateTime<Utc>,
) -> sqlx::Result<AppUserRow> {
    let user = AppUserRow {
        app_id: app_id.clone(),
        id: domain::id::new_id().into(),
        user_id,
        given_name: None,
        surname: None,
        email: None,
        signed_up_at: now,
        properties: Value::Object(Map::new()),
        conversation_started: false,
    };
    storage::insert_user(conn, &user).await?;
    tracing::info!(app_id = %app_id, app_user_id = %user.id, "app user created");
    Ok(user)
}

/// Now, at the millisecond precision the API carries.
fn now() -> DateTime<Utc> {
    domain::time::to_datetime(domain::time::now_ms())
}
