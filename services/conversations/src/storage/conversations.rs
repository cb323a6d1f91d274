//! Conversations: reading one, its read state, user merges and app user events.

use bus::OutboxRow;
use domain::id::{AppId, AppUserId};
use sqlx::{PgConnection, PgExecutor, PgPool};
use wire::event::Event;

use super::messages::{conversation_and_messages_before, page_before, read_page, Cursor, Page};
use super::outbox::insert_event;
use super::{lock, ConversationRow};

/// An app user's conversation, if any.
async fn conversation_of(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    app_user_id: &AppUserId,
) -> sqlx::Result<Option<ConversationRow>> {
    sqlx::query_as!(
        ConversationRow,
        "SELECT id, app_makers, unread_count, app_user_last_read_ms, app_maker_last_read_ms
           FROM conversations.conversations WHERE app_id = $1 AND app_user_id = $2",
        app_id.as_str(),
        app_user_id.as_str(),
    )
    .fetch_optional(db)
    .await
}

/// An app user's conversation and one page of its messages, on a connection kept for
/// reads.
pub(crate) async fn get_conversation(
    reads: &db::Kept,
    app_id: &AppId,
    app_user_id: &AppUserId,
    cursor: Cursor,
    page: i64,
) -> sqlx::Result<Option<(ConversationRow, Page)>> {
    let mut conn = reads.acquire().await?;
    let found = conversation_and_page(&mut conn, app_id, app_user_id, cursor, page).await?;
    conn.finish();
    Ok(found)
}

/// [`get_conversation`]'s reads. A backward page (the latest, or one `before` a time),
/// which every client reads, comes with its conversation in one statement.
async fn conversation_and_page(
    conn: &mut PgConnection,
    app_id: &AppId,
    app_user_id: &AppUserId,
    cursor: Cursor,
    page: i64,
) -> sqlx::Result<Option<(ConversationRow, Page)>> {
    let limit = page.max(1);
    let Some(before) = cursor.before_ms() else {
        let Some(conversation) = conversation_of(&mut *conn, app_id, app_user_id).await? else {
            return Ok(None);
        };
        let messages = read_page(conn, app_id, &conversation.id, cursor, limit).await?;
        return Ok(Some((conversation, messages)));
    };
    let Some((conversation, rows)) =
        conversation_and_messages_before(conn, app_id, app_user_id, before, limit + 1).await?
    else {
        return Ok(None);
    };
    let messages = page_before(conn, app_id, &conversation.id, cursor, limit, rows).await?;
    Ok(Some((conversation, messages)))
}

