//! The message writer's group commit: posts that queue while the writer is busy commit
//! together, and one that fails does not take the others with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::helpers::{new_message, spawn_with_writers, TestApp};

/// A post of `text` by app user `user` of the test's app.
fn post_request(app: &TestApp, user: &str, text: &str) -> proto::v1::PostMessageRequest {
    proto::v1::PostMessageRequest {
        app_id: app.app_id.clone(),
        app_user_id: user.to_owned(),
        message: Some(new_message("appUser", text)),
        ..Default::default()
    }
}

/// Holds `user`'s conversation row locked in a transaction of the test's own, then posts
/// to `user` so that the only writer waits on that lock, and waits until it does.
async fn block_the_writer(app: &TestApp, user: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = app.pool.begin().await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    sqlx::query(
        "SELECT 1 FROM conversations.conversations WHERE app_id = $1 AND app_user_id = $2 FOR UPDATE",
    )
    .bind(&app.app_id)
    .bind(user)
    .fetch_one(&mut *lock)
    .await
    .unwrap();
    let mut app_client = app.client.clone();
    let request = post_request(app, user, "blocked");
    tokio::spawn(async move { app_client.post_message(request).await.unwrap() });
    // Until the writer's statement waits for the row lock.
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
        )
        .bind(holder)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return lock;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the message writer never waited for the locked conversation");
}

/// A service with one message writer, waiting on a conversation row the returned
/// transaction holds locked (app user `blocker`'s, whose first message is `first`).
async fn busy_writer() -> (TestApp, sqlx::Transaction<'static, sqlx::Postgres>) {
    let mut app = spawn_with_writers(1).await;
    app.post("blocker", new_message("appUser", "first"))
        .await
        .unwrap();
    let lock = block_the_writer(&app, "blocker").await;
    (app, lock)
}

/// The transaction (`xmin`) of each of the app's stored messages, by text.
async fn transactions(app: &TestApp) -> BTreeMap<String, String> {
    sqlx::query_as("SELECT text, xmin::text FROM conversations.messages WHERE app_id = $1")
        .bind(&app.app_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn posts_queued_behind_a_busy_writer_commit_together_and_a_failing_one_fails_alone() {
    let (mut app, lock) = busy_writer().await;
    // These queue while the only writer waits: ten users' first messages, two more
    // messages of one of them, and a text Postgres refuses (a NUL character).
    let mut posts = Vec::new();
    for (user, text) in (0..10)
        .map(|i| (format!("user{i}"), format!("m{i}")))
        .chain([
            ("user3".to_owned(), "m3b".to_owned()),
            ("user3".to_owned(), "m3c".to_owned()),
        ])
        .chain([("user5".to_owned(), "nul\0here".to_owned())])
    {
        let mut client = app.client.clone();
        let request = post_request(&app, &user, &text);
        posts.push((
            text,
            tokio::spawn(async move { client.post_message(request).await }),
        ));
        // In this order into the queue.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.commit().await.unwrap();
    let mut stored = BTreeSet::new();
    for (text, post) in posts {
        let answer = post.await.unwrap();
        if text.contains('\0') {
            let status = answer.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        } else {
            let answer = answer.unwrap().into_inner();
            assert_eq!(answer.message.unwrap().text, text);
            stored.insert(text);
        }
    }
    assert_eq!(stored.len(), 12);
    // Each good message is stored once; the bad one not at all.
    let written = transactions(&app).await;
    let texts: BTreeSet<String> = written.keys().cloned().collect();
    let expected: BTreeSet<String> = stored
        .iter()
        .cloned()
        .chain(["first".to_owned(), "blocked".to_owned()])
        .collect();
    assert_eq!(texts, expected);
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversations.messages WHERE app_id = $1")
            .bind(&app.app_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(count, 14);
    // One outbox row per stored message, plus a conversation:start per new conversation.
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conversations.outbox WHERE app_id = $1 AND trigger = 'message:appUser'",
    )
    .bind(&app.app_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 14);
    // user3's three messages, in the order they were queued.
    let user3: Vec<String> = app
        .get("user3")
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(user3, ["m3", "m3b", "m3c"]);
}

#[tokio::test]
async fn posts_queued_behind_a_busy_writer_share_one_transaction() {
    let (app, lock) = busy_writer().await;
    let posts: Vec<_> = (0..8)
        .map(|i| {
            let mut client = app.client.clone();
            let request = post_request(&app, &format!("user{i}"), &format!("m{i}"));
            tokio::spawn(async move { client.post_message(request).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.commit().await.unwrap();
    for post in posts {
        post.await.unwrap().unwrap();
    }
    let written = transactions(&app).await;
    let batched: BTreeSet<&String> = (0..8).map(|i| &written[&format!("m{i}")]).collect();
    assert_eq!(batched.len(), 1, "{written:?}");
    assert_ne!(written["first"], written["m0"]);
}
