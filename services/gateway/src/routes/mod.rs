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
mod integrations;
mod media;
mod menu;
mod paging;
mod push_log;
mod ready;
mod webhooks;
mod whispers;

use std::sync::Arc;

use auth::Principal;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Router};
use domain::{Error, ErrorCode};
use proto::v1 as pb;
use tower::ServiceExt as _;
use tower_http::cors::CorsLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::caller::Caller;
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
        ))
        // The paths of smooch-core 2.x and later.
        .routes(routes!(
            conversation::list_messages,
            conversation::post_user_message,
            conversation::delete_messages
        ))
        .routes(routes!(appusers::delete_profile))
        .routes(with_body_limit(
            routes!(conversation::post_user_image),
            image_limit,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(apps::create, apps::list))
        .routes(routes!(apps::get, apps::update, apps::delete))
        .routes(routes!(apps::rotate_token))
        .routes(routes!(apps::create_key, apps::list_keys))
        .routes(routes!(apps::get_key, apps::delete_key))
        .routes(routes!(apps::get_key_jwt))
        .routes(routes!(appusers::init))
        .nest("/v1/appusers", users.clone())
        .nest("/v1/appUsers", users)
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::retry))
        .routes(routes!(whispers::create, whispers::list))
        .routes(routes!(whispers::get, whispers::update, whispers::delete))
        .routes(routes!(menu::get, menu::set, menu::delete))
        .routes(routes!(integrations::create, integrations::list))
        .routes(routes!(integrations::get, integrations::delete))
        .routes(routes!(push_log::list))
        .routes(routes!(media::download))
        .routes(routes!(crate::faye::get, crate::faye::post))
        .routes(routes!(health::healthz))
        .routes(routes!(ready::readyz))
        .routes(routes!(crate::observe::metrics_page))
        .routes(routes!(openapi::spec))
}

/// JSON a service answered as text. The services write it with serde, so text that does
/// not parse is a bug or a corrupt stored value: logged with `field`, answered as the
/// opaque 500 (see [`crate::error::ApiError`]).
pub(crate) fn service_json(field: &'static str, text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::from(wire::model::BadJson {
            field,
            expected: "text",
            reason: e.to_string(),
        })
    })
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
    // What `/v1/apps/{appId}/...` calls dispatch to, once rewritten (the outer layers have
    // run for them already).
    let app_paths = routes
        .clone()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    let prefixed_state = state.clone();
    routes
        .route(
            "/v1/apps/{app_id}/{*rest}",
            axum::routing::any(move |request: Request| {
                app_prefixed(prefixed_state.clone(), app_paths.clone(), request)
            }),
        )
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
        // Outermost but admission and CORS: rate-limited answers are traced and counted too.
        .layer(axum::middleware::from_fn(crate::observe::trace_requests))
        // Shed before any work is done for a request the gateway has no room for.
        .layer(axum::middleware::from_fn_with_state(
            crate::admission::Admission::new(
                state.config.max_in_flight,
                state.config.admission_queue,
                state.config.admission_wait,
            ),
            crate::admission::admit,
        ))
        .layer(CorsLayer::very_permissive())
        .with_state(state)
}

/// `/v1/apps/{appId}/<path>` with an account-scope JWT: `/v1/<path>` as the app's own
/// app-scope JWT would call it (smooch-core 3.x prefixes every app call this way).
async fn app_prefixed(state: AppState, app_paths: Router, request: Request) -> Response {
    match as_app_call(&state, request).await {
        Ok(request) => match app_paths.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => e.into_response(),
    }
}

