//! `POST /v1/transfers/{id}/feedback`: a recipient of a transfer tells its sender what became
//! of it, closing the loop. Validated by [`crate::domain::feedback`], appended to the transfer
//! log under the transfer (`feedback_given`), answered once durable; the sender sees it in the
//! transfer's status and on its page. To anyone but a recipient it was delivered to, the
//! transfer does not exist.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::App;
use super::caller::OrgCaller;
use super::decisions::{json, json_body, sender, unavailable};
use super::problem::{Problem, ProblemCode};
use super::routes::Submitter;
use crate::domain::feedback::{self, FeedbackError, FeedbackStatus};
use crate::domain::ids::TransferId;
use crate::log::{FeedbackRecord, LogEntry, RecordKind};

/// The answer to feedback recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeedbackRecorded {
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub transfer_id: String,
    pub status: FeedbackStatus,
    /// When it was recorded (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub recorded_at: String,
}

fn not_found() -> Response {
    Problem::new(
        ProblemCode::TransferNotFound,
        "No transfer with this id was delivered to your organisation.",
    )
    .with_field("id")
    .into_response()
}

pub async fn give(
    State(app): State<Arc<App>>,
    peer: OrgCaller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<TransferId>().ok()) else {
        return not_found();
    };
    let bytes = match json_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    record_feedback(&app, &peer.into(), id, &bytes).await
}

/// Records feedback from a recipient of the transfer `id`: the API's
/// `POST /v1/transfers/{id}/feedback` and the web pages both come here. 201 with
/// [`FeedbackRecorded`], or a problem.
pub async fn record_feedback(
    app: &App,
    peer: &Submitter,
    id: TransferId,
    bytes: &[u8],
) -> Response {
    let given = match feedback::parse_json(bytes) {
        Ok(f) => f,
        Err(FeedbackError::Malformed(msg)) => {
            return Problem::new(
                ProblemCode::MalformedRequest,
                format!("The body is not valid JSON: {msg}."),
            )
            .into_response();
        }
        Err(FeedbackError::Invalid(errors)) => {
            return Problem::invalid_body(ProblemCode::InvalidFeedback, "feedback", &errors)
                .into_response();
        }
    };
    let at = crate::clock::stamp(crate::clock::now());
    let (who, key, org, at_job) = (
        sender(peer),
        id.to_string(),
        peer.org.to_string(),
        at.clone(),
    );
    let status = given.status;
    // Checked and appended in one write job: the transfer's sender read there is the one the
    // record names.
    let written = app
        .store
        .write(false, move |tx| {
            let Some(to) = crate::store::feedback::sender_for_recipient(tx.db(), &key, &org)?
            else {
                return Ok(false);
            };
            let record = FeedbackRecord {
                kind: RecordKind::FeedbackGiven,
                transfer_id: id,
                at: at_job,
                sender: who,
                to,
                status: given.status,
                comment: given.comment,
            };
            tx.append(&LogEntry::new(&record)?)?;
            Ok(true)
        })
        .await;
    match written {
        Ok(true) => {
            tracing::info!(transfer_id = %id, recipient = %peer.org, status = status.as_str(), "feedback on a transfer recorded");
            let answer = FeedbackRecorded {
                transfer_id: id.to_string(),
                status,
                recorded_at: at,
            };
            match serde_json::to_string(&answer) {
                Ok(b) => json(StatusCode::CREATED, b),
                Err(_) => Problem::internal().into_response(),
            }
        }
        Ok(false) => not_found(),
        Err(e) => unavailable(&e, "could not record feedback"),
    }
}
