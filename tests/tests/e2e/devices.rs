//! Devices: `POST .../pushToken`, `PUT .../devices/{deviceId}`, and pre-created users
//! (`POST /v1/appusers`).

use e2e::{suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Inits a new ios device and returns (appUser `_id`, device id).
async fn user_on_device(app: &TestApp) -> (String, String) {
    let device = domain::id::new_id();
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.app_token(),
            Some(json!({"device": {"id": device, "platform": "ios", "appVersion": "1.0"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["appUser"]["_id"].as_str().unwrap().to_owned(), device)
}

fn description(body: &Value) -> &str {
    body["error"]["description"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn push_tokens_are_set_on_a_known_device() {
    let app = suite().create_app().await;
    let (user, device) = user_on_device(&app).await;
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/pushToken"),
            &app.app_token(),
            Some(json!({"deviceId": device, "token": "apn-token-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device"]["id"], device.as_str());
    assert_eq!(body["device"]["pushNotificationToken"], "apn-token-1");
    assert_eq!(body["device"]["platform"], "ios");
    assert_eq!(body["device"]["status"], "active");

    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(
        got["appUser"]["devices"][0]["pushNotificationToken"],
        "apn-token-1"
    );
    // Devices are for app-scope callers only.
    let (_, public) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_token(),
            None,
        )
        .await;
    assert!(public["appUser"].get("devices").is_none(), "{public}");
}

#[tokio::test]
async fn push_tokens_need_both_fields_and_a_device_of_the_user() {
    let app = suite().create_app().await;
    let (user, device) = user_on_device(&app).await;
    let path = format!("/v1/appUsers/{user}/pushToken");
    for (body, needle) in [
        (json!({"token": "t"}), "deviceId"),
        (json!({"deviceId": device}), "token"),
        (json!({"deviceId": device, "token": 5}), "token"),
    ] {
        let (status, err) = suite()
            .call(Method::POST, &path, &app.app_token(), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(description(&err).contains(needle), "{err}");
    }
    let (status, err) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"deviceId": "not-my-device", "token": "t"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    // Another app's credentials do not find the user.
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(
            Method::POST,
            &path,
            &other.app_token(),
            Some(json!({"deviceId": device, "token": "t"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn device_updates_are_additive_and_add_new_devices() {
    let app = suite().create_app().await;
    let (user, device) = user_on_device(&app).await;
    let path = format!("/v1/appusers/{user}/devices/{device}");
    let (status, first) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_token(),
            Some(json!({"appVersion": "2.0", "info": {"carrier": "Acme"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["device"]["appVersion"], "2.0");
    let (_, second) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_token(),
            Some(json!({"pushNotificationToken": "gcm-1", "info": {"wifi": "YES"}})),
        )
        .await;
    let d = &second["device"];
    assert_eq!(d["platform"], "ios");
    assert_eq!(d["appVersion"], "2.0");
    assert_eq!(d["pushNotificationToken"], "gcm-1");
    assert_eq!(d["info"], json!({"carrier": "Acme", "wifi": "YES"}));

    let (status, added) = suite()
        .call(
            Method::PUT,
            &format!("/v1/appUsers/{user}/devices/laptop-1"),
            &app.app_token(),
            Some(json!({"platform": "web"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["device"]["platform"], "web");
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(got["appUser"]["devices"].as_array().unwrap().len(), 2);

    for (body, needle) in [
        (json!({"platform": "palm"}), "platform"),
        (json!({"info": {"nested": {"a": 1}}}), "info.nested"),
        (json!({"info": [1]}), "info"),
    ] {
        let (status, err) = suite()
            .call(Method::PUT, &path, &app.app_token(), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(description(&err).contains(needle), "{err}");
    }
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(Method::PUT, &path, &other.app_jwt(), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_can_be_pre_created_with_app_scope() {
    let app = suite().create_app().await;
    let body = json!({
        "userId": "steveb@channel5.com",
        "givenName": "Steve",
        "surname": "Brule",
        "email": "steveb@channel5.com",
        "signedUpAt": "2015-10-08T23:52:11.677Z",
        "properties": {"favoriteFood": "prunes"}
    });
    let (status, created) = suite()
        .call(
            Method::POST,
            "/v1/appusers",
            &app.app_jwt(),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let user = &created["appUser"];
    assert!(domain::id::is_id(user["_id"].as_str().unwrap()));
    assert_eq!(user["userId"], "steveb@channel5.com");
    assert_eq!(user["givenName"], "Steve");
    assert_eq!(user["surname"], "Brule");
    assert_eq!(user["signedUpAt"], "2015-10-08T23:52:11.677Z");
    assert_eq!(user["properties"], json!({"favoriteFood": "prunes"}));
    assert_eq!(user["conversationStarted"], false);
    assert_eq!(user["devices"], json!([]));

    let (status, again) = suite()
        .call(Method::POST, "/v1/appUsers", &app.app_jwt(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "conflict");

    // Init with that userId finds the pre-created user.
    let (_, init) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.app_token(),
            Some(json!({"userId": "steveb@channel5.com", "device": {"id": domain::id::new_id(), "platform": "web"}})),
        )
        .await;
    assert_eq!(init["appUser"]["_id"], user["_id"]);
    // The same userId is free in another app.
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(
            Method::POST,
            "/v1/appusers",
            &other.app_jwt(),
            Some(json!({"userId": "steveb@channel5.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn pre_creating_needs_app_scope_and_a_valid_body() {
    let app = suite().create_app().await;
    for auth in [app.app_token(), app.user_jwt("bob")] {
        let (status, err) = suite()
            .call(
                Method::POST,
                "/v1/appusers",
                &auth,
                Some(json!({"userId": "bob"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    }
    for (body, needle) in [
        (json!({}), "userId"),
        (json!({"userId": "  "}), "userId"),
        (
            json!({"userId": "x", "properties": {"a": [1]}}),
            "properties.a",
        ),
        (
            json!({"userId": "x", "signedUpAt": "yesterday"}),
            "signedUpAt",
        ),
        (json!({"userId": 7}), "userId"),
    ] {
        let (status, err) = suite()
            .call(
                Method::POST,
                "/v1/appusers",
                &app.app_jwt(),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(description(&err).contains(needle), "{body}: {err}");
    }
}
