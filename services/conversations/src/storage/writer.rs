//! Group commit of message writes. Posts that arrive while every writer is busy wait in
//! one queue; the next free writer takes all of them (up to a batch) and commits them in
//! one transaction. A commit is about a third of Postgres's CPU for a post written alone
//! (pgbench), so under load batches save some of it, and alone a post still commits at
//! once: a writer waits for no one. The fewer the writers, the sooner posts queue and the
//! larger the batches: with one (the default) Postgres spent 20-35 % less CPU per post at
//! 2,000-3,000 POST/s than with four, which committed most posts alone until the machine
//! saturated.
//!
//! A batch is written as few statements as its users allow: one for each user's first
//! post, one for each second post, and so on (`rounds`), each statement writing all its
//! posts at once (`messages::post_batch`: one statement's start and end in Postgres and
//! one round trip instead of one per post, about a fifth less of Postgres's CPU per
//! message under load). A batch locks its conversations in one order (by app and app
//! user), so two batches never wait on each other in a cycle. When a statement of a batch fails, the batch is
//! rolled back and each post is written again on its own, so one bad write fails alone.
//! A failed `COMMIT` is not retried: whether it committed is unknown, and the posts'
//! callers get the error, as they would for a write on its own.
//!
//! The writers keep their connections between batches ([`db::Kept`], one connection per
//! writer): sqlx pings a connection released to the pool (a round trip to Postgres, and a
//! wake-up of its backend), which a writer would do after every batch, that is after every
//! post at a low rate.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use super::messages::{post_batch, post_in, NewPost, Posted};

/// A post and where its outcome goes.
struct Job {
    post: NewPost,
    done: oneshot::Sender<(NewPost, sqlx::Result<Posted>)>,
}

/// How many of `wanted` writers a pool of `pool_size` connections runs: at most half of
/// it, so that while every writer commits, reads, the outbox relay and the other writes
/// of the service still get connections instead of waiting out the pool's timeout.
fn allowed_writers(wanted: usize, pool_size: u32) -> usize {
    wanted.min(usize::try_from(pool_size / 2).unwrap_or(usize::MAX))
}

/// The queue of message writes, served by the writer tasks of [`Writer::start`].
#[derive(Clone)]
pub(crate) struct Writer {
    pool: PgPool,
    /// How many writer tasks run, each holding a connection of the pool.
    writers: usize,
    /// `None`: no writer tasks; each post is written on its own, at once.
    jobs: Option<mpsc::Sender<Job>>,
}

impl Writer {
    /// Starts `writers` tasks writing batches of up to `max_batch` posts on `pool`
    /// connections; they end with the last [`Writer`] clone or once `finished` is
    /// cancelled (the server drained). With no writers, each post is written on its own.
    pub(crate) fn start(
        pool: PgPool,
        writers: usize,
        max_batch: usize,
        tasks: &tasks::Tasks,
    ) -> Writer {
        let pool_size = pool.options().get_max_connections();
        let allowed = allowed_writers(writers, pool_size);
        if allowed < writers {
            tracing::warn!(
                wanted = writers,
                started = allowed,
                pool_size,
                "SMOOCH_MESSAGE_WRITERS is more than half of SMOOCH_DATABASE_MAX_CONNECTIONS; starting half as many writers as the pool has connections"
            );
        }
        let writers = allowed;
        if writers == 0 {
            return Writer {
                pool,
                writers: 0,
                jobs: None,
            };
        }
        let max_batch = max_batch.max(1);
        let (jobs, queue) = mpsc::channel(writers * max_batch * 4);
        let queue = Arc::new(Mutex::new(queue));
        // Each writer task holds one connection at a time, kept from one batch to the next.
        let conns = db::Kept::new(pool.clone(), writers);
        for _ in 0..writers {
            let writer = write(
                conns.clone(),
                Arc::clone(&queue),
                max_batch,
                tasks.finished().clone(),
            );
            tasks.spawn("message writer", writer);
        }
        Writer {
            pool,
            writers,
            jobs: Some(jobs),
        }
    }

