//! Events to this replica's Bayeux clients: an exclusive, auto-deleted queue of this
//! replica bound to the real-time exchange once per app its clients watch ([`Bindings`]),
//! consumed into the [`Hub`]. The outbox relay copies message and merge events there, and
//! typing and profile activity is published there too, so each event reaches the replicas
//! whose clients watch its app, once, and no other.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Kind, Target};

/// Routing key of typing activity (never stored, never sent to webhooks).
pub(crate) const TYPING: &str = "activity:typing";

/// Routing key of a user's profile changes for the user channel (never sent to webhooks).
pub(crate) const USER_CHANGED: &str = "activity:user";

/// How often bindings of apps nobody here watches any more are removed. Until then their
/// events still come, and are skipped unparsed.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// How long this replica's record of a watched app lasts in the relays' audience without
/// a refresh (one every [`PRUNE_EVERY`]): many refreshes, so a short Redis outage does not
/// make the relays skip an app clients here still watch.
pub(crate) const AUDIENCE_TTL: Duration = Duration::from_secs(300);

/// Where the real-time fan-out connects.
#[derive(Debug, Clone)]
pub struct RealtimeBus {
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Prefix of the exchange names (`SMOOCH_AMQP_PREFIX`).
    pub amqp_prefix: String,
}

impl RealtimeBus {
    fn topology(&self) -> bus::Topology {
        bus::Topology::new(self.amqp_prefix.as_str())
    }
}

/// Publishes typing activity onto the real-time exchange, with the broadcast of the bus's
/// publisher (or, without a broker, straight to this replica's hub).
pub(crate) struct Activity {
    publisher: Option<bus::Publisher>,
    hub: Hub,
}

