//! Several workers, and workers that die: every job is delivered, none twice in the
//! normal path.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::{Behaviour, World};

#[tokio::test]
async fn two_workers_share_the_load_without_double_processing() {
    let world = World::new(Duration::from_millis(100)).await;
    world.sink.behave(
        "/shared",
        Behaviour {
            delay: Duration::from_millis(20),
            ..Behaviour::default()
        },
    );
    world.webhook("/shared", &[]).await;
    let a = world.start_worker();
    let b = world.start_worker();
    let n = 40;
    for i in 0..n {
        world.publish_message("appUser", &format!("m{i}")).await;
    }
    let got = world
        .sink
        .wait_for("/shared", n, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = world.sink.received("/shared");
    assert_eq!(got.len(), n);
    assert_eq!(got_all.len(), n, "a job was delivered twice");
    let ids: HashSet<&str> = got_all.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), n);

    a.stop().await;
    b.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_worker_killed_mid_flight_loses_nothing_once_restarted() {
    let world = World::new(Duration::from_millis(100)).await;
    world.sink.behave(
        "/slow",
        Behaviour {
            delay: Duration::from_millis(300),
            ..Behaviour::default()
        },
    );
    world.webhook("/slow", &[]).await;
    // No drain: the worker abandons what it has in hand, as a killed process would.
    let first = world.start_worker_with(webhook_worker::Config {
        drain: Duration::ZERO,
        ..world.config.clone()
    });
    let n = 20;
    let mut want = HashSet::new();
    for i in 0..n {
        let event = world.publish_message("appUser", &format!("m{i}")).await;
        want.insert(event.messages[0].id.to_string());
    }
    world
        .sink
        .wait_for("/slow", 2, Duration::from_secs(5))
        .await;
    first.stop().await;

    let second = world.start_worker();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: HashSet<String> = world
            .sink
            .received("/slow")
            .iter()
            .map(|r| r.json()["messages"][0]["_id"].as_str().unwrap().to_owned())
            .collect();
        if got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing deliveries: {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    second.stop().await;
    world.cleanup().await;
}
