//! The receiving side: `POST /v1/inbound`, where registered peer gateways deliver transfers
//! for this gateway's organisations (still sealed for the recipient), and the inbox API, where
//! those organisations list, download and acknowledge what arrived.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::App;
use super::caller::{OrgCaller, PeerCaller};
use super::problem::{Problem, ProblemCode};
use crate::domain::inbound::{self, Offer};
use crate::domain::policy::Rule;
use crate::inbox::{self, InboundMeta, InboxError, Via};
use crate::log::{InboundRefusedRecord, InboxRecord, LogEntry, PeerRecord, RecordKind};
use crate::metrics;
use crate::seal::SealError;
use crate::store::inbox::{self as items, InboxItem, InboxPayload};
use crate::store::payloads::Area;
use crate::store::upload::UploadError;

/// The largest meta part accepted (it is a few hundred bytes in practice).
const MAX_META: u64 = 64 * 1024;
/// The largest sealed envelope accepted (the JSON envelope plus age's overhead).
const MAX_SEALED_ENVELOPE: u64 = 1 << 20;

fn problem(code: ProblemCode, detail: impl Into<String>) -> Response {
    Problem::new(code, detail).into_response()
}

async fn read_part(
    field: &mut multer::Field<'_>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, Response> {
    let mut out = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(c)) => {
                if (out.len() + c.len()) as u64 > limit {
                    return Err(problem(
                        ProblemCode::PayloadTooLarge,
                        format!("The {what} part is larger than this gateway accepts."),
                    ));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(problem(
                    ProblemCode::MalformedRequest,
                    format!("The {what} part could not be read: {e}."),
                ));
            }
        }
    }
}

/// A multipart failure as an IO error whose kind says how to answer it.
fn multer_io(e: multer::Error) -> std::io::Error {
    use std::io::{Error, ErrorKind};
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            Error::new(
                ErrorKind::FileTooLarge,
                "the payload is larger than this gateway accepts",
            )
        }
        other => Error::other(other.to_string()),
    }
}

/// Refuses a delivery this gateway will not hold: records the refusal (who brought it, what it
/// said it was, which rule), then answers with the problem. The sending gateway treats the 4xx
/// as permanent.
async fn refuse(
    app: &App,
    peer: &PeerCaller,
    meta: &InboundMeta,
    rule: &str,
    problem: Problem,
) -> Response {
    let at = crate::clock::stamp(crate::clock::now());
    let record = InboundRefusedRecord {
        kind: RecordKind::InboundRefused,
        transfer_id: meta.transfer_id,
        at,
        via: PeerRecord {
            peer: peer.peer.clone(),
            certificate: peer.fingerprint.to_string(),
        },
        sender: meta.sender.clone(),
        recipient: meta.recipient.clone(),
        purpose: meta.purpose.clone(),
        marking: meta.marking.clone(),
        retain_until: meta.retain_until.clone(),
        rule: rule.to_owned(),
        code: problem.code.clone(),
        field: problem.field.clone(),
        detail: problem.detail.clone(),
    };
    tracing::info!(transfer_id = %meta.transfer_id, peer = %peer.peer, recipient = %meta.recipient, code = %problem.code, rule, "inbound delivery refused");
    let entry = match LogEntry::new(&record) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(transfer_id = %meta.transfer_id, error = %e, "could not encode an inbound refusal");
            return Problem::internal().into_response();
        }
    };
    match app
        .store
        .write(false, move |tx| tx.append(&entry).map(|_| ()))
        .await
    {
        Ok(()) => problem.into_response(),
        Err(e) => {
            tracing::error!(transfer_id = %meta.transfer_id, error = %e, "could not record an inbound refusal");
            super::problem::store_failure(
                &e,
                "The gateway could not record its refusal of this delivery and kept nothing. Retry shortly.",
            )
            .into_response()
        }
    }
}

