//! Who may speak for whom: every identity belongs to the CA that issued it, and revocation or a
//! reload reaches connections that are already open. Real sockets, real TLS, certificates made
//! by the project's own PKI code, and `postern pki revoke` run as the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;
use std::process::Command;

use common::Deployment;
use postern_gateway::client::{Connection, Identity};
use postern_gateway::pki::Ca;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// A second CA, trusted so that its gateway (`westshire-gateway`) can deliver here.
struct Westshire {
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Westshire {
    fn new() -> (Self, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("Westshire CA").expect("ca");
        ca.save(dir.path()).expect("save");
        let file = dir.path().join("ca.crt");
        let tls = format!(
            "[tls]\nclient_cas = [{{ name = \"local\", file = \"${{state_dir}}/pki/ca.crt\" }}, {{ name = \"westshire\", file = \"{}\" }}]\n",
            file.display()
        );
        (Westshire { ca, _dir: dir }, tls)
    }
}

fn identity(ca: &Ca, name: &str) -> Identity {
    let issued = ca.issue_client(name, &[name.to_owned()]).expect("issue");
    Identity {
        chain: vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")],
        key: PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
    }
}

/// What a GET answers with this identity on a new connection: the status and code, or `None`
/// when the TLS handshake refused it (in TLS 1.3 the client learns at its first request).
async fn try_get(
    d: &Deployment,
    addr: std::net::SocketAddr,
    id: &Identity,
    path: &str,
) -> Option<(u16, Value)> {
    let mut c = d.connect_with(addr, Some(id)).await.ok()?;
    let a = c.get(path).await.ok()?;
    Some((a.status, common::json(&a)["code"].clone()))
}

const NO_SUCH_TRANSFER: &str = "/v1/transfers/0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_trusted_ca_cannot_speak_for_this_gateways_organisations_or_peers() {
    let (westshire, tls) = Westshire::new();
    let d = Deployment::with_daemon(&tls);
    std::fs::write(
        d.config_dir.join("peers.toml"),
        format!(
            "{}\n[[peer]]\nid = \"westshire-gateway\"\nname = \"Westshire gateway\"\nidentities = [{{ san = \"gateway.westshire.example\", ca = \"westshire\" }}]\nsenders = [\"westshire-cc\"]\n",
            include_str!("../config/demo/peers.toml")
        ),
    )
    .expect("write");
    let server = d.start().await;
    let local = d.ca();

    // The westshire CA issuing this gateway's names: the council's, and the demo peer's.
    for name in [
        "northshire-cc.clients.postern.test",
        postern_gateway::runtime::devkit::DEMO_PEER_NAME,
        "localhost",
    ] {
        let forged = identity(&westshire.ca, name);
        assert_eq!(
            try_get(&d, server.addr, &forged, NO_SUCH_TRANSFER).await,
            None,
            "a certificate for `{name}` from the westshire CA is refused at the handshake"
        );
    }
    // ... and the local CA issuing the westshire peer's name.
    let forged = identity(&local, "gateway.westshire.example");
    assert_eq!(
        try_get(&d, server.addr, &forged, "/v1/inbox").await,
        None,
        "the peer's name from the local CA is refused"
    );

    // The real ones still work: the council from the local CA, the peer from its own CA.
    let council = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &council, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found")))
    );
    let peer = identity(&westshire.ca, "gateway.westshire.example");
    assert_eq!(
        try_get(&d, server.addr, &peer, "/v1/inbox").await,
        Some((403, json!("not_an_organisation"))),
        "authenticated, as the peer it is"
    );
    server.stop().await;
}

fn postern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("POSTERN_LOG")
        .output()
        .expect("run postern")
}

