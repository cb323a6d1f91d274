//! The webhooks of each app, asked of the webhooks service and cached for a short time
//! (about a second) so that a deleted or changed webhook stops receiving deliveries
//! within that time on every replica, without a lookup per delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::v1 as pb;
use proto::v1::webhooks_client::WebhooksClient;
use telemetry::grpc::GrpcChannel;

/// A webhook as the worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) target: String,
    pub(crate) events: Vec<String>,
    pub(crate) secret: String,
}

impl From<pb::Webhook> for Subscription {
    fn from(w: pb::Webhook) -> Self {
        Subscription {
            id: w.id,
            target: w.target,
            events: w.events,
            secret: w.secret,
        }
    }
}

type Entry = (Instant, Arc<Vec<Subscription>>);

/// The cached directory of webhooks.
#[derive(Debug)]
pub(crate) struct Directory {
    client: WebhooksClient<GrpcChannel>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

/// Entries kept before expired ones are swept out.
const SWEEP_ABOVE: usize = 10_000;

impl Directory {
    pub(crate) fn new(client: WebhooksClient<GrpcChannel>, ttl: Duration) -> Self {
        Directory {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, app_id: &str) -> Option<Arc<Vec<Subscription>>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(app_id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, hooks)| hooks.clone())
    }

    /// The app's webhooks, at most `ttl` old.
    pub(crate) async fn list(&self, app_id: &str) -> Result<Arc<Vec<Subscription>>, tonic::Status> {
        if let Some(hooks) = self.cached(app_id) {
            return Ok(hooks);
        }
        let fetched_at = Instant::now();
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
                let ttl = self.ttl;
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            cache.insert(app_id.to_owned(), (fetched_at, hooks.clone()));
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
