//! Whispers: `/v1/whispers` CRUD (app scope) and their firing on app user events, once per
//! user per whisper, with platform / appVersion targeting.

use e2e::{suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, created) = suite()
        .call(Method::POST, "/v1/whispers", &app.app_jwt(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["whisper"].clone()
}

/// Inits a user on a new device of `platform` / `app_version` and returns its `_id`.
async fn user_on(app: &TestApp, platform: &str, app_version: &str) -> String {
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.app_token(),
            Some(json!({"device": {"id": domain::id::new_id(), "platform": platform, "appVersion": app_version}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["appUser"]["_id"].as_str().unwrap().to_owned()
}

async fn track(app: &TestApp, user: &str, body: Value) -> bool {
    let (status, answer) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/events"),
            &app.app_token(),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["conversationUpdated"].as_bool().unwrap()
}

#[tokio::test]
async fn whispers_are_created_listed_updated_and_deleted() {
    let app = suite().create_app().await;
    let whisper = create(
        &app,
        json!({"event": "completed_sale", "text": "Thanks for buying!", "name": "Shop",
               "avatarUrl": "https://example.com/a.png", "platform": "ios", "appVersion": "1.0",
               "actions": [{"type": "link", "text": "Receipt", "uri": "https://example.com/r"}]}),
    )
    .await;
    let id = whisper["_id"].as_str().unwrap().to_owned();
    assert!(domain::id::is_id(&id));
    assert_eq!(whisper["event"], "completed_sale");
    assert_eq!(whisper["text"], "Thanks for buying!");
    assert_eq!(whisper["name"], "Shop");
    assert_eq!(whisper["platform"], "ios");
    assert_eq!(whisper["appVersion"], "1.0");
    assert!(domain::id::is_id(
        whisper["actions"][0]["_id"].as_str().unwrap()
    ));

    let path = format!("/v1/whispers/{id}");
    let (status, got) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["whisper"], whisper);
    let (_, list) = suite()
        .call(Method::GET, "/v1/whispers", &app.app_jwt(), None)
        .await;
    assert_eq!(list["whispers"], json!([whisper]));

    let (status, updated) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_jwt(),
            Some(json!({"text": "Thank you!", "platform": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["whisper"]["text"], "Thank you!");
    assert_eq!(updated["whisper"]["event"], "completed_sale");
    assert_eq!(updated["whisper"]["name"], "Shop");
    assert!(updated["whisper"].get("platform").is_none(), "{updated}");
    assert_eq!(updated["whisper"]["appVersion"], "1.0");

    // Another app sees nothing of it.
    let other = suite().create_app().await;
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = suite().call(method, &path, &other.app_jwt(), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = suite()
        .call(
            Method::PUT,
            &path,
            &other.app_jwt(),
            Some(json!({"text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, none) = suite()
        .call(Method::GET, "/v1/whispers", &other.app_jwt(), None)
        .await;
    assert_eq!(none["whispers"], json!([]));

    let (status, deleted) = suite()
        .call(Method::DELETE, &path, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, _) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn whispers_need_app_scope_and_valid_fields() {
    let app = suite().create_app().await;
    for auth in [app.app_token(), app.user_jwt("u")] {
        let (status, _) = suite().call(Method::GET, "/v1/whispers", &auth, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for (body, needle) in [
        (json!({"text": "hi"}), "event"),
        (json!({"event": "e"}), "text"),
        (json!({"event": "e", "text": 5}), "text"),
        (
            json!({"event": "e", "text": "hi", "platform": "palm"}),
            "platform",
        ),
        (
            json!({"event": "e", "text": "hi", "actions": [{"type": "buy", "text": "x"}]}),
            "actions[0].amount",
        ),
        (
            json!({"event": "e", "text": "hi", "actions": "none"}),
            "actions",
        ),
    ] {
        let (status, err) = suite()
            .call(
                Method::POST,
                "/v1/whispers",
                &app.app_jwt(),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(
            err["error"]["description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{needle}: {err}"
        );
    }
}

#[tokio::test]
async fn a_matching_whisper_posts_once_per_user() {
    let app = suite().create_app().await;
    let whisper = create(
        &app,
        json!({"event": "completed_sale", "text": "Thanks for buying!", "name": "Shop",
               "actions": [{"type": "postback", "text": "Rate us", "payload": "RATE"}]}),
    )
    .await;
    let user = user_on(&app, "ios", "1.0").await;
    assert!(!track(&app, &user, json!({"name": "opened_app"})).await);
    assert!(track(&app, &user, json!({"name": "completed_sale"})).await);
    assert!(
        !track(&app, &user, json!({"name": "completed_sale"})).await,
        "once per user"
    );

    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    let messages = got["conversation"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["role"], "appMaker");
    assert_eq!(message["text"], "Thanks for buying!");
    assert_eq!(message["name"], "Shop");
    assert_eq!(message["actions"][0]["payload"], "RATE");
    assert_ne!(message["actions"][0]["_id"], whisper["actions"][0]["_id"]);
    assert_eq!(got["conversation"]["unreadCount"], 1);
    let (_, profile) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(profile["appUser"]["conversationStarted"], true);

    // The whisper's action posts back like any other.
    let (status, _) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/postback"),
            &app.app_token(),
            Some(json!({"actionId": message["actions"][0]["_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Another user gets it too; concurrent events still fire it once.
    let other = user_on(&app, "android", "3.0").await;
    let (a, b) = tokio::join!(
        track(&app, &other, json!({"name": "completed_sale"})),
        track(&app, &other, json!({"name": "completed_sale"}))
    );
    assert!(
        a ^ b,
        "exactly one of two concurrent events fires it: {a} {b}"
    );
}

/// The texts of a user's conversation (none when it has no conversation).
async fn texts(app: &TestApp, user: &str) -> Vec<String> {
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    got["conversation"]["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["text"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn whispers_target_the_platform_and_app_version_of_the_device() {
    let app = suite().create_app().await;
    create(
        &app,
        json!({"event": "opened", "text": "Hi Android", "platform": "android"}),
    )
    .await;
    create(
        &app,
        json!({"event": "opened", "text": "Hi 2.0", "appVersion": "2.0"}),
    )
    .await;
    create(
        &app,
        json!({"event": "opened", "text": "Hi iOS 2.0", "platform": "ios", "appVersion": "2.0"}),
    )
    .await;

    let web = user_on(&app, "web", "1.0").await;
    assert!(!track(&app, &web, json!({"name": "opened"})).await);
    let android = user_on(&app, "android", "1.0").await;
    assert!(track(&app, &android, json!({"name": "opened"})).await);
    assert_eq!(texts(&app, &android).await, ["Hi Android"]);
    let ios = user_on(&app, "ios", "2.0").await;
    assert!(track(&app, &ios, json!({"name": "opened"})).await);
    let mut got = texts(&app, &ios).await;
    got.sort();
    assert_eq!(got, ["Hi 2.0", "Hi iOS 2.0"]);
}

#[tokio::test]
async fn event_attributes_are_applied_before_whispers_fire() {
    let app = suite().create_app().await;
    let user = user_on(&app, "ios", "1.0").await;
    let fired = track(
        &app,
        &user,
        json!({"name": "signed_up", "appUser": {"givenName": "Steve", "properties": {"plan": "pro"}}}),
    )
    .await;
    assert!(!fired);
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(got["appUser"]["givenName"], "Steve");
    assert_eq!(got["appUser"]["properties"], json!({"plan": "pro"}));
    let (status, err) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/events"),
            &app.app_token(),
            Some(json!({"name": "x", "appUser": {"properties": {"a": [1]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["error"]["description"]
        .as_str()
        .unwrap()
        .contains("properties.a"));
}
