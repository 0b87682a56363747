//! `postern send` and `postern status`: sharing from the command line, for organisations that
//! have no system of their own (a youth club, a sports club), and for scripts. The other
//! commands that call a gateway (`decline`, `rationale`, `inbox`) share its connection flags,
//! its flags-over-a-file helpers and its reporting of problems.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use postern_gateway::client::{self, Identity, Submission, Target};
use postern_gateway::domain::envelope::{
    RawConsent, RawEnvelope, RawPractitioner, RawRequest, RawRetention, RawSubjectInformed,
    RawUrgency,
};
use postern_gateway::ingest::problem::{Problem, ProblemField};
use postern_gateway::ingest::routes::Accepted;
use serde::de::DeserializeOwned;

use super::{EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_UNAVAILABLE, exit};

#[derive(Args)]
pub struct Connect {
    /// The gateway's base URL.
    #[arg(long, env = "POSTERN_SERVER", default_value = "https://localhost:8443")]
    pub server: String,
    /// CA certificate(s) to trust for the gateway's server certificate (PEM).
    #[arg(long, env = "POSTERN_CA")]
    pub ca: PathBuf,
    /// Your organisation's client certificate and private key, in one PEM file.
    #[arg(long, env = "POSTERN_IDENTITY")]
    pub identity: PathBuf,
}

impl Connect {
    pub async fn open(&self) -> anyhow::Result<Result<client::Connection, client::ClientError>> {
        let target = Target::parse(&self.server)?;
        let roots = client::read_roots(&self.ca)?;
        let identity = Identity::from_pem_file(&self.identity)?;
        let config = Arc::new(client::tls_config(&roots, Some(&identity))?);
        Ok(client::connect(&target, config).await)
    }

