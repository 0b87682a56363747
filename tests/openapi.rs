//! Keeps `docs/openapi.json` true to the code: the routes, the problem codes and their statuses,
//! the envelope (its fields, which are required, its vocabularies and limits, and a worked
//! example that the real parser accepts) and the shape of every answer body.

use std::collections::{BTreeMap, BTreeSet};

use postern_gateway::domain::envelope::{
    self, Envelope, EnvelopeError, FieldProblem, ParseContext, RawConsent, RawEnvelope,
    RawPractitioner, RawRequest, RawRetention, RawSubjectInformed, RawUrgency, limits,
};
use postern_gateway::domain::ids::OrgId;
use postern_gateway::domain::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use postern_gateway::domain::marking::MarkingScheme;
use postern_gateway::domain::policy::Rule;
use postern_gateway::ingest::ROUTES;
use postern_gateway::ingest::problem::{CODES, Problem, ProblemField};
use postern_gateway::ingest::routes::{Accepted, AcceptedPayload, AcceptedRecipient};
use postern_gateway::store::{RecipientStatus, TransferStatus};
use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../docs/openapi.json");

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The nested objects of the envelope, each a `Raw*` struct in the code.
const NESTED: &[&str] = &[
    "practitioner",
    "consent",
    "subject_informed",
    "urgency",
    "request",
    "retention",
];

// ---------------------------------------------------------------------------------------------
// Reading the document.

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is not valid JSON")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "components.schemas.{name} is missing");
    s
}

fn envelope_schema(doc: &Value) -> &Value {
    schema(doc, "Envelope")
}

/// The schema of one envelope property (`"purpose"`) or nested property (`"consent.reason"`).
fn property<'a>(envelope: &'a Value, path: &str) -> &'a Value {
    let mut s = envelope;
    for part in path.split('.') {
        s = &s["properties"][part];
    }
    assert!(s.is_object(), "Envelope has no property {path}");
    s
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

fn properties(schema: &Value) -> BTreeSet<String> {
    keys(&schema["properties"])
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("expected a string, got {s}"))
                    .to_owned()
            })
            .collect(),
        other => panic!("expected an array of strings, got {other}"),
    }
}

fn required(schema: &Value) -> BTreeSet<String> {
    strings(&schema["required"]).into_iter().collect()
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} does not resolve"))
        }
        None => v,
    }
}

/// Every (method, path, operation) in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if HTTP_METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op));
            }
        }
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// Parsing envelopes the way the gateway does.

