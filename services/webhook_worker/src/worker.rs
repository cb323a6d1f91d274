//! The worker's two steps: fan an event out into delivery jobs, and deliver a job (then
//! ack it, re-queue it on the next retry level, or dead-letter it). First attempts and
//! retries are delivered by consumers of their own ([`Lane`]). A target whose circuit is
//! open gets no attempt: its jobs wait on the broker for the circuit's probe, using up no
//! attempt (see [`Worker::hold`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bus::consumer::{ack, reject, requeue};
use lapin::message::Delivery;
use lapin::BasicProperties;
use proto::v1 as pb;
use tracing::field::Empty;
use tracing::Instrument as _;
use wire::event::Event;

use crate::breaker::{self, Admission, Breakers, Pass};
use crate::directory::{Directory, Subscription};
use crate::job::{self, Job};
use crate::limiter::TargetLimiter;
use crate::sender::{self, Outcome, Sender};
use crate::Result;

/// How long a delivery waits for a slot of a busy target before it is parked on the
/// broker's defer queue.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// How long an inline first attempt waits for a slot of a target that answers within it
/// (an event's webhooks often share one origin, more of them than its slots) before its
/// job goes to the delivery queue instead: a few deliveries' time, so the fan-out's event
/// is held little longer, while the jobs of a briefly full target skip a persistent
/// publish, a consume and an ack. A slower target's jobs go to the queue at once.
const INLINE_SLOT_WAIT: Duration = Duration::from_millis(25);

/// Longest a fan-out may take: lookups, inline first attempts and publishes included.
const FAN_OUT_LIMIT: Duration = Duration::from_secs(60);

/// How long a step that cannot make progress (webhooks service or broker down) waits
/// before handing its message back to the broker, so a persistent failure does not spin.
const BACKOFF_BEFORE_REQUEUE: Duration = Duration::from_secs(1);

/// Shortest wait of a parked job, so that a cool-down of a few milliseconds (the setting
/// allows one) does not send held jobs straight back.
const MIN_PARK: Duration = Duration::from_millis(50);

/// Everything the steps share.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) topology: bus::Topology,
    pub(crate) publisher: Arc<bus::Publisher>,
    pub(crate) directory: Directory,
    pub(crate) sender: Sender,
    pub(crate) limiter: TargetLimiter,
    pub(crate) breakers: Breakers,
    pub(crate) recorder: tasks::BatchLog<pb::DeliveryAttempt>,
    pub(crate) retry_ttls: Vec<Duration>,
    /// How long an open circuit may hold a job back before each hold counts as a failed
    /// attempt ([`crate::Config::hold_limit`]).
    pub(crate) hold_limit: Duration,
}

/// Which queue a delivery came from: each has its own consumer (and prefetch), so a
/// backlog of retries cannot take the slots first attempts need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The delivery queue: first attempts (and re-sends an operator asked for).
    First,
    /// The retried queue: jobs back from a retry level.
    Retry,
}

/// The error recorded when a hold by an open circuit counts as a failed attempt.
const CIRCUIT_OPEN: &str =
    "circuit open: held back longer than the retry schedule and a cool-down; not attempted";

/// What became of a job after an attempt.
enum Next {
    Done,
    Retry(u32),
    Dead,
}

/// Step 1 for the events this process's outbox relay offers ([`bus::LocalConsumer`]): the
/// same fan-out, without the round trip through the event queue, for up to `slots` events
/// at once. Busy, stopping, or given an event it cannot read, it declines, and the event
/// goes to the queue.
pub(crate) struct LocalFanOut {
    worker: Arc<Worker>,
    slots: Arc<tokio::sync::Semaphore>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl LocalFanOut {
    pub(crate) fn new(
        worker: Arc<Worker>,
        slots: u16,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        LocalFanOut {
            worker,
            slots: Arc::new(tokio::sync::Semaphore::new(usize::from(slots))),
            shutdown,
        }
    }
}

impl bus::LocalConsumer for LocalFanOut {
    fn offer(&self, row: &bus::OutboxRow) -> Option<bus::LocalWork> {
        if self.shutdown.is_cancelled() || !bus::Topology::may_take_locally(&row.trigger) {
            return None;
        }
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let event: Event = serde_json::from_str(&row.payload).ok()?;
        let span = fan_out_span(true);
        telemetry::propagation::set_parent_from_map(&span, &row.trace_context());
        let worker = self.worker.clone();
        Some(Box::pin(
            async move {
                let _slot = slot;
                match worker.fan_out_event(event).await {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(error = %err, "fan-out in process failed; the outbox sweep publishes the event");
                        false
                    }
                }
            }
            .instrument(span),
        ))
    }
}

