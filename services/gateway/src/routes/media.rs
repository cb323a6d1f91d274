//! `GET /media/{appId}/{key}`: serves uploaded images back, streamed from the media service.
//! Media URLs are unguessable and public, like the hosted API's media links.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use domain::Error;
use futures::StreamExt as _;
use proto::v1 as pb;

use crate::error::ApiResult;
use crate::extract::Path;
use crate::openapi::{PathErrors, ServiceErrors};
use crate::AppState;

/// An uploaded image, by the URL its message carries.
#[utoipa::path(
    get, path = "/media/{app_id}/{key}", tag = "media", operation_id = "getMedia",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("key" = String, Path, description = "The image's key, as in the message's mediaUrl"),
    ),
    responses(
        (status = 200, description = "The image bytes", content(
            (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/gif"),
            (Vec<u8> = "image/webp"), (Vec<u8> = "application/octet-stream")
        )),
        PathErrors, ServiceErrors
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    Path((app_id, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut stream = state
        .clients
        .media
        .clone()
        .download(pb::DownloadRequest { app_id, key })
        .await?
        .into_inner();
    let info = match stream.message().await? {
        Some(pb::DownloadChunk {
            part: Some(pb::download_chunk::Part::Info(info)),
        }) => info,
        _ => return Err(Error::internal().into()),
    };
    let body = stream.map(|chunk| match chunk {
        Ok(pb::DownloadChunk {
            part: Some(pb::download_chunk::Part::Data(bytes)),
        }) => Ok(bytes),
        Ok(_) => Ok(Vec::new()),
        Err(status) => Err(std::io::Error::other(status.message().to_owned())),
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&info.media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