    /// How many writer tasks run, each holding a connection of the pool.
    pub(crate) fn writers(&self) -> usize {
        self.writers
    }

    /// Writes `post`, committed once this returns, and gives it back with what the
    /// write read.
    pub(crate) async fn post(&self, post: NewPost) -> sqlx::Result<(NewPost, Posted)> {
        let Some(jobs) = &self.jobs else {
            let posted = alone(&self.pool, &post).await?;
            return Ok((post, posted));
        };
        let (done, outcome) = oneshot::channel();
        jobs.send(Job { post, done })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // A writer that stopped (shutdown) without answering wrote nothing of this post,
        // or committed it (its answer lost with it), as with a connection lost during a
        // commit.
        let (post, result) = outcome.await.map_err(|_| sqlx::Error::PoolClosed)?;
        Ok((post, result?))
    }
}

/// One writer: takes what is queued, commits it, answers, until the queue closes or
/// `finished` is cancelled.
async fn write(
    conns: db::Kept,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    finished: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let taken = {
            let mut queue = queue.lock().await;
            tokio::select! {
                () = finished.cancelled() => 0,
                taken = queue.recv_many(&mut batch, max_batch) => taken,
            }
        };
        if taken == 0 {
            return;
        }
        metrics::histogram!("message_write_batch_size").record(taken as f64);
        commit(&conns, &mut batch).await;
    }
}

/// Writes `batch` (emptied) and answers each post.
async fn commit(conns: &db::Kept, batch: &mut Vec<Job>) {
    if batch.len() > 1 {
        // One lock order for every batch; the sort is stable, so one user's posts keep
        // their order.
        batch.sort_by(|a, b| {
            (&a.post.app_id, &a.post.app_user_id).cmp(&(&b.post.app_id, &b.post.app_user_id))
        });
        match together(conns, batch).await {
            Together::Committed(posted) => {
                for (job, posted) in batch.drain(..).zip(posted) {
                    // A caller that went away (its request was cancelled) needs no answer.
                    let _ = job.done.send((job.post, Ok(posted)));
                }
                return;
            }
            Together::CommitFailed(error) => {
                tracing::warn!(error = %error, posts = batch.len(), "a batch of message writes failed to commit");
                for job in batch.drain(..) {
                    let _ = job.done.send((job.post, Err(like(&error))));
                }
                return;
            }
            Together::RolledBack(error) => {
                tracing::debug!(error = %error, posts = batch.len(), "a batch of message writes rolled back; writing each on its own");
            }
        }
    }
    for job in batch.drain(..) {
        let result = match conns.acquire().await {
            Ok(mut conn) => {
                let result = post_in(&mut conn, &job.post).await;
                if result.is_ok() {
                    conn.finish();
                }
                result
            }
            Err(e) => Err(e),
        };
        let _ = job.done.send((job.post, result));
    }
}

/// What became of a batch written in one transaction.
enum Together {
    Committed(Vec<Posted>),
    /// A statement failed: nothing of the batch was written.
    RolledBack(sqlx::Error),
    /// The commit failed: the batch may or may not be written.
    CommitFailed(sqlx::Error),
}

/// Writes `batch` in one transaction on a connection of `conns`, kept for the next batch
/// once it committed, and given back to the pool after a failure.
async fn together(conns: &db::Kept, batch: &[Job]) -> Together {
    use sqlx::Connection as _;
    let mut conn = match conns.acquire().await {
        Ok(conn) => conn,
        Err(e) => return Together::RolledBack(e),
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return Together::RolledBack(e),
    };
    let mut written: Vec<Option<Posted>> = batch.iter().map(|_| None).collect();
    // Dropping the transaction on an error rolls it back.
    let users = batch
        .iter()
        .map(|job| (&job.post.app_id, &job.post.app_user_id));
    for round in rounds(users) {
        let posts: Vec<&NewPost> = round.iter().map(|&i| &batch[i].post).collect();
        let outcomes = match posts.as_slice() {
            [post] => post_in(&mut tx, post).await.map(|posted| vec![posted]),
            _ => post_batch(&mut tx, &posts).await,
        };
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => return Together::RolledBack(e),
        };
        for (&i, posted) in round.iter().zip(outcomes) {
            written[i] = Some(posted);
        }
    }
    let Some(written) = written.into_iter().collect::<Option<Vec<_>>>() else {
        return Together::RolledBack(sqlx::Error::Protocol(
            "a batch of message writes left a post unwritten".into(),
        ));
    };
    match tx.commit().await {
        Ok(()) => {
            conn.finish();
            Together::Committed(written)
        }
        Err(e) => Together::CommitFailed(e),
    }
}

