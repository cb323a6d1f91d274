//! Errors of the conversations service and their one mapping onto gRPC statuses.

/// What can go wrong in this service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error, shown as is.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// A database failure: logged, shown as an opaque 500.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result with this service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Domain(e) => {
                tracing::debug!(error = %e, "client error");
                e.to_status()
            }
            Error::Database(e) if db::is_unavailable(&e) => {
                tracing::warn!(error = %e, "conversations storage unavailable");
                domain::Error::unavailable("storage is unavailable right now; retry shortly")
                    .to_status()
            }
            Error::Database(e) => {
                tracing::error!(error = %e, "conversations storage failed");
                domain::Error::internal().to_status()
            }
        }
    }
}
