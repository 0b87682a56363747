//! The transfer log in PostgreSQL: one hash chain however many nodes append to it. An append
//! locks the chain's head row (`log_head`, `FOR UPDATE`) in the appending transaction, so the
//! nodes' appends are serialised into one order and a transaction that rolls back leaves no
//! gap; each node still commits many records at once (its group commit holds the lock for one
//! transaction, not one record). Every record says which node wrote it.

use crate::domain::ids::OrgId;
use crate::log::{GENESIS, LogEntry, chain_hash};

use super::PgError;

/// Appends `entries` in order to the chain, in the caller's transaction (the head stays locked
/// until it ends); their sequence numbers.
pub async fn append(
    tx: &tokio_postgres::Transaction<'_>,
    target: &str,
    node: &str,
    entries: &[LogEntry],
) -> Result<Vec<i64>, PgError> {
    let err = |e| PgError::of(target, e);
    // The first append to an empty database makes the head row; every later one finds it.
    tx.execute(
        "INSERT INTO log_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING",
        &[&GENESIS.as_slice()],
    )
    .await
    .map_err(err)?;
    let head = tx
        .query_one(
            "SELECT seq, hash FROM log_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(err)?;
    let mut seq: i64 = head.get(0);
    let stored: Vec<u8> = head.get(1);
    let mut hash: [u8; 32] = stored.as_slice().try_into().map_err(|_| PgError::BadHead {
        target: target.to_owned(),
        seq,
    })?;
    let insert = tx
        .prepare(
            "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash, node)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await
        .map_err(err)?;
    let subject = tx
        .prepare(
            "INSERT INTO log_subjects (subject_hash, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(err)?;
    let mut seqs = Vec::with_capacity(entries.len());
    for e in entries {
        let prev = hash;
        seq += 1;
        hash = chain_hash(&prev, seq, &e.body);
        let transfer = e.transfer_id.map(|t| t.to_string());
        tx.execute(
            &insert,
            &[
                &seq,
                &e.at,
                &e.kind.as_str(),
                &transfer,
                &e.sender.as_ref().map(OrgId::as_str),
                &e.code,
                &e.body,
                &prev.as_slice(),
                &hash.as_slice(),
                &node,
            ],
        )
        .await
        .map_err(err)?;
        for s in &e.subjects {
            tx.execute(&subject, &[&s.as_str(), &seq])
                .await
                .map_err(err)?;
        }
        if let Some(f) = &e.facets {
            tx.execute(
                "INSERT INTO log_facets (seq, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &seq,
                    &e.at,
                    &f.decision,
                    &transfer,
                    &e.sender.as_ref().map(OrgId::as_str),
                    &f.originator,
                    &f.purpose,
                    &f.lawful_basis,
                    &f.marking,
                    &f.urgency,
                    &f.correction_of.map(|t| t.to_string()),
                    &i64::from(f.rationale_to_follow),
                ],
            )
            .await
            .map_err(err)?;
            for r in &f.recipients {
                tx.execute(
                    "INSERT INTO log_recipients (recipient, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&r.as_str(), &seq],
                )
                .await
                .map_err(err)?;
            }
        }
        seqs.push(seq);
    }
    tx.execute(
        "UPDATE log_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq, &hash.as_slice()],
    )
    .await
    .map_err(err)?;
    Ok(seqs)
}
