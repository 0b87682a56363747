//! The one place where errors become HTTP answers: RFC 9457 problem+json with a stable
//! machine-readable `code`, the field at fault, and a sentence a person understands. Internal
//! errors are logged and answered with a generic message; their details never reach the caller.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::envelope::FieldError;
use crate::domain::policy::{Refusal, Rule};

/// Every code the API answers with (besides the policy refusals, whose codes are the rules'
/// own: [`Rule::refusal_code`]), with its status and title. The OpenAPI document's list of
/// codes, and where each operation lists a code, come from here (`ingest::openapi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    MalformedRequest,
    EnvelopeNotJson,
    EnvelopeMissing,
    PayloadMissing,
    UnexpectedPart,
    InvalidIdempotencyKey,
    InvalidEnvelope,
    IdempotencyKeyReused,
    HeadersTooLarge,
    EnvelopeTooLarge,
    PayloadTooLarge,
    PayloadTooLargeForEmail,
    UnsupportedMediaType,
    RequestTimeout,
    NotFound,
    TransferNotFound,
    MethodNotAllowed,
    CertificateNoLongerAccepted,
    NotAnOrganisation,
    NotAPeer,
    InvalidInbound,
    RecipientNotHere,
    SenderNotPermitted,
    InboundConflict,
    InboxItemNotFound,
    PayloadGone,
    CorrectionNotPermitted,
    InvalidDecision,
    DecisionNotFound,
    BodyTooLarge,
    InvalidRationale,
    TransferNotUrgent,
    RationaleAlreadyRecorded,
    InvalidInfoRequest,
    RequestNotFound,
    RequestClosed,
    NotTheRequester,
    InvalidFeedback,
    ClarificationOutOfTurn,
    InternalError,
    Unavailable,
    Busy,
    InsufficientStorage,
}

