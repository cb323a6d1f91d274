//! The outbox: every stored message has exactly one event row, written in its transaction.

use serde_json::json;

use crate::helpers::{maker_message, new_message, spawn};

#[tokio::test]
async fn message_writes_its_event_to_the_outbox() {
    let mut app = spawn().await;
    let posted = app
        .post("user1", new_message("appUser", "hi"))
        .await
        .unwrap();
    let message = posted.message.unwrap();

    let rows: Vec<(String, String, serde_json::Value, bool)> = sqlx::query_as(
        "SELECT event_id, trigger, payload, published_at IS NULL FROM outbox
          WHERE app_id = $1 AND trigger <> 'conversation:start' ORDER BY seq",
    )
    .bind(&app.app_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let (event_id, trigger, payload, unpublished) = rows.into_iter().next().unwrap();
    assert!(domain::id::is_id(&event_id));
    assert_eq!(trigger, "message:appUser");
    assert!(unpublished);
    assert_eq!(
        payload,
        json!({
            "version": wire::event::EVENT_VERSION,
            "id": event_id,
            "appId": app.app_id,
            "trigger": "message:appUser",
            "createdAtMs": message.received_ms,
            // The conversation's unread count after this message (for push badges; the
            // webhook worker leaves it out of deliveries).
            "unreadCount": 0,
            "appUser": {
                "_id": "user1",
                "givenName": "Steve",
                "surname": "Brule",
                "signedUpAt": "2015-10-08T23:52:18.704Z",
                "properties": {"favoriteFood": "prunes"},
                "conversationStarted": true
            },
            "messages": [{
                "_id": message.id,
                "authorId": "user1",
                "role": "appUser",
                "name": "Steve Brule",
                "text": "hi",
                "actions": [],
                "received": domain::time::received(message.received_ms),
                "type": "text",
                "source": {"type": "api"}
            }]
        })
    );
    // The payload is the bus's event type.
    let event: wire::event::Event = serde_json::from_value(payload).unwrap();
    assert_eq!(
        event.messages[0],
        wire::model::Message::try_from(message).unwrap()
    );
}

#[tokio::test]
async fn each_message_has_one_event_and_rejected_ones_none() {
    let mut app = spawn().await;
    app.post("user1", new_message("appUser", "one"))
        .await
        .unwrap();
    app.post("user1", maker_message("key_a", "two"))
        .await
        .unwrap();
    app.post("user1", new_message("nobody", "three"))
        .await
        .unwrap_err();
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT trigger FROM outbox WHERE app_id = $1 ORDER BY seq")
            .bind(&app.app_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    // The first message also starts the conversation.
    assert_eq!(
        triggers,
        ["message:appUser", "conversation:start", "message:appMaker"]
    );
    // `conversation:start` is the first message's event under its own id and trigger,
    // without the message's unread count.
    let payloads: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_id, payload FROM outbox WHERE app_id = $1 ORDER BY seq LIMIT 2",
    )
    .bind(&app.app_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let (start_id, start) = payloads[1].clone();
    let mut expected = payloads[0].1.clone();
    expected["id"] = serde_json::json!(start_id);
    expected["trigger"] = serde_json::json!("conversation:start");
    expected
        .as_object_mut()
        .unwrap()
        .remove("unreadCount")
        .expect("the message's event carries its unread count");
    assert_ne!(start_id, payloads[0].0);
    assert_eq!(start, expected);
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE app_id = $1")
        .bind(&app.app_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(messages, 2);
}
