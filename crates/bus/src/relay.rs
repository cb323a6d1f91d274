//! The transactional-outbox relay: moves committed `outbox` rows onto the events exchange.
//!
//! A service writes each event to its `outbox` table in the same transaction as the data
//! it describes. The relay claims unpublished rows oldest first with `FOR UPDATE SKIP
//! LOCKED` (so replicas share the work and never publish the same batch at once), publishes
//! them with confirms and sets `published_at` only after the broker confirmed the whole
//! batch, in the same transaction that holds the claim. A crash anywhere in between leaves
//! the rows unpublished for the next pass: events are published at least once.
//!
//! The fast path skips the claim: a writer hands the rows it just committed to the relay
//! ([`RelayHandle::hand_over`]), which publishes them as they come (whatever queued while the
//! previous batch awaited its confirms goes in the next batch) and marks what was confirmed
//! within 10 ms with one `UPDATE`, on a connection it holds (its marks never queue behind
//! requests for the pool). Rows in that queue are this replica's: its own claims skip them. The
//! periodic sweep claims only rows older than [`RelayConfig::claim_after`], so it publishes
//! what a crashed replica (or a full queue, or a failed batch) left behind, not what another
//! replica is about to publish; a replica slower than that is the one case an event goes out
//! twice, which consumers tolerate (at least once, with a stable id). A poke
//! ([`RelayHandle::poke`]) runs a claim pass at once for writers that do not hand over.
//!
//! In a process that also runs the event's consumer (`smooch all`), the fast path hands an
//! event straight to it ([`LocalConsumer`], registered on a [`LocalHandoff`]) instead of
//! publishing it to the events exchange: the consumer does its work in process, and the
//! row is marked published only once the consumer finished. A crash in between leaves the
//! row for the sweep, which publishes it to the events exchange: the consumer's queue gets
//! it again (at least once, same event id).
//!
//! Whichever way an event goes, the relay first copies message and merge events
//! ([`REALTIME_TRIGGERS`]) to the real-time exchange under their app's key
//! ([`Topology::realtime_key`]), transient and unconfirmed: only gateways whose clients
//! watch the app bind it, and real-time delivery is best effort, so a copy the broker
//! loses costs nothing that a confirm would have saved. With an [`Audience`]
//! ([`Relay::with_audience`]) it copies only the events of apps some gateway watches; when
//! the audience cannot tell, it copies them all.
//!
//! The relay's SQL is its service's: the service implements [`OutboxStore`] on its own
//! outbox table with compile-checked statements (the conversations service's is
//! `conversations.outbox`), shaped like this:
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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lapin::types::FieldTable;
use lapin::BasicProperties;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::topology::REALTIME_TRIGGERS;
use crate::{Backoff, Outgoing, Publisher, Result, Topology};

/// Settings of an outbox relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and published per transaction. Default 100.
    pub batch_size: u32,
    /// Time between sweeps for rows nobody poked about. Default 1 s.
    pub sweep_interval: Duration,
    /// Published rows older than this are deleted by the cleanup; `None` keeps them.
    /// Default 24 h.
    pub retention: Option<Duration>,
    /// Time between cleanups. Default 60 s.
    pub cleanup_interval: Duration,
    /// How old an unpublished row must be for the sweep to claim it: rows younger than this
    /// may be on their way through some replica's fast path. Default 2 s.
    pub claim_after: Duration,
    /// Rows the fast path holds at most; a writer's rows beyond that wait for the sweep.
    /// Default 8192.
    pub queue: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 100,
            sweep_interval: Duration::from_secs(1),
            retention: Some(Duration::from_secs(24 * 3600)),
            cleanup_interval: Duration::from_secs(60),
            claim_after: Duration::from_secs(2),
            queue: 8192,
        }
    }
}

/// A cheap, cloneable handle to a relay: hands it committed rows, or wakes it.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    notify: Arc<Notify>,
    queue: mpsc::Sender<OutboxRow>,
    /// Seqs handed over and not yet marked published: this replica's claims skip them.
    in_flight: Arc<Mutex<HashSet<i64>>>,
}

