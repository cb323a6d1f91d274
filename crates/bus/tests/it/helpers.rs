//! Shared test plumbing: a throwaway outbox schema, a private AMQP prefix, a queue reader.

use std::sync::Arc;
use std::time::Duration;

use bus::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use bus::lapin::types::FieldTable;
use bus::lapin::{Channel, Connection, Consumer};
use bus::{Publisher, Topology};
use futures::StreamExt as _;
use sqlx::{PgConnection, PgPool};

pub(crate) fn amqp_url() -> String {
    std::env::var("SMOOCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub(crate) fn database_url() -> String {
    std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned())
}

pub(crate) fn random_suffix() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// A private outbox table (in its own schema) and a private AMQP prefix.
pub(crate) struct Env {
    pub(crate) pool: PgPool,
    pub(crate) topology: Topology,
    pub(crate) connection: Connection,
    pub(crate) channel: Channel,
    schema: String,
}

impl Env {
    pub(crate) async fn new() -> Env {
        db::ensure_database(&database_url()).await.unwrap();
        let suffix = random_suffix();
        let schema = format!("relay_test_{suffix}");
        let pool = db::connect(&database_url(), &schema, 8).unwrap();
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE outbox (seq BIGSERIAL PRIMARY KEY, event_id TEXT UNIQUE NOT NULL,
                app_id TEXT NOT NULL, trigger TEXT NOT NULL, payload JSONB NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ NULL,
                trace_context JSONB NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let topology = Topology::new(format!("test-{suffix}"));
        let connection = bus::connect(&amqp_url(), "bus-test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.declare_events(&channel).await.unwrap();
        Env {
            pool,
            topology,
            connection,
            channel,
            schema,
        }
    }

    pub(crate) fn publisher(&self) -> Arc<Publisher> {
        Arc::new(Publisher::new(
            amqp_url(),
            "relay-test",
            self.topology.clone(),
        ))
    }

    /// Commits one outbox row, as the conversations service does with a message.
    pub(crate) async fn commit_event(&self, event_id: &str, trigger: &str) {
        self.commit_row(event_id, trigger).await;
    }

    /// Commits one outbox row and returns it as its writer hands it to the relay.
    pub(crate) async fn commit_row(&self, event_id: &str, trigger: &str) -> bus::OutboxRow {
        self.commit_app_row(event_id, "app1", trigger).await
    }

    /// Commits an outbox row of `app_id`; the row, as a writer hands it over.
    pub(crate) async fn commit_app_row(
        &self,
        event_id: &str,
        app_id: &str,
        trigger: &str,
    ) -> bus::OutboxRow {
        let payload = serde_json::json!({"id": event_id, "trigger": trigger});
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (event_id, app_id, trigger, payload) VALUES ($1, $2, $3, $4)
             RETURNING seq",
        )
        .bind(event_id)
        .bind(app_id)
        .bind(trigger)
        .bind(&payload)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        bus::OutboxRow {
            seq,
            event_id: event_id.to_owned(),
            app_id: app_id.to_owned(),
            trigger: trigger.to_owned(),
            payload: payload.to_string(),
            created_at_s: 0,
            traceparent: None,
            tracestate: None,
        }
    }

    /// A consumer of an exclusive queue bound to the real-time exchange with `binding`,
    /// as a gateway's (no acks).
    pub(crate) async fn realtime_watcher(&self, binding: &str) -> bus::lapin::Consumer {
        use bus::lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use bus::lapin::types::FieldTable;

        self.topology.declare_realtime(&self.channel).await.unwrap();
        let queue = self
            .channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.name().as_str().into(),
                self.topology.realtime_exchange().as_str().into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .basic_consume(
                queue.name().as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    pub(crate) async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub(crate) async fn consumer(&self) -> Consumer {
        self.channel
            .basic_consume(
                self.topology.webhook_events_queue().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    pub(crate) async fn cleanup(self) {
        // Only the events side is declared here: no retry levels, no parked queue.
        for q in self.topology.all_queues(&[], std::time::Duration::ZERO) {
            let _ = self
                .channel
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in [
            self.topology.events_exchange(),
            self.topology.realtime_exchange(),
        ] {
            let _ = self
                .channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "bye".into()).await;
        let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.pool)
            .await;
    }
}

/// Reads message ids from `consumer` until `n` arrived or `within` passed.
pub(crate) async fn read_ids(consumer: &mut Consumer, n: usize, within: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while ids.len() < n {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else { break };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        ids.push(id);
    }
    ids
}

/// The relay's statements on a test's own `outbox` table, found through the pool's search
/// path. Runtime SQL, unlike the services' checked queries: the schema is made per test,
/// so no compile-time cache can know it. The statements mirror the conversations
/// service's (`services/conversations/src/storage/outbox.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestOutbox;

impl bus::OutboxStore for TestOutbox {
    async fn claim(
        &self,
        conn: &mut PgConnection,
        limit: i64,
        min_age: Duration,
        skip: &[i64],
    ) -> sqlx::Result<Vec<bus::OutboxRow>> {
        sqlx::query_as(
            "SELECT seq, event_id, app_id, trigger, payload::text AS payload,
                    extract(epoch FROM created_at)::bigint AS created_at_s,
                    trace_context->>'traceparent' AS traceparent,
                    trace_context->>'tracestate' AS tracestate
             FROM outbox WHERE published_at IS NULL
               AND created_at <= now() - make_interval(secs => $2)
               AND seq <> ALL($3)
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .bind(min_age.as_secs_f64())
        .bind(skip)
        .fetch_all(conn)
        .await
    }

    async fn mark_published(&self, conn: &mut PgConnection, seqs: &[i64]) -> sqlx::Result<()> {
        sqlx::query("UPDATE outbox SET published_at = now() WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn backlog(&self, conn: &mut PgConnection) -> sqlx::Result<bus::Backlog> {
        let (rows, oldest_age_s): (i64, f64) = sqlx::query_as(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(conn)
        .await?;
        Ok(bus::Backlog { rows, oldest_age_s })
    }

    async fn purge(
        &self,
        conn: &mut PgConnection,
        older_than: Duration,
        limit: i64,
    ) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE seq IN (
                 SELECT seq FROM (SELECT seq, published_at FROM outbox ORDER BY seq LIMIT $2) AS oldest
                  WHERE published_at < now() - make_interval(secs => $1))",
        )
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The relays' audience as the suite's relays ask it: the registry in Redis, and every
/// event copied when Redis cannot answer.
#[derive(Debug)]
pub(crate) struct RedisAudience(pub(crate) auth::Audience);

impl bus::Audience for RedisAudience {
    fn watched<'a>(
        &'a self,
        apps: &'a std::collections::HashSet<&'a str>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Option<std::collections::HashSet<String>>> + Send + 'a,
        >,
    > {
        Box::pin(async move { self.0.watched(apps).await.ok() })
    }
}

/// Redis under a prefix of the test's own (`SMOOCH_REDIS_URL`, default the local one).
pub(crate) fn redis() -> auth::RedisClient {
    let url =
        std::env::var("SMOOCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("test-bus-{}", random_suffix());
    auth::RedisClient::new(auth::RedisConfig::new(url, prefix)).unwrap()
}
