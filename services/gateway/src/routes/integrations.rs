//! `/v1/integrations`: the app's channel and push credentials (JWT with `app` scope).
//! Secrets (keys, certificates, passwords, tokens) are accepted and never answered.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use domain::Error;
use proto::v1 as pb;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::apps::Empty;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::openapi::{AuthErrors, BodyErrors, ConflictErrors, PathErrors};
use crate::AppState;

const WHAT: &str = "the integrations API";

/// An integration, without its secrets: `{_id, type, status, ...}` plus the type's public
/// fields (`senderId`, `production`, `bundleId`, ...).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IntegrationJson {
    #[serde(rename = "_id")]
    id: String,
    /// `apn`, `fcm`, `messenger`, `twilio`, `telegram`, `line`, `viber`, `wechat`,
    /// `mailgun` or `frontendEmail`.
    #[serde(rename = "type")]
    kind: String,
    /// `active` once stored.
    status: &'static str,
    /// The type's public fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    config: Map<String, Value>,
}

impl TryFrom<pb::Integration> for IntegrationJson {
    type Error = ApiError;

    fn try_from(i: pb::Integration) -> Result<Self, ApiError> {
        let config = match super::service_json("integration", &i.config_json)? {
            Value::Object(config) => config,
            _ => Map::new(),
        };
        Ok(IntegrationJson {
            id: i.id,
            kind: i.r#type,
            status: "active",
            config,
        })
    }
}

/// `{"integration": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IntegrationAnswer {
    integration: IntegrationJson,
}

/// `{"integrations": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IntegrationsAnswer {
    integrations: Vec<IntegrationJson>,
}

/// Adds an integration (one per type): `{type, ...fields}`. `apn` takes `certificate`
/// (a base64 .p12) with an optional `password`, or `keyId`, `teamId`, `bundleId` and
/// `privateKey` (the .p8 text), plus `production`; `fcm` takes `serverKey` and `senderId`,
/// or `serviceAccountKey` (the key file a Firebase project issues).
#[utoipa::path(
    post, path = "/v1/integrations", tag = "integrations", operation_id = "createIntegration",
    request_body(content = Object, description = "`{type, ...fields}`"),
    security(("jwt" = [])),
    responses((status = 201, description = "The new integration, without secrets", body = IntegrationAnswer), BodyErrors, ConflictErrors, AuthErrors)
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<IntegrationAnswer>)> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    if !body.is_object() {
        return Err(Error::bad_request("the body must be a JSON object: {type, ...fields}").into());
    }
    let integration = state
        .clients
        .users
        .clone()
        .create_integration(pb::CreateIntegrationRequest {
            app_id: app_id.to_string(),
            body_json: body.to_string(),
        })
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(IntegrationAnswer {
            integration: integration.try_into()?,
        }),
    ))
}

/// Lists the app's integrations, oldest first.
#[utoipa::path(
    get, path = "/v1/integrations", tag = "integrations", operation_id = "listIntegrations",
    params(("types" = Option<String>, Query, description = "Only these types, comma separated (e.g. `apn,fcm`)")),
    security(("jwt" = [])),
    responses((status = 200, description = "The app's integrations", body = IntegrationsAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<IntegrationsAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let Query(query) =
        query.map_err(|e| Error::bad_request(format!("malformed query string: {e}")))?;
    let known = domain::app_config::integration_types();
    let mut types = Vec::new();
    for kind in query
        .get("types")
        .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()))
        .into_iter()
        .flatten()
    {
        if !known.contains(&kind) {
            return Err(Error::bad_request(format!(
                "types: {kind:?} is not an integration type; the types are: {}",
                known.join(", ")
            ))
            .into());
        }
        types.push(kind.to_owned());
    }
    let integrations = state
        .clients
        .users
        .clone()
        .list_integrations(pb::ListIntegrationsRequest {
            app_id: app_id.to_string(),
            types,
        })
        .await?
        .into_inner()
        .integrations;
    Ok(Json(IntegrationsAnswer {
        integrations: integrations
            .into_iter()
            .map(IntegrationJson::try_from)
            .collect::<Result<_, _>>()?,
    }))
}

/// One of the app's integrations.
#[utoipa::path(
    get, path = "/v1/integrations/{integration_id}", tag = "integrations", operation_id = "getIntegration",
    params(("integration_id" = String, Path, description = "The integration id")),
    security(("jwt" = [])),
    responses((status = 200, description = "The integration, without secrets", body = IntegrationAnswer), PathErrors, AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(integration_id): Path<String>,
) -> ApiResult<Json<IntegrationAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let integration = state
        .clients
        .users
        .clone()
        .get_integration(pb::IntegrationRef {
            app_id: app_id.to_string(),
            integration_id,
        })
        .await?
        .into_inner();
    Ok(Json(IntegrationAnswer {
        integration: integration.try_into()?,
    }))
}

/// Deletes one of the app's integrations with its secrets.
#[utoipa::path(
    delete, path = "/v1/integrations/{integration_id}", tag = "integrations", operation_id = "deleteIntegration",
    params(("integration_id" = String, Path, description = "The integration id")),
    security(("jwt" = [])),
    responses((status = 200, description = "Deleted", body = Empty), PathErrors, AuthErrors)
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(integration_id): Path<String>,
) -> ApiResult<Json<Empty>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    state
        .clients
        .users
        .clone()
        .delete_integration(pb::IntegrationRef {
            app_id: app_id.to_string(),
            integration_id,
        })
        .await?;
    Ok(Json(Empty {}))
}
