//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the webhook's secret (its bytes
//! as shown by the API).

use base64::prelude::{Engine as _, BASE64_STANDARD};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` header value of a delivery.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let sig = mac(secret, id, timestamp, body)
        .map(|m| BASE64_STANDARD.encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("v1,{sig}")
}

/// Verifies a `webhook-signature` header (space-separated `v1,<sig>` entries) as a
/// receiver does, in constant time. Receivers should also reject old timestamps.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|entry| {
        let Some(sig) = entry.strip_prefix("v1,") else {
            return false;
        };
        let Ok(sig) = BASE64_STANDARD.decode(sig) else {
            return false;
        };
        mac(secret, id, timestamp, body).is_some_and(|m| m.verify_slice(&sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let header = sign("secret", "msg1", 1_700_000_000, b"{}");
        assert!(header.starts_with("v1,"));
        assert!(verify("secret", "msg1", 1_700_000_000, b"{}", &header));
        assert!(!verify("other", "msg1", 1_700_000_000, b"{}", &header));
        assert!(!verify("secret", "msg1", 1_700_000_001, b"{}", &header));
        assert!(!verify("secret", "msg1", 1_700_000_000, b"{ }", &header));
        assert!(verify(
            "secret",
            "msg1",
            1_700_000_000,
            b"{}",
            &format!("v1,AAAA {header}")
        ));
    }
}
