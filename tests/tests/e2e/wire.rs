//! Wire details: content types, CORS, error shapes, unknown routes.

use e2e::{suite, Auth};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn json_bodies_need_the_json_content_type() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let path = format!(
        "/v1/appusers/{}/conversation/messages",
        user["_id"].as_str().unwrap()
    );
    let response = suite()
        .request(Method::POST, &path, &app.app_token())
        .header("content-type", "text/plain")
        .body(r#"{"text":"hi","role":"appUser"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = e2e::parts(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    let response = suite()
        .request(Method::POST, &path, &app.app_token())
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"text":"hi","role":"appUser"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_json_is_400_with_an_error_body() {
    let app = suite().create_app().await;
    let response = suite()
        .request(Method::POST, "/v1/init", &app.app_token())
        .header("content-type", "application/json")
        .body(r#"{"device": {"id": "x""#)
        .send()
        .await
        .unwrap();
    let (status, body) = e2e::parts(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("JSON"));
}

#[tokio::test]
async fn a_json_body_on_get_is_ignored_and_successes_are_json() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    // The era's clients send content-type: application/json on every request, even GET.
    let response = suite()
        .request(
            Method::GET,
            &format!("/v1/appusers/{}", user["_id"].as_str().unwrap()),
            &app.app_token(),
        )
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body("{\"junk\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let (status, body) = suite()
        .call(Method::GET, "/v1/nothing/here", &Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let app = suite().create_app().await;
    let (status, body) = suite()
        .call(Method::PATCH, "/v1/webhooks", &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn cors_allows_any_origin_including_preflight() {
    let response = suite()
        .request(Method::OPTIONS, "/v1/init", &Auth::None)
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "app-token, content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("app-token"), "{allowed}");
    let app = suite().create_app().await;
    let response = suite()
        .request(Method::POST, "/v1/init", &app.app_token())
        .header("origin", "https://shop.example.com")
        .json(&json!({"device": {"id": "cors-device", "platform": "web"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
}

#[tokio::test]
async fn healthz_answers_when_every_role_serves() {
    let (status, body) = suite()
        .call(Method::GET, "/healthz", &Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_gateway_reaches_services_named_by_dns() {
    let mut config = suite().gateway_config();
    for addr in [
        &mut config.users_addr,
        &mut config.conversations_addr,
        &mut config.media_addr,
        &mut config.webhooks_addr,
    ] {
        *addr = addr.replace("127.0.0.1", "localhost");
    }
    let (base, shutdown) = e2e::start_gateway(config).await;
    let app = suite().create_app().await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let response = client
            .post(format!("{base}/v1/init"))
            .header("app-token", &app.token)
            .json(&json!({"device": {"id": format!("dns-{i}"), "platform": "web"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    shutdown.cancel();
}
