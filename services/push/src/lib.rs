//! The push role: takes app-maker message events (whispers included) off the bus and
//! sends one notification per message to every device of the user that has a push token
//! and whose active user the user is, through APNs (HTTP/2, ES256 provider tokens or .p12
//! client certificates) or FCM (HTTP v1 with a service account, or the legacy endpoint with
//! a server key), with each app's own credentials. Refused tokens are cleared; 429 and 5xx answers retry through
//! broker-held TTL queues, as webhooks do. See docs/push.md.

mod apns;
mod credentials;
mod error;
mod fcm;
mod notification;
mod outcome;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use proto::local::LocalService;
use proto::v1 as pb;
use proto::v1::users_handle::{LocalUsers, UsersHandle};
use tokio_util::sync::CancellationToken;

pub use apns::{PRODUCTION_URL as APNS_PRODUCTION_URL, SANDBOX_URL as APNS_SANDBOX_URL};
pub use error::{Error, Result};
pub use fcm::{DEFAULT_URL as FCM_DEFAULT_URL, SCOPE as FCM_SCOPE};

/// Settings of the push role. Each field is read from the `SMOOCH_*` variable named after
/// it (its serde name in capitals); see the binary's settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    #[serde(skip_serializing)]
    pub amqp_url: String,
    /// Prefix of every exchange and queue (`SMOOCH_AMQP_PREFIX`, default `smooch`).
    #[serde(skip_serializing, deserialize_with = "domain::config::text")]
    pub amqp_prefix: String,
    /// Address of the users service, `host:port` or a URL (`SMOOCH_USERS_GRPC_ADDR`,
    /// default `127.0.0.1:50051`).
    #[serde(skip_serializing)]
    pub users_grpc_addr: String,
    /// The users service in this process (`smooch all`), used instead of
    /// `users_grpc_addr` when set.
    #[serde(skip)]
    pub users_channel: Option<telemetry::grpc::GrpcChannel>,
    /// The users service itself (`smooch all`, with `users_channel`): unary calls reach it
    /// directly.
    #[serde(skip)]
    pub users_service: Option<LocalService<dyn LocalUsers>>,
    /// Redis (`SMOOCH_REDIS_URL`, `SMOOCH_REDIS_PREFIX`), where the gateways mark users
    /// watching their conversation live over `/faye`: no push goes to a user who is.
    /// `None` pushes to everyone.
    #[serde(skip)]
    pub redis: Option<auth::RedisConfig>,
    /// Base URL of APNs (`SMOOCH_PUSH_APNS_URL`; unset uses Apple's hosts:
    /// `https://api.push.apple.com` for apps with `production: true`, else
    /// `https://api.sandbox.push.apple.com`). An `http://` base speaks HTTP/2 without TLS
    /// (prior knowledge), for sandboxes and tests.
    #[serde(
        rename = "push_apns_url",
        deserialize_with = "domain::config::text_opt"
    )]
    pub apns_url: Option<String>,
    /// Base URL of FCM, for both the v1 and the legacy endpoint (`SMOOCH_PUSH_FCM_URL`,
    /// default `https://fcm.googleapis.com`). An `http://` base speaks HTTP/1.1.
    #[serde(rename = "push_fcm_url", deserialize_with = "domain::config::text")]
    pub fcm_url: String,
    /// A PEM file of extra root certificates trusted for `https://` providers
    /// (`SMOOCH_PUSH_CA_FILE`; unset trusts the system roots only).
    #[serde(rename = "push_ca_file", deserialize_with = "domain::config::text_opt")]
    pub ca_file: Option<String>,
    /// Time limit of one request to a provider (`SMOOCH_PUSH_TIMEOUT_MS`, default 10000).
    #[serde(rename = "push_timeout_ms", with = "domain::config::millis")]
    pub timeout: Duration,
    /// Wait before the first retry; each later one waits twice as long
    /// (`SMOOCH_PUSH_RETRY_BASE_MS`, default 5000).
    #[serde(rename = "push_retry_base_ms", with = "domain::config::millis")]
    pub retry_base: Duration,
    /// Retries after the first attempt before a notification is dead-lettered
    /// (`SMOOCH_PUSH_MAX_RETRIES`, default 5).
    #[serde(rename = "push_max_retries")]
    pub max_retries: u32,
    /// Unacked events (and retries) per worker (`SMOOCH_PUSH_PREFETCH`, default 32).
    #[serde(rename = "push_prefetch")]
    pub prefetch: u16,
    /// How long in-flight sends may finish after shutdown (`SMOOCH_PUSH_DRAIN_MS`, default
    /// 15000).
    #[serde(rename = "push_drain_ms", with = "domain::config::millis")]
    pub drain: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_prefix: "smooch".to_owned(),
            users_grpc_addr: "127.0.0.1:50051".to_owned(),
            users_channel: None,
            users_service: None,
            redis: None,
            apns_url: None,
            fcm_url: fcm::DEFAULT_URL.to_owned(),
            ca_file: None,
            timeout: Duration::from_millis(10_000),
            retry_base: Duration::from_millis(5_000),
            max_retries: 5,
            prefetch: 32,
            drain: Duration::from_millis(15_000),
        }
    }
}

