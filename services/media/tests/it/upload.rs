//! Upload: sniffed types, size limits, malformed streams.

use crate::helpers::{assert_error, data, header, spawn, spawn_with};
use crate::images::{png, JPEG};

#[tokio::test]
async fn png_is_stored_with_its_sniffed_type() {
    let mut media = spawn().await;
    let image = png(4, 4);
    // The client claims a JPEG: the bytes say otherwise, and they win.
    let stored = media.upload(&image, 7).await.unwrap();
    assert!(stored.key.ends_with(".png"), "{stored:?}");
    assert!(domain::id::is_id(stored.key.trim_end_matches(".png")));
    assert_eq!(stored.app_id, media.app_id);
    assert_eq!(stored.media_type, "image/png");
    assert_eq!(stored.size, image.len() as i64);
    let on_disk = std::fs::read(
        media
            .dir
            .join("media")
            .join(&media.app_id)
            .join(&stored.key),
    );
    assert_eq!(on_disk.unwrap(), image);
}

#[tokio::test]
async fn jpeg_is_stored_with_its_sniffed_type() {
    let mut media = spawn().await;
    let stored = media.upload(JPEG, 64 * 1024).await.unwrap();
    assert!(stored.key.ends_with(".jpg"), "{stored:?}");
    assert_eq!(stored.media_type, "image/jpeg");
    assert_eq!(stored.size, JPEG.len() as i64);
}

#[tokio::test]
async fn non_images_are_rejected() {
    let mut media = spawn().await;
    for bytes in [
        &b"just some text, not a picture"[..],
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
    ] {
        let err = media.upload(bytes, 1024).await.unwrap_err();
        assert_error(
            &err,
            tonic::Code::InvalidArgument,
            "bad_request",
            "source is not an image",
        );
    }
    let err = media.upload(&[], 1024).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "source");
    // Nothing was stored.
    assert!(!media.dir.join("media").join(&media.app_id).exists());
}

#[tokio::test]
async fn images_over_10_mb_are_too_large() {
    let mut media = spawn().await;
    let mut big = png(1, 1);
    big.resize(media::DEFAULT_MAX_BYTES + 1, 0);
    let err = media.upload(&big, 64 * 1024).await.unwrap_err();
    assert_error(
        &err,
        tonic::Code::OutOfRange,
        "payload_too_large",
        "image larger than 10 MB",
    );
}

#[tokio::test]
async fn the_size_limit_is_inclusive() {
    let mut media = spawn_with(1000).await;
    let mut image = png(1, 1);
    image.resize(1000, 0);
    assert_eq!(media.upload(&image, 300).await.unwrap().size, 1000);
    image.push(0);
    let err = media.upload(&image, 300).await.unwrap_err();
    assert_error(
        &err,
        tonic::Code::OutOfRange,
        "payload_too_large",
        "image larger than 1000 bytes",
    );
}

#[tokio::test]
async fn the_header_comes_first_and_once() {
    let mut media = spawn().await;
    let image = png(1, 1);
    let app_id = media.app_id.clone();

    let err = media.send(vec![data(&image)]).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "header");

    let err = media.send(vec![]).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "header");

    let twice = vec![header(&app_id, ""), data(&image), header(&app_id, "")];
    let err = media.send(twice).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "header");

    let bad_app = vec![header("../../etc", ""), data(&image)];
    let err = media.send(bad_app).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "app_id");
}
