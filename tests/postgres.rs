//! The PostgreSQL store, against a real PostgreSQL over TLS (its certificate made by the
//! project's own CA code): `postern store migrate` and its recorded versions, two nodes migrating
//! at once, a database newer than the binary, TLS verified against the configured CA, an
//! unreachable database told apart from a misconfigured one, and `postern store copy` of a
//! single node followed by `postern log verify` on the copy (and on a tampered copy). One suite,
//! two backends: the store's checks (`testkit::store_suite`) and the DPO's queries and commands
//! answer alike on SQLite and PostgreSQL. Two nodes' stores commit into one chain, and a node
//! answers "unavailable" while the database is away (cut through a relay) and writes again once
//! it is back.
//!
//! The server comes from `.ci/postgres`, which prints the variables read here
//! (POSTERN_TEST_POSTGRES_URL, _CA, _PASSWORD_FILE). Without them each test prints one loud
//! SKIPPED line, unless POSTERN_REQUIRE_POSTGRES=1 (as `.ci/run` sets), when it fails. Each test
//! works in a database of its own, dropped at the end. The configuration checks at the bottom
//! need no server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Deployment, envelope, submit};
use postern_gateway::store::pg::log as chain;
use postern_gateway::store::pg::{self, PgError, Pool, Target, lease, queue};
use serde_json::{Value, json};

struct Server {
    url: String,
    ca: PathBuf,
    password_file: PathBuf,
}

/// The test server, or `None` (having said SKIPPED) where there is none and skipping is allowed.
fn server(test: &str) -> Option<Server> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("POSTERN_TEST_POSTGRES_URL"),
        var("POSTERN_TEST_POSTGRES_CA"),
        var("POSTERN_TEST_POSTGRES_PASSWORD_FILE"),
    ) {
        (Some(url), Some(ca), Some(pw)) => Some(Server {
            url,
            ca: ca.into(),
            password_file: pw.into(),
        }),
        _ => {
            let why = "POSTERN_TEST_POSTGRES_URL, _CA and _PASSWORD_FILE are not set (eval \"$(.ci/postgres)\" starts a server and sets them)";
            if std::env::var("POSTERN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("POSTERN_REQUIRE_POSTGRES=1 but {why}");
            }
            eprintln!("\n==== SKIPPED: PostgreSQL test {test} (tests/postgres.rs): {why} ====\n");
            None
        }
    }
}

fn target(url: &str, ca: &Path, password_file: Option<&Path>) -> Target {
    let material = postern_gateway::config::store::read_material(
        &postern_gateway::config::store::PostgresSettings {
            url: postern_gateway::config::store::parse_url(url).unwrap(),
            ca: ca.to_owned(),
            password_file: password_file.map(Path::to_owned),
            pool_size: 4,
            node: "test".into(),
        },
    )
    .unwrap();
    Target {
        url: postern_gateway::config::store::parse_url(url).unwrap(),
        roots: material.roots,
        password: material.password,
        pool_size: 4,
    }
}

/// A database of this test's own, dropped when it goes.
struct Db {
    admin: Pool,
    name: String,
    url: String,
    server_ca: PathBuf,
    password_file: PathBuf,
}

impl Db {
    async fn new(s: &Server) -> Db {
        let admin = Pool::new(&target(&s.url, &s.ca, Some(&s.password_file))).unwrap();
        let name = format!("pt_{}", uuid::Uuid::now_v7().simple());
        admin
            .get()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = s.url.rsplit_once('/').unwrap().0;
        Db {
            admin,
            url: format!("{base}/{name}"),
            name,
            server_ca: s.ca.clone(),
            password_file: s.password_file.clone(),
        }
    }

    fn target(&self) -> Target {
        target(&self.url, &self.server_ca, Some(&self.password_file))
    }

    fn pool(&self) -> Pool {
        Pool::new(&self.target()).unwrap()
    }

    async fn drop_it(self) {
        let _ = self
            .admin
            .get()
            .await
            .unwrap()
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

async fn migrate(pool: &Pool) -> Result<pg::MigrateReport, PgError> {
    let mut c = pool.get().await?;
    pg::migrate(&mut c, pool.target()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_every_table_records_its_version_and_runs_again_as_a_no_op() {
    let Some(s) = server("migrate") else { return };
    let db = Db::new(&s).await;
    let pool = db.pool();
    // An empty database is not ready to serve from.
    assert!(matches!(
        pool.probe().await,
        Err(PgError::NotMigrated { found: 0, .. })
    ));
    let r = migrate(&pool).await.unwrap();
    assert_eq!((r.from, r.to), (0, pg::SCHEMA_VERSION));
    pool.probe().await.unwrap();
    let c = pool.get().await.unwrap();
    let st = pg::status(&c, pool.target()).await.unwrap();
    assert_eq!(st.version, pg::SCHEMA_VERSION);
    assert_eq!(st.history.len(), 1);
    assert!(st.history[0].2.starts_with("postern "), "{:?}", st.history);
    // Every table the SQLite store has, and what several nodes need besides.
    for t in pg::copy::TABLES
        .iter()
        .chain(&["payload_chunks", "log_head", "leases", "nodes"])
    {
        let found: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[t])
            .await
            .unwrap()
            .get(0);
        assert!(found, "table {t} missing");
    }
    let again = migrate(&pool).await.unwrap();
    assert_eq!(
        (again.from, again.to),
        (pg::SCHEMA_VERSION, pg::SCHEMA_VERSION)
    );
    let versions: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_versions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, pg::SCHEMA_VERSION);
    drop(c);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_migrating_at_once_take_turns() {
    let Some(s) = server("concurrent migrate") else {
        return;
    };
    let db = Db::new(&s).await;
    let (a, b) = (db.pool(), db.pool());
    let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // One did the work, the other found it done.
    let mut froms = [ra.from, rb.from];
    froms.sort();
    assert_eq!(froms, [0, pg::SCHEMA_VERSION]);
    let n: i64 = a
        .get()
        .await
        .unwrap()
        .query_one("SELECT COUNT(*) FROM schema_versions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, pg::SCHEMA_VERSION);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_newer_than_this_postern_is_left_alone_and_refused() {
    let Some(s) = server("newer schema") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO schema_versions (version, postern) VALUES (99, 'postern 9.9')",
            &[],
        )
        .await
        .unwrap();
    let err = migrate(&pool).await.unwrap_err();
    assert!(matches!(err, PgError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade postern"), "{err}");
    assert!(matches!(pool.probe().await, Err(PgError::TooNew { .. })));
    // The binary says the same, with its exit status.
    let out = postern(&[
        "store",
        "migrate",
        "--url",
        &db.url,
        "--ca",
        db.server_ca.to_str().unwrap(),
        "--password-file",
        db.password_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_an_unreachable_database_is_told_apart_from_a_misconfigured_one() {
    let Some(s) = server("TLS and errors") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A CA of the project's own making that did not issue the server's certificate.
    postern_gateway::pki::Ca::generate("Another CA")
        .unwrap()
        .save(&dir.path().join("other"))
        .unwrap();
    let other = dir.path().join("other").join("ca.crt");
    let err = Pool::new(&target(&s.url, &other, Some(&s.password_file)))
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::Tls { .. }), "{err}");
    assert!(!err.is_unavailable());
    assert!(err.to_string().contains("not issued by a CA"), "{err}");

    // The right CA, but the certificate is for localhost and 127.0.0.1 only.
    let err = Pool::new(&target(
        &s.url.replace("localhost", "127.0.0.2"),
        &s.ca,
        Some(&s.password_file),
    ))
    .unwrap()
    .probe()
    .await
    .unwrap_err();
    // (127.0.0.2 is loopback on Linux, but the server listens on 127.0.0.1 only: unreachable)
    assert!(err.is_unavailable(), "{err}");

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let err = Pool::new(&target(&s.url, &s.ca, Some(&wrong)))
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::Auth { .. }), "{err}");
    let err = Pool::new(&target(&s.url, &s.ca, None))
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("store.password_file"), "{err}");

    // Nobody listens: unavailable (a 503 and a retry), not a configuration fault.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = Pool::new(&target(
        &format!("postgres://postern@localhost:{port}/postern"),
        &s.ca,
        None,
    ))
    .unwrap()
    .probe()
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let out = postern(&[
        "store",
        "status",
        "--url",
        &format!("postgres://postern@localhost:{port}/postern"),
        "--ca",
        s.ca.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be reached"),
        "{out:?}"
    );
}

fn postern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("POSTERN_CONFIG_DIR")
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .expect("run postern")
}

/// Points a deployment's configuration at the database.
fn use_postgres(d: &Deployment, db: &Db) {
    let p = d.config_dir.join("postern.toml");
    let mut toml = std::fs::read_to_string(&p).unwrap();
    toml.push_str(&format!(
        "\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\nca = \"{}\"\npassword_file = \"{}\"\n",
        db.url,
        db.server_ca.display(),
        db.password_file.display()
    ));
    std::fs::write(p, toml).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_a_single_node_into_postgres_and_log_verify_passes_on_the_copy() {
    let Some(s) = server("store copy") else {
        return;
    };
    let db = Db::new(&s).await;
    let d = Deployment::new();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    // Small (inline), large (a spool file), larger than one chunk (several), and a refusal.
    let sizes = [1_000usize, 200_000, 2_500_000];
    for (i, n) in sizes.iter().enumerate() {
        let a = submit(
            &mut conn,
            &envelope(json!({})),
            common::payload(*n, i as u8),
            None,
        )
        .await;
        assert_eq!(a.status, 202, "{:?}", String::from_utf8_lossy(&a.body));
    }
    let refused = common::submit_refused(&mut conn).await;
    assert_ne!(refused.status, 202);
    drop(conn);

    let args = |db: &Db| {
        vec![
            "store".to_owned(),
            "copy".into(),
            "--from".into(),
            format!("sqlite:{}", d.state_dir.display()),
            "--to".into(),
            format!("postgres:{}", db.url),
            "--ca".into(),
            db.server_ca.display().to_string(),
            "--password-file".into(),
            db.password_file.display().to_string(),
            "--json".into(),
        ]
    };
    let run = |db: &Db| {
        let a = args(db);
        postern(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // Not into a database that has no schema yet.
    let out = run(&db);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("postern store migrate"));
    let pool = db.pool();
    migrate(&pool).await.unwrap();
    // Not while the gateway runs: its lock is held.
    let out = run(&db);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another postern process"),
        "{out:?}"
    );
    server.stop().await;

    let out = run(&db);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every table, row for row, as the SQLite store holds it.
    let reader = postern_gateway::store::Reader::open(&d.state_dir).unwrap();
    let c = pool.get().await.unwrap();
    for t in pg::copy::TABLES {
        let sqlite: i64 = reader
            .conn()
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
        let copied: i64 = c
            .query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(copied, sqlite, "{t}");
    }
    let transfers = reader
        .conn()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM transfers", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(transfers, 3);
    // The sealed payloads, byte for byte, in chunks of at most a MiB.
    let files: Vec<String> = {
        let mut stmt = reader
            .conn()
            .unwrap()
            .prepare("SELECT payload_file FROM transfers WHERE payload_file IS NOT NULL")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(files.len(), 2, "the two larger payloads are spool files");
    // The recipient's inbox (delivered by the worker) holds its own sealed copies.
    let inbox_files: i64 = reader
        .conn()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM inbox WHERE payload_file IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        report["payloads"],
        files.len() as i64 + inbox_files,
        "{report}"
    );
    let inbox_chunks: i64 = c
        .query_one(
            "SELECT COUNT(DISTINCT name) FROM payload_chunks WHERE name LIKE 'inbox/%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(inbox_chunks, inbox_files);
    let mut most_chunks = 0;
    for f in &files {
        let on_disk = std::fs::read(d.state_dir.join("spool").join(f)).unwrap();
        let rows = c
            .query(
                "SELECT n, data FROM payload_chunks WHERE name = $1 ORDER BY n",
                &[&format!("spool/{f}")],
            )
            .await
            .unwrap();
        most_chunks = most_chunks.max(rows.len());
        let mut joined = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.get::<_, i32>(0), i as i32);
            let data: Vec<u8> = r.get(1);
            assert!(data.len() <= pg::copy::CHUNK);
            joined.extend(data);
        }
        assert_eq!(joined, on_disk, "{f}");
        // Sealed, never the plaintext: age's header opens it.
        assert!(joined.starts_with(b"age-encryption.org/v1"), "{f}");
    }
    assert!(most_chunks >= 3, "2.5 MB is three chunks");
    // The chain's head row, from which nodes append.
    let head: i64 = c
        .query_one("SELECT seq FROM log_head WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let last: i64 = reader
        .conn()
        .unwrap()
        .query_row("SELECT MAX(seq) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(head, last);
    assert_eq!(report["head"], last);

    // `log verify` on the copy: the configuration names PostgreSQL.
    use_postgres(&d, &db);
    let verify = || {
        postern(&[
            "log",
            "verify",
            "--json",
            "--config",
            d.config_dir.to_str().unwrap(),
        ])
    };
    let out = verify();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["intact"].as_bool(), r["records"].as_i64()),
        (Some(true), Some(last)),
        "{r}"
    );
    // The gateway signed its head at shutdown: the copy is fully covered.
    assert_eq!(r["covered_to"].as_i64(), Some(last), "{r}");

    // A second copy into the same database is refused: it would fork the chain.
    let out = run(&db);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));

    // Tampering with the copy is found as it would be in SQLite.
    c.execute(
        "UPDATE log SET body = convert_to(replace(convert_from(body, 'UTF8'), 'northshire-cc', 'southshire-cc'), 'UTF8') WHERE seq = 2",
        &[],
    )
    .await
    .unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["break"]["seq"].as_i64(), Some(2), "{r}");
    drop(c);
    db.drop_it().await;
}

