//! [`Kept`] against a real Postgres: which connections it keeps and hands out again, and
//! that one which died while kept is replaced.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sqlx::PgConnection;

use super::Kept;

fn database_url() -> String {
    std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned())
}

async fn kept(keep: usize, max_connections: u32) -> Kept {
    crate::ensure_database(&database_url()).await.unwrap();
    let pool = crate::connect(&database_url(), "public", max_connections).unwrap();
    Kept::new(pool, keep)
}

async fn backend(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finished_connection_is_handed_out_again_as_it_was_left() {
    let kept = kept(2, 4).await;
    let mut conn = kept.acquire().await.unwrap();
    let pid = backend(&mut conn).await;
    conn.finish();
    assert_eq!(kept.idle(), 1);
    let mut again = kept.acquire().await.unwrap();
    assert_eq!(kept.idle(), 0);
    assert_eq!(
        backend(&mut again).await,
        pid,
        "the same backend, last in first out"
    );
    again.finish();
}

#[tokio::test]
async fn an_unfinished_connection_goes_back_to_the_pool() {
    let kept = kept(2, 4).await;
    let mut conn = kept.acquire().await.unwrap();
    backend(&mut conn).await;
    drop(conn);
    assert_eq!(kept.idle(), 0);
    // The pool's release (with its ping) runs on a task of its own.
    let mut idle = 0;
    for _ in 0..100 {
        idle = kept.pool.num_idle();
        if idle == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(idle, 1, "the pool got it back");
}

#[tokio::test]
async fn a_cancelled_statement_leaves_its_connection_to_the_pool() {
    let kept = kept(2, 4).await;
    let mut conn = kept.acquire().await.unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        sqlx::query("SELECT pg_sleep(5)").execute(&mut *conn),
    )
    .await;
    assert!(cut.is_err(), "the statement was cut off");
    // Its caller gives up on it rather than finishing it.
    drop(conn);
    assert_eq!(kept.idle(), 0);
    // What the next caller gets answers its own statement.
    let mut next = kept.acquire().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *next)
        .await
        .unwrap();
    assert_eq!(one, 1);
    next.finish();
    assert_eq!(kept.idle(), 1);
}

#[tokio::test]
async fn callers_hold_at_most_keep_connections_at_once_and_take_turns() {
    let kept = kept(2, 6).await;
    let mut first = kept.acquire().await.unwrap();
    let pid = backend(&mut first).await;
    let second = kept.acquire().await.unwrap();
    // Waiting for the pool instead, it would get one of the pool's spare connections.
    let third = tokio::spawn({
        let kept = kept.clone();
        async move {
            let mut conn = kept.acquire().await.unwrap();
            let pid = backend(&mut conn).await;
            conn.finish();
            pid
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!third.is_finished(), "a third caller waits for its turn");
    // The pool has connections to spare for its other users.
    let other = kept.pool.acquire().await.unwrap();
    drop(other);
    first.finish();
    let got = tokio::time::timeout(Duration::from_secs(2), third)
        .await
        .expect("the third caller's turn came")
        .unwrap();
    assert_eq!(
        got, pid,
        "it got the connection the first one finished with"
    );
    second.finish();
    assert_eq!(kept.idle(), 2);
}

#[tokio::test]
async fn a_kept_connection_that_died_while_idle_is_replaced() {
    let kept = kept(1, 4).await;
    let mut conn = kept.acquire().await.unwrap();
    let pid = backend(&mut conn).await;
    conn.finish();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&kept.pool)
        .await
        .unwrap();
    assert!(killed);
    // Idle for longer than a connection is handed out unchecked.
    tokio::time::sleep(crate::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    let mut fresh = kept.acquire().await.unwrap();
    let now = backend(&mut fresh).await;
    assert_ne!(now, pid, "another backend took the dead one's place");
    fresh.finish();
    assert_eq!(kept.idle(), 1);
}

#[tokio::test]
async fn a_connection_kept_for_the_pools_lifetime_goes_back_to_the_pool() {
    crate::ensure_database(&database_url()).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .max_lifetime(Duration::from_millis(300))
        .connect_lazy(&database_url())
        .unwrap();
    let kept = Kept::new(pool, 1);
    let mut conn = kept.acquire().await.unwrap();
    let pid = backend(&mut conn).await;
    conn.finish();
    assert_eq!(kept.idle(), 1, "young, it is kept");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut conn = kept.acquire().await.unwrap();
    assert_eq!(backend(&mut conn).await, pid);
    conn.finish();
    assert_eq!(kept.idle(), 0, "past the pool's lifetime, it went back");
    let mut fresh = kept.acquire().await.unwrap();
    assert_ne!(backend(&mut fresh).await, pid, "the pool closed it");
    fresh.finish();
}
