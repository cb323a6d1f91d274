//! `realtime`: Bayeux long-polling clients held on `/faye`, each subscribed to one
//! conversation; app-maker messages posted through the REST API at a ladder of fixed rates
//! are fanned out to every subscriber of their conversation. Rows: connections held,
//! deliveries per second, and p99 publish-to-receive (from the POST's scheduled start to the
//! message arriving at a client), beside Centrifugo's published reference per core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use hdrhistogram::Histogram;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::load::{self, Latency, Outcome};
use crate::report::Report;

/// Centrifugo's reference, as issue 16 states it: 1M connections and ~500k messages/s on
/// 40 cores.
const CENTRIFUGO_CONNECTIONS_PER_CORE: f64 = 1_000_000.0 / 40.0;
const CENTRIFUGO_MSGS_PER_S_PER_CORE: f64 = 500_000.0 / 40.0;

/// What the subscribers share: when each message was scheduled, and what arrived.
struct Shared {
    /// Message text → its scheduled send time.
    sent: Mutex<HashMap<String, Instant>>,
    histogram: Mutex<Histogram<u64>>,
    received: AtomicU64,
    recording: std::sync::atomic::AtomicBool,
}

async fn bayeux(http: &reqwest::Client, url: &str, messages: Value) -> anyhow::Result<Vec<Value>> {
    let answer = http
        .post(url)
        .json(&messages)
        .send()
        .await?
        .error_for_status()?
        .json::<Vec<Value>>()
        .await?;
    Ok(answer)
}

/// Handshakes and subscribes one client; returns its `clientId`.
async fn subscribe(
    http: &reqwest::Client,
    url: &str,
    channel: &str,
    ext: Value,
) -> anyhow::Result<String> {
    let hello = bayeux(http, url, json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}])).await?;
    let client = hello
        .first()
        .and_then(|h| h["clientId"].as_str())
        .ok_or_else(|| anyhow!("no clientId in {hello:?}"))?
        .to_owned();
    let sub = bayeux(http, url, json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": channel, "ext": ext}])).await?;
    if sub.first().map(|s| s["successful"] == true) != Some(true) {
        return Err(anyhow!("subscribe refused: {sub:?}"));
    }
    Ok(client)
}

