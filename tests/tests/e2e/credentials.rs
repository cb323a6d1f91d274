//! The credential cache across gateway replicas: revocations (key deletion, token rotation,
//! app deletion) reach every replica within a second, and a Redis outage costs neither
//! availability nor correctness (against a Redis of the test's own, killed and restarted).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{account_jwt, start_gateway, suite, unique, Auth, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Polls `GET /v1/appusers/{user}` on `base` with `auth` until it answers `want`; returns
/// how long that took, failing after `within`.
async fn until_status(
    base: &str,
    user: &str,
    auth: &Auth,
    want: StatusCode,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = suite()
            .call_at(
                base,
                Method::GET,
                &format!("/v1/appusers/{user}"),
                auth,
                None,
            )
            .await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{base}: still {status} after {:?}, expected {want}: {body}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get_user(base: &str, user: &str, auth: &Auth) -> StatusCode {
    suite()
        .call_at(
            base,
            Method::GET,
            &format!("/v1/appusers/{user}"),
            auth,
            None,
        )
        .await
        .0
}

/// An app with a user, and that user's `_id`.
async fn app_with_user() -> (TestApp, String) {
    let app = suite().create_app().await;
    let user = app.init_user(Some("revocable")).await;
    let id = user["_id"].as_str().unwrap().to_owned();
    (app, id)
}

#[tokio::test]
async fn revoked_credentials_are_401_on_every_replica_within_a_second() {
    let s = suite();
    let (second, _stop) = start_gateway(s.gateway_config()).await;
    let replicas = [s.base.clone(), second];
    let (app, user) = app_with_user().await;
    // Warm both replicas' caches.
    for base in &replicas {
        assert_eq!(get_user(base, &user, &app.app_jwt()).await, StatusCode::OK);
        assert_eq!(
            get_user(base, &user, &app.app_token()).await,
            StatusCode::OK
        );
    }

    // A deleted key, through the first replica.
    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}/keys/{}", app.id, app.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for base in &replicas {
        let took = until_status(
            base,
            &user,
            &app.app_jwt(),
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(1),
        )
        .await;
        eprintln!("key revocation seen by {base} after {took:?}");
    }

    // A rotated token, through the second replica.
    let (status, body) = s
        .call_at(
            &replicas[1],
            Method::POST,
            &format!("/v1/apps/{}/token/rotate", app.id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_token = body["app"]["appToken"].as_str().unwrap().to_owned();
    assert_ne!(new_token, app.token);
    assert_eq!(body["app"]["_id"], app.id.as_str());
    for base in &replicas {
        let took = until_status(
            base,
            &user,
            &app.app_token(),
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(1),
        )
        .await;
        eprintln!("token rotation seen by {base} after {took:?}");
        let fresh = Auth::AppToken(new_token.clone());
        assert_eq!(get_user(base, &user, &fresh).await, StatusCode::OK);
    }

    // A deleted app takes its new token along.
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}", app.id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for base in &replicas {
        until_status(
            base,
            &user,
            &Auth::AppToken(new_token.clone()),
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(1),
        )
        .await;
    }
}

#[tokio::test]
async fn rotating_a_token_needs_account_scope_and_an_existing_app() {
    let s = suite();
    let app = s.create_app().await;
    let path = format!("/v1/apps/{}/token/rotate", app.id);
    let (status, body) = s.call(Method::POST, &path, &app.app_jwt(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/apps/{}/token/rotate", domain::id::new_id()),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}

/// A `redis-server` of this test's own, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    suite()
        .call_at(base, Method::GET, "/readyz", &Auth::None, None)
        .await
}

async fn until_ready(base: &str, want: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(base).await;
        if status == StatusCode::OK && body["status"] == want {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "readiness still {status} {body}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_redis_down_requests_succeed_readiness_degrades_and_the_cache_recovers() {
    let s = suite();
    let mut redis = OwnRedis::start();
    let mut config = s.gateway_config();
    config.redis = Some(auth::RedisConfig::new(redis.url(), unique("outage")));
    let (base, _stop) = start_gateway(config).await;
    let ready = until_ready(&base, "ok", Duration::from_secs(5)).await;
    assert_eq!(ready["redis"], "ok");
    assert_eq!(ready["revocations"], "listening");

    let (app, user) = app_with_user().await;
    let response = s
        .request_at(
            &base,
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-ratelimit-limit"));

    redis.kill();
    // Cached and never-seen credentials both work, served by the users service; rate limits
    // fail open (no headers).
    let other = s.create_app().await;
    let other_user = other.init_user(None).await;
    for (auth, user) in [
        (app.app_jwt(), user.as_str()),
        (app.app_token(), user.as_str()),
        (other.app_jwt(), other_user["_id"].as_str().unwrap()),
    ] {
        let response = s
            .request_at(&base, Method::GET, &format!("/v1/appusers/{user}"), &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("x-ratelimit-limit"));
    }
    let (status, body) = readyz(&base).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["redis"], "down");
    assert_eq!(body["services"]["users"], "ok");

    // A revocation this replica cannot hear about (its Redis is down) still lands within
    // the degraded TTL (1 s).
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/apps/{}/keys/{}", other.id, other.key_id),
            &account_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let took = until_status(
        &base,
        other_user["_id"].as_str().unwrap(),
        &other.app_jwt(),
        StatusCode::UNAUTHORIZED,
        Duration::from_millis(2500),
    )
    .await;
    eprintln!("revocation during the outage seen after {took:?}");

    redis.restart();
    let ready = until_ready(&base, "ok", Duration::from_secs(10)).await;
    assert_eq!(ready["redis"], "ok");
    let response = s
        .request_at(
            &base,
            Method::GET,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-ratelimit-limit"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["appUser"]["userId"], json!("revocable"));
}
