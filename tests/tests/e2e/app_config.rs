//! What an app maker configures beyond keys (app settings, the menu, integrations), the
//! paging of `/v1/apps`, and the account-scope `/v1/apps/{appId}/...` prefix that
//! smooch-core 3.x puts on every app call. Each check also tries other apps' and other
//! scopes' credentials.

use e2e::{account_jwt, suite, Auth};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn call(method: Method, path: &str, auth: &Auth, body: Option<Value>) -> (StatusCode, Value) {
    suite().call(method, path, auth, body).await
}

fn init_body() -> Value {
    json!({"device": {"id": domain::id::new_id(), "platform": "web"}})
}

#[tokio::test]
async fn apps_are_listed_newest_first_in_pages() {
    let s = suite();
    let older = s.create_app().await;
    let newer = s.create_app().await;
    let (status, page) = call(Method::GET, "/v1/apps?limit=100", &account_jwt(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["_id"].as_str().unwrap())
        .collect();
    let at = |id: &str| ids.iter().position(|i| *i == id);
    // Other tests create apps at the same time: the newer app is on the first page of 100
    // (unless a hundred were created since), and the older one after it if at all.
    let n = at(&newer.id).expect("the newest app is on the first page");
    if let Some(o) = at(&older.id) {
        assert!(n < o, "newest first: {ids:?}");
    }
    assert_eq!(page["offset"], 0);

    let (status, one) = call(
        Method::GET,
        "/v1/apps?limit=1&offset=1",
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["apps"].as_array().unwrap().len(), 1);
    assert_eq!(one["hasMore"], true, "{one}");
    assert_eq!(one["offset"], 1);

    for bad in ["limit=0", "limit=101", "limit=ten", "offset=-1"] {
        let (status, body) = call(
            Method::GET,
            &format!("/v1/apps?{bad}"),
            &account_jwt(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let (status, _) = call(Method::GET, "/v1/apps?limit=1", &newer.app_jwt(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn app_settings_change_what_init_shows() {
    let app = suite().create_app().await;
    let path = format!("/v1/apps/{}", app.id);
    let (status, body) = call(
        Method::PUT,
        &path,
        &account_jwt(),
        Some(json!({"settings": {"web": {"accentColor": "#FF0000", "displayStyle": "tab"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app"]["settings"]["web"]["accentColor"], "ff0000");
    // A second update of another setting keeps the first.
    let (status, body) = call(
        Method::PUT,
        &path,
        &account_jwt(),
        Some(json!({"name": "renamed", "settings": {"web": {"linkColor": "00ff00"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app"]["name"], "renamed");
    let web = &body["app"]["settings"]["web"];
    assert_eq!(web["accentColor"], "ff0000");
    assert_eq!(web["linkColor"], "00ff00");
    assert_eq!(web["isAccentColorDark"], true, "defaults stay: {web}");

    let (status, init) = call(
        Method::POST,
        "/v1/init",
        &app.app_token(),
        Some(init_body()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{init}");
    assert_eq!(init["app"]["settings"]["web"]["accentColor"], "ff0000");
    assert_eq!(init["app"]["settings"]["web"]["displayStyle"], "tab");

    for bad in [
        json!({"settings": {"web": {"accentColor": "red"}}}),
        json!({"settings": {"colour": true}}),
        json!({"settings": []}),
        json!({"name": " "}),
    ] {
        let (status, body) = call(Method::PUT, &path, &account_jwt(), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["description"].is_string());
    }
    // Only the account may change an app.
    for auth in [app.app_jwt(), app.app_token()] {
        let (status, _) = call(
            Method::PUT,
            &path,
            &auth,
            Some(json!({"settings": {"web": {"accentColor": "000000"}}})),
        )
        .await;
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED);
    }
    let (status, _) = call(
        Method::PUT,
        &format!("/v1/apps/{}", domain::id::new_id()),
        &account_jwt(),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_menu_is_set_read_by_the_app_and_removed() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let (status, body) = call(Method::GET, "/v1/menu", &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"menu": {"items": []}}));

    let items = json!({"items": [
        {"type": "link", "text": "Site", "uri": "https://example.com"},
        {"type": "postback", "text": "Help", "payload": "HELP"}
    ]});
    let (status, set) = call(Method::PUT, "/v1/menu", &app.app_jwt(), Some(items)).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let stored = set["menu"]["items"].as_array().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["uri"], "https://example.com");
    assert_eq!(stored[1]["payload"], "HELP");
    assert!(stored[0]["_id"].is_string());

    // Everyone in the app reads it; nobody else's menu changes.
    let user = app.init_user(Some("menu-reader")).await;
    assert!(user["_id"].is_string());
    for auth in [app.app_token(), app.user_jwt("menu-reader")] {
        let (status, got) = call(Method::GET, "/v1/menu", &auth, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got, set);
    }
    let (_, theirs) = call(Method::GET, "/v1/menu", &other.app_jwt(), None).await;
    assert_eq!(theirs, json!({"menu": {"items": []}}));

    // Only an app-scope JWT changes it; bad items are refused whole.
    for auth in [app.app_token(), app.user_jwt("menu-reader")] {
        let (status, _) = call(Method::DELETE, "/v1/menu", &auth, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for bad in [
        json!({}),
        json!({"items": {}}),
        json!({"items": [{"type": "buy", "text": "x", "amount": 5}]}),
        json!({"items": [{"type": "link", "text": "x", "uri": "not a uri"}]}),
        json!({"items": (0..11).map(|i| json!({"type": "postback", "text": format!("{i}"), "payload": "p"})).collect::<Vec<_>>()}),
    ] {
        let (status, body) = call(Method::PUT, "/v1/menu", &app.app_jwt(), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, unchanged) = call(Method::GET, "/v1/menu", &app.app_jwt(), None).await;
    assert_eq!(unchanged, set);

    let (status, removed) = call(Method::DELETE, "/v1/menu", &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(removed, json!({"menu": {"items": []}}));
}

#[tokio::test]
async fn integrations_keep_their_secrets_and_show_in_init() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let (status, created) = call(
        Method::POST,
        "/v1/integrations",
        &app.app_jwt(),
        Some(json!({"type": "fcm", "serverKey": "test-server-key", "senderId": "731399543244"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let fcm = &created["integration"];
    assert_eq!(fcm["type"], "fcm");
    assert_eq!(fcm["status"], "active");
    assert_eq!(fcm["senderId"], "731399543244");
    assert!(
        !created.to_string().contains("test-server-key"),
        "{created}"
    );
    let fcm_id = fcm["_id"].as_str().unwrap().to_owned();

    let (status, apn) = call(
        Method::POST,
        "/v1/integrations",
        &app.app_jwt(),
        Some(json!({"type": "apn", "certificate": "dGVzdA==", "password": "test-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{apn}");
    assert!(!apn.to_string().contains("dGVzdA=="));
    assert!(!apn.to_string().contains("test-password"));

    let (status, dup) = call(
        Method::POST,
        "/v1/integrations",
        &app.app_jwt(),
        Some(json!({"type": "fcm", "serverKey": "k2", "senderId": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");

    let (_, all) = call(Method::GET, "/v1/integrations", &app.app_jwt(), None).await;
    assert_eq!(all["integrations"].as_array().unwrap().len(), 2, "{all}");
    let (_, only) = call(
        Method::GET,
        "/v1/integrations?types=apn",
        &app.app_jwt(),
        None,
    )
    .await;
    let only = only["integrations"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["type"], "apn");
    let (status, body) = call(
        Method::GET,
        "/v1/integrations?types=apn,pigeon",
        &app.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, got) = call(
        Method::GET,
        &format!("/v1/integrations/{fcm_id}"),
        &app.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["integration"], *fcm);

    // Init tells devices what push is set up.
    let (_, init) = call(
        Method::POST,
        "/v1/init",
        &app.app_token(),
        Some(init_body()),
    )
    .await;
    assert_eq!(init["app"]["apnEnabled"], true, "{init}");
    assert_eq!(init["app"]["gcmEnabled"], true);
    assert_eq!(init["app"]["gcmProject"], "731399543244");
    assert_eq!(init["app"]["integrations"].as_array().unwrap().len(), 2);
    assert!(!init.to_string().contains("test-server-key"));

    // Other apps and lesser credentials see nothing.
    let (_, theirs) = call(Method::GET, "/v1/integrations", &other.app_jwt(), None).await;
    assert_eq!(theirs, json!({"integrations": []}));
    let (status, _) = call(
        Method::GET,
        &format!("/v1/integrations/{fcm_id}"),
        &other.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        Method::DELETE,
        &format!("/v1/integrations/{fcm_id}"),
        &other.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for auth in [app.app_token(), app.user_jwt("u")] {
        let (status, _) = call(Method::GET, "/v1/integrations", &auth, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, other_init) = call(
        Method::POST,
        "/v1/init",
        &other.app_token(),
        Some(init_body()),
    )
    .await;
    assert_eq!(other_init["app"]["apnEnabled"], false);
    assert_eq!(other_init["app"]["gcmProject"], Value::Null);

    for bad in [
        json!({"type": "carrier-pigeon"}),
        json!({"serverKey": "k"}),
        json!({"type": "telegram"}),
        json!({"type": "apn", "certificate": "c", "production": "yes"}),
        json!([]),
    ] {
        let (status, body) = call(
            Method::POST,
            "/v1/integrations",
            &other.app_jwt(),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["description"].is_string());
    }

    let (status, _) = call(
        Method::DELETE,
        &format!("/v1/integrations/{fcm_id}"),
        &app.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        Method::GET,
        &format!("/v1/integrations/{fcm_id}"),
        &app.app_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn account_scope_calls_app_paths_under_the_app_prefix() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let prefix = format!("/v1/apps/{}", app.id);

    let (status, init) = call(
        Method::POST,
        &format!("{prefix}/init"),
        &account_jwt(),
        Some(json!({"userId": "acct-user", "device": {"id": domain::id::new_id(), "platform": "web"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{init}");
    assert_eq!(init["app"]["_id"], app.id.as_str());

    let (status, posted) = call(
        Method::POST,
        &format!("{prefix}/appusers/acct-user/messages"),
        &account_jwt(),
        Some(json!({"text": "from the account", "role": "appMaker"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    // The message is the app's, as its own JWT sees it.
    let (_, page) = call(
        Method::GET,
        "/v1/appusers/acct-user/messages",
        &app.app_jwt(),
        None,
    )
    .await;
    assert_eq!(page["messages"][0]["text"], "from the account", "{page}");
    // Query strings pass through; so do the casing alias and webhooks.
    let (status, page) = call(
        Method::GET,
        &format!("{prefix}/appUsers/acct-user/conversation?before=9999999999"),
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page["conversation"]["messages"][0]["text"],
        "from the account"
    );
    let (status, hooks) = call(
        Method::GET,
        &format!("{prefix}/webhooks"),
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hooks, json!({"webhooks": []}));

    // Scoped to the app in the path: another app's user is not found there.
    other.init_user(Some("their-user")).await;
    let (status, body) = call(
        Method::GET,
        &format!("{prefix}/appusers/their-user"),
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The prefix is for account scope only, and for apps that exist.
    for auth in [
        app.app_jwt(),
        app.app_token(),
        app.user_jwt("acct-user"),
        other.app_jwt(),
    ] {
        let (status, body) = call(
            Method::GET,
            &format!("{prefix}/appusers/acct-user"),
            &auth,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, _) = call(
        Method::GET,
        &format!("{prefix}/appusers/acct-user"),
        &Auth::None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        Method::GET,
        &format!("/v1/apps/{}/webhooks", domain::id::new_id()),
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(
        Method::GET,
        &format!("{prefix}/nothing/here"),
        &account_jwt(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    // The keys routes stay the account's own.
    let (status, keys) = call(Method::GET, &format!("{prefix}/keys"), &account_jwt(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["keys"][0]["_id"], app.key_id.as_str());
}
