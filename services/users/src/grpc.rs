//! gRPC handlers: translate requests into validated calls on storage (or on the init
//! rules) and rows into protobuf replies.

use domain::{validate, AppId, AppUserId};
use proto::v1 as pb;
use proto::v1::conversations_client::ConversationsClient;
use serde_json::{Map, Value};
use sqlx::{PgExecutor, PgPool};
use tonic::{Request, Response, Status};

use crate::init::{self, DeviceInput, InitInput};
use crate::revoking_storage;
use crate::sealing::SecretsKey;
use crate::storage::{self, AppRow, AppUserRow, DeviceRow, KeyRow, ProfilePatch};
use crate::Result;

/// A client of the conversations service, over the network or in process.
pub(crate) type Conversations = ConversationsClient<telemetry::grpc::GrpcChannel>;

/// The `Users` gRPC service.
pub(crate) struct UsersApi {
    pool: PgPool,
    /// Announces revoked credentials to the gateways' caches; `None` without Redis.
    revoker: Option<auth::Revoker>,
    /// Moves a merged user's history; `None` leaves merges pending for the caller.
    conversations: Option<Conversations>,
    /// Seals integration secrets before they are stored, opens them for the push worker.
    secrets_key: SecretsKey,
}

impl UsersApi {
    pub(crate) fn new(
        pool: PgPool,
        revoker: Option<auth::Revoker>,
        conversations: Option<Conversations>,
        secrets_key: SecretsKey,
    ) -> Self {
        UsersApi {
            pool,
            revoker,
            conversations,
            secrets_key,
        }
    }

    /// Tells the gateways, after the change has committed, that credentials are revoked.
    async fn revoke(&self, revocation: auth::Revocation) {
        if let Some(revoker) = &self.revoker {
            revoker.revoke(revocation).await;
        }
    }

    /// Tells the gateways, after the change has committed, that these app users changed,
    /// so that none of them keeps answering from a cached copy.
    async fn changed<'a>(&self, app_id: &str, app_user_ids: impl IntoIterator<Item = &'a str>) {
        self.revoke(auth::Revocation::app_users(app_id, app_user_ids))
            .await;
    }
}

// ---- rows to protobuf ----

fn app_to_pb(row: AppRow) -> pb::App {
    pb::App {
        id: row.id.into(),
        name: row.name,
        app_token: row.app_token,
        created_at_ms: row.created_at.timestamp_millis(),
        settings_json: crate::app_config::effective_settings_json(&row.settings),
    }
}

fn key_to_pb(row: KeyRow) -> pb::Key {
    pb::Key {
        id: row.id,
        app_id: row.app_id.unwrap_or_default(),
        name: row.name,
        secret: row.secret,
        scope: row.scope,
        created_at_ms: row.created_at.timestamp_millis(),
    }
}

fn device_to_pb(row: DeviceRow) -> pb::Device {
    pb::Device {
        id: row.device_id,
        platform: row.platform,
        app_version: row.app_version,
        push_notification_token: row.push_token,
        info_json: row.info.to_string(),
        active: row.active,
        last_seen_ms: row.last_seen.timestamp_millis(),
    }
}

fn app_user_to_pb(row: AppUserRow, devices: Vec<DeviceRow>) -> pb::AppUser {
    pb::AppUser {
        id: row.id.into(),
        app_id: row.app_id.into(),
        user_id: row.user_id,
        given_name: row.given_name,
        surname: row.surname,
        email: row.email,
        signed_up_at_ms: row.signed_up_at.timestamp_millis(),
        properties_json: row.properties.to_string(),
        conversation_started: row.conversation_started,
        devices: devices.into_iter().map(device_to_pb).collect(),
        pending_merges: Vec::new(),
    }
}

// ---- validation ----

fn app_not_found(id: &str) -> domain::Error {
    domain::Error::not_found(format!("app {id} not found"))
}

