//! Signed checkpoints of the transfer log's chain, the retention purge, and the streaming read
//! behind `postern log verify` (the checking itself is pure: [`crate::log::verify`]).
//!
//! - A **checkpoint** signs the chain's head (seq, hash, time) with the gateway's ed25519 key
//!   ([`CheckpointKey`], a PKCS#8 PEM file held like the spool and subject keys). The daemon
//!   writes one every `log.checkpoint_interval_secs` when the head has moved, and one at
//!   shutdown. What is signed: [`crate::log::verify::signed_message`].
//! - The **purge** deletes records older than `log.retain_days` as one write job: it checks the
//!   records it is about to delete (retention must not destroy evidence of tampering), makes sure
//!   a signed checkpoint stands exactly at the last of them (the anchor the rest chains from),
//!   deletes them with their index rows and the finished transfers they describe, and records
//!   itself as a `log_purged` record. Checkpoints older than a week are thinned to one a day
//!   ([`thin_in`]).
//! - **Verification** reads the log in `seq` order in one read transaction, row by row, so a
//!   log of millions of records is checked without holding it in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::db::Db;
use super::{Store, StoreError, Tx};
use crate::log::verify::{
    self, Break, Checkpoint, Lookup, OwnedRow, PublicKey, Report, Row, Stop, StoredFacets,
    StoredIndex,
};
pub use crate::log::{Anchor, LogPurgedRecord};
use crate::log::{HeadAcceptedRecord, LogEntry, RecordKind};

pub use crate::log::key::{CheckpointKey, KeyError, ensure_key_file};

/// Why a checkpoint was signed. Recorded with it (not signed: a checkpoint's signature covers
/// only its seq, hash and time), and written to the checkpoint file too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The periodic checkpoint of a head that moved.
    Interval,
    /// The last one before the gateway stopped: the head at a clean shutdown.
    Shutdown,
    /// The anchor a retention purge leaves the rest of the chain chained from.
    Purge,
    /// An operator accepted records the gateway had not signed (`postern log accept-head`).
    Accepted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Interval => "interval",
            Reason::Shutdown => "shutdown",
            Reason::Purge => "purge",
            Reason::Accepted => "accepted",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s {
            "interval" => Reason::Interval,
            "shutdown" => Reason::Shutdown,
            "purge" => Reason::Purge,
            "accepted" => Reason::Accepted,
            _ => return None,
        })
    }
}

/// A checkpoint just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub seq: i64,
    pub at: String,
    pub hash: [u8; 32],
    /// Base64, as the checkpoints table records it.
    pub public_key: String,
    pub signature: Vec<u8>,
    pub reason: Reason,
}

impl Signed {
    /// The head at `seq` (with `hash`) signed at `at` with `key`, not yet stored.
    pub(crate) fn new(
        key: &CheckpointKey,
        seq: i64,
        hash: [u8; 32],
        at: &str,
        reason: Reason,
    ) -> Signed {
        Signed {
            seq,
            at: at.to_owned(),
            hash,
            public_key: key.public().to_string(),
            signature: key.sign(seq, &hash, at),
            reason,
        }
    }
}

/// Signs the chain's head in the caller's write job, unless it is signed already (or the log is
/// empty). The writer is single-threaded, so the last row is the head.
pub fn sign_head(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    at: &str,
) -> Result<Option<Signed>, StoreError> {
    sign_head_for(tx, key, at, Reason::Interval)
}

fn sign_head_for(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    at: &str,
    reason: Reason,
) -> Result<Option<Signed>, StoreError> {
    tx.at_head()?;
    // The head as this transaction moved it (an acceptance just appended).
    let Some((seq, hash)) = last_record(tx.db())? else {
        return Ok(None);
    };
    let last = tx
        .db()
        .row("SELECT MAX(seq) FROM checkpoints", &[])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten();
    if last.is_some_and(|l| l >= seq) {
        return Ok(None);
    }
    let s = Signed::new(key, seq, hash, at, reason);
    insert_checkpoint(tx.db(), &s, tx.node)?;
    Ok(Some(s))
}

/// Writes a checkpoint of the head now, as one write job, if the head moved since the last.
pub async fn checkpoint(
    store: &Store,
    key: Arc<CheckpointKey>,
) -> Result<Option<Signed>, StoreError> {
    let at = crate::clock::stamp(crate::clock::now());
    store.write(false, move |tx| sign_head(tx, &key, &at)).await
}

/// The checkpoint a clean shutdown leaves: the head signed with reason `shutdown` (if it was
/// signed already, that checkpoint is marked so). `None` for an empty log.
pub async fn shutdown_checkpoint(
    store: &Store,
    key: Arc<CheckpointKey>,
) -> Result<Option<Signed>, StoreError> {
    let at = crate::clock::stamp(crate::clock::now());
    store
        .write(false, move |tx| {
            if let Some(s) = sign_head_for(tx, &key, &at, Reason::Shutdown)? {
                return Ok(Some(s));
            }
            let conn = tx.conn()?;
            let last = conn
                .query_row(
                    "SELECT c.seq, c.at, c.hash, c.public_key, c.signature FROM checkpoints c
                     WHERE c.seq = (SELECT MAX(seq) FROM log)",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, [u8; 32]>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                        ))
                    },
                )
                .optional()?;
            let Some((seq, at, hash, public_key, signature)) = last else {
                return Ok(None);
            };
            conn.execute(
                "UPDATE checkpoints SET reason = 'shutdown' WHERE seq = ?1",
                [seq],
            )?;
            Ok(Some(Signed {
                seq,
                at,
                hash,
                public_key,
                signature,
                reason: Reason::Shutdown,
            }))
        })
        .await
}

/// The checkpoint file: every checkpoint the gateway signs, appended (one JSON object per line)
/// to a file outside the database, ideally on another disk or shipped elsewhere. Someone who
/// can rewrite the database (and delete its newest records together with its newest
/// checkpoints) cannot also make this file forget them; `postern log verify` reads both, and
/// the gateway compares its head with both at start-up.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: std::path::PathBuf,
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FileLine {
    pub seq: i64,
    pub at: String,
    /// Hex.
    pub hash: String,
    /// Base64.
    pub public_key: String,
    /// Base64.
    pub signature: String,
    pub reason: String,
}

