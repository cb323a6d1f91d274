//! The admin HTTP server of roles that serve no HTTP API of their own (the gRPC roles and the
//! webhook worker): `/healthz` (the process serves), `/readyz` (its dependencies answer) and
//! `/metrics` (Prometheus), on `SMOOCH_<ROLE>_ADMIN_ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A dependency whose answer makes a role ready.
#[derive(Debug, Clone)]
pub enum Check {
    /// Postgres answers `SELECT 1`.
    Postgres(PgPool),
    /// A gRPC server (the role itself, or one it calls) reports SERVING.
    Grpc(&'static str, String),
    /// A TCP endpoint (the broker) accepts connections.
    Tcp(&'static str, String),
}

impl Check {
    fn name(&self) -> &'static str {
        match self {
            Check::Postgres(_) => "postgres",
            Check::Grpc(name, _) | Check::Tcp(name, _) => name,
        }
    }

    async fn passes(&self) -> bool {
        let check = async {
            match self {
                Check::Postgres(pool) => sqlx::query_scalar!("SELECT 1 AS one")
                    .fetch_one(pool)
                    .await
                    .is_ok(),
                Check::Grpc(_, addr) => {
                    let url = if addr.contains("://") {
                        addr.clone()
                    } else {
                        format!("http://{addr}")
                    };
                    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url) else {
                        return false;
                    };
                    let Ok(channel) = endpoint.connect().await else {
                        return false;
                    };
                    let mut client = HealthClient::new(channel);
                    client
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
                }
                Check::Tcp(_, addr) => tokio::net::TcpStream::connect(addr.as_str()).await.is_ok(),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), check)
            .await
            .unwrap_or(false)
    }
}

/// The `host:port` of an AMQP URL, for a reachability check.
pub fn amqp_host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(checks): State<Arc<Vec<Check>>>) -> (StatusCode, Json<Value>) {
    let results = futures::future::join_all(
        checks
            .iter()
            .map(|c| async move { (c.name(), c.passes().await) }),
    )
    .await;
    let ready = results.iter().all(|(_, ok)| *ok);
    let details: Map<String, Value> = results
        .into_iter()
        .map(|(name, ok)| (name.to_owned(), json!(if ok { "ok" } else { "down" })))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ready { "ok" } else { "unavailable" }, "checks": details})),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::metrics::render(),
    )
}

/// Serves the admin endpoints on `addr` until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    checks: Vec<Check>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin listener on {addr}"))?;
    tracing::info!(%addr, "admin endpoints listening");
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(checks));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("admin server failed")
}

#[cfg(test)]
mod tests {
    use super::amqp_host_port;

    #[test]
    fn amqp_urls_give_their_host_and_port() {
        assert_eq!(
            amqp_host_port("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(
            amqp_host_port("amqps://rabbit.internal/vhost"),
            "rabbit.internal:5672"
        );
    }
}
