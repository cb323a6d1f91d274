//! The credential cache: app token → app and `kid` → key, looked up in a small in-process
//! cache, then in Redis, then in the source of truth (the users service, behind the
//! [`CredentialSource`] trait the gateway implements).
//!
//! Correctness across replicas rests on three rules:
//! - every replica listens to the revocation channel and drops what it names; while it does
//!   not listen (Redis down, reconnecting) local entries live only
//!   [`CacheConfig::degraded_local_ttl`], which bounds staleness;
//! - Redis entries are filled with `SET NX`, so a tombstone written by a revocation wins
//!   over a value a replica read just before the change;
//! - a local fill that raced with a revocation is undone (see [`CredentialCache::lookup`]).
//!
//! Unknown tokens and keys are cached too, briefly, so that a flood of one bad credential
//! does not reach Postgres. Secrets live in memory and in Redis, never in logs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use moka::sync::Cache;
use moka::Expiry;
use redis::AsyncCommands as _;

use crate::redis_client::RedisClient;
use crate::revocation::{self, Revocation, Stored};
use crate::{Credential, KeyInfo, Principal};

/// Where credentials come from when no cache knows them: the users service.
pub trait CredentialSource: Send + Sync + 'static {
    /// The id of the app whose app token is `token`; `Ok(None)` when there is none.
    fn app_for_token(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<String>, domain::Error>> + Send;

    /// The key whose id is `kid`; `Ok(None)` when there is none.
    fn key(&self, kid: &str)
        -> impl Future<Output = Result<Option<KeyInfo>, domain::Error>> + Send;
}

/// A cache kept beside the credential cache (the gateway's app users) that must forget
/// what the revocation channel names, and everything when the channel was lost; see
/// [`CredentialCache::add_follower`].
pub trait Follower: Send + Sync + 'static {
    /// `revocation` arrived.
    fn revoked(&self, revocation: &Revocation);
    /// Revocations may have been missed: forget everything.
    fn cleared(&self);
}

/// Lifetimes and size of the cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Local lifetime of a found credential while revocations are being received. Default
    /// 30 s (`SMOOCH_AUTH_CACHE_LOCAL_TTL_MS`).
    #[serde(rename = "auth_cache_local_ttl_ms", with = "domain::config::millis")]
    pub local_ttl: Duration,
    /// Local lifetime while revocations cannot be received (Redis down): the staleness
    /// bound during an outage. Default 1 s (`SMOOCH_AUTH_CACHE_DEGRADED_TTL_MS`).
    #[serde(rename = "auth_cache_degraded_ttl_ms", with = "domain::config::millis")]
    pub degraded_local_ttl: Duration,
    /// Local lifetime of an unknown credential. Default 2 s
    /// (`SMOOCH_AUTH_CACHE_NEGATIVE_TTL_MS`).
    #[serde(rename = "auth_cache_negative_ttl_ms", with = "domain::config::millis")]
    pub negative_local_ttl: Duration,
    /// Redis lifetime of a found credential, and of revocation tombstones. Default 5 min
    /// (`SMOOCH_AUTH_CACHE_REDIS_TTL_S`).
    #[serde(rename = "auth_cache_redis_ttl_s", with = "domain::config::seconds")]
    pub redis_ttl: Duration,
    /// Redis lifetime of an unknown credential. Default 10 s
    /// (`SMOOCH_AUTH_CACHE_NEGATIVE_REDIS_TTL_S`).
    #[serde(
        rename = "auth_cache_negative_redis_ttl_s",
        with = "domain::config::seconds"
    )]
    pub negative_redis_ttl: Duration,
    /// Most entries kept in memory, per kind. Default 100 000
    /// (`SMOOCH_AUTH_CACHE_MAX_ENTRIES`).
    #[serde(rename = "auth_cache_max_entries")]
    pub max_entries: u64,
    /// Lifetime of an app user the gateway keeps for the paths that resolve one on every
    /// request (posting, reading the conversation), while the revocation channel, which
    /// names changed users, is subscribed; zero turns that cache off. Default 30 s
    /// (`SMOOCH_APP_USER_CACHE_TTL_MS`).
    #[serde(rename = "app_user_cache_ttl_ms", with = "domain::config::millis")]
    pub app_user_ttl: Duration,
    /// Most memory the gateway's app users take, in MiB (their encoded size; the least
    /// used go first). Default 32 (`SMOOCH_APP_USER_CACHE_MAX_MB`).
    #[serde(rename = "app_user_cache_max_mb")]
    pub app_user_max_mb: u64,
    /// Clock skew allowed on a JWT's `exp` and `nbf`. Default 5 s (`SMOOCH_JWT_LEEWAY_S`).
    #[serde(rename = "jwt_leeway_s", with = "domain::config::seconds")]
    pub jwt_leeway: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            local_ttl: Duration::from_secs(30),
            degraded_local_ttl: Duration::from_secs(1),
            negative_local_ttl: Duration::from_secs(2),
            redis_ttl: Duration::from_secs(300),
            negative_redis_ttl: Duration::from_secs(10),
            max_entries: 100_000,
            app_user_ttl: Duration::from_secs(30),
            app_user_max_mb: 32,
            jwt_leeway: crate::DEFAULT_JWT_LEEWAY,
        }
    }
}