/// What a checkpoint file holds.
#[derive(Debug, Clone, Default)]
pub struct FileCheckpoints {
    pub lines: usize,
    /// Lines that are not checkpoints (a torn last line after a crash, or damage).
    pub unreadable: usize,
    /// In file order, with the reason each was signed for.
    pub checkpoints: Vec<(Checkpoint, Option<Reason>)>,
}

impl CheckpointFile {
    pub fn new(path: std::path::PathBuf) -> Self {
        CheckpointFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a checkpoint and fsyncs the file (and, when it is created, its directory).
    pub fn append(&self, s: &Signed) -> std::io::Result<()> {
        use std::io::Write;
        let line = FileLine {
            seq: s.seq,
            at: s.at.clone(),
            hash: hex::encode(s.hash),
            public_key: s.public_key.clone(),
            signature: STANDARD.encode(&s.signature),
            reason: s.reason.as_str().to_owned(),
        };
        let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
        text.push('\n');
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let created = !self.path.exists();
        if created {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if created {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Reads the file; a file that does not exist holds nothing.
    pub fn read(&self) -> std::io::Result<FileCheckpoints> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let mut out = FileCheckpoints::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            out.lines += 1;
            let parsed = serde_json::from_str::<FileLine>(line).ok().and_then(|l| {
                Some((
                    Checkpoint {
                        seq: l.seq,
                        at: l.at,
                        hash: hex::decode(&l.hash).ok()?,
                        public_key: l.public_key,
                        signature: STANDARD.decode(&l.signature).ok()?,
                    },
                    Reason::parse(&l.reason),
                ))
            });
            match parsed {
                Some(c) => out.checkpoints.push(c),
                None => out.unreadable += 1,
            }
        }
        Ok(out)
    }
}

/// Every checkpoint in the database, with the reason it was signed.
fn all_checkpoints(db: &dyn Db) -> Result<Vec<(Checkpoint, Option<Reason>)>, StoreError> {
    db.rows(
        &format!(
            "SELECT seq, {} FROM checkpoints ORDER BY seq",
            raw(db, &["at", "hash", "public_key", "signature", "reason"])
        ),
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            checkpoint_of(r)?,
            lenient_text(r.value(5)).as_deref().and_then(Reason::parse),
        ))
    })
    .collect()
}

/// What the start-up check found, and the checkpoint it compared the head with.
#[derive(Debug, Clone)]
pub struct HeadFound {
    pub state: verify::HeadState,
    pub checkpoint: Option<Checkpoint>,
    /// The signed checkpoints that still match the records: the highest seq up to which the
    /// checkpoints signed before now vouch for what is there.
    pub valid_to: i64,
    pub head: Option<(i64, [u8; 32])>,
}

/// Compares the log's head with the last checkpoint the gateway signed, in the database or in
/// the checkpoint file (only checkpoints whose signature verifies under `key` count, and none
/// an operator's acceptance voided). See [`verify::head_state`].
pub fn head_found(
    db: &dyn Db,
    key: &PublicKey,
    file: Option<&CheckpointFile>,
) -> Result<HeadFound, StoreError> {
    let head = last_record(db)?;
    let mut all = all_checkpoints(db)?;
    let mut from_file = Vec::new();
    if let Some(f) = file {
        let read = f.read().map_err(|source| StoreError::Io {
            path: f.path().display().to_string(),
            source,
        })?;
        from_file = read.checkpoints.iter().map(|(c, _)| c.clone()).collect();
        all.extend(read.checkpoints);
    }
    let accepted = acceptances(db, std::slice::from_ref(key), &from_file)?;
    all.retain(|(c, _)| {
        c.fault(std::slice::from_ref(key)).is_none() && !accepted.iter().any(|a| a.voids(c))
    });
    let first = db
        .row("SELECT MIN(seq) FROM log", &[])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten();
    all.sort_by_key(|(c, _)| c.seq);
    // The hash the first record chains from: what an anchor at the seq before it signs.
    let anchor = match first {
        Some(f) => db
            .row(
                &format!("SELECT {} FROM log WHERE seq = ?1", raw(db, &["prev_hash"])),
                &[f.into()],
            )?
            .map(|r| (f - 1, lenient_bytes(r.value(0)))),
        None => None,
    };
    // Checkpoints of records purged since vouch for what is gone by design, once a checkpoint
    // the key signed anchors the first record there is (a purge always leaves one, and
    // thinning keeps it): they are set aside, with any other checkpoint at the anchor's seq
    // (of a record purged since, whatever it was). Without that anchor they all count: a log
    // replaced from some seq on is not a purge.
    if let Some((at, hash)) = &anchor
        && all.iter().any(|(c, _)| c.seq == *at && c.hash == *hash)
    {
        all.retain(|(c, _)| c.seq > *at || (c.seq == *at && c.hash == *hash));
    }
    let mut hashes = vouched(db, &all)?;
    if let Some((at, hash)) = anchor {
        hashes.insert(at, hash);
    }
    let at_seq = |seq: i64| hashes.get(&seq).map(Vec::as_slice);
    let last_seq = all.iter().map(|(c, _)| c.seq).max();
    // Every checkpoint, not only the newest: after a failover that lost commits, the nodes that
    // stayed up sign the chain rewritten over the lost records, and only an older checkpoint
    // (in a node's file) still says what was there. The first seq at which any checkpoint
    // does not match is where the log stopped being what was signed; the checkpoints before it
    // vouch for the rest.
    let broken = all
        .iter()
        .map(|(c, _)| c)
        .find(|c| at_seq(c.seq) != Some(c.hash.as_slice()));
    let valid_to = all
        .iter()
        .map(|(c, _)| c.seq)
        .filter(|seq| broken.is_none_or(|b| *seq < b.seq))
        .max()
        .unwrap_or(0);
    let Some(last_seq) = last_seq else {
        return Ok(HeadFound {
            state: verify::HeadState::Signed,
            checkpoint: None,
            valid_to,
            head,
        });
    };
    let at_last: Vec<&(Checkpoint, Option<Reason>)> =
        all.iter().filter(|(c, _)| c.seq == last_seq).collect();
    let clean = at_last.iter().any(|(_, r)| *r == Some(Reason::Shutdown));
    let cp = at_last.first().map(|(c, _)| c.clone());
    let at_cp = at_seq(last_seq);
    // Compared at the first checkpoint that does not match: records deleted before it, or
    // rewritten. The checkpoint reported stays the newest (an acceptance says it was the last
    // signed before it, and a purge keeps the acceptance until that seq is purged too).
    let state = match broken {
        None => verify::head_state(head, cp.as_ref(), at_cp, clean),
        Some(b) => verify::head_state(head, Some(b), at_seq(b.seq), false),
    };
    Ok(HeadFound {
        state,
        checkpoint: cp,
        valid_to,
        head,
    })
}

