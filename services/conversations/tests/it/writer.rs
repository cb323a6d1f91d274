//! The message writer's group commit: posts that queue while the writer is busy commit
//! together, and one that fails does not take the others with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::helpers::{maker_message, new_message, spawn_with_writers, TestApp};

/// A post of `text` by app user `user` of the test's app.
fn post_request(app: &TestApp, user: &str, text: &str) -> proto::v1::PostMessageRequest {
    proto::v1::PostMessageRequest {
        app_id: app.app_id.clone(),
        app_user_id: user.to_owned(),
        message: Some(new_message("appUser", text)),
        ..Default::default()
    }
}

/// A post the only writer is stuck on: the test's transaction holds the conversation row
/// locked.
struct Blocked {
    lock: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The post, answered once the lock is released.
    post: tokio::task::JoinHandle<
        Result<tonic::Response<proto::v1::PostMessageResponse>, tonic::Status>,
    >,
    /// The backend pid of the writer's connection, which waits on the lock.
    writer: i32,
}

/// Holds `user`'s conversation row locked in a transaction of the test's own, then posts
/// to `user` so that the only writer waits on that lock, and waits until it does.
async fn block(app: &TestApp, user: &str) -> Blocked {
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
    let post = tokio::spawn(async move { app_client.post_message(request).await });
    // Until the writer's statement waits for the row lock.
    for _ in 0..200 {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
        )
        .bind(holder)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if let Some(writer) = waiting {
            return Blocked { lock, post, writer };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the message writer never waited for the locked conversation");
}

/// [`block`], for tests that only need the lock.
async fn block_the_writer(app: &TestApp, user: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    block(app, user).await.lock
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

/// The texts of `user`'s conversation, oldest first.
async fn conversation_texts(app: &mut TestApp, user: &str) -> Vec<String> {
    let conversation = app.get(user).await.unwrap();
    conversation.messages.into_iter().map(|m| m.text).collect()
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
    assert_eq!(
        conversation_texts(&mut app, "user3").await,
        ["m3", "m3b", "m3c"]
    );
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

#[tokio::test]
async fn a_batch_writes_each_users_posts_in_order_with_counts_pages_and_events() {
    let mut app = spawn_with_writers(1).await;
    // user0 and user1 have conversations already; user2 has none.
    for user in ["blocker", "user0", "user1"] {
        app.post(user, new_message("appUser", &format!("old {user}")))
            .await
            .unwrap();
    }
    let lock = block_the_writer(&app, "blocker").await;
    // Queued while the only writer waits, in this order: user1 gets three posts (two
    // from an app maker), the others one each.
    let queued = [
        ("user1", maker_message("maker", "a1")),
        ("user0", new_message("appUser", "a0")),
        ("user1", new_message("appUser", "b1")),
        ("user2", maker_message("maker", "a2")),
        ("user1", maker_message("maker", "c1")),
    ];
    let mut posts = Vec::new();
    for (user, message) in queued {
        let mut client = app.client.clone();
        let request = proto::v1::PostMessageRequest {
            message: Some(message),
            ..post_request(&app, user, "")
        };
        posts.push(tokio::spawn(
            async move { client.post_message(request).await },
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.commit().await.unwrap();
    let mut answers = Vec::new();
    for post in posts {
        answers.push(post.await.unwrap().unwrap().into_inner());
    }
    let written = transactions(&app).await;
    let batch: BTreeSet<&String> = ["a1", "a0", "b1", "a2", "c1"]
        .iter()
        .map(|text| &written[*text])
        .collect();
    assert_eq!(batch.len(), 1, "one transaction: {written:?}");

    let texts = |answer: &proto::v1::PostMessageResponse| -> Vec<String> {
        let conversation = answer.conversation.as_ref().unwrap();
        conversation
            .messages
            .iter()
            .map(|m| m.text.clone())
            .collect()
    };
    // Each answer's page ends with its own message, after what came before it.
    assert_eq!(texts(&answers[0]), ["old user1", "a1"]);
    assert_eq!(texts(&answers[1]), ["old user0", "a0"]);
    assert_eq!(texts(&answers[2]), ["old user1", "a1", "b1"]);
    assert_eq!(texts(&answers[3]), ["a2"]);
    assert_eq!(texts(&answers[4]), ["old user1", "a1", "b1", "c1"]);
    // The unread count each write made; only user2's conversation is new.
    let unread: Vec<i64> = answers
        .iter()
        .map(|a| a.conversation.as_ref().unwrap().unread_count)
        .collect();
    assert_eq!(unread, [1, 0, 1, 1, 2]);
    let created: Vec<bool> = answers.iter().map(|a| a.conversation_created).collect();
    assert_eq!(created, [false, false, false, true, false]);
    let user1 = answers[0].conversation.as_ref().unwrap();
    assert_eq!(user1.app_makers, ["maker"]);
    for answer in &answers[1..] {
        assert_eq!(
            answer.conversation.as_ref().unwrap().id == user1.id,
            answer.message.as_ref().unwrap().text.ends_with('1'),
            "user1's posts share its conversation, the others have their own"
        );
    }

    // The outbox: each message's event (with the count its write made) once, in the
    // order each user's messages were written, and user2's conversation:start right
    // after its first message's event.
    let events: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT trigger, payload FROM conversations.outbox WHERE app_id = $1 ORDER BY seq",
    )
    .bind(&app.app_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of_batch: Vec<(String, String, i64)> = events
        .iter()
        .filter_map(|(trigger, payload)| {
            let text = payload["messages"][0]["text"].as_str()?.to_owned();
            let batched = ["a1", "a0", "b1", "a2", "c1"].contains(&text.as_str());
            batched.then(|| {
                let count = payload["unreadCount"].as_i64().unwrap_or(-1);
                (trigger.clone(), text, count)
            })
        })
        .collect();
    let position = |trigger: &str, text: &str| {
        of_batch
            .iter()
            .position(|(t, m, _)| t == trigger && m == text)
            .unwrap_or_else(|| panic!("no {trigger} of {text} in {of_batch:?}"))
    };
    assert_eq!(of_batch.len(), 6, "{of_batch:?}");
    assert!(position("message:appMaker", "a1") < position("message:appUser", "b1"));
    assert!(position("message:appUser", "b1") < position("message:appMaker", "c1"));
    assert_eq!(
        position("conversation:start", "a2"),
        position("message:appMaker", "a2") + 1
    );
    // The batch's conversation:start is a2's event under its own id and trigger.
    let payload_of = |trigger: &str| {
        events
            .iter()
            .find(|(t, p)| t == trigger && p["messages"][0]["text"] == "a2")
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no {trigger} of a2"))
    };
    let (mut message, mut start) = (
        payload_of("message:appMaker"),
        payload_of("conversation:start"),
    );
    assert_eq!(start["trigger"], "conversation:start");
    assert_ne!(start["id"], message["id"]);
    for payload in [&mut message, &mut start] {
        let fields = payload.as_object_mut().unwrap();
        for key in ["id", "trigger", "unreadCount"] {
            fields.remove(key);
        }
    }
    assert_eq!(start, message);
    let counts: BTreeMap<String, i64> = of_batch
        .iter()
        .filter(|(t, _, _)| t.starts_with("message:"))
        .map(|(_, m, c)| (m.clone(), *c))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("a0".to_owned(), 0),
            ("a1".to_owned(), 1),
            ("a2".to_owned(), 1),
            ("b1".to_owned(), 1),
            ("c1".to_owned(), 2),
        ])
    );
}

/// The writer's connection, seen waiting on a lock: `block`, release, wait for the post.
async fn writer_connection(app: &TestApp, user: &str) -> i32 {
    let blocked = block(app, user).await;
    blocked.lock.rollback().await.unwrap();
    blocked.post.await.unwrap().unwrap();
    blocked.writer
}

async fn terminate(app: &TestApp, backend: i32) {
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(backend)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(ended, "backend {backend} was not there to terminate");
}

#[tokio::test]
async fn the_writer_keeps_its_connection_and_takes_another_once_it_is_lost() {
    let mut app = spawn_with_writers(1).await;
    app.post("keeper", new_message("appUser", "first"))
        .await
        .unwrap();
    // Kept from one post to the next (each released to the pool, it would be pinged).
    let kept = writer_connection(&app, "keeper").await;
    let blocked = block(&app, "keeper").await;
    assert_eq!(blocked.writer, kept, "the writer took another connection");
    // Lost in the middle of a post: that post fails as unavailable...
    terminate(&app, blocked.writer).await;
    blocked.lock.rollback().await.unwrap();
    let status = blocked.post.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // ...and the next, at once, goes through on another connection.
    app.post("keeper", new_message("appUser", "after the loss"))
        .await
        .unwrap();
    let replaced = writer_connection(&app, "keeper").await;
    assert_ne!(replaced, kept);
    // Lost while idle for longer than the ping rule: the next post finds out before it
    // writes, and goes through.
    terminate(&app, replaced).await;
    tokio::time::sleep(db::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    app.post("keeper", new_message("appUser", "after an idle loss"))
        .await
        .unwrap();
    assert_eq!(
        conversation_texts(&mut app, "keeper").await,
        [
            "first",
            "blocked",
            "after the loss",
            "blocked",
            "after an idle loss"
        ]
    );
}
