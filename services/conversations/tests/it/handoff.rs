//! The hand-off of committed events to webhook workers in other processes: a client of the
//! `EventHandoff` stream, as a worker speaks it, against a replica whose relay publishes to
//! the real RabbitMQ under a prefix of the test's own.

use std::time::{Duration, Instant};

use bus::lapin::options::{BasicGetOptions, QueueDeleteOptions};
use proto::v1 as pb;
use proto::v1::conversations_client::ConversationsClient;
use proto::v1::event_handoff_client::EventHandoffClient;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::{new_message, TestApp};

/// A database of the test's own, `name`: a relay sweeps every old row of its outbox, and
/// the other tests' replicas run none.
fn database_url(name: &str) -> String {
    let url = crate::helpers::database_url();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn amqp_url() -> String {
    std::env::var("SMOOCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A replica on the database `name` with a relay under a new prefix, the prefix's event
/// queue declared (what the relay publishes lands there), its address, and what stops it.
async fn replica(
    name: &str,
) -> (
    TestApp,
    bus::Topology,
    bus::lapin::Channel,
    String,
    CancellationToken,
) {
    let url = database_url(name);
    db::ensure_database(&url).await.unwrap();
    conversations::migrate(&url).await.unwrap();
    let topology = bus::Topology::new(format!("test-{}", domain::id::new_secret(6)));
    let connection = bus::lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology.declare_events(&channel).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let config = conversations::Config {
        database_url: url.clone(),
        max_connections: 5,
        relay: Some(conversations::RelayTarget {
            amqp_url: amqp_url(),
            amqp_prefix: topology.prefix().to_owned(),
            local: None,
            audience: None,
        }),
        message_writers: 2,
        users_addr: None,
    };
    tokio::spawn(conversations::run(config, listener, shutdown.clone()));
    let client = ConversationsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let app = TestApp {
        client,
        app_id: domain::id::new_id(),
        pool: db::connect(&url, conversations::SCHEMA, 2).unwrap(),
        _shutdown: Some(shutdown.clone().drop_guard()),
    };
    (app, topology, channel, addr, shutdown)
}

/// A worker's side of the stream: what it is handed, and where its answers go.
struct Attached {
    answers: mpsc::UnboundedSender<pb::TakeRequest>,
    handed: tonic::Streaming<pb::HandedEvents>,
}

async fn attach(addr: &str, credit: u32) -> Attached {
    let mut client = EventHandoffClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (answers, requests) = mpsc::unbounded_channel();
    answers
        .send(pb::TakeRequest {
            credit,
            outcomes: Vec::new(),
        })
        .unwrap();
    let handed = client
        .take(UnboundedReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    Attached { answers, handed }
}

impl Attached {
    /// The next event handed on this stream.
    async fn next(&mut self) -> pb::HandedEvent {
        let batch = tokio::time::timeout(Duration::from_secs(10), self.handed.message())
            .await
            .expect("an event was handed")
            .unwrap()
            .expect("the stream is open");
        assert_eq!(batch.events.len(), 1, "{batch:?}");
        batch.events.into_iter().next().unwrap()
    }

    /// The next `n` events handed on this stream that are `wanted`, in the order handed;
    /// any other event handed meanwhile (a late probe's, say) is answered handled.
    async fn take_wanted(
        &mut self,
        n: usize,
        wanted: impl Fn(&pb::HandedEvent) -> bool,
    ) -> Vec<pb::HandedEvent> {
        let mut kept = Vec::new();
        while kept.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(10), self.handed.message())
                .await
                .expect("the events were handed")
                .unwrap()
                .expect("the stream is open");
            for event in batch.events {
                if wanted(&event) {
                    kept.push(event);
                } else {
                    self.answer(event.seq, true);
                }
            }
        }
        kept
    }

    fn answer(&self, seq: i64, handled: bool) {
        self.answers
            .send(pb::TakeRequest {
                credit: 0,
                outcomes: vec![pb::HandoffOutcome { seq, handled }],
            })
            .unwrap();
    }
}

/// Posts a message as app user `user`; returns its event's outbox seq and id.
async fn post(app: &mut TestApp, user: &str, text: &str) -> (i64, String) {
    let message = app.post(user, new_message("appUser", text)).await.unwrap();
    let id = message.message.unwrap().id;
    sqlx::query_as(
        "SELECT seq, event_id FROM outbox
          WHERE app_id = $1 AND trigger = 'message:appUser' AND payload->'messages'->0->>'_id' = $2",
    )
    .bind(&app.app_id)
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn published(app: &TestApp, seq: i64) -> bool {
    sqlx::query_scalar("SELECT published_at IS NOT NULL FROM outbox WHERE seq = $1")
        .bind(seq)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Waits up to `limit` for the row `seq` to be marked published.
async fn marked_within(app: &TestApp, seq: i64, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if published(app, seq).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The ids of `app`'s events that reach the prefix's event queue within `limit` (the relay
/// also sweeps what earlier runs left in the database).
async fn queued_within(
    app: &TestApp,
    channel: &bus::lapin::Channel,
    topology: &bus::Topology,
    limit: Duration,
    want: usize,
) -> Vec<String> {
    let start = Instant::now();
    let mut ids = Vec::new();
    while ids.len() < want && start.elapsed() < limit {
        let got = channel
            .basic_get(
                topology.webhook_events_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        match got {
            Some(message) => {
                let event: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
                if event["appId"] == app.app_id.as_str() {
                    ids.push(event["id"].as_str().unwrap().to_owned());
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    ids
}

/// Starts the conversations of `users` before any worker attaches (a conversation's first
/// message also has a `conversation:start` event), and takes their events off the queue.
async fn start_conversations(
    app: &mut TestApp,
    channel: &bus::lapin::Channel,
    topology: &bus::Topology,
    users: &[&str],
) {
    for user in users {
        post(app, user, "first").await;
    }
    let queued = queued_within(
        app,
        channel,
        topology,
        Duration::from_secs(10),
        users.len() * 2,
    )
    .await;
    assert_eq!(queued.len(), users.len() * 2);
}

async fn clean_up(channel: &bus::lapin::Channel, topology: &bus::Topology) {
    for queue in [topology.webhook_events_queue(), topology.dead_queue()] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

#[tokio::test]
async fn an_attached_worker_takes_app_user_events_and_only_its_handled_answer_marks_them() {
    let (mut app, topology, channel, addr, _) = replica("smooch_test_handoff").await;
    start_conversations(&mut app, &channel, &topology, &["user1", "user2", "user3"]).await;
    let mut worker = attach(&addr, 1).await;

    // Events the webhook worker does not take from the relay (push's) are published. An
    // answer for an event this stream was never handed changes nothing, credit included.
    let maker = crate::helpers::maker_message("key", "hello");
    app.post("user1", maker).await.unwrap();
    let queued = queued_within(&app, &channel, &topology, Duration::from_secs(5), 1).await;
    assert_eq!(queued.len(), 1);
    worker.answer(i64::MAX, true);

    // Handed to the worker, not published; its answer marks the row.
    let (seq, event_id) = post(&mut app, "user1", "one").await;
    let event = worker.next().await;
    assert_eq!(
        (event.seq, event.event_id.as_str(), event.app_id.as_str()),
        (seq, event_id.as_str(), app.app_id.as_str())
    );
    assert_eq!(event.trigger, "message:appUser");
    let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(payload["messages"][0]["text"], "one");
    assert!(event.created_at_s > 0);
    assert!(!published(&app, seq).await, "marked before the answer");
    worker.answer(seq, true);
    assert!(marked_within(&app, seq, Duration::from_secs(5)).await);

    // The answer gave the credit back. A declined event stays unpublished until the sweep
    // publishes it to the event queue (rows younger than 2 s are not swept).
    let (declined, declined_id) = post(&mut app, "user1", "two").await;
    assert_eq!(worker.next().await.seq, declined);
    worker.answer(declined, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!published(&app, declined).await);
    let queued = queued_within(&app, &channel, &topology, Duration::from_secs(10), 1).await;
    assert_eq!(queued, vec![declined_id]);
    assert!(marked_within(&app, declined, Duration::from_secs(5)).await);

    // With its one credit held by an unanswered event, the next event goes to the queue at
    // once.
    let (held, held_id) = post(&mut app, "user2", "three").await;
    assert_eq!(worker.next().await.seq, held);
    let (over, over_id) = post(&mut app, "user2", "four").await;
    let queued = queued_within(&app, &channel, &topology, Duration::from_millis(1500), 1).await;
    assert_eq!(queued, vec![over_id]);
    assert!(marked_within(&app, over, Duration::from_secs(5)).await);

    // A worker that goes away without answering leaves its event to the sweep: published
    // once, to the queue.
    drop(worker);
    let queued = queued_within(&app, &channel, &topology, Duration::from_secs(10), 1).await;
    assert_eq!(queued, vec![held_id]);
    assert!(marked_within(&app, held, Duration::from_secs(5)).await);

    // No worker attached: events go to the queue as they are committed.
    let (_, alone_id) = post(&mut app, "user3", "five").await;
    let queued = queued_within(&app, &channel, &topology, Duration::from_millis(1500), 1).await;
    assert_eq!(queued, vec![alone_id]);
    clean_up(&channel, &topology).await;
}

#[tokio::test]
async fn a_stopping_replica_hands_out_nothing_more_and_waits_for_the_answers_it_is_owed() {
    let (mut app, topology, channel, addr, stop) = replica("smooch_test_handoff_stop").await;
    start_conversations(&mut app, &channel, &topology, &["user1"]).await;
    let mut worker = attach(&addr, 4).await;
    let (seq, _) = post(&mut app, "user1", "one").await;
    assert_eq!(worker.next().await.seq, seq);

    // The replica stops with the event in the worker's hands: the answer still marks it.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!published(&app, seq).await);
    worker.answer(seq, true);
    assert!(marked_within(&app, seq, Duration::from_secs(5)).await);
    // Then it ends the stream, having handed nothing more.
    let end = tokio::time::timeout(Duration::from_secs(10), worker.handed.message())
        .await
        .expect("the stream ended");
    assert!(matches!(end, Ok(None)), "{end:?}");
    clean_up(&channel, &topology).await;
}

#[tokio::test]
async fn the_events_handed_over_are_the_rows_stored() {
    // A conversation's first message makes two events: the message's, whose payload the
    // relay is handed with the unread count spliced in, and `conversation:start`, which the
    // statement stores derived from the message's payload and the writer hands as it
    // serialized it. The worker must get what the outbox holds.
    let (mut app, topology, channel, addr, _) = replica("smooch_test_handoff_rows").await;
    start_conversations(&mut app, &channel, &topology, &["probe"]).await;
    let mut worker = attach(&addr, 8).await;
    // The replica reads the stream's credit on a task of its own, and hands nothing over
    // until it has (events go to the queue meanwhile): post to the probe's conversation
    // until one of its events is handed.
    let mut probes = 0;
    loop {
        probes += 1;
        assert!(probes <= 50, "the replica never handed an event over");
        post(&mut app, "probe", "probe").await;
        if let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(200), worker.handed.message()).await
        {
            for event in batch.unwrap().expect("the stream is open").events {
                worker.answer(event.seq, true);
            }
            break;
        }
    }
    app.post("starter", new_message("appUser", "hello"))
        .await
        .unwrap();
    // The starter's two events (a probe's may come late: answered and left out).
    let mut handed = worker
        .take_wanted(2, |event| {
            let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
            payload["messages"][0]["text"] == "hello"
        })
        .await;
    let triggers: Vec<&str> = handed.iter().map(|e| e.trigger.as_str()).collect();
    assert_eq!(triggers, ["message:appUser", "conversation:start"]);
    for event in &handed {
        let given = assert_stored(&app, event).await;
        assert_eq!(given["messages"][0]["text"], "hello");
        worker.answer(event.seq, true);
    }
    // An event written on its own (`conversation:read`), serialized once for the statement
    // and the handed row.
    app.mark_read("starter").await.unwrap();
    let read = worker
        .take_wanted(1, |event| event.trigger == "conversation:read")
        .await
        .remove(0);
    let given = assert_stored(&app, &read).await;
    assert_eq!(given["read"]["role"], "appUser");
    worker.answer(read.seq, true);
    handed.push(read);
    for event in &handed {
        assert!(marked_within(&app, event.seq, Duration::from_secs(5)).await);
    }
    clean_up(&channel, &topology).await;
}

/// Asserts that the handed `event` is its outbox row (id, trigger and payload); answers
/// the payload.
async fn assert_stored(app: &TestApp, event: &pb::HandedEvent) -> serde_json::Value {
    let (event_id, stored): (String, String) =
        sqlx::query_as("SELECT event_id, payload::text FROM outbox WHERE seq = $1")
            .bind(event.seq)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(event.event_id, event_id, "{}", event.trigger);
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let given: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(given, stored, "{}", event.trigger);
    assert_eq!(given["trigger"], event.trigger.as_str());
    given
}