fn app_user_not_found(id_or_user_id: &str) -> domain::Error {
    domain::Error::not_found(format!("app user {id_or_user_id} not found"))
}

/// A required, non-blank short field.
fn required(field: &str, value: &str) -> Result<(), domain::Error> {
    if value.trim().is_empty() {
        return Err(domain::Error::bad_request(format!(
            "{field} is required and must not be blank"
        )));
    }
    validate::short_field(field, value)
}

/// An optional short field.
fn optional(field: &str, value: Option<&str>) -> Result<(), domain::Error> {
    value.map_or(Ok(()), |v| validate::short_field(field, v))
}

/// A flat JSON object carried as text; empty text is the empty object.
fn flat_object_json(field: &str, text: &str) -> Result<Map<String, Value>, domain::Error> {
    if text.is_empty() {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|_| domain::Error::bad_request(format!("{field} must be a JSON object")))?;
    validate::flat_object(field, &value)
}

fn init_input(req: pb::InitRequest) -> Result<InitInput, domain::Error> {
    let device = req
        .device
        .ok_or_else(|| domain::Error::bad_request("device is required"))?;
    if device.id.is_empty() {
        return Err(domain::Error::bad_request("device.id is required"));
    }
    validate::short_field("device.id", &device.id)?;
    validate::platform(&device.platform)?;
    optional("device.appVersion", device.app_version.as_deref())?;
    optional(
        "device.pushNotificationToken",
        device.push_notification_token.as_deref(),
    )?;
    let info = flat_object_json("device.info", &device.info_json)?;
    if let Some(user_id) = &req.user_id {
        required("userId", user_id)?;
    }
    Ok(InitInput {
        app_id: req.app_id.into(),
        user_id: req.user_id,
        device: DeviceInput {
            id: device.id,
            platform: device.platform,
            app_version: device.app_version,
            push_token: device.push_notification_token,
            info,
        },
    })
}

fn profile_patch(req: &pb::UpdateAppUserRequest) -> Result<ProfilePatch, domain::Error> {
    optional("givenName", req.given_name.as_deref())?;
    optional("surname", req.surname.as_deref())?;
    optional("email", req.email.as_deref())?;
    let signed_up_at = req
        .signed_up_at_ms
        .map(|ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| domain::Error::bad_request("signedUpAt is out of range"))
        })
        .transpose()?;
    let properties = flat_object_json("properties", &req.properties_json)?;
    Ok(ProfilePatch {
        given_name: req.given_name.clone(),
        surname: req.surname.clone(),
        email: req.email.clone(),
        signed_up_at,
        properties: Value::Object(properties),
    })
}

// ---- lookups shared by handlers ----

/// Finds an app user by `_id` or `userId`: a value shaped like an id is tried as an id
/// first (the `_id` of a merged-away user resolves to the survivor), then as a userId (a
/// userId may look like an id).
async fn find_user(db: &PgPool, app_id: &AppId, id_or_user_id: &str) -> Result<AppUserRow> {
    if domain::id::is_id(id_or_user_id) {
        let id = AppUserId::from(id_or_user_id);
        if let Some(user) = storage::user_by_id(db, app_id, &id).await? {
            return Ok(user);
        }
        if let Some(into) = storage::merged_into(db, app_id, &id).await? {
            if let Some(user) = storage::user_by_id(db, app_id, &into).await? {
                return Ok(user);
            }
        }
    }
    Ok(storage::user_by_user_id(db, app_id, id_or_user_id)
        .await?
        .ok_or_else(|| app_user_not_found(id_or_user_id))?)
}

async fn with_devices(db: impl PgExecutor<'_>, user: AppUserRow) -> Result<pb::AppUser> {
    let devices = storage::devices_of(db, &user.app_id, &user.id).await?;
    Ok(app_user_to_pb(user, devices))
}

