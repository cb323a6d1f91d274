//! The outbox relay: committed rows reach the exchange, are marked only after confirms,
//! and survive a broker outage or a crashed replica.

use std::time::Duration;

use bus::{Publisher, Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{self, read_ids, Env, TestOutbox};

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

#[tokio::test]
async fn relay_publishes_committed_rows_in_order_and_marks_them() {
    let env = Env::new().await;
    let want = ids("e", 5);
    for (i, id) in want.iter().enumerate() {
        let trigger = if i % 2 == 0 {
            "message:appUser"
        } else {
            "message:appMaker"
        };
        env.commit_event(id, trigger).await;
    }
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        RelayConfig::default(),
    );
    assert_eq!(relay.drain().await.unwrap(), 5);
    assert_eq!(env.unpublished().await, 0);
    let mut consumer = env.consumer().await;
    assert_eq!(
        read_ids(&mut consumer, 5, Duration::from_secs(5)).await,
        want
    );
    // A second pass finds nothing left to publish.
    assert_eq!(relay.drain().await.unwrap(), 0);
    env.cleanup().await;
}

#[tokio::test]
async fn rows_stay_unpublished_until_the_broker_confirms() {
    let env = Env::new().await;
    for id in ids("down", 3) {
        env.commit_event(&id, "message:appUser").await;
    }
    // Nothing listens on port 1: every publish fails, as when RabbitMQ is stopped.
    let down = std::sync::Arc::new(Publisher::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "relay-test-down",
        env.topology.clone(),
    ));
    let relay = Relay::new(env.pool.clone(), TestOutbox, down, RelayConfig::default());
    assert!(relay.drain().await.is_err());
    assert_eq!(
        env.unpublished().await,
        3,
        "no row may be marked without a confirm"
    );

    // The broker is back: a relay publishes them all.
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        RelayConfig::default(),
    );
    assert_eq!(relay.drain().await.unwrap(), 3);
    let mut consumer = env.consumer().await;
    assert_eq!(
        read_ids(&mut consumer, 3, Duration::from_secs(5)).await,
        ids("down", 3)
    );
    env.cleanup().await;
}

