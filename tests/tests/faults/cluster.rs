//! The suite split into one process per role (`role_process`), on fixed loopback ports and
//! a database of its own, so a test can kill any role with SIGKILL and start it again.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Every role, in start order (the gateway last, behind the services it calls).
pub(crate) const ROLES: [&str; 6] = [
    "users",
    "conversations",
    "media",
    "webhooks",
    "webhook-worker",
    "gateway",
];

/// The gRPC roles.
pub(crate) const GRPC_ROLES: [&str; 4] = ["users", "conversations", "media", "webhooks"];

fn env_part(role: &str) -> String {
    role.to_uppercase().replace('-', "_")
}

/// The database of the split suite: its own, because a relay sweeps the whole outbox of its
/// database.
pub(crate) fn database_url() -> String {
    crate::database_url("smooch_test_faults")
}

/// The running role processes.
pub(crate) struct Cluster {
    /// `http://127.0.0.1:PORT` of the gateway.
    pub(crate) base: String,
    /// Where each role's output goes.
    pub(crate) log_dir: PathBuf,
    env: Vec<(String, String)>,
    admin_ports: BTreeMap<&'static str, u16>,
    children: BTreeMap<&'static str, Child>,
    /// How many times each role was killed and started again.
    pub(crate) kills: BTreeMap<&'static str, u32>,
}

impl Cluster {
    /// Migrates the database and starts every role with the settings of the fault tests.
    pub(crate) async fn start(prefix: &str) -> Cluster {
        let mut settings = e2e::test_settings();
        settings.database_url = database_url();
        smooch::migrate(&settings).await.unwrap();
        smooch::ensure_account_key(&settings).await.unwrap();

        // The gateway, a gRPC port per service and an admin port per non-gateway role.
        let mut ports = e2e::reserve_ports(1 + GRPC_ROLES.len() + ROLES.len() - 1).into_iter();
        let mut free_port = move || ports.next().expect("reserved enough ports");
        let http_port = free_port();
        let log_dir = std::env::temp_dir().join(e2e::unique("smooch-faults"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut env: Vec<(String, String)> = [
            ("SMOOCH_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
            ("SMOOCH_DATABASE_URL", database_url()),
            ("SMOOCH_DATABASE_MAX_CONNECTIONS", "4".to_owned()),
            ("SMOOCH_AMQP_PREFIX", prefix.to_owned()),
            ("SMOOCH_REDIS_PREFIX", prefix.to_owned()),
            ("SMOOCH_ACCOUNT_KEY_ID", e2e::ACCOUNT_KEY_ID.to_owned()),
            ("SMOOCH_ACCOUNT_SECRET", e2e::ACCOUNT_SECRET.to_owned()),
            ("SMOOCH_SECRETS_KEY", e2e::SECRETS_KEY.to_owned()),
            (
                "SMOOCH_MEDIA_DIR",
                log_dir.join("media").display().to_string(),
            ),
            ("SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            // Retries at 0.3, 0.6, 1.2, 2.4 and 4.8 s: a target broken for a few seconds
            // is reached within the schedule.
            ("SMOOCH_WEBHOOK_RETRY_BASE_MS", "300".to_owned()),
            ("SMOOCH_WEBHOOK_TIMEOUT_MS", "1000".to_owned()),
            ("SMOOCH_SHUTDOWN_GRACE_MS", "2000".to_owned()),
            // One runtime thread per role, as pods of one CPU run: the current-thread
            // scheduler (`smooch::process::runtime`) goes through the kills too.
            ("SMOOCH_WORKER_THREADS", "1".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for role in GRPC_ROLES {
            env.push((
                format!("SMOOCH_{}_GRPC_ADDR", env_part(role)),
                format!("127.0.0.1:{}", free_port()),
            ));
        }
        let mut admin_ports = BTreeMap::new();
        for role in ROLES.into_iter().filter(|r| *r != "gateway") {
            let port = free_port();
            admin_ports.insert(role, port);
            env.push((
                format!("SMOOCH_{}_ADMIN_ADDR", env_part(role)),
                format!("127.0.0.1:{port}"),
            ));
        }
        let mut cluster = Cluster {
            base: format!("http://127.0.0.1:{http_port}"),
            log_dir,
            env,
            admin_ports,
            children: BTreeMap::new(),
            kills: BTreeMap::new(),
        };
        for role in ROLES {
            cluster.spawn(role);
        }
        cluster
            .wait_all_ready(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("the split suite did not start: {e}"));
        cluster
    }

    fn spawn(&mut self, role: &'static str) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{role}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_role_process"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SMOOCH_TEST_ROLE", role)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(role, child);
    }

    /// Kills `role` with SIGKILL (no drain, no cleanup) and starts it again after `down`.
    pub(crate) async fn kill_and_restart(&mut self, role: &'static str, down: Duration) {
        if let Some(mut child) = self.children.remove(role) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        *self.kills.entry(role).or_default() += 1;
        tokio::time::sleep(down).await;
        self.spawn(role);
    }

    /// Roles whose process exited on its own (none should: a role survives any outage of
    /// its dependencies).
    pub(crate) fn exited(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .filter_map(|(role, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{role} ({status})")),
                _ => None,
            })
            .collect()
    }

    /// Whether `role` answers ready: `/readyz` of its admin endpoint (the gateway's own).
    async fn ready(&self, http: &reqwest::Client, role: &str) -> bool {
        let url = match self.admin_ports.get(role) {
            Some(port) => format!("http://127.0.0.1:{port}/readyz"),
            None => format!("{}/readyz", self.base),
        };
        match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// Waits until every role answers ready; how long that took, or the roles that did not.
    pub(crate) async fn wait_all_ready(&self, limit: Duration) -> Result<Duration, String> {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let mut not_ready = Vec::new();
            for role in ROLES {
                if !self.ready(&http, role).await {
                    not_ready.push(role);
                }
            }
            if not_ready.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                let tails: Vec<String> = not_ready
                    .iter()
                    .map(|role| {
                        let log = std::fs::read_to_string(self.log_dir.join(format!("{role}.log")))
                            .unwrap_or_default();
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                        format!("--- {role}.log (last lines) ---\n{tail}")
                    })
                    .collect();
                return Err(format!(
                    "not ready after {} s: {not_ready:?} (logs in {})\n{}",
                    limit.as_secs(),
                    self.log_dir.display(),
                    tails.join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
