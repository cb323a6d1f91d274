//! gRPC handlers: translate requests into validated calls on storage and rows into
//! protobuf replies. The rules themselves live in `rules` and `domain::validate`.

use bus::OutboxRow;
use domain::id::{AppId, AppUserId};
use proto::v1 as pb;
use proto::v1::users_client::UsersClient;
use serde_json::Value;
use sqlx::PgPool;
use telemetry::grpc::GrpcChannel;
use tonic::{Request, Response, Status};

use crate::storage::{
    self, ConversationRow, Cursor, IdempotencyKey, MessageRow, NewPost, Page, WhisperRow,
};
use crate::{rules, Result, PAGE_SIZE, POST_PAGE_SIZE};

/// How many times a merge is retried after a conflict with a concurrent writer.
const MERGE_RETRIES: u32 = 3;

/// The `Conversations` gRPC service.
pub(crate) struct ConversationsApi {
    pool: PgPool,
    /// The pool's connections for the reads of a page, kept between reads.
    reads: db::Kept,
    /// Writes messages, in batches under load.
    writer: storage::Writer,
    /// Gets the outbox rows of each commit, so events leave at once; `None` leaves them
    /// for a relay elsewhere.
    relay: Option<bus::RelayHandle>,
    /// Keeps the app user's `conversationStarted`; `None` marks nothing.
    users: Option<UsersClient<GrpcChannel>>,
}

impl ConversationsApi {
    pub(crate) fn new(
        pool: PgPool,
        reads: db::Kept,
        writer: storage::Writer,
        relay: Option<bus::RelayHandle>,
        users: Option<UsersClient<GrpcChannel>>,
    ) -> Self {
        ConversationsApi {
            pool,
            reads,
            writer,
            relay,
            users,
        }
    }

    /// Marks the app user's conversation started in the users service, which owns the
    /// flag, once a write committed the conversation: when this write created it, or when
    /// the caller's copy of the user still says not started (an earlier mark that failed
    /// is repaired by the user's next message). The message is committed either way, so a
    /// failure here is logged, not answered.
    async fn mark_started(&self, app_id: &AppId, app_user_id: &AppUserId) {
        let Some(users) = &self.users else {
            return;
        };
        let marked = users
            .clone()
            .mark_conversation_started(pb::AppUserRef {
                app_id: app_id.to_string(),
                app_user_id: app_user_id.to_string(),
            })
            .await;
        if let Err(status) = marked {
            tracing::warn!(
                %app_id,
                %app_user_id,
                error = %status.message(),
                "marking the conversation started failed; the user's next message marks it"
            );
        }
    }

    /// Hands the outbox rows `written` committed to the relay (only when it succeeded: a
    /// failed write committed nothing).
    fn relayed<T>(
        &self,
        written: Result<T>,
        mut outbox: Vec<OutboxRow>,
    ) -> Result<Response<T>, Status> {
        let answer = written?;
        self.hand_over(&mut outbox);
        Ok(Response::new(answer))
    }

    /// Hands committed outbox rows to the relay at once, leaving `outbox` empty; a write
    /// calls it before any slower step after its commit (marking a conversation started),
    /// so its events do not wait for that step.
    fn hand_over(&self, outbox: &mut Vec<OutboxRow>) {
        let rows = std::mem::take(outbox);
        if let (Some(relay), false) = (&self.relay, rows.is_empty()) {
            relay.hand_over(rows);
        }
    }
}

fn message_to_pb(row: MessageRow) -> pb::Message {
    pb::Message {
        id: row.id,
        author_id: row.author_id,
        role: row.role,
        name: row.name,
        email: row.email,
        avatar_url: row.avatar_url,
        text: row.text,
        media_url: row.media_url,
        media_type: row.media_type,
        metadata_json: row.metadata_json,
        actions_json: row.actions_json,
        received_ms: row.received_ms,
        source_type: row.source_type,
        source_id: row.source_id,
    }
}

