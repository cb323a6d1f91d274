//! `bench`: see the library. `cargo run --release -p bench -- all`.

use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let cli = bench::Cli::parse();
    // The floor's echo server stands for a split role of one runtime thread: tokio's
    // current-thread scheduler, as `smooch` runs such a process.
    let mut runtime = if cli.scenario == bench::Scenario::EchoServer {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(bench::run(cli))
}