/// A local entry: the value (`None` for unknown) and how long it lives.
#[derive(Clone)]
struct Entry<T> {
    value: Option<T>,
    ttl: Duration,
}

struct EntryTtl;

impl<K, T> Expiry<K, Entry<T>> for EntryTtl {
    fn expire_after_create(&self, _key: &K, value: &Entry<T>, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Entry<T>,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

fn local_cache<T: Clone + Send + Sync + 'static>(max: u64) -> Cache<String, Entry<T>> {
    Cache::builder()
        .max_capacity(max)
        .expire_after(EntryTtl)
        .build()
}

/// The cache in front of a [`CredentialSource`]. Share it behind an `Arc`.
pub struct CredentialCache<S> {
    source: S,
    redis: Option<RedisClient>,
    config: CacheConfig,
    /// App id by token hash.
    tokens: Cache<String, Entry<String>>,
    /// Keys by id.
    keys: Cache<String, Entry<Arc<KeyInfo>>>,
    /// Bumped by every revocation and every change of `listening`: a fill that started
    /// before a bump must not survive it.
    generation: AtomicU64,
    /// Whether the revocation channel is subscribed.
    listening: AtomicBool,
    /// Caches that forget with this one.
    followers: std::sync::RwLock<Vec<Arc<dyn Follower>>>,
}

impl<S> std::fmt::Debug for CredentialCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("redis", &self.redis)
            .field("config", &self.config)
            .field("tokens", &self.tokens.entry_count())
            .field("keys", &self.keys.entry_count())
            .field("listening", &self.is_listening())
            .finish_non_exhaustive()
    }
}

impl<S: CredentialSource> CredentialCache<S> {
    /// A cache in front of `source`, using Redis when given. Call
    /// [`CredentialCache::spawn_listener`] to receive revocations.
    pub fn new(source: S, redis: Option<RedisClient>, config: CacheConfig) -> Self {
        CredentialCache {
            source,
            redis,
            tokens: local_cache(config.max_entries),
            keys: local_cache(config.max_entries),
            config,
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            followers: std::sync::RwLock::default(),
        }
    }

    /// Verifies `credential` and returns who it stands for: 401 for unknown or invalid
    /// credentials, the source's error when it fails (never cached).
    pub async fn authenticate(&self, credential: &Credential) -> Result<Principal, domain::Error> {
        match credential {
            Credential::AppToken(token) => match self.app_for_token(token).await? {
                Some(app_id) => Ok(Principal::AppToken {
                    app_id: app_id.into(),
                }),
                None => Err(domain::Error::unauthorized("invalid app token")),
            },
            Credential::Jwt { token, kid } => match self.key(kid).await? {
                Some(key) => crate::verify_jwt_with(token, &key, self.config.jwt_leeway),
                None => Err(domain::Error::unauthorized(
                    "invalid JWT: its `kid` names no known key",
                )),
            },
        }
    }

