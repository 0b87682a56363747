//! "Share information": a question flow, one topic per page, that builds the envelope a system
//! would send to `POST /v1/transfers`, offering only what the agreements in force allow
//! (`domain::choices`). The answers travel in the pages' hidden fields, so nothing of a share
//! is kept before it is sent; the last page adds the file and sends the lot, which goes
//! through `ingest::routes::submit_from_web`: the same decision, sealing, spooling and record.
//!
//! After each page the flow goes to the first page whose answers are missing or no longer
//! fit (a change of recipients may rule out the purpose chosen), else to "check your answers".

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;
use serde_json::json;

use super::WebApp;
use super::pages::{
    self, CheckPage, Field, FieldError, Opt, QuestionPage, RefusedPage, Row, SharedPage,
};
use super::signin::SignedIn;
use super::transfers::{self, reference};
use crate::domain::choices;
use crate::domain::ids::{OrgId, PurposeId};
use crate::domain::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use crate::domain::policy::Rule;
use crate::domain::registry::{Registry, Role};
use crate::domain::subject::SubjectRef;
use crate::ingest::routes::{Accepted, Submitter};

/// The pages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    To,
    Purpose,
    Basis,
    Categories,
    Condition,
    Consent,
    Informed,
    Urgency,
    Request,
    What,
    Justification,
    Marking,
    Check,
}

impl Step {
    const ALL: [Step; 13] = [
        Step::To,
        Step::Purpose,
        Step::Basis,
        Step::Categories,
        Step::Condition,
        Step::Consent,
        Step::Informed,
        Step::Urgency,
        Step::Request,
        Step::What,
        Step::Justification,
        Step::Marking,
        Step::Check,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Step::To => "to",
            Step::Purpose => "purpose",
            Step::Basis => "basis",
            Step::Categories => "categories",
            Step::Condition => "condition",
            Step::Consent => "consent",
            Step::Informed => "informed",
            Step::Urgency => "urgency",
            Step::Request => "request",
            Step::What => "what",
            Step::Justification => "justification",
            Step::Marking => "marking",
            Step::Check => "check",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The form fields this page asks.
    fn names(self) -> &'static [&'static str] {
        match self {
            Step::To => &["to"],
            Step::Purpose => &["purpose"],
            Step::Basis => &["basis"],
            Step::Categories => &["cat"],
            Step::Condition => &["condition"],
            Step::Consent => &["consent", "consent_reason"],
            Step::Informed => &["informed", "informed_reason"],
            Step::Urgency => &["urgency", "urgency_reason"],
            Step::Request => &["request", "request_ref", "request_what"],
            Step::What => &[
                "summary",
                "ref_scheme",
                "ref_value",
                "ref2_scheme",
                "ref2_value",
                "ref3_scheme",
                "ref3_value",
            ],
            Step::Justification => &["justification"],
            Step::Marking => &["marking", "days"],
            Step::Check => &[],
        }
    }
}

/// Every answer so far, as the form fields carry them.
#[derive(Debug, Clone, Default)]
struct Draft {
    fields: Vec<(String, String)>,
}

impl Draft {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        // `correction_of` and `answers` are no page's question: they come with "send a
        // correction" and "answer a request", and are carried to the end.
        let known = |k: &str| {
            k == "correction_of"
                || k == "answers"
                || Step::ALL.iter().any(|s| s.names().contains(&k))
        };
        Draft {
            fields: pairs
                .into_iter()
                .filter(|(k, v)| known(k) && v.len() <= 20_000)
                .collect(),
        }
    }

    fn one(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The hidden fields for a page: every answer but the ones it asks.
    fn hidden_except(&self, step: Step) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(k, v)| !step.names().contains(&k.as_str()) && !v.is_empty())
            .cloned()
            .collect()
    }

    /// Replaces one page's answers with those given on it.
    fn answer(&mut self, step: Step, given: &Draft) {
        self.fields
            .retain(|(k, _)| !step.names().contains(&k.as_str()));
        self.fields.extend(
            given
                .fields
                .iter()
                .filter(|(k, _)| step.names().contains(&k.as_str()))
                .cloned(),
        );
    }

    fn to(&self) -> Vec<OrgId> {
        self.all("to")
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    fn purpose(&self) -> Option<PurposeId> {
        self.one("purpose").parse().ok()
    }

    fn basis(&self) -> Option<LawfulBasis> {
        LawfulBasis::parse(self.one("basis"))
    }

    fn special(&self) -> bool {
        self.all("cat")
            .contains(&DataCategory::SpecialCategory.as_str())
    }

    fn urgent(&self) -> bool {
        self.one("urgency") == "urgent"
    }
}

/// What the pages are decided against: one registry, one organisation, one day.
struct Cx<'a> {
    reg: &'a Registry,
    org: &'a OrgId,
    today: time::Date,
    /// The largest file this gateway takes.
    max_payload: u64,
}

/// The "who is it about" pairs of the "what" page: (kind, reference); the first is required.
const REFERENCE_FIELDS: [(&str, &str); 3] = [
    ("ref_scheme", "ref_value"),
    ("ref2_scheme", "ref2_value"),
    ("ref3_scheme", "ref3_value"),
];

const REFERENCE_SCHEMES: [(&str, &str); 3] = [
    ("case", "Case reference"),
    ("nhs", "NHS number"),
    ("member", "Your organisation's own reference"),
];