fn revoke(pki: &Path, org: &str) -> String {
    let cert = pki.join("clients").join(format!("{org}.crt"));
    let out = postern(&[
        "pki",
        "revoke",
        "--dir",
        pki.to_str().expect("utf8"),
        "--cert",
        cert.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn get(c: &mut Connection, path: &str) -> Option<(u16, Value)> {
    let a = c.get(path).await.ok()?;
    Some((a.status, common::json(&a)["code"].clone()))
}

/// `postern pki revoke` writes the list the gateway reads; after a reload, a connection that
/// was opened before the revocation and kept alive is refused at its next request, and a new
/// one fails its handshake. Other organisations are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_connections_already_open() {
    let d = Deployment::new();
    let (server, reloader) = d.start_reloadable().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found")))
    );

    let pki = d.state_dir.join("pki");
    let said = revoke(&pki, "northshire-cc");
    assert!(
        said.contains("list number 1, 1 certificate(s) revoked"),
        "{said}"
    );
    let mut toml = std::fs::read_to_string(d.config_dir.join("postern.toml")).expect("read");
    toml.push_str("\n[tls]\nclient_crls = [\"${state_dir}/pki/crl.pem\"]\n");
    std::fs::write(d.config_dir.join("postern.toml"), toml).expect("write");
    let reloaded = reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!((reloaded.client_crls, reloaded.revoked), (1, 1));

    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        Some((401, json!("certificate_no_longer_accepted"))),
        "the kept-alive connection is refused at its next request"
    );
    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        None,
        "and closed after that answer"
    );
    let revoked = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &revoked, NO_SUCH_TRANSFER).await,
        None,
        "a new connection fails its handshake"
    );
    assert_eq!(
        get(&mut police, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found"))),
        "the police's open connection is not affected"
    );

    // A second revocation keeps the first: one complete list, numbered after the last.
    let said = revoke(&pki, "northshire-police");
    assert!(
        said.contains("list number 2, 2 certificate(s) revoked (1 new)"),
        "{said}"
    );
    reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!(
        get(&mut police, NO_SUCH_TRANSFER).await,
        Some((401, json!("certificate_no_longer_accepted")))
    );
    assert_eq!(
        try_get(&d, server.addr, &revoked, NO_SUCH_TRANSFER).await,
        None,
        "still revoked"
    );
    server.stop().await;
}

/// An identity removed by a reload stops working on connections already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_removed_by_a_reload_reaches_connections_already_open() {
    let d = Deployment::new();
    let (server, reloader) = d.start_reloadable().await;
    let mut youth = d.connect(server.addr, "riverside-youth").await;
    assert_eq!(
        common::json(&youth.get("/v1/inbox").await.expect("inbox"))["items"],
        json!([])
    );
    d.rewrite(
        "organisations.toml",
        "{ san = \"riverside-youth.clients.postern.test\", ca = \"local\" }",
        "{ san = \"riverside-youth.clients.northshire.example\", ca = \"local\" }",
    );
    reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!(
        get(&mut youth, "/v1/inbox").await,
        Some((401, json!("certificate_no_longer_accepted")))
    );
    server.stop().await;
}

/// A multipart body for `POST /v1/inbound`.
fn inbound_body(meta: &Value, payload: &[u8]) -> (String, bytes::Bytes) {
    let b = "postern-test-boundary";
    let mut body = Vec::new();
    for (name, bytes) in [
        ("meta", serde_json::to_vec(meta).expect("json")),
        ("envelope", b"age-encrypted envelope".to_vec()),
        ("payload", payload.to_vec()),
    ] {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={b}"),
        bytes::Bytes::from(body),
    )
}

