//! `postern decline` and `postern rationale`: recording, from the command line, a decision not
//! to share (with its reasons), and the rationale of an urgent share sent without one. Both
//! connect like `postern send` (`--server`, `--ca`, `--identity`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use postern_gateway::domain::decision::{RawDecision, RawRationale};
use postern_gateway::domain::envelope::{RawPractitioner, RawRequest};
use postern_gateway::ingest::decisions::{Declined, RationaleRecorded};

use super::send::{Connect, report_problem};
use super::{EX_UNAVAILABLE, exit};

#[derive(Args)]
pub struct DeclineArgs {
    #[command(flatten)]
    connect: Connect,
    /// A JSON decision file. The flags below set or override its fields.
    #[arg(long)]
    decision: Option<PathBuf>,
    /// An organisation sharing with was considered (repeat for several).
    #[arg(long = "to", value_name = "ORG")]
    to: Vec<String>,
    /// The purpose id the share would have had, e.g. child-protection-s47.
    #[arg(long)]
    purpose: Option<String>,
    /// Why sharing was decided against.
    #[arg(long)]
    reasons: Option<String>,
    /// The name of the practitioner who decided.
    #[arg(long)]
    practitioner_name: Option<String>,
    /// Their role.
    #[arg(long)]
    practitioner_role: Option<String>,
    /// How they can be reached.
    #[arg(long)]
    practitioner_contact: Option<String>,
    /// The reference of the request this decision answers.
    #[arg(long)]
    request_ref: Option<String>,
    /// What the request asked for.
    #[arg(long)]
    requested: Option<String>,
    /// A reference to the person this is about, e.g. nhs:9434765919 (repeat for several).
    #[arg(long = "subject", value_name = "SCHEME:VALUE")]
    subjects: Vec<String>,
    /// personal, special_category or criminal_offence (repeat for several).
    #[arg(long = "data-category", value_name = "CATEGORY")]
    data_categories: Vec<String>,
    /// Makes a retry safe: the same key returns the first answer and records nothing new.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

fn set<T>(slot: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *slot = v;
    }
}

fn practitioner(
    slot: &mut Option<RawPractitioner>,
    name: &Option<String>,
    role: &Option<String>,
    contact: &Option<String>,
) {
    if name.is_some() || role.is_some() || contact.is_some() {
        let p = slot.get_or_insert_with(RawPractitioner::default);
        set(&mut p.name, name.clone());
        set(&mut p.role, role.clone());
        set(&mut p.contact, contact.clone());
    }
}

impl DeclineArgs {
    fn body(&self) -> anyhow::Result<RawDecision> {
        let mut d: RawDecision = match &self.decision {
            Some(p) => {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a valid decision file", p.display()))?
            }
            None => RawDecision::default(),
        };
        if !self.to.is_empty() {
            d.recipients = Some(self.to.clone());
        }
        if !self.subjects.is_empty() {
            d.subject_refs = Some(self.subjects.clone());
        }
        if !self.data_categories.is_empty() {
            d.data_categories = Some(self.data_categories.clone());
        }
        set(&mut d.purpose, self.purpose.clone());
        set(&mut d.reasons, self.reasons.clone());
        practitioner(
            &mut d.practitioner,
            &self.practitioner_name,
            &self.practitioner_role,
            &self.practitioner_contact,
        );
        if self.request_ref.is_some() || self.requested.is_some() {
            let r = d.request.get_or_insert_with(RawRequest::default);
            set(&mut r.reference, self.request_ref.clone());
            set(&mut r.requested, self.requested.clone());
        }
        Ok(d)
    }
}

pub async fn decline(a: DeclineArgs) -> anyhow::Result<ExitCode> {
    let body = Bytes::from(serde_json::to_vec(&a.body()?)?);
    let mut conn = match a.connect.open().await? {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    let answer = match conn
        .post_json("/v1/decisions", body, a.idempotency_key.as_deref())
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!(
                "postern: the decision was not confirmed: {e}. It is safe to retry with the same --idempotency-key."
            );
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    if answer.status != 201 {
        return Ok(report_problem(&answer.body, answer.status, a.json));
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&answer.body));
    } else {
        let d: Declined = answer.json()?;
        println!("{}", d.decision_id);
        eprintln!(
            "Recorded the decision not to share with {}",
            d.recipients.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RationaleArgs {
    #[command(flatten)]
    connect: Connect,
    /// The urgent transfer's id (what `postern send` printed).
    id: String,
    /// Why the share was necessary, and why the public interest outweighed confidentiality.
    #[arg(long)]
    justification: String,
    /// Who writes the rationale, if not the practitioner who shared (give all three).
    #[arg(long)]
    practitioner_name: Option<String>,
    /// Their role.
    #[arg(long)]
    practitioner_role: Option<String>,
    /// How they can be reached.
    #[arg(long)]
    practitioner_contact: Option<String>,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

pub async fn rationale(a: RationaleArgs) -> anyhow::Result<ExitCode> {
    let mut raw = RawRationale {
        justification: Some(a.justification.clone()),
        practitioner: None,
    };
    practitioner(
        &mut raw.practitioner,
        &a.practitioner_name,
        &a.practitioner_role,
        &a.practitioner_contact,
    );
    // The id goes into the path: anything but a UUID's characters would change the request.
    if a.id.is_empty() || !a.id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        eprintln!("postern: `{}` is not a transfer id", a.id);
        return Ok(exit(super::EX_USAGE));
    }
    let body = Bytes::from(serde_json::to_vec(&raw)?);
    let mut conn = match a.connect.open().await? {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    let answer = match conn
        .post_json(&format!("/v1/transfers/{}/rationale", a.id), body, None)
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!(
                "postern: the rationale was not confirmed: {e}. Retry; if it was recorded after all, the retry is answered rationale_already_recorded."
            );
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    if answer.status != 200 {
        return Ok(report_problem(&answer.body, answer.status, a.json));
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&answer.body));
    } else {
        let r: RationaleRecorded = answer.json()?;
        println!("{}", r.transfer_id);
        eprintln!("Rationale recorded at {}", r.recorded_at);
    }
    Ok(ExitCode::SUCCESS)
}
