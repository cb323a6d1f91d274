//! `/v1/appusers/{id}/conversation`: reading the conversation and posting messages, as JSON
//! or as an uploaded image.

use auth::Principal;
use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use domain::{Error, ErrorCode};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wire::model::{Conversation, Message};

use super::appusers::{load_cached_user, load_user};
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::idempotency;
use crate::openapi::{AuthErrors, BodyErrors, ConflictErrors, PathErrors};
use crate::AppState;

/// A page of a conversation, with the URLs of the pages around it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConversationPage {
    conversation: Conversation,
    /// The page of older messages, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    /// The page of newer messages, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The answer of posting a message: the message and its conversation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageAnswer {
    message: Option<Message>,
    conversation: Option<Conversation>,
}

/// Reads a `received`-style time (float seconds) from the query parameter `field`.
fn time_param(query: &HashMap<String, String>, field: &str) -> ApiResult<Option<i64>> {
    let Some(raw) = query.get(field) else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(domain::time::received_to_ms(secs))),
        _ => Err(Error::bad_request(format!(
            "{field} must be a time in seconds since the epoch, like a message's received \
             (1444348338.704); got {raw:?}"
        ))
        .into()),
    }
}

/// `GET .../conversation/messages`: the same page as `GET .../conversation`.
#[utoipa::path(
    get, path = "/{id}/conversation/messages", tag = "conversation", operation_id = "getMessages",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("before" = Option<f64>, Query, description = "Messages received before this time (float seconds), exclusive"),
        ("after" = Option<f64>, Query, description = "Messages received after this time (float seconds), exclusive"),
    ),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "A page of the conversation", body = ConversationPage), PathErrors, AuthErrors)
)]
pub(crate) async fn get_messages(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<ConversationPage>> {
    get(state, caller, id, query).await
}

/// `GET .../conversation` (and `GET .../conversation/messages`): one page of the
/// conversation, the latest 100 messages unless `?before=` or `?after=` (exclusive, float
/// seconds) names another. `previous` / `next` are the URLs of the adjacent pages, present
/// when there are more messages that way. 404 before the first message.
#[utoipa::path(
    get, path = "/{id}/conversation", tag = "conversation", operation_id = "getConversation",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("before" = Option<f64>, Query, description = "Messages received before this time (float seconds), exclusive"),
        ("after" = Option<f64>, Query, description = "Messages received after this time (float seconds), exclusive"),
    ),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "A page of the conversation", body = ConversationPage), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<ConversationPage>> {
    let Query(query) =
        query.map_err(|e| Error::bad_request(format!("malformed query string: {e}")))?;
    let before_ms = time_param(&query, "before")?;
    let after_ms = time_param(&query, "after")?;
    if before_ms.is_some() && after_ms.is_some() {
        return Err(Error::bad_request(
            "before and after are mutually exclusive; send one of them",
        )
        .into());
    }
    let user = load_cached_user(&state, &caller, id).await?;
    let conversation = state
        .clients
        .conversations
        .clone()
        .get_conversation(pb::GetConversationRequest {
            app_id: user.app_id,
            app_user_id: user.id.clone(),
            before_ms,
            after_ms,
        })
        .await?
        .into_inner();
    let base = format!(
        "{}/v1/appusers/{}/conversation",
        state.config.public_url, user.id
    );
    let first = conversation.messages.first().map(|m| m.received_ms);
    let last = conversation.messages.last().map(|m| m.received_ms);
    // An empty page still links onwards: from its own cursor, one millisecond over.
    let previous = conversation.has_previous.then(|| {
        let at = first
            .or(after_ms.map(|a| a.saturating_add(1)))
            .unwrap_or_default();
        format!("{base}?before={}", domain::time::received(at))
    });
    let next = conversation.has_next.then(|| {
        let at = last
            .or(before_ms.map(|b| b.saturating_sub(1)))
            .unwrap_or_default();
        format!("{base}?after={}", domain::time::received(at))
    });
    Ok(Json(ConversationPage {
        conversation: Conversation::try_from(conversation)?,
        previous,
        next,
    }))
}

