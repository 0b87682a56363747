//! Ingest over real sockets and real mutual TLS: accept, seal, spool and record; every kind of
//! refusal and rejection; who may connect; idempotency; dropped uploads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::io::Read;

use bytes::Bytes;
use common::{Deployment, contains, db_bytes, envelope, json, payload, submit};
use futures_util::stream;
use postern_gateway::client::{Identity, Submission};
use postern_gateway::seal::{self, SpoolKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_transfer_is_sealed_spooled_and_recorded() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let data = payload(3 * 1024 * 1024 + 17, 1);
    let answer = submit(&mut conn, &envelope(json!({})), data.clone(), None).await;
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = json(&answer);
    let id = body["transfer_id"].as_str().expect("id").to_owned();
    assert_eq!(
        body["recipients"],
        json!([{"recipient": "northshire-police", "agreement": "test-isp"}])
    );
    assert_eq!(body["payload"]["size"], json!(data.len()));
    assert_eq!(
        body["payload"]["sha256"],
        json!(hex::encode(Sha256::digest(&data)))
    );
    assert_eq!(
        answer.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/v1/transfers/{id}").as_str())
    );

    // The spool holds exactly one file: sealed, opening with the spool key to the original bytes.
    let files = d.spool_files();
    assert_eq!(files.len(), 1);
    let sealed = std::fs::read(&files[0]).expect("read spool");
    assert!(!contains(&sealed, &data[..4096]), "no plaintext at rest");
    let key = SpoolKey::from_file(&d.state_dir.join("keys/spool.age")).expect("key");
    let mut opened = Vec::new();
    seal::open(&sealed[..], key.identity())
        .expect("open")
        .read_to_end(&mut opened)
        .expect("decrypt");
    assert_eq!(opened, data);

    // The log holds the decision with digests, the sender's certificate and hashed subjects.
    let records = d.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["kind"], "transfer_accepted");
    assert_eq!(r["transfer_id"], json!(id));
    assert_eq!(r["sender"]["org"], "northshire-cc");
    assert!(
        r["sender"]["certificate"]
            .as_str()
            .is_some_and(|c| c.starts_with("sha256:"))
    );
    assert_eq!(
        r["payload"]["sha256"],
        json!(hex::encode(Sha256::digest(&data)))
    );
    assert_eq!(
        r["payload"]["sealed_sha256"],
        json!(hex::encode(Sha256::digest(&sealed)))
    );
    assert_eq!(
        r["decision"]["authorisations"],
        json!([{"recipient": "northshire-police", "agreement": "test-isp"}])
    );
    assert_eq!(r["envelope"]["purpose"], "child-protection-s47");
    assert_eq!(
        r["envelope"]["marking_normalised"],
        "OFFICIAL-SENSITIVE PERSONAL"
    );
    assert_eq!(
        r["envelope"]["subject_ref_hashes"].as_array().map(Vec::len),
        Some(2)
    );
    // Subject references never reach the store in clear (the sealed envelope holds them).
    let db = db_bytes(&d.state_dir);
    assert!(!contains(&db, b"SUBJECT-SENTINEL-77"));
    assert!(!contains(&db, b"9434765919"));

    // Its sender sees it queued for the recipient; anyone else is told it does not exist.
    let status = conn.get(&format!("/v1/transfers/{id}")).await.expect("get");
    assert_eq!(status.status, 200);
    let s = json(&status);
    assert_eq!(s["recipients"][0]["recipient"], "northshire-police");
    // The delivery worker may already have taken it (the police receive by mutual TLS at this
    // very gateway): any state on the way is right.
    let state = s["recipients"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ["queued", "delivering", "delivered"].contains(&state.as_str()),
        "{s}"
    );
    let mut police = d.connect(server.addr, "northshire-police").await;
    let other = police
        .get(&format!("/v1/transfers/{id}"))
        .await
        .expect("get");
    assert_eq!(other.status, 404);
    assert_eq!(json(&other)["code"], "transfer_not_found");
    server.stop().await;
}

