//! The one place where errors become HTTP answers: RFC 9457 problem+json with a stable
//! machine-readable `code`, the field at fault, and a sentence a person understands. Internal
//! errors are logged and answered with a generic message; their details never reach the caller.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::envelope::FieldError;
use crate::domain::policy::{Refusal, Rule};

/// Every code the API can answer with, and its status. The OpenAPI document lists the same set
/// (a test keeps them in step).
pub const CODES: &[(&str, u16)] = &[
    ("malformed_request", 400),
    ("envelope_not_json", 400),
    ("envelope_missing", 400),
    ("payload_missing", 400),
    ("unexpected_part", 400),
    ("invalid_idempotency_key", 400),
    ("invalid_envelope", 422),
    ("idempotency_key_reused", 422),
    ("headers_too_large", 431),
    ("envelope_too_large", 413),
    ("payload_too_large", 413),
    ("payload_too_large_for_email", 413),
    ("unsupported_media_type", 415),
    ("request_timeout", 408),
    ("not_found", 404),
    ("transfer_not_found", 404),
    ("method_not_allowed", 405),
    ("certificate_no_longer_accepted", 401),
    ("not_an_organisation", 403),
    ("not_a_peer", 403),
    ("invalid_inbound", 422),
    ("recipient_not_here", 422),
    ("sender_not_permitted", 403),
    ("inbound_conflict", 409),
    ("inbox_item_not_found", 404),
    ("payload_gone", 410),
    ("correction_not_permitted", 403),
    ("invalid_decision", 422),
    ("decision_not_found", 404),
    ("body_too_large", 413),
    ("invalid_rationale", 422),
    ("transfer_not_urgent", 422),
    ("rationale_already_recorded", 409),
    ("internal_error", 500),
    ("unavailable", 503),
    ("insufficient_storage", 507),
];

/// A problem detail document. Extension members: `code`, `field`, `errors`, `recipient`,
/// `agreement`, `transfer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// The reference under which the gateway recorded this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemField {
    pub code: String,
    pub field: String,
    pub message: String,
}

fn title_for(code: &str, status: u16) -> &'static str {
    match code {
        "not_an_organisation" | "not_a_peer" => return "Wrong kind of caller",
        "sender_not_permitted" => return "Sender not permitted",
        "invalid_inbound" => return "Invalid delivery",
        "recipient_not_here" => return "Recipient not served here",
        "inbound_conflict" => return "Delivery conflicts with one held",
        "idempotency_key_reused" => return "Idempotency key reused",
        "correction_not_permitted" => return "Correction not permitted",
        "invalid_decision" => return "Invalid decision",
        "invalid_rationale" => return "Invalid rationale",
        "transfer_not_urgent" => return "Transfer not urgent",
        "rationale_already_recorded" => return "Rationale already recorded",
        "certificate_no_longer_accepted" => return "Certificate no longer accepted",
        _ => {}
    }
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

impl Problem {
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: format!("urn:postern:problem:{code}"),
            title: title_for(code, status).to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            field: None,
            errors: Vec::new(),
            recipient: None,
            agreement: None,
            transfer_id: None,
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

    /// 422 `invalid_envelope` with every field error; `field` is the first of them.
    pub fn invalid(errors: &[FieldError]) -> Self {
        Self::invalid_body("invalid_envelope", "envelope", errors)
    }

    /// 422 with `code` and every field error of a JSON body (`what`: "envelope", "decision").
    pub fn invalid_body(code: &str, what: &str, errors: &[FieldError]) -> Self {
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
        let mut p = Problem::new(422, code, detail);
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
        let mut p = Problem::new(403, r.code(), r.detail.clone());
        p.field = rule_field(r.rule, recipient_index);
        p.recipient = r.recipient.as_ref().map(ToString::to_string);
        p.agreement = r.agreement.as_ref().map(ToString::to_string);
        p
    }

    /// 507: the gateway's disk is full (or below its reserve). Temporary, with Retry-After.
    pub fn insufficient_storage() -> Self {
        Problem::new(
            507,
            "insufficient_storage",
            "The gateway is short of storage and kept nothing from this request. Try again later; its operators have been told.",
        )
    }

    pub fn internal() -> Self {
        Problem::new(
            500,
            "internal_error",
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
        crate::store::StoreError::Closed => Problem::new(503, "unavailable", detail),
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
            // Only ever temporary here (shutting down): worth retrying soon.
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
        for (code, _) in CODES {
            assert!(seen.insert(*code), "{code} listed twice");
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