#[tokio::test]
async fn sweep_publishes_rows_a_crashed_replica_left_behind() {
    let env = Env::new().await;
    // A replica committed these and died before publishing (or mid-claim: its
    // transaction rolled back with the connection).
    env.commit_event("crash0", "message:appUser").await;
    {
        let mut tx = env.pool.begin().await.unwrap();
        sqlx::query("SELECT seq FROM outbox FOR UPDATE")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        drop(tx);
    }
    let config = RelayConfig {
        sweep_interval: Duration::from_millis(100),
        ..RelayConfig::default()
    };
    let relay = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Committed with nobody poking the relay: only the sweep can find it.
    env.commit_event("crash1", "message:appMaker").await;
    let mut consumer = env.consumer().await;
    assert_eq!(
        read_ids(&mut consumer, 2, Duration::from_secs(5)).await,
        vec!["crash0", "crash1"]
    );
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(env.unpublished().await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_poke_publishes_without_waiting_for_the_sweep() {
    let env = Env::new().await;
    let config = RelayConfig {
        sweep_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let relay = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut consumer = env.consumer().await;
    env.commit_event("poked", "message:appUser").await;
    handle.poke();
    assert_eq!(
        read_ids(&mut consumer, 1, Duration::from_secs(2)).await,
        vec!["poked"]
    );
    shutdown.cancel();
    task.await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn replicas_share_the_outbox_without_publishing_a_row_twice() {
    let env = Env::new().await;
    let want = ids("r", 300);
    for id in &want {
        env.commit_event(id, "message:appUser").await;
    }
    let config = RelayConfig {
        batch_size: 20,
        ..RelayConfig::default()
    };
    let a = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        config.clone(),
    );
    let b = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let (na, nb) = tokio::join!(a.drain(), b.drain());
    let (na, nb) = (na.unwrap(), nb.unwrap());
    assert_eq!(na + nb, 300);
    let mut consumer = env.consumer().await;
    let mut got = read_ids(&mut consumer, 301, Duration::from_secs(2)).await;
    got.sort();
    assert_eq!(got, want, "every row exactly once");
    env.cleanup().await;
}

#[tokio::test]
async fn the_writers_trace_context_travels_as_message_headers() {
    use futures::StreamExt as _;

    let env = Env::new().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    env.commit_event("traced", "message:appUser").await;
    sqlx::query("UPDATE outbox SET trace_context = $1 WHERE event_id = 'traced'")
        .bind(serde_json::json!({"traceparent": traceparent, "tracestate": "k=v"}))
        .execute(&env.pool)
        .await
        .unwrap();
    env.commit_event("untraced", "message:appUser").await;
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        RelayConfig::default(),
    );
    assert_eq!(relay.drain().await.unwrap(), 2);

    let mut consumer = env.consumer().await;
    let mut contexts = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        contexts.push(bus::trace::context_of(&delivery.properties));
    }
    assert_eq!(contexts[0]["traceparent"], traceparent);
    assert_eq!(contexts[0]["tracestate"], "k=v");
    assert!(contexts[1].is_empty(), "{:?}", contexts[1]);
    env.cleanup().await;
}

#[tokio::test]
async fn handed_rows_are_published_at_once_and_marked() {
    let env = Env::new().await;
    // No sweep during the test: only the hand-over can publish.
    let config = RelayConfig {
        sweep_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let relay = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut consumer = env.consumer().await;
    let mut rows = Vec::new();
    for id in ids("handed", 3) {
        rows.push(env.commit_row(&id, "message:appUser").await);
    }
    handle.hand_over(rows);
    assert_eq!(
        read_ids(&mut consumer, 3, Duration::from_secs(5)).await,
        ids("handed", 3)
    );
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(env.unpublished().await, 0, "published rows are marked");
    env.cleanup().await;
}

#[tokio::test]
async fn claims_leave_handed_rows_and_the_sweep_leaves_young_rows() {
    let env = Env::new().await;
    let config = RelayConfig {
        sweep_interval: Duration::from_millis(50),
        claim_after: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    // Handed over to a relay whose task does not run (as if it were busy): a claim pass
    // of that replica skips the row.
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        config.clone(),
    );
    let handed = env.commit_row("handed", "message:appUser").await;
    relay.handle().hand_over([handed]);
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "a handed row is not claimed"
    );

    // A young row nobody handed over: a running relay's sweeps leave it (some replica may
    // be publishing it), though they run every 50 ms.
    let other = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(other.run(shutdown.clone()));
    env.commit_row("young", "message:appUser").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(env.unpublished().await, 2, "neither row was published");
    env.cleanup().await;
}

#[tokio::test]
async fn a_failed_hand_over_leaves_the_rows_for_the_sweep() {
    let env = Env::new().await;
    let down = std::sync::Arc::new(Publisher::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "relay-test-down",
        env.topology.clone(),
    ));
    let config = RelayConfig {
        sweep_interval: Duration::from_millis(100),
        claim_after: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let relay = Relay::new(env.pool.clone(), TestOutbox, down, config.clone());
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let row = env.commit_row("lost-broker", "message:appUser").await;
    handle.hand_over([row]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        env.unpublished().await,
        1,
        "no row is marked without a confirm"
    );

    // A relay that reaches the broker sweeps it once it is old enough.
    let relay = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut consumer = env.consumer().await;
    assert_eq!(
        read_ids(&mut consumer, 1, Duration::from_secs(5)).await,
        vec!["lost-broker"]
    );
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(env.unpublished().await, 0);
    env.cleanup().await;
}

/// A local consumer whose work waits for `gate`, then reports event ids containing "fail"
/// as not handled and panics on those containing "panic".
struct GatedConsumer {
    gate: tokio::sync::watch::Receiver<bool>,
}

impl bus::LocalConsumer for GatedConsumer {
    fn offer(&self, row: &bus::OutboxRow) -> Option<bus::LocalWork> {
        if !bus::Topology::may_take_locally(&row.trigger) {
            return None;
        }
        let mut gate = self.gate.clone();
        let id = row.event_id.clone();
        Some(Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            assert!(!id.contains("panic"), "the work on {id} panicked");
            !id.contains("fail")
        }))
    }
}

