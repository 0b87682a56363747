//! `postern request`: requests for information from the command line. `postern request --to
//! ORG ...` asks another organisation in writing; `postern request list` shows the requests
//! yours was asked (or made, with `--made`) and their clocks; `show` one with what answered it;
//! `clarify` one (ask, or answer); `withdraw` one yours made. They connect like `postern send` (`--server`, `--ca`,
//! `--identity`). A request is answered with `postern send --answers ID` (`--in-part` for a part)
//! and declined with `postern decline --answers ID`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use postern_gateway::domain::envelope::RawUrgency;
use postern_gateway::domain::info_request::RawInfoRequest;
use postern_gateway::ingest::requests::{
    ClarificationRecorded, RequestList, RequestMade, RequestView, RequestWithdrawn,
};

use super::decline::Record;
use super::send::{Connect, body_file, practitioner, report_problem, set, set_list};
use super::{EX_USAGE, exit};

#[derive(Args)]
pub struct RequestArgs {
    #[command(subcommand)]
    command: Option<RequestCommand>,
    #[command(flatten)]
    connect: GlobalConnect,
    #[command(flatten)]
    ask: AskArgs,
}

/// `postern send`'s connection flags, accepted before or after a subcommand.
#[derive(Args)]
struct GlobalConnect {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "POSTERN_SERVER",
        default_value = "https://localhost:8443"
    )]
    server: String,
    /// CA certificate(s) to trust for the gateway's server certificate (PEM).
    #[arg(long, global = true, env = "POSTERN_CA")]
    ca: Option<PathBuf>,
    /// Your organisation's client certificate and private key, in one PEM file.
    #[arg(long, global = true, env = "POSTERN_IDENTITY")]
    identity: Option<PathBuf>,
}

impl GlobalConnect {
    fn connect(self) -> Result<Connect, ExitCode> {
        match (self.ca, self.identity) {
            (Some(ca), Some(identity)) => Ok(Connect {
                server: self.server,
                ca,
                identity,
            }),
            _ => {
                eprintln!(
                    "postern request: give --ca and --identity (or POSTERN_CA and POSTERN_IDENTITY)"
                );
                Err(exit(EX_USAGE))
            }
        }
    }
}

