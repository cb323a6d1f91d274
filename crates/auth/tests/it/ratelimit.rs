//! GCRA buckets in Redis.

use std::time::Duration;

use auth::{Bucket, Limit, RateLimiter, RedisClient, RedisConfig};

use crate::redis;

#[tokio::test]
async fn a_burst_passes_then_the_bucket_refuses_with_retry_after() {
    let limiter = RateLimiter::new(redis());
    let limit = Limit {
        per_second: 1.0,
        burst: 3,
    };
    let buckets = [Bucket::app("app1", limit)];
    for remaining in [2, 1, 0] {
        let d = limiter.check(&buckets).await.unwrap();
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, remaining));
    }
    let d = limiter.check(&buckets).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(d.retry_after > Duration::from_millis(900) && d.retry_after <= Duration::from_secs(1));
    assert!(d.reset_after > Duration::from_secs(2));
}

#[tokio::test]
async fn the_most_restrictive_bucket_decides_and_a_refusal_takes_nothing() {
    let limiter = RateLimiter::new(redis());
    let app = Bucket::app(
        "app1",
        Limit {
            per_second: 100.0,
            burst: 100,
        },
    );
    let user = |u: &str| {
        Bucket::user(
            "app1",
            u,
            Limit {
                per_second: 0.1,
                burst: 2,
            },
        )
    };
    for _ in 0..2 {
        assert!(
            limiter
                .check(&[app.clone(), user("bob")])
                .await
                .unwrap()
                .allowed
        );
    }
    let refused = limiter.check(&[app.clone(), user("bob")]).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.limit, 2);
    // Another user of the same app is not affected, and the app bucket lost only the two
    // requests that passed (plus this one).
    let other = limiter.check(&[app.clone(), user("alice")]).await.unwrap();
    assert!(other.allowed);
    let app_only = limiter.check(&[app]).await.unwrap();
    assert_eq!(app_only.remaining, 96);
}

#[tokio::test]
async fn with_redis_down_the_limiter_errs_quickly() {
    let down = RedisClient::new(RedisConfig::new("redis://127.0.0.1:1", "down")).unwrap();
    let limiter = RateLimiter::new(down);
    let bucket = Bucket::app(
        "a",
        Limit {
            per_second: 1.0,
            burst: 1,
        },
    );
    assert!(limiter.check(&[bucket]).await.is_err());
}