/// The statements of a batch sorted by app and app user, given each post's (app, app
/// user): the first holds each user's first post, the next each user's second, and so on,
/// so that each statement writes to distinct conversations (see [`post_batch`]) and a
/// user's posts keep their order. Indexes into the batch.
fn rounds<K: PartialEq>(users: impl IntoIterator<Item = K>) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut nth = 0;
    let mut previous: Option<K> = None;
    for (i, user) in users.into_iter().enumerate() {
        nth = if previous.as_ref() == Some(&user) {
            nth + 1
        } else {
            0
        };
        previous = Some(user);
        match rounds.get_mut(nth) {
            Some(round) => round.push(i),
            None => rounds.push(vec![i]),
        }
    }
    rounds
}

/// An error for each post of a batch whose commit failed with `error` (which cannot be
/// cloned), of the same kind: a lost database is answered 503 for every post, as it is
/// for a post written alone, and anything else 500.
fn like(error: &sqlx::Error) -> sqlx::Error {
    let description = format!("the commit of a batch of messages failed: {error}");
    if db::is_unavailable(error) {
        sqlx::Error::Io(std::io::Error::other(description))
    } else {
        sqlx::Error::Protocol(description)
    }
}

/// One post, one statement that commits by itself.
async fn alone(pool: &PgPool, post: &NewPost) -> sqlx::Result<Posted> {
    post_in(&mut *pool.acquire().await?, post).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_the_warning_asks_for_leaves_reads_a_connection() {
        let pool = crate::POOL_KEEPING_A_READ;
        for wanted in 0..=64 {
            let writers = allowed_writers(wanted, pool);
            assert!(
                crate::kept_for_reads(pool, writers) >= 1,
                "{wanted} writers wanted, {writers} started"
            );
        }
        // One connection less, and the default writers leave reads none.
        assert_eq!(
            crate::kept_for_reads(pool - 1, allowed_writers(4, pool - 1)),
            0
        );
    }

    #[test]
    fn writers_take_at_most_half_the_pool() {
        assert_eq!(allowed_writers(4, 10), 4);
        assert_eq!(allowed_writers(8, 10), 5);
        assert_eq!(allowed_writers(4, 3), 1);
        assert_eq!(
            allowed_writers(4, 1),
            0,
            "a pool of one: each post on its own"
        );
        assert_eq!(allowed_writers(0, 10), 0);
    }

    #[test]
    fn each_statement_of_a_batch_writes_to_distinct_users_in_their_order() {
        assert_eq!(rounds(["a", "b", "c"]), vec![vec![0, 1, 2]]);
        assert_eq!(
            rounds(["a", "a", "a", "b", "c", "c"]),
            vec![vec![0, 3, 4], vec![1, 5], vec![2]],
            "a user's second post goes in the second statement, after its first"
        );
        assert_eq!(rounds(["a"]), vec![vec![0]]);
        assert!(rounds(Vec::<&str>::new()).is_empty());
    }

    #[test]
    fn a_failed_commit_is_answered_as_its_kind_to_every_post() {
        let lost = like(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(db::is_unavailable(&lost), "{lost}");
        assert!(lost.to_string().contains("commit of a batch"), "{lost}");
        let other = like(&sqlx::Error::Protocol("unexpected message".into()));
        assert!(!db::is_unavailable(&other), "{other}");
        assert!(other.to_string().contains("unexpected message"), "{other}");
    }
}
