//! The store: the spool (sealed payload files plus one queue row per transfer and recipient)
//! and the transfer log, in SQLite under the state directory.
//!
//! Durability, which is what a 202 promises:
//! 1. ingest writes the sealed payload to `spool/<id>.age` and fsyncs the file;
//! 2. it hands the records to the single writer thread, which collects every write that is
//!    waiting, fsyncs the spool directory once (so the new file names survive a crash), and
//!    commits them all in one SQLite transaction (WAL, `synchronous=FULL`: the commit is fsync'd);
//! 3. only then does each waiting request get its answer.
//!
//! A payload file with no committed row is an orphan (a crash or a dropped upload between 1 and
//! 2); [`Store::open`] deletes orphans before the gateway accepts anything, and ingest deletes its
//! own file when an upload fails. Batching many requests into one commit is what keeps durable
//! throughput high without weakening the promise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub mod checkpoint;
pub mod db;
pub(crate) mod decisions;
pub(crate) mod feedback;
pub(crate) mod inbox;
pub(crate) mod payloads;
pub mod pg;
pub(crate) mod queue;
pub mod requests;
pub mod search;
mod shared;
pub use shared::WRITERS as SHARED_WRITERS;
pub mod upload;
pub(crate) mod web;

use crate::domain::ids::{AgreementId, OrgId, TransferId};
use crate::log::{GENESIS, LogEntry, StoredRecord, chain_hash};
use crate::seal::SealSummary;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("record encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the store has shut down")]
    Closed,
    #[error("a store task failed: {0}")]
    Task(String),
    #[error("the database at {0} was written by a newer version of postern")]
    TooNew(String),
    #[error("no database at {0}: has the gateway been started with this state directory?")]
    Missing(String),
    #[error("another postern process is using the state directory {0} (it holds {0}/postern.lock)")]
    Locked(String),
    /// The filesystem under the state directory is full (or the quota is reached): nothing was
    /// written. Temporary: it passes when space is freed.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The transfer log's last record cannot be chained from (its hash is unreadable or not 32
    /// bytes): appending would fork or restart the chain, so nothing is appended.
    #[error(
        "the transfer log's head (record {seq}) cannot be chained from: {why}; run `postern log verify`"
    )]
    BadHead { seq: i64, why: String },
    /// The shared store (PostgreSQL) failed; [`pg::PgError::is_unavailable`] says whether it
    /// is away for now.
    #[error(transparent)]
    Pg(#[from] pg::PgError),
    /// A row that cannot be read as its type (an id or time that does not parse, text that is
    /// not UTF-8): damaged, and retrying will not mend it.
    #[error("a stored row cannot be read: {0}")]
    Damaged(String),
    /// A column read as another type than the query gives (a NULL where a value is expected):
    /// a query and its reader that disagree.
    #[error("a column is not of the type read: {0}")]
    ColumnType(String),
    /// Something asked of the SQLite store alone, of a PostgreSQL one.
    #[error("this reads a single node's SQLite store, and the store is PostgreSQL")]
    SqliteOnly,
    /// Another process holds this node's name on the shared store (a node serving, or a
    /// command run for it): two nodes with one name would take each other's attempts.
    #[error(
        "another postern is running as node {node} on this database (from {holder}): give each node a name of its own (store.node), or stop the other first; a node whose machine stopped without closing its connection frees the name within about 30 s"
    )]
    NodeNameTaken { node: String, holder: String },
}

/// Whether an IO error says the disk (or the quota) is full.
pub fn io_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge
    )
}

impl StoreError {
    /// Why a row could not be read as its type (an id or time that does not parse), if that is
    /// what this is: a damaged row, which retrying will not mend.
    pub fn damaged_row(&self) -> Option<String> {
        match self {
            StoreError::Sql(rusqlite::Error::FromSqlConversionFailure(_, _, why)) => {
                Some(why.to_string())
            }
            StoreError::Damaged(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Whether the store failed because the disk is full: a condition the caller answers with
    /// 507 (and a delivery retries), never a 500.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Full(_) => true,
            StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io { source, .. } => io_full(source),
            _ => false,
        }
    }
}

/// Why a write job or its batch's commit failed, kept typed across the writer thread so that a
/// full disk is still known to be one.
#[derive(Debug, Clone)]
struct CommitFailure {
    message: String,
    full: bool,
    /// The shared database's failure that a retry may mend (away, or a conflict with another
    /// transaction): a 503, retried; never a 500.
    unavailable: Option<std::sync::Arc<pg::PgError>>,
}

impl CommitFailure {
    fn other(message: impl Into<String>) -> Self {
        CommitFailure {
            message: message.into(),
            full: false,
            unavailable: None,
        }
    }

    /// A failure of the shared store, kept typed: away for now, or otherwise.
    fn store(what: &str, e: &StoreError) -> Self {
        match e {
            StoreError::Pg(
                p @ (pg::PgError::Unavailable { why, .. } | pg::PgError::Conflict { why, .. }),
            ) => CommitFailure {
                message: format!("{what}: {why}"),
                full: false,
                unavailable: Some(std::sync::Arc::new(p.again())),
            },
            other => CommitFailure {
                message: format!("{what}: {other}"),
                full: other.is_full(),
                unavailable: None,
            },
        }
    }

    fn sql(what: &str, e: &rusqlite::Error) -> Self {
        let full = matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull);
        CommitFailure {
            message: format!("{what}: {e}"),
            full,
            unavailable: None,
        }
    }

    fn io(what: &str, e: &std::io::Error) -> Self {
        CommitFailure {
            message: format!("{what}: {e}"),
            full: io_full(e),
            unavailable: None,
        }
    }

