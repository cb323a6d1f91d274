//! What every scenario gets: the API client, the suite's pid and database, the webhook
//! sink, the process watcher, the sizes (smoke or full), and the helpers that turn a step
//! into a table row.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Map;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::load::{Latency, Step, StepRun};
use crate::procstat::{Snapshot, Watched};
use crate::push_sink::PushSink;
use crate::report::{Machine, Report, Row};
use crate::sink::Sink;
use crate::suite::Suite;

/// The command line's settings that scenarios read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tiny sizes.
    pub smoke: bool,
    /// Account key id.
    pub account_key_id: String,
    /// Account secret.
    pub account_secret: String,
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// Seconds per fixed-rate step.
    pub step_seconds: Option<f64>,
    /// Ladder rates.
    pub rates: Option<Vec<f64>>,
    /// Fan-outs of the webhooks scenario.
    pub fan_outs: Option<Vec<u32>>,
    /// Size of the big conversation.
    pub big_conversation: Option<u64>,
}

/// Messages of the `history` app posted before anything is measured
/// ([`Ctx::settle_database`]; a tenth in a smoke run).
pub const HISTORY_MESSAGES: usize = 3_000;

/// App users (each with a device and a conversation) of the `history` app (a tenth in a
/// smoke run): every table the hot path reads holds more rows than a step's apps add, as
/// in a database in service, so no plan chosen from the statistics scans a table.
pub const HISTORY_USERS: usize = 1_000;

/// Shared by the scenarios of one run.
pub struct Ctx {
    /// The command line.
    pub settings: Settings,
    /// The suite's API.
    pub api: Api,
    /// The suite's pids (one for `smooch all`, every role process of a split suite; none
    /// when unknown).
    pub suite_pids: Vec<u32>,
    /// How the suite runs: `smooch all`, `split ×N` or `external`.
    pub suite_mode: String,
    /// The suite's database.
    pub database_url: String,
    /// A prefix for the floor's queue and Redis key.
    pub prefix: String,
    /// The suite binary, for reports.
    pub suite_binary: String,
    /// Where results go.
    pub out: PathBuf,
    /// CPU of the processes.
    pub watched: Watched,
    /// The machine.
    pub machine: Machine,
    /// The webhook sink.
    pub sink: Sink,
    /// The fake FCM the suite's push worker sends to; `None` for a suite the harness did
    /// not start (its push URL is not ours).
    pub push_sink: Option<PushSink>,
    /// `smooch all` runs under callgrind, writing its dumps next to this file.
    pub callgrind: Option<PathBuf>,
    next_step: AtomicU32,
    shutdown: CancellationToken,
}

impl Ctx {
    /// Sets up the context of a run against `suite`.
    pub async fn new(
        settings: &Settings,
        suite: &Suite,
        out: PathBuf,
        push_sink: Option<PushSink>,
    ) -> anyhow::Result<Ctx> {
        let shutdown = CancellationToken::new();
        let sink = Sink::start(16, shutdown.clone()).await?;
        let machine = Machine::describe(&suite.database_url, &settings.redis_url).await;
        Ok(Ctx {
            api: Api::new(
                &suite.bases,
                &settings.account_key_id,
                &settings.account_secret,
            )?,
            suite_pids: suite.watched_pids().iter().map(|(pid, _)| *pid).collect(),
            suite_mode: suite.mode.clone(),
            database_url: suite.database_url.clone(),
            prefix: suite
                .amqp_prefix
                .clone()
                .unwrap_or_else(|| format!("bench-{}", std::process::id())),
            suite_binary: suite.binary.clone(),
            out,
            watched: Watched::new(suite.watched_pids()),
            machine,
            sink,
            push_sink,
            settings: settings.clone(),
            callgrind: suite.callgrind.clone(),
            next_step: AtomicU32::new(1),
            shutdown,
        })
    }

