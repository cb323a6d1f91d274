//! The HTTP gateway: authenticates every request (`app-token` or a JWT with `kid`),
//! routes the Smooch v1 API onto the gRPC services, and speaks the v1 wire format.

mod admission;
mod app_users;
mod caller;
mod clients;
mod credentials;
mod deadline;
mod error;
mod extract;
pub mod faye;
mod idempotency;
mod lane;
mod observe;
mod openapi;
mod ratelimit;
mod routes;

use std::time::Duration;

use anyhow::Context as _;
use proto::local::LocalService;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use clients::Clients;
pub use error::ApiError;
pub use ratelimit::RateLimitConfig;

/// The OpenAPI document of the API the gateway serves (what `GET /openapi.json` answers),
/// for tools that want it without a running gateway.
pub fn openapi_json() -> String {
    let spec = routes::spec(Config::new("", "", "", "", "").max_image_bytes);
    serde_json::to_string_pretty(&spec).unwrap_or_default()
}

/// Settings of the gateway role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL under which media is served back (`SMOOCH_PUBLIC_URL`), without a trailing
    /// slash, such as `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Address of the users service, as `host:port` or a URL.
    pub users_addr: String,
    /// Address of the conversations service.
    pub conversations_addr: String,
    /// Address of the media service.
    pub media_addr: String,
    /// Address of the webhooks service.
    pub webhooks_addr: String,
    /// Largest accepted image upload in bytes. Default 10 MB.
    pub max_image_bytes: usize,
    /// Largest accepted JSON body in bytes. Default 1 MiB.
    pub max_json_bytes: usize,
    /// Deadline of each gRPC call. Default 10 s.
    pub grpc_timeout: Duration,
    /// Time a client has, from the start of its request, to send the whole body; slower
    /// bodies are cut off with 408 (`SMOOCH_BODY_TIMEOUT_MS`). Default 60 s.
    pub body_timeout: Duration,
    /// Redis of the credential cache, the revocation channel and the rate limits
    /// (`SMOOCH_REDIS_URL`, `SMOOCH_REDIS_PREFIX`; default `redis://127.0.0.1:6379` under
    /// `smooch`). `None` runs without: credentials are cached only briefly in memory and
    /// nothing is rate limited.
    pub redis: Option<auth::RedisConfig>,
    /// Lifetimes of the credential cache (defaults in `auth::CacheConfig`).
    pub credential_cache: auth::CacheConfig,
    /// Rate limits (defaults in [`RateLimitConfig`]).
    pub rate_limit: RateLimitConfig,
    /// API requests served at once (`SMOOCH_MAX_IN_FLIGHT`). Default 64: at this machine's
    /// ~3,000 POSTs per second a full house is ~20 ms of work.
    pub max_in_flight: usize,
    /// How many requests that find every slot taken may wait for one
    /// (`SMOOCH_ADMISSION_QUEUE`, default 256: 50 ms of requests at about 5,000 per second).
    pub admission_queue: usize,
    /// How long a request that finds every slot taken waits for one
    /// (`SMOOCH_ADMISSION_WAIT_MS`, default 50 ms; at most `admission_queue` wait). One that
    /// finds no place to wait, or whose wait runs out, is answered 503 with `Retry-After`.
    pub admission_wait: Duration,
    /// The backing services in this process (`smooch all`): called directly instead of
    /// over the network at the addresses above.
    pub in_process: Option<InProcess>,
    /// The broker the real-time endpoint (`/faye`) takes events from and sends typing
    /// activity to (`SMOOCH_AMQP_URL`, `SMOOCH_AMQP_PREFIX`); `None` delivers only what this
    /// gateway itself publishes (typing), for a gateway without a broker.
    pub realtime_bus: Option<faye::fanout::RealtimeBus>,
    /// Limits of the real-time endpoint (`SMOOCH_FAYE_*`; defaults in [`faye::Limits`]).
    pub faye: faye::Limits,
}

/// The backing services of a gateway that runs in the same process as they do: their
/// in-process channels (health checks, media, streaming calls) and the services
/// themselves, which unary calls reach directly (see `proto::local`).
#[derive(Debug, Clone)]
pub struct InProcess {
    /// The users service.
    pub users: telemetry::grpc::GrpcChannel,
    /// The conversations service.
    pub conversations: telemetry::grpc::GrpcChannel,
    /// The media service.
    pub media: telemetry::grpc::GrpcChannel,
    /// The webhooks service.
    pub webhooks: telemetry::grpc::GrpcChannel,
    /// The users service itself.
    pub users_service: LocalService<dyn proto::v1::users_handle::LocalUsers>,
    /// The conversations service itself.
    pub conversations_service:
        LocalService<dyn proto::v1::conversations_handle::LocalConversations>,
    /// The webhooks service itself.
    pub webhooks_service: LocalService<dyn proto::v1::webhooks_handle::LocalWebhooks>,
}

