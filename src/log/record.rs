//! The transfer log: the record of every decision the gateway makes, accepted or refused, and
//! (later) every delivery attempt. It is evidence for data protection officers, so:
//!
//! - it holds metadata and digests, never the payload, and subject references only as keyed
//!   hashes ([`crate::domain::subject`]);
//! - each record is chained to the one before: `hash = SHA-256(prev_hash ‖ seq ‖ body)`, where
//!   `body` is the record's JSON exactly as stored, so altering, deleting, inserting or reordering
//!   a record breaks the chain from that point on.
//!
//! Records are appended only by the store's single writer ([`crate::store`]), inside the same
//! transaction as the state they describe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::envelope::{Envelope, FieldError};
use crate::domain::ids::{OrgId, PeerId, RequestId, TransferId};
use crate::domain::marking::MarkingScheme;
use crate::domain::policy::{Authorisation, Refusal};
use crate::domain::subject::{SubjectHash, SubjectKey};
use crate::seal::SealSummary;

/// The hash the first record chains from.
pub const GENESIS: [u8; 32] = [0; 32];

pub fn chain_hash(prev: &[u8; 32], seq: i64, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// What a record is about. Stable strings: they are stored and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Policy allowed the transfer; the sealed payload and its deliveries are spooled.
    TransferAccepted,
    /// Policy refused the transfer (403): a decision not to share, with its rule.
    TransferRefused,
    /// The request was malformed, invalid or too large (400/413/422): nothing was shared.
    TransferRejected,
    /// One attempt to deliver to one recipient, whatever its outcome.
    DeliveryAttempt,
    /// A transfer's sealed payload was deleted from the spool (every recipient delivered or dead).
    PayloadPurged,
    /// This gateway's inbox received a transfer for one of its organisations.
    InboxReceived,
    /// The receiving organisation acknowledged an inbox item; its payload was deleted.
    InboxAcknowledged,
    /// A practitioner's recorded decision not to share (no payload), with the reasons.
    DecisionDeclined,
    /// The rationale of an urgent share, recorded after the share itself.
    RationaleAdded,
    /// Records older than the retention period were deleted; this record says which.
    LogPurged,
    /// A peer gateway's delivery this gateway refused to hold, with the rule.
    InboundRefused,
    /// A transfer request that failed inside the gateway after it got its id (nothing accepted).
    TransferFailed,
    /// An operator accepted a log head the gateway had not signed (`postern log accept-head`).
    HeadAccepted,
    /// A person's sign-in, failed code or sign-out on the web pages (never the code itself).
    PersonAccess,
    /// A request for information was made, and its clock started.
    RequestMade,
    /// Policy refused a request for information (403), with its rule.
    RequestRefused,
    /// A share answered a request, in full or in part.
    RequestAnswered,
    /// A decision not to share declined a request.
    RequestDeclined,
    /// The requester withdrew a request.
    RequestWithdrawn,
    /// The holder asked the requester to clarify a request.
    RequestClarificationAsked,
    /// The requester clarified it.
    RequestClarified,
    /// A recipient told the sender what became of a transfer.
    FeedbackGiven,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::TransferAccepted => "transfer_accepted",
            RecordKind::TransferRefused => "transfer_refused",
            RecordKind::TransferRejected => "transfer_rejected",
            RecordKind::DeliveryAttempt => "delivery_attempt",
            RecordKind::PayloadPurged => "payload_purged",
            RecordKind::InboxReceived => "inbox_received",
            RecordKind::InboxAcknowledged => "inbox_acknowledged",
            RecordKind::DecisionDeclined => "decision_declined",
            RecordKind::RationaleAdded => "rationale_added",
            RecordKind::LogPurged => "log_purged",
            RecordKind::InboundRefused => "inbound_refused",
            RecordKind::TransferFailed => "transfer_failed",
            RecordKind::HeadAccepted => "head_accepted",
            RecordKind::PersonAccess => "person_access",
            RecordKind::RequestMade => "request_made",
            RecordKind::RequestRefused => "request_refused",
            RecordKind::RequestAnswered => "request_answered",
            RecordKind::RequestDeclined => "request_declined",
            RecordKind::RequestWithdrawn => "request_withdrawn",
            RecordKind::RequestClarificationAsked => "request_clarification_asked",
            RecordKind::RequestClarified => "request_clarified",
            RecordKind::FeedbackGiven => "feedback_given",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct SenderRecord {
    pub org: OrgId,
    /// SHA-256 fingerprint of the client certificate presented; empty for a person signed in
    /// to the web pages (see `person`).
    #[schemars(with = "crate::domain::wire::Fingerprint")]
    pub certificate: String,
    /// The person who shared through the web pages, by their registered address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

/// What happened at the web pages' door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessEvent {
    /// A sign-in code was sent to the person's address.
    CodeSent,
    /// The person signed in (`detail`: `code` or `passkey`).
    SignedIn,
    /// A wrong code was entered for the person.
    CodeWrong,
    /// A code was given up after too many wrong tries.
    CodeLocked,
    /// The person signed out.
    SignedOut,
    /// The person opened an item that arrived for their organisation.
    ItemViewed,
    /// The person downloaded an item's file (decrypted, or sealed as stored).
    ItemDownloaded,
    /// The person acknowledged an item; its payload was deleted.
    ItemAcknowledged,
    /// No code was sent: the person's organisation requires a passkey and they have one.
    CodeWithheld,
    /// The person added a passkey (`detail`: its name).
    PasskeyAdded,
    /// The person removed a passkey (`detail`: its name).
    PasskeyRemoved,
    /// A passkey sign-in for the person failed its checks.
    PasskeyFailed,
    /// A DPO or auditor listed the transfer log (`detail`: the filter, as in the page's URL).
    LogListed,
    /// A DPO or auditor opened a transfer's record.
    RecordViewed,
    /// A DPO or auditor searched for a person (`detail`: the subject's keyed hash, never the
    /// identifier).
    SubjectSearched,
    /// A DPO or auditor exported records (`detail`: the format and the filter).
    LogExported,
    /// A DPO or auditor opened the report (`detail`: the period).
    ReportViewed,
    /// A DPO or auditor listed who looked at the log.
    AccessListed,
    /// A DPO or auditor ran a full verification of the log (`detail`: its result).
    LogVerified,
    /// The person opened a request for information (`detail`: its id), which names the child
    /// it is about while it is open.
    RequestViewed,
}

impl AccessEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessEvent::CodeSent => "code_sent",
            AccessEvent::SignedIn => "signed_in",
            AccessEvent::CodeWrong => "code_wrong",
            AccessEvent::CodeLocked => "code_locked",
            AccessEvent::SignedOut => "signed_out",
            AccessEvent::ItemViewed => "item_viewed",
            AccessEvent::ItemDownloaded => "item_downloaded",
            AccessEvent::ItemAcknowledged => "item_acknowledged",
            AccessEvent::CodeWithheld => "code_withheld",
            AccessEvent::PasskeyAdded => "passkey_added",
            AccessEvent::PasskeyRemoved => "passkey_removed",
            AccessEvent::PasskeyFailed => "passkey_failed",
            AccessEvent::LogListed => "log_listed",
            AccessEvent::RecordViewed => "record_viewed",
            AccessEvent::SubjectSearched => "subject_searched",
            AccessEvent::LogExported => "log_exported",
            AccessEvent::ReportViewed => "report_viewed",
            AccessEvent::AccessListed => "access_listed",
            AccessEvent::LogVerified => "log_verified",
            AccessEvent::RequestViewed => "request_viewed",
        }
    }
}

