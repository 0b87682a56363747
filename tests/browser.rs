//! The volunteer's journey in real headless Chromium (tests/browser/journey.mjs, playwright-core
//! driving Debian's chromium), against the real `postern demo` binary: sign in with the code the
//! demo prints, share a file with the MASH question by question, see it delivered, see an
//! altered share refused in plain words, sign out; then the MASH's social worker signs in, opens
//! it in "What has arrived" and downloads exactly the file the club uploaded. axe-core (WCAG 2.2
//! A and AA tags) on every page, with zero violations, and no sideways scrolling at 400% zoom.
//! Millbrook Academy requires passkeys: its DSL signs in with a code once, adds a passkey
//! (Chromium's virtual authenticator), signs in with it, and is then sent no code. The MASH's
//! DPO filters the transfer log, opens a record, finds the child by the club's reference, exports,
//! reads the report, and goes from a refusal to explain; the council's IT officer reads the
//! registry and the configuration's status. Run with JavaScript on and off. Then the MASH asks
//! the youth club for information, the club reads the request and answers it with a share, and
//! the MASH sees it answered (on and off again). Then a record is altered in the database, and
//! "verify now" must report it broken, at that record.
//!
//! Needs chromium, node and `npm ci --prefix tests/browser`. Without them it prints one loud
//! SKIPPED line, unless POSTERN_REQUIRE_BROWSER=1 (as `.ci/run` sets), when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !chromium().is_file() {
        return Some(format!(
            "no Chromium at {} (apt-get install chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node (apt-get install nodejs npm)".into());
    }
    for m in ["playwright-core", "axe-core"] {
        if !root.join("tests/browser/node_modules").join(m).is_dir() {
            return Some(format!("no {m} (npm ci --prefix tests/browser)"));
        }
    }
    None
}

struct Demo {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    out: PathBuf,
    state: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("tmp");
        let state = dir.path().join("state");
        let out = dir.path().join("demo.out");
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(["demo", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&state)
            .env("POSTERN_OPS__LISTEN", "127.0.0.1:0")
            .env("POSTERN_WEB__LISTEN", "127.0.0.1:0")
            .env_remove("RUST_BACKTRACE")
            // The journey's variable, not the gateway's: its POSTERN_ prefix would be read as
            // configuration.
            .env_remove("POSTERN_SHOTS_DIR")
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo");
        Demo {
            child,
            _dir: dir,
            out,
            state,
        }
    }

