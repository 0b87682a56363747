//! The volunteer's journey in real headless Chromium (tests/browser/journey.mjs, playwright-core
//! driving Debian's chromium), against the real `postern demo` binary: sign in with the code the
//! demo prints, share a file with the MASH question by question, see it delivered, see an
//! altered share refused in plain words, sign out; then the MASH's social worker signs in, opens
//! it in "What has arrived" and downloads exactly the file the club uploaded. axe-core (WCAG 2.2
//! A and AA tags) on every page, with zero violations, and no sideways scrolling at 400% zoom.
//! Millbrook Academy requires passkeys: its DSL signs in with a code once, adds a passkey
//! (Chromium's virtual authenticator), signs in with it, and is then sent no code. Run with
//! JavaScript on and off.
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/journey.mjs"))
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
    assert!(v["pages"].as_u64().unwrap_or(0) >= 20, "{stdout}");
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
    let shots = tempfile::tempdir().expect("shots");
    for js in ["on", "off"] {
        let r = journey(&demo, &url, js, shots.path());
        let sent = r["payload_sha256"].as_str().expect("payload sha");
        assert_eq!(
            r["mash_download_sha256"].as_str(),
            Some(sent),
            "what the MASH downloads is what the club uploaded: {r}"
        );
        assert_eq!(r["refused"]["status"], 403, "{r}");
        if js == "on" {
            assert_eq!(
                r["passkey"],
                serde_json::json!({"added": true, "signed_in": true, "code_withheld": true}),
                "a passkey was added, used, and then no code was sent: {r}"
            );
        }
    }
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
