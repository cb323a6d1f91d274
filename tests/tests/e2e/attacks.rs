//! Attacks (issue 9): forged and confused JWTs, hostile `kid`s, revoked keys, scope
//! escalation, userId spoofing, reaching another app's resources by id, and secrets leaking
//! to appUser-scope callers. Every one is refused with the exact status, never a 5xx.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use e2e::{jwt, jwt_with, suite, Auth, TestApp};
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A token with any header, HMAC-SHA256-signed with `secret` whatever `alg` says.
fn hmac_token(header: Value, claims: Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

async fn webhooks_status(auth: &Auth) -> (StatusCode, Value) {
    suite().call(Method::GET, "/v1/webhooks", auth, None).await
}

fn assert_refused(status: StatusCode, body: &Value, expected: StatusCode, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert!(body["error"]["code"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn unsigned_tokens_are_401() {
    let app = suite().create_app().await;
    let claims = json!({"scope": "app"});
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": app.key_id});
        for token in [
            format!("{}.{}.", b64(&header), b64(&claims)),
            format!("{}.{}", b64(&header), b64(&claims)),
        ] {
            let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
            assert_refused(status, &body, StatusCode::UNAUTHORIZED, alg);
        }
    }
}

#[tokio::test]
async fn hs_rs_confusion_is_401() {
    let app = suite().create_app().await;
    let claims = json!({"scope": "app"});
    // alg RS256, "signed" with the HMAC secret as if it were the RSA public key.
    for alg in ["RS256", "RS512", "PS256", "ES256", "EdDSA"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": app.key_id});
        let token = hmac_token(header, claims.clone(), app.secret.as_bytes());
        let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
        assert_refused(status, &body, StatusCode::UNAUTHORIZED, alg);
    }
    // HS256 signed with a public-key-looking string instead of the secret.
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
    let token = hmac_token(
        json!({"alg": "HS256", "kid": app.key_id}),
        claims.clone(),
        pem.as_bytes(),
    );
    let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
    assert_refused(status, &body, StatusCode::UNAUTHORIZED, "HS256 with a PEM");
    // The real secret under HS256 works, so the refusals above are about the algorithm.
    let token = hmac_token(
        json!({"alg": "HS256", "kid": app.key_id}),
        claims,
        app.secret.as_bytes(),
    );
    let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unknown_empty_and_injected_kids_are_401() {
    let app = suite().create_app().await;
    let long = "k".repeat(10_000);
    let claims = json!({"scope": "app"});
    for kid in [
        "5f1c0e2b9a8d7c6b5a4f3e2d",
        "",
        "' OR 1=1 --",
        "' OR '1'='1",
        "\"; DROP TABLE keys; --",
        "../../../../etc/passwd",
        "..%2F..%2Fkeys",
        "%",
        "*",
        "k\u{0}",
        "\u{202e}kid",
        &format!("{}' OR 1=1 --", app.key_id),
        long.as_str(),
    ] {
        let token = hmac_token(
            json!({"alg": "HS256", "kid": kid}),
            claims.clone(),
            app.secret.as_bytes(),
        );
        let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
        assert_refused(status, &body, StatusCode::UNAUTHORIZED, kid);
    }
    // No kid at all, and a kid that is not a string.
    for header in [
        json!({"alg": "HS256"}),
        json!({"alg": "HS256", "kid": 5}),
        json!({"alg": "HS256", "kid": [app.key_id]}),
    ] {
        let token = hmac_token(header.clone(), claims.clone(), app.secret.as_bytes());
        let (status, body) = webhooks_status(&Auth::Jwt(token)).await;
        assert_refused(status, &body, StatusCode::UNAUTHORIZED, &header.to_string());
    }
}

#[tokio::test]
async fn tokens_of_a_deleted_key_are_401() {
    let app = suite().create_app().await;
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("/v1/apps/{}/keys", app.id),
            &e2e::account_jwt(),
            Some(json!({"name": "doomed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (kid, secret) = (
        body["key"]["_id"].as_str().unwrap().to_owned(),
        body["key"]["secret"].as_str().unwrap().to_owned(),
    );
    let token = Auth::Jwt(jwt(&kid, &secret, json!({"scope": "app"})));
    let user = Auth::Jwt(jwt(
        &kid,
        &secret,
        json!({"scope": "appUser", "userId": "u1"}),
    ));
    assert_eq!(webhooks_status(&token).await.0, StatusCode::OK);
    let (status, body) = suite()
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}/keys/{kid}", app.id),
            &e2e::account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = webhooks_status(&token).await;
    assert_refused(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "deleted key, app scope",
    );
    let (status, body) = suite()
        .call(Method::GET, "/v1/appusers/u1", &user, None)
        .await;
    assert_refused(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "deleted key, appUser scope",
    );
    // A key of another app with the same kid string does not help either.
    let other = suite().create_app().await;
    let forged = Auth::Jwt(jwt(&other.key_id, &app.secret, json!({"scope": "app"})));
    assert_refused(
        webhooks_status(&forged).await.0,
        &json!({"error": {"code": "x"}}),
        StatusCode::UNAUTHORIZED,
        "another app's kid with this app's secret",
    );
}

#[tokio::test]
async fn app_user_and_app_token_callers_cannot_escalate_to_app_scope() {
    let app = suite().create_app().await;
    app.init_user(Some("eve")).await;
    let eve = app.user_jwt("eve");
    let whisper_and_hook = [
        (Method::GET, "/v1/webhooks".to_owned(), None),
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(json!({"target": "https://example.com/hook"})),
        ),
        (
            Method::GET,
            "/v1/webhooks/5f1c0e2b9a8d7c6b5a4f3e2d".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/v1/webhooks/5f1c0e2b9a8d7c6b5a4f3e2d/deliveries".to_owned(),
            None,
        ),
        (Method::GET, "/v1/whispers".to_owned(), None),
        (
            Method::POST,
            "/v1/whispers".to_owned(),
            Some(json!({"event": "e", "text": "t"})),
        ),
        (
            Method::POST,
            "/v1/appusers".to_owned(),
            Some(json!({"userId": "mallory"})),
        ),
        (
            Method::POST,
            "/v1/appusers/eve/conversation/messages".to_owned(),
            Some(json!({"text": "I am the business", "role": "appMaker"})),
        ),
        (Method::GET, "/v1/apps".to_owned(), None),
        (Method::GET, format!("/v1/apps/{}/keys", app.id), None),
    ];
    for auth in [&eve, &app.app_token()] {
        for (method, path, body) in &whisper_and_hook {
            let (status, answer) = suite().call(method.clone(), path, auth, body.clone()).await;
            assert_refused(
                status,
                &answer,
                StatusCode::FORBIDDEN,
                &format!("{method} {path}"),
            );
        }
    }
    // A token that claims a scope of its own making is no token at all.
    for scope in ["admin", "account", "App", "app "] {
        let token = Auth::Jwt(jwt(&app.key_id, &app.secret, json!({"scope": scope})));
        let (status, body) = webhooks_status(&token).await;
        assert_refused(status, &body, StatusCode::UNAUTHORIZED, scope);
    }
}

#[tokio::test]
async fn init_with_an_app_user_token_cannot_spoof_another_user_id() {
    let app = suite().create_app().await;
    app.init_user(Some("victim")).await;
    let eve = app.user_jwt("eve");
    let device = json!({"id": "d-eve", "platform": "ios"});
    for user_id in ["victim", "Eve", "eve ", ""] {
        let (status, body) = suite()
            .call(
                Method::POST,
                "/v1/init",
                &eve,
                Some(json!({"device": device, "userId": user_id})),
            )
            .await;
        if user_id.is_empty() {
            // An empty userId is "none given": the token's own user.
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            continue;
        }
        assert_refused(status, &body, StatusCode::FORBIDDEN, user_id);
    }
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &eve,
            Some(json!({"device": device})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["appUser"]["userId"], "eve");
    // The victim's data stayed out of reach.
    let (status, body) = suite()
        .call(Method::GET, "/v1/appusers/victim", &eve, None)
        .await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "eve reads victim");
}

/// An image of app A, uploaded, then its URL tried under app B.
async fn upload_png(app: &TestApp, user: &str) -> String {
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8,
        0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x02, 0x01, 0xA1, 0xE3, 0xD5, 0x8A, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    let form = reqwest::multipart::Form::new()
        .text("role", "appUser")
        .part(
            "source",
            reqwest::multipart::Part::bytes(PNG.to_vec())
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let response = suite()
        .request(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/images"),
            &app.app_token(),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = e2e::parts(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["message"]["mediaUrl"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn another_apps_webhook_whisper_user_and_media_are_404() {
    let a = suite().create_app().await;
    let b = suite().create_app().await;
    let (status, hook) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &a.app_jwt(),
            Some(json!({"target": "https://example.com/a"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let hook_id = hook["webhook"]["_id"].as_str().unwrap();
    let (status, whisper) = suite()
        .call(
            Method::POST,
            "/v1/whispers",
            &a.app_jwt(),
            Some(json!({"event": "e", "text": "hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{whisper}");
    let whisper_id = whisper["whisper"]["_id"].as_str().unwrap();
    let user = a.init_user(Some("alice")).await;
    let user_id = user["_id"].as_str().unwrap();
    let posted = a.post_message(user_id, "appMaker", "secret plans").await;
    let message_id = posted["message"]["_id"].as_str().unwrap();
    for (method, path, body) in [
        (Method::GET, format!("/v1/webhooks/{hook_id}"), None),
        (
            Method::PUT,
            format!("/v1/webhooks/{hook_id}"),
            Some(json!({"target": "https://evil.example.com/"})),
        ),
        (Method::DELETE, format!("/v1/webhooks/{hook_id}"), None),
        (
            Method::GET,
            format!("/v1/webhooks/{hook_id}/deliveries"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/webhooks/{hook_id}/deliveries/{message_id}/retry"),
            None,
        ),
        (Method::GET, format!("/v1/whispers/{whisper_id}"), None),
        (Method::DELETE, format!("/v1/whispers/{whisper_id}"), None),
        (Method::GET, format!("/v1/appusers/{user_id}"), None),
        (
            Method::GET,
            "/v1/appusers/alice/conversation".to_owned(),
            None,
        ),
        (
            Method::POST,
            format!("/v1/appusers/{user_id}/conversation/postback"),
            Some(json!({"actionId": message_id})),
        ),
    ] {
        let (status, answer) = suite()
            .call(method.clone(), &path, &b.app_jwt(), body)
            .await;
        assert_refused(
            status,
            &answer,
            StatusCode::NOT_FOUND,
            &format!("{method} {path}"),
        );
        assert!(!answer.to_string().contains("secret plans"));
    }
    // A's webhook is untouched.
    let (status, still) = suite()
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook_id}"),
            &a.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert_eq!(still["webhook"]["target"], "https://example.com/a");
    // Media: A's URL works; the same key under B's app id does not.
    let url = upload_png(&a, user_id).await;
    let response = suite().http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let foreign = url.replace(&format!("/media/{}/", a.id), &format!("/media/{}/", b.id));
    let (status, body) = e2e::parts(suite().http.get(&foreign).send().await.unwrap()).await;
    assert_refused(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "media under another app id",
    );
}

#[tokio::test]
async fn secrets_never_reach_app_user_scope_callers() {
    let app = suite().create_app().await;
    let (status, hook) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &app.app_jwt(),
            Some(json!({"target": "https://example.com/hook"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let webhook_secret = hook["webhook"]["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["webhook"]["_id"].as_str().unwrap().to_owned();
    assert!(webhook_secret.len() >= 16);
    let user = app.init_user(Some("carol")).await;
    let user_id = user["_id"].as_str().unwrap().to_owned();
    let carol = app.user_jwt("carol");
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/webhooks".into(), None),
        (Method::GET, format!("/v1/webhooks/{hook_id}"), None),
        (
            Method::PUT,
            format!("/v1/webhooks/{hook_id}"),
            Some(json!({"target": "https://example.com/x"})),
        ),
        (
            Method::GET,
            format!("/v1/webhooks/{hook_id}/deliveries"),
            None,
        ),
        (Method::GET, "/v1/appusers/carol".into(), None),
        (Method::GET, format!("/v1/appUsers/{user_id}"), None),
        (
            Method::PUT,
            "/v1/appusers/carol".into(),
            Some(json!({"givenName": "Carol"})),
        ),
        (
            Method::POST,
            "/v1/init".into(),
            Some(json!({"device": {"id": "d-carol", "platform": "web"}})),
        ),
        (
            Method::POST,
            "/v1/appusers/carol/conversation/messages".into(),
            Some(json!({"text": "hi", "role": "appUser"})),
        ),
        (Method::GET, "/v1/appusers/carol/conversation".into(), None),
        (
            Method::POST,
            "/v1/appusers/carol/conversation/read".into(),
            None,
        ),
        (
            Method::POST,
            "/v1/appusers/carol/events".into(),
            Some(json!({"name": "opened"})),
        ),
        (Method::GET, "/v1/whispers".into(), None),
        (Method::GET, format!("/v1/apps/{}", app.id), None),
        (Method::GET, format!("/v1/apps/{}/keys", app.id), None),
    ];
    for auth in [&carol, &app.app_token()] {
        for (method, path, body) in &calls {
            let response = suite()
                .request(method.clone(), path, auth)
                .json(body.as_ref().unwrap_or(&Value::Null))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
            for secret in [&webhook_secret, &app.secret] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{method} {path} leaked a secret to a non-app-scope caller: {text}"
                );
            }
            if path.starts_with("/v1/webhooks") || path.starts_with("/v1/apps") {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
            }
        }
    }
    // The app token is not a secret the appUser may learn either.
    let (_, body) = suite()
        .call(Method::GET, "/v1/appusers/carol", &carol, None)
        .await;
    assert!(!body.to_string().contains(&app.token));
    // Only an app-scope JWT sees the webhook secret.
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook_id}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["webhook"]["secret"], webhook_secret.as_str());
    let _ = jwt_with(Algorithm::HS256, "k", "s", json!({}));
}
