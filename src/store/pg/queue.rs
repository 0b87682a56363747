//! The delivery queue in PostgreSQL, shared by every node. A node claims due deliveries with
//! `FOR UPDATE SKIP LOCKED` (two nodes never claim the same one) and holds each under a lease
//! it renews while the attempt runs. A node that dies mid-attempt stops renewing; once the
//! lease lapses another node claims the delivery again and retries it. At least once, as on a
//! single node: the recipient's inbox keeps a repeat once. An outcome is recorded only by the
//! node still holding the lease, so a node that was presumed dead cannot overwrite the newer
//! attempt's result.

use super::PgError;
pub use crate::store::queue::{Due, Finish};

/// A delivery claimed for an attempt: which, and this attempt's number (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub due: Due,
    pub attempt: i64,
    /// The node that held it before, when its lease lapsed (a node died mid-attempt).
    pub taken_over_from: Option<String>,
}

/// Claims up to `limit` deliveries that are due at `now` (queued or retrying, or being
/// attempted under a lease that lapsed before `now`, or under none: an attempt a single node
/// was making when it stopped, copied in by `postern store copy`) for `node`, leased until
/// `until`. Times
/// are the store's stamps (`clock::stamp`), which sort as they read.
pub async fn claim(
    client: &tokio_postgres::Client,
    target: &str,
    node: &str,
    now: &str,
    until: &str,
    limit: i64,
) -> Result<Vec<Claim>, PgError> {
    let rows = client
        .query(
            "WITH due AS (
                 SELECT transfer_id, recipient, lease_node AS before FROM deliveries
                 WHERE (state IN ('queued', 'retrying') AND next_attempt_at <= $2)
                    OR (state = 'delivering' AND (lease_until IS NULL OR lease_until < $2))
                 ORDER BY next_attempt_at
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE deliveries d
             SET state = 'delivering', attempts = d.attempts + 1, lease_node = $1,
                 lease_until = $3, updated_at = $2
             FROM due
             WHERE d.transfer_id = due.transfer_id AND d.recipient = due.recipient
             RETURNING d.transfer_id, d.recipient, d.attempts, due.before",
            &[&node, &now, &until, &limit],
        )
        .await
        .map_err(|e| PgError::of(target, e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let before: Option<String> = r.get(3);
            Claim {
                due: Due {
                    transfer_id: r.get(0),
                    recipient: r.get(1),
                },
                attempt: r.get(2),
                taken_over_from: before.filter(|b| b != node),
            }
        })
        .collect())
}

/// Extends `node`'s lease on the attempt it claimed; `false` if that attempt no longer holds
/// it (the lease lapsed and another attempt, on another node or this one, took it over).
pub async fn renew(
    client: &tokio_postgres::Client,
    target: &str,
    node: &str,
    claim: &Claim,
    until: &str,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "UPDATE deliveries SET lease_until = $5
             WHERE transfer_id = $1 AND recipient = $2 AND state = 'delivering' AND lease_node = $3
               AND attempts = $4",
            &[
                &claim.due.transfer_id,
                &claim.due.recipient,
                &node,
                &claim.attempt,
                &until,
            ],
        )
        .await
        .map_err(|e| PgError::of(target, e))?;
    Ok(n == 1)
}

/// Records an attempt's outcome in the caller's transaction, if that attempt still holds the
/// lease (`false` otherwise: nothing is written, so a stalled attempt cannot overwrite a newer
/// one's outcome, whichever node made it); when it was the transfer's last open delivery, the
/// transfer is complete.
pub async fn finish(
    tx: &tokio_postgres::Transaction<'_>,
    target: &str,
    node: &str,
    claim: &Claim,
    finish: &Finish,
    now: &str,
) -> Result<bool, PgError> {
    let err = |e| PgError::of(target, e);
    let due = &claim.due;
    // The transfer's row first: two nodes finishing its last two deliveries at once take turns
    // here, so the second sees the first's outcome and completes the transfer.
    tx.execute(
        "SELECT 1 FROM transfers WHERE id = $1 FOR UPDATE",
        &[&due.transfer_id],
    )
    .await
    .map_err(err)?;
    let (state, next, error, receipt, delivered) = finish.columns(now);
    let n = tx
        .execute(
            "UPDATE deliveries SET state = $5, next_attempt_at = $6, last_error = COALESCE($7, last_error),
                 receipt = $8, delivered_at = $9, updated_at = $10, lease_node = NULL, lease_until = NULL
             WHERE transfer_id = $1 AND recipient = $2 AND state = 'delivering' AND lease_node = $3
               AND attempts = $4",
            &[
                &due.transfer_id,
                &due.recipient,
                &node,
                &claim.attempt,
                &state,
                &next,
                &error,
                &receipt,
                &delivered,
                &now,
            ],
        )
        .await
        .map_err(err)?;
    if n == 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE transfers SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE transfer_id = $1 AND state NOT IN ('delivered', 'dead'))",
        &[&due.transfer_id, &now],
    )
    .await
    .map_err(err)?;
    Ok(true)
}
