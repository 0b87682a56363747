//! Keeps `docs/openapi.json` true to the code. The document is made by `ingest::openapi` from
//! the types (so its shapes cannot drift from the structs); the committed file must be exactly
//! what it makes. What the types cannot say is checked against behaviour: which envelope,
//! decision and rationale fields the validators require, their vocabularies, limits and
//! conditions, that the worked examples are accepted by the real parsers, the routes the router
//! serves and the caller each is for, and, through the real router, that the inbound, inbox,
//! decision and rationale operations answer with the statuses, codes and bodies documented.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::response::IntoResponse;
use base64::Engine;
use postern_gateway::config::Limits;
use postern_gateway::deliver::Wake;
use postern_gateway::domain::decision::{
    self as decision, DecisionContext, DecisionError, RawDecision, RawRationale,
};
use postern_gateway::domain::envelope::{
    self, Envelope, EnvelopeError, FieldProblem, ParseContext, RawPractitioner, RawRequest,
    RecipientEnvelope, limits,
};
use postern_gateway::domain::ids::{OrgId, PeerId, TransferId};
use postern_gateway::domain::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use postern_gateway::domain::marking::{MarkingScheme, Rank};
use postern_gateway::domain::policy::Rule;
use postern_gateway::domain::registry::{
    CertFingerprint, Channel, ClientIdentity, Endpoint, OrgKind, Organisation, Peer, Principal,
    Purpose, Registry, Sector,
};
use postern_gateway::domain::subject::SubjectKey;
use postern_gateway::inbox::InboundMeta;
use postern_gateway::ingest::decisions::{
    Declined, DeclinedRecord, RationaleRecord, RationaleRecorded,
};
use postern_gateway::ingest::inbound::{Acknowledged, InboxEntry, InboxList};
use postern_gateway::ingest::problem::{Problem, ProblemCode};
use postern_gateway::ingest::routes::Accepted;
use postern_gateway::ingest::{App, Caller, ROUTES, router};
use postern_gateway::live::Live;
use postern_gateway::log::{Facets, LogEntry, Receipt, RecordKind};
use postern_gateway::seal::SealSummary;
use postern_gateway::store::{NewTransfer, Store, StoreError, StoredPayload, TransferStatus};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const DOCUMENT: &str = include_str!("../docs/openapi.json");

/// The committed document is the one the code makes (`ingest::openapi`): its schemas come from
/// the Rust types, its problem answers from the codes. `POSTERN_WRITE_OPENAPI=1` rewrites it.
#[test]
fn the_committed_document_is_the_one_the_code_makes() {
    let made = postern_gateway::ingest::openapi::document_text();
    if std::env::var_os("POSTERN_WRITE_OPENAPI").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"),
            &made,
        )
        .unwrap();
        return;
    }
    assert!(
        made == DOCUMENT,
        "docs/openapi.json is not what the code makes: run \
         `POSTERN_WRITE_OPENAPI=1 cargo test --test openapi the_committed` and commit the result"
    );
}

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