    /// Opens the connection, or says why not and gives the exit status for it (69).
    pub async fn reach(&self) -> anyhow::Result<Result<client::Connection, ExitCode>> {
        Ok(self.open().await?.map_err(|e| {
            eprintln!("postern: {e}");
            exit(EX_UNAVAILABLE)
        }))
    }
}

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    connect: Connect,
    /// A JSON envelope file. The flags below set or override its fields.
    #[arg(long)]
    envelope: Option<PathBuf>,
    /// Recipient organisation id (repeat for several).
    #[arg(long = "to", value_name = "ORG")]
    to: Vec<String>,
    /// Purpose id, e.g. safeguarding-referral.
    #[arg(long)]
    purpose: Option<String>,
    /// Why this share is necessary, and why the public interest outweighs confidentiality.
    #[arg(long)]
    justification: Option<String>,
    /// UK GDPR Article 6 basis: public_task, legal_obligation, legitimate_interests, vital_interests, consent, contract.
    #[arg(long)]
    lawful_basis: Option<String>,
    /// Article 9 condition, needed with special category data (e.g. safeguarding_children).
    #[arg(long)]
    special_category_condition: Option<String>,
    /// personal, special_category or criminal_offence (repeat for several).
    #[arg(long = "data-category", value_name = "CATEGORY")]
    data_categories: Vec<String>,
    /// Protective marking, e.g. "OFFICIAL-SENSITIVE PERSONAL".
    #[arg(long)]
    marking: Option<String>,
    /// The data holding agency, if not your organisation.
    #[arg(long)]
    originator: Option<String>,
    /// The originator's permission reference for onward sharing.
    #[arg(long)]
    originator_permission_ref: Option<String>,
    /// The name of the practitioner making this share.
    #[arg(long)]
    practitioner_name: Option<String>,
    /// Their role, e.g. "Designated safeguarding lead".
    #[arg(long)]
    practitioner_role: Option<String>,
    /// How the recipients can reach them (email or phone).
    #[arg(long)]
    practitioner_contact: Option<String>,
    /// given, refused_overridden or not_sought.
    #[arg(long)]
    consent: Option<String>,
    /// Why consent was not sought, or why a refusal was overridden.
    #[arg(long)]
    consent_reason: Option<String>,
    /// Whether the person was told: yes or no.
    #[arg(long, value_parser = ["yes", "no"])]
    subject_informed: Option<String>,
    /// Why the person was not told.
    #[arg(long)]
    not_informed_reason: Option<String>,
    /// The share is routine (not urgent). One of --routine and --urgent is needed unless the
    /// envelope file says.
    #[arg(long, conflicts_with = "urgent")]
    routine: bool,
    /// The share is urgent, with the reason it could not wait (the full justification may
    /// follow with `postern rationale`).
    #[arg(long, value_name = "REASON")]
    urgent: Option<String>,
    /// The reference of the request this share answers.
    #[arg(long)]
    request_ref: Option<String>,
    /// What the request asked for.
    #[arg(long)]
    requested: Option<String>,
    /// The id of a request for information made through the gateway that this share answers
    /// (`postern request list` shows them); the requester must be among the recipients.
    #[arg(long, value_name = "REQUEST_ID")]
    answers: Option<String>,
    /// With --answers: this answers the request in part (more will follow); without it, in
    /// full.
    #[arg(long, requires = "answers")]
    in_part: bool,
    /// A summary of what is disclosed.
    #[arg(long)]
    summary: Option<String>,
    /// How many days the recipients may keep it.
    #[arg(long, conflicts_with = "retain_until")]
    retain_days: Option<u32>,
    /// The date until which the recipients may keep it (YYYY-MM-DD).
    #[arg(long)]
    retain_until: Option<String>,
    /// A reference to the person this is about, e.g. nhs:9434765919 (repeat for several).
    #[arg(long = "subject", value_name = "SCHEME:VALUE")]
    subjects: Vec<String>,
    /// The name the recipients see for the file (default: the name of the file shared, even
    /// when the envelope file names another).
    #[arg(long)]
    file_name: Option<String>,
    /// The file's media type, e.g. application/pdf.
    #[arg(long)]
    content_type: Option<String>,
    /// The transfer id this corrects.
    #[arg(long)]
    correction_of: Option<String>,
    /// Makes a retry safe: the same key returns the first answer and creates nothing new.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
    /// After acceptance, follow the deliveries until every recipient is delivered or dead
    /// (exit 0 if all delivered, 1 if any is dead, 75 if still in progress at the time limit).
    #[arg(long)]
    wait: bool,
    /// How long --wait follows the deliveries, in seconds.
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
    /// The file to share.
    file: PathBuf,
}

/// A flag given on the command line overrides the file's field; one not given leaves it.
pub(super) fn set<T>(slot: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *slot = v;
    }
}

/// A repeatable flag: given at least once, its values replace the file's list.
pub(super) fn set_list(slot: &mut Option<Vec<String>>, v: &[String]) {
    if !v.is_empty() {
        *slot = Some(v.to_vec());
    }
}

/// The JSON body file named by `--envelope` or `--decision` (`what`), or an empty body without
/// one, for the flags to fill in.
pub(super) fn body_file<T: DeserializeOwned + Default>(
    path: Option<&Path>,
    what: &str,
) -> anyhow::Result<T> {
    let Some(p) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a valid {what} file", p.display()))
}