/// Holds the clear description of a delivery to this gateway's rules, before anything else is
/// read: the peer, the sender, the recipient, the marking, the purpose and the retention date
/// ([`crate::domain::inbound::admit`]); then, for a repeat of something already held, that it
/// describes the delivery as the first did. `Err` is the answer, the refusal recorded.
async fn admit(app: &App, peer: &PeerCaller, meta: &InboundMeta) -> Result<(), Response> {
    let registry = app.registry.current();
    let offer = Offer {
        peer: &peer.peer,
        sender: &meta.sender,
        recipient: &meta.recipient,
        purpose: &meta.purpose,
        marking: &meta.marking,
        retain_until: &meta.retain_until,
    };
    let today = crate::clock::now().date();
    if let Err(r) = inbound::admit(&registry, &offer, today, app.limits.inbound_max_retain_days) {
        let mut p = inbound_problem(r.rule, r.detail);
        p.field = r.rule.field().map(str::to_owned);
        return Err(refuse(app, peer, meta, r.rule.name(), p).await);
    }
    let (transfer, recipient) = (meta.transfer_id.to_string(), meta.recipient.to_string());
    let held = app
        .store
        .read(move |c| items::held(c, &transfer, &recipient))
        .await;
    match held {
        Ok(Some((item, via))) => {
            let differ = items::differences(
                &item,
                &via,
                &items::Described {
                    sender: meta.sender.as_str(),
                    via: peer.peer.as_str(),
                    purpose: &meta.purpose,
                    marking: &meta.marking,
                    retain_until: &meta.retain_until,
                },
            );
            if !differ.is_empty() {
                let p = Problem::new(
                    ProblemCode::InboundConflict,
                    inbox::conflict_detail(meta, &differ),
                )
                .with_field("meta");
                return Err(refuse(app, peer, meta, "repeat_matches", p).await);
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::error!(transfer_id = %meta.transfer_id, error = %e, "inbox lookup failed");
            Err(super::problem::store_failure(
                &e,
                "The gateway is shutting down and kept nothing from this delivery. Retry shortly.",
            )
            .into_response())
        }
    }
}

/// `POST /v1/inbound`: multipart parts `meta` (JSON), `envelope` (the sealed envelope) and
/// `payload` (the sealed payload, streamed), in that order and nothing after. Answers 201 with
/// a receipt, or 200 with the first receipt for a repeat.
pub async fn receive(
    State(app): State<Arc<App>>,
    peer: PeerCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The transfer id is known once `meta` is read; from then on every line carries it.
    let span = tracing::info_span!(
        "inbound",
        peer = %peer.peer,
        transfer_id = tracing::field::Empty
    );
    let response = receive_one(app, peer, headers, body)
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    let outcome = match status {
        201 => metrics::Inbound::Stored,
        200 => metrics::Inbound::Repeat,
        500.. => metrics::Inbound::Error,
        _ => metrics::Inbound::Rejected,
    };
    if outcome == metrics::Inbound::Rejected {
        span.in_scope(|| tracing::info!(status, "inbound delivery rejected"));
    }
    metrics::inbound(outcome);
    response
}

async fn receive_one(app: Arc<App>, peer: PeerCaller, headers: HeaderMap, body: Body) -> Response {
    // Before a byte of the body is read.
    if let Some(short) = super::storage_short(&app, &headers) {
        return short.problem.with_field("payload").into_response();
    }
    // As for a transfer (routes::run): room in memory before the body is read.
    let sender = super::Sender::Peer(peer.peer.clone());
    let _room = match app
        .upload_memory
        .reserve(sender, super::declared_length(&headers))
        .await
    {
        Ok(room) => room,
        Err(p) => return p.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return problem(
            ProblemCode::UnsupportedMediaType,
            "Deliver as multipart/form-data with parts `meta`, `envelope` and `payload`.",
        );
    };
    let limits = &app.limits;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["meta", "envelope", "payload"])
        .size_limit(
            // The limit is on the payload as submitted; allow for age's framing.
            multer::SizeLimit::new().for_field("payload", limits.max_payload_bytes + (1 << 20)),
        );
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut next = async |name: &str| -> Result<multer::Field<'static>, Response> {
        match multipart.next_field().await {
            Ok(Some(f)) if f.name() == Some(name) => Ok(f),
            Ok(_) | Err(multer::Error::UnknownField { .. }) => Err(problem(
                ProblemCode::UnexpectedPart,
                "Send the parts `meta`, `envelope` and `payload`, in that order.",
            )),
            Err(e) => Err(problem(
                ProblemCode::MalformedRequest,
                format!("The multipart body could not be read: {e}."),
            )),
        }
    };
    let mut meta_field = match next("meta").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let meta_bytes = match read_part(&mut meta_field, MAX_META, "meta").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    drop(meta_field);
    let meta = match serde_json::from_slice::<InboundMeta>(&meta_bytes) {
        Ok(m) => {
            tracing::Span::current().record("transfer_id", tracing::field::display(&m.transfer_id));
            m
        }
        Err(_) => {
            return Problem::new(ProblemCode::InvalidInbound,
                "The `meta` part is not a valid delivery description (see the inbound contract in docs/openapi.json).",
            )
            .with_field("meta")
            .into_response();
        }
    };
    if let Err(answer) = admit(&app, &peer, &meta).await {
        return answer;
    }
    let mut envelope_field = match next("envelope").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let envelope = match read_part(&mut envelope_field, MAX_SEALED_ENVELOPE, "envelope").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    drop(envelope_field);
    let payload = match next("payload").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    // The payload streams into the store; after it, the body must end. Each error's kind says
    // how it is answered (below).
    let idle = limits.idle_timeout;
    let chunks =
        futures_util::stream::unfold(Some((multipart, payload)), move |state| async move {
            use std::io::{Error, ErrorKind};
            let stalled = || Error::new(ErrorKind::TimedOut, "the delivery stalled");
            let failed = |e| Some((Err(e), None));
            let (mut multipart, mut field) = state?;
            match tokio::time::timeout(idle, field.chunk()).await {
                Ok(Ok(Some(c))) => Some((Ok(c), Some((multipart, field)))),
                Ok(Ok(None)) => {
                    drop(field);
                    match tokio::time::timeout(idle, multipart.next_field()).await {
                        Ok(Ok(None)) => None,
                        Ok(Ok(Some(_)) | Err(multer::Error::UnknownField { .. })) => failed(
                            Error::new(ErrorKind::InvalidInput, "a part after `payload`"),
                        ),
                        Ok(Err(e)) => failed(multer_io(e)),
                        Err(_) => failed(stalled()),
                    }
                }
                Ok(Err(e)) => failed(multer_io(e)),
                Err(_) => failed(stalled()),
            }
        });
    let via = Via::Peer(PeerRecord {
        peer: peer.peer.clone(),
        certificate: peer.fingerprint.to_string(),
    });
    match inbox::receive(&app.store, &meta, &via, envelope, chunks, None).await {
        Ok(received) => {
            tracing::info!(transfer_id = %meta.transfer_id, recipient = %meta.recipient, peer = %peer.peer, new = received.new, "inbound delivery received");
            // A portal organisation's people hear of it as of a delivery from this gateway.
            let registry = app.registry.current();
            let portal = registry
                .organisation(&meta.recipient)
                .and_then(|o| o.endpoint.as_ref())
                .is_some_and(|e| {
                    matches!(e.channel, crate::domain::registry::Channel::Portal { .. })
                });
            if let Some(arrivals) = app.arrivals.as_ref().filter(|_| received.new && portal) {
                arrivals.tell(
                    &registry,
                    &meta.recipient,
                    &meta.sender_name,
                    &meta.transfer_id.to_string(),
                );
            }
            let status = if received.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(received.receipt())).into_response()
        }
        Err(InboxError::Stream(e)) => {
            use std::io::ErrorKind;
            let (code, detail) = match e.kind() {
                ErrorKind::FileTooLarge => (
                    ProblemCode::PayloadTooLarge,
                    "The payload is larger than this gateway accepts. Nothing was kept.".to_owned(),
                ),
                ErrorKind::TimedOut => (
                    ProblemCode::RequestTimeout,
                    "The payload stopped arriving before its end. Nothing was kept.".to_owned(),
                ),
                ErrorKind::InvalidInput => (
                    ProblemCode::UnexpectedPart,
                    "Nothing may follow the `payload` part. Nothing was kept.".to_owned(),
                ),
                _ => (
                    ProblemCode::MalformedRequest,
                    format!("The payload could not be read to its end: {e}. Nothing was kept."),
                ),
            };
            Problem::new(code, detail)
                .with_field("payload")
                .into_response()
        }
        Err(InboxError::Conflict(differ)) => Problem::new(
            ProblemCode::InboundConflict,
            inbox::conflict_detail(&meta, &differ),
        )
        .with_field("meta")
        .into_response(),
        Err(InboxError::Store(e)) => {
            tracing::error!(transfer_id = %meta.transfer_id, error = %e, "could not store an inbound delivery");
            super::problem::store_failure(
                &e,
                "The gateway is shutting down and kept nothing from this delivery. Retry shortly.",
            )
            .into_response()
        }
        Err(InboxError::Upload(UploadError::Seal(SealError::Io(e))))
            if crate::store::io_full(&e) =>
        {
            tracing::warn!(transfer_id = %meta.transfer_id, error = %e, "the disk filled during an inbound delivery; nothing was kept");
            Problem::insufficient_storage()
                .with_field("payload")
                .into_response()
        }
        Err(e) => {
            tracing::error!(transfer_id = %meta.transfer_id, error = %e, "could not store an inbound delivery");
            Problem::internal().into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// Include acknowledged items.
    #[serde(default)]
    pub all: bool,
}