    fn into_error(self) -> StoreError {
        if let Some(p) = self.unavailable.as_deref()
            && let Some(p) = p.retryable_as(self.message.clone())
        {
            return StoreError::Pg(p);
        }
        if self.full {
            StoreError::Full(self.message)
        } else {
            StoreError::Io {
                path: "commit".into(),
                source: std::io::Error::other(self.message),
            }
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

const SCHEMA_VERSION: i64 = 7;

const SCHEMA: &str = "
CREATE TABLE transfers (
    id               TEXT PRIMARY KEY,
    sender           TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    marking          TEXT NOT NULL,
    -- The sealed payload: a file in the spool, or (when small) inline here.
    payload_file     TEXT,
    payload_inline   BLOB,
    payload_size     INTEGER NOT NULL,
    plaintext_sha256 TEXT NOT NULL,
    sealed_sha256    TEXT NOT NULL,
    sealed_envelope  BLOB NOT NULL,
    log_seq          INTEGER NOT NULL,
    -- When the 202 was committed.
    accepted_at      TEXT NOT NULL,
    -- When the last recipient became delivered or dead; the payload goes after a grace period.
    completed_at     TEXT,
    payload_purged_at TEXT
);
CREATE INDEX transfers_sender ON transfers(sender, received_at);
CREATE INDEX transfers_completed ON transfers(completed_at) WHERE payload_purged_at IS NULL;

-- One row per (transfer, recipient): the unit a delivery worker takes.
CREATE TABLE deliveries (
    transfer_id     TEXT NOT NULL REFERENCES transfers(id),
    recipient       TEXT NOT NULL,
    agreement       TEXT NOT NULL,
    -- queued, delivering, retrying, delivered, dead
    state           TEXT NOT NULL,
    channel         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    -- The recipient's receipt (JSON), once delivered.
    receipt         TEXT,
    delivered_at    TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (transfer_id, recipient)
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);

-- The transfer log: append-only, hash-chained.
CREATE TABLE log (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    transfer_id TEXT,
    sender      TEXT,
    code        TEXT,
    body        BLOB NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
);
CREATE INDEX log_transfer ON log(transfer_id);
CREATE INDEX log_at ON log(at);

-- Keyed hashes of subject references, for subject access requests.
CREATE TABLE log_subjects (
    subject_hash TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (subject_hash, seq)
) WITHOUT ROWID;

-- What peer gateways (and this gateway's own delivery worker) delivered here, still sealed for
-- the recipient organisation, until it downloads and acknowledges it.
CREATE TABLE inbox (
    id              TEXT PRIMARY KEY,
    transfer_id     TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    sender          TEXT NOT NULL,
    sender_name     TEXT NOT NULL,
    via             TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    marking         TEXT NOT NULL,
    retain_until    TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    sealed_envelope BLOB NOT NULL,
    payload_file    TEXT,
    payload_inline  BLOB,
    payload_size    INTEGER NOT NULL,
    payload_sha256  TEXT NOT NULL,
    acknowledged_at TEXT,
    -- At-least-once delivery: a repeat of the same transfer to the same recipient is stored once.
    UNIQUE (transfer_id, recipient)
);
CREATE INDEX inbox_recipient ON inbox(recipient, acknowledged_at, received_at);

-- The first answer to each (sender, Idempotency-Key).
CREATE TABLE idempotency (
    sender          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    status          INTEGER NOT NULL,
    response        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (sender, key)
);
";

/// Version 2: the search index over decision records, and signed checkpoints of the chain.
const SCHEMA_V2: &str = "
-- One row per decision record (shared, refused, rejected, declined): what a data protection
-- officer filters on, copied from the record's body when it is appended.
CREATE TABLE log_facets (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    decision      TEXT NOT NULL,
    transfer_id   TEXT,
    sender        TEXT,
    originator    TEXT,
    purpose       TEXT,
    lawful_basis  TEXT,
    marking       TEXT,
    urgency       TEXT,
    correction_of TEXT,
    -- An urgent share accepted with its rationale to follow, until the rationale is added.
    rationale_pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX log_facets_at ON log_facets(at);
CREATE INDEX log_facets_sender ON log_facets(sender, seq);
CREATE INDEX log_facets_originator ON log_facets(originator, seq);
CREATE INDEX log_facets_purpose ON log_facets(purpose, seq);
CREATE INDEX log_facets_basis ON log_facets(lawful_basis, seq);
CREATE INDEX log_facets_marking ON log_facets(marking, seq);
CREATE INDEX log_facets_decision ON log_facets(decision, seq);
CREATE INDEX log_facets_urgency ON log_facets(urgency, seq);
CREATE INDEX log_facets_transfer ON log_facets(transfer_id);
CREATE INDEX log_facets_correction ON log_facets(correction_of) WHERE correction_of IS NOT NULL;
CREATE INDEX log_facets_pending ON log_facets(at) WHERE rationale_pending = 1;

CREATE TABLE log_recipients (
    recipient TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (recipient, seq)
) WITHOUT ROWID;
CREATE INDEX log_recipients_seq ON log_recipients(seq);

CREATE INDEX log_subjects_seq ON log_subjects(seq);
CREATE INDEX deliveries_state ON deliveries(state, transfer_id);

-- Signed checkpoints: the chain's head at a moment, signed with the gateway's ed25519 key, so
-- that rewriting the chain from some record onwards (recomputing every hash) is still detected.
CREATE TABLE checkpoints (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    hash       BLOB NOT NULL,
    public_key TEXT NOT NULL,
    signature  BLOB NOT NULL
);
";

/// Version 3: why each checkpoint was signed (`interval`, `shutdown`, `purge`, `accepted`), so
/// that the gateway can tell at start-up whether its last stop was clean.
const SCHEMA_V3: &str = "
ALTER TABLE checkpoints ADD COLUMN reason TEXT;
";

/// Writes one record of the chain at `seq` (linked from `prev`, hashing to `hash`) with what
/// it is filed under: its subjects and, for a decision, its facets. `node`: the node that wrote
/// it, on a store several nodes share.
pub(crate) fn append_row(
    db: &dyn db::Db,
    seq: i64,
    e: &LogEntry,
    prev: &[u8; 32],
    hash: &[u8; 32],
    node: Option<&str>,
) -> Result<(), StoreError> {
    let mut values = vec![
        db::Value::Int(seq),
        e.at.as_str().into(),
        e.kind.as_str().into(),
        e.transfer_id.map(|t| t.to_string()).into(),
        e.sender.as_ref().map(OrgId::as_str).into(),
        e.code.as_deref().into(),
        e.body.as_slice().into(),
        prev.as_slice().into(),
        hash.as_slice().into(),
    ];
    let record = match node {
        None => {
            "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        }
        Some(n) => {
            values.push(n.into());
            "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        }
    };
    // The record and every row it is filed under, sent together.
    let mut statements = vec![(record, values)];
    for s in &e.subjects {
        statements.push((
            "INSERT INTO log_subjects (subject_hash, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            vec![s.as_str().into(), db::Value::Int(seq)],
        ));
    }
    if let Some(f) = &e.facets {
        facet_statements(&mut statements, seq, e, f);
    }
    db.execute_all(&statements)
}

/// Files one decision record's facets (in the caller's transaction).
pub(crate) fn insert_facets(
    db: &dyn db::Db,
    seq: i64,
    e: &LogEntry,
    f: &crate::log::Facets,
) -> Result<(), StoreError> {
    let mut statements = Vec::new();
    facet_statements(&mut statements, seq, e, f);
    db.execute_all(&statements)
}

/// The statements that file a decision record's facets and recipients.
fn facet_statements(
    out: &mut Vec<(&'static str, Vec<db::Value>)>,
    seq: i64,
    e: &LogEntry,
    f: &crate::log::Facets,
) {
    out.push((
        "INSERT INTO log_facets (seq, at, decision, transfer_id, sender, originator, purpose, lawful_basis, marking, urgency, correction_of, rationale_pending)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        vec![
            db::Value::Int(seq),
            e.at.as_str().into(),
            f.decision.into(),
            e.transfer_id.map(|t| t.to_string()).into(),
            e.sender.as_ref().map(OrgId::as_str).into(),
            f.originator.as_deref().into(),
            f.purpose.as_deref().into(),
            f.lawful_basis.as_deref().into(),
            f.marking.as_deref().into(),
            f.urgency.as_deref().into(),
            f.correction_of.map(|t| t.to_string()).into(),
            db::Value::Int(f.rationale_to_follow.into()),
        ],
    ));
    for r in &f.recipients {
        out.push((
            "INSERT INTO log_recipients (recipient, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            vec![r.as_str().into(), db::Value::Int(seq)],
        ));
    }
}

/// Builds the version 2 index over the decision records of a version 1 log.
fn backfill_facets(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, body FROM log WHERE kind IN ('transfer_accepted', 'transfer_refused', 'transfer_rejected') ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    for row in rows {
        let (seq, body) = row?;
        let record: crate::log::TransferRecord = serde_json::from_slice(&body)?;
        let mut entry = LogEntry::new(&record)?;
        if let Some(f) = entry.facets.take() {
            insert_facets(conn, seq, &entry, &f)?;
        }
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsync'd at every commit, so a committed record survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Who looked at what (the web pages' access records), found by organisation without reading
/// the decision records around them.
const SCHEMA_V6: &str = "
CREATE INDEX log_access ON log(sender, seq) WHERE kind = 'person_access';
CREATE INDEX log_access_all ON log(seq) WHERE kind = 'person_access';
-- The report's one pass over a period: everything it counts, read from the index alone.
CREATE INDEX log_facets_period ON log_facets(at, decision, purpose, marking, lawful_basis, sender);
";

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew(path.display().to_string()));
    }
    if version < SCHEMA_VERSION {
        let tx = conn.transaction()?;
        if version == 0 {
            tx.execute_batch(SCHEMA)?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_V2)?;
        }
        if version == 1 {
            backfill_facets(&tx)?;
        }
        if version < 3 {
            tx.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            tx.execute_batch(web::SCHEMA_V4)?;
        }
        if version < 5 {
            tx.execute_batch(web::SCHEMA_V5)?;
        }
        if version < 6 {
            tx.execute_batch(SCHEMA_V6)?;
        }
        if version < 7 {
            tx.execute_batch(requests::SCHEMA_V7)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

/// Where the last record of the chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub(crate) seq: i64,
    pub(crate) hash: [u8; 32],
}

/// The chain's head. A head hash that is unreadable or of the wrong length is an error, never
/// the genesis value: chaining from genesis would silently restart the chain after a tamperer
/// (or damage) blanked the last record's hash.
fn chain_head(conn: &Connection) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, rusqlite::types::Value)> = conn
        .query_row(
            "SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(ChainHead {
            seq: 0,
            hash: GENESIS,
        }),
        Some((seq, rusqlite::types::Value::Blob(b))) => match <[u8; 32]>::try_from(b.as_slice()) {
            Ok(hash) => Ok(ChainHead { seq, hash }),
            Err(_) => Err(StoreError::BadHead {
                seq,
                why: format!("its hash is {} bytes, not 32", b.len()),
            }),
        },
        Some((seq, _)) => Err(StoreError::BadHead {
            seq,
            why: "its hash is not a blob".into(),
        }),
    }
}

/// The writer's view of the open transaction, handed to each write job: the database (either
/// backend), the chain's head as this transaction moves it, and on SQLite the connection (for
/// what only a single node's store does: its checkpoints).
pub struct Tx<'a> {
    db: &'a dyn db::Db,
    sqlite: Option<&'a Connection>,
    head: &'a mut ChainHead,
    /// The node that appends (PostgreSQL: each record says which node wrote it).
    node: Option<&'a str>,
    /// A shared store's: the node's folders whose uploads a write job moves into the database.
    staged: Option<&'a payloads::Staged>,
    /// A shared store's batch that appends at its end: the records its jobs append, and the
    /// rows that name them, waiting for the chain's head (see [`Later`]).
    later: Option<&'a mut Later>,
}

/// Where an appended record is in the chain: its number, or (on a shared store) its place
/// among the records its batch appends when it commits, numbered then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSeq {
    Now(i64),
    Later(usize),
}

