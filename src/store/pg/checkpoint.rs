//! Signed checkpoints of the shared chain. Every node runs the checkpoint timer, but only the
//! node holding the `checkpoints` lease signs (one signer at a time, so the checkpoints follow
//! one another); if it dies, another node takes the lease once it lapses and signs from there.
//! A checkpoint records the node that signed it. The signer also runs the retention purge.

use std::time::Duration;

use super::{PgError, Pool};
use crate::store::checkpoint::CheckpointKey;
use crate::store::checkpoint::{Reason, Signed};

/// The lease's name.
pub const LEASE: &str = "checkpoints";

/// What became of a record a node signed, as the database has it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The record is there, with the hash signed.
    Holds,
    /// Purged since (before the first record there is): gone by design.
    Purged,
    /// The log ends before it: records were lost (a failover to a replica that had not received
    /// the last commits) or deleted.
    Lost,
    /// Another record is at its seq: the log was rewritten (after a loss, the nodes that stayed
    /// up appended over the lost seqs).
    Rewritten,
}

/// Whether the record at `seq` still has the `hash` this node signed for it. The signer asks
/// before each checkpoint, so that the nodes that stay up through a failover that lost commits
/// say so at once, rather than only sign the chain as it now is.
pub async fn since(pool: &Pool, seq: i64, hash: &[u8; 32]) -> Result<Since, PgError> {
    let client = pool.get().await?;
    let err = |e| pool.err(e);
    let row = client
        .query_one(
            "SELECT (SELECT MIN(seq) FROM log), (SELECT hash FROM log WHERE seq = $1),
                    (SELECT prev_hash FROM log WHERE seq = $1::BIGINT + 1)",
            &[&seq],
        )
        .await
        .map_err(err)?;
    let first: Option<i64> = row.try_get(0).map_err(err)?;
    let at: Option<Vec<u8>> = row.try_get(1).map_err(err)?;
    let next_chains_from: Option<Vec<u8>> = row.try_get(2).map_err(err)?;
    Ok(match (first, at) {
        (_, Some(h)) if h.as_slice() == hash.as_slice() => Since::Holds,
        (_, Some(_)) => Since::Rewritten,
        // The anchor a purge left: the first record chains from it.
        (Some(f), None) if seq == f - 1 => match next_chains_from {
            Some(p) if p.as_slice() == hash.as_slice() => Since::Holds,
            _ => Since::Rewritten,
        },
        (Some(f), None) if seq < f => Since::Purged,
        _ => Since::Lost,
    })
}

/// Takes or renews the signing lease for `node` at `now`; whether `node` holds it. The purge
/// and the thinning of checkpoints are the signer's too (one node at a time checks the records
/// due, rather than every node).
pub async fn hold(
    pool: &Pool,
    node: &str,
    now: time::OffsetDateTime,
    lease: Duration,
) -> Result<bool, PgError> {
    let client = pool.get().await?;
    super::lease::take(
        &client,
        pool.target(),
        LEASE,
        node,
        &crate::clock::stamp(now),
        &crate::clock::stamp(now + lease),
    )
    .await
}

/// Signs the chain's head at `now` if this node holds (or can take) the signing lease and the
/// head moved since the last checkpoint. `None`: nothing to sign, or another node signs.
pub async fn sign_head(
    pool: &Pool,
    key: &CheckpointKey,
    node: &str,
    now: time::OffsetDateTime,
    lease: Duration,
) -> Result<Option<Signed>, PgError> {
    let at = crate::clock::stamp(now);
    let until = crate::clock::stamp(now + lease);
    let mut client = pool.get().await?;
    if !super::lease::take(&client, pool.target(), LEASE, node, &at, &until).await? {
        return Ok(None);
    }
    let tx = client.transaction().await.map_err(|e| pool.err(e))?;
    // Still ours, and held (locked) until this checkpoint is committed: a signer that stalled
    // past its lease while another node took over signs nothing.
    let held = tx
        .query_opt(
            "SELECT 1 FROM leases WHERE name = $1 AND node = $2 AND until > $3 FOR UPDATE",
            &[&LEASE, &node, &at],
        )
        .await
        .map_err(|e| pool.err(e))?;
    if held.is_none() {
        return Ok(None);
    }
    let head = tx
        .query_opt("SELECT seq, hash FROM log_head WHERE id = 1", &[])
        .await
        .map_err(|e| pool.err(e))?;
    let Some(head) = head else { return Ok(None) };
    let seq: i64 = head.get(0);
    let stored: Vec<u8> = head.get(1);
    let hash: [u8; 32] = stored.as_slice().try_into().map_err(|_| PgError::BadHead {
        target: pool.target().to_owned(),
        seq,
    })?;
    let last: Option<i64> = tx
        .query_one("SELECT MAX(seq) FROM checkpoints", &[])
        .await
        .map_err(|e| pool.err(e))?
        .get(0);
    if seq == 0 || last.is_some_and(|l| l >= seq) {
        return Ok(None);
    }
    let signed = Signed::new(key, seq, hash, &at, Reason::Interval);
    tx.execute(
        "INSERT INTO checkpoints (seq, at, hash, public_key, signature, reason, node) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &signed.seq,
            &signed.at,
            &signed.hash.as_slice(),
            &signed.public_key,
            &signed.signature,
            &signed.reason.as_str(),
            &node,
        ],
    )
    .await
    .map_err(|e| pool.err(e))?;
    tx.commit().await.map_err(|e| pool.err(e))?;
    Ok(Some(signed))
}
