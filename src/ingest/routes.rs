//! The API handlers: `POST /v1/transfers` (accept, decide, seal, spool, record) and
//! `GET /v1/transfers/{id}`. The caller is already authenticated: the TLS layer put its
//! caller on the request (see `super::caller`), and no request without one reaches these handlers.
//!
//! A transfer with `correction_of` is a correction: before the policy decision, the transfer it
//! corrects is looked up, the correction is refused unless its sender sent that transfer or
//! originated its data, and every earlier recipient is added to its recipients, so that the
//! policy decides for all of them and the correction reaches everyone who had the inaccurate data.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::Instrument;

use super::App;
use super::caller::OrgCaller;
use super::problem::{self, Problem, ProblemCode};
use crate::domain::envelope::{
    self, Envelope, EnvelopeError, FieldError, FieldProblem, ParseContext,
};
use crate::domain::ids::TransferId;
use crate::domain::policy::{self, CorrectionDenied, Decision, Refusal};
use crate::log::{
    DecisionRecord, EnvelopeRecord, LogEntry, PayloadRecord, RecordKind, SenderRecord,
    TransferFailedRecord, TransferRecord,
};
use crate::metrics;
use crate::seal::{self, SealSummary};
use crate::store::payloads::Area;
use crate::store::upload::{Sealed, SpoolUpload, UploadError};
use crate::store::{
    IdempotencyClaim, IdempotentAnswer, NewDelivery, NewTransfer, StoreError, StoredPayload,
    payload_file_name,
};

/// The answer to an accepted transfer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Accepted {
    /// The transfer id (UUID v7).
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub transfer_id: String,
    #[schemars(extend("const" = "accepted"))]
    pub status: String,
    /// When the gateway received the request (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    /// Each recipient and the agreement that authorises the share with it.
    #[schemars(length(min = 1))]
    pub recipients: Vec<AcceptedRecipient>,
    /// What the gateway received, before sealing.
    pub payload: AcceptedPayload,
    /// Where to follow the delivery: `/v1/transfers/{id}`.
    pub status_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(inline)]
pub struct AcceptedRecipient {
    /// The recipient's organisation id.
    pub recipient: String,
    /// The id of the agreement that authorises the share.
    pub agreement: String,
}

/// What the gateway received, before sealing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(inline)]
pub struct AcceptedPayload {
    /// The payload size in bytes.
    #[schemars(with = "crate::domain::wire::Size")]
    pub size: u64,
    /// The SHA-256 of the payload, lower-case hex.
    #[schemars(with = "crate::domain::wire::Sha256Hex")]
    pub sha256: String,
}

/// How a request ended, when it did not end in 202.
enum Fail {
    /// The request is at fault: answer with this problem; record it in the transfer log as a
    /// rejection.
    Reject(Box<Problem>),
    /// The gateway's side failed after the request got its id (the disk, the store, a bug):
    /// answer with this problem and record a `transfer_failed` saying so.
    Failed(Box<Problem>),
    /// Answer with this without recording it (already recorded, or nothing was decided: e.g. a
    /// replay).
    Answer(Box<Response>),
}

impl Fail {
    fn answer(r: Response) -> Self {
        Fail::Answer(Box::new(r))
    }
}

impl From<Problem> for Fail {
    fn from(p: Problem) -> Self {
        Fail::Reject(Box::new(p))
    }
}

/// Who submits a transfer: an organisation's system, by its client certificate, or a person
/// signed in to the web pages on behalf of their organisation.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub org: crate::domain::ids::OrgId,
    /// The client certificate's fingerprint; empty for a person.
    pub certificate: String,
    /// The person's registered address, for a share from the web pages.
    pub person: Option<String>,
}

impl From<OrgCaller> for Submitter {
    fn from(c: OrgCaller) -> Self {
        Submitter {
            org: c.org,
            certificate: c.fingerprint.to_string(),
            person: None,
        }
    }
}

struct Request {
    app: Arc<App>,
    /// The registry as it was when the request arrived: one request is decided, recorded and
    /// checked against one configuration, even if a reload happens meanwhile.
    registry: Arc<crate::domain::registry::Registry>,
    peer: Submitter,
    id: TransferId,
    received: OffsetDateTime,
    at: String,
    idempotency_key: Option<String>,
    envelope_sha256: Option<String>,
}

fn internal(e: impl std::fmt::Display, what: &str, id: TransferId) -> Fail {
    tracing::error!(transfer_id = %id, error = %e, "{what}");
    metrics::transfer_error(500);
    Fail::Failed(Box::new(Problem::internal().with_transfer(id)))
}

