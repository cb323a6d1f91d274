//! `bench`: see the library. `cargo run --release -p bench -- all`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::run(bench::Cli::parse()).await
}
