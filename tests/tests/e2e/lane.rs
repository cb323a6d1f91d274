//! Posts through a gateway that reaches the conversations role over the network (split
//! roles): they go on a post lane, one long-lived stream to the replica, and answer exactly
//! as the suite's in-process gateway answers them: the same messages, errors, idempotent
//! replays, trace, and tenants apart. A replica that stops while posts flow loses none of
//! those it answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e::{start_gateway, suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::delivery::{webhook, Sink};
use crate::operations::{metrics, sample};

/// The lane tests run one at a time: each reads what the lanes of this process carried
/// (`post_lane_posts_total`) as its own gateway's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A gateway in front of the suite's services that calls them over the network, as a
/// gateway of its own process does; with `conversations_addr`, that replica instead.
async fn network_gateway(conversations_addr: Option<String>) -> (String, CancellationToken) {
    let mut config = suite().gateway_config();
    config.in_process = None;
    if let Some(addr) = conversations_addr {
        config.conversations_addr = addr;
    }
    start_gateway(config).await
}

/// Posts the lanes of this process carried, by outcome.
async fn lane_posts(outcome: &str) -> f64 {
    sample(
        &metrics().await,
        "post_lane_posts_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
}

/// A new app user of `app`: its `_id`.
async fn new_user(app: &TestApp) -> String {
    app.init_user(None).await["_id"]
        .as_str()
        .expect("an app user id")
        .to_owned()
}

fn messages_path(user: &str) -> String {
    format!("/v1/appusers/{user}/conversation/messages")
}

/// Posts `text` as `user` with `app`'s token through the gateway at `base`.
async fn post_text(base: &str, app: &TestApp, user: &str, text: &str) -> (StatusCode, Value) {
    suite()
        .call_at(
            base,
            Method::POST,
            &messages_path(user),
            &app.app_token(),
            Some(json!({"text": text, "role": "appUser"})),
        )
        .await
}

/// Posts through the gateway at `base`, for an app user of its own, until a post goes on a
/// lane (lanes open in the background, and posts go as unary calls meanwhile).
async fn wait_for_lane(base: &str, app: &TestApp) {
    let user = new_user(app).await;
    for _ in 0..400 {
        let before = lane_posts("answered").await;
        let (status, body) = post_text(base, app, &user, "warm-up").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if lane_posts("answered").await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no post went on a lane");
}

fn texts(conversation: &Value) -> Vec<String> {
    conversation["conversation"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn conversation(app: &TestApp, user: &str) -> Value {
    let (status, body) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            &app.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn posts_on_a_lane_answer_as_in_process_posts_do() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (base, stop) = network_gateway(None).await;
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    wait_for_lane(&base, &app).await;

    // Posts at once share the lane; each gets its own answer.
    let before = lane_posts("answered").await;
    let posts = (0..20).map(|i| {
        let (base, app, user) = (base.clone(), &app, user.clone());
        async move {
            let (status, body) = post_text(&base, app, &user, &format!("lane {i}")).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["message"]["text"], format!("lane {i}"));
            assert_eq!(body["message"]["authorId"], user.as_str());
            assert!(body["conversation"]["_id"].is_string(), "{body}");
        }
    });
    futures::future::join_all(posts).await;
    assert_eq!(lane_posts("answered").await, before + 20.0);
    let stored = texts(&conversation(&app, &user).await);
    for i in 0..20 {
        assert!(stored.contains(&format!("lane {i}")), "lane {i} missing");
    }

    // The conversations role's errors come back as the in-process gateway answers them.
    let bad = json!({"role": "appUser", "text": "t", "metadata": {"k\u{0}": 1}});
    let (lane_status, lane_body) = suite()
        .call_at(
            &base,
            Method::POST,
            &messages_path(&user),
            &app.app_token(),
            Some(bad.clone()),
        )
        .await;
    let (local_status, local_body) = suite()
        .call(
            Method::POST,
            &messages_path(&user),
            &app.app_token(),
            Some(bad),
        )
        .await;
    assert_eq!(lane_status, StatusCode::BAD_REQUEST, "{lane_body}");
    assert_eq!(lane_body["error"]["code"], "bad_request");
    assert_eq!((lane_status, &lane_body), (local_status, &local_body));

    // A keyed retry answers the first response; the same key with another body conflicts.
    let keyed = |text: &str| {
        suite()
            .request_at(&base, Method::POST, &messages_path(&user), &app.app_token())
            .header("Idempotency-Key", "lane-key-1")
            .json(&json!({"text": text, "role": "appUser"}))
            .send()
    };
    let first = keyed("once").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = keyed("once").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["message"]["_id"], first["message"]["_id"]);
    let other = keyed("another body").await.unwrap();
    assert_eq!(other.status(), StatusCode::CONFLICT);
    let stored = texts(&conversation(&app, &user).await);
    assert_eq!(stored.iter().filter(|t| *t == "once").count(), 1);
    assert!(!stored.contains(&"another body".to_owned()));

    // Another app's credentials and another user's reach nothing of this user.
    let stranger = suite().create_app().await;
    for auth in [stranger.app_token(), app.user_jwt("someone-else")] {
        let body = json!({"text": "intruder", "role": "appUser"});
        let (lane_status, lane_body) = suite()
            .call_at(
                &base,
                Method::POST,
                &messages_path(&user),
                &auth,
                Some(body.clone()),
            )
            .await;
        let (local_status, _) = suite()
            .call(Method::POST, &messages_path(&user), &auth, Some(body))
            .await;
        assert!(lane_status.is_client_error(), "{lane_status} {lane_body}");
        assert_eq!(lane_status, local_status);
    }
    assert!(!texts(&conversation(&app, &user).await).contains(&"intruder".to_owned()));
    stop.cancel();
}

#[tokio::test]
async fn a_gateway_opens_lanes_to_the_replicas_a_name_resolves_to() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // `localhost` resolves to the suite's replica (and perhaps to `::1`, where nothing
    // listens: that lane never opens, and posts take the other).
    let addr = suite()
        .gateway_config()
        .conversations_addr
        .replace("127.0.0.1", "localhost");
    let (base, stop) = network_gateway(Some(addr)).await;
    let app = suite().create_app().await;
    wait_for_lane(&base, &app).await;
    let user = new_user(&app).await;
    let before = lane_posts("answered").await;
    for i in 0..5 {
        let (status, body) = post_text(&base, &app, &user, &format!("by name {i}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(lane_posts("answered").await, before + 5.0);
    stop.cancel();
}

#[tokio::test]
async fn a_post_on_a_lane_continues_the_trace_to_its_delivery() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (base, stop) = network_gateway(None).await;
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    wait_for_lane(&base, &app).await;
    let sink = Sink::start().await;
    webhook(&app, &sink.url("/lane-traced"), None).await;
    let trace = domain::id::new_secret(16);
    let before = lane_posts("answered").await;
    let response = suite()
        .request_at(&base, Method::POST, &messages_path(&user), &app.app_token())
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"text": "trace me", "role": "appUser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(lane_posts("answered").await, before + 1.0);
    let hit = sink.wait_for(1).await.remove(0);
    let traceparent = hit.header("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent:?}");
    assert_eq!(parts[1], trace, "{traceparent:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_replica_that_stops_while_posts_flow_loses_none_it_answered() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // A conversations replica of its own, on the suite's database and users service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let settings = &suite().settings;
    let replica = conversations::Config {
        database_url: settings.database_url.clone(),
        max_connections: 4,
        relay: None,
        message_writers: 1,
        users_addr: Some(suite().gateway_config().users_addr),
    };
    let replica_stop = CancellationToken::new();
    let replica_run = tokio::spawn(conversations::run(replica, listener, replica_stop.clone()));
    let (base, stop) = network_gateway(Some(addr)).await;
    let app = suite().create_app().await;
    let user = new_user(&app).await;
    wait_for_lane(&base, &app).await;

    // Four posters, 20 posts each; the replica stops once ten are answered.
    let answered_so_far = AtomicUsize::new(0);
    let writers = (0..4).map(|w| {
        let (base, app, user) = (base.clone(), &app, user.clone());
        let answered_so_far = &answered_so_far;
        async move {
            let mut stored = Vec::new();
            let mut refused = 0;
            for i in 0..20 {
                let (status, body) = post_text(&base, app, &user, &format!("w{w} {i}")).await;
                match status {
                    StatusCode::CREATED => {
                        answered_so_far.fetch_add(1, Ordering::Relaxed);
                        stored.push(body["message"]["text"].clone());
                    }
                    // Refused with a clear error: the replica is gone.
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(body["error"]["description"].is_string(), "{body}");
                        refused += 1;
                    }
                    other => panic!("{other}: {body}"),
                }
            }
            (stored, refused)
        }
    });
    let stopper = async {
        while answered_so_far.load(Ordering::Relaxed) < 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        replica_stop.cancel();
    };
    let (results, ()) = tokio::join!(futures::future::join_all(writers), stopper);
    replica_run
        .await
        .unwrap()
        .expect("the replica stopped cleanly");
    let answered: Vec<Value> = results.iter().flat_map(|(s, _)| s.clone()).collect();
    let refused: usize = results.iter().map(|(_, r)| r).sum();
    assert!(!answered.is_empty(), "no post was answered before the stop");
    assert!(refused > 0, "the replica never stopped answering");
    let stored = texts(&conversation(&app, &user).await);
    for text in &answered {
        assert!(
            stored.contains(&text.as_str().unwrap().to_owned()),
            "{text} was answered 201 and is not stored"
        );
    }
    stop.cancel();
}
