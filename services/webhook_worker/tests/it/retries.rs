//! Retries held by the broker: exact attempt counts, growing gaps, dead letters, and an
//! operator's retry of a failed delivery.

use std::time::Duration;

use proto::v1 as pb;
use webhook_worker::job;

use crate::helpers::{Behaviour, Received, World};

fn gaps(got: &[Received]) -> Vec<Duration> {
    got.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn target_failing_three_times_gets_exactly_four_attempts_with_growing_gaps() {
    // Each level's wait is its TTL less up to a fifth of jitter, plus whatever a loaded
    // machine adds (CI saw a first retry 100 ms late). A 300 ms base keeps each level's
    // shortest wait (240, 480, 960 ms) 180 ms or more above the one before's longest.
    let base = Duration::from_millis(300);
    let world = World::new(base).await;
    world.sink.behave(
        "/flaky",
        Behaviour {
            fail_first: 3,
            ..Behaviour::default()
        },
    );
    let hook = world.webhook("/flaky", &[]).await;
    let worker = world.start_worker();
    let event = world.publish_message("appUser", "hi").await;

    let got = world
        .sink
        .wait_for("/flaky", 4, Duration::from_secs(8))
        .await;
    assert_eq!(got.len(), 4);
    // No fifth attempt after the success.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.sink.received("/flaky").len(), 4);

    let id = job::delivery_id(&event.id, &hook.id);
    assert!(
        got.iter().all(|r| r.header("webhook-id") == id),
        "one stable id"
    );
    let gaps = gaps(&got);
    // Each wait is at least the level's TTL less a fifth: 300, 600, 1,200 ms.
    for (i, gap) in gaps.iter().enumerate() {
        let ttl = base * (1 << i);
        assert!(
            *gap >= ttl.mul_f64(0.75),
            "gap {i} {gap:?} shorter than {ttl:?}"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "gaps grow: {gaps:?}"
    );

    let log = world.wait_for_log(&hook.id, &id, "succeeded", 4).await;
    let outcomes: Vec<&str> = log.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retrying", "retrying", "retrying", "succeeded"]);
    assert_eq!(log.attempts[0].status_code, Some(500));
    assert_eq!(
        log.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    worker.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn always_failing_target_gets_six_attempts_then_is_dead_lettered_and_retryable() {
    let world = World::new(Duration::from_millis(50)).await;
    world.sink.behave(
        "/down",
        Behaviour {
            always_fail: true,
            ..Behaviour::default()
        },
    );
    let hook = world.webhook("/down", &[]).await;
    let worker = world.start_worker();
    let event = world.publish_message("appUser", "hi").await;
    let id = job::delivery_id(&event.id, &hook.id);

    // 1 attempt + 5 retries after 50, 100, 200, 400, 800 ms.
    let got = world
        .sink
        .wait_for("/down", 6, Duration::from_secs(8))
        .await;
    assert_eq!(got.len(), 6);
    let log = world.wait_for_log(&hook.id, &id, "failed", 6).await;
    assert_eq!(log.attempts[5].outcome, "failed");
    assert_eq!(
        log.attempts[5].error.as_deref(),
        Some("target answered 500")
    );
    // The dead letter lands after the log says failed: wait for it (5 s at most).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut dead = world.queue_depth(&world.topology.dead_queue()).await;
    while dead == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        dead = world.queue_depth(&world.topology.dead_queue()).await;
    }
    assert_eq!(dead, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.sink.received("/down").len(), 6, "no seventh attempt");

    // The target recovers; an operator retries the failed delivery.
    world.sink.behave("/down", Behaviour::default());
    let retried = world
        .webhooks
        .clone()
        .retry_delivery(pb::RetryDeliveryRequest {
            app_id: world.app_id.clone(),
            webhook_id: hook.id.clone(),
            delivery_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.status, "pending");
    let got = world
        .sink
        .wait_for("/down", 7, Duration::from_secs(5))
        .await;
    assert_eq!(got.len(), 7);
    assert_eq!(got[6].header("webhook-id"), id);
    world.wait_for_log(&hook.id, &id, "succeeded", 7).await;

    // Only failed deliveries can be retried.
    let again = world
        .webhooks
        .clone()
        .retry_delivery(pb::RetryDeliveryRequest {
            app_id: world.app_id.clone(),
            webhook_id: hook.id.clone(),
            delivery_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);

    worker.stop().await;
    world.cleanup().await;
}
