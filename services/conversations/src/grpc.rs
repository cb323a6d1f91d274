//! gRPC handlers: translate requests into validated calls on storage and rows into
//! protobuf replies. The rules themselves live in `rules` and `domain::validate`.

use proto::v1 as pb;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::storage::{self, ConversationRow, MessageRow, NewPost};
use crate::{rules, Result, PAGE_SIZE};

/// The `Conversations` gRPC service.
pub(crate) struct ConversationsApi {
    pool: PgPool,
}

impl ConversationsApi {
    pub(crate) fn new(pool: PgPool) -> Self {
        ConversationsApi { pool }
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
    }
}

fn conversation_to_pb(
    app_id: String,
    app_user_id: String,
    row: ConversationRow,
    messages: Vec<MessageRow>,
) -> pb::Conversation {
    pb::Conversation {
        id: row.id,
        app_id,
        app_user_id,
        app_makers: row.app_makers,
        messages: messages.into_iter().map(message_to_pb).collect(),
    }
}

impl ConversationsApi {
    async fn post(&self, req: pb::PostMessageRequest) -> Result<pb::PostMessageResponse> {
        rules::scope(&req.app_id, &req.app_user_id)?;
        let new = req
            .message
            .ok_or_else(|| domain::Error::bad_request("message is required"))?;
        let app_user = rules::event_app_user(&req.app_id, &req.app_user_id, req.app_user);
        let row = rules::new_message(&req.app_user_id, &app_user, new, domain::time::now_ms())?;
        let message = message_to_pb(row.clone());
        let event = rules::message_event(&req.app_id, app_user, message.clone());
        let app_maker =
            (row.role == "appMaker" && !row.author_id.is_empty()).then_some(row.author_id.as_str());
        let new_conversation_id = domain::id::new_id();
        let posted = storage::post_message(
            &self.pool,
            &NewPost {
                app_id: &req.app_id,
                app_user_id: &req.app_user_id,
                new_conversation_id: &new_conversation_id,
                app_maker,
                message: &row,
                event: &event,
            },
            PAGE_SIZE,
        )
        .await?;
        tracing::debug!(
            app_id = %req.app_id,
            conversation_id = %posted.conversation.id,
            message_id = %message.id,
            event_id = %event.id,
            created = posted.created,
            "message stored"
        );
        Ok(pb::PostMessageResponse {
            message: Some(message),
            conversation: Some(conversation_to_pb(
                req.app_id,
                req.app_user_id,
                posted.conversation,
                posted.messages,
            )),
            conversation_created: posted.created,
        })
    }

    async fn get(&self, req: pb::GetConversationRequest) -> Result<pb::Conversation> {
        rules::scope(&req.app_id, &req.app_user_id)?;
        let (row, messages) =
            storage::get_conversation(&self.pool, &req.app_id, &req.app_user_id, PAGE_SIZE)
                .await?
                .ok_or_else(|| {
                    domain::Error::not_found(format!(
                        "conversation not found: app user {} has no conversation yet",
                        req.app_user_id
                    ))
                })?;
        Ok(conversation_to_pb(
            req.app_id,
            req.app_user_id,
            row,
            messages,
        ))
    }

    async fn track(&self, req: pb::TrackEventRequest) -> Result<pb::TrackEventResponse> {
        rules::scope(&req.app_id, &req.app_user_id)?;
        rules::event_name(&req.name)?;
        storage::insert_event(&self.pool, &req.app_id, &req.app_user_id, &req.name).await?;
        // Whispers (app messages triggered by events) come in a later issue; until then an
        // event never adds to the conversation.
        Ok(pb::TrackEventResponse {
            conversation_updated: false,
        })
    }
}

#[tonic::async_trait]
impl pb::conversations_server::Conversations for ConversationsApi {
    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        Ok(Response::new(self.post(request.into_inner()).await?))
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
        Ok(Response::new(self.track(request.into_inner()).await?))
    }
}
