//! Requests for information between organisations: `POST /v1/requests` (one organisation asks
//! another, in writing), `GET /v1/requests` and `GET /v1/requests/{id}` (both parties follow
//! it), and `POST /v1/requests/{id}/withdraw` (the requester withdraws it). A share whose
//! envelope names the request (`request.request_id`) answers it, and a decision not to share
//! that names it declines it: [`link`] checks the reference before the share is decided, and
//! [`apply_in_tx`] records the change in the same transaction as the share or decision.
//!
//! The body is validated by [`crate::domain::info_request`], decided by
//! [`crate::domain::policy::evaluate_request`] (the rules of a share between the two), given its
//! due date by the configured clock, and appended to the transfer log with the request's row,
//! answered only once durable. A refused request is recorded too.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::App;
use super::caller::OrgCaller;
use super::decisions::{
    created, earlier_answer, idempotency_key, json, json_body, replay, sender, unavailable,
};
use super::problem::{self, Problem, ProblemCode};
use super::routes::Submitter;
use crate::domain::calendar::{self, Calendar};
use crate::domain::envelope::{
    AnswerExtent, FieldError, FieldProblem, Request as Answering, limits,
};
use crate::domain::ids::{OrgId, RequestId, TransferId};
use crate::domain::info_request::{
    self, Clock, InfoRequest, InfoRequestError, RequestEvent, RequestState, RequestStatus,
};
use crate::domain::policy::{self, Decision};
use crate::log::{
    DecisionRecord, InfoRequestRecord, LogEntry, PractitionerRecord, RecordKind,
    RequestEventRecord, SenderRecord, StatusReason,
};
use crate::store::requests::{self as stored, Change, NewRequest, RequestRow, Side};
use crate::store::{IdempotencyClaim, StoreError, Tx};

// ---------------------------------------------------------------------------------------------
// What is answered.

/// The answer to a request made: its id, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestMade {
    /// The request's id (a UUID v7). The holder answers by naming it in a share's envelope
    /// (`request.request_id`) or in a decision not to share.
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub request_id: String,
    #[schemars(extend("const" = "open"))]
    pub status: String,
    /// When the gateway received it (RFC 3339, UTC): the clock starts from this day.
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    /// The organisation asked.
    pub holder: String,
    /// The agreement that permits the exchange.
    pub agreement: String,
    /// The last instant it may be answered in time (RFC 3339, UTC): the end of the due day in
    /// the United Kingdom, or for an urgent request the configured number of hours after it
    /// was received.
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub due_at: String,
    /// The day it is due by, in the United Kingdom (YYYY-MM-DD).
    #[schemars(with = "crate::domain::wire::Date")]
    pub due_date: String,
    /// Where both organisations follow it: `/v1/requests/{id}`.
    pub request_url: String,
}

/// A request as its two organisations see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestView {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub request_id: String,
    /// `open`, `partly_answered`, `answered`, `declined`, `withdrawn`, or `overdue` (open or
    /// partly answered after `due_at`).
    pub status: RequestStatus,
    /// The organisation that asked.
    pub requester: String,
    /// The organisation asked.
    pub holder: String,
    pub purpose: String,
    pub lawful_basis: String,
    /// What is requested.
    pub requested: String,
    /// Why the information is needed.
    pub grounds: String,
    /// `routine` or `urgent`.
    #[schemars(extend("enum" = ["routine", "urgent"]))]
    pub urgency: String,
    /// Why it is urgent, for an urgent request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency_reason: Option<String>,
    /// Who asked.
    pub practitioner: PractitionerRecord,
    /// Who it is about, as the requester wrote them: shown while the request is open (or
    /// partly answered); once it is closed the gateway keeps only their keyed hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_refs: Option<Vec<String>>,
    /// The agreement that permits the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub due_at: String,
    #[schemars(with = "crate::domain::wire::Date")]
    pub due_date: String,
    /// When it was first answered (in full or in part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub first_answer_at: Option<String>,
    /// When it was answered in full, declined or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub closed_at: Option<String>,
    /// The shares that answered it and the decision that declined it, oldest first.
    pub answers: Vec<RequestAnswer>,
    /// Clarifications the holder asked for and the requester gave, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clarifications: Vec<Clarification>,
}

/// A clarification asked for by the holder, or given by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Clarification {
    /// `asked` (by the holder) or `given` (by the requester).
    #[schemars(extend("enum" = ["asked", "given"]))]
    pub kind: String,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
    pub text: String,
}

