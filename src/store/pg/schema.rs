//! The PostgreSQL schema and its migrations. Every version applied is a row of
//! `schema_versions` (when, and by which postern), so an operator can see what a database has
//! been through. Two nodes migrating at once take turns on an advisory lock: the second finds
//! the work done.
//!
//! The tables are those of the SQLite store (same names, columns and meanings, so the same
//! queries serve both), with what several nodes sharing one database need besides: the sealed
//! payloads themselves in chunks (no node-local file another node needs), a lease on each
//! delivery being attempted, the node that wrote each log record, the chain's head as one row
//! that an append locks, and named leases (one node at a time signs checkpoints).

use super::PgError;

/// The schema this postern reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// The advisory lock that serialises migrations (any constant the gateway uses nowhere else).
const MIGRATION_LOCK: i64 = 0x706f_7374_6572_6e01;

/// Version 1: the SQLite store's version 7, and the shared-store tables.
const V1: &str = "
CREATE TABLE transfers (
    id               TEXT PRIMARY KEY,
    sender           TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    marking          TEXT NOT NULL,
    -- The sealed payload: chunks in payload_chunks under `spool/` and this name, or (when
    -- small) inline.
    payload_file     TEXT,
    payload_inline   BYTEA,
    payload_size     BIGINT NOT NULL,
    plaintext_sha256 TEXT NOT NULL,
    sealed_sha256    TEXT NOT NULL,
    sealed_envelope  BYTEA NOT NULL,
    log_seq          BIGINT NOT NULL,
    accepted_at      TEXT NOT NULL,
    completed_at     TEXT,
    payload_purged_at TEXT
);
CREATE INDEX transfers_sender ON transfers(sender, received_at);
CREATE INDEX transfers_completed ON transfers(completed_at) WHERE payload_purged_at IS NULL;

-- Sealed payloads (age, never plaintext) in chunks, for the spool and the inbox alike
-- (`spool/<payload_file>`, `inbox/<payload_file>`): any node can read what another accepted.
CREATE TABLE payload_chunks (
    name  TEXT NOT NULL,
    n     INTEGER NOT NULL,
    data  BYTEA NOT NULL,
    PRIMARY KEY (name, n)
);

