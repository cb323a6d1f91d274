//! `floor`: what the hot path's dependencies cost when asked directly from this process
//! (the same process layout as the suite: a separate process over loopback), one at a time
//! (latency) and 32 in flight (throughput); and the three in sequence, the least a posted
//! message can cost.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map};

use crate::context::Ctx;
use crate::floor::{AmqpFloor, PgFloor, RedisFloor};
use crate::load::{self, Latency, Outcome};
use crate::report::{Report, Row};

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
    let (warmup, duration) = if ctx.smoke() {
        (Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(6))
    };
    let mut sequential = (0.0, 0.0);
    for op in [
        "postgres insert+commit",
        "amqp confirmed publish",
        "redis GET",
        "all three in sequence",
    ] {
        for concurrency in [1usize, 32] {
            let cpu = ctx.cpu();
            let (pg, amqp, redis) = (pg.clone(), amqp.clone(), redis.clone());
            let (ok, failed, histogram) =
                load::closed_loop(concurrency, warmup, duration, move || {
                    let (pg, amqp, redis) = (pg.clone(), amqp.clone(), redis.clone());
                    async move {
                        match op {
                            "postgres insert+commit" => pg.insert().await,
                            "amqp confirmed publish" => amqp.publish().await,
                            "redis GET" => redis.get().await,
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
            if op == "all three in sequence" {
                if concurrency == 1 {
                    sequential.0 = latency.p50;
                } else {
                    sequential.1 = per_s;
                }
            }
            if failed > 0 {
                report
                    .failures
                    .push(format!("{op}: {failed} operations failed"));
            }
            report.rows.push(Row {
                label: op.to_owned(),
                offered: format!("{concurrency} in flight"),
                achieved_per_s: per_s,
                ok,
                failed,
                latency,
                cpu: ctx.watched.cost(&cpu.0, &after, ok + failed, seconds),
                extra: Map::new(),
            });
        }
    }
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
        "Closed loop from the bench process over loopback. Postgres: BEGIN; one INSERT of a message row and its ~1 KiB outbox row (the suite's table definitions, copied into schema bench_floor); COMMIT, on a pool of 10 (the suite's default). AMQP: a ~1 KiB persistent publish to a durable queue on one confirm-mode channel, awaited until acked. Redis: GET of a 200-byte key on a multiplexed connection.".to_owned(),
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
    if let Ok(redis) = Arc::try_unwrap(redis) {
        if let Err(e) = redis.teardown().await {
            eprintln!("warning: deleting the floor's key: {e:#}");
        }
    }
    Ok(report)
}
