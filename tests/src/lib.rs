//! The testkit: starts the whole suite (`smooch all`) in-process once per test binary, on
//! free ports, against the real Postgres, Redis and RabbitMQ, and gives tests a typed way to
//! make apps, credentials and requests. Each test makes its own app, so tests run in parallel
//! and isolate each other the way tenants do.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod otlp;
pub mod push_fake;

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use smooch::Settings;
use tokio_util::sync::CancellationToken;

/// The account key the test suite is configured with (obvious test values).
pub const ACCOUNT_KEY_ID: &str = "test-account-key";
/// The account key's secret.
pub const ACCOUNT_SECRET: &str = "test-account-secret";

/// The key the suite seals integration secrets with (`SMOOCH_SECRETS_KEY`): the base64 of
/// the text `smooch-e2e-test-key-not-a-secret`, a test value.
pub const SECRETS_KEY: &str = "c21vb2NoLWUyZS10ZXN0LWtleS1ub3QtYS1zZWNyZXQ=";

/// The running suite.
pub struct Suite {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The settings it runs with.
    pub settings: Settings,
    /// A shared HTTP client.
    pub http: reqwest::Client,
    /// The gateway's configuration (the in-process suite only): tests start more gateways
    /// with it.
    gateway_config: Option<gateway::Config>,
}

static SUITE: OnceLock<Suite> = OnceLock::new();

/// A unique suffix for names in this test process.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), domain::id::new_id())
}

/// `n` distinct loopback ports for processes a test starts, free when this returns.
///
/// They come from below the kernel's ephemeral range (`ip_local_port_range`), where binding to
/// port 0 and outgoing connections take theirs: a port picked by binding to 0 and released can
/// be taken by the very next outgoing connection (a role's first Postgres connection, say)
/// before the process meant to listen on it starts. Each port is held while the others are
/// picked, so none repeats.
pub fn reserve_ports(n: usize) -> Vec<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let mut held = Vec::with_capacity(n);
    // Spread the start per process so parallel test binaries rarely probe the same ports, and
    // move on per call so two calls in one process never hand out the same one.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(64, std::sync::atomic::Ordering::Relaxed);
    let mut next = low
        + (std::process::id() as u16)
            .wrapping_mul(7919)
            .wrapping_add(call)
            % (high - low);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        assert!(tries < 20_000, "no {n} free ports in {low}..{high}");
        next = if next + 1 >= high { low } else { next + 1 };
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", next)) {
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The settings tests run with: a `smooch_test` database (or `SMOOCH_TEST_DATABASE_URL`),
/// free ports, and AMQP/Redis prefixes of their own.
pub fn test_settings() -> Settings {
    let database_url = std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned());
    let media_dir = std::env::temp_dir().join(unique("smooch-media"));
    let mut settings = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url,
        database_max_connections: 8,
        account_key_id: Some(ACCOUNT_KEY_ID.to_owned()),
        account_secret: Some(SecretString::from(ACCOUNT_SECRET)),
        secrets_key: Some(SecretString::from(SECRETS_KEY)),
        media_dir,
        amqp_prefix: unique("test"),
        redis_prefix: unique("test"),
        // Every e2e test shares this suite, in parallel: room for all of them at once.
        max_in_flight: 1024,
        ..Settings::default()
    };
    // Webhook sinks listen on loopback; failures retry fast and give up soon, so delivery
    // tests take a few seconds, not minutes.
    let worker = &mut settings.webhook_worker;
    worker.allow_private_targets = true;
    worker.retry_base = std::time::Duration::from_millis(200);
    worker.max_retries = 2;
    worker.timeout = std::time::Duration::from_millis(2_000);
    // Long: the change feed, not expiry, must make webhook changes take effect.
    worker.cache_ttl = std::time::Duration::from_secs(60);
    worker.retry_poll = std::time::Duration::from_millis(200);
    // Circuits open after the default 5 failures in a row and probe again after 1 s.
    worker.circuit_cool_down = std::time::Duration::from_secs(1);
    // Push providers are the fakes (set when the suite starts); retries are fast.
    let push = &mut settings.push;
    push.retry_base = std::time::Duration::from_millis(200);
    push.max_retries = 2;
    push.timeout = std::time::Duration::from_millis(2_000);
    settings
}

/// The suite of this test binary, started on first use.
pub fn suite() -> &'static Suite {
    SUITE.get_or_init(|| {
        let settings = test_settings();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut thread_settings = settings.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // Telemetry lives on this runtime, which outlives every test.
                let endpoint = otlp::start().await;
                telemetry::init_for_tests(Some(&endpoint));
                // APNs over TLS (HTTP/2 by ALPN, the test CA trusted), FCM in clear.
                let fakes = push_fake::start().await;
                let ca_file = std::env::temp_dir().join(unique("smooch-push-ca"));
                std::fs::write(&ca_file, push_fake::CA_PEM).unwrap();
                thread_settings.push.ca_file = Some(ca_file.display().to_string());
                thread_settings.push.apns_url = Some(fakes.tls);
                thread_settings.push.fcm_url = fakes.cleartext;
                let running = smooch::start_all(&thread_settings, CancellationToken::new())
                    .await
                    .expect("starting the suite");
                wait_healthy(running.http_addr).await;
                tx.send((running.http_addr, running.gateway_config.clone()))
                    .unwrap();
                running.wait().await.expect("suite stopped with an error");
            });
        });
        let (addr, gateway_config) = rx.recv().expect("the suite failed to start");
        let suite = Suite {
            base: format!("http://{addr}"),
            settings,
            // Each test runs its own runtime: pooled connections would die with the runtime
            // that opened them, so none are kept.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            gateway_config: Some(gateway_config),
        };
        suite
    })
}

