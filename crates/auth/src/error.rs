//! Failures of the Redis side of authentication: the credential cache, revocation
//! broadcasts and rate limits. None of them reaches a client: callers fall back to the users
//! service (cache), retry in the background (revocations) or let the request through (rate
//! limits).

/// Result with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis failed recently; calls are skipped until the back-off ends.
    #[error("Redis is marked down after a recent failure")]
    Down,
    /// A Redis call failed.
    #[error("Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// A Redis call took longer than the configured timeout.
    #[error("Redis call timed out")]
    Timeout,
    /// A value stored in Redis or broadcast on the channel could not be decoded.
    #[error("undecodable value in Redis: {0}")]
    Decode(#[from] serde_json::Error),
}
