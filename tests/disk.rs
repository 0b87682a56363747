//! A full disk refuses; it never loses what it accepted. The state directory is put on a real
//! small filesystem (a tmpfs this test mounts, which needs root: without it the tests that need
//! one print SKIPPED, and `.ci/run` sets CI_REQUIRE_TMPFS=1 so that they cannot skip there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::{Deployment, envelope, json, submit};
use futures_util::StreamExt;
use postern_gateway::client::Submission;
use serde_json::{Value, json};

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("CI_REQUIRE_TMPFS").as_deref() != Ok("1"),
                    "CI_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted: {why}"
                );
                eprintln!(
                    "SKIPPED: this test needs to mount a small tmpfs (run as root; .ci/run does): {why}"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Takes all but `leave` bytes of the free space, with a file that can be removed.
    fn fill(&self, leave: u64) -> PathBuf {
        let free = postern_gateway::store::free_bytes(self.path()).expect("statvfs");
        let filler = self.path().join("filler");
        let f = std::fs::File::create(&filler).expect("filler");
        let want = free.saturating_sub(leave);
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut w = std::io::BufWriter::new(f);
        let mut written = 0;
        while written < want {
            let n = chunk.len().min((want - written) as usize);
            if std::io::Write::write_all(&mut w, &chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = std::io::Write::flush(&mut w);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A deployment whose state directory (store, spool, inbox, keys) is on `disk`.
fn on_disk(disk: &SmallDisk, extra: &str) -> Deployment {
    let mut d = Deployment::with_daemon(extra);
    let state = disk.path().join("state");
    copy_dir(&d.state_dir, &state);
    d.rewrite(
        "postern.toml",
        &format!("state_dir = \"{}\"", d.state_dir.display()),
        &format!("state_dir = \"{}\"", state.display()),
    );
    d.state_dir = state;
    d
}

fn failed_records(d: &Deployment, code: &str) -> Vec<Value> {
    d.all_records()
        .into_iter()
        .filter(|r| r["kind"] == "transfer_failed" && r["code"] == code)
        .collect()
}

/// A payload of `len` bytes streamed without a Content-Length (as a client that does not know
/// its size in advance sends it), so that only the disk itself can refuse it.
async fn submit_chunked(
    conn: &mut postern_gateway::client::Connection,
    len: usize,
) -> postern_gateway::client::Answer {
    let data = common::payload(len, 9);
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(256 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    conn.submit(Submission {
        envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
        payload: futures_util::stream::iter(chunks),
        payload_len: None,
        file_name: None,
        content_type: None,
        idempotency_key: None,
    })
    .await
    .expect("an answer, not a broken connection")
}

/// Below the reserve, an upload is refused before it is read (507, Retry-After), a peer's
/// delivery likewise, and /readyz says why. Needs no small disk: the reserve is set above what
/// any disk has free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_uploads_are_refused_before_they_are_read() {
    let d = Deployment::with_daemon("[limits]\nmin_free_bytes = 1125899906842624\n");
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let answer = submit(&mut council, &envelope(json!({})), vec![1; 4096], None).await;
    assert_eq!(
        answer.status,
        507,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let p = json(&answer);
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("insufficient_storage"), Some("payload"))
    );
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("60")
    );
    assert!(d.spool_files().is_empty() && d.transfers() == 0);
    assert!(p["transfer_id"].is_string(), "{p}");
    assert!(
        failed_records(&d, "insufficient_storage").is_empty(),
        "below half the reserve, refusals are not recorded: a client retrying would use it up"
    );

    let mut peer = d
        .connect_with(server.addr, Some(&d.server_identity()))
        .await
        .expect("peer");
    let a = peer
        .raw(
            "POST",
            "/v1/inbound",
            &[("content-type", "multipart/form-data; boundary=x")],
            Bytes::from_static(b"--x--\r\n"),
        )
        .await
        .expect("inbound");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (507, json!("insufficient_storage"))
    );

    let (status, body) = common::http_get(server.ops.expect("ops"), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("short of space"), "{body}");
    server.stop().await;

    // In the first half of the reserve, the refusal is recorded.
    let free = postern_gateway::store::free_bytes(&d.state_dir).expect("statvfs");
    let d = Deployment::with_daemon(&format!("[limits]\nmin_free_bytes = {}\n", free / 3 * 4));
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let answer = submit(&mut council, &envelope(json!({})), vec![1; 4096], None).await;
    assert_eq!(answer.status, 507);
    let failed = failed_records(&d, "insufficient_storage");
    assert_eq!(failed.len(), 1, "the refusal is recorded");
    assert_eq!(failed[0]["transfer_id"], json(&answer)["transfer_id"]);
    server.stop().await;
}

/// The disk fills while a payload is being uploaded: the answer is 507 (never a 500), nothing
/// partial is kept, the attempt is recorded, and the next transfer is accepted once there is
/// room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_an_upload_is_a_507_and_keeps_nothing() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let d = on_disk(&disk, "[limits]\nmin_free_bytes = 0\n");
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let answer = submit_chunked(&mut council, 40 << 20).await;
    assert_eq!(
        answer.status,
        507,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let p = json(&answer);
    assert_eq!(p["code"], "insufficient_storage");
    assert!(answer.headers.contains_key("retry-after"));
    assert!(d.spool_files().is_empty(), "nothing partial is kept");
    assert_eq!(d.transfers(), 0);
    assert_eq!(
        failed_records(&d, "insufficient_storage").len(),
        1,
        "the attempt is recorded"
    );
    // Room again (the partial file went): a transfer is accepted.
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let ok = submit(&mut council, &envelope(json!({})), vec![2; 100_000], None).await;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
    server.stop().await;
}

/// A receiving gateway whose disk is full answers 507; for the sending gateway that is a
/// temporary failure (retried, not dead), and the delivery completes once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_is_a_temporary_failure_and_the_delivery_completes_later() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let a = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    let b = on_disk(&disk, "[limits]\nmin_free_bytes = 4194304\n");
    b.accept_deliveries_from(&a);
    let b_server = b.start().await;
    a.deliver_police_to(&b, b_server.addr.port());
    let filler = disk.fill(1 << 20);
    let a_server = a.start().await;
    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let id = json(&submit(&mut council, &envelope(json!({})), vec![4; 200_000], None).await)
        ["transfer_id"]
        .as_str()
        .expect("accepted")
        .to_owned();
    let s = common::wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "a retried delivery",
        |s| s["attempts"].as_i64().unwrap_or(0) >= 2,
    )
    .await;
    assert_ne!(s["state"], "dead", "a full receiver is temporary: {s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("507") && e.contains("insufficient_storage")),
        "{s}"
    );
    std::fs::remove_file(filler).expect("free the space");
    common::wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "the delivery",
        |s| s["state"] == "delivered",
    )
    .await;
    a_server.stop().await;
    b_server.stop().await;
}

