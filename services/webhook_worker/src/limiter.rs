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
    /// How each origin has answered lately.
    health: Mutex<HashMap<String, Health>>,
}

/// An origin's recent answers.
#[derive(Debug)]
struct Health {
    /// When it last answered.
    seen: Instant,
    /// How fast it answers, a moving average over about the last eight answers.
    recent: Duration,
    /// When it last failed or answered slowly, if within [`TROUBLE_MEMORY`].
    trouble: Option<Instant>,
}

/// An answer slower than this marks its target as slow.
pub(crate) const SLOW_ANSWER: Duration = Duration::from_millis(500);

/// How long a target that failed or answered slowly gets no inline first attempts.
const TROUBLE_MEMORY: Duration = Duration::from_secs(30);

/// The origin (scheme, host and port) of a target URL: what limits, health and circuits
/// are kept per. Made once per webhook, as the directory loads it ([`Origin::of`]), not on
/// every look-up of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin(String);

impl Origin {
    /// The origin of `target` (the target itself when it does not parse as a URL).
    pub(crate) fn of(target: &str) -> Origin {
        Origin(
            reqwest::Url::parse(target)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| target.to_owned()),
        )
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Targets tracked before idle ones are forgotten.
const SWEEP_ABOVE: usize = 10_000;

impl TargetLimiter {
    pub(crate) fn new(per_target: usize) -> Self {
        TargetLimiter {
            per_target: per_target.max(1),
            slots: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, origin: &Origin) -> Option<Arc<Semaphore>> {
        let mut slots = self.slots.lock().ok()?;
        if let Some(semaphore) = slots.get(origin.as_str()) {
            return Some(semaphore.clone());
        }
        if slots.len() > SWEEP_ABOVE {
            let full = self.per_target;
            slots.retain(|_, s| s.available_permits() < full);
        }
        let semaphore = Arc::new(Semaphore::new(self.per_target));
        slots.insert(origin.as_str().to_owned(), semaphore.clone());
        Some(semaphore)
    }

    /// A delivery slot at `origin`, waiting at most `wait`; `None` when the target stays
    /// saturated (the caller parks the job on the broker instead of holding a slot).
    pub(crate) async fn acquire(
        &self,
        origin: &Origin,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(origin)?;
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Whether `origin` may get inline first attempts: it has neither failed nor answered
    /// slowly lately (an inline attempt holds its event until it ends, so it must not risk
    /// a slow answer).
    pub(crate) fn healthy(&self, origin: &Origin) -> bool {
        let Ok(health) = self.health.lock() else {
            return false;
        };
        health
            .get(origin.as_str())
            .and_then(|h| h.trouble)
            .is_none_or(|since| since.elapsed() >= TROUBLE_MEMORY)
    }

    /// How long an inline first attempt at `origin` may wait for a slot: `wait` when the
    /// target has lately answered within it, so a slot is likely to free up in time;
    /// nothing for a target that answers slower (its attempts hold their slots longer than
    /// an event should wait, and a fan-out waiting there would hold other apps' events).
    pub(crate) fn slot_wait(&self, origin: &Origin, wait: Duration) -> Duration {
        let Ok(health) = self.health.lock() else {
            return Duration::ZERO;
        };
        match health.get(origin.as_str()) {
            Some(h) if h.recent <= wait => wait,
            _ => Duration::ZERO,
        }
    }

    /// Notes how an attempt at `origin` went: how fast it answered, and a failure or a
    /// slow answer keeps the target off the inline path for a while.
    pub(crate) fn observe(&self, origin: &Origin, succeeded: bool, latency: Duration) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let now = Instant::now();
        if !health.contains_key(origin.as_str()) {
            if health.len() > SWEEP_ABOVE {
                health.retain(|_, h| now.duration_since(h.seen) < TROUBLE_MEMORY);
            }
            health.insert(
                origin.as_str().to_owned(),
                Health {
                    seen: now,
                    recent: latency,
                    trouble: None,
                },
            );
        }
        let Some(h) = health.get_mut(origin.as_str()) else {
            return;
        };
        h.seen = now;
        h.recent = (h.recent * 7 + latency) / 8;
        if !succeeded || latency >= SLOW_ANSWER {
            h.trouble = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troubled_targets_are_not_healthy_for_a_while() {
        let limiter = TargetLimiter::new(1);
        let a = &Origin::of("http://a.example:8080/hook");
        assert!(limiter.healthy(a));
        limiter.observe(a, true, Duration::from_millis(5));
        assert!(limiter.healthy(a));
        limiter.observe(a, true, SLOW_ANSWER);
        assert!(!limiter.healthy(a));
        assert!(!limiter.healthy(&Origin::of("http://a.example:8080/other")));
        let b = &Origin::of("https://b.example/hook");
        limiter.observe(b, false, Duration::from_millis(1));
        assert!(!limiter.healthy(b));
        assert!(limiter.healthy(&Origin::of("https://c.example/hook")));
    }

    #[test]
    fn only_targets_that_answer_within_the_wait_get_one() {
        let limiter = TargetLimiter::new(1);
        let wait = Duration::from_millis(25);
        let a = &Origin::of("http://a.example:8080/hook");
        assert_eq!(limiter.slot_wait(a, wait), Duration::ZERO, "no answer yet");
        limiter.observe(a, true, Duration::from_millis(3));
        assert_eq!(limiter.slot_wait(a, wait), wait);
        for _ in 0..20 {
            limiter.observe(
                &Origin::of("http://a.example:8080/other"),
                true,
                Duration::from_millis(200),
            );
        }
        assert_eq!(limiter.slot_wait(a, wait), Duration::ZERO);
        let b = &Origin::of("http://b.example/hook");
        limiter.observe(b, true, Duration::from_millis(2));
        assert_eq!(limiter.slot_wait(b, wait), wait);
    }

    #[tokio::test]
    async fn a_saturated_target_gives_a_slot_once_one_is_released_within_the_wait() {
        let limiter = TargetLimiter::new(1);
        let a = &Origin::of("http://a.example:8080/hook");
        let held = limiter
            .acquire(a, Duration::ZERO)
            .await
            .expect("a free slot");
        assert!(limiter
            .acquire(
                &Origin::of("http://a.example:8080/other"),
                Duration::from_millis(20)
            )
            .await
            .is_none());
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        });
        assert!(limiter.acquire(a, Duration::from_secs(5)).await.is_some());
        release.await.unwrap();
    }
}
