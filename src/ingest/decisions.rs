//! Decisions recorded without a payload: `POST /v1/decisions` (a practitioner's decision not to
//! share, with its reasons), `GET /v1/decisions/{id}` (that record, for the organisation that
//! decided), and `POST /v1/transfers/{id}/rationale` (the justification of an urgent share,
//! added by its sender after the share). Also the lookup a correction needs before its policy
//! decision (see `crate::store::decisions::corrected`).
//!
//! The bodies are small JSON documents, validated by [`crate::domain::decision`]; each decision
//! is appended to the transfer log by the store's single writer, and answered only once durable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::App;
use super::caller::OrgCaller;
use super::problem::{self, Problem, ProblemCode};
use super::routes::Submitter;
use crate::domain::decision::{self, DecisionContext, DecisionError, Decline, Practitioner};
use crate::domain::ids::TransferId;
pub use crate::log::{DeclinedRecord, RationaleRecord};
use crate::log::{LogEntry, PractitionerRecord, RecordKind, RequestRecord, SenderRecord};
use crate::store::{IdempotencyClaim, IdempotentAnswer, StoreError, decisions};

// ---------------------------------------------------------------------------------------------
// What is recorded and answered.

/// The answer to a recorded decision not to share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Declined {
    /// The decision id (a UUID v7, like a transfer id): the transfer log files the
    /// `decision_declined` record under it.
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub decision_id: String,
    #[schemars(extend("const" = "declined"))]
    pub status: String,
    /// When the decision was recorded (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub recorded_at: String,
    /// The organisations sharing with was considered.
    #[schemars(length(min = 1))]
    pub recipients: Vec<String>,
    /// Where the deciding organisation reads the record back: `/v1/decisions/{id}`.
    pub decision_url: String,
}

/// The answer to a recorded rationale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RationaleRecorded {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub transfer_id: String,
    #[schemars(extend("const" = "rationale_recorded"))]
    pub status: String,
    /// When the rationale was recorded (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub recorded_at: String,
}

/// A decision not to share, as recorded.
pub fn declined_record(
    id: TransferId,
    at: &str,
    sender: SenderRecord,
    d: &Decline,
    key: &crate::domain::subject::SubjectKey,
    idempotency_key: Option<String>,
) -> DeclinedRecord {
    DeclinedRecord {
        kind: RecordKind::DecisionDeclined,
        decision_id: id,
        at: at.to_owned(),
        sender,
        recipients: d.recipients.clone(),
        purpose: d.purpose.as_ref().map(ToString::to_string),
        reasons: d.reasons.expose().to_owned(),
        practitioner: practitioner_record(&d.practitioner),
        // A decision declines a request whole: no extent is recorded.
        request: d.request.as_ref().map(|r| RequestRecord {
            answer: None,
            ..RequestRecord::of(r)
        }),
        data_categories: d.data_categories.iter().map(|c| c.to_string()).collect(),
        subject_ref_hashes: d.subject_refs.iter().map(|s| s.hash(key)).collect(),
        idempotency_key,
    }
}

fn practitioner_record(p: &Practitioner) -> PractitionerRecord {
    PractitionerRecord {
        name: p.name.clone(),
        role: p.role.clone(),
        contact: p.contact.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a small JSON body.

/// The Idempotency-Key header, if any: 1 to 255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Box<Problem>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Box::new(
            Problem::new(
                ProblemCode::InvalidIdempotencyKey,
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
            )
            .with_field("Idempotency-Key"),
        ));
    }
    Ok(Some(s.to_owned()))
}

/// Reads a JSON body of at most `limits.max_envelope_bytes`, giving up on a body that stalls
/// for longer than the idle timeout (a slow client must not hold a connection permit forever).
// Boxed: a refusal is rare, and the Ok path should stay small.
pub(super) async fn json_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, Box<Problem>> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && !media.ends_with("+json") {
        return Err(Box::new(Problem::new(
            ProblemCode::UnsupportedMediaType,
            "Send the body as JSON, with Content-Type: application/json.",
        )));
    }
    let max = app.limits.max_envelope_bytes;
    let too_large = || {
        Box::new(Problem::new(
            ProblemCode::BodyTooLarge,
            format!(
                "The body is larger than this gateway accepts ({max} bytes). Nothing was recorded."
            ),
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(app.limits.idle_timeout, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                if out.len() + chunk.len() > max {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(_))) => {
                return Err(Box::new(Problem::new(
                    ProblemCode::MalformedRequest,
                    "The request ended before the end of its body. Nothing was recorded.",
                )));
            }
            Err(_) => {
                return Err(Box::new(Problem::new(
                    ProblemCode::RequestTimeout,
                    "The body made no progress and was abandoned. Nothing was recorded.",
                )));
            }
        }
    }
}

