//! Requests for information: what a request is made of agrees with a real configuration (a
//! request body is validated, decided by the configured registry with the rules of a share
//! between the two organisations, and given a due date by the configured calendar), and a
//! request's whole life over the API between two organisations, over real sockets and mutual
//! TLS: asked, seen, answered by shares (linked both ways), declined, withdrawn, refused, and
//! kept from a third organisation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use bytes::Bytes;
use common::{Deployment, envelope, json, payload, submit};
use postern_gateway::client::{Answer, Connection};
use postern_gateway::domain::info_request::{self, InfoRequestError};
use postern_gateway::domain::policy::{Decision, Rule, evaluate_request};
use serde_json::{Value, json};
use time::macros::{date, datetime};

fn body(holder: &str, purpose: &str, basis: &str) -> Vec<u8> {
    json!({
        "holder": holder,
        "purpose": purpose,
        "lawful_basis": basis,
        "requested": "Any contact with the family since January.",
        "grounds": "A strategy discussion is planned after a disclosure at school.",
        "subject_refs": ["nhs:943 476 5919"],
        "urgency": { "level": "routine" },
        "practitioner": { "name": "DC Lee", "role": "Detective constable", "contact": "lee@police.example" }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_request_is_validated_decided_by_the_registry_and_given_its_due_date() {
    // The demo's registry: its agreements, including the pilot that ended.
    let d = Deployment::new();
    for f in ["organisations.toml", "agreements.toml"] {
        std::fs::copy(format!("config/demo/{f}"), d.config_dir.join(f)).expect("copy");
    }
    let config = d.load();
    let registry = &config.registry;
    let police = "northshire-police".parse().unwrap();
    // In winter UTC is the local time in England and Wales, so the UTC day is the day received.
    let now = datetime!(2026-12-24 15:00 UTC);

    // The police ask the council, under the safeguarding protocol: allowed, and due fifteen
    // working days later by the built-in England and Wales calendar (Christmas, the substitute
    // Boxing Day and New Year's Day skipped).
    let r = info_request::parse_json(
        &body("northshire-cc", "child-protection-s47", "public_task"),
        &police,
    )
    .unwrap();
    let ev = evaluate_request(
        registry,
        &police,
        &r.holder,
        &r.purpose,
        r.lawful_basis,
        now,
    );
    match ev.decision {
        Decision::Accept(a) => {
            assert_eq!(a[0].recipient, r.holder);
            assert_eq!(a[0].agreement.as_str(), "northshire-safeguarding-isp");
        }
        Decision::Refuse(r) => panic!("refused: {}", r.detail),
    }
    let requests = &config.daemon.requests;
    let due = requests
        .calendar
        .working_days_after(now.date(), requests.working_days);
    assert_eq!(due.date, date!(2027 - 01 - 19));
    assert!(due.covered);

    // The MASH asks the academy for crime prevention (s.115): the two share under the
    // safeguarding protocol, which does not cover that purpose, so the request is refused by
    // the rule a share between them would be refused by, naming the agreement.
    let mash = "northshire-mash".parse().unwrap();
    let r = info_request::parse_json(
        &body("millbrook-academy", "crime-prevention-s115", "public_task"),
        &mash,
    )
    .unwrap();
    let ev = evaluate_request(registry, &mash, &r.holder, &r.purpose, r.lawful_basis, now);
    match ev.decision {
        Decision::Refuse(refusal) => {
            assert_eq!(refusal.rule, Rule::PurposeInAgreement, "{}", refusal.detail);
            assert_eq!(
                refusal.agreement.map(|a| a.to_string()).as_deref(),
                Some("northshire-safeguarding-isp")
            );
        }
        Decision::Accept(_) => panic!("a request for a purpose no agreement permits was allowed"),
    }
    // And a voluntary organisation cannot ask for a statutory-only purpose.
    let youth = "riverside-youth".parse().unwrap();
    let ev = evaluate_request(
        registry,
        &youth,
        &"northshire-police".parse().unwrap(),
        &"crime-prevention-s115".parse().unwrap(),
        postern_gateway::domain::lawful::LawfulBasis::PublicTask,
        now,
    );
    assert!(matches!(ev.decision, Decision::Refuse(ref r) if r.rule == Rule::StatutoryOnlySender));

    // An organisation cannot ask itself, and the body's mistakes come back all at once.
    match info_request::parse_json(&body("northshire-police", "", "maybe"), &police) {
        Err(InfoRequestError::Invalid(errors)) => {
            let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["holder", "purpose", "lawful_basis"]);
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

async fn ask(conn: &mut Connection, body: &[u8], key: Option<&str>) -> Answer {
    conn.post_json("/v1/requests", Bytes::copy_from_slice(body), key)
        .await
        .expect("post")
}

async fn get(conn: &mut Connection, path: &str) -> Answer {
    conn.get(path).await.expect("get")
}

fn records_of(d: &Deployment, kind: &str) -> Vec<Value> {
    d.all_records()
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// A share from the council to the police that answers `request` (`in_full` or `in_part`).
fn answering(request: &str, extent: &str) -> Value {
    envelope(json!({ "request": { "request_id": request, "answer": extent } }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_asked_seen_answered_in_part_then_in_full_and_linked_both_ways() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let mut youth = d.connect(server.addr, "riverside-youth").await;

    // The police ask the council in writing.
    let a = ask(
        &mut police,
        &body("northshire-cc", "child-protection-s47", "public_task"),
        Some("ask-1"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let made = json(&a);
    let id = made["request_id"].as_str().unwrap().to_owned();
    assert_eq!(made["status"], "open");
    assert_eq!(made["holder"], "northshire-cc");
    assert_eq!(made["agreement"], "test-isp");
    assert_eq!(
        a.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/v1/requests/{id}").as_str())
    );
    // Due fifteen working days after the (UK) day it was received, by the built-in calendar.
    let received = time::OffsetDateTime::parse(
        made["received_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let settings = postern_gateway::config::RequestSettings::builtin().unwrap();
    let clock = info_request::Clock {
        calendar: &settings.calendar,
        working_days: 15,
        urgent_hours: 24,
    };
    let due = clock.due(
        received,
        &postern_gateway::domain::envelope::Urgency::Routine,
    );
    assert_eq!(made["due_date"], json!(due.date.to_string()));
    // The same key and body again: the same answer, replayed; nothing more recorded.
    let again = ask(
        &mut police,
        &body("northshire-cc", "child-protection-s47", "public_task"),
        Some("ask-1"),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(json(&again)["request_id"], json!(id));
    assert_eq!(records_of(&d, "request_made").len(), 1);

    // The council sees it among the requests it received, open; the police among those made.
    let listed = json(&get(&mut council, "/v1/requests?open=true").await);
    assert_eq!(
        listed["requests"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["requests"][0]["request_id"], json!(id));
    assert_eq!(listed["requests"][0]["status"], "open");
    assert_eq!(listed["requests"][0]["requester"], "northshire-police");
    let made_list = json(&get(&mut police, "/v1/requests?side=made").await);
    assert_eq!(made_list["requests"][0]["request_id"], json!(id));
    assert_eq!(
        json(&get(&mut police, "/v1/requests").await)["requests"],
        json!([]),
        "the police were asked nothing"
    );
    // The detail: what, why, who it is about (in clear, for the holder to find), who asked.
    let view = json(&get(&mut council, &format!("/v1/requests/{id}")).await);
    assert_eq!(view["status"], "open");
    assert_eq!(
        view["requested"],
        "Any contact with the family since January."
    );
    assert_eq!(view["subject_refs"], json!(["nhs:9434765919"]));
    assert_eq!(view["practitioner"]["name"], "DC Lee");
    assert_eq!(view["answers"], json!([]));

    // A third organisation can neither see it nor answer it.
    let other = get(&mut youth, &format!("/v1/requests/{id}")).await;
    assert_eq!(
        (other.status, json(&other)["code"].clone()),
        (404, json!("request_not_found"))
    );
    assert_eq!(
        json(&get(&mut youth, "/v1/requests?side=made").await)["requests"],
        json!([])
    );
    let forged = submit(
        &mut youth,
        &envelope(json!({ "recipients": ["northshire-police"], "request": { "request_id": id } })),
        payload(100, 1),
        None,
    )
    .await;
    assert_eq!(
        forged.status,
        422,
        "{}",
        String::from_utf8_lossy(&forged.body)
    );
    assert_eq!(json(&forged)["field"], "request.request_id");
    // Nor can the council answer it to someone other than the requester.
    let astray = submit(
        &mut council,
        &envelope(json!({ "recipients": ["northshire-health"], "request": { "request_id": id } })),
        payload(100, 2),
        None,
    )
    .await;
    assert_eq!(astray.status, 422);
    assert_eq!(json(&astray)["field"], "request.request_id");

    // The council answers in part: the request is partly answered, and the share says so.
    let part = submit(
        &mut council,
        &answering(&id, "in_part"),
        payload(1000, 3),
        None,
    )
    .await;
    assert_eq!(part.status, 202, "{}", String::from_utf8_lossy(&part.body));
    let part_id = json(&part)["transfer_id"].as_str().unwrap().to_owned();
    let view = json(&get(&mut police, &format!("/v1/requests/{id}")).await);
    assert_eq!(view["status"], "partly_answered");
    assert_eq!(view["answers"][0]["id"], json!(part_id));
    assert_eq!(view["answers"][0]["answer"], "in_part");
    assert!(view["first_answer_at"].is_string() && view["closed_at"].is_null());
    // Linked the other way: the share's status names the request, and its record says what was
    // requested in the request's own words.
    let status = json(&get(&mut council, &format!("/v1/transfers/{part_id}")).await);
    assert_eq!(status["answers_request"], json!(id));
    let shared = records_of(&d, "transfer_accepted");
    assert_eq!(shared[0]["envelope"]["request"]["request_id"], json!(id));
    assert_eq!(
        shared[0]["envelope"]["request"]["requested"],
        "Any contact with the family since January."
    );

    // Then in full: answered, closed, and its subjects no longer kept in clear.
    let full = submit(
        &mut council,
        &answering(&id, "in_full"),
        payload(1000, 4),
        None,
    )
    .await;
    assert_eq!(full.status, 202, "{}", String::from_utf8_lossy(&full.body));
    let view = json(&get(&mut police, &format!("/v1/requests/{id}")).await);
    assert_eq!(view["status"], "answered");
    assert_eq!(view["answers"].as_array().map(Vec::len), Some(2));
    assert!(view["closed_at"].is_string());
    assert!(view.get("subject_refs").is_none(), "{view}");
    let changes: Vec<(Value, Value)> = records_of(&d, "request_answered")
        .iter()
        .map(|r| (r["answer"].clone(), r["state"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (json!("in_part"), json!("partly_answered")),
            (json!("in_full"), json!("answered"))
        ]
    );
    // A closed request takes no more answers.
    let late = submit(
        &mut council,
        &answering(&id, "in_part"),
        payload(100, 5),
        None,
    )
    .await;
    assert_eq!(late.status, 422);
    assert!(
        json(&late)["detail"]
            .as_str()
            .unwrap()
            .contains("answered already")
    );
    assert!(
        json(&get(&mut council, "/v1/requests?open=true").await)["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A data protection officer finds the request by the child's reference, with the shares
    // that answered it, and lists the requests made.
    let subject = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "subject", "nhs:9434765919", "--json", "--state-dir"])
        .arg(&d.state_dir)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .unwrap();
    let found: Vec<Value> = String::from_utf8_lossy(&subject.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<&str> = found
        .iter()
        .filter_map(|r| r["decision"].as_str())
        .collect();
    assert_eq!(decisions, ["requested", "shared", "shared"], "{found:?}");
    assert_eq!(found[0]["transfer_id"], json!(id));

    // The log still verifies, and no subject reference is in the database in clear.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "verify", "--json", "--state-dir"])
        .arg(&d.state_dir)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    server.stop().await;
    assert!(!common::contains(
        &common::db_bytes(&d.state_dir),
        b"9434765919"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_declined_withdrawn_or_refused_and_each_is_recorded() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let ok = |a: &Answer| {
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        json(a)["request_id"].as_str().unwrap().to_owned()
    };

    // Declined: the council records a decision not to share that names the request.
    let first = ok(&ask(
        &mut police,
        &body("northshire-cc", "child-protection-s47", "public_task"),
        None,
    )
    .await);
    let decision = json!({
        "recipients": ["northshire-police"],
        "purpose": "child-protection-s47",
        "reasons": "Sharing now would alert the household to the enquiry.",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam@northshire-cc.example"},
        "request": {"request_id": first},
        "subject_refs": ["nhs:9434765919"]
    });
    let a = council
        .post_json("/v1/decisions", Bytes::from(decision.to_string()), None)
        .await
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let decision_id = json(&a)["decision_id"].clone();
    let view = json(&get(&mut police, &format!("/v1/requests/{first}")).await);
    assert_eq!(view["status"], "declined");
    assert_eq!(
        view["answers"],
        json!([{ "id": decision_id, "kind": "decline", "at": view["closed_at"] }])
    );
    let declined = records_of(&d, "decision_declined");
    assert_eq!(declined[0]["request"]["request_id"], json!(first));
    assert!(
        declined[0]["request"].get("answer").is_none(),
        "a decline answers no part of a request: {}",
        declined[0]
    );
    assert_eq!(records_of(&d, "request_declined")[0]["state"], "declined");
    // A decision declines the whole request: it cannot say how far it answers.
    let mut partial = decision.clone();
    partial["request"]["answer"] = json!("in_part");
    let a = council
        .post_json("/v1/decisions", Bytes::from(partial.to_string()), None)
        .await
        .unwrap();
    assert_eq!(
        (a.status, json(&a)["field"].clone()),
        (422, json!("request.answer"))
    );

    // Withdrawn: only by the requester, and only once.
    let second = ok(&ask(
        &mut police,
        &body("northshire-cc", "child-protection-s47", "public_task"),
        None,
    )
    .await);
    let path = format!("/v1/requests/{second}/withdraw");
    let a = council.post_empty(&path).await.unwrap();
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (403, json!("not_the_requester"))
    );
    let a = police
        .post_json(
            &path,
            Bytes::from(json!({"reason": "The child has been found."}).to_string()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(json(&a)["status"], "withdrawn");
    let a = police.post_empty(&path).await.unwrap();
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (409, json!("request_closed"))
    );
    let w = records_of(&d, "request_withdrawn");
    assert_eq!(
        (w.len(), w[0]["reason"].clone()),
        (1, json!("The child has been found."))
    );

    // Refused: the police have no agreement with the old partner. Answered 403 with the
    // rule, and recorded with it, under the id the answer gives.
    let a = ask(
        &mut police,
        &body("old-partner", "child-protection-s47", "public_task"),
        None,
    )
    .await;
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    let p = json(&a);
    assert_eq!(p["field"], "holder");
    let refused = records_of(&d, "request_refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["request_id"], p["request_id"]);
    assert_eq!(refused[0]["refusal"]["code"], p["code"]);
    assert_eq!(refused[0]["holder"], "old-partner");
    // An invalid request: every field at fault, nothing recorded.
    let a = ask(&mut police, br#"{"holder": "northshire-police"}"#, None).await;
    assert_eq!(a.status, 422);
    let p = json(&a);
    assert_eq!(p["code"], "invalid_information_request");
    assert_eq!(p["errors"][0]["field"], "holder");
    assert_eq!(records_of(&d, "request_made").len(), 2);

    // One left open: not overdue now, overdue in the report as of a moment after its due date
    // (time passed in), listed under the organisation asked.
    let third = ok(&ask(
        &mut police,
        &body("northshire-cc", "child-protection-s47", "public_task"),
        None,
    )
    .await);
    let report = |as_of: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_postern"));
        cmd.args(["log", "report", "--json", "--state-dir"])
            .arg(&d.state_dir)
            .env_remove("POSTERN_STATE_DIR");
        if let Some(t) = as_of {
            cmd.args(["--as-of", t]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["requests"].clone()
    };
    let now = report(None);
    assert_eq!(now["overdue"], json!([]));
    let cc = &now["by_holder"]["northshire-cc"];
    assert_eq!(
        (
            cc["received"].clone(),
            cc["answered"].clone(),
            cc["overdue"].clone()
        ),
        (json!(3), json!(1), json!(0))
    );
    assert_eq!(cc["withdrawn"], 1);
    assert_eq!(
        cc["median_working_days"],
        json!(0.0),
        "declined the day it was asked"
    );
    let later = report(Some("2099-01-01"));
    assert_eq!(later["overdue"][0]["request_id"], json!(third));
    assert_eq!(later["by_holder"]["northshire-cc"]["overdue"], 1);
    server.stop().await;
}

/// `postern request`, `request list`, `show` and `withdraw`, and `postern decline --answers`,
/// with the real binary against the real binary, whose logs carry neither what was requested,
/// nor its grounds, nor who it is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_asks_follows_declines_and_withdraws_and_the_logs_keep_the_text_out() {
    let d = Deployment::new();
    let server = d.spawn_with_env(&[("POSTERN_LOG", "debug")]);
    let cli = |org: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
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
    let ask = [
        "request",
        "--to",
        "northshire-cc",
        "--purpose",
        "child-protection-s47",
        "--lawful-basis",
        "public_task",
        "--requested",
        "REQUESTED-SENTINEL: contacts with the family",
        "--grounds",
        "GROUNDS-SENTINEL: a disclosure at school",
        "--subject",
        "case:SUBJECT-SENTINEL-77",
        "--practitioner-name",
        "DC Lee",
        "--practitioner-role",
        "Detective constable",
        "--practitioner-contact",
        "lee@police.example",
    ];
    let (code, id, stderr) = cli("northshire-police", &ask);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(id.parse::<uuid::Uuid>().is_ok(), "the request id: {id}");
    assert!(stderr.contains("due by the end of"), "{stderr}");
    // Incomplete: every missing field, named by its flag; exit 65.
    let (code, _, stderr) = cli("northshire-police", &["request", "--to", "northshire-cc"]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("--grounds") && stderr.contains("--purpose"),
        "{stderr}"
    );

    // The council lists and reads it; the police list theirs.
    let (code, list, stderr) = cli("northshire-cc", &["request", "list", "--open"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        list.contains(&id) && list.contains("from northshire-police"),
        "{list}"
    );
    let (code, shown, _) = cli("northshire-cc", &["request", "show", &id]);
    assert_eq!(code, Some(0));
    assert!(
        shown.contains("case:SUBJECT-SENTINEL-77") && shown.contains("REQUESTED-SENTINEL"),
        "{shown}"
    );
    // Declined from the command line.
    let (code, _, stderr) = cli(
        "northshire-cc",
        &[
            "decline",
            "--to",
            "northshire-police",
            "--reasons",
            "Not proportionate at this stage.",
            "--practitioner-name",
            "Sam Patel",
            "--practitioner-role",
            "Social worker",
            "--practitioner-contact",
            "sam@northshire-cc.example",
            "--answers",
            &id,
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (_, list, _) = cli("northshire-police", &["request", "list", "--made"]);
    assert!(list.contains(&id) && list.contains("declined"), "{list}");
    // Withdrawn: a second request, by the police only.
    let (_, second, _) = cli("northshire-police", &ask);
    let (code, _, stderr) = cli("northshire-cc", &["request", "withdraw", &second]);
    assert_eq!(code, Some(77), "the holder may not withdraw: {stderr}");
    assert!(stderr.contains("not_the_requester"), "{stderr}");
    let (code, _, stderr) = cli(
        "northshire-police",
        &["request", "withdraw", &second, "--reason", "Found."],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = cli("northshire-police", &["request", "withdraw", &second]);
    assert_eq!(code, Some(65), "already withdrawn: {stderr}");
    let (code, _, stderr) = cli("riverside-youth", &["request", "show", &id]);
    assert_eq!(code, Some(1), "another organisation: not found: {stderr}");

    let logs = server.terminate();
    assert!(logs.contains("request for information made"), "{logs}");
    for secret in ["REQUESTED-SENTINEL", "GROUNDS-SENTINEL", "SUBJECT-SENTINEL"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

/// Feedback that closes the loop: a recipient the transfer was delivered to tells its sender
/// what became of it (API and command line); the sender sees it in the transfer's status; no
/// one else may give it; the report counts the share of transfers with feedback by recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_tells_the_sender_what_became_of_a_transfer() {
    let d = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut youth = d.connect(server.addr, "riverside-youth").await;
    let shared = submit(&mut council, &envelope(json!({})), payload(500, 9), None).await;
    assert_eq!(shared.status, 202);
    let id = json(&shared)["transfer_id"].as_str().unwrap().to_owned();
    common::wait_recipient(&mut council, &id, "northshire-police", "delivered", |s| {
        s["state"] == "delivered"
    })
    .await;
    let path = format!("/v1/transfers/{id}/feedback");
    let give = |body: Value| Bytes::from(body.to_string());

    // Neither the sender nor a stranger may give it: to them the transfer does not exist.
    for conn in [&mut council, &mut youth] {
        let a = conn
            .post_json(&path, give(json!({"status": "received_and_read"})), None)
            .await
            .unwrap();
        assert_eq!(
            (a.status, json(&a)["code"].clone()),
            (404, json!("transfer_not_found"))
        );
    }
    // Invalid: every problem at once, nothing recorded.
    let a = police
        .post_json(
            &path,
            give(json!({"status": "thanks", "comment": "x".repeat(501)})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 422);
    let p = json(&a);
    assert_eq!(p["code"], "invalid_feedback");
    assert_eq!(p["errors"].as_array().map(Vec::len), Some(2));

    // Read first, acted on later (from the command line).
    let a = police
        .post_json(&path, give(json!({"status": "received_and_read"})), None)
        .await
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args([
            "feedback",
            &id,
            "--status",
            "assessment_started",
            "--comment",
            "COMMENT-SENTINEL: strategy meeting on Friday.",
            "--server",
            &format!("https://localhost:{}", server.addr.port()),
            "--ca",
        ])
        .arg(d.ca_path())
        .arg("--identity")
        .arg(d.identity_path("northshire-police"))
        .env_remove("POSTERN_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The sender sees both, in order, with who gave them.
    let status = json(&council.get(&format!("/v1/transfers/{id}")).await.unwrap());
    let feedback = status["feedback"].as_array().expect("feedback");
    assert_eq!(feedback.len(), 2, "{status}");
    assert_eq!(feedback[0]["from"], "northshire-police");
    assert_eq!(feedback[0]["status"], "received_and_read");
    assert_eq!(feedback[1]["status"], "assessment_started");
    assert!(
        feedback[1]["comment"]
            .as_str()
            .unwrap()
            .starts_with("COMMENT-SENTINEL")
    );
    let records: Vec<Value> = d
        .all_records()
        .into_iter()
        .filter(|r| r["kind"] == "feedback_given")
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["to"], "northshire-cc");

    // The report: one share to the police, with feedback; none to anyone else here.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "report", "--json", "--state-dir"])
        .arg(&d.state_dir)
        .env_remove("POSTERN_STATE_DIR")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["feedback_by_recipient"]["northshire-police"],
        json!({"shared": 1, "with_feedback": 1})
    );
    server.stop().await;
}

/// Asking for clarification: the holder asks, the requester clarifies, in turn; by default the
/// clock stops while it waits (not overdue, whatever the date) and restarts in full from the
/// clarification; configured to `continues`, it runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clarification_stops_and_restarts_the_clock_or_lets_it_run_as_configured() {
    for (daemon, stops) in [
        ("", true),
        ("[requests]\nclarification = \"continues\"\n", false),
    ] {
        let d = Deployment::with_daemon(daemon);
        let server = d.start().await;
        let mut police = d.connect(server.addr, "northshire-police").await;
        let mut council = d.connect(server.addr, "northshire-cc").await;
        let mut youth = d.connect(server.addr, "riverside-youth").await;
        let made = json(
            &ask(
                &mut police,
                &body("northshire-cc", "child-protection-s47", "public_task"),
                None,
            )
            .await,
        );
        let id = made["request_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/requests/{id}/clarification");
        let say = |t: &str| Bytes::from(json!({ "text": t }).to_string());

        // Out of turn: the requester cannot answer what was not asked; a stranger cannot
        // see it.
        let a = police.post_json(&path, say("x"), None).await.unwrap();
        assert_eq!(
            (a.status, json(&a)["code"].clone()),
            (409, json!("clarification_out_of_turn"))
        );
        let a = youth.post_json(&path, say("x"), None).await.unwrap();
        assert_eq!(a.status, 404);
        let a = council.post_json(&path, say("  "), None).await.unwrap();
        assert_eq!((a.status, json(&a)["field"].clone()), (422, json!("text")));

        // Asked.
        let a = council
            .post_json(
                &path,
                say("Which of the two children at the address?"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let waiting = if stops {
            "awaiting_clarification"
        } else {
            "open"
        };
        assert_eq!(json(&a)["status"], waiting);
        let a = council.post_json(&path, say("And?"), None).await.unwrap();
        assert_eq!(a.status, 409, "one at a time");
        let view = json(&get(&mut police, &format!("/v1/requests/{id}")).await);
        assert_eq!(view["status"], waiting);
        assert_eq!(view["clarifications"][0]["kind"], "asked");
        // Long after its due date, a request whose clock waits is not overdue.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args([
                "log",
                "report",
                "--json",
                "--as-of",
                "2099-01-01",
                "--state-dir",
            ])
            .arg(&d.state_dir)
            .env_remove("POSTERN_STATE_DIR")
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["requests"]["overdue"].as_array().map(Vec::len),
            Some(usize::from(!stops)),
            "{report}"
        );

        // Given: the clock restarts in full from today (the same due date when asked and
        // answered on one day), or runs on unchanged.
        let a = police
            .post_json(&path, say("The younger, born 2019."), None)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let given = json(&a);
        assert_eq!(
            (given["kind"].clone(), given["status"].clone()),
            (json!("given"), json!("open"))
        );
        assert_eq!(given["due_date"], made["due_date"]);
        if stops {
            assert!(given["due_at"].as_str() >= made["due_at"].as_str());
        } else {
            assert_eq!(given["due_at"], made["due_at"]);
        }
        let kinds: Vec<Value> = d
            .all_records()
            .into_iter()
            .filter(|r| {
                r["request_id"] == json!(id)
                    && r["kind"].as_str().is_some_and(|k| k.contains("clarif"))
            })
            .map(|r| r["kind"].clone())
            .collect();
        assert_eq!(
            kinds,
            [
                json!("request_clarification_asked"),
                json!("request_clarified")
            ]
        );
        server.stop().await;
    }
}