/// A page of an app user's messages (`GET /v1/appusers/{id}/messages`, smooch-core ≥ 2.0).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessagesPage {
    /// Messages, oldest first.
    messages: Vec<Message>,
    /// The page of older messages, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    /// The page of newer messages, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /v1/appusers/{id}/messages`: the same page as `GET .../conversation`, as the later
/// clients read it: `{messages, previous, next}`.
#[utoipa::path(
    get, path = "/{id}/messages", tag = "conversation", operation_id = "listMessages",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("before" = Option<f64>, Query, description = "Messages received before this time (float seconds), exclusive"),
        ("after" = Option<f64>, Query, description = "Messages received after this time (float seconds), exclusive"),
    ),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "A page of the app user's messages", body = MessagesPage), PathErrors, AuthErrors)
)]
pub(crate) async fn list_messages(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<MessagesPage>> {
    let Json(page) = get(state, caller, id, query).await?;
    // The links page through this path too.
    let relink = |url: String| url.replacen("/conversation?", "/messages?", 1);
    Ok(Json(MessagesPage {
        messages: page.conversation.messages,
        previous: page.previous.map(relink),
        next: page.next.map(relink),
    }))
}

/// `POST /v1/appusers/{id}/messages` (smooch-core ≥ 2.0): posts a message, as
/// `POST .../conversation/messages` does.
#[utoipa::path(
    post, path = "/{id}/messages", tag = "conversation", operation_id = "postUserMessage",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers the original response for 24 h"),
    ),
    request_body = MessageBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 201, description = "The message and its conversation", body = MessageAnswer), BodyErrors, PathErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn post_user_message(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    body: JsonBody<MessageBody>,
) -> ApiResult<Response> {
    post_message(state, caller, id, headers, body).await
}

/// `DELETE /v1/appusers/{id}/messages`: deletes every message of the user's conversation
/// (the conversation stays, empty). App scope only.
#[utoipa::path(
    delete, path = "/{id}/messages", tag = "conversation", operation_id = "deleteMessages",
    params(("id" = String, Path, description = "The app user's `_id` or `userId`")),
    security(("jwt" = [])),
    responses((status = 200, description = "The messages are gone", body = super::apps::Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<super::apps::Empty>> {
    caller.require_app_scope("deleting an app user's messages")?;
    let user = load_user(&state, &caller, id).await?;
    state
        .clients
        .conversations
        .clone()
        .delete_messages(pb::DeleteMessagesRequest {
            app_id: user.app_id,
            app_user_id: user.id,
        })
        .await?;
    Ok(Json(super::apps::Empty::default()))
}

/// `POST /v1/appusers/{id}/images` (smooch-core ≥ 2.0): uploads an image message, as
/// `POST .../conversation/images` does.
#[utoipa::path(
    post, path = "/{id}/images", tag = "conversation", operation_id = "postUserImage",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers the original response for 24 h"),
    ),
    request_body(content = ImageForm, content_type = "multipart/form-data"),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 201, description = "The image message and its conversation", body = MessageAnswer), BodyErrors, PathErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn post_user_image(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    post_image(state, caller, id, headers, multipart).await
}

/// The fields of a message, from JSON or from form fields.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageBody {
    /// The text, at most 4,096 characters; may be left out when `mediaUrl` is given.
    #[schema(max_length = 4096)]
    text: Option<String>,
    /// `appUser`, or `appMaker` (app-scope JWTs only).
    #[schema(required = true, example = "appUser")]
    role: Option<String>,
    /// Display name of the author.
    name: Option<String>,
    /// Email of the author.
    email: Option<String>,
    /// Avatar of the author.
    avatar_url: Option<String>,
    /// URL of an image.
    media_url: Option<String>,
    /// Media type of the image.
    media_type: Option<String>,
    /// Flat custom properties: strings, numbers and booleans, at most 4 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Action buttons (appMaker messages only).
    #[schema(value_type = Option<Vec<Object>>)]
    actions: Option<Value>,
    /// What sends the message, `{type, id?}`: the platform or channel (`web`, `ios`, ...)
    /// and the sending device. `{"type": "api"}` when left out.
    source: Option<SourceBody>,
    /// The sending device, as the Web Messenger 3.x names it instead of `source`: when
    /// `source` is left out and this is one of the user's devices, the source is that
    /// device's platform and id.
    device_id: Option<String>,
}

