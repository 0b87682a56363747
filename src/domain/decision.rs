//! Decisions recorded without a share: a practitioner's decision *not* to share (the seventh
//! golden rule: "record the decision, and the reasons for it, whether it is to share or not"),
//! and the rationale of an urgent share, written after the share itself ("share first, document
//! the rationale afterwards").
//!
//! Pure, like the envelope: ingest reads the JSON off the wire, this module turns it into typed
//! values and reports every field at fault at once, in the envelope's [`FieldError`] form.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::envelope::{
    self, FieldError, FieldProblem, RawPractitioner, RawRequest, Sensitive, limits, patterns,
};
use super::fields::{Collector, incomplete, read_json};
use super::ids::{OrgId, PurposeId, SLUG_PATTERN};
use super::lawful::DataCategory;
use super::registry::Registry;
use super::subject::SubjectRef;

// ---------------------------------------------------------------------------------------------
// The wire forms. Every field is optional here so that one request reports every missing or
// invalid field at once.

/// A practitioner's decision not to share (the seventh golden rule: the decision is recorded, with
/// its reasons, whether it is to share or not). No payload and nothing is sent to anyone: the
/// gateway records who decided (the organisation the client certificate maps to, never part of the
/// body), with whom sharing was considered, why not, and the request it answers.
///
/// As for the envelope, every missing or invalid field is reported at once (422 `invalid_decision`,
/// one entry in `errors` per field), except that a JSON value of the wrong type or an unknown field
/// is reported alone; unknown fields are rejected at every level; text is trimmed before it is
/// checked, lengths are in characters, and a required text that is blank is `missing_field`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Decision", title = "Decision")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["recipients", "reasons", "practitioner"]))]
pub struct RawDecision {
    /// The organisations sharing with was considered (organisation ids). At least one; no repeats;
    /// never the deciding organisation. Each must be an organisation registered with this gateway
    /// (otherwise `invalid_value`): the decision is filed under each recipient's registered id, and
    /// a mistyped id would file it where no data protection officer looks. No agreement is needed:
    /// nothing is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = limits::MAX_RECIPIENTS), extend("uniqueItems" = true))]
    #[schemars(inner(pattern(SLUG_PATTERN), length(max = 64)))]
    pub recipients: Option<Vec<String>>,
    // Optional members whose `null` is refused rather than taken for "left out": the record
    // must say only what was said.
    #[serde(
        default,
        deserialize_with = "super::fields::present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Optional: the id of the configured purpose the share would have had, e.g.
    /// `child-protection-s47`. Anything that is not a configured purpose is `invalid_value`. Blank
    /// is treated as absent.
    #[schemars(with = "Option<String>", pattern(SLUG_PATTERN), length(max = 64))]
    pub purpose: Option<Option<String>>,
    /// Why sharing was decided against. Recorded in the transfer log, in clear, for data protection
    /// officers; never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::JUSTIFICATION), pattern(patterns::NOT_BLANK))]
    pub reasons: Option<String>,
    /// Who made the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub practitioner: Option<RawPractitioner>,
    #[serde(
        default,
        deserialize_with = "super::fields::present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Optional: the request this decision answers. When present, both fields are required.
    #[schemars(with = "Option<RawRequest>")]
    pub request: Option<Option<RawRequest>>,
    #[serde(
        default,
        deserialize_with = "super::fields::present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Optional, but give them where there are any: references to the person (or people) the
    /// decision is about, written `scheme:value` as in the envelope (an `nhs` value must be a valid
    /// NHS number), so that a subject access request finds decisions not to share as well as
    /// shares. Repeats are ignored. The log keeps only keyed hashes of them (the same hashes as the
    /// envelope's); error messages never echo them.
    #[schemars(with = "Option<Vec<String>>", length(max = limits::MAX_SUBJECT_REFS))]
    #[schemars(inner(pattern(patterns::SUBJECT_REF)))]
    pub subject_refs: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "super::fields::present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Optional: which kinds of data sharing was considered for: `personal`, `special_category`
    /// and/or `criminal_offence`. Repeats are ignored; empty is the same as absent.
    #[schemars(with = "Option<Vec<DataCategory>>")]
    pub data_categories: Option<Option<Vec<String>>>,
}

/// The rationale of an urgent share, added after the share. Every missing or invalid field is
/// reported at once (422 `invalid_rationale`), except that a JSON value of the wrong type or an
/// unknown field is reported alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Rationale", title = "Rationale")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["justification"]))]
pub struct RawRationale {
    /// Why the share was necessary and proportionate, and why the public interest outweighed the
    /// duty of confidentiality. Recorded in the transfer log, in clear, for data protection
    /// officers; never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::JUSTIFICATION), pattern(patterns::NOT_BLANK))]
    pub justification: Option<String>,
    /// Optional: who writes the rationale, when it is not the practitioner who shared (the envelope
    /// names that one). When present, all three fields are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<RawPractitioner>,
}

