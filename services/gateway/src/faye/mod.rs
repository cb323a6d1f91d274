//! Real time: a Bayeux (Faye) endpoint at `/faye`, as the `faye` 1.1 client and the Smooch
//! Web Messenger speak it (long-polling, and callback-polling for JSONP), with the v1
//! channels `/v1/users/{appUserId}`, `/v1/conversations/{conversationId}` and
//! `/v1/conversations/{conversationId}/activity`. Subscribing needs
//! `ext: {appUserId, appToken}` or `ext: {appUserId, jwt}`; clients cannot publish.
//!
//! Events reach every replica through its own exclusive queue bound to the events exchange
//! ([`fanout`]), and each replica delivers them only to its own clients ([`hub`]).

pub mod fanout;
pub mod hub;
mod ws;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use proto::v1 as pb;
use serde_json::{json, Map, Value};

use crate::caller::Caller;
use crate::AppState;
pub use hub::{Hub, Limits};
use hub::{Kind, SubscribeError, Target};

/// The protocol version answered in handshakes.
const BAYEUX_VERSION: &str = "1.0";

/// Where the gateway serves its real-time demo page.
pub(crate) const DEMO_PATH: &str = "/web";

/// `GET /web`: a page where an operator enters an app token and chats as a user, receiving
/// app-maker replies and typing live over `/faye`.
pub(crate) async fn demo_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../../assets/web.html"))
}

/// Parses a v1 channel name into its kind and id.
pub(crate) fn parse_channel(channel: &str) -> Option<(Kind, &str)> {
    let id_ok = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if let Some(id) = channel.strip_prefix("/v1/users/") {
        return id_ok(id).then_some((Kind::User, id));
    }
    let rest = channel.strip_prefix("/v1/conversations/")?;
    match rest.strip_suffix("/activity") {
        Some(id) => id_ok(id).then_some((Kind::Activity, id)),
        None => id_ok(rest).then_some((Kind::Conversation, rest)),
    }
}

/// A Bayeux error string, `code:args:message`.
fn bayeux_error(code: u16, args: &str, message: &str) -> String {
    format!("{code}:{args}:{message}")
}

/// `POST /faye`: Bayeux long-polling (a JSON array or object of messages, or a form with
/// `message`).
#[utoipa::path(
    post, path = "/faye", tag = "realtime", operation_id = "fayePost",
    request_body(content = Vec<Object>, description = "Bayeux messages (one, or an array)", content_type = "application/json"),
    responses((status = 200, description = "Bayeux replies and delivered messages", body = Vec<Object>), crate::openapi::BodyErrors)
)]
pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return bad_request("the body is not UTF-8 text");
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let text = if form {
        match serde_urlencoded_message(&body) {
            Some(t) => t,
            None => return bad_request("the form has no `message` field"),
        }
    } else {
        body
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(messages) => {
            let replies = handle(&state, messages).await;
            json_response(Value::Array(replies).to_string(), "application/json")
        }
        Err(_) => bad_request("the body is not Bayeux JSON"),
    }
}

/// `GET /faye`: the WebSocket transport (with `Upgrade: websocket`), or callback-polling
/// (`?message=...&jsonp=...`, JSONP).
#[utoipa::path(
    get, path = "/faye", tag = "realtime", operation_id = "fayeGet",
    params(("message" = String, Query, description = "Bayeux messages as JSON"),
           ("jsonp" = Option<String>, Query, description = "The callback to call")),
    responses((status = 200, description = "A JavaScript call of the callback with the replies", content_type = "text/javascript"),
              (status = 400, description = "Not Bayeux JSON, or a callback that is not an identifier", body = crate::error::ErrorBody))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    use axum::extract::FromRequestParts as _;
    let (mut parts, _) = request.into_parts();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(ws) => ws.on_upgrade(move |socket| ws::serve(state, socket)),
            Err(rejection) => rejection.into_response(),
        };
    }
    let Ok(Query(query)) =
        Query::<std::collections::HashMap<String, String>>::from_request_parts(&mut parts, &state)
            .await
    else {
        return bad_request("the query string is malformed");
    };
    let Some(text) = query.get("message") else {
        return bad_request("`message` query parameter required");
    };
    let callback = query.get("jsonp").map_or("jsonpcallback", String::as_str);
    if callback.is_empty()
        || callback.len() > 64
        || !callback
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.')
    {
        return bad_request("`jsonp` must be a JavaScript identifier");
    }
    match serde_json::from_str::<Value>(text) {
        Ok(messages) => {
            let replies = Value::Array(handle(&state, messages).await).to_string();
            json_response(
                format!("/**/{callback}({replies});"),
                "text/javascript; charset=utf-8",
            )
        }
        Err(_) => bad_request("`message` is not Bayeux JSON"),
    }
}

