//! Rate limits, on a gateway of the test's own with tiny limits: per app, per app user,
//! 429 with `Retry-After`, the `X-RateLimit-*` headers and the v1 error body.

use e2e::{start_gateway, suite, Auth};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A gateway whose apps get 5 requests (then one per 2 s) and app users 2 (then one per
/// 10 s).
async fn tiny_gateway() -> (String, tokio_util::sync::CancellationToken) {
    let mut config = suite().gateway_config();
    // Buckets of their own, untouched by the suite's main gateway.
    config.redis = Some(auth::RedisConfig::new(
        suite().settings.redis_url.clone(),
        e2e::unique("limits"),
    ));
    config.rate_limit = gateway::RateLimitConfig {
        enabled: true,
        app: auth::Limit {
            per_second: 0.5,
            burst: 5,
        },
        app_user: auth::Limit {
            per_second: 0.1,
            burst: 2,
        },
    };
    start_gateway(config).await
}

struct Answer {
    status: StatusCode,
    limit: Option<String>,
    remaining: Option<String>,
    reset: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn get(base: &str, path: &str, auth: &Auth) -> Answer {
    let response = suite()
        .request_at(base, Method::GET, path, auth)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status(),
        limit: header("x-ratelimit-limit"),
        remaining: header("x-ratelimit-remaining"),
        reset: header("x-ratelimit-reset"),
        retry_after: header("retry-after"),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test]
async fn an_app_over_its_limit_gets_429_and_other_apps_do_not() {
    let s = suite();
    let (base, _stop) = tiny_gateway().await;
    let noisy = s.create_app().await;
    let quiet = s.create_app().await;
    let user = noisy.init_user(None).await;
    let path = format!("/v1/appusers/{}", user["_id"].as_str().unwrap());
    // App-scope JWT calls draw from the app's bucket only.
    for remaining in ["4", "3", "2", "1", "0"] {
        let a = get(&base, &path, &noisy.app_jwt()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!((a.limit, a.remaining), (some("5"), some(remaining)));
        assert!(a.retry_after.is_none());
    }
    let refused = get(&base, &path, &noisy.app_jwt()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["error"]["code"], "too_many_requests");
    assert!(refused.body["error"]["description"].is_string());
    assert_eq!(refused.retry_after, some("2"));
    assert_eq!((refused.limit, refused.remaining), (some("5"), some("0")));
    assert_eq!(refused.reset, some("10"));

    let other_user = quiet.init_user(None).await;
    let other = get(
        &base,
        &format!("/v1/appusers/{}", other_user["_id"].as_str().unwrap()),
        &quiet.app_jwt(),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    assert_eq!(other.remaining, some("4"));
}

#[tokio::test]
async fn an_app_user_over_its_limit_gets_429_and_its_neighbours_do_not() {
    let s = suite();
    let (base, _stop) = tiny_gateway().await;
    let app = s.create_app().await;
    let bob = app.init_user(Some("bob")).await;
    let carol = app.init_user(Some("carol")).await;
    let bob_path = format!("/v1/appusers/{}", bob["_id"].as_str().unwrap());
    for remaining in ["1", "0"] {
        let a = get(&base, &bob_path, &app.user_jwt("bob")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!((a.limit, a.remaining), (some("2"), some(remaining)));
    }
    let refused = get(&base, &bob_path, &app.user_jwt("bob")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.retry_after, some("10"));
    assert_eq!(refused.limit, some("2"));
    // The same user through the app token, by the path's id: a bucket of its own.
    let by_token = get(&base, &bob_path, &app.app_token()).await;
    assert_eq!(by_token.status, StatusCode::OK, "{}", by_token.body);

    let carol_path = format!("/v1/appusers/{}", carol["_id"].as_str().unwrap());
    let a = get(&base, &carol_path, &app.user_jwt("carol")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Carol's bucket has 1 left, and so has the app's (4 of its 5 taken): both bind.
    assert_eq!(a.remaining, some("1"));
}

#[tokio::test]
async fn account_calls_and_bad_credentials_are_not_counted() {
    let (base, _stop) = tiny_gateway().await;
    for _ in 0..8 {
        let a = get(&base, "/v1/apps", &e2e::account_jwt()).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.limit.is_none());
        let a = get(&base, "/v1/apps", &Auth::AppToken("nope".into())).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
}
