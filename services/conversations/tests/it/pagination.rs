//! Pages of a conversation: cursors are times, pages never split a millisecond, every
//! message is seen exactly once walking either way, and a page costs one bounded index
//! range scan however long the conversation.

use std::collections::HashSet;

use proto::v1 as pb;
use sqlx::PgPool;

use crate::helpers::{new_message, spawn, TestApp};

/// Inserts `count` appUser messages into the conversation, `per_ms` of them in each
/// millisecond starting at `start_ms`, and returns their ids.
async fn insert(
    pool: &PgPool,
    app_id: &str,
    conversation_id: &str,
    start_ms: i64,
    count: i64,
    per_ms: i64,
) -> Vec<String> {
    // Ids: 24 hex characters, unique per test run.
    sqlx::query_scalar(
        "INSERT INTO messages (app_id, conversation_id, id, author_id, role, text, received_ms)
         SELECT $1, $2, substr(md5(random()::text || i::text), 1, 24), 'user1', 'appUser',
                'm' || i, $3 + i / $5
           FROM generate_series(0, $4 - 1) AS i
         RETURNING id",
    )
    .bind(app_id)
    .bind(conversation_id)
    .bind(start_ms)
    .bind(count)
    .bind(per_ms)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn page(
    app: &mut TestApp,
    before_ms: Option<i64>,
    after_ms: Option<i64>,
) -> pb::Conversation {
    app.client
        .get_conversation(pb::GetConversationRequest {
            app_id: app.app_id.clone(),
            app_user_id: "user1".into(),
            before_ms,
            after_ms,
        })
        .await
        .unwrap()
        .into_inner()
}

fn is_ordered(messages: &[pb::Message]) -> bool {
    messages
        .windows(2)
        .all(|w| w[0].received_ms <= w[1].received_ms)
}

#[tokio::test]
async fn walking_back_and_forth_sees_every_message_once_across_equal_timestamps() {
    let mut app = spawn().await;
    let first = app
        .post("user1", new_message("appUser", "newest"))
        .await
        .unwrap();
    let conversation_id = first.conversation.unwrap().id;
    let newest = first.message.unwrap();
    let mut all: HashSet<String> = HashSet::from([newest.id.clone()]);
    // 240 messages three to a millisecond, then 150 in one single millisecond.
    all.extend(insert(&app.pool, &app.app_id, &conversation_id, 1_000, 240, 3).await);
    all.extend(insert(&app.pool, &app.app_id, &conversation_id, 2_000, 150, 150).await);

    // Backwards from the latest page, following `before` = the page's oldest time.
    let mut seen: Vec<pb::Message> = Vec::new();
    let mut current = page(&mut app, None, None).await;
    assert!(!current.has_next);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(is_ordered(&current.messages));
        // A page holds at most 100, except one millisecond holding more than that.
        let times: HashSet<i64> = current.messages.iter().map(|m| m.received_ms).collect();
        assert!(current.messages.len() <= 100 || times.len() == 1);
        let oldest = current.messages.first().map(|m| m.received_ms);
        let mut older = std::mem::take(&mut current.messages);
        older.extend(seen);
        seen = older;
        if !current.has_previous {
            break;
        }
        current = page(&mut app, oldest, None).await;
        assert!(current.has_next, "an older page has newer messages");
    }
    assert!(pages >= 5, "{pages}");
    let ids: Vec<&str> = seen.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "no message twice");
    assert_eq!(
        ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>(),
        all
    );
    assert!(is_ordered(&seen));
    assert_eq!(seen.last().unwrap().id, newest.id);

    // Forwards from before the first message, following `after` = the page's newest time.
    let mut forward: Vec<pb::Message> = Vec::new();
    let mut current = page(&mut app, None, Some(999)).await;
    assert!(!current.has_previous);
    loop {
        let newest_here = current.messages.last().map(|m| m.received_ms);
        forward.extend(std::mem::take(&mut current.messages));
        if !current.has_next {
            break;
        }
        current = page(&mut app, None, newest_here).await;
        assert!(current.has_previous);
    }
    assert_eq!(forward, seen);

    // Cursors are exclusive, and both at once are refused.
    let at_1000 = page(&mut app, Some(1_001), None).await;
    assert_eq!(at_1000.messages.len(), 3);
    assert!(!at_1000.has_previous && at_1000.has_next);
    let err = app
        .client
        .get_conversation(pb::GetConversationRequest {
            app_id: app.app_id.clone(),
            app_user_id: "user1".into(),
            before_ms: Some(2),
            after_ms: Some(1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_page_of_a_huge_conversation_reads_one_bounded_index_range() {
    let mut app = spawn().await;
    let first = app
        .post("user1", new_message("appUser", "hi"))
        .await
        .unwrap();
    let conversation_id = first.conversation.unwrap().id;
    insert(
        &app.pool,
        &app.app_id,
        &conversation_id,
        1_000_000,
        100_000,
        1,
    )
    .await;
    sqlx::query("ANALYZE messages")
        .execute(&app.pool)
        .await
        .unwrap();

    let latest = page(&mut app, None, None).await;
    assert_eq!(latest.messages.len(), 100);
    assert!(latest.has_previous);
    let middle = page(&mut app, Some(1_050_000), None).await;
    assert_eq!(middle.messages.len(), 100);
    assert_eq!(middle.messages.last().unwrap().received_ms, 1_049_999);

    // The page query (as storage runs it) touches at most one page (+1) of index entries,
    // from the middle of 100,000 messages as from their end.
    for before in [i64::MAX, 1_050_000] {
        let plan: serde_json::Value = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, FORMAT JSON)
             SELECT id FROM messages
              WHERE app_id = $1 AND conversation_id = $2 AND received_ms < $3
              ORDER BY received_ms DESC, seq DESC LIMIT 101",
        )
        .bind(&app.app_id)
        .bind(&conversation_id)
        .bind(before)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let text = plan.to_string();
        assert!(text.contains("messages_page"), "{text}");
        assert!(
            !text.contains("\"Sort\""),
            "no sort: the index gives the order: {text}"
        );
        let scan = &plan[0]["Plan"]["Plans"][0];
        assert!(scan["Actual Rows"].as_f64().unwrap() <= 101.0, "{text}");
    }
}
