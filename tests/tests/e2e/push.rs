//! Push notifications: app-maker messages reach the devices of their user through fake
//! APNs and FCM servers (the testkit's `push_fake`), which check the exact requests:
//! paths, headers, provider tokens and assertions (verified with the test public keys),
//! payloads; refused tokens are cleared, busy providers retried, taken-over devices and
//! other apps' devices left alone.

use std::time::Duration;

use e2e::push_fake::{self, Recorded, APNS_KEY, APNS_PUBLIC_KEY, FCM_KEY, FCM_PUBLIC_KEY};
use e2e::{suite, unique, TestApp};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn integrate(app: &TestApp, body: Value) {
    let (status, answer) = suite()
        .call(Method::POST, "/v1/integrations", &app.app_jwt(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Adds an `apn` integration with the test .p8 key; returns (keyId, teamId, bundleId).
async fn with_apn(app: &TestApp) -> (String, String, String) {
    let key_id = unique("K").replace('-', "");
    let team_id = unique("T").replace('-', "");
    let bundle_id = format!("com.example.{}", domain::id::new_id());
    integrate(
        app,
        json!({"type": "apn", "keyId": key_id, "teamId": team_id, "bundleId": bundle_id,
               "privateKey": APNS_KEY, "production": false}),
    )
    .await;
    (key_id, team_id, bundle_id)
}

/// Adds an `fcm` integration with a service account; returns (project_id, client_email).
async fn with_fcm_account(app: &TestApp) -> (String, String) {
    let project = unique("project");
    let email = format!("{}@{project}.iam.gserviceaccount.com", domain::id::new_id());
    let token_uri = format!("{}/token", fake_base());
    integrate(
        app,
        json!({"type": "fcm", "serviceAccountKey": {"project_id": project, "client_email": email,
               "private_key": FCM_KEY, "token_uri": token_uri}}),
    )
    .await;
    (project, email)
}

/// The suite runs with both provider URLs on the fakes.
fn fake_base() -> String {
    push_fake::base()
}

/// Inits `user_id` on `device` (a new id when `None`) with a push token; returns the
/// appUser `_id`.
async fn init(app: &TestApp, user_id: &str, device: &str, platform: &str, token: &str) -> String {
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/init",
            &app.app_token(),
            Some(
                json!({"userId": user_id, "device": {"id": device, "platform": platform,
                        "pushNotificationToken": token}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["appUser"]["_id"].as_str().unwrap().to_owned()
}

async fn say(app: &TestApp, user: &str, body: Value) -> Value {
    let (status, answer) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            &app.app_jwt(),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["message"].clone()
}

fn token(kind: &str) -> String {
    format!("{kind}{}", domain::id::new_id())
}

fn now_s() -> i64 {
    domain::time::now_ms() / 1000
}

fn decode(
    jwt: &str,
    key: &DecodingKey,
    alg: Algorithm,
    aud: Option<&str>,
) -> (jsonwebtoken::Header, Value) {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    match aud {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<Value>(jwt, key, &validation).expect("a valid signature");
    (data.header, data.claims)
}

/// Lets events in flight settle before asserting that nothing more arrived.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1_000)).await;
}

#[tokio::test]
async fn apns_gets_an_http2_request_with_provider_token_topic_and_payload() {
    let app = suite().create_app().await;
    let (key_id, team_id, bundle_id) = with_apn(&app).await;
    let device = token("apns");
    let user = init(&app, &unique("u"), &domain::id::new_id(), "ios", &device).await;
    // The user's own message is no push; the app maker's is.
    say(&app, &user, json!({"text": "from me", "role": "appUser"})).await;
    let message = say(
        &app,
        &user,
        json!({"text": "Just put some vinegar on it", "role": "appMaker", "name": "Steve"}),
    )
    .await;

    let sends = push_fake::sends_to(&device, 1).await;
    let r = &sends[0];
    assert_eq!(r.kind, "apns");
    assert_eq!(r.path, format!("/3/device/{device}"));
    assert!(r.http2 && r.tls, "APNs speaks HTTP/2 over TLS");
    assert_eq!(r.headers["apns-topic"], bundle_id);
    assert_eq!(r.headers["apns-push-type"], "alert");
    let jwt = r.headers["authorization"]
        .strip_prefix("bearer ")
        .expect("a bearer provider token");
    let key = DecodingKey::from_ec_pem(APNS_PUBLIC_KEY.as_bytes()).unwrap();
    let (header, claims) = decode(jwt, &key, Algorithm::ES256, None);
    assert_eq!(header.kid.as_deref(), Some(key_id.as_str()));
    assert_eq!(claims["iss"], team_id);
    assert!(
        (claims["iat"].as_i64().unwrap() - now_s()).abs() < 120,
        "{claims}"
    );
    assert_eq!(
        r.body,
        json!({"aps": {"alert": {"title": "Steve", "body": "Just put some vinegar on it"},
                        "badge": 1, "sound": "default"},
               "smooch": {"appId": app.id, "appUserId": user, "messageId": message["_id"]}})
    );

    // The provider token is reused for the next push; the badge counts unread messages.
    say(&app, &user, json!({"text": "again", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&device, 2).await;
    assert_eq!(
        sends[1].headers["authorization"],
        r.headers["authorization"]
    );
    assert_eq!(sends[1].body["aps"]["badge"], 2);
    settle().await;
    assert_eq!(
        push_fake::sends_to(&device, 2).await.len(),
        2,
        "no push for the appUser message"
    );
}

#[tokio::test]
async fn fcm_v1_sends_with_an_access_token_from_the_service_account() {
    let app = suite().create_app().await;
    let (project, email) = with_fcm_account(&app).await;
    let device = token("fcm");
    let user = init(
        &app,
        &unique("u"),
        &domain::id::new_id(),
        "android",
        &device,
    )
    .await;
    let message = say(
        &app,
        &user,
        json!({"text": "Hello", "role": "appMaker", "name": "Ann"}),
    )
    .await;

    let sends = push_fake::sends_to(&device, 1).await;
    let r = &sends[0];
    assert_eq!(r.path, format!("/v1/projects/{project}/messages:send"));
    assert!(!r.http2 && !r.tls, "an http:// FCM base speaks HTTP/1.1");
    assert_eq!(
        r.body,
        json!({"message": {"token": device, "notification": {"title": "Ann", "body": "Hello"},
               "data": {"appId": app.id, "appUserId": user, "messageId": message["_id"]},
               "android": {"priority": "high"}}})
    );
    let token_uri = format!("{}/token", fake_base());
    let grants: Vec<Recorded> = push_fake::requests(|t| {
        t.kind == "token" && {
            let assertion = t.body["assertion"].as_str().unwrap_or("");
            let key = DecodingKey::from_rsa_pem(FCM_PUBLIC_KEY.as_bytes()).unwrap();
            let mut v = Validation::new(Algorithm::RS256);
            v.validate_aud = false;
            v.required_spec_claims.clear();
            jsonwebtoken::decode::<Value>(assertion, &key, &v)
                .is_ok_and(|d| d.claims["iss"] == email.as_str())
        }
    });
    assert_eq!(grants.len(), 1, "one token request for this account");
    let grant = &grants[0];
    assert_eq!(
        grant.body["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let key = DecodingKey::from_rsa_pem(FCM_PUBLIC_KEY.as_bytes()).unwrap();
    let (header, claims) = decode(
        grant.body["assertion"].as_str().unwrap(),
        &key,
        Algorithm::RS256,
        Some(&token_uri),
    );
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(claims["aud"], token_uri);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let access = grant.answer["access_token"].as_str().unwrap();
    assert_eq!(r.headers["authorization"], format!("Bearer {access}"));

    // The access token is cached: a second push asks for no new one.
    say(&app, &user, json!({"mediaUrl": "https://example.com/cat.png", "mediaType": "image/png", "role": "appMaker", "name": "Ann", "type": "image"})).await;
    let sends = push_fake::sends_to(&device, 2).await;
    assert_eq!(
        sends[1].body["message"]["notification"],
        json!({"title": "Ann", "body": "sent an image"})
    );
    assert_eq!(
        sends[1].headers["authorization"],
        r.headers["authorization"]
    );
}

#[tokio::test]
async fn legacy_fcm_uses_the_server_key() {
    let app = suite().create_app().await;
    let server_key = unique("AAAA");
    integrate(
        &app,
        json!({"type": "fcm", "serverKey": server_key, "senderId": "1234"}),
    )
    .await;
    let device = token("legacy");
    let user = init(
        &app,
        &unique("u"),
        &domain::id::new_id(),
        "android",
        &device,
    )
    .await;
    say(
        &app,
        &user,
        json!({"text": "Hi", "role": "appMaker", "name": "Bo"}),
    )
    .await;
    let sends = push_fake::sends_to(&device, 1).await;
    let r = &sends[0];
    assert_eq!(r.path, "/fcm/send");
    assert_eq!(r.headers["authorization"], format!("key={server_key}"));
    assert_eq!(r.body["to"], device);
    assert_eq!(r.body["notification"], json!({"title": "Bo", "body": "Hi"}));
}

async fn tokens_of(app: &TestApp, user: &str) -> Vec<Value> {
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["appUser"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pushNotificationToken"].clone())
        .collect()
}

#[tokio::test]
async fn refused_tokens_are_cleared() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    with_fcm_account(&app).await;
    let user_id = unique("u");
    let ios = token("gone-apns");
    let android = token("gone-fcm");
    let user = init(&app, &user_id, &domain::id::new_id(), "ios", &ios).await;
    init(&app, &user_id, &domain::id::new_id(), "android", &android).await;
    say(
        &app,
        &user,
        json!({"text": "anyone there?", "role": "appMaker"}),
    )
    .await;
    assert_eq!(push_fake::sends_to(&ios, 1).await[0].status, 410);
    assert_eq!(push_fake::sends_to(&android, 1).await[0].status, 404);
    for _ in 0..100 {
        if tokens_of(&app, &user).await.iter().all(Value::is_null) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tokens_of(&app, &user).await, [Value::Null, Value::Null]);
    // No token, no more pushes.
    say(&app, &user, json!({"text": "hello?", "role": "appMaker"})).await;
    settle().await;
    assert_eq!(push_fake::sends_to(&ios, 1).await.len(), 1);
    assert_eq!(push_fake::sends_to(&android, 1).await.len(), 1);
}

#[tokio::test]
async fn busy_providers_are_retried_through_the_broker() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    with_fcm_account(&app).await;
    let user_id = unique("u");
    let ios = token("busy-apns");
    let android = token("busy-fcm");
    let user = init(&app, &user_id, &domain::id::new_id(), "ios", &ios).await;
    init(&app, &user_id, &domain::id::new_id(), "android", &android).await;
    say(&app, &user, json!({"text": "later", "role": "appMaker"})).await;
    for (device, busy) in [(&ios, 429), (&android, 503)] {
        let sends = push_fake::sends_to(device, 2).await;
        assert_eq!((sends[0].status, sends[1].status), (busy, 200));
        assert_eq!(
            sends[0].body, sends[1].body,
            "the retry sends the same notification"
        );
    }
}

#[tokio::test]
async fn a_device_taken_over_by_another_user_gets_no_push_for_the_old_one() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    let device_id = domain::id::new_id();
    let shared = token("shared");
    let old = init(&app, &unique("old"), &device_id, "ios", &shared).await;
    let new = init(&app, &unique("new"), &device_id, "ios", &shared).await;
    say(
        &app,
        &old,
        json!({"text": "for the old user", "role": "appMaker"}),
    )
    .await;
    say(
        &app,
        &new,
        json!({"text": "for the new user", "role": "appMaker"}),
    )
    .await;
    push_fake::sends_to(&shared, 1).await;
    settle().await;
    let sends = push_fake::sends_to(&shared, 1).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].body["smooch"]["appUserId"], new);
    assert_eq!(sends[0].body["aps"]["alert"]["body"], "for the new user");
}

#[tokio::test]
async fn each_app_pushes_with_its_own_credentials_only() {
    let a = suite().create_app().await;
    let b = suite().create_app().await;
    let bare = suite().create_app().await;
    let (key_a, team_a, bundle_a) = with_apn(&a).await;
    let (key_b, team_b, bundle_b) = with_apn(&b).await;
    // The same userId and device id in each app: still three different users.
    let user_id = unique("u");
    let device_id = domain::id::new_id();
    let (ta, tb, tc) = (token("a"), token("b"), token("c"));
    let ua = init(&a, &user_id, &device_id, "ios", &ta).await;
    let ub = init(&b, &user_id, &device_id, "ios", &tb).await;
    let uc = init(&bare, &user_id, &device_id, "ios", &tc).await;
    say(&a, &ua, json!({"text": "from a", "role": "appMaker"})).await;
    say(&b, &ub, json!({"text": "from b", "role": "appMaker"})).await;
    say(&bare, &uc, json!({"text": "from c", "role": "appMaker"})).await;
    let key = DecodingKey::from_ec_pem(APNS_PUBLIC_KEY.as_bytes()).unwrap();
    for (device, app, kid, team, bundle, text) in [
        (&ta, &a, &key_a, &team_a, &bundle_a, "from a"),
        (&tb, &b, &key_b, &team_b, &bundle_b, "from b"),
    ] {
        let sends = push_fake::sends_to(device, 1).await;
        assert_eq!(sends.len(), 1);
        let r = &sends[0];
        assert_eq!(&r.headers["apns-topic"], bundle);
        let jwt = r.headers["authorization"].strip_prefix("bearer ").unwrap();
        let (header, claims) = decode(jwt, &key, Algorithm::ES256, None);
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(&claims["iss"], team.as_str());
        assert_eq!(r.body["smooch"]["appId"], app.id);
        assert_eq!(r.body["aps"]["alert"]["body"], text);
    }
    settle().await;
    let none = push_fake::requests(|r| push_fake::device_of(r).as_deref() == Some(tc.as_str()));
    assert!(
        none.is_empty(),
        "an app without credentials pushes nothing: {none:?}"
    );
}

#[tokio::test]
async fn whispers_are_pushed_like_app_maker_messages() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    let (status, created) = suite()
        .call(
            Method::POST,
            "/v1/whispers",
            &app.app_jwt(),
            Some(json!({"event": "completed_sale", "text": "Thanks for buying!", "name": "Shop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let device = token("whisper");
    let user = init(&app, &unique("u"), &domain::id::new_id(), "ios", &device).await;
    let (status, tracked) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/events"),
            &app.app_token(),
            Some(json!({"name": "completed_sale"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tracked}");
    let sends = push_fake::sends_to(&device, 1).await;
    assert_eq!(
        sends[0].body["aps"]["alert"],
        json!({"title": "Shop", "body": "Thanks for buying!"})
    );
    assert_eq!(sends[0].body["aps"]["badge"], 1);
}

#[tokio::test]
async fn a_provider_that_stays_down_gets_the_configured_retries_then_none() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    let device = token("down");
    let user = init(&app, &unique("u"), &domain::id::new_id(), "ios", &device).await;
    say(
        &app,
        &user,
        json!({"text": "are you up?", "role": "appMaker"}),
    )
    .await;
    // The first attempt and SMOOCH_PUSH_MAX_RETRIES (2 in tests) retries, then the
    // dead-letter queue.
    let retries = suite().settings.push.max_retries as usize;
    let sends = push_fake::sends_to(&device, 1 + retries).await;
    assert!(sends.iter().all(|s| s.status == 503));
    settle().await;
    assert_eq!(push_fake::sends_to(&device, 1).await.len(), 1 + retries);
}

/// A pool on the suite's database (the services' schemas are named in the queries).
async fn database() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&suite().settings.database_url)
        .await
        .unwrap()
}

/// Every stored column of the app's integrations, as text, by type.
async fn stored_integrations(app: &TestApp) -> Vec<(String, String, String, Option<String>)> {
    let pool = database().await;
    let rows = sqlx::query_as(
        "SELECT type, config::text, secrets::text, sealed_secrets FROM users.integrations
          WHERE app_id = $1 ORDER BY type",
    )
    .bind(&app.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

#[tokio::test]
async fn integration_secrets_are_stored_sealed_and_still_push() {
    let app = suite().create_app().await;
    let server_key = unique("legacy-server-key");
    let bot_token = unique("telegram-bot-token");
    integrate(
        &app,
        json!({"type": "fcm", "serverKey": server_key, "senderId": "1234"}),
    )
    .await;
    integrate(&app, json!({"type": "telegram", "token": bot_token})).await;
    with_apn(&app).await;

    let stored = stored_integrations(&app).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    let apn_key_line = APNS_KEY.lines().nth(1).unwrap();
    for (kind, config, secrets, sealed) in &stored {
        let row = format!("{config} {secrets} {sealed:?}");
        for secret in [server_key.as_str(), bot_token.as_str(), apn_key_line] {
            assert!(
                !row.contains(secret),
                "{kind} stores {secret} in clear: {row}"
            );
        }
        assert_eq!(secrets, "{}", "{kind}: no plaintext secrets");
        let sealed = sealed.as_deref().unwrap_or_default();
        assert!(sealed.starts_with("v1:"), "{kind} sealed: {sealed}");
    }
    // The API shows no secret either, sealed or not.
    let (status, listed) = suite()
        .call(Method::GET, "/v1/integrations", &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(!listed.to_string().contains("v1:"), "{listed}");
    assert!(!listed.to_string().contains(&server_key), "{listed}");

    // Only the push worker opens them: the legacy FCM send carries the server key.
    let device = token("sealed");
    let user = init(
        &app,
        &unique("u"),
        &domain::id::new_id(),
        "android",
        &device,
    )
    .await;
    say(&app, &user, json!({"text": "Hi", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&device, 1).await;
    assert_eq!(
        sends[0].headers["authorization"],
        format!("key={server_key}")
    );
}

#[tokio::test]
async fn plaintext_secrets_from_before_sealing_still_push_and_get_sealed() {
    let app = suite().create_app().await;
    let server_key = unique("old-server-key");
    integrate(
        &app,
        json!({"type": "fcm", "serverKey": server_key, "senderId": "1234"}),
    )
    .await;
    // The row as a release before sealing wrote it: plaintext secrets, nothing sealed.
    let pool = database().await;
    sqlx::query(
        "UPDATE users.integrations SET secrets = jsonb_build_object('serverKey', $2::text),
                sealed_secrets = NULL
          WHERE app_id = $1",
    )
    .bind(&app.id)
    .bind(&server_key)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let device = token("plain");
    let user = init(
        &app,
        &unique("u"),
        &domain::id::new_id(),
        "android",
        &device,
    )
    .await;
    say(&app, &user, json!({"text": "one", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&device, 1).await;
    assert_eq!(
        sends[0].headers["authorization"],
        format!("key={server_key}")
    );

    // The users role's start-up pass seals it (run here as it runs there).
    let key = suite().settings.secrets_key(false).unwrap();
    let sealed = users::seal_stored_secrets(&suite().settings.database_url, &key)
        .await
        .unwrap();
    assert!(sealed >= 1, "{sealed}");
    let stored = stored_integrations(&app).await;
    let (_, _, secrets, sealed) = &stored[0];
    assert_eq!(secrets, "{}");
    let sealed = sealed.as_deref().unwrap();
    assert!(
        sealed.starts_with("v1:") && !sealed.contains(&server_key),
        "{sealed}"
    );

    say(&app, &user, json!({"text": "two", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&device, 2).await;
    assert_eq!(
        sends[1].headers["authorization"],
        format!("key={server_key}")
    );
}

/// The app's push delivery log, once it holds `n` attempts (it is written in batches, off
/// the send path).
async fn delivery_log(app: &TestApp, n: usize) -> Vec<Value> {
    let mut log = Vec::new();
    for _ in 0..100 {
        let (status, page) = suite()
            .call(
                Method::GET,
                "/v1/push/deliveries?limit=100",
                &app.app_jwt(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        log = page["deliveries"].as_array().unwrap().clone();
        if log.len() >= n {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the push delivery log holds {} attempts, not {n}: {log:?}",
        log.len()
    );
}

#[tokio::test]
async fn the_push_delivery_log_lists_each_attempt_newest_first_to_its_app_only() {
    let app = suite().create_app().await;
    with_apn(&app).await;
    with_fcm_account(&app).await;
    let user_id = unique("u");
    let (ios_id, android_id, gone_id) = (
        domain::id::new_id(),
        domain::id::new_id(),
        domain::id::new_id(),
    );
    // iOS is busy once (a retry, then delivered); Android delivered; the third refused.
    let ios = token("busy-apns");
    let user = init(&app, &user_id, &ios_id, "ios", &ios).await;
    init(&app, &user_id, &android_id, "android", &token("fcm")).await;
    init(&app, &user_id, &gone_id, "android", &token("gone-fcm")).await;
    let message = say(&app, &user, json!({"text": "log me", "role": "appMaker"})).await;
    push_fake::sends_to(&ios, 2).await;

    let log = delivery_log(&app, 4).await;
    assert_eq!(log.len(), 4, "{log:#?}");
    for entry in &log {
        assert_eq!(entry["appUserId"], user.as_str(), "{entry}");
        assert_eq!(entry["messageId"], message["_id"], "{entry}");
        assert!(entry["_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(
            entry["attemptedAt"].as_str().unwrap().ends_with('Z'),
            "{entry}"
        );
    }
    let of =
        |device: &str| -> Vec<&Value> { log.iter().filter(|e| e["deviceId"] == device).collect() };
    // Newest first: the iOS retry's delivery before its first, busy attempt.
    let ios_log = of(&ios_id);
    assert_eq!(ios_log.len(), 2, "{log:#?}");
    let (second, first) = (ios_log[0], ios_log[1]);
    assert_eq!(
        (
            &first["status"],
            &first["attempt"],
            &first["provider"],
            &first["platform"]
        ),
        (&json!("retrying"), &json!(1), &json!("apns"), &json!("ios"))
    );
    assert!(first["error"].as_str().unwrap().contains("429"), "{first}");
    assert_eq!(
        (&second["status"], &second["attempt"]),
        (&json!("delivered"), &json!(2))
    );
    assert!(second.get("error").is_none(), "{second}");
    let first_at = log.iter().position(|e| e == first).unwrap();
    let second_at = log.iter().position(|e| e == second).unwrap();
    assert!(second_at < first_at, "newest first: {log:#?}");
    let android = of(&android_id);
    assert_eq!(
        (
            &android[0]["status"],
            &android[0]["provider"],
            &android[0]["platform"]
        ),
        (&json!("delivered"), &json!("fcm"), &json!("android"))
    );
    let gone = of(&gone_id);
    assert_eq!(gone[0]["status"], "unregistered", "{gone:?}");
    assert!(
        gone[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{gone:?}"
    );

    // Paging: limit and offset over the same order.
    let (status, page) = suite()
        .call(
            Method::GET,
            "/v1/push/deliveries?limit=3&offset=1",
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page["deliveries"].as_array().unwrap()[..],
        log[1..4],
        "{page}"
    );
    assert_eq!(
        (&page["hasMore"], &page["offset"]),
        (&json!(false), &json!(1))
    );
    let (_, page) = suite()
        .call(
            Method::GET,
            "/v1/push/deliveries?limit=2",
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(page["hasMore"], true, "{page}");

    // The account sees it under the app's path; another app's credentials see nothing.
    let (status, page) = suite()
        .call(
            Method::GET,
            &format!("/v1/apps/{}/push/deliveries?limit=100", app.id),
            &e2e::account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page["deliveries"].as_array().unwrap()[..],
        log[..],
        "{page}"
    );
    let other = suite().create_app().await;
    let (status, page) = suite()
        .call(Method::GET, "/v1/push/deliveries", &other.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page,
        json!({"deliveries": [], "hasMore": false, "offset": 0})
    );
}

#[tokio::test]
async fn the_push_delivery_log_needs_app_scope_and_a_sane_page() {
    let app = suite().create_app().await;
    let user = app.init_user(Some(&unique("u"))).await;
    let user_id = user["userId"].as_str().unwrap();
    for auth in [app.app_token(), app.user_jwt(user_id), e2e::account_jwt()] {
        let (got, body) = suite()
            .call(Method::GET, "/v1/push/deliveries", &auth, None)
            .await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&got),
            "{got}: {body}"
        );
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    for query in ["limit=0", "limit=101", "limit=ten", "offset=-1"] {
        let (status, body) = suite()
            .call(
                Method::GET,
                &format!("/v1/push/deliveries?{query}"),
                &app.app_jwt(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
}

/// One POST of Bayeux messages to the suite's `/faye`.
async fn bayeux(messages: Value) -> Vec<Value> {
    let response = suite()
        .http
        .post(format!("{}/faye", suite().base))
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Pushes `device` has had so far.
fn pushes_to(device: &str) -> usize {
    push_fake::requests(|r| push_fake::device_of(r).as_deref() == Some(device)).len()
}

#[tokio::test]
async fn a_user_watching_the_conversation_live_gets_no_push_until_they_leave() {
    let app = suite().create_app().await;
    integrate(
        &app,
        json!({"type": "fcm", "serverKey": unique("key"), "senderId": "1"}),
    )
    .await;
    let (watcher, away) = (token("watching"), token("away"));
    let user = init(
        &app,
        &unique("u"),
        &domain::id::new_id(),
        "android",
        &watcher,
    )
    .await;
    let other = init(&app, &unique("u"), &domain::id::new_id(), "android", &away).await;
    say(&app, &user, json!({"text": "first", "role": "appMaker"})).await;
    push_fake::sends_to(&watcher, 1).await;
    let (status, page) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let conversation = page["conversation"]["_id"].as_str().unwrap().to_owned();

    let hello = bayeux(json!([{"channel": "/meta/handshake", "version": "1.0",
                               "supportedConnectionTypes": ["long-polling"]}]))
    .await;
    let client = hello[0]["clientId"].as_str().unwrap().to_owned();
    let subscribed = bayeux(json!([{"channel": "/meta/subscribe", "clientId": client,
        "subscription": format!("/v1/conversations/{conversation}"),
        "ext": {"appUserId": user, "appToken": app.token}}]))
    .await;
    assert_eq!(subscribed[0]["successful"], true, "{subscribed:?}");

    // Watching: no push for the watcher; the other user of the app still gets theirs.
    say(
        &app,
        &user,
        json!({"text": "while watching", "role": "appMaker"}),
    )
    .await;
    say(
        &app,
        &other,
        json!({"text": "you are away", "role": "appMaker"}),
    )
    .await;
    push_fake::sends_to(&away, 1).await;
    settle().await;
    assert_eq!(pushes_to(&watcher), 1, "no push while watching");
    // A connect (batched, so answered at once) keeps the mark.
    let connected = bayeux(json!([
        {"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"},
        {"channel": "/meta/subscribe", "clientId": client,
         "subscription": format!("/v1/users/{user}"),
         "ext": {"appUserId": user, "appToken": app.token}},
    ]))
    .await;
    assert!(
        connected.iter().all(|r| r["successful"] != false),
        "{connected:?}"
    );
    say(
        &app,
        &user,
        json!({"text": "still watching", "role": "appMaker"}),
    )
    .await;
    settle().await;
    assert_eq!(pushes_to(&watcher), 1, "no push while still watching");

    // Unsubscribing from the conversation (the user channel is not watching it) ends it.
    let left = bayeux(json!([{"channel": "/meta/unsubscribe", "clientId": client,
        "subscription": format!("/v1/conversations/{conversation}")}]))
    .await;
    assert_eq!(left[0]["successful"], true, "{left:?}");
    say(&app, &user, json!({"text": "gone?", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&watcher, 2).await;
    assert_eq!(sends[1].body["notification"]["body"], "gone?");

    // Watching again, then disconnecting: pushes resume.
    let again = bayeux(json!([{"channel": "/meta/subscribe", "clientId": client,
        "subscription": format!("/v1/conversations/{conversation}"),
        "ext": {"appUserId": user, "appToken": app.token}}]))
    .await;
    assert_eq!(again[0]["successful"], true, "{again:?}");
    say(
        &app,
        &user,
        json!({"text": "watched again", "role": "appMaker"}),
    )
    .await;
    settle().await;
    assert_eq!(pushes_to(&watcher), 2);
    let bye = bayeux(json!([{"channel": "/meta/disconnect", "clientId": client}])).await;
    assert_eq!(bye[0]["successful"], true, "{bye:?}");
    say(&app, &user, json!({"text": "after", "role": "appMaker"})).await;
    let sends = push_fake::sends_to(&watcher, 3).await;
    assert_eq!(sends[2].body["notification"]["body"], "after");
}

#[tokio::test]
async fn apns_certificate_integrations_send_with_the_p12_as_tls_client_certificate() {
    use base64::Engine as _;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::CertificateDer;

    let client_cert = CertificateDer::from_pem_slice(push_fake::APNS_CLIENT_CERT_PEM.as_bytes())
        .unwrap()
        .to_vec();
    let b64 = |p12: &[u8]| base64::engine::general_purpose::STANDARD.encode(p12);
    // The era's shape (certificate and password, no bundleId), in OpenSSL 3's encryption;
    // and the legacy encryption with a bundleId.
    for (p12, bundle_id) in [
        (push_fake::APNS_CLIENT_P12, None),
        (
            push_fake::APNS_CLIENT_LEGACY_P12,
            Some("com.example.certapp"),
        ),
    ] {
        let app = suite().create_app().await;
        let mut body = json!({"type": "apn", "certificate": b64(p12),
                              "password": push_fake::APNS_CLIENT_P12_PASSWORD});
        if let Some(bundle_id) = bundle_id {
            body["bundleId"] = json!(bundle_id);
        }
        integrate(&app, body).await;
        let device = token("cert-apns");
        let user = init(&app, &unique("u"), &domain::id::new_id(), "ios", &device).await;
        say(
            &app,
            &user,
            json!({"text": "Signed by certificate", "role": "appMaker", "name": "Ann"}),
        )
        .await;
        let sends = push_fake::sends_to(&device, 1).await;
        let r = &sends[0];
        assert_eq!(r.status, 200, "{:?}", r.answer);
        assert!(r.http2 && r.tls, "APNs speaks HTTP/2 over TLS");
        assert_eq!(
            r.client_cert.as_deref(),
            Some(client_cert.as_slice()),
            "the .p12's certificate, verified against the client CA"
        );
        assert!(!r.headers.contains_key("authorization"), "{:?}", r.headers);
        assert_eq!(r.headers.get("apns-topic").map(String::as_str), bundle_id);
        assert_eq!(r.headers["apns-push-type"], "alert");
        assert_eq!(
            r.body["aps"]["alert"],
            json!({"title": "Ann", "body": "Signed by certificate"})
        );
        let log = delivery_log(&app, 1).await;
        assert_eq!(
            (&log[0]["status"], &log[0]["provider"]),
            (&json!("delivered"), &json!("apns"))
        );
    }

    // A wrong password: refused for good, and said so in the log.
    let app = suite().create_app().await;
    integrate(
        &app,
        json!({"type": "apn", "certificate": b64(push_fake::APNS_CLIENT_P12), "password": "wrong"}),
    )
    .await;
    let device = token("cert-wrong");
    let user = init(&app, &unique("u"), &domain::id::new_id(), "ios", &device).await;
    say(&app, &user, json!({"text": "hi", "role": "appMaker"})).await;
    let log = delivery_log(&app, 1).await;
    assert_eq!(log[0]["status"], "failed", "{log:?}");
    assert!(
        log[0]["error"].as_str().unwrap().contains("PKCS#12"),
        "{log:?}"
    );
    assert_eq!(pushes_to(&device), 0);
}

#[tokio::test]
async fn apns_without_a_token_or_a_certificate_is_refused_by_the_fake() {
    // The fake checks authentication: a request with neither is answered 403.
    let response = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(push_fake::CA_PEM.as_bytes()).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "{}/3/device/{}",
            push_fake::tls_base(),
            token("anon")
        ))
        .json(&json!({"aps": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