/// The hashes of the records the checkpoints `all` (sorted by seq) vouch for, by seq, read in
/// bulk.
fn vouched(
    db: &dyn Db,
    all: &[(Checkpoint, Option<Reason>)],
) -> Result<HashMap<i64, Vec<u8>>, StoreError> {
    let mut seqs: Vec<i64> = all.iter().map(|(c, _)| c.seq).collect();
    seqs.dedup();
    let mut hashes = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "SELECT seq, {} FROM log WHERE seq IN ({})",
            raw(db, &["hash"]),
            vec!["?"; chunk.len()].join(", ")
        );
        let params: Vec<super::db::Value> = chunk.iter().map(|s| (*s).into()).collect();
        for r in db.rows(&sql, &params)? {
            hashes.insert(r.int(0)?, lenient_bytes(r.value(1)));
        }
    }
    Ok(hashes)
}

/// The last record's seq and hash (none for an empty log). A hash of the wrong length is an
/// error, never the genesis value.
fn last_record(db: &dyn Db) -> Result<Option<(i64, [u8; 32])>, StoreError> {
    let Some(r) = db.row(
        &format!(
            "SELECT seq, {} FROM log ORDER BY seq DESC LIMIT 1",
            raw(db, &["hash"])
        ),
        &[],
    )?
    else {
        return Ok(None);
    };
    let (seq, hash) = (r.int(0)?, lenient_bytes(r.value(1)));
    let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::BadHead {
        seq,
        why: format!("its hash is {} bytes, not 32", hash.len()),
    })?;
    Ok(Some((seq, hash)))
}

/// `postern log accept-head`, in the caller's write job: if the head is not one the gateway
/// signed, records the operator's acceptance (a `head_accepted` record saying what was found
/// and why it is accepted), forgets the database's checkpoints of records that are gone or
/// replaced, and signs the new head. `None` when there is nothing to accept.
pub fn accept_head(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    file: Option<&CheckpointFile>,
    reason: &str,
    at: &str,
) -> Result<Option<(HeadAcceptedRecord, Signed)>, StoreError> {
    tx.at_head()?;
    let found = head_found(tx.db(), key.public(), file)?;
    let fine = match tx.node {
        None => found.state.may_start(),
        Some(_) => found.state.may_start_shared(),
    };
    if fine {
        return Ok(None);
    }
    let Some(cp) = found.checkpoint.clone() else {
        return Ok(None);
    };
    let (head_seq, head_hash) = found.head.unwrap_or((0, crate::log::GENESIS));
    // The acceptance chains from the last record there is. On a shared store the head row
    // may still name records that are gone (deleted with their rows, say); over SQLite the
    // head is the last record already.
    *tx.head = super::ChainHead {
        seq: head_seq,
        hash: head_hash,
    };
    let valid_to = match found.state {
        verify::HeadState::Appended { .. } => None,
        _ => Some(found.valid_to),
    };
    if let Some(v) = valid_to {
        tx.db()
            .execute("DELETE FROM checkpoints WHERE seq > ?1", &[v.into()])?;
    }
    let record = HeadAcceptedRecord {
        kind: RecordKind::HeadAccepted,
        at: at.to_owned(),
        found_seq: head_seq,
        found_hash: hex::encode(head_hash),
        checkpoint_seq: cp.seq,
        checkpoint_hash: hex::encode(&cp.hash),
        checkpoint_at: cp.at.clone(),
        found: found.state.kind().to_owned(),
        valid_to,
        reason: reason.to_owned(),
    };
    tx.append(&LogEntry::new(&record)?)?;
    let signed = sign_head_for(tx, key, at, Reason::Accepted)?
        .ok_or_else(|| StoreError::Task("the accepted head could not be signed".into()))?;
    Ok(Some((record, signed)))
}

/// Makes a checkpoint known outside the database: the checkpoint file (if configured) and the
/// operational log (journald under systemd), where it carries nothing but the seq, time, hash
/// and signature. A failure to write the file is logged, never fatal: the database holds it.
pub fn publish(file: Option<&CheckpointFile>, s: &Signed) {
    tracing::info!(
        target: "postern::checkpoint",
        seq = s.seq,
        at = %s.at,
        hash = %hex::encode(s.hash),
        signature = %STANDARD.encode(&s.signature),
        reason = s.reason.as_str(),
        "transfer log checkpoint signed"
    );
    if let Some(f) = file
        && let Err(e) = f.append(s)
    {
        tracing::error!(path = %f.path().display(), error = %e, "could not write the checkpoint file; the checkpoint is in the database only");
    }
}

/// Checkpoints younger than this many days are all kept; older ones are thinned to one a day.
pub const KEEP_EVERY_CHECKPOINT_DAYS: i64 = 7;

