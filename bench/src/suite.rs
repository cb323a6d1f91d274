//! The suite under test: either a `smooch all` child process that the harness builds and
//! starts against a dedicated database and its own AMQP/Redis prefixes, or a suite already
//! running at `--url`.

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
}

/// A suite to send load to.
pub struct Suite {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its pid, when known.
    pub pid: Option<u32>,
    /// Its database.
    pub database_url: String,
    /// Its AMQP prefix (for cleaning up the queues it declared).
    pub amqp_prefix: Option<String>,
    /// Its Redis prefix.
    pub redis_prefix: Option<String>,
    /// The binary it runs (debug or release), for the report.
    pub binary: String,
    child: Option<Child>,
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
            let suite = Suite {
                base: url.trim_end_matches('/').to_owned(),
                pid: opts.suite_pid,
                database_url: opts.database_url.clone(),
                amqp_prefix: None,
                redis_prefix: None,
                binary: "external".to_owned(),
                child: None,
            };
            wait_healthy(&suite.base, Duration::from_secs(30)).await?;
            return Ok(suite);
        }
        let binary = match &opts.smooch_bin {
            Some(path) => path.clone(),
            None => build_smooch(opts.debug).await?,
        };
        recreate_database(&opts.database_url).await?;
        let prefix = run_id();
        let media = std::env::temp_dir().join(format!("{prefix}-media"));
        let log = std::fs::File::create(&opts.log_path)
            .with_context(|| format!("creating {}", opts.log_path.display()))?;
        let mut log_out = tokio::fs::File::from_std(log.try_clone()?);
        let mut cmd = Command::new(&binary);
        cmd.arg("all")
            .env("SMOOCH_HTTP_ADDR", "127.0.0.1:0")
            .env("SMOOCH_DATABASE_URL", &opts.database_url)
            .env("SMOOCH_ACCOUNT_KEY_ID", &opts.account_key_id)
            .env("SMOOCH_ACCOUNT_SECRET", &opts.account_secret)
            .env("SMOOCH_AMQP_PREFIX", &prefix)
            .env("SMOOCH_REDIS_PREFIX", &prefix)
            .env("SMOOCH_MEDIA_DIR", &media)
            .env("SMOOCH_RATE_LIMIT_ENABLED", "false")
            .env("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            // Retries fire within a scenario's window, so the retry storm is a storm.
            .env("SMOOCH_WEBHOOK_RETRY_BASE_MS", "1000")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
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
            base,
            pid,
            database_url: opts.database_url.clone(),
            amqp_prefix: Some(prefix.clone()),
            redis_prefix: Some(prefix),
            binary: binary.display().to_string(),
            child: Some(child),
        })
    }

    /// Stops the child (SIGTERM, then SIGKILL after a grace period) and removes the queues
    /// and Redis keys of its prefixes.
    pub async fn stop(mut self, amqp_url: &str, redis_url: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
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