/// What is wrong with a page's answers (empty: complete and still allowed).
fn problems(step: Step, d: &Draft, cx: &Cx<'_>) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut bad = |field: &str, m: &str| out.push(FieldError::new(field, m));
    match step {
        Step::To => {
            let allowed = choices::recipients(cx.reg, cx.org, cx.today);
            let to = d.all("to");
            if to.is_empty() {
                bad("to", "Select who you want to share with");
            } else if !to
                .iter()
                .all(|t| allowed.iter().any(|o| o.id.as_str() == *t))
            {
                bad("to", "Select only organisations from the list");
            }
        }
        Step::Purpose => {
            let ok = d.purpose().is_some_and(|p| {
                choices::purposes(cx.reg, cx.org, &d.to(), cx.today)
                    .iter()
                    .any(|x| x.id == p)
            });
            if !ok {
                bad("purpose", "Select why you are sharing");
            }
        }
        Step::Basis => {
            let ok = match (d.purpose(), d.basis()) {
                (Some(p), Some(b)) => {
                    choices::lawful_bases(cx.reg, cx.org, &d.to(), &p, cx.today).contains(&b)
                }
                _ => false,
            };
            if !ok {
                bad("basis", "Select the lawful basis for sharing");
            }
        }
        Step::Categories => {
            let cats = d.all("cat");
            let special_ok = d
                .purpose()
                .is_some_and(|p| choices::special_category_allowed(cx.reg, &p));
            if cats.is_empty() {
                bad("cat", "Select what kind of information you are sharing");
            } else if cats.iter().any(|c| DataCategory::parse(c).is_none())
                || (d.special() && !special_ok)
            {
                bad("cat", "Select only kinds of information from the list");
            }
        }
        Step::Condition => {
            if d.special() && SpecialCategoryCondition::parse(d.one("condition")).is_none() {
                bad(
                    "condition",
                    "Select the condition that allows you to share special category information",
                );
            }
        }
        Step::Consent => match d.one("consent") {
            "given" => {}
            "not_sought" | "refused_overridden" if !d.one("consent_reason").is_empty() => {}
            "not_sought" | "refused_overridden" => bad(
                "consent_reason",
                "Say why consent was not sought, or why you are sharing without it",
            ),
            _ => bad("consent", "Select what happened about consent"),
        },
        Step::Informed => match d.one("informed") {
            "yes" => {}
            "no" if !d.one("informed_reason").is_empty() => {}
            "no" => bad(
                "informed_reason",
                "Say why the child or their carer was not told",
            ),
            _ => bad(
                "informed",
                "Select whether the child or their carer was told",
            ),
        },
        Step::Urgency => match d.one("urgency") {
            "routine" => {}
            "urgent" if !d.one("urgency_reason").is_empty() => {}
            "urgent" => bad("urgency_reason", "Say why this cannot wait"),
            _ => bad("urgency", "Select how urgent this is"),
        },
        Step::Request if !d.one("answers").is_empty() => match d.one("request") {
            "in_full" | "in_part" => {}
            _ => bad("request", "Select whether this answers the request in full"),
        },
        Step::Request => match d.one("request") {
            "no" => {}
            "yes" => {
                if d.one("request_ref").is_empty() {
                    bad("request_ref", "Enter the request's reference");
                }
                if d.one("request_what").is_empty() {
                    bad("request_what", "Enter what was asked for");
                }
            }
            _ => bad("request", "Select whether you are answering a request"),
        },
        Step::What => {
            if d.one("summary").is_empty() {
                bad("summary", "Enter a summary of what you are sharing");
            }
            // The first reference is required; the other two are used when they are filled in
            // (a sibling, or a second reference for the same child).
            for (n, (scheme_field, value_field)) in REFERENCE_FIELDS.iter().enumerate() {
                let scheme = d.one(scheme_field);
                let value = d.one(value_field);
                if n > 0 && value.is_empty() {
                    continue;
                }
                if !REFERENCE_SCHEMES.iter().any(|(s, _)| *s == scheme) {
                    bad(scheme_field, "Select the kind of reference");
                } else if value.is_empty() {
                    bad(
                        value_field,
                        "Enter a reference for the child, such as a case reference",
                    );
                } else if SubjectRef::parse(&format!("{scheme}:{value}")).is_err() {
                    bad(
                        value_field,
                        if scheme == "nhs" {
                            "Enter the NHS number in the right format, like 943 476 5919"
                        } else {
                            "Enter the reference using letters, numbers and dashes, up to 128 characters"
                        },
                    );
                }
            }
        }
        Step::Justification => {
            if d.one("justification").is_empty() && !d.urgent() {
                bad(
                    "justification",
                    "Enter why the child's safety outweighs the duty of confidence",
                );
            }
        }
        Step::Marking => {
            let allowed = ceiling(d, cx)
                .map(|c| choices::markings(cx.reg, c))
                .unwrap_or_default();
            if !allowed.iter().any(|m| m == d.one("marking")) {
                bad("marking", "Select the marking");
            }
            match d.one("days").parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) => {}
                _ => bad(
                    "days",
                    "Enter how many days the recipient may keep it, a whole number from 1 to 3650",
                ),
            }
        }
        Step::Check => {}
    }
    out
}

