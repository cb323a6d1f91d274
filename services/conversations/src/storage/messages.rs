//! Messages: the one-statement post, pages of a conversation, action look-ups and deletion.

use std::collections::HashMap;

use bus::OutboxRow;
use domain::id::{AppId, AppUserId};
use sqlx::{PgConnection, PgExecutor};
use wire::event::{self, Event};

use super::outbox::{event_json, outbox_row, serialized_row, trace_json, with_unread_count};
use super::{ConversationRow, MessageRow};

/// Which page of a conversation's messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// The newest messages.
    Latest,
    /// The newest messages received strictly before this time (ms).
    Before(i64),
    /// The oldest messages received strictly after this time (ms).
    After(i64),
}

impl Cursor {
    /// The exclusive upper bound (ms) of the page at this cursor when it reads backward:
    /// its time for `Before`, `i64::MAX` (no bound) for `Latest`; `None` for `After`, which
    /// reads forward.
    pub(crate) fn before_ms(self) -> Option<i64> {
        match self {
            Cursor::Latest => Some(i64::MAX),
            Cursor::Before(t) => Some(t),
            Cursor::After(_) => None,
        }
    }
}

/// A page of messages, oldest first, and whether there are more on either side.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub(crate) messages: Vec<MessageRow>,
    pub(crate) has_previous: bool,
    pub(crate) has_next: bool,
}

/// The outcome of a message write.
#[derive(Debug)]
pub(crate) struct Posted {
    /// The conversation, app makers and read state updated.
    pub(crate) conversation: ConversationRow,
    /// Whether this write created the conversation.
    pub(crate) created: bool,
    /// The outbox rows it wrote, for the relay once committed.
    pub(crate) outbox: Vec<OutboxRow>,
    /// Up to [`NewPost::earlier`] messages before this one, newest first, read by the same
    /// statement.
    pub(crate) earlier: Vec<MessageRow>,
}

/// A message write.
#[derive(Debug)]
pub(crate) struct NewPost {
    pub(crate) app_id: AppId,
    pub(crate) app_user_id: AppUserId,
    /// The id the conversation gets if this write creates it.
    pub(crate) new_conversation_id: String,
    /// The app maker to list in the conversation (and mark as having read it).
    pub(crate) app_maker: Option<String>,
    pub(crate) message: MessageRow,
    /// The message's outbox event, without an unread count (`rules::message_event` makes
    /// none): the statement stores the count its write made, and the row handed to the
    /// relay gets it spliced in (`outbox::with_unread_count`).
    pub(crate) event: Event,
    /// The id of the `conversation:start` event, written only if this write creates the
    /// conversation: the message's event under that id and trigger ([`NewPost::start_event`]).
    pub(crate) start_id: String,
    /// How many of the conversation's earlier messages to read with the write (0: none).
    pub(crate) earlier: i64,
    /// The W3C trace context of the request, stored with the outbox rows (see
    /// `outbox::trace_json`); taken where the request runs, since the write may run on a
    /// batch writer's task.
    pub(crate) trace: HashMap<String, String>,
}

impl NewPost {
    /// The `conversation:start` event of this write's message: its event, under
    /// [`NewPost::start_id`] and the start trigger. The statements derive its stored
    /// payload from the message's the same way, so it is serialized only when handed on.
    pub(crate) fn start_event(&self) -> Event {
        let mut event = self.event.clone();
        event.id = self.start_id.clone();
        event::CONVERSATION_START.clone_into(&mut event.trigger);
        event
    }
}

/// The message event serialized for the outbox, before the statement adds the unread count.
fn message_event_json(event: &Event) -> sqlx::Result<String> {
    debug_assert!(
        event.unread_count.is_none(),
        "a message write's event has no unread count until its statement sets one"
    );
    event_json(event)
}

/// Stores a message and its outbox event(s) in the caller's transaction, creating the app
/// user's conversation when it does not exist. Returns the conversation and the latest
/// `page` messages.
pub(crate) async fn post_message(
    tx: &mut PgConnection,
    post: &NewPost,
    page: i64,
) -> sqlx::Result<(Posted, Page)> {
    let posted = post_in(&mut *tx, post).await?;
    let messages = read_page(
        tx,
        &post.app_id,
        &posted.conversation.id,
        Cursor::Latest,
        page,
    )
    .await?;
    Ok((posted, messages))
}

