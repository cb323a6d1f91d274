//! The suite's public HTTP API as the scenarios use it: the admin calls that set up apps,
//! keys, users and webhooks, and the hot-path requests that carry the load.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::{stream, StreamExt as _, TryStreamExt as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How many times a setup request is sent before a 503 fails the scenario (every half
/// second: ten seconds in all).
const SETUP_ATTEMPTS: u32 = 20;

/// A client of one suite.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT` of the (first) gateway: where set-up calls go.
    pub base: String,
    /// Every gateway (several with `--split --replicas N`): load spreads over them.
    pub bases: Vec<String>,
    /// Keeps connections open between requests: the load is many clients' worth of
    /// keep-alive connections, not a new TCP handshake per request.
    pub http: reqwest::Client,
    account_jwt: String,
}

/// An app made for a scenario.
#[derive(Debug, Clone)]
pub struct App {
    /// The app's `_id`.
    pub id: String,
    /// Its app token.
    pub token: String,
    /// An `app`-scope JWT signed with its secret key.
    pub jwt: String,
}

fn sign(kid: &str, secret: &str, claims: &Value) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing a JWT")
}

impl Api {
    /// A client of the suite behind the gateways `bases` (at least one), administering it
    /// with the account key.
    pub fn new(
        bases: &[String],
        account_key_id: &str,
        account_secret: &str,
    ) -> anyhow::Result<Self> {
        let base = bases
            .first()
            .ok_or_else(|| anyhow!("the suite has no gateway"))?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            base: base.clone(),
            bases: bases.to_vec(),
            http,
            account_jwt: sign(
                account_key_id,
                account_secret,
                &json!({"scope": "account", "iat": 1}),
            )?,
        })
    }

    /// The gateway that the `i`th user (or request) of a scenario goes to: round-robin over
    /// the gateways.
    pub fn base_for(&self, i: usize) -> &str {
        self.bases
            .get(i % self.bases.len().max(1))
            .unwrap_or(&self.base)
    }

    /// Sends a setup request (apps, keys, webhooks, users): answered `expect`, or an error;
    /// a 503 is retried, up to [`SETUP_ATTEMPTS`] tries in all.
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: (&str, &str),
        body: Option<Value>,
        expect: StatusCode,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(auth.0, auth.1);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            // A suite still warming up may answer 503 "retry shortly" (seen once under
            // valgrind, at the first request): do so.
            if status == StatusCode::SERVICE_UNAVAILABLE && attempt < SETUP_ATTEMPTS {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if status != expect {
                bail!("{url} answered {status}, expected {expect}: {answer}");
            }
            return Ok(answer);
        }
    }

    /// Creates an app and a secret key for it.
    pub async fn create_app(&self, name: &str) -> anyhow::Result<App> {
        let bearer = format!("Bearer {}", self.account_jwt);
        let auth = ("authorization", bearer.as_str());
        let body = self
            .call(
                Method::POST,
                "/v1/apps",
                auth,
                Some(json!({"name": name})),
                StatusCode::CREATED,
            )
            .await?;
        let id = body["app"]["_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no app _id in {body}"))?
            .to_owned();
        let token = body["app"]["appToken"]
            .as_str()
            .ok_or_else(|| anyhow!("no appToken in {body}"))?
            .to_owned();
        let key = self
            .call(
                Method::POST,
                &format!("/v1/apps/{id}/keys"),
                auth,
                Some(json!({"name": "bench"})),
                StatusCode::CREATED,
            )
            .await?;
        let kid = key["key"]["_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no key _id in {key}"))?;
        let secret = key["key"]["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("no key secret in {key}"))?;
        let jwt = sign(kid, secret, &json!({"scope": "app", "iat": 1}))?;
        Ok(App { id, token, jwt })
    }

    /// Creates `count` apps named `prefix-N`, a few at a time.
    pub async fn create_apps(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<App>> {
        stream::iter(0..count)
            .map(|i| async move { self.create_app(&format!("{prefix}-{i}")).await })
            .buffered(8)
            .try_collect()
            .await
    }

    /// Inits app user `user_id` of `app` (creating it) and returns its `appUser._id`.
    pub async fn init_user(&self, app: &App, user_id: &str) -> anyhow::Result<String> {
        let body = json!({
            "device": {"id": format!("dev-{user_id}"), "platform": "ios", "appVersion": "1.0"},
            "userId": user_id,
        });
        self.init(app, body).await
    }

    /// `POST /v1/init` of `app` with `body`; returns the `appUser._id`.
    async fn init(&self, app: &App, body: Value) -> anyhow::Result<String> {
        let answer = self
            .call(
                Method::POST,
                "/v1/init",
                ("app-token", &app.token),
                Some(body),
                StatusCode::OK,
            )
            .await?;
        answer["appUser"]["_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no appUser._id in {answer}"))
    }

    /// Inits users `u0..u{count}` of every app; returns `(app index, user id)` pairs.
    pub async fn init_users(
        &self,
        apps: &[App],
        per_app: usize,
    ) -> anyhow::Result<Vec<(usize, String)>> {
        let pairs: Vec<(usize, String)> = (0..apps.len())
            .flat_map(|a| (0..per_app).map(move |u| (a, format!("u{u}"))))
            .collect();
        stream::iter(pairs.iter().cloned())
            .map(|(a, user)| async move { self.init_user(&apps[a], &user).await.map(|_| ()) })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(pairs)
    }

    /// Posts an appUser text message through the API (setup, not load).
    pub async fn post_message(&self, app: &App, user: &str, text: &str) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            ("app-token", &app.token),
            Some(json!({"text": text, "role": "appUser"})),
            StatusCode::CREATED,
        )
        .await
        .map(|_| ())
    }

    /// Posts appUser text messages of `app` through the API, `in_flight` at once (setup,
    /// not load): `(user, text)` each.
    pub async fn post_messages(
        &self,
        app: &App,
        posts: impl IntoIterator<Item = (String, String)>,
        in_flight: usize,
    ) -> anyhow::Result<()> {
        stream::iter(posts)
            .map(|(user, text)| async move { self.post_message(app, &user, &text).await })
            .buffer_unordered(in_flight)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Adds an integration (`{type, ...fields}`) to `app`.
    pub async fn create_integration(&self, app: &App, body: Value) -> anyhow::Result<()> {
        let bearer = format!("Bearer {}", app.jwt);
        self.call(
            Method::POST,
            "/v1/integrations",
            ("authorization", &bearer),
            Some(body),
            StatusCode::CREATED,
        )
        .await
        .map(|_| ())
    }

    /// Inits `user_id` on an Android device with the push token `token`; returns the
    /// appUser `_id`.
    pub async fn init_push_user(
        &self,
        app: &App,
        user_id: &str,
        token: &str,
    ) -> anyhow::Result<String> {
        let body = json!({
            "device": {"id": format!("dev-{user_id}"), "platform": "android",
                       "pushNotificationToken": token},
            "userId": user_id,
        });
        self.init(app, body).await
    }

    /// Subscribes `target` to appUser messages of `app`; returns the webhook's `_id`.
    pub async fn create_webhook(&self, app: &App, target: &str) -> anyhow::Result<String> {
        let bearer = format!("Bearer {}", app.jwt);
        let body = self
            .call(
                Method::POST,
                "/v1/webhooks",
                ("authorization", &bearer),
                Some(json!({"target": target, "events": ["message:appUser"]})),
                StatusCode::CREATED,
            )
            .await?;
        body["webhook"]["_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no webhook._id in {body}"))
    }
}

/// A message text of exactly `len` bytes that starts with `head`.
pub fn padded_text(head: &str, len: usize) -> String {
    let mut text = String::with_capacity(len.max(head.len()));
    text.push_str(head);
    text.push(' ');
    while text.len() < len {
        text.push_str("lorem ipsum ");
    }
    text.truncate(len.max(head.len()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_texts_have_the_asked_length_and_keep_their_head() {
        let text = padded_text("bench 1 42", 200);
        assert_eq!(text.len(), 200);
        assert!(text.starts_with("bench 1 42 "));
        assert_eq!(crate::sink::seq_of(&text), Some(42));
    }
}