/// A person's access to the web pages: who, when, what, from which address. Filed under their
/// organisation, with the event as its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonAccessRecord {
    pub kind: RecordKind,
    pub at: String,
    pub sender: SenderRecord,
    pub code: AccessEvent,
    /// The client's IP address as the listener saw it.
    pub client: String,
    /// The transfer an item event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<TransferId>,
    /// The inbox item an item event is about, and what was downloaded (`file`, `sealed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct PractitionerRecord {
    pub name: String,
    pub role: String,
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct RequestRecord {
    /// The request for information made through this gateway that this answers or declines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// How far a share answers it: `in_full` or `in_part`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::envelope::AnswerExtent>")]
    pub answer: Option<String>,
    pub reference: String,
    pub requested: String,
}

impl RequestRecord {
    /// The request as recorded: with a request made through this gateway, its own words (read
    /// from the store before recording) where the sender left them out.
    pub fn of(r: &crate::domain::envelope::Request) -> Self {
        RequestRecord {
            request_id: r.answers.map(|(id, _)| id),
            answer: r.answers.map(|(_, extent)| extent.as_str().to_owned()),
            reference: r.reference.clone(),
            requested: r
                .requested
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// Every envelope field the source documents ask to be recorded, with subject references
/// replaced by their keyed hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecord {
    pub recipients: Vec<OrgId>,
    pub purpose: String,
    pub justification: String,
    pub lawful_basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_category_condition: Option<String>,
    pub data_categories: Vec<String>,
    /// The marking exactly as given, and where it sits on the gateway's scale.
    pub marking: String,
    pub marking_normalised: String,
    pub originator: OrgId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator_permission_ref: Option<String>,
    pub practitioner: PractitionerRecord,
    pub consent: StatusReason,
    pub subject_informed: StatusReason,
    pub urgency: StatusReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRecord>,
    pub disclosed_summary: String,
    /// The last day the recipients may keep it.
    pub retain_until: String,
    pub subject_ref_hashes: Vec<SubjectHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_of: Option<TransferId>,
}

impl EnvelopeRecord {
    pub fn new(
        e: &Envelope,
        scheme: &MarkingScheme,
        key: &SubjectKey,
        received: time::Date,
    ) -> Self {
        let sr = |status: &str, reason: Option<&str>| StatusReason {
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        };
        EnvelopeRecord {
            recipients: e.recipients.clone(),
            purpose: e.purpose.to_string(),
            justification: e.justification.expose().to_owned(),
            lawful_basis: e.lawful_basis.to_string(),
            special_category_condition: e.special_category_condition.map(|c| c.to_string()),
            data_categories: e.data_categories.iter().map(|d| d.to_string()).collect(),
            marking: e.marking.given.clone(),
            marking_normalised: e.marking.normalised(scheme),
            originator: e.originator.clone(),
            originator_permission_ref: e.originator_permission_ref.clone(),
            practitioner: PractitionerRecord {
                name: e.practitioner.name.clone(),
                role: e.practitioner.role.clone(),
                contact: e.practitioner.contact.clone(),
            },
            consent: sr(e.consent.status(), e.consent.reason()),
            subject_informed: sr(
                if e.subject_informed.informed() {
                    "informed"
                } else {
                    "not_informed"
                },
                e.subject_informed.reason(),
            ),
            urgency: sr(e.urgency.level(), e.urgency.reason()),
            request: e.request.as_ref().map(RequestRecord::of),
            disclosed_summary: e.disclosed_summary.expose().to_owned(),
            retain_until: e.retention.until(received).to_string(),
            subject_ref_hashes: e.subject_refs.iter().map(|s| s.hash(key)).collect(),
            file_name: e.file_name.clone(),
            content_type: e.content_type.clone(),
            correction_of: e.correction_of,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRecord {
    pub size: u64,
    pub sha256: String,
    pub sealed_size: u64,
    pub sealed_sha256: String,
}

impl From<&SealSummary> for PayloadRecord {
    fn from(s: &SealSummary) -> Self {
        PayloadRecord {
            size: s.plaintext_size,
            sha256: hex::encode(s.plaintext_sha256),
            sealed_size: s.sealed_size,
            sealed_sha256: hex::encode(s.sealed_sha256),
        }
    }
}

/// The outcome as recorded: for a refusal, the rule, the recipient and the agreement considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RecordedFieldError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorisations: Vec<AuthorisationRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFieldError {
    pub code: String,
    pub field: String,
    pub message: String,
}

impl From<&FieldError> for RecordedFieldError {
    fn from(e: &FieldError) -> Self {
        RecordedFieldError {
            code: e.code.code().to_owned(),
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorisationRecord {
    pub recipient: OrgId,
    pub agreement: String,
}

impl DecisionRecord {
    pub fn accepted(auths: &[Authorisation]) -> Self {
        DecisionRecord {
            outcome: "accepted".into(),
            code: None,
            recipient: None,
            agreement: None,
            detail: None,
            errors: Vec::new(),
            authorisations: auths
                .iter()
                .map(|a| AuthorisationRecord {
                    recipient: a.recipient.clone(),
                    agreement: a.agreement.to_string(),
                })
                .collect(),
        }
    }

    pub fn refused(r: &Refusal) -> Self {
        DecisionRecord {
            outcome: "refused".into(),
            code: Some(r.code().to_owned()),
            recipient: r.recipient.clone(),
            agreement: r.agreement.as_ref().map(ToString::to_string),
            detail: Some(r.detail.clone()),
            errors: Vec::new(),
            authorisations: Vec::new(),
        }
    }

    pub fn rejected(code: &str, detail: &str, errors: &[FieldError]) -> Self {
        DecisionRecord {
            outcome: "rejected".into(),
            code: Some(code.to_owned()),
            recipient: None,
            agreement: None,
            detail: Some(detail.to_owned()),
            errors: errors.iter().map(RecordedFieldError::from).collect(),
            authorisations: Vec::new(),
        }
    }
}

/// One transfer decision, as stored in the body of a log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    /// RFC 3339, UTC.
    pub at: String,
    pub sender: SenderRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<EnvelopeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadRecord>,
    pub decision: DecisionRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// What the recipient's side says it received: the answer to `POST /v1/inbound` (200 and 201), and
/// `RecipientStatus.receipt`. Members other than these are ignored by a sending Postern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Receipt {
    /// The receiving side's reference for the delivery. A Postern gateway gives its inbox item id,
    /// the same for a repeat of the same delivery.
    pub receipt_id: String,
    /// The SHA-256 of the sealed payload bytes received in this request, lower-case hex. A sending
    /// Postern counts the delivery as made only if it equals the digest of what it sent.
    #[schemars(with = "crate::domain::wire::Sha256Hex")]
    pub sha256: String,
    /// When the receiving side first recorded the delivery (RFC 3339); for a repeat, the first
    /// delivery's time.
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttemptRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
    pub recipient: OrgId,
    pub attempt: i64,
    /// `email`, `https` or `inbox`.
    pub channel: String,
    /// The transfer's sender (absent in records written before version 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<OrgId>,
    /// `delivered`, `retrying` or `dead`.
    pub outcome: String,
    /// Why a failed attempt failed (`unreachable`, `tls_certificate`, `relay_refused`, ...;
    /// absent for a delivery, and in records written before version 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::domain::delivery::FailureCause>,
    /// The SMTP reply, the HTTP status, or the error, as a person can read it.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

/// A spool payload deleted once no recipient needs it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadPurgedRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
}

/// An inbox event at the receiving side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
    pub inbox_id: String,
    pub recipient: OrgId,
    /// The sending organisation, as the delivering gateway stated it.
    pub sender: OrgId,
    /// The peer gateway it came through, or `local`.
    pub via: String,
    pub payload_size: u64,
    pub payload_sha256: String,
}

/// A decision not to share as the transfer log records it (`decision_declined`), read back by the
/// organisation that decided. Subject references appear only as their keyed hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeclinedRecord {
    #[schemars(with = "String", extend("const" = "decision_declined"))]
    pub kind: RecordKind,
    pub decision_id: TransferId,
    /// When it was recorded (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
    /// The deciding organisation and the SHA-256 fingerprint of the client certificate it
    /// presented.
    pub sender: SenderRecord,
    /// The organisations sharing with was considered.
    pub recipients: Vec<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub reasons: String,
    pub practitioner: PractitionerRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRecord>,
    pub data_categories: Vec<String>,
    /// HMAC-SHA256 of each normalised subject reference, hex.
    #[schemars(with = "Vec<crate::domain::wire::Sha256Hex>")]
    pub subject_ref_hashes: Vec<SubjectHash>,
    /// The Idempotency-Key it was recorded with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The rationale of an urgent share, recorded after it (a `rationale_added` log record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RationaleRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
    pub sender: SenderRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<PractitionerRecord>,
    pub justification: String,
}

/// A request for information as the transfer log records it (`request_made`, or
/// `request_refused` with the rule): what was asked, of whom, why, and when it is due. Subject
/// references appear only as their keyed hashes. Read back by both organisations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InfoRequestRecord {
    #[schemars(with = "String", extend("enum" = ["request_made", "request_refused"]))]
    pub kind: RecordKind,
    pub request_id: RequestId,
    /// When it was received (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
    /// The requesting organisation and the certificate (or person) it asked with.
    pub sender: SenderRecord,
    /// The organisation asked.
    pub holder: OrgId,
    pub purpose: String,
    pub lawful_basis: String,
    pub requested: String,
    pub grounds: String,
    /// `routine`, or `urgent` with its reason.
    #[schemars(with = "UrgencySchema")]
    pub urgency: StatusReason,
    pub practitioner: PractitionerRecord,
    /// HMAC-SHA256 of each normalised subject reference, hex.
    #[schemars(with = "Vec<crate::domain::wire::Sha256Hex>")]
    pub subject_ref_hashes: Vec<SubjectHash>,
    /// The agreement that permits the exchange (made requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// The last instant it may be answered in time (RFC 3339, UTC; made requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub due_at: Option<String>,
    /// The day (in the United Kingdom) it is due by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Date>")]
    pub due_date: Option<String>,
    /// For a refused request: the rule (`code`), the organisation and agreement it concerned,
    /// and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub refusal: Option<DecisionRecord>,
    /// The Idempotency-Key it was made with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The urgency as recorded: `{ "status": "routine" | "urgent", "reason"?: ... }`.
#[derive(schemars::JsonSchema)]
#[schemars(inline)]
#[allow(dead_code)] // a schema only
struct UrgencySchema {
    #[schemars(extend("enum" = ["routine", "urgent"]))]
    status: String,
    reason: Option<String>,
}

/// A change to a request for information (`request_answered`, `request_declined`,
/// `request_withdrawn`): who made it, the share or decision that made it, and the state after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestEventRecord {
    #[schemars(with = "String", extend("enum" = ["request_answered", "request_declined", "request_withdrawn", "request_clarification_asked", "request_clarified"]))]
    pub kind: RecordKind,
    pub request_id: RequestId,
    /// When (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
    /// The organisation that acted: the holder for an answer or a decline, the requester for a
    /// withdrawal.
    pub sender: SenderRecord,
    pub requester: OrgId,
    pub holder: OrgId,
    /// The share that answered it, or the decision not to share that declined it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<TransferId>,
    /// For an answer: `in_full` or `in_part`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::envelope::AnswerExtent>")]
    pub answer: Option<String>,
    /// The request's state after the change.
    #[schemars(extend("enum" = ["open", "partly_answered", "answered", "declined", "withdrawn"]))]
    pub state: String,
    /// Why the requester withdrew it, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The clarification asked, or given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clarification: Option<String>,
    /// When a clarification restarts the clock: the request's new due instant (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub due_at: Option<String>,
}

/// A recipient's feedback on a transfer (`feedback_given`): what became of it, for its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeedbackRecord {
    #[schemars(with = "String", extend("const" = "feedback_given"))]
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    /// When (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
    /// The recipient that gave it (and the certificate or person it gave it with).
    pub sender: SenderRecord,
    /// The transfer's sender, whom it is for.
    pub to: OrgId,
    pub status: crate::domain::feedback::FeedbackStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The peer that brought a refused inbound delivery, and its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub peer: PeerId,
    /// SHA-256 fingerprint of the client certificate presented.
    pub certificate: String,
}

/// A delivery a peer gateway brought to `POST /v1/inbound` that this gateway refused to hold
/// (`inbound_refused`): who brought it, what it said it was, and which rule refused it. The
/// payload was never read, or was discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRefusedRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
    pub via: PeerRecord,
    pub sender: OrgId,
    pub recipient: OrgId,
    /// As the peer stated them.
    pub purpose: String,
    pub marking: String,
    pub retain_until: String,
    /// The rule that refused it (`marking_within_clearance`, `repeat_differs`...).
    pub rule: String,
    /// The code answered (`marking_above_clearance`, `inbound_conflict`...).
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
}

/// A transfer request that failed inside the gateway after it was given a transfer id (the disk
/// filled during the upload, the store could not commit): nothing was accepted, and this says
/// so, with the reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferFailedRecord {
    pub kind: RecordKind,
    pub transfer_id: TransferId,
    pub at: String,
    pub sender: SenderRecord,
    /// The code answered (`insufficient_storage`, `internal_error`, `unavailable`).
    pub code: String,
    pub detail: String,
}

