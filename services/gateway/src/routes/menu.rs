//! `/v1/menu`: the app's persistent menu, which the Web Messenger shows beside its text
//! box. Anyone in the app may read it; changing it takes a JWT with `app` scope.

use axum::extract::State;
use axum::Json;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::openapi::{AuthErrors, BodyErrors};
use crate::AppState;

const WHAT: &str = "changing the menu";

/// A menu.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MenuJson {
    /// Its items, each `{_id, type: link|postback, text, uri|payload}`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
}

/// `{"menu": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MenuAnswer {
    menu: MenuJson,
}

/// The body of setting the menu.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MenuBody {
    /// The items, at most 10: `{type: "link", text, uri}` or `{type: "postback", text,
    /// payload}`.
    #[schema(value_type = Vec<Object>, required = true)]
    items: Option<Value>,
}

fn answer(menu: pb::Menu) -> ApiResult<Json<MenuAnswer>> {
    let items = match super::service_json("menu", &menu.items_json)? {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    Ok(Json(MenuAnswer {
        menu: MenuJson { items },
    }))
}

/// The app's menu (no items when none is set).
#[utoipa::path(
    get, path = "/v1/menu", tag = "menu", operation_id = "getMenu",
    security(("appToken" = []), ("jwt" = [])),
    responses((status = 200, description = "The menu", body = MenuAnswer), AuthErrors)
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<MenuAnswer>> {
    let app_id = caller.app_id()?.to_owned();
    let menu = state
        .clients
        .users
        .clone()
        .get_menu(pb::GetAppRequest {
            app_id: app_id.into(),
        })
        .await?
        .into_inner();
    answer(menu)
}

/// Replaces the app's menu.
#[utoipa::path(
    put, path = "/v1/menu", tag = "menu", operation_id = "setMenu",
    request_body = MenuBody,
    security(("jwt" = [])),
    responses((status = 200, description = "The menu as stored", body = MenuAnswer), BodyErrors, AuthErrors)
)]
pub(crate) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<MenuBody>,
) -> ApiResult<Json<MenuAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let items = body
        .items
        .ok_or_else(|| domain::Error::bad_request("items is required: an array of menu items"))?;
    let menu = state
        .clients
        .users
        .clone()
        .set_menu(pb::SetMenuRequest {
            app_id: app_id.to_string(),
            items_json: items.to_string(),
        })
        .await?
        .into_inner();
    answer(menu)
}

/// Removes the app's menu.
#[utoipa::path(
    delete, path = "/v1/menu", tag = "menu", operation_id = "deleteMenu",
    security(("jwt" = [])),
    responses((status = 200, description = "The empty menu", body = MenuAnswer), AuthErrors)
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<MenuAnswer>> {
    let (app_id, _) = caller.require_app_scope(WHAT)?;
    let menu = state
        .clients
        .users
        .clone()
        .set_menu(pb::SetMenuRequest {
            app_id: app_id.to_string(),
            items_json: "[]".to_owned(),
        })
        .await?
        .into_inner();
    answer(menu)
}
