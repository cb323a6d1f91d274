//! The webhook-worker role: takes message events off the bus, fans each out into one
//! durable delivery job per matching webhook, and delivers the jobs (signed POSTs), with
//! retries held by the broker (TTL queues, never in-memory timers) and delivered by a
//! consumer of their own, per-target circuit breakers, a dead-letter queue and a delivery
//! log written in batches to the webhooks service.
//!
//! Delivery is at least once: every POST carries a stable `webhook-id` for receivers to
//! de-duplicate, and no ordering is promised. Workers share the queues, so the role
//! scales by adding replicas.

mod breaker;
mod depth;
mod directory;
mod error;
mod intake;
pub mod job;
mod limiter;
mod retries;
mod sender;
pub mod signature;
pub mod target_guard;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use proto::local::LocalService;
use proto::v1 as pb;
use proto::v1::webhooks_handle::{LocalWebhooks, WebhooksHandle};
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// Settings of the webhook-worker role. Each field is read from the `SMOOCH_*` variable
/// named after it (its serde name in capitals); see the binary's settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    #[serde(skip_serializing)]
    pub amqp_url: String,
    /// Prefix of every exchange and queue (`SMOOCH_AMQP_PREFIX`, default `smooch`).
    #[serde(skip_serializing, deserialize_with = "domain::config::text")]
    pub amqp_prefix: String,
    /// Address of the webhooks service, `host:port` or a URL (`SMOOCH_WEBHOOKS_GRPC_ADDR`,
    /// default `127.0.0.1:50054`).
    #[serde(skip_serializing)]
    pub webhooks_grpc_addr: String,
    /// The webhooks service in this process (`smooch all`), used instead of
    /// `webhooks_grpc_addr` when set.
    #[serde(skip)]
    pub webhooks_channel: Option<telemetry::grpc::GrpcChannel>,
    /// The webhooks service itself (`smooch all`, with `webhooks_channel`): unary calls
    /// reach it directly.
    #[serde(skip)]
    pub webhooks_service: Option<LocalService<dyn LocalWebhooks>>,
    /// Where this process's outbox relay offers the events it commits (`smooch all`): the
    /// worker registers there and fans them out in process, up to `event_prefetch` at once
    /// on top of its event queue's.
    #[serde(skip)]
    pub local_handoff: Option<bus::LocalHandoff>,
    /// The conversations replica whose events the worker takes over a gRPC stream when it
    /// has no relay of its own process (split roles; `SMOOCH_CONVERSATIONS_GRPC_ADDR`), up to
    /// `event_prefetch` at once on top of its event queue's; `None` takes every event from
    /// the queue.
    #[serde(skip)]
    pub conversations_grpc_addr: Option<String>,
    /// Time limit of one POST, connection included (`SMOOCH_WEBHOOK_TIMEOUT_MS`, default
    /// 10000).
    #[serde(rename = "webhook_timeout_ms", with = "domain::config::millis")]
    pub timeout: Duration,
    /// Wait before the first retry; each later one waits twice as long as the previous
    /// (`SMOOCH_WEBHOOK_RETRY_BASE_MS`, default 5000).
    #[serde(rename = "webhook_retry_base_ms", with = "domain::config::millis")]
    pub retry_base: Duration,
    /// Retries after the first attempt before a job is dead-lettered
    /// (`SMOOCH_WEBHOOK_MAX_RETRIES`, default 5).
    #[serde(rename = "webhook_max_retries")]
    pub max_retries: u32,
    /// Allow targets on loopback, private and link-local addresses
    /// (`SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS`, default false; true for tests and local use).
    #[serde(rename = "webhook_allow_private_targets")]
    pub allow_private_targets: bool,
    /// Unacked delivery jobs per worker, i.e. concurrent POSTs
    /// (`SMOOCH_WEBHOOK_PREFETCH`, default 64).
    #[serde(rename = "webhook_prefetch")]
    pub prefetch: u16,
    /// Unacked retries per worker, i.e. concurrent retry POSTs, on top of `prefetch`
    /// (`SMOOCH_WEBHOOK_RETRY_PREFETCH`, default 32): retries have a consumer of their own
    /// so they never take the slots of first attempts.
    #[serde(rename = "webhook_retry_prefetch")]
    pub retry_prefetch: u16,
    /// Failed attempts in a row (timeouts, connection errors, 5xx, 429) that open a
    /// target origin's circuit (`SMOOCH_WEBHOOK_CIRCUIT_FAILURES`, default 5).
    #[serde(rename = "webhook_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit short-circuits its target's deliveries before one probe
    /// is let through (`SMOOCH_WEBHOOK_CIRCUIT_COOL_DOWN_MS`, default 10000); at most the
    /// longest wait of the retry schedule (see [`Config::effective_cool_down`]).
    #[serde(
        rename = "webhook_circuit_cool_down_ms",
        with = "domain::config::millis"
    )]
    pub circuit_cool_down: Duration,
    /// Unacked events per worker being fanned out (`SMOOCH_WEBHOOK_EVENT_PREFETCH`,
    /// default 64).
    #[serde(rename = "webhook_event_prefetch")]
    pub event_prefetch: u16,
    /// Whether the worker takes events from the outbox relay of its own process when it
    /// has one (`smooch all`; `SMOOCH_WEBHOOK_IN_PROCESS_EVENTS`, default true); off, every
    /// event comes through the event queue, as with split roles.
    #[serde(rename = "webhook_in_process_events")]
    pub in_process_events: bool,
    /// Concurrent POSTs per target origin per worker
    /// (`SMOOCH_WEBHOOK_MAX_IN_FLIGHT_PER_TARGET`, default 8).
    #[serde(rename = "webhook_max_in_flight_per_target")]
    pub max_in_flight_per_target: usize,
    /// Longest time a webhook is cached: changes and deletions apply within it
    /// (`SMOOCH_WEBHOOK_CACHE_TTL_MS`, default 1000).
    #[serde(rename = "webhook_cache_ttl_ms", with = "domain::config::millis")]
    pub cache_ttl: Duration,
    /// How often requested retries are polled (`SMOOCH_WEBHOOK_RETRY_POLL_MS`, default
    /// 1000).
    #[serde(rename = "webhook_retry_poll_ms", with = "domain::config::millis")]
    pub retry_poll: Duration,
    /// How long in-flight deliveries may finish after shutdown before the broker gets them
    /// back (`SMOOCH_WEBHOOK_DRAIN_MS`, default 15000).
    #[serde(rename = "webhook_drain_ms", with = "domain::config::millis")]
    pub drain: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_prefix: "smooch".to_owned(),
            webhooks_grpc_addr: "127.0.0.1:50054".to_owned(),
            webhooks_channel: None,
            webhooks_service: None,
            local_handoff: None,
            conversations_grpc_addr: None,
            timeout: Duration::from_millis(10_000),
            retry_base: Duration::from_millis(5_000),
            max_retries: 5,
            allow_private_targets: false,
            prefetch: 64,
            retry_prefetch: 32,
            circuit_failures: 5,
            circuit_cool_down: Duration::from_millis(10_000),
            event_prefetch: 64,
            in_process_events: true,
            max_in_flight_per_target: 8,
            cache_ttl: Duration::from_millis(1_000),
            retry_poll: Duration::from_millis(1_000),
            drain: Duration::from_millis(15_000),
        }
    }
}

