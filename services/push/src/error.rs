//! Errors of the push worker's steps. None reaches a client: each is logged where the step
//! gives up, and the broker redelivers or the notification is retried.

/// What can go wrong in a push step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Publishing a retry failed (broker down, refused, unroutable).
    #[error(transparent)]
    Bus(#[from] bus::Error),
    /// The users service failed.
    #[error("users service error: {0}")]
    Grpc(#[from] tonic::Status),
    /// An event or job could not be (de)serialized.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Stored credentials are unusable (a key that is not PEM, a missing field).
    #[error("unusable {provider} credentials: {reason}")]
    Credentials {
        /// `apn` or `fcm`.
        provider: &'static str,
        /// What is wrong (never the secret itself).
        reason: String,
    },
}

/// Result with the push worker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
