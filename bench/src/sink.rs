//! The webhook sink: an HTTP server on 127.0.0.1 that the scenarios' webhooks point at.
//! `POST /ok/{step}/{target}` answers 200, `POST /slow/{step}/{target}` answers 200 after
//! [`SLOW_ANSWER`] (a slow customer endpoint), and `POST /fail/{step}/{target}` answers 500
//! (200 once the step's failing targets have recovered); each logs a receipt (which
//! message, which target, when it arrived, what was answered) for the ledger.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How long a slow target takes to answer.
pub const SLOW_ANSWER: Duration = Duration::from_millis(200);

/// One POST the sink received.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// The scenario step the target belongs to.
    pub step: u32,
    /// The target's number within its app.
    pub target: u32,
    /// Whether the target is a healthy one (else a failing one).
    pub healthy: bool,
    /// Whether it answered 200: always for healthy targets; for failing ones, once their
    /// step recovered.
    pub ok: bool,
    /// The message's sequence number (from its text), if the body carried one.
    pub seq: Option<u64>,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Received {
    receipts: Vec<Receipt>,
    /// Steps whose failing targets answer 200 now.
    recovered: HashSet<u32>,
}

/// The running sink.
#[derive(Clone)]
pub struct Sink {
    /// Where it listens: several ports, because the worker limits concurrent POSTs per
    /// target origin, and customers' endpoints are many origins, not one.
    pub addrs: Vec<SocketAddr>,
    received: Arc<Mutex<Received>>,
}

#[derive(Deserialize)]
struct Payload {
    messages: Vec<PayloadMessage>,
}

#[derive(Deserialize)]
struct PayloadMessage {
    text: String,
}

/// The sequence number in a bench message's text: `bench <step> <seq> ...`.
pub fn seq_of(text: &str) -> Option<u64> {
    let mut words = text.split(' ');
    (words.next()? == "bench").then_some(())?;
    words.next()?;
    words.next()?.parse().ok()
}

fn lock(received: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    match received.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn receive(
    healthy: bool,
    State(received): State<Arc<Mutex<Received>>>,
    Path((step, target)): Path<(u32, u32)>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let seq = serde_json::from_slice::<Payload>(&body)
        .ok()
        .and_then(|p| p.messages.first().and_then(|m| seq_of(&m.text)));
    let ok = {
        let mut r = lock(&received);
        let ok = healthy || r.recovered.contains(&step);
        r.receipts.push(Receipt {
            step,
            target,
            healthy,
            ok,
            seq,
            at,
        });
        ok
    };
    if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl Sink {
    /// Starts the sink on `ports` free loopback ports until `shutdown`.
    pub async fn start(ports: usize, shutdown: CancellationToken) -> anyhow::Result<Sink> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route(
                "/ok/{step}/{target}",
                post(|state, path, body| receive(true, state, path, body)),
            )
            .route(
                "/slow/{step}/{target}",
                post(|state, path, body| async move {
                    // The receipt is logged on arrival; the answer comes later.
                    let status = receive(true, state, path, body).await;
                    tokio::time::sleep(SLOW_ANSWER).await;
                    status
                }),
            )
            .route(
                "/fail/{step}/{target}",
                post(|state, path, body| receive(false, state, path, body)),
            )
            .with_state(received.clone());
        let mut addrs = Vec::new();
        for _ in 0..ports.max(1) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    eprintln!("webhook sink stopped: {e}");
                }
            });
        }
        Ok(Sink { addrs, received })
    }

    /// The URL of target `target` of `step` for the app at index `app`.
    pub fn target_url(&self, app: usize, healthy: bool, step: u32, target: u32) -> String {
        let kind = if healthy { "ok" } else { "fail" };
        let addr = self.addrs[app % self.addrs.len()];
        format!("http://{addr}/{kind}/{step}/{target}")
    }

    /// The URL of a healthy target of `step` that answers after [`SLOW_ANSWER`], on the
    /// port of app index `app`.
    pub fn slow_target_url(&self, app: usize, step: u32, target: u32) -> String {
        let addr = self.addrs[app % self.addrs.len()];
        format!("http://{addr}/slow/{step}/{target}")
    }

    /// From now on the failing targets of `step` answer 200: the outage is over.
    pub fn recover(&self, step: u32) {
        lock(&self.received).recovered.insert(step);
    }

    /// Drops the receipts of `step`, so that its targets can take another run of messages
    /// numbered from 0.
    pub fn forget(&self, step: u32) {
        lock(&self.received).receipts.retain(|x| x.step != step);
    }

    /// Every receipt of `step` so far.
    pub fn receipts(&self, step: u32) -> Vec<Receipt> {
        lock(&self.received)
            .receipts
            .iter()
            .filter(|x| x.step == step)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_read_from_bench_texts_only() {
        assert_eq!(seq_of("bench 3 1234 lorem ipsum"), Some(1234));
        assert_eq!(seq_of("bench 3"), None);
        assert_eq!(seq_of("hello 3 1234"), None);
    }
}