// ---------------------------------------------------------------------------------------------
// The validated forms. The practitioner and the request are the envelope's own, read by the
// same code.

pub use super::envelope::{Practitioner, Request};

/// A decision not to share: who decided (the caller, passed in), with whom sharing was
/// considered, why not, and what it answers. Never a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub recipients: Vec<OrgId>,
    pub purpose: Option<PurposeId>,
    pub reasons: Sensitive,
    pub practitioner: Practitioner,
    pub request: Option<Request>,
    pub subject_refs: Vec<SubjectRef>,
    pub data_categories: BTreeSet<DataCategory>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rationale {
    pub justification: Sensitive,
    pub practitioner: Option<Practitioner>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// Not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields are missing or invalid (422). Never empty.
    #[error("the body has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// What validating a decision needs besides the JSON: who decides, and the registry that says
/// which organisations and purposes exist.
pub struct DecisionContext<'a> {
    pub decider: &'a OrgId,
    pub registry: &'a Registry,
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// Parses and validates the JSON body of a decision not to share.
pub fn parse_decision(bytes: &[u8], cx: &DecisionContext<'_>) -> Result<Decline, DecisionError> {
    let raw = read_json(
        bytes,
        ("decision", &["practitioner", "request"]),
        DecisionError::Malformed,
        DecisionError::Invalid,
    )?;
    decision(raw, cx)
}

/// Parses and validates the JSON body of a rationale.
pub fn parse_rationale(bytes: &[u8]) -> Result<Rationale, DecisionError> {
    let raw = read_json(
        bytes,
        ("body", &["practitioner"]),
        DecisionError::Malformed,
        DecisionError::Invalid,
    )?;
    rationale(raw)
}

/// Validates a raw decision, reporting every problem at once.
///
/// Recipients must be organisations registered here: the log files a decision under each
/// recipient's registered id, and a mistyped id would file it where no data protection officer
/// will look. A purpose, when given, must be a configured one for the same reason.
pub fn decision(raw: RawDecision, cx: &DecisionContext<'_>) -> Result<Decline, DecisionError> {
    let mut c = Collector(Vec::new());

    let mut recipients = Vec::new();
    match raw.recipients {
        None => c.missing(
            "recipients",
            "the organisations sharing with was considered (their registered ids)",
        ),
        Some(list) if list.is_empty() => c.push(
            FieldProblem::MissingField,
            "recipients",
            "`recipients` is empty: name at least one organisation sharing with was considered",
        ),
        Some(list) if list.len() > limits::MAX_RECIPIENTS => c.invalid(
            "recipients",
            format!("at most {} recipients per decision", limits::MAX_RECIPIENTS),
        ),
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                let field = format!("recipients[{i}]");
                match r.trim().parse::<OrgId>() {
                    Err(_) => c.invalid(field.clone(), format!("`{field}` is not an organisation id: use the id the gateway registers it under (lower-case letters, digits, '-', '_', '.')")),
                    Ok(id) if &id == cx.decider => c.invalid(
                        field.clone(),
                        format!("`{field}` is the deciding organisation itself"),
                    ),
                    Ok(id) if recipients.contains(&id) => {
                        c.invalid(field.clone(), format!("`{field}` repeats an earlier recipient"))
                    }
                    Ok(id) if cx.registry.organisation(&id).is_none() => c.invalid(
                        field.clone(),
                        format!("`{field}` is not an organisation registered with this gateway"),
                    ),
                    Ok(id) => recipients.push(id),
                }
            }
        }
    }

    let raw_purpose = c.not_null(raw.purpose, "purpose");
    let purpose = c
        .optional_text(raw_purpose, "purpose", limits::SHORT_TEXT)
        .and_then(|p| match p.parse::<PurposeId>() {
            Ok(p) if cx.registry.purpose(&p).is_some() => Some(p),
            _ => {
                c.invalid("purpose", "`purpose` is not a purpose configured on this gateway: use its id (e.g. child-protection-s47)");
                None
            }
        });

    let reasons = c.text(
        raw.reasons,
        "reasons",
        limits::JUSTIFICATION,
        "why sharing was decided against",
    );

    let practitioner = match raw.practitioner {
        None => {
            c.missing(
                "practitioner",
                "who made this decision (name, role, contact)",
            );
            None
        }
        Some(p) => practitioner(&mut c, p),
    };

    let request = c.not_null(raw.request, "request").and_then(|r| {
        envelope::request(
            &mut c,
            r,
            "the reference of the request this decision answers",
            "what was requested",
            false,
        )
    });

    let refs = c.not_null(raw.subject_refs, "subject_refs");
    let subject_refs = envelope::subject_refs(&mut c, refs, "decision", None);

    let mut data_categories = BTreeSet::new();
    let categories = c.not_null(raw.data_categories, "data_categories");
    for (i, d) in categories.unwrap_or_default().iter().enumerate() {
        match DataCategory::parse(d.trim()) {
            Some(cat) => {
                data_categories.insert(cat);
            }
            None => c.invalid(
                format!("data_categories[{i}]"),
                format!(
                    "`data_categories[{i}]` is not a data category; use one of {}",
                    DataCategory::expected()
                ),
            ),
        }
    }

    if !c.0.is_empty() {
        return Err(DecisionError::Invalid(c.0));
    }
    // Every `None` below has pushed an error above.
    let (Some(reasons), Some(practitioner)) = (reasons, practitioner) else {
        return Err(DecisionError::Invalid(vec![incomplete("body")]));
    };
    Ok(Decline {
        recipients,
        purpose,
        reasons: Sensitive(reasons),
        practitioner,
        request,
        subject_refs,
        data_categories,
    })
}

