//! The scenarios; each returns its report (a failed ledger is a failure in the report,
//! an error is a scenario that could not run).

mod floor;
mod post_message;
mod push;
mod read_conversation;
mod realtime;
mod webhooks;

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

/// Posts message `i` of `step` as `role` to `targets[i % len]`, its text carrying
/// `bench {step_id} {i}` (so a sink can tell which message a delivery is for) padded to
/// 200 bytes. Returns the run and the sequence numbers answered 201, in order.
pub(crate) async fn post_sequenced(
    ctx: &Ctx,
    step: Step,
    step_id: u32,
    targets: Vec<PostTarget>,
    role: &'static str,
) -> (StepRun, Vec<u64>) {
    let posted_ok = Arc::new(Mutex::new(vec![false; step.count() as usize]));
    let (http, targets) = (ctx.api.http.clone(), Arc::new(targets));
    let run = {
        let posted_ok = posted_ok.clone();
        load::run(step, move |i, _| {
            let (http, targets, posted_ok) = (http.clone(), targets.clone(), posted_ok.clone());
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
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        if let Ok(mut p) = posted_ok.lock() {
                            p[i as usize] = true;
                        }
                        Outcome::Ok
                    }
                    _ => Outcome::Failed,
                }
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
    (run, posted)
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
        other => bail!("unknown scenario {other}"),
    };
    ctx.finish(&mut report);
    Ok(report)
}
