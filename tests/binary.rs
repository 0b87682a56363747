//! Tests that run the real `postern` binary: memory under a large upload, a crash mid-upload,
//! and what the operational logs may (not) contain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::{Deployment, envelope, json, submit};
use futures_util::stream;
use postern_gateway::client::Submission;
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// A payload of `blocks` MiB generated on the fly (the test never holds it whole either), and
/// its SHA-256.
fn generated(
    blocks: usize,
    sent: Arc<AtomicU64>,
) -> (
    impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    String,
) {
    let block: Vec<u8> = common::payload(MIB, 42);
    let mut hash = Sha256::new();
    for i in 0..blocks {
        let mut b = block.clone();
        b[0] = i as u8;
        hash.update(&b);
    }
    let digest = hex::encode(hash.finalize());
    let s = stream::unfold(0usize, move |i| {
        let block = block.clone();
        let sent = sent.clone();
        async move {
            if i == blocks {
                return None;
            }
            let mut b = block;
            b[0] = i as u8;
            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            Some((Ok(Bytes::from(b)), i + 1))
        }
    });
    (s, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_does_not_grow_server_memory_with_its_size() {
    let d = Deployment::new();
    let server = d.spawn();
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    // Warm up: one small transfer, so the baseline includes TLS, SQLite and the sealing path.
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), vec![7; MIB], None)
            .await
            .status,
        202
    );
    let baseline = server.peak_rss_kib();

    let (payload, digest) = generated(200, Arc::new(AtomicU64::new(0)));
    let answer = conn
        .submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
            payload,
            payload_len: Some(200 * MIB as u64),
            file_name: None,
            content_type: None,
            idempotency_key: None,
        })
        .await
        .expect("submit");
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        json(&answer)["payload"]["sha256"],
        json!(digest),
        "the gateway saw every byte"
    );
    let peak = server.peak_rss_kib();
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!(
        "server peak RSS: baseline {} MiB, after 200 MiB upload {} MiB (growth {growth_mib:.1} MiB)",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 32.0,
        "memory grew by {growth_mib:.1} MiB during a 200 MiB upload"
    );
    let sealed = std::fs::metadata(d.spool_files().last().expect("file"))
        .expect("meta")
        .len();
    assert!(
        sealed > 200 * MIB as u64,
        "the whole payload is in the spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_upload_leaves_nothing_deliverable_and_the_orphan_is_swept() {
    let d = Deployment::new();
    let mut server = d.spawn();
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), vec![1; 1000], None)
            .await
            .status,
        202
    );

    let sent = Arc::new(AtomicU64::new(0));
    let (payload, _) = generated(64, sent.clone());
    // Slow the client down so the crash lands mid-upload.
    let payload = futures_util::StreamExt::then(payload, |c| async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        c
    });
    let mut conn2 = d.connect(server.addr, "northshire-cc").await;
    let upload = tokio::spawn(async move {
        conn2
            .submit(Submission {
                envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
                payload,
                payload_len: Some(64 * MIB as u64),
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await
    });
    while sent.load(Ordering::Relaxed) < 8 * MIB as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The gateway seals as the bytes arrive: its partial file appears while the upload goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d.spool_files().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        d.spool_files().len(),
        1,
        "the upload in progress has a partial sealed file"
    );
    server.kill9();
    assert!(
        upload.await.expect("task").is_err(),
        "the interrupted upload was never answered"
    );

    // On restart the partial file is removed before anything is accepted; the accepted
    // (small, so stored inline) transfer stays.
    let server = d.spawn();
    assert!(
        d.spool_files().is_empty(),
        "orphan swept: {:?}",
        d.spool_files()
    );
    assert_eq!(d.transfers(), 1);
    let accepted: Vec<_> = d
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "transfer_accepted")
        .collect();
    assert_eq!(accepted.len(), 1);
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), vec![2; 1000], None)
            .await
            .status,
        202
    );
    assert_eq!(d.transfers(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_payloads_justifications_or_subject_references() {
    let d = Deployment::new();
    let server = d.spawn_with_env(&[("POSTERN_LOG", "debug")]);
    let mut payload = b"PAYLOAD-SENTINEL ".to_vec();
    payload.extend(common::payload(100_000, 9));
    // A connection each: a request refused before its payload is read may close its connection
    // (the gateway answers, then drains and closes: src/ingest/linger.rs).
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), payload.clone(), None)
            .await
            .status,
        202
    );
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(
            &mut conn,
            &envelope(json!({"marking": "SECRET"})),
            payload.clone(),
            None
        )
        .await
        .status,
        403
    );
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(
            &mut conn,
            &envelope(json!({"subject_refs": ["nhs:1234567890"]})),
            payload.clone(),
            None
        )
        .await
        .status,
        422
    );
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(
            &mut conn,
            &envelope(json!({"practitioner": null})),
            payload,
            None
        )
        .await
        .status,
        422
    );
    let stderr = server.terminate();
    assert!(
        stderr.contains("transfer accepted") && stderr.contains("transfer refused by policy"),
        "the logs say what happened:\n{stderr}"
    );
    for secret in [
        "PAYLOAD-SENTINEL",
        "JUSTIFICATION-SENTINEL",
        "SUBJECT-SENTINEL",
        "9434765919",
        "1234567890",
        "Telling the family",
    ] {
        assert!(
            !stderr.contains(secret),
            "`{secret}` appeared in the logs:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_load_loses_no_accepted_transfer_and_duplicates_none() {
    let d = Deployment::new();
    let mut server = d.spawn();
    let accepted = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for i in 0..4u64 {
        let conn = d.connect(server.addr, "northshire-cc").await;
        submitters.push(tokio::spawn(common::keep_submitting(
            conn,
            i * 1_000_000,
            accepted.clone(),
            u64::MAX,
            Arc::default(),
        )));
    }
    while accepted.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9();
    let mut sent: Vec<(String, u64)> = Vec::new();
    for s in submitters {
        sent.extend(s.await.expect("submitter"));
    }
    let undelivered = |d: &Deployment| -> i64 {
        d.reader()
            .conn()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'",
                [],
                |row| row.get(0),
            )
            .expect("count")
    };
    let pending = undelivered(&d);
    assert!(
        pending > 0,
        "the kill landed with deliveries still to do ({} accepted)",
        sent.len()
    );

    // Restart: what was queued or in flight is delivered, each transfer once.
    let server = d.spawn();
    let start = std::time::Instant::now();
    while undelivered(&d) > 0 {
        assert!(
            start.elapsed().as_secs() < 60,
            "deliveries still outstanding after 60 s: {}",
            undelivered(&d)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = d.reader();
    let mut stmt = r
        .conn()
        .unwrap()
        .prepare(
            "SELECT transfer_id, COUNT(*) FROM inbox WHERE recipient = 'northshire-police' \
             GROUP BY transfer_id",
        )
        .expect("query");
    let inbox: std::collections::HashMap<String, i64> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("inbox");
    for (id, _) in &sent {
        assert_eq!(inbox.get(id), Some(&1), "transfer {id} in the inbox once");
    }
    assert!(inbox.values().all(|n| *n == 1), "no inbox duplicates");
    // Whatever else is there was accepted but its answer was lost in the kill.
    assert!(inbox.len() >= sent.len());
    assert_eq!(
        inbox.len(),
        d.transfers(),
        "every stored transfer delivered"
    );
    eprintln!(
        "crash test: {} answered 202, {} undelivered at the kill, {} in the inbox after restart",
        sent.len(),
        pending,
        inbox.len()
    );

    // What arrived is what was sent: spot-check the last answered transfers end to end.
    let mut police = d.connect(server.addr, "northshire-police").await;
    let list = json(&police.get("/v1/inbox").await.expect("list"));
    let items = list["items"].as_array().expect("items");
    let key = d.org_key("northshire-police");
    for (id, seed) in sent.iter().rev().take(5) {
        let item = items
            .iter()
            .find(|i| i["transfer_id"] == json!(id))
            .expect("listed");
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
            &mut postern_gateway::seal::open(&sealed[..], key.identity()).expect("opens"),
            &mut plain,
        )
        .expect("read");
        assert_eq!(plain, common::numbered(*seed));
    }
}

/// The environment of a running process, as `/proc` shows it.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("read environ")
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The binary runs itself again with one malloc arena (glibc reads `MALLOC_ARENA_MAX` only at
/// start), as the same process, unless the operator chose a value of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_limits_malloc_to_one_arena_unless_told_otherwise() {
    let d = Deployment::new();
    let server = d.spawn();
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let env = environ(server.pid());
    let tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc.arena_max"));
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned {
        assert!(
            env.iter().any(|v| v == "MALLOC_ARENA_MAX=1"),
            "the process it was started as runs with one arena: {env:?}"
        );
    }
    // It is the gateway itself, serving, under the pid it was started with.
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), vec![7; 1024], None)
            .await
            .status,
        202
    );
    drop(server);

    let server = d.spawn_with_env(&[("MALLOC_ARENA_MAX", "3")]);
    assert!(
        environ(server.pid())
            .iter()
            .any(|v| v == "MALLOC_ARENA_MAX=3"),
        "an operator's own value is left alone"
    );
}

/// A gateway that is not there: the command says where it tried and what the socket said, and
/// exits 69 (unavailable).
#[test]
fn a_command_says_which_address_refused_it() {
    let d = Deployment::new();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["status", "--server", &format!("https://127.0.0.1:{port}")])
        .arg("--ca")
        .arg(d.ca_path())
        .arg("--identity")
        .arg(d.identity_path("northshire-cc"))
        .arg("0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run postern");
    assert_eq!(out.status.code(), Some(69));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("could not connect to 127.0.0.1:{port}"))
            && said.contains("refused"),
        "{said}"
    );
}
