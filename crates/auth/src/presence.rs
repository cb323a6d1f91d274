//! Who is watching their conversation live: the real-time endpoint (`/faye`, any gateway
//! replica) marks an app user as watching while one of its clients holds a subscription to
//! the user's conversation and keeps polling, and the push worker skips the push for a user
//! who is watching.
//!
//! One sorted set per app user, `{prefix}:watching:{appId}:{appUserId}`: its members are
//! the Bayeux client ids, each scored with the time (Unix ms) its mark lapses. A client's
//! mark is set when it subscribes and refreshed on each `/meta/connect`; it is removed when
//! the client unsubscribes or disconnects, and lapses by itself when the client stops
//! polling (the key itself expires with its newest mark).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::redis_client::RedisClient;

/// Marks of watching users, in Redis.
#[derive(Debug, Clone)]
pub struct Presence {
    redis: RedisClient,
    ttl: Duration,
}

/// The wall clock in Unix milliseconds: the scores of the marks kept in Redis, which every
/// replica reads.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Presence {
    /// Marks on `redis` that last `ttl` past their latest refresh (readers pass any `ttl`).
    pub fn new(redis: RedisClient, ttl: Duration) -> Self {
        Presence { redis, ttl }
    }

    fn key(&self, app_id: &str, app_user_id: &str) -> String {
        self.redis.key(&format!("watching:{app_id}:{app_user_id}"))
    }

    /// Marks (or keeps marked) `client_id` as watching the conversation of `app_user_id`.
    pub async fn watch(&self, app_id: &str, app_user_id: &str, client_id: &str) -> Result<()> {
        let key = self.key(app_id, app_user_id);
        let now = now_ms();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        self.redis
            .run(|mut conn| async move {
                redis::pipe()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(now.saturating_add(ttl_ms))
                    .arg(client_id)
                    .ignore()
                    // Lapsed marks of clients that went away without a word.
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl_ms)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Removes `client_id`'s mark on the conversation of `app_user_id`.
    pub async fn leave(&self, app_id: &str, app_user_id: &str, client_id: &str) -> Result<()> {
        let key = self.key(app_id, app_user_id);
        self.redis
            .run(|mut conn| async move {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(client_id)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Whether some client is watching the conversation of `app_user_id` now.
    pub async fn is_watching(&self, app_id: &str, app_user_id: &str) -> Result<bool> {
        let key = self.key(app_id, app_user_id);
        let now = now_ms();
        let live = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("ZCOUNT")
                    .arg(&key)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        Ok(live > 0)
    }
}
