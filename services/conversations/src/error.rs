//! Errors of the conversations service and their one mapping onto gRPC statuses.

use wire::ToStatus;

/// What can go wrong in this service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error, shown as is.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// A database failure: logged, shown as 503 while the database is unreachable, else as
    /// an opaque 500.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// JSON this service stored or was handed by another service that does not parse: a
    /// bug or a corrupt value, logged with its field and shown as an opaque 500.
    #[error(transparent)]
    StoredJson(#[from] wire::model::BadJson),
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
            Error::Database(e) => db::client_error(&e, "conversations").to_status(),
            Error::StoredJson(e) => {
                tracing::error!(error = %e, "stored JSON does not parse");
                domain::Error::internal().to_status()
            }
        }
    }
}
