//! SQL of the conversations schema. Every statement is scoped by app id.

use domain::event::Event;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

/// A stored message. JSON columns travel as text, as the protobuf carries them:
/// `metadata_json` is empty when the message has none.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: String,
    pub(crate) author_id: String,
    pub(crate) role: String,
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) avatar_url: Option<String>,
    pub(crate) text: String,
    pub(crate) media_url: Option<String>,
    pub(crate) media_type: Option<String>,
    pub(crate) metadata_json: String,
    pub(crate) actions_json: String,
    pub(crate) received_ms: i64,
}

/// A stored conversation (without its messages).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ConversationRow {
    pub(crate) id: String,
    pub(crate) app_makers: Vec<String>,
}

/// The outcome of a message write.
#[derive(Debug)]
pub(crate) struct Posted {
    /// The conversation, app makers updated.
    pub(crate) conversation: ConversationRow,
    /// Whether this write created the conversation.
    pub(crate) created: bool,
    /// The conversation's latest messages, oldest first, the new one included.
    pub(crate) messages: Vec<MessageRow>,
}

/// A message write.
#[derive(Debug)]
pub(crate) struct NewPost<'a> {
    pub(crate) app_id: &'a str,
    pub(crate) app_user_id: &'a str,
    /// The id the conversation gets if this write creates it.
    pub(crate) new_conversation_id: &'a str,
    /// The app maker to list in the conversation, for `appMaker` messages.
    pub(crate) app_maker: Option<&'a str>,
    pub(crate) message: &'a MessageRow,
    /// The message's outbox event.
    pub(crate) event: &'a Event,
}

/// Stores a message and its outbox event in one transaction, creating the app user's
/// conversation when it does not exist and listing the app maker among its app makers.
/// Returns the latest `page` messages.
pub(crate) async fn post_message(
    pool: &PgPool,
    post: &NewPost<'_>,
    page: i64,
) -> sqlx::Result<Posted> {
    let NewPost {
        app_id,
        app_user_id,
        new_conversation_id,
        app_maker,
        message,
        event,
    } = *post;
    let mut tx = pool.begin().await?;
    let initial_makers: Vec<&str> = app_maker.into_iter().collect();
    let (mut conversation, created) = get_or_create(
        &mut tx,
        app_id,
        app_user_id,
        new_conversation_id,
        &initial_makers,
    )
    .await?;
    if let Some(maker) = app_maker {
        if !created && !conversation.app_makers.iter().any(|m| m == maker) {
            conversation.app_makers = add_app_maker(&mut tx, app_id, &conversation, maker).await?;
        }
    }
    insert_message(&mut tx, app_id, &conversation.id, message, event).await?;
    let messages = latest_messages(&mut tx, app_id, &conversation.id, page).await?;
    tx.commit().await?;
    Ok(Posted {
        conversation,
        created,
        messages,
    })
}

/// Finds the conversation of an app user, creating it when there is none; true when
/// created.
async fn get_or_create(
    conn: &mut PgConnection,
    app_id: &str,
    app_user_id: &str,
    id: &str,
    app_makers: &[&str],
) -> sqlx::Result<(ConversationRow, bool)> {
    // One round trip in the common cases: the insert's RETURNING when it created the row,
    // else the existing row. The SELECT branch runs on the statement's snapshot, so when a
    // concurrent transaction created the row after that snapshot was taken, the statement
    // returns nothing and the plain SELECT below (a fresh snapshot) finds it.
    let row: Option<(String, Vec<String>, bool)> = sqlx::query_as(
        "WITH created AS (
             INSERT INTO conversations (app_id, id, app_user_id, app_makers)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id, app_user_id) DO NOTHING
             RETURNING id, app_makers
         )
         SELECT id, app_makers, true FROM created
         UNION ALL
         SELECT id, app_makers, false FROM conversations
          WHERE app_id = $1 AND app_user_id = $3 AND NOT EXISTS (SELECT 1 FROM created)",
    )
    .bind(app_id)
    .bind(id)
    .bind(app_user_id)
    .bind(app_makers)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, app_makers, created)) = row {
        return Ok((ConversationRow { id, app_makers }, created));
    }
    let existing = sqlx::query_as(
        "SELECT id, app_makers FROM conversations WHERE app_id = $1 AND app_user_id = $2",
    )
    .bind(app_id)
    .bind(app_user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((existing, false))
}

