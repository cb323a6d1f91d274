//! `/v1/init` and `/v1/appusers/{id}`.

use e2e::suite;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn init(app: &e2e::TestApp, body: Value) -> (StatusCode, Value) {
    suite()
        .call(Method::POST, "/v1/init", &app.app_token(), Some(body))
        .await
}

#[tokio::test]
async fn init_creates_a_user_and_the_same_device_returns_it() {
    let app = suite().create_app().await;
    let device = json!({"id": "03f70682b7f5b21536a3674f38b3e220", "platform": "ios", "appVersion": "1.0",
                        "info": {"os": "iPhone OS", "wifi": "YES"}});
    let (status, first) = init(&app, json!({"device": device})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let user = &first["appUser"];
    assert!(domain::id::is_id(user["_id"].as_str().unwrap()));
    assert_eq!(user["properties"], json!({}));
    assert_eq!(user["conversationStarted"], false);
    let signed_up = user["signedUpAt"].as_str().unwrap();
    assert!(
        signed_up.ends_with('Z') && signed_up.len() == 24,
        "{signed_up}"
    );
    // The reference's init app fields, with no push credentials configured.
    assert_eq!(first["app"]["hasIcon"], false);
    assert_eq!(first["app"]["apnEnabled"], false);
    assert!(first["app"]["gcmProject"].is_null(), "{first}");
    assert!(first["app"].get("gcmProject").is_some(), "{first}");
    // What the Web Messenger 3.x reads on start.
    let web = &first["app"]["settings"]["web"];
    assert_eq!(web["accentColor"], "0099ff", "{first}");
    assert_eq!(web["displayStyle"], "button");
    assert!(web["channels"].is_object());
    assert_eq!(first["app"]["integrations"], json!([]));
    assert!(
        user.get("devices").is_none(),
        "devices are for app-scope callers only"
    );
    let (_, again) = init(&app, json!({"device": device})).await;
    assert_eq!(again["appUser"]["_id"], user["_id"]);
}

#[tokio::test]
async fn user_id_links_a_user_across_devices() {
    let app = suite().create_app().await;
    let (_, a) = init(
        &app,
        json!({"userId": "steveb@channel5.com", "device": {"id": "dev-a", "platform": "ios"}}),
    )
    .await;
    let (_, b) = init(
        &app,
        json!({"userId": "steveb@channel5.com", "device": {"id": "dev-b", "platform": "web"}}),
    )
    .await;
    assert_eq!(a["appUser"]["_id"], b["appUser"]["_id"]);
    assert_eq!(b["appUser"]["userId"], "steveb@channel5.com");
    // The app-scope view lists both devices.
    let (status, got) = suite()
        .call(
            Method::GET,
            "/v1/appusers/steveb%40channel5.com",
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let devices = got["appUser"]["devices"].as_array().unwrap();
    let mut ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["dev-a", "dev-b"]);
}

#[tokio::test]
async fn init_rejects_bad_devices() {
    let app = suite().create_app().await;
    for (body, needle) in [
        (json!({}), "device"),
        (json!({"device": {"platform": "ios"}}), "device.id"),
        (json!({"device": {"id": "d1"}}), "device.platform"),
        (
            json!({"device": {"id": "d1", "platform": "windows"}}),
            "platform",
        ),
        (
            json!({"device": {"id": "d1", "platform": "ios", "info": {"a": {"b": 1}}}}),
            "info",
        ),
        (json!({"device": "d1"}), "device"),
    ] {
        let (status, err) = init(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        let description = err["error"]["description"].as_str().unwrap();
        assert!(description.contains(needle), "{body}: {description}");
    }
}

#[tokio::test]
async fn init_with_app_user_jwt_must_match_its_user_id() {
    let app = suite().create_app().await;
    let device = json!({"id": "d-jwt", "platform": "android"});
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.user_jwt("bob"),
            Some(json!({"userId": "alice", "device": device})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.user_jwt("bob"),
            Some(json!({"device": device})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["appUser"]["userId"], "bob");
}

#[tokio::test]
async fn get_by_app_user_id_or_user_id_on_both_casings() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("dana")).await;
    let id = user["_id"].as_str().unwrap();
    for path in [
        format!("/v1/appusers/{id}"),
        format!("/v1/appUsers/{id}"),
        "/v1/appusers/dana".to_owned(),
        "/v1/appUsers/dana".to_owned(),
    ] {
        let (status, body) = suite()
            .call(Method::GET, &path, &app.app_token(), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["appUser"]["_id"], id);
    }
    let (status, body) = suite()
        .call(Method::GET, "/v1/appusers/nobody", &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = suite()
        .call(
            Method::GET,
            "/v1/appusers/000000000000000000000000",
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn update_is_additive_including_properties() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("erin")).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    let (status, body) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_token(),
            Some(json!({"givenName": "Erin", "properties": {"plan": "pro", "seats": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = suite()
        .call(Method::PUT, &path, &app.app_token(), Some(json!({"surname": "Doe", "email": "erin@example.com", "properties": {"seats": 4}, "signedUpAt": "2015-10-08T23:52:11.677Z"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let u = &body["appUser"];
    assert_eq!(u["givenName"], "Erin");
    assert_eq!(u["surname"], "Doe");
    assert_eq!(u["email"], "erin@example.com");
    assert_eq!(u["properties"], json!({"plan": "pro", "seats": 4}));
    assert_eq!(u["signedUpAt"], "2015-10-08T23:52:11.677Z");
    let (_, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(got["appUser"], *u);
}

#[tokio::test]
async fn update_rejects_bad_values() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    for (body, needle) in [
        (
            json!({"properties": {"nested": {"a": 1}}}),
            "properties.nested",
        ),
        (json!({"properties": "x"}), "properties"),
        (json!({"signedUpAt": "yesterday"}), "signedUpAt"),
        (json!({"givenName": 5}), "givenName"),
    ] {
        let (status, err) = suite()
            .call(Method::PUT, &path, &app.app_token(), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(
            err["error"]["description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{err}"
        );
    }
    // Nothing was half-written.
    let (_, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(got["appUser"]["properties"], json!({}));
}

#[tokio::test]
async fn track_event_answers_conversation_updated() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let path = format!("/v1/appusers/{}/events", user["_id"].as_str().unwrap());
    let (status, body) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"name": "completed_sale"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"conversationUpdated": false}));
    let (status, _) = suite()
        .call(Method::POST, &path, &app.app_token(), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// `DELETE /v1/appusers/{id}/profile` clears names, email and properties and keeps the
/// user; JWTs only, and only the user's own appUser JWT or its app's.
#[tokio::test]
async fn a_profile_is_cleared_but_the_user_kept() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("clear-me@example.com")).await;
    let id = user["_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/appusers/{id}");
    let (status, _) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_jwt(),
            Some(json!({"givenName": "Steve", "email": "s@example.com", "properties": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let profile = format!("{path}/profile");
    let other = suite().create_app().await;
    for (auth, want) in [
        (app.app_token(), StatusCode::FORBIDDEN),
        (app.user_jwt("someone-else"), StatusCode::FORBIDDEN),
        (other.app_jwt(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = suite().call(Method::DELETE, &profile, &auth, None).await;
        assert_eq!(status, want, "{auth:?}: {body}");
    }
    let (status, body) = suite()
        .call(
            Method::DELETE,
            &profile,
            &app.user_jwt("clear-me@example.com"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cleared = &body["appUser"];
    assert_eq!(cleared["_id"], id.as_str());
    assert_eq!(cleared["userId"], "clear-me@example.com");
    assert_eq!(cleared["properties"], json!({}));
    assert!(
        cleared.get("givenName").is_none() || cleared["givenName"].is_null(),
        "{cleared}"
    );
    assert!(
        cleared.get("email").is_none() || cleared["email"].is_null(),
        "{cleared}"
    );
    let (status, got) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["appUser"]["properties"], json!({}));
    assert_eq!(got["appUser"]["signedUpAt"], user["signedUpAt"]);
}