impl Config {
    /// Checks the values a typo could make useless.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.prefetch > 0,
            "SMOOCH_WEBHOOK_PREFETCH must be at least 1"
        );
        anyhow::ensure!(
            self.retry_prefetch > 0,
            "SMOOCH_WEBHOOK_RETRY_PREFETCH must be at least 1"
        );
        anyhow::ensure!(
            self.circuit_failures > 0,
            "SMOOCH_WEBHOOK_CIRCUIT_FAILURES must be at least 1"
        );
        anyhow::ensure!(
            !self.circuit_cool_down.is_zero(),
            "SMOOCH_WEBHOOK_CIRCUIT_COOL_DOWN_MS must be positive"
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
        bus::retry_schedule(self.retry_base, self.max_retries)
    }

    /// The cool-down circuits run with: the configured one, but no longer than the
    /// schedule's longest wait. A recovered target is found by its circuit's next probe,
    /// so a longer cool-down would hold its deliveries back longer than any retry would.
    pub fn effective_cool_down(&self) -> Duration {
        self.retry_schedule()
            .last()
            .map_or(self.circuit_cool_down, |longest| {
                self.circuit_cool_down.min(*longest)
            })
    }

    /// How long a delivery may be held back by an open circuit, using up no attempt,
    /// before each further hold counts as a failed attempt: the whole retry schedule plus
    /// a cool-down. A target that comes back within it gets every job; the jobs of one
    /// that stays down still end in the dead-letter queue.
    pub fn hold_limit(&self) -> Duration {
        self.retry_schedule().iter().sum::<Duration>() + self.effective_cool_down()
    }
}

