//! `postern load`: the load generator (see docs/benchmarks.md).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct LoadArgs {}

pub async fn run(_a: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}

pub async fn null_server(_state_dir: &Path, _listen: SocketAddr) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
