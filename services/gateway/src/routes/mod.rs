//! The router: every path of the v1 API (each registered with its OpenAPI documentation),
//! `/openapi.json` and `/docs`, CORS, the body deadline, and JSON 404/405 answers.

mod activity;
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

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::{Extension, Router};
use domain::{Error, ErrorCode};
use tower_http::cors::CorsLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::{self, ApiDoc, SpecJson};
use crate::AppState;

/// Every documented route, and the OpenAPI document they make.
pub(crate) fn api(max_image_bytes: usize) -> OpenApiRouter<AppState> {
    let image_limit = max_image_bytes + 64 * 1024;
    // Clients send both `/v1/appusers` and `/v1/appUsers` (client-compat.md).
    let users = OpenApiRouter::new()
        .routes(routes!(appusers::get, appusers::update))
        .routes(routes!(appusers::create))
        .routes(routes!(appusers::track_event))
        .routes(routes!(devices::push_token))
        .routes(routes!(devices::update))
        .routes(routes!(conversation::get))
        .routes(routes!(
            conversation::get_messages,
            conversation::post_message
        ))
        .routes(routes!(conversation_state::read))
        .routes(routes!(activity::activity))
        .routes(routes!(conversation_state::postback))
        .routes(with_body_limit(
            routes!(conversation::post_image),
            image_limit,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(apps::create, apps::list))
        .routes(routes!(apps::get, apps::delete))
        .routes(routes!(apps::rotate_token))
        .routes(routes!(apps::create_key, apps::list_keys))
        .routes(routes!(apps::get_key, apps::delete_key))
        .routes(routes!(appusers::init))
        .nest("/v1/appusers", users.clone())
        .nest("/v1/appUsers", users)
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::retry))
        .routes(routes!(whispers::create, whispers::list))
        .routes(routes!(whispers::get, whispers::update, whispers::delete))
        .routes(routes!(media::download))
        .routes(routes!(crate::faye::get, crate::faye::post))
        .routes(routes!(health::healthz))
        .routes(routes!(ready::readyz))
        .routes(routes!(crate::observe::metrics_page))
        .routes(routes!(openapi::spec))
}

/// `routes` with a body limit of its own (image uploads are larger than JSON bodies).
fn with_body_limit(
    (schemas, paths, method_router): UtoipaMethodRouter<AppState>,
    limit: usize,
) -> UtoipaMethodRouter<AppState> {
    (
        schemas,
        paths,
        method_router.layer(DefaultBodyLimit::max(limit)),
    )
}

/// The API's OpenAPI document.
pub(crate) fn spec(max_image_bytes: usize) -> utoipa::openapi::OpenApi {
    openapi::finish(api(max_image_bytes).into_openapi())
}

