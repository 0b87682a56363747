//! `postern store copy`: a single node's SQLite store, and the sealed payloads of its spool
//! and inbox, into a freshly migrated PostgreSQL, in one transaction. The gateway must be
//! stopped (the state directory's lock is held throughout), so the copy is of one moment.
//!
//! Rows are read on a blocking thread and handed over in bounded batches, so a large store is
//! copied in little memory; payload files go in chunks. Before the commit, every table's row
//! count is compared with the source's: a copy that differs is rolled back, never left half done.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::{PgError, Pool};
use crate::store::{StoreError, inbox_dir, spool_dir};

/// The tables copied, parents before children.
pub const TABLES: &[&str] = &[
    "transfers",
    "deliveries",
    "log",
    "log_subjects",
    "log_facets",
    "log_recipients",
    "checkpoints",
    "inbox",
    "idempotency",
    "web_codes",
    "web_sessions",
    "web_attempts",
    "web_passkeys",
    "web_ceremonies",
    "requests",
    "request_links",
];

/// Rows per batch handed from the SQLite reader to the inserter.
const BATCH: usize = 256;
/// Bytes per payload chunk in `payload_chunks`.
pub const CHUNK: usize = super::payload::CHUNK;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] PgError),
    #[error(
        "the database {0} already holds a transfer log or transfers: copy only into a database `postern store migrate` has just made"
    )]
    NotEmpty(String),
    #[error("{table}: column {column} holds {found}, which cannot be copied as {expected}")]
    Value {
        table: String,
        column: String,
        found: &'static str,
        expected: String,
    },
    #[error("{0}: a payload the store records is missing; run `postern log verify` on the source")]
    MissingPayload(PathBuf),
    #[error(
        "{table}: {copied} rows copied but the source holds {source_rows}; nothing was committed"
    )]
    Count {
        table: String,
        copied: i64,
        source_rows: i64,
    },
}

/// What was copied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// (table, rows), in [`TABLES`] order.
    pub tables: Vec<(String, i64)>,
    pub payloads: u64,
    pub payload_bytes: u64,
    /// The log's last record (its seq), now the head of the chain in PostgreSQL.
    pub head: Option<i64>,
}

enum Item {
    Rows(Vec<Vec<Value>>),
    /// A payload file to read and store in chunks: its chunk name and path.
    Payload(String, PathBuf),
}

struct Source {
    /// Per table: its columns and its row count.
    tables: Vec<(String, Vec<String>, i64)>,
}

/// Copies the store under `state_dir` into the database behind `pool` (migrated, empty).
pub async fn copy_from_sqlite(state_dir: &Path, pool: &Pool) -> Result<CopyReport, CopyError> {
    let target = pool.target().to_owned();
    let mut client = pool.get().await?;
    let status = super::status(&client, &target).await?;
    status.ready(&target)?;
    // The gateway must be stopped, and stays stopped while the copy runs. Opening it also
    // brings an older store to the current schema and clears orphaned payload files.
    let (store, _) = crate::store::Store::open(state_dir)?;
    let reader = crate::store::Reader::open(state_dir)?;
    let tx = client.transaction().await.map_err(|e| pool.err(e))?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM log) + (SELECT COUNT(*) FROM transfers)",
            &[],
        )
        .await
        .map_err(|e| pool.err(e))?
        .get(0);
    if used > 0 {
        return Err(CopyError::NotEmpty(target));
    }
    let source = {
        let conn = reader.conn()?;
        let mut tables = Vec::new();
        for t in TABLES {
            let stmt = conn
                .prepare(&format!("SELECT * FROM {t} LIMIT 0"))
                .map_err(StoreError::from)?;
            let cols: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|c| (*c).to_owned())
                .collect();
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .map_err(StoreError::from)?;
            tables.push(((*t).to_owned(), cols, n));
        }
        Source { tables }
    };
    drop(reader);

    let mut report = CopyReport::default();
    for (table, cols, rows) in &source.tables {
        let types = column_types(&tx, table, cols, pool).await?;
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            cols.join(", "),
            (1..=cols.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let stmt = tx.prepare(&sql).await.map_err(|e| pool.err(e))?;
        let (send, mut recv) = mpsc::channel::<Result<Item, StoreError>>(4);
        let dir = state_dir.to_owned();
        let name = table.clone();
        let ncols = cols.len();
        let reading = tokio::task::spawn_blocking(move || read_table(&dir, &name, ncols, send));
        while let Some(item) = recv.recv().await {
            match item? {
                Item::Rows(batch) => {
                    for row in batch {
                        let params = row
                            .into_iter()
                            .zip(cols.iter().zip(&types))
                            .map(|(v, (col, ty))| param(table, col, ty, v))
                            .collect::<Result<Vec<_>, _>>()?;
                        let refs: Vec<&(dyn ToSql + Sync)> = params
                            .iter()
                            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                            .collect();
                        tx.execute(&stmt, &refs).await.map_err(|e| pool.err(e))?;
                    }
                }
                Item::Payload(name, path) => {
                    let bytes = copy_payload(&tx, pool, &name, &path).await?;
                    report.payloads += 1;
                    report.payload_bytes += bytes;
                }
            }
        }
        reading
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let copied: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .map_err(|e| pool.err(e))?
            .get(0);
        if copied != *rows {
            return Err(CopyError::Count {
                table: table.clone(),
                copied,
                source_rows: *rows,
            });
        }
        report.tables.push((table.clone(), copied));
    }
    // The chain's head, from which the nodes append.
    let head = tx
        .query_opt("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1", &[])
        .await
        .map_err(|e| pool.err(e))?;
    if let Some(h) = head {
        let (seq, hash): (i64, Vec<u8>) = (h.get(0), h.get(1));
        tx.execute(
            "INSERT INTO log_head (id, seq, hash) VALUES (1, $1, $2)",
            &[&seq, &hash],
        )
        .await
        .map_err(|e| pool.err(e))?;
        report.head = Some(seq);
    }
    tx.commit().await.map_err(|e| pool.err(e))?;
    drop(store);
    Ok(report)
}

