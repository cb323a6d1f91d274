//! Events straight from a conversations replica in another process (split roles): the
//! worker attaches to its `EventHandoff` stream, states how many events it takes at once,
//! fans each handed event out as it does those of its own process's relay
//! ([`LocalFanOut`]), and answers whether it handled it. The replica marks the event's
//! outbox row published only on a handled answer; anything else (a declined event, a broken
//! stream, a crash) leaves the row for the replica's sweep, which publishes it to the event
//! queue this worker also consumes. A replica that serves no hand-off (`smooch all`, or an
//! older version) is asked again now and then; meanwhile every event comes through the
//! queue.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bus::LocalConsumer as _;
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::worker::LocalFanOut;

/// How long a stopping worker waits for the events in hand before it closes its stream
/// (their rows then wait for the replica's sweep).
const DRAIN: Duration = Duration::from_secs(10);

/// How long an answer to the replica waits for others to go out with it.
const ANSWER_HOLD: Duration = Duration::from_millis(20);

/// The longest wait before attaching again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Client = pb::event_handoff_client::EventHandoffClient<tonic::transport::Channel>;

/// How often a DNS name of the conversations role is resolved again for new replicas.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Where the worker takes events from: one replica at an IP address, or every replica a
/// DNS name resolves to (a headless Service in Kubernetes), since one stream reaches one
/// replica and each replica hands over only the events it commits.
pub(crate) struct Intake {
    host: String,
    port: u16,
    /// The host as an IP address, which names one replica and is never resolved again.
    ip: Option<IpAddr>,
}

impl Intake {
    /// Checks `addr`, the conversations role's `host:port` or URL.
    pub(crate) fn new(addr: &str) -> anyhow::Result<Intake> {
        let (host, port) =
            telemetry::grpc::host_port(addr).context("malformed SMOOCH_CONVERSATIONS_GRPC_ADDR")?;
        let ip = host.parse().ok();
        Ok(Intake { host, port, ip })
    }

    /// The replicas' addresses now; `None` when the name cannot be resolved now.
    async fn replicas(&self) -> Option<HashSet<SocketAddr>> {
        if let Some(ip) = self.ip {
            return Some([SocketAddr::new(ip, self.port)].into());
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(found) => Some(found.collect()),
            Err(e) => {
                tracing::warn!(service = %self.host, error = %e, "resolving the conversations role failed");
                None
            }
        }
    }

