//! Settings of every role, declared once: each field's `SMOOCH_*` variable is its name in
//! capitals (`http_addr` is `SMOOCH_HTTP_ADDR`), its default is in [`Settings::default`],
//! and [figment] reads the environment over those defaults. The role crates declare their
//! own sections the same way (`webhook_worker::Config`, `gateway::RateLimitConfig`,
//! `auth::CacheConfig`), read from the same variables. A malformed value is one startup
//! error that names the variable; unset or empty variables keep the default.
//!
//! `smooch config` prints the effective settings with secrets and URL passwords hidden.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use figment::providers::Env;
use figment::Figment;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Everything a role may need; each role reads the part it uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where the gateway listens (`SMOOCH_HTTP_ADDR`, default `127.0.0.1:8080`).
    pub http_addr: SocketAddr,
    /// Base URL of media links and page links (`SMOOCH_PUBLIC_URL`, an http(s) URL; default
    /// `http://` + the HTTP address).
    #[serde(deserialize_with = "http_url")]
    pub public_url: Option<String>,
    /// Postgres URL (`SMOOCH_DATABASE_URL`, default
    /// `postgres://postgres@127.0.0.1:5432/smooch`).
    #[serde(
        deserialize_with = "postgres_url",
        serialize_with = "url_without_password"
    )]
    pub database_url: String,
    /// Pool size of each service (`SMOOCH_DATABASE_MAX_CONNECTIONS`, default 10).
    #[serde(deserialize_with = "positive_u32")]
    pub database_max_connections: u32,
    /// How many tasks of the conversations role write messages, each committing the posts
    /// that queued while it was busy in one transaction (`SMOOCH_MESSAGE_WRITERS`, default
    /// 1: under load every post queues behind the batch in flight, so posts share
    /// statements and commits); 0 commits each post on its own.
    pub message_writers: u32,
    /// Redis URL (`SMOOCH_REDIS_URL`, default `redis://127.0.0.1:6379`).
    #[serde(
        deserialize_with = "redis_url",
        serialize_with = "url_without_password"
    )]
    pub redis_url: String,
    /// Prefix of every Redis key (`SMOOCH_REDIS_PREFIX`, default `smooch`).
    #[serde(deserialize_with = "domain::config::text")]
    pub redis_prefix: String,
    /// RabbitMQ URL (`SMOOCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    #[serde(deserialize_with = "amqp_url", serialize_with = "url_without_password")]
    pub amqp_url: String,
    /// Prefix of every exchange and queue (`SMOOCH_AMQP_PREFIX`, default `smooch`).
    #[serde(deserialize_with = "domain::config::text")]
    pub amqp_prefix: String,
    /// Id of the operator's account key (`SMOOCH_ACCOUNT_KEY_ID`, set together with
    /// `SMOOCH_ACCOUNT_SECRET`); when unset, `smooch all` creates a key on first start.
    #[serde(deserialize_with = "domain::config::text_opt")]
    pub account_key_id: Option<String>,
    /// Secret of the operator's account key (`SMOOCH_ACCOUNT_SECRET`).
    #[serde(
        serialize_with = "hidden",
        deserialize_with = "domain::config::text_opt"
    )]
    pub account_secret: Option<SecretString>,
    /// Key that seals integration secrets at rest (`SMOOCH_SECRETS_KEY`: the base64 of 32
    /// random bytes, `openssl rand -base64 32`). Required by `smooch users`; unset, `smooch
    /// all` uses the public development key and says so.
    #[serde(
        serialize_with = "hidden",
        deserialize_with = "domain::config::text_opt"
    )]
    pub secrets_key: Option<SecretString>,
    /// Local media storage (`SMOOCH_MEDIA_DIR`, default `data/media`).
    #[serde(deserialize_with = "domain::config::text")]
    pub media_dir: PathBuf,
    /// How long a stopping process waits for in-flight work (`SMOOCH_SHUTDOWN_GRACE_MS`,
    /// default 25000).
    #[serde(rename = "shutdown_grace_ms", with = "domain::config::millis")]
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request body before the gateway answers 408
    /// (`SMOOCH_BODY_TIMEOUT_MS`, default 60000).
    #[serde(rename = "body_timeout_ms", with = "domain::config::millis")]
    pub body_timeout: Duration,
    /// Users service address, `host:port` (`SMOOCH_USERS_GRPC_ADDR`, default
    /// `127.0.0.1:50051`; for `smooch all`, a free loopback port unless set).
    #[serde(deserialize_with = "grpc_addr")]
    pub users_grpc_addr: Option<String>,
    /// Conversations service address (`SMOOCH_CONVERSATIONS_GRPC_ADDR`, default
    /// `127.0.0.1:50052`).
    #[serde(deserialize_with = "grpc_addr")]
    pub conversations_grpc_addr: Option<String>,
    /// Media service address (`SMOOCH_MEDIA_GRPC_ADDR`, default `127.0.0.1:50053`).
    #[serde(deserialize_with = "grpc_addr")]
    pub media_grpc_addr: Option<String>,
    /// Webhooks service address (`SMOOCH_WEBHOOKS_GRPC_ADDR`, default `127.0.0.1:50054`).
    #[serde(deserialize_with = "grpc_addr")]
    pub webhooks_grpc_addr: Option<String>,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`) of the users role when it runs
    /// alone (`SMOOCH_USERS_ADMIN_ADDR`; unset serves none). The gateway serves these on
    /// its own address.
    pub users_admin_addr: Option<SocketAddr>,
    /// Admin address of the conversations role (`SMOOCH_CONVERSATIONS_ADMIN_ADDR`).
    pub conversations_admin_addr: Option<SocketAddr>,
    /// Admin address of the media role (`SMOOCH_MEDIA_ADMIN_ADDR`).
    pub media_admin_addr: Option<SocketAddr>,
    /// Admin address of the webhooks role (`SMOOCH_WEBHOOKS_ADMIN_ADDR`).
    pub webhooks_admin_addr: Option<SocketAddr>,
    /// Admin address of the webhook-worker role (`SMOOCH_WEBHOOK_WORKER_ADMIN_ADDR`).
    pub webhook_worker_admin_addr: Option<SocketAddr>,
    /// Admin address of the push role (`SMOOCH_PUSH_ADMIN_ADDR`).
    pub push_admin_addr: Option<SocketAddr>,
    /// API requests the gateway serves at once (`SMOOCH_MAX_IN_FLIGHT`, default 64).
    #[serde(deserialize_with = "positive_permits")]
    pub max_in_flight: usize,
    /// How many requests may wait for one of those slots (`SMOOCH_ADMISSION_QUEUE`,
    /// default 256; 0 refuses the excess at once). The rest are answered 503 with
    /// `Retry-After`.
    #[serde(deserialize_with = "permits")]
    pub admission_queue: usize,
    /// How long a request waits for one of those slots before it is answered 503 with
    /// `Retry-After` (`SMOOCH_ADMISSION_WAIT_MS`, default 50; 0 refuses the excess at once).
    #[serde(rename = "admission_wait_ms", with = "domain::config::millis")]
    pub admission_wait: Duration,
    /// Threads of the process's async runtime (`SMOOCH_WORKER_THREADS`; unset: one per CPU
    /// the process may use, as the container's CPU limit or the machine's cores say).
    /// Set it to the CPUs a replica is meant to use when several processes share a node
    /// and no CPU limit bounds them: each idle thread is woken to look for work. One thread
    /// runs tokio's current-thread scheduler ([`crate::process::runtime`]).
    #[serde(deserialize_with = "optional_positive_usize")]
    pub worker_threads: Option<usize>,
    /// Log output: `text` or `json` (`SMOOCH_LOG_FORMAT`, default `text`). The level comes
    /// from `RUST_LOG`; tracing export from the standard `OTEL_*` variables.
    pub log_format: telemetry::LogFormat,
    /// The webhook worker's section (`SMOOCH_WEBHOOK_*`; see `webhook_worker::Config`).
    #[serde(skip_deserializing)]
    pub webhook_worker: webhook_worker::Config,
    /// The push worker's section (`SMOOCH_PUSH_*`; see `push::Config`).
    #[serde(skip_deserializing)]
    pub push: push::Config,
    /// The gateway's rate limits (`SMOOCH_RATE_LIMIT_*`; see `gateway::RateLimitConfig`).
    #[serde(skip_deserializing)]
    pub rate_limit: gateway::RateLimitConfig,
    /// The gateway's credential cache lifetimes (`SMOOCH_AUTH_CACHE_*`; see
    /// `auth::CacheConfig`).
    #[serde(skip_deserializing)]
    pub credential_cache: auth::CacheConfig,
    /// Limits of the gateway's real-time endpoint `/faye` (`SMOOCH_FAYE_*`; see
    /// `gateway::faye::Limits`).
    #[serde(skip_deserializing)]
    pub faye: gateway::faye::Limits,
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
            message_writers: 1,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_prefix: "smooch".to_owned(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_prefix: "smooch".to_owned(),
            account_key_id: None,
            account_secret: None,
            secrets_key: None,
            media_dir: PathBuf::from("data/media"),
            shutdown_grace: Duration::from_millis(25_000),
            body_timeout: Duration::from_millis(60_000),
            users_grpc_addr: None,
            conversations_grpc_addr: None,
            media_grpc_addr: None,
            webhooks_grpc_addr: None,
            users_admin_addr: None,
            conversations_admin_addr: None,
            media_admin_addr: None,
            webhooks_admin_addr: None,
            webhook_worker_admin_addr: None,
            push_admin_addr: None,
            max_in_flight: 64,
            admission_queue: 256,
            admission_wait: Duration::from_millis(50),
            worker_threads: None,
            log_format: telemetry::LogFormat::default(),
            webhook_worker: webhook_worker::Config::default(),
            push: push::Config::default(),
            rate_limit: gateway::RateLimitConfig::default(),
            credential_cache: auth::CacheConfig::default(),
            faye: gateway::faye::Limits::default(),
        }
    }
}

/// The `SMOOCH_*` variables that are set to something other than blank, as figment keys.
fn environment() -> Env {
    Env::prefixed("SMOOCH_").filter(|key| {
        std::env::var_os(format!("SMOOCH_{}", key.as_str().to_ascii_uppercase()))
            .is_some_and(|value| !value.to_string_lossy().trim().is_empty())
    })
}

/// Turns figment's error into one line that names the variable, such as
/// `SMOOCH_HTTP_ADDR: invalid value ...`.
fn named(error: figment::Error) -> anyhow::Error {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let variable = e
                .path
                .first()
                .map(|key| format!("SMOOCH_{}", key.to_ascii_uppercase()));
            match variable {
                Some(variable) => format!("{variable} is invalid: {}", e.kind),
                None => e.kind.to_string(),
            }
        })
        .collect();
    anyhow!("{}", messages.join("; "))
}

impl Settings {
    /// Reads the settings from the environment over the defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_figment(Figment::new().merge(environment()))
    }

    /// Reads the settings from `figment` (keys are the variables' names without `SMOOCH_`,
    /// in lower case) over the defaults.
    pub fn from_figment(source: Figment) -> anyhow::Result<Self> {
        // Missing keys take each struct's `Default` (`#[serde(default)]`).
        let figment = source;
        let mut settings: Settings = figment.extract().map_err(named)?;
        settings.webhook_worker = figment.extract().map_err(named)?;
        settings.webhook_worker.validate()?;
        settings.push = figment.extract().map_err(named)?;
        settings.push.validate()?;
        settings.rate_limit = figment.extract().map_err(named)?;
        settings.credential_cache = figment.extract().map_err(named)?;
        settings.faye = figment.extract().map_err(named)?;
        settings.configured_secrets_key()?;
        if settings.account_key_id.is_some() != settings.account_secret.is_some() {
            return Err(anyhow!(
                "SMOOCH_ACCOUNT_KEY_ID and SMOOCH_ACCOUNT_SECRET must be set together"
            ));
        }
        Ok(settings)
    }

    /// The operator's account key, when one is configured.
    pub fn account_key(&self) -> Option<(&str, &SecretString)> {
        self.account_key_id
            .as_deref()
            .zip(self.account_secret.as_ref())
    }

    /// The configured key for integration secrets (`SMOOCH_SECRETS_KEY`), if any.
    pub fn configured_secrets_key(&self) -> anyhow::Result<Option<users::SecretsKey>> {
        self.secrets_key
            .as_ref()
            .map(|text| {
                users::SecretsKey::from_base64(text.expose_secret())
                    .map_err(|e| anyhow!("SMOOCH_SECRETS_KEY is invalid: {e:#}"))
            })
            .transpose()
    }

    /// The key for integration secrets: the configured one or, with `development_fallback`
    /// (`smooch all`), the public development key, with a warning; a split `smooch users`
    /// must have one configured.
    pub fn secrets_key(&self, development_fallback: bool) -> anyhow::Result<users::SecretsKey> {
        match self.configured_secrets_key()? {
            Some(key) => Ok(key),
            None if development_fallback => {
                tracing::warn!(
                    "SMOOCH_SECRETS_KEY is unset: integration secrets are sealed with the public \
                     development key, which protects nothing; set it for any real deployment"
                );
                Ok(users::SecretsKey::development())
            }
            None => Err(anyhow!(
                "SMOOCH_SECRETS_KEY is required: the key that seals integration secrets, the \
                 base64 of 32 random bytes (openssl rand -base64 32); keep it, secrets sealed \
                 with it do not open without it"
            )),
        }
    }

    /// The admin address of `role`, if one is configured.
    pub fn admin_addr(&self, role: &str) -> Option<SocketAddr> {
        match role {
            "users" => self.users_admin_addr,
            "conversations" => self.conversations_admin_addr,
            "media" => self.media_admin_addr,
            "webhooks" => self.webhooks_admin_addr,
            "webhook-worker" => self.webhook_worker_admin_addr,
            "push" => self.push_admin_addr,
            _ => None,
        }
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

    /// Every `SMOOCH_*` variable the settings read, sorted: what `smooch config
    /// --variables` prints (the deploy validation checks the manifests against it).
    pub fn variables() -> anyhow::Result<Vec<String>> {
        let serde_json::Value::Object(top) = serde_json::to_value(Settings::default())? else {
            return Err(anyhow!("the settings do not serialize to an object"));
        };
        let mut names = Vec::new();
        for (key, value) in top {
            match value {
                serde_json::Value::Object(section) => {
                    names.extend(section.into_iter().map(|(k, _)| k))
                }
                _ => names.push(key),
            }
        }
        let mut names: Vec<String> = names
            .into_iter()
            .map(|key| format!("SMOOCH_{}", key.to_ascii_uppercase()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The effective settings as pretty JSON, secrets and URL passwords hidden: what
    /// `smooch config` prints.
    pub fn to_redacted_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// A URL whose scheme is one of `schemes`.
fn url_with_scheme<'de, D: Deserializer<'de>>(
    deserializer: D,
    schemes: &[&str],
) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    if schemes
        .iter()
        .any(|s| value.starts_with(&format!("{s}://")))
    {
        Ok(value)
    } else {
        let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        Err(serde::de::Error::custom(format!(
            "expected a URL starting with {}, got {value:?}",
            expected.join(" or ")
        )))
    }
}

fn postgres_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    url_with_scheme(deserializer, &["postgres", "postgresql"])
}

fn redis_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    url_with_scheme(deserializer, &["redis", "rediss"])
}

fn amqp_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    url_with_scheme(deserializer, &["amqp", "amqps"])
}

