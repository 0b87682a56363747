//! A request for information: one organisation asks another, in writing, for what it holds
//! about a person, for a purpose and on a lawful basis, with its grounds. The protocols say the
//! data holding agency answers within fifteen working days (`calendar`); the policy decides
//! whether the two may exchange for that purpose at all (`policy::evaluate_request`).
//!
//! Sits where the envelope does: ingest reads the JSON, this validates it (every problem at
//! once), and the store keeps the request and its clock.

use serde::{Deserialize, Serialize};

use time::{Date, OffsetDateTime};

use super::calendar::{self, Calendar};
use super::envelope::{
    self, AnswerExtent, FieldError, RawPractitioner, RawUrgency, Sensitive, Urgency, limits,
    patterns,
};
use super::fields::{Collector, incomplete, read_json};
use super::ids::{OrgId, PurposeId, SLUG_PATTERN};
use super::lawful::LawfulBasis;
use super::subject::SubjectRef;

pub use super::envelope::Practitioner;

/// A request for information: what one organisation asks another for, and why. Sent as JSON to
/// `POST /v1/requests`.
///
/// The gateway reports every missing or invalid field at once (422 `invalid_request`). The
/// requester is the organisation the client certificate maps to; it is never part of the body.
/// Passing validation does not mean the request may be made: policy then decides (403), as for a
/// share between the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "InformationRequest", title = "InformationRequest")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["holder", "purpose", "lawful_basis", "requested", "grounds", "subject_refs", "urgency", "practitioner"]))]
pub struct RawInfoRequest {
    /// The organisation asked: the data holding agency, by its registered id. Never the requester
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, pattern(SLUG_PATTERN), length(max = 64))]
    pub holder: Option<String>,
    /// The id of the configured purpose the information is wanted for, e.g.
    /// `child-protection-s47`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, pattern(SLUG_PATTERN), length(max = 64))]
    pub purpose: Option<String>,
    /// The UK GDPR Article 6(1) basis the answer would be shared on. It must fit the purpose and
    /// an agreement between the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, with = "Option<LawfulBasis>")]
    pub lawful_basis: Option<String>,
    /// What is requested, in words the holder can act on. Recorded in the transfer log, in clear,
    /// for data protection officers, since what was requested may differ from what is disclosed;
    /// never repeated in error answers or operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::REASON), pattern(patterns::NOT_BLANK))]
    pub requested: Option<String>,
    /// Why the information is needed: the grounds the holder weighs before it shares. Recorded
    /// like `requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::JUSTIFICATION), pattern(patterns::NOT_BLANK))]
    pub grounds: Option<String>,
    /// Who it is about: references written `scheme:value` as in the envelope (an `nhs` value must
    /// be a valid NHS number). At least one; repeats are ignored. The gateway keeps only keyed
    /// hashes of them; the holder sees them in the request it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = limits::MAX_SUBJECT_REFS))]
    #[schemars(inner(pattern(patterns::SUBJECT_REF)))]
    pub subject_refs: Option<Vec<String>>,
    /// `routine` (answered within fifteen working days), or `urgent` with the reason (answered
    /// within hours; an urgent request made by telephone is followed up in writing with this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub urgency: Option<RawUrgency>,
    /// Who is asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub practitioner: Option<RawPractitioner>,
}

