//! The `smooch` binary's library: wiring each role from [`Settings`], running every role in
//! one process ([`start_all`]), and the operator's admin client. Tests start the suite
//! through the same functions.

pub mod admin;
pub mod ops;
pub mod process;
pub mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use proto::local::LocalService;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

/// A role of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP gateway.
    Gateway,
    /// Apps, keys, app users (gRPC).
    Users,
    /// Conversations and messages (gRPC).
    Conversations,
    /// Media bytes (gRPC).
    Media,
    /// Webhook subscriptions (gRPC).
    Webhooks,
    /// Webhook delivery from the bus (no listener).
    WebhookWorker,
    /// Push notifications from the bus to APNs and FCM (no listener).
    Push,
}

impl Role {
    /// The role's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Users => "users",
            Role::Conversations => "conversations",
            Role::Media => "media",
            Role::Webhooks => "webhooks",
            Role::WebhookWorker => "webhook-worker",
            Role::Push => "push",
        }
    }
}

/// Applies every service's migrations, creating the database first if needed.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::ensure_database(&settings.database_url).await?;
    users::migrate(&settings.database_url).await?;
    conversations::migrate(&settings.database_url).await?;
    webhooks::migrate(&settings.database_url).await?;
    Ok(())
}

/// Stores the operator's configured account key (or, with none configured, makes sure one
/// exists), as `smooch migrate` and `smooch all` do after migrating.
pub async fn ensure_account_key(settings: &Settings) -> anyhow::Result<users::AccountKey> {
    let configured = settings
        .account_key()
        .map(|(id, secret)| (id.to_owned(), secret.expose_secret().to_owned()));
    users::ensure_account_key(&settings.database_url, configured).await
}

/// The conversations service's outbox relay target.
fn relay_target(settings: &Settings) -> conversations::RelayTarget {
    conversations::RelayTarget {
        amqp_url: settings.amqp_url.clone(),
        amqp_prefix: settings.amqp_prefix.clone(),
        local: None,
        audience: Some(redis_config(settings)),
    }
}

/// The webhook worker's settings, with the suite's broker and webhooks address.
fn worker_config(settings: &Settings, webhooks_addr: String) -> webhook_worker::Config {
    webhook_worker::Config {
        amqp_url: settings.amqp_url.clone(),
        amqp_prefix: settings.amqp_prefix.clone(),
        webhooks_grpc_addr: webhooks_addr,
        ..settings.webhook_worker.clone()
    }
}

/// The push worker's settings, with the suite's broker and users address.
fn push_config(settings: &Settings, users_addr: String) -> push::Config {
    push::Config {
        amqp_url: settings.amqp_url.clone(),
        amqp_prefix: settings.amqp_prefix.clone(),
        users_grpc_addr: users_addr,
        redis: Some(redis_config(settings)),
        ..settings.push.clone()
    }
}

/// What a role's `/readyz` checks.
fn readiness_checks(role: Role, settings: &Settings) -> anyhow::Result<Vec<ops::Check>> {
    let postgres = || -> anyhow::Result<ops::Check> {
        Ok(ops::Check::Postgres(db::connect(
            &settings.database_url,
            "public",
            1,
        )?))
    };
    let broker = || ops::Check::Tcp("rabbitmq", ops::amqp_host_port(&settings.amqp_url));
    let own = || ops::Check::Grpc("grpc", settings.grpc_addr(role.name()));
    Ok(match role {
        Role::Users | Role::Webhooks => vec![own(), postgres()?],
        Role::Conversations => vec![own(), postgres()?, broker()],
        Role::Media => vec![own()],
        Role::WebhookWorker => vec![
            broker(),
            ops::Check::Grpc("webhooks", settings.grpc_addr("webhooks")),
        ],
        Role::Push => vec![
            broker(),
            ops::Check::Grpc("users", settings.grpc_addr("users")),
        ],
        Role::Gateway => Vec::new(),
    })
}

async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    let addr = addr.split("://").last().unwrap_or(addr);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// The users role's settings; `development_fallback` lets an unset `SMOOCH_SECRETS_KEY`
/// fall back to the public development key (`smooch all` only).
fn users_config(
    settings: &Settings,
    conversations_addr: String,
    development_fallback: bool,
) -> anyhow::Result<users::Config> {
    Ok(users::Config {
        database_url: settings.database_url.clone(),
        max_connections: settings.database_max_connections,
        redis: Some(redis_config(settings)),
        conversations_addr: Some(conversations_addr),
        secrets_key: settings.secrets_key(development_fallback)?,
    })
}

/// The conversations role's settings; `users_addr` is where it marks started conversations.
fn conversations_config(settings: &Settings, users_addr: String) -> conversations::Config {
    conversations::Config {
        database_url: settings.database_url.clone(),
        max_connections: settings.database_max_connections,
        relay: Some(relay_target(settings)),
        message_writers: settings.message_writers as usize,
        users_addr: Some(users_addr),
    }
}