fn http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let Some(value) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let value = url_with_scheme(
        serde::de::value::StrDeserializer::<D::Error>::new(&value),
        &["http", "https"],
    )?;
    Ok(Some(value.trim_end_matches('/').to_owned()))
}

fn positive_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    match u32::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom(
            "expected a positive integer, got 0",
        )),
        n => Ok(n),
    }
}

fn positive_usize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    match usize::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom(
            "expected a positive integer, got 0",
        )),
        n => Ok(n),
    }
}

/// A count the gateway's admission control holds as semaphore permits (its queue): at most
/// what a semaphore can hold, which would otherwise panic at start.
fn permits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within_permits(usize::deserialize(deserializer)?)
}

/// [`permits`], and more than none (its slots).
fn positive_permits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within_permits(positive_usize(deserializer)?)
}

fn within_permits<E: serde::de::Error>(n: usize) -> Result<usize, E> {
    let most = tokio::sync::Semaphore::MAX_PERMITS;
    if n > most {
        return Err(E::custom(format!("expected at most {most}, got {n}")));
    }
    Ok(n)
}

fn optional_positive_usize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    Option::<usize>::deserialize(deserializer)?
        .map(|n| positive_usize(serde::de::value::UsizeDeserializer::new(n)))
        .transpose()
}

