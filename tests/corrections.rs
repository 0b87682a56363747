//! Corrections with real parts: a transfer with `correction_of` reaches every earlier recipient
//! of the transfer it corrects, by email (an in-process SMTP server over STARTTLS) and by mutual
//! TLS (this gateway delivering to its own inbound endpoint); only the corrected transfer's
//! sender or originator may send one; and the two records link to each other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::io::Read;

use common::{Deployment, envelope, json, payload, submit, wait_recipient};
use mail_parser::{MessageParser, MimeHeaders};
use postern_gateway::seal;
use serde_json::{Value, json};

/// Fast retries, so that deliveries settle in a second or two.
const FAST: &str = "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n";

fn open_with(bytes: &[u8], key: &seal::SpoolKey) -> Vec<u8> {
    let mut out = Vec::new();
    seal::open(bytes, key.identity())
        .expect("sealed for this key")
        .read_to_end(&mut out)
        .expect("decrypt");
    out
}

fn id_of(a: &postern_gateway::client::Answer) -> String {
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    json(a)["transfer_id"].as_str().expect("id").to_owned()
}

fn problem(a: &postern_gateway::client::Answer) -> (u16, String, Option<String>) {
    let v = json(a);
    (
        a.status,
        v["code"].as_str().unwrap_or_default().to_owned(),
        v["field"].as_str().map(str::to_owned),
    )
}

fn record(d: &Deployment, id: &str) -> Value {
    d.records()
        .into_iter()
        .find(|r| r["transfer_id"] == json!(id))
        .expect("a record")
}

