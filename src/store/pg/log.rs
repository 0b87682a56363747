//! The transfer log in PostgreSQL: one hash chain however many nodes append to it. An append
//! locks the chain's head row (`log_head`, `FOR UPDATE`) in the appending transaction, so the
//! nodes' appends are serialised into one order and a transaction that rolls back leaves no
//! gap; each node still commits many records at once, one statement per table ([`Chained`],
//! what a node's store appends at the end of each batch too). Every record says which node
//! wrote it.

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
    let seq: i64 = head.get(0);
    let stored: Vec<u8> = head.get(1);
    let hash: [u8; 32] = stored.as_slice().try_into().map_err(|_| PgError::BadHead {
        target: target.to_owned(),
        seq,
    })?;
    let chained = Chained::new(seq, hash, entries);
    let node = node.to_owned();
    let [a, b, c, d] = chained.inserts(&node);
    let head_hash = chained.hash.to_vec();
    let head_params: [Param<'_>; 2] = [&chained.seq, &head_hash];
    tokio::try_join!(
        tx.execute(a.0, &a.1),
        tx.execute(b.0, &b.1),
        tx.execute(c.0, &c.1),
        tx.execute(d.0, &d.1),
        tx.execute(
            "UPDATE log_head SET seq = $1, hash = $2 WHERE id = 1",
            &head_params,
        ),
    )
    .map_err(err)?;
    Ok(chained.seqs)
}

/// A parameter of a statement.
pub(crate) type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// Records chained from a head: each one's number and hash (pure), and each table's rows as
/// arrays, so that a batch is one statement per table (UNNEST) however many records it holds.
pub(crate) struct Chained {
    /// Each record's number, in order.
    pub(crate) seqs: Vec<i64>,
    /// The head after the last.
    pub(crate) seq: i64,
    pub(crate) hash: [u8; 32],
    log: LogRows,
    subj_hash: Vec<String>,
    subj_seq: Vec<i64>,
    facets: FacetRows,
    rec_org: Vec<String>,
    rec_seq: Vec<i64>,
}

impl Chained {
    /// `entries` chained after the record `seq` whose hash is `hash`.
    pub(crate) fn new<'e>(
        seq: i64,
        hash: [u8; 32],
        entries: impl IntoIterator<Item = &'e LogEntry>,
    ) -> Chained {
        Chained::build(Some((seq, hash)), entries)
    }

    /// `entries` to be chained by the database after whatever record is the head when they
    /// are written ([`Chained::inserts_at_head`]): each one's number is its place among them
    /// (from 1), and no hash is made here.
    pub(crate) fn unchained<'e>(entries: impl IntoIterator<Item = &'e LogEntry>) -> Chained {
        Chained::build(None, entries)
    }

    fn build<'e>(
        after: Option<(i64, [u8; 32])>,
        entries: impl IntoIterator<Item = &'e LogEntry>,
    ) -> Chained {
        let (mut seq, mut hash) = after.unwrap_or((0, GENESIS));
        let mut log = LogRows::default();
        let (mut subj_hash, mut subj_seq) = (Vec::new(), Vec::new());
        let mut facets = FacetRows::default();
        let (mut rec_org, mut rec_seq) = (Vec::new(), Vec::new());
        let mut seqs = Vec::new();
        for e in entries {
            let prev = hash;
            seq += 1;
            if after.is_some() {
                hash = chain_hash(&prev, seq, &e.body);
            }
            let transfer = e.transfer_id.map(|t| t.to_string());
            let sender = e.sender.as_ref().map(|s| OrgId::as_str(s).to_owned());
            for sh in &e.subjects {
                subj_hash.push(sh.as_str().to_owned());
                subj_seq.push(seq);
            }
            if let Some(f) = &e.facets {
                facets.seq.push(seq);
                facets.at.push(e.at.clone());
                facets.decision.push(f.decision.to_owned());
                facets.transfer.push(transfer.clone());
                facets.sender.push(sender.clone());
                facets.originator.push(f.originator.clone());
                facets.purpose.push(f.purpose.clone());
                facets.basis.push(f.lawful_basis.clone());
                facets.marking.push(f.marking.clone());
                facets.urgency.push(f.urgency.clone());
                facets
                    .correction
                    .push(f.correction_of.map(|t| t.to_string()));
                facets.pending.push(i64::from(f.rationale_to_follow));
                for r in &f.recipients {
                    rec_org.push(r.as_str().to_owned());
                    rec_seq.push(seq);
                }
            }
            log.seq.push(seq);
            log.at.push(e.at.clone());
            log.kind.push(e.kind.as_str().to_owned());
            log.transfer.push(transfer);
            log.sender.push(sender);
            log.code.push(e.code.clone());
            log.body.push(e.body.clone());
            if after.is_some() {
                log.prev.push(prev.to_vec());
                log.hash.push(hash.to_vec());
            }
            seqs.push(seq);
        }
        Chained {
            seqs,
            seq,
            hash,
            log,
            subj_hash,
            subj_seq,
            facets,
            rec_org,
            rec_seq,
        }
    }

    /// The four statements that write the records and what they are filed under (`node`
    /// wrote them), with their parameters.
    pub(crate) fn inserts<'a>(&'a self, node: &'a String) -> [(&'static str, Vec<Param<'a>>); 4] {
        let (log, facets) = (&self.log, &self.facets);
        [
            (
                "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash, node)
                 SELECT *, $10 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bytea[], $9::bytea[])",
                vec![
                    &log.seq,
                    &log.at,
                    &log.kind,
                    &log.transfer,
                    &log.sender,
                    &log.code,
                    &log.body,
                    &log.prev,
                    &log.hash,
                    node,
                ],
            ),
            (
                "INSERT INTO log_subjects (subject_hash, seq)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                vec![&self.subj_hash, &self.subj_seq],
            ),
            (
                "INSERT INTO log_facets (seq, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])",
                facets.params(),
            ),
            (
                "INSERT INTO log_recipients (recipient, seq)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                vec![&self.rec_org, &self.rec_seq],
            ),
        ]
    }
}

