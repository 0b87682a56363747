//! The delivery queue: one row per (transfer, recipient) in `deliveries`, moving
//! queued → delivering → delivered | retrying → ... → delivered | dead. The worker reads what is
//! due and changes state only through the single writer, so a claim, its outcome and the
//! attempt's log record are each one committed step.
//!
//! On a shared store (several nodes, one PostgreSQL) a claim is also a [`Lease`]: the node's
//! name and a time, renewed while the attempt runs. A delivery whose lease lapsed (its node died
//! mid-attempt) is due again for any node; only the node holding the lease records the outcome,
//! so one presumed dead cannot overwrite the newer attempt's; and a node recovers, or queues
//! again, only its own stranded attempts, never another node's that are still running.

use super::db::{Db, Row, Value};
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
fn parsed<T: std::str::FromStr>(r: &Row, i: usize) -> Result<T, StoreError> {
    let s = r.text(i)?;
    s.parse().map_err(|_| bad_value(i, &s))
}

fn bad_value(i: usize, s: &str) -> StoreError {
    StoreError::Damaged(format!(
        "column {i}: `{s}` is not a valid value for this column"
    ))
}

/// A claim on a shared store: which node holds it, and until when unless renewed. Times are
/// the store's stamps (`clock::stamp`), which sort as they read; the nodes' clocks must agree
/// (NTP) to well within the lease.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub node: &'a str,
    pub until: &'a str,
}

fn limit(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn due_rows(rows: Vec<Row>) -> Result<Vec<Due>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Due {
                transfer_id: r.text(0)?,
                recipient: r.text(1)?,
            })
        })
        .collect()
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

/// Deliveries due at `now`: queued or retrying and their time come, and on a `shared` store
/// also those being attempted under a lease that lapsed (the node attempting them died) or
/// under none (an attempt a single node was making when it stopped, copied in by `postern
/// store copy`).
pub fn due(db: &dyn Db, now: &str, n: usize, shared: bool) -> Result<Vec<Due>, StoreError> {
    let mut rows = db.rows(
        "SELECT transfer_id, recipient FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
        &[now.into(), limit(n)],
    )?;
    if shared {
        rows.extend(db.rows(
            "SELECT transfer_id, recipient FROM deliveries WHERE state = 'delivering' AND (lease_until IS NULL OR lease_until < ?1) ORDER BY lease_until LIMIT ?2",
            &[now.into(), limit(n)],
        )?);
    }
    due_rows(rows)
}

/// When the next queued or retrying delivery falls due.
pub fn next_due(db: &dyn Db) -> Result<Option<String>, StoreError> {
    db.row(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('queued', 'retrying')",
        &[],
    )?
    .map_or(Ok(None), |r| r.opt_text(0))
}

/// The queue as an operator sees it: how many deliveries are in each pending state, and when
/// the oldest transfer with a pending delivery was accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depth {
    pub by_state: Vec<(String, u64)>,
    pub oldest_pending_accepted_at: Option<String>,
}

