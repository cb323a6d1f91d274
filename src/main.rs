//! `smooch`: runs any role of the suite, or all of them in one process, migrates the
//! database, and administers apps.

use anyhow::{anyhow, Context as _};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret as _;
use smooch::{admin::Admin, process, Role, Settings};

// Small, short-lived allocations dominate the request path (malloc was 16-24% of CPU in
// profiles with the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A self-hostable, multi-tenant Smooch REST API v1. Configuration comes from `SMOOCH_*`
/// environment variables (see the README).
#[derive(Debug, Parser)]
#[command(name = "smooch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in one process (the local default).
    All,
    /// Run the HTTP gateway.
    Gateway,
    /// Run the users service (gRPC).
    Users,
    /// Run the conversations service (gRPC).
    Conversations,
    /// Run the media service (gRPC).
    Media,
    /// Run the webhooks service (gRPC).
    Webhooks,
    /// Run the webhook worker: delivers message events to webhooks.
    WebhookWorker,
    /// Run the push worker: app-maker messages to users' phones through APNs and FCM.
    Push,
    /// Create the database if needed and apply every migration.
    Migrate,
    /// Print the effective configuration (defaults, then `SMOOCH_*` variables) as JSON,
    /// secrets and URL passwords hidden; exits non-zero naming any malformed variable.
    Config {
        /// Print only the names of the variables read, one per line.
        #[arg(long)]
        variables: bool,
    },
    /// Manage apps through the HTTP API (needs the account key in the environment).
    Apps {
        /// Base URL of the suite; defaults to SMOOCH_PUBLIC_URL or http://SMOOCH_HTTP_ADDR.
        #[arg(long, global = true)]
        url: Option<String>,
        #[command(subcommand)]
        command: AppsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app and print it, with its app token.
    Create {
        /// The app's name.
        #[arg(long)]
        name: String,
    },
    /// List the apps.
    List,
    /// Manage an app's secret keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a secret key for an app and print it (its `_id` is the JWT `kid`).
    Create {
        /// The app's `_id`.
        app_id: String,
        /// The key's name.
        #[arg(long, default_value = "default")]
        name: String,
    },
}

async fn run_admin(
    settings: &Settings,
    url: Option<String>,
    command: AppsCommand,
) -> anyhow::Result<()> {
    let (key_id, secret) = settings.account_key().ok_or_else(|| {
        anyhow!("set SMOOCH_ACCOUNT_KEY_ID and SMOOCH_ACCOUNT_SECRET (printed by the first `smooch all`)")
    })?;
    let base = url.unwrap_or_else(|| settings.public_url());
    let admin = Admin::new(&base, key_id, secret.expose_secret())?;
    let answer = match command {
        AppsCommand::Create { name } => admin.create_app(&name).await?,
        AppsCommand::List => admin.list_apps().await?,
        AppsCommand::Keys {
            command: KeysCommand::Create { app_id, name },
        } => admin.create_key(&app_id, &name).await?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&answer).context("printing the answer")?
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    process::without_transparent_huge_pages();
    let cli = Cli::parse();
    if let Command::Config { variables: true } = cli.command {
        println!("{}", Settings::variables()?.join("\n"));
        return Ok(());
    }
    let settings = Settings::from_env()?;
    process::runtime(settings.worker_threads)
        .context("starting the async runtime")?
        .block_on(run(cli, settings))
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let role = match &cli.command {
        Command::All => "all",
        Command::Gateway => "gateway",
        Command::Users => "users",
        Command::Conversations => "conversations",
        Command::Media => "media",
        Command::Webhooks => "webhooks",
        Command::WebhookWorker => "webhook-worker",
        Command::Push => "push",
        Command::Migrate => "migrate",
        Command::Apps { .. } => "admin",
        Command::Config { .. } => "config",
    };
    if let Command::Apps { url, command } = cli.command {
        return run_admin(&settings, url, command).await;
    }
    if let Command::Config { .. } = cli.command {
        println!("{}", settings.to_redacted_json()?);
        return Ok(());
    }
    // Flushes buffered spans when main returns.
    let _telemetry = telemetry::init(role, settings.log_format);
    let single = |role: Role| process::run_role_until_signal(role, settings.clone());
    match cli.command {
        Command::All => process::run_all_until_signal(settings.clone()).await,
        Command::Gateway => single(Role::Gateway).await,
        Command::Users => single(Role::Users).await,
        Command::Conversations => single(Role::Conversations).await,
        Command::Media => single(Role::Media).await,
        Command::Webhooks => single(Role::Webhooks).await,
        Command::WebhookWorker => single(Role::WebhookWorker).await,
        Command::Push => single(Role::Push).await,
        Command::Migrate => {
            smooch::migrate(&settings).await?;
            // Stores the configured account key, so a split deployment (where no process runs
            // `smooch all`) can use it.
            if settings.account_key().is_some() {
                smooch::ensure_account_key(&settings).await?;
            }
            println!("migrations applied");
            Ok(())
        }
        Command::Apps { .. } | Command::Config { .. } => Ok(()),
    }
}