/// [`post_message`] without reading a page: one statement, so on a pool connection it
/// commits by itself (one round trip), and inside a transaction it is part of it.
pub(crate) async fn post_in(conn: &mut PgConnection, post: &NewPost) -> sqlx::Result<Posted> {
    // Nothing happens when a concurrent first post created the conversation after this
    // statement's snapshot was taken (its insert then skips, its update sees no row):
    // the next statement's snapshot sees the row.
    for _ in 0..3 {
        if let Some(posted) = post_once(&mut *conn, post).await? {
            return Ok(posted);
        }
    }
    Err(sqlx::Error::Protocol(
        "a conversation was neither created nor found three times in a row".into(),
    ))
}

/// The message write as one statement: the conversation created with this message's
/// counts, or updated (app makers, unread count, the maker's read time, which also
/// serializes concurrent writes to one conversation and keeps the count exact); the
/// message, its actions' index rows, its outbox row, and the `conversation:start` outbox
/// row when the conversation is new. `None` when it did nothing (see [`post_in`]).
async fn post_once(conn: &mut PgConnection, post: &NewPost) -> sqlx::Result<Option<Posted>> {
    let NewPost {
        app_id,
        app_user_id,
        new_conversation_id,
        app_maker,
        message: m,
        event,
        start_id,
        earlier,
        trace,
    } = post;
    let payload = message_event_json(event)?;
    let rows = sqlx::query_as!(
        PostedRow,
        "WITH created AS (
             INSERT INTO conversations.conversations (app_id, id, app_user_id, app_makers, unread_count,
                                        app_maker_last_read_ms)
             VALUES ($1, $2, $3,
                     CASE WHEN $4::text IS NOT NULL THEN ARRAY[$4::text] ELSE '{}' END,
                     CASE WHEN $5 = 'appMaker' THEN 1 ELSE 0 END,
                     CASE WHEN $4::text IS NOT NULL THEN $6::bigint END)
             ON CONFLICT (app_id, app_user_id) DO NOTHING
             RETURNING id, app_makers, unread_count, app_user_last_read_ms,
                       app_maker_last_read_ms, true AS created
         ), updated AS (
             UPDATE conversations.conversations SET
                 app_makers = CASE WHEN $4::text IS NOT NULL AND NOT ($4 = ANY (app_makers))
                                   THEN array_append(app_makers, $4) ELSE app_makers END,
                 unread_count = unread_count + CASE WHEN $5 = 'appMaker' THEN 1 ELSE 0 END,
                 app_maker_last_read_ms = CASE WHEN $4::text IS NOT NULL
                                   THEN GREATEST(COALESCE(app_maker_last_read_ms, 0), $6)
                                   ELSE app_maker_last_read_ms END
              WHERE app_id = $1 AND app_user_id = $3 AND NOT EXISTS (SELECT 1 FROM created)
             RETURNING id, app_makers, unread_count, app_user_last_read_ms,
                       app_maker_last_read_ms, false AS created
         ), conversation AS (
             SELECT * FROM created UNION ALL SELECT * FROM updated
         ), message AS (
             INSERT INTO conversations.messages (app_id, conversation_id, id, author_id, role, name, email,
                                   avatar_url, text, media_url, media_type, metadata, actions,
                                   received_ms, source_type, source_id)
             SELECT $1, c.id, $7, $8, $5, $9, $10, $11, $12, $13, $14,
                    NULLIF($15, '')::jsonb, $16::jsonb, $6, $17, $18
               FROM conversation c
         ), actions AS (
             INSERT INTO conversations.message_actions (app_id, id, conversation_id, message_id)
             SELECT $1, a->>'_id', c.id, $7
               FROM conversation c, jsonb_array_elements($16::jsonb) AS a
         ), events AS (
             -- The message's event first, then `conversation:start`: `seq` follows.
             INSERT INTO conversations.outbox (event_id, app_id, trigger, payload, trace_context)
             SELECT event_id, $1, trigger, payload, $22 FROM (
                 -- The message's event carries the count this write made (push badges).
                 SELECT 1 AS n, $19 AS event_id, $20 AS trigger,
                        jsonb_set($21::text::jsonb, '{unreadCount}', to_jsonb(unread_count))
                          AS payload
                   FROM conversation
                 UNION ALL
                 -- `conversation:start`: the message's event under its own id and trigger.
                 SELECT 2, $23, $24::text,
                        jsonb_set(jsonb_set($21::text::jsonb, '{id}', to_jsonb($23::text)),
                                  '{trigger}', to_jsonb($24::text))
                   FROM created
             ) AS e ORDER BY n
             RETURNING seq
         )
         -- The earlier messages come from the statement's snapshot, which the message
         -- written above is not part of.
         SELECT 1::int8 AS \"n!\", c.id AS \"id!\", c.app_makers AS \"app_makers!\",
                c.unread_count AS \"unread_count!\",
                c.app_user_last_read_ms, c.app_maker_last_read_ms, c.created AS \"created!\",
                (SELECT array_agg(seq ORDER BY seq) FROM events) AS outbox_seqs,
                m.id AS \"m_id?\", m.author_id AS \"m_author_id?\", m.role AS \"m_role?\", m.name AS \"m_name?\",
                m.email AS \"m_email?\", m.avatar_url AS \"m_avatar_url?\", m.text AS \"m_text?\",
                m.media_url AS \"m_media_url?\", m.media_type AS \"m_media_type?\",
                COALESCE(m.metadata::text, '') AS \"m_metadata_json?\",
                m.actions::text AS \"m_actions_json?\", m.received_ms AS \"m_received_ms?\",
                m.source_type AS \"m_source_type?\", m.source_id AS \"m_source_id?\",
                m.seq AS \"m_seq?\"
           FROM conversation c
           LEFT JOIN LATERAL (
               SELECT * FROM conversations.messages
                WHERE app_id = $1 AND conversation_id = c.id
                ORDER BY received_ms DESC, seq DESC
                LIMIT $25
           ) m ON true",
        app_id.as_str(),
        new_conversation_id,
        app_user_id.as_str(),
        app_maker.as_deref(),
        &m.role,
        m.received_ms,
        &m.id,
        &m.author_id,
        m.name.as_deref(),
        m.email.as_deref(),
        m.avatar_url.as_deref(),
        &m.text,
        m.media_url.as_deref(),
        m.media_type.as_deref(),
        &m.metadata_json,
        // Sent as text and cast by the statement, as before the macro (it infers jsonb).
        &m.actions_json as _,
        &m.source_type,
        m.source_id.as_deref(),
        &event.id,
        &event.trigger,
        &payload,
        trace_json(trace) as _,
        start_id,
        event::CONVERSATION_START,
        *earlier,
    )
    .fetch_all(&mut *conn)
    .await?;
    posted_from(rows, post, &payload)
}

