//! Postgres plumbing shared by the services. Each service owns one schema: its pool sets
//! `search_path` to that schema, so its SQL names its tables unqualified and its sqlx
//! migration history (`_sqlx_migrations`) lives inside the schema, apart from the others'.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

mod kept;

pub use kept::{Kept, KeptConnection};

/// SQLSTATE of `unique_violation`.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of `duplicate_database`.
const DUPLICATE_DATABASE: &str = "42P04";
/// SQLSTATE of `duplicate_schema`.
const DUPLICATE_SCHEMA: &str = "42P06";

/// Whether `err` is a database error with SQLSTATE `code`.
pub fn is_sqlstate(err: &sqlx::Error, code: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// What a client is told of a database failure in `service`: 503 "retry shortly" when the
/// database is unreachable or restarting ([`is_unavailable`]), otherwise the opaque 500.
/// The cause is logged here, never shown.
pub fn client_error(err: &sqlx::Error, service: &'static str) -> domain::Error {
    if is_unavailable(err) {
        tracing::warn!(error = %err, service, "storage unavailable");
        domain::Error::unavailable("storage is unavailable right now; retry shortly")
    } else {
        tracing::error!(error = %err, service, "storage failed");
        domain::Error::internal()
    }
}

/// Whether `err` means Postgres could not be reached or dropped the connection (a restart,
/// a failover, an exhausted pool) rather than a fault in the statement: the request may
/// succeed when retried, so services answer UNAVAILABLE (503), not INTERNAL (500).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), admin_shutdown, crash_shutdown,
        // cannot_connect_now, too_many_connections.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The name of the constraint a database error violated, if any.
pub fn constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .with_context(|| "malformed Postgres URL")?
        .disable_statement_logging())
}

/// Creates the database named in `url` when it does not exist, by connecting to the
/// server's `postgres` database.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let opts = options(url)?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    if sqlx::PgConnection::connect_with(&opts).await.is_ok() {
        return Ok(());
    }
    let mut admin = sqlx::PgConnection::connect_with(&opts.clone().database("postgres"))
        .await
        .with_context(|| "connecting to Postgres to create the database")?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    // Dynamic DDL the query macros cannot check: the name comes from the URL, and a name
    // cannot be a parameter.
    match sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        Err(e) if is_sqlstate(&e, DUPLICATE_DATABASE) || is_sqlstate(&e, UNIQUE_VIOLATION) => {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// sqlx's own `test_before_acquire` pings every connection on every acquire: a round trip
/// per query, on top of the ping sqlx always makes when a connection is released. A
/// connection released moments ago passed that release ping, so it is handed out as is;
/// if the server went away since, its query fails like any query caught by a restart
/// (503, retried) and the failed release ping drops it. Connections idle for longer (the
/// ones a restart during a quiet spell leaves behind) are still pinged, and replaced when
/// the ping fails, so a pool recovers from a restart by itself. A task that keeps a
/// connection between uses follows the same rule.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Opens a pool whose connections use `schema` as their search path.
pub fn connect(url: &str, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = options(url)?.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for <= PING_IF_IDLE_FOR {
                    return Ok(true);
                }
                match conn.ping().await {
                    Ok(()) => Ok(true),
                    Err(error) => {
                        // The pool closes it and opens another.
                        tracing::info!(%error, "an idle database connection was dead");
                        Ok(false)
                    }
                }
            })
        })
        .connect_lazy_with(opts))
}

/// Creates `schema` if needed and applies `migrator` inside it.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> anyhow::Result<()> {
    // Dynamic DDL the query macros cannot check: the schema is the caller's, and a name
    // cannot be a parameter.
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match sqlx::query(&create).execute(pool).await {
        Ok(_) => {}
        // Two processes creating the schema at once: the loser sees one of these.
        Err(e) if is_sqlstate(&e, UNIQUE_VIOLATION) || is_sqlstate(&e, DUPLICATE_SCHEMA) => {}
        Err(e) => return Err(e).with_context(|| format!("creating schema {schema}")),
    }
    // A database already migrated by a newer release (a rolling upgrade, a rollback, a test
    // database shared with newer work) must not stop this one: migrations only ever add.
    let mut tolerant = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    };
    tolerant
        .set_ignore_missing(true)
        .run(pool)
        .await
        .with_context(|| format!("migrating schema {schema}"))
}

/// Reports the pool's connections as the `db_pool_connections{service, state}` gauge
/// (`idle` and `busy`) every few seconds until `shutdown`; the service runs it on its tasks.
pub async fn report_pool_metrics(
    pool: PgPool,
    service: &'static str,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let size = f64::from(pool.size());
        let idle = pool.num_idle() as f64;
        metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle").set(idle);
        metrics::gauge!("db_pool_connections", "service" => service, "state" => "busy")
            .set((size - idle).max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::is_unavailable;

    #[test]
    fn lost_connections_are_unavailable_and_statement_faults_are_not() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&sqlx::Error::Io(reset)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("id".into())));
    }
}

#[cfg(test)]
mod client_error_tests {
    use super::client_error;
    use domain::ErrorCode;

    #[test]
    fn unreachable_databases_say_retry_and_other_failures_stay_opaque() {
        let down = client_error(&sqlx::Error::PoolTimedOut, "test");
        assert_eq!(down.code, ErrorCode::Unavailable);
        let broken = client_error(&sqlx::Error::ColumnNotFound("secret_column".into()), "test");
        assert_eq!(broken.code, ErrorCode::Internal);
        assert!(!broken.description.contains("secret_column"));
    }
}
