//! Graceful shutdown: SIGTERM under load loses no accepted request and no delivery.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Json;
use e2e::TestApp;
use serde_json::{json, Value};

#[derive(Default)]
struct Sink {
    /// Message ids delivered, and the webhook-id of each delivery.
    messages: Mutex<HashSet<String>>,
}

async fn receive(State(sink): State<Arc<Sink>>, _headers: HeaderMap, Json(body): Json<Value>) {
    for message in body["messages"].as_array().into_iter().flatten() {
        if let Some(id) = message["_id"].as_str() {
            sink.messages.lock().unwrap().insert(id.to_owned());
        }
    }
}

async fn start_sink() -> (String, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sink)
}

/// The database of the child suites: their own, so no other suite's relay publishes their
/// outbox rows.
fn child_database_url() -> String {
    let url = e2e::test_settings().database_url;
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/smooch_test_process")
}

/// Starts `smooch all` as a child process with its own database, broker and Redis prefixes.
fn spawn_suite(port: u16, prefix: &str) -> Child {
    let settings = e2e::test_settings();
    Command::new(env!("CARGO_BIN_EXE_suite_process"))
        .env("SMOOCH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SMOOCH_DATABASE_URL", child_database_url())
        .env("SMOOCH_AMQP_PREFIX", prefix)
        .env("SMOOCH_REDIS_PREFIX", prefix)
        .env("SMOOCH_ACCOUNT_KEY_ID", e2e::ACCOUNT_KEY_ID)
        .env("SMOOCH_ACCOUNT_SECRET", e2e::ACCOUNT_SECRET)
        .env("SMOOCH_MEDIA_DIR", &settings.media_dir)
        .env("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        .env("SMOOCH_WEBHOOK_RETRY_BASE_MS", "200")
        .env("SMOOCH_SHUTDOWN_GRACE_MS", "10000")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the child suite did not become healthy");
}

fn signal_term(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("the child suite did not exit within 15 s of SIGTERM");
}

/// Posts messages until `stop`, returning the ids of the accepted ones; any answer other
/// than 201 or a refused connection fails the test.
async fn post_until(
    base: String,
    app: TestApp,
    user: String,
    stop: Arc<tokio::sync::Notify>,
) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    for i in 0.. {
        let send = client
            .post(format!("{base}/v1/appusers/{user}/conversation/messages"))
            .header("app-token", &app.token)
            .json(&json!({"text": format!("m{i}"), "role": "appUser"}))
            .timeout(Duration::from_secs(15))
            .send();
        let result = tokio::select! {
            r = send => r,
            () = &mut stopped => break,
        };
        match result {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert!(
                    status == reqwest::StatusCode::CREATED
                        || status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
                    "answer during shutdown: {status} {body}"
                );
                if status == reqwest::StatusCode::CREATED {
                    accepted.push(body["message"]["_id"].as_str().unwrap().to_owned());
                }
            }
            // Refused or reset once the listener closed: the client knows it was not accepted.
            Err(e) => {
                assert!(!e.is_timeout(), "a request hung: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    accepted
}

#[tokio::test]
async fn sigterm_under_load_loses_no_request_and_no_delivery() {
    let prefix = e2e::unique("shutdown");
    let port = e2e::reserve_ports(1)[0];
    let base = format!("http://127.0.0.1:{port}");
    let child = spawn_suite(port, &prefix);
    wait_healthy(&base).await;

    let child_suite = e2e::Suite::at(&base);
    let app = child_suite.create_app().await;
    let (target, sink) = start_sink().await;
    let (status, _) = child_suite
        .call(
            reqwest::Method::POST,
            "/v1/webhooks",
            &app.app_jwt(),
            Some(json!({"target": target})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let mut users = Vec::new();
    for i in 0..4 {
        let (status, body) = child_suite
            .call(
                reqwest::Method::POST,
                "/v1/init",
                &app.app_token(),
                Some(json!({"device": {"id": format!("d{i}"), "platform": "ios"}})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK);
        users.push(body["appUser"]["_id"].as_str().unwrap().to_owned());
    }

    let stop = Arc::new(tokio::sync::Notify::new());
    let loads: Vec<_> = users
        .into_iter()
        .map(|user| tokio::spawn(post_until(base.clone(), app.clone(), user, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    signal_term(&child);
    let status = wait_exit(child).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    stop.notify_waiters();
    let mut accepted = Vec::new();
    for load in loads {
        accepted.extend(load.await.unwrap());
    }
    assert!(
        !accepted.is_empty(),
        "no request was accepted before the signal"
    );

    // A new process with the same broker prefix delivers whatever the first left in flight.
    let port = e2e::reserve_ports(1)[0];
    let base = format!("http://127.0.0.1:{port}");
    let child = spawn_suite(port, &prefix);
    wait_healthy(&base).await;
    let mut missing: Vec<String> = Vec::new();
    for _ in 0..400 {
        let delivered = sink.messages.lock().unwrap().clone();
        missing = accepted
            .iter()
            .filter(|id| !delivered.contains(*id))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_term(&child);
    let status = wait_exit(child).await;
    assert!(status.success());
    // Delivered means stored: the relay publishes only committed outbox rows.
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages never delivered",
        missing.len(),
        accepted.len()
    );
}
