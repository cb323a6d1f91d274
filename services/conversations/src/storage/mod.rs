//! SQL of the conversations schema, one module per aggregate. Every statement is scoped by
//! app id.

mod conversations;
mod idempotency;
mod messages;
mod outbox;
mod whispers;
mod writer;

use sqlx::PgConnection;

pub(crate) use conversations::{get_conversation, insert_app_user_event, mark_read, merge, Merged};
pub(crate) use idempotency::{
    delete_expired_idempotency_keys, lock_idempotency_key, store_idempotent_response,
    IdempotencyKey, StoredResponse,
};
pub(crate) use messages::{
    delete_messages, message_with_action, post_in, post_message, Cursor, NewPost, Page, Posted,
};
pub(crate) use outbox::{publish, Outbox};
pub(crate) use whispers::{
    claim_whisper, delete_whisper, get_whisper, insert_whisper, list_whispers, update_whisper,
    whispers_of_event, WhisperRow,
};
pub(crate) use writer::Writer;

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
    pub(crate) source_type: String,
    pub(crate) source_id: Option<String>,
}

/// A stored conversation (without its messages).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ConversationRow {
    pub(crate) id: String,
    pub(crate) app_makers: Vec<String>,
    pub(crate) unread_count: i64,
    pub(crate) app_user_last_read_ms: Option<i64>,
    pub(crate) app_maker_last_read_ms: Option<i64>,
}

/// Takes a transaction-scoped advisory lock on `key` (namespaced to this service).
async fn lock(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('smooch.conversations'), hashtext($1))",
        key,
    )
    .execute(conn)
    .await?;
    Ok(())
}
