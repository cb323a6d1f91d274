//! Events from a conversations replica in another process, over its `EventHandoff` stream:
//! the replica's relay publishes under a prefix the worker does not consume, so an event
//! reaches the sink only through the stream.

use std::time::Duration;

use bus::lapin::options::{BasicGetOptions, QueueDeleteOptions};
use proto::v1 as pb;
use proto::v1::conversations_client::ConversationsClient;
use tokio_util::sync::CancellationToken;

use crate::helpers::{amqp_url, database_url, World};

#[tokio::test]
async fn a_worker_delivers_what_a_replica_hands_over_and_its_answer_marks_the_row() {
    let world = World::new(Duration::from_millis(100)).await;
    let hook = world.webhook("/hook", &["message:appUser"]).await;

    // A database of this test's own: the replica's relay sweeps every old row of it.
    let (base, _) = database_url()
        .rsplit_once('/')
        .map(|(b, d)| (b.to_owned(), d.to_owned()))
        .unwrap();
    let url = format!("{base}/smooch_test_intake");
    db::ensure_database(&url).await.unwrap();
    conversations::migrate(&url).await.unwrap();
    let elsewhere = bus::Topology::new(format!("test-{}", domain::id::new_secret(6)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop_replica = CancellationToken::new();
    let config = conversations::Config {
        database_url: url.clone(),
        max_connections: 4,
        relay: Some(conversations::RelayTarget {
            amqp_url: amqp_url(),
            amqp_prefix: elsewhere.prefix().to_owned(),
            local: None,
            audience: None,
        }),
        message_writers: 1,
        users_addr: None,
    };
    tokio::spawn(conversations::run(config, listener, stop_replica.clone()));
    let replica = ConversationsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let worker = world.start_worker_with(webhook_worker::Config {
        conversations_grpc_addr: Some(addr.clone()),
        ..world.config.clone()
    });

    let post = |text: &str| {
        let request = pb::PostMessageRequest {
            app_id: world.app_id.clone(),
            app_user_id: "user1".to_owned(),
            message: Some(pb::NewMessage {
                role: "appUser".to_owned(),
                text: text.to_owned(),
                ..Default::default()
            }),
            app_user: Some(pb::AppUser {
                id: "user1".to_owned(),
                app_id: world.app_id.clone(),
                properties_json: "{}".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut replica = replica.clone();
        async move { replica.post_message(request).await.unwrap().into_inner() }
    };
    // Until the worker has attached, the replica publishes (elsewhere): probe until a
    // message comes through.
    let mut attached = false;
    for i in 0..50 {
        post(&format!("probe {i}")).await;
        if !world
            .sink
            .wait_for("/hook", 1, Duration::from_millis(200))
            .await
            .is_empty()
        {
            attached = true;
            break;
        }
    }
    assert!(attached, "no event came through the stream");

    let posted = post("through the stream").await;
    let message_id = posted.message.unwrap().id;
    let got = world
        .sink
        .wait_for("/hook", 2, Duration::from_secs(5))
        .await;
    let last = got.last().unwrap().json();
    assert_eq!(last["messages"][0]["_id"], message_id.as_str());
    assert_eq!(last["messages"][0]["text"], "through the stream");
    assert_eq!(last["app"]["_id"], world.app_id.as_str());

    // Handled: the row is marked, and the event never went to the broker.
    let pool = db::connect(&url, conversations::SCHEMA, 1).unwrap();
    let mut event_id = None;
    for _ in 0..100 {
        let (id, marked): (String, bool) = sqlx::query_as(
            "SELECT event_id, published_at IS NOT NULL FROM outbox
              WHERE app_id = $1 AND payload->'messages'->0->>'_id' = $2",
        )
        .bind(&world.app_id)
        .bind(&message_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if marked {
            event_id = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event_id = event_id.expect("the handled row was marked published");
    let connection = bus::connect(&amqp_url(), "handoff-test").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    while let Some(queued) = channel
        .basic_get(
            elsewhere.webhook_events_queue().as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let queued: serde_json::Value = serde_json::from_slice(&queued.data).unwrap();
        assert_ne!(
            queued["id"],
            event_id.as_str(),
            "the handed event was also published"
        );
    }
    // The delivery log has the attempt, under the event's stable delivery id.
    let delivery_id = webhook_worker::job::delivery_id(&event_id, &hook.id);
    assert_eq!(got.last().unwrap().header("webhook-id"), delivery_id);
    world
        .wait_for_log(&hook.id, &delivery_id, "succeeded", 1)
        .await;

    worker.stop().await;
    stop_replica.cancel();
    for queue in [elsewhere.webhook_events_queue(), elsewhere.dead_queue()] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    world.cleanup().await;
}