/// Thins old checkpoints, in the caller's write job: of those older than
/// [`KEEP_EVERY_CHECKPOINT_DAYS`], only the last of each day is kept (and the anchor of a purge).
/// Each checkpoint vouches for every record before it, so a later one makes the earlier ones
/// redundant for detection; they only narrow down where a rewrite happened, and a day is narrow
/// enough. Without thinning, six years of five-minute checkpoints would cost `log verify`
/// more time checking signatures than hashing a million records.
pub fn thin_in(tx: &mut Tx<'_>, now: time::OffsetDateTime) -> Result<usize, StoreError> {
    let before = crate::clock::stamp(now - time::Duration::days(KEEP_EVERY_CHECKPOINT_DAYS));
    let removed = tx.db().execute(
        "DELETE FROM checkpoints
         WHERE at < ?1
           AND seq NOT IN (SELECT MAX(seq) FROM checkpoints WHERE at < ?1 GROUP BY substr(at, 1, 10))
           AND seq != (SELECT COALESCE(MIN(seq), 1) - 1 FROM log)
           AND COALESCE(reason, '') != 'accepted'",
        &[before.into()],
    )?;
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}

/// Thins old checkpoints as one write job (see [`thin_in`]).
pub async fn thin(store: &Store, now: time::OffsetDateTime) -> Result<usize, StoreError> {
    store.write(false, move |tx| thin_in(tx, now)).await
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Nothing is older than the retention period (or retention is off).
    Nothing,
    /// Records were purged; `seq` is the `log_purged` record. `anchor` is the checkpoint the
    /// purge signed, if it had to sign one.
    Done {
        seq: i64,
        record: Box<LogPurgedRecord>,
        anchor: Option<Box<Signed>>,
    },
    /// The records due do not verify: nothing was deleted, so that the evidence stays.
    Refused(Break),
}

/// The records a purge removes: a prefix of the chain, from the first record to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Due {
    from: i64,
    to: i64,
    /// The hash of the record at `to` as stored: what the anchor signs, once checked.
    hash: Vec<u8>,
}

/// The prefix due for purging before `cutoff`, if any: the longest prefix of records all
/// stamped before it. Each node stamps its records with its own clock, so a record stamped
/// early by a node whose clock is behind only holds the purge back; it never takes later
/// records (another node's, stamped today) with it.
fn due(db: &dyn Db, key: &PublicKey, cutoff: &str) -> Result<Option<Due>, StoreError> {
    let Some(r) = db.row(
        "SELECT MIN(seq), MAX(seq), (SELECT MIN(seq) FROM log WHERE at >= ?1) FROM log",
        &[cutoff.into()],
    )?
    else {
        return Ok(None);
    };
    let (Some(first), Some(last)) = (r.opt_int(0)?, r.opt_int(1)?) else {
        return Ok(None);
    };
    let mut to = match r.opt_int(2)? {
        Some(young) => young - 1,
        None => last,
    };
    // An operator's acceptance (one the key signed) voids the checkpoints, in the checkpoint
    // files too, of records that were gone or replaced, up to the newest checkpoint it found.
    // Purged while one of those could still be compared (at or after the anchor the purge
    // leaves), it would void them no more, and they would stop the gateway: the purge stops
    // short of it until then (the seqs grow past it as records are written).
    let held: Vec<(i64, i64)> = acceptances(db, std::slice::from_ref(key), &[])?
        .iter()
        .map(|a| (a.seq, (a.seq - 1).max(a.checkpoint_seq)))
        .collect();
    while let Some((seq, bound)) = held.iter().find(|(seq, bound)| *seq <= to && to <= *bound) {
        tracing::info!(
            acceptance = seq,
            until = bound,
            "the retention purge stops short of an operator's acceptance until the records after it reach the checkpoints it voids"
        );
        to = seq - 1;
    }
    if to < first {
        return Ok(None);
    }
    due_to(db, to)
}

/// The prefix up to `to`, as the log stands now.
fn due_to(db: &dyn Db, to: i64) -> Result<Option<Due>, StoreError> {
    let from = db
        .row("SELECT MIN(seq) FROM log", &[])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten();
    let hash = db
        .row(
            &format!("SELECT {} FROM log WHERE seq = ?1", raw(db, &["hash"])),
            &[to.into()],
        )?
        .map(|r| lenient_bytes(r.value(0)));
    Ok(match (from, hash) {
        (Some(from), Some(hash)) => Some(Due { from, to, hash }),
        _ => None,
    })
}

/// The cutoff of a purge at `now`: the records stamped before it are due.
fn cutoff(retain_days: u32, now: time::OffsetDateTime) -> String {
    crate::clock::stamp(now - time::Duration::days(i64::from(retain_days)))
}

/// Purges records older than `retain_days` before `now`, in the caller's write job (a single
/// node's store: the check runs on its connection, in the same transaction). 0 days:
/// retention is off.
pub fn purge_in(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    retain_days: u32,
    now: time::OffsetDateTime,
) -> Result<Purge, StoreError> {
    if retain_days == 0 {
        return Ok(Purge::Nothing);
    }
    let Some(due) = due(tx.db(), key.public(), &cutoff(retain_days, now))? else {
        return Ok(Purge::Nothing);
    };
    let checked = check(tx.conn()?, std::slice::from_ref(key.public()), Some(due.to))?;
    if let Some(b) = checked.first_break {
        return Ok(Purge::Refused(b));
    }
    remove(tx, key, &due, retain_days, now)
}