/// The body of `POST /v1/requests/{id}/clarification`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ClarificationBody", title = "ClarificationBody")]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["text"]))]
pub struct RawClarification {
    /// From the holder: what it needs clarified. From the requester: the clarification.
    /// Recorded in the transfer log, in clear; never repeated in error answers or operational
    /// logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = limits::REASON), pattern(crate::domain::envelope::patterns::NOT_BLANK))]
    pub text: Option<String>,
}

/// The answer to a clarification asked or given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClarificationRecorded {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub request_id: String,
    /// `asked` or `given`.
    #[schemars(extend("enum" = ["asked", "given"]))]
    pub kind: String,
    /// The request's status now (`awaiting_clarification` while the clock waits).
    pub status: RequestStatus,
    /// The request's due instant now (restarted when a clarification given restarts it).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub due_at: String,
    #[schemars(with = "crate::domain::wire::Date")]
    pub due_date: String,
}

/// A share that answered a request, or a decision not to share that declined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestAnswer {
    /// The share's transfer id, or the decision's id.
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub id: String,
    /// `answer` (a share) or `decline` (a decision not to share).
    #[schemars(extend("enum" = ["answer", "decline"]))]
    pub kind: String,
    /// For a share: `in_full` or `in_part`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerExtent>,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
}

/// One request in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestSummary {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub request_id: String,
    pub status: RequestStatus,
    pub requester: String,
    pub holder: String,
    pub purpose: String,
    #[schemars(extend("enum" = ["routine", "urgent"]))]
    pub urgency: String,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub due_at: String,
    #[schemars(with = "crate::domain::wire::Date")]
    pub due_date: String,
    pub request_url: String,
}

/// `GET /v1/requests`: the caller's requests on one side, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestList {
    pub requests: Vec<RequestSummary>,
}

/// The answer to a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestWithdrawn {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub request_id: String,
    #[schemars(extend("const" = "withdrawn"))]
    pub status: String,
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub withdrawn_at: String,
}

/// The optional body of `POST /v1/requests/{id}/withdraw`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWithdrawal {
    /// Why the request is withdrawn (recorded in the transfer log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::REASON))]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// POST /v1/requests

pub async fn make(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(p) => return p.into_response(),
    };
    let bytes = match json_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    make_request(&app, &peer.into(), key, bytes).await
}

/// The clock a request between `requester` and `holder` runs on, under `agreement`.
pub fn clock<'a>(app: &'a App, agreement: Option<u32>) -> Clock<'a> {
    Clock {
        calendar: &app.requests.calendar,
        working_days: agreement.unwrap_or(app.requests.working_days),
        urgent_hours: app.requests.urgent_hours,
    }
}

