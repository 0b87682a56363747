//! The volunteer's journey in real headless Chromium (tests/browser/journey.mjs, playwright-core
//! driving Debian's chromium), against the real `postern demo` binary: sign in with the code the
//! demo prints, share a file with the MASH question by question, see it delivered, see an
//! altered share refused in plain words, sign out; axe-core (WCAG 2.2 A and AA tags) on every
//! page, with zero violations. Run with JavaScript on and off. Then the MASH's side: what
//! arrived in its inbox decrypts to exactly the file the browser uploaded.
//!
//! Needs chromium, node and `npm ci --prefix tests/browser`. Without them it prints one loud
//! SKIPPED line, unless POSTERN_REQUIRE_BROWSER=1 (as `.ci/run` sets), when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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
    let mut sent = Vec::new();
    for js in ["on", "off"] {
        let r = journey(&demo, &url, js, shots.path());
        sent.push(
            r["payload_sha256"]
                .as_str()
                .expect("payload sha")
                .to_owned(),
        );
        assert_eq!(r["refused"]["status"], 403, "{r}");
    }

    // The MASH's side, with the commands the demo prints: each file the browser uploaded is in
    // its inbox, and decrypts with the MASH's key to exactly what was uploaded.
    let banner = demo.banner();
    let line = |what: &str| -> String {
        banner
            .lines()
            .find(|l| l.starts_with("  ") && l.contains(what))
            .unwrap_or_else(|| panic!("the banner has `{what}`:\n{banner}"))
            .trim()
            .to_owned()
    };
    let (list, get) = (line(" inbox list "), line(" inbox get "));
    let out_dir = demo.state.parent().expect("dir").join("received");
    let get = get.replace(
        &get.split_whitespace()
            .skip_while(|w| *w != "--out")
            .nth(1)
            .expect("--out DIR")
            .to_owned(),
        &out_dir.display().to_string(),
    );
    let sh = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("sh")
    };
    let mut received = Vec::new();
    let start = Instant::now();
    while received.len() < sent.len() {
        received.clear();
        let listing = String::from_utf8_lossy(&sh(&list).stdout).to_string();
        for item in listing
            .lines()
            .filter(|l| l.contains("riverside-youth"))
            .filter_map(|l| l.split_whitespace().next())
        {
            let got = sh(&get.replace("ITEM-ID", item));
            assert!(
                got.status.success(),
                "{}",
                String::from_utf8_lossy(&got.stderr)
            );
            let files: Vec<String> = String::from_utf8_lossy(&got.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            let payload = std::fs::read(&files[1]).expect("decrypted payload");
            received.push(hex::encode(Sha256::digest(&payload)));
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the MASH's inbox holds {} of the {} shares",
            received.len(),
            sent.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &sent {
        assert!(
            received.contains(s),
            "what the browser uploaded ({s}) is what the MASH decrypts: {received:?}"
        );
    }
}
