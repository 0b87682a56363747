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