/// Resets the unread count, records the app user's read at `now_ms` and writes the
/// `conversation:read` event built by `event`, in one transaction. `None` when the app
/// user has no conversation.
pub(crate) async fn mark_read(
    pool: &PgPool,
    app_id: &AppId,
    app_user_id: &AppUserId,
    now_ms: i64,
    event: &Event,
    page: i64,
) -> sqlx::Result<Option<(ConversationRow, Page, OutboxRow)>> {
    let mut tx = pool.begin().await?;
    let conversation: Option<ConversationRow> = sqlx::query_as!(
        ConversationRow,
        "UPDATE conversations.conversations
            SET unread_count = 0,
                app_user_last_read_ms = GREATEST(COALESCE(app_user_last_read_ms, 0), $3)
          WHERE app_id = $1 AND app_user_id = $2
          RETURNING id, app_makers, unread_count, app_user_last_read_ms, app_maker_last_read_ms",
        app_id.as_str(),
        app_user_id.as_str(),
        now_ms,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(conversation) = conversation else {
        return Ok(None);
    };
    let outbox = insert_event(&mut *tx, event).await?;
    let messages = read_page(&mut tx, app_id, &conversation.id, Cursor::Latest, page).await?;
    tx.commit().await?;
    Ok(Some((conversation, messages, outbox)))
}

/// What a merge did.
#[derive(Debug)]
pub(crate) enum Merged {
    /// This call moved the history (or found none to move) and wrote the event (its outbox
    /// row, for the relay).
    Now(OutboxRow),
    /// An earlier call already did.
    Already,
}

/// Moves `from`'s conversation into `into`'s in one transaction: the whole conversation
/// when `into` has none, else its messages, actions, app makers and unread count, with
/// `from`'s messages re-authored to `into`. Records the merge so that running it again
/// changes nothing, and writes `event` (`merge:appUser`) once. Returns whether `into`
/// has a conversation afterwards.
pub(crate) async fn merge(
    pool: &PgPool,
    app_id: &AppId,
    from: &AppUserId,
    into: &AppUserId,
    event: &Event,
) -> sqlx::Result<(Merged, bool)> {
    let mut tx = pool.begin().await?;
    // Merges into one user run one at a time, so two of them cannot both rename their
    // conversation to the survivor's.
    lock(&mut tx, &format!("{app_id}:merge:{into}")).await?;
    let first: Option<bool> = sqlx::query_scalar!(
        "INSERT INTO conversations.merges (app_id, from_app_user_id, into_app_user_id) VALUES ($1, $2, $3)
         ON CONFLICT (app_id, from_app_user_id) DO NOTHING RETURNING true AS \"first!\"",
        app_id.as_str(),
        from.as_str(),
        into.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if first.is_none() {
        let has = conversation_of(&mut *tx, app_id, into).await?.is_some();
        tx.commit().await?;
        return Ok((Merged::Already, has));
    }
    let source: Option<ConversationRow> = sqlx::query_as!(
        ConversationRow,
        "SELECT id, app_makers, unread_count, app_user_last_read_ms, app_maker_last_read_ms
           FROM conversations.conversations WHERE app_id = $1 AND app_user_id = $2 FOR UPDATE",
        app_id.as_str(),
        from.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let target: Option<ConversationRow> = sqlx::query_as!(
        ConversationRow,
        "SELECT id, app_makers, unread_count, app_user_last_read_ms, app_maker_last_read_ms
           FROM conversations.conversations WHERE app_id = $1 AND app_user_id = $2 FOR UPDATE",
        app_id.as_str(),
        into.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let target_id = match (&source, &target) {
        (None, target) => target.as_ref().map(|t| t.id.clone()),
        (Some(source), None) => {
            sqlx::query!(
                "UPDATE conversations.conversations SET app_user_id = $3 WHERE app_id = $1 AND id = $2",
                app_id.as_str(),
                &source.id,
                into.as_str(),
            )
                .execute(&mut *tx)
                .await?;
            Some(source.id.clone())
        }
        (Some(source), Some(target)) => {
            sqlx::query!(
                "UPDATE conversations.messages SET conversation_id = $3
                  WHERE app_id = $1 AND conversation_id = $2",
                app_id.as_str(),
                &source.id,
                &target.id,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE conversations.message_actions SET conversation_id = $3
                  WHERE app_id = $1 AND conversation_id = $2",
                app_id.as_str(),
                &source.id,
                &target.id,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE conversations.conversations t SET
                     app_makers = t.app_makers || ARRAY(
                         SELECT m FROM unnest(s.app_makers) AS m WHERE NOT (m = ANY (t.app_makers))),
                     unread_count = t.unread_count + s.unread_count,
                     app_user_last_read_ms = GREATEST(t.app_user_last_read_ms, s.app_user_last_read_ms),
                     app_maker_last_read_ms = GREATEST(t.app_maker_last_read_ms, s.app_maker_last_read_ms)
                  FROM conversations.conversations s
                 WHERE t.app_id = $1 AND t.id = $3 AND s.app_id = $1 AND s.id = $2",
                app_id.as_str(),
                &source.id,
                &target.id,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "DELETE FROM conversations.conversations WHERE app_id = $1 AND id = $2",
                app_id.as_str(),
                &source.id,
            )
            .execute(&mut *tx)
            .await?;
            Some(target.id.clone())
        }
    };
    if let (Some(_), Some(target_id)) = (&source, &target_id) {
        // The merged user's own messages now read as the survivor's.
        sqlx::query!(
            "UPDATE conversations.messages SET author_id = $3
              WHERE app_id = $1 AND conversation_id = $4 AND role = 'appUser' AND author_id = $2",
            app_id.as_str(),
            from.as_str(),
            into.as_str(),
            target_id,
        )
        .execute(&mut *tx)
        .await?;
    }
    // Whispers the merged user got count as the survivor's.
    sqlx::query!(
        "INSERT INTO conversations.whisper_deliveries (app_id, whisper_id, app_user_id, delivered_at)
         SELECT app_id, whisper_id, $3, delivered_at FROM conversations.whisper_deliveries
          WHERE app_id = $1 AND app_user_id = $2
         ON CONFLICT DO NOTHING",
        app_id.as_str(),
        from.as_str(),
        into.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    let outbox = insert_event(&mut *tx, event).await?;
    tx.commit().await?;
    Ok((Merged::Now(outbox), target_id.is_some()))
}

/// Records an app user event.
pub(crate) async fn insert_app_user_event(
    conn: &mut PgConnection,
    app_id: &AppId,
    app_user_id: &AppUserId,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO conversations.events (app_id, app_user_id, name) VALUES ($1, $2, $3)",
        app_id.as_str(),
        app_user_id.as_str(),
        name,
    )
    .execute(conn)
    .await?;
    Ok(())
}