impl UsersApi {
    async fn create_app(&self, req: pb::CreateAppRequest) -> Result<pb::App> {
        required("name", &req.name)?;
        let row = AppRow {
            id: domain::id::new_id().into(),
            name: req.name,
            app_token: domain::id::new_app_token(),
            created_at: domain::time::to_datetime(domain::time::now_ms()),
            settings: Value::Object(Map::new()),
        };
        storage::insert_app(&self.pool, &row).await?;
        tracing::info!(app_id = %row.id, "app created");
        Ok(app_to_pb(row))
    }

    async fn get_app(&self, app_id: &str) -> Result<pb::App> {
        let row = storage::get_app(&self.pool, &app_id.into())
            .await?
            .ok_or_else(|| app_not_found(app_id))?;
        Ok(app_to_pb(row))
    }

    async fn delete_app(&self, app_id: &str) -> Result<pb::Empty> {
        let deleted = revoking_storage::delete_app(&self.pool, app_id)
            .await?
            .ok_or_else(|| app_not_found(app_id))?;
        tracing::info!(app_id, "app deleted");
        self.revoke(auth::Revocation::new(
            [deleted.app_token.as_str()],
            deleted.key_ids,
        ))
        .await;
        Ok(pb::Empty {})
    }

    async fn rotate_app_token(&self, app_id: &str) -> Result<pb::App> {
        let new_token = domain::id::new_app_token();
        let (row, old_token) = revoking_storage::rotate_app_token(&self.pool, app_id, &new_token)
            .await?
            .ok_or_else(|| app_not_found(app_id))?;
        tracing::info!(app_id, "app token rotated");
        self.revoke(auth::Revocation::new([old_token.as_str()], Vec::new()))
            .await;
        Ok(app_to_pb(row))
    }

    async fn create_key(&self, req: pb::CreateKeyRequest) -> Result<pb::Key> {
        required("name", &req.name)?;
        let row = KeyRow {
            id: domain::id::new_id(),
            app_id: Some(req.app_id),
            name: req.name,
            secret: domain::id::new_secret(24),
            scope: "app".to_owned(),
            created_at: domain::time::to_datetime(domain::time::now_ms()),
        };
        // A missing app fails the foreign key, which maps to not found.
        storage::insert_key(&self.pool, &row).await?;
        tracing::info!(app_id = ?row.app_id, key_id = %row.id, "key created");
        Ok(key_to_pb(row))
    }

    async fn list_keys(&self, app_id: &str) -> Result<pb::ListKeysResponse> {
        let app_id = AppId::from(app_id);
        if storage::get_app(&self.pool, &app_id).await?.is_none() {
            return Err(app_not_found(app_id.as_str()).into());
        }
        let rows = storage::list_keys(&self.pool, &app_id).await?;
        Ok(pb::ListKeysResponse {
            keys: rows.into_iter().map(key_to_pb).collect(),
        })
    }

    async fn delete_key(&self, req: pb::DeleteKeyRequest) -> Result<pb::Empty> {
        if !storage::delete_key(&self.pool, &req.app_id.as_str().into(), &req.key_id).await? {
            return Err(domain::Error::not_found(format!("key {} not found", req.key_id)).into());
        }
        tracing::info!(app_id = %req.app_id, key_id = %req.key_id, "key deleted");
        self.revoke(auth::Revocation::new([], vec![req.key_id]))
            .await;
        Ok(pb::Empty {})
    }

    async fn resolve_app_token(&self, app_token: &str) -> Result<pb::App> {
        let row = storage::app_by_token(&self.pool, app_token)
            .await?
            .ok_or_else(|| domain::Error::not_found("no app has this app token"))?;
        Ok(app_to_pb(row))
    }

    async fn resolve_key(&self, key_id: &str) -> Result<pb::Key> {
        let row = storage::key_by_id(&self.pool, key_id)
            .await?
            .ok_or_else(|| domain::Error::not_found(format!("key {key_id} not found")))?;
        Ok(key_to_pb(row))
    }

