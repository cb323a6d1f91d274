//! RabbitMQ for the smooch suite: the topology (exchange, delivery, retry and dead-letter
//! queues), a publisher that waits for broker confirms and reconnects on failure, and the
//! relay that moves committed transactional-outbox rows onto the events exchange. Messages
//! carry the W3C trace context of their publisher in their headers.

pub mod consumer;
mod error;
pub mod publisher;
pub mod relay;
pub mod topology;
pub mod trace;

pub use error::{Error, Result};
pub use publisher::{Outgoing, Publisher};
pub use relay::{
    Audience, Backlog, LocalConsumer, LocalHandoff, LocalWork, OutboxRow, OutboxStore, Relay,
    RelayConfig, RelayHandle,
};
pub use topology::Topology;

/// The header naming the app an event belongs to, on every event published to the events
/// exchange: consumers that serve only some apps skip the others' events unparsed. Write it
/// with [`insert_app_id`], read it with [`app_id_of`].
pub const APP_ID_HEADER: &str = "smooch-app-id";

/// Sets [`APP_ID_HEADER`] to `app_id` in an event's `headers`.
pub fn insert_app_id(headers: &mut lapin::types::FieldTable, app_id: &str) {
    headers.insert(
        APP_ID_HEADER.into(),
        lapin::types::AMQPValue::LongString(app_id.into()),
    );
}

/// The app an event belongs to, from its [`APP_ID_HEADER`]; `None` for an event published
/// without it.
pub fn app_id_of(properties: &lapin::BasicProperties) -> Option<&str> {
    match properties.headers().as_ref()?.inner().get(APP_ID_HEADER)? {
        lapin::types::AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        _ => None,
    }
}

/// Re-exported so users of this crate name one lapin version.
pub use lapin;

/// The waits of broker-held retries: `base`, doubling at each level, `levels` of them.
pub fn retry_schedule(base: std::time::Duration, levels: u32) -> Vec<std::time::Duration> {
    (0..levels)
        .map(|i| base.saturating_mul(1u32 << i))
        .collect()
}

use std::time::Duration;

/// How long opening a broker connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens an AMQP connection named `name` (shown in the management UI), within a timeout.
pub async fn connect(url: &str, name: &str) -> Result<lapin::Connection> {
    let props = lapin::ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, lapin::Connection::connect(url, props)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(Error::Timeout("connecting to the broker")),
    }
}

/// An exponential backoff with jitter for reconnect loops: `base * 2^n` capped at `max`,
/// each wait drawn between half and all of it.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never waiting longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let full = exp.min(self.max);
        full.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_id_header_reads_back_and_is_absent_when_not_set() {
        let mut headers = lapin::types::FieldTable::default();
        insert_app_id(&mut headers, "app_1");
        let properties = lapin::BasicProperties::default().with_headers(headers);
        assert_eq!(app_id_of(&properties), Some("app_1"));
        assert_eq!(app_id_of(&lapin::BasicProperties::default()), None);
        let mut other = lapin::types::FieldTable::default();
        other.insert(APP_ID_HEADER.into(), lapin::types::AMQPValue::LongUInt(7));
        assert_eq!(
            app_id_of(&lapin::BasicProperties::default().with_headers(other)),
            None
        );
    }
}
