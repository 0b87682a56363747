//! The API's contract, `docs/openapi.json`, made from the code: the schemas from the Rust types
//! the routes read and answer with (their doc comments are the schemas' descriptions, their
//! attributes the limits and vocabularies), the paths from the operations beside the router,
//! and every problem answer from [`ProblemCode`] and [`Rule`]: a code's status decides where it
//! is listed, and the `Retry-After` header goes wherever a status says to retry.
//!
//! `tests/openapi.rs` regenerates the document and fails if the committed file differs
//! (`POSTERN_WRITE_OPENAPI=1 cargo test --test openapi` rewrites it), and drives the real router
//! to check that what it answers is what the document says.

mod examples;
mod operations;
mod prose;
mod requests;

use schemars::Schema;
use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use schemars::transform::{Transform, transform_subschemas};
use serde_json::{Map, Value, json};

use crate::domain::decision::{RawDecision, RawRationale};
use crate::domain::envelope::{RawEnvelope, RecipientEnvelope};
use crate::domain::policy::Rule;
use crate::inbox::InboundMeta;
use crate::ingest::decisions::{Declined, RationaleRecorded};
use crate::ingest::inbound::{Acknowledged, InboxEntry, InboxList};
use crate::ingest::problem::{Problem, ProblemCode};
use crate::ingest::routes::Accepted;
use crate::log::{DeclinedRecord, Receipt};
use crate::store::inbox::InboxItem;
use crate::store::{RecipientStatus, TransferStatus};
use prose::Shared;

/// Which kind of caller an operation is for (the other kind is answered 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallerKind {
    Organisation,
    PeerGateway,
}

impl CallerKind {
    fn name(self) -> &'static str {
        match self {
            CallerKind::Organisation => "organisation",
            CallerKind::PeerGateway => "peer_gateway",
        }
    }
}

/// A code a problem answer carries: the API's own, or a policy rule's refusal (always 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Api(ProblemCode),
    Refused(Rule),
}

impl Code {
    fn code(self) -> &'static str {
        match self {
            Code::Api(c) => c.code(),
            Code::Refused(r) => r.refusal_code(),
        }
    }

    fn status(self) -> u16 {
        match self {
            Code::Api(c) => c.status(),
            Code::Refused(_) => 403,
        }
    }
}

/// The problem answers of one status: what they have in common, then each code with what it
/// means for this operation. The status is the codes' own.
#[derive(Debug, Clone, Copy)]
struct Problems {
    intro: &'static str,
    codes: &'static [(Code, &'static str)],
}

impl Problems {
    /// The codes' status (they all have the same one: a test keeps it so).
    fn status(&self) -> u16 {
        self.codes.first().map_or(500, |(c, _)| c.status())
    }

    fn response(&self) -> Value {
        let list: Vec<String> = self
            .codes
            .iter()
            .map(|(c, meaning)| format!("- `{}`: {meaning}", c.code()))
            .collect();
        let mut r = json!({
            "description": format!("{}\n\n`code` is one of:\n\n{}", self.intro, list.join("\n")),
            "content": {
                "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } }
            },
            "x-problem-codes": self.codes.iter().map(|(c, _)| c.code()).collect::<Vec<_>>(),
        });
        if retry_after(self.status()) {
            r["headers"] = json!({ "Retry-After": { "$ref": "#/components/headers/RetryAfter" } });
        }
        r
    }
}

/// Every 503 says when to try again, and so does a 507 (the disk may have room later).
fn retry_after(status: u16) -> bool {
    matches!(status, 503 | 507)
}

/// One route, as the document describes it.
struct Operation {
    method: &'static str,
    path: &'static str,
    caller: CallerKind,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    /// `parameters`, as the document writes them.
    parameters: Value,
    /// `requestBody` (`null`: none).
    request_body: Value,
    /// The answers that are not problems, by status.
    answers: Value,
    problems: &'static [Problems],
    /// What this operation's problem answers add, by status: an example, a header.
    problem_extras: Value,
    /// The problem answers it shares with other operations.
    shared: &'static [Shared],
}

impl Operation {
    fn document(&self) -> Value {
        let mut responses = match &self.answers {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        for p in self.problems {
            let status = p.status().to_string();
            let mut response = p.response();
            if let Some(extra) = self.problem_extras.get(&status) {
                merge(&mut response, extra);
            }
            responses.insert(status, response);
        }
        for s in self.shared {
            responses.insert(
                s.problems().status().to_string(),
                json!({ "$ref": format!("#/components/responses/{}", s.name()) }),
            );
        }
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "description": self.description,
            "x-postern-caller": self.caller.name(),
            "responses": responses,
        });
        if self.parameters.as_array().is_some_and(|p| !p.is_empty()) {
            op["parameters"] = self.parameters.clone();
        }
        if !self.request_body.is_null() {
            op["requestBody"] = self.request_body.clone();
        }
        op
    }
}

/// Adds `extra`'s members to `into`, object by object.
fn merge(into: &mut Value, extra: &Value) {
    match (into, extra) {
        (Value::Object(into), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, extra) => *into = extra.clone(),
    }
}

