//! The push delivery log writer: attempts are queued in memory and sent to the users
//! service in batches, off the send path, so logging never bounds throughput. The log is
//! an operator aid: when the service stays unreachable, entries are dropped (and logged),
//! never notifications.

use std::time::Duration;

use proto::v1 as pb;
use proto::v1::users_handle::UsersHandle;
use telemetry::grpc::GrpcChannel;
use tokio::sync::mpsc;

/// Attempts buffered before new ones are dropped.
const QUEUE: usize = 10_000;
/// Largest batch per RecordPushAttempts call.
const BATCH: usize = 500;
/// How long a batch gathers after its first attempt.
const LINGER: Duration = Duration::from_millis(100);
/// Tries per batch.
const TRIES: u32 = 3;

/// The sending side of the push delivery log.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<pb::PushAttempt>,
}

impl Recorder {
    /// A recorder whose writer runs on `tasks`; the writer ends (after a last flush) once
    /// every recorder clone is dropped, so it outlives the shutdown of the consumers that
    /// record.
    pub(crate) fn start(client: UsersHandle<GrpcChannel>, tasks: &tasks::Tasks) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn("push delivery log writer", write(client, rx));
        Recorder { tx }
    }

    /// Queues one attempt.
    pub(crate) fn record(&self, attempt: pb::PushAttempt) {
        if self.tx.try_send(attempt).is_err() {
            tracing::warn!("push delivery log queue full; attempt not recorded");
        }
    }
}

async fn write(client: UsersHandle<GrpcChannel>, mut rx: mpsc::Receiver<pb::PushAttempt>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(a)) => batch.push(a),
                Ok(None) | Err(_) => break,
            }
        }
        flush(&client, batch).await;
    }
}

#[tracing::instrument(skip_all, fields(attempts = batch.len()))]
async fn flush(client: &UsersHandle<GrpcChannel>, batch: Vec<pb::PushAttempt>) {
    let request = pb::RecordPushAttemptsRequest { attempts: batch };
    for n in 1..=TRIES {
        match client.clone().record_push_attempts(request.clone()).await {
            Ok(_) => return,
            Err(status) if n < TRIES => {
                tracing::debug!(error = %status, try_n = n, "recording push attempts failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(n))).await;
            }
            Err(status) => {
                tracing::error!(error = %status, lost = request.attempts.len(), "recording push attempts failed; entries dropped");
            }
        }
    }
}
