//! FCM: HTTP v1 (`POST {base}/v1/projects/{project_id}/messages:send`) with an OAuth2
//! access token got from the service account's `token_uri` by an RS256 JWT-bearer
//! assertion and cached until shortly before it expires; or the legacy endpoint
//! (`POST {base}/fcm/send`, `Authorization: key=<serverKey>`) when only a server key is set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::credentials::Fcm;
use crate::notification::Notification;
use crate::outcome::Outcome;

/// Google's FCM host.
pub const DEFAULT_URL: &str = "https://fcm.googleapis.com";

/// The OAuth2 scope of FCM sends.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: i64 = 3600;

/// A cached access token is dropped this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The FCM client and the access tokens of every service account.
#[derive(Debug)]
pub(crate) struct FcmClient {
    http: reqwest::Client,
    base: String,
    /// Access tokens by (token_uri, client_email): until when, and the token.
    tokens: Mutex<HashMap<(String, String), (Instant, String)>>,
}

#[derive(serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl FcmClient {
    pub(crate) fn new(
        base: &str,
        timeout: Duration,
        ca: Option<&reqwest::Certificate>,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = ca {
            http = http.add_root_certificate(ca.clone());
        }
        Ok(FcmClient {
            http: http.build()?,
            base: base.trim_end_matches('/').to_owned(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `notification` to the device `token` with the app's credentials.
    pub(crate) async fn send(
        &self,
        fcm: &Fcm,
        token: &str,
        notification: &Notification,
    ) -> Outcome {
        match fcm {
            Fcm::ServiceAccount {
                project_id,
                client_email,
                private_key,
                token_uri,
            } => {
                let access = match self
                    .access_token(client_email, private_key, token_uri)
                    .await
                {
                    Ok(access) => access,
                    Err(outcome) => return outcome,
                };
                self.send_v1(
                    project_id,
                    &access,
                    token,
                    notification,
                    (token_uri, client_email),
                )
                .await
            }
            Fcm::Legacy { server_key } => self.send_legacy(server_key, token, notification).await,
        }
    }

    /// A cached access token, or a new one from `token_uri`.
    async fn access_token(
        &self,
        client_email: &str,
        private_key: &str,
        token_uri: &str,
    ) -> Result<String, Outcome> {
        let key = (token_uri.to_owned(), client_email.to_owned());
        if let Ok(tokens) = self.tokens.lock() {
            if let Some((until, token)) = tokens.get(&key) {
                if Instant::now() < *until {
                    return Ok(token.clone());
                }
            }
        }
        let signing = EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|e| {
            Outcome::Failed(format!(
                "the service account's private_key is not an RSA PEM key: {e}"
            ))
        })?;
        let now = domain::time::now_ms() / 1000;
        let assertion = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &Assertion {
                iss: client_email,
                scope: SCOPE,
                aud: token_uri,
                iat: now,
                exp: now + ASSERTION_LIFETIME,
            },
            &signing,
        )
        .map_err(|e| Outcome::Failed(format!("signing the assertion failed: {e}")))?;
        let response = self
            .http
            .post(token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(Outcome::of_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Outcome::of_status(
                status,
                format!("the token endpoint answered {status}"),
            ));
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            Outcome::Retry(format!(
                "the token endpoint's answer is unreadable: {}",
                e.without_url()
            ))
        })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key, (until, answer.access_token.clone()));
        }
        Ok(answer.access_token)
    }

    async fn send_v1(
        &self,
        project_id: &str,
        access: &str,
        token: &str,
        n: &Notification,
        cache_key: (&str, &str),
    ) -> Outcome {
        let response = self
            .http
            .post(format!(
                "{}/v1/projects/{project_id}/messages:send",
                self.base
            ))
            .bearer_auth(access)
            .json(&v1_payload(token, n))
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
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = v1_error_code(&body);
        let described = format!("fcm answered {status} {code}");
        if code == "UNREGISTERED" || status == reqwest::StatusCode::NOT_FOUND {
            return Outcome::Unregistered(described);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The access token was revoked or expired early: get a new one next time.
            if let Ok(mut tokens) = self.tokens.lock() {
                tokens.remove(&(cache_key.0.to_owned(), cache_key.1.to_owned()));
            }
            return Outcome::Retry(described);
        }
        Outcome::of_status(status, described)
    }

    async fn send_legacy(&self, server_key: &str, token: &str, n: &Notification) -> Outcome {
        let response = self
            .http
            .post(format!("{}/fcm/send", self.base))
            .header("authorization", format!("key={server_key}"))
            .json(&legacy_payload(token, n))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(err) => return Outcome::of_error(err),
        };
        let status = response.status();
        if !status.is_success() {
            return Outcome::of_status(status, format!("fcm answered {status}"));
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = body
            .pointer("/results/0/error")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match error {
            "" => Outcome::Delivered,
            "NotRegistered" | "InvalidRegistration" => {
                Outcome::Unregistered(format!("fcm answered {error}"))
            }
            "Unavailable" | "InternalServerError" => {
                Outcome::Retry(format!("fcm answered {error}"))
            }
            other => Outcome::Failed(format!("fcm answered {other}")),
        }
    }
}