async fn wait_healthy(addr: std::net::SocketAddr) {
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the suite did not become healthy at {url}");
}

/// Starts another gateway in front of the suite's services with `config` on a free port,
/// on the calling test's runtime, and returns its base URL once it answers.
pub async fn start_gateway(config: gateway::Config) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(gateway::run(config, listener, shutdown.clone()));
    wait_healthy(addr).await;
    (format!("http://{addr}"), shutdown)
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// The `app-token` header.
    AppToken(String),
    /// `Authorization: Bearer <jwt>`.
    Jwt(String),
}

/// Signs a JWT (HS256 unless `alg` says otherwise) with `kid` in its header.
pub fn jwt_with(alg: Algorithm, kid: &str, secret: &str, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Signs an HS256 JWT the way the era's Node client does (no `exp`, an `iat`).
pub fn jwt(kid: &str, secret: &str, claims: Value) -> String {
    jwt_with(Algorithm::HS256, kid, secret, claims)
}

/// The account-scope JWT of the test suite.
pub fn account_jwt() -> Auth {
    Auth::Jwt(jwt(
        ACCOUNT_KEY_ID,
        ACCOUNT_SECRET,
        json!({"scope": "account", "iat": 1}),
    ))
}

/// A response's status and JSON body (`Value::Null` when the body is not JSON).
pub async fn parts(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

impl Suite {
    /// A client of a suite running elsewhere (a child process) at `base`.
    pub fn at(base: &str) -> Suite {
        Suite {
            base: base.trim_end_matches('/').to_owned(),
            settings: test_settings(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            gateway_config: None,
        }
    }

    /// The configuration of another gateway in front of this suite's services.
    pub fn gateway_config(&self) -> gateway::Config {
        self.gateway_config
            .clone()
            .expect("only the in-process suite exposes its gateway configuration")
    }

    /// A request to `path` (such as `/v1/init`) with `auth`.
    pub fn request(&self, method: Method, path: &str, auth: &Auth) -> RequestBuilder {
        self.request_at(&self.base, method, path, auth)
    }

    /// A request to `path` on the gateway at `base` (another gateway of the suite).
    pub fn request_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        auth: &Auth,
    ) -> RequestBuilder {
        let request = self.http.request(method, format!("{base}{path}"));
        match auth {
            Auth::None => request,
            Auth::AppToken(t) => request.header("app-token", t),
            Auth::Jwt(t) => request.bearer_auth(t),
        }
    }

    /// Sends a JSON request and returns status and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        parts(request.send().await.unwrap()).await
    }

    /// Sends a JSON request to the gateway at `base` and returns status and body.
    pub async fn call_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request_at(base, method, path, auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        parts(request.send().await.unwrap()).await
    }

    /// Creates an app with one secret key.
    pub async fn create_app(&self) -> TestApp {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/apps",
                &account_jwt(),
                Some(json!({"name": unique("app")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let app = &body["app"];
        let id = app["_id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/v1/apps/{id}/keys"),
                &account_jwt(),
                Some(json!({"name": "test"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        TestApp {
            id,
            token: app["appToken"].as_str().unwrap().to_owned(),
            key_id: body["key"]["_id"].as_str().unwrap().to_owned(),
            secret: body["key"]["secret"].as_str().unwrap().to_owned(),
        }
    }
}

/// An app made for one test, with its credentials.
#[derive(Debug, Clone)]
pub struct TestApp {
    /// The app's `_id`.
    pub id: String,
    /// Its app token.
    pub token: String,
    /// Its secret key's id (`kid`).
    pub key_id: String,
    /// Its secret key's secret.
    pub secret: String,
}

impl TestApp {
    /// The app token credential.
    pub fn app_token(&self) -> Auth {
        Auth::AppToken(self.token.clone())
    }

    /// An `app`-scope JWT.
    pub fn app_jwt(&self) -> Auth {
        Auth::Jwt(jwt(
            &self.key_id,
            &self.secret,
            json!({"scope": "app", "iat": 1}),
        ))
    }

    /// An `appUser`-scope JWT for `user_id`.
    pub fn user_jwt(&self, user_id: &str) -> Auth {
        Auth::Jwt(jwt(
            &self.key_id,
            &self.secret,
            json!({"scope": "appUser", "userId": user_id, "iat": 1}),
        ))
    }

    /// Inits a user on a new device (with `user_id` if given) and returns its `appUser`.
    pub async fn init_user(&self, user_id: Option<&str>) -> Value {
        let mut body =
            json!({"device": {"id": domain::id::new_id(), "platform": "ios", "appVersion": "1.0"}});
        if let Some(user_id) = user_id {
            body["userId"] = json!(user_id);
        }
        let (status, body) = suite()
            .call(Method::POST, "/v1/init", &self.app_token(), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["appUser"].clone()
    }

    /// Posts a text message as `role` for the app user `user` (path id) with the app JWT.
    pub async fn post_message(&self, user: &str, role: &str, text: &str) -> Value {
        let (status, body) = suite()
            .call(
                Method::POST,
                &format!("/v1/appusers/{user}/conversation/messages"),
                &self.app_jwt(),
                Some(json!({"text": text, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}
