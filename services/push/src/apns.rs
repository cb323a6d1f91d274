//! APNs over HTTP/2: `POST {base}/3/device/{token}` with `apns-topic` (the bundle id),
//! `apns-push-type: alert`, and either an ES256 provider token (`kid` = key id, `iss` =
//! team id, `iat`), signed once and reused for [`TOKEN_REUSE`] as Apple asks (at most one
//! new token per 20 minutes, each valid one hour), or the app's certificate (a `.p12`) as
//! the TLS client certificate, on connections of its own kept per certificate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::credentials::{Apn, ApnAuth};
use crate::notification::Notification;
use crate::outcome::Outcome;

/// Apple's production host.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's sandbox host (`production: false`).
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// How long a provider token is reused.
const TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);

/// The APNs client: HTTP/2 connections and the provider tokens of every app.
#[derive(Debug)]
pub(crate) struct Apns {
    /// HTTP/2 only, as APNs is: `h2` by ALPN over TLS, prior knowledge in clear.
    http: reqwest::Client,
    /// The configured base, or `None` for Apple's hosts.
    base: Option<String>,
    /// Signed tokens by (team id, key id): when signed, and the token.
    tokens: Mutex<HashMap<(String, String), (Instant, String)>>,
    /// Clients presenting an app's certificate, by the SHA-256 of its .p12 and password.
    certified: Mutex<HashMap<[u8; 32], reqwest::Client>>,
    /// What every client is built with.
    timeout: Duration,
    ca: Option<reqwest::Certificate>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

impl Apns {
    pub(crate) fn new(
        base: Option<String>,
        timeout: Duration,
        ca: Option<&reqwest::Certificate>,
    ) -> anyhow::Result<Self> {
        Ok(Apns {
            http: client(timeout, ca, None)?,
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
            tokens: Mutex::new(HashMap::new()),
            certified: Mutex::new(HashMap::new()),
            timeout,
            ca: ca.cloned(),
        })
    }

    /// The client presenting the certificate in `p12_base64`, built on first use.
    fn certified_client(
        &self,
        p12_base64: &str,
        password: &str,
    ) -> Result<reqwest::Client, String> {
        let mut hasher = Sha256::new();
        hasher.update(p12_base64.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(client) = self
            .certified
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return Ok(client);
        }
        let identity = identity(p12_base64, password)?;
        let built = client(self.timeout, self.ca.as_ref(), Some(identity))
            .map_err(|e| format!("the apn certificate is unusable for TLS: {e}"))?;
        if let Ok(mut clients) = self.certified.lock() {
            clients.insert(key, built.clone());
        }
        Ok(built)
    }

    /// The provider token of (team, key), signed anew when none is fresh.
    fn provider_token(&self, team_id: &str, key_id: &str, pem: &str) -> Result<String, String> {
        let key = (team_id.to_owned(), key_id.to_owned());
        if let Ok(tokens) = self.tokens.lock() {
            if let Some((at, token)) = tokens.get(&key) {
                if at.elapsed() < TOKEN_REUSE {
                    return Ok(token.clone());
                }
            }
        }
        let signing = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| format!("the apn privateKey is not a P-256 PEM key: {e}"))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key_id.to_owned());
        let claims = Claims {
            iss: team_id,
            iat: domain::time::now_ms() / 1000,
        };
        let token = jsonwebtoken::encode(&header, &claims, &signing)
            .map_err(|e| format!("signing the provider token failed: {e}"))?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key, (Instant::now(), token.clone()));
        }
        Ok(token)
    }

    fn forget_token(&self, team_id: &str, key_id: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&(team_id.to_owned(), key_id.to_owned()));
        }
    }

    /// Sends `notification` to the device `token` with the app's credentials.
    pub(crate) async fn send(
        &self,
        apn: &Apn,
        token: &str,
        notification: &Notification,
    ) -> Outcome {
        let base = match &self.base {
            Some(base) => base.as_str(),
            None if apn.production => PRODUCTION_URL,
            None => SANDBOX_URL,
        };
        let request = match &apn.auth {
            ApnAuth::Token {
                key_id,
                team_id,
                private_key,
            } => {
                // A provider token may send to any of the team's apps: the topic says which.
                let Some(topic) = apn.bundle_id.as_deref() else {
                    return Outcome::Failed("the apn integration has no bundleId".to_owned());
                };
                let jwt = match self.provider_token(team_id, key_id, private_key) {
                    Ok(jwt) => jwt,
                    Err(reason) => return Outcome::Failed(reason),
                };
                self.http
                    .post(format!("{base}/3/device/{token}"))
                    .header("apns-topic", topic)
                    .header("authorization", format!("bearer {jwt}"))
            }
            ApnAuth::Certificate {
                p12_base64,
                password,
            } => {
                let http = match self.certified_client(p12_base64, password) {
                    Ok(http) => http,
                    Err(reason) => return Outcome::Failed(reason),
                };
                let request = http.post(format!("{base}/3/device/{token}"));
                // Without a bundleId, APNs takes the topic from the certificate's subject.
                match apn.bundle_id.as_deref() {
                    Some(topic) => request.header("apns-topic", topic),
                    None => request,
                }
            }
        };
        let response = request
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .json(&payload(notification, apn.auto_update_badge))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(err) => return Outcome::of_error(err),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let reason = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|b| b.get("reason").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let described = format!("apns answered {status} {reason}");
        match (status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken" | "Unregistered") => Outcome::Unregistered(described),
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                // Sign a new one for the next attempt.
                if let ApnAuth::Token {
                    key_id, team_id, ..
                } = &apn.auth
                {
                    self.forget_token(team_id, key_id);
                }
                Outcome::Retry(described)
            }
            _ => Outcome::of_status(status, described),
        }
    }
}