/// The span of one event's fan-out (step 1); `local` when the relay of this process handed
/// the event over ([`LocalFanOut`]). [`Worker::fan_out_event`] fills in the rest.
fn fan_out_span(local: bool) -> tracing::Span {
    tracing::info_span!(
        "fan_out",
        event_id = Empty,
        app_id = Empty,
        trigger = Empty,
        jobs = Empty,
        local
    )
}

/// The current span's trace context, for the messages a step publishes.
fn current_context() -> HashMap<String, String> {
    telemetry::propagation::current_context_map()
}

impl Worker {
    /// Step 1: turns an event into one durable job per matching webhook, then acks it.
    pub(crate) async fn fan_out(&self, delivery: Delivery) {
        let span = bus::trace::continued(fan_out_span(false), &delivery);
        self.fan_out_in(delivery).instrument(span).await;
    }

    async fn fan_out_in(&self, delivery: Delivery) {
        let event: Event = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(err) => {
                // Unreadable now means unreadable forever: keep it in the dead-letter queue.
                tracing::error!(error = %err, "malformed event dead-lettered");
                reject(&delivery).await;
                return;
            }
        };
        match self.fan_out_event(event).await {
            Ok(()) => ack(&delivery).await,
            Err(err) => {
                tracing::warn!(error = %err, "fan-out failed; event requeued");
                tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
                requeue(&delivery).await;
            }
        }
    }

    /// [`Worker::publish_jobs`] within [`FAN_OUT_LIMIT`], recorded on the current
    /// `fan_out` span.
    async fn fan_out_event(&self, event: Event) -> Result<()> {
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("app_id", event.app_id.as_str());
        span.record("trigger", event.trigger.as_str());
        // Bounded, so a step stuck on a vanished broker or service hands its event back
        // instead of holding it (and its consumer) forever.
        let jobs = tokio::time::timeout(FAN_OUT_LIMIT, self.publish_jobs(event)).await;
        let n = jobs.unwrap_or(Err(crate::Error::Stalled("fan-out")))?;
        span.record("jobs", n);
        Ok(())
    }

    /// Makes the event's jobs. A job whose target is healthy and has a free slot gets its
    /// first attempt right here (no round trip through the delivery queue); the others are
    /// published to the delivery queue, and those whose target's circuit is open are held
    /// back ([`Worker::hold`]). The event is acked only after every job was delivered or
    /// is durable on the broker (a delivery, parked, retry or dead-letter job), so a crash
    /// in between repeats deliveries (same `webhook-id`), never drops them.
    async fn publish_jobs(&self, event: Event) -> Result<usize> {
        let hooks = self.directory.list(&event.app_id).await?;
        let mut queued = Vec::new();
        let mut inline = Vec::new();
        // A webhook created after the event was accepted does not get it.
        let subscribed = hooks.iter().filter(|w| {
            job::wants(&w.events, &event.trigger) && w.created_at_ms <= event.created_at_ms
        });
        let mut held = Vec::new();
        for hook in subscribed {
            let job = Job::new(event.clone(), &hook.id);
            let pass = match self.breakers.admit(&hook.origin) {
                Admission::Pass(pass) => pass,
                Admission::Open { hold_for } => {
                    let span = tracing::info_span!(
                        "deliver",
                        delivery_id = job.delivery_id.as_str(),
                        webhook_id = job.webhook_id.as_str(),
                        attempt = 1,
                        status_code = Empty,
                        short_circuited = true
                    );
                    held.push(self.hold(job, hook, hold_for).instrument(span));
                    continue;
                }
            };
            match self.limiter.inline_wait(&hook.origin, INLINE_SLOT_WAIT) {
                Some(wait) => inline.push((job, hook, pass, wait)),
                None => queued.push(job),
            }
        }
        // The body is the event's, whichever webhook gets it: made once for them all.
        let body = if inline.is_empty() {
            Vec::new()
        } else {
            job::payload(&event)?
        };
        let inline: Vec<_> = inline
            .into_iter()
            .map(|(job, hook, pass, wait)| self.first_attempt(job, hook, pass, wait, &body))
            .collect();
        let jobs = queued.len() + inline.len() + held.len();
        let (published, attempted, held) = tokio::join!(
            self.publish_queued(&queued),
            futures::future::join_all(inline),
            futures::future::join_all(held)
        );
        published?;
        attempted.into_iter().collect::<Result<Vec<()>>>()?;
        held.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(jobs)
    }

    /// Publishes jobs to the delivery queue, confirmed.
    async fn publish_queued(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let bodies = jobs
            .iter()
            .map(serde_json::to_vec)
            .collect::<serde_json::Result<Vec<_>>>()?;
        let queue = self.topology.deliver_queue();
        let context = current_context();
        let messages: Vec<bus::Outgoing<'_>> = jobs
            .iter()
            .zip(&bodies)
            .map(|(job, body)| bus::Outgoing {
                exchange: "",
                routing_key: &queue,
                payload: body,
                properties: job_properties(job, &context),
                mandatory: true,
            })
            .collect();
        self.publisher.publish_all(&messages).await?;
        Ok(())
    }

    /// The first attempt of `job`, inline in the fan-out, holding a slot of its target
    /// (waiting `wait` at most for one, as [`TargetLimiter::inline_wait`] allowed, else the
    /// job goes to the delivery queue); `body` is the event's payload ([`job::payload`]).
    async fn first_attempt(
        &self,
        job: Job,
        hook: &Subscription,
        pass: Pass<'_>,
        wait: Duration,
        body: &[u8],
    ) -> Result<()> {
        let Some(permit) = self.limiter.acquire(&hook.origin, wait).await else {
            // The unused pass gives its probe back as it drops.
            return self.publish_queued(std::slice::from_ref(&job)).await;
        };
        let span = tracing::info_span!(
            "deliver",
            delivery_id = job.delivery_id.as_str(),
            webhook_id = job.webhook_id.as_str(),
            attempt = 1,
            status_code = Empty,
            inline = true
        );
        async {
            let outcome = self
                .sender
                .send(&sender::Request {
                    target: &hook.target,
                    secret: &hook.secret,
                    delivery_id: &job.delivery_id,
                    body,
                })
                .await;
            drop(permit);
            self.settle(job, &outcome, hook, Some(pass)).await
        }
        .instrument(span)
        .await
    }

    /// A job whose target's circuit is open: no attempt is made, and none is used up. The
    /// job is parked on the broker for `hold_for` (see [`Admission::Open`]), then comes
    /// back on the retried queue at the same retry level. Only
    /// once it has been held back for longer than `hold_limit` does a hold count as a
    /// failed attempt (every later one too, until an attempt is made), so the jobs of a
    /// target that stays down still end in the dead-letter queue. An error means the job
    /// was not moved and must be handed back to the broker.
    async fn hold(&self, mut job: Job, hook: &Subscription, hold_for: Duration) -> Result<()> {
        let now = domain::time::now_ms();
        let since = *job.skipped_since_ms.get_or_insert(now);
        let held = Duration::from_millis(u64::try_from(now - since).unwrap_or(0));
        if held > self.hold_limit {
            return self.short_circuit(job, hook).await;
        }
        self.publish_parked(&job, hold_for).await?;
        tracing::debug!(target = %hook.target, held_ms = held.as_millis() as u64, "circuit open; delivery parked");
        Ok(())
    }

    /// A job held back too long by an open circuit: not attempted, it moves on to its next
    /// retry level (or the dead-letter queue) as a failed attempt would, and the delivery
    /// log says why.
    async fn short_circuit(&self, job: Job, hook: &Subscription) -> Result<()> {
        let outcome = Outcome {
            status_code: None,
            error: Some(CIRCUIT_OPEN.to_owned()),
            latency: Duration::ZERO,
        };
        self.settle(job, &outcome, hook, None).await
    }

    /// Step 2: one attempt of a job from `lane`, then its next step on the broker.
    pub(crate) async fn deliver(&self, delivery: Delivery, lane: Lane) {
        let span = tracing::info_span!(
            "deliver",
            delivery_id = Empty,
            webhook_id = Empty,
            attempt = Empty,
            status_code = Empty
        );
        let span = bus::trace::continued(span, &delivery);
        self.deliver_in(delivery, lane).instrument(span).await;
    }

    async fn deliver_in(&self, delivery: Delivery, lane: Lane) {
        let job: Job = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(error = %err, "malformed delivery job dead-lettered");
                reject(&delivery).await;
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("delivery_id", job.delivery_id.as_str());
        span.record("webhook_id", job.webhook_id.as_str());
        span.record("attempt", job.attempts + 1);

        // The webhook as it is now: deleted or unsubscribed means no more deliveries.
        let webhook = match self.directory.get(&job.app_id, &job.webhook_id).await {
            Ok(Some(w)) => w,
            Ok(None) => {
                tracing::debug!("webhook deleted; delivery dropped");
                ack(&delivery).await;
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "webhook lookup failed; job deferred");
                self.park(&delivery, &job, lane).await;
                return;
            }
        };
        if !job.wanted_by(&webhook.events) {
            tracing::debug!("webhook no longer subscribed to this event; delivery dropped");
            ack(&delivery).await;
            return;
        }
        let pass = match self.breakers.admit(&webhook.origin) {
            Admission::Pass(pass) => pass,
            Admission::Open { hold_for } => {
                // No slot, no connection: the job waits on the broker for the probe, acked
                // only once it is parked (or moved on).
                match self.hold(job, &webhook, hold_for).await {
                    Ok(()) => ack(&delivery).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "holding the job back failed; delivery requeued");
                        tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
                        requeue(&delivery).await;
                    }
                }
                return;
            }
        };
        let Some(permit) = self.limiter.acquire(&webhook.origin, SLOT_WAIT).await else {
            tracing::debug!(target = %webhook.target, "target saturated; job deferred");
            drop(pass);
            self.park(&delivery, &job, lane).await;
            return;
        };
        let body = match job::payload(&job.event) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "payload serialization failed; job dead-lettered");
                reject(&delivery).await;
                return;
            }
        };
        let outcome = self
            .sender
            .send(&sender::Request {
                target: &webhook.target,
                secret: &webhook.secret,
                delivery_id: &job.delivery_id,
                body: &body,
            })
            .await;
        drop(permit);
        if let Err(err) = self.settle(job, &outcome, &webhook, Some(pass)).await {
            // Not moved on: hand the job back; it is attempted again (at least once).
            tracing::warn!(error = %err, "re-queueing the job failed; delivery requeued");
            tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
            requeue(&delivery).await;
            return;
        }
        ack(&delivery).await;
    }

    /// After an attempt of `job` at `hook`'s target (made with `pass`, or `None` when a hold by an
    /// open circuit counts as one): notes the target's health, moves the job on (done, the
    /// next retry level, or the dead-letter queue; an error means it was not moved and must
    /// be attempted again), counts and records the attempt.
    async fn settle(
        &self,
        mut job: Job,
        outcome: &sender::Outcome,
        hook: &Subscription,
        pass: Option<Pass<'_>>,
    ) -> Result<()> {
        let target = &hook.target;
        let span = tracing::Span::current();
        if let Some(code) = outcome.status_code {
            span.record("status_code", code);
        }
        let attempted = pass.is_some();
        if let Some(pass) = pass {
            self.limiter
                .observe(&hook.origin, outcome.succeeded(), outcome.latency);
            pass.report(breaker::target_failed(outcome.status_code));
            // An attempt was made: a later hold starts its clock afresh.
            job.skipped_since_ms = None;
        }
        let attempt = job.attempts + 1;
        let max_retries = u32::try_from(self.retry_ttls.len()).unwrap_or(u32::MAX);
        let next = if outcome.succeeded() {
            Next::Done
        } else if job.attempts < max_retries {
            Next::Retry(attempt)
        } else {
            Next::Dead
        };
        job.attempts = attempt;
        match next {
            Next::Done => {}
            Next::Retry(level) => self.publish_retry(&job, level).await?,
            Next::Dead => self.publish_dead(&job).await?,
        }
        let outcome_label = match next {
            Next::Done => "succeeded",
            Next::Retry(_) => "retrying",
            Next::Dead => "failed",
        };
        metrics::counter!("webhook_deliveries_total", "outcome" => outcome_label).increment(1);
        metrics::histogram!("webhook_attempt_duration_seconds", "outcome" => outcome_label)
            .record(outcome.latency.as_secs_f64());
        if matches!(next, Next::Dead) {
            metrics::counter!("webhook_dead_letters_total").increment(1);
        }
        match next {
            Next::Done => tracing::debug!(
                latency_ms = outcome.latency.as_millis() as u64,
                "webhook delivered"
            ),
            Next::Retry(_) if attempted => {
                tracing::info!(error = outcome.error.as_deref().unwrap_or(""), %target, "webhook delivery failed; retry scheduled")
            }
            Next::Retry(_) => {
                tracing::debug!(%target, "circuit open past the hold limit; counted as a failed attempt, retry scheduled")
            }
            Next::Dead => {
                tracing::warn!(error = outcome.error.as_deref().unwrap_or(""), %target, "webhook delivery failed for good; job dead-lettered")
            }
        }
        self.recorder
            .record(attempt_record(&job, attempt, outcome, &next));
        Ok(())
    }

    /// Puts a job on retry level `level` (1-based), whose queue TTL is the schedule's
    /// wait; the message's own expiration takes up to a fifth off it, as jitter, so
    /// retries of a burst do not all land at once.
    async fn publish_retry(&self, job: &Job, level: u32) -> Result<()> {
        let index = usize::try_from(level.saturating_sub(1)).unwrap_or(usize::MAX);
        let ttl = self
            .retry_ttls
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let jittered = ttl.mul_f64(rand::random_range(0.8..=1.0));
        let queue = self.topology.retry_queue(level, ttl);
        self.publish_job(job, &queue, Some(jittered)).await
    }

    async fn publish_dead(&self, job: &Job) -> Result<()> {
        self.publish_job(job, &self.topology.dead_queue(), None)
            .await
    }

    /// Publishes `job` to `queue`, persistent and confirmed, with the current trace and, when
    /// given, a per-message expiration.
    async fn publish_job(
        &self,
        job: &Job,
        queue: &str,
        expires_in: Option<Duration>,
    ) -> Result<()> {
        let body = serde_json::to_vec(job)?;
        let mut properties = job_properties(job, &current_context());
        if let Some(wait) = expires_in {
            properties = properties.with_expiration(wait.as_millis().to_string().into());
        }
        self.publisher
            .publish(bus::Outgoing {
                exchange: "",
                routing_key: queue,
                payload: &body,
                properties,
                mandatory: true,
            })
            .await?;
        Ok(())
    }

    /// Parks `job` (no attempt counted) on the parked queue for `hold_for`, at most a
    /// cool-down (the queue's TTL), confirmed.
    async fn publish_parked(&self, job: &Job, hold_for: Duration) -> Result<()> {
        let ttl = self.breakers.cool_down();
        let wait = hold_for.max(MIN_PARK).min(ttl);
        self.publish_job(job, &self.topology.parked_queue(ttl), Some(wait))
            .await
    }

    /// Parks a job (unchanged, no attempt counted) on its lane's defer queue for a moment.
    async fn park(&self, delivery: &Delivery, job: &Job, lane: Lane) {
        let queue = match lane {
            Lane::First => self.topology.defer_queue(),
            Lane::Retry => self.topology.retried_defer_queue(),
        };
        match self.publish_job(job, &queue, None).await {
            Ok(()) => ack(delivery).await,
            Err(err) => {
                tracing::warn!(error = %err, "parking the job failed; delivery requeued");
                tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
                requeue(delivery).await;
            }
        }
    }

    /// Re-queues a job for a fresh round of attempts (a retry an operator asked for).
    pub(crate) async fn requeue_job(&self, mut job: Job) -> Result<()> {
        job.attempts = 0;
        job.skipped_since_ms = None;
        self.publish_job(&job, &self.topology.deliver_queue(), None)
            .await
    }
}

