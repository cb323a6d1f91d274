//! `fairness`: one app flooding must not starve another. Two apps, each with one webhook to
//! the sink (on ports of their own: different customers' endpoints). The quiet app posts at
//! a fixed rate Q alone (the baseline), then beside a flood app posting at 10× Q, then at a
//! rate that saturates the machine, then at 10× Q again with the flood app's endpoint slow
//! (it answers after 200 ms) while the quiet app's answers at once. Per step: the quiet
//! app's post-to-sink p50/p99 and its accepted and shed POSTs, the flood app's achieved and
//! shed rate, and the ratio of the quiet app's p99 to its baseline beside the goal
//! (≤ 2×). The ledger is the webhooks scenario's, per app: every accepted message of both
//! apps is delivered once (duplicates by message are counted, not failed).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::json;

use super::{post_sequenced, PostTarget, Posted};
use crate::context::Ctx;
use crate::load::{Latency, Step};
use crate::report::{Report, Row};
use crate::sink::SLOW_ANSWER;

/// The worker's default concurrent deliveries per target origin
/// (`SMOOCH_WEBHOOK_MAX_IN_FLIGHT_PER_TARGET`): how fast a slow target drains.
const PER_TARGET: f64 = 8.0;

/// One step of the scenario.
#[derive(Debug, Clone)]
struct Plan {
    /// `baseline`, `flood 10×`, …
    label: String,
    /// The flood app's rate; `None` for the baseline.
    flood_rate: Option<f64>,
    /// Whether the flood app's endpoint answers slowly.
    slow: bool,
    /// A first step of the quiet app alone, reported but not the baseline: a fresh suite's
    /// first seconds (connections opening, caches filling) would flatter every ratio.
    warm_up: bool,
}

/// One app of a step: its sink step id and where its messages are posted.
struct AppLoad {
    step_id: u32,
    targets: Vec<PostTarget>,
}

/// What arrived at one app's target: the first arrival of each posted message.
struct Ledger {
    first: HashMap<u64, Instant>,
    duplicates: u64,
    unknown: u64,
}

fn tally(ctx: &Ctx, step_id: u32, posted: &HashSet<u64>) -> Ledger {
    let mut first: HashMap<u64, Instant> = HashMap::new();
    let (mut duplicates, mut unknown) = (0, 0);
    for r in ctx.sink.receipts(step_id) {
        let Some(seq) = r.seq.filter(|s| posted.contains(s)) else {
            unknown += 1;
            continue;
        };
        match first.entry(seq) {
            std::collections::hash_map::Entry::Occupied(mut at) => {
                duplicates += 1;
                if r.at < *at.get() {
                    at.insert(r.at);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r.at);
            }
        }
    }
    Ledger {
        first,
        duplicates,
        unknown,
    }
}

/// Makes an app with `users` users and one webhook: to a slow target or a prompt one on the
/// sink's port `port`.
async fn set_up_app(ctx: &Ctx, port: usize, users: usize, slow: bool) -> anyhow::Result<AppLoad> {
    let step_id = ctx.step_id();
    let apps = ctx
        .api
        .create_apps(&format!("fairness-{step_id}"), 1)
        .await?;
    let target = if slow {
        ctx.sink.slow_target_url(port, step_id, 0)
    } else {
        ctx.sink.target_url(port, true, step_id, 0)
    };
    ctx.api.create_webhook(&apps[0], &target).await?;
    let token = HeaderValue::from_str(&apps[0].token)?;
    let targets = ctx
        .api
        .init_users(&apps, users)
        .await?
        .iter()
        .enumerate()
        .map(|(i, (_, user))| {
            (
                format!(
                    "{}/v1/appusers/{user}/conversation/messages",
                    ctx.api.base_for(i)
                ),
                HeaderName::from_static("app-token"),
                token.clone(),
            )
        })
        .collect();
    Ok(AppLoad { step_id, targets })
}

/// One app's figures in a step.
struct AppResult {
    posted: Posted,
    ledger: Ledger,
    latency: Latency,
    delivered_per_s: f64,
}