/// The sender of a message.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct SourceBody {
    /// The platform or channel.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The sending device's id.
    id: Option<String>,
}

/// The form of an image upload.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads it field by field
pub(crate) struct ImageForm {
    /// The image file (at most 10 MB unless configured otherwise).
    #[schema(value_type = String, format = Binary)]
    source: Vec<u8>,
    /// `appUser`, or `appMaker` (app-scope JWTs only).
    #[schema(example = "appUser")]
    role: String,
    /// Display name of the author.
    name: Option<String>,
    /// Email of the author.
    email: Option<String>,
    /// Avatar of the author.
    #[schema(rename = "avatarUrl")]
    avatar_url: Option<String>,
    /// Flat custom properties, as JSON text.
    metadata: Option<String>,
}

/// A keyed request's `Idempotency-Key` and the fingerprint of the request.
type Keyed = Option<(String, String)>;

/// A message body as bytes, for its fingerprint.
fn body_bytes(body: &MessageBody) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| {
        tracing::error!(error = %e, "message body does not serialize");
        Error::internal().into()
    })
}

/// Posts a message to the app user's conversation (starting it if needed). A retried
/// request with the same `Idempotency-Key` answers the original response.
#[utoipa::path(
    post, path = "/{id}/conversation/messages", tag = "conversation", operation_id = "postMessage",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers the original response for 24 h"),
    ),
    request_body = MessageBody,
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 201, description = "The message and its conversation", body = MessageAnswer), BodyErrors, PathErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MessageBody>,
) -> ApiResult<Response> {
    let keyed = match idempotency::key(&headers)? {
        Some(key) => Some((
            key,
            idempotency::fingerprint([b"message".as_slice(), &body_bytes(&body)?]),
        )),
        None => None,
    };
    let role = check_role(&caller, body.role.as_deref())?;
    let user = load_cached_user(&state, &caller, id).await?;
    post(&state, &caller, user, role, body, keyed).await
}

/// Checks the role is given and allowed to the caller: only app-scope JWTs may post as the
/// app maker. The conversations service checks the rest of the message.
fn check_role(caller: &Caller, role: Option<&str>) -> ApiResult<String> {
    let role = role.ok_or_else(|| Error::bad_request("role is required: appUser or appMaker"))?;
    if role == "appMaker" {
        caller.require_app_scope("posting a message with role appMaker")?;
    }
    Ok(role.to_owned())
}

/// JSON a message carries (`metadata`, `actions`) as text for the conversations service,
/// which checks it; null (and the reference's `[]` for no metadata) is none.
fn json_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::Null) | None => String::new(),
        Some(Value::Array(items)) if items.is_empty() => String::new(),
        Some(value) => value.to_string(),
    }
}

/// Posts `body` to `user`'s conversation in one call: the conversations service checks the
/// message, stores it with its events, and marks the conversation started.
async fn post(
    state: &AppState,
    caller: &Caller,
    user: pb::AppUser,
    role: String,
    body: MessageBody,
    keyed: Keyed,
) -> ApiResult<Response> {
    let author_id = match (&caller.0, role.as_str()) {
        (Principal::App { key_id, .. }, "appMaker") => key_id.clone(),
        // The conversations service makes an app user the author of their own messages.
        _ => String::new(),
    };
    let (source_type, source_id) = message_source(&user, body.source, body.device_id);
    let (idempotency_key, request_hash) = keyed.unzip();
    let response = state
        .clients
        .post_message(pb::PostMessageRequest {
            app_id: user.app_id.clone(),
            app_user_id: user.id.clone(),
            message: Some(pb::NewMessage {
                role,
                text: body.text.unwrap_or_default(),
                name: body.name,
                email: body.email,
                avatar_url: body.avatar_url,
                media_url: body.media_url,
                media_type: body.media_type,
                metadata_json: json_text(body.metadata.as_ref()),
                author_id,
                actions_json: json_text(body.actions.as_ref()),
                source_type,
                source_id,
            }),
            app_user: Some(user),
            idempotency_key,
            request_hash: request_hash.unwrap_or_default(),
        })
        .await?;
    let replayed = response.replayed;
    let answer = MessageAnswer {
        message: response.message.map(Message::try_from).transpose()?,
        conversation: response
            .conversation
            .map(Conversation::try_from)
            .transpose()?,
    };
    let mut headers = HeaderMap::new();
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((StatusCode::CREATED, headers, Json(answer)).into_response())
}

