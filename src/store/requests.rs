//! Requests for information as the gateway follows them: one row per request made (its
//! parties, its clock and its state), and the shares and decisions that answered or declined
//! it, kept both ways. What was asked is in the request's `request_made` record in the
//! transfer log (found by `log_seq`); every change is a record there too, appended in the same
//! transaction as the change here.
//!
//! The subject references are kept in clear nowhere: the log has their keyed hashes, and this
//! table has them sealed to the spool key, for the holder to read while it answers, until the
//! request is closed (then only the hashes remain).

use std::collections::BTreeMap;

use serde::Serialize;

use super::StoreError;
use super::db::{Db, Row, Value};
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
    -- Working days from the day received to the day answered in full or declined (the
    -- calendar in force then): what the report's median is of.
    working_days_taken INTEGER,
    -- A clarification asked and not yet given (when it was asked), and whether the clock
    -- stops while it is awaited (the configuration's rule when it was asked).
    clarification_asked_at TEXT,
    clock_stopped   INTEGER NOT NULL DEFAULT 0,
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
pub fn insert(db: &dyn Db, r: &NewRequest, log_seq: i64) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO requests (id, requester, holder, purpose, urgency, received_at, due_at, due_date, state, sealed_refs, log_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10)",
        &[
            r.id.to_string().into(),
            r.requester.as_str().into(),
            r.holder.as_str().into(),
            (&r.purpose).into(),
            r.urgency.into(),
            (&r.received_at).into(),
            (&r.due_at).into(),
            (&r.due_date).into(),
            r.sealed_refs.as_slice().into(),
            Value::Int(log_seq),
        ],
    )?;
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
    /// When a clarification still awaited was asked.
    pub clarification_asked_at: Option<String>,
    /// The clock waits for that clarification.
    pub clock_stopped: bool,
}

const COLUMNS: &str = "r.id, r.requester, r.holder, r.purpose, r.urgency, r.received_at, r.due_at, r.due_date, r.state, r.first_answer_at, r.closed_at, r.sealed_refs, l.body, r.clarification_asked_at, r.clock_stopped";

fn row(r: &Row) -> Result<RequestRow, StoreError> {
    let bad =
        |i: usize, what: &str| StoreError::Damaged(format!("column {i}: not a request {what}"));
    let state = r.text(8)?;
    Ok(RequestRow {
        id: r.text(0)?.parse().map_err(|_| bad(0, "id"))?,
        requester: r.text(1)?.parse().map_err(|_| bad(1, "requester"))?,
        holder: r.text(2)?.parse().map_err(|_| bad(2, "holder"))?,
        purpose: r.text(3)?,
        urgency: r.text(4)?,
        received_at: r.text(5)?,
        due_at: r.text(6)?,
        due_date: r.text(7)?,
        state: RequestState::parse(&state).ok_or_else(|| bad(8, "state"))?,
        first_answer_at: r.opt_text(9)?,
        closed_at: r.opt_text(10)?,
        sealed_refs: match r.value(11) {
            Value::Null => None,
            _ => Some(r.blob(11)?),
        },
        record: r.blob(12)?,
        clarification_asked_at: r.opt_text(13)?,
        clock_stopped: r.int(14)? != 0,
    })
}