impl AppResult {
    fn lost(&self) -> u64 {
        (self.posted.posted.len() as u64).saturating_sub(self.ledger.first.len() as u64)
    }

    /// Its table row (no CPU: the step's CPU goes on the quiet app's row).
    fn row(&self, label: String, rate: f64, step: &Step) -> Row {
        let run = &self.posted.run;
        let mut row = Row {
            label,
            offered: format!("{rate:.0} msg/s"),
            achieved_per_s: self.delivered_per_s,
            ok: self.ledger.first.len() as u64,
            failed: self.lost(),
            latency: self.latency.clone(),
            cpu: Vec::new(),
            host: crate::procstat::Host::default(),
            extra: serde_json::Map::new(),
        };
        let accepted_per_s = self.posted.posted.len() as f64 / step.duration.as_secs_f64();
        for (k, v) in [
            ("posted", json!(self.posted.posted.len())),
            ("accepted/s", json!((accepted_per_s * 10.0).round() / 10.0)),
            ("post failures", json!(run.failed)),
            ("shed (503)", json!(self.posted.shed)),
            ("post p99 ms", json!(Latency::of(&run.histogram).p99)),
            ("lost", json!(self.lost())),
            ("duplicates", json!(self.ledger.duplicates)),
            ("unknown", json!(self.ledger.unknown)),
        ] {
            row.extra.insert(k.to_owned(), v);
        }
        row
    }
}

/// The e2e latency (scheduled POST → first arrival, after the warm-up) and deliveries per
/// second in the recorded window of one app.
fn measure(posted: Posted, ledger: Ledger, step: &Step) -> AppResult {
    let (latency, delivered_per_s) = posted
        .run
        .arrivals(step, ledger.first.iter().map(|(seq, at)| (*seq, *at)));
    AppResult {
        latency,
        delivered_per_s,
        posted,
        ledger,
    }
}

/// Waits until every accepted message of each `(step id, posted)` has arrived, or the
/// deadline passes, or nothing has arrived for 15 s.
async fn drain(ctx: &Ctx, apps: &[(u32, &HashSet<u64>)], limit: Duration) -> Duration {
    let start = Instant::now();
    super::await_deliveries(start, limit, || {
        let (mut complete, mut count) = (true, 0);
        for (step_id, posted) in apps {
            let ledger = tally(ctx, *step_id, posted);
            count += ledger.first.len() + ledger.duplicates as usize;
            complete &= ledger.first.len() >= posted.len();
        }
        (complete, count)
    })
    .await;
    start.elapsed()
}

/// Sets up the apps of step `index` of `plan`: the quiet app and (but for the baseline)
/// the flood app, every app on a sink port of its own (the worker limits deliveries per
/// origin).
async fn set_up_step(
    ctx: &Ctx,
    index: usize,
    plan: &Plan,
) -> anyhow::Result<(AppLoad, Option<AppLoad>)> {
    let (quiet_users, flood_users) = if ctx.smoke() { (2, 2) } else { (10, 20) };
    let quiet = set_up_app(ctx, 2 * index, quiet_users, false).await?;
    let flood = match plan.flood_rate {
        Some(_) => Some(set_up_app(ctx, 2 * index + 1, flood_users, plan.slow).await?),
        None => None,
    };
    Ok((quiet, flood))
}

