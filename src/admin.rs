//! The operator's admin client (`smooch apps ...`): calls the public HTTP API with an
//! account-scope JWT minted from `SMOOCH_ACCOUNT_KEY_ID` and `SMOOCH_ACCOUNT_SECRET`.

use anyhow::{anyhow, Context as _};
use serde_json::{json, Value};

/// An admin client of one suite.
pub struct Admin {
    base_url: String,
    jwt: String,
    http: reqwest::Client,
}

/// Mints an account-scope JWT (HS256, no `exp`) signed with the account key.
pub fn account_jwt(key_id: &str, secret: &str) -> anyhow::Result<String> {
    auth::sign_jwt(key_id, secret, "account")
        .map_err(|e| anyhow::anyhow!("signing the account JWT: {e}"))
}

impl Admin {
    /// A client of the suite at `base_url` (such as `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, key_id: &str, secret: &str) -> anyhow::Result<Self> {
        Ok(Admin {
            base_url: base_url.trim_end_matches('/').to_owned(),
            jwt: account_jwt(key_id, secret)?,
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.jwt)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}; is `smooch all` running?"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(anyhow!("{url} answered {status}: {body}"))
        }
    }

    /// `POST /v1/apps`.
    pub async fn create_app(&self, name: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/v1/apps",
            Some(json!({"name": name})),
        )
        .await
    }

    /// `GET /v1/apps`.
    pub async fn list_apps(&self) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, "/v1/apps", None).await
    }

    /// `POST /v1/apps/{appId}/keys`.
    pub async fn create_key(&self, app_id: &str, name: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/apps/{app_id}/keys"),
            Some(json!({"name": name})),
        )
        .await
    }
}
