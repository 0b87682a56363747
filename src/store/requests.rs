//! Requests for information as the gateway follows them: one row per request made (its
//! parties, its clock and its state), and the shares and decisions that answered or declined
//! it, kept both ways. What was asked is in the request's `request_made` record in the
//! transfer log (found by `log_seq`); every change is a record there too, appended in the same
//! transaction as the change here.
//!
//! The subject references are kept in clear nowhere: the log has their keyed hashes, and this
//! table has them sealed to the spool key, for the holder to read while it answers, until the
//! request is closed (then only the hashes remain).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use crate::domain::ids::{OrgId, RequestId, TransferId};
use crate::domain::info_request::RequestState;

/// Version 7: requests for information and what answered them.
pub(super) const SCHEMA_V7: &str = "
CREATE TABLE requests (
    id              TEXT PRIMARY KEY,
    requester       TEXT NOT NULL,
    holder          TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    urgency         TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    due_at          TEXT NOT NULL,
    due_date        TEXT NOT NULL,
    -- open, partly_answered, answered, declined, withdrawn
    state           TEXT NOT NULL,
    first_answer_at TEXT,
    closed_at       TEXT,
    -- The subject references, sealed to the spool key; NULL once the request is closed.
    sealed_refs     BLOB,
    log_seq         INTEGER NOT NULL
);
CREATE INDEX requests_holder ON requests(holder, received_at);
CREATE INDEX requests_requester ON requests(requester, received_at);
CREATE INDEX requests_open ON requests(due_at) WHERE closed_at IS NULL;

-- The shares that answered a request and the decisions that declined it.
CREATE TABLE request_links (
    request_id  TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    -- answer or decline
    kind        TEXT NOT NULL,
    -- in_full or in_part, for an answer
    answer      TEXT,
    at          TEXT NOT NULL,
    PRIMARY KEY (request_id, transfer_id)
) WITHOUT ROWID;
CREATE INDEX request_links_transfer ON request_links(transfer_id);
";

/// What ingest records for a request it made.
pub struct NewRequest {
    pub id: RequestId,
    pub requester: OrgId,
    pub holder: OrgId,
    pub purpose: String,
    pub urgency: &'static str,
    pub received_at: String,
    pub due_at: String,
    pub due_date: String,
    pub sealed_refs: Vec<u8>,
}

/// Records a request made (in the write job that appended its `request_made` record).
pub fn insert(conn: &Connection, r: &NewRequest, log_seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO requests (id, requester, holder, purpose, urgency, received_at, due_at, due_date, state, sealed_refs, log_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10)",
    )?
    .execute(params![
        r.id.to_string(),
        r.requester.as_str(),
        r.holder.as_str(),
        r.purpose,
        r.urgency,
        r.received_at,
        r.due_at,
        r.due_date,
        r.sealed_refs,
        log_seq,
    ])?;
    Ok(())
}

/// A request as the table keeps it, with its `request_made` record.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub id: RequestId,
    pub requester: OrgId,
    pub holder: OrgId,
    pub purpose: String,
    pub urgency: String,
    pub received_at: String,
    pub due_at: String,
    pub due_date: String,
    pub state: RequestState,
    pub first_answer_at: Option<String>,
    pub closed_at: Option<String>,
    pub sealed_refs: Option<Vec<u8>>,
    /// The `request_made` record's body.
    pub record: Vec<u8>,
}

const COLUMNS: &str = "r.id, r.requester, r.holder, r.purpose, r.urgency, r.received_at, r.due_at, r.due_date, r.state, r.first_answer_at, r.closed_at, r.sealed_refs, l.body";

fn row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("not a request {what}").into(),
        )
    };
    let id: String = r.get(0)?;
    let (requester, holder): (String, String) = (r.get(1)?, r.get(2)?);
    let state: String = r.get(8)?;
    Ok(RequestRow {
        id: id.parse().map_err(|_| bad(0, "id"))?,
        requester: requester.parse().map_err(|_| bad(1, "requester"))?,
        holder: holder.parse().map_err(|_| bad(2, "holder"))?,
        purpose: r.get(3)?,
        urgency: r.get(4)?,
        received_at: r.get(5)?,
        due_at: r.get(6)?,
        due_date: r.get(7)?,
        state: RequestState::parse(&state).ok_or_else(|| bad(8, "state"))?,
        first_answer_at: r.get(9)?,
        closed_at: r.get(10)?,
        sealed_refs: r.get(11)?,
        record: r.get(12)?,
    })
}