    /// Brings the fresh database the harness started the suite on to a state a database in
    /// service is in before anything is measured: an app (`history`, no webhooks) with
    /// [`HISTORY_USERS`] users and [`HISTORY_MESSAGES`] messages among them, made through
    /// the API; once their events have left the outbox, `ANALYZE`.
    ///
    /// Without it, the suite's connections prepare their statements while the tables are
    /// empty, and Postgres keeps the generic plan it then chose until the table is next
    /// analyzed: a minute or more later with autovacuum, never without it (as on the bench
    /// machine). For the post statement that plan can be a scan of every message of the app
    /// (or of the table) to find the conversation's latest ten: a step then costs Postgres
    /// more the longer it runs, and differently from one start of the suite to the next,
    /// depending on which connections prepared when. `ANALYZE` invalidates the plans
    /// prepared before it; with every table bigger than a step adds to it, no plan chosen
    /// then scans one.
    pub async fn settle_database(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let scale = if self.smoke() { 10 } else { 1 };
        let app = self.api.create_app("history").await?;
        let users = self
            .api
            .init_users(std::slice::from_ref(&app), HISTORY_USERS / scale)
            .await?;
        let messages = HISTORY_MESSAGES / scale;
        let posts =
            (0..messages).map(|i| (users[i % users.len()].1.clone(), format!("history {i}")));
        self.api
            .post_messages(&app, posts, 16)
            .await
            .context("posting the history messages")?;
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.database_url)
            .await
            .context("connecting to the suite's database to analyze it")?;
        // The history's events (its app has no webhooks) are done before the first step.
        let drained_by = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM conversations.outbox WHERE published_at IS NULL",
            )
            .fetch_one(&mut conn)
            .await
            .context("counting the history's events still in the outbox")?;
            if waiting == 0 {
                break;
            }
            if std::time::Instant::now() > drained_by {
                anyhow::bail!(
                    "{waiting} of the history's events were still in the outbox after 30 s"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sqlx::raw_sql("ANALYZE")
            .execute(&mut conn)
            .await
            .context("analyzing the suite's database")?;
        Ok(())
    }

    /// Stops the sink.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A fresh step number for the sink's receipts.
    pub fn step_id(&self) -> u32 {
        self.next_step.fetch_add(1, Ordering::Relaxed)
    }

    /// Smoke or full.
    pub fn smoke(&self) -> bool {
        self.settings.smoke
    }

    /// A fixed-rate step at `rate` of the configured length.
    pub fn step(&self, rate: f64) -> Step {
        let seconds = self
            .settings
            .step_seconds
            .unwrap_or(if self.smoke() { 2.0 } else { 12.0 });
        let duration = Duration::from_secs_f64(seconds);
        Step {
            rate,
            duration,
            // A sixth of the step warms connections and caches up, unrecorded.
            warmup: duration / 6,
            max_in_flight: 1024,
        }
    }

    /// A new report of `scenario` (start time and load average now).
    pub fn report(&self, scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            smoke: self.smoke(),
            started_at: crate::report::now_utc(),
            machine: self.machine.clone(),
            load_average_start: crate::report::load_average(),
            load_average_end: [0.0; 3],
            suite_binary: self.suite_binary.clone(),
            suite_mode: self.suite_mode.clone(),
            suite_peak_rss_mib: None,
            headline: Map::new(),
            rows: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// Stamps the end of a report: load average and the suite's peak RSS (summed over its
    /// processes when split).
    pub fn finish(&self, report: &mut Report) {
        report.load_average_end = crate::report::load_average();
        report.suite_peak_rss_mib = self.suite_memory_mib().map(|(peak, _)| peak);
    }

    /// The suite's (peak, current) RSS in MiB, summed over its processes.
    pub fn suite_memory_mib(&self) -> Option<(f64, f64)> {
        crate::procstat::suite_memory_mib(&self.suite_pids)
    }

    /// CPU counters now.
    pub fn cpu(&self) -> (Snapshot, Instant) {
        (self.watched.snapshot(), Instant::now())
    }

    /// A table row of an open-loop step.
    pub fn step_row(
        &self,
        label: String,
        step: &Step,
        run: &StepRun,
        cpu_before: &(Snapshot, Instant),
    ) -> Row {
        let after = self.watched.snapshot();
        let seconds = cpu_before.1.elapsed().as_secs_f64();
        // Every request of the step (warm-up included) cost the CPU measured.
        let (cpu, host) = self
            .watched
            .cost(&cpu_before.0, &after, run.ok + run.failed, seconds);
        Row {
            label,
            offered: format!("{:.0}/s", step.rate),
            achieved_per_s: run.achieved_rate(step),
            ok: run.recorded_ok,
            failed: run.recorded_failed,
            latency: Latency::of(&run.histogram),
            cpu,
            host,
            extra: Map::new(),
        }
    }
}

/// Whether a step held the latency objective: p99 within `p99_ms`, at most 0.1% failed,
/// and at least 95% of the offered rate achieved.
pub fn held(row: &Row, rate: f64, p99_ms: f64) -> bool {
    let total = (row.ok + row.failed).max(1) as f64;
    row.latency.p99 <= p99_ms
        && (row.failed as f64) / total <= 0.001
        && row.achieved_per_s >= 0.95 * rate
}

/// Whether a step was so far past saturation that higher rates are pointless.
pub fn saturated(row: &Row, rate: f64) -> bool {
    row.latency.p99 > 2_000.0 || row.achieved_per_s < 0.8 * rate
}