/// Deletes the records of `due` (checked) with their index rows and the finished transfers
/// they describe, leaves a signed checkpoint at `due.to` for the rest to chain from, and
/// records the purge: the write half of a purge, on either backend.
fn remove(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    due: &Due,
    retain_days: u32,
    now: time::OffsetDateTime,
) -> Result<Purge, StoreError> {
    tx.at_head()?;
    let at = crate::clock::stamp(now);
    let to = due.to;
    // Checked by now: a hash of another length would not have verified.
    let hash = <[u8; 32]>::try_from(due.hash.as_slice()).map_err(|_| StoreError::BadHead {
        seq: to,
        why: format!("its hash is {} bytes, not 32", due.hash.len()),
    })?;
    let db = tx.db();
    // An existing checkpoint at `to` was just verified (signature and hash).
    let existing = db
        .row("SELECT at FROM checkpoints WHERE seq = ?1", &[to.into()])?
        .map(|r| r.text(0))
        .transpose()?;
    let (anchor_at, signed) = match existing {
        Some(a) => (a, None),
        None => {
            let s = Signed::new(key, to, hash, &at, Reason::Purge);
            insert_checkpoint(db, &s, tx.node)?;
            (s.at.clone(), Some(Box::new(s)))
        }
    };
    for sql in [
        "DELETE FROM log_subjects WHERE seq <= ?1",
        "DELETE FROM log_facets WHERE seq <= ?1",
        "DELETE FROM log_recipients WHERE seq <= ?1",
    ] {
        db.execute(sql, &[to.into()])?;
    }
    // A request whose record is purged goes with it, whatever its state: past the retention
    // period it is no one's business (and its sealed references go too).
    db.execute(
        "DELETE FROM request_links WHERE request_id IN (SELECT id FROM requests WHERE log_seq <= ?1)",
        &[to.into()],
    )?;
    db.execute("DELETE FROM requests WHERE log_seq <= ?1", &[to.into()])?;
    let records = db.execute("DELETE FROM log WHERE seq <= ?1", &[to.into()])?;
    // They vouch for records that are gone; the anchor vouches for everything before it.
    db.execute("DELETE FROM checkpoints WHERE seq < ?1", &[to.into()])?;
    let deliveries = db.execute(
        "DELETE FROM deliveries WHERE transfer_id IN (
             SELECT t.id FROM transfers t
             WHERE t.log_seq <= ?1 AND t.payload_purged_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM log l WHERE l.transfer_id = t.id)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = t.id AND d.state NOT IN ('delivered', 'dead')))",
        &[to.into()],
    )?;
    let transfers = db.execute(
        "DELETE FROM transfers
         WHERE log_seq <= ?1 AND payload_purged_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM log l WHERE l.transfer_id = transfers.id)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = transfers.id)",
        &[to.into()],
    )?;
    let record = LogPurgedRecord {
        kind: RecordKind::LogPurged,
        at: at.clone(),
        retain_days,
        cutoff: cutoff(retain_days, now),
        from_seq: due.from,
        to_seq: to,
        records,
        anchor: Anchor {
            seq: to,
            at: anchor_at,
            hash: hex::encode(hash),
        },
        transfers,
        deliveries,
    };
    let seq = tx.append_now(&LogEntry::new(&record)?)?;
    Ok(Purge::Done {
        seq,
        record: Box::new(record),
        anchor: signed,
    })
}

/// Stores a signed checkpoint (on a shared store, with the node that signed it).
fn insert_checkpoint(db: &dyn Db, s: &Signed, node: Option<&str>) -> Result<(), StoreError> {
    let mut values = vec![
        s.seq.into(),
        s.at.as_str().into(),
        s.hash.as_slice().into(),
        s.public_key.as_str().into(),
        s.signature.as_slice().into(),
        s.reason.as_str().into(),
    ];
    match node {
        None => db.execute(
            "INSERT INTO checkpoints (seq, at, hash, public_key, signature, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &values,
        )?,
        Some(node) => {
            values.push(node.into());
            db.execute(
                "INSERT INTO checkpoints (seq, at, hash, public_key, signature, reason, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &values,
            )?
        }
    };
    Ok(())
}

/// Purges as one write job (see [`purge_in`]). On a shared store the records due are checked
/// first, in a snapshot of their own, so that the chain's head is not held (and every node's
/// appends with it) while a day's records are hashed; the write job then deletes them only if
/// the log still starts where it did and the record at the end of the prefix is the one
/// checked (else another node purged meanwhile, and there is nothing to do).
pub async fn purge(
    store: &Store,
    key: Arc<CheckpointKey>,
    retain_days: u32,
    now: time::OffsetDateTime,
) -> Result<Purge, StoreError> {
    let Some(pool) = store.shared_pool() else {
        return store
            .write(false, move |tx| purge_in(tx, &key, retain_days, now))
            .await;
    };
    if retain_days == 0 {
        return Ok(Purge::Nothing);
    }
    let limit = cutoff(retain_days, now);
    let public = *key.public();
    let Some(checked) = store.read(move |db| due(db, &public, &limit)).await? else {
        return Ok(Purge::Nothing);
    };
    let report =
        super::pg::verify::verify_prefix(pool, std::slice::from_ref(key.public()), checked.to)
            .await?;
    if let Some(b) = report.first_break {
        // Unless another node purged these records meanwhile (its anchor, without the
        // records it vouches for, looks like records deleted to a snapshot taken after).
        let to = checked.to;
        let now_due = store.read(move |db| due_to(db, to)).await?;
        if now_due.as_ref() != Some(&checked) {
            return Ok(Purge::Nothing);
        }
        return Ok(Purge::Refused(b));
    }
    store
        .write(false, move |tx| {
            if due_to(tx.db(), checked.to)?.as_ref() != Some(&checked) {
                return Ok(Purge::Nothing);
            }
            remove(tx, &key, &checked, retain_days, now)
        })
        .await
}

/// Checks the whole log against `keys`, in one read transaction (so that a purge or checkpoint
/// committed meanwhile is seen entirely or not at all). Works on a read-only connection,
/// alongside a running gateway.
pub fn verify(conn: &Connection, keys: &[PublicKey]) -> Result<Report, StoreError> {
    verify_with(conn, keys, &[]).map(|(r, _)| r)
}

/// As `verify`, taking into account checkpoints kept outside the database (the checkpoint
/// file): a log cut short together with its newest checkpoints is still caught by them. Returns
/// the report and how many of `external` were used.
pub fn verify_with(
    conn: &Connection,
    keys: &[PublicKey],
    external: &[Checkpoint],
) -> Result<(Report, usize), StoreError> {
    conn.execute_batch("BEGIN")?;
    let report = check_with(conn, keys, None, external);
    // Nothing was written: ending the read cannot lose anything.
    let _ = conn.execute_batch("ROLLBACK");
    report
}

