//! `postern log verify` over a PostgreSQL store: the same streaming check of the chain, the
//! signed checkpoints, the search indexes and the delivery states as over SQLite (`log::verify`,
//! pure over rows), read in one consistent snapshot while the nodes go on appending. Each
//! record comes with what the store files it under (its facets, recipients and subjects, joined
//! in the same query); index rows no record claims are looked for after.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;

use super::{PgError, Pool};
use crate::log::verify::{
    self, Acceptance, Break, Checkpoint, IndexChecker, Lookup, OwnedRow, PublicKey, Report, Stop,
    StoredFacets, StoredIndex,
};

/// Verifies the log in the database behind `pool`; also how many of `external` were used.
pub async fn verify_log(
    pool: &Pool,
    keys: &[PublicKey],
    external: &[Checkpoint],
) -> Result<(Report, usize), PgError> {
    check(pool, keys, external, None).await
}

/// Verifies the records up to `up_to` only, with the checkpoints that vouch for them and their
/// index rows (what a retention purge checks before it deletes them); the delivery states
/// are left to a whole check, as over SQLite.
pub async fn verify_prefix(pool: &Pool, keys: &[PublicKey], up_to: i64) -> Result<Report, PgError> {
    check(pool, keys, &[], Some(up_to)).await.map(|(r, _)| r)
}

