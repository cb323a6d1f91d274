//! The suite under test: a `smooch all` child process that the harness builds and starts
//! against a dedicated database and its own AMQP/Redis prefixes; or the same suite split
//! into one process per role (`--split`, `--replicas N` of each); or a suite already running
//! at `--url`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use sqlx::{Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

/// How to reach (or start) the suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// A running suite's base URL; `None` starts a child.
    pub url: Option<String>,
    /// The running suite's pid, for its CPU and memory.
    pub suite_pid: Option<u32>,
    /// The suite's database (created fresh when the harness starts the suite).
    pub database_url: String,
    /// The account key id the suite accepts.
    pub account_key_id: String,
    /// Its secret.
    pub account_secret: String,
    /// Build and run the debug binary instead of the release one.
    pub debug: bool,
    /// A prebuilt binary to run instead of building one.
    pub smooch_bin: Option<PathBuf>,
    /// Where the child's log goes.
    pub log_path: PathBuf,
    /// Extra `SMOOCH_*` variables for the child.
    pub env: Vec<(String, String)>,
    /// `Some(n)`: start the suite split, one process per role, `n` of each, instead of
    /// `smooch all`.
    pub replicas: Option<u32>,
    /// With `replicas`: `SMOOCH_WORKER_THREADS` of every process (`None`: the default).
    pub split_worker_threads: Option<u32>,
    /// Run `smooch all` under valgrind's callgrind, its dumps written to this file's
    /// numbered siblings (see [`crate::callgrind`]).
    pub callgrind: Option<PathBuf>,
}

/// The roles of a split suite, in start order: the gateway last, behind the services it
/// calls. The same roles `smooch all` runs in one process.
pub const SPLIT_ROLES: [&str; 7] = [
    "users",
    "conversations",
    "media",
    "webhooks",
    "webhook-worker",
    "push",
    "gateway",
];

/// The roles that serve gRPC.
const GRPC_ROLES: [&str; 4] = ["users", "conversations", "media", "webhooks"];

/// The key that seals integration secrets in a split suite: `smooch all` falls back to the
/// public development key by itself, a split `smooch users` must be given one, so the
/// harness gives it the same (the base64 of `smooch-insecure-development-key!`).
const DEVELOPMENT_SECRETS_KEY: &str = "c21vb2NoLWluc2VjdXJlLWRldmVsb3BtZW50LWtleSE=";

/// One process of a split suite.
#[derive(Debug, Clone)]
pub struct RoleProcess {
    /// Its role, one of [`SPLIT_ROLES`].
    pub role: &'static str,
    /// Which replica of the role (0-based).
    pub replica: u32,
    /// Its pid.
    pub pid: u32,
}

/// A suite to send load to.
pub struct Suite {
    /// Every gateway's base URL, `http://127.0.0.1:PORT` (one but with `--split --replicas
    /// N`; never none); the load is spread over them round-robin.
    pub bases: Vec<String>,
    /// The pid of `smooch all`, when known.
    pub pid: Option<u32>,
    /// The processes of a split suite (empty otherwise).
    pub processes: Vec<RoleProcess>,
    /// How the suite runs, for the report: `smooch all`, `split ×N` or `external`.
    pub mode: String,
    /// Its database.
    pub database_url: String,
    /// Its AMQP prefix (for cleaning up the queues it declared).
    pub amqp_prefix: Option<String>,
    /// Its Redis prefix.
    pub redis_prefix: Option<String>,
    /// The binary it runs (debug or release), for the report.
    pub binary: String,
    /// `smooch all` runs under callgrind, writing its dumps next to this file.
    pub callgrind: Option<PathBuf>,
    children: Vec<Child>,
}

/// The database name of a Postgres URL (the path's last segment, before any query).
fn database_name(url: &str) -> anyhow::Result<(String, String)> {
    let (base, rest) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("database URL {url:?} has no database name"))?;
    let name = rest.split('?').next().unwrap_or(rest).to_owned();
    if name.is_empty() {
        bail!("database URL {url:?} has no database name");
    }
    Ok((base.to_owned(), name))
}

