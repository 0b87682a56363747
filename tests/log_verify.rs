//! The transfer log's tamper evidence, end to end: a chain written by the real store (and by a
//! real gateway), tampered with directly in SQLite, then checked by the real `postern log
//! verify`: each kind of tampering is detected, named and located, and the exit status says so.
//! Signed checkpoints catch a rewritten chain; a retention purge keeps the chain verifiable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Deployment, envelope, submit};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use postern_gateway::domain::ids::TransferId;
use postern_gateway::log::verify::{BreakKind, PublicKey, Report};
use postern_gateway::log::{
    DeclinedRecord, LogEntry, PractitionerRecord, RecordKind, SenderRecord, chain_hash,
};
use postern_gateway::store::checkpoint::{self, CheckpointKey, Purge};
use postern_gateway::store::{Reader, Store, db_path};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tempfile::TempDir;

fn key_path(state: &Path) -> PathBuf {
    state.join("keys").join("checkpoint.key")
}

/// A record as the gateway would append one (a decision not to share, filed with facets and a
/// recipient so that the purge has index rows to remove), about `transfer` if given.
fn entry(n: usize, at: &str, transfer: Option<TransferId>) -> LogEntry {
    let record = DeclinedRecord {
        kind: RecordKind::DecisionDeclined,
        decision_id: transfer.unwrap_or_else(|| TransferId::from_uuid(uuid::Uuid::now_v7())),
        at: at.to_owned(),
        sender: SenderRecord {
            org: "northshire-cc".parse().unwrap(),
            certificate: format!("sha256:{}", "0".repeat(64)),
            person: None,
        },
        recipients: vec!["northshire-police".parse().unwrap()],
        purpose: None,
        reasons: format!("record {n}: a record of some length"),
        practitioner: PractitionerRecord {
            name: "Sam Patel".into(),
            role: "Social worker".into(),
            contact: "sam.patel@northshire-cc.example".into(),
        },
        request: None,
        data_categories: Vec::new(),
        subject_ref_hashes: Vec::new(),
        idempotency_key: None,
    };
    LogEntry::new(&record).unwrap()
}

fn now_stamp() -> String {
    postern_gateway::clock::stamp(postern_gateway::clock::now())
}

/// A state directory with a checkpoint key and a store.
struct Log {
    _dir: TempDir,
    state: PathBuf,
    key: Arc<CheckpointKey>,
    store: Option<Store>,
}

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        CheckpointKey::generate_file(&key_path(&state)).unwrap();
        let key = Arc::new(CheckpointKey::from_file(&key_path(&state)).unwrap());
        let (store, _) = Store::open(&state).unwrap();
        Log {
            _dir: dir,
            state,
            key,
            store: Some(store),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    async fn append(&self, e: LogEntry) -> i64 {
        self.store()
            .write(false, move |tx| tx.append_now(&e))
            .await
            .unwrap()
    }

    async fn checkpoint(&self) -> i64 {
        checkpoint::checkpoint(self.store(), self.key.clone())
            .await
            .unwrap()
            .expect("the head moved")
            .seq
    }

    /// `n` records stamped now, with a checkpoint after each seq in `signed`.
    async fn with(n: usize, signed: &[i64]) -> Log {
        let log = Log::new();
        for i in 1..=n {
            let seq = log.append(entry(i, &now_stamp(), None)).await;
            if signed.contains(&seq) {
                assert_eq!(log.checkpoint().await, seq);
            }
        }
        log
    }

    /// Closes the store, as a stopped gateway would leave it.
    fn close(&mut self) {
        self.store = None;
    }

    fn db(&self) -> Connection {
        Connection::open(db_path(&self.state)).unwrap()
    }

    fn verify(&self) -> Report {
        let r = Reader::open(&self.state).unwrap();
        checkpoint::verify(r.conn().unwrap(), &[*self.key.public()]).unwrap()
    }
}

/// Runs `postern log verify --json` and returns its exit status and its report.
fn verify_bin(state: &Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--json", "--state-dir"])
        .arg(state)
        .args(extra)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .expect("run postern");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    (out.status.code().unwrap_or(-1), report)
}

/// Asserts the binary found exactly this break, and exited 1.
fn assert_break(state: &Path, kind: &str, seq: i64, to_seq: i64) -> Value {
    let (code, r) = verify_bin(state, &[]);
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(
        (r["break"]["kind"].as_str(), r["break"]["seq"].as_i64()),
        (Some(kind), Some(seq)),
        "{r}"
    );
    assert_eq!(r["break"]["to_seq"].as_i64(), Some(to_seq), "{r}");
    assert_eq!(code, 1, "a break is exit status 1");
    r["break"].clone()
}