async fn check(
    pool: &Pool,
    keys: &[PublicKey],
    external: &[Checkpoint],
    up_to: Option<i64>,
) -> Result<(Report, usize), PgError> {
    let bound = up_to.unwrap_or(i64::MAX);
    let mut client = pool.get().await?;
    let err = |e| pool.err(e);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(err)?;
    let first: Option<i64> = tx
        .query_one("SELECT MIN(seq) FROM log", &[])
        .await
        .map_err(err)?
        .try_get(0)
        .map_err(err)?;
    // Every checkpoint, also those past the last record: a log cut short together with its
    // newest records is caught by the checkpoints that still name them (as over SQLite).
    let own = checkpoints(&tx, bound, pool).await?;
    let accepted = acceptances(&tx, keys, external, &own, pool).await?;
    let external: Vec<Checkpoint> = external
        .iter()
        .filter(|c| c.seq <= bound)
        .cloned()
        .collect();
    let (cps, used) = verify::merge_checkpoints(own, external, &accepted, first);
    let mut v = verify::Verifier::new(keys, cps);
    let mut ix = IndexChecker::default();
    // Index rows come sorted byte by byte (COLLATE "C"), as the check sorts what a record says:
    // a database's own collation may order `nhs-trust` and `nhsengland` the other way.
    // An index that disagrees is kept aside while the chain is checked on: a break in the chain
    // itself explains more, and is what is reported if there is one.
    let mut index_break: Option<Break> = None;
    let mut stop = None;
    {
        let rows = tx
            .query_raw(
                "SELECT l.seq, l.prev_hash, l.hash, l.body, l.at, l.kind, l.transfer_id, l.sender, l.code,
                        f.seq IS NOT NULL, f.at, f.decision, f.transfer_id, f.sender, f.originator, f.purpose,
                        f.lawful_basis, f.marking, f.urgency, f.correction_of, f.rationale_pending,
                        ARRAY(SELECT recipient FROM log_recipients r WHERE r.seq = l.seq ORDER BY recipient COLLATE \"C\"),
                        ARRAY(SELECT subject_hash FROM log_subjects s WHERE s.seq = l.seq ORDER BY subject_hash COLLATE \"C\")
                 FROM log l LEFT JOIN log_facets f ON f.seq = l.seq WHERE l.seq <= $1 ORDER BY l.seq",
                [bound],
            )
            .await
            .map_err(err)?;
        futures_util::pin_mut!(rows);
        while let Some(r) = rows.try_next().await.map_err(err)? {
            let row = owned(&r, pool)?;
            if let Err(s) = v.row(row.as_row()) {
                stop = Some(s);
                break;
            }
            if index_break.is_none() {
                let stored = filed(&r, pool)?;
                index_break = ix.record(row.seq, &row.body, &stored).err();
            }
        }
        // The stream ends here, before any other query on this connection: its unread rows
        // would otherwise hold up the next answer for ever.
    }
    let first_break = match stop {
        None => match v
            .finish()
            .or(index_break)
            .or_else(|| ix.finish(up_to.is_some()))
        {
            Some(b) => Some(b),
            None => match orphans(&tx, bound, pool).await? {
                Some(b) => Some(b),
                None if up_to.is_none() => deliveries(&tx, &mut ix, pool).await?,
                None => None,
            },
        },
        Some(Stop::Break(b)) => Some(b),
        Some(Stop::Suspect(s)) => {
            // Only after a break: the chain's rows in memory, to say what kind of break it is.
            let mut lookup = Rows::default();
            for r in tx
                .query(
                    "SELECT seq, prev_hash, hash, body FROM log WHERE seq <= $1",
                    &[&bound],
                )
                .await
                .map_err(err)?
            {
                let row = owned(&r, pool)?;
                lookup.rows.insert(row.seq, row);
            }
            Some(verify::classify(&s, &mut lookup).unwrap_or_else(|e| match e {}))
        }
    };
    let mut report = v.report(first_break);
    report.accepted = accepted;
    Ok((report, used))
}

/// A log row as stored; a column that cannot be read is an error, not a panic.
fn owned(r: &tokio_postgres::Row, pool: &Pool) -> Result<OwnedRow, PgError> {
    let err = |e| pool.err(e);
    Ok(OwnedRow {
        seq: r.try_get(0).map_err(err)?,
        prev_hash: r.try_get(1).map_err(err)?,
        hash: r.try_get(2).map_err(err)?,
        body: r.try_get(3).map_err(err)?,
    })
}

/// What the store files a record under, from the columns after the log's own.
fn filed(r: &tokio_postgres::Row, pool: &Pool) -> Result<StoredIndex, PgError> {
    let err = |e| pool.err(e);
    let text = |i: usize| -> Result<Option<String>, PgError> { r.try_get(i).map_err(err) };
    let has_facets: bool = r.try_get(9).map_err(err)?;
    let facets = if has_facets {
        Some(StoredFacets {
            at: text(10)?.unwrap_or_default(),
            decision: text(11)?.unwrap_or_default(),
            transfer_id: text(12)?,
            sender: text(13)?,
            originator: text(14)?,
            purpose: text(15)?,
            lawful_basis: text(16)?,
            marking: text(17)?,
            urgency: text(18)?,
            correction_of: text(19)?,
            rationale_pending: r.try_get::<_, Option<i64>>(20).map_err(err)?.unwrap_or(0) != 0,
        })
    } else {
        None
    };
    Ok(StoredIndex {
        at: text(4)?.unwrap_or_default(),
        kind: text(5)?.unwrap_or_default(),
        transfer_id: text(6)?,
        sender: text(7)?,
        code: text(8)?,
        facets,
        recipients: r.try_get(21).map_err(err)?,
        subjects: r.try_get(22).map_err(err)?,
    })
}

/// The first index row filed under a record that does not exist (added), if any.
async fn orphans(
    tx: &tokio_postgres::Transaction<'_>,
    bound: i64,
    pool: &Pool,
) -> Result<Option<Break>, PgError> {
    let mut first: Option<Break> = None;
    for table in ["log_facets", "log_recipients", "log_subjects"] {
        let seq: Option<i64> = tx
            .query_one(
                &format!(
                    "SELECT MIN(i.seq) FROM {table} i WHERE i.seq <= $1 AND NOT EXISTS (SELECT 1 FROM log l WHERE l.seq = i.seq)"
                ),
                &[&bound],
            )
            .await
            .map_err(|e| pool.err(e))?
            .try_get(0)
            .map_err(|e| pool.err(e))?;
        if let Some(seq) = seq
            && first.as_ref().is_none_or(|b| seq < b.seq)
        {
            first = Some(verify::orphan_index(table, seq));
        }
    }
    Ok(first)
}

/// Every delivery's state against the last attempt the records hold for it, and every delivery
/// an accepted transfer queued against the queue's rows (as over SQLite).
async fn deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    ix: &mut IndexChecker,
    pool: &Pool,
) -> Result<Option<Break>, PgError> {
    let err = |e| pool.err(e);
    let at = |transfer: String| async move {
        let seq: Option<i64> = tx
            .query_one(
                "SELECT MIN(seq) FROM log WHERE transfer_id = $1",
                &[&transfer],
            )
            .await
            .map_err(|e| pool.err(e))?
            .try_get(0)
            .map_err(|e| pool.err(e))?;
        Ok::<_, PgError>(seq.unwrap_or(0))
    };
    let rows = tx
        .query("SELECT transfer_id, recipient, state FROM deliveries", &[])
        .await
        .map_err(err)?;
    for r in &rows {
        let (transfer, recipient, state): (String, String, String) = (
            r.try_get(0).map_err(err)?,
            r.try_get(1).map_err(err)?,
            r.try_get(2).map_err(err)?,
        );
        if let Some(why) = ix.delivery(&transfer, &recipient, &state) {
            let message = format!(
                "the delivery of transfer {transfer} to `{recipient}` disagrees with the records: {why}"
            );
            return Ok(Some(Break::index(at(transfer).await?, message)));
        }
    }
    if let Some((transfer, recipient)) = ix.unqueued() {
        let message = format!(
            "the delivery of transfer {transfer} to `{recipient}` is recorded as accepted, but its queue row is gone"
        );
        return Ok(Some(Break::index(at(transfer).await?, message)));
    }
    Ok(None)
}

#[derive(Default)]
struct Rows {
    rows: BTreeMap<i64, OwnedRow>,
}

impl Lookup for Rows {
    type Error = std::convert::Infallible;

    fn row(&mut self, seq: i64) -> Result<Option<OwnedRow>, Self::Error> {
        Ok(self.rows.get(&seq).cloned())
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, Self::Error> {
        Ok(self.rows.values().find(|r| r.hash == hash).map(|r| r.seq))
    }
}

async fn checkpoints(
    tx: &tokio_postgres::Transaction<'_>,
    bound: i64,
    pool: &Pool,
) -> Result<Vec<Checkpoint>, PgError> {
    let err = |e| pool.err(e);
    let rows = tx
        .query(
            "SELECT seq, at, hash, public_key, signature FROM checkpoints WHERE seq <= $1 ORDER BY seq",
            &[&bound],
        )
        .await
        .map_err(err)?;
    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: r.try_get(0).map_err(err)?,
                at: r.try_get(1).map_err(err)?,
                hash: r.try_get(2).map_err(err)?,
                public_key: r.try_get(3).map_err(err)?,
                signature: r.try_get(4).map_err(err)?,
            })
        })
        .collect()
}

