//! Revocations: what the users service announces after it deletes an app or a key or rotates
//! an app token. The Redis entries are overwritten with tombstones (so that a gateway
//! filling the cache with a value it read just before the change cannot bring it back) and
//! the revocation is published on a channel every gateway replica listens to.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::redis_client::RedisClient;

/// The Redis key suffix of a cached app token, by its hash: raw tokens are never stored.
pub(crate) fn token_key(token_hash: &str) -> String {
    format!("auth:token:{token_hash}")
}

/// The Redis key suffix of a cached key (`kid`).
pub(crate) fn kid_key(kid: &str) -> String {
    format!("auth:key:{kid}")
}

/// The channel suffix revocations are published on.
pub(crate) const CHANNEL: &str = "auth:revoked";

/// The hex SHA-256 of an app token: how caches and broadcasts name it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What the gateways' caches must forget: credentials that stopped being valid, and app
/// users whose record changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Hashes ([`token_hash`]) of revoked app tokens.
    #[serde(default)]
    pub token_hashes: Vec<String>,
    /// Ids of deleted keys.
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// App users whose profile, devices or state changed, or who were merged away or
    /// deleted (see [`crate::cache::Follower`]). Nothing is written to Redis for them: only
    /// the gateways' local caches hold app users.
    #[serde(default)]
    pub app_users: Vec<AppUserChange>,
}

/// An app user whose record changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUserChange {
    /// Its app.
    pub app_id: String,
    /// Its `_id`.
    pub app_user_id: String,
}

impl Revocation {
    /// A revocation of `tokens` (hashed here) and `key_ids`.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>, key_ids: Vec<String>) -> Self {
        Revocation {
            token_hashes: tokens.into_iter().map(token_hash).collect(),
            key_ids,
            app_users: Vec::new(),
        }
    }

    /// The change of the app users `app_user_ids` of `app_id`.
    pub fn app_users<'a>(app_id: &str, app_user_ids: impl IntoIterator<Item = &'a str>) -> Self {
        Revocation {
            app_users: app_user_ids
                .into_iter()
                .map(|id| AppUserChange {
                    app_id: app_id.to_owned(),
                    app_user_id: id.to_owned(),
                })
                .collect(),
            ..Revocation::default()
        }
    }

    /// Whether it names app tokens or keys (not only app users).
    pub fn names_credentials(&self) -> bool {
        !self.token_hashes.is_empty() || !self.key_ids.is_empty()
    }

    /// Whether it names nothing.
    pub fn is_empty(&self) -> bool {
        !self.names_credentials() && self.app_users.is_empty()
    }
}

/// What a cache entry in Redis holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Stored {
    /// An app token's app.
    App { app_id: String },
    /// A key.
    Key {
        id: String,
        app_id: Option<String>,
        secret: String,
    },
    /// Unknown or revoked.
    Missing,
}

/// Publishes revocations; used by the users service after its transaction commits.
#[derive(Debug, Clone)]
pub struct Revoker {
    redis: RedisClient,
    tombstone_ttl: Duration,
    retry_for: Duration,
    /// Where retries run: they end with the service's shutdown.
    tasks: tasks::Tasks,
}

impl Revoker {
    /// A revoker whose tombstones live `tombstone_ttl` (at least as long as a gateway's
    /// Redis fill can take; the cache's Redis TTL is a safe choice) and which keeps retrying
    /// a failed publication for `retry_for` (as a task on `tasks`, until their shutdown).
    pub fn new(
        redis: RedisClient,
        tombstone_ttl: Duration,
        retry_for: Duration,
        tasks: tasks::Tasks,
    ) -> Self {
        Revoker {
            redis,
            tombstone_ttl,
            retry_for,
            tasks,
        }
    }

    /// Writes tombstones and publishes `revocation` once.
    pub async fn publish(&self, revocation: &Revocation) -> Result<()> {
        let payload = serde_json::to_string(revocation)?;
        let tombstone = serde_json::to_string(&Stored::Missing)?;
        let ttl = self.tombstone_ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for hash in &revocation.token_hashes {
            pipe.set_ex(self.redis.key(&token_key(hash)), &tombstone, ttl)
                .ignore();
        }
        for kid in &revocation.key_ids {
            pipe.set_ex(self.redis.key(&kid_key(kid)), &tombstone, ttl)
                .ignore();
        }
        pipe.publish(self.redis.key(CHANNEL), payload).ignore();
        self.redis
            .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// Publishes `revocation`, and when that fails keeps retrying in the background (with
    /// growing delays, for the configured time) so that a Redis outage during a deletion does
    /// not leave stale entries once Redis returns; the service's shutdown ends the retries.
    /// Returns once the first attempt is done.
    pub async fn revoke(&self, revocation: Revocation) {
        if revocation.is_empty() {
            return;
        }
        match self.publish(&revocation).await {
            Ok(()) => tracing::debug!(
                tokens = revocation.token_hashes.len(),
                keys = revocation.key_ids.len(),
                "revocation published"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "revocation not published, retrying in background");
                let revoker = self.clone();
                self.tasks.spawn("revocation retry", async move {
                    revoker.retry(revocation).await
                });
            }
        }
    }

    async fn retry(&self, revocation: Revocation) {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        let shutdown = self.tasks.shutdown();
        while started.elapsed() < self.retry_for {
            tokio::select! {
                () = shutdown.cancelled() => {
                    tracing::warn!(
                        key_ids = ?revocation.key_ids,
                        "revocation retry abandoned at shutdown; stale cache entries expire with their TTL"
                    );
                    return;
                }
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
            if self.publish(&revocation).await.is_ok() {
                tracing::info!("revocation published after retries");
                return;
            }
        }
        tracing::error!(
            key_ids = ?revocation.key_ids,
            "revocation never published; stale cache entries expire with their TTL"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn revocations_hash_tokens_and_round_trip() {
        let r = Revocation::new(["tok"], vec!["kid1".into()]);
        assert_eq!(r.token_hashes[0].len(), 64);
        assert_ne!(r.token_hashes[0], "tok");
        let back: Revocation = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(Revocation::default().is_empty());
        // A revocation from before app users were named still reads.
        let old: Revocation =
            serde_json::from_str(r#"{"token_hashes":[],"key_ids":["k"]}"#).unwrap();
        assert!(old.app_users.is_empty());
        let changed = Revocation::app_users("a1", ["u1"]);
        assert!(!changed.is_empty());
        assert_eq!(changed.app_users[0].app_user_id, "u1");
    }

    #[test]
    fn stored_values_are_tagged() {
        let s = serde_json::to_string(&Stored::App {
            app_id: "a1".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"t":"app","app_id":"a1"}"#);
        assert_eq!(
            serde_json::from_str::<Stored>(r#"{"t":"missing"}"#).unwrap(),
            Stored::Missing
        );
    }
}
