//! The change feed of webhooks: every committed change to an app's webhooks (announced by
//! a trigger on the table, whichever replica made it) is broadcast to this replica's
//! watchers, so that the workers drop their cached copy before the next message.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The channel the `webhooks_changed` trigger notifies, with the app id as payload.
const CHANNEL: &str = "smooch_webhooks_changed";

/// What a watcher receives: an app id, or `""` for "any app's webhooks may have changed"
/// (announcements were missed while the database connection was down).
#[derive(Debug, Clone)]
pub(crate) struct Changes(broadcast::Sender<String>);

impl Changes {
    /// Listens for announcements on `pool`'s database, as a task on `tasks`.
    pub(crate) fn spawn(pool: PgPool, tasks: &tasks::Tasks) -> Self {
        let (sender, _) = broadcast::channel(4096);
        tasks.spawn(
            "webhook change feed",
            listen(pool, sender.clone(), tasks.shutdown().clone()),
        );
        Changes(sender)
    }

    /// A receiver of the changes from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

async fn listen(pool: PgPool, sender: broadcast::Sender<String>, shutdown: CancellationToken) {
    let mut wait = Duration::from_millis(200);
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    wait = Duration::from_millis(200);
                    // Whatever changed before this point was not heard: start afresh.
                    let _ = sender.send(String::new());
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = listener.try_recv() => match next {
                                Ok(Some(note)) => {
                                    let _ = sender.send(note.payload().to_owned());
                                }
                                // The connection dropped; the next call reconnects, and
                                // what was announced meanwhile is lost.
                                Ok(None) => {
                                    let _ = sender.send(String::new());
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "webhook change feed lost its listener");
                                    let _ = sender.send(String::new());
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "listening for webhook changes failed"),
            },
            Err(err) => tracing::warn!(error = %err, "connecting the webhook change feed failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
