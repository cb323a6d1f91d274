//! The OpenAPI 3.1 document of the public API, generated from the handlers'
//! `#[utoipa::path]` annotations and types (`GET /openapi.json`), and the browsable docs
//! page (`GET /docs`, Swagger UI with its assets built into the binary). Both are public.
//!
//! Every route is registered through `utoipa_axum::routes!`, so a route and its documentation
//! are one line of the router; a test walks the router and the document and checks that
//! they name the same routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::ErrorBody;

/// Where the UI is served; it loads the document from [`SPEC_PATH`].
pub(crate) const DOCS_PATH: &str = "/docs";
/// Where the document is served.
pub(crate) const SPEC_PATH: &str = "/openapi.json";

/// The document's frame: title, security schemes, tags, shared schemas. The paths come
/// from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "smooch",
        description = "A self-hostable, multi-tenant, wire-compatible implementation of the \
            Smooch REST API v1. Every error answers `{\"error\": {\"code\", \"description\"}}`. \
            `/v1/appUsers/...` is an alias of every `/v1/appusers/...` route, and with an \
            account-scope JWT every app path is also served under `/v1/apps/{appId}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "apps", description = "The operator's tenancy API: apps and their secret keys (account scope)"),
        (name = "appusers", description = "App users, their profile, events and devices"),
        (name = "conversation", description = "An app user's conversation: messages, images, read state, postbacks"),
        (name = "webhooks", description = "An app's webhook subscriptions (app scope)"),
        (name = "whispers", description = "Messages posted when an app user triggers an event (app scope)"),
        (name = "menu", description = "An app's persistent menu, shown by the Web Messenger"),
        (name = "integrations", description = "An app's channel and push credentials (app scope; secrets are write-only)"),
        (name = "push", description = "An app's push delivery log: every attempt to notify a device through APNs or FCM (app scope)"),
        (name = "media", description = "Uploaded images, served back at unguessable public URLs"),
        (name = "realtime", description = "The Bayeux (Faye) endpoint of real-time subscriptions"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub(crate) struct ApiDoc;

/// Security scheme name of the `app-token` header.
pub(crate) const APP_TOKEN: &str = "appToken";
/// Security scheme name of `Authorization: Bearer <jwt>`.
pub(crate) const JWT: &str = "jwt";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            APP_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "app-token",
                "The app's token: acts for the app's users, never as the app maker",
            ))),
        );
        components.add_security_scheme(
            JWT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256/384/512 JWT with the signing key's id as `kid` and a `scope` \
                         claim: `app`, `appUser` (with `userId`) or `account`",
                    ))
                    .build(),
            ),
        );
    }
}

/// Error answers with the shared body, one per `(status, when)`.
fn error_responses(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter()
        .map(|(status, when)| {
            let response = ResponseBuilder::new()
                .description(*when)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// What every authenticated route can answer besides its own statuses.
pub(crate) struct AuthErrors;

impl IntoResponses for AuthErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (401, "Credentials are missing or invalid"),
            (403, "The credentials do not grant this call"),
            (429, "Rate limit exceeded; see `Retry-After`"),
            (500, "Unexpected failure; logged, never detailed"),
            (503, "A backing service is unavailable; retry later"),
        ])
    }
}

/// What a route that reads a request body can answer besides its own statuses.
pub(crate) struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (400, "Malformed body or a field that breaks a rule"),
            (
                408,
                "The body was not received within the gateway's deadline",
            ),
            (413, "The body is larger than the route accepts"),
        ])
    }
}

/// What a route with ids in its path can answer besides its own statuses.
pub(crate) struct PathErrors;

impl IntoResponses for PathErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (400, "A path parameter is not valid UTF-8"),
            (404, "Nothing by that id in this app"),
        ])
    }
}

/// A create that can collide with an existing resource.
pub(crate) struct ConflictErrors;

impl IntoResponses for ConflictErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[(409, "The resource already exists")])
    }
}

/// A public route that calls a backing service.
pub(crate) struct ServiceErrors;

impl IntoResponses for ServiceErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (500, "Unexpected failure; logged, never detailed"),
            (503, "A backing service is unavailable; retry later"),
        ])
    }
}

/// The finished document: the router's paths in [`ApiDoc`]'s frame, with the
/// `/v1/appUsers` alias marked as such (its operation ids must differ from the originals').
pub(crate) fn finish(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for (path, item) in spec.paths.paths.iter_mut() {
        if !path.starts_with("/v1/appUsers") {
            continue;
        }
        let original = path.replacen("/v1/appUsers", "/v1/appusers", 1);
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.operation_id = op.operation_id.take().map(|id| format!("{id}Alias"));
            op.description = Some(format!("Alias of `{original}`."));
        }
    }
    spec
}

/// The serialized document, shared by every request.
#[derive(Clone)]
pub(crate) struct SpecJson(pub(crate) Arc<String>);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of the API", content_type = "application/json", body = Object))
)]
pub(crate) async fn spec(Extension(spec): Extension<SpecJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        spec.0.as_str().to_owned(),
    )
        .into_response()
}

/// The Swagger UI router for `/docs`, reading [`SPEC_PATH`].
pub(crate) fn docs<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::from(SPEC_PATH))
        .into()
}
