//! Users on multiple devices: an anonymous user who logs in as a known userId is merged
//! into that user (history, devices, profile), atomically and idempotently, races included.

use std::collections::HashSet;

use e2e::{suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn init(app: &TestApp, device: &str, user_id: Option<&str>) -> Value {
    let mut body = json!({"device": {"id": device, "platform": "ios", "appVersion": "1.0"}});
    if let Some(user_id) = user_id {
        body["userId"] = json!(user_id);
    }
    let (status, body) = suite()
        .call(Method::POST, "/v1/init", &app.app_token(), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["appUser"].clone()
}

async fn post_as_user(app: &TestApp, id: &str, text: &str) {
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{id}/conversation/messages"),
            &app.app_token(),
            Some(json!({"text": text, "role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn texts(app: &TestApp, id: &str) -> Vec<String> {
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(user: &Value) -> String {
    user["_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_anonymous_user_logging_in_as_a_known_user_is_merged_into_it() {
    let app = suite().create_app().await;
    let (phone, tablet) = (domain::id::new_id(), domain::id::new_id());
    let steve = id_of(&init(&app, &phone, Some("steve")).await);
    post_as_user(&app, &steve, "from the phone").await;
    let anonymous = id_of(&init(&app, &tablet, None).await);
    assert_ne!(anonymous, steve);
    post_as_user(&app, &anonymous, "from the tablet").await;
    let (status, _) = suite()
        .call(
            Method::PUT,
            &format!("/v1/appusers/{anonymous}"),
            &app.app_token(),
            Some(json!({"givenName": "Steve", "properties": {"plan": "free"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Init answers the survivor's `_id`.
    let merged = init(&app, &tablet, Some("steve")).await;
    assert_eq!(id_of(&merged), steve);
    assert_eq!(merged["userId"], "steve");
    assert_eq!(merged["givenName"], "Steve");
    assert_eq!(merged["properties"], json!({"plan": "free"}));
    assert_eq!(merged["conversationStarted"], true);

    // History moved, the anonymous messages now authored by the survivor.
    assert_eq!(
        texts(&app, &steve).await,
        ["from the phone", "from the tablet"]
    );
    let (_, conversation) = suite()
        .call(
            Method::GET,
            "/v1/appusers/steve/conversation",
            &app.app_token(),
            None,
        )
        .await;
    let messages = conversation["conversation"]["messages"].as_array().unwrap();
    assert!(messages.iter().all(|m| m["authorId"] == steve.as_str()));
    assert_eq!(conversation["conversation"]["appUsers"], json!([steve]));

    // The anonymous `_id` resolves to the survivor from now on.
    let (status, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{anonymous}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(id_of(&got["appUser"]), steve);
    let devices: HashSet<&str> = got["appUser"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, HashSet::from([phone.as_str(), tablet.as_str()]));
    assert_eq!(
        texts(&app, &anonymous).await,
        ["from the phone", "from the tablet"]
    );

    // Idempotent: the same init again changes nothing.
    let again = init(&app, &tablet, Some("steve")).await;
    assert_eq!(id_of(&again), steve);
    assert_eq!(
        texts(&app, &steve).await,
        ["from the phone", "from the tablet"]
    );

    // Another app cannot reach either id.
    let other = suite().create_app().await;
    for id in [&steve, &anonymous] {
        let (status, _) = suite()
            .call(
                Method::GET,
                &format!("/v1/appusers/{id}"),
                &other.app_token(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_survivor_without_a_conversation_takes_over_the_anonymous_one() {
    let app = suite().create_app().await;
    let steve = id_of(&init(&app, &domain::id::new_id(), Some("steve")).await);
    let tablet = domain::id::new_id();
    let anonymous = id_of(&init(&app, &tablet, None).await);
    post_as_user(&app, &anonymous, "hello?").await;
    let (status, _) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{steve}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let merged = init(&app, &tablet, Some("steve")).await;
    assert_eq!(id_of(&merged), steve);
    assert_eq!(merged["conversationStarted"], true);
    assert_eq!(texts(&app, &steve).await, ["hello?"]);
}

#[tokio::test]
async fn two_inits_of_one_user_id_on_two_devices_at_once_end_with_one_user() {
    let app = suite().create_app().await;
    for _ in 0..3 {
        let user_id = domain::id::new_id();
        let (a, b) = (domain::id::new_id(), domain::id::new_id());
        let (one, two) = tokio::join!(
            init(&app, &a, Some(&user_id)),
            init(&app, &b, Some(&user_id))
        );
        assert_eq!(id_of(&one), id_of(&two));
    }
}

#[tokio::test]
async fn concurrent_logins_of_anonymous_devices_merge_each_history_once() {
    let app = suite().create_app().await;
    let carol = id_of(&init(&app, &domain::id::new_id(), Some("carol")).await);
    let devices: Vec<String> = (0..3).map(|_| domain::id::new_id()).collect();
    let mut anonymous = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let id = id_of(&init(&app, device, None).await);
        post_as_user(&app, &id, &format!("anonymous {i}")).await;
        anonymous.push(id);
    }
    // Every device logs in twice at the same time.
    let mut logins = tokio::task::JoinSet::new();
    for device in devices.iter().chain(devices.iter()) {
        let (app, device) = (app.clone(), device.clone());
        logins.spawn(async move { init(&app, &device, Some("carol")).await });
    }
    while let Some(user) = logins.join_next().await {
        assert_eq!(id_of(&user.unwrap()), carol);
    }
    let mut got = texts(&app, &carol).await;
    got.sort();
    assert_eq!(got, ["anonymous 0", "anonymous 1", "anonymous 2"]);
    for id in &anonymous {
        let (_, user) = suite()
            .call(
                Method::GET,
                &format!("/v1/appusers/{id}"),
                &app.app_token(),
                None,
            )
            .await;
        assert_eq!(id_of(&user["appUser"]), carol);
    }
}

#[tokio::test]
async fn init_with_an_app_user_token_must_name_its_own_user_id() {
    let app = suite().create_app().await;
    let body =
        json!({"userId": "mallory", "device": {"id": domain::id::new_id(), "platform": "web"}});
    let (status, err) = suite()
        .call(Method::POST, "/v1/init", &app.user_jwt("alice"), Some(body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["error"]["description"]
        .as_str()
        .unwrap()
        .contains("userId"));
    let body =
        json!({"userId": "alice", "device": {"id": domain::id::new_id(), "platform": "web"}});
    let (status, ok) = suite()
        .call(Method::POST, "/v1/init", &app.user_jwt("alice"), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["appUser"]["userId"], "alice");
}
