//! Download: chunked round trips, and nothing outside the app's own objects.

use crate::helpers::{assert_error, spawn};
use crate::images::{png, JPEG};

#[tokio::test]
async fn png_round_trips_in_64_kib_chunks() {
    let mut media = spawn().await;
    let image = png(200, 200); // ~120 KB: two data chunks
    let stored = media.upload(&image, 16 * 1024).await.unwrap();
    let app_id = media.app_id.clone();
    let (info, chunks) = media.download(&app_id, &stored.key).await.unwrap();
    assert_eq!(info, stored);
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(sizes, [64 * 1024, image.len() - 64 * 1024]);
    assert_eq!(chunks.concat(), image);
}

#[tokio::test]
async fn jpeg_round_trips_with_its_type() {
    let mut media = spawn().await;
    let stored = media.upload(JPEG, 10).await.unwrap();
    let app_id = media.app_id.clone();
    let (info, chunks) = media.download(&app_id, &stored.key).await.unwrap();
    assert_eq!(info.media_type, "image/jpeg");
    assert_eq!(info.size, JPEG.len() as i64);
    assert_eq!(chunks, [JPEG.to_vec()]);
}

#[tokio::test]
async fn missing_and_malformed_keys_are_not_found() {
    let mut media = spawn().await;
    let stored = media.upload(&png(1, 1), 1024).await.unwrap();
    let app_id = media.app_id.clone();
    // A file next to the media directory that a traversal would reach.
    std::fs::write(media.dir.join("secret.png"), png(1, 1)).unwrap();
    let dotted = format!("{app_id}/../{}", stored.key);
    for key in [
        "5f1c0e2b9a8d7c6b5a4f3e2d.png", // well formed, never stored
        "../secret.png",
        "../../secret.png",
        "..%2fsecret.png",
        "/etc/passwd",
        dotted.as_str(),
        "",
        ".",
        "..",
    ] {
        let err = media.download(&app_id, key).await.unwrap_err();
        assert_error(&err, tonic::Code::NotFound, "not_found", "not found");
    }
    for bad_app in ["..", "../media", "", "not-an-id"] {
        let err = media.download(bad_app, &stored.key).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{bad_app}: {err:?}");
    }
}

#[tokio::test]
async fn another_apps_key_is_not_found() {
    let mut media = spawn().await;
    let stored = media.upload(&png(1, 1), 1024).await.unwrap();
    let other_app = domain::id::new_id();
    let err = media.download(&other_app, &stored.key).await.unwrap_err();
    assert_error(&err, tonic::Code::NotFound, "not_found", "not found");
}