/// A body that is not JSON (400) or not a valid document (422 with `code` and every field).
fn body_problem(e: DecisionError, code: ProblemCode, what: &str) -> Problem {
    match e {
        DecisionError::Malformed(msg) => Problem::new(
            ProblemCode::MalformedRequest,
            format!("The body is not valid JSON: {msg}."),
        ),
        DecisionError::Invalid(errors) => Problem::invalid_body(code, what, &errors),
    }
}

pub(super) fn json(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn sender(who: &Submitter) -> SenderRecord {
    SenderRecord {
        org: who.org.clone(),
        certificate: who.certificate.clone(),
        person: who.person.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// POST /v1/decisions

/// A recorded decision's (or request's) answer, first time or replayed.
pub(super) fn created(body: String, url: &str, replayed: bool) -> Response {
    let mut r = json(StatusCode::CREATED, body);
    if let Ok(loc) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// An earlier answer to the same Idempotency-Key: the same body gets it again; another body is
/// refused. A 201's `Location` is its answer's member `url_member`; another remembered answer (a
/// request's 403 refusal) is replayed as it was.
pub(super) fn replay(
    answer: &IdempotentAnswer,
    request_sha256: &str,
    url_member: &str,
) -> Response {
    if answer.request_sha256 != request_sha256 {
        return Problem::new(ProblemCode::IdempotencyKeyReused,
            "This Idempotency-Key was already used for a different request. Use a new key for a new one.",
        )
        .with_field("Idempotency-Key")
        .into_response();
    }
    if answer.status != 201 {
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut r = json(status, answer.response.clone());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return r;
    }
    let url = serde_json::from_str::<serde_json::Value>(&answer.response)
        .ok()
        .and_then(|v| v.get(url_member)?.as_str().map(str::to_owned))
        .unwrap_or_default();
    created(answer.response.clone(), &url, true)
}

/// The answer to give now if `key` already has one from `peer` (replayed, or refused for a
/// different body), or `None` to go on; looked up before the body is even parsed.
pub(super) async fn earlier_answer(
    app: &App,
    peer: &Submitter,
    key: &Option<String>,
    request_sha256: &str,
    url_member: &str,
) -> Option<Response> {
    let (org, k) = (peer.org.clone(), key.clone()?);
    match app
        .store
        .read(move |c| crate::store::idempotent_answer(c, &org, &k))
        .await
    {
        Ok(Some(answer)) => Some(replay(&answer, request_sha256, url_member)),
        Ok(None) => None,
        Err(e) => Some(unavailable(&e, "idempotency lookup failed")),
    }
}

pub(super) fn unavailable(e: &StoreError, what: &str) -> Response {
    if matches!(e, StoreError::Closed) {
        tracing::warn!("{what}: the store is closed (shutting down)");
    } else {
        tracing::error!(error = %e, "{what}");
    }
    problem::store_failure(
        e,
        "The gateway is shutting down and recorded nothing from this request. Retry shortly (with the same Idempotency-Key).",
    )
    .into_response()
}

pub async fn decline(
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
    record_decline(&app, &peer.into(), key, bytes).await
}

/// Validates and records a decision not to share: the API's `POST /v1/decisions` and the web
/// pages' "record a decision not to share" both come here. 201 with [`Declined`], or a problem.
pub async fn record_decline(
    app: &App,
    peer: &Submitter,
    key: Option<String>,
    bytes: Vec<u8>,
) -> Response {
    let request_sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(r) = earlier_answer(app, peer, &key, &request_sha256, "decision_url").await {
        return r;
    }
    let registry = app.registry.current();
    let cx = DecisionContext {
        decider: &peer.org,
        registry: &registry,
    };
    let parsed = decision::parse_decision(&bytes, &cx);
    drop(bytes);
    let mut declined = match parsed {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(decider = %peer.org, "decision not to share invalid; nothing recorded");
            return body_problem(e, ProblemCode::InvalidDecision, "decision").into_response();
        }
    };
    // A decision that declines a request made through this gateway.
    if let Some(r) = declined.request.as_mut() {
        match super::requests::link(app, &peer.org, &declined.recipients, r).await {
            Ok(()) => {}
            Err(Ok(error)) => {
                tracing::info!(decider = %peer.org, "decision not to share names a request it cannot decline; nothing recorded");
                return Problem::invalid_body(ProblemCode::InvalidDecision, "decision", &[error])
                    .into_response();
            }
            Err(Err(e)) => return unavailable(&e, "request lookup failed"),
        }
    }
    let declines = declined
        .request
        .as_ref()
        .and_then(|r| r.answers)
        .map(|(rid, _)| (rid, None));

    let id = TransferId::from_uuid(uuid::Uuid::now_v7());
    let at = crate::clock::stamp(crate::clock::now());
    let record = declined_record(
        id,
        &at,
        sender(peer),
        &declined,
        &app.subject_key,
        key.clone(),
    );
    let answer = Declined {
        decision_id: id.to_string(),
        status: "declined".into(),
        recorded_at: at.clone(),
        recipients: declined
            .recipients
            .iter()
            .map(ToString::to_string)
            .collect(),
        decision_url: format!("/v1/decisions/{id}"),
    };
    let (entry, body) = match (LogEntry::new(&record), serde_json::to_string(&answer)) {
        (Ok(e), Ok(b)) => (e, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(decision_id = %id, error = %e, "could not encode a decision");
            return Problem::internal().into_response();
        }
    };
    let claim = key.map(|key| IdempotencyClaim {
        sender: peer.org.clone(),
        key,
        request_sha256: request_sha256.clone(),
        at: at.clone(),
    });
    let stored = body.clone();
    let (who, settings) = (sender(peer), app.requests.clone());
    let written = app
        .store
        .write(false, move |tx| {
            // Two identical requests may race past the lookup above: the first to commit wins.
            if let Some(c) = &claim
                && let Some(previous) = tx.claim(c, 201, stored)?
            {
                return Ok(Some(previous));
            }
            tx.append(&entry)?;
            super::requests::answer_in_tx(tx, &settings.calendar, who, declines, id, &at)?;
            Ok(None)
        })
        .await;
    match written {
        Ok(None) => {
            tracing::info!(decision_id = %id, decider = %peer.org, recipients = answer.recipients.len(), "decision not to share recorded");
            created(body, &answer.decision_url, false)
        }
        Ok(Some(previous)) => replay(&previous, &request_sha256, "decision_url"),
        Err(e) => unavailable(&e, "could not record a decision not to share"),
    }
}

// ---------------------------------------------------------------------------------------------
// GET /v1/decisions/{id}

pub async fn show(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let not_found = || {
        Problem::new(
            ProblemCode::DecisionNotFound,
            "No decision with this id was recorded by your organisation.",
        )
        .with_field("id")
        .into_response()
    };
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<TransferId>().ok()) else {
        return not_found();
    };
    let (key, org) = (id.to_string(), peer.org.to_string());
    // Only the deciding organisation may read its decision; to anyone else it does not exist.
    let found = app
        .store
        .read(move |c| decisions::declined_body(c, &key, &org))
        .await;
    match found {
        Ok(Some(body)) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(decision_id = %id, error = %e, "decision lookup failed");
            problem::store_failure(&e, problem::SHUTTING_DOWN).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// POST /v1/transfers/{id}/rationale

/// What the write job found.
enum Rationale {
    Recorded,
    NotFound,
    NotUrgent,
    AlreadyRecorded,
}

pub async fn rationale(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<TransferId>().ok()) else {
        return rationale_not_found();
    };
    // Checked before the body is even read.
    if let Err(r) = sent_by(&app, id, &peer.org).await {
        return *r;
    }
    let bytes = match json_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    record_rationale(&app, &peer.into(), id, &bytes).await
}

fn rationale_not_found() -> Response {
    Problem::new(
        ProblemCode::TransferNotFound,
        "No accepted transfer with this id was sent by your organisation.",
    )
    .with_field("id")
    .into_response()
}

/// Only the sender may add the rationale; to anyone else the transfer does not exist (as for
/// `GET /v1/transfers/{id}`).
async fn sent_by(
    app: &App,
    id: TransferId,
    org: &crate::domain::ids::OrgId,
) -> Result<(), Box<Response>> {
    let (key, org) = (id.to_string(), org.to_string());
    match app
        .store
        .read(move |c| decisions::sent_by(c, &key, &org))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Box::new(rationale_not_found())),
        Err(e) => {
            tracing::warn!(transfer_id = %id, error = %e, "transfer lookup failed");
            Err(Box::new(
                problem::store_failure(&e, problem::SHUTTING_DOWN).into_response(),
            ))
        }
    }
}

/// Records the rationale of an urgent share its sender sent: the API's
/// `POST /v1/transfers/{id}/rationale` and the web pages both come here; it checks that the
/// caller sent the transfer. 200 with [`RationaleRecorded`], or a problem.
pub async fn record_rationale(
    app: &App,
    peer: &Submitter,
    id: TransferId,
    bytes: &[u8],
) -> Response {
    if let Err(r) = sent_by(app, id, &peer.org).await {
        return *r;
    }
    let rationale = match decision::parse_rationale(bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(transfer_id = %id, sender = %peer.org, "rationale invalid; nothing recorded");
            return body_problem(e, ProblemCode::InvalidRationale, "rationale").into_response();
        }
    };
    let at = crate::clock::stamp(crate::clock::now());
    let record = RationaleRecord {
        kind: RecordKind::RationaleAdded,
        transfer_id: id,
        at: at.clone(),
        sender: sender(peer),
        practitioner: rationale.practitioner.as_ref().map(practitioner_record),
        justification: rationale.justification.expose().to_owned(),
    };
    let entry = match LogEntry::new(&record) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(transfer_id = %id, error = %e, "could not encode a rationale");
            return Problem::internal().into_response();
        }
    };
    let key = id.to_string();
    // Checked and changed in one write job: the single writer runs jobs one at a time, so two
    // rationales sent at once cannot both find the rationale pending.
    let written = app
        .store
        .write(false, move |tx| {
            let outcome = match decisions::share_rationale(tx.db(), &key)? {
                None => Rationale::NotFound,
                Some(share) if !share.urgent => Rationale::NotUrgent,
                Some(share) if !share.pending => Rationale::AlreadyRecorded,
                Some(_) => {
                    tx.append(&entry)?;
                    decisions::rationale_recorded(tx.db(), &key)?;
                    Rationale::Recorded
                }
            };
            Ok(outcome)
        })
        .await;
    match written {
        Ok(Rationale::Recorded) => {
            tracing::info!(transfer_id = %id, sender = %peer.org, "rationale of an urgent share recorded");
            let answer = RationaleRecorded {
                transfer_id: id.to_string(),
                status: "rationale_recorded".into(),
                recorded_at: at,
            };
            match serde_json::to_string(&answer) {
                Ok(b) => json(StatusCode::OK, b),
                Err(_) => Problem::internal().into_response(),
            }
        }
        Ok(Rationale::NotFound) => rationale_not_found(),
        Ok(Rationale::NotUrgent) => Problem::new(ProblemCode::TransferNotUrgent,
            "This transfer was not marked urgent: its justification was required, and recorded, when it was sent.",
        )
        .with_field("id")
        .into_response(),
        Ok(Rationale::AlreadyRecorded) => Problem::new(ProblemCode::RationaleAlreadyRecorded,
            "This transfer's rationale is already recorded (with the share, or added since). A record is never overwritten.",
        )
        .with_field("id")
        .into_response(),
        Err(e) => {
            if matches!(e, StoreError::Closed) {
                tracing::warn!(transfer_id = %id, "could not record a rationale: the store is closed");
            } else {
                tracing::error!(transfer_id = %id, error = %e, "could not record a rationale");
            }
            problem::store_failure(
                &e,
                "The gateway is shutting down and recorded nothing from this request. Retry shortly.",
            )
            .into_response()
        }
    }
}