/// `ProblemCode` in the API's contract: every code, with its status; the policy refusals'
/// codes are the rules'.
impl schemars::JsonSchema for ProblemCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProblemCode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let listed: Vec<String> = ProblemCode::ALL
            .iter()
            .map(|c| format!("`{}` ({})", c.code(), c.status()))
            .collect();
        let rules: Vec<String> = Rule::ALL
            .iter()
            .map(|r| format!("`{}`", r.refusal_code()))
            .collect();
        let codes = ProblemCode::ALL
            .iter()
            .map(|c| c.code())
            .chain(Rule::ALL.iter().map(|r| r.refusal_code()));
        schemars::json_schema!({
            "type": "string",
            "description": format!(
                "Every `code` the API can answer with: {}. Policy refusals (all 403, on \
                 `POST /v1/transfers`): {}.",
                listed.join(", "),
                rules.join(", ")
            ),
            "enum": codes.collect::<Vec<_>>(),
        })
    }
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 43] = [
        Self::MalformedRequest,
        Self::EnvelopeNotJson,
        Self::EnvelopeMissing,
        Self::PayloadMissing,
        Self::UnexpectedPart,
        Self::InvalidIdempotencyKey,
        Self::InvalidEnvelope,
        Self::IdempotencyKeyReused,
        Self::HeadersTooLarge,
        Self::EnvelopeTooLarge,
        Self::PayloadTooLarge,
        Self::PayloadTooLargeForEmail,
        Self::UnsupportedMediaType,
        Self::RequestTimeout,
        Self::NotFound,
        Self::TransferNotFound,
        Self::MethodNotAllowed,
        Self::CertificateNoLongerAccepted,
        Self::NotAnOrganisation,
        Self::NotAPeer,
        Self::InvalidInbound,
        Self::RecipientNotHere,
        Self::SenderNotPermitted,
        Self::InboundConflict,
        Self::InboxItemNotFound,
        Self::PayloadGone,
        Self::CorrectionNotPermitted,
        Self::InvalidDecision,
        Self::DecisionNotFound,
        Self::BodyTooLarge,
        Self::InvalidRationale,
        Self::TransferNotUrgent,
        Self::RationaleAlreadyRecorded,
        Self::InvalidInfoRequest,
        Self::RequestNotFound,
        Self::RequestClosed,
        Self::NotTheRequester,
        Self::InvalidFeedback,
        Self::ClarificationOutOfTurn,
        Self::InternalError,
        Self::Unavailable,
        Self::Busy,
        Self::InsufficientStorage,
    ];

    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::EnvelopeNotJson => "envelope_not_json",
            Self::EnvelopeMissing => "envelope_missing",
            Self::PayloadMissing => "payload_missing",
            Self::UnexpectedPart => "unexpected_part",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::HeadersTooLarge => "headers_too_large",
            Self::EnvelopeTooLarge => "envelope_too_large",
            Self::PayloadTooLarge => "payload_too_large",
            Self::PayloadTooLargeForEmail => "payload_too_large_for_email",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::NotFound => "not_found",
            Self::TransferNotFound => "transfer_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::CertificateNoLongerAccepted => "certificate_no_longer_accepted",
            Self::NotAnOrganisation => "not_an_organisation",
            Self::NotAPeer => "not_a_peer",
            Self::InvalidInbound => "invalid_inbound",
            Self::RecipientNotHere => "recipient_not_here",
            Self::SenderNotPermitted => "sender_not_permitted",
            Self::InboundConflict => "inbound_conflict",
            Self::InboxItemNotFound => "inbox_item_not_found",
            Self::PayloadGone => "payload_gone",
            Self::CorrectionNotPermitted => "correction_not_permitted",
            Self::InvalidDecision => "invalid_decision",
            Self::DecisionNotFound => "decision_not_found",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidRationale => "invalid_rationale",
            Self::TransferNotUrgent => "transfer_not_urgent",
            Self::RationaleAlreadyRecorded => "rationale_already_recorded",
            Self::InvalidInfoRequest => "invalid_information_request",
            Self::RequestNotFound => "request_not_found",
            Self::RequestClosed => "request_closed",
            Self::NotTheRequester => "not_the_requester",
            Self::InvalidFeedback => "invalid_feedback",
            Self::ClarificationOutOfTurn => "clarification_out_of_turn",
            Self::InternalError => "internal_error",
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
            Self::InsufficientStorage => "insufficient_storage",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::MalformedRequest => 400,
            Self::EnvelopeNotJson => 400,
            Self::EnvelopeMissing => 400,
            Self::PayloadMissing => 400,
            Self::UnexpectedPart => 400,
            Self::InvalidIdempotencyKey => 400,
            Self::InvalidEnvelope => 422,
            Self::IdempotencyKeyReused => 422,
            Self::HeadersTooLarge => 431,
            Self::EnvelopeTooLarge => 413,
            Self::PayloadTooLarge => 413,
            Self::PayloadTooLargeForEmail => 413,
            Self::UnsupportedMediaType => 415,
            Self::RequestTimeout => 408,
            Self::NotFound => 404,
            Self::TransferNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::CertificateNoLongerAccepted => 401,
            Self::NotAnOrganisation => 403,
            Self::NotAPeer => 403,
            Self::InvalidInbound => 422,
            Self::RecipientNotHere => 422,
            Self::SenderNotPermitted => 403,
            Self::InboundConflict => 409,
            Self::InboxItemNotFound => 404,
            Self::PayloadGone => 410,
            Self::CorrectionNotPermitted => 403,
            Self::InvalidDecision => 422,
            Self::DecisionNotFound => 404,
            Self::BodyTooLarge => 413,
            Self::InvalidRationale => 422,
            Self::TransferNotUrgent => 422,
            Self::RationaleAlreadyRecorded => 409,
            Self::InvalidInfoRequest => 422,
            Self::RequestNotFound => 404,
            Self::RequestClosed => 409,
            Self::NotTheRequester => 403,
            Self::InvalidFeedback => 422,
            Self::ClarificationOutOfTurn => 409,
            Self::InternalError => 500,
            Self::Unavailable => 503,
            Self::Busy => 503,
            Self::InsufficientStorage => 507,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::NotAnOrganisation | Self::NotAPeer => "Wrong kind of caller",
            Self::SenderNotPermitted => "Sender not permitted",
            Self::InvalidInbound => "Invalid delivery",
            Self::RecipientNotHere => "Recipient not served here",
            Self::InboundConflict => "Delivery conflicts with one held",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::CorrectionNotPermitted => "Correction not permitted",
            Self::InvalidDecision => "Invalid decision",
            Self::InvalidRationale => "Invalid rationale",
            Self::TransferNotUrgent => "Transfer not urgent",
            Self::RationaleAlreadyRecorded => "Rationale already recorded",
            Self::InvalidInfoRequest => "Invalid request for information",
            Self::RequestClosed => "Request closed",
            Self::NotTheRequester => "Not the requester",
            Self::InvalidFeedback => "Invalid feedback",
            Self::ClarificationOutOfTurn => "Clarification out of turn",
            Self::CertificateNoLongerAccepted => "Certificate no longer accepted",
            Self::Busy => "Busy",
            other => status_title(other.status()),
        }
    }
}

