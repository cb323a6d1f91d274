//! The conversations service: an app user's conversation, its messages (each written
//! together with its outbox event) and app user events, served over gRPC and stored in
//! the `conversations` Postgres schema.

mod error;
mod grpc;
mod handoff;
mod lane;
mod rules;
mod storage;

use std::time::Duration;

use anyhow::Context as _;
use proto::local::Served;
use sqlx::migrate::Migrator;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// The Postgres schema this service owns.
pub const SCHEMA: &str = "conversations";

/// How many of the latest messages a conversation carries in replies.
pub const PAGE_SIZE: i64 = 100;

/// How many of the latest messages the conversation in a post's answer carries: the new
/// message and what came just before it. Posting is the hot path; the whole page is a
/// GET away.
pub const POST_PAGE_SIZE: i64 = 10;

/// The most posts a message writer commits in one transaction.
const MESSAGE_BATCH: usize = 32;

/// This service's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Settings of the conversations role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres URL (`SMOOCH_DATABASE_URL`).
    pub database_url: String,
    /// Largest number of pooled Postgres connections. Default 10.
    pub max_connections: u32,
    /// Where the outbox relay publishes events; `None` runs no relay here (the rows wait
    /// for a replica that runs one).
    pub relay: Option<RelayTarget>,
    /// How many tasks write messages, each committing the posts queued while it was busy
    /// in one transaction (`SMOOCH_MESSAGE_WRITERS`); 0 writes each post on its own.
    pub message_writers: usize,
    /// The users service (`host:port` or a URL; `SMOOCH_USERS_GRPC_ADDR`), which keeps an
    /// app user's `conversationStarted`: a post or event that starts a conversation marks
    /// it there. `None` marks nothing (tests of this service alone).
    pub users_addr: Option<String>,
}

/// The broker the outbox relay publishes to.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`).
    pub amqp_url: String,
    /// Prefix of exchanges and queues (`SMOOCH_AMQP_PREFIX`).
    pub amqp_prefix: String,
    /// Where a webhook worker of this process registers to take events in process
    /// (`smooch all`). `None` serves the `EventHandoff` gRPC service instead, where webhook
    /// workers of other processes attach to take them (split roles); events no worker
    /// takes are published for the workers' queue.
    pub local: Option<bus::LocalHandoff>,
    /// The Redis where gateways record the apps their real-time clients watch
    /// (`SMOOCH_REDIS_URL`, `SMOOCH_REDIS_PREFIX`): only those apps' events are copied to
    /// the real-time exchange. `None` copies every app's.
    pub audience: Option<auth::RedisConfig>,
}

/// The apps some gateway's real-time clients watch, as the relay asks: `None` (copy every
/// event) while Redis cannot answer.
#[derive(Debug)]
struct Audience(auth::Audience);

impl bus::Audience for Audience {
    fn watched<'a>(
        &'a self,
        apps: &'a std::collections::HashSet<&'a str>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Option<std::collections::HashSet<String>>> + Send + 'a,
        >,
    > {
        Box::pin(async move {
            self.0
                .watched(apps)
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "asking which apps are watched failed; copying every event to the real-time exchange"))
                .ok()
        })
    }
}

/// Connections of the pool left to the rest of the service (the relay, transactions)
/// beside the message writers and the connections the reads keep.
const LEFT_TO_THE_REST: usize = 2;

/// The smallest pool that leaves reads a connection to keep whatever
/// `SMOOCH_MESSAGE_WRITERS` is: the writers take at most half of it (rounded down), so
/// the other half, rounded up, must hold [`LEFT_TO_THE_REST`] and one more.
const POOL_KEEPING_A_READ: u32 = 2 * LEFT_TO_THE_REST as u32 + 1;

/// How many connections of a pool of `max_connections` the reads of pages take at once
/// and keep between reads ([`db::Kept`]): what the `writers` (each holding one) and
/// [`LEFT_TO_THE_REST`] leave. Reads wait for their turn beyond that, so they never take
/// the connections of the relay and the transactions.
fn kept_for_reads(max_connections: u32, writers: usize) -> usize {
    usize::try_from(max_connections)
        .unwrap_or(usize::MAX)
        .saturating_sub(writers)
        .saturating_sub(LEFT_TO_THE_REST)
}

/// Applies this service's migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = db::connect(database_url, SCHEMA, 1)?;
    db::migrate(&pool, SCHEMA, &MIGRATOR).await
}