/// A message's `(source.type, source.id)`: as the body names it, else the user's device the
/// body's `deviceId` names (the Web Messenger 3.x skips the echo of its own messages by
/// that id), else none (the conversations service answers `api`).
fn message_source(
    user: &pb::AppUser,
    source: Option<SourceBody>,
    device_id: Option<String>,
) -> (String, Option<String>) {
    if let Some(source) = source {
        return (source.kind.unwrap_or_default(), source.id);
    }
    device_id
        .and_then(|id| user.devices.iter().find(|d| d.id == id))
        .map_or_else(Default::default, |d| {
            (d.platform.clone(), Some(d.id.clone()))
        })
}

/// Uploads an image and posts it as a message. A retried request with the same
/// `Idempotency-Key` answers the original response.
#[utoipa::path(
    post, path = "/{id}/conversation/images", tag = "conversation", operation_id = "postImage",
    params(
        ("id" = String, Path, description = "The app user's `_id` or `userId`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers the original response for 24 h"),
    ),
    request_body(content = ImageForm, content_type = "multipart/form-data"),
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 201, description = "The image message and its conversation", body = MessageAnswer), BodyErrors, PathErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn post_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let multipart = multipart.map_err(|e| {
        Error::bad_request(format!(
            "images are uploaded as multipart/form-data with the file in `source`: {e}"
        ))
    })?;
    let (mut body, source) = read_image_form(multipart, state.config.max_image_bytes).await?;
    let role = check_role(&caller, body.role.as_deref())?;
    let (bytes, filename, declared_type) =
        source.ok_or_else(|| Error::bad_request("the image file is required in field `source`"))?;
    if bytes.is_empty() {
        return Err(Error::bad_request("the `source` file is empty").into());
    }
    let keyed = match idempotency::key(&headers)? {
        Some(key) => Some((
            key,
            idempotency::fingerprint([
                b"image".as_slice(),
                &body_bytes(&body)?,
                filename.as_bytes(),
                declared_type.as_bytes(),
                &bytes,
            ]),
        )),
        None => None,
    };
    let user = load_user(&state, &caller, id).await?;
    let chunks: Vec<pb::UploadChunk> =
        std::iter::once(pb::upload_chunk::Part::Header(pb::UploadHeader {
            app_id: user.app_id.clone(),
            filename,
            declared_type,
        }))
        .chain(
            bytes
                .chunks(64 * 1024)
                .map(|c| pb::upload_chunk::Part::Data(c.to_vec())),
        )
        .map(|part| pb::UploadChunk { part: Some(part) })
        .collect();
    let object = state
        .clients
        .media
        .clone()
        .upload(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let url = format!(
        "{}/media/{}/{}",
        state.config.public_url, object.app_id, object.key
    );
    // An image message's text is its URL, as the hosted API answered.
    body.text = Some(url.clone());
    body.media_url = Some(url);
    body.media_type = Some(object.media_type);
    post(&state, &caller, user, role, body, keyed).await
}

/// The uploaded file: its bytes, file name and declared content type.
type Source = (Vec<u8>, String, String);