/// [`post_once`] for several posts to distinct conversations (no two with the same app
/// and app user), as one statement: a batch of the message writer costs Postgres one
/// statement's start and end instead of one per post, and the writer one round trip. The
/// conversations are upserted one after the other in (app, app user) order, so two batches
/// never wait on each other in a cycle, and each is found through the unique index however
/// the table grew since the statement was planned (a join with the posts' rows would be
/// planned as a scan of the whole table while it is small, and the plan kept). Answers
/// each post's outcome in the order of `posts`. The upsert writes every post, so a post
/// left unanswered is an error, like any other failure of the statement.
pub(crate) async fn post_batch(
    conn: &mut PgConnection,
    posts: &[&NewPost],
) -> sqlx::Result<Vec<Posted>> {
    fn col<T>(posts: &[&NewPost], f: impl Fn(&NewPost) -> T) -> Vec<T> {
        posts.iter().map(|p| f(p)).collect()
    }
    let payloads = posts
        .iter()
        .map(|p| message_event_json(&p.event))
        .collect::<sqlx::Result<Vec<_>>>()?;
    let traces = posts
        .iter()
        .map(|p| {
            trace_json(&p.trace)
                .map(|t| serde_json::to_string(&t.0))
                .transpose()
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    let rows = sqlx::query_as!(
        PostedRow,
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::text[], $13::text[], $14::text[],
                                  $15::text[], $16::text[], $17::text[], $18::text[],
                                  $19::text[], $20::text[], $21::text[], $22::text[],
                                  $23::text[], $24::int8[])
                    WITH ORDINALITY
                 AS i(app_id, new_id, app_user_id, app_maker, role, received_ms, m_id,
                      author_id, name, email, avatar_url, text, media_url, media_type,
                      metadata, actions, source_type, source_id, event_id, trigger, payload,
                      trace, start_id, earlier, n)
         ), upserted AS (
             -- Each conversation created, or updated (which locks it), one after the other
             -- in (app, app user) order: an upsert finds each through the unique index
             -- whatever the table's size, and two batches never wait on each other in a
             -- cycle. Its row was created by this statement when it carries the proposed id.
             INSERT INTO conversations.conversations AS c (app_id, id, app_user_id, app_makers,
                                                           unread_count, app_maker_last_read_ms)
             SELECT app_id, new_id, app_user_id,
                    CASE WHEN app_maker IS NOT NULL THEN ARRAY[app_maker] ELSE '{}' END,
                    CASE WHEN role = 'appMaker' THEN 1 ELSE 0 END,
                    CASE WHEN app_maker IS NOT NULL THEN received_ms END
               FROM input
              ORDER BY app_id, app_user_id
             ON CONFLICT (app_id, app_user_id) DO UPDATE SET
                 app_makers = CASE WHEN cardinality(EXCLUDED.app_makers) > 0
                                        AND NOT (EXCLUDED.app_makers[1] = ANY (c.app_makers))
                                   THEN array_append(c.app_makers, EXCLUDED.app_makers[1])
                                   ELSE c.app_makers END,
                 unread_count = c.unread_count + EXCLUDED.unread_count,
                 app_maker_last_read_ms = CASE WHEN EXCLUDED.app_maker_last_read_ms IS NOT NULL
                                   THEN GREATEST(COALESCE(c.app_maker_last_read_ms, 0),
                                                 EXCLUDED.app_maker_last_read_ms)
                                   ELSE c.app_maker_last_read_ms END
             RETURNING c.app_id, c.app_user_id, c.id, c.app_makers, c.unread_count,
                       c.app_user_last_read_ms, c.app_maker_last_read_ms
         ), conversation AS (
             SELECT i.n, c.id, c.app_makers, c.unread_count, c.app_user_last_read_ms,
                    c.app_maker_last_read_ms, c.id = i.new_id AS created
               FROM input i
               JOIN upserted c ON c.app_id = i.app_id AND c.app_user_id = i.app_user_id
         ), message AS (
             INSERT INTO conversations.messages (app_id, conversation_id, id, author_id, role,
                                   name, email, avatar_url, text, media_url, media_type,
                                   metadata, actions, received_ms, source_type, source_id)
             SELECT i.app_id, c.id, i.m_id, i.author_id, i.role, i.name, i.email,
                    i.avatar_url, i.text, i.media_url, i.media_type,
                    NULLIF(i.metadata, '')::jsonb, i.actions::jsonb, i.received_ms,
                    i.source_type, i.source_id
               FROM conversation c JOIN input i USING (n)
              ORDER BY n
         ), actions AS (
             INSERT INTO conversations.message_actions (app_id, id, conversation_id, message_id)
             SELECT i.app_id, a->>'_id', c.id, i.m_id
               FROM conversation c JOIN input i USING (n),
                    jsonb_array_elements(i.actions::jsonb) AS a
         ), events AS (
             -- Each post's message event, then its `conversation:start`: `seq` follows.
             INSERT INTO conversations.outbox (event_id, app_id, trigger, payload, trace_context)
             SELECT event_id, app_id, trigger, payload, trace FROM (
                 -- The message's event carries the count this write made (push badges).
                 SELECT i.n, 1 AS k, i.event_id, i.app_id, i.trigger,
                        jsonb_set(i.payload::jsonb, '{unreadCount}', to_jsonb(c.unread_count))
                          AS payload,
                        i.trace::jsonb AS trace
                   FROM conversation c JOIN input i USING (n)
                 UNION ALL
                 -- `conversation:start`: the message's event under its own id and trigger.
                 SELECT i.n, 2, i.start_id, i.app_id, $25::text,
                        jsonb_set(jsonb_set(i.payload::jsonb, '{id}', to_jsonb(i.start_id)),
                                  '{trigger}', to_jsonb($25::text)),
                        i.trace::jsonb
                   FROM conversation c JOIN input i USING (n)
                  WHERE c.created
             ) AS e ORDER BY n, k
             RETURNING seq, event_id
         )
         -- The earlier messages come from the statement's snapshot, which the messages
         -- written above are not part of.
         SELECT c.n AS \"n!\", c.id AS \"id!\", c.app_makers AS \"app_makers!\",
                c.unread_count AS \"unread_count!\",
                c.app_user_last_read_ms, c.app_maker_last_read_ms, c.created AS \"created!\",
                (SELECT array_agg(seq ORDER BY seq) FROM events e
                  WHERE e.event_id IN (i.event_id, i.start_id)) AS outbox_seqs,
                m.id AS \"m_id?\", m.author_id AS \"m_author_id?\", m.role AS \"m_role?\", m.name AS \"m_name?\",
                m.email AS \"m_email?\", m.avatar_url AS \"m_avatar_url?\", m.text AS \"m_text?\",
                m.media_url AS \"m_media_url?\", m.media_type AS \"m_media_type?\",
                COALESCE(m.metadata::text, '') AS \"m_metadata_json?\",
                m.actions::text AS \"m_actions_json?\", m.received_ms AS \"m_received_ms?\",
                m.source_type AS \"m_source_type?\", m.source_id AS \"m_source_id?\",
                m.seq AS \"m_seq?\"
           FROM conversation c
           JOIN input i USING (n)
           LEFT JOIN LATERAL (
               SELECT * FROM conversations.messages
                WHERE app_id = i.app_id AND conversation_id = c.id
                ORDER BY received_ms DESC, seq DESC
                LIMIT i.earlier
           ) m ON true
          ORDER BY c.n, m.received_ms DESC, m.seq DESC",
        &col(posts, |p| p.app_id.as_str().to_owned()),
        &col(posts, |p| p.new_conversation_id.clone()),
        &col(posts, |p| p.app_user_id.as_str().to_owned()),
        &col(posts, |p| p.app_maker.clone()) as _,
        &col(posts, |p| p.message.role.clone()),
        &col(posts, |p| p.message.received_ms),
        &col(posts, |p| p.message.id.clone()),
        &col(posts, |p| p.message.author_id.clone()),
        &col(posts, |p| p.message.name.clone()) as _,
        &col(posts, |p| p.message.email.clone()) as _,
        &col(posts, |p| p.message.avatar_url.clone()) as _,
        &col(posts, |p| p.message.text.clone()),
        &col(posts, |p| p.message.media_url.clone()) as _,
        &col(posts, |p| p.message.media_type.clone()) as _,
        &col(posts, |p| p.message.metadata_json.clone()),
        &col(posts, |p| p.message.actions_json.clone()),
        &col(posts, |p| p.message.source_type.clone()),
        &col(posts, |p| p.message.source_id.clone()) as _,
        &col(posts, |p| p.event.id.clone()),
        &col(posts, |p| p.event.trigger.clone()),
        &payloads,
        &traces as _,
        &col(posts, |p| p.start_id.clone()),
        &col(posts, |p| p.earlier),
        event::CONVERSATION_START,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut answered: Vec<Vec<PostedRow>> = posts.iter().map(|_| Vec::new()).collect();
    for row in rows {
        let slot = usize::try_from(row.n - 1)
            .ok()
            .and_then(|i| answered.get_mut(i))
            .ok_or_else(|| sqlx::Error::Protocol(format!("a batch answered post {}", row.n)))?;
        slot.push(row);
    }
    answered
        .into_iter()
        .zip(posts)
        .zip(&payloads)
        .enumerate()
        .map(|(i, ((rows, post), payload))| {
            posted_from(rows, post, payload)?.ok_or_else(|| {
                sqlx::Error::Protocol(format!("a batch left post {} unanswered", i + 1))
            })
        })
        .collect()
}

/// The outcome of `post`'s write from the rows the statement answered for it (one per
/// earlier message, at least one); `None` when there are none: the write did nothing.
fn posted_from(
    rows: Vec<PostedRow>,
    post: &NewPost,
    payload: &str,
) -> sqlx::Result<Option<Posted>> {
    let mut rows = rows.into_iter();
    let Some(mut row) = rows.next() else {
        return Ok(None);
    };
    let earlier: Vec<MessageRow> = std::iter::once(row.take_earlier())
        .chain(rows.map(|mut r| r.take_earlier()))
        .flatten()
        .collect();
    // The seqs come in the order the rows were written: the message's event, with the
    // count this write made (as the statement stored it), then `conversation:start` when
    // this write created the conversation.
    let mut outbox = Vec::with_capacity(2);
    let mut seqs = row.outbox_seqs.unwrap_or_default().into_iter();
    if let Some(seq) = seqs.next() {
        let payload = with_unread_count(payload, row.unread_count);
        outbox.push(serialized_row(seq, &post.event, payload, &post.trace));
    }
    if let Some(seq) = seqs.next() {
        outbox.push(outbox_row(seq, &post.start_event(), &post.trace)?);
    }
    Ok(Some(Posted {
        created: row.created,
        conversation: ConversationRow {
            id: row.id,
            app_makers: row.app_makers,
            unread_count: row.unread_count,
            app_user_last_read_ms: row.app_user_last_read_ms,
            app_maker_last_read_ms: row.app_maker_last_read_ms,
        },
        outbox,
        earlier,
    }))
}

/// What the message write answers, and the page read of
/// [`conversation_and_messages_before`]: a conversation and one message per row.
#[derive(Debug)]
struct PostedRow {
    /// Which post of the statement (1-based) this row answers.
    n: i64,
    // The conversation's columns (a `ConversationRow`).
    id: String,
    app_makers: Vec<String>,
    unread_count: i64,
    app_user_last_read_ms: Option<i64>,
    app_maker_last_read_ms: Option<i64>,
    created: bool,
    outbox_seqs: Option<Vec<i64>>,
    // One earlier message per row (all `None` when there is none).
    m_id: Option<String>,
    m_author_id: Option<String>,
    m_role: Option<String>,
    m_name: Option<String>,
    m_email: Option<String>,
    m_avatar_url: Option<String>,
    m_text: Option<String>,
    m_media_url: Option<String>,
    m_media_type: Option<String>,
    m_metadata_json: Option<String>,
    m_actions_json: Option<String>,
    m_received_ms: Option<i64>,
    m_source_type: Option<String>,
    m_source_id: Option<String>,
    m_seq: Option<i64>,
}

impl PostedRow {
    /// The earlier message this row carries, if any, moved out of the row.
    fn take_earlier(&mut self) -> Option<MessageRow> {
        Some(MessageRow {
            id: self.m_id.take()?,
            author_id: self.m_author_id.take().unwrap_or_default(),
            role: self.m_role.take().unwrap_or_default(),
            name: self.m_name.take(),
            email: self.m_email.take(),
            avatar_url: self.m_avatar_url.take(),
            text: self.m_text.take().unwrap_or_default(),
            media_url: self.m_media_url.take(),
            media_type: self.m_media_type.take(),
            metadata_json: self.m_metadata_json.take().unwrap_or_default(),
            actions_json: self.m_actions_json.take().unwrap_or_default(),
            received_ms: self.m_received_ms.unwrap_or_default(),
            source_type: self.m_source_type.take().unwrap_or_default(),
            source_id: self.m_source_id.take(),
        })
    }
}

/// An app user's conversation and up to `limit` of its messages received strictly before
/// `before` (ms), newest first, in one statement: what [`super::conversations`]'s
/// `conversation_of` and then [`messages_before`] read, in one round trip. `None` when the
/// app user has no conversation.
pub(crate) async fn conversation_and_messages_before(
    conn: &mut PgConnection,
    app_id: &AppId,
    app_user_id: &AppUserId,
    before: i64,
    limit: i64,
) -> sqlx::Result<Option<(ConversationRow, Vec<MessageRow>)>> {
    let mut rows = sqlx::query_as!(
        PostedRow,
        "SELECT 1::int8 AS \"n!\", c.id AS \"id!\", c.app_makers AS \"app_makers!\",
                c.unread_count AS \"unread_count!\",
                c.app_user_last_read_ms, c.app_maker_last_read_ms, false AS \"created!\",
                NULL::int8[] AS outbox_seqs,
                m.id AS \"m_id?\", m.author_id AS \"m_author_id?\", m.role AS \"m_role?\", m.name AS \"m_name?\",
                m.email AS \"m_email?\", m.avatar_url AS \"m_avatar_url?\", m.text AS \"m_text?\",
                m.media_url AS \"m_media_url?\", m.media_type AS \"m_media_type?\",
                COALESCE(m.metadata::text, '') AS \"m_metadata_json?\",
                m.actions::text AS \"m_actions_json?\", m.received_ms AS \"m_received_ms?\",
                m.source_type AS \"m_source_type?\", m.source_id AS \"m_source_id?\",
                m.seq AS \"m_seq?\"
           FROM conversations.conversations c
           LEFT JOIN LATERAL (
               SELECT * FROM conversations.messages
                WHERE app_id = $1 AND conversation_id = c.id AND received_ms < $3
                ORDER BY received_ms DESC, seq DESC
                LIMIT $4
           ) m ON true
          WHERE c.app_id = $1 AND c.app_user_id = $2",
        app_id.as_str(),
        app_user_id.as_str(),
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    // The join hands the messages out in the subquery's order, but SQL does not promise
    // it, and sorting 100 wide rows in the statement cost Postgres more than the round
    // trip it saves; sorting rows already in order is one pass here.
    rows.sort_by_key(|r| std::cmp::Reverse((r.m_received_ms, r.m_seq)));
    let mut rows = rows.into_iter();
    let Some(mut first) = rows.next() else {
        return Ok(None);
    };
    let messages = std::iter::once(first.take_earlier())
        .chain(rows.map(|mut r| r.take_earlier()))
        .flatten()
        .collect();
    let conversation = ConversationRow {
        id: first.id,
        app_makers: first.app_makers,
        unread_count: first.unread_count,
        app_user_last_read_ms: first.app_user_last_read_ms,
        app_maker_last_read_ms: first.app_maker_last_read_ms,
    };
    Ok(Some((conversation, messages)))
}

/// Up to `limit` messages of a conversation received strictly before `before` (ms), newest
/// first: one backward range scan of the `messages_page` index.
async fn messages_before(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        "SELECT id, author_id, role, name, email, avatar_url, text, media_url, media_type,
                COALESCE(metadata::text, '') AS \"metadata_json!\",
                actions::text AS \"actions_json!\",
                received_ms, source_type, source_id
           FROM conversations.messages
          WHERE app_id = $1 AND conversation_id = $2 AND received_ms < $3
          ORDER BY received_ms DESC, seq DESC
          LIMIT $4",
        app_id.as_str(),
        conversation_id,
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Up to `limit` messages of a conversation received strictly after `after` (ms), oldest
/// first: one forward range scan of the `messages_page` index.
async fn messages_after(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        "SELECT id, author_id, role, name, email, avatar_url, text, media_url, media_type,
                COALESCE(metadata::text, '') AS \"metadata_json!\",
                actions::text AS \"actions_json!\",
                received_ms, source_type, source_id
           FROM conversations.messages
          WHERE app_id = $1 AND conversation_id = $2 AND received_ms > $3
          ORDER BY received_ms, seq
          LIMIT $4",
        app_id.as_str(),
        conversation_id,
        after,
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Every message of a conversation received at exactly `at` (ms), oldest first.
async fn messages_at(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    at: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        "SELECT id, author_id, role, name, email, avatar_url, text, media_url, media_type,
                COALESCE(metadata::text, '') AS \"metadata_json!\",
                actions::text AS \"actions_json!\",
                received_ms, source_type, source_id
           FROM conversations.messages
          WHERE app_id = $1 AND conversation_id = $2 AND received_ms = $3
          ORDER BY seq",
        app_id.as_str(),
        conversation_id,
        at,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Trims `rows`, read up to `take + 1` in the page's direction, to at most `take` that do
/// not end inside a millisecond: when the extra row shares the last kept row's millisecond,
/// that millisecond's rows are left for the next page. Answers whether rows lie beyond the
/// page and, when that millisecond held every row (none is left), the millisecond, whose
/// rows the caller reads whole instead.
fn trim_to_whole_ms(rows: &mut Vec<MessageRow>, take: usize) -> (bool, Option<i64>) {
    if rows.len() <= take {
        return (false, None);
    }
    let extra = rows.remove(take);
    let boundary = rows[take - 1].received_ms;
    if extra.received_ms == boundary {
        rows.retain(|m| m.received_ms != boundary);
        if rows.is_empty() {
            return (true, Some(boundary));
        }
    }
    (true, None)
}

/// The page at `cursor` (`Latest` or `Before`) from `rows`: the first `limit + 1` messages
/// received before it, newest first, as [`messages_before`] reads them. Reads more only
/// to settle a split boundary millisecond and, for `Before`, whether a later page exists.
/// `limit` is at least 1: its callers clamp it.
pub(crate) async fn page_before(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    cursor: Cursor,
    limit: i64,
    mut rows: Vec<MessageRow>,
) -> sqlx::Result<Page> {
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let (mut has_previous, only) = trim_to_whole_ms(&mut rows, take);
    if let Some(boundary) = only {
        rows = messages_at(conn, app_id, conversation_id, boundary).await?;
        rows.reverse();
        has_previous = any_between(conn, app_id, conversation_id, i64::MIN, boundary - 1).await?;
    }
    rows.reverse();
    let has_next = match cursor {
        Cursor::Before(t) => any_between(conn, app_id, conversation_id, t, i64::MAX).await?,
        _ => false,
    };
    Ok(Page {
        messages: rows,
        has_previous,
        has_next,
    })
}

/// Whether a conversation has a message received in `[from, to]` (ms): one index probe.
async fn any_between(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    from: i64,
    to: i64,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM conversations.messages
                         WHERE app_id = $1 AND conversation_id = $2
                           AND received_ms BETWEEN $3 AND $4) AS \"any!\"",
        app_id.as_str(),
        conversation_id,
        from,
        to,
    )
    .fetch_one(&mut *conn)
    .await
}

/// Reads one page at `cursor`: at most `limit` messages, oldest first, in a bounded number
/// of index range scans whatever the conversation's length.
///
/// Cursors are times, and several messages may share a millisecond, so a page never ends
/// in the middle of a millisecond: the messages of a split boundary millisecond are left
/// for the next page (whose exclusive cursor is that millisecond). Only when a single
/// millisecond holds more than `limit` messages does the page hold all of them instead.
pub(crate) async fn read_page(
    conn: &mut PgConnection,
    app_id: &AppId,
    conversation_id: &str,
    cursor: Cursor,
    limit: i64,
) -> sqlx::Result<Page> {
    let limit = limit.max(1);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    match cursor {
        Cursor::Latest | Cursor::Before(_) => {
            let before = cursor.before_ms().unwrap_or(i64::MAX);
            let rows = messages_before(conn, app_id, conversation_id, before, limit + 1).await?;
            page_before(conn, app_id, conversation_id, cursor, limit, rows).await
        }
        Cursor::After(after) => {
            let mut rows = messages_after(conn, app_id, conversation_id, after, limit + 1).await?;
            let (mut has_next, only) = trim_to_whole_ms(&mut rows, take);
            if let Some(boundary) = only {
                rows = messages_at(conn, app_id, conversation_id, boundary).await?;
                has_next =
                    any_between(conn, app_id, conversation_id, boundary + 1, i64::MAX).await?;
            }
            let has_previous = any_between(conn, app_id, conversation_id, i64::MIN, after).await?;
            Ok(Page {
                messages: rows,
                has_previous,
                has_next,
            })
        }
    }
}

/// The message holding action `action_id`, if it is in `app_user_id`'s conversation.
pub(crate) async fn message_with_action(
    db: impl PgExecutor<'_>,
    app_id: &AppId,
    app_user_id: &AppUserId,
    action_id: &str,
) -> sqlx::Result<Option<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        "SELECT m.id, m.author_id, m.role, m.name, m.email, m.avatar_url, m.text, m.media_url,
                m.media_type, COALESCE(m.metadata::text, '') AS \"metadata_json!\",
                m.actions::text AS \"actions_json!\", m.received_ms, m.source_type, m.source_id
           FROM conversations.message_actions a
           JOIN conversations.conversations c ON c.app_id = a.app_id AND c.id = a.conversation_id
           JOIN conversations.messages m ON m.app_id = a.app_id AND m.id = a.message_id
          WHERE a.app_id = $1 AND a.id = $2 AND c.app_user_id = $3",
        app_id.as_str(),
        action_id,
        app_user_id.as_str(),
    )
    .fetch_optional(db)
    .await
}

/// Deletes every message (and its actions) of an app user's conversation and resets its
/// unread count; the conversation stays. Returns how many messages went.
pub(crate) async fn delete_messages(
    conn: &mut PgConnection,
    app_id: &AppId,
    app_user_id: &AppUserId,
) -> sqlx::Result<u64> {
    let conversation: Option<String> = sqlx::query_scalar!(
        "UPDATE conversations.conversations SET unread_count = 0
         WHERE app_id = $1 AND app_user_id = $2 RETURNING id",
        app_id.as_str(),
        app_user_id.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(conversation) = conversation else {
        return Ok(0);
    };
    sqlx::query!(
        "DELETE FROM conversations.message_actions WHERE app_id = $1 AND conversation_id = $2",
        app_id.as_str(),
        &conversation,
    )
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query!(
        "DELETE FROM conversations.messages WHERE app_id = $1 AND conversation_id = $2",
        app_id.as_str(),
        &conversation,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
