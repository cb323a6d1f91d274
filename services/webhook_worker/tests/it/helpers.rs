//! Test plumbing: the webhooks service on port 0, workers under a private AMQP prefix, an
//! event publisher and an HTTP sink that records what it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use bus::lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use bus::lapin::types::FieldTable;
use bus::lapin::BasicProperties;
use proto::v1 as pb;
use proto::v1::webhooks_client::WebhooksClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wire::event::Event;

pub(crate) fn amqp_url() -> String {
    std::env::var("SMOOCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub(crate) fn database_url() -> String {
    std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned())
}

/// One test's world: a webhooks service, a prefix, an app, a sink.
pub(crate) struct World {
    pub(crate) app_id: String,
    pub(crate) webhooks: WebhooksClient<Channel>,
    pub(crate) topology: bus::Topology,
    pub(crate) publisher: bus::Publisher,
    pub(crate) sink: Sink,
    pub(crate) config: webhook_worker::Config,
    shutdown: CancellationToken,
}

impl World {
    /// A world whose workers retry after `retry_base`, doubling.
    pub(crate) async fn new(retry_base: Duration) -> World {
        db::ensure_database(&database_url()).await.unwrap();
        webhooks::migrate(&database_url()).await.unwrap();
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhooks_addr = listener.local_addr().unwrap().to_string();
        let config = webhooks::Config {
            database_url: database_url(),
            max_connections: 4,
            allow_private_targets: true,
        };
        tokio::spawn(webhooks::run(config, listener, shutdown.clone()));
        let webhooks = WebhooksClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{webhooks_addr}"))
                .unwrap()
                .connect_lazy(),
        );
        let topology = bus::Topology::new(format!("test-{}", domain::id::new_secret(6)));
        let publisher = bus::Publisher::new(amqp_url(), "worker-test", topology.clone());
        let config = webhook_worker::Config {
            amqp_url: amqp_url(),
            amqp_prefix: topology.prefix().to_owned(),
            webhooks_grpc_addr: webhooks_addr.clone(),
            timeout: Duration::from_secs(2),
            retry_base,
            allow_private_targets: true,
            drain: Duration::from_secs(2),
            retry_poll: Duration::from_millis(100),
            // These tests count every attempt at a failing target: no circuit opens here
            // (the e2e suite tests the circuit breakers).
            circuit_failures: 1_000,
            ..webhook_worker::Config::default()
        };
        World {
            app_id: domain::id::new_id(),
            webhooks,
            topology,
            publisher,
            sink: Sink::start(shutdown.clone()).await,
            config,
            shutdown,
        }
    }

    /// Starts a worker with this world's config; stop it with its token.
    pub(crate) fn start_worker(&self) -> Worker {
        self.start_worker_with(self.config.clone())
    }

    pub(crate) fn start_worker_with(&self, config: webhook_worker::Config) -> Worker {
        let token = self.shutdown.child_token();
        let task = tokio::spawn(webhook_worker::run(config, token.clone()));
        Worker { token, task }
    }

    /// Creates a webhook of this world's app for the sink's `path`.
    pub(crate) async fn webhook(&self, path: &str, events: &[&str]) -> pb::Webhook {
        self.webhooks
            .clone()
            .create_webhook(pb::CreateWebhookRequest {
                app_id: self.app_id.clone(),
                target: self.sink.url(path),
                events: events.iter().map(|e| (*e).to_owned()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Publishes a message event by `role`, as the outbox relay does; returns it.
    pub(crate) async fn publish_message(&self, role: &str, text: &str) -> Event {
        let event = message_event(&self.app_id, role, text);
        let body = serde_json::to_vec(&event).unwrap();
        self.publisher
            .publish(bus::Outgoing {
                exchange: &self.topology.events_exchange(),
                routing_key: &event.trigger,
                payload: &body,
                properties: BasicProperties::default().with_message_id(event.id.as_str().into()),
                mandatory: true,
            })
            .await
            .unwrap();
        event
    }

    /// The webhook's deliveries from the delivery log.
    pub(crate) async fn deliveries(&self, webhook_id: &str) -> Vec<pb::Delivery> {
        self.webhooks
            .clone()
            .list_deliveries(pb::ListDeliveriesRequest {
                app_id: self.app_id.clone(),
                webhook_id: webhook_id.to_owned(),
                limit: 100,
                cursor: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries
    }

    /// Waits until the delivery log shows `delivery_id` as `status` with `attempts`.
    pub(crate) async fn wait_for_log(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        status: &str,
        attempts: usize,
    ) -> pb::Delivery {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .deliveries(webhook_id)
                .await
                .into_iter()
                .find(|d| d.id == delivery_id);
            match found {
                Some(d) if d.status == status && d.attempts.len() == attempts => return d,
                other if Instant::now() > deadline => {
                    panic!("delivery log never showed {status} x{attempts}: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Messages waiting in `queue`.
    pub(crate) async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = bus::connect(&amqp_url(), "worker-test-inspect")
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "bye".into()).await;
        q.message_count()
    }

    /// Stops everything and deletes this test's queues and exchange.
    pub(crate) async fn cleanup(self) {
        self.shutdown.cancel();
        self.publisher.close().await;
        let conn = bus::connect(&amqp_url(), "worker-test-cleanup")
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let queues = self.topology.all_queues(
            &self.config.retry_schedule(),
            self.config.effective_cool_down(),
        );
        for q in queues {
            let _ = channel
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = channel
            .exchange_delete(
                self.topology.events_exchange().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// A running worker.
pub(crate) struct Worker {
    pub(crate) token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    /// Cancels the worker and waits for it to stop.
    pub(crate) async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("worker stops in time")
            .unwrap()
            .unwrap();
    }
}

/// A message event as the conversations service writes it (built from JSON, so fields
/// the schema grows later take their defaults).
pub(crate) fn message_event(app_id: &str, role: &str, text: &str) -> Event {
    let app_user_id = domain::id::new_id();
    serde_json::from_value(serde_json::json!({
        "version": wire::event::EVENT_VERSION,
        "id": domain::id::new_id(),
        "appId": app_id,
        "trigger": wire::event::message_trigger(role),
        "createdAtMs": domain::time::now_ms(),
        "appUser": {
            "_id": app_user_id,
            "userId": "steveb@channel5.com",
            "givenName": "Steve",
            "signedUpAt": "2015-10-06T20:53:01.588Z",
            "properties": {},
            "conversationStarted": true
        },
        "messages": [{
            "_id": domain::id::new_id(),
            "authorId": app_user_id,
            "role": role,
            "name": "Steve",
            "text": text,
            "actions": [],
            "received": 1_444_348_338.704
        }]
    }))
    .unwrap()
}

/// A request the sink received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
    /// Whether the sink answered 200 (else 500).
    pub(crate) ok: bool,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the sink answers on one path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Behaviour {
    /// Answer 500 to this many requests first.
    pub(crate) fail_first: u32,
    /// Answer 500 always.
    pub(crate) always_fail: bool,
    /// Wait this long before answering.
    pub(crate) delay: Duration,
}

#[derive(Debug, Default)]
struct SinkState {
    received: HashMap<String, Vec<Received>>,
    behaviour: HashMap<String, Behaviour>,
}

/// A local HTTP target recording every request by path.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<SinkState>>,
    notify: Arc<Notify>,
}

impl Sink {
    async fn start(shutdown: CancellationToken) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            notify: Arc::default(),
        };
        let app = axum::Router::new().fallback(hit).with_state(sink.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
        });
        sink
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn behave(&self, path: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .behaviour
            .insert(path.to_owned(), behaviour);
    }

    pub(crate) fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `path` received at least `n` requests (or `within` passed).
    pub(crate) async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            let got = self.received(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received(path);
            }
        }
    }
}

async fn hit(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_owned();
    let (behaviour, ok) = {
        let mut state = sink.state.lock().unwrap();
        let behaviour = state.behaviour.get(&path).copied().unwrap_or_default();
        let list = state.received.entry(path).or_default();
        let n = list.len() as u32 + 1;
        let ok = !behaviour.always_fail && n > behaviour.fail_first;
        list.push(Received {
            headers,
            body,
            at: Instant::now(),
            ok,
        });
        (behaviour, ok)
    };
    sink.notify.notify_waiters();
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
