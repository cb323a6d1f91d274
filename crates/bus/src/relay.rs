//! The transactional-outbox relay: moves committed `outbox` rows onto the events exchange.
//!
//! A service writes each event to its `outbox` table in the same transaction as the data
//! it describes. The relay claims unpublished rows oldest first with `FOR UPDATE SKIP
//! LOCKED` (so replicas share the work and never publish the same batch at once), publishes
//! them with confirms and sets `published_at` only after the broker confirmed the whole
//! batch, in the same transaction that holds the claim. A crash anywhere in between leaves
//! the rows unpublished for the next pass: events are published at least once.
//!
//! Passes run when poked (right after a commit, for low latency) and on a periodic sweep
//! (for rows a crashed replica committed but never published). The relay expects, in the
//! pool's search path:
//!
//! ```sql
//! CREATE TABLE outbox (seq BIGSERIAL PRIMARY KEY, event_id TEXT UNIQUE NOT NULL,
//!     app_id TEXT NOT NULL, trigger TEXT NOT NULL, payload JSONB NOT NULL,
//!     created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ NULL,
//!     trace_context JSONB NULL);
//! ```
//!
//! `trace_context` holds the W3C trace context of the request that wrote the row
//! (`{"traceparent": ..., "tracestate": ...}`); the relay sends it on as the message's
//! `traceparent` / `tracestate` headers so consumers continue that trace.

use std::sync::Arc;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Backoff, Outgoing, Publisher, Result};

/// Settings of an outbox relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and published per transaction. Default 100.
    pub batch_size: u32,
    /// Time between sweeps for rows nobody poked about. Default 1 s.
    pub sweep_interval: Duration,
    /// Published rows older than this are deleted by the sweep; `None` keeps them.
    /// Default 24 h.
    pub retention: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 100,
            sweep_interval: Duration::from_secs(1),
            retention: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

/// A cheap, cloneable handle that wakes the relay right after an outbox commit.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle {
    notify: Arc<Notify>,
}

impl RelayHandle {
    /// Asks for a relay pass now. Pokes while a pass runs collapse into one more pass.
    pub fn poke(&self) {
        self.notify.notify_one();
    }
}

/// An outbox row claimed for publishing.
#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    seq: i64,
    event_id: String,
    app_id: String,
    trigger: String,
    payload: String,
    created_at_s: i64,
    /// W3C `traceparent` of the request that wrote the row, if it ran in a trace.
    traceparent: Option<String>,
    /// W3C `tracestate` that came with it.
    tracestate: Option<String>,
}

/// The outbox relay of one service replica.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    publisher: Arc<Publisher>,
    config: RelayConfig,
    handle: RelayHandle,
}

impl Relay {
    /// A relay for the `outbox` table in `pool`'s search path, publishing with `publisher`
    /// to its topology's events exchange.
    pub fn new(pool: PgPool, publisher: Arc<Publisher>, config: RelayConfig) -> Self {
        Relay {
            pool,
            publisher,
            config,
            handle: RelayHandle::default(),
        }
    }

    /// Starts a relay for the `outbox` table in `pool`'s search path, publishing to
    /// `{prefix}.events` on the broker at `amqp_url`, until `shutdown`; returns the handle
    /// to poke right after each outbox commit. `name` labels its broker connection.
    pub fn spawn(
        pool: PgPool,
        amqp_url: &str,
        prefix: &str,
        name: &str,
        shutdown: CancellationToken,
    ) -> RelayHandle {
        let topology = crate::Topology::new(prefix);
        let publisher = Arc::new(Publisher::new(
            amqp_url,
            format!("{name} outbox relay"),
            topology,
        ));
        let relay = Relay::new(pool, publisher, RelayConfig::default());
        let handle = relay.handle();
        tokio::spawn(relay.run(shutdown));
        handle
    }

