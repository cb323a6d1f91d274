//! `smooch all` as a process of the test crate, configured from `SMOOCH_*` variables like
//! the real binary, so tests can signal and restart it (`CARGO_BIN_EXE_suite_process`).

fn main() -> anyhow::Result<()> {
    let settings = smooch::Settings::from_env()?;
    smooch::process::runtime(settings.worker_threads)?.block_on(async {
        let _telemetry = telemetry::init("all", settings.log_format);
        smooch::process::run_all_until_signal(settings).await
    })
}