/// Validates, decides and records a request for information: the API's `POST /v1/requests`
/// and the web pages' "ask for information" both come here. 201 with [`RequestMade`], 403 when
/// policy refuses it (recorded), or a problem.
pub async fn make_request(
    app: &App,
    peer: &Submitter,
    key: Option<String>,
    bytes: Vec<u8>,
) -> Response {
    let request_sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(r) = earlier_answer(app, peer, &key, &request_sha256, "request_url").await {
        return r;
    }
    let parsed = info_request::parse_json(&bytes, &peer.org);
    drop(bytes);
    let request = match parsed {
        Ok(r) => r,
        Err(InfoRequestError::Malformed(msg)) => {
            return Problem::new(
                ProblemCode::MalformedRequest,
                format!("The body is not valid JSON: {msg}."),
            )
            .into_response();
        }
        Err(InfoRequestError::Invalid(errors)) => {
            tracing::info!(requester = %peer.org, "request for information invalid; nothing recorded");
            return Problem::invalid_body(ProblemCode::InvalidInfoRequest, "request", &errors)
                .into_response();
        }
    };
    let registry = app.registry.current();
    let received = crate::clock::now();
    let at = crate::clock::stamp(received);
    let id = RequestId::from_uuid(uuid::Uuid::now_v7());
    let evaluation = policy::evaluate_request(
        &registry,
        &peer.org,
        &request.holder,
        &request.purpose,
        request.lawful_basis,
        received,
    );
    let mut record = made_record(app, id, &at, peer, &request, key.clone());
    let claim = key.map(|key| IdempotencyClaim {
        sender: peer.org.clone(),
        key,
        request_sha256: request_sha256.clone(),
        at: at.clone(),
    });
    let auth = match evaluation.decision {
        Decision::Accept(mut auths) if !auths.is_empty() => auths.swap_remove(0),
        Decision::Accept(_) => return Problem::internal().into_response(),
        Decision::Refuse(refusal) => {
            tracing::info!(request_id = %id, requester = %peer.org, code = refusal.code(), "request for information refused by policy");
            let mut problem = Problem::refused(&refusal, None).with_request(id);
            // The recipients a share names are the holder here; a refusal about the
            // requester itself (it has no endpoint for the answer) names no field.
            if problem.field.as_deref() == Some("recipients") {
                problem.field =
                    (refusal.recipient.as_ref() != Some(&peer.org)).then(|| "holder".to_owned());
            }
            record.kind = RecordKind::RequestRefused;
            record.refusal = Some(DecisionRecord::refused(&refusal));
            let body = serde_json::to_string(&problem).unwrap_or_default();
            let entry = match LogEntry::new(&record) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(request_id = %id, error = %e, "could not encode a request");
                    return Problem::internal().into_response();
                }
            };
            let written = app
                .store
                .write(false, move |tx| {
                    if let Some(c) = &claim
                        && let Some(previous) = tx.claim(c, 403, body)?
                    {
                        return Ok(Some(previous));
                    }
                    tx.append(&entry)?;
                    Ok(None)
                })
                .await;
            return match written {
                Ok(None) => problem.into_response(),
                Ok(Some(previous)) => replay(&previous, &request_sha256, "request_url"),
                Err(e) => unavailable(&e, "could not record a refused request"),
            };
        }
    };
    let per_agreement = registry
        .agreements()
        .iter()
        .find(|a| a.id == auth.agreement)
        .and_then(|a| a.answer_within_working_days);
    let due = clock(app, per_agreement).due(received, &request.urgency);
    if !due.covered {
        tracing::warn!(request_id = %id, calendar = %app.requests.calendar.name, "a request's due date runs past the bank holiday calendar's last year: update the calendar file");
    }
    record.agreement = Some(auth.agreement.to_string());
    record.due_at = Some(crate::clock::stamp(due.at));
    record.due_date = Some(due.date.to_string());
    let refs: Vec<String> = request.subject_refs.iter().map(|s| s.expose()).collect();
    let sealed_refs = match serde_json::to_vec(&refs)
        .map_err(|e| e.to_string())
        .and_then(|j| {
            crate::seal::seal_bytes(&j, [app.spool_key.recipient() as &dyn age::Recipient])
                .map_err(|e| e.to_string())
        }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(request_id = %id, error = %e, "could not seal a request's subject references");
            return Problem::internal().into_response();
        }
    };
    let answer = RequestMade {
        request_id: id.to_string(),
        status: "open".into(),
        received_at: at.clone(),
        holder: request.holder.to_string(),
        agreement: auth.agreement.to_string(),
        due_at: crate::clock::stamp(due.at),
        due_date: due.date.to_string(),
        request_url: format!("/v1/requests/{id}"),
    };
    let (entry, body) = match (LogEntry::new(&record), serde_json::to_string(&answer)) {
        (Ok(e), Ok(b)) => (e, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(request_id = %id, error = %e, "could not encode a request");
            return Problem::internal().into_response();
        }
    };
    let new = NewRequest {
        id,
        requester: peer.org.clone(),
        holder: request.holder.clone(),
        purpose: request.purpose.to_string(),
        urgency: request.urgency.level(),
        received_at: at.clone(),
        due_at: answer.due_at.clone(),
        due_date: answer.due_date.clone(),
        sealed_refs,
    };
    let stored_body = body.clone();
    let written = app
        .store
        .write(false, move |tx| {
            if let Some(c) = &claim
                && let Some(previous) = tx.claim(c, 201, stored_body)?
            {
                return Ok(Some(previous));
            }
            // Run alone (Store::write): the record has its number now.
            let seq = tx.append_now(&entry)?;
            stored::insert(tx.db(), &new, seq)?;
            Ok(None)
        })
        .await;
    match written {
        Ok(None) => {
            tracing::info!(request_id = %id, requester = %peer.org, holder = %request.holder, due = %answer.due_date, "request for information made");
            if let Some(arrivals) = &app.arrivals {
                let requester = registry
                    .organisation(&peer.org)
                    .map_or_else(|| peer.org.to_string(), |o| o.name.clone());
                arrivals.tell_request(
                    &registry,
                    &request.holder,
                    &requester,
                    &answer.request_id,
                    &answer.due_date,
                );
            }
            created(body, &answer.request_url, false)
        }
        Ok(Some(previous)) => replay(&previous, &request_sha256, "request_url"),
        Err(e) => unavailable(&e, "could not record a request for information"),
    }
}

