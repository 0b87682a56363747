//! The envelope: everything about a transfer except the payload. It carries the record keeping
//! the source documents ask for (who, why, on what basis, what, for how long) and is parsed once
//! into typed values; a request whose envelope does not parse is answered 400 or 422 and never
//! reaches the policy decision.
//!
//! Sits between ingest (which reads the JSON off the wire) and policy (which decides).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use super::fields::{Collector, incomplete, read_json};
pub use super::fields::{FieldError, FieldProblem, Sensitive};
use super::ids::{OrgId, PurposeId, RequestId, SLUG_PATTERN, TransferId};
use super::lawful::{DataCategory, LawfulBasis, SpecialCategoryCondition};
use super::marking::{Marking, MarkingError, MarkingScheme};
use super::subject::SubjectRef;

// ---------------------------------------------------------------------------------------------
// The wire form. Every field is optional here so that one request reports every missing or
// invalid field at once, rather than the first one serde happens to meet.

/// Everything about a transfer except the payload: the record keeping the safeguarding guidance
/// asks for (who, why, on what basis, what, for how long). Sent as the first multipart part,
/// `envelope`, as JSON.
///
/// The gateway reports every missing or invalid field at once (422 `invalid_envelope`, one entry in
/// `errors` per field, with `field` a dotted path such as `practitioner.role` or `recipients[1]`),
/// except that a JSON value of the wrong type or an unknown field is reported alone. Unknown fields
/// are rejected (`unknown_field`) at every level. Text is trimmed of surrounding whitespace before
/// it is checked; lengths are counted in characters. A required text that is blank is reported as
/// `missing_field`. `justification` is required unless the share is urgent (`urgency.level` is
/// `urgent`).
///
/// The sender is the organisation the client certificate maps to; it is never part of the envelope.
/// Passing validation does not mean the transfer is allowed: policy then decides (403).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Envelope", title = "Envelope")]
#[schemars(extend("if" = { "properties": { "urgency": { "properties": { "level": { "const": "urgent" } }, "required": ["level"] } }, "required": ["urgency"] }))]
#[schemars(extend("else" = { "required": ["justification"], "properties": { "justification": { "pattern": patterns::NOT_BLANK } } }))]
#[serde(deny_unknown_fields)]
// Every member is optional to serde, so that one request reports every missing member at once;
// the contract says which the validator requires.
#[schemars(extend("required" = ["recipients", "purpose", "lawful_basis", "data_categories", "marking", "practitioner", "consent", "subject_informed", "urgency", "disclosed_summary", "retention", "subject_refs"]))]
pub struct RawEnvelope {
    /// The registered organisations to share with (organisation ids). At least one; no repeats;
    /// never the sender itself. Every recipient must be registered and bound to the sender by an
    /// agreement in force that permits the purpose, lawful basis and marking, or the whole transfer
    /// is refused. For a correction (`correction_of`), every earlier recipient of the corrected
    /// transfer is added after these; naming one of them again is allowed. `recipients` is required
    /// for a correction too: name at least one (a new recipient, or one of the earlier ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = limits::MAX_RECIPIENTS), extend("uniqueItems" = true))]
    #[schemars(inner(pattern(SLUG_PATTERN), length(max = 64)))]
    pub recipients: Option<Vec<String>>,
    /// The id of the configured purpose of this share, e.g. `child-protection-s47`. An unknown
    /// purpose is refused (403 `unknown_purpose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, pattern(SLUG_PATTERN), length(max = 64))]
    pub purpose: Option<String>,
    /// Why this share is necessary and proportionate, and why the public interest outweighs the
    /// duty of confidentiality. Required, and not blank, unless `urgency.level` is `urgent`: in an
    /// emergency the share comes first, and an urgent share may leave the justification out (absent
    /// or blank) and have its sender add it afterwards with `POST /v1/transfers/{id}/rationale`;
    /// until then the transfer log marks its rationale as to follow. Recorded in the transfer log,
    /// in clear, for data protection officers, and sealed into the recipients' envelope; never
    /// repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::JUSTIFICATION))]
    pub justification: Option<String>,
    /// The UK GDPR Article 6(1) basis: consent (a), contract (b), legal_obligation (c),
    /// vital_interests (d), public_task (e, what public bodies usually rely on),
    /// legitimate_interests (f, what voluntary organisations usually rely on). It must fit the
    /// purpose and the agreement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, with = "Option<LawfulBasis>")]
    pub lawful_basis: Option<String>,
    /// The UK GDPR Article 9(2) condition (with the DPA 2018 Schedule 1 condition where one
    /// applies) for special category data. Optional for validation, but a transfer whose
    /// `data_categories` includes `special_category` without it is refused (403
    /// `special_category_condition_missing`). Blank is treated as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SpecialCategoryCondition>")]
    pub special_category_condition: Option<String>,
    /// Which kinds of data the payload discloses: `personal`, `special_category` (UK GDPR Article 9
    /// data: health, ethnicity, religion, sex life, ...) and/or `criminal_offence` (UK GDPR Article
    /// 10 / DPA 2018 s.11(2)). At least one; repeats are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, with = "Option<Vec<DataCategory>>", length(min = 1))]
    pub data_categories: Option<Vec<String>>,
    /// The protective marking of the payload, in the Government Security Classifications (e.g.
    /// `OFFICIAL`, `OFFICIAL-SENSITIVE PERSONAL`) or a legacy GPMS label the deployment maps (e.g.
    /// `RESTRICTED`). Case and separators do not matter. The levels and handling descriptors
    /// accepted are configuration; an unrecognised marking is `unrecognised_marking`. SECRET and
    /// TOP SECRET are recognised but always refused (403 `marking_above_gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::SHORT_TEXT), pattern(patterns::NOT_BLANK))]
    #[schemars(extend("example" = "OFFICIAL-SENSITIVE PERSONAL"))]
    pub marking: Option<String>,
    /// The organisation id of the data holding agency that first held the data. Optional; defaults
    /// to the sender. When it is not the sender, `originator_permission_ref` is needed (else 403
    /// `originator_permission_missing`). Blank is treated as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SLUG_PATTERN), length(max = 64))]
    pub originator: Option<String>,
    /// The reference of the originator's permission for onward sharing; needed by policy when
    /// `originator` is not the sender. Optional; blank is treated as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT_TEXT))]
    pub originator_permission_ref: Option<String>,
    /// Who is making this share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub practitioner: Option<RawPractitioner>,
    /// Whether consent was sought. Consent is rarely the right basis in safeguarding, but whether
    /// it was sought is always recorded. `reason` is required when `status` is `refused_overridden`
    /// or `not_sought`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub consent: Option<RawConsent>,
    /// Whether the person was told of this share. `reason` is required when `informed` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub subject_informed: Option<RawSubjectInformed>,
    /// `routine`, or `urgent` (share first, with the reason for urgency recorded). `reason` is
    /// required when `level` is `urgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub urgency: Option<RawUrgency>,
    /// Optional: the request this share answers. When present, both fields are required (what was
    /// requested may differ from what is disclosed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RawRequest>,
    /// A summary of what is disclosed. Recorded in the transfer log, in clear, for data protection
    /// officers, and sealed into the recipients' envelope; never repeated in error answers or
    /// operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::REASON), pattern(patterns::NOT_BLANK))]
    pub disclosed_summary: Option<String>,
    /// How long the recipient may keep the information: exactly one of `days` (counted from the day
    /// the gateway received it) or `until` (a date). Giving both is `invalid_value` on `retention`;
    /// giving neither is `missing_field` on `retention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub retention: Option<RawRetention>,
    /// References to the person (or people) this is about, written `scheme:value` (e.g.
    /// `nhs:9434765919`, `case:ABC123`), so that subject access requests can find the share. At
    /// least one. The scheme is 1 to 32 letters, digits, '-' or '_' (case-insensitive); the value,
    /// with whitespace removed, is 1 to 128 characters without control characters; an `nhs` value
    /// must be a valid 10-digit NHS number. Repeats (after normalising) are ignored. The log keeps
    /// only keyed hashes of them; they are in clear only in the envelope sealed for the recipients;
    /// error messages never echo them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = limits::MAX_SUBJECT_REFS))]
    #[schemars(inner(pattern(patterns::SUBJECT_REF)))]
    pub subject_refs: Option<Vec<String>>,
    /// The payload's file name, without directories or control characters. Optional: when absent
    /// (or blank), the `filename` of the payload part is used if it is a plain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT_TEXT))]
    pub file_name: Option<String>,
    /// The payload's media type, e.g. `application/pdf`. Optional: when absent (or blank), the
    /// Content-Type of the payload part is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT_TEXT), pattern(patterns::MEDIA_TYPE))]
    pub content_type: Option<String>,
    /// Optional: the transfer id of an earlier transfer this one corrects. Blank is treated as
    /// absent. The earlier transfer must be one this gateway accepted (otherwise 422
    /// `invalid_envelope`, `invalid_value` on `correction_of`), sent by the sender or naming the
    /// sender as its `originator` (otherwise 403 `correction_not_permitted`). The correction is
    /// delivered to every recipient of the earlier transfer whose delivery is not dead, as well as
    /// to `recipients`, and its record links to the earlier one; recipients see it in their
    /// envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Uuid>")]
    pub correction_of: Option<String>,
}