fn ceiling(d: &Draft, cx: &Cx<'_>) -> Option<crate::domain::marking::Rank> {
    choices::highest_marking(cx.reg, cx.org, &d.to(), &d.purpose()?, d.basis()?, cx.today)
}

fn applies(step: Step, d: &Draft) -> bool {
    step != Step::Condition || d.special()
}

/// The first page whose answers are missing or no longer fit.
fn next(d: &Draft, cx: &Cx<'_>) -> Step {
    Step::ALL
        .into_iter()
        .find(|s| *s != Step::Check && applies(*s, d) && !problems(*s, d, cx).is_empty())
        .unwrap_or(Step::Check)
}

/// A choice; whether it is checked comes from the draft, for every field at once.
fn opt(value: &str, label: &str, hint: Option<&str>) -> Opt {
    Opt {
        value: value.to_owned(),
        label: label.to_owned(),
        hint: hint.map(str::to_owned),
        checked: false,
    }
}

fn field(kind: &'static str, name: &'static str, label: &str, hint: Option<&str>) -> Field {
    Field::new(kind, name, label, hint)
}

/// A page of the flow, with its errors (if it was answered wrongly).
fn page(step: Step, d: &Draft, cx: &Cx<'_>, errors: Vec<FieldError>, s: &SignedIn) -> Response {
    let who = transfers::who(s);
    if step == Step::Check {
        return check_page(d, cx, errors, s);
    }
    let value = |n: &str| d.one(n).to_owned();
    let (title, intro, mut fields): (String, Vec<String>, Vec<Field>) = match step {
        Step::To => {
            let orgs = choices::recipients(cx.reg, cx.org, cx.today);
            let mut f = field(
                "checkboxes",
                "to",
                "Who do you want to share with?",
                Some("Select all that apply. Only organisations your agreements allow are listed."),
            );
            f.options = orgs
                .iter()
                .map(|o| {
                    opt(
                        o.id.as_str(),
                        &o.name,
                        Some(&format!("{} organisation", capital(o.kind.label()))),
                    )
                })
                .collect();
            let intro = if orgs.is_empty() {
                vec!["Your organisation has no agreement in force that lets it share with anyone through Postern. Ask your safeguarding lead or data protection officer to set one up.".to_owned()]
            } else {
                Vec::new()
            };
            ("Who do you want to share with?".to_owned(), intro, vec![f])
        }
        Step::Purpose => {
            let mut f = field(
                "radios",
                "purpose",
                "Why are you sharing?",
                Some("These are the reasons your agreements with them allow."),
            );
            f.options = choices::purposes(cx.reg, cx.org, &d.to(), cx.today)
                .iter()
                .map(|p| opt(p.id.as_str(), &p.title, None))
                .collect();
            ("Why are you sharing?".to_owned(), Vec::new(), vec![f])
        }
        Step::Basis => {
            let mut f = field(
                "radios",
                "basis",
                "What is your lawful basis?",
                Some(
                    "The lawful basis is the reason in data protection law (UK GDPR Article 6) that allows you to share. Only the ones that fit this purpose and your agreements are listed; the one organisations like yours usually use is first.",
                ),
            );
            if let Some(p) = d.purpose() {
                f.options = choices::lawful_bases(cx.reg, cx.org, &d.to(), &p, cx.today)
                    .into_iter()
                    .map(|b| {
                        opt(
                            b.as_str(),
                            choices::basis_title(b),
                            Some(choices::basis_hint(b)),
                        )
                    })
                    .collect();
            }
            ("What is your lawful basis?".to_owned(), Vec::new(), vec![f])
        }
        Step::Categories => {
            let special_ok = d
                .purpose()
                .is_some_and(|p| choices::special_category_allowed(cx.reg, &p));
            let mut f = field(
                "checkboxes",
                "cat",
                "What kind of information is it?",
                Some("Select all that apply."),
            );
            f.options = DataCategory::ALL
                .iter()
                .filter(|c| **c != DataCategory::SpecialCategory || special_ok)
                .map(|c| {
                    let (t, h) = choices::category_text(*c);
                    opt(c.as_str(), t, Some(h))
                })
                .collect();
            (
                "What kind of information is it?".to_owned(),
                Vec::new(),
                vec![f],
            )
        }
        Step::Condition => {
            let mut f = field(
                "radios",
                "condition",
                "Which condition allows you to share it?",
                Some(
                    "Special category information needs a condition from UK GDPR Article 9 as well as a lawful basis. For safeguarding, it is usually the first.",
                ),
            );
            f.options = choices::conditions()
                .into_iter()
                .map(|(c, t)| opt(c.as_str(), t, None))
                .collect();
            (
                "Special category information".to_owned(),
                Vec::new(),
                vec![f],
            )
        }
        Step::Consent => {
            let mut f = field("radios", "consent", "What happened about consent?", None);
            f.options = vec![
                opt("given", "Sought and given", None),
                opt(
                    "refused_overridden",
                    "Sought and refused, and you are sharing anyway",
                    Some("Because the child may be at risk."),
                ),
                opt(
                    "not_sought",
                    "Not sought",
                    Some("For example, because asking could put the child at more risk."),
                ),
            ];
            let r = field(
                "textarea",
                "consent_reason",
                "Why was consent not sought?",
                Some(
                    "Or, if it was refused, why you are sharing without it. Leave blank if consent was given.",
                ),
            );
            ("Consent".to_owned(), vec!["You do not need consent to share information when a child may be at risk of harm. Say what happened, so that the record is complete.".to_owned()], vec![f, r])
        }
        Step::Informed => {
            let mut f = field(
                "radios",
                "informed",
                "Was the child or their carer told?",
                Some("That you are sharing this information."),
            );
            f.options = vec![
                opt("yes", "Yes", None),
                opt(
                    "no",
                    "No",
                    Some("For example, because telling them could put the child at more risk."),
                ),
            ];
            let r = field(
                "textarea",
                "informed_reason",
                "Why not?",
                Some("Leave blank if they were told."),
            );
            (
                "Was the child or their carer told?".to_owned(),
                Vec::new(),
                vec![f, r],
            )
        }
        Step::Urgency => {
            let mut f = field("radios", "urgency", "How urgent is this?", None);
            f.options = vec![
                opt("routine", "Routine", None),
                opt(
                    "urgent",
                    "Urgent: it cannot wait",
                    Some("You can share now and explain your reasons afterwards."),
                ),
            ];
            let r = field(
                "textarea",
                "urgency_reason",
                "Why can it not wait?",
                Some("Only if it is urgent."),
            );
            ("How urgent is this?".to_owned(), Vec::new(), vec![f, r])
        }
        Step::Request if !d.one("answers").is_empty() => {
            let mut f = field(
                "radios",
                "request",
                "Does this answer the request in full?",
                None,
            );
            f.options = vec![
                opt(
                    "in_full",
                    "Yes, in full",
                    Some("The request is then answered."),
                ),
                opt(
                    "in_part",
                    "In part",
                    Some("You will share the rest later: the request stays open until then."),
                ),
            ];
            (
                "Does this answer the request in full?".to_owned(),
                vec![format!(
                    "You are answering request {}. Its words are recorded with your share.",
                    reference(d.one("answers"))
                )],
                vec![f],
            )
        }
        Step::Request => {
            let mut f = field(
                "radios",
                "request",
                "Are you answering a request for information?",
                None,
            );
            f.options = vec![opt("no", "No", None), opt("yes", "Yes", None)];
            let r = field(
                "text",
                "request_ref",
                "The request's reference",
                Some("Only if you are answering a request."),
            );
            let w = field(
                "textarea",
                "request_what",
                "What was asked for",
                Some("As it was asked: it may differ from what you share."),
            );
            (
                "Are you answering a request?".to_owned(),
                Vec::new(),
                vec![f, r, w],
            )
        }
        Step::What => {
            let summary = field(
                "textarea",
                "summary",
                "Summary of what you are sharing",
                Some(
                    "Share only what the recipient needs. Do not name people who could be harmed if their details became known.",
                ),
            );
            let mut fields = vec![summary];
            for (n, (scheme_field, value_field)) in REFERENCE_FIELDS.iter().enumerate() {
                let (kind, reference, hint) = match n {
                    0 => (
                        "Kind of reference",
                        "Reference",
                        "Who the information is about, without their name: for example, a case reference or an NHS number like 943 476 5919.",
                    ),
                    1 => (
                        "Kind of another reference (optional)",
                        "Another reference (optional)",
                        "If it is also about a brother or sister, or the child has a second reference, such as an NHS number.",
                    ),
                    _ => (
                        "Kind of a third reference (optional)",
                        "A third reference (optional)",
                        "Leave blank if there is none.",
                    ),
                };
                let mut scheme = field("select", scheme_field, kind, None);
                scheme.options = REFERENCE_SCHEMES
                    .iter()
                    .map(|(v, l)| opt(v, l, None))
                    .collect();
                fields.push(scheme);
                fields.push(field("text", value_field, reference, Some(hint)));
            }
            ("What are you sharing?".to_owned(), Vec::new(), fields)
        }
        Step::Justification => {
            let f = field(
                "textarea",
                "justification",
                "Justification",
                Some(if d.urgent() {
                    "Why does the child's safety outweigh the duty of confidence? As this is urgent, you may leave it blank and give your reasons afterwards."
                } else {
                    "Why does the child's safety outweigh the duty of confidence?"
                }),
            );
            (
                "Why does this need to be shared?".to_owned(),
                Vec::new(),
                vec![f],
            )
        }
        Step::Marking => {
            let mut f = field(
                "radios",
                "marking",
                "Protective marking",
                Some(
                    "Most referrals about a child are OFFICIAL-SENSITIVE. Only the markings every recipient may receive are listed.",
                ),
            );
            f.options = ceiling(d, cx)
                .map(|c| choices::markings(cx.reg, c))
                .unwrap_or_default()
                .iter()
                .map(|m| opt(m, m, Some(marking_hint(m))))
                .collect();
            let mut days = field(
                "number",
                "days",
                "Days the recipient may keep it",
                Some("After this, they must destroy it. One year is usual for a referral."),
            );
            days.value = if value("days").is_empty() {
                "365".to_owned()
            } else {
                value("days")
            };
            (
                "Marking and how long to keep it".to_owned(),
                Vec::new(),
                vec![f, days],
            )
        }
        Step::Check => unreachable_step(),
    };
    // What the draft says: each field's value and the choices it picked.
    for f in &mut fields {
        if f.value.is_empty() {
            f.value = d.one(f.name).to_owned();
        }
        let picked = d.all(f.name);
        for o in &mut f.options {
            o.checked = picked.contains(&o.value.as_str());
        }
        f.error = errors
            .iter()
            .find(|e| e.field == f.name)
            .map(|e| e.message.clone());
    }
    let page = QuestionPage {
        action: "/share",
        caption: "Share information",
        button: "Continue",
        legend_h1: fields
            .first()
            .is_some_and(|f| (f.kind == "radios" || f.kind == "checkboxes") && f.label == title)
            && intro.is_empty(),
        title,
        step: step.as_str(),
        intro,
        fields,
        hidden: d.hidden_except(step),
        errors,
        who,
        ask: pages::ask(cx.reg, cx.org),
        decline_link: true,
    };
    pages::render_form(&page, &page.errors)
}