/// Validates a raw rationale, reporting every problem at once.
pub fn rationale(raw: RawRationale) -> Result<Rationale, DecisionError> {
    let mut c = Collector(Vec::new());
    let justification = c.text(
        raw.justification,
        "justification",
        limits::JUSTIFICATION,
        "why the share was necessary and why the public interest outweighed confidentiality",
    );
    let practitioner = raw.practitioner.map(|p| practitioner(&mut c, p));
    if !c.0.is_empty() {
        return Err(DecisionError::Invalid(c.0));
    }
    let Some(justification) = justification else {
        return Err(DecisionError::Invalid(vec![incomplete("body")]));
    };
    Ok(Rationale {
        justification: Sensitive(justification),
        practitioner: practitioner.flatten(),
    })
}

/// A decision's or a rationale's practitioner, read as the envelope reads its own.
fn practitioner(c: &mut Collector, p: RawPractitioner) -> Option<Practitioner> {
    envelope::practitioner(c, p, "how the practitioner can be reached")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::marking::Rank;
    use crate::domain::marking::tests::demo_scheme;
    use crate::domain::registry::{Channel, Endpoint, OrgKind, Organisation, Purpose, Sector};
    use serde_json::json;

    pub(crate) fn registry() -> Registry {
        let org = |id: &str| Organisation {
            id: id.parse().unwrap(),
            name: id.to_uppercase(),
            kind: OrgKind::Statutory(Sector::LocalAuthority),
            clearance: Rank::Level(1),
            identities: vec![],
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: Some(Endpoint {
                channel: Channel::Inbox,
                age_recipients: vec![],
                ceiling: None,
            }),
        };
        Registry::new(
            demo_scheme(),
            vec![
                org("northshire-cc"),
                org("northshire-police"),
                org("riverside-youth"),
            ],
            vec![Purpose {
                id: "child-protection-s47".parse().unwrap(),
                title: "Child protection enquiry".into(),
                lawful_bases: [crate::domain::lawful::LawfulBasis::PublicTask].into(),
                statutory_only: false,
                special_category: true,
            }],
            vec![],
            vec![],
        )
        .unwrap()
    }

    pub(crate) fn valid_json() -> serde_json::Value {
        json!({
            "recipients": ["northshire-police", "riverside-youth"],
            "purpose": "child-protection-s47",
            "reasons": "REASONS-SENTINEL: sharing now would alert the household to the enquiry.",
            "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire.gov.example"},
            "request": {"reference": "REQ-2026-0042", "requested": "Case notes for the family"},
            "subject_refs": ["nhs:9434765919", "case:ABC123"],
            "data_categories": ["personal", "special_category"]
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Decline, DecisionError> {
        let decider: OrgId = "northshire-cc".parse().unwrap();
        let registry = registry();
        let cx = DecisionContext {
            decider: &decider,
            registry: &registry,
        };
        parse_decision(v.to_string().as_bytes(), &cx)
    }

    fn errors(v: &serde_json::Value) -> Vec<(String, FieldProblem)> {
        match parse(v) {
            Err(DecisionError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn patched(patch: serde_json::Value) -> serde_json::Value {
        let mut v = valid_json();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v
    }

    #[test]
    fn a_complete_decision_parses() {
        let d = parse(&valid_json()).unwrap();
        assert_eq!(d.recipients.len(), 2);
        assert_eq!(d.subject_refs.len(), 2);
        assert!(d.request.is_some());
        assert_eq!(d.data_categories.len(), 2);
        // The minimum: who considered, who decided, why not.
        let d = parse(&json!({
            "recipients": ["northshire-police"],
            "reasons": "Not proportionate.",
            "practitioner": {"name": "A", "role": "B", "contact": "C"}
        }))
        .unwrap();
        assert!(d.purpose.is_none() && d.request.is_none() && d.subject_refs.is_empty());
    }

    #[test]
    fn every_missing_required_field_is_named_at_once() {
        let got = errors(&json!({}));
        assert_eq!(
            got,
            vec![
                ("recipients".to_owned(), FieldProblem::MissingField),
                ("reasons".to_owned(), FieldProblem::MissingField),
                ("practitioner".to_owned(), FieldProblem::MissingField),
            ]
        );
    }

    #[test]
    fn invalid_fields_are_each_reported() {
        let table: Vec<(serde_json::Value, &str, FieldProblem)> = vec![
            (
                json!({"recipients": []}),
                "recipients",
                FieldProblem::MissingField,
            ),
            (
                json!({"recipients": ["northshire-cc"]}),
                "recipients[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": ["Not An Id"]}),
                "recipients[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": ["nobody-registered"]}),
                "recipients[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": ["northshire-police", "northshire-police"]}),
                "recipients[1]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"purpose": "not-configured"}),
                "purpose",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"reasons": "  "}),
                "reasons",
                FieldProblem::MissingField,
            ),
            (
                json!({"reasons": "x".repeat(limits::JUSTIFICATION + 1)}),
                "reasons",
                FieldProblem::TooLong,
            ),
            (
                json!({"practitioner": {"name": "A", "role": "B"}}),
                "practitioner.contact",
                FieldProblem::MissingField,
            ),
            (
                json!({"request": {"reference": "R1"}}),
                "request.requested",
                FieldProblem::MissingField,
            ),
            (
                json!({"subject_refs": ["nhs:1234567890"]}),
                "subject_refs[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"data_categories": ["gossip"]}),
                "data_categories[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"payload": "x"}),
                "payload",
                FieldProblem::UnknownField,
            ),
            (json!({"reasons": 7}), "reasons", FieldProblem::InvalidValue),
        ];
        for (patch, field, code) in table {
            let got = errors(&patched(patch.clone()));
            assert!(
                got.contains(&(field.to_owned(), code)),
                "{patch}: expected {field} {code:?}, got {got:?}"
            );
        }
        assert!(matches!(
            parse_decision(
                b"{\"recipients\": [",
                &DecisionContext {
                    decider: &"a".parse().unwrap(),
                    registry: &registry()
                }
            ),
            Err(DecisionError::Malformed(_))
        ));
    }

    #[test]
    fn submitted_values_are_never_echoed_in_errors() {
        let sentinel = "9434765919";
        for patch in [
            json!({"recipients": ["Nhs 9434765919"]}),
            json!({"recipients": ["x9434765919"]}),
            json!({"purpose": "p9434765919"}),
            json!({"subject_refs": ["nhs:9434765918"]}),
            json!({"subject_refs": "nhs:9434765919"}),
            json!({"data_categories": ["9434765919"]}),
            json!({"9434765919": true}),
            json!({"reasons": ["9434765919"]}),
        ] {
            let Err(DecisionError::Invalid(errs)) = parse(&patched(patch.clone())) else {
                panic!("{patch} should be invalid")
            };
            for e in errs {
                assert!(
                    !e.message.contains(sentinel) && !e.field.contains(sentinel),
                    "{patch}: {e:?}"
                );
            }
        }
        let ok = parse(&valid_json()).unwrap();
        assert!(!format!("{ok:?}").contains("REASONS-SENTINEL"));
        assert!(!format!("{ok:?}").contains(sentinel));
    }

    #[test]
    fn a_rationale_needs_its_justification_and_a_whole_practitioner_if_any() {
        let ok = parse_rationale(br#"{"justification": "Immediate risk of harm."}"#).unwrap();
        assert!(ok.practitioner.is_none());
        assert!(!format!("{ok:?}").contains("Immediate"));
        let with = parse_rationale(
            br#"{"justification": "J", "practitioner": {"name": "A", "role": "B", "contact": "C"}}"#,
        )
        .unwrap();
        assert_eq!(with.practitioner.map(|p| p.name), Some("A".to_owned()));
        let Err(DecisionError::Invalid(errs)) =
            parse_rationale(br#"{"practitioner": {"name": "A"}, "why": 1}"#)
        else {
            panic!("invalid")
        };
        // An unknown field is reported alone (the JSON is read in one pass), like the envelope's.
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, FieldProblem::UnknownField);
        let Err(DecisionError::Invalid(errs)) =
            parse_rationale(br#"{"justification": " ", "practitioner": {"name": "A"}}"#)
        else {
            panic!("invalid")
        };
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["justification", "practitioner.role", "practitioner.contact"]
        );
        assert!(matches!(
            parse_rationale(b"not json"),
            Err(DecisionError::Malformed(_))
        ));
    }
}
