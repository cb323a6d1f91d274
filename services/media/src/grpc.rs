//! gRPC handlers: gather an upload's chunks and store them, or stream a stored image back
//! in chunks. The rules themselves live in `object`.

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt as _};
use proto::v1 as pb;
use proto::v1::{download_chunk, upload_chunk};
use tonic::{Request, Response, Status, Streaming};

use crate::storage::{Reading, Store};
use crate::{object, Result, DOWNLOAD_CHUNK_BYTES};

/// The `Media` gRPC service.
pub(crate) struct MediaApi {
    store: Store,
    max_bytes: usize,
}

impl MediaApi {
    pub(crate) fn new(store: Store, max_bytes: usize) -> Self {
        MediaApi { store, max_bytes }
    }
}

/// The media type given to stored objects that no longer sniff as an image.
const OCTET_STREAM: &str = "application/octet-stream";

fn not_found(key: &str) -> domain::Error {
    domain::Error::not_found(format!("image {key} not found"))
}

impl MediaApi {
    async fn receive_upload(
        &self,
        mut chunks: Streaming<pb::UploadChunk>,
    ) -> Result<pb::MediaObject> {
        let header = match chunks.message().await? {
            Some(pb::UploadChunk {
                part: Some(upload_chunk::Part::Header(header)),
            }) => header,
            _ => {
                return Err(domain::Error::bad_request(
                    "the first chunk of an upload must be its header",
                )
                .into())
            }
        };
        if !domain::id::is_id(&header.app_id) {
            return Err(domain::Error::bad_request("app_id must be an app id").into());
        }
        let mut bytes = BytesMut::new();
        while let Some(chunk) = chunks.message().await? {
            match chunk.part {
                Some(upload_chunk::Part::Data(data)) => {
                    // Checked as the bytes arrive, so an oversized upload is refused
                    // without holding it all.
                    if bytes.len() + data.len() > self.max_bytes {
                        return Err(object::too_large(self.max_bytes).into());
                    }
                    bytes.extend_from_slice(&data);
                }
                Some(upload_chunk::Part::Header(_)) => {
                    return Err(domain::Error::bad_request(
                        "only the first chunk of an upload may be a header",
                    )
                    .into())
                }
                None => {}
            }
        }
        if bytes.is_empty() {
            return Err(
                domain::Error::bad_request("source is required and must not be empty").into(),
            );
        }
        let (media_type, ext) = object::sniff_image(&bytes)
            .ok_or_else(|| domain::Error::bad_request("source is not an image"))?;
        let key = object::new_key(ext);
        let size = bytes.len();
        self.store.put(&header.app_id, &key, bytes.freeze()).await?;
        tracing::info!(
            app_id = %header.app_id,
            key = %key,
            media_type,
            size,
            declared_type = %header.declared_type,
            "image stored"
        );
        Ok(pb::MediaObject {
            app_id: header.app_id,
            key,
            media_type: media_type.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
        })
    }

    async fn open_download(&self, req: pb::DownloadRequest) -> Result<DownloadStream> {
        // Anything but a name this service makes is simply not there.
        if !domain::id::is_id(&req.app_id) || !object::is_key(&req.key) {
            return Err(not_found(&req.key).into());
        }
        let Reading { size, mut body } = self
            .store
            .get(&req.app_id, &req.key)
            .await?
            .ok_or_else(|| not_found(&req.key))?;
        // The first chunk's worth of bytes is enough to sniff the type, which the
        // description (sent before any data) carries.
        let mut head = BytesMut::new();
        while head.len() < DOWNLOAD_CHUNK_BYTES {
            match body.next().await {
                Some(piece) => head.extend_from_slice(&piece?),
                None => break,
            }
        }
        let media_type = object::sniff_image(&head).map_or(OCTET_STREAM, |(t, _)| t);
        let info = pb::MediaObject {
            app_id: req.app_id,
            key: req.key,
            media_type: media_type.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
        };
        let info = futures::stream::once(async move {
            Ok(pb::DownloadChunk {
                part: Some(download_chunk::Part::Info(info)),
            })
        });
        let data = rechunk(head, body, DOWNLOAD_CHUNK_BYTES).map(|piece| {
            piece
                .map(|data| pb::DownloadChunk {
                    part: Some(download_chunk::Part::Data(data.to_vec())),
                })
                .map_err(|e| Status::from(crate::Error::from(e)))
        });
        Ok(info.chain(data).boxed())
    }
}

/// Cuts `head` followed by `rest` into chunks of `size` bytes (the last may be shorter).
fn rechunk(
    head: BytesMut,
    mut rest: BoxStream<'static, object_store::Result<Bytes>>,
    size: usize,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    async_stream::try_stream! {
        let mut buf = head;
        loop {
            while buf.len() >= size {
                yield buf.split_to(size).freeze();
            }
            match rest.next().await {
                Some(piece) => buf.extend_from_slice(&piece?),
                None => break,
            }
        }
        if !buf.is_empty() {
            yield buf.freeze();
        }
    }
    .boxed()
}

/// The chunks of a download: the description, then the data.
pub(crate) type DownloadStream = BoxStream<'static, Result<pb::DownloadChunk, Status>>;

#[tonic::async_trait]
impl pb::media_server::Media for MediaApi {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::MediaObject>, Status> {
        Ok(Response::new(
            self.receive_upload(request.into_inner()).await?,
        ))
    }

    type DownloadStream = DownloadStream;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Ok(Response::new(
            self.open_download(request.into_inner()).await?,
        ))
    }
}
