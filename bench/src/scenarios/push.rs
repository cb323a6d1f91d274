//! `push`: app-maker messages posted at a fixed rate to users with one Android device
//! each (fan-out 1), which the suite's push worker sends to the harness's fake FCM (the
//! legacy endpoint, `push_sink`), and the ledger of what arrived.
//!
//! Every message's text carries its sequence number, and so does its notification's body,
//! so the sink knows which message each push is for. After the last message is answered
//! the harness waits for the pending pushes; any that never arrive are lost: the run fails.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::json;

use crate::context::Ctx;
use crate::load::Latency;
use crate::push_sink::PushSink;
use crate::report::{Report, Row};

async fn run_step(
    ctx: &Ctx,
    sink: &PushSink,
    rate: f64,
    report: &mut Report,
) -> anyhow::Result<Row> {
    let step_id = ctx.step_id();
    let (apps_n, users_n) = if ctx.smoke() { (2, 2) } else { (8, 10) };
    let apps = ctx
        .api
        .create_apps(&format!("push-{step_id}"), apps_n)
        .await?;
    let prefix = format!("bench-push-{step_id}-");
    let mut targets = Vec::new();
    for (a, app) in apps.iter().enumerate() {
        ctx.api
            .create_integration(
                app,
                json!({"type": "fcm", "serverKey": "bench-server-key", "senderId": "1"}),
            )
            .await?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", app.jwt))?;
        for u in 0..users_n {
            let user = ctx
                .api
                .init_push_user(app, &format!("u{u}"), &format!("{prefix}{a}-{u}"))
                .await?;
            targets.push((
                format!(
                    "{}/v1/appusers/{user}/conversation/messages",
                    ctx.api.base_for(targets.len())
                ),
                AUTHORIZATION,
                bearer.clone(),
            ));
        }
    }

    let step = ctx.step(rate);
    let cpu = ctx.cpu();
    let super::Posted { run, posted, .. } =
        super::post_sequenced(ctx, step, step_id, targets, "appMaker").await;
    let cutoff = Instant::now();
    let posted: HashSet<u64> = posted.into_iter().collect();
    let expected = posted.len() as u64;
    // First arrival of each posted message's push, and the extra ones.
    let tally = || {
        let mut first: HashMap<u64, Instant> = HashMap::new();
        let (mut duplicates, mut unknown) = (0u64, 0u64);
        for r in sink.receipts(&prefix) {
            match r.seq.filter(|s| posted.contains(s)) {
                Some(seq) => match first.entry(seq) {
                    std::collections::hash_map::Entry::Occupied(mut at) => {
                        duplicates += 1;
                        if r.at < *at.get() {
                            at.insert(r.at);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(r.at);
                    }
                },
                None => unknown += 1,
            }
        }
        (first, duplicates, unknown)
    };
    let delivered_at_cutoff = tally().0.len() as u64;
    let drain = Duration::from_secs(if ctx.smoke() { 30 } else { 60 });
    super::await_deliveries(cutoff, drain, || {
        let count = tally().0.len();
        (count as u64 >= expected, count)
    })
    .await;
    let (first, duplicates, unknown) = tally();
    let delivered = first.len() as u64;
    let lost = expected - delivered.min(expected);

    // End to end: from the message's scheduled POST to the push's arrival at the fake.
    let (latency, pushes_per_s) = run.arrivals(&step, first.iter().map(|(seq, at)| (*seq, *at)));
    let after = ctx.watched.snapshot();
    let seconds = cpu.1.elapsed().as_secs_f64();
    let (cpu, host) = ctx.watched.cost(&cpu.0, &after, delivered, seconds);
    let mut row = Row {
        label: format!("{rate} msg/s × 1 device (FCM legacy)"),
        offered: format!("{rate:.0} pushes/s"),
        achieved_per_s: pushes_per_s,
        ok: delivered,
        failed: lost,
        latency: latency.clone(),
        cpu,
        host,
        extra: serde_json::Map::new(),
    };
    for (k, v) in [
        ("posted", json!(posted.len())),
        ("post failures", json!(run.failed)),
        ("post p99 ms", json!(Latency::of(&run.histogram).p99)),
        ("pushed at cutoff", json!(delivered_at_cutoff)),
        ("pushed", json!(delivered)),
        ("lost", json!(lost)),
        ("duplicates", json!(duplicates)),
        ("unknown", json!(unknown)),
    ] {
        row.extra.insert(k.to_owned(), v);
    }
    eprintln!(
        "  {}: posted {} ({} failed), pushed {delivered_at_cutoff} at cutoff, {delivered} in all, lost {lost}, duplicates {duplicates}; {pushes_per_s:.0} pushes/s in window, e2e p50 {:.1} ms p99 {:.1} ms",
        row.label,
        posted.len(),
        run.failed,
        latency.p50,
        latency.p99,
    );
    if lost > 0 {
        let hint = if delivered == 0 {
            " (nothing arrived: is the push worker running in `smooch all`?)"
        } else {
            ""
        };
        report.failures.push(format!(
            "{}: ledger does not balance: {expected} posted, {delivered} pushed, {lost} lost{hint}",
            row.label
        ));
    }
    if posted.is_empty() {
        report
            .failures
            .push(format!("{}: no message was posted", row.label));
    }
    Ok(row)
}

/// `push`: fan-out 1 at a ladder of message rates.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("push");
    let Some(sink) = &ctx.push_sink else {
        report.notes.push(
            "skipped: the harness did not start this suite, so its push worker does not send to the harness's fake FCM"
                .to_owned(),
        );
        return Ok(report);
    };
    let rates = if ctx.smoke() {
        vec![10.0]
    } else {
        vec![100.0, 250.0, 500.0]
    };
    let mut best: f64 = 0.0;
    for rate in rates {
        let row = run_step(ctx, sink, rate, &mut report).await?;
        if row.failed == 0 && row.latency.p99 <= 1_000.0 {
            best = best.max(row.achieved_per_s);
        }
        let saturated = crate::context::saturated(&row, rate);
        report.rows.push(row);
        if saturated {
            break;
        }
    }
    report.headline.insert(
        "pushes/s at fan-out 1 with e2e p99 ≤ 1 s".to_owned(),
        json!((best * 10.0).round() / 10.0),
    );
    report.notes.push(
        "Pushes go through the real worker (credentials read per event from the users service, one FCM legacy request per device) to a fake FCM in the harness that answers at once: the figures are the suite's cost, not Google's."
            .to_owned(),
    );
    Ok(report)
}
