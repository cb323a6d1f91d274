//! Per-target concurrency limits, so one slow target cannot take every delivery slot, and
//! each target's recent health, which decides whether a first attempt may run inline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of concurrent deliveries per target origin (scheme, host and port).
#[derive(Debug)]
pub(crate) struct TargetLimiter {
    per_target: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// When each origin last failed or answered slowly.
    trouble: Mutex<HashMap<String, Instant>>,
}

/// An answer slower than this marks its target as slow.
pub(crate) const SLOW_ANSWER: Duration = Duration::from_millis(500);

/// How long a target that failed or answered slowly gets no inline first attempts.
const TROUBLE_MEMORY: Duration = Duration::from_secs(30);

/// The origin (scheme, host and port) of `target`: what limits and circuits are kept per.
pub(crate) fn origin(target: &str) -> String {
    reqwest::Url::parse(target)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| target.to_owned())
}

/// Targets tracked before idle ones are forgotten.
const SWEEP_ABOVE: usize = 10_000;

impl TargetLimiter {
    pub(crate) fn new(per_target: usize) -> Self {
        TargetLimiter {
            per_target: per_target.max(1),
            slots: Mutex::new(HashMap::new()),
            trouble: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, target: &str) -> Option<Arc<Semaphore>> {
        let key = origin(target);
        let mut slots = self.slots.lock().ok()?;
        if slots.len() > SWEEP_ABOVE {
            let full = self.per_target;
            slots.retain(|_, s| s.available_permits() < full);
        }
        Some(
            slots
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_target)))
                .clone(),
        )
    }

    /// A delivery slot for `target`, waiting at most `wait`; `None` when the target stays
    /// saturated (the caller parks the job on the broker instead of holding a slot).
    pub(crate) async fn acquire(
        &self,
        target: &str,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(target)?;
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// A slot for an inline first attempt at `target`: only for a target that has neither
    /// failed nor answered slowly lately, and only if a slot is free now (an inline attempt
    /// holds its event until it ends, so it must not wait or risk a slow answer).
    pub(crate) fn try_acquire_healthy(&self, target: &str) -> Option<OwnedSemaphorePermit> {
        let key = origin(target);
        {
            let mut trouble = self.trouble.lock().ok()?;
            if let Some(since) = trouble.get(&key) {
                if since.elapsed() < TROUBLE_MEMORY {
                    return None;
                }
                trouble.remove(&key);
            }
        }
        self.semaphore(target)?.try_acquire_owned().ok()
    }

    /// Notes how an attempt at `target` went: a failure or a slow answer keeps the target
    /// off the inline path for a while.
    pub(crate) fn observe(&self, target: &str, succeeded: bool, latency: Duration) {
        if succeeded && latency < SLOW_ANSWER {
            return;
        }
        if let Ok(mut trouble) = self.trouble.lock() {
            if trouble.len() > SWEEP_ABOVE {
                trouble.retain(|_, since| since.elapsed() < TROUBLE_MEMORY);
            }
            trouble.insert(origin(target), Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troubled_or_saturated_targets_get_no_inline_slot() {
        let limiter = TargetLimiter::new(1);
        let a = "http://a.example:8080/hook";
        let held = limiter.try_acquire_healthy(a).expect("a free slot");
        assert!(limiter
            .try_acquire_healthy("http://a.example:8080/other")
            .is_none());
        drop(held);
        limiter.observe(a, true, Duration::from_millis(5));
        assert!(limiter.try_acquire_healthy(a).is_some());
        limiter.observe(a, true, SLOW_ANSWER);
        assert!(limiter.try_acquire_healthy(a).is_none());
        let b = "https://b.example/hook";
        limiter.observe(b, false, Duration::from_millis(1));
        assert!(limiter.try_acquire_healthy(b).is_none());
        assert!(limiter
            .try_acquire_healthy("https://c.example/hook")
            .is_some());
    }
}
