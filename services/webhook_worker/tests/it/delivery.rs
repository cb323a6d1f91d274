//! Deliveries: headers, signature and payload as a receiver sees them; event filtering;
//! configuration changes applying at once.

use std::time::Duration;

use serde_json::json;
use webhook_worker::{job, signature};

use crate::helpers::World;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn delivers_signed_reference_payload_with_api_key_and_standard_headers() {
    let world = World::new(Duration::from_millis(100)).await;
    let hook = world.webhook("/hook", &[]).await;
    let worker = world.start_worker();
    let event = world
        .publish_message("appUser", "Hi! Do you have time to chat?")
        .await;

    let got = world.sink.wait_for("/hook", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-api-key"), hook.secret);
    let id = req.header("webhook-id");
    assert_eq!(id, job::delivery_id(&event.id, &hook.id));
    let timestamp: i64 = req.header("webhook-timestamp").parse().unwrap();
    let now = domain::time::now_ms() / 1000;
    assert!(
        (now - timestamp).abs() <= 5,
        "timestamp {timestamp} vs now {now}"
    );
    // Verify as a receiver would: recompute the HMAC over id.timestamp.body.
    assert!(signature::verify(
        &hook.secret,
        id,
        timestamp,
        &req.body,
        req.header("webhook-signature"),
    ));
    assert!(!signature::verify(
        "wrong",
        id,
        timestamp,
        &req.body,
        req.header("webhook-signature")
    ));

    let m = &event.messages[0];
    assert_eq!(
        req.json(),
        json!({
            "event": "message:appUser",
            "messages": [{
                "_id": m.id,
                "authorId": m.author_id,
                "role": "appUser",
                "name": "Steve",
                "text": "Hi! Do you have time to chat?",
                "actions": [],
                "received": 1444348338.704,
                "type": "text",
                "source": {"type": "api"}
            }],
            "appUserId": event.app_user.id,
            "trigger": "message:appUser",
            "app": {"_id": world.app_id},
            "appUser": {
                "_id": event.app_user.id,
                "userId": "steveb@channel5.com",
                "givenName": "Steve",
                "signedUpAt": "2015-10-06T20:53:01.588Z",
                "properties": {},
                "conversationStarted": true
            },
            "version": 1
        })
    );
    let log = world.wait_for_log(&hook.id, id, "succeeded", 1).await;
    assert_eq!(log.attempts[0].status_code, Some(200));
    assert_eq!(log.attempts[0].outcome, "succeeded");
    assert_eq!(log.event_id, event.id);

    worker.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn events_reach_only_webhooks_subscribed_to_their_role() {
    let world = World::new(Duration::from_millis(100)).await;
    world.webhook("/users", &["message:appUser"]).await;
    world.webhook("/makers", &["message:appMaker"]).await;
    world.webhook("/all", &["message"]).await;
    let worker = world.start_worker();
    let from_user = world.publish_message("appUser", "from user").await;
    let from_maker = world.publish_message("appMaker", "from maker").await;

    let all = world.sink.wait_for("/all", 2, WAIT).await;
    let users = world.sink.wait_for("/users", 1, WAIT).await;
    let makers = world.sink.wait_for("/makers", 1, WAIT).await;
    // Give stray deliveries a moment to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.sink.received("/all").len(), 2);
    assert_eq!(world.sink.received("/users").len(), 1);
    assert_eq!(world.sink.received("/makers").len(), 1);
    let appuser_ids = |v: &[crate::helpers::Received]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|r| r.json()["messages"][0]["_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        appuser_ids(&users),
        vec![from_user.messages[0].id.to_string()]
    );
    assert_eq!(
        appuser_ids(&makers),
        vec![from_maker.messages[0].id.to_string()]
    );
    assert_eq!(makers[0].json()["event"], "message:appMaker");
    assert_eq!(all.len(), 2);

    worker.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn deleted_or_retargeted_webhooks_stop_receiving_within_a_second() {
    let world = World::new(Duration::from_millis(100)).await;
    let gone = world.webhook("/gone", &[]).await;
    let moved = world.webhook("/old", &[]).await;
    let worker = world.start_worker();
    world.publish_message("appUser", "first").await;
    world.sink.wait_for("/gone", 1, WAIT).await;
    world.sink.wait_for("/old", 1, WAIT).await;

    let mut client = world.webhooks.clone();
    client
        .delete_webhook(proto::v1::WebhookRef {
            app_id: world.app_id.clone(),
            webhook_id: gone.id.clone(),
        })
        .await
        .unwrap();
    client
        .update_webhook(proto::v1::UpdateWebhookRequest {
            app_id: world.app_id.clone(),
            webhook_id: moved.id.clone(),
            target: Some(world.sink.url("/new")),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world.publish_message("appUser", "second").await;
    assert_eq!(world.sink.wait_for("/new", 1, WAIT).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world.sink.received("/gone").len(),
        1,
        "deleted webhook got a delivery"
    );
    assert_eq!(
        world.sink.received("/old").len(),
        1,
        "old target got a delivery"
    );

    worker.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let world = World::new(Duration::from_millis(50)).await;
    let hook = world.webhook("/private", &[]).await;
    let worker = world.start_worker_with(webhook_worker::Config {
        allow_private_targets: false,
        max_retries: 0,
        ..world.config.clone()
    });
    let event = world.publish_message("appUser", "hi").await;
    let id = job::delivery_id(&event.id, &hook.id);
    let log = world.wait_for_log(&hook.id, &id, "failed", 1).await;
    let error = log.attempts[0].error.clone().unwrap_or_default();
    assert!(error.contains("not a public address"), "{error}");
    assert!(world.sink.received("/private").is_empty());

    worker.stop().await;
    world.cleanup().await;
}
