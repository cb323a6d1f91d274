//! The life of a `smooch` process: stop on SIGINT or SIGTERM, give in-flight work
//! (HTTP and gRPC requests, webhook deliveries, relay batches) up to the grace period
//! (`SMOOCH_SHUTDOWN_GRACE_MS`) to finish, then exit.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Settings;

/// The async runtime of a process with `threads` runtime threads (`SMOOCH_WORKER_THREADS`;
/// `None`: one per CPU the process may use).
///
/// A process of one thread gets tokio's current-thread scheduler: that thread runs every
/// task and polls the sockets itself, without the queues and wake-ups the multi-thread
/// scheduler keeps between its workers and the thread waiting in `block_on`. Split roles
/// with one thread each spent 5-8 % less CPU per message with it (`docs/performance.md`,
/// session 21).
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let one = match threads {
        Some(threads) => threads == 1,
        None => std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1),
    };
    let mut builder = if one {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = threads {
            builder.worker_threads(threads);
        }
        builder
    };
    builder.enable_all().build()
}

/// Keeps the process's memory in regular 4 KiB pages: no transparent huge pages.
///
/// mimalloc asks the kernel for huge pages on the regions it maps (`MADV_HUGEPAGE`), so
/// where the machine's THP setting is `madvise` (Debian's and most distributions') or
/// `always`, the first touch of each new 2 MiB region makes the kernel zero all of it at
/// once, in the faulting thread. When load rises, the heap grows and the runtime's threads
/// spend that time zeroing while requests wait: in `smooch all` it was a third of the
/// suite's CPU in the first 200 ms of a step from nothing to 1,500 posts/s, and the step's
/// admission control shed 70-100 posts there. Without huge pages the same start shed none,
/// peak RSS was 20-30 % lower, and CPU per message was the same (`docs/performance.md`,
/// session 31). The flag covers every thread of the process and its children; it is set
/// before any thread starts. A kernel that refuses it changes nothing but the log.
pub fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("smooch: cannot turn transparent huge pages off ({error}); continuing with them");
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn signalled() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs `work` to its end. A SIGINT or SIGTERM cancels `shutdown`; once it is cancelled
/// (by a signal, or by `work` after a failure), `work` has at most `grace` more.
///
/// The signals are awaited here, beside `work`, rather than in a spawned task: nothing
/// outlives the call.
pub async fn until_stopped(
    work: impl Future<Output = anyhow::Result<()>>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let deadline = async {
        tokio::select! {
            () = signalled() => {
                tracing::info!("shutting down");
                shutdown.cancel();
            }
            () = shutdown.cancelled() => {}
        }
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
    // Starting is part of the work: a signal while migrating stops the start-up too.
    let work = async {
        let running = crate::start_all(&settings, shutdown.clone()).await?;
        announce(&running);
        running.wait().await
    };
    until_stopped(work, &shutdown, settings.shutdown_grace).await
}

/// Prints how to use the account key when it was just created, and where the API is.
fn announce(running: &crate::Running) {
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
}

/// One role until a signal, draining within the grace period.
pub async fn run_role_until_signal(role: crate::Role, settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    until_stopped(
        crate::run_role(role, &settings, shutdown.clone()),
        &shutdown,
        settings.shutdown_grace,
    )
    .await
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    /// Runs a spawned task, a blocking task and a timer on `runtime`, and answers its
    /// flavor and worker count.
    fn exercise(runtime: tokio::runtime::Runtime) -> (RuntimeFlavor, usize) {
        let done = runtime.block_on(async {
            let spawned = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                1
            });
            let blocking = tokio::task::spawn_blocking(|| 2);
            spawned.await.expect("spawned task") + blocking.await.expect("blocking task")
        });
        assert_eq!(done, 3);
        let handle = runtime.handle();
        (handle.runtime_flavor(), handle.metrics().num_workers())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_keeps_its_memory_out_of_transparent_huge_pages() {
        without_transparent_huge_pages();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("prctl"));
    }

    #[test]
    fn one_thread_runs_the_current_thread_scheduler() {
        let runtime = runtime(Some(1)).expect("runtime");
        assert_eq!(exercise(runtime), (RuntimeFlavor::CurrentThread, 1));
    }

    #[test]
    fn more_threads_run_the_multi_thread_scheduler_with_that_many_workers() {
        let runtime = runtime(Some(3)).expect("runtime");
        assert_eq!(exercise(runtime), (RuntimeFlavor::MultiThread, 3));
    }

    #[test]
    fn unset_threads_follow_the_cpus_the_process_may_use() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let flavor = if cpus == 1 {
            RuntimeFlavor::CurrentThread
        } else {
            RuntimeFlavor::MultiThread
        };
        assert_eq!(exercise(runtime(None).expect("runtime")), (flavor, cpus));
    }
}
