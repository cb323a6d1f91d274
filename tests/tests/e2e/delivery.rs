//! Webhook delivery through the whole suite: a local sink receives what the worker POSTs
//! (payload, signature, trigger filtering, the conversation events), failing targets are
//! retried and show up in the delivery log, where they can be re-sent; deleted webhooks
//! get nothing; another app sees nothing; and a delivery continues the request's trace.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use e2e::{suite, TestApp};

use crate::operations::{metrics, sample};
use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

/// Polls (25 ms apart) before a wait fails: generous, for a loaded machine or a broker
/// restarting; waits end as soon as what they wait for happened.
const PATIENCE: usize = 600;

/// One POST the sink received.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    json: Value,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn trigger(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }
}

#[derive(Debug)]
struct SinkState {
    hits: Mutex<Vec<Hit>>,
    /// The status the sink answers with.
    status: AtomicU16,
}

/// A webhook receiver on 127.0.0.1 that records every POST.
pub(crate) struct Sink {
    base: String,
    state: Arc<SinkState>,
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body,
        json,
    });
    AxumStatus::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}

impl Sink {
    pub(crate) async fn start() -> Sink {
        let state = Arc::new(SinkState {
            hits: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sink { base, state }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the hits so far, and returns them.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        for _ in 0..PATIENCE {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the sink never saw {what}; it got {:#?}", self.hits());
    }

    /// Waits for at least `n` hits.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Hit> {
        self.wait_until(&format!("{n} deliveries"), |h| h.len() >= n)
            .await
    }
}

/// Subscribes `target` to `events` and returns the webhook.
pub(crate) async fn webhook(app: &TestApp, target: &str, events: Option<Value>) -> Value {
    let mut body = json!({"target": target});
    if let Some(events) = events {
        body["events"] = events;
    }
    let (status, body) = suite()
        .call(Method::POST, "/v1/webhooks", &app.app_jwt(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["webhook"].clone()
}

fn id(value: &Value) -> String {
    value["_id"].as_str().unwrap().to_owned()
}

/// Posts a message as the app user with the app token (as the SDKs do).
async fn user_says(app: &TestApp, user: &str, text: &str) -> Value {
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            &app.app_token(),
            Some(json!({"text": text, "role": "appUser"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Verifies a Standard Webhooks signature the way a receiver would.
fn signature_is_valid(secret: &str, hit: &Hit) -> bool {
    let signed = format!(
        "{}.{}.{}",
        hit.header("webhook-id"),
        hit.header("webhook-timestamp"),
        std::str::from_utf8(&hit.body).unwrap()
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()));
    hit.header("webhook-signature")
        .split(' ')
        .any(|given| given == expected)
}

/// The webhook's deliveries (first page) with `auth`.
async fn deliveries(webhook: &str, auth: &e2e::Auth, query: &str) -> (StatusCode, Value) {
    suite()
        .call(
            Method::GET,
            &format!("/v1/webhooks/{webhook}/deliveries{query}"),
            auth,
            None,
        )
        .await
}

/// Waits until the delivery log of `webhook` satisfies `done`.
async fn wait_for_log(app: &TestApp, webhook: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..PATIENCE {
        let (status, body) = deliveries(webhook, &app.app_jwt(), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the delivery log never got there: {last:#}");
}

#[tokio::test]
async fn an_app_user_message_reaches_its_webhook_signed_with_the_reference_payload() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let hook = webhook(&app, &sink.url("/hook"), None).await;
    let user = app.init_user(Some("steve")).await;
    let posted = user_says(&app, &id(&user), "Hi! Do you have time to chat?").await;

    let hit = sink.wait_for(1).await.remove(0);
    assert_eq!(hit.path, "/hook");
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(hit.header("x-api-key"), hook["secret"].as_str().unwrap());
    assert!(domain::id::is_id(hit.header("webhook-id")), "{hit:?}");
    let sent_at: i64 = hit.header("webhook-timestamp").parse().unwrap();
    assert!((sent_at - domain::time::now_ms() / 1000).abs() < 60);
    assert!(
        signature_is_valid(hook["secret"].as_str().unwrap(), &hit),
        "{hit:?}"
    );

    // The reference's payload exactly, then the additive fields.
    let body = &hit.json;
    assert_eq!(body["event"], "message:appUser");
    assert_eq!(body["appUserId"], user["_id"]);
    assert_eq!(body["messages"], json!([posted["message"]]));
    assert_eq!(body["messages"][0]["text"], "Hi! Do you have time to chat?");
    assert_eq!(body["trigger"], "message:appUser");
    assert_eq!(body["app"], json!({"_id": app.id}));
    assert_eq!(body["appUser"]["_id"], user["_id"]);
    assert_eq!(body["appUser"]["userId"], "steve");
    assert_eq!(body["version"], 1);

    // And the delivery log shows it.
    let log = wait_for_log(&app, &id(&hook), |b| {
        b["deliveries"][0]["status"] == "succeeded"
    })
    .await;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["_id"], hit.header("webhook-id"));
    assert_eq!(delivery["webhookId"], hook["_id"]);
    assert_eq!(delivery["trigger"], "message:appUser");
    assert!(domain::id::is_id(delivery["eventId"].as_str().unwrap()));
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["outcome"], "succeeded");
    assert_eq!(attempt["statusCode"], 200);
    assert_eq!(attempt["error"], Value::Null);
    assert!(domain::time::parse_iso(attempt["attemptedAt"].as_str().unwrap()).is_some());
    assert!(domain::time::parse_iso(delivery["createdAt"].as_str().unwrap()).is_some());
}

#[tokio::test]
async fn in_one_process_the_worker_takes_app_user_messages_from_the_relay_not_the_queue() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    webhook(&app, &sink.url("/hook"), Some(json!(["message"]))).await;
    let user = id(&app.init_user(None).await);
    let taken = sample(&metrics().await, "outbox_local_taken_total", &[]);
    user_says(&app, &user, "in process").await;
    app.post_message(&user, "appMaker", "through the queue")
        .await;
    let hits = sink.wait_for(2).await;
    let mut triggers: Vec<&str> = hits.iter().map(Hit::trigger).collect();
    triggers.sort();
    assert_eq!(triggers, ["message:appMaker", "message:appUser"]);
    // Other tests post meanwhile: the count moved by at least this test's message. The
    // app maker's (the push worker's trigger too) went through the queue.
    let now = sample(&metrics().await, "outbox_local_taken_total", &[]);
    assert!(now >= taken + 1.0, "{taken} -> {now}");
}

#[tokio::test]
async fn webhooks_get_only_the_roles_they_subscribe_to() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    webhook(&app, &sink.url("/users"), Some(json!(["message:appUser"]))).await;
    webhook(
        &app,
        &sink.url("/makers"),
        Some(json!(["message:appMaker"])),
    )
    .await;
    webhook(&app, &sink.url("/all"), Some(json!(["message"]))).await;
    let user = id(&app.init_user(None).await);
    user_says(&app, &user, "from the user").await;
    app.post_message(&user, "appMaker", "from the maker").await;

    let hits = sink.wait_for(4).await;
    // Anything misrouted would arrive about as fast as the rest.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits_at = |path: &str| -> Vec<String> {
        let mut t: Vec<String> = sink
            .hits()
            .iter()
            .filter(|h| h.path == path)
            .map(|h| h.trigger().to_owned())
            .collect();
        t.sort();
        t
    };
    assert_eq!(hits_at("/users"), ["message:appUser"], "{hits:#?}");
    assert_eq!(hits_at("/makers"), ["message:appMaker"]);
    assert_eq!(hits_at("/all"), ["message:appMaker", "message:appUser"]);
}

/// `triggers` is the later name of `events`, and `*` subscribes to every trigger.
#[tokio::test]
async fn triggers_name_the_events_and_a_star_receives_every_trigger() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let (status, body) = suite()
        .call(
            Method::POST,
            "/v1/webhooks",
            &app.app_jwt(),
            Some(json!({"target": sink.url("/star"), "triggers": ["*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["webhook"]["triggers"], json!(["*"]));
    assert_eq!(body["webhook"]["events"], json!(["*"]));
    let only_makers = webhook(&app, &sink.url("/makers"), Some(json!(["message"]))).await;
    let (status, body) = suite()
        .call(
            Method::PUT,
            &format!("/v1/webhooks/{}", id(&only_makers)),
            &app.app_jwt(),
            Some(json!({"triggers": ["message:appMaker"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook"]["triggers"], json!(["message:appMaker"]));
    assert_eq!(body["webhook"]["events"], json!(["message:appMaker"]));

    let user = id(&app.init_user(None).await);
    // The first message also starts the conversation: two triggers for `*`.
    user_says(&app, &user, "hello").await;
    app.post_message(&user, "appMaker", "hi there").await;
    sink.wait_until("every trigger at the star", |hits| {
        hits.iter().filter(|h| h.path == "/star").count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = |path: &str| -> Vec<String> {
        let mut t: Vec<String> = sink
            .hits()
            .iter()
            .filter(|h| h.path == path)
            .map(|h| h.trigger().to_owned())
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        at("/star"),
        ["conversation:start", "message:appMaker", "message:appUser"]
    );
    assert_eq!(at("/makers"), ["message:appMaker"]);
}

#[tokio::test]
async fn postbacks_reads_starts_and_merges_reach_the_webhooks_subscribed_to_them() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let events = json!([
        "postback",
        "conversation:read",
        "conversation:start",
        "merge:appUser"
    ]);
    webhook(&app, &sink.url("/events"), Some(events)).await;

    // The first message starts steve's conversation; he taps its postback and reads it.
    let steve = id(&app.init_user(Some("steve")).await);
    let (status, posted) = suite()
        .call(
            Method::POST,
            &format!("/v1/appusers/{steve}/conversation/messages"),
            &app.app_jwt(),
            Some(json!({"text": "Pick one", "role": "appMaker", "actions": [
                {"type": "postback", "text": "Yes", "payload": "YES"}
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    let action = posted["message"]["actions"][0].clone();
    let conversation = format!("/v1/appusers/{steve}/conversation");
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("{conversation}/postback"),
            &app.app_token(),
            Some(json!({"actionId": action["_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = suite()
        .call(
            Method::POST,
            &format!("{conversation}/read"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An anonymous user on a tablet logs in as steve: merged into him.
    let tablet = domain::id::new_id();
    let token = app.app_token();
    let init = |user_id: Option<&str>| {
        let mut body = json!({"device": {"id": tablet, "platform": "ios"}});
        if let Some(user_id) = user_id {
            body["userId"] = json!(user_id);
        }
        suite().call(Method::POST, "/v1/init", &token, Some(body))
    };
    let (status, anonymous) = init(None).await;
    assert_eq!(status, StatusCode::OK, "{anonymous}");
    let anonymous = id(&anonymous["appUser"]);
    let (status, merged) = init(Some("steve")).await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(id(&merged["appUser"]), steve);

    let wanted = [
        "conversation:start",
        "postback",
        "conversation:read",
        "merge:appUser",
    ];
    let hits = sink
        .wait_until("every subscribed event", |hits| {
            wanted
                .iter()
                .all(|w| hits.iter().any(|h| h.trigger() == *w))
        })
        .await;
    let of = |trigger: &str| hits.iter().find(|h| h.trigger() == trigger).unwrap();
    assert!(
        hits.iter().all(|h| wanted.contains(&h.trigger())),
        "unsubscribed events arrived: {hits:#?}"
    );

    let start = &of("conversation:start").json;
    assert_eq!(start["appUserId"], steve);
    assert_eq!(start["messages"][0]["_id"], posted["message"]["_id"]);
    let postback = &of("postback").json;
    assert_eq!(postback["appUserId"], steve);
    assert_eq!(postback["postbacks"][0]["action"], action);
    assert_eq!(postback["postbacks"][0]["action"]["payload"], "YES");
    assert_eq!(
        postback["postbacks"][0]["message"]["_id"],
        posted["message"]["_id"]
    );
    let read = &of("conversation:read").json;
    assert_eq!(read["appUserId"], steve);
    assert_eq!(read["read"]["role"], "appUser");
    assert!(read["read"]["lastRead"].as_f64().unwrap() > 0.0);
    let merge = &of("merge:appUser").json;
    assert_eq!(merge["merge"]["survivingAppUserId"], steve);
    assert_eq!(merge["merge"]["discardedAppUserId"], anonymous);
}

#[tokio::test]
async fn a_failing_target_is_retried_then_failed_and_can_be_sent_again() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    sink.answer(500);
    let hook = webhook(&app, &sink.url("/flaky"), None).await;
    let hook_id = id(&hook);
    let user = id(&app.init_user(None).await);
    user_says(&app, &user, "are you there?").await;

    // The testkit's worker retries twice (200 ms, then 400 ms) before giving up.
    let log = wait_for_log(&app, &hook_id, |b| b["deliveries"][0]["status"] == "failed").await;
    let hits = sink.hits();
    assert_eq!(hits.len(), 3, "{hits:#?}");
    assert!(hits
        .iter()
        .all(|h| h.header("webhook-id") == hits[0].header("webhook-id")));
    let delivery = &log["deliveries"][0];
    let delivery_id = id(delivery);
    assert_eq!(delivery_id, hits[0].header("webhook-id"));
    let attempts = delivery["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "failed"]);
    assert!(attempts.iter().all(|a| a["statusCode"] == 500), "{log:#}");
    assert!(attempts.iter().all(|a| a["error"].is_string()), "{log:#}");

    // Fixed: the operator sends it again, and it arrives once with the same webhook-id.
    sink.answer(200);
    let retry = format!("/v1/webhooks/{hook_id}/deliveries/{delivery_id}/retry");
    let (status, body) = suite()
        .call(Method::POST, &retry, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivery"]["_id"], delivery_id.as_str());
    assert_eq!(body["delivery"]["status"], "pending");
    let hits = sink.wait_for(4).await;
    assert_eq!(hits[3].header("webhook-id"), delivery_id);
    assert!(signature_is_valid(
        hook["secret"].as_str().unwrap(),
        &hits[3]
    ));
    let log = wait_for_log(&app, &hook_id, |b| {
        b["deliveries"][0]["status"] == "succeeded"
    })
    .await;
    let last = log["deliveries"][0]["attempts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "succeeded");
    assert_eq!(last["statusCode"], 200);

    // Only failed deliveries can be sent again; unknown ones are not found.
    let (status, body) = suite()
        .call(Method::POST, &retry, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let unknown = format!(
        "/v1/webhooks/{hook_id}/deliveries/{}/retry",
        domain::id::new_id()
    );
    let (status, body) = suite()
        .call(Method::POST, &unknown, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.hits().len(), 4, "re-sent more than once");
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_a_page_at_a_time() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let hook_id = id(&webhook(&app, &sink.url("/pages"), None).await);
    let user = id(&app.init_user(None).await);
    for text in ["one", "two", "three"] {
        user_says(&app, &user, text).await;
        // One at a time, so the log's order is the posting order.
        sink.wait_until(text, |h| {
            h.iter().any(|h| h.json["messages"][0]["text"] == text)
        })
        .await;
    }
    let all = wait_for_log(&app, &hook_id, |b| {
        b["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 3 && d.iter().all(|d| d["status"] == "succeeded"))
    })
    .await;
    assert!(all.get("nextCursor").is_none(), "{all:#}");
    let newest_first: Vec<Value> = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].clone())
        .collect();
    let mut sent: Vec<Value> = sink
        .hits()
        .iter()
        .map(|h| json!(h.header("webhook-id")))
        .collect();
    sent.reverse();
    assert_eq!(newest_first, sent);

    let (status, first) = deliveries(&hook_id, &app.app_jwt(), "?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["deliveries"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (status, second) = deliveries(
        &hook_id,
        &app.app_jwt(),
        &format!("?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(second["deliveries"][0]["_id"], newest_first[2]);
    assert!(second.get("nextCursor").is_none());

    for bad in ["?limit=0", "?limit=101", "?limit=x", "?cursor=nope"] {
        let (status, body) = deliveries(&hook_id, &app.app_jwt(), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

#[tokio::test]
async fn a_deleted_webhook_gets_no_delivery() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let gone = id(&webhook(&app, &sink.url("/gone"), None).await);
    webhook(&app, &sink.url("/kept"), None).await;
    let (status, _) = suite()
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{gone}"),
            &app.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = id(&app.init_user(None).await);
    user_says(&app, &user, "anyone?").await;

    sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = sink.hits().iter().map(|h| h.path.clone()).collect();
    assert_eq!(paths, ["/kept"]);
    let (status, _) = deliveries(&gone, &app.app_jwt(), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A webhook changed or deleted just before a message governs that message, even while
/// the worker holds the app's webhooks in its cache (kept warm by a message just before).
#[tokio::test]
async fn a_webhook_change_governs_the_very_next_message() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    let hook = id(&webhook(&app, &sink.url("/before"), None).await);
    let user = id(&app.init_user(None).await);
    user_says(&app, &user, "warm").await;
    sink.wait_until("the first message", |h| h.len() == 1).await;

    // Update, then post at once.
    let path = format!("/v1/webhooks/{hook}");
    let (status, body) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_jwt(),
            Some(json!({"target": sink.url("/after")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    user_says(&app, &user, "moved").await;
    sink.wait_until("the message at the new target", |h| {
        h.iter().any(|h| h.json["messages"][0]["text"] == "moved")
    })
    .await;
    let moved: Vec<String> = sink
        .hits()
        .iter()
        .filter(|h| h.json["messages"][0]["text"] == "moved")
        .map(|h| h.path.clone())
        .collect();
    assert_eq!(moved, ["/after"]);

    // Unsubscribe from appUser messages, then post at once.
    let (status, _) = suite()
        .call(
            Method::PUT,
            &path,
            &app.app_jwt(),
            Some(json!({"events": ["message:appMaker"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    user_says(&app, &user, "unwanted").await;
    app.post_message(&user, "appMaker", "wanted").await;
    sink.wait_until("the maker's message", |h| {
        h.iter().any(|h| h.json["messages"][0]["text"] == "wanted")
    })
    .await;

    // Delete, then post at once.
    let (status, _) = suite()
        .call(Method::DELETE, &path, &app.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    user_says(&app, &user, "nobody").await;
    let other = webhook(&app, &sink.url("/other"), None).await;
    user_says(&app, &user, "somebody").await;
    sink.wait_until("the message at the new webhook", |h| {
        h.iter().any(|h| h.path == "/other")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts: Vec<String> = sink
        .hits()
        .iter()
        .map(|h| h.json["messages"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["warm", "moved", "wanted", "somebody"],
        "{:#?}",
        sink.hits()
    );
    assert_eq!(id(&other).len(), 24);
}

#[tokio::test]
async fn another_app_cannot_list_or_retry_deliveries() {
    let owner = suite().create_app().await;
    let other = suite().create_app().await;
    let sink = Sink::start().await;
    sink.answer(500);
    let hook_id = id(&webhook(&owner, &sink.url("/mine"), None).await);
    let user = id(&owner.init_user(None).await);
    user_says(&owner, &user, "private").await;
    let log = wait_for_log(&owner, &hook_id, |b| {
        b["deliveries"][0]["status"] == "failed"
    })
    .await;
    let delivery_id = id(&log["deliveries"][0]);
    let retry = format!("/v1/webhooks/{hook_id}/deliveries/{delivery_id}/retry");

    let (status, body) = deliveries(&hook_id, &other.app_jwt(), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains(&delivery_id));
    let (status, body) = suite()
        .call(Method::POST, &retry, &other.app_jwt(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Not with the owner's app token either: deliveries need the app scope.
    let (status, _) = deliveries(&hook_id, &owner.app_token(), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = suite()
        .call(Method::POST, &retry, &owner.user_jwt("x"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The delivery is still failed, and nothing was re-sent.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.hits().len(), 3);
    let (_, log) = deliveries(&hook_id, &owner.app_jwt(), "").await;
    assert_eq!(log["deliveries"][0]["status"], "failed");
}

#[tokio::test]
async fn a_delivery_continues_the_trace_of_the_request_that_caused_it() {
    let app = suite().create_app().await;
    let sink = Sink::start().await;
    webhook(&app, &sink.url("/traced"), None).await;
    let user = id(&app.init_user(None).await);
    // 16 random bytes: a W3C trace id.
    let trace = domain::id::new_secret(16);
    let response = suite()
        .request(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            &app.app_token(),
        )
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"text": "trace me", "role": "appUser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-trace-id"], trace.as_str());

    let hit = sink.wait_for(1).await.remove(0);
    let traceparent = hit.header("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent:?}");
    assert_eq!(parts[1], trace, "{traceparent:?}");
    // The attempt is a span of its own, not the client's.
    assert_ne!(parts[2], "00f067aa0ba902b7");

    // The exported trace holds the whole life of the message: the HTTP request, the
    // conversations call that wrote the outbox row, the worker's fan-out and the delivery
    // attempt, whose span is the parent the sink was told of.
    let wanted = [
        "POST /v1/appusers/{id}/conversation/messages",
        "/smooch.v1.Conversations/PostMessage",
        "fan_out",
        "deliver",
    ];
    let mut spans = Vec::new();
    for _ in 0..PATIENCE {
        spans = e2e::otlp::trace(&trace);
        if wanted.iter().all(|w| spans.iter().any(|s| s.name == *w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name:?} span in trace {trace}: {spans:#?}"))
    };
    for w in wanted {
        span(w);
    }
    // The message and its conversation:start event each have a fan-out, both children
    // of the call that wrote them; the delivery is a child of the message's.
    let post_message = &span("/smooch.v1.Conversations/PostMessage").span_id;
    let fan_outs: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "fan_out")
        .inspect(|s| assert_eq!(&s.parent_span_id, post_message, "{spans:#?}"))
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(
        fan_outs.contains(&span("deliver").parent_span_id.as_str()),
        "{spans:#?}"
    );
    assert_eq!(span("deliver").span_id, parts[2]);
}

/// Waits until the delivery log of `webhook` (up to 100 deliveries) satisfies `done`.
async fn wait_for_full_log(
    app: &TestApp,
    webhook: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..PATIENCE {
        let (status, body) = deliveries(webhook, &app.app_jwt(), "?limit=100").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = body["deliveries"].as_array().cloned().unwrap_or_default();
        if done(&list) {
            return list;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the delivery log never got there: {last:#}");
}

fn attempts_of(delivery: &Value) -> Vec<Value> {
    delivery["attempts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_failing_target_opens_its_circuit_and_a_probe_closes_it_once_it_recovers() {
    const MESSAGES: usize = 6;
    let app = suite().create_app().await;
    let down = Sink::start().await;
    down.answer(500);
    let up = Sink::start().await;
    let down_id = id(&webhook(&app, &down.url("/down"), None).await);
    let up_id = id(&webhook(&app, &up.url("/up"), None).await);
    let user = id(&app.init_user(None).await);
    for i in 0..MESSAGES {
        user_says(&app, &user, &format!("storm {i}")).await;
    }

    // The healthy target of the same app gets every message, once, at the first attempt.
    let hits = up.wait_for(MESSAGES).await;
    let up_log = wait_for_full_log(&app, &up_id, |d| {
        d.len() == MESSAGES && d.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    assert!(
        up_log.iter().all(|d| attempts_of(d).len() == 1),
        "{up_log:#?}"
    );
    let mut texts: Vec<&str> = hits
        .iter()
        .map(|h| h.json["messages"][0]["text"].as_str().unwrap())
        .collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), MESSAGES, "{hits:#?}");

    // The failing target stays down. After five failures in a row the circuit opens: the
    // jobs that come back are held on the broker, using up no attempt, until they have
    // waited out the retry schedule and a cool-down; then each hold counts as an attempt,
    // logged as "circuit open" with no status code, so every job still ends failed (none
    // lost) and only the attempts made (the probes among them) reach the target.
    let down_log = wait_for_full_log(&app, &down_id, |d| {
        d.len() == MESSAGES
            && d.iter()
                .all(|d| d["status"] == "failed" && attempts_of(d).len() == 3)
    })
    .await;
    let attempts: Vec<Value> = down_log.iter().flat_map(attempts_of).collect();
    let made = attempts.iter().filter(|a| a["statusCode"] == 500).count();
    let skipped: Vec<&Value> = attempts
        .iter()
        .filter(|a| {
            a["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("circuit open"))
        })
        .collect();
    assert!(
        !skipped.is_empty(),
        "no attempt short-circuited: {down_log:#?}"
    );
    assert!(skipped.iter().all(|a| a["statusCode"].is_null()));
    assert_eq!(made + skipped.len(), attempts.len(), "{down_log:#?}");
    assert_eq!(down.hits().len(), made, "attempts made = POSTs received");

    // The target recovers. Once the cool-down is over a probe gets through and closes the
    // circuit; the failed deliveries, sent again, all arrive.
    down.answer(200);
    let mut rounds = 0;
    loop {
        let (_, body) = deliveries(&down_id, &app.app_jwt(), "?limit=100").await;
        let failed: Vec<String> = body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "failed")
            .map(id)
            .collect();
        if failed.is_empty() {
            break;
        }
        rounds += 1;
        assert!(
            rounds <= 20,
            "still failing after {rounds} rounds: {body:#}"
        );
        for delivery in &failed {
            let retry = format!("/v1/webhooks/{down_id}/deliveries/{delivery}/retry");
            let (status, body) = suite()
                .call(Method::POST, &retry, &app.app_jwt(), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        wait_for_full_log(&app, &down_id, |d| {
            d.len() == MESSAGES && d.iter().all(|d| d["status"] != "pending")
        })
        .await;
    }

    // The ledger: every delivery succeeded in the end, with the same webhook-id all along;
    // every attempt made reached the target, and no short-circuited one did.
    let down_log = wait_for_full_log(&app, &down_id, |d| {
        d.len() == MESSAGES && d.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    let attempts: Vec<Value> = down_log.iter().flat_map(attempts_of).collect();
    let made = attempts
        .iter()
        .filter(|a| !a["statusCode"].is_null())
        .count();
    let hits = down.hits();
    assert_eq!(hits.len(), made, "{down_log:#?}");
    for delivery in &down_log {
        let last = attempts_of(delivery).last().cloned().unwrap();
        assert_eq!(last["outcome"], "succeeded");
        assert_eq!(last["statusCode"], 200);
        assert!(hits.iter().any(|h| h.header("webhook-id") == id(delivery)));
    }
    let mut ids: Vec<&str> = hits.iter().map(|h| h.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MESSAGES);
    assert_eq!(
        up.hits().len(),
        MESSAGES,
        "the healthy target got no duplicate"
    );
}

#[tokio::test]
async fn a_target_back_soon_after_its_circuit_opened_gets_every_message_and_none_is_dead_lettered()
{
    const MESSAGES: usize = 6;
    let app = suite().create_app().await;
    let flaky = Sink::start().await;
    flaky.answer(500);
    let hook_id = id(&webhook(&app, &flaky.url("/flaky"), None).await);
    let user = id(&app.init_user(None).await);
    for i in 0..MESSAGES {
        user_says(&app, &user, &format!("blip {i}")).await;
    }
    // Five failures in a row open the circuit; the target is back right after, while the
    // circuit is still open: the jobs that come back meanwhile are held, not attempted,
    // and wait for the probe, which succeeds.
    flaky.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    flaky.answer(200);

    let log = wait_for_full_log(&app, &hook_id, |d| {
        d.len() == MESSAGES && d.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    // No hold used up an attempt: every attempt logged was made, and none but the last
    // of each delivery failed.
    let attempts: Vec<Value> = log.iter().flat_map(attempts_of).collect();
    assert!(
        attempts.iter().all(|a| !a["statusCode"].is_null()),
        "a held delivery used up an attempt: {log:#?}"
    );
    for delivery in &log {
        let outcomes: Vec<String> = attempts_of(delivery)
            .iter()
            .map(|a| a["outcome"].as_str().unwrap().to_owned())
            .collect();
        let (last, earlier) = outcomes.split_last().unwrap();
        assert_eq!(last, "succeeded", "{delivery:#}");
        assert!(earlier.iter().all(|o| o == "retrying"), "{delivery:#}");
    }
    // The target saw every attempt, each with its delivery's id.
    let hits = flaky.hits();
    assert_eq!(hits.len(), attempts.len(), "{log:#?}");
    for delivery in &log {
        let tried = hits
            .iter()
            .filter(|h| h.header("webhook-id") == id(delivery))
            .count();
        assert_eq!(tried, attempts_of(delivery).len(), "{delivery:#}");
    }
}
