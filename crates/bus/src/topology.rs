//! Names and declarations of every exchange and queue the suite uses, in one place.
//!
//! ```text
//! {p}.events (topic) ──each webhook trigger──► {p}.webhooks.events
//!                                                            │ webhook-worker fan-out
//!                                                            ▼
//!                                                   {p}.webhooks.deliver ──► first attempts
//!                                                                                  │ failed
//!   {p}.webhooks.backoff-{n}-{ttl}ms  ◄─────────────────────────────────────────────┤
//!               │ dead-letter on TTL expiry                                        │ failed
//!               └──────────────────────────────► {p}.webhooks.retried ──► retries ┘
//!   {p}.webhooks.defer-{ttl}ms, {p}.webhooks.retried.defer-{ttl}ms (a busy target's jobs
//!   wait here, no attempt counted, and go back to the queue they came from)
//!   {p}.webhooks.parked-{ttl}ms (jobs of a target whose circuit is open wait here for its
//!   probe, no attempt counted, then go to {p}.webhooks.retried)
//!   {p}.webhooks.dead (jobs that failed every attempt; poison events)
//!
//! {p}.realtime (topic) ──*.{appId}──► the real-time queue of each gateway that has
//!   subscribers of that app (routing key `{trigger}.{appId}`: message and merge events the
//!   relay copies there, typing and profile activity the gateways publish; transient and
//!   unconfirmed, so an event of an app nobody watches is dropped by the exchange)
//!
//! {p}.events ──message:appMaker──► {p}.push.events ──push worker──► APNs / FCM
//!   {p}.push.retry-{n}-{ttl}ms ──TTL──► {p}.push.deliver ──push worker──► (again)
//!   {p}.push.dead (notifications that failed every attempt; poison events)
//! ```
//!
//! Retry queues carry their TTL in their name: a queue's arguments cannot change once
//! declared, so a new retry base makes new queues (the old ones drain into the same
//! queue) instead of failing the declaration. Webhook retries come back on a queue of their
//! own (`retried`), consumed apart from first attempts so a backlog of retries cannot take
//! the slots first attempts need; the webhook retry queues are named `backoff-…` because
//! the `retry-…` queues of earlier versions dead-letter to the delivery queue (they still
//! drain there after an upgrade, and can be deleted once empty).

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::Result;

/// The routing keys (triggers) the webhook worker consumes: every event a webhook can
/// subscribe to.
pub const WEBHOOK_TRIGGERS: [&str; 6] = [
    "message:appUser",
    "message:appMaker",
    "postback",
    "conversation:start",
    "conversation:read",
    "merge:appUser",
];

/// The routing keys the push worker consumes: app-maker messages (whispers included).
pub const PUSH_TRIGGERS: [&str; 1] = ["message:appMaker"];

/// The triggers the relay also copies to the real-time exchange ([`Topology::realtime_key`]):
/// the events the gateways' real-time fan-out shows to subscribers.
pub const REALTIME_TRIGGERS: [&str; 3] = ["message:appUser", "message:appMaker", "merge:appUser"];

/// How long a job for a saturated target waits in the defer queue before trying again.
pub const DEFER_TTL: Duration = Duration::from_secs(1);