fn org(id: &str) -> OrgId {
    id.parse().expect("an organisation id")
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

/// Every channel's `kind()`, with a match that stops compiling when a channel is added.
fn channel_kinds() -> BTreeSet<String> {
    let all = [
        Channel::Email {
            address: String::new(),
            tls_only: false,
        },
        Channel::Https {
            url: String::new(),
            ca_file: String::new(),
        },
        Channel::Inbox,
        Channel::Portal {
            identity_file: String::new(),
        },
    ];
    for c in &all {
        match c {
            Channel::Email { .. }
            | Channel::Https { .. }
            | Channel::Inbox
            | Channel::Portal { .. } => {}
        }
    }
    all.iter().map(|c| c.kind().to_owned()).collect()
}

/// The delivery states the store writes and reads: the quoted values compared with `state` in its
/// SQL (`state = 'x'`, `state IN ('x', 'y')`, `state NOT IN (...)`) and in its Rust
/// (`state == "x"`). The store has no enum of them; if its statements change shape so that a
/// state is no longer found here, the comparison with the document fails rather than passes.
fn delivery_states_in_the_store() -> BTreeSet<String> {
    let sources = [
        include_str!("../src/store/queue.rs"),
        include_str!("../src/store/mod.rs"),
    ];
    let mut states = BTreeSet::new();
    for src in sources {
        for (at, _) in src.match_indices("state") {
            let rest = src[at + "state".len()..].trim_start();
            let list = if let Some(r) = rest
                .strip_prefix("NOT IN (")
                .or_else(|| rest.strip_prefix("IN ("))
            {
                &r[..r.find(')').unwrap_or(0)]
            } else if let Some(r) = rest.strip_prefix("= '") {
                &r[..r.find('\'').unwrap_or(0)]
            } else if let Some(r) = rest.strip_prefix("== \"") {
                &r[..r.find('"').unwrap_or(0)]
            } else {
                continue;
            };
            for item in list.split(',') {
                let item = item.trim().trim_matches(|c| c == '\'' || c == '"');
                if !item.is_empty() && item.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    states.insert(item.to_owned());
                }
            }
        }
    }
    states
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

/// The kinds of caller, as `x-postern-caller` names them, and the code the other kind gets.
const CALLERS: &[(&str, &str)] = &[
    ("organisation", "not_an_organisation"),
    ("peer_gateway", "not_a_peer"),
];

#[test]
fn every_operation_says_which_caller_it_is_for_and_what_the_other_kind_gets() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let caller = op["x-postern-caller"].as_str().unwrap_or_default();
        let Some((_, refused)) = CALLERS.iter().find(|(c, _)| *c == caller) else {
            panic!("{at}: x-postern-caller must be `organisation` or `peer_gateway`");
        };
        let description = op["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("**Caller:**") && description.contains(&format!("`{refused}`")),
            "{at}: the description says who the caller is and that the other kind gets `{refused}`"
        );
        let forbidden = resolve(&doc, &op["responses"]["403"]);
        assert!(forbidden.is_object(), "{at}: no 403 answer");
        assert!(
            forbidden["description"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("`{refused}`")),
            "{at} 403 mentions `{refused}`"
        );
        // The submission's 403 lists exactly the policy refusals (see
        // every_code_is_documented_under_its_status); everywhere else the code is listed.
        if (method.as_str(), path.as_str()) != ("post", "/v1/transfers") {
            assert!(
                strings(&forbidden["x-problem-codes"]).contains(&(*refused).to_owned()),
                "{at} 403 lists `{refused}`"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Problem codes.

/// The refusals of a submission that are not policy rules: checked by ingest before the policy
/// decision (a correction from someone who may not correct the transfer).
const CHECKED_BEFORE_POLICY: &[&str] = &["correction_not_permitted"];

/// Every code the API can answer with, and its status: `ProblemCode` and the policy refusals.
fn code_statuses() -> BTreeMap<String, u16> {
    let mut all: BTreeMap<String, u16> = ProblemCode::ALL
        .iter()
        .map(|c| (c.code().to_owned(), c.status()))
        .collect();
    assert_eq!(
        all.len(),
        ProblemCode::ALL.len(),
        "a code is listed twice in ProblemCode"
    );
    for rule in Rule::ALL {
        let previous = all.insert(rule.refusal_code().to_owned(), 403);
        assert!(
            previous.is_none(),
            "{} is both a ProblemCode and a refusal code",
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
        Rule::RecipientHasEndpoint,
        Rule::MarkingWithinChannel,
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
            assert_eq!(
                p.title,
                title_of(&p.code),
                "{at} {status}: the example's title is the one the code gives `{}`",
                p.code
            );
        }
    }
    let expected: BTreeSet<String> = statuses.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "these codes are not documented under any response: {missing:?}"
    );

    // Every refusal is an answer to the submission: the correction check, made before the
    // policy decision, then every policy rule.
    for code in CHECKED_BEFORE_POLICY {
        assert_eq!(
            statuses.get(*code),
            Some(&403),
            "`{code}` is a 403 ProblemCode"
        );
    }
    let submit_403 = &doc["paths"]["/v1/transfers"]["post"]["responses"]["403"];
    let refusals: BTreeSet<String> = strings(&submit_403["x-problem-codes"])
        .into_iter()
        .collect();
    let rules: BTreeSet<String> = CHECKED_BEFORE_POLICY
        .iter()
        .copied()
        .chain(Rule::ALL.iter().map(|r| r.refusal_code()))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        refusals, rules,
        "POST /v1/transfers 403 lists every refusal"
    );
    // ... in the order they are checked (the document says so): the correction check, then
    // Rule::ALL's order.
    let in_order: Vec<&str> = CHECKED_BEFORE_POLICY
        .iter()
        .copied()
        .chain(Rule::ALL.iter().map(|r| r.refusal_code()))
        .collect();
    assert_eq!(
        strings(&submit_403["x-problem-codes"]),
        in_order,
        "POST /v1/transfers 403 lists the refusals in the order they are checked"
    );
    let description = submit_403["description"].as_str().unwrap_or_default();
    let mut from = 0;
    for code in &in_order {
        let Some(i) = description[from..].find(&format!("- `{code}`")) else {
            panic!("POST /v1/transfers 403: `{code}` is not described in order");
        };
        from += i;
    }
}

/// The title the code gives a status when the code has no title of its own.
fn status_title(status: u16) -> String {
    postern_gateway::ingest::problem::status_title(status).to_owned()
}

/// The title an answer with `code` carries (a policy refusal's is its status's).
fn title_of(code: &str) -> String {
    ProblemCode::ALL
        .iter()
        .find(|c| c.code() == code)
        .map_or_else(|| status_title(403), |c| c.title().to_owned())
}

#[test]
fn every_503_and_507_and_nothing_else_says_retry_after() {
    // The code adds `Retry-After` to every 503 and 507 problem answer and to nothing else.
    let doc = doc();
    let mut seen = 0;
    for (at, status, _, response) in problem_responses(&doc) {
        let header = resolve(&doc, &response["headers"]["Retry-After"]);
        assert_eq!(
            header.is_object(),
            status == 503 || status == 507,
            "{at} {status}: documents Retry-After exactly when the status is 503 or 507"
        );
        if status == 503 || status == 507 {
            seen += 1;
            assert_eq!(
                response["headers"]["Retry-After"]["$ref"], "#/components/headers/RetryAfter",
                "{at}"
            );
        }
    }
    assert!(seen >= 7, "only {seen} operations document 503");
    let retry_after = Problem::new(ProblemCode::Unavailable, "d").into_response();
    let value = retry_after.headers()[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        doc["components"]["headers"]["RetryAfter"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("({value})")),
        "the RetryAfter header's description gives the code's value, {value}"
    );
    for code in [
        ProblemCode::MalformedRequest,
        ProblemCode::NotAnOrganisation,
        ProblemCode::InvalidEnvelope,
        ProblemCode::InternalError,
    ] {
        let status = code.status();
        assert!(
            !Problem::new(code, "d")
                .into_response()
                .headers()
                .contains_key(http::header::RETRY_AFTER),
            "{status} carries no Retry-After"
        );
    }
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

/// Whether `value` satisfies a (small) JSON Schema used as an `if`: `properties` (recursively),
/// `required` and `const`. Enough for the document's conditions; anything else fails the test.
fn holds(schema: &Value, value: &Value) -> bool {
    for key in keys(schema) {
        assert!(
            ["properties", "required", "const"].contains(&key.as_str()),
            "`if` uses `{key}`, which this test does not evaluate"
        );
    }
    if let Some(c) = schema.get("const") {
        return value == c;
    }
    if !required(schema).iter().all(|r| value.get(r).is_some()) {
        return false;
    }
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(name, s)| value.get(name).is_none_or(|v| holds(s, v)))
}

/// The members an object schema requires of `value`: `required`, plus the `then` or `else`
/// branch's, as its `if` holds or not.
fn required_of(schema: &Value, value: &Value) -> BTreeSet<String> {
    let mut req = required(schema);
    if let Some(cond) = schema.get("if") {
        let branch = if holds(cond, value) { "then" } else { "else" };
        req.extend(required(&schema[branch]));
    }
    req
}

#[test]
fn required_is_exactly_what_the_validator_reports_missing() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let ex = example(&doc);
    let req = required_of(schema, &ex);
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
                        // `anyOf` branches that each require a set of fields (request:
                        // `request_id`, or `reference` and `requested`): leaving out a field
                        // no branch can then do without is a missing field.
                        let left: BTreeSet<String> =
                            keys(present).into_iter().filter(|k| *k != field).collect();
                        let no_branch_left = nested["anyOf"].as_array().is_some_and(|branches| {
                            !branches
                                .iter()
                                .any(|b| strings(&b["required"]).iter().all(|f| left.contains(f)))
                        });
                        assert!(
                            (conditional.contains(&field) && missing(&path))
                                || (no_branch_left && missing(&path))
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

/// A schema's properties and required members, with `allOf` branches (and `$ref`s) merged.
fn flat(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = resolve(doc, schema);
    let mut props = BTreeSet::new();
    let mut req = BTreeSet::new();
    if schema.get("properties").is_some() {
        props.extend(properties(schema));
    }
    req.extend(required(schema));
    for branch in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = flat(doc, branch);
        props.extend(p);
        req.extend(r);
    }
    (props, req)
}

#[test]
fn delivery_channels_and_states_are_the_code_s() {
    let doc = doc();
    let s = schema(&doc, "RecipientStatus");
    let enum_of = |name: &str| -> BTreeSet<String> {
        strings(&s["properties"][name]["enum"])
            .into_iter()
            .collect()
    };
    assert_eq!(
        enum_of("channel"),
        channel_kinds(),
        "RecipientStatus.channel"
    );
    let states = delivery_states_in_the_store();
    assert_eq!(
        states,
        set(["queued", "delivering", "retrying", "delivered", "dead"]),
        "the states the store uses (this test reads them from its SQL)"
    );
    assert_eq!(enum_of("state"), states, "RecipientStatus.state");
    let description = s["properties"]["state"]["description"]
        .as_str()
        .unwrap_or_default();
    for state in &states {
        assert!(
            description.contains(&format!("`{state}`")),
            "RecipientStatus.state describes `{state}`"
        );
    }
}

/// Deserialises a JSON example into the Rust type the schema `name` describes and serialises it
/// again.
fn round_trip(name: &str, v: &Value) -> Value {
    fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str, v: &Value) -> Value {
        let t: T = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("the {name} example does not deserialise: {e}\n{v}"));
        to_json(&t)
    }
    match name {
        "Accepted" => rt::<Accepted>(name, v),
        "TransferStatus" => rt::<TransferStatus>(name, v),
        "Receipt" => rt::<Receipt>(name, v),
        "InboundMeta" => rt::<InboundMeta>(name, v),
        "RecipientEnvelope" => rt::<RecipientEnvelope>(name, v),
        "InboxList" => rt::<InboxList>(name, v),
        "InboxEntry" => rt::<InboxEntry>(name, v),
        "Acknowledged" => rt::<Acknowledged>(name, v),
        "Declined" => rt::<Declined>(name, v),
        "DeclinedRecord" => rt::<DeclinedRecord>(name, v),
        "RationaleRecorded" => rt::<RationaleRecorded>(name, v),
        "RequestMade" => rt::<postern_gateway::ingest::requests::RequestMade>(name, v),
        "RequestList" => rt::<postern_gateway::ingest::requests::RequestList>(name, v),
        "RequestView" => rt::<postern_gateway::ingest::requests::RequestView>(name, v),
        "RequestWithdrawn" => rt::<postern_gateway::ingest::requests::RequestWithdrawn>(name, v),
        "FeedbackRecorded" => rt::<postern_gateway::ingest::feedback::FeedbackRecorded>(name, v),
        "ClarificationRecorded" => {
            rt::<postern_gateway::ingest::requests::ClarificationRecorded>(name, v)
        }
        other => panic!("no Rust type is known for the schema {other}"),
    }
}

