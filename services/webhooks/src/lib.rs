//! The webhooks service: an app's webhook subscriptions (create, list, get, update,
//! delete) and their delivery log (attempts reported by the webhook worker, paged
//! listings, retry requests), served over gRPC and stored in the `webhooks` Postgres
//! schema.

mod changes;
mod deliveries;
mod delivery_log;
mod error;
mod grpc;
mod storage;

use proto::local::Served;
use sqlx::migrate::Migrator;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// The Postgres schema this service owns.
pub const SCHEMA: &str = "webhooks";

/// This service's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Settings of the webhooks role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres URL (`SMOOCH_DATABASE_URL`).
    pub database_url: String,
    /// Largest number of pooled Postgres connections. Default 10.
    pub max_connections: u32,
    /// Accept targets that name loopback, private, link-local or metadata addresses
    /// literally (`SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS`, the worker's setting; default
    /// false; true for tests and local use).
    pub allow_private_targets: bool,
}

/// Applies this service's migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    db::migrate(&pool, SCHEMA, &MIGRATOR).await
}

/// The webhooks gRPC API and its health service, ready to serve or to call in process;
/// the change feed and pool metrics run on `tasks`.
pub async fn routes(
    config: Config,
    tasks: &Tasks,
) -> anyhow::Result<Served<dyn proto::v1::webhooks_handle::LocalWebhooks>> {
    let pool = db::connect(&config.database_url, SCHEMA, config.max_connections)?;
    tasks.spawn(
        "webhooks pool metrics",
        db::report_pool_metrics(pool.clone(), "webhooks", tasks.shutdown().clone()),
    );
    let changes = changes::Changes::spawn(pool.clone(), tasks);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::v1::webhooks_server::WebhooksServer<grpc::WebhooksApi>>()
        .await;
    let api = std::sync::Arc::new(grpc::WebhooksApi::new(
        pool,
        config.allow_private_targets,
        changes,
    ));
    let routes = tonic::service::Routes::new(health).add_service(
        proto::v1::webhooks_server::WebhooksServer::from_arc(api.clone()),
    );
    Ok(Served { routes, local: api })
}

/// Serves the webhooks gRPC API on `listener` until `shutdown` is cancelled; returns once
/// its background tasks have ended too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::grpc::serve_role("webhooks", listener, shutdown, |tasks| async move {
        routes(config, &tasks).await.map(|served| served.routes)
    })
    .await
}
