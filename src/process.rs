//! The life of a `smooch` process: stop on SIGINT or SIGTERM, give in-flight work
//! (HTTP and gRPC requests, webhook deliveries, relay batches) up to the grace period
//! (`SMOOCH_SHUTDOWN_GRACE_MS`) to finish, then exit.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Settings;

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// Runs `work` to its end, or, once `shutdown` is cancelled, for at most `grace` more.
pub async fn until_stopped(
    work: impl Future<Output = anyhow::Result<()>>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = work => {
            if result.is_ok() {
                tracing::info!("stopped");
            }
            result
        }
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight work did not finish within the grace period; exiting");
            Ok(())
        }
    }
}

/// `smooch all` until a signal: starts every role, prints how to use the account key when
/// it was just created, and drains within the grace period on SIGTERM.
pub async fn run_all_until_signal(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let running = crate::start_all(&settings, shutdown.clone()).await?;
    match &running.account_key {
        users::AccountKey::Created { id, secret } => {
            println!(
                "Created the operator's account key. Use it to manage apps (shown once):\n\n  \
                 export SMOOCH_ACCOUNT_KEY_ID={id}\n  export SMOOCH_ACCOUNT_SECRET={secret}\n  \
                 smooch apps create --name my-app\n"
            );
        }
        users::AccountKey::Existing { id } => {
            println!(
                "Account key {id} exists; set SMOOCH_ACCOUNT_KEY_ID and SMOOCH_ACCOUNT_SECRET to use \
                 `smooch apps` (or set your own pair and restart)."
            );
        }
        users::AccountKey::Configured => {}
    }
    println!(
        "smooch is serving the v1 API on http://{}/v1",
        running.http_addr
    );
    until_stopped(running.wait(), &shutdown, settings.shutdown_grace).await
}

/// One role until a signal, draining within the grace period.
pub async fn run_role_until_signal(role: crate::Role, settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    until_stopped(
        crate::run_role(role, &settings, shutdown.clone()),
        &shutdown,
        settings.shutdown_grace,
    )
    .await
}
