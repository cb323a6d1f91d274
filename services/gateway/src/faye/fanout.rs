//! Events to this replica's Bayeux clients: an exclusive, auto-deleted queue of this
//! replica bound to the events exchange (message, merge and typing events), consumed into
//! the [`Hub`]. Typing activity is published to the same exchange, so it reaches every
//! replica's clients once, through their queues.

use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Kind, Target};

/// Routing key of typing activity (never stored, never sent to webhooks).
pub(crate) const TYPING: &str = "activity:typing";

/// Routing key of a user's profile changes for the user channel (never sent to webhooks).
pub(crate) const USER_CHANGED: &str = "activity:user";

/// The triggers this replica's queue is bound to.
const KEYS: [&str; 5] = [
    "message:appUser",
    "message:appMaker",
    "merge:appUser",
    TYPING,
    USER_CHANGED,
];

/// Where the real-time fan-out connects.
#[derive(Debug, Clone)]
pub struct RealtimeBus {
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Prefix of the exchange names (`SMOOCH_AMQP_PREFIX`).
    pub amqp_prefix: String,
}

/// Publishes typing activity onto the events exchange (or, without a broker, straight to
/// this replica's hub).
pub(crate) struct Activity {
    bus: Option<RealtimeBus>,
    channel: Mutex<Option<lapin::Channel>>,
    hub: Hub,
}

impl Activity {
    pub(crate) fn new(bus: Option<RealtimeBus>, hub: Hub) -> Self {
        Activity {
            bus,
            channel: Mutex::new(None),
            hub,
        }
    }

    /// Sends typing activity of `app_user_id` to every replica's subscribers.
    pub(crate) async fn typing(
        &self,
        app_id: &str,
        app_user_id: &str,
        data: Value,
    ) -> Result<(), bus::Error> {
        let event = json!({"appId": app_id, "appUser": {"_id": app_user_id}, "activity": data});
        self.publish(TYPING, app_id, event).await
    }

    /// Tells every replica's subscribers of the user channel that `app_user` (as the REST
    /// API renders it, with `_id`) changed: `{appUser, event: {type: kind}}`.
    pub(crate) async fn user_changed(
        &self,
        app_id: &str,
        app_user: Value,
        kind: &str,
    ) -> Result<(), bus::Error> {
        let event = json!({"appId": app_id, "appUser": app_user, "event": {"type": kind}});
        self.publish(USER_CHANGED, app_id, event).await
    }

    async fn publish(&self, key: &str, app_id: &str, event: Value) -> Result<(), bus::Error> {
        let Some(bus) = &self.bus else {
            route(&self.hub, key, &event);
            return Ok(());
        };
        let mut guard = self.channel.lock().await;
        let channel = match guard.as_ref().filter(|c| c.status().connected()) {
            Some(c) => c.clone(),
            None => {
                let conn = bus::connect(&bus.amqp_url, "gateway-activity").await?;
                let c = conn.create_channel().await?;
                declare_exchange(&c, &bus.amqp_prefix).await?;
                *guard = Some(c.clone());
                c
            }
        };
        drop(guard);
        let mut headers = FieldTable::default();
        bus::insert_app_id(&mut headers, app_id);
        channel
            .basic_publish(
                exchange(&bus.amqp_prefix).as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                event.to_string().as_bytes(),
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_headers(headers),
            )
            .await?;
        Ok(())
    }
}

fn exchange(prefix: &str) -> String {
    bus::Topology::new(prefix).events_exchange()
}

async fn declare_exchange(channel: &lapin::Channel, prefix: &str) -> Result<(), bus::Error> {
    channel
        .exchange_declare(
            exchange(prefix).as_str().into(),
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

/// Consumes this replica's queue into `hub` until `shutdown`, reconnecting after failures.
pub(crate) async fn run(bus: RealtimeBus, hub: Hub, shutdown: CancellationToken) {
    let mut backoff = bus::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let run = consume(&bus, &hub, &mut backoff);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "real-time fan-out consumer failed; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn consume(
    bus: &RealtimeBus,
    hub: &Hub,
    backoff: &mut bus::Backoff,
) -> Result<(), bus::Error> {
    let conn = bus::connect(&bus.amqp_url, "gateway-realtime").await?;
    let channel = conn.create_channel().await?;
    declare_exchange(&channel, &bus.amqp_prefix).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().as_str().to_owned();
    let topology = bus::Topology::new(bus.amqp_prefix.as_str());
    for key in KEYS {
        topology.bind_event(&channel, &name, key).await?;
    }
    // Without acks: the queue is this replica's alone and goes with it, so real-time
    // delivery is best effort whatever the acks say, and an ack per message would cost the
    // broker and this replica a frame each for nothing.
    let mut consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    tracing::info!(queue = %name, "real-time fan-out consuming");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        // Most events belong to apps nobody here watches: skip those without parsing.
        if bus::app_id_of(&delivery.properties).is_some_and(|app| !hub.watches_app(app)) {
            continue;
        }
        let key = bus::Topology::trigger_of(delivery.routing_key.as_str());
        match serde_json::from_slice::<Value>(&delivery.data) {
            Ok(event) => route(hub, key, &event),
            Err(e) => tracing::warn!(error = %e, key, "unreadable event skipped by the fan-out"),
        }
    }
    Ok(())
}

/// Delivers one event to the subscribers of its channels on this replica.
pub(crate) fn route(hub: &Hub, key: &str, event: &Value) {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (Some(app_id), Some(app_user_id)) = (text(&event["appId"]), text(&event["appUser"]["_id"]))
    else {
        return;
    };
    let target = |kind| Target {
        app_id: app_id.clone(),
        app_user_id: app_user_id.clone(),
        kind,
    };
    match key {
        "message:appUser" | "message:appMaker" => {
            for message in event["messages"].as_array().into_iter().flatten() {
                hub.publish(&target(Kind::Conversation), message);
            }
        }
        "merge:appUser" => {
            hub.publish(
                &target(Kind::User),
                &json!({"appUser": event["appUser"], "event": {"type": "merge"}}),
            );
        }
        TYPING => {
            hub.publish(&target(Kind::Activity), &event["activity"]);
        }
        USER_CHANGED => {
            hub.publish(
                &target(Kind::User),
                &json!({"appUser": event["appUser"], "event": event["event"]}),
            );
        }
        _ => {}
    }
}
