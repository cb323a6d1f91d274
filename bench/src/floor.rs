//! The floor: the raw cost of what the hot path must do, measured from this process over
//! loopback exactly as the suite reaches its dependencies: a sqlx transaction that inserts a
//! message row and its outbox row and commits, a persistent AMQP publish awaited until the
//! broker confirms it, a Redis GET, and a bare HTTP round trip to another process. Plus the
//! clean-up of what a run leaves in RabbitMQ and Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use redis::AsyncCommands as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::load::Outcome;

/// A sample event payload of the size the suite writes to the outbox (~1 KiB).
fn event_payload(seq: u64) -> String {
    serde_json::json!({
        "version": 1,
        "id": format!("{seq:024x}"),
        "appId": "5f1c0000000000000000beef",
        "trigger": "message:appUser",
        "createdAtMs": 1_700_000_000_000u64,
        "appUser": {"_id": "5f1c000000000000000000aa", "userId": "u1", "properties": {},
                    "signedUpAt": "2026-11-24T00:00:00.000Z", "conversationStarted": true,
                    "clients": [{"id": "dev-u1", "platform": "ios", "appVersion": "1.0",
                                 "active": true, "lastSeen": "2026-11-24T00:00:00.000Z"}]},
        "messages": [{"_id": format!("{seq:024x}"), "text": crate::api::padded_text("bench floor", 200),
                      "role": "appUser", "authorId": "5f1c000000000000000000aa",
                      "received": 1_700_000_000.0, "type": "text", "actions": []}],
    })
    .to_string()
}

/// The Postgres part of the floor: the suite's `messages` and `outbox` tables, copied into
/// a schema of the bench's own so the suite's data is never touched.
pub struct PgFloor {
    pool: PgPool,
    next: AtomicU64,
    text: String,
    payload: String,
}

impl PgFloor {
    /// Creates `bench_floor.messages` and `bench_floor.outbox` like the suite's tables
    /// (columns, defaults and indexes) and opens a pool of `connections`.
    pub async fn setup(database_url: &str, connections: u32) -> anyhow::Result<PgFloor> {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .min_connections(connections)
            .connect(database_url)
            .await
            .context("connecting to the bench database")?;
        sqlx::raw_sql(
            "DROP SCHEMA IF EXISTS bench_floor CASCADE;
             CREATE SCHEMA bench_floor;
             CREATE TABLE bench_floor.messages
                 (LIKE conversations.messages INCLUDING DEFAULTS INCLUDING INDEXES);
             CREATE TABLE bench_floor.outbox
                 (LIKE conversations.outbox INCLUDING DEFAULTS INCLUDING INDEXES);",
        )
        .execute(&pool)
        .await
        .context("creating the floor's tables (does the suite's conversations schema exist?)")?;
        Ok(PgFloor {
            pool,
            next: AtomicU64::new(1),
            text: crate::api::padded_text("bench floor", 200),
            payload: event_payload(0),
        })
    }

    /// One message row and its outbox row, inserted in one statement inside a transaction
    /// that commits (the durable write every posted message needs).
    pub async fn insert(&self) -> Outcome {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{seq:024x}");
        let result = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "WITH message AS (
                     INSERT INTO bench_floor.messages (app_id, conversation_id, id, author_id,
                                                       role, text, received_ms)
                     VALUES ($1, $2, $3, $4, 'appUser', $5, $6)
                 )
                 INSERT INTO bench_floor.outbox (event_id, app_id, trigger, payload)
                 VALUES ($3, $1, 'message:appUser', $7::jsonb)",
            )
            .bind("5f1c0000000000000000beef")
            .bind("5f1c0000000000000000c0de")
            .bind(&id)
            .bind("5f1c000000000000000000aa")
            .bind(&self.text)
            .bind(1_700_000_000_000i64 + seq as i64)
            .bind(&self.payload)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => Outcome::Ok,
            Err(e) => {
                eprintln!("floor insert failed: {e}");
                Outcome::Failed
            }
        }
    }

    /// Drops the floor's schema.
    pub async fn teardown(self) -> anyhow::Result<()> {
        sqlx::raw_sql("DROP SCHEMA IF EXISTS bench_floor CASCADE")
            .execute(&self.pool)
            .await?;
        self.pool.close().await;
        Ok(())
    }
}

/// The AMQP part of the floor: persistent publishes to a durable queue of the bench's own
/// on one confirm-mode channel (as the suite's publisher does).
pub struct AmqpFloor {
    connection: Connection,
    channel: lapin::Channel,
    queue: String,
    payload: Vec<u8>,
}

impl AmqpFloor {
    /// Declares `<prefix>.bench.floor` and opens a confirm-mode channel.
    pub async fn setup(amqp_url: &str, prefix: &str) -> anyhow::Result<AmqpFloor> {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = format!("{prefix}.bench.floor");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(AmqpFloor {
            connection,
            channel,
            queue,
            payload: event_payload(0).into_bytes(),
        })
    }