    async fn init(&self, req: pb::InitRequest) -> Result<pb::AppUser> {
        let input = init_input(req)?;
        let done = init::init(&self.pool, &input).await?;
        let mut user = app_user_to_pb(done.user, done.devices);
        let merged: Vec<String> = done
            .pending_merges
            .iter()
            .map(|id| id.to_string())
            .collect();
        let finished = match self.conversations.clone() {
            Some(conversations) => {
                self.finish_merges(conversations, &mut user, done.pending_merges)
                    .await
            }
            None => {
                user.pending_merges = done.pending_merges.into_iter().map(Into::into).collect();
                Ok(())
            }
        };
        // Its devices changed, and users merged into it are gone, even if a merge's second
        // half failed (the next init finishes it).
        let ids = std::iter::once(user.id.as_str()).chain(merged.iter().map(String::as_str));
        self.changed(&user.app_id, ids).await;
        finished?;
        Ok(user)
    }

    /// The second half of a merge, after init's transaction committed it: moves the history
    /// of each user merged into `user` (this init's merge, and any an earlier, interrupted
    /// init left pending), marks the survivor's conversation started when history arrived,
    /// then settles the merge. Every step is idempotent, so the survivor's next init
    /// finishes a merge interrupted here.
    async fn finish_merges(
        &self,
        mut conversations: Conversations,
        user: &mut pb::AppUser,
        pending: Vec<AppUserId>,
    ) -> Result<()> {
        let (app_id, into_id) = (
            AppId::from(user.app_id.as_str()),
            AppUserId::from(user.id.as_str()),
        );
        for from in pending {
            let merged = conversations
                .merge_conversations(pb::MergeConversationsRequest {
                    app_id: user.app_id.clone(),
                    from_app_user_id: from.to_string(),
                    into: Some(user.clone()),
                })
                .await
                .map_err(|status| <domain::Error as wire::FromStatus>::from_status(&status))?
                .into_inner();
            if merged.has_conversation && !user.conversation_started {
                storage::mark_conversation_started(&self.pool, &app_id, &into_id).await?;
                user.conversation_started = true;
            }
            storage::settle_merge(&self.pool, &app_id, &from).await?;
        }
        Ok(())
    }

    async fn create_app_user(&self, req: pb::CreateAppUserRequest) -> Result<pb::AppUser> {
        required("userId", &req.user_id)?;
        let patch = profile_patch(&pb::UpdateAppUserRequest {
            given_name: req.given_name,
            surname: req.surname,
            email: req.email,
            signed_up_at_ms: req.signed_up_at_ms,
            properties_json: req.properties_json,
            ..Default::default()
        })?;
        let now = domain::time::to_datetime(domain::time::now_ms());
        let row = AppUserRow {
            app_id: req.app_id.into(),
            id: domain::id::new_id().into(),
            user_id: Some(req.user_id),
            given_name: patch.given_name,
            surname: patch.surname,
            email: patch.email,
            signed_up_at: patch.signed_up_at.unwrap_or(now),
            properties: patch.properties,
            conversation_started: false,
        };
        let mut tx = self.pool.begin().await?;
        // The lock init takes for a userId: an init of the same userId waits for us.
        let user_id = row.user_id.as_deref().unwrap_or_default();
        storage::lock(&mut tx, &format!("{}:user:{user_id}", row.app_id)).await?;
        // A taken userId fails the unique constraint, which maps to 409.
        storage::insert_user(&mut *tx, &row).await?;
        tx.commit().await?;
        tracing::info!(app_id = %row.app_id, app_user_id = %row.id, "app user pre-created");
        Ok(app_user_to_pb(row, Vec::new()))
    }

