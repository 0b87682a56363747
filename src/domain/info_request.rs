//! A request for information: one organisation asks another, in writing, for what it holds
//! about a person, for a purpose and on a lawful basis, with its grounds. The protocols say the
//! data holding agency answers within fifteen working days (`calendar`); the policy decides
//! whether the two may exchange for that purpose at all (`policy::evaluate_request`).
//!
//! Sits where the envelope does: ingest reads the JSON, this validates it (every problem at
//! once), and the store keeps the request and its clock.

use serde::{Deserialize, Serialize};

use super::envelope::{
    self, FieldError, RawPractitioner, RawUrgency, Sensitive, Urgency, limits, patterns,
};
use super::fields::{Collector, incomplete, read_json};
use super::ids::{OrgId, PurposeId, SLUG_PATTERN};
use super::lawful::LawfulBasis;
use super::subject::SubjectRef;

pub use super::envelope::Practitioner;

/// A request for information: what one organisation asks another for, and why. Sent as JSON to
/// `POST /v1/requests`.
///
/// The gateway reports every missing or invalid field at once (422 `invalid_request`). The
/// requester is the organisation the client certificate maps to; it is never part of the body.
/// Passing validation does not mean the request may be made: policy then decides (403), as for a
/// share between the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "InformationRequest", title = "InformationRequest")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["holder", "purpose", "lawful_basis", "requested", "grounds", "subject_refs", "urgency", "practitioner"]))]
pub struct RawInfoRequest {
    /// The organisation asked: the data holding agency, by its registered id. Never the requester
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, pattern(SLUG_PATTERN), length(max = 64))]
    pub holder: Option<String>,
    /// The id of the configured purpose the information is wanted for, e.g.
    /// `child-protection-s47`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, pattern(SLUG_PATTERN), length(max = 64))]
    pub purpose: Option<String>,
    /// The UK GDPR Article 6(1) basis the answer would be shared on. It must fit the purpose and
    /// an agreement between the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, with = "Option<LawfulBasis>")]
    pub lawful_basis: Option<String>,
    /// What is requested, in words the holder can act on. Recorded in the transfer log, in clear,
    /// for data protection officers, since what was requested may differ from what is disclosed;
    /// never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::REASON), pattern(patterns::NOT_BLANK))]
    pub requested: Option<String>,
    /// Why the information is needed: the grounds the holder weighs before it shares. Recorded
    /// like `requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::JUSTIFICATION), pattern(patterns::NOT_BLANK))]
    pub grounds: Option<String>,
    /// Who it is about: references written `scheme:value` as in the envelope (an `nhs` value must
    /// be a valid NHS number). At least one; repeats are ignored. The gateway keeps only keyed
    /// hashes of them; the holder sees them in the request it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = limits::MAX_SUBJECT_REFS))]
    #[schemars(inner(pattern(patterns::SUBJECT_REF)))]
    pub subject_refs: Option<Vec<String>>,
    /// `routine` (answered within fifteen working days), or `urgent` with the reason (answered
    /// within hours; an urgent request made by telephone is followed up in writing with this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub urgency: Option<RawUrgency>,
    /// Who is asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub practitioner: Option<RawPractitioner>,
}

