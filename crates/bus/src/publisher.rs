//! A publisher that returns only once the broker has confirmed each message (publisher
//! confirms, persistent delivery), and reconnects on the next publish after any failure.
//! Beside it, on the same connection, a channel for broadcasts: transient messages that
//! are not confirmed, for consumers that take only what comes while they listen.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use tokio::sync::Mutex;

use crate::{Error, Result, Topology};

/// How long the broker may take to confirm a batch before the publish counts as failed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for a publishing channel (connect, open, confirm mode, declarations).
const CONNECT_LIMIT: Duration = Duration::from_secs(15);

/// AMQP `delivery_mode` of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The exchange (`""` for the default exchange, which routes by queue name).
    pub exchange: &'a str,
    /// The routing key (a trigger, or a queue name on the default exchange).
    pub routing_key: &'a str,
    /// The body.
    pub payload: &'a [u8],
    /// Message properties; [`Publisher::publish_all`] makes every message persistent,
    /// [`Publisher::broadcast`] sends them as given (transient).
    pub properties: BasicProperties,
    /// Whether a message that matches no queue is an error ([`Error::Unroutable`]) rather
    /// than dropped: true for jobs sent to a queue by name, false for events nobody may
    /// be subscribed to. [`Publisher::broadcast`] drops such messages whatever this says.
    pub mandatory: bool,
}

/// An open connection, its confirm-mode channel and its broadcast channel (no confirms),
/// with a generation number so that a failure seen by one publish does not tear down the
/// link another one already replaced.
struct Link {
    connection: Connection,
    channel: Channel,
    broadcast: Channel,
    generation: u64,
}

/// A confirmed, persistent publisher with reconnect. Cheap to share behind an `Arc`;
/// concurrent publishes share one channel and wait for their own confirms.
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    link: Mutex<Option<Link>>,
    generations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.name)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to the broker at `url`; it connects on first use, and declares the
    /// events side of `topology` on every (re)connect. `name` labels the connection.
    pub fn new(url: impl Into<String>, name: impl Into<String>, topology: Topology) -> Self {
        Publisher {
            url: url.into(),
            name: name.into(),
            topology,
            link: Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The topology this publisher declares.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<()> {
        self.publish_all(std::slice::from_ref(&message)).await
    }

    /// Publishes `messages` pipelined on one channel and returns once the broker has
    /// confirmed every one of them. Any failure fails the whole call (some messages may
    /// have been stored: callers retry, and consumers de-duplicate).
    pub async fn publish_all(&self, messages: &[Outgoing<'_>]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        // Bounded end to end: a broker that goes away mid-call (a restart) must fail the
        // call, never leave it waiting, or the consumer holding it could never reconnect.
        let (channel, _, generation) = self.link().await?;
        let result = match tokio::time::timeout(
            CONFIRM_TIMEOUT + Duration::from_secs(5),
            Self::send(&channel, messages),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("publishing")),
        };
        if let Err(err) = &result {
            if !matches!(err, Error::Unroutable(_)) {
                self.invalidate(generation).await;
            }
        }
        result
    }

    /// Publishes `messages` transient and without confirms, in order, on the broadcast
    /// channel: for events whose consumers take only what comes while they listen (the
    /// real-time fan-out), so a broker that drops one loses nothing another path does
    /// not deliver. Returns once they are handed to the connection; a message no queue
    /// binds is dropped by the broker.
    pub async fn broadcast(&self, messages: &[Outgoing<'_>]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let (_, channel, generation) = self.link().await?;
        let send = async {
            for m in messages {
                channel
                    .basic_publish(
                        m.exchange.into(),
                        m.routing_key.into(),
                        BasicPublishOptions::default(),
                        m.payload,
                        m.properties.clone(),
                    )
                    .await?;
            }
            Ok(())
        };
        let result = match tokio::time::timeout(CONFIRM_TIMEOUT, send).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("broadcasting")),
        };
        if result.is_err() {
            self.invalidate(generation).await;
        }
        result
    }

    async fn send(channel: &Channel, messages: &[Outgoing<'_>]) -> Result<()> {
        let mut confirms: Vec<(PublisherConfirm, &str)> = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = channel
                .basic_publish(
                    m.exchange.into(),
                    m.routing_key.into(),
                    // Mandatory: a message that matches no queue comes back instead of
                    // being dropped, and we report it rather than lose it.
                    BasicPublishOptions {
                        mandatory: m.mandatory,
                        ..BasicPublishOptions::default()
                    },
                    m.payload,
                    m.properties.clone().with_delivery_mode(PERSISTENT),
                )
                .await?;
            confirms.push((confirm, m.routing_key));
        }
        let wait = async {
            let mut unroutable = None;
            for (confirm, key) in confirms {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => unroutable = Some(key.to_owned()),
                    Confirmation::Nack(_) | Confirmation::NotRequested => {
                        return Err(Error::Nacked)
                    }
                }
            }
            match unroutable {
                Some(key) => Err(Error::Unroutable(key)),
                None => Ok(()),
            }
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout("waiting for publisher confirms")),
        }
    }

    /// The current channels (confirm mode, broadcast) and their generation, connecting
    /// first if there are none or one broke, within [`CONNECT_LIMIT`].
    async fn link(&self) -> Result<(Channel, Channel, u64)> {
        match tokio::time::timeout(CONNECT_LIMIT, self.connect_if_needed()).await {
            Ok(link) => link,
            Err(_) => Err(Error::Timeout("opening a publishing channel")),
        }
    }

    async fn connect_if_needed(&self) -> Result<(Channel, Channel, u64)> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.channel.status().connected()
                && l.broadcast.status().connected()
                && l.connection.status().connected()
            {
                return Ok((l.channel.clone(), l.broadcast.clone(), l.generation));
            }
        }
        if let Some(old) = link.take() {
            close(old).await;
        }
        let connection = crate::connect(&self.url, &self.name).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare_events(&channel).await?;
        let broadcast = connection.create_channel().await?;
        self.topology.declare_realtime(&broadcast).await?;
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(name = %self.name, generation, "publisher connected");
        *link = Some(Link {
            connection,
            channel: channel.clone(),
            broadcast: broadcast.clone(),
            generation,
        });
        Ok((channel, broadcast, generation))
    }

    /// Drops the link of `generation` so the next publish reconnects.
    async fn invalidate(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|l| l.generation == generation) {
            if let Some(old) = link.take() {
                tracing::warn!(name = %self.name, "publisher link failed; reconnecting on next publish");
                close(old).await;
            }
        }
    }

    /// Closes the connection, if open.
    pub async fn close(&self) {
        if let Some(old) = self.link.lock().await.take() {
            close(old).await;
        }
    }
}

async fn close(link: Link) {
    if link.connection.status().connected() {
        let closing = link.connection.close(200, "bye".into());
        // A broker that went away may never answer the close.
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}
