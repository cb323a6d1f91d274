//! Real time: the `faye` 1.1 npm client (tests/browser, installed by scripts/browser-up.sh)
//! subscribes to `/faye` with each credential kind and receives what the REST API accepts;
//! other users', other apps' and revoked credentials are refused; a second gateway replica's
//! subscriber receives each message exactly once; the typing endpoint's checks.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{account_jwt, start_gateway, suite, unique, Auth, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// A `faye-subscribe.js` run.
struct Subscriber {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

fn bearer(auth: &Auth) -> &str {
    match auth {
        Auth::Jwt(jwt) => jwt,
        _ => panic!("not a JWT"),
    }
}

/// Starts a subscriber of `channel` on the gateway at `base` that exits after `expect`
/// messages (and a grace period in which any duplicate would show).
fn spawn(base: &str, channel: &str, ext: Value, expect: usize) -> Subscriber {
    spawn_with(base, channel, ext, expect, None)
}

/// [`spawn`], with the client told not to use the transport `disable`.
fn spawn_with(
    base: &str,
    channel: &str,
    ext: Value,
    expect: usize,
    disable: Option<&str>,
) -> Subscriber {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/faye").exists(),
        "the faye client is not installed: run scripts/browser-up.sh"
    );
    let mut child = Command::new("node")
        .arg(dir.join("faye-subscribe.js"))
        .env("FAYE_URL", format!("{base}/faye"))
        .env("FAYE_CHANNEL", channel)
        .env("FAYE_EXT", ext.to_string())
        .env("FAYE_EXPECT", expect.to_string())
        .env("FAYE_GRACE_MS", "1500")
        .env("FAYE_TIMEOUT_MS", "30000")
        .env("FAYE_DISABLE", disable.unwrap_or(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Subscriber {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Subscriber {
    /// The first line: `SUBSCRIBED` or `REFUSED ...`.
    async fn outcome(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
            .await
            .expect("the subscriber said nothing within 30 s")
            .unwrap_or_else(|| "EXITED".to_owned());
        self.seen.push(line.clone());
        line
    }

    /// The transport the client chose (the line after `SUBSCRIBED`).
    async fn transport(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
            .await
            .expect("the subscriber said nothing within 30 s")
            .unwrap_or_default();
        self.seen.push(line.clone());
        line.strip_prefix("TRANSPORT ").unwrap_or(&line).to_owned()
    }

    /// Waits for the exit; returns the data of every message received.
    async fn finish(mut self) -> Vec<Value> {
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("the subscriber did not exit")
            .expect("waiting for node");
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "subscriber failed ({status}):\n{}",
            self.seen.join("\n")
        );
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("MESSAGE "))
            .map(|m| serde_json::from_str(m).expect("message JSON"))
            .collect()
    }
}

/// A user with a conversation: `(appUser _id, conversation _id)`.
async fn user_with_conversation(app: &TestApp, user_id: &str) -> (String, String) {
    let user = app.init_user(Some(user_id)).await;
    let id = user["_id"].as_str().unwrap().to_owned();
    let first = app.post_message(&id, "appUser", "first").await;
    let conversation = first["conversation"]["_id"].as_str().unwrap().to_owned();
    (id, conversation)
}

async fn typing(user: &str, auth: &Auth, body: Value) -> (StatusCode, Value) {
    suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/activity"),
            auth,
            Some(body),
        )
        .await
}

#[tokio::test]
async fn each_credential_receives_messages_and_typing() {
    let s = suite();
    let app = s.create_app().await;
    let (user, conversation) = user_with_conversation(&app, "faye-alice").await;
    let messages = format!("/v1/conversations/{conversation}");
    let activity = format!("{messages}/activity");

    let mut by_token = spawn(
        &s.base,
        &messages,
        json!({"appUserId": user, "appToken": app.token}),
        2,
    );
    let user_jwt = app.user_jwt("faye-alice");
    let mut by_user_jwt = spawn(
        &s.base,
        &activity,
        json!({"appUserId": user, "jwt": bearer(&user_jwt)}),
        2,
    );
    let app_jwt = app.app_jwt();
    let mut by_app_jwt = spawn(
        &s.base,
        &messages,
        json!({"appUserId": user, "jwt": bearer(&app_jwt)}),
        2,
    );
    let mut own_user = spawn(
        &s.base,
        &format!("/v1/users/{user}"),
        json!({"appUserId": user, "appToken": app.token}),
        1,
    );
    for sub in [
        &mut by_token,
        &mut by_user_jwt,
        &mut by_app_jwt,
        &mut own_user,
    ] {
        assert_eq!(sub.outcome().await, "SUBSCRIBED");
    }
    // The user channel is subscribed, but nothing is published there in this test.
    drop(own_user);

    app.post_message(&user, "appMaker", "a reply").await;
    app.post_message(&user, "appUser", "thanks").await;
    let (status, body) = typing(
        &user,
        &app_jwt,
        json!({"role": "appMaker", "type": "typing:start", "data": {"name": "Ann"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = typing(
        &user,
        &app.app_token(),
        json!({"role": "appUser", "type": "typing:stop"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for sub in [by_token, by_app_jwt] {
        let got = sub.finish().await;
        let texts: Vec<_> = got
            .iter()
            .map(|m| (m["role"].clone(), m["text"].clone()))
            .collect();
        assert_eq!(
            texts,
            vec![
                (json!("appMaker"), json!("a reply")),
                (json!("appUser"), json!("thanks"))
            ]
        );
        assert!(got
            .iter()
            .all(|m| m["_id"].is_string() && m["received"].is_number()));
    }
    let got = by_user_jwt.finish().await;
    assert_eq!(
        got,
        vec![
            json!({"activity": "typing:start", "role": "appMaker", "data": {"name": "Ann"}}),
            json!({"activity": "typing:stop", "role": "appUser", "data": {}}),
        ]
    );
    // Typing is not stored as a message.
    let (_, page) = s
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app_jwt,
            None,
        )
        .await;
    assert_eq!(
        page["conversation"]["messages"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn other_users_other_apps_and_revoked_keys_are_refused() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let (alice, alice_conv) = user_with_conversation(&app, "faye-a").await;
    let (bob, bob_conv) = user_with_conversation(&app, "faye-b").await;
    let (carol, _) = user_with_conversation(&other, "faye-c").await;
    let alice_jwt = app.user_jwt("faye-a");
    let refused = [
        // Bob's conversation with Alice's credentials, either way round.
        (
            format!("/v1/conversations/{bob_conv}"),
            json!({"appUserId": alice, "appToken": app.token}),
        ),
        (
            format!("/v1/conversations/{bob_conv}/activity"),
            json!({"appUserId": bob, "jwt": bearer(&alice_jwt)}),
        ),
        (
            format!("/v1/users/{bob}"),
            json!({"appUserId": alice, "appToken": app.token}),
        ),
        // Another app's token or key for this app's user, and this app's for the other's.
        (
            format!("/v1/conversations/{alice_conv}"),
            json!({"appUserId": alice, "appToken": other.token}),
        ),
        (
            format!("/v1/conversations/{alice_conv}"),
            json!({"appUserId": alice, "jwt": bearer(&other.app_jwt())}),
        ),
        (
            format!("/v1/users/{carol}"),
            json!({"appUserId": carol, "appToken": app.token}),
        ),
        // No or bad credentials; a channel that is not a v1 channel.
        (
            format!("/v1/conversations/{alice_conv}"),
            json!({"appUserId": alice}),
        ),
        (
            format!("/v1/conversations/{alice_conv}"),
            json!({"appUserId": alice, "appToken": "nope"}),
        ),
        (
            "/v1/conversations/*".to_owned(),
            json!({"appUserId": alice, "appToken": app.token}),
        ),
    ];
    let mut subs: Vec<_> = refused
        .iter()
        .map(|(channel, ext)| (channel.clone(), spawn(&s.base, channel, ext.clone(), 1)))
        .collect();
    for (channel, sub) in &mut subs {
        let outcome = sub.outcome().await;
        assert!(outcome.starts_with("REFUSED 403"), "{channel}: {outcome}");
        // Nothing about the channel's owner is in the refusal.
        assert!(!outcome.contains("faye-"), "{outcome}");
    }

    // A revoked key: the subscription that worked before is refused after.
    let app_jwt = app.app_jwt();
    let ext = json!({"appUserId": alice, "jwt": bearer(&app_jwt)});
    let channel = format!("/v1/conversations/{alice_conv}");
    let mut before = spawn(&s.base, &channel, ext.clone(), 1);
    assert_eq!(before.outcome().await, "SUBSCRIBED");
    drop(before);
    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}/keys/{}", app.id, app.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut outcome = String::new();
    for _ in 0..20 {
        let mut after = spawn(&s.base, &channel, ext.clone(), 1);
        outcome = after.outcome().await;
        if outcome.starts_with("REFUSED 403") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(outcome.starts_with("REFUSED 403"), "{outcome}");
}

/// Raw Bayeux: one POST of `messages`, returning the replies.
async fn bayeux(base: &str, messages: Value) -> Vec<Value> {
    let response = suite()
        .http
        .post(format!("{base}/faye"))
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn clients_cannot_publish_and_unknown_clients_must_handshake() {
    let s = suite();
    let app = s.create_app().await;
    let (_, conversation) = user_with_conversation(&app, "faye-p").await;
    let hello = bayeux(&s.base, json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1"}])).await;
    assert_eq!(hello[0]["successful"], true, "{hello:?}");
    assert_eq!(hello[0]["id"], "1");
    let client = hello[0]["clientId"].as_str().unwrap().to_owned();
    let published = bayeux(&s.base, json!([{"channel": format!("/v1/conversations/{conversation}"), "clientId": client, "data": {"text": "spoof"}, "id": "2"}])).await;
    assert_eq!(published[0]["successful"], false);
    assert!(
        published[0]["error"].as_str().unwrap().starts_with("403:"),
        "{published:?}"
    );
    let (_, page) = s
        .call(
            Method::GET,
            "/v1/appusers/faye-p/conversation",
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(
        page["conversation"]["messages"].as_array().unwrap().len(),
        1
    );

    let gone = bayeux(
        &s.base,
        json!([{"channel": "/meta/disconnect", "clientId": client}]),
    )
    .await;
    assert_eq!(gone[0]["successful"], true);
    let connect = bayeux(
        &s.base,
        json!([{"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"}]),
    )
    .await;
    assert_eq!(connect[0]["successful"], false);
    assert_eq!(connect[0]["advice"]["reconnect"], "handshake");

    // Callback-polling answers JavaScript; a callback that is not an identifier is refused.
    let response = s
        .http
        .get(format!("{}/faye", s.base))
        .query(&[
            (
                "message",
                r#"[{"channel":"/meta/handshake","version":"1.0"}]"#,
            ),
            ("jsonp", "cb_1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("/**/cb_1([") && text.contains("\"clientId\""),
        "{text}"
    );
    let response = s
        .http
        .get(format!("{}/faye", s.base))
        .query(&[("message", "[]"), ("jsonp", "alert(1)")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_subscriber_on_another_replica_receives_each_message_once() {
    let s = suite();
    let (second, stop) = start_gateway(s.gateway_config()).await;
    let app = s.create_app().await;
    let (user, conversation) = user_with_conversation(&app, &unique("faye-r")).await;
    let messages = format!("/v1/conversations/{conversation}");
    let ext = json!({"appUserId": user, "appToken": app.token});
    // One over WebSocket, one over long-polling.
    let mut there = spawn(&second, &messages, ext.clone(), 3);
    let mut here = spawn_with(&s.base, &messages, ext, 3, Some("websocket"));
    assert_eq!(there.outcome().await, "SUBSCRIBED");
    assert_eq!(there.transport().await, "websocket");
    assert_eq!(here.outcome().await, "SUBSCRIBED");
    assert_eq!(here.transport().await, "long-polling");
    // Posted through the first replica only.
    for text in ["one", "two", "three"] {
        app.post_message(&user, "appMaker", text).await;
    }
    for sub in [there, here] {
        let got = sub.finish().await;
        let texts: Vec<_> = got.iter().map(|m| m["text"].clone()).collect();
        assert_eq!(texts, vec![json!("one"), json!("two"), json!("three")]);
    }
    stop.cancel();
}

#[tokio::test]
async fn typing_checks_its_input_and_caller() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let (user, _) = user_with_conversation(&app, "faye-t").await;
    for bad in [
        json!({"type": "typing:start"}),
        json!({"role": "appUser"}),
        json!({"role": "robot", "type": "typing:start"}),
        json!({"role": "appUser", "type": "typing:maybe"}),
        json!({"role": "appUser", "type": "typing:start", "data": "x"}),
    ] {
        let (status, body) = typing(&user, &app.app_token(), bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let start = json!({"role": "appMaker", "type": "typing:start"});
    let (status, _) = typing(&user, &app.app_token(), start.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = typing(&user, &app.user_jwt("faye-t"), start.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = typing(&user, &other.app_jwt(), start.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = typing(&user, &Auth::None, start).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_merge_is_published_on_the_surviving_users_channel() {
    let s = suite();
    let app = s.create_app().await;
    let (phone, tablet) = (domain::id::new_id(), domain::id::new_id());
    let init = |device: String, user_id: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut body =
                json!({"device": {"id": device, "platform": "web", "appVersion": "1.0"}});
            if let Some(user_id) = user_id {
                body["userId"] = json!(user_id);
            }
            let (status, body) = suite()
                .call(Method::POST, "/v1/init", &app.app_token(), Some(body))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["appUser"]["_id"].as_str().unwrap().to_owned()
        }
    };
    let steve = init(phone, Some("faye-steve")).await;
    let anonymous = init(tablet.clone(), None).await;
    app.post_message(&anonymous, "appUser", "from the tablet")
        .await;
    let mut sub = spawn(
        &s.base,
        &format!("/v1/users/{steve}"),
        json!({"appUserId": steve, "appToken": app.token}),
        1,
    );
    assert_eq!(sub.outcome().await, "SUBSCRIBED");
    assert_eq!(init(tablet, Some("faye-steve")).await, steve);
    let got = sub.finish().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], json!({"type": "merge"}));
    assert_eq!(got[0]["appUser"]["_id"], json!(steve));
    assert_eq!(got[0]["appUser"]["userId"], "faye-steve");
}

#[tokio::test]
async fn profile_changes_are_published_on_the_users_channel_only() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let ada = app.init_user(Some("faye-ada")).await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = app.init_user(Some("faye-bob")).await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Ada's channel with her own JWT; Bob's subscriber must get Bob's change only.
    let mut mine = spawn(
        &s.base,
        &format!("/v1/users/{ada}"),
        json!({"appUserId": ada, "jwt": bearer(&app.user_jwt("faye-ada"))}),
        2,
    );
    let mut his = spawn(
        &s.base,
        &format!("/v1/users/{bob}"),
        json!({"appUserId": bob, "appToken": app.token}),
        1,
    );
    assert_eq!(mine.outcome().await, "SUBSCRIBED");
    assert_eq!(his.outcome().await, "SUBSCRIBED");
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/appusers/faye-ada",
            &app.user_jwt("faye-ada"),
            Some(json!({"givenName": "Ada", "properties": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another app's user of the same userId changes too: nothing reaches this app's channel.
    other.init_user(Some("faye-ada")).await;
    let (status, _) = s
        .call(
            Method::PUT,
            "/v1/appusers/faye-ada",
            &other.app_jwt(),
            Some(json!({"givenName": "Impostor"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(
            Method::DELETE,
            "/v1/appusers/faye-ada/profile",
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = mine.finish().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event"], json!({"type": "update"}));
    assert_eq!(got[0]["appUser"]["_id"], json!(ada));
    assert_eq!(got[0]["appUser"]["givenName"], "Ada");
    assert_eq!(got[0]["appUser"]["properties"]["plan"], "pro");
    assert!(got[0]["appUser"].get("devices").is_none(), "{got:?}");
    assert_eq!(got[1]["event"], json!({"type": "update"}));
    assert!(got[1]["appUser"]["givenName"].is_null(), "{got:?}");
    let (status, _) = s
        .call(
            Method::PUT,
            "/v1/appusers/faye-bob",
            &app.app_token(),
            Some(json!({"surname": "Builder"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = his.finish().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["appUser"]["_id"], json!(bob));
    assert_eq!(got[0]["appUser"]["surname"], "Builder");
}

#[tokio::test]
async fn a_revoked_credential_ends_the_subscriptions_it_granted() {
    let s = suite();
    let app = s.create_app().await;
    let (user, conversation) = user_with_conversation(&app, "faye-revoked").await;
    let hello = bayeux(&s.base, json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}])).await;
    let client = hello[0]["clientId"].as_str().unwrap().to_owned();
    let channel = format!("/v1/conversations/{conversation}");
    let subscribed = bayeux(
        &s.base,
        json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": channel,
                "ext": {"appUserId": user, "appToken": app.token}}]),
    )
    .await;
    assert_eq!(subscribed[0]["successful"], true, "{subscribed:?}");
    // A connect answers once a message arrives, with the messages before its own reply.
    let connect = |text: &'static str| {
        let (app, user, client) = (app.clone(), user.clone(), client.clone());
        async move {
            app.post_message(&user, "appMaker", text).await;
            let replies = bayeux(
                &suite().base,
                json!([{"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"}]),
            )
            .await;
            let reply = replies
                .iter()
                .find(|m| m["channel"] == "/meta/connect")
                .cloned()
                .unwrap_or_else(|| panic!("no connect reply: {replies:?}"));
            (reply, replies)
        }
    };
    let (reply, delivered) = connect("before").await;
    assert_eq!(reply["successful"], true, "{delivered:?}");
    assert!(
        delivered.iter().any(|m| m.get("data").is_some()),
        "{delivered:?}"
    );

    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/apps/{}/token/rotate", app.id),
            &e2e::account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The revocation reaches the gateway's cache within moments; then the client is gone.
    let mut ended = None;
    for _ in 0..20 {
        let (reply, delivered) = connect("after").await;
        if reply["successful"] == false {
            ended = Some((reply, delivered));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reply, delivered) = ended.expect("the client outlived its revoked app token");
    assert_eq!(reply["advice"]["reconnect"], "handshake", "{reply:?}");
    assert!(
        delivered.iter().all(|m| m.get("data").is_none()),
        "{delivered:?}"
    );
    // Subscribing again with the old token is refused.
    let again = bayeux(&s.base, json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}])).await;
    let again = again[0]["clientId"].as_str().unwrap().to_owned();
    let refused = bayeux(
        &s.base,
        json!([{"channel": "/meta/subscribe", "clientId": again, "subscription": channel,
                "ext": {"appUserId": user, "appToken": app.token}}]),
    )
    .await;
    assert_eq!(refused[0]["successful"], false, "{refused:?}");
}

#[tokio::test]
async fn the_demo_page_is_served_and_uses_faye_with_an_app_token() {
    let s = suite();
    let response = s.http.get(format!("{}/web", s.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    for needle in [
        "'/faye'",
        "/meta/subscribe",
        "'app-token'",
        "/conversation/activity",
        "/v1/init",
    ] {
        assert!(page.contains(needle), "the demo page lacks {needle}");
    }
}
