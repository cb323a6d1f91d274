//! One role of the suite as a process of the test crate (`smooch <role>`), chosen by
//! `SMOOCH_TEST_ROLE` and configured from `SMOOCH_*` variables like the real binary, so the
//! fault tests can split the suite into processes, kill one and start it again
//! (`CARGO_BIN_EXE_role_process`).

use anyhow::anyhow;
use smooch::Role;

fn role(name: &str) -> anyhow::Result<Role> {
    Ok(match name {
        "gateway" => Role::Gateway,
        "users" => Role::Users,
        "conversations" => Role::Conversations,
        "media" => Role::Media,
        "webhooks" => Role::Webhooks,
        "webhook-worker" => Role::WebhookWorker,
        "push" => Role::Push,
        other => return Err(anyhow!("SMOOCH_TEST_ROLE={other:?} is not a role")),
    })
}

fn main() -> anyhow::Result<()> {
    let name = std::env::var("SMOOCH_TEST_ROLE")
        .map_err(|_| anyhow!("set SMOOCH_TEST_ROLE to the role to run"))?;
    let role = role(&name)?;
    let settings = smooch::Settings::from_env()?;
    smooch::process::runtime(settings.worker_threads)?.block_on(async {
        let _telemetry = telemetry::init(role.name(), settings.log_format);
        smooch::process::run_role_until_signal(role, settings).await
    })
}