fn serde_urlencoded_message(body: &str) -> Option<String> {
    url_form_pairs(body)
        .find(|(k, _)| k == "message")
        .map(|(_, v)| v)
}

fn url_form_pairs(body: &str) -> impl Iterator<Item = (String, String)> + '_ {
    body.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((percent_decode(k)?, percent_decode(v)?))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn json_response(body: String, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache, no-store"),
        ],
        body,
    )
        .into_response()
}

/// 400 in the API's error shape.
fn bad_request(why: &str) -> Response {
    crate::error::ApiError::from(domain::Error::bad_request(why)).into_response()
}

/// Answers a batch of Bayeux messages: every reply, plus any messages delivered to the
/// client by a `/meta/connect` in it.
pub(crate) async fn handle(state: &AppState, messages: Value) -> Vec<Value> {
    let messages = match messages {
        Value::Array(list) => list,
        one @ Value::Object(_) => vec![one],
        _ => {
            return vec![
                json!({"successful": false, "error": bayeux_error(400, "", "Bad request")}),
            ]
        }
    };
    let mut replies = Vec::new();
    let mut connect = None;
    for message in messages {
        let Value::Object(message) = message else {
            replies
                .push(json!({"successful": false, "error": bayeux_error(400, "", "Bad request")}));
            continue;
        };
        let channel = message
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut reply = match channel.as_str() {
            "/meta/handshake" => handshake(state),
            "/meta/connect" => {
                // Answered last, once the other messages of the batch are handled.
                connect = Some(message);
                continue;
            }
            "/meta/subscribe" => subscribe(state, &message).await,
            "/meta/unsubscribe" => unsubscribe(state, &message).await,
            "/meta/disconnect" => disconnect(state, &message).await,
            "" => json!({"successful": false, "error": bayeux_error(400, "", "channel required")}),
            other => json!({
                "channel": other,
                "successful": false,
                "error": bayeux_error(403, other, "Publishing is not allowed"),
            }),
        };
        finish(&mut reply, &channel, &message);
        replies.push(reply);
    }
    if let Some(message) = connect {
        let (mut reply, delivered) = connect_reply(state, &message, replies.is_empty()).await;
        finish(&mut reply, "/meta/connect", &message);
        replies.extend(delivered);
        replies.push(reply);
    }
    replies
}

/// Copies `channel`, `id` and `clientId` of a request onto its reply.
fn finish(reply: &mut Value, channel: &str, message: &Map<String, Value>) {
    if let Value::Object(reply) = reply {
        reply.entry("channel").or_insert_with(|| json!(channel));
        if let Some(id) = message.get("id") {
            reply.insert("id".into(), id.clone());
        }
        if let Some(client) = message.get("clientId") {
            reply.entry("clientId").or_insert_with(|| client.clone());
        }
    }
}

fn advice(state: &AppState) -> Value {
    json!({
        "reconnect": "retry",
        "interval": 0,
        "timeout": state.faye.limits.poll_timeout.as_millis() as u64,
    })
}

fn handshake(state: &AppState) -> Value {
    json!({
        "version": BAYEUX_VERSION,
        "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
        "clientId": state.faye.handshake(),
        "successful": true,
        "advice": advice(state),
    })
}

fn unknown_client(client_id: &str) -> Value {
    json!({
        "successful": false,
        "error": bayeux_error(401, client_id, "Unknown client"),
        "advice": {"reconnect": "handshake", "interval": 0},
    })
}