/// Ask another organisation for information.
#[derive(Args)]
pub struct AskArgs {
    /// A JSON request file (as `POST /v1/requests` takes). The flags below set or override its
    /// fields.
    #[arg(long)]
    request: Option<PathBuf>,
    /// The organisation asked: the one that holds the information.
    #[arg(long = "to", value_name = "ORG")]
    to: Option<String>,
    /// The purpose id, e.g. child-protection-s47.
    #[arg(long)]
    purpose: Option<String>,
    /// The UK GDPR Article 6 basis the answer would be shared on.
    #[arg(long)]
    lawful_basis: Option<String>,
    /// What is requested, in words the holder can act on.
    #[arg(long)]
    requested: Option<String>,
    /// Why the information is needed.
    #[arg(long)]
    grounds: Option<String>,
    /// A reference to the person it is about, e.g. nhs:9434765919 (repeat for several).
    #[arg(long = "subject", value_name = "SCHEME:VALUE")]
    subjects: Vec<String>,
    /// The request is urgent, with the reason (answered within hours, not working days).
    #[arg(long, value_name = "REASON")]
    urgent: Option<String>,
    /// The name of the practitioner asking.
    #[arg(long)]
    practitioner_name: Option<String>,
    /// Their role.
    #[arg(long)]
    practitioner_role: Option<String>,
    /// How they can be reached.
    #[arg(long)]
    practitioner_contact: Option<String>,
    /// Makes a retry safe: the same key returns the first answer and records nothing new.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the gateway's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum RequestCommand {
    /// The requests your organisation was asked (or, with --made, made), newest first.
    List {
        /// The requests your organisation made, instead of those it was asked.
        #[arg(long)]
        made: bool,
        /// Only those still to be answered (open, partly answered or overdue).
        #[arg(long)]
        open: bool,
        /// The gateway's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One request: what was asked and why, its clock, and what answered it.
    Show {
        /// The request id.
        id: String,
        /// The gateway's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Ask for a clarification of a request your organisation was asked, or give one that was
    /// asked of a request it made (the side your organisation is on says which).
    Clarify {
        /// The request id.
        id: String,
        /// What needs clarifying, or the clarification.
        #[arg(long)]
        text: String,
    },
    /// Withdraw a request your organisation made.
    Withdraw {
        /// The request id.
        id: String,
        /// Why it is withdrawn (recorded in the transfer log).
        #[arg(long)]
        reason: Option<String>,
    },
}

impl AskArgs {
    fn body(&self) -> anyhow::Result<RawInfoRequest> {
        let mut r: RawInfoRequest = body_file(self.request.as_deref(), "request")?;
        set(&mut r.holder, self.to.clone());
        set(&mut r.purpose, self.purpose.clone());
        set(&mut r.lawful_basis, self.lawful_basis.clone());
        set(&mut r.requested, self.requested.clone());
        set(&mut r.grounds, self.grounds.clone());
        set_list(&mut r.subject_refs, &self.subjects);
        match &self.urgent {
            Some(reason) => {
                r.urgency = Some(RawUrgency {
                    level: Some("urgent".into()),
                    reason: Some(reason.clone()),
                });
            }
            None if r.urgency.is_none() => {
                r.urgency = Some(RawUrgency {
                    level: Some("routine".into()),
                    reason: None,
                });
            }
            None => {}
        }
        practitioner(
            &mut r.practitioner,
            &self.practitioner_name,
            &self.practitioner_role,
            &self.practitioner_contact,
        );
        Ok(r)
    }
}

/// An id that goes into a path: a UUID's characters only.
fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

pub async fn run(a: RequestArgs) -> anyhow::Result<ExitCode> {
    let connect = match a.connect.connect() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match (a.command, a.ask) {
        (Some(cmd), _) => run_command(cmd, &connect).await,
        (None, ask) => {
            let body = ask.body()?;
            let record = Record {
                path: "/v1/requests".into(),
                idempotency_key: ask.idempotency_key.as_deref(),
                confirmed: 201,
                what: "request",
                retry: "It is safe to retry with the same --idempotency-key.",
            };
            record
                .post(&connect, &body, ask.json, |m: RequestMade| {
                    println!("{}", m.request_id);
                    eprintln!(
                        "Asked {} (agreement {}); due by the end of {} ({} UTC)",
                        m.holder, m.agreement, m.due_date, m.due_at
                    );
                })
                .await
        }
    }
}

async fn run_command(cmd: RequestCommand, connect: &Connect) -> anyhow::Result<ExitCode> {
    match cmd {
        RequestCommand::List { made, open, json } => {
            let mut conn = match connect.reach().await? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let path = format!(
                "/v1/requests?side={}{}",
                if made { "made" } else { "received" },
                if open { "&open=true" } else { "" }
            );
            let answer = conn.get(&path).await?;
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, json));
            }
            if json {
                println!("{}", String::from_utf8_lossy(&answer.body));
                return Ok(ExitCode::SUCCESS);
            }
            let list: RequestList = answer.json()?;
            if list.requests.is_empty() {
                eprintln!("(none)");
            }
            for r in &list.requests {
                let other = if made {
                    format!("asked {}", r.holder)
                } else {
                    format!("from {}", r.requester)
                };
                println!(
                    "{}  {:<15}  {}  {}  {}  received {}  due {}",
                    r.request_id,
                    r.status.as_str(),
                    other,
                    r.purpose,
                    r.urgency,
                    r.received_at,
                    r.due_date
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RequestCommand::Show { id, json } => {
            if !id_ok(&id) {
                eprintln!("postern: `{id}` is not a request id");
                return Ok(exit(EX_USAGE));
            }
            let mut conn = match connect.reach().await? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let answer = conn.get(&format!("/v1/requests/{id}")).await?;
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, json));
            }
            if json {
                println!("{}", String::from_utf8_lossy(&answer.body));
                return Ok(ExitCode::SUCCESS);
            }
            let v: RequestView = answer.json()?;
            println!("request    {}", v.request_id);
            println!("status     {}", v.status.as_str());
            println!("from       {}  to {}", v.requester, v.holder);
            println!("purpose    {} ({})", v.purpose, v.lawful_basis);
            println!(
                "urgency    {}{}",
                v.urgency,
                v.urgency_reason
                    .as_deref()
                    .map_or_else(String::new, |r| format!(": {r}"))
            );
            println!("received   {}", v.received_at);
            println!("due        {} (by {} UTC)", v.due_date, v.due_at);
            println!("requested  {}", v.requested);
            println!("grounds    {}", v.grounds);
            println!(
                "asked by   {}, {} ({})",
                v.practitioner.name, v.practitioner.role, v.practitioner.contact
            );
            if let Some(refs) = &v.subject_refs {
                println!("about      {}", refs.join(", "));
            }
            for c in &v.clarifications {
                println!(
                    "{:<10} {}  {}",
                    if c.kind == "asked" {
                        "asked"
                    } else {
                        "clarified"
                    },
                    c.at,
                    c.text
                );
            }
            for a in &v.answers {
                println!(
                    "{:<10} {}  {}{}",
                    if a.kind == "decline" {
                        "declined"
                    } else {
                        "answered"
                    },
                    a.at,
                    a.id,
                    a.answer
                        .map_or_else(String::new, |e| format!(" ({})", e.as_str()))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RequestCommand::Clarify { id, text } => {
            if !id_ok(&id) {
                eprintln!("postern: `{id}` is not a request id");
                return Ok(exit(EX_USAGE));
            }
            let record = Record {
                path: format!("/v1/requests/{id}/clarification"),
                idempotency_key: None,
                confirmed: 200,
                what: "clarification",
                retry: "Retry; if it was recorded after all, the retry is answered clarification_out_of_turn.",
            };
            let body = serde_json::json!({ "text": text });
            record
                .post(connect, &body, false, |c: ClarificationRecorded| {
                    println!("{}", c.request_id);
                    eprintln!(
                        "Clarification {}; the request is {}, due by the end of {}",
                        c.kind,
                        c.status.as_str().replace('_', " "),
                        c.due_date
                    );
                })
                .await
        }
        RequestCommand::Withdraw { id, reason } => {
            if !id_ok(&id) {
                eprintln!("postern: `{id}` is not a request id");
                return Ok(exit(EX_USAGE));
            }
            let record = Record {
                path: format!("/v1/requests/{id}/withdraw"),
                idempotency_key: None,
                confirmed: 200,
                what: "withdrawal",
                retry: "Retry; if it was recorded after all, the retry is answered request_closed.",
            };
            let body = serde_json::json!({ "reason": reason });
            record
                .post(connect, &body, false, |w: RequestWithdrawn| {
                    println!("{}", w.request_id);
                    eprintln!("Withdrawn at {}", w.withdrawn_at);
                })
                .await
        }
    }
}