/// Never reached: `page` answers the check step first.
fn unreachable_step() -> (String, Vec<String>, Vec<Field>) {
    ("Check your answers".to_owned(), Vec::new(), Vec::new())
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn marking_hint(m: &str) -> &'static str {
    if m.contains("SENSITIVE") {
        "Personal or sensitive information that could cause harm if lost: most safeguarding information."
    } else {
        "Routine information, less sensitive."
    }
}

fn check_page(d: &Draft, cx: &Cx<'_>, errors: Vec<FieldError>, s: &SignedIn) -> Response {
    let names: Vec<String> = d
        .to()
        .iter()
        .map(|o| {
            cx.reg
                .organisation(o)
                .map_or_else(|| o.to_string(), |x| x.name.clone())
        })
        .collect();
    let purpose = d
        .purpose()
        .and_then(|p| cx.reg.purpose(&p))
        .map_or_else(String::new, |p| p.title.clone());
    let cats: Vec<String> = d
        .all("cat")
        .iter()
        .filter_map(|c| DataCategory::parse(c))
        .map(|c| choices::category_text(c).0.to_owned())
        .collect();
    let with_reason = |label: &str, reason: &str| {
        if reason.is_empty() {
            vec![label.to_owned()]
        } else {
            vec![label.to_owned(), reason.to_owned()]
        }
    };
    let mut rows = Vec::new();
    if !d.one("correction_of").is_empty() {
        rows.push(Row {
            label: "Corrects",
            lines: vec![format!(
                "Your share {}: the correction also goes to everyone who received it",
                reference(d.one("correction_of"))
            )],
            step: "to",
        });
    }
    rows.extend([
        Row {
            label: "Recipients",
            lines: names,
            step: "to",
        },
        Row {
            label: "Why",
            lines: vec![purpose],
            step: "purpose",
        },
        Row {
            label: "Lawful basis",
            lines: vec![d.basis().map_or("", choices::basis_title).to_owned()],
            step: "basis",
        },
        Row {
            label: "Kind of information",
            lines: cats,
            step: "categories",
        },
    ]);
    if d.special() {
        let c = SpecialCategoryCondition::parse(d.one("condition"));
        let t = choices::conditions()
            .into_iter()
            .find(|(x, _)| Some(*x) == c)
            .map_or("", |(_, t)| t);
        rows.push(Row {
            label: "Article 9 condition",
            lines: vec![t.to_owned()],
            step: "condition",
        });
    }
    let consent = match d.one("consent") {
        "given" => "Sought and given",
        "refused_overridden" => "Sought, refused and overridden",
        _ => "Not sought",
    };
    rows.push(Row {
        label: "Consent",
        lines: with_reason(consent, d.one("consent_reason")),
        step: "consent",
    });
    let told = if d.one("informed") == "yes" {
        "Yes"
    } else {
        "No"
    };
    rows.push(Row {
        label: "Child or carer told",
        lines: with_reason(told, d.one("informed_reason")),
        step: "informed",
    });
    let urgency = if d.urgent() { "Urgent" } else { "Routine" };
    rows.push(Row {
        label: "Urgency",
        lines: with_reason(urgency, d.one("urgency_reason")),
        step: "urgency",
    });
    let request = if !d.one("answers").is_empty() {
        vec![format!(
            "Request {}, {}",
            reference(d.one("answers")),
            if d.one("request") == "in_part" {
                "in part (more to follow)"
            } else {
                "in full"
            }
        )]
    } else if d.one("request") == "yes" {
        vec![
            d.one("request_ref").to_owned(),
            d.one("request_what").to_owned(),
        ]
    } else {
        vec!["Not answering a request".to_owned()]
    };
    rows.push(Row {
        label: "Request answered",
        lines: request,
        step: "request",
    });
    let mut lines = vec![d.one("summary").to_owned()];
    for (scheme, value) in references(d) {
        let label = REFERENCE_SCHEMES
            .iter()
            .find(|(v, _)| *v == scheme)
            .map_or("", |(_, l)| l);
        lines.push(format!("{label}: {value}"));
    }
    rows.push(Row {
        label: "What you are sharing",
        lines,
        step: "what",
    });
    let justification = if d.one("justification").is_empty() {
        "To follow (you will be asked for it afterwards)".to_owned()
    } else {
        d.one("justification").to_owned()
    };
    rows.push(Row {
        label: "Justification",
        lines: vec![justification],
        step: "justification",
    });
    rows.push(Row {
        label: "Marking and keeping",
        lines: vec![
            d.one("marking").to_owned(),
            format!("Keep for {} days", d.one("days")),
        ],
        step: "marking",
    });
    let page = CheckPage {
        title: "Check your answers",
        rows,
        hidden: d.hidden_except(Step::Check),
        max_size: size_words(cx.max_payload),
        max_bytes: cx.max_payload,
        errors,
        who: transfers::who(s),
        ask: pages::ask(cx.reg, cx.org),
        decline_link: true,
    };
    pages::render_form(&page, &page.errors)
}