/// Runs one step on its apps: posts, drains, and adds its rows; returns the quiet app's
/// e2e p99.
async fn run_step(
    ctx: &Ctx,
    plan: &Plan,
    (quiet, flood): (AppLoad, Option<AppLoad>),
    quiet_rate: f64,
    report: &mut Report,
) -> anyhow::Result<f64> {
    let quiet_step = ctx.step(quiet_rate);
    let cpu = ctx.cpu();
    let (quiet_posted, flood_posted) = match (&flood, plan.flood_rate) {
        (Some(flood), Some(rate)) => {
            let (q, f) = tokio::join!(
                post_sequenced(
                    ctx,
                    quiet_step,
                    quiet.step_id,
                    quiet.targets.clone(),
                    "appUser"
                ),
                post_sequenced(
                    ctx,
                    ctx.step(rate),
                    flood.step_id,
                    flood.targets.clone(),
                    "appUser"
                ),
            );
            (q, Some(f))
        }
        _ => (
            post_sequenced(
                ctx,
                quiet_step,
                quiet.step_id,
                quiet.targets.clone(),
                "appUser",
            )
            .await,
            None,
        ),
    };
    let quiet_set: HashSet<u64> = quiet_posted.posted.iter().copied().collect();
    let flood_set: HashSet<u64> = flood_posted
        .as_ref()
        .map(|f| f.posted.iter().copied().collect())
        .unwrap_or_default();
    let mut waiting = vec![(quiet.step_id, &quiet_set)];
    if let Some(flood) = &flood {
        waiting.push((flood.step_id, &flood_set));
    }
    // A slow target drains at PER_TARGET deliveries per SLOW_ANSWER: wait that long too.
    let slow_drain = if plan.slow {
        flood_set.len() as f64 * SLOW_ANSWER.as_secs_f64() / PER_TARGET * 1.5
    } else {
        0.0
    };
    let limit = Duration::from_secs_f64(if ctx.smoke() { 30.0 } else { 60.0 } + slow_drain);
    let drained = drain(ctx, &waiting, limit).await;

    let quiet_ledger = tally(ctx, quiet.step_id, &quiet_set);
    let quiet_result = measure(quiet_posted, quiet_ledger, &quiet_step);
    let flood_result = match (&flood, flood_posted, plan.flood_rate) {
        (Some(flood), Some(posted), Some(rate)) => {
            let ledger = tally(ctx, flood.step_id, &flood_set);
            Some((measure(posted, ledger, &ctx.step(rate)), rate))
        }
        _ => None,
    };
    let deliveries = quiet_result.ledger.first.len() as u64
        + flood_result
            .as_ref()
            .map_or(0, |(f, _)| f.ledger.first.len() as u64);
    let after = ctx.watched.snapshot();
    let seconds = cpu.1.elapsed().as_secs_f64();

    let mut quiet_row = quiet_result.row(
        format!("{}: quiet app", plan.label),
        quiet_rate,
        &quiet_step,
    );
    (quiet_row.cpu, quiet_row.host) = ctx.watched.cost(&cpu.0, &after, deliveries, seconds);
    quiet_row.extra.insert(
        "drained in s".to_owned(),
        json!((drained.as_secs_f64() * 10.0).round() / 10.0),
    );
    eprintln!(
        "  {}: quiet {} posted ({} shed), e2e p50 {:.1} ms p99 {:.1} ms, lost {}, duplicates {}",
        plan.label,
        quiet_result.posted.posted.len(),
        quiet_result.posted.shed,
        quiet_result.latency.p50,
        quiet_result.latency.p99,
        quiet_result.lost(),
        quiet_result.ledger.duplicates,
    );
    let mut lost = vec![(
        "quiet",
        quiet_result.lost(),
        quiet_result.posted.posted.len(),
    )];
    report.rows.push(quiet_row);
    if let Some((flood, rate)) = &flood_result {
        let label = if plan.slow {
            format!(
                "{}: flood app (endpoint answers in {} ms)",
                plan.label,
                SLOW_ANSWER.as_millis()
            )
        } else {
            format!("{}: flood app", plan.label)
        };
        report.rows.push(flood.row(label, *rate, &ctx.step(*rate)));
        eprintln!(
            "  {}: flood {} posted ({} failed, {} shed), {:.0} deliveries/s in window, e2e p99 {:.1} ms, lost {}, duplicates {}",
            plan.label,
            flood.posted.posted.len(),
            flood.posted.run.failed,
            flood.posted.shed,
            flood.delivered_per_s,
            flood.latency.p99,
            flood.lost(),
            flood.ledger.duplicates,
        );
        lost.push(("flood", flood.lost(), flood.posted.posted.len()));
    }
    for (app, lost, posted) in lost {
        if lost > 0 {
            report.failures.push(format!(
                "{}: ledger of the {app} app does not balance: {posted} accepted, {lost} never delivered",
                plan.label
            ));
        }
    }
    if quiet_result.posted.posted.is_empty() {
        report
            .failures
            .push(format!("{}: the quiet app posted nothing", plan.label));
    }
    Ok(quiet_result.latency.p99)
}