impl RelayHandle {
    /// Asks for a claim pass now. Pokes while a pass runs collapse into one more pass.
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Hands rows committed to the outbox to the relay, which publishes them at once. Call
    /// it only after the commit. Rows that do not fit in the queue stay for the sweep.
    pub fn hand_over(&self, rows: impl IntoIterator<Item = OutboxRow>) {
        let mut in_flight = self.in_flight_set();
        for row in rows {
            let seq = row.seq;
            // Marked before it is queued: the relay may publish it (and unmark it) at once.
            in_flight.insert(seq);
            if self.queue.try_send(row).is_err() {
                in_flight.remove(&seq);
                metrics::counter!("outbox_handover_overflow_total").increment(1);
            }
        }
    }

    fn in_flight_set(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // The set holds plain integers: a panic elsewhere cannot leave it inconsistent.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_flight(&self) -> Vec<i64> {
        self.in_flight_set().iter().copied().collect()
    }
}

/// An outbox row to publish: claimed from the table, or handed over by its writer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// The row's `seq`.
    pub seq: i64,
    /// The event's id: the message id on the bus.
    pub event_id: String,
    /// The app the event belongs to.
    pub app_id: String,
    /// The routing key.
    pub trigger: String,
    /// The event, as JSON.
    pub payload: String,
    /// When the row was written, in seconds since the epoch.
    pub created_at_s: i64,
    /// W3C `traceparent` of the request that wrote the row, if it ran in a trace.
    pub traceparent: Option<String>,
    /// W3C `tracestate` that came with it.
    pub tracestate: Option<String>,
}

/// The work a [`LocalConsumer`] does with one event, resolving to whether it handled it.
pub type LocalWork = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// A consumer of events in the relay's own process, which takes them from the relay instead
/// of from its queue (see the module's documentation).
pub trait LocalConsumer: Send + Sync + 'static {
    /// The work for `row` when this consumer takes it now: `None` when it does not want the
    /// row's trigger, cannot read it, or is busy or stopping (its queue gets the event
    /// then). `false` from the work means not handled: the row stays for the sweep.
    fn offer(&self, row: &OutboxRow) -> Option<LocalWork>;
}

/// Where a process's [`LocalConsumer`] registers for the relays of the same process to
/// find it; cheap to clone. Without a registered consumer, relays publish as usual.
#[derive(Clone, Default)]
pub struct LocalHandoff {
    consumer: Arc<RwLock<Option<Arc<dyn LocalConsumer>>>>,
}

impl std::fmt::Debug for LocalHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHandoff")
            .field("registered", &self.current().is_some())
            .finish()
    }
}

impl LocalHandoff {
    /// Registers `consumer` (replacing any other) until [`LocalHandoff::unregister`].
    pub fn register(&self, consumer: Arc<dyn LocalConsumer>) {
        *self.slot_mut() = Some(consumer);
    }

    /// Removes the registered consumer: relays publish everything again.
    pub fn unregister(&self) {
        *self.slot_mut() = None;
    }