pub fn depth(db: &dyn Db) -> Result<Depth, StoreError> {
    let by_state = db
        .rows(
            "SELECT state, COUNT(*) FROM deliveries WHERE state IN ('queued', 'delivering', 'retrying') GROUP BY state",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
        .collect::<Result<_, StoreError>>()?;
    let oldest_pending_accepted_at = db
        .row(
            "SELECT MIN(t.accepted_at) FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE d.state IN ('queued', 'delivering', 'retrying')",
            &[],
        )?
        .map_or(Ok(None), |r| r.opt_text(0))?;
    Ok(Depth {
        by_state,
        oldest_pending_accepted_at,
    })
}

pub fn job(db: &dyn Db, transfer_id: &str, recipient: &str) -> Result<Option<Job>, StoreError> {
    let Some(r) = db.row(
        "SELECT d.transfer_id, d.recipient, d.channel, d.attempts, t.sender, t.accepted_at, t.purpose, t.marking, t.payload_file, t.payload_inline, t.payload_size, t.sealed_envelope
         FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE d.transfer_id = ?1 AND d.recipient = ?2",
        &[transfer_id.into(), recipient.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Job {
        transfer_id: parsed(&r, 0)?,
        recipient: parsed(&r, 1)?,
        channel: r.text(2)?,
        attempt: r.int(3)?,
        sender: parsed(&r, 4)?,
        accepted_at: {
            let at = r.text(5)?;
            crate::clock::parse(&at).ok_or_else(|| bad_value(5, &at))?
        },
        purpose: r.text(6)?,
        marking: r.text(7)?,
        payload_file: r.opt_text(8)?,
        payload_inline: match r.value(9) {
            Value::Null => None,
            _ => Some(r.blob(9)?),
        },
        payload_size: u64::try_from(r.int(10)?).unwrap_or(0),
        sealed_envelope: r.blob(11)?,
    }))
}

/// Deliveries in flight (`delivering`) whose claim or last change is older than `before`: on a
/// shared store, only those `node` holds.
pub fn stale_in_flight(
    db: &dyn Db,
    before: &str,
    node: Option<&str>,
) -> Result<Vec<Due>, StoreError> {
    due_rows(match node {
        None => db.rows(
            "SELECT transfer_id, recipient FROM deliveries WHERE state = 'delivering' AND updated_at < ?1",
            &[before.into()],
        )?,
        Some(node) => db.rows(
            "SELECT transfer_id, recipient FROM deliveries WHERE state = 'delivering' AND updated_at < ?1 AND lease_node = ?2",
            &[before.into(), node.into()],
        )?,
    })
}

/// Transfers whose every recipient is delivered or dead since before `cutoff`, payload still held.
pub fn purgeable(
    db: &dyn Db,
    cutoff: &str,
    n: usize,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    db.rows(
        "SELECT id, payload_file FROM transfers WHERE payload_purged_at IS NULL AND completed_at IS NOT NULL AND completed_at <= ?1 ORDER BY completed_at LIMIT ?2",
        &[cutoff.into(), limit(n)],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
    .collect()
}

/// After a restart, deliveries that were in flight are retried (their outcome is unknown:
/// the recipient side makes a repeat harmless). On a shared store, only `node`'s own: another
/// node's may still be running, and its lease says when it is not.
pub fn recover_in_flight(db: &dyn Db, now: &str, node: Option<&str>) -> Result<usize, StoreError> {
    const SQL: &str = "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?1, updated_at = ?1, last_error = 'interrupted: the gateway stopped during the attempt' WHERE state = 'delivering'";
    let n = match node {
        None => db.execute(SQL, &[now.into()])?,
        Some(node) => db.execute(
            &format!("{SQL} AND lease_node = ?2"),
            &[now.into(), node.into()],
        )?,
    };
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// A delivery left `delivering` although no attempt is in flight (its outcome could not be
/// recorded): queued again now. The recipient side makes the repeat harmless. On a shared
/// store, only if `node` still holds it.
pub fn requeue(db: &dyn Db, d: &Due, now: &str, node: Option<&str>) -> Result<bool, StoreError> {
    const SQL: &str = "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?3, updated_at = ?3, last_error = 'interrupted: the outcome of the last attempt could not be recorded' WHERE transfer_id = ?1 AND recipient = ?2 AND state = 'delivering'";
    let mut args: Vec<Value> = vec![(&d.transfer_id).into(), (&d.recipient).into(), now.into()];
    let n = match node {
        None => db.execute(SQL, &args)?,
        Some(node) => {
            args.push(node.into());
            db.execute(&format!("{SQL} AND lease_node = ?4"), &args)?
        }
    };
    Ok(n == 1)
}

/// Marks a due delivery as in flight and counts the attempt. False if someone else got it
/// or it is no longer due. With a `lease` (a shared store) the claim is that node's until the
/// lease's time, and a delivery whose earlier lease lapsed is taken over.
pub fn claim_delivery(
    db: &dyn Db,
    d: &Due,
    now: &str,
    lease: Option<Lease<'_>>,
) -> Result<bool, StoreError> {
    let n = match lease {
        None => db.execute(
            "UPDATE deliveries SET state = 'delivering', attempts = attempts + 1, updated_at = ?3 WHERE transfer_id = ?1 AND recipient = ?2 AND state IN ('queued', 'retrying')",
            &[(&d.transfer_id).into(), (&d.recipient).into(), now.into()],
        )?,
        Some(l) => db.execute(
            "UPDATE deliveries SET state = 'delivering', attempts = attempts + 1, updated_at = ?3, lease_node = ?4, lease_until = ?5 WHERE transfer_id = ?1 AND recipient = ?2 AND ((state IN ('queued', 'retrying') AND next_attempt_at <= ?3) OR (state = 'delivering' AND (lease_until IS NULL OR lease_until < ?3)))",
            &[
                (&d.transfer_id).into(),
                (&d.recipient).into(),
                now.into(),
                l.node.into(),
                l.until.into(),
            ],
        )?,
    };
    Ok(n == 1)
}

/// Extends every lease `lease.node` holds on an attempt to `lease.until`; how many.
///
/// On PostgreSQL a row another transaction has locked is passed over, not waited for: it is
/// this node's other writer recording that attempt's outcome (or claiming it afresh), which
/// ends or renews the lease itself. Waiting could deadlock: the renewal locks the node's
/// attempts in the table's order, a batch of outcomes in its jobs' order. For the same reason
/// it runs in a transaction of its own ([`crate::store::Store::renew_leases`]), not in a
/// writer's batch, whose other jobs would hold its locks until their commit.
pub fn renew_leases(db: &dyn Db, lease: Lease<'_>) -> Result<u64, StoreError> {
    let sql = if db.dialect() == super::db::Dialect::Postgres {
        "UPDATE deliveries SET lease_until = ?2 WHERE (transfer_id, recipient) IN (SELECT transfer_id, recipient FROM deliveries WHERE state = 'delivering' AND lease_node = ?1 FOR UPDATE SKIP LOCKED)"
    } else {
        "UPDATE deliveries SET lease_until = ?2 WHERE state = 'delivering' AND lease_node = ?1"
    };
    db.execute(sql, &[lease.node.into(), lease.until.into()])
}

/// The attempt an outcome belongs to, on a shared store: the node that made it and its number.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub node: &'a str,
    /// `None` for a delivery ended without an attempt (its row damaged).
    pub number: Option<i64>,
}

/// Records an attempt's outcome; when it was the transfer's last open delivery, marks the
/// transfer complete (which starts the payload's grace period). On a shared store the outcome
/// is recorded only while the attempt still holds the delivery (the same node, the same
/// attempt, still in flight): if its lease lapsed and another attempt took the delivery over,
/// on another node or this one, that newer attempt's outcome is the one that counts (false
/// here).
pub fn finish_delivery(
    db: &dyn Db,
    transfer_id: &str,
    recipient: &str,
    finish: &Finish,
    now: &str,
    attempt: Option<Attempt<'_>>,
) -> Result<bool, StoreError> {
    if !record_outcome(db, transfer_id, recipient, finish, now, attempt)? {
        return Ok(false);
    }
    complete_if_done(db, transfer_id, now)?;
    Ok(true)
}

/// [`finish_delivery`] without its last step: whether the transfer is now complete is left to
/// the caller: a shared store's batch settles it once for all its outcomes, at its end.
pub(crate) fn record_outcome(
    db: &dyn Db,
    transfer_id: &str,
    recipient: &str,
    finish: &Finish,
    now: &str,
    attempt: Option<Attempt<'_>>,
) -> Result<bool, StoreError> {
    let (state, next, error, receipt, delivered) = finish.columns(now);
    const SQL: &str = "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, last_error = COALESCE(?5, last_error), receipt = ?6, delivered_at = ?7, updated_at = ?8";
    let mut args: Vec<Value> = vec![
        transfer_id.into(),
        recipient.into(),
        state.into(),
        next.into(),
        error.into(),
        receipt.into(),
        delivered.into(),
        now.into(),
    ];
    let n = match attempt {
        None => db.execute(
            &format!("{SQL} WHERE transfer_id = ?1 AND recipient = ?2"),
            &args,
        )?,
        Some(a) => {
            args.push(a.node.into());
            let which = match a.number {
                Some(n) => {
                    args.push(Value::Int(n));
                    " AND state = 'delivering' AND attempts = ?10"
                }
                None => "",
            };
            db.execute(
                &format!("{SQL}, lease_until = NULL WHERE transfer_id = ?1 AND recipient = ?2 AND lease_node = ?9{which}"),
                &args,
            )?
        }
    };
    Ok(n > 0)
}

/// Marks the transfer complete at `now` if none of its deliveries is still open.
fn complete_if_done(db: &dyn Db, transfer_id: &str, now: &str) -> Result<(), StoreError> {
    // On a shared store, the transfer's row next (the delivery's, then the transfer's, the
    // order a purge takes them in): two nodes finishing its last two deliveries at once (their
    // batches run side by side) take turns here, so that the second counts after the first's
    // outcome and completes the transfer. (A single node's batches run one at a time.)
    if db.dialect() == super::db::Dialect::Postgres {
        db.execute(
            "SELECT 1 FROM transfers WHERE id = ?1 FOR UPDATE",
            &[transfer_id.into()],
        )?;
    }
    let open = db
        .row(
            "SELECT COUNT(*) FROM deliveries WHERE transfer_id = ?1 AND state NOT IN ('delivered', 'dead')",
            &[transfer_id.into()],
        )?
        .map_or(Ok(0), |r| r.int(0))?;
    if open == 0 {
        db.execute(
            "UPDATE transfers SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
            &[transfer_id.into(), now.into()],
        )?;
    }
    Ok(())
}

/// Forgets a transfer's sealed payload. The caller deletes the file after the commit; if it
/// cannot (a crash in between), the file no longer belongs to any row and the start-up sweep
/// removes it.
/// False if it was already forgotten (by another node's purge): nothing to record.
pub fn mark_purged(db: &dyn Db, id: &TransferId, now: &str) -> Result<bool, StoreError> {
    if let Some(file) = db
        .row(
            "SELECT payload_file FROM transfers WHERE id = ?1",
            &[id.to_string().into()],
        )?
        .map_or(Ok(None), |r| r.opt_text(0))?
    {
        super::payloads::forget(db, super::payloads::Area::Spool, &file)?;
    }
    let n = db.execute(
        "UPDATE transfers SET payload_purged_at = ?2, payload_inline = NULL, payload_file = NULL WHERE id = ?1 AND payload_purged_at IS NULL",
        &[id.to_string().into(), now.into()],
    )?;
    Ok(n == 1)
}

impl Tx<'_> {
    pub fn recover_in_flight(&mut self, now: &str) -> Result<usize, StoreError> {
        recover_in_flight(self.db(), now, self.node)
    }

    pub fn requeue(&mut self, d: &Due, now: &str) -> Result<bool, StoreError> {
        requeue(self.db(), d, now, self.node)
    }

    /// Claims `d` at `now`; on a shared store, leased to this node until `until`.
    pub fn claim_delivery(&mut self, d: &Due, now: &str, until: &str) -> Result<bool, StoreError> {
        let lease = self.node.map(|node| Lease { node, until });
        claim_delivery(self.db(), d, now, lease)
    }

    /// Records the outcome of attempt `number` (see [`finish_delivery`]).
    pub fn finish_delivery(
        &mut self,
        transfer_id: &str,
        recipient: &str,
        finish: &Finish,
        now: &str,
        number: Option<i64>,
    ) -> Result<bool, StoreError> {
        let attempt = self.node.map(|node| Attempt { node, number });
        let db = self.db;
        match self.later.as_deref_mut() {
            // A shared store's batch that appends at its end settles the transfer's completion
            // there too (see `Later`).
            Some(later) => {
                let recorded = record_outcome(db, transfer_id, recipient, finish, now, attempt)?;
                if recorded {
                    later
                        .completions
                        .push((transfer_id.to_owned(), now.to_owned()));
                }
                Ok(recorded)
            }
            None => finish_delivery(db, transfer_id, recipient, finish, now, attempt),
        }
    }

    pub fn mark_purged(&mut self, id: &TransferId, now: &str) -> Result<bool, StoreError> {
        mark_purged(self.db(), id, now)
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