/// The conversations gRPC API and its health service, ready to serve or to call in
/// process (through the routes or, for unary calls, the service itself); its background work (outbox relay, idempotency cleanup, pool metrics) runs on
/// `tasks` until their shutdown. A started conversation is marked on its app user at
/// `config.users_addr`, over the network (the first message of a conversation only).
pub async fn routes(
    config: Config,
    tasks: &Tasks,
) -> anyhow::Result<Served<dyn proto::v1::conversations_handle::LocalConversations>> {
    let users = config
        .users_addr
        .as_deref()
        .map(|addr| telemetry::grpc::lazy(addr, "users"))
        .transpose()?
        .map(proto::v1::users_client::UsersClient::new);
    let pool = db::connect(&config.database_url, SCHEMA, config.max_connections)?;
    let shutdown = tasks.shutdown();
    tasks.spawn(
        "conversations pool metrics",
        db::report_pool_metrics(pool.clone(), "conversations", shutdown.clone()),
    );
    tasks.spawn(
        "idempotency key cleanup",
        idempotency_cleanup(pool.clone(), shutdown.clone()),
    );
    // The workers of other processes that take this replica's events, when no worker of
    // this process does.
    let remote = config
        .relay
        .as_ref()
        .filter(|target| target.local.is_none())
        .map(|_| std::sync::Arc::new(handoff::Workers::default()));
    let relay = config.relay.as_ref().map(|target| -> anyhow::Result<_> {
        let mut relay = bus::Relay::with_broker(
            pool.clone(),
            storage::Outbox,
            &target.amqp_url,
            &target.amqp_prefix,
            "conversations",
        );
        let local = target.local.clone().unwrap_or_else(|| {
            let local = bus::LocalHandoff::default();
            if let Some(workers) = &remote {
                local.register(workers.clone());
            }
            local
        });
        relay = relay.with_local(local);
        if let Some(redis) = &target.audience {
            let redis = auth::RedisClient::new(redis.clone())
                .context("the Redis of the relay's real-time audience (SMOOCH_REDIS_URL)")?;
            let audience = auth::Audience::reader(redis);
            relay = relay.with_audience(std::sync::Arc::new(Audience(audience)));
        }
        let handle = relay.handle();
        // Until the server has drained: what its last requests commit goes out now, not
        // at the next sweep.
        tasks.spawn("outbox relay", relay.run(tasks.finished().clone()));
        Ok(handle)
    });
    let relay = relay.transpose()?;
    let writer = storage::Writer::start(pool.clone(), config.message_writers, MESSAGE_BATCH, tasks);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::v1::conversations_server::ConversationsServer<grpc::ConversationsApi>>()
        .await;
    let kept = kept_for_reads(config.max_connections, writer.writers());
    if kept == 0 {
        tracing::warn!(
            pool_size = config.max_connections,
            writers = writer.writers(),
            left_to_the_rest = LEFT_TO_THE_REST,
            "SMOOCH_DATABASE_MAX_CONNECTIONS leaves page reads no connection to keep beside the message writers and the connections left to the relay and transactions; every read takes one from the pool and pays its release ping. Set it to {POOL_KEEPING_A_READ} or more"
        );
    }
    let reads = db::Kept::new(pool.clone(), kept);
    let api = std::sync::Arc::new(grpc::ConversationsApi::new(
        pool, reads, writer, relay, users,
    ));
    let mut routes = tonic::service::Routes::new(health)
        .add_service(proto::v1::conversations_server::ConversationsServer::from_arc(api.clone()))
        .add_service(proto::v1::post_lane_server::PostLaneServer::new(
            lane::LaneApi::new(api.clone(), shutdown.clone()),
        ));
    if let Some(workers) = remote {
        routes = routes.add_service(proto::v1::event_handoff_server::EventHandoffServer::new(
            handoff::HandoffApi::new(workers, shutdown.clone()),
        ));
    }
    Ok(Served { routes, local: api })
}

/// Serves the conversations gRPC API on `listener` until `shutdown` is cancelled; returns
/// once its background tasks have ended too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::grpc::serve_role("conversations", listener, shutdown, |tasks| async move {
        routes(config, &tasks).await.map(|served| served.routes)
    })
    .await
}

/// Deletes idempotency keys past their 24 h every hour (and at start) until `shutdown`.
async fn idempotency_cleanup(pool: sqlx::PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match storage::delete_expired_idempotency_keys(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %e, "idempotency key cleanup failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kept_for_reads;

    #[test]
    fn reads_keep_what_the_writers_and_the_rest_leave_of_the_pool() {
        assert_eq!(kept_for_reads(10, 4), 4);
        assert_eq!(kept_for_reads(10, 5), 3);
        assert_eq!(kept_for_reads(3, 1), 0);
        assert_eq!(kept_for_reads(2, 0), 0);
    }
}
