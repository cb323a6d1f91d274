//! Integration secrets at rest: sealed with AES-256-GCM under the deployment's key
//! (`SMOOCH_SECRETS_KEY`) before they are stored, opened only where they are used (the
//! push worker's `GetPushCredentials`).
//!
//! A sealed value is text, `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: `v1` is the
//! format (AES-256-GCM, a random 96-bit nonce per value), the key id the first 8 bytes of
//! the key's SHA-256 in hex, so a later key rotation can keep old keys by id and tell which
//! one a value needs. The associated data binds a value to its row (app and integration
//! ids): a sealed value copied onto another integration does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The format of the values this build seals.
const VERSION: &str = "v1";

/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// The key `smooch all` and tests seal with when `SMOOCH_SECRETS_KEY` is unset: public
/// (it is this text), so it protects nothing; never use it for a real deployment.
pub const DEVELOPMENT_KEY: &[u8; 32] = b"smooch-insecure-development-key!";

/// The deployment's key for integration secrets (32 bytes, AES-256).
#[derive(Clone)]
pub struct SecretsKey {
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey").field("id", &self.id).finish()
    }
}

impl SecretsKey {
    /// The key from its raw 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        SecretsKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            id: hex::encode(&digest[..8]),
        }
    }

    /// The key from its configured form: standard base64 of exactly 32 bytes (as
    /// `openssl rand -base64 32` prints).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .context("expected the base64 of 32 random bytes (openssl rand -base64 32)")?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            anyhow!(
                "expected the base64 of 32 random bytes (openssl rand -base64 32), got {} bytes",
                bytes.len()
            )
        })?;
        Ok(Self::new(&bytes))
    }

    /// The public development key ([`DEVELOPMENT_KEY`]).
    pub fn development() -> Self {
        Self::new(DEVELOPMENT_KEY)
    }

    /// The key's id, as sealed values name it (not secret: a hash prefix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` for the row `context` names.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("sealing a secret failed"))?;
        let mut envelope = nonce.to_vec();
        envelope.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}:{}:{}",
            self.id,
            URL_SAFE_NO_PAD.encode(envelope)
        ))
    }

    /// Opens a value [`seal`](Self::seal) made for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("a sealed secret is malformed");
        };
        if version != VERSION {
            bail!("a sealed secret has format {version:?}; this build reads {VERSION:?}");
        }
        if key_id != self.id {
            bail!(
                "a secret is sealed with key {key_id}, but SMOOCH_SECRETS_KEY is key {}",
                self.id
            );
        }
        let envelope = URL_SAFE_NO_PAD
            .decode(body)
            .context("a sealed secret is not base64")?;
        if envelope.len() < NONCE_LEN {
            bail!("a sealed secret is truncated");
        }
        let (nonce, ciphertext) = envelope.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("a sealed secret does not open: altered, or not this row's"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretsKey {
        SecretsKey::new(&[byte; 32])
    }

    #[test]
    fn sealed_values_open_with_their_key_and_context_only() {
        let k = key(7);
        let sealed = k.seal(b"s3cret", "app_1/int_1").unwrap();
        assert!(sealed.starts_with(&format!("v1:{}:", k.id())), "{sealed}");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(k.open(&sealed, "app_1/int_1").unwrap(), b"s3cret");
        assert!(k.open(&sealed, "app_2/int_1").is_err(), "another row");
        let other = key(8).open(&sealed, "app_1/int_1").unwrap_err().to_string();
        assert!(other.contains("sealed with key"), "{other}");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let k = key(1);
        assert_ne!(k.seal(b"x", "c").unwrap(), k.seal(b"x", "c").unwrap());
    }

    #[test]
    fn altered_or_malformed_values_do_not_open() {
        let k = key(3);
        let sealed = k.seal(b"value", "c").unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(bytes));
        assert!(k.open(&altered, "c").is_err());
        for bad in [
            "",
            "v1",
            "v2:x:y",
            &format!("v1:{}:!!", k.id()),
            &format!("v1:{}:AA", k.id()),
        ] {
            assert!(k.open(bad, "c").is_err(), "{bad}");
        }
    }

    #[test]
    fn configured_keys_are_base64_of_32_bytes() {
        let text = STANDARD.encode([9u8; 32]);
        assert_eq!(SecretsKey::from_base64(&text).unwrap().id(), key(9).id());
        assert!(SecretsKey::from_base64(&STANDARD.encode([9u8; 16])).is_err());
        assert!(SecretsKey::from_base64("not base64!").is_err());
        let debug = format!("{:?}", key(9));
        assert!(!debug.contains("cipher"), "{debug}");
    }
}
