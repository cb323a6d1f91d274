//! `POST .../conversation/images` and serving media back.

use e2e::{suite, TestApp};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x02, 0x01, 0xA1, 0xE3, 0xD5, 0x8A, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

async fn upload(app: &TestApp, user: &str, form: Form) -> (StatusCode, Value) {
    let response = suite()
        .request(
            reqwest::Method::POST,
            &format!("/v1/appusers/{user}/conversation/images"),
            &app.app_token(),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    e2e::parts(response).await
}

fn source(bytes: Vec<u8>, declared: &str) -> Part {
    Part::bytes(bytes)
        .file_name("screenshot.jpg")
        .mime_str(declared)
        .unwrap()
}

#[tokio::test]
async fn an_uploaded_image_is_posted_and_served_back() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    // The declared type is wrong on purpose: the stored type is sniffed from the bytes.
    let form = Form::new()
        .part("source", source(PNG.to_vec(), "image/jpeg"))
        .text("role", "appUser")
        .text("name", "Steve");
    let (status, body) = upload(&app, id, form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["message"];
    let url = message["mediaUrl"].as_str().unwrap();
    assert_eq!(message["text"], url);
    assert_eq!(message["mediaType"], "image/png");
    assert_eq!(message["name"], "Steve");
    assert_eq!(message["role"], "appUser");
    assert!(
        url.starts_with(&format!("{}/media/{}/", suite().base, app.id)),
        "{url}"
    );
    assert_eq!(body["conversation"]["messages"][0], *message);

    let served = reqwest::get(url).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);
}

#[tokio::test]
async fn non_images_and_missing_files_are_400() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let form = Form::new()
        .part(
            "source",
            source(b"just some text, not an image".to_vec(), "image/png"),
        )
        .text("role", "appUser");
    let (status, body) = upload(&app, id, form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("image"));

    let (status, body) = upload(&app, id, Form::new().text("role", "appUser")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("source"));

    let form = Form::new().part("source", source(PNG.to_vec(), "image/png"));
    let (status, body) = upload(&app, id, form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["description"]
        .as_str()
        .unwrap()
        .contains("role"));

    let (status, _) = suite()
        .call(
            reqwest::Method::POST,
            &format!("/v1/appusers/{id}/conversation/images"),
            &app.app_token(),
            Some(serde_json::json!({"role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing was posted.
    let (status, _) = suite()
        .call(
            reqwest::Method::GET,
            &format!("/v1/appusers/{id}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn images_over_10_mb_are_413() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let mut big = PNG.to_vec();
    big.resize(10 * 1024 * 1024 + 1, 0);
    let form = Form::new()
        .text("role", "appUser")
        .part("source", source(big, "image/png"));
    let (status, body) = upload(&app, user["_id"].as_str().unwrap(), form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn media_paths_cannot_escape_or_guess() {
    let app = suite().create_app().await;
    for path in [
        format!("/media/{}/..%2F..%2Fetc%2Fpasswd", app.id),
        "/media/..%2F..%2F/passwd".to_owned(),
        format!("/media/{}/000000000000000000000000.png", app.id),
        "/media/not-an-app/x.png".to_owned(),
    ] {
        let (status, body) = suite()
            .call(reqwest::Method::GET, &path, &e2e::Auth::None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

/// smooch-core 2.x uploads at `/v1/appusers/{id}/images`; it is the same upload.
#[tokio::test]
async fn the_later_images_path_uploads_too() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let form = Form::new()
        .part("source", source(PNG.to_vec(), "image/png"))
        .text("role", "appUser");
    let response = suite()
        .request(
            reqwest::Method::POST,
            &format!("/v1/appUsers/{id}/images"),
            &app.app_token(),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = e2e::parts(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"]["type"], "image");
    assert_eq!(body["message"]["mediaType"], "image/png");
    // Another app's token does not reach this user.
    let other = suite().create_app().await;
    let response = suite()
        .request(
            reqwest::Method::POST,
            &format!("/v1/appusers/{id}/images"),
            &other.app_token(),
        )
        .multipart(
            Form::new()
                .part("source", source(PNG.to_vec(), "image/png"))
                .text("role", "appUser"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