/// The request `id`, if `org` is one of its two parties (to anyone else it does not exist).
pub fn get(db: &dyn Db, id: RequestId, org: &str) -> Result<Option<RequestRow>, StoreError> {
    db.row(
        &format!(
            "SELECT {COLUMNS} FROM requests r JOIN log l ON l.seq = r.log_seq WHERE r.id = ?1 AND (r.requester = ?2 OR r.holder = ?2)"
        ),
        &[id.to_string().into(), org.into()],
    )?
    .map(|r| row(&r))
    .transpose()
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
    db: &dyn Db,
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
    db.rows(
        &format!(
            "SELECT {COLUMNS} FROM requests r JOIN log l ON l.seq = r.log_seq WHERE {party} = ?1{open} ORDER BY r.received_at DESC, r.id DESC LIMIT ?2"
        ),
        &[org.into(), Value::Int(limit.into())],
    )?
    .iter()
    .map(row)
    .collect()
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
pub fn links(db: &dyn Db, id: RequestId) -> Result<Vec<Link>, StoreError> {
    let rows = db
        .rows(
            "SELECT transfer_id, kind, answer, at FROM request_links WHERE request_id = ?1 ORDER BY at, transfer_id",
            &[id.to_string().into()],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?, r.text(3)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
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
pub fn answered_by(db: &dyn Db, transfer: TransferId) -> Result<Option<RequestId>, StoreError> {
    let id = db.row(
        "SELECT request_id FROM request_links WHERE transfer_id = ?1",
        &[transfer.to_string().into()],
    )?;
    Ok(id
        .map(|r| r.text(0))
        .transpose()?
        .and_then(|i| i.parse().ok()))
}

/// A change to a request, made in the write job that appends its record.
pub struct Change<'a> {
    pub id: RequestId,
    pub state: RequestState,
    pub at: &'a str,
    /// The share or decision that made it, and the link's kind and extent.
    pub link: Option<(TransferId, &'static str, Option<&'static str>)>,
    /// For an answer in full or a decline: the working days the holder took.
    pub working_days_taken: Option<u32>,
}

/// A clarification asked (`asked` with whether the clock stops), or given (`None`, with the
/// request's new due instant and day when the clock restarts).
pub fn clarification(
    db: &dyn Db,
    id: RequestId,
    asked: Option<(&str, bool)>,
    due: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let (asked_at, stopped) = asked.map_or((None, false), |(at, s)| (Some(at), s));
    db.execute(
        "UPDATE requests SET clarification_asked_at = ?2, clock_stopped = ?3,
            due_at = COALESCE(?4, due_at), due_date = COALESCE(?5, due_date)
         WHERE id = ?1",
        &[
            id.to_string().into(),
            asked_at.into(),
            Value::Int(stopped.into()),
            due.map(|d| d.0).into(),
            due.map(|d| d.1).into(),
        ],
    )?;
    Ok(())
}

/// The clarifications asked and given on the request `id`, oldest first: (kind, at, text).
pub fn clarifications(
    db: &dyn Db,
    id: RequestId,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows = db.rows(
        "SELECT body FROM log WHERE transfer_id = ?1 AND kind IN ('request_clarification_asked', 'request_clarified') ORDER BY seq",
        &[id.to_string().into()],
    )?;
    let mut out = Vec::new();
    for b in rows {
        let r: crate::log::RequestEventRecord = serde_json::from_slice(&b.blob(0)?)?;
        out.push((
            r.kind.as_str().to_owned(),
            r.at,
            r.clarification.unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// Applies a change: the new state, the first answer's time, the close (which drops the
/// sealed references), and the link.
pub fn change(db: &dyn Db, c: &Change<'_>) -> Result<(), StoreError> {
    let closed = c.state.is_closed();
    let answered = c.link.is_some_and(|(_, kind, _)| kind == "answer");
    // The flags are compared with 1: a bare parameter as a condition is an integer to SQLite
    // and must be a boolean to PostgreSQL.
    db.execute(
        "UPDATE requests SET state = ?2,
            first_answer_at = CASE WHEN ?3 = 1 AND first_answer_at IS NULL THEN ?4 ELSE first_answer_at END,
            closed_at = CASE WHEN ?5 = 1 THEN ?4 ELSE closed_at END,
            sealed_refs = CASE WHEN ?5 = 1 THEN NULL ELSE sealed_refs END,
            working_days_taken = COALESCE(?6, working_days_taken)
         WHERE id = ?1",
        &[
            c.id.to_string().into(),
            c.state.as_str().into(),
            Value::Int(answered.into()),
            c.at.into(),
            Value::Int(closed.into()),
            c.working_days_taken.map(i64::from).into(),
        ],
    )?;
    if let Some((transfer, kind, answer)) = c.link {
        db.execute(
            "INSERT INTO request_links (request_id, transfer_id, kind, answer, at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            &[
                c.id.to_string().into(),
                transfer.to_string().into(),
                kind.into(),
                answer.into(),
                c.at.into(),
            ],
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report: what a safeguarding partnership asks its agencies about.

/// Requests received in a period, by the organisation asked.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RequestsReport {
    /// Per holder: what it was asked and how it answered.
    pub by_holder: BTreeMap<String, HolderFigures>,
    /// Requests still open (or only partly answered) past their due instant, oldest due first.
    pub overdue: Vec<RequestLine>,
    /// Requests answered in full or declined after their due instant.
    pub answered_late: Vec<RequestLine>,
}

/// One holder's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HolderFigures {
    pub received: u64,
    /// Answered in full or declined (a decline is an answer in writing).
    pub answered: u64,
    pub answered_late: u64,
    pub overdue: u64,
    pub withdrawn: u64,
    /// The median number of working days taken to answer (of those answered), if any were.
    pub median_working_days: Option<f64>,
}

/// One request in the report's lists.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLine {
    pub request_id: String,
    pub requester: String,
    pub holder: String,
    pub urgency: String,
    pub received_at: String,
    pub due_at: String,
    pub due_date: String,
    pub state: String,
    pub closed_at: Option<String>,
}

/// The requests received from `from` (inclusive) to `to` (exclusive; RFC 3339 bounds, either
/// open), and every request overdue at the instant `as_of` whenever it was received; by `party`
/// (requester or holder) when given.
pub fn report(
    db: &dyn Db,
    from: Option<&str>,
    to: Option<&str>,
    party: Option<&str>,
    as_of: &str,
) -> Result<RequestsReport, StoreError> {
    let rows = db
        .rows(
            "SELECT id, requester, holder, urgency, received_at, due_at, due_date, state, closed_at, working_days_taken, clock_stopped,
                (CAST(?1 AS TEXT) IS NULL OR received_at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR received_at < ?2)
         FROM requests
         WHERE (CAST(?3 AS TEXT) IS NULL OR requester = ?3 OR holder = ?3)
           AND ((CAST(?1 AS TEXT) IS NULL OR received_at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR received_at < ?2)
                OR (closed_at IS NULL AND clock_stopped = 0 AND due_at < ?4))
         ORDER BY due_at, id",
            &[from.into(), to.into(), party.into(), as_of.into()],
        )?
        .into_iter()
        .map(|r| {
            Ok((
                RequestLine {
                    request_id: r.text(0)?,
                    requester: r.text(1)?,
                    holder: r.text(2)?,
                    urgency: r.text(3)?,
                    received_at: r.text(4)?,
                    due_at: r.text(5)?,
                    due_date: r.text(6)?,
                    state: r.text(7)?,
                    closed_at: r.opt_text(8)?,
                },
                r.opt_int(9)?.and_then(|d| u32::try_from(d).ok()),
                r.int(10)? != 0,
                r.int(11)? != 0,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut out = RequestsReport::default();
    let mut taken: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (line, days, stopped, in_period) in rows {
        let figures = out.by_holder.entry(line.holder.clone()).or_default();
        // Overdue now is listed whenever the request was received: the oldest are the worst.
        if !in_period {
            figures.overdue += 1;
            out.overdue.push(line);
            continue;
        }
        figures.received += 1;
        match line.state.as_str() {
            "answered" | "declined" => {
                figures.answered += 1;
                if let Some(d) = days {
                    taken.entry(line.holder.clone()).or_default().push(d);
                }
                // RFC 3339 UTC stamps of one format compare as text. Answered while its clock
                // waited for a clarification, it was not late.
                if !stopped
                    && line
                        .closed_at
                        .as_deref()
                        .is_some_and(|c| c > line.due_at.as_str())
                {
                    figures.answered_late += 1;
                    out.answered_late.push(line);
                }
            }
            "withdrawn" => figures.withdrawn += 1,
            // Waiting for a clarification, with the clock stopped: not overdue.
            _ if !stopped && line.due_at.as_str() < as_of => {
                figures.overdue += 1;
                out.overdue.push(line);
            }
            _ => {}
        }
    }
    for (holder, mut days) in taken {
        days.sort_unstable();
        let n = days.len();
        let median = if n % 2 == 1 {
            f64::from(days[n / 2])
        } else {
            (f64::from(days[n / 2 - 1]) + f64::from(days[n / 2])) / 2.0
        };
        if let Some(f) = out.by_holder.get_mut(&holder) {
            f.median_working_days = Some(median);
        }
    }
    Ok(out)
}

/// When each open request (not answered in full, declined or withdrawn) was received: the
/// metrics band them by age.
pub fn open_received(db: &dyn Db) -> Result<Vec<String>, StoreError> {
    db.rows(
        "SELECT received_at FROM requests WHERE closed_at IS NULL",
        &[],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn request(conn: &Connection, n: u128, holder: &str, received: &str, due: &str) -> RequestId {
        let id = RequestId::from_uuid(uuid::Uuid::from_u128(n));
        insert(
            conn,
            &NewRequest {
                id,
                requester: "northshire-police".parse().unwrap(),
                holder: holder.parse().unwrap(),
                purpose: "child-protection-s47".into(),
                urgency: "routine",
                received_at: received.into(),
                due_at: due.into(),
                due_date: due[..10].into(),
                sealed_refs: vec![1, 2, 3],
            },
            1,
        )
        .unwrap();
        id
    }

    fn close(conn: &Connection, id: RequestId, state: RequestState, at: &str, days: Option<u32>) {
        change(
            conn,
            &Change {
                id,
                state,
                at,
                link: None,
                working_days_taken: days,
            },
        )
        .unwrap();
    }

    #[test]
    fn the_report_counts_by_holder_lists_overdue_and_late_and_takes_the_median() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V7).unwrap();
        let due = "2026-12-24T23:59:59.000000Z";
        let received = "2026-12-03T10:00:00.000000Z";
        // The council: answered in time (4 days), answered late (17), declined in time (9),
        // one overdue, one withdrawn.
        let a = request(&conn, 1, "northshire-cc", received, due);
        close(
            &conn,
            a,
            RequestState::Answered,
            "2026-12-09T10:00:00.000000Z",
            Some(4),
        );
        let b = request(&conn, 2, "northshire-cc", received, due);
        close(
            &conn,
            b,
            RequestState::Answered,
            "2026-12-29T10:00:00.000000Z",
            Some(17),
        );
        let c = request(&conn, 3, "northshire-cc", received, due);
        close(
            &conn,
            c,
            RequestState::Declined,
            "2026-12-16T10:00:00.000000Z",
            Some(9),
        );
        let open = request(&conn, 4, "northshire-cc", received, due);
        let w = request(&conn, 5, "northshire-cc", received, due);
        close(
            &conn,
            w,
            RequestState::Withdrawn,
            "2026-12-05T10:00:00.000000Z",
            None,
        );
        // The school: one partly answered, not yet due at the report's moment.
        let p = request(
            &conn,
            6,
            "millbrook-academy",
            received,
            "2027-01-20T23:59:59.000000Z",
        );
        close(
            &conn,
            p,
            RequestState::PartlyAnswered,
            "2026-12-10T10:00:00.000000Z",
            None,
        );

        let r = report(&conn, None, None, None, "2027-01-05T00:00:00.000000Z").unwrap();
        let cc = &r.by_holder["northshire-cc"];
        assert_eq!(
            (
                cc.received,
                cc.answered,
                cc.answered_late,
                cc.overdue,
                cc.withdrawn
            ),
            (5, 3, 1, 1, 1)
        );
        assert_eq!(cc.median_working_days, Some(9.0));
        let school = &r.by_holder["millbrook-academy"];
        assert_eq!((school.received, school.overdue), (1, 0));
        assert_eq!(school.median_working_days, None);
        let ids = |l: &[RequestLine]| l.iter().map(|x| x.request_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&r.overdue), [open.to_string()]);
        assert_eq!(ids(&r.answered_late), [b.to_string()]);
        // Later, the partly answered one is overdue too; an even count takes the middle two.
        let later = report(&conn, None, None, None, "2027-02-01T00:00:00.000000Z").unwrap();
        assert_eq!(later.overdue.len(), 2);
        close(
            &conn,
            open,
            RequestState::Answered,
            "2027-01-06T10:00:00.000000Z",
            Some(20),
        );
        let r = report(
            &conn,
            None,
            None,
            Some("millbrook-academy"),
            "2027-01-05T00:00:00.000000Z",
        )
        .unwrap();
        assert_eq!(r.by_holder.len(), 1, "by party");
        let r = report(&conn, None, None, None, "2027-01-05T00:00:00.000000Z").unwrap();
        assert_eq!(r.by_holder["northshire-cc"].median_working_days, Some(13.0));
        // Overdue is listed whenever the request was received: the partly answered one,
        // received before this period, is overdue by February.
        let r = report(
            &conn,
            Some("2026-12-04T00:00:00.000000Z"),
            None,
            None,
            "2027-02-01T00:00:00.000000Z",
        )
        .unwrap();
        assert_eq!(ids(&r.overdue), [p.to_string()]);
        let school = &r.by_holder["millbrook-academy"];
        assert_eq!((school.received, school.overdue), (0, 1));
        // A period: received before it, none.
        let r = report(&conn, Some("2026-12-04T00:00:00.000000Z"), None, None, due).unwrap();
        assert!(r.by_holder.is_empty());
    }
}