fn client_id(message: &Map<String, Value>) -> &str {
    message
        .get("clientId")
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn connect_reply(
    state: &AppState,
    message: &Map<String, Value>,
    may_wait: bool,
) -> (Value, Vec<Value>) {
    let client = client_id(message);
    // A key or app token revoked since a subscription was granted ends the client: it
    // must handshake again, and its subscribes are then refused.
    for credential in state.faye.credentials(client) {
        if let Err(e) = state.credentials.authenticate(&credential).await {
            if e.code == domain::ErrorCode::Unauthorized {
                tracing::info!(
                    client,
                    "Bayeux client dropped: its credentials were revoked"
                );
                metrics::counter!("faye_clients_revoked_total").increment(1);
                let watched = state.faye.watched(client);
                state.faye.disconnect(client);
                leave(state, client, &watched).await;
                return (unknown_client(client), Vec::new());
            }
        }
    }
    // Each connect keeps the client's users marked as watching for another TTL.
    watch(state, client, &state.faye.watched(client)).await;
    // A connect batched with other messages answers at once, so their replies are not held.
    let wait = if may_wait {
        state.faye.limits.poll_timeout
    } else {
        Duration::ZERO
    };
    match state.faye.poll(client, wait).await {
        Some(delivered) => (
            json!({"successful": true, "advice": advice(state)}),
            delivered,
        ),
        None => (unknown_client(client), Vec::new()),
    }
}

async fn unsubscribe(state: &AppState, message: &Map<String, Value>) -> Value {
    let client = client_id(message);
    let subscription = message.get("subscription").cloned().unwrap_or(Value::Null);
    let channels = subscriptions(&subscription);
    let before = state.faye.watched(client);
    for channel in &channels {
        if !state.faye.unsubscribe(client, channel) {
            return unknown_client(client);
        }
    }
    let after = state.faye.watched(client);
    let left: Vec<_> = before.into_iter().filter(|w| !after.contains(w)).collect();
    leave(state, client, &left).await;
    json!({"successful": true, "subscription": subscription})
}

async fn disconnect(state: &AppState, message: &Map<String, Value>) -> Value {
    let client = client_id(message);
    let watched = state.faye.watched(client);
    if state.faye.disconnect(client) {
        leave(state, client, &watched).await;
        json!({"successful": true})
    } else {
        unknown_client(client)
    }
}

fn subscriptions(subscription: &Value) -> Vec<String> {
    match subscription {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

async fn subscribe(state: &AppState, message: &Map<String, Value>) -> Value {
    let client = client_id(message);
    let subscription = message.get("subscription").cloned().unwrap_or(Value::Null);
    if !state.faye.touch(client) {
        return unknown_client(client);
    }
    let channels = subscriptions(&subscription);
    if channels.is_empty() {
        return json!({
            "successful": false,
            "subscription": subscription,
            "error": bayeux_error(405, "", "subscription required"),
        });
    }
    let ext = message.get("ext").and_then(Value::as_object);
    for channel in &channels {
        let (target, credential) = match authorize(state, ext, channel).await {
            Ok(granted) => granted,
            Err(why) => {
                tracing::info!(channel, why, "Bayeux subscription refused");
                metrics::counter!("faye_subscriptions_refused_total").increment(1);
                return json!({
                    "successful": false,
                    "subscription": subscription,
                    "error": bayeux_error(403, channel, &why),
                });
            }
        };
        state.faye.remember_credential(client, credential);
        let watches = (target.kind == Kind::Conversation)
            .then(|| (target.app_id.clone(), target.app_user_id.clone()));
        let app_id = target.app_id.clone();
        if let Err(e) = state.faye.subscribe(client, channel, target) {
            return match e {
                SubscribeError::UnknownClient => unknown_client(client),
                SubscribeError::TooMany(whose) => json!({
                    "successful": false,
                    "subscription": subscription,
                    "error": bayeux_error(429, channel, &format!("too many subscriptions for {whose}")),
                }),
            };
        }
        // Before the answer: what is published once the client knows it subscribed
        // reaches it.
        state.realtime.watch(&app_id).await;
        if let Some(user) = watches {
            watch(state, client, &[user]).await;
        }
    }
    json!({"successful": true, "subscription": subscription})
}

/// Checks that the credentials in `ext` may read `channel`, and says whose channel it is
/// and which credential granted it. Errors are short and name no other tenant's data.
async fn authorize(
    state: &AppState,
    ext: Option<&Map<String, Value>>,
    channel: &str,
) -> Result<(Target, auth::Credential), String> {
    let (kind, id) = parse_channel(channel).ok_or_else(|| "Unknown channel".to_owned())?;
    let ext = ext.ok_or_else(|| "ext with appUserId and appToken or jwt required".to_owned())?;
    let text = |k: &str| ext.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let app_user_id = text("appUserId").ok_or_else(|| "ext.appUserId required".to_owned())?;
    let bearer;
    let credential = match (text("appToken"), text("jwt")) {
        (_, Some(jwt)) => {
            bearer = format!("Bearer {jwt}");
            auth::read_credential(None, Some(bearer.as_bytes()))
        }
        (Some(token), None) => auth::read_credential(Some(token.as_bytes()), None),
        (None, None) => return Err("ext.appToken or ext.jwt required".to_owned()),
    };
    let denied = || "Forbidden".to_owned();
    // Logged here (the client hears only "Forbidden"): why a lookup refused.
    let why = |step: &'static str| move |e: &dyn std::fmt::Display| tracing::info!(step, error = %e, "Bayeux authorisation failed");
    let credential = credential.ok().flatten().ok_or_else(denied)?;
    let principal = state
        .credentials
        .authenticate(&credential)
        .await
        .map_err(|e| {
            why("credential")(&e.description);
            denied()
        })?;
    let caller = Caller(principal);
    let app_id = caller.app_id().map_err(|_| denied())?.to_owned();
    let user = state
        .clients
        .users
        .clone()
        .get_app_user(pb::GetAppUserRequest {
            app_id: app_id.to_string(),
            id_or_user_id: app_user_id.to_owned(),
        })
        .await
        .map_err(|e| {
            why("app user")(&e);
            denied()
        })?
        .into_inner();
    caller.check_user_access(&user).map_err(|_| denied())?;
    let owns = match kind {
        Kind::User => user.id == id,
        Kind::Conversation | Kind::Activity => {
            let conversation = state
                .clients
                .conversations
                .clone()
                .get_conversation(pb::GetConversationRequest {
                    app_id: app_id.to_string(),
                    app_user_id: user.id.clone(),
                    before_ms: Some(0),
                    after_ms: None,
                })
                .await
                .map_err(|e| {
                    why("conversation")(&e);
                    denied()
                })?
                .into_inner();
            !conversation.id.is_empty() && conversation.id == id
        }
    };
    if !owns {
        return Err(denied());
    }
    Ok((
        Target {
            app_id: app_id.into(),
            app_user_id: user.id,
            kind,
        },
        credential,
    ))
}

/// How long a client's mark as watching its user's conversation lasts past its latest
/// `/meta/connect` (or subscribe): the poll timeout, plus room for the client's next
/// connect to arrive.
pub fn presence_ttl(limits: &Limits) -> Duration {
    limits.poll_timeout + Duration::from_secs(10)
}

/// Marks `client` as watching the conversations of `users` (or refreshes the marks).
async fn watch(state: &AppState, client: &str, users: &[(String, String)]) {
    let Some(presence) = &state.presence else {
        return;
    };
    for (app_id, app_user_id) in users {
        if let Err(e) = presence.watch(app_id, app_user_id, client).await {
            // Pushes then go out as if the user were away: the safe side.
            tracing::debug!(error = %e, "marking a watching user failed");
        }
    }
}

/// Removes `client`'s marks on the conversations of `users`.
async fn leave(state: &AppState, client: &str, users: &[(String, String)]) {
    let Some(presence) = &state.presence else {
        return;
    };
    for (app_id, app_user_id) in users {
        if let Err(e) = presence.leave(app_id, app_user_id, client).await {
            // The mark lapses by itself within the presence TTL.
            tracing::debug!(error = %e, "removing a watching mark failed");
        }
    }
}

/// Forgets clients that stopped polling, every few seconds until `shutdown`.
pub(crate) async fn expire(hub: Hub, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => { hub.expire(); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels() {
        assert_eq!(parse_channel("/v1/users/abc"), Some((Kind::User, "abc")));
        assert_eq!(
            parse_channel("/v1/conversations/c1"),
            Some((Kind::Conversation, "c1"))
        );
        assert_eq!(
            parse_channel("/v1/conversations/c1/activity"),
            Some((Kind::Activity, "c1"))
        );
        assert_eq!(parse_channel("/v1/users/"), None);
        assert_eq!(parse_channel("/v1/users/a/b"), None);
        assert_eq!(parse_channel("/v1/conversations/*"), None);
        assert_eq!(parse_channel("/meta/connect"), None);
    }

    #[test]
    fn forms() {
        assert_eq!(
            serde_urlencoded_message("a=1&message=%5B%7B%22x%22%3A1%7D%5D").as_deref(),
            Some("[{\"x\":1}]")
        );
        assert_eq!(serde_urlencoded_message("message=%zz"), None);
    }
}
