//! The push sink: a fake FCM legacy endpoint (`POST /fcm/send`, HTTP/1.1 on 127.0.0.1) that
//! the suite's push worker sends to (`SMOOCH_PUSH_FCM_URL`), answering success and logging a
//! receipt (which device token, which message, when) for the push scenario's ledger.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::sink::seq_of;

/// One notification the sink received.
#[derive(Debug, Clone)]
pub struct PushReceipt {
    /// The device token it was sent to.
    pub token: String,
    /// The message's sequence number (from the notification's body), if it carried one.
    pub seq: Option<u64>,
    /// When it arrived.
    pub at: Instant,
}

/// The running sink.
#[derive(Clone)]
pub struct PushSink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<PushReceipt>>>,
}

#[derive(Deserialize)]
struct Send {
    to: String,
    notification: Notification,
}

#[derive(Deserialize)]
struct Notification {
    body: String,
}

async fn receive(State(received): State<Arc<Mutex<Vec<PushReceipt>>>>, body: Bytes) -> Json<Value> {
    let at = Instant::now();
    if let Ok(send) = serde_json::from_slice::<Send>(&body) {
        let receipt = PushReceipt {
            seq: seq_of(&send.notification.body),
            token: send.to,
            at,
        };
        match received.lock() {
            Ok(mut r) => r.push(receipt),
            Err(poisoned) => poisoned.into_inner().push(receipt),
        }
    }
    Json(json!({"success": 1, "failure": 0, "results": [{"message_id": "bench"}]}))
}

impl PushSink {
    /// Starts the sink on a free loopback port until `shutdown`.
    pub async fn start(shutdown: CancellationToken) -> anyhow::Result<PushSink> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/fcm/send", post(receive))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                eprintln!("push sink stopped: {e}");
            }
        });
        Ok(PushSink { addr, received })
    }

    /// The base URL the suite's push worker is given.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every receipt for tokens starting with `prefix`.
    pub fn receipts(&self, prefix: &str) -> Vec<PushReceipt> {
        let r = match self.received.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        r.iter()
            .filter(|x| x.token.starts_with(prefix))
            .cloned()
            .collect()
    }
}