/// How long a call to the webhooks service may take.
const WEBHOOKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the worker until `shutdown` is cancelled: the event fan-out consumer, the
/// first-attempt and retry delivery consumers and the requested-retries poller.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    // A panicked task (the log writer) stops the consumers too.
    let tasks = tasks::Tasks::new(shutdown.child_token());
    let shutdown = tasks.shutdown().clone();
    let topology = bus::Topology::new(config.amqp_prefix.clone());
    let channel = match config.webhooks_channel.clone() {
        Some(in_process) => in_process,
        None => telemetry::grpc::network(
            tonic::transport::Endpoint::from_shared(telemetry::grpc::url(
                &config.webhooks_grpc_addr,
            ))
            .context("malformed SMOOCH_WEBHOOKS_GRPC_ADDR")?
            .connect_timeout(Duration::from_secs(5))
            .timeout(WEBHOOKS_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy(),
        ),
    };
    let client = WebhooksHandle::new(
        channel,
        config
            .webhooks_service
            .clone()
            .map(|service| (service, WEBHOOKS_TIMEOUT)),
    );
    // Attempts are logged to the webhooks service, off the delivery path, in batches.
    let recorder = tasks::BatchLog::start(&tasks, "delivery log writer", {
        let client = client.clone();
        move |attempts| {
            let mut client = client.clone();
            async move {
                client
                    .record_attempts(pb::RecordAttemptsRequest { attempts })
                    .await
                    .map(drop)
            }
        }
    });
    let publisher = Arc::new(bus::Publisher::new(
        config.amqp_url.clone(),
        "webhook-worker publisher",
        topology.clone(),
    ));
    let retry_ttls = config.retry_schedule();
    let cool_down = config.effective_cool_down();
    let worker = Arc::new(worker::Worker {
        topology: topology.clone(),
        publisher: publisher.clone(),
        directory: directory::Directory::new(client.clone(), config.cache_ttl),
        sender: sender::Sender::new(config.timeout, config.allow_private_targets)?,
        limiter: limiter::TargetLimiter::new(config.max_in_flight_per_target),
        breakers: breaker::Breakers::new(config.circuit_failures, cool_down),
        recorder,
        retry_ttls: retry_ttls.clone(),
        hold_limit: config.hold_limit(),
    });
    let source = |queue: String, prefetch: u16| bus::consumer::Source {
        amqp_url: config.amqp_url.clone(),
        connection_name: format!("webhook-worker {queue}"),
        queue,
        prefetch,
        drain: config.drain,
    };
    // Every (re)connection declares the whole topology first.
    let declare = {
        let topology = topology.clone();
        let retry_ttls = retry_ttls.clone();
        move |channel: lapin::Channel| {
            let topology = topology.clone();
            let retry_ttls = retry_ttls.clone();
            async move {
                topology
                    .declare_webhooks(&channel, &retry_ttls, cool_down)
                    .await
            }
        }
    };
    tracing::info!(
        prefix = %config.amqp_prefix,
        retry_schedule_ms = ?retry_ttls.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        circuit_cool_down_ms = cool_down.as_millis() as u64,
        hold_limit_ms = config.hold_limit().as_millis() as u64,
        "webhook worker starting"
    );

    let events = {
        let worker = worker.clone();
        bus::consumer::consume(
            source(topology.webhook_events_queue(), config.event_prefetch),
            declare.clone(),
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.fan_out(d).await }
            },
        )
    };
    let deliveries = {
        let worker = worker.clone();
        bus::consumer::consume(
            source(topology.deliver_queue(), config.prefetch),
            declare.clone(),
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.deliver(d, worker::Lane::First).await }
            },
        )
    };
    let retries = {
        let worker = worker.clone();
        bus::consumer::consume(
            source(topology.retried_queue(), config.retry_prefetch),
            declare,
            shutdown.clone(),
            move |d| {
                let worker = worker.clone();
                async move { worker.deliver(d, worker::Lane::Retry).await }
            },
        )
    };
    let local_fan_out = || {
        Arc::new(worker::LocalFanOut::new(
            worker.clone(),
            config.event_prefetch,
            shutdown.clone(),
        ))
    };
    let handoff = config
        .local_handoff
        .as_ref()
        .filter(|_| config.in_process_events);
    if let Some(handoff) = handoff {
        handoff.register(local_fan_out());
    }
    let remote = match &config.conversations_grpc_addr {
        Some(addr) if config.in_process_events && handoff.is_none() => Some(
            intake::Intake::new(addr)?.run(local_fan_out, config.event_prefetch, shutdown.clone()),
        ),
        _ => None,
    };
    let intake = async move {
        if let Some(intake) = remote {
            intake.await;
        }
    };
    let requested = retries::run(worker.clone(), client, config.retry_poll, shutdown.clone());
    let changes = {
        let worker = worker.clone();
        let shutdown = shutdown.clone();
        async move { worker.directory.watch(shutdown).await }
    };
    let depths = depth::report(
        config.amqp_url.clone(),
        topology.all_queues(&retry_ttls, cool_down),
        shutdown.clone(),
    );
    tokio::join!(events, deliveries, retries, requested, depths, changes, intake);
    if let Some(handoff) = handoff {
        handoff.unregister();
    }

    // Every step is done: let the delivery log flush, then close the publisher.
    drop(worker);
    let finished = tokio::time::timeout(Duration::from_secs(5), tasks.finish(Ok(()))).await;
    if finished.is_err() {
        tracing::warn!("delivery log flush timed out");
    }
    publisher.close().await;
    tracing::info!("webhook worker stopped");
    finished.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cool_down_is_capped_by_the_schedule_and_the_hold_limit_covers_it() {
        let config = Config::default();
        // 5, 10, 20, 40, 80 s: the default 10 s cool-down stands.
        assert_eq!(config.effective_cool_down(), Duration::from_secs(10));
        assert_eq!(config.hold_limit(), Duration::from_secs(155 + 10));
        // 0.3 to 4.8 s (the fault suite's): a 10 s cool-down is cut to 4.8 s.
        let fast = Config {
            retry_base: Duration::from_millis(300),
            ..Config::default()
        };
        assert_eq!(fast.effective_cool_down(), Duration::from_millis(4_800));
        assert_eq!(fast.hold_limit(), Duration::from_millis(9_300 + 4_800));
        // No retries: nothing to cap by.
        let none = Config {
            max_retries: 0,
            ..Config::default()
        };
        assert_eq!(none.effective_cool_down(), Duration::from_secs(10));
        assert_eq!(none.hold_limit(), Duration::from_secs(10));
        let zero = Config {
            circuit_cool_down: Duration::ZERO,
            ..Config::default()
        };
        assert!(zero.validate().is_err());
    }
}