/// An HTTP/2-only client (`h2` by ALPN over TLS, prior knowledge in clear), presenting
/// `identity` as its TLS client certificate when given.
fn client(
    timeout: Duration,
    ca: Option<&reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
) -> reqwest::Result<reqwest::Client> {
    let mut http = reqwest::Client::builder()
        .timeout(timeout)
        .http2_prior_knowledge();
    if let Some(ca) = ca {
        http = http.add_root_certificate(ca.clone());
    }
    if let Some(identity) = identity {
        http = http.identity(identity);
    }
    http.build()
}

/// PEM text of one DER object.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The TLS identity in a base64 PKCS#12 file: its private key (PKCS#8) and certificate
/// chain, leaf first. Errors name what is wrong, never the secret.
pub(crate) fn identity(p12_base64: &str, password: &str) -> Result<reqwest::Identity, String> {
    let compact: String = p12_base64.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| "the apn certificate is not base64".to_owned())?;
    let store = p12_keystore::KeyStore::from_pkcs12(
        &der,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| format!("the apn certificate is not a PKCS#12 file this password opens: {e}"))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| "the apn certificate holds no private key".to_owned())?;
    if chain.certs().is_empty() {
        return Err("the apn certificate holds no certificate for its key".to_owned());
    }
    let mut text = pem("PRIVATE KEY", chain.key().as_der());
    for cert in chain.certs() {
        text.push_str(&pem("CERTIFICATE", cert.as_der()));
    }
    reqwest::Identity::from_pem(text.as_bytes())
        .map_err(|e| format!("the apn certificate's key or chain is unusable: {e}"))
}