/// An operator accepted a log head the gateway did not sign at its last shutdown
/// (`postern log accept-head`): what was found, what the last checkpoint said, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadAcceptedRecord {
    pub kind: RecordKind,
    pub at: String,
    /// The head found: the last record before this one.
    pub found_seq: i64,
    /// Hex.
    pub found_hash: String,
    /// The last checkpoint signed before it (in the database or the checkpoint file).
    pub checkpoint_seq: i64,
    /// Hex.
    pub checkpoint_hash: String,
    pub checkpoint_at: String,
    /// `appended` (records after the checkpoint), `truncated` (the log ends before it) or
    /// `diverged` (the record at the checkpoint's seq is another).
    pub found: String,
    /// Checkpoints signed before this acceptance for records after this seq vouch for records
    /// that are gone or replaced: they no longer count (`None`: they all still do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<i64>,
    pub reason: String,
}

/// The checkpoint a purge left the remaining chain anchored to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub at: String,
    /// Hex.
    pub hash: String,
}

/// The body of a `log_purged` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPurgedRecord {
    pub kind: RecordKind,
    pub at: String,
    pub retain_days: u32,
    /// Records stamped before this were due.
    pub cutoff: String,
    pub from_seq: i64,
    pub to_seq: i64,
    pub records: u64,
    pub anchor: Anchor,
    /// Finished transfers (every delivery delivered or dead, payload purged) whose records were
    /// all purged: their queue rows went too.
    pub transfers: u64,
    pub deliveries: u64,
}