impl Chained {
    /// The five statements that write [`Chained::unchained`] records after the chain's head,
    /// with their parameters. The first locks the head (making it, for the first append to an
    /// empty database; a head whose hash is not 32 bytes fails it, naming the fault): its
    /// answer is when the head was taken. The second chains the records in the database, each
    /// one's hash made there as [`chain_hash`] makes it (SHA-256 of the previous hash, the
    /// number as 8 bytes big-endian, and the body); the others number their rows from the
    /// head, which stays where it was until the caller moves it ([`Chained::move_head`]). Sent
    /// together with the commit, they hold the head for no round trip to this node: only for
    /// the database's own work and its flush.
    pub(crate) fn inserts_at_head<'a>(
        &'a self,
        node: &'a String,
    ) -> [(&'static str, Vec<Param<'a>>); 5] {
        let (log, facets) = (&self.log, &self.facets);
        [
            (
                "INSERT INTO log_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO UPDATE SET id = log_head.id
                 RETURNING CAST(CASE WHEN length(hash) = 32 THEN '32' ELSE 'the transfer log''s head cannot be chained from: run postern log verify' END AS INTEGER)",
                vec![&GENESIS_PARAM],
            ),
            (
                "WITH RECURSIVE head AS (SELECT seq, hash FROM log_head WHERE id = 1),
                 r AS (
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
                         WITH ORDINALITY AS u(at, kind, transfer_id, sender, code, body, n)
                 ),
                 c (n, seq, prev, hash) AS (
                     SELECT 0::bigint, seq, hash, hash FROM head
                     UNION ALL
                     SELECT r.n, c.seq + 1, c.hash, sha256(c.hash || int8send(c.seq + 1) || r.body)
                     FROM c JOIN r ON r.n = c.n + 1
                 )
                 INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash, node)
                 SELECT c.seq, r.at, r.kind, r.transfer_id, r.sender, r.code, r.body, c.prev, c.hash, $7
                 FROM c JOIN r ON r.n = c.n",
                vec![
                    &log.at,
                    &log.kind,
                    &log.transfer,
                    &log.sender,
                    &log.code,
                    &log.body,
                    node,
                ],
            ),
            (
                "INSERT INTO log_subjects (subject_hash, seq)
                 SELECT u.h, head.seq + u.n FROM UNNEST($1::text[], $2::bigint[]) AS u(h, n),
                     (SELECT seq FROM log_head WHERE id = 1) AS head
                 ON CONFLICT DO NOTHING",
                vec![&self.subj_hash, &self.subj_seq],
            ),
            (
                "INSERT INTO log_facets (seq, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending)
                 SELECT head.seq + u.n, u.at, u.decision, u.transfer_id, u.sender, u.originator, u.purpose, u.lawful_basis, u.marking, u.urgency, u.correction_of, u.rationale_pending
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])
                     AS u(n, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending),
                     (SELECT seq FROM log_head WHERE id = 1) AS head",
                facets.params(),
            ),
            (
                "INSERT INTO log_recipients (recipient, seq)
                 SELECT u.r, head.seq + u.n FROM UNNEST($1::text[], $2::bigint[]) AS u(r, n),
                     (SELECT seq FROM log_head WHERE id = 1) AS head
                 ON CONFLICT DO NOTHING",
                vec![&self.rec_org, &self.rec_seq],
            ),
        ]
    }

    /// After [`Chained::inserts_at_head`]: moves the head past the records (simple-query text;
    /// the count is a number). The hash is the last record's, as the database made it.
    pub(crate) fn move_head(&self) -> String {
        format!(
            "UPDATE log_head SET seq = seq + {n}, hash = (SELECT l.hash FROM log l WHERE l.seq = log_head.seq + {n}) WHERE id = 1",
            n = self.seq
        )
    }
}

/// The genesis hash as a statement's parameter.
static GENESIS_PARAM: &[u8] = &GENESIS;

/// The log's columns for a batch, one array each.
#[derive(Default)]
struct LogRows {
    seq: Vec<i64>,
    at: Vec<String>,
    kind: Vec<String>,
    transfer: Vec<Option<String>>,
    sender: Vec<Option<String>>,
    code: Vec<Option<String>>,
    body: Vec<Vec<u8>>,
    prev: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl FacetRows {
    /// The twelve arrays, in the columns' order, as statement parameters.
    fn params(&self) -> Vec<Param<'_>> {
        vec![
            &self.seq,
            &self.at,
            &self.decision,
            &self.transfer,
            &self.sender,
            &self.originator,
            &self.purpose,
            &self.basis,
            &self.marking,
            &self.urgency,
            &self.correction,
            &self.pending,
        ]
    }
}

/// The search index's columns for a batch.
#[derive(Default)]
struct FacetRows {
    seq: Vec<i64>,
    at: Vec<String>,
    decision: Vec<String>,
    transfer: Vec<Option<String>>,
    sender: Vec<Option<String>>,
    originator: Vec<Option<String>>,
    purpose: Vec<Option<String>>,
    basis: Vec<Option<String>>,
    marking: Vec<Option<String>>,
    urgency: Vec<Option<String>>,
    correction: Vec<Option<String>>,
    pending: Vec<i64>,
}
