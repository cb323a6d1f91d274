//! Lookups, negative caching, revocations across replicas, and Redis outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::{
    CacheConfig, Credential, CredentialCache, KeyInfo, Principal, RedisClient, RedisConfig,
    Revocation, Revoker,
};

use crate::{redis, Counting};

/// Background tasks for one test; they stop with the test's runtime.
fn tasks() -> tasks::Tasks {
    tasks::Tasks::new(tasks::CancellationToken::new())
}

fn source_with_token(token: &str, app: &str) -> Counting {
    let source = Counting::default();
    source
        .apps
        .lock()
        .unwrap()
        .insert(token.to_owned(), app.to_owned());
    source
}

async fn wait_listening<S: auth::CredentialSource>(cache: &CredentialCache<S>) {
    for _ in 0..200 {
        if cache.is_listening() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cache never subscribed to revocations");
}

#[tokio::test]
async fn found_credentials_reach_the_source_once() {
    let source = source_with_token("tok", "app1");
    let cache = Arc::new(CredentialCache::new(
        source.clone(),
        Some(redis()),
        CacheConfig::default(),
    ));
    cache.spawn_listener(&tasks());
    wait_listening(&cache).await;
    for _ in 0..5 {
        let principal = cache
            .authenticate(&Credential::AppToken("tok".into()))
            .await
            .unwrap();
        assert_eq!(
            principal,
            Principal::AppToken {
                app_id: "app1".into()
            }
        );
    }
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn unknown_credentials_are_cached_briefly_in_redis_too() {
    let source = Counting::default();
    let redis = redis();
    let one = CredentialCache::new(source.clone(), Some(redis.clone()), CacheConfig::default());
    let two = CredentialCache::new(source.clone(), Some(redis), CacheConfig::default());
    for _ in 0..3 {
        let err = one
            .authenticate(&Credential::AppToken("nope".into()))
            .await
            .unwrap_err();
        assert_eq!(err.code, domain::ErrorCode::Unauthorized);
    }
    // Another replica finds the negative entry in Redis.
    assert_eq!(two.app_for_token("nope").await.unwrap(), None);
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn a_revocation_reaches_every_replica_within_a_second() {
    let redis = redis();
    let source = Counting::default();
    let key = KeyInfo {
        id: "kid1".into(),
        app_id: Some("app1".into()),
        secret: "s".into(),
    };
    source
        .keys
        .lock()
        .unwrap()
        .insert("kid1".into(), key.clone());
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            Arc::new(CredentialCache::new(
                source.clone(),
                Some(redis.clone()),
                CacheConfig::default(),
            ))
        })
        .collect();
    let tasks = tasks();
    for replica in &replicas {
        replica.spawn_listener(&tasks);
    }
    for replica in &replicas {
        wait_listening(replica).await;
        assert_eq!(replica.key("kid1").await.unwrap().as_deref(), Some(&key));
    }
    source.keys.lock().unwrap().clear();
    let revoker = Revoker::new(
        redis.clone(),
        Duration::from_secs(60),
        Duration::from_secs(5),
        tasks.clone(),
    );
    let revoked_at = Instant::now();
    revoker
        .revoke(Revocation::new([], vec!["kid1".into()]))
        .await;
    for replica in &replicas {
        loop {
            if replica.key("kid1").await.unwrap().is_none() {
                break;
            }
            assert!(revoked_at.elapsed() < Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_tombstone_wins_over_a_stale_fill() {
    let redis = redis();
    // The source still answers with the token: the revocation raced with this lookup.
    let stale = source_with_token("tok", "app1");
    Revoker::new(
        redis.clone(),
        Duration::from_secs(60),
        Duration::from_secs(1),
        tasks(),
    )
    .publish(&Revocation::new(["tok"], vec![]))
    .await
    .unwrap();
    let cache = CredentialCache::new(stale.clone(), Some(redis), CacheConfig::default());
    assert_eq!(cache.app_for_token("tok").await.unwrap(), None);
    assert_eq!(stale.calls(), 0);
}

#[tokio::test]
async fn with_redis_down_lookups_fall_back_to_the_source() {
    // Nothing listens on port 1.
    let down = RedisClient::new(RedisConfig::new("redis://127.0.0.1:1", "down")).unwrap();
    let source = source_with_token("tok", "app1");
    let cache = Arc::new(CredentialCache::new(
        source.clone(),
        Some(down.clone()),
        CacheConfig::default(),
    ));
    cache.spawn_listener(&tasks());
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            cache.app_for_token("tok").await.unwrap().as_deref(),
            Some("app1")
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!down.is_healthy());
    assert!(!down.ping().await);
    assert!(!cache.is_listening());
}

#[tokio::test]
async fn revocation_retries_end_with_the_shutdown() {
    // Nothing listens on port 1: the first attempt fails and the retries start.
    let down = RedisClient::new(RedisConfig::new("redis://127.0.0.1:1", "down")).unwrap();
    let tasks = tasks();
    let revoker = Revoker::new(
        down,
        Duration::from_secs(60),
        Duration::from_secs(600),
        tasks.clone(),
    );
    revoker
        .revoke(Revocation::new([], vec!["kid1".into()]))
        .await;
    // The service stops long before the retries would give up: they end with it.
    let finished = tokio::time::timeout(Duration::from_secs(5), tasks.finish(Ok(()))).await;
    assert!(
        matches!(finished, Ok(Ok(()))),
        "the retry outlived the shutdown"
    );
}
