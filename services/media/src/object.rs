//! The rules of stored images: which bytes are an image (sniffed, never taken from the
//! client), how objects are named, and which names may be asked for.

use domain::ErrorCode;

/// The type and file extension of `bytes` when they are an image.
pub(crate) fn sniff_image(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    infer::get(bytes)
        .filter(|kind| kind.matcher_type() == infer::MatcherType::Image)
        .map(|kind| (kind.mime_type(), kind.extension()))
}

/// A new object name with extension `ext`: a fresh id, so names never collide nor say
/// anything about the client's file.
pub(crate) fn new_key(ext: &str) -> String {
    // Extensions come from `infer`'s table; the guard keeps every key downloadable.
    let ext = if is_extension(ext) { ext } else { "bin" };
    format!("{}.{ext}", domain::id::new_id())
}

/// Whether `key` is an object name this service makes: `^[0-9a-f]{24}\.[a-z0-9]{1,5}$`.
/// Nothing else is looked up, so no key can climb out of its app's prefix.
pub(crate) fn is_key(key: &str) -> bool {
    match key.split_once('.') {
        Some((id, ext)) => domain::id::is_id(id) && is_extension(ext),
        None => false,
    }
}

fn is_extension(ext: &str) -> bool {
    (1..=5).contains(&ext.len())
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The error of an upload larger than `max_bytes`.
pub(crate) fn too_large(max_bytes: usize) -> domain::Error {
    const MIB: usize = 1024 * 1024;
    let limit = if max_bytes > 0 && max_bytes.checked_rem(MIB) == Some(0) {
        format!("{} MB", max_bytes / MIB)
    } else {
        format!("{max_bytes} bytes")
    };
    domain::Error::new(
        ErrorCode::PayloadTooLarge,
        format!("image larger than {limit}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ids_with_a_short_extension() {
        let key = new_key("png");
        assert!(is_key(&key), "{key}");
        assert!(is_key("5f1c0e2b9a8d7c6b5a4f3e2d.jpg"));
        for bad in [
            "",
            "5f1c0e2b9a8d7c6b5a4f3e2d",
            "5f1c0e2b9a8d7c6b5a4f3e2d.",
            "5f1c0e2b9a8d7c6b5a4f3e2d.jpegxl",
            "5F1C0E2B9A8D7C6B5A4F3E2D.jpg",
            "5f1c0e2b9a8d7c6b5a4f3e2d.JPG",
            "5f1c0e2b9a8d7c6b5a4f3e2d.tar.gz",
            "../5f1c0e2b9a8d7c6b5a4f3e.jpg",
            "5f1c0e2b9a8d7c6b5a4f3e2d.jp/",
            "..",
        ] {
            assert!(!is_key(bad), "{bad}");
        }
    }

    #[test]
    fn only_images_are_sniffed_as_images() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff_image(png), Some(("image/png", "png")));
        assert_eq!(sniff_image(b"%PDF-1.4\n"), None);
        assert_eq!(
            sniff_image(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            None
        );
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn too_large_names_the_limit() {
        assert_eq!(
            too_large(10 * 1024 * 1024).description,
            "image larger than 10 MB"
        );
        assert_eq!(too_large(1000).description, "image larger than 1000 bytes");
        assert_eq!(too_large(1).code, ErrorCode::PayloadTooLarge);
    }
}
