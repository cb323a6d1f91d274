//! A log written in batches off the hot path: entries are queued in memory and a
//! background task sends them to their store in batches, so logging never bounds the work
//! it records. Such a log is an operator aid (the webhook worker's delivery attempts, the
//! push role's): when its store stays unreachable, entries are dropped and the loss is
//! logged; the work itself never waits for it.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::Tasks;

/// Entries buffered before new ones are dropped.
const QUEUE: usize = 10_000;
/// Largest batch per send.
const BATCH: usize = 500;
/// How long a batch gathers after its first entry.
const LINGER: Duration = Duration::from_millis(100);
/// Tries per batch; the waits between them grow by 200 ms.
const TRIES: u32 = 3;

/// The recording side of a batched log; cheap to clone.
#[derive(Debug)]
pub struct BatchLog<T> {
    name: &'static str,
    tx: mpsc::Sender<T>,
}

impl<T> Clone for BatchLog<T> {
    fn clone(&self) -> Self {
        BatchLog {
            name: self.name,
            tx: self.tx.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> BatchLog<T> {
    /// A log named `name` whose writer runs on `tasks` and hands each batch to `send`,
    /// trying a failed batch again twice. The writer ends (after a last batch) once every
    /// clone of the log is dropped, so it outlives the shutdown of the work that records.
    pub fn start<F, Fut, E>(tasks: &Tasks, name: &'static str, send: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(name, write(name, rx, send));
        BatchLog { name, tx }
    }

    /// Queues one entry; drops it (and says so) when the queue is full.
    pub fn record(&self, entry: T) {
        if self.tx.try_send(entry).is_err() {
            tracing::warn!(log = self.name, "log queue full; entry not recorded");
        }
    }
}

async fn write<T, F, Fut, E>(name: &'static str, mut rx: mpsc::Receiver<T>, send: F)
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(entry)) => batch.push(entry),
                Ok(None) | Err(_) => break,
            }
        }
        flush(name, &send, batch).await;
    }
}

#[tracing::instrument(skip_all, fields(log = name, entries = batch.len()))]
async fn flush<T, F, Fut, E>(name: &'static str, send: &F, batch: Vec<T>)
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    for n in 1..=TRIES {
        match send(batch.clone()).await {
            Ok(()) => return,
            Err(error) if n < TRIES => {
                tracing::debug!(%error, try_n = n, "writing a log batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(n))).await;
            }
            Err(error) => {
                tracing::error!(%error, lost = batch.len(), "writing a log batch failed; entries dropped");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_util::sync::CancellationToken;

    use super::*;

    /// What the store received: each call's batch, and whether it was accepted.
    type Calls = Arc<Mutex<Vec<(Vec<u32>, bool)>>>;

    /// A log whose store fails its first `failures` calls.
    fn log(tasks: &Tasks, failures: usize) -> (BatchLog<u32>, Calls) {
        let calls = Calls::default();
        let log = BatchLog::start(tasks, "test log", {
            let calls = calls.clone();
            move |batch: Vec<u32>| {
                let calls = calls.clone();
                async move {
                    let mut calls = calls.lock().unwrap();
                    let ok = calls.len() >= failures;
                    calls.push((batch, ok));
                    if ok {
                        Ok(())
                    } else {
                        Err("store unreachable")
                    }
                }
            }
        });
        (log, calls)
    }

    #[tokio::test]
    async fn entries_recorded_together_go_in_one_batch_and_the_last_is_written_at_the_end() {
        let tasks = Tasks::new(CancellationToken::new());
        let (log, calls) = log(&tasks, 0);
        for n in 0..3 {
            log.record(n);
        }
        tokio::time::sleep(LINGER * 3).await;
        log.record(3);
        drop(log);
        // The writer ends once the log is dropped, after writing what it holds.
        tasks.finish(Ok(())).await.unwrap();
        let calls = calls.lock().unwrap();
        assert_eq!(*calls, vec![(vec![0, 1, 2], true), (vec![3], true)]);
    }

    #[tokio::test]
    async fn a_failed_batch_is_tried_again_then_dropped_and_the_log_goes_on() {
        let tasks = Tasks::new(CancellationToken::new());
        let (log, calls) = log(&tasks, TRIES as usize);
        log.record(1);
        tokio::time::sleep(LINGER * 2).await;
        log.record(2);
        drop(log);
        tasks.finish(Ok(())).await.unwrap();
        let calls = calls.lock().unwrap();
        let mut expected = vec![(vec![1], false); TRIES as usize];
        expected.push((vec![2], true));
        assert_eq!(*calls, expected);
    }
}