/// Appends `maker` to a conversation's app makers unless it is already there; returns
/// the list as stored.
async fn add_app_maker(
    conn: &mut PgConnection,
    app_id: &str,
    conversation: &ConversationRow,
    maker: &str,
) -> sqlx::Result<Vec<String>> {
    let updated: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE conversations SET app_makers = array_append(app_makers, $3)
          WHERE app_id = $1 AND id = $2 AND NOT ($3 = ANY (app_makers))
          RETURNING app_makers",
    )
    .bind(app_id)
    .bind(&conversation.id)
    .bind(maker)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match updated {
        Some(makers) => makers,
        // A concurrent write added it first.
        None => {
            let mut makers = conversation.app_makers.clone();
            makers.push(maker.to_owned());
            makers
        }
    })
}

/// Inserts a message and its outbox row in one statement.
async fn insert_message(
    conn: &mut PgConnection,
    app_id: &str,
    conversation_id: &str,
    m: &MessageRow,
    event: &Event,
) -> sqlx::Result<()> {
    // A data-modifying CTE always runs, so both inserts happen in one round trip.
    sqlx::query(
        "WITH message AS (
             INSERT INTO messages (app_id, conversation_id, id, author_id, role, name, email,
                                   avatar_url, text, media_url, media_type, metadata, actions,
                                   received_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                     NULLIF($12, '')::jsonb, $13::jsonb, $14)
         )
         INSERT INTO outbox (event_id, app_id, trigger, payload) VALUES ($15, $1, $16, $17)",
    )
    .bind(app_id)
    .bind(conversation_id)
    .bind(&m.id)
    .bind(&m.author_id)
    .bind(&m.role)
    .bind(&m.name)
    .bind(&m.email)
    .bind(&m.avatar_url)
    .bind(&m.text)
    .bind(&m.media_url)
    .bind(&m.media_type)
    .bind(&m.metadata_json)
    .bind(&m.actions_json)
    .bind(m.received_ms)
    .bind(&event.id)
    .bind(&event.trigger)
    .bind(Json(event))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest `limit` messages of a conversation, oldest first: one backward scan of the
/// `messages_page` index.
async fn latest_messages(
    conn: &mut PgConnection,
    app_id: &str,
    conversation_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as(
        "SELECT id, author_id, role, name, email, avatar_url, text, media_url, media_type,
                COALESCE(metadata::text, '') AS metadata_json, actions::text AS actions_json,
                received_ms
           FROM (
             SELECT * FROM messages
              WHERE app_id = $1 AND conversation_id = $2
              ORDER BY received_ms DESC, seq DESC
              LIMIT $3
         ) latest
          ORDER BY received_ms, seq",
    )
    .bind(app_id)
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// An app user's conversation and its latest `page` messages, oldest first.
pub(crate) async fn get_conversation(
    pool: &PgPool,
    app_id: &str,
    app_user_id: &str,
    page: i64,
) -> sqlx::Result<Option<(ConversationRow, Vec<MessageRow>)>> {
    let mut conn = pool.acquire().await?;
    let conversation: Option<ConversationRow> = sqlx::query_as(
        "SELECT id, app_makers FROM conversations WHERE app_id = $1 AND app_user_id = $2",
    )
    .bind(app_id)
    .bind(app_user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(conversation) = conversation else {
        return Ok(None);
    };
    let messages = latest_messages(&mut conn, app_id, &conversation.id, page).await?;
    Ok(Some((conversation, messages)))
}

/// Records an app user event.
pub(crate) async fn insert_event(
    pool: &PgPool,
    app_id: &str,
    app_user_id: &str,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO events (app_id, app_user_id, name) VALUES ($1, $2, $3)")
        .bind(app_id)
        .bind(app_user_id)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}
