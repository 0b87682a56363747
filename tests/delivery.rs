//! Delivery with real parts: a real SMTP server (mailin's state machine over tokio, STARTTLS by
//! rustls) started in the test, and two gateways exchanging a transfer over mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::io::Read;
use std::time::Duration;

use common::{
    Deployment, contains, envelope, eventually, json, payload, recipient_state, submit,
    wait_recipient,
};
use mail_parser::{MessageParser, MimeHeaders};
use postern_gateway::seal;
use postern_gateway::testkit::smtp_sink::{SinkOptions, SmtpSink, tls_config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Fast retries, so that tests see several attempts in a second or two.
const FAST: &str = "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n";

fn relay(port: u16, ca: &std::path::Path, tls: &str) -> String {
    format!(
        "[smtp]\nrelays = [{{ host = \"localhost\", port = {port}, tls = \"{tls}\", ca = \"{}\" }}]\n",
        ca.display()
    )
}

/// An SMTP server whose certificate (for `localhost`) is issued by `ca`.
fn sink(
    listener: TcpListener,
    ca: &postern_gateway::pki::Ca,
    mut options: SinkOptions,
) -> SmtpSink {
    let issued = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()])
        .expect("issue");
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    if options.starttls.is_none() && !options.reject && options.fail_first == usize::MAX {
        options.fail_first = 0;
    }
    options.starttls = options
        .starttls
        .or_else(|| Some(std::sync::Arc::new(tls_config(chain, key).expect("tls"))));
    SmtpSink::start(listener, options).expect("sink")
}

/// The last delivery attempt the transfer log recorded.
fn last_attempt(d: &Deployment) -> Value {
    d.all_records()
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "delivery_attempt")
        .expect("an attempt")
}

