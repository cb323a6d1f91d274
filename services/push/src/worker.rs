//! The worker's two steps: turn an app-maker message event into one notification per
//! device of its user and send them; and send a notification again when its retry comes
//! back from the broker. Each ends with the delivery acked, requeued or dead-lettered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bus::consumer::{ack, reject, requeue};
use lapin::message::Delivery;
use lapin::BasicProperties;
use proto::v1 as pb;
use proto::v1::users_handle::UsersHandle;
use serde::{Deserialize, Serialize};
use telemetry::grpc::GrpcChannel;
use tracing::field::Empty;
use tracing::Instrument as _;
use wire::event::Event;
use wire::model::AppUser;

use crate::apns::Apns;
use crate::credentials::Credentials;
use crate::fcm::FcmClient;
use crate::notification::{self, Notification, Provider, Target};
use crate::outcome::Outcome;
use crate::Result;

/// How long a step that cannot make progress (users service or broker down) waits before
/// handing its message back to the broker, so a persistent failure does not spin.
const BACKOFF_BEFORE_REQUEUE: Duration = Duration::from_secs(1);

/// One notification to one device: what a retry carries through the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Job {
    pub(crate) event_id: String,
    pub(crate) target: Target,
    pub(crate) notification: Notification,
    /// Attempts made so far.
    pub(crate) attempts: u32,
}

/// Everything the steps share.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) topology: bus::Topology,
    pub(crate) publisher: Arc<bus::Publisher>,
    pub(crate) users: UsersHandle<GrpcChannel>,
    pub(crate) apns: Apns,
    pub(crate) fcm: FcmClient,
    pub(crate) retry_ttls: Vec<Duration>,
    /// The push delivery log.
    pub(crate) recorder: tasks::BatchLog<pb::PushAttempt>,
    /// Who watches their conversation live (no push for them); `None` without Redis.
    pub(crate) presence: Option<auth::Presence>,
}

/// What the worker knows of an app user at send time.
struct Recipient {
    credentials: Credentials,
    targets: Vec<Target>,
}

impl Worker {
    /// Step 1: an app-maker message event becomes one notification per message and device.
    pub(crate) async fn on_event(&self, delivery: Delivery) {
        let span = tracing::info_span!(
            "push_event",
            event_id = Empty,
            app_id = Empty,
            app_user_id = Empty,
            notifications = Empty
        );
        let span = bus::trace::continued(span, &delivery);
        self.on_event_in(delivery).instrument(span).await;
    }

