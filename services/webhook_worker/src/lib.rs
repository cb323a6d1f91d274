//! The webhook-worker role: takes message events off the bus, fans each out into one
//! durable delivery job per matching webhook, and delivers the jobs (signed POSTs), with
//! retries held by the broker (TTL queues, never in-memory timers), a dead-letter queue
//! and a delivery log written in batches to the webhooks service.
//!
//! Delivery is at least once: every POST carries a stable `webhook-id` for receivers to
//! de-duplicate, and no ordering is promised. Workers share the queues, so the role
//! scales by adding replicas.

mod consumer;
mod depth;
mod directory;
mod error;
pub mod job;
mod limiter;
mod recorder;
mod retries;
mod sender;
pub mod signature;
pub mod target_guard;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use proto::v1::webhooks_client::WebhooksClient;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// Settings of the webhook-worker role.
#[derive(Debug, Clone)]
pub struct Config {
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub amqp_url: String,
    /// Prefix of every exchange and queue (`SMOOCH_AMQP_PREFIX`, default `smooch`).
    pub amqp_prefix: String,
    /// Address of the webhooks service, `host:port` or a URL (`SMOOCH_WEBHOOKS_GRPC_ADDR`,
    /// default `127.0.0.1:50054`).
    pub webhooks_grpc_addr: String,
    /// Time limit of one POST, connection included (`SMOOCH_WEBHOOK_TIMEOUT_MS`, default
    /// 10000).
    pub timeout: Duration,
    /// Wait before the first retry; each later one waits twice as long as the previous
    /// (`SMOOCH_WEBHOOK_RETRY_BASE_MS`, default 5000).
    pub retry_base: Duration,
    /// Retries after the first attempt before a job is dead-lettered
    /// (`SMOOCH_WEBHOOK_MAX_RETRIES`, default 5).
    pub max_retries: u32,
    /// Allow targets on loopback, private and link-local addresses
    /// (`SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS`, default false; true for tests and local use).
    pub allow_private_targets: bool,
    /// Unacked delivery jobs per worker, i.e. concurrent POSTs
    /// (`SMOOCH_WEBHOOK_PREFETCH`, default 64).
    pub prefetch: u16,
    /// Unacked events per worker being fanned out (`SMOOCH_WEBHOOK_EVENT_PREFETCH`,
    /// default 16).
    pub event_prefetch: u16,
    /// Concurrent POSTs per target origin per worker
    /// (`SMOOCH_WEBHOOK_MAX_IN_FLIGHT_PER_TARGET`, default 8).
    pub max_in_flight_per_target: usize,
    /// Longest time a webhook is cached: changes and deletions apply within it
    /// (`SMOOCH_WEBHOOK_CACHE_TTL_MS`, default 1000).
    pub cache_ttl: Duration,
    /// How often requested retries are polled (`SMOOCH_WEBHOOK_RETRY_POLL_MS`, default
    /// 1000).
    pub retry_poll: Duration,
    /// How long in-flight deliveries may finish after shutdown before the broker gets them
    /// back (`SMOOCH_WEBHOOK_DRAIN_MS`, default 15000).
    pub drain: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_prefix: "smooch".to_owned(),
            webhooks_grpc_addr: "127.0.0.1:50054".to_owned(),
            timeout: Duration::from_millis(10_000),
            retry_base: Duration::from_millis(5_000),
            max_retries: 5,
            allow_private_targets: false,
            prefetch: 64,
            event_prefetch: 16,
            max_in_flight_per_target: 8,
            cache_ttl: Duration::from_millis(1_000),
            retry_poll: Duration::from_millis(1_000),
            drain: Duration::from_millis(15_000),
        }
    }
}

fn env(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid UTF-8"),
    }
}

fn env_parsed<T: std::str::FromStr>(name: &str, default: T, expected: &str) -> anyhow::Result<T> {
    match env(name)? {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={raw:?} is invalid: expected {expected}")),
    }
}

fn env_ms(name: &str, default: Duration) -> anyhow::Result<Duration> {
    let ms = env_parsed(
        name,
        default.as_millis() as u64,
        "milliseconds, such as 5000",
    )?;
    Ok(Duration::from_millis(ms))
}

