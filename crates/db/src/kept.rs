//! Connections kept between uses, in front of a pool.
//!
//! sqlx pings every connection released to its pool (a round trip to Postgres and a
//! wake-up of its backend), so that a connection left mid-statement by a cancelled caller
//! is closed rather than handed out. A short read pays it on every use: a third of the
//! round trips of a `GET` of a conversation, and the same share of the send syscalls that
//! dominate its CPU. [`Kept`] keeps a few connections whose last use ran to completion
//! and hands them out again without that ping. A connection whose use did not finish (an
//! error, or its caller cancelled) goes back to the pool as before, with the ping.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};
use tokio::sync::Notify;

use crate::PING_IF_IDLE_FOR;

/// Up to `keep` idle connections of `pool`, each handed out again as it was left, last
/// in first out.
///
/// Kept connections are not in the pool's idle set, so other users of the pool cannot
/// take them: `keep` must leave the pool enough for them.
#[derive(Clone)]
pub struct Kept {
    pool: PgPool,
    keep: usize,
    idle: Arc<Mutex<Vec<(PoolConnection<Postgres>, Instant)>>>,
    /// Wakes a caller waiting for the pool when a connection is kept instead: the pool
    /// would not wake it, as the connection never went back to it.
    kept: Arc<Notify>,
}

impl Kept {
    /// Keeps up to `keep` idle connections of `pool`; with 0 every connection goes back to
    /// the pool, as with the pool alone.
    pub fn new(pool: PgPool, keep: usize) -> Kept {
        Kept {
            pool,
            keep,
            idle: Arc::new(Mutex::new(Vec::with_capacity(keep))),
            kept: Arc::new(Notify::new()),
        }
    }

    /// The pool the connections come from.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many connections are kept idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// A kept connection, or one from the pool when none is; while the pool has none
    /// either, whichever comes first. One idle for longer than [`PING_IF_IDLE_FOR`] is
    /// pinged first, as the pool does, and replaced when the ping fails.
    pub async fn acquire(&self) -> sqlx::Result<KeptConnection> {
        loop {
            let popped = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some((mut conn, since)) = popped else {
                tokio::select! {
                    conn = self.pool.acquire() => return Ok(self.hand_out(conn?)),
                    // A connection was kept since: take it.
                    () = self.kept.notified() => continue,
                }
            };
            if since.elapsed() > PING_IF_IDLE_FOR {
                if let Err(error) = conn.ping().await {
                    // Back to the pool, whose release ping fails and closes it.
                    tracing::info!(%error, "a kept database connection was dead");
                    continue;
                }
            }
            return Ok(self.hand_out(conn));
        }
    }

    fn hand_out(&self, conn: PoolConnection<Postgres>) -> KeptConnection {
        KeptConnection {
            conn,
            home: self.clone(),
        }
    }
}

/// A connection from [`Kept::acquire`]. Given back with [`finish`](KeptConnection::finish)
/// it is kept (while fewer than `keep` are); dropped, it goes back to the pool, which
/// pings it.
pub struct KeptConnection {
    conn: PoolConnection<Postgres>,
    home: Kept,
}

impl KeptConnection {
    /// Gives the connection back once the last statement on it ran to its end (its whole
    /// answer read) and no transaction is open: idle, it can be handed out as it is.
    pub fn finish(self) {
        let KeptConnection { conn, home } = self;
        let mut idle = match home.idle.lock() {
            Ok(idle) => idle,
            // Dropped: back to the pool.
            Err(_) => return,
        };
        if idle.len() < home.keep {
            idle.push((conn, Instant::now()));
            drop(idle);
            // Stored for the next waiter when none waits yet, so none misses it.
            home.kept.notify_one();
        }
    }
}

impl std::ops::Deref for KeptConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for KeptConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
