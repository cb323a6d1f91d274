//! The router: every path of the v1 API, CORS, and JSON 404/405 answers.

mod apps;
mod appusers;
mod conversation;
mod conversation_state;
mod deliveries;
mod devices;
mod health;
mod media;
mod ready;
mod webhooks;
mod whispers;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post, put};
use axum::Router;
use domain::{Error, ErrorCode};
use tower_http::cors::CorsLayer;

use crate::error::ApiError;
use crate::AppState;

/// Every route of the gateway.
pub(crate) fn router(state: AppState) -> Router {
    let image_limit = state.config.max_image_bytes + 64 * 1024;
    // Clients send both `/v1/appusers` and `/v1/appUsers` (client-compat.md).
    let users = Router::new()
        .route("/{id}", get(appusers::get).put(appusers::update))
        .route("/", post(appusers::create))
        .route("/{id}/events", post(appusers::track_event))
        .route("/{id}/pushToken", post(devices::push_token))
        .route("/{id}/devices/{device_id}", put(devices::update))
        .route("/{id}/conversation", get(conversation::get))
        .route(
            "/{id}/conversation/messages",
            get(conversation::get).post(conversation::post_message),
        )
        .route("/{id}/conversation/read", post(conversation_state::read))
        .route(
            "/{id}/conversation/postback",
            post(conversation_state::postback),
        )
        .route(
            "/{id}/conversation/images",
            post(conversation::post_image).layer(DefaultBodyLimit::max(image_limit)),
        );
    Router::new()
        .route("/v1/apps", post(apps::create).get(apps::list))
        .route("/v1/apps/{app_id}", get(apps::get).delete(apps::delete))
        .route("/v1/apps/{app_id}/token/rotate", post(apps::rotate_token))
        .route(
            "/v1/apps/{app_id}/keys",
            post(apps::create_key).get(apps::list_keys),
        )
        .route(
            "/v1/apps/{app_id}/keys/{key_id}",
            get(apps::get_key).delete(apps::delete_key),
        )
        .route("/v1/init", post(appusers::init))
        .nest("/v1/appusers", users.clone())
        .nest("/v1/appUsers", users)
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::list))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(deliveries::retry),
        )
        .route("/v1/whispers", post(whispers::create).get(whispers::list))
        .route(
            "/v1/whispers/{id}",
            get(whispers::get)
                .put(whispers::update)
                .delete(whispers::delete),
        )
        .route("/media/{app_id}/{key}", get(media::download))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(crate::observe::metrics_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit,
        ))
        // Outermost but CORS: rate-limited answers are traced and counted too.
        .layer(axum::middleware::from_fn(crate::observe::trace_requests))
        .layer(CorsLayer::very_permissive())
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    Error::not_found(format!("no API at {method} {}", uri.path())).into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    Error::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not supported on {}", uri.path()),
    )
    .into()
}
