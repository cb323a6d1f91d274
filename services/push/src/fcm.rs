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
mod tests {
    use super::*;

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
