//! Feedback that closes the loop: the recipient of a transfer tells its sender what became of
//! it (received and read; or acted on: a referral accepted, an assessment started, no further
//! action), with a short comment. The 2024 advice asks recipients for it, because practitioners
//! who hear nothing back hesitate to share next time.
//!
//! Sits where a rationale does: ingest reads the JSON, this validates it (every problem at
//! once), and the transfer log keeps it, filed under the transfer.

use serde::{Deserialize, Serialize};

use super::envelope::{FieldError, limits, patterns};
use super::fields::{Collector, read_json};

/// What became of a transfer, as its recipient says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    /// Received and read; nothing decided yet.
    ReceivedAndRead,
    /// Acted on: the referral was accepted.
    ReferralAccepted,
    /// Acted on: an assessment has started.
    AssessmentStarted,
    /// Acted on: no further action.
    NoFurtherAction,
}

impl FeedbackStatus {
    pub const ALL: [FeedbackStatus; 4] = [
        FeedbackStatus::ReceivedAndRead,
        FeedbackStatus::ReferralAccepted,
        FeedbackStatus::AssessmentStarted,
        FeedbackStatus::NoFurtherAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::ReceivedAndRead => "received_and_read",
            FeedbackStatus::ReferralAccepted => "referral_accepted",
            FeedbackStatus::AssessmentStarted => "assessment_started",
            FeedbackStatus::NoFurtherAction => "no_further_action",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// In words, for the sender's pages.
    pub fn words(self) -> &'static str {
        match self {
            FeedbackStatus::ReceivedAndRead => "Received and read",
            FeedbackStatus::ReferralAccepted => "Acted on: referral accepted",
            FeedbackStatus::AssessmentStarted => "Acted on: assessment started",
            FeedbackStatus::NoFurtherAction => "Acted on: no further action",
        }
    }

    fn expected() -> String {
        Self::ALL
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The longest comment: a short note, not a report.
pub const COMMENT_MAX: usize = 500;

/// Feedback on a transfer, from one of its recipients: `POST /v1/transfers/{id}/feedback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Feedback", title = "Feedback")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["status"]))]
pub struct RawFeedback {
    /// What became of it: `received_and_read`, or acted on: `referral_accepted`,
    /// `assessment_started` or `no_further_action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, with = "Option<FeedbackStatus>")]
    pub status: Option<String>,
    /// Optional: a short note for the sender (at most 500 characters). Recorded in the transfer
    /// log, in clear; never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = COMMENT_MAX), pattern(patterns::NOT_BLANK))]
    pub comment: Option<String>,
}

/// Validated feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub status: FeedbackStatus,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// Not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields are missing or invalid (422). Never empty.
    #[error("the body has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Parses and validates a feedback body.
pub fn parse_json(bytes: &[u8]) -> Result<Feedback, FeedbackError> {
    let raw: RawFeedback = read_json(
        bytes,
        ("feedback", &[]),
        FeedbackError::Malformed,
        FeedbackError::Invalid,
    )?;
    parse(raw)
}

/// Validates raw feedback, reporting every problem at once.
pub fn parse(raw: RawFeedback) -> Result<Feedback, FeedbackError> {
    let mut c = Collector(Vec::new());
    let status = match raw.status.as_deref().map(str::trim) {
        None | Some("") => {
            c.missing("status", "what became of the transfer");
            None
        }
        Some(s) => FeedbackStatus::parse(s).or_else(|| {
            c.invalid(
                "status",
                format!(
                    "`status` is not a feedback status; use one of {}",
                    FeedbackStatus::expected()
                ),
            );
            None
        }),
    };
    let comment = c.optional_text(raw.comment, "comment", COMMENT_MAX);
    match (status, c.0.is_empty()) {
        (Some(status), true) => Ok(Feedback { status, comment }),
        _ => Err(FeedbackError::Invalid(c.0)),
    }
}

/// Keeps `limits` in use here: a comment is shorter than any reason the envelope takes.
const _: () = assert!(COMMENT_MAX < limits::REASON);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::FieldProblem;

    #[test]
    fn feedback_is_a_status_and_an_optional_short_comment() {
        let f =
            parse_json(br#"{"status": "assessment_started", "comment": " Seen today. "}"#).unwrap();
        assert_eq!(f.status, FeedbackStatus::AssessmentStarted);
        assert_eq!(f.comment.as_deref(), Some("Seen today."));
        let f = parse_json(br#"{"status": "received_and_read", "comment": "  "}"#).unwrap();
        assert_eq!(f.comment, None, "a blank comment is none");
        for s in FeedbackStatus::ALL {
            assert_eq!(FeedbackStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let long = "x".repeat(COMMENT_MAX + 1);
        let body = serde_json::json!({"status": "thanks", "comment": long}).to_string();
        let Err(FeedbackError::Invalid(errors)) = parse_json(body.as_bytes()) else {
            panic!("invalid");
        };
        let got: Vec<(&str, FieldProblem)> =
            errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("status", FieldProblem::InvalidValue),
                ("comment", FieldProblem::TooLong)
            ]
        );
        let Err(FeedbackError::Invalid(errors)) = parse_json(br#"{"mood": "fine"}"#) else {
            panic!("invalid");
        };
        assert_eq!(errors[0].code, FieldProblem::UnknownField);
        assert!(matches!(parse_json(b"{"), Err(FeedbackError::Malformed(_))));
    }
}
