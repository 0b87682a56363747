//! "Why would this share be refused?": a share described in the few words an IT team has (who
//! from, to whom, why, on what basis, how marked) put to the real policy decision
//! ([`policy::evaluate`]), as of now or of a given date. What `postern explain` and the IT team's
//! explain page both run, so that they cannot disagree.
//!
//! Pure: the registry and the time are passed in. The description becomes an envelope with
//! neutral values for everything the policy does not look at (the justification, the
//! practitioner, ...), which is validated like any other before the policy sees it.

use time::{Date, OffsetDateTime};

use super::envelope::{
    self, Envelope, EnvelopeError, ParseContext, RawConsent, RawEnvelope, RawPractitioner,
    RawRetention, RawSubjectInformed, RawUrgency,
};
use super::ids::OrgId;
use super::policy::{self, Evaluation};
use super::registry::Registry;

/// A share as `postern explain` describes it: the CLI's options, the page's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    /// The sending organisation's id.
    pub from: String,
    /// The recipients' ids (the decision is all or nothing).
    pub to: Vec<String>,
    pub purpose: String,
    /// An Article 6 basis, e.g. `public_task`.
    pub lawful_basis: String,
    /// The protective marking, as a practitioner would write it.
    pub marking: String,
    /// `personal`, `special_category`, `criminal_offence`.
    pub data_categories: Vec<String>,
    pub special_category_condition: Option<String>,
    /// The organisation the data originated with, when not the sender.
    pub originator: Option<String>,
    pub originator_permission_ref: Option<String>,
    /// Decide as of this date (YYYY-MM-DD, UTC) instead of now.
    pub on: Option<String>,
}

/// The decision with every rule checked, for whom and as of when.
#[derive(Debug, Clone)]
pub struct Explained {
    pub sender: OrgId,
    /// The time the decision was taken as of: now, or midnight UTC of `on`.
    pub as_of: OffsetDateTime,
    pub evaluation: Evaluation,
}

/// Why a description could not be put to the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("`{0}` is not an organisation id")]
    Sender(String),
    #[error("`{0}` is not a date (YYYY-MM-DD)")]
    Date(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl ExplainError {
    /// Each problem as (the question's field at fault, what is wrong): an envelope's
    /// `recipients[1]` is the question's `to`, its `data_categories[0]` is `data_categories`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        match self {
            ExplainError::Sender(_) => vec![("from", self.to_string())],
            ExplainError::Date(_) => vec![("on", self.to_string())],
            ExplainError::Envelope(EnvelopeError::Malformed(m)) => vec![("from", m.clone())],
            ExplainError::Envelope(EnvelopeError::Invalid(errors)) => errors
                .iter()
                .map(|e| (question_field(&e.field), e.message.clone()))
                .collect(),
        }
    }
}

/// The question's field an envelope field comes from (the first field for what it does not
/// describe, which the neutral values make unlikely).
fn question_field(envelope_field: &str) -> &'static str {
    let top = envelope_field
        .split(['[', '.'])
        .next()
        .unwrap_or(envelope_field);
    match top {
        "recipients" => "to",
        "purpose" => "purpose",
        "lawful_basis" => "lawful_basis",
        "marking" => "marking",
        "data_categories" => "data_categories",
        "special_category_condition" => "special_category_condition",
        "originator" => "originator",
        "originator_permission_ref" => "originator_permission_ref",
        _ => "from",
    }
}

/// The moment a decision is taken as of: `now`, or the start (UTC) of the day `on` names.
pub fn as_of(on: Option<&str>, now: OffsetDateTime) -> Result<OffsetDateTime, ExplainError> {
    match on {
        None => Ok(now),
        Some(d) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            Date::parse(d.trim(), format)
                .map(|date| date.midnight().assume_utc())
                .map_err(|_| ExplainError::Date(d.to_owned()))
        }
    }
}