/// Polls until `stop`, recording each message's latency.
async fn poll(
    http: reqwest::Client,
    url: String,
    client: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let connect =
        json!([{"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"}]);
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            a = bayeux(&http, &url, connect.clone()) => a,
        };
        let Ok(messages) = answer else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let now = Instant::now();
        for m in messages.iter().filter(|m| m.get("data").is_some()) {
            let Some(text) = m["data"]["text"].as_str() else {
                continue;
            };
            let sent = shared.sent.lock().ok().and_then(|s| s.get(text).copied());
            if let (Some(sent), true) = (sent, shared.recording.load(Ordering::Relaxed)) {
                if let Ok(mut h) = shared.histogram.lock() {
                    load::record(&mut h, now.saturating_duration_since(sent));
                }
                shared.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs the scenario.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("realtime");
    let (apps_n, users_n, per_conversation) = if ctx.smoke() { (1, 4, 2) } else { (4, 50, 5) };
    let apps = ctx.api.create_apps("realtime", apps_n).await?;
    let users = ctx.api.init_users(&apps, users_n).await?;
    let url = format!("{}/faye", ctx.api.base);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .build()
        .context("HTTP client")?;
    // Each user's conversation (created by a first message) and its subscribers.
    let mut posts = Vec::new();
    let mut clients = Vec::new();
    for (a, user_id) in &users {
        let app = &apps[*a];
        let answer = ctx
            .api
            .http
            .post(format!(
                "{}/v1/appusers/{user_id}/conversation/messages",
                ctx.api.base
            ))
            .header("app-token", &app.token)
            .json(&json!({"text": "hello", "role": "appUser"}))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await?;
        let conversation = answer["conversation"]["_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no conversation in {answer}"))?
            .to_owned();
        let app_user = answer["message"]["authorId"]
            .as_str()
            .ok_or_else(|| anyhow!("no authorId in {answer}"))?
            .to_owned();
        for _ in 0..per_conversation {
            let client = subscribe(
                &http,
                &url,
                &format!("/v1/conversations/{conversation}"),
                json!({"appUserId": app_user, "appToken": app.token}),
            )
            .await?;
            clients.push(client);
        }
        // Posts go round-robin over the gateways; the subscribers hold their connections
        // to the first (a split suite's gateways share the real-time bus).
        posts.push((
            format!(
                "{}/v1/appusers/{user_id}/conversation/messages",
                ctx.api.base_for(posts.len())
            ),
            HeaderValue::from_str(&format!("Bearer {}", app.jwt))?,
        ));
    }
    let connections = clients.len();
    let shared = Arc::new(Shared {
        sent: Mutex::new(HashMap::new()),
        histogram: Mutex::new(load::histogram()),
        received: AtomicU64::new(0),
        recording: std::sync::atomic::AtomicBool::new(false),
    });
    let stop = CancellationToken::new();
    for client in clients {
        tokio::spawn(poll(
            http.clone(),
            url.clone(),
            client,
            shared.clone(),
            stop.clone(),
        ));
    }
    let posts = Arc::new(posts);
    let cores = ctx.machine.cores.max(1) as f64;
    let rates = ctx.settings.rates.clone().unwrap_or_else(|| {
        if ctx.smoke() {
            vec![10.0]
        } else {
            vec![100.0, 200.0, 400.0]
        }
    });
    let mut best = (0.0f64, 0.0f64);
    for rate in rates {
        let step = ctx.step(rate);
        let cpu = ctx.cpu();
        if let Ok(mut h) = shared.histogram.lock() {
            h.reset();
        }
        shared.received.store(0, Ordering::Relaxed);
        shared.recording.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let (http2, posts2, shared2) = (ctx.api.http.clone(), posts.clone(), shared.clone());
        let run = load::run(step, move |i, scheduled| {
            let (http, posts, shared) = (http2.clone(), posts2.clone(), shared2.clone());
            async move {
                let (url, auth) = &posts[(i as usize) % posts.len()];
                let text = format!("rt-{rate}-{i}");
                if let Ok(mut sent) = shared.sent.lock() {
                    sent.insert(text.clone(), scheduled);
                }
                let sent = http
                    .post(url)
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(json!({"text": text, "role": "appMaker"}).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => Outcome::Ok,
                    _ => Outcome::Failed,
                }
            }
        })
        .await;
        // Let the last messages arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        shared.recording.store(false, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let received = shared.received.load(Ordering::Relaxed);
        let expected = (run.ok) * per_conversation as u64;
        let latency = shared
            .histogram
            .lock()
            .map(|h| Latency::of(&h))
            .map_err(|_| anyhow!("histogram lock poisoned"))?;
        let per_s = received as f64 / step.duration.as_secs_f64();
        let mut row = ctx.step_row(
            format!("fan-out to {connections} long-poll clients @ {rate:.0} posts/s"),
            &step,
            &run,
            &cpu,
        );
        row.latency = latency.clone();
        row.achieved_per_s = per_s;
        row.extra
            .insert("connections held".to_owned(), json!(connections));
        row.extra.insert("deliveries".to_owned(), json!(received));
        row.extra
            .insert("deliveries expected".to_owned(), json!(expected));
        row.extra.insert(
            "connections per core".to_owned(),
            json!((connections as f64 / cores).round()),
        );
        row.extra.insert(
            "deliveries/s per core".to_owned(),
            json!((per_s / cores).round()),
        );
        row.extra.insert(
            "Centrifugo connections per core".to_owned(),
            json!(CENTRIFUGO_CONNECTIONS_PER_CORE),
        );
        row.extra.insert(
            "Centrifugo msg/s per core".to_owned(),
            json!(CENTRIFUGO_MSGS_PER_S_PER_CORE),
        );
        eprintln!(
            "  {rate:.0} posts/s over {seconds:.1} s: {per_s:.0} deliveries/s to {connections} clients, publish-to-receive p50 {:.2} ms p99 {:.2} ms; {received} of {expected} delivered",
            latency.p50, latency.p99
        );
        if received > expected {
            report.failures.push(format!(
                "{received} deliveries for {expected} expected at {rate}/s: duplicates"
            ));
        }
        if latency.p99 > 0.0 && per_s > best.0 {
            best = (per_s, latency.p99);
        }
        report.rows.push(row);
    }
    stop.cancel();
    report
        .headline
        .insert("connections held".to_owned(), json!(connections));
    report
        .headline
        .insert("deliveries/s (best step)".to_owned(), json!(best.0.round()));
    report.headline.insert(
        "p99 publish-to-receive at that step (ms)".to_owned(),
        json!(best.1),
    );
    report.headline.insert(
        "per core: ours (connections, deliveries/s) vs Centrifugo (25,000, 12,500)".to_owned(),
        json!(format!(
            "{:.0}, {:.0}",
            connections as f64 / cores,
            best.0 / cores
        )),
    );
    report.notes.push(format!(
        "{apps_n} apps × {users_n} users, {per_conversation} long-polling Bayeux clients per conversation in the bench process; appMaker messages posted through REST (app JWT), open loop; latency from each POST's scheduled start to the message's arrival at a client, through the outbox, RabbitMQ, the gateway's fan-out queue and the long poll. Centrifugo's reference (1M WebSocket connections, ~500k msg/s on 40 cores) is over WebSockets on a dedicated machine; ours shares 2 cores with the suite's stores and the load generator."
    ));
    if report
        .rows
        .iter()
        .all(|r| r.extra.get("deliveries") == Some(&json!(0)))
    {
        report
            .failures
            .push("no message reached a subscriber".to_owned());
    }
    Ok(report)
}