#[test]
fn the_store_section_is_checked_with_every_error_at_its_line() {
    let d = Deployment::with_daemon(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://postern:secret@db.example.org/postern\"\n",
    );
    let out = postern(&["check-config", "--config", d.config_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.url") && err.contains("holds a password"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the password is never repeated: {err}"
    );
    assert!(
        err.contains("store.ca") && err.contains("is required"),
        "{err}"
    );
    // Every error with its line in postern.toml.
    let toml = std::fs::read_to_string(d.config_dir.join("postern.toml")).unwrap();
    let line = toml.lines().position(|l| l.starts_with("url =")).unwrap() + 1;
    assert!(err.contains(&format!("postern.toml:{line}")), "{err}");

    for (url, says) in [
        (
            "postgres://postern@db.example.org/postern?sslmode=disable",
            "always TLS",
        ),
        ("postgres://db.example.org/postern", "names no user"),
        ("host=/run/postgresql user=postern", "Unix socket"),
        ("not a url", "is not a PostgreSQL URL"),
    ] {
        let err = postern_gateway::config::store::parse_url(url).unwrap_err();
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    let d = Deployment::with_daemon("[store]\nbackend = \"mysql\"\n");
    let out = postern(&["check-config", "--config", d.config_dir.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not \"sqlite\" or \"postgres\""),
        "{out:?}"
    );
}

#[test]
fn a_gateway_whose_database_cannot_be_reached_does_not_start_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    postern_gateway::pki::Ca::generate("Database CA")
        .unwrap()
        .save(&dir.path().join("db"))
        .unwrap();
    // Nothing listens on port 1.
    let d = Deployment::with_daemon(&format!(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://postern@127.0.0.1:1/postern\"\nca = \"{}\"\n",
        dir.path().join("db").join("ca.crt").display()
    ));
    let check = postern(&["check-config", "--config", d.config_dir.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    let serve = postern(&["serve", "--config", d.config_dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&serve.stderr);
    assert_ne!(serve.status.code(), Some(0), "{serve:?}");
    assert!(err.contains("postern@127.0.0.1:1/postern"), "{err}");
    assert!(
        !d.state_dir.join("postern.db").exists(),
        "it did not quietly serve from SQLite"
    );
}

/// A real record (a `transfer_failed`, which files under nothing but itself) saying which node
/// wrote it, its number and a marker, deterministic in all three.
fn entry(node: &str, i: usize, marker: &str) -> postern_gateway::log::LogEntry {
    entry_at(node, i, marker, "2026-12-04T00:00:00.000000Z")
}

/// As [`entry`], stamped `at`.
fn entry_at(node: &str, i: usize, marker: &str, at: &str) -> postern_gateway::log::LogEntry {
    use postern_gateway::log::{LogEntry, RecordKind, SenderRecord, TransferFailedRecord};
    let n = node.bytes().fold(0u128, |a, b| a * 31 + u128::from(b));
    let record = TransferFailedRecord {
        kind: RecordKind::TransferFailed,
        transfer_id: postern_gateway::domain::ids::TransferId::from_uuid(uuid::Uuid::from_u128(
            (n << 64) | i as u128,
        )),
        at: at.into(),
        sender: SenderRecord {
            org: "northshire-cc".parse().unwrap(),
            certificate: String::new(),
            person: None,
        },
        code: "unavailable".into(),
        detail: format!("node={node} i={i} m={marker}"),
    };
    LogEntry::new(&record).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_two_nodes_make_one_chain_and_a_rolled_back_append_leaves_no_gap() {
    let Some(s) = server("log appends from two nodes") else {
        return;
    };
    let db = Db::new(&s).await;
    migrate(&db.pool()).await.unwrap();
    let mut tasks = Vec::new();
    for node in ["node-a", "node-b"] {
        let pool = db.pool();
        for t in 0..6 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut kept = 0usize;
                for i in 0..20 {
                    let mut c = pool.get().await.unwrap();
                    let tx = c.transaction().await.unwrap();
                    // A node's group commit: several records in one transaction.
                    let mut n = 1 + (i % 3);
                    let roll_back = i % 7 == 3;
                    let marker = if roll_back { "rolled-back" } else { "kept" };
                    let mut batch: Vec<_> = (0..n)
                        .map(|k| entry(node, t * 100 + i * 3 + k, marker))
                        .collect();
                    // Real decision records too: their search index (facets, recipients,
                    // subjects) goes in with them.
                    let key =
                        postern_gateway::domain::subject::SubjectKey::new(vec![7; 32]).unwrap();
                    // (Refusals and rejections: an acceptance would need its delivery rows,
                    // which `log verify` compares with it.)
                    let real: Vec<_> = postern_gateway::testkit::synthetic::decision_entries(
                        (t * 1000 + i) as u64,
                        3,
                        3,
                        time::OffsetDateTime::now_utc(),
                        &key,
                    )
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.kind != postern_gateway::log::RecordKind::TransferAccepted)
                    .take(1)
                    .collect();
                    if !roll_back {
                        n += real.len();
                        batch.extend(real);
                    }
                    chain::append(&tx, pool.target(), node, &batch)
                        .await
                        .unwrap();
                    if roll_back {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        kept += n;
                    }
                }
                kept
            }));
        }
    }
    let mut kept = 0;
    for t in tasks {
        kept += t.await.unwrap();
    }
    let pool = db.pool();
    let c = pool.get().await.unwrap();
    let r = c
        .query_one(
            "SELECT COUNT(*), MIN(seq), MAX(seq), COUNT(DISTINCT node) FROM log",
            &[],
        )
        .await
        .unwrap();
    let (count, min, max, nodes): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(count as usize, kept);
    // No gap where a transaction rolled back, and nothing of it kept.
    assert_eq!((min, max), (1, count));
    assert_eq!(nodes, 2, "both nodes' records are in the one chain");
    let ghosts: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM log WHERE position('rolled-back' in convert_from(body, 'UTF8')) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ghosts, 0);
    let head: i64 = c
        .query_one("SELECT seq FROM log_head", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, max);
    // Every decision record's index rows came with it, under its own seq.
    let (facets, subjects, recipients): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM log_facets), (SELECT COUNT(DISTINCT seq) FROM log_subjects), (SELECT COUNT(DISTINCT seq) FROM log_recipients)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let decisions: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM log WHERE position(' m=' in convert_from(body, 'UTF8')) = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(decisions > 0);
    assert_eq!(facets, decisions, "one facets row per decision record");
    assert!(
        recipients > 0 && recipients <= decisions,
        "the decisions' recipients"
    );
    assert!(subjects > 0 && subjects <= decisions);
    let misfiled: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM log_facets f JOIN log l ON l.seq = f.seq WHERE l.at <> f.at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(misfiled, 0);
    // The chain verifies as one, whoever wrote each record.
    let (report, _) = pg::verify::verify_log(&pool, &[], &[]).await.unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.records as i64, count);
    // A record altered early in a chain of hundreds is found, and the check returns (the rows
    // after it, still streaming, must not hold up the query that classifies the break).
    c.execute(
        "UPDATE log SET body = body || '\\x20'::bytea WHERE seq = 5",
        &[],
    )
    .await
    .unwrap();
    let checked = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        pg::verify::verify_log(&pool, &[], &[]),
    )
    .await
    .expect("verify returns after a break")
    .unwrap();
    assert_eq!(checked.0.first_break.map(|b| b.seq), Some(5));
    db.drop_it().await;
}

/// Queues `n` deliveries (one transfer each) straight into the tables.
async fn queue_deliveries(pool: &Pool, n: usize) {
    queue_deliveries_from(pool, 0, n).await;
}

