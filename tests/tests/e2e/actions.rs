//! Message actions (validated, each with an `_id`), metadata and text limits, and
//! postbacks (`POST .../conversation/postback`).

use e2e::{suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn post(app: &TestApp, user: &str, body: Value) -> (StatusCode, Value) {
    suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            &app.app_jwt(),
            Some(body),
        )
        .await
}

fn buttons() -> Value {
    json!([
        {"type": "link", "text": "Read more", "uri": "https://example.com/more"},
        {"type": "postback", "text": "Yes", "payload": "YES"},
        {"type": "reply", "text": "Maybe", "payload": "MAYBE", "iconUrl": "https://example.com/i.png"},
        {"type": "buy", "text": "Buy", "amount": 500}
    ])
}

/// Posts an appMaker message with every kind of action and returns it.
async fn message_with_buttons(app: &TestApp, user: &str) -> Value {
    let (status, body) = post(
        app,
        user,
        json!({"text": "Pick one", "role": "appMaker", "actions": buttons()}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["message"].clone()
}

fn description(body: &Value) -> &str {
    body["error"]["description"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn app_maker_actions_are_stored_each_with_an_id() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let message = message_with_buttons(&app, id).await;
    let actions = message["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 4);
    let ids: std::collections::HashSet<&str> =
        actions.iter().map(|a| a["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|i| domain::id::is_id(i)));
    let without_ids: Vec<Value> = actions
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.as_object_mut().unwrap().remove("_id");
            a
        })
        .collect();
    assert_eq!(
        json!(without_ids),
        json!([
            {"type": "link", "text": "Read more", "uri": "https://example.com/more"},
            {"type": "postback", "text": "Yes", "payload": "YES"},
            {"type": "reply", "text": "Maybe", "payload": "MAYBE", "iconUrl": "https://example.com/i.png"},
            {"type": "buy", "text": "Buy", "amount": 500, "currency": "usd"}
        ])
    );
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(got["conversation"]["messages"][0], message);
}

#[tokio::test]
async fn bad_actions_metadata_and_text_are_400_naming_the_field() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let maker = |extra: Value| {
        let mut body = json!({"text": "hi", "role": "appMaker"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (body, needle) in [
        (maker(json!({"actions": {"type": "link"}})), "actions"),
        (
            maker(json!({"actions": [{"type": "dance", "text": "x"}]})),
            "actions[0].type",
        ),
        (
            maker(json!({"actions": [{"type": "link", "text": "x"}]})),
            "actions[0].uri",
        ),
        (
            maker(json!({"actions": [{"type": "link", "text": "x", "uri": "no scheme"}]})),
            "uri",
        ),
        (
            maker(json!({"actions": [{"type": "postback", "text": "x"}]})),
            "actions[0].payload",
        ),
        (
            maker(json!({"actions": [{"type": "postback", "payload": "x"}]})),
            "actions[0].text",
        ),
        (
            maker(json!({"actions": [{"type": "buy", "text": "x", "amount": 0}]})),
            "amount",
        ),
        (
            maker(
                json!({"actions": [{"type": "buy", "text": "x", "amount": 1, "currency": "dollars"}]}),
            ),
            "currency",
        ),
        (
            json!({"text": "hi", "role": "appUser", "actions": [{"type": "postback", "text": "x", "payload": "y"}]}),
            "appMaker",
        ),
        (maker(json!({"metadata": {"a": {"b": 1}}})), "metadata.a"),
        (maker(json!({"metadata": {"a": null}})), "metadata.a"),
        (maker(json!({"metadata": [1]})), "metadata"),
        (
            maker(json!({"metadata": {"big": "x".repeat(5000)}})),
            "metadata",
        ),
        (
            json!({"text": "x".repeat(4097), "role": "appMaker"}),
            "text",
        ),
    ] {
        let (status, err) = post(&app, id, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(description(&err).contains(needle), "{needle}: {err}");
    }
    let (status, _) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    // Metadata of strings, numbers and booleans is fine.
    let (status, ok) = post(
        &app,
        id,
        maker(json!({"metadata": {"lang": "en-ca", "n": 1, "ok": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    assert_eq!(
        ok["message"]["metadata"],
        json!({"lang": "en-ca", "n": 1, "ok": true})
    );
}

#[tokio::test]
async fn postbacks_name_an_action_of_the_users_conversation() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("pat")).await;
    let id = user["_id"].as_str().unwrap();
    let message = message_with_buttons(&app, id).await;
    let action = |i: usize| message["actions"][i]["_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/appusers/{id}/conversation/postback");

    for auth in [app.app_token(), app.user_jwt("pat"), app.app_jwt()] {
        let (status, body) = suite()
            .call(
                Method::POST,
                &path,
                &auth,
                Some(json!({"actionId": action(1)})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["postbacks"][0]["action"], message["actions"][1]);
        assert_eq!(body["postbacks"][0]["message"]["_id"], message["_id"]);
    }
    // Reply buttons post back too.
    let (status, _) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"actionId": action(2)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A link is not a postback.
    let (status, err) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"actionId": action(0)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = suite()
        .call(Method::POST, &path, &app.app_token(), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(description(&err).contains("actionId"));
    // An id longer than any field may be is refused by name, not looked up.
    let (status, err) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"actionId": "a".repeat(10_000)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(description(&err).contains("actionId"), "{err}");
    let (status, _) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"actionId": domain::id::new_id()})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another user of the app cannot post back this user's action.
    let other_user = app.init_user(None).await;
    let other_path = format!(
        "/v1/appusers/{}/conversation/postback",
        other_user["_id"].as_str().unwrap()
    );
    let (status, _) = suite()
        .call(
            Method::POST,
            &other_path,
            &app.app_token(),
            Some(json!({"actionId": action(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nor another app, nor another user's token.
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(
            Method::POST,
            &path,
            &other.app_token(),
            Some(json!({"actionId": action(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = suite()
        .call(
            Method::POST,
            &path,
            &app.user_jwt("eve"),
            Some(json!({"actionId": action(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_new_webhook_events_can_be_subscribed_to() {
    let app = suite().create_app().await;
    let events = json!([
        "postback",
        "conversation:read",
        "conversation:start",
        "merge:appUser",
        "message"
    ]);
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &app.app_jwt(),
            Some(json!({"target": "https://example.com/hook", "events": events})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["webhook"]["events"], events);
}
