//! Results: one JSON file and one markdown table per scenario under the output directory,
//! with the machine and the conditions they were taken under, and `summary.md` gathering
//! the tables of every scenario run so far.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::load::Latency;
use crate::procstat::CpuCost;

/// The machine the numbers were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online cores.
    pub cores: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// `uname -sr`.
    pub kernel: String,
    /// `SELECT version()`.
    pub postgres: String,
    /// Redis `redis_version`.
    pub redis: String,
    /// RabbitMQ's Debian package version.
    pub rabbitmq: String,
    /// The CPU time of the host pace probe's unit when the harness started, in µs: the
    /// reference of every row's `speed %` ([`crate::pace`]), comparable between runs of
    /// the same harness.
    pub pace_unit_us: Option<f64>,
    /// The CPU of the probe's wake-up round trip between two threads at the start, in µs:
    /// the reference of every row's wake-up speed.
    pub pace_wake_us: Option<f64>,
}

/// The load average, to tell a quiet machine from a busy one.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    /// Describes this machine and its servers.
    pub async fn describe(database_url: &str, redis_url: &str) -> Machine {
        let (pace_unit_us, pace_wake_us) = crate::pace::reference_us();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
            .unwrap_or(0.0);
        let postgres = async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(database_url).await.ok()?;
            sqlx::query_scalar::<_, String>("SELECT version()")
                .fetch_one(&mut conn)
                .await
                .ok()
        }
        .await
        .unwrap_or_default();
        let redis = async {
            let client = redis::Client::open(redis_url).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_owned())
        }
        .await
        .unwrap_or_default();
        Machine {
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_gib,
            kernel: command_output("uname", &["-sr"]),
            postgres: postgres.split(" on ").next().unwrap_or_default().to_owned(),
            redis,
            rabbitmq: command_output("dpkg-query", &["-W", "-f=${Version}", "rabbitmq-server"]),
            pace_unit_us,
            pace_wake_us,
        }
    }
}

/// One row of a scenario's table: a fixed-rate step or a floor measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What the row measures.
    pub label: String,
    /// Operations started per second (open loop), or the concurrency (closed loop).
    pub offered: String,
    /// Operations completed per second.
    pub achieved_per_s: f64,
    /// Completed operations (after warm-up).
    pub ok: u64,
    /// Failed operations (after warm-up).
    pub failed: u64,
    /// Latency of the completed operations.
    pub latency: Latency,
    /// CPU seconds per 1,000 operations of each process.
    pub cpu: Vec<CpuCost>,
    /// The host over the same interval: steal and speeds ([`crate::procstat::Host`]),
    /// flattened into the row.
    #[serde(flatten)]
    pub host: crate::procstat::Host,
    /// Scenario-specific figures.
    pub extra: Map<String, Value>,
}

/// A scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// A smoke run (tiny sizes; its speeds mean nothing).
    pub smoke: bool,
    /// When the run started (UTC).
    pub started_at: String,
    /// The machine.
    pub machine: Machine,
    /// Load average at the start and at the end of the run.
    pub load_average_start: [f64; 3],
    /// Load average at the end.
    pub load_average_end: [f64; 3],
    /// The suite binary that ran.
    pub suite_binary: String,
    /// How the suite ran: `smooch all`, `split ×N` (one process per role, N of each) or
    /// `external`.
    pub suite_mode: String,
    /// Peak RSS of the suite in MiB (VmHWM), when its pids are known: of `smooch all`, or
    /// summed over the processes of a split suite (each process's own peak).
    pub suite_peak_rss_mib: Option<f64>,
    /// The headline figures, by name.
    pub headline: Map<String, Value>,
    /// The table.
    pub rows: Vec<Row>,
    /// Why the run failed, if it did (a ledger that does not balance, errors).
    pub failures: Vec<String>,
    /// Free-form notes on how to read the numbers.
    pub notes: Vec<String>,
    /// Further markdown tables of the scenario (a comparison), printed after the main one.
    pub tables: Vec<String>,
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A figure with `decimals` decimals, or a dash when there is none, as the tables print
/// figures.
pub(crate) fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "–".to_owned())
}

fn cpu_of(row: &Row, process: &str) -> String {
    figure_of(row, process, cpu_text)
}

/// CPU seconds per 1,000 operations, as the tables print them.
fn cpu_text(c: &crate::procstat::CpuCost) -> String {
    format!("{:.3}", c.per_1000_ops)
}

