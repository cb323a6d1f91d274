//! The events beyond messages, each written to the outbox in the transaction of the change
//! that causes it: `conversation:start`, `postback`, `conversation:read`, `merge:appUser`;
//! and whispers fired by TrackEvent.

use proto::v1 as pb;
use serde_json::{json, Value};

use crate::helpers::{app_user, assert_error, maker_message, new_message, spawn, TestApp};

/// The outbox rows of the test's app: (trigger, payload), oldest first.
async fn outbox(app: &TestApp) -> Vec<(String, Value)> {
    sqlx::query_as("SELECT trigger, payload FROM outbox WHERE app_id = $1 ORDER BY seq")
        .bind(&app.app_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn payload_of(app: &TestApp, trigger: &str) -> Value {
    let rows = outbox(app).await;
    let found: Vec<&Value> = rows
        .iter()
        .filter(|(t, _)| t == trigger)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(found.len(), 1, "one {trigger} event in {rows:?}");
    found[0].clone()
}

#[tokio::test]
async fn the_first_message_starts_the_conversation_once() {
    let mut app = spawn().await;
    let first = app
        .post("user1", new_message("appUser", "hi"))
        .await
        .unwrap();
    app.post("user1", new_message("appUser", "again"))
        .await
        .unwrap();
    let start = payload_of(&app, "conversation:start").await;
    assert_eq!(
        start["messages"][0]["_id"],
        json!(first.message.unwrap().id)
    );
    assert_eq!(start["appUser"]["_id"], "user1");
}

#[tokio::test]
async fn postbacks_emit_the_message_and_action() {
    let mut app = spawn().await;
    let mut m = maker_message("key1", "Pick");
    m.actions_json =
        r#"[{"type": "postback", "text": "Yes", "payload": "YES"}, {"type": "link", "text": "l", "uri": "https://x.io"}]"#
            .into();
    let message = app.post("user1", m).await.unwrap().message.unwrap();
    let actions: Vec<Value> = serde_json::from_str(&message.actions_json).unwrap();
    let action_id = actions[0]["_id"].as_str().unwrap().to_owned();
    let postback = |user: &str, action: &str| pb::PostbackRequest {
        app_id: app.app_id.clone(),
        app_user_id: user.to_owned(),
        action_id: action.to_owned(),
        app_user: Some(app_user(&app.app_id, user)),
    };
    let request = postback("user1", &action_id);
    let answer = app.client.postback(request).await.unwrap().into_inner();
    assert_eq!(answer.message.unwrap().id, message.id);
    let event = payload_of(&app, "postback").await;
    assert_eq!(event["postbacks"][0]["action"], actions[0]);
    assert_eq!(event["postbacks"][0]["message"]["_id"], json!(message.id));
    assert_eq!(event["appUser"]["_id"], "user1");

    let request = postback("user2", &action_id);
    let err = app.client.postback(request).await.unwrap_err();
    assert_error(&err, tonic::Code::NotFound, "not_found", "action");
    let link = actions[1]["_id"].as_str().unwrap().to_owned();
    let request = postback("user1", &link);
    let err = app.client.postback(request).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "link");
    let mut other_app = spawn().await;
    let err = other_app
        .client
        .postback(pb::PostbackRequest {
            app_id: other_app.app_id.clone(),
            ..postback("user1", &action_id)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reading_resets_the_unread_count_and_emits_conversation_read() {
    let mut app = spawn().await;
    app.post("user1", maker_message("key1", "one"))
        .await
        .unwrap();
    let two = app
        .post("user1", maker_message("key1", "two"))
        .await
        .unwrap();
    let conversation = two.conversation.unwrap();
    assert_eq!(conversation.unread_count, 2);
    assert_eq!(
        conversation.app_maker_last_read_ms,
        two.message.unwrap().received_ms
    );
    let read = app.mark_read("user1").await.unwrap();
    assert_eq!(read.unread_count, 0);
    assert!(read.app_user_last_read_ms > 0);
    let event = payload_of(&app, "conversation:read").await;
    assert_eq!(event["read"]["role"], "appUser");
    assert_eq!(
        event["read"]["lastRead"].as_f64().unwrap(),
        domain::time::received(read.app_user_last_read_ms)
    );
    let err = app.mark_read("nobody").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

async fn merge(app: &mut TestApp, from: &str, into: &str) -> pb::MergeConversationsResponse {
    app.client
        .merge_conversations(pb::MergeConversationsRequest {
            app_id: app.app_id.clone(),
            from_app_user_id: from.to_owned(),
            into: Some(app_user(&app.app_id, into)),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn merges_move_history_once_and_emit_merge_app_user_once() {
    let mut app = spawn().await;
    app.post("anon", new_message("appUser", "anon 1"))
        .await
        .unwrap();
    app.post("anon", maker_message("key1", "maker"))
        .await
        .unwrap();
    app.post("steve", new_message("appUser", "steve 1"))
        .await
        .unwrap();
    let merged = merge(&mut app, "anon", "steve").await;
    assert!(merged.has_conversation);
    let again = merge(&mut app, "anon", "steve").await;
    assert!(again.has_conversation);
    let conversation = app.get("steve").await.unwrap();
    let texts: Vec<&str> = conversation
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts.contains(&"anon 1") && texts.contains(&"maker"));
    assert_eq!(conversation.unread_count, 1);
    assert_eq!(conversation.app_makers, ["key1"]);
    let anon_message = conversation
        .messages
        .iter()
        .find(|m| m.text == "anon 1")
        .unwrap();
    assert_eq!(anon_message.author_id, "steve");
    assert_eq!(
        app.get("anon").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let event = payload_of(&app, "merge:appUser").await;
    assert_eq!(
        event["merge"],
        json!({"survivingAppUserId": "steve", "discardedAppUserId": "anon"})
    );

    // A survivor without a conversation takes the merged one over.
    app.post("anon2", new_message("appUser", "hello"))
        .await
        .unwrap();
    assert!(merge(&mut app, "anon2", "dave").await.has_conversation);
    assert_eq!(app.get("dave").await.unwrap().messages[0].text, "hello");
    // Nothing to move: nothing moves, and the survivor still has no conversation.
    assert!(!merge(&mut app, "anon3", "erin").await.has_conversation);
}

async fn track(
    app: &mut TestApp,
    user: &str,
    name: &str,
    devices: Vec<pb::Device>,
) -> pb::TrackEventResponse {
    let mut sent = app_user(&app.app_id, user);
    sent.devices = devices;
    app.client
        .track_event(pb::TrackEventRequest {
            app_id: app.app_id.clone(),
            app_user_id: user.to_owned(),
            name: name.to_owned(),
            app_user: Some(sent),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn whispers_fire_once_per_user_on_their_event_and_targeting() {
    let mut app = spawn().await;
    let create = |event: &str, text: &str, platform: Option<&str>| pb::Whisper {
        app_id: app.app_id.clone(),
        event: event.to_owned(),
        text: text.to_owned(),
        platform: platform.map(str::to_owned),
        actions_json: r#"[{"type": "postback", "text": "ok", "payload": "OK"}]"#.into(),
        ..Default::default()
    };
    let (a, b) = (
        create("sale", "thanks", None),
        create("sale", "android only", Some("android")),
    );
    app.client.create_whisper(a).await.unwrap();
    app.client.create_whisper(b).await.unwrap();
    let ios = vec![pb::Device {
        id: "d".into(),
        platform: "ios".into(),
        last_seen_ms: 1,
        ..Default::default()
    }];
    let first = track(&mut app, "user1", "sale", ios.clone()).await;
    assert!(first.conversation_updated && first.conversation_created);
    let second = track(&mut app, "user1", "sale", ios).await;
    assert!(!second.conversation_updated);
    let conversation = app.get("user1").await.unwrap();
    assert_eq!(conversation.messages.len(), 1);
    assert_eq!(conversation.messages[0].text, "thanks");
    assert_eq!(conversation.messages[0].role, "appMaker");
    let triggers: Vec<String> = outbox(&app).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(triggers, ["message:appMaker", "conversation:start"]);
    assert!(
        !track(&mut app, "user1", "other", Vec::new())
            .await
            .conversation_updated
    );

    // Whispers of another app never fire here.
    let mut other = spawn().await;
    let foreign = pb::Whisper {
        app_id: other.app_id.clone(),
        event: "visit".into(),
        text: "elsewhere".into(),
        ..Default::default()
    };
    other.client.create_whisper(foreign).await.unwrap();
    assert!(
        !track(&mut app, "user1", "visit", Vec::new())
            .await
            .conversation_updated
    );
}

/// Every whisper RPC is scoped by app: one without an app id is refused, never run across
/// apps.
#[tokio::test]
async fn every_whisper_rpc_needs_an_app() {
    let mut app = spawn().await;
    let whisper = app
        .client
        .create_whisper(pb::Whisper {
            app_id: app.app_id.clone(),
            event: "sale".into(),
            text: "thanks".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let anywhere = pb::WhisperRef {
        app_id: String::new(),
        whisper_id: whisper.id.clone(),
    };
    let codes = [
        app.client
            .create_whisper(pb::Whisper {
                app_id: String::new(),
                event: "sale".into(),
                text: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        app.client
            .list_whispers(pb::ListWhispersRequest {
                app_id: String::new(),
            })
            .await
            .unwrap_err()
            .code(),
        app.client
            .get_whisper(anywhere.clone())
            .await
            .unwrap_err()
            .code(),
        app.client
            .update_whisper(pb::UpdateWhisperRequest {
                app_id: String::new(),
                whisper_id: whisper.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        app.client
            .delete_whisper(anywhere)
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [tonic::Code::InvalidArgument; 5]);
    // Still there for its own app.
    let mine = pb::WhisperRef {
        app_id: app.app_id.clone(),
        whisper_id: whisper.id,
    };
    assert!(app.client.get_whisper(mine).await.is_ok());
}