/// An attempt whose outcome cannot be recorded (the store is locked by another process for
/// longer than it waits) leaves its delivery `delivering`; while the gateway runs, the worker
/// finds it and queues it again, and the next attempt is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_outcome_could_not_be_recorded_is_recovered_while_running() {
    // A recipient that accepts connections and never answers: each attempt takes the attempt
    // timeout (1 s), long enough to lock the store meanwhile.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let d = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 60000\nretry_max_ms = 60000\nretry_jitter = 0.0\nattempt_timeout_secs = 1\n",
    );
    d.rewrite(
        "organisations.toml",
        "url = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-police.pub\"",
        &format!(
            "url = \"https://localhost:{port}/v1/inbound\"\nca = \"${{state_dir}}/pki/ca.crt\"\nage_recipients_file = \"${{state_dir}}/keys/orgs/northshire-police.pub\""
        ),
    );
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let id =
        json(&submit(&mut council, &envelope(json!({})), vec![6; 1000], None).await)["transfer_id"]
            .as_str()
            .expect("accepted")
            .to_owned();
    let state = |d: &Deployment, id: &str| -> (String, i64) {
        d.reader()
            .conn()
            .unwrap()
            .query_row(
                "SELECT state, attempts FROM deliveries WHERE transfer_id = ?1 AND recipient = 'northshire-police'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row")
    };
    common::eventually(10, "the first attempt", || {
        let s = state(&d, &id);
        async move { (s.0 == "delivering").then_some(()) }
    })
    .await;
    // Lock the store past its busy timeout (10 s) while the attempt runs: recording it fails.
    let db = postern_gateway::store::db_path(&d.state_dir);
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).expect("open");
        c.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        std::thread::sleep(std::time::Duration::from_secs(13));
        c.execute_batch("COMMIT").expect("unlock");
    });
    // The attempt (1 s) has ended and its recording has given up (10 s later); the lock holds.
    tokio::time::sleep(std::time::Duration::from_millis(12_000)).await;
    assert_eq!(
        state(&d, &id),
        ("delivering".to_owned(), 1),
        "the outcome was not recorded"
    );
    locker.join().expect("locker");
    let attempts_before = 1;
    // Recovered while running: queued again, with the reason, and the next attempt recorded.
    let recovered = common::eventually(30, "the stranded delivery to be queued again", || {
        let s = state(&d, &id);
        async move { (s.0 != "delivering" || s.1 > attempts_before).then_some(s) }
    })
    .await;
    assert_ne!(recovered.0, "dead", "{recovered:?}");
    let last_error: Option<String> = d
        .reader()
        .conn()
        .unwrap()
        .query_row(
            "SELECT last_error FROM deliveries WHERE transfer_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("row");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("could not be recorded") || e.contains("took longer")),
        "{last_error:?}"
    );
    server.stop().await;
}

/// While the gateway drains for shutdown, /readyz says so (503), so that a load balancer stops
/// sending it work before the listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_the_gateway_drains() {
    let d = Deployment::with_daemon("[limits]\nidle_timeout_secs = 3\n");
    let server = d.start().await;
    let ops = server.ops.expect("ops");
    assert_eq!(common::http_get(ops, "/readyz").await.0, 200);
    // An upload in flight that stalls: the drain waits for it.
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let stalled = tokio::spawn(async move {
        let first: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from(vec![1u8; 1024]))];
        let stall = futures_util::stream::iter(first).chain(futures_util::stream::pending());
        let _ = council
            .submit(Submission {
                envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
                payload: stall,
                payload_len: None,
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::spawn(server.stop());
    let (status, body) =
        common::eventually(5, "/readyz to say the gateway is draining", || async move {
            let (s, b) = common::http_get(ops, "/readyz").await;
            (s == 503).then_some((s, b))
        })
        .await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    stopping.await.expect("stopped");
    stalled.abort();
}
