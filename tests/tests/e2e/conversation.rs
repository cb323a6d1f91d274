//! Conversations and posting messages.

use e2e::suite;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn conversation_is_404_before_the_first_message_then_holds_it() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let path = format!("/v1/appusers/{id}/conversation");
    let (status, body) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let (status, posted) = suite()
        .call(
            Method::POST,
            &format!("{path}/messages"),
            &app.app_token(),
            Some(json!({"text": "Just put some vinegar on it", "role": "appUser", "avatarUrl": "https://www.gravatar.com/image.jpg"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    let message = &posted["message"];
    assert!(domain::id::is_id(message["_id"].as_str().unwrap()));
    assert_eq!(message["authorId"], id);
    assert_eq!(message["role"], "appUser");
    assert_eq!(message["text"], "Just put some vinegar on it");
    assert_eq!(message["avatarUrl"], "https://www.gravatar.com/image.jpg");
    let received = message["received"].as_f64().unwrap();
    let now = domain::time::now_ms() as f64 / 1000.0;
    assert!(
        (now - received).abs() < 60.0,
        "received {received} is float seconds"
    );
    let conversation = &posted["conversation"];
    assert!(domain::id::is_id(conversation["_id"].as_str().unwrap()));
    assert_eq!(conversation["appUsers"], json!([id]));
    assert_eq!(conversation["appMakers"], json!([]));
    assert_eq!(conversation["messages"], json!([message]));

    let (status, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["conversation"], *conversation);
    let (_, user) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(user["appUser"]["conversationStarted"], true);
}

#[tokio::test]
async fn app_user_messages_default_their_name_from_the_profile() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("steve")).await;
    let id = user["_id"].as_str().unwrap();
    suite()
        .call(
            Method::PUT,
            &format!("/v1/appusers/{id}"),
            &app.app_token(),
            Some(json!({"givenName": "Steve", "surname": "Brule"})),
        )
        .await;
    let posted = app.post_message("steve", "appUser", "hi").await;
    assert_eq!(posted["message"]["name"], "Steve Brule");
    let (_, named) = suite()
        .call(
            Method::POST,
            "/v1/appusers/steve/conversation/messages",
            &app.app_token(),
            Some(json!({"text": "hi", "role": "appUser", "name": "Stevie"})),
        )
        .await;
    assert_eq!(named["message"]["name"], "Stevie");
}

#[tokio::test]
async fn app_maker_messages_need_an_app_scope_jwt() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("frank")).await;
    let path = "/v1/appusers/frank/conversation/messages";
    let body = json!({"text": "How can I help?", "role": "appMaker", "name": "Support"});
    for auth in [app.app_token(), app.user_jwt("frank")] {
        let (status, err) = suite()
            .call(Method::POST, path, &auth, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}: {err}");
    }
    let (status, posted) = suite()
        .call(Method::POST, path, &app.app_jwt(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["message"]["role"], "appMaker");
    assert_eq!(posted["message"]["name"], "Support");
    assert_eq!(posted["message"]["authorId"], app.key_id.as_str());
    assert_eq!(posted["conversation"]["appMakers"], json!([app.key_id]));
    assert_eq!(posted["conversation"]["appUsers"], json!([user["_id"]]));
    // An appUser JWT may post as its own user.
    let (status, _) = suite()
        .call(
            Method::POST,
            path,
            &app.user_jwt("frank"),
            Some(json!({"text": "thanks", "role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn messages_keep_their_order_and_optional_fields() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    for i in 0..5 {
        app.post_message(
            id,
            if i % 2 == 0 { "appUser" } else { "appMaker" },
            &format!("m{i}"),
        )
        .await;
    }
    let (_, with_media) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{id}/conversation/messages"),
            &app.app_jwt(),
            Some(json!({"text": "see", "role": "appMaker", "email": "a@b.c", "mediaUrl": "https://example.com/a.png",
                        "mediaType": "image/png", "metadata": {"lang": "en", "n": 1, "ok": true}})),
        )
        .await;
    let m = &with_media["message"];
    assert_eq!(m["email"], "a@b.c");
    assert_eq!(m["mediaUrl"], "https://example.com/a.png");
    assert_eq!(m["mediaType"], "image/png");
    assert_eq!(m["metadata"], json!({"lang": "en", "n": 1, "ok": true}));
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    let texts: Vec<&str> = got["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4", "see"]);
}

#[tokio::test]
async fn bad_messages_are_400_and_store_nothing() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let path = format!("/v1/appusers/{id}/conversation/messages");
    let long = "x".repeat(domain::validate::MAX_TEXT_CHARS + 1);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"role": "appUser"}), "text"),
        (json!({"text": "hi"}), "role"),
        (json!({"text": "hi", "role": "admin"}), "role"),
        (json!({"text": "", "role": "appUser"}), "text"),
        (json!({"text": long, "role": "appUser"}), "text"),
        (json!({"text": 42, "role": "appUser"}), "text"),
        (
            json!({"text": "hi", "role": "appUser", "metadata": {"a": [1]}}),
            "metadata",
        ),
        (
            json!({"text": "hi", "role": "appUser", "metadata": "x"}),
            "metadata",
        ),
    ];
    for (body, needle) in cases {
        let (status, err) = suite()
            .call(Method::POST, &path, &app.app_token(), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["code"], "bad_request");
        assert!(
            err["error"]["description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{err}"
        );
    }
    let (status, _) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no conversation was created");
}