/// The acceptances of unsigned heads the log records (`head_accepted`) that the gateway's key
/// signed (see [`verify::Acceptance::is_signed`]): their checkpoints are looked for among all the
/// database's and `external`, whatever range is being checked.
fn acceptances(
    db: &dyn Db,
    keys: &[PublicKey],
    external: &[Checkpoint],
) -> Result<Vec<verify::Acceptance>, StoreError> {
    let mut found = Vec::new();
    for r in db.rows(
        &format!(
            "SELECT seq, {} FROM log WHERE kind = 'head_accepted' ORDER BY seq",
            raw(db, &["body", "hash"])
        ),
        &[],
    )? {
        if let Some(acceptance) = verify::Acceptance::parse(r.int(0)?, &lenient_bytes(r.value(1))) {
            found.push((acceptance, lenient_bytes(r.value(2))));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut cps: Vec<Checkpoint> = external
        .iter()
        .filter(|c| found.iter().any(|(a, _)| a.seq == c.seq))
        .cloned()
        .collect();
    for (a, _) in &found {
        for r in db.rows(
            &format!(
                "SELECT seq, {} FROM checkpoints WHERE seq = ?1",
                raw(db, &["at", "hash", "public_key", "signature"])
            ),
            &[a.seq.into()],
        )? {
            cps.push(checkpoint_of(&r)?);
        }
    }
    let signed = found
        .into_iter()
        .filter(|(a, hash)| {
            let ok = a.is_signed(hash, &cps, keys);
            if !ok {
                tracing::warn!(
                    seq = a.seq,
                    "a head_accepted record has no checkpoint the gateway's key signed: it is not taken into account"
                );
            }
            ok
        })
        .map(|(a, _)| a)
        .collect();
    Ok(signed)
}

/// A column as bytes, whatever a tamperer stored in it.
fn bytes<'a>(v: ValueRef<'a>) -> &'a [u8] {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}

fn checkpoints(db: &dyn Db, up_to: i64) -> Result<Vec<Checkpoint>, StoreError> {
    db.rows(
        &format!(
            "SELECT seq, {} FROM checkpoints WHERE seq <= ?1 ORDER BY seq",
            raw(db, &["at", "hash", "public_key", "signature"])
        ),
        &[up_to.into()],
    )?
    .iter()
    .map(checkpoint_of)
    .collect()
}

/// A checkpoint from a row whose first five columns are seq, at, hash, public_key, signature
/// (read whatever a tamperer stored in them: the signature check says what is wrong).
fn checkpoint_of(r: &super::db::Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: r.int(0)?,
        at: lenient_text(r.value(1)).unwrap_or_default(),
        hash: lenient_bytes(r.value(2)),
        public_key: lenient_text(r.value(3)).unwrap_or_default(),
        signature: lenient_bytes(r.value(4)),
    })
}

/// `cols` for a select list, read as they are stored whatever a tamperer put in them: on SQLite
/// (whose columns take any type) as bytes, so that text that is not UTF-8 is read and reported
/// by the checks (a checkpoint that does not verify) rather than fail the read. PostgreSQL's
/// columns hold only their own type, valid in the database's encoding.
fn raw(db: &dyn Db, cols: &[&str]) -> String {
    cols.iter()
        .map(|c| match db.dialect() {
            super::db::Dialect::Sqlite => format!("CAST({c} AS BLOB)"),
            super::db::Dialect::Postgres => (*c).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as bytes, whatever a tamperer stored in it.
fn lenient_bytes(v: &super::db::Value) -> Vec<u8> {
    use super::db::Value;
    match v {
        Value::Blob(b) => b.clone(),
        Value::Text(t) => t.as_bytes().to_vec(),
        Value::Int(_) | Value::Null => Vec::new(),
    }
}

/// A value as text (none for NULL), whatever a tamperer stored in it.
fn lenient_text(v: &super::db::Value) -> Option<String> {
    use super::db::Value;
    match v {
        Value::Null => None,
        other => Some(String::from_utf8_lossy(&lenient_bytes(other)).into_owned()),
    }
}

/// Records handed to the index checker's thread: their bodies, one after another in one buffer,
/// and for each its seq, where its body ends, and what the store files it under (or the orphan
/// index row met while reading it). Handed back to be freed by the thread that allocated it:
/// memory freed across threads makes the two contend for the allocator's lock.
#[derive(Default)]
struct IndexWork {
    bodies: Vec<u8>,
    records: Vec<(i64, usize, Result<StoredIndex, Break>)>,
}

/// Records per hand-off to the index checker's thread.
const INDEX_BATCH: usize = 256;

/// An index table read in `seq` order alongside the log, so that a million records are checked
/// without holding any table in memory. Rows for a seq the log stream has passed without
/// claiming them belong to no record: they were added.
struct IndexRows<'s, T> {
    table: &'static str,
    rows: rusqlite::Rows<'s>,
    next: Option<(i64, T)>,
    read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
}

impl<'s, T> IndexRows<'s, T> {
    fn new(
        table: &'static str,
        mut rows: rusqlite::Rows<'s>,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Self, StoreError> {
        let next = Self::advance(&mut rows, read)?;
        Ok(IndexRows {
            table,
            rows,
            next,
            read,
        })
    }

    fn advance(
        rows: &mut rusqlite::Rows<'s>,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<(i64, T)>, StoreError> {
        Ok(match rows.next()? {
            Some(r) => Some((r.get(0)?, read(r)?)),
            None => None,
        })
    }

    /// The rows filed under `seq`; a row under an earlier seq is an orphan.
    fn take(&mut self, seq: i64) -> Result<Result<Vec<T>, Break>, StoreError> {
        let mut out = Vec::new();
        while let Some((s, _)) = &self.next {
            let s = *s;
            if s > seq {
                break;
            }
            let Some((_, v)) = self.next.take() else {
                break;
            };
            if s < seq {
                return Ok(Err(verify::orphan_index(self.table, s)));
            }
            out.push(v);
            self.next = Self::advance(&mut self.rows, self.read)?;
        }
        Ok(Ok(out))
    }

    /// After the last record: any row left belongs to none.
    fn rest(&self) -> Option<Break> {
        self.next
            .as_ref()
            .map(|(s, _)| verify::orphan_index(self.table, *s))
    }
}

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        other => Some(String::from_utf8_lossy(bytes(other)).into_owned()),
    }
}