impl Config {
    /// Checks the values a typo could make useless.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.prefetch > 0, "SMOOCH_PUSH_PREFETCH must be at least 1");
        anyhow::ensure!(
            !self.retry_base.is_zero(),
            "SMOOCH_PUSH_RETRY_BASE_MS must be positive"
        );
        anyhow::ensure!(
            !self.timeout.is_zero(),
            "SMOOCH_PUSH_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.max_retries <= 16,
            "SMOOCH_PUSH_MAX_RETRIES must be at most 16"
        );
        for (variable, url) in [
            ("SMOOCH_PUSH_APNS_URL", self.apns_url.as_deref()),
            ("SMOOCH_PUSH_FCM_URL", Some(self.fcm_url.as_str())),
        ] {
            if let Some(url) = url {
                anyhow::ensure!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "{variable} must be an http:// or https:// URL"
                );
            }
        }
        Ok(())
    }

    /// The wait of each retry level: `retry_base`, doubling, `max_retries` of them.
    pub fn retry_schedule(&self) -> Vec<Duration> {
        bus::retry_schedule(self.retry_base, self.max_retries)
    }
}

/// How long a call to the users service may take.
const USERS_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the push worker until `shutdown` is cancelled: the event consumer and the retry
/// consumer.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    // A panicked task (the log writer) stops the consumers too.
    let tasks = tasks::Tasks::new(shutdown.child_token());
    let shutdown = tasks.shutdown().clone();
    let ca = match &config.ca_file {
        Some(path) => {
            let pem = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading SMOOCH_PUSH_CA_FILE {path}"))?;
            Some(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("SMOOCH_PUSH_CA_FILE {path} is not PEM"))?,
            )
        }
        None => None,
    };
    let topology = bus::Topology::new(config.amqp_prefix.clone());
    let channel = match config.users_channel.clone() {
        Some(in_process) => in_process,
        None => telemetry::grpc::network(
            tonic::transport::Endpoint::from_shared(telemetry::grpc::url(&config.users_grpc_addr))
                .context("malformed SMOOCH_USERS_GRPC_ADDR")?
                .connect_timeout(Duration::from_secs(5))
                .timeout(USERS_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy(),
        ),
    };
    let publisher = Arc::new(bus::Publisher::new(
        config.amqp_url.clone(),
        "push publisher",
        topology.clone(),
    ));
    let retry_ttls = config.retry_schedule();
    let users = UsersHandle::new(
        channel,
        config
            .users_service
            .clone()
            .map(|service| (service, USERS_TIMEOUT)),
    );
    let presence = config
        .redis
        .clone()
        .map(auth::RedisClient::new)
        .transpose()
        .context("push worker Redis settings")?
        // Readers only compare marks with the clock: the TTL is the writers'.
        .map(|redis| auth::Presence::new(redis, Duration::ZERO));
    // Attempts are logged to the users service, off the send path, in batches.
    let recorder = tasks::BatchLog::start(&tasks, "push delivery log writer", {
        let users = users.clone();
        move |attempts| {
            let mut users = users.clone();
            async move {
                users
                    .record_push_attempts(pb::RecordPushAttemptsRequest { attempts })
                    .await
                    .map(drop)
            }
        }
    });
    let worker = Arc::new(worker::Worker {
        topology: topology.clone(),
        publisher: publisher.clone(),
        users,
        apns: apns::Apns::new(config.apns_url.clone(), config.timeout, ca.as_ref())
            .context("building the APNs client")?,
        fcm: fcm::FcmClient::new(&config.fcm_url, config.timeout, ca.as_ref())
            .context("building the FCM client")?,
        retry_ttls: retry_ttls.clone(),
        recorder,
        presence,
    });
    let source = |queue: String| bus::consumer::Source {
        amqp_url: config.amqp_url.clone(),
        connection_name: format!("push {queue}"),
        queue,
        prefetch: config.prefetch,
        drain: config.drain,
    };
    let declare = {
        let topology = topology.clone();
        let retry_ttls = retry_ttls.clone();
        move |channel: lapin::Channel| {
            let topology = topology.clone();
            let retry_ttls = retry_ttls.clone();
            async move { topology.declare_push(&channel, &retry_ttls).await }
        }
    };
    tracing::info!(prefix = %config.amqp_prefix, apns = config.apns_url.as_deref().unwrap_or("apple"), fcm = %config.fcm_url, "push worker starting");
    let events = {
        let worker = worker.clone();
        bus::consumer::consume(
            source(topology.push_events_queue()),
            declare.clone(),
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.on_event(d).await }
            },
        )
    };
    let retries = {
        let worker = worker.clone();
        bus::consumer::consume(
            source(topology.push_deliver_queue()),
            declare,
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.on_retry(d).await }
            },
        )
    };
    tokio::join!(events, retries);
    // The last recorder goes with the worker: the log writer flushes what it holds and ends.
    drop(worker);
    let finished = tokio::time::timeout(Duration::from_secs(5), tasks.finish(Ok(()))).await;
    if finished.is_err() {
        tracing::warn!("push delivery log not flushed in time; last attempts dropped");
    }
    publisher.close().await;
    tracing::info!("push worker stopped");
    finished.unwrap_or(Ok(()))
}
