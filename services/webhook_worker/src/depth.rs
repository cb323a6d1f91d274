//! Reports the depth of the worker's queues (events, deliveries, retry levels, dead letters)
//! as the `webhook_queue_depth{queue}` gauge, read with passive declares every few seconds
//! on a connection of its own.

use std::time::Duration;

use bus::lapin::options::QueueDeclareOptions;
use bus::lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

/// How often the depths are read.
const EVERY: Duration = Duration::from_secs(10);

/// Reads and reports the depths of `queues` until `shutdown`; reconnects after failures.
pub(crate) async fn report(amqp_url: String, queues: Vec<String>, shutdown: CancellationToken) {
    let mut connection: Option<bus::lapin::Connection> = None;
    loop {
        // Wait first: at start the consumers are still declaring the queues, and a passive
        // declare of a missing queue makes the broker close the channel (logged as an error).
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
        if connection.as_ref().is_none_or(|c| !c.status().connected()) {
            connection = bus::connect(&amqp_url, "webhook-worker queue depths")
                .await
                .ok();
        }
        if let Some(conn) = &connection {
            if let Ok(channel) = conn.create_channel().await {
                for queue in &queues {
                    let passive = QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    };
                    // A queue not declared yet has no depth to report; the channel closes on
                    // that error, so stop this round.
                    match channel
                        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                        .await
                    {
                        Ok(q) => metrics::gauge!("webhook_queue_depth", "queue" => queue.clone())
                            .set(f64::from(q.message_count())),
                        Err(_) => break,
                    }
                }
                let _ = channel.close(200, "depths read".into()).await;
            }
        }
    }
    if let Some(conn) = connection {
        let _ = conn.close(200, "worker stopping".into()).await;
    }
}