fn meta(patch: Value) -> Value {
    let mut m = json!({
        "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
        "recipient": "riverside-youth",
        "sender": "northshire-cc",
        "sender_name": "Northshire County Council Children's Services",
        "purpose": "early-help",
        "marking": "OFFICIAL",
        "retain_until": "2030-01-01"
    });
    if let (Some(o), Some(p)) = (m.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    m
}

async fn deliver(c: &mut Connection, meta: &Value) -> (u16, Value) {
    let (ct, body) = inbound_body(meta, b"sealed payload bytes");
    let a = c
        .raw("POST", "/v1/inbound", &[("content-type", &ct)], body)
        .await
        .expect("post");
    (a.status, common::json(&a))
}

/// The receiving gateway holds a peer's delivery to its own rules: what its organisation must
/// not hold is refused with a stable code and field, recorded, and nothing is kept; a repeat
/// that describes a held delivery differently is a conflict, not a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_deliveries_are_held_to_this_gateways_policy_and_refusals_are_recorded() {
    let d = Deployment::new();
    // The MASH receives here over a channel limited to OFFICIAL.
    d.rewrite(
        "organisations.toml",
        "age_recipients_file = \"${state_dir}/keys/orgs/northshire-mash.pub\"",
        "age_recipients_file = \"${state_dir}/keys/orgs/northshire-mash.pub\"\nmax_marking = \"OFFICIAL\"",
    );
    let server = d.start().await;
    let mut peer = d
        .connect_with(server.addr, Some(&d.server_identity()))
        .await
        .expect("connect as the peer");
    let id = |n: u32| format!("0193a7c4-5e2f-7b3a-9c1d-{n:012}");
    let cases = [
        (
            json!({"marking": "TOP SECRET"}),
            403,
            "marking_above_gateway",
            "meta.marking",
            "marking_within_gateway",
        ),
        (
            json!({"marking": ""}),
            422,
            "invalid_inbound",
            "meta.marking",
            "marking_recognised",
        ),
        (
            json!({"marking": "OFFICIAL-SENSITIVE"}),
            403,
            "marking_above_clearance",
            "meta.marking",
            "marking_within_clearance",
        ),
        (
            json!({"recipient": "northshire-mash", "marking": "OFFICIAL-SENSITIVE"}),
            403,
            "marking_above_channel",
            "meta.marking",
            "marking_within_channel",
        ),
        (
            json!({"purpose": "astrology"}),
            403,
            "unknown_purpose",
            "meta.purpose",
            "purpose_known",
        ),
        (
            json!({"retain_until": "2001-01-01"}),
            422,
            "invalid_inbound",
            "meta.retain_until",
            "retention_valid",
        ),
        (
            json!({"retain_until": "2999-01-01"}),
            422,
            "invalid_inbound",
            "meta.retain_until",
            "retention_valid",
        ),
        (
            json!({"sender": "westshire-cc"}),
            403,
            "sender_not_permitted",
            "meta.sender",
            "sender_permitted",
        ),
    ];
    for (n, (patch, status, code, field, rule)) in cases.iter().enumerate() {
        let m = meta(json!({"transfer_id": id(n as u32 + 1)}));
        let m = {
            let mut m = m;
            for (k, v) in patch.as_object().expect("patch") {
                m[k] = v.clone();
            }
            m
        };
        let (got, problem) = deliver(&mut peer, &m).await;
        assert_eq!(
            (got, problem["code"].as_str(), problem["field"].as_str()),
            (*status, Some(*code), Some(*field)),
            "{patch}: {problem}"
        );
        let refused = d
            .all_records()
            .into_iter()
            .filter(|r| r["kind"] == "inbound_refused")
            .find(|r| r["transfer_id"] == m["transfer_id"])
            .unwrap_or_else(|| panic!("{patch}: no inbound_refused record"));
        assert_eq!(
            (
                refused["rule"].as_str(),
                refused["code"].as_str(),
                refused["via"]["peer"].as_str(),
                refused["marking"].clone(),
            ),
            (
                Some(*rule),
                Some(*code),
                Some("northshire-gateway"),
                m["marking"].clone()
            ),
            "{refused}"
        );
    }
    let held = |d: &Deployment| -> i64 {
        d.reader()
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(held(&d), 0, "nothing refused was kept");
    assert!(
        std::fs::read_dir(d.state_dir.join("inbox"))
            .expect("dir")
            .next()
            .is_none()
    );

    // A good delivery, its faithful repeat, and a repeat that says something else.
    let good = meta(json!({"transfer_id": id(100)}));
    let (status, first) = deliver(&mut peer, &good).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = deliver(&mut peer, &good).await;
    assert_eq!((status, &again["receipt_id"]), (200, &first["receipt_id"]));
    let mut changed = good.clone();
    changed["purpose"] = json!("safeguarding-referral");
    changed["retain_until"] = json!("2031-01-01");
    let (status, problem) = deliver(&mut peer, &changed).await;
    assert_eq!(
        (status, problem["code"].as_str(), problem["field"].as_str()),
        (409, Some("inbound_conflict"), Some("meta")),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("purpose, retain_until"), "{detail}");
    assert!(
        d.all_records()
            .iter()
            .any(|r| r["kind"] == "inbound_refused"
                && r["code"] == "inbound_conflict"
                && r["transfer_id"] == good["transfer_id"]),
        "the conflict is recorded"
    );
    assert_eq!(held(&d), 1);
    let purpose: String = d
        .reader()
        .conn()
        .unwrap()
        .query_row("SELECT purpose FROM inbox", [], |r| r.get(0))
        .expect("purpose");
    assert_eq!(purpose, "early-help", "the first delivery stays as it was");
    server.stop().await;
}

/// What the receiving gateway refuses is a permanent failure for the sending one: dead at the
/// first attempt, with the receiver's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiving_gateways_refusal_is_permanent_for_the_sender() {
    let a = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    let b = Deployment::new();
    // B knows A's gateway as a peer (bound to A's CA), and clears the police to OFFICIAL only.
    b.accept_deliveries_from(&a);
    b.rewrite(
        "organisations.toml",
        "sector = \"police\"\nclearance = \"OFFICIAL-SENSITIVE\"",
        "sector = \"police\"\nclearance = \"OFFICIAL\"",
    );
    let b_server = b.start().await;
    a.deliver_police_to(&b, b_server.addr.port());
    let a_server = a.start().await;
    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let answer = common::submit(
        &mut council,
        &common::envelope(json!({"marking": "OFFICIAL-SENSITIVE PERSONAL"})),
        vec![3; 300],
        None,
    )
    .await;
    let id = common::json(&answer)["transfer_id"]
        .as_str()
        .expect("accepted")
        .to_owned();
    let s = common::wait_recipient(
        &mut council,
        &id,
        "northshire-police",
        "a dead delivery",
        |s| s["state"] == "dead",
    )
    .await;
    assert_eq!(s["attempts"], 1, "permanent at once: {s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403") && e.contains("marking_above_clearance")),
        "{s}"
    );
    assert!(
        b.all_records()
            .iter()
            .any(|r| r["kind"] == "inbound_refused" && r["code"] == "marking_above_clearance"),
        "the receiver recorded its refusal"
    );
    a_server.stop().await;
    b_server.stop().await;
}

