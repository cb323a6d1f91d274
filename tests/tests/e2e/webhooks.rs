//! `/v1/webhooks` CRUD.

use e2e::suite;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn webhook_crud_with_default_events_and_a_secret() {
    let app = suite().create_app().await;
    let auth = app.app_jwt();
    let (status, created) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &auth,
            Some(json!({"target": "http://example.com/callback"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = &created["webhook"];
    let id = hook["_id"].as_str().unwrap();
    assert!(domain::id::is_id(id));
    assert_eq!(hook["target"], "http://example.com/callback");
    assert_eq!(hook["events"], json!(["message"]));
    assert_eq!(hook["secret"].as_str().unwrap().len(), 40);

    let path = format!("/v1/webhooks/{id}");
    let (status, got) = suite().call(Method::GET, &path, &auth, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["webhook"], *hook);

    let (status, updated) = suite()
        .call(
            Method::PUT,
            &path,
            &auth,
            Some(json!({"events": ["message:appUser"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["webhook"]["events"], json!(["message:appUser"]));
    assert_eq!(updated["webhook"]["target"], "http://example.com/callback");
    let (_, updated) = suite()
        .call(
            Method::PUT,
            &path,
            &auth,
            Some(json!({"target": "https://example.com/v2"})),
        )
        .await;
    assert_eq!(updated["webhook"]["target"], "https://example.com/v2");
    assert_eq!(updated["webhook"]["events"], json!(["message:appUser"]));
    assert_eq!(updated["webhook"]["secret"], hook["secret"]);

    let (status, list) = suite().call(Method::GET, "/v1/webhooks", &auth, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["webhooks"], json!([updated["webhook"]]));

    let (status, _) = suite().call(Method::DELETE, &path, &auth, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = suite().call(Method::GET, &path, &auth, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = suite().call(Method::DELETE, &path, &auth, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn webhook_events_and_targets_are_validated() {
    let app = suite().create_app().await;
    let auth = app.app_jwt();
    for (body, needle) in [
        (json!({}), "target"),
        (json!({"target": "ftp://example.com"}), "target"),
        (json!({"target": "not a url"}), "target"),
        (
            json!({"target": "http://example.com", "events": ["Message"]}),
            "event",
        ),
        (
            json!({"target": "http://example.com", "events": ["conversation:stop"]}),
            "event",
        ),
        (
            json!({"target": "http://example.com", "events": "message"}),
            "",
        ),
    ] {
        let (status, err) = suite()
            .call(Method::POST, "/v1/webhooks", &auth, Some(body.clone()))
            .await;
        if needle.is_empty() {
            // A single event as a string is accepted, like the reference's `event`.
            assert_eq!(status, StatusCode::CREATED, "{body}: {err}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(
            err["error"]["description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{err}"
        );
    }
    let (status, created) = suite()
        .call(Method::POST, "/v1/webhooks", &auth,
              Some(json!({"target": "http://example.com/cb", "events": ["message:appUser", "message:appMaker"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["webhook"]["events"],
        json!(["message:appUser", "message:appMaker"])
    );
    let path = format!(
        "/v1/webhooks/{}",
        created["webhook"]["_id"].as_str().unwrap()
    );
    let (status, _) = suite()
        .call(Method::PUT, &path, &auth, Some(json!({"events": ["nope"]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, got) = suite().call(Method::GET, &path, &auth, None).await;
    assert_eq!(
        got["webhook"]["events"],
        json!(["message:appUser", "message:appMaker"])
    );
}

#[tokio::test]
async fn another_apps_webhooks_are_invisible() {
    let a = suite().create_app().await;
    let b = suite().create_app().await;
    let (_, created) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &a.app_jwt(),
            Some(json!({"target": "http://example.com/a"})),
        )
        .await;
    let path = format!(
        "/v1/webhooks/{}",
        created["webhook"]["_id"].as_str().unwrap()
    );
    let (_, list) = suite()
        .call(Method::GET, "/v1/webhooks", &b.app_jwt(), None)
        .await;
    assert_eq!(list["webhooks"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = suite().call(method, &path, &b.app_jwt(), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = suite()
        .call(
            Method::PUT,
            &path,
            &b.app_jwt(),
            Some(json!({"target": "http://evil.example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, got) = suite().call(Method::GET, &path, &a.app_jwt(), None).await;
    assert_eq!(got["webhook"]["target"], "http://example.com/a");
}