    async fn on_event_in(&self, delivery: Delivery) {
        let event: Event = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(error = %err, "malformed event dead-lettered");
                reject(&delivery).await;
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("app_id", event.app_id.as_str());
        span.record("app_user_id", event.app_user.id.as_str());
        match self.push_event(&event).await {
            Ok(n) => {
                span.record("notifications", n);
                ack(&delivery).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "push fan-out failed; event requeued");
                tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
                requeue(&delivery).await;
            }
        }
    }

    /// Sends the event's notifications; an error means some were neither sent nor put on
    /// a retry queue, so the event must be handled again.
    async fn push_event(&self, event: &Event) -> Result<usize> {
        let messages: Vec<_> = event
            .messages
            .iter()
            .filter(|m| notification::wanted(m))
            .collect();
        if messages.is_empty()
            || self
                .watching(&event.app_id, event.app_user.id.as_str())
                .await
        {
            return Ok(0);
        }
        let Some(recipient) = self
            .recipient(&event.app_id, event.app_user.id.as_str())
            .await?
        else {
            return Ok(0);
        };
        let mut sends = Vec::new();
        for message in messages {
            let Some(n) = notification::of_message(
                &event.app_id,
                event.app_user.id.as_str(),
                &recipient.credentials.app_name,
                event.unread_count,
                message,
            ) else {
                continue;
            };
            for target in &recipient.targets {
                let job = Job {
                    event_id: event.id.clone(),
                    target: target.clone(),
                    notification: n.clone(),
                    attempts: 0,
                };
                sends.push(self.attempt(job, &recipient.credentials));
            }
        }
        let count = sends.len();
        futures::future::join_all(sends)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        Ok(count)
    }

    /// Whether the user watches their conversation live over `/faye`, so needs no push.
    /// When Redis cannot tell, the push goes out.
    async fn watching(&self, app_id: &str, app_user_id: &str) -> bool {
        let Some(presence) = &self.presence else {
            return false;
        };
        match presence.is_watching(app_id, app_user_id).await {
            Ok(true) => {
                tracing::debug!("user watching the conversation live; no push");
                metrics::counter!("push_skipped_total", "reason" => "watching").increment(1);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::debug!(error = %e, "presence unknown; pushing");
                false
            }
        }
    }

    /// The app's credentials and the user's devices that get pushes; `None` when the app
    /// has no push credentials, or the app or user is gone.
    async fn recipient(&self, app_id: &str, app_user_id: &str) -> Result<Option<Recipient>> {
        let answer = self
            .users
            .clone()
            .get_push_credentials(pb::GetAppRequest {
                app_id: app_id.to_owned(),
            })
            .await;
        let answer = match answer {
            Ok(a) => a.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(status.into()),
        };
        if answer.apn.is_none() && answer.fcm.is_none() {
            return Ok(None);
        }
        let credentials = match Credentials::from_pb(answer) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "push credentials unusable; nothing sent");
                metrics::counter!("push_notifications_total", "provider" => "none", "outcome" => "failed")
                    .increment(1);
                return Ok(None);
            }
        };
        let user = self
            .users
            .clone()
            .get_app_user(pb::GetAppUserRequest {
                app_id: app_id.to_owned(),
                id_or_user_id: app_user_id.to_owned(),
            })
            .await;
        let user = match user {
            Ok(u) => u.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(status.into()),
        };
        // A stored user that does not parse would fail every redelivery alike: like unusable
        // credentials, it is logged and nothing is sent.
        let user = match AppUser::from_pb(user, true) {
            Ok(user) => user,
            Err(err) => {
                tracing::error!(error = %err, "stored app user unusable; nothing sent");
                metrics::counter!("push_notifications_total", "provider" => "none", "outcome" => "failed")
                    .increment(1);
                return Ok(None);
            }
        };
        let targets = notification::targets(
            user.devices.as_deref().unwrap_or_default(),
            credentials.apn.is_some(),
            credentials.fcm.is_some(),
        );
        Ok(Some(Recipient {
            credentials,
            targets,
        }))
    }

    /// Step 2: a retry back from the broker. The device must still be the user's, active,
    /// with the same token; the credentials are read afresh.
    pub(crate) async fn on_retry(&self, delivery: Delivery) {
        let span = tracing::info_span!("push_retry", event_id = Empty, attempt = Empty);
        let span = bus::trace::continued(span, &delivery);
        self.on_retry_in(delivery).instrument(span).await;
    }

    async fn on_retry_in(&self, delivery: Delivery) {
        let job: Job = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(error = %err, "malformed push job dead-lettered");
                reject(&delivery).await;
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", job.event_id.as_str());
        span.record("attempt", job.attempts + 1);
        let n = &job.notification;
        if self.watching(&n.app_id, &n.app_user_id).await {
            ack(&delivery).await;
            return;
        }
        let result = match self.recipient(&n.app_id, &n.app_user_id).await {
            Ok(Some(recipient)) => {
                match recipient.targets.iter().find(|t| t.same_as(&job.target)) {
                    Some(target) => {
                        let job = Job {
                            target: target.clone(),
                            ..job
                        };
                        self.attempt(job, &recipient.credentials).await
                    }
                    None => {
                        tracing::debug!("device gone; push retry dropped");
                        Ok(())
                    }
                }
            }
            Ok(_) => {
                tracing::debug!("device or credentials gone; push retry dropped");
                Ok(())
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => ack(&delivery).await,
            Err(err) => {
                tracing::warn!(error = %err, "push retry failed to settle; requeued");
                tokio::time::sleep(BACKOFF_BEFORE_REQUEUE).await;
                requeue(&delivery).await;
            }
        }
    }

    /// One send of `job`, then its next step: done, token cleared, or a retry queued.
    async fn attempt(&self, mut job: Job, credentials: &Credentials) -> Result<()> {
        let attempted_at_ms = domain::time::now_ms();
        let target = &job.target;
        let outcome = match target.provider {
            Provider::Apns => match &credentials.apn {
                Some(apn) => self.apns.send(apn, &target.token, &job.notification).await,
                None => Outcome::Failed("no apn integration".to_owned()),
            },
            Provider::Fcm => match &credentials.fcm {
                Some(fcm) => self.fcm.send(fcm, &target.token, &job.notification).await,
                None => Outcome::Failed("no fcm integration".to_owned()),
            },
        };
        job.attempts += 1;
        let max_retries = u32::try_from(self.retry_ttls.len()).unwrap_or(u32::MAX);
        let provider = target.provider.label();
        let mut label = outcome.label();
        match &outcome {
            Outcome::Delivered => {
                tracing::debug!(provider, device_id = %target.device_id, "push delivered")
            }
            Outcome::Unregistered(reason) => {
                tracing::info!(provider, device_id = %target.device_id, %reason, "push token refused; clearing it");
                self.clear_token(&job).await;
            }
            Outcome::Retry(reason) if job.attempts <= max_retries => {
                tracing::info!(provider, device_id = %target.device_id, %reason, attempt = job.attempts, "push failed; retry scheduled");
                self.publish_retry(&job).await?;
            }
            Outcome::Retry(reason) => {
                label = "dead";
                tracing::warn!(provider, device_id = %target.device_id, %reason, "push failed for good; dead-lettered");
                self.publish_dead(&job).await?;
            }
            Outcome::Failed(reason) => {
                tracing::warn!(provider, device_id = %target.device_id, %reason, "push refused")
            }
        }
        metrics::counter!("push_notifications_total", "provider" => provider, "outcome" => label)
            .increment(1);
        self.recorder.record(pb::PushAttempt {
            id: String::new(),
            app_id: job.notification.app_id.clone(),
            app_user_id: job.notification.app_user_id.clone(),
            device_id: target.device_id.clone(),
            platform: target.platform.clone(),
            provider: provider.to_owned(),
            status: label.to_owned(),
            error: outcome.reason().map(str::to_owned),
            message_id: job.notification.message_id.clone(),
            attempt: job.attempts,
            attempted_at_ms,
        });
        Ok(())
    }

    async fn clear_token(&self, job: &Job) {
        let cleared = self
            .users
            .clone()
            .clear_push_token(pb::ClearPushTokenRequest {
                app_id: job.notification.app_id.clone(),
                app_user_id: job.notification.app_user_id.clone(),
                device_id: job.target.device_id.clone(),
                token: job.target.token.clone(),
            })
            .await;
        if let Err(status) = cleared {
            // The next push to it is refused again and retries the clearing.
            tracing::warn!(error = %status, "clearing a refused push token failed");
        }
    }

    /// Puts `job` on the retry queue of its attempt count; the message's own expiration
    /// takes up to a fifth off the queue's wait, as jitter.
    async fn publish_retry(&self, job: &Job) -> Result<()> {
        let index = usize::try_from(job.attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let ttl = self
            .retry_ttls
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let jittered = ttl.mul_f64(rand::random_range(0.8..=1.0));
        let queue = self.topology.push_retry_queue(job.attempts, ttl);
        let body = serde_json::to_vec(job)?;
        self.publisher
            .publish(bus::Outgoing {
                exchange: "",
                routing_key: &queue,
                payload: &body,
                properties: properties(&current_context())
                    .with_expiration(jittered.as_millis().to_string().into()),
                mandatory: true,
            })
            .await?;
        Ok(())
    }

    async fn publish_dead(&self, job: &Job) -> Result<()> {
        let body = serde_json::to_vec(job)?;
        self.publisher
            .publish(bus::Outgoing {
                exchange: "",
                routing_key: &self.topology.push_dead_queue(),
                payload: &body,
                properties: properties(&current_context()),
                mandatory: true,
            })
            .await?;
        Ok(())
    }
}

fn current_context() -> HashMap<String, String> {
    telemetry::propagation::current_context_map()
}

fn properties(context: &HashMap<String, String>) -> BasicProperties {
    bus::trace::with_context(
        BasicProperties::default().with_content_type("application/json".into()),
        context,
    )
}