/// A health trust's PKI: a root, an issuing CA below it, and two of Millbrook Academy's
/// certificates from the issuing CA (one of them revoked by the issuing CA's list).
struct Issuing {
    dir: tempfile::TempDir,
    revoked: Identity,
    good: Identity,
}

impl Issuing {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Ca::generate_root("Northshire Health Root CA", 1).expect("root");
        let issuing = root
            .issue_intermediate("Northshire Health Issuing CA")
            .expect("intermediate");
        root.save(&dir.path().join("root")).expect("save");
        issuing.save(&dir.path().join("issuing")).expect("save");
        let leaf = |cn: &str| {
            let issued = issuing
                .issue_client(cn, &["millbrook-academy.clients.postern.test".into()])
                .expect("issue");
            Identity {
                chain: vec![
                    CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert"),
                    CertificateDer::from_pem_slice(issuing.cert_pem().as_bytes()).expect("ca"),
                ],
                key: PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
            }
        };
        let (revoked, good) = (leaf("Millbrook revoked"), leaf("Millbrook"));
        let list = |ca: &Ca, stem: &str, revoked: &[CertificateDer<'_>]| {
            let key = std::fs::read_to_string(dir.path().join(stem).join("ca.key")).expect("key");
            let pem = postern_gateway::pki::crl::revocation_list(
                ca.cert_pem(),
                &key,
                &postern_gateway::pki::crl::ListParams {
                    revoked,
                    number: 1,
                    this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
                    valid_for: time::Duration::days(7),
                },
            )
            .expect("crl");
            std::fs::write(dir.path().join(format!("{stem}.crl")), pem).expect("write");
        };
        list(&issuing, "issuing", std::slice::from_ref(&revoked.chain[0]));
        list(&root, "root", &[]);
        std::fs::write(
            dir.path().join("bundle.crt"),
            format!("{}{}", root.cert_pem(), issuing.cert_pem()),
        )
        .expect("write");
        Issuing { dir, revoked, good }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A gateway whose Millbrook Academy certificates come from the health trust's CA, trusted
    /// as the entries `cas` (name, file) with the lists `crls`.
    fn deployment(&self, cas: &[(&str, &str)], crls: &[&str]) -> Deployment {
        let mut entries =
            vec!["{ name = \"local\", file = \"${state_dir}/pki/ca.crt\" }".to_owned()];
        entries.extend(cas.iter().map(|(name, file)| {
            format!("{{ name = \"{name}\", file = \"{}\" }}", self.path(file))
        }));
        let lists: Vec<String> = crls
            .iter()
            .map(|c| format!("\"{}\"", self.path(c)))
            .collect();
        let d = Deployment::with_daemon(&format!(
            "[tls]\nclient_cas = [{}]\nclient_crls = [{}]\n",
            entries.join(", "),
            lists.join(", ")
        ));
        let orgs = d.config_dir.join("organisations.toml");
        let text = std::fs::read_to_string(&orgs).expect("read");
        let from = "{ san = \"millbrook-academy.clients.postern.test\", ca = \"local\" }";
        assert!(text.contains(from));
        std::fs::write(
            &orgs,
            text.replace(
                from,
                "{ san = \"millbrook-academy.clients.postern.test\", ca = \"health\" }",
            ),
        )
        .expect("write");
        d
    }
}

