//! Read state: `unreadCount`, each side's last-read time, `POST .../conversation/read`.

use e2e::suite;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn unread_app_maker_messages_are_counted_until_the_user_reads() {
    let app = suite().create_app().await;
    let user = app.init_user(Some("rita")).await;
    let id = user["_id"].as_str().unwrap();
    let first = app.post_message(id, "appUser", "hello").await;
    let conversation = &first["conversation"];
    assert_eq!(conversation["unreadCount"], 0);
    assert_eq!(conversation["appUserLastRead"], json!(null));
    assert_eq!(conversation["appMakerLastRead"], json!(null));

    app.post_message(id, "appMaker", "one").await;
    let second = app.post_message(id, "appMaker", "two").await;
    assert_eq!(second["conversation"]["unreadCount"], 2);
    let maker_read = second["conversation"]["appMakerLastRead"].as_f64().unwrap();
    assert_eq!(maker_read, second["message"]["received"].as_f64().unwrap());
    app.post_message(id, "appUser", "still here").await;

    let path = format!("/v1/appusers/{id}/conversation");
    let (_, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(got["conversation"]["unreadCount"], 2);

    let before = domain::time::now_ms() as f64 / 1000.0;
    let (status, read) = suite()
        .call(
            Method::POST,
            &format!("{path}/read"),
            &app.user_jwt("rita"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["conversation"]["unreadCount"], 0);
    let user_read = read["conversation"]["appUserLastRead"].as_f64().unwrap();
    assert!(user_read >= before - 1.0, "{read}");
    assert_eq!(
        read["conversation"]["messages"].as_array().unwrap().len(),
        4
    );

    let (_, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(got["conversation"]["unreadCount"], 0);
    assert_eq!(
        got["conversation"]["appUserLastRead"].as_f64(),
        Some(user_read)
    );
    app.post_message(id, "appMaker", "three").await;
    let (_, got) = suite()
        .call(Method::GET, &path, &app.app_token(), None)
        .await;
    assert_eq!(got["conversation"]["unreadCount"], 1);
}

#[tokio::test]
async fn reading_needs_a_conversation_of_this_app() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let path = format!("/v1/appUsers/{id}/conversation/read");
    let (status, err) = suite()
        .call(Method::POST, &path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    app.post_message(id, "appMaker", "hi").await;
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(Method::POST, &path, &other.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = suite()
        .call(Method::POST, &path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}