fn figure_of(
    row: &Row,
    process: &str,
    figure: impl Fn(&crate::procstat::CpuCost) -> String,
) -> String {
    row.cpu
        .iter()
        .find(|c| c.process == process)
        .map(figure)
        .unwrap_or_else(|| "–".to_owned())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Report {
    /// The markdown section of this report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "### {}{}\n",
            self.scenario,
            if self.smoke { " (smoke)" } else { "" }
        );
        let _ = writeln!(
            md,
            "Run {} on {} cores ({}), {} GiB; {}; {}; Redis {}; RabbitMQ {}. Load average at start {:.2}, at end {:.2}{}. Suite: `{}` ({}){}.\n",
            self.started_at,
            self.machine.cores,
            self.machine.cpu,
            self.machine.memory_gib,
            self.machine.kernel,
            self.machine.postgres,
            self.machine.redis,
            self.machine.rabbitmq,
            self.load_average_start[0],
            self.load_average_end[0],
            self.machine
                .pace_unit_us
                .map(|unit| format!(
                    "; the host pace probe's unit took {unit:.0} µs of CPU at start{} (speed 100 %)",
                    self.machine
                        .pace_wake_us
                        .map(|wake| format!(", a wake-up round trip {wake:.1} µs"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default(),
            self.suite_binary,
            self.suite_mode,
            self.suite_peak_rss_mib
                .map(|r| format!(", peak RSS {r:.0} MiB"))
                .unwrap_or_default(),
        );
        // Objects in the headline are figures for other scenarios to read, not for people.
        for (k, v) in self.headline.iter().filter(|(_, v)| !v.is_object()) {
            let _ = writeln!(md, "- **{k}**: {}", value_text(v));
        }
        if !self.headline.is_empty() {
            md.push('\n');
        }
        md.push_str(
            "| step | offered | achieved/s | ok | failed | p50 ms | p99 ms | p99.9 ms | max ms | CPU s/1k ops: smooch | bench | postgres | rabbitmq | redis | steal % | speed %: cores | wake-ups | notes |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let notes = r
                .extra
                .iter()
                .map(|(k, v)| format!("{k} {}", value_text(v)))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                r.offered,
                r.achieved_per_s,
                r.ok,
                r.failed,
                ms(r.latency.p50),
                ms(r.latency.p99),
                ms(r.latency.p999),
                ms(r.latency.max),
                cpu_of(r, "smooch"),
                cpu_of(r, "bench"),
                cpu_of(r, "postgres"),
                cpu_of(r, "rabbitmq"),
                cpu_of(r, "redis"),
                figure(r.host.steal_percent, 1),
                figure(r.host.speed_percent, 0),
                figure(r.host.wake_speed_percent, 0),
                notes,
            );
        }
        self.role_table(&mut md);
        for table in &self.tables {
            md.push('\n');
            md.push_str(table);
            if !table.ends_with('\n') {
                md.push('\n');
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\n**FAILED**:");
            for f in &self.failures {
                let _ = writeln!(md, "- {f}");
            }
        }
        if !self.notes.is_empty() {
            md.push('\n');
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }

    /// The "CPU per op by role" and "Wake-ups per op by role" tables of a split suite's
    /// rows: each role's processes' CPU seconds per 1,000 operations, and the times their
    /// threads went to sleep and were woken per operation (nothing when no row has
    /// per-role figures).
    fn role_table(&self, md: &mut String) {
        self.role_figures(
            md,
            "CPU per op by role (CPU s/1k ops of each role's processes, summed over replicas):",
            cpu_text,
        );
        self.role_figures(
            md,
            "Wake-ups per op by role (times a thread of each role's processes went to sleep and was woken, per op, summed over replicas):",
            |c| format!("{:.2}", c.wakeups_per_op),
        );
    }

    fn role_figures(
        &self,
        md: &mut String,
        title: &str,
        figure: impl Fn(&crate::procstat::CpuCost) -> String,
    ) {
        let roles: Vec<&str> = crate::suite::SPLIT_ROLES
            .into_iter()
            .filter(|role| {
                self.rows.iter().any(|r| {
                    r.cpu
                        .iter()
                        .any(|c| crate::procstat::group_role(c.process) == Some(role))
                })
            })
            .collect();
        if roles.is_empty() {
            return;
        }
        let _ = writeln!(md, "\n{title}\n");
        let _ = writeln!(md, "| step | {} | smooch (all roles) |", roles.join(" | "));
        let _ = writeln!(md, "|---|{}---|", "---|".repeat(roles.len()));
        for r in self.rows.iter().filter(|r| {
            r.cpu
                .iter()
                .any(|c| crate::procstat::group_role(c.process).is_some())
        }) {
            let cells: Vec<String> = roles
                .iter()
                .map(|role| figure_of(r, crate::procstat::role_group(role), &figure))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                r.label,
                cells.join(" | "),
                figure_of(r, "smooch", &figure)
            );
        }
    }

    /// Writes `<scenario>.json` and `<scenario>.md` into `dir` and refreshes `summary.md`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join(format!("{}.json", self.scenario)), json)?;
        std::fs::write(dir.join(format!("{}.md", self.scenario)), self.markdown())?;
        let mut summary = String::from(
            "# Benchmark results\n\nWritten by `cargo run --release -p bench -- <scenario>`; each section is the latest run of its scenario (see bench/README.md).\n\n",
        );
        for name in crate::SCENARIOS.iter().chain(&crate::OTHER_SCENARIOS) {
            if let Ok(section) = std::fs::read_to_string(dir.join(format!("{name}.md"))) {
                summary.push_str(&section);
                summary.push('\n');
            }
        }
        std::fs::write(dir.join("summary.md"), summary)?;
        Ok(())
    }
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}