    /// The app of an app token, through the caches.
    pub async fn app_for_token(&self, token: &str) -> Result<Option<String>, domain::Error> {
        let hash = revocation::token_hash(token);
        let redis_key = revocation::token_key(&hash);
        self.lookup(
            &self.tokens,
            hash,
            redis_key,
            |stored| match stored {
                Stored::App { app_id } => Some(app_id),
                _ => None,
            },
            |app_id| Stored::App {
                app_id: app_id.clone(),
            },
            self.source.app_for_token(token),
        )
        .await
    }

    /// A key by id, through the caches.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<KeyInfo>>, domain::Error> {
        let redis_key = revocation::kid_key(kid);
        let fetch = async { Ok(self.source.key(kid).await?.map(Arc::new)) };
        self.lookup(
            &self.keys,
            kid.to_owned(),
            redis_key,
            |stored| match stored {
                Stored::Key { id, app_id, secret } => {
                    Some(Arc::new(KeyInfo { id, app_id, secret }))
                }
                _ => None,
            },
            |key| Stored::Key {
                id: key.id.clone(),
                app_id: key.app_id.clone(),
                secret: key.secret.clone(),
            },
            fetch,
        )
        .await
    }

    /// Local cache, then Redis, then `fetch` (only polled on a miss).
    async fn lookup<T: Clone + Send + Sync + 'static>(
        &self,
        local: &Cache<String, Entry<T>>,
        local_key: String,
        redis_key: String,
        from_stored: impl FnOnce(Stored) -> Option<T>,
        to_stored: impl FnOnce(&T) -> Stored,
        fetch: impl Future<Output = Result<Option<T>, domain::Error>>,
    ) -> Result<Option<T>, domain::Error> {
        if let Some(entry) = local.get(&local_key) {
            lookups("local");
            return Ok(entry.value);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(redis) = &self.redis {
            match self.redis_get(redis, &redis_key).await {
                Some(Stored::Missing) => {
                    lookups("redis");
                    self.remember(local, local_key, None, generation);
                    return Ok(None);
                }
                Some(stored) => {
                    if let Some(value) = from_stored(stored) {
                        lookups("redis");
                        self.remember(local, local_key, Some(value.clone()), generation);
                        return Ok(Some(value));
                    }
                }
                None => {}
            }
        }
        lookups("source");
        let found = fetch.await?;
        if let Some(redis) = &self.redis {
            let (stored, ttl) = match &found {
                Some(value) => (to_stored(value), self.config.redis_ttl),
                None => (Stored::Missing, self.config.negative_redis_ttl),
            };
            self.redis_fill(redis, &redis_key, &stored, ttl).await;
        }
        self.remember(local, local_key, found.clone(), generation);
        Ok(found)
    }

    /// Keeps a value locally, unless a revocation arrived since `generation` was read.
    fn remember<T: Clone + Send + Sync + 'static>(
        &self,
        local: &Cache<String, Entry<T>>,
        key: String,
        value: Option<T>,
        generation: u64,
    ) {
        let ttl = match value {
            Some(_) => self.local_ttl(),
            None => self.config.negative_local_ttl.min(self.local_ttl()),
        };
        local.insert(key.clone(), Entry { value, ttl });
        // Insert first, check after: a revocation that bumps the generation before this
        // check is seen here; one that bumps it after also invalidates after the insert.
        if self.generation.load(Ordering::SeqCst) != generation {
            local.invalidate(&key);
        }
    }

    fn local_ttl(&self) -> Duration {
        let fresh = self.is_listening() && self.redis.as_ref().is_some_and(|r| r.is_healthy());
        if fresh {
            self.config.local_ttl
        } else {
            self.config.degraded_local_ttl
        }
    }

    async fn redis_get(&self, redis: &RedisClient, key: &str) -> Option<Stored> {
        let key = redis.key(key);
        let raw = redis
            .run(|mut conn| async move { conn.get::<_, Option<String>>(key).await })
            .await
            .ok()??;
        match serde_json::from_str(&raw) {
            Ok(stored) => Some(stored),
            Err(e) => {
                tracing::debug!(error = %e, "undecodable credential cache entry ignored");
                None
            }
        }
    }

    async fn redis_fill(&self, redis: &RedisClient, key: &str, stored: &Stored, ttl: Duration) {
        let Ok(value) = serde_json::to_string(stored) else {
            return;
        };
        let key = redis.key(key);
        let ttl = ttl.as_secs().max(1);
        // NX: a revocation's tombstone, written meanwhile, must win.
        let _ = redis
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
    }
}

