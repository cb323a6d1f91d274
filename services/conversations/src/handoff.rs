//! The cross-process hand-off of committed events to webhook workers (split roles): the
//! `EventHandoff` gRPC service. A worker in another process opens a stream and states how
//! many events it takes at once; the attached workers together are this process's
//! [`bus::LocalConsumer`], so the outbox relay hands them the events it would hand the
//! worker of its own process in `smooch all`, and marks a row published only once a worker
//! answered that it handled the event. An event no worker has room for goes to the event
//! queue as before; an event whose answer never comes (the stream broke, the worker died, or
//! [`ANSWER_LIMIT`] passed) stays in the outbox for the relay's sweep, which publishes it:
//! at least once, with the same event id.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// How long a handed event may wait for its worker's answer before the relay gives it up to
/// the sweep: longer than a worker's own limit on one fan-out (60 s), so a live worker
/// always answers first.
const ANSWER_LIMIT: Duration = Duration::from_secs(75);

/// How long a stopping replica waits for the answers of the events it handed before it ends
/// the workers' streams.
const DRAIN: Duration = Duration::from_secs(5);

/// The most events sent in one stream message.
const BATCH: usize = 64;

/// The workers attached to this replica, offered events in turn.
#[derive(Default)]
pub(crate) struct Workers {
    attached: Mutex<Vec<Arc<Attached>>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

/// One worker's stream.
struct Attached {
    id: u64,
    /// Events it may still be handed: its credit minus the events awaiting its answer.
    room: Mutex<u64>,
    /// The stream's sending side; `None` once the stream is closing.
    events: Mutex<Option<mpsc::UnboundedSender<pb::HandedEvent>>>,
    /// Events handed and not yet answered, by seq.
    pending: Mutex<HashMap<i64, oneshot::Sender<bool>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each lock guards plain values updated in one step: a panic elsewhere cannot leave
    // them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Attached {
    /// Takes one unit of room, if there is any.
    fn reserve(&self) -> bool {
        let mut room = lock(&self.room);
        if *room == 0 {
            return false;
        }
        *room -= 1;
        true
    }

    fn give_back(&self, n: u64) {
        *lock(&self.room) += n;
    }

    /// Hands `row` over: the receiver of the worker's answer, or `None` when the stream is
    /// closing.
    fn hand(&self, row: &bus::OutboxRow) -> Option<oneshot::Receiver<bool>> {
        let (answer, answered) = oneshot::channel();
        let event = pb::HandedEvent {
            seq: row.seq,
            event_id: row.event_id.clone(),
            app_id: row.app_id.clone(),
            trigger: row.trigger.clone(),
            payload: row.payload.clone(),
            created_at_s: row.created_at_s,
            traceparent: row.traceparent.clone(),
            tracestate: row.tracestate.clone(),
        };
        // Pending before it is sent: the answer may come at once.
        lock(&self.pending).insert(row.seq, answer);
        let sent = lock(&self.events)
            .as_ref()
            .is_some_and(|events| events.send(event).is_ok());
        if sent {
            Some(answered)
        } else {
            lock(&self.pending).remove(&row.seq);
            None
        }
    }

    /// Settles the answers the worker sent.
    fn answered(&self, outcomes: Vec<pb::HandoffOutcome>) {
        let mut settled = 0;
        {
            let mut pending = lock(&self.pending);
            for outcome in outcomes {
                if let Some(answer) = pending.remove(&outcome.seq) {
                    settled += 1;
                    let _ = answer.send(outcome.handled);
                }
            }
        }
        self.give_back(settled);
    }