/// Small sealed payloads are committed inline with their records; larger ones go to a spool
/// file. Both open with the spool key to exactly what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_payloads_are_stored_inline_and_large_ones_in_the_spool() {
    let d = Deployment::new();
    let server = d.start().await;
    let key = SpoolKey::from_file(&d.state_dir.join("keys/spool.age")).expect("key");
    let limit = postern_gateway::store::upload::INLINE_MAX;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    // Sizes around the threshold, with and without a declared length.
    for (size, declared, file_expected) in [
        (0, true, false),
        (4096, true, false),
        (limit - 1000, false, false),
        (limit + 1, false, true),
        (limit + 1, true, true),
        (5 * limit, false, true),
    ] {
        let data = payload(size, 11);
        let before_files = d.spool_files().len();
        let answer = if declared {
            submit(&mut conn, &envelope(json!({})), data.clone(), None).await
        } else {
            let chunks: Vec<std::io::Result<Bytes>> = data
                .chunks(10_000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            conn.submit(Submission {
                envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
                payload: stream::iter(chunks),
                payload_len: None,
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await
            .expect("submit")
        };
        assert_eq!(answer.status, 202, "{size}");
        let id = json(&answer)["transfer_id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(
            d.spool_files().len() > before_files,
            file_expected,
            "size {size} declared {declared}"
        );
        let sealed = d.sealed_payload(&id);
        assert!(
            size < 64 || !contains(&sealed, &data[..64]),
            "no plaintext at rest"
        );
        let mut opened = Vec::new();
        seal::open(&sealed[..], key.identity())
            .expect("open")
            .read_to_end(&mut opened)
            .expect("decrypt");
        assert_eq!(opened, data, "size {size}");
        let record = d
            .records()
            .into_iter()
            .find(|r| r["transfer_id"] == json!(id))
            .expect("record");
        assert_eq!(
            record["payload"]["sealed_sha256"],
            json!(hex::encode(Sha256::digest(&sealed)))
        );
    }
    server.stop().await;
}

struct Case {
    name: &'static str,
    sender: &'static str,
    patch: Value,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    kind: &'static str,
}

/// Each refusal: the status, the stable code, the field at fault, a record in the log, and no
/// file in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_gives_its_status_code_field_and_a_log_record() {
    let d = Deployment::new();
    let server = d.start().await;
    let cases = vec![
        Case {
            name: "s.115 from a voluntary organisation",
            sender: "riverside-youth",
            patch: json!({"recipients": ["northshire-police"], "purpose": "crime-prevention-s115", "data_categories": ["personal"], "special_category_condition": null}),
            status: 403,
            code: "statutory_only_sender",
            field: Some("purpose"),
            kind: "transfer_refused",
        },
        Case {
            name: "s.115 to a voluntary organisation",
            sender: "northshire-cc",
            patch: json!({"recipients": ["riverside-youth"], "purpose": "crime-prevention-s115", "data_categories": ["personal"], "special_category_condition": null}),
            status: 403,
            code: "statutory_only_recipient",
            field: Some("recipients[0]"),
            kind: "transfer_refused",
        },
        Case {
            name: "SECRET",
            sender: "northshire-cc",
            patch: json!({"marking": "SECRET"}),
            status: 403,
            code: "marking_above_gateway",
            field: Some("marking"),
            kind: "transfer_refused",
        },
        Case {
            name: "above the youth club's clearance",
            sender: "northshire-cc",
            patch: json!({"recipients": ["riverside-youth"]}),
            status: 403,
            code: "marking_above_clearance",
            field: Some("marking"),
            kind: "transfer_refused",
        },
        Case {
            name: "unregistered recipient",
            sender: "northshire-cc",
            patch: json!({"recipients": ["northshire-police", "nobody-at-all"]}),
            status: 403,
            code: "unknown_recipient",
            field: Some("recipients[1]"),
            kind: "transfer_refused",
        },
        Case {
            name: "no common agreement",
            sender: "northshire-cc",
            patch: json!({"recipients": ["lonely-charity"]}),
            status: 403,
            code: "no_agreement",
            field: Some("recipients[0]"),
            kind: "transfer_refused",
        },
        Case {
            name: "agreement ended",
            sender: "northshire-cc",
            patch: json!({"recipients": ["old-partner"]}),
            status: 403,
            code: "agreement_not_in_force",
            field: Some("recipients[0]"),
            kind: "transfer_refused",
        },
        Case {
            name: "special category without Art 9",
            sender: "northshire-cc",
            patch: json!({"special_category_condition": null}),
            status: 403,
            code: "special_category_condition_missing",
            field: Some("special_category_condition"),
            kind: "transfer_refused",
        },
        Case {
            name: "originator without permission",
            sender: "northshire-cc",
            patch: json!({"originator": "northshire-health"}),
            status: 403,
            code: "originator_permission_missing",
            field: Some("originator_permission_ref"),
            kind: "transfer_refused",
        },
        Case {
            name: "basis unfit for purpose",
            sender: "northshire-cc",
            patch: json!({"lawful_basis": "contract"}),
            status: 403,
            code: "lawful_basis_unfit_for_purpose",
            field: Some("lawful_basis"),
            kind: "transfer_refused",
        },
        Case {
            name: "unknown purpose",
            sender: "northshire-cc",
            patch: json!({"purpose": "curiosity"}),
            status: 403,
            code: "unknown_purpose",
            field: Some("purpose"),
            kind: "transfer_refused",
        },
        Case {
            name: "incomplete envelope",
            sender: "northshire-cc",
            patch: json!({"practitioner": null}),
            status: 422,
            code: "invalid_envelope",
            field: Some("practitioner"),
            kind: "transfer_rejected",
        },
        Case {
            name: "unrecognised marking",
            sender: "northshire-cc",
            patch: json!({"marking": "EYES ONLY"}),
            status: 422,
            code: "invalid_envelope",
            field: Some("marking"),
            kind: "transfer_rejected",
        },
    ];
    for case in &cases {
        let before = d.records().len();
        let mut conn = d.connect(server.addr, case.sender).await;
        let answer = submit(
            &mut conn,
            &envelope(case.patch.clone()),
            payload(10_000, 2),
            None,
        )
        .await;
        let p = json(&answer);
        assert_eq!(answer.status, case.status, "{}: {p}", case.name);
        assert_eq!(
            answer
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            case.name
        );
        assert_eq!(p["code"], case.code, "{}: {p}", case.name);
        assert_eq!(p["field"].as_str(), case.field, "{}: {p}", case.name);
        assert!(
            p["detail"].as_str().is_some_and(|s| s.len() > 20),
            "{}: a sentence a person understands: {p}",
            case.name
        );
        let reference = p["transfer_id"].as_str().expect("reference").to_owned();
        let records = d.records();
        assert_eq!(
            records.len(),
            before + 1,
            "{}: one record per decision",
            case.name
        );
        let r = records.last().expect("record");
        assert_eq!(r["kind"], case.kind, "{}", case.name);
        assert_eq!(r["transfer_id"], json!(reference), "{}", case.name);
        assert_eq!(r["decision"]["code"], case.code, "{}", case.name);
        assert_eq!(r["sender"]["org"], case.sender, "{}", case.name);
        assert!(d.spool_files().is_empty(), "{}: nothing spooled", case.name);
    }
    // Refusals name the agreement considered, when there was one.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let p = json(
        &submit(
            &mut conn,
            &envelope(json!({"recipients": ["old-partner"]})),
            vec![1],
            None,
        )
        .await,
    );
    assert_eq!(p["agreement"], "ended-agreement");
    assert_eq!(p["recipient"], "old-partner");
    server.stop().await;
}