/// A validated request for information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub holder: OrgId,
    pub purpose: PurposeId,
    pub lawful_basis: LawfulBasis,
    pub requested: Sensitive,
    pub grounds: Sensitive,
    pub subject_refs: Vec<SubjectRef>,
    pub urgency: Urgency,
    pub practitioner: Practitioner,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoRequestError {
    /// Not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields are missing or invalid (422). Never empty.
    #[error("the body has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Parses and validates the JSON body of a request for information made by `requester`.
pub fn parse_json(bytes: &[u8], requester: &OrgId) -> Result<InfoRequest, InfoRequestError> {
    let raw = read_json(
        bytes,
        ("request", &["practitioner", "urgency"]),
        InfoRequestError::Malformed,
        InfoRequestError::Invalid,
    )?;
    parse(raw, requester)
}

/// Validates a raw request, reporting every problem at once.
pub fn parse(raw: RawInfoRequest, requester: &OrgId) -> Result<InfoRequest, InfoRequestError> {
    let mut c = Collector(Vec::new());

    let holder = c
        .text(
            raw.holder,
            "holder",
            limits::SHORT_TEXT,
            "the organisation asked (its registered id)",
        )
        .and_then(|h| match h.parse::<OrgId>() {
            Ok(id) if &id == requester => {
                c.invalid("holder", "`holder` is the requesting organisation itself");
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                c.invalid("holder", "`holder` is not an organisation id: use the id the gateway registers it under (lower-case letters, digits, '-', '_', '.')");
                None
            }
        });

    let purpose = c
        .text(
            raw.purpose,
            "purpose",
            limits::SHORT_TEXT,
            "the purpose id of this request",
        )
        .and_then(|p| match p.parse::<PurposeId>() {
            Ok(p) => Some(p),
            Err(_) => {
                c.invalid(
                    "purpose",
                    "`purpose` is not a purpose id (e.g. child-protection-s47)",
                );
                None
            }
        });

    let lawful_basis = c
        .text(
            raw.lawful_basis,
            "lawful_basis",
            limits::SHORT_TEXT,
            "the UK GDPR Article 6 basis",
        )
        .and_then(|b| match LawfulBasis::parse(&b) {
            Some(b) => Some(b),
            None => {
                c.invalid(
                    "lawful_basis",
                    format!(
                        "`lawful_basis` is not a lawful basis; use one of {}",
                        LawfulBasis::expected()
                    ),
                );
                None
            }
        });

    let requested = c.text(
        raw.requested,
        "requested",
        limits::REASON,
        "what is requested",
    );
    let grounds = c.text(
        raw.grounds,
        "grounds",
        limits::JUSTIFICATION,
        "why the information is needed",
    );

    let subject_refs = envelope::subject_refs(
        &mut c,
        raw.subject_refs,
        "request",
        Some((
            "who the request is about (`scheme:value`)",
            "`subject_refs` is empty: name at least one reference to the person it is about",
        )),
    );

    let urgency = envelope::urgency(&mut c, raw.urgency, "why this request is urgent");

    let practitioner = match raw.practitioner {
        None => {
            c.missing("practitioner", "who is asking (name, role, contact)");
            None
        }
        Some(p) => envelope::practitioner(&mut c, p, "how the holder can reach the practitioner"),
    };

    if !c.0.is_empty() {
        return Err(InfoRequestError::Invalid(c.0));
    }
    // Every `None` below has pushed an error above.
    let (
        Some(holder),
        Some(purpose),
        Some(lawful_basis),
        Some(requested),
        Some(grounds),
        Some(urgency),
        Some(practitioner),
    ) = (
        holder,
        purpose,
        lawful_basis,
        requested,
        grounds,
        urgency,
        practitioner,
    )
    else {
        return Err(InfoRequestError::Invalid(vec![incomplete("request")]));
    };
    Ok(InfoRequest {
        holder,
        purpose,
        lawful_basis,
        requested: Sensitive(requested),
        grounds: Sensitive(grounds),
        subject_refs,
        urgency,
        practitioner,
    })
}

// ---------------------------------------------------------------------------------------------
// Its life: the states a request passes through, and its clock.

/// Where a request stands, as stored. Overdue is not a stored state: it is an open or partly
/// answered request past its due instant, as [`status`] says at the moment asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Made, and not answered yet.
    Open,
    /// Answered in part; more answers may follow until one answers it in full.
    PartlyAnswered,
    /// Answered in full (the request is closed).
    Answered,
    /// The holder recorded a decision not to share that declines it (closed).
    Declined,
    /// The requester withdrew it (closed).
    Withdrawn,
}

impl RequestState {
    pub const ALL: [RequestState; 5] = [
        RequestState::Open,
        RequestState::PartlyAnswered,
        RequestState::Answered,
        RequestState::Declined,
        RequestState::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::PartlyAnswered => "partly_answered",
            RequestState::Answered => "answered",
            RequestState::Declined => "declined",
            RequestState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Answered in full, declined or withdrawn: nothing more may happen to it.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            RequestState::Answered | RequestState::Declined | RequestState::Withdrawn
        )
    }
}