/// Waits until `n` rows are unpublished (or 5 s passed); returns the last count.
async fn until_unpublished(env: &Env, n: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = env.unpublished().await;
        if now == n || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rows_a_local_consumer_takes_skip_its_queue_and_are_marked_once_it_handled_them() {
    use futures::StreamExt as _;

    let env = Env::new().await;
    // A real-time-like queue: bound to the real-time exchange for the rows' app.
    let mut watched = env
        .realtime_watcher(&bus::Topology::realtime_binding("app1"))
        .await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let handoff = bus::LocalHandoff::default();
    handoff.register(std::sync::Arc::new(GatedConsumer { gate }));
    let config = RelayConfig {
        sweep_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        config.clone(),
    )
    .with_local(handoff.clone());
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut queue = env.consumer().await;
    let mut rows = Vec::new();
    for (id, trigger) in [
        ("local-ok", "message:appUser"),
        ("local-fail", "message:appUser"),
        ("local-panic", "message:appUser"),
        // The push worker's trigger: never taken in process.
        ("plain", "message:appMaker"),
    ] {
        rows.push(env.commit_row(id, trigger).await);
    }
    handle.hand_over(rows);

    // The worker's queue gets only what the local consumer did not take.
    assert_eq!(
        read_ids(&mut queue, 2, Duration::from_secs(2)).await,
        vec!["plain"]
    );
    // The real-time exchange gets a copy of every row, taken or not, under its app's key.
    let mut keys = Vec::new();
    for _ in 0..4 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), watched.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let key = delivery.routing_key.as_str().to_owned();
        assert_eq!(
            bus::Topology::realtime_trigger_of(&key),
            delivery.properties.kind().as_ref().unwrap().as_str()
        );
        keys.push(key);
    }
    keys.sort();
    assert_eq!(
        keys,
        [
            "message:appMaker.app1",
            "message:appUser.app1",
            "message:appUser.app1",
            "message:appUser.app1"
        ]
    );
    // The consumer has not finished: only the plain row, confirmed, is marked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.unpublished().await, 3);

    open.send(true).unwrap();
    assert_eq!(
        until_unpublished(&env, 2).await,
        2,
        "the handled row is marked; the failed and the panicked are not"
    );
    shutdown.cancel();
    task.await.unwrap();

    // What the consumer did not handle is published by a sweep to the events exchange:
    // the worker's queue gets it.
    handoff.unregister();
    let relay = Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config);
    assert_eq!(relay.drain().await.unwrap(), 2);
    let mut got = read_ids(&mut queue, 3, Duration::from_secs(2)).await;
    got.sort();
    assert_eq!(got, vec!["local-fail", "local-panic"]);
    assert_eq!(env.unpublished().await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn rows_a_local_consumer_takes_are_marked_without_the_broker() {
    let env = Env::new().await;
    let (open, gate) = tokio::sync::watch::channel(true);
    let handoff = bus::LocalHandoff::default();
    handoff.register(std::sync::Arc::new(GatedConsumer { gate }));
    // Nothing listens there: the real-time copies cannot go out, and a row that must be
    // published cannot either.
    let unreachable = std::sync::Arc::new(Publisher::new(
        "amqp://127.0.0.1:1/%2f",
        "relay-test-unreachable",
        env.topology.clone(),
    ));
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        unreachable,
        RelayConfig {
            sweep_interval: Duration::from_secs(3600),
            ..RelayConfig::default()
        },
    )
    .with_local(handoff);
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let rows = vec![
        env.commit_row("taken", "message:appUser").await,
        env.commit_row("not-taken", "message:appMaker").await,
    ];
    handle.hand_over(rows);
    assert_eq!(
        until_unpublished(&env, 1).await,
        1,
        "the taken row is marked once handled; the other waits for a broker"
    );
    let left: String = sqlx::query_scalar("SELECT event_id FROM outbox WHERE published_at IS NULL")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(left, "not-taken");
    drop(open);
    shutdown.cancel();
    task.await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn real_time_copies_go_only_to_apps_some_gateway_watches() {
    use futures::StreamExt as _;

    let env = Env::new().await;
    // A queue that sees every copy the relay sends, whatever its app.
    let mut copies = env.realtime_watcher("#").await;
    let mut next_copy = async || {
        let delivery = tokio::time::timeout(Duration::from_secs(5), copies.next())
            .await
            .expect("a copy")
            .unwrap()
            .unwrap();
        delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .to_string()
    };
    let redis = helpers::redis();
    let gateway = auth::Audience::new(redis.clone(), Duration::from_secs(30));
    gateway.watch(&["app1".to_owned()]).await.unwrap();
    // A relay asking the audience on `redis`, running until `shutdown`.
    let start = |redis: auth::RedisClient, shutdown: CancellationToken| {
        let audience = helpers::RedisAudience(auth::Audience::reader(redis));
        let relay = Relay::new(
            env.pool.clone(),
            TestOutbox,
            env.publisher(),
            RelayConfig::default(),
        )
        .with_audience(std::sync::Arc::new(audience));
        (relay.handle(), tokio::spawn(relay.run(shutdown)))
    };
    let shutdown = CancellationToken::new();
    let (handle, task) = start(redis, shutdown.clone());

    // One channel keeps the copies in order: a copy of the first row would come first.
    handle.hand_over([
        env.commit_app_row("unwatched", "app2", "message:appUser")
            .await,
        env.commit_app_row("watched", "app1", "message:appUser")
            .await,
    ]);
    assert_eq!(next_copy().await, "watched");
    // An app watched from now on gets the copies of what is committed from now on.
    gateway.watch(&["app2".to_owned()]).await.unwrap();
    handle.hand_over([env
        .commit_app_row("now-watched", "app2", "message:appUser")
        .await]);
    assert_eq!(next_copy().await, "now-watched");
    shutdown.cancel();
    task.await.unwrap();

    // A relay whose audience cannot answer copies every event.
    let down =
        auth::RedisClient::new(auth::RedisConfig::new("redis://127.0.0.1:1", "down")).unwrap();
    let shutdown = CancellationToken::new();
    let (handle, task) = start(down, shutdown.clone());
    handle.hand_over([env
        .commit_app_row("nobody-knows", "app3", "message:appUser")
        .await]);
    assert_eq!(next_copy().await, "nobody-knows");
    shutdown.cancel();
    task.await.unwrap();
    env.cleanup().await;
}

/// A relay that cleans up every 50 ms the rows published over a minute ago, and does not
/// sweep during the test.
fn cleaning_relay(env: &Env) -> Relay<TestOutbox> {
    let config = RelayConfig {
        sweep_interval: Duration::from_secs(3600),
        retention: Some(Duration::from_secs(60)),
        cleanup_interval: Duration::from_millis(50),
        ..RelayConfig::default()
    };
    Relay::new(env.pool.clone(), TestOutbox, env.publisher(), config)
}

/// The event ids left in the outbox, oldest first.
async fn outbox_ids(env: &Env) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY seq")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cleanup_deletes_rows_published_before_the_retention_and_keeps_the_rest() {
    let env = Env::new().await;
    // Oldest first: published just now, published an hour ago, never published, published
    // an hour ago. The young head must not stop the cleanup from reaching the old rows.
    for (id, published) in [
        ("recent", Some("now()")),
        ("old1", Some("now() - interval '1 hour'")),
        ("pending", None),
        ("old2", Some("now() - interval '1 hour'")),
    ] {
        env.commit_event(id, "message:appUser").await;
        if let Some(at) = published {
            sqlx::query(&format!(
                "UPDATE outbox SET published_at = {at} WHERE event_id = $1"
            ))
            .bind(id)
            .execute(&env.pool)
            .await
            .unwrap();
        }
    }
    let relay = cleaning_relay(&env);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut left = outbox_ids(&env).await;
    for _ in 0..100 {
        if left.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = outbox_ids(&env).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(left, vec!["recent", "pending"]);
    env.cleanup().await;
}

#[tokio::test]
async fn a_cleanup_waiting_on_a_lock_does_not_hold_up_handed_rows() {
    let env = Env::new().await;
    env.commit_event("old", "message:appUser").await;
    sqlx::query("UPDATE outbox SET published_at = now() - interval '1 hour'")
        .execute(&env.pool)
        .await
        .unwrap();
    // Another transaction holds the old row: the cleanup's delete waits for it.
    let mut lock = env.pool.begin().await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    sqlx::query("SELECT seq FROM outbox WHERE event_id = 'old' FOR UPDATE")
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    let relay = cleaning_relay(&env);
    let handle = relay.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Until the cleanup waits on the lock.
    let mut waiting = false;
    for _ in 0..250 {
        waiting = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                             WHERE $1 = ANY (pg_blocking_pids(pid)) AND query LIKE 'DELETE FROM outbox%')",
        )
        .bind(holder)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the cleanup never waited on the held row");
    let mut consumer = env.consumer().await;
    let rows = vec![
        env.commit_row("fresh0", "message:appUser").await,
        env.commit_row("fresh1", "message:appUser").await,
    ];
    handle.hand_over(rows);
    assert_eq!(
        read_ids(&mut consumer, 2, Duration::from_secs(5)).await,
        vec!["fresh0", "fresh1"]
    );
    lock.rollback().await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(outbox_ids(&env).await, vec!["fresh0", "fresh1"]);
    env.cleanup().await;
}

