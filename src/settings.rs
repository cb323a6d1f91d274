//! Settings of every role, read from `SMOOCH_*` environment variables with local defaults.
//! A malformed value is a startup error that names the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::anyhow;
use secrecy::SecretString;

/// Everything a role may need; each role reads the part it uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the gateway listens (`SMOOCH_HTTP_ADDR`, default `127.0.0.1:8080`).
    pub http_addr: SocketAddr,
    /// Base URL of media links (`SMOOCH_PUBLIC_URL`, default `http://` + the HTTP address).
    pub public_url: Option<String>,
    /// Postgres URL (`SMOOCH_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/smooch`).
    pub database_url: String,
    /// Pool size of each service (`SMOOCH_DATABASE_MAX_CONNECTIONS`, default 10).
    pub database_max_connections: u32,
    /// Redis URL (`SMOOCH_REDIS_URL`, default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// Prefix of every Redis key (`SMOOCH_REDIS_PREFIX`, default `smooch`).
    pub redis_prefix: String,
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub amqp_url: String,
    /// Prefix of every exchange and queue (`SMOOCH_AMQP_PREFIX`, default `smooch`).
    pub amqp_prefix: String,
    /// The operator's account key (`SMOOCH_ACCOUNT_KEY_ID` + `SMOOCH_ACCOUNT_SECRET`); when
    /// unset, `smooch all` creates one on first start.
    pub account_key: Option<(String, SecretString)>,
    /// Local media storage (`SMOOCH_MEDIA_DIR`, default `data/media`).
    pub media_dir: PathBuf,
    /// The webhook worker's settings (`SMOOCH_WEBHOOK_*`; see `webhook_worker::Config`).
    pub webhook_worker: webhook_worker::Config,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`) of each role that serves no
    /// HTTP API: `SMOOCH_USERS_ADMIN_ADDR`, `SMOOCH_CONVERSATIONS_ADMIN_ADDR`,
    /// `SMOOCH_MEDIA_ADMIN_ADDR`, `SMOOCH_WEBHOOKS_ADMIN_ADDR`,
    /// `SMOOCH_WEBHOOK_WORKER_ADMIN_ADDR`; unset runs none.
    pub admin_addrs: Vec<(String, SocketAddr)>,
    /// How long a stopping process waits for in-flight work (`SMOOCH_SHUTDOWN_GRACE_MS`,
    /// default 25000).
    pub shutdown_grace: std::time::Duration,
    /// How long a client may take to send a request body before the gateway answers 408
    /// (`SMOOCH_BODY_TIMEOUT_MS`, default 60000).
    pub body_timeout: std::time::Duration,
    /// Limits of the gateway's real-time endpoint `/faye`: `SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_CLIENT`
    /// (default 32), `SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_APP` (per replica, default 100000),
    /// `SMOOCH_FAYE_MAX_QUEUED` (messages waiting for one client before it is dropped,
    /// default 1000), `SMOOCH_FAYE_POLL_TIMEOUT_MS` (default 25000),
    /// `SMOOCH_FAYE_CLIENT_EXPIRY_MS` (default 60000).
    pub faye: gateway::faye::Limits,
    /// Users service address (`SMOOCH_USERS_GRPC_ADDR`, default `127.0.0.1:50051`; for
    /// `smooch all`, a free loopback port unless set).
    pub users_grpc_addr: Option<String>,
    /// Conversations service address (`SMOOCH_CONVERSATIONS_GRPC_ADDR`, default
    /// `127.0.0.1:50052`).
    pub conversations_grpc_addr: Option<String>,
    /// Media service address (`SMOOCH_MEDIA_GRPC_ADDR`, default `127.0.0.1:50053`).
    pub media_grpc_addr: Option<String>,
    /// Webhooks service address (`SMOOCH_WEBHOOKS_GRPC_ADDR`, default `127.0.0.1:50054`).
    pub webhooks_grpc_addr: Option<String>,
    /// The gateway's rate limits: `SMOOCH_RATE_LIMIT_ENABLED` (default true),
    /// `SMOOCH_RATE_LIMIT_APP_PER_SECOND` (2000), `SMOOCH_RATE_LIMIT_APP_BURST` (4000),
    /// `SMOOCH_RATE_LIMIT_USER_PER_SECOND` (200), `SMOOCH_RATE_LIMIT_USER_BURST` (400).
    pub rate_limit: gateway::RateLimitConfig,
    /// The gateway's credential cache lifetimes: `SMOOCH_AUTH_CACHE_LOCAL_TTL_MS` (30000),
    /// `SMOOCH_AUTH_CACHE_DEGRADED_TTL_MS` (1000, the staleness bound while Redis is down),
    /// `SMOOCH_AUTH_CACHE_REDIS_TTL_S` (300).
    pub credential_cache: auth::CacheConfig,
}

/// Default gRPC address of each service when it runs as its own role.
pub const DEFAULT_GRPC_ADDRS: [(&str, &str); 4] = [
    ("users", "127.0.0.1:50051"),
    ("conversations", "127.0.0.1:50052"),
    ("media", "127.0.0.1:50053"),
    ("webhooks", "127.0.0.1:50054"),
];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "postgres://postgres@127.0.0.1:5432/smooch".to_owned(),
            database_max_connections: 10,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_prefix: "smooch".to_owned(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_prefix: "smooch".to_owned(),
            account_key: None,
            media_dir: PathBuf::from("data/media"),
            webhook_worker: webhook_worker::Config::default(),
            admin_addrs: Vec::new(),
            shutdown_grace: std::time::Duration::from_millis(25_000),
            body_timeout: std::time::Duration::from_millis(60_000),
            faye: gateway::faye::Limits::default(),
            users_grpc_addr: None,
            conversations_grpc_addr: None,
            media_grpc_addr: None,
            webhooks_grpc_addr: None,
            rate_limit: gateway::RateLimitConfig::default(),
            credential_cache: auth::CacheConfig::default(),
        }
    }
}

/// Reads a variable; unset or empty is `None`, non-UTF-8 is an error naming it.
pub fn var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(anyhow!("{name} is not valid UTF-8")),
    }
}

/// The `/faye` limits from `SMOOCH_FAYE_*`, over `d`.
fn faye_limits(d: gateway::faye::Limits) -> anyhow::Result<gateway::faye::Limits> {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(gateway::faye::Limits {
        per_client: parsed(
            "SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_CLIENT",
            d.per_client,
            "a count",
        )?,
        per_app: parsed(
            "SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_APP",
            d.per_app,
            "a count",
        )?,
        queue: parsed("SMOOCH_FAYE_MAX_QUEUED", d.queue, "a count")?,
        poll_timeout: std::time::Duration::from_millis(parsed(
            "SMOOCH_FAYE_POLL_TIMEOUT_MS",
            ms(d.poll_timeout),
            "milliseconds",
        )?),
        client_expiry: std::time::Duration::from_millis(parsed(
            "SMOOCH_FAYE_CLIENT_EXPIRY_MS",
            ms(d.client_expiry),
            "milliseconds",
        )?),
    })
}

fn parsed<T: FromStr>(name: &str, default: T, expected: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name)? {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow!("{name}={raw:?} is invalid: expected {expected} ({e})")),
    }
}

fn url(name: &str, default: String, schemes: &[&str]) -> anyhow::Result<String> {
    let value = var(name)?.unwrap_or(default);
    let ok = schemes
        .iter()
        .any(|s| value.starts_with(&format!("{s}://")));
    if ok {
        Ok(value)
    } else {
        Err(anyhow!(
            "{name} is invalid: expected a URL starting with {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    }
}

/// Roles that serve no HTTP API, with the variable of their admin address.
pub const ADMIN_ROLES: [(&str, &str); 5] = [
    ("users", "SMOOCH_USERS_ADMIN_ADDR"),
    ("conversations", "SMOOCH_CONVERSATIONS_ADMIN_ADDR"),
    ("media", "SMOOCH_MEDIA_ADMIN_ADDR"),
    ("webhooks", "SMOOCH_WEBHOOKS_ADMIN_ADDR"),
    ("webhook-worker", "SMOOCH_WEBHOOK_WORKER_ADMIN_ADDR"),
];

fn admin_addrs() -> anyhow::Result<Vec<(String, SocketAddr)>> {
    let mut addrs = Vec::new();
    for (role, name) in ADMIN_ROLES {
        if var(name)?.is_some() {
            let addr = parsed(name, SocketAddr::from(([127, 0, 0, 1], 9090)), "host:port")?;
            addrs.push((role.to_owned(), addr));
        }
    }
    Ok(addrs)
}

fn grpc_addr(name: &str) -> anyhow::Result<Option<String>> {
    let Some(addr) = var(name)? else {
        return Ok(None);
    };
    let host_port = addr.split("://").last().unwrap_or(&addr);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Some(addr)),
        _ => Err(anyhow!(
            "{name}={addr:?} is invalid: expected host:port, such as 127.0.0.1:50051"
        )),
    }
}

fn rate_limit(d: gateway::RateLimitConfig) -> anyhow::Result<gateway::RateLimitConfig> {
    let rate = |name: &str, default: f64| -> anyhow::Result<f64> {
        let value: f64 = parsed(name, default, "a positive number of requests per second")?;
        if value > 0.0 && value.is_finite() {
            Ok(value)
        } else {
            Err(anyhow!(
                "{name}={value} is invalid: expected a positive number"
            ))
        }
    };
    let burst = |name: &str, default: u32| -> anyhow::Result<u32> {
        match parsed(name, default, "a positive integer")? {
            0 => Err(anyhow!("{name}=0 is invalid: expected a positive integer")),
            n => Ok(n),
        }
    };
    Ok(gateway::RateLimitConfig {
        enabled: parsed("SMOOCH_RATE_LIMIT_ENABLED", d.enabled, "true or false")?,
        app: auth::Limit {
            per_second: rate("SMOOCH_RATE_LIMIT_APP_PER_SECOND", d.app.per_second)?,
            burst: burst("SMOOCH_RATE_LIMIT_APP_BURST", d.app.burst)?,
        },
        app_user: auth::Limit {
            per_second: rate("SMOOCH_RATE_LIMIT_USER_PER_SECOND", d.app_user.per_second)?,
            burst: burst("SMOOCH_RATE_LIMIT_USER_BURST", d.app_user.burst)?,
        },
    })
}

fn credential_cache(d: auth::CacheConfig) -> anyhow::Result<auth::CacheConfig> {
    let millis = |name: &str, default: Duration| -> anyhow::Result<Duration> {
        let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Ok(Duration::from_millis(parsed(
            name,
            default,
            "milliseconds",
        )?))
    };
    Ok(auth::CacheConfig {
        local_ttl: millis("SMOOCH_AUTH_CACHE_LOCAL_TTL_MS", d.local_ttl)?,
        degraded_local_ttl: millis("SMOOCH_AUTH_CACHE_DEGRADED_TTL_MS", d.degraded_local_ttl)?,
        redis_ttl: Duration::from_secs(parsed(
            "SMOOCH_AUTH_CACHE_REDIS_TTL_S",
            d.redis_ttl.as_secs(),
            "seconds",
        )?),
        ..d
    })
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Settings::default();
        let account_key = match (var("SMOOCH_ACCOUNT_KEY_ID")?, var("SMOOCH_ACCOUNT_SECRET")?) {
            (Some(id), Some(secret)) => Some((id, SecretString::from(secret))),
            (None, None) => None,
            _ => {
                return Err(anyhow!(
                    "SMOOCH_ACCOUNT_KEY_ID and SMOOCH_ACCOUNT_SECRET must be set together"
                ))
            }
        };
        let public_url = match var("SMOOCH_PUBLIC_URL")? {
            None => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            Some(_) => {
                return Err(anyhow!(
                    "SMOOCH_PUBLIC_URL is invalid: expected an http:// or https:// URL"
                ))
            }
        };
        Ok(Settings {
            http_addr: parsed(
                "SMOOCH_HTTP_ADDR",
                d.http_addr,
                "host:port, such as 127.0.0.1:8080",
            )?,
            public_url,
            database_url: url(
                "SMOOCH_DATABASE_URL",
                d.database_url,
                &["postgres", "postgresql"],
            )?,
            database_max_connections: parsed(
                "SMOOCH_DATABASE_MAX_CONNECTIONS",
                d.database_max_connections,
                "a positive integer",
            )?,
            redis_url: url("SMOOCH_REDIS_URL", d.redis_url, &["redis", "rediss"])?,
            redis_prefix: var("SMOOCH_REDIS_PREFIX")?.unwrap_or(d.redis_prefix),
            amqp_url: url("SMOOCH_AMQP_URL", d.amqp_url, &["amqp", "amqps"])?,
            amqp_prefix: var("SMOOCH_AMQP_PREFIX")?.unwrap_or(d.amqp_prefix),
            account_key,
            media_dir: var("SMOOCH_MEDIA_DIR")?
                .map(PathBuf::from)
                .unwrap_or(d.media_dir),
            webhook_worker: webhook_worker::Config::from_env()?,
            admin_addrs: admin_addrs()?,
            shutdown_grace: std::time::Duration::from_millis(parsed(
                "SMOOCH_SHUTDOWN_GRACE_MS",
                25_000,
                "milliseconds",
            )?),
            body_timeout: std::time::Duration::from_millis(parsed(
                "SMOOCH_BODY_TIMEOUT_MS",
                60_000,
                "milliseconds",
            )?),
            faye: faye_limits(d.faye)?,
            users_grpc_addr: grpc_addr("SMOOCH_USERS_GRPC_ADDR")?,
            conversations_grpc_addr: grpc_addr("SMOOCH_CONVERSATIONS_GRPC_ADDR")?,
            media_grpc_addr: grpc_addr("SMOOCH_MEDIA_GRPC_ADDR")?,
            webhooks_grpc_addr: grpc_addr("SMOOCH_WEBHOOKS_GRPC_ADDR")?,
            rate_limit: rate_limit(d.rate_limit)?,
            credential_cache: credential_cache(d.credential_cache)?,
        })
    }

    /// The admin address of `role`, if one is configured.
    pub fn admin_addr(&self, role: &str) -> Option<SocketAddr> {
        self.admin_addrs
            .iter()
            .find(|(name, _)| name == role)
            .map(|(_, addr)| *addr)
    }

    /// The base URL of media links.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http_addr))
    }

    /// The configured gRPC address of `service`, or its default for a split deployment.
    pub fn grpc_addr(&self, service: &str) -> String {
        let configured = match service {
            "users" => &self.users_grpc_addr,
            "conversations" => &self.conversations_grpc_addr,
            "media" => &self.media_grpc_addr,
            _ => &self.webhooks_grpc_addr,
        };
        configured.clone().unwrap_or_else(|| {
            DEFAULT_GRPC_ADDRS
                .iter()
                .find(|(name, _)| *name == service)
                .map(|(_, addr)| (*addr).to_owned())
                .unwrap_or_default()
        })
    }
}