/// The caller's inbox, oldest first.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct InboxList {
    pub items: Vec<InboxItem>,
}

/// An inbox item with its sealed envelope.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct InboxEntry {
    #[serde(flatten)]
    pub item: InboxItem,
    /// The envelope as delivered: a `RecipientEnvelope` as JSON, sealed with age (binary format) to
    /// the organisation's age recipients, encoded in base64 (standard alphabet, with padding).
    /// Decode, then decrypt with the organisation's age identity.
    #[schemars(with = "crate::domain::wire::Base64")]
    pub envelope_age_base64: String,
}

fn item_not_found() -> Response {
    problem(
        ProblemCode::InboxItemNotFound,
        "No inbox item with this id is addressed to your organisation.",
    )
}

pub async fn list(
    State(app): State<Arc<App>>,
    org: OrgCaller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query string that does not parse is a problem like any other, never axum's plain text.
    let Ok(Query(q)) = q else {
        return Problem::new(
            ProblemCode::MalformedRequest,
            "The query string is not valid: `all` may be `true` or `false`.",
        )
        .with_field("all")
        .into_response();
    };
    let recipient = org.org.to_string();
    match app
        .store
        .read(move |c| items::list(c, &recipient, q.all))
        .await
    {
        Ok(items) => Json(InboxList { items }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "inbox listing failed");
            super::problem::store_failure(&e, super::problem::SHUTTING_DOWN).into_response()
        }
    }
}