    /// Stops handing events on this stream; what is still pending resolves as not handled
    /// when `drop_pending`.
    fn close(&self, drop_pending: bool) {
        lock(&self.events).take();
        if drop_pending {
            lock(&self.pending).clear();
        }
    }
}

impl Workers {
    fn attach(&self) -> (Arc<Attached>, mpsc::UnboundedReceiver<pb::HandedEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let attached = Arc::new(Attached {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            room: Mutex::new(0),
            events: Mutex::new(Some(events)),
            pending: Mutex::default(),
        });
        let mut all = lock(&self.attached);
        all.push(attached.clone());
        metrics::gauge!("event_handoff_workers").set(all.len() as f64);
        (attached, receiver)
    }

    fn detach(&self, id: u64) {
        let mut all = lock(&self.attached);
        all.retain(|a| a.id != id);
        metrics::gauge!("event_handoff_workers").set(all.len() as f64);
    }

    /// The next attached worker with room, in turn, its room taken.
    fn reserve(&self) -> Option<Arc<Attached>> {
        let all = lock(&self.attached);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..all.len())
            .map(|i| &all[(start + i) % all.len()])
            .find(|a| a.reserve())
            .cloned()
    }
}

impl bus::LocalConsumer for Workers {
    fn offer(&self, row: &bus::OutboxRow) -> Option<bus::LocalWork> {
        if !bus::Topology::may_take_locally(&row.trigger) {
            return None;
        }
        let worker = self.reserve()?;
        let Some(answered) = worker.hand(row) else {
            worker.give_back(1);
            return None;
        };
        let seq = row.seq;
        Some(Box::pin(async move {
            match tokio::time::timeout(ANSWER_LIMIT, answered).await {
                Ok(Ok(handled)) => handled,
                // The stream ended first: the worker gets no credit back for it.
                Ok(Err(_)) => false,
                Err(_) => {
                    if lock(&worker.pending).remove(&seq).is_some() {
                        worker.give_back(1);
                    }
                    tracing::warn!(
                        seq,
                        "a worker did not answer for a handed event; the outbox sweep publishes it"
                    );
                    false
                }
            }
        }))
    }
}

/// The `EventHandoff` service of one conversations replica.
pub(crate) struct HandoffApi {
    workers: Arc<Workers>,
    shutdown: CancellationToken,
}

impl HandoffApi {
    pub(crate) fn new(workers: Arc<Workers>, shutdown: CancellationToken) -> Self {
        HandoffApi { workers, shutdown }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::HandedEvents, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_handoff_server::EventHandoff for HandoffApi {
    type TakeStream = EventStream;

    async fn take(
        &self,
        request: Request<Streaming<pb::TakeRequest>>,
    ) -> Result<Response<EventStream>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "this conversations replica is stopping",
            ));
        }
        let mut answers = request.into_inner();
        let (attached, events) = self.workers.attach();
        tracing::info!(stream = attached.id, "a webhook worker attached for events");
        let workers = self.workers.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let stopping = loop {
                tokio::select! {
                    () = shutdown.cancelled() => break true,
                    answer = answers.message() => match answer {
                        Ok(Some(answer)) => {
                            attached.give_back(u64::from(answer.credit));
                            attached.answered(answer.outcomes);
                        }
                        Ok(None) => break false,
                        Err(status) => {
                            tracing::debug!(%status, "a webhook worker's stream broke");
                            break false;
                        }
                    },
                }
            };
            workers.detach(attached.id);
            if stopping {
                // Nothing new is handed on this stream; the answers of what was handed may
                // still come for a while.
                attached.close(false);
                let drained = tokio::time::timeout(DRAIN, async {
                    while !lock(&attached.pending).is_empty() {
                        match answers.message().await {
                            Ok(Some(answer)) => attached.answered(answer.outcomes),
                            _ => break,
                        }
                    }
                });
                let _ = drained.await;
            }
            attached.close(true);
            tracing::info!(stream = attached.id, "a webhook worker detached");
        });
        let stream = futures::stream::unfold(events, |mut events| async move {
            let mut batch = Vec::with_capacity(BATCH);
            if events.recv_many(&mut batch, BATCH).await == 0 {
                return None;
            }
            Some((Ok(pb::HandedEvents { events: batch }), events))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