/// The title of a status, for the codes (and the policy refusals) with no title of their own.
pub fn status_title(status: u16) -> &'static str {
    match status {
        400 => "Malformed request",
        401 => "Unauthorized",
        403 => "Refused by policy",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Too large",
        415 => "Unsupported media type",
        431 => "Headers too large",
        422 => "Invalid envelope",
        503 => "Unavailable",
        507 => "Insufficient storage",
        _ => "Internal error",
    }
}

/// Describes `title` in the API's contract from the codes themselves: each status's title, then
/// the codes that have their own.
fn describe_titles(schema: &mut schemars::Schema) {
    let mut statuses: Vec<u16> = ProblemCode::ALL.iter().map(|c| c.status()).collect();
    statuses.push(403);
    statuses.sort_unstable();
    statuses.dedup();
    let by_status: Vec<String> = statuses
        .iter()
        .map(|s| format!("`{}` ({s})", status_title(*s)))
        .collect();
    let mut own: Vec<(&str, Vec<String>)> = Vec::new();
    for c in ProblemCode::ALL {
        if c.title() == status_title(c.status()) {
            continue;
        }
        let code = format!("`{}`", c.code());
        match own.iter_mut().find(|(t, _)| *t == c.title()) {
            Some((_, codes)) => codes.push(code),
            None => own.push((c.title(), vec![code])),
        }
    }
    let own: Vec<String> = own
        .iter()
        .map(|(title, codes)| format!("`{title}` for {}", codes.join(" and ")))
        .collect();
    schema.insert(
        "description".into(),
        format!(
            "A short summary for people, in English. For most codes it follows the status: {} \
             (403 is also every policy refusal's). These codes have their own: {}. Match on \
             `code`, not on `title`.",
            by_status.join(", "),
            own.join("; ")
        )
        .into(),
    );
}

