//! `postern log ...`: the data protection officer's view of the transfer log (list, show,
//! subject, export, report, verify). Opens the store read only, so it works alongside a running
//! gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides, store::StoreSettings};
use postern_gateway::domain::subject::SubjectRef;
use postern_gateway::log::StoredRecord;
use postern_gateway::store::search::{self, DecisionRow, LogQuery};
use postern_gateway::store::{LogFilter, Reader};

/// Filters shared by `list`, `export` and `report`'s neighbours: each one narrows the result.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filters {
    /// From this time (YYYY-MM-DD or RFC 3339, UTC), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Until this time: a date includes the whole day; an RFC 3339 time is exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Only this transfer (or decision) id.
    #[arg(long)]
    transfer: Option<String>,
    /// Only shares by this organisation.
    #[arg(long)]
    sender: Option<String>,
    /// Only shares to (or decisions considering) this organisation.
    #[arg(long)]
    recipient: Option<String>,
    /// Only data that originated with this organisation.
    #[arg(long)]
    originator: Option<String>,
    /// Only this purpose id.
    #[arg(long)]
    purpose: Option<String>,
    /// Only this UK GDPR Article 6 basis (e.g. public_task).
    #[arg(long)]
    lawful_basis: Option<String>,
    /// Only this marking (normalised, e.g. 'OFFICIAL-SENSITIVE PERSONAL').
    #[arg(long)]
    marking: Option<String>,
    /// Only this decision: shared, refused, rejected (malformed or invalid), declined, or
    /// inbound_refused (a peer gateway's delivery this gateway refused to hold).
    #[arg(long, value_parser = ["shared", "refused", "rejected", "declined", "inbound_refused", "requested", "request_refused"])]
    decision: Option<String>,
    /// Only routine or urgent shares.
    #[arg(long, value_parser = ["routine", "urgent"])]
    urgency: Option<String>,
    /// Only transfers with a recipient in this delivery state.
    #[arg(long, value_parser = ["queued", "delivering", "retrying", "delivered", "dead"])]
    delivery_state: Option<String>,
}

