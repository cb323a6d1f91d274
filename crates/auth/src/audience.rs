//! Which apps have real-time clients anywhere: a gateway records each app its clients
//! watch, and the outbox relays copy to the real-time exchange only the events of apps
//! recorded here, instead of handing the broker copies no gateway binds.
//!
//! One sorted set, `{prefix}:realtime:apps`: its members are app ids, each scored with the
//! time (Unix ms) until which some gateway vouches for a watcher. A gateway records an app
//! before it binds the app and answers the client's subscribe, so every event committed
//! after that answer finds the app here; it records again every app it still watches on
//! each refresh, and scores only ever grow (`ZADD GT`): a gateway whose clients left lets
//! its mark lapse, never cutting another's short. Lapsed members are removed on the way.
//!
//! A relay that cannot ask (Redis down, a timeout) copies every event, as it did before
//! this registry; one that learned an app is watched until some time needs no question
//! about that app until then (a copy too many costs nothing but the broker's time).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::Result;
use crate::presence::now_ms;
use crate::redis_client::RedisClient;

/// The registry of watched apps, in Redis.
#[derive(Debug, Clone)]
pub struct Audience {
    redis: RedisClient,
    /// `{prefix}:realtime:apps`, formed once: the relay asks on every batch.
    key: String,
    ttl: Duration,
    /// Apps known watched, and until when (Unix ms): asked of Redis no sooner.
    known: Arc<Mutex<HashMap<String, i64>>>,
}

impl Audience {
    /// The registry on `redis`, as a gateway keeps it: the marks it sets last `ttl`.
    pub fn new(redis: RedisClient, ttl: Duration) -> Self {
        Audience {
            key: redis.key("realtime:apps"),
            redis,
            ttl,
            known: Arc::default(),
        }
    }

    /// The registry on `redis`, as a relay reads it ([`Audience::watched`]); it sets no
    /// marks.
    pub fn reader(redis: RedisClient) -> Self {
        Audience::new(redis, Duration::ZERO)
    }

    /// Records that clients here watch `apps`, for the next `ttl`.
    pub async fn watch(&self, apps: &[String]) -> Result<()> {
        if apps.is_empty() {
            return Ok(());
        }
        let key = &self.key;
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        self.redis
            .run(|mut conn| async move {
                let mut add = redis::cmd("ZADD");
                add.arg(key).arg("GT");
                for app in apps {
                    add.arg(until).arg(app);
                }
                redis::pipe()
                    .add_command(add)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Of `apps`, those some gateway watches now. Apps learned watched earlier are answered
    /// from memory until their mark's time; the others are asked of Redis in one call.
    pub async fn watched(&self, apps: &HashSet<&str>) -> Result<HashSet<String>> {
        let now = now_ms();
        let mut watched = HashSet::new();
        let mut ask = Vec::new();
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.retain(|_, until| *until > now);
            for app in apps {
                if known.contains_key(*app) {
                    watched.insert((*app).to_owned());
                } else {
                    ask.push(*app);
                }
            }
        }
        if ask.is_empty() {
            return Ok(watched);
        }
        let (key, asked) = (&self.key, &ask);
        let scores = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("ZMSCORE")
                    .arg(key)
                    .arg(asked)
                    .query_async::<Vec<Option<f64>>>(&mut conn)
                    .await
            })
            .await?;
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for (app, score) in ask.into_iter().zip(scores) {
            // Scores are whole milliseconds, well within an f64's exact integers.
            let Some(until) = score.map(|s| s as i64).filter(|until| *until > now) else {
                continue;
            };
            known.insert(app.to_owned(), until);
            watched.insert(app.to_owned());
        }
        Ok(watched)
    }
}
