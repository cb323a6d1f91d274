//! A webhook receiver whose behaviour the test switches (healthy, slow, hanging past the
//! worker's timeout, failing with 500), recording every delivery it accepted: per webhook
//! and message, the `webhook-id` of each delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde_json::Value;

/// How the target answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 200 at once.
    Healthy,
    /// 200 after this many milliseconds.
    Slow(u64),
    /// 500 at once.
    Broken,
}

impl Mode {
    fn encode(self) -> u64 {
        match self {
            Mode::Healthy => 0,
            Mode::Broken => 1,
            Mode::Slow(ms) => 2 + ms,
        }
    }

    fn decode(raw: u64) -> Mode {
        match raw {
            0 => Mode::Healthy,
            1 => Mode::Broken,
            ms => Mode::Slow(ms - 2),
        }
    }
}

/// Deliveries received: `(webhook name, message id)` → the `webhook-id` of each delivery.
pub(crate) type Deliveries = HashMap<(String, String), Vec<String>>;

/// The receiver's state.
#[derive(Default)]
pub(crate) struct Sink {
    mode: AtomicU64,
    deliveries: Mutex<Deliveries>,
    /// Requests answered 500 while broken.
    pub(crate) refused: AtomicU64,
}

impl Sink {
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode.encode(), Ordering::SeqCst);
    }

    pub(crate) fn deliveries(&self) -> Deliveries {
        self.deliveries.lock().unwrap().clone()
    }
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    match Mode::decode(sink.mode.load(Ordering::SeqCst)) {
        Mode::Healthy => {}
        Mode::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Mode::Broken => {
            sink.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut deliveries = sink.deliveries.lock().unwrap();
    for message in body["messages"].as_array().into_iter().flatten() {
        if let Some(id) = message["_id"].as_str() {
            deliveries
                .entry((hook.clone(), id.to_owned()))
                .or_default()
                .push(webhook_id.clone());
        }
    }
    StatusCode::OK
}

/// Starts the receiver; webhooks target `{base}/{name}`.
pub(crate) async fn start() -> (String, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook/{name}", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, sink)
}
