//! Operator-requested retries: the webhooks service records the request (RetryDelivery);
//! this loop claims such requests, puts their jobs back on the delivery queue with
//! confirms, and only then completes them. A worker dying in between leaves the claim to
//! lapse and another worker to pick it up.

use std::sync::Arc;
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::webhooks_handle::WebhooksHandle;
use telemetry::grpc::GrpcChannel;
use tokio_util::sync::CancellationToken;

use crate::job::Job;
use crate::worker::Worker;
use crate::Result;

/// Requests claimed per call.
const CLAIM: u32 = 100;

/// Polls for requested retries every `interval` until `shutdown`.
pub(crate) async fn run(
    worker: Arc<Worker>,
    client: WebhooksHandle<GrpcChannel>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match requeue_requested(&worker, &client).await {
            Ok(n) if n as u32 >= CLAIM => Duration::ZERO,
            Ok(_) => interval,
            Err(err) => {
                tracing::debug!(error = %err, "requested retries not claimed");
                interval.max(Duration::from_secs(1))
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[tracing::instrument(skip_all, fields(claimed))]
async fn requeue_requested(worker: &Worker, client: &WebhooksHandle<GrpcChannel>) -> Result<usize> {
    let claimed = client
        .clone()
        .claim_retries(pb::ClaimRetriesRequest { limit: CLAIM })
        .await?
        .into_inner()
        .retries;
    tracing::Span::current().record("claimed", claimed.len());
    if claimed.is_empty() {
        return Ok(0);
    }
    let mut done = Vec::with_capacity(claimed.len());
    for retry in &claimed {
        match serde_json::from_str::<Job>(&retry.job_json) {
            Ok(job) => worker.requeue_job(job).await?,
            Err(err) => {
                tracing::error!(delivery_id = %retry.delivery_id, error = %err, "stored job unreadable; retry dropped");
            }
        }
        done.push(retry.delivery_id.clone());
    }
    client
        .clone()
        .complete_retries(pb::CompleteRetriesRequest { delivery_ids: done })
        .await?;
    tracing::info!(count = claimed.len(), "requested retries re-queued");
    Ok(claimed.len())
}