    async fn update_device(&self, req: pb::UpdateDeviceRequest) -> Result<pb::Device> {
        let device = req
            .device
            .ok_or_else(|| domain::Error::bad_request("device is required"))?;
        required("deviceId", &device.id)?;
        if !device.platform.is_empty() {
            validate::platform(&device.platform)?;
        }
        optional("appVersion", device.app_version.as_deref())?;
        optional(
            "pushNotificationToken",
            device.push_notification_token.as_deref(),
        )?;
        let info = flat_object_json("info", &device.info_json)?;
        let user = find_user(&self.pool, &req.app_id.as_str().into(), &req.app_user_id).await?;
        let row = DeviceRow {
            device_id: device.id,
            platform: device.platform,
            app_version: device.app_version,
            push_token: device.push_notification_token,
            info: Value::Object(info),
            active: true,
            last_seen: domain::time::to_datetime(domain::time::now_ms()),
        };
        let mut tx = self.pool.begin().await?;
        storage::lock(
            &mut tx,
            &format!("{}:device:{}", user.app_id, row.device_id),
        )
        .await?;
        let stored =
            storage::update_device(&mut tx, &user.app_id, &user.id, &row, req.must_exist).await?;
        tx.commit().await?;
        // A device that must exist and did not: nothing was written, nothing to announce.
        let stored = stored.ok_or_else(|| {
            domain::Error::not_found(format!(
                "device {} not found for app user {}; call /v1/init from it first",
                row.device_id, req.app_user_id
            ))
        })?;
        self.changed(user.app_id.as_str(), [user.id.as_str()]).await;
        Ok(device_to_pb(stored))
    }

    async fn settle_merge(&self, req: pb::SettleMergeRequest) -> Result<pb::Empty> {
        let (app_id, from) = (
            AppId::from(req.app_id.as_str()),
            AppUserId::from(req.from_app_user_id.as_str()),
        );
        if !storage::settle_merge(&self.pool, &app_id, &from).await? {
            return Err(domain::Error::not_found(format!(
                "no merge of app user {}",
                req.from_app_user_id
            ))
            .into());
        }
        self.changed(&req.app_id, [req.from_app_user_id.as_str()])
            .await;
        Ok(pb::Empty {})
    }

    async fn get_app_user(&self, req: pb::GetAppUserRequest) -> Result<pb::AppUser> {
        // The common cases in one round trip: a live `_id`, or a userId. A merged-away
        // `_id` (and an id-shaped userId) take the longer way of `find_user`.
        let (app_id, wanted) = (AppId::from(req.app_id), req.id_or_user_id.as_str());
        let key = if domain::id::is_id(wanted) {
            storage::UserKey::Id(wanted)
        } else {
            storage::UserKey::UserId(wanted)
        };
        if let Some((user, devices)) = storage::user_with_devices(&self.pool, &app_id, key).await? {
            return Ok(app_user_to_pb(user, devices));
        }
        let user = find_user(&self.pool, &app_id, wanted).await?;
        with_devices(&self.pool, user).await
    }

    async fn update_app_user(&self, req: pb::UpdateAppUserRequest) -> Result<pb::AppUser> {
        let patch = profile_patch(&req)?;
        let found = find_user(&self.pool, &req.app_id.as_str().into(), &req.app_user_id).await?;
        let user = storage::update_user(&self.pool, &found.app_id, &found.id, &patch)
            .await?
            .ok_or_else(|| app_user_not_found(&req.app_user_id))?;
        self.changed(found.app_id.as_str(), [found.id.as_str()])
            .await;
        with_devices(&self.pool, user).await
    }

    async fn clear_profile(&self, req: pb::AppUserRef) -> Result<pb::AppUser> {
        let found = find_user(&self.pool, &req.app_id.as_str().into(), &req.app_user_id).await?;
        let cleared = storage::clear_profile(&self.pool, &found.app_id, &found.id)
            .await?
            .ok_or_else(|| app_user_not_found(&req.app_user_id))?;
        tracing::info!(app_id = %req.app_id, app_user_id = %cleared.id, "profile cleared");
        self.changed(found.app_id.as_str(), [found.id.as_str()])
            .await;
        with_devices(&self.pool, cleared).await
    }