/// The request `id`, if `org` is one of its two parties (to anyone else it does not exist).
pub fn get(conn: &Connection, id: RequestId, org: &str) -> Result<Option<RequestRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM requests r JOIN log l ON l.seq = r.log_seq WHERE r.id = ?1 AND (r.requester = ?2 OR r.holder = ?2)"
        ))?
        .query_row(params![id.to_string(), org], row)
        .optional()?)
}

/// Which side of its requests an organisation lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The requests it was asked (it holds the information).
    Received,
    /// The requests it made.
    Made,
}

/// `org`'s requests on one side, newest first, at most `limit`; only the open ones (not
/// answered in full, declined or withdrawn) when `open_only`.
pub fn list(
    conn: &Connection,
    org: &str,
    side: Side,
    open_only: bool,
    limit: u32,
) -> Result<Vec<RequestRow>, StoreError> {
    let party = match side {
        Side::Received => "r.holder",
        Side::Made => "r.requester",
    };
    let open = if open_only {
        " AND r.closed_at IS NULL"
    } else {
        ""
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM requests r JOIN log l ON l.seq = r.log_seq WHERE {party} = ?1{open} ORDER BY r.received_at DESC, r.id DESC LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![org, limit], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A share that answered a request, or a decision that declined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub transfer_id: TransferId,
    /// `answer` or `decline`.
    pub kind: String,
    /// `in_full` or `in_part`, for an answer.
    pub answer: Option<String>,
    pub at: String,
}

/// What answered or declined the request `id`, oldest first.
pub fn links(conn: &Connection, id: RequestId) -> Result<Vec<Link>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT transfer_id, kind, answer, at FROM request_links WHERE request_id = ?1 ORDER BY at, transfer_id",
    )?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            let t: String = r.get(0)?;
            Ok((t, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<(String, String, Option<String>, String)>, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, kind, answer, at)| {
            Some(Link {
                transfer_id: t.parse().ok()?,
                kind,
                answer,
                at,
            })
        })
        .collect())
}

/// The request a share answered or a decision declined, if any.
pub fn answered_by(
    conn: &Connection,
    transfer: TransferId,
) -> Result<Option<RequestId>, StoreError> {
    let id: Option<String> = conn
        .prepare_cached("SELECT request_id FROM request_links WHERE transfer_id = ?1")?
        .query_row(params![transfer.to_string()], |r| r.get(0))
        .optional()?;
    Ok(id.and_then(|i| i.parse().ok()))
}

/// A change to a request, made in the write job that appends its record.
pub struct Change<'a> {
    pub id: RequestId,
    pub state: RequestState,
    pub at: &'a str,
    /// The share or decision that made it, and the link's kind and extent.
    pub link: Option<(TransferId, &'static str, Option<&'static str>)>,
}

/// Applies a change: the new state, the first answer's time, the close (which drops the
/// sealed references), and the link.
pub fn change(conn: &Connection, c: &Change<'_>) -> Result<(), StoreError> {
    let closed = c.state.is_closed();
    let answered = c.link.is_some_and(|(_, kind, _)| kind == "answer");
    conn.prepare_cached(
        "UPDATE requests SET state = ?2,
            first_answer_at = CASE WHEN ?3 AND first_answer_at IS NULL THEN ?4 ELSE first_answer_at END,
            closed_at = CASE WHEN ?5 THEN ?4 ELSE closed_at END,
            sealed_refs = CASE WHEN ?5 THEN NULL ELSE sealed_refs END
         WHERE id = ?1",
    )?
    .execute(params![
        c.id.to_string(),
        c.state.as_str(),
        answered,
        c.at,
        closed
    ])?;
    if let Some((transfer, kind, answer)) = c.link {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO request_links (request_id, transfer_id, kind, answer, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            c.id.to_string(),
            transfer.to_string(),
            kind,
            answer,
            c.at
        ])?;
    }
    Ok(())
}
