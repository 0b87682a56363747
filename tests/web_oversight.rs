//! The data protection officer's pages over real HTTPS, against a real gateway with real
//! shares: a DPO sees only what their organisation is a party to (by list, by filter, by
//! guessing an id), an auditor sees everything, every look is recorded in the log before
//! anything is shown, a subject search finds a person by their reference typed in any case and
//! keeps the reference nowhere, an export is streamed, formula-safe and headed by the
//! verification status, the report draws its charts with a table beside each, and "verify now"
//! reports a tampered record with its location.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use common::web::*;
use common::{Deployment, contains, db_bytes, envelope, json, payload, submit};
use serde_json::json;

/// Riverside Youth Club's DPO (role `dpo`).
const CHRIS: &str = "chris@riverside-youth.example";
/// The MASH's DPO, an auditor of the whole gateway.
const PRIYA: &str = "priya@northshire-mash.example";

/// A share from `org` through the API; its transfer id and HTTP status.
async fn share(
    d: &Deployment,
    server: &common::Server,
    org: &str,
    patch: serde_json::Value,
) -> (String, u16) {
    let mut conn = d.connect(server.addr, org).await;
    let a = submit(&mut conn, &envelope(patch), payload(2000, 7), None).await;
    let v = json(&a);
    let id = v["transfer_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no transfer id: {v}"))
        .to_owned();
    (id, a.status)
}