/// How a decision record is filed for searching (`log_facets`, `log_recipients`): the fields a
/// data protection officer filters on. An index, not evidence: it is derived from the chained
/// body ([`Index`]), and `postern log verify` derives it again and compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    /// `shared`, `refused`, `rejected`, `declined`, `inbound_refused`, or for a request for
    /// information `requested` or `request_refused`.
    pub decision: &'static str,
    pub originator: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
    /// The normalised marking.
    pub marking: Option<String>,
    /// `routine` or `urgent`.
    pub urgency: Option<String>,
    pub correction_of: Option<TransferId>,
    /// Accepted urgent shares whose justification was left to follow (until a
    /// `rationale_added` record for the same transfer).
    pub rationale_to_follow: bool,
    pub recipients: Vec<OrgId>,
}

impl Facets {
    /// The facets of a transfer decision: what the envelope said, where there was one.
    pub fn of_transfer(r: &TransferRecord) -> Self {
        let decision = match r.kind {
            RecordKind::TransferAccepted => "shared",
            RecordKind::TransferRefused => "refused",
            _ => "rejected",
        };
        let Some(e) = &r.envelope else {
            return Facets {
                decision,
                ..Facets::default()
            };
        };
        Facets {
            decision,
            originator: Some(e.originator.to_string()),
            purpose: Some(e.purpose.clone()),
            lawful_basis: Some(e.lawful_basis.clone()),
            marking: Some(e.marking_normalised.clone()),
            urgency: Some(e.urgency.status.clone()),
            correction_of: e.correction_of,
            rationale_to_follow: decision == "shared"
                && e.urgency.status == "urgent"
                && e.justification.is_empty(),
            recipients: e.recipients.clone(),
        }
    }
}