/// The references given on the "what" page: the first, and the others that were filled in.
fn references(d: &Draft) -> Vec<(&str, &str)> {
    REFERENCE_FIELDS
        .iter()
        .map(|(s, v)| (d.one(s), d.one(v)))
        .enumerate()
        .filter(|(n, (_, v))| *n == 0 || !v.is_empty())
        .map(|(_, r)| r)
        .collect()
}

fn size_words(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GB", bytes / GIB)
    } else if bytes >= MIB {
        format!("{} MB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn refuse_without_share_role() -> Response {
    pages::problem(
        StatusCode::FORBIDDEN,
        "You cannot share from this account",
        "Your account can see your organisation's shares but not make them. Ask your organisation's safeguarding lead to give you the share role.",
    )
}

pub async fn start(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    if !s.person.may(Role::Share) {
        return refuse_without_share_role();
    }
    let reg = app.api.registry.current();
    let cx = Cx {
        reg: &reg,
        org: &s.person.org,
        today: crate::clock::now().date(),
        max_payload: app.api.limits.max_payload_bytes,
    };
    // "Send a correction": of a transfer this organisation sent (the policy checks it again).
    let corrects = q
        .as_deref()
        .map(|q| super::form_pairs(q.as_bytes()))
        .and_then(|p| p.into_iter().find(|(k, _)| k == "correction_of"))
        .map(|(_, v)| v);
    let answers = q
        .as_deref()
        .map(|q| super::form_pairs(q.as_bytes()))
        .and_then(|p| p.into_iter().find(|(k, _)| k == "answers"))
        .map(|(_, v)| v);
    let mut d = Draft::default();
    // "Answer a request": one made to this organisation and still open; the share starts
    // addressed to the requester, for the request's purpose and basis (all can be changed).
    if let Some(given) = answers {
        let Ok(id) = given.parse::<crate::domain::ids::RequestId>() else {
            return pages::not_found().await;
        };
        match crate::ingest::requests::view(&app.api, id, &s.person.org).await {
            Ok(Some(v)) if v.holder == s.person.org.as_str() && v.closed_at.is_none() => {
                d.fields.extend([
                    ("answers".to_owned(), v.request_id),
                    ("to".to_owned(), v.requester),
                    ("purpose".to_owned(), v.purpose),
                    ("basis".to_owned(), v.lawful_basis),
                ]);
            }
            Ok(_) => return pages::not_found().await,
            Err(e) => return pages::store_down(&e),
        }
    }
    if let Some(given) = corrects {
        let Ok(id) = given.parse::<crate::domain::ids::TransferId>() else {
            return pages::not_found().await;
        };
        let (key, org) = (id.to_string(), s.person.org.clone());
        match app
            .api
            .store
            .read(move |c| crate::store::transfer_status(c, &key, &org))
            .await
        {
            Ok(Some(_)) => d.fields.push(("correction_of".into(), id.to_string())),
            Ok(None) => return pages::not_found().await,
            Err(e) => return pages::store_down(&e),
        }
    }
    // Answering a request, the first pages are answered already: go on from the first that
    // is not (each can still be changed from "check your answers").
    let first = if d.one("answers").is_empty() {
        Step::To
    } else {
        next(&d, &cx)
    };
    page(first, &d, &cx, Vec::new(), &s)
}

/// One page answered: its errors, or the next page (a "change" button goes to its page).
pub async fn answer(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    body: axum::body::Bytes,
) -> Response {
    if !s.person.may(Role::Share) {
        return refuse_without_share_role();
    }
    let pairs = super::form_pairs(&body);
    let step = pairs
        .iter()
        .find(|(k, _)| k == "step")
        .and_then(|(_, v)| Step::parse(v))
        .unwrap_or(Step::To);
    let goto = pairs
        .iter()
        .find(|(k, _)| k == "goto")
        .and_then(|(_, v)| Step::parse(v));
    let given = Draft::from_pairs(pairs);
    let reg = app.api.registry.current();
    let cx = Cx {
        reg: &reg,
        org: &s.person.org,
        today: crate::clock::now().date(),
        max_payload: app.api.limits.max_payload_bytes,
    };
    let mut d = given.clone();
    if let Some(to) = goto {
        return page(to, &d, &cx, Vec::new(), &s);
    }
    d.answer(step, &given);
    let errors = if applies(step, &d) {
        problems(step, &d, &cx)
    } else {
        Vec::new()
    };
    if !errors.is_empty() {
        return page(step, &d, &cx, errors, &s);
    }
    page(next(&d, &cx), &d, &cx, Vec::new(), &s)
}

/// The envelope `POST /v1/transfers` would get for these answers, with the person as the
/// practitioner.
fn envelope(d: &Draft, s: &SignedIn, file_name: Option<&str>) -> serde_json::Value {
    let reason = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let mut e = json!({
        "recipients": d.all("to"),
        "purpose": d.one("purpose"),
        "justification": d.one("justification"),
        "lawful_basis": d.one("basis"),
        "data_categories": d.all("cat"),
        "marking": d.one("marking"),
        "practitioner": {
            "name": s.person.name,
            "role": s.person.title,
            "contact": s.person.email,
        },
        "consent": {"status": d.one("consent"), "reason": reason(d.one("consent_reason"))},
        "subject_informed": {"informed": d.one("informed") == "yes", "reason": reason(d.one("informed_reason"))},
        "urgency": {"level": d.one("urgency"), "reason": reason(d.one("urgency_reason"))},
        "disclosed_summary": d.one("summary"),
        "retention": {"days": d.one("days").parse::<u32>().unwrap_or(365)},
        "subject_refs": references(d)
            .into_iter()
            .map(|(scheme, value)| format!("{scheme}:{value}"))
            .collect::<Vec<_>>(),
    });
    if let Some(obj) = e.as_object_mut() {
        if d.special() {
            obj.insert(
                "special_category_condition".into(),
                json!(d.one("condition")),
            );
        }
        if !d.one("answers").is_empty() {
            obj.insert(
                "request".into(),
                json!({"request_id": d.one("answers"), "answer": d.one("request")}),
            );
        } else if d.one("request") == "yes" {
            obj.insert(
                "request".into(),
                json!({"reference": d.one("request_ref"), "requested": d.one("request_what")}),
            );
        }
        if let Some(f) = file_name {
            obj.insert("file_name".into(), json!(f));
        }
        if !d.one("correction_of").is_empty() {
            obj.insert("correction_of".into(), json!(d.one("correction_of")));
        }
        // A reason that is null is refused by the envelope parser: leave it out instead.
        for key in ["consent", "subject_informed", "urgency"] {
            if let Some(o) = obj.get_mut(key).and_then(|v| v.as_object_mut()) {
                o.retain(|_, v| !v.is_null());
            }
        }
    }
    e
}

/// The last page: the answers and the file, sent through the API's own path.
pub async fn send(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !s.person.may(Role::Share) {
        return refuse_without_share_role();
    }
    let reg = app.api.registry.current();
    let today = crate::clock::now().date();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return pages::problem(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Go back to the last page and press Send again.",
        );
    };
    // Room in memory for the upload, before a byte of the form is read (as the API reserves
    // it before its body): the answers, then the file.
    let sender = crate::ingest::Sender::Organisation(s.person.org.clone());
    let Ok(room) = app
        .api
        .upload_memory
        .reserve(sender, crate::ingest::declared_length(&headers))
        .await
    else {
        return pages::busy();
    };
    let limits = &app.api.limits;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(limits.max_payload_bytes.saturating_add(1024 * 1024))
            .for_field("payload", limits.max_payload_bytes)
            .per_field(64 * 1024),
    );
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    // The answers come first (the page puts them before the file), then the file.
    let mut pairs = Vec::new();
    let payload = loop {
        match form.next_field().await {
            Ok(Some(f)) if f.name() == Some("payload") => break Some(f),
            // The form has a few dozen answers; more is not this site's form.
            Ok(Some(_)) if pairs.len() >= 200 => return too_large_or_broken(),
            Ok(Some(f)) => {
                let name = f.name().unwrap_or_default().to_owned();
                match f.text().await {
                    Ok(v) => pairs.push((name, v)),
                    Err(_) => return too_large_or_broken(),
                }
            }
            Ok(None) => break None,
            Err(_) => return too_large_or_broken(),
        }
    };
    let d = Draft::from_pairs(pairs);
    let cx = Cx {
        reg: &reg,
        org: &s.person.org,
        today,
        max_payload: limits.max_payload_bytes,
    };
    // The answers are not checked again here: the envelope parser and the policy judge them,
    // as they judge an agency system's, and record the outcome (an altered form's refusal is
    // evidence too). A registry reloaded since the pages were shown is judged the same way.
    let file_name = payload
        .as_ref()
        .and_then(|f| f.file_name())
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let Some(payload) = payload.filter(|_| file_name.is_some()) else {
        return check_page(
            &d,
            &cx,
            vec![FieldError::new("payload", "Select the file to share")],
            &s,
        );
    };
    let env = envelope(&d, &s, None);
    let Ok(bytes) = serde_json::to_vec(&env) else {
        return pages::server_error();
    };
    let person = Submitter {
        org: s.person.org.clone(),
        certificate: String::new(),
        person: Some(s.person.email.clone()),
    };
    let answer = crate::ingest::routes::submit_from_web(
        app.api.clone(),
        person,
        headers,
        bytes,
        form,
        payload,
        room,
    )
    .await;
    outcome(answer, &reg, &s).await
}