/// A store failure: 503 while the gateway is shutting down (the client should retry, ideally
/// with its Idempotency-Key), 507 when the disk is full, 500 otherwise.
fn store_failure(e: StoreError, what: &str, id: TransferId) -> Fail {
    if matches!(e, StoreError::Closed) {
        tracing::warn!(transfer_id = %id, "{what}: the store is closed (shutting down)");
    } else {
        tracing::error!(transfer_id = %id, error = %e, "{what}");
    }
    let problem = problem::store_failure(
        &e,
        "The gateway is shutting down and accepted nothing from this request. Retry shortly with the same Idempotency-Key.",
    );
    metrics::transfer_error(problem.status);
    Fail::Failed(Box::new(problem.with_transfer(id)))
}

/// The upload could not be sealed into the spool: a full disk is 507 (temporary), anything else
/// an internal failure.
fn upload_failure(e: UploadError, id: TransferId) -> Fail {
    let full =
        matches!(&e, UploadError::Seal(seal::SealError::Io(io)) if crate::store::io_full(io));
    if full {
        tracing::warn!(transfer_id = %id, error = %e, "the disk filled during an upload; nothing was kept");
        metrics::transfer_error(507);
        Fail::Failed(Box::new(
            Problem::insufficient_storage().with_field("payload"),
        ))
    } else {
        internal(e, "sealing failed", id)
    }
}

/// The client went away or the connection failed mid-request: usually nobody is left to read
/// the answer, but if anyone is, it says what happened.
fn interrupted() -> Fail {
    metrics::transfer_rejected(400, ProblemCode::MalformedRequest.code());
    Fail::answer(
        Problem::new(
            ProblemCode::MalformedRequest,
            "The request ended before the end of the payload. Nothing was kept.",
        )
        .into_response(),
    )
}

pub async fn submit(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = OffsetDateTime::now_utc();
    let id = TransferId::from_uuid(uuid::Uuid::now_v7());
    // Everything logged while handling this request, here or in what it calls, carries the id.
    let span = tracing::info_span!("transfer", transfer_id = %id);
    submit_as(app, peer.into(), headers, Source::Api(body), id, received)
        .instrument(span)
        .await
}

/// A share from the web pages: `envelope` is the JSON the pages built from the person's
/// answers, and `payload` the form's file part, not yet read (the parts before it were the
/// answers). It goes through exactly what `POST /v1/transfers` does after reading its envelope
/// part (the idempotency key aside): the same decision, sealing, spooling and record, and the
/// same answer (202 with [`Accepted`], or a problem).
pub async fn submit_from_web(
    app: Arc<App>,
    person: Submitter,
    headers: HeaderMap,
    envelope: Vec<u8>,
    form: multer::Multipart<'static>,
    payload: multer::Field<'static>,
    room: super::Room,
) -> Response {
    let received = OffsetDateTime::now_utc();
    let id = TransferId::from_uuid(uuid::Uuid::now_v7());
    let span = tracing::info_span!("transfer", transfer_id = %id);
    submit_as(
        app,
        person,
        headers,
        Source::Web(Box::new(WebParts {
            envelope,
            form,
            payload,
            room,
        })),
        id,
        received,
    )
    .instrument(span)
    .await
}

/// Where a transfer's envelope and payload come from.
enum Source {
    /// `POST /v1/transfers`: a multipart body of `envelope` then `payload`.
    Api(Body),
    /// The web pages: the envelope they built, and the form's payload part.
    Web(Box<WebParts>),
}

struct WebParts {
    envelope: Vec<u8>,
    form: multer::Multipart<'static>,
    payload: multer::Field<'static>,
    /// Reserved before the form was read, kept until the upload is committed or refused.
    room: super::Room,
}

async fn submit_as(
    app: Arc<App>,
    peer: Submitter,
    headers: HeaderMap,
    body: Source,
    id: TransferId,
    received: OffsetDateTime,
) -> Response {
    let mut req = Request {
        registry: app.registry.current(),
        app,
        peer,
        id,
        received,
        at: crate::clock::stamp(received),
        idempotency_key: None,
        envelope_sha256: None,
    };
    match run(&mut req, &headers, body).await {
        Ok(resp) => resp,
        Err(Fail::Answer(resp)) => *resp,
        Err(Fail::Failed(problem)) => {
            // Nothing was accepted; the log says so, if it still can.
            match record_failure(&req, &problem).await {
                Ok(()) => {}
                Err(StoreError::Closed) => {}
                Err(e) => {
                    tracing::error!(transfer_id = %req.id, error = %e, code = %problem.code, "could not record a failed transfer request")
                }
            }
            (*problem).with_transfer(req.id).into_response()
        }
        Err(Fail::Reject(problem)) => {
            tracing::info!(transfer_id = %req.id, sender = %req.peer.org, status = problem.status, code = %problem.code, "transfer rejected");
            match record_rejection(&req, &problem).await {
                Ok(()) => {
                    metrics::transfer_rejected(problem.status, &problem.code);
                    (*problem).with_transfer(req.id).into_response()
                }
                Err(e) => {
                    store_failure(e, "could not record a rejection", req.id).into_response_fail()
                }
            }
        }
    }
}