/// What both organisations see: the stored state, or `overdue` when the holder has not
/// finished answering by the due instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Open,
    PartlyAnswered,
    Answered,
    Declined,
    Withdrawn,
    Overdue,
    /// The holder asked for clarification and the clock waits for it.
    AwaitingClarification,
}

impl RequestStatus {
    pub const NAMES: [&'static str; 7] = [
        "open",
        "partly_answered",
        "answered",
        "declined",
        "withdrawn",
        "overdue",
        "awaiting_clarification",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::PartlyAnswered => "partly_answered",
            RequestStatus::Answered => "answered",
            RequestStatus::Declined => "declined",
            RequestStatus::Withdrawn => "withdrawn",
            RequestStatus::Overdue => "overdue",
            RequestStatus::AwaitingClarification => "awaiting_clarification",
        }
    }
}

/// The status of a request in `state`, due at `due`, at the instant `now`; `clock_stopped`
/// while a clarification is awaited and the clock waits for it.
pub fn status(
    state: RequestState,
    due: OffsetDateTime,
    now: OffsetDateTime,
    clock_stopped: bool,
) -> RequestStatus {
    match state {
        RequestState::Open | RequestState::PartlyAnswered if clock_stopped => {
            RequestStatus::AwaitingClarification
        }
        RequestState::Open | RequestState::PartlyAnswered if now > due => RequestStatus::Overdue,
        RequestState::Open => RequestStatus::Open,
        RequestState::PartlyAnswered => RequestStatus::PartlyAnswered,
        RequestState::Answered => RequestStatus::Answered,
        RequestState::Declined => RequestStatus::Declined,
        RequestState::Withdrawn => RequestStatus::Withdrawn,
    }
}

/// Something that happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEvent {
    /// The holder shared a transfer that answers it, in full or in part.
    Answered(AnswerExtent),
    /// The holder recorded a decision not to share that declines it.
    Declined,
    /// The requester withdrew it.
    Withdrawn,
}

/// The request was closed already: nothing more may happen to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request is {} already", .0.as_str())]
pub struct RequestClosed(pub RequestState);

/// The state after `event`.
pub fn apply(state: RequestState, event: RequestEvent) -> Result<RequestState, RequestClosed> {
    if state.is_closed() {
        return Err(RequestClosed(state));
    }
    Ok(match event {
        RequestEvent::Answered(AnswerExtent::InFull) => RequestState::Answered,
        RequestEvent::Answered(AnswerExtent::InPart) => RequestState::PartlyAnswered,
        RequestEvent::Declined => RequestState::Declined,
        RequestEvent::Withdrawn => RequestState::Withdrawn,
    })
}

/// What asking for clarification does to a request's clock (`[requests] clarification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClarificationClock {
    /// The clock stops while the holder waits, and starts again, in full, from the day the
    /// clarification is received (as the ICO's guidance says for Freedom of Information
    /// requests).
    Restarts,
    /// The clock runs on regardless.
    Continues,
}

impl ClarificationClock {
    /// Whether the clock stops while a clarification is awaited.
    pub fn stops(self) -> bool {
        self == ClarificationClock::Restarts
    }
}

/// How long a holder has to answer: `[requests]` in the configuration, with an agreement's own
/// number of working days where it sets one.
#[derive(Debug, Clone, Copy)]
pub struct Clock<'a> {
    pub calendar: &'a Calendar,
    pub working_days: u32,
    pub urgent_hours: u32,
}

/// When a request is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueAt {
    /// The last instant it may be answered in time.
    pub at: OffsetDateTime,
    /// The day (in the United Kingdom) it is due by.
    pub date: Date,
    /// False when the count ran past the calendar's last year (see [`calendar::Due`]).
    pub covered: bool,
}

