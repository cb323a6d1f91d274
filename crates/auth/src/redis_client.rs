//! One Redis client shared by the credential cache, revocations and rate limits: keys under
//! a prefix, a lazily opened, self-reconnecting connection, a timeout on every call, and a
//! short back-off after a failure so that a Redis outage costs one failed call per second,
//! not one per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};

/// Settings of the Redis client.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL (`SMOOCH_REDIS_URL`), such as `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prefix of every key and channel (`SMOOCH_REDIS_PREFIX`), such as `smooch`.
    pub prefix: String,
    /// Deadline of each call. Default 250 ms.
    pub timeout: Duration,
    /// How long Redis is skipped after a failed call before it is tried again. Default 1 s.
    pub backoff: Duration,
}

impl RedisConfig {
    /// A config with default timeouts.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: prefix.into(),
            timeout: Duration::from_millis(250),
            backoff: Duration::from_secs(1),
        }
    }
}

/// A cheap-to-clone handle on Redis. Creating it does not connect: the connection opens on
/// first use and reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: RedisConfig,
    manager: OnceLock<ConnectionManager>,
    connecting: AtomicBool,
    /// Milliseconds since `epoch` until which calls are skipped; 0 when healthy.
    down_until_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only the prefix is shown.
        f.debug_struct("RedisClient")
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A client for `config`; fails only on a malformed URL.
    pub fn new(config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(Error::InvalidUrl)?;
        Ok(RedisClient {
            inner: Arc::new(Inner {
                client,
                config,
                manager: OnceLock::new(),
                connecting: AtomicBool::new(false),
                down_until_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        })
    }

    /// The full name of `key` under the configured prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.config.prefix)
    }

    /// The underlying client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// The configured per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// Whether calls are currently attempted: false during the back-off after a failure.
    pub fn is_healthy(&self) -> bool {
        self.now_ms() >= self.inner.down_until_ms.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark_down(&self) {
        let backoff = u64::try_from(self.inner.config.backoff.as_millis()).unwrap_or(u64::MAX);
        let until = self.now_ms().saturating_add(backoff).max(1);
        let was_healthy = self.inner.down_until_ms.swap(until, Ordering::Relaxed) == 0;
        if was_healthy {
            tracing::warn!(prefix = %self.inner.config.prefix, "redis unavailable, falling back");
        }
    }

    fn mark_up(&self) {
        if self.inner.down_until_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(prefix = %self.inner.config.prefix, "redis available again");
        }
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        if let Some(manager) = self.inner.manager.get() {
            return Ok(manager.clone());
        }
        // One connection attempt at a time; concurrent callers skip Redis meanwhile.
        if self.inner.connecting.swap(true, Ordering::AcqRel) {
            return Err(Error::Down);
        }
        let timeout = self.inner.config.timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let connected = tokio::time::timeout(
            timeout.saturating_mul(2),
            ConnectionManager::new_with_config(self.inner.client.clone(), config),
        )
        .await;
        self.inner.connecting.store(false, Ordering::Release);
        match connected {
            Ok(Ok(manager)) => Ok(self.inner.manager.get_or_init(|| manager).clone()),
            Ok(Err(e)) => Err(Error::Redis(e)),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Runs `call` on the shared connection with the configured deadline. During the
    /// back-off after a failure it fails at once with [`Error::Down`].
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_healthy() {
            return Err(Error::Down);
        }
        let result = match self.connection().await {
            Ok(conn) => match tokio::time::timeout(self.inner.config.timeout, call(conn)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(Error::Redis(e)),
                Err(_) => Err(Error::Timeout),
            },
            Err(Error::Down) => return Err(Error::Down),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.mark_up(),
            Err(e) => {
                tracing::debug!(error = %e, "redis call failed");
                self.mark_down();
            }
        }
        result
    }

    /// Sends `PING`, ignoring the back-off: for readiness checks.
    pub async fn ping(&self) -> bool {
        let conn = match self.connection().await {
            Ok(conn) => conn,
            Err(_) => return false,
        };
        let pong = tokio::time::timeout(self.inner.config.timeout, async move {
            let mut conn = conn;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await;
        match pong {
            Ok(Ok(_)) => {
                self.mark_up();
                true
            }
            _ => {
                self.mark_down();
                false
            }
        }
    }
}