/// The envelope a question describes, with neutral values for everything the policy does not
/// look at.
pub fn raw_envelope(q: &Question) -> RawEnvelope {
    let text = |s: &str| Some(s.to_owned());
    RawEnvelope {
        recipients: Some(q.to.clone()),
        purpose: Some(q.purpose.clone()),
        justification: text("(postern explain: no transfer)"),
        lawful_basis: Some(q.lawful_basis.clone()),
        special_category_condition: q.special_category_condition.clone(),
        data_categories: Some(q.data_categories.clone()),
        marking: Some(q.marking.clone()),
        originator: q.originator.clone(),
        originator_permission_ref: q.originator_permission_ref.clone(),
        practitioner: Some(RawPractitioner {
            name: text("postern explain"),
            role: text("-"),
            contact: text("-"),
        }),
        consent: Some(RawConsent {
            status: text("not_sought"),
            reason: text("postern explain"),
        }),
        subject_informed: Some(RawSubjectInformed {
            informed: Some(true),
            reason: None,
        }),
        urgency: Some(RawUrgency {
            level: text("routine"),
            reason: None,
        }),
        disclosed_summary: text("(postern explain: no transfer)"),
        retention: Some(RawRetention {
            until: None,
            days: Some(30),
        }),
        subject_refs: Some(vec!["case:POSTERN-EXPLAIN".to_owned()]),
        ..RawEnvelope::default()
    }
}

/// The validated envelope a question describes, for `sender` as of `as_of`.
pub fn envelope(
    registry: &Registry,
    sender: &OrgId,
    q: &Question,
    as_of: OffsetDateTime,
) -> Result<Envelope, EnvelopeError> {
    let cx = ParseContext {
        sender,
        marking: &registry.marking,
        today: as_of.date(),
    };
    envelope::parse(raw_envelope(q), &cx)
}

/// Puts the share a question describes to the policy decision, as of `now` (or the question's
/// `on`): every rule checked, and the agreement that allows it or the rule that refuses it.
pub fn explain(
    registry: &Registry,
    q: &Question,
    now: OffsetDateTime,
) -> Result<Explained, ExplainError> {
    let sender: OrgId = q
        .from
        .trim()
        .parse()
        .map_err(|_| ExplainError::Sender(q.from.clone()))?;
    let as_of = as_of(q.on.as_deref(), now)?;
    let envelope = envelope(registry, &sender, q, as_of)?;
    let evaluation = policy::evaluate(registry, &sender, &envelope, as_of);
    Ok(Explained {
        sender,
        as_of,
        evaluation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        Question {
            from: "a".into(),
            to: vec!["b".into()],
            purpose: "p".into(),
            lawful_basis: "public_task".into(),
            marking: "OFFICIAL".into(),
            data_categories: vec!["personal".into()],
            ..Question::default()
        }
    }

    #[test]
    fn dates_and_ids_are_checked_before_the_policy() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(as_of(None, now), Ok(now));
        assert_eq!(
            as_of(Some("2001-06-01"), now).map(|t| t.date().to_string()),
            Ok("2001-06-01".to_owned())
        );
        let bad = as_of(Some("1 June"), now).unwrap_err();
        assert_eq!(bad.problems()[0].0, "on");
        let q = Question {
            from: "Not An Id!".into(),
            ..question()
        };
        let reg = Registry::new(
            crate::domain::marking::tests::demo_scheme(),
            vec![],
            vec![],
            vec![],
            vec![],
        )
        .unwrap();
        assert_eq!(explain(&reg, &q, now).unwrap_err().problems()[0].0, "from");
    }

    #[test]
    fn envelope_fields_are_named_as_the_question_names_them() {
        assert_eq!(question_field("recipients[1]"), "to");
        assert_eq!(question_field("data_categories[0]"), "data_categories");
        assert_eq!(question_field("lawful_basis"), "lawful_basis");
        assert_eq!(question_field("practitioner.role"), "from");
        let raw = raw_envelope(&question());
        assert_eq!(raw.recipients, Some(vec!["b".to_owned()]));
        assert_eq!(raw.originator, None);
    }
}