fn schema_name(v: &Value) -> &str {
    v["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_else(|| panic!("expected a $ref to a schema, got {v}"))
}

#[test]
fn success_examples_are_what_the_code_produces() {
    let doc = doc();
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if !status.starts_with('2') {
                continue;
            }
            let Some(content) = resolve(&doc, response)["content"].get("application/json") else {
                continue;
            };
            let name = schema_name(&content["schema"]);
            let Some(example) = content.get("example") else {
                panic!("{method} {path} {status}: give an example");
            };
            assert_eq!(
                round_trip(name, example),
                *example,
                "{method} {path} {status}: the example has members {name} does not"
            );
            seen.insert(name.to_owned());
        }
    }
    assert_eq!(
        seen,
        set([
            "Accepted",
            "TransferStatus",
            "Receipt",
            "InboxList",
            "InboxEntry",
            "Acknowledged",
            "Declined",
            "DeclinedRecord",
            "RationaleRecorded",
            "RequestMade",
            "RequestList",
            "RequestView",
            "RequestWithdrawn",
            "FeedbackRecorded",
            "ClarificationRecorded"
        ]),
        "the JSON success answers"
    );
    for name in ["InboundMeta", "RecipientEnvelope"] {
        let example = &schema(&doc, name)["example"];
        assert!(example.is_object(), "the {name} schema has an example");
        assert_eq!(round_trip(name, example), *example, "the {name} example");
    }

    let submit = &doc["paths"]["/v1/transfers"]["post"]["responses"]["202"];
    assert_eq!(
        schema_name(&submit["content"]["application/json"]["schema"]),
        "Accepted"
    );
    assert!(
        submit["headers"]["Location"].is_object(),
        "202 has Location"
    );
    let declined = &doc["paths"]["/v1/decisions"]["post"]["responses"]["201"];
    assert_eq!(
        schema_name(&declined["content"]["application/json"]["schema"]),
        "Declined"
    );
    assert!(
        declined["headers"]["Location"].is_object(),
        "201 has Location"
    );
    let status = &doc["paths"]["/v1/transfers/{id}"]["get"]["responses"]["200"];
    assert_eq!(
        schema_name(&status["content"]["application/json"]["schema"]),
        "TransferStatus"
    );
    let entry = &doc["paths"]["/v1/inbox/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["example"];
    let b64 = entry["envelope_age_base64"].as_str().unwrap_or_default();
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok(),
        "the InboxEntry example's envelope_age_base64 is base64"
    );
    let payload = &doc["paths"]["/v1/inbox/{id}/payload"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        keys(payload),
        set(["application/octet-stream"]),
        "the inbox payload is an octet stream"
    );
}

// ---------------------------------------------------------------------------------------------
// The inbound contract.

fn meta_example(doc: &Value) -> Value {
    let ex = schema(doc, "InboundMeta")["example"].clone();
    assert!(ex.is_object(), "the InboundMeta schema has no example");
    ex
}

fn meta(v: &Value) -> Result<InboundMeta, serde_json::Error> {
    serde_json::from_value(v.clone())
}

#[test]
fn the_meta_example_is_an_inbound_meta() {
    let doc = doc();
    let ex = meta_example(&doc);
    let m = meta(&ex).expect("the InboundMeta example");
    assert_eq!(to_json(&m), ex, "the InboundMeta example round-trips");
    assert!(
        time::Date::parse(
            &m.retain_until,
            time::macros::format_description!("[year]-[month]-[day]")
        )
        .is_ok(),
        "the example's retain_until is a date"
    );
}

#[test]
fn the_meta_schema_refuses_what_the_code_refuses() {
    let doc = doc();
    let s = schema(&doc, "InboundMeta");
    let ex = meta_example(&doc);
    assert_eq!(s["additionalProperties"], false, "InboundMeta");
    assert!(
        meta(&edit(&ex, "not_a_member", Some(json!("x")))).is_err(),
        "an unknown member is refused (deny_unknown_fields)"
    );
    for member in required(s) {
        assert!(
            meta(&edit(&ex, &member, None)).is_err(),
            "without {member}: refused, as the document says it is required"
        );
    }
    for member in properties(s) {
        let p = &s["properties"][&member];
        let bad = if p["format"] == "uuid" {
            Some("not-a-uuid")
        } else if p.get("pattern").is_some() {
            Some("Not An Id")
        } else {
            None
        };
        if let Some(bad) = bad {
            assert!(
                meta(&edit(&ex, &member, Some(json!(bad)))).is_err(),
                "{member} = {bad:?} is refused, as the document's format or pattern says"
            );
        }
        assert!(
            meta(&edit(&ex, &member, Some(json!(7)))).is_err(),
            "{member} must be a string"
        );
    }
}

