//! Errors of the media service and their one mapping onto gRPC statuses.

use wire::ToStatus;

/// What can go wrong in this service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error, shown as is.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// An object store failure: logged, shown as an opaque 500.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    /// The client's upload stream broke; its status is passed on.
    #[error("upload stream failed: {0}")]
    Stream(#[from] tonic::Status),
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
            Error::Store(e) => {
                tracing::error!(error = %e, "media storage failed");
                domain::Error::internal().to_status()
            }
            Error::Stream(status) => {
                tracing::debug!(error = %status, "upload stream failed");
                status
            }
        }
    }
}
