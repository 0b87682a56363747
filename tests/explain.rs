//! `postern explain` through the real binary, on a real configuration: it prints every rule the
//! real policy decision checked, the agreement that allows a share or the rule that refuses it,
//! exits 0 or 77 accordingly, and sends and records nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::process::Command;

use common::Deployment;
use serde_json::Value;

fn explain(d: &Deployment, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("explain")
        .args(args)
        .arg("--config")
        .arg(&d.config_dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run postern explain")
}

#[test]
fn explain_shows_the_agreement_that_allows_a_share_and_the_rule_that_refuses_one() {
    let d = Deployment::new();
    let allowed = explain(
        &d,
        &[
            "--from",
            "northshire-cc",
            "--to",
            "northshire-police",
            "--to",
            "millbrook-academy",
            "--purpose",
            "child-protection-s47",
            "--lawful-basis",
            "public_task",
            "--marking",
            "official sensitive",
        ],
    );
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(text.contains("ALLOWED:"), "{text}");
    assert!(
        text.contains("northshire-police under agreement test-isp")
            && text.contains("millbrook-academy under agreement test-isp"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");

    // A voluntary organisation may not share under a statutory-only gateway (s.115).
    let refused = explain(
        &d,
        &[
            "--from",
            "riverside-youth",
            "--to",
            "northshire-police",
            "--purpose",
            "crime-prevention-s115",
            "--lawful-basis",
            "public_task",
            "--marking",
            "OFFICIAL",
            "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(77));
    let ev: Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert_eq!(ev["decision"]["outcome"], "refused");
    assert_eq!(ev["decision"]["code"], "statutory_only_sender");
    let checks = ev["checks"].as_array().expect("checks");
    let last = checks.last().expect("a check");
    assert_eq!(last["passed"], false);
    assert!(
        checks
            .iter()
            .take(checks.len() - 1)
            .all(|c| c["passed"] == true),
        "every check before the refusal passed: {checks:?}"
    );

    // An agreement in force then but not now: --on decides as of a date.
    let ended = |on: &str| {
        explain(
            &d,
            &[
                "--from",
                "northshire-cc",
                "--to",
                "old-partner",
                "--purpose",
                "child-protection-s47",
                "--lawful-basis",
                "public_task",
                "--marking",
                "OFFICIAL",
                "--on",
                on,
            ],
        )
    };
    assert_eq!(ended("2001-06-01").status.code(), Some(0));
    let now = ended("2026-11-22");
    assert_eq!(now.status.code(), Some(77));
    assert!(String::from_utf8_lossy(&now.stdout).contains("REFUSED: agreement_not_in_force"));

    // Nothing was sent or recorded: explain never opens the store.
    assert!(
        !d.state_dir.join("postern.db").exists(),
        "explain created no store"
    );
}

#[test]
fn explain_reports_a_description_that_is_not_a_share() {
    let d = Deployment::new();
    let out = explain(
        &d,
        &[
            "--from",
            "northshire-cc",
            "--to",
            "northshire-police",
            "--purpose",
            "child-protection-s47",
            "--lawful-basis",
            "because",
            "--marking",
            "OFFICIAL",
        ],
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lawful_basis"));
}

/// What a newcomer tried: explain on the demo's registry from a directory with no state, no
/// certificates and no keys. It reads only the registry; a passed check says what held; the
/// categories flag is `send`'s `--data-category`; and without a configuration it says where it
/// looked, as `serve` would look there.
#[test]
fn explain_reads_only_the_registry_and_says_what_held() {
    let empty = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str], config: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
        cmd.arg("explain")
            .args(args)
            .current_dir(empty.path())
            .env_remove("RUST_BACKTRACE")
            .env_remove("POSTERN_STATE_DIR")
            .env_remove("POSTERN_CONFIG_DIR");
        match config {
            Some(c) => cmd.args(["--config", c]),
            None => cmd.env("POSTERN_CONFIG_DIR", empty.path().join("etc-postern")),
        };
        cmd.output().expect("run postern explain")
    };
    let share = [
        "--from",
        "riverside-youth",
        "--to",
        "northshire-mash",
        "--purpose",
        "safeguarding-referral",
        "--lawful-basis",
        "legitimate_interests",
        "--marking",
        "OFFICIAL-SENSITIVE PERSONAL",
        "--data-category",
        "personal",
    ];
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo");
    let out = run(&share, Some(demo));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().nth(1).expect("a check");
    assert!(
        first.starts_with("  pass: the sender is Riverside Youth Club"),
        "a pass says what held: {text}"
    );
    assert!(!text.contains("pass sender_not_registered"), "{text}");
    assert!(text.contains("ALLOWED:"), "{text}");
    assert!(
        std::fs::read_dir(empty.path())
            .expect("dir")
            .next()
            .is_none(),
        "explain wrote nothing"
    );

    // Without --config it reads POSTERN_CONFIG_DIR (else /etc/postern), like serve.
    let out = run(&share, None);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no configuration directory at") && err.contains("etc-postern"),
        "{err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "one error, not one per key file: {err}"
    );
}