/// The whole document.
/// Every route the document describes.
fn all_operations() -> Vec<Operation> {
    let mut all = operations::operations();
    all.extend(requests::operations());
    all
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for op in all_operations() {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = op.document();
    }
    let mut responses = Map::new();
    for s in Shared::ALL {
        let p = s.problems();
        let mut r = p.response();
        if s.answered_by_the_router() {
            r["x-status"] = json!(p.status());
        }
        responses.insert(s.name().to_owned(), r);
    }
    let mut info = prose::info();
    info["version"] = json!(env!("CARGO_PKG_VERSION"));
    json!({
        "openapi": "3.1.0",
        "info": info,
        "security": [{ "mutualTLS": [] }],
        "tags": prose::tags(),
        "paths": paths,
        "components": {
            "securitySchemes": prose::security_schemes(),
            "parameters": prose::parameters(),
            "headers": prose::headers(),
            "responses": responses,
            "schemas": schemas(),
        }
    })
}

/// The document as the committed file holds it: pretty-printed, ending in a newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    settings.transforms.push(Box::new(AbsentNotNull));
    settings.transforms.push(Box::new(Unwrapped));
    settings.into_generator()
}

/// A member that may be left out is left out, never sent as `null`: the answers skip what they
/// have nothing to say in (`skip_serializing_if`), and a request's `null` is read as absent at
/// best. So an optional member's schema does not offer `null`; a required one keeps it where
/// the code sends it (an inbox item's `acknowledged_at` before acknowledgement).
#[derive(Debug, Clone, Copy)]
struct AbsentNotNull;

impl Transform for AbsentNotNull {
    fn transform(&mut self, schema: &mut Schema) {
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            for (name, property) in properties.iter_mut() {
                if !required.contains(name) {
                    not_null(property);
                }
            }
        }
        transform_subschemas(self, schema);
    }
}

/// Doc comments are wrapped at 100 columns; a description is not. Joins the lines of each
/// paragraph (a list item keeps its own line).
#[derive(Debug, Clone, Copy)]
struct Unwrapped;

impl Transform for Unwrapped {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(Value::String(text)) = schema.get_mut("description") {
            *text = unwrap_lines(text);
        }
        transform_subschemas(self, schema);
    }
}

fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::new();
            for line in paragraph.lines() {
                if !out.is_empty() {
                    out.push(if line.starts_with("- ") { '\n' } else { ' ' });
                }
                out.push_str(line.trim());
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn not_null(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    if let Some(Value::Array(types)) = m.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            m.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(Value::Array(any)) = m.get_mut("anyOf") {
        any.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
        if any.len() == 1 {
            let only = any.remove(0);
            m.remove("anyOf");
            if let Value::Object(only) = only {
                m.extend(only);
            }
        }
    }
}

/// `components.schemas`: what the routes read (as they deserialize it) and what they answer
/// with (as they serialize it).
fn schemas() -> Map<String, Value> {
    let mut read = generator(Contract::Deserialize);
    read.subschema_for::<RawEnvelope>();
    read.subschema_for::<RawDecision>();
    read.subschema_for::<RawRationale>();
    read.subschema_for::<InboundMeta>();
    read.subschema_for::<crate::domain::info_request::RawInfoRequest>();
    read.subschema_for::<crate::ingest::requests::RawWithdrawal>();
    read.subschema_for::<crate::domain::feedback::RawFeedback>();
    read.subschema_for::<crate::ingest::requests::RawClarification>();
    let mut written = generator(Contract::Serialize);
    written.subschema_for::<Accepted>();
    written.subschema_for::<Declined>();
    written.subschema_for::<DeclinedRecord>();
    written.subschema_for::<RationaleRecorded>();
    written.subschema_for::<TransferStatus>();
    written.subschema_for::<RecipientStatus>();
    written.subschema_for::<Receipt>();
    written.subschema_for::<RecipientEnvelope>();
    written.subschema_for::<InboxItem>();
    written.subschema_for::<InboxEntry>();
    written.subschema_for::<InboxList>();
    written.subschema_for::<Acknowledged>();
    written.subschema_for::<Problem>();
    written.subschema_for::<crate::ingest::requests::RequestMade>();
    written.subschema_for::<crate::ingest::requests::RequestView>();
    written.subschema_for::<crate::ingest::requests::RequestList>();
    written.subschema_for::<crate::ingest::requests::RequestWithdrawn>();
    written.subschema_for::<crate::ingest::feedback::FeedbackRecorded>();
    written.subschema_for::<crate::ingest::requests::ClarificationRecorded>();
    let mut all = read.take_definitions(true);
    all.extend(written.take_definitions(true));
    for (name, example) in examples::examples() {
        if let Some(Value::Object(schema)) = all.get_mut(name) {
            schema.insert("example".into(), example);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_problem_block_has_one_status_and_each_operation_one_block_per_status() {
        for op in all_operations() {
            let mut seen = BTreeSet::new();
            for p in op.problems {
                assert!(
                    !p.codes.is_empty(),
                    "{} {}: an empty block",
                    op.method,
                    op.path
                );
                for (c, _) in p.codes {
                    assert_eq!(
                        c.status(),
                        p.status(),
                        "{} {}: `{}` is listed under {}",
                        op.method,
                        op.path,
                        c.code(),
                        p.status()
                    );
                }
                assert!(
                    seen.insert(p.status()),
                    "{} {}: two blocks for {}",
                    op.method,
                    op.path,
                    p.status()
                );
            }
            for s in op.shared {
                assert!(
                    seen.insert(s.problems().status()),
                    "{} {}: {} twice",
                    op.method,
                    op.path,
                    s.name()
                );
            }
        }
    }

    #[test]
    fn the_operations_are_the_routes() {
        let ops: Vec<(&str, &str)> = all_operations()
            .iter()
            .map(|o| (o.method, o.path))
            .collect();
        assert_eq!(ops, super::super::ROUTES);
    }
}
