//! Marks of users watching their conversation live, against the real Redis.

use std::time::Duration;

use auth::Presence;

use crate::redis;

#[tokio::test]
async fn a_mark_holds_until_its_client_leaves() {
    let presence = Presence::new(redis(), Duration::from_secs(30));
    assert!(!presence.is_watching("app", "u1").await.unwrap());
    presence.watch("app", "u1", "client-a").await.unwrap();
    presence.watch("app", "u1", "client-b").await.unwrap();
    assert!(presence.is_watching("app", "u1").await.unwrap());
    // Scoped to the app and the user.
    assert!(!presence.is_watching("app", "u2").await.unwrap());
    assert!(!presence.is_watching("other-app", "u1").await.unwrap());
    presence.leave("app", "u1", "client-a").await.unwrap();
    assert!(
        presence.is_watching("app", "u1").await.unwrap(),
        "b still watches"
    );
    presence.leave("app", "u1", "client-b").await.unwrap();
    assert!(!presence.is_watching("app", "u1").await.unwrap());
}

#[tokio::test]
async fn a_mark_not_refreshed_lapses() {
    let presence = Presence::new(redis(), Duration::from_millis(300));
    presence.watch("app", "u1", "client-a").await.unwrap();
    assert!(presence.is_watching("app", "u1").await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A refresh (a connect) pushes the lapse back.
    presence.watch("app", "u1", "client-a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(presence.is_watching("app", "u1").await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!presence.is_watching("app", "u1").await.unwrap());
}