/// Who is making this share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["name", "role", "contact"]))]
pub struct RawPractitioner {
    /// The practitioner's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::SHORT_TEXT), pattern(patterns::NOT_BLANK))]
    pub name: Option<String>,
    /// The practitioner's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::SHORT_TEXT), pattern(patterns::NOT_BLANK))]
    pub role: Option<String>,
    /// How a recipient can reach the practitioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::SHORT_TEXT), pattern(patterns::NOT_BLANK))]
    pub contact: Option<String>,
}

/// Whether consent was sought. Consent is rarely the right basis in safeguarding, but whether it
/// was sought is always recorded. `reason` is required when `status` is `refused_overridden` or
/// `not_sought`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[schemars(extend("if" = { "properties": { "status": { "enum": ["refused_overridden", "not_sought"] } }, "required": ["status"] }, "then" = { "required": ["reason"] }))]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["status"]))]
pub struct RawConsent {
    /// `given`, `refused_overridden` (sought, refused, and overridden) or `not_sought`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, extend("enum" = CONSENT_STATUSES))]
    pub status: Option<String>,
    /// Why consent was overridden or not sought. Required when `status` is `refused_overridden` or
    /// `not_sought`; otherwise optional, and blank is treated as absent. Recorded in the transfer
    /// log, in clear, for data protection officers, and sealed into the recipients' envelope; never
    /// repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::REASON))]
    pub reason: Option<String>,
}

/// Whether the person was told of this share. `reason` is required when `informed` is false.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[schemars(extend("if" = { "properties": { "informed": { "const": false } }, "required": ["informed"] }, "then" = { "required": ["reason"] }))]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["informed"]))]
pub struct RawSubjectInformed {
    /// True if the person was told of this share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub informed: Option<bool>,
    /// Why the person was not told (for example, telling them may increase the risk). Required when
    /// `informed` is false; otherwise optional, and blank is treated as absent. Recorded in the
    /// transfer log, in clear, for data protection officers, and sealed into the recipients'
    /// envelope; never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::REASON))]
    pub reason: Option<String>,
}

/// `routine`, or `urgent` (share first, with the reason for urgency recorded). `reason` is required
/// when `level` is `urgent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[schemars(extend("if" = { "properties": { "level": { "const": "urgent" } }, "required": ["level"] }, "then" = { "required": ["reason"] }))]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["level"]))]
pub struct RawUrgency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, extend("enum" = URGENCY_LEVELS))]
    pub level: Option<String>,
    /// Why this share is urgent. Required when `level` is `urgent`; otherwise optional, and blank
    /// is treated as absent. Recorded in the transfer log, in clear, for data protection officers,
    /// and sealed into the recipients' envelope; never repeated in error answers or operational
    /// logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::REASON))]
    pub reason: Option<String>,
}

