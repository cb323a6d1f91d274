//! The media service: images uploaded over a client stream, their type sniffed from the
//! bytes, stored in an object store under the app's prefix, and served back over a server
//! stream.

mod error;
mod grpc;
mod object;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// The largest image accepted by default: 10 MiB.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// The size of the data chunks of a download.
pub const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// Time limit of one media call: uploads and downloads of the largest images on slow links
/// take a while.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of the media role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory the images are stored in, created when missing (`SMOOCH_MEDIA_DIR`).
    pub media_dir: PathBuf,
    /// Largest image accepted, in bytes. Default [`DEFAULT_MAX_BYTES`] (10 MiB).
    pub max_bytes: usize,
}

impl Config {
    /// Settings that store images in `media_dir`, with the default size limit.
    pub fn new(media_dir: impl Into<PathBuf>) -> Self {
        Config {
            media_dir: media_dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The media gRPC API and its health service, ready to serve or to call in process.
pub async fn routes(config: Config) -> anyhow::Result<tonic::service::Routes> {
    let store = storage::Store::local(&config.media_dir).await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::v1::media_server::MediaServer<grpc::MediaApi>>()
        .await;
    Ok(
        tonic::service::Routes::new(health).add_service(proto::v1::media_server::MediaServer::new(
            grpc::MediaApi::new(store, config.max_bytes),
        )),
    )
}

/// Serves the media gRPC API on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        media_dir = %config.media_dir.display(),
        "media service listening"
    );
    let routes = routes(config).await?;
    // Uploads and downloads of the largest images on slow links take a while.
    telemetry::grpc::serve(routes, listener, UPLOAD_TIMEOUT, shutdown)
        .await
        .context("media gRPC server failed")
}
