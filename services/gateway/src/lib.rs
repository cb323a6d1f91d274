//! The HTTP gateway: authenticates every request (`app-token` or a JWT with `kid`),
//! routes the Smooch v1 API onto the gRPC services, and speaks the v1 wire format.

mod caller;
mod clients;
mod error;
mod extract;
mod routes;

use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use clients::Clients;
pub use error::ApiError;

/// Settings of the gateway role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL under which media is served back (`SMOOCH_PUBLIC_URL`), without a trailing
    /// slash, such as `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Address of the users service, as `host:port` or a URL.
    pub users_addr: String,
    /// Address of the conversations service.
    pub conversations_addr: String,
    /// Address of the media service.
    pub media_addr: String,
    /// Address of the webhooks service.
    pub webhooks_addr: String,
    /// Largest accepted image upload in bytes. Default 10 MB.
    pub max_image_bytes: usize,
    /// Largest accepted JSON body in bytes. Default 1 MiB.
    pub max_json_bytes: usize,
    /// Deadline of each gRPC call. Default 10 s.
    pub grpc_timeout: Duration,
}

impl Config {
    /// A config with the defaults for everything but the addresses.
    pub fn new(
        public_url: impl Into<String>,
        users_addr: impl Into<String>,
        conversations_addr: impl Into<String>,
        media_addr: impl Into<String>,
        webhooks_addr: impl Into<String>,
    ) -> Self {
        Config {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            users_addr: users_addr.into(),
            conversations_addr: conversations_addr.into(),
            media_addr: media_addr.into(),
            webhooks_addr: webhooks_addr.into(),
            max_image_bytes: 10 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            grpc_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) clients: Clients,
    pub(crate) config: std::sync::Arc<Config>,
}

/// Serves the HTTP API on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = Clients::connect(&config, &shutdown)?;
    let state = AppState {
        clients,
        config: std::sync::Arc::new(config),
    };
    let app = routes::router(state);
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("gateway HTTP server failed")
}