fn multipart(parts: &[(&str, &str, &[u8])], boundary: &str) -> Bytes {
    let mut b = Vec::new();
    for (name, ctype, body) in parts {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400s_and_nothing_is_kept() {
    let d = Deployment::new();
    let server = d.start().await;
    let env = serde_json::to_vec(&envelope(json!({}))).expect("json");
    let ct = "multipart/form-data; boundary=XyZ";
    /// (name, headers, body, expected status, expected code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Bytes, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not multipart",
            vec![("content-type", "application/json")],
            Bytes::from(env.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "payload first",
            vec![("content-type", ct)],
            multipart(
                &[
                    ("payload", "application/octet-stream", b"x"),
                    ("envelope", "application/json", &env),
                ],
                "XyZ",
            ),
            400,
            "envelope_missing",
        ),
        (
            "no payload",
            vec![("content-type", ct)],
            multipart(&[("envelope", "application/json", &env)], "XyZ"),
            400,
            "payload_missing",
        ),
        (
            "envelope not JSON",
            vec![("content-type", ct)],
            multipart(
                &[
                    ("envelope", "application/json", b"{not json"),
                    ("payload", "application/octet-stream", b"x"),
                ],
                "XyZ",
            ),
            400,
            "envelope_not_json",
        ),
        (
            "a third part",
            vec![("content-type", ct)],
            multipart(
                &[
                    ("envelope", "application/json", &env),
                    ("payload", "application/octet-stream", b"x"),
                    ("payload", "application/octet-stream", b"y"),
                ],
                "XyZ",
            ),
            400,
            "unexpected_part",
        ),
        (
            "an unknown part",
            vec![("content-type", ct)],
            multipart(
                &[
                    ("envelope", "application/json", &env),
                    ("attachment", "application/octet-stream", b"x"),
                ],
                "XyZ",
            ),
            400,
            "unexpected_part",
        ),
        (
            "bad idempotency key",
            vec![("content-type", ct), ("idempotency-key", "has space")],
            multipart(
                &[
                    ("envelope", "application/json", &env),
                    ("payload", "application/octet-stream", b"x"),
                ],
                "XyZ",
            ),
            400,
            "invalid_idempotency_key",
        ),
    ];
    for (name, headers, body, status, code) in cases {
        let mut conn = d.connect(server.addr, "northshire-cc").await;
        let answer = conn
            .raw("POST", "/v1/transfers", &headers, body)
            .await
            .expect("request");
        let p = json(&answer);
        assert_eq!(answer.status, status, "{name}: {p}");
        assert_eq!(p["code"], code, "{name}");
        let last = d.records().pop().expect("a record");
        assert_eq!(last["kind"], "transfer_rejected", "{name}");
        assert_eq!(last["decision"]["code"], code, "{name}");
        assert!(d.spool_files().is_empty(), "{name}: nothing kept");
    }
    // Routing errors are problems too.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let a = conn.get("/v1/nowhere").await.expect("get");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (404, json!("not_found"))
    );
    let a = conn
        .raw("DELETE", "/v1/transfers", &[], Bytes::new())
        .await
        .expect("delete");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (405, json!("method_not_allowed"))
    );
    let a = conn.get("/v1/transfers/%FF%FE").await.expect("get");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (404, json!("transfer_not_found")),
        "an undecodable id is a problem too"
    );
    let a = conn.get("/v1/transfers/not-an-id").await.expect("get");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (404, json!("transfer_not_found"))
    );
    server.stop().await;
}

