//! The delivery queue: one row per (transfer, recipient) in `deliveries`, moving
//! queued → delivering → delivered | retrying → ... → delivered | dead. The worker reads what is
//! due and changes state only through the single writer, so a claim, its outcome and the
//! attempt's log record are each one committed step.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, Tx};
use crate::domain::ids::{OrgId, TransferId};

/// Every state a delivery can be in, in the order it goes through them.
pub const STATES: [&str; 5] = ["queued", "delivering", "retrying", "delivered", "dead"];

/// A delivery that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    // Kept as the rows hold them: one damaged row must not stop the worker's whole batch (the
    // job it names is parsed, and refused alone, when it is loaded).
    pub transfer_id: String,
    pub recipient: String,
}

/// What an attempt needs about its transfer.
#[derive(Debug, Clone)]
pub struct Job {
    pub transfer_id: TransferId,
    pub recipient: OrgId,
    pub channel: String,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    pub sender: OrgId,
    pub accepted_at: time::OffsetDateTime,
    pub purpose: String,
    pub marking: String,
    pub payload_file: Option<String>,
    pub payload_inline: Option<Vec<u8>>,
    pub payload_size: u64,
    pub sealed_envelope: Vec<u8>,
}

/// A column holding an id (or a time), parsed as the store reads it: a row that does not parse
/// is a damaged store, reported as such, not a string for the worker to puzzle over.
fn parsed<T: std::str::FromStr>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse().map_err(|_| bad_value(i, &s))
}

fn bad_value(i: usize, s: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("`{s}` is not a valid value for this column").into(),
    )
}

/// How an attempt ended, as the queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Delivered { receipt: String },
    Retry { at: String, error: String },
    Dead { error: String },
}

impl Finish {
    /// What the delivery's row takes at `now`: state, next attempt, error, receipt, delivered
    /// at (each backend's queue writes the same).
    pub(crate) fn columns<'a>(
        &'a self,
        now: &'a str,
    ) -> (
        &'static str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    ) {
        match self {
            Finish::Delivered { receipt } => {
                ("delivered", now, None, Some(receipt.as_str()), Some(now))
            }
            Finish::Retry { at, error } => {
                ("retrying", at.as_str(), Some(error.as_str()), None, None)
            }
            Finish::Dead { error } => ("dead", now, Some(error.as_str()), None, None),
        }
    }
}

pub fn due(conn: &Connection, now: &str, limit: usize) -> Result<Vec<Due>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT transfer_id, recipient FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok(Due {
                transfer_id: r.get(0)?,
                recipient: r.get(1)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next queued or retrying delivery falls due.
pub fn next_due(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('queued', 'retrying')",
        )?
        .query_row([], |r| r.get::<_, Option<String>>(0))?)
}

/// The queue as an operator sees it: how many deliveries are in each pending state, and when
/// the oldest transfer with a pending delivery was accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depth {
    pub by_state: Vec<(String, u64)>,
    pub oldest_pending_accepted_at: Option<String>,
}

pub fn depth(conn: &Connection) -> Result<Depth, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, COUNT(*) FROM deliveries WHERE state IN ('queued', 'delivering', 'retrying') GROUP BY state",
    )?;
    let by_state = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        })?
        .collect::<Result<_, _>>()?;
    let oldest_pending_accepted_at = conn
        .prepare_cached(
            "SELECT MIN(t.accepted_at) FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE d.state IN ('queued', 'delivering', 'retrying')",
        )?
        .query_row([], |r| r.get::<_, Option<String>>(0))?;
    Ok(Depth {
        by_state,
        oldest_pending_accepted_at,
    })
}

pub fn job(
    conn: &Connection,
    transfer_id: &str,
    recipient: &str,
) -> Result<Option<Job>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT d.transfer_id, d.recipient, d.channel, d.attempts, t.sender, t.accepted_at, t.purpose, t.marking, t.payload_file, t.payload_inline, t.payload_size, t.sealed_envelope
             FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE d.transfer_id = ?1 AND d.recipient = ?2",
        )?
        .query_row(params![transfer_id, recipient], |r| {
            Ok(Job {
                transfer_id: parsed(r, 0)?,
                recipient: parsed(r, 1)?,
                channel: r.get(2)?,
                attempt: r.get(3)?,
                sender: parsed(r, 4)?,
                accepted_at: {
                    let at: String = r.get(5)?;
                    crate::clock::parse(&at).ok_or_else(|| bad_value(5, &at))?
                },
                purpose: r.get(6)?,
                marking: r.get(7)?,
                payload_file: r.get(8)?,
                payload_inline: r.get(9)?,
                payload_size: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
                sealed_envelope: r.get(11)?,
            })
        })
        .optional()?)
}