    fn current(&self) -> Option<Arc<dyn LocalConsumer>> {
        // The slot holds an `Option<Arc>`: a panic elsewhere cannot leave it inconsistent.
        self.consumer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn slot_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<dyn LocalConsumer>>> {
        self.consumer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tells the relay how a local consumer's work on a row ended, also when the work panicked
/// or was dropped (then: not handled).
struct Completion {
    seq: i64,
    done: mpsc::UnboundedSender<(i64, bool)>,
    sent: bool,
}

impl Completion {
    fn finish(mut self, handled: bool) {
        self.sent = true;
        let _ = self.done.send((self.seq, handled));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.done.send((self.seq, false));
        }
    }
}

impl OutboxRow {
    /// The trace context of the request that wrote the row, as the string map
    /// `telemetry::propagation::set_parent_from_map` reads (empty when it had none).
    pub fn trace_context(&self) -> HashMap<String, String> {
        [
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect()
    }
}

/// Rows waiting in an outbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Unpublished rows.
    pub rows: i64,
    /// Age of the oldest unpublished row in seconds; 0 with none.
    pub oldest_age_s: f64,
}

/// The statements of one service's outbox table, which the relay runs (in its own
/// transactions, on connections of its pool). The service implements it with
/// compile-checked queries on its schema's table; the relay owns the protocol around
/// them.
pub trait OutboxStore: Send + Sync + 'static {
    /// Locks and returns up to `limit` unpublished rows created at least `min_age` ago,
    /// oldest first, except `skip` and rows another transaction holds (`FOR UPDATE SKIP
    /// LOCKED`). Each row's `created_at_s` is its `created_at` in seconds since the epoch.
    fn claim(
        &self,
        conn: &mut PgConnection,
        limit: i64,
        min_age: Duration,
        skip: &[i64],
    ) -> impl Future<Output = sqlx::Result<Vec<OutboxRow>>> + Send;

    /// Sets `published_at` on the rows `seqs`.
    fn mark_published(
        &self,
        conn: &mut PgConnection,
        seqs: &[i64],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Counts the unpublished rows and the age of the oldest.
    fn backlog(
        &self,
        conn: &mut PgConnection,
    ) -> impl Future<Output = sqlx::Result<Backlog>> + Send;

    /// Of the `limit` oldest rows, deletes those published more than `older_than` ago;
    /// returns how many. Bounded so: a statement that looked further for rows old enough
    /// would read the whole table whenever none is (a young outbox, or one that was just
    /// purged), once every cleanup.
    fn purge(
        &self,
        conn: &mut PgConnection,
        older_than: Duration,
        limit: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
}

/// Rows the cleanup looks at per statement: a long backlog of old rows goes away in several
/// short statements, never in one long one.
const PURGE_BATCH: i64 = 10_000;

/// Statements of one cleanup at most (a million rows): it keeps up with 16,000 events a
/// second at the default interval, and a backlog larger than that goes over several.
const PURGE_BATCHES: usize = 100;

/// Which apps have real-time clients somewhere: the relay copies only their events to the
/// real-time exchange. A gateway records an app before it answers a client's subscribe,
/// so an event committed after that answer is never skipped.
pub trait Audience: Send + Sync + std::fmt::Debug + 'static {
    /// Of `apps`, those some gateway watches now; `None` when that cannot be told now
    /// (the relay then copies every event).
    fn watched<'a>(
        &'a self,
        apps: &'a HashSet<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Option<HashSet<String>>> + Send + 'a>>;
}

/// The outbox relay of one service replica.
#[derive(Debug)]
pub struct Relay<S> {
    pool: PgPool,
    store: S,
    publisher: Arc<Publisher>,
    config: RelayConfig,
    handle: RelayHandle,
    handed: tokio::sync::Mutex<mpsc::Receiver<OutboxRow>>,
    /// Where this process's local consumer registers, if it runs one.
    local: Option<LocalHandoff>,
    /// Whose events get real-time copies; `None` copies every app's.
    audience: Option<Arc<dyn Audience>>,
    /// How local consumers' work ended: `(seq, handled)`.
    completed: mpsc::UnboundedSender<(i64, bool)>,
    completions: tokio::sync::Mutex<mpsc::UnboundedReceiver<(i64, bool)>>,
    /// Until when real-time copies are not sent, after a broadcast failed: a broker that
    /// is down must not hold up every batch, even those that need no broker.
    broadcast_paused_until: Mutex<Option<tokio::time::Instant>>,
}

/// How long the relay sends no real-time copies after a broadcast failed.
const BROADCAST_PAUSE: Duration = Duration::from_secs(1);

/// How long a stopping relay waits for its local consumer's work in hand, to mark what
/// finished; the rest stays for the next start's sweep.
const LOCAL_DRAIN: Duration = Duration::from_secs(5);

/// How long published rows (and rows the local consumer finished) wait to be marked with
/// those coming after them: one `UPDATE` for many, since the mark only keeps the sweep
/// from publishing them again.
const MARK_DELAY: Duration = Duration::from_millis(10);

/// Handed rows from their publish to their mark: those the local consumer took wait for it
/// to finish them instead of a broker's confirm.
#[derive(Default)]
struct Marks {
    /// Rows the local consumer is still working on, by seq (their trigger, for the
    /// published count).
    awaiting: HashMap<i64, String>,
    /// Rows it handled, to mark.
    ready: Vec<(i64, String)>,
    /// When to mark `ready`, if it holds any.
    flush_at: Option<tokio::time::Instant>,
}

impl<S: OutboxStore> Relay<S> {
    /// A relay for the outbox `store` reaches through `pool`, publishing with `publisher`
    /// to its topology's events exchange.
    pub fn new(pool: PgPool, store: S, publisher: Arc<Publisher>, config: RelayConfig) -> Self {
        let (queue, handed) = mpsc::channel(config.queue.max(1));
        let (completed, completions) = mpsc::unbounded_channel();
        Relay {
            pool,
            store,
            publisher,
            config,
            handle: RelayHandle {
                notify: Arc::default(),
                queue,
                in_flight: Arc::default(),
            },
            handed: tokio::sync::Mutex::new(handed),
            local: None,
            audience: None,
            completed,
            completions: tokio::sync::Mutex::new(completions),
            broadcast_paused_until: Mutex::new(None),
        }
    }

    /// Offers handed-over rows to the consumer registered on `handoff` first (see the
    /// module's documentation).
    pub fn with_local(mut self, handoff: LocalHandoff) -> Self {
        self.local = Some(handoff);
        self
    }

    /// Copies to the real-time exchange only the events of apps `audience` says some
    /// gateway watches.
    pub fn with_audience(mut self, audience: Arc<dyn Audience>) -> Self {
        self.audience = Some(audience);
        self
    }

    /// A relay with the default settings for the outbox `store` reaches through `pool`,
    /// publishing to `{prefix}.events` on the broker at `amqp_url` (connected on first
    /// use). `name` labels its broker connection. The service runs it with [`Relay::run`]
    /// on its tasks and hands rows over through [`Relay::handle`].
    pub fn with_broker(pool: PgPool, store: S, amqp_url: &str, prefix: &str, name: &str) -> Self {
        let topology = crate::Topology::new(prefix);
        let publisher = Arc::new(Publisher::new(
            amqp_url,
            format!("{name} outbox relay"),
            topology,
        ));
        Relay::new(pool, store, publisher, RelayConfig::default())
    }

    /// The handle that pokes this relay.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Relays until `shutdown` is cancelled: rows handed over as they come, a claim pass on
    /// every poke, a sweep every sweep interval; after a failure (broker or database down)
    /// the rows stay and sweeps are retried with exponential backoff.
    ///
    /// The fast path and the claims (sweeps, pokes, the backlog gauge and the cleanup) run
    /// side by side: a claim or a purge that reads a large outbox (one autovacuum has not
    /// cleaned yet, say) must not hold up the rows handed over meanwhile: while they shared
    /// one loop, a full `bench all` showed stalls of 400-650 ms for every event in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::join!(self.claims(&shutdown), self.fast_path(&shutdown));
        self.publisher.close().await;
        tracing::debug!("outbox relay stopped");
    }

    /// Sweeps, pokes, the backlog gauge and the cleanup, until `shutdown`.
    async fn claims(&self, shutdown: &CancellationToken) {
        // Capped low: the sweep is what publishes rows left behind after an outage, so a
        // long wait here is a long delay for every event committed meanwhile.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut next_cleanup = tokio::time::Instant::now() + self.config.cleanup_interval;
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next_sweep) => {
                    let wait = match self.sweep().await {
                        Ok(_) => {
                            backoff.reset();
                            self.report_backlog().await;
                            self.config.sweep_interval
                        }
                        Err(err) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "outbox relay sweep failed");
                            delay
                        }
                    };
                    next_sweep = tokio::time::Instant::now() + wait;
                }
                () = self.handle.notify.notified() => {
                    if let Err(err) = self.drain().await {
                        tracing::warn!(error = %err, "outbox relay pass failed");
                    }
                }
                () = tokio::time::sleep_until(next_cleanup) => {
                    self.cleanup().await;
                    next_cleanup = tokio::time::Instant::now() + self.config.cleanup_interval;
                }
            }
        }
    }

    /// Rows handed over by their writers and the local consumer's completions, until
    /// `shutdown`; then what was handed over and what the local consumer finishes soon.
    async fn fast_path(&self, shutdown: &CancellationToken) {
        let mut handed = self.handed.lock().await;
        let mut completions = self.completions.lock().await;
        let mut batch = Vec::with_capacity(self.config.batch_size as usize);
        let mut done = Vec::new();
        let mut marks = Marks::default();
        // The fast path's own connection, held between batches.
        let mut conn = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // Completions before new rows: marking them frees their place in flight.
                _ = completions.recv_many(&mut done, self.config.batch_size as usize) => {
                    self.finished(&mut done, &mut marks);
                    self.mark_when_due(&mut marks, &mut conn).await;
                }
                () = tokio::time::sleep_until(marks.flush_at.unwrap_or_else(tokio::time::Instant::now)),
                    if marks.flush_at.is_some() => {
                    self.mark_ready(&mut marks, &mut conn).await;
                }
                received = handed.recv_many(&mut batch, self.config.batch_size as usize) => {
                    if received == 0 {
                        break;
                    }
                    self.publish_handed(&mut batch, &mut marks, &mut conn).await;
                }
            }
        }
        // Rows handed over just before the shutdown go out now rather than at the next
        // start's sweep.
        while let Ok(row) = handed.try_recv() {
            batch.push(row);
            if batch.len() >= self.config.batch_size as usize {
                self.publish_handed(&mut batch, &mut marks, &mut conn).await;
            }
        }
        if !batch.is_empty() {
            self.publish_handed(&mut batch, &mut marks, &mut conn).await;
        }
        // The local consumer's work in hand: what finishes soon is marked now.
        let deadline = tokio::time::Instant::now() + LOCAL_DRAIN;
        loop {
            self.mark_ready(&mut marks, &mut conn).await;
            if self.handle.in_flight_set().is_empty() {
                break;
            }
            let more = tokio::time::timeout_at(
                deadline,
                completions.recv_many(&mut done, self.config.batch_size as usize),
            );
            if !matches!(more.await, Ok(n) if n > 0) {
                break;
            }
            self.finished(&mut done, &mut marks);
        }
    }

    /// Publishes rows handed over by their writers and marks them published (with the rows
    /// the local consumer finished meanwhile); on failure they stay unpublished for the
    /// sweep. Rows the local consumer takes are not published to the events exchange; they
    /// wait in `marks` for the consumer to finish them.
    #[tracing::instrument(skip_all, fields(rows = batch.len(), local))]
    async fn publish_handed(
        &self,
        batch: &mut Vec<OutboxRow>,
        marks: &mut Marks,
        conn: &mut Option<PoolConnection<Postgres>>,
    ) {
        let taken = self.offer_local(batch);
        tracing::Span::current().record("local", taken.len());
        match self.publish(batch, &taken).await {
            Ok(()) => {
                tracing::debug!(rows = batch.len(), "handed outbox rows published");
                for row in batch.drain(..) {
                    if taken.contains(&row.seq) {
                        marks.awaiting.insert(row.seq, row.trigger);
                    } else {
                        marks.ready.push((row.seq, row.trigger));
                    }
                }
                self.mark_when_due(marks, conn).await;
            }
            Err(err) => {
                let failed = batch.len() - taken.len();
                metrics::counter!("outbox_handover_failed_total").increment(failed as u64);
                tracing::warn!(error = %err, rows = failed, "publishing handed outbox rows failed; they stay unpublished and the sweep publishes them");
                // The rows the local consumer took needed no publish: they wait for it.
                let mut in_flight = self.handle.in_flight_set();
                for row in batch.drain(..) {
                    if taken.contains(&row.seq) {
                        marks.awaiting.insert(row.seq, row.trigger);
                    } else {
                        in_flight.remove(&row.seq);
                    }
                }
            }
        }
    }

    /// Starts the registered local consumer's work on the rows it takes; returns their seqs.
    fn offer_local(&self, batch: &[OutboxRow]) -> HashSet<i64> {
        let Some(consumer) = self.local.as_ref().and_then(LocalHandoff::current) else {
            return HashSet::new();
        };
        let mut taken = HashSet::new();
        for row in batch {
            let Some(work) = consumer.offer(row) else {
                continue;
            };
            let completion = Completion {
                seq: row.seq,
                done: self.completed.clone(),
                sent: false,
            };
            tokio::spawn(async move { completion.finish(work.await) });
            taken.insert(row.seq);
        }
        metrics::counter!("outbox_local_taken_total").increment(taken.len() as u64);
        taken
    }

    /// Sorts what the local consumer finished (`done`, drained): handled rows join the
    /// ready rows in `marks`; the rest stay unpublished for the sweep and leave the flight
    /// now.
    fn finished(&self, done: &mut Vec<(i64, bool)>, marks: &mut Marks) {
        let mut in_flight = self.handle.in_flight_set();
        for (seq, ok) in done.drain(..) {
            match marks.awaiting.remove(&seq) {
                Some(trigger) if ok => marks.ready.push((seq, trigger)),
                _ => {
                    metrics::counter!("outbox_local_unhandled_total").increment(1);
                    in_flight.remove(&seq);
                }
            }
        }
    }

    /// Marks the ready rows now if they fill a batch, else within [`MARK_DELAY`] of the
    /// first of them.
    async fn mark_when_due(&self, marks: &mut Marks, conn: &mut Option<PoolConnection<Postgres>>) {
        if marks.ready.len() >= self.config.batch_size as usize {
            self.mark_ready(marks, conn).await;
        } else if !marks.ready.is_empty() && marks.flush_at.is_none() {
            marks.flush_at = Some(tokio::time::Instant::now() + MARK_DELAY);
        }
    }

    /// Marks the rows waiting in `marks` (confirmed, and finished by the local consumer if
    /// it took them) with one `UPDATE` on the relay's own connection `conn` (acquired when
    /// missing, dropped after a failure), so marks never queue behind requests for the
    /// pool. The rows leave the flight only then: this replica's sweep cannot claim them
    /// meanwhile. A failed mark leaves them for the sweep, which publishes them again.
    async fn mark_ready(&self, marks: &mut Marks, conn: &mut Option<PoolConnection<Postgres>>) {
        marks.flush_at = None;
        if marks.ready.is_empty() {
            return;
        }
        let handled = std::mem::take(&mut marks.ready);
        let seqs: Vec<i64> = handled.iter().map(|(seq, _)| *seq).collect();
        let marked = async {
            let held = match conn.take() {
                Some(held) => held,
                None => self.pool.acquire().await?,
            };
            let held = conn.insert(held);
            let marked = self.store.mark_published(held, &seqs).await;
            if marked.is_err() {
                *conn = None;
            }
            marked
        };
        match marked.await {
            Ok(()) => {
                for (_, trigger) in handled {
                    metrics::counter!("bus_events_published_total", "trigger" => trigger)
                        .increment(1);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, rows = seqs.len(), "marking published outbox rows failed; the sweep publishes them again")
            }
        }
        let mut in_flight = self.handle.in_flight_set();
        for seq in seqs {
            in_flight.remove(&seq);
        }
    }

    /// Broadcasts the real-time copies of `rows`, then publishes those the local consumer
    /// did not take (`taken`) to the events exchange and waits for the broker's confirms.
    async fn publish(&self, rows: &[OutboxRow], taken: &HashSet<i64>) -> Result<()> {
        self.broadcast(rows).await;
        let exchange = self.publisher.topology().events_exchange();
        let messages: Vec<Outgoing<'_>> = rows
            .iter()
            .filter(|row| !taken.contains(&row.seq))
            .map(|row| Outgoing {
                exchange: &exchange,
                routing_key: &row.trigger,
                payload: row.payload.as_bytes(),
                properties: event_properties(row),
                // An event no consumer binds to has nobody to reach: it is done.
                mandatory: false,
            })
            .collect();
        self.publisher.publish_all(&messages).await
    }

    /// Copies the rows whose triggers the real-time fan-out shows to the real-time
    /// exchange, under their app's key: the gateways whose clients watch the app get them,
    /// and the broker drops the rest. Rows of apps the audience says nobody watches are not
    /// copied at all. Best effort, as real-time delivery is: a failure is counted and
    /// logged, and the rows' publish goes on.
    async fn broadcast(&self, rows: &[OutboxRow]) {
        let shown: Vec<&OutboxRow> = rows
            .iter()
            .filter(|row| REALTIME_TRIGGERS.contains(&row.trigger.as_str()))
            .collect();
        if shown.is_empty() {
            return;
        }
        let watched = match &self.audience {
            Some(audience) => {
                let apps: HashSet<&str> = shown.iter().map(|row| row.app_id.as_str()).collect();
                audience.watched(&apps).await
            }
            None => None,
        };
        let exchange = self.publisher.topology().realtime_exchange();
        let shown_count = shown.len();
        let keyed: Vec<(&OutboxRow, String)> = shown
            .into_iter()
            .filter(|row| {
                watched
                    .as_ref()
                    .is_none_or(|apps| apps.contains(&row.app_id))
            })
            .map(|row| (row, Topology::realtime_key(&row.trigger, &row.app_id)))
            .collect();
        let skipped = shown_count - keyed.len();
        if skipped > 0 {
            metrics::counter!("outbox_broadcast_skipped_total").increment(skipped as u64);
        }
        let messages: Vec<Outgoing<'_>> = keyed
            .iter()
            .map(|(row, key)| Outgoing {
                exchange: &exchange,
                routing_key: key,
                payload: row.payload.as_bytes(),
                properties: event_properties(row),
                mandatory: false,
            })
            .collect();
        if messages.is_empty() {
            return;
        }
        let paused = self
            .broadcast_pause()
            .is_some_and(|until| tokio::time::Instant::now() < until);
        if paused {
            metrics::counter!("outbox_broadcast_failed_total").increment(messages.len() as u64);
            return;
        }
        if let Err(err) = self.publisher.broadcast(&messages).await {
            metrics::counter!("outbox_broadcast_failed_total").increment(messages.len() as u64);
            *self.broadcast_pause() = Some(tokio::time::Instant::now() + BROADCAST_PAUSE);
            tracing::warn!(error = %err, rows = messages.len(), pause_ms = BROADCAST_PAUSE.as_millis() as u64, "broadcasting outbox rows to real-time clients failed; they miss them, and those of the pause");
        }
    }

    fn broadcast_pause(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        // The slot holds a plain value: a panic elsewhere cannot leave it inconsistent.
        self.broadcast_paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks published `rows` (whose confirms came) through `conn`.
    async fn mark(&self, conn: &mut PgConnection, rows: &[OutboxRow]) -> Result<()> {
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        self.store.mark_published(conn, &seqs).await?;
        for row in rows {
            metrics::counter!("bus_events_published_total", "trigger" => row.trigger.clone())
                .increment(1);
        }
        Ok(())
    }

    /// Sets the `outbox_backlog` (rows waiting) and `outbox_oldest_age_seconds` gauges; the
    /// partial index on unpublished rows keeps this cheap while the backlog is small.
    async fn report_backlog(&self) {
        let backlog = async {
            let mut conn = self.pool.acquire().await?;
            self.store.backlog(&mut conn).await
        };
        match backlog.await {
            Ok(backlog) => {
                metrics::gauge!("outbox_backlog").set(backlog.rows as f64);
                metrics::gauge!("outbox_oldest_age_seconds").set(backlog.oldest_age_s);
            }
            Err(e) => tracing::debug!(error = %e, "reading the outbox backlog failed"),
        }
    }

    /// Publishes every unpublished row this replica can claim, however young, except the
    /// ones handed to it; returns how many.
    pub async fn drain(&self) -> Result<usize> {
        self.drain_older_than(Duration::ZERO).await
    }

    /// The sweep: [`Relay::drain`] for rows older than [`RelayConfig::claim_after`].
    async fn sweep(&self) -> Result<usize> {
        self.drain_older_than(self.config.claim_after).await
    }

    async fn drain_older_than(&self, age: Duration) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.relay_batch(age).await?;
            total += n;
            if n < self.config.batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// Claims, publishes and marks one batch of rows at least `age` old (except those
    /// handed to this replica), all inside one transaction.
    #[tracing::instrument(skip_all, fields(rows))]
    async fn relay_batch(&self, age: Duration) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: rows another replica is publishing right now are left to it.
        let rows = self
            .store
            .claim(
                &mut tx,
                i64::from(self.config.batch_size),
                age,
                &self.handle.in_flight(),
            )
            .await?;
        tracing::Span::current().record("rows", rows.len());
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // Dropping `tx` on error rolls back: the rows stay unpublished.
        self.publish(&rows, &HashSet::new()).await?;
        self.mark(&mut tx, &rows).await?;
        tx.commit().await?;
        tracing::debug!(rows = rows.len(), "outbox rows published");
        Ok(rows.len())
    }

    /// Deletes published rows past the retention, a bounded batch at a time, while whole
    /// batches go.
    async fn cleanup(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let deleted = async {
            let mut conn = self.pool.acquire().await?;
            let mut total = 0;
            for _ in 0..PURGE_BATCHES {
                let rows = self.store.purge(&mut conn, retention, PURGE_BATCH).await?;
                total += rows;
                if rows < PURGE_BATCH.unsigned_abs() {
                    break;
                }
            }
            Ok::<_, sqlx::Error>(total)
        };
        match deleted.await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "old outbox rows deleted"),
            Err(err) => tracing::warn!(error = %err, "outbox cleanup failed"),
        }
    }
}

/// AMQP properties of an event: the event id as message id, so consumers can de-duplicate,
/// and the writing request's trace context as `traceparent` / `tracestate` headers.
fn event_properties(row: &OutboxRow) -> BasicProperties {
    let mut headers = FieldTable::default();
    crate::insert_app_id(&mut headers, &row.app_id);
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