/// Where the log is read (never written).
#[derive(Args)]
pub struct Source {
    /// The gateway's state directory (a single node's SQLite store).
    #[arg(long, env = "POSTERN_STATE_DIR", default_value = "postern-state")]
    state_dir: PathBuf,
    /// Read the store the configuration's `[store]` names instead: PostgreSQL (several
    /// nodes), or SQLite under its `state_dir`.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The log's store, and the subject key the configuration names (if given).
async fn open(source: &Source) -> anyhow::Result<(Reader, Option<PathBuf>)> {
    let Some(dir) = &source.config else {
        return Ok((Reader::open(&source.state_dir)?, None));
    };
    let opts = LoadOptions {
        dir: ConfigDir::Dir(dir.clone()),
        overrides: Overrides::default(),
        env: None,
    };
    let c = config::offline(&opts)
        .map_err(|e| anyhow::anyhow!("the configuration has errors:\n{e}"))?;
    let key = Some(c.daemon.subject_key.clone());
    if let StoreSettings::Postgres(_) = c.daemon.store {
        let target = crate::cli::store::TargetArgs::from_config(dir.clone());
        let Ok(pool) = crate::cli::store::open(&target) else {
            bail!("the database named in the configuration's [store] cannot be used");
        };
        return Ok((Reader::postgres(&pool).await?, key));
    }
    Ok((Reader::open(&c.daemon.state_dir)?, key))
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// List decisions (shared, refused, rejected, declined, inbound_refused), newest first.
    List {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filters: Filters,
        /// At most this many decisions.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show every record about one transfer: the decision, its delivery timeline, its
    /// rationale, and the corrections linked to it.
    Show {
        /// The transfer id (a refusal's or a declined decision's reference works too).
        id: String,
        #[command(flatten)]
        source: Source,
        /// As JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every decision about one person, oldest first, for a subject access request. The
    /// identifier is hashed with the deployment's subject key; it is never stored or printed.
    Subject {
        /// As the DPO knows it: `nhs:9434765919`, `case:ABC123`, ...
        identifier: String,
        #[command(flatten)]
        source: Source,
        /// The subject key file ([subjects] key in postern.toml); default STATE_DIR/keys/subject.key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// As JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write every matching decision record, oldest first, as CSV or JSON lines (streamed).
    Export {
        #[command(flatten)]
        source: Source,
        /// csv (one row per decision, formula-safe) or jsonl (one JSON record per line).
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: String,
        #[command(flatten)]
        filters: Filters,
    },
    /// Counts by purpose, recipient, marking, lawful basis and refusal reason; urgent shares
    /// still waiting for their rationale; deliveries that died; requests for information
    /// overdue and answered late, by the organisation asked, with the median time to answer.
    Report {
        #[command(flatten)]
        source: Source,
        /// From (YYYY-MM-DD or RFC 3339), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Until (a date includes the whole day).
        #[arg(long)]
        to: Option<String>,
        /// An urgent share's rationale is overdue this many hours after the share.
        #[arg(long, default_value_t = 24)]
        rationale_due_hours: u32,
        /// The moment a request counts as overdue at (YYYY-MM-DD, its end, or RFC 3339; now
        /// when not given): e.g. which requests will be overdue by Friday.
        #[arg(long)]
        as_of: Option<String>,
        /// As JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's hash and link, every signed checkpoint (in the database and the
    /// checkpoint file) and every search index; report the first break.
    Verify(crate::cli::log_verify::VerifyArgs),
    /// Accept a log head the gateway did not sign (records added, deleted or rewritten while it
    /// was stopped), so that it starts again: records the acceptance, with the reason, in the
    /// log itself, and signs the new head. Run with the gateway stopped.
    AcceptHead(crate::cli::log_verify::AcceptArgs),
}

/// A `--from`/`--to` value as the stored form (see [`search::time_bound`]).
fn bound(flag: &str, v: &str, end: bool) -> anyhow::Result<String> {
    match search::time_bound(v, end) {
        Some(b) => Ok(b),
        None => bail!("--{flag} `{v}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"),
    }
}

impl Filters {
    fn query(&self) -> anyhow::Result<LogQuery> {
        Ok(LogQuery {
            from: self
                .from
                .as_deref()
                .map(|v| bound("from", v, false))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .map(|v| bound("to", v, true))
                .transpose()?,
            transfer: self.transfer.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            originator: self.originator.clone(),
            purpose: self.purpose.clone(),
            lawful_basis: self.lawful_basis.clone(),
            marking: self
                .marking
                .as_deref()
                .map(|m| m.trim().to_uppercase().replace('_', "-")),
            decision: self.decision.clone(),
            urgency: self.urgency.clone(),
            delivery_state: self.delivery_state.clone(),
            ..LogQuery::default()
        })
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn table(out: &mut impl Write, rows: &[DecisionRow]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>7}  {:<19}  {:<8}  {:<36}  {:<18}  {:<24}  {:<24}  {:<26}  CODE",
        "SEQ", "TIME (UTC)", "DECISION", "TRANSFER", "SENDER", "RECIPIENTS", "PURPOSE", "MARKING",
    )?;
    for r in rows {
        writeln!(
            out,
            "{:>7}  {:<19}  {:<8}  {:<36}  {:<18}  {:<24}  {:<24}  {:<26}  {}{}",
            r.seq,
            r.at.get(..19).unwrap_or(&r.at).replace('T', " "),
            r.decision,
            opt(&r.transfer_id),
            opt(&r.sender),
            if r.recipients.is_empty() {
                "-".to_owned()
            } else {
                r.recipients.join(",")
            },
            opt(&r.purpose),
            opt(&r.marking),
            opt(&r.code),
            if r.rationale_pending {
                "  (urgent: rationale to follow)"
            } else {
                ""
            },
        )?;
    }
    Ok(())
}

/// Streams the export: one row is formatted and written at a time.
fn export(reader: &Reader, q: &LogQuery, format: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout().lock();
    if format == "csv" {
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(stdout));
        w.write_record(search::CSV_HEADER)?;
        // JSONL is data for programs; CSV is opened in spreadsheets, so no cell may be a formula.
        let r = search::for_each_decision(reader.db(), q, |row| {
            w.write_record(
                search::csv_row(&row)
                    .into_iter()
                    .map(search::spreadsheet_safe),
            )
        });
        w.flush()?;
        Ok(r?)
    } else {
        let mut w = std::io::BufWriter::new(stdout);
        let r = search::for_each_decision(reader.db(), q, |row| {
            serde_json::to_writer(&mut w, &row)?;
            w.write_all(b"\n").map_err(serde_json::Error::io)
        });
        w.flush()?;
        Ok(r?)
    }
}

fn show(out: &mut impl Write, reader: &Reader, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut records = reader.records(&LogFilter {
        transfer_id: Some(id.to_owned()),
        ..LogFilter::default()
    })?;
    records.reverse();
    if records.is_empty() {
        eprintln!("No record of transfer {id}.");
        return Ok(ExitCode::from(1));
    }
    let deliveries = reader.deliveries(id)?;
    let corrected_by = search::corrections_of(reader.db(), id)?;
    let corrects = records
        .iter()
        .find_map(|r| field(r, &["envelope", "correction_of"]).and_then(|v| v.as_str()))
        .map(str::to_owned);
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "records": records,
                "deliveries": deliveries,
                "corrects": corrects,
                "corrected_by": corrected_by.accepted,
                "refused_correction_attempts": corrected_by
                    .refused
                    .iter()
                    .map(|(id, decision)| serde_json::json!({"transfer_id": id, "decision": decision}))
                    .collect::<Vec<_>>(),
            }))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in records.iter().filter(|r| r.kind != "delivery_attempt") {
        writeln!(
            out,
            "record {}  {}  {}  hash {}",
            r.seq, r.at, r.kind, r.hash
        )?;
        writeln!(out, "{}", serde_json::to_string_pretty(&r.body)?)?;
    }
    if let Some(x) = &corrects {
        writeln!(out, "corrects: {x}")?;
    }
    for y in &corrected_by.accepted {
        writeln!(out, "corrected by: {y}")?;
    }
    for (y, decision) in &corrected_by.refused {
        writeln!(
            out,
            "a correction was attempted and {decision}, so this record stands as it was: {y}"
        )?;
    }
    let attempts: Vec<&StoredRecord> = records
        .iter()
        .filter(|r| r.kind == "delivery_attempt")
        .collect();
    if !attempts.is_empty() {
        writeln!(out, "delivery timeline:")?;
        for r in attempts {
            writeln!(
                out,
                "  {}  {:<24} {:<6} attempt {:<3} {:<9} {}",
                r.at.get(..19).unwrap_or(&r.at).replace('T', " "),
                text(field(r, &["recipient"])),
                text(field(r, &["channel"])),
                text(field(r, &["attempt"])),
                text(field(r, &["outcome"])),
                match field(r, &["cause"]) {
                    Some(cause) =>
                        format!("[{}] {}", text(Some(cause)), text(field(r, &["detail"]))),
                    None => text(field(r, &["detail"])),
                },
            )?;
        }
    }
    if !deliveries.is_empty() {
        writeln!(out, "deliveries now:")?;
        for d in &deliveries {
            writeln!(
                out,
                "  {:<24} {:<10} {:<6} agreement {}  attempts {}  {}",
                d.recipient,
                d.state,
                d.channel,
                d.agreement,
                d.attempts,
                d.last_error.as_deref().unwrap_or(""),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_counts(
    out: &mut impl Write,
    title: &str,
    m: &std::collections::BTreeMap<String, i64>,
) -> std::io::Result<()> {
    writeln!(out, "{title}:")?;
    if m.is_empty() {
        writeln!(out, "  (none)")?;
    }
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (k, n) in v {
        writeln!(out, "  {n:>8}  {k}")?;
    }
    Ok(())
}

pub async fn run(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        LogCommand::Verify(args) => return crate::cli::log_verify::run(args).await,
        LogCommand::AcceptHead(args) => return crate::cli::log_verify::accept(args),
        other => other,
    };
    let source = match &cmd {
        LogCommand::Verify(_) | LogCommand::AcceptHead(_) => return Ok(ExitCode::SUCCESS),
        LogCommand::List { source, .. }
        | LogCommand::Show { source, .. }
        | LogCommand::Subject { source, .. }
        | LogCommand::Export { source, .. }
        | LogCommand::Report { source, .. } => source,
    };
    let (reader, subject_key) = open(source).await?;
    // The queries block (on PostgreSQL, on the driver): off the async threads.
    tokio::task::spawn_blocking(move || read(cmd, &reader, subject_key)).await?
}

fn read(
    cmd: LogCommand,
    reader: &Reader,
    subject_key: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // Written with `?` rather than println!, so that `postern log list | head` ends quietly.
    let mut out = std::io::stdout().lock();
    match cmd {
        LogCommand::List {
            source: _,
            filters,
            limit,
            json,
        } => {
            let q = LogQuery {
                limit: Some(limit),
                ..filters.query()?
            };
            let rows = search::decisions(reader.db(), &q)?;
            if json {
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                table(&mut out, &rows)?;
                if rows.is_empty() {
                    eprintln!("(no matching decisions)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Show { id, json, .. } => show(&mut out, reader, &id, json),
        LogCommand::Subject {
            identifier,
            source,
            key,
            json,
        } => {
            // The identifier is not echoed in any message: it is personal data.
            let subject = SubjectRef::parse(&identifier)
                .map_err(|e| anyhow::anyhow!("the identifier is not a subject reference: {e}"))?;
            let key_path = key
                .or(subject_key)
                .unwrap_or_else(|| source.state_dir.join("keys").join("subject.key"));
            let key = postern_gateway::config::daemon::read_subject_key(&key_path)
                .map_err(|e| anyhow::anyhow!("subject key: {e}"))?;
            let hashes: Vec<String> = subject
                .search_hashes(&key)
                .iter()
                .map(|h| h.as_str().to_owned())
                .collect();
            let rows = search::about(reader.db(), &hashes, None)?;
            if json {
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                table(&mut out, &rows)?;
                eprintln!(
                    "{} decision(s) about this person. A refusal or a declined decision is listed too: it was recorded, nothing was shared.",
                    rows.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Export {
            format, filters, ..
        } => {
            drop(out);
            let q = LogQuery {
                oldest_first: true,
                ..filters.query()?
            };
            export(reader, &q, &format)?;
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Report {
            source: _,
            from,
            to,
            rationale_due_hours,
            as_of,
            json,
        } => {
            let as_of = match as_of.as_deref() {
                Some(v) => bound("as-of", v, true)?,
                None => postern_gateway::clock::stamp(postern_gateway::clock::now()),
            };
            let from = from
                .as_deref()
                .map(|v| bound("from", v, false))
                .transpose()?;
            let to = to.as_deref().map(|v| bound("to", v, true)).transpose()?;
            let cutoff = postern_gateway::clock::stamp(
                postern_gateway::clock::now()
                    - time::Duration::hours(i64::from(rationale_due_hours)),
            );
            let period = LogQuery {
                from,
                to,
                ..LogQuery::default()
            };
            let r = search::report(reader.db(), &period, &cutoff, None, &as_of)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "Transfer log report, {} to {}",
                r.from.as_deref().unwrap_or("the beginning"),
                r.to.as_deref().unwrap_or("now")
            )?;
            print_counts(&mut out, "decisions", &r.decisions)?;
            print_counts(&mut out, "shared, by purpose", &r.shared_by_purpose)?;
            print_counts(&mut out, "shared, by recipient", &r.shared_by_recipient)?;
            print_counts(&mut out, "shared, by marking", &r.shared_by_marking)?;
            print_counts(
                &mut out,
                "shared, by lawful basis",
                &r.shared_by_lawful_basis,
            )?;
            print_counts(&mut out, "refused, by reason", &r.refused_by_reason)?;
            writeln!(
                out,
                "urgent shares still without their rationale after {rationale_due_hours} h:"
            )?;
            if r.rationale_overdue.is_empty() {
                writeln!(out, "  (none)")?;
            }
            for o in &r.rationale_overdue {
                writeln!(out, "  {}  {}  {}", o.at, o.transfer_id, o.sender)?;
            }
            writeln!(out, "deliveries that died:")?;
            if r.dead_deliveries.is_empty() {
                writeln!(out, "  (none)")?;
            }
            for d in &r.dead_deliveries {
                writeln!(
                    out,
                    "  {}  {:<24} {:<6} after {} attempt(s): {}",
                    d.transfer_id,
                    d.recipient,
                    d.channel,
                    d.attempts,
                    d.reason.as_deref().unwrap_or("-")
                )?;
            }
            print_requests(&mut out, &r.requests, &as_of)?;
            writeln!(
                out,
                "feedback, by recipient (shares / with feedback from the recipient):"
            )?;
            if r.feedback_by_recipient.is_empty() {
                writeln!(out, "  (none)")?;
            }
            for (recipient, f) in &r.feedback_by_recipient {
                writeln!(
                    out,
                    "  {recipient:<24} {:>4} {:>4}  {}%",
                    f.shared,
                    f.with_feedback,
                    f.with_feedback * 100 / f.shared.max(1)
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        // Answered by `run` before a reader is opened.
        LogCommand::Verify(_) | LogCommand::AcceptHead(_) => Ok(ExitCode::SUCCESS),
    }
}

/// The report's requests for information: by the organisation asked, then the lists.
fn print_requests(
    out: &mut impl Write,
    r: &postern_gateway::store::requests::RequestsReport,
    as_of: &str,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "requests for information, by the organisation asked (received / answered / late / overdue at {as_of} / median working days):"
    )?;
    if r.by_holder.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (holder, f) in &r.by_holder {
        writeln!(
            out,
            "  {holder:<24} {:>4} {:>4} {:>4} {:>4}  {}",
            f.received,
            f.answered,
            f.answered_late,
            f.overdue,
            f.median_working_days
                .map_or_else(|| "-".to_owned(), |m| m.to_string())
        )?;
    }
    for (title, lines) in [
        ("requests overdue:", &r.overdue),
        ("requests answered late:", &r.answered_late),
    ] {
        writeln!(out, "{title}")?;
        if lines.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for l in lines {
            writeln!(
                out,
                "  {}  {} asked {} ({}), due {}{}",
                l.request_id,
                l.requester,
                l.holder,
                l.urgency,
                l.due_date,
                l.closed_at
                    .as_deref()
                    .map_or_else(String::new, |c| format!(", answered {c}"))
            )?;
        }
    }
    Ok(())
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
