//! `postern explain`: runs the gateway's real policy decision for a share described on the
//! command line (through [`explain::explain`], as the IT team's explain page does), sends
//! nothing and records nothing, and prints every rule it checked, which agreement allowed the
//! share, or which rule refused it and why. What an IT team runs when a practitioner asks "why
//! was my transfer refused?".
//!
//! Exit status: 0 the share would be allowed; 77 it would be refused; 65 the description is
//! not a valid envelope; 64 the configuration is invalid.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use postern_gateway::domain::envelope::EnvelopeError;
use postern_gateway::domain::explain::{self, ExplainError, Explained, Question};
use postern_gateway::domain::policy::Decision;
use serde_json::json;

use super::{EX_DATAERR, EX_NOPERM, EX_USAGE, exit};

#[derive(Args)]
pub struct ExplainArgs {
    /// The sending organisation.
    #[arg(long)]
    from: String,
    /// A recipient organisation (repeat for several: the decision is all or nothing).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    /// The purpose id, e.g. safeguarding-referral.
    #[arg(long)]
    purpose: String,
    /// UK GDPR Article 6 basis: public_task, legal_obligation, legitimate_interests,
    /// vital_interests, consent, contract.
    #[arg(long)]
    lawful_basis: String,
    /// The protective marking, as a practitioner would write it.
    #[arg(long)]
    marking: String,
    /// personal, special_category, criminal_offence (repeat or comma-separate), as `send`
    /// takes them.
    #[arg(
        long = "data-category",
        alias = "data-categories",
        value_name = "CATEGORY",
        value_delimiter = ',',
        default_value = "personal"
    )]
    data_categories: Vec<String>,
    /// The Article 9 condition, for special category data.
    #[arg(long)]
    special_category_condition: Option<String>,
    /// The organisation the data originated with, when not the sender.
    #[arg(long)]
    originator: Option<String>,
    /// The originator's permission reference for onward sharing.
    #[arg(long)]
    originator_permission_ref: Option<String>,
    /// Decide as of this date (YYYY-MM-DD, UTC) instead of now: agreements in force then.
    #[arg(long)]
    on: Option<String>,
    /// Configuration directory, as `serve` and `check-config` read it. Only the settings and the
    /// registry are read: no key or certificate file is needed.
    #[arg(long, env = "POSTERN_CONFIG_DIR", default_value = "/etc/postern")]
    config: PathBuf,
    /// The evaluation as JSON.
    #[arg(long)]
    json: bool,
}

impl ExplainArgs {
    /// The share the options describe, as the library's explain takes it.
    fn question(&self) -> Question {
        Question {
            from: self.from.clone(),
            to: self.to.clone(),
            purpose: self.purpose.clone(),
            lawful_basis: self.lawful_basis.clone(),
            marking: self.marking.clone(),
            data_categories: self.data_categories.clone(),
            special_category_condition: self.special_category_condition.clone(),
            originator: self.originator.clone(),
            originator_permission_ref: self.originator_permission_ref.clone(),
            on: self.on.clone(),
        }
    }
}

pub fn run(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    if !a.config.is_dir() {
        eprintln!(
            "postern: there is no configuration directory at {}: give --config DIR (the demo's registry is config/demo in the source tree)",
            a.config.display()
        );
        return Ok(exit(EX_USAGE));
    }
    let opts = LoadOptions {
        dir: ConfigDir::Dir(a.config.clone()),
        overrides: Overrides::default(),
        env: None,
    };
    let config = match config::offline(&opts) {
        Ok(c) => c,
        Err(errors) => {
            super::serve::print_errors(&errors);
            return Ok(exit(EX_USAGE));
        }
    };
    let registry = &config.registry;
    let Explained {
        sender,
        as_of: now,
        evaluation: ev,
    } = match explain::explain(registry, &a.question(), postern_gateway::clock::now()) {
        Ok(e) => e,
        Err(ExplainError::Sender(from)) => {
            eprintln!("postern: --from `{from}` is not an organisation id");
            return Ok(exit(EX_DATAERR));
        }
        Err(ExplainError::Date(d)) => {
            eprintln!("postern: --on `{d}` is not a date (YYYY-MM-DD)");
            return Ok(exit(EX_DATAERR));
        }
        Err(ExplainError::Envelope(EnvelopeError::Malformed(m))) => {
            eprintln!("postern: {m}");
            return Ok(exit(EX_DATAERR));
        }
        Err(ExplainError::Envelope(EnvelopeError::Invalid(errors))) => {
            eprintln!("postern: this does not describe a valid share:");
            for e in errors {
                eprintln!("  {}: {}", e.field, e.message);
            }
            return Ok(exit(EX_DATAERR));
        }
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let decision = match &ev.decision {
            Decision::Accept(auths) => json!({"outcome": "allowed", "authorisations": auths}),
            Decision::Refuse(r) => json!({"outcome": "refused", "code": r.code(), "refusal": r}),
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"checks": ev.checks, "decision": decision}))?
        )?;
    } else {
        writeln!(
            out,
            "Explaining a share from {} to {} ({}, {}, {}), as of {}:",
            sender,
            a.to.join(", "),
            a.purpose,
            a.lawful_basis,
            a.marking,
            postern_gateway::clock::stamp(now).get(..10).unwrap_or("")
        )?;
        for c in &ev.checks {
            let whom = match (&c.recipient, &c.agreement) {
                (Some(r), Some(ag)) => format!(" [{r}, agreement {ag}]"),
                (Some(r), None) => format!(" [{r}]"),
                (None, Some(ag)) => format!(" [agreement {ag}]"),
                (None, None) => String::new(),
            };
            // A pass says what held; a failure names the refusal it gives.
            if c.passed {
                writeln!(out, "  pass{whom}: {}", c.detail)?;
            } else {
                writeln!(out, "  FAIL {}{whom}: {}", c.rule.refusal_code(), c.detail)?;
            }
        }
        match &ev.decision {
            Decision::Accept(auths) => {
                writeln!(out, "ALLOWED:")?;
                for au in auths {
                    writeln!(out, "  {} under agreement {}", au.recipient, au.agreement)?;
                }
            }
            Decision::Refuse(r) => {
                writeln!(out, "REFUSED: {}: {}", r.code(), r.detail)?;
            }
        }
    }
    Ok(match ev.decision {
        Decision::Accept(_) => ExitCode::SUCCESS,
        Decision::Refuse(_) => exit(EX_NOPERM),
    })
}