fn row(db: &Connection, seq: i64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    db.query_row(
        "SELECT prev_hash, hash, body FROM log WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// Moves rows with seq >= `from` by `by` (via negative numbers, so the primary key never
/// collides mid-update).
fn renumber(db: &Connection, from: i64, by: i64) {
    db.execute("UPDATE log SET seq = -seq WHERE seq >= ?1", [from])
        .unwrap();
    db.execute("UPDATE log SET seq = -seq + ?1 WHERE seq < 0", [by])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_is_intact_and_fully_signed_after_a_gateway_stops() {
    let d = Deployment::new();
    checkpoint::ensure_key_file(&key_path(&d.state_dir)).unwrap();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    for i in 0..3u8 {
        let a = submit(&mut conn, &envelope(json!({})), vec![i; 1000], None).await;
        assert_eq!(a.status, 202);
    }
    let refused = common::submit_refused(&mut conn).await;
    assert_ne!(refused.status, 202);
    drop(conn);
    // Read only: it works alongside the running gateway.
    let (code, r) = verify_bin(&d.state_dir, &[]);
    assert_eq!((code, &r["intact"]), (0, &Value::Bool(true)), "{r}");
    server.stop().await;

    let (code, r) = verify_bin(&d.state_dir, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["intact"], true);
    let last = r["last_seq"].as_i64().unwrap();
    assert!(last >= 4, "{r}");
    assert_eq!(r["records"].as_i64(), Some(last));
    // The shutdown checkpoint signed the head: nothing is left uncovered.
    assert_eq!(r["covered_to"].as_i64(), Some(last), "{r}");
    assert_eq!(r["uncovered"], 0);
    let public = CheckpointKey::from_file(&key_path(&d.state_dir))
        .unwrap()
        .public()
        .fingerprint();
    assert_eq!(r["keys"][0]["fingerprint"], public.as_str());

    // With the deployment's configuration: its state directory, its key.
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--json", "--config"])
        .arg(&d.config_dir)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["keys"][0]["fingerprint"], public.as_str());
    assert_eq!(r["last_seq"].as_i64(), Some(last));

    // With the demo's registry, whose email recipients have no relay: verifying needs the
    // checkpoint key, not a configuration that could deliver.
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--json", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"))
        .arg("--state-dir")
        .arg(&d.state_dir)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["keys"][0]["fingerprint"], public.as_str());

    // The text form says so too.
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--state-dir"])
        .arg(&d.state_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains(&public), "{text}");

    // One byte of one record altered.
    let db = Connection::open(db_path(&d.state_dir)).unwrap();
    let (_, _, mut body) = row(&db, 2);
    body[10] ^= 0x20;
    db.execute("UPDATE log SET body = ?1 WHERE seq = 2", params![body])
        .unwrap();
    assert_break(&d.state_dir, "altered", 2, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_byte_is_detected_and_located() {
    let mut log = Log::with(10, &[10]).await;
    log.close();
    assert_eq!(verify_bin(&log.state, &[]).0, 0);
    let db = log.db();
    let (_, _, mut body) = row(&db, 6);
    body[3] ^= 1;
    db.execute("UPDATE log SET body = ?1 WHERE seq = 6", params![body])
        .unwrap();
    let b = assert_break(&log.state, "altered", 6, 6);
    assert!(b["message"].as_str().unwrap().contains("record 6"), "{b}");
    // The library says the same.
    let r = log.verify();
    assert_eq!(r.first_break.unwrap().kind, BreakKind::Altered);
    assert_eq!(r.records, 5, "records before the break verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_is_detected_and_located() {
    let mut log = Log::with(10, &[]).await;
    log.close();
    let db = log.db();
    db.execute("DELETE FROM log WHERE seq = 4", []).unwrap();
    assert_break(&log.state, "deleted", 4, 4);
    // The gap closed by renumbering the records after it.
    renumber(&db, 5, -1);
    assert_break(&log.state, "deleted", 4, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_from_the_end_below_a_checkpoint_are_detected() {
    let mut log = Log::with(10, &[8]).await;
    log.close();
    log.db()
        .execute("DELETE FROM log WHERE seq >= 7", [])
        .unwrap();
    assert_break(&log.state, "deleted", 7, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_record_is_detected_and_located() {
    let mut log = Log::with(10, &[]).await;
    log.close();
    let db = log.db();
    renumber(&db, 5, 1);
    // A forged record at 5 whose hash is right for where it stands.
    let (_, prev, _) = row(&db, 4);
    let body = serde_json::to_vec(&json!({"n": "forged"})).unwrap();
    let hash = chain_hash(&prev.clone().try_into().unwrap(), 5, &body);
    db.execute(
        "INSERT INTO log (seq, at, kind, body, prev_hash, hash) VALUES (5, ?1, 'transfer_rejected', ?2, ?3, ?4)",
        params![now_stamp(), body, prev, &hash[..]],
    )
    .unwrap();
    assert_break(&log.state, "inserted", 5, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_records_are_detected_and_located() {
    for (a, b) in [(3, 7), (5, 6)] {
        let mut log = Log::with(10, &[]).await;
        log.close();
        let db = log.db();
        db.execute("UPDATE log SET seq = -1 WHERE seq = ?1", [a])
            .unwrap();
        db.execute("UPDATE log SET seq = ?1 WHERE seq = ?2", [a, b])
            .unwrap();
        db.execute("UPDATE log SET seq = ?1 WHERE seq = -1", [b])
            .unwrap();
        let brk = assert_break(&log.state, "reordered", a, a);
        assert_eq!(brk["other_seq"].as_i64(), Some(b), "{brk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_chain_is_caught_by_its_signed_checkpoint() {
    let mut log = Log::with(20, &[10, 20]).await;
    log.close();
    let db = log.db();
    // Record 15 altered and every hash from it on recomputed: the chain alone is consistent.
    let (mut prev, _, mut body) = row(&db, 15);
    body[3] ^= 1;
    db.execute("UPDATE log SET body = ?1 WHERE seq = 15", params![body])
        .unwrap();
    for seq in 15..=20 {
        let (_, _, body) = row(&db, seq);
        let hash = chain_hash(&prev.clone().try_into().unwrap(), seq, &body);
        db.execute(
            "UPDATE log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            params![prev, &hash[..], seq],
        )
        .unwrap();
        prev = hash.to_vec();
    }
    assert_break(&log.state, "rewritten", 11, 20);
    // Making the checkpoint match needs the key: without it, the signature fails.
    db.execute(
        "UPDATE checkpoints SET hash = ?1 WHERE seq = 20",
        params![prev],
    )
    .unwrap();
    assert_break(&log.state, "bad_checkpoint", 20, 20);
}

/// A checkpoint column holding what no text column should (bytes that are not UTF-8, which
/// SQLite stores as text all the same) is read as it is and reported as a checkpoint that does
/// not verify, never an unreadable log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_with_garbage_in_its_text_columns_is_a_break_not_an_unreadable_log() {
    let mut log = Log::with(20, &[10, 20]).await;
    log.close();
    let db = log.db();
    db.execute(
        "UPDATE checkpoints SET at = CAST(x'ff00fe' AS TEXT) WHERE seq = 20",
        [],
    )
    .unwrap();
    assert_break(&log.state, "bad_checkpoint", 20, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_keeps_the_chain_verifiable_and_records_itself() {
    let mut log = Log::new();
    let old = |i: usize| format!("2015-01-01T00:00:{i:02}.000000Z");
    let transfer = |id: TransferId| common::stored_transfer(id, &old(0), &["northshire-police"]);
    // Three old transfers: `done` is finished (delivered, payload purged); `waiting` still has
    // a delivery to make; `recent` has a record newer than the retention period.
    let [done, waiting, recent] = [(); 3].map(|()| TransferId::from_uuid(uuid::Uuid::now_v7()));
    for (i, id) in [done, waiting, recent].into_iter().enumerate() {
        let (e, t) = (entry(i + 1, &old(i + 1), Some(id)), transfer(id));
        log.store()
            .write(false, move |tx| {
                let seq = tx.append(&e)?;
                tx.insert_transfer(&t, seq)
            })
            .await
            .unwrap();
    }
    for i in 4..=10 {
        log.append(entry(i, &old(i), Some(done))).await;
    }
    assert_eq!(log.checkpoint().await, 10);
    for i in 11..=14 {
        log.append(entry(i, &now_stamp(), None)).await;
    }
    log.append(entry(15, &now_stamp(), Some(recent))).await;
    let d = done.to_string();
    let finished = d.clone();
    log.store()
        .write(false, move |tx| {
            let c = tx.conn()?;
            c.execute(
                "UPDATE transfers SET payload_purged_at = ?1, payload_inline = NULL",
                [old(20)],
            )?;
            // Finished: delivered. The others are still being retried (as far as the records
            // say: no attempt is recorded for them).
            c.execute(
                "UPDATE deliveries SET state = 'delivered' WHERE transfer_id = ?1",
                [&finished],
            )?;
            c.execute(
                "UPDATE deliveries SET state = 'retrying' WHERE transfer_id != ?1",
                [&finished],
            )?;
            Ok(())
        })
        .await
        .unwrap();

    let now = postern_gateway::clock::now();
    let purged = checkpoint::purge(log.store(), log.key.clone(), 365, now)
        .await
        .unwrap();
    let Purge::Done { seq, record, .. } = purged else {
        panic!("expected a purge, got {purged:?}");
    };
    assert_eq!(seq, 16, "the purge is recorded at the chain's head");
    assert_eq!(
        (record.from_seq, record.to_seq, record.records),
        (1, 10, 10)
    );
    assert_eq!(record.anchor.seq, 10);
    assert_eq!((record.transfers, record.deliveries), (1, 1));
    // Nothing more is due.
    assert_eq!(
        checkpoint::purge(log.store(), log.key.clone(), 365, now)
            .await
            .unwrap(),
        Purge::Nothing
    );
    log.close();

    let db = log.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT MIN(seq) FROM log"), 11);
    assert_eq!(count("SELECT COUNT(*) FROM log_facets WHERE seq <= 10"), 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM log_recipients WHERE seq <= 10"),
        0
    );
    assert_eq!(count("SELECT COUNT(*) FROM transfers"), 2);
    assert_eq!(
        db.query_row("SELECT COUNT(*) FROM transfers WHERE id = ?1", [&d], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap(),
        0,
        "the finished transfer went with its records"
    );
    let (kind, body): (String, Vec<u8>) = db
        .query_row("SELECT kind, body FROM log WHERE seq = 16", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(kind, "log_purged");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["to_seq"].as_i64(), body["records"].as_i64()),
        (Some(10), Some(10))
    );

    let (code, r) = verify_bin(&log.state, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (
            r["first_seq"].as_i64(),
            r["anchor_seq"].as_i64(),
            r["records"].as_i64()
        ),
        (Some(11), Some(10), Some(6)),
        "{r}"
    );

    // After a purge, the first records can still not be removed unnoticed.
    db.execute("DELETE FROM log WHERE seq = 11", []).unwrap();
    assert_break(&log.state, "deleted", 11, 11);
    // And without the anchor, everything before the first record is missing.
    db.execute("DELETE FROM checkpoints WHERE seq = 10", [])
        .unwrap();
    assert_break(&log.state, "deleted", 1, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_refuses_to_delete_records_that_do_not_verify() {
    let log = Log::new();
    for i in 1..=5 {
        log.append(entry(i, &format!("2015-01-01T00:00:0{i}.000000Z"), None))
            .await;
    }
    let db = log.db();
    let (_, _, mut body) = row(&db, 3);
    body[3] ^= 1;
    db.execute("UPDATE log SET body = ?1 WHERE seq = 3", params![body])
        .unwrap();
    let purged = checkpoint::purge(
        log.store(),
        log.key.clone(),
        30,
        postern_gateway::clock::now(),
    )
    .await
    .unwrap();
    match purged {
        Purge::Refused(b) => assert_eq!((b.kind, b.seq), (BreakKind::Altered, 3)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_status_tells_a_script_what_happened() {
    let mut log = Log::with(3, &[3]).await;
    log.close();
    let public = log.key.public().to_string();
    assert_eq!(verify_bin(&log.state, &["--public-key", &public]).0, 0);
    // Checked against another key, the checkpoint does not verify: a break.
    let other = tempfile::tempdir().unwrap();
    let other_key = CheckpointKey::generate_file(&other.path().join("k")).unwrap();
    let (code, r) = verify_bin(&log.state, &["--public-key", &other_key.to_string()]);
    assert_eq!(
        (code, r["break"]["kind"].as_str()),
        (1, Some("bad_checkpoint"))
    );
    // Bad usage: 64.
    assert_eq!(verify_bin(&log.state, &["--public-key", "not-a-key"]).0, 64);
    let keyless = tempfile::tempdir().unwrap();
    assert_eq!(verify_bin(keyless.path(), &[]).0, 64, "no key anywhere");
    // No log to read: 66.
    assert_eq!(verify_bin(keyless.path(), &["--public-key", &public]).0, 66);
    // A public key is printed in a form `--public-key` takes back.
    assert_eq!(public.parse::<PublicKey>().unwrap(), *log.key.public());
}

#[test]
fn a_missing_checkpoint_key_is_reported_at_its_configuration_key() {
    let d = Deployment::new();
    let _ = std::fs::remove_file(key_path(&d.state_dir));
    let opts = LoadOptions {
        dir: ConfigDir::Dir(d.config_dir.clone()),
        overrides: Overrides::default(),
        env: Some(Default::default()),
    };
    let errors = match config::load(&opts) {
        Ok(_) => panic!("loaded without a checkpoint key"),
        Err(e) => e.to_string(),
    };
    assert!(errors.contains("log.checkpoint_key"), "{errors}");
    assert!(errors.contains("postern keys checkpoint-key"), "{errors}");
    // Made as the error says, it loads, with the default settings.
    CheckpointKey::generate_file(&key_path(&d.state_dir)).unwrap();
    let c = d.load();
    assert_eq!(c.daemon.log.retain_days, 2190);
    assert_eq!(c.daemon.log.checkpoint_interval.as_secs(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_checkpoints_are_thinned_to_one_a_day_and_the_log_still_verifies() {
    let mut log = Log::new();
    let now = postern_gateway::clock::now();
    let recent = postern_gateway::clock::stamp(now - time::Duration::hours(1));
    for (i, at) in [
        "2020-03-01T09:00:00.000000Z",
        "2020-03-01T17:00:00.000000Z",
        "2020-03-02T09:00:00.000000Z",
        &recent,
        &now_stamp(),
    ]
    .into_iter()
    .enumerate()
    {
        let (e, key, at) = (entry(i, at, None), log.key.clone(), at.to_owned());
        log.store()
            .write(false, move |tx| {
                tx.append(&e)?;
                checkpoint::sign_head(tx, &key, &at)
            })
            .await
            .unwrap()
            .expect("signed");
    }
    let removed = checkpoint::thin(log.store(), now).await.unwrap();
    assert_eq!(removed, 1, "only the first of 1 March goes");
    log.close();
    let seqs: Vec<i64> = log
        .db()
        .prepare("SELECT seq FROM checkpoints ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seqs, vec![2, 3, 4, 5]);
    let r = log.verify();
    assert!(r.intact(), "{r:?}");
    assert_eq!((r.checkpoints, r.uncovered), (4, 0));
}

/// What a DPO's searches read is evidence, or is checked against it: every index (the `log`
/// columns, `log_facets`, `log_recipients`, `log_subjects`, the delivery states) altered,
/// deleted or added to is a break, located at the record it disagrees with, exit 1. Each change
/// is undone before the next, and the untouched log is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_index_a_search_reads_is_checked_against_the_chained_records() {
    let d = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    checkpoint::ensure_key_file(&key_path(&d.state_dir)).unwrap();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let shared = common::json(&submit(&mut conn, &envelope(json!({})), vec![1; 500], None).await)
        ["transfer_id"]
        .as_str()
        .expect("accepted")
        .to_owned();
    // An urgent share whose rationale is to follow, and a refusal.
    urgent_share(&mut conn).await;
    let _ = submit(
        &mut conn,
        &envelope(json!({"purpose": "nope"})),
        vec![3],
        None,
    )
    .await;
    common::wait_recipient(&mut conn, &shared, "northshire-police", "delivery", |s| {
        s["state"] == "delivered"
    })
    .await;
    drop(conn);
    server.stop().await;
    let (code, r) = verify_bin(&d.state_dir, &[]);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");

    let db = Connection::open(db_path(&d.state_dir)).unwrap();
    let seq_of = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let accepted = seq_of("SELECT MIN(seq) FROM log WHERE kind = 'transfer_accepted'");
    let pending = seq_of("SELECT seq FROM log_facets WHERE rationale_pending = 1");
    let attempt = seq_of("SELECT MIN(seq) FROM log WHERE kind = 'delivery_attempt'");
    // (what is changed, the change, its undoing, the record it is reported at)
    let cases: Vec<(&str, String, String, i64)> = vec![
        (
            "a facet altered",
            format!("UPDATE log_facets SET purpose = 'early-help' WHERE seq = {accepted}"),
            format!(
                "UPDATE log_facets SET purpose = 'child-protection-s47' WHERE seq = {accepted}"
            ),
            accepted,
        ),
        (
            "a subject row deleted",
            format!(
                "CREATE TABLE saved AS SELECT * FROM log_subjects WHERE seq = {accepted}; DELETE FROM log_subjects WHERE seq = {accepted}"
            ),
            "INSERT INTO log_subjects SELECT * FROM saved; DROP TABLE saved".into(),
            accepted,
        ),
        (
            "a subject row added",
            format!(
                "INSERT INTO log_subjects VALUES ('0000000000000000000000000000000000000000000000000000000000000000', {attempt})"
            ),
            format!("DELETE FROM log_subjects WHERE seq = {attempt}"),
            attempt,
        ),
        (
            "the transfer id of a record changed",
            format!(
                "CREATE TABLE saved AS SELECT transfer_id FROM log WHERE seq = {attempt}; UPDATE log SET transfer_id = '0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d' WHERE seq = {attempt}"
            ),
            format!(
                "UPDATE log SET transfer_id = (SELECT transfer_id FROM saved) WHERE seq = {attempt}; DROP TABLE saved"
            ),
            attempt,
        ),
        (
            "a recipient added",
            format!("INSERT INTO log_recipients VALUES ('riverside-youth', {accepted})"),
            format!(
                "DELETE FROM log_recipients WHERE recipient = 'riverside-youth' AND seq = {accepted}"
            ),
            accepted,
        ),
        (
            "a pending rationale marked recorded",
            format!("UPDATE log_facets SET rationale_pending = 0 WHERE seq = {pending}"),
            format!("UPDATE log_facets SET rationale_pending = 1 WHERE seq = {pending}"),
            pending,
        ),
        (
            "a facets row for a record that is not a decision",
            format!("INSERT INTO log_facets (seq, at, decision) VALUES ({attempt}, 'x', 'shared')"),
            format!("DELETE FROM log_facets WHERE seq = {attempt}"),
            attempt,
        ),
        (
            "a delivery's queue row deleted",
            format!(
                "CREATE TABLE saved AS SELECT * FROM deliveries WHERE transfer_id = '{shared}'; DELETE FROM deliveries WHERE transfer_id = '{shared}'"
            ),
            "INSERT INTO deliveries SELECT * FROM saved; DROP TABLE saved".into(),
            accepted,
        ),
        (
            "a delivery row added that the acceptance never queued",
            format!(
                "INSERT INTO deliveries (transfer_id, recipient, agreement, state, channel, attempts, next_attempt_at, last_error, updated_at) VALUES ('{shared}', 'riverside-youth', 'x', 'dead', 'email', 5, 'x', 'refused', 'x')"
            ),
            format!(
                "DELETE FROM deliveries WHERE transfer_id = '{shared}' AND recipient = 'riverside-youth'"
            ),
            accepted,
        ),
        (
            "a delivery's state changed",
            format!("UPDATE deliveries SET state = 'dead' WHERE transfer_id = '{shared}'"),
            format!("UPDATE deliveries SET state = 'delivered' WHERE transfer_id = '{shared}'"),
            accepted,
        ),
    ];
    for (what, change, undo, at) in cases {
        db.execute_batch(&change).unwrap();
        let (code, r) = verify_bin(&d.state_dir, &[]);
        assert_eq!(
            (
                code,
                r["break"]["kind"].as_str(),
                r["break"]["seq"].as_i64()
            ),
            (1, Some("index_altered"), Some(at)),
            "{what}: {r}"
        );
        db.execute_batch(&undo).unwrap();
        let (code, r) = verify_bin(&d.state_dir, &[]);
        assert_eq!(code, 0, "{what}, undone: {r}");
    }
}

/// Shares urgently, the justification to follow; returns the transfer id.
async fn urgent_share(conn: &mut postern_gateway::client::Connection) -> String {
    let urgent = submit(
        conn,
        &envelope(json!({"urgency": {"level": "urgent", "reason": "The child is at risk tonight."}, "justification": ""})),
        vec![2; 500],
        None,
    )
    .await;
    assert_eq!(
        urgent.status,
        202,
        "{}",
        String::from_utf8_lossy(&urgent.body)
    );
    common::json(&urgent)["transfer_id"]
        .as_str()
        .expect("accepted")
        .to_owned()
}

/// The head of a log written by a gateway that has stopped cleanly, and a record appended to it
/// as an attacker with the database would (its hash chained correctly).
fn append_forged(db: &Connection) -> i64 {
    let (seq, hash): (i64, Vec<u8>) = db
        .query_row(
            "SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let record = DeclinedRecord {
        kind: RecordKind::DecisionDeclined,
        decision_id: TransferId::from_uuid(uuid::Uuid::now_v7()),
        at: now_stamp(),
        sender: SenderRecord {
            org: "northshire-cc".parse().unwrap(),
            certificate: format!("sha256:{}", "0".repeat(64)),
            person: None,
        },
        recipients: vec!["northshire-police".parse().unwrap()],
        purpose: None,
        reasons: "forged after the gateway stopped".into(),
        practitioner: PractitionerRecord {
            name: "Nobody".into(),
            role: "Nobody".into(),
            contact: "nobody@example.org".into(),
        },
        request: None,
        data_categories: Vec::new(),
        subject_ref_hashes: Vec::new(),
        idempotency_key: None,
    };
    let e = LogEntry::new(&record).unwrap();
    let next = seq + 1;
    let h = chain_hash(&hash.clone().try_into().unwrap(), next, &e.body);
    db.execute(
        "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash) VALUES (?1, ?2, 'decision_declined', ?3, 'northshire-cc', NULL, ?4, ?5, ?6)",
        params![next, e.at, e.transfer_id.map(|t| t.to_string()), e.body, hash, &h[..]],
    )
    .unwrap();
    db.execute(
        "INSERT INTO log_facets (seq, at, decision, transfer_id, sender) VALUES (?1, ?2, 'declined', ?3, 'northshire-cc')",
        params![next, e.at, e.transfer_id.map(|t| t.to_string())],
    )
    .unwrap();
    db.execute(
        "INSERT INTO log_recipients VALUES ('northshire-police', ?1)",
        [next],
    )
    .unwrap();
    next
}

/// Three transfers shared and delivered, then two refused, and the gateway stopped cleanly.
async fn shared_and_stopped(d: &Deployment) {
    checkpoint::ensure_key_file(&key_path(&d.state_dir)).unwrap();
    common::shared_and_stopped(d, 3).await;
}

/// A record appended and re-chained while the gateway was stopped is not signed at the next
/// start: the gateway refuses to start (exit 65) until an operator accepts the head, which is
/// recorded and reported by `log verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_added_while_the_gateway_was_stopped_are_not_signed_at_the_next_start() {
    let d = Deployment::new();
    shared_and_stopped(&d).await;
    let forged = append_forged(&Connection::open(db_path(&d.state_dir)).unwrap());
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("records {forged} to {forged} were added to the transfer log while the gateway was stopped"))
            && stderr.contains("postern log accept-head"),
        "{stderr}"
    );
    // `log verify` sees it too: the record is not covered by any checkpoint.
    let (code, r) = verify_bin(&d.state_dir, &["--config", d.config_dir.to_str().unwrap()]);
    assert_eq!((code, r["uncovered"].as_i64()), (0, Some(1)), "{r}");

    let (code, said) =
        common::accept_head(&d, "Checked by the DPO: the record was restored from paper");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("accepted (appended)"), "{said}");
    assert_eq!(
        common::try_serve(&d).0,
        None,
        "the gateway starts once the head is accepted"
    );
    let (code, r) = verify_bin(&d.state_dir, &["--config", d.config_dir.to_str().unwrap()]);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");
    assert_eq!(r["accepted"][0]["found"], "appended", "{r}");
    assert_eq!(r["accepted"][0]["found_seq"].as_i64(), Some(forged));
    assert!(
        common::accept_head(&d, "again")
            .1
            .contains("nothing to accept")
    );
}

/// Deleting the newest records together with the newest checkpoints in the database is caught
/// by the checkpoint file kept outside it: by `log verify`, and by the gateway at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_log_and_its_checkpoints_together_is_caught_by_the_checkpoint_file() {
    let d = Deployment::new();
    shared_and_stopped(&d).await;
    let config = ["--config", d.config_dir.to_str().unwrap()];
    let (code, r) = verify_bin(&d.state_dir, &config);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");
    let file = r["checkpoint_file"].clone();
    assert!(file["used"].as_u64() >= Some(1), "{r}");
    let last = r["last_seq"].as_i64().unwrap();

    let db = Connection::open(db_path(&d.state_dir)).unwrap();
    let cut = last - 1;
    for t in [
        "log",
        "log_facets",
        "log_recipients",
        "log_subjects",
        "checkpoints",
    ] {
        db.execute(&format!("DELETE FROM {t} WHERE seq >= ?1"), [cut])
            .unwrap();
    }
    // The database alone now looks intact...
    let (_, alone) = verify_bin(
        &d.state_dir,
        &[
            "--checkpoints",
            d.dir.path().join("none.jsonl").to_str().unwrap(),
        ],
    );
    assert_eq!(alone["intact"], true, "{alone}");
    // ... the checkpoint file is not fooled.
    let (code, r) = verify_bin(&d.state_dir, &config);
    assert_eq!(
        (
            code,
            r["break"]["kind"].as_str(),
            r["break"]["seq"].as_i64()
        ),
        (1, Some("deleted"), Some(cut)),
        "{r}"
    );
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("records were deleted"), "{stderr}");

    // A backup restored, say: accepted, recorded, and then intact with the acceptance listed.
    let (code, said) = common::accept_head(&d, "Restored from the backup of the night before");
    assert_eq!(code, 0, "{said}");
    let (code, r) = verify_bin(&d.state_dir, &config);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");
    assert_eq!(r["accepted"][0]["found"], "truncated", "{r}");
    assert_eq!(common::try_serve(&d).0, None);

    // Everything past its retention period: the purge stops short of the acceptance, which
    // still voids the file's checkpoints of the records that were cut (purged with it, they
    // would count again, and stop the gateway).
    let accepted = r["accepted"][0]["seq"].as_i64().unwrap();
    let (store, _) = Store::open(&d.state_dir).unwrap();
    let key = Arc::new(CheckpointKey::from_file(&key_path(&d.state_dir)).unwrap());
    let later = postern_gateway::clock::now() + time::Duration::days(2);
    match checkpoint::purge(&store, key, 1, later).await.unwrap() {
        Purge::Done { record, .. } => assert_eq!(record.to_seq, accepted - 1),
        other => panic!("expected a purge, got {other:?}"),
    }
    drop(store);
    let (code, r) = verify_bin(&d.state_dir, &config);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, None, "{stderr}");
}

/// A head hash that is unreadable or of the wrong length is an error, never the genesis value:
/// the store refuses to open (so the gateway does not start and chain from nothing), and
/// `log verify` reports the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_hash_of_the_wrong_length_is_an_error_not_the_start_of_a_new_chain() {
    let mut log = Log::with(5, &[]).await;
    log.close();
    log.db()
        .execute("UPDATE log SET hash = x'0102' WHERE seq = 5", [])
        .unwrap();
    match Store::open(&log.state) {
        Err(e) => assert!(
            e.to_string().contains("record 5") && e.to_string().contains("2 bytes"),
            "{e}"
        ),
        Ok(_) => panic!("a store whose head cannot be chained from must not open"),
    }
    assert_break(&log.state, "altered", 5, 5);
}

/// A `head_accepted` record the checkpoint key did not sign (appended by someone who can write
/// to the database) voids no checkpoint: records deleted behind it are still caught, by
/// `log verify` and at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_acceptance_voids_no_checkpoint() {
    let d = Deployment::new();
    shared_and_stopped(&d).await;
    let config = ["--config", d.config_dir.to_str().unwrap()];
    let (_, r) = verify_bin(&d.state_dir, &config);
    let last = r["last_seq"].as_i64().unwrap();
    let db = Connection::open(db_path(&d.state_dir)).unwrap();
    // The newest record deleted, and an acceptance forged in its place that would void every
    // checkpoint (valid_to 0, stamped far in the future).
    for t in ["log", "log_facets", "log_recipients", "log_subjects"] {
        db.execute(&format!("DELETE FROM {t} WHERE seq = ?1"), [last])
            .unwrap();
    }
    let (prev, prev_hash): (i64, Vec<u8>) = db
        .query_row(
            "SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let record = postern_gateway::log::HeadAcceptedRecord {
        kind: RecordKind::HeadAccepted,
        at: "9999-12-31T23:59:59.999Z".into(),
        found_seq: prev,
        found_hash: hex::encode(&prev_hash),
        checkpoint_seq: 0,
        checkpoint_hash: String::new(),
        checkpoint_at: String::new(),
        found: "truncated".into(),
        valid_to: Some(0),
        reason: "forged".into(),
    };
    let e = LogEntry::new(&record).unwrap();
    let h = chain_hash(&prev_hash.clone().try_into().unwrap(), last, &e.body);
    db.execute(
        "INSERT INTO log (seq, at, kind, transfer_id, sender, code, body, prev_hash, hash) VALUES (?1, ?2, 'head_accepted', NULL, NULL, NULL, ?3, ?4, ?5)",
        params![last, e.at, e.body, prev_hash, &h[..]],
    )
    .unwrap();

    let (code, r) = verify_bin(&d.state_dir, &config);
    assert_eq!(code, 1, "the rewritten record is caught: {r}");
    assert_eq!(
        (r["break"]["kind"].as_str(), r["break"]["to_seq"].as_i64()),
        (Some("rewritten"), Some(last)),
        "the signed checkpoint of record {last} no longer matches: {r}"
    );
    assert!(
        r["accepted"].as_array().is_none_or(Vec::is_empty),
        "the forged acceptance is not reported as one: {r}"
    );
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, Some(65), "the gateway refuses to start: {stderr}");
}

/// A purge whose cut falls between an urgent share and the rationale added for it later is not
/// taken for tampering with the index (the prefix still shows the rationale as to follow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_between_an_urgent_share_and_its_rationale_goes_ahead() {
    let d = Deployment::new();
    checkpoint::ensure_key_file(&key_path(&d.state_dir)).unwrap();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let id = urgent_share(&mut conn).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let body = json!({
        "justification": "A strategy discussion could not wait.",
        "practitioner": {"name": "Alex Moore", "role": "Team manager", "contact": "alex.moore@northshire-cc.example"}
    });
    let a = conn
        .post_json(
            &format!("/v1/transfers/{id}/rationale"),
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    drop(conn);
    server.stop().await;

    let db = Connection::open(db_path(&d.state_dir)).unwrap();
    let (rationale_seq, rationale_at): (i64, String) = db
        .query_row(
            "SELECT seq, at FROM log WHERE kind = 'rationale_added'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let share_seq: i64 = db
        .query_row(
            "SELECT seq FROM log WHERE kind = 'transfer_accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Retention of one day, a day after the rationale: everything before it is due.
    let now = postern_gateway::clock::parse(&rationale_at).unwrap() + time::Duration::days(1);
    let (store, _) = Store::open(&d.state_dir).unwrap();
    let key = Arc::new(CheckpointKey::from_file(&key_path(&d.state_dir)).unwrap());
    let purged = checkpoint::purge(&store, key, 1, now).await.unwrap();
    let Purge::Done { record, .. } = purged else {
        panic!("the purge must go ahead: {purged:?}");
    };
    assert!(
        record.to_seq >= share_seq && record.to_seq < rationale_seq,
        "the cut falls between the share ({share_seq}) and its rationale ({rationale_seq}): {}",
        record.to_seq
    );
    drop(store);
    let (code, r) = verify_bin(&d.state_dir, &[]);
    assert_eq!((code, &r["intact"]), (0, &json!(true)), "{r}");
}

/// A gateway that purged every record before the next checkpoint and then stopped uncleanly
/// starts again: the purge's anchor vouches for the record the rest chains from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_of_everything_then_a_crash_still_starts() {
    let mut log = Log::with(5, &[5]).await;
    let now = postern_gateway::clock::now() + time::Duration::days(2);
    let purged = checkpoint::purge(log.store(), log.key.clone(), 1, now)
        .await
        .unwrap();
    assert!(matches!(purged, Purge::Done { .. }), "{purged:?}");
    log.close();
    let r = Reader::open(&log.state).unwrap();
    let found = checkpoint::head_found(r.conn().unwrap(), log.key.public(), None).unwrap();
    assert!(
        found.state.may_start(),
        "the head after the purge follows its anchor: {:?}",
        found.state
    );
    assert_eq!(
        found.valid_to, 5,
        "the anchor counts as a matching checkpoint"
    );
}