impl Fail {
    /// The answer, for a failure met while recording something else (the record it would
    /// have written is the one that failed).
    fn into_response_fail(self) -> Response {
        match self {
            Fail::Answer(r) => *r,
            Fail::Reject(p) | Fail::Failed(p) => p.into_response(),
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Fail> {
    super::decisions::idempotency_key(headers).map_err(Fail::Reject)
}

fn multer_problem(e: multer::Error, limits: &crate::config::Limits) -> Fail {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } if field_name.as_deref() == Some("envelope") => {
            Problem::new(ProblemCode::EnvelopeTooLarge, format!("The envelope is larger than this gateway accepts ({} bytes).", limits.max_envelope_bytes)).with_field("envelope").into()
        }
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            Problem::new(ProblemCode::PayloadTooLarge, format!("The payload is larger than this gateway accepts ({} bytes). Nothing was kept.", limits.max_payload_bytes)).with_field("payload").into()
        }
        multer::Error::UnknownField { field_name } => Problem::new(ProblemCode::UnexpectedPart,
            format!("Unexpected multipart part `{}`: send exactly two parts, `envelope` then `payload`.", field_name.unwrap_or_default()),
        )
        .into(),
        // The connection failed or the client went away: nothing to answer, nothing decided.
        multer::Error::StreamReadFailed(_) => interrupted(),
        other => Problem::new(ProblemCode::MalformedRequest, format!("The multipart body could not be read: {other}.")).into(),
    }
}

async fn next_chunk(
    field: &mut multer::Field<'_>,
    req: &Request,
) -> Result<Option<bytes::Bytes>, Fail> {
    let limits = &req.app.limits;
    match tokio::time::timeout(limits.idle_timeout, field.chunk()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(multer_problem(e, limits)),
        Err(_) => {
            tracing::info!(transfer_id = %req.id, "upload stalled; abandoned");
            Err(Problem::new(
                ProblemCode::RequestTimeout,
                "The upload made no progress and was abandoned. Nothing was kept.",
            )
            .into())
        }
    }
}

async fn run(req: &mut Request, headers: &HeaderMap, body: Source) -> Result<Response, Fail> {
    let app = req.app.clone();
    // Before a byte of the body is read.
    if let Some(short) = super::storage_short(&app, headers) {
        metrics::transfer_error(507);
        let p = short.problem.with_field("payload");
        if short.recordable {
            return Err(Fail::Failed(Box::new(p)));
        }
        tracing::warn!(transfer_id = %req.id, "refusal not recorded: the disk is below half its reserve");
        return Err(Fail::answer(p.with_transfer(req.id).into_response()));
    }
    match body {
        Source::Api(body) => {
            // Room for what the upload will hold in memory, before its body is read; kept
            // until the upload is committed or refused. Not recorded when busy: nothing of the
            // request was read, and a client under load repeats it after Retry-After. (The web
            // pages reserve it themselves, before they read their form.)
            let sender = super::Sender::Organisation(req.peer.org.clone());
            let _room = match app
                .upload_memory
                .reserve(sender, super::declared_length(headers))
                .await
            {
                Ok(room) => room,
                Err(p) => {
                    metrics::transfer_error(503);
                    return Err(Fail::answer(p.into_response()));
                }
            };
            req.idempotency_key = idempotency_key(headers)?;
            let (envelope, multipart) = envelope_part(req, headers, body).await?;
            decide_and_seal(req, headers, envelope, multipart, None).await
        }
        Source::Web(parts) => {
            let WebParts {
                envelope,
                form,
                payload,
                room: _room,
            } = *parts;
            decide_and_seal(req, headers, envelope, form, Some(payload)).await
        }
    }
}

