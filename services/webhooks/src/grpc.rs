//! gRPC handlers: translate requests into validated calls on storage and rows into
//! protobuf replies. The rules themselves live in `domain::validate`.

use domain::validate;
use proto::v1 as pb;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::changes::Changes;
use crate::deliveries;
use crate::storage::{self, WebhookRow};
use crate::Result;

/// The `Webhooks` gRPC service.
pub(crate) struct WebhooksApi {
    pool: PgPool,
    /// Whether targets may name internal addresses literally.
    allow_private_targets: bool,
    /// Committed webhook changes, for the workers' caches.
    changes: Changes,
}

impl WebhooksApi {
    pub(crate) fn new(pool: PgPool, allow_private_targets: bool, changes: Changes) -> Self {
        WebhooksApi {
            pool,
            allow_private_targets,
            changes,
        }
    }

    /// A target's rules: an http(s) URL that does not name an internal address.
    fn check_target(&self, target: &str) -> Result<()> {
        validate::webhook_target(target)?;
        validate::webhook_target_is_public(target, self.allow_private_targets)?;
        Ok(())
    }
}

fn to_pb(row: WebhookRow) -> pb::Webhook {
    pb::Webhook {
        id: row.id,
        app_id: row.app_id,
        target: row.target,
        events: row.events,
        secret: row.secret,
        created_at_ms: row.created_at.timestamp_millis(),
    }
}

fn not_found(id: &str) -> domain::Error {
    domain::Error::not_found(format!("webhook {id} not found"))
}

impl WebhooksApi {
    async fn create(&self, req: pb::CreateWebhookRequest) -> Result<pb::Webhook> {
        self.check_target(&req.target)?;
        let events = validate::webhook_events(&req.events)?;
        let row = WebhookRow {
            app_id: req.app_id,
            id: domain::id::new_id(),
            target: req.target,
            events,
            secret: domain::id::new_secret(20),
            created_at: domain::time::to_datetime(domain::time::now_ms()),
        };
        storage::insert(&self.pool, &row).await?;
        tracing::info!(app_id = %row.app_id, webhook_id = %row.id, "webhook created");
        Ok(to_pb(row))
    }

    async fn update(&self, req: pb::UpdateWebhookRequest) -> Result<pb::Webhook> {
        if let Some(target) = &req.target {
            self.check_target(target)?;
        }
        let events = if req.events_set {
            Some(validate::webhook_events(&req.events)?)
        } else {
            None
        };
        let row = storage::update(
            &self.pool,
            &req.app_id,
            &req.webhook_id,
            req.target.as_deref(),
            events.as_deref(),
        )
        .await?
        .ok_or_else(|| not_found(&req.webhook_id))?;
        Ok(to_pb(row))
    }
}

#[tonic::async_trait]
impl pb::webhooks_server::Webhooks for WebhooksApi {
    type WatchChangesStream =
        futures::stream::BoxStream<'static, std::result::Result<pb::WebhooksChanged, Status>>;

    async fn watch_changes(
        &self,
        _request: Request<pb::WatchChangesRequest>,
    ) -> std::result::Result<Response<Self::WatchChangesStream>, Status> {
        use futures::StreamExt as _;
        // Subscribed before the answer goes out: the watcher misses nothing after it.
        let changes = tokio_stream::wrappers::BroadcastStream::new(self.changes.subscribe());
        // A watcher that fell behind missed changes: it is told to drop everything.
        let stream = changes.map(|change| {
            Ok(pb::WebhooksChanged {
                app_id: change.unwrap_or_default(),
            })
        });
        Ok(Response::new(stream.boxed()))
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let rows = storage::list(&self.pool, &request.get_ref().app_id)
            .await
            .map_err(crate::Error::from)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: rows.into_iter().map(to_pb).collect(),
        }))
    }

    async fn get_webhook(
        &self,
        request: Request<pb::WebhookRef>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let req = request.into_inner();
        let row = storage::get(&self.pool, &req.app_id, &req.webhook_id)
            .await
            .map_err(crate::Error::from)?
            .ok_or_else(|| wire::status(not_found(&req.webhook_id)))?;
        Ok(Response::new(to_pb(row)))
    }

    async fn update_webhook(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        Ok(Response::new(self.update(request.into_inner()).await?))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::WebhookRef>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let req = request.into_inner();
        if !storage::delete(&self.pool, &req.app_id, &req.webhook_id)
            .await
            .map_err(crate::Error::from)?
        {
            return Err(wire::status(not_found(&req.webhook_id)));
        }
        tracing::info!(app_id = %req.app_id, webhook_id = %req.webhook_id, "webhook deleted");
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn record_attempts(
        &self,
        request: Request<pb::RecordAttemptsRequest>,
    ) -> Result<Response<pb::RecordAttemptsResponse>, Status> {
        deliveries::record(&self.pool, request.into_inner().attempts).await?;
        Ok(Response::new(pb::RecordAttemptsResponse {}))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let req = request.into_inner();
        storage::get(&self.pool, &req.app_id, &req.webhook_id)
            .await
            .map_err(crate::Error::from)?
            .ok_or_else(|| wire::status(not_found(&req.webhook_id)))?;
        Ok(Response::new(deliveries::list(&self.pool, &req).await?))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let req = request.into_inner();
        storage::get(&self.pool, &req.app_id, &req.webhook_id)
            .await
            .map_err(crate::Error::from)?
            .ok_or_else(|| wire::status(not_found(&req.webhook_id)))?;
        let delivery = deliveries::retry(&self.pool, &req).await?;
        tracing::info!(app_id = %req.app_id, delivery_id = %req.delivery_id, "delivery retry requested");
        Ok(Response::new(delivery))
    }

    async fn claim_retries(
        &self,
        request: Request<pb::ClaimRetriesRequest>,
    ) -> Result<Response<pb::ClaimRetriesResponse>, Status> {
        Ok(Response::new(
            deliveries::claim(&self.pool, request.get_ref().limit).await?,
        ))
    }

    async fn complete_retries(
        &self,
        request: Request<pb::CompleteRetriesRequest>,
    ) -> Result<Response<pb::CompleteRetriesResponse>, Status> {
        deliveries::complete(&self.pool, &request.get_ref().delivery_ids).await?;
        Ok(Response::new(pb::CompleteRetriesResponse {}))
    }
}