/// The APNs JSON payload of a notification.
pub(crate) fn payload(n: &Notification, with_badge: bool) -> Value {
    let mut aps = json!({
        "alert": {"title": n.title, "body": n.body},
        "sound": "default",
    });
    if with_badge {
        aps["badge"] = json!(n.badge);
    }
    json!({
        "aps": aps,
        "smooch": {"appId": n.app_id, "appUserId": n.app_user_id, "messageId": n.message_id},
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode, Version};
    use axum::routing::post;

    use super::*;

    /// The test suite's APNs key (tests/fixtures/push).
    const KEY: &str = include_str!("../../../tests/fixtures/push/apns-key.pem");
    /// The test suite's APNs client certificate, and its legacy-encrypted twin.
    const P12: &[u8] = include_bytes!("../../../tests/fixtures/push/apns-client.p12");
    const LEGACY_P12: &[u8] = include_bytes!("../../../tests/fixtures/push/apns-client-legacy.p12");

    #[test]
    fn p12_files_open_with_their_password_in_both_encryptions() {
        for p12 in [P12, LEGACY_P12] {
            let text = base64::engine::general_purpose::STANDARD.encode(p12);
            assert!(identity(&text, "test-only-password").is_ok());
            let wrong = identity(&text, "nope").err().unwrap();
            assert!(!wrong.contains("test-only"), "{wrong}");
        }
    }

    type Seen = Arc<Mutex<Vec<(Version, String)>>>;

    /// A cleartext HTTP/2 server that answers as APNs does for the token in the path.
    async fn fake_apns() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/3/device/{token}",
                post(
                    |State(seen): State<Seen>,
                     Path(token): Path<String>,
                     version: Version,
                     headers: HeaderMap| async move {
                        let auth = headers["authorization"].to_str().unwrap().to_owned();
                        seen.lock().unwrap().push((version, auth));
                        match token.as_str() {
                            "gone" => (StatusCode::GONE, r#"{"reason":"Unregistered"}"#),
                            "bad" => (StatusCode::BAD_REQUEST, r#"{"reason":"BadDeviceToken"}"#),
                            "busy" => (
                                StatusCode::TOO_MANY_REQUESTS,
                                r#"{"reason":"TooManyRequests"}"#,
                            ),
                            "topic" => (
                                StatusCode::BAD_REQUEST,
                                r#"{"reason":"DeviceTokenNotForTopic"}"#,
                            ),
                            "stale" => (
                                StatusCode::FORBIDDEN,
                                r#"{"reason":"ExpiredProviderToken"}"#,
                            ),
                            _ => (StatusCode::OK, ""),
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn apn() -> Apn {
        Apn {
            auth: ApnAuth::Token {
                key_id: "KEY1".into(),
                team_id: "TEAM1".into(),
                private_key: KEY.into(),
            },
            bundle_id: Some("com.example".into()),
            production: false,
            auto_update_badge: true,
        }
    }

    fn notification() -> Notification {
        Notification {
            title: "t".into(),
            body: "b".into(),
            badge: 1,
            app_id: "a".into(),
            app_user_id: "u".into(),
            message_id: "m".into(),
        }
    }

    #[tokio::test]
    async fn cleartext_bases_speak_http2_and_answers_map_to_outcomes() {
        let (base, seen) = fake_apns().await;
        let apns = Apns::new(Some(base), Duration::from_secs(5), None).unwrap();
        let send = |token: &'static str| {
            let apns = &apns;
            async move { apns.send(&apn(), token, &notification()).await }
        };
        assert_eq!(send("ok").await, Outcome::Delivered);
        assert!(matches!(send("gone").await, Outcome::Unregistered(_)));
        assert!(matches!(send("bad").await, Outcome::Unregistered(_)));
        assert!(matches!(send("busy").await, Outcome::Retry(_)));
        assert!(matches!(send("topic").await, Outcome::Failed(_)));
        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().all(|(v, _)| *v == Version::HTTP_2), "{seen:?}");
        // One provider token for every send.
        assert!(seen.iter().all(|(_, auth)| *auth == seen[0].1));
    }

    #[tokio::test]
    async fn an_expired_provider_token_is_signed_anew_for_the_retry() {
        let (base, seen) = fake_apns().await;
        let apns = Apns::new(Some(base), Duration::from_secs(5), None).unwrap();
        assert!(matches!(
            apns.send(&apn(), "stale", &notification()).await,
            Outcome::Retry(_)
        ));
        assert!(
            apns.tokens.lock().unwrap().is_empty(),
            "the stale token is forgotten"
        );
        assert_eq!(
            apns.send(&apn(), "ok", &notification()).await,
            Outcome::Delivered
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn unusable_certificates_and_missing_bundle_ids_fail_without_a_request() {
        let (base, seen) = fake_apns().await;
        let apns = Apns::new(Some(base), Duration::from_secs(5), None).unwrap();
        let certificate = |p12_base64: &str, password: &str| Apn {
            auth: ApnAuth::Certificate {
                p12_base64: p12_base64.to_owned(),
                password: password.to_owned(),
            },
            ..apn()
        };
        let p12 = base64::engine::general_purpose::STANDARD.encode(P12);
        let no_topic = Apn {
            bundle_id: None,
            ..apn()
        };
        for creds in [
            certificate("not base64!", ""),
            certificate("AAAA", ""),
            certificate(&p12, "wrong password"),
            no_topic,
        ] {
            assert!(matches!(
                apns.send(&creds, "ok", &notification()).await,
                Outcome::Failed(_)
            ));
        }
        assert!(seen.lock().unwrap().is_empty());
    }
}