/// Reads an image upload's form: the message fields and the `source` file (at most `limit`
/// bytes). Unknown fields are skipped; malformed forms are 400s, large files 413s.
async fn read_image_form(
    mut multipart: Multipart,
    limit: usize,
) -> ApiResult<(MessageBody, Option<Source>)> {
    let mut body = MessageBody::default();
    let mut source: Option<Source> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "source" {
            let filename = field.file_name().unwrap_or_default().replace('\0', "");
            let declared = field.content_type().unwrap_or_default().to_owned();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > limit {
                    return Err(too_large(limit).into());
                }
                bytes.extend_from_slice(&chunk);
            }
            source = Some((bytes, filename, declared));
            continue;
        }
        let value = field.text().await.map_err(multipart_error)?;
        if value.contains('\0') {
            return Err(Error::bad_request(format!(
                "form field `{name}` must not contain NUL characters"
            ))
            .into());
        }
        match name.as_str() {
            "role" => body.role = Some(value),
            "name" => body.name = Some(value),
            "email" => body.email = Some(value),
            "avatarUrl" => body.avatar_url = Some(value),
            "metadata" => {
                body.metadata = Some(serde_json::from_str(&value).map_err(|_| {
                    Error::bad_request("metadata must be a JSON object in its form field")
                })?)
            }
            _ => {}
        }
    }
    Ok((body, source))
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorCode::PayloadTooLarge,
        format!("the image is larger than {} MB", limit / (1024 * 1024)),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(ErrorCode::PayloadTooLarge, "the upload is too large")
    } else {
        Error::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::{FromRequest as _, Request};
    use proptest::prelude::*;

    use super::*;

    const BOUNDARY: &str = "XyZzYboundary";

    async fn parse(body: Vec<u8>, limit: usize) -> ApiResult<(MessageBody, Option<Source>)> {
        let request = Request::builder()
            .method("POST")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap();
        let multipart = Multipart::from_request(request, &()).await.unwrap();
        read_image_form(multipart, limit).await
    }

    fn part(name: &str, filename: Option<&str>, content: &[u8]) -> Vec<u8> {
        let mut out = format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            out.push_str(&format!("; filename=\"{f}\"\r\ncontent-type: image/png"));
        }
        out.push_str("\r\n\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_well_formed_form_is_read() {
        let mut body = part("role", None, b"appUser");
        body.extend(part("source", Some("a.png"), b"\x89PNG"));
        body.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
        let (fields, source) = run(parse(body, 1024)).unwrap();
        assert_eq!(fields.role.as_deref(), Some("appUser"));
        let (bytes, filename, declared) = source.unwrap();
        assert_eq!(
            (bytes.as_slice(), filename.as_str(), declared.as_str()),
            (b"\x89PNG".as_slice(), "a.png", "image/png")
        );
        let mut big = part("source", Some("a.png"), &[0; 2048]);
        big.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
        assert_eq!(
            run(parse(big, 1024)).unwrap_err().0.code,
            ErrorCode::PayloadTooLarge
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        /// Any body under a multipart content type is a form or a 400/413, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
            if let Err(e) = run(parse(body, 1024)) {
                prop_assert!(matches!(e.0.code, ErrorCode::BadRequest | ErrorCode::PayloadTooLarge));
            }
        }

        /// Forms made of plausible parts, then cut or corrupted at random.
        #[test]
        fn mangled_forms_never_panic(
            parts in prop::collection::vec(
                ("(role|name|email|avatarUrl|metadata|source|x)", prop::option::of("[a-z.\\\\/\"]{0,12}"), prop::collection::vec(any::<u8>(), 0..64)),
                0..5,
            ),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut body = Vec::new();
            for (name, filename, content) in &parts {
                body.extend(part(name, filename.as_deref(), content));
            }
            body.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
            let i = flip.index(body.len());
            body[i] = byte;
            body.truncate(cut.index(body.len() + 1));
            if let Err(e) = run(parse(body, 1024)) {
                prop_assert!(matches!(e.0.code, ErrorCode::BadRequest | ErrorCode::PayloadTooLarge));
            }
        }
    }
}