impl Config {
    /// A config with the defaults for everything but the addresses.
    pub fn new(
        public_url: impl Into<String>,
        users_addr: impl Into<String>,
        conversations_addr: impl Into<String>,
        media_addr: impl Into<String>,
        webhooks_addr: impl Into<String>,
    ) -> Self {
        Config {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            users_addr: users_addr.into(),
            conversations_addr: conversations_addr.into(),
            media_addr: media_addr.into(),
            webhooks_addr: webhooks_addr.into(),
            max_image_bytes: 10 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            grpc_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            redis: Some(auth::RedisConfig::new("redis://127.0.0.1:6379", "smooch")),
            credential_cache: auth::CacheConfig::default(),
            rate_limit: RateLimitConfig::default(),
            max_in_flight: 64,
            admission_queue: 256,
            admission_wait: Duration::from_millis(50),
            in_process: None,
            realtime_bus: None,
            faye: faye::Limits::default(),
        }
    }
}

/// Shared state of the handlers: one reference count to clone, since axum clones the state
/// for every request and every middleware (cloning and dropping the fields one by one was
/// 2.3 % of `smooch all`'s CPU at 2,000 messages a second).
#[derive(Clone)]
pub(crate) struct AppState(std::sync::Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        AppState(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers share (through [`AppState`]).
pub(crate) struct Shared {
    /// The clients of the backing services.
    pub(crate) clients: Clients,
    pub(crate) config: Config,
    /// App tokens and keys, cached in front of the users service.
    pub(crate) credentials: std::sync::Arc<credentials::Credentials>,
    /// App users, cached in front of the users service for the hot paths; it forgets
    /// what the credentials' revocation channel names.
    pub(crate) app_users: std::sync::Arc<app_users::AppUsers>,
    /// Redis, when configured (readiness reports on it).
    pub(crate) redis: Option<auth::RedisClient>,
    /// The rate limiter; `None` when limits are disabled or there is no Redis.
    pub(crate) limiter: Option<auth::RateLimiter>,
    /// This replica's real-time clients.
    pub(crate) faye: faye::Hub,
    /// Marks of users watching their conversation live, which the push worker reads;
    /// `None` without Redis.
    pub(crate) presence: Option<auth::Presence>,
    /// Where typing activity goes.
    pub(crate) activity: std::sync::Arc<faye::fanout::Activity>,
    /// The apps this replica's real-time queue gets events of.
    pub(crate) realtime: std::sync::Arc<faye::fanout::Bindings>,
}

/// Serves the HTTP API on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests; returns once its background tasks (resolvers, revocation listener, real-time
/// fan-out) have ended too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = Tasks::new(shutdown.child_token());
    let served = serve(config, listener, &tasks).await;
    tasks.finish(served).await
}

async fn serve(config: Config, listener: TcpListener, tasks: &Tasks) -> anyhow::Result<()> {
    let shutdown = tasks.shutdown().clone();
    let clients = Clients::new(&config, tasks)?;
    let redis = config
        .redis
        .clone()
        .map(auth::RedisClient::new)
        .transpose()
        .context("gateway Redis settings")?;
    let credentials = std::sync::Arc::new(auth::CredentialCache::new(
        credentials::UsersSource::new(clients.users.clone()),
        redis.clone(),
        config.credential_cache.clone(),
    ));
    let app_users = std::sync::Arc::new(app_users::AppUsers::new(
        config.credential_cache.app_user_ttl,
        config
            .credential_cache
            .app_user_max_mb
            .saturating_mul(1024 * 1024),
    ));
    credentials.add_follower(app_users.clone());
    credentials.spawn_listener(tasks);
    let limiter = redis
        .clone()
        .filter(|_| config.rate_limit.enabled)
        .map(auth::RateLimiter::new);
    let hub = faye::Hub::new(config.faye.clone());
    let presence = redis
        .clone()
        .map(|redis| auth::Presence::new(redis, faye::presence_ttl(&config.faye)));
    let audience = redis
        .clone()
        .map(|redis| auth::Audience::new(redis, faye::fanout::AUDIENCE_TTL));
    let realtime = std::sync::Arc::new(faye::fanout::Bindings::new(
        config.realtime_bus.as_ref(),
        hub.clone(),
        audience,
    ));
    if let Some(bus) = config.realtime_bus.clone() {
        tasks.spawn(
            "real-time fan-out",
            faye::fanout::run(bus, hub.clone(), realtime.clone(), shutdown.clone()),
        );
    }
    tasks.spawn(
        "real-time client expiry",
        faye::expire(hub.clone(), shutdown.clone()),
    );
    let activity = std::sync::Arc::new(faye::fanout::Activity::new(
        config.realtime_bus.clone(),
        hub.clone(),
    ));
    let state = AppState::new(Shared {
        clients,
        config,
        credentials,
        app_users,
        redis,
        limiter,
        faye: hub,
        presence,
        activity,
        realtime,
    });
    let app = routes::router(state);
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    // Answers are small: without TCP_NODELAY they can wait on Nagle for tens of ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("gateway HTTP server failed")
}