fn conversation_to_pb(
    app_id: String,
    app_user_id: String,
    row: ConversationRow,
    page: Page,
) -> pb::Conversation {
    pb::Conversation {
        id: row.id,
        app_id,
        app_user_id,
        app_makers: row.app_makers,
        messages: page.messages.into_iter().map(message_to_pb).collect(),
        unread_count: row.unread_count,
        app_user_last_read_ms: row.app_user_last_read_ms.unwrap_or_default(),
        app_maker_last_read_ms: row.app_maker_last_read_ms.unwrap_or_default(),
        has_previous: page.has_previous,
        has_next: page.has_next,
    }
}

fn whisper_to_pb(app_id: &str, w: WhisperRow) -> pb::Whisper {
    pb::Whisper {
        id: w.id,
        app_id: app_id.to_owned(),
        event: w.event,
        text: w.text,
        actions_json: w.actions.to_string(),
        name: w.name,
        avatar_url: w.avatar_url,
        platform: w.platform,
        app_version: w.app_version,
        created_at_ms: w.created_at_ms,
    }
}

fn no_conversation(app_user_id: &str) -> domain::Error {
    domain::Error::not_found(format!(
        "conversation not found: app user {app_user_id} has no conversation yet"
    ))
}

fn whisper_not_found(id: &str) -> domain::Error {
    domain::Error::not_found(format!("whisper {id} not found"))
}

/// Parses actions sent as JSON text (empty: none) into a JSON value for checking.
fn actions_value(json: &str) -> Result<Value, domain::Error> {
    if json.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(json)
        .map_err(|_| domain::Error::bad_request("actions must be a JSON array"))
}

/// An empty optional string clears the field.
fn clearable(value: Option<String>, stored: Option<String>) -> Option<String> {
    match value {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v),
        None => stored,
    }
}

/// The answer of a post: the message and its conversation's latest page.
fn post_response(
    (app_id, app_user_id): (&str, &str),
    message: pb::Message,
    posted: storage::Posted,
    page: storage::Page,
) -> pb::PostMessageResponse {
    pb::PostMessageResponse {
        message: Some(message),
        conversation: Some(conversation_to_pb(
            app_id.to_owned(),
            app_user_id.to_owned(),
            posted.conversation,
            page,
        )),
        conversation_created: posted.created,
        replayed: false,
    }
}

/// The latest page of a conversation after `posted` was written: the newest of the messages
/// before it (read by the write, newest first) and `posted`, oldest first.
fn page_with(mut earlier: Vec<MessageRow>, posted: &MessageRow) -> Page {
    let keep = usize::try_from(POST_PAGE_SIZE - 1).unwrap_or(0);
    let has_previous = earlier.len() > keep;
    earlier.truncate(keep);
    earlier.reverse();
    earlier.push(posted.clone());
    // A message committed just before this one may carry a later time: order by time, this
    // one last among equals.
    earlier.sort_by_key(|m| m.received_ms);
    Page {
        messages: earlier,
        has_previous,
        has_next: false,
    }
}

