//! The `herald` binary: parse the command line, load the configuration, run.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = herald::cli::Cli::parse();
    herald::cli::run(cli).await
}
