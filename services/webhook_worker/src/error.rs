//! Errors of the webhook worker's steps. None reaches a client: each is logged where the
//! step gives up, and the broker redelivers or the job is retried.

/// What can go wrong in a worker step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Publishing a job failed (broker down, refused, unroutable).
    #[error(transparent)]
    Bus(#[from] bus::Error),
    /// Acking, consuming or declaring failed.
    #[error("amqp error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The webhooks service failed.
    #[error("webhooks service error: {0}")]
    Grpc(#[from] tonic::Status),
    /// An event or job could not be (de)serialized.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A step took longer than its limit (a broker or service that went away mid-call).
    #[error("{0} took too long")]
    Stalled(&'static str),
}

/// Result with the worker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