impl ConversationsApi {
    async fn post(
        &self,
        req: pb::PostMessageRequest,
        outbox: &mut Vec<OutboxRow>,
    ) -> Result<pb::PostMessageResponse> {
        let (app, user) = rules::scope(&req.app_id, &req.app_user_id)?;
        let new = req
            .message
            .ok_or_else(|| domain::Error::bad_request("message is required"))?;
        let was_started = req
            .app_user
            .as_ref()
            .is_some_and(|u| u.conversation_started);
        let app_user = rules::event_app_user(&req.app_id, &req.app_user_id, req.app_user)?;
        let row = rules::new_message(&req.app_user_id, &app_user, new, domain::time::now_ms())?;
        let message = message_to_pb(row.clone());
        let wire_message = wire::model::Message::try_from(message.clone())?;
        let event = rules::message_event(&req.app_id, app_user, wire_message);
        let app_maker =
            (row.role == "appMaker" && !row.author_id.is_empty()).then(|| row.author_id.clone());
        let key = match req.idempotency_key.as_deref() {
            Some(key) => {
                rules::idempotency_key(key)?;
                Some(IdempotencyKey {
                    app_id: &app,
                    app_user_id: &user,
                    key,
                    request_hash: &req.request_hash,
                })
            }
            None => None,
        };
        let post = NewPost {
            app_id: app.clone(),
            app_user_id: user.clone(),
            new_conversation_id: domain::id::new_id(),
            app_maker,
            message: row,
            event,
            start_id: domain::id::new_id(),
            // Without a key the page comes with the write (see below); with one it is read
            // in the transaction.
            earlier: if key.is_none() { POST_PAGE_SIZE } else { 0 },
            trace: telemetry::propagation::current_context_map(),
        };
        let (post, response) = match &key {
            // The key, the message and its outbox row commit together: a retry either
            // finds the stored response or finds nothing and posts, never both. The whole
            // answer is stored with the message, so its page is read in the transaction.
            Some(key) => {
                let mut tx = self.pool.begin().await?;
                if let Some(stored) = storage::lock_idempotency_key(&mut tx, key).await? {
                    tracing::debug!(app_id = %req.app_id, "idempotent request replayed");
                    return rules::replay(stored, key.key, key.request_hash);
                }
                let (mut posted, page) =
                    storage::post_message(&mut tx, &post, POST_PAGE_SIZE).await?;
                let posted_outbox = std::mem::take(&mut posted.outbox);
                let response = post_response(
                    (&req.app_id, &req.app_user_id),
                    message.clone(),
                    posted,
                    page,
                );
                let bytes = prost::Message::encode_to_vec(&response);
                storage::store_idempotent_response(&mut tx, key, &post.message.id, &bytes).await?;
                tx.commit().await?;
                outbox.extend(posted_outbox);
                (post, response)
            }
            // Otherwise the write is one statement, committed by the message writer alone
            // or with the posts queued beside it (see `storage::Writer`), and the page
            // comes from the same statement, so the conversation's row lock is held for
            // the write alone.
            None => {
                let (post, mut posted) = self.writer.post(post).await?;
                outbox.append(&mut posted.outbox);
                let page = page_with(std::mem::take(&mut posted.earlier), &post.message);
                let response =
                    post_response((&req.app_id, &req.app_user_id), message, posted, page);
                (post, response)
            }
        };
        let conversation_id = response
            .conversation
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        tracing::debug!(
            app_id = %req.app_id,
            conversation_id = %conversation_id,
            message_id = %post.message.id,
            event_id = %post.event.id,
            created = response.conversation_created,
            "message stored"
        );
        if response.conversation_created || !was_started {
            self.hand_over(outbox);
            self.mark_started(&app, &user).await;
        }
        Ok(response)
    }

    async fn get(&self, req: pb::GetConversationRequest) -> Result<pb::Conversation> {
        let (app, user) = rules::scope(&req.app_id, &req.app_user_id)?;
        let cursor = match (req.before_ms, req.after_ms) {
            (Some(_), Some(_)) => {
                return Err(domain::Error::bad_request(
                    "before and after are mutually exclusive; send one of them",
                )
                .into())
            }
            (Some(before), None) => Cursor::Before(before),
            (None, Some(after)) => Cursor::After(after),
            (None, None) => Cursor::Latest,
        };
        let (row, page) = storage::get_conversation(&self.reads, &app, &user, cursor, PAGE_SIZE)
            .await?
            .ok_or_else(|| no_conversation(&req.app_user_id))?;
        Ok(conversation_to_pb(req.app_id, req.app_user_id, row, page))
    }

