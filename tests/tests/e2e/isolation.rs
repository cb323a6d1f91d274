//! Tenant isolation, proven route by route: every route of the router is called with another
//! app's app token, another app's app-scope JWT, an appUser JWT of another user of the same
//! app, an account JWT and no credentials, and must answer exactly the expected status
//! (then once with the owner's credentials, to show the target exists). A property test
//! checks that random ids and userIds never resolve across apps.

use e2e::{account_jwt, suite, unique, Auth, TestApp};
use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What the matrix needs: the target app `a` with one user, a webhook, a whisper and a
/// spare key; another app `b`.
struct World {
    a: TestApp,
    b: TestApp,
    /// `_id` of the app user `alice` of `a`.
    alice: String,
    device: String,
    action: String,
    webhook: String,
    whisper: String,
    spare_key: String,
}

async fn world() -> World {
    let s = suite();
    let a = s.create_app().await;
    let b = s.create_app().await;
    let device = domain::id::new_id();
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/init",
            &a.app_token(),
            Some(json!({"userId": "alice", "device": {"id": device, "platform": "ios"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alice = body["appUser"]["_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/appusers/{alice}/conversation/messages"),
            &a.app_jwt(),
            Some(json!({"text": "pick", "role": "appMaker",
                "actions": [{"type": "postback", "text": "Yes", "payload": "YES"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let action = body["message"]["actions"][0]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/webhooks",
            &a.app_jwt(),
            Some(json!({"target": "http://example.com/a"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let webhook = body["webhook"]["_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/whispers",
            &a.app_jwt(),
            Some(json!({"event": "isolation", "text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let whisper = body["whisper"]["_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/apps/{}/keys", a.id),
            &account_jwt(),
            Some(json!({"name": "spare"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spare_key = body["key"]["_id"].as_str().unwrap().to_owned();
    World {
        a,
        b,
        alice,
        device,
        action,
        webhook,
        whisper,
        spare_key,
    }
}

/// Who makes the control call that shows the target exists.
#[derive(Clone, Copy)]
enum Owner {
    /// The account column already is the owner.
    AccountColumn,
    AppToken,
    AppJwt,
}

struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Other app's token, other app's app JWT, other user's appUser JWT, account, none.
    expect: [u16; 5],
    owner: Owner,
    /// The owner's status.
    owner_expect: u16,
}

fn row(
    method: Method,
    path: String,
    body: Option<Value>,
    expect: [u16; 5],
    owner: Owner,
    owner_expect: u16,
) -> Row {
    Row {
        method,
        path,
        body,
        expect,
        owner,
        owner_expect,
    }
}

/// The body that stands for a multipart image upload (a 1x1 PNG).
const IMAGE: &str = "<multipart image>";

const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x02, 0x01, 0xA1, 0xE3, 0xD5, 0x8A, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Sends `row` with `auth`: JSON, or a multipart image for [`IMAGE`].
async fn send(row: &Row, auth: &Auth) -> (StatusCode, Value) {
    let s = suite();
    if row.body == Some(json!(IMAGE)) {
        let form = reqwest::multipart::Form::new()
            .part(
                "source",
                reqwest::multipart::Part::bytes(PNG.to_vec())
                    .file_name("a.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
            .text("role", "appUser");
        let response = s
            .request(row.method.clone(), &row.path, auth)
            .multipart(form)
            .send()
            .await
            .unwrap();
        return e2e::parts(response).await;
    }
    s.call(row.method.clone(), &row.path, auth, row.body.clone())
        .await
}

const NOT_MINE: [u16; 5] = [404, 404, 403, 403, 401];
const APP_SCOPE_NOT_MINE: [u16; 5] = [403, 404, 403, 403, 401];
const ACCOUNT_ONLY: [u16; 5] = [403, 403, 403, 200, 401];

/// Every route, in an order where destructive calls come last.
#[rustfmt::skip]
fn rows(w: &World) -> Vec<Row> {
    use Method as M;
    use Owner::*;
    let a = &w.a.id;
    let u = &w.alice;
    let mut rows = vec![
        // The operator's apps API.
        row(M::POST, "/v1/apps".into(), Some(json!({"name": unique("iso")})), [403, 403, 403, 201, 401], AccountColumn, 0),
        row(M::GET, "/v1/apps".into(), None, ACCOUNT_ONLY, AccountColumn, 0),
        row(M::GET, format!("/v1/apps/{a}"), None, ACCOUNT_ONLY, AccountColumn, 0),
        row(M::POST, format!("/v1/apps/{a}/keys"), Some(json!({"name": "k"})), [403, 403, 403, 201, 401], AccountColumn, 0),
        row(M::GET, format!("/v1/apps/{a}/keys"), None, ACCOUNT_ONLY, AccountColumn, 0),
        row(M::GET, format!("/v1/apps/{a}/keys/{}", w.a.key_id), None, ACCOUNT_ONLY, AccountColumn, 0),
        // App users.
        row(M::POST, "/v1/init".into(), Some(json!({"userId": "alice", "device": {"id": w.device, "platform": "ios"}})), [200, 200, 403, 403, 401], AppToken, 200),
        row(M::POST, "/v1/appusers".into(), Some(json!({"userId": unique("pre")})), [403, 201, 403, 403, 401], AppJwt, 201),
    ];
    for users in ["appusers", "appUsers"] {
        let base = format!("/v1/{users}/{u}");
        rows.extend([
            row(M::GET, base.clone(), None, NOT_MINE, AppJwt, 200),
            row(M::PUT, base.clone(), Some(json!({"givenName": "Mallory"})), NOT_MINE, AppJwt, 200),
            row(M::POST, format!("{base}/events"), Some(json!({"name": "isolation"})), NOT_MINE, AppJwt, 201),
            row(M::POST, format!("{base}/pushToken"), Some(json!({"deviceId": w.device, "token": "t"})), NOT_MINE, AppJwt, 200),
            row(M::PUT, format!("{base}/devices/{}", w.device), Some(json!({"appVersion": "2.0"})), NOT_MINE, AppJwt, 200),
            row(M::GET, format!("{base}/conversation"), None, NOT_MINE, AppJwt, 200),
            row(M::GET, format!("{base}/conversation/messages"), None, NOT_MINE, AppJwt, 200),
            row(M::POST, format!("{base}/conversation/messages"), Some(json!({"text": "x", "role": "appUser"})), NOT_MINE, AppJwt, 201),
            row(M::POST, format!("{base}/conversation/read"), None, NOT_MINE, AppJwt, 200),
            row(M::POST, format!("{base}/conversation/postback"), Some(json!({"actionId": w.action})), NOT_MINE, AppJwt, 200),
            row(M::POST, format!("{base}/conversation/images"), Some(json!(IMAGE)), NOT_MINE, AppJwt, 201),
        ]);
    }
    rows.extend([
        // Webhooks and whispers: app scope.
        row(M::POST, "/v1/webhooks".into(), Some(json!({"target": "http://example.com/b"})), [403, 201, 403, 403, 401], AppJwt, 201),
        row(M::GET, "/v1/webhooks".into(), None, [403, 200, 403, 403, 401], AppJwt, 200),
        row(M::GET, format!("/v1/webhooks/{}", w.webhook), None, APP_SCOPE_NOT_MINE, AppJwt, 200),
        row(M::PUT, format!("/v1/webhooks/{}", w.webhook), Some(json!({"target": "http://example.com/c"})), APP_SCOPE_NOT_MINE, AppJwt, 200),
        row(M::POST, "/v1/whispers".into(), Some(json!({"event": "x", "text": "y"})), [403, 201, 403, 403, 401], AppJwt, 201),
        row(M::GET, "/v1/whispers".into(), None, [403, 200, 403, 403, 401], AppJwt, 200),
        row(M::GET, format!("/v1/whispers/{}", w.whisper), None, APP_SCOPE_NOT_MINE, AppJwt, 200),
        row(M::PUT, format!("/v1/whispers/{}", w.whisper), Some(json!({"text": "z"})), APP_SCOPE_NOT_MINE, AppJwt, 200),
        // Destructive, last.
        row(M::DELETE, format!("/v1/webhooks/{}", w.webhook), None, APP_SCOPE_NOT_MINE, AppJwt, 200),
        row(M::DELETE, format!("/v1/whispers/{}", w.whisper), None, APP_SCOPE_NOT_MINE, AppJwt, 200),
        row(M::DELETE, format!("/v1/apps/{a}/keys/{}", w.spare_key), None, ACCOUNT_ONLY, AccountColumn, 0),
        row(M::POST, format!("/v1/apps/{a}/token/rotate"), None, ACCOUNT_ONLY, AccountColumn, 0),
        row(M::DELETE, format!("/v1/apps/{a}"), None, ACCOUNT_ONLY, AccountColumn, 0),
    ]);
    rows
}

#[tokio::test]
async fn every_route_refuses_every_foreign_credential_with_the_exact_status() {
    let w = world().await;
    let columns = [
        ("other app's token", w.b.app_token()),
        ("other app's app JWT", w.b.app_jwt()),
        ("other user's appUser JWT", w.a.user_jwt("mallory")),
        ("account JWT", account_jwt()),
        ("no credentials", Auth::None),
    ];
    // Ids of the target app that no foreign caller may ever see.
    let secrets = [
        w.a.id.clone(),
        w.alice.clone(),
        w.webhook.clone(),
        w.whisper.clone(),
    ];
    let mut failures = Vec::new();
    for row in rows(&w) {
        for ((name, auth), expect) in columns.iter().zip(row.expect) {
            let (status, body) = send(&row, auth).await;
            if status.as_u16() != expect {
                failures.push(format!(
                    "{} {} with {name}: {status}, expected {expect}: {body}",
                    row.method, row.path
                ));
            }
            let account = matches!(name, &"account JWT");
            if status.is_success() && !account {
                let text = body.to_string();
                for secret in &secrets {
                    if text.contains(secret.as_str()) {
                        failures.push(format!(
                            "{} {} with {name} leaked {secret}: {body}",
                            row.method, row.path
                        ));
                    }
                }
            }
            if !status.is_success() && !body["error"]["code"].is_string() {
                failures.push(format!(
                    "{} {} with {name}: {status} without an error body",
                    row.method, row.path
                ));
            }
        }
        let owner = match row.owner {
            Owner::AccountColumn => continue,
            Owner::AppToken => w.a.app_token(),
            Owner::AppJwt => w.a.app_jwt(),
        };
        let (status, body) = send(&row, &owner).await;
        if status.as_u16() != row.owner_expect {
            failures.push(format!(
                "{} {} with the owner's credentials: {status}, expected {}: {body}",
                row.method, row.path, row.owner_expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn get_user(path_id: &str, auth: &Auth) -> (StatusCode, Value) {
    let encoded: String = path_id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    suite()
        .call(Method::GET, &format!("/v1/appusers/{encoded}"), auth, None)
        .await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A userId made in one app, or in both, resolves in each app to that app's own user
    /// only; a random id never resolves in an app that did not make it.
    #[test]
    fn random_ids_and_user_ids_never_cross_apps(
        user_id in "[a-zA-Z0-9@._+ -]{1,40}",
        in_both in any::<bool>(),
        random_id in "[0-9a-f]{24}",
    ) {
        // `.` and `..` are dot segments that URLs resolve away: no client can address them.
        prop_assume!(!user_id.trim().chars().all(|c| c == '.'));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let s = suite();
            let (a, b) = tokio::join!(s.create_app(), s.create_app());
            let user_id = user_id.trim().to_owned();
            let user_id = if user_id.is_empty() { "x".to_owned() } else { user_id };
            let in_a = a.init_user(Some(&user_id)).await;
            let in_b = if in_both { Some(b.init_user(Some(&user_id)).await) } else { None };
            let a_id = in_a["_id"].as_str().unwrap();

            // By userId and by _id, each app sees its own user or nothing.
            let (status, body) = get_user(&user_id, &a.app_jwt()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["appUser"]["_id"], in_a["_id"]);
            let (status, body) = get_user(&user_id, &b.app_jwt()).await;
            match &in_b {
                Some(in_b) => {
                    assert_eq!(status, StatusCode::OK, "{body}");
                    assert_eq!(body["appUser"]["_id"], in_b["_id"]);
                    assert_ne!(in_b["_id"], in_a["_id"]);
                }
                None => assert_eq!(status, StatusCode::NOT_FOUND, "{body}"),
            }
            let (status, body) = get_user(a_id, &b.app_jwt()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            let (status, body) = get_user(a_id, &b.app_token()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            // A random id is nobody's, in either app.
            for app in [&a, &b] {
                let (status, body) = get_user(&random_id, &app.app_jwt()).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            }
        });
    }
}
