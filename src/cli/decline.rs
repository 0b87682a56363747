//! `postern decline`, `postern rationale` and `postern feedback`: recording, from the command
//! line, a decision not to share (with its reasons), the rationale of an urgent share sent
//! without one, and a recipient's feedback on a transfer. They connect like `postern send`
//! (`--server`, `--ca`, `--identity`).

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Args;
use postern_gateway::domain::decision::{RawDecision, RawRationale};
use postern_gateway::domain::feedback::RawFeedback;
use postern_gateway::ingest::decisions::{Declined, RationaleRecorded};
use postern_gateway::ingest::feedback::FeedbackRecorded;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::send::{
    Connect, answers, body_file, practitioner, report_problem, request, set, set_list,
};
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
    /// The id of a request for information made through the gateway that this decision
    /// declines (the requester must be among `--to`).
    #[arg(long, value_name = "REQUEST_ID")]
    answers: Option<String>,
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

impl DeclineArgs {
    fn body(&self) -> anyhow::Result<RawDecision> {
        let mut d: RawDecision = body_file(self.decision.as_deref(), "decision")?;
        // A flag replaces what the file says (even an explicit null, which the gateway
        // refuses); without the flag the file's member is sent as it is.
        fn given<T>(slot: &mut Option<Option<T>>, v: Option<T>) {
            if v.is_some() {
                *slot = Some(v);
            }
        }
        let list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        set_list(&mut d.recipients, &self.to);
        given(&mut d.subject_refs, list(&self.subjects));
        given(&mut d.data_categories, list(&self.data_categories));
        given(&mut d.purpose, self.purpose.clone());
        set(&mut d.reasons, self.reasons.clone());
        practitioner(
            &mut d.practitioner,
            &self.practitioner_name,
            &self.practitioner_role,
            &self.practitioner_contact,
        );
        if self.request_ref.is_some() || self.requested.is_some() || self.answers.is_some() {
            let mut r = d.request.take().flatten();
            request(&mut r, &self.request_ref, &self.requested);
            answers(&mut r, &self.answers, false);
            d.request = Some(r);
        }
        Ok(d)
    }
}

pub async fn decline(a: DeclineArgs) -> anyhow::Result<ExitCode> {
    let body = a.body()?;
    let record = Record {
        path: "/v1/decisions".into(),
        idempotency_key: a.idempotency_key.as_deref(),
        confirmed: 201,
        what: "decision",
        retry: "It is safe to retry with the same --idempotency-key.",
    };
    record
        .post(&a.connect, &body, a.json, |d: Declined| {
            println!("{}", d.decision_id);
            eprintln!(
                "Recorded the decision not to share with {}",
                d.recipients.join(", ")
            );
        })
        .await
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
    let record = Record {
        path: format!("/v1/transfers/{}/rationale", a.id),
        idempotency_key: None,
        confirmed: 200,
        what: "rationale",
        retry: "Retry; if it was recorded after all, the retry is answered rationale_already_recorded.",
    };
    record
        .post(&a.connect, &raw, a.json, |r: RationaleRecorded| {
            println!("{}", r.transfer_id);
            eprintln!("Rationale recorded at {}", r.recorded_at);
        })
        .await
}

#[derive(Args)]
pub struct FeedbackArgs {
    #[command(flatten)]
    connect: Connect,
    /// The transfer's id (in the envelope your organisation received).
    id: String,
    /// What became of it.
    #[arg(long, value_parser = ["received_and_read", "referral_accepted", "assessment_started", "no_further_action"])]
    status: String,
    /// A short note for the sender (at most 500 characters).
    #[arg(long)]
    comment: Option<String>,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `postern feedback`: tells the sender of a transfer your organisation received what became
/// of it.
pub async fn feedback(a: FeedbackArgs) -> anyhow::Result<ExitCode> {
    if a.id.is_empty() || !a.id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        eprintln!("postern: `{}` is not a transfer id", a.id);
        return Ok(exit(super::EX_USAGE));
    }
    let body = RawFeedback {
        status: Some(a.status.clone()),
        comment: a.comment.clone(),
    };
    let record = Record {
        path: format!("/v1/transfers/{}/feedback", a.id),
        idempotency_key: None,
        confirmed: 201,
        what: "feedback",
        retry: "Retry; feedback given twice is recorded twice, which the sender reads as one.",
    };
    record
        .post(&a.connect, &body, a.json, |f: FeedbackRecorded| {
            println!("{}", f.transfer_id);
            eprintln!("Feedback recorded at {}", f.recorded_at);
        })
        .await
}

/// A record posted to the gateway as JSON (a decision, a rationale, a request).
pub(super) struct Record<'a> {
    pub path: String,
    pub idempotency_key: Option<&'a str>,
    /// The status that confirms the record was kept.
    pub confirmed: u16,
    pub what: &'a str,
    /// What to do when no answer came: the record may or may not have been kept.
    pub retry: &'a str,
}

impl Record<'_> {
    /// Posts `body` and reports the answer: the gateway's JSON with `--json`, else `summary`
    /// of it; a problem as `postern send` reports one.
    pub async fn post<T: DeserializeOwned>(
        self,
        connect: &Connect,
        body: &impl Serialize,
        json: bool,
        summary: impl FnOnce(T),
    ) -> anyhow::Result<ExitCode> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        let mut conn = match connect.reach().await? {
            Ok(c) => c,
            Err(code) => return Ok(code),
        };
        let answer = match conn.post_json(&self.path, body, self.idempotency_key).await {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!(
                    "postern: the {} was not confirmed: {e}. {}",
                    self.what, self.retry
                );
                return Ok(exit(EX_UNAVAILABLE));
            }
        };
        if answer.status != self.confirmed {
            return Ok(report_problem(&answer.body, answer.status, json));
        }
        if json {
            println!("{}", String::from_utf8_lossy(&answer.body));
        } else {
            summary(answer.json()?);
        }
        Ok(ExitCode::SUCCESS)
    }
}
