//! `/v1/apps`: the tenancy API with account scope.

use e2e::{account_jwt, suite, Auth};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_get_list_and_delete_an_app() {
    let s = suite();
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/apps",
            &account_jwt(),
            Some(json!({"name": "shop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let app = &body["app"];
    let id = app["_id"].as_str().unwrap();
    assert!(domain::id::is_id(id));
    assert_eq!(app["name"], "shop");
    assert_eq!(app["appToken"].as_str().unwrap().len(), 25);

    let (status, got) = s
        .call(Method::GET, &format!("/v1/apps/{id}"), &account_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["app"], *app);

    let (status, list) = s.call(Method::GET, "/v1/apps", &account_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["_id"] == id));

    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{id}"),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .call(Method::GET, &format!("/v1/apps/{id}"), &account_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn app_name_is_required() {
    let (status, body) = suite()
        .call(Method::POST, "/v1/apps", &account_jwt(), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("name"));
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let s = suite();
    let app = s.create_app().await;
    let path = format!("/v1/apps/{}/keys", app.id);
    let (status, body) = s.call(Method::GET, &path, &account_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["_id"], app.key_id.as_str());
    assert_eq!(keys[0]["secret"], app.secret.as_str());

    // The key works, then is revoked at once.
    let (status, _) = s
        .call(Method::GET, "/v1/webhooks", &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("{path}/{}", app.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .call(Method::GET, "/v1/webhooks", &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn another_apps_key_cannot_be_read_or_deleted_through_this_app() {
    let s = suite();
    let a = s.create_app().await;
    let b = s.create_app().await;
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}/keys/{}", a.id, b.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/v1/apps/{}/keys/{}", a.id, b.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call(Method::GET, "/v1/webhooks", &b.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "b's key still works");
}

#[tokio::test]
async fn deleting_an_app_revokes_its_token_and_keys() {
    let s = suite();
    let app = s.create_app().await;
    let user = app.init_user(None).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    assert_eq!(
        s.call(Method::GET, &path, &app.app_token(), None).await.0,
        StatusCode::OK
    );
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}", app.id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.call(Method::GET, &path, &app.app_token(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::GET, &path, &app.app_jwt(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_apps_api_needs_account_scope() {
    let s = suite();
    let app = s.create_app().await;
    for auth in [app.app_token(), app.app_jwt(), app.user_jwt("bob")] {
        let (status, body) = s.call(Method::GET, "/v1/apps", &auth, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}: {body}");
        let (status, _) = s
            .call(
                Method::GET,
                &format!("/v1/apps/{}/keys", app.id),
                &auth,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = s.call(Method::GET, "/v1/apps", &Auth::None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// smooch-core 3.x asks for an app-scope JWT of a key: it works as the app, and another
/// app's key id is not found under this app.
#[tokio::test]
async fn a_keys_jwt_is_an_app_scope_token_of_that_app() {
    let app = suite().create_app().await;
    let other = suite().create_app().await;
    let path = format!("/v1/apps/{}/keys/{}/jwt", app.id, app.key_id);
    let (status, body) = suite()
        .call(reqwest::Method::GET, &path, &e2e::account_jwt(), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let jwt = body["jwt"].as_str().unwrap().to_owned();
    let (status, hooks) = suite()
        .call(
            reqwest::Method::GET,
            "/v1/webhooks",
            &e2e::Auth::Jwt(jwt),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{hooks}");
    // Not for app credentials, and not across apps.
    let (status, _) = suite()
        .call(reqwest::Method::GET, &path, &app.app_jwt(), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let foreign = format!("/v1/apps/{}/keys/{}/jwt", app.id, other.key_id);
    let (status, _) = suite()
        .call(reqwest::Method::GET, &foreign, &e2e::account_jwt(), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}