/// Everything a record is filed under besides its body: the `log` table's columns, the keyed
/// hashes of its subjects (`log_subjects`) and, for decisions, its facets. Derived from the
/// record alone, so that appending and verifying compute the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub kind: RecordKind,
    pub at: String,
    pub transfer_id: Option<TransferId>,
    pub sender: Option<OrgId>,
    pub code: Option<String>,
    pub subjects: Vec<SubjectHash>,
    /// Set on decision records (shared, refused, rejected, declined, inbound refused) only.
    pub facets: Option<Facets>,
    /// For an accepted transfer: the recipients a delivery is queued for.
    pub delivers_to: Vec<OrgId>,
    /// For a delivery attempt: to whom, and how it ended.
    pub attempt: Option<(OrgId, String)>,
}

/// A body of the transfer log. What it is filed under is derived from its serialised form by
/// [`index_of`], the one function both appending and `postern log verify` use.
pub trait Record: Serialize {}

impl Record for TransferRecord {}
impl Record for DeliveryAttemptRecord {}
impl Record for PayloadPurgedRecord {}
impl Record for InboxRecord {}
impl Record for DeclinedRecord {}
impl Record for RationaleRecord {}
impl Record for InboundRefusedRecord {}
impl Record for TransferFailedRecord {}
impl Record for LogPurgedRecord {}
impl Record for HeadAcceptedRecord {}
impl Record for PersonAccessRecord {}
impl Record for InfoRequestRecord {}
impl Record for RequestEventRecord {}
impl Record for FeedbackRecord {}