async fn queue_deliveries_from(pool: &Pool, first: usize, n: usize) {
    let c = pool.get().await.unwrap();
    for i in first..first + n {
        let id = format!("t-{i:04}");
        c.execute(
            "INSERT INTO transfers (id, sender, received_at, purpose, marking, payload_size, plaintext_sha256, sealed_sha256, sealed_envelope, log_seq, accepted_at)
             VALUES ($1, 'northshire-cc', '2026-12-04T00:00:00Z', 'p', 'OFFICIAL', 0, '', '', '\\x00', 1, '2026-12-04T00:00:00Z')",
            &[&id],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO deliveries (transfer_id, recipient, agreement, state, channel, next_attempt_at, updated_at)
             VALUES ($1, 'northshire-police', 'a', 'queued', 'inbox', '2026-12-04T00:00:00Z', '2026-12-04T00:00:00Z')",
            &[&id],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_the_same_delivery_and_a_dead_nodes_lease_passes_to_the_other() {
    let Some(s) = server("delivery leases") else {
        return;
    };
    let db = Db::new(&s).await;
    let (a, b) = (db.pool(), db.pool());
    migrate(&a).await.unwrap();
    queue_deliveries(&a, 200).await;
    let now = "2026-12-04T00:01:00Z";
    let until = "2026-12-04T00:01:30Z";
    let drain = |pool: Pool, node: &'static str| async move {
        let mut got = Vec::new();
        loop {
            let c = pool.get().await.unwrap();
            let batch = queue::claim(&c, pool.target(), node, now, until, 7)
                .await
                .unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|c| c.due.transfer_id));
        }
    };
    let (ga, gb) = tokio::join!(drain(a.clone(), "node-a"), drain(b.clone(), "node-b"));
    assert_eq!(ga.len() + gb.len(), 200, "every delivery claimed once");
    let mut all: Vec<_> = ga.iter().chain(&gb).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "no delivery claimed by both nodes");
    assert!(!ga.is_empty() && !gb.is_empty(), "both nodes worked");

    // Node A holds t-0000 under its lease (if B took it, swap the roles' names).
    let c = a.get().await.unwrap();
    let holder: String = c
        .query_one(
            "SELECT lease_node FROM deliveries WHERE transfer_id = 't-0000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let other = if holder == "node-a" {
        "node-b"
    } else {
        "node-a"
    };
    let due = queue::Due {
        transfer_id: "t-0000".into(),
        recipient: "northshire-police".into(),
    };
    let first = queue::Claim {
        due: due.clone(),
        attempt: 1,
        taken_over_from: None,
    };
    // While the holder renews, nobody else takes it; every other delivery's lease lapsed at
    // 00:01:30 (nobody renewed them), so the other node takes those over.
    assert!(
        queue::renew(&c, a.target(), &holder, &first, "2026-12-04T00:02:00Z")
            .await
            .unwrap()
    );
    let early = queue::claim(
        &c,
        a.target(),
        other,
        "2026-12-04T00:01:45Z",
        "2026-12-04T00:02:45Z",
        500,
    )
    .await
    .unwrap();
    assert!(
        !early.iter().any(|l| l.due == due),
        "a renewed lease is not taken"
    );
    assert_eq!(early.len(), 199);
    assert!(early.iter().all(|l| l.attempt == 2));
    // The holder dies: no more renewals. Once its lease lapses, the other node takes it over,
    // as a second attempt.
    let late = queue::claim(
        &c,
        a.target(),
        other,
        "2026-12-04T00:02:01Z",
        "2026-12-04T00:02:31Z",
        500,
    )
    .await
    .unwrap();
    assert_eq!(late.len(), 1, "only the lapsed one");
    assert!(
        late.iter().any(|l| l.due == due
            && l.attempt == 2
            && l.taken_over_from.as_deref() == Some(holder.as_str())),
        "{late:?}"
    );
    // The presumed-dead node can no longer renew, and its late outcome is not recorded over
    // the new attempt...
    assert!(
        !queue::renew(&c, a.target(), &holder, &first, "2026-12-04T00:03:00Z")
            .await
            .unwrap()
    );
    drop(c);
    let mut c = a.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let stale = queue::finish(
        &tx,
        a.target(),
        &holder,
        &first,
        &queue::Finish::Dead {
            error: "late".into(),
        },
        "2026-12-04T00:02:05Z",
    )
    .await
    .unwrap();
    assert!(!stale);
    // ...the new holder's is, and completes the transfer.
    let done = queue::finish(
        &tx,
        a.target(),
        other,
        &late[0],
        &queue::Finish::Delivered {
            receipt: "{}".into(),
        },
        "2026-12-04T00:02:06Z",
    )
    .await
    .unwrap();
    assert!(done);
    tx.commit().await.unwrap();
    let r = c
        .query_one(
            "SELECT d.state, d.lease_node, t.completed_at FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE d.transfer_id = 't-0000'",
            &[],
        )
        .await
        .unwrap();
    let (state, lease, completed): (String, Option<String>, Option<String>) =
        (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        (state.as_str(), lease, completed.as_deref()),
        ("delivered", None, Some("2026-12-04T00:02:06Z"))
    );
    // An attempt a single node was making when it stopped (copied in without a lease) is
    // taken up like a lapsed one.
    queue_deliveries_from(&a, 200, 1).await;
    c.execute(
        "UPDATE deliveries SET state = 'delivering', attempts = 1 WHERE transfer_id = 't-0200'",
        &[],
    )
    .await
    .unwrap();
    let orphan = queue::claim(
        &c,
        a.target(),
        "node-a",
        "2026-12-04T00:00:01Z",
        "2026-12-04T00:00:31Z",
        10,
    )
    .await
    .unwrap();
    assert_eq!(orphan.len(), 1);
    assert_eq!(
        (orphan[0].due.transfer_id.as_str(), orphan[0].attempt),
        ("t-0200", 2)
    );
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_holds_a_named_lease() {
    let Some(s) = server("named leases") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let c = pool.get().await.unwrap();
    let t = pool.target();
    let take = |node: &'static str, now: &'static str, until: &'static str| {
        let c = &c;
        async move {
            lease::take(c, t, "checkpoints", node, now, until)
                .await
                .unwrap()
        }
    };
    assert!(take("node-a", "2026-12-04T00:00:00Z", "2026-12-04T00:00:30Z").await);
    assert!(!take("node-b", "2026-12-04T00:00:10Z", "2026-12-04T00:00:40Z").await);
    // The holder renews.
    assert!(take("node-a", "2026-12-04T00:00:20Z", "2026-12-04T00:00:50Z").await);
    assert!(!take("node-b", "2026-12-04T00:00:45Z", "2026-12-04T00:01:15Z").await);
    // It dies: after the lease lapses, the other node takes it.
    assert!(take("node-b", "2026-12-04T00:00:51Z", "2026-12-04T00:01:21Z").await);
    assert!(!take("node-a", "2026-12-04T00:00:55Z", "2026-12-04T00:01:25Z").await);
    // A clean release hands it over at once.
    lease::release(&c, t, "checkpoints", "node-b")
        .await
        .unwrap();
    assert!(take("node-a", "2026-12-04T00:00:56Z", "2026-12-04T00:01:26Z").await);
    drop(c);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_signs_checkpoints_and_another_takes_over_when_it_dies() {
    use postern_gateway::store::checkpoint::{CheckpointKey, ensure_key_file};
    use postern_gateway::store::pg::writer::LogWriter;
    let Some(s) = server("checkpoints from two nodes") else {
        return;
    };
    let db = Db::new(&s).await;
    let (a, b) = (db.pool(), db.pool());
    migrate(&a).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("checkpoint.key");
    ensure_key_file(&key_file).unwrap();
    let key = CheckpointKey::from_file(&key_file).unwrap();
    let (wa, wb) = (
        LogWriter::start(a.clone(), "node-a".into()),
        LogWriter::start(b.clone(), "node-b".into()),
    );
    let append = |round: usize| {
        let (wa, wb) = (wa.clone(), wb.clone());
        async move {
            for i in 0..5 {
                wa.append(entry("node-a", round * 10 + i, "kept"))
                    .await
                    .unwrap();
                wb.append(entry("node-b", round * 10 + i, "kept"))
                    .await
                    .unwrap();
            }
        }
    };
    let t0 = time::macros::datetime!(2026-12-04 01:00 UTC);
    let lease = std::time::Duration::from_secs(30);
    let sign = |pool: &Pool, node: &'static str, at: time::OffsetDateTime| {
        let (pool, key) = (pool.clone(), &key);
        async move {
            postern_gateway::store::pg::checkpoint::sign_head(&pool, key, node, at, lease)
                .await
                .unwrap()
        }
    };
    append(0).await;
    let first = sign(&a, "node-a", t0).await.expect("node-a signs");
    assert_eq!(first.seq, 10);
    append(1).await;
    // node-b's timer fires too, but node-a holds the lease.
    assert!(
        sign(&b, "node-b", t0 + time::Duration::seconds(10))
            .await
            .is_none()
    );
    let second = sign(&a, "node-a", t0 + time::Duration::seconds(20))
        .await
        .unwrap();
    assert_eq!(second.seq, 20);
    // Nothing new: nothing signed.
    assert!(
        sign(&a, "node-a", t0 + time::Duration::seconds(25))
            .await
            .is_none()
    );
    // node-a dies (its last renewal was at +25 s, so the lease runs to +55 s); the appends go
    // on, and once the lease lapses node-b signs.
    append(2).await;
    assert!(
        sign(&b, "node-b", t0 + time::Duration::seconds(54))
            .await
            .is_none()
    );
    let third = sign(&b, "node-b", t0 + time::Duration::seconds(56))
        .await
        .unwrap();
    assert_eq!(third.seq, 30);
    let nodes: Vec<(i64, String)> = a
        .get()
        .await
        .unwrap()
        .query("SELECT seq, node FROM checkpoints ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        nodes,
        [
            (10, "node-a".into()),
            (20, "node-a".into()),
            (30, "node-b".into())
        ]
    );
    // The chain and every checkpoint verify against the key, whoever signed.
    let (report, _) = pg::verify::verify_log(&a, &[*key.public()], &[])
        .await
        .unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!((report.checkpoints, report.covered_to), (3, Some(30)));
    // Cutting the log short (its last records, and the head row with them) is found: the
    // checkpoint at 30 still names them.
    a.get()
        .await
        .unwrap()
        .batch_execute("DELETE FROM log WHERE seq > 27; UPDATE log_head SET seq = 27")
        .await
        .unwrap();
    let (report, _) = pg::verify::verify_log(&a, &[*key.public()], &[])
        .await
        .unwrap();
    assert!(!report.intact());
    assert_eq!(report.first_break.map(|b| b.seq), Some(28));
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_payloads_go_into_chunks_and_stream_back_whole() {
    use futures_util::TryStreamExt;
    use postern_gateway::store::pg::payload;
    let Some(s) = server("payload chunks") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let read = |name: &str, size: u64| {
        payload::get(pool.clone(), name.to_owned(), size).try_collect::<Vec<_>>()
    };
    let big_size = (2 * payload::CHUNK + 12_345) as u64;
    let big = common::payload(2 * payload::CHUNK + 12_345, 9);
    let mut c = pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let n = payload::put(&tx, pool.target(), "spool/big.age", &mut big.as_slice())
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    assert_eq!(
        payload::put(&tx, pool.target(), "spool/empty.age", &mut [].as_slice())
            .await
            .unwrap(),
        0
    );
    // Not committed yet: another node finds none, and says so (never an empty delivery).
    assert!(read("spool/big.age", big_size).await.is_err());
    tx.commit().await.unwrap();
    let chunks = read("spool/big.age", big_size).await.unwrap();
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| c.len() <= payload::CHUNK));
    assert_eq!(chunks.concat(), big);
    let empty = read("spool/empty.age", 0).await.unwrap();
    assert_eq!(
        (empty.len(), empty.concat().len()),
        (1, 0),
        "an empty payload is still there"
    );
    assert!(read("spool/none.age", 10).await.is_err());
    // A size that disagrees with what is stored is an error, not a short or long read.
    assert!(read("spool/big.age", big_size - 1).await.is_err());
    assert!(read("spool/big.age", big_size + 1).await.is_err());
    // A write that rolls back leaves nothing.
    let tx = c.transaction().await.unwrap();
    payload::put(&tx, pool.target(), "spool/gone.age", &mut big.as_slice())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(read("spool/gone.age", big_size).await.is_err());
    let tx = c.transaction().await.unwrap();
    assert_eq!(
        payload::delete(&tx, pool.target(), "spool/big.age")
            .await
            .unwrap(),
        3
    );
    tx.commit().await.unwrap();
    assert!(read("spool/big.age", big_size).await.is_err());
    drop(c);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_attempt_cannot_record_over_a_newer_one_even_on_the_same_node() {
    let Some(s) = server("attempt fencing") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    queue_deliveries(&pool, 1).await;
    let c = pool.get().await.unwrap();
    let mut w = pool.get().await.unwrap();
    let t = pool.target();
    let claim = |node: &'static str, now: &'static str, until: &'static str| {
        let c = &c;
        async move {
            let mut got = queue::claim(c, t, node, now, until, 10).await.unwrap();
            assert_eq!(got.len(), 1, "{node} at {now}");
            got.remove(0)
        }
    };
    // A's attempt 1 stalls; B takes over (2) and schedules a retry; A claims again (3).
    let a1 = claim("node-a", "2026-12-04T00:01:00Z", "2026-12-04T00:01:30Z").await;
    let b2 = claim("node-b", "2026-12-04T00:01:31Z", "2026-12-04T00:02:00Z").await;
    let tx = w.transaction().await.unwrap();
    let retry = queue::Finish::Retry {
        at: "2026-12-04T00:01:40Z".into(),
        error: "refused".into(),
    };
    assert!(
        queue::finish(&tx, t, "node-b", &b2, &retry, "2026-12-04T00:01:35Z")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let a3 = claim("node-a", "2026-12-04T00:01:41Z", "2026-12-04T00:02:10Z").await;
    assert_eq!((a1.attempt, b2.attempt, a3.attempt), (1, 2, 3));
    // Attempt 1 wakes up: same node, same state, but not its attempt.
    assert!(
        !queue::renew(&c, t, "node-a", &a1, "2026-12-04T00:03:00Z")
            .await
            .unwrap()
    );
    let tx = w.transaction().await.unwrap();
    let dead = queue::Finish::Dead {
        error: "stale".into(),
    };
    assert!(
        !queue::finish(&tx, t, "node-a", &a1, &dead, "2026-12-04T00:01:50Z")
            .await
            .unwrap()
    );
    let ok = queue::Finish::Delivered {
        receipt: "{}".into(),
    };
    assert!(
        queue::finish(&tx, t, "node-a", &a3, &ok, "2026-12-04T00:01:51Z")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let state: String = c
        .query_one("SELECT state FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "delivered");
    drop((c, w));
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_two_deliveries_finished_at_once_on_two_nodes_complete_the_transfer() {
    let Some(s) = server("concurrent completion") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    queue_deliveries(&pool, 1).await;
    // A second recipient for the same transfer.
    let c = pool.get().await.unwrap();
    c.execute(
        "INSERT INTO deliveries (transfer_id, recipient, agreement, state, channel, next_attempt_at, updated_at)
         VALUES ('t-0000', 'westshire-nhs', 'a', 'queued', 'inbox', '2026-12-04T00:00:00Z', '2026-12-04T00:00:00Z')",
        &[],
    )
    .await
    .unwrap();
    let t = pool.target().to_owned();
    let ca = queue::claim(
        &c,
        &t,
        "node-a",
        "2026-12-04T00:01:00Z",
        "2026-12-04T00:01:30Z",
        1,
    )
    .await
    .unwrap();
    let cb = queue::claim(
        &c,
        &t,
        "node-b",
        "2026-12-04T00:01:00Z",
        "2026-12-04T00:01:30Z",
        1,
    )
    .await
    .unwrap();
    assert_eq!((ca.len(), cb.len()), (1, 1));
    drop(c);
    let ok = queue::Finish::Delivered {
        receipt: "{}".into(),
    };
    // Node A records its outcome and has not committed when node B records the other.
    let mut a = pool.get().await.unwrap();
    let tx_a = a.transaction().await.unwrap();
    assert!(
        queue::finish(&tx_a, &t, "node-a", &ca[0], &ok, "2026-12-04T00:01:05Z")
            .await
            .unwrap()
    );
    let (pool_b, t_b, ok_b, claim_b) = (pool.clone(), t.clone(), ok.clone(), cb[0].clone());
    let b = tokio::spawn(async move {
        let mut c = pool_b.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let done = queue::finish(&tx, &t_b, "node-b", &claim_b, &ok_b, "2026-12-04T00:01:06Z")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        done
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx_a.commit().await.unwrap();
    assert!(b.await.unwrap());
    let completed: Option<String> = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT completed_at FROM transfers WHERE id = 't-0000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(completed.as_deref(), Some("2026-12-04T00:01:06Z"));
    db.drop_it().await;
}

/// The body of record `seq`.
async fn body_at(c: &tokio_postgres::Client, seq: i64) -> Vec<u8> {
    c.query_one("SELECT body FROM log WHERE seq = $1", &[&seq])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_group_commit_answers_each_request_with_its_own_record() {
    use postern_gateway::store::pg::writer::LogWriter;
    let Some(s) = server("group commit") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let w = LogWriter::start(pool.clone(), "node-a".into());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { (i, w.append(entry("node-a", i, "kept")).await.unwrap()) })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let c = pool.get().await.unwrap();
    // Each row's xmin is the transaction that wrote it.
    let commits: i64 = c
        .query_one("SELECT COUNT(DISTINCT xmin::text) FROM log", &[])
        .await
        .unwrap()
        .get(0);
    for (i, seq) in &answers {
        assert_eq!(
            body_at(&c, *seq).await,
            entry("node-a", *i, "kept").body,
            "request {i} got seq {seq}"
        );
    }
    let mut seqs: Vec<i64> = answers.iter().map(|a| a.1).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
    // Waiting requests shared commits: 64 records, far fewer transactions.
    assert!(commits < 32, "{commits} commits for 64 records");
    drop(c);
    db.drop_it().await;
}

const SUBJECT_KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// A deployment whose SQLite store holds `records` generated decisions (shares with delivery
/// rows and attempts, refusals, rejections, urgent shares, subjects), copied into `db`; its
/// configuration then names the database. Returns what was generated.
async fn generated_copy(
    d: &Deployment,
    db: &Db,
    records: u64,
) -> Vec<postern_gateway::testkit::synthetic::Generated> {
    use postern_gateway::testkit::synthetic;
    let key =
        postern_gateway::domain::subject::SubjectKey::new(hex::decode(SUBJECT_KEY_HEX).unwrap())
            .unwrap();
    std::fs::write(d.dir.path().join("subject.key"), SUBJECT_KEY_HEX).unwrap();
    let mut out = Vec::new();
    {
        let (store, _) = postern_gateway::store::Store::open(&d.state_dir).unwrap();
        let plan = synthetic::Plan {
            records,
            seed: 20261204,
            people: 40,
            start: time::macros::datetime!(2026-03-01 00:00 UTC),
            batch: 50,
        };
        synthetic::generate(&store, plan, std::sync::Arc::new(key), |g| out.push(g))
            .await
            .unwrap();
    }
    let pool = db.pool();
    migrate(&pool).await.unwrap();
    pg::copy::copy_from_sqlite(&d.state_dir, &pool)
        .await
        .unwrap();
    use_postgres(d, db);
    out
}

/// One suite, two backends: the DPO's queries (search by every filter, by person, corrections,
/// the report, a transfer's records and deliveries, counts) are the same code on SQLite and
/// PostgreSQL, and over the same records they answer the same, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_queries_answer_alike_from_sqlite_and_postgresql() {
    use postern_gateway::store::search::{self, LogQuery};
    use postern_gateway::store::{LogFilter, Reader};
    let Some(s) = server("log queries on both backends") else {
        return;
    };
    let db = Db::new(&s).await;
    let d = Deployment::new();
    let generated = generated_copy(&d, &db, 600).await;
    let sqlite = Reader::open(&d.state_dir).unwrap();
    let postgres = Reader::postgres(&db.pool()).await.unwrap();

    let shared = generated
        .iter()
        .find(|g| g.decision == "shared" && g.recipients.len() > 1)
        .unwrap()
        .clone();
    let person = generated
        .iter()
        .find(|g| !g.subjects.is_empty())
        .unwrap()
        .subjects[0]
        .clone();
    let key =
        postern_gateway::domain::subject::SubjectKey::new(hex::decode(SUBJECT_KEY_HEX).unwrap())
            .unwrap();
    let hashes: Vec<String> = postern_gateway::domain::subject::SubjectRef::parse(&person)
        .unwrap()
        .search_hashes(&key)
        .iter()
        .map(|h| h.as_str().to_owned())
        .collect();
    let q = |f: fn(&mut LogQuery)| {
        let mut q = LogQuery::default();
        f(&mut q);
        q
    };
    let queries: Vec<(&str, LogQuery)> = vec![
        ("everything, newest first", q(|_| {})),
        (
            "a page",
            q(|q| {
                q.before = Some(300);
                q.limit = Some(25);
            }),
        ),
        ("oldest first", q(|q| q.oldest_first = true)),
        (
            "by sender",
            q(|q| q.sender = Some("northshire-police".into())),
        ),
        (
            "by recipient",
            q(|q| q.recipient = Some("northshire-cc".into())),
        ),
        ("by party", q(|q| q.party = Some("riverside-youth".into()))),
        ("by purpose", q(|q| q.purpose = Some("early-help".into()))),
        (
            "by basis",
            q(|q| q.lawful_basis = Some("public_task".into())),
        ),
        (
            "by marking level",
            q(|q| q.marking_level = Some("OFFICIAL-SENSITIVE".into())),
        ),
        ("refusals", q(|q| q.decision = Some("refused".into()))),
        ("urgent", q(|q| q.urgency = Some("urgent".into()))),
        (
            "dead deliveries",
            q(|q| q.delivery_state = Some("dead".into())),
        ),
        (
            "a time window",
            q(|q| {
                q.from = Some("2026-03-01T00:02:00.000000Z".into());
                q.to = Some("2026-03-01T00:05:00.000000Z".into());
            }),
        ),
    ];

    // Every query runs off the async threads, as the command-line tools run them.
    let answers = tokio::task::spawn_blocking(move || {
        let both = |r: &Reader| {
            let mut out = Vec::new();
            for (what, query) in &queries {
                out.push((what.to_string(), search::decisions(r.db(), query).unwrap()));
            }
            let about = search::about(r.db(), &hashes, None).unwrap();
            let report = search::report(
                r.db(),
                &LogQuery::default(),
                "2026-03-02T00:00:00.000000Z",
                Some(5),
                "2026-03-02T00:00:00.000000Z",
            )
            .unwrap();
            let records = r
                .records(&LogFilter {
                    transfer_id: Some(shared.transfer_id.clone()),
                    ..LogFilter::default()
                })
                .unwrap();
            let deliveries = r.deliveries(&shared.transfer_id).unwrap();
            let corrections = search::corrections_of(r.db(), &shared.transfer_id).unwrap();
            let counts = r.counts().unwrap();
            (out, about, report, records, deliveries, corrections, counts)
        };
        (both(&sqlite), both(&postgres))
    })
    .await
    .unwrap();
    let (lite, pg) = answers;
    for ((what, a), (_, b)) in lite.0.iter().zip(&pg.0) {
        assert!(!a.is_empty(), "{what}: the generated log has some");
        assert_eq!(a.len(), b.len(), "{what}");
        assert_eq!(a, b, "{what}");
    }
    assert!(!lite.1.is_empty(), "the person has decisions");
    assert_eq!(lite.1, pg.1, "by person");
    assert!(lite.2.decisions.get("shared").copied().unwrap_or(0) > 0);
    assert!(!lite.2.shared_by_recipient.is_empty());
    assert!(!lite.2.refused_by_reason.is_empty());
    assert_eq!(lite.2, pg.2, "the report");
    assert!(lite.3.len() >= 2, "the decision and its delivery attempts");
    assert_eq!(lite.3, pg.3, "a transfer's records");
    assert_eq!(lite.4.len(), shared.recipients.len());
    assert_eq!(lite.4, pg.4, "its deliveries");
    assert_eq!(lite.5, pg.5, "its corrections");
    assert_eq!(lite.6, pg.6, "counts by kind");
    db.drop_it().await;
}

/// `postern log list|show|subject|export|report --config DIR` reads the database the
/// configuration names, and prints what the same command prints from the SQLite store it was
/// copied from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_commands_read_postgresql_when_the_configuration_names_it() {
    let Some(s) = server("log commands on PostgreSQL") else {
        return;
    };
    let db = Db::new(&s).await;
    let d = Deployment::new();
    let generated = generated_copy(&d, &db, 300).await;
    let shared = generated
        .iter()
        .find(|g| g.decision == "shared")
        .unwrap()
        .transfer_id
        .clone();
    let person = generated
        .iter()
        .find(|g| !g.subjects.is_empty())
        .unwrap()
        .subjects[0]
        .clone();
    let key = d.dir.path().join("subject.key");
    let key = key.to_str().unwrap();
    let state = d.state_dir.to_str().unwrap();
    let config = d.config_dir.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["log", "list", "--json", "--limit", "1000"],
        vec!["log", "list", "--decision", "refused"],
        vec!["log", "show", &shared, "--json"],
        vec!["log", "subject", &person, "--key", key, "--json"],
        vec!["log", "export", "--format", "csv"],
        vec!["log", "report", "--json", "--as-of", "2026-03-02"],
    ];
    for c in commands {
        let from_sqlite = postern(&[c.as_slice(), &["--state-dir", state]].concat());
        let from_pg = postern(&[c.as_slice(), &["--config", config]].concat());
        assert!(from_sqlite.status.success(), "{c:?}: {from_sqlite:?}");
        assert!(from_pg.status.success(), "{c:?}: {from_pg:?}");
        assert!(from_sqlite.stdout.len() > 100, "{c:?} printed something");
        // `log report` says when it ran; nothing else differs.
        let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(text(&from_sqlite), text(&from_pg), "{c:?}");
    }
    // A database that cannot be reached is said, not a panic.
    let p = d.config_dir.join("postern.toml");
    let toml = std::fs::read_to_string(&p).unwrap();
    let port = s.url.rsplit_once(':').unwrap().1.split('/').next().unwrap();
    std::fs::write(&p, toml.replace(&format!(":{port}/"), ":1/")).unwrap();
    let out = postern(&["log", "list", "--config", config]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    db.drop_it().await;
}

/// One suite, two backends: the store's checks (sign-in, transfers and the queue, the inbox,
/// requests for information) on SQLite, as the gateway opens it.
#[test]
fn the_store_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    drop(postern_gateway::store::Store::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(postern_gateway::store::db_path(dir.path())).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    let ran = postern_gateway::testkit::store_suite::run(&conn).unwrap();
    assert_eq!(ran.len(), 5);
    // Twice in one database: every check keys its rows by fresh ids.
    postern_gateway::testkit::store_suite::run(&conn).unwrap();
}

/// ... and the same suite on PostgreSQL, as `postern store migrate` leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_postgresql() {
    let Some(s) = server("the store suite") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let client = pool.get().await.unwrap();
    let pg = postern_gateway::store::db::PgDb::new(
        client,
        pool.target(),
        tokio::runtime::Handle::current(),
    );
    let ran = tokio::task::spawn_blocking(move || {
        let first = postern_gateway::testkit::store_suite::run(&pg);
        let second = postern_gateway::testkit::store_suite::run(&pg);
        (first, second)
    })
    .await
    .unwrap();
    assert_eq!(ran.0.unwrap().len(), 5);
    ran.1.unwrap();
    db.drop_it().await;
}

/// `log verify` on PostgreSQL compares the search indexes and the delivery states with the
/// records, as on SQLite: an index row changed, an index row added, and a delivery's state
/// changed are each found, at the record they belong to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_verify_on_postgresql_compares_the_indexes_and_delivery_states() {
    let Some(s) = server("log verify indexes on PostgreSQL") else {
        return;
    };
    let db = Db::new(&s).await;
    let d = Deployment::new();
    let generated = generated_copy(&d, &db, 200).await;
    let config = d.config_dir.to_str().unwrap().to_owned();
    let verify = || {
        let out = postern(&["log", "verify", "--json", "--config", &config]);
        let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
        r
    };
    let r = verify();
    assert_eq!(r["intact"], true, "{r}");
    assert_eq!(r["indexes_checked"], true, "{r}");
    let c = db.pool().get().await.unwrap();

    // A decision's purpose, changed in the index only.
    let shared = generated.iter().find(|g| g.decision == "shared").unwrap();
    let purpose: String = c
        .query_one(
            "SELECT purpose FROM log_facets WHERE seq = $1",
            &[&shared.seq],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE log_facets SET purpose = 'crime-prevention-s115x' WHERE seq = $1",
        &[&shared.seq],
    )
    .await
    .unwrap();
    let r = verify();
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["break"]["seq"].as_i64(), Some(shared.seq), "{r}");
    assert!(r["break"].to_string().contains("search index"), "{r}");
    c.execute(
        "UPDATE log_facets SET purpose = $2 WHERE seq = $1",
        &[&shared.seq, &purpose],
    )
    .await
    .unwrap();
    assert_eq!(verify()["intact"], true);

    // An index row added for a record that does not exist.
    c.execute(
        "INSERT INTO log_subjects (subject_hash, seq) VALUES ('added', 99999)",
        &[],
    )
    .await
    .unwrap();
    let r = verify();
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["break"]["seq"].as_i64(), Some(99999), "{r}");
    assert!(r["break"].to_string().contains("was added"), "{r}");
    c.execute("DELETE FROM log_subjects WHERE seq = 99999", &[])
        .await
        .unwrap();

    // A dead delivery made to look delivered.
    let (dead, recipient) = generated
        .iter()
        .find_map(|g| {
            let i = g.delivery_states.iter().position(|s| *s == "dead")?;
            Some((g, g.recipients[i].clone()))
        })
        .unwrap();
    c.execute(
        "UPDATE deliveries SET state = 'delivered' WHERE transfer_id = $1 AND recipient = $2",
        &[&dead.transfer_id, &recipient],
    )
    .await
    .unwrap();
    let r = verify();
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["break"]["seq"].as_i64(), Some(dead.seq), "{r}");
    assert!(r["break"].to_string().contains("delivery"), "{r}");
    drop(c);
    db.drop_it().await;
}

