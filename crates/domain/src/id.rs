//! Object ids: 24 lowercase hex characters, a 4-byte seconds prefix then 8 random bytes,
//! as the hosted API's ObjectId-like ids; and the newtypes that keep one kind of id from
//! being passed where another is meant (an app id as an app user id, say).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Declares a string id newtype: serde-transparent (the wire form is the bare string),
/// `Display`, `FromStr`, `From<String>`/`From<&str>` and back to `String`, `as_str()`.
/// No shape is checked: ids come from storage, tokens and paths whose own rules apply.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name(s.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// An app's `_id`: the tenant every other resource belongs to.
    AppId
);
string_id!(
    /// An app user's `_id` (not the API consumer's `userId`, which is a [`UserId`]).
    AppUserId
);
string_id!(
    /// The API consumer's own id for an app user (`userId`), as an `appUser`-scope JWT
    /// names it.
    UserId
);
string_id!(
    /// A conversation's `_id`.
    ConversationId
);
string_id!(
    /// A message's `_id`.
    MessageId
);

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
    fn id_newtypes_are_their_bare_string_on_the_wire() {
        let id = AppId::from("5f1c0e2b9a8d7c6b5a4f3e2d");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#""5f1c0e2b9a8d7c6b5a4f3e2d""#
        );
        let back: AppId = serde_json::from_str(r#""5f1c0e2b9a8d7c6b5a4f3e2d""#).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!("u1".parse::<AppUserId>().unwrap().as_str(), "u1");
        assert_eq!(String::from(MessageId::from("m")), "m");
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