/// An RFC 9457 problem document, with the extension members `code`, `field`, `errors`, `recipient`,
/// `agreement` and `transfer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    /// `urn:postern:problem:` followed by the code.
    #[schemars(extend("format" = "uri"))]
    pub type_uri: String,
    /// A short summary for people, in English (the contract lists them, from the codes).
    #[schemars(transform = describe_titles)]
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A sentence a person understands. Never contains payload, justification or subject text.
    pub detail: String,
    #[schemars(with = "ProblemCode")]
    pub code: String,
    /// The request field at fault, where there is one: an envelope field path (e.g.
    /// `recipients[0]`, `practitioner.role`, `correction_of`), `envelope`, `payload`,
    /// `Idempotency-Key` or `id`; on `POST /v1/decisions` and `POST /v1/transfers/{id}/rationale`,
    /// a field path of the JSON body (e.g. `reasons`, `recipients[1]`, `justification`); on `POST
    /// /v1/inbound`, `meta`, a member of it (`meta.sender`, `meta.recipient`, `meta.retain_until`)
    /// or `payload`. For 422 `invalid_envelope`, `invalid_decision` and `invalid_rationale`, the
    /// first entry of `errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 422 `invalid_envelope`, `invalid_decision` and `invalid_rationale`: every field problem
    /// found, in the order of the document's fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// For 403: the recipient the refusing rule was checked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// For 403: the agreement the refusing rule was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// On answers to `POST /v1/transfers`: the reference under which the gateway recorded this
    /// request or decision. On 500 and 503 answers to `GET /v1/transfers/{id}`: the transfer asked
    /// about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Uuid>")]
    pub transfer_id: Option<String>,
    /// On a refusal of `POST /v1/requests`: the id under which the gateway recorded the refused
    /// request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Uuid>")]
    pub request_id: Option<String>,
}

