//! The users service: apps (tenants) and their keys, the credential lookups behind the
//! gateway's authentication, and app users with their devices, served over gRPC and
//! stored in the `users` Postgres schema.

mod account;
mod app_config;
mod error;
mod grpc;
mod init;
mod push_log;
mod revoking_storage;
mod sealing;
mod storage;

use anyhow::Context as _;
use proto::local::Served;
use sqlx::migrate::Migrator;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use account::AccountKey;
pub use error::{Error, Result};
pub use sealing::{SecretsKey, DEVELOPMENT_KEY};

/// The Postgres schema this service owns.
pub const SCHEMA: &str = "users";

/// This service's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Settings of the users role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres URL (`SMOOCH_DATABASE_URL`).
    pub database_url: String,
    /// Largest number of pooled Postgres connections. Default 10.
    pub max_connections: u32,
    /// Redis (`SMOOCH_REDIS_URL`, `SMOOCH_REDIS_PREFIX`) on which revoked credentials are
    /// announced to the gateways' caches after each deletion or token rotation; `None`
    /// announces nothing (a suite without gateway caches).
    pub redis: Option<auth::RedisConfig>,
    /// The conversations service (`host:port` or a URL; `SMOOCH_CONVERSATIONS_GRPC_ADDR`),
    /// which init asks to move a merged user's history. `None` leaves merges pending in
    /// the init answer (`pending_merges`), for a suite without that service.
    pub conversations_addr: Option<String>,
    /// The key integration secrets are sealed with (`SMOOCH_SECRETS_KEY`; `smooch all`
    /// falls back to [`SecretsKey::development`]).
    pub secrets_key: SecretsKey,
}

/// Applies this service's migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    let result = db::migrate(&pool, SCHEMA, &MIGRATOR).await;
    pool.close().await;
    result
}

/// Makes sure an account-scope key exists; run after [`migrate`].
///
/// With `configured` (`SMOOCH_ACCOUNT_KEY_ID`, `SMOOCH_ACCOUNT_SECRET`) that key is
/// stored, created or with its secret updated, as [`AccountKey::Configured`]. Otherwise an
/// existing account key is kept ([`AccountKey::Existing`]) or, when there is none, one is
/// created and returned with its secret ([`AccountKey::Created`]) for the caller to show
/// the operator once. Replicas starting at the same time create at most one key.
pub async fn ensure_account_key(
    database_url: &str,
    configured: Option<(String, String)>,
) -> anyhow::Result<AccountKey> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    let result = account::ensure(&pool, configured).await;
    pool.close().await;
    result
}

/// Seals the plaintext secrets of integrations stored before secrets were sealed; returns
/// how many. The users role runs this at start-up; it is safe to run at any time, by
/// several replicas at once.
pub async fn seal_stored_secrets(database_url: &str, key: &SecretsKey) -> anyhow::Result<u64> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    let result = app_config::seal_stored_secrets(&pool, key).await;
    pool.close().await;
    Ok(result?)
}

/// Deletes push attempts older than `retention_hours` from the push delivery log; returns
/// how many. The users role runs it hourly with [`PUSH_LOG_RETENTION_HOURS`].
pub async fn purge_push_log(database_url: &str, retention_hours: i32) -> anyhow::Result<u64> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    let result = push_log::purge(&pool, retention_hours).await;
    pool.close().await;
    Ok(result?)
}

pub use push_log::RETENTION_HOURS as PUSH_LOG_RETENTION_HOURS;

/// Purges the push delivery log every hour until `shutdown`.
async fn push_log_purge(pool: sqlx::PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match push_log::purge(&pool, push_log::RETENTION_HOURS).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "expired push attempts deleted"),
            Err(e) => tracing::warn!(error = %e, "push log purge failed"),
        }
    }
}

/// Seals integration secrets still stored in plaintext, once, at start-up.
async fn seal_at_start(pool: sqlx::PgPool, key: SecretsKey) {
    match app_config::seal_stored_secrets(&pool, &key).await {
        Ok(0) => {}
        Ok(sealed) => tracing::info!(sealed, "sealed integration secrets stored in plaintext"),
        Err(e) => {
            tracing::warn!(error = %e, "sealing stored integration secrets failed; retried at the next start")
        }
    }
}

/// The users gRPC API and its health service, ready to serve or to call in process;
/// `conversations` is where init moves a merged user's history (`None`: merges stay
/// pending in the init answer). Its background work (log purge, revocation retries, pool
/// metrics) runs on `tasks`.
pub async fn routes(
    config: Config,
    conversations: Option<telemetry::grpc::GrpcChannel>,
    tasks: &Tasks,
) -> anyhow::Result<Served<dyn proto::v1::users_handle::LocalUsers>> {
    let pool = db::connect(&config.database_url, SCHEMA, config.max_connections)?;
    let shutdown = tasks.shutdown();
    tasks.spawn(
        "users pool metrics",
        db::report_pool_metrics(pool.clone(), "users", shutdown.clone()),
    );
    tasks.spawn(
        "push log purge",
        push_log_purge(pool.clone(), shutdown.clone()),
    );
    let revoker = config
        .redis
        .map(|redis| -> anyhow::Result<auth::Revoker> {
            let client = auth::RedisClient::new(redis).context("users service Redis settings")?;
            // Tombstones outlive any cache entry a gateway may still be writing, and a
            // revocation Redis missed is retried for as long as gateways keep entries.
            let ttl = auth::CacheConfig::default().redis_ttl;
            Ok(auth::Revoker::new(client, ttl, ttl, tasks.clone()))
        })
        .transpose()?;
    // Rows from before sealing are readable as they are: sealing them need not delay the
    // start, nor stop it when the database is briefly away.
    tasks.spawn(
        "secret sealing",
        seal_at_start(pool.clone(), config.secrets_key.clone()),
    );
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::v1::users_server::UsersServer<grpc::UsersApi>>()
        .await;
    let conversations =
        conversations.map(proto::v1::conversations_client::ConversationsClient::new);
    let api = std::sync::Arc::new(grpc::UsersApi::new(
        pool,
        revoker,
        conversations,
        config.secrets_key,
    ));
    let routes = tonic::service::Routes::new(health)
        .add_service(proto::v1::users_server::UsersServer::from_arc(api.clone()));
    Ok(Served { routes, local: api })
}

/// Serves the users gRPC API on `listener` until `shutdown` is cancelled; returns once its
/// background tasks have ended too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::grpc::serve_role("users", listener, shutdown, |tasks| async move {
        let conversations = config
            .conversations_addr
            .as_deref()
            .map(|addr| telemetry::grpc::lazy(addr, "conversations"))
            .transpose()?;
        routes(config, conversations, &tasks)
            .await
            .map(|served| served.routes)
    })
    .await
}
