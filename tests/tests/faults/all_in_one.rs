//! `smooch all` killed with SIGKILL under load and started again. In one process the webhook
//! worker takes app users' message events straight from the outbox relay, and the relay
//! marks a row only once the worker finished it: a kill between the two must leave the row
//! for the next start's sweep, so every accepted message still reaches every matching
//! webhook (duplicates allowed, under one `webhook-id`).

use std::time::Duration;

use crate::{ledger, load, sink, spawn_all, wait_healthy, SERIAL};

fn database_url() -> String {
    crate::database_url("smooch_test_faults_all")
}

/// `smooch all` with retries at 0.3, 0.6, 1.2, ... s, so a row left behind by a kill is
/// delivered well within the wait.
fn spawn(port: u16, prefix: &str, log: &std::path::Path) -> std::process::Child {
    spawn_all(
        port,
        prefix,
        &database_url(),
        log,
        &[("SMOOCH_WEBHOOK_RETRY_BASE_MS", "300")],
    )
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

    let stored =
        ledger::stored_once_delivered(&database_url(), &tenants, &sink, Duration::from_secs(60))
            .await;
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