impl Activity {
    pub(crate) fn new(bus: Option<RealtimeBus>, hub: Hub) -> Self {
        Activity {
            publisher: bus.map(|bus| {
                bus::Publisher::new(bus.amqp_url.as_str(), "gateway-activity", bus.topology())
            }),
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
        let Some(publisher) = &self.publisher else {
            route(&self.hub, key, &event);
            return Ok(());
        };
        let mut headers = FieldTable::default();
        bus::insert_app_id(&mut headers, app_id);
        let exchange = publisher.topology().realtime_exchange();
        let routing_key = bus::Topology::realtime_key(key, app_id);
        let payload = event.to_string();
        publisher
            .broadcast(&[bus::Outgoing {
                exchange: &exchange,
                routing_key: &routing_key,
                payload: payload.as_bytes(),
                properties: BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_headers(headers),
                mandatory: false,
            }])
            .await
    }
}

/// The apps this replica's real-time queue is bound for. An app is bound when a client
/// here first subscribes to one of its channels, before the subscription is answered, so
/// the client gets every event published after its subscribe succeeded; it is unbound
/// within [`PRUNE_EVERY`] of its last subscriber leaving. Before it is bound, the app is
/// recorded in the relays' audience (Redis), so relays copy its events to the real-time
/// exchange; the record is refreshed with every prune while clients here watch it.
pub(crate) struct Bindings {
    topology: Option<bus::Topology>,
    hub: Hub,
    audience: Option<auth::Audience>,
    bound: Mutex<Bound>,
    /// Events that came for apps nobody here watched any more (bindings not yet pruned).
    unwatched: std::sync::atomic::AtomicU64,
}

/// The consumer's queue while it is connected, and the apps bound to it.
#[derive(Default)]
struct Bound {
    queue: Option<(lapin::Channel, String)>,
    apps: HashSet<String>,
}

impl Bindings {
    /// The bindings of this replica's queue; without a broker (`bus` `None`) events go
    /// straight to the hub and there is nothing to bind. Watched apps are recorded in
    /// `audience` when given.
    pub(crate) fn new(
        bus: Option<&RealtimeBus>,
        hub: Hub,
        audience: Option<auth::Audience>,
    ) -> Self {
        Bindings {
            topology: bus.map(RealtimeBus::topology),
            hub,
            audience,
            bound: Mutex::new(Bound::default()),
            unwatched: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Makes sure this replica's queue gets the events of `app_id`. While the consumer is
    /// not connected this returns at once: it binds every watched app when it connects.
    pub(crate) async fn watch(&self, app_id: &str) {
        let Some(topology) = &self.topology else {
            return;
        };
        if self.bound.lock().await.apps.contains(app_id) {
            return;
        }
        // Outside the lock: the subscribes of other apps need not queue behind this record.
        self.record(&[app_id.to_owned()]).await;
        let mut bound = self.bound.lock().await;
        if bound.apps.contains(app_id) {
            return;
        }
        let Some((channel, queue)) = bound.queue.clone() else {
            return;
        };
        match bind(topology, &channel, &queue, app_id).await {
            Ok(()) => {
                bound.apps.insert(app_id.to_owned());
                metrics::gauge!("faye_bound_apps").set(bound.apps.len() as f64);
            }
            Err(e) => {
                tracing::warn!(error = %e, app_id, "binding the real-time queue to an app failed; its events miss this replica until the consumer reconnects")
            }
        }
    }

    /// Binds `queue` (just declared on `channel`) to every app the hub watches, and keeps
    /// it for later [`Bindings::watch`]es.
    async fn attach(
        &self,
        topology: &bus::Topology,
        channel: &lapin::Channel,
        queue: &str,
    ) -> Result<(), bus::Error> {
        let mut bound = self.bound.lock().await;
        bound.queue = None;
        bound.apps.clear();
        let watched = self.hub.watched_apps();
        self.record(&watched).await;
        for app_id in watched {
            bind(topology, channel, queue, &app_id).await?;
            bound.apps.insert(app_id);
        }
        bound.queue = Some((channel.clone(), queue.to_owned()));
        metrics::gauge!("faye_bound_apps").set(bound.apps.len() as f64);
        Ok(())
    }

    /// Forgets the queue, which went with its connection.
    async fn detach(&self) {
        let mut bound = self.bound.lock().await;
        bound.queue = None;
        bound.apps.clear();
        metrics::gauge!("faye_bound_apps").set(0.0);
    }

    /// Records `apps` in the relays' audience; a failure is logged and counted, and the
    /// next refresh records them again.
    async fn record(&self, apps: &[String]) {
        let Some(audience) = &self.audience else {
            return;
        };
        if let Err(e) = audience.watch(apps).await {
            metrics::counter!("faye_audience_failures_total").increment(1);
            tracing::warn!(error = %e, apps = apps.len(), "recording watched apps in Redis failed; relays may skip their events until the next refresh");
        }
    }

    /// Unbinds the apps nobody here watches any more, and refreshes the record of those
    /// still watched.
    async fn prune(&self, topology: &bus::Topology) -> Result<(), bus::Error> {
        let mut bound = self.bound.lock().await;
        let Some((channel, queue)) = bound.queue.clone() else {
            return Ok(());
        };
        let stale: Vec<String> = bound
            .apps
            .iter()
            .filter(|app_id| !self.hub.watches_app(app_id))
            .cloned()
            .collect();
        for app_id in stale {
            channel
                .queue_unbind(
                    queue.as_str().into(),
                    topology.realtime_exchange().as_str().into(),
                    bus::Topology::realtime_binding(&app_id).as_str().into(),
                    FieldTable::default(),
                )
                .await?;
            bound.apps.remove(&app_id);
        }
        metrics::gauge!("faye_bound_apps").set(bound.apps.len() as f64);
        let watched: Vec<String> = bound.apps.iter().cloned().collect();
        self.record(&watched).await;
        Ok(())
    }
}

async fn bind(
    topology: &bus::Topology,
    channel: &lapin::Channel,
    queue: &str,
    app_id: &str,
) -> Result<(), bus::Error> {
    channel
        .queue_bind(
            queue.into(),
            topology.realtime_exchange().as_str().into(),
            bus::Topology::realtime_binding(app_id).as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Consumes this replica's queue into `hub` until `shutdown`, reconnecting after failures.
pub(crate) async fn run(
    bus: RealtimeBus,
    hub: Hub,
    bindings: std::sync::Arc<Bindings>,
    shutdown: CancellationToken,
) {
    let mut backoff = bus::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let run = consume(&bus, &hub, &bindings, &mut backoff);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run => r,
        };
        bindings.detach().await;
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
    bindings: &Bindings,
    backoff: &mut bus::Backoff,
) -> Result<(), bus::Error> {
    let conn = bus::connect(&bus.amqp_url, "gateway-realtime").await?;
    let channel = conn.create_channel().await?;
    let topology = bus.topology();
    topology.declare_realtime(&channel).await?;
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
    bindings.attach(&topology, &channel, &name).await?;
    backoff.reset();
    tracing::info!(queue = %name, "real-time fan-out consuming");
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.tick().await;
    loop {
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            _ = prune.tick() => {
                bindings.prune(&topology).await?;
                continue;
            }
        };
        let Some(delivery) = delivery else {
            return Ok(());
        };
        let delivery = delivery?;
        // Events of apps nobody here watches any more (until their binding is pruned):
        // skipped without parsing.
        if bus::app_id_of(&delivery.properties).is_some_and(|app| !hub.watches_app(app)) {
            bindings
                .unwatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("faye_unwatched_events_total").increment(1);
            continue;
        }
        let key = bus::Topology::realtime_trigger_of(delivery.routing_key.as_str());
        match serde_json::from_slice::<Value>(&delivery.data) {
            Ok(event) => route(hub, key, &event),
            Err(e) => tracing::warn!(error = %e, key, "unreadable event skipped by the fan-out"),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use lapin::options::BasicPublishOptions;

    use super::*;
    use crate::faye::Limits;

    fn target(app_id: &str) -> Target {
        Target {
            app_id: app_id.to_owned(),
            app_user_id: "u1".to_owned(),
            kind: Kind::Conversation,
        }
    }

    /// Publishes an app user's message of `app_id` to the real-time exchange, as the relay
    /// copies it.
    async fn publish(channel: &lapin::Channel, topology: &bus::Topology, app_id: &str, text: &str) {
        let event =
            json!({"appId": app_id, "appUser": {"_id": "u1"}, "messages": [{"text": text}]});
        let mut headers = FieldTable::default();
        bus::insert_app_id(&mut headers, app_id);
        channel
            .basic_publish(
                topology.realtime_exchange().as_str().into(),
                bus::Topology::realtime_key("message:appUser", app_id)
                    .as_str()
                    .into(),
                BasicPublishOptions::default(),
                event.to_string().as_bytes(),
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap();
    }

    /// The texts of the next messages `client` gets (within 5 s).
    async fn texts(hub: &Hub, client: &str) -> Vec<String> {
        let got = hub.poll(client, Duration::from_secs(5)).await.unwrap();
        got.iter()
            .map(|m| m["data"]["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn the_queue_gets_the_events_of_watched_apps_only_until_pruned() {
        let bus = RealtimeBus {
            amqp_url: std::env::var("SMOOCH_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            amqp_prefix: format!("fanout-test-{}", domain::id::new_id()),
        };
        let topology = bus.topology();
        let hub = Hub::new(Limits::default());
        let redis = auth::RedisClient::new(auth::RedisConfig::new(
            std::env::var("SMOOCH_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            bus.amqp_prefix.clone(),
        ))
        .unwrap();
        let audience = auth::Audience::new(redis.clone(), AUDIENCE_TTL);
        let bindings = Arc::new(Bindings::new(Some(&bus), hub.clone(), Some(audience)));
        // Watched before the consumer connects: bound as it connects.
        let early = hub.handshake();
        hub.subscribe(&early, "/v1/conversations/c1", target("app-a"))
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            bus.clone(),
            hub.clone(),
            bindings.clone(),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while bindings.bound.lock().await.queue.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Watched once connected: bound before `watch` returns.
        let late = hub.handshake();
        hub.subscribe(&late, "/v1/conversations/c2", target("app-b"))
            .unwrap();
        bindings.watch("app-b").await;
        // Both recorded for the relays before they were bound; app-c nobody watches.
        let relay = auth::Audience::reader(redis);
        let asked: std::collections::HashSet<&str> = ["app-a", "app-b", "app-c"].into();
        let mut recorded: Vec<String> = relay.watched(&asked).await.unwrap().into_iter().collect();
        recorded.sort();
        assert_eq!(recorded, ["app-a", "app-b"]);

        let connection = bus::connect(&bus.amqp_url, "fanout-test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        publish(&channel, &topology, "app-c", "nobody watches").await;
        publish(&channel, &topology, "app-a", "to a").await;
        publish(&channel, &topology, "app-b", "to b").await;
        assert_eq!(texts(&hub, &early).await, ["to a"]);
        assert_eq!(texts(&hub, &late).await, ["to b"]);
        assert_eq!(
            bindings.unwatched.load(Ordering::Relaxed),
            0,
            "an app nobody here watches sends nothing to this replica"
        );

        // app-b's last subscriber leaves: its events still come, skipped, until the prune.
        assert!(hub.unsubscribe(&late, "/v1/conversations/c2"));
        publish(&channel, &topology, "app-b", "after leaving").await;
        publish(&channel, &topology, "app-a", "first mark").await;
        assert_eq!(texts(&hub, &early).await, ["first mark"]);
        assert_eq!(bindings.unwatched.load(Ordering::Relaxed), 1);
        bindings.prune(&topology).await.unwrap();
        publish(&channel, &topology, "app-b", "after the prune").await;
        publish(&channel, &topology, "app-a", "second mark").await;
        assert_eq!(texts(&hub, &early).await, ["second mark"]);
        assert_eq!(
            bindings.unwatched.load(Ordering::Relaxed),
            1,
            "a pruned app sends nothing to this replica"
        );

        shutdown.cancel();
        task.await.unwrap();
        let _ = channel
            .exchange_delete(
                topology.realtime_exchange().as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = connection.close(200, "bye".into()).await;
    }
}