#[tokio::test]
async fn one_cleanup_deletes_a_backlog_larger_than_its_batch() {
    let env = Env::new().await;
    // 25,000 rows published an hour ago: more than two of the cleanup's 10,000-row
    // statements. Then one row not yet published, which stays.
    sqlx::query(
        "INSERT INTO outbox (event_id, app_id, trigger, payload, published_at)
         SELECT 'old-' || g, 'app1', 'message:appUser', '{}'::jsonb, now() - interval '1 hour'
           FROM generate_series(1, 25000) AS g",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    env.commit_event("pending", "message:appUser").await;
    // The first cleanup comes one interval after the start, the second two intervals after
    // (plus the first one's time): only one cleanup can finish the backlog before then.
    let interval = Duration::from_secs(3);
    let relay = Relay::new(
        env.pool.clone(),
        TestOutbox,
        env.publisher(),
        RelayConfig {
            sweep_interval: Duration::from_secs(3600),
            retention: Some(Duration::from_secs(60)),
            cleanup_interval: interval,
            ..RelayConfig::default()
        },
    );
    let started = std::time::Instant::now();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut left = outbox_ids(&env).await;
    while left.len() > 1 && started.elapsed() < interval * 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = outbox_ids(&env).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        left,
        vec!["pending"],
        "one cleanup left {} rows after {elapsed:?}",
        left.len()
    );
    env.cleanup().await;
}