    /// One persistent publish, awaited until the broker confirms it.
    pub async fn publish(&self) -> Outcome {
        let result = async {
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &self.payload,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?
                .await?;
            Ok::<_, lapin::Error>(confirm.is_ack())
        }
        .await;
        match result {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Failed,
            Err(e) => {
                eprintln!("floor publish failed: {e}");
                Outcome::Failed
            }
        }
    }

    /// Deletes the queue and closes the connection.
    pub async fn teardown(self) -> anyhow::Result<()> {
        self.channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        self.connection.close(200, "bench done".into()).await?;
        Ok(())
    }
}

/// The Redis part of the floor: GET of a small key over a multiplexed connection (as the
/// credential cache reads).
pub struct RedisFloor {
    conn: redis::aio::ConnectionManager,
    key: String,
}

impl RedisFloor {
    /// Sets `<prefix>:bench:floor` to a credential-sized value.
    pub async fn setup(redis_url: &str, prefix: &str) -> anyhow::Result<RedisFloor> {
        let client = redis::Client::open(redis_url)?;
        let mut conn = redis::aio::ConnectionManager::new(client)
            .await
            .context("connecting to Redis")?;
        let key = format!("{prefix}:bench:floor");
        let _: () = conn.set(&key, "x".repeat(200)).await?;
        Ok(RedisFloor { conn, key })
    }

    /// One GET.
    pub async fn get(&self) -> Outcome {
        let mut conn = self.conn.clone();
        match conn.get::<_, Option<String>>(&self.key).await {
            Ok(Some(_)) => Outcome::Ok,
            Ok(None) => Outcome::Failed,
            Err(e) => {
                eprintln!("floor GET failed: {e}");
                Outcome::Failed
            }
        }
    }

    /// Deletes the key.
    pub async fn teardown(mut self) -> anyhow::Result<()> {
        let _: () = self.conn.del(&self.key).await?;
        Ok(())
    }
}

/// The HTTP part of the floor: a GET answered `ok` by a process of its own (this binary as
/// `bench echo-server`), over a keep-alive connection with TCP_NODELAY, as the suite's
/// processes and the harness reach each other: what one hop between processes costs on this
/// machine, with no work at either end.
pub struct HttpFloor {
    server: tokio::process::Child,
    client: reqwest::Client,
    url: String,
}

impl HttpFloor {
    /// Starts the echo server and reads the address it listens on.
    pub async fn setup() -> anyhow::Result<HttpFloor> {
        use tokio::io::AsyncBufReadExt as _;
        let exe = std::env::current_exe().context("finding the bench binary")?;
        let mut server = tokio::process::Command::new(exe)
            .arg("echo-server")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the floor's echo server")?;
        let stdout = server
            .stdout
            .take()
            .context("the echo server's standard output")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the echo server did not say its address within 10 s")?
            .context("reading the echo server's address")?
            .context("the echo server exited before it listened")?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(HttpFloor {
            server,
            client,
            url: format!("http://{addr}/"),
        })
    }

    /// One GET.
    pub async fn get(&self) -> Outcome {
        match self.client.get(&self.url).send().await {
            Ok(response) if response.status().is_success() => match response.bytes().await {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
            Ok(response) => {
                eprintln!("floor HTTP GET answered {}", response.status());
                Outcome::Failed
            }
            Err(e) => {
                eprintln!("floor HTTP GET failed: {e}");
                Outcome::Failed
            }
        }
    }

    /// The echo server's pid, while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.id()
    }

    /// Stops the echo server.
    pub async fn teardown(mut self) -> anyhow::Result<()> {
        self.server.kill().await.context("stopping the echo server")
    }
}

/// `bench echo-server`: answers `GET /` with `ok` on a loopback port, which it prints on
/// standard output, until standard input closes (its parent, [`HttpFloor`], stopped it or
/// died).
pub async fn serve_echo() -> anyhow::Result<()> {
    use std::io::Write as _;
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", listener.local_addr()?)?;
    stdout.flush()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let parent_gone = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(parent_gone)
        .await
        .context("the echo server failed")
}

/// Deletes the queues and the exchange a suite with AMQP prefix `prefix` declared.
pub async fn delete_bus(amqp_url: &str, prefix: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let topology = bus::Topology::new(prefix);
    // The retry levels the suite ran with (SMOOCH_WEBHOOK_RETRY_BASE_MS=1000, 5 retries),
    // and its circuits' cool-down (the default 10 s, within the longest level).
    let ttls: Vec<Duration> = (0..5).map(|i| Duration::from_secs(1 << i)).collect();
    let mut queues = topology.all_queues(&ttls, Duration::from_secs(10));
    queues.push(format!("{prefix}.bench.floor"));
    for queue in queues {
        // A missing queue closes the channel: use a fresh one each time.
        let channel = connection.create_channel().await?;
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let channel = connection.create_channel().await?;
    let _ = channel
        .exchange_delete(
            topology.events_exchange().as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    connection.close(200, "bench done".into()).await?;
    Ok(())
}

/// Deletes every Redis key under `prefix`.
pub async fn delete_redis_keys(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for chunk in keys.chunks(500) {
        let _: () = conn.del(chunk).await?;
    }
    Ok(())
}
