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
//! about that app until then (a copy too many costs nothing but the broker's time). An app
//! found unwatched is remembered for [`Audience::UNWATCHED_MEMORY`] from the moment the
//! question was sent, and a gateway that records an app it had not recorded waits that
//! long before it answers the subscribe ([`Audience::watch_new`]): a relay that found the
//! app unwatched before the record asks again before any event committed after the answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::presence::now_ms;
use crate::redis_client::RedisClient;

/// The registry of watched apps, in Redis.
#[derive(Debug, Clone)]
pub struct Audience {
    redis: RedisClient,
    ttl: Duration,
    /// What this reader learned: apps watched until when (Unix ms), and apps unwatched
    /// until when; asked of Redis no sooner.
    known: Arc<Mutex<Known>>,
}

#[derive(Debug, Default)]
struct Known {
    watched: HashMap<String, i64>,
    unwatched: HashMap<String, Instant>,
}

impl Audience {
    /// How long a reader takes an app it found unwatched for unwatched, counted from when
    /// it asked; [`Audience::watch_new`] waits as long.
    pub const UNWATCHED_MEMORY: Duration = Duration::from_millis(100);

    /// The registry on `redis`; the marks a gateway sets last `ttl` (readers pass any).
    pub fn new(redis: RedisClient, ttl: Duration) -> Self {
        Audience {
            redis,
            ttl,
            known: Arc::default(),
        }
    }

    fn key(&self) -> String {
        self.redis.key("realtime:apps")
    }

    /// Records that clients here watch `apps`, for the next `ttl`.
    pub async fn watch(&self, apps: &[String]) -> Result<()> {
        if apps.is_empty() {
            return Ok(());
        }
        let key = self.key();
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        self.redis
            .run(|mut conn| async move {
                let mut add = redis::cmd("ZADD");
                add.arg(&key).arg("GT");
                for app in apps {
                    add.arg(until).arg(app);
                }
                redis::pipe()
                    .add_command(add)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Records `apps`, as [`Audience::watch`], then waits until every reader that found
    /// them unwatched before has forgotten it: call it for apps this gateway had not
    /// recorded, before answering the subscribe that made it record them.
    pub async fn watch_new(&self, apps: &[String]) -> Result<()> {
        self.watch(apps).await?;
        tokio::time::sleep(Self::UNWATCHED_MEMORY).await;
        Ok(())
    }

    /// Of `apps`, those some gateway watches now. Apps this reader learned about are
    /// answered from memory (watched: until their record's time; unwatched: for
    /// [`Audience::UNWATCHED_MEMORY`]); the others are asked of Redis in one call.
    pub async fn watched(&self, apps: &HashSet<&str>) -> Result<HashSet<String>> {
        let now = now_ms();
        let asked_at = Instant::now();
        let mut watched = HashSet::new();
        let mut ask = Vec::new();
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.watched.retain(|_, until| *until > now);
            known.unwatched.retain(|_, until| *until > asked_at);
            for app in apps {
                if known.watched.contains_key(*app) {
                    watched.insert((*app).to_owned());
                } else if !known.unwatched.contains_key(*app) {
                    ask.push(*app);
                }
            }
        }
        if ask.is_empty() {
            return Ok(watched);
        }
        let key = self.key();
        let asked = ask.clone();
        let scores = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("ZMSCORE")
                    .arg(&key)
                    .arg(&asked)
                    .query_async::<Vec<Option<f64>>>(&mut conn)
                    .await
            })
            .await?;
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for (app, score) in ask.into_iter().zip(scores) {
            // Scores are whole milliseconds, well within an f64's exact integers.
            let Some(until) = score.map(|s| s as i64).filter(|until| *until > now) else {
                // From when the question was sent, not answered: a record made meanwhile
                // waits out this memory before its subscribe is answered.
                known
                    .unwatched
                    .insert(app.to_owned(), asked_at + Self::UNWATCHED_MEMORY);
                continue;
            };
            known.watched.insert(app.to_owned(), until);
            watched.insert(app.to_owned());
        }
        Ok(watched)
    }
}