/// Every route of the gateway.
pub(crate) fn router(state: AppState) -> Router {
    let (routes, spec) = api(state.config.max_image_bytes).split_for_parts();
    let spec = openapi::finish(spec);
    let spec_json = serde_json::to_string(&spec).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialize");
        "{}".to_owned()
    });
    routes
        .merge(openapi::docs())
        .route(
            crate::faye::DEMO_PATH,
            axum::routing::get(crate::faye::demo_page),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(SpecJson(Arc::new(spec_json))))
        // Innermost: a body that does not arrive in time is a 408 whatever the handler said.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::deadline::body_deadline,
        ))
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn state() -> AppState {
        let mut config = crate::Config::new(
            "http://127.0.0.1:1",
            "127.0.0.1:1",
            "127.0.0.1:1",
            "127.0.0.1:1",
            "127.0.0.1:1",
        );
        config.redis = None;
        let clients =
            crate::Clients::connect(&config, &tokio_util::sync::CancellationToken::new()).unwrap();
        let credentials = std::sync::Arc::new(auth::CredentialCache::new(
            crate::credentials::UsersSource::new(clients.users.clone()),
            None,
            config.credential_cache.clone(),
        ));
        AppState {
            clients,
            config: Arc::new(config),
            credentials,
            redis: None,
            limiter: None,
            faye: crate::faye::Hub::new(crate::faye::Limits::default()),
            activity: Arc::new(crate::faye::fanout::Activity::new(
                None,
                crate::faye::Hub::new(crate::faye::Limits::default()),
            )),
        }
    }

    /// `(METHOD, path)` of every route the router has, read from its `Debug` output (axum
    /// has no other way to list routes): the paths of the route ids, and each id's `Allow`
    /// methods. HEAD, which axum answers for every GET, is left out.
    fn router_routes(router: &Router) -> BTreeSet<(String, String)> {
        let text = format!("{router:?}");
        let node = text
            .find("node: Node { paths: {")
            .expect("the router's Debug output names its paths");
        let (routes_part, paths_part) = text.split_at(node);
        let paths_part = &paths_part[..paths_part.find("} }").expect("end of paths")];
        let mut paths = BTreeMap::new();
        for entry in paths_part.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once(')').expect("route id");
            let path = rest.split('"').nth(1).expect("quoted path");
            paths.insert(id.to_owned(), path.to_owned());
        }
        let mut routes = BTreeSet::new();
        for entry in routes_part.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once(')').expect("route id");
            let allow = rest
                .split("allow_header: Bytes(b\"")
                .nth(1)
                .and_then(|a| a.split('"').next())
                .unwrap_or_default();
            for method in allow.split(',').filter(|m| !m.is_empty() && *m != "HEAD") {
                routes.insert((method.to_owned(), paths[id].clone()));
            }
        }
        routes
    }

    fn spec_routes(spec: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        let value = serde_json::to_value(spec).unwrap();
        let mut routes = BTreeSet::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch", "options", "head"] {
                if item.get(method).is_some() {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    }

    /// The Swagger UI's own pages and assets, and the real-time demo page: served,
    /// deliberately not API.
    fn is_docs_ui(path: &str) -> bool {
        path == openapi::DOCS_PATH || path.starts_with("/docs/") || path == crate::faye::DEMO_PATH
    }

    #[tokio::test]
    async fn every_route_is_in_the_spec_and_every_spec_path_is_routed() {
        let state = state();
        let spec = spec(state.config.max_image_bytes);
        let routed: BTreeSet<_> = router_routes(&router(state))
            .into_iter()
            .filter(|(_, path)| !is_docs_ui(path))
            .collect();
        let documented = spec_routes(&spec);
        assert!(
            routed.len() > 40,
            "the router walk found too few routes: {routed:?}"
        );
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document (register them with routes!): {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
        for alias in routed.iter().filter(|(_, p)| p.starts_with("/v1/appUsers")) {
            let original = (
                alias.0.clone(),
                alias.1.replacen("/v1/appUsers", "/v1/appusers", 1),
            );
            assert!(routed.contains(&original), "{alias:?} is no alias");
        }
    }

    #[test]
    fn the_spec_is_openapi_3_1_with_unique_operation_ids_and_every_error_status() {
        let value = serde_json::to_value(spec(10 << 20)).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        assert!(value["components"]["schemas"]["ErrorBody"].is_object());
        assert!(value["components"]["securitySchemes"]["appToken"].is_object());
        let mut ids = BTreeSet::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(ids.insert(id.clone()), "duplicate operationId {id}");
                let statuses: BTreeSet<&str> = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                let what = format!("{method} {path}");
                if op.get("security").is_some() {
                    for s in ["401", "403", "429", "500", "503"] {
                        assert!(statuses.contains(s), "{what} does not document {s}");
                    }
                }
                if op.get("requestBody").is_some() {
                    for s in ["400", "408", "413"] {
                        assert!(statuses.contains(s), "{what} does not document {s}");
                    }
                }
                if path.contains('{') {
                    for s in ["400", "404"] {
                        assert!(statuses.contains(s), "{what} does not document {s}");
                    }
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') && path.starts_with("/v1")
                    {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{what} {status} is not in the error shape"
                        );
                    }
                }
            }
        }
    }
}