impl<S> CredentialCache<S> {
    /// Makes `follower` forget what this cache forgets, from now on.
    pub fn add_follower(&self, follower: Arc<dyn Follower>) {
        self.followers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(follower);
    }

    fn followers(&self) -> Vec<Arc<dyn Follower>> {
        self.followers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Drops what `revocation` names from the local cache (and its followers').
    pub fn revoke_local(&self, revocation: &Revocation) {
        // Only a credential named here can race with a fill: app-user changes, the common
        // case, leave credential lookups alone.
        if revocation.names_credentials() {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        for hash in &revocation.token_hashes {
            self.tokens.invalidate(hash);
        }
        for kid in &revocation.key_ids {
            self.keys.invalidate(kid);
        }
        for follower in self.followers() {
            follower.revoked(revocation);
        }
    }

    /// Drops every local entry (and the followers').
    pub fn clear_local(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.tokens.invalidate_all();
        self.keys.invalidate_all();
        for follower in self.followers() {
            follower.cleared();
        }
    }

    /// Whether revocations are being received.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
        // Entries cached under the other regime may have missed revocations (or carry the
        // long TTL that only listening justifies).
        self.clear_local();
    }
}

impl<S: Send + Sync + 'static> CredentialCache<S> {
    /// Starts the task that receives revocations on `tasks` (when Redis is configured): it
    /// subscribes, drops what each revocation names, and resubscribes after Redis comes
    /// back. It ends at the tasks' shutdown, or when the cache is dropped.
    pub fn spawn_listener(self: &Arc<Self>, tasks: &tasks::Tasks) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let (cache, shutdown) = (Arc::downgrade(self), tasks.shutdown().clone());
        tasks.spawn("credential revocation listener", async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = listen(cache, redis) => {}
            }
        });
    }
}

const PING_EVERY: Duration = Duration::from_secs(5);

async fn listen<S: Send + Sync + 'static>(cache: Weak<CredentialCache<S>>, redis: RedisClient) {
    let channel = redis.key(revocation::CHANNEL);
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = tokio::time::timeout(redis.timeout().saturating_mul(4), async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                let Some(strong) = cache.upgrade() else {
                    return;
                };
                strong.set_listening(true);
                drop(strong);
                tracing::info!(%channel, "listening for credential revocations");
                delay = Duration::from_millis(100);
                let dropped = receive(&cache, &redis, pubsub).await;
                let Some(strong) = cache.upgrade() else {
                    return;
                };
                strong.set_listening(false);
                if dropped {
                    return;
                }
                tracing::warn!(%channel, "revocation channel lost, resubscribing");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "revocation channel subscription failed"),
            Err(_) => tracing::debug!("revocation channel subscription timed out"),
        }
        if cache.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Applies revocations until the connection ends (false) or the cache is dropped (true).
async fn receive<S>(
    cache: &Weak<CredentialCache<S>>,
    redis: &RedisClient,
    pubsub: redis::aio::PubSub,
) -> bool {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return false;
                };
                let Some(cache) = cache.upgrade() else {
                    return true;
                };
                match serde_json::from_slice::<Revocation>(message.get_payload_bytes()) {
                    Ok(revocation) => cache.revoke_local(&revocation),
                    // Unreadable: drop everything rather than risk keeping a revoked entry.
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable revocation, clearing the cache");
                        cache.clear_local();
                    }
                }
            }
            _ = ping.tick() => {
                if cache.strong_count() == 0 {
                    return true;
                }
                // A half-open connection delivers nothing and reports no error.
                let pong = tokio::time::timeout(
                    redis.timeout().saturating_mul(4),
                    sink.ping::<redis::Value>(),
                )
                .await;
                if !matches!(pong, Ok(Ok(_))) {
                    return false;
                }
            }
        }
    }
}

/// Counts a credential lookup by where it was answered: `local`, `redis` or `source` (the
/// users service). The hit ratio is (local + redis) / all.
fn lookups(answered_by: &'static str) {
    metrics::counter!("credential_cache_lookups_total", "answered_by" => answered_by).increment(1);
}
