//! A queue consumer that survives the broker: it (re)connects with backoff, declares what
//! it needs, sets its prefetch, and hands deliveries to a handler concurrently (at most
//! `prefetch` unacked at once). On shutdown it stops taking deliveries and lets those in
//! hand finish for a bounded time; whatever is still unacked goes back to the queue when
//! the channel closes. The handler acks, nacks or rejects each delivery itself.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio_util::sync::CancellationToken;

use crate::{Backoff, Result};

/// How long work in hand may finish after the consumer's connection is lost.
const LOST_CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// What a consumer needs to (re)connect.
#[derive(Debug, Clone)]
pub struct Source {
    /// The broker's URL.
    pub amqp_url: String,
    /// The connection's name in the management UI.
    pub connection_name: String,
    /// The queue consumed.
    pub queue: String,
    /// Unacked deliveries at once.
    pub prefetch: u16,
    /// How long in-hand deliveries may take to finish after shutdown.
    pub drain: Duration,
}

/// Consumes `source.queue` with `handler` until `shutdown` is cancelled; `declare` runs on
/// every new channel before consuming (the queue and its bindings).
pub async fn consume<D, DFut, F, Fut>(
    source: Source,
    declare: D,
    shutdown: CancellationToken,
    handler: F,
) where
    D: Fn(Channel) -> DFut,
    DFut: Future<Output = Result<()>>,
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
    while !shutdown.is_cancelled() {
        match consume_once(&source, &declare, &shutdown, &handler, &mut backoff).await {
            Ok(()) if shutdown.is_cancelled() => break,
            Ok(()) => tracing::warn!(queue = %source.queue, "consumer stream ended; reconnecting"),
            Err(err) => {
                tracing::warn!(queue = %source.queue, error = %err, "consumer failed; reconnecting")
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    tracing::debug!(queue = %source.queue, "consumer stopped");
}

async fn consume_once<D, DFut, F, Fut>(
    source: &Source,
    declare: &D,
    shutdown: &CancellationToken,
    handler: &F,
    backoff: &mut Backoff,
) -> Result<()>
where
    D: Fn(Channel) -> DFut,
    DFut: Future<Output = Result<()>>,
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let connection = crate::connect(&source.amqp_url, &source.connection_name).await?;
    let channel = connection.create_channel().await?;
    declare(channel.clone()).await?;
    channel
        .basic_qos(source.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            source.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    tracing::info!(queue = %source.queue, prefetch = source.prefetch, "consuming");
    let deliveries = consumer.take_until(shutdown.cancelled());
    tokio::pin!(deliveries);
    let mut in_hand = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => in_hand.push(handler(delivery)),
                Some(Err(err)) => tracing::warn!(error = %err, "consumer error"),
                None => break,
            },
            Some(()) = in_hand.next(), if !in_hand.is_empty() => {}
        }
    }
    // Shutdown gets the drain time; a lost connection only a short grace (a dead channel
    // cannot ack, and the broker has already handed those messages back).
    let grace = if shutdown.is_cancelled() {
        source.drain
    } else {
        LOST_CONNECTION_GRACE
    };
    let finished =
        tokio::time::timeout(grace, async { while in_hand.next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(queue = %source.queue, left = in_hand.len(), "deliveries still in hand dropped; the broker redelivers them");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "bye".into())).await;
    Ok(())
}

/// Acks `delivery`. A failure means the channel is gone: the broker redelivers the message
/// to another consumer, so it is only logged.
pub async fn ack(delivery: &Delivery) {
    if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %err, "ack failed");
    }
}

/// Hands `delivery` back to its queue, for this or another consumer to try again.
pub async fn requeue(delivery: &Delivery) {
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(err) = delivery.nack(options).await {
        tracing::warn!(error = %err, "nack failed");
    }
}

/// Rejects `delivery` without requeueing: the queue's dead-letter exchange keeps it.
pub async fn reject(delivery: &Delivery) {
    if let Err(err) = delivery.reject(BasicRejectOptions { requeue: false }).await {
        tracing::warn!(error = %err, "reject failed");
    }
}
