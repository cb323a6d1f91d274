//! Errors of the bus: broker failures, refused publishes, timeouts and outbox SQL.

/// What can go wrong talking to the broker or the outbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The AMQP connection or channel failed.
    #[error("amqp error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused (nacked) a publish: it was not stored.
    #[error("the broker refused the message")]
    Nacked,
    /// A mandatory publish matched no queue: nobody would have received it.
    #[error("the message matched no queue (routing key {0})")]
    Unroutable(String),
    /// The broker did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// Reading or marking outbox rows failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result with the bus's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
