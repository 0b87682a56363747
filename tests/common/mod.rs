//! Shared test harness: a scratch deployment (configuration directory, state directory,
//! certificates and keys made by the project's own PKI code), a gateway running in-process on
//! port 0 or as the real binary, and mutual-TLS clients for each organisation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::stream;
use postern_gateway::client::{self, Answer, Connection, Identity, Submission, Target};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use postern_gateway::pki::Ca;
use postern_gateway::runtime::devkit;
use postern_gateway::store::{LogFilter, Reader};
use serde_json::{Value, json};
use tempfile::TempDir;

pub mod web;

/// The demo organisations plus two that exist only to test agreements: one whose only agreement
/// has expired, one with no agreement at all.
pub fn organisations_toml() -> String {
    // The demo's organisations, with the MASH reached by mutual TLS at this gateway's inbound
    // endpoint (as a peer gateway would be): the delivery, inbound and trust tests need one
    // such recipient. The demo itself gives the MASH a portal (tests/web.rs gives it one too).
    let demo = include_str!("../../config/demo/organisations.toml").replace(
        "channel = \"portal\"\nidentity = \"${state_dir}/keys/orgs/northshire-mash.age\"\n",
        "channel = \"https\"\nurl = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-mash.pub\"\n",
    );
    assert!(
        demo.contains("northshire-mash.pub"),
        "the fixture's MASH endpoint"
    );
    let demo = demo.as_str();
    format!(
        "{demo}
[[organisation]]
id = \"old-partner\"
name = \"Old Partner Trust\"
kind = \"statutory\"
sector = \"other\"
clearance = \"OFFICIAL-SENSITIVE\"
identities = [{{ san = \"old-partner.clients.postern.test\", ca = \"local\" }}]
[organisation.endpoint]
channel = \"email\"
address = \"info@old-partner.example\"
age_recipients_file = \"${{state_dir}}/keys/orgs/old-partner.pub\"

[[organisation]]
id = \"lonely-charity\"
name = \"Lonely Charity\"
kind = \"voluntary\"
clearance = \"OFFICIAL-SENSITIVE\"
identities = [{{ san = \"lonely-charity.clients.postern.test\", ca = \"local\" }}]
[organisation.endpoint]
channel = \"email\"
address = \"info@lonely-charity.example\"
age_recipients_file = \"${{state_dir}}/keys/orgs/lonely-charity.pub\"
"
    )
}

/// Agreements valid for the foreseeable future (tests must not depend on today's date), and one
/// that has ended.
pub const AGREEMENTS: &str = r#"
[[agreement]]
id = "test-isp"
title = "Test information sharing protocol"
parties = ["northshire-cc", "northshire-police", "northshire-health", "millbrook-academy", "northshire-mash", "riverside-youth"]
purposes = ["child-protection-s47", "safeguarding-referral", "early-help", "mash-triage"]
lawful_bases = ["public_task", "legal_obligation", "legitimate_interests", "vital_interests", "consent"]
max_marking = "OFFICIAL-SENSITIVE"
valid_from = 2000-01-01
valid_until = 2999-12-31

[[agreement]]
id = "test-s115"
title = "Test s.115 agreement"
parties = ["northshire-cc", "northshire-police", "northshire-health", "northshire-mash"]
purposes = ["crime-prevention-s115"]
lawful_bases = ["public_task", "legal_obligation"]
max_marking = "OFFICIAL-SENSITIVE"
valid_from = 2000-01-01
valid_until = 2999-12-31

[[agreement]]
id = "ended-agreement"
title = "An agreement that has ended"
parties = ["northshire-cc", "old-partner"]
purposes = ["child-protection-s47"]
lawful_bases = ["public_task"]
max_marking = "OFFICIAL-SENSITIVE"
valid_from = 2001-01-01
valid_until = 2002-01-01
"#;

pub struct Deployment {
    pub dir: TempDir,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Deployment {
    pub fn new() -> Self {
        Self::with_daemon("")
    }

    /// A deployment whose postern.toml also contains `extra` (e.g. a `[limits]` section).
    pub fn with_daemon(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("config");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        let orgs = organisations_toml();
        devkit::ensure(&state_dir, &devkit::dev_orgs(&orgs).expect("orgs")).expect("dev material");
        std::fs::write(config_dir.join("organisations.toml"), &orgs).expect("write");
        std::fs::write(config_dir.join("agreements.toml"), AGREEMENTS).expect("write");
        std::fs::write(
            config_dir.join("purposes.toml"),
            include_str!("../../config/demo/purposes.toml"),
        )
        .expect("write");
        std::fs::write(
            config_dir.join("marking.toml"),
            include_str!("../../config/demo/marking.toml"),
        )
        .expect("write");
        std::fs::write(
            config_dir.join("peers.toml"),
            include_str!("../../config/demo/peers.toml"),
        )
        .expect("write");
        std::fs::write(
            config_dir.join("people.toml"),
            include_str!("../../config/demo/people.toml"),
        )
        .expect("write");
        // Email recipients need a relay; unless a test brings its own, point at a port nobody
        // listens on (deliveries by email then simply wait to be retried).
        let smtp = if extra.contains("[smtp]") {
            ""
        } else {
            "[smtp]\nrelays = [{ host = \"127.0.0.1\", port = 1, tls = \"starttls\" }]\n"
        };
        // The people's pages on a free port too, unless the test sets [web] itself.
        let web = if extra.contains("[web]") {
            ""
        } else {
            "[web]\nlisten = \"127.0.0.1:0\"\n"
        };
        let daemon = format!(
            "state_dir = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n{web}\n{smtp}\n{extra}\n",
            state_dir.display()
        );
        std::fs::write(config_dir.join("postern.toml"), daemon).expect("write");
        Deployment {
            dir,
            config_dir,
            state_dir,
        }
    }

    /// Makes this gateway (B) accept deliveries from `a`'s gateway: it trusts `a`'s CA (as the
    /// CA named `council`) and registers `a`'s gateway certificate, bound to it, as the peer
    /// `council-gateway` delivering for the council.
    pub fn accept_deliveries_from(&self, a: &Deployment) {
        let a_fp = postern_gateway::pki::fingerprint(&a.server_identity().chain[0]).to_string();
        let mut toml = std::fs::read_to_string(self.config_dir.join("postern.toml")).expect("read");
        toml.push_str(&format!(
            "\n[tls]\nclient_cas = [{{ name = \"local\", file = \"${{state_dir}}/pki/ca.crt\" }}, {{ name = \"council\", file = \"{}\" }}]\n",
            a.ca_path().display()
        ));
        std::fs::write(self.config_dir.join("postern.toml"), toml).expect("write");
        std::fs::write(
            self.config_dir.join("peers.toml"),
            format!("[[peer]]\nid = \"council-gateway\"\nname = \"Council gateway\"\nidentities = [{{ fingerprint = \"{a_fp}\", ca = \"council\" }}]\nsenders = [\"northshire-cc\"]\n"),
        )
        .expect("write");
    }

    /// Makes this gateway (A) reach the police at gateway `b` (listening on `port`): `b`'s
    /// inbound URL, verified against `b`'s CA, sealed to the police's key at `b`.
    pub fn deliver_police_to(&self, b: &Deployment, port: u16) {
        self.rewrite(
            "organisations.toml",
            "url = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-police.pub\"",
            &format!(
                "url = \"https://localhost:{port}/v1/inbound\"\nca = \"{}\"\nage_recipients_file = \"{}\"",
                b.ca_path().display(),
                b.state_dir.join("keys/orgs/northshire-police.pub").display()
            ),
        );
    }

    /// Replaces text in one of the configuration files (before the gateway starts).
    pub fn rewrite(&self, file: &str, from: &str, to: &str) {
        let p = self.config_dir.join(file);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains(from), "{file} does not contain {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
    }

    /// The age identity an organisation's deliveries are sealed to (the demo generates one each).
    pub fn org_key(&self, org: &str) -> postern_gateway::seal::SpoolKey {
        postern_gateway::seal::SpoolKey::from_file(
            &devkit::DevPaths::new(&self.state_dir).org_identity(org),
        )
        .expect("org key")
    }

    /// This deployment's gateway certificate and key (what it presents to peers, too).
    pub fn server_identity(&self) -> Identity {
        Identity::from_files(
            &self.state_dir.join("pki/server.crt"),
            &self.state_dir.join("pki/server.key"),
        )
        .expect("server identity")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.state_dir.join("pki/ca.crt")
    }

    pub fn identity_path(&self, org: &str) -> PathBuf {
        devkit::DevPaths::new(&self.state_dir).client_identity(org)
    }

    /// The deployment's own CA, for issuing extra certificates in tests.
    pub fn ca(&self) -> Ca {
        Ca::load(
            &self.state_dir.join("pki/ca.crt"),
            &self.state_dir.join("pki/ca.key"),
        )
        .expect("ca")
    }

    pub fn load(&self) -> config::Config {
        match config::load(&self.load_options()) {
            Ok(c) => c,
            Err(e) => panic!("test configuration invalid:\n{e}"),
        }
    }

    /// Runs the gateway in this process on an ephemeral port.
    pub async fn start(&self) -> Server {
        self.start_reloadable().await.0
    }

    /// The options that load this deployment's configuration (what a reload reads).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            dir: ConfigDir::Dir(self.config_dir.clone()),
            overrides: Overrides::default(),
            env: Some(Default::default()),
        }
    }

    /// As [`Deployment::start`], with the handle that reloads its configuration (SIGHUP's work).
    pub async fn start_reloadable(&self) -> (Server, postern_gateway::runtime::daemon::Reloader) {
        let prepared = postern_gateway::runtime::daemon::prepare(self.load())
            .await
            .expect("prepare");
        let reloader = prepared.reloader();
        let ops = prepared.ops_addr;
        let web = prepared.web_addr;
        let addr = prepared.addr;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            prepared
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        (
            Server {
                addr,
                ops,
                web,
                stop: Some(stop),
                task: Some(task),
            },
            reloader,
        )
    }

    /// Runs the real binary (`postern serve`) and waits until it listens.
    pub fn spawn(&self) -> BinaryServer {
        self.spawn_with_env(&[])
    }

    pub fn spawn_with_env(&self, env: &[(&str, &str)]) -> BinaryServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_dir)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn postern");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("postern listening on https://") {
                        break rest.trim().parse::<SocketAddr>().expect("address");
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "postern serve did not start:\n{}",
                        stderr.join().unwrap_or_default()
                    );
                }
            }
        };
        // Keep draining stdout too, for the same reason.
        std::thread::spawn(move || for _ in lines {});
        BinaryServer {
            child,
            addr,
            stderr,
        }
    }

    /// A client connection authenticated as `org`.
    pub async fn connect(&self, addr: SocketAddr, org: &str) -> Connection {
        let identity = Identity::from_pem_file(&self.identity_path(org)).expect("identity");
        self.connect_with(addr, Some(&identity))
            .await
            .expect("connect")
    }

    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        identity: Option<&Identity>,
    ) -> Result<Connection, client::ClientError> {
        let roots = client::read_roots(&self.ca_path()).expect("roots");
        let config = Arc::new(client::tls_config(&roots, identity).expect("tls"));
        let target = Target {
            host: "localhost".into(),
            port: addr.port(),
        };
        client::connect(&target, config).await
    }

    pub fn spool_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.state_dir.join("spool"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// How many transfers the store holds (whatever their payload's storage).
    pub fn transfers(&self) -> usize {
        let r = self.reader();
        let n: i64 = r
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM transfers", [], |row| row.get(0))
            .expect("count");
        n as usize
    }

    /// The sealed payload of a transfer, from the spool file or the database.
    pub fn sealed_payload(&self, id: &str) -> Vec<u8> {
        let r = self.reader();
        let (file, inline): (Option<String>, Option<Vec<u8>>) = r
            .conn()
            .unwrap()
            .query_row(
                "SELECT payload_file, payload_inline FROM transfers WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("transfer row");
        match (file, inline) {
            (Some(f), None) => {
                std::fs::read(self.state_dir.join("spool").join(f)).expect("spool file")
            }
            (None, Some(b)) => b,
            other => panic!("a payload is either a file or inline: {other:?}"),
        }
    }

    pub fn reader(&self) -> Reader {
        Reader::open(&self.state_dir).expect("reader")
    }

    /// The decision records (accepted, refused, rejected), oldest first.
    pub fn records(&self) -> Vec<Value> {
        self.all_records()
            .into_iter()
            .filter(|r| {
                r["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("transfer_"))
            })
            .collect()
    }

    /// Every log record's body (decisions, delivery attempts, inbox events...), oldest first.
    pub fn all_records(&self) -> Vec<Value> {
        let mut r = self
            .reader()
            .records(&LogFilter::default())
            .expect("records");
        r.reverse();
        r.into_iter().map(|r| r.body).collect()
    }
}

pub struct Server {
    pub addr: SocketAddr,
    /// The health and metrics listener.
    pub ops: Option<SocketAddr>,
    /// The people's pages.
    pub web: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything written to stderr, read as it comes (a full pipe would stall the gateway).
    stderr: std::thread::JoinHandle<String>,
}

impl BinaryServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmHWM")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and returns everything it wrote to stderr.
    pub fn terminate(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
        std::mem::replace(&mut self.stderr, std::thread::spawn(String::new))
            .join()
            .unwrap_or_default()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete, valid envelope from the council to the police; `patch` replaces top-level keys
/// (null removes one).
pub fn envelope(patch: Value) -> Value {
    let mut v = json!({
        "recipients": ["northshire-police"],
        "purpose": "child-protection-s47",
        "justification": "JUSTIFICATION-SENTINEL: disclosure at school indicates risk of significant harm.",
        "lawful_basis": "public_task",
        "special_category_condition": "safeguarding_children",
        "data_categories": ["personal", "special_category"],
        "marking": "OFFICIAL-SENSITIVE PERSONAL",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire-cc.example"},
        "consent": {"status": "not_sought", "reason": "Seeking consent may place the child at increased risk."},
        "subject_informed": {"informed": false, "reason": "Telling the family may increase the risk."},
        "urgency": {"level": "routine"},
        "disclosed_summary": "Strategy discussion notes, two pages.",
        "retention": {"days": 365},
        "subject_refs": ["nhs:9434765919", "case:SUBJECT-SENTINEL-77"],
        "file_name": "notes.pdf",
        "content_type": "application/pdf"
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

/// Deterministic bytes that do not compress away and are easy to recognise.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A transfer for a purpose no agreement allows (refused by policy): what the tests that need
/// a refusal in the log send.
pub async fn submit_refused(conn: &mut Connection) -> Answer {
    submit(conn, &envelope(json!({"purpose": "nope"})), vec![1], None).await
}

pub async fn submit(
    conn: &mut Connection,
    envelope: &Value,
    payload: Vec<u8>,
    idempotency_key: Option<&str>,
) -> Answer {
    let len = payload.len() as u64;
    let chunks: Vec<std::io::Result<Bytes>> = payload
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    conn.submit(Submission {
        envelope_json: Bytes::from(serde_json::to_vec(envelope).expect("json")),
        payload: stream::iter(chunks),
        payload_len: Some(len),
        file_name: Some("notes.pdf".into()),
        content_type: Some("application/pdf".into()),
        idempotency_key: idempotency_key.map(str::to_owned),
    })
    .await
    .unwrap_or_else(|e| panic!("submit: {e:?}"))
}

pub fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
        panic!(
            "not JSON ({}): {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// Reads a file's bytes and the bytes of any SQLite side files next to it.
pub fn db_bytes(state_dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["postern.db", "postern.db-wal"] {
        if let Ok(b) = std::fs::read(state_dir.join(name)) {
            all.extend(b);
        }
    }
    all
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A plain HTTP GET (the ops listener): status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls until `f` returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed().as_secs() < secs,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls a transfer's status until `done` holds for one recipient's entry, and returns that entry.
pub async fn wait_recipient(
    conn: &mut Connection,
    id: &str,
    recipient: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = std::time::Instant::now();
    loop {
        let s = recipient_state(conn, id, recipient).await;
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "timed out after 20 s waiting for {what}; last state {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A transfer's state for one recipient, as its sender sees it.
pub async fn recipient_state(conn: &mut Connection, id: &str, recipient: &str) -> Value {
    let a = conn
        .get(&format!("/v1/transfers/{id}"))
        .await
        .expect("status");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    json(&a)["recipients"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["recipient"] == recipient).cloned())
        .expect("recipient listed")
}

/// A deployment (not started) whose email relay is an SMTP server in this test, over STARTTLS
/// with a certificate from the deployment's own CA; `extra` is added to its postern.toml.
pub async fn with_relay(
    extra: &str,
) -> (Deployment, postern_gateway::testkit::smtp_sink::SmtpSink) {
    use postern_gateway::testkit::smtp_sink::{SinkOptions, SmtpSink, tls_config};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let d = Deployment::with_daemon(&format!(
        "[smtp]\nrelays = [{{ host = \"localhost\", port = {port}, tls = \"starttls\", ca = \"${{state_dir}}/pki/ca.crt\" }}]\n{extra}"
    ));
    let issued = d
        .ca()
        .issue_server(&["localhost".into(), "127.0.0.1".into()])
        .expect("issue");
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    let sink = SmtpSink::start(
        listener,
        SinkOptions {
            starttls: Some(Arc::new(tls_config(chain, key).expect("tls"))),
            fail_first: 0,
            ..SinkOptions::default()
        },
    )
    .expect("sink");
    (d, sink)
}

/// An upload of undeclared length from `org`, its payload held open until the sender is used
/// (or dropped); the task answers when it ends.
pub async fn held_upload(
    d: &Deployment,
    addr: SocketAddr,
    org: &str,
) -> (
    tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    tokio::task::JoinHandle<Answer>,
) {
    let (more, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    more.send(Ok(Bytes::from(vec![7u8; 1000]))).await.unwrap();
    let mut conn = d.connect(addr, org).await;
    let a_envelope = envelope(json!({}));
    let task =
        tokio::spawn(async move {
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|c| (c, rx))
            });
            conn.submit(Submission {
                envelope_json: Bytes::from(serde_json::to_vec(&a_envelope).unwrap()),
                payload: body,
                payload_len: None,
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await
            .expect("an answer")
        });
    (more, task)
}

/// A small payload that names its own number, so each transfer's content is its own.
pub fn numbered(seed: u64) -> Vec<u8> {
    let mut data = seed.to_be_bytes().to_vec();
    data.extend(payload(1500, seed as u8));
    data
}

/// Submits small transfers (council to police, delivered by mutual TLS to this same gateway's
/// inbound endpoint) until `accepted` (shared by every submitter) reaches `stop_at` or the
/// connection dies; returns (id, seed) of each 202. A 503 (the store away for now) is counted
/// in `unavailable` and the next transfer tried shortly after; any other answer fails the test.
pub async fn keep_submitting(
    mut conn: postern_gateway::client::Connection,
    first_seed: u64,
    accepted: Arc<AtomicU64>,
    stop_at: u64,
    unavailable: Arc<AtomicU64>,
) -> Vec<(String, u64)> {
    let mut mine = Vec::new();
    for seed in first_seed.. {
        if accepted.load(Ordering::Relaxed) >= stop_at {
            break;
        }
        let data = numbered(seed);
        let Ok(a) = conn
            .submit(Submission {
                envelope_json: Bytes::from(serde_json::to_vec(&envelope(json!({}))).expect("json")),
                payload: stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]),
                payload_len: None,
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await
        else {
            break; // the gateway was killed
        };
        if a.status == 503 {
            unavailable.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
        mine.push((
            json(&a)["transfer_id"].as_str().expect("id").to_owned(),
            seed,
        ));
        accepted.fetch_add(1, Ordering::Relaxed);
    }
    mine
}

/// Runs `postern serve` to its exit or its first announcement; returns (exit status or None if
/// it started, stderr).
pub fn try_serve(d: &Deployment) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["serve", "--config"])
        .arg(&d.config_dir)
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    if line.contains("listening") {
        let _ = child.kill();
        let _ = child.wait();
        return (None, String::new());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn accept_head(d: &Deployment, reason: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["log", "accept-head", "--reason", reason, "--config"])
        .arg(&d.config_dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `n` transfers shared and delivered, then two refused (the newest records are refusals,
/// which change nothing else), and the gateway stopped cleanly.
pub async fn shared_and_stopped(d: &Deployment, n: u8) {
    let server = d.start().await;
    let mut conn = d.connect(server.addr, "northshire-cc").await;
    for i in 0..n {
        let a = submit(&mut conn, &envelope(json!({})), vec![i; 500], None).await;
        assert_eq!(a.status, 202);
        let id = json(&a)["transfer_id"].as_str().unwrap().to_owned();
        wait_recipient(&mut conn, &id, "northshire-police", "delivery", |s| {
            s["state"] == "delivered"
        })
        .await;
    }
    for _ in 0..2 {
        let refused = submit_refused(&mut conn).await;
        assert_eq!(refused.status, 403);
    }
    drop(conn);
    server.stop().await;
}

/// A transfer from northshire-cc as the store records it, its (one byte) payload inline,
/// received at `at`, to `recipients` under agreement `isp` by https.
pub fn stored_transfer(
    id: postern_gateway::domain::ids::TransferId,
    at: &str,
    recipients: &[&str],
) -> postern_gateway::store::NewTransfer {
    use postern_gateway::store::{NewDelivery, NewTransfer, StoredPayload};
    NewTransfer {
        id,
        sender: "northshire-cc".parse().unwrap(),
        received_at: at.into(),
        purpose: "p".into(),
        marking: "OFFICIAL".into(),
        payload: StoredPayload::Inline(vec![1]),
        summary: postern_gateway::seal::SealSummary {
            plaintext_size: 1,
            plaintext_sha256: [0; 32],
            sealed_size: 1,
            sealed_sha256: [0; 32],
        },
        sealed_envelope: vec![1],
        deliveries: recipients
            .iter()
            .map(|r| NewDelivery {
                recipient: r.parse().unwrap(),
                agreement: "isp".parse().unwrap(),
                channel: "https",
            })
            .collect(),
    }
}
