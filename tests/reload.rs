//! Operations: SIGHUP reloads (organisations, agreements, certificates, CRLs) on the real binary,
//! an invalid configuration refused with the old one kept, revocation at the handshake, systemd's
//! notify protocol (READY, RELOADING, STOPPING, WATCHDOG), `${credentials_dir}` and
//! `check-config` where systemd credentials are not visible.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use postern_gateway::pki::crl;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BinaryServer, Deployment, envelope, json, submit};
use postern_gateway::client::{Identity, Submission};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

/// The socket a test binds to play systemd's part of the notify protocol.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn env(&self) -> String {
        self.path.display().to_string()
    }

    /// The next message, or None after `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("timeout");
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one with the line `want` (which is returned last); panics after 20 s.
    /// WATCHDOG=1 keep-alives in between are skipped.
    fn until(&self, want: &str) -> Vec<String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(m) = self.next(Duration::from_millis(200)) {
                if m.trim() == "WATCHDOG=1" {
                    continue;
                }
                let done = m.lines().any(|l| l == want);
                seen.push(m);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {want} from the gateway within 20 s; got {seen:?}");
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

fn signal(server: &BinaryServer, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{name}");
}

/// Starts the binary with a notify socket, and waits for its READY=1.
fn spawn_notified(d: &Deployment) -> (BinaryServer, NotifySocket) {
    let notify = NotifySocket::bind();
    let server = d.spawn_with_env(&[("NOTIFY_SOCKET", &notify.env())]);
    let first = notify.until("READY=1");
    assert_eq!(first.len(), 1, "READY=1 is the first message: {first:?}");
    (server, notify)
}

/// Sends SIGHUP and waits for the reload to finish; returns READY=1's message (its STATUS= says
/// whether the configuration was taken or refused).
fn reload(server: &BinaryServer, notify: &NotifySocket) -> String {
    signal(server, "HUP");
    let seen = notify.until("READY=1");
    assert!(
        has_line(&seen[0], "RELOADING=1"),
        "RELOADING=1 comes first: {seen:?}"
    );
    assert!(
        seen[0].lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 carries the time: {seen:?}"
    );
    seen.last().cloned().unwrap_or_default()
}

/// Whether a log line has the field `name` with `value` (as JSON writes it: `"text"`, `9`), in
/// either log format: text (`name="text"`) or JSON (`"name":"text"`).
fn has_field(line: &str, name: &str, value: &str) -> bool {
    line.contains(&format!("{name}={value}")) || line.contains(&format!("\"{name}\":{value}"))
}

/// Operational logs without colour codes.
fn plain(stderr: &str) -> String {
    let mut out = String::with_capacity(stderr.len());
    let mut chars = stderr.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn append(d: &Deployment, file: &str, text: &str) {
    let p = d.config_dir.join(file);
    let mut s = std::fs::read_to_string(&p).expect("read");
    s.push_str(text);
    std::fs::write(&p, s).expect("write");
}

/// The 1-based line of the first line of `file` that contains `needle`.
fn line_of(d: &Deployment, file: &str, needle: &str) -> usize {
    std::fs::read_to_string(d.config_dir.join(file))
        .expect("read")
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{file} has no line with {needle:?}"))
}

const HARBOUR: &str = r#"
[[organisation]]
id = "harbour-trust"
name = "Harbour Family Support Trust"
kind = "statutory"
sector = "health"
clearance = "OFFICIAL-SENSITIVE"
identities = [{ san = "harbour-trust.clients.postern.test", ca = "local" }]
[organisation.endpoint]
channel = "inbox"
age_recipients_file = "${state_dir}/keys/orgs/harbour-trust.pub"
"#;

const HARBOUR_AGREEMENT: &str = r#"
[[agreement]]
id = "harbour-isp"
title = "Council and Harbour Trust"
parties = ["northshire-cc", "harbour-trust"]
purposes = ["child-protection-s47"]
lawful_bases = ["public_task"]
max_marking = "OFFICIAL-SENSITIVE"
valid_from = 2000-01-01
valid_until = 2999-12-31
"#;

/// Adds the Harbour Trust to the organisations file and issues its certificate and age key.
fn add_harbour(d: &Deployment) {
    append(d, "organisations.toml", HARBOUR);
    let orgs = std::fs::read_to_string(d.config_dir.join("organisations.toml")).expect("read");
    postern_gateway::runtime::devkit::ensure(
        &d.state_dir,
        &postern_gateway::runtime::devkit::dev_orgs(&orgs).expect("orgs"),
    )
    .expect("material");
}

/// A payload of `chunks` × 256 KiB, sent slowly; `sent` counts the bytes handed over.
fn slow_payload(
    chunks: usize,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    let chunk = Bytes::from(common::payload(256 * 1024, 3));
    futures_util::stream::unfold(0usize, move |i| {
        let (chunk, sent) = (chunk.clone(), sent.clone());
        async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((Ok(chunk), i + 1))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_an_organisation_and_agreement_while_an_upload_in_progress_completes() {
    let d = Deployment::new();
    let (server, notify) = spawn_notified(&d);
    let mut cc = d.connect(server.addr, "northshire-cc").await;
    let to_harbour = envelope(json!({"recipients": ["harbour-trust"]}));
    let before = submit(&mut cc, &to_harbour, vec![1; 1000], None).await;
    assert_eq!(
        (before.status, json(&before)["code"].as_str()),
        (403, Some("unknown_recipient")),
        "not yet registered"
    );

    // An upload that is still going when the reload happens.
    let sent = Arc::new(AtomicU64::new(0));
    let total = 40 * 256 * 1024;
    let mut slow = d.connect(server.addr, "northshire-cc").await;
    let payload = slow_payload(40, sent.clone());
    let upload = tokio::spawn(async move {
        slow.submit(Submission {
            envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
            payload,
            payload_len: Some(total),
            file_name: None,
            content_type: None,
            idempotency_key: None,
        })
        .await
    });
    while sent.load(Ordering::Relaxed) < total / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    add_harbour(&d);
    append(&d, "agreements.toml", HARBOUR_AGREEMENT);
    // And two settings only a restart can change: logged, and otherwise ignored.
    append(&d, "postern.toml", "\n[limits]\nmax_connections = 100\n");
    d.rewrite(
        "postern.toml",
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:1\"",
    );
    let ready = reload(&server, &notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");
    assert!(
        sent.load(Ordering::Relaxed) < total,
        "the reload happened while the upload was in progress"
    );

    let answer = upload
        .await
        .expect("task")
        .expect("the upload was answered");
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // The connection opened before the reload is still served, under the new registry.
    let after = submit(&mut cc, &to_harbour, vec![2; 1000], None).await;
    assert_eq!(
        after.status,
        202,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    // The new organisation's certificate is accepted at the handshake, and it finds its item.
    let mut harbour = d.connect(server.addr, "harbour-trust").await;
    let id = json(&after)["transfer_id"].as_str().expect("id").to_owned();
    let start = Instant::now();
    loop {
        let list = harbour.get("/v1/inbox").await.expect("inbox");
        assert_eq!(list.status, 200);
        if json(&list)["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["transfer_id"] == json!(id)))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the transfer reaches harbour-trust's inbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The listener did not move: the old address still answers.
    assert_eq!(
        submit(&mut cc, &envelope(json!({})), vec![3; 10], None)
            .await
            .status,
        202
    );

    let log = plain(&server.terminate());
    assert!(
        log.lines().any(|l| l.contains("configuration reloaded")
            && has_field(l, "organisations", "9")
            && has_field(l, "agreements", "4")),
        "{log}"
    );
    for setting in ["\"api.listen\"", "\"limits\""] {
        assert!(
            log.lines()
                .any(|l| l.contains("needs a restart") && has_field(l, "setting", setting)),
            "{setting} needs a restart:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_on_sighup_is_refused_with_file_and_line_and_the_old_one_stays() {
    let d = Deployment::new();
    let (server, notify) = spawn_notified(&d);
    add_harbour(&d);
    append(
        &d,
        "agreements.toml",
        &HARBOUR_AGREEMENT.replace("\"child-protection-s47\"]", "\"no-such-purpose\"]"),
    );
    append(&d, "postern.toml", "\n[limits]\nmax_connections = 0\n");
    let purpose_line = line_of(&d, "agreements.toml", "no-such-purpose");
    let limit_line = line_of(&d, "postern.toml", "max_connections = 0");

    let ready = reload(&server, &notify);
    assert!(
        ready.contains("last reload refused (the new configuration has 2 error(s))"),
        "{ready}"
    );
    // The configuration in force is the one it started with: the council still sends, and the
    // organisation added alongside the errors is not registered.
    let mut cc = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut cc, &envelope(json!({})), vec![1; 100], None)
            .await
            .status,
        202
    );
    let refused = submit(
        &mut cc,
        &envelope(json!({"recipients": ["harbour-trust"]})),
        vec![1; 100],
        None,
    )
    .await;
    assert_eq!(
        (refused.status, json(&refused)["code"].as_str()),
        (403, Some("unknown_recipient"))
    );
    let id = Identity::from_pem_file(&d.identity_path("harbour-trust")).expect("identity");
    match d.connect_with(server.addr, Some(&id)).await {
        Err(_) => {}
        Ok(mut c) => assert!(
            c.get("/v1/inbox").await.is_err(),
            "harbour-trust must not be served"
        ),
    }

    // Fixed, it is taken.
    d.rewrite(
        "agreements.toml",
        "\"no-such-purpose\"]",
        "\"child-protection-s47\"]",
    );
    d.rewrite(
        "postern.toml",
        "max_connections = 0",
        "max_connections = 512",
    );
    let ready = reload(&server, &notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");
    let mut cc = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(
            &mut cc,
            &envelope(json!({"recipients": ["harbour-trust"]})),
            vec![1; 100],
            None
        )
        .await
        .status,
        202
    );

    let log = plain(&server.terminate());
    let agreements = d.config_dir.join("agreements.toml");
    let postern = d.config_dir.join("postern.toml");
    for at in [
        format!("{}:{purpose_line}", agreements.display()),
        format!("{}:{limit_line}", postern.display()),
    ] {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("configuration error")
                && l.contains(&at)),
            "an error logged at {at}:\n{log}"
        );
    }
    assert!(
        log.contains("configuration reload refused; the configuration in force is unchanged"),
        "{log}"
    );
}

/// The certificate a fresh connection is shown.
async fn served_certificate(d: &Deployment, addr: std::net::SocketAddr) -> Vec<u8> {
    let roots = postern_gateway::client::read_roots(&d.ca_path()).expect("roots");
    let id = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("identity");
    let config =
        postern_gateway::client::tls_config(&roots, Some(&id)).expect("client TLS configuration");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .to_vec()
}

fn pem_cert(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_served_to_new_connections_without_a_restart() {
    let d = Deployment::new();
    let (server, notify) = spawn_notified(&d);
    let pki = d.state_dir.join("pki");
    let old = pem_cert(&pki.join("server.crt"));
    assert_eq!(served_certificate(&d, server.addr).await, old);
    let mut established = d.connect(server.addr, "northshire-cc").await;

    // A new certificate and key, swapped in the way an operator would (rename over the old).
    let fresh = tempfile::tempdir().expect("tempdir");
    d.ca()
        .issue_gateway(&["localhost".into(), "127.0.0.1".into(), "::1".into()])
        .expect("issue")
        .save(fresh.path(), "server")
        .expect("save");
    for f in ["server.crt", "server.key"] {
        std::fs::rename(fresh.path().join(f), pki.join(f)).expect("rename");
    }
    let new = pem_cert(&pki.join("server.crt"));
    assert_ne!(old, new);
    let ready = reload(&server, &notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");

    assert_eq!(
        served_certificate(&d, server.addr).await,
        new,
        "a new connection gets the new certificate"
    );
    // The connection made before the reload goes on as it was.
    let a = established
        .get("/v1/transfers/00000000-0000-7000-8000-000000000000")
        .await
        .expect("the established connection still works");
    assert_eq!(a.status, 404);
    let mut cc = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut cc, &envelope(json!({})), vec![1; 100], None)
            .await
            .status,
        202
    );
    let log = plain(&server.terminate());
    // The delivery worker takes the new certificate too: nothing waits for a restart.
    assert!(!log.lines().any(|l| l.contains("needs a restart")), "{log}");
}

/// peers.toml registering `gateway`'s certificate as the council's gateway.
fn council_gateway_peer(gateway: &CertificateDer<'_>) -> String {
    let fp = postern_gateway::pki::fingerprint(gateway);
    format!(
        "[[peer]]\nid = \"council-gateway\"\nname = \"Council gateway\"\nidentities = [{{ fingerprint = \"{fp}\", ca = \"council\" }}]\nsenders = [\"northshire-cc\"]\n"
    )
}

/// Submits a transfer from the council at `a` to the police (delivered to their gateway) and
/// waits until that delivery is `state`; returns the recipient's status.
async fn deliver_to_police(
    a: &Deployment,
    addr: std::net::SocketAddr,
    state: &str,
) -> serde_json::Value {
    let mut council = a.connect(addr, "northshire-cc").await;
    let accepted = submit(&mut council, &envelope(json!({})), vec![7; 20_000], None).await;
    assert_eq!(accepted.status, 202);
    let id = json(&accepted)["transfer_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let s = common::wait_recipient(&mut council, &id, "northshire-police", state, |s| {
        s["state"] == "delivered" || s["state"] == "dead"
    })
    .await;
    assert_eq!(s["state"], state, "{s}");
    s
}

/// Gateway A delivers to gateway B over mutual TLS, presenting its server certificate. A's
/// certificate is rotated and A reloaded: its next delivery presents the new one (which B does
/// not know yet, so it is refused). B registers the new certificate instead of the old and is
/// reloaded: the next delivery arrives. Neither gateway restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_delivery_certificate_is_presented_to_peers_without_a_restart() {
    let a = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    let b = Deployment::new();
    // B trusts A's CA for client certificates and knows A's gateway certificate as a peer.
    append(
        &b,
        "postern.toml",
        &format!(
            "[tls]\nclient_cas = [{{ name = \"local\", file = \"${{state_dir}}/pki/ca.crt\" }}, {{ name = \"council\", file = \"{}\" }}]\n",
            a.ca_path().display()
        ),
    );
    let old_cert = a.server_identity().chain[0].clone();
    std::fs::write(
        b.config_dir.join("peers.toml"),
        council_gateway_peer(&old_cert),
    )
    .expect("write");
    let (b_server, b_notify) = spawn_notified(&b);
    // A reaches the police at B, verifying B against B's CA, sealing to the police's key at B.
    a.rewrite(
        "organisations.toml",
        "url = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-police.pub\"",
        &format!(
            "url = \"https://localhost:{}/v1/inbound\"\nca = \"{}\"\nage_recipients_file = \"{}\"",
            b_server.addr.port(),
            b.ca_path().display(),
            b.state_dir.join("keys/orgs/northshire-police.pub").display()
        ),
    );
    let (a_server, a_notify) = spawn_notified(&a);

    let first = deliver_to_police(&a, a_server.addr, "delivered").await;
    assert_eq!(first["channel"], "https");

    // A's certificate is rotated (renamed over the old, as an operator would) and A reloaded.
    let pki = a.state_dir.join("pki");
    let fresh = tempfile::tempdir().expect("tempdir");
    a.ca()
        .issue_gateway(&["localhost".into(), "127.0.0.1".into(), "::1".into()])
        .expect("issue")
        .save(fresh.path(), "server")
        .expect("save");
    for f in ["server.crt", "server.key"] {
        std::fs::rename(fresh.path().join(f), pki.join(f)).expect("rename");
    }
    let new_cert = a.server_identity().chain[0].clone();
    assert_ne!(old_cert, new_cert);
    let ready = reload(&a_server, &a_notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");

    // The next delivery presents the new certificate (not the old one, nor a connection pooled
    // with it), which B does not know yet: refused at the handshake.
    let refused = deliver_to_police(&a, a_server.addr, "dead").await;
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS")),
        "{refused}"
    );

    // B registers the new certificate only, and is reloaded: the next delivery arrives.
    std::fs::write(
        b.config_dir.join("peers.toml"),
        council_gateway_peer(&new_cert),
    )
    .expect("write");
    let ready = reload(&b_server, &b_notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");
    let second = deliver_to_police(&a, a_server.addr, "delivered").await;
    let receipt = second["receipt"]["receipt_id"]
        .as_str()
        .expect("receipt")
        .to_owned();

    let mut police = b.connect(b_server.addr, "northshire-police").await;
    let list = json(&police.get("/v1/inbox").await.expect("list"));
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "the first and the last delivery: {list}");
    assert!(items.iter().any(|i| i["id"] == json!(receipt)), "{list}");

    let a_log = plain(&a_server.terminate());
    assert!(
        !a_log.lines().any(|l| l.contains("needs a restart")),
        "{a_log}"
    );
    b_server.terminate();
}

/// A second certificate for `org` (same SAN, so the same organisation), saved as a PEM identity.
fn spare_identity(d: &Deployment, org: &str, dir: &Path) -> (Identity, CertificateDer<'static>) {
    let issued = d
        .ca()
        .issue_client(
            &format!("{org} spare"),
            &[format!("{org}.clients.postern.test")],
        )
        .expect("issue");
    let pem = issued.save(dir, &format!("{org}-spare")).expect("save");
    let id = Identity::from_pem_file(&pem).expect("identity");
    let cert = id.chain[0].clone();
    (id, cert)
}

/// A CRL from the deployment's CA revoking `revoked`.
fn crl(d: &Deployment, revoked: &[CertificateDer<'_>], number: u64) -> String {
    let pki = d.state_dir.join("pki");
    crl::revocation_list(
        &std::fs::read_to_string(pki.join("ca.crt")).expect("ca"),
        &std::fs::read_to_string(pki.join("ca.key")).expect("ca key"),
        &crl::ListParams {
            revoked,
            number,
            this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            valid_for: time::Duration::days(7),
        },
    )
    .expect("crl")
}

/// Whether `id` gets as far as an answer from the gateway.
async fn served(d: &Deployment, addr: std::net::SocketAddr, id: &Identity) -> bool {
    match d.connect_with(addr, Some(id)).await {
        Err(_) => false,
        Ok(mut c) => c.get("/v1/inbox").await.is_ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_in_a_crl_is_refused_at_the_handshake() {
    let d = Deployment::with_daemon("[tls]\nclient_crls = [\"${config_dir}/crl/orgs.crl.pem\"]\n");
    let keep = tempfile::tempdir().expect("tempdir");
    let (revoked, revoked_cert) = spare_identity(&d, "northshire-cc", keep.path());
    std::fs::create_dir_all(d.config_dir.join("crl")).expect("dir");
    std::fs::write(
        d.config_dir.join("crl/orgs.crl.pem"),
        crl(&d, &[revoked_cert], 1),
    )
    .expect("write");
    let server = d.start().await;
    assert!(
        !served(&d, server.addr, &revoked).await,
        "a revoked certificate is refused"
    );
    let cc = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("identity");
    assert!(
        served(&d, server.addr, &cc).await,
        "the organisation's other certificate still works"
    );
    assert!(d.records().is_empty(), "nothing reached a handler");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_added_by_reload_takes_effect_for_new_connections_and_a_bad_one_is_refused() {
    let d = Deployment::new();
    let keep = tempfile::tempdir().expect("tempdir");
    let (spare, spare_cert) = spare_identity(&d, "northshire-police", keep.path());
    let (server, notify) = spawn_notified(&d);
    assert!(served(&d, server.addr, &spare).await);
    let mut established = d
        .connect_with(server.addr, Some(&spare))
        .await
        .expect("connect");

    // DER this time, one file per CA.
    let pem = crl(&d, &[spare_cert], 1);
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
        .expect("der");
    std::fs::create_dir_all(d.config_dir.join("crl")).expect("dir");
    std::fs::write(d.config_dir.join("crl/orgs.crl"), der.as_ref()).expect("write");
    append(
        &d,
        "postern.toml",
        "\n[tls]\nclient_crls = [\"${config_dir}/crl/orgs.crl\"]\n",
    );
    let ready = reload(&server, &notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");
    assert!(
        !served(&d, server.addr, &spare).await,
        "revoked from the next handshake on"
    );
    let police = Identity::from_pem_file(&d.identity_path("northshire-police")).expect("id");
    assert!(served(&d, server.addr, &police).await);
    assert!(
        established.get("/v1/inbox").await.is_ok(),
        "a connection made before the reload is not cut off"
    );

    // A list from a CA that is not trusted for clients is refused; the one in force stays.
    let foreign = postern_gateway::pki::Ca::generate("Foreign CA").expect("ca");
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    foreign.save(foreign_dir.path()).expect("save");
    let foreign_crl = crl::revocation_list(
        foreign.cert_pem(),
        &std::fs::read_to_string(foreign_dir.path().join("ca.key")).expect("key"),
        &crl::ListParams {
            revoked: &[],
            number: 1,
            this_update: time::OffsetDateTime::now_utc(),
            valid_for: time::Duration::days(1),
        },
    )
    .expect("crl");
    std::fs::write(d.config_dir.join("crl/orgs.crl"), foreign_crl).expect("write");
    let ready = reload(&server, &notify);
    assert!(ready.contains("last reload refused"), "{ready}");
    assert!(
        !served(&d, server.addr, &spare).await,
        "still revoked: the list in force stayed"
    );
    assert!(served(&d, server.addr, &police).await);

    let log = plain(&server.terminate());
    let at = format!(
        "{}:{}",
        d.config_dir.join("postern.toml").display(),
        line_of(&d, "postern.toml", "client_crls")
    );
    assert!(
        log.lines().any(|l| l.contains(&at)
            && l.contains("tls.client_crls")
            && l.contains("not one of tls.client_cas")),
        "the refused list is named at {at}:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("configuration reloaded")
                && has_field(l, "revoked_certificates", "1")),
        "{log}"
    );
}

#[test]
fn crls_that_cannot_be_used_are_configuration_errors_with_file_and_line() {
    let d = Deployment::with_daemon(
        "[tls]\nclient_crls = [\"${config_dir}/a.crl\", \"${config_dir}/missing.crl\"]\n",
    );
    std::fs::write(
        d.config_dir.join("a.crl"),
        "-----BEGIN X509 CRL-----\nnope\n",
    )
    .expect("w");
    let opts = LoadOptions {
        dir: ConfigDir::Dir(d.config_dir.clone()),
        overrides: Overrides::default(),
        env: Some(HashMap::new()),
    };
    let Err(errors) = config::load(&opts) else {
        panic!("the configuration must be refused");
    };
    let at = format!(
        "{}:{}",
        d.config_dir.join("postern.toml").display(),
        line_of(&d, "postern.toml", "client_crls")
    );
    let text = errors.to_string();
    for want in ["tls.client_crls[0]", "tls.client_crls[1]"] {
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.to_string().starts_with(&at) && e.message.contains(want)),
            "{want} at {at}:\n{text}"
        );
    }
}

/// A deployment whose TLS key is a systemd credential.
fn with_credential_key() -> (Deployment, tempfile::TempDir) {
    let d = Deployment::with_daemon("[tls]\nprivate_key = \"${credentials_dir}/server.key\"\n");
    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        d.state_dir.join("pki/server.key"),
        creds.path().join("server.key"),
    )
    .expect("copy");
    (d, creds)
}

#[test]
fn credentials_dir_names_systemd_credentials() {
    let (d, creds) = with_credential_key();
    let opts = |env: &[(&str, &Path)]| LoadOptions {
        dir: ConfigDir::Dir(d.config_dir.clone()),
        overrides: Overrides::default(),
        env: Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string()))
                .collect(),
        ),
    };
    let loaded = config::load(&opts(&[("CREDENTIALS_DIRECTORY", creds.path())]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.daemon.tls.private_key,
        creds.path().join("server.key")
    );

    // The gateway without the credentials directory: an error at the key's line.
    let Err(errors) = config::load(&opts(&[])) else {
        panic!("refused without CREDENTIALS_DIRECTORY");
    };
    let at = format!(
        "{}:{}",
        d.config_dir.join("postern.toml").display(),
        line_of(&d, "postern.toml", "private_key")
    );
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.to_string().starts_with(&at) && e.message.contains("CREDENTIALS_DIRECTORY")),
        "{errors}"
    );
    // check-config without them lists the file as not checked, and passes.
    let checked = config::check(&opts(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checked.unchecked,
        vec!["tls.private_key: `${credentials_dir}/server.key`".to_owned()]
    );
}

#[test]
fn check_config_passes_where_the_credentials_are_not_visible_and_says_what_it_skipped() {
    let (d, creds) = with_credential_key();
    let run = |creds: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
        cmd.arg("check-config")
            .arg("--config")
            .arg(&d.config_dir)
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(c) = creds {
            cmd.env("CREDENTIALS_DIRECTORY", c);
        }
        cmd.output().expect("run check-config")
    };
    // As ExecReload= sees it before systemd 260: the variable set, the directory not there.
    for creds in [None, Some(Path::new("/nonexistent/credentials"))] {
        let out = run(creds);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("not checked here") && stdout.contains("tls.private_key"),
            "{stdout}"
        );
    }
    // Where they are visible, everything is checked.
    let out = run(Some(creds.path()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("not checked"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_reloading_stopping_and_keep_alives_and_sigterm_exits_0() {
    let d = Deployment::new();
    let notify = NotifySocket::bind();
    let mut server = d.spawn_with_env(&[
        ("NOTIFY_SOCKET", &notify.env()),
        // 400 ms: keep-alives every 200 ms.
        ("WATCHDOG_USEC", "400000"),
    ]);
    let first = notify.until("READY=1");
    assert_eq!(first.len(), 1, "READY=1 first: {first:?}");
    assert!(
        first[0].contains(&format!("STATUS=serving on {}", server.addr)),
        "{first:?}"
    );
    // Ready means accepting: a client is served straight away.
    let mut cc = d.connect(server.addr, "northshire-cc").await;
    assert_eq!(
        submit(&mut cc, &envelope(json!({})), vec![1; 100], None)
            .await
            .status,
        202
    );

    let mut keep_alives = 0;
    let start = Instant::now();
    while keep_alives < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "WATCHDOG=1 every 200 ms"
        );
        if notify
            .next(Duration::from_millis(500))
            .is_some_and(|m| has_line(&m, "WATCHDOG=1"))
        {
            keep_alives += 1;
        }
    }

    let ready = reload(&server, &notify);
    assert!(ready.contains("configuration reloaded"), "{ready}");

    signal(&server, "TERM");
    let stopping = notify.until("STOPPING=1");
    assert!(
        !stopping.iter().any(|m| has_line(m, "READY=1")),
        "{stopping:?}"
    );
    let status = server.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}

/// What the unit's ExecReload= runs: `check-config --reload $MAINPID` signals the gateway only
/// when the configuration checks out, so a reload needs no `kill` binary (a minimal Debian has
/// none) and a broken configuration is never signalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reload_signals_the_gateway_only_when_the_configuration_is_clean() {
    let d = Deployment::new();
    let (server, notify) = spawn_notified(&d);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("check-config")
            .arg("--config")
            .arg(&d.config_dir)
            .args(["--reload", &server.pid().to_string()])
            .output()
            .expect("run check-config")
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reload signalled"), "{stdout}");
    let seen = notify.until("READY=1");
    assert!(has_line(&seen[0], "RELOADING=1"), "{seen:?}");

    append(&d, "postern.toml", "\n[limits]\nmax_connections = 0\n");
    let out = run();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limits.max_connections"),
        "the error is printed"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if let Some(m) = notify.next(Duration::from_millis(200)) {
            assert_eq!(m.trim(), "WATCHDOG=1", "nothing but keep-alives: {m}");
        }
    }
    let _ = server.terminate();
}