/// Drops and recreates the bench database, so every run starts from the same empty state.
/// Refuses any database whose name does not say `bench`.
async fn recreate_database(url: &str) -> anyhow::Result<()> {
    let (base, name) = database_name(url)?;
    if !name.contains("bench") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("refusing to drop database {name:?}: the bench only drops a database whose name contains \"bench\"");
    }
    let mut conn = PgConnection::connect(&format!("{base}/postgres"))
        .await
        .context("connecting to Postgres to recreate the bench database")?;
    // The name is checked above to be [A-Za-z0-9_]: DDL cannot take bind parameters.
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Builds the `smooch` binary with cargo and returns its path.
async fn build_smooch(debug: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--bin",
        "smooch",
        "--message-format=json-render-diagnostics",
    ]);
    if !debug {
        cmd.arg("--release");
    }
    // Build from the workspace root whatever the current directory.
    cmd.current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "building smooch ({})",
        if debug { "debug" } else { "release" }
    );
    let output = cmd.output().await.context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build of smooch failed");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines().rev() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "smooch" {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo build did not report the smooch executable")
}

/// The workspace root: this crate's parent directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A name unique to this run, for prefixes.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{}-{:x}", std::process::id(), nanos % 0xffff_ffff)
}

impl Suite {
    /// Starts (or connects to) the suite and waits until it answers `/healthz`.
    pub async fn start(opts: &Options) -> anyhow::Result<Suite> {
        if let Some(url) = &opts.url {
            let base = url.trim_end_matches('/').to_owned();
            let suite = Suite {
                bases: vec![base],
                pid: opts.suite_pid,
                processes: Vec::new(),
                mode: "external".to_owned(),
                database_url: opts.database_url.clone(),
                amqp_prefix: None,
                redis_prefix: None,
                binary: "external".to_owned(),
                callgrind: None,
                children: Vec::new(),
            };
            wait_healthy(&suite.bases[0], Duration::from_secs(30)).await?;
            return Ok(suite);
        }
        let binary = match &opts.smooch_bin {
            Some(path) => path.clone(),
            None => build_smooch(opts.debug).await?,
        };
        recreate_database(&opts.database_url).await?;
        let prefix = run_id();
        if let Some(replicas) = opts.replicas {
            return Suite::start_split(opts, &binary, &prefix, replicas.max(1)).await;
        }
        let log = std::fs::File::create(&opts.log_path)
            .with_context(|| format!("creating {}", opts.log_path.display()))?;
        let mut log_out = tokio::fs::File::from_std(log.try_clone()?);
        let mut cmd = match &opts.callgrind {
            Some(out_file) => crate::callgrind::command(&binary, out_file),
            None => Command::new(&binary),
        };
        cmd.arg("all")
            .env("SMOOCH_HTTP_ADDR", "127.0.0.1:0")
            .envs(common_env(opts, &prefix))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the child has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                log_out.write_all(line.as_bytes()).await?;
                log_out.write_all(b"\n").await?;
                if let Some(rest) = line.strip_prefix("smooch is serving the v1 API on ") {
                    return Ok(rest.trim().trim_end_matches("/v1").to_owned());
                }
            }
            Err(anyhow!(
                "smooch exited before serving; see {}",
                opts.log_path.display()
            ))
        })
        .await
        .map_err(|_| anyhow!("smooch did not start within 120 s"))??;
        // Keep copying stdout (where the suite logs) so the child never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log_out.write_all(line.as_bytes()).await;
                let _ = log_out.write_all(b"\n").await;
            }
        });
        wait_healthy(&base, Duration::from_secs(60)).await?;
        eprintln!("smooch all (pid {pid:?}) serving on {base}");
        Ok(Suite {
            bases: vec![base],
            pid,
            processes: Vec::new(),
            mode: if opts.callgrind.is_some() {
                "smooch all under callgrind".to_owned()
            } else {
                "smooch all".to_owned()
            },
            database_url: opts.database_url.clone(),
            amqp_prefix: Some(prefix.clone()),
            redis_prefix: Some(prefix),
            binary: binary.display().to_string(),
            callgrind: opts.callgrind.clone(),
            children: vec![child],
        })
    }

    /// Starts the suite split: `smooch migrate`, then `replicas` processes of every role
    /// but the gateway, and once they answer ready, `replicas` gateways.
    ///
    /// A gRPC address names one `host:port` (a DNS name is balanced over the addresses it
    /// resolves to, but loopback replicas differ by port, not by address), so replica `r`
    /// of each role calls replica `r` of the services it uses: each gateway has its own
    /// column of backends, and the load is spread over the gateways round-robin. The
    /// webhook workers and push workers share their queues through RabbitMQ. Each role's
    /// database pool is `10 / replicas` (at least 3): the suite holds as many Postgres
    /// connections as `smooch all` does.
    async fn start_split(
        opts: &Options,
        binary: &Path,
        prefix: &str,
        replicas: u32,
    ) -> anyhow::Result<Suite> {
        let started = Instant::now();
        let log_dir = opts
            .log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut env: Vec<(String, String)> = common_env(opts, prefix);
        if !opts.env.iter().any(|(k, _)| k == "SMOOCH_SECRETS_KEY") {
            env.push((
                "SMOOCH_SECRETS_KEY".to_owned(),
                DEVELOPMENT_SECRETS_KEY.to_owned(),
            ));
        }
        if !opts
            .env
            .iter()
            .any(|(k, _)| k == "SMOOCH_DATABASE_MAX_CONNECTIONS")
        {
            env.push((
                "SMOOCH_DATABASE_MAX_CONNECTIONS".to_owned(),
                (10 / replicas).max(3).to_string(),
            ));
        }
        if let Some(threads) = opts.split_worker_threads {
            env.push(("SMOOCH_WORKER_THREADS".to_owned(), threads.to_string()));
        }
        // `smooch all` migrates and stores the account key at its start; split roles do not.
        let migrate_log = log_dir.join("smooch-migrate.log");
        let log = std::fs::File::create(&migrate_log)
            .with_context(|| format!("creating {}", migrate_log.display()))?;
        let status = Command::new(binary)
            .arg("migrate")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .status()
            .await
            .with_context(|| format!("running {} migrate", binary.display()))?;
        if !status.success() {
            bail!(
                "smooch migrate failed ({status}); see {}",
                migrate_log.display()
            );
        }

        // Per replica: the gateway's HTTP port, a gRPC port per service and an admin port
        // per other role.
        let per_replica = 1 + GRPC_ROLES.len() + SPLIT_ROLES.len() - 1;
        let ports = free_ports(per_replica * replicas as usize)?;
        let mut columns = Vec::new();
        for ports in ports.chunks(per_replica) {
            let (http, rest) = ports.split_at(1);
            let (grpc, admin) = rest.split_at(GRPC_ROLES.len());
            let mut column = env.clone();
            column.push((
                "SMOOCH_HTTP_ADDR".to_owned(),
                format!("127.0.0.1:{}", http[0]),
            ));
            for (role, port) in GRPC_ROLES.iter().zip(grpc) {
                column.push((
                    format!("SMOOCH_{}_GRPC_ADDR", env_part(role)),
                    format!("127.0.0.1:{port}"),
                ));
            }
            let mut admin_urls = Vec::new();
            for (role, port) in SPLIT_ROLES.iter().filter(|r| **r != "gateway").zip(admin) {
                column.push((
                    format!("SMOOCH_{}_ADMIN_ADDR", env_part(role)),
                    format!("127.0.0.1:{port}"),
                ));
                admin_urls.push((*role, format!("http://127.0.0.1:{port}/readyz")));
            }
            columns.push((format!("http://127.0.0.1:{}", http[0]), column, admin_urls));
        }

        let mut suite = Suite {
            bases: columns.iter().map(|(base, ..)| base.clone()).collect(),
            pid: None,
            processes: Vec::new(),
            mode: match opts.split_worker_threads {
                Some(threads) => format!("split ×{replicas}, {threads} runtime thread(s) each"),
                None => format!("split ×{replicas}"),
            },
            database_url: opts.database_url.clone(),
            amqp_prefix: Some(prefix.to_owned()),
            redis_prefix: Some(prefix.to_owned()),
            binary: binary.display().to_string(),
            callgrind: None,
            children: Vec::new(),
        };
        let spawn =
            |suite: &mut Suite, role: &'static str, replica: u32, env: &[(String, String)]| {
                let path = log_dir.join(format!("smooch-{role}-{replica}.log"));
                let log = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let child = Command::new(binary)
                    .arg(role)
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdout(Stdio::from(log.try_clone()?))
                    .stderr(Stdio::from(log))
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {} {role}", binary.display()))?;
                let pid = child.id().ok_or_else(|| {
                    anyhow!("{role} {replica} exited at once; see {}", path.display())
                })?;
                suite.processes.push(RoleProcess { role, replica, pid });
                suite.children.push(child);
                anyhow::Ok(())
            };
        for role in SPLIT_ROLES.into_iter().filter(|r| *r != "gateway") {
            for (replica, (_, column, _)) in (0u32..).zip(&columns) {
                spawn(&mut suite, role, replica, column)?;
            }
        }
        let readiness: Vec<(&str, String)> = columns
            .iter()
            .flat_map(|(.., admin)| admin.iter().cloned())
            .collect();
        suite
            .wait_ready(&readiness, &log_dir, Duration::from_secs(120))
            .await?;
        for (replica, (_, column, _)) in (0u32..).zip(&columns) {
            spawn(&mut suite, "gateway", replica, column)?;
        }
        let gateways: Vec<(&str, String)> = suite
            .bases
            .iter()
            .map(|base| ("gateway", format!("{base}/readyz")))
            .collect();
        suite
            .wait_ready(&gateways, &log_dir, Duration::from_secs(60))
            .await?;
        eprintln!(
            "smooch split ×{replicas} ({} processes, started in {:.1} s) serving on {}; logs in {}",
            suite.processes.len(),
            started.elapsed().as_secs_f64(),
            suite.bases.join(", "),
            log_dir.display()
        );
        Ok(suite)
    }

    /// Waits until every `(role, readyz URL)` answers 200; fails early when a process of
    /// the suite exits.
    async fn wait_ready(
        &mut self,
        urls: &[(&str, String)],
        log_dir: &Path,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for (role, url) in urls {
                let ready = match client.get(url).timeout(Duration::from_secs(2)).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                };
                if !ready {
                    waiting.push(format!("{role} ({url})"));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            for (child, process) in self.children.iter_mut().zip(&self.processes) {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{} {} exited ({status}) while the split suite started; see {}",
                        process.role,
                        process.replica,
                        log_dir
                            .join(format!("smooch-{}-{}.log", process.role, process.replica))
                            .display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the split suite was not ready within {} s: {}; logs in {}",
                    limit.as_secs(),
                    waiting.join(", "),
                    log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every pid of the suite with the group its CPU is reported under: `smooch` for
    /// `smooch all`, `smooch/<role>` for the processes of a split suite.
    pub fn watched_pids(&self) -> Vec<(u32, &'static str)> {
        let mut pids: Vec<(u32, &'static str)> = self
            .processes
            .iter()
            .map(|p| (p.pid, crate::procstat::role_group(p.role)))
            .collect();
        if let Some(pid) = self.pid {
            pids.push((pid, "smooch"));
        }
        pids
    }

    /// Stops the child (SIGTERM, then SIGKILL after a grace period) and removes the queues
    /// and Redis keys of its prefixes.
    pub async fn stop(mut self, amqp_url: &str, redis_url: &str) -> anyhow::Result<()> {
        // SIGTERM to every process at once, so they drain together.
        for child in &self.children {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                child.kill().await?;
            }
        }
        if let Some(prefix) = &self.amqp_prefix {
            if let Err(e) = crate::floor::delete_bus(amqp_url, prefix).await {
                eprintln!("warning: could not delete the bench's queues: {e:#}");
            }
        }
        if let Some(prefix) = &self.redis_prefix {
            if let Err(e) = crate::floor::delete_redis_keys(redis_url, prefix).await {
                eprintln!("warning: could not delete the bench's Redis keys: {e:#}");
            }
        }
        Ok(())
    }
}

/// The variables every suite the harness starts gets, `smooch all` or split: its
/// database, account key, prefixes, media directory, no rate limits, private webhook
/// targets allowed, short retries, then `opts.env`.
fn common_env(opts: &Options, prefix: &str) -> Vec<(String, String)> {
    let media = std::env::temp_dir().join(format!("{prefix}-media"));
    let mut env: Vec<(String, String)> = [
        ("SMOOCH_DATABASE_URL", opts.database_url.clone()),
        ("SMOOCH_ACCOUNT_KEY_ID", opts.account_key_id.clone()),
        ("SMOOCH_ACCOUNT_SECRET", opts.account_secret.clone()),
        ("SMOOCH_AMQP_PREFIX", prefix.to_owned()),
        ("SMOOCH_REDIS_PREFIX", prefix.to_owned()),
        ("SMOOCH_MEDIA_DIR", media.display().to_string()),
        ("SMOOCH_RATE_LIMIT_ENABLED", "false".to_owned()),
        ("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        // Retries fire within a scenario's window, so the retry storm is a storm.
        ("SMOOCH_WEBHOOK_RETRY_BASE_MS", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(opts.env.iter().cloned());
    env
}

/// `SMOOCH_<ROLE>` of a role name: `webhook-worker` → `WEBHOOK_WORKER`.
fn env_part(role: &str) -> String {
    role.to_uppercase().replace('-', "_")
}

/// `n` free loopback ports: bound all at once (so they differ), then released for the
/// suite's processes to bind.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("reserving loopback ports for the split suite")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Waits until `base/healthz` answers 200.
pub async fn wait_healthy(base: &str, limit: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{base}/healthz");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