impl LogSeq {
    /// The record's number, if it has one yet.
    pub fn number(self) -> Option<i64> {
        match self {
            LogSeq::Now(n) => Some(n),
            LogSeq::Later(_) => None,
        }
    }
}

/// What a shared store's batch appends once its jobs have run: the records, in order, and the
/// transfers that must say which record is theirs (`log_seq`, written with 0 until then: the
/// transfer's id and the record's place in `entries`). The chain's head is locked only for
/// that last step, so the nodes' batches run their jobs side by side and take turns only to
/// append. (A request's row is written by a job run alone: it has its record's number.)
///
/// The outcomes its jobs recorded wait too (`completions`: a transfer's id and the outcome's
/// time): whether each transfer is now complete is settled for all of them in one step before
/// the append, their rows locked in one order, so that two batches finishing deliveries of
/// the same transfers in opposite orders take turns rather than deadlock.
#[derive(Default)]
pub(crate) struct Later {
    pub(crate) entries: Vec<LogEntry>,
    pub(crate) transfers: Vec<(String, usize)>,
    pub(crate) completions: Vec<(String, String)>,
}

/// What a test's write job panics with (`std::panic::panic_any(StopWriter)`) to stop the
/// store's writer, as when the gateway shuts down: writes are answered [`StoreError::Closed`]
/// from then on. Any other panic fails only its own job.
#[cfg(feature = "testkit")]
pub struct StopWriter;

/// What ingest records for an accepted transfer.
pub struct NewTransfer {
    pub id: TransferId,
    pub sender: OrgId,
    pub received_at: String,
    pub purpose: String,
    pub marking: String,
    pub payload: StoredPayload,
    pub summary: SealSummary,
    pub sealed_envelope: Vec<u8>,
    pub deliveries: Vec<NewDelivery>,
}

/// One recipient of an accepted transfer: the unit the delivery worker takes.
pub struct NewDelivery {
    pub recipient: OrgId,
    pub agreement: AgreementId,
    /// `email`, `https` or `inbox`.
    pub channel: &'static str,
}

/// Where a sealed payload rests.
pub enum StoredPayload {
    /// In the database, committed with the records (small payloads).
    Inline(Vec<u8>),
    /// A file in the spool directory (its name), fsync'd before the commit.
    File(String),
}

/// A request's Idempotency-Key and what identifies the request it was sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub sender: OrgId,
    pub key: String,
    /// SHA-256 of the envelope bytes: the same key with a different envelope is an error.
    pub request_sha256: String,
    pub at: String,
}

/// A stored first answer to an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentAnswer {
    pub request_sha256: String,
    pub status: u16,
    pub response: String,
}