/// The operator's acceptances of unsigned heads that the gateway's key signed (as the SQLite
/// check takes them).
async fn acceptances(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &[PublicKey],
    external: &[Checkpoint],
    own: &[Checkpoint],
    pool: &Pool,
) -> Result<Vec<Acceptance>, PgError> {
    let rows = tx
        .query(
            "SELECT seq, body, hash FROM log WHERE kind = 'head_accepted' ORDER BY seq",
            &[],
        )
        .await
        .map_err(|e| pool.err(e))?;
    let mut found = Vec::new();
    for r in &rows {
        let err = |e| pool.err(e);
        let (seq, body, hash): (i64, Vec<u8>, Vec<u8>) = (
            r.try_get(0).map_err(err)?,
            r.try_get(1).map_err(err)?,
            r.try_get(2).map_err(err)?,
        );
        if let Some(a) = Acceptance::parse(seq, &body) {
            found.push((a, hash));
        }
    }
    let cps: Vec<Checkpoint> = external
        .iter()
        .chain(own)
        .filter(|c| found.iter().any(|(a, _)| a.seq == c.seq))
        .cloned()
        .collect();
    Ok(found
        .into_iter()
        .filter(|(a, hash)| a.is_signed(hash, &cps, keys))
        .map(|(a, _)| a)
        .collect())
}
