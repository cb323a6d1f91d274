//! Starts the service and makes requests for the tests.

use std::path::PathBuf;

use proto::v1 as pb;
use proto::v1::media_client::MediaClient;
use proto::v1::{download_chunk, upload_chunk};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Channel;

/// A running service with a media directory and an app of the test's own.
pub(crate) struct TestMedia {
    pub(crate) client: MediaClient<Channel>,
    pub(crate) app_id: String,
    pub(crate) dir: PathBuf,
    _shutdown: DropGuard,
}

impl Drop for TestMedia {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the service with the default size limit.
pub(crate) async fn spawn() -> TestMedia {
    spawn_with(media::DEFAULT_MAX_BYTES).await
}

/// Starts the service accepting images of at most `max_bytes`.
pub(crate) async fn spawn_with(max_bytes: usize) -> TestMedia {
    let dir = std::env::temp_dir().join(format!("smooch-media-test-{}", domain::id::new_id()));
    let config = media::Config {
        max_bytes,
        ..media::Config::new(dir.join("media"))
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(media::run(config, listener, shutdown.clone()));
    let client = MediaClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestMedia {
        client,
        app_id: domain::id::new_id(),
        dir,
        _shutdown: shutdown.drop_guard(),
    }
}

/// A header chunk for `app_id`.
pub(crate) fn header(app_id: &str, declared_type: &str) -> pb::UploadChunk {
    pb::UploadChunk {
        part: Some(upload_chunk::Part::Header(pb::UploadHeader {
            app_id: app_id.to_owned(),
            filename: "screenshot.jpg".to_owned(),
            declared_type: declared_type.to_owned(),
        })),
    }
}

/// A data chunk.
pub(crate) fn data(bytes: &[u8]) -> pb::UploadChunk {
    pb::UploadChunk {
        part: Some(upload_chunk::Part::Data(bytes.to_vec())),
    }
}

impl TestMedia {
    /// Sends `chunks` as one upload.
    pub(crate) async fn send(
        &mut self,
        chunks: Vec<pb::UploadChunk>,
    ) -> Result<pb::MediaObject, tonic::Status> {
        self.client
            .upload(tokio_stream::iter(chunks))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Uploads `bytes` to this test's app in chunks of `chunk` bytes.
    pub(crate) async fn upload(
        &mut self,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<pb::MediaObject, tonic::Status> {
        let mut chunks = vec![header(&self.app_id, "image/jpeg")];
        chunks.extend(bytes.chunks(chunk).map(data));
        self.send(chunks).await
    }

    /// Downloads `key` of `app_id`: the description and the data chunks.
    pub(crate) async fn download(
        &mut self,
        app_id: &str,
        key: &str,
    ) -> Result<(pb::MediaObject, Vec<Vec<u8>>), tonic::Status> {
        let request = pb::DownloadRequest {
            app_id: app_id.to_owned(),
            key: key.to_owned(),
        };
        let mut stream = self.client.download(request).await?.into_inner();
        let info = match stream.message().await? {
            Some(pb::DownloadChunk {
                part: Some(download_chunk::Part::Info(info)),
            }) => info,
            other => panic!("the first chunk is not the description: {other:?}"),
        };
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(download_chunk::Part::Data(data)) => chunks.push(data),
                other => panic!("expected data, got {other:?}"),
            }
        }
        Ok((info, chunks))
    }
}

/// Asserts that `status` is a client error with `code`, `grpc` and a description
/// containing `needle`.
pub(crate) fn assert_error(status: &tonic::Status, grpc: tonic::Code, code: &str, needle: &str) {
    assert_eq!(status.code(), grpc, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get(wire::status::CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some(code),
        "{status:?}"
    );
    assert!(status.message().contains(needle), "{status:?}");
}