/// The marking scheme of the demo configuration (as `demo_scheme()` in the marking tests).
fn marking_scheme() -> MarkingScheme {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let legacy = [
        ("NOT PROTECTIVELY MARKED", "OFFICIAL"),
        ("PROTECT", "OFFICIAL"),
        ("RESTRICTED", "OFFICIAL-SENSITIVE"),
        ("CONFIDENTIAL", "SECRET"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    MarkingScheme::new(
        &s(&["OFFICIAL", "OFFICIAL-SENSITIVE"]),
        &s(&["PERSONAL", "COMMERCIAL", "LOCSEN"]),
        &legacy,
    )
    .expect("demo marking scheme")
}

fn parse(v: &Value) -> Result<Envelope, EnvelopeError> {
    let sender: OrgId = "northshire-cc".parse().unwrap();
    let scheme = marking_scheme();
    let cx = ParseContext {
        sender: &sender,
        marking: &scheme,
        today: time::OffsetDateTime::now_utc().date(),
    };
    envelope::parse_json(v.to_string().as_bytes(), &cx)
}

/// The field errors of an envelope that must be invalid.
fn errors(v: &Value) -> Vec<(String, FieldProblem)> {
    match parse(v) {
        Err(EnvelopeError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
        Err(EnvelopeError::Malformed(m)) => panic!("expected invalid, got malformed: {m}\n{v}"),
        Ok(_) => panic!("expected invalid, but it parsed:\n{v}"),
    }
}

fn assert_parses(v: &Value, why: &str) {
    if let Err(e) = parse(v) {
        panic!("{why}: the envelope should parse, but: {e:?}\n{v}");
    }
}

fn example(doc: &Value) -> Value {
    let ex = envelope_schema(doc)["example"].clone();
    assert!(ex.is_object(), "the Envelope schema has no example");
    ex
}

/// Sets (or with `None` removes) `path` (`"purpose"` or `"consent.reason"`) in an envelope.
fn edit(envelope: &Value, path: &str, value: Option<Value>) -> Value {
    let mut v = envelope.clone();
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut obj = &mut v;
    for p in parts {
        obj = obj.get_mut(p).unwrap_or_else(|| panic!("{path}: no {p}"));
    }
    let map = obj.as_object_mut().expect("an object");
    match value {
        Some(x) => {
            map.insert(last.to_owned(), x);
        }
        None => {
            map.remove(last);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Values of the Rust types with every optional field set, so that every key serialises.

fn full_raw_envelope() -> RawEnvelope {
    RawEnvelope {
        recipients: Some(vec!["northshire-police".into()]),
        purpose: Some("p".into()),
        justification: Some("j".into()),
        lawful_basis: Some("public_task".into()),
        special_category_condition: Some("safeguarding_children".into()),
        data_categories: Some(vec!["personal".into()]),
        marking: Some("OFFICIAL".into()),
        originator: Some("o".into()),
        originator_permission_ref: Some("r".into()),
        practitioner: Some(RawPractitioner {
            name: Some("n".into()),
            role: Some("r".into()),
            contact: Some("c".into()),
        }),
        consent: Some(RawConsent {
            status: Some("given".into()),
            reason: Some("r".into()),
        }),
        subject_informed: Some(RawSubjectInformed {
            informed: Some(true),
            reason: Some("r".into()),
        }),
        urgency: Some(RawUrgency {
            level: Some("urgent".into()),
            reason: Some("r".into()),
        }),
        request: Some(RawRequest {
            reference: Some("r".into()),
            requested: Some("q".into()),
        }),
        disclosed_summary: Some("d".into()),
        retention: Some(RawRetention {
            until: Some("2030-01-01".into()),
            days: Some(1),
        }),
        subject_refs: Some(vec!["case:1".into()]),
        file_name: Some("f".into()),
        content_type: Some("text/plain".into()),
        correction_of: Some("c".into()),
    }
}

fn accepted() -> Accepted {
    Accepted {
        transfer_id: "t".into(),
        status: "accepted".into(),
        received_at: "at".into(),
        recipients: vec![AcceptedRecipient {
            recipient: "r".into(),
            agreement: "a".into(),
        }],
        payload: AcceptedPayload {
            size: 1,
            sha256: "s".into(),
        },
        status_url: "u".into(),
    }
}

fn recipient_status(set_optional: bool) -> RecipientStatus {
    RecipientStatus {
        recipient: "r".into(),
        agreement: "a".into(),
        state: "queued".into(),
        attempts: 0,
        next_attempt_at: set_optional.then(|| "n".into()),
        last_error: set_optional.then(|| "e".into()),
        updated_at: "u".into(),
    }
}

fn transfer_status(set_optional: bool) -> TransferStatus {
    TransferStatus {
        id: "t".into(),
        received_at: "at".into(),
        purpose: "p".into(),
        marking: "m".into(),
        payload_size: 1,
        payload_sha256: "s".into(),
        recipients: vec![recipient_status(set_optional)],
    }
}

fn problem_field() -> ProblemField {
    ProblemField {
        code: "missing_field".into(),
        field: "f".into(),
        message: "m".into(),
    }
}

fn full_problem() -> Problem {
    Problem {
        type_uri: "urn:postern:problem:x".into(),
        title: "t".into(),
        status: 400,
        detail: "d".into(),
        code: "x".into(),
        field: Some("f".into()),
        errors: vec![problem_field()],
        recipient: Some("r".into()),
        agreement: Some("a".into()),
        transfer_id: Some("t".into()),
    }
}

fn to_json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

/// Every field problem, with a match that stops compiling when a variant is added.
fn all_field_problems() -> Vec<FieldProblem> {
    let all = vec![
        FieldProblem::MissingField,
        FieldProblem::InvalidValue,
        FieldProblem::TooLong,
        FieldProblem::UnknownField,
        FieldProblem::UnrecognisedMarking,
    ];
    for p in &all {
        match p {
            FieldProblem::MissingField
            | FieldProblem::InvalidValue
            | FieldProblem::TooLong
            | FieldProblem::UnknownField
            | FieldProblem::UnrecognisedMarking => {}
        }
    }
    all
}

/// A match that stops compiling when a rule is added, so a rule left out of `Rule::ALL` (and so
/// out of the document) is noticed.
fn listed_in_all(rule: Rule) -> bool {
    match rule {
        Rule::SenderRegistered
        | Rule::MarkingWithinGateway
        | Rule::PurposeKnown
        | Rule::LawfulBasisFitsPurpose
        | Rule::SpecialCategoryCondition
        | Rule::SpecialCategoryPermitted
        | Rule::OriginatorPermission
        | Rule::StatutoryOnlySender
        | Rule::RecipientRegistered
        | Rule::StatutoryOnlyRecipient
        | Rule::MarkingWithinClearance
        | Rule::RecipientHasEndpoint
        | Rule::MarkingWithinChannel
        | Rule::AgreementExists
        | Rule::AgreementInForce
        | Rule::PurposeInAgreement
        | Rule::LawfulBasisInAgreement
        | Rule::MarkingWithinAgreement => Rule::ALL.contains(&rule),
    }
}

// ---------------------------------------------------------------------------------------------
// The document as a whole.

#[test]
fn the_document_is_openapi_3_1_with_mutual_tls_everywhere() {
    let doc = doc();
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1."),
        "openapi must be 3.1.x"
    );
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("components.securitySchemes");
    let mtls: Vec<&String> = schemes
        .iter()
        .filter(|(_, s)| s["type"] == "mutualTLS")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(mtls.len(), 1, "exactly one mutualTLS security scheme");
    assert_eq!(
        doc["security"],
        json!([{ mtls[0].as_str(): [] }]),
        "mutual TLS applies to every operation"
    );
    for (method, path, op) in operations(&doc) {
        assert!(
            op.get("security").is_none(),
            "{method} {path} overrides the global security"
        );
    }
}

#[test]
fn every_local_ref_resolves() {
    fn walk(doc: &Value, v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref") {
                    let r = r
                        .as_str()
                        .unwrap_or_else(|| panic!("{at}: $ref is not a string"));
                    let pointer = r
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("{at}: non-local $ref {r}"));
                    assert!(
                        doc.pointer(pointer).is_some(),
                        "{at}: $ref {r} does not resolve"
                    );
                }
                for (k, x) in map {
                    walk(doc, x, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(doc, x, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    let doc = doc();
    walk(&doc, &doc, "#");
}

#[test]
fn the_paths_are_exactly_the_routes_the_router_serves() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
}

// ---------------------------------------------------------------------------------------------
// Problem codes.

/// Every code the API can answer with, and its status: `problem::CODES` and the policy refusals.
fn code_statuses() -> BTreeMap<String, u16> {
    let mut all: BTreeMap<String, u16> = CODES.iter().map(|(c, s)| ((*c).to_owned(), *s)).collect();
    assert_eq!(all.len(), CODES.len(), "a code is listed twice in CODES");
    for rule in Rule::ALL {
        let previous = all.insert(rule.refusal_code().to_owned(), 403);
        assert!(
            previous.is_none(),
            "{} is both in CODES and a refusal code",
            rule.refusal_code()
        );
    }
    all
}

#[test]
fn rule_all_lists_every_rule() {
    let all = [
        Rule::SenderRegistered,
        Rule::MarkingWithinGateway,
        Rule::PurposeKnown,
        Rule::LawfulBasisFitsPurpose,
        Rule::SpecialCategoryCondition,
        Rule::SpecialCategoryPermitted,
        Rule::OriginatorPermission,
        Rule::StatutoryOnlySender,
        Rule::RecipientRegistered,
        Rule::StatutoryOnlyRecipient,
        Rule::MarkingWithinClearance,
        Rule::AgreementExists,
        Rule::AgreementInForce,
        Rule::PurposeInAgreement,
        Rule::LawfulBasisInAgreement,
        Rule::MarkingWithinAgreement,
    ];
    for rule in all {
        assert!(listed_in_all(rule), "{rule:?} is missing from Rule::ALL");
    }
    assert_eq!(all.len(), Rule::ALL.len());
}

#[test]
fn the_problem_code_enum_is_every_code_the_api_answers_with() {
    let doc = doc();
    let listed = strings(&schema(&doc, "ProblemCode")["enum"]);
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "ProblemCode lists a code twice");
    let expected: BTreeSet<String> = code_statuses().into_keys().collect();
    assert_eq!(
        unique, expected,
        "ProblemCode must be problem::CODES plus every Rule::refusal_code()"
    );
    let problem = schema(&doc, "Problem");
    assert_eq!(
        problem["properties"]["code"]["$ref"], "#/components/schemas/ProblemCode",
        "Problem.code is a ProblemCode"
    );
}

/// Every problem response in the document: where, its status, its codes and the response.
fn problem_responses(doc: &Value) -> Vec<(String, u16, Vec<String>, &Value)> {
    let mut found = Vec::new();
    for (method, path, op) in operations(doc) {
        for (status, response) in op["responses"].as_object().expect("responses") {
            let response = resolve(doc, response);
            let status: u16 = status
                .parse()
                .unwrap_or_else(|_| panic!("{method} {path}: response {status} is not a status"));
            let codes = strings(&response["x-problem-codes"]);
            if status < 400 {
                assert!(
                    codes.is_empty(),
                    "{method} {path} {status}: a success has no problem codes"
                );
                continue;
            }
            found.push((format!("{method} {path}"), status, codes, response));
        }
    }
    for (name, response) in doc["components"]["responses"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Some(status) = response["x-status"].as_u64() else {
            continue;
        };
        let status = u16::try_from(status).expect("x-status is a status");
        let codes = strings(&response["x-problem-codes"]);
        found.push((
            format!("components.responses.{name}"),
            status,
            codes,
            response,
        ));
    }
    found
}

#[test]
fn every_code_is_documented_under_its_status() {
    let doc = doc();
    let statuses = code_statuses();
    let mut documented = BTreeSet::new();
    for (at, status, codes, response) in problem_responses(&doc) {
        assert!(
            !codes.is_empty(),
            "{at} {status}: list its codes in x-problem-codes"
        );
        let content = &response["content"]["application/problem+json"];
        assert_eq!(
            content["schema"]["$ref"], "#/components/schemas/Problem",
            "{at} {status}: a problem answer is application/problem+json with the Problem schema"
        );
        let description = response["description"].as_str().unwrap_or_default();
        for code in &codes {
            let Some(&expected) = statuses.get(code) else {
                panic!("{at} {status}: `{code}` is not a code the API answers with");
            };
            assert_eq!(
                expected, status,
                "{at}: `{code}` is answered with {expected}, but is documented under {status}"
            );
            assert!(
                description.contains(&format!("`{code}`")),
                "{at} {status}: the description does not mention `{code}`"
            );
            documented.insert(code.clone());
        }
        if let Some(example) = content.get("example") {
            let p: Problem = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{at} {status}: the example is not a Problem: {e}"));
            assert_eq!(
                to_json(&p),
                *example,
                "{at} {status}: the example has unknown members"
            );
            assert_eq!(p.status, status, "{at} {status}: example status");
            assert!(codes.contains(&p.code), "{at} {status}: example code");
        }
    }
    let expected: BTreeSet<String> = statuses.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "these codes are not documented under any response: {missing:?}"
    );

    // Every refusal is an answer to the submission.
    let submit_403 = &doc["paths"]["/v1/transfers"]["post"]["responses"]["403"];
    let refusals: BTreeSet<String> = strings(&submit_403["x-problem-codes"])
        .into_iter()
        .collect();
    let rules: BTreeSet<String> = Rule::ALL
        .iter()
        .map(|r| r.refusal_code().to_owned())
        .collect();
    assert_eq!(
        refusals, rules,
        "POST /v1/transfers 403 lists every refusal"
    );
}

// ---------------------------------------------------------------------------------------------
// The envelope.

#[test]
fn the_envelope_example_is_accepted_by_the_parser() {
    let doc = doc();
    let ex = example(&doc);
    assert!(
        ex["retention"].get("until").is_none(),
        "give the example's retention in days, so that it never goes stale"
    );
    assert_parses(&ex, "the Envelope example");
    assert_eq!(
        doc["paths"]["/v1/transfers"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
            ["properties"]["envelope"]["$ref"],
        "#/components/schemas/Envelope"
    );
}

#[test]
fn the_multipart_body_is_envelope_then_payload() {
    let doc = doc();
    let body =
        &doc["paths"]["/v1/transfers"]["post"]["requestBody"]["content"]["multipart/form-data"];
    assert_eq!(
        strings(&body["schema"]["required"]),
        ["envelope", "payload"]
    );
    assert_eq!(properties(&body["schema"]), set(["envelope", "payload"]));
    assert_eq!(body["schema"]["properties"]["payload"]["format"], "binary");
    assert_eq!(
        body["encoding"]["envelope"]["contentType"],
        "application/json"
    );
    assert!(body["encoding"]["payload"]["contentType"].is_string());
}

#[test]
fn the_envelope_properties_are_the_raw_envelope_fields() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let raw = to_json(&full_raw_envelope());
    assert_eq!(properties(schema), keys(&raw), "Envelope properties");
    let nested_in_code: BTreeSet<String> = raw
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(nested_in_code, set(NESTED.iter().copied()));
    for name in NESTED {
        let nested = property(schema, name);
        assert_eq!(nested["type"], "object", "Envelope.{name}");
        assert_eq!(
            properties(nested),
            keys(&raw[*name]),
            "Envelope.{name} properties"
        );
    }
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let ex = example(&doc);
    assert_eq!(schema["additionalProperties"], false, "Envelope");
    let extra = edit(&ex, "not_an_envelope_field", Some(json!("x")));
    let got = errors(&extra);
    assert!(
        got.iter()
            .any(|(f, c)| f == "not_an_envelope_field" && *c == FieldProblem::UnknownField),
        "{got:?}"
    );
    for name in NESTED {
        assert_eq!(
            property(schema, name)["additionalProperties"],
            false,
            "Envelope.{name}"
        );
        let field = format!("{name}.not_a_field");
        let got = errors(&edit(&ex, &field, Some(json!("x"))));
        assert!(
            got.iter()
                .any(|(f, c)| *f == field && *c == FieldProblem::UnknownField),
            "{field}: {got:?}"
        );
    }
}

#[test]
fn required_is_exactly_what_the_validator_reports_missing() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let ex = example(&doc);
    let req = required(schema);
    for field in &req {
        assert!(
            ex.get(field).is_some(),
            "the example lacks the required {field}"
        );
        let got = errors(&edit(&ex, field, None));
        assert!(
            got.contains(&(field.clone(), FieldProblem::MissingField)),
            "without {field}: expected missing_field on {field}, got {got:?}"
        );
    }
    for field in keys(&ex).difference(&req) {
        assert_parses(
            &edit(&ex, field, None),
            &format!("{field} is optional in the document"),
        );
    }
    // The fields of nested objects: required ones are reported missing; optional ones may be
    // left out unless the object's `if`/`then` requires them for the example's values.
    for name in NESTED {
        let nested = property(schema, name);
        let Some(present) = ex.get(*name) else {
            continue;
        };
        let req = required(nested);
        let conditional = required(&nested["then"]);
        // `oneOf` branches that each require one field (retention: `days` or `until`).
        let alternatives: BTreeSet<String> = nested["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|branch| strings(&branch["required"]))
            .collect();
        for field in keys(present) {
            let path = format!("{name}.{field}");
            let edited = edit(&ex, &path, None);
            if req.contains(&field) {
                let got = errors(&edited);
                assert!(
                    got.contains(&(path.clone(), FieldProblem::MissingField)),
                    "without {path}: expected missing_field on {path}, got {got:?}"
                );
            } else {
                match parse(&edited) {
                    Ok(_) => {}
                    Err(EnvelopeError::Invalid(got)) => {
                        let missing = |f: &str| {
                            got.len() == 1
                                && got[0].field == f
                                && got[0].code == FieldProblem::MissingField
                        };
                        let alternative_left = keys(present)
                            .iter()
                            .any(|k| *k != field && alternatives.contains(k));
                        assert!(
                            (conditional.contains(&field) && missing(&path))
                                || (alternatives.contains(&field)
                                    && !alternative_left
                                    && missing(name)),
                            "{path} is optional in the document, but leaving it out gives {got:?}"
                        );
                    }
                    Err(e) => panic!("without {path}: {e:?}"),
                }
            }
        }
    }
}

#[test]
fn retention_is_days_or_until_but_not_both() {
    let doc = doc();
    let retention = property(envelope_schema(&doc), "retention");
    let branches: BTreeSet<BTreeSet<String>> = retention["oneOf"]
        .as_array()
        .expect("retention.oneOf")
        .iter()
        .map(required)
        .collect();
    assert_eq!(branches, BTreeSet::from([set(["days"]), set(["until"])]));
    let ex = example(&doc);
    let soon = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
    assert_parses(
        &edit(&ex, "retention", Some(json!({ "until": soon }))),
        "retention.until alone",
    );
    assert_parses(
        &edit(&ex, "retention", Some(json!({ "days": 30 }))),
        "retention.days alone",
    );
    let got = errors(&edit(
        &ex,
        "retention",
        Some(json!({ "days": 30, "until": soon })),
    ));
    assert!(
        got.contains(&("retention".to_owned(), FieldProblem::InvalidValue)),
        "both: {got:?}"
    );
    let got = errors(&edit(&ex, "retention", Some(json!({}))));
    assert!(
        got.contains(&("retention".to_owned(), FieldProblem::MissingField)),
        "neither: {got:?}"
    );
}

/// The values a property may take, for the conditional checks: its enum, or true and false.
fn domain(schema: &Value) -> Vec<Value> {
    if let Some(values) = schema["enum"].as_array() {
        values.clone()
    } else if schema["type"] == "boolean" {
        vec![json!(true), json!(false)]
    } else {
        panic!("cannot enumerate {schema}")
    }
}

#[test]
fn conditional_requirements_match_the_validator() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let ex = example(&doc);
    let mut seen = 0;
    for name in NESTED {
        let nested = property(schema, name);
        let Some(cond) = nested.get("if") else {
            continue;
        };
        seen += 1;
        let on = keys(&cond["properties"]);
        assert_eq!(on.len(), 1, "Envelope.{name}: `if` tests one property");
        let on = on.into_iter().next().unwrap();
        let trigger = &cond["properties"][&on];
        let triggers: Vec<Value> = match (trigger.get("const"), trigger["enum"].as_array()) {
            (Some(c), _) => vec![c.clone()],
            (None, Some(values)) => values.clone(),
            _ => panic!("Envelope.{name}: `if` uses const or enum"),
        };
        let then = required(&nested["then"]);
        assert!(!then.is_empty(), "Envelope.{name}: `then` requires fields");
        for value in domain(&nested["properties"][&on]) {
            let mut obj = ex[*name].clone();
            obj[&on] = value.clone();
            for r in &then {
                obj[r] = json!("Recorded for the test.");
            }
            assert_parses(
                &edit(&ex, name, Some(obj.clone())),
                &format!("{name}.{on} = {value} with {then:?}"),
            );
            let mut without = obj;
            for r in &then {
                without.as_object_mut().unwrap().remove(r);
            }
            let edited = edit(&ex, name, Some(without));
            if triggers.contains(&value) {
                let got = errors(&edited);
                for r in &then {
                    let path = format!("{name}.{r}");
                    assert!(
                        got.contains(&(path.clone(), FieldProblem::MissingField)),
                        "{name}.{on} = {value} without {path}: got {got:?}"
                    );
                }
            } else {
                assert_parses(&edited, &format!("{name}.{on} = {value} without {then:?}"));
            }
        }
        if nested["properties"][&on]["type"] == "string" {
            let got = errors(&edit(
                &ex,
                &format!("{name}.{on}"),
                Some(json!("not-a-value")),
            ));
            assert!(
                got.contains(&(format!("{name}.{on}"), FieldProblem::InvalidValue)),
                "{name}.{on} outside its enum: {got:?}"
            );
        }
    }
    assert_eq!(
        seen, 3,
        "consent, subject_informed and urgency are conditional"
    );
}

#[test]
fn vocabularies_match_the_code() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let enum_of = |path: &str| -> BTreeSet<String> {
        let mut s = property(schema, path);
        if s["type"] == "array" {
            s = &s["items"];
        }
        strings(&s["enum"]).into_iter().collect()
    };
    assert_eq!(
        enum_of("lawful_basis"),
        set(LawfulBasis::ALL.iter().map(|b| b.as_str()))
    );
    assert_eq!(
        enum_of("special_category_condition"),
        set(SpecialCategoryCondition::ALL.iter().map(|c| c.as_str()))
    );
    assert_eq!(
        enum_of("data_categories"),
        set(DataCategory::ALL.iter().map(|d| d.as_str()))
    );
    let problem_field = self::schema(&doc, "ProblemField");
    assert_eq!(
        strings(&problem_field["properties"]["code"]["enum"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        set(all_field_problems().into_iter().map(FieldProblem::code)),
        "ProblemField.code"
    );
    // Each listed value is accepted where the envelope takes it.
    let ex = example(&doc);
    for b in enum_of("lawful_basis") {
        assert_parses(&edit(&ex, "lawful_basis", Some(json!(b))), "lawful_basis");
    }
    for c in enum_of("special_category_condition") {
        assert_parses(
            &edit(&ex, "special_category_condition", Some(json!(c))),
            "special_category_condition",
        );
    }
    for d in enum_of("data_categories") {
        assert_parses(
            &edit(&ex, "data_categories", Some(json!([d]))),
            "data_categories",
        );
    }
}

#[test]
fn limits_match_the_code() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let max = |path: &str, key: &str| property(schema, path)[key].as_u64();
    assert_eq!(
        max("recipients", "maxItems"),
        Some(limits::MAX_RECIPIENTS as u64)
    );
    assert_eq!(
        max("subject_refs", "maxItems"),
        Some(limits::MAX_SUBJECT_REFS as u64)
    );
    assert_eq!(
        max("retention.days", "maximum"),
        Some(u64::from(limits::MAX_RETENTION_DAYS))
    );
    assert_eq!(max("retention.days", "minimum"), Some(1));
    for (name, minimum) in [
        ("recipients", 1),
        ("data_categories", 1),
        ("subject_refs", 1),
    ] {
        assert_eq!(max(name, "minItems"), Some(minimum), "{name}.minItems");
    }

    // Every string with a maxLength: that many characters is not too long, one more is refused.
    let ex = example(&doc);
    let mut paths = Vec::new();
    for name in properties(schema) {
        let p = property(schema, &name);
        if p["type"] == "object" {
            for inner in properties(p) {
                paths.push(format!("{name}.{inner}"));
            }
        } else {
            paths.push(name);
        }
    }
    let mut checked = 0;
    for path in paths {
        let p = property(schema, &path);
        let Some(len) = p["maxLength"].as_u64() else {
            continue;
        };
        assert_eq!(p["type"], "string", "{path} has a maxLength");
        let len = usize::try_from(len).unwrap();
        let at_limit = errors_or_none(&edit(&ex, &path, Some(json!("x".repeat(len)))));
        assert!(
            !at_limit.contains(&(path.clone(), FieldProblem::TooLong)),
            "{path}: {len} characters should not be too long"
        );
        let over = errors(&edit(&ex, &path, Some(json!("x".repeat(len + 1)))));
        assert!(
            over.iter().any(|(f, _)| *f == path),
            "{path}: {} characters should be refused, got {over:?}",
            len + 1
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} maxLengths checked");
}

fn errors_or_none(v: &Value) -> Vec<(String, FieldProblem)> {
    match parse(v) {
        Ok(_) => Vec::new(),
        Err(_) => errors(v),
    }
}

// ---------------------------------------------------------------------------------------------
// The answers.

/// The document's properties and required list for a schema equal the serialised struct's keys
/// (all optional members set) and the keys that are always present.
fn assert_shape(name: &str, schema: &Value, full: &Value, minimal: &Value) {
    assert_eq!(properties(schema), keys(full), "{name} properties");
    assert_eq!(required(schema), keys(minimal), "{name} required");
}

#[test]
fn response_schemas_match_the_rust_structs() {
    let doc = doc();

    let accepted = to_json(&accepted());
    let s = schema(&doc, "Accepted");
    assert_shape("Accepted", s, &accepted, &accepted);
    let items = resolve(&doc, &s["properties"]["recipients"]["items"]);
    assert_shape(
        "Accepted.recipients[]",
        items,
        &accepted["recipients"][0],
        &accepted["recipients"][0],
    );
    let payload = resolve(&doc, &s["properties"]["payload"]);
    assert_shape(
        "Accepted.payload",
        payload,
        &accepted["payload"],
        &accepted["payload"],
    );

    let full = to_json(&transfer_status(true));
    let minimal = to_json(&transfer_status(false));
    let s = schema(&doc, "TransferStatus");
    assert_shape("TransferStatus", s, &full, &minimal);
    assert_eq!(
        s["properties"]["recipients"]["items"]["$ref"],
        "#/components/schemas/RecipientStatus"
    );
    let s = schema(&doc, "RecipientStatus");
    assert_shape(
        "RecipientStatus",
        s,
        &to_json(&recipient_status(true)),
        &to_json(&recipient_status(false)),
    );
    // Members that serialise as null are nullable.
    for (k, v) in to_json(&recipient_status(false)).as_object().unwrap() {
        if v.is_null() {
            let types = &s["properties"][k]["type"];
            assert!(
                types.as_array().is_some_and(|t| t.contains(&json!("null"))),
                "RecipientStatus.{k} can be null"
            );
        }
    }

    let s = schema(&doc, "Problem");
    assert_shape(
        "Problem",
        s,
        &to_json(&full_problem()),
        &to_json(&Problem::new(400, "malformed_request", "d")),
    );
    assert_eq!(
        s["properties"]["errors"]["items"]["$ref"],
        "#/components/schemas/ProblemField"
    );
    let field = to_json(&problem_field());
    assert_shape("ProblemField", schema(&doc, "ProblemField"), &field, &field);
}

#[test]
fn success_examples_are_what_the_code_produces() {
    let doc = doc();
    let submit = &doc["paths"]["/v1/transfers"]["post"]["responses"]["202"];
    assert_eq!(
        submit["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Accepted"
    );
    assert!(
        submit["headers"]["Location"].is_object(),
        "202 has Location"
    );
    if let Some(ex) = submit["content"]["application/json"].get("example") {
        let a: Accepted = serde_json::from_value(ex.clone()).expect("the 202 example");
        assert_eq!(to_json(&a), *ex, "the 202 example has unknown members");
    }
    let status = &doc["paths"]["/v1/transfers/{id}"]["get"]["responses"]["200"];
    assert_eq!(
        status["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TransferStatus"
    );
    if let Some(ex) = status["content"]["application/json"].get("example") {
        let s: TransferStatus = serde_json::from_value(ex.clone()).expect("the 200 example");
        assert_eq!(to_json(&s), *ex, "the 200 example has unknown members");
    }
}
