//! `postern`: the command line. Parses arguments, runs one command, maps the outcome to an exit
//! status (sysexits-style, so scripts can tell a refusal from a broken configuration):
//!
//! | status | meaning |
//! |---|---|
//! | 0  | done (for `send`: accepted; for `decline` and `rationale`: recorded) |
//! | 1  | an unexpected error (or 404: no such transfer); `log verify`: a break was found |
//! | 2  | the command line is wrong (clap's own status) |
//! | 64 | bad configuration or usage (`check-config` found errors) |
//! | 65 | the envelope or request was invalid (400/408/409/413/415/422); `serve`/`demo`: the transfer log's head is not one the gateway signed (see `postern log accept-head`) |
//! | 66 | `log verify`: the log could not be read |
//! | 69 | the gateway could not be reached, or answered 503 |
//! | 75 | `send --wait`: deliveries still in progress when the wait ran out |
//! | 77 | refused by policy (403; `explain`: would be refused) |

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Postern: a secure gateway for safeguarding information sharing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration directory.
    Serve(cli::serve::ServeArgs),
    /// Run the gateway on loopback with the demo organisations, generating development
    /// certificates and keys on first start.
    Demo(cli::serve::DemoArgs),
    /// Validate the whole configuration; print every error with file and line; exit 64 on error.
    CheckConfig {
        /// Configuration directory (postern.toml and the registry files).
        #[arg(long, env = "POSTERN_CONFIG_DIR", default_value = "/etc/postern")]
        config: PathBuf,
    },
    /// Send a transfer (what a small organisation without its own system uses).
    Send(Box<cli::send::SendArgs>),
    /// Show a transfer's state as its sender sees it.
    Status(cli::send::StatusArgs),
    /// Record a decision not to share: who was considered, and why not (no file is sent).
    Decline(Box<cli::decline::DeclineArgs>),
    /// Add the rationale of an urgent transfer sent without its justification.
    Rationale(cli::decline::RationaleArgs),
    /// Run the real policy decision for a described share without sending anything, and print
    /// every rule checked and why it would be allowed or refused.
    Explain(Box<cli::explain::ExplainArgs>),
    /// What other organisations sent to yours: list, download, acknowledge.
    Inbox {
        #[command(subcommand)]
        command: cli::inbox::InboxCommand,
    },
    /// Read the transfer log.
    Log {
        #[command(subcommand)]
        command: cli::log::LogCommand,
    },
    /// Issue certificates with the project's own CA tooling.
    Pki {
        #[command(subcommand)]
        command: cli::pki::PkiCommand,
    },
    /// Generate and inspect age keys and the subject hashing key.
    Keys {
        #[command(subcommand)]
        command: cli::pki::KeysCommand,
    },
    /// Load generator: submit transfers over concurrent mutual-TLS connections and report
    /// throughput, latency and the server's peak memory (built with the `testkit` feature).
    #[cfg(feature = "testkit")]
    Load(cli::load::LoadArgs),
    /// A server on the same TLS and HTTP stack that answers 202 without doing any work (the
    /// load generator's baseline).
    #[cfg(feature = "testkit")]
    #[command(hide = true)]
    NullServer {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    // Everything the gateway writes (the store, the spool, keys) is for its own user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("postern: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => cli::serve::serve(a).await,
            Command::Demo(a) => cli::serve::demo(a).await,
            Command::CheckConfig { config } => cli::serve::check_config(&config),
            Command::Send(a) => cli::send::send(*a).await,
            Command::Status(a) => cli::send::status(a).await,
            Command::Decline(a) => cli::decline::decline(*a).await,
            Command::Rationale(a) => cli::decline::rationale(a).await,
            Command::Explain(a) => cli::explain::run(*a),
            Command::Inbox { command } => cli::inbox::run(command).await,
            Command::Log { command } => cli::log::run(command),
            Command::Pki { command } => cli::pki::pki(command),
            Command::Keys { command } => cli::pki::keys(command),
            #[cfg(feature = "testkit")]
            Command::Load(a) => cli::load::run(a).await,
            #[cfg(feature = "testkit")]
            Command::NullServer { config } => cli::load::null_server(&config).await,
        }
    });
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`postern log list | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: {e:#}");
            ExitCode::FAILURE
        }
    }
}