    async fn track(
        &self,
        req: pb::TrackEventRequest,
        outbox: &mut Vec<OutboxRow>,
    ) -> Result<pb::TrackEventResponse> {
        let (app, user) = rules::scope(&req.app_id, &req.app_user_id)?;
        rules::event_name(&req.name)?;
        let app_id = req.app_id.as_str();
        let devices = req
            .app_user
            .as_ref()
            .map(|u| u.devices.clone())
            .unwrap_or_default();
        let app_user = rules::event_app_user(app_id, &req.app_user_id, req.app_user.clone())?;
        let mut tx = self.pool.begin().await?;
        storage::insert_app_user_event(&mut tx, &app, &user, &req.name).await?;
        let whispers = storage::whispers_of_event(&mut *tx, &app, &req.name).await?;
        let mut updated = false;
        let mut created = false;
        let mut written = Vec::new();
        for whisper in whispers
            .iter()
            .filter(|w| rules::whisper_targets(w, &devices))
        {
            if !storage::claim_whisper(&mut tx, &app, &whisper.id, &user).await? {
                continue;
            }
            let row = rules::whisper_message(whisper, domain::time::now_ms())?;
            let message = wire::model::Message::try_from(message_to_pb(row.clone()))?;
            let event = rules::message_event(app_id, app_user.clone(), message);
            let posted = storage::post_in(
                &mut tx,
                &NewPost {
                    app_id: app.clone(),
                    app_user_id: user.clone(),
                    new_conversation_id: domain::id::new_id(),
                    app_maker: None,
                    message: row,
                    event,
                    start_id: domain::id::new_id(),
                    earlier: 0,
                    trace: telemetry::propagation::current_context_map(),
                },
            )
            .await?;
            tracing::debug!(app_id, whisper_id = %whisper.id, app_user_id = %req.app_user_id, "whisper fired");
            updated = true;
            created |= posted.created;
            written.extend(posted.outbox);
        }
        tx.commit().await?;
        outbox.extend(written);
        let was_started = req
            .app_user
            .as_ref()
            .is_some_and(|u| u.conversation_started);
        if created || (updated && !was_started) {
            self.hand_over(outbox);
            self.mark_started(&app, &user).await;
        }
        Ok(pb::TrackEventResponse {
            conversation_updated: updated,
            conversation_created: created,
        })
    }

    async fn postback(
        &self,
        req: pb::PostbackRequest,
        outbox: &mut Vec<OutboxRow>,
    ) -> Result<pb::PostbackResponse> {
        let (app, user) = rules::scope(&req.app_id, &req.app_user_id)?;
        if req.action_id.trim().is_empty() {
            return Err(domain::Error::bad_request("actionId is required").into());
        }
        domain::validate::short_field("actionId", &req.action_id)?;
        let not_found = || {
            domain::Error::not_found(format!(
                "action {} not found in this app user's conversation",
                req.action_id
            ))
        };
        let message = storage::message_with_action(&self.pool, &app, &user, &req.action_id)
            .await?
            .ok_or_else(not_found)?;
        let action = rules::find_action(&message, &req.action_id)?.ok_or_else(not_found)?;
        rules::postback_action(&action)?;
        let app_user = rules::event_app_user(&req.app_id, &req.app_user_id, req.app_user)?;
        let message = message_to_pb(message);
        let event = rules::postback_event(
            &req.app_id,
            app_user,
            message.clone(),
            action.clone(),
            domain::time::now_ms(),
        )?;
        outbox.push(storage::publish(&self.pool, &event).await?);
        tracing::debug!(app_id = %req.app_id, action_id = %req.action_id, event_id = %event.id, "postback recorded");
        Ok(pb::PostbackResponse {
            message: Some(message),
            action_json: action.to_string(),
        })
    }

    async fn mark_read(
        &self,
        req: pb::MarkReadRequest,
        outbox: &mut Vec<OutboxRow>,
    ) -> Result<pb::Conversation> {
        let (app, user) = rules::scope(&req.app_id, &req.app_user_id)?;
        let now = domain::time::now_ms();
        let app_user = rules::event_app_user(&req.app_id, &req.app_user_id, req.app_user)?;
        let event = rules::read_event(&req.app_id, app_user, now);
        let (row, page, written) =
            storage::mark_read(&self.pool, &app, &user, now, &event, PAGE_SIZE)
                .await?
                .ok_or_else(|| no_conversation(&req.app_user_id))?;
        outbox.push(written);
        Ok(conversation_to_pb(req.app_id, req.app_user_id, row, page))
    }