/// Two nodes' stores on one database: the same write jobs as over SQLite, each node's group
/// commit one PostgreSQL transaction. Jobs from both at once make one chain with no gap (a job
/// that fails leaves nothing of its own), every record says which node wrote it, the chain
/// verifies as one, and each node reads what the other wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_stores_commit_their_jobs_into_one_chain() {
    use postern_gateway::store::{LogFilter, StoreError};
    let Some(s) = server("two nodes' stores") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (a, b, _dirs) = two_stores(&db).await;
    let mut tasks = Vec::new();
    for (node, store) in [("node-a", a.clone()), ("node-b", b.clone())] {
        for i in 0..120usize {
            let store = store.clone();
            // Some jobs append a real decision record too, run alongside the other node's
            // (even i): its search index rows are numbered from the head the batch locks.
            let decision = (i % 10 == 2).then(|| {
                let key = postern_gateway::domain::subject::SubjectKey::new(vec![7; 32]).unwrap();
                postern_gateway::testkit::synthetic::decision_entries(
                    i as u64 + if node == "node-a" { 0 } else { 1000 },
                    20,
                    3,
                    time::OffsetDateTime::now_utc(),
                    &key,
                )
                .unwrap()
                .into_iter()
                .find(|e| e.kind != postern_gateway::log::RecordKind::TransferAccepted)
                .unwrap()
            });
            let decided = u8::from(decision.is_some());
            tasks.push(tokio::spawn(async move {
                // Each job records a transfer named by its first record; a failing one too,
                // before it fails (its rows and its link to a record are undone with it).
                let job = move |tx: &mut postern_gateway::store::Tx<'_>| {
                    let first = entry(node, i, "kept");
                    let id = first.transfer_id.unwrap();
                    let seq = tx.append(&first)?;
                    tx.insert_transfer(&common::stored_transfer(id, &first.at, &[]), seq)?;
                    if i % 3 == 0 {
                        tx.append(&entry(node, 1000 + i, "kept"))?;
                    }
                    if let Some(d) = &decision {
                        tx.append(d)?;
                    }
                    if i % 9 == 4 {
                        tx.append(&entry(node, 2000 + i, "rolled-back"))?;
                        return Err(StoreError::Damaged("failing on purpose".into()));
                    }
                    // A bug: the job panics after writing. It fails alone, as a failed job.
                    if i % 9 == 7 {
                        tx.append(&entry(node, 3000 + i, "rolled-back"))?;
                        panic!("a bug in a write job, on purpose");
                    }
                    Ok(seq)
                };
                // Half run alongside the other node's jobs, half alone (the head locked first):
                // a node's batch mixes both.
                if i % 2 == 0 {
                    store.write_late(false, job).await
                } else {
                    store.write(false, job).await
                }
                .map(|_| (if i % 3 == 0 { 2 } else { 1 }) + i64::from(decided))
            }));
        }
    }
    let (mut kept, mut failed, mut panicked) = (0i64, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => kept += n,
            Err(StoreError::Damaged(_)) => failed += 1,
            Err(StoreError::Task(_)) => panicked += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(failed, 2 * (0..120).filter(|i| i % 9 == 4).count());
    assert_eq!(
        panicked,
        2 * (0..120).filter(|i| i % 9 == 7).count(),
        "a job that panics is answered with an error, and the writers go on"
    );
    let c = pool.get().await.unwrap();
    let r = c
        .query_one(
            "SELECT COUNT(*), MIN(seq), MAX(seq), COUNT(DISTINCT node) FROM log",
            &[],
        )
        .await
        .unwrap();
    let (count, min, max, nodes): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        (count, min, max, nodes),
        (kept, 1, kept, 2),
        "one chain, no gap"
    );
    let rolled: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM log WHERE position('rolled-back' in convert_from(body, 'UTF8')) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rolled, 0, "a failed job leaves nothing");
    // Every transfer kept names its own first record; none of a failed job's is left.
    let (transfers, named): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM transfers),
                        (SELECT COUNT(*) FROM transfers t JOIN log l ON l.seq = t.log_seq AND l.transfer_id = t.id)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (transfers, named),
        (
            240 - (failed + panicked) as i64,
            240 - (failed + panicked) as i64
        ),
        "each transfer kept names its record"
    );
    let head: i64 = c
        .query_one("SELECT seq FROM log_head WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, kept);
    // The head's hash is the last record's.
    let same: bool = c
        .query_one(
            "SELECT h.hash = l.hash FROM log_head h JOIN log l ON l.seq = h.seq WHERE h.id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same, "the head's hash is the last record's");
    // Each decision record's search index rows name it.
    let (facets, misplaced): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM log_facets),
                        (SELECT COUNT(*) FROM log_facets f JOIN log l ON l.seq = f.seq WHERE l.at <> f.at OR l.transfer_id IS DISTINCT FROM f.transfer_id)
                          + (SELECT COUNT(*) FROM log_recipients r LEFT JOIN log_facets f ON f.seq = r.seq WHERE f.seq IS NULL)
                          + (SELECT COUNT(*) FROM log_subjects s LEFT JOIN log_facets f ON f.seq = s.seq WHERE f.seq IS NULL)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(facets >= 10, "{facets} decision records kept");
    assert_eq!(misplaced, 0, "search index rows at their records");
    let (report, _) = pg::verify::verify_log(&pool, &[], &[]).await.unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.records as i64, kept);
    // Node A reads node B's records.
    let from_b = a
        .read(|db| {
            postern_gateway::store::log_records(
                db,
                &LogFilter {
                    kind: Some("transfer_failed".into()),
                    ..LogFilter::default()
                },
            )
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.body.to_string().contains("node=node-b"))
        .count();
    assert!(from_b > 100, "{from_b}");
    drop(c);
    db.drop_it().await;
}