/// Runs the scenario.
pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = ctx.report("fairness");
    let (quiet_rate, flood_rates) = match (&ctx.settings.rates, ctx.smoke()) {
        (Some(rates), _) if rates.len() >= 2 => (rates[0], rates[1..].to_vec()),
        (Some(rates), smoke) if rates.len() == 1 => (
            rates[0],
            if smoke {
                vec![10.0 * rates[0]]
            } else {
                vec![10.0 * rates[0], 600.0]
            },
        ),
        (_, true) => (5.0, vec![50.0]),
        (_, false) => (30.0, vec![300.0, 600.0]),
    };
    let mut plans = Vec::new();
    if !ctx.smoke() {
        plans.push(Plan {
            label: "warm-up (not the baseline)".to_owned(),
            flood_rate: None,
            slow: false,
            warm_up: true,
        });
    }
    plans.push(Plan {
        label: "baseline".to_owned(),
        flood_rate: None,
        slow: false,
        warm_up: false,
    });
    for rate in &flood_rates {
        plans.push(Plan {
            label: format!("flood {:.0}×", rate / quiet_rate),
            flood_rate: Some(*rate),
            slow: false,
            warm_up: false,
        });
    }
    // The slow-endpoint variant at the first flood rate (10× unless --rates says otherwise).
    plans.push(Plan {
        label: format!("slow flood {:.0}×", flood_rates[0] / quiet_rate),
        flood_rate: Some(flood_rates[0]),
        slow: true,
        warm_up: false,
    });

    // Every step's apps first, then one wait: the worker caches webhooks for up to a
    // second, and must see the new ones.
    let mut apps = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        apps.push(set_up_step(ctx, index, plan).await?);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut baseline = None;
    for (plan, apps) in plans.iter().zip(apps) {
        let p99 = run_step(ctx, plan, apps, quiet_rate, &mut report).await?;
        match (baseline, plan.flood_rate) {
            _ if plan.warm_up => {}
            (None, None) => {
                baseline = Some(p99);
                report.headline.insert(
                    format!("quiet app alone at {quiet_rate:.0} msg/s: e2e p99 (ms)"),
                    json!(p99),
                );
            }
            (Some(base), Some(rate)) => {
                let ratio = if base > 0.0 { p99 / base } else { f64::NAN };
                let slow = if plan.slow {
                    format!(", its endpoint answering in {} ms", SLOW_ANSWER.as_millis())
                } else {
                    String::new()
                };
                report.headline.insert(
                    format!(
                        "quiet app's e2e p99 with a flood app at {rate:.0} msg/s{slow} ÷ its baseline (goal ≤ 2)"
                    ),
                    json!((ratio * 100.0).round() / 100.0),
                );
                if let Some(row) = report
                    .rows
                    .iter_mut()
                    .rev()
                    .find(|r| r.label.ends_with("quiet app"))
                {
                    row.extra.insert(
                        "p99 ÷ baseline".to_owned(),
                        json!((ratio * 100.0).round() / 100.0),
                    );
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(if ctx.smoke() { 0 } else { 3 })).await;
    }
    report.notes.push(format!(
        "Two apps per step, each with one webhook on `message:appUser` to a sink port of its own: a quiet app at {quiet_rate:.0} msg/s ({} users) and, after the baseline, a flood app ({} users) at the offered rate. Latency is end to end, from each message's scheduled POST to the sink's receipt (the slow endpoint logs its receipt on arrival and answers {} ms later). CPU (on the quiet app's rows) is per 1,000 deliveries of both apps. `accepted/s` is 201 answers per second of the step; `shed (503)` the POSTs the suite's admission control refused. Every accepted message of both apps must arrive (60 s drain, smoke 30 s, plus the time a slow endpoint needs at {PER_TARGET} deliveries in flight), else the run fails.",
        if ctx.smoke() { 2 } else { 10 },
        if ctx.smoke() { 2 } else { 20 },
        SLOW_ANSWER.as_millis(),
    ));
    Ok(report)
}