fn webhooks_config(settings: &Settings) -> webhooks::Config {
    webhooks::Config {
        database_url: settings.database_url.clone(),
        max_connections: settings.database_max_connections,
        allow_private_targets: settings.webhook_worker.allow_private_targets,
    }
}

/// Spawns one gRPC role on `listener`, as `smooch <role>` runs it.
fn spawn_grpc_role(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    role: Role,
    settings: &Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match role {
        Role::Users => {
            let config = users_config(settings, settings.grpc_addr("conversations"), false)?;
            tasks.spawn(users::run(config, listener, shutdown));
        }
        Role::Conversations => {
            tasks.spawn(conversations::run(
                conversations_config(settings, settings.grpc_addr("users")),
                listener,
                shutdown,
            ));
        }
        Role::Webhooks => {
            tasks.spawn(webhooks::run(webhooks_config(settings), listener, shutdown));
        }
        Role::Media => {
            let config = media::Config::new(settings.media_dir.clone());
            tasks.spawn(media::run(config, listener, shutdown));
        }
        Role::Gateway | Role::WebhookWorker | Role::Push => {}
    }
    Ok(())
}

fn redis_config(settings: &Settings) -> auth::RedisConfig {
    auth::RedisConfig::new(settings.redis_url.clone(), settings.redis_prefix.clone())
}

fn gateway_config(settings: &Settings, addrs: [String; 4]) -> gateway::Config {
    let [users, conversations, media, webhooks] = addrs;
    gateway::Config {
        redis: Some(redis_config(settings)),
        credential_cache: settings.credential_cache.clone(),
        rate_limit: settings.rate_limit.clone(),
        body_timeout: settings.body_timeout,
        max_in_flight: settings.max_in_flight,
        admission_queue: settings.admission_queue,
        admission_wait: settings.admission_wait,
        faye: settings.faye.clone(),
        realtime_bus: Some(gateway::faye::fanout::RealtimeBus {
            amqp_url: settings.amqp_url.clone(),
            amqp_prefix: settings.amqp_prefix.clone(),
        }),
        ..gateway::Config::new(settings.public_url(), users, conversations, media, webhooks)
    }
}

/// Runs one role until `shutdown` is cancelled, as `smooch <role>` does.
pub async fn run_role(
    role: Role,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::metrics::install();
    let mut tasks = JoinSet::new();
    match role {
        Role::Gateway => {
            let listener = bind(&settings.http_addr.to_string(), "HTTP").await?;
            let addrs =
                ["users", "conversations", "media", "webhooks"].map(|s| settings.grpc_addr(s));
            tasks.spawn(gateway::run(
                gateway_config(settings, addrs),
                listener,
                shutdown.clone(),
            ));
        }
        Role::WebhookWorker => {
            let config = webhook_worker::Config {
                conversations_grpc_addr: Some(settings.grpc_addr("conversations")),
                ..worker_config(settings, settings.grpc_addr("webhooks"))
            };
            tasks.spawn(webhook_worker::run(config, shutdown.clone()));
        }
        Role::Push => {
            let config = push_config(settings, settings.grpc_addr("users"));
            tasks.spawn(push::run(config, shutdown.clone()));
        }
        grpc => {
            let listener = bind(&settings.grpc_addr(grpc.name()), grpc.name()).await?;
            spawn_grpc_role(&mut tasks, grpc, settings, listener, shutdown.clone())?;
        }
    }
    if let Some(addr) = settings.admin_addr(role.name()) {
        let checks = readiness_checks(role, settings)?;
        tasks.spawn(ops::serve(addr, checks, shutdown.clone()));
    }
    wait(tasks, shutdown).await
}