/// A deployment whose email goes to the relay at `port` over STARTTLS (trusting the
/// deployment's own CA), with fast retries and any further `[delivery]` lines in `extra`.
fn with_relay(port: u16, extra: &str) -> Deployment {
    Deployment::with_daemon(&format!(
        "{}{FAST}{extra}",
        relay(
            port,
            &std::path::PathBuf::from("${state_dir}/pki/ca.crt"),
            "starttls"
        )
    ))
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// The police share with the council's children's services, who receive by email.
fn to_council() -> Value {
    envelope(json!({"recipients": ["northshire-cc"]}))
}

/// Shares `payload` with the council (accepted) and returns the transfer id.
async fn share_to_council(
    conn: &mut postern_gateway::client::Connection,
    payload: Vec<u8>,
) -> String {
    json(&submit(conn, &to_council(), payload, None).await)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// A deployment whose relay at `port` speaks TLS from the first byte (`tls = "implicit"`).
fn with_implicit_relay(port: u16) -> Deployment {
    Deployment::with_daemon(&format!(
        "{}{FAST}",
        relay(
            port,
            &std::path::PathBuf::from("${state_dir}/pki/ca.crt"),
            "implicit"
        )
    ))
}

fn open_with(bytes: &[u8], key: &postern_gateway::seal::SpoolKey) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    seal::open(bytes, key.identity())
        .map_err(|e| e.to_string())?
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_sealed_for_its_recipient_alone_and_sent_over_starttls() {
    let (l, port) = listener().await;
    let d0 = Deployment::new();
    let d = Deployment::with_daemon(&format!("{}{FAST}", relay(port, &d0.ca_path(), "starttls")));
    // The relay's certificate comes from another CA (d0's) and is verified against it.
    let smtp = sink(l, &d0.ca(), SinkOptions::default());
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let data = payload(50_000, 21);
    let a = submit(&mut police, &to_council(), data.clone(), None).await;
    assert_eq!(a.status, 202);
    let id = json(&a)["transfer_id"].as_str().expect("id").to_owned();
    let state = wait_recipient(&mut police, &id, "northshire-cc", "delivery", |s| {
        s["state"] == "delivered"
    })
    .await;
    assert_eq!(state["channel"], "email");
    assert!(
        state["receipt"]["receipt_id"]
            .as_str()
            .is_some_and(|r| r.contains("250")),
        "{state}"
    );

    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.tls, "sent over STARTTLS");
    assert_eq!(
        mail.to,
        vec!["childrens.services@northshire-cc.example".to_string()]
    );
    let msg = MessageParser::default()
        .parse(&mail.data)
        .expect("a MIME message");
    let subject = msg.subject().expect("subject");
    assert_eq!(
        subject,
        format!("OFFICIAL-SENSITIVE PERSONAL: secure transfer {id} from Northshire Police")
    );
    assert_eq!(
        msg.header_raw("X-Postern-Transfer-Id").map(str::trim),
        Some(id.as_str())
    );
    let body = msg.body_text(0).expect("a text body");
    for needle in [
        id.as_str(),
        "child-protection-s47",
        "OFFICIAL-SENSITIVE PERSONAL",
        "Destroy by",
        "age -d -i",
    ] {
        assert!(body.contains(needle), "the body says {needle:?}:\n{body}");
    }
    // Nothing personal outside the sealed attachments.
    for secret in [
        "JUSTIFICATION-SENTINEL",
        "SUBJECT-SENTINEL",
        "9434765919",
        "notes.pdf",
    ] {
        assert!(
            !contains(&mail.data, secret.as_bytes()),
            "{secret} appears in the message"
        );
    }

    let attachments: Vec<_> = msg.attachments().collect();
    assert_eq!(attachments.len(), 2);
    let council = d.org_key("northshire-cc");
    let police_key = d.org_key("northshire-police");
    let by_name = |suffix: &str| {
        attachments
            .iter()
            .find(|a| a.attachment_name().is_some_and(|n| n.ends_with(suffix)))
            .map(|a| a.contents().to_vec())
            .expect("attachment")
    };
    let sealed_envelope = by_name("-envelope.json.age");
    let sealed_payload = by_name("-payload.age");
    assert_eq!(
        open_with(&sealed_payload, &council).expect("opens with the council's key"),
        data
    );
    let env: Value =
        serde_json::from_slice(&open_with(&sealed_envelope, &council).expect("envelope opens"))
            .expect("JSON");
    assert_eq!(env["transfer_id"], json!(id));
    assert_eq!(env["sender"], "northshire-police");
    assert!(
        env["justification"]
            .as_str()
            .is_some_and(|j| j.contains("JUSTIFICATION-SENTINEL"))
    );
    assert_eq!(
        env["subject_refs"],
        json!(["nhs:9434765919", "case:SUBJECT-SENTINEL-77"])
    );
    assert_eq!(env["file_name"], "notes.pdf");
    assert!(
        open_with(&sealed_payload, &police_key).is_err(),
        "no one else's key opens it"
    );

    // The attempt is in the transfer log.
    let attempt = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "delivery_attempt" && r["recipient"] == "northshire-cc")
        .expect("attempt record");
    assert_eq!(attempt["outcome"], "delivered");
    assert_eq!(attempt["channel"], "email");
    assert!(
        attempt["detail"]
            .as_str()
            .is_some_and(|d| d.contains("250")),
        "{attempt}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_starttls_or_with_a_bad_certificate_receives_nothing() {
    // No STARTTLS offered: the gateway never falls back to plaintext, and keeps trying.
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let plain = SmtpSink::start(l, SinkOptions::default()).expect("sink");
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![1; 1000]).await;
    let s = wait_recipient(
        &mut police,
        &id,
        "northshire-cc",
        "two failed attempts",
        |s| s["attempts"].as_i64() >= Some(2) && s["state"] == "retrying",
    )
    .await;
    assert_eq!(s["state"], "retrying", "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("tls")),
        "{s}"
    );
    assert!(plain.received().is_empty(), "nothing was sent in plaintext");
    assert_eq!(
        last_attempt(&d)["cause"],
        "tls",
        "no STARTTLS is a TLS failure"
    );
    // One plain sentence, not the library's chain said twice.
    let said = s["last_error"].as_str().unwrap_or_default();
    assert!(
        said.ends_with(
            "the relay does not offer STARTTLS, and this gateway sends email only over TLS"
        ) && said.matches("STARTTLS").count() == 1,
        "{said}"
    );
    server.stop().await;

    // STARTTLS, but a certificate from a CA the gateway was not told to trust: dead at once.
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let foreign = postern_gateway::pki::Ca::generate("Someone else's CA").expect("ca");
    let impostor = sink(l, &foreign, SinkOptions::default());
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![1; 1000]).await;
    let s = wait_recipient(&mut police, &id, "northshire-cc", "a dead delivery", |s| {
        s["state"] == "dead"
    })
    .await;
    assert_eq!(
        s["attempts"], 1,
        "a certificate that does not verify is permanent: {s}"
    );
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate")),
        "{s}"
    );
    assert!(impostor.received().is_empty());
    assert_eq!(last_attempt(&d)["cause"], "tls_certificate");
    let said = s["last_error"].as_str().unwrap_or_default();
    assert!(
        said.ends_with("TLS handshake failed: the relay's certificate was not issued by a CA this gateway trusts for it"),
        "{said}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_gets_the_message_after_a_retry() {
    let (l, port) = listener().await;
    drop(l); // nobody listens yet
    let d = with_relay(port, "");
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let data = payload(2000, 22);
    let id = share_to_council(&mut police, data.clone()).await;
    wait_recipient(&mut police, &id, "northshire-cc", "a failed attempt", |s| {
        s["state"] == "retrying"
    })
    .await;
    let smtp = sink(
        TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind"),
        &d.ca(),
        SinkOptions::default(),
    );
    let s = wait_recipient(
        &mut police,
        &id,
        "northshire-cc",
        "delivery after the relay came back",
        |s| s["state"] == "delivered",
    )
    .await;
    assert!(s["attempts"].as_i64() >= Some(2), "{s}");
    assert_eq!(smtp.received().len(), 1);
    let attempts: Vec<String> = d
        .all_records()
        .into_iter()
        .filter(|r| r["kind"] == "delivery_attempt")
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        attempts.first().is_some_and(|o| o == "retrying")
            && attempts.last().is_some_and(|o| o == "delivered"),
        "{attempts:?}"
    );
    let first = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "delivery_attempt")
        .expect("attempt");
    assert_eq!(first["cause"], "unreachable", "{first}");
    let said = first["detail"].as_str().unwrap_or_default();
    assert!(
        said.ends_with("the relay refused the connection (is it listening?)"),
        "{first}"
    );
    assert!(
        last_attempt(&d).get("cause").is_none(),
        "a delivery has no cause"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failures_retry_permanent_ones_stop_and_lifetimes_end() {
    // 451 twice, then accepted.
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let smtp = sink(
        l,
        &d.ca(),
        SinkOptions {
            fail_first: 2,
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![3; 100]).await;
    let s = wait_recipient(&mut police, &id, "northshire-cc", "delivery", |s| {
        s["state"] == "delivered"
    })
    .await;
    assert_eq!(s["attempts"], 3, "{s}");
    assert_eq!(smtp.received().len(), 1);
    server.stop().await;

    // 550: dead after one attempt.
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let _smtp = sink(
        l,
        &d.ca(),
        SinkOptions {
            reject: true,
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![3; 100]).await;
    let s = wait_recipient(&mut police, &id, "northshire-cc", "a dead delivery", |s| {
        s["state"] == "dead"
    })
    .await;
    assert_eq!(s["attempts"], 1);
    assert!(
        s["last_error"].as_str().is_some_and(|e| e.contains("550")),
        "{s}"
    );
    assert_eq!(last_attempt(&d)["cause"], "relay_refused");
    server.stop().await;

    // A relay that never answers, and a lifetime of one second: dead, with its reason recorded.
    let (l, port) = listener().await;
    drop(l);
    let d = with_relay(port, "lifetime_secs = 1\n");
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![3; 100]).await;
    let s = wait_recipient(
        &mut police,
        &id,
        "northshire-cc",
        "an expired delivery",
        |s| s["state"] == "dead",
    )
    .await;
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("expired after")),
        "{s}"
    );
    let last = d
        .all_records()
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "delivery_attempt")
        .expect("attempt");
    assert_eq!(last["outcome"], "dead");
    assert!(
        last["detail"]
            .as_str()
            .is_some_and(|e| e.starts_with("expired after"))
    );
    assert_eq!(last["cause"], "unreachable", "nobody listens: {last}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_recipient_gets_plain_attachments_and_only_up_to_its_ceiling() {
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    d.rewrite(
        "organisations.toml",
        "address = \"childrens.services@northshire-cc.example\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-cc.pub\"",
        "address = \"childrens.services@northshire-cc.example\"\ntls_only = true\nmax_marking = \"OFFICIAL\"",
    );
    let smtp = sink(l, &d.ca(), SinkOptions::default());
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    // Above the tls_only ceiling: refused, never sent.
    let refused = submit(&mut police, &to_council(), vec![1; 10], None).await;
    assert_eq!(
        (refused.status, json(&refused)["code"].clone()),
        (403, json!("marking_above_channel"))
    );
    // Within it: sent with the envelope and payload in clear inside the TLS-protected message.
    let data = payload(3000, 23);
    let a = submit(
        &mut police,
        &envelope(json!({"recipients": ["northshire-cc"], "marking": "OFFICIAL"})),
        data.clone(),
        None,
    )
    .await;
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let id = json(&a)["transfer_id"].as_str().expect("id").to_owned();
    wait_recipient(&mut police, &id, "northshire-cc", "delivery", |s| {
        s["state"] == "delivered"
    })
    .await;
    let mail = smtp.received().pop().expect("a message");
    assert!(mail.tls);
    let msg = MessageParser::default().parse(&mail.data).expect("MIME");
    let attachments: Vec<_> = msg.attachments().collect();
    let payload_part = attachments
        .iter()
        .find(|a| a.attachment_name().is_some_and(|n| n.contains("-payload")))
        .expect("payload");
    assert_eq!(payload_part.contents(), &data[..]);
    assert!(
        payload_part
            .attachment_name()
            .is_some_and(|n| n.ends_with(".pdf")),
        "keeps the file's extension, not its name"
    );
    let env_part = attachments
        .iter()
        .find(|a| {
            a.attachment_name()
                .is_some_and(|n| n.ends_with("-envelope.json"))
        })
        .expect("envelope");
    let env: Value = serde_json::from_slice(env_part.contents()).expect("plain JSON");
    assert_eq!(env["transfer_id"], json!(id));
    server.stop().await;
}