/// A validated request for information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub holder: OrgId,
    pub purpose: PurposeId,
    pub lawful_basis: LawfulBasis,
    pub requested: Sensitive,
    pub grounds: Sensitive,
    pub subject_refs: Vec<SubjectRef>,
    pub urgency: Urgency,
    pub practitioner: Practitioner,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoRequestError {
    /// Not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields are missing or invalid (422). Never empty.
    #[error("the body has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Parses and validates the JSON body of a request for information made by `requester`.
pub fn parse_json(bytes: &[u8], requester: &OrgId) -> Result<InfoRequest, InfoRequestError> {
    let raw = read_json(
        bytes,
        ("request", &["practitioner", "urgency"]),
        InfoRequestError::Malformed,
        InfoRequestError::Invalid,
    )?;
    parse(raw, requester)
}

/// Validates a raw request, reporting every problem at once.
pub fn parse(raw: RawInfoRequest, requester: &OrgId) -> Result<InfoRequest, InfoRequestError> {
    let mut c = Collector(Vec::new());

    let holder = c
        .text(
            raw.holder,
            "holder",
            limits::SHORT_TEXT,
            "the organisation asked (its registered id)",
        )
        .and_then(|h| match h.parse::<OrgId>() {
            Ok(id) if &id == requester => {
                c.invalid("holder", "`holder` is the requesting organisation itself");
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                c.invalid("holder", "`holder` is not an organisation id: use the id the gateway registers it under (lower-case letters, digits, '-', '_', '.')");
                None
            }
        });

    let purpose = c
        .text(
            raw.purpose,
            "purpose",
            limits::SHORT_TEXT,
            "the purpose id of this request",
        )
        .and_then(|p| match p.parse::<PurposeId>() {
            Ok(p) => Some(p),
            Err(_) => {
                c.invalid(
                    "purpose",
                    "`purpose` is not a purpose id (e.g. child-protection-s47)",
                );
                None
            }
        });

    let lawful_basis = c
        .text(
            raw.lawful_basis,
            "lawful_basis",
            limits::SHORT_TEXT,
            "the UK GDPR Article 6 basis",
        )
        .and_then(|b| match LawfulBasis::parse(&b) {
            Some(b) => Some(b),
            None => {
                c.invalid(
                    "lawful_basis",
                    format!(
                        "`lawful_basis` is not a lawful basis; use one of {}",
                        LawfulBasis::expected()
                    ),
                );
                None
            }
        });

    let requested = c.text(
        raw.requested,
        "requested",
        limits::REASON,
        "what is requested",
    );
    let grounds = c.text(
        raw.grounds,
        "grounds",
        limits::JUSTIFICATION,
        "why the information is needed",
    );

    let subject_refs = envelope::subject_refs(
        &mut c,
        raw.subject_refs,
        "request",
        Some((
            "who the request is about (`scheme:value`)",
            "`subject_refs` is empty: name at least one reference to the person it is about",
        )),
    );

    let urgency = envelope::urgency(&mut c, raw.urgency, "why this request is urgent");

    let practitioner = match raw.practitioner {
        None => {
            c.missing("practitioner", "who is asking (name, role, contact)");
            None
        }
        Some(p) => envelope::practitioner(&mut c, p, "how the holder can reach the practitioner"),
    };

    if !c.0.is_empty() {
        return Err(InfoRequestError::Invalid(c.0));
    }
    // Every `None` below has pushed an error above.
    let (
        Some(holder),
        Some(purpose),
        Some(lawful_basis),
        Some(requested),
        Some(grounds),
        Some(urgency),
        Some(practitioner),
    ) = (
        holder,
        purpose,
        lawful_basis,
        requested,
        grounds,
        urgency,
        practitioner,
    )
    else {
        return Err(InfoRequestError::Invalid(vec![incomplete("request")]));
    };
    Ok(InfoRequest {
        holder,
        purpose,
        lawful_basis,
        requested: Sensitive(requested),
        grounds: Sensitive(grounds),
        subject_refs,
        urgency,
        practitioner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::FieldProblem;
    use serde_json::{Value, json};

    fn valid() -> Value {
        json!({
            "holder": "northshire-cc",
            "purpose": "child-protection-s47",
            "lawful_basis": "public_task",
            "requested": "Any social care involvement with the family since 2024.",
            "grounds": "A strategy discussion is planned after a disclosure at school.",
            "subject_refs": ["nhs:943 476 5919"],
            "urgency": { "level": "routine" },
            "practitioner": { "name": "DC Lee", "role": "Detective constable", "contact": "lee@police.example" }
        })
    }

    fn police() -> OrgId {
        "northshire-police".parse().unwrap()
    }

    fn problems(v: &Value) -> Vec<(String, FieldProblem)> {
        match parse_json(v.to_string().as_bytes(), &police()) {
            Err(InfoRequestError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_request_parses() {
        let r = parse_json(valid().to_string().as_bytes(), &police()).unwrap();
        assert_eq!(r.holder.as_str(), "northshire-cc");
        assert_eq!(r.lawful_basis, LawfulBasis::PublicTask);
        assert_eq!(r.urgency, Urgency::Routine);
        assert_eq!(r.subject_refs.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = problems(&json!({ "urgency": { "level": "urgent" } }));
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "holder",
                "purpose",
                "lawful_basis",
                "requested",
                "grounds",
                "subject_refs",
                "urgency.reason",
                "practitioner"
            ]
        );
        assert!(got.iter().all(|(_, p)| *p == FieldProblem::MissingField));
    }

    #[test]
    fn the_requester_cannot_ask_itself_and_values_are_checked() {
        let mut v = valid();
        v["holder"] = json!("northshire-police");
        v["lawful_basis"] = json!("because");
        v["subject_refs"] = json!(["nhs:123"]);
        v["grounds"] = json!("   ");
        let got = problems(&v);
        assert_eq!(
            got,
            [
                ("holder".to_owned(), FieldProblem::InvalidValue),
                ("lawful_basis".to_owned(), FieldProblem::InvalidValue),
                ("grounds".to_owned(), FieldProblem::MissingField),
                ("subject_refs[0]".to_owned(), FieldProblem::InvalidValue),
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let mut v = valid();
        v["practitioner"]["badge"] = json!("1234");
        assert_eq!(
            problems(&v),
            [("practitioner.badge".to_owned(), FieldProblem::UnknownField)]
        );
    }
}