impl<'a> Tx<'a> {
    /// A transaction on the SQLite store, whose chain ends at `head`.
    pub(crate) fn sqlite(conn: &'a Connection, head: &'a mut ChainHead) -> Tx<'a> {
        Tx {
            db: conn,
            sqlite: Some(conn),
            head,
            node: None,
            staged: None,
            later: None,
        }
    }

    /// The SQLite connection, for what only a single node's store does (its checkpoints).
    pub fn conn(&self) -> Result<&Connection, StoreError> {
        self.sqlite.ok_or(StoreError::SqliteOnly)
    }

    /// The open transaction, for the queries written for either backend.
    pub fn db(&self) -> &dyn db::Db {
        self.db
    }

    /// Appends a record to the chained log: now, or with the rest of a shared store's batch
    /// when it commits (the same commit either way).
    pub fn append(&mut self, e: &LogEntry) -> Result<LogSeq, StoreError> {
        if let Some(later) = self.later.as_deref_mut() {
            later.entries.push(e.clone());
            return Ok(LogSeq::Later(later.entries.len() - 1));
        }
        let seq = self.head.seq + 1;
        let hash = chain_hash(&self.head.hash, seq, &e.body);
        append_row(self.db, seq, e, &self.head.hash, &hash, self.node)?;
        *self.head = ChainHead { seq, hash };
        Ok(LogSeq::Now(seq))
    }

    /// [`Tx::append`] for a job that needs the record's number now: any but one run with
    /// [`Store::write_late`].
    pub fn append_now(&mut self, e: &LogEntry) -> Result<i64, StoreError> {
        self.append(e)?.number().ok_or_else(|| {
            StoreError::Task("a record's number is needed before its batch appends it".into())
        })
    }

    /// The `log_seq` to write in the transfer `id`'s row, which names the record at `seq`:
    /// its number, or 0 until the batch appends it (and then sets it, or fails).
    fn transfer_log_seq(&mut self, seq: LogSeq, id: &str) -> Result<i64, StoreError> {
        match (seq, self.later.as_deref_mut()) {
            (LogSeq::Now(n), _) => Ok(n),
            (LogSeq::Later(i), Some(later)) if i < later.entries.len() => {
                later.transfers.push((id.to_owned(), i));
                Ok(0)
            }
            // A place in a batch that is not this one's.
            (LogSeq::Later(_), _) => Err(StoreError::Task(
                "a row names a record its batch does not append".into(),
            )),
        }
    }

    /// Refuses a job that reads or moves the chain's head, or reads the log as its own
    /// transaction leaves it, unless its batch locked the head first ([`Store::write`]).
    pub(crate) fn at_head(&self) -> Result<(), StoreError> {
        match self.later {
            None => Ok(()),
            Some(_) => Err(StoreError::Task(
                "a job that needs the chain's head was run with its records appended later".into(),
            )),
        }
    }

    /// Records an accepted transfer; on a shared store its payload file moves into the
    /// database with it.
    pub fn insert_transfer(&mut self, t: &NewTransfer, seq: LogSeq) -> Result<(), StoreError> {
        let log_seq = self.transfer_log_seq(seq, &t.id.to_string())?;
        insert_transfer(self.db(), t, log_seq)?;
        if let (Some(staged), StoredPayload::File(file)) = (self.staged, &t.payload) {
            payloads::move_in(self.db, staged, payloads::Area::Spool, file)?;
        }
        Ok(())
    }

    pub fn idempotent_answer(
        &self,
        sender: &OrgId,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        idempotent_answer(self.db(), sender, key)
    }

    /// See [`claim_key`].
    pub fn claim(
        &mut self,
        claim: &IdempotencyClaim,
        status: u16,
        response: String,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        claim_key(self.db(), claim, status, response)
    }

    pub fn remember_answer(
        &mut self,
        sender: &OrgId,
        key: &str,
        answer: &IdempotentAnswer,
        at: &str,
    ) -> Result<(), StoreError> {
        remember_answer(self.db(), sender, key, answer, at)
    }
}

pub fn insert_transfer(db: &dyn db::Db, t: &NewTransfer, log_seq: i64) -> Result<(), StoreError> {
    let id = t.id.to_string();
    // The transfer and its deliveries, sent together.
    let mut statements = vec![(
        "INSERT INTO transfers (id, sender, received_at, purpose, marking, payload_file, payload_inline, payload_size, plaintext_sha256, sealed_sha256, sealed_envelope, log_seq, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        vec![
            id.as_str().into(),
            t.sender.as_str().into(),
            t.received_at.as_str().into(),
            t.purpose.as_str().into(),
            t.marking.as_str().into(),
            match &t.payload {
                StoredPayload::File(name) => name.as_str().into(),
                StoredPayload::Inline(_) => db::Value::Null,
            },
            match &t.payload {
                StoredPayload::Inline(bytes) => bytes.as_slice().into(),
                StoredPayload::File(_) => db::Value::Null,
            },
            db::Value::Int(i64::try_from(t.summary.plaintext_size).unwrap_or(i64::MAX)),
            hex::encode(t.summary.plaintext_sha256).into(),
            hex::encode(t.summary.sealed_sha256).into(),
            t.sealed_envelope.as_slice().into(),
            db::Value::Int(log_seq),
            crate::clock::stamp(crate::clock::now()).into(),
        ],
    )];
    for nd in &t.deliveries {
        statements.push((
            "INSERT INTO deliveries (transfer_id, recipient, agreement, channel, state, attempts, next_attempt_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5)",
            vec![
                id.as_str().into(),
                nd.recipient.as_str().into(),
                nd.agreement.as_str().into(),
                nd.channel.into(),
                t.received_at.as_str().into(),
            ],
        ));
    }
    db.execute_all(&statements)
}

/// Checks and remembers an Idempotency-Key in the same transaction as the request's effects:
/// if the key already has an answer it is returned (and the caller must write nothing
/// else); otherwise `status` and `response` become its answer and `None` is returned.
pub fn claim_key(
    db: &dyn db::Db,
    claim: &IdempotencyClaim,
    status: u16,
    response: String,
) -> Result<Option<IdempotentAnswer>, StoreError> {
    if let Some(previous) = idempotent_answer(db, &claim.sender, &claim.key)? {
        return Ok(Some(previous));
    }
    // Another node may be claiming the same key in a transaction of its own: the insert then
    // waits for it, and if it committed, its answer is the one to give.
    let claimed = db.execute(
        "INSERT INTO idempotency (sender, key, request_sha256, status, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (sender, key) DO NOTHING",
        &[
            claim.sender.as_str().into(),
            claim.key.as_str().into(),
            claim.request_sha256.as_str().into(),
            db::Value::Int(status.into()),
            response.into(),
            claim.at.as_str().into(),
        ],
    )?;
    if claimed == 0 {
        return match idempotent_answer(db, &claim.sender, &claim.key)? {
            Some(previous) => Ok(Some(previous)),
            None => Err(StoreError::Task(
                "an idempotency key was claimed and then not found".into(),
            )),
        };
    }
    Ok(None)
}

pub fn remember_answer(
    db: &dyn db::Db,
    sender: &OrgId,
    key: &str,
    answer: &IdempotentAnswer,
    at: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO idempotency (sender, key, request_sha256, status, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            sender.as_str().into(),
            key.into(),
            answer.request_sha256.as_str().into(),
            db::Value::Int(answer.status.into()),
            answer.response.as_str().into(),
            at.into(),
        ],
    )?;
    Ok(())
}

/// A write job. Given the open transaction (in a savepoint of its own) it runs and says whether
/// it succeeded; given `None` (the transaction could not be opened) it does not run. Either way
/// it returns what to do once the batch's outcome is known.
type Finisher = Box<dyn FnOnce(Result<(), CommitFailure>) + Send>;
type JobFn = Box<dyn FnOnce(Option<&mut Tx<'_>>) -> (bool, Finisher) + Send>;
type Job = (Needs, JobFn);

/// What a write job needs of its batch.
#[derive(Debug, Clone, Copy)]
struct Needs {
    /// The spool and inbox folders fsync'd before the commit (it records a new file there).
    dir: bool,
    /// On a shared store, whether the job may run alongside other nodes' jobs, its records
    /// appended at the end of its batch ([`Store::write_late`]). Otherwise its batch locks the
    /// chain's head first, and so runs alone among the nodes' batches: what a job that reads
    /// a row and then writes on what it read relies on. Over SQLite every batch runs alone.
    late: bool,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    reader: Reading,
    spool_dir: PathBuf,
    inbox_dir: PathBuf,
    /// This node's name on a shared store (none on a single node's SQLite).
    node: Option<Arc<str>>,
    _lock: Arc<std::fs::File>,
    /// On a shared store, what keeps this node's name held (see `shared::hold_name`): let go,
    /// and the name with it, when the last handle goes.
    _name: Option<Arc<tokio_util::sync::DropGuard>>,
}

/// Where reads are answered: the SQLite reader connection, or a connection of the shared
/// store's pool.
#[derive(Clone)]
enum Reading {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(pg::Pool),
}

/// How many jobs one commit may carry. Large enough to amortise the fsync, small enough that the
/// first request in a batch is not kept waiting long.
const MAX_BATCH: usize = 512;

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("postern.db")
}

