//! `/v1/webhooks`: an app's webhook subscriptions (JWT with `app` scope only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::AppState;

const WHAT: &str = "the webhooks API";

fn webhook_json(w: pb::Webhook) -> Value {
    json!({
        "_id": w.id,
        "target": w.target,
        "events": w.events,
        "secret": w.secret,
    })
}

/// `events` as a list; the reference's table also names a singular `event`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Events {
    One(String),
    Many(Vec<String>),
}

impl Events {
    fn into_vec(self) -> Vec<String> {
        match self {
            Events::One(e) => vec![e],
            Events::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WebhookBody {
    target: Option<String>,
    events: Option<Events>,
    event: Option<Events>,
}

impl WebhookBody {
    fn events(&mut self) -> Option<Vec<String>> {
        self.events
            .take()
            .or_else(|| self.event.take())
            .map(Events::into_vec)
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(mut body): JsonBody<WebhookBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let events = body.events().unwrap_or_default();
    let target = body
        .target
        .ok_or_else(|| Error::bad_request("target is required"))?;
    let webhook = state
        .clients
        .webhooks
        .clone()
        .create_webhook(pb::CreateWebhookRequest {
            app_id: app_id.to_owned(),
            target,
            events,
        })
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(json!({"webhook": webhook_json(webhook)})),
    ))
}

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let webhooks = state
        .clients
        .webhooks
        .clone()
        .list_webhooks(pb::ListWebhooksRequest {
            app_id: app_id.to_owned(),
        })
        .await?
        .into_inner()
        .webhooks;
    Ok(Json(json!({
        "webhooks": webhooks.into_iter().map(webhook_json).collect::<Vec<_>>()
    })))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let webhook = state
        .clients
        .webhooks
        .clone()
        .get_webhook(pb::WebhookRef {
            app_id: app_id.to_owned(),
            webhook_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(json!({"webhook": webhook_json(webhook)})))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<WebhookBody>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let events = body.events();
    let webhook = state
        .clients
        .webhooks
        .clone()
        .update_webhook(pb::UpdateWebhookRequest {
            app_id: app_id.to_owned(),
            webhook_id: id,
            target: body.target,
            events_set: events.is_some(),
            events: events.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(json!({"webhook": webhook_json(webhook)})))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    state
        .clients
        .webhooks
        .clone()
        .delete_webhook(pb::WebhookRef {
            app_id: app_id.to_owned(),
            webhook_id: id,
        })
        .await?;
    Ok(Json(json!({})))
}