    async fn mark_conversation_started(&self, req: pb::AppUserRef) -> Result<pb::Empty> {
        let found = find_user(&self.pool, &req.app_id.as_str().into(), &req.app_user_id).await?;
        if !storage::mark_conversation_started(&self.pool, &found.app_id, &found.id).await? {
            return Err(app_user_not_found(&req.app_user_id).into());
        }
        self.changed(found.app_id.as_str(), [found.id.as_str()])
            .await;
        Ok(pb::Empty {})
    }
}

#[tonic::async_trait]
impl pb::users_server::Users for UsersApi {
    async fn create_app(
        &self,
        request: Request<pb::CreateAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        Ok(Response::new(self.create_app(request.into_inner()).await?))
    }

    async fn list_apps(
        &self,
        request: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        let req = request.into_inner();
        // One more than asked tells whether another page follows.
        let limit = req.limit.map(|l| i64::from(l) + 1);
        let mut rows = storage::list_apps(&self.pool, limit, i64::from(req.offset))
            .await
            .map_err(crate::Error::from)?;
        let has_more = limit.is_some_and(|l| rows.len() as i64 == l);
        if has_more {
            rows.pop();
        }
        Ok(Response::new(pb::ListAppsResponse {
            apps: rows.into_iter().map(app_to_pb).collect(),
            has_more,
        }))
    }

    async fn update_app(
        &self,
        request: Request<pb::UpdateAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        let row = crate::app_config::update_app(&self.pool, request.into_inner()).await?;
        Ok(Response::new(app_to_pb(row)))
    }

    async fn get_menu(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::Menu>, Status> {
        let menu = crate::app_config::get_menu(&self.pool, &request.get_ref().app_id).await?;
        Ok(Response::new(menu))
    }

    async fn set_menu(
        &self,
        request: Request<pb::SetMenuRequest>,
    ) -> Result<Response<pb::Menu>, Status> {
        let menu = crate::app_config::set_menu(&self.pool, request.into_inner()).await?;
        Ok(Response::new(menu))
    }

    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let created = crate::app_config::create_integration(
            &self.pool,
            &self.secrets_key,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(created))
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let listed = crate::app_config::list_integrations(&self.pool, request.into_inner()).await?;
        Ok(Response::new(listed))
    }

    async fn get_integration(
        &self,
        request: Request<pb::IntegrationRef>,
    ) -> Result<Response<pb::Integration>, Status> {
        let found = crate::app_config::get_integration(&self.pool, request.get_ref()).await?;
        Ok(Response::new(found))
    }

    async fn delete_integration(
        &self,
        request: Request<pb::IntegrationRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let done = crate::app_config::delete_integration(&self.pool, request.get_ref()).await?;
        Ok(Response::new(done))
    }