impl Clock<'_> {
    /// When a request received at `received` is due: a routine one by the end of the
    /// `working_days`th working day after the (UK) day of receipt, an urgent one
    /// `urgent_hours` after it arrived.
    pub fn due(&self, received: OffsetDateTime, urgency: &Urgency) -> DueAt {
        self.due_by_level(received, matches!(urgency, Urgency::Urgent(_)))
    }

    /// [`Clock::due`] by the urgency's level alone (a clarification restarts the clock of a
    /// request whose reason for urgency is in the log).
    pub fn due_by_level(&self, received: OffsetDateTime, urgent: bool) -> DueAt {
        match urgent {
            false => {
                let due = self
                    .calendar
                    .working_days_after(calendar::uk_day(received), self.working_days);
                DueAt {
                    at: calendar::uk_end_of_day(due.date),
                    date: due.date,
                    covered: due.covered,
                }
            }
            true => {
                let at = calendar::hours_after(received, self.urgent_hours);
                DueAt {
                    at,
                    date: calendar::uk_day(at),
                    covered: true,
                }
            }
        }
    }

    /// Working days from the day of receipt to the day of `answered` (both UK days): how long
    /// an answer took, for the report.
    pub fn working_days_taken(&self, received: OffsetDateTime, answered: OffsetDateTime) -> u32 {
        self.calendar
            .working_days_between(calendar::uk_day(received), calendar::uk_day(answered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::FieldProblem;
    use serde_json::{Value, json};

    fn valid() -> Value {
        json!({
            "holder": "northshire-cc",
            "purpose": "child-protection-s47",
            "lawful_basis": "public_task",
            "requested": "Any social care involvement with the family since 2024.",
            "grounds": "A strategy discussion is planned after a disclosure at school.",
            "subject_refs": ["nhs:943 476 5919"],
            "urgency": { "level": "routine" },
            "practitioner": { "name": "DC Lee", "role": "Detective constable", "contact": "lee@police.example" }
        })
    }

    fn police() -> OrgId {
        "northshire-police".parse().unwrap()
    }

    fn problems(v: &Value) -> Vec<(String, FieldProblem)> {
        match parse_json(v.to_string().as_bytes(), &police()) {
            Err(InfoRequestError::Invalid(e)) => e.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_request_parses() {
        let r = parse_json(valid().to_string().as_bytes(), &police()).unwrap();
        assert_eq!(r.holder.as_str(), "northshire-cc");
        assert_eq!(r.lawful_basis, LawfulBasis::PublicTask);
        assert_eq!(r.urgency, Urgency::Routine);
        assert_eq!(r.subject_refs.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = problems(&json!({ "urgency": { "level": "urgent" } }));
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "holder",
                "purpose",
                "lawful_basis",
                "requested",
                "grounds",
                "subject_refs",
                "urgency.reason",
                "practitioner"
            ]
        );
        assert!(got.iter().all(|(_, p)| *p == FieldProblem::MissingField));
    }

    #[test]
    fn the_requester_cannot_ask_itself_and_values_are_checked() {
        let mut v = valid();
        v["holder"] = json!("northshire-police");
        v["lawful_basis"] = json!("because");
        v["subject_refs"] = json!(["nhs:123"]);
        v["grounds"] = json!("   ");
        let got = problems(&v);
        assert_eq!(
            got,
            [
                ("holder".to_owned(), FieldProblem::InvalidValue),
                ("lawful_basis".to_owned(), FieldProblem::InvalidValue),
                ("grounds".to_owned(), FieldProblem::MissingField),
                ("subject_refs[0]".to_owned(), FieldProblem::InvalidValue),
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let mut v = valid();
        v["practitioner"]["badge"] = json!("1234");
        assert_eq!(
            problems(&v),
            [("practitioner.badge".to_owned(), FieldProblem::UnknownField)]
        );
    }

    #[test]
    fn a_request_s_life_follows_its_events_and_nothing_follows_its_close() {
        use RequestState::{Open, PartlyAnswered};
        let part = RequestEvent::Answered(AnswerExtent::InPart);
        let full = RequestEvent::Answered(AnswerExtent::InFull);
        let (declined, withdrawn) = (RequestEvent::Declined, RequestEvent::Withdrawn);
        for (from, event, to) in [
            (Open, part, Ok(PartlyAnswered)),
            (PartlyAnswered, part, Ok(PartlyAnswered)),
            (PartlyAnswered, full, Ok(RequestState::Answered)),
            (Open, full, Ok(RequestState::Answered)),
            (Open, declined, Ok(RequestState::Declined)),
            (PartlyAnswered, declined, Ok(RequestState::Declined)),
            (Open, withdrawn, Ok(RequestState::Withdrawn)),
            (PartlyAnswered, withdrawn, Ok(RequestState::Withdrawn)),
            (
                RequestState::Answered,
                part,
                Err(RequestClosed(RequestState::Answered)),
            ),
            (
                RequestState::Declined,
                full,
                Err(RequestClosed(RequestState::Declined)),
            ),
            (
                RequestState::Withdrawn,
                withdrawn,
                Err(RequestClosed(RequestState::Withdrawn)),
            ),
            (
                RequestState::Answered,
                withdrawn,
                Err(RequestClosed(RequestState::Answered)),
            ),
        ] {
            assert_eq!(apply(from, event), to, "{from:?} + {event:?}");
        }
        for st in RequestState::ALL {
            assert_eq!(RequestState::parse(st.as_str()), Some(st));
        }
    }

    #[test]
    fn overdue_is_open_or_partly_answered_past_the_due_instant() {
        use time::macros::datetime;
        let due = datetime!(2026-07-15 22:59:59 UTC);
        let before = datetime!(2026-07-15 22:59:59 UTC);
        let after = datetime!(2026-07-15 23:00:00 UTC);
        assert_eq!(
            status(RequestState::Open, due, before, false),
            RequestStatus::Open
        );
        assert_eq!(
            status(RequestState::Open, due, after, false),
            RequestStatus::Overdue
        );
        assert_eq!(
            status(RequestState::PartlyAnswered, due, after, false),
            RequestStatus::Overdue
        );
        // While the clock waits for a clarification, a request is not overdue.
        assert_eq!(
            status(RequestState::Open, due, after, true),
            RequestStatus::AwaitingClarification
        );
        for closed in [
            RequestState::Answered,
            RequestState::Declined,
            RequestState::Withdrawn,
        ] {
            assert_eq!(status(closed, due, after, true).as_str(), closed.as_str());
        }
    }

    #[test]
    fn the_clock_counts_uk_days_and_urgent_hours() {
        use time::macros::{date, datetime};
        let cal = Calendar::new(
            "England and Wales",
            [
                (date!(2026 - 08 - 31), "Summer bank holiday".to_owned()),
                (date!(2026 - 12 - 25), "Christmas Day".to_owned()),
                (
                    date!(2026 - 12 - 28),
                    "Boxing Day (substitute day)".to_owned(),
                ),
            ],
        )
        .unwrap();
        let clock = Clock {
            calendar: &cal,
            working_days: 15,
            urgent_hours: 24,
        };
        // Thursday 20 August 2026, 23:30 UTC is Friday 00:30 BST: the count starts on Monday
        // 24th, skips the bank holiday on the 31st, and ends on Monday 14 September.
        let d = clock.due(datetime!(2026-08-20 23:30 UTC), &Urgency::Routine);
        assert_eq!(d.date, date!(2026 - 09 - 14));
        assert_eq!(d.at, datetime!(2026-09-14 22:59:59 UTC));
        // An hour earlier it is still Thursday there: day one is the Friday, and the due date
        // one working day sooner.
        let d = clock.due(datetime!(2026-08-20 22:30 UTC), &Urgency::Routine);
        assert_eq!(d.date, date!(2026 - 09 - 11));
        // Urgent: hours on the clock, weekends included.
        let d = clock.due(
            datetime!(2026-12-24 16:00 UTC),
            &Urgency::Urgent(Sensitive("a child is missing".into())),
        );
        assert_eq!(d.at, datetime!(2026-12-25 16:00 UTC));
        assert_eq!(d.date, date!(2026 - 12 - 25));
        assert_eq!(
            clock.working_days_taken(
                datetime!(2026-12-24 16:00 UTC),
                datetime!(2026-12-29 09:00 UTC)
            ),
            1,
            "Christmas and the substitute Boxing Day are not working days"
        );
    }
}