    fn banner(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The web pages' address, once the demo has printed its banner.
    fn web(&self) -> String {
        let start = Instant::now();
        loop {
            let text = self.banner();
            if text.contains("Ctrl-C stops") {
                let line = text
                    .lines()
                    .find(|l| l.trim_start().starts_with("web pages"))
                    .unwrap_or_else(|| panic!("the banner names the web pages:\n{text}"));
                let url = line.split_whitespace().nth(2).expect("url");
                return url.trim_end_matches('/').to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the demo did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs the journey; returns its RESULT object.
fn journey(demo: &Demo, url: &str, js: &str, shots: &Path) -> serde_json::Value {
    run_journey(demo, url, js, shots, &[], 20)
}

/// Runs journey.mjs with `extra` environment; it must pass, with at least `min_pages` pages
/// checked by axe and no violation.
fn run_journey(
    demo: &Demo,
    url: &str,
    js: &str,
    shots: &Path,
    extra: &[(&str, String)],
    min_pages: u64,
) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/journey.mjs"))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .env("POSTERN_WEB_URL", url)
        .env("POSTERN_CODE_FILE", &demo.out)
        .env("POSTERN_SHOTS_DIR", shots)
        .env("POSTERN_JS", js)
        .env("CHROMIUM", chromium())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no RESULT from the journey (JavaScript {js}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: serde_json::Value = serde_json::from_str(result).expect("RESULT JSON");
    assert!(
        out.status.success() && v["failed"].is_null(),
        "the journey failed (JavaScript {js}):\n{stdout}"
    );
    assert_eq!(
        v["violations"],
        serde_json::json!([]),
        "axe violations:\n{stdout}"
    );
    assert!(v["pages"].as_u64().unwrap_or(0) >= min_pages, "{stdout}");
    v
}

#[test]
fn a_volunteer_shares_with_the_mash_in_a_real_browser_with_javascript_on_and_off() {
    if let Some(why) = missing() {
        if std::env::var("POSTERN_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("POSTERN_REQUIRE_BROWSER=1 but the browser tests cannot run: {why}");
        }
        eprintln!("\n==== SKIPPED: browser tests (tests/browser.rs): {why} ====\n");
        return;
    }
    let demo = Demo::start();
    let url = demo.web();
    // POSTERN_SHOTS_DIR keeps every page's screenshot (how docs/screenshots is made).
    let scratch = tempfile::tempdir().expect("shots");
    let kept = std::env::var_os("POSTERN_SHOTS_DIR").map(PathBuf::from);
    let shots = kept.as_deref().unwrap_or(scratch.path());
    for js in ["on", "off"] {
        let r = journey(&demo, &url, js, shots);
        let sent = r["payload_sha256"].as_str().expect("payload sha");
        assert_eq!(
            r["mash_download_sha256"].as_str(),
            Some(sent),
            "what the MASH downloads is what the club uploaded: {r}"
        );
        assert_eq!(r["refused"]["status"], 403, "{r}");
        // The DPO filtered, opened a record, found the child by reference, exported, read the
        // report and went from a refusal to explain.
        let dpo = &r["dpo"];
        assert_eq!(dpo["filtered"], true, "{r}");
        assert_eq!(dpo["record"], true, "{r}");
        assert!(dpo["subject"].as_u64().unwrap_or(0) >= 2, "{r}");
        assert!(dpo["exported"].as_u64().unwrap_or(0) >= 1, "{r}");
        assert_eq!(dpo["explained"], true, "{r}");
        if js == "on" {
            assert_eq!(
                r["passkey"],
                serde_json::json!({"added": true, "signed_in": true, "code_withheld": true}),
                "a passkey was added, used, and then no code was sent: {r}"
            );
        }
    }
    // A request for information over the pages: asked by the MASH, read and answered by a
    // share from the youth club, seen answered by the MASH; with JavaScript on and off.
    for js in ["on", "off"] {
        let r = run_journey(
            &demo,
            &url,
            js,
            shots,
            &[("POSTERN_JOURNEY", "requests".into())],
            20,
        );
        assert_eq!(r["request"]["answered"], true, "{r}");
        assert_eq!(r["request"]["seen_by_requester"], true, "{r}");
        assert_eq!(r["request"]["feedback_seen"], true, "{r}");
    }
    // A record altered behind the gateway's back: "verify now" must say where, and every log
    // page must carry it.
    let db = rusqlite::Connection::open(postern_gateway::store::db_path(&demo.state)).expect("db");
    let (seq, mut body): (i64, Vec<u8>) = db
        .query_row(
            "SELECT seq, body FROM log WHERE kind = 'transfer_accepted' ORDER BY seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a shared record");
    let at = body
        .windows(7)
        .position(|w| w == b"routine")
        .expect("a byte to alter");
    body[at] = b'R';
    db.execute(
        "UPDATE log SET body = ?1 WHERE seq = ?2",
        rusqlite::params![body, seq],
    )
    .expect("alter");
    drop(db);
    let r = run_journey(
        &demo,
        &url,
        "off",
        shots,
        &[
            ("POSTERN_JOURNEY", "tampered".into()),
            ("POSTERN_TAMPERED_SEQ", seq.to_string()),
        ],
        4,
    );
    assert_eq!(r["tampered"]["broken"], true, "{r}");
    assert_eq!(r["tampered"]["seq"], seq, "{r}");
    // Every sign-in, view, download and acknowledgement was recorded with the person.
    let reader = postern_gateway::store::Reader::open(&demo.state).expect("store");
    let records = reader
        .records(&postern_gateway::store::LogFilter {
            kind: Some("person_access".into()),
            ..Default::default()
        })
        .expect("records");
    for (who, event) in [
        ("sam@riverside-youth.example", "signed_in"),
        ("alex@northshire-mash.example", "item_viewed"),
        ("alex@northshire-mash.example", "item_downloaded"),
        ("alex@northshire-mash.example", "item_acknowledged"),
        ("sam@riverside-youth.example", "signed_out"),
        ("jo@millbrook-academy.example", "passkey_added"),
        ("jo@millbrook-academy.example", "code_withheld"),
        ("priya@northshire-mash.example", "log_listed"),
        ("priya@northshire-mash.example", "record_viewed"),
        ("priya@northshire-mash.example", "subject_searched"),
        ("priya@northshire-mash.example", "log_exported"),
        ("priya@northshire-mash.example", "report_viewed"),
        ("priya@northshire-mash.example", "log_verified"),
        ("sam@riverside-youth.example", "request_viewed"),
    ] {
        assert!(
            records
                .iter()
                .any(|r| r.body["sender"]["person"] == who && r.body["code"] == event),
            "`{event}` by {who} recorded"
        );
    }
    assert!(
        records.iter().any(
            |r| r.body["sender"]["person"] == "jo@millbrook-academy.example"
                && r.body["code"] == "signed_in"
                && r.body["detail"] == "passkey"
        ),
        "a sign-in with a passkey is recorded as one"
    );
}