/// Deliveries in flight (`delivering`) whose claim or last change is older than `before`.
pub fn stale_in_flight(conn: &Connection, before: &str) -> Result<Vec<Due>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT transfer_id, recipient FROM deliveries WHERE state = 'delivering' AND updated_at < ?1",
    )?;
    let rows = stmt.query_map(params![before], |r| {
        Ok(Due {
            transfer_id: r.get(0)?,
            recipient: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Transfers whose every recipient is delivered or dead since before `cutoff`, payload still held.
pub fn purgeable(
    conn: &Connection,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, payload_file FROM transfers WHERE payload_purged_at IS NULL AND completed_at IS NOT NULL AND completed_at <= ?1 ORDER BY completed_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![cutoff, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Tx<'_> {
    /// After a restart, deliveries that were in flight are retried (their outcome is unknown:
    /// the recipient side makes a repeat harmless).
    pub fn recover_in_flight(&mut self, now: &str) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?1, updated_at = ?1, last_error = 'interrupted: the gateway stopped during the attempt' WHERE state = 'delivering'",
            params![now],
        )?)
    }

    /// A delivery left `delivering` although no attempt is in flight (its outcome could not be
    /// recorded): queued again now. The recipient side makes the repeat harmless.
    pub fn requeue(&mut self, d: &Due, now: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?3, updated_at = ?3, last_error = 'interrupted: the outcome of the last attempt could not be recorded' WHERE transfer_id = ?1 AND recipient = ?2 AND state = 'delivering'",
            )?
            .execute(params![d.transfer_id, d.recipient, now])?;
        Ok(n == 1)
    }

    /// Marks a due delivery as in flight and counts the attempt. False if someone else got it
    /// or it is no longer due.
    pub fn claim_delivery(&mut self, d: &Due, now: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivering', attempts = attempts + 1, updated_at = ?3 WHERE transfer_id = ?1 AND recipient = ?2 AND state IN ('queued', 'retrying')",
            )?
            .execute(params![d.transfer_id, d.recipient, now])?;
        Ok(n == 1)
    }

    /// Records an attempt's outcome; when it was the transfer's last open delivery, marks the
    /// transfer complete (which starts the payload's grace period).
    pub fn finish_delivery(
        &mut self,
        transfer_id: &str,
        recipient: &str,
        finish: &Finish,
        now: &str,
    ) -> Result<(), StoreError> {
        let (state, next, error, receipt, delivered) = finish.columns(now);
        self.conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, last_error = COALESCE(?5, last_error), receipt = ?6, delivered_at = ?7, updated_at = ?8 WHERE transfer_id = ?1 AND recipient = ?2",
            )?
            .execute(params![transfer_id, recipient, state, next, error, receipt, delivered, now])?;
        let open: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM deliveries WHERE transfer_id = ?1 AND state NOT IN ('delivered', 'dead')")?
            .query_row(params![transfer_id], |r| r.get(0))?;
        if open == 0 {
            self.conn
                .prepare_cached(
                    "UPDATE transfers SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
                )?
                .execute(params![transfer_id, now])?;
        }
        Ok(())
    }

    /// Forgets a transfer's sealed payload. The caller deletes the file after the commit; if it
    /// cannot (a crash in between), the file no longer belongs to any row and the start-up sweep
    /// removes it.
    pub fn mark_purged(&mut self, id: &TransferId, now: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE transfers SET payload_purged_at = ?2, payload_inline = NULL, payload_file = NULL WHERE id = ?1")?
            .execute(params![id.to_string(), now])?;
        Ok(())
    }
}

/// Wakes the delivery worker when there is something new to deliver: ingest rings it after a
/// commit that queued a delivery, so that the worker does not wait for its next poll.
#[derive(Clone, Default)]
pub struct Wake(std::sync::Arc<tokio::sync::Notify>);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }

    /// Waits for the next ring (or returns at once for one that came while nobody waited).
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}