/// Each column's type in PostgreSQL, in the order of `cols`.
async fn column_types(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    cols: &[String],
    pool: &Pool,
) -> Result<Vec<String>, CopyError> {
    let rows = tx
        .query(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .map_err(|e| pool.err(e))?;
    cols.iter()
        .map(|c| {
            rows.iter()
                .find(|r| r.get::<_, String>(0) == *c)
                .map(|r| r.get::<_, String>(1))
                .ok_or_else(|| CopyError::Value {
                    table: table.to_owned(),
                    column: c.clone(),
                    found: "a column",
                    expected: "one the PostgreSQL schema has".into(),
                })
        })
        .collect()
}

/// Reads one table in batches (and, for transfers and the inbox, names the payload files their
/// rows keep), handing them to the inserter.
fn read_table(
    state_dir: &Path,
    table: &str,
    ncols: usize,
    send: mpsc::Sender<Result<Item, StoreError>>,
) -> Result<(), StoreError> {
    let reader = crate::store::Reader::open(state_dir)?;
    let conn = reader.conn()?;
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table}"))?;
    let mut rows = stmt.query([])?;
    let mut batch = Vec::with_capacity(BATCH);
    let sent = |item| send.blocking_send(Ok(item)).map_err(|_| StoreError::Closed);
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(ncols);
        for i in 0..ncols {
            row.push(r.get::<_, Value>(i)?);
        }
        batch.push(row);
        if batch.len() == BATCH {
            sent(Item::Rows(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH),
            )))?;
        }
    }
    if !batch.is_empty() {
        sent(Item::Rows(batch))?;
    }
    let files = match table {
        "transfers" => Some((
            "SELECT payload_file FROM transfers WHERE payload_file IS NOT NULL AND payload_purged_at IS NULL",
            "spool",
            spool_dir(state_dir),
        )),
        "inbox" => Some((
            "SELECT payload_file FROM inbox WHERE payload_file IS NOT NULL",
            "inbox",
            inbox_dir(state_dir),
        )),
        _ => None,
    };
    if let Some((sql, prefix, dir)) = files {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            // A file name as the store makes them, never a path: a row altered to point
            // elsewhere (`../..`) is refused, not followed.
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(StoreError::Task(format!(
                    "{table}: the payload file name `{name}` is not one the store makes"
                )));
            }
            sent(Item::Payload(format!("{prefix}/{name}"), dir.join(&name)))?;
        }
    }
    Ok(())
}

/// Stores one sealed payload file as chunks under `name`; its size.
async fn copy_payload(
    tx: &tokio_postgres::Transaction<'_>,
    pool: &Pool,
    name: &str,
    path: &Path,
) -> Result<u64, CopyError> {
    let io = |e| {
        CopyError::Source(StoreError::Io {
            path: path.display().to_string(),
            source: e,
        })
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CopyError::MissingPayload(path.to_owned()));
        }
        Err(e) => return Err(io(e)),
    };
    super::payload::put(tx, pool.target(), name, &mut file)
        .await
        .map_err(|e| match e {
            super::payload::PutError::Db(e) => CopyError::Target(e),
            super::payload::PutError::Source(e) => io(e),
        })
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A SQLite value as the PostgreSQL column's type wants it.
fn param(table: &str, column: &str, pg_type: &str, v: Value) -> Result<Param, CopyError> {
    let bad = |found: &'static str| CopyError::Value {
        table: table.to_owned(),
        column: column.to_owned(),
        found,
        expected: pg_type.to_owned(),
    };
    Ok(match (pg_type, v) {
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("bigint", Value::Integer(i)) => Box::new(i),
        ("bigint", Value::Text(t)) => Box::new(t.trim().parse::<i64>().map_err(|_| bad("text"))?),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("integer", Value::Integer(i)) => {
            Box::new(i32::try_from(i).map_err(|_| bad("a number too large"))?)
        }
        ("text", Value::Null) => Box::new(None::<String>),
        ("text", Value::Text(t)) => Box::new(t),
        ("text", Value::Integer(i)) => Box::new(i.to_string()),
        ("text", Value::Real(r)) => Box::new(r.to_string()),
        ("text", Value::Blob(b)) => Box::new(String::from_utf8(b).map_err(|_| bad("bytes"))?),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        ("bytea", Value::Blob(b)) => Box::new(b),
        // A tampered row may hold text where bytes belong: copied as it is, for `log verify`
        // to report on the copy as on the original.
        ("bytea", Value::Text(t)) => Box::new(t.into_bytes()),
        (_, Value::Null) => return Err(bad("NULL")),
        (_, Value::Integer(_)) => return Err(bad("a number")),
        (_, Value::Real(_)) => return Err(bad("a real number")),
        (_, Value::Text(_)) => return Err(bad("text")),
        (_, Value::Blob(_)) => return Err(bad("bytes")),
    })
}
