//! GetConversation: not found, app isolation, the latest page.

use crate::helpers::{assert_error, new_message, spawn};

#[tokio::test]
async fn no_conversation_is_not_found() {
    let mut app = spawn().await;
    let err = app.get("nobody").await.unwrap_err();
    assert_error(
        &err,
        tonic::Code::NotFound,
        "not_found",
        "conversation not found",
    );
}

#[tokio::test]
async fn conversations_are_isolated_by_app() {
    let mut app = spawn().await;
    let posted = app
        .post("user1", new_message("appUser", "hi"))
        .await
        .unwrap();
    let mine = posted.conversation.unwrap();
    assert_eq!(app.get("user1").await.unwrap(), mine);

    // Another app with an app user of the same id sees nothing...
    let mut other = spawn().await;
    let err = other.get("user1").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // ...and gets a conversation of its own.
    let theirs = other
        .post("user1", new_message("appUser", "hello"))
        .await
        .unwrap();
    assert!(theirs.conversation_created);
    assert_ne!(theirs.conversation.unwrap().id, mine.id);
    assert_eq!(app.get("user1").await.unwrap().messages.len(), 1);
}

#[tokio::test]
async fn conversation_shows_the_latest_100_messages_oldest_first() {
    let mut app = spawn().await;
    for i in 0..105 {
        app.post("user1", new_message("appUser", &format!("m{i}")))
            .await
            .unwrap();
    }
    let conversation = app.get("user1").await.unwrap();
    let texts: Vec<_> = conversation
        .messages
        .iter()
        .map(|m| m.text.clone())
        .collect();
    let expected: Vec<_> = (5..105).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    assert!(conversation
        .messages
        .windows(2)
        .all(|w| w[0].received_ms <= w[1].received_ms));

    // PostMessage answers with the latest 10, the new message last.
    let posted = app
        .post("user1", new_message("appUser", "m105"))
        .await
        .unwrap();
    let page = posted.conversation.unwrap().messages;
    assert_eq!(page.len(), conversations::POST_PAGE_SIZE as usize);
    assert_eq!(page[0].text, "m96");
    assert_eq!(page[9], posted.message.unwrap());
}

#[tokio::test]
async fn messages_of_the_same_millisecond_keep_their_order() {
    let mut app = spawn().await;
    let posted = app
        .post("user1", new_message("appUser", "first"))
        .await
        .unwrap();
    let conversation_id = posted.conversation.unwrap().id;
    // Pin every message to one timestamp: insertion order must decide.
    sqlx::query("UPDATE messages SET received_ms = 1000 WHERE app_id = $1")
        .bind(&app.app_id)
        .execute(&app.pool)
        .await
        .unwrap();
    for text in ["second", "third"] {
        app.post("user1", new_message("appUser", text))
            .await
            .unwrap();
    }
    sqlx::query("UPDATE messages SET received_ms = 1000 WHERE app_id = $1")
        .bind(&app.app_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let conversation = app.get("user1").await.unwrap();
    assert_eq!(conversation.id, conversation_id);
    let texts: Vec<_> = conversation
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
}
