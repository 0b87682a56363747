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
//! | 69 | the gateway could not be reached, or answered 503; `demo`: a port it needs is in use |
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
        /// After a clean check, send SIGHUP to this process (the running gateway: `$MAINPID` in
        /// the unit's ExecReload=), so that a reload needs no `kill` binary. Nothing is sent
        /// when the check finds an error.
        #[arg(long, value_name = "PID")]
        reload: Option<i32>,
    },
    /// Send a transfer (what a small organisation without its own system uses).
    Send(Box<cli::send::SendArgs>),
    /// Show a transfer's state as its sender sees it.
    Status(cli::send::StatusArgs),
    /// Record a decision not to share: who was considered, and why not (no file is sent).
    Decline(Box<cli::decline::DeclineArgs>),
    /// Add the rationale of an urgent transfer sent without its justification.
    Rationale(cli::decline::RationaleArgs),
    /// Tell the sender of a transfer your organisation received what became of it.
    Feedback(Box<cli::decline::FeedbackArgs>),
    /// Ask another organisation for information in writing (`postern request --to ORG ...`),
    /// or follow requests: `list`, `show`, `withdraw`.
    Request(Box<cli::request::RequestArgs>),
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
    /// The PostgreSQL store of several nodes: `migrate`, `status`, `copy` a single node into it.
    Store {
        #[command(subcommand)]
        command: cli::store::StoreCommand,
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
        /// The configuration directory whose TLS settings it serves with.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Limits glibc's malloc to one arena. By default it gives threads up to eight arenas per core,
/// and an upload runs on several threads (network, sealing, spool IO), so memory freed by one
/// upload's threads sits in arenas others do not reuse: measured with 1 MiB uploads at 16 in
/// flight, the gateway's peak RSS went from 65 to 48 MiB with two arenas, and each upload's
/// share fell by another tenth with one, at no measurable cost in throughput (the small
/// allocations that dominate are served from per-thread caches without the arena's lock;
/// docs/benchmarks.md).
///
/// glibc reads `MALLOC_ARENA_MAX` when the process starts, so the binary runs itself again with
/// it set, first thing in `main` (the same process: `exec` keeps the pid, the arguments and
/// any inherited socket). That needs no unsafe code, where `mallopt` would. An operator's own
/// `MALLOC_ARENA_MAX` (or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) is left to rule, and
/// if the binary cannot be run again, it goes on with glibc's default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const AGAIN: &str = "POSTERN_MALLOC_ARENAS_SET";
    let tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc.arena_max"));
    if tuned || std::env::var_os("MALLOC_ARENA_MAX").is_some() || std::env::var_os(AGAIN).is_some()
    {
        return;
    }
    let mut args = std::env::args_os();
    let Some(arg0) = args.next() else { return };
    // Run through a loader (`ld-linux.so postern ...`), /proc/self/exe is the loader, not this
    // program: running it again would lose the program. Only when both name the same file.
    let same = std::env::current_exe().is_ok_and(|exe| {
        exe.file_name()
            .zip(std::path::Path::new(&arg0).file_name())
            .is_some_and(|(a, b)| a == b)
    });
    if !same {
        return;
    }
    // /proc/self/exe, not the path: it is this very file even if an upgrade has replaced the
    // one at the path since. The marker makes a second run impossible by construction.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("MALLOC_ARENA_MAX", "1")
        .env(AGAIN, "1")
        // Returns only if the exec failed.
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
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
            Command::CheckConfig { config, reload } => cli::serve::check_config(&config, reload),
            Command::Send(a) => cli::send::send(*a).await,
            Command::Status(a) => cli::send::status(a).await,
            Command::Decline(a) => cli::decline::decline(*a).await,
            Command::Request(a) => cli::request::run(*a).await,
            Command::Feedback(a) => cli::decline::feedback(*a).await,
            Command::Rationale(a) => cli::decline::rationale(a).await,
            Command::Explain(a) => cli::explain::run(*a),
            Command::Inbox { command } => cli::inbox::run(command).await,
            Command::Log { command } => cli::log::run(command).await,
            Command::Store { command } => cli::store::run(command).await,
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
            // Each cause once: many library errors repeat their source in their own message
            // ("Address already in use (os error 98): Address already in use (os error 98)").
            eprintln!(
                "postern: {}",
                postern_gateway::deliver::sentence(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// A cause that repeats its own source is said once.
    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on 127.0.0.1:9464: {0}")]
        struct Bind(#[source] std::io::Error);
        let e = anyhow::Error::new(Bind(io)).context("starting the demo");
        assert_eq!(
            postern_gateway::deliver::sentence(e.as_ref()),
            "starting the demo: cannot listen on 127.0.0.1:9464: address in use"
        );
    }

    /// Every option, argument and subcommand of every command says what it is for in `--help`.
    #[test]
    fn every_option_and_command_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(here.clone());
                }
                walk(sub, &here, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "postern", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