fn facets_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFacets> {
    Ok(StoredFacets {
        at: text(r.get_ref(1)?).unwrap_or_default(),
        decision: text(r.get_ref(2)?).unwrap_or_default(),
        transfer_id: text(r.get_ref(3)?),
        sender: text(r.get_ref(4)?),
        originator: text(r.get_ref(5)?),
        purpose: text(r.get_ref(6)?),
        lawful_basis: text(r.get_ref(7)?),
        marking: text(r.get_ref(8)?),
        urgency: text(r.get_ref(9)?),
        correction_of: text(r.get_ref(10)?),
        rationale_pending: matches!(r.get_ref(11)?, ValueRef::Integer(n) if n != 0),
    })
}

fn second_column(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    Ok(text(r.get_ref(1)?).unwrap_or_default())
}

fn check(conn: &Connection, keys: &[PublicKey], up_to: Option<i64>) -> Result<Report, StoreError> {
    check_with(conn, keys, up_to, &[]).map(|(r, _)| r)
}

/// Streams the records up to `up_to` (all, if `None`) through the verifier, and every search
/// index alongside them through the index checker; then the delivery states. `external`:
/// checkpoints from outside the database.
fn check_with(
    conn: &Connection,
    keys: &[PublicKey],
    up_to: Option<i64>,
    external: &[Checkpoint],
) -> Result<(Report, usize), StoreError> {
    let bound = up_to.unwrap_or(i64::MAX);
    let accepted = acceptances(conn, keys, external)?;
    let first: Option<i64> = conn.query_row("SELECT MIN(seq) FROM log", [], |r| r.get(0))?;
    let (cps, used) = verify::merge_checkpoints(
        checkpoints(conn, bound)?,
        external
            .iter()
            .filter(|c| c.seq <= bound)
            .cloned()
            .collect(),
        &accepted,
        first,
    );
    let mut v = verify::Verifier::new(keys, cps);
    // The chain is checked here, record by record; the indexes on a thread of their own, fed
    // in batches (deriving a record's index means parsing its body: the costlier half).
    let (stop, mut ix, index_break) = std::thread::scope(
        |scope| -> Result<(Option<Stop>, verify::IndexChecker, Option<Break>), StoreError> {
            let (work, batches) = std::sync::mpsc::sync_channel::<IndexWork>(8);
            let (done, returned) = std::sync::mpsc::channel::<IndexWork>();
            let indexer = scope.spawn(move || {
                let mut ix = verify::IndexChecker::default();
                let mut first: Option<Break> = None;
                for batch in batches {
                    let mut start = 0;
                    for (seq, end, filed) in &batch.records {
                        let body = batch.bodies.get(start..*end).unwrap_or_default();
                        start = *end;
                        // An index that disagrees is kept aside while the chain is checked
                        // on: a break in the chain itself (a record inserted, deleted, moved)
                        // explains more, and is what is reported if there is one.
                        if first.is_none() {
                            let checked = match filed {
                                Ok(stored) => ix.record(*seq, body, stored),
                                Err(b) => Err(b.clone()),
                            };
                            first = checked.err();
                        }
                    }
                    let _ = done.send(batch);
                }
                (ix, first)
            });
            let mut stop = None;
            let fresh = || IndexWork {
                bodies: Vec::with_capacity(INDEX_BATCH * 2048),
                records: Vec::with_capacity(INDEX_BATCH),
            };
            let mut batch = fresh();
            let mut stmt = conn.prepare(
                "SELECT seq, prev_hash, hash, body, at, kind, transfer_id, sender, code FROM log WHERE seq <= ?1 ORDER BY seq",
            )?;
            let mut facets_stmt = conn.prepare(
                "SELECT seq, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending FROM log_facets WHERE seq <= ?1 ORDER BY seq",
            )?;
            let mut recipients_stmt = conn.prepare(
                "SELECT seq, recipient FROM log_recipients WHERE seq <= ?1 ORDER BY seq, recipient",
            )?;
            let mut subjects_stmt = conn.prepare(
                "SELECT seq, subject_hash FROM log_subjects WHERE seq <= ?1 ORDER BY seq, subject_hash",
            )?;
            let mut facets = IndexRows::new("log_facets", facets_stmt.query([bound])?, facets_row)?;
            let mut recipients = IndexRows::new(
                "log_recipients",
                recipients_stmt.query([bound])?,
                second_column,
            )?;
            let mut subjects =
                IndexRows::new("log_subjects", subjects_stmt.query([bound])?, second_column)?;
            let mut rows = stmt.query([bound])?;
            while let Some(r) = rows.next()? {
                let row = Row {
                    seq: r.get(0)?,
                    prev_hash: bytes(r.get_ref(1)?),
                    hash: bytes(r.get_ref(2)?),
                    body: bytes(r.get_ref(3)?),
                };
                if let Err(s) = v.row(row) {
                    stop = Some(s);
                    break;
                }
                let seq = row.seq;
                let filed = (|| -> Result<Result<StoredIndex, Break>, StoreError> {
                    let mut f = match facets.take(seq)? {
                        Ok(f) => f,
                        Err(b) => return Ok(Err(b)),
                    };
                    let recipients = match recipients.take(seq)? {
                        Ok(r) => r,
                        Err(b) => return Ok(Err(b)),
                    };
                    let subjects = match subjects.take(seq)? {
                        Ok(s) => s,
                        Err(b) => return Ok(Err(b)),
                    };
                    Ok(Ok(StoredIndex {
                        at: text(r.get_ref(4)?).unwrap_or_default(),
                        kind: text(r.get_ref(5)?).unwrap_or_default(),
                        transfer_id: text(r.get_ref(6)?),
                        sender: text(r.get_ref(7)?),
                        code: text(r.get_ref(8)?),
                        subjects,
                        facets: f.pop(),
                        recipients,
                    }))
                })()?;
                batch.bodies.extend_from_slice(row.body);
                batch.records.push((seq, batch.bodies.len(), filed));
                if batch.records.len() == INDEX_BATCH {
                    // Reuse a batch the indexer has finished with, freeing its records here,
                    // where they were allocated.
                    let next = match returned.try_recv() {
                        Ok(mut b) => {
                            b.bodies.clear();
                            b.records.clear();
                            b
                        }
                        Err(_) => fresh(),
                    };
                    // A send fails only if the indexer is gone, which it is not before the end.
                    let _ = work.send(std::mem::replace(&mut batch, next));
                }
            }
            let _ = work.send(batch);
            drop(work);
            let orphans = [facets.rest(), recipients.rest(), subjects.rest()]
                .into_iter()
                .flatten()
                .min_by_key(|b| b.seq);
            let (ix, first) = indexer
                .join()
                .map_err(|_| StoreError::Task("the index check failed".into()))?;
            Ok((stop, ix, first.or(orphans)))
        },
    )?;
    let first_break = match stop {
        // The delivery states are checked for the whole log only (a purge checks its prefix).
        None => match v
            .finish()
            .or(index_break)
            .or_else(|| ix.finish(up_to.is_some()))
        {
            Some(b) => Some(b),
            None if up_to.is_none() => deliveries(conn, &mut ix)?,
            None => None,
        },
        Some(Stop::Break(b)) => Some(b),
        Some(Stop::Suspect(s)) => Some(verify::classify(
            &s,
            &mut StoreLookup {
                conn,
                by_hash: None,
            },
        )?),
    };
    let mut report = v.report(first_break);
    report.accepted = accepted;
    Ok((report, used))
}