/// The API's multipart body, read up to the end of its envelope part.
async fn envelope_part(
    req: &Request,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, multer::Multipart<'static>), Fail> {
    let limits = &req.app.limits;

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        Problem::new(ProblemCode::UnsupportedMediaType, "Send the transfer as multipart/form-data with two parts: `envelope` (JSON) then `payload` (the file).")
    })?;
    let overhead = 64 * 1024;
    let max_total = limits
        .max_payload_bytes
        .saturating_add(limits.max_envelope_bytes as u64)
        .saturating_add(overhead);
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max_total
    {
        return Err(Problem::new(ProblemCode::PayloadTooLarge, format!("The request is larger than this gateway accepts ({} bytes of payload). Nothing was kept.", limits.max_payload_bytes)).with_field("payload").into());
    }
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["envelope", "payload"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(max_total)
                .for_field("envelope", limits.max_envelope_bytes as u64)
                .for_field("payload", limits.max_payload_bytes),
        );
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);

    // 1. The envelope part, first.
    let mut field = match multipart.next_field().await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(Problem::new(
                ProblemCode::EnvelopeMissing,
                "The request has no parts: send `envelope` (JSON) then `payload`.",
            )
            .with_field("envelope")
            .into());
        }
        Err(e) => return Err(multer_problem(e, limits)),
    };
    if field.name() != Some("envelope") {
        return Err(Problem::new(
            ProblemCode::EnvelopeMissing,
            "The first part must be `envelope` (JSON), followed by `payload`.",
        )
        .with_field("envelope")
        .into());
    }
    let mut envelope_bytes = Vec::new();
    while let Some(chunk) = next_chunk(&mut field, req).await? {
        envelope_bytes.extend_from_slice(&chunk);
    }
    drop(field);
    Ok((envelope_bytes, multipart))
}

/// Everything after the envelope is read: a repeat answered as before, the envelope parsed and
/// decided before a payload byte is read, then the payload (the next part, or `payload` when
/// the caller already found it) sealed into the spool, recorded and committed.
async fn decide_and_seal(
    req: &mut Request,
    headers: &HeaderMap,
    envelope_bytes: Vec<u8>,
    mut multipart: multer::Multipart<'static>,
    payload: Option<multer::Field<'static>>,
) -> Result<Response, Fail> {
    let app = req.app.clone();
    let limits = &app.limits;
    let envelope_sha256 = hex::encode(Sha256::digest(&envelope_bytes));
    req.envelope_sha256 = Some(envelope_sha256.clone());

    // 2. A repeat of an earlier request gets the earlier answer.
    if let Some(key) = req.idempotency_key.clone() {
        let sender = req.peer.org.clone();
        let found = app
            .store
            .read(move |c| crate::store::idempotent_answer(c, &sender, &key))
            .await
            .map_err(|e| store_failure(e, "idempotency lookup failed", req.id))?;
        if let Some(answer) = found {
            return Err(Fail::answer(replay(&answer, &envelope_sha256)));
        }
    }

    // 3. Parse and decide, before a single payload byte is read.
    let registry = req.registry.clone();
    let mut envelope = {
        let cx = ParseContext {
            sender: &req.peer.org,
            marking: &registry.marking,
            today: req.received.date(),
        };
        match envelope::parse_json(&envelope_bytes, &cx) {
            Ok(e) => e,
            Err(EnvelopeError::Malformed(msg)) => {
                return Err(Problem::new(
                    ProblemCode::EnvelopeNotJson,
                    format!("The envelope is not valid JSON: {msg}."),
                )
                .with_field("envelope")
                .into());
            }
            Err(EnvelopeError::Invalid(errors)) => {
                let problem = Problem::invalid(&errors);
                return Err(Fail::answer(record_invalid(req, problem, &errors).await));
            }
        }
    };
    drop(envelope_bytes);
    let named = envelope.recipients.len();
    if let Some(corrects) = envelope.correction_of {
        let key = corrects.to_string();
        let found = app
            .store
            .read(move |c| crate::store::decisions::corrected(c, &key))
            .await
            .map_err(|e| store_failure(e, "correction lookup failed", req.id))?;
        match policy::correction_recipients(&req.peer.org, &envelope.recipients, found.as_ref()) {
            Ok(all) => envelope.recipients = all,
            Err(CorrectionDenied::Unknown) => {
                let errors = [FieldError {
                    code: FieldProblem::InvalidValue,
                    field: "correction_of".into(),
                    message: "`correction_of` is not the id of a transfer this gateway accepted"
                        .into(),
                }];
                let problem = Problem::invalid(&errors);
                return Err(Fail::answer(record_invalid(req, problem, &errors).await));
            }
            Err(CorrectionDenied::NotPermitted) => {
                return Err(Fail::answer(
                    record_correction_refusal(req, &envelope, corrects).await,
                ));
            }
        }
    }
    // A share that answers a request made through this gateway: checked now, linked when it
    // commits.
    if let Some(answering) = envelope.request.as_mut() {
        match super::requests::link(&app, &req.peer.org, &envelope.recipients, answering).await {
            Ok(()) => {}
            Err(Ok(error)) => {
                let errors = [error];
                let problem = Problem::invalid(&errors);
                return Err(Fail::answer(record_invalid(req, problem, &errors).await));
            }
            Err(Err(e)) => return Err(store_failure(e, "request lookup failed", req.id)),
        }
    }
    let authorisations = match policy::decide(&registry, &req.peer.org, &envelope, req.received) {
        Decision::Accept(a) => a,
        Decision::Refuse(refusal) => {
            return Err(Fail::answer(
                record_refusal(req, &envelope, &refusal, named).await,
            ));
        }
    };

    // 4. The payload part, streamed through age into the spool.
    let next = match payload {
        Some(f) => Ok(Some(f)),
        None => multipart.next_field().await,
    };
    let mut field = match next {
        Ok(Some(f)) if f.name() == Some("payload") => f,
        Ok(Some(_)) => {
            return Err(Problem::new(
                ProblemCode::UnexpectedPart,
                "The second part must be `payload`.",
            )
            .with_field("payload")
            .into());
        }
        Ok(None) => {
            return Err(Problem::new(
                ProblemCode::PayloadMissing,
                "The request has an envelope but no `payload` part.",
            )
            .with_field("payload")
            .into());
        }
        Err(e) => return Err(multer_problem(e, limits)),
    };
    let part_file_name = field.file_name().map(str::to_owned);
    let part_content_type = field.content_type().map(ToString::to_string);
    let path = app.store.payload_path(req.id);
    let declared = super::declared_length(headers);
    let mut upload = SpoolUpload::start(path, app.spool_key.recipient().clone(), declared);
    let streamed: Result<(), Fail> = async {
        while let Some(chunk) = next_chunk(&mut field, req).await? {
            upload.write(chunk).await.map_err(|e| upload_failure(e, req.id))?;
        }
        drop(field);
        match multipart.next_field().await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(Problem::new(ProblemCode::UnexpectedPart, "Send exactly two parts, `envelope` then `payload`; nothing may follow the payload.").into()),
            Err(e) => Err(multer_problem(e, limits)),
        }
    }
    .await;
    if let Err(fail) = streamed {
        // The partial file is gone before the answer leaves: "nothing was kept" is true when said.
        upload.abort().await;
        return Err(fail);
    }
    let (summary, sealed) = match upload.finish().await {
        Ok(done) => done,
        Err(UploadError::Abandoned) => return Err(interrupted()),
        Err(e) => return Err(upload_failure(e, req.id)),
    };

    // 5. Record and commit; answer only once durable.
    accept(
        req,
        envelope,
        &authorisations,
        summary,
        sealed,
        part_file_name,
        part_content_type,
    )
    .await
}

