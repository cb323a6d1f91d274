//! The scenarios; each returns its report (a failed ledger is a failure in the report,
//! an error is a scenario that could not run).

mod floor;
mod post_message;
mod push;
mod read_conversation;
mod realtime;
mod webhooks;

use anyhow::bail;

use crate::context::Ctx;
use crate::report::Report;

/// Runs scenario `name`.
pub(super) async fn run(name: &str, ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = match name {
        "floor" => floor::run(ctx).await?,
        "post-message" => post_message::run(ctx).await?,
        "read-conversation" => read_conversation::run(ctx).await?,
        "webhooks" => webhooks::run(ctx).await?,
        "retry-storm" => webhooks::retry_storm(ctx).await?,
        "realtime" => realtime::run(ctx).await?,
        "push" => push::run(ctx).await?,
        other => bail!("unknown scenario {other}"),
    };
    ctx.finish(&mut report);
    Ok(report)
}
