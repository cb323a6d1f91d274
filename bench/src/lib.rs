//! `bench`: the smooch suite's load harness. Starts `smooch all` as a child process (or
//! targets a running suite with `--url`), drives one scenario or all of them with open-loop
//! load, and writes JSON, markdown tables and plots under `bench/results/`.
//!
//! `cargo run --release -p bench -- all` reproduces the whole table; `--smoke` runs every
//! scenario at a tiny size (what CI does): it must complete and balance its ledgers, and
//! says nothing about speed.

pub mod api;
pub mod context;
pub mod floor;
pub mod load;
pub mod plot;
pub mod procstat;
pub mod push_sink;
pub mod report;
pub mod scenarios;
pub mod sink;
pub mod suite;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};

/// Every scenario, in the order `all` runs them (the retry storm last: its retries go on
/// for half a minute after it ends).
pub const SCENARIOS: [&str; 7] = [
    "floor",
    "post-message",
    "read-conversation",
    "realtime",
    "webhooks",
    "push",
    "retry-storm",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every scenario below, in order.
    All,
    /// Raw cost of the dependencies: Postgres insert+commit, confirmed AMQP publish, Redis GET.
    Floor,
    /// App-token POST of a 200-byte appUser message, many users of many apps.
    PostMessage,
    /// GET of a conversation page, from conversations of 10, 100 and 100,000 messages.
    ReadConversation,
    /// Long-polling Bayeux clients on /faye receiving REST-posted messages: connections
    /// held, deliveries/s, p99 publish-to-receive.
    Realtime,
    /// Messages fanned out to 1 and 10 webhooks per app, delivered to a local sink.
    Webhooks,
    /// App-maker messages pushed to one device each (fan-out 1) through the push worker
    /// to a fake FCM in the harness: pushes/s and post-to-push latency.
    Push,
    /// 20% of the webhook targets answer 500: the healthy ones' latency.
    RetryStorm,
}

/// Load harness of the smooch suite.
#[derive(Debug, Parser)]
#[command(name = "bench")]
pub struct Cli {
    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Tiny sizes, a few seconds per scenario: checks that the scenario completes and its
    /// ledger balances (what CI runs). Writes to target/bench-smoke unless --out is given.
    #[arg(long)]
    pub smoke: bool,
    /// Target a suite already running at this base URL (such as http://127.0.0.1:8080)
    /// instead of starting one; it must accept the account key given below and have rate
    /// limits off.
    #[arg(long)]
    pub url: Option<String>,
    /// The running suite's pid (with --url), for its CPU and memory.
    #[arg(long)]
    pub suite_pid: Option<u32>,
    /// Build and run the debug binary (faster to build, slower to run: for smoke runs in
    /// CI, where the debug build already exists).
    #[arg(long)]
    pub debug: bool,
    /// Run this smooch binary instead of building one.
    #[arg(long)]
    pub smooch_bin: Option<PathBuf>,
    /// The suite's database. The harness drops and recreates it when it starts the suite,
    /// and refuses a name without "bench".
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/smooch_bench"
    )]
    pub database_url: String,
    /// RabbitMQ, for the floor and clean-up.
    #[arg(
        long,
        env = "BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Redis, for the floor and clean-up.
    #[arg(
        long,
        env = "BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// The account key id (the harness configures the child with it).
    #[arg(
        long,
        env = "BENCH_ACCOUNT_KEY_ID",
        default_value = "bench-account-key"
    )]
    pub account_key_id: String,
    /// The account key's secret.
    #[arg(
        long,
        env = "BENCH_ACCOUNT_SECRET",
        default_value = "bench-account-secret"
    )]
    pub account_secret: String,
    /// Where results go (default bench/results, or target/bench-smoke with --smoke).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds of each fixed-rate step (default 12, smoke 2).
    #[arg(long)]
    pub step_seconds: Option<f64>,
    /// Rates of the ladders (message rates for webhooks), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Fan-outs of the webhooks scenario, comma-separated (default 1,10).
    #[arg(long, value_delimiter = ',')]
    pub fan_outs: Option<Vec<u32>>,
    /// Messages of the big conversation of read-conversation (default 100000, smoke 2000).
    #[arg(long)]
    pub big_conversation: Option<u64>,
}

/// Runs `cli`: starts (or reaches) the suite, runs the scenarios, writes the results,
/// stops the suite; fails when a scenario failed.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let root = suite::workspace_root();
    let out = cli.out.clone().unwrap_or_else(|| {
        if cli.smoke {
            root.join("target").join("bench-smoke")
        } else {
            root.join("bench").join("results")
        }
    });
    std::fs::create_dir_all(&out)?;
    let scenarios: Vec<&str> = match cli.scenario {
        Scenario::All => SCENARIOS.to_vec(),
        Scenario::Floor => vec!["floor"],
        Scenario::PostMessage => vec!["post-message"],
        Scenario::ReadConversation => vec!["read-conversation"],
        Scenario::Realtime => vec!["realtime"],
        Scenario::Webhooks => vec!["webhooks"],
        Scenario::Push => vec!["push"],
        Scenario::RetryStorm => vec!["retry-storm"],
    };
    // The push worker of a suite the harness starts sends to a fake FCM in this process.
    let push_stop = tokio_util::sync::CancellationToken::new();
    let push_sink = push_sink::PushSink::start(push_stop.clone()).await?;
    let suite = suite::Suite::start(&suite::Options {
        url: cli.url.clone(),
        suite_pid: cli.suite_pid,
        database_url: cli.database_url.clone(),
        account_key_id: cli.account_key_id.clone(),
        account_secret: cli.account_secret.clone(),
        debug: cli.debug,
        smooch_bin: cli.smooch_bin.clone(),
        log_path: out.join("smooch.log"),
        env: vec![("SMOOCH_PUSH_FCM_URL".to_owned(), push_sink.base())],
    })
    .await?;
    let pushes = cli.url.is_none().then_some(push_sink);
    let ctx = context::Ctx::new(&cli_settings(&cli), &suite, out.clone(), pushes).await?;
    let mut failed = Vec::new();
    for name in scenarios {
        eprintln!("== {name}{}", if cli.smoke { " (smoke)" } else { "" });
        let started = std::time::Instant::now();
        let result = scenarios::run(name, &ctx).await;
        match result {
            Ok(report) => {
                report.write(&out)?;
                eprintln!("{}", report.markdown());
                if !report.failures.is_empty() {
                    failed.push(format!("{name}: {}", report.failures.join("; ")));
                }
            }
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
        eprintln!("== {name} took {:.1} s", started.elapsed().as_secs_f64());
    }
    // Give in-flight retries a moment, then stop the suite and clean up.
    ctx.shutdown();
    push_stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    suite.stop(&cli.amqp_url, &cli.redis_url).await?;
    eprintln!("results in {}", out.display());
    if !failed.is_empty() {
        bail!("the bench failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

fn cli_settings(cli: &Cli) -> context::Settings {
    context::Settings {
        smoke: cli.smoke,
        account_key_id: cli.account_key_id.clone(),
        account_secret: cli.account_secret.clone(),
        amqp_url: cli.amqp_url.clone(),
        redis_url: cli.redis_url.clone(),
        step_seconds: cli.step_seconds,
        rates: cli.rates.clone(),
        fan_outs: cli.fan_outs.clone(),
        big_conversation: cli.big_conversation,
    }
}