impl Config {
    /// Reads the settings from `SMOOCH_*` environment variables over the defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Config::default();
        let config = Config {
            amqp_url: env("SMOOCH_AMQP_URL")?.unwrap_or(d.amqp_url),
            amqp_prefix: env("SMOOCH_AMQP_PREFIX")?.unwrap_or(d.amqp_prefix),
            webhooks_grpc_addr: env("SMOOCH_WEBHOOKS_GRPC_ADDR")?.unwrap_or(d.webhooks_grpc_addr),
            timeout: env_ms("SMOOCH_WEBHOOK_TIMEOUT_MS", d.timeout)?,
            retry_base: env_ms("SMOOCH_WEBHOOK_RETRY_BASE_MS", d.retry_base)?,
            max_retries: env_parsed("SMOOCH_WEBHOOK_MAX_RETRIES", d.max_retries, "a count")?,
            allow_private_targets: env_parsed(
                "SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS",
                d.allow_private_targets,
                "true or false",
            )?,
            prefetch: env_parsed("SMOOCH_WEBHOOK_PREFETCH", d.prefetch, "1 to 65535")?,
            event_prefetch: env_parsed(
                "SMOOCH_WEBHOOK_EVENT_PREFETCH",
                d.event_prefetch,
                "1 to 65535",
            )?,
            max_in_flight_per_target: env_parsed(
                "SMOOCH_WEBHOOK_MAX_IN_FLIGHT_PER_TARGET",
                d.max_in_flight_per_target,
                "a positive count",
            )?,
            cache_ttl: env_ms("SMOOCH_WEBHOOK_CACHE_TTL_MS", d.cache_ttl)?,
            retry_poll: env_ms("SMOOCH_WEBHOOK_RETRY_POLL_MS", d.retry_poll)?,
            drain: env_ms("SMOOCH_WEBHOOK_DRAIN_MS", d.drain)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values a typo could make useless.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.prefetch > 0,
            "SMOOCH_WEBHOOK_PREFETCH must be at least 1"
        );
        anyhow::ensure!(
            self.event_prefetch > 0,
            "SMOOCH_WEBHOOK_EVENT_PREFETCH must be at least 1"
        );
        anyhow::ensure!(
            !self.retry_base.is_zero(),
            "SMOOCH_WEBHOOK_RETRY_BASE_MS must be positive"
        );
        anyhow::ensure!(
            !self.timeout.is_zero(),
            "SMOOCH_WEBHOOK_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.max_retries <= 16,
            "SMOOCH_WEBHOOK_MAX_RETRIES must be at most 16"
        );
        Ok(())
    }

    /// The wait of each retry level: `retry_base`, doubling, `max_retries` of them.
    pub fn retry_schedule(&self) -> Vec<Duration> {
        (0..self.max_retries)
            .map(|i| self.retry_base.saturating_mul(1u32 << i))
            .collect()
    }
}

/// The webhooks service's gRPC URL from `host:port` or a URL.
fn grpc_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Runs the worker until `shutdown` is cancelled: the event fan-out consumer, the
/// delivery consumer and the requested-retries poller.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let topology = bus::Topology::new(config.amqp_prefix.clone());
    let endpoint = tonic::transport::Endpoint::from_shared(grpc_url(&config.webhooks_grpc_addr))
        .context("malformed SMOOCH_WEBHOOKS_GRPC_ADDR")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let client = WebhooksClient::new(endpoint.connect_lazy());
    let (recorder, recorder_task) = recorder::Recorder::start(client.clone());
    let publisher = Arc::new(bus::Publisher::new(
        config.amqp_url.clone(),
        "webhook-worker publisher",
        topology.clone(),
    ));
    let retry_ttls = config.retry_schedule();
    let worker = Arc::new(worker::Worker {
        topology: topology.clone(),
        publisher: publisher.clone(),
        directory: directory::Directory::new(client.clone(), config.cache_ttl),
        sender: sender::Sender::new(config.timeout, config.allow_private_targets)?,
        limiter: limiter::TargetLimiter::new(config.max_in_flight_per_target),
        recorder,
        retry_ttls: retry_ttls.clone(),
    });
    let source = |queue: String, prefetch: u16| consumer::Source {
        amqp_url: config.amqp_url.clone(),
        topology: topology.clone(),
        retry_ttls: retry_ttls.clone(),
        queue,
        prefetch,
        drain: config.drain,
    };
    tracing::info!(prefix = %config.amqp_prefix, retry_schedule_ms = ?retry_ttls.iter().map(|d| d.as_millis()).collect::<Vec<_>>(), "webhook worker starting");

    let events = {
        let worker = worker.clone();
        consumer::consume(
            source(topology.webhook_events_queue(), config.event_prefetch),
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.fan_out(d).await }
            },
        )
    };
    let deliveries = {
        let worker = worker.clone();
        consumer::consume(
            source(topology.deliver_queue(), config.prefetch),
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.deliver(d).await }
            },
        )
    };
    let requested = retries::run(worker.clone(), client, config.retry_poll, shutdown.clone());
    let depths = depth::report(
        config.amqp_url.clone(),
        topology.all_queues(&retry_ttls),
        shutdown.clone(),
    );
    tokio::join!(events, deliveries, requested, depths);

    // Every step is done: let the delivery log flush, then close the publisher.
    drop(worker);
    if tokio::time::timeout(Duration::from_secs(5), recorder_task)
        .await
        .is_err()
    {
        tracing::warn!("delivery log flush timed out");
    }
    publisher.close().await;
    tracing::info!("webhook worker stopped");
    Ok(())
}
