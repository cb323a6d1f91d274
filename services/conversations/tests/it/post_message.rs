//! PostMessage: conversation creation, app makers, validation.

use proto::v1 as pb;

use crate::helpers::{assert_error, maker_message, new_message, spawn};

#[tokio::test]
async fn first_message_creates_the_conversation() {
    let mut app = spawn().await;
    let first = app
        .post(
            "user1",
            new_message("appUser", "Just put some vinegar on it"),
        )
        .await
        .unwrap();
    assert!(first.conversation_created);
    let message = first.message.unwrap();
    assert!(domain::id::is_id(&message.id), "{message:?}");
    let now = domain::time::now_ms();
    assert!((now - 5_000..=now).contains(&message.received_ms));
    assert_eq!(
        message,
        pb::Message {
            id: message.id.clone(),
            author_id: "user1".into(),
            role: "appUser".into(),
            // appUser messages default to the user's given name and surname
            name: Some("Steve Brule".into()),
            text: "Just put some vinegar on it".into(),
            actions_json: "[]".into(),
            received_ms: message.received_ms,
            // Posted through the API, by no device in particular.
            source_type: "api".into(),
            ..Default::default()
        }
    );
    let conversation = first.conversation.unwrap();
    assert!(domain::id::is_id(&conversation.id));
    assert_eq!(
        conversation,
        pb::Conversation {
            id: conversation.id.clone(),
            app_id: app.app_id.clone(),
            app_user_id: "user1".into(),
            app_makers: vec![],
            messages: vec![message.clone()],
            ..Default::default()
        }
    );

    let second = app
        .post("user1", new_message("appUser", "again"))
        .await
        .unwrap();
    assert!(!second.conversation_created);
    let again = second.conversation.unwrap();
    assert_eq!(again.id, conversation.id);
    let texts: Vec<_> = again.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["Just put some vinegar on it", "again"]);
    assert_eq!(again.messages[0], message);
}

#[tokio::test]
async fn message_fields_and_metadata_round_trip() {
    let mut app = spawn().await;
    let sent = pb::NewMessage {
        role: "appMaker".into(),
        author_id: "key_1".into(),
        text: "https://media.example.com/image.jpg".into(),
        name: Some("Support".into()),
        email: Some("support@example.com".into()),
        avatar_url: Some("https://www.gravatar.com/image.jpg".into()),
        media_url: Some("https://media.example.com/image.jpg".into()),
        media_type: Some("image/jpeg".into()),
        metadata_json: r#"{"lang": "en-ca", "n": 1, "ok": true}"#.into(),
        actions_json: String::new(),
        source_type: "web".into(),
        source_id: Some("device-1".into()),
    };
    let posted = app.post("user1", sent).await.unwrap();
    let message = posted.message.unwrap();
    assert_eq!(
        (message.source_type.as_str(), message.source_id.as_deref()),
        ("web", Some("device-1"))
    );
    assert_eq!(message.name.as_deref(), Some("Support"));
    assert_eq!(message.email.as_deref(), Some("support@example.com"));
    assert_eq!(message.media_type.as_deref(), Some("image/jpeg"));
    let metadata: serde_json::Value = serde_json::from_str(&message.metadata_json).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"lang": "en-ca", "n": 1, "ok": true})
    );
    // As stored: the same message, whatever the JSON spelling.
    let stored = app.get("user1").await.unwrap().messages.remove(0);
    let stored_metadata: serde_json::Value = serde_json::from_str(&stored.metadata_json).unwrap();
    assert_eq!(stored_metadata, metadata);
    assert_eq!(
        pb::Message {
            metadata_json: String::new(),
            ..stored
        },
        pb::Message {
            metadata_json: String::new(),
            ..message
        }
    );
}

#[tokio::test]
async fn app_makers_are_listed_once_in_order_of_first_message() {
    let mut app = spawn().await;
    let first = app
        .post("user1", maker_message("key_a", "hello"))
        .await
        .unwrap();
    assert!(first.conversation_created);
    assert_eq!(first.conversation.unwrap().app_makers, ["key_a"]);
    app.post("user1", new_message("appUser", "hi"))
        .await
        .unwrap();
    app.post("user1", maker_message("key_b", "me too"))
        .await
        .unwrap();
    let last = app
        .post("user1", maker_message("key_a", "again"))
        .await
        .unwrap();
    assert_eq!(last.conversation.unwrap().app_makers, ["key_a", "key_b"]);
    assert_eq!(
        app.get("user1").await.unwrap().app_makers,
        ["key_a", "key_b"]
    );
    // appMaker messages have no default name
    assert_eq!(last.message.unwrap().name, None);
}

#[tokio::test]
async fn invalid_messages_are_rejected_naming_the_field() {
    let mut app = spawn().await;
    let code = tonic::Code::InvalidArgument;

    let err = app
        .post("user1", new_message("admin", "hi"))
        .await
        .unwrap_err();
    assert_error(
        &err,
        code,
        "bad_request",
        "role must be one of appUser, appMaker",
    );

    let err = app
        .post("user1", new_message("appUser", "  "))
        .await
        .unwrap_err();
    assert_error(&err, code, "bad_request", "text is required");

    let nested = pb::NewMessage {
        metadata_json: r#"{"a": {"b": 1}}"#.into(),
        ..new_message("appUser", "hi")
    };
    let err = app.post("user1", nested).await.unwrap_err();
    assert_error(&err, code, "bad_request", "metadata.a");

    let not_object = pb::NewMessage {
        metadata_json: "[1]".into(),
        ..new_message("appUser", "hi")
    };
    let err = app.post("user1", not_object).await.unwrap_err();
    assert_error(&err, code, "bad_request", "metadata");

    let long_name = pb::NewMessage {
        name: Some("x".repeat(domain::validate::MAX_FIELD_CHARS + 1)),
        ..new_message("appUser", "hi")
    };
    let err = app.post("user1", long_name).await.unwrap_err();
    assert_error(&err, code, "bad_request", "name");

    let long_text = "x".repeat(domain::validate::MAX_TEXT_CHARS + 1);
    let err = app
        .post("user1", new_message("appUser", &long_text))
        .await
        .unwrap_err();
    assert_error(&err, code, "bad_request", "text");

    let missing = pb::PostMessageRequest {
        app_id: app.app_id.clone(),
        app_user_id: "user1".into(),
        message: None,
        app_user: None,
        ..Default::default()
    };
    let err = app.client.post_message(missing).await.unwrap_err();
    assert_error(&err, code, "bad_request", "message is required");

    // Nothing was stored.
    let err = app.get("user1").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn concurrent_first_messages_share_one_conversation() {
    let mut app = spawn().await;
    let posts = (0..10).map(|i| {
        let mut client = app.client.clone();
        let request = pb::PostMessageRequest {
            app_id: app.app_id.clone(),
            app_user_id: "user1".into(),
            message: Some(new_message("appUser", &format!("m{i}"))),
            app_user: None,
            ..Default::default()
        };
        tokio::spawn(async move { client.post_message(request).await.unwrap().into_inner() })
    });
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for post in posts {
        let reply = post.await.unwrap();
        created += usize::from(reply.conversation_created);
        ids.insert(reply.conversation.unwrap().id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(app.get("user1").await.unwrap().messages.len(), 10);
}