fn riverside(patch: serde_json::Value) -> serde_json::Value {
    let mut base = json!({
        "recipients": ["northshire-mash"],
        "purpose": "safeguarding-referral",
        "lawful_basis": "legitimate_interests",
        "justification": "=HYPERLINK(\"http://evil.example\") riverside justification",
        "subject_refs": ["case:Riv-Case-42"],
        "practitioner": {"name": "Sam Okafor", "role": "Youth worker", "contact": "sam@riverside-youth.example"},
    });
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn events(d: &Deployment, who: &str) -> Vec<String> {
    d.all_records()
        .into_iter()
        .filter(|r| r["kind"] == "person_access" && r["sender"]["person"] == who)
        .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_dpo_sees_their_organisations_records_only_and_every_look_is_recorded() {
    let (d, server, sink) = gateway("").await;
    let (shared, status) = share(&d, &server, "riverside-youth", riverside(json!({}))).await;
    assert_eq!(status, 202);
    let (refused, status) = share(
        &d,
        &server,
        "riverside-youth",
        riverside(json!({"recipients": ["lonely-charity"]})),
    )
    .await;
    assert_eq!(status, 403);
    let (other, status) = share(&d, &server, "northshire-cc", json!({})).await;
    assert_eq!(status, 202);
    let link = |id: &str| format!("/log/transfer/{id}");

    let web = server.web.expect("web listener");
    let mut chris = Browser::new(&d, web);
    sign_in(&mut chris, &sink, CHRIS).await;

    // The list: Riverside's share and refusal, not the council's share to the police.
    let a = chris.get("/log").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(&link(&shared)), "{}", a.body);
    assert!(a.body.contains(&link(&refused)));
    assert!(
        !a.body.contains(&link(&other)),
        "another organisation's share was listed"
    );
    assert!(a.body.contains("Riverside Youth Club"), "names, not ids");
    assert!(a.body.contains("Northshire Multi-Agency Safeguarding Hub"));
    // The filters are in the URL, chosen from names.
    let a = chris.get("/log?decision=refused").await;
    assert!(a.body.contains(&link(&refused)) && !a.body.contains(&link(&shared)));
    assert!(a.body.contains("<option value=\"refused\" selected>"));
    let a = chris
        .get("/log?purpose=safeguarding-referral&decision=shared")
        .await;
    assert!(a.body.contains(&link(&shared)) && !a.body.contains(&link(&refused)));
    let a = chris.get("/log?from=2026-13-01").await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("Enter the start date"), "{}", a.body);
    assert!(
        a.body.contains("href=\"#from\""),
        "the error summary links to the field"
    );
    // A recipient filter or a sender filter naming another organisation finds nothing of theirs.
    let a = chris.get("/log?sender=northshire-cc").await;
    assert!(!a.body.contains(&link(&other)));

    // A record's page: its grounds and its deliveries; another organisation's is not found.
    let a = chris.get(&link(&other)).await;
    assert_eq!(
        a.status, 404,
        "a guessed id opened another organisation's record"
    );
    let a = chris.get(&link(&shared)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for expected in [
        "riverside justification",
        "Legitimate interests",
        "Sam Okafor",
        "Delivery, now",
        "Who opened it",
    ] {
        assert!(
            a.body.contains(expected),
            "the record's page lacks {expected:?}"
        );
    }
    let a = chris.get(&link(&refused)).await;
    assert!(
        a.body.contains("Why nothing was shared") && a.body.contains("rule no_agreement"),
        "{}",
        a.body
    );

    // Subject access: the reference typed in another case and with spaces finds the person.
    let a = chris
        .post("/log/subject", "kind=case&identifier=+riv-case-42+")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("2 decisions about this person"),
        "{}",
        a.body
    );
    assert!(a.body.contains(&link(&shared)) && a.body.contains(&link(&refused)));
    let a = chris.post("/log/subject", "kind=nhs&identifier=123").await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("Enter a valid NHS number"));

    // Export: streamed, headed by the verification status, the filter applied, no formulas.
    let mut verified = false;
    for _ in 0..100 {
        if chris
            .get("/log")
            .await
            .body
            .contains("Verified intact up to record")
        {
            verified = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(verified, "the log was not verified in the background");
    let a = chris.get("/log/export?format=csv&decision=shared").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        a.header("content-disposition")
            .unwrap_or_default()
            .contains("attachment")
    );
    let first = a.body.lines().next().unwrap_or_default();
    assert!(
        first.contains("Postern transfer log export")
            && first.contains("Verified intact up to record"),
        "{first}"
    );
    assert!(a.body.contains(&shared) && !a.body.contains(&refused) && !a.body.contains(&other));
    assert!(
        a.body.contains("\"'=HYPERLINK(") && !a.body.contains(",\"=HYPERLINK("),
        "a formula cell was not neutralised:\n{}",
        a.body
    );
    let a = chris.get("/log/export?format=jsonl").await;
    let mut lines = a.body.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(
        head["export"]["verification"]
            .as_str()
            .unwrap()
            .starts_with("Verified intact")
    );
    let ids: Vec<String> = lines
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["transfer_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        vec![shared.clone(), refused.clone()],
        "oldest first, this organisation's only"
    );

    // The report: charts drawn on the server, each with its table.
    let a = chris.get("/log/report?from=2000-01-01").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<svg") && a.body.contains("Shared, by purpose"));
    assert!(
        a.body
            .contains("<th scope=\"row\">Referral of a safeguarding concern"),
        "{}",
        a.body
    );
    assert!(a.body.contains("Refused, by rule"));

    // Who looked: the DPO's own looks, recorded before anything was shown.
    let a = chris.get("/log/access").await;
    for expected in [
        "Searched for a person",
        "Exported records",
        "Viewed a record",
        "Opened the report",
    ] {
        assert!(a.body.contains(expected), "who looked lacks {expected:?}");
    }
    let seen = events(&d, CHRIS);
    for e in [
        "log_listed",
        "record_viewed",
        "subject_searched",
        "log_exported",
        "report_viewed",
        "access_listed",
    ] {
        assert!(seen.iter().any(|s| s == e), "no {e} record: {seen:?}");
    }
    // The reference searched for is kept nowhere: only its keyed hash is recorded.
    let db = db_bytes(&d.state_dir);
    for needle in ["riv-case-42", "RIV-CASE-42", "Riv-Case-42"] {
        assert!(
            !contains(&db, needle.as_bytes()),
            "{needle} is in the database"
        );
    }

    // Someone without the DPO role is refused; an auditor sees every organisation's records.
    let mut sam = Browser::new(&d, web);
    sign_in(&mut sam, &sink, SAM).await;
    for path in [
        "/log",
        "/log/subject",
        "/log/report",
        "/log/access",
        "/log/export?format=csv",
    ] {
        assert_eq!(sam.get(path).await.status, 403, "{path}");
    }
    assert_eq!(sam.get(&link(&shared)).await.status, 403);
    let mut priya = Browser::new(&d, web);
    sign_in(&mut priya, &sink, PRIYA).await;
    let a = priya.get("/log").await;
    assert!(a.body.contains(&link(&other)) && a.body.contains(&link(&shared)));
    assert_eq!(priya.get(&link(&other)).await.status, 200);
    // The DPO sees who else looked at their organisation's records? Their own people's looks:
    // the auditor's look is in the auditor's organisation's list, and in the whole log.
    let a = priya.get("/log/access").await;
    assert!(a.body.contains("Chris Doyle"), "an auditor sees every look");
    // And the record's page says who viewed it.
    let a = priya.get(&link(&shared)).await;
    assert!(
        a.body
            .contains("Chris Doyle, Riverside Youth Club viewed this record"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn verify_now_reports_a_tampered_record_with_its_location() {
    let (d, server, sink) = gateway("").await;
    let (_, status) = share(&d, &server, "northshire-cc", json!({})).await;
    assert_eq!(status, 202);
    let mut priya = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut priya, &sink, PRIYA).await;
    let a = priya.post("/log/verify", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("The log is intact"), "{}", a.body);

    // One byte of the share's record changed behind the gateway's back.
    let db = rusqlite::Connection::open(postern_gateway::store::db_path(&d.state_dir)).unwrap();
    let (seq, mut body): (i64, Vec<u8>) = db
        .query_row(
            "SELECT seq, body FROM log WHERE kind = 'transfer_accepted' ORDER BY seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let at = body
        .windows(7)
        .position(|w| w == b"routine")
        .expect("a field to alter");
    body[at] = b'R';
    db.execute(
        "UPDATE log SET body = ?1 WHERE seq = ?2",
        rusqlite::params![body, seq],
    )
    .unwrap();
    drop(db);

    let a = priya.post("/log/verify", "").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("The log is broken"), "{}", a.body);
    assert!(
        a.body
            .contains(&format!("A record was altered at record {seq}.</p>")),
        "{}",
        a.body
    );
    // Said once as the finding, and what the check found once among the facts.
    assert_eq!(
        a.body.matches(&format!("record {seq} was altered")).count(),
        0,
        "{}",
        a.body
    );
    assert_eq!(
        a.body
            .matches(&format!(
                "Record {seq} was altered: its content no longer matches its hash."
            ))
            .count(),
        1,
        "{}",
        a.body
    );
    // Every log page now carries it, until the log is mended.
    let a = priya.get("/log").await;
    assert!(
        a.body
            .contains("BROKEN: the log is not intact: a record was altered"),
        "{}",
        a.body
    );
    assert!(a.body.contains(&format!("record {seq}")));
    let seen = events(&d, PRIYA);
    assert!(seen.iter().filter(|e| *e == "log_verified").count() >= 1);
}

#[tokio::test]
async fn a_recipients_dpo_sees_its_own_delivery_not_another_recipients() {
    let (d, sink) = deployment("").await;
    d.rewrite(
        "people.toml",
        "[[person]]\nemail = \"sam@riverside-youth.example\"",
        "[[person]]\nemail = \"pat@northshire-police.example\"\nname = \"Pat Reid\"\ntitle = \"Data protection officer\"\norganisation = \"northshire-police\"\nroles = [\"dpo\"]\n\n[[person]]\nemail = \"sam@riverside-youth.example\"",
    );
    let server = d.start().await;
    // The council shares with the police and the MASH.
    let (id, status) = share(
        &d,
        &server,
        "northshire-cc",
        json!({"recipients": ["northshire-police", "northshire-mash"]}),
    )
    .await;
    assert_eq!(status, 202);
    let mut pat = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut pat, &sink, "pat@northshire-police.example").await;
    let a = pat.get(&format!("/log/transfer/{id}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let now = a
        .body
        .split("Delivery, now")
        .nth(1)
        .and_then(|rest| rest.split("</dl>").next())
        .unwrap_or_default();
    assert!(now.contains("Northshire Police"), "{}", a.body);
    assert!(
        !now.contains("Northshire Multi-Agency Safeguarding Hub"),
        "another recipient's delivery was shown:\n{now}"
    );
    // The sender's DPO view is not the recipient's: the police's list shows the share.
    let a = pat.get("/log").await;
    assert!(a.body.contains(&format!("/log/transfer/{id}")));
    // A correction is linked both ways on the record pages.
    let (fix, status) = share(
        &d,
        &server,
        "northshire-cc",
        json!({"recipients": ["northshire-police"], "correction_of": id}),
    )
    .await;
    assert_eq!(status, 202);
    let a = pat.get(&format!("/log/transfer/{id}")).await;
    assert!(
        a.body
            .contains(&format!("Corrected by <a href=\"/log/transfer/{fix}\">")),
        "{}",
        a.body
    );
    let a = pat.get(&format!("/log/transfer/{fix}")).await;
    assert!(
        a.body.contains(&format!(
            "This share corrects <a href=\"/log/transfer/{id}\">"
        )),
        "{}",
        a.body
    );
}
