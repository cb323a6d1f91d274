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

    /// Whether a first attempt at `origin` may run inline, and how long it may wait for a
    /// slot there. `None` when the target failed or answered slowly lately: an inline
    /// attempt holds its event until it ends, so it must not risk a slow answer. Otherwise
    /// `wait` when the target has lately answered within it, so a slot is likely to free up
    /// in time, and nothing for a target that answers slower (its attempts hold their slots
    /// longer than an event should wait, and a fan-out waiting there would hold other apps'
    /// events) or has not answered yet.
    pub(crate) fn inline_wait(&self, origin: &Origin, wait: Duration) -> Option<Duration> {
        let health = self.health.lock().ok()?;
        let Some(h) = health.get(origin.as_str()) else {
            return Some(Duration::ZERO);
        };
        if h.trouble
            .is_some_and(|since| since.elapsed() < TROUBLE_MEMORY)
        {
            return None;
        }
        Some(if h.recent <= wait {
            wait
        } else {
            Duration::ZERO
        })
    }

    /// Notes how an attempt at `origin` went: how fast it answered, and a failure or a
    /// slow answer keeps the target off the inline path for a while.
    pub(crate) fn observe(&self, origin: &Origin, succeeded: bool, latency: Duration) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let now = Instant::now();
        let troubled = !succeeded || latency >= SLOW_ANSWER;
        match health.get_mut(origin.as_str()) {
            Some(h) => {
                h.seen = now;
                h.recent = (h.recent * 7 + latency) / 8;
                if troubled {
                    h.trouble = Some(now);
                }
            }
            None => {
                if health.len() > SWEEP_ABOVE {
                    health.retain(|_, h| now.duration_since(h.seen) < TROUBLE_MEMORY);
                }
                health.insert(
                    origin.as_str().to_owned(),
                    Health {
                        seen: now,
                        recent: latency,
                        trouble: troubled.then_some(now),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(25);

    /// Whether first attempts at `origin` may run inline.
    fn healthy(limiter: &TargetLimiter, origin: &Origin) -> bool {
        limiter.inline_wait(origin, WAIT).is_some()
    }

    #[test]
    fn troubled_targets_are_not_healthy_for_a_while() {
        let limiter = TargetLimiter::new(1);
        let a = &Origin::of("http://a.example:8080/hook");
        assert!(healthy(&limiter, a));
        limiter.observe(a, true, Duration::from_millis(5));
        assert!(healthy(&limiter, a));
        limiter.observe(a, true, SLOW_ANSWER);
        assert!(!healthy(&limiter, a));
        assert!(!healthy(
            &limiter,
            &Origin::of("http://a.example:8080/other")
        ));
        let b = &Origin::of("https://b.example/hook");
        limiter.observe(b, false, Duration::from_millis(1));
        assert!(!healthy(&limiter, b));
        assert!(healthy(&limiter, &Origin::of("https://c.example/hook")));
    }

    #[test]
    fn only_targets_that_answer_within_the_wait_get_one() {
        let limiter = TargetLimiter::new(1);
        let wait = WAIT;
        let a = &Origin::of("http://a.example:8080/hook");
        assert_eq!(
            limiter.inline_wait(a, wait),
            Some(Duration::ZERO),
            "no answer yet"
        );
        limiter.observe(a, true, Duration::from_millis(3));
        assert_eq!(limiter.inline_wait(a, wait), Some(wait));
        for _ in 0..20 {
            limiter.observe(
                &Origin::of("http://a.example:8080/other"),
                true,
                Duration::from_millis(200),
            );
        }
        assert_eq!(limiter.inline_wait(a, wait), Some(Duration::ZERO));
        let b = &Origin::of("http://b.example/hook");
        limiter.observe(b, true, Duration::from_millis(2));
        assert_eq!(limiter.inline_wait(b, wait), Some(wait));
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