/// Waits for every task; the first failure stops the others.
async fn wait(
    mut tasks: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a role panicked").and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = format!("{e:#}"), "role stopped with an error");
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The suite running in this process.
pub struct Running {
    /// Where the gateway listens.
    pub http_addr: SocketAddr,
    /// What happened to the account key at start-up.
    pub account_key: users::AccountKey,
    /// The gateway's configuration, with the gRPC roles' actual addresses: another gateway
    /// started with it serves the same suite.
    pub gateway_config: gateway::Config,
    tasks: JoinSet<anyhow::Result<()>>,
    /// The in-process services' background tasks (relay, sweeps, change feed).
    background: tasks::Tasks,
    shutdown: CancellationToken,
}

impl Running {
    /// Waits until every role and every background task has stopped (after `shutdown` is
    /// cancelled, or on the first failure or panic).
    pub async fn wait(self) -> anyhow::Result<()> {
        let roles = wait(self.tasks, self.shutdown).await;
        self.background.finish(roles).await
    }
}

/// Starts every role in this process, as `smooch all` does: creates and migrates the
/// database, makes sure an account key exists, and serves the gRPC roles on their configured
/// addresses (free loopback ports when unset) behind the gateway.
pub async fn start_all(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    telemetry::metrics::install();
    migrate(settings).await?;
    let account_key = ensure_account_key(settings).await?;
    // The suite's own token: a panicked background task stops every role, and a failed
    // start stops what it started, without cancelling the caller's token.
    let shutdown = shutdown.child_token();
    let background = tasks::Tasks::new(shutdown.clone());
    match start_roles(settings, account_key, shutdown, &background).await {
        Ok(running) => Ok(running),
        Err(e) => background.finish(Err(e)).await,
    }
}

/// The roles of [`start_all`], with their background tasks on `background`.
async fn start_roles(
    settings: &Settings,
    account_key: users::AccountKey,
    shutdown: CancellationToken,
    background: &tasks::Tasks,
) -> anyhow::Result<Running> {
    let mut tasks = JoinSet::new();
    let mut listeners = Vec::new();
    for (role, configured) in [
        (Role::Users, &settings.users_grpc_addr),
        (Role::Conversations, &settings.conversations_grpc_addr),
        (Role::Media, &settings.media_grpc_addr),
        (Role::Webhooks, &settings.webhooks_grpc_addr),
    ] {
        listeners.push(bind(configured.as_deref().unwrap_or("127.0.0.1:0"), role.name()).await?);
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let [users_listener, conversations_listener, media_listener, webhooks_listener]: [TcpListener;
        4] = listeners
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected four gRPC listeners"))?;

    // The gateway, the worker and the users service call the services of this process
    // directly (no socket, no HTTP/2); each service also serves on its listener, for other
    // processes (a second gateway, a split role).
    let grpc_timeout = gateway::Config::new("", "", "", "", "").grpc_timeout;
    // The two call each other: the users service moves a merged user's history in process,
    // the conversations service marks a started conversation over the users listener (a
    // conversation's first message only).
    // The worker takes the events this process commits from the relay, not from its queue.
    let handoff = bus::LocalHandoff::default();
    let mut conversations_settings = conversations_config(settings, addrs[0].clone());
    if let Some(relay) = &mut conversations_settings.relay {
        relay.local = Some(handoff.clone());
    }
    let conversations = conversations::routes(conversations_settings, background)
        .await
        .context("starting the conversations service")?;
    let conversations_channel =
        telemetry::grpc::in_process(conversations.routes.clone(), grpc_timeout);
    let users = users::routes(
        users_config(settings, addrs[1].clone(), true)?,
        Some(conversations_channel.clone()),
        background,
    )
    .await
    .context("starting the users service")?;
    let media = media::routes(media::Config::new(settings.media_dir.clone()))
        .await
        .context("starting the media service")?;
    let webhooks = webhooks::routes(webhooks_config(settings), background)
        .await
        .context("starting the webhooks service")?;
    let in_process = gateway::InProcess {
        users: telemetry::grpc::in_process(users.routes.clone(), grpc_timeout),
        conversations: conversations_channel,
        media: telemetry::grpc::in_process(media.clone(), media::UPLOAD_TIMEOUT),
        webhooks: telemetry::grpc::in_process(webhooks.routes.clone(), grpc_timeout),
        users_service: LocalService(users.local),
        conversations_service: LocalService(conversations.local),
        webhooks_service: LocalService(webhooks.local),
    };
    for (name, routes, listener, timeout) in [
        (
            "users",
            users.routes,
            users_listener,
            Duration::from_secs(30),
        ),
        (
            "conversations",
            conversations.routes,
            conversations_listener,
            Duration::from_secs(30),
        ),
        ("media", media, media_listener, media::UPLOAD_TIMEOUT),
        (
            "webhooks",
            webhooks.routes,
            webhooks_listener,
            Duration::from_secs(30),
        ),
    ] {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            telemetry::grpc::serve(routes, listener, timeout, shutdown)
                .await
                .with_context(|| format!("{name} gRPC server failed"))
        });
    }

    let listener = bind(&settings.http_addr.to_string(), "HTTP").await?;
    let http_addr = listener.local_addr()?;
    let mut settings = settings.clone();
    if settings.public_url.is_none() {
        settings.public_url = Some(format!("http://{http_addr}"));
    }
    let addrs: [String; 4] = addrs
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected four gRPC roles"))?;
    let mut worker = worker_config(&settings, addrs[3].clone());
    worker.webhooks_channel = Some(in_process.webhooks.clone());
    worker.webhooks_service = Some(in_process.webhooks_service.clone());
    worker.local_handoff = Some(handoff);
    tasks.spawn(webhook_worker::run(worker, shutdown.clone()));
    let mut pusher = push_config(&settings, addrs[0].clone());
    pusher.users_channel = Some(in_process.users.clone());
    pusher.users_service = Some(in_process.users_service.clone());
    tasks.spawn(push::run(pusher, shutdown.clone()));
    let mut gateway_config = gateway_config(&settings, addrs);
    gateway_config.in_process = Some(in_process);
    tasks.spawn(gateway::run(
        gateway_config.clone(),
        listener,
        shutdown.clone(),
    ));
    Ok(Running {
        http_addr,
        account_key,
        gateway_config,
        tasks,
        background: background.clone(),
        shutdown,
    })
}