CREATE TABLE deliveries (
    transfer_id     TEXT NOT NULL REFERENCES transfers(id),
    recipient       TEXT NOT NULL,
    agreement       TEXT NOT NULL,
    state           TEXT NOT NULL,
    channel         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    receipt         TEXT,
    delivered_at    TEXT,
    updated_at      TEXT NOT NULL,
    -- The node attempting it, until when: renewed while the attempt runs; once it lapses (the
    -- node died), another node takes the delivery again.
    lease_node      TEXT,
    lease_until     TEXT,
    PRIMARY KEY (transfer_id, recipient)
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_state ON deliveries(state, transfer_id);

CREATE TABLE log (
    seq         BIGINT PRIMARY KEY,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    transfer_id TEXT,
    sender      TEXT,
    code        TEXT,
    body        BYTEA NOT NULL,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    -- The node that appended it (NULL: copied from a single-node store).
    node        TEXT
);
CREATE INDEX log_transfer ON log(transfer_id);
CREATE INDEX log_at ON log(at);
CREATE INDEX log_access ON log(sender, seq) WHERE kind = 'person_access';
CREATE INDEX log_access_all ON log(seq) WHERE kind = 'person_access';

-- The chain's head: one row, locked by the transaction that appends, so that appends from every
-- node are serialised into one chain.
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

CREATE TABLE log_subjects (
    subject_hash TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (subject_hash, seq)
);
CREATE INDEX log_subjects_seq ON log_subjects(seq);

CREATE TABLE log_facets (
    seq           BIGINT PRIMARY KEY,
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
    rationale_pending BIGINT NOT NULL DEFAULT 0
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
CREATE INDEX log_facets_period ON log_facets(at, decision, purpose, marking, lawful_basis, sender);

CREATE TABLE log_recipients (
    recipient TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (recipient, seq)
);
CREATE INDEX log_recipients_seq ON log_recipients(seq);

CREATE TABLE checkpoints (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    hash       BYTEA NOT NULL,
    public_key TEXT NOT NULL,
    signature  BYTEA NOT NULL,
    reason     TEXT,
    node       TEXT
);

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
    sealed_envelope BYTEA NOT NULL,
    payload_file    TEXT,
    payload_inline  BYTEA,
    payload_size    BIGINT NOT NULL,
    payload_sha256  TEXT NOT NULL,
    acknowledged_at TEXT,
    UNIQUE (transfer_id, recipient)
);
CREATE INDEX inbox_recipient ON inbox(recipient, acknowledged_at, received_at);

CREATE TABLE idempotency (
    sender          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    status          BIGINT NOT NULL,
    response        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (sender, key)
);

CREATE TABLE web_codes (
    pending_hash TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    tries        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX web_codes_email ON web_codes(email);

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);

CREATE TABLE web_attempts (
    bucket TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX web_attempts_bucket ON web_attempts(bucket, at);

CREATE TABLE web_passkeys (
    cred_id    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    passkey    TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX web_passkeys_email ON web_passkeys(email);

CREATE TABLE web_ceremonies (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    email      TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE requests (
    id              TEXT PRIMARY KEY,
    requester       TEXT NOT NULL,
    holder          TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    urgency         TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    due_at          TEXT NOT NULL,
    due_date        TEXT NOT NULL,
    state           TEXT NOT NULL,
    first_answer_at TEXT,
    closed_at       TEXT,
    working_days_taken BIGINT,
    clarification_asked_at TEXT,
    clock_stopped   BIGINT NOT NULL DEFAULT 0,
    sealed_refs     BYTEA,
    log_seq         BIGINT NOT NULL
);
CREATE INDEX requests_holder ON requests(holder, received_at);
CREATE INDEX requests_requester ON requests(requester, received_at);
CREATE INDEX requests_open ON requests(due_at) WHERE closed_at IS NULL;

CREATE TABLE request_links (
    request_id  TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    answer      TEXT,
    at          TEXT NOT NULL,
    PRIMARY KEY (request_id, transfer_id)
);
CREATE INDEX request_links_transfer ON request_links(transfer_id);

-- A named job that one node at a time may do (signing checkpoints, purging), until when.
CREATE TABLE leases (
    name  TEXT PRIMARY KEY,
    node  TEXT NOT NULL,
    until TEXT NOT NULL
);

-- The nodes that have served from this database, and when each was last seen.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    started_at TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);
";

/// Each version's statements, in order: `MIGRATIONS[i]` makes version `i + 1`.
const MIGRATIONS: &[&str] = &[V1];

/// What `postern store migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The version found (0: an empty database).
    pub from: i64,
    /// The version now.
    pub to: i64,
}

/// A database's schema as this postern sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The newest version applied (0: none).
    pub version: i64,
    /// Every version applied: (version, when, by which postern).
    pub history: Vec<(i64, String, String)>,
}

impl Status {
    /// Whether a node may serve from it: exactly the version this postern knows.
    pub fn ready(&self, target: &str) -> Result<(), PgError> {
        if self.version > SCHEMA_VERSION {
            return Err(PgError::TooNew {
                target: target.to_owned(),
                found: self.version,
                known: SCHEMA_VERSION,
            });
        }
        if self.version < SCHEMA_VERSION {
            return Err(PgError::NotMigrated {
                target: target.to_owned(),
                found: self.version,
                known: SCHEMA_VERSION,
            });
        }
        Ok(())
    }
}

const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_versions (
    version        BIGINT PRIMARY KEY,
    applied_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    postern        TEXT NOT NULL
)";

/// The schema's versions, read without changing anything (an empty database is version 0).
pub async fn status(client: &tokio_postgres::Client, target: &str) -> Result<Status, PgError> {
    let err = |e| PgError::of(target, e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_versions') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .get(0);
    if !exists {
        return Ok(Status {
            version: 0,
            history: Vec::new(),
        });
    }
    let rows = client
        .query(
            "SELECT version, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), postern
             FROM schema_versions ORDER BY version",
            &[],
        )
        .await
        .map_err(err)?;
    let history: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(Status {
        version: history.last().map(|h| h.0).unwrap_or(0),
        history,
    })
}

/// Brings the database to [`SCHEMA_VERSION`] in one transaction, each version applied recorded
/// in `schema_versions`. A database newer than this postern is left alone and refused.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    target: &str,
) -> Result<MigrateReport, PgError> {
    let err = |e| PgError::of(target, e);
    let tx = client.transaction().await.map_err(err)?;
    // Held to the end of the transaction: a second node migrating waits here, then finds the
    // versions applied.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err)?;
    // "already exists, skipping" is not worth a line in the operator's log.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(err)?;
    tx.batch_execute(VERSIONS_TABLE).await.map_err(err)?;
    let from: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_versions", &[])
        .await
        .map_err(err)?
        .get(0);
    if from > SCHEMA_VERSION {
        return Err(PgError::TooNew {
            target: target.to_owned(),
            found: from,
            known: SCHEMA_VERSION,
        });
    }
    let by = format!("postern {}", env!("CARGO_PKG_VERSION"));
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= from {
            continue;
        }
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute(
            "INSERT INTO schema_versions (version, postern) VALUES ($1, $2)",
            &[&version, &by],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(MigrateReport {
        from,
        to: SCHEMA_VERSION.max(from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_has_its_statements() {
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
    }

    #[test]
    fn a_node_serves_only_its_own_version() {
        let s = |version| Status {
            version,
            history: Vec::new(),
        };
        assert!(s(SCHEMA_VERSION).ready("t").is_ok());
        assert!(matches!(
            s(0).ready("t"),
            Err(PgError::NotMigrated { found: 0, .. })
        ));
        assert!(matches!(
            s(SCHEMA_VERSION + 1).ready("t"),
            Err(PgError::TooNew { .. })
        ));
    }
}
