//! Per-target concurrency limits, so one slow target cannot take every delivery slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of concurrent deliveries per target origin (scheme, host and port).
#[derive(Debug)]
pub(crate) struct TargetLimiter {
    per_target: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Targets tracked before idle ones are forgotten.
const SWEEP_ABOVE: usize = 10_000;

impl TargetLimiter {
    pub(crate) fn new(per_target: usize) -> Self {
        TargetLimiter {
            per_target: per_target.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, target: &str) -> Option<Arc<Semaphore>> {
        let key = reqwest::Url::parse(target)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| target.to_owned());
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
}