/// The sealed envelope this gateway's inbox holds for a recipient, opened with its key.
fn inbox_envelope(d: &Deployment, transfer: &str, recipient: &str) -> Value {
    let sealed: Vec<u8> = d
        .reader()
        .conn()
        .unwrap()
        .query_row(
            "SELECT sealed_envelope FROM inbox WHERE transfer_id = ?1 AND recipient = ?2",
            [transfer, recipient],
            |r| r.get(0),
        )
        .expect("an inbox item");
    serde_json::from_slice(&open_with(&sealed, &d.org_key(recipient))).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_reaches_every_earlier_recipient_through_both_channels() {
    let (d, smtp) = common::with_relay(FAST).await;
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;

    // X: to the NHS trust (email) and the police (mutual TLS, into this gateway's inbox).
    let x = id_of(
        &submit(
            &mut council,
            &envelope(json!({"recipients": ["northshire-health", "northshire-police"]})),
            payload(4000, 31),
            None,
        )
        .await,
    );
    for r in ["northshire-health", "northshire-police"] {
        wait_recipient(&mut council, &x, r, "X delivered", |s| {
            s["state"] == "delivered"
        })
        .await;
    }
    assert_eq!(smtp.received().len(), 1);

    // Y corrects X and names only a third recipient, the MASH: it goes to all three.
    let corrected = payload(4100, 32);
    let a = submit(
        &mut council,
        &envelope(json!({
            "recipients": ["northshire-mash"],
            "correction_of": x,
            "disclosed_summary": "Corrected strategy discussion notes: the date of birth was wrong."
        })),
        corrected.clone(),
        None,
    )
    .await;
    let y = id_of(&a);
    let answered: Vec<String> = json(&a)["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| r["recipient"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        answered,
        ["northshire-mash", "northshire-health", "northshire-police"],
        "the recipients named, then X's"
    );
    for r in ["northshire-mash", "northshire-health", "northshire-police"] {
        let s = wait_recipient(&mut council, &y, r, "the correction delivered", |s| {
            s["state"] == "delivered"
        })
        .await;
        let channel = if r == "northshire-health" {
            "email"
        } else {
            "https"
        };
        assert_eq!(s["channel"], channel, "{r}");
    }

    // By email: the NHS trust got the correction, sealed for it, saying what it corrects.
    let mails = smtp.received();
    assert_eq!(mails.len(), 2, "X, then its correction");
    let mail = mails
        .iter()
        .find(|m| {
            MessageParser::default()
                .parse(&m.data)
                .and_then(|msg| {
                    msg.header_raw("X-Postern-Transfer-Id")
                        .map(|v| v.trim() == y)
                })
                .unwrap_or(false)
        })
        .expect("a message carrying the correction's transfer id");
    assert!(mail.tls);
    assert_eq!(
        mail.to,
        vec!["safeguarding@northshire-health.example".to_string()]
    );
    let msg = MessageParser::default().parse(&mail.data).expect("MIME");
    let attachment = |suffix: &str| {
        msg.attachments()
            .find(|a| a.attachment_name().is_some_and(|n| n.ends_with(suffix)))
            .map(|a| a.contents().to_vec())
            .expect("attachment")
    };
    let health = d.org_key("northshire-health");
    assert_eq!(open_with(&attachment("-payload.age"), &health), corrected);
    let env: Value = serde_json::from_slice(&open_with(&attachment("-envelope.json.age"), &health))
        .expect("JSON");
    assert_eq!(env["transfer_id"], json!(y));
    assert_eq!(env["correction_of"], json!(x));

    // By mutual TLS: the police's inbox holds it (and the MASH's), saying what it corrects.
    for r in ["northshire-police", "northshire-mash"] {
        let env = inbox_envelope(&d, &y, r);
        assert_eq!(env["correction_of"], json!(x), "{r}");
        assert_eq!(
            env["recipients"],
            json!(["northshire-mash", "northshire-health", "northshire-police"])
        );
    }
    let mut police = d.connect(server.addr, "northshire-police").await;
    let items = json(&police.get("/v1/inbox").await.expect("inbox"));
    let transfers: Vec<&str> = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["transfer_id"].as_str())
        .collect();
    assert!(
        transfers.contains(&x.as_str()) && transfers.contains(&y.as_str()),
        "{items}"
    );

    // The two records link: Y names X, and X's corrections are found through the index.
    let ry = record(&d, &y);
    assert_eq!(ry["kind"], "transfer_accepted");
    assert_eq!(ry["envelope"]["correction_of"], json!(x));
    assert_eq!(
        ry["envelope"]["recipients"],
        json!(["northshire-mash", "northshire-health", "northshire-police"])
    );
    let corrections: Vec<String> = d
        .reader()
        .conn()
        .unwrap()
        .prepare(
            "SELECT transfer_id FROM log_facets WHERE correction_of = ?1 AND decision = 'shared'",
        )
        .expect("query")
        .query_map([&x], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("ids");
    assert_eq!(corrections, [y.as_str()]);
    // What a data protection officer sees: `postern log show` links both ways and gives X's
    // delivery timeline.
    let show = |id: &str| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(["log", "show", id, "--json", "--state-dir"])
            .arg(&d.state_dir)
            .output()
            .expect("postern log show");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let shown_x = show(&x);
    assert_eq!(shown_x["corrected_by"], json!([y]));
    assert_eq!(show(&y)["corrects"], json!(x));
    let delivered_to: std::collections::BTreeSet<&str> = shown_x["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "delivery_attempt" && r["body"]["outcome"] == "delivered")
        .filter_map(|r| r["body"]["recipient"].as_str())
        .collect();
    assert_eq!(
        delivered_to,
        ["northshire-health", "northshire-police"]
            .into_iter()
            .collect(),
        "X's delivery timeline"
    );

    // An organisation that neither sent nor originated X may not correct it, even one that
    // received it: refused before its payload is read, and recorded.
    let transfers_before = d.transfers();
    let spool_before = d.spool_files();
    for (org, to) in [
        ("northshire-police", "northshire-cc"),
        ("riverside-youth", "northshire-mash"),
    ] {
        let mut conn = d.connect(server.addr, org).await;
        let a = submit(
            &mut conn,
            &envelope(json!({"recipients": [to], "correction_of": x})),
            payload(300_000, 33),
            None,
        )
        .await;
        assert_eq!(
            problem(&a),
            (
                403,
                "correction_not_permitted".to_owned(),
                Some("correction_of".to_owned())
            ),
            "{org}"
        );
        let reference = json(&a)["transfer_id"]
            .as_str()
            .expect("reference")
            .to_owned();
        let r = record(&d, &reference);
        assert_eq!(r["kind"], "transfer_refused");
        assert_eq!(r["sender"]["org"], org);
        assert_eq!(r["decision"]["code"], "correction_not_permitted");
        assert_eq!(r["envelope"]["correction_of"], json!(x));
        assert_eq!(
            r["envelope"]["recipients"],
            json!([to]),
            "the refusal records the envelope as submitted"
        );
        let (decision, correction_of): (String, String) = d
            .reader()
            .conn()
            .unwrap()
            .query_row(
                "SELECT decision, correction_of FROM log_facets WHERE transfer_id = ?1",
                [&reference],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("facets");
        assert_eq!(
            (decision.as_str(), correction_of.as_str()),
            ("refused", x.as_str())
        );
    }
    assert_eq!(d.transfers(), transfers_before, "nothing was shared");
    assert_eq!(d.spool_files(), spool_before);
    assert_eq!(smtp.received().len(), 2);

    // `log show X` still lists one correction: the refused attempts are listed apart, marked.
    let shown_x = show(&x);
    assert_eq!(shown_x["corrected_by"], json!([y]));
    let attempts = shown_x["refused_correction_attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 2, "{shown_x}");
    assert!(
        attempts.iter().all(|a| a["decision"] == "refused"),
        "{attempts:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "show", &x, "--state-dir"])
        .arg(&d.state_dir)
        .output()
        .expect("postern log show");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("corrected by:").count(), 1, "{text}");
    assert_eq!(
        text.matches("a correction was attempted and refused")
            .count(),
        2,
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originator_may_correct_and_a_correction_must_correct_an_accepted_transfer() {
    let d = Deployment::with_daemon(FAST);
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;

    // X: the council passes on the NHS trust's data to the police, with the trust's permission.
    let x = id_of(
        &submit(
            &mut council,
            &envelope(json!({
                "originator": "northshire-health",
                "originator_permission_ref": "NHT-PERM-2026-7"
            })),
            payload(1000, 34),
            None,
        )
        .await,
    );
    wait_recipient(&mut council, &x, "northshire-police", "X delivered", |s| {
        s["state"] == "delivered"
    })
    .await;
    // The trust, X's originator, corrects it: the police get the correction too; the trust is
    // never sent its own correction.
    let mut health = d.connect(server.addr, "northshire-health").await;
    let a = submit(
        &mut health,
        &envelope(json!({"recipients": ["northshire-mash"], "correction_of": x})),
        payload(1000, 35),
        None,
    )
    .await;
    let y = id_of(&a);
    assert_eq!(
        json(&a)["recipients"].as_array().map(|rs| rs
            .iter()
            .map(|r| r["recipient"].clone())
            .collect::<Vec<_>>()),
        Some(vec![json!("northshire-mash"), json!("northshire-police")])
    );
    let env = {
        wait_recipient(
            &mut health,
            &y,
            "northshire-police",
            "the correction",
            |s| s["state"] == "delivered",
        )
        .await;
        inbox_envelope(&d, &y, "northshire-police")
    };
    assert_eq!(env["correction_of"], json!(x));
    assert_eq!(env["sender"], "northshire-health");

    // Nothing to correct: an unknown id, and a transfer that was refused (never shared).
    let refused = submit(
        &mut council,
        &envelope(json!({"recipients": ["lonely-charity"]})),
        payload(10, 36),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    let refused_id = json(&refused)["transfer_id"]
        .as_str()
        .expect("reference")
        .to_owned();
    for target in [uuid::Uuid::now_v7().to_string(), refused_id] {
        let a = submit(
            &mut council,
            &envelope(json!({"correction_of": target})),
            payload(10, 37),
            None,
        )
        .await;
        assert_eq!(
            problem(&a),
            (
                422,
                "invalid_envelope".to_owned(),
                Some("correction_of".to_owned())
            )
        );
        assert_eq!(json(&a)["errors"][0]["code"], "invalid_value");
        let reference = json(&a)["transfer_id"]
            .as_str()
            .expect("reference")
            .to_owned();
        assert_eq!(record(&d, &reference)["kind"], "transfer_rejected");
    }

    // All or nothing: an earlier recipient the correction may not reach refuses the whole
    // correction, and the refusal points at `correction_of` (the envelope did not name it).
    let early_help = envelope(json!({
        "recipients": ["riverside-youth"],
        "purpose": "early-help",
        "marking": "OFFICIAL",
        "data_categories": ["personal"],
        "special_category_condition": null
    }));
    let to_youth = id_of(&submit(&mut council, &early_help, payload(10, 38), None).await);
    let a = submit(
        &mut council,
        &envelope(json!({
            "recipients": ["northshire-police"],
            "purpose": "crime-prevention-s115",
            "marking": "OFFICIAL",
            "data_categories": ["personal"],
            "special_category_condition": null,
            "correction_of": to_youth
        })),
        payload(10, 39),
        None,
    )
    .await;
    assert_eq!(
        problem(&a),
        (
            403,
            "statutory_only_recipient".to_owned(),
            Some("correction_of".to_owned())
        )
    );
    assert_eq!(json(&a)["recipient"], "riverside-youth");
    server.stop().await;
}
