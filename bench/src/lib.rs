//! `bench`: the smooch suite's load harness. Starts `smooch all` as a child process (or the
//! suite split into one process per role with `--split`, or targets a running suite with
//! `--url`), drives one scenario or all of them with open-loop load, and writes JSON,
//! markdown tables and plots under `bench/results/`.
//!
//! `cargo run --release -p bench -- all` reproduces the whole table; `--smoke` runs every
//! scenario at a tiny size (what CI does): it must complete and balance its ledgers, and
//! says nothing about speed.

pub mod api;
pub mod callgrind;
pub mod context;
pub mod floor;
pub mod load;
pub mod pace;
pub mod plot;
pub mod procstat;
pub mod push_sink;
pub mod report;
pub mod scenarios;
pub mod sink;
pub mod suite;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

/// Every scenario, in the order `all` runs them (the retry storm last: its retries go on
/// for half a minute after it ends).
pub const SCENARIOS: [&str; 8] = [
    "floor",
    "post-message",
    "read-conversation",
    "realtime",
    "webhooks",
    "fairness",
    "push",
    "retry-storm",
];

/// Reports of runs against suites of their own, which `summary.md` lists after the
/// others: `webhooks-split` (the webhooks smoke steps against the split suite, two
/// processes of each role, at the end of `all --smoke`) and `split-compare`.
pub const OTHER_SCENARIOS: [&str; 2] = ["webhooks-split", "split-compare"];

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
    /// Two apps: a quiet one at a fixed rate, alone, then beside a flood app at 10× its
    /// rate and at a rate that saturates the machine, then beside a flood app whose
    /// endpoint is slow: the quiet app's post-to-sink latency against its baseline.
    Fairness,
    /// The webhooks fan-out-1 ladder once against `smooch all` and once against the split
    /// suite (`--replicas N` of each role), at the same rates: p99 and CPU per message side
    /// by side. Not part of `all`.
    SplitCompare,
    /// The instructions `smooch all` executes per message at fan-out 1, and by crate,
    /// counted under valgrind's callgrind at a low rate: the same binary counts the same
    /// within a fraction of a percent, so two builds compare where CPU time is too noisy.
    /// Not part of `all`; needs valgrind.
    Instructions,
    /// The other end of the floor's HTTP round trip, which the floor starts as a process of
    /// its own: answers `GET /` on a loopback port it prints, until its input closes.
    #[value(hide = true)]
    EchoServer,
}

/// Load harness of the smooch suite.
#[derive(Debug, Clone, Parser)]
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
    /// Start the suite as one process per role (users, conversations, media, webhooks,
    /// webhook-worker, push, gateway) instead of `smooch all`.
    #[arg(long, conflicts_with = "url")]
    pub split: bool,
    /// With --split: processes of each role (default 1). Replica r of each role calls
    /// replica r of the services it uses; the load goes round-robin over the gateways.
    /// With split-compare: the split side's replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub replicas: u32,
    /// With --split or split-compare: `SMOOCH_WORKER_THREADS` of every split process, as
    /// for pods of that many CPUs (default: the runtime's own, a thread per core).
    /// `smooch all` keeps its default.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub split_worker_threads: Option<u32>,
    /// With split-compare: run both sides this many times, alternating (all, split, all,
    /// split, ...), and compare the medians: one run of each side differs from the next by
    /// more than the 15 % the comparison looks for.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub rounds: u32,
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
    #[arg(long, value_parser = above_zero)]
    pub step_seconds: Option<f64>,
    /// Rates of the ladders (message rates for webhooks and split-compare), comma-separated.
    /// For fairness: the quiet app's rate first, then the flood app's rates.
    #[arg(long, value_delimiter = ',', value_parser = above_zero)]
    pub rates: Option<Vec<f64>>,
    /// Fan-outs of the webhooks scenario, comma-separated (default 1,10).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..))]
    pub fan_outs: Option<Vec<u32>>,
    /// Messages of the big conversation of read-conversation (default 100000, smoke 2000).
    #[arg(long)]
    pub big_conversation: Option<u64>,
}

/// A rate or a length: a finite number above 0 (a schedule at 0 per second never ends).
fn above_zero(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(number) if number.is_finite() && number > 0.0 => Ok(number),
        Ok(_) => Err(format!("{value} is not a finite number above 0")),
        Err(_) => Err(format!("{value} is not a number")),
    }
}

