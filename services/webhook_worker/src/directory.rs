//! The webhooks of each app, asked of the webhooks service and cached. The webhooks
//! service's change feed drops an app's cached copy as soon as a change commits, so a
//! webhook created, changed or deleted governs the next message, without a lookup per
//! delivery. While the feed is down, copies live only `ttl` (about a second).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use proto::v1 as pb;
use proto::v1::webhooks_handle::WebhooksHandle;
use telemetry::grpc::GrpcChannel;

use crate::limiter::Origin;

/// A webhook as the worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) target: String,
    /// The target's origin, which its limits, health and circuit are kept per.
    pub(crate) origin: Origin,
    pub(crate) events: Vec<String>,
    pub(crate) secret: String,
    /// When the webhook was created (ms since the epoch).
    pub(crate) created_at_ms: i64,
}

impl From<pb::Webhook> for Subscription {
    fn from(w: pb::Webhook) -> Self {
        Subscription {
            id: w.id,
            origin: Origin::of(&w.target),
            target: w.target,
            events: w.events,
            secret: w.secret,
            created_at_ms: w.created_at_ms,
        }
    }
}

type Entry = (Instant, Arc<Vec<Subscription>>);

/// The cached directory of webhooks.
#[derive(Debug)]
pub(crate) struct Directory {
    client: WebhooksHandle<GrpcChannel>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
    /// Bumped by every eviction: a lookup that raced one does not cache what it read.
    generation: AtomicU64,
    /// Whether the change feed is connected (copies then live [`WATCHED_TTL`]).
    watching: AtomicBool,
}

/// How long a copy lives while the change feed is connected: changes evict it anyway.
const WATCHED_TTL: Duration = Duration::from_secs(300);

/// Entries kept before expired ones are swept out.
const SWEEP_ABOVE: usize = 10_000;

impl Directory {
    pub(crate) fn new(client: WebhooksHandle<GrpcChannel>, ttl: Duration) -> Self {
        Directory {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }

    fn ttl(&self) -> Duration {
        if self.watching.load(Ordering::Acquire) {
            WATCHED_TTL
        } else {
            self.ttl
        }
    }

    fn cached(&self, app_id: &str) -> Option<Arc<Vec<Subscription>>> {
        let ttl = self.ttl();
        let cache = self.cache.lock().ok()?;
        cache
            .get(app_id)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, hooks)| hooks.clone())
    }

    /// Drops the cached copy of `app_id`'s webhooks, or of every app's for `""`.
    fn evict(&self, app_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut cache) = self.cache.lock() {
            if app_id.is_empty() {
                cache.clear();
            } else {
                cache.remove(app_id);
            }
        }
    }

    /// Follows the webhooks service's change feed until `shutdown`, reconnecting after a
    /// failure; every (re)connection starts from an empty cache.
    pub(crate) async fn watch(&self, shutdown: CancellationToken) {
        let mut wait = Duration::from_millis(200);
        loop {
            let feed = self
                .client
                .clone()
                .watch_changes(pb::WatchChangesRequest {})
                .await;
            match feed {
                Ok(feed) => {
                    let mut feed = feed.into_inner();
                    self.evict("");
                    self.watching.store(true, Ordering::Release);
                    wait = Duration::from_millis(200);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            change = feed.message() => match change {
                                Ok(Some(change)) => self.evict(&change.app_id),
                                Ok(None) => break,
                                Err(status) => {
                                    tracing::debug!(error = %status, "webhook change feed ended");
                                    break;
                                }
                            },
                        }
                    }
                    // Until the feed is back, copies must expire by themselves.
                    self.watching.store(false, Ordering::Release);
                    self.evict("");
                }
                Err(status) => {
                    tracing::debug!(error = %status, "webhook change feed unavailable");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// The app's webhooks, at most `ttl` old.
    pub(crate) async fn list(&self, app_id: &str) -> Result<Arc<Vec<Subscription>>, tonic::Status> {
        if let Some(hooks) = self.cached(app_id) {
            return Ok(hooks);
        }
        let fetched_at = Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        let reply = self
            .client
            .clone()
            .list_webhooks(pb::ListWebhooksRequest {
                app_id: app_id.to_owned(),
            })
            .await?
            .into_inner();
        let hooks = Arc::new(
            reply
                .webhooks
                .into_iter()
                .map(Subscription::from)
                .collect::<Vec<_>>(),
        );
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > SWEEP_ABOVE {
                let ttl = self.ttl();
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            // A change announced while this was read may not be in it: use it, don't keep it.
            if self.generation.load(Ordering::Acquire) == generation {
                cache.insert(app_id.to_owned(), (fetched_at, hooks.clone()));
            }
        }
        Ok(hooks)
    }

    /// One webhook of the app, at most `ttl` old; `None` once deleted.
    pub(crate) async fn get(
        &self,
        app_id: &str,
        webhook_id: &str,
    ) -> Result<Option<Subscription>, tonic::Status> {
        Ok(self
            .list(app_id)
            .await?
            .iter()
            .find(|w| w.id == webhook_id)
            .cloned())
    }
}
