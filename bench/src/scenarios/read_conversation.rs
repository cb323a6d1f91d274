//! `read-conversation`: app-token GET of a conversation (its latest page of 100 messages)
//! from conversations of 10, 100 and 100,000 messages, at a ladder of fixed rates. The
//! small ones are posted through the API; the big one gets its first message through the
//! API (which creates the conversation) and the rest inserted with one SQL statement into
//! the suite's `conversations.messages` table of the bench database, because posting
//! 100,000 messages through the API would take minutes.

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use reqwest::header::HeaderValue;
use serde_json::json;
use sqlx::Connection as _;

use crate::api::{padded_text, App};
use crate::context::{held, saturated, Ctx};
use crate::load::{self, Outcome};
use crate::report::Report;
use crate::scenarios::post_message::P99_OBJECTIVE_MS;

/// Inserts `count` appUser messages into the conversation of app user `app_user_id`,
/// received before any message posted through the API.
async fn seed_sql(
    database_url: &str,
    app: &App,
    app_user_id: &str,
    count: u64,
) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(database_url).await?;
    let conversation: String = sqlx::query_scalar(
        "SELECT id FROM conversations.conversations WHERE app_id = $1 AND app_user_id = $2",
    )
    .bind(&app.id)
    .bind(app_user_id)
    .fetch_one(&mut conn)
    .await
    .context("finding the big conversation")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // Ids are 24 hex characters, unique within the app: 12 from the conversation, 12 from
    // the row number. One millisecond apart, ending a minute before now.
    sqlx::query(
        "INSERT INTO conversations.messages
             (app_id, conversation_id, id, author_id, role, text, received_ms)
         SELECT $1, $2, substr(md5($2), 1, 12) || lpad(to_hex(g), 12, '0'), $3, 'appUser', $4,
                $5 - 60000 - $6 + g
           FROM generate_series(1, $6) AS g",
    )
    .bind(&app.id)
    .bind(&conversation)
    .bind(app_user_id)
    .bind(padded_text("bench seeded", 200))
    .bind(now_ms)
    .bind(i64::try_from(count)?)
    .execute(&mut conn)
    .await
    .context("seeding the big conversation")?;
    sqlx::query("ANALYZE conversations.messages")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Runs the scenario.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("read-conversation");
    let big = ctx
        .settings
        .big_conversation
        .unwrap_or(if ctx.smoke() { 2_000 } else { 100_000 });
    let app = ctx.api.create_app("read-conversation").await?;
    let sizes = [10u64, 100, big];
    let seeding = std::time::Instant::now();
    for size in sizes {
        let user = format!("c{size}");
        let app_user_id = ctx.api.init_user(&app, &user).await?;
        let through_api = size.min(100);
        let posts = (0..through_api).map(|i| {
            (
                user.clone(),
                padded_text(&format!("bench message {i}"), 200),
            )
        });
        ctx.api.post_messages(&app, posts, 8).await?;
        if size > through_api {
            seed_sql(&ctx.database_url, &app, &app_user_id, size - through_api).await?;
        }
    }
    let seed_seconds = seeding.elapsed().as_secs_f64();
    eprintln!("  seeded conversations of {sizes:?} messages in {seed_seconds:.1} s");

    let token = HeaderValue::from_str(&app.token)?;
    let rates = ctx.settings.rates.clone().unwrap_or_else(|| {
        if ctx.smoke() {
            vec![20.0]
        } else {
            vec![
                // A step past the goal (5,000 req/s for 10 messages), so that the figure
                // is what the suite holds, not where the ladder ends.
                100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0, 6000.0,
            ]
        }
    });
    let mut best = Vec::new();
    let mut series = Vec::new();
    for size in sizes {
        // The load goes round-robin over the gateways (one but with --split --replicas N).
        let path = format!("/v1/appusers/c{size}/conversation");
        let urls: Arc<Vec<String>> =
            Arc::new(ctx.api.bases.iter().map(|b| format!("{b}{path}")).collect());
        let url = format!("{}{path}", ctx.api.base);
        // Check the page once: its length, and how big it is on the wire.
        let page = ctx
            .api
            .http
            .get(url.as_str())
            .header("app-token", token.clone())
            .send()
            .await?
            .bytes()
            .await?;
        let body: serde_json::Value = serde_json::from_slice(&page)?;
        let messages = body["conversation"]["messages"]
            .as_array()
            .ok_or_else(|| anyhow!("no messages in the conversation of c{size}: {body}"))?
            .len();
        if messages != size.min(100) as usize {
            report.failures.push(format!(
                "conversation of {size} messages returned {messages} messages, expected {}",
                size.min(100)
            ));
        }
        let mut held_rate: Option<f64> = None;
        let mut points = Vec::new();
        for &rate in &rates {
            let step = ctx.step(rate);
            let cpu = ctx.cpu();
            let http = ctx.api.http.clone();
            let (urls, token) = (urls.clone(), token.clone());
            let run = load::run(step, move |i, _| {
                let (http, token) = (http.clone(), token.clone());
                let url = urls[(i as usize) % urls.len()].clone();
                async move {
                    match http.get(url).header("app-token", token).send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(_) => Outcome::Ok,
                            Err(_) => Outcome::Failed,
                        },
                        _ => Outcome::Failed,
                    }
                }
            })
            .await;
            let mut row = ctx.step_row(
                format!("GET conversation of {size} msgs @ {rate:.0}/s"),
                &step,
                &run,
                &cpu,
            );
            row.extra
                .insert("page messages".to_owned(), json!(messages));
            row.extra.insert("page bytes".to_owned(), json!(page.len()));
            eprintln!(
                "  {size} msgs @ {rate:.0}/s: achieved {:.0}/s p50 {:.2} ms p99 {:.2} ms failed {}",
                row.achieved_per_s, row.latency.p50, row.latency.p99, row.failed
            );
            if held(&row, rate, P99_OBJECTIVE_MS) {
                held_rate = Some(rate);
            }
            let stop = saturated(&row, rate);
            points.push((row.achieved_per_s, row.latency.clone()));
            report.rows.push(row);
            if stop {
                break;
            }
        }
        best.push((size, held_rate.unwrap_or(0.0)));
        series.push((format!("{size} msgs"), points));
    }
    for (size, rate) in &best {
        report.headline.insert(
            format!("highest rate held with p99 ≤ 25 ms, {size}-message conversation (req/s)"),
            json!(rate),
        );
    }
    // The big conversation against the small one at the lowest rate, where neither queues.
    let at_lowest = |size: u64| {
        report
            .rows
            .iter()
            .find(|r| {
                r.label
                    .starts_with(&format!("GET conversation of {size} msgs"))
            })
            .map(|r| (r.latency.p50, r.latency.p99))
    };
    if let (Some(small), Some(page), Some(large)) = (at_lowest(10), at_lowest(100), at_lowest(big))
    {
        report.headline.insert(
            format!("p50 {big} msgs ÷ p50 10 msgs at the lowest rate (target ≤ 1.2)"),
            json!((large.0 / small.0 * 100.0).round() / 100.0),
        );
        report.headline.insert(
            format!("p50 {big} msgs ÷ p50 100 msgs at the lowest rate (same page size)"),
            json!((large.0 / page.0 * 100.0).round() / 100.0),
        );
    }
    report
        .headline
        .insert("target (req/s)".to_owned(), json!(5000));
    report.notes.push(format!(
        "One app; conversations of 10 and 100 messages posted through the API, the {big}-message one seeded by SQL ({seed_seconds:.0} s to seed all). Every request reads the same conversation, so its rows stay in Postgres' cache: this measures the per-request cost, not disk."
    ));
    if !ctx.smoke() {
        let refs: Vec<(&str, &Vec<(f64, load::Latency)>)> =
            series.iter().map(|(n, p)| (n.as_str(), p)).collect();
        crate::plot::latency_vs_throughput(
            &ctx.out.join("read-conversation.png"),
            "read-conversation: latency vs throughput (open loop)",
            &refs,
            P99_OBJECTIVE_MS,
        )?;
    }
    Ok(report)
}