fn too_large_or_broken() -> Response {
    pages::problem(
        StatusCode::BAD_REQUEST,
        "The file could not be sent",
        "The upload was interrupted or the form was too large. Nothing was shared. Go back and try again.",
    )
}

/// The API's answer, as a page: the confirmation, the refusal in plain words, or what to fix.
async fn outcome(answer: Response, reg: &Registry, s: &SignedIn) -> Response {
    let status = answer.status();
    let Ok(body) = axum::body::to_bytes(answer.into_body(), 1024 * 1024).await else {
        return pages::server_error();
    };
    if status == StatusCode::ACCEPTED {
        let Ok(a) = serde_json::from_slice::<Accepted>(&body) else {
            return pages::server_error();
        };
        let t = crate::store::web::SentTransfer {
            id: a.transfer_id.clone(),
            received_at: a.received_at.clone(),
            purpose: String::new(),
            recipients: a
                .recipients
                .iter()
                .map(|r| crate::store::RecipientStatus {
                    recipient: r.recipient.clone(),
                    agreement: r.agreement.clone(),
                    channel: String::new(),
                    state: "queued".into(),
                    attempts: 0,
                    next_attempt_at: None,
                    last_error: None,
                    delivered_at: None,
                    receipt: None,
                    updated_at: String::new(),
                })
                .collect(),
        };
        return pages::render(&SharedPage {
            title: "Shared",
            t: transfers::view(reg, &t),
            errors: Vec::new(),
            who: transfers::who(s),
        });
    }
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let code = problem["code"].as_str().unwrap_or("").to_owned();
    let detail = problem["detail"].as_str().unwrap_or("").to_owned();
    let id = problem["transfer_id"].as_str().map(reference);
    if let Some(rule) = Rule::ALL.iter().find(|r| r.refusal_code() == code) {
        let recipient = problem["recipient"]
            .as_str()
            .and_then(|r| r.parse::<OrgId>().ok())
            .and_then(|r| reg.organisation(&r))
            .map_or_else(|| "the recipient".to_owned(), |o| o.name.clone());
        return pages::render_status(
            StatusCode::FORBIDDEN,
            &RefusedPage {
                title: "Not shared",
                why: format!(
                    "Postern did not share this, because one of the rules your agreements set was not met. {}",
                    plain_refusal(*rule, &recipient)
                ),
                what_to_do: what_to_do(*rule).to_owned(),
                reference: id,
                code: Some(code),
                errors: Vec::new(),
                who: transfers::who(s),
            },
        );
    }
    let (title, what) = match status.as_u16() {
        413 => (
            "The file is too large",
            "Send a smaller file, or split it into parts.",
        ),
        507 | 503 => (
            "Postern cannot take this now",
            "Nothing was shared. Try again in a few minutes.",
        ),
        _ => (
            "Not shared",
            "Go back, check your answers and try again. If it keeps happening, tell your IT team.",
        ),
    };
    pages::render_status(
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST),
        &RefusedPage {
            title,
            why: detail,
            what_to_do: what.to_owned(),
            reference: id,
            code: (!code.is_empty()).then_some(code),
            errors: Vec::new(),
            who: transfers::who(s),
        },
    )
}

