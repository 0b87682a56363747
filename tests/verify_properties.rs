//! A property of `postern log verify`: any single change to a stored record, to its columns, or
//! to any index a search reads (facets, recipients, subjects, delivery states) is detected.
//! The log is generated through the real store (decisions with envelopes, subjects, recipients,
//! delivery rows and the attempts their states imply), signed, and each case changes one
//! thing in a fresh copy of its database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use postern_gateway::domain::subject::SubjectKey;
use postern_gateway::log::verify::PublicKey;
use postern_gateway::store::Store;
use postern_gateway::store::checkpoint::{self, CheckpointKey};
use postern_gateway::testkit::synthetic::{self, Plan};
use proptest::prelude::*;
use rusqlite::Connection;
use rusqlite::types::Value;

/// The generated log (a database file with no WAL left) and the key its checkpoints verify
/// under. Built once for every case.
struct Base {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PublicKey,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let key_path = state.join("keys").join("checkpoint.key");
        let public = runtime.block_on(async {
            let (store, _) = Store::open(&state).expect("store");
            let subject = SubjectKey::new(vec![7; 32]).expect("subject key");
            let plan = Plan {
                records: 40,
                seed: 20261202,
                people: 10,
                start: time::macros::datetime!(2026-06-01 00:00 UTC),
                batch: 13,
            };
            synthetic::generate(&store, plan, Arc::new(subject), |_| {})
                .await
                .expect("generate");
            let public = CheckpointKey::generate_file(&key_path).expect("key");
            let key = Arc::new(CheckpointKey::from_file(&key_path).expect("key"));
            checkpoint::checkpoint(&store, key).await.expect("sign");
            public
        });
        // The store is closed: fold the WAL into the database file, so one file is the log.
        let db = state.join("postern.db");
        let c = Connection::open(&db).expect("open");
        // The store's writer thread closes its connection as it ends: wait for it. (Changing the
        // journal mode does not always wait on the busy handler, so poll until it takes.)
        c.busy_timeout(std::time::Duration::from_secs(30))
            .expect("busy timeout");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Err(e) = c.pragma_update(None, "journal_mode", "DELETE") {
            assert!(
                std::time::Instant::now() < deadline,
                "checkpoint the WAL: {e}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(c);
        Base {
            _dir: dir,
            db,
            key: public,
        }
    })
}

/// A fresh copy of the base database.
fn copy(base: &Base, to: &Path) -> Connection {
    let db = to.join("postern.db");
    std::fs::copy(&base.db, &db).expect("copy");
    Connection::open(db).expect("open copy")
}

/// (table, column, and whether the column may be changed, deleted or a row added.)
const TARGETS: &[(&str, &str)] = &[
    ("log", "body"),
    ("log", "hash"),
    ("log", "prev_hash"),
    ("log", "at"),
    ("log", "kind"),
    ("log", "transfer_id"),
    ("log", "sender"),
    ("log", "code"),
    ("log_facets", "at"),
    ("log_facets", "decision"),
    ("log_facets", "transfer_id"),
    ("log_facets", "sender"),
    ("log_facets", "originator"),
    ("log_facets", "purpose"),
    ("log_facets", "lawful_basis"),
    ("log_facets", "marking"),
    ("log_facets", "urgency"),
    ("log_facets", "correction_of"),
    ("log_facets", "rationale_pending"),
    ("log_recipients", "recipient"),
    ("log_subjects", "subject_hash"),
    ("deliveries", "state"),
];

#[derive(Debug, Clone)]
enum Change {
    /// Set one column of one row to another value.
    Set {
        target: usize,
        row: usize,
        value: String,
    },
    /// Flip one bit of a blob column.
    Flip {
        target: usize,
        row: usize,
        byte: usize,
        bit: u8,
    },
    /// Delete one row.
    Delete { target: usize, row: usize },
    /// Add a row filing an existing record once more (a recipient, a subject).
    Add {
        table: usize,
        row: usize,
        value: String,
    },
}

fn change() -> impl Strategy<Value = Change> {
    let n = TARGETS.len();
    prop_oneof![
        (
            0..n,
            any::<usize>(),
            "[a-z0-9-]{1,12}|northshire-police|shared|dead|delivered|urgent|1|0"
        )
            .prop_map(|(target, row, value)| Change::Set { target, row, value }),
        (0..3usize, any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(target, row, byte, bit)| {
            Change::Flip {
                target,
                row,
                byte,
                bit,
            }
        }),
        (8..n, any::<usize>()).prop_map(|(target, row)| Change::Delete { target, row }),
        (0..2usize, any::<usize>(), "[a-z]{3,10}").prop_map(|(table, row, value)| Change::Add {
            table,
            row,
            value
        }),
    ]
}