pub fn spool_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("spool")
}

pub fn inbox_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("inbox")
}

/// Takes the state directory's lock. One gateway per state directory: a second would sweep the
/// first's uploads in progress and fork the transfer log's chain; and a copy of the store is
/// taken with the gateway stopped. The lock lasts as long as the file returned is open.
pub(crate) fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, StoreError> {
    let lock_path = state_dir.join("postern.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| StoreError::Locked(state_dir.display().to_string()))?;
    Ok(lock)
}

impl Store {
    /// Opens (creating if need be) the store under `state_dir`, removes orphaned spool files and
    /// starts the writer thread. Call before binding any listener.
    pub fn open(state_dir: &Path) -> Result<(Store, SweepReport), StoreError> {
        let StateDir { lock, spool, inbox } = prepare_state_dir(state_dir)?;
        let path = db_path(state_dir);
        let mut conn = Connection::open(&path)?;
        configure(&conn)?;
        migrate(&mut conn, &path)?;
        // A log whose head cannot be chained from is refused now, with its reason, rather than
        // every write failing later.
        chain_head(&conn)?;
        let mut sweep = sweep_orphans(
            &conn,
            &spool,
            "SELECT 1 FROM transfers WHERE payload_file = ?1",
        )?;
        sweep.orphans_removed +=
            sweep_orphans(&conn, &inbox, "SELECT 1 FROM inbox WHERE payload_file = ?1")?
                .orphans_removed;
        let reader = Connection::open(&path)?;
        configure(&reader)?;

        let (tx, rx) = mpsc::channel::<Job>(4096);
        let dirs = [spool.clone(), inbox.clone()];
        // The writer ends when the last handle is dropped. Nothing it has not yet committed was
        // ever answered as durable, so it is never joined.
        std::thread::Builder::new()
            .name("postern-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &dirs))
            .map_err(io(&path))?;
        Ok((
            Store {
                jobs: tx,
                reader: Reading::Sqlite(Arc::new(Mutex::new(reader))),
                spool_dir: spool,
                inbox_dir: inbox,
                node: None,
                _lock: Arc::new(lock),
                _name: None,
            },
            sweep,
        ))
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// The shared store's pool (none on a single node's SQLite).
    pub fn shared_pool(&self) -> Option<&pg::Pool> {
        match &self.reader {
            Reading::Postgres(pool) => Some(pool),
            Reading::Sqlite(_) => None,
        }
    }

    /// This node's name, when the store is shared by several nodes (PostgreSQL).
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Bytes free for this (unprivileged) process on the filesystem holding the spool.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        free_bytes(&self.spool_dir)
    }

    /// Where an inbox item's sealed payload file lives.
    pub fn inbox_path(&self, id: &str) -> PathBuf {
        self.inbox_dir.join(format!("{id}.age"))
    }

    /// An inbox file by the name its row records.
    pub fn inbox_file(&self, name: &str) -> PathBuf {
        self.inbox_dir.join(name)
    }

    /// The spool file of a transfer.
    pub fn payload_path(&self, id: TransferId) -> PathBuf {
        self.spool_dir.join(payload_file_name(id))
    }

    /// Runs `f` in the writer's transaction and waits for the commit. With `sync_spool`, the
    /// spool and inbox directories are fsync'd before the commit (needed when `f` records a new
    /// file in either).
    pub async fn write<T, F>(&self, sync_spool: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(
            Needs {
                dir: sync_spool,
                late: false,
            },
            f,
        )
        .await
    }

    /// [`Store::write`] for a job that may run, on a shared store, alongside the other nodes'
    /// jobs, its records appended at the end of its batch, under the chain's head lock, with
    /// the other jobs'. Only for a job that (1) writes rows of its own (new ones) or updates
    /// rows only where a guard in the statement itself says the update still applies (a lease
    /// still held, a state still the one expected), or locks the row it reads first; (2)
    /// needs no record's number before the commit (a transfer's is set then: [`Tx::insert_transfer`]); (3) reads no
    /// record appended in its batch. The transfer's intake, the delivery queue's claims,
    /// outcomes and leases, and an inbound delivery are such jobs: the work of every transfer.
    pub async fn write_late<T, F>(&self, sync_spool: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(
            Needs {
                dir: sync_spool,
                late: true,
            },
            f,
        )
        .await
    }

    async fn write_with<T, F>(&self, needs: Needs, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = (
            needs,
            Box::new(move |tx: Option<&mut Tx<'_>>| {
                let ran = tx.is_some();
                let result = match tx {
                    // A job that panics (a bug) fails alone: the writer undoes its writes as
                    // any failed job's, its batch-mates commit, the writer goes on, and its
                    // caller is answered with an error rather than left to find the store
                    // closed. (Unwinding is safe here: the job's own state is dropped, and
                    // the writer's is restored to before the job.)
                    Some(tx) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx)))
                        .unwrap_or_else(|payload| {
                            #[cfg(feature = "testkit")]
                            if payload.is::<StopWriter>() {
                                std::panic::resume_unwind(payload)
                            }
                            let _ = payload;
                            tracing::error!(
                                "a write job panicked (a bug): its writes were undone and its request answered with an error"
                            );
                            Err(StoreError::Task(
                                "a write job failed unexpectedly; nothing it wrote was kept".into(),
                            ))
                        }),
                    None => Err(StoreError::Closed),
                };
                let ok = result.is_ok();
                let finish: Finisher = Box::new(move |commit: Result<(), CommitFailure>| {
                    let out = match (commit, result) {
                        (Ok(()), r) => r,
                        // Not run, because its batch could not begin (the shared database
                        // away, the chain's head damaged): say why (the database away is a
                        // 503 the caller retries), not that the store closed.
                        (Err(f), Err(_)) if !ran => Err(f.into_error()),
                        // The job's own error says most (a full disk inside the job is one).
                        (Err(_), Err(e)) => Err(e),
                        (Err(f), Ok(_)) => Err(f.into_error()),
                    };
                    let _ = done.send(out);
                });
                (ok, finish)
            }),
        );
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read of what only a single node's store keeps (its checkpoints' state) on the
    /// SQLite reader connection (off the async threads).
    pub async fn read_sqlite<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.read(move |db| match db.sqlite() {
            Some(conn) => f(conn),
            None => Err(StoreError::SqliteOnly),
        })
        .await
    }

    /// On a shared store, extends this node's leases on the attempts it is running to `until`
    /// (see [`queue::renew_leases`]): one statement, committed on its own on a connection of
    /// the pool, outside the writers' batches. Nothing on a single node.
    pub async fn renew_leases(&self, until: String) -> Result<u64, StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(0);
        };
        self.read(move |db| {
            queue::renew_leases(
                db,
                queue::Lease {
                    node: &node,
                    until: &until,
                },
            )
        })
        .await
    }

    /// Runs a read on the reader connection (off the async threads).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn db::Db) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.reader {
            Reading::Sqlite(reader) => {
                let reader = reader.clone();
                tokio::task::spawn_blocking(move || {
                    // A read that panicked left nothing half-done on this connection (reads
                    // change nothing), so a poisoned lock is still safe to use.
                    let conn = reader
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    f(&*conn)
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
            }
            Reading::Postgres(pool) => {
                let client = pool.get().await?;
                let target = pool.target().to_owned();
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let db = db::PgDb::new(client, &target, handle);
                    f(&db)
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
            }
        }
    }
}