fn replay(answer: &IdempotentAnswer, envelope_sha256: &str) -> Response {
    if answer.request_sha256 != envelope_sha256 {
        metrics::transfer_rejected(422, "idempotency_key_reused");
        let mut p = Problem::new(ProblemCode::IdempotencyKeyReused, "This Idempotency-Key was already used for a different envelope. Use a new key for a new transfer.").with_field("Idempotency-Key");
        p.title = "Idempotency key reused".into();
        return p.into_response();
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let ct = if status == StatusCode::ACCEPTED {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut resp = (status, answer.response.clone()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    if status == StatusCode::ACCEPTED
        && let Ok(accepted) = serde_json::from_str::<Accepted>(&answer.response)
        && let Ok(loc) = HeaderValue::from_str(&accepted.status_url)
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

impl Request {
    fn claim(&self) -> Option<IdempotencyClaim> {
        Some(IdempotencyClaim {
            sender: self.peer.org.clone(),
            key: self.idempotency_key.clone()?,
            request_sha256: self.envelope_sha256.clone()?,
            at: self.at.clone(),
        })
    }
}

fn sender(req: &Request) -> SenderRecord {
    SenderRecord {
        org: req.peer.org.clone(),
        certificate: req.peer.certificate.clone(),
        person: req.peer.person.clone(),
    }
}

/// A rejected request (malformed, too large, invalid) is recorded too: nothing was shared, and
/// the record says why.
async fn record_rejection(req: &Request, problem: &Problem) -> Result<(), StoreError> {
    let record = TransferRecord {
        kind: RecordKind::TransferRejected,
        transfer_id: req.id,
        at: req.at.clone(),
        sender: sender(req),
        envelope: None,
        payload: None,
        decision: DecisionRecord::rejected(&problem.code, &problem.detail, &[]),
        idempotency_key: req.idempotency_key.clone(),
    };
    let entry = LogEntry::new(&record)?;
    req.app
        .store
        .write_late(false, move |tx| tx.append(&entry).map(|_| ()))
        .await
}

/// A request that failed on the gateway's side after it got its id is recorded too: nothing was
/// accepted, and the record says why (`transfer_failed`).
async fn record_failure(req: &Request, problem: &Problem) -> Result<(), StoreError> {
    let record = TransferFailedRecord {
        kind: RecordKind::TransferFailed,
        transfer_id: req.id,
        at: crate::clock::stamp(crate::clock::now()),
        sender: sender(req),
        code: problem.code.clone(),
        detail: problem.detail.clone(),
    };
    let entry = LogEntry::new(&record)?;
    req.app
        .store
        .write_late(false, move |tx| tx.append(&entry).map(|_| ()))
        .await
}

/// Writes a decision record (and the idempotent answer) and returns the response to send.
/// `counted` runs once the record is committed (not for a replay of an earlier answer).
async fn record_decision(
    req: &Request,
    record: TransferRecord,
    status: u16,
    body: String,
    response: Response,
    counted: impl FnOnce(),
) -> Response {
    let entry = match LogEntry::new(&record) {
        Ok(e) => e,
        Err(e) => return internal(e, "could not encode a record", req.id).into_response_fail(),
    };
    let claim = req.claim();
    let written = req
        .app
        .store
        .write_late(false, move |tx| {
            if let Some(c) = &claim
                && let Some(previous) = tx.claim(c, status, body)?
            {
                return Ok(Some(previous));
            }
            tx.append(&entry)?;
            Ok(None)
        })
        .await;
    match written {
        Ok(None) => {
            counted();
            response
        }
        Ok(Some(previous)) => replay(
            &previous,
            req.envelope_sha256.as_deref().unwrap_or_default(),
        ),
        Err(e) => store_failure(e, "could not record a decision", req.id).into_response_fail(),
    }
}

async fn record_invalid(
    req: &Request,
    problem: Problem,
    errors: &[crate::domain::envelope::FieldError],
) -> Response {
    tracing::info!(transfer_id = %req.id, sender = %req.peer.org, fields = errors.len(), "envelope invalid");
    let problem = problem.with_transfer(req.id);
    let record = TransferRecord {
        kind: RecordKind::TransferRejected,
        transfer_id: req.id,
        at: req.at.clone(),
        sender: sender(req),
        envelope: None,
        payload: None,
        decision: DecisionRecord::rejected(&problem.code, "the envelope is invalid", errors),
        idempotency_key: req.idempotency_key.clone(),
    };
    let body = serde_json::to_string(&problem).unwrap_or_default();
    let code = problem.code.clone();
    record_decision(req, record, 422, body, problem.into_response(), || {
        metrics::transfer_rejected(422, &code);
    })
    .await
}

/// `named`: how many recipients the envelope itself named; a correction's recipients after
/// those are the corrected transfer's, and a refusal about one of them points at
/// `correction_of` (the client never wrote a `recipients[i]` for it).
async fn record_refusal(
    req: &Request,
    envelope: &Envelope,
    refusal: &Refusal,
    named: usize,
) -> Response {
    tracing::info!(transfer_id = %req.id, sender = %req.peer.org, code = refusal.code(), recipient = ?refusal.recipient, agreement = ?refusal.agreement, "transfer refused by policy");
    let index = refusal
        .recipient
        .as_ref()
        .and_then(|r| envelope.recipients.iter().position(|x| x == r));
    let mut problem = Problem::refused(refusal, index).with_transfer(req.id);
    if index.is_some_and(|i| i >= named) {
        problem.field = Some("correction_of".into());
    }
    let record = refused_record(req, envelope, DecisionRecord::refused(refusal));
    let body = serde_json::to_string(&problem).unwrap_or_default();
    record_decision(req, record, 403, body, problem.into_response(), || {
        metrics::transfer_refused(refusal.code());
    })
    .await
}

/// The record of a refusal: the envelope as submitted, and the decision.
fn refused_record(req: &Request, envelope: &Envelope, decision: DecisionRecord) -> TransferRecord {
    TransferRecord {
        kind: RecordKind::TransferRefused,
        transfer_id: req.id,
        at: req.at.clone(),
        sender: sender(req),
        envelope: Some(EnvelopeRecord::new(
            envelope,
            &req.registry.marking,
            &req.app.subject_key,
            req.received.date(),
        )),
        payload: None,
        decision,
        idempotency_key: req.idempotency_key.clone(),
    }
}

/// A correction from an organisation that neither sent the corrected transfer nor originated
/// its data: refused and recorded like a policy refusal, with the envelope as submitted (the
/// corrected transfer's recipients are not its business).
async fn record_correction_refusal(
    req: &Request,
    envelope: &Envelope,
    corrects: TransferId,
) -> Response {
    tracing::info!(transfer_id = %req.id, sender = %req.peer.org, corrects = %corrects, code = "correction_not_permitted", "correction refused");
    let problem = Problem::new(ProblemCode::CorrectionNotPermitted,
        "Only the organisation that sent a transfer, or the one that originated its data, may correct it. Nothing was shared.",
    )
    .with_field("correction_of")
    .with_transfer(req.id);
    let record = refused_record(
        req,
        envelope,
        DecisionRecord {
            outcome: "refused".into(),
            code: Some(problem.code.clone()),
            recipient: None,
            agreement: None,
            detail: Some(problem.detail.clone()),
            errors: Vec::new(),
            authorisations: Vec::new(),
        },
    );
    let body = serde_json::to_string(&problem).unwrap_or_default();
    record_decision(req, record, 403, body, problem.into_response(), || {
        metrics::transfer_refused("correction_not_permitted");
    })
    .await
}

/// A file name from the multipart header, if it is a plain name.
fn plain_file_name(name: Option<String>) -> Option<String> {
    let n = name?;
    let n = n
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    (!n.is_empty()
        && n != "."
        && n != ".."
        && n.chars().count() <= 255
        && !n.chars().any(char::is_control))
    .then_some(n)
}

#[allow(clippy::too_many_arguments)]
async fn accept(
    req: &Request,
    mut envelope: Envelope,
    authorisations: &[policy::Authorisation],
    summary: SealSummary,
    sealed: Sealed,
    part_file_name: Option<String>,
    part_content_type: Option<String>,
) -> Result<Response, Fail> {
    let app = &req.app;
    // Email carries only so much: say so now, not in five days' time as a dead delivery.
    let registry = req.registry.clone();
    let message_bytes = crate::deliver::email::message_bytes(summary.sealed_size);
    if message_bytes > app.max_email_bytes
        && let Some(a) = authorisations.iter().find(|a| {
            registry
                .organisation(&a.recipient)
                .and_then(|o| o.endpoint.as_ref())
                .is_some_and(|e| e.channel.kind() == "email")
        })
    {
        // `sealed` is dropped on return, deleting its spool file.
        return Err(Problem::new(ProblemCode::PayloadTooLargeForEmail,
            format!("`{}` receives by email, which carries messages of at most {} bytes, and this payload would make a message of {} bytes ({} bytes sealed, encoded for email). Nothing was kept; send it to that recipient separately, or as smaller parts.", a.recipient, app.max_email_bytes, message_bytes, summary.sealed_size),
        )
        .with_field("payload")
        .into());
    }
    if envelope.file_name.is_none() {
        envelope.file_name = plain_file_name(part_file_name);
    }
    if envelope.content_type.is_none() {
        envelope.content_type = part_content_type.filter(|c| c.len() <= 255 && c.contains('/'));
    }
    let registry = req.registry.clone();
    let env_record = EnvelopeRecord::new(
        &envelope,
        &registry.marking,
        &app.subject_key,
        req.received.date(),
    );
    // The recipient-facing envelope (with subject references in clear, as the recipient needs
    // them) is kept only sealed to the spool key, like the payload.
    let full = crate::domain::envelope::RecipientEnvelope::new(
        req.id,
        &req.peer.org,
        &envelope,
        &registry.marking,
        req.received,
    );
    let sealed_envelope = serde_json::to_vec(&full)
        .map_err(|e| internal(e, "could not encode the envelope", req.id))
        .and_then(|json| {
            seal::seal_bytes(&json, [app.spool_key.recipient() as &dyn age::Recipient])
                .map_err(|e| internal(e, "could not seal the envelope", req.id))
        })?;

    let accepted = Accepted {
        transfer_id: req.id.to_string(),
        status: "accepted".into(),
        received_at: req.at.clone(),
        recipients: authorisations
            .iter()
            .map(|a| AcceptedRecipient {
                recipient: a.recipient.to_string(),
                agreement: a.agreement.to_string(),
            })
            .collect(),
        payload: AcceptedPayload {
            size: summary.plaintext_size,
            sha256: hex::encode(summary.plaintext_sha256),
        },
        status_url: format!("/v1/transfers/{}", req.id),
    };
    let body = serde_json::to_string(&accepted)
        .map_err(|e| internal(e, "could not encode the answer", req.id))?;
    let record = TransferRecord {
        kind: RecordKind::TransferAccepted,
        transfer_id: req.id,
        at: req.at.clone(),
        sender: sender(req),
        envelope: Some(env_record),
        payload: Some(PayloadRecord::from(&summary)),
        decision: DecisionRecord::accepted(authorisations),
        idempotency_key: req.idempotency_key.clone(),
    };
    let entry =
        LogEntry::new(&record).map_err(|e| internal(e, "could not encode a record", req.id))?;
    // The spool file (if any) stays guarded until the commit: dropped without `keep`, it goes.
    let (payload, file) = match sealed {
        Sealed::File(f) => (StoredPayload::File(payload_file_name(req.id)), Some(f)),
        Sealed::Inline(bytes) => (StoredPayload::Inline(bytes), None),
    };
    let new = NewTransfer {
        id: req.id,
        sender: req.peer.org.clone(),
        received_at: req.at.clone(),
        purpose: envelope.purpose.to_string(),
        marking: envelope.marking.normalised(&registry.marking),
        payload,
        summary,
        sealed_envelope,
        deliveries: authorisations
            .iter()
            .map(|a| NewDelivery {
                recipient: a.recipient.clone(),
                agreement: a.agreement.clone(),
                // Policy admitted only recipients with an endpoint.
                channel: registry
                    .organisation(&a.recipient)
                    .and_then(|o| o.endpoint.as_ref())
                    .map_or("inbox", |e| e.channel.kind()),
            })
            .collect(),
    };
    let claim = req.claim();
    let stored_body = body.clone();
    let (who, id, at, settings) = (sender(req), req.id, req.at.clone(), app.requests.clone());
    let answers = envelope
        .request
        .as_ref()
        .and_then(|r| r.answers)
        .map(|(rid, extent)| (rid, Some(extent)));
    // A spool file's directory entry must be durable too: the writer fsyncs the directory.
    let new_file = file.is_some();
    // The commit, and keeping the spool file exactly when its record committed, run in a task
    // of their own: if the client goes away meanwhile, this handler is dropped, but the commit
    // (already queued) and the file it refers to stay together.
    let store = app.store.clone();
    let staged = file.as_ref().map(|_| payload_file_name(req.id));
    let commit = tokio::spawn(async move {
        // On a shared store the sealed file is copied into the database first, on its own.
        if let Some(f) = &staged {
            store.stage(Area::Spool, f).await?;
        }
        // A share that answers a request for information moves the request on from what it
        // reads of it: that commit runs alone among the nodes'. Any other runs alongside.
        let late = answers.is_none();
        let job = move |tx: &mut crate::store::Tx<'_>| {
            // Two identical requests may race past the first lookup: the first to commit wins.
            if let Some(c) = &claim
                && let Some(previous) = tx.claim(c, 202, stored_body)?
            {
                return Ok(Some(previous));
            }
            let seq = tx.append(&entry)?;
            tx.insert_transfer(&new, seq)?;
            super::requests::answer_in_tx(tx, &settings.calendar, who, answers, id, &at)?;
            Ok(None)
        };
        let outcome = if late {
            store.write_late(new_file, job).await
        } else {
            store.write(new_file, job).await
        };
        if let (Ok(None), Some(f)) = (&outcome, file) {
            f.keep();
        } else if let Some(f) = &staged {
            // Not recorded (a replay of an earlier answer, or a failed commit): its file was
            // dropped just above, and with it deleted; so is its staged copy.
            store.unstage(Area::Spool, f).await;
        }
        outcome
    });
    let outcome = match commit.await {
        Ok(r) => {
            r.map_err(|e| store_failure(e, "could not commit an accepted transfer", req.id))?
        }
        Err(e) => return Err(internal(e, "the commit task failed", req.id)),
    };
    if let Some(previous) = outcome {
        return Ok(replay(
            &previous,
            req.envelope_sha256.as_deref().unwrap_or_default(),
        ));
    }
    app.wake.now();
    metrics::transfer_accepted();
    tracing::info!(transfer_id = %req.id, sender = %req.peer.org, recipients = accepted.recipients.len(), size = accepted.payload.size, "transfer accepted");
    let mut resp = (StatusCode::ACCEPTED, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(loc) = HeaderValue::from_str(&accepted.status_url) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

pub async fn status(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let not_found = || {
        Problem::new(
            ProblemCode::TransferNotFound,
            "No transfer with this id was sent by your organisation.",
        )
        .with_field("id")
        .into_response()
    };
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<TransferId>().ok()) else {
        return not_found();
    };
    let sender = peer.org.clone();
    let key = id.to_string();
    // Only the sender may see a transfer; to anyone else it does not exist.
    match app
        .store
        .read(move |c| crate::store::transfer_status(c, &key, &sender))
        .await
    {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(transfer_id = %id, error = %e, "status lookup failed");
            problem::store_failure(&e, problem::SHUTTING_DOWN)
                .with_transfer(id)
                .into_response()
        }
    }
}
