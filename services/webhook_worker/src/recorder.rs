//! The delivery log writer: attempts are queued in memory and sent to the webhooks
//! service in batches, off the delivery path, so logging never bounds throughput. The log
//! is an operator aid: when the service stays unreachable, entries are dropped (and
//! logged), never deliveries.

use std::time::Duration;

use proto::v1 as pb;
use proto::v1::webhooks_handle::WebhooksHandle;
use telemetry::grpc::GrpcChannel;
use tokio::sync::mpsc;

/// Attempts buffered before new ones are dropped.
const QUEUE: usize = 10_000;
/// Largest batch per RecordAttempts call.
const BATCH: usize = 500;
/// How long a batch gathers after its first attempt.
const LINGER: Duration = Duration::from_millis(100);
/// Tries per batch.
const TRIES: u32 = 3;

/// The sending side of the delivery log.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<pb::DeliveryAttempt>,
}

impl Recorder {
    /// A recorder whose writer runs on `tasks`; the writer ends (after a last flush) once
    /// every recorder clone is dropped, so it outlives the shutdown of the consumers that
    /// record.
    pub(crate) fn start(client: WebhooksHandle<GrpcChannel>, tasks: &tasks::Tasks) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn("delivery log writer", write(client, rx));
        Recorder { tx }
    }

    /// Queues one attempt.
    pub(crate) fn record(&self, attempt: pb::DeliveryAttempt) {
        if self.tx.try_send(attempt).is_err() {
            tracing::warn!("delivery log queue full; attempt not recorded");
        }
    }
}

async fn write(client: WebhooksHandle<GrpcChannel>, mut rx: mpsc::Receiver<pb::DeliveryAttempt>) {
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
async fn flush(client: &WebhooksHandle<GrpcChannel>, batch: Vec<pb::DeliveryAttempt>) {
    let request = pb::RecordAttemptsRequest { attempts: batch };
    for n in 1..=TRIES {
        match client.clone().record_attempts(request.clone()).await {
            Ok(_) => return,
            Err(status) if n < TRIES => {
                tracing::debug!(error = %status, try_n = n, "recording attempts failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(n))).await;
            }
            Err(status) => {
                tracing::error!(error = %status, lost = request.attempts.len(), "recording attempts failed; entries dropped");
            }
        }
    }
}
