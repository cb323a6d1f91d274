//! Errors of the users service and their one mapping onto gRPC statuses.

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
    Database(sqlx::Error),
    /// A stored secret that does not open (another key, altered): logged, shown as an
    /// opaque 500.
    #[error("sealed secret: {0:#}")]
    Sealing(anyhow::Error),
}

/// Result with this service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    /// Constraint violations a client can cause become client errors, matched by
    /// constraint name; everything else stays a database failure.
    fn from(err: sqlx::Error) -> Self {
        let domain = match db::constraint(&err) {
            Some("keys_app_id_fkey" | "app_users_app_id_fkey") => {
                domain::Error::not_found("app not found")
            }
            Some("app_users_app_id_user_id_key") => {
                domain::Error::conflict("an app user with this userId already exists")
            }
            Some("app_users_properties_size") => domain::Error::bad_request(
                "properties would grow past the size limit once merged; send fewer or shorter values",
            ),
            Some("devices_info_size") => domain::Error::bad_request(
                "device.info would grow past the size limit once merged; send fewer or shorter values",
            ),
            _ => return Error::Database(err),
        };
        Error::Domain(domain)
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Domain(e) => {
                tracing::debug!(error = %e, "client error");
                e.to_status()
            }
            Error::Database(e) => db::client_error(&e, "users").to_status(),
            Error::Sealing(e) => {
                tracing::error!(error = format!("{e:#}"), "integration secrets do not open");
                domain::Error::internal().to_status()
            }
        }
    }
}