    async fn get_push_credentials(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::PushCredentials>, Status> {
        let found = crate::app_config::push_credentials(
            &self.pool,
            &self.secrets_key,
            &request.get_ref().app_id,
        )
        .await?;
        Ok(Response::new(found))
    }

    async fn record_push_attempts(
        &self,
        request: Request<pb::RecordPushAttemptsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        crate::push_log::record(&self.pool, &request.get_ref().attempts).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_push_attempts(
        &self,
        request: Request<pb::ListPushAttemptsRequest>,
    ) -> Result<Response<pb::ListPushAttemptsResponse>, Status> {
        let page = crate::push_log::list(&self.pool, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn clear_push_token(
        &self,
        request: Request<pb::ClearPushTokenRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let done = crate::app_config::clear_push_token(&self.pool, request.get_ref()).await?;
        Ok(Response::new(done))
    }

    async fn get_app(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        Ok(Response::new(
            self.get_app(&request.get_ref().app_id).await?,
        ))
    }

    async fn delete_app(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        Ok(Response::new(
            self.delete_app(&request.get_ref().app_id).await?,
        ))
    }

    async fn rotate_app_token(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        Ok(Response::new(
            self.rotate_app_token(&request.get_ref().app_id).await?,
        ))
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        Ok(Response::new(self.create_key(request.into_inner()).await?))
    }

    async fn list_keys(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        Ok(Response::new(
            self.list_keys(&request.get_ref().app_id).await?,
        ))
    }

    async fn delete_key(
        &self,
        request: Request<pb::DeleteKeyRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        Ok(Response::new(self.delete_key(request.into_inner()).await?))
    }

    async fn resolve_app_token(
        &self,
        request: Request<pb::ResolveAppTokenRequest>,
    ) -> Result<Response<pb::App>, Status> {
        Ok(Response::new(
            self.resolve_app_token(&request.get_ref().app_token).await?,
        ))
    }

    async fn resolve_key(
        &self,
        request: Request<pb::ResolveKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        Ok(Response::new(
            self.resolve_key(&request.get_ref().key_id).await?,
        ))
    }

    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::AppUser>, Status> {
        Ok(Response::new(self.init(request.into_inner()).await?))
    }

    async fn get_app_user(
        &self,
        request: Request<pb::GetAppUserRequest>,
    ) -> Result<Response<pb::AppUser>, Status> {
        Ok(Response::new(
            self.get_app_user(request.into_inner()).await?,
        ))
    }

    async fn update_app_user(
        &self,
        request: Request<pb::UpdateAppUserRequest>,
    ) -> Result<Response<pb::AppUser>, Status> {
        Ok(Response::new(
            self.update_app_user(request.into_inner()).await?,
        ))
    }

    async fn clear_profile(
        &self,
        request: Request<pb::AppUserRef>,
    ) -> Result<Response<pb::AppUser>, Status> {
        Ok(Response::new(
            self.clear_profile(request.into_inner()).await?,
        ))
    }

    async fn mark_conversation_started(
        &self,
        request: Request<pb::AppUserRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        Ok(Response::new(
            self.mark_conversation_started(request.into_inner()).await?,
        ))
    }

    async fn create_app_user(
        &self,
        request: Request<pb::CreateAppUserRequest>,
    ) -> Result<Response<pb::AppUser>, Status> {
        Ok(Response::new(
            self.create_app_user(request.into_inner()).await?,
        ))
    }

    async fn update_device(
        &self,
        request: Request<pb::UpdateDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        Ok(Response::new(
            self.update_device(request.into_inner()).await?,
        ))
    }

    async fn settle_merge(
        &self,
        request: Request<pb::SettleMergeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        Ok(Response::new(
            self.settle_merge(request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn device(platform: &str) -> pb::Device {
        pb::Device {
            id: "d1".into(),
            platform: platform.into(),
            ..Default::default()
        }
    }

    #[test]
    fn init_input_names_the_bad_field() {
        let bad = |req: pb::InitRequest| init_input(req).unwrap_err().description;
        let platform = bad(pb::InitRequest {
            device: Some(device("palm")),
            ..Default::default()
        });
        assert!(platform.contains("device.platform"), "{platform}");
        assert!(bad(pb::InitRequest::default()).contains("device"));
        let blank = bad(pb::InitRequest {
            user_id: Some("  ".into()),
            device: Some(device("ios")),
            ..Default::default()
        });
        assert!(blank.contains("userId"), "{blank}");
        let nested = bad(pb::InitRequest {
            device: Some(pb::Device {
                info_json: r#"{"a":{"b":1}}"#.into(),
                ..device("web")
            }),
            ..Default::default()
        });
        assert!(nested.contains("device.info.a"), "{nested}");
    }

    #[test]
    fn empty_info_is_the_empty_object() {
        let input = init_input(pb::InitRequest {
            device: Some(device("android")),
            ..Default::default()
        })
        .unwrap();
        assert!(input.device.info.is_empty());
    }

    #[test]
    fn properties_must_be_a_json_object() {
        let req = pb::UpdateAppUserRequest {
            properties_json: "[1]".into(),
            ..Default::default()
        };
        assert!(profile_patch(&req)
            .unwrap_err()
            .description
            .contains("properties"));
    }
}
