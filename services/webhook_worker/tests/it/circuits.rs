//! Circuit breakers and the rule that keeps them from losing deliveries: a delivery held
//! back by an open circuit uses up no attempt. It waits on the broker for the circuit's
//! probe, and counts as a failed attempt only once it has waited longer than the retry
//! schedule plus a cool-down.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proto::v1 as pb;

use crate::helpers::{Behaviour, World};

/// The webhook's deliveries once `done` holds for them (or panics after `within`).
async fn wait_for_deliveries(
    world: &World,
    webhook_id: &str,
    within: Duration,
    done: impl Fn(&[pb::Delivery]) -> bool,
) -> Vec<pb::Delivery> {
    let deadline = Instant::now() + within;
    loop {
        let log = world.deliveries(webhook_id).await;
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery log never got there: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_counted_hold(attempt: &pb::DeliveryAttempt) -> bool {
    attempt
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("circuit open"))
}

#[tokio::test]
async fn a_target_back_within_the_hold_limit_gets_every_job_and_none_is_dead_lettered() {
    const JOBS: usize = 8;
    let mut world = World::new(Duration::from_millis(200)).await;
    // Retries after 200, 400 and 800 ms (1.4 s in all); circuits open after 3 failures in
    // a row and probe every 400 ms: a job may be held back 1.8 s before a hold counts.
    world.config.max_retries = 3;
    world.config.circuit_failures = 3;
    world.config.circuit_cool_down = Duration::from_millis(400);
    assert_eq!(world.config.hold_limit(), Duration::from_millis(1_800));
    let parked = world
        .topology
        .parked_queue(world.config.effective_cool_down());
    world.sink.behave(
        "/down",
        Behaviour {
            always_fail: true,
            ..Behaviour::default()
        },
    );
    let hook = world.webhook("/down", &[]).await;
    let worker = world.start_worker();
    for i in 0..JOBS {
        world.publish_message("appUser", &format!("m{i}")).await;
    }

    // The circuit opens and the jobs that come back meanwhile are parked, not attempted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.queue_depth(&parked).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no job was parked: {:?}",
            world.sink.received("/down").len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Down a little longer (the first probe fails too), then back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.sink.behave("/down", Behaviour::default());
    let failures_while_down = world.sink.received("/down").len();

    // Every job arrives; none is dead-lettered, no hold was counted as an attempt.
    let log = wait_for_deliveries(&world, &hook.id, Duration::from_secs(10), |log| {
        log.len() == JOBS && log.iter().all(|d| d.status == "succeeded")
    })
    .await;
    let received = world.sink.received("/down");
    let delivered: HashSet<&str> = received
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(delivered.len(), JOBS, "{received:#?}");
    assert_eq!(world.queue_depth(&world.topology.dead_queue()).await, 0);
    let attempts: Vec<&pb::DeliveryAttempt> = log.iter().flat_map(|d| &d.attempts).collect();
    assert!(
        !attempts.iter().any(|a| is_counted_hold(a)),
        "a held job used up an attempt: {log:#?}"
    );
    for delivery in &log {
        let numbers: Vec<u32> = delivery.attempts.iter().map(|a| a.attempt).collect();
        let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
        assert_eq!(numbers, expected, "{delivery:#?}");
    }
    // Every attempt in the log is a POST the target received, and the other way round.
    assert_eq!(received.len(), attempts.len(), "{log:#?}");
    // Fewer failures than one retry per job: the circuit held most of them back.
    assert!(
        failures_while_down < 2 * JOBS,
        "{failures_while_down} failed POSTs for {JOBS} jobs"
    );

    worker.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn jobs_for_a_target_that_stays_down_are_held_for_the_hold_limit_then_dead_lettered() {
    const JOBS: usize = 6;
    let mut world = World::new(Duration::from_millis(200)).await;
    // Retries after 200 and 400 ms; circuits open after 2 failures and probe every 400 ms:
    // a job may be held back 1 s before a hold counts as a failed attempt.
    world.config.max_retries = 2;
    world.config.circuit_failures = 2;
    world.config.circuit_cool_down = Duration::from_secs(10);
    assert_eq!(
        world.config.effective_cool_down(),
        Duration::from_millis(400),
        "the cool-down is capped by the longest retry wait"
    );
    let hold_limit = world.config.hold_limit();
    assert_eq!(hold_limit, Duration::from_secs(1));
    world.sink.behave(
        "/dead",
        Behaviour {
            always_fail: true,
            ..Behaviour::default()
        },
    );
    let hook = world.webhook("/dead", &[]).await;
    let worker = world.start_worker();
    let published_at = domain::time::now_ms();
    for i in 0..JOBS {
        world.publish_message("appUser", &format!("m{i}")).await;
    }

    let log = wait_for_deliveries(&world, &hook.id, Duration::from_secs(15), |log| {
        log.len() == JOBS
            && log
                .iter()
                .all(|d| d.status == "failed" && d.attempts.len() == 3)
    })
    .await;
    assert_eq!(
        world.queue_depth(&world.topology.dead_queue()).await,
        JOBS as u32
    );
    let attempts: Vec<&pb::DeliveryAttempt> = log.iter().flat_map(|d| &d.attempts).collect();
    let counted: Vec<&&pb::DeliveryAttempt> =
        attempts.iter().filter(|a| is_counted_hold(a)).collect();
    assert!(!counted.is_empty(), "no job was held back: {log:#?}");
    for hold in &counted {
        assert_eq!(hold.status_code, None);
        // A hold counts only after the job waited out the hold limit.
        let waited = hold.attempted_at_ms - published_at;
        assert!(
            waited >= hold_limit.as_millis() as i64,
            "a hold counted after {waited} ms: {hold:#?}"
        );
    }
    let made = attempts
        .iter()
        .filter(|a| a.status_code == Some(500))
        .count();
    assert_eq!(made + counted.len(), attempts.len(), "{log:#?}");
    assert_eq!(
        world.sink.received("/dead").len(),
        made,
        "attempts made = POSTs received"
    );

    worker.stop().await;
    world.cleanup().await;
}