/// A batch chained by the database after a head whose hash is damaged appends nothing and
/// says why, as a batch that reads the head first does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_head_is_not_chained_from_by_either_kind_of_batch() {
    let Some(s) = server("a damaged head") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (a, _b, _dirs) = two_stores(&db).await;
    a.write_late(false, |tx| {
        tx.append(&entry("node-a", 1, "kept")).map(|_| ())
    })
    .await
    .unwrap();
    let c = pool.get().await.unwrap();
    c.batch_execute("UPDATE log_head SET hash = '\\x0102' WHERE id = 1")
        .await
        .unwrap();
    let late = a
        .write_late(false, |tx| {
            tx.append(&entry("node-a", 2, "refused")).map(|_| ())
        })
        .await
        .unwrap_err();
    assert!(
        late.to_string().contains("cannot be chained from"),
        "{late}"
    );
    let at_head = a
        .write(false, |tx| {
            tx.append(&entry("node-a", 3, "refused")).map(|_| ())
        })
        .await
        .unwrap_err();
    assert!(
        at_head.to_string().contains("cannot be chained from"),
        "{at_head}"
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM log").await, 1);
    drop(c);
    db.drop_it().await;
}

/// A TCP relay in front of the database that a test can take down (connections refused, those
/// open cut) and bring back on the same port: the database restarting, as a node sees it.
struct Relay {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut r = Relay {
            port,
            upstream: upstream.to_owned(),
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                open.spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
            // Dropped with the task: every relayed connection is cut.
            drop(open);
        }));
    }

    /// Down: the port refuses connections, and the ones open are cut.
    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Back on the same port.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

/// The database goes away under a node and comes back: while it is away a write is refused as
/// "unavailable" (answered 503, never 500) and a read too, nothing half-written is left, and
/// once it is back the node writes again without being restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_unavailable_while_the_database_is_away_and_writes_again_when_it_is_back() {
    use postern_gateway::store::{Store, StoreError};
    let Some(s) = server("the database away and back") else {
        return;
    };
    let db = Db::new(&s).await;
    migrate(&db.pool()).await.unwrap();
    let upstream = s
        .url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut relay = Relay::start(&upstream).await;
    let via_relay = db
        .url
        .replace(&upstream, &format!("localhost:{}", relay.port));
    let pool = Pool::new(&target(&via_relay, &db.server_ca, Some(&db.password_file))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_shared(dir.path(), pool, "node-a")
        .await
        .unwrap();
    let write = |i: usize| {
        let store = store.clone();
        async move {
            store
                .write_late(false, move |tx| tx.append(&entry("node-a", i, "kept")))
                .await
        }
    };
    write(1).await.unwrap();

    relay.down().await;
    for i in 2..4 {
        match write(i).await {
            Err(StoreError::Pg(p)) if p.is_unavailable() => {
                let problem = postern_gateway::ingest::problem::store_failure(
                    &StoreError::Pg(p),
                    "shutting down",
                );
                assert_eq!(problem.status, 503, "{problem:?}");
            }
            other => panic!("while the database is away: {other:?}"),
        }
    }
    let read = store
        .read(|db| postern_gateway::store::log_records(db, &Default::default()))
        .await;
    assert!(
        matches!(&read, Err(StoreError::Pg(p)) if p.is_unavailable()),
        "{read:?}"
    );
    // The connection that held node-a's name was cut with the others, so the name is free
    // while the database is away from the node: a process reaching the database could take it.
    let other_dir = tempfile::tempdir().unwrap();
    let taken = open_once_free(other_dir.path(), &db.pool(), "node-a").await;
    assert!(
        taken.is_some(),
        "the name is free while its connection is gone"
    );
    drop(taken);
    // Until the database has let that store's name go, a lock seen below could be its.
    assert!(
        names_held_come_to(&db.pool(), 0).await,
        "the second store's name is let go"
    );

    relay.up().await;
    let mut back = false;
    for _ in 0..50 {
        match write(10).await {
            Ok(_) => {
                back = true;
                break;
            }
            Err(StoreError::Pg(p)) if p.is_unavailable() => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(back, "the node writes again once the database is back");
    // And the node takes its name again by itself (looked at from the server's side, without
    // taking it), after which another node-a is refused once more.
    assert!(
        names_held_come_to(&db.pool(), 1).await,
        "the node holds its name again once the database is back"
    );
    match Store::open_shared(other_dir.path(), db.pool(), "node-a").await {
        Err(StoreError::NodeNameTaken { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second node-a was let in after the database came back"),
    }
    let (report, _) = pg::verify::verify_log(&db.pool(), &[], &[]).await.unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.records, 2);
    let c = db.pool().get().await.unwrap();
    assert_eq!(
        body_at(&c, 2).await,
        entry("node-a", 10, "kept").body,
        "the next record follows the last one committed"
    );
    drop(c);
    relay.down().await;
    drop(store);
    db.drop_it().await;
}

/// Opens a node's store as `node` once the name is free (within five seconds); `None` if it
/// stays taken.
async fn open_once_free(
    dir: &Path,
    pool: &Pool,
    node: &str,
) -> Option<postern_gateway::store::Store> {
    use postern_gateway::store::{Store, StoreError};
    for _ in 0..50 {
        match Store::open_shared(dir, pool.clone(), node).await {
            Ok(s) => return Some(s),
            Err(StoreError::NodeNameTaken { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    None
}

/// Whether the node names held in the test's database (its advisory locks, seen from the
/// server without taking any) come to `n` within ten seconds.
async fn names_held_come_to(pool: &Pool, n: i64) -> bool {
    for _ in 0..100 {
        let held = count(
            pool,
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await;
        if held == n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Copies a directory tree: a second node's state directory gets the first's keys and
/// certificates (every node of a deployment holds the same ones).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Two `postern serve` nodes of one deployment on the test's database: the second with a state
/// directory of its own holding the same keys.
fn two_nodes(d: &Deployment) -> (Node, Node) {
    let state_b = d.dir.path().join("state-b");
    copy_tree(&d.state_dir, &state_b);
    let (ops_a, ops_b) = (free_port(), free_port());
    let a = d.spawn_with_env(&[
        ("POSTERN_STORE__NODE", "node-a"),
        ("POSTERN_OPS__LISTEN", &ops_a.to_string()),
    ]);
    let b = d.spawn_with_env(&[
        ("POSTERN_STORE__NODE", "node-b"),
        ("POSTERN_STATE_DIR", state_b.to_str().unwrap()),
        ("POSTERN_OPS__LISTEN", &ops_b.to_string()),
    ]);
    (
        Node {
            server: a,
            ops: ops_a,
        },
        Node {
            server: b,
            ops: ops_b,
        },
    )
}

/// While node-a serves, a second process started as node-a exits at once with EX_UNAVAILABLE
/// (69: its supervisor may try again, as the name may come free), saying who holds the name.
fn a_third_node_named_like_the_first_is_refused(d: &Deployment) {
    let state_c = d.dir.path().join("state-c");
    copy_tree(&d.state_dir, &state_c);
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["serve", "--config", d.config_dir.to_str().unwrap()])
        .env_remove("RUST_BACKTRACE")
        .env("POSTERN_STORE__NODE", "node-a")
        .env("POSTERN_STATE_DIR", &state_c)
        .env("POSTERN_OPS__LISTEN", free_port().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a second node-a kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(69), "{err}");
    assert!(
        err.contains("another postern is running as node node-a") && err.contains("store.node"),
        "{err}"
    );
}

/// A serving node and its health listener's address.
struct Node {
    server: common::BinaryServer,
    ops: std::net::SocketAddr,
}

impl std::ops::Deref for Node {
    type Target = common::BinaryServer;
    fn deref(&self) -> &common::BinaryServer {
        &self.server
    }
}

/// An address on loopback that nothing listens on (for a moment).
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn count(pool: &Pool, sql: &str) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// The police's inbox item for `transfer`, downloaded through the node at `addr` and opened.
async fn download_through(d: &Deployment, addr: std::net::SocketAddr, transfer: &str) -> Vec<u8> {
    let mut police = d.connect(addr, "northshire-police").await;
    let list = common::json(&police.get("/v1/inbox?limit=1000").await.expect("list"));
    let item = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["transfer_id"] == json!(transfer))
        .unwrap_or_else(|| panic!("{transfer} listed"))
        .clone();
    let mut sealed = Vec::new();
    let dl = police
        .download(
            &format!("/v1/inbox/{}/payload", item["id"].as_str().expect("id")),
            &mut sealed,
        )
        .await
        .expect("download");
    assert_eq!(dl.status, 200);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut postern_gateway::seal::open(&sealed[..], d.org_key("northshire-police").identity())
            .expect("opens"),
        &mut plain,
    )
    .expect("read");
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_nodes_lose_nothing_when_one_is_killed_mid_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let Some(s) = server("two_serving_nodes_lose_nothing_when_one_is_killed_mid_load") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let d = Deployment::new();
    use_postgres(&d, &db);
    let (mut a, b) = two_nodes(&d);
    a_third_node_named_like_the_first_is_refused(&d);

    // A payload too large to keep inline: accepted by one node, it is kept in the database
    // (no node's folder), delivered, and downloaded through the other node whole.
    // Sent twice at once, through both nodes, with one Idempotency-Key: one transfer, and the
    // copy that lost the race leaves nothing staged.
    let big = common::payload(300_000, 9);
    let (mut via_a, mut via_b) = (
        d.connect(a.addr, "northshire-cc").await,
        d.connect(b.addr, "northshire-cc").await,
    );
    let env = envelope(json!({}));
    let (first, second) = tokio::join!(
        submit(&mut via_a, &env, big.clone(), Some("big-1")),
        submit(&mut via_b, &env, big.clone(), Some("big-1")),
    );
    for answer in [&first, &second] {
        assert_eq!(
            answer.status,
            202,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let big_id = common::json(&first)["transfer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(common::json(&second)["transfer_id"], json!(big_id));
    common::eventually(30, "the large transfer delivered", || {
        let pool = pool.clone();
        let big_id = big_id.clone();
        async move {
            let n: i64 = pool
                .get()
                .await
                .unwrap()
                .query_one(
                    "SELECT COUNT(*) FROM inbox WHERE transfer_id = $1",
                    &[&big_id],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        }
    })
    .await;
    assert_eq!(download_through(&d, b.addr, &big_id).await, big);
    assert!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payload_chunks WHERE name LIKE 'inbox/%'"
        )
        .await
            >= 1,
        "the received copy is kept in the database"
    );

    // Load through both nodes; node A is killed with SIGKILL in the middle.
    let accepted = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for (i, node) in [&a, &a, &b, &b].into_iter().enumerate() {
        let conn = d.connect(node.addr, "northshire-cc").await;
        submitters.push(tokio::spawn(common::keep_submitting(
            conn,
            (i as u64 + 1) * 1_000_000,
            accepted.clone(),
            600,
            unavailable.clone(),
        )));
    }
    while accepted.load(Ordering::Relaxed) < 250 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    a.server.kill9();
    let pending = count(
        &pool,
        "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'",
    )
    .await;
    let leased_by_a = count(
        &pool,
        "SELECT COUNT(*) FROM deliveries WHERE state = 'delivering' AND lease_node = 'node-a'",
    )
    .await;
    let mut sent: Vec<(String, u64)> = Vec::new();
    for s in submitters {
        sent.extend(s.await.expect("submitter"));
    }
    assert!(
        pending > 0,
        "the kill landed with deliveries still to do ({} accepted)",
        sent.len()
    );

    // Node B delivers what was queued, and (once their leases lapse) what A was attempting.
    all_delivered_once(&pool, &sent, 120).await;
    let nodes = count(
        &pool,
        "SELECT COUNT(DISTINCT node) FROM log WHERE node IN ('node-a', 'node-b')",
    )
    .await;
    assert_eq!(nodes, 2, "records written by both nodes");
    // Each batch appends its records at its end: every transfer names its own acceptance.
    let transfers = count(&pool, "SELECT COUNT(*) FROM transfers").await;
    let named = count(
        &pool,
        "SELECT COUNT(*) FROM transfers t JOIN log l ON l.seq = t.log_seq
         WHERE l.transfer_id = t.id AND l.kind = 'transfer_accepted'",
    )
    .await;
    assert!(transfers > 0);
    assert_eq!(
        named, transfers,
        "every transfer names its acceptance record"
    );
    let taken_over = count(
        &pool,
        "SELECT COUNT(*) FROM deliveries WHERE lease_node = 'node-b' AND attempts > 1",
    )
    .await;
    assert!(
        taken_over >= leased_by_a,
        "every attempt node A held at its death was taken over by node B ({taken_over} of {leased_by_a})"
    );
    eprintln!(
        "two nodes: {} answered 202 ({} answered 503), {pending} undelivered and {leased_by_a} leased by node A at the kill, {taken_over} retried by node B",
        sent.len(),
        unavailable.load(Ordering::Relaxed)
    );
    // What arrived is what was sent.
    for (id, seed) in sent.iter().rev().take(3) {
        assert_eq!(
            download_through(&d, b.addr, id).await,
            common::numbered(*seed)
        );
    }
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payload_chunks WHERE name LIKE 'staged/%'"
        )
        .await,
        0,
        "every staged payload was given its name by its commit"
    );
    // Nothing a node keeps locally is needed: its folders hold no payloads.
    for dir in [
        d.state_dir.join("spool"),
        d.dir.path().join("state-b").join("spool"),
        d.dir.path().join("state-b").join("inbox"),
    ] {
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{} holds {left:?}", dir.display());
    }

    // The chain over both nodes' records verifies.
    drop(b);
    let verify = postern(&["log", "verify", "--config", d.config_dir.to_str().unwrap()]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    db.drop_it().await;
}

/// Waits until every delivery is delivered, then checks that every transfer answered 202 (and
/// every other stored one) reached the police's inbox exactly once.
async fn all_delivered_once(pool: &Pool, sent: &[(String, u64)], within_secs: u64) {
    let start = std::time::Instant::now();
    loop {
        let left = count(
            pool,
            "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'",
        )
        .await;
        if left == 0 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < within_secs,
            "deliveries still outstanding after {within_secs} s: {left}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rows = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT transfer_id, COUNT(*) FROM inbox WHERE recipient = 'northshire-police' GROUP BY transfer_id",
            &[],
        )
        .await
        .unwrap();
    let inbox: std::collections::HashMap<String, i64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (id, _) in sent {
        assert_eq!(inbox.get(id), Some(&1), "transfer {id} in the inbox once");
    }
    assert!(inbox.values().all(|n| *n == 1), "no inbox duplicates");
    assert_eq!(
        inbox.len() as i64,
        count(pool, "SELECT COUNT(*) FROM transfers").await,
        "every stored transfer delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_nodes_answer_503_while_the_database_is_away_and_lose_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let Some(s) = server("serving_nodes_answer_503_while_the_database_is_away_and_lose_nothing")
    else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    // The nodes reach the database through a relay that the test cuts (every connection
    // dropped, new ones refused, as when the database restarts) and restores.
    let upstream = s
        .url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut relay = Relay::start(&upstream).await;
    let d = Deployment::new();
    let p = d.config_dir.join("postern.toml");
    let toml = std::fs::read_to_string(&p).unwrap()
        + &format!(
            "\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\nca = \"{}\"\npassword_file = \"{}\"\n",
            db.url
                .replace(&upstream, &format!("localhost:{}", relay.port)),
            db.server_ca.display(),
            db.password_file.display()
        );
    std::fs::write(&p, toml).unwrap();
    let (a, b) = two_nodes(&d);

    let accepted = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for (i, node) in [&a, &a, &b, &b].into_iter().enumerate() {
        let conn = d.connect(node.addr, "northshire-cc").await;
        submitters.push(tokio::spawn(common::keep_submitting(
            conn,
            (i as u64 + 1) * 1_000_000,
            accepted.clone(),
            400,
            unavailable.clone(),
        )));
    }
    while accepted.load(Ordering::Relaxed) < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    relay.down().await;
    let (status, body) = common::http_get(a.ops, "/readyz").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let during = accepted.load(Ordering::Relaxed);
    relay.up().await;
    // A submitter panics on anything but 202 or 503: a 500 fails the test here.
    let mut sent: Vec<(String, u64)> = Vec::new();
    for s in submitters {
        sent.extend(s.await.expect("submitter"));
    }
    assert_eq!(status, 503, "/readyz while the database is away: {body}");
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "transfers were refused with 503 while the database was away"
    );
    all_delivered_once(&pool, &sent, 120).await;
    eprintln!(
        "database away: {} answered 202, {} answered 503 ({during} accepted when it came back)",
        sent.len(),
        unavailable.load(Ordering::Relaxed)
    );
    let (status, _) = common::http_get(b.ops, "/readyz").await;
    assert_eq!(status, 200, "ready again once the database is back");
    drop((a, b));
    let verify = postern(&["log", "verify", "--config", d.config_dir.to_str().unwrap()]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    relay.down().await;
    db.drop_it().await;
}

/// The people's pages on a node of the shared store: a DPO signs in (the code, the attempt
/// and the session all kept in the database), finds a share, and "verify now" checks the
/// shared chain: intact, then broken at the record altered in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_pages_sign_in_search_and_verify_the_shared_log() {
    use common::web::{Browser, deployment, sign_in};
    let Some(s) = server("the_dpo_pages_sign_in_search_and_verify_the_shared_log") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (d, sink) = deployment("").await;
    use_postgres(&d, &db);
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let answer = submit(&mut council, &envelope(json!({})), vec![7u8; 2000], None).await;
    assert_eq!(answer.status, 202);
    let id = common::json(&answer)["transfer_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut priya = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut priya, &sink, "priya@northshire-mash.example").await;
    assert!(
        count(&pool, "SELECT COUNT(*) FROM web_sessions").await >= 1,
        "the session is kept in the shared database"
    );
    let a = priya.get("/log").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(&id), "the share is listed: {}", a.body);
    let a = priya.post("/log/verify", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("The log is intact"), "{}", a.body);

    // One byte of the share's record changed in the database.
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT seq, body FROM log WHERE kind = 'transfer_accepted' ORDER BY seq LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (seq, mut body): (i64, Vec<u8>) = (row.get(0), row.get(1));
    let at = body
        .windows(7)
        .position(|w| w == b"routine")
        .expect("a field to alter");
    body[at] = b'R';
    client
        .execute("UPDATE log SET body = $1 WHERE seq = $2", &[&body, &seq])
        .await
        .unwrap();
    let a = priya.post("/log/verify", "").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("The log is broken"), "{}", a.body);
    assert!(
        a.body
            .contains(&format!("A record was altered at record {seq}.</p>")),
        "{}",
        a.body
    );
    drop(client);
    server.stop().await;
    db.drop_it().await;
}

/// A job that fails on the server before it has written anything (its statement cannot even be
/// prepared), among jobs that append, in the same batches. The writer sends each job's
/// savepoint with its first statement, so such a failure leaves no savepoint to return to: the
/// batch is refused whole rather than reported durable. Every job answered as written is in the
/// chain, the chain has no gap, and the failed jobs wrote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_before_it_writes_leaves_the_others_and_the_chain_whole() {
    use postern_gateway::store::Store;
    let Some(s) = server("a job that fails before it writes") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_shared(dir.path(), pool.clone(), "node-a")
        .await
        .unwrap();
    // Three waves, one after the other: good jobs, then good jobs with a failing one among
    // every five, then good jobs again.
    let bad = |i: usize| (20..40).contains(&i) && i % 5 == 2;
    let mut kept = Vec::new();
    for wave in [0..20, 20..40, 40..60] {
        let tasks: Vec<_> = wave
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let written = store
                        .write_late(false, move |tx| {
                            if bad(i) {
                                // Fails at the server's parse: no such column.
                                tx.db().execute("UPDATE log SET no_such_column = 1", &[])?;
                            }
                            tx.append(&entry("node-a", i, "kept"))
                        })
                        .await;
                    (i, written)
                })
            })
            .collect();
        for t in tasks {
            let (i, written) = t.await.unwrap();
            match written {
                Ok(_) => {
                    assert!(!bad(i), "job {i} cannot have been written");
                    kept.push(entry("node-a", i, "kept").body);
                }
                Err(e) => assert!(
                    (20..40).contains(&i),
                    "job {i}, in a wave without a failing job: {e}"
                ),
            }
        }
    }
    let (report, _) = pg::verify::verify_log(&pool, &[], &[]).await.unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.records, kept.len() as u64);
    // Each job kept is in the chain once, and nothing else is.
    let c = pool.get().await.unwrap();
    let mut bodies: Vec<Vec<u8>> = c
        .query("SELECT body FROM log ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    bodies.sort();
    kept.sort();
    assert_eq!(bodies, kept, "the records are the jobs kept");
    drop(c);
    drop(store);
    db.drop_it().await;
}

/// A node of the shared store opened on a former single node's state directory (its SQLite
/// store beside the spool) leaves that store's payload files alone: they are what `postern
/// store copy` reads, and sweeping them would lose the single node's undelivered payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_former_single_nodes_state_directory_sweeps_none_of_its_files() {
    use postern_gateway::store::Store;
    let Some(s) = server("a node on a former single node's state directory") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let single = tempfile::tempdir().unwrap();
    drop(Store::open(single.path()).unwrap());
    let kept = single.path().join("spool").join("undelivered.age");
    std::fs::write(&kept, b"sealed").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fresh.path().join("spool")).unwrap();
    let leftover = fresh.path().join("spool").join("cut-off.age");
    std::fs::write(&leftover, b"sealed").unwrap();

    let node = Store::open_shared(single.path(), pool.clone(), "node-a")
        .await
        .unwrap();
    assert!(kept.exists(), "a single node's payload is left alone");
    drop(node);
    let node = Store::open_shared(fresh.path(), pool.clone(), "node-b")
        .await
        .unwrap();
    assert!(
        !leftover.exists(),
        "an upload cut off in a node's own folder is swept"
    );
    drop(node);
    db.drop_it().await;
}