/// The rowids of a table, so that a case picks a row that exists.
fn rowids(c: &Connection, table: &str) -> Vec<i64> {
    let sql = match table {
        // WITHOUT ROWID tables: their key instead.
        "log_recipients" | "log_subjects" => format!("SELECT seq FROM {table} ORDER BY seq"),
        _ => format!("SELECT rowid FROM {table} ORDER BY rowid"),
    };
    let mut stmt = c.prepare(&sql).expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Applies a change; false if it changed nothing (the value was already there).
fn apply(c: &Connection, ch: &Change) -> bool {
    let changed = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> bool {
        c.execute(sql, params).map(|n| n > 0).unwrap_or(false)
    };
    match ch {
        Change::Set { target, row, value } => {
            let (table, col) = TARGETS[*target];
            let ids = rowids(c, table);
            let Some(id) = ids.get(row % ids.len().max(1)) else {
                return false;
            };
            let key = if table == "log_recipients" || table == "log_subjects" {
                "seq"
            } else {
                "rowid"
            };
            let v: Value = if col == "rationale_pending" {
                Value::Integer(i64::from(value == "1"))
            } else {
                Value::Text(value.clone())
            };
            // Only rows whose value differs, and only one of them.
            changed(
                &format!(
                    "UPDATE {table} SET {col} = ?1 WHERE rowid = (SELECT rowid FROM {table} WHERE {key} = ?2 AND {col} IS NOT ?1 LIMIT 1)"
                ),
                &[&v, id],
            ) || (table == "log_recipients" || table == "log_subjects")
                && changed(
                    &format!(
                        "UPDATE {table} SET {col} = ?1 WHERE {key} = ?2 AND {col} = (SELECT {col} FROM {table} WHERE {key} = ?2 AND {col} IS NOT ?1 LIMIT 1)"
                    ),
                    &[&v, id],
                )
        }
        Change::Flip {
            target,
            row,
            byte,
            bit,
        } => {
            let (table, col) = TARGETS[*target];
            let ids = rowids(c, table);
            let Some(id) = ids.get(row % ids.len().max(1)) else {
                return false;
            };
            let mut blob: Vec<u8> = match c.query_row(
                &format!("SELECT {col} FROM {table} WHERE rowid = ?1"),
                [id],
                |r| r.get(0),
            ) {
                Ok(b) => b,
                Err(_) => return false,
            };
            if blob.is_empty() {
                return false;
            }
            let i = byte % blob.len();
            blob[i] ^= 1 << bit;
            changed(
                &format!("UPDATE {table} SET {col} = ?1 WHERE rowid = ?2"),
                &[&blob, id],
            )
        }
        Change::Delete { target, row } => {
            let (table, _) = TARGETS[*target];
            let ids = rowids(c, table);
            let Some(id) = ids.get(row % ids.len().max(1)) else {
                return false;
            };
            let sql = if table == "log_recipients" || table == "log_subjects" {
                format!(
                    "DELETE FROM {table} WHERE rowid = (SELECT rowid FROM {table} WHERE seq = ?1 LIMIT 1)"
                )
            } else {
                format!("DELETE FROM {table} WHERE rowid = ?1")
            };
            changed(&sql, &[id])
        }
        Change::Add { table, row, value } => {
            let (table, col) = [
                ("log_recipients", "recipient"),
                ("log_subjects", "subject_hash"),
            ][*table];
            let seqs: Vec<i64> = rowids(c, "log");
            let Some(seq) = seqs.get(row % seqs.len().max(1)) else {
                return false;
            };
            changed(
                &format!("INSERT OR IGNORE INTO {table} ({col}, seq) VALUES (?1, ?2)"),
                &[value, seq],
            )
        }
    }
}

#[test]
fn the_untouched_log_is_intact() {
    let b = base();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = copy(b, dir.path());
    let r = checkpoint::verify(&c, &[b.key]).expect("verify");
    assert!(r.intact(), "{r:?}");
    assert!(r.records > 40, "records and their delivery attempts: {r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_single_change_to_a_record_or_an_index_is_detected(ch in change()) {
        let b = base();
        let dir = tempfile::tempdir().expect("tempdir");
        let c = copy(b, dir.path());
        prop_assume!(apply(&c, &ch));
        let r = checkpoint::verify(&c, &[b.key]).expect("verify");
        prop_assert!(!r.intact(), "{ch:?} went unnoticed: {r:?}");
    }
}