/// Every delivery's state against the last attempt the chained records hold for it (what
/// `log list --delivery-state` and `log report` read), and every delivery an accepted transfer
/// in the log queued against the queue's rows. Run once the records are known intact.
fn deliveries(
    conn: &Connection,
    ix: &mut verify::IndexChecker,
) -> Result<Option<Break>, StoreError> {
    let at = |transfer: &str| -> Result<i64, StoreError> {
        Ok(conn
            .query_row(
                "SELECT MIN(seq) FROM log WHERE transfer_id = ?1",
                [transfer],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .unwrap_or(0))
    };
    let mut stmt = conn.prepare("SELECT transfer_id, recipient, state FROM deliveries")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let transfer = text(r.get_ref(0)?).unwrap_or_default();
        let recipient = text(r.get_ref(1)?).unwrap_or_default();
        let state = text(r.get_ref(2)?).unwrap_or_default();
        if let Some(why) = ix.delivery(&transfer, &recipient, &state) {
            return Ok(Some(Break::index(
                at(&transfer)?,
                format!(
                    "the delivery of transfer {transfer} to `{recipient}` disagrees with the records: {why}"
                ),
            )));
        }
    }
    if let Some((transfer, recipient)) = ix.unqueued() {
        return Ok(Some(Break::index(
            at(&transfer)?,
            format!(
                "the delivery of transfer {transfer} to `{recipient}` is recorded as accepted, but its queue row is gone"
            ),
        )));
    }
    Ok(None)
}

/// Look-ups for classifying a break. The hash index is built only then, with one scan.
struct StoreLookup<'c> {
    conn: &'c Connection,
    by_hash: Option<HashMap<[u8; 32], i64>>,
}

impl Lookup for StoreLookup<'_> {
    type Error = StoreError;

    fn row(&mut self, seq: i64) -> Result<Option<OwnedRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, prev_hash, hash, body FROM log WHERE seq = ?1",
                [seq],
                |r| {
                    Ok(OwnedRow {
                        seq: r.get(0)?,
                        prev_hash: bytes(r.get_ref(1)?).to_vec(),
                        hash: bytes(r.get_ref(2)?).to_vec(),
                        body: bytes(r.get_ref(3)?).to_vec(),
                    })
                },
            )
            .optional()?)
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, StoreError> {
        if self.by_hash.is_none() {
            let mut map = HashMap::new();
            let mut stmt = self
                .conn
                .prepare("SELECT seq, hash FROM log ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                if let Ok(h) = <[u8; 32]>::try_from(bytes(r.get_ref(1)?)) {
                    map.entry(h).or_insert(r.get(0)?);
                }
            }
            self.by_hash = Some(map);
        }
        Ok(<[u8; 32]>::try_from(hash)
            .ok()
            .and_then(|h| self.by_hash.as_ref()?.get(&h).copied()))
    }
}

/// The newest signed checkpoint in the database: (record, when it was signed).
pub fn newest(db: &dyn crate::store::db::Db) -> Result<Option<(i64, String)>, StoreError> {
    db.row(
        "SELECT seq, at FROM checkpoints ORDER BY seq DESC LIMIT 1",
        &[],
    )?
    .map(|r| Ok((r.int(0)?, r.text(1)?)))
    .transpose()
}

/// The log's last record (`None`: empty).
pub fn head_seq(db: &dyn crate::store::db::Db) -> Result<Option<i64>, StoreError> {
    match db.row("SELECT MAX(seq) FROM log", &[])? {
        Some(r) => r.opt_int(0),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_is_private_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("checkpoint.key");
        let public = CheckpointKey::generate_file(&path).unwrap();
        assert_eq!(*CheckpointKey::from_file(&path).unwrap().public(), public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            CheckpointKey::generate_file(&path),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(ensure_key_file(&path).unwrap(), None, "kept as it is");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&public.to_string()),
            "the file names its public key"
        );
    }

    #[test]
    fn keys_from_other_tools_are_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // `openssl genpkey -algorithm ed25519`: PKCS#8 v1, RFC 8410's example key.
        let openssl = dir.path().join("openssl.pem");
        std::fs::write(
            &openssl,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let key = CheckpointKey::from_file(&openssl).unwrap();
        assert_eq!(
            key.public().to_string(),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
        );
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "AGE-SECRET-KEY-1...\n").unwrap();
        assert!(matches!(
            CheckpointKey::from_file(&bad),
            Err(KeyError::Format { .. })
        ));
        assert!(matches!(
            CheckpointKey::from_file(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }
}
