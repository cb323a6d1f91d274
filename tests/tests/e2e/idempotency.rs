//! `Idempotency-Key` on `POST .../conversation/messages` and `.../conversation/images`:
//! a retried request gets the first response back and posts nothing; the same key with
//! another request is a conflict; keys are scoped by app and app user.

use e2e::{suite, Auth, TestApp};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x02, 0x01, 0xA1, 0xE3, 0xD5, 0x8A, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Posts `body` as a message of `user` with `key`; status, `idempotent-replayed` and body.
async fn post_keyed(
    auth: &Auth,
    user: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let response = suite()
        .request(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            auth,
        )
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = e2e::parts(response).await;
    (status, replayed, body)
}

async fn message_count(app: &TestApp, user: &str) -> usize {
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conversation"]["messages"].as_array().unwrap().len()
}

async fn new_user(app: &TestApp) -> String {
    app.init_user(None).await["_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_retried_message_returns_the_original_response_and_posts_once() {
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    let body = json!({"text": "hello once", "role": "appUser", "metadata": {"a": 1}});
    let (status, replayed, first) =
        post_keyed(&app.app_token(), &user, "key-1", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(replayed, None);
    // Another message in between: the replay still shows the conversation as it was.
    app.post_message(&user, "appMaker", "in between").await;
    let (status, replayed, again) = post_keyed(&app.app_token(), &user, "key-1", body).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again, first);
    assert_eq!(message_count(&app, &user).await, 2);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_a_conflict() {
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    let auth = app.app_token();
    let (status, _, _) = post_keyed(
        &auth,
        &user,
        "key-2",
        json!({"text": "first", "role": "appUser"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = post_keyed(
        &auth,
        &user,
        "key-2",
        json!({"text": "second", "role": "appUser"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let description = body["error"]["description"].as_str().unwrap();
    assert!(
        description.contains("Idempotency-Key") && description.contains("different request"),
        "{description}"
    );
    assert_eq!(message_count(&app, &user).await, 1);
}

#[tokio::test]
async fn keys_are_scoped_by_app_and_app_user() {
    let app = suite().create_app().await;
    let other_app = suite().create_app().await;
    let alice = new_user(&app).await;
    let bob = new_user(&app).await;
    let carol = new_user(&other_app).await;
    let body = json!({"text": "same key, other user", "role": "appUser"});
    for (auth, user) in [
        (app.app_token(), &alice),
        (app.app_token(), &bob),
        (other_app.app_token(), &carol),
    ] {
        let (status, replayed, reply) = post_keyed(&auth, user, "shared-key", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        assert_eq!(replayed, None, "a key of another user or app was replayed");
    }
    assert_eq!(message_count(&app, &alice).await, 1);
    assert_eq!(message_count(&app, &bob).await, 1);
    assert_eq!(message_count(&other_app, &carol).await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_post_once() {
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    let body = json!({"text": "raced", "role": "appUser"});
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let (auth, user, body) = (app.app_token(), user.clone(), body.clone());
            tokio::spawn(async move { post_keyed(&auth, &user, "raced-key", body).await })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut replays = 0;
    for post in posts {
        let (status, replayed, body) = post.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        replays += usize::from(replayed.is_some());
        bodies.push(body);
    }
    assert_eq!(replays, 7);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(message_count(&app, &user).await, 1);
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    let body = json!({"text": "x", "role": "appUser"});
    for key in ["k".repeat(256), "has space".to_owned()] {
        let (status, _, reply) = post_keyed(&app.app_token(), &user, &key, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["error"]["code"], "bad_request");
        assert!(reply["error"]["description"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"));
    }
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

async fn upload_keyed(app: &TestApp, user: &str, key: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let form = Form::new()
        .part(
            "source",
            Part::bytes(bytes.to_vec())
                .file_name("dot.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("role", "appUser");
    let response = suite()
        .request(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/images"),
            &app.app_token(),
        )
        .header("idempotency-key", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    e2e::parts(response).await
}

#[tokio::test]
async fn a_retried_image_returns_the_original_message() {
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    let (status, first) = upload_keyed(&app, &user, "image-key", PNG).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = upload_keyed(&app, &user, "image-key", PNG).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again, first);
    assert_eq!(message_count(&app, &user).await, 1);
    // Other bytes under the same key are another request.
    let mut other = PNG.to_vec();
    other.push(0);
    let (status, body) = upload_keyed(&app, &user, "image-key", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
