//! The scenarios; each returns its report (a failed ledger is a failure in the report,
//! an error is a scenario that could not run).

mod fairness;
mod floor;
mod instructions;
mod post_message;
mod push;
mod read_conversation;
mod realtime;
pub(crate) mod split_compare;
mod webhooks;

pub(crate) use floor::hop_table;
pub(crate) use webhooks::{fan_out_one as webhooks_fan_out_one, fan_out_one_rates};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::json;

use crate::api::padded_text;
use crate::context::Ctx;
use crate::load::{self, Outcome, Step, StepRun};
use crate::report::Report;

/// Where a sequenced post goes: the conversation's messages URL and the credential header.
pub(crate) type PostTarget = (String, HeaderName, HeaderValue);

/// What [`post_sequenced`] posted.
pub(crate) struct Posted {
    /// The step's requests.
    pub run: StepRun,
    /// The sequence numbers answered 201, in order.
    pub posted: Vec<u64>,
    /// POSTs shed by the suite's admission control (answered 503, "at capacity"); counted
    /// in the run's failures too.
    pub shed: u64,
    /// The first failure admission control did not decide (another status, a 503 of a
    /// backing service, or the request's own error), as text.
    pub other_failure: Option<String>,
}

/// Posts message `i` of `step` as `role` to `targets[i % len]`, its text carrying
/// `bench {step_id} {i}` (so a sink can tell which message a delivery is for) padded to
/// 200 bytes.
pub(crate) async fn post_sequenced(
    ctx: &Ctx,
    step: Step,
    step_id: u32,
    targets: Vec<PostTarget>,
    role: &'static str,
) -> Posted {
    let posted_ok = Arc::new(Mutex::new(vec![false; step.count() as usize]));
    let shed = Arc::new(AtomicU64::new(0));
    let other_failure = Arc::new(Mutex::new(None::<String>));
    let (http, targets) = (ctx.api.http.clone(), Arc::new(targets));
    let run = {
        let (posted_ok, shed, other) = (posted_ok.clone(), shed.clone(), other_failure.clone());
        load::run(step, move |i, _| {
            let (http, targets, posted_ok) = (http.clone(), targets.clone(), posted_ok.clone());
            let (shed, other) = (shed.clone(), other.clone());
            async move {
                let (url, header, value) = &targets[(i as usize) % targets.len()];
                let body = json!({
                    "text": padded_text(&format!("bench {step_id} {i}"), 200),
                    "role": role,
                });
                let sent = http
                    .post(url)
                    .header(header.clone(), value.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body.to_string())
                    .send()
                    .await;
                let failure = match sent {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        if let Ok(mut p) = posted_ok.lock() {
                            p[i as usize] = true;
                        }
                        return Outcome::Ok;
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        // `gateway::admission`'s answer to a request it has no room for.
                        if status.as_u16() == 503 && body.contains("at capacity") {
                            shed.fetch_add(1, Ordering::Relaxed);
                            return Outcome::Failed;
                        }
                        format!("answered {status}: {body}")
                    }
                    // The source chain says what broke (a reset, a closed connection).
                    Err(e) => format!("{:#}", anyhow::Error::new(e)),
                };
                if let Ok(mut first) = other.lock() {
                    first.get_or_insert(failure);
                }
                Outcome::Failed
            }
        })
        .await
    };
    let posted = match posted_ok.lock() {
        Ok(p) => p
            .iter()
            .enumerate()
            .filter(|(_, ok)| **ok)
            .map(|(i, _)| i as u64)
            .collect(),
        Err(_) => Vec::new(),
    };
    let other_failure = other_failure.lock().ok().and_then(|mut first| first.take());
    Posted {
        run,
        posted,
        shed: shed.load(Ordering::Relaxed),
        other_failure,
    }
}

/// Runs scenario `name`.
pub(super) async fn run(name: &str, ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = match name {
        "floor" => floor::run(ctx).await?,
        "post-message" => post_message::run(ctx).await?,
        "read-conversation" => read_conversation::run(ctx).await?,
        "webhooks" => webhooks::run(ctx).await?,
        "retry-storm" => webhooks::retry_storm(ctx).await?,
        "realtime" => realtime::run(ctx).await?,
        "push" => push::run(ctx).await?,
        "fairness" => fairness::run(ctx).await?,
        "instructions" => instructions::run(ctx).await?,
        other => bail!("unknown scenario {other}"),
    };
    ctx.finish(&mut report);
    Ok(report)
}

/// Waits for deliveries still on their way after a step: polls `progress` (whether all
/// arrived, and how many receipts there are so far) every 100 ms until all arrived, or
/// `since` is `limit` old, or nothing new arrived for 15 s. What is missing then is lost.
pub(crate) async fn await_deliveries(
    since: std::time::Instant,
    limit: std::time::Duration,
    mut progress: impl FnMut() -> (bool, usize),
) {
    let quiet_limit = std::time::Duration::from_secs(15);
    let (mut last_count, mut quiet_since) = (0, std::time::Instant::now());
    loop {
        let (complete, count) = progress();
        if complete {
            return;
        }
        if count != last_count {
            last_count = count;
            quiet_since = std::time::Instant::now();
        }
        if since.elapsed() > limit || quiet_since.elapsed() > quiet_limit {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