/// The names of one deployment's exchanges and queues, all under one prefix
/// (`SMOOCH_AMQP_PREFIX`), so deployments and tests can share a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// The topology under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
        }
    }

    /// The prefix of every name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the webhook worker may take events with `trigger` in process, from the
    /// relay of its own process ([`crate::LocalConsumer`]): webhook triggers that no other
    /// durable queue binds. Those are not published to the events exchange at all; the push
    /// worker's queue binds its triggers there, and may be declared after the relay's first
    /// publish.
    pub fn may_take_locally(trigger: &str) -> bool {
        WEBHOOK_TRIGGERS.contains(&trigger) && !PUSH_TRIGGERS.contains(&trigger)
    }

    /// The topic exchange of real-time events, routed by app: the gateways bind their
    /// real-time queue to it once per app their clients watch ([`Topology::realtime_binding`]).
    pub fn realtime_exchange(&self) -> String {
        format!("{}.realtime", self.prefix)
    }

    /// The routing key of a real-time event of `app_id` with `trigger`: `{trigger}.{appId}`
    /// (triggers hold no dot, so the first word is always the trigger).
    pub fn realtime_key(trigger: &str, app_id: &str) -> String {
        format!("{trigger}.{app_id}")
    }

    /// The binding that routes every real-time event of `app_id` to a queue: `*.{appId}`.
    pub fn realtime_binding(app_id: &str) -> String {
        format!("*.{app_id}")
    }

    /// The trigger of a real-time event published under `key` ([`Topology::realtime_key`]).
    pub fn realtime_trigger_of(key: &str) -> &str {
        key.split_once('.').map_or(key, |(trigger, _)| trigger)
    }

    /// Declares the real-time exchange (durable, so that the gateways' bindings to it can be
    /// made before any publisher connected).
    pub async fn declare_realtime(&self, channel: &Channel) -> Result<()> {
        declare_topic_exchange(channel, &self.realtime_exchange()).await
    }

    /// The durable topic exchange events are published to, with routing key = trigger.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The queue the webhook worker takes events from.
    pub fn webhook_events_queue(&self) -> String {
        format!("{}.webhooks.events", self.prefix)
    }

    /// The queue of delivery jobs (one per event and webhook).
    pub fn deliver_queue(&self) -> String {
        format!("{}.webhooks.deliver", self.prefix)
    }

    /// The retry queue of `level` (1-based) whose messages wait `ttl`, then go to the
    /// [`retried_queue`](Self::retried_queue).
    pub fn retry_queue(&self, level: u32, ttl: Duration) -> String {
        format!(
            "{}.webhooks.backoff-{level}-{}ms",
            self.prefix,
            ttl.as_millis()
        )
    }

    /// The queue of delivery jobs coming back from a retry queue, consumed apart from the
    /// delivery queue.
    pub fn retried_queue(&self) -> String {
        format!("{}.webhooks.retried", self.prefix)
    }

    /// The queue where first attempts for a target at its concurrency limit wait
    /// [`DEFER_TTL`] before going back to the delivery queue.
    pub fn defer_queue(&self) -> String {
        format!("{}.webhooks.defer-{}ms", self.prefix, DEFER_TTL.as_millis())
    }

    /// The queue where retries for a target at its concurrency limit wait [`DEFER_TTL`]
    /// before going back to the [`retried_queue`](Self::retried_queue).
    pub fn retried_defer_queue(&self) -> String {
        format!(
            "{}.webhooks.retried.defer-{}ms",
            self.prefix,
            DEFER_TTL.as_millis()
        )
    }

    /// The queue where jobs of a target whose circuit is open wait (up to `ttl`, the
    /// circuit's cool-down; less when their own expiration says so) before going to the
    /// [`retried_queue`](Self::retried_queue).
    pub fn parked_queue(&self, ttl: Duration) -> String {
        format!("{}.webhooks.parked-{}ms", self.prefix, ttl.as_millis())
    }

    /// The dead-letter queue: jobs that failed every attempt, and unreadable events.
    pub fn dead_queue(&self) -> String {
        format!("{}.webhooks.dead", self.prefix)
    }

    /// The queue the push worker takes events from.
    pub fn push_events_queue(&self) -> String {
        format!("{}.push.events", self.prefix)
    }

    /// The queue of push jobs coming back from a retry queue.
    pub fn push_deliver_queue(&self) -> String {
        format!("{}.push.deliver", self.prefix)
    }

    /// The push retry queue of `level` (1-based) whose messages wait `ttl`.
    pub fn push_retry_queue(&self, level: u32, ttl: Duration) -> String {
        format!("{}.push.retry-{level}-{}ms", self.prefix, ttl.as_millis())
    }

    /// The push dead-letter queue: notifications that failed every attempt, unreadable
    /// events and jobs.
    pub fn push_dead_queue(&self) -> String {
        format!("{}.push.dead", self.prefix)
    }

    /// Declares everything the push worker uses: its event queue bound to app-maker
    /// messages, its delivery queue, one retry queue per entry of `retry_ttls` (each
    /// dead-lettering back to the delivery queue) and its dead-letter queue.
    pub async fn declare_push(&self, channel: &Channel, retry_ttls: &[Duration]) -> Result<()> {
        self.declare_events(channel).await?;
        let mut args = FieldTable::default();
        dead_letter_to(&mut args, &self.push_dead_queue());
        declare_queue(channel, &self.push_dead_queue(), FieldTable::default()).await?;
        declare_queue(channel, &self.push_events_queue(), args.clone()).await?;
        declare_queue(channel, &self.push_deliver_queue(), args).await?;
        for trigger in PUSH_TRIGGERS {
            channel
                .queue_bind(
                    self.push_events_queue().into(),
                    self.events_exchange().into(),
                    trigger.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        for (i, ttl) in retry_ttls.iter().enumerate() {
            let name = self.push_retry_queue(level_of(i), *ttl);
            let mut args = FieldTable::default();
            let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ms));
            dead_letter_to(&mut args, &self.push_deliver_queue());
            declare_queue(channel, &name, args).await?;
        }
        Ok(())
    }

    /// Every push queue name for a given retry schedule (for cleanup and depth metrics).
    pub fn all_push_queues(&self, retry_ttls: &[Duration]) -> Vec<String> {
        let mut names = vec![
            self.push_events_queue(),
            self.push_deliver_queue(),
            self.push_dead_queue(),
        ];
        names.extend(
            retry_ttls
                .iter()
                .enumerate()
                .map(|(i, ttl)| self.push_retry_queue(level_of(i), *ttl)),
        );
        names
    }

    /// Every webhook queue name for a given retry schedule and parking time (for cleanup
    /// and depth metrics).
    pub fn all_queues(&self, retry_ttls: &[Duration], parked_ttl: Duration) -> Vec<String> {
        let mut names = vec![
            self.webhook_events_queue(),
            self.deliver_queue(),
            self.defer_queue(),
            self.retried_queue(),
            self.retried_defer_queue(),
            self.parked_queue(parked_ttl),
            self.dead_queue(),
        ];
        names.extend(
            retry_ttls
                .iter()
                .enumerate()
                .map(|(i, ttl)| self.retry_queue(level_of(i), *ttl)),
        );
        names
    }

    /// Declares the events exchange and the webhook worker's event queue with its bindings:
    /// what publishers need so that no event is published to nowhere.
    pub async fn declare_events(&self, channel: &Channel) -> Result<()> {
        declare_topic_exchange(channel, &self.events_exchange()).await?;
        // An event no consumer can read goes to the dead-letter queue, not away.
        let mut args = FieldTable::default();
        dead_letter_to(&mut args, &self.dead_queue());
        declare_queue(channel, &self.dead_queue(), FieldTable::default()).await?;
        declare_queue(channel, &self.webhook_events_queue(), args).await?;
        for trigger in WEBHOOK_TRIGGERS {
            channel
                .queue_bind(
                    self.webhook_events_queue().into(),
                    self.events_exchange().into(),
                    trigger.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Declares everything the webhook worker uses: the event side, the delivery and
    /// retried queues, one retry queue per entry of `retry_ttls`, the parked queue whose
    /// messages wait at most `parked_ttl`, and the defer and dead-letter queues.
    pub async fn declare_webhooks(
        &self,
        channel: &Channel,
        retry_ttls: &[Duration],
        parked_ttl: Duration,
    ) -> Result<()> {
        self.declare_events(channel).await?;
        // A job no worker can read goes to the dead-letter queue.
        let mut args = FieldTable::default();
        dead_letter_to(&mut args, &self.dead_queue());
        declare_queue(channel, &self.deliver_queue(), args.clone()).await?;
        declare_queue(channel, &self.retried_queue(), args).await?;
        for (i, ttl) in retry_ttls.iter().enumerate() {
            let name = self.retry_queue(level_of(i), *ttl);
            declare_queue(channel, &name, delay_args(*ttl, &self.retried_queue())).await?;
        }
        declare_queue(
            channel,
            &self.defer_queue(),
            delay_args(DEFER_TTL, &self.deliver_queue()),
        )
        .await?;
        declare_queue(
            channel,
            &self.retried_defer_queue(),
            delay_args(DEFER_TTL, &self.retried_queue()),
        )
        .await?;
        declare_queue(
            channel,
            &self.parked_queue(parked_ttl),
            delay_args(parked_ttl, &self.retried_queue()),
        )
        .await?;
        Ok(())
    }
}

/// Arguments of a delay queue: messages expire after `ttl` (or their own shorter
/// `expiration`) and are dead-lettered to `then`.
fn delay_args(ttl: Duration, then: &str) -> FieldTable {
    let mut args = FieldTable::default();
    let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ms));
    dead_letter_to(&mut args, then);
    args
}

/// The 1-based retry level of the `i`th retry queue.
fn level_of(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// Routes dead letters through the default exchange straight to `queue`.
fn dead_letter_to(args: &mut FieldTable, queue: &str) {
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
}

/// Declares the durable topic exchange `name`.
async fn declare_topic_exchange(channel: &Channel, name: &str) -> Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<()> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realtime_key_names_its_trigger_first_and_its_app_binding_matches_it_alone() {
        let key = Topology::realtime_key("message:appUser", "5f0c1d2e3a4b");
        assert_eq!(key, "message:appUser.5f0c1d2e3a4b");
        assert_eq!(Topology::realtime_trigger_of(&key), "message:appUser");
        assert_eq!(Topology::realtime_binding("5f0c1d2e3a4b"), "*.5f0c1d2e3a4b");
        // A dotted id still reads back its trigger: the trigger is the first word.
        assert_eq!(
            Topology::realtime_trigger_of(&Topology::realtime_key("activity:typing", "a.b")),
            "activity:typing"
        );
        for trigger in REALTIME_TRIGGERS {
            assert!(!trigger.contains('.'), "{trigger} would split its key");
        }
    }
}
