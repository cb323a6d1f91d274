//! Object ids: 24 lowercase hex characters, a 4-byte seconds prefix then 8 random bytes,
//! as the hosted API's ObjectId-like ids.

use rand::RngCore;

/// Makes a new id: sortable by creation second, unique by its random tail.
pub fn new_id() -> String {
    let mut bytes = [0u8; 12];
    let secs = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    rand::rng().fill_bytes(&mut bytes[4..]);
    hex::encode(bytes)
}

/// Makes a random secret of `bytes` bytes, hex encoded.
pub fn new_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Makes an app token: 25 lowercase alphanumerics, like the hosted API's.
pub fn new_app_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..25)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Whether `s` has the shape of an id (24 lowercase hex characters).
pub fn is_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_lowercase_hex_and_unique() {
        let a = new_id();
        let b = new_id();
        assert!(is_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_shapes_are_not_ids() {
        assert!(!is_id("abc"));
        assert!(!is_id("C7F6E6D6C3A637261BD9656F"));
        assert!(!is_id("c7f6e6d6c3a637261bd9656g"));
        assert!(is_id("c7f6e6d6c3a637261bd9656f"));
    }

    #[test]
    fn app_tokens_are_25_alphanumerics() {
        let t = new_app_token();
        assert_eq!(t.len(), 25);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