    /// The handle that pokes this relay.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Relays until `shutdown` is cancelled: a pass on every poke and every sweep
    /// interval; after a failure (broker or database down) the rows stay and passes are
    /// retried with exponential backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        // Capped low: the sweep is what publishes rows nobody pokes about after an outage,
        // so a long wait here is a long delay for every event committed meanwhile.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut last_cleanup = tokio::time::Instant::now();
        let mut last_report = tokio::time::Instant::now();
        loop {
            let wait = match self.drain().await {
                Ok(_) => {
                    backoff.reset();
                    // Once per sweep interval, not after every poked pass: under load a
                    // pass runs per few messages and the count would cost a query each.
                    if last_report.elapsed() >= self.config.sweep_interval {
                        last_report = tokio::time::Instant::now();
                        self.report_backlog().await;
                    }
                    if last_cleanup.elapsed() >= Duration::from_secs(60) {
                        last_cleanup = tokio::time::Instant::now();
                        self.cleanup().await;
                    }
                    self.config.sweep_interval
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "outbox relay pass failed");
                    delay
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.handle.notify.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.publisher.close().await;
        tracing::debug!("outbox relay stopped");
    }

    /// Sets the `outbox_backlog` (rows waiting) and `outbox_oldest_age_seconds` gauges; the
    /// partial index on unpublished rows keeps this cheap while the backlog is small.
    async fn report_backlog(&self) {
        let backlog: Result<(i64, f64), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await;
        match backlog {
            Ok((rows, age)) => {
                metrics::gauge!("outbox_backlog").set(rows as f64);
                metrics::gauge!("outbox_oldest_age_seconds").set(age);
            }
            Err(e) => tracing::debug!(error = %e, "reading the outbox backlog failed"),
        }
    }

    /// Publishes every unpublished row this replica can claim; returns how many.
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.relay_batch().await?;
            total += n;
            if n < self.config.batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// Claims, publishes and marks one batch, all inside one transaction.
    #[tracing::instrument(skip_all, fields(rows))]
    async fn relay_batch(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: rows another replica is publishing right now are left to it.
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, event_id, app_id, trigger, payload::text AS payload,
                    extract(epoch FROM created_at)::bigint AS created_at_s,
                    trace_context->>'traceparent' AS traceparent,
                    trace_context->>'tracestate' AS tracestate
             FROM outbox WHERE published_at IS NULL
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(self.config.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        tracing::Span::current().record("rows", rows.len());
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let exchange = self.publisher.topology().events_exchange();
        let messages: Vec<Outgoing<'_>> = rows
            .iter()
            .map(|row| Outgoing {
                exchange: &exchange,
                routing_key: &row.trigger,
                payload: row.payload.as_bytes(),
                properties: event_properties(row),
                // An event no consumer binds to has nobody to reach: it is done.
                mandatory: false,
            })
            .collect();
        // Dropping `tx` on error rolls back: the rows stay unpublished.
        self.publisher.publish_all(&messages).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for row in &rows {
            metrics::counter!("bus_events_published_total", "trigger" => row.trigger.clone())
                .increment(1);
        }
        tracing::debug!(rows = rows.len(), "outbox rows published");
        Ok(rows.len())
    }

    /// Deletes published rows past the retention, a bounded batch at a time.
    async fn cleanup(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE seq IN (
                 SELECT seq FROM outbox
                 WHERE published_at < now() - make_interval(secs => $1)
                 ORDER BY seq LIMIT 10000)",
        )
        .bind(secs as f64)
        .execute(&self.pool)
        .await;
        match deleted {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::debug!(rows = done.rows_affected(), "old outbox rows deleted");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "outbox cleanup failed"),
        }
    }
}

/// AMQP properties of an event: the event id as message id, so consumers can de-duplicate,
/// and the writing request's trace context as `traceparent` / `tracestate` headers.
fn event_properties(row: &OutboxRow) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "smooch-app-id".into(),
        AMQPValue::LongString(row.app_id.as_str().into()),
    );
    crate::trace::insert_context(&mut headers, |name| match name {
        "traceparent" => row.traceparent.as_deref(),
        _ => row.tracestate.as_deref(),
    });
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(row.event_id.as_str().into())
        .with_type(row.trigger.as_str().into())
        .with_timestamp(u64::try_from(row.created_at_s).unwrap_or(0))
        .with_headers(headers)
}