/// Runs `cli`: starts (or reaches) the suite, runs the scenarios, writes the results,
/// stops the suite; fails when a scenario failed.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.scenario == Scenario::EchoServer {
        return floor::serve_echo().await;
    }
    // The probe's reference takes some 30 ms of work: off the runtime's threads.
    tokio::task::spawn_blocking(pace::start)
        .await
        .context("the host pace probe's start panicked")?;
    let root = suite::workspace_root();
    let out = cli.out.clone().unwrap_or_else(|| {
        if cli.smoke {
            root.join("target").join("bench-smoke")
        } else {
            root.join("bench").join("results")
        }
    });
    std::fs::create_dir_all(&out)?;
    let splits = cli.split || cli.scenario == Scenario::SplitCompare;
    if cli.replicas > 1 && !splits {
        bail!("--replicas needs --split (or the split-compare scenario)");
    }
    if cli.split_worker_threads.is_some() && !splits {
        bail!("--split-worker-threads needs --split (or the split-compare scenario)");
    }
    if cli.rounds > 1 && cli.scenario != Scenario::SplitCompare {
        bail!("--rounds is for the split-compare scenario");
    }
    if cli.scenario == Scenario::SplitCompare {
        return split_compare(&cli, &out).await;
    }
    if cli.scenario == Scenario::Instructions && (cli.url.is_some() || cli.split) {
        bail!("instructions starts its own `smooch all` under callgrind: it cannot run against --url or --split");
    }
    let scenarios: Vec<&str> = match cli.scenario {
        Scenario::All => SCENARIOS.to_vec(),
        Scenario::Floor => vec!["floor"],
        Scenario::PostMessage => vec!["post-message"],
        Scenario::ReadConversation => vec!["read-conversation"],
        Scenario::Realtime => vec!["realtime"],
        Scenario::Webhooks => vec!["webhooks"],
        Scenario::Fairness => vec!["fairness"],
        Scenario::Push => vec!["push"],
        Scenario::RetryStorm => vec!["retry-storm"],
        Scenario::Instructions => vec!["instructions"],
        Scenario::SplitCompare | Scenario::EchoServer => Vec::new(),
    };
    let session = Session::start(&cli, &out, cli.split.then_some(cli.replicas)).await?;
    let mut failed = Vec::new();
    for name in scenarios {
        eprintln!("== {name}{}", if cli.smoke { " (smoke)" } else { "" });
        let started = std::time::Instant::now();
        let result = scenarios::run(name, &session.ctx).await;
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
    session.stop(&cli).await?;
    // The smoke run also checks that the suite works split, two processes of each role
    // with one runtime thread each (the current-thread scheduler, as pods of one CPU run):
    // the webhooks steps again (~10 s with the start and stop).
    if cli.smoke && cli.scenario == Scenario::All && cli.url.is_none() && !cli.split {
        let name = "webhooks-split";
        eprintln!("== {name} (smoke)");
        let started = std::time::Instant::now();
        let split = Cli {
            split_worker_threads: Some(1),
            ..cli.clone()
        };
        let session = Session::start(&split, &out, Some(2)).await?;
        match scenarios::run("webhooks", &session.ctx).await {
            Ok(mut report) => {
                report.scenario = name.to_owned();
                report.write(&out)?;
                eprintln!("{}", report.markdown());
                if !report.failures.is_empty() {
                    failed.push(format!("{name}: {}", report.failures.join("; ")));
                }
            }
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
        session.stop(&cli).await?;
        eprintln!(
            "== {name} took {:.1} s (start and stop included)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("results in {}", out.display());
    if !failed.is_empty() {
        bail!("the bench failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// A started (or reached) suite with the context scenarios run in.
struct Session {
    suite: suite::Suite,
    ctx: context::Ctx,
    push_stop: tokio_util::sync::CancellationToken,
}

impl Session {
    /// Starts the fake FCM and the suite (`smooch all`, or split with `replicas` of each
    /// role), and the context (webhook sink, process watcher) of its scenarios.
    async fn start(
        cli: &Cli,
        out: &std::path::Path,
        replicas: Option<u32>,
    ) -> anyhow::Result<Self> {
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
            replicas,
            split_worker_threads: cli.split_worker_threads,
            callgrind: (cli.scenario == Scenario::Instructions)
                .then(callgrind_out_file)
                .transpose()?,
        })
        .await?;
        let pushes = cli.url.is_none().then_some(push_sink);
        let ctx = context::Ctx::new(&cli_settings(cli), &suite, out.to_path_buf(), pushes).await?;
        // A suite the harness started has an empty database: settle it as one in service.
        // Not under callgrind, where the instructions counted per message do not depend on
        // Postgres's plans and the history's 3,000 posts would take minutes.
        if cli.url.is_none() && cli.scenario != Scenario::Instructions {
            ctx.settle_database().await?;
        }
        Ok(Session {
            suite,
            ctx,
            push_stop,
        })
    }

    /// Stops the sinks and the suite and cleans up its queues and keys.
    async fn stop(self, cli: &Cli) -> anyhow::Result<()> {
        // Give in-flight retries a moment, then stop the suite and clean up.
        self.ctx.shutdown();
        self.push_stop.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.suite.stop(&cli.amqp_url, &cli.redis_url).await
    }
}

/// `split-compare`: the webhooks fan-out-1 ladder against `smooch all`, then against the
/// split suite with `--replicas` of each role, `--rounds` times in turn, and the comparison
/// table of the medians.
async fn split_compare(cli: &Cli, out: &std::path::Path) -> anyhow::Result<()> {
    if cli.url.is_some() {
        bail!("split-compare starts its own suites: it cannot run against --url");
    }
    let started = std::time::Instant::now();
    // The machine's cost of one hop between processes at the ladder's rates, measured while
    // no suite runs.
    let rates = scenarios::fan_out_one_rates(cli.smoke, cli.rates.as_deref());
    let (hops, echo_server_us) = scenarios::hop_table(&rates, cli.smoke).await?;
    let (mut all, mut split) = (Vec::new(), Vec::new());
    for round in 1..=cli.rounds {
        for replicas in [None, Some(cli.replicas)] {
            let session = Session::start(cli, out, replicas).await?;
            eprintln!(
                "== split-compare, round {round} of {}: webhooks × 1 against {}{}",
                cli.rounds,
                session.suite.mode,
                if cli.smoke { " (smoke)" } else { "" }
            );
            let result = scenarios::webhooks_fan_out_one(&session.ctx).await;
            session.stop(cli).await?;
            match replicas {
                None => all.push(result?),
                Some(_) => split.push(result?),
            }
        }
    }
    let mut report = scenarios::split_compare::compare(all, split, &echo_server_us)?;
    report.tables.push(hops);
    report.write(out)?;
    eprintln!("{}", report.markdown());
    eprintln!(
        "== split-compare took {:.1} s\nresults in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if !report.failures.is_empty() {
        bail!(
            "the bench failed:\n  split-compare: {}",
            report.failures.join("; ")
        );
    }
    Ok(())
}

/// Where the suite under callgrind writes its dumps: a directory of this run's own in the
/// temporary directory (the dumps are megabytes; results directories are committed).
fn callgrind_out_file() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("smooch-callgrind-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("callgrind.out"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the bench with `args` and returns its error: each of these is refused before
    /// any suite starts.
    async fn refused(args: &[&str]) -> String {
        let out = std::env::temp_dir().join(format!("bench-cli-{}", std::process::id()));
        let out = out.to_str().expect("a UTF-8 temporary directory");
        let cli = Cli::try_parse_from(["bench"].iter().chain(args).chain(&["--out", out]))
            .expect("the arguments parse");
        let error = run(cli).await.expect_err("the options are refused");
        let _ = std::fs::remove_dir_all(out);
        error.to_string()
    }

    #[tokio::test]
    async fn split_only_options_are_refused_without_a_split_suite() {
        assert_eq!(
            refused(&["webhooks", "--replicas", "2"]).await,
            "--replicas needs --split (or the split-compare scenario)"
        );
        assert_eq!(
            refused(&["webhooks", "--split-worker-threads", "1"]).await,
            "--split-worker-threads needs --split (or the split-compare scenario)"
        );
        assert_eq!(
            refused(&["webhooks", "--split", "--rounds", "3"]).await,
            "--rounds is for the split-compare scenario"
        );
        assert_eq!(
            refused(&["split-compare", "--url", "http://127.0.0.1:1"]).await,
            "split-compare starts its own suites: it cannot run against --url"
        );
        for args in [
            &["instructions", "--url", "http://127.0.0.1:1"][..],
            &["instructions", "--split"][..],
        ] {
            assert_eq!(
                refused(args).await,
                "instructions starts its own `smooch all` under callgrind: it cannot run against --url or --split"
            );
        }
    }

    #[test]
    fn rounds_and_threads_outside_their_range_do_not_parse() {
        for args in [
            ["split-compare", "--rounds", "0"],
            ["split-compare", "--rounds", "10"],
            ["split-compare", "--split-worker-threads", "0"],
        ] {
            let error = Cli::try_parse_from(["bench"].iter().chain(&args))
                .expect_err("out of range")
                .to_string();
            assert!(error.contains("not in"), "{args:?}: {error}");
        }
    }

    #[test]
    fn rates_and_lengths_must_be_above_zero() {
        // A zero rate made a step's schedule endless and panicked in `Duration`.
        for (args, expected) in [
            (
                ["instructions", "--rates", "0"],
                "0 is not a finite number above 0",
            ),
            (
                ["webhooks", "--rates", "500,-1"],
                "-1 is not a finite number above 0",
            ),
            (
                ["fairness", "--rates", "inf"],
                "inf is not a finite number above 0",
            ),
            (["webhooks", "--rates", "fast"], "fast is not a number"),
            (
                ["post-message", "--step-seconds", "0"],
                "0 is not a finite number above 0",
            ),
        ] {
            let error = Cli::try_parse_from(["bench"].iter().chain(&args))
                .expect_err("refused")
                .to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
        let error = Cli::try_parse_from(["bench", "webhooks", "--fan-outs", "1,0"])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("not in"), "{error}");
        let cli = Cli::try_parse_from(["bench", "webhooks", "--rates", "500,1.5"]).expect("parses");
        assert_eq!(cli.rates, Some(vec![500.0, 1.5]));
    }
}