/// The request as recorded, made (the caller sets the refusal, or the agreement and due date).
fn made_record(
    app: &App,
    id: RequestId,
    at: &str,
    peer: &Submitter,
    r: &InfoRequest,
    idempotency_key: Option<String>,
) -> InfoRequestRecord {
    InfoRequestRecord {
        kind: RecordKind::RequestMade,
        request_id: id,
        at: at.to_owned(),
        sender: sender(peer),
        holder: r.holder.clone(),
        purpose: r.purpose.to_string(),
        lawful_basis: r.lawful_basis.as_str().to_owned(),
        requested: r.requested.expose().to_owned(),
        grounds: r.grounds.expose().to_owned(),
        urgency: StatusReason {
            status: r.urgency.level().to_owned(),
            reason: r.urgency.reason().map(str::to_owned),
        },
        practitioner: PractitionerRecord {
            name: r.practitioner.name.clone(),
            role: r.practitioner.role.clone(),
            contact: r.practitioner.contact.clone(),
        },
        subject_ref_hashes: r
            .subject_refs
            .iter()
            .map(|s| s.hash(&app.subject_key))
            .collect(),
        agreement: None,
        due_at: None,
        due_date: None,
        refusal: None,
        idempotency_key,
    }
}

// ---------------------------------------------------------------------------------------------
// GET /v1/requests, GET /v1/requests/{id}

fn not_found() -> Response {
    Problem::new(
        ProblemCode::RequestNotFound,
        "No request for information with this id was made by or to your organisation.",
    )
    .with_field("id")
    .into_response()
}

/// `side`: `received` (the default: the requests the caller was asked) or `made`; `open`:
/// only the requests not answered in full, declined or withdrawn.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    side: Option<String>,
    open: Option<String>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |field: &str, detail: &str| {
        Problem::new(ProblemCode::MalformedRequest, detail)
            .with_field(field)
            .into_response()
    };
    let Ok(Query(q)) = query else {
        return bad("query", "The query accepts `side` and `open` only.");
    };
    let side = match q.side.as_deref() {
        None | Some("received") => Side::Received,
        Some("made") => Side::Made,
        Some(_) => return bad("side", "`side` must be `received` or `made`."),
    };
    let open_only = match q.open.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return bad("open", "`open` must be `true` or `false`."),
    };
    let org = peer.org.to_string();
    match app
        .store
        .read(move |c| stored::list(c, &org, side, open_only, 1000))
        .await
    {
        Ok(rows) => {
            let now = crate::clock::now();
            let requests = rows.iter().map(|r| summary(r, now)).collect();
            match serde_json::to_string(&RequestList { requests }) {
                Ok(b) => json(StatusCode::OK, b),
                Err(_) => Problem::internal().into_response(),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "request list failed");
            problem::store_failure(&e, problem::SHUTTING_DOWN).into_response()
        }
    }
}

/// A row's status at `now`.
pub fn status_of(r: &RequestRow, now: time::OffsetDateTime) -> RequestStatus {
    let due = crate::clock::parse(&r.due_at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    info_request::status(r.state, due, now, r.clock_stopped)
}

pub fn summary(r: &RequestRow, now: time::OffsetDateTime) -> RequestSummary {
    RequestSummary {
        request_id: r.id.to_string(),
        status: status_of(r, now),
        requester: r.requester.to_string(),
        holder: r.holder.to_string(),
        purpose: r.purpose.clone(),
        urgency: r.urgency.clone(),
        received_at: r.received_at.clone(),
        due_at: r.due_at.clone(),
        due_date: r.due_date.clone(),
        request_url: format!("/v1/requests/{}", r.id),
    }
}

pub async fn show(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<RequestId>().ok()) else {
        return not_found();
    };
    match view(&app, id, &peer.org).await {
        Ok(Some(v)) => match serde_json::to_string(&v) {
            Ok(b) => json(StatusCode::OK, b),
            Err(_) => Problem::internal().into_response(),
        },
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(request_id = %id, error = %e, "request lookup failed");
            problem::store_failure(&e, problem::SHUTTING_DOWN).into_response()
        }
    }
}

