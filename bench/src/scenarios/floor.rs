//! `floor`: what the hot path's dependencies cost when asked directly from this process
//! (the same process layout as the suite: a separate process over loopback), one at a time
//! (latency) and 32 in flight (throughput); a bare HTTP round trip to another process, the
//! same ways and paced at a fixed rate (what one hop between processes costs when the
//! machine idles between requests, as split roles' hops do at low rates); and the three
//! dependencies in sequence, the least a posted message can cost.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map};

use crate::context::Ctx;
use crate::floor::{AmqpFloor, HttpFloor, PgFloor, RedisFloor};
use crate::load::{self, Latency, Outcome};
use crate::procstat;
use crate::report::{figure, Report, Row};

/// The figures other scenarios compare themselves to.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FloorFigures {
    /// p50 of Redis GET + insert/commit + confirmed publish in sequence, one in flight.
    pub(crate) sequential_p50_ms: f64,
    /// Throughput of the same sequence with 32 in flight.
    pub(crate) sequential_per_s: f64,
}

/// Reads the floor figures from `dir/floor.json`, if a floor run wrote them.
pub(crate) fn read_floor(dir: &Path) -> Option<FloorFigures> {
    let text = std::fs::read_to_string(dir.join("floor.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(value["headline"]["figures"].clone()).ok()
}

/// Runs the scenario.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("floor");
    let pg = Arc::new(PgFloor::setup(&ctx.database_url, 10).await?);
    let amqp = Arc::new(AmqpFloor::setup(&ctx.settings.amqp_url, &ctx.prefix).await?);
    let redis = Arc::new(RedisFloor::setup(&ctx.settings.redis_url, &ctx.prefix).await?);
    let http = Arc::new(HttpFloor::setup().await?);
    let (warmup, duration) = durations(ctx.smoke());
    let mut sequential = (0.0, 0.0);
    let mut http_one_p50 = 0.0;
    for op in [
        "postgres insert+commit",
        "amqp confirmed publish",
        "redis GET",
        "http round trip",
        "all three in sequence",
    ] {
        for concurrency in [1usize, 32] {
            let cpu = ctx.cpu();
            let (pg, amqp, redis, http) = (pg.clone(), amqp.clone(), redis.clone(), http.clone());
            let (ok, failed, histogram) =
                load::closed_loop(concurrency, warmup, duration, move || {
                    let (pg, amqp, redis, http) =
                        (pg.clone(), amqp.clone(), redis.clone(), http.clone());
                    async move {
                        match op {
                            "postgres insert+commit" => pg.insert().await,
                            "amqp confirmed publish" => amqp.publish().await,
                            "redis GET" => redis.get().await,
                            "http round trip" => http.get().await,
                            _ => {
                                for outcome in
                                    [redis.get().await, pg.insert().await, amqp.publish().await]
                                {
                                    if outcome == Outcome::Failed {
                                        return Outcome::Failed;
                                    }
                                }
                                Outcome::Ok
                            }
                        }
                    }
                })
                .await;
            let after = ctx.watched.snapshot();
            let seconds = cpu.1.elapsed().as_secs_f64();
            let latency = Latency::of(&histogram);
            let per_s = ok as f64 / duration.as_secs_f64();
            eprintln!(
                "  {op}, {concurrency} in flight: {per_s:.0}/s p50 {:.3} ms p99 {:.3} ms",
                latency.p50, latency.p99
            );
            match (op, concurrency) {
                ("all three in sequence", 1) => sequential.0 = latency.p50,
                ("all three in sequence", _) => sequential.1 = per_s,
                ("http round trip", 1) => http_one_p50 = latency.p50,
                _ => {}
            }
            if failed > 0 {
                report
                    .failures
                    .push(format!("{op}: {failed} operations failed"));
            }
            let (cpu, host) = ctx.watched.cost(&cpu.0, &after, ok + failed, seconds);
            report.rows.push(Row {
                label: op.to_owned(),
                offered: format!("{concurrency} in flight"),
                achieved_per_s: per_s,
                ok,
                failed,
                latency,
                cpu,
                host,
                extra: Map::new(),
            });
        }
    }
    // One hop at a fixed pace: between requests both processes go idle, and each request
    // wakes them, as the hops of split roles do at a few hundred messages a second.
    let paced_rate = if ctx.smoke() { 50.0 } else { 500.0 };
    let cpu = ctx.cpu();
    let Paced {
        ok,
        failed,
        histogram,
        ..
    } = paced_hops(&http, paced_rate, warmup, duration).await;
    let after = ctx.watched.snapshot();
    let seconds = cpu.1.elapsed().as_secs_f64();
    let latency = Latency::of(&histogram);
    eprintln!(
        "  http round trip, paced at {paced_rate}/s: p50 {:.3} ms p99 {:.3} ms",
        latency.p50, latency.p99
    );
    if failed > 0 {
        report
            .failures
            .push(format!("http round trip, paced: {failed} requests failed"));
    }
    let paced_p99 = latency.p99;
    let (cpu, host) = ctx.watched.cost(&cpu.0, &after, ok + failed, seconds);
    report.rows.push(Row {
        label: "http round trip".to_owned(),
        offered: format!("{paced_rate}/s"),
        achieved_per_s: ok as f64 / duration.as_secs_f64(),
        ok,
        failed,
        latency,
        cpu,
        host,
        extra: Map::new(),
    });
    report.headline.insert(
        "bare HTTP round trip to another process, 1 in flight: p50 (ms)".to_owned(),
        json!(http_one_p50),
    );
    report.headline.insert(
        format!(
            "the same round trip paced at {paced_rate}/s (a hop of split roles at that many messages/s): p99 (ms)"
        ),
        json!(paced_p99),
    );
    report.headline.insert(
        "Redis GET + insert/commit + confirmed publish in sequence, 1 in flight: p50 (ms)"
            .to_owned(),
        json!(sequential.0),
    );
    report.headline.insert(
        "the same sequence, 32 in flight (ops/s)".to_owned(),
        json!(sequential.1.round()),
    );
    report.headline.insert(
        "figures".to_owned(),
        json!({"sequential_p50_ms": sequential.0, "sequential_per_s": sequential.1}),
    );
    report.notes.push(
        "Closed loop from the bench process over loopback. Postgres: BEGIN; one INSERT of a message row and its ~1 KiB outbox row (the suite's table definitions, copied into schema bench_floor); COMMIT, on a pool of 10 (the suite's default). AMQP: a ~1 KiB persistent publish to a durable queue on one confirm-mode channel, awaited until acked. Redis: GET of a 200-byte key on a multiplexed connection. HTTP: GET answered `ok` by a process of its own (`bench echo-server`, axum), over keep-alive connections with TCP_NODELAY; closed loop, then one at a time at a fixed rate (latency from each request's actual start); the echo server's CPU is counted in the bench column.".to_owned(),
    );
    // Clean-up failures (a broker restarted under us) are worth a warning, not the figures.
    if let Ok(pg) = Arc::try_unwrap(pg) {
        if let Err(e) = pg.teardown().await {
            eprintln!("warning: dropping the floor's schema: {e:#}");
        }
    }
    if let Ok(amqp) = Arc::try_unwrap(amqp) {
        if let Err(e) = amqp.teardown().await {
            eprintln!("warning: deleting the floor's queue: {e:#}");
        }
    }
    if let Ok(http) = Arc::try_unwrap(http) {
        if let Err(e) = http.teardown().await {
            eprintln!("warning: {e:#}");
        }
    }
    if let Ok(redis) = Arc::try_unwrap(redis) {
        if let Err(e) = redis.teardown().await {
            eprintln!("warning: deleting the floor's key: {e:#}");
        }
    }
    Ok(report)
}

/// How long each measurement warms up, then how long it is recorded.
fn durations(smoke: bool) -> (Duration, Duration) {
    if smoke {
        (Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(6))
    }
}

/// What [`paced_hops`] did: the outcomes and latencies of the recorded GETs, and how many it
/// sent in all, the warm-up's included.
struct Paced {
    ok: u64,
    failed: u64,
    sent: u64,
    histogram: hdrhistogram::Histogram<u64>,
}

/// GETs to the echo server at `rate`, one at a time, for `warmup` and then `duration`,
/// which is recorded. The latency is from each GET's actual start, not its scheduled one
/// (the runtime's timer wakes up to a millisecond late, which is not the hop's).
async fn paced_hops(http: &HttpFloor, rate: f64, warmup: Duration, duration: Duration) -> Paced {
    let step = load::Step {
        rate,
        duration: warmup + duration,
        warmup,
        max_in_flight: 1,
    };
    let started = tokio::time::Instant::now();
    let mut histogram = load::histogram();
    let (mut ok, mut failed) = (0u64, 0u64);
    for i in 0..step.count() {
        tokio::time::sleep_until(started + step.offset(i)).await;
        let begun = std::time::Instant::now();
        let outcome = http.get().await;
        let elapsed = begun.elapsed();
        if step.offset(i) < warmup {
            continue;
        }
        match outcome {
            Outcome::Ok => {
                ok += 1;
                load::record(&mut histogram, elapsed);
            }
            Outcome::Failed => failed += 1,
        }
    }
    Paced {
        ok,
        failed,
        sent: step.count(),
        histogram,
    }
}

/// For `split-compare`: the bare HTTP round trip to another process paced at each of
/// `rates`, as a markdown table, with the CPU time of each round trip at either end. Split
/// roles add two such hops to every message (the gateway's call to the conversations role,
/// and the hand-off to the webhook worker, whose answers go back in batches).
/// Also returns the server's CPU per round trip at each rate, in µs.
pub(crate) async fn hop_table(
    rates: &[f64],
    smoke: bool,
) -> anyhow::Result<(String, Vec<Option<f64>>)> {
    use std::fmt::Write as _;
    let http = HttpFloor::setup().await?;
    let (warmup, duration) = durations(smoke);
    let mut table = String::from(
        "The floor of one hop: a bare HTTP `GET` to another process (`bench echo-server`, on \
         tokio's current-thread scheduler as a split role of one runtime thread), paced at each rate, before the \
         rounds. CPU per round trip, in µs, from `/proc/<pid>/task/*/schedstat`: the server's, \
         and the harness's as the client (with its timer); split roles put two such hops on \
         every message\n\n\
         | paced at | p50 ms | p99 ms | p99.9 ms | failed | CPU µs: server | client | both |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let me = std::process::id();
    let mut server_cpu = Vec::new();
    for &rate in rates {
        let server = http.server_pid();
        let cpu_before = (server.and_then(procstat::cpu_ns), procstat::cpu_ns(me));
        let paced = paced_hops(&http, rate, warmup, duration).await;
        let cpu_after = (server.and_then(procstat::cpu_ns), procstat::cpu_ns(me));
        // The warm-up's round trips count too: the CPU was read around all of them.
        let sent = paced.sent;
        let per_hop = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) if sent > 0 => Some(a.saturating_sub(b) as f64 / sent as f64 / 1e3),
            _ => None,
        };
        let (server_us, client_us) = (
            per_hop(cpu_before.0, cpu_after.0),
            per_hop(cpu_before.1, cpu_after.1),
        );
        let show = |us: Option<f64>| figure(us, 0);
        let both = server_us.zip(client_us).map(|(s, c)| s + c);
        server_cpu.push(server_us);
        let (failed, latency) = (paced.failed, Latency::of(&paced.histogram));
        let _ = writeln!(
            table,
            "| {rate}/s | {:.2} | {:.2} | {:.2} | {failed} | {} | {} | {} |",
            latency.p50,
            latency.p99,
            latency.p999,
            show(server_us),
            show(client_us),
            show(both)
        );
    }
    http.teardown().await?;
    Ok((table, server_cpu))
}