pub async fn get(
    State(app): State<Arc<App>>,
    org: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return item_not_found();
    };
    let recipient = org.org.to_string();
    match app
        .store
        .read(move |c| items::get(c, &recipient, &id))
        .await
    {
        Ok(Some((item, envelope))) => Json(InboxEntry {
            item,
            envelope_age_base64: base64::engine::general_purpose::STANDARD.encode(envelope),
        })
        .into_response(),
        Ok(None) => item_not_found(),
        Err(e) => {
            tracing::error!(error = %e, "inbox lookup failed");
            super::problem::store_failure(&e, super::problem::SHUTTING_DOWN).into_response()
        }
    }
}

pub async fn payload(
    State(app): State<Arc<App>>,
    org: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return item_not_found();
    };
    let recipient = org.org.to_string();
    let lookup = id.clone();
    let found = match app
        .store
        .read(move |c| items::payload(c, &recipient, &lookup))
        .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "inbox lookup failed");
            return super::problem::store_failure(&e, super::problem::SHUTTING_DOWN)
                .into_response();
        }
    };
    let body = match found {
        None => return item_not_found(),
        Some(InboxPayload::Gone) => {
            return problem(
                ProblemCode::PayloadGone,
                "This item was acknowledged and its payload deleted.",
            );
        }
        Some(InboxPayload::Inline(b)) => Body::from(b),
        Some(InboxPayload::File(f)) => match app.store.open_payload(Area::Inbox, &f) {
            Ok(file) => Body::from_stream(crate::store::payloads::read_stream(move || Ok(file))),
            Err(e) => {
                tracing::error!(inbox_id = %id, error = %e, "an inbox payload file is missing");
                return Problem::internal().into_response();
            }
        },
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

/// The answer to an acknowledgement.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Acknowledged {
    /// The item id.
    pub id: String,
    /// When the item was first acknowledged (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub acknowledged_at: String,
}

pub async fn acknowledge(
    State(app): State<Arc<App>>,
    org: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return item_not_found();
    };
    match acknowledge_item(&app, org.org.clone(), id.clone()).await {
        Ok(Some(acknowledged_at)) => Json(Acknowledged {
            id,
            acknowledged_at,
        })
        .into_response(),
        Ok(None) => item_not_found(),
        Err(e) => {
            tracing::error!(error = %e, "could not acknowledge an inbox item");
            super::problem::store_failure(
                &e,
                "The gateway is shutting down; the item was not acknowledged. Try again shortly.",
            )
            .into_response()
        }
    }
}

