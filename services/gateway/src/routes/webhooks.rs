//! `/v1/webhooks`: an app's webhook subscriptions (JWT with `app` scope only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::apps::Empty;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, PathErrors};
use crate::AppState;

const WHAT: &str = "the webhooks API";

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookJson {
    /// The webhook id.
    #[serde(rename = "_id")]
    id: String,
    /// The URL events are POSTed to.
    target: String,
    /// The triggers it receives (`message`, `message:appUser`, `postback`, ..., `*`).
    events: Vec<String>,
    /// The same list under its later name (python-smooch and smooch-core 3.x read this).
    triggers: Vec<String>,
    /// Sent as `X-API-Key` with every delivery, and the signing secret.
    secret: String,
}

impl From<pb::Webhook> for WebhookJson {
    fn from(w: pb::Webhook) -> Self {
        WebhookJson {
            id: w.id,
            target: w.target,
            triggers: w.events.clone(),
            events: w.events,
            secret: w.secret,
        }
    }
}

/// `{"webhook": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookAnswer {
    webhook: WebhookJson,
}

/// `{"webhooks": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhooksAnswer {
    webhooks: Vec<WebhookJson>,
}

/// `events` as a list; the reference's table also names a singular `event`.
#[derive(Debug, Deserialize, ToSchema)]
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

/// A webhook's fields; on update, those left out keep their values.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WebhookBody {
    /// The URL to POST events to (required on create): http(s), public.
    target: Option<String>,
    /// Triggers to receive (`*` for all); `["message"]` when left out on create.
    events: Option<Events>,
    /// The later name of `events` (used when `events` is left out).
    triggers: Option<Events>,
    /// The singular form of `events`.
    event: Option<Events>,
}

impl WebhookBody {
    fn events(&mut self) -> Option<Vec<String>> {
        self.events
            .take()
            .or_else(|| self.triggers.take())
            .or_else(|| self.event.take())
            .map(Events::into_vec)
    }
}

/// Subscribes a URL to the app's events.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = WebhookBody,
    security(("jwt" = [])),
    responses((status = 201, description = "The new webhook", body = WebhookAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(mut body): JsonBody<WebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookAnswer>)> {
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
            app_id: app_id.to_string(),
            target,
            events,
        })
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(WebhookAnswer {
            webhook: webhook.into(),
        }),
    ))
}

/// Lists the app's webhooks.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    security(("jwt" = [])),
    responses((status = 200, description = "The app's webhooks", body = WebhooksAnswer), AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WebhooksAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let webhooks = state
        .clients
        .webhooks
        .clone()
        .list_webhooks(pb::ListWebhooksRequest {
            app_id: app_id.to_string(),
        })
        .await?
        .into_inner()
        .webhooks;
    Ok(Json(WebhooksAnswer {
        webhooks: webhooks.into_iter().map(WebhookJson::from).collect(),
    }))
}

/// One webhook of the app.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "getWebhook",
    params(("id" = String, Path, description = "The webhook id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The webhook", body = WebhookAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let webhook = state
        .clients
        .webhooks
        .clone()
        .get_webhook(pb::WebhookRef {
            app_id: app_id.to_string(),
            webhook_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(WebhookAnswer {
        webhook: webhook.into(),
    }))
}

/// Changes a webhook's target or events.
#[utoipa::path(
    put, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "updateWebhook",
    params(("id" = String, Path, description = "The webhook id")),
    request_body = WebhookBody,
    security(("jwt" = [])),
    responses((status = 200, description = "The updated webhook", body = WebhookAnswer), BodyErrors, PathErrors, AuthErrors)
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<WebhookBody>,
) -> ApiResult<Json<WebhookAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let events = body.events();
    let webhook = state
        .clients
        .webhooks
        .clone()
        .update_webhook(pb::UpdateWebhookRequest {
            app_id: app_id.to_string(),
            webhook_id: id,
            target: body.target,
            events_set: events.is_some(),
            events: events.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(WebhookAnswer {
        webhook: webhook.into(),
    }))
}

/// Deletes a webhook.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhook",
    params(("id" = String, Path, description = "The webhook id")),
    security(("jwt" = [])),
    responses((status = 200, description = "Deleted", body = Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Empty>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    state
        .clients
        .webhooks
        .clone()
        .delete_webhook(pb::WebhookRef {
            app_id: app_id.to_string(),
            webhook_id: id,
        })
        .await?;
    Ok(Json(Empty {}))
}
