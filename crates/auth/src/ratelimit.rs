//! Rate limits kept in Redis: GCRA (the generic cell rate algorithm, a token bucket that
//! stores one timestamp per bucket) in a Lua script, so that checking several buckets (the
//! app's and the app user's) is one atomic round trip whose clock is Redis's own.

use std::time::Duration;

use crate::error::Result;
use crate::redis_client::RedisClient;

/// GCRA over every key at once: a request passes only when every bucket has room, and then
/// takes one unit from each. KEYS are the buckets; ARGV holds, per bucket, its emission
/// interval in microseconds and its burst. Replies `{allowed, bucket index, remaining,
/// retry after µs, reset after µs}` for the most restrictive bucket.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local denied, denied_retry = nil, -1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local stored = redis.call('GET', KEYS[i])
  local tat = stored and tonumber(stored) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if allow_at > now and allow_at - now > denied_retry then
    denied, denied_retry = i, allow_at - now
  end
  tats[i] = { tat = tat, new_tat = new_tat, interval = interval, burst = burst }
end
if denied then
  return { 0, denied - 1, 0, denied_retry, tats[denied].tat - now }
end
local best, best_remaining = 1, nil
for i = 1, #KEYS do
  local b = tats[i]
  redis.call('SET', KEYS[i], string.format('%d', b.new_tat), 'PX', math.ceil((b.new_tat - now) / 1000) + 1)
  local remaining = math.floor((now + b.interval * b.burst - b.new_tat) / b.interval)
  if best_remaining == nil or remaining < best_remaining then
    best, best_remaining = i, remaining
  end
end
return { 1, best - 1, best_remaining, 0, tats[best].new_tat - now }
";

/// A limit: a sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Sustained requests per second (fractions allowed: 0.5 is one every two seconds).
    pub per_second: f64,
    /// Requests allowed at once, from a full bucket.
    pub burst: u32,
}

impl Limit {
    /// Microseconds between two requests at the sustained rate (at least 1).
    fn interval_us(&self) -> u64 {
        if self.per_second <= 0.0 || !self.per_second.is_finite() {
            return u64::MAX / 4;
        }
        // Saturating float-to-int conversion; rates are far below a million per second.
        ((1_000_000.0 / self.per_second).round() as u64).max(1)
    }
}

/// One bucket: its key (under the prefix) and its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Key suffix, such as `rl:app:<appId>`.
    pub key: String,
    /// The limit of this bucket.
    pub limit: Limit,
}

impl Bucket {
    /// The bucket of an app.
    pub fn app(app_id: &str, limit: Limit) -> Self {
        Bucket {
            key: format!("rl:app:{app_id}"),
            limit,
        }
    }

    /// The bucket of one user of an app (a `userId` or an app user `_id`).
    pub fn user(app_id: &str, user: &str, limit: Limit) -> Self {
        Bucket {
            key: format!("rl:user:{app_id}:{user}"),
            limit,
        }
    }
}

/// The answer for one request, for the most restrictive bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The bucket's burst (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// When a refused request may be retried (`Retry-After`); zero when allowed.
    pub retry_after: Duration,
    /// When the bucket is full again (`X-RateLimit-Reset`).
    pub reset_after: Duration,
}

/// Checks buckets against Redis.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    redis: RedisClient,
    script: redis::Script,
}

impl RateLimiter {
    /// A limiter on `redis`.
    pub fn new(redis: RedisClient) -> Self {
        RateLimiter {
            redis,
            script: redis::Script::new(GCRA),
        }
    }

    /// Takes one request from every bucket, or none when any is empty. An error (Redis
    /// down) is for the caller to let the request through.
    pub async fn check(&self, buckets: &[Bucket]) -> Result<Decision> {
        if buckets.is_empty() {
            return Ok(Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                retry_after: Duration::ZERO,
                reset_after: Duration::ZERO,
            });
        }
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets {
            invocation
                .key(self.redis.key(&bucket.key))
                .arg(bucket.limit.interval_us())
                .arg(bucket.limit.burst.max(1));
        }
        let reply: Vec<i64> = self
            .redis
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let field = |i: usize| reply.get(i).copied().unwrap_or(0).max(0);
        let index = usize::try_from(field(1))
            .unwrap_or(0)
            .min(buckets.len() - 1);
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: field(0) == 1,
            limit: buckets[index].limit.burst.max(1),
            remaining: u32::try_from(field(2)).unwrap_or(u32::MAX),
            retry_after: micros(field(3)),
            reset_after: micros(field(4)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_the_rate() {
        let l = |per_second| Limit {
            per_second,
            burst: 1,
        };
        assert_eq!(l(1.0).interval_us(), 1_000_000);
        assert_eq!(l(0.5).interval_us(), 2_000_000);
        assert_eq!(l(4000.0).interval_us(), 250);
        assert_eq!(l(1e9).interval_us(), 1);
        assert!(l(0.0).interval_us() > 1_000_000_000);
    }
}