/// One problem with one field of a JSON document: the envelope, a decision not to share, or a
/// rationale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProblemField {
    /// `missing_field` (absent, blank or empty), `invalid_value` (wrong type or not an accepted
    /// value), `too_long`, `unknown_field` (not part of the document) or `unrecognised_marking`.
    #[schemars(with = "crate::domain::envelope::FieldProblem")]
    pub code: String,
    /// The dotted path of the field, e.g. `practitioner.role` or `recipients[1]`; empty when the
    /// document as a whole is at fault (e.g. it is not a JSON object).
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl Problem {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::coded(code.status(), code.code(), code.title(), detail.into())
    }

    /// 403 for a policy rule, whose code is the rule's own.
    pub fn policy(rule: Rule, detail: impl Into<String>) -> Self {
        Self::coded(403, rule.refusal_code(), status_title(403), detail.into())
    }

    fn coded(status: u16, code: &str, title: &str, detail: String) -> Self {
        Problem {
            type_uri: format!("urn:postern:problem:{code}"),
            title: title.to_owned(),
            status,
            detail,
            code: code.to_owned(),
            field: None,
            errors: Vec::new(),
            recipient: None,
            agreement: None,
            transfer_id: None,
            request_id: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_transfer(mut self, id: impl ToString) -> Self {
        self.transfer_id = Some(id.to_string());
        self
    }

    pub fn with_request(mut self, id: crate::domain::ids::RequestId) -> Self {
        self.request_id = Some(id.to_string());
        self
    }

    /// 422 `invalid_envelope` with every field error; `field` is the first of them.
    pub fn invalid(errors: &[FieldError]) -> Self {
        Self::invalid_body(ProblemCode::InvalidEnvelope, "envelope", errors)
    }

    /// 422 with `code` and every field error of a JSON body (`what`: "envelope", "decision").
    pub fn invalid_body(code: ProblemCode, what: &str, errors: &[FieldError]) -> Self {
        let detail = match errors {
            [one] => one.message.clone(),
            _ => format!(
                "The {what} has {} problems: {}",
                errors.len(),
                errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        let mut p = Problem::new(code, detail);
        p.field = errors.first().map(|e| e.field.clone());
        p.errors = errors
            .iter()
            .map(|e| ProblemField {
                code: e.code.code().to_owned(),
                field: e.field.clone(),
                message: e.message.clone(),
            })
            .collect();
        p
    }

    /// 403 naming the rule (as the code), the recipient and the agreement considered.
    pub fn refused(r: &Refusal, recipient_index: Option<usize>) -> Self {
        let mut p = Problem::policy(r.rule, r.detail.clone());
        p.field = rule_field(r.rule, recipient_index);
        p.recipient = r.recipient.as_ref().map(ToString::to_string);
        p.agreement = r.agreement.as_ref().map(ToString::to_string);
        p
    }

    /// 507: the gateway's disk is full (or below its reserve). Temporary, with Retry-After.
    pub fn insufficient_storage() -> Self {
        Problem::new(
            ProblemCode::InsufficientStorage,
            "The gateway is short of storage and kept nothing from this request. Try again later; its operators have been told.",
        )
    }

    pub fn internal() -> Self {
        Problem::new(
            ProblemCode::InternalError,
            "The gateway could not complete this request. Nothing was shared. Try again; if it persists, tell the gateway's operators the time of the request.",
        )
    }
}

/// The 503 detail for a request that changes nothing (a read).
pub const SHUTTING_DOWN: &str = "The gateway is shutting down. Try again shortly.";

/// A store failure as a problem: 503 while the gateway is shutting down (`detail` says what
/// was and was not done; the answer carries `Retry-After`), 507 when the disk is full (also
/// with `Retry-After`), 500 otherwise. The caller logs it.
pub fn store_failure(e: &crate::store::StoreError, detail: &str) -> Problem {
    match e {
        crate::store::StoreError::Closed => Problem::new(ProblemCode::Unavailable, detail),
        // The database ended the request's transaction for conflicting with another's:
        // nothing was kept, and a retry will do.
        crate::store::StoreError::Pg(crate::store::pg::PgError::Conflict { .. }) => Problem::new(
            ProblemCode::Unavailable,
            "The gateway's database set this request aside because it met another at the same moment; nothing was kept. Try again.",
        ),
        // The shared database is away (restarting, failing over): nothing was kept, and a
        // retry will do (never a 500).
        crate::store::StoreError::Pg(p) if p.is_unavailable() => Problem::new(
            ProblemCode::Unavailable,
            "The gateway's database cannot be reached just now; nothing was kept. Try again shortly.",
        ),
        e if e.is_full() => Problem::insufficient_storage(),
        _ => Problem::internal(),
    }
}

/// How long a client should wait before retrying after a 507: space is freed by operators or by
/// deliveries completing, not within seconds.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 60;

/// The envelope field a refusal is about, so a client can highlight it.
fn rule_field(rule: Rule, recipient_index: Option<usize>) -> Option<String> {
    let recipients = || {
        Some(
            recipient_index.map_or_else(|| "recipients".to_owned(), |i| format!("recipients[{i}]")),
        )
    };
    match rule {
        Rule::SenderRegistered => None,
        Rule::MarkingWithinGateway
        | Rule::MarkingWithinClearance
        | Rule::MarkingWithinChannel
        | Rule::MarkingWithinAgreement => Some("marking".into()),
        Rule::PurposeKnown | Rule::PurposeInAgreement | Rule::StatutoryOnlySender => {
            Some("purpose".into())
        }
        Rule::LawfulBasisFitsPurpose | Rule::LawfulBasisInAgreement => Some("lawful_basis".into()),
        Rule::SpecialCategoryCondition => Some("special_category_condition".into()),
        Rule::SpecialCategoryPermitted => Some("data_categories".into()),
        Rule::OriginatorPermission => Some("originator_permission_ref".into()),
        Rule::RecipientRegistered
        | Rule::StatutoryOnlyRecipient
        | Rule::RecipientHasEndpoint
        | Rule::AgreementExists
        | Rule::AgreementInForce => recipients(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            serde_json::to_vec(&self).unwrap_or_else(|_| b"{\"code\":\"internal_error\"}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Only ever temporary here (shutting down, or busy with other uploads): worth
            // retrying soon.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::INSUFFICIENT_STORAGE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORAGE_RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_every_refusal_rule_maps_to_403() {
        let mut seen = std::collections::HashSet::new();
        for code in ProblemCode::ALL {
            assert!(seen.insert(code.code()), "{} listed twice", code.code());
        }
        for rule in Rule::ALL {
            assert!(
                !seen.contains(rule.refusal_code()),
                "{} collides with a non-policy code",
                rule.refusal_code()
            );
        }
    }
}