/// Why a stored body does not yield an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the record is not a transfer log record: {0}")]
    Invalid(#[source] serde_json::Error),
    #[error("a `{kind}` record lacks `{member}`")]
    Missing {
        kind: &'static str,
        member: &'static str,
    },
}

/// A sender as records hold it: an organisation id, or `{ "org": ..., "certificate": ... }`.
struct SenderView(String);

impl<'de> Deserialize<'de> for SenderView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SenderView;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an organisation id or a sender record")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SenderView, E> {
                Ok(SenderView(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<SenderView, A::Error> {
                let mut org = None;
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "org" {
                        org = Some(m.next_value::<String>()?);
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                org.map(SenderView)
                    .ok_or_else(|| serde::de::Error::missing_field("org"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct UrgencyView {
    status: String,
}

#[derive(Deserialize)]
struct RecipientView {
    recipient: OrgId,
}

#[derive(Deserialize)]
struct DecisionView {
    code: Option<String>,
    #[serde(default)]
    authorisations: Vec<RecipientView>,
}

#[derive(Deserialize)]
struct EnvelopeView<'a> {
    recipients: Vec<OrgId>,
    purpose: String,
    lawful_basis: String,
    marking_normalised: String,
    originator: String,
    urgency: UrgencyView,
    #[serde(borrow)]
    justification: std::borrow::Cow<'a, str>,
    #[serde(default)]
    subject_ref_hashes: Vec<SubjectHash>,
    correction_of: Option<TransferId>,
}

/// What any record is filed under, read from its body without copying what it is not filed
/// under (the justification, the summary...).
#[derive(Deserialize)]
struct View<'a> {
    kind: RecordKind,
    at: String,
    transfer_id: Option<TransferId>,
    decision_id: Option<TransferId>,
    request_id: Option<RequestId>,
    refusal: Option<DecisionView>,
    holder: Option<OrgId>,
    lawful_basis: Option<String>,
    urgency: Option<UrgencyView>,
    state: Option<String>,
    status: Option<String>,
    sender: Option<SenderView>,
    code: Option<String>,
    outcome: Option<String>,
    recipient: Option<OrgId>,
    recipients: Option<Vec<OrgId>>,
    purpose: Option<String>,
    marking: Option<String>,
    subject_ref_hashes: Option<Vec<SubjectHash>>,
    decision: Option<DecisionView>,
    #[serde(borrow)]
    envelope: Option<EnvelopeView<'a>>,
}

/// What a record is filed under: derived from its body alone, by one function, whether the
/// record is being appended or checked.
pub fn index_of(body: &[u8]) -> Result<Index, IndexError> {
    let v: View<'_> = serde_json::from_slice(body).map_err(IndexError::Invalid)?;
    let kind = v.kind;
    let need = |member: &'static str| IndexError::Missing {
        kind: kind.as_str(),
        member,
    };
    let mut index = Index {
        kind,
        at: v.at,
        transfer_id: None,
        sender: None,
        code: None,
        subjects: Vec::new(),
        facets: None,
        delivers_to: Vec::new(),
        attempt: None,
    };
    let sender = || -> Result<Option<OrgId>, IndexError> {
        match &v.sender {
            None => Ok(None),
            Some(SenderView(s)) => s.parse().map(Some).map_err(|_| need("sender")),
        }
    };
    match kind {
        RecordKind::TransferAccepted
        | RecordKind::TransferRefused
        | RecordKind::TransferRejected => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            let decision = v.decision.ok_or_else(|| need("decision"))?;
            index.code = decision.code;
            let name = match kind {
                RecordKind::TransferAccepted => "shared",
                RecordKind::TransferRefused => "refused",
                _ => "rejected",
            };
            index.facets = Some(match v.envelope {
                None => Facets {
                    decision: name,
                    ..Facets::default()
                },
                Some(e) => {
                    index.subjects = e.subject_ref_hashes;
                    Facets {
                        decision: name,
                        originator: Some(e.originator),
                        purpose: Some(e.purpose),
                        lawful_basis: Some(e.lawful_basis),
                        marking: Some(e.marking_normalised),
                        rationale_to_follow: name == "shared"
                            && e.urgency.status == "urgent"
                            && e.justification.is_empty(),
                        urgency: Some(e.urgency.status),
                        correction_of: e.correction_of,
                        recipients: e.recipients,
                    }
                }
            });
            if kind == RecordKind::TransferAccepted {
                index.delivers_to = decision
                    .authorisations
                    .into_iter()
                    .map(|a| a.recipient)
                    .collect();
            }
        }
        RecordKind::DeliveryAttempt => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = sender()?;
            let outcome = v.outcome.ok_or_else(|| need("outcome"))?;
            index.code = Some(outcome.clone());
            index.attempt = Some((v.recipient.ok_or_else(|| need("recipient"))?, outcome));
        }
        RecordKind::PayloadPurged => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
        }
        // Filed under the transfer's sender; the organisation that received or acknowledged it
        // is the record's `recipient`.
        RecordKind::InboxReceived | RecordKind::InboxAcknowledged | RecordKind::RationaleAdded => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
        }
        // Filed under the decision id, the decider, its subjects (so that a subject access
        // request finds decisions not to share too) and its facets (`declined`, with the
        // recipients considered).
        RecordKind::DecisionDeclined => {
            index.transfer_id = Some(v.decision_id.ok_or_else(|| need("decision_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.subjects = v.subject_ref_hashes.unwrap_or_default();
            index.facets = Some(Facets {
                decision: "declined",
                purpose: v.purpose,
                recipients: v.recipients.ok_or_else(|| need("recipients"))?,
                ..Facets::default()
            });
        }
        // A decision not to hold: filed as `inbound_refused`, under the sender the peer named,
        // with the recipient, purpose and marking as stated.
        RecordKind::InboundRefused => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.code = Some(v.code.ok_or_else(|| need("code"))?);
            index.facets = Some(Facets {
                decision: "inbound_refused",
                purpose: v.purpose,
                marking: v.marking,
                recipients: vec![v.recipient.ok_or_else(|| need("recipient"))?],
                ..Facets::default()
            });
        }
        RecordKind::TransferFailed => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.code = Some(v.code.ok_or_else(|| need("code"))?);
        }
        RecordKind::PersonAccess => {
            index.transfer_id = v.transfer_id;
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.code = Some(v.code.ok_or_else(|| need("code"))?);
        }
        // Filed under the request's id (in `transfer_id`, as a decision is under its own) and
        // the organisation that acted; a made or refused request under its subjects too, so
        // that a subject access request finds what was asked about a person. The code is the
        // refusal's rule, or the state a change left the request in.
        RecordKind::RequestMade | RecordKind::RequestRefused => {
            let id = v.request_id.ok_or_else(|| need("request_id"))?;
            index.transfer_id = Some(TransferId::from_uuid(uuid::Uuid::from_u128(id.as_u128())));
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.subjects = v
                .subject_ref_hashes
                .ok_or_else(|| need("subject_ref_hashes"))?;
            if kind == RecordKind::RequestRefused {
                index.code = Some(
                    v.refusal
                        .and_then(|r| r.code)
                        .ok_or_else(|| need("refusal"))?,
                );
            }
            // Filed for searching like a decision (`requested` or `request_refused`), under the
            // organisation asked: a data protection officer finds what was asked about a
            // person, and by whom, with the shares.
            index.facets = Some(Facets {
                decision: if kind == RecordKind::RequestRefused {
                    "request_refused"
                } else {
                    "requested"
                },
                purpose: v.purpose,
                lawful_basis: v.lawful_basis,
                urgency: v.urgency.map(|u| u.status),
                recipients: vec![v.holder.ok_or_else(|| need("holder"))?],
                ..Facets::default()
            });
        }
        RecordKind::RequestAnswered
        | RecordKind::RequestDeclined
        | RecordKind::RequestWithdrawn
        | RecordKind::RequestClarificationAsked
        | RecordKind::RequestClarified => {
            let id = v.request_id.ok_or_else(|| need("request_id"))?;
            index.transfer_id = Some(TransferId::from_uuid(uuid::Uuid::from_u128(id.as_u128())));
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.code = Some(v.state.ok_or_else(|| need("state"))?);
        }
        // Filed under the transfer and the recipient that gave it, with its status as the code.
        RecordKind::FeedbackGiven => {
            index.transfer_id = Some(v.transfer_id.ok_or_else(|| need("transfer_id"))?);
            index.sender = Some(sender()?.ok_or_else(|| need("sender"))?);
            index.code = Some(v.status.ok_or_else(|| need("status"))?);
        }
        RecordKind::LogPurged | RecordKind::HeadAccepted => {}
    }
    Ok(index)
}