/// AMQP properties of a job: the delivery id as message id, and `context` (the trace the
/// job belongs to) as headers.
fn job_properties(job: &Job, context: &HashMap<String, String>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(job.delivery_id.as_str().into());
    bus::trace::with_context(properties, context)
}

fn attempt_record(job: &Job, attempt: u32, outcome: &Outcome, next: &Next) -> pb::DeliveryAttempt {
    let (status, job_json) = match next {
        Next::Done => ("succeeded", String::new()),
        Next::Retry(_) => ("retrying", String::new()),
        // Kept with the failed delivery so an operator can re-queue it.
        Next::Dead => ("failed", serde_json::to_string(job).unwrap_or_default()),
    };
    pb::DeliveryAttempt {
        delivery_id: job.delivery_id.clone(),
        app_id: job.app_id.clone(),
        webhook_id: job.webhook_id.clone(),
        event_id: job.event.id.clone(),
        trigger: job.event.trigger.clone(),
        attempt,
        attempted_at_ms: domain::time::now_ms(),
        outcome: status.to_owned(),
        status_code: outcome.status_code.map(u32::from),
        latency_ms: u32::try_from(outcome.latency.as_millis()).unwrap_or(u32::MAX),
        error: outcome.error.clone(),
        job_json,
    }
}
