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
use crate::domain::ids::{OrgId, TransferId};
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
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderRecord {
    pub org: OrgId,
    /// SHA-256 fingerprint of the client certificate presented.
    pub certificate: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub reference: String,
    pub requested: String,
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
            request: e.request.as_ref().map(|r| RequestRecord {
                reference: r.reference.clone(),
                requested: r.requested.expose().to_owned(),
            }),
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

/// What a recipient's endpoint said it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The recipient side's reference for what it received.
    pub receipt_id: String,
    /// SHA-256 of the sealed payload as received.
    pub sha256: String,
    /// When the recipient side recorded it (RFC 3339).
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
    /// `delivered`, `retrying` or `dead`.
    pub outcome: String,
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

/// How a decision record is filed for searching (`log_facets`, `log_recipients`): the fields a
/// data protection officer filters on, copied out of the body when it is appended. An index,
/// not evidence: the chained body is what counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    /// `shared`, `refused`, `rejected` or `declined`.
    pub decision: &'static str,
    pub originator: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
    /// The normalised marking.
    pub marking: Option<String>,
    /// `routine` or `urgent`.
    pub urgency: Option<String>,
    pub correction_of: Option<TransferId>,
    /// Accepted urgent shares whose justification was left to follow.
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

/// A record ready to append: the indexed columns and the body.
pub struct LogEntry {
    pub kind: RecordKind,
    pub at: String,
    pub transfer_id: Option<TransferId>,
    pub sender: Option<OrgId>,
    pub code: Option<String>,
    pub subjects: Vec<SubjectHash>,
    /// Set on decision records (shared, refused, rejected, declined) only.
    pub facets: Option<Facets>,
    pub body: Vec<u8>,
}

impl LogEntry {
    /// Any record body, with the columns it is filed under.
    pub fn of<T: Serialize>(
        kind: RecordKind,
        at: &str,
        transfer_id: TransferId,
        sender: Option<&OrgId>,
        code: Option<String>,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(LogEntry {
            kind,
            at: at.to_owned(),
            transfer_id: Some(transfer_id),
            sender: sender.cloned(),
            code,
            subjects: Vec::new(),
            facets: None,
            body: serde_json::to_vec(body)?,
        })
    }

    pub fn transfer(r: &TransferRecord) -> Result<Self, serde_json::Error> {
        Ok(LogEntry {
            kind: r.kind,
            at: r.at.clone(),
            transfer_id: Some(r.transfer_id),
            sender: Some(r.sender.org.clone()),
            code: r.decision.code.clone(),
            subjects: r
                .envelope
                .as_ref()
                .map(|e| e.subject_ref_hashes.clone())
                .unwrap_or_default(),
            facets: Some(Facets::of_transfer(r)),
            body: serde_json::to_vec(r)?,
        })
    }
}

/// A record as read back.
#[derive(Debug, Clone, Serialize)]
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