/// Gateway A (the council's) delivers to gateway B (the police's) over mutual TLS; the police
/// download, decrypt and acknowledge from B's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_exchange_a_transfer_and_the_recipient_acknowledges_it() {
    let a = Deployment::with_daemon(FAST);
    let b = Deployment::new();
    // B trusts A's CA for client certificates and knows A's gateway certificate as a peer.
    b.accept_deliveries_from(&a);
    let b_server = b.start().await;
    // A reaches the police at B, verifying B against B's CA, sealing to the police's key at B.
    a.deliver_police_to(&b, b_server.addr.port());
    let a_server = a.start().await;

    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let data = payload(300_000, 24);
    let accepted = submit(&mut council, &envelope(json!({})), data.clone(), None).await;
    assert_eq!(accepted.status, 202);
    let id = json(&accepted)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let s = wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "delivery to the peer",
        |s| s["state"] == "delivered",
    )
    .await;
    assert_eq!(s["channel"], "https");
    let receipt_id = s["receipt"]["receipt_id"]
        .as_str()
        .expect("receipt")
        .to_owned();

    // The police, at B, find it in their inbox.
    let mut police = b.connect(b_server.addr, "northshire-police").await;
    let list = json(&police.get("/v1/inbox").await.expect("list"));
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["id"],
        json!(receipt_id),
        "the receipt names the inbox item"
    );
    assert_eq!(items[0]["transfer_id"], json!(id));
    assert_eq!(items[0]["sender"], "northshire-cc");
    let entry = json(
        &police
            .get(&format!("/v1/inbox/{receipt_id}"))
            .await
            .expect("get"),
    );
    let sealed_env = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        entry["envelope_age_base64"].as_str().expect("envelope"),
    )
    .expect("base64");
    let mut sealed_payload = Vec::new();
    let dl = police
        .download(
            &format!("/v1/inbox/{receipt_id}/payload"),
            &mut sealed_payload,
        )
        .await
        .expect("download");
    assert_eq!(dl.status, 200);
    let key = b.org_key("northshire-police");
    assert_eq!(
        open_with(&sealed_payload, &key).expect("opens with the police's key"),
        data
    );
    let env: Value =
        serde_json::from_slice(&open_with(&sealed_env, &key).expect("envelope")).expect("JSON");
    assert_eq!(env["purpose"], "child-protection-s47");
    // Another organisation at B sees nothing of it.
    let mut health = b.connect(b_server.addr, "northshire-health").await;
    assert_eq!(
        json(&health.get("/v1/inbox").await.expect("list"))["items"],
        json!([])
    );
    assert_eq!(
        health
            .get(&format!("/v1/inbox/{receipt_id}"))
            .await
            .expect("get")
            .status,
        404
    );
    // Acknowledged: the payload is gone, the item remains listed with --all.
    assert_eq!(
        police
            .post_empty(&format!("/v1/inbox/{receipt_id}/ack"))
            .await
            .expect("ack")
            .status,
        200
    );
    let mut sink = Vec::new();
    assert_eq!(
        police
            .download(&format!("/v1/inbox/{receipt_id}/payload"), &mut sink)
            .await
            .expect("download")
            .status,
        410
    );
    assert_eq!(
        json(&police.get("/v1/inbox").await.expect("list"))["items"],
        json!([])
    );
    assert_eq!(
        json(&police.get("/v1/inbox?all=true").await.expect("list"))["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(
        b.all_records()
            .iter()
            .any(|r| r["kind"] == "inbox_acknowledged")
    );

    // Callers of the wrong kind are refused: an organisation at the inbound endpoint, a peer
    // gateway at the API.
    let mut as_org = b.connect(b_server.addr, "northshire-cc").await;
    let r = as_org
        .raw(
            "POST",
            "/v1/inbound",
            &[("content-type", "multipart/form-data; boundary=x")],
            bytes::Bytes::from_static(b"--x--\r\n"),
        )
        .await
        .expect("post");
    assert_eq!(
        (r.status, json(&r)["code"].clone()),
        (403, json!("not_a_peer"))
    );
    let mut as_peer = b
        .connect_with(b_server.addr, Some(&a.server_identity()))
        .await
        .expect("connect");
    assert_eq!(
        json(&as_peer.get("/v1/inbox").await.expect("get"))["code"],
        "not_an_organisation"
    );

    a_server.stop().await;
    b_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_certificate_is_refused_both_ways() {
    // A does not trust B's certificate (A was told the wrong CA): dead at once, nothing arrives.
    let a = Deployment::with_daemon(FAST);
    let b = Deployment::new();
    let b_server = b.start().await;
    a.rewrite(
        "organisations.toml",
        "url = \"https://localhost:${api_port}/v1/inbound\"",
        &format!(
            "url = \"https://localhost:{}/v1/inbound\"",
            b_server.addr.port()
        ),
    );
    let a_server = a.start().await;
    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let id =
        json(&submit(&mut council, &envelope(json!({})), vec![5; 500], None).await)["transfer_id"]
            .as_str()
            .expect("id")
            .to_owned();
    let s = wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "a dead delivery",
        |s| s["state"] == "dead",
    )
    .await;
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(
        s["last_error"],
        "TLS handshake failed: the endpoint's certificate was not issued by a CA this gateway trusts for it",
        "{s}"
    );
    assert_eq!(last_attempt(&a)["cause"], "tls_certificate");
    let mut police = b.connect(b_server.addr, "northshire-police").await;
    assert_eq!(
        json(&police.get("/v1/inbox").await.expect("list"))["items"],
        json!([])
    );
    a_server.stop().await;

    // B does not know A (not a peer, CA not trusted): A's handshake is refused, nothing arrives.
    let a = Deployment::with_daemon(FAST);
    a.rewrite(
        "organisations.toml",
        "url = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"",
        &format!(
            "url = \"https://localhost:{}/v1/inbound\"\nca = \"{}\"",
            b_server.addr.port(),
            b.ca_path().display()
        ),
    );
    let a_server = a.start().await;
    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let id =
        json(&submit(&mut council, &envelope(json!({})), vec![5; 500], None).await)["transfer_id"]
            .as_str()
            .expect("id")
            .to_owned();
    let s = wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "a dead delivery",
        |s| s["state"] == "dead",
    )
    .await;
    assert!(
        s["last_error"].as_str().is_some_and(
            |e| e == "TLS handshake failed: the endpoint refused this gateway's certificate"
        ),
        "{s}"
    );
    assert_eq!(
        json(&police.get("/v1/inbox").await.expect("list"))["items"],
        json!([])
    );
    a_server.stop().await;
    b_server.stop().await;
}