/// The retention purge and the thinning of checkpoints on a shared store. Two nodes purge at
/// once: the records due go once, with their index rows and the finished transfer they
/// describe, the purge is recorded once, and the chain written by both nodes still verifies from
/// the anchor. Records due that do not verify are not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_purge_the_shared_log_once_and_it_still_verifies() {
    use postern_gateway::domain::ids::TransferId;
    use postern_gateway::store::Store;
    use postern_gateway::store::checkpoint::{self, CheckpointKey, Purge, ensure_key_file};
    use std::sync::Arc;
    let Some(s) = server("the retention purge on a shared store") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("checkpoint.key");
    ensure_key_file(&key_file).unwrap();
    let key = Arc::new(CheckpointKey::from_file(&key_file).unwrap());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open_shared(dir_a.path(), db.pool(), "node-a")
        .await
        .unwrap();
    let b = Store::open_shared(dir_b.path(), db.pool(), "node-b")
        .await
        .unwrap();
    let old = |i: usize| format!("2015-01-01T00:00:{i:02}.000000Z");
    let append = |store: &Store, node: &'static str, i: usize, at: String| {
        let store = store.clone();
        async move {
            store
                .write(false, move |tx| tx.append(&entry_at(node, i, "kept", &at)))
                .await
                .unwrap()
        }
    };
    // Record 1 accepts a transfer (finished by the time of the purge); 2..=10 are old too,
    // written by both nodes, with checkpoints at 6 and 10 signed on one old day.
    let done = TransferId::from_uuid(uuid::Uuid::now_v7());
    let transfer = common::stored_transfer(done, &old(0), &["northshire-police"]);
    let first = old(1);
    a.write(false, move |tx| {
        let seq = tx.append(&entry_at("node-a", 1, "kept", &first))?;
        tx.insert_transfer(&transfer, seq)
    })
    .await
    .unwrap();
    let signed_at = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let lease = std::time::Duration::from_secs(60);
    for i in 2..=6 {
        append(&b, "node-b", i, old(i)).await;
    }
    let cp = pg::checkpoint::sign_head(
        &pool,
        &key,
        "node-a",
        signed_at("2015-01-02T10:00:00Z"),
        lease,
    )
    .await
    .unwrap();
    assert_eq!(cp.map(|c| c.seq), Some(6));
    for i in 7..=10 {
        append(&a, "node-a", i, old(i)).await;
    }
    let cp = pg::checkpoint::sign_head(
        &pool,
        &key,
        "node-a",
        signed_at("2015-01-02T11:00:00Z"),
        lease,
    )
    .await
    .unwrap();
    assert_eq!(cp.map(|c| c.seq), Some(10));
    let recent = postern_gateway::clock::stamp(postern_gateway::clock::now());
    for i in 11..=14 {
        append(
            if i % 2 == 0 { &a } else { &b },
            if i % 2 == 0 { "node-a" } else { "node-b" },
            i,
            recent.clone(),
        )
        .await;
    }
    let c = pool.get().await.unwrap();
    c.batch_execute(&format!(
        "UPDATE transfers SET payload_purged_at = '{}', payload_inline = NULL;
         UPDATE deliveries SET state = 'delivered';",
        old(20)
    ))
    .await
    .unwrap();
    let count = async |sql: &str| -> i64 { c.query_one(sql, &[]).await.unwrap().get(0) };

    // Thinning: of the old day's checkpoints, the last is kept.
    let now = postern_gateway::clock::now();
    assert_eq!(checkpoint::thin(&b, now).await.unwrap(), 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM checkpoints WHERE seq = 10").await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM checkpoints").await, 1);

    // A record due that was altered: nothing is deleted.
    let body: Vec<u8> = c
        .query_one("SELECT body FROM log WHERE seq = 3", &[])
        .await
        .unwrap()
        .get(0);
    let mut altered = body.clone();
    altered[3] ^= 1;
    c.execute("UPDATE log SET body = $1 WHERE seq = 3", &[&altered])
        .await
        .unwrap();
    match checkpoint::purge(&a, key.clone(), 365, now).await.unwrap() {
        Purge::Refused(b) => assert_eq!(b.seq, 3, "{b:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM log").await,
        14,
        "nothing was deleted"
    );
    c.execute("UPDATE log SET body = $1 WHERE seq = 3", &[&body])
        .await
        .unwrap();

    // Both nodes purge at once: one does it, the other finds it done.
    let (pa, pb) = tokio::join!(
        checkpoint::purge(&a, key.clone(), 365, now),
        checkpoint::purge(&b, key.clone(), 365, now)
    );
    let mut done_by = Vec::new();
    for p in [pa.unwrap(), pb.unwrap()] {
        match p {
            Purge::Nothing => {}
            Purge::Done {
                seq,
                record,
                anchor,
            } => {
                assert_eq!(seq, 15, "the purge is recorded at the chain's head");
                assert_eq!(
                    (record.from_seq, record.to_seq, record.records),
                    (1, 10, 10)
                );
                assert_eq!((record.transfers, record.deliveries), (1, 1));
                assert!(anchor.is_none(), "the checkpoint at 10 is the anchor");
                done_by.push(seq);
            }
            Purge::Refused(b) => panic!("refused: {b:?}"),
        }
    }
    assert_eq!(done_by.len(), 1, "the records were purged once");
    assert_eq!(count("SELECT MIN(seq) FROM log").await, 11);
    assert_eq!(
        count("SELECT COUNT(*) FROM log_facets WHERE seq <= 10").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM log_recipients WHERE seq <= 10").await,
        0
    );
    assert_eq!(count("SELECT COUNT(*) FROM transfers").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM deliveries").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM log WHERE kind = 'log_purged'").await,
        1
    );
    let (report, _) = pg::verify::verify_log(&pool, &[*key.public()], &[])
        .await
        .unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(
        (report.first_seq, report.anchor_seq, report.records),
        (Some(11), Some(10), 5)
    );
    // The anchor still vouches for what it signed; a record purged is gone by design.
    let anchor: [u8; 32] = c
        .query_one("SELECT hash FROM checkpoints WHERE seq = 10", &[])
        .await
        .unwrap()
        .get::<_, Vec<u8>>(0)
        .try_into()
        .unwrap();
    use pg::checkpoint::{Since, since};
    assert_eq!(since(&pool, 10, &anchor).await.unwrap(), Since::Holds);
    assert_eq!(since(&pool, 10, &[7; 32]).await.unwrap(), Since::Rewritten);
    assert_eq!(since(&pool, 6, &[7; 32]).await.unwrap(), Since::Purged);
    // Nothing more is due.
    assert_eq!(
        checkpoint::purge(&a, key.clone(), 365, now).await.unwrap(),
        Purge::Nothing
    );
    // After the purge, the first records can still not be removed unnoticed.
    c.execute("DELETE FROM log WHERE seq = 11", &[])
        .await
        .unwrap();
    let (report, _) = pg::verify::verify_log(&pool, &[*key.public()], &[])
        .await
        .unwrap();
    assert_eq!(report.first_break.map(|b| b.seq), Some(11));
    drop(c);
    db.drop_it().await;
}