#[test]
fn the_inbound_body_is_meta_then_envelope_then_payload() {
    let doc = doc();
    let body =
        &doc["paths"]["/v1/inbound"]["post"]["requestBody"]["content"]["multipart/form-data"];
    assert_eq!(
        strings(&body["schema"]["required"]),
        ["meta", "envelope", "payload"]
    );
    assert_eq!(
        keys(&body["schema"]["properties"]),
        set(["meta", "envelope", "payload"])
    );
    assert_eq!(
        schema_name(&body["schema"]["properties"]["meta"]),
        "InboundMeta"
    );
    for part in ["envelope", "payload"] {
        assert_eq!(
            body["schema"]["properties"][part]["format"], "binary",
            "{part}"
        );
        assert_eq!(
            body["encoding"][part]["contentType"], "application/octet-stream",
            "{part}"
        );
    }
    assert_eq!(body["encoding"]["meta"]["contentType"], "application/json");
    let responses = &doc["paths"]["/v1/inbound"]["post"]["responses"];
    for status in ["200", "201"] {
        assert_eq!(
            schema_name(&responses[status]["content"]["application/json"]["schema"]),
            "Receipt",
            "{status}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Through the real router: the caller kinds, and the answers of the inbound and inbox operations.

const PEER: &str = "westshire-gateway";
/// Organisations of the test gateway that do not receive through its inbox, and one that does
/// by `https` (its endpoint is this gateway's inbound URL).
const EMAIL_RECIPIENT: &str = "northshire-health";
const NO_ENDPOINT: &str = "millbrook-academy";
const HTTPS_RECIPIENT: &str = "riverside-youth";
/// An organisation the peer is not registered to deliver for.
const OTHER_SENDER: &str = "westshire-cc";

/// A gateway's router state over a scratch store, with organisations (the recipient of the
/// document's `meta` example, receiving by inbox, and the ones above) and one peer gateway,
/// registered to deliver for the `meta` example's sender only.
struct Gateway {
    app: Arc<App>,
    recipient: Principal,
    peer: Principal,
    _state: tempfile::TempDir,
}

impl Gateway {
    fn new(doc: &Value) -> Self {
        Self::with_idle_timeout(doc, std::time::Duration::from_secs(10))
    }

    fn with_idle_timeout(doc: &Value, idle_timeout: std::time::Duration) -> Self {
        let scheme = marking_scheme();
        let ex = meta_example(doc);
        let recipient = org(ex["recipient"].as_str().unwrap());
        let sender = org(ex["sender"].as_str().unwrap());
        assert_ne!(sender.as_str(), OTHER_SENDER);
        let organisation = |id: OrgId, n: u8, channel: Option<Channel>| Organisation {
            id,
            name: format!("Organisation {n}"),
            kind: OrgKind::Statutory(Sector::Police),
            clearance: Rank::Level(1),
            identities: vec![ClientIdentity::Fingerprint {
                fingerprint: CertFingerprint([n; 32]),
                ca: "local".parse().expect("ca"),
            }],
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: channel.map(|channel| Endpoint {
                channel,
                age_recipients: vec![age::x25519::Identity::generate().to_public().to_string()],
                ceiling: None,
            }),
        };
        let organisations = vec![
            organisation(recipient.clone(), 1, Some(Channel::Inbox)),
            organisation(
                org(EMAIL_RECIPIENT),
                3,
                Some(Channel::Email {
                    address: "safeguarding@health.example".into(),
                    tls_only: false,
                }),
            ),
            organisation(org(NO_ENDPOINT), 4, None),
            organisation(
                org(HTTPS_RECIPIENT),
                5,
                Some(Channel::Https {
                    url: "https://localhost:8443/v1/inbound".into(),
                    ca_file: "ca.crt".into(),
                }),
            ),
        ];
        let peer: PeerId = PEER.parse().unwrap();
        let registry = Registry::new(
            scheme,
            organisations,
            Vec::new(),
            Vec::new(),
            vec![Peer {
                id: peer.clone(),
                name: "Westshire gateway".into(),
                identities: vec![ClientIdentity::Fingerprint {
                    fingerprint: CertFingerprint([2; 32]),
                    ca: "local".parse().expect("ca"),
                }],
                senders: vec![sender],
                // This registry defines no purposes: the peer's are taken as given.
                purposes_as_given: true,
            }],
        )
        .expect("the test registry");
        let state = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(state.path()).expect("a scratch store");
        let limits = Limits {
            max_payload_bytes: 1 << 20,
            max_envelope_bytes: 64 * 1024,
            max_connections: 8,
            max_connections_per_source: 8,
            max_handshakes_per_source: 8,
            handshake_timeout: std::time::Duration::from_secs(10),
            idle_timeout,
            min_free_bytes: 0,
            inbound_max_retain_days: 3650,
            upload_memory_bytes: 256 << 20,
            upload_memory_wait: std::time::Duration::from_secs(10),
        };
        let app = App {
            registry: Live::new(registry),
            store,
            spool_key: std::sync::Arc::new(postern_gateway::seal::SpoolKey::from_identity(
                age::x25519::Identity::generate(),
            )),
            subject_key: Arc::new(SubjectKey::new(vec![7; 32]).unwrap()),
            limits: limits.clone(),
            wake: Wake::default(),
            max_email_bytes: 1 << 20,
            arrivals: None,
            upload_memory: postern_gateway::ingest::UploadMemory::new(&limits),
            requests: Arc::new(postern_gateway::config::RequestSettings::builtin().unwrap()),
        };
        Gateway {
            app: Arc::new(app),
            recipient: Principal::Organisation(recipient),
            peer: Principal::Peer(peer),
            _state: state,
        }
    }

    async fn call(
        &self,
        who: &Principal,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        self.call_with(who, method, uri, content_type, Body::from(body))
            .await
    }

    async fn call_with(
        &self,
        who: &Principal,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Answer {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        self.call_headers(who, method, uri, &headers, body).await
    }

    /// A JSON body, with any other headers (e.g. an Idempotency-Key).
    async fn call_json(
        &self,
        who: &Principal,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.call_headers(who, method, uri, &all, Body::from(body.to_string()))
            .await
    }

    async fn call_headers(
        &self,
        who: &Principal,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let mut req = http::Request::builder()
            .method(method.to_ascii_uppercase().as_str())
            .uri(uri)
            .extension(Caller {
                principal: who.clone(),
                fingerprint: CertFingerprint([0; 32]),
            });
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(self.app.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn code(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
    }

    /// The status, the problem's code and its field.
    fn problem(&self) -> (u16, Option<String>, Option<String>) {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        (self.status, text("code"), text("field"))
    }
}

/// What [`Answer::problem`] should be.
fn expect(status: u16, code: &str, field: Option<&str>) -> (u16, Option<String>, Option<String>) {
    (status, Some(code.to_owned()), field.map(str::to_owned))
}

/// Checks that an answer is one the document gives for this response: its status is listed,
/// its media type is the listed one, a problem's code is listed under that status and the
/// field it names is mentioned there, `Retry-After` is sent exactly when documented, and a JSON
/// body has the schema's members. Returns the JSON body, if it is JSON.
fn check_response(at: &str, response: &Value, doc: &Value, a: &Answer) -> Option<Value> {
    let response = resolve(doc, response);
    assert!(
        response.is_object(),
        "{at}: answered {}, which the document does not list",
        a.status
    );
    let documents_retry_after = response["headers"].get("Retry-After").is_some();
    assert_eq!(
        a.retry_after.is_some(),
        documents_retry_after,
        "{at} {}: Retry-After is {:?}; the document {} it",
        a.status,
        a.retry_after,
        if documents_retry_after {
            "lists"
        } else {
            "does not list"
        }
    );
    if let Some(seconds) = &a.retry_after {
        assert!(
            seconds.parse::<u32>().is_ok(),
            "{at}: Retry-After {seconds:?} is a number of seconds"
        );
    }
    let media = a.content_type.split(';').next().unwrap_or_default().trim();
    let content = &response["content"][media];
    assert!(
        content.is_object(),
        "{at} {}: answered {media}, but the document lists {:?}",
        a.status,
        keys(&response["content"])
    );
    match media {
        "application/problem+json" => {
            let p: Problem = serde_json::from_slice(&a.body)
                .unwrap_or_else(|e| panic!("{at} {}: not a Problem: {e}", a.status));
            assert_eq!(p.status, a.status, "{at}: the problem's status");
            assert!(
                strings(&response["x-problem-codes"]).contains(&p.code),
                "{at} {}: answered `{}`, which is not listed under it",
                a.status,
                p.code
            );
            if let Some(field) = &p.field {
                let description = response["description"].as_str().unwrap_or_default();
                let line = description
                    .lines()
                    .find(|l| l.starts_with(&format!("- `{}`", p.code)))
                    .unwrap_or(description);
                let first_error = p.errors.first().map(|e| &e.field) == Some(field)
                    && line.contains("`field` is the first entry of `errors`");
                assert!(
                    first_error || line.contains(&format!("`field` is `{field}`")),
                    "{at} {}: `{}` names the field `{field}`, but its description does not say \"`field` is `{field}`\"",
                    a.status,
                    p.code
                );
            }
            Some(to_json(&p))
        }
        "application/json" => {
            let v: Value = serde_json::from_slice(&a.body)
                .unwrap_or_else(|e| panic!("{at} {}: not JSON: {e}", a.status));
            let (props, req) = flat(doc, &content["schema"]);
            let got = keys(&v);
            assert!(
                got.is_subset(&props) && req.is_subset(&got),
                "{at} {}: members {got:?}, the schema has {props:?} (required {req:?})",
                a.status
            );
            Some(v)
        }
        _ => None,
    }
}

/// As [`check_response`], for an operation.
fn documented(doc: &Value, method: &str, path: &str, a: &Answer) -> Option<Value> {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    check_response(
        &format!("{method} {path}"),
        &op["responses"][a.status.to_string()],
        doc,
        a,
    )
}

fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "postern-openapi-test";
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_refuses_the_other_kind_of_caller_as_documented() {
    let doc = doc();
    let gw = Gateway::new(&doc);
    for (method, path) in ROUTES {
        let op = &doc["paths"][*path][*method];
        let caller = op["x-postern-caller"].as_str().unwrap_or_default();
        let uri = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let as_org = gw.call(&gw.recipient, method, &uri, None, Vec::new()).await;
        let as_peer = gw.call(&gw.peer, method, &uri, None, Vec::new()).await;
        let (right, wrong, code) = match caller {
            "organisation" => (&as_org, &as_peer, "not_an_organisation"),
            "peer_gateway" => (&as_peer, &as_org, "not_a_peer"),
            other => panic!("{method} {path}: x-postern-caller {other:?}"),
        };
        assert_eq!(
            (wrong.status, wrong.code().as_deref()),
            (403, Some(code)),
            "{method} {path} is for {caller}: the other kind gets 403 `{code}`"
        );
        assert!(
            !(right.status == 403
                && CALLERS
                    .iter()
                    .any(|(_, c)| right.code().as_deref() == Some(*c))),
            "{method} {path} is for {caller}, but refused it"
        );
        if (*method, *path) != ("post", "/v1/transfers") {
            documented(&doc, method, path, wrong);
        }
        // Empty requests from the right caller are answered as documented too.
        documented(&doc, method, path, right);
    }

    // The router's own answers.
    let not_found = gw
        .call(&gw.recipient, "get", "/v1/no-such-thing", None, Vec::new())
        .await;
    check_response(
        "GET /v1/no-such-thing",
        &doc["components"]["responses"]["NotFound"],
        &doc,
        &not_found,
    );
    assert_eq!(not_found.status, 404);
    let not_allowed = gw
        .call(&gw.peer, "delete", "/v1/inbound", None, Vec::new())
        .await;
    check_response(
        "DELETE /v1/inbound",
        &doc["components"]["responses"]["MethodNotAllowed"],
        &doc,
        &not_allowed,
    );
    assert_eq!(not_allowed.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_and_inbox_answer_as_documented() {
    let doc = &doc();
    let gw = &Gateway::new(doc);
    let ex = meta_example(doc);
    let meta_json = ex.to_string();
    let envelope: &[u8] =
        b"age-encryption.org/v1 (a sealed envelope, as far as this gateway can tell)";
    let first = b"the sealed payload, first delivery".as_slice();
    let again = b"the sealed payload, a repeat with other bytes".as_slice();
    let deliver = |payload: &'static [u8], meta: String| async move {
        let (ct, body) = multipart(&[
            ("meta", "application/json", meta.as_bytes()),
            ("envelope", "application/octet-stream", envelope),
            ("payload", "application/octet-stream", payload),
        ]);
        gw.call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
            .await
    };
    let inbound = |a: &Answer| documented(doc, "post", "/v1/inbound", a);

    // New: 201 with a receipt of exactly these bytes.
    let a = deliver(first, meta_json.clone()).await;
    assert_eq!(a.status, 201, "a new delivery");
    let receipt: Receipt = serde_json::from_value(inbound(&a).unwrap()).unwrap();
    assert_eq!(receipt.sha256, sha256_hex(first));

    // A repeat: 200, the first receipt's id and time, the digest of this request's bytes.
    let a = deliver(again, meta_json.clone()).await;
    assert_eq!(a.status, 200, "a repeat");
    let repeat: Receipt = serde_json::from_value(inbound(&a).unwrap()).unwrap();
    assert_eq!(repeat.receipt_id, receipt.receipt_id);
    assert_eq!(repeat.received_at, receipt.received_at);
    assert_eq!(repeat.sha256, sha256_hex(again));

    // The problem answers. Each one's status, code and field are the document's; none of these
    // deliveries is kept (the inbox below holds the first delivery only).
    let with = |member: &str, value: Value| edit(&ex, member, Some(value)).to_string();
    let fresh = || {
        edit(
            &ex,
            "transfer_id",
            Some(json!(uuid::Uuid::now_v7().to_string())),
        )
    };

    // `meta` that is not an InboundMeta.
    for bad in [
        with("not_a_member", json!("x")),
        with("transfer_id", json!("not-a-uuid")),
        with("sender", json!("Not An Id")),
        edit(&ex, "purpose", None).to_string(),
        "not json".to_owned(),
    ] {
        let a = deliver(first, bad.clone()).await;
        assert_eq!(
            a.problem(),
            expect(422, "invalid_inbound", Some("meta")),
            "{bad}"
        );
        inbound(&a);
    }

    // A sender the peer is not registered to deliver for.
    let a = deliver(first, with("sender", json!(OTHER_SENDER))).await;
    assert_eq!(
        a.problem(),
        expect(403, "sender_not_permitted", Some("meta.sender"))
    );
    inbound(&a);

    // A peer gateway the registry no longer knows (reloaded since its connection was made).
    let gone = Principal::Peer("gone-gateway".parse().unwrap());
    let (ct, body) = multipart(&[
        ("meta", "application/json", meta_json.as_bytes()),
        ("envelope", "application/octet-stream", envelope),
        ("payload", "application/octet-stream", first),
    ]);
    let a = gw.call(&gone, "post", "/v1/inbound", Some(&ct), body).await;
    assert_eq!(a.problem(), expect(403, "not_a_peer", None));
    inbound(&a);

    // Recipients this gateway keeps no inbox for: unknown, reached by email, without an endpoint.
    for recipient in ["nobody-here", EMAIL_RECIPIENT, NO_ENDPOINT] {
        let a = deliver(first, with("recipient", json!(recipient))).await;
        assert_eq!(
            a.problem(),
            expect(422, "recipient_not_here", Some("meta.recipient")),
            "{recipient}"
        );
        inbound(&a);
    }
    // ... while one reached by https is served here, as the document says.
    let a = deliver(first, with("recipient", json!(HTTPS_RECIPIENT))).await;
    assert_eq!(a.status, 201, "an https recipient's delivery");
    inbound(&a);

    // A retain_until that is not a date.
    assert_eq!(
        schema(doc, "InboundMeta")["properties"]["retain_until"]["format"],
        "date"
    );
    for bad in [
        "2027-13-01",
        "2027-02-30",
        "22/11/2027",
        "2027-11-22T00:00:00Z",
        "",
    ] {
        let a = deliver(first, with("retain_until", json!(bad))).await;
        assert_eq!(
            a.problem(),
            expect(422, "invalid_inbound", Some("meta.retain_until")),
            "retain_until {bad:?}"
        );
        inbound(&a);
    }

    // The parts: missing, unknown, out of order, or anything after the payload.
    let other = fresh().to_string();
    for parts in [
        vec![
            ("meta", "application/json", other.as_bytes()),
            ("payload", "application/octet-stream", first),
        ],
        vec![
            ("meta", "application/json", other.as_bytes()),
            ("envelope", "application/octet-stream", envelope),
        ],
        vec![
            ("meta", "application/json", other.as_bytes()),
            ("signature", "application/octet-stream", envelope),
            ("envelope", "application/octet-stream", envelope),
            ("payload", "application/octet-stream", first),
        ],
        vec![
            ("envelope", "application/octet-stream", envelope),
            ("meta", "application/json", other.as_bytes()),
            ("payload", "application/octet-stream", first),
        ],
    ] {
        let (ct, body) = multipart(&parts);
        let a = gw
            .call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
            .await;
        let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
        assert_eq!(
            a.problem(),
            expect(400, "unexpected_part", None),
            "{names:?}"
        );
        inbound(&a);
    }
    for after in ["payload", "signature"] {
        let (ct, body) = multipart(&[
            ("meta", "application/json", other.as_bytes()),
            ("envelope", "application/octet-stream", envelope),
            ("payload", "application/octet-stream", first),
            (after, "application/octet-stream", b"more"),
        ]);
        let a = gw
            .call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
            .await;
        assert_eq!(
            a.problem(),
            expect(400, "unexpected_part", Some("payload")),
            "`{after}` after the payload"
        );
        inbound(&a);
    }

    // A body that ends inside the payload.
    let (ct, mut body) = multipart(&[
        ("meta", "application/json", other.as_bytes()),
        ("envelope", "application/octet-stream", envelope),
        ("payload", "application/octet-stream", first),
    ]);
    body.truncate(body.len() - "\r\n--postern-openapi-test--\r\n".len() - 4);
    let a = gw
        .call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
        .await;
    assert_eq!(
        a.problem(),
        expect(400, "malformed_request", Some("payload"))
    );
    inbound(&a);

    // Too large: meta, envelope, payload (the limit is 1 MiB here, plus 1 MiB for age).
    let big_meta = vec![b'x'; 64 * 1024 + 1];
    let big_envelope = vec![b'x'; (1 << 20) + 1];
    let big_payload = vec![b'x'; (2 << 20) + 1];
    for (parts, field) in [
        (
            vec![("meta", "application/json", big_meta.as_slice())],
            None,
        ),
        (
            vec![
                ("meta", "application/json", other.as_bytes()),
                (
                    "envelope",
                    "application/octet-stream",
                    big_envelope.as_slice(),
                ),
            ],
            None,
        ),
        (
            vec![
                ("meta", "application/json", other.as_bytes()),
                ("envelope", "application/octet-stream", envelope),
                (
                    "payload",
                    "application/octet-stream",
                    big_payload.as_slice(),
                ),
            ],
            Some("payload"),
        ),
    ] {
        let (ct, body) = multipart(&parts);
        let a = gw
            .call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
            .await;
        let last = parts.last().unwrap().0;
        assert_eq!(
            a.problem(),
            expect(413, "payload_too_large", field),
            "`{last}` too large"
        );
        inbound(&a);
    }

    // Not multipart.
    let a = gw
        .call(
            &gw.peer,
            "post",
            "/v1/inbound",
            Some("application/json"),
            meta_json.clone().into_bytes(),
        )
        .await;
    assert_eq!(a.problem(), expect(415, "unsupported_media_type", None));
    inbound(&a);

    // The recipient's inbox: the item, its envelope and payload (the first delivery's bytes).
    let me = &gw.recipient;
    let list = |query: &'static str| async move {
        let a = gw
            .call(me, "get", &format!("/v1/inbox{query}"), None, Vec::new())
            .await;
        assert_eq!(a.status, 200);
        let v = documented(doc, "get", "/v1/inbox", &a).unwrap();
        serde_json::from_value::<InboxList>(v).unwrap().items
    };
    let items = list("").await;
    assert_eq!(items.len(), 1, "stored once");
    let item = &items[0];
    assert_eq!(item.id, receipt.receipt_id, "the receipt id is the item id");
    assert_eq!(item.transfer_id, ex["transfer_id"]);
    assert_eq!(item.payload_sha256, sha256_hex(first));
    assert_eq!(item.payload_size, first.len() as u64);
    assert_eq!(item.acknowledged_at, None);

    let id = item.id.clone();
    let a = gw
        .call(me, "get", &format!("/v1/inbox/{id}"), None, Vec::new())
        .await;
    assert_eq!(a.status, 200);
    let entry: InboxEntry =
        serde_json::from_value(documented(doc, "get", "/v1/inbox/{id}", &a).unwrap()).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&entry.envelope_age_base64)
            .unwrap(),
        envelope
    );

    let payload = |id: String| async move {
        let a = gw
            .call(
                me,
                "get",
                &format!("/v1/inbox/{id}/payload"),
                None,
                Vec::new(),
            )
            .await;
        documented(doc, "get", "/v1/inbox/{id}/payload", &a);
        a
    };
    let a = payload(id.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, first);

    let ack = |id: String| async move {
        let a = gw
            .call(me, "post", &format!("/v1/inbox/{id}/ack"), None, Vec::new())
            .await;
        let v = documented(doc, "post", "/v1/inbox/{id}/ack", &a);
        (a, v)
    };
    let (a, v) = ack(id.clone()).await;
    assert_eq!(a.status, 200);
    let first_ack: Acknowledged = serde_json::from_value(v.unwrap()).unwrap();
    assert_eq!(first_ack.id, id);
    let (a, v) = ack(id.clone()).await;
    assert_eq!(a.status, 200, "acknowledging again is harmless");
    let second_ack: Acknowledged = serde_json::from_value(v.unwrap()).unwrap();
    assert_eq!(
        second_ack.acknowledged_at, first_ack.acknowledged_at,
        "with the first acknowledgement's time"
    );

    let a = payload(id.clone()).await;
    assert_eq!((a.status, a.code().as_deref()), (410, Some("payload_gone")));
    assert!(
        list("").await.is_empty(),
        "acknowledged items leave the listing"
    );
    let all = list("?all=true").await;
    assert_eq!(all.len(), 1, "?all=true includes them");
    assert_eq!(
        all[0].acknowledged_at.as_deref(),
        Some(first_ack.acknowledged_at.as_str())
    );

    // Unknown items, and another organisation's caller.
    let nobody = uuid::Uuid::now_v7().to_string();
    for (method, path) in [
        ("get", "/v1/inbox/{id}"),
        ("get", "/v1/inbox/{id}/payload"),
        ("post", "/v1/inbox/{id}/ack"),
    ] {
        let a = gw
            .call(me, method, &path.replace("{id}", &nobody), None, Vec::new())
            .await;
        assert_eq!(
            (a.status, a.code().as_deref()),
            (404, Some("inbox_item_not_found")),
            "{method} {path}"
        );
        documented(doc, method, path, &a);
    }
    let a = gw
        .call(
            me,
            "get",
            &format!("/v1/transfers/{nobody}"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(
        (a.status, a.code().as_deref()),
        (404, Some("transfer_not_found"))
    );
    documented(doc, "get", "/v1/transfers/{id}", &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_payload_is_answered_as_documented() {
    use futures_util::StreamExt;
    let doc = &doc();
    let gw = Gateway::with_idle_timeout(doc, std::time::Duration::from_millis(200));
    let meta = meta_example(doc).to_string();
    let (ct, body) = multipart(&[
        ("meta", "application/json", meta.as_bytes()),
        ("envelope", "application/octet-stream", b"sealed"),
        (
            "payload",
            "application/octet-stream",
            b"the start of the payload",
        ),
    ]);
    // Everything up to the middle of the payload, then nothing more, ever.
    let head = bytes::Bytes::copy_from_slice(&body[..body.len() - 40]);
    let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(head)])
        .chain(futures_util::stream::pending());
    let a = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        gw.call_with(
            &gw.peer,
            "post",
            "/v1/inbound",
            Some(&ct),
            Body::from_stream(stalled),
        ),
    )
    .await
    .expect("a stalled delivery is answered");
    assert_eq!(a.problem(), expect(408, "request_timeout", Some("payload")));
    documented(doc, "post", "/v1/inbound", &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_no_longer_writes_is_answered_as_documented() {
    let doc = &doc();
    let gw = &Gateway::new(doc);
    let ex = &meta_example(doc);
    let deliver = |transfer_id: String| async move {
        let meta = edit(ex, "transfer_id", Some(json!(transfer_id))).to_string();
        let (ct, body) = multipart(&[
            ("meta", "application/json", meta.as_bytes()),
            ("envelope", "application/octet-stream", b"sealed"),
            ("payload", "application/octet-stream", b"payload"),
        ]);
        gw.call(&gw.peer, "post", "/v1/inbound", Some(&ct), body)
            .await
    };
    let a = deliver(uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(a.status, 201);
    let receipt: Receipt =
        serde_json::from_value(documented(doc, "post", "/v1/inbound", &a).unwrap()).unwrap();

    let me = &gw.recipient;
    let urgent = accepted_transfer(gw, &org(me_org(me)), true, true).await;

    // The store refuses writes (`StoreError::Closed`) once its writer has stopped, as when the
    // gateway shuts down; the test kit's StopWriter stops it.
    let stopped = gw
        .app
        .store
        .write(false, |_| -> Result<(), StoreError> {
            std::panic::panic_any(postern_gateway::store::StopWriter)
        })
        .await;
    assert!(
        matches!(stopped, Err(StoreError::Closed)),
        "the store's writer has stopped"
    );

    let a = deliver(uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(a.problem(), expect(503, "unavailable", None));
    documented(doc, "post", "/v1/inbound", &a);

    let decision = json!({
        "recipients": [EMAIL_RECIPIENT],
        "reasons": "Not proportionate.",
        "practitioner": {"name": "A", "role": "B", "contact": "C"}
    });
    let a = gw
        .call_json(me, "post", "/v1/decisions", &[], &decision)
        .await;
    assert_eq!(a.problem(), expect(503, "unavailable", None));
    documented(doc, "post", "/v1/decisions", &a);
    let a = gw
        .call_json(
            me,
            "post",
            &format!("/v1/transfers/{urgent}/rationale"),
            &[],
            &json!({"justification": "J"}),
        )
        .await;
    assert_eq!(a.problem(), expect(503, "unavailable", None));
    documented(doc, "post", "/v1/transfers/{id}/rationale", &a);

    let ack = format!("/v1/inbox/{}/ack", receipt.receipt_id);
    let a = gw.call(me, "post", &ack, None, Vec::new()).await;
    assert_eq!(a.problem(), expect(503, "unavailable", None));
    documented(doc, "post", "/v1/inbox/{id}/ack", &a);

    // Reads still work, and the item was not acknowledged.
    let a = gw.call(me, "get", "/v1/inbox", None, Vec::new()).await;
    let list: InboxList =
        serde_json::from_value(documented(doc, "get", "/v1/inbox", &a).unwrap()).unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].acknowledged_at, None);
}

// ---------------------------------------------------------------------------------------------
// Urgent shares, decisions not to share and rationales.

#[test]
fn an_urgent_envelope_may_leave_its_justification_out() {
    let doc = doc();
    let schema = envelope_schema(&doc);
    let ex = example(&doc);
    assert!(
        !required(schema).contains("justification"),
        "justification is required only conditionally"
    );
    assert_eq!(required(&schema["else"]), set(["justification"]));
    assert!(
        property(schema, "justification").get("pattern").is_none()
            && schema["else"]["properties"]["justification"]["pattern"] == "\\S",
        "only a share that is not urgent must have a non-blank justification"
    );
    let cond = &schema["if"];
    assert!(!holds(cond, &ex), "the example is routine");
    let urgent = edit(
        &ex,
        "urgency",
        Some(json!({"level": "urgent", "reason": "Immediate risk."})),
    );
    assert!(holds(cond, &urgent));
    assert_parses(
        &edit(&urgent, "justification", None),
        "urgent, no justification",
    );
    assert_parses(
        &edit(&urgent, "justification", Some(json!("  "))),
        "urgent, blank justification",
    );
    for blank in [None, Some(json!(" "))] {
        let got = errors(&edit(&ex, "justification", blank.clone()));
        assert!(
            got.contains(&("justification".to_owned(), FieldProblem::MissingField)),
            "routine, justification {blank:?}: {got:?}"
        );
    }
}

/// Every field of the decision's wire form set, so that every key serialises.
fn full_raw_decision() -> RawDecision {
    RawDecision {
        recipients: Some(vec!["r".into()]),
        purpose: Some(Some("p".into())),
        reasons: Some("r".into()),
        practitioner: Some(RawPractitioner {
            name: Some("n".into()),
            role: Some("r".into()),
            contact: Some("c".into()),
        }),
        request: Some(Some(RawRequest {
            request_id: Some("0193a7c6-2b3c-7d4e-9f5a-6b7c8d9e0f1a".into()),
            answer: Some("in_full".into()),
            reference: Some("r".into()),
            requested: Some("q".into()),
        })),
        subject_refs: Some(Some(vec!["case:1".into()])),
        data_categories: Some(Some(vec!["personal".into()])),
    }
}

fn full_raw_rationale() -> RawRationale {
    RawRationale {
        justification: Some("j".into()),
        practitioner: Some(RawPractitioner {
            name: Some("n".into()),
            role: Some("r".into()),
            contact: Some("c".into()),
        }),
    }
}

/// The organisation that decides in the document's examples.
const DECIDER: &str = "northshire-cc";

/// A registry in which the decision example's recipients and purpose exist, and the decider.
fn decision_registry(doc: &Value) -> Registry {
    let ex = &schema(doc, "Decision")["example"];
    let mut ids: Vec<String> = strings(&ex["recipients"]);
    ids.push(DECIDER.to_owned());
    let organisations = ids
        .iter()
        .enumerate()
        .map(|(n, id)| Organisation {
            id: org(id),
            name: id.to_uppercase(),
            kind: OrgKind::Statutory(Sector::LocalAuthority),
            clearance: Rank::Level(1),
            identities: vec![ClientIdentity::Fingerprint {
                fingerprint: CertFingerprint([u8::try_from(n).unwrap() + 10; 32]),
                ca: "local".parse().expect("ca"),
            }],
            sign_in: Default::default(),
            contacts: Default::default(),
            endpoint: None,
        })
        .collect();
    let purposes = ex["purpose"]
        .as_str()
        .map(|p| Purpose {
            id: p.parse().unwrap(),
            title: "Purpose".into(),
            lawful_bases: [LawfulBasis::PublicTask].into(),
            statutory_only: false,
            special_category: true,
        })
        .into_iter()
        .collect();
    Registry::new(
        marking_scheme(),
        organisations,
        purposes,
        Vec::new(),
        Vec::new(),
    )
    .expect("the decision registry")
}

/// How the gateway parses a JSON request body (its value is dropped: only errors matter here).
type BodyParser<'a> = Box<dyn Fn(&Value) -> Result<(), DecisionError> + 'a>;

/// A JSON request body the document describes, and the gateway's parser for it.
struct BodySchema<'a> {
    name: &'static str,
    schema: &'a Value,
    /// Every field set, as the Rust type serialises it.
    full: Value,
    parse: BodyParser<'a>,
}

impl BodySchema<'_> {
    fn example(&self) -> Value {
        let ex = self.schema["example"].clone();
        assert!(ex.is_object(), "the {} schema has no example", self.name);
        ex
    }

    fn assert_parses(&self, v: &Value, why: &str) {
        if let Err(e) = (self.parse)(v) {
            panic!("{} {why}: should parse, but: {e:?}\n{v}", self.name);
        }
    }

    fn errors(&self, v: &Value) -> Vec<(String, FieldProblem)> {
        match (self.parse)(v) {
            Err(DecisionError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("{}: expected invalid, got {other:?}\n{v}", self.name),
        }
    }

    /// Every string property's path, nested ones as `practitioner.name`.
    fn string_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        for name in properties(self.schema) {
            let p = property(self.schema, &name);
            if p["type"] == "object" {
                paths.extend(properties(p).into_iter().map(|i| format!("{name}.{i}")));
            } else if p["type"] == "string" {
                paths.push(name);
            }
        }
        paths
    }
}

fn body_schemas<'a>(doc: &'a Value, registry: &'a Registry) -> Vec<BodySchema<'a>> {
    let decider = org(DECIDER);
    vec![
        BodySchema {
            name: "Decision",
            schema: schema(doc, "Decision"),
            full: to_json(&full_raw_decision()),
            parse: Box::new(move |v| {
                let cx = DecisionContext {
                    decider: &decider,
                    registry,
                };
                decision::parse_decision(v.to_string().as_bytes(), &cx).map(|_| ())
            }),
        },
        BodySchema {
            name: "Rationale",
            schema: schema(doc, "Rationale"),
            full: to_json(&full_raw_rationale()),
            parse: Box::new(|v| decision::parse_rationale(v.to_string().as_bytes()).map(|_| ())),
        },
    ]
}

#[test]
fn the_decision_and_rationale_bodies_are_the_code_s() {
    let doc = doc();
    let registry = decision_registry(&doc);
    let bodies = body_schemas(&doc, &registry);
    for b in &bodies {
        let name = b.name;
        let ex = b.example();
        b.assert_parses(&ex, "example");
        let op_body = if name == "Decision" {
            &doc["paths"]["/v1/decisions"]["post"]["requestBody"]
        } else {
            &doc["paths"]["/v1/transfers/{id}/rationale"]["post"]["requestBody"]
        };
        assert_eq!(
            schema_name(&op_body["content"]["application/json"]["schema"]),
            name
        );

        // The properties are the wire form's fields; unknown ones are refused at every level.
        assert_eq!(properties(b.schema), keys(&b.full), "{name} properties");
        assert_eq!(b.schema["additionalProperties"], false, "{name}");
        let got = b.errors(&edit(&ex, "not_a_field", Some(json!("x"))));
        assert!(
            got.contains(&("not_a_field".to_owned(), FieldProblem::UnknownField)),
            "{name}: {got:?}"
        );
        for (nested, value) in b.full.as_object().unwrap() {
            if !value.is_object() {
                continue;
            }
            let s = property(b.schema, nested);
            assert_eq!(properties(s), keys(value), "{name}.{nested} properties");
            assert_eq!(s["additionalProperties"], false, "{name}.{nested}");
            if ex.get(nested).is_some() {
                let field = format!("{nested}.not_a_field");
                let got = b.errors(&edit(&ex, &field, Some(json!("x"))));
                assert!(
                    got.contains(&(field.clone(), FieldProblem::UnknownField)),
                    "{name}: {got:?}"
                );
            }
        }

        // Required is exactly what the validator reports missing; the rest may be left out.
        let req = required(b.schema);
        for field in keys(&ex) {
            let without = edit(&ex, &field, None);
            if req.contains(&field) {
                assert!(
                    b.errors(&without)
                        .contains(&(field.clone(), FieldProblem::MissingField)),
                    "{name} without {field}"
                );
            } else {
                b.assert_parses(&without, &format!("without the optional {field}"));
            }
            let nested = property(b.schema, &field);
            if nested["type"] != "object" {
                continue;
            }
            let nested_req = required(nested);
            for inner in keys(&ex[&field]) {
                let path = format!("{field}.{inner}");
                let without = edit(&ex, &path, None);
                // `anyOf` branches that each require a set of fields: a field no branch can do
                // without, once left out, is as required as a required one.
                let left: BTreeSet<String> = keys(&ex[&field])
                    .into_iter()
                    .filter(|k| *k != inner)
                    .collect();
                let no_branch_left = nested["anyOf"].as_array().is_some_and(|branches| {
                    !branches
                        .iter()
                        .any(|b| strings(&b["required"]).iter().all(|f| left.contains(f)))
                });
                if nested_req.contains(&inner) || no_branch_left {
                    assert!(
                        b.errors(&without)
                            .contains(&(path.clone(), FieldProblem::MissingField)),
                        "{name} without {path}"
                    );
                } else {
                    b.assert_parses(&without, &format!("without the optional {path}"));
                }
            }
        }
        assert!(
            keys(&ex).is_superset(&req),
            "the {name} example has every required field"
        );

        // Every string with a maxLength: that many characters is not too long; one more is refused.
        let mut checked = 0;
        for path in b.string_paths() {
            let p = property(b.schema, &path);
            let Some(len) = p["maxLength"].as_u64() else {
                continue;
            };
            let len = usize::try_from(len).unwrap();
            let at_limit = match (b.parse)(&edit(&ex, &path, Some(json!("x".repeat(len))))) {
                Ok(()) => Vec::new(),
                Err(DecisionError::Invalid(e)) => {
                    e.into_iter().map(|e| (e.field, e.code)).collect()
                }
                Err(e) => panic!("{name}.{path}: {e:?}"),
            };
            assert!(
                !at_limit.contains(&(path.clone(), FieldProblem::TooLong)),
                "{name}.{path}: {len} characters should not be too long"
            );
            let over = b.errors(&edit(&ex, &path, Some(json!("x".repeat(len + 1)))));
            assert!(
                over.iter().any(|(f, _)| *f == path),
                "{name}.{path}: {} characters should be refused, got {over:?}",
                len + 1
            );
            checked += 1;
        }
        assert!(checked >= 4, "{name}: only {checked} maxLengths checked");
    }

    // The decision's lists and vocabulary.
    let s = schema(&doc, "Decision");
    let max = |path: &str, key: &str| property(s, path)[key].as_u64();
    assert_eq!(
        max("recipients", "maxItems"),
        Some(limits::MAX_RECIPIENTS as u64)
    );
    assert_eq!(max("recipients", "minItems"), Some(1));
    assert_eq!(
        max("subject_refs", "maxItems"),
        Some(limits::MAX_SUBJECT_REFS as u64)
    );
    assert_eq!(
        strings(&property(s, "data_categories")["items"]["enum"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        set(DataCategory::ALL.iter().map(|d| d.as_str()))
    );
    let b = &bodies[0];
    let ex = b.example();
    for (field, bad) in [
        ("recipients", json!([])),
        ("recipients", json!(["not-registered-here"])),
        ("recipients", json!([DECIDER])),
        ("purpose", json!("not-a-configured-purpose")),
        ("data_categories", json!(["gossip"])),
        ("subject_refs", json!(["nhs:1234567890"])),
    ] {
        let got = b.errors(&edit(&ex, field, Some(bad.clone())));
        assert!(
            got.iter().any(|(f, _)| f.starts_with(field)),
            "{field} = {bad}: {got:?}"
        );
    }
}

/// An accepted transfer from `sender`, as ingest stores it (its record, facets and row).
async fn accepted_transfer(gw: &Gateway, sender: &OrgId, urgent: bool, pending: bool) -> String {
    let id = TransferId::from_uuid(uuid::Uuid::now_v7());
    let at = "2026-11-22T10:00:00.000000Z";
    let entry = LogEntry {
        kind: RecordKind::TransferAccepted,
        at: at.into(),
        transfer_id: Some(id),
        sender: Some(sender.clone()),
        code: None,
        subjects: Vec::new(),
        facets: Some(Facets {
            decision: "shared",
            urgency: Some(if urgent { "urgent" } else { "routine" }.into()),
            rationale_to_follow: pending,
            ..Facets::default()
        }),
        body: b"{}".to_vec(),
    };
    let new = NewTransfer {
        id,
        sender: sender.clone(),
        received_at: at.into(),
        purpose: "p".into(),
        marking: "OFFICIAL".into(),
        payload: StoredPayload::Inline(vec![1]),
        summary: SealSummary {
            plaintext_size: 1,
            plaintext_sha256: [0; 32],
            sealed_size: 1,
            sealed_sha256: [0; 32],
        },
        sealed_envelope: vec![1],
        deliveries: Vec::new(),
    };
    gw.app
        .store
        .write(false, move |tx| {
            let seq = tx.append(&entry)?;
            tx.insert_transfer(&new, seq)
        })
        .await
        .expect("a stored transfer");
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_rationales_answer_as_documented() {
    let doc = &doc();
    let gw = &Gateway::new(doc);
    let me = &gw.recipient;
    let other = &Principal::Organisation(org(EMAIL_RECIPIENT));
    let body = json!({
        "recipients": [EMAIL_RECIPIENT, HTTPS_RECIPIENT],
        "reasons": "REASONS-SENTINEL: not proportionate.",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam@example.org"},
        "subject_refs": ["case:SUBJECT-SENTINEL"]
    });
    let post = |headers: &'static [(&'static str, &'static str)], body: Value| async move {
        let a = gw
            .call_json(me, "post", "/v1/decisions", headers, &body)
            .await;
        let v = documented(doc, "post", "/v1/decisions", &a);
        (a, v)
    };

    // Recorded: 201, the decision's URL, and it reads back as documented, to its decider only.
    let key: &[(&str, &str)] = &[("idempotency-key", "decision-1")];
    let (a, v) = post(key, body.clone()).await;
    assert_eq!(a.status, 201);
    let declined: Declined = serde_json::from_value(v.unwrap()).unwrap();
    assert_eq!(declined.status, "declined");
    let (again, v) = post(key, body.clone()).await;
    assert_eq!(again.status, 201, "a replay");
    assert_eq!(
        serde_json::from_value::<Declined>(v.unwrap()).unwrap(),
        declined
    );
    let url = declined.decision_url.clone();
    let a = gw.call(me, "get", &url, None, Vec::new()).await;
    assert_eq!(a.status, 200);
    let record: DeclinedRecord =
        serde_json::from_value(documented(doc, "get", "/v1/decisions/{id}", &a).unwrap()).unwrap();
    assert_eq!(record.decision_id.to_string(), declined.decision_id);
    assert_eq!(record.subject_ref_hashes.len(), 1);
    let a = gw.call(other, "get", &url, None, Vec::new()).await;
    assert_eq!(a.problem(), expect(404, "decision_not_found", Some("id")));
    documented(doc, "get", "/v1/decisions/{id}", &a);
    let a = gw
        .call(me, "get", "/v1/decisions/not-a-uuid", None, Vec::new())
        .await;
    assert_eq!(a.problem(), expect(404, "decision_not_found", Some("id")));

    // The problems.
    let (a, _) = post(key, edit(&body, "reasons", Some(json!("Other reasons.")))).await;
    assert_eq!(
        a.problem(),
        expect(422, "idempotency_key_reused", Some("Idempotency-Key"))
    );
    let (a, _) = post(&[("idempotency-key", "")], body.clone()).await;
    assert_eq!(
        a.problem(),
        expect(400, "invalid_idempotency_key", Some("Idempotency-Key"))
    );
    let (a, _) = post(
        &[],
        json!({"recipients": ["nobody-here"], "practitioner": {"name": "A"}}),
    )
    .await;
    assert_eq!(
        a.problem(),
        expect(422, "invalid_decision", Some("recipients[0]"))
    );
    let p: Problem = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(p.errors.len(), 4, "{p:?}");
    assert!(!String::from_utf8_lossy(&a.body).contains("nobody-here"));
    let (a, _) = post(&[], edit(&body, "reasons", Some(json!("x".repeat(70_000))))).await;
    assert_eq!(a.problem(), expect(413, "body_too_large", None));
    for (ct, bytes, status, code) in [
        (
            Some("application/json"),
            "{\"recipients\": [",
            400,
            "malformed_request",
        ),
        (Some("text/plain"), "{}", 415, "unsupported_media_type"),
        (None, "{}", 415, "unsupported_media_type"),
    ] {
        let a = gw
            .call(me, "post", "/v1/decisions", ct, bytes.as_bytes().to_vec())
            .await;
        assert_eq!(a.problem(), expect(status, code, None), "{ct:?}");
        documented(doc, "post", "/v1/decisions", &a);
    }

    // The rationale of an urgent share, by its sender, once.
    let sender = org(me_org(me));
    let pending = accepted_transfer(gw, &sender, true, true).await;
    let given = accepted_transfer(gw, &sender, true, false).await;
    let routine = accepted_transfer(gw, &sender, false, false).await;
    let path = |id: &str| format!("/v1/transfers/{id}/rationale");
    let rationale = json!({"justification": "RATIONALE-SENTINEL"});
    let send = async |who: &Principal, id: String, body: Value| {
        let a = gw.call_json(who, "post", &path(&id), &[], &body).await;
        let v = documented(doc, "post", "/v1/transfers/{id}/rationale", &a);
        (a, v)
    };

    let (a, _) = send(other, pending.clone(), rationale.clone()).await;
    assert_eq!(a.problem(), expect(404, "transfer_not_found", Some("id")));
    let (a, _) = send(me, uuid::Uuid::now_v7().to_string(), rationale.clone()).await;
    assert_eq!(a.problem(), expect(404, "transfer_not_found", Some("id")));
    let (a, _) = send(me, pending.clone(), json!({"practitioner": {"name": "A"}})).await;
    assert_eq!(
        a.problem(),
        expect(422, "invalid_rationale", Some("justification"))
    );
    let a = gw
        .call(
            me,
            "post",
            &path(&pending),
            Some("text/plain"),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(a.problem(), expect(415, "unsupported_media_type", None));
    documented(doc, "post", "/v1/transfers/{id}/rationale", &a);
    let (a, v) = send(me, pending.clone(), rationale.clone()).await;
    assert_eq!(a.status, 200);
    let recorded: RationaleRecorded = serde_json::from_value(v.unwrap()).unwrap();
    assert_eq!(recorded.transfer_id, pending);
    let (a, _) = send(me, pending.clone(), rationale.clone()).await;
    assert_eq!(
        a.problem(),
        expect(409, "rationale_already_recorded", Some("id"))
    );
    let (a, _) = send(me, given, rationale.clone()).await;
    assert_eq!(
        a.problem(),
        expect(409, "rationale_already_recorded", Some("id"))
    );
    let (a, _) = send(me, routine, rationale.clone()).await;
    assert_eq!(a.problem(), expect(422, "transfer_not_urgent", Some("id")));

    // What was recorded: the decision once, the rationale once, under the transfer.
    let bodies: Vec<(String, Vec<u8>)> = gw
        .app
        .store
        .read_sqlite(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, body FROM log WHERE kind IN ('decision_declined', 'rationale_added') ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap();
    assert_eq!(bodies.len(), 2);
    let added: RationaleRecord = serde_json::from_slice(&bodies[1].1).unwrap();
    assert_eq!(added.transfer_id.to_string(), pending);
    assert_eq!(added.justification, "RATIONALE-SENTINEL");
}

fn me_org(p: &Principal) -> &str {
    match p {
        Principal::Organisation(o) => o.as_str(),
        Principal::Peer(_) => panic!("an organisation"),
    }
}