/// Bytes available to an unprivileged process on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let v = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(v.f_bavail.saturating_mul(v.f_frsize))
}

pub fn payload_file_name(id: TransferId) -> String {
    format!("{id}.age")
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A node's own folders under its state directory, made if need be, and the directory's lock
/// (held for the store's life): what both backends' stores open first.
struct StateDir {
    lock: std::fs::File,
    spool: PathBuf,
    inbox: PathBuf,
}

fn prepare_state_dir(state_dir: &Path) -> Result<StateDir, StoreError> {
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let lock = lock_state_dir(state_dir)?;
    let spool = spool_dir(state_dir);
    let inbox = inbox_dir(state_dir);
    for dir in [&spool, &inbox] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    Ok(StateDir { lock, spool, inbox })
}

/// The next batch for a writer: the first job waiting, and every other already queued (up to
/// [`MAX_BATCH`]). `None` once the last handle is gone. `worked`: when the writer took its
/// last batch; the time since is counted as the writer's work (its metrics: how near it is to
/// its limit, and how many jobs a commit carries).
fn next_batch(rx: &mut mpsc::Receiver<Job>, worked: &mut Option<Instant>) -> Option<Vec<Job>> {
    count_work(worked);
    let first = rx.blocking_recv()?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    crate::metrics::store_batch(batch.len());
    *worked = Some(Instant::now());
    Some(batch)
}

/// Counts the writer's work since `worked` (when it took its last batch), once, before it waits.
fn count_work(worked: &mut Option<Instant>) {
    if let Some(t) = worked.take() {
        crate::metrics::store_writer_busy(t.elapsed());
    }
}

/// One fsync of each folder covers every new spool or inbox file the batch records (none when
/// no job records one).
fn sync_dirs(batch: &[Job], dirs: &[PathBuf]) -> Result<(), CommitFailure> {
    if !batch.iter().any(|(needs, _)| needs.dir) {
        return Ok(());
    }
    dirs.iter().try_for_each(|d| {
        fsync_dir(d).map_err(|e| CommitFailure::io(&format!("fsync of {}", d.display()), &e))
    })
}

/// Every job of a batch that could not run at all gets `failure`.
fn fail_all(batch: Vec<Job>, failure: &CommitFailure) {
    for (_, job) in batch {
        let (_, finish) = job(None);
        finish(Err(failure.clone()));
    }
}

/// Once the batch's commit is known: each job its own outcome, or the commit's failure.
fn finish_all(
    finishers: Vec<(Option<CommitFailure>, Finisher)>,
    committed: &Result<(), CommitFailure>,
) {
    for (forced, finish) in finishers {
        match (committed, forced) {
            (Err(e), _) => finish(Err(e.clone())),
            (Ok(()), Some(e)) => finish(Err(e)),
            (Ok(()), None) => finish(Ok(())),
        }
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, dirs: &[PathBuf]) {
    let mut head = chain_head(&conn).unwrap_or_else(|e| {
        // Appending to a chain whose head is unknown would corrupt it: refuse every write.
        tracing::error!(error = %e, "cannot read the transfer log head; the store refuses writes");
        ChainHead {
            seq: -1,
            hash: GENESIS,
        }
    });
    let mut worked = None;
    while let Some(batch) = next_batch(&mut rx, &mut worked) {
        if head.seq < 0 {
            fail_all(
                batch,
                &CommitFailure::other("the transfer log's head cannot be chained from"),
            );
            continue;
        }
        let dir_synced = sync_dirs(&batch, dirs);

        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            fail_all(batch, &CommitFailure::sql("cannot begin a transaction", &e));
            continue;
        }
        let saved = head;
        let mut finishers: Vec<(Option<CommitFailure>, Finisher)> = Vec::with_capacity(batch.len());
        for (needs, job) in batch {
            let forced = if needs.dir {
                dir_synced.as_ref().err().cloned()
            } else {
                None
            };
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                let (_, finish) = job(None);
                finishers.push((
                    Some(CommitFailure::sql("cannot open a savepoint", &e)),
                    finish,
                ));
                continue;
            }
            let before = head;
            let (ok, finish) = job(Some(&mut Tx::sqlite(&conn, &mut head)));
            let released = if ok && forced.is_none() {
                conn.execute_batch("RELEASE job")
            } else {
                Err(rusqlite::Error::InvalidQuery)
            };
            if let Err(e) = released {
                // The job failed (it reports its own error), its file's directory entry is not
                // durable, or the release failed: undo exactly its writes.
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                head = before;
                let forced = forced
                    .or_else(|| ok.then(|| CommitFailure::sql("cannot release a savepoint", &e)));
                finishers.push((forced, finish));
            } else {
                finishers.push((None, finish));
            }
        }
        let committed = conn
            .execute_batch("COMMIT")
            .map_err(|e| CommitFailure::sql("commit failed", &e));
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            head = saved;
        }
        finish_all(finishers, &committed);
    }
}

/// What the start-up sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub orphans_removed: usize,
}

/// Deletes spool files that no committed transfer owns: uploads cut off by a crash or a dropped
/// connection. They were never answered 202, so nothing depends on them.
fn sweep_orphans(conn: &Connection, spool: &Path, owner: &str) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let entries = std::fs::read_dir(spool).map_err(io(spool))?;
    let mut stmt = conn.prepare(owner)?;
    for entry in entries {
        let entry = entry.map_err(io(spool))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let owned = stmt.exists(params![name])?;
        if !owned {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io(&p))?;
            report.orphans_removed += 1;
        }
    }
    if report.orphans_removed > 0 {
        fsync_dir(spool).map_err(io(spool))?;
    }
    Ok(report)
}

/// Read-only access for the command-line tools (`postern log ...`), alongside a running daemon:
/// the SQLite store under a state directory, or the shared PostgreSQL store.
pub struct Reader {
    backend: ReaderBackend,
}

enum ReaderBackend {
    Sqlite(Connection),
    Postgres(db::PgDb),
}

/// An accepted transfer's state, for its sender.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TransferStatus {
    /// The transfer id.
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub id: String,
    /// When the gateway received the transfer (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    /// The purpose id.
    pub purpose: String,
    /// The marking, normalised onto the gateway's scale (e.g. `OFFICIAL-SENSITIVE PERSONAL`).
    pub marking: String,
    /// The payload size in bytes.
    #[schemars(with = "crate::domain::wire::Size")]
    pub payload_size: u64,
    /// The SHA-256 of the payload, lower-case hex.
    #[schemars(with = "crate::domain::wire::Sha256Hex")]
    pub payload_sha256: String,
    /// One entry per recipient, ordered by recipient id.
    pub recipients: Vec<RecipientStatus>,
    /// The request for information this share answered (`/v1/requests/{id}`), if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::wire::Uuid>")]
    pub answers_request: Option<String>,
    /// What its recipients said became of it (`POST /v1/transfers/{id}/feedback`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<feedback::FeedbackLine>,
}

