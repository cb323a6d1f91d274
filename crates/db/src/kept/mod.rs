//! Connections kept between uses, in front of a pool.
//!
//! sqlx pings every connection released to its pool (a round trip to Postgres and a
//! wake-up of its backend), so that a connection left mid-statement by a cancelled caller
//! is closed rather than handed out. A short read pays it on every use: a third of the
//! round trips of a `GET` of a conversation, and the same share of the send syscalls that
//! dominate its CPU. [`Kept`] gives its callers at most `keep` connections at once, in
//! turn, and keeps the ones whose use ran to completion, handing them out again without
//! that ping. A connection whose use did not finish (an error, or its caller cancelled)
//! goes back to the pool as before, with the ping.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::PING_IF_IDLE_FOR;

/// A connection kept idle.
struct Idle {
    conn: PoolConnection<Postgres>,
    /// When it was last given back.
    at: Instant,
    /// When this `Kept` took it from the pool.
    since: Instant,
}

/// At most `keep` connections of `pool` in use at once, handed out in turn, each kept
/// when its user finished with it and handed out again as it was left (last in, first
/// out).
///
/// Kept connections are not in the pool's idle set: other users of the pool cannot take
/// them, and the callers of a `Kept` never take more than `keep` of the pool's
/// connections, so `keep` splits the pool between them and the rest.
#[derive(Clone)]
pub struct Kept {
    pool: PgPool,
    /// `None` when nothing is kept: callers go to the pool, as without a `Kept`.
    turns: Option<Arc<Semaphore>>,
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl Kept {
    /// Hands out up to `keep` connections of `pool` at once and keeps them between uses;
    /// with 0 every caller goes to the pool, as with the pool alone.
    pub fn new(pool: PgPool, keep: usize) -> Kept {
        Kept {
            pool,
            turns: (keep > 0).then(|| Arc::new(Semaphore::new(keep))),
            idle: Arc::new(Mutex::new(Vec::with_capacity(keep))),
        }
    }

    /// How many connections are kept idle now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// A connection, once it is this caller's turn: a kept one, or one from the pool when
    /// none is. One idle for longer than [`PING_IF_IDLE_FOR`] is pinged first, as the pool
    /// does, and replaced when the ping fails.
    pub async fn acquire(&self) -> sqlx::Result<KeptConnection> {
        let turn = match &self.turns {
            Some(turns) => Some(
                Arc::clone(turns)
                    .acquire_owned()
                    .await
                    .map_err(|_| sqlx::Error::PoolClosed)?,
            ),
            None => None,
        };
        loop {
            let popped = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(Idle {
                mut conn,
                at,
                since,
            }) = popped
            else {
                let conn = self.pool.acquire().await?;
                return Ok(self.hand_out(conn, turn, Instant::now()));
            };
            if at.elapsed() > PING_IF_IDLE_FOR {
                if let Err(error) = conn.ping().await {
                    // Back to the pool, whose release ping fails and closes it.
                    tracing::info!(%error, "a kept database connection was dead");
                    continue;
                }
            }
            return Ok(self.hand_out(conn, turn, since));
        }
    }

    fn hand_out(
        &self,
        conn: PoolConnection<Postgres>,
        turn: Option<OwnedSemaphorePermit>,
        since: Instant,
    ) -> KeptConnection {
        KeptConnection {
            conn,
            home: self.clone(),
            since,
            turn,
        }
    }
}

/// A connection from [`Kept::acquire`]. Given back with [`finish`](KeptConnection::finish)
/// it is kept; dropped, it goes back to the pool, which pings it. Either way the next
/// caller's turn comes.
pub struct KeptConnection {
    // Fields drop in order: the connection goes back to the pool before the turn ends.
    conn: PoolConnection<Postgres>,
    home: Kept,
    /// When its `Kept` took it from the pool.
    since: Instant,
    turn: Option<OwnedSemaphorePermit>,
}

impl KeptConnection {
    /// Gives the connection back once the last statement on it ran to its end (its whole
    /// answer read) and no transaction is open: idle, it can be handed out as it is.
    ///
    /// One kept for as long as the pool lets a connection live (`max_lifetime`) goes
    /// back to the pool instead, which closes it: a connection kept busy never reaches
    /// the pool's own check.
    pub fn finish(self) {
        let KeptConnection {
            conn,
            home,
            since,
            turn,
        } = self;
        let lived = home
            .pool
            .options()
            .get_max_lifetime()
            .is_some_and(|lifetime| since.elapsed() >= lifetime);
        if turn.is_some() && !lived {
            if let Ok(mut idle) = home.idle.lock() {
                idle.push(Idle {
                    conn,
                    at: Instant::now(),
                    since,
                });
            }
        }
        // Only now, with the connection kept, may the next caller look for it.
        drop(turn);
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

#[cfg(test)]
mod tests;