/// Acknowledges `recipient`'s item `id`: records `inbox_acknowledged` (once) and deletes the
/// payload. Returns when it was acknowledged, or `None` if the item is not the recipient's.
/// The API's `POST /v1/inbox/{id}/ack` and the web pages both acknowledge through here.
pub async fn acknowledge_item(
    app: &App,
    recipient: crate::domain::ids::OrgId,
    id: String,
) -> Result<Option<String>, crate::store::StoreError> {
    let now = crate::clock::stamp(crate::clock::now());
    let (r, i, at) = (recipient.to_string(), id.clone(), now.clone());
    let written = app
        .store
        .write(false, move |tx| {
            let Some((before, file)) = tx.acknowledge(&r, &i, &at)? else {
                return Ok(None);
            };
            if before.acknowledged_at.is_none()
                && let Ok(tid) = before.transfer_id.parse()
                && let Ok(sender) = before.sender.parse()
            {
                let rec = InboxRecord {
                    kind: RecordKind::InboxAcknowledged,
                    transfer_id: tid,
                    at: at.clone(),
                    inbox_id: before.id.clone(),
                    recipient: recipient.clone(),
                    sender,
                    via: "-".into(),
                    payload_size: before.payload_size,
                    payload_sha256: before.payload_sha256.clone(),
                };
                // Filed under the transfer's sender, like the inbox_received record before it;
                // the acknowledging organisation is the record's `recipient`.
                tx.append(&LogEntry::new(&rec)?)?;
            }
            Ok(Some((before, file)))
        })
        .await?;
    let Some((before, file)) = written else {
        return Ok(None);
    };
    if let Some(f) = file {
        let path = app.store.inbox_file(&f);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(inbox_id = %id, error = %e, "could not delete an acknowledged payload; the start-up sweep will");
        }
    }
    Ok(Some(before.acknowledged_at.unwrap_or(now)))
}

/// The answer to an inbound refusal: the API's own code for what is about the delivery, the
/// policy rule's code for what this gateway will not hold.
fn inbound_problem(rule: inbound::InboundRule, detail: String) -> Problem {
    use inbound::InboundRule as I;
    match rule {
        I::PeerRegistered => Problem::new(ProblemCode::NotAPeer, detail),
        I::SenderPermitted => Problem::new(ProblemCode::SenderNotPermitted, detail),
        I::RecipientHere => Problem::new(ProblemCode::RecipientNotHere, detail),
        I::MarkingRecognised | I::RetentionValid => {
            Problem::new(ProblemCode::InvalidInbound, detail)
        }
        I::MarkingWithinGateway => Problem::policy(Rule::MarkingWithinGateway, detail),
        I::MarkingWithinClearance => Problem::policy(Rule::MarkingWithinClearance, detail),
        I::MarkingWithinChannel => Problem::policy(Rule::MarkingWithinChannel, detail),
        I::PurposeKnown => Problem::policy(Rule::PurposeKnown, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inbound::InboundRule as I;

    #[test]
    fn an_inbound_refusal_answers_with_its_status_and_code() {
        for (rule, status, code) in [
            (I::PeerRegistered, 403, "not_a_peer"),
            (I::SenderPermitted, 403, "sender_not_permitted"),
            (I::RecipientHere, 422, "recipient_not_here"),
            (I::MarkingRecognised, 422, "invalid_inbound"),
            (I::RetentionValid, 422, "invalid_inbound"),
            (
                I::MarkingWithinGateway,
                403,
                Rule::MarkingWithinGateway.refusal_code(),
            ),
            (
                I::MarkingWithinClearance,
                403,
                Rule::MarkingWithinClearance.refusal_code(),
            ),
            (
                I::MarkingWithinChannel,
                403,
                Rule::MarkingWithinChannel.refusal_code(),
            ),
            (I::PurposeKnown, 403, Rule::PurposeKnown.refusal_code()),
        ] {
            let p = inbound_problem(rule, "d".into());
            assert_eq!((p.status, p.code.as_str()), (status, code), "{rule:?}");
        }
    }
}
