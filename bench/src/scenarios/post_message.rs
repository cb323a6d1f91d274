//! `post-message`: app-token authenticated POSTs of a 200-byte appUser message, spread over
//! many users of many apps, at a ladder of fixed rates. The headline is the highest rate
//! held with p99 ≤ 25 ms; the rows give p50/p99/p99.9 at each rate.

use std::sync::Arc;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde_json::json;

use crate::context::{held, saturated, Ctx};
use crate::load::{self, Outcome};
use crate::report::Report;

/// The latency objective of the post-message and read-conversation targets.
pub(crate) const P99_OBJECTIVE_MS: f64 = 25.0;

/// The JSON body of an appUser text message.
fn body_for(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"text": text, "role": "appUser"})).unwrap_or_default()
}

/// One user to post as: the URL of its messages and its app's token.
struct Target {
    url: String,
    token: HeaderValue,
}

/// Runs the scenario.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("post-message");
    let (apps_n, users_n) = if ctx.smoke() { (2, 3) } else { (10, 20) };
    let apps = ctx.api.create_apps("post-message", apps_n).await?;
    let users = ctx.api.init_users(&apps, users_n).await?;
    let targets: Arc<Vec<Target>> = Arc::new(
        users
            .iter()
            .enumerate()
            .map(|(i, (a, user))| {
                Ok(Target {
                    url: format!(
                        "{}/v1/appusers/{user}/conversation/messages",
                        ctx.api.base_for(i)
                    ),
                    token: HeaderValue::from_str(&apps[*a].token)?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let body = bytes::Bytes::from(body_for(&crate::api::padded_text("bench post", 200)));
    let rates = ctx.settings.rates.clone().unwrap_or_else(|| {
        if ctx.smoke() {
            vec![20.0, 40.0]
        } else {
            vec![
                250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0,
            ]
        }
    });
    let mut best: Option<f64> = None;
    let mut points = Vec::new();
    for rate in rates {
        let step = ctx.step(rate);
        let cpu = ctx.cpu();
        let http = ctx.api.http.clone();
        let targets = targets.clone();
        let body = body.clone();
        let run = load::run(step, move |i, _| {
            let http = http.clone();
            let body = body.clone();
            let targets = targets.clone();
            async move {
                let t = &targets[(i as usize) % targets.len()];
                let sent = http
                    .post(&t.url)
                    .header("app-token", t.token.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => match r.bytes().await {
                        Ok(_) => Outcome::Ok,
                        Err(_) => Outcome::Failed,
                    },
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        eprintln!("post-message: {status} {text}");
                        Outcome::Failed
                    }
                    Err(_) => Outcome::Failed,
                }
            }
        })
        .await;
        let mut row = ctx.step_row(format!("POST message @ {rate:.0}/s"), &step, &run, &cpu);
        if let Some((peak, now)) = ctx.suite_memory_mib() {
            row.extra
                .insert("smooch RSS MiB".to_owned(), json!(now.round()));
            row.extra.insert("peak".to_owned(), json!(peak.round()));
        }
        let ok = held(&row, rate, P99_OBJECTIVE_MS);
        let stop = saturated(&row, rate);
        eprintln!(
            "  {rate:.0}/s: achieved {:.0}/s p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms failed {}{}",
            row.achieved_per_s,
            row.latency.p50,
            row.latency.p99,
            row.latency.p999,
            row.failed,
            if ok { "" } else { " (objective missed)" }
        );
        if ok {
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        }
        points.push((row.achieved_per_s, row.latency.clone()));
        report.rows.push(row);
        if stop {
            break;
        }
        // Let the outbox relay and Postgres catch up before the next rate.
        tokio::time::sleep(std::time::Duration::from_secs(if ctx.smoke() {
            0
        } else {
            3
        }))
        .await;
    }
    report.headline.insert(
        "highest rate held with p99 ≤ 25 ms (req/s)".to_owned(),
        json!(best.unwrap_or(0.0)),
    );
    report
        .headline
        .insert("target (req/s)".to_owned(), json!(2500));
    if let Some(floor) = crate::scenarios::floor::read_floor(&ctx.out) {
        if let Some(first) = report.rows.first() {
            report.headline.insert(
                "p50 at the lowest rate ÷ floor p50 (Redis GET + insert/commit + confirmed publish, sequential)".to_owned(),
                json!((first.latency.p50 / floor.sequential_p50_ms * 100.0).round() / 100.0),
            );
        }
        if let Some(best) = best {
            report.headline.insert(
                "highest rate held ÷ floor throughput (sequential ops, 32 in flight)".to_owned(),
                json!((best / floor.sequential_per_s * 100.0).round() / 100.0),
            );
        }
    }
    report.notes.push(format!(
        "{apps_n} apps × {users_n} users, round-robin; open loop, latency from the scheduled send time; a step holds when p99 ≤ {P99_OBJECTIVE_MS} ms, ≤ 0.1% failed and ≥ 95% of the offered rate is achieved."
    ));
    if !ctx.smoke() {
        crate::plot::latency_vs_throughput(
            &ctx.out.join("post-message.png"),
            "post-message: latency vs throughput (open loop)",
            &[("POST message", &points)],
            P99_OBJECTIVE_MS,
        )?;
    }
    if report.rows.iter().all(|r| r.ok == 0) {
        report
            .failures
            .push("no message was posted successfully".to_owned());
    }
    Ok(report)
}