/// Optional: the request this share answers. Either a request made through this gateway, by its
/// `request_id` (the link is then kept both ways, and the request is answered), or one made
/// some other way, by its `reference` and what was `requested` (both required then: what was
/// requested may differ from what is disclosed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{ "required": ["request_id"] }, { "required": ["reference", "requested"] }]))]
pub struct RawRequest {
    /// The id of a request for information made through this gateway (`POST /v1/requests`) by
    /// one of the recipients, to the sender. What was requested is then taken from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Uuid>")]
    pub request_id: Option<String>,
    /// With `request_id`: `in_full` (the default; the request is then answered) or `in_part`
    /// (partly answered: more answers may follow until one answers it in full). Not for a
    /// decision not to share, which declines the whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<AnswerExtent>")]
    pub answer: Option<String>,
    /// The reference of the request this share answers (with `request_id`, the request's id
    /// when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT_TEXT), pattern(patterns::NOT_BLANK))]
    pub reference: Option<String>,
    /// What was requested. Recorded in the transfer log, in clear, for data protection officers,
    /// and sealed into the recipients' envelope; never repeated in error answers or operational
    /// logs. With `request_id`, the request's own words when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::REASON), pattern(patterns::NOT_BLANK))]
    pub requested: Option<String>,
}

/// How much of a request a share answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum AnswerExtent {
    InFull,
    InPart,
}

impl AnswerExtent {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerExtent::InFull => "in_full",
            AnswerExtent::InPart => "in_part",
        }
    }
}

/// How long the recipient may keep the information: exactly one of `days` (counted from the day the
/// gateway received it) or `until` (a date). Giving both is `invalid_value` on `retention`; giving
/// neither is `missing_field` on `retention`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
#[schemars(extend("oneOf" = [{ "required": ["days"] }, { "required": ["until"] }]))]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Destroy after this date (YYYY-MM-DD): after today, and at most 3650 days ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Date>")]
    pub until: Option<String>,
    /// Keep for this many days after the day received (1 to 3650).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_RETENTION_DAYS))]
    pub days: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// The validated form.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practitioner {
    pub name: String,
    pub role: String,
    pub contact: String,
}

/// Consent is rarely the right basis in safeguarding, but whether it was sought is always recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    Given,
    RefusedOverridden(Sensitive),
    NotSought(Sensitive),
}

impl Consent {
    pub fn status(&self) -> &'static str {
        match self {
            Consent::Given => "given",
            Consent::RefusedOverridden(_) => "refused_overridden",
            Consent::NotSought(_) => "not_sought",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Consent::Given => None,
            Consent::RefusedOverridden(r) | Consent::NotSought(r) => Some(r.expose()),
        }
    }
}

impl SubjectInformed {
    pub fn informed(&self) -> bool {
        matches!(self, SubjectInformed::Yes)
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            SubjectInformed::Yes => None,
            SubjectInformed::No(r) => Some(r.expose()),
        }
    }
}

