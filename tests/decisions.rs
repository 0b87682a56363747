//! Decisions recorded without a share, over real sockets and real mutual TLS: a practitioner's
//! decision not to share (`POST /v1/decisions`, `postern decline`), and the rationale of an urgent
//! share added after it by its sender (`POST /v1/transfers/{id}/rationale`, `postern rationale`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::process::Command;

use bytes::Bytes;
use common::{Deployment, contains, db_bytes, envelope, json, payload, submit};
use postern_gateway::client::{Answer, Connection};
use serde_json::{Value, json};

/// A complete decision from the council: it considered sharing with the police and the youth
/// club, and decided not to.
fn decision(patch: Value) -> Value {
    let mut v = json!({
        "recipients": ["northshire-police", "riverside-youth"],
        "purpose": "child-protection-s47",
        "reasons": "REASONS-SENTINEL: sharing now would alert the household to the enquiry.",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire-cc.example"},
        "request": {"reference": "REQ-2026-0042", "requested": "REQUESTED-SENTINEL: case notes"},
        "subject_refs": ["nhs:9434765919", "case:SUBJECT-SENTINEL-77"],
        "data_categories": ["personal", "special_category"]
    });
    if let (Some(obj), Some(p)) = (v.as_object_mut(), patch.as_object()) {
        for (k, val) in p {
            if val.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

async fn decline(conn: &mut Connection, body: &Value, key: Option<&str>) -> Answer {
    conn.post_json(
        "/v1/decisions",
        Bytes::from(serde_json::to_vec(body).expect("json")),
        key,
    )
    .await
    .expect("post")
}

async fn rationale(conn: &mut Connection, id: &str, body: &Value) -> Answer {
    conn.post_json(
        &format!("/v1/transfers/{id}/rationale"),
        Bytes::from(serde_json::to_vec(body).expect("json")),
        None,
    )
    .await
    .expect("post")
}

fn problem(a: &Answer) -> (u16, String, Option<String>) {
    let v = json(a);
    (
        a.status,
        v["code"].as_str().unwrap_or_default().to_owned(),
        v["field"].as_str().map(str::to_owned),
    )
}

fn records_of(d: &Deployment, kind: &str) -> Vec<Value> {
    d.all_records()
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// `rationale_pending` of a transfer's `shared` facet row.
fn pending(d: &Deployment, id: &str) -> i64 {
    d.reader()
        .conn()
        .unwrap()
        .query_row(
            "SELECT rationale_pending FROM log_facets WHERE transfer_id = ?1 AND decision = 'shared'",
            [id],
            |r| r.get(0),
        )
        .expect("facets row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_not_to_share_is_recorded_with_its_reasons_and_recipients_and_no_payload() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let a = decline(&mut council, &decision(json!({})), None).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let body = json(&a);
    let id = body["decision_id"].as_str().expect("id").to_owned();
    assert_eq!(body["status"], "declined");
    assert_eq!(
        body["recipients"],
        json!(["northshire-police", "riverside-youth"])
    );
    assert_eq!(
        a.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/v1/decisions/{id}").as_str())
    );

    // One decision_declined record: the reasons, who was considered, who decided; no payload.
    let records = records_of(&d, "decision_declined");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["decision_id"], json!(id));
    assert_eq!(r["sender"]["org"], "northshire-cc");
    assert!(
        r["sender"]["certificate"]
            .as_str()
            .is_some_and(|c| c.starts_with("sha256:"))
    );
    assert_eq!(
        r["recipients"],
        json!(["northshire-police", "riverside-youth"])
    );
    assert_eq!(r["purpose"], "child-protection-s47");
    assert!(
        r["reasons"]
            .as_str()
            .is_some_and(|t| t.starts_with("REASONS-SENTINEL"))
    );
    assert_eq!(r["practitioner"]["role"], "Social worker");
    assert_eq!(r["request"]["reference"], "REQ-2026-0042");
    assert_eq!(
        r["data_categories"],
        json!(["personal", "special_category"])
    );
    assert_eq!(r["subject_ref_hashes"].as_array().map(Vec::len), Some(2));
    assert!(r.get("payload").is_none() && r.get("envelope").is_none());
    // A data protection officer finds it among the declined decisions, filed under the
    // recipients considered.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args([
            "log",
            "list",
            "--decision",
            "declined",
            "--recipient",
            "riverside-youth",
            "--json",
            "--state-dir",
        ])
        .arg(&d.state_dir)
        .output()
        .expect("postern log list");
    let rows: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["decision"], "declined");
    assert_eq!(rows[0]["transfer_id"], json!(id));
    assert_eq!(
        rows[0]["recipients"],
        json!(["northshire-police", "riverside-youth"])
    );
    assert_eq!(d.transfers(), 0, "nothing was queued for delivery");
    assert!(d.spool_files().is_empty());

    // Filed for searching: decision `declined`, under each recipient considered.
    let reader = d.reader();
    let (decision, sender, purpose): (String, String, String) = reader
        .conn()
        .unwrap()
        .query_row(
            "SELECT decision, sender, purpose FROM log_facets WHERE transfer_id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("facets");
    assert_eq!(
        (decision.as_str(), sender.as_str(), purpose.as_str()),
        ("declined", "northshire-cc", "child-protection-s47")
    );
    let recipients: Vec<String> = reader
        .conn()
        .unwrap()
        .prepare(
            "SELECT r.recipient FROM log_recipients r JOIN log_facets f ON f.seq = r.seq WHERE f.transfer_id = ?1 ORDER BY r.recipient",
        )
        .expect("query")
        .query_map([&id], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("recipients");
    assert_eq!(recipients, ["northshire-police", "riverside-youth"]);

    // A subject access request finds the decision not to share alongside the shares: the same
    // person's hash files both.
    let shared = submit(&mut council, &envelope(json!({})), payload(1000, 1), None).await;
    assert_eq!(shared.status, 202);
    let kinds: Vec<String> = reader
        .conn()
        .unwrap()
        .prepare(
            "SELECT l.kind FROM log_subjects s JOIN log l ON l.seq = s.seq WHERE s.subject_hash = ?1 ORDER BY l.seq",
        )
        .expect("query")
        .query_map([r["subject_ref_hashes"][0].as_str().expect("hash")], |row| {
            row.get(0)
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("kinds");
    assert_eq!(kinds, ["decision_declined", "transfer_accepted"]);
    // Subject references are never stored in clear.
    let db = db_bytes(&d.state_dir);
    assert!(!contains(&db, b"SUBJECT-SENTINEL-77"));
    assert!(!contains(&db, b"9434765919"));

    // The deciding organisation reads its decision back; to anyone else it does not exist.
    let got = council
        .get(&format!("/v1/decisions/{id}"))
        .await
        .expect("get");
    assert_eq!(got.status, 200);
    assert_eq!(json(&got), *r);
    let mut police = d.connect(server.addr, "northshire-police").await;
    let other = police
        .get(&format!("/v1/decisions/{id}"))
        .await
        .expect("get");
    assert_eq!(
        problem(&other),
        (404, "decision_not_found".to_owned(), Some("id".to_owned()))
    );
    // A transfer id is not a decision id.
    let transfer_id = json(&shared)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let not_a_decision = council
        .get(&format!("/v1/decisions/{transfer_id}"))
        .await
        .expect("get");
    assert_eq!(not_a_decision.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_decision_is_refused_with_every_field_error_and_nothing_recorded() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;

    let a = decline(
        &mut council,
        &json!({"subject_refs": ["nhs:9434765918"], "recipients": ["northshire-police", "nobody-here", "northshire-cc"], "purpose": "not-a-purpose"}),
        None,
    )
    .await;
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    let p = json(&a);
    assert_eq!(p["code"], "invalid_decision");
    assert_eq!(p["title"], "Invalid decision");
    let errors: Vec<(String, String)> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (field, code) in [
        ("recipients[1]", "invalid_value"),
        ("recipients[2]", "invalid_value"),
        ("purpose", "invalid_value"),
        ("reasons", "missing_field"),
        ("practitioner", "missing_field"),
        ("subject_refs[0]", "invalid_value"),
    ] {
        assert!(
            errors.contains(&(field.to_owned(), code.to_owned())),
            "{field} {code} not in {errors:?}"
        );
    }
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert_eq!(p["field"], "recipients[1]");
    assert!(
        !String::from_utf8_lossy(&a.body).contains("9434765918")
            && !String::from_utf8_lossy(&a.body).contains("nobody-here"),
        "the answer echoes nothing submitted: {}",
        String::from_utf8_lossy(&a.body)
    );

    // Not JSON, not declared as JSON, an unknown field, a payload smuggled in.
    let raw = council
        .raw(
            "POST",
            "/v1/decisions",
            &[("content-type", "application/json")],
            Bytes::from_static(b"{\"recipients\": ["),
        )
        .await
        .expect("post");
    assert_eq!(problem(&raw), (400, "malformed_request".to_owned(), None));
    let raw = council
        .raw(
            "POST",
            "/v1/decisions",
            &[("content-type", "text/plain")],
            Bytes::from(serde_json::to_vec(&decision(json!({}))).expect("json")),
        )
        .await
        .expect("post");
    assert_eq!(
        problem(&raw),
        (415, "unsupported_media_type".to_owned(), None)
    );
    let a = decline(
        &mut council,
        &decision(json!({"payload": "PAYLOAD-SENTINEL"})),
        None,
    )
    .await;
    assert_eq!(
        problem(&a),
        (
            422,
            "invalid_decision".to_owned(),
            Some("payload".to_owned())
        )
    );
    let big = decision(json!({"reasons": "x".repeat(70 * 1024)}));
    assert_eq!(
        problem(&decline(&mut council, &big, None).await),
        (413, "body_too_large".to_owned(), None)
    );

    assert!(records_of(&d, "decision_declined").is_empty());
    assert!(
        !contains(&db_bytes(&d.state_dir), b"PAYLOAD-SENTINEL"),
        "a refused body leaves nothing behind"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_retried_with_its_idempotency_key_is_recorded_once() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let body = decision(json!({}));
    let first = decline(&mut council, &body, Some("decline-1")).await;
    assert_eq!(first.status, 201);
    let again = decline(&mut council, &body, Some("decline-1")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "the first answer, again");
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.headers.get("location"), first.headers.get("location"));
    let other = decline(
        &mut council,
        &decision(json!({"reasons": "Different reasons."})),
        Some("decline-1"),
    )
    .await;
    assert_eq!(
        problem(&other),
        (
            422,
            "idempotency_key_reused".to_owned(),
            Some("Idempotency-Key".to_owned())
        )
    );
    assert_eq!(records_of(&d, "decision_declined").len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_share_gets_its_rationale_later_from_its_sender_once() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;

    // Shared first, without a justification.
    let urgent = envelope(json!({
        "justification": null,
        "urgency": {"level": "urgent", "reason": "The child is at immediate risk tonight."}
    }));
    let a = submit(&mut council, &urgent, payload(2000, 2), None).await;
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let id = json(&a)["transfer_id"].as_str().expect("id").to_owned();
    let accepted = &records_of(&d, "transfer_accepted")[0];
    assert_eq!(accepted["envelope"]["justification"], "");
    assert_eq!(pending(&d, &id), 1, "the rationale is to follow");
    // The data protection officer's report lists it as overdue once the due time has passed
    // (0 hours here), and not before (a day).
    let overdue = |hours: &str| -> Vec<String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args([
                "log",
                "report",
                "--json",
                "--rationale-due-hours",
                hours,
                "--state-dir",
            ])
            .arg(&d.state_dir)
            .output()
            .expect("postern log report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).expect("json");
        r["rationale_overdue"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|o| o["transfer_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(overdue("0"), std::slice::from_ref(&id));
    assert!(overdue("24").is_empty());

    // Another organisation is told the transfer does not exist, as for its status.
    let mut police = d.connect(server.addr, "northshire-police").await;
    let body =
        json!({"justification": "RATIONALE-SENTINEL: a strategy discussion could not wait."});
    assert_eq!(
        problem(&rationale(&mut police, &id, &body).await),
        (404, "transfer_not_found".to_owned(), Some("id".to_owned()))
    );
    // An incomplete rationale is refused with its fields.
    let a = rationale(
        &mut council,
        &id,
        &json!({"practitioner": {"name": "Sam Patel"}}),
    )
    .await;
    assert_eq!(
        problem(&a),
        (
            422,
            "invalid_rationale".to_owned(),
            Some("justification".to_owned())
        )
    );
    assert_eq!(json(&a)["errors"].as_array().map(Vec::len), Some(3));
    assert_eq!(pending(&d, &id), 1);

    // The sender adds it: recorded, and no longer pending.
    let a = rationale(
        &mut council,
        &id,
        &json!({
            "justification": "RATIONALE-SENTINEL: a strategy discussion could not wait.",
            "practitioner": {"name": "Alex Moore", "role": "Team manager", "contact": "alex.moore@northshire-cc.example"}
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(json(&a)["transfer_id"], json!(id));
    assert_eq!(json(&a)["status"], "rationale_recorded");
    assert_eq!(pending(&d, &id), 0);
    assert!(overdue("0").is_empty(), "no longer overdue once added");
    let added = records_of(&d, "rationale_added");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["transfer_id"], json!(id));
    assert_eq!(added[0]["sender"]["org"], "northshire-cc");
    assert_eq!(added[0]["practitioner"]["name"], "Alex Moore");
    assert!(
        added[0]["justification"]
            .as_str()
            .is_some_and(|j| j.starts_with("RATIONALE-SENTINEL"))
    );
    // Filed under the transfer, so `postern log show ID` lists it with the share.
    let n: i64 = d
        .reader()
        .conn()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM log WHERE transfer_id = ?1 AND kind = 'rationale_added'",
            [&id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1);

    // A second rationale is refused, and changes nothing.
    assert_eq!(
        problem(&rationale(&mut council, &id, &body).await),
        (
            409,
            "rationale_already_recorded".to_owned(),
            Some("id".to_owned())
        )
    );
    assert_eq!(records_of(&d, "rationale_added").len(), 1);

    // An urgent share that gave its justification has nothing to follow; a routine one is not
    // urgent at all; an unknown id is not found.
    let given = envelope(json!({"urgency": {"level": "urgent", "reason": "Immediate risk."}}));
    let a = submit(&mut council, &given, payload(10, 3), None).await;
    let given_id = json(&a)["transfer_id"].as_str().expect("id").to_owned();
    assert_eq!(pending(&d, &given_id), 0);
    assert_eq!(
        problem(&rationale(&mut council, &given_id, &body).await).1,
        "rationale_already_recorded"
    );
    let a = submit(&mut council, &envelope(json!({})), payload(10, 4), None).await;
    let routine = json(&a)["transfer_id"].as_str().expect("id").to_owned();
    assert_eq!(
        problem(&rationale(&mut council, &routine, &body).await),
        (422, "transfer_not_urgent".to_owned(), Some("id".to_owned()))
    );
    let nobody = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        problem(&rationale(&mut council, &nobody, &body).await).0,
        404
    );
    assert_eq!(records_of(&d, "rationale_added").len(), 1);
    server.stop().await;
}

/// `postern decline` and `postern rationale`, with the real binary against the real binary,
/// whose logs carry neither the reasons nor the rationale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_records_both_and_the_logs_keep_their_text_out() {
    let d = Deployment::new();
    let server = d.spawn_with_env(&[("POSTERN_LOG", "debug")]);
    let cli = |org: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(args)
            .arg("--server")
            .arg(format!("https://localhost:{}", server.addr.port()))
            .arg("--ca")
            .arg(d.ca_path())
            .arg("--identity")
            .arg(d.identity_path(org))
            .env_remove("POSTERN_SERVER")
            .output()
            .expect("run postern");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = cli(
        "northshire-cc",
        &[
            "decline",
            "--to",
            "northshire-police",
            "--purpose",
            "child-protection-s47",
            "--reasons",
            "REASONS-SENTINEL: not proportionate at this stage.",
            "--practitioner-name",
            "Sam Patel",
            "--practitioner-role",
            "Social worker",
            "--practitioner-contact",
            "sam.patel@northshire-cc.example",
            "--subject",
            "case:SUBJECT-SENTINEL-77",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.parse::<uuid::Uuid>().is_ok(),
        "the decision id: {stdout}"
    );
    assert!(stderr.contains("northshire-police"), "{stderr}");
    let (code, _, stderr) = cli("northshire-cc", &["decline", "--to", "northshire-police"]);
    assert_eq!(code, Some(65), "an incomplete decision: {stderr}");
    assert!(
        stderr.contains("invalid_decision") && stderr.contains("reasons"),
        "{stderr}"
    );

    let mut council = d.connect(server.addr, "northshire-cc").await;
    let urgent = envelope(json!({
        "justification": null,
        "urgency": {"level": "urgent", "reason": "Immediate risk."}
    }));
    let id = json(&submit(&mut council, &urgent, payload(500, 5), None).await)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let args = [
        "rationale",
        id.as_str(),
        "--justification",
        "RATIONALE-SENTINEL: could not wait for the strategy meeting.",
    ];
    let (code, stdout, stderr) = cli("northshire-police", &args);
    assert_eq!(code, Some(1), "another organisation: not found: {stderr}");
    assert!(stderr.contains("transfer_not_found"), "{stderr}");
    let (code, stdout_ok, stderr) = cli("northshire-cc", &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout_ok, id);
    let (code, _, stderr) = cli("northshire-cc", &args);
    assert_eq!(code, Some(65), "a second rationale: {stderr}");
    assert!(stderr.contains("rationale_already_recorded"), "{stderr}");
    assert!(stdout.is_empty());

    // The export gives the reasons and the later rationale columns of their own.
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "export", "--format", "csv", "--state-dir"])
        .arg(&d.state_dir)
        .output()
        .expect("postern log export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut csv = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = csv.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("row")).collect();
    let declined = rows
        .iter()
        .find(|r| &r[col("decision")] == "declined")
        .expect("the declined decision");
    assert_eq!(
        &declined[col("reasons")],
        "REASONS-SENTINEL: not proportionate at this stage."
    );
    let urgent = rows
        .iter()
        .find(|r| r[col("transfer_id")] == *id)
        .expect("the urgent share");
    assert_eq!(
        &urgent[col("later_rationale")],
        "RATIONALE-SENTINEL: could not wait for the strategy meeting."
    );
    assert_eq!(&urgent[col("justification")], "");

    let logs = server.terminate();
    assert!(
        logs.contains("decision not to share recorded")
            && logs.contains("rationale of an urgent share recorded"),
        "the logs say what happened:\n{logs}"
    );
    for secret in [
        "REASONS-SENTINEL",
        "RATIONALE-SENTINEL",
        "SUBJECT-SENTINEL",
        "Immediate risk",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appeared in the logs:\n{logs}"
        );
    }
    assert_eq!(records_of(&d, "decision_declined").len(), 1);
    assert_eq!(records_of(&d, "rationale_added").len(), 1);
}

/// `postern send` with flags alone, as a newcomer types it: every envelope field has a flag
/// (`--routine` among them), a refusal of incomplete flags names each flag once, not the JSON
/// path, and a reused envelope file does not rename the file actually shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_every_field_as_a_flag_and_names_the_flags_in_its_errors() {
    let d = Deployment::new();
    let server = d.spawn();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("strategy-notes.txt");
    std::fs::write(&file, b"Strategy discussion notes.").expect("write");
    let send = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("send")
            .args(args)
            .arg("--server")
            .arg(format!("https://localhost:{}", server.addr.port()))
            .arg("--ca")
            .arg(d.ca_path())
            .arg("--identity")
            .arg(d.identity_path("northshire-cc"))
            .arg(&file)
            .env_remove("POSTERN_SERVER")
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run postern send");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = [
        "--to",
        "northshire-police",
        "--purpose",
        "child-protection-s47",
        "--lawful-basis",
        "public_task",
        "--marking",
        "OFFICIAL-SENSITIVE PERSONAL",
    ];

    // Incomplete: each missing field once, by its flag.
    let (code, _, stderr) = send(&base);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.starts_with("Not accepted (invalid_envelope): 9 problems:"),
        "{stderr}"
    );
    for flag in [
        "`--justification`",
        "`--data-category`",
        "`--practitioner-name, --practitioner-role and --practitioner-contact`",
        "`--consent`",
        "`--subject-informed`",
        "`--routine or --urgent REASON` is required",
        "`--summary`",
        "`--retain-days or --retain-until`",
        "`--subject`",
    ] {
        assert_eq!(stderr.matches(flag).count(), 1, "{flag} once:\n{stderr}");
    }
    for path in [
        "`urgency`",
        "`disclosed_summary`",
        "`subject_refs`",
        "urgency:",
    ] {
        assert!(!stderr.contains(path), "no JSON path {path}:\n{stderr}");
    }

    // Complete, routine, by flags alone.
    let complete: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "--justification",
            "A disclosure at the club indicates a risk of significant harm.",
            "--data-category",
            "personal",
            "--practitioner-name",
            "Sam Patel",
            "--practitioner-role",
            "Social worker",
            "--practitioner-contact",
            "sam.patel@northshire-cc.example",
            "--consent",
            "not_sought",
            "--consent-reason",
            "Seeking consent may place the child at increased risk.",
            "--subject-informed",
            "no",
            "--not-informed-reason",
            "Telling the family may increase the risk.",
            "--routine",
            "--summary",
            "Strategy discussion notes, one page.",
            "--retain-days",
            "365",
            "--subject",
            "nhs:9434765919",
        ])
        .collect();
    let (code, id, stderr) = send(&complete);
    assert_eq!(code, Some(0), "{stderr}");
    let r = d
        .records()
        .into_iter()
        .find(|r| r["transfer_id"] == json!(id))
        .expect("the share's record");
    assert_eq!(r["envelope"]["urgency"]["status"], "routine", "{r}");
    assert_eq!(r["envelope"]["file_name"], "strategy-notes.txt");

    // --routine and --urgent together is a usage error.
    let mut both = complete.clone();
    both.extend(["--urgent", "Immediate risk."]);
    assert_eq!(send(&both).0, Some(2));

    // An envelope file kept from an earlier share names its file; the file shared wins.
    let reused = dir.path().join("envelope.json");
    std::fs::write(
        &reused,
        serde_json::to_vec(&envelope(json!({"file_name": "last-weeks-referral.pdf"})))
            .expect("json"),
    )
    .expect("write");
    let reused_arg = reused.display().to_string();
    let (code, id, stderr) = send(&["--envelope", &reused_arg]);
    assert_eq!(code, Some(0), "{stderr}");
    let r = d
        .records()
        .into_iter()
        .find(|r| r["transfer_id"] == json!(id))
        .expect("the share's record");
    assert_eq!(r["envelope"]["file_name"], "strategy-notes.txt", "{r}");
    drop(server);
}
