//! `postern log list` and `postern log show`: reading the transfer log. Opens the store read
//! only, so it works alongside a running gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use clap::Subcommand;
use postern_gateway::store::{LogFilter, Reader};
use postern_gateway::transfer_log::StoredRecord;

#[derive(Subcommand)]
pub enum LogCommand {
    /// List records, newest first.
    List {
        #[arg(long, env = "POSTERN_STATE_DIR", default_value = "postern-state")]
        state_dir: PathBuf,
        /// Only records about this transfer.
        #[arg(long)]
        transfer: Option<String>,
        /// Only records of this sending organisation.
        #[arg(long)]
        sender: Option<String>,
        /// Only records of this kind: transfer_accepted, transfer_refused, transfer_rejected.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's hash and link, and every signed checkpoint; report the first break.
    Verify(crate::cli::log_verify::VerifyArgs),
    /// Show every record about one transfer, and its deliveries.
    Show {
        /// The transfer id (a refusal's reference works too).
        id: String,
        #[arg(long, env = "POSTERN_STATE_DIR", default_value = "postern-state")]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn field<'a>(r: &'a StoredRecord, path: &[&str]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(&r.body, |v, k| v.get(k))
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

pub fn run(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    // Written with `?` rather than println!, so that `postern log list | head` ends quietly.
    let mut out = std::io::stdout().lock();
    match cmd {
        LogCommand::List {
            state_dir,
            transfer,
            sender,
            kind,
            limit,
            json,
        } => {
            let reader = Reader::open(&state_dir)?;
            let records = reader.records(&LogFilter {
                transfer_id: transfer,
                sender,
                kind,
                limit: Some(limit),
            })?;
            if json {
                for r in &records {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "{:>6}  {:<20}  {:<18}  {:<36}  {:<18}  {:<24}  {:<22}  OUTCOME",
                "SEQ", "TIME (UTC)", "KIND", "TRANSFER", "SENDER", "RECIPIENTS", "PURPOSE",
            )?;
            for r in &records {
                let outcome = match (&r.code, text(field(r, &["decision", "outcome"])).as_str()) {
                    (Some(code), o) => format!("{o}: {code}"),
                    (None, o) => o.to_owned(),
                };
                writeln!(
                    out,
                    "{:>6}  {:<20}  {:<18}  {:<36}  {:<18}  {:<24}  {:<22}  {}",
                    r.seq,
                    r.at.get(..19).unwrap_or(&r.at).replace('T', " "),
                    r.kind,
                    r.transfer_id.as_deref().unwrap_or("-"),
                    r.sender.as_deref().unwrap_or("-"),
                    text(field(r, &["envelope", "recipients"])),
                    text(field(r, &["envelope", "purpose"])),
                    outcome
                )?;
            }
            if records.is_empty() {
                eprintln!("(no records)");
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Verify(args) => crate::cli::log_verify::run(args),
        LogCommand::Show {
            id,
            state_dir,
            json,
        } => {
            let reader = Reader::open(&state_dir)?;
            let mut records = reader.records(&LogFilter {
                transfer_id: Some(id.clone()),
                ..LogFilter::default()
            })?;
            records.reverse();
            if records.is_empty() {
                eprintln!("No record of transfer {id}.");
                return Ok(ExitCode::from(1));
            }
            let deliveries = reader.deliveries(&id)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"records": records, "deliveries": deliveries})
                    )?
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            for r in &records {
                writeln!(
                    out,
                    "record {}  {}  {}  hash {}",
                    r.seq, r.at, r.kind, r.hash
                )?;
                writeln!(out, "{}", serde_json::to_string_pretty(&r.body)?)?;
            }
            if !deliveries.is_empty() {
                writeln!(out, "deliveries:")?;
                for d in &deliveries {
                    writeln!(
                        out,
                        "  {:<24} {:<12} agreement {}  attempts {}  updated {}",
                        d.recipient, d.state, d.agreement, d.attempts, d.updated_at
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