/// The delivery of one transfer to one recipient. Every member is present; those that do not apply
/// are null.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct RecipientStatus {
    /// The recipient's organisation id.
    pub recipient: String,
    /// The agreement that authorised the share.
    pub agreement: String,
    /// How the recipient receives: `email` (secure email through the gateway's relays), `https`
    /// (direct mutual TLS to the recipient's gateway, `POST /v1/inbound`) `inbox` (this gateway's
    /// inbox, `/v1/inbox`) or `portal` (this gateway's inbox, sealed to a key the gateway holds for
    /// the recipient, whose people open it on the web pages; also listed at `/v1/inbox`). Fixed
    /// when the transfer is accepted.
    #[schemars(extend("enum" = crate::domain::registry::Channel::KINDS))]
    pub channel: String,
    /// `queued`: accepted, waiting for the first attempt; `delivering`: an attempt is in progress;
    /// `retrying`: the last attempt failed temporarily and another is due at `next_attempt_at`;
    /// `delivered`: the recipient's side took it (see `receipt`); `dead`: it will not be delivered
    /// (a permanent failure, or temporary failures until the delivery's lifetime ended):
    /// `last_error` says why. `delivered` and `dead` are final.
    #[schemars(extend("enum" = queue::STATES))]
    pub state: String,
    /// Delivery attempts so far.
    #[schemars(with = "crate::domain::wire::Size")]
    pub attempts: i64,
    /// When the next attempt is due, while the state is `queued` or `retrying`; null otherwise.
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub next_attempt_at: Option<String>,
    /// Why the last attempt failed (for `dead`, why the delivery is dead); null when it has not
    /// failed, and once delivered.
    pub last_error: Option<String>,
    /// When it was delivered (RFC 3339, UTC); null unless `delivered`.
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub delivered_at: Option<String>,
    /// What the recipient's side acknowledged receiving; null unless `delivered`. For `https`, the
    /// receiving gateway's `Receipt`; for `inbox`, this gateway's inbox item; for `email`,
    /// `receipt_id` is `smtp:<relay>:<the relay's reply>` (in development, `outbox:<file>`) and
    /// `sha256` the digest of the payload attached.
    pub receipt: Option<crate::log::Receipt>,
    /// When this delivery last changed (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub updated_at: String,
}

/// Filters for listing the log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub transfer_id: Option<String>,
    pub sender: Option<String>,
    pub kind: Option<String>,
    /// Only records before this sequence number (paging newest first).
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