impl Urgency {
    pub fn level(&self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent(_) => "urgent",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Urgency::Routine => None,
            Urgency::Urgent(r) => Some(r.expose()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectInformed {
    Yes,
    /// Telling the person may increase the risk; the reason is recorded.
    No(Sensitive),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urgency {
    Routine,
    /// Share first, with the reason for urgency recorded.
    Urgent(Sensitive),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub reference: String,
    /// What was requested; `None` only when `answers` names a request made through this
    /// gateway, whose own words ingest reads from the store before recording the share.
    pub requested: Option<Sensitive>,
    /// The request made through this gateway that this answers, and how far.
    pub answers: Option<(RequestId, AnswerExtent)>,
}

impl Request {
    /// What was requested, in the words of the request made through this gateway, where the
    /// sender left them out.
    pub fn requested_or(&mut self, words: String) {
        if self.requested.is_none() {
            self.requested = Some(Sensitive(words));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Until(Date),
    Days(u32),
}

impl Retention {
    /// The last day the recipient may keep the information, counted from the day received.
    pub fn until(self, received: Date) -> Date {
        match self {
            Retention::Until(d) => d,
            Retention::Days(n) => received
                .checked_add(Duration::days(i64::from(n)))
                .unwrap_or(Date::MAX),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub recipients: Vec<OrgId>,
    pub purpose: PurposeId,
    pub justification: Sensitive,
    pub lawful_basis: LawfulBasis,
    pub special_category_condition: Option<SpecialCategoryCondition>,
    pub data_categories: BTreeSet<DataCategory>,
    pub marking: Marking,
    /// The data holding agency that first held the data; the sender unless stated.
    pub originator: OrgId,
    pub originator_permission_ref: Option<String>,
    pub practitioner: Practitioner,
    pub consent: Consent,
    pub subject_informed: SubjectInformed,
    pub urgency: Urgency,
    pub request: Option<Request>,
    pub disclosed_summary: Sensitive,
    pub retention: Retention,
    pub subject_refs: Vec<SubjectRef>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub correction_of: Option<TransferId>,
}

impl Envelope {
    pub fn has_special_category(&self) -> bool {
        self.data_categories
            .contains(&DataCategory::SpecialCategory)
    }
}

/// The envelope as a recipient receives it, sealed with age to the recipient alone: the `envelope`
/// part of `POST /v1/inbound`, `envelope_age_base64` in the inbox, or an attachment of a delivery
/// email (unsealed, for a `tls_only` email recipient). The whole record of who, why, what and on
/// what basis, as validated and decided on by the sending gateway, with the subject references in
/// clear because the recipient needs them to act. Members whose value is absent are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(title = "RecipientEnvelope")]
pub struct RecipientEnvelope {
    /// The transfer id the sending gateway gave it.
    pub transfer_id: TransferId,
    /// The sending organisation (the one its client certificate mapped to).
    pub sender: OrgId,
    /// When the sending gateway received the transfer (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    /// Every recipient of the transfer, not only this one.
    pub recipients: Vec<OrgId>,
    /// The purpose id.
    pub purpose: PurposeId,
    /// Why the share is necessary and proportionate.
    pub justification: String,
    pub lawful_basis: LawfulBasis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_category_condition: Option<SpecialCategoryCondition>,
    /// What the payload discloses.
    pub data_categories: Vec<DataCategory>,
    /// The marking as the sender gave it.
    pub marking: String,
    /// The marking on the sending gateway's scale (e.g. `OFFICIAL-SENSITIVE PERSONAL`).
    pub marking_normalised: String,
    /// The data holding agency that first held the data (the sender unless stated).
    pub originator: OrgId,
    /// The originator's permission for onward sharing, when the originator is not the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator_permission_ref: Option<String>,
    pub practitioner: RawPractitioner,
    pub consent: RawConsent,
    pub subject_informed: RawSubjectInformed,
    pub urgency: RawUrgency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RawRequest>,
    /// A summary of what is disclosed.
    pub disclosed_summary: String,
    /// The date after which the recipient must destroy it (YYYY-MM-DD).
    #[schemars(with = "crate::domain::wire::Date")]
    pub retain_until: String,
    /// The references to the person (or people) it is about, in clear, normalised (`scheme:value`,
    /// scheme in lower case, whitespace removed).
    pub subject_refs: Vec<String>,
    /// The payload's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The payload's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The transfer id of an earlier transfer this one corrects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_of: Option<TransferId>,
}

impl RecipientEnvelope {
    pub fn new(
        id: TransferId,
        sender: &OrgId,
        e: &Envelope,
        scheme: &MarkingScheme,
        received: time::OffsetDateTime,
    ) -> Self {
        RecipientEnvelope {
            transfer_id: id,
            sender: sender.clone(),
            received_at: received
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            recipients: e.recipients.clone(),
            purpose: e.purpose.clone(),
            justification: e.justification.expose().to_owned(),
            lawful_basis: e.lawful_basis,
            special_category_condition: e.special_category_condition,
            data_categories: e.data_categories.iter().copied().collect(),
            marking: e.marking.given.clone(),
            marking_normalised: e.marking.normalised(scheme),
            originator: e.originator.clone(),
            originator_permission_ref: e.originator_permission_ref.clone(),
            practitioner: RawPractitioner {
                name: Some(e.practitioner.name.clone()),
                role: Some(e.practitioner.role.clone()),
                contact: Some(e.practitioner.contact.clone()),
            },
            consent: RawConsent {
                status: Some(e.consent.status().to_owned()),
                reason: e.consent.reason().map(str::to_owned),
            },
            subject_informed: RawSubjectInformed {
                informed: Some(e.subject_informed.informed()),
                reason: e.subject_informed.reason().map(str::to_owned),
            },
            urgency: RawUrgency {
                level: Some(e.urgency.level().to_owned()),
                reason: e.urgency.reason().map(str::to_owned),
            },
            request: e.request.as_ref().map(|r| RawRequest {
                request_id: r.answers.map(|(id, _)| id.to_string()),
                answer: r.answers.map(|(_, extent)| extent.as_str().to_owned()),
                reference: Some(r.reference.clone()),
                requested: r.requested.as_ref().map(|s| s.expose().to_owned()),
            }),
            disclosed_summary: e.disclosed_summary.expose().to_owned(),
            retain_until: e.retention.until(received.date()).to_string(),
            subject_refs: e.subject_refs.iter().map(SubjectRef::expose).collect(),
            file_name: e.file_name.clone(),
            content_type: e.content_type.clone(),
            correction_of: e.correction_of,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all (400).
    #[error("the envelope is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields are missing or invalid (422). Never empty.
    #[error("the envelope has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Limits on free text, so that a record stays a record and not a second copy of the case file.
/// Patterns the API's contract states for text fields (the validator's own checks, as regular
/// expressions).
pub(crate) mod patterns {
    /// Not blank: at least one character that is not whitespace.
    pub const NOT_BLANK: &str = "\\S";
    /// A subject reference: `scheme:value`.
    pub const SUBJECT_REF: &str = "^\\s*[A-Za-z0-9_-]{1,32}\\s*:\\s*\\S";
    /// A media type such as `application/pdf`.
    pub const MEDIA_TYPE: &str = "^[!-.0-~ ]+/[!-~ ]+$";
}

/// The values of `consent.status`.
pub const CONSENT_STATUSES: [&str; 3] = ["given", "refused_overridden", "not_sought"];
/// The values of `urgency.level`.
pub const URGENCY_LEVELS: [&str; 2] = ["routine", "urgent"];

pub mod limits {
    pub const SHORT_TEXT: usize = 256;
    pub const REASON: usize = 4_000;
    pub const JUSTIFICATION: usize = 8_000;
    pub const MAX_RECIPIENTS: usize = 64;
    pub const MAX_SUBJECT_REFS: usize = 64;
    pub const MAX_RETENTION_DAYS: u32 = 3_650;
}

/// What parsing needs to know besides the JSON.
pub struct ParseContext<'a> {
    pub sender: &'a OrgId,
    pub marking: &'a MarkingScheme,
    pub today: Date,
}

/// Parses the JSON bytes of an envelope. Syntax errors are `Malformed`; a wrong type or an
/// unknown field is reported with the path of the field.
pub fn parse_json(bytes: &[u8], cx: &ParseContext<'_>) -> Result<Envelope, EnvelopeError> {
    let raw: RawEnvelope = read_json(
        bytes,
        (
            "envelope",
            &[
                "practitioner",
                "consent",
                "subject_informed",
                "urgency",
                "request",
                "retention",
            ],
        ),
        EnvelopeError::Malformed,
        EnvelopeError::Invalid,
    )?;
    parse(raw, cx)
}

/// Validates a raw envelope, reporting every problem at once.
pub fn parse(raw: RawEnvelope, cx: &ParseContext<'_>) -> Result<Envelope, EnvelopeError> {
    let mut c = Collector(Vec::new());

    // recipients: at least one, registered-id syntax, no repeats, never the sender itself.
    let mut recipients = Vec::new();
    match raw.recipients {
        None => c.missing("recipients", "the organisation ids to share with"),
        Some(list) if list.is_empty() => c.push(
            FieldProblem::MissingField,
            "recipients",
            "`recipients` is empty: name at least one organisation to share with",
        ),
        Some(list) if list.len() > limits::MAX_RECIPIENTS => c.invalid(
            "recipients",
            format!("at most {} recipients per transfer", limits::MAX_RECIPIENTS),
        ),
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                let field = format!("recipients[{i}]");
                match r.trim().parse::<OrgId>() {
                    Err(_) => c.invalid(field.clone(), format!("`{field}` is not an organisation id: use the id the gateway registers it under (lower-case letters, digits, '-', '_', '.')")),
                    Ok(id) if &id == cx.sender => c.invalid(
                        field,
                        format!("`{id}` is the sending organisation; a transfer cannot be sent to its own sender"),
                    ),
                    Ok(id) if recipients.contains(&id) => {
                        c.invalid(field.clone(), format!("`{field}` repeats an earlier recipient"))
                    }
                    Ok(id) => recipients.push(id),
                }
            }
        }
    }

    let purpose = c
        .text(
            raw.purpose,
            "purpose",
            limits::SHORT_TEXT,
            "the purpose id of this share",
        )
        .and_then(|p| match p.parse::<PurposeId>() {
            Ok(p) => Some(p),
            Err(_) => {
                c.invalid("purpose", "`purpose` is not a purpose id: use the id the gateway's purposes are configured under (e.g. child-protection-s47)");
                None
            }
        });

    // In an emergency the share comes first and its rationale after (`POST
    // /v1/transfers/{id}/rationale`): an urgent share may leave the justification out.
    let urgent = raw
        .urgency
        .as_ref()
        .and_then(|u| u.level.as_deref())
        .is_some_and(|l| l.trim() == "urgent");
    let justification = if urgent
        && raw
            .justification
            .as_deref()
            .is_none_or(|j| j.trim().is_empty())
    {
        Some(String::new())
    } else {
        c.text(
            raw.justification,
            "justification",
            limits::JUSTIFICATION,
            "why this share is necessary and why the public interest outweighs confidentiality (an urgent share may add it afterwards)",
        )
    };

    let lawful_basis = c
        .text(
            raw.lawful_basis,
            "lawful_basis",
            limits::SHORT_TEXT,
            "the UK GDPR Article 6 basis",
        )
        .and_then(|b| {
            let parsed = LawfulBasis::parse(&b);
            if parsed.is_none() {
                c.invalid(
                    "lawful_basis",
                    format!(
                        "`lawful_basis` is not a UK GDPR Article 6 basis; use one of {}",
                        LawfulBasis::expected()
                    ),
                );
            }
            parsed
        });

    let special_category_condition = c
        .optional_text(
            raw.special_category_condition,
            "special_category_condition",
            limits::SHORT_TEXT,
        )
        .and_then(|s| {
            let parsed = SpecialCategoryCondition::parse(&s);
            if parsed.is_none() {
                c.invalid(
                    "special_category_condition",
                    format!(
                        "`special_category_condition` is not an Article 9 condition this gateway knows; use one of {}",
                        SpecialCategoryCondition::expected()
                    ),
                );
            }
            parsed
        });

    let mut data_categories = BTreeSet::new();
    match raw.data_categories {
        None => c.missing(
            "data_categories",
            "which kinds of data are disclosed (personal, special_category, criminal_offence)",
        ),
        Some(list) if list.is_empty() => c.push(
            FieldProblem::MissingField,
            "data_categories",
            "`data_categories` is empty: name at least one of personal, special_category, criminal_offence",
        ),
        Some(list) => {
            for (i, d) in list.iter().enumerate() {
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
        }
    }

    let marking = match raw.marking {
        None => {
            c.missing(
                "marking",
                "the protective marking, e.g. OFFICIAL-SENSITIVE PERSONAL",
            );
            None
        }
        Some(m) => match cx.marking.parse(&m) {
            Ok(m) if m.given.chars().count() > limits::SHORT_TEXT => {
                c.push(FieldProblem::TooLong, "marking", "`marking` is too long");
                None
            }
            Ok(m) => Some(m),
            Err(MarkingError::Empty) => {
                c.push(
                    FieldProblem::MissingField,
                    "marking",
                    "`marking` is blank: give the protective marking, e.g. OFFICIAL-SENSITIVE PERSONAL",
                );
                None
            }
            Err(e) => {
                let what = match e {
                    MarkingError::UnknownDescriptor { label, .. } => format!(
                        "`marking` starts with {label} but what follows is not a handling descriptor this gateway knows"
                    ),
                    _ => "`marking` is not a protective marking this gateway recognises".to_owned(),
                };
                c.push(FieldProblem::UnrecognisedMarking, "marking", format!("{what}; use one of {}, optionally with a handling descriptor, or a legacy GPMS label", cx.marking.levels().join(", ")));
                None
            }
        },
    };

    let originator = match c.optional_text(raw.originator, "originator", limits::SHORT_TEXT) {
        None => Some(cx.sender.clone()),
        Some(o) => match o.parse::<OrgId>() {
            Ok(o) => Some(o),
            Err(_) => {
                c.invalid("originator", "`originator` is not an organisation id (lower-case letters, digits, '-', '_', '.')");
                None
            }
        },
    };
    let originator_permission_ref = c.optional_text(
        raw.originator_permission_ref,
        "originator_permission_ref",
        limits::SHORT_TEXT,
    );

    let practitioner = match raw.practitioner {
        None => {
            c.missing(
                "practitioner",
                "who is making this share (name, role, contact)",
            );
            None
        }
        Some(p) => practitioner(&mut c, p, "how a recipient can reach the practitioner"),
    };

    let consent = match raw.consent {
        None => {
            c.missing(
                "consent",
                "whether consent was sought (given, refused_overridden, not_sought)",
            );
            None
        }
        Some(rc) => {
            let reason = c.optional_text(rc.reason, "consent.reason", limits::REASON);
            match rc
                .status
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
            {
                None => {
                    c.missing(
                        "consent.status",
                        "one of given, refused_overridden, not_sought",
                    );
                    None
                }
                Some("given") => Some(Consent::Given),
                Some(status @ ("refused_overridden" | "not_sought")) => match reason {
                    None => {
                        c.missing("consent.reason", "why consent was overridden or not sought");
                        None
                    }
                    Some(r) if status == "not_sought" => Some(Consent::NotSought(Sensitive(r))),
                    Some(r) => Some(Consent::RefusedOverridden(Sensitive(r))),
                },
                Some(_) => {
                    c.invalid(
                        "consent.status",
                        "`consent.status` must be given, refused_overridden or not_sought",
                    );
                    None
                }
            }
        }
    };

    let subject_informed = match raw.subject_informed {
        None => {
            c.missing(
                "subject_informed",
                "whether the person was told of this share",
            );
            None
        }
        Some(si) => {
            let reason = c.optional_text(si.reason, "subject_informed.reason", limits::REASON);
            match (si.informed, reason) {
                (None, _) => {
                    c.missing("subject_informed.informed", "true or false");
                    None
                }
                (Some(true), _) => Some(SubjectInformed::Yes),
                (Some(false), Some(r)) => Some(SubjectInformed::No(Sensitive(r))),
                (Some(false), None) => {
                    c.missing(
                        "subject_informed.reason",
                        "why the person was not told (for example, telling them may increase the risk)",
                    );
                    None
                }
            }
        }
    };

    let urgency = urgency(&mut c, raw.urgency, "why this share is urgent");

    let request = raw.request.and_then(|r| {
        request(
            &mut c,
            r,
            "the reference of the request this share answers",
            "what was requested (it may differ from what is disclosed)",
            true,
        )
    });

    let disclosed_summary = c.text(
        raw.disclosed_summary,
        "disclosed_summary",
        limits::REASON,
        "a summary of what is disclosed",
    );

    let retention = match raw.retention {
        None => {
            c.missing(
                "retention",
                "how long the recipient may keep it: {\"days\": N} or {\"until\": \"YYYY-MM-DD\"}",
            );
            None
        }
        Some(RawRetention {
            until: Some(_),
            days: Some(_),
        }) => {
            c.invalid(
                "retention",
                "give either `retention.until` or `retention.days`, not both",
            );
            None
        }
        Some(RawRetention {
            until: None,
            days: None,
        }) => {
            c.missing("retention", "`retention.days` or `retention.until`");
            None
        }
        Some(RawRetention { days: Some(n), .. }) => {
            if n == 0 || n > limits::MAX_RETENTION_DAYS {
                c.invalid(
                    "retention.days",
                    format!("must be between 1 and {}", limits::MAX_RETENTION_DAYS),
                );
                None
            } else {
                Some(Retention::Days(n))
            }
        }
        Some(RawRetention { until: Some(s), .. }) => {
            match Date::parse(
                s.trim(),
                time::macros::format_description!("[year]-[month]-[day]"),
            ) {
                Err(_) => {
                    c.invalid(
                        "retention.until",
                        "`retention.until` is not a date: write YYYY-MM-DD",
                    );
                    None
                }
                Ok(d) if d <= cx.today => {
                    c.invalid("retention.until", "`retention.until` is not in the future");
                    None
                }
                Ok(d) if d > cx.today + Duration::days(i64::from(limits::MAX_RETENTION_DAYS)) => {
                    c.invalid(
                        "retention.until",
                        format!(
                            "`retention.until` is more than {} days ahead",
                            limits::MAX_RETENTION_DAYS
                        ),
                    );
                    None
                }
                Ok(d) => Some(Retention::Until(d)),
            }
        }
    };

    let subject_refs = subject_refs(
        &mut c,
        raw.subject_refs,
        "transfer",
        Some((
            "at least one reference to the person this is about (e.g. nhs:9434765919, case:ABC123), so that subject access requests can find it",
            "`subject_refs` is empty: give at least one reference to the person this is about",
        )),
    );

    let file_name = c
        .optional_text(raw.file_name, "file_name", limits::SHORT_TEXT)
        .and_then(|f| {
            if f.contains(['/', '\\']) || f.chars().any(char::is_control) || f == "." || f == ".." {
                c.invalid(
                    "file_name",
                    "a file name without directories or control characters",
                );
                None
            } else {
                Some(f)
            }
        });

    let content_type = c
        .optional_text(raw.content_type, "content_type", limits::SHORT_TEXT)
        .and_then(|t| {
            let ok = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && t.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ')
            });
            if ok {
                Some(t)
            } else {
                c.invalid(
                    "content_type",
                    "`content_type` is not a media type such as application/pdf",
                );
                None
            }
        });

    let correction_of = c
        .optional_text(raw.correction_of, "correction_of", limits::SHORT_TEXT)
        .and_then(|s| match s.parse::<TransferId>() {
            Ok(id) => Some(id),
            Err(_) => {
                c.invalid(
                    "correction_of",
                    "the transfer id of the record being corrected",
                );
                None
            }
        });

    if !c.0.is_empty() {
        return Err(EnvelopeError::Invalid(c.0));
    }
    // Every `None` below has pushed an error above, so reaching here means all are present.
    let (
        Some(purpose),
        Some(justification),
        Some(lawful_basis),
        Some(marking),
        Some(originator),
        Some(practitioner),
        Some(consent),
        Some(subject_informed),
        Some(urgency),
        Some(disclosed_summary),
        Some(retention),
    ) = (
        purpose,
        justification,
        lawful_basis,
        marking,
        originator,
        practitioner,
        consent,
        subject_informed,
        urgency,
        disclosed_summary,
        retention,
    )
    else {
        return Err(EnvelopeError::Invalid(vec![incomplete("envelope")]));
    };
    Ok(Envelope {
        recipients,
        purpose,
        justification: Sensitive(justification),
        lawful_basis,
        special_category_condition,
        data_categories,
        marking,
        originator,
        originator_permission_ref,
        practitioner,
        consent,
        subject_informed,
        urgency,
        request,
        disclosed_summary: Sensitive(disclosed_summary),
        retention,
        subject_refs,
        file_name,
        content_type,
        correction_of,
    })
}

/// Reads a practitioner, every part required; `contact` says what the contact is for. Decisions
/// and rationales read theirs the same way.
pub(super) fn practitioner(
    c: &mut Collector,
    p: RawPractitioner,
    contact: &str,
) -> Option<Practitioner> {
    let name = c.text(
        p.name,
        "practitioner.name",
        limits::SHORT_TEXT,
        "the practitioner's name",
    );
    let role = c.text(
        p.role,
        "practitioner.role",
        limits::SHORT_TEXT,
        "the practitioner's role",
    );
    let contact = c.text(
        p.contact,
        "practitioner.contact",
        limits::SHORT_TEXT,
        contact,
    );
    Some(Practitioner {
        name: name?,
        role: role?,
        contact: contact?,
    })
}

/// Reads subject references: each parsed, repeats dropped, at most
/// [`limits::MAX_SUBJECT_REFS`] per `per` (a transfer, a decision, a request). `required` gives
/// what to say when they are absent and when the list is empty; without it neither is a problem.
/// A reference itself is never echoed back: error text is answered and may be logged.
pub(super) fn subject_refs(
    c: &mut Collector,
    list: Option<Vec<String>>,
    per: &str,
    required: Option<(&str, &str)>,
) -> Vec<SubjectRef> {
    let mut refs = Vec::new();
    match (list, required) {
        (None, Some((missing, _))) => c.missing("subject_refs", missing),
        (Some(list), Some((_, empty))) if list.is_empty() => {
            c.push(FieldProblem::MissingField, "subject_refs", empty);
        }
        (None, None) => {}
        (Some(list), _) if list.len() > limits::MAX_SUBJECT_REFS => c.invalid(
            "subject_refs",
            format!(
                "at most {} subject references per {per}",
                limits::MAX_SUBJECT_REFS
            ),
        ),
        (Some(list), _) => {
            for (i, s) in list.iter().enumerate() {
                match SubjectRef::parse(s) {
                    Err(e) => c.invalid(format!("subject_refs[{i}]"), e.to_string()),
                    Ok(r) if refs.contains(&r) => {}
                    Ok(r) => refs.push(r),
                }
            }
        }
    }
    refs
}

/// Reads an urgency, required; `reason` says what the reason of an urgent one is. Requests for
/// information read theirs the same way.
pub(super) fn urgency(c: &mut Collector, raw: Option<RawUrgency>, reason: &str) -> Option<Urgency> {
    let Some(u) = raw else {
        c.missing("urgency", "routine or urgent");
        return None;
    };
    let given = c.optional_text(u.reason, "urgency.reason", limits::REASON);
    match (
        u.level.as_deref().map(str::trim).filter(|v| !v.is_empty()),
        given,
    ) {
        (None, _) => {
            c.missing("urgency.level", "routine or urgent");
            None
        }
        (Some("routine"), _) => Some(Urgency::Routine),
        (Some("urgent"), Some(r)) => Some(Urgency::Urgent(Sensitive(r))),
        (Some("urgent"), None) => {
            c.missing("urgency.reason", reason);
            None
        }
        (Some(_), _) => {
            c.invalid("urgency.level", "`urgency.level` must be routine or urgent");
            None
        }
    }
}

/// Reads the request a share or a decision answers; `reference` and `requested` describe the
/// two fields in the messages of a missing one. A decision not to share (`partial` false)
/// declines a request whole, so it may not say how far it answers.
pub(super) fn request(
    c: &mut Collector,
    r: RawRequest,
    reference: &str,
    requested: &str,
    partial: bool,
) -> Option<Request> {
    let id = r
        .request_id
        .and_then(|id| match id.trim().parse::<RequestId>() {
            Ok(id) => Some(id),
            Err(_) => {
                c.invalid(
                    "request.request_id",
                    "`request.request_id` is not a request id (a UUID, as `POST /v1/requests` answered)",
                );
                None
            }
        });
    let extent = match (r.answer.as_deref().map(str::trim), partial) {
        (None, _) | (Some("in_full"), true) => Some(AnswerExtent::InFull),
        (Some("in_part"), true) => Some(AnswerExtent::InPart),
        (Some(_), false) => {
            c.invalid(
                "request.answer",
                "`request.answer` does not apply to a decision not to share: it declines the whole request",
            );
            None
        }
        (Some(_), true) => {
            c.invalid(
                "request.answer",
                "`request.answer` must be in_full or in_part",
            );
            None
        }
    };
    if let Some(id) = id {
        // The request's own words stand in for what the sender leaves out.
        let reference = match r.reference {
            None => id.to_string(),
            given => c.text(given, "request.reference", limits::SHORT_TEXT, reference)?,
        };
        let requested = match r.requested {
            None => None,
            given => Some(Sensitive(c.text(
                given,
                "request.requested",
                limits::REASON,
                requested,
            )?)),
        };
        return Some(Request {
            reference,
            requested,
            answers: Some((id, extent?)),
        });
    }
    let given_answer = r.answer.is_some();
    let reference = c.text(
        r.reference,
        "request.reference",
        limits::SHORT_TEXT,
        reference,
    );
    let requested = c.text(r.requested, "request.requested", limits::REASON, requested);
    if given_answer && extent.is_some() {
        c.invalid(
            "request.answer",
            "`request.answer` applies only to a request made through this gateway (with `request.request_id`)",
        );
        return None;
    }
    Some(Request {
        reference: reference?,
        requested: Some(Sensitive(requested?)),
        answers: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::marking::tests::demo_scheme;
    use serde_json::json;

    pub(crate) fn today() -> Date {
        time::macros::date!(2026 - 11 - 22)
    }

    /// A complete, valid envelope from the council to the police.
    pub(crate) fn valid_json() -> serde_json::Value {
        json!({
            "recipients": ["northshire-police"],
            "purpose": "child-protection-s47",
            "justification": "Disclosure at school indicates risk of significant harm.",
            "lawful_basis": "public_task",
            "special_category_condition": "safeguarding_children",
            "data_categories": ["personal", "special_category"],
            "marking": "OFFICIAL-SENSITIVE PERSONAL",
            "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire.gov.example"},
            "consent": {"status": "not_sought", "reason": "Seeking consent may place the child at increased risk."},
            "subject_informed": {"informed": false, "reason": "Telling the family may increase the risk."},
            "urgency": {"level": "routine"},
            "request": {"reference": "REQ-2026-0042", "requested": "Police contacts with the household"},
            "disclosed_summary": "Strategy discussion notes, two pages.",
            "retention": {"days": 365},
            "subject_refs": ["nhs:9434765919", "case:ABC123"],
            "file_name": "strategy-notes.pdf",
            "content_type": "application/pdf"
        })
    }

    fn parse_value(v: &serde_json::Value) -> Result<Envelope, EnvelopeError> {
        let sender: OrgId = "northshire-cc".parse().unwrap();
        let scheme = demo_scheme();
        let cx = ParseContext {
            sender: &sender,
            marking: &scheme,
            today: today(),
        };
        parse_json(v.to_string().as_bytes(), &cx)
    }

    fn errors(v: &serde_json::Value) -> Vec<(String, FieldProblem)> {
        match parse_value(v) {
            Err(EnvelopeError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_envelope_parses_with_defaults_filled_in() {
        let e = parse_value(&valid_json()).unwrap();
        assert_eq!(
            e.originator.as_str(),
            "northshire-cc",
            "originator defaults to the sender"
        );
        assert_eq!(e.recipients.len(), 1);
        assert!(e.has_special_category());
        assert_eq!(
            e.retention.until(today()),
            time::macros::date!(2027 - 11 - 22)
        );
        assert_eq!(e.subject_refs.len(), 2);
    }

    #[test]
    fn every_missing_required_field_is_named_at_once() {
        let required = [
            "recipients",
            "purpose",
            "justification",
            "lawful_basis",
            "data_categories",
            "marking",
            "practitioner",
            "consent",
            "subject_informed",
            "urgency",
            "disclosed_summary",
            "retention",
            "subject_refs",
        ];
        let mut v = valid_json();
        for f in required {
            v.as_object_mut().unwrap().remove(f);
        }
        let got = errors(&v);
        for f in required {
            assert!(
                got.contains(&(f.to_string(), FieldProblem::MissingField)),
                "{f} not reported: {got:?}"
            );
        }
        assert_eq!(got.len(), required.len());
    }

    #[test]
    fn conditional_fields_are_required_where_the_rules_need_them() {
        let table: Vec<(serde_json::Value, &str, FieldProblem)> = vec![
            (
                json!({"consent": {"status": "not_sought"}}),
                "consent.reason",
                FieldProblem::MissingField,
            ),
            (
                json!({"consent": {"status": "refused_overridden"}}),
                "consent.reason",
                FieldProblem::MissingField,
            ),
            (
                json!({"consent": {"status": "  "}}),
                "consent.status",
                FieldProblem::MissingField,
            ),
            (
                json!({"urgency": {"level": ""}}),
                "urgency.level",
                FieldProblem::MissingField,
            ),
            (
                json!({"consent": {"status": "maybe"}}),
                "consent.status",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"subject_informed": {"informed": false}}),
                "subject_informed.reason",
                FieldProblem::MissingField,
            ),
            (
                json!({"urgency": {"level": "urgent"}}),
                "urgency.reason",
                FieldProblem::MissingField,
            ),
            (
                json!({"urgency": {"level": "asap"}}),
                "urgency.level",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"request": {"reference": "R1"}}),
                "request.requested",
                FieldProblem::MissingField,
            ),
            (
                json!({"retention": {"days": 0}}),
                "retention.days",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"retention": {"until": "2026-11-22"}}),
                "retention.until",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"retention": {"until": "2027-01-01", "days": 3}}),
                "retention",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"retention": {"until": "next week"}}),
                "retention.until",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": ["northshire-cc"]}),
                "recipients[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": ["a", "a"]}),
                "recipients[1]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"recipients": []}),
                "recipients",
                FieldProblem::MissingField,
            ),
            (
                json!({"lawful_basis": "because"}),
                "lawful_basis",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"special_category_condition": "whim"}),
                "special_category_condition",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"data_categories": ["gossip"]}),
                "data_categories[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"marking": "EYES ONLY"}),
                "marking",
                FieldProblem::UnrecognisedMarking,
            ),
            (
                json!({"marking": ""}),
                "marking",
                FieldProblem::MissingField,
            ),
            (
                json!({"subject_refs": ["nhs:1234567890"]}),
                "subject_refs[0]",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"file_name": "../etc/passwd"}),
                "file_name",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"content_type": "pdf"}),
                "content_type",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"correction_of": "yesterday's"}),
                "correction_of",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"originator": "Not An Id"}),
                "originator",
                FieldProblem::InvalidValue,
            ),
            (
                json!({"justification": "x".repeat(limits::JUSTIFICATION + 1)}),
                "justification",
                FieldProblem::TooLong,
            ),
            (
                json!({"practitioner": {"name": "A", "role": " "}}),
                "practitioner.role",
                FieldProblem::MissingField,
            ),
        ];
        for (patch, field, code) in table {
            let mut v = valid_json();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let got = errors(&v);
            assert!(
                got.contains(&(field.to_string(), code)),
                "patch {patch}: expected {field} {code:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let mut v = valid_json();
        v["practitioner"]["grade"] = json!("senior");
        assert_eq!(
            errors(&v),
            vec![("practitioner.grade".to_string(), FieldProblem::UnknownField)]
        );
        let mut v = valid_json();
        v["retention"]["days"] = json!("ten");
        assert_eq!(
            errors(&v),
            vec![("retention.days".to_string(), FieldProblem::InvalidValue)]
        );
    }

    #[test]
    fn broken_json_is_malformed_not_invalid() {
        let sender: OrgId = "a".parse().unwrap();
        let scheme = demo_scheme();
        let cx = ParseContext {
            sender: &sender,
            marking: &scheme,
            today: today(),
        };
        assert!(matches!(
            parse_json(b"{\"recipients\": [", &cx),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn submitted_values_are_never_echoed_in_errors() {
        // An identifier typed into the wrong place must not be copied into the error (which is
        // answered, recorded in the transfer log and stored as the idempotent answer).
        let sentinel = "9434765919";
        let cases: Vec<serde_json::Value> = vec![
            json!({"subject_refs": ["nhs:1234567890"]}),
            json!({"subject_refs": "nhs:9434765919"}),
            json!({"subject_refs": [9434765919u64]}),
            json!({"subject_informed": "no - Mr 9434765919 is violent"}),
            json!({"marking": "OFFICIAL 9434765919"}),
            json!({"marking": "9434765919"}),
            json!({"lawful_basis": "9434765919"}),
            json!({"special_category_condition": "9434765919"}),
            json!({"recipients": ["Nhs 9434765919"]}),
            json!({"recipients": ["9434765919", "9434765919"]}),
            json!({"data_categories": ["9434765919"]}),
            json!({"retention": {"until": "9434765919"}}),
            json!({"retention": {"days": "9434765919"}}),
            json!({"content_type": "9434765919"}),
            json!({"consent": {"status": "9434765919"}}),
            json!({"urgency": {"level": "9434765919"}}),
            json!({"originator": "Org 9434765919"}),
            json!({"purpose": "Purpose 9434765919"}),
            json!({"9434765919": true}),
            json!({"practitioner": {"name": "A", "role": "B", "contact": "C", "9434765919": 1}}),
        ];
        for patch in cases {
            let mut v = valid_json();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let Err(EnvelopeError::Invalid(errs)) = parse_value(&v) else {
                panic!("{patch} should be invalid")
            };
            for e in &errs {
                assert!(
                    !e.message.contains(sentinel) && !e.message.contains("1234567890"),
                    "{patch}: message echoes the value: {}",
                    e.message
                );
                assert!(
                    !e.field.contains(sentinel),
                    "{patch}: field echoes the value: {}",
                    e.field
                );
                assert!(!e.message.is_empty(), "{patch}");
            }
        }
        let ok = parse_value(&valid_json()).unwrap();
        assert!(!format!("{ok:?}").contains(sentinel));
        assert!(!format!("{ok:?}").contains("Disclosure at school"));
    }
}
