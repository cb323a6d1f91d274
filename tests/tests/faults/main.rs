//! Fault tests: the suite split into one process per role, under a steady load of message
//! posts to apps with webhooks, while each role is killed with SIGKILL and restarted, and
//! RabbitMQ, Redis, Postgres and the webhook target are broken and restored in turn. A
//! ledger then proves that every accepted message was stored exactly once and reached every
//! matching webhook, that failed requests failed fast and cleanly, and that every role
//! recovered on its own.
//!
//! This binary restarts the machine's RabbitMQ, Redis and Postgres: run it on its own, never
//! at the same time as the `e2e` binary (`cargo test -p e2e --test faults`). Its tests run
//! one at a time. `SMOOCH_FAULTS_SCALE` (default 1) multiplies the load and the rounds of
//! faults; `SMOOCH_FAULTS_REPORT` names a file for the JSON report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod all_in_one;
mod cluster;
mod deps;
mod ledger;
mod load;
mod sink;
mod soak;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use cluster::Cluster;
use deps::DependencyGuard;
use sink::Mode;

/// One test at a time: they share the machine's dependencies.
pub(crate) static SERIAL: Mutex<()> = Mutex::const_new(());

/// `SMOOCH_FAULTS_SCALE`: 1 for CI, more for a longer, heavier run.
fn scale() -> u32 {
    std::env::var("SMOOCH_FAULTS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s >= 1)
        .unwrap_or(1)
}

/// A fault and how it is injected and lifted.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL a role, start it again.
    Kill(&'static str),
    /// Stop the RabbitMQ application, start it again.
    RabbitMq,
    /// Stop Redis (losing its contents), start it again.
    Redis,
    /// Stop Postgres (fast: connections cut), start it again.
    Postgres,
    /// The webhook target answers slowly, then past the worker's timeout, then with 500s.
    WebhookTarget,
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Kill(role) => format!("kill -9 {role}"),
            Fault::RabbitMq => "restart RabbitMQ".to_owned(),
            Fault::Redis => "restart Redis".to_owned(),
            Fault::Postgres => "restart Postgres".to_owned(),
            Fault::WebhookTarget => "slow, hanging, then failing webhook target".to_owned(),
        }
    }
}

const FAULTS: [Fault; 10] = [
    Fault::Kill("gateway"),
    Fault::Kill("users"),
    Fault::Kill("conversations"),
    Fault::Kill("media"),
    Fault::Kill("webhooks"),
    Fault::Kill("webhook-worker"),
    Fault::RabbitMq,
    Fault::Redis,
    Fault::Postgres,
    Fault::WebhookTarget,
];

/// How long a dependency stays down.
const OUTAGE: Duration = Duration::from_secs(2);

async fn blocking(f: fn()) {
    tokio::task::spawn_blocking(f).await.unwrap();
}

/// Injects `fault` and lifts it again.
async fn inject(fault: Fault, cluster: &mut Cluster, sink: &sink::Sink) {
    match fault {
        Fault::Kill(role) => {
            cluster
                .kill_and_restart(role, Duration::from_millis(300))
                .await
        }
        Fault::RabbitMq => {
            blocking(deps::rabbitmq_stop).await;
            tokio::time::sleep(OUTAGE).await;
            blocking(deps::rabbitmq_start).await;
        }
        Fault::Redis => {
            blocking(deps::redis_stop).await;
            tokio::time::sleep(OUTAGE).await;
            blocking(deps::redis_start).await;
        }
        Fault::Postgres => {
            blocking(deps::postgres_stop).await;
            tokio::time::sleep(OUTAGE).await;
            blocking(deps::postgres_start).await;
        }
        Fault::WebhookTarget => {
            // Slow but within the worker's 1 s timeout, then past it, then refusing: each
            // shorter than the retry schedule, so the retries get through afterwards.
            for (mode, lasting) in [
                (Mode::Slow(400), Duration::from_secs(2)),
                (Mode::Slow(1500), Duration::from_secs(2)),
                (Mode::Broken, Duration::from_secs(2)),
            ] {
                sink.set_mode(mode);
                tokio::time::sleep(lasting).await;
            }
            sink.set_mode(Mode::Healthy);
        }
    }
}