    /// Takes events from every replica until `shutdown`, up to `credit` at once from each,
    /// fanned out by a fan-out of its own from `fan_out`.
    pub(crate) async fn run(
        self,
        fan_out: impl Fn() -> Arc<LocalFanOut>,
        credit: u16,
        shutdown: CancellationToken,
    ) {
        let mut streams: HashMap<SocketAddr, CancellationToken> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        loop {
            // A failed lookup keeps the streams there are: a DNS hiccup must not detach them.
            if let Some(found) = self.replicas().await {
                streams.retain(|addr, stop| {
                    let keep = found.contains(addr);
                    if !keep {
                        tracing::info!(%addr, "conversations replica gone; detaching");
                        stop.cancel();
                    }
                    keep
                });
                for addr in found {
                    if streams.contains_key(&addr) {
                        continue;
                    }
                    let stop = shutdown.child_token();
                    streams.insert(addr, stop.clone());
                    match client(addr) {
                        Ok(client) => {
                            running.spawn(take(client, fan_out(), credit, stop));
                        }
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "no stream to a conversations replica")
                        }
                    }
                }
            }
            let again = async {
                match self.ip {
                    Some(_) => std::future::pending().await,
                    None => tokio::time::sleep(RESOLVE_EVERY).await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = again => {}
            }
            // Reap the streams of replicas that went away.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }
}

/// A client of the `EventHandoff` service of the replica at `addr`, connected on first use.
fn client(addr: SocketAddr) -> anyhow::Result<Client> {
    // No call timeout: the stream lasts as long as both sides do; keep-alive pings find a
    // peer that vanished.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(pb::event_handoff_client::EventHandoffClient::new(channel))
}

/// Takes events through `client` until `shutdown`, attaching again after each stream ends.
async fn take(
    mut client: Client,
    fan_out: Arc<LocalFanOut>,
    credit: u16,
    shutdown: CancellationToken,
) {
    let mut backoff = bus::Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    while !shutdown.is_cancelled() {
        let wait = match attach(&mut client, &fan_out, credit, &shutdown).await {
            Ok(handled) => {
                tracing::info!(handled, "event hand-off stream ended");
                if handled > 0 {
                    backoff.reset();
                }
                backoff.next_delay()
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!("the conversations replica hands no events over; they come through the event queue");
                // Nothing changes until that replica is replaced: ask rarely.
                MAX_BACKOFF
            }
            Err(status) => {
                tracing::warn!(%status, "attaching to a conversations replica for events failed; they come through the event queue meanwhile");
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One stream: returns how many events it handled once the replica ends it or `shutdown`
/// drained it, or the status that broke it.
async fn attach(
    client: &mut Client,
    fan_out: &LocalFanOut,
    credit: u16,
    shutdown: &CancellationToken,
) -> Result<u64, tonic::Status> {
    let (answers, outgoing) = mpsc::unbounded_channel::<pb::HandoffOutcome>();
    let requests = requests(credit, outgoing, ANSWER_HOLD);
    let mut events = client.take(requests).await?.into_inner();
    tracing::info!("attached to a conversations replica for events");
    let mut in_hand = FuturesUnordered::new();
    let mut handled = 0u64;
    // The receiver lives as long as the request stream: a send fails only once the stream
    // is gone, and then the replica's sweep has the row.
    let answer = |seq: i64, ok: bool| answers.send(pb::HandoffOutcome { seq, handled: ok });
    let ended = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            Some((seq, ok)) = in_hand.next() => {
                handled += u64::from(ok);
                let _ = answer(seq, ok);
            }
            batch = events.message() => match batch {
                Ok(Some(batch)) => {
                    for event in batch.events {
                        let seq = event.seq;
                        match fan_out.offer(&row(event)) {
                            Some(work) => in_hand.push(async move { (seq, work.await) }),
                            None => {
                                let _ = answer(seq, false);
                            }
                        }
                    }
                }
                Ok(None) => break Ok(()),
                Err(status) => break Err(status),
            },
        }
    };
    // Finish what is in hand and answer it while the stream lasts; the replica ends it after
    // the answers.
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some((seq, ok)) = in_hand.next().await {
            handled += u64::from(ok);
            let _ = answer(seq, ok);
        }
    });
    if drained.await.is_err() {
        tracing::warn!("events in hand outlasted the drain; the replica's sweep publishes them");
    }
    // Ending the request stream after the last answer, then waiting for the replica to end
    // its side, gets every answer across before the call goes (dropping it would reset the
    // stream with answers still queued). What it hands meanwhile is left to its sweep.
    drop(answers);
    if ended.is_ok() {
        let closed = async { while let Ok(Some(_)) = events.message().await {} };
        let _ = tokio::time::timeout(DRAIN, closed).await;
    }
    ended.map(|()| handled)
}

/// The stream's requests: the credit, then the answers in batches. A batch holds the
/// answers that come within `hold` of its first, up to half the credit: each message wakes
/// the replica, and a held answer only delays the mark of a row the replica's sweep leaves
/// alone for seconds, and the credit it gives back. The stream ends, after a last batch,
/// once every sender of `outgoing` is gone.
fn requests(
    credit: u16,
    outgoing: mpsc::UnboundedReceiver<pb::HandoffOutcome>,
    hold: Duration,
) -> impl futures::Stream<Item = pb::TakeRequest> {
    let first = pb::TakeRequest {
        credit: u32::from(credit),
        outcomes: Vec::new(),
    };
    let hold_up_to = usize::from(credit / 2).max(1);
    let answers = futures::stream::unfold(outgoing, move |mut outgoing| async move {
        let mut outcomes = Vec::new();
        if outgoing.recv_many(&mut outcomes, 256).await == 0 {
            return None;
        }
        let deadline = tokio::time::Instant::now() + hold;
        while outcomes.len() < hold_up_to {
            let more = outgoing.recv_many(&mut outcomes, 256);
            match tokio::time::timeout_at(deadline, more).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let batch = pb::TakeRequest {
            credit: 0,
            outcomes,
        };
        Some((batch, outgoing))
    });
    futures::stream::once(async move { first }).chain(answers)
}

/// The outbox row a handed event came from.
fn row(event: pb::HandedEvent) -> bus::OutboxRow {
    bus::OutboxRow {
        seq: event.seq,
        event_id: event.event_id,
        app_id: event.app_id,
        trigger: event.trigger,
        payload: event.payload,
        created_at_s: event.created_at_s,
        traceparent: event.traceparent,
        tracestate: event.tracestate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(request: &pb::TakeRequest) -> Vec<i64> {
        request.outcomes.iter().map(|o| o.seq).collect()
    }

    #[tokio::test]
    async fn answers_go_out_together_within_the_hold_and_the_last_when_the_stream_ends() {
        let (answers, outgoing) = mpsc::unbounded_channel();
        let answer = |seq| answers.send(pb::HandoffOutcome { seq, handled: true });
        let mut requests = std::pin::pin!(requests(64, outgoing, Duration::from_millis(500)));
        let first = requests.next().await.unwrap();
        assert_eq!((first.credit, answered(&first)), (64, vec![]));
        answer(1).unwrap();
        let (batch, ()) = tokio::join!(requests.next(), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer(2).unwrap();
            answer(3).unwrap();
        });
        let batch = batch.unwrap();
        assert_eq!((batch.credit, answered(&batch)), (0, vec![1, 2, 3]));
        // The stream ends once its senders are gone, after what they sent.
        answer(4).unwrap();
        drop(answers);
        assert_eq!(answered(&requests.next().await.unwrap()), vec![4]);
        assert!(requests.next().await.is_none());
    }

    #[tokio::test]
    async fn half_the_credit_in_answers_goes_out_without_waiting_for_the_hold() {
        let (answers, outgoing) = mpsc::unbounded_channel();
        let mut requests = std::pin::pin!(requests(4, outgoing, Duration::from_secs(60)));
        requests.next().await.unwrap();
        for seq in 1..=3 {
            answers
                .send(pb::HandoffOutcome {
                    seq,
                    handled: seq != 2,
                })
                .unwrap();
        }
        let batch = tokio::time::timeout(Duration::from_secs(5), requests.next())
            .await
            .expect("two answers, half the credit of 4, went out before the hold ended")
            .unwrap();
        assert_eq!(answered(&batch), vec![1, 2, 3]);
        assert_eq!(
            batch.outcomes.iter().map(|o| o.handled).collect::<Vec<_>>(),
            vec![true, false, true]
        );
    }

    #[test]
    fn an_address_is_a_name_or_an_ip_with_a_port_and_a_bad_one_names_its_variable() {
        let named = Intake::new("http://smooch-conversations:50052").unwrap();
        assert_eq!(
            (named.host.as_str(), named.port, named.ip),
            ("smooch-conversations", 50052, None)
        );
        let literal = Intake::new("10.0.0.7:50052").unwrap();
        assert_eq!(literal.ip, Some(IpAddr::from([10, 0, 0, 7])));
        for bad in ["smooch-conversations", "smooch-conversations:grpc", ""] {
            let err = format!("{:#}", Intake::new(bad).err().unwrap());
            assert!(err.contains("SMOOCH_CONVERSATIONS_GRPC_ADDR"), "{err}");
        }
    }
}