/// The FCM error code of a v1 error answer (`details[].errorCode`, else `status`).
fn v1_error_code(body: &Value) -> String {
    let details = body
        .pointer("/error/details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for detail in details {
        if let Some(code) = detail.get("errorCode").and_then(Value::as_str) {
            return code.to_owned();
        }
    }
    body.pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn data(n: &Notification) -> Value {
    json!({"appId": n.app_id, "appUserId": n.app_user_id, "messageId": n.message_id})
}

/// The FCM HTTP v1 body of a notification.
pub(crate) fn v1_payload(token: &str, n: &Notification) -> Value {
    json!({
        "message": {
            "token": token,
            "notification": {"title": n.title, "body": n.body},
            "data": data(n),
            "android": {"priority": "high"},
        }
    })
}

/// The legacy FCM body of a notification.
pub(crate) fn legacy_payload(token: &str, n: &Notification) -> Value {
    json!({
        "to": token,
        "priority": "high",
        "notification": {"title": n.title, "body": n.body},
        "data": data(n),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Json;

    use super::*;

    /// The test suite's service account key (tests/fixtures/push).
    const KEY: &str = include_str!("../../../tests/fixtures/push/fcm-key.pem");

    /// What the fake saw: token grants, and (authorization, device token) of each send.
    #[derive(Default)]
    struct Seen {
        grants: u32,
        sends: Vec<(String, String)>,
    }

    type Shared = Arc<Mutex<Seen>>;

    /// A fake FCM (token endpoint, v1 and legacy send) answering by device token: `gone`
    /// is unregistered, `revoked` is a 401, `down` a 503, `bad` a 400.
    async fn fake_fcm() -> (String, Shared) {
        let seen = Shared::default();
        async fn grant(State(seen): State<Shared>) -> Json<Value> {
            let mut seen = seen.lock().unwrap();
            seen.grants += 1;
            Json(json!({"access_token": format!("access-{}", seen.grants), "expires_in": 3600}))
        }
        async fn send(
            State(seen): State<Shared>,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            let device = body
                .pointer("/message/token")
                .or_else(|| body.get("to"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let auth = headers["authorization"].to_str().unwrap().to_owned();
            seen.lock().unwrap().sends.push((auth, device.clone()));
            let legacy = body.get("to").is_some();
            match (device.as_str(), legacy) {
                ("gone", false) => (
                    StatusCode::NOT_FOUND,
                    Json(
                        json!({"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}),
                    ),
                ),
                ("gone", true) => (
                    StatusCode::OK,
                    Json(json!({"results": [{"error": "NotRegistered"}]})),
                ),
                ("down", true) => (
                    StatusCode::OK,
                    Json(json!({"results": [{"error": "Unavailable"}]})),
                ),
                ("revoked", false) => (StatusCode::UNAUTHORIZED, Json(json!({}))),
                ("down", false) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({}))),
                ("bad", _) => (StatusCode::BAD_REQUEST, Json(json!({}))),
                _ => (
                    StatusCode::OK,
                    Json(json!({"results": [{"message_id": "1"}]})),
                ),
            }
        }
        let app = axum::Router::new()
            .route("/token", post(grant))
            .route("/v1/projects/p/messages:send", post(send))
            .route("/fcm/send", post(send))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn account(base: &str) -> Fcm {
        Fcm::ServiceAccount {
            project_id: "p".into(),
            client_email: "a@p.iam.gserviceaccount.com".into(),
            private_key: KEY.into(),
            token_uri: format!("{base}/token"),
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
    async fn v1_access_tokens_are_cached_and_renewed_after_a_401() {
        let (base, seen) = fake_fcm().await;
        let fcm = FcmClient::new(&base, Duration::from_secs(5), None).unwrap();
        let creds = account(&base);
        let n = notification();
        assert_eq!(fcm.send(&creds, "ok", &n).await, Outcome::Delivered);
        assert_eq!(fcm.send(&creds, "ok", &n).await, Outcome::Delivered);
        assert_eq!(seen.lock().unwrap().grants, 1, "one grant for both sends");
        assert!(matches!(
            fcm.send(&creds, "revoked", &n).await,
            Outcome::Retry(_)
        ));
        assert_eq!(fcm.send(&creds, "ok", &n).await, Outcome::Delivered);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.grants, 2, "a 401 drops the cached token");
        assert_eq!(seen.sends[0].0, "Bearer access-1");
        assert_eq!(seen.sends[3].0, "Bearer access-2");
    }

    #[tokio::test]
    async fn v1_and_legacy_answers_map_to_outcomes() {
        let (base, _) = fake_fcm().await;
        let fcm = FcmClient::new(&base, Duration::from_secs(5), None).unwrap();
        let n = notification();
        let legacy = Fcm::Legacy {
            server_key: "k".into(),
        };
        for creds in [account(&base), legacy] {
            assert_eq!(fcm.send(&creds, "ok", &n).await, Outcome::Delivered);
            assert!(matches!(
                fcm.send(&creds, "gone", &n).await,
                Outcome::Unregistered(_)
            ));
            assert!(matches!(
                fcm.send(&creds, "down", &n).await,
                Outcome::Retry(_)
            ));
            assert!(matches!(
                fcm.send(&creds, "bad", &n).await,
                Outcome::Failed(_)
            ));
        }
    }

    #[tokio::test]
    async fn an_unreachable_token_endpoint_retries_and_a_bad_key_fails() {
        let (base, seen) = fake_fcm().await;
        let fcm = FcmClient::new(&base, Duration::from_secs(5), None).unwrap();
        let n = notification();
        let Fcm::ServiceAccount {
            project_id,
            client_email,
            ..
        } = account(&base)
        else {
            unreachable!()
        };
        let unreachable = Fcm::ServiceAccount {
            project_id: project_id.clone(),
            client_email: client_email.clone(),
            private_key: KEY.into(),
            token_uri: "http://127.0.0.1:1/token".into(),
        };
        assert!(matches!(
            fcm.send(&unreachable, "ok", &n).await,
            Outcome::Retry(_)
        ));
        let bad_key = Fcm::ServiceAccount {
            project_id,
            client_email,
            private_key: "not a key".into(),
            token_uri: format!("{base}/token"),
        };
        assert!(matches!(
            fcm.send(&bad_key, "ok", &n).await,
            Outcome::Failed(_)
        ));
        assert!(seen.lock().unwrap().sends.is_empty());
    }

    #[test]
    fn v1_error_codes_come_from_details_first() {
        let body = json!({"error": {"status": "NOT_FOUND", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}});
        assert_eq!(v1_error_code(&body), "UNREGISTERED");
        assert_eq!(
            v1_error_code(&json!({"error": {"status": "INTERNAL"}})),
            "INTERNAL"
        );
        assert_eq!(v1_error_code(&Value::Null), "");
    }
}