/// `host:port` (optionally behind a scheme, as `http://users:50051`).
fn grpc_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let Some(addr) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let host_port = addr.split("://").last().unwrap_or(&addr);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Some(addr)),
        _ => Err(serde::de::Error::custom(format!(
            "expected host:port, such as 127.0.0.1:50051, got {addr:?}"
        ))),
    }
}

fn hidden<S: Serializer>(value: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str("(hidden)"),
        None => serializer.serialize_none(),
    }
}

/// The URL with the password of its user info replaced, for printing.
fn url_without_password<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(value))
}

fn redact_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            if user_info.contains(':') {
                format!("{scheme}://{user}:(hidden)@{host}{path}")
            } else {
                value.to_owned()
            }
        }
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // figment's signature
    fn env_settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut read = None;
        figment::Jail::expect_with(|jail| {
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            read = Some(Settings::from_env());
            Ok(())
        });
        read.unwrap()
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let s = env_settings(&[]).unwrap();
        assert_eq!(s.http_addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(s.database_max_connections, 10);
        assert_eq!(s.message_writers, 1);
        assert_eq!(s.shutdown_grace, Duration::from_millis(25_000));
        assert_eq!(s.admission_wait, Duration::from_millis(50));
        assert_eq!(s.admission_queue, 256);
        assert_eq!(s.webhook_worker.max_retries, 5);
        assert!(s.webhook_worker.in_process_events);
        assert_eq!(s.rate_limit.app.burst, 4000);
        assert!(s.account_key().is_none());
    }

    #[test]
    fn variables_override_every_section() {
        let s = env_settings(&[
            ("SMOOCH_HTTP_ADDR", "0.0.0.0:9000"),
            ("SMOOCH_PUBLIC_URL", "https://chat.example.com/"),
            ("SMOOCH_BODY_TIMEOUT_MS", "1500"),
            ("SMOOCH_ADMISSION_WAIT_MS", "0"),
            ("SMOOCH_ADMISSION_QUEUE", "16"),
            ("SMOOCH_WEBHOOK_MAX_RETRIES", "3"),
            ("SMOOCH_WEBHOOK_TIMEOUT_MS", "2500"),
            ("SMOOCH_WEBHOOK_IN_PROCESS_EVENTS", "false"),
            ("SMOOCH_MESSAGE_WRITERS", "0"),
            ("SMOOCH_RATE_LIMIT_APP_PER_SECOND", "12.5"),
            ("SMOOCH_RATE_LIMIT_ENABLED", "false"),
            ("SMOOCH_AUTH_CACHE_REDIS_TTL_S", "60"),
            ("SMOOCH_ACCOUNT_KEY_ID", "act_1"),
            ("SMOOCH_ACCOUNT_SECRET", "s3cret"),
            ("SMOOCH_USERS_ADMIN_ADDR", "127.0.0.1:9191"),
            ("SMOOCH_REDIS_PREFIX", "12345"),
            ("SMOOCH_LOG_FORMAT", "json"),
            ("SMOOCH_WORKER_THREADS", "1"),
        ])
        .unwrap();
        assert_eq!(s.http_addr, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(s.public_url.as_deref(), Some("https://chat.example.com"));
        assert_eq!(s.body_timeout, Duration::from_millis(1500));
        assert_eq!(s.admission_wait, Duration::ZERO);
        assert_eq!(s.admission_queue, 16);
        assert_eq!(s.webhook_worker.max_retries, 3);
        assert_eq!(s.webhook_worker.timeout, Duration::from_millis(2500));
        assert!(!s.webhook_worker.in_process_events);
        assert_eq!(s.message_writers, 0);
        assert!((s.rate_limit.app.per_second - 12.5).abs() < f64::EPSILON);
        assert!(!s.rate_limit.enabled);
        assert_eq!(s.credential_cache.redis_ttl, Duration::from_secs(60));
        let (id, secret) = s.account_key().unwrap();
        assert_eq!((id, secret.expose_secret()), ("act_1", "s3cret"));
        assert_eq!(
            s.admin_addr("users"),
            Some(SocketAddr::from(([127, 0, 0, 1], 9191)))
        );
        assert_eq!(s.admin_addr("media"), None);
        assert_eq!(s.redis_prefix, "12345");
        assert_eq!(s.log_format, telemetry::LogFormat::Json);
        assert_eq!(s.worker_threads, Some(1));
    }

    #[test]
    fn blank_variables_are_unset() {
        let s = env_settings(&[("SMOOCH_HTTP_ADDR", " "), ("SMOOCH_PUBLIC_URL", "")]).unwrap();
        assert_eq!(s.http_addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(s.public_url, None);
    }

    #[test]
    fn a_bad_value_is_one_error_naming_its_variable() {
        for (name, value, says) in [
            ("SMOOCH_HTTP_ADDR", "nowhere", "SMOOCH_HTTP_ADDR is invalid"),
            (
                "SMOOCH_DATABASE_URL",
                "mysql://x",
                "SMOOCH_DATABASE_URL is invalid: expected a URL starting with postgres://",
            ),
            (
                "SMOOCH_DATABASE_MAX_CONNECTIONS",
                "0",
                "SMOOCH_DATABASE_MAX_CONNECTIONS is invalid: expected a positive integer",
            ),
            (
                "SMOOCH_USERS_GRPC_ADDR",
                "users",
                "SMOOCH_USERS_GRPC_ADDR is invalid: expected host:port",
            ),
            (
                "SMOOCH_WEBHOOK_TIMEOUT_MS",
                "soon",
                "SMOOCH_WEBHOOK_TIMEOUT_MS is invalid",
            ),
            (
                "SMOOCH_RATE_LIMIT_APP_PER_SECOND",
                "-1",
                "SMOOCH_RATE_LIMIT_APP_PER_SECOND",
            ),
            ("SMOOCH_LOG_FORMAT", "xml", "SMOOCH_LOG_FORMAT is invalid"),
            (
                "SMOOCH_MESSAGE_WRITERS",
                "many",
                "SMOOCH_MESSAGE_WRITERS is invalid",
            ),
            (
                "SMOOCH_PUBLIC_URL",
                "ftp://x",
                "SMOOCH_PUBLIC_URL is invalid",
            ),
            (
                "SMOOCH_WORKER_THREADS",
                "0",
                "SMOOCH_WORKER_THREADS is invalid: expected a positive integer, got 0",
            ),
            (
                "SMOOCH_MAX_IN_FLIGHT",
                "0",
                "SMOOCH_MAX_IN_FLIGHT is invalid: expected a positive integer, got 0",
            ),
            (
                "SMOOCH_MAX_IN_FLIGHT",
                "18446744073709551615",
                "SMOOCH_MAX_IN_FLIGHT is invalid: expected at most",
            ),
            (
                "SMOOCH_ADMISSION_QUEUE",
                "18446744073709551615",
                "SMOOCH_ADMISSION_QUEUE is invalid: expected at most",
            ),
            (
                "SMOOCH_ADMISSION_QUEUE",
                "-1",
                "SMOOCH_ADMISSION_QUEUE is invalid",
            ),
        ] {
            let error = env_settings(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(says), "{name}={value}: {error}");
        }
        let half_key = env_settings(&[("SMOOCH_ACCOUNT_KEY_ID", "act_1")])
            .unwrap_err()
            .to_string();
        assert!(half_key.contains("must be set together"), "{half_key}");
        for short in ["c2hvcnQ=", "not base64!"] {
            let error = env_settings(&[("SMOOCH_SECRETS_KEY", short)])
                .unwrap_err()
                .to_string();
            assert!(error.contains("SMOOCH_SECRETS_KEY is invalid"), "{error}");
        }
    }

    #[test]
    fn the_secrets_key_is_required_unless_falling_back_to_the_development_key() {
        let unset = env_settings(&[]).unwrap();
        let error = unset.secrets_key(false).unwrap_err().to_string();
        assert!(error.contains("SMOOCH_SECRETS_KEY is required"), "{error}");
        assert_eq!(
            unset.secrets_key(true).unwrap().id(),
            users::SecretsKey::development().id()
        );
        // base64 of 32 bytes of 0x01: a test value.
        let set = env_settings(&[(
            "SMOOCH_SECRETS_KEY",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        )])
        .unwrap();
        assert_eq!(
            set.secrets_key(false).unwrap().id(),
            users::SecretsKey::new(&[1; 32]).id()
        );
    }

    #[test]
    fn every_variable_is_listed_once() {
        let names = Settings::variables().unwrap();
        for name in [
            "SMOOCH_HTTP_ADDR",
            "SMOOCH_ACCOUNT_SECRET",
            "SMOOCH_WEBHOOK_MAX_RETRIES",
            "SMOOCH_PUSH_APNS_URL",
            "SMOOCH_PUSH_FCM_URL",
            "SMOOCH_RATE_LIMIT_USER_BURST",
            "SMOOCH_AUTH_CACHE_REDIS_TTL_S",
            "SMOOCH_LOG_FORMAT",
        ] {
            assert_eq!(
                names.iter().filter(|n| *n == name).count(),
                1,
                "{name} in {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.ends_with("WEBHOOK_WORKER")),
            "{names:?}"
        );
    }

    #[test]
    fn the_configuration_page_lists_every_variable() {
        let page = include_str!("../docs/configuration.md");
        for name in Settings::variables().unwrap() {
            assert!(
                page.contains(&format!("| `{name}` |")),
                "docs/configuration.md has no row for {name}"
            );
        }
    }

    #[test]
    fn printed_settings_hide_secrets_and_passwords() {
        let s = env_settings(&[
            ("SMOOCH_ACCOUNT_KEY_ID", "act_1"),
            ("SMOOCH_ACCOUNT_SECRET", "s3cret"),
            (
                "SMOOCH_SECRETS_KEY",
                "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            ),
            ("SMOOCH_AMQP_URL", "amqp://user:hunter2@mq:5672/%2f"),
            ("SMOOCH_DATABASE_URL", "postgres://app:pw@db/smooch"),
        ])
        .unwrap();
        let printed = s.to_redacted_json().unwrap();
        for secret in ["s3cret", "hunter2", ":pw@", "AQEBAQEB"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(
            printed.contains("amqp://user:(hidden)@mq:5672/%2f"),
            "{printed}"
        );
        assert!(
            printed.contains("\"account_key_id\": \"act_1\""),
            "{printed}"
        );
        assert!(printed.contains("\"webhook_max_retries\": 5"), "{printed}");
    }
}