#[tokio::test]
async fn posting_to_an_unknown_user_is_404() {
    let app = suite().create_app().await;
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/appusers/ghost/conversation/messages",
            &app.app_token(),
            Some(json!({"text": "hi", "role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// Messages carry `type` and `source`; an image may come without text; the reference's own
/// `"metadata": []` means none.
#[tokio::test]
async fn messages_carry_type_and_source_and_images_need_no_text() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let path = format!("/v1/appusers/{id}/conversation/messages");
    let (status, plain) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({"text": "hi", "role": "appUser", "metadata": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["message"]["type"], "text");
    assert_eq!(plain["message"]["source"], json!({"type": "api"}));
    assert!(plain["message"].get("metadata").is_none(), "{plain}");

    let url = "https://media.example.com/cat.jpg";
    let (status, image) = suite()
        .call(
            Method::POST,
            &path,
            &app.app_token(),
            Some(json!({
                "role": "appUser", "mediaUrl": url, "mediaType": "image/jpeg",
                "source": {"type": "web", "id": "5a0b1c2d3e4f"}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    let message = &image["message"];
    assert_eq!(message["type"], "image");
    assert_eq!(message["text"], url);
    assert_eq!(message["mediaUrl"], url);
    assert_eq!(
        message["source"],
        json!({"type": "web", "id": "5a0b1c2d3e4f"})
    );
    // The conversation shows the same message.
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    let messages = got["conversation"]["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap(), message);

    // Neither text nor mediaUrl, or a source that is not an object: 400 naming the field.
    for (body, says) in [
        (json!({"role": "appUser"}), "text"),
        (
            json!({"role": "appUser", "text": "x", "source": "web"}),
            "source",
        ),
        (
            json!({"role": "appUser", "text": "x", "metadata": [1]}),
            "metadata",
        ),
    ] {
        let (status, err) = suite()
            .call(Method::POST, &path, &app.app_token(), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        let description = err["error"]["description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
    }
}

/// The Web Messenger 3.x names its device as `deviceId` (not `source`); the user's own
/// device becomes the source, so the widget can skip its own echoes.
#[tokio::test]
async fn a_users_device_named_as_device_id_is_the_source() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let (_, got) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{id}"),
            &app.app_jwt(),
            None,
        )
        .await;
    // Devices are shown to the app maker only.
    let device = got["appUser"]["devices"][0]["id"].as_str().unwrap();
    let path = format!("/v1/appusers/{id}/conversation/messages");
    for (extra, source) in [
        (
            json!({"deviceId": device}),
            json!({"type": "ios", "id": device}),
        ),
        // Not one of the user's devices: ignored.
        (json!({"deviceId": "someone-elses"}), json!({"type": "api"})),
        // `source`, when given, wins.
        (
            json!({"deviceId": device, "source": {"type": "web", "id": "x1"}}),
            json!({"type": "web", "id": "x1"}),
        ),
    ] {
        let mut body = json!({"text": "hi", "role": "appUser"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = suite()
            .call(Method::POST, &path, &app.app_token(), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["message"]["source"], source, "{extra}");
    }
}

/// smooch-core 2.x reads and posts at `/v1/appusers/{id}/messages`: `{messages, previous,
/// next}` with links along the same path; another app's or user's credentials get nothing.
#[tokio::test]
async fn the_later_messages_paths_post_and_page() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("messages-path@example.com")).await;
    let id = user["_id"].as_str().unwrap();
    let path = "/v1/appusers/messages-path%40example.com/messages";
    for n in 0..3 {
        let (status, posted) = suite()
            .call(
                Method::POST,
                path,
                &app.app_token(),
                Some(json!({"text": format!("m{n}"), "role": "appUser"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{posted}");
        assert_eq!(posted["message"]["text"], format!("m{n}"));
        assert_eq!(posted["conversation"]["appUsers"], json!([id]));
    }
    let (status, page) = suite()
        .call(Method::GET, path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);
    assert!(page.get("conversation").is_none(), "{page}");
    // A page before the last message links onwards along the same path.
    let last = page["messages"][2]["received"].as_f64().unwrap();
    let (status, older) = suite()
        .call(
            Method::GET,
            &format!("/v1/appUsers/{id}/messages?before={last}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{older}");
    assert_eq!(older["messages"].as_array().unwrap().len(), 2);
    let next = older["next"].as_str().unwrap();
    assert!(
        next.contains(&format!("/v1/appusers/{id}/messages?after=")),
        "{next}"
    );

    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(Method::GET, path, &other.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = suite()
        .call(Method::GET, path, &app.user_jwt("someone-else"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// `DELETE /v1/appusers/{id}/messages` (app scope) empties the conversation; app tokens,
/// appUser JWTs and other apps cannot.
#[tokio::test]
async fn an_app_deletes_a_users_messages() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("forget-me@example.com")).await;
    let id = user["_id"].as_str().unwrap();
    for text in ["one", "two"] {
        app.post_message(id, "appUser", text).await;
    }
    let path = format!("/v1/appusers/{id}/messages");
    let other = suite().create_app().await;
    for (auth, want) in [
        (app.app_token(), StatusCode::FORBIDDEN),
        (app.user_jwt("forget-me@example.com"), StatusCode::FORBIDDEN),
        (other.app_jwt(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = suite().call(Method::DELETE, &path, &auth, None).await;
        assert_eq!(status, want, "{auth:?}: {body}");
    }
    let (status, _) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = suite()
        .call(Method::DELETE, &path, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let (status, page) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["messages"], json!([]));
    // The conversation goes on.
    app.post_message(id, "appUser", "three").await;
    let (_, page) = suite().call(Method::GET, &path, &app.app_jwt(), None).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_post_answer_carries_the_latest_ten_messages_as_a_read_would() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/appusers/{id}/conversation/messages");
    let mut last = Value::Null;
    for n in 0..12 {
        let (status, posted) = suite()
            .call(
                Method::POST,
                &path,
                &app.app_token(),
                Some(json!({"text": format!("message {n}"), "role": "appUser"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{posted}");
        let texts: Vec<&str> = posted["conversation"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        // The page grows with the conversation up to ten, newest last: this message.
        assert_eq!(texts.len(), (n + 1).min(10), "{texts:?}");
        assert_eq!(texts.last().copied(), Some(format!("message {n}").as_str()));
        last = posted;
    }
    let (status, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let all = got["conversation"]["messages"].as_array().unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(
        last["conversation"]["messages"].as_array().unwrap()[..],
        all[2..],
        "the post answer's page is the read's latest ten"
    );
    // Another app's token does not reach this user's conversation.
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(Method::GET, &path, &other.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