/// The `--practitioner-*` flags over the file's practitioner: each one given replaces its part.
pub(super) fn practitioner(
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

/// `--answers` (and `--in-part`) over the file's request.
pub(super) fn answers(slot: &mut Option<RawRequest>, id: &Option<String>, in_part: bool) {
    if id.is_some() {
        let r = slot.get_or_insert_with(RawRequest::default);
        set(&mut r.request_id, id.clone());
        if in_part {
            r.answer = Some("in_part".into());
        }
    }
}

/// `--request-ref` and `--requested` over the file's request.
pub(super) fn request(
    slot: &mut Option<RawRequest>,
    reference: &Option<String>,
    requested: &Option<String>,
) {
    if reference.is_some() || requested.is_some() {
        let r = slot.get_or_insert_with(RawRequest::default);
        set(&mut r.reference, reference.clone());
        set(&mut r.requested, requested.clone());
    }
}

impl SendArgs {
    fn envelope(&self) -> anyhow::Result<RawEnvelope> {
        let mut e: RawEnvelope = body_file(self.envelope.as_deref(), "envelope")?;
        set_list(&mut e.recipients, &self.to);
        set_list(&mut e.data_categories, &self.data_categories);
        set_list(&mut e.subject_refs, &self.subjects);
        set(&mut e.purpose, self.purpose.clone());
        set(&mut e.justification, self.justification.clone());
        set(&mut e.lawful_basis, self.lawful_basis.clone());
        set(
            &mut e.special_category_condition,
            self.special_category_condition.clone(),
        );
        set(&mut e.marking, self.marking.clone());
        set(&mut e.originator, self.originator.clone());
        set(
            &mut e.originator_permission_ref,
            self.originator_permission_ref.clone(),
        );
        set(&mut e.disclosed_summary, self.summary.clone());
        // The name of the file actually shared, not one left in a reused envelope file.
        e.file_name = self.file_name.clone().or_else(|| {
            self.file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        set(&mut e.content_type, self.content_type.clone());
        set(&mut e.correction_of, self.correction_of.clone());
        practitioner(
            &mut e.practitioner,
            &self.practitioner_name,
            &self.practitioner_role,
            &self.practitioner_contact,
        );
        if self.consent.is_some() || self.consent_reason.is_some() {
            let c = e.consent.get_or_insert_with(RawConsent::default);
            set(&mut c.status, self.consent.clone());
            set(&mut c.reason, self.consent_reason.clone());
        }
        if self.subject_informed.is_some() || self.not_informed_reason.is_some() {
            let s = e
                .subject_informed
                .get_or_insert_with(RawSubjectInformed::default);
            set(
                &mut s.informed,
                self.subject_informed.as_deref().map(|v| v == "yes"),
            );
            set(&mut s.reason, self.not_informed_reason.clone());
        }
        if let Some(reason) = &self.urgent {
            e.urgency = Some(RawUrgency {
                level: Some("urgent".into()),
                reason: Some(reason.clone()),
            });
        }
        if self.routine {
            e.urgency = Some(RawUrgency {
                level: Some("routine".into()),
                reason: None,
            });
        }
        request(&mut e.request, &self.request_ref, &self.requested);
        answers(&mut e.request, &self.answers, self.in_part);
        if self.retain_days.is_some() {
            e.retention = Some(RawRetention {
                days: self.retain_days,
                until: None,
            });
        }
        if self.retain_until.is_some() {
            e.retention = Some(RawRetention {
                days: None,
                until: self.retain_until.clone(),
            });
        }
        Ok(e)
    }
}

/// The flag of `send`, `decline` or `rationale` that sets a field of the JSON body, for error
/// messages: a person at a terminal typed flags, not JSON.
fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "recipients" => "--to",
        "purpose" => "--purpose",
        "justification" => "--justification",
        "lawful_basis" => "--lawful-basis",
        "special_category_condition" => "--special-category-condition",
        "data_categories" => "--data-category",
        "marking" => "--marking",
        "originator" => "--originator",
        "originator_permission_ref" => "--originator-permission-ref",
        "practitioner" => "--practitioner-name, --practitioner-role and --practitioner-contact",
        "practitioner.name" => "--practitioner-name",
        "practitioner.role" => "--practitioner-role",
        "practitioner.contact" => "--practitioner-contact",
        "consent" | "consent.status" => "--consent",
        "consent.reason" => "--consent-reason",
        "subject_informed" | "subject_informed.informed" => "--subject-informed",
        "subject_informed.reason" => "--not-informed-reason",
        "urgency" | "urgency.level" => "--routine or --urgent REASON",
        "urgency.reason" => "--urgent REASON",
        "request" | "request.reference" => "--request-ref",
        "request.requested" => "--requested",
        "request.request_id" => "--answers",
        "request.answer" => "--in-part",
        "holder" => "--to",
        "grounds" => "--grounds",
        "disclosed_summary" => "--summary",
        "retention" => "--retain-days or --retain-until",
        "retention.days" => "--retain-days",
        "retention.until" => "--retain-until",
        "subject_refs" => "--subject",
        "file_name" => "--file-name",
        "content_type" => "--content-type",
        "correction_of" => "--correction-of",
        "reasons" => "--reasons",
        _ => return None,
    })
}

