//! Authentication rules: app tokens, JWT checks, scopes.

use e2e::{jwt, jwt_with, suite, Auth};
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn status_of(auth: &Auth, path: &str) -> (StatusCode, serde_json::Value) {
    suite().call(Method::GET, path, auth, None).await
}

#[tokio::test]
async fn missing_or_invalid_credentials_are_401_with_an_error_body() {
    let s = suite();
    let app = s.create_app().await;
    let user = app.init_user(None).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bad = [
        Auth::None,
        Auth::AppToken("not-a-token".into()),
        Auth::Jwt("not.a.jwt".into()),
        // Unknown kid.
        Auth::Jwt(jwt("nokey", &app.secret, json!({"scope": "app"}))),
        // Wrong secret.
        Auth::Jwt(jwt(&app.key_id, "wrong", json!({"scope": "app"}))),
        // Expired.
        Auth::Jwt(jwt(
            &app.key_id,
            &app.secret,
            json!({"scope": "app", "exp": 1000}),
        )),
        // Expired a minute ago: past the few seconds of allowed clock skew.
        Auth::Jwt(jwt(
            &app.key_id,
            &app.secret,
            json!({"scope": "app", "exp": now - 60}),
        )),
        // Not valid for another minute.
        Auth::Jwt(jwt(
            &app.key_id,
            &app.secret,
            json!({"scope": "app", "nbf": now + 60}),
        )),
        // No scope, unknown scope, appUser without userId.
        Auth::Jwt(jwt(&app.key_id, &app.secret, json!({}))),
        Auth::Jwt(jwt(&app.key_id, &app.secret, json!({"scope": "root"}))),
        Auth::Jwt(jwt(&app.key_id, &app.secret, json!({"scope": "appUser"}))),
        // Unsigned: {"alg":"none","kid":...}.
        Auth::Jwt(format!(
            "{}.eyJzY29wZSI6ImFwcCJ9.",
            base64url(&format!(r#"{{"alg":"none","kid":"{}"}}"#, app.key_id))
        )),
    ];
    for auth in bad {
        let (status, body) = status_of(&auth, &path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(!body["error"]["description"].as_str().unwrap().is_empty());
    }
}

fn base64url(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn jwt_without_kid_is_401() {
    let s = suite();
    let app = s.create_app().await;
    let header = jsonwebtoken::Header::new(Algorithm::HS256);
    let token = jsonwebtoken::encode(
        &header,
        &json!({"scope": "app"}),
        &jsonwebtoken::EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap();
    let (status, _) = status_of(&Auth::Jwt(token), "/v1/webhooks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_without_exp_and_every_hmac_algorithm_work() {
    let s = suite();
    let app = s.create_app().await;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let auth = Auth::Jwt(jwt_with(
            alg,
            &app.key_id,
            &app.secret,
            json!({"scope": "app"}),
        ));
        let (status, body) = status_of(&auth, "/v1/webhooks").await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
    }
    let future = domain::time::now_ms() / 1000 + 3600;
    let auth = Auth::Jwt(jwt(
        &app.key_id,
        &app.secret,
        json!({"scope": "app", "exp": future}),
    ));
    assert_eq!(status_of(&auth, "/v1/webhooks").await.0, StatusCode::OK);
}

#[tokio::test]
async fn webhooks_need_app_scope_jwt() {
    let s = suite();
    let app = s.create_app().await;
    for auth in [app.app_token(), app.user_jwt("bob"), e2e::account_jwt()] {
        let (status, body) = status_of(&auth, "/v1/webhooks").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
}

#[tokio::test]
async fn account_scope_cannot_call_app_user_apis() {
    let s = suite();
    let app = s.create_app().await;
    let user = app.init_user(None).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    let (status, _) = status_of(&e2e::account_jwt(), &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn app_user_scope_reaches_only_its_own_user() {
    let s = suite();
    let app = s.create_app().await;
    let bob = app.init_user(Some("bob")).await;
    let alice = app.init_user(Some("alice")).await;
    let bob_path = format!("/v1/appusers/{}", bob["_id"].as_str().unwrap());
    let alice_path = format!("/v1/appusers/{}", alice["_id"].as_str().unwrap());
    let auth = app.user_jwt("bob");
    assert_eq!(status_of(&auth, &bob_path).await.0, StatusCode::OK);
    assert_eq!(status_of(&auth, "/v1/appusers/bob").await.0, StatusCode::OK);
    assert_eq!(status_of(&auth, &alice_path).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        status_of(&auth, "/v1/appusers/alice").await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{alice_path}/conversation/messages"),
            &auth,
            Some(json!({"text": "hi", "role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_apps_credentials_never_reach_this_apps_users() {
    let s = suite();
    let a = s.create_app().await;
    let b = s.create_app().await;
    let user = a.init_user(Some("carol")).await;
    let id = user["_id"].as_str().unwrap();
    a.post_message(id, "appUser", "hello").await;
    for path in [
        format!("/v1/appusers/{id}"),
        "/v1/appusers/carol".to_owned(),
        format!("/v1/appusers/{id}/conversation"),
        "/v1/appusers/carol/conversation".to_owned(),
    ] {
        for auth in [b.app_token(), b.app_jwt(), b.user_jwt("carol")] {
            let (status, body) = status_of(&auth, &path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {auth:?}: {body}");
        }
    }
    for auth in [b.app_token(), b.app_jwt()] {
        let (status, _) = s
            .call(
                Method::POST,
                &format!("/v1/appusers/{id}/conversation/messages"),
                &auth,
                Some(json!({"text": "intrusion", "role": "appUser"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .call(
                Method::PUT,
                &format!("/v1/appusers/{id}"),
                &auth,
                Some(json!({"givenName": "Mallory"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, conv) = status_of(&a.app_token(), &format!("/v1/appusers/{id}/conversation")).await;
    assert_eq!(
        conv["conversation"]["messages"].as_array().unwrap().len(),
        1
    );
}
