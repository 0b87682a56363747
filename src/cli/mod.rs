//! The commands behind `postern`'s subcommands. Part of the binary's edge (like `main.rs`),
//! so errors here are `anyhow` and end as a message and an exit status.

pub mod decline;
pub mod explain;
pub mod inbox;
#[cfg(feature = "testkit")]
pub mod load;
pub mod log;
pub mod log_verify;
pub mod pki;
pub mod request;
pub mod send;
pub mod serve;
pub mod store;

use std::process::ExitCode;

/// Exit statuses (see `main.rs`).
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;

pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Operational logs go to stderr (see `postern_gateway::runtime::logging`: JSON when not on a terminal,
/// `POSTERN_LOG` sets the filter). They carry transfer ids, organisation ids, codes and sizes,
/// never payloads, justification text or subject references.
pub fn init_tracing() {
    postern_gateway::runtime::logging::init();
}