/// A field's problem in the words of the command line: "`urgency` is required: routine or
/// urgent" becomes "`--routine or --urgent REASON` is required: routine or urgent", and the
/// third `--to` is "`--to` (value 3)".
fn flag_message(e: &ProblemField) -> String {
    let (base, index) = match e.field.split_once('[') {
        Some((base, rest)) => (
            base,
            rest.split(']').next().and_then(|n| n.parse::<usize>().ok()),
        ),
        None => (e.field.as_str(), None),
    };
    let Some(flag) = flag_for(base) else {
        return if e.message.contains(&format!("`{}`", e.field)) {
            e.message.clone()
        } else {
            format!("{}: {}", e.field, e.message)
        };
    };
    let named = match index {
        Some(i) => format!("`{flag}` (value {})", i + 1),
        None => format!("`{flag}`"),
    };
    let quoted = format!("`{}`", e.field);
    if e.message.contains(&quoted) {
        let m = e.message.replace(&quoted, &named);
        // Three flags that together give one field are required together.
        if flag.contains(" and ") {
            m.replacen("` is required", "` are required", 1)
        } else {
            m
        }
    } else {
        format!("{named}: {}", e.message)
    }
}

/// Prints a problem answer and returns the exit status for it.
pub fn report_problem(body: &[u8], status: u16, json: bool) -> ExitCode {
    if json {
        println!("{}", String::from_utf8_lossy(body));
    } else {
        match serde_json::from_slice::<Problem>(body) {
            Ok(p) => {
                let verdict = if status == 403 {
                    "Refused"
                } else {
                    "Not accepted"
                };
                // Each problem once, naming the flag that sets the field rather than its JSON path.
                match p.errors.as_slice() {
                    [] => eprintln!("{verdict} ({}): {}", p.code, p.detail),
                    [one] => eprintln!("{verdict} ({}): {}", p.code, flag_message(one)),
                    many => {
                        eprintln!("{verdict} ({}): {} problems:", p.code, many.len());
                        for e in many {
                            eprintln!("  - {}", flag_message(e));
                        }
                    }
                }
                if let Some(a) = &p.agreement {
                    eprintln!("  agreement considered: {a}");
                }
                if let Some(r) = &p.request_id {
                    eprintln!("  recorded under reference {r}");
                }
                if let Some(t) = &p.transfer_id {
                    if status < 500 {
                        eprintln!("  recorded under reference {t}");
                    } else {
                        eprintln!("  quote this reference to the gateway's operators: {t}");
                    }
                }
            }
            Err(_) => eprintln!(
                "The gateway answered {status}: {}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    match status {
        403 => exit(EX_NOPERM),
        400 | 408 | 409 | 413 | 415 | 422 => exit(EX_DATAERR),
        503 => exit(EX_UNAVAILABLE),
        _ => ExitCode::FAILURE,
    }
}

pub async fn send(a: SendArgs) -> anyhow::Result<ExitCode> {
    let envelope = a.envelope()?;
    let (payload, len) = client::file_stream(&a.file)
        .await
        .with_context(|| format!("reading {}", a.file.display()))?;
    let mut conn = match a.connect.reach().await? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let answer = conn
        .submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope)?),
            payload,
            payload_len: Some(len),
            file_name: envelope.file_name.clone(),
            content_type: envelope.content_type.clone(),
            idempotency_key: a.idempotency_key.clone(),
        })
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "postern: the transfer did not complete: {e}. Nothing is confirmed; it is safe to retry with the same --idempotency-key."
            );
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    if answer.status == 202 {
        let accepted: Accepted = answer.json()?;
        if a.json {
            println!("{}", String::from_utf8_lossy(&answer.body));
        } else {
            println!("{}", accepted.transfer_id);
            for r in &accepted.recipients {
                eprintln!(
                    "Accepted for {} under agreement {}",
                    r.recipient, r.agreement
                );
            }
        }
        if a.wait {
            return wait_for_delivery(
                &mut conn,
                &accepted.transfer_id,
                std::time::Duration::from_secs(a.wait_secs),
            )
            .await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    Ok(report_problem(&answer.body, answer.status, a.json))
}

/// Follows a transfer's deliveries, printing each change, until all are final or time runs out.
async fn wait_for_delivery(
    conn: &mut client::Connection,
    id: &str,
    limit: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let start = std::time::Instant::now();
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    loop {
        let answer = conn.get(&format!("/v1/transfers/{id}")).await?;
        if answer.status != 200 {
            return Ok(report_problem(&answer.body, answer.status, false));
        }
        let s: postern_gateway::store::TransferStatus = serde_json::from_slice(&answer.body)?;
        for r in &s.recipients {
            let line = match r.state.as_str() {
                "delivered" => format!(
                    "delivered by {}{}",
                    r.channel,
                    r.receipt
                        .as_ref()
                        .map(|x| format!(" (receipt {})", x.receipt_id))
                        .unwrap_or_default()
                ),
                "dead" => format!(
                    "dead: {}",
                    r.last_error.as_deref().unwrap_or("no reason recorded")
                ),
                "retrying" => format!(
                    "retrying (attempt {} failed: {}; next at {})",
                    r.attempts,
                    r.last_error.as_deref().unwrap_or("-"),
                    r.next_attempt_at.as_deref().unwrap_or("-")
                ),
                other => other.to_owned(),
            };
            if seen.get(&r.recipient) != Some(&line) {
                eprintln!("  {:<24} {line}", r.recipient);
                seen.insert(r.recipient.clone(), line);
            }
        }
        if s.recipients
            .iter()
            .all(|r| r.state == "delivered" || r.state == "dead")
        {
            return Ok(if s.recipients.iter().any(|r| r.state == "dead") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        if start.elapsed() >= limit {
            eprintln!(
                "still in progress after {} s; `postern status {id}` follows it later",
                limit.as_secs()
            );
            return Ok(exit(EX_TEMPFAIL));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connect: Connect,
    /// The transfer id `postern send` printed.
    id: String,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut conn = match a.connect.reach().await? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let answer = match conn.get(&format!("/v1/transfers/{}", a.id)).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_UNAVAILABLE));
        }
    };
    if answer.status != 200 {
        return Ok(report_problem(&answer.body, answer.status, a.json));
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&answer.body));
        return Ok(ExitCode::SUCCESS);
    }
    let s: postern_gateway::store::TransferStatus = serde_json::from_slice(&answer.body)?;
    println!(
        "transfer {}  received {}  purpose {}  marking {}  {} bytes",
        s.id, s.received_at, s.purpose, s.marking, s.payload_size
    );
    for r in &s.recipients {
        let extra = match r.state.as_str() {
            "delivered" => r
                .receipt
                .as_ref()
                .map(|x| format!("  receipt {}", x.receipt_id))
                .unwrap_or_default(),
            "retrying" | "queued" => format!(
                "{}{}",
                r.last_error
                    .as_deref()
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default(),
                r.next_attempt_at
                    .as_deref()
                    .map(|t| format!("  next attempt {t}"))
                    .unwrap_or_default()
            ),
            _ => r
                .last_error
                .as_deref()
                .map(|e| format!("  reason: {e}"))
                .unwrap_or_default(),
        };
        println!(
            "  {:<24} {:<6} {:<11} attempts {}{}",
            r.recipient, r.channel, r.state, r.attempts, extra
        );
    }
    Ok(ExitCode::SUCCESS)
}
