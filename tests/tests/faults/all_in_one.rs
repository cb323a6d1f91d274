//! `smooch all` killed with SIGKILL under load and started again. In one process the webhook
//! worker takes app users' message events straight from the outbox relay, and the relay
//! marks a row only once the worker finished it: a kill between the two must leave the row
//! for the next start's sweep, so every accepted message still reaches every matching
//! webhook (duplicates allowed, under one `webhook-id`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ledger, load, sink, wait_healthy, SERIAL};

/// The database of this test's suite: its own, because a relay sweeps the whole outbox of
/// its database.
fn database_url() -> String {
    let url = e2e::test_settings().database_url;
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/smooch_test_faults_all")
}

fn spawn(port: u16, prefix: &str, log: &std::path::Path) -> Child {
    let settings = e2e::test_settings();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_suite_process"))
        .env("SMOOCH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SMOOCH_DATABASE_URL", database_url())
        .env("SMOOCH_AMQP_PREFIX", prefix)
        .env("SMOOCH_REDIS_PREFIX", prefix)
        .env("SMOOCH_ACCOUNT_KEY_ID", e2e::ACCOUNT_KEY_ID)
        .env("SMOOCH_ACCOUNT_SECRET", e2e::ACCOUNT_SECRET)
        .env("SMOOCH_SECRETS_KEY", e2e::SECRETS_KEY)
        .env("SMOOCH_MEDIA_DIR", &settings.media_dir)
        .env("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        .env("SMOOCH_WEBHOOK_RETRY_BASE_MS", "300")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_all_in_one_process_loses_no_delivery() {
    let _serial = SERIAL.lock().await;
    let mut settings = e2e::test_settings();
    settings.database_url = database_url();
    smooch::migrate(&settings).await.unwrap();
    smooch::ensure_account_key(&settings).await.unwrap();
    let prefix = e2e::unique("faults-all");
    let port = e2e::reserve_ports(1)[0];
    let base = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let mut child = spawn(port, &prefix, &log);
    wait_healthy(&base).await;
    let (sink_base, sink) = sink::start().await;
    let mut tenants = Vec::new();
    for index in 0..2 {
        tenants.push(load::tenant(&base, &sink_base, index, 4).await);
    }
    let load = load::Load::start(&base, &tenants, Duration::from_millis(20));

    // Killed twice while messages flow, so that some are between the worker's fan-out
    // and the relay's mark.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        child = spawn(port, &prefix, &log);
        wait_healthy(&base).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = load.stop().await;

    let apps: Vec<String> = tenants.iter().map(|t| t.app.id.clone()).collect();
    let wait_start = Instant::now();
    let mut stored = ledger::stored(&database_url(), &apps).await;
    while !ledger::undelivered(&tenants, &stored, &sink.deliveries()).is_empty()
        && wait_start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stored = ledger::stored(&database_url(), &apps).await;
    }
    let verdict = ledger::check(&tenants, &records, &stored, &sink.deliveries());
    let _ = child.kill();
    let _ = child.wait();
    let figure = |name: &str| verdict.figures.get(name).copied().unwrap_or(0);
    println!(
        "all-in-one kills: {} messages accepted, {} deliveries ({} duplicates), {} missing; log {}",
        figure("accepted"),
        figure("deliveries"),
        figure("duplicate deliveries"),
        figure("deliveries missing"),
        log.display()
    );
    assert!(figure("accepted") > 0, "no message was accepted");
    assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
}