/// A record ready to append: its index and its body.
#[derive(Clone)]
pub struct LogEntry {
    pub kind: RecordKind,
    pub at: String,
    pub transfer_id: Option<TransferId>,
    pub sender: Option<OrgId>,
    pub code: Option<String>,
    pub subjects: Vec<SubjectHash>,
    pub facets: Option<Facets>,
    pub body: Vec<u8>,
}

impl LogEntry {
    /// A record and everything it is filed under, derived from its serialised form by
    /// [`index_of`] (what `postern log verify` derives again).
    pub fn new<R: Record>(record: &R) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(record)?;
        let Index {
            kind,
            at,
            transfer_id,
            sender,
            code,
            subjects,
            facets,
            ..
        } = index_of(&body).map_err(|e| match e {
            IndexError::Invalid(e) => e,
            other => <serde_json::Error as serde::de::Error>::custom(other),
        })?;
        Ok(LogEntry {
            kind,
            at,
            transfer_id,
            sender,
            code,
            subjects,
            facets,
            body,
        })
    }
}

/// A record as read back.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredRecord {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub transfer_id: Option<String>,
    pub sender: Option<String>,
    pub code: Option<String>,
    pub body: serde_json::Value,
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_depends_on_order_position_and_content() {
        let a = chain_hash(&GENESIS, 1, b"one");
        let b = chain_hash(&a, 2, b"two");
        assert_ne!(chain_hash(&GENESIS, 1, b"onE"), a);
        assert_ne!(
            chain_hash(&GENESIS, 2, b"one"),
            a,
            "position is part of the hash"
        );
        assert_ne!(
            chain_hash(&GENESIS, 2, b"two"),
            b,
            "the previous hash is part of the hash"
        );
    }
}