/// A body in the shape curl produces for `-F 'envelope=<file;type=application/json' -F 'payload=@file'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curl_style_form_is_accepted() {
    let d = Deployment::new();
    let server = d.start().await;
    let env = serde_json::to_vec(&envelope(json!({"file_name": null}))).expect("json");
    let b = "------------------------8f3c1e2a9d7b4c60";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"envelope\"\r\nContent-Type: application/json\r\n\r\n").as_bytes());
    body.extend_from_slice(&env);
    body.extend_from_slice(format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"payload\"; filename=\"referral.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{b}--\r\n").as_bytes());
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let answer = conn
        .raw(
            "POST",
            "/v1/transfers",
            &[(
                "content-type",
                &format!("multipart/form-data; boundary={b}"),
            )],
            Bytes::from(body),
        )
        .await
        .expect("post");
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // The part's file name fills the envelope's when the envelope has none.
    assert_eq!(d.records()[0]["envelope"]["file_name"], "referral.txt");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_and_envelopes_over_the_limits_get_413_and_leave_nothing() {
    let d = Deployment::with_daemon(
        "[limits]\nmax_payload_bytes = 1048576\nmax_envelope_bytes = 4096\n",
    );
    let server = d.start().await;
    // Declared too large: refused before reading.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let a = submit(
        &mut conn,
        &envelope(json!({})),
        payload(2 * 1024 * 1024, 3),
        None,
    )
    .await;
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (413, json!("payload_too_large"))
    );
    // Streamed without a length: refused when the limit is crossed, partial file removed.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let chunks: Vec<std::io::Result<Bytes>> = payload(2 * 1024 * 1024, 4)
        .chunks(65536)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let a = conn
        .submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
            payload: stream::iter(chunks),
            payload_len: None,
            file_name: None,
            content_type: None,
            idempotency_key: None,
        })
        .await
        .expect("submit");
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (413, json!("payload_too_large"))
    );
    // An envelope over its limit.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let a = submit(
        &mut conn,
        &envelope(
            json!({"disclosed_summary": "x".repeat(4000), "justification": "y".repeat(4000)}),
        ),
        vec![1],
        None,
    )
    .await;
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (413, json!("envelope_too_large"))
    );
    assert!(d.spool_files().is_empty());
    assert_eq!(
        d.records()
            .iter()
            .filter(|r| r["kind"] == "transfer_rejected")
            .count(),
        3
    );
    // Exactly at the limit is fine.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let a = submit(
        &mut conn,
        &envelope(json!({})),
        payload(1024 * 1024, 5),
        None,
    )
    .await;
    assert_eq!(a.status, 202);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_of_registered_organisations_get_through() {
    let d = Deployment::new();
    let server = d.start().await;
    // No certificate: the handshake fails (in TLS 1.3 the client may only learn it on first use).
    match d.connect_with(server.addr, None).await {
        Err(_) => {}
        Ok(mut c) => assert!(
            c.get("/v1/transfers/x").await.is_err(),
            "no certificate: no answer"
        ),
    }
    // A certificate from the trusted CA that maps to no organisation.
    let dir = tempfile::tempdir().expect("tmp");
    let stranger = d
        .ca()
        .issue_client("Stranger", &["stranger.clients.postern.test".into()])
        .expect("issue");
    let stranger_pem = stranger.save(dir.path(), "stranger").expect("save");
    // A certificate naming a registered organisation, from a CA nobody trusts.
    let foreign = postern_gateway::pki::Ca::generate("Foreign CA")
        .expect("ca")
        .issue_client("Impostor", &["northshire-cc.clients.postern.test".into()])
        .expect("issue");
    let foreign_pem = foreign.save(dir.path(), "foreign").expect("save");
    // A certificate claiming two organisations at once.
    let both = d
        .ca()
        .issue_client(
            "Both",
            &[
                "northshire-cc.clients.postern.test".into(),
                "northshire-police.clients.postern.test".into(),
            ],
        )
        .expect("issue");
    let both_pem = both.save(dir.path(), "both").expect("save");
    for (name, pem) in [
        ("unknown", stranger_pem),
        ("foreign CA", foreign_pem),
        ("two organisations", both_pem),
    ] {
        let id = Identity::from_pem_file(&pem).expect("identity");
        match d.connect_with(server.addr, Some(&id)).await {
            Err(_) => {}
            Ok(mut c) => assert!(
                c.get("/v1/transfers/x").await.is_err(),
                "{name}: must not reach a handler"
            ),
        }
    }
    assert!(d.records().is_empty(), "nothing reached a handler");
    // TLS 1.2 with a registered certificate works.
    let roots = postern_gateway::client::read_roots(&d.ca_path()).expect("roots");
    let id = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    let tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls12")
    .with_root_certificates({
        let mut s = rustls::RootCertStore::empty();
        s.add(roots[0].clone()).expect("root");
        s
    })
    .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
    .expect("client auth");
    let target = postern_gateway::client::Target {
        host: "localhost".into(),
        port: server.addr.port(),
    };
    let mut c = postern_gateway::client::connect(&target, std::sync::Arc::new(tls12))
        .await
        .expect("TLS 1.2 connects");
    assert_eq!(
        c.get("/v1/transfers/00000000-0000-7000-8000-000000000000")
            .await
            .expect("get")
            .status,
        404
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_creates_one_transfer() {
    let d = Deployment::new();
    let server = d.start().await;
    let env = envelope(json!({}));
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let first = submit(&mut conn, &env, payload(5000, 6), Some("retry-key-1")).await;
    let second = submit(&mut conn, &env, payload(5000, 6), Some("retry-key-1")).await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(json(&first)["transfer_id"], json(&second)["transfer_id"]);
    assert_eq!(
        second.headers.get("location").and_then(|v| v.to_str().ok()),
        first.headers.get("location").and_then(|v| v.to_str().ok()),
        "a replayed 202 carries the same Location"
    );
    assert_eq!(
        second
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(d.transfers(), 1);
    assert_eq!(d.records().len(), 1);

    // Concurrent repeats: still one (and, the payload being large, one spool file).
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = d.connect(server.addr, "northshire-cc").await;
        let env = env.clone();
        tasks.push(tokio::spawn(async move { json(&submit(&mut c, &env, payload(200_000, 7), Some("retry-key-2")).await)["transfer_id"].clone() }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    assert!(ids.iter().all(|i| *i == ids[0] && i.is_string()), "{ids:?}");
    assert_eq!(d.transfers(), 2);
    assert_eq!(d.spool_files().len(), 1, "the losers' files were removed");
    assert_eq!(d.records().len(), 2);

    // The same key with a different envelope is an error, not a silent replay.
    let a = submit(
        &mut conn,
        &envelope(json!({"disclosed_summary": "something else"})),
        vec![1],
        Some("retry-key-1"),
    )
    .await;
    assert_eq!(
        (a.status, json(&a)["code"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    // The same key from another organisation is a different request.
    let mut police = d.connect(server.addr, "northshire-police").await;
    let a = submit(
        &mut police,
        &envelope(json!({"recipients": ["northshire-cc"]})),
        vec![1],
        Some("retry-key-1"),
    )
    .await;
    assert_eq!(a.status, 202);
    // A refusal is replayed as a refusal.
    let refused = envelope(json!({"marking": "SECRET"}));
    let a = submit(&mut conn, &refused, vec![1], Some("retry-key-3")).await;
    let b = submit(&mut conn, &refused, vec![1], Some("retry-key-3")).await;
    assert_eq!((a.status, b.status), (403, 403));
    assert_eq!(json(&a)["transfer_id"], json(&b)["transfer_id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_leaves_nothing_behind() {
    let d = Deployment::new();
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let data = payload(4 * 1024 * 1024, 8);
    // Two megabytes, then the client's source fails and the connection is torn down.
    let mut chunks: Vec<std::io::Result<Bytes>> = data[..2 * 1024 * 1024]
        .chunks(65536)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(std::io::Error::other("client gave up")));
    let r = conn
        .submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
            payload: stream::iter(chunks),
            payload_len: Some(data.len() as u64),
            file_name: None,
            content_type: None,
            idempotency_key: None,
        })
        .await;
    assert!(r.is_err(), "the request cannot complete");
    // The partial file goes as soon as the server notices.
    for _ in 0..100 {
        if d.spool_files().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        d.spool_files().is_empty(),
        "partial file removed: {:?}",
        d.spool_files()
    );
    assert!(d.records().iter().all(|r| r["kind"] != "transfer_accepted"));
    // And the gateway still works.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut conn, &envelope(json!({})), vec![9; 10], None)
            .await
            .status,
        202
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_times_out_with_408_and_is_recorded() {
    let d = Deployment::with_daemon("[limits]\nidle_timeout_secs = 1\n");
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    // 100 KB, then nothing for three seconds.
    let stalled = futures_util::StreamExt::then(stream::iter(0..3u32), |i| async move {
        if i == 1 {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 100_000]))
    });
    let answer = conn
        .submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
            payload: stalled,
            payload_len: Some(300_000),
            file_name: None,
            content_type: None,
            idempotency_key: None,
        })
        .await
        .expect("an answer");
    assert_eq!(
        (answer.status, json(&answer)["code"].clone()),
        (408, json!("request_timeout"))
    );
    let last = d.records().pop().expect("record");
    assert_eq!(
        (last["kind"].clone(), last["decision"]["code"].clone()),
        (json!("transfer_rejected"), json!("request_timeout"))
    );
    assert!(d.spool_files().is_empty() && d.transfers() == 0);
    server.stop().await;
}

/// A client that sends a whole request and then resets the connection without waiting for the
/// answer: whatever the gateway committed must keep its payload (the handler is dropped, the
/// commit is not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_after_its_upload_never_leaves_a_record_without_its_payload() {
    use tokio::io::AsyncWriteExt;
    // 150 clients at once from one address: allowed as many handshakes as that.
    let d = Deployment::with_daemon(
        "[limits]\nmax_connections_per_source = 1000\nmax_handshakes_per_source = 1000\n",
    );
    let server = d.start().await;
    let roots = postern_gateway::client::read_roots(&d.ca_path()).expect("roots");
    let id = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    let tls =
        std::sync::Arc::new(postern_gateway::client::tls_config(&roots, Some(&id)).expect("tls"));
    let env = serde_json::to_vec(&envelope(json!({}))).expect("json");
    let data = payload(200 * 1024, 12);
    let b = "Bnd7";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"envelope\"\r\nContent-Type: application/json\r\n\r\n").as_bytes());
    body.extend_from_slice(&env);
    body.extend_from_slice(
        format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let mut request = format!("POST /v1/transfers HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    request.extend_from_slice(&body);
    let request = std::sync::Arc::new(request);
    let mut tasks = Vec::new();
    for i in 0..150u64 {
        let (tls, request) = (tls.clone(), request.clone());
        let port = server.addr.port();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            // A reset, not a polite close: the client is simply gone. (The lint is about
            // lingering blocking the dropping thread, which a zero linger does not do.)
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(std::time::Duration::ZERO));
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .expect("tls");
            s.write_all(&request).await.expect("write");
            s.flush().await.expect("flush");
            // Vanish at various moments around the commit, with a reset.
            // (Every tenth stays until well after its commit, so that some certainly commit.)
            let wait = if i % 10 == 9 { 500_000 } else { (i % 50) * 600 };
            tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
            drop(s);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Let commits that were already queued land: the single writer commits in order, so once a
    // transfer sent now is answered, every commit queued before it has landed.
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    let barrier = submit(
        &mut conn,
        &envelope(json!({})),
        payload(200 * 1024, 13),
        None,
    )
    .await;
    assert_eq!(barrier.status, 202);
    let barrier_id = json(&barrier)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = d.reader();
    let mut stmt = r
        .conn()
        .unwrap()
        .prepare("SELECT id, payload_file FROM transfers")
        .expect("prepare");
    let rows: Vec<(String, Option<String>)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
        .into_iter()
        .filter(|(id, _)| *id != barrier_id)
        .collect();
    assert!(
        !rows.is_empty(),
        "some uploads completed before their clients vanished"
    );
    for (id, file) in &rows {
        let file = file.as_ref().expect("a 200 KiB payload is a spool file");
        assert!(
            d.state_dir.join("spool").join(file).exists(),
            "transfer {id} was committed without its payload"
        );
    }
    eprintln!(
        "{} of 150 vanished clients' transfers committed, each with its payload",
        rows.len()
    );
    server.stop().await;
}