    async fn merge(
        &self,
        req: pb::MergeConversationsRequest,
        outbox: &mut Vec<OutboxRow>,
    ) -> Result<pb::MergeConversationsResponse> {
        let into = req
            .into
            .ok_or_else(|| domain::Error::bad_request("into is required"))?;
        let (app, into_user) = rules::scope(&req.app_id, &into.id)?;
        let (_, from_user) = rules::scope(&req.app_id, &req.from_app_user_id)?;
        if into.id == req.from_app_user_id {
            return Err(
                domain::Error::bad_request("an app user cannot be merged into itself").into(),
            );
        }
        let into_id = into.id.clone();
        let survivor = rules::event_app_user(&req.app_id, &into_id, Some(into))?;
        let mut attempt = 0;
        loop {
            let event = rules::merge_event(
                &req.app_id,
                survivor.clone(),
                &req.from_app_user_id,
                domain::time::now_ms(),
            );
            match storage::merge(&self.pool, &app, &from_user, &into_user, &event).await {
                Ok((merged, has_conversation)) => {
                    let now = matches!(merged, storage::Merged::Now(_));
                    if let storage::Merged::Now(written) = merged {
                        outbox.push(written);
                    }
                    tracing::info!(app_id = %req.app_id, from = %req.from_app_user_id, into = %into_id, merged_now = now, "conversations merged");
                    return Ok(pb::MergeConversationsResponse { has_conversation });
                }
                // A message that created the survivor's conversation meanwhile: run again,
                // and the merge moves messages into that conversation instead.
                Err(e) if attempt < MERGE_RETRIES && db::is_sqlstate(&e, db::UNIQUE_VIOLATION) => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %e, "merge conflicted with a concurrent writer; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn create_whisper(&self, req: pb::Whisper) -> Result<pb::Whisper> {
        let app = rules::app_scope(&req.app_id)?;
        let row = rules::whisper(WhisperRow {
            id: domain::id::new_id(),
            event: req.event,
            text: req.text,
            actions: actions_value(&req.actions_json)?,
            name: req.name.filter(|s| !s.is_empty()),
            avatar_url: req.avatar_url.filter(|s| !s.is_empty()),
            platform: req.platform.filter(|s| !s.is_empty()),
            app_version: req.app_version.filter(|s| !s.is_empty()),
            created_at_ms: domain::time::now_ms(),
        })?;
        storage::insert_whisper(&self.pool, &app, &row).await?;
        tracing::info!(app_id = %req.app_id, whisper_id = %row.id, "whisper created");
        Ok(whisper_to_pb(&req.app_id, row))
    }

    async fn update_whisper(&self, req: pb::UpdateWhisperRequest) -> Result<pb::Whisper> {
        let app = rules::app_scope(&req.app_id)?;
        let stored = storage::get_whisper(&self.pool, &app, &req.whisper_id)
            .await?
            .ok_or_else(|| whisper_not_found(&req.whisper_id))?;
        let actions = match &req.actions_json {
            Some(json) => actions_value(json)?,
            None => stored.actions.clone(),
        };
        let row = rules::whisper(WhisperRow {
            id: stored.id.clone(),
            event: req.event.unwrap_or(stored.event),
            text: req.text.unwrap_or(stored.text),
            actions,
            name: clearable(req.name, stored.name),
            avatar_url: clearable(req.avatar_url, stored.avatar_url),
            platform: clearable(req.platform, stored.platform),
            app_version: clearable(req.app_version, stored.app_version),
            created_at_ms: stored.created_at_ms,
        })?;
        if !storage::update_whisper(&self.pool, &app, &row).await? {
            return Err(whisper_not_found(&req.whisper_id).into());
        }
        Ok(whisper_to_pb(&req.app_id, row))
    }
}

#[tonic::async_trait]
impl pb::conversations_server::Conversations for ConversationsApi {
    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        let mut outbox = Vec::new();
        let written = self.post(request.into_inner(), &mut outbox).await;
        self.relayed(written, outbox)
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        Ok(Response::new(self.get(request.into_inner()).await?))
    }

    async fn track_event(
        &self,
        request: Request<pb::TrackEventRequest>,
    ) -> Result<Response<pb::TrackEventResponse>, Status> {
        let mut outbox = Vec::new();
        let written = self.track(request.into_inner(), &mut outbox).await;
        self.relayed(written, outbox)
    }

    async fn postback(
        &self,
        request: Request<pb::PostbackRequest>,
    ) -> Result<Response<pb::PostbackResponse>, Status> {
        let mut outbox = Vec::new();
        let written = self.postback(request.into_inner(), &mut outbox).await;
        self.relayed(written, outbox)
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let mut outbox = Vec::new();
        let written = self.mark_read(request.into_inner(), &mut outbox).await;
        self.relayed(written, outbox)
    }

    async fn merge_conversations(
        &self,
        request: Request<pb::MergeConversationsRequest>,
    ) -> Result<Response<pb::MergeConversationsResponse>, Status> {
        let mut outbox = Vec::new();
        let written = self.merge(request.into_inner(), &mut outbox).await;
        self.relayed(written, outbox)
    }

    async fn delete_messages(
        &self,
        request: Request<pb::DeleteMessagesRequest>,
    ) -> Result<Response<pb::DeleteMessagesResponse>, Status> {
        let req = request.into_inner();
        let (app, user) =
            rules::scope(&req.app_id, &req.app_user_id).map_err(crate::Error::from)?;
        let mut tx = self.pool.begin().await.map_err(crate::Error::from)?;
        let deleted = storage::delete_messages(&mut tx, &app, &user)
            .await
            .map_err(crate::Error::from)?;
        tx.commit().await.map_err(crate::Error::from)?;
        tracing::info!(app_id = %req.app_id, app_user_id = %req.app_user_id, deleted, "messages deleted");
        Ok(Response::new(pb::DeleteMessagesResponse { deleted }))
    }

    async fn create_whisper(
        &self,
        request: Request<pb::Whisper>,
    ) -> Result<Response<pb::Whisper>, Status> {
        Ok(Response::new(
            self.create_whisper(request.into_inner()).await?,
        ))
    }

    async fn list_whispers(
        &self,
        request: Request<pb::ListWhispersRequest>,
    ) -> Result<Response<pb::ListWhispersResponse>, Status> {
        let app_id = request.into_inner().app_id;
        let app = rules::app_scope(&app_id).map_err(crate::Error::from)?;
        let rows = storage::list_whispers(&self.pool, &app)
            .await
            .map_err(crate::Error::from)?;
        Ok(Response::new(pb::ListWhispersResponse {
            whispers: rows
                .into_iter()
                .map(|w| whisper_to_pb(&app_id, w))
                .collect(),
        }))
    }

    async fn get_whisper(
        &self,
        request: Request<pb::WhisperRef>,
    ) -> Result<Response<pb::Whisper>, Status> {
        let req = request.into_inner();
        let app = rules::app_scope(&req.app_id).map_err(crate::Error::from)?;
        let row = storage::get_whisper(&self.pool, &app, &req.whisper_id)
            .await
            .map_err(crate::Error::from)?
            .ok_or_else(|| crate::Error::from(whisper_not_found(&req.whisper_id)))?;
        Ok(Response::new(whisper_to_pb(&req.app_id, row)))
    }

    async fn update_whisper(
        &self,
        request: Request<pb::UpdateWhisperRequest>,
    ) -> Result<Response<pb::Whisper>, Status> {
        Ok(Response::new(
            self.update_whisper(request.into_inner()).await?,
        ))
    }

    async fn delete_whisper(
        &self,
        request: Request<pb::WhisperRef>,
    ) -> Result<Response<pb::DeleteWhisperResponse>, Status> {
        let req = request.into_inner();
        let app = rules::app_scope(&req.app_id).map_err(crate::Error::from)?;
        let deleted = storage::delete_whisper(&self.pool, &app, &req.whisper_id)
            .await
            .map_err(crate::Error::from)?;
        if !deleted {
            return Err(crate::Error::from(whisper_not_found(&req.whisper_id)).into());
        }
        tracing::info!(app_id = %req.app_id, whisper_id = %req.whisper_id, "whisper deleted");
        Ok(Response::new(pb::DeleteWhisperResponse {}))
    }
}
