//! `postern log verify` over a PostgreSQL store: the same streaming check of the chain and the
//! signed checkpoints as over SQLite (`log::verify`, pure over rows), read in one consistent
//! snapshot while the nodes go on appending. The search indexes and the delivery states are not
//! yet compared here (the SQLite check does); `postern log verify` says so.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;

use super::{PgError, Pool};
use crate::log::verify::{self, Acceptance, Checkpoint, Lookup, OwnedRow, PublicKey, Report, Stop};

/// Verifies the log in the database behind `pool`; also how many of `external` were used.
pub async fn verify_log(
    pool: &Pool,
    keys: &[PublicKey],
    external: &[Checkpoint],
) -> Result<(Report, usize), PgError> {
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
    let own = checkpoints(&tx, pool).await?;
    let accepted = acceptances(&tx, keys, external, &own, pool).await?;
    let (cps, used) = verify::merge_checkpoints(own, external.to_vec(), &accepted, first);
    let mut v = verify::Verifier::new(keys, cps);
    let mut stop = None;
    {
        let rows = tx
            .query_raw(
                "SELECT seq, prev_hash, hash, body FROM log ORDER BY seq",
                std::iter::empty::<i64>(),
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
        }
        // The stream ends here, before any other query on this connection: its unread rows
        // would otherwise hold up the next answer for ever.
    }
    let first_break = match stop {
        None => v.finish(),
        Some(Stop::Break(b)) => Some(b),
        Some(Stop::Suspect(s)) => {
            // Only after a break: the chain's rows in memory, to say what kind of break it is.
            let mut lookup = Rows::default();
            for r in tx
                .query("SELECT seq, prev_hash, hash, body FROM log", &[])
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
    pool: &Pool,
) -> Result<Vec<Checkpoint>, PgError> {
    let err = |e| pool.err(e);
    let rows = tx
        .query(
            "SELECT seq, at, hash, public_key, signature FROM checkpoints ORDER BY seq",
            &[],
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
