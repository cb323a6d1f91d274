//! The background tasks of a role (relay, sweeps, listeners, log writers): every one is
//! spawned on the role's [`Tasks`], ends when the role shuts down, and is waited for before
//! the role's `run` returns. A task that panics is logged by name and stops the role, so a
//! replica that lost, say, its outbox relay exits and is restarted instead of limping on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use tokio_util::task::TaskTracker;

mod batch_log;

pub use batch_log::BatchLog;

/// Re-exported: the token a [`Tasks`] stops on.
pub use tokio_util::sync::CancellationToken;

/// The owner of a role's background tasks; cheap to clone (clones share the tasks).
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled by `finish`, after the role's main work returned.
    finished: CancellationToken,
    /// Names of the tasks that panicked.
    panicked: Arc<Mutex<Vec<&'static str>>>,
}

impl Tasks {
    /// Tasks that stop when `shutdown` is cancelled. A role passes a child of the process's
    /// token, so that it can stop its own tasks when its server fails.
    pub fn new(shutdown: CancellationToken) -> Self {
        Tasks {
            tracker: TaskTracker::new(),
            shutdown,
            finished: CancellationToken::new(),
            panicked: Arc::default(),
        }
    }

    /// The token every task must stop on.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancelled by [`Tasks::finish`], once the role's main work (its server, drained) has
    /// returned. A task that serves that work to its very end stops on this token instead
    /// of [`Tasks::shutdown`]: the outbox relay publishes what requests still draining
    /// after the shutdown signal commit.
    pub fn finished(&self) -> &CancellationToken {
        &self.finished
    }

    /// Spawns `task`, which must end once [`Tasks::shutdown`] (or [`Tasks::finished`]) is
    /// cancelled, or once what feeds it is gone (a log writer whose senders dropped). A
    /// panic is logged with `name` and cancels the shutdown token: the role stops and its
    /// `run` reports the panic.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let panicked = self.panicked.clone();
        self.tracker.spawn(async move {
            // Unwind safety: a panicked task's state is dropped with it, and the role stops.
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                tracing::error!(
                    task = name,
                    panic = panic_message(&*panic),
                    "background task panicked; stopping"
                );
                panicked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(name);
                shutdown.cancel();
            }
        });
    }

    /// Ends the tasks after the role's main work (its server) returned `result`: cancels
    /// their tokens, waits until every task has ended, and returns `result`, or an
    /// error naming the tasks that panicked.
    pub async fn finish<T>(self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        self.shutdown.cancel();
        self.finished.cancel();
        self.wait().await;
        let value = result?;
        let panicked =
            std::mem::take(&mut *self.panicked.lock().unwrap_or_else(PoisonError::into_inner));
        if panicked.is_empty() {
            Ok(value)
        } else {
            Err(anyhow::anyhow!(
                "background tasks panicked: {}",
                panicked.join(", ")
            ))
        }
    }

    /// Waits until every task spawned so far (and any spawned meanwhile) has ended.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn finish_waits_for_the_tasks_to_end() {
        let tasks = Tasks::new(CancellationToken::new());
        let ended = Arc::new(AtomicBool::new(false));
        tasks.spawn("slow", {
            let (shutdown, ended) = (tasks.shutdown().clone(), ended.clone());
            async move {
                shutdown.cancelled().await;
                // Cleanup after shutdown, as the relay's last flush.
                tokio::time::sleep(Duration::from_millis(50)).await;
                ended.store(true, Ordering::SeqCst);
            }
        });
        assert_eq!(tasks.finish(Ok(7)).await.unwrap(), 7);
        assert!(
            ended.load(Ordering::SeqCst),
            "finish returned before the task ended"
        );
    }

    #[tokio::test]
    async fn a_task_on_finished_outlives_the_shutdown_until_finish() {
        let tasks = Tasks::new(CancellationToken::new());
        let ended = Arc::new(AtomicBool::new(false));
        tasks.spawn("relay", {
            let (finished, ended) = (tasks.finished().clone(), ended.clone());
            async move {
                finished.cancelled().await;
                ended.store(true, Ordering::SeqCst);
            }
        });
        tasks.shutdown().cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !ended.load(Ordering::SeqCst),
            "stopped at the shutdown signal"
        );
        tasks.finish(Ok(())).await.unwrap();
        assert!(ended.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panic_stops_the_role_and_is_reported_by_name() {
        let root = CancellationToken::new();
        let tasks = Tasks::new(root.child_token());
        tasks.spawn("doomed", async { panic!("boom") });
        tokio::time::timeout(Duration::from_secs(2), tasks.shutdown().cancelled())
            .await
            .expect("the panic cancels the role's token");
        assert!(!root.is_cancelled(), "only the role's tasks stop");
        let error = tasks.finish(Ok(())).await.unwrap_err();
        assert_eq!(error.to_string(), "background tasks panicked: doomed");
    }

    #[tokio::test]
    async fn the_main_error_comes_first() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("fine", async {});
        let error = tasks
            .finish::<()>(Err(anyhow::anyhow!("server failed")))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "server failed");
    }
}
