//! The registry of apps with real-time clients, against the real Redis.

use std::collections::HashSet;
use std::time::Duration;

use auth::{Audience, RedisClient, RedisConfig};

use crate::redis;

fn apps<'a>(names: &[&'a str]) -> HashSet<&'a str> {
    names.iter().copied().collect()
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// A reader as a relay holds it: its marks last nothing, and it remembers nothing yet.
fn reader(redis: &RedisClient) -> Audience {
    Audience::reader(redis.clone())
}

#[tokio::test]
async fn an_app_is_watched_until_its_record_lapses() {
    let redis = redis();
    let gateway = Audience::new(redis.clone(), Duration::from_millis(400));
    let asked = apps(&["app-a", "app-b"]);
    assert_eq!(reader(&redis).watched(&asked).await.unwrap(), set(&[]));
    gateway.watch(&["app-a".to_owned()]).await.unwrap();
    assert_eq!(
        reader(&redis).watched(&asked).await.unwrap(),
        set(&["app-a"])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reader(&redis).watched(&asked).await.unwrap(),
        set(&[]),
        "a record nobody refreshed lapses"
    );
}

#[tokio::test]
async fn a_shorter_record_never_cuts_a_longer_one_short() {
    let redis = redis();
    let long = Audience::new(redis.clone(), Duration::from_secs(30));
    let short = Audience::new(redis.clone(), Duration::from_millis(200));
    long.watch(&["app-a".to_owned()]).await.unwrap();
    short.watch(&["app-a".to_owned()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        reader(&redis).watched(&apps(&["app-a"])).await.unwrap(),
        set(&["app-a"])
    );
}

#[tokio::test]
async fn a_reader_that_found_an_app_unwatched_sees_its_new_record() {
    let redis = redis();
    let relay = reader(&redis);
    let gateway = Audience::new(redis.clone(), Duration::from_secs(30));
    assert_eq!(relay.watched(&apps(&["app-a"])).await.unwrap(), set(&[]));
    // An app found unwatched is asked again next time, never remembered: a client whose
    // subscribe is answered after the record gets the events committed from then on.
    gateway.watch(&["app-a".to_owned()]).await.unwrap();
    assert_eq!(
        relay.watched(&apps(&["app-a"])).await.unwrap(),
        set(&["app-a"])
    );
    // An app found watched is remembered until its record's time: no question meanwhile.
    let key = redis.key("realtime:apps");
    let _: () = redis
        .run(|mut conn| async move { ::redis::cmd("DEL").arg(&key).query_async(&mut conn).await })
        .await
        .unwrap();
    assert_eq!(
        relay.watched(&apps(&["app-a"])).await.unwrap(),
        set(&["app-a"])
    );
    assert_eq!(
        reader(&redis).watched(&apps(&["app-a"])).await.unwrap(),
        set(&[])
    );
}

#[tokio::test]
async fn apps_are_kept_per_prefix() {
    let (one, other) = (redis(), redis());
    Audience::new(one.clone(), Duration::from_secs(30))
        .watch(&["app-a".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        reader(&other).watched(&apps(&["app-a"])).await.unwrap(),
        set(&[])
    );
}

#[tokio::test]
async fn without_redis_the_question_fails() {
    // Nothing listens on port 1.
    let down = RedisClient::new(RedisConfig::new("redis://127.0.0.1:1", "down")).unwrap();
    assert!(reader(&down).watched(&apps(&["app-a"])).await.is_err());
}
