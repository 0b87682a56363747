//! `postern log verify`: checks the transfer log's chain and signed checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[arg(long, env = "POSTERN_STATE_DIR", default_value = "postern-state")]
    pub state_dir: PathBuf,
}

pub fn run(_args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
