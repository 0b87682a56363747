//! `postern log verify` over a PostgreSQL store: the same streaming check of the chain and the
//! signed checkpoints as over SQLite (`log::verify`, pure over rows), read in one consistent
//! snapshot while the nodes go on appending. The search indexes and the delivery states are not
//! yet compared here (the SQLite check does); the report says so.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;

use super::{PgError, Pool};
use crate::log::HeadAcceptedRecord;
use crate::log::verify::{
    self, Acceptance, Checkpoint, Lookup, OwnedRow, PublicKey, Report, Row, Stop,
};

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
    let (first, last): (Option<i64>, Option<i64>) = {
        let r = tx
            .query_one("SELECT MIN(seq), MAX(seq) FROM log", &[])
            .await
            .map_err(err)?;
        (r.get(0), r.get(1))
    };
    let bound = last.unwrap_or(0);
    let own = checkpoints(&tx, "WHERE seq <= $1", &[&bound], pool).await?;
    let accepted = acceptances(&tx, keys, external, &own, pool).await?;
    let (cps, used) = verify::merge_checkpoints(
        own,
        external
            .iter()
            .filter(|c| c.seq <= bound)
            .cloned()
            .collect(),
        &accepted,
        first,
    );
    let mut v = verify::Verifier::new(keys, cps);
    let rows = tx
        .query_raw(
            "SELECT seq, prev_hash, hash, body FROM log ORDER BY seq",
            std::iter::empty::<i64>(),
        )
        .await
        .map_err(err)?;
    futures_util::pin_mut!(rows);
    let mut stop = None;
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let (prev, hash, body): (Vec<u8>, Vec<u8>, Vec<u8>) = (r.get(1), r.get(2), r.get(3));
        let row = Row {
            seq: r.get(0),
            prev_hash: &prev,
            hash: &hash,
            body: &body,
        };
        if let Err(s) = v.row(row) {
            stop = Some(s);
            break;
        }
    }
    let first_break = match stop {
        None => v.finish(),
        Some(Stop::Break(b)) => Some(b),
        Some(Stop::Suspect(s)) => {
            // Only after a break: the whole chain in memory, to say what kind of break it is.
            let mut lookup = Rows::default();
            for r in tx
                .query("SELECT seq, prev_hash, hash, body FROM log", &[])
                .await
                .map_err(err)?
            {
                let row = OwnedRow {
                    seq: r.get(0),
                    prev_hash: r.get(1),
                    hash: r.get(2),
                    body: r.get(3),
                };
                lookup.rows.insert(row.seq, row);
            }
            Some(verify::classify(&s, &mut lookup).unwrap_or_else(|e| match e {}))
        }
    };
    let mut report = v.report(first_break);
    report.accepted = accepted;
    Ok((report, used))
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
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    pool: &Pool,
) -> Result<Vec<Checkpoint>, PgError> {
    let rows = tx
        .query(
            &format!(
                "SELECT seq, at, hash, public_key, signature FROM checkpoints {filter} ORDER BY seq"
            ),
            params,
        )
        .await
        .map_err(|e| pool.err(e))?;
    Ok(rows
        .iter()
        .map(|r| Checkpoint {
            seq: r.get(0),
            at: r.get(1),
            hash: r.get(2),
            public_key: r.get(3),
            signature: r.get(4),
        })
        .collect())
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
        let (seq, body, hash): (i64, Vec<u8>, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
        // A body that is not an acceptance is a break the chain check reports.
        if let Ok(a) = serde_json::from_slice::<HeadAcceptedRecord>(&body) {
            found.push((
                Acceptance {
                    seq,
                    at: a.at,
                    found: a.found,
                    found_seq: a.found_seq,
                    checkpoint_seq: a.checkpoint_seq,
                    valid_to: a.valid_to,
                    reason: a.reason,
                },
                hash,
            ));
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
