//! Soak: `smooch all` as one process under a moderate, steady load of message posts to apps
//! with webhooks for a bounded time (`SMOOCH_SOAK_SECS`, default 60), sampling the process's
//! resident memory and sockets, its Postgres sessions and the broker's connections. The
//! figures are reported (JSON to `SMOOCH_SOAK_REPORT`, and a line), not asserted against a
//! clock. Ignored by default: `scripts/soak.sh` runs it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{load, sink, spawn_all, wait_healthy, SERIAL};

fn database_url() -> String {
    crate::database_url("smooch_test_soak")
}

/// Resident memory of `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of `pid`, and how many of them are sockets.
fn fds(pid: u32) -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let mut all = 0;
    let mut sockets = 0;
    for entry in dir.flatten() {
        all += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    (all, sockets)
}

/// Sessions on the soak database.
async fn pg_sessions(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'smooch_test_soak' AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

/// The broker's client connections (the whole broker: other suites' too).
async fn amqp_connections() -> i64 {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "--no-table-headers", "name"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as i64,
        _ => -1,
    }
}

fn secs() -> u64 {
    std::env::var("SMOOCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak run of a minute or more: scripts/soak.sh"]
async fn soak_memory_and_connections_stay_flat() {
    let _serial = SERIAL.lock().await;
    let run_for = Duration::from_secs(secs());
    let prefix = e2e::unique("soak");
    let port = e2e::reserve_ports(1)[0];
    let base = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let mut child = spawn_all(port, &prefix, &database_url(), &log, &[]);
    let pid = child.id();
    wait_healthy(&base).await;
    let (sink_base, sink) = sink::start().await;
    let mut tenants = Vec::new();
    for index in 0..2 {
        tenants.push(load::tenant(&base, &sink_base, index, 4).await);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .unwrap();

    let load = load::Load::start(&base, &tenants, Duration::from_millis(50));
    let started = Instant::now();
    let mut samples: Vec<Value> = Vec::new();
    while started.elapsed() < run_for {
        let (fds, sockets) = fds(pid);
        samples.push(json!({
            "t_s": started.elapsed().as_secs(),
            "rss_kib": rss_kib(pid),
            "fds": fds,
            "sockets": sockets,
            "pg_sessions": pg_sessions(&pool).await,
            "amqp_connections": amqp_connections().await,
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let records = load.stop().await;
    let accepted = records.iter().filter(|r| r.message_id.is_some()).count();
    let requests: u32 = records.iter().map(|r| r.attempts).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    pool.close().await;

    let field =
        |name: &str| -> Vec<i64> { samples.iter().filter_map(|s| s[name].as_i64()).collect() };
    let spread = |name: &str| -> Value {
        let values = field(name);
        json!({
            "first": values.first(),
            "last": values.last(),
            "min": values.iter().min(),
            "max": values.iter().max(),
        })
    };
    let rss = field("rss_kib");
    // Growth over the second half, so start-up allocation does not count as a leak.
    let half = rss.get(rss.len() / 2).copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    let report = json!({
        "seconds": elapsed.round(),
        "requests": requests,
        "accepted": accepted,
        "requests_per_second": (f64::from(requests) / elapsed).round(),
        "deliveries_received": sink.deliveries().values().map(Vec::len).sum::<usize>(),
        "rss_kib": spread("rss_kib"),
        "rss_growth_second_half_kib": last - half,
        "sockets": spread("sockets"),
        "fds": spread("fds"),
        "pg_sessions": spread("pg_sessions"),
        "amqp_connections_broker_wide": spread("amqp_connections"),
        "samples": samples,
        "log": log.display().to_string(),
    });
    let summary = format!(
        "soak: {:.0} s, {requests} requests ({:.0}/s), {accepted} accepted; RSS {} → {} KiB (max {}, second-half growth {} KiB); sockets {} → {}; Postgres sessions {} → {}; broker connections {} → {}",
        elapsed,
        f64::from(requests) / elapsed,
        report["rss_kib"]["first"],
        report["rss_kib"]["last"],
        report["rss_kib"]["max"],
        last - half,
        report["sockets"]["first"],
        report["sockets"]["last"],
        report["pg_sessions"]["first"],
        report["pg_sessions"]["last"],
        report["amqp_connections_broker_wide"]["first"],
        report["amqp_connections_broker_wide"]["last"],
    );
    crate::publish("SMOOCH_SOAK_REPORT", &report, &summary);
    assert_eq!(accepted, records.len(), "the soak lost requests: {summary}");
}