/// Posts a message through the gateway until it is accepted; how long that took.
async fn probe(base: &str, tenant: &load::Tenant, limit: Duration) -> Result<Duration, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let key = format!("probe-{}", domain::id::new_id());
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let sent = http
            .post(format!(
                "{base}/v1/appusers/{}/conversation/messages",
                tenant.users[0]
            ))
            .header("app-token", &tenant.app.token)
            .header("idempotency-key", &key)
            .json(&json!({"text": "probe", "role": "appUser", "metadata": {"k": key}}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => return Ok(start.elapsed()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no message accepted within {limit:?}; last: {last}"
    ))
}

/// The URL of the test Postgres's database `name`. The tests that run the suite as
/// processes each use one of their own, because a relay sweeps the whole outbox of its
/// database.
pub(crate) fn database_url(name: &str) -> String {
    let url = e2e::test_settings().database_url;
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Starts `smooch all` (`suite_process`) on `port` with the test credentials, its own
/// AMQP and Redis `prefix`, the database at `database_url` and `extra` settings; its
/// output is appended to `log`.
pub(crate) fn spawn_all(
    port: u16,
    prefix: &str,
    database_url: &str,
    log: &std::path::Path,
    extra: &[(&str, &str)],
) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_suite_process"))
        .env("SMOOCH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SMOOCH_DATABASE_URL", database_url)
        .env("SMOOCH_AMQP_PREFIX", prefix)
        .env("SMOOCH_REDIS_PREFIX", prefix)
        .env("SMOOCH_ACCOUNT_KEY_ID", e2e::ACCOUNT_KEY_ID)
        .env("SMOOCH_ACCOUNT_SECRET", e2e::ACCOUNT_SECRET)
        .env("SMOOCH_SECRETS_KEY", e2e::SECRETS_KEY)
        .env("SMOOCH_MEDIA_DIR", &e2e::test_settings().media_dir)
        .env("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits (up to 60 s) until the suite at `base` answers `/healthz`.
pub(crate) async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    let up = Instant::now();
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "the suite did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the report where `SMOOCH_FAULTS_REPORT` (or `var`) says, and prints it.
pub(crate) fn publish(var: &str, report: &Value, summary: &str) {
    let text = serde_json::to_string_pretty(report).unwrap();
    if let Ok(path) = std::env::var(var) {
        std::fs::write(&path, &text).unwrap();
    }
    println!("{text}\n{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_message_is_lost_or_duplicated_through_kills_and_outages() {
    let _serial = SERIAL.lock().await;
    let _deps = DependencyGuard;
    let started = Instant::now();
    let scale = scale();
    let prefix = e2e::unique("faults");
    let mut cluster = Cluster::start(&prefix).await;
    let (sink_base, sink) = sink::start().await;
    let mut tenants = Vec::new();
    for index in 0..2 {
        tenants.push(load::tenant(&cluster.base, &sink_base, index, 4 * scale as usize).await);
    }
    // Eight clients per scale, each a message every ~50 ms plus its latency.
    let load = load::Load::start(&cluster.base, &tenants, Duration::from_millis(50));

    let mut faults: Vec<Value> = Vec::new();
    // When each fault began, and its index in `faults`.
    let mut windows: Vec<(Instant, usize)> = Vec::new();
    let mut problems = Vec::new();
    for round in 0..scale {
        for fault in FAULTS {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let injected = Instant::now();
            windows.push((injected, faults.len()));
            inject(fault, &mut cluster, &sink).await;
            let lifted = injected.elapsed();
            let ready = cluster.wait_all_ready(Duration::from_secs(45)).await;
            let accepted = probe(&cluster.base, &tenants[0], Duration::from_secs(30)).await;
            let exited = cluster.exited();
            if let Err(e) = &ready {
                problems.push(format!("after {}: {e}", fault.name()));
            }
            if let Err(e) = &accepted {
                problems.push(format!("after {}: {e}", fault.name()));
            }
            if !exited.is_empty() {
                problems.push(format!(
                    "after {}: roles exited on their own: {exited:?}",
                    fault.name()
                ));
            }
            faults.push(json!({
                "round": round,
                "fault": fault.name(),
                "injected_for_ms": lifted.as_millis() as u64,
                "ready_after_ms": ready.as_ref().ok().map(|d| d.as_millis() as u64),
                "accepting_after_ms": accepted.as_ref().ok().map(|d| d.as_millis() as u64),
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut records = load.stop().await;

    // Accepted messages, sent again with their key after all that: each a replay.
    let sample: Vec<load::Record> = records
        .iter()
        .filter(|r| r.message_id.is_some() && !r.image)
        .step_by(7)
        .take(40)
        .cloned()
        .collect();
    let replays_wrong = load::resend(&cluster.base, &tenants, &sample).await;
    problems.extend(replays_wrong.iter().take(10).cloned());

    // Every delivery arrives within the retry schedule once everything is back.
    let wait_start = Instant::now();
    let stored = ledger::stored_once_delivered(
        &cluster::database_url(),
        &tenants,
        &sink,
        Duration::from_secs(60),
    )
    .await;
    let delivered_after = wait_start.elapsed();
    records.sort_by(|a, b| a.key.cmp(&b.key));
    // Which fault each failed attempt fell under (the last one injected before it).
    for record in &records {
        for (failure, at) in record.failures.iter().zip(&record.failed_at) {
            let Some((_, index)) = windows.iter().rev().find(|(start, _)| start <= at) else {
                continue;
            };
            let kind = match failure {
                load::Failure::Status(status, _) => status.to_string(),
                load::Failure::Connection => "connection error".to_owned(),
                load::Failure::Timeout => "timeout".to_owned(),
            };
            let counts = &mut faults[*index]["failed_attempts"];
            if counts.is_null() {
                *counts = json!({});
            }
            counts[&kind] = json!(counts[&kind].as_u64().unwrap_or(0) + 1);
        }
    }
    let verdict = ledger::check(&tenants, &records, &stored, &sink.deliveries());
    problems.extend(verdict.violations.iter().cloned());
    problems.extend(
        cluster
            .exited()
            .into_iter()
            .map(|e| format!("role exited on its own: {e}")),
    );

    let figures = &verdict.figures;
    let figure = |name: &str| figures.get(name).copied().unwrap_or(0);
    let report = json!({
        "scale": scale,
        "seconds": started.elapsed().as_secs(),
        "faults": faults,
        "ledger": verdict.to_json(),
        "replays_checked": sample.len(),
        "last_delivery_after_load_ms": delivered_after.as_millis() as u64,
        "kills": cluster.kills,
        "logs": cluster.log_dir.display().to_string(),
        "problems": problems,
    });
    let summary = format!(
        "faults: {} injected in {} s; {} requests for {} messages ({} accepted, {} after a retry, {} answered from the idempotency store); messages lost: {}; duplicate messages: {}; deliveries: {} ({} duplicates, same webhook-id); deliveries missing: {}; problems: {}",
        faults.len(),
        started.elapsed().as_secs(),
        figure("requests"),
        figure("messages"),
        figure("accepted"),
        figure("accepted after a retry"),
        figure("retries answered with the stored response"),
        figure("messages lost"),
        figure("duplicate messages"),
        figure("deliveries"),
        figure("duplicate deliveries"),
        figure("deliveries missing"),
        problems.len(),
    );
    publish("SMOOCH_FAULTS_REPORT", &report, &summary);
    assert!(figure("accepted") > 0, "no message was accepted");
    assert!(problems.is_empty(), "{summary}\n{problems:#?}");
}