/// A failover to a replica that had not received the last commits, while the other nodes stay
/// up: the shared log loses its last records, the nodes go on appending over their seqs, and
/// the signer signs the rewritten chain. A node that starts then finds the checkpoint it signed
/// (in its checkpoint file) no longer matches, though the newest checkpoint does: it refuses
/// (exit 65) saying the log was rewritten. Records other nodes appended while it was stopped do
/// not stop it. `log accept-head` records the acceptance in the shared chain, chained from the
/// last record there is even where the head row says otherwise; then the node starts and the
/// log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_commits_stops_a_node_until_the_head_is_accepted() {
    use postern_gateway::store::Store;
    let Some(s) = server("a failover that lost commits") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let d = Deployment::new();
    use_postgres(&d, &db);
    // Delivered before the refusals: the records lost below are the refusals and after.
    common::shared_and_stopped(&d, 2).await;
    let signed = count(&pool, "SELECT MAX(seq) FROM checkpoints").await;
    assert_eq!(
        signed,
        count(&pool, "SELECT MAX(seq) FROM log").await,
        "the node signed the head as it stopped"
    );

    // Another node appends while this one is stopped: it starts all the same.
    let other = tempfile::tempdir().unwrap();
    let node = Store::open_shared(other.path(), pool.clone(), "node-x")
        .await
        .unwrap();
    for i in 0..2 {
        node.write(false, move |tx| tx.append(&entry("node-x", i, "kept")))
            .await
            .unwrap();
    }
    drop(node);
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, None, "{stderr}");

    // The failover: the database forgets its last records (the two refusals and what came
    // after) and their checkpoints, as the replica had them; the node's checkpoint file
    // remembers the checkpoint at `signed`.
    let cut = signed - 1;
    let c = pool.get().await.unwrap();
    let signed_hash: [u8; 32] = c
        .query_one("SELECT hash FROM log WHERE seq = $1", &[&signed])
        .await
        .unwrap()
        .get::<_, Vec<u8>>(0)
        .try_into()
        .unwrap();
    use pg::checkpoint::{Since, since};
    assert_eq!(
        since(&pool, signed, &signed_hash).await.unwrap(),
        Since::Holds
    );
    for t in [
        "log_facets",
        "log_recipients",
        "log_subjects",
        "log",
        "checkpoints",
    ] {
        c.execute(&format!("DELETE FROM {t} WHERE seq >= $1"), &[&cut])
            .await
            .unwrap();
    }
    c.execute(
        "UPDATE log_head SET seq = l.seq, hash = l.hash FROM log l WHERE l.seq = $1 AND log_head.id = 1",
        &[&(cut - 1)],
    )
    .await
    .unwrap();
    // What the signer says before its next checkpoint.
    assert_eq!(
        since(&pool, signed, &signed_hash).await.unwrap(),
        Since::Lost
    );
    // The nodes that stayed up append over the lost seqs, and the signer signs their head.
    let node = Store::open_shared(other.path(), pool.clone(), "node-x")
        .await
        .unwrap();
    // As many as were lost, so that the signer signs the rewritten chain at the very seq
    // this node signed: the database's checkpoint there matches, the file's does not.
    for i in 10..12 {
        node.write(false, move |tx| tx.append(&entry("node-x", i, "after")))
            .await
            .unwrap();
    }
    drop(node);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::copy(d.state_dir.join("keys").join("checkpoint.key"), &key_file).unwrap();
    let key = postern_gateway::store::checkpoint::CheckpointKey::from_file(&key_file).unwrap();
    let resigned = pg::checkpoint::sign_head(
        &pool,
        &key,
        "node-x",
        postern_gateway::clock::now(),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap()
    .expect("a new head to sign");
    assert_eq!(
        resigned.seq, signed,
        "the rewritten chain is signed at `signed`"
    );
    assert_eq!(
        since(&pool, signed, &signed_hash).await.unwrap(),
        Since::Rewritten
    );
    let (code, stderr) = common::try_serve(&d);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "record {signed} is not the record the gateway signed at that position"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("postern log accept-head"), "{stderr}");

    // The head row names a record that is not there (same seq as the acceptance will take,
    // another hash): the acceptance chains from the last record, and the head row follows.
    let last = count(&pool, "SELECT MAX(seq) FROM log").await;
    c.execute(
        "UPDATE log_head SET seq = $1, hash = decode(repeat('00', 32), 'hex') WHERE id = 1",
        &[&(last + 1)],
    )
    .await
    .unwrap();
    let (code, said) = common::accept_head(&d, "Failover to db2: the last commits were lost");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("accepted (diverged)"), "{said}");
    let accepted = c
        .query_one(
            "SELECT a.seq, a.prev_hash = l.hash, h.seq = a.seq AND h.hash = a.hash
             FROM log a, log l, log_head h WHERE a.kind = 'head_accepted' AND l.seq = $1 AND h.id = 1",
            &[&last],
        )
        .await
        .unwrap();
    let (seq, chained, head_row): (i64, bool, bool) =
        (accepted.get(0), accepted.get(1), accepted.get(2));
    assert_eq!(
        (seq, chained, head_row),
        (last + 1, true, true),
        "the acceptance follows the last record there is, and the head row follows it"
    );
    assert_eq!(
        common::try_serve(&d).0,
        None,
        "the node starts once accepted"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--json", "--config"])
        .arg(&d.config_dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (out.status.code(), &r["intact"]),
        (Some(0), &json!(true)),
        "{r} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["accepted"][0]["found"], "diverged", "{r}");
    assert!(
        common::accept_head(&d, "again")
            .1
            .contains("nothing to accept")
    );
    drop(c);
    db.drop_it().await;
}

/// A request for information asked through one node is the holder's to see through the other:
/// its row names its `request_made` record, and the detail page reads the request through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_asked_through_one_node_is_seen_through_the_other() {
    let Some(s) = server("a_request_asked_through_one_node_is_seen_through_the_other") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let d = Deployment::new();
    use_postgres(&d, &db);
    let (a, b) = two_nodes(&d);
    let mut police = d.connect(a.addr, "northshire-police").await;
    let mut council = d.connect(b.addr, "northshire-cc").await;
    let body = json!({
        "holder": "northshire-cc",
        "purpose": "child-protection-s47",
        "lawful_basis": "public_task",
        "requested": "Any contact with the family since January.",
        "grounds": "A strategy discussion is planned after a disclosure at school.",
        "subject_refs": ["nhs:943 476 5919"],
        "urgency": { "level": "routine" },
        "practitioner": { "name": "DC Lee", "role": "Detective constable", "contact": "lee@police.example" }
    })
    .to_string();
    let made = police
        .post_json("/v1/requests", bytes::Bytes::from(body), Some("ask-1"))
        .await
        .unwrap();
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let id = common::json(&made)["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = council.get(&format!("/v1/requests/{id}")).await.unwrap();
    assert_eq!(view.status, 200, "{}", String::from_utf8_lossy(&view.body));
    let view = common::json(&view);
    assert_eq!(view["status"], "open");
    assert_eq!(view["practitioner"]["name"], "DC Lee");
    let named = count(
        &pool,
        "SELECT COUNT(*) FROM requests r JOIN log l ON l.seq = r.log_seq
         WHERE l.kind = 'request_made' AND l.transfer_id = r.id",
    )
    .await;
    assert_eq!(named, 1, "the request names its record");
    drop((a, b));
    db.drop_it().await;
}

/// One Idempotency-Key claimed on two nodes at once, their batches running side by side: the
/// second claim waits for the first's commit and is answered with its answer. One key, one
/// answer, and no error for either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_claimed_on_two_nodes_at_once_is_the_first_commits() {
    use postern_gateway::store::IdempotencyClaim;
    let Some(s) = server("one_idempotency_key_claimed_on_two_nodes_at_once_is_the_first_commits")
    else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (a, b, _dirs) = two_stores(&db).await;
    let claim = IdempotencyClaim {
        sender: "northshire-cc".parse().unwrap(),
        key: "k-1".into(),
        request_sha256: "abc".into(),
        at: "2026-12-04T00:00:00.000000Z".into(),
    };
    let (ca, cb) = (claim.clone(), claim);
    let (claimed, wait) = std::sync::mpsc::channel();
    let (go, go_on) = std::sync::mpsc::channel::<()>();
    let first = tokio::spawn(async move {
        a.write_late(false, move |tx| {
            let got = tx.claim(&ca, 202, "from node a".into())?;
            // Holds its claim, not yet committed, until node B's claim waits on it.
            let _ = claimed.send(());
            let _ = go_on.recv_timeout(std::time::Duration::from_secs(20));
            Ok(got)
        })
        .await
    });
    tokio::task::spawn_blocking(move || wait.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::spawn(async move {
        b.write_late(false, move |tx| tx.claim(&cb, 202, "from node b".into()))
            .await
    });
    let waited = someone_waits_on_a_lock(&pool).await;
    let _ = go.send(());
    let second = second.await.unwrap().unwrap();
    assert!(waited, "node B's claim waited for node A's");
    assert_eq!(
        first.await.unwrap().unwrap(),
        None,
        "the first claim is the key's"
    );
    let previous = second.expect("the second claim is answered with the first's answer");
    assert_eq!(previous.response, "from node a");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM idempotency").await, 1);
    db.drop_it().await;
}

/// A batch of jobs that may run alongside other nodes' does not hold the chain's head while its
/// jobs run (another connection can lock the head row at once), and takes it only to append; a
/// batch of any other jobs holds it from its first statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_alongside_takes_the_head_only_to_append_and_another_holds_it_throughout() {
    use postern_gateway::store::Store;
    let Some(s) = server("a_batch_run_alongside_takes_the_head_only_to_append") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_shared(dir.path(), db.pool(), "node-a")
        .await
        .unwrap();
    // The head row, made by a first append.
    store
        .write(false, |tx| {
            tx.append(&entry("node-a", 0, "kept")).map(|_| ())
        })
        .await
        .unwrap();
    // Whether another connection can lock the head now, without waiting.
    let probe = |pool: Pool| async move {
        let mut c = pool.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let free = tx
            .execute("SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE NOWAIT", &[])
            .await
            .is_ok();
        tx.rollback().await.unwrap();
        free
    };
    for late in [true, false] {
        let (running, wait) = std::sync::mpsc::channel();
        let (looked, go_on) = std::sync::mpsc::channel::<()>();
        let job = move |tx: &mut postern_gateway::store::Tx<'_>| {
            tx.append(&entry("node-a", if late { 1 } else { 2 }, "kept"))?;
            // Still running, its record appended: the probe looks now, and the job goes on
            // once it has.
            let _ = running.send(());
            let _ = go_on.recv_timeout(std::time::Duration::from_secs(30));
            Ok(())
        };
        let store = store.clone();
        let writing = tokio::spawn(async move {
            if late {
                store.write_late(false, job).await
            } else {
                store.write(false, job).await
            }
        });
        tokio::task::spawn_blocking(move || wait.recv())
            .await
            .unwrap()
            .unwrap();
        let free = probe(pool.clone()).await;
        let _ = looked.send(());
        writing.await.unwrap().unwrap();
        assert_eq!(
            free, late,
            "the head is free while a batch run alongside runs its jobs, and held by any other"
        );
    }
    let (report, _) = pg::verify::verify_log(&pool, &[], &[]).await.unwrap();
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.records, 3);
    db.drop_it().await;
}

/// The last round trip of a batch that appends sends its COMMIT only once every statement
/// before it has gone out: a statement that cannot be sent (its parameter of the wrong type)
/// fails the whole, nothing is committed, and the connection is fine after the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_cannot_be_sent_stops_the_commit_after_it() {
    use postern_gateway::store::db::{Db as _, PgDb};
    let Some(s) = server("a_statement_that_cannot_be_sent_stops_the_commit_after_it") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let client = pool.get().await.unwrap();
    let handle = tokio::runtime::Handle::current();
    let target = pool.target().to_owned();
    let (result, after) = tokio::task::spawn_blocking(move || {
        let db = PgDb::new(client, &target, handle);
        db.batch("BEGIN").unwrap();
        let (seq, wrong) = (7i64, "not a number".to_owned());
        let (result, _) = db.pipeline(
            &[
                (
                    "INSERT INTO leases (name, node, until) VALUES ('probe', 'node-a', $1::text)",
                    vec![&"2026-12-04T00:00:00Z"],
                ),
                ("SELECT $1::bigint", vec![&wrong]),
                ("SELECT $1::bigint", vec![&seq]),
            ],
            "COMMIT",
        );
        db.batch("ROLLBACK").unwrap();
        let after = db.row("SELECT COUNT(*) FROM leases WHERE name = 'probe'", &[]);
        (result.map(|_| ()), after.map(|r| r.map(|r| r.int(0))))
    })
    .await
    .unwrap();
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        after.unwrap().unwrap().unwrap(),
        0,
        "nothing of it was committed"
    );
    db.drop_it().await;
}

