//! Field-level validation shared by every JSON body the core parses (the envelope, a decision
//! not to share, a rationale): the redacted text type, the per-field error, a collector that
//! reports every field at fault at once, and the reading of JSON that never echoes a value.
//!
//! Pure, like the rest of the core. The envelope re-exports the public items, so their path
//! stays `domain::envelope::{Sensitive, FieldError, FieldProblem}`.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Free text that may describe a person or a family (a justification, a reason, a summary).
/// It is recorded and sealed for recipients, but its `Debug` is redacted and it has no
/// `Display`, so it cannot reach an operational log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(pub(super) String);

impl Sensitive {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} chars>", self.0.chars().count())
    }
}

/// What is wrong with one field. The code is stable and machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum FieldProblem {
    MissingField,
    InvalidValue,
    TooLong,
    UnknownField,
    UnrecognisedMarking,
}

impl FieldProblem {
    pub fn code(self) -> &'static str {
        match self {
            FieldProblem::MissingField => "missing_field",
            FieldProblem::InvalidValue => "invalid_value",
            FieldProblem::TooLong => "too_long",
            FieldProblem::UnknownField => "unknown_field",
            FieldProblem::UnrecognisedMarking => "unrecognised_marking",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub code: FieldProblem,
    /// Dotted path of the field, e.g. `practitioner.role` or `recipients[1]`.
    pub field: String,
    pub message: String,
}

/// The errors of one body, gathered so that one answer names every field at fault.
pub(super) struct Collector(pub(super) Vec<FieldError>);

impl Collector {
    pub(super) fn push(
        &mut self,
        code: FieldProblem,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError {
            code,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(super) fn missing(&mut self, field: &str, what: &str) {
        self.push(
            FieldProblem::MissingField,
            field,
            format!("`{field}` is required: {what}"),
        );
    }

    pub(super) fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(FieldProblem::InvalidValue, field, message);
    }

    /// A required text field: present, not blank, within its length limit.
    pub(super) fn text(
        &mut self,
        v: Option<String>,
        field: &str,
        max: usize,
        what: &str,
    ) -> Option<String> {
        match v.map(|s| s.trim().to_owned()) {
            None => {
                self.missing(field, what);
                None
            }
            Some(s) if s.is_empty() => {
                self.push(
                    FieldProblem::MissingField,
                    field,
                    format!("`{field}` is blank: {what}"),
                );
                None
            }
            Some(s) => self.limit(s, field, max),
        }
    }

    /// Optional text: absent is fine, blank is treated as absent.
    pub(super) fn optional_text(
        &mut self,
        v: Option<String>,
        field: &str,
        max: usize,
    ) -> Option<String> {
        let s = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())?;
        self.limit(s, field, max)
    }

    fn limit(&mut self, s: String, field: &str, max: usize) -> Option<String> {
        if s.chars().count() > max {
            self.push(
                FieldProblem::TooLong,
                field,
                format!("`{field}` is longer than {max} characters"),
            );
            None
        } else {
            Some(s)
        }
    }
}

/// The error for a body whose every field passed but whose result is still missing a part;
/// unreachable while each `None` pushes an error, but answered 422 rather than a panic.
/// For an optional member whose `null` is not a value: absent is `None` (with
/// `#[serde(default)]`), `null` is `Some(None)`, a value `Some(Some(v))`, so that validation can
/// refuse an explicit `null` instead of taking it for "left out".
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

impl Collector {
    /// An optional member: its value, or `None` when it was left out; an explicit `null` is
    /// refused (it says nothing, and taking it for "left out" would record what was not said).
    pub(super) fn not_null<T>(&mut self, v: Option<Option<T>>, field: &str) -> Option<T> {
        match v {
            None => None,
            Some(Some(v)) => Some(v),
            Some(None) => {
                self.invalid(
                    field,
                    format!("`{field}` is null: give a value, or leave the member out"),
                );
                None
            }
        }
    }
}

pub(super) fn incomplete(what: &str) -> FieldError {
    FieldError {
        code: FieldProblem::InvalidValue,
        field: String::new(),
        message: format!("the {what} is incomplete"),
    }
}

/// Reads a JSON body into its wire form. Syntax errors go to `malformed`; a wrong type or an
/// unknown field goes to `invalid` as one error with the path of the field, never its value
/// (the answer must not echo what was typed). `what` names the body in messages.
pub(super) fn read_json<T: DeserializeOwned, E>(
    bytes: &[u8],
    (what, objects): (&str, &[&str]),
    malformed: impl FnOnce(String) -> E,
    invalid: impl FnOnce(Vec<FieldError>) -> E,
) -> Result<T, E> {
    // serde's derived readers take a JSON array for a struct, members by position: the body,
    // and each member named in `objects`, must be a JSON object (or, for a member, null).
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Err(malformed(e.to_string())),
    };
    let Some(members) = value.as_object() else {
        return Err(invalid(vec![FieldError {
            code: FieldProblem::InvalidValue,
            field: String::new(),
            message: format!("the {what} must be a JSON object"),
        }]));
    };
    let mut wrong: Vec<FieldError> = objects
        .iter()
        .filter(|m| {
            members
                .get(**m)
                .is_some_and(|v| !v.is_object() && !v.is_null())
        })
        .map(|m| FieldError {
            code: FieldProblem::InvalidValue,
            field: (*m).to_owned(),
            message: format!("`{m}` has the wrong type: expected an object"),
        })
        .collect();
    if !wrong.is_empty() {
        return Err(invalid(std::mem::take(&mut wrong)));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = safe_path(&e.path().to_string());
        let inner = e.into_inner();
        if inner.is_data() {
            let (code, message) = describe_serde(&strip_position(&inner.to_string()));
            let field = if path == "." { String::new() } else { path };
            invalid(vec![FieldError {
                code,
                message: if field.is_empty() {
                    format!("the {what} {message}")
                } else {
                    format!("`{field}` {message}")
                },
                field,
            }])
        } else {
            malformed(inner.to_string())
        }
    })
}

/// A field name is echoed only if it looks like one: the record must not become a copy of
/// whatever was typed into the wrong place (an NHS number used as a key, say).
fn safe_name(s: &str) -> bool {
    s.len() <= 40
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn safe_path(path: &str) -> String {
    path.split('.')
        .map(|seg| {
            let name = seg.split('[').next().unwrap_or(seg);
            if name.is_empty() || safe_name(name) {
                seg.to_owned()
            } else {
                "?".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// serde's messages quote the offending value (`invalid type: string "nhs:943..."`); these are
/// recorded and answered, so the value is dropped and only what was expected is said.
fn describe_serde(msg: &str) -> (FieldProblem, String) {
    let expected = |rest: &str| {
        rest.split_once(", expected ")
            .map(|(_, e)| format!(": expected {e}"))
            .unwrap_or_default()
    };
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        return (
            FieldProblem::InvalidValue,
            format!("has the wrong type{}", expected(rest)),
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        return (
            FieldProblem::InvalidValue,
            format!("has an invalid value{}", expected(rest)),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let expected = rest
            .split_once(", expected ")
            .map(|(_, e)| format!("; expected {e}"))
            .unwrap_or_default();
        return (
            FieldProblem::UnknownField,
            format!("is not a known field{expected}"),
        );
    }
    if msg.starts_with("invalid length") {
        return (
            FieldProblem::InvalidValue,
            format!("has the wrong {}", msg.trim_start_matches("invalid ")),
        );
    }
    (FieldProblem::InvalidValue, "is not valid here".to_owned())
}

/// serde_json appends " at line 1 column 57"; the field path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}