/// The request `id` as `org` sees it, if it is one of its two parties.
pub async fn view(
    app: &App,
    id: RequestId,
    org: &OrgId,
) -> Result<Option<RequestView>, StoreError> {
    let org = org.to_string();
    let found = app
        .store
        .read(move |c| {
            let Some(row) = stored::get(c, id, &org)? else {
                return Ok(None);
            };
            let links = stored::links(c, id)?;
            let clarifications = stored::clarifications(c, id)?;
            Ok(Some((row, links, clarifications)))
        })
        .await?;
    let Some((row, links, clarifications)) = found else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<InfoRequestRecord>(&row.record) else {
        tracing::error!(request_id = %id, "a request's record does not read");
        return Ok(None);
    };
    let subject_refs = row.sealed_refs.as_deref().and_then(|sealed| {
        let mut json = Vec::new();
        crate::seal::open(sealed, app.spool_key.identity())
            .ok()?
            .read_to_end(&mut json)
            .ok()?;
        serde_json::from_slice::<Vec<String>>(&json).ok()
    });
    Ok(Some(RequestView {
        request_id: id.to_string(),
        status: status_of(&row, crate::clock::now()),
        requester: row.requester.to_string(),
        holder: row.holder.to_string(),
        purpose: row.purpose,
        lawful_basis: record.lawful_basis,
        requested: record.requested,
        grounds: record.grounds,
        urgency: record.urgency.status,
        urgency_reason: record.urgency.reason,
        practitioner: record.practitioner,
        subject_refs,
        agreement: record.agreement,
        received_at: row.received_at,
        due_at: row.due_at,
        due_date: row.due_date,
        first_answer_at: row.first_answer_at,
        closed_at: row.closed_at,
        answers: links
            .into_iter()
            .map(|l| RequestAnswer {
                id: l.transfer_id.to_string(),
                kind: l.kind,
                answer: match l.answer.as_deref() {
                    Some("in_full") => Some(AnswerExtent::InFull),
                    Some("in_part") => Some(AnswerExtent::InPart),
                    _ => None,
                },
                at: l.at,
            })
            .collect(),
        clarifications: clarifications
            .into_iter()
            .map(|(kind, at, text)| Clarification {
                kind: if kind == "request_clarified" {
                    "given".into()
                } else {
                    "asked".into()
                },
                at,
                text,
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/requests/{id}/withdraw

pub async fn withdraw(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<RequestId>().ok()) else {
        return not_found();
    };
    // No body is a withdrawal without a reason; a body must be JSON (a reason is never
    // silently dropped).
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let empty = length == Some(0)
        || (length.is_none()
            && !headers.contains_key(axum::http::header::CONTENT_TYPE)
            && !headers.contains_key(axum::http::header::TRANSFER_ENCODING));
    let bytes = if empty {
        Vec::new()
    } else {
        match json_body(&app, &headers, body).await {
            Ok(b) => b,
            Err(p) => return p.into_response(),
        }
    };
    withdraw_request(&app, &peer.into(), id, &bytes).await
}

/// What the write job found.
enum Withdrawal {
    Done,
    NotFound,
    NotRequester,
    Closed(RequestState),
}

/// Withdraws a request its requester made: the API's `POST /v1/requests/{id}/withdraw` and the
/// web pages both come here. 200 with [`RequestWithdrawn`], or a problem.
pub async fn withdraw_request(
    app: &App,
    peer: &Submitter,
    id: RequestId,
    bytes: &[u8],
) -> Response {
    let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<RawWithdrawal>(bytes) {
            Ok(w) => w
                .reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
            Err(e) => {
                return Problem::invalid_body(
                    ProblemCode::InvalidInfoRequest,
                    "withdrawal",
                    &[FieldError {
                        code: FieldProblem::InvalidValue,
                        field: "reason".into(),
                        message: format!("the body must be {{\"reason\": \"...\"}} or empty: {e}"),
                    }],
                )
                .into_response();
            }
        }
    };
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > limits::REASON)
    {
        return Problem::invalid_body(
            ProblemCode::InvalidInfoRequest,
            "withdrawal",
            &[FieldError {
                code: FieldProblem::TooLong,
                field: "reason".into(),
                message: format!("`reason` is longer than {} characters", limits::REASON),
            }],
        )
        .into_response();
    }
    let at = crate::clock::stamp(crate::clock::now());
    let (who, at_job, org) = (sender(peer), at.clone(), peer.org.to_string());
    let written = app
        .store
        .write(false, move |tx| {
            let Some(row) = stored::get(tx.db(), id, &org)? else {
                return Ok(Withdrawal::NotFound);
            };
            if row.requester.as_str() != org {
                return Ok(Withdrawal::NotRequester);
            }
            let change = Happening {
                event: RequestEvent::Withdrawn,
                transfer: None,
                sender: who,
                at: &at_job,
                reason,
                calendar: None,
            };
            match apply_in_tx(tx, &row, change)? {
                Ok(_) => Ok(Withdrawal::Done),
                Err(closed) => Ok(Withdrawal::Closed(closed)),
            }
        })
        .await;
    match written {
        Ok(Withdrawal::Done) => {
            tracing::info!(request_id = %id, requester = %peer.org, "request for information withdrawn");
            let answer = RequestWithdrawn {
                request_id: id.to_string(),
                status: "withdrawn".into(),
                withdrawn_at: at,
            };
            match serde_json::to_string(&answer) {
                Ok(b) => json(StatusCode::OK, b),
                Err(_) => Problem::internal().into_response(),
            }
        }
        Ok(Withdrawal::NotFound) => not_found(),
        Ok(Withdrawal::NotRequester) => Problem::new(
            ProblemCode::NotTheRequester,
            "Only the organisation that made a request may withdraw it. To decline it, record a decision not to share that names it.",
        )
        .with_field("id")
        .into_response(),
        Ok(Withdrawal::Closed(state)) => closed(state),
        Err(e) => unavailable(&e, "could not withdraw a request"),
    }
}

// ---------------------------------------------------------------------------------------------
// POST /v1/requests/{id}/clarification

pub async fn clarification(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<RequestId>().ok()) else {
        return not_found();
    };
    let bytes = match json_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    clarify(&app, &peer.into(), id, &bytes).await
}

/// What the write job found.
enum Clarified {
    Done(Box<RequestRow>),
    NotFound,
    Closed(RequestState),
    OutOfTurn(&'static str),
}

/// A clarification asked for by the holder, or given by the requester (which side the caller
/// is on says which): the API's `POST /v1/requests/{id}/clarification` and the web pages both
/// come here. Asked, it waits for the requester (and the clock stops, when `[requests]
/// clarification` is `restarts`); given, the clock restarts in full from the day it arrives.
/// 200 with [`ClarificationRecorded`], or a problem.
pub async fn clarify(app: &App, peer: &Submitter, id: RequestId, bytes: &[u8]) -> Response {
    let text = match serde_json::from_slice::<RawClarification>(bytes) {
        Ok(c) => c
            .text
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        Err(e) => {
            return Problem::new(
                ProblemCode::MalformedRequest,
                format!("The body must be {{\"text\": \"...\"}}: {e}."),
            )
            .into_response();
        }
    };
    let problem = match &text {
        None => Some((
            FieldProblem::MissingField,
            "`text` is required: what needs clarifying, or the clarification".to_owned(),
        )),
        Some(t) if t.chars().count() > limits::REASON => Some((
            FieldProblem::TooLong,
            format!("`text` is longer than {} characters", limits::REASON),
        )),
        Some(_) => None,
    };
    if let Some((code, message)) = problem {
        return Problem::invalid_body(
            ProblemCode::InvalidInfoRequest,
            "clarification",
            &[FieldError {
                code,
                field: "text".into(),
                message,
            }],
        )
        .into_response();
    }
    let org = peer.org.to_string();
    // The clock a clarification given restarts: the request's agreement's, read first.
    let found = {
        let org = org.clone();
        app.store.read(move |c| stored::get(c, id, &org)).await
    };
    let row = match found {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e, "request lookup failed"),
    };
    let agreement = serde_json::from_slice::<InfoRequestRecord>(&row.record)
        .ok()
        .and_then(|r| r.agreement);
    let per_agreement = app
        .registry
        .current()
        .agreements()
        .iter()
        .find(|a| Some(a.id.as_str()) == agreement.as_deref())
        .and_then(|a| a.answer_within_working_days);
    let now = crate::clock::now();
    let at = crate::clock::stamp(now);
    let stops = app.requests.clarification.stops();
    let restarted = clock(app, per_agreement).due_by_level(now, row.urgency == "urgent");
    let restarted = (
        crate::clock::stamp(restarted.at),
        restarted.date.to_string(),
    );
    let who = sender(peer);
    let at_job = at.clone();
    let written = app
        .store
        .write(false, move |tx| {
            let Some(row) = stored::get(tx.db(), id, &org)? else {
                return Ok(Clarified::NotFound);
            };
            if row.state.is_closed() {
                return Ok(Clarified::Closed(row.state));
            }
            let asking = row.holder.as_str() == org;
            let (kind, due) = match (asking, row.clarification_asked_at.is_some()) {
                (true, true) => {
                    return Ok(Clarified::OutOfTurn(
                        "A clarification is already awaited from the requester.",
                    ));
                }
                (false, false) => {
                    return Ok(Clarified::OutOfTurn(
                        "No clarification was asked for: there is nothing to answer.",
                    ));
                }
                // Once overdue, asking cannot stop the clock and wipe out the lateness.
                (true, false)
                    if stops
                        && crate::clock::parse(&row.due_at).is_some_and(|due| now > due) =>
                {
                    return Ok(Clarified::OutOfTurn(
                        "The request is overdue: a clarification can no longer stop its clock. Answer it, or decline it with your reasons, and ask the requester directly.",
                    ));
                }
                (true, false) => (RecordKind::RequestClarificationAsked, None),
                // Given: the clock restarts in full, if it stopped for it.
                (false, true) => (
                    RecordKind::RequestClarified,
                    row.clock_stopped.then(|| restarted.clone()),
                ),
            };
            let record = RequestEventRecord {
                kind,
                request_id: id,
                at: at_job.clone(),
                sender: who,
                requester: row.requester.clone(),
                holder: row.holder.clone(),
                transfer_id: None,
                answer: None,
                state: row.state.as_str().to_owned(),
                reason: None,
                clarification: text,
                due_at: due.as_ref().map(|d| d.0.clone()),
            };
            tx.append(&LogEntry::new(&record)?)?;
            stored::clarification(
                tx.db(),
                id,
                asking.then_some((at_job.as_str(), stops)),
                due.as_ref().map(|d| (d.0.as_str(), d.1.as_str())),
            )?;
            Ok(match stored::get(tx.db(), id, &org)? {
                Some(after) => Clarified::Done(Box::new(after)),
                None => Clarified::NotFound,
            })
        })
        .await;
    match written {
        Ok(Clarified::Done(after)) => {
            let given = after.clarification_asked_at.is_none();
            tracing::info!(request_id = %id, by = %peer.org, given, "request clarification recorded");
            let answer = ClarificationRecorded {
                request_id: id.to_string(),
                kind: if given { "given" } else { "asked" }.into(),
                status: status_of(&after, now),
                due_at: after.due_at,
                due_date: after.due_date,
            };
            match serde_json::to_string(&answer) {
                Ok(b) => json(StatusCode::OK, b),
                Err(_) => Problem::internal().into_response(),
            }
        }
        Ok(Clarified::NotFound) => not_found(),
        Ok(Clarified::Closed(state)) => closed(state),
        Ok(Clarified::OutOfTurn(why)) => Problem::new(ProblemCode::ClarificationOutOfTurn, why)
            .with_field("id")
            .into_response(),
        Err(e) => unavailable(&e, "could not record a clarification"),
    }
}

fn closed(state: RequestState) -> Response {
    Problem::new(
        ProblemCode::RequestClosed,
        format!(
            "This request is {} already: nothing more can happen to it.",
            state.as_str().replace('_', " ")
        ),
    )
    .with_field("id")
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Answering and declining: the link from a share or a decision.

/// What a share or decision naming a request needs to know of it, checked before the share is
/// decided: the request was made to `sender` by one of `recipients`, and is not closed. On
/// success, fills in what was requested where the sender left it out. The errors are field
/// errors on `request.request_id` (a 422 like any other invalid field).
pub async fn link(
    app: &App,
    sender: &OrgId,
    recipients: &[OrgId],
    request: &mut Answering,
) -> Result<(), Result<FieldError, StoreError>> {
    let Some((id, _)) = request.answers else {
        return Ok(());
    };
    let org = sender.to_string();
    let row = app
        .store
        .read(move |c| stored::get(c, id, &org))
        .await
        .map_err(Err)?;
    let invalid = |message: String| {
        Err(Ok(FieldError {
            code: FieldProblem::InvalidValue,
            field: "request.request_id".into(),
            message,
        }))
    };
    let Some(row) = row.filter(|r| r.holder == *sender) else {
        return invalid(
            "`request.request_id` is not a request for information made to your organisation"
                .into(),
        );
    };
    if !recipients.contains(&row.requester) {
        return invalid(format!(
            "`request.request_id` was made by `{}`: name it among the recipients",
            row.requester
        ));
    }
    if row.state.is_closed() {
        return invalid(format!(
            "`request.request_id` names a request that is {} already",
            row.state.as_str().replace('_', " ")
        ));
    }
    if request.requested.is_none() {
        let record = serde_json::from_slice::<InfoRequestRecord>(&row.record)
            .map_err(|e| Err(StoreError::from(e)))?;
        request.requested_or(record.requested);
    }
    Ok(())
}

/// The change a share or decision makes to the request it names, in its own write job: the
/// request's new state, its link, and a record of the change. A request closed meanwhile (by a
/// withdrawal committed a moment before) is left as it is: the share or decision still names
/// it in its own record.
pub fn answer_in_tx(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    sender: SenderRecord,
    request: Option<(RequestId, Option<AnswerExtent>)>,
    transfer: TransferId,
    at: &str,
) -> Result<(), StoreError> {
    let Some((id, extent)) = request else {
        return Ok(());
    };
    let Some(row) = stored::get(tx.db(), id, sender.org.as_str())? else {
        return Ok(());
    };
    let event = match extent {
        Some(e) => RequestEvent::Answered(e),
        None => RequestEvent::Declined,
    };
    let change = Happening {
        event,
        transfer: Some(transfer),
        sender,
        at,
        reason: None,
        calendar: Some(calendar),
    };
    if let Err(closed) = apply_in_tx(tx, &row, change)? {
        tracing::info!(request_id = %id, transfer_id = %transfer, state = closed.as_str(), "a share or decision names a request closed meanwhile; the request is left as it was");
    }
    Ok(())
}

/// Applies `event` to the request `row` in the write job `tx`: its record and its change, or
/// the state it was closed in.
/// What happens to a request, by whom and when.
struct Happening<'a> {
    event: RequestEvent,
    /// The share or decision that made it happen.
    transfer: Option<TransferId>,
    sender: SenderRecord,
    at: &'a str,
    /// Why (a withdrawal's reason).
    reason: Option<String>,
    /// The calendar the working days taken are counted in, for an answer or a decline.
    calendar: Option<&'a Calendar>,
}

fn apply_in_tx(
    tx: &mut Tx<'_>,
    row: &RequestRow,
    h: Happening<'_>,
) -> Result<Result<RequestState, RequestState>, StoreError> {
    let Happening {
        event,
        transfer,
        sender,
        at,
        reason,
        calendar,
    } = h;
    let state = match info_request::apply(row.state, event) {
        Ok(s) => s,
        Err(closed) => return Ok(Err(closed.0)),
    };
    // How long the holder took, when it has finished answering (a withdrawal is not an answer).
    let working_days_taken =
        match (state, calendar) {
            (RequestState::Answered | RequestState::Declined, Some(cal)) => {
                match (
                    crate::clock::parse(&row.received_at),
                    crate::clock::parse(at),
                ) {
                    (Some(received), Some(answered)) => Some(cal.working_days_between(
                        calendar::uk_day(received),
                        calendar::uk_day(answered),
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
    let (kind, link) = match event {
        RequestEvent::Answered(extent) => (
            RecordKind::RequestAnswered,
            transfer.map(|t| (t, "answer", Some(extent.as_str()))),
        ),
        RequestEvent::Declined => (
            RecordKind::RequestDeclined,
            transfer.map(|t| (t, "decline", None)),
        ),
        RequestEvent::Withdrawn => (RecordKind::RequestWithdrawn, None),
    };
    let record = RequestEventRecord {
        kind,
        request_id: row.id,
        at: at.to_owned(),
        sender,
        requester: row.requester.clone(),
        holder: row.holder.clone(),
        transfer_id: transfer,
        answer: match event {
            RequestEvent::Answered(e) => Some(e.as_str().to_owned()),
            _ => None,
        },
        state: state.as_str().to_owned(),
        reason,
        clarification: None,
        due_at: None,
    };
    tx.append(&LogEntry::new(&record)?)?;
    stored::change(
        tx.db(),
        &Change {
            id: row.id,
            state,
            at,
            link,
            working_days_taken,
        },
    )?;
    Ok(Ok(state))
}