/// Two processes cannot run as one node: the second to open the shared store under a name in
/// use is refused, saying why (two nodes with one name would take each other's attempts), and
/// the name is free again once the first has gone. Another name is fine meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_with_a_name_in_use_is_refused_until_the_first_has_gone() {
    use postern_gateway::store::{Store, StoreError};
    let Some(s) = server("a_second_node_with_a_name_in_use_is_refused") else {
        return;
    };
    let (db, _pool) = migrated(&s).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = Store::open_shared(dirs[0].path(), db.pool(), "node-a")
        .await
        .unwrap();
    match Store::open_shared(dirs[1].path(), db.pool(), "node-a").await {
        Err(e @ StoreError::NodeNameTaken { .. }) => {
            let said = e.to_string();
            assert!(
                said.contains("node-a") && said.contains("store.node") && said.contains(" since "),
                "{said}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second node-a was let in"),
    }
    let other = Store::open_shared(dirs[1].path(), db.pool(), "node-b")
        .await
        .unwrap();
    drop(first);
    // The name's connection closes with the store; the server frees it as it notices.
    let again = open_once_free(dirs[2].path(), &db.pool(), "node-a").await;
    assert!(
        again.is_some(),
        "node-a's name is free once its store is gone"
    );
    drop((other, again));
    db.drop_it().await;
}

/// Waits until a session of this database waits on a lock (another's row): the moment a test
/// lets the holder commit. False after ten seconds without one.
async fn someone_waits_on_a_lock(pool: &Pool) -> bool {
    waiting_on_locks_come_to(pool, 1).await
}

/// Whether, within 10 s, at least `n` connections to the test's database wait for a lock.
async fn waiting_on_locks_come_to(pool: &Pool, n: i64) -> bool {
    for _ in 0..200 {
        let waiting = count(
            pool,
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .await;
        if waiting >= n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// The last two deliveries of a transfer finished on two nodes at once, their batches running
/// side by side: the second outcome waits for the first's commit at the transfer's row (locked
/// at its batch's end, before the head) and then counts what is left, so the transfer is
/// completed (and its payload's grace period starts) however the two interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_two_outcomes_recorded_on_two_nodes_at_once_complete_the_transfer() {
    use postern_gateway::store::Store;
    use postern_gateway::store::pg::queue::{Due, Finish};
    let Some(s) = server("the_last_two_outcomes_recorded_on_two_nodes_at_once") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (a, b, _dirs) = two_stores(&db).await;
    let now = postern_gateway::clock::now();
    let (at, until) = (
        postern_gateway::clock::stamp(now),
        postern_gateway::clock::stamp(now + time::Duration::minutes(5)),
    );
    let accepted = entry("node-a", 1, "kept");
    let id = accepted.transfer_id.unwrap().to_string();
    let transfer = common::stored_transfer(
        accepted.transfer_id.unwrap(),
        &at,
        &["northshire-police", "riverside-youth"],
    );
    a.write_late(false, move |tx| {
        let seq = tx.append(&accepted)?;
        tx.insert_transfer(&transfer, seq)
    })
    .await
    .unwrap();
    let due = |r: &str| Due {
        transfer_id: id.clone(),
        recipient: r.into(),
    };
    // Each node claims one of the two.
    for (store, r) in [(&a, "northshire-police"), (&b, "riverside-youth")] {
        let (d, at, until) = (due(r), at.clone(), until.clone());
        let claimed = store
            .write_late(false, move |tx| tx.claim_delivery(&d, &at, &until))
            .await
            .unwrap();
        assert!(claimed, "{r} claimed");
    }
    let finish = |store: &Store, node: &'static str, r: &'static str| {
        let (store, t, at) = (store.clone(), id.clone(), at.clone());
        tokio::spawn(async move {
            store
                .write_late(false, move |tx| {
                    tx.append(&entry(node, 2, "outcome"))?;
                    tx.finish_delivery(
                        &t,
                        r,
                        &Finish::Delivered {
                            receipt: "{}".into(),
                        },
                        &at,
                        Some(1),
                    )
                })
                .await
        })
    };
    // The chain's head held elsewhere: node A's batch, its outcome recorded and the transfer's
    // row locked to settle its completion, waits there, uncommitted.
    let holder = pool.get().await.unwrap();
    holder
        .batch_execute("BEGIN; SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let first = finish(&a, "node-a", "northshire-police");
    assert!(
        waiting_on_locks_come_to(&pool, 1).await,
        "node A's batch waits for the head"
    );
    // Node B's, the transfer's other delivery, waits for node A's at the transfer's row.
    let second = finish(&b, "node-b", "riverside-youth");
    let waited = waiting_on_locks_come_to(&pool, 2).await;
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert!(first.await.unwrap().unwrap(), "node A's outcome kept");
    assert!(second.await.unwrap().unwrap(), "node B's outcome kept");
    assert!(
        waited,
        "node B's outcome waited for node A's at the transfer's row"
    );
    let done = count(
        &pool,
        "SELECT COUNT(*) FROM transfers WHERE completed_at IS NOT NULL",
    )
    .await;
    assert_eq!(done, 1, "the transfer is complete");
    db.drop_it().await;
}

/// Two batches finishing deliveries of the same two transfers in opposite orders (two nodes,
/// each finishing its recipient of both) take turns at the transfers' rows rather than
/// deadlock, and the later completes both transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_of_the_same_transfers_recorded_in_opposite_orders_do_not_deadlock() {
    use postern_gateway::store::pg::queue::{Due, Finish};
    let Some(s) = server("outcomes in opposite orders") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    let (a, b, _dirs) = two_stores(&db).await;
    let now = postern_gateway::clock::now();
    let (at, until) = (
        postern_gateway::clock::stamp(now),
        postern_gateway::clock::stamp(now + time::Duration::minutes(5)),
    );
    let mut ids = Vec::new();
    for i in 0..2 {
        let accepted = entry("node-a", 10 + i, "kept");
        ids.push(accepted.transfer_id.unwrap().to_string());
        let transfer = common::stored_transfer(
            accepted.transfer_id.unwrap(),
            &at,
            &["northshire-police", "riverside-youth"],
        );
        a.write_late(false, move |tx| {
            let seq = tx.append(&accepted)?;
            tx.insert_transfer(&transfer, seq)
        })
        .await
        .unwrap();
    }
    for (store, r) in [(&a, "northshire-police"), (&b, "riverside-youth")] {
        for id in &ids {
            let (d, at, until) = (
                Due {
                    transfer_id: id.clone(),
                    recipient: r.into(),
                },
                at.clone(),
                until.clone(),
            );
            let claimed = store
                .write_late(false, move |tx| tx.claim_delivery(&d, &at, &until))
                .await
                .unwrap();
            assert!(claimed, "{r} claimed");
        }
    }
    // When each job recorded its first outcome and when it went on to its second.
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let finish = |store: &postern_gateway::store::Store,
                  node: &'static str,
                  r: &'static str,
                  order: [String; 2]| {
        let (store, at, times) = (store.clone(), at.clone(), times.clone());
        tokio::spawn(async move {
            store
                .write_late(false, move |tx| {
                    tx.append(&entry(node, 2, "outcome"))?;
                    let mut kept = true;
                    for (i, t) in order.iter().enumerate() {
                        kept &= tx.finish_delivery(
                            t,
                            r,
                            &Finish::Delivered {
                                receipt: "{}".into(),
                            },
                            &at,
                            Some(1),
                        )?;
                        // The other node's batch records its first outcome meanwhile.
                        if i == 0 {
                            let first = std::time::Instant::now();
                            std::thread::sleep(std::time::Duration::from_millis(1500));
                            times
                                .lock()
                                .unwrap()
                                .push((first, std::time::Instant::now()));
                        }
                    }
                    Ok(kept)
                })
                .await
        })
    };
    let (t0, t1) = (ids[0].clone(), ids[1].clone());
    let first = finish(&a, "node-a", "northshire-police", [t0.clone(), t1.clone()]);
    let second = finish(&b, "node-b", "riverside-youth", [t1, t0]);
    assert!(first.await.unwrap().unwrap(), "node A's outcomes kept");
    assert!(second.await.unwrap().unwrap(), "node B's outcomes kept");
    // Each job recorded its first outcome before the other went on to its second: the two
    // batches held their first transfers at once.
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 2);
    assert!(
        times[0].0 < times[1].1 && times[1].0 < times[0].1,
        "the two jobs overlapped"
    );
    let done = count(
        &pool,
        "SELECT COUNT(*) FROM transfers WHERE completed_at IS NOT NULL",
    )
    .await;
    assert_eq!(done, 2, "both transfers are complete");
    db.drop_it().await;
}

/// Two nodes' stores (node-a and node-b) on `db`, and their state directories (kept as long
/// as the stores are).
async fn two_stores(
    db: &Db,
) -> (
    postern_gateway::store::Store,
    postern_gateway::store::Store,
    [tempfile::TempDir; 2],
) {
    use postern_gateway::store::Store;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Store::open_shared(dirs[0].path(), db.pool(), "node-a")
        .await
        .unwrap();
    let b = Store::open_shared(dirs[1].path(), db.pool(), "node-b")
        .await
        .unwrap();
    (a, b, dirs)
}

/// A fresh database on `s`, with the schema this postern needs, and a pool on it.
async fn migrated(s: &Server) -> (Db, Pool) {
    let db = Db::new(s).await;
    let pool = db.pool();
    migrate(&pool).await.unwrap();
    (db, pool)
}

/// A connection given back to the pool in the middle of a transaction (a job or a read that
/// panicked) does not carry its uncommitted writes to the connection's next user, whose COMMIT
/// would otherwise keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_transaction_leaves_nothing_for_its_next_user_to_commit() {
    use postern_gateway::store::db::{Db as _, PgDb};
    let Some(s) = server("a connection dropped mid-transaction") else {
        return;
    };
    let db = Db::new(&s).await;
    let pool = db.pool();
    pool.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE scratch (v TEXT NOT NULL)")
        .await
        .unwrap();
    // One connection, so that the next user is handed the same one.
    let one = pool.sibling(1).unwrap();
    let (client, target) = (one.get().await.unwrap(), one.target().to_owned());
    let handle = tokio::runtime::Handle::current();
    let dropped = tokio::task::spawn_blocking(move || {
        let pg = PgDb::new(client, &target, handle);
        pg.batch("BEGIN ISOLATION LEVEL READ COMMITTED; INSERT INTO scratch VALUES ('left open')")
            .unwrap();
        panic!("a bug, in the middle of a transaction");
    })
    .await;
    assert!(dropped.unwrap_err().is_panic());
    let next = one.get().await.unwrap();
    next.batch_execute("BEGIN; INSERT INTO scratch VALUES ('its own'); COMMIT")
        .await
        .unwrap();
    drop(next);
    let kept: Vec<String> = pool
        .get()
        .await
        .unwrap()
        .query("SELECT v FROM scratch ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, vec!["its own".to_owned()]);
    drop(one);
    db.drop_it().await;
}

/// A transaction the database ends for conflicting with another is said to be that (not the
/// database away), and is still answered 503, to be tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_ended_for_a_conflict_is_said_so_and_answered_503() {
    use postern_gateway::store::StoreError;
    use postern_gateway::store::db::{Db as _, PgDb};
    let Some(s) = server("a conflict is said so") else {
        return;
    };
    let db = Db::new(&s).await;
    let pool = db.pool();
    let other = pool.get().await.unwrap();
    other
        .batch_execute("CREATE TABLE scratch (v INTEGER NOT NULL); INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    let (client, target) = (pool.get().await.unwrap(), pool.target().to_owned());
    let pg = PgDb::new(client, &target, tokio::runtime::Handle::current());
    let (pg, snapshot) = tokio::task::spawn_blocking(move || {
        let r = pg.batch("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT v FROM scratch");
        (pg, r)
    })
    .await
    .unwrap();
    snapshot.unwrap();
    // Another transaction changes the row after this one's snapshot: its own change must fail.
    other
        .batch_execute("UPDATE scratch SET v = 2")
        .await
        .unwrap();
    let e = tokio::task::spawn_blocking(move || {
        let e = pg.batch("UPDATE scratch SET v = 3").unwrap_err();
        let _ = pg.batch("ROLLBACK");
        e
    })
    .await
    .unwrap();
    assert!(
        matches!(e, StoreError::Pg(pg::PgError::Conflict { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("conflicted with another"), "{e}");
    let problem = postern_gateway::ingest::problem::store_failure(&e, "nothing was kept");
    assert_eq!(problem.status, 503);
    drop(other);
    db.drop_it().await;
}

/// A node's lease renewal passes over an attempt another transaction holds (the node's other
/// writer recording its outcome) rather than waiting for it: waiting could deadlock, the
/// renewal locking the node's attempts in one order and a batch of outcomes in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewal_passes_over_an_attempt_another_transaction_holds() {
    use postern_gateway::testkit::store_suite::renew_leases;
    let Some(s) = server("a lease renewal passes over a held attempt") else {
        return;
    };
    let (db, pool) = migrated(&s).await;
    queue_deliveries(&pool, 2).await;
    let holder = pool.get().await.unwrap();
    holder
        .batch_execute(
            "UPDATE deliveries SET state = 'delivering', lease_node = 'node-a', lease_until = '2026-12-04T00:01:00Z'",
        )
        .await
        .unwrap();
    holder
        .batch_execute(
            "BEGIN; UPDATE deliveries SET updated_at = updated_at WHERE transfer_id = 't-0000'",
        )
        .await
        .unwrap();
    let pg = postern_gateway::store::db::PgDb::new(
        pool.get().await.unwrap(),
        pool.target(),
        tokio::runtime::Handle::current(),
    );
    let renewed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::task::spawn_blocking(move || renew_leases(&pg, "node-a", "2026-12-04T00:05:00Z")),
    )
    .await
    .expect("the renewal waited for the held attempt")
    .unwrap()
    .unwrap();
    assert_eq!(renewed, 1, "the attempt not held is renewed");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let leases: Vec<(String, String)> = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT transfer_id, lease_until FROM deliveries ORDER BY transfer_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        leases,
        vec![
            ("t-0000".into(), "2026-12-04T00:01:00Z".into()),
            ("t-0001".into(), "2026-12-04T00:05:00Z".into()),
        ]
    );
    db.drop_it().await;
}