/// Revocation by an issuing CA below a trusted root: the list is accepted when the issuing
/// CA's certificate is in the root's file or an entry of its own, and revokes in either case.
/// A list whose issuer the configuration does not hold is refused; and once an entry has lists,
/// a certificate none of them covers is refused rather than let through unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuing_ca_below_a_trusted_root_revokes_what_it_issued() {
    let pki = Issuing::new();
    async fn get(d: &Deployment, addr: std::net::SocketAddr, id: &Identity) -> Option<u16> {
        try_get(d, addr, id, "/v1/inbox").await.map(|(s, _)| s)
    }

    // The issuing CA's list, with only the root in the configuration: refused, saying why.
    let d = pki.deployment(&[("health", "root/ca.crt")], &["issuing.crl"]);
    let Err(errors) = postern_gateway::config::load(&d.load_options()) else {
        panic!("a list from an issuer the configuration does not hold must be refused");
    };
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.message.contains("tls.client_crls[0]")
                && e.message.contains("Northshire Health Issuing CA")
                && e.message.contains("not one of tls.client_cas")),
        "{errors}"
    );

    for (layout, cas) in [
        ("in the root's file", vec![("health", "bundle.crt")]),
        (
            "an entry of its own",
            vec![
                ("health", "root/ca.crt"),
                ("health-issuing", "issuing/ca.crt"),
            ],
        ),
    ] {
        let d = pki.deployment(&cas, &["issuing.crl", "root.crl"]);
        let server = d.start().await;
        assert_eq!(
            get(&d, server.addr, &pki.revoked).await,
            None,
            "issuing CA {layout}: the revoked certificate is refused at the handshake"
        );
        assert_eq!(
            get(&d, server.addr, &pki.good).await,
            Some(200),
            "issuing CA {layout}: the other certificate works"
        );
        server.stop().await;
    }

    // Only the root's list: nothing can say whether the issuing CA revoked the certificate.
    let d = pki.deployment(&[("health", "bundle.crt")], &["root.crl"]);
    let server = d.start().await;
    assert_eq!(
        get(&d, server.addr, &pki.good).await,
        None,
        "a certificate whose issuer's list is not configured is refused"
    );
    let council = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        get(&d, server.addr, &council).await,
        Some(200),
        "the local CA, which has no list, is unaffected"
    );
    server.stop().await;
}

/// Two trusted CAs with the same name (two deployments' development CAs, say): each one's list
/// is matched to it by its signature, and revokes only what that CA issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_of_two_cas_with_the_same_name_each_revoke_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = Ca::generate("Postern development CA").expect("ca");
    twin.save(dir.path()).expect("save");
    let twin_crl = postern_gateway::pki::crl::revocation_list(
        twin.cert_pem(),
        &std::fs::read_to_string(dir.path().join("ca.key")).expect("key"),
        &postern_gateway::pki::crl::ListParams {
            revoked: &[],
            number: 1,
            this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            valid_for: time::Duration::days(7),
        },
    )
    .expect("crl");
    std::fs::write(dir.path().join("twin.crl"), twin_crl).expect("write");
    let d = Deployment::with_daemon(&format!(
        "[tls]\nclient_cas = [{{ name = \"local\", file = \"${{state_dir}}/pki/ca.crt\" }}, {{ name = \"twin\", file = \"{}\" }}]\nclient_crls = [\"{}\", \"${{state_dir}}/pki/crl.pem\"]\n",
        dir.path().join("ca.crt").display(),
        dir.path().join("twin.crl").display()
    ));
    // The local CA's list (written by `pki revoke`) after the twin's, whose issuer has the
    // same name: each must find its own CA.
    let said = revoke(&d.state_dir.join("pki"), "northshire-cc");
    assert!(said.contains("1 certificate(s) revoked"), "{said}");
    let server = d.start().await;
    let council = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &council, NO_SUCH_TRANSFER).await,
        None,
        "revoked by the local CA's list"
    );
    let police = Identity::from_pem_file(&d.identity_path("northshire-police")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &police, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found"))),
        "the local CA's other certificates still work"
    );
    server.stop().await;
}