/// The request rewritten for [`app_prefixed`]: a fresh request (no path parameters of
/// the outer route) for `/v1/<path>`, made by the app's `app`-scope principal.
async fn as_app_call(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let caller = match request.extensions().get::<Caller>() {
        Some(caller) => caller.clone(),
        None => crate::caller::authenticate(request.headers(), state).await?,
    };
    let Principal::Account { key_id } = caller.0 else {
        return Err(Error::forbidden(
            "/v1/apps/{appId}/... paths require a JWT with `account` scope; with an app's own \
             credentials, call the path without the /v1/apps/{appId} prefix",
        )
        .into());
    };
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let (app_id, rest) = path
        .strip_prefix("/v1/apps/")
        .and_then(|p| p.split_once('/'))
        .ok_or_else(|| Error::not_found(format!("no API at {} {path}", parts.method)))?;
    // The app must exist (and every call below is scoped to it).
    let app = state
        .clients
        .users
        .clone()
        .get_app(pb::GetAppRequest {
            app_id: app_id.to_owned(),
        })
        .await?
        .into_inner();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("/v1/{rest}?{query}"),
        None => format!("/v1/{rest}"),
    };
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| Error::bad_request("malformed path"))?;
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    fresh.extensions_mut().insert(Caller(Principal::App {
        app_id: app.id.into(),
        key_id,
    }));
    Ok(fresh)
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
    use std::collections::BTreeSet;

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
        // IP literals: no resolver task starts on these tasks.
        let tasks = tasks::Tasks::new(tokio_util::sync::CancellationToken::new());
        let clients = crate::Clients::new(&config, &tasks).unwrap();
        let credentials = std::sync::Arc::new(auth::CredentialCache::new(
            crate::credentials::UsersSource::new(clients.users.clone()),
            None,
            config.credential_cache.clone(),
        ));
        AppState::new(crate::Shared {
            clients,
            config,
            credentials,
            app_users: Arc::new(crate::app_users::AppUsers::new(
                std::time::Duration::ZERO,
                1,
            )),
            redis: None,
            limiter: None,
            faye: crate::faye::Hub::new(crate::faye::Limits::default()),
            presence: None,
            activity: Arc::new(crate::faye::fanout::Activity::new(
                None,
                crate::faye::Hub::new(crate::faye::Limits::default()),
            )),
            realtime: Arc::new(crate::faye::fanout::Bindings::new(
                None,
                crate::faye::Hub::new(crate::faye::Limits::default()),
                None,
            )),
        })
    }

    /// Whether the router answers `method path` from a route rather than from its 404 or
    /// 405 fallback (path parameters are filled with a placeholder; the backing services
    /// are unreachable, so a routed call answers 401, 400 or 503, never "no API at").
    async fn routed(router: &Router, method: &str, path: &str) -> bool {
        use tower::ServiceExt as _;
        let mut uri = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            uri.push_str(&rest[..open]);
            uri.push_str("0123456789abcdef01234567");
            rest = &rest[rest[open..].find('}').map_or(rest.len(), |c| open + c + 1)..];
        }
        uri.push_str(rest);
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        !(status == axum::http::StatusCode::METHOD_NOT_ALLOWED
            || status == axum::http::StatusCode::NOT_FOUND && text.contains("no API at"))
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

    /// Every documented route is routed, and on every documented path the methods the
    /// document does not name are 405s: a route added outside `routes!` (which registers
    /// the route and its documentation together) on an API path shows up here.
    #[tokio::test]
    async fn every_spec_route_is_routed_and_undocumented_methods_are_refused() {
        let state = state();
        let spec = spec(state.config.max_image_bytes);
        let router = router(state);
        let documented = spec_routes(&spec);
        assert!(documented.len() > 40, "too few routes: {documented:?}");
        let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
        for path in paths {
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let is_documented = documented.contains(&(method.to_owned(), path.clone()));
                assert_eq!(
                    routed(&router, method, path).await,
                    is_documented,
                    "{method} {path}: documented {is_documented}, routed the opposite"
                );
            }
        }
        for (method, path) in documented
            .iter()
            .filter(|(_, p)| p.starts_with("/v1/appUsers"))
        {
            let original = (
                method.clone(),
                path.replacen("/v1/appUsers", "/v1/appusers", 1),
            );
            assert!(
                documented.contains(&original),
                "{method} {path} is no alias"
            );
        }
    }

    /// The endpoint table of docs/api.md names exactly the documented routes (the `/v1/appUsers`
    /// aliases aside), so it cannot drift from the API.
    #[test]
    fn the_endpoint_table_matches_the_spec() {
        let normalise = |path: &str| -> String {
            let mut out = String::new();
            let mut depth = 0;
            for c in path.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        out.push_str("{}");
                    }
                    '}' => depth -= 1,
                    _ if depth > 0 => {}
                    _ => out.push(c),
                }
            }
            out
        };
        let documented: BTreeSet<(String, String)> = spec_routes(&spec(10 << 20))
            .into_iter()
            .filter(|(_, p)| !p.starts_with("/v1/appUsers"))
            .map(|(m, p)| (m, normalise(&p)))
            .collect();
        let readme = include_str!("../../../../docs/api.md");
        let table = readme
            .split("## Endpoints")
            .nth(1)
            .expect("docs/api.md has an Endpoints section")
            .split("\n## ")
            .next()
            .unwrap_or_default();
        let listed: BTreeSet<(String, String)> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|line| line.split('`').next())
            .filter_map(|route| route.split_once(' '))
            .map(|(m, p)| (m.to_owned(), normalise(p)))
            .collect();
        let missing: Vec<_> = documented.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the endpoint table of docs/api.md: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "rows of docs/api.md that are no route: {extra:?}"
        );
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