/// A peer gateway delivers only in the names it is registered for: here the gateway delivering
/// to itself may speak for the police but not for the council.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_may_deliver_only_for_its_registered_senders() {
    let d = Deployment::with_daemon(FAST);
    d.rewrite(
        "peers.toml",
        "senders = [\"northshire-cc\", ",
        "senders = [",
    );
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let refused =
        json(&submit(&mut council, &envelope(json!({})), vec![7; 700], None).await)["transfer_id"]
            .as_str()
            .expect("id")
            .to_owned();
    let s = wait_recipient(
        &mut council,
        &refused,
        "northshire-police",
        "a dead delivery",
        |s| s["state"] == "dead",
    )
    .await;
    assert_eq!(s["attempts"], 1, "a 403 is permanent: {s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403") && e.contains("sender_not_permitted")),
        "{s}"
    );
    assert_eq!(last_attempt(&d)["cause"], "recipient_refused");

    let mut police = d.connect(server.addr, "northshire-police").await;
    let allowed = json(
        &submit(
            &mut police,
            &envelope(json!({"recipients": ["northshire-mash"]})),
            vec![8; 800],
            None,
        )
        .await,
    )["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_recipient(&mut police, &allowed, "northshire-mash", "delivery", |s| {
        s["state"] == "delivered"
    })
    .await;
    let inbox: Vec<String> = d
        .reader()
        .conn()
        .unwrap()
        .prepare("SELECT transfer_id FROM inbox")
        .expect("query")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("inbox");
    assert_eq!(
        inbox,
        vec![allowed],
        "only the permitted sender's transfer arrived"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_deleted_once_every_recipient_is_done() {
    let d = Deployment::with_daemon(&format!("{FAST}payload_grace_secs = 0\n"));
    let server = d.start().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    // To the police (mutual TLS to this very gateway) and the youth club (this gateway's inbox).
    let data = payload(200_000, 25);
    let id = json(&submit(&mut council, &envelope(json!({"recipients": ["northshire-police", "riverside-youth"], "marking": "OFFICIAL", "data_categories": ["personal"], "special_category_condition": null})), data, None).await)["transfer_id"].as_str().expect("id").to_owned();
    eventually(20, "the payload to be purged", || async {
        d.all_records()
            .iter()
            .any(|r| r["kind"] == "payload_purged")
            .then_some(())
    })
    .await;
    assert!(d.spool_files().is_empty(), "{:?}", d.spool_files());
    for org in ["northshire-police", "riverside-youth"] {
        assert_eq!(
            recipient_state(&mut council, &id, org).await["state"],
            "delivered"
        );
    }
    // Both deliveries landed in this gateway's inbox, one each.
    let r = d.reader();
    let n: i64 = r
        .conn()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM inbox WHERE transfer_id = ?1",
            [&id],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(n, 2);
    server.stop().await;
    let _ = Duration::ZERO;
}

/// A transfer whose email would exceed the relay's limit is refused before anything is kept,
/// counting the message as the relay will (base64 and the rest), not just the sealed payload; one
/// that fits is accepted.
#[tokio::test]
async fn a_payload_too_large_for_email_is_refused_at_submission() {
    let limit = 200_000u64;
    let d = Deployment::with_daemon(&format!(
        "[smtp]\nrelays = [{{ host = \"127.0.0.1\", port = 1, tls = \"starttls\" }}]\nmax_message_bytes = {limit}\n"
    ));
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    // 120,000 bytes seal to a little more, and encode to about 165,000: with the room for the
    // rest of the message, over 200,000, although the sealed payload alone is under it.
    let too_big = submit(&mut police, &to_council(), payload(120_000, 3), None).await;
    assert_eq!(
        too_big.status,
        413,
        "{}",
        String::from_utf8_lossy(&too_big.body)
    );
    let p = json(&too_big);
    assert_eq!(p["code"], "payload_too_large_for_email");
    assert_eq!(p["field"], "payload");
    assert!(d.spool_files().is_empty(), "nothing was kept");
    assert_eq!(d.transfers(), 0);
    let fits = submit(&mut police, &to_council(), payload(80_000, 3), None).await;
    assert_eq!(fits.status, 202, "{}", String::from_utf8_lossy(&fits.body));
    server.stop().await;
}

/// A queued delivery whose row no longer parses (a damaged database) is ended, alone: the
/// worker goes on with the others instead of meeting it again at every sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queued_delivery_is_ended_and_the_rest_go_on() {
    let (l, port) = listener().await;
    drop(l); // the relay is down: both deliveries wait
    let d = with_relay(port, "");
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = submit(&mut police, &to_council(), vec![4; 100], None).await;
        assert_eq!(answer.status, 202);
        ids.push(
            json(&answer)["transfer_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    server.stop().await;
    // Damage the first transfer's sender while the gateway is stopped.
    let db = postern_gateway::store::db_path(&d.state_dir);
    let c = rusqlite::Connection::open(db).expect("open");
    c.execute(
        "UPDATE transfers SET sender = 'not an id!' WHERE id = ?1",
        [&ids[0]],
    )
    .expect("damage");
    drop(c);

    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    common::eventually(20, "the damaged delivery to end", || {
        let state: (String, Option<String>) = d
            .reader()
            .conn()
            .unwrap()
            .query_row(
                "SELECT state, last_error FROM deliveries WHERE transfer_id = ?1",
                [&ids[0]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        async move { (state.0 == "dead").then_some(state.1) }
    })
    .await
    .filter(|e| e.contains("damaged"))
    .expect("ended as damaged");
    // The other goes on being tried.
    wait_recipient(
        &mut police,
        &ids[1],
        "northshire-cc",
        "another attempt",
        |s| s["state"] == "retrying" && s["attempts"].as_i64() >= Some(2),
    )
    .await;
    server.stop().await;
}

/// Relay connections are opened by the gateway itself and kept: a second message goes over the
/// first connection. A reload drops the kept ones, so a relay that has since stopped offering
/// STARTTLS gets nothing in plaintext, although the connection opened before is still up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_connections_are_reused_and_dropped_on_reload() {
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let smtp = sink(l, &d.ca(), SinkOptions::default());
    let (server, reloader) = d.start_reloadable().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut share = async |state: &str| {
        let id = share_to_council(&mut police, vec![3; 800]).await;
        wait_recipient(&mut police, &id, "northshire-cc", state, |s| {
            s["state"] == state
        })
        .await
    };
    share("delivered").await;
    share("delivered").await;
    assert_eq!(smtp.received().len(), 2);
    assert_eq!(
        smtp.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second message went over the first connection"
    );
    assert!(smtp.received().iter().all(|m| m.tls));

    // A plaintext server takes the relay's port; the kept connection to the old one lives on.
    drop(smtp);
    let plain = loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break SmtpSink::start(l, SinkOptions::default()).expect("sink"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    reloader.reload(&d.load_options()).await.expect("reload");
    let s = share("retrying").await;
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not offer STARTTLS")),
        "{s}"
    );
    assert!(plain.received().is_empty(), "nothing was sent in plaintext");
    assert!(plain.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    server.stop().await;
}

/// A relay with TLS from the first byte (`tls = "implicit"`), verified against its CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_implicit_tls_receives_over_tls() {
    let (l, port) = listener().await;
    let d = with_implicit_relay(port);
    let smtp = sink(
        l,
        &d.ca(),
        SinkOptions {
            implicit: true,
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![4; 600]).await;
    let s = wait_recipient(&mut police, &id, "northshire-cc", "delivered", |s| {
        s["state"] == "delivered" || s["state"] == "dead"
    })
    .await;
    assert_eq!(s["state"], "delivered", "{s}");
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    server.stop().await;

    // The same relay with a certificate from a CA the gateway does not trust: refused.
    let (l, port) = listener().await;
    let d = with_implicit_relay(port);
    let foreign = postern_gateway::pki::Ca::generate("Someone else's CA").expect("ca");
    let impostor = sink(
        l,
        &foreign,
        SinkOptions {
            implicit: true,
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let id = share_to_council(&mut police, vec![4; 600]).await;
    let s = wait_recipient(&mut police, &id, "northshire-cc", "dead", |s| {
        s["state"] == "dead"
    })
    .await;
    assert_eq!(s["attempts"], 1, "{s}");
    assert!(impostor.received().is_empty());
    assert_eq!(last_attempt(&d)["cause"], "tls_certificate");
    server.stop().await;
}

/// A relay that closes each connection after one message: a kept connection is checked before
/// use, so every message still goes through at its first attempt, each over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_hangs_up_after_each_message_gets_each_at_the_first_attempt() {
    let (l, port) = listener().await;
    let d = with_relay(port, "");
    let smtp = sink(
        l,
        &d.ca(),
        SinkOptions {
            one_message_per_connection: true,
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    for i in 0..3u8 {
        let id = share_to_council(&mut police, vec![i; 700]).await;
        let s = wait_recipient(&mut police, &id, "northshire-cc", "delivered", |s| {
            s["state"] == "delivered" || s["state"] == "retrying" || s["state"] == "dead"
        })
        .await;
        assert_eq!(s["state"], "delivered", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
    }
    assert_eq!(smtp.received().len(), 3);
    assert_eq!(
        smtp.connections.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_to_one_recipient_goes_at_most_per_recipient_at_once_each_once() {
    // A slow relay and a limit of two attempts at once to the council: a backlog of ten drains
    // two at a time, never more, each delivered once.
    let (l, port) = listener().await;
    let d = with_relay(port, "per_recipient = 2\n");
    let smtp = sink(
        l,
        &d.ca(),
        SinkOptions {
            hold: Duration::from_millis(150),
            ..SinkOptions::default()
        },
    );
    let server = d.start().await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    let mut ids = Vec::new();
    for i in 0..10u8 {
        ids.push(share_to_council(&mut police, vec![i; 500]).await);
    }
    for id in &ids {
        let s = wait_recipient(&mut police, id, "northshire-cc", "delivered", |s| {
            s["state"] == "delivered" || s["state"] == "dead"
        })
        .await;
        assert_eq!(s["state"], "delivered", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
    }
    assert_eq!(smtp.received().len(), 10);
    let most = smtp.most_at_once.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 2, "messages at the relay at once");
    let attempts = d
        .all_records()
        .into_iter()
        .filter(|r| r["kind"] == "delivery_attempt" && r["outcome"] == "delivered")
        .count();
    assert_eq!(attempts, 10);
    server.stop().await;
}
