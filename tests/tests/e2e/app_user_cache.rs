//! The gateways' cache of app users (posting and reading resolve the user through it): a
//! change made through any replica is in the next message on that replica at once and on
//! every other replica within moments, and a warm cache serves no other app or user.

use std::time::{Duration, Instant};

use e2e::{start_gateway, suite, unique, Auth, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Posts an `appUser` message for `user` (path id) through the gateway at `base`; the
/// status and the stored message's `name` (the user's name when the body gives none).
async fn post_at(base: &str, user: &str, auth: &Auth) -> (StatusCode, Value) {
    let (status, body) = suite()
        .call_at(
            base,
            Method::POST,
            &format!("/v1/appusers/{user}/conversation/messages"),
            auth,
            Some(json!({"text": "hello", "role": "appUser"})),
        )
        .await;
    (status, body["message"]["name"].clone())
}

/// Renames `user` through the gateway at `base`.
async fn rename_at(base: &str, app: &TestApp, user: &str, given_name: &str) {
    let (status, body) = suite()
        .call_at(
            base,
            Method::PUT,
            &format!("/v1/appusers/{user}"),
            &app.app_jwt(),
            Some(json!({"givenName": given_name, "surname": "Brule"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Reads `user`'s conversation through the suite's first gateway; the status.
async fn read(user: &str, auth: &Auth) -> StatusCode {
    let (status, _) = suite()
        .call(
            Method::GET,
            &format!("/v1/appusers/{user}/conversation"),
            auth,
            None,
        )
        .await;
    status
}

/// Posts through `base` until the message's `name` is `name` (`null`: none); how long that
/// took.
async fn until_named(base: &str, user: &str, auth: &Auth, name: &Value) -> Duration {
    let started = Instant::now();
    loop {
        let (status, got) = post_at(base, user, auth).await;
        assert_eq!(status, StatusCode::CREATED);
        if got == *name {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{base} still posts as {got} for {user}, 2 s after the change to {name}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_profile_change_is_in_the_next_message_on_every_replica() {
    let s = suite();
    let (second, _stop) = start_gateway(s.gateway_config()).await;
    let replicas = [s.base.clone(), second];
    let app = s.create_app().await;
    let user_id = unique("cached");
    let id = app.init_user(Some(&user_id)).await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    rename_at(&replicas[0], &app, &id, "Steve").await;
    // Both replicas resolve the user by `_id` and by `userId` (and keep it).
    for base in &replicas {
        for path_id in [&id, &user_id] {
            for _ in 0..2 {
                let (status, name) = post_at(base, path_id, &app.app_token()).await;
                assert_eq!(status, StatusCode::CREATED);
                assert_eq!(name, json!("Steve Brule"));
            }
        }
    }

    // A change through one replica: its own next message has it at once...
    for (changed, other) in [(0, 1), (1, 0)] {
        let name = unique("Name");
        rename_at(&replicas[changed], &app, &id, &name).await;
        for path_id in [&id, &user_id] {
            let (status, got) = post_at(&replicas[changed], path_id, &app.app_token()).await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(got, json!(format!("{name} Brule")), "read-your-writes");
        }
        // ...and the other replica hears of it from the users service.
        for path_id in [&id, &user_id] {
            let took = until_named(
                &replicas[other],
                path_id,
                &app.app_token(),
                &json!(format!("{name} Brule")),
            )
            .await;
            eprintln!("the change reached {} after {took:?}", replicas[other]);
        }
    }

    // A cleared profile too (the user's own JWT may clear it).
    let (status, body) = s
        .call_at(
            &replicas[1],
            Method::DELETE,
            &format!("/v1/appusers/{id}/profile"),
            &app.user_jwt(&user_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for base in &replicas {
        until_named(base, &id, &app.app_token(), &Value::Null).await;
    }
}

#[tokio::test]
async fn a_cached_user_is_served_to_no_other_app_or_user() {
    let s = suite();
    let app = s.create_app().await;
    let other_app = s.create_app().await;
    let alice_id = unique("alice");
    let alice = app.init_user(Some(&alice_id)).await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = unique("bob");
    app.init_user(Some(&bob_id)).await;
    // Warm the cache under both of alice's ids.
    for path_id in [&alice, &alice_id] {
        let (status, _) = post_at(&s.base, path_id, &app.app_token()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            read(path_id, &app.user_jwt(&alice_id)).await,
            StatusCode::OK
        );
    }
    for path_id in [&alice, &alice_id] {
        for auth in [other_app.app_token(), other_app.app_jwt()] {
            let (status, _) = post_at(&s.base, path_id, &auth).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "another app posted to {path_id}"
            );
            assert_eq!(
                read(path_id, &auth).await,
                StatusCode::NOT_FOUND,
                "another app read {path_id}"
            );
        }
        // Another user of the same app.
        let (status, _) = post_at(&s.base, path_id, &app.user_jwt(&bob_id)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "bob posted as {path_id}");
        assert_eq!(
            read(path_id, &app.user_jwt(&bob_id)).await,
            StatusCode::FORBIDDEN,
            "bob read {path_id}'s conversation"
        );
    }
}