/// Log records matching `f`, newest first.
pub fn log_records(db: &dyn db::Db, f: &LogFilter) -> Result<Vec<StoredRecord>, StoreError> {
    let mut sql = String::from(
        "SELECT seq, at, kind, transfer_id, sender, code, body, hash FROM log WHERE 1=1",
    );
    let mut args: Vec<db::Value> = Vec::new();
    for (col, val) in [
        ("transfer_id =", f.transfer_id.clone().map(db::Value::Text)),
        ("sender =", f.sender.clone().map(db::Value::Text)),
        ("kind =", f.kind.clone().map(db::Value::Text)),
        ("seq <", f.before.map(db::Value::Int)),
    ] {
        if let Some(v) = val {
            args.push(v);
            sql.push_str(&format!(" AND {col} ?{}", args.len()));
        }
    }
    sql.push_str(" ORDER BY seq DESC");
    if let Some(n) = f.limit {
        args.push(db::Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    db.rows(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(StoredRecord {
                seq: r.int(0)?,
                at: r.text(1)?,
                kind: r.text(2)?,
                transfer_id: r.opt_text(3)?,
                sender: r.opt_text(4)?,
                code: r.opt_text(5)?,
                body: serde_json::from_slice(&r.blob(6)?).unwrap_or(serde_json::Value::Null),
                hash: hex::encode(r.blob(7)?),
            })
        })
        .collect()
}

/// The stored first answer for a sender's Idempotency-Key, if any.
pub fn idempotent_answer(
    db: &dyn db::Db,
    sender: &OrgId,
    key: &str,
) -> Result<Option<IdempotentAnswer>, StoreError> {
    let Some(r) = db.row(
        "SELECT request_sha256, status, response FROM idempotency WHERE sender = ?1 AND key = ?2",
        &[sender.as_str().into(), key.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(IdempotentAnswer {
        request_sha256: r.text(0)?,
        status: u16::try_from(r.int(1)?)
            .map_err(|_| StoreError::Damaged("an idempotent answer's status".into()))?,
        response: r.text(2)?,
    }))
}

pub fn transfer_status(
    db: &dyn db::Db,
    id: &str,
    sender: &OrgId,
) -> Result<Option<TransferStatus>, StoreError> {
    let row = db.row(
        "SELECT id, received_at, purpose, marking, payload_size, plaintext_sha256 FROM transfers WHERE id = ?1 AND sender = ?2",
        &[id.into(), sender.as_str().into()],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    let mut status = TransferStatus {
        id: r.text(0)?,
        received_at: r.text(1)?,
        purpose: r.text(2)?,
        marking: r.text(3)?,
        payload_size: u64::try_from(r.int(4)?).unwrap_or(0),
        payload_sha256: r.text(5)?,
        recipients: Vec::new(),
        answers_request: None,
        feedback: Vec::new(),
    };
    status.recipients = recipient_statuses(db, id)?;
    if let Ok(t) = id.parse::<TransferId>() {
        status.answers_request = requests::answered_by(db, t)?.map(|r| r.to_string());
    }
    status.feedback = feedback::on_transfer(db, id)?;
    Ok(Some(status))
}

pub fn recipient_statuses(db: &dyn db::Db, id: &str) -> Result<Vec<RecipientStatus>, StoreError> {
    db.rows(
        "SELECT recipient, agreement, state, attempts, next_attempt_at, last_error, updated_at, channel, delivered_at, receipt FROM deliveries WHERE transfer_id = ?1 ORDER BY recipient",
        &[id.into()],
    )?
    .iter()
    .map(|r| {
        let state = r.text(2)?;
        let next = r.text(4)?;
        let receipt = r.opt_text(9)?;
        Ok(RecipientStatus {
            recipient: r.text(0)?,
            agreement: r.text(1)?,
            channel: r.text(7)?,
            next_attempt_at: (state == "queued" || state == "retrying").then_some(next),
            last_error: if state == "delivered" {
                None
            } else {
                r.opt_text(5)?
            },
            state,
            attempts: r.int(3)?,
            delivered_at: r.opt_text(8)?,
            receipt: receipt.and_then(|j| serde_json::from_str(&j).ok()),
            updated_at: r.text(6)?,
        })
    })
    .collect()
}

/// Where a long read of the whole log (a verification, an export) opens a reader of its own, so
/// that it holds nothing else up: the state directory's SQLite, or the shared database.
#[derive(Clone)]
pub enum LogSource {
    Dir(PathBuf),
    Shared(pg::Pool),
}

impl LogSource {
    /// Opens a reader. Blocking (the shared database's through `runtime`): call it, and use
    /// the reader, from a blocking thread.
    pub fn open(&self, runtime: &tokio::runtime::Handle) -> Result<Reader, StoreError> {
        match self {
            LogSource::Dir(dir) => Reader::open(dir),
            LogSource::Shared(pool) => runtime.block_on(Reader::postgres(pool)),
        }
    }
}

impl Reader {
    pub fn open(state_dir: &Path) -> Result<Reader, StoreError> {
        let path = db_path(state_dir);
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Reader {
            backend: ReaderBackend::Sqlite(conn),
        })
    }

    /// The shared store, once it answers and holds the schema this postern reads. Its queries
    /// block on the driver: use it off the async threads (`spawn_blocking`).
    pub async fn postgres(pool: &pg::Pool) -> Result<Reader, StoreError> {
        let client = pool.get().await?;
        let status = pg::status(&client, pool.target()).await?;
        status.ready(pool.target())?;
        Ok(Reader {
            backend: ReaderBackend::Postgres(db::PgDb::new(
                client,
                pool.target(),
                tokio::runtime::Handle::current(),
            )),
        })
    }

    /// The store, for the queries written for either backend.
    pub fn db(&self) -> &dyn db::Db {
        match &self.backend {
            ReaderBackend::Sqlite(c) => c,
            ReaderBackend::Postgres(p) => p,
        }
    }

    /// The SQLite connection, for what is read from a single node's store only (its local
    /// checkpoint file's verification, the load tool's delivery counts).
    pub fn conn(&self) -> Result<&Connection, StoreError> {
        match &self.backend {
            ReaderBackend::Sqlite(c) => Ok(c),
            ReaderBackend::Postgres(_) => Err(StoreError::SqliteOnly),
        }
    }

    /// Log records, newest first.
    pub fn records(&self, f: &LogFilter) -> Result<Vec<StoredRecord>, StoreError> {
        log_records(self.db(), f)
    }

    pub fn deliveries(&self, transfer_id: &str) -> Result<Vec<RecipientStatus>, StoreError> {
        recipient_statuses(self.db(), transfer_id)
    }

    /// Counts of records by kind, for summaries.
    pub fn counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.db()
            .rows("SELECT kind, COUNT(*) FROM log GROUP BY kind", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect()
    }
}

/// A read that touches the log table: what readiness and the watchdog ask to know the store
/// answers.
pub fn probe(db: &dyn db::Db) -> Result<(), StoreError> {
    db.row("SELECT COUNT(*) FROM log WHERE seq = 1", &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RecordKind;

    fn entry(n: usize) -> LogEntry {
        LogEntry {
            kind: RecordKind::TransferRejected,
            at: format!("2026-11-22T00:00:{:02}Z", n % 60),
            transfer_id: None,
            sender: Some("northshire-cc".parse().unwrap()),
            code: Some(format!("code-{n}")),
            subjects: Vec::new(),
            facets: None,
            body: format!("{{\"n\":{n}}}").into_bytes(),
        }
    }

    /// (seq, body, prev_hash, hash)
    type Row = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

    fn chain(state: &Path) -> Vec<Row> {
        let r = Reader::open(state).unwrap();
        let mut stmt = r
            .conn()
            .unwrap()
            .prepare("SELECT seq, body, prev_hash, hash FROM log ORDER BY seq")
            .unwrap();
        stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn assert_chained(rows: &[Row]) {
        let mut prev = GENESIS;
        for (i, (seq, body, prev_hash, hash)) in rows.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "sequence numbers have no gaps");
            assert_eq!(prev_hash.as_slice(), prev.as_slice());
            let expected = chain_hash(&prev, *seq, body);
            assert_eq!(hash.as_slice(), expected.as_slice());
            prev = expected;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_batched_into_one_unbroken_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for n in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(false, move |tx| {
                        tx.append(&entry(n))?;
                        // Every seventh job fails after appending: its record must vanish with
                        // it, and must not leave a gap or a broken link.
                        if n % 7 == 3 {
                            Err(StoreError::Closed)
                        } else if n % 7 == 5 {
                            // A bug: the job panics after appending. It fails alone, as a
                            // failed job, and the writer goes on.
                            panic!("a bug in a write job, on purpose")
                        } else {
                            Ok(n)
                        }
                    })
                    .await
            }));
        }
        let (mut ok, mut panicked) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Task(_)) => panicked += 1,
                Err(_) => {}
            }
        }
        assert_eq!(panicked, (0..200).filter(|n| n % 7 == 5).count());
        let rows = chain(dir.path());
        assert_eq!(rows.len(), ok);
        assert_chained(&rows);
        // The chain continues across a restart.
        drop(store);
        let (store, _) = Store::open(dir.path()).unwrap();
        store
            .write(false, |tx| tx.append(&entry(999)).map(|_| ()))
            .await
            .unwrap();
        let rows = chain(dir.path());
        assert_eq!(rows.len(), ok + 1);
        assert_chained(&rows);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_state_directory_serves_one_gateway_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        // Readers (the log tools) do not need the lock.
        store
            .write(false, |tx| tx.append(&entry(1)).map(|_| ()))
            .await
            .unwrap();
        assert!(Reader::open(dir.path()).is_ok());
        drop(store);
        assert!(Store::open(dir.path()).is_ok(), "released with the store");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_the_store_sweeps_orphans_and_keeps_owned_files() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sweep) = Store::open(dir.path()).unwrap();
        assert_eq!(sweep.orphans_removed, 0);
        let id = TransferId::from_uuid(uuid::Uuid::now_v7());
        std::fs::write(store.payload_path(id), b"sealed").unwrap();
        let summary = SealSummary {
            plaintext_size: 1,
            plaintext_sha256: [0; 32],
            sealed_size: 6,
            sealed_sha256: [0; 32],
        };
        let new = NewTransfer {
            id,
            sender: "northshire-cc".parse().unwrap(),
            received_at: "2026-11-22T00:00:00Z".into(),
            purpose: "p".into(),
            marking: "OFFICIAL".into(),
            payload: StoredPayload::File(payload_file_name(id)),
            summary,
            sealed_envelope: vec![1],
            deliveries: vec![NewDelivery {
                recipient: "northshire-police".parse().unwrap(),
                agreement: "isp".parse().unwrap(),
                channel: "https",
            }],
        };
        store
            .write(true, move |tx| {
                let seq = tx.append(&entry(1))?;
                tx.insert_transfer(&new, seq)
            })
            .await
            .unwrap();
        let orphan = store.payload_path(TransferId::from_uuid(uuid::Uuid::now_v7()));
        std::fs::write(&orphan, b"half an upload").unwrap();
        drop(store);
        let (store, sweep) = Store::open(dir.path()).unwrap();
        assert_eq!(sweep.orphans_removed, 1);
        assert!(!orphan.exists());
        assert!(store.payload_path(id).exists());
        let status = store
            .read(move |c| transfer_status(c, &id.to_string(), &"northshire-cc".parse().unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.recipients[0].state, "queued");
        assert!(
            store
                .read(move |c| transfer_status(
                    c,
                    &id.to_string(),
                    &"northshire-police".parse().unwrap()
                ))
                .await
                .unwrap()
                .is_none(),
            "only the sender sees it"
        );
    }
}