/// The rule that refused a share, in words a volunteer understands (no ids).
fn plain_refusal(rule: Rule, recipient: &str) -> String {
    match rule {
        Rule::AgreementExists => format!("Your organisation has no information sharing agreement with {recipient}."),
        Rule::AgreementInForce => format!("Your agreement with {recipient} is not in force today."),
        Rule::PurposeInAgreement => format!("Your agreement with {recipient} does not cover this reason for sharing."),
        Rule::LawfulBasisInAgreement => format!("Your agreement with {recipient} does not allow this lawful basis."),
        Rule::LawfulBasisFitsPurpose => "The lawful basis you chose does not fit the reason for sharing.".to_owned(),
        Rule::PurposeKnown => "The reason for sharing is not one this gateway knows.".to_owned(),
        Rule::StatutoryOnlySender | Rule::StatutoryOnlyRecipient => "This reason for sharing is a legal gateway that only public (statutory) bodies may use with each other.".to_owned(),
        Rule::SpecialCategoryCondition => "Special category information needs a condition from UK GDPR Article 9.".to_owned(),
        Rule::SpecialCategoryPermitted => "This reason for sharing does not allow special category information.".to_owned(),
        Rule::MarkingWithinClearance | Rule::MarkingWithinChannel | Rule::MarkingWithinAgreement => format!("{recipient} cannot receive information at this marking through Postern."),
        Rule::MarkingWithinGateway => "Postern does not carry information marked SECRET or above.".to_owned(),
        Rule::RecipientRegistered | Rule::RecipientHasEndpoint => format!("{recipient} cannot receive through Postern."),
        Rule::OriginatorPermission => "Information that came from another organisation needs that organisation's permission to share on.".to_owned(),
        Rule::SenderRegistered => "Your organisation is not registered with this gateway.".to_owned(),
    }
}

/// What a person can do about a refusal under each rule.
fn what_to_do(rule: Rule) -> &'static str {
    match rule {
        Rule::AgreementExists
        | Rule::AgreementInForce
        | Rule::PurposeInAgreement
        | Rule::LawfulBasisInAgreement
        | Rule::StatutoryOnlySender
        | Rule::StatutoryOnlyRecipient => {
            "Ask your safeguarding lead or data protection officer whether an agreement covers this share. If a child is at immediate risk, call the police on 999 or the children's services duty team."
        }
        Rule::MarkingWithinClearance
        | Rule::MarkingWithinChannel
        | Rule::MarkingWithinAgreement
        | Rule::MarkingWithinGateway => {
            "The recipient cannot receive information at that marking through Postern. Check the marking with your safeguarding lead."
        }
        _ => {
            "Check your answers and try again, or ask your safeguarding lead or data protection officer."
        }
    }
}
