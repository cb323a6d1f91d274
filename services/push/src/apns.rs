//! APNs over HTTP/2: `POST {base}/3/device/{token}` with `apns-topic` (the bundle id),
//! `apns-push-type: alert` and an ES256 provider token (`kid` = key id, `iss` = team id,
//! `iat`), signed once and reused for [`TOKEN_REUSE`] as Apple asks (at most one new token
//! per 20 minutes, each valid one hour).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

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
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .http2_prior_knowledge();
        if let Some(ca) = ca {
            http = http.add_root_certificate(ca.clone());
        }
        Ok(Apns {
            http: http.build()?,
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
            tokens: Mutex::new(HashMap::new()),
        })
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
        let ApnAuth::Token {
            key_id,
            team_id,
            private_key,
        } = &apn.auth
        else {
            return Outcome::Failed(
                "apn certificate (.p12) authentication is not supported yet; use a .p8 key"
                    .to_owned(),
            );
        };
        let Some(topic) = apn.bundle_id.as_deref() else {
            return Outcome::Failed("the apn integration has no bundleId".to_owned());
        };
        let jwt = match self.provider_token(team_id, key_id, private_key) {
            Ok(jwt) => jwt,
            Err(reason) => return Outcome::Failed(reason),
        };
        let base = match &self.base {
            Some(base) => base.as_str(),
            None if apn.production => PRODUCTION_URL,
            None => SANDBOX_URL,
        };
        let response = self
            .http
            .post(format!("{base}/3/device/{token}"))
            .header("apns-topic", topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("authorization", format!("bearer {jwt}"))
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
                self.forget_token(team_id, key_id);
                Outcome::Retry(described)
            }
            _ => Outcome::of_status(status, described),
        }
    }
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
    async fn certificates_and_missing_bundle_ids_fail_without_a_request() {
        let (base, seen) = fake_apns().await;
        let apns = Apns::new(Some(base), Duration::from_secs(5), None).unwrap();
        let certificate = Apn {
            auth: ApnAuth::Certificate,
            ..apn()
        };
        let no_topic = Apn {
            bundle_id: None,
            ..apn()
        };
        for creds in [certificate, no_topic] {
            assert!(matches!(
                apns.send(&creds, "ok", &notification()).await,
                Outcome::Failed(_)
            ));
        }
        assert!(seen.lock().unwrap().is_empty());
    }
}
